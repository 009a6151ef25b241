//! The ingestion service of Vitals: customer data in: accounts, contacts, usage events, conversations, pulses, contracts, custom metrics and signals.
//!
//! [`run`] serves it alone (the `vitals-ingestion` binary); [`register`] adds it to a server
//! that hosts several services (the all-in-one `vitals`).

pub mod convert;
pub mod domain;
pub mod error;
mod grpc;
mod roles;
pub mod segment;

pub use roles::ROLES;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use vitals_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, shutdown::Signal};
use vitals_store::Store;

/// Settings of the ingestion service beyond the common server ones.
#[derive(Clone, Debug, clap::Args)]
pub struct IngestionArgs {
    /// Write transactions run at once on PostgreSQL (1..=64); further batches wait. Each
    /// holds a pooled connection while it runs: keep it below `--database-max-connections`
    /// (default 32). SQLite always runs one at a time (it has a single writer).
    #[arg(long = "ingestion-write-concurrency", env = "VITALS_INGESTION_WRITE_CONCURRENCY",
          default_value = "16", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub write_concurrency: u32,
    /// Keep raw usage events this many days (1..=36500), then drop them; the daily
    /// roll-ups that scoring and learning read are kept (docs/ingestion.md "Retention of
    /// raw events"). Off by default: raw events are kept for ever. On PostgreSQL whole
    /// months are dropped (raw events stay N to N + 31 days); on SQLite events are
    /// deleted in batches. Events older than what was dropped are then ignored (answered
    /// as duplicates).
    #[arg(long = "event-retention-days", env = "VITALS_EVENT_RETENTION_DAYS",
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub event_retention_days: Option<u32>,
}

impl Default for IngestionArgs {
    fn default() -> Self {
        Self {
            write_concurrency: 16,
            event_retention_days: None,
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

/// Called with the ids of the accounts of an `UpsertAccounts` batch once it is
/// committed, before the call returns; the all-in-one uses it to assign the accounts to
/// their health profile at once (`vitals_profiles::assign::accounts_hook`). It cannot
/// fail the call (the batch is stored): it logs its own errors.
pub type AccountsHook =
    Arc<dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The ingestion gRPC service.
#[derive(Clone)]
pub struct IngestionService {
    store: Store,
    /// Admits write transactions: one at a time on SQLite, so that writers queue here
    /// rather than poll SQLite's busy handler; `write_concurrency` on PostgreSQL.
    gate: Arc<tokio::sync::Semaphore>,
    /// Writes event batches (on a SQLite file through a connection of its own).
    events: vitals_store::ingestion::EventWriter,
    /// Run after each committed UpsertAccounts batch.
    accounts_hook: Option<AccountsHook>,
}

impl std::fmt::Debug for IngestionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestionService")
            .field("store", &self.store)
            .field("gate", &self.gate)
            .field("events", &self.events)
            .field("accounts_hook", &self.accounts_hook.is_some())
            .finish()
    }
}

impl IngestionService {
    /// A service over `store`.
    pub fn new(store: Store, args: IngestionArgs) -> Self {
        let permits = match store.backend() {
            vitals_store::sea_orm::DbBackend::Postgres => args.write_concurrency.max(1) as usize,
            _ => 1,
        };
        Self {
            events: vitals_store::ingestion::EventWriter::new(store.clone()),
            store,
            gate: Arc::new(tokio::sync::Semaphore::new(permits)),
            accounts_hook: None,
        }
    }

    /// The same service, running `hook` after every committed UpsertAccounts batch.
    pub fn with_accounts_hook(mut self, hook: AccountsHook) -> Self {
        self.accounts_hook = Some(hook);
        self
    }
}

/// Adds the ingestion service to `grpc`, with the message size limits of `server`.
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &IngestionArgs,
    server: &ServerConfig,
) -> Result<(), RunError> {
    register_with_hook(grpc, store, args, server, None)
}

/// [`register`], with an [`AccountsHook`] run after every committed UpsertAccounts batch.
pub fn register_with_hook(
    grpc: &mut GrpcServer,
    store: Store,
    args: &IngestionArgs,
    server: &ServerConfig,
    accounts_hook: Option<AccountsHook>,
) -> Result<(), RunError> {
    // Month partitions ahead (PostgreSQL) and the retention of raw events, at start-up
    // and every hour (docs/ingestion.md), on the replica holding its lease.
    let leases = vitals_server::Leases::from_config(store.clone(), server);
    domain::retention::spawn(store.clone(), args.event_retention_days, &leases);
    let mut service = IngestionService::new(store, args.clone());
    if let Some(hook) = accounts_hook {
        service = service.with_accounts_hook(hook);
    }
    // Segment's HTTP Tracking API on the same port (docs/api.md).
    grpc.http(segment::router(service.clone()));
    grpc.add(
        vitals_server::with_message_limits!(IngestionServiceServer::new(service), server),
        ROLES,
    );
    Ok(())
}

/// Serves the ingestion service alone on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    vitals_server::serve_alone(&config.server, listener, shutdown, |grpc, store, _| {
        register(grpc, store, &config.service, &config.server)
    })
    .await
}
