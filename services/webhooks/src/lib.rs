//! The webhooks service of Vitals: subscriptions to events (band changes, churn
//! thresholds crossed, models trained), delivered as signed HTTP POSTs (Standard
//! Webhooks), at least once, by a background worker with exponential backoff, and the
//! log of every attempt.
//!
//! [`run`] serves it alone (the `vitals-webhooks` binary); [`register_with_budget`]
//! adds it, and its worker, to a server that hosts several services (the all-in-one
//! `vitals`). docs/webhooks.md describes the events, the signature, the settings of
//! [`WebhookArgs`] and the retry schedule.

mod convert;
pub mod domain;
mod error;
mod grpc;
mod roles;

pub use error::WebhookError;
pub use roles::ROLES;

use std::time::Duration;

use tokio::net::TcpListener;
use vitals_proto::webhooks::v1::webhook_service_server::WebhookServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, WorkBudget, shutdown::Signal};
use vitals_store::Store;

use domain::worker::Settings;

/// Default of `--webhook-poll-ms`.
pub const DEFAULT_POLL_MS: u64 = 1000;
/// Default of `--webhook-timeout-ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default of `--webhook-retry-base-ms`.
pub const DEFAULT_RETRY_BASE_MS: u64 = 30_000;
/// Default of `--webhook-retry-max-ms`.
pub const DEFAULT_RETRY_MAX_MS: u64 = 3_600_000;
/// Default of `--webhook-max-attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default of `--webhook-disable-after`.
pub const DEFAULT_DISABLE_AFTER: u32 = 50;
/// Default of `--webhook-concurrency`.
pub const DEFAULT_CONCURRENCY: u32 = 16;

/// Settings of the webhooks service beyond the common server ones (docs/webhooks.md).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// How often the delivery worker looks for new events and due retries when idle, in
    /// milliseconds. 10..=60000.
    #[arg(long = "webhook-poll-ms", env = "VITALS_WEBHOOK_POLL_MS", default_value_t = DEFAULT_POLL_MS,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,
    /// Timeout of one delivery attempt (connect to end of answer), in milliseconds.
    /// 100..=60000.
    #[arg(long = "webhook-timeout-ms", env = "VITALS_WEBHOOK_TIMEOUT_MS", default_value_t = DEFAULT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub timeout_ms: u64,
    /// Delay before the first retry, in milliseconds; it doubles after each failed
    /// attempt. 10..=3600000.
    #[arg(long = "webhook-retry-base-ms", env = "VITALS_WEBHOOK_RETRY_BASE_MS", default_value_t = DEFAULT_RETRY_BASE_MS,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub retry_base_ms: u64,
    /// Longest delay between two attempts, in milliseconds. 10..=86400000.
    #[arg(long = "webhook-retry-max-ms", env = "VITALS_WEBHOOK_RETRY_MAX_MS", default_value_t = DEFAULT_RETRY_MAX_MS,
          value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
    pub retry_max_ms: u64,
    /// Attempts of one delivery before it is marked failed. 1..=50.
    #[arg(long = "webhook-max-attempts", env = "VITALS_WEBHOOK_MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_attempts: u32,
    /// Failed attempts in a row (over all its deliveries) that disable a subscription;
    /// 0 never disables.
    #[arg(long = "webhook-disable-after", env = "VITALS_WEBHOOK_DISABLE_AFTER", default_value_t = DEFAULT_DISABLE_AFTER)]
    pub disable_after: u32,
    /// Deliveries sent at once by one worker. 1..=256.
    #[arg(long = "webhook-concurrency", env = "VITALS_WEBHOOK_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Days finished deliveries (delivered or failed), their attempts and their events are
    /// kept in the delivery log; trimmed hourly. Pending deliveries are never trimmed.
    /// 0 keeps everything.
    #[arg(long = "webhook-retention-days", env = "VITALS_WEBHOOK_RETENTION_DAYS", default_value_t = DEFAULT_RETENTION_DAYS)]
    pub retention_days: u32,
}

/// Default of `--webhook-retention-days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

impl Default for WebhookArgs {
    fn default() -> Self {
        Self {
            poll_ms: DEFAULT_POLL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry_base_ms: DEFAULT_RETRY_BASE_MS,
            retry_max_ms: DEFAULT_RETRY_MAX_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            disable_after: DEFAULT_DISABLE_AFTER,
            concurrency: DEFAULT_CONCURRENCY,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

impl WebhookArgs {
    /// The worker's settings.
    pub fn settings(&self) -> Settings {
        Settings {
            poll: Duration::from_millis(self.poll_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms)),
            max_attempts: self.max_attempts,
            disable_after: self.disable_after,
            batch: self.concurrency,
            retention: (self.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.retention_days) * 86_400)),
        }
    }
}

/// Settings of the `vitals-webhooks` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "vitals-webhooks", about = "Vitals webhooks service")]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: WebhookArgs,
}

/// The webhooks gRPC service.
#[derive(Clone, Debug)]
pub struct WebhookService {
    store: Store,
}

/// Adds the webhooks service to `grpc` and starts its delivery worker, which stops once
/// `work` is shut down.
pub fn register_with_budget(
    grpc: &mut GrpcServer,
    store: Store,
    args: &WebhookArgs,
    server: &ServerConfig,
    work: WorkBudget,
) -> Result<(), RunError> {
    let settings = args.settings();
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Vitals-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RunError::Config(format!("webhook HTTP client: {e}")))?;
    tokio::spawn(domain::worker::run(
        store.clone(),
        settings,
        client,
        move || work.is_shut_down(),
    ));
    grpc.add(
        vitals_server::with_message_limits!(
            WebhookServiceServer::new(WebhookService { store }),
            server
        ),
        ROLES,
    );
    Ok(())
}

/// Serves the webhooks service alone on `listener` until `shutdown` completes, then
/// drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    vitals_server::serve_alone(&config.server, listener, shutdown, |grpc, store, work| {
        register_with_budget(grpc, store, &config.service, &config.server, work)
    })
    .await
}
