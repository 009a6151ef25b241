//! The profiles service of Vitals: health profiles, rule-based assignment of accounts to
//! them, and named scorecards.
//!
//! [`run`] serves it alone (the `vitals-profiles` binary); [`register`] adds it to a server
//! that hosts several services (the all-in-one `vitals`).
//!
//! Other services use [`assign::assign_accounts`] to give freshly upserted accounts their
//! profile at once; the schedules started by [`register`] do it anyway (see
//! docs/profiles.md).

pub mod assign;
mod convert;
#[cfg(test)]
mod convert_props;
mod domain;
pub mod error;
mod grpc;
pub mod measure;
mod roles;
pub use vitals_scorecard::rules;

pub use roles::ROLES;

use std::time::Duration;

use tokio::net::TcpListener;
use vitals_proto::profiles::v1::profiles_service_server::ProfilesServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, WorkBudget, shutdown::Signal};
use vitals_store::Store;

pub use error::ProfilesError;

/// Default of `--profiles-reassign-interval`: one week, in seconds.
pub const DEFAULT_REASSIGN_SECS: u64 = 7 * 24 * 3600;
/// Default of `--profiles-assign-pending-interval`: one minute, in seconds.
pub const DEFAULT_PENDING_SECS: u64 = 60;

/// Settings of the profiles service beyond the common server ones.
#[derive(Clone, Debug, clap::Args)]
pub struct ProfilesArgs {
    /// Seconds between full reassignment runs (every unpinned account re-evaluated, so
    /// plan changes and rule edits move accounts with nobody acting); 0 turns it off.
    #[arg(
        long = "profiles-reassign-interval",
        env = "VITALS_PROFILES_REASSIGN_INTERVAL",
        default_value_t = DEFAULT_REASSIGN_SECS
    )]
    pub reassign_interval_secs: u64,

    /// Seconds between passes that assign accounts with no profile yet or changed since
    /// the rules last saw them; 0 turns it off.
    #[arg(
        long = "profiles-assign-pending-interval",
        env = "VITALS_PROFILES_ASSIGN_PENDING_INTERVAL",
        default_value_t = DEFAULT_PENDING_SECS
    )]
    pub assign_pending_interval_secs: u64,
}

impl Default for ProfilesArgs {
    fn default() -> Self {
        Self {
            reassign_interval_secs: DEFAULT_REASSIGN_SECS,
            assign_pending_interval_secs: DEFAULT_PENDING_SECS,
        }
    }
}

/// The whole configuration of the `vitals-profiles` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "vitals-profiles",
    version,
    about = "Vitals profiles service: health profiles, rule-based assignment of accounts to them, and named scorecards"
)]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: ProfilesArgs,
}

/// The profiles gRPC service.
#[derive(Clone, Debug)]
pub struct ProfilesService {
    store: Store,
    /// The process's heavy-work budget: a preview loads and measures every account, so
    /// it takes a slot like a scoring run (docs/reliability.md, "Heavy work").
    work: WorkBudget,
}

impl ProfilesService {
    /// A service over `store` with a heavy-work budget of its own (the default limits).
    pub fn new(store: Store) -> Self {
        Self::with_budget(store, WorkBudget::default())
    }

    /// A service over `store` whose previews share the process's `work` budget.
    pub fn with_budget(store: Store, work: WorkBudget) -> Self {
        Self { store, work }
    }

    /// `PreviewScorecard` under the heavy-work budget: RESOURCE_EXHAUSTED when no slot
    /// frees up within the queue timeout, UNAVAILABLE once the server drains.
    pub async fn preview(
        &self,
        req: vitals_proto::profiles::v1::PreviewScorecardRequest,
    ) -> Result<vitals_proto::profiles::v1::PreviewScorecardResponse, vitals_server::ApiError> {
        let _work = self.work.start("PreviewScorecard").await?;
        Ok(measure::preview(&self.store, req).await?)
    }
}

/// Adds the profiles service to `grpc`, with the message size limits of `server` and a
/// heavy-work budget of its own, and starts its background work: creating the default
/// profile and the two assignment schedules of `args`.
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &ProfilesArgs,
    server: &ServerConfig,
) -> Result<(), RunError> {
    register_with_budget(grpc, store, args, server, WorkBudget::from_config(server))
}

/// [`register`], with previews under the process's shared heavy-work budget `work`.
pub fn register_with_budget(
    grpc: &mut GrpcServer,
    store: Store,
    args: &ProfilesArgs,
    server: &ServerConfig,
    work: WorkBudget,
) -> Result<(), RunError> {
    grpc.add(
        vitals_server::with_message_limits!(
            ProfilesServiceServer::new(ProfilesService::with_budget(store.clone(), work.clone())),
            server
        ),
        ROLES,
    );
    let leases = vitals_server::Leases::from_config(store.clone(), server);
    spawn_schedules(store, args, &leases, &work);
    Ok(())
}

/// Starts the background tasks; they end with the runtime. Each schedule runs on the one
/// replica holding its lease (`schedule:profiles-pending`, `schedule:profiles-reassign`;
/// docs/deploy.md).
fn spawn_schedules(
    store: Store,
    args: &ProfilesArgs,
    leases: &vitals_server::Leases,
    work: &WorkBudget,
) {
    let s = store.clone();
    tokio::spawn(async move {
        if let Err(e) = assign::ensure_default_profile(&s).await {
            tracing::warn!(error = %e, "cannot create the default profile yet; retried on use");
        }
    });
    if args.assign_pending_interval_secs > 0 {
        let s = store.clone();
        let every = Duration::from_secs(args.assign_pending_interval_secs);
        let w = work.clone();
        let stop = move || w.is_shut_down();
        leases.spawn_schedule("profiles-pending", Duration::ZERO, every, stop, move || {
            let s = s.clone();
            async move {
                match assign::assign_pending(&s).await {
                    Ok(r) if r.evaluated > 0 => tracing::info!(
                        evaluated = r.evaluated,
                        moved = r.moved,
                        "pending accounts assigned"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pending assignment failed"),
                }
            }
        });
    }
    if args.reassign_interval_secs > 0 {
        let every = Duration::from_secs(args.reassign_interval_secs);
        let w = work.clone();
        let stop = move || w.is_shut_down();
        leases.spawn_schedule("profiles-reassign", every, every, stop, move || {
            let store = store.clone();
            async move {
                let options = assign::RunOptions {
                    scope: assign::Scope::All,
                    dry_run: false,
                    max_moves: 0,
                };
                match assign::reassign(&store, options).await {
                    Ok(r) => tracing::info!(
                        evaluated = r.evaluated,
                        moved = r.moved,
                        pinned = r.pinned,
                        "scheduled reassignment done"
                    ),
                    Err(e) => tracing::warn!(error = %e, "scheduled reassignment failed"),
                }
            }
        });
    }
}

/// Serves the profiles service alone on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    vitals_server::serve_alone(&config.server, listener, shutdown, |grpc, store, work| {
        register_with_budget(grpc, store, &config.service, &config.server, work)
    })
    .await
}
