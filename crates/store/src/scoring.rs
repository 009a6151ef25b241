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
//! Writes are set-based: multi-row `INSERT`s of [`INSERT_CHUNK`] rows, inside the caller's
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, RuntimeErr, Statement,
    Value,
};

use crate::{Db, Store, StoreError};
use crate::entity::{score_run, score_snapshot};

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
/// `score_latest` row twice in one statement). Returns the run id. On SQLite the
/// transaction is `BEGIN IMMEDIATE` (see [`crate::Store::begin_write`]).
pub async fn write_run(
    store: &Store,
    run: &RunRecord,
    rows: &[NewSnapshot],
) -> Result<i64, StoreError> {
    let conn = store.conn();
    let written = match conn.get_database_backend() {
        DbBackend::Sqlite => lite::write_run(conn.get_sqlite_connection_pool(), run, rows).await,
        DbBackend::Postgres => {
            pgcopy::write_run(conn.get_postgres_connection_pool(), run, rows).await
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

/// The run on SQLite: multi-row `VALUES` bound on one pooled connection.
mod lite {
    use super::*;
    use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool};
    use sqlx::{Arguments, AssertSqlSafe};

    /// Page cache of the connection writing a run, in KiB.
    const WRITE_CACHE_KIB: u32 = 64 * 1024;

    fn enc(e: sqlx::error::BoxDynError) -> sqlx::Error {
        sqlx::Error::Encode(e)
    }

    /// `head VALUES (?, ...), ...` for `n` rows of `width` values.
    fn values(head: &str, n: usize, width: usize) -> String {
        let mut sql = String::with_capacity(head.len() + n * (2 * width + 2) + 8);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        crate::push_groups(&mut sql, DbBackend::Sqlite, n, width, &mut 0);
        sql
    }

    pub(super) async fn write_run(
        pool: &SqlitePool,
        run: &RunRecord,
        rows: &[NewSnapshot],
    ) -> Result<i64, WriteErr> {
        // For the run, on its connection: a page cache of WRITE_CACHE_KIB (the indexes of
        // score_snapshots and score_latest stay in memory while 100,000 rows go in; the
        // default 2 MiB re-reads their pages), and no automatic WAL checkpoint at the
        // commit: a run writes some 300 MB of pages to the WAL, and copying them into
        // the database file at once would keep the caller waiting ~2-3 s for nothing the
        // commit needs (the commit is in the WAL, durable as any other). That checkpoint
        // runs right after, on another pooled connection, off the caller's path
        // (PASSIVE: it never blocks readers or writers). The connection's own settings
        // are put back before it returns to the pool.
        let mut c = pool.acquire().await?;
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *c)
            .await?;
        let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *c)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "PRAGMA cache_size = -{WRITE_CACHE_KIB}"
        )))
        .execute(&mut *c)
        .await?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut *c)
            .await?;
        let written = write(&mut c, run, rows).await;
        let restored = async {
            sqlx::query(AssertSqlSafe(format!("PRAGMA cache_size = {cache}")))
                .execute(&mut *c)
                .await?;
            sqlx::query(AssertSqlSafe(format!(
                "PRAGMA wal_autocheckpoint = {autocheckpoint}"
            )))
            .execute(&mut *c)
            .await
        }
        .await;
        if let Err(e) = restored {
            // Never hand a connection with the run's settings back to the pool.
            c.close_on_drop();
            tracing::warn!(error = %e, "write_run: connection settings not restored; connection closed");
        }
        drop(c);
        let run_id = written?;
        if autocheckpoint > 0 {
            let pool = pool.clone();
            tokio::spawn(async move {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "checkpoint after a scoring run failed");
                }
            });
        }
        Ok(run_id)
    }

    async fn write(
        c: &mut SqliteConnection,
        run: &RunRecord,
        rows: &[NewSnapshot],
    ) -> Result<i64, WriteErr> {
        let mut tx = sqlx::Connection::begin_with(&mut *c, "BEGIN IMMEDIATE").await?;
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO score_runs (scope, started_at, finished_at, accounts_scored, details) \
             VALUES (?, ?, NULL, 0, ?) RETURNING id",
        )
        .bind(&run.scope)
        .bind(run.started_at)
        .bind(sqlx::types::Json(serde_json::json!({})))
        .fetch_one(&mut *tx)
        .await?;
        let clock = std::time::Instant::now();
        let (mut snapshots_ms, mut latest_ms) = (0u64, 0u64);
        for chunk in rows.chunks(WRITE_CHUNK) {
            let t0 = clock.elapsed().as_millis() as u64;
            let sql = values(
                "INSERT INTO score_snapshots (run_id, account_id, scorecard_id, profile_id, \
                 as_of, value, band, global_value, sub_scores, momentum, coverage_present, \
                 coverage_total, drivers, churn_probability, weights_source, \
                 population_fallback, drivers_bin)",
                chunk.len(),
                17,
            );
            let mut a = SqliteArguments::default();
            a.reserve(chunk.len() * 17, 0);
            for r in chunk {
                (|| {
                    a.add(run_id)?;
                    a.add(r.account_id.as_str())?;
                    a.add(r.scorecard_id.as_str())?;
                    a.add(r.profile_id.as_str())?;
                    a.add(r.as_of)?;
                    a.add(r.value)?;
                    a.add(r.band.as_str())?;
                    a.add(r.global_value.unwrap_or(r.value))?;
                    a.add(r.sub_scores.as_str())?;
                    a.add(r.momentum)?;
                    a.add(r.coverage_present)?;
                    a.add(r.coverage_total)?;
                    a.add(DRIVERS_JSON)?;
                    a.add(r.churn_probability)?;
                    a.add(r.weights_source.as_str())?;
                    a.add(r.population_fallback)?;
                    a.add(r.drivers.as_slice())
                })()
                .map_err(enc)?;
            }
            sqlx::query_with(AssertSqlSafe(sql), a)
                .execute(&mut *tx)
                .await?;

            let t1 = clock.elapsed().as_millis() as u64;
            snapshots_ms += t1 - t0;
            let mut sql = values(
                "INSERT INTO score_latest (account_id, scorecard_id, profile_id, as_of, \
                 run_id, value, band, global_value, global_band)",
                chunk.len(),
                9,
            );
            sql.push_str(LATEST_CONFLICT);
            let mut a = SqliteArguments::default();
            a.reserve(chunk.len() * 9, 0);
            for r in chunk {
                (|| {
                    a.add(r.account_id.as_str())?;
                    a.add(r.scorecard_id.as_str())?;
                    a.add(r.profile_id.as_str())?;
                    a.add(r.as_of)?;
                    a.add(run_id)?;
                    a.add(r.value)?;
                    a.add(r.band.as_str())?;
                    a.add(r.global_value)?;
                    a.add(r.global_band.as_str())
                })()
                .map_err(enc)?;
            }
            sqlx::query_with(AssertSqlSafe(sql), a)
                .execute(&mut *tx)
                .await?;
            latest_ms += clock.elapsed().as_millis() as u64 - t1;
        }
        sqlx::query(
            "UPDATE score_runs SET finished_at = ?, accounts_scored = ?, details = ? WHERE id = ?",
        )
        .bind(Utc::now())
        .bind(run.accounts_scored)
        .bind(sqlx::types::Json(&run.details))
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        let t2 = clock.elapsed().as_millis() as u64;
        tx.commit().await?;
        tracing::debug!(
            rows = rows.len(),
            snapshots_ms,
            latest_ms,
            commit_ms = clock.elapsed().as_millis() as u64 - t2,
            "write_run"
        );
        Ok(run_id)
    }
}

/// The run on PostgreSQL as binary `COPY ... FROM STDIN`: the snapshots straight into
/// `score_snapshots`, the `score_latest` rows into a temporary table of the transaction,
/// moved into `score_latest` by one set-based statement.
mod pgcopy {
    use super::*;
    use sqlx::postgres::{PgConnection, PgPool};

    /// Bytes sent per `CopyData` message.
    const SEND_BYTES: usize = 1 << 20;

    /// Rows in PostgreSQL's binary COPY format, sent in pieces of [`SEND_BYTES`].
    struct Rows {
        buf: Vec<u8>,
    }

    impl Rows {
        fn new() -> Self {
            let mut buf = Vec::with_capacity(SEND_BYTES + (64 << 10));
            buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            buf.extend_from_slice(&0i32.to_be_bytes()); // flags
            buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
            Self { buf }
        }

        fn row(&mut self, fields: i16) {
            self.buf.extend_from_slice(&fields.to_be_bytes());
        }

        fn field(&mut self, b: &[u8]) -> Result<(), WriteErr> {
            let len = i32::try_from(b.len())
                .map_err(|_| WriteErr::Db(DbErr::Custom("write_run: a value over 2 GiB".into())))?;
            self.buf.extend_from_slice(&len.to_be_bytes());
            self.buf.extend_from_slice(b);
            Ok(())
        }

        fn null(&mut self) {
            self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        }

        fn text(&mut self, s: &str) -> Result<(), WriteErr> {
            self.field(s.as_bytes())
        }

        fn f64(&mut self, v: f64) -> Result<(), WriteErr> {
            self.field(&v.to_bits().to_be_bytes())
        }

        fn opt_f64(&mut self, v: Option<f64>) -> Result<(), WriteErr> {
            match v {
                Some(v) => self.f64(v),
                None => {
                    self.null();
                    Ok(())
                }
            }
        }

        fn i64(&mut self, v: i64) -> Result<(), WriteErr> {
            self.field(&v.to_be_bytes())
        }

        fn i32(&mut self, v: i32) -> Result<(), WriteErr> {
            self.field(&v.to_be_bytes())
        }

        fn bool(&mut self, v: bool) -> Result<(), WriteErr> {
            self.field(&[u8::from(v)])
        }

        /// A `timestamptz`: microseconds since 2000-01-01 UTC, as sqlx encodes it.
        fn timestamp(&mut self, t: DateTime<Utc>) -> Result<(), WriteErr> {
            let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .ok_or_else(|| WriteErr::Db(DbErr::Custom("write_run: epoch".into())))?;
            let micros = (t.naive_utc() - epoch).num_microseconds().ok_or_else(|| {
                WriteErr::Db(DbErr::Custom(format!(
                    "write_run: as_of out of range for PostgreSQL: {t}"
                )))
            })?;
            self.i64(micros)
        }

        /// Sends what is buffered once it reaches [`SEND_BYTES`] (`all`: whatever there is).
        async fn flush(
            &mut self,
            copy: &mut sqlx::postgres::PgCopyIn<&mut PgConnection>,
            all: bool,
        ) -> Result<(), WriteErr> {
            if (all && !self.buf.is_empty()) || self.buf.len() >= SEND_BYTES {
                copy.send(self.buf.as_slice()).await?;
                self.buf.clear();
            }
            Ok(())
        }

        /// Ends the stream, sends it and finishes the COPY.
        async fn finish(
            mut self,
            mut copy: sqlx::postgres::PgCopyIn<&mut PgConnection>,
        ) -> Result<u64, WriteErr> {
            self.buf.extend_from_slice(&(-1i16).to_be_bytes());
            self.flush(&mut copy, true).await?;
            Ok(copy.finish().await?)
        }
    }

    const SNAPSHOTS: &str = "COPY score_snapshots (run_id, account_id, scorecard_id, \
        profile_id, as_of, value, band, global_value, sub_scores, momentum, coverage_present, \
        coverage_total, drivers, churn_probability, weights_source, population_fallback, \
        drivers_bin) FROM STDIN (FORMAT binary)";

    /// The temporary table of the `score_latest` rows (dropped at the commit).
    const LATEST_IN: &str = "CREATE TEMPORARY TABLE vitals_latest_in (account_id text, \
        scorecard_id text, profile_id text, as_of timestamptz, value float8, band text, \
        global_value float8, global_band text) ON COMMIT DROP";

    const LATEST_COPY: &str = "COPY vitals_latest_in (account_id, scorecard_id, profile_id, \
        as_of, value, band, global_value, global_band) FROM STDIN (FORMAT binary)";

    fn latest_sql() -> String {
        format!(
            "INSERT INTO score_latest (account_id, scorecard_id, profile_id, as_of, run_id, \
             value, band, global_value, global_band) \
             SELECT account_id, scorecard_id, profile_id, as_of, $1, value, band, \
             global_value, global_band FROM vitals_latest_in{LATEST_CONFLICT}"
        )
    }

    pub(super) async fn write_run(
        pool: &PgPool,
        run: &RunRecord,
        rows: &[NewSnapshot],
    ) -> Result<i64, WriteErr> {
        let mut tx = pool.begin().await?;
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO score_runs (scope, started_at, finished_at, accounts_scored, details) \
             VALUES ($1, $2, NULL, 0, $3) RETURNING id",
        )
        .bind(&run.scope)
        .bind(run.started_at)
        .bind(sqlx::types::Json(serde_json::json!({})))
        .fetch_one(&mut *tx)
        .await?;
        let clock = std::time::Instant::now();

        // The snapshots.
        let mut copy = tx.copy_in_raw(SNAPSHOTS).await?;
        let mut b = Rows::new();
        for r in rows {
            b.row(17);
            b.i64(run_id)?;
            b.text(&r.account_id)?;
            b.text(&r.scorecard_id)?;
            b.text(&r.profile_id)?;
            b.timestamp(r.as_of)?;
            b.f64(r.value)?;
            b.text(&r.band)?;
            b.f64(r.global_value.unwrap_or(r.value))?;
            b.text(&r.sub_scores)?;
            b.f64(r.momentum)?;
            b.i32(r.coverage_present)?;
            b.i32(r.coverage_total)?;
            b.text(DRIVERS_JSON)?;
            b.opt_f64(r.churn_probability)?;
            b.text(&r.weights_source)?;
            b.bool(r.population_fallback)?;
            b.field(&r.drivers)?;
            b.flush(&mut copy, false).await?;
        }
        b.finish(copy).await?;
        let snapshots_ms = clock.elapsed().as_millis() as u64;

        // score_latest: the rows into the temporary table, then one upsert.
        sqlx::query(LATEST_IN).execute(&mut *tx).await?;
        let mut copy = tx.copy_in_raw(LATEST_COPY).await?;
        let mut b = Rows::new();
        for r in rows {
            b.row(8);
            b.text(&r.account_id)?;
            b.text(&r.scorecard_id)?;
            b.text(&r.profile_id)?;
            b.timestamp(r.as_of)?;
            b.f64(r.value)?;
            b.text(&r.band)?;
            b.opt_f64(r.global_value)?;
            b.text(&r.global_band)?;
            b.flush(&mut copy, false).await?;
        }
        b.finish(copy).await?;
        let latest_copy_ms = clock.elapsed().as_millis() as u64 - snapshots_ms;
        sqlx::query(sqlx::AssertSqlSafe(latest_sql()))
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let latest_ms = clock.elapsed().as_millis() as u64 - snapshots_ms;
        sqlx::query(
            "UPDATE score_runs SET finished_at = $1, accounts_scored = $2, details = $3 \
             WHERE id = $4",
        )
        .bind(Utc::now())
        .bind(run.accounts_scored)
        .bind(sqlx::types::Json(&run.details))
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        let t2 = clock.elapsed().as_millis() as u64;
        tx.commit().await?;
        tracing::debug!(
            rows = rows.len(),
            snapshots_ms,
            latest_copy_ms,
            latest_ms,
            commit_ms = clock.elapsed().as_millis() as u64 - t2,
            "write_run (COPY)"
        );
        Ok(run_id)
    }
}

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
    q.order_by_desc(score_snapshot::Column::AsOf)
        .order_by_desc(score_snapshot::Column::RunId)
        .one(conn)
        .await
        .map_err(Into::into)
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
    let rows = score_snapshot::Entity::find()
        .from_raw_sql(stmt(backend, &sql, values))
        .all(conn)
        .await?;
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
    q.order_by_asc(score_snapshot::Column::AsOf)
        .order_by_asc(score_snapshot::Column::RunId)
        .offset(offset)
        .limit(limit)
        .all(conn)
        .await
        .map_err(Into::into)
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
    q.all(conn).await
        .map_err(Into::into)
}

/// Whether any snapshot exists for this account (any scorecard).
pub async fn account_has_snapshots(
    db: &impl Db,
    account_id: &str,
) -> Result<bool, StoreError> {
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
mod tests {
    use super::*;
    use crate::testing::{backends, fresh_store};

    fn snapshots(as_of: DateTime<Utc>) -> Vec<NewSnapshot> {
        (0..2 * WRITE_CHUNK + 7)
            .map(|i| {
                let card = i % 3 == 2;
                NewSnapshot {
                    account_id: format!("acc{:05}", i / 3),
                    scorecard_id: [PROFILE_SCORECARD, "health", "nps"][i % 3].into(),
                    profile_id: if i % 5 == 0 { String::new() } else { "p1".into() },
                    as_of,
                    value: 10.0 * (i as f64 / 4000.0) + 0.123_456,
                    band: ["red", "yellow", "green"][i % 3].into(),
                    global_value: (!card).then_some(1.0 / (i as f64 + 3.0)),
                    global_band: if card { String::new() } else { "green".into() },
                    sub_scores: format!(
                        r#"{{"categories":[{{"c":1,"v":{},"w":0.5,"p":3,"t":4}}],"global_band":"green","model":"models/7","peer_count":{i}}}"#,
                        i as f64 / 7.0
                    ),
                    momentum: -0.25 * i as f64,
                    coverage_present: (i % 17) as i32,
                    coverage_total: 17,
                    // Any bytes (zeros, bytes that are not UTF-8); none for scorecards.
                    drivers: if card {
                        Vec::new()
                    } else {
                        let mut b = vec![1, 0, 0xff, b'\'', b'\\', 0x80];
                        b.extend((0..i % 300).map(|k| (k * 7 + i) as u8));
                        b
                    },
                    churn_probability: (i % 4 == 0).then_some(0.5 + i as f64 * 1e-6),
                    weights_source: ["learned", "uniform"][i % 2].into(),
                    population_fallback: i % 7 == 0,
                }
            })
            .collect()
    }

    /// Every column of the run's snapshots (or latest rows) as the database prints it.
    async fn dump(conn: &DatabaseConnection, table: &str, run_id: i64) -> Vec<Vec<Option<String>>> {
        let cols: &[&str] = if table == "score_snapshots" {
            &[
                "account_id",
                "scorecard_id",
                "profile_id",
                "as_of",
                "value",
                "band",
                "global_value",
                "sub_scores",
                "momentum",
                "coverage_present",
                "coverage_total",
                "drivers",
                "churn_probability",
                "weights_source",
                "population_fallback",
                "drivers_bin",
            ]
        } else {
            &[
                "account_id",
                "scorecard_id",
                "profile_id",
                "as_of",
                "value",
                "band",
                "global_value",
                "global_band",
            ]
        };
        let backend = conn.get_database_backend();
        let mut select: Vec<String> = cols
            .iter()
            .map(|c| match (*c, backend) {
                ("drivers_bin", DbBackend::Postgres) => format!("encode({c}, 'hex')"),
                ("drivers_bin", _) => format!("hex({c})"),
                _ => format!("CAST({c} AS TEXT)"),
            })
            .collect();
        if backend == DbBackend::Sqlite {
            // The storage class too: text, real, integer or null.
            select.extend(cols.iter().map(|c| format!("typeof({c})")));
        }
        let sql = format!(
            "SELECT {} FROM {table} WHERE run_id = ? ORDER BY account_id, scorecard_id",
            select.join(", ")
        );
        conn.query_all_raw(stmt(backend, &sql, vec![Value::from(run_id)]))
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (0..select.len())
                    .map(|i| r.try_get_by_index::<Option<String>>(i).unwrap())
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn snapshots_written_before_migration_10_read_as_before() {
        use crate::testing::fresh_url;
        use sea_orm_migration::MigratorTrait;
        for backend in backends() {
            let store = crate::Store::connect(&fresh_url(backend).await.unwrap())
                .await
                .unwrap();
            let conn = store.conn();
            // The schema as it was before migration 10, and a snapshot written by the
            // statement of that time (drivers as JSON).
            crate::migration::Migrator::up(conn, Some(7)).await.unwrap();
            let drivers = r#"[["mrr",4,421.251168,0.340703,3.407026,0.025,-0.270963]]"#;
            let sql = format!(
                "INSERT INTO score_snapshots (run_id, account_id, scorecard_id, profile_id, \
                 as_of, value, band, global_value, sub_scores, momentum, coverage_present, \
                 coverage_total, drivers, churn_probability, weights_source, \
                 population_fallback) VALUES {}",
                if backend == crate::testing::Backend::Postgres {
                    "(?,?,?,?,?,?,?,?,CAST(? AS json),?,?,?,CAST(? AS json),?,?,?)".to_string()
                } else {
                    tuple(16)
                }
            );
            let at = Utc::now();
            conn.execute_raw(stmt(
                conn.get_database_backend(),
                &sql,
                vec![
                    Value::from(1i64),
                    Value::from("old"),
                    Value::from(PROFILE_SCORECARD),
                    Value::from("p1"),
                    Value::from(at),
                    Value::from(4.5),
                    Value::from("yellow"),
                    Value::from(4.5),
                    Value::from(r#"{"global_band":"yellow"}"#),
                    Value::from(0.0),
                    Value::from(1),
                    Value::from(1),
                    Value::from(drivers),
                    Value::from(None::<f64>),
                    Value::from("uniform"),
                    Value::from(false),
                ],
            ))
            .await
            .unwrap();
            // Every migration since, then a new run beside it.
            store.migrate().await.unwrap();
            let run = RunRecord {
                scope: "all".into(),
                started_at: at,
                accounts_scored: 1,
                details: serde_json::json!({}),
            };
            let mut new = snapshots(at);
            new.truncate(1);
            write_run(conn, &run, &new).await.unwrap();
            let old = snapshot_at(conn, "old", PROFILE_SCORECARD, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(old.drivers_bin, None, "{backend:?}");
            assert_eq!(
                old.drivers,
                serde_json::from_str::<serde_json::Value>(drivers).unwrap()
            );
            assert_eq!(old.value, 4.5);
            let (listed, n) = list_latest(
                conn,
                &LatestFilter::default(),
                LatestOrder::AccountId,
                0,
                10,
            )
            .await
            .unwrap();
            assert_eq!(n, 1, "only the new run moved score_latest");
            assert_eq!(
                listed[0].drivers_bin.as_deref(),
                Some(new[0].drivers.as_slice())
            );
            let h = history(conn, "old", PROFILE_SCORECARD, None, None, 0, 10)
                .await
                .unwrap();
            assert_eq!(h, vec![old]);
            store.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn write_run_stores_what_the_generic_statements_store() {
        for backend in backends() {
            let store = fresh_store(backend).await.unwrap();
            let conn = store.conn();
            let as_of = DateTime::parse_from_rfc3339("2026-06-30T12:34:56.789012Z")
                .unwrap()
                .with_timezone(&Utc);
            let rows = snapshots(as_of);
            let details = serde_json::json!({"as_of": as_of.to_rfc3339(), "snapshots": rows.len()});

            // The generic path: start_run, write_snapshots, finish_run in one transaction.
            let txn = store.begin_write().await.unwrap();
            let old = start_run(&txn, "all", as_of).await.unwrap();
            write_snapshots(&txn, old, &rows).await.unwrap();
            finish_run(&txn, old, Utc::now(), 42, details.clone())
                .await
                .unwrap();
            txn.commit().await.unwrap();
            let old_snaps = dump(conn, "score_snapshots", old).await;
            let old_latest = dump(conn, "score_latest", old).await;
            assert_eq!(old_snaps.len(), rows.len(), "{backend:?}");
            assert_eq!(old_latest.len(), rows.len(), "{backend:?}");

            // write_run, same rows: the same snapshots, and it takes over score_latest
            // (same as_of).
            let run = RunRecord {
                scope: "all".into(),
                started_at: as_of,
                accounts_scored: 42,
                details: details.clone(),
            };
            let new = write_run(conn, &run, &rows).await.unwrap();
            assert!(new > old);
            assert_eq!(
                dump(conn, "score_snapshots", new).await,
                old_snaps,
                "{backend:?}"
            );
            assert_eq!(
                dump(conn, "score_latest", new).await,
                old_latest,
                "{backend:?}"
            );
            assert!(dump(conn, "score_latest", old).await.is_empty());
            let runs = score_run::Entity::find()
                .order_by_asc(score_run::Column::Id)
                .all(conn)
                .await
                .unwrap();
            assert_eq!(runs.len(), 2);
            assert_eq!(runs[1].scope, "all");
            assert_eq!(runs[1].started_at, runs[0].started_at);
            assert_eq!(runs[1].accounts_scored, 42);
            assert_eq!(runs[1].details, details);
            assert!(runs[1].finished_at.is_some());
            // The stored JSON reads back as written.
            let s = snapshot_at(conn, "acc00001", PROFILE_SCORECARD, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(s.run_id, new);
            let written = &rows[3];
            assert_eq!(s.account_id, written.account_id);
            let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
            assert_eq!(s.drivers, serde_json::Value::Null);
            assert_eq!(s.drivers_bin.as_deref(), Some(written.drivers.as_slice()));
            assert_eq!(s.sub_scores, json(&written.sub_scores));

            // The latest rows of a large population (one pass over the table) are those
            // of the chunked look-up.
            let mut ids: Vec<String> = rows.iter().map(|r| r.account_id.clone()).collect();
            ids.dedup();
            let half = &ids[..ids.len() / 2];
            let chunked = latest_of_accounts(conn, half).await.unwrap();
            let expected = rows.iter().filter(|r| half.contains(&r.account_id)).count();
            assert_eq!(chunked.len(), expected, "{backend:?}");
            let mut many = half.to_vec();
            many.extend((0..LATEST_SCAN_FROM).map(|i| format!("absent{i}")));
            assert_eq!(latest_of_accounts(conn, &many).await.unwrap(), chunked);

            // A past as_of only adds history: score_latest stays on the newer rows.
            let past = snapshots(as_of - chrono::Duration::days(1));
            let back = write_run(conn, &run, &past).await.unwrap();
            assert!(dump(conn, "score_latest", back).await.is_empty());
            assert_eq!(dump(conn, "score_snapshots", back).await.len(), past.len());
            store.close().await.unwrap();
        }
    }
}
