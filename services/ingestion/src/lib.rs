//! The ingestion service of Vitals: customer data in: accounts, contacts, usage events, conversations, pulses, contracts, custom metrics and signals.
//!
//! [`run`] serves it alone (the `vitals-ingestion` binary); [`register`] adds it to a server
//! that hosts several services (the all-in-one `vitals`).

pub mod domain;
mod grpc;
pub mod loader;

use std::sync::Arc;

use tokio::net::TcpListener;
use vitals_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, shutdown::Signal};
use vitals_store::Store;

/// Settings of the ingestion service beyond the common server ones.
#[derive(Clone, Debug, clap::Args)]
pub struct IngestionArgs {
    /// Write transactions run at once on PostgreSQL (1..=64); further batches wait.
    /// SQLite always runs one at a time (it has a single writer).
    #[arg(long = "ingestion-write-concurrency", env = "VITALS_INGESTION_WRITE_CONCURRENCY",
          default_value = "8", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub write_concurrency: u32,
}

impl Default for IngestionArgs {
    fn default() -> Self {
        Self {
            write_concurrency: 8,
        }
    }
}

/// The whole configuration of the `vitals-ingestion` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "vitals-ingestion",
    version,
    about = "Vitals ingestion service: customer data in: accounts, contacts, usage events, conversations, pulses, contracts, custom metrics and signals"
)]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: IngestionArgs,
}

/// The ingestion gRPC service.
#[derive(Clone, Debug)]
pub struct IngestionService {
    store: Store,
    /// Admits write transactions: one at a time on SQLite, so that writers queue here
    /// rather than poll SQLite's busy handler; `write_concurrency` on PostgreSQL.
    gate: Arc<tokio::sync::Semaphore>,
}

impl IngestionService {
    /// A service over `store`.
    pub fn new(store: Store, args: IngestionArgs) -> Self {
        let permits = match store.backend() {
            vitals_store::sea_orm::DbBackend::Postgres => args.write_concurrency.max(1) as usize,
            _ => 1,
        };
        Self {
            store,
            gate: Arc::new(tokio::sync::Semaphore::new(permits)),
        }
    }
}

/// Adds the ingestion service to `grpc`, with the message size limits of `server`.
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &IngestionArgs,
    server: &ServerConfig,
) -> Result<(), RunError> {
    let limit = server.max_message_bytes as usize;
    grpc.add(
        IngestionServiceServer::new(IngestionService::new(store, args.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    );
    Ok(())
}

/// Serves the ingestion service alone on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    let store = vitals_server::open_store(&config.server).await?;
    let mut grpc = GrpcServer::new();
    register(&mut grpc, store.clone(), &config.service, &config.server)?;
    grpc.serve(&config.server, listener, shutdown).await?;
    store.close().await?;
    Ok(())
}
