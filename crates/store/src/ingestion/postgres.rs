//! The events path on PostgreSQL: per batch, one explicit transaction of three
//! statements on one connection of the pool:
//!
//! 1. `COPY event_batch FROM STDIN (FORMAT binary)`: the batch's distinct events, in key
//!    order, into the connection's staging table ([`STAGING`]: a temporary table, `ON
//!    COMMIT DELETE ROWS`, so it is empty again after the commit or the rollback; created
//!    by the first batch on each connection). `COPY` is PostgreSQL's bulk path: no
//!    per-row parameter or array decoding, and a temporary table writes no WAL.
//! 2. [`WRITE`]: one set-based statement from the staging table. Data-modifying `WITH`
//!    parts insert the implicit accounts, the idempotency keys (`event_keys`, `ON
//!    CONFLICT DO NOTHING RETURNING` the new ones), the events of the new keys alone into
//!    their month partition of `events`, the distinct users of the new events
//!    (`RETURNING` those new to their day), and the `usage_daily` and `event_types`
//!    roll-ups aggregated in SQL from the new events: the roll-ups move exactly once per
//!    new event, whatever other transactions store at the same time (an `ON CONFLICT` on
//!    a key another transaction has just inserted waits for its commit, then skips it).
//!    The statement is prepared once per connection and does not depend on the batch size.
//! 3. `COMMIT`: the answer is sent after it (the driver has read its `ReadyForQuery`).
//!
//! The event types seen are created if new (`ON CONFLICT DO NOTHING`: an existing row
//! is neither changed nor locked), and their counts go to `event_type_counts`, in the
//! slot of the connection (`pg_backend_pid() % 64`), not to `event_types.event_count`:
//! every batch adds to the same few event types, and one row per type made concurrent
//! batches wait for each other's commit (see the migration `m20261204_000009`).
//!
//! Lock order: each part reads the complete output of the one before it (`(SELECT
//! count(*) FROM ...)`), so the tables are written in the order accounts, `event_keys`,
//! events, `usage_daily_users`, `usage_daily`, `event_types`, `event_type_counts`, each
//! in key order (`ORDER BY`), in every batch: concurrent batches wait for each other but
//! do not deadlock.
//!
//! Before: one statement whose events were bound as one array per column and
//! `UNNEST`ed, first without `ON CONFLICT` on the hot tables (`NOT EXISTS` and plain
//! inserts, which failed on a race with a concurrent batch) and then, on a race, with
//! it; the plain form was not faster per batch (docs/benchmarks.md, issue 22).

use super::*;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

/// The connection's staging table of a batch: the columns of `events`, emptied by every
/// commit and rollback. Temporary tables need the `TEMPORARY` privilege on the database
/// (granted to `PUBLIC` by default).
const STAGING: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS event_batch (\
    account_id varchar COLLATE \"C\" NOT NULL, \
    event_id varchar COLLATE \"C\" NOT NULL, \
    user_id varchar COLLATE \"C\", \
    event_type varchar COLLATE \"C\" NOT NULL, \
    occurred_at timestamptz NOT NULL, \
    value double precision) ON COMMIT DELETE ROWS";

/// The `COPY` of a batch into [`STAGING`] (data made by [`copy_data`]).
const COPY: &str = "COPY event_batch (account_id, event_id, user_id, event_type, occurred_at, value) \
    FROM STDIN (FORMAT binary)";

/// The batch from the staging table into the stored tables; `$1` the attributes, `$2`
/// the status of an implicit account, `$3` now, `$4` the batch's accounts (distinct,
/// sorted). Answers the count of new events.
///
/// The `usage_daily` rows add the new events and the new distinct users of each
/// (account, day, type) through one `GROUP BY` over both (`UNION ALL`), not a join of two
/// aggregates: the generic plan of the prepared statement made that join a nested loop
/// over the batch's groups (quadratic: about 150,000 comparisons, two thirds of the
/// statement's time, per 1,000-event batch of the sample data).
const WRITE: &str = "WITH \
    acc AS (INSERT INTO accounts \
        (id, name, attributes, pinned, status, created_at, updated_at) \
        SELECT id, '', $1::jsonb, false, $2, $3, $3 FROM UNNEST($4::text[]) AS a(id) \
        ON CONFLICT (id) DO NOTHING RETURNING 1), \
    src AS (SELECT * FROM event_batch s \
        WHERE (SELECT count(*) FROM acc) >= 0 AND s.occurred_at >= COALESCE( \
            (SELECT dropped_before FROM event_retention WHERE id = 1), '-infinity')), \
    keys AS (INSERT INTO event_keys (account_id, event_id, occurred_at) \
        SELECT account_id, event_id, occurred_at FROM src ORDER BY 1, 2 \
        ON CONFLICT (account_id, event_id) DO NOTHING \
        RETURNING account_id, event_id), \
    ins AS (INSERT INTO events \
        (account_id, event_id, user_id, event_type, occurred_at, value) \
        SELECT s.account_id, s.event_id, s.user_id, s.event_type, s.occurred_at, s.value \
        FROM src s JOIN keys k \
            ON k.account_id = s.account_id AND k.event_id = s.event_id \
        RETURNING account_id, user_id, event_type, \
            (occurred_at AT TIME ZONE 'UTC')::date AS day, value), \
    users AS (INSERT INTO usage_daily_users (account_id, day, event_type, user_id) \
        SELECT DISTINCT account_id, day, event_type, user_id FROM ins \
        WHERE user_id IS NOT NULL ORDER BY 1, 2, 3, 4 \
        ON CONFLICT (account_id, day, event_type, user_id) DO NOTHING \
        RETURNING account_id, day, event_type), \
    daily AS (INSERT INTO usage_daily \
        (account_id, day, event_type, count, distinct_users, value_sum) \
        SELECT account_id, day, event_type, sum(n), sum(u), sum(v) FROM ( \
            SELECT account_id, day, event_type, 1 AS n, 0 AS u, COALESCE(value, 0) AS v \
            FROM ins \
            UNION ALL SELECT account_id, day, event_type, 0, 1, NULL FROM users) x \
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 \
        ON CONFLICT (account_id, day, event_type) DO UPDATE SET \
        count = usage_daily.count + excluded.count, \
        distinct_users = usage_daily.distinct_users + excluded.distinct_users, \
        value_sum = usage_daily.value_sum + excluded.value_sum \
        RETURNING 1), \
    per_type AS (SELECT event_type, count(*) AS n FROM ins \
        WHERE (SELECT count(*) FROM daily) >= 0 GROUP BY event_type), \
    types AS (INSERT INTO event_types (name, display_name, is_key, description, \
                                       declared, event_count, created_at, updated_at) \
        SELECT event_type, '', false, '', false, 0::bigint, $3, $3 FROM per_type \
        ORDER BY 1 \
        ON CONFLICT (name) DO NOTHING \
        RETURNING 1), \
    counts AS (INSERT INTO event_type_counts (name, slot, event_count) \
        SELECT event_type, pg_backend_pid() % 64, n FROM per_type \
        WHERE (SELECT count(*) FROM types) >= 0 ORDER BY 1 \
        ON CONFLICT (name, slot) DO UPDATE SET \
        event_count = event_type_counts.event_count + excluded.event_count \
        RETURNING 1) \
    SELECT (SELECT count(*) FROM ins) AS new, (SELECT count(*) FROM counts) AS counts";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// `sorted` in `COPY`'s binary format (the signature and an empty header; per row the
/// field count and each field as its length and its binary value, -1 for NULL; the
/// trailer -1): `varchar` is UTF-8 text, `timestamptz` microseconds since 2000-01-01
/// UTC, `double precision` the IEEE 754 bits, all big-endian.
fn copy_data(sorted: &[&NewEvent]) -> Vec<u8> {
    fn text(b: &mut Vec<u8>, s: &str) {
        b.extend_from_slice(&(s.len() as i32).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    let size: usize = sorted
        .iter()
        .map(|e| {
            70 + e.account_id.len()
                + e.event_id.len()
                + e.user_id.as_ref().map_or(0, |u| u.len())
                + e.event_type.len()
        })
        .sum();
    let mut b = Vec::with_capacity(21 + size);
    b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    b.extend_from_slice(&0i32.to_be_bytes()); // flags
    b.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for e in sorted {
        b.extend_from_slice(&6i16.to_be_bytes());
        text(&mut b, &e.account_id);
        text(&mut b, &e.event_id);
        match &e.user_id {
            Some(u) => text(&mut b, u),
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        text(&mut b, &e.event_type);
        b.extend_from_slice(&8i32.to_be_bytes());
        b.extend_from_slice(&(e.occurred_at.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes());
        match e.value {
            Some(v) => {
                b.extend_from_slice(&8i32.to_be_bytes());
                b.extend_from_slice(&v.to_be_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
}

/// Writes `sorted` (distinct keys, in key order); returns how many were new. Returns
/// after the commit.
pub(super) async fn write_events(
    pool: &PgPool,
    accounts: &[&str],
    sorted: &[&NewEvent],
) -> Result<usize, sqlx::Error> {
    let now = Utc::now();
    let data = copy_data(sorted);
    let mut conn = pool.acquire().await?;
    let (mut staged, mut partitioned) = (false, false);
    loop {
        match write_once(&mut conn, &data, accounts, now).await {
            Err(e) if no_staging(&e) && !staged => {
                // The first batch on this connection: its staging table (kept by the
                // connection), then the batch again.
                staged = true;
                sqlx::raw_sql(STAGING).execute(&mut *conn).await?;
            }
            Err(e) if no_partition(&e) && !partitioned => {
                // A month with no partition yet (an old event, or the job that creates
                // them ahead has not run): create it, then write the batch again.
                partitioned = true;
                create_partitions(pool, sorted.iter().map(|e| e.occurred_at)).await?;
            }
            r => return r,
        }
    }
}

/// One transaction: the `COPY` of `data` into the staging table, [`WRITE`], `COMMIT`.
/// On an error the transaction is rolled back (when it is dropped), which also empties
/// the staging table.
async fn write_once(
    conn: &mut PgConnection,
    data: &[u8],
    accounts: &[&str],
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut copy = tx.copy_in_raw(COPY).await?;
    if let Err(e) = copy.send(data).await {
        // `abort` ends the COPY (it would otherwise fail the next statement).
        let _ = copy.abort("batch not sent").await;
        return Err(e);
    }
    copy.finish().await?;
    let row = sqlx::query(WRITE)
        .bind(serde_json::json!({}))
        .bind(STATUS_UNASSIGNED)
        .bind(now)
        .bind(accounts)
        .fetch_one(&mut *tx)
        .await?;
    let new: i64 = row.try_get(0)?;
    tx.commit().await?;
    Ok(new as usize)
}

/// Whether `e` says that the staging table does not exist (`undefined_table`): the
/// connection has not written a batch yet.
fn no_staging(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().is_some_and(|c| c == "42P01") && d.message().contains("event_batch")
    })
}

/// Whether `e` says that a row's month has no partition of `events`
/// (`check_violation`, "no partition of relation ... found for row").
fn no_partition(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().is_some_and(|c| c == "23514")
            && d.message().starts_with("no partition of relation")
    })
}

// ---------------------------------------------------------------------------------------
// Partitions and retention (see `retention` and the migration `m20261207_000019`)
// ---------------------------------------------------------------------------------------

/// Prefix of the name of a month's partition of `events`: `events_y2026m12`.
const PARTITION_PREFIX: &str = "events_y";

/// The first instant of the UTC month of `t`, and of the month after.
fn month_bounds(year: i32, month: u32) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let lo = NaiveDate::from_ymd_opt(year, month, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    let hi = NaiveDate::from_ymd_opt(ny, nm, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    Some((lo, hi))
}

/// The partition name of a month (years 1 to 9999; others have none).
fn partition_name(year: i32, month: u32) -> Option<String> {
    (1..=9999)
        .contains(&year)
        .then(|| format!("{PARTITION_PREFIX}{year:04}m{month:02}"))
}

/// The (year, month) of a partition name made by [`partition_name`].
fn parse_partition_name(name: &str) -> Option<(i32, u32)> {
    let rest = name.strip_prefix(PARTITION_PREFIX)?;
    let (y, m) = rest.split_once('m')?;
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (partition_name(y, m)? == name).then_some((y, m))
}

/// The retention watermark: raw events before it were dropped (`None`: never).
pub(super) async fn dropped_before(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT dropped_before FROM event_retention WHERE id = 1")
        .fetch_optional(pool)
        .await
}

/// Creates the partitions of `events` for the UTC months of `times` that have none
/// (not those wholly before the retention watermark: their events are ignored); returns
/// how many it created. Concurrent creators of the same month are harmless (the loser's
/// `duplicate_table` / `unique_violation` is ignored).
pub(super) async fn create_partitions(
    pool: &PgPool,
    times: impl IntoIterator<Item = DateTime<Utc>>,
) -> Result<u32, sqlx::Error> {
    use chrono::Datelike;
    let months: BTreeSet<(i32, u32)> = times.into_iter().map(|t| (t.year(), t.month())).collect();
    let floor = dropped_before(pool).await?;
    let existing: HashSet<String> = partition_names(pool).await?.into_iter().collect();
    let mut created = 0;
    for (y, m) in months {
        let (Some(name), Some((lo, hi))) = (partition_name(y, m), month_bounds(y, m)) else {
            continue;
        };
        if existing.contains(&name) || floor.is_some_and(|f| hi <= f) {
            continue;
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ('{}') TO ('{}')",
            lo.to_rfc3339(),
            hi.to_rfc3339()
        );
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await {
            Ok(_) => created += 1,
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "42P07" || c == "23505") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// The names of the month partitions of `events`.
async fn partition_names(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
}

/// Drops the partitions of `events` wholly before `cut` and moves the watermark to the
/// end of the newest one dropped, in one transaction; then deletes the keys
/// (`event_keys`) and the distinct-user rows (`usage_daily_users`) before the watermark.
/// Returns (partitions dropped, keys deleted, user rows deleted, watermark).
pub(super) async fn drop_partitions_before(
    pool: &PgPool,
    cut: DateTime<Utc>,
) -> Result<(u32, u64, u64, Option<DateTime<Utc>>), sqlx::Error> {
    let mut old: Vec<(String, DateTime<Utc>)> = partition_names(pool)
        .await?
        .into_iter()
        .filter_map(|n| {
            let (y, m) = parse_partition_name(&n)?;
            let (_, hi) = month_bounds(y, m)?;
            (hi <= cut).then_some((n, hi))
        })
        .collect();
    old.sort_by_key(|(_, hi)| *hi);
    let mut tx = pool.begin().await?;
    if let Some((_, hi)) = old.last() {
        sqlx::query(
            "INSERT INTO event_retention (id, dropped_before) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET dropped_before = \
             GREATEST(event_retention.dropped_before, excluded.dropped_before)",
        )
        .bind(*hi)
        .execute(&mut *tx)
        .await?;
    }
    for (name, _) in &old {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let Some(floor) = dropped_before(pool).await? else {
        return Ok((0, 0, 0, None));
    };
    // The keys of the dropped events: never read again (events before the watermark are
    // ignored before their key is looked up). One statement (through the BRIN index).
    let keys = sqlx::query("DELETE FROM event_keys WHERE occurred_at < $1")
        .bind(floor)
        .execute(pool)
        .await?
        .rows_affected();
    let users = sqlx::query("DELETE FROM usage_daily_users WHERE day < $1")
        .bind(floor.date_naive())
        .execute(pool)
        .await?
        .rows_affected();
    Ok((old.len() as u32, keys, users, Some(floor)))
}
