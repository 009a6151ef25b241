//! The run on SQLite: multi-row `VALUES` bound on one pooled connection.

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
    // The run's webhook events, in its transaction.
    let events = crate::webhooks::with_run_id(&run.events, run_id);
    let now = crate::webhooks::now_ms();
    for chunk in events.chunks(WRITE_CHUNK) {
        let sql = values(
            "INSERT INTO webhook_events (kind, account_id, profile_id, payload, created_ms, \
             dispatched)",
            chunk.len(),
            6,
        );
        let mut a = SqliteArguments::default();
        for (kind, account, profile, payload) in chunk {
            (|| {
                a.add(kind.as_str())?;
                a.add(account.as_str())?;
                a.add(profile.as_str())?;
                a.add(payload.as_str())?;
                a.add(now)?;
                a.add(false)
            })()
            .map_err(enc)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), a)
            .execute(&mut *tx)
            .await?;
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
