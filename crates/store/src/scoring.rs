//! Storage of the scoring service: runs, snapshots (the history), and `score_latest`
//! (the latest snapshot of each account and scorecard, for listings and distributions).
//!
//! Formats:
//! - `score_snapshots.scorecard_id` is [`PROFILE_SCORECARD`] for the built-in profile
//!   score, else the scorecard id; `profile_id` is the account's profile at the time (empty
//!   when it had none); `band` and `global_band` are `red`, `yellow`, `green` (or empty).
//! - `sub_scores` and `drivers` are JSON written and read by the scoring service only
//!   (its `domain::stored` types): the category sub-scores and the other per-snapshot
//!   details, and every present KPI's contribution (so explanations never recompute).
//! - A snapshot replaces the `score_latest` row of its (account, scorecard) unless that
//!   row is newer (a backfill with a past `as_of` only adds history).
//!
//! Writes are set-based: multi-row `INSERT`s of [`INSERT_CHUNK`] rows, inside the caller's
//! transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};

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
    /// Contributions (service JSON, as text).
    pub drivers: String,
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
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// Records the start of a run; returns its id.
pub async fn start_run(
    conn: &impl ConnectionTrait,
    scope: &str,
    started_at: DateTime<Utc>,
) -> Result<i64, DbErr> {
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
    conn: &impl ConnectionTrait,
    id: i64,
    finished_at: DateTime<Utc>,
    accounts_scored: i64,
    details: serde_json::Value,
) -> Result<(), DbErr> {
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

/// The latest rows of these accounts (every scorecard), keyed by (account, scorecard).
pub async fn latest_of_accounts(
    conn: &impl ConnectionTrait,
    account_ids: &[String],
) -> Result<HashMap<(String, String), LatestRecord>, DbErr> {
    let mut out = HashMap::with_capacity(account_ids.len());
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
    conn: &impl ConnectionTrait,
    run_id: i64,
    rows: &[NewSnapshot],
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO score_snapshots (run_id, account_id, scorecard_id, profile_id, as_of, \
             value, band, global_value, sub_scores, momentum, coverage_present, \
             coverage_total, drivers, churn_probability, weights_source, \
             population_fallback) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 16);
        // JSON goes in as text: PostgreSQL casts it to jsonb, SQLite stores the text.
        let json = if backend == DbBackend::Postgres {
            "CAST(? AS jsonb)"
        } else {
            "?"
        };
        let t = format!("(?,?,?,?,?,?,?,?,{json},?,?,?,{json},?,?,?)");
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
                Value::from(r.drivers.clone()),
                Value::from(r.churn_probability),
                Value::from(r.weights_source.clone()),
                Value::from(r.population_fallback),
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
        sql.push_str(
            " ON CONFLICT (account_id, scorecard_id) DO UPDATE SET \
             profile_id = excluded.profile_id, as_of = excluded.as_of, \
             run_id = excluded.run_id, value = excluded.value, band = excluded.band, \
             global_value = excluded.global_value, global_band = excluded.global_band \
             WHERE excluded.as_of >= score_latest.as_of",
        );
        conn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// The snapshot of (account, scorecard) in force at `at` (the latest with
/// `as_of <= at`), or the latest one when `at` is `None`. Among snapshots with the same
/// `as_of`, the one of the latest run wins.
pub async fn snapshot_at(
    conn: &impl ConnectionTrait,
    account_id: &str,
    scorecard_id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<Option<SnapshotRecord>, DbErr> {
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
    conn: &impl ConnectionTrait,
    filter: &LatestFilter,
    order: LatestOrder,
    offset: u64,
    limit: u64,
) -> Result<(Vec<SnapshotRecord>, u64), DbErr> {
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
    conn: &impl ConnectionTrait,
    account_id: &str,
    scorecard_id: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    offset: u64,
    limit: u64,
) -> Result<Vec<SnapshotRecord>, DbErr> {
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
}

/// The latest rows of a scorecard (`None`: every scorecard), optionally of one profile,
/// for distributions.
pub async fn latest_rows(
    conn: &impl ConnectionTrait,
    profile_id: Option<&str>,
    scorecard_id: &str,
) -> Result<Vec<LatestRecord>, DbErr> {
    let mut q = latest_row::Entity::find().filter(latest_row::Column::ScorecardId.eq(scorecard_id));
    if let Some(p) = profile_id {
        q = q.filter(latest_row::Column::ProfileId.eq(p));
    }
    q.all(conn).await
}

/// Whether any snapshot exists for this account (any scorecard).
pub async fn account_has_snapshots(
    conn: &impl ConnectionTrait,
    account_id: &str,
) -> Result<bool, DbErr> {
    Ok(latest_row::Entity::find()
        .filter(latest_row::Column::AccountId.eq(account_id))
        .one(conn)
        .await?
        .is_some())
}
