//! Two replicas of every service on one PostgreSQL database (docs/deploy.md "Work shared
//! between replicas"): real processes (the service binaries) on their own ports,
//! schedules every 2 s, leases of 3 s. Checks that scheduled scoring runs once per tick
//! in the cluster, that automatic training runs once for outcomes recorded on both
//! learners, that model versions stay unique when both learners train at once, that a
//! band change committed by a run of one scoring replica streams through the other's
//! WatchScores, and that killing (SIGKILL) the replica holding the scoring schedule's
//! lease moves the schedule to the other within the documented bound.
//!
//! Needs `VITALS_TEST_POSTGRES_URL` (skipped, saying so, without it): on SQLite there is
//! one process.

mod common;

#[allow(unused_imports)]
#[path = "../../services/learner/tests/common/mod.rs"]
mod learner_common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{ChildGuard, binary, free_port};
use vitals_proto::common::v1 as cpb;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::Store;
use vitals_store::entity::{account, usage_daily};
use vitals_store::sea_orm::{
    EntityTrait, FromQueryResult, IntoActiveModel, Statement, TransactionTrait,
};
use vitals_test_support::{Backend, fresh_url};

/// Seconds between scheduled runs (scoring, pending assignment, reassignment).
const INTERVAL_SECS: u64 = 2;
/// Lease time-to-live of every replica.
const TTL_MS: u64 = 3_000;
/// Documented bound on a killed holder's lease passing to another replica:
/// TTL + TTL / 3 (the other replica's next try), plus slack for this busy machine.
const TAKEOVER_BOUND: Duration = Duration::from_millis(TTL_MS + TTL_MS / 3 + 3_000);

/// One service process.
struct Replica {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Replica {
    fn start(bin: &str, url: &str) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let interval = INTERVAL_SECS.to_string();
        let ttl = TTL_MS.to_string();
        let log = std::env::temp_dir().join(format!(
            "vitals-replicas-{}-{bin}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary(bin))
            .env("VITALS_LISTEN", addr.to_string())
            .env("DATABASE_URL", url)
            .env("VITALS_AUTH", "off")
            .env("VITALS_LEASE_TTL_MS", &ttl)
            .env("VITALS_SCORING_INTERVAL", &interval)
            .env("VITALS_SCORE_CACHE_REFRESH_MS", "200")
            .env("VITALS_PROFILES_ASSIGN_PENDING_INTERVAL", &interval)
            .env("VITALS_PROFILES_REASSIGN_INTERVAL", &interval)
            .env("VITALS_LEARNER_RETRAIN_AFTER_OUTCOMES", "6")
            .env("VITALS_LEARNER_PRIOR_STRENGTH", "10")
            .env("VITALS_DATABASE_MAX_CONNECTIONS", "6")
            // Two trainings one after the other on a busy 2-core machine can pass 60 s.
            .env("VITALS_REQUEST_TIMEOUT", "300")
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn a service");
        Self {
            child: ChildGuard(child),
            addr,
        }
    }

    async fn wait_serving(&mut self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        let deadline = Instant::now() + Duration::from_secs(60);
        while vitals_test_support::health(self.addr, "").await != Ok(ServingStatus::Serving) {
            assert!(
                self.child.0.try_wait().expect("try_wait").is_none(),
                "a replica exited early"
            );
            assert!(
                Instant::now() < deadline,
                "a replica is not serving in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// A scheduled (scope `all`) or requested run, as stored.
#[derive(Debug, FromQueryResult)]
struct Run {
    id: i64,
    scope: String,
    started_at: DateTime<Utc>,
}

async fn runs(store: &Store) -> Vec<Run> {
    let c = store.conn();
    Run::find_by_statement(Statement::from_string(
        c.get_database_backend(),
        "SELECT id, scope, started_at FROM score_runs WHERE finished_at IS NOT NULL ORDER BY id",
    ))
    .all(c)
    .await
    .expect("runs")
}

/// The pid in a lease holder id (`host:pid:started:n`).
async fn holder_pid(store: &Store, name: &str) -> Option<u32> {
    let l = vitals_store::lease::get(store, name)
        .await
        .expect("lease")?;
    l.holder.split(':').nth(1)?.parse().ok()
}

/// (profile, version) of every stored model.
async fn models(store: &Store) -> Vec<(String, i32)> {
    #[derive(FromQueryResult)]
    struct M {
        profile_id: String,
        version: i32,
    }
    let c = store.conn();
    M::find_by_statement(Statement::from_string(
        c.get_database_backend(),
        "SELECT profile_id, version FROM models ORDER BY profile_id, version",
    ))
    .all(c)
    .await
    .expect("models")
    .into_iter()
    .map(|m| (m.profile_id, m.version))
    .collect()
}

/// Writes the learner tests' planted portfolio (accounts and daily roll-ups).
async fn seed(store: &Store, p: &learner_common::Portfolio) {
    let txn = store.conn().begin().await.expect("begin");
    for a in &p.accounts {
        let created = learner_common::at(p.start);
        account::Entity::insert(
            account::Model {
                id: a.id.clone(),
                name: a.id.clone(),
                attributes: serde_json::json!({}),
                profile_id: None,
                pinned: false,
                status: "active".into(),
                created_at: created,
                updated_at: created,
            }
            .into_active_model(),
        )
        .exec(&txn)
        .await
        .expect("insert account");
    }
    for chunk in p.usage().chunks(1000) {
        usage_daily::Entity::insert_many(chunk.iter().map(|u| u.clone().into_active_model()))
            .exec(&txn)
            .await
            .expect("insert roll-ups");
    }
    txn.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_each_service_share_the_work() {
    if !vitals_test_support::backends().contains(&Backend::Postgres) {
        eprintln!(
            "skipped: the multi-replica test needs PostgreSQL (set VITALS_TEST_POSTGRES_URL)"
        );
        return;
    }
    let url = fresh_url(Backend::Postgres).await.expect("database");
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let portfolio = learner_common::Portfolio::new(36, 200, Utc::now().date_naive());
    seed(&store, &portfolio).await;

    let mut replicas: BTreeMap<&str, Vec<Replica>> = BTreeMap::new();
    for bin in [
        "vitals-ingestion",
        "vitals-profiles",
        "vitals-scoring",
        "vitals-learner",
    ] {
        replicas.insert(
            bin,
            vec![Replica::start(bin, &url), Replica::start(bin, &url)],
        );
    }
    for r in replicas.values_mut().flatten() {
        r.wait_serving().await;
    }
    let started = Utc::now();

    // Which scoring replica holds the schedule: `a`; the other is `b`.
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        if let Some(pid) = holder_pid(&store, "schedule:scoring").await {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no replica took the scoring schedule"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut scoring = replicas.remove("vitals-scoring").expect("scoring");
    let ia = scoring
        .iter()
        .position(|r| r.pid() == holder)
        .expect("the holder is one of the scoring replicas");
    let b = scoring.remove(1 - ia);
    let mut a = scoring.remove(0);
    // Every schedule has one holder, a live replica.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in ["schedule:profiles-pending", "schedule:profiles-reassign"] {
        let pid = holder_pid(&store, name).await.expect(name);
        assert!(
            replicas["vitals-profiles"].iter().any(|r| r.pid() == pid),
            "{name} held by {pid}"
        );
    }

    // B's WatchScores, opened before any band changes.
    let mut sb = ScoringServiceClient::new(b.channel().await);
    let mut watch = sb
        .watch_scores(spb::WatchScoresRequest::default())
        .await
        .expect("watch on b")
        .into_inner();

    // Outcomes recorded on both learners at once, each half reaching the trigger (6).
    let outcomes = portfolio.churn_outcomes();
    assert_eq!(outcomes.len(), 12);
    let learners = &replicas["vitals-learner"];
    let (mut la, mut lb) = (
        LearnerServiceClient::new(learners[0].channel().await),
        LearnerServiceClient::new(learners[1].channel().await),
    );
    let (ra, rb) = tokio::join!(
        la.record_outcomes(lpb::RecordOutcomesRequest {
            outcomes: outcomes[..6].to_vec()
        }),
        lb.record_outcomes(lpb::RecordOutcomesRequest {
            outcomes: outcomes[6..].to_vec()
        }),
    );
    ra.expect("record on learner a");
    rb.expect("record on learner b");

    // A band change by a run of A: every score below the new yellow threshold is red.
    let mut profiles = ProfilesServiceClient::new(replicas["vitals-profiles"][0].channel().await);
    // The scheduled runs have scored everyone with the default thresholds (3 / 7).
    tokio::time::sleep(Duration::from_secs(INTERVAL_SECS + 1)).await;
    profiles
        .update_health_profile(ppb::UpdateHealthProfileRequest {
            health_profile: Some(ppb::HealthProfile {
                name: "profiles/default".into(),
                band_thresholds: Some(cpb::BandThresholds {
                    yellow_from: Some(9.9),
                    green_from: Some(9.95),
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["band_thresholds".into()],
            }),
        })
        .await
        .expect("update thresholds");
    let mut sa = ScoringServiceClient::new(a.channel().await);
    let run_a = sa
        .compute_scores(spb::ComputeScoresRequest {
            scope: Some(spb::compute_scores_request::Scope::Profile(
                "profiles/default".into(),
            )),
            as_of: None,
        })
        .await
        .expect("compute on a")
        .into_inner();
    // The change reaches B's stream whichever of A's runs (scheduled or requested)
    // committed it: B runs nothing while A holds the schedule.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let m = tokio::time::timeout_at(until, watch.message())
            .await
            .expect("a change to red streamed by b within 10 s")
            .expect("stream ok")
            .expect("stream open");
        if m.new_band == cpb::Band::Red as i32 {
            break m;
        }
    };
    assert_ne!(first.old_band, first.new_band);
    let a_runs: Vec<i64> = runs(&store).await.iter().map(|r| r.id).collect();
    let streamed: i64 = first.run_id.parse().expect("run id");
    assert!(a_runs.contains(&streamed), "{streamed} not a committed run");
    assert!(
        run_a.run_id.parse::<i64>().expect("run id") >= streamed,
        "the change came from a run of A"
    );
    assert_eq!(
        holder_pid(&store, "schedule:scoring").await,
        Some(a.pid()),
        "A kept the schedule"
    );

    // Runs requested on both replicas at once: serialised, distinct ids.
    let by_profile = || spb::ComputeScoresRequest {
        scope: Some(spb::compute_scores_request::Scope::Profile(
            "profiles/default".into(),
        )),
        as_of: None,
    };
    let (x, y) = tokio::join!(
        sa.compute_scores(by_profile()),
        sb.compute_scores(by_profile()),
    );
    let (x, y) = (x.expect("a").into_inner(), y.expect("b").into_inner());
    assert_ne!(x.run_id, y.run_id);

    // One automatic training for the outcomes recorded on both learners.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !models(&store).await.iter().any(|(p, _)| p == "global") {
        assert!(Instant::now() < deadline, "no automatic training in 180 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let trained = models(&store).await;
    assert!(
        trained.iter().all(|(_, v)| *v == 1),
        "one automatic training, one version per model: {trained:?}"
    );
    // Both learners train at once: versions 2 and 3, never the same number twice.
    let train = lpb::TrainRequest::default();
    let (ta, tb) = tokio::join!(la.train(train.clone()), lb.train(train));
    ta.expect("train on a");
    tb.expect("train on b");
    let mut versions: HashMap<String, Vec<i32>> = HashMap::new();
    for (p, v) in models(&store).await {
        versions.entry(p).or_default().push(v);
    }
    assert_eq!(versions["global"], vec![1, 2, 3], "{versions:?}");

    // Scheduled runs: one per tick, not one per replica and tick.
    let now = Utc::now();
    let window = (now - started).num_milliseconds() as f64 / 1000.0;
    let scheduled: Vec<DateTime<Utc>> = runs(&store)
        .await
        .into_iter()
        .filter(|r| r.scope == "all" && r.started_at >= started)
        .map(|r| r.started_at)
        .collect();
    let ticks = window / INTERVAL_SECS as f64;
    assert!(
        (scheduled.len() as f64) <= ticks + 1.0,
        "{} scheduled runs in {window:.1} s ({ticks:.1} ticks)",
        scheduled.len()
    );
    assert!(scheduled.len() >= 2, "{scheduled:?}");

    // A killed with SIGKILL while it holds the schedule's lease: B takes it over.
    assert_eq!(holder_pid(&store, "schedule:scoring").await, Some(a.pid()));
    a.child.0.kill().expect("SIGKILL");
    let killed = Instant::now();
    let killed_at = Utc::now();
    a.child.0.wait().expect("reaped");
    loop {
        if holder_pid(&store, "schedule:scoring").await == Some(b.pid()) {
            break;
        }
        assert!(
            killed.elapsed() < TAKEOVER_BOUND,
            "B did not take the schedule over within {TAKEOVER_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed.elapsed();
    // ... and runs the next tick.
    let bound = TAKEOVER_BOUND + Duration::from_secs(INTERVAL_SECS + 5);
    loop {
        let after: Vec<Run> = runs(&store)
            .await
            .into_iter()
            .filter(|r| r.scope == "all" && r.started_at > killed_at)
            .collect();
        if !after.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < bound,
            "no scheduled run within {bound:?} of the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "schedule taken over {:.1} s after SIGKILL, first run {:.1} s after",
        took_over.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    // Scheduled runs since the take-over: still one per tick.
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL_SECS)).await;
    let since: Vec<DateTime<Utc>> = runs(&store)
        .await
        .into_iter()
        .filter(|r| r.scope == "all" && r.started_at > killed_at)
        .map(|r| r.started_at)
        .collect();
    let secs = (Utc::now() - killed_at).num_milliseconds() as f64 / 1000.0;
    assert!(
        since.len() as f64 <= secs / INTERVAL_SECS as f64 + 1.0,
        "{} scheduled runs in {secs:.1} s after the kill",
        since.len()
    );
    drop(b);
    drop(replicas);
    drop(store);
}
