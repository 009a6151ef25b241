//! The scoring service of Vitals: computes, stores and explains health scores.
//!
//! [`run`] serves it alone (the `vitals-scoring` binary); [`register`] adds it to a server
//! that hosts several services; [`register_with_learner`] does the same with an explicit
//! learner (the all-in-one `vitals` passes its in-process learner, see [`weights`]).
//!
//! In-process callers (e.g. `vitals demo`) can use [`ScoringService::compute`] and the
//! gRPC API through a client; see docs/scoring-service.md.

mod cache;
mod convert;
#[cfg(test)]
mod convert_props;
pub mod domain;
mod error;
mod grpc;
mod roles;
pub mod ui;
pub mod weights;

pub use error::ScoringError;
pub use roles::ROLES;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use vitals_proto::scoring::v1::scoring_service_server::ScoringServiceServer;
pub use vitals_scoring_core::RollupMethod;
use vitals_server::client::ClientTls;
use vitals_server::{GrpcServer, Leases, RunError, ServerConfig, WorkBudget, shutdown::Signal};
use vitals_store::Store;

pub use domain::compute::{BandChange, ProfileSummary, RunSummary, Scope};
pub use weights::{GrpcLearner, InProcessLearner, WeightsProvider};

/// Default of `--learner-timeout-ms`.
pub const DEFAULT_LEARNER_TIMEOUT_MS: u64 = 2_000;
/// Default of `--weights-ttl`: five minutes, in seconds.
pub const DEFAULT_WEIGHTS_TTL_SECS: u64 = 300;
/// Default of `--scoring-interval`: one hour, in seconds.
pub const DEFAULT_INTERVAL_SECS: u64 = 3_600;
/// Band changes a WatchScores client may fall behind before it is disconnected.
pub const WATCH_BUFFER: usize = 10_000;
/// The lease every scoring run holds, so that runs of all replicas sharing a database
/// are serialised (docs/deploy.md).
pub const RUN_LEASE: &str = "scoring:run";

/// Settings of the scoring service beyond the common server ones.
#[derive(Clone, Debug, clap::Args)]
pub struct ScoringArgs {
    /// URL of the learner service (`http://host:port` or `https://...`) asked for KPI
    /// weights. Unset: uniform weights (the standalone binary), or the in-process learner
    /// in the all-in-one `vitals`.
    #[arg(long = "learner-url", env = "VITALS_LEARNER_URL")]
    pub learner_url: Option<String>,
    /// CA certificate to verify an https learner URL with.
    #[arg(long = "learner-ca-cert", env = "VITALS_LEARNER_CA_CERT")]
    pub learner_ca_cert: Option<std::path::PathBuf>,
    /// Bearer token sent to the learner (role `read`).
    #[arg(
        long = "learner-token",
        env = "VITALS_LEARNER_TOKEN",
        hide_env_values = true
    )]
    pub learner_token: Option<String>,
    /// Deadline of a GetWeights call, in milliseconds; past it the last known (or
    /// uniform) weights are used.
    #[arg(
        long = "learner-timeout-ms",
        env = "VITALS_LEARNER_TIMEOUT_MS",
        default_value_t = DEFAULT_LEARNER_TIMEOUT_MS
    )]
    pub learner_timeout_ms: u64,
    /// Seconds a learner answer is reused before asking again (0: ask on every run).
    #[arg(
        long = "weights-ttl",
        env = "VITALS_WEIGHTS_TTL",
        default_value_t = DEFAULT_WEIGHTS_TTL_SECS
    )]
    pub weights_ttl_secs: u64,
    /// Seconds between scheduled recomputes of every account; 0 turns the schedule off.
    #[arg(
        long = "scoring-interval",
        env = "VITALS_SCORING_INTERVAL",
        default_value_t = DEFAULT_INTERVAL_SECS
    )]
    pub interval_secs: u64,
    /// Latest scores GetScore keeps in memory (0: none, every call reads the database).
    /// About 3 KB each with explanations; see docs/scoring-service.md.
    #[arg(
        long = "score-cache-entries",
        env = "VITALS_SCORE_CACHE_ENTRIES",
        default_value_t = cache::DEFAULT_ENTRIES
    )]
    pub score_cache_entries: u64,
    /// Milliseconds between checks for scoring runs committed by other processes on the
    /// same database; cached scores may be that much behind such a run (never behind a
    /// run of this process).
    #[arg(
        long = "score-cache-refresh-ms",
        env = "VITALS_SCORE_CACHE_REFRESH_MS",
        default_value_t = cache::DEFAULT_REFRESH_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub score_cache_refresh_ms: u64,
    /// How a parent account's direct children's scores are rolled up next to its own
    /// score: `mrr-weighted` (by each child's current MRR; the plain mean when no child
    /// has any), `mean` or `min` (docs/scoring.md "Parent accounts").
    #[arg(
        long = "rollup",
        env = "VITALS_ROLLUP",
        default_value = "mrr-weighted",
        value_parser = parse_rollup
    )]
    pub rollup: RollupMethod,
}

/// Parses `--rollup`.
fn parse_rollup(s: &str) -> Result<RollupMethod, String> {
    RollupMethod::parse(s).ok_or_else(|| {
        let names: Vec<&str> = RollupMethod::ALL.iter().map(|m| m.as_str()).collect();
        format!("expected one of {}, got {s:?}", names.join(", "))
    })
}

impl Default for ScoringArgs {
    /// No learner URL, default deadline and TTL, and no schedule (what tests want).
    fn default() -> Self {
        Self {
            learner_url: None,
            learner_ca_cert: None,
            learner_token: None,
            learner_timeout_ms: DEFAULT_LEARNER_TIMEOUT_MS,
            weights_ttl_secs: DEFAULT_WEIGHTS_TTL_SECS,
            interval_secs: 0,
            score_cache_entries: cache::DEFAULT_ENTRIES,
            score_cache_refresh_ms: cache::DEFAULT_REFRESH_MS,
            rollup: RollupMethod::default(),
        }
    }
}

/// The whole configuration of the `vitals-scoring` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "vitals-scoring",
    version,
    about = "Vitals scoring service: computes, stores and explains health scores"
)]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: ScoringArgs,
}

/// Shared state of the service.
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) weights: weights::WeightsCache,
    /// Serialises runs (overlapping scopes never interleave their writes) in this
    /// process; across replicas they also take the lease [`RUN_LEASE`].
    pub(crate) run_lock: tokio::sync::Mutex<()>,
    /// This replica's leases (the scoring-run mutex, the schedule).
    pub(crate) leases: Leases,
    /// Runs this process committed since the last look at other replicas' runs
    /// (`domain::foreign`).
    pub(crate) own_runs: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Band changes of committed runs.
    pub(crate) changes: broadcast::Sender<Arc<BandChange>>,
    /// Latest scores served by GetScore.
    pub(crate) latest: Arc<cache::LatestCache>,
    /// The process's budget of heavy work: every scoring run holds a slot.
    pub(crate) work: WorkBudget,
    /// How parents' roll-ups are computed (`--rollup`).
    pub(crate) rollup: RollupMethod,
}

/// The scoring gRPC service (cheap to clone).
#[derive(Clone)]
pub struct ScoringService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScoringService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoringService")
            .field("weights", &self.inner.weights)
            .finish()
    }
}

impl ScoringService {
    /// A service over `store` asking `learner` for weights (none: uniform weights), with a
    /// heavy-work budget of its own at the default limits.
    pub fn new(
        store: Store,
        args: &ScoringArgs,
        learner: Option<Arc<dyn WeightsProvider>>,
    ) -> Self {
        Self::with_budget(store, args, learner, WorkBudget::default())
    }

    /// [`ScoringService::new`] with its scoring runs under `work` (shared with the other
    /// services of the process; [`WorkBudget::shutdown`] cancels them).
    pub fn with_budget(
        store: Store,
        args: &ScoringArgs,
        learner: Option<Arc<dyn WeightsProvider>>,
        work: WorkBudget,
    ) -> Self {
        let leases = Leases::new(
            store.clone(),
            Duration::from_millis(vitals_server::lease::DEFAULT_LEASE_TTL_MS),
        );
        Self::with_leases(store, args, learner, work, leases)
    }

    /// [`ScoringService::with_budget`] with its runs serialised across replicas through
    /// `leases`.
    pub fn with_leases(
        store: Store,
        args: &ScoringArgs,
        learner: Option<Arc<dyn WeightsProvider>>,
        work: WorkBudget,
        leases: Leases,
    ) -> Self {
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        Self {
            inner: Arc::new(Inner {
                store,
                weights: weights::WeightsCache::new(
                    learner,
                    Duration::from_millis(args.learner_timeout_ms.max(1)),
                    Duration::from_secs(args.weights_ttl_secs),
                ),
                run_lock: tokio::sync::Mutex::new(()),
                leases,
                own_runs: Default::default(),
                changes,
                latest: Arc::new(cache::LatestCache::new(args.score_cache_entries)),
                work,
                rollup: args.rollup,
            }),
        }
    }

    /// Computes and stores scores for `scope` as of `as_of` (now when `None`); what
    /// ComputeScores does.
    pub async fn compute(
        &self,
        scope: Scope,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<RunSummary, ScoringError> {
        let as_of = convert::truncate(as_of.unwrap_or_else(Utc::now));
        domain::compute::run(&self.inner, scope, as_of).await
    }

    /// A receiver of every band change committed from now on (what WatchScores reads).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BandChange>> {
        self.inner.changes.subscribe()
    }
}

/// The learner client `args` configure: gRPC at `--learner-url`, or none.
pub fn learner_from_args(
    args: &ScoringArgs,
    server: &ServerConfig,
) -> Result<Option<Arc<dyn WeightsProvider>>, RunError> {
    let Some(url) = args.learner_url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let tls = ClientTls::for_service(server, args.learner_ca_cert.clone());
    let learner = GrpcLearner::new(
        url,
        &tls,
        args.learner_token.as_deref(),
        server.max_message_bytes as usize,
    )
    .map_err(|e| RunError::Config(format!("--learner-url {url}: {e}")))?;
    Ok(Some(Arc::new(learner)))
}

/// Adds the scoring service to `grpc` with the learner of `args` (see
/// [`learner_from_args`]) and starts its schedule.
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &ScoringArgs,
    server: &ServerConfig,
) -> Result<ScoringService, RunError> {
    let learner = learner_from_args(args, server)?;
    register_with_learner(grpc, store, args, server, learner)
}

/// Adds the scoring service to `grpc`, asking `learner` for weights, with the message
/// size limits of `server`, and starts the recompute schedule of `args`; its runs get a
/// heavy-work budget of their own from `server` (see [`register_with_budget`]).
pub fn register_with_learner(
    grpc: &mut GrpcServer,
    store: Store,
    args: &ScoringArgs,
    server: &ServerConfig,
    learner: Option<Arc<dyn WeightsProvider>>,
) -> Result<ScoringService, RunError> {
    let work = WorkBudget::from_config(server);
    register_with_budget(grpc, store, args, server, learner, work)
}

/// [`register_with_learner`] with the runs (requested and scheduled) under `work`; the
/// schedule stops once `work` is shut down.
pub fn register_with_budget(
    grpc: &mut GrpcServer,
    store: Store,
    args: &ScoringArgs,
    server: &ServerConfig,
    learner: Option<Arc<dyn WeightsProvider>>,
    work: WorkBudget,
) -> Result<ScoringService, RunError> {
    let leases = Leases::from_config(store.clone(), server);
    let service = ScoringService::with_leases(store.clone(), args, learner, work, leases);
    // WatchScores also streams the band changes of runs of other replicas (PostgreSQL:
    // several processes share it; a SQLite database has one).
    if store.backend() == vitals_store::sea_orm::DbBackend::Postgres {
        domain::foreign::spawn(
            Arc::downgrade(&service.inner),
            Duration::from_millis(args.score_cache_refresh_ms),
        );
    }
    if args.score_cache_entries > 0 {
        cache::spawn_refresh(
            Arc::downgrade(&service.inner.latest),
            store,
            Duration::from_millis(args.score_cache_refresh_ms),
        );
    }
    // StartComputeScores: one Operations service per server.
    vitals_server::operations::register(grpc, &service.inner.store, server);
    grpc.add(
        vitals_server::with_message_limits!(ScoringServiceServer::new(service.clone()), server),
        ROLES,
    );
    // The read-only web UI on the same port (docs/ui.md); its cookie is Secure over TLS.
    grpc.http(ui::router(&service, server.tls_cert.is_some()));
    if args.interval_secs > 0 {
        // Once per cluster: only the replica holding the lease `schedule:scoring` runs
        // the ticks (docs/deploy.md).
        let every = Duration::from_secs(args.interval_secs);
        let s = service.clone();
        let work = service.inner.work.clone();
        service.inner.leases.spawn_schedule(
            "scoring",
            every,
            every,
            move || work.is_shut_down(),
            move || {
                let s = s.clone();
                async move {
                    match s.compute(Scope::All, None).await {
                        Ok(r) => {
                            vitals_server::metrics::scores_computed(
                                "schedule",
                                u64::from(r.scored),
                            );
                            tracing::info!(
                                run = r.run_id,
                                scored = r.scored,
                                band_changes = r.band_changes,
                                "scheduled scoring run done"
                            )
                        }
                        Err(e) => tracing::warn!(error = %e, "scheduled scoring run failed"),
                    }
                }
            },
        );
    }
    Ok(service)
}

/// Serves the scoring service alone on `listener` until `shutdown` completes, then drains.
///
/// The shutdown signal cancels every scoring run in flight before the server drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    let learner = learner_from_args(&config.service, &config.server)?;
    vitals_server::serve_alone(&config.server, listener, shutdown, |grpc, store, work| {
        register_with_budget(grpc, store, &config.service, &config.server, learner, work).map(drop)
    })
    .await
}

#[cfg(test)]
mod rollup_setting_tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        scoring: ScoringArgs,
    }

    #[test]
    fn rollup_is_mrr_weighted_by_default_and_refuses_unknown_methods() {
        let a = Args::try_parse_from(["x"]).unwrap();
        assert_eq!(a.scoring.rollup, RollupMethod::MrrWeighted);
        let a = Args::try_parse_from(["x", "--rollup", "min"]).unwrap();
        assert_eq!(a.scoring.rollup, RollupMethod::Min);
        let e = Args::try_parse_from(["x", "--rollup", "median"])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("mrr-weighted, mean, min"), "{e}");
    }
}
