//! `vitals`: the all-in-one command.
//!
//! - `vitals serve`: every service in one process on one port (SQLite file by default).
//! - `vitals migrate`: apply the database migrations and exit (the Kubernetes Job).
//! - `vitals load`: stream a folder of sample-format CSV data into a running Vitals.
//! - `vitals demo`: start Vitals in this process, load the sample data, train, score and
//!   print a portfolio summary (see `vitals::demo`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vitals_server::{LogFormat, RunError};

/// mimalloc instead of glibc's allocator, as in the `vitals-ingestion` binary: ingestion
/// and the loader allocate many small strings (see docs/bench-ingestion.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vitals: an open, self-hosted customer health score engine.
#[derive(Debug, Parser)]
#[command(name = "vitals", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every Vitals service in one process on one port.
    Serve(Box<vitals::ServeConfig>),
    /// Apply the database migrations and exit.
    Migrate {
        /// Database URL.
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://vitals.db?mode=rwc"
        )]
        database_url: String,
        /// Log format.
        #[arg(long, env = "VITALS_LOG_FORMAT", value_enum, default_value = "pretty")]
        log_format: LogFormat,
    },
    /// Load a customer base (sample-data CSV folder) into a running Vitals over gRPC.
    Load(vitals::loader::LoadArgs),
    /// Run the whole product on the sample data and print a portfolio summary.
    Demo(vitals::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli: Cli = vitals_server::parse_args();
    match cli.command {
        Command::Serve(config) => {
            let server = config.server.clone();
            vitals_server::main_with("vitals", server, move |server, listener, shutdown| {
                vitals::run(
                    vitals::ServeConfig { server, ..*config },
                    listener,
                    shutdown,
                )
            })
        }
        Command::Migrate {
            database_url,
            log_format,
        } => one_shot(
            log_format,
            async move { vitals::migrate(&database_url).await },
        ),
        Command::Load(args) => load(args),
        Command::Demo(args) => demo(args),
    }
}

/// `vitals demo`: prints the progress and the summary on stdout; exit code 1 on failure
/// (64 when the sample data is missing).
fn demo(args: vitals::demo::DemoArgs) -> ExitCode {
    let mut stdout = std::io::stdout();
    match vitals_server::block_on(vitals::demo::run(&args, &mut stdout)) {
        Ok(Ok(_)) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(code) => code,
    }
}

/// `vitals load`: a client, not a server: prints the summary, exit code 1 on failure.
fn load(args: vitals::loader::LoadArgs) -> ExitCode {
    match vitals_server::block_on(vitals::loader::load(&args)) {
        Ok(Ok(summary)) => {
            print!("{}", summary.report());
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

/// Runs a command that is not a server: telemetry up, the future, telemetry flushed.
fn one_shot(
    log_format: LogFormat,
    fut: impl std::future::Future<Output = Result<(), RunError>>,
) -> ExitCode {
    vitals_server::block_on(async move {
        let telemetry = match vitals_server::telemetry::init("vitals", log_format) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(vitals_server::EXIT_CONFIG);
            }
        };
        let code = match fut.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        };
        telemetry.shutdown().await;
        code
    })
    .unwrap_or_else(|code| code)
}
