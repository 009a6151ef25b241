//! The run on PostgreSQL as binary `COPY ... FROM STDIN`: the snapshots straight into
//! `score_snapshots`, the `score_latest` rows into a temporary table of the transaction,
//! moved into `score_latest` by one set-based statement.

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
    // The run's webhook events, in its transaction.
    if !run.events.is_empty() {
        let events = crate::webhooks::with_run_id(&run.events, run_id);
        let col = |f: fn(&(String, String, String, String)) -> &String| {
            events.iter().map(f).cloned().collect::<Vec<String>>()
        };
        sqlx::query(
            "INSERT INTO webhook_events (kind, account_id, profile_id, payload, created_ms, \
             dispatched) SELECT k, a, p, d, $5, false FROM \
             UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS t(k, a, p, d)",
        )
        .bind(col(|e| &e.0))
        .bind(col(|e| &e.1))
        .bind(col(|e| &e.2))
        .bind(col(|e| &e.3))
        .bind(crate::webhooks::now_ms())
        .execute(&mut *tx)
        .await?;
    }
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
