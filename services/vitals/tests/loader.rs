//! The loader on the sample data over real gRPC: row counts in the store match the
//! files, and a second run stores nothing new.
//!
//! The data folder is `VITALS_SAMPLE_DIR` when set, else the repository's
//! `tests/data/socialnet7-small`. To stay fast in a debug build on 2 cores, the test
//! loads a deterministic subset (accounts whose id is divisible by
//! `VITALS_LOADER_TEST_DIVISOR`, default 210, i.e. every 30th account of the small set);
//! the full set is loaded by the benchmark (docs/bench-ingestion.md).
//!
//! The churn outcomes the loader derives from the subscriptions are checked against the
//! sample data's published figures (README of `shared/data`: 113 churned accounts in the
//! small set, 722 in the full one, whose `book/active_period.csv.gz` churn dates must all
//! be among them) and, over the wire, against a stand-in LearnerService that records what
//! it is sent or answers UNIMPLEMENTED.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use common::{start, url_for};
use tonic::{Request, Response, Status};
use vitals::loader::{Churn, LoadArgs, derive_churns, load};
use vitals_ingestion::{IngestionArgs, register};
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_server::{LearnerService, LearnerServiceServer};
use vitals_server::{GrpcServer, ServerConfig};
use vitals_test_support::{Backend, TestServer, backends};

fn sample_dir() -> PathBuf {
    match std::env::var("VITALS_SAMPLE_DIR") {
        Ok(d) if !d.is_empty() => {
            let dir = PathBuf::from(d);
            assert!(
                dir.join("event.csv.gz").is_file(),
                "VITALS_SAMPLE_DIR={} has no event.csv.gz (expected account.csv.gz, \
                 subscription.csv.gz, event_type.csv.gz and event.csv.gz)",
                dir.display()
            );
            dir
        }
        _ => vitals_test_support::sample_small(),
    }
}

/// Data rows of a gzip CSV whose first column (account id) passes `keep`.
fn count_rows(path: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .unwrap();
    s.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .filter(|l| keep(l.split(',').next().unwrap_or("")))
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_matches_the_files_and_is_idempotent() {
    let dir = sample_dir();
    let divisor: u64 = std::env::var("VITALS_LOADER_TEST_DIVISOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(210);
    let keep = |a: &str| a.parse::<u64>().is_ok_and(|n| n % divisor == 0);
    let accounts = count_rows(&dir.join("account.csv.gz"), keep);
    let subs = count_rows(&dir.join("subscription.csv.gz"), keep);
    let events = count_rows(&dir.join("event.csv.gz"), keep);
    let types = count_rows(&dir.join("event_type.csv.gz"), |_| true);
    assert!(
        accounts > 0 && events > 0,
        "the subset is empty: lower the divisor"
    );

    for backend in backends() {
        let env = start(backend).await;
        let mut args = LoadArgs::new(&dir, env.server.url());
        args.account_divisor = Some(divisor);
        let s = load(&args).await.expect("load");
        eprintln!("{backend:?}\n{}", s.report());
        assert_eq!(
            (s.accounts.read, s.accounts.accepted, s.accounts.skipped),
            (accounts, accounts, 0)
        );
        assert_eq!(
            (s.subscriptions.read, s.subscriptions.accepted),
            (subs, subs)
        );
        assert_eq!((s.event_types.read, s.event_types.accepted), (types, types));
        assert_eq!(
            (
                s.events.read,
                s.events.accepted,
                s.events.duplicates,
                s.events.skipped
            ),
            (events, events, 0, 0),
            "{backend:?}"
        );
        assert!(s.skip_reasons.is_empty(), "{:?}", s.skip_reasons);
        // This server hosts no LearnerService: the outcomes step is skipped with a notice
        // (UNIMPLEMENTED), not a failure.
        assert!(s.outcomes.is_none(), "{:?}", s.outcomes);

        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts").await as u64,
            accounts
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts WHERE status = 'active'")
                .await as u64,
            accounts,
            "every account of the file is a real (not implicit) account"
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM subscriptions").await as u64,
            subs
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM events").await as u64,
            events,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await as u64,
            events
        );
        assert_eq!(
            env.int(&format!(
                "SELECT SUM({}) FROM event_types",
                vitals_store::ingestion::EVENT_COUNT
            ))
            .await as u64,
            events
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM event_types").await as u64,
            types
        );
        // Every event has user 0: one distinct user per roll-up row.
        assert_eq!(
            env.int("SELECT MAX(distinct_users) FROM usage_daily").await,
            1
        );

        // Again: nothing new.
        let again = load(&args).await.expect("second load");
        assert_eq!(
            (again.events.accepted, again.events.duplicates),
            (0, events),
            "{backend:?}"
        );
        assert_eq!(
            (again.accounts.accepted, again.accounts.duplicates),
            (0, accounts)
        );
        assert_eq!(
            (again.subscriptions.accepted, again.subscriptions.duplicates),
            (0, subs)
        );
        assert_eq!(env.int("SELECT COUNT(*) FROM events").await as u64, events);
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await as u64,
            events
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn loader_names_a_missing_folder() {
    let args = LoadArgs::new("/nonexistent/vitals-sample", "http://127.0.0.1:1");
    let e = load(&args).await.expect_err("no server, no folder");
    // The connection fails first (nothing listens on port 1); a reachable server with a
    // missing folder names the file instead.
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");

    let env = start(vitals_test_support::Backend::Sqlite).await;
    let args = LoadArgs::new("/nonexistent/vitals-sample", env.server.url());
    let e = load(&args).await.expect_err("missing folder");
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/vitals-sample/subscription.csv.gz")
            && msg.contains("cannot open"),
        "{msg}"
    );
    env.stop().await;
}

/// Gzip CSV text.
fn read_gz(path: &Path) -> String {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// (account, start, end) of every subscription row whose account passes `keep`.
fn subscriptions(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, NaiveDate, Option<NaiveDate>)> {
    read_gz(&dir.join("subscription.csv.gz"))
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| keep(f[0]))
        .map(|f| {
            (
                f[0].to_string(),
                date(f[2]),
                (!f[3].is_empty()).then(|| date(f[3])),
            )
        })
        .collect()
}

/// The sample data's end: churns are subscriptions ending on or before it.
fn data_end() -> NaiveDate {
    date("2020-06-01")
}

#[test]
fn derived_churns_match_the_sample_data() {
    let small = derive_churns(
        &subscriptions(&vitals_test_support::sample_small(), |_| true),
        data_end(),
    );
    let accounts: BTreeSet<&str> = small.iter().map(|c| c.account_id.as_str()).collect();
    assert_eq!(small.len(), 113, "README: 113 churned by the end");
    assert_eq!(accounts.len(), 113, "one churn per churned account here");

    let Some(full) = vitals_test_support::sample_full() else {
        return;
    };
    let churns = derive_churns(&subscriptions(&full, |_| true), data_end());
    assert_eq!(churns.len(), 722, "README: 722 churned by the end");
    let derived: BTreeSet<(String, NaiveDate)> =
        churns.into_iter().map(|c| (c.account_id, c.date)).collect();
    // The book's active periods (accounts active after its first month) with a churn date.
    let book = full.join("book/active_period.csv.gz");
    assert!(
        book.is_file(),
        "{} missing from the full sample data",
        book.display()
    );
    let mut n = 0;
    for l in read_gz(&book).lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split(',').collect();
        if f[2].is_empty() {
            continue;
        }
        n += 1;
        assert!(
            derived.contains(&(f[0].to_string(), date(f[2]))),
            "book churn {l:?} not derived"
        );
    }
    assert!(n > 500, "only {n} churn dates in {}", book.display());
}

/// A stand-in LearnerService: records the outcomes it is sent (a repeat of the same
/// account, kind and time is a duplicate), or answers UNIMPLEMENTED like a learner
/// that does not have the RPC yet.
#[derive(Clone, Default)]
struct FakeLearner {
    implemented: bool,
    got: Arc<Mutex<Vec<lpb::Outcome>>>,
}

fn unimplemented<T>(rpc: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{rpc}: not in this stand-in"
    )))
}

#[tonic::async_trait]
impl LearnerService for FakeLearner {
    async fn record_outcomes(
        &self,
        request: Request<lpb::RecordOutcomesRequest>,
    ) -> Result<Response<lpb::RecordOutcomesResponse>, Status> {
        if !self.implemented {
            return unimplemented("RecordOutcomes");
        }
        let outcomes = request.into_inner().outcomes;
        assert!(
            (1..=10_000).contains(&outcomes.len()),
            "{} outcomes in one request",
            outcomes.len()
        );
        let mut got = self.got.lock().unwrap();
        let (mut recorded_count, mut duplicate_count) = (0, 0);
        for o in outcomes {
            if got.iter().any(|g| {
                (&g.account_id, g.kind, g.occur_time) == (&o.account_id, o.kind, o.occur_time)
            }) {
                duplicate_count += 1;
            } else {
                got.push(o);
                recorded_count += 1;
            }
        }
        Ok(Response::new(lpb::RecordOutcomesResponse {
            recorded_count,
            duplicate_count,
        }))
    }
    async fn list_outcomes(
        &self,
        _: Request<lpb::ListOutcomesRequest>,
    ) -> Result<Response<lpb::ListOutcomesResponse>, Status> {
        unimplemented("ListOutcomes")
    }
    async fn train(
        &self,
        _: Request<lpb::TrainRequest>,
    ) -> Result<Response<lpb::TrainResponse>, Status> {
        unimplemented("Train")
    }
    async fn get_weights(
        &self,
        _: Request<lpb::GetWeightsRequest>,
    ) -> Result<Response<lpb::GetWeightsResponse>, Status> {
        unimplemented("GetWeights")
    }
    async fn get_drift_report(
        &self,
        _: Request<lpb::GetDriftReportRequest>,
    ) -> Result<Response<lpb::GetDriftReportResponse>, Status> {
        unimplemented("GetDriftReport")
    }
    async fn get_model(
        &self,
        _: Request<lpb::GetModelRequest>,
    ) -> Result<Response<lpb::GetModelResponse>, Status> {
        unimplemented("GetModel")
    }
    async fn list_models(
        &self,
        _: Request<lpb::ListModelsRequest>,
    ) -> Result<Response<lpb::ListModelsResponse>, Status> {
        unimplemented("ListModels")
    }
    async fn evaluate(
        &self,
        _: Request<lpb::EvaluateRequest>,
    ) -> Result<Response<lpb::EvaluateResponse>, Status> {
        unimplemented("Evaluate")
    }
    async fn start_training(
        &self,
        _: Request<lpb::StartTrainingRequest>,
    ) -> Result<Response<vitals_proto::google::longrunning::Operation>, Status> {
        unimplemented("StartTraining")
    }
    async fn start_evaluation(
        &self,
        _: Request<lpb::StartEvaluationRequest>,
    ) -> Result<Response<vitals_proto::google::longrunning::Operation>, Status> {
        unimplemented("StartEvaluation")
    }
    async fn predict_churn(
        &self,
        _: Request<lpb::PredictChurnRequest>,
    ) -> Result<Response<lpb::PredictChurnResponse>, Status> {
        unimplemented("PredictChurn")
    }
}

/// The ingestion service and `learner` on one server, on a SQLite file.
async fn start_with_learner(learner: FakeLearner) -> TestServer {
    let config = ServerConfig::for_tests(url_for(Backend::Sqlite).await);
    TestServer::start(|listener, shutdown| async move {
        let store = vitals_server::open_store(&config).await?;
        let mut grpc = GrpcServer::new();
        register(&mut grpc, store.clone(), &IngestionArgs::default(), &config)?;
        grpc.add(LearnerServiceServer::new(learner), vitals_learner::ROLES);
        grpc.serve(&config, listener, shutdown).await?;
        store.close().await?;
        Ok(())
    })
    .await
}

// The outcomes step does not touch the ingestion store, so SQLite alone is enough here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_records_churn_dates_as_outcomes() {
    let dir = vitals_test_support::sample_small();
    // Every 35th account of the small set (ids divisible by 245): a few churns among them.
    let divisor = 245;
    let keep = |a: &str| a.parse::<u64>().is_ok_and(|n| n % divisor == 0);
    let want: BTreeMap<String, NaiveDate> = derive_churns(&subscriptions(&dir, keep), data_end())
        .into_iter()
        .map(|Churn { account_id, date }| (account_id, date))
        .collect();
    assert!(
        !want.is_empty(),
        "no churn in the subset: change the divisor"
    );

    let learner = FakeLearner {
        implemented: true,
        ..Default::default()
    };
    let server = start_with_learner(learner.clone()).await;
    let mut args = LoadArgs::new(&dir, server.url());
    args.account_divisor = Some(divisor);
    args.churn_cutoff = Some(data_end());
    let s = load(&args).await.expect("load");
    let o = s.outcomes.clone().expect("outcomes sent");
    let n = want.len() as u64;
    assert_eq!((o.read, o.accepted, o.duplicates, o.skipped), (n, n, 0, 0));
    let got: BTreeMap<String, NaiveDate> = learner
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o.kind, lpb::OutcomeKind::Churned as i32, "{o:?}");
            let t = o.occur_time.expect("occur_time");
            assert_eq!(t.seconds % 86_400, 0, "midnight UTC: {o:?}");
            let day = chrono::DateTime::from_timestamp(t.seconds, 0)
                .expect("valid time")
                .date_naive();
            (o.account_id.clone(), day)
        })
        .collect();
    assert_eq!(got, want);
    // Churned accounts are among the loaded ones: the subset's filter applies.
    assert!(got.keys().all(|a| keep(a)));

    // Again: the learner sees the same outcomes, all duplicates.
    let again = load(&args).await.expect("second load");
    let o = again.outcomes.expect("outcomes sent");
    assert_eq!((o.read, o.accepted, o.duplicates), (n, 0, n));
    assert_eq!(learner.got.lock().unwrap().len(), want.len());
    server.stop().await.expect("stop");

    // A learner without RecordOutcomes: the events are loaded, the outcomes skipped
    // with a notice (summary.outcomes = None), and the load succeeds.
    let learner = FakeLearner::default();
    let server = start_with_learner(learner.clone()).await;
    let mut args = LoadArgs::new(&dir, server.url());
    args.account_divisor = Some(divisor);
    let s = load(&args)
        .await
        .expect("load succeeds without the learner");
    assert!(s.outcomes.is_none(), "{:?}", s.outcomes);
    assert!(s.events.accepted > 0);
    assert!(learner.got.lock().unwrap().is_empty());

    // --no-outcomes: nothing is sent even to a learner that would record them.
    let learner = FakeLearner {
        implemented: true,
        ..Default::default()
    };
    let server2 = start_with_learner(learner.clone()).await;
    let mut args = LoadArgs::new(&dir, server2.url());
    args.account_divisor = Some(divisor);
    args.no_outcomes = true;
    let s = load(&args).await.expect("load");
    assert!(s.outcomes.is_none());
    assert!(learner.got.lock().unwrap().is_empty());
    server.stop().await.expect("stop");
    server2.stop().await.expect("stop");
}

/// Writes `text` gzipped as `dir/name`.
fn write_gz(dir: &Path, name: &str, text: &str) {
    use std::io::Write;
    let f = std::fs::File::create(dir.join(name)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_account_and_subscription_rows_are_skipped_with_their_line_and_field() {
    let dir = std::env::temp_dir().join(format!("vitals-loader-bad-rows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_gz(
        &dir,
        "account.csv.gz",
        "account_id,channel,date_of_birth,country\n\
         1,web,1980-01-02,FR\n\
         ,web,1980-01-02,FR\n\
         2,web,not-a-date,DE\n\
         3,appstore1,,US\n",
    );
    write_gz(
        &dir,
        "subscription.csv.gz",
        "account_id,product,start_date,end_date,mrr,quantity,units,bill_period_months,discount\n\
         1,basic,2020-01-01,2020-02-01,10,,,1,0\n\
         1,basic,2020-13-01,2020-02-01,10,,,1,0\n\
         3,basic,2020-01-01,,ten,,,1,0\n\
         3,pro,2020-01-01,,20,,,1,0\n",
    );
    write_gz(
        &dir,
        "event_type.csv.gz",
        "event_type_id,event_type_name\n0,post\n",
    );
    write_gz(
        &dir,
        "event.csv.gz",
        "account_id,event_time,event_type,user_id,event_value\n\
         1,2020-01-05 10:00:00,post,0,\n\
         3,2020-01-06 11:00:00,post,0,\n",
    );

    for backend in backends() {
        let env = start(backend).await;
        let s = load(&LoadArgs::new(&dir, env.server.url()))
            .await
            .expect("a load with bad rows still loads the good ones");
        eprintln!("{backend:?}\n{}", s.report());
        assert_eq!(
            (s.accounts.read, s.accounts.accepted, s.accounts.skipped),
            (4, 2, 2),
            "{backend:?}"
        );
        assert_eq!(
            (
                s.subscriptions.read,
                s.subscriptions.accepted,
                s.subscriptions.skipped
            ),
            (4, 2, 2),
            "{backend:?}"
        );
        let reasons = s.skip_reasons.join("\n");
        for expected in [
            "account.csv.gz:3: empty account_id",
            "account.csv.gz:4: date_of_birth \"not-a-date\"",
            "subscription.csv.gz:3: start_date \"2020-13-01\"",
            "subscription.csv.gz:4: mrr \"ten\"",
        ] {
            assert!(
                reasons.contains(expected),
                "{expected:?} not in:\n{reasons}"
            );
        }
        // Only the good rows are stored, and nothing of a bad row is half written.
        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts WHERE id IN ('1', '3')")
                .await,
            2
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts WHERE id = '2' AND status = 'active'")
                .await,
            0
        );
        assert_eq!(env.int("SELECT COUNT(*) FROM subscriptions").await, 2);
        assert_eq!(env.int("SELECT COUNT(*) FROM events").await, 2);
        env.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
