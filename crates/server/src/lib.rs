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
pub mod grpc;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod work;

use std::future::Future;
use std::process::ExitCode;

pub use config::{AuthMode, LogFormat, ServerConfig};
pub use error::{ApiError, not_yet};
pub use grpc::{GrpcServer, ServeError};
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

/// The body of every service `main`: builds the runtime, sets up telemetry, binds
/// `config.listen`, runs `run(config, listener, shutdown-on-signal)`, flushes telemetry, and
/// turns the outcome into an exit code (0, 64 for configuration, 1 otherwise).
pub fn main_with<F, Fut>(service: &'static str, config: ServerConfig, run: F) -> ExitCode
where
    F: FnOnce(ServerConfig, tokio::net::TcpListener, shutdown::Signal) -> Fut,
    Fut: Future<Output = Result<(), RunError>>,
{
    let log_format = config.log_format;
    block_on(async move {
        let telemetry = match telemetry::init(service, log_format) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let outcome = async {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| {
                    RunError::Config(format!(
                        "cannot listen on {} (VITALS_LISTEN): {e}",
                        config.listen
                    ))
                })?;
            run(config, listener, Box::pin(shutdown::signal())).await
        }
        .await;
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
    })
    .unwrap_or_else(|code| code)
}

/// Runs `fut` to completion on a new multi-threaded tokio runtime: what every command's
/// `main` does. When the runtime cannot start, says so on stderr and gives exit code 1.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, ExitCode> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok(runtime.block_on(fut)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
