//! Storage of the scoring service: runs, snapshots (the history), and `score_latest`
//! (the latest snapshot of each account and scorecard, for listings and distributions).
//!
//! Formats:
//! - `score_snapshots.scorecard_id` is [`PROFILE_SCORECARD`] for the built-in profile
//!   score, else the scorecard id; `profile_id` is the account's profile at the time (empty
//!   when it had none); `band` and `global_band` are `red`, `yellow`, `green` (or empty).
//! - `sub_scores` is JSON and `drivers_bin` bytes, written and read by the scoring
//!   service only (its `domain::stored` types): the category sub-scores and the other
//!   per-snapshot details, and every present KPI's contribution (so explanations never
//!   recompute). Rows written before migration 10 hold the contributions as JSON in
//!   `drivers` (and NULL in `drivers_bin`); rows written since hold JSON `null` there.
//! - A snapshot replaces the `score_latest` row of its (account, scorecard) unless that
//!   row is newer (a backfill with a past `as_of` only adds history).
//!
//! Writes are set-based. Which path runs when (one module per backend):
//! - a scoring run ([`write_run`], what the service uses): on SQLite [`sqlite`], multi-row
//!   `VALUES` of [`WRITE_CHUNK`] rows on one pooled connection; on PostgreSQL
//!   [`postgres`], binary `COPY` of the snapshots and of the latest rows (through a
//!   temporary table), whatever the run's size;
//! - [`start_run`] / [`write_snapshots`] / [`finish_run`] (generic, inside a caller's
//!   [`crate::WriteTx`]): multi-row `INSERT`s of [`INSERT_CHUNK`] rows on both engines.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, RuntimeErr, Statement, Value,
};

use crate::entity::{score_run, score_snapshot};
use crate::{Db, Store, StoreError};

/// `scorecard_id` of the built-in profile score.
pub const PROFILE_SCORECARD: &str = "profile";

/// Rows per multi-row `INSERT` (17 values per snapshot: well under both engines' limits
/// on bound parameters).
pub const INSERT_CHUNK: usize = 1000;

/// The `score_latest` table (migration 5).
pub mod latest_row {
    use sea_orm::entity::prelude::*;

    /// The latest snapshot of one (account, scorecard).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "score_latest")]
    pub struct Model {
        /// The account.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// The scorecard (`profile` for the profile score).
        #[sea_orm(primary_key, auto_increment = false)]
        pub scorecard_id: String,
        /// The account's profile then.
        pub profile_id: String,
        /// as_of of the snapshot.
        pub as_of: DateTimeUtc,
        /// The run that wrote it.
        pub run_id: i64,
        /// The score.
        pub value: f64,
        /// Its band.
        pub band: String,
        /// Profile score only: the global score.
        pub global_value: Option<f64>,
        /// Profile score only: the global band.
        pub global_band: String,
    }

    /// No declared relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A stored snapshot.
pub type SnapshotRecord = score_snapshot::Model;
/// A stored latest-snapshot row.
pub type LatestRecord = latest_row::Model;

/// A snapshot to write (the run id is given to [`write_snapshots`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NewSnapshot {
    /// The account.
    pub account_id: String,
    /// The scorecard (`profile` for the profile score).
    pub scorecard_id: String,
    /// The account's profile (empty when none).
    pub profile_id: String,
    /// The time computed as of.
    pub as_of: DateTime<Utc>,
    /// The score.
    pub value: f64,
    /// Its band.
    pub band: String,
    /// Profile score only: the global score.
    pub global_value: Option<f64>,
    /// Profile score only: the global band (empty otherwise).
    pub global_band: String,
    /// Sub-scores and details (service JSON, as text: serialised once, in parallel, by
    /// the caller).
    pub sub_scores: String,
    /// Usage momentum.
    pub momentum: f64,
    /// KPIs with a value.
    pub coverage_present: i32,
    /// KPIs counted.
    pub coverage_total: i32,
    /// Contributions in the service's binary form (stored in `drivers_bin`; the JSON
    /// `drivers` column gets `null`).
    pub drivers: Vec<u8>,
    /// Churn probability, when a model exists.
    pub churn_probability: Option<f64>,
    /// `learned`, `last_known` or `uniform`.
    pub weights_source: String,
    /// Compared with the whole portfolio.
    pub population_fallback: bool,
}

/// A statement with `?` placeholders, renumbered `$n` on PostgreSQL.
fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, crate::placeholders(backend, sql), values)
}

/// `(?, ?, ...)` with `n` placeholders.
fn tuple(n: usize) -> String {
    let mut s = String::with_capacity(2 * n + 2);
    crate::push_groups(&mut s, DbBackend::Sqlite, 1, n, &mut 0);
    s
}

/// Records the start of a run; returns its id.
pub async fn start_run(
    db: &impl Db,
    scope: &str,
    started_at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let conn = db.c();
    let m = score_run::Model {
        id: 0,
        scope: scope.to_string(),
        started_at,
        finished_at: None,
        accounts_scored: 0,
        details: serde_json::json!({}),
    };
    let mut am = m.into_active_model();
    am.id = sea_orm::ActiveValue::NotSet;
    Ok(am.insert(conn).await?.id)
}

/// Records the end of run `id`.
pub async fn finish_run(
    db: &impl Db,
    id: i64,
    finished_at: DateTime<Utc>,
    accounts_scored: i64,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    let conn = db.c();
    score_run::Entity::update_many()
        .col_expr(score_run::Column::FinishedAt, Expr::value(finished_at))
        .col_expr(
            score_run::Column::AccountsScored,
            Expr::value(accounts_scored),
        )
        .col_expr(score_run::Column::Details, Expr::value(details))
        .filter(score_run::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// From this many accounts on, [`latest_of_accounts`] reads `score_latest` whole.
pub const LATEST_SCAN_FROM: usize = 10_000;

/// The latest rows of these accounts (every scorecard), keyed by (account, scorecard).
pub async fn latest_of_accounts(
    db: &impl Db,
    account_ids: &[String],
) -> Result<HashMap<(String, String), LatestRecord>, StoreError> {
    let conn = db.c();
    let mut out = HashMap::with_capacity(account_ids.len());
    if account_ids.len() >= LATEST_SCAN_FROM {
        // A large population (a whole-portfolio run): one pass over the table instead of
        // one `IN (...)` statement per INSERT_CHUNK ids.
        let wanted: std::collections::HashSet<&str> =
            account_ids.iter().map(String::as_str).collect();
        for r in latest_row::Entity::find().all(conn).await? {
            if wanted.contains(r.account_id.as_str()) {
                out.insert((r.account_id.clone(), r.scorecard_id.clone()), r);
            }
        }
        return Ok(out);
    }
    for chunk in account_ids.chunks(INSERT_CHUNK) {
        let rows = latest_row::Entity::find()
            .filter(latest_row::Column::AccountId.is_in(chunk.iter().cloned()))
            .all(conn)
            .await?;
        for r in rows {
            out.insert((r.account_id.clone(), r.scorecard_id.clone()), r);
        }
    }
    Ok(out)
}

/// The churn probability of the latest profile snapshot of these accounts (accounts
/// whose latest snapshot has none are left out): what a scoring run compares with to
/// find churn thresholds crossed.
pub async fn latest_churn(
    db: &impl Db,
    account_ids: &[String],
) -> Result<HashMap<String, f64>, StoreError> {
    let conn = db.c();
    let backend = conn.get_database_backend();
    let mut out = HashMap::new();
    for chunk in account_ids.chunks(INSERT_CHUNK) {
        let sql = format!(
            "SELECT l.account_id, s.churn_probability FROM score_latest l \
             JOIN score_snapshots s ON s.account_id = l.account_id \
             AND s.scorecard_id = l.scorecard_id AND s.as_of = l.as_of AND s.run_id = l.run_id \
             WHERE l.scorecard_id = ? AND s.churn_probability IS NOT NULL AND l.account_id IN {}",
            tuple(chunk.len())
        );
        let mut values = vec![Value::from(PROFILE_SCORECARD)];
        values.extend(chunk.iter().map(|a| Value::from(a.clone())));
        for r in conn.query_all_raw(stmt(backend, &sql, values)).await? {
            out.insert(
                r.try_get::<String>("", "account_id")?,
                r.try_get::<f64>("", "churn_probability")?,
            );
        }
    }
    Ok(out)
}

/// Writes `rows` as snapshots of run `run_id` and moves `score_latest` forward, in
/// multi-row statements of [`INSERT_CHUNK`] rows. Call inside a transaction.
pub async fn write_snapshots(
    db: &impl Db,
    run_id: i64,
    rows: &[NewSnapshot],
) -> Result<(), StoreError> {
    let conn = db.c();
    let backend = conn.get_database_backend();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO score_snapshots (run_id, account_id, scorecard_id, profile_id, as_of, \
             value, band, global_value, sub_scores, momentum, coverage_present, \
             coverage_total, drivers, churn_probability, weights_source, \
             population_fallback, drivers_bin) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 17);
        // JSON goes in as text: PostgreSQL casts it to json (migration 7), SQLite stores
        // the text.
        let json = if backend == DbBackend::Postgres {
            "CAST(? AS json)"
        } else {
            "?"
        };
        let t = format!("(?,?,?,?,?,?,?,?,{json},?,?,?,{json},?,?,?,?)");
        for (i, r) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&t);
            values.extend([
                Value::from(run_id),
                Value::from(r.account_id.clone()),
                Value::from(r.scorecard_id.clone()),
                Value::from(r.profile_id.clone()),
                Value::from(r.as_of),
                Value::from(r.value),
                Value::from(r.band.clone()),
                Value::from(r.global_value.unwrap_or(r.value)),
                Value::from(r.sub_scores.clone()),
                Value::from(r.momentum),
                Value::from(r.coverage_present),
                Value::from(r.coverage_total),
                Value::from(DRIVERS_JSON),
                Value::from(r.churn_probability),
                Value::from(r.weights_source.clone()),
                Value::from(r.population_fallback),
                Value::from(r.drivers.clone()),
            ]);
        }
        conn.execute_raw(stmt(backend, &sql, values)).await?;

        let mut sql = String::from(
            "INSERT INTO score_latest (account_id, scorecard_id, profile_id, as_of, run_id, \
             value, band, global_value, global_band) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 9);
        let t = tuple(9);
        for (i, r) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&t);
            values.extend([
                Value::from(r.account_id.clone()),
                Value::from(r.scorecard_id.clone()),
                Value::from(r.profile_id.clone()),
                Value::from(r.as_of),
                Value::from(run_id),
                Value::from(r.value),
                Value::from(r.band.clone()),
                Value::from(r.global_value),
                Value::from(r.global_band.clone()),
            ]);
        }
        sql.push_str(LATEST_CONFLICT);
        conn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// The run row of [`write_run`].
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// What the run scored (`all`, `profiles/{id}`, `account:{id}`).
    pub scope: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Accounts scored.
    pub accounts_scored: i64,
    /// The run's details JSON.
    pub details: serde_json::Value,
    /// Webhook events the run causes (band changes, churn thresholds crossed), written to
    /// the outbox in the run's transaction, each with `data.run_id` set
    /// ([`crate::webhooks`]).
    pub events: Vec<crate::webhooks::NewEvent>,
}

/// Rows per statement of [`write_run`] on SQLite: 17 values per snapshot, under its
/// limit of 32,766 bound parameters.
pub const WRITE_CHUNK: usize = 1900;

/// What new rows store in the JSON `drivers` column (the drivers are in `drivers_bin`).
const DRIVERS_JSON: &str = "null";

/// Writes a whole run in one write transaction of its own: the `score_runs` row (started
/// then finished, `finished_at` taken just before the commit), every snapshot of `rows`
/// and the `score_latest` rows they move forward, as [`start_run`], [`write_snapshots`]
/// and [`finish_run`] do, in fewer and cheaper statements straight on the driver: on
/// SQLite statements of [`WRITE_CHUNK`] rows; on PostgreSQL binary `COPY` of the
/// snapshots into `score_snapshots` and of the latest rows into a temporary table, then
/// one `INSERT ... SELECT ... ON CONFLICT` into `score_latest`. The rows must be unique
/// per (account, scorecard), as a run's are (PostgreSQL refuses to update one
/// `score_latest` row twice in one statement). The run's webhook events
/// ([`RunRecord::events`]) go to the outbox in the same transaction. Returns the run id. On SQLite the
/// transaction is `BEGIN IMMEDIATE` (see [`crate::Store::begin_write`]).
pub async fn write_run(
    store: &Store,
    run: &RunRecord,
    rows: &[NewSnapshot],
) -> Result<i64, StoreError> {
    let conn = store.conn();
    let written = match conn.get_database_backend() {
        DbBackend::Sqlite => sqlite::write_run(conn.get_sqlite_connection_pool(), run, rows).await,
        DbBackend::Postgres => {
            postgres::write_run(conn.get_postgres_connection_pool(), run, rows).await
        }
        other => Err(WriteErr::Db(DbErr::Custom(format!(
            "write_run: unsupported database {other:?}"
        )))),
    };
    written.map_err(|e| match e {
        WriteErr::Sqlx(e) => DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))).into(),
        WriteErr::Db(e) => e.into(),
    })
}

enum WriteErr {
    Sqlx(sqlx::Error),
    Db(DbErr),
}

impl From<sqlx::Error> for WriteErr {
    fn from(e: sqlx::Error) -> Self {
        Self::Sqlx(e)
    }
}

impl From<DbErr> for WriteErr {
    fn from(e: DbErr) -> Self {
        Self::Db(e)
    }
}

const LATEST_CONFLICT: &str = " ON CONFLICT (account_id, scorecard_id) DO UPDATE SET \
     profile_id = excluded.profile_id, as_of = excluded.as_of, \
     run_id = excluded.run_id, value = excluded.value, band = excluded.band, \
     global_value = excluded.global_value, global_band = excluded.global_band \
     WHERE excluded.as_of >= score_latest.as_of";

pub mod overview;
mod postgres;
mod sqlite;

/// The snapshot of (account, scorecard) in force at `at` (the latest with
/// `as_of <= at`), or the latest one when `at` is `None`. Among snapshots with the same
/// `as_of`, the one of the latest run wins.
pub async fn snapshot_at(
    db: &impl Db,
    account_id: &str,
    scorecard_id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<Option<SnapshotRecord>, StoreError> {
    let conn = db.c();
    let mut q = score_snapshot::Entity::find()
        .filter(score_snapshot::Column::AccountId.eq(account_id))
        .filter(score_snapshot::Column::ScorecardId.eq(scorecard_id));
    if let Some(at) = at {
        q = q.filter(score_snapshot::Column::AsOf.lte(at));
    }
    let mut row = q
        .order_by_desc(score_snapshot::Column::AsOf)
        .order_by_desc(score_snapshot::Column::RunId)
        .one(conn)
        .await?;
    crate::snapshot::names::expand(db, row.as_mut_slice()).await?;
    Ok(row)
}

/// Filters of [`list_latest`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatestFilter {
    /// Only this profile.
    pub profile_id: Option<String>,
    /// Only this scorecard (`None`: every scorecard).
    pub scorecard_id: Option<String>,
    /// Only these bands (empty: all).
    pub bands: Vec<String>,
    /// Only values >= this.
    pub min_value: Option<f64>,
    /// Only values <= this.
    pub max_value: Option<f64>,
    /// Only the direct children of this account (`accounts.parent_id`).
    pub parent_id: Option<String>,
}

/// Orderings of [`list_latest`]; ties are broken by account id then scorecard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LatestOrder {
    /// Lowest score first.
    #[default]
    ValueAsc,
    /// Highest score first.
    ValueDesc,
    /// By account id.
    AccountId,
}

fn latest_where(f: &LatestFilter) -> (String, Vec<Value>) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut values = Vec::new();
    if let Some(p) = &f.profile_id {
        sql.push_str(" AND l.profile_id = ?");
        values.push(Value::from(p.clone()));
    }
    if let Some(s) = &f.scorecard_id {
        sql.push_str(" AND l.scorecard_id = ?");
        values.push(Value::from(s.clone()));
    }
    if !f.bands.is_empty() {
        sql.push_str(" AND l.band IN ");
        sql.push_str(&tuple(f.bands.len()));
        values.extend(f.bands.iter().map(|b| Value::from(b.clone())));
    }
    if let Some(v) = f.min_value {
        sql.push_str(" AND l.value >= ?");
        values.push(Value::from(v));
    }
    if let Some(v) = f.max_value {
        sql.push_str(" AND l.value <= ?");
        values.push(Value::from(v));
    }
    if let Some(p) = &f.parent_id {
        sql.push_str(" AND l.account_id IN (SELECT a.id FROM accounts a WHERE a.parent_id = ?)");
        values.push(Value::from(p.clone()));
    }
    (sql, values)
}

/// The latest snapshots matching `filter`, in `order`, `limit` of them after skipping
/// `offset`; and the number matching over all pages.
pub async fn list_latest(
    db: &impl Db,
    filter: &LatestFilter,
    order: LatestOrder,
    offset: u64,
    limit: u64,
) -> Result<(Vec<SnapshotRecord>, u64), StoreError> {
    let conn = db.c();
    let backend = conn.get_database_backend();
    let (w, values) = latest_where(filter);
    let count = conn
        .query_one_raw(stmt(
            backend,
            &format!("SELECT COUNT(*) AS n FROM score_latest l{w}"),
            values.clone(),
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    let order_sql = match order {
        LatestOrder::ValueAsc => "l.value ASC, l.account_id ASC, l.scorecard_id ASC",
        LatestOrder::ValueDesc => "l.value DESC, l.account_id ASC, l.scorecard_id ASC",
        LatestOrder::AccountId => "l.account_id ASC, l.scorecard_id ASC",
    };
    let mut values = values;
    values.push(Value::from(limit as i64));
    values.push(Value::from(offset as i64));
    let sql = format!(
        "SELECT s.* FROM score_latest l JOIN score_snapshots s \
         ON s.account_id = l.account_id AND s.scorecard_id = l.scorecard_id \
         AND s.as_of = l.as_of AND s.run_id = l.run_id{w} \
         ORDER BY {order_sql} LIMIT ? OFFSET ?"
    );
    let mut rows = score_snapshot::Entity::find()
        .from_raw_sql(stmt(backend, &sql, values))
        .all(conn)
        .await?;
    crate::snapshot::names::expand(db, &mut rows).await?;
    Ok((rows, u64::try_from(count).unwrap_or(0)))
}

/// Snapshots of (account, scorecard) with `start <= as_of < end`, oldest first.
pub async fn history(
    db: &impl Db,
    account_id: &str,
    scorecard_id: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    offset: u64,
    limit: u64,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    let conn = db.c();
    let mut q = score_snapshot::Entity::find()
        .filter(score_snapshot::Column::AccountId.eq(account_id))
        .filter(score_snapshot::Column::ScorecardId.eq(scorecard_id));
    if let Some(s) = start {
        q = q.filter(score_snapshot::Column::AsOf.gte(s));
    }
    if let Some(e) = end {
        q = q.filter(score_snapshot::Column::AsOf.lt(e));
    }
    let mut rows = q
        .order_by_asc(score_snapshot::Column::AsOf)
        .order_by_asc(score_snapshot::Column::RunId)
        .offset(offset)
        .limit(limit)
        .all(conn)
        .await?;
    crate::snapshot::names::expand(db, &mut rows).await?;
    Ok(rows)
}

/// The latest rows of a scorecard (`None`: every scorecard), optionally of one profile,
/// for distributions.
pub async fn latest_rows(
    db: &impl Db,
    profile_id: Option<&str>,
    scorecard_id: &str,
) -> Result<Vec<LatestRecord>, StoreError> {
    let conn = db.c();
    let mut q = latest_row::Entity::find().filter(latest_row::Column::ScorecardId.eq(scorecard_id));
    if let Some(p) = profile_id {
        q = q.filter(latest_row::Column::ProfileId.eq(p));
    }
    q.all(conn).await.map_err(Into::into)
}

/// Whether any snapshot exists for this account (any scorecard).
pub async fn account_has_snapshots(db: &impl Db, account_id: &str) -> Result<bool, StoreError> {
    let conn = db.c();
    Ok(latest_row::Entity::find()
        .filter(latest_row::Column::AccountId.eq(account_id))
        .one(conn)
        .await?
        .is_some())
}

/// The number of committed scoring runs (`finished_at` set): it grows with every commit of
/// any process sharing the database.
pub async fn committed_runs(db: &impl Db) -> Result<i64, StoreError> {
    let conn = db.c();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(finished_at) AS n FROM score_runs",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0))
}

/// The id of the last committed scoring run (0 when none).
pub async fn last_committed_run(store: &Store) -> Result<i64, StoreError> {
    let conn = store.conn();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COALESCE(MAX(id), 0) AS n FROM score_runs WHERE finished_at IS NOT NULL",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0))
}

/// The ids of the committed scoring runs after run `after`, in order.
pub async fn committed_runs_after(store: &Store, after: i64) -> Result<Vec<i64>, StoreError> {
    let conn = store.conn();
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt(
            b,
            "SELECT id FROM score_runs WHERE id > ? AND finished_at IS NOT NULL ORDER BY id",
            vec![after.into()],
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<i64>("", "id"))
        .collect::<Result<_, _>>()?)
}

/// A band change of a stored run: a snapshot of the run whose band differs from the
/// latest earlier snapshot of its (account, scorecard) (by `as_of`, then run), when that
/// one is not newer.
#[derive(Clone, Debug, PartialEq, sea_orm::FromQueryResult)]
pub struct StoredBandChange {
    /// The account.
    pub account_id: String,
    /// Its profile then.
    pub profile_id: String,
    /// The scorecard.
    pub scorecard_id: String,
    /// Band before.
    pub old_band: String,
    /// Band in the run.
    pub new_band: String,
    /// Score before.
    pub old_value: f64,
    /// Score in the run.
    pub new_value: f64,
    /// `as_of` of the run's snapshot.
    pub as_of: DateTime<Utc>,
}

/// The band changes written by run `run_id` (what the run itself broadcast, read back by
/// the other replicas), in the order of its snapshots.
pub async fn band_changes_of_run(
    store: &Store,
    run_id: i64,
) -> Result<Vec<StoredBandChange>, StoreError> {
    let conn = store.conn();
    let b = conn.get_database_backend();
    use sea_orm::FromQueryResult;
    Ok(StoredBandChange::find_by_statement(stmt(
        b,
        "SELECT s.account_id, s.profile_id, s.scorecard_id, p.band AS old_band, \
         s.band AS new_band, p.value AS old_value, s.value AS new_value, s.as_of \
         FROM score_snapshots s JOIN score_snapshots p ON p.id = (\
           SELECT q.id FROM score_snapshots q WHERE q.account_id = s.account_id \
           AND q.scorecard_id = s.scorecard_id AND q.run_id < s.run_id \
           ORDER BY q.as_of DESC, q.run_id DESC LIMIT 1) \
         WHERE s.run_id = ? AND p.as_of <= s.as_of AND p.band <> s.band ORDER BY s.id",
        vec![run_id.into()],
    ))
    .all(conn)
    .await?)
}

/// The distinct names of `column` in `table`, sorted.
async fn distinct_names(
    db: &impl Db,
    table: &str,
    column: &str,
) -> Result<Vec<String>, StoreError> {
    let conn = db.c();
    let sql = format!("SELECT DISTINCT {column} FROM {table} ORDER BY {column}");
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<Result<_, DbErr>>()?)
}

/// Every custom metric name with at least one recorded sample, sorted.
pub async fn recorded_metric_names(db: &impl Db) -> Result<Vec<String>, StoreError> {
    distinct_names(db, "custom_metrics", "name").await
}

/// Every custom score field with at least one recorded value, sorted.
pub async fn recorded_score_fields(db: &impl Db) -> Result<Vec<String>, StoreError> {
    distinct_names(db, "custom_score_fields", "field").await
}

#[cfg(test)]
mod tests;
