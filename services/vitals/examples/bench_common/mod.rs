//! Shared by the scoring-service benchmarks (`recompute_bench`, `getscore_bench`): a
//! synthetic portfolio written straight into the store tables, the all-in-one server in
//! this process, and small helpers.
//!
//! The portfolio: N accounts with a `plan` (starter 50 %, growth 35 %, enterprise 15 %)
//! and `seats` attribute, one open subscription each (MRR by plan), and `days` days of
//! `usage_daily` roll-ups ending today for three event types: `login` on every active
//! day, `report` on 40 % and `share` on 20 % of them; each account has its own activity
//! rate (uniform in 5..95 % of days) and its own volume, so that the KPIs spread. Three
//! health profiles split the accounts by plan (CEL rules, assigned with
//! ReassignAccounts).

#![allow(dead_code)] // each bench uses part of it

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, TimeZone, Utc};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_server::RunError;
use vitals_store::Store;
use vitals_store::entity::{account, subscription};
use vitals_store::profiles::{AttrValue, attributes_json};
use vitals_store::sea_orm::{ActiveValue::Set, ConnectionTrait, Database, EntityTrait};

pub mod child;
pub mod scale;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// splitmix64: a tiny deterministic generator (no `rand` dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The id of the i-th synthetic account.
pub fn account_id(i: u32) -> String {
    format!("acct-{i:06}")
}

/// `/proc/loadavg`'s first three fields, or "?".
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// A new empty database `vitals_bench_<pid>_<nanos>` on the PostgreSQL server of
/// `server_url` (e.g. `postgres://postgres@127.0.0.1:5432`); returns its URL.
pub async fn fresh_postgres(server_url: &str) -> Result<String, Error> {
    let base = server_url.trim_end_matches('/');
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let name = format!("vitals_bench_{}_{nanos}", std::process::id());
    let admin = Database::connect(format!("{base}/postgres")).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    Ok(format!("{base}/{name}"))
}

/// Drops a database made by [`fresh_postgres`].
pub async fn drop_postgres(url: &str) -> Result<(), Error> {
    let (base, name) = url.rsplit_once('/').ok_or("bad url")?;
    let admin = Database::connect(format!("{base}/postgres")).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await?;
    Ok(())
}

/// The database a bench runs on: the one given, a fresh PostgreSQL database, or a SQLite
/// file in a temporary folder.
pub enum BenchDb {
    /// `--database-url`: used as it is, never removed.
    Given(String),
    /// `--postgres SERVER_URL`: a new database made by [`fresh_postgres`].
    FreshPostgres(String),
    /// Neither: `bench.db` in a temporary folder.
    TempSqlite {
        url: String,
        dir: std::path::PathBuf,
    },
}

impl BenchDb {
    /// Opens the database of `--database-url` / `--postgres` for the bench named `tag`.
    pub async fn open(
        tag: &str,
        database_url: Option<&str>,
        postgres: Option<&str>,
    ) -> Result<Self, Error> {
        Ok(match (database_url, postgres) {
            (Some(u), _) => Self::Given(u.to_string()),
            (None, Some(server)) => Self::FreshPostgres(fresh_postgres(server).await?),
            (None, None) => {
                let dir = std::env::temp_dir().join(format!("vitals-{tag}-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
                Self::TempSqlite { url, dir }
            }
        })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Given(u) | Self::FreshPostgres(u) | Self::TempSqlite { url: u, .. } => u,
        }
    }

    /// Removes what [`BenchDb::open`] created (a given database is left alone).
    pub async fn remove(self) -> Result<(), Error> {
        match self {
            Self::Given(_) => {}
            Self::FreshPostgres(url) => drop_postgres(&url).await?,
            Self::TempSqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }
}

/// The all-in-one server in this process.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Server {
    /// Starts Vitals over `database_url` on `127.0.0.1:0` with auth off and a long
    /// request timeout; returns once it answers.
    pub async fn start(database_url: &str) -> Result<Self, Error> {
        Self::start_with(database_url, |_| {}).await
    }

    /// [`Server::start`], with `tune` applied to the configuration first.
    pub async fn start_with(
        database_url: &str,
        tune: impl FnOnce(&mut vitals::ServeConfig),
    ) -> Result<Self, Error> {
        let mut config = vitals::ServeConfig::for_tests(database_url);
        tune(&mut config);
        config.server.request_timeout = Duration::from_secs(3600);
        config.server.concurrency_limit = 4096;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(vitals::run(
            config,
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        ));
        let server = Self {
            addr,
            shutdown: Some(tx),
            handle,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if server.handle.is_finished() {
                return Err("the server stopped while starting".into());
            }
            if serving(server.addr).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("the server did not start within 120 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new connection to the server.
    pub async fn channel(&self) -> Result<Channel, Error> {
        Ok(connect(self.addr).await?)
    }

    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await??;
        Ok(())
    }
}

/// A new connection to the server at `addr` (TCP_NODELAY, 1 s to connect).
pub async fn connect(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
}

/// Whether the server at `addr` answers its health check with SERVING.
pub async fn serving(addr: SocketAddr) -> bool {
    let Ok(ch) = connect(addr).await else {
        return false;
    };
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .is_ok_and(|r| {
            r.into_inner().status()
                == tonic_health::pb::health_check_response::ServingStatus::Serving
        })
}

/// The three plans: (name, share of accounts, MRR, profile id, priority).
const PLANS: [(&str, f64, f64, &str, i32); 3] = [
    ("starter", 0.50, 49.0, "starter", 10),
    ("growth", 0.35, 499.0, "growth", 20),
    ("enterprise", 0.15, 4_999.0, "enterprise", 30),
];

/// Creates one health profile per plan (rule `plan == "<plan>"`).
pub async fn create_profiles(channel: Channel) -> Result<(), Error> {
    let mut client = ProfilesServiceClient::new(channel);
    for (plan, _, _, id, priority) in PLANS {
        let r = client
            .create_health_profile(ppb::CreateHealthProfileRequest {
                profile_id: id.to_string(),
                health_profile: Some(ppb::HealthProfile {
                    display_name: format!("Plan {plan}"),
                    assignment_rule: format!("plan == \"{plan}\""),
                    priority,
                    category_weights: Some(cpb::CategoryWeights {
                        usage: 3.0,
                        contract: 1.0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .await;
        match r {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => return Err(s.into()),
        }
    }
    Ok(())
}

/// What [`generate`] wrote.
#[derive(Debug, Default)]
pub struct Generated {
    pub accounts: u64,
    pub subscriptions: u64,
    pub usage_rows: u64,
    pub elapsed: Duration,
}

/// Usage rows per multi-row INSERT.
const ROWS_PER_INSERT: usize = 1000;
/// Multi-row INSERTs per transaction.
const INSERTS_PER_TX: usize = 100;

/// Writes `accounts` accounts (with subscriptions and `days` days of usage ending on
/// `today`) straight into the store tables, bypassing gRPC: multi-row INSERTs in large
/// transactions.
pub async fn generate(
    store: &Store,
    accounts: u32,
    days: u32,
    today: NaiveDate,
) -> Result<Generated, Error> {
    let started = Instant::now();
    let db = store.conn();
    let mut out = Generated::default();
    let mut rng = Rng::new(42);
    let created = Utc.from_utc_datetime(
        &(today - Days::new(400))
            .and_hms_opt(0, 0, 0)
            .ok_or("date")?,
    );
    let now = Utc::now();

    // Accounts and subscriptions, through the entities (formats exactly as the store's).
    let mut acc_rows = Vec::with_capacity(accounts as usize);
    let mut sub_rows = Vec::with_capacity(accounts as usize);
    // Per account: activity rate and volume, for the usage below.
    let mut shape = Vec::with_capacity(accounts as usize);
    for i in 0..accounts {
        let u = rng.f64();
        let mut acc = 0.0;
        let plan = PLANS
            .iter()
            .find(|p| {
                acc += p.1;
                u < acc
            })
            .unwrap_or(&PLANS[0]);
        let seats = match plan.0 {
            "starter" => 1 + rng.below(10),
            "growth" => 10 + rng.below(90),
            _ => 100 + rng.below(900),
        };
        let attrs = [
            ("plan".to_string(), AttrValue::String(plan.0.to_string())),
            ("seats".to_string(), AttrValue::Number(seats as f64)),
        ]
        .into_iter()
        .collect();
        let id = account_id(i);
        acc_rows.push(account::ActiveModel {
            id: Set(id.clone()),
            name: Set(format!("Account {i}")),
            attributes: Set(attributes_json(&attrs)),
            profile_id: Set(None),
            pinned: Set(false),
            status: Set("active".into()),
            created_at: Set(created + chrono::Duration::days(rng.below(300) as i64)),
            updated_at: Set(now),
        });
        sub_rows.push(subscription::ActiveModel {
            account_id: Set(id),
            id: Set("main".into()),
            product: Set("platform".into()),
            starts_at: Set(created),
            ends_at: Set(None),
            mrr: Set(plan.2 * (0.5 + rng.f64())),
            quantity: Set(Some(seats as f64)),
            units: Set(Some("seats".into())),
            bill_period_months: Set(12),
            is_addon: Set(false),
            discount: Set(0.0),
        });
        shape.push((0.05 + 0.9 * rng.f64(), 1 + rng.below(20), seats));
    }
    for chunk in acc_rows.chunks(2000) {
        account::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await?;
        out.accounts += chunk.len() as u64;
    }
    for chunk in sub_rows.chunks(2000) {
        subscription::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await?;
        out.subscriptions += chunk.len() as u64;
    }
    drop((acc_rows, sub_rows));

    // Usage roll-ups: literal multi-row INSERTs (dates as 'YYYY-MM-DD', the form both
    // back ends store a DATE in), many per transaction.
    let first = today - Days::new(u64::from(days.saturating_sub(1)));
    let mut values: Vec<String> = Vec::with_capacity(ROWS_PER_INSERT);
    let mut statements: Vec<String> = Vec::with_capacity(INSERTS_PER_TX);
    let flush_values = |values: &mut Vec<String>, statements: &mut Vec<String>| {
        if !values.is_empty() {
            statements.push(format!(
                "INSERT INTO usage_daily (account_id, day, event_type, count, distinct_users, \
                 value_sum) VALUES {}",
                values.join(",")
            ));
            values.clear();
        }
    };
    for (i, (rate, volume, seats)) in shape.iter().enumerate() {
        let id = account_id(i as u32);
        for d in 0..days {
            if rng.f64() >= *rate {
                continue;
            }
            let day = first + Days::new(u64::from(d));
            for (event, share) in [("login", 1.0), ("report", 0.4), ("share", 0.2)] {
                if share < 1.0 && rng.f64() >= share {
                    continue;
                }
                let count = 1 + rng.below(*volume * 3);
                let users = 1 + rng.below(count.min(*seats));
                values.push(format!("('{id}','{day}','{event}',{count},{users},0)"));
                out.usage_rows += 1;
                if values.len() == ROWS_PER_INSERT {
                    flush_values(&mut values, &mut statements);
                    if statements.len() == INSERTS_PER_TX {
                        write_tx(store, &mut statements).await?;
                    }
                }
            }
        }
    }
    flush_values(&mut values, &mut statements);
    write_tx(store, &mut statements).await?;
    out.elapsed = started.elapsed();
    Ok(out)
}

async fn write_tx(store: &Store, statements: &mut Vec<String>) -> Result<(), Error> {
    use vitals_store::sea_orm::TransactionTrait;
    if statements.is_empty() {
        return Ok(());
    }
    let tx = store.conn().begin().await?;
    for s in statements.drain(..) {
        tx.execute_unprepared(&s).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Latency percentiles of `samples` (microseconds), sorted in place: (p50, p90, p99,
/// max) in milliseconds.
pub fn percentiles(samples: &mut [u32]) -> (f64, f64, f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        if samples.is_empty() {
            0.0
        } else {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            f64::from(samples[i]) / 1000.0
        }
    };
    (at(0.50), at(0.90), at(0.99), at(1.0))
}
