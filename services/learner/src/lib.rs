//! The learner service of Vitals: learns from recorded churn which signals matter, and measures it.
//!
//! [`run`] serves it alone (the `vitals-learner` binary); [`register`] adds it to a server
//! that hosts several services (the all-in-one `vitals`). docs/learning.md describes the
//! RPCs, the settings of [`LearnerArgs`] and the limits.

mod convert;
#[cfg(test)]
mod convert_props;
pub mod domain;
mod drift;
mod error;
mod grpc;
mod roles;
mod service;

pub use error::LearnerError;
pub use roles::ROLES;

use std::sync::Arc;

use tokio::net::TcpListener;
use vitals_proto::learner::v1::learner_service_server::LearnerServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, WorkBudget, shutdown::Signal};
use vitals_store::Store;

/// Default of `--learner-horizon-days`.
pub const DEFAULT_HORIZON_DAYS: u32 = 60;
/// Default of `--learner-observation-interval-days`.
pub const DEFAULT_INTERVAL_DAYS: u32 = 28;
/// Default of `--learner-prior-strength` (n0).
pub const DEFAULT_PRIOR_STRENGTH: f64 = 50.0;
/// Default of `--retrain-after-outcomes`.
pub const DEFAULT_RETRAIN_AFTER: u64 = 100;
/// Default of `--retrain-psi-threshold`: a significant shift by the usual reading.
pub const DEFAULT_RETRAIN_PSI: f64 = 0.25;
/// Default of `--drift-check-interval-secs`: hourly.
pub const DEFAULT_DRIFT_CHECK_SECS: u64 = 3600;
/// Default of `--learner-max-dataset-cells`: the memory bound of one training or
/// evaluation (see docs/reliability.md for the peak RSS it gives).
pub const DEFAULT_MAX_DATASET_CELLS: u64 = 16_000_000;

/// Settings of the learner service beyond the common server ones.
#[derive(Clone, Debug, clap::Args)]
pub struct LearnerArgs {
    /// Default label horizon in days (an observation is positive when the account churns
    /// within it); a Train or Evaluate request may override it. 1..365.
    #[arg(
        long = "learner-horizon-days",
        env = "VITALS_LEARNER_HORIZON_DAYS",
        default_value_t = DEFAULT_HORIZON_DAYS,
        value_parser = clap::value_parser!(u32).range(1..=365)
    )]
    pub horizon_days: u32,

    /// Default days between observation dates of the training set. 1..365.
    #[arg(
        long = "learner-observation-interval-days",
        env = "VITALS_LEARNER_OBSERVATION_INTERVAL_DAYS",
        default_value_t = DEFAULT_INTERVAL_DAYS,
        value_parser = clap::value_parser!(u32).range(1..=365)
    )]
    pub observation_interval_days: u32,

    /// Default shrinkage strength n0: learned KPI weights count n / (n + n0) against the
    /// uniform prior, n = churn outcomes seen.
    #[arg(
        long = "learner-prior-strength",
        env = "VITALS_LEARNER_PRIOR_STRENGTH",
        default_value_t = DEFAULT_PRIOR_STRENGTH,
        value_parser = parse_prior_strength
    )]
    pub prior_strength: f64,

    /// Train every profile and the global model automatically once this many new
    /// outcomes have been recorded since the last training; 0 turns it off.
    #[arg(
        long = "retrain-after-outcomes",
        env = "VITALS_LEARNER_RETRAIN_AFTER_OUTCOMES",
        default_value_t = DEFAULT_RETRAIN_AFTER
    )]
    pub retrain_after_outcomes: u64,

    /// Most cells (observations x feature columns) one training set may hold: the memory
    /// bound of Train and Evaluate. A request over it gets RESOURCE_EXHAUSTED naming
    /// `observation_interval_days` before any KPI is computed. 1,000..=1,000,000,000.
    #[arg(
        long = "learner-max-dataset-cells",
        env = "VITALS_LEARNER_MAX_DATASET_CELLS",
        default_value_t = DEFAULT_MAX_DATASET_CELLS,
        value_parser = clap::value_parser!(u64).range(1_000..=1_000_000_000)
    )]
    pub max_dataset_cells: u64,

    /// Whether each profile's model borrows from the global model (the global model plus
    /// a deviation shrunk by the profile's data, its strength chosen by time-ordered CV)
    /// rather than being fitted on the profile's data alone. `true` or `false`.
    #[arg(
        long = "learner-profile-borrowing",
        env = "VITALS_LEARNER_PROFILE_BORROWING",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub profile_borrowing: bool,

    /// Whether training also fits the gradient-boosted challenger next to the logistic
    /// model, and serves its churn probability when the time-ordered CV says it wins
    /// (docs/learning.md, "The challenger in the learner"); a Train request's
    /// `options.challenger` overrides it. Off by default: one booster fit took 40-85 s on
    /// 2 cores on the full sample, against a training target of 20 s. `true` or `false`.
    #[arg(
        long = "learner-challenger",
        env = "VITALS_LEARNER_CHALLENGER",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub challenger: bool,

    /// Retrain when the population stability index of a serving model's KPI (current
    /// population against its training data) passes this, on data newer than the model's:
    /// the scheduled drift check then emits a `model.drift_detected` webhook event (once
    /// per model version and level) and trains every profile and the global model. 0
    /// turns it off. A finite number >= 0.
    #[arg(
        long = "retrain-psi-threshold",
        env = "VITALS_LEARNER_RETRAIN_PSI_THRESHOLD",
        default_value_t = DEFAULT_RETRAIN_PSI,
        value_parser = parse_non_negative
    )]
    pub retrain_psi_threshold: f64,

    /// Seconds between drift checks (on one replica: the lease
    /// `schedule:learner-drift`); 0 turns the check off.
    #[arg(
        long = "drift-check-interval-secs",
        env = "VITALS_LEARNER_DRIFT_CHECK_INTERVAL_SECS",
        default_value_t = DEFAULT_DRIFT_CHECK_SECS
    )]
    pub drift_check_interval_secs: u64,
}

/// A finite number >= 0.
fn parse_non_negative(s: &str) -> Result<f64, String> {
    parse_prior_strength(s)
}

/// A finite number >= 0.
fn parse_prior_strength(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number >= 0")),
    }
}

impl Default for LearnerArgs {
    fn default() -> Self {
        Self {
            horizon_days: DEFAULT_HORIZON_DAYS,
            observation_interval_days: DEFAULT_INTERVAL_DAYS,
            prior_strength: DEFAULT_PRIOR_STRENGTH,
            retrain_after_outcomes: DEFAULT_RETRAIN_AFTER,
            max_dataset_cells: DEFAULT_MAX_DATASET_CELLS,
            profile_borrowing: true,
            challenger: false,
            retrain_psi_threshold: DEFAULT_RETRAIN_PSI,
            drift_check_interval_secs: DEFAULT_DRIFT_CHECK_SECS,
        }
    }
}

/// The whole configuration of the `vitals-learner` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "vitals-learner",
    version,
    about = "Vitals learner service: learns from recorded churn which signals matter, and measures it"
)]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: LearnerArgs,
}

/// The learner gRPC service.
#[derive(Clone, Debug)]
pub struct LearnerService {
    store: Store,
    args: LearnerArgs,
    /// Serialises training runs (on demand and automatic) of this process.
    training: Arc<tokio::sync::Mutex<service::TrainState>>,
    /// Set while an automatic training task waits for the lock.
    auto_pending: Arc<service::AutoPending>,
    /// The process's budget of heavy work: Train, Evaluate, PredictChurn and automatic
    /// training each hold a slot while they run, and stop when it cancels them.
    work: WorkBudget,
    /// This replica's leases: training runs of all replicas take [`TRAIN_LEASE`].
    leases: vitals_server::Leases,
}

/// The lease every training run (Train and automatic) holds, so that the replicas
/// sharing a database train one at a time (docs/deploy.md).
pub const TRAIN_LEASE: &str = "learner:train";

impl LearnerService {
    /// A service over `store` with a budget of its own at the default limits (an
    /// embedder that runs other heavy services should share one: [`LearnerService::with_budget`]).
    pub fn new(store: Store, args: LearnerArgs) -> Self {
        Self::with_budget(store, args, WorkBudget::default())
    }

    /// A service over `store` whose heavy work runs under `work` (shared with the other
    /// services of the process; [`WorkBudget::shutdown`] cancels it).
    pub fn with_budget(store: Store, args: LearnerArgs, work: WorkBudget) -> Self {
        let leases = vitals_server::Leases::new(
            store.clone(),
            std::time::Duration::from_millis(vitals_server::lease::DEFAULT_LEASE_TTL_MS),
        );
        Self::with_leases(store, args, work, leases)
    }

    /// [`LearnerService::with_budget`] with its training runs serialised across
    /// replicas through `leases`.
    pub fn with_leases(
        store: Store,
        args: LearnerArgs,
        work: WorkBudget,
        leases: vitals_server::Leases,
    ) -> Self {
        Self {
            leases,
            store,
            args,
            training: Arc::default(),
            auto_pending: Arc::default(),
            work,
        }
    }
}

/// Adds the learner service to `grpc`, with the message size limits of `server` and a
/// heavy-work budget of its own from `server` (see [`register_with_budget`] to share one
/// and cancel it on shutdown).
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &LearnerArgs,
    server: &ServerConfig,
) -> Result<(), RunError> {
    register_with_budget(grpc, store, args, server, WorkBudget::from_config(server))
}

/// Adds the learner service to `grpc`, with the message size limits of `server`; its
/// heavy work runs under `work`.
pub fn register_with_budget(
    grpc: &mut GrpcServer,
    store: Store,
    args: &LearnerArgs,
    server: &ServerConfig,
    work: WorkBudget,
) -> Result<(), RunError> {
    // StartTraining / StartEvaluation: one Operations service per server.
    vitals_server::operations::register(grpc, &store, server);
    let leases = vitals_server::Leases::from_config(store.clone(), server);
    let service = LearnerService::with_leases(store, args.clone(), work.clone(), leases.clone());
    grpc.add(
        vitals_server::with_message_limits!(LearnerServiceServer::new(service.clone()), server),
        ROLES,
    );
    if args.drift_check_interval_secs > 0 && args.retrain_psi_threshold > 0.0 {
        // Once per cluster: only the replica holding `schedule:learner-drift` checks.
        let every = std::time::Duration::from_secs(args.drift_check_interval_secs);
        leases.spawn_schedule(
            "learner-drift",
            every,
            every,
            move || work.is_shut_down(),
            move || {
                let s = service.clone();
                async move {
                    if let Err(e) = s.check_drift().await {
                        tracing::warn!(error = %e, "drift check failed");
                    }
                }
            },
        );
    }
    Ok(())
}

/// Serves the learner service alone on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    let work = WorkBudget::from_config(&config.server);
    run_with_budget(config, listener, shutdown, work).await
}

/// [`run`] with the heavy-work budget given: the shutdown signal cancels every heavy
/// operation in flight (so the drain ends within its timeout) before the server drains.
pub async fn run_with_budget(
    config: Config,
    listener: TcpListener,
    shutdown: Signal,
    work: WorkBudget,
) -> Result<(), RunError> {
    let server = &config.server;
    vitals_server::serve_alone_with_budget(server, listener, shutdown, work, |grpc, store, work| {
        register_with_budget(grpc, store, &config.service, server, work)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_strength_must_be_finite_and_not_negative() {
        assert_eq!(parse_prior_strength("0"), Ok(0.0));
        assert_eq!(parse_prior_strength("12.5"), Ok(12.5));
        for bad in ["-1", "NaN", "inf", "x", ""] {
            assert!(parse_prior_strength(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn learner_settings_parse_with_their_defaults() {
        use clap::Parser;
        let c = Config::try_parse_from(["vitals-learner", "--retrain-after-outcomes", "7"])
            .expect("parse");
        assert_eq!(c.service.retrain_after_outcomes, 7);
        assert_eq!(c.service.horizon_days, DEFAULT_HORIZON_DAYS);
        assert_eq!(c.service.observation_interval_days, DEFAULT_INTERVAL_DAYS);
        assert_eq!(c.service.prior_strength, DEFAULT_PRIOR_STRENGTH);
        assert!(Config::try_parse_from(["vitals-learner", "--learner-horizon-days", "0"]).is_err());
        assert_eq!(c.service.retrain_psi_threshold, DEFAULT_RETRAIN_PSI);
        assert_eq!(
            c.service.drift_check_interval_secs,
            DEFAULT_DRIFT_CHECK_SECS
        );
        assert!(!c.service.challenger, "the challenger is off by default");
        let on = Config::try_parse_from(["vitals-learner", "--learner-challenger", "true"])
            .expect("parse");
        assert!(on.service.challenger);
        assert!(Config::try_parse_from(["vitals-learner", "--learner-challenger", "yes"]).is_err());
        let off = Config::try_parse_from(["vitals-learner", "--retrain-psi-threshold", "0"])
            .expect("parse");
        assert_eq!(off.service.retrain_psi_threshold, 0.0);
        assert!(
            Config::try_parse_from(["vitals-learner", "--retrain-psi-threshold", "-0.1"]).is_err()
        );
    }
}
