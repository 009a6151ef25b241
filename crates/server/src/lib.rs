//! Shared gRPC plumbing of every Vitals binary: configuration, telemetry (traces and
//! [`metrics`]), the error to status mapping, server assembly (health, reflection, tower
//! layers, bearer-token [`auth`], [`tls`]) and graceful shutdown, plus the [`client`]
//! helper for calls between services.
//!
//! A service crate builds a [`GrpcServer`] with its tonic services and calls
//! [`GrpcServer::serve`]; its `main` is [`main_with`] around its library `run`.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod first_start;
pub mod grpc;
pub mod http;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod operations;
pub mod paging;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod validate;
pub mod work;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

pub use config::{AuthMode, LogFormat, ServerConfig};
pub use error::{ApiError, invalid_field, not_yet};
pub use grpc::{GrpcServer, ServeError};
pub use http::HttpAuth;
pub use lease::{LeaseGuard, Leases};
pub use work::{CancelFlag, Cancelled, Work, WorkBudget};

/// Exit code for bad configuration (EX_USAGE), as with a bad flag or `DATABASE_URL`.
pub const EXIT_CONFIG: u8 = 64;

/// Why a service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is unusable (exit code 64).
    #[error("configuration error: {0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] vitals_store::StoreError),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl RunError {
    /// The process exit code for this error: 64 for configuration (including a database
    /// URL that cannot be opened), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => EXIT_CONFIG,
            Self::Store(vitals_store::StoreError::InvalidUrl { .. })
            | Self::Store(vitals_store::StoreError::Connect { .. }) => EXIT_CONFIG,
            Self::Serve(e) if e.is_config() => EXIT_CONFIG,
            _ => 1,
        }
    }
}

/// Opens and migrates the database of `config`.
pub async fn open_store(config: &ServerConfig) -> Result<vitals_store::Store, RunError> {
    let store = vitals_store::Store::connect_with_pool_size(
        &config.database_url,
        config.database_max_connections,
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

/// The body of every service's `run` (a service served alone): opens and migrates the
/// database, makes health follow it, lets `register` add the service under the process's
/// heavy-work budget, serves on `listener` until `shutdown` completes (cancelling heavy work
/// in flight as draining starts), drains, and closes the database.
pub async fn serve_alone<R>(
    config: &ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: shutdown::Signal,
    register: R,
) -> Result<(), RunError>
where
    R: FnOnce(&mut GrpcServer, vitals_store::Store, WorkBudget) -> Result<(), RunError>,
{
    let work = WorkBudget::from_config(config);
    serve_alone_with_budget(config, listener, shutdown, work, register).await
}

/// [`serve_alone`] under the heavy-work budget `work` (a test can watch it).
pub async fn serve_alone_with_budget<R>(
    config: &ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: shutdown::Signal,
    work: WorkBudget,
    register: R,
) -> Result<(), RunError>
where
    R: FnOnce(&mut GrpcServer, vitals_store::Store, WorkBudget) -> Result<(), RunError>,
{
    let store = open_store(config).await?;
    let mut grpc = GrpcServer::new();
    // Health follows the database: NOT_SERVING while it cannot be reached.
    grpc.readiness(&store);
    register(&mut grpc, store.clone(), work.clone())?;
    grpc.serve(config, listener, work.cancel_on(shutdown))
        .await?;
    store.close().await?;
    Ok(())
}

/// `$server` (a tonic service's generated `...Server`) with the decoding and encoding
/// message size limits of `$config` (a [`ServerConfig`]): `--max-message-bytes`, so a
/// larger request is refused with RESOURCE_EXHAUSTED (docs/api.md).
#[macro_export]
macro_rules! with_message_limits {
    ($server:expr, $config:expr) => {{
        let limit = $config.max_message_bytes as usize;
        $server
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }};
}

/// Parses the command line of `C`; on a bad flag prints clap's message and exits 64
/// (help and version exit 0).
pub fn parse_args<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => i32::from(EXIT_CONFIG),
            };
            let _ = e.print();
            std::process::exit(code);
        }
    }
}

/// After the drain timeout, how long closing the database may take before the process
/// stops waiting for it.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// After telemetry is flushed, how long the runtime waits for blocking work still running
/// (a training fit, say) before the process exits without it.
pub const BLOCKING_GRACE: Duration = Duration::from_millis(500);

/// The body of every service `main`: builds the runtime, sets up telemetry, binds
/// `config.listen`, runs `run(config, listener, shutdown-on-signal)`, flushes telemetry, and
/// turns the outcome into an exit code (0, 64 for configuration, 1 otherwise).
///
/// Shutdown is bounded: once SIGTERM/SIGINT arrives, `run` has the drain timeout plus
/// [`CLOSE_GRACE`] to return; then telemetry is flushed (at most 5 s) and the process
/// exits, abandoning blocking work still running after [`BLOCKING_GRACE`] (dropping a
/// tokio runtime would wait for it).
pub fn main_with<F, Fut>(service: &'static str, config: ServerConfig, run: F) -> ExitCode
where
    F: FnOnce(ServerConfig, tokio::net::TcpListener, shutdown::Signal) -> Fut,
    Fut: Future<Output = Result<(), RunError>>,
{
    let log_format = config.log_format;
    let drain_timeout = config.drain_timeout;
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        let telemetry = match telemetry::init(service, log_format) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let signal: shutdown::Signal = Box::pin(async move {
            shutdown::signal().await;
            let _ = signalled_tx.send(());
        });
        let outcome = async {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| {
                    RunError::Config(format!(
                        "cannot listen on {} (VITALS_LISTEN): {e}",
                        config.listen
                    ))
                })?;
            run(config, listener, signal).await
        };
        let bound = async {
            match signalled_rx.await {
                Ok(()) => tokio::time::sleep(drain_timeout + CLOSE_GRACE).await,
                // `run` ended without a signal: it decides.
                Err(_) => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            o = outcome => o,
            () = bound => {
                tracing::warn!(
                    service,
                    timeout_s = (drain_timeout + CLOSE_GRACE).as_secs_f64(),
                    "shutdown not finished within the drain timeout: exiting, cancelling what is left"
                );
                Ok(())
            }
        };
        let code = match outcome {
            Ok(()) => {
                tracing::info!(service, "stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                // One clear line: plain on a terminal, a structured record for collectors.
                match log_format {
                    LogFormat::Json => {
                        tracing::error!(service, error = %e, "stopped with an error")
                    }
                    LogFormat::Pretty => eprintln!("error: {e}"),
                }
                ExitCode::from(e.exit_code())
            }
        };
        telemetry.shutdown().await;
        code
    });
    // Not a plain drop: that would wait for every blocking task to finish.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    code
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs `fut` to completion on a new multi-threaded tokio runtime: what every command's
/// `main` does. When the runtime cannot start, says so on stderr and gives exit code 1.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, ExitCode> {
    runtime().map(|r| r.block_on(fut))
}
