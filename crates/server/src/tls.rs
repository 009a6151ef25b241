//! TLS (rustls, ring provider) for the servers: a certificate and key from PEM files,
//! optionally a CA whose client certificates are required (mutual TLS).
//!
//! Files are read once, at start; a missing or unparsable file stops the process with a
//! configuration error (exit code 64) naming the setting.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::ServerConfig;

/// Errors of the TLS setup (configuration errors, exit code 64).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read.
    #[error("cannot read {setting} {path}: {reason}")]
    Read {
        /// The setting that names the file (e.g. `VITALS_TLS_CERT`).
        setting: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{setting} {path}: no PEM {expected} found")]
    NotPem {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What was expected (`CERTIFICATE`, `PRIVATE KEY`).
        expected: &'static str,
    },
    /// rustls refused the certificate, the key or their pairing.
    #[error("TLS configuration refused ({what}): {reason}")]
    Invalid {
        /// The settings involved.
        what: String,
        /// rustls' reason.
        reason: String,
    },
}

/// The full chain of an error's sources, for messages (tonic's top-level error says only
/// "transport error").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads a PEM file that must contain at least one `-----BEGIN <kind>` block, where
/// `kind` ends with `expected` (so `PRIVATE KEY` accepts PKCS#8, `RSA PRIVATE KEY` and
/// `EC PRIVATE KEY`).
pub(crate) fn read_pem(
    setting: &'static str,
    path: &Path,
    expected: &'static str,
) -> Result<Vec<u8>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        setting,
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|kind| kind.ends_with(expected))
    });
    if !found {
        return Err(TlsError::NotPem {
            setting,
            path: shown,
            expected,
        });
    }
    Ok(bytes)
}

/// The server TLS settings of `config`: `None` without `tls_cert` (plaintext).
pub fn server_tls_config(config: &ServerConfig) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        // clap enforces that cert and key come together; a config built in code may not.
        if config.tls_cert.is_some() || config.tls_key.is_some() || config.tls_client_ca.is_some() {
            return Err(TlsError::Invalid {
                what: "VITALS_TLS_CERT / VITALS_TLS_KEY / VITALS_TLS_CLIENT_CA".into(),
                reason: "a certificate and its key are both needed (and a client CA needs them)"
                    .into(),
            });
        }
        return Ok(None);
    };
    let identity = Identity::from_pem(
        read_pem("VITALS_TLS_CERT", cert, "CERTIFICATE")?,
        read_pem("VITALS_TLS_KEY", key, "PRIVATE KEY")?,
    );
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem(
            "VITALS_TLS_CLIENT_CA",
            ca,
            "CERTIFICATE",
        )?));
    }
    Ok(Some(tls))
}
