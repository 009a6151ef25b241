//! Shared set-up of the learner tests: a server over a fresh database that the test also
//! writes to directly (accounts, daily roll-ups), and a small portfolio with a planted
//! churn signal.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Days, NaiveDate, Utc};
use tonic::transport::Channel;
use vitals_learner::{Config, LearnerArgs};
use vitals_proto::learner::v1 as pb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_server::{ServerConfig, WorkBudget};
use vitals_store::Store;
use vitals_store::entity::{account, usage_daily};
use vitals_store::sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, TransactionTrait};
use vitals_test_support::churn::XorPortfolio;
use vitals_test_support::{Backend, TestServer, fresh_url};

/// A running learner service with a direct handle on its database.
pub struct Env {
    pub server: TestServer,
    pub store: Store,
    pub client: LearnerServiceClient<Channel>,
    pub backend: Backend,
    url: String,
}

/// Automatic training off: tests train explicitly unless they test the automation.
pub fn quiet_args() -> LearnerArgs {
    LearnerArgs {
        retrain_after_outcomes: 0,
        ..LearnerArgs::default()
    }
}

/// A URL both the test and the server can open: a fresh PostgreSQL database, or a
/// SQLite file (an in-memory database would be private to one connection pool).
async fn shared_url(backend: Backend) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!(
                "vitals-learner-{}-{}-{}.db",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => fresh_url(backend).await.expect("fresh postgres database"),
    }
}

impl Env {
    /// Starts the service on `backend` with `args`.
    pub async fn start(backend: Backend, args: LearnerArgs) -> Self {
        Self::start_at(backend, shared_url(backend).await, args).await
    }

    /// Starts the service with `args` on the database at `url` (e.g. one an earlier
    /// [`Env`] of the test used: [`Env::url`]).
    pub async fn start_at(backend: Backend, url: String, args: LearnerArgs) -> Self {
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let config = Config {
            server: ServerConfig::for_tests(url.clone()),
            service: args,
        };
        let server =
            TestServer::start(|listener, shutdown| vitals_learner::run(config, listener, shutdown))
                .await;
        let client = LearnerServiceClient::new(server.channel().await);
        Self {
            server,
            store,
            client,
            backend,
            url,
        }
    }

    /// Starts the service on `backend` with `args`, the server settings `server` changes
    /// from the test defaults, and the heavy-work budget `work` (which the test can watch).
    pub async fn start_with(
        backend: Backend,
        args: LearnerArgs,
        server: impl FnOnce(&mut ServerConfig),
        work: WorkBudget,
    ) -> Self {
        let url = shared_url(backend).await;
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let mut config = Config {
            server: ServerConfig::for_tests(url.clone()),
            service: args,
        };
        server(&mut config.server);
        let server = TestServer::start(|listener, shutdown| {
            vitals_learner::run_with_budget(config, listener, shutdown, work)
        })
        .await;
        let client = LearnerServiceClient::new(server.channel().await);
        Self {
            server,
            store,
            client,
            backend,
            url,
        }
    }

    /// Writes the portfolio's accounts and daily roll-ups (one transaction).
    pub async fn put_portfolio(&self, p: &Portfolio) {
        let accounts: Vec<(String, Option<String>)> = p
            .accounts
            .iter()
            .map(|a| (a.id.clone(), a.profile.clone()))
            .collect();
        self.put_accounts(&accounts, p.start, &p.usage()).await;
    }

    /// Writes an interaction portfolio's accounts (no profile), daily roll-ups and pulses.
    pub async fn put_xor_portfolio(&self, p: &XorPortfolio) {
        let accounts: Vec<(String, Option<String>)> =
            p.accounts.iter().map(|a| (a.id.clone(), None)).collect();
        self.put_accounts(&accounts, p.start, &p.usage()).await;
        for row in p.pulse_rows() {
            row.insert(self.store.conn()).await.expect("insert pulse");
        }
    }

    /// Writes accounts (id, profile) created on `start` and daily roll-ups (one
    /// transaction).
    pub async fn put_accounts(
        &self,
        accounts: &[(String, Option<String>)],
        start: NaiveDate,
        rows: &[usage_daily::Model],
    ) {
        let txn = self.store.conn().begin().await.expect("begin");
        for (id, profile) in accounts {
            let created = at(start);
            account::Entity::insert(
                account::Model {
                    id: id.clone(),
                    name: id.clone(),
                    attributes: serde_json::json!({}),
                    profile_id: profile.clone(),
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
        for chunk in rows.chunks(1000) {
            usage_daily::Entity::insert_many(chunk.iter().map(|u| u.clone().into_active_model()))
                .exec(&txn)
                .await
                .expect("insert roll-ups");
        }
        txn.commit().await.expect("commit");
    }

    /// Records outcomes over gRPC.
    pub async fn record(&self, outcomes: Vec<pb::Outcome>) -> pb::RecordOutcomesResponse {
        self.client
            .clone()
            .record_outcomes(pb::RecordOutcomesRequest { outcomes })
            .await
            .expect("record outcomes")
            .into_inner()
    }

    /// Trains every profile and the global model as of `as_of` with `options`.
    pub async fn train(
        &self,
        as_of: NaiveDate,
        options: pb::TrainingOptions,
    ) -> Result<pb::TrainResponse, tonic::Status> {
        self.client
            .clone()
            .train(pb::TrainRequest {
                profile: String::new(),
                options: Some(options),
                as_of: Some(ts(at(as_of))),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Stops the server.
    /// The database's URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub async fn stop(self) {
        self.store.close().await.expect("close store");
        self.server.stop().await.expect("clean stop");
    }
}

/// Midnight UTC of a day.
pub fn at(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// A protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// A churn outcome.
pub fn churn(id: &str, d: NaiveDate) -> pb::Outcome {
    pb::Outcome {
        account_id: id.into(),
        kind: pb::OutcomeKind::Churned as i32,
        occur_time: Some(ts(at(d))),
        note: "planted".into(),
        record_time: None,
    }
}

/// One account of a [`Portfolio`].
#[derive(Debug, Clone)]
pub struct PlantedAccount {
    pub id: String,
    pub profile: Option<String>,
    /// Churn date, for churners.
    pub churn: Option<NaiveDate>,
}

/// A small portfolio with a planted signal: every account uses the product every day
/// with the same total activity (10 events a day of two types), but churners post little
/// and like a lot while retained accounts post a lot and like little. So `events_post`
/// predicts retention, and `events_like` contradicts its declared direction (more likes,
/// more churn); the total activity, active days and breadth carry no signal.
#[derive(Debug, Clone)]
pub struct Portfolio {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub accounts: Vec<PlantedAccount>,
}

/// The planted discriminating KPI.
pub const SIGNAL_KPI: &str = "events_post";
/// The planted contradicting KPI.
pub const CONTRADICTING_KPI: &str = "events_like";

impl Portfolio {
    /// `n` accounts over `days` days ending at `end` (exclusive); every third one churns,
    /// the churn dates spread over the second half of the period.
    pub fn new(n: usize, days: u64, end: NaiveDate) -> Self {
        let start = end.checked_sub_days(Days::new(days)).expect("start");
        let churners: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
        let accounts = (0..n)
            .map(|i| {
                let churn = churners.iter().position(|&c| c == i).map(|k| {
                    // Spread over [days / 2, days - 5).
                    let span = days / 2 - 5;
                    let offset = days / 2 + (k as u64 * span) / churners.len() as u64;
                    start
                        .checked_add_days(Days::new(offset))
                        .expect("churn date")
                });
                PlantedAccount {
                    id: format!("acct-{i:03}"),
                    profile: None,
                    churn,
                }
            })
            .collect();
        Self {
            start,
            end,
            accounts,
        }
    }

    /// The churners' outcomes, in churn-date order.
    pub fn churn_outcomes(&self) -> Vec<pb::Outcome> {
        let mut v: Vec<(NaiveDate, &str)> = self
            .accounts
            .iter()
            .filter_map(|a| a.churn.map(|d| (d, a.id.as_str())))
            .collect();
        v.sort();
        v.into_iter().map(|(d, id)| churn(id, d)).collect()
    }

    /// Daily roll-ups up to the churn date (exclusive) or the end.
    pub fn usage(&self) -> Vec<usage_daily::Model> {
        let mut out = Vec::new();
        let mut next =
            vitals_test_support::churn::noise(0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d);
        for a in &self.accounts {
            let last = a.churn.unwrap_or(self.end);
            let mut d = self.start;
            while d < last {
                // Churners post 1..5 a day, retained accounts 4..9: overlapping.
                let posts = if a.churn.is_some() {
                    1 + (next() % 5) as i64
                } else {
                    4 + (next() % 6) as i64
                };
                for (ty, count) in [("post", posts), ("like", 10 - posts)] {
                    out.push(usage_daily::Model {
                        account_id: a.id.clone(),
                        day: d,
                        event_type: ty.into(),
                        count,
                        distinct_users: 1,
                        value_sum: 0.0,
                    });
                }
                d = d.succ_opt().expect("next day");
            }
        }
        out
    }
}

/// The weight of a KPI in a model or weights answer.
pub fn weight_of<'a>(weights: &'a [pb::KpiWeight], kpi: &str) -> &'a pb::KpiWeight {
    weights
        .iter()
        .find(|w| w.kpi == kpi)
        .unwrap_or_else(|| panic!("no weight for {kpi}"))
}

/// The global model of a Train answer.
pub fn global(r: &pb::TrainResponse) -> &pb::Model {
    r.models
        .iter()
        .find(|m| m.profile.is_empty())
        .unwrap_or_else(|| panic!("no global model in {:?}", r.skipped))
}
