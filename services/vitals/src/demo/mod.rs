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

mod report;
mod server;
mod steps;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use vitals_proto::common::v1 as cpb;
use vitals_proto::learner::v1 as lpb;

use crate::loader::LoadError;
use server::{Server, TempDb};

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
        // The server's setting (`--learner-challenger`, default off).
        challenger: None,
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

    let summary = steps::steps(args, &server, &data_dir, &churned, (end, as_of), out).await;
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
