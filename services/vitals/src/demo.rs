//! `vitals demo`: the whole product in one command, on the sample data.
//!
//! It starts the all-in-one server in this process (SQLite, `127.0.0.1:0`, auth off:
//! the server only listens on loopback and only for the demo's own calls), then, through
//! the public gRPC API only:
//!
//! 1. creates three health profiles with CEL rules over the sample's account attributes
//!    (`channel`, `country`): web sign-ups, app-store sign-ups in the Americas, the other
//!    app-store sign-ups; the built-in default profile takes the rest;
//! 2. loads the sample data with the loader of `vitals load` (accounts, subscriptions,
//!    events, and the churn outcomes derived from the subscriptions);
//! 3. re-evaluates the assignment rules (`ReassignAccounts`);
//! 4. marks the accounts whose last subscription ended by the data's end as CHURNED, so
//!    that the portfolio shows the customers still there (their outcomes stay recorded
//!    for the learner);
//! 5. trains the churn models (`LearnerService.Train`) as of the data's end;
//! 6. computes every score as of the data's end (`ScoringService.ComputeScores`);
//! 7. prints the portfolio: band counts per profile, a histogram, the ten accounts most
//!    at risk with their top drivers, and the learner's honest evaluation (`Evaluate`).
//!
//! The sample data stops in 2020, so "now" is the data's end: the latest subscription
//! start in `subscription.csv.gz` (the loader's churn cutoff), end of that day, UTC.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};
use crate::loader::{self, LoadArgs, LoadError};
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_server::RunError;
use vitals_server::shutdown::Signal;

/// Where the full sample data is looked for first, relative to the working directory
/// (the repository's sibling `shared/` folder; not part of a clone).
pub const FULL_SAMPLE_DIR: &str = "../shared/data/socialnet7";
/// The small sample shipped in the repository, relative to its root.
pub const SMALL_SAMPLE_DIR: &str = "tests/data/socialnet7-small";
/// Rows of the at-risk table.
pub const AT_RISK_ROWS: usize = 10;
/// Drivers shown per at-risk account.
pub const DRIVERS_SHOWN: usize = 3;
/// How long the in-process server may take to answer health checks.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Unary deadline of the in-process server: training and scoring the full sample take
/// minutes on a small machine, far over the 60 s default of `vitals serve`.
const DEMO_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// Training-set bound of the in-process learner: the full sample's weekly observations
/// (about 100,000 x 267 features = 27 million cells) are over the server default
/// (`vitals_learner::DEFAULT_MAX_DATASET_CELLS`); the demo is the only heavy caller of its
/// own server, so it may use more memory (see docs/reliability.md).
const DEMO_MAX_DATASET_CELLS: u64 = 40_000_000;

/// Settings of `vitals demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder of sample data (account.csv.gz, subscription.csv.gz, event_type.csv.gz,
    /// event.csv.gz). Default: `../shared/data/socialnet7` when present, else the small
    /// sample `tests/data/socialnet7-small` of the repository.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Database to run on. Default: a fresh SQLite file in a temporary folder, removed
    /// when the demo ends. A database given here is kept (and reused if run again).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Address of the in-process server (port 0 picks a free one). Auth is off: keep it
    /// on loopback.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// After the summary, keep serving (on `--listen`) until Ctrl-C, so that the scores
    /// can be explored with grpcurl or `vitals load`.
    #[arg(long)]
    pub keep_serving: bool,
    /// Load only the accounts whose numeric id is divisible by N (a quicker, smaller
    /// portfolio).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub account_divisor: Option<u64>,
}

impl DemoArgs {
    /// The demo on `data_dir` with a fresh temporary database and every other setting at
    /// its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: Some(data_dir.into()),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            keep_serving: false,
            account_divisor: None,
        }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// No sample data where it was looked for.
    #[error("sample data not found: {0}")]
    NoData(String),
    /// A local file or the console failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The in-process server failed to start or stopped.
    #[error("the in-process server failed: {0}")]
    Server(String),
    /// The loader failed.
    #[error("loading the sample data failed: {0}")]
    Load(#[from] LoadError),
    /// A call was refused.
    #[error("{rpc} failed: {status}")]
    Rpc {
        /// The RPC.
        rpc: &'static str,
        /// Its status.
        status: Box<tonic::Status>,
    },
}

impl DemoError {
    /// The process exit code: 64 when the data or the settings are unusable, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoData(_) => vitals_server::EXIT_CONFIG,
            _ => 1,
        }
    }
}

fn rpc(name: &'static str) -> impl FnOnce(tonic::Status) -> DemoError {
    move |status| DemoError::Rpc {
        rpc: name,
        status: Box::new(status),
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// Band counts of one profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileBands {
    /// `profiles/{id}`.
    pub profile: String,
    /// Its display name.
    pub display_name: String,
    /// Scored accounts (= red + yellow + green).
    pub scored: u32,
    /// Red, yellow, green.
    pub bands: [u32; 3],
}

/// One row of the at-risk table.
#[derive(Clone, Debug, PartialEq)]
pub struct AtRisk {
    /// The account.
    pub account_id: String,
    /// Its profile.
    pub profile: String,
    /// Profile score, 0..10.
    pub score: f64,
    /// Its band.
    pub band: cpb::Band,
    /// Churn probability when a model exists.
    pub churn_probability: Option<f64>,
    /// The KPIs pulling the score down most: (kpi, peer percentile, contribution).
    pub drivers: Vec<(String, f64, f64)>,
}

/// What the demo found, as printed.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoSummary {
    /// The time the scores were computed as of (the data's end).
    pub as_of: NaiveDate,
    /// Accounts scored by ComputeScores.
    pub scored: u32,
    /// Band counts per profile (profiles with no scored account left out).
    pub profiles: Vec<ProfileBands>,
    /// The whole portfolio's histogram: 10 bins of width 1.
    pub histogram: Vec<u32>,
    /// The accounts most at risk, lowest score first.
    pub at_risk: Vec<AtRisk>,
    /// AUC of the churn probability (global model, in-sample).
    pub churn_auc: f64,
    /// Mean test AUC of the time-split backtest of the churn probability.
    pub churn_backtest_auc: f64,
    /// AUC of the health score itself as a churn predictor.
    pub health_score_auc: f64,
}

/// The sample folder used when `--data-dir` is not given: the full sample next to the
/// working directory when present, else the small one of the repository (looked up from
/// the working directory, then from where this crate was built).
pub fn default_data_dir() -> Result<PathBuf, DemoError> {
    let candidates = [
        PathBuf::from(FULL_SAMPLE_DIR),
        PathBuf::from(SMALL_SAMPLE_DIR),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(SMALL_SAMPLE_DIR),
    ];
    candidates
        .iter()
        .find(|d| d.join("event.csv.gz").is_file())
        .cloned()
        .ok_or_else(|| {
            DemoError::NoData(format!(
                "none of {} holds event.csv.gz; pass --data-dir",
                candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The demo's three profiles: (id, display name, rule, priority, usage weight).
const PROFILES: [(&str, &str, &str, i32, f64); 3] = [
    ("web", "Web sign-ups", r#"channel == "web""#, 10, 2.0),
    (
        "app-americas",
        "App store, Americas",
        r#"channel != "web" && country in ["US", "CA", "MX", "BR", "AR", "CO", "CL", "PE"]"#,
        20,
        3.0,
    ),
    (
        "app-world",
        "App store, rest of the world",
        r#"channel in ["appstore1", "appstore2"]"#,
        30,
        3.0,
    ),
];

/// Label horizon of the demo's models: churn within a month, as in the book the sample
/// comes from.
pub const HORIZON_DAYS: u32 = 28;
/// Days between observation dates of the demo's training sets.
pub const OBSERVATION_INTERVAL_DAYS: u32 = 7;

/// The sample covers five months: with the server's defaults (60-day horizon, an
/// observation every 28 days) only two or three observation dates would have a known
/// label, too few for a time-split backtest; a one-month horizon and weekly observations
/// give about fourteen.
fn training_options() -> lpb::TrainingOptions {
    lpb::TrainingOptions {
        horizon_days: Some(HORIZON_DAYS),
        observation_interval_days: Some(OBSERVATION_INTERVAL_DAYS),
        prior_strength: None,
        l2_penalty: None,
    }
}

/// Accounts of `dir`'s subscription file whose last subscription ended on or before the
/// data's end (no open or later one), and that end: the latest subscription start, as
/// the loader's default churn cutoff.
fn churned_accounts(
    dir: &Path,
    divisor: Option<u64>,
) -> Result<(Vec<String>, NaiveDate), DemoError> {
    let path = dir.join("subscription.csv.gz");
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| flate2::read::GzDecoder::new(f).read_to_string(&mut text))
        .map_err(io(format!("reading {}", path.display())))?;
    let bad = |line: usize, why: &str| {
        DemoError::NoData(format!("{}:{}: {why}", path.display(), line + 1))
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, l)| l.split(',').collect())
        .unwrap_or_default();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(0, &format!("no {name} column")))
    };
    let (c_acc, c_start, c_end) = (col("account_id")?, col("start_date")?, col("end_date")?);
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d");
    // Per account: the latest end (None = open-ended).
    let mut last_end: HashMap<String, Option<NaiveDate>> = HashMap::new();
    let mut cutoff = NaiveDate::MIN;
    for (i, line) in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(acc), Some(start), Some(end)) = (f.get(c_acc), f.get(c_start), f.get(c_end))
        else {
            continue;
        };
        if let Some(d) = divisor
            && !acc.parse::<u64>().is_ok_and(|n| n % d == 0)
        {
            continue;
        }
        let start = date(start).map_err(|e| bad(i, &format!("start_date: {e}")))?;
        let end = if end.is_empty() {
            None
        } else {
            Some(date(end).map_err(|e| bad(i, &format!("end_date: {e}")))?)
        };
        cutoff = cutoff.max(start);
        let e = last_end.entry((*acc).to_string()).or_insert(end);
        *e = match (*e, end) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
    }
    if cutoff == NaiveDate::MIN {
        return Err(bad(0, "no subscription"));
    }
    let mut churned: Vec<String> = last_end
        .into_iter()
        .filter(|(_, end)| end.is_some_and(|e| e <= cutoff))
        .map(|(a, _)| a)
        .collect();
    churned.sort();
    Ok((churned, cutoff))
}

fn timestamp(t: chrono::NaiveDateTime) -> prost_types::Timestamp {
    let t = t.and_utc();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// The in-process server: stop it with [`Server::stop`].
struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Server {
    async fn start(database_url: &str, listen: SocketAddr) -> Result<Self, DemoError> {
        let mut config = crate::ServeConfig::for_tests(database_url);
        config.server.listen = listen;
        config.server.request_timeout = DEMO_REQUEST_TIMEOUT;
        config.learner.max_dataset_cells = DEMO_MAX_DATASET_CELLS;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(io(format!("binding {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        let (tx, rx) = oneshot::channel::<()>();
        let signal: Signal = Box::pin(async move {
            let _ = rx.await;
        });
        let handle = tokio::spawn(crate::run(config, listener, signal));
        let mut server = Self {
            addr,
            shutdown: Some(tx),
            handle,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_ready(&mut self) -> Result<(), DemoError> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if self.handle.is_finished() {
                return Err(match (&mut self.handle).await {
                    Ok(Err(e)) => DemoError::Server(e.to_string()),
                    Ok(Ok(())) => DemoError::Server("stopped before serving".into()),
                    Err(e) => DemoError::Server(e.to_string()),
                });
            }
            let status = async {
                let ch = Endpoint::from_shared(self.url())
                    .ok()?
                    .connect_timeout(Duration::from_secs(1))
                    .connect()
                    .await
                    .ok()?;
                let r = HealthClient::new(ch)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .ok()?;
                Some(r.into_inner().status())
            }
            .await;
            if status == Some(ServingStatus::Serving) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::Server(format!(
                    "not serving after {} s",
                    READY_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(mut self) -> Result<(), DemoError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DemoError::Server(e.to_string())),
            Err(e) => Err(DemoError::Server(e.to_string())),
        }
    }
}

/// A fresh SQLite database in a new temporary folder, removed on drop.
struct TempDb {
    dir: PathBuf,
}

impl TempDb {
    fn create() -> Result<Self, DemoError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("vitals-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(Self { dir })
    }

    fn url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.join("vitals-demo.db").display()
        )
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a progress line and flushes it.
fn say(out: &mut dyn Write, line: &str) -> Result<(), DemoError> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(io("writing the output"))
}

fn secs(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

/// Runs the demo, printing progress and the portfolio summary to `out`; returns what it
/// printed. With `keep_serving`, waits for Ctrl-C (or SIGTERM) after the summary.
pub async fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    if !data_dir.join("event.csv.gz").is_file() {
        return Err(DemoError::NoData(format!(
            "{} has no event.csv.gz (expected the layout of tests/data/README.md)",
            data_dir.display()
        )));
    }
    let temp = match &args.database_url {
        Some(_) => None,
        None => Some(TempDb::create()?),
    };
    let database_url = match (&args.database_url, &temp) {
        (Some(u), _) => u.clone(),
        (None, Some(t)) => t.url(),
        (None, None) => unreachable!("a temporary database is created when none is given"),
    };
    let (churned, end) = churned_accounts(&data_dir, args.account_divisor)?;
    let as_of = timestamp(end.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default()));

    say(out, "Vitals demo")?;
    say(out, &format!("  data:     {}", data_dir.display()))?;
    say(
        out,
        &format!(
            "  database: {}{}",
            vitals_store::redact_url(&database_url),
            if temp.is_some() {
                " (temporary, removed at exit)"
            } else {
                ""
            }
        ),
    )?;
    let server = Server::start(&database_url, args.listen).await?;
    say(
        out,
        &format!(
            "  server:   {} (all services in this process; auth off, loopback only)",
            server.url()
        ),
    )?;
    say(out, "")?;

    let summary = steps(args, &server, &data_dir, &churned, end, as_of, out).await;
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = server.stop().await;
            return Err(e);
        }
    };
    say(out, &format!("demo finished in {}", secs(started)))?;
    if args.keep_serving {
        say(
            out,
            &format!(
                "Vitals keeps serving on {} (auth off); try:\n  grpcurl -plaintext {} \
                 vitals.scoring.v1.ScoringService/ListScores\nCtrl-C to stop.",
                server.url(),
                server.addr
            ),
        )?;
        vitals_server::shutdown::signal().await;
    }
    server.stop().await?;
    drop(temp);
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    args: &DemoArgs,
    server: &Server,
    data_dir: &Path,
    churned: &[String],
    end: NaiveDate,
    as_of: prost_types::Timestamp,
    out: &mut dyn Write,
) -> Result<DemoSummary, DemoError> {
    let channel: Channel = Endpoint::from_shared(server.url())
        .map_err(|e| DemoError::Server(e.to_string()))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| DemoError::Server(e.to_string()))?;
    let max = 64 * 1024 * 1024;
    let mut profiles = ProfilesServiceClient::new(channel.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut ingestion = IngestionServiceClient::new(channel.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut learner = LearnerServiceClient::new(channel.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut scoring = ScoringServiceClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    // 1. Profiles first, so that accounts land in theirs as they are upserted.
    let t = Instant::now();
    let mut created = 0;
    for (id, name, rule, priority, usage) in PROFILES {
        let r = profiles
            .create_health_profile(ppb::CreateHealthProfileRequest {
                profile_id: id.to_string(),
                health_profile: Some(ppb::HealthProfile {
                    display_name: name.to_string(),
                    description: format!("vitals demo: accounts matching {rule}"),
                    assignment_rule: rule.to_string(),
                    priority,
                    category_weights: Some(cpb::CategoryWeights {
                        usage,
                        conversations: 1.0,
                        pulse: 1.0,
                        contract: 1.0,
                        custom_metrics: 1.0,
                        custom_score_fields: HashMap::new(),
                    }),
                    ..Default::default()
                }),
            })
            .await;
        match r {
            Ok(_) => created += 1,
            // A database given with --database-url may hold them from an earlier run.
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => return Err(rpc("CreateHealthProfile")(s)),
        }
    }
    say(
        out,
        &format!(
            "[1/7] profiles   {created} created ({} already there), rules over the account \
             attributes channel and country  ({})",
            PROFILES.len() - created,
            secs(t)
        ),
    )?;

    // 2. The data, with the loader of `vitals load`.
    let t = Instant::now();
    let mut load = LoadArgs::new(data_dir, server.url());
    load.account_divisor = args.account_divisor;
    load.churn_cutoff = Some(end);
    let loaded = loader::load(&load).await?;
    let outcomes = match &loaded.outcomes {
        Some(o) => format!("{} churn outcomes recorded", o.accepted + o.duplicates),
        None => "churn outcomes NOT recorded (see the notice above)".to_string(),
    };
    say(
        out,
        &format!(
            "[2/7] load       {} accounts, {} subscriptions, {} events, {outcomes}  ({})",
            loaded.accounts.accepted + loaded.accounts.duplicates,
            loaded.subscriptions.accepted + loaded.subscriptions.duplicates,
            loaded.events.accepted + loaded.events.duplicates,
            secs(t)
        ),
    )?;

    // 3. Assignment by the rules.
    let t = Instant::now();
    let r = profiles
        .reassign_accounts(ppb::ReassignAccountsRequest {
            dry_run: false,
            max_moves: 1,
        })
        .await
        .map_err(rpc("ReassignAccounts"))?
        .into_inner();
    let population = profiles
        .get_population_report(ppb::GetPopulationReportRequest {})
        .await
        .map_err(rpc("GetPopulationReport"))?
        .into_inner();
    let members: Vec<String> = population
        .profiles
        .iter()
        .map(|p| format!("{} {}", short(&p.profile), p.member_count))
        .collect();
    say(
        out,
        &format!(
            "[3/7] assign     {} accounts evaluated, {} moved; members: {}  ({})",
            r.evaluated_count,
            r.moved_count,
            members.join(", "),
            secs(t)
        ),
    )?;

    // 4. The customers who left are no longer in the portfolio.
    let t = Instant::now();
    for chunk in churned.chunks(5000) {
        ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: chunk
                    .iter()
                    .map(|id| ipb::Account {
                        account_id: id.clone(),
                        status: ipb::AccountStatus::Churned as i32,
                        ..Default::default()
                    })
                    .collect(),
                replace_attributes: false,
            })
            .await
            .map_err(rpc("UpsertAccounts"))?;
    }
    say(
        out,
        &format!(
            "[4/7] churned    {} accounts whose last subscription ended by {end} marked \
             CHURNED (not scored; their outcomes train the learner)  ({})",
            churned.len(),
            secs(t)
        ),
    )?;

    // 5. Training.
    let t = Instant::now();
    let trained = learner
        .train(lpb::TrainRequest {
            profile: String::new(),
            options: Some(training_options()),
            as_of: Some(as_of),
        })
        .await
        .map_err(rpc("Train"))?
        .into_inner();
    let models: Vec<String> = trained
        .models
        .iter()
        .map(|m| {
            let who = if m.profile.is_empty() {
                "global".to_string()
            } else {
                short(&m.profile).to_string()
            };
            format!("{who} v{} ({} churns)", m.version, m.churn_count)
        })
        .collect();
    say(
        out,
        &format!(
            "[5/7] train      {} models: {}{}  ({})",
            trained.models.len(),
            models.join(", "),
            if trained.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; no model for {} (its accounts use the global model)",
                    trained
                        .skipped
                        .iter()
                        .map(|p| short(&p.profile))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            secs(t)
        ),
    )?;

    // 6. Scores.
    let t = Instant::now();
    let computed = scoring
        .compute_scores(spb::ComputeScoresRequest {
            scope: None,
            as_of: Some(as_of),
        })
        .await
        .map_err(rpc("ComputeScores"))?
        .into_inner();
    say(
        out,
        &format!(
            "[6/7] score      {} accounts scored as of {end}, {} snapshots written  ({})",
            computed.scored_count,
            computed.snapshot_count,
            secs(t)
        ),
    )?;

    // 7. The learner's honest evaluation.
    let t = Instant::now();
    let eval = learner
        .evaluate(lpb::EvaluateRequest {
            profile: String::new(),
            options: Some(training_options()),
            backtest_folds: 0,
        })
        .await
        .map_err(rpc("Evaluate"))?
        .into_inner();
    say(
        out,
        &format!("[7/7] evaluate   {}  ({})", eval.model, secs(t)),
    )?;

    // The summary.
    let listed = profiles
        .list_health_profiles(ppb::ListHealthProfilesRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .map_err(rpc("ListHealthProfiles"))?
        .into_inner();
    let mut bands = Vec::new();
    for p in &listed.health_profiles {
        let d = scoring
            .get_distribution(spb::GetDistributionRequest {
                profile: p.name.clone(),
                scorecard: String::new(),
                global: false,
            })
            .await
            .map_err(rpc("GetDistribution"))?
            .into_inner()
            .distribution
            .unwrap_or_default();
        if d.count == 0 {
            continue;
        }
        let c = d.band_counts.unwrap_or_default();
        bands.push(ProfileBands {
            profile: p.name.clone(),
            display_name: p.display_name.clone(),
            scored: d.count,
            bands: [c.red, c.yellow, c.green],
        });
    }
    let all = scoring
        .get_distribution(spb::GetDistributionRequest::default())
        .await
        .map_err(rpc("GetDistribution"))?
        .into_inner()
        .distribution
        .unwrap_or_default();
    let risky = scoring
        .list_scores(spb::ListScoresRequest {
            page_size: AT_RISK_ROWS as i32,
            order_by: "value".into(),
            view: spb::ScoreView::Full as i32,
            ..Default::default()
        })
        .await
        .map_err(rpc("ListScores"))?
        .into_inner();
    let at_risk = risky
        .snapshots
        .iter()
        .map(|s| {
            let mut down: Vec<&spb::Driver> =
                s.drivers.iter().filter(|d| d.contribution < 0.0).collect();
            down.sort_by(|a, b| a.contribution.total_cmp(&b.contribution));
            AtRisk {
                account_id: s.account_id.clone(),
                profile: s.profile.clone(),
                score: s.value,
                band: s.band(),
                churn_probability: s.churn_probability,
                drivers: down
                    .iter()
                    .take(DRIVERS_SHOWN)
                    .map(|d| (d.kpi.clone(), d.peer_percentile, d.contribution))
                    .collect(),
            }
        })
        .collect();
    let metrics = |e: &Option<lpb::Evaluation>| {
        e.as_ref()
            .map(|e| {
                (
                    e.metrics.as_ref().map(|m| m.auc).unwrap_or_default(),
                    e.backtest_auc,
                    e.metrics
                        .as_ref()
                        .map(|m| m.top_decile_lift)
                        .unwrap_or_default(),
                )
            })
            .unwrap_or_default()
    };
    let (churn_auc, churn_backtest_auc, churn_lift) = metrics(&eval.churn_probability);
    let (health_score_auc, health_backtest_auc, health_lift) = metrics(&eval.health_score);
    let summary = DemoSummary {
        as_of: end,
        scored: computed.scored_count,
        profiles: bands,
        histogram: all.bins.iter().map(|b| b.count).collect(),
        at_risk,
        churn_auc,
        churn_backtest_auc,
        health_score_auc,
    };
    let observations = eval
        .churn_probability
        .as_ref()
        .and_then(|e| e.metrics.as_ref())
        .map(|m| (m.observation_count, m.positive_count))
        .unwrap_or_default();
    let text = render(
        &summary,
        &all,
        (churn_lift, health_backtest_auc, health_lift),
        observations,
    );
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(io("writing the output"))?;
    Ok(summary)
}

/// `profiles/web` -> `web`.
fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn band_name(b: cpb::Band) -> &'static str {
    match b {
        cpb::Band::Red => "red",
        cpb::Band::Yellow => "yellow",
        cpb::Band::Green => "green",
        cpb::Band::Unspecified => "-",
    }
}

/// The printed portfolio summary. Its line formats are relied on by the demo test.
fn render(
    s: &DemoSummary,
    all: &cpb::Distribution,
    (churn_lift, health_backtest_auc, health_lift): (f64, f64, f64),
    (observations, positives): (u32, u32),
) -> String {
    let mut t = String::new();
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Portfolio as of {}: {} accounts scored",
        s.as_of, s.scored
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:<44} {:>7} {:>7} {:>7} {:>7}",
        "profile", "scored", "red", "yellow", "green"
    );
    let mut total = [0u32; 4];
    for p in &s.profiles {
        let _ = writeln!(
            t,
            "{:<44} {:>7} {:>7} {:>7} {:>7}",
            format!("{} ({})", p.display_name, short(&p.profile)),
            p.scored,
            p.bands[0],
            p.bands[1],
            p.bands[2]
        );
        total[0] += p.scored;
        for (i, b) in p.bands.iter().enumerate() {
            total[i + 1] += b;
        }
    }
    let _ = writeln!(
        t,
        "{:<44} {:>7} {:>7} {:>7} {:>7}",
        "total", total[0], total[1], total[2], total[3]
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Health scores (0..10), all profiles: mean {:.2}, median {:.2}, p10 {:.2}, p90 {:.2}",
        all.mean, all.median, all.p10, all.p90
    );
    let widest = all.bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    for (i, b) in all.bins.iter().enumerate() {
        let bar = (f64::from(b.count) / f64::from(widest) * 50.0).round() as usize;
        let close = if i + 1 == all.bins.len() { ']' } else { ')' };
        let _ = writeln!(
            t,
            "  [{:>2}, {:>2}{close} {:>6} {}",
            b.lower,
            b.upper,
            b.count,
            "#".repeat(bar)
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "The {} accounts most at risk (lowest health score) and what pulls them down \
         (KPI, peer percentile):",
        s.at_risk.len()
    );
    let _ = writeln!(
        t,
        "{:>3}  {:<10} {:<14} {:>5} {:<6} {:>6}  drivers",
        "#", "account", "profile", "score", "band", "churn"
    );
    for (i, r) in s.at_risk.iter().enumerate() {
        let drivers: Vec<String> = r
            .drivers
            .iter()
            .map(|(k, p, _)| format!("{k} (p{p:.0})"))
            .collect();
        let _ = writeln!(
            t,
            "{:>3}  {:<10} {:<14} {:>5.2} {:<6} {:>6}  {}",
            i + 1,
            r.account_id,
            short(&r.profile),
            r.score,
            band_name(r.band),
            r.churn_probability
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_else(|| "-".into()),
            if drivers.is_empty() {
                "-".to_string()
            } else {
                drivers.join(", ")
            }
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Learner evaluation (global model; {observations} observations, one per active \
         account every {OBSERVATION_INTERVAL_DAYS} days; {positives} churned within \
         {HORIZON_DAYS} days):"
    );
    let _ = writeln!(
        t,
        "  churn probability: AUC {:.3} in-sample, {:.3} time-split backtest; top-decile \
         lift {:.2}",
        s.churn_auc, s.churn_backtest_auc, churn_lift
    );
    let _ = writeln!(
        t,
        "  health score:      AUC {:.3} in-sample, {:.3} time-split backtest; top-decile \
         lift {:.2}",
        s.health_score_auc, health_backtest_auc, health_lift
    );
    let _ = writeln!(t, "  (AUC 0.5 = random, 1 = perfect ranking of who churns)");
    let _ = writeln!(t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_subs(dir: &Path, rows: &str) {
        use std::io::Write as _;
        let f = std::fs::File::create(dir.join("subscription.csv.gz")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(
            format!(
                "account_id,product,start_date,end_date,mrr,quantity,units,\
                 bill_period_months,discount\n{rows}"
            )
            .as_bytes(),
        )
        .unwrap();
        gz.finish().unwrap();
    }

    #[test]
    fn churned_are_the_accounts_whose_last_subscription_ended() {
        let dir = TempDb::create().unwrap();
        write_subs(
            &dir.dir,
            "1,basic,2020-01-01,2020-02-01,10,,,1,0\n\
             1,basic,2020-02-01,2020-03-01,10,,,1,0\n\
             2,basic,2020-05-01,2020-06-15,10,,,1,0\n\
             3,basic,2020-01-01,2020-02-01,10,,,1,0\n\
             3,basic,2020-03-01,,10,,,1,0\n\
             4,basic,2020-05-20,2020-05-20,10,,,1,0\n\
             14,basic,2020-01-01,2020-02-01,10,,,1,0\n",
        );
        let (churned, end) = churned_accounts(&dir.dir, None).unwrap();
        assert_eq!(end, NaiveDate::from_ymd_opt(2020, 5, 20).unwrap());
        assert_eq!(churned, vec!["1", "14", "4"]);
        let (churned, end) = churned_accounts(&dir.dir, Some(7)).unwrap();
        assert_eq!(end, NaiveDate::from_ymd_opt(2020, 1, 1).unwrap());
        assert_eq!(churned, Vec::<String>::new());
    }

    #[test]
    fn bad_dates_name_the_line() {
        let dir = TempDb::create().unwrap();
        write_subs(
            &dir.dir,
            "1,basic,2020-01-01,2020-02-01,10,,,1,0\n1,basic,x,,10,,,1,0\n",
        );
        let e = churned_accounts(&dir.dir, None).unwrap_err().to_string();
        assert!(e.contains("subscription.csv.gz:3: start_date"), "{e}");
    }
}
