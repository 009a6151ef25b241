//! Clients of Vitals services (e.g. scoring -> learner, `vitals load`): a channel with
//! optional TLS / mutual TLS, and an interceptor that adds the bearer token and the W3C
//! trace context of the current span to every call.
//!
//! ```no_run
//! # async fn f(server: &vitals_server::ServerConfig) -> Result<(), vitals_server::client::ClientError> {
//! use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
//! use vitals_server::client::{self, ClientInterceptor, ClientTls};
//!
//! // https:// needs a CA; the server's own certificate is presented for mTLS.
//! let tls = ClientTls::for_service(server, Some("/etc/vitals-tls/ca.crt".into()));
//! let channel = client::connect_lazy("https://vitals-learner:50051", &tls)?;
//! let token = std::env::var("VITALS_LEARNER_TOKEN").ok();
//! let mut learner = LearnerServiceClient::with_interceptor(
//!     channel,
//!     ClientInterceptor::new(token.as_deref())?,
//! );
//! # let _ = &mut learner;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::ServerConfig;
use crate::tls::{TlsError, error_chain, read_pem};

/// The environment variable clients (`vitals load`) read their token from.
pub const TOKEN_ENV: &str = "VITALS_TOKEN";

/// How long connecting may take before the call fails with UNAVAILABLE.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not a valid `http://` or `https://` URL.
    #[error("invalid service url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A certificate or key file is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The token cannot be sent as gRPC metadata.
    #[error("the bearer token must be printable ASCII without spaces")]
    BadToken,
    /// Connecting failed (only [`connect`], which connects eagerly).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// The transport's error.
        reason: String,
    },
}

/// TLS settings of a client. `https://` URLs need [`ClientTls::ca_cert`] (there are no
/// built-in public roots: Vitals services use a private CA); `http://` URLs are plaintext
/// and refuse TLS settings, so a half-configured TLS setup fails loudly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificate(s) that sign the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against, when not the URL's host.
    pub domain: Option<String>,
}

impl ClientTls {
    /// The settings of a service calling another: verify with `ca_cert`, and present this
    /// process's own server certificate (`VITALS_TLS_CERT` / `VITALS_TLS_KEY`) as client
    /// certificate when it has one, so mTLS works with one certificate per pod.
    pub fn for_service(server: &ServerConfig, ca_cert: Option<PathBuf>) -> Self {
        let with_identity = ca_cert.is_some();
        Self {
            ca_cert,
            client_cert: server.tls_cert.clone().filter(|_| with_identity),
            client_key: server.tls_key.clone().filter(|_| with_identity),
            domain: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// An [`Endpoint`] for `url` with `tls` applied and a connect timeout; nothing is
/// connected yet.
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, ClientError> {
    let bad = |reason: &str| ClientError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let https = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(bad("expected http://host:port or https://host:port"));
    };
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| bad(&error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if !https {
        if !tls.is_empty() {
            return Err(bad(
                "a CA or client certificate is configured but the url is http:// (use https://)",
            ));
        }
        return Ok(ep);
    }
    let Some(ca) = &tls.ca_cert else {
        return Err(bad(
            "an https:// url needs the CA that signs the server certificate (e.g. VITALS_LEARNER_CA_CERT)",
        ));
    };
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(
        "CA",
        ca,
        "CERTIFICATE",
    )?));
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read_pem("client certificate", cert, "CERTIFICATE")?,
                read_pem("client key", key, "PRIVATE KEY")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(TlsError::Invalid {
                what: "client certificate".into(),
                reason: "a client certificate and its key are both needed".into(),
            }
            .into());
        }
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    ep = ep.tls_config(config).map_err(|e| {
        ClientError::Tls(TlsError::Invalid {
            what: format!("client of {url}"),
            reason: error_chain(&e),
        })
    })?;
    Ok(ep)
}

/// Connects to `url` now; fails if the server cannot be reached or the TLS handshake
/// fails. For a dependency that may be down at start, use [`connect_lazy`].
pub async fn connect(url: &str, tls: &ClientTls) -> Result<Channel, ClientError> {
    endpoint(url, tls)?
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            url: url.to_string(),
            reason: error_chain(&e),
        })
}

/// A channel to `url` that connects on first use and reconnects after failures; calls
/// fail with UNAVAILABLE while the server is unreachable.
pub fn connect_lazy(url: &str, tls: &ClientTls) -> Result<Channel, ClientError> {
    Ok(endpoint(url, tls)?.connect_lazy())
}

/// A channel wrapped with [`ClientInterceptor`], what generated clients'
/// `with_interceptor` returns.
pub type AuthedChannel = InterceptedService<Channel, ClientInterceptor>;

/// Adds `authorization: Bearer <token>` (when a token is set) and the W3C `traceparent` /
/// `tracestate` of the current span to every outgoing call, so the callee's span joins
/// the caller's trace.
#[derive(Clone, Debug, Default)]
pub struct ClientInterceptor {
    authorization: Option<AsciiMetadataValue>,
}

impl ClientInterceptor {
    /// An interceptor sending `token` (none: trace context only).
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        let authorization = match token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => {
                if t.chars().any(|c| !c.is_ascii_graphic()) {
                    return Err(ClientError::BadToken);
                }
                let mut v: AsciiMetadataValue = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::BadToken)?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Self { authorization })
    }

    /// An interceptor sending the token of [`TOKEN_ENV`] (`VITALS_TOKEN`), if set.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::new(std::env::var(TOKEN_ENV).ok().as_deref())
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }
}

impl Interceptor for ClientInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
            req.metadata_mut().insert("authorization", v.clone());
        }
        inject_trace_context(req.metadata_mut());
        Ok(req)
    }
}

/// Writes the W3C trace context of the current tracing span (or, failing that, of the
/// current OpenTelemetry context) into `metadata`. Nothing is written when there is no
/// sampled-or-not valid span, e.g. with OTLP export off.
pub fn inject_trace_context(metadata: &mut MetadataMap) {
    let mut cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        cx = opentelemetry::Context::current();
    }
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::try_from(value),
        ) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tls_settings_must_agree() {
        let none = ClientTls::default();
        assert!(endpoint("http://127.0.0.1:1", &none).is_ok());
        assert!(matches!(
            endpoint("learner:50051", &none),
            Err(ClientError::Url { .. })
        ));
        let e = endpoint("https://learner:50051", &none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the CA"), "{e}");
        let with_ca = ClientTls {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = endpoint("http://learner:50051", &with_ca)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use https://"), "{e}");
        let e = endpoint("https://learner:50051", &with_ca)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn interceptor_adds_the_token_only_when_set() {
        let mut i = ClientInterceptor::new(Some("abc")).unwrap();
        let r = i.call(tonic::Request::new(())).unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer abc");
        let mut i = ClientInterceptor::new(None).unwrap();
        let r = i.call(tonic::Request::new(())).unwrap();
        assert!(r.metadata().get("authorization").is_none());
        // No span, no OTel context: no traceparent either.
        assert!(r.metadata().get("traceparent").is_none());
        assert!(matches!(
            ClientInterceptor::new(Some("a b")),
            Err(ClientError::BadToken)
        ));
    }

    #[test]
    fn service_identity_is_presented_only_with_a_ca() {
        let mut server = ServerConfig::for_tests("sqlite::memory:");
        server.tls_cert = Some("c.pem".into());
        server.tls_key = Some("k.pem".into());
        let t = ClientTls::for_service(&server, Some("ca.pem".into()));
        assert_eq!(
            t.client_cert.as_deref(),
            Some(std::path::Path::new("c.pem"))
        );
        let t = ClientTls::for_service(&server, None);
        assert_eq!(t, ClientTls::default());
    }
}
