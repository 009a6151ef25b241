//! Configuration shared by every Vitals binary, from flags and `VITALS_*` environment
//! variables (flags win). Every setting has a documented default and limit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthError, Authenticator, TokenEntry, load_tokens_file};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Whether calls must carry a bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every RPC but health and reflection needs a token with the right role.
    On,
    /// No token is checked: anyone who reaches the port may call everything.
    Off,
}

/// Settings every gRPC server of Vitals takes.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    #[arg(long, env = "VITALS_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://FILE?mode=rwc`, `sqlite::memory:` or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://vitals.db?mode=rwc"
    )]
    pub database_url: String,

    /// Connections in the database pool (1..=1024); default 32 on PostgreSQL, 8 on a
    /// SQLite file (an in-memory SQLite database always has one). On PostgreSQL keep it
    /// above `--ingestion-write-concurrency` so that reads find a connection while a load
    /// runs, and the sum over the processes on one server under its `max_connections`.
    #[arg(long, env = "VITALS_DATABASE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub database_max_connections: Option<u32>,

    /// Log format.
    #[arg(long, env = "VITALS_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Seconds to let in-flight calls finish after SIGTERM/SIGINT before closing anyway;
    /// the process exits at most `CLOSE_GRACE` + the telemetry flush later, abandoning
    /// blocking work still running.
    #[arg(long, env = "VITALS_DRAIN_TIMEOUT", default_value = "20", value_parser = seconds)]
    pub drain_timeout: Duration,

    /// Seconds a unary call may take, its wait for a slot included, before it fails with
    /// DEADLINE_EXCEEDED (a client's shorter `grpc-timeout` wins). Streams are bounded by
    /// their client, not by this (it bounds only the time to their response headers).
    /// Health and reflection have no deadline.
    #[arg(long, env = "VITALS_REQUEST_TIMEOUT", default_value = "60", value_parser = seconds)]
    pub request_timeout: Duration,

    /// Calls served at once by this process; further calls wait for a slot, within their
    /// deadline (1..=65536). Health and reflection take no slot.
    #[arg(long, env = "VITALS_CONCURRENCY_LIMIT", default_value = "512",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub concurrency_limit: u32,

    /// Heavy operations (training, evaluation, scoring runs) run at once by this process
    /// (1..=64); further ones queue for at most `--heavy-queue-timeout` seconds, then get
    /// RESOURCE_EXHAUSTED. See docs/reliability.md.
    #[arg(long, env = "VITALS_HEAVY_CONCURRENCY", default_value = "2",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub heavy_concurrency: u32,

    /// Seconds a heavy operation waits for a free slot before RESOURCE_EXHAUSTED (0: no
    /// wait).
    #[arg(long, env = "VITALS_HEAVY_QUEUE_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub heavy_queue_timeout: Duration,

    /// Largest gRPC message accepted or sent, in bytes (1 KiB..=256 MiB); a larger
    /// request message fails with RESOURCE_EXHAUSTED naming this setting.
    #[arg(long, env = "VITALS_MAX_MESSAGE_BYTES", default_value = "16777216",
          value_parser = clap::value_parser!(u32).range(1024..=268_435_456))]
    pub max_message_bytes: u32,

    /// Bearer-token authentication (see docs/security.md). `off` is for local use only
    /// and is announced by a warning at start.
    #[arg(long, env = "VITALS_AUTH", value_enum, default_value = "on")]
    pub auth: AuthMode,

    /// File of accepted tokens, one `<role> <sha256 hex of the token> [label]` per line
    /// (roles: ingest, read, admin; `#` starts a comment).
    #[arg(long, env = "VITALS_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// PEM certificate chain of this server; with `--tls-key`, serves gRPC over TLS.
    #[arg(long, env = "VITALS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "VITALS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) that sign client certificates; when set, every client must
    /// present one (mutual TLS). Needs `--tls-cert`.
    #[arg(long, env = "VITALS_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Milliseconds a lease on once-per-cluster work (schedules, the scoring-run mutex)
    /// lasts unless its replica renews it (every third of it); a replica killed while
    /// holding one loses it at most this much after its last renewal (500..=600000; see
    /// docs/deploy.md "Work shared between replicas").
    #[arg(long, env = "VITALS_LEASE_TTL_MS", default_value_t = crate::lease::DEFAULT_LEASE_TTL_MS,
          value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub lease_ttl_ms: u64,

    /// Tokens accepted besides those of `tokens_file`. Not a flag: the all-in-one fills it
    /// with the first-start admin token it keeps (hashed) in the database.
    #[arg(skip)]
    pub extra_tokens: Vec<TokenEntry>,
}

impl ServerConfig {
    /// A configuration for tests and embedding: a free local port, the given database,
    /// every other setting at its default except authentication, which is OFF (tests of
    /// auth turn it on explicitly), no TLS, and a request timeout of 300 s instead of 60
    /// (a training test on a busy 2-core machine can pass a minute; the tests of the
    /// timeout set their own).
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            database_max_connections: None,
            log_format: LogFormat::Pretty,
            drain_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(300),
            concurrency_limit: 512,
            heavy_concurrency: 2,
            heavy_queue_timeout: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            auth: AuthMode::Off,
            tokens_file: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            lease_ttl_ms: crate::lease::DEFAULT_LEASE_TTL_MS,
            extra_tokens: Vec::new(),
        }
    }

    /// The authenticator this configuration asks for: `None` when auth is off, else the
    /// tokens of `tokens_file` plus `extra_tokens` (at least one), with no RPC roles yet
    /// ([`Authenticator::with_roles`]).
    pub fn authenticator(&self) -> Result<Option<Authenticator>, AuthError> {
        if self.auth == AuthMode::Off {
            return Ok(None);
        }
        let mut tokens = match &self.tokens_file {
            Some(path) => load_tokens_file(path)?,
            None => Vec::new(),
        };
        tokens.extend(self.extra_tokens.iter().cloned());
        Authenticator::new(tokens).map(Some)
    }
}

/// Parses a whole number of seconds (0..=86400).
fn seconds(s: &str) -> Result<Duration, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of seconds"))?;
    if n > 86_400 {
        return Err(format!("{n} s is over the limit of 86400 s"));
    }
    Ok(Duration::from_secs(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerConfig,
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Cli::try_parse_from(["x"]).unwrap().server;
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.drain_timeout, Duration::from_secs(20));
        assert_eq!(c.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(c.auth, AuthMode::On, "auth is on unless turned off");
        assert!(c.tls_cert.is_none() && c.tokens_file.is_none());
        assert_eq!(
            c.database_max_connections, None,
            "the store's per-backend default"
        );
        assert_eq!(
            ServerConfig::for_tests("sqlite::memory:").auth,
            AuthMode::Off
        );
    }

    #[test]
    fn tls_key_and_cert_go_together() {
        let err = Cli::try_parse_from(["x", "--tls-cert", "c.pem"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--tls-key"), "{err}");
        let c = Cli::try_parse_from([
            "x",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--auth",
            "off",
        ])
        .unwrap()
        .server;
        assert_eq!(c.auth, AuthMode::Off);
        assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        let err = Cli::try_parse_from(["x", "--listen", "nowhere"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--listen"), "{err}");
        let err = Cli::try_parse_from(["x", "--drain-timeout=-3"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("drain-timeout"), "{err}");
        for bad in ["0", "1025", "many"] {
            let err = Cli::try_parse_from(["x", "--database-max-connections", bad])
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("--database-max-connections"), "{err}");
        }
        let c = Cli::try_parse_from(["x", "--database-max-connections", "48"])
            .unwrap()
            .server;
        assert_eq!(c.database_max_connections, Some(48));
        let err = Cli::try_parse_from(["x", "--concurrency-limit", "0"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("concurrency-limit"), "{err}");
    }
}
