//! The events path on PostgreSQL: the whole batch is one statement, run in its own
//! (implicit) transaction, so a batch is one round trip.
//!
//! The events are bound as one array per column and `UNNEST`ed; data-modifying `WITH`
//! parts then insert the implicit accounts, the events (`ON CONFLICT DO NOTHING
//! RETURNING` the new ones), the distinct users of the new events (`RETURNING` those new
//! to their day), and the `usage_daily` and `event_types` roll-ups aggregated in SQL
//! from the new events alone: the roll-ups move exactly once per new event, whatever
//! other transactions store at the same time (an `ON CONFLICT` on a key another
//! transaction has just inserted waits for its commit). The statement is prepared once
//! per connection and does not depend on the batch size.
//!
//! The event types seen are created if new (`ON CONFLICT DO NOTHING`: an existing row
//! is neither changed nor locked), and their counts go to `event_type_counts`, in the
//! slot of the connection (`pg_backend_pid() % 64`), not to `event_types.event_count`:
//! every batch adds to the same few event types, and one row per type made concurrent
//! batches wait for each other's commit (see the migration `m20261204_000009`).
//!
//! Lock order: each part reads the complete output of the one before it (`(SELECT
//! count(*) FROM ...)`), so the tables are written in the order accounts, events,
//! `usage_daily_users`, `usage_daily`, `event_types`, `event_type_counts`, each in key
//! order (`ORDER BY`), in every batch: concurrent batches wait for each other but do
//! not deadlock.
//!
//! Before (one `UNNEST` statement per table in an explicit transaction) a batch took 7
//! round trips (8 when partly new: the events insert ran again with `RETURNING`), and
//! the roll-ups were aggregated in the service and sent back.
//!
//! Two statements, the same writes: [`FAST`] runs first, and [`BATCH`] only when it
//! failed on a race with a concurrent batch. `INSERT ... ON CONFLICT` is a speculative
//! insertion (look up, insert the heap tuple with a token, insert the index entry, confirm
//! or kill it): on PostgreSQL 15 it costs about twice a plain insert of the same rows
//! (1.2 M events into `events`: 28.7 s against 13.1 s for a plain `INSERT ... SELECT`
//! and 14.6 s with a `NOT EXISTS` anti-join, in one session on 2 cores). So [`FAST`]
//! leaves out the rows already stored with `NOT EXISTS` (one index probe per row, in
//! the statement's snapshot) and inserts the rest plainly; it updates the `usage_daily`
//! rows that exist and inserts the others. Keys inserted by a transaction the snapshot
//! does not see (running concurrently, or committed after the statement started) make
//! the plain insert fail with `unique_violation` once that transaction commits (or
//! succeed if it rolls back), and updates taken in another order than a concurrent
//! batch's may fail with `deadlock_detected`: the failed statement changed nothing (its
//! implicit transaction rolled back), and [`BATCH`], whose `ON CONFLICT` parts wait and
//! skip or add, and which locks every table in key order, writes the batch instead. A
//! batch is therefore stored exactly once whichever statement stores it, and the
//! answer still comes after the commit.

use super::*;
use sqlx::postgres::{PgArguments, PgPool};
use sqlx::{Arguments, Row};

const BATCH: &str = "WITH \
    acc AS (INSERT INTO accounts \
        (id, name, attributes, pinned, status, created_at, updated_at) \
        SELECT id, '', $7, false, $8, $9, $9 FROM UNNEST($10::text[]) AS a(id) \
        ON CONFLICT (id) DO NOTHING RETURNING 1), \
    src AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                 $5::timestamptz[], $6::float8[]) \
            AS s(account_id, event_id, user_id, event_type, occurred_at, value) \
        WHERE (SELECT count(*) FROM acc) >= 0 AND s.occurred_at >= COALESCE( \
            (SELECT dropped_before FROM event_retention WHERE id = 1), '-infinity')), \
    keys AS (INSERT INTO event_keys (account_id, event_id, occurred_at) \
        SELECT account_id, event_id, occurred_at FROM src \
        ON CONFLICT (account_id, event_id) DO NOTHING \
        RETURNING account_id, event_id), \
    ins AS (INSERT INTO events \
        (account_id, event_id, user_id, event_type, occurred_at, value) \
        SELECT s.* FROM src s JOIN keys k \
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
        SELECT n.account_id, n.day, n.event_type, n.count, COALESCE(u.users, 0), n.value_sum \
        FROM (SELECT account_id, day, event_type, count(*) AS count, \
                     sum(COALESCE(value, 0)) AS value_sum \
              FROM ins GROUP BY account_id, day, event_type) n \
        LEFT JOIN (SELECT account_id, day, event_type, count(*) AS users \
                   FROM users GROUP BY account_id, day, event_type) u \
        USING (account_id, day, event_type) \
        ORDER BY 1, 2, 3 \
        ON CONFLICT (account_id, day, event_type) DO UPDATE SET \
        count = usage_daily.count + excluded.count, \
        distinct_users = usage_daily.distinct_users + excluded.distinct_users, \
        value_sum = usage_daily.value_sum + excluded.value_sum \
        RETURNING 1), \
    types AS (INSERT INTO event_types (name, display_name, is_key, description, \
                                       declared, event_count, created_at, updated_at) \
        SELECT DISTINCT event_type, '', false, '', false, 0::bigint, $9, $9 FROM ins \
        WHERE (SELECT count(*) FROM daily) >= 0 \
        ORDER BY 1 \
        ON CONFLICT (name) DO NOTHING \
        RETURNING 1), \
    counts AS (INSERT INTO event_type_counts (name, slot, event_count) \
        SELECT event_type, pg_backend_pid() % 64, count(*) FROM ins \
        WHERE (SELECT count(*) FROM types) >= 0 \
        GROUP BY event_type ORDER BY 1 \
        ON CONFLICT (name, slot) DO UPDATE SET \
        event_count = event_type_counts.event_count + excluded.event_count \
        RETURNING 1) \
    SELECT (SELECT count(*) FROM ins) AS new, (SELECT count(*) FROM counts) AS counts";

/// The batch without `ON CONFLICT` on the hot tables (see the module's documentation):
/// the same parameters and the same answer as [`BATCH`]; fails with `unique_violation`
/// or `deadlock_detected` on a race, and then [`BATCH`] runs instead.
const FAST: &str = "WITH \
    acc AS (INSERT INTO accounts \
        (id, name, attributes, pinned, status, created_at, updated_at) \
        SELECT id, '', $7, false, $8, $9, $9 FROM UNNEST($10::text[]) AS a(id) \
        ON CONFLICT (id) DO NOTHING RETURNING 1), \
    src AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                 $5::timestamptz[], $6::float8[]) \
            AS s(account_id, event_id, user_id, event_type, occurred_at, value) \
        WHERE (SELECT count(*) FROM acc) >= 0 AND s.occurred_at >= COALESCE( \
            (SELECT dropped_before FROM event_retention WHERE id = 1), '-infinity')), \
    keys AS (INSERT INTO event_keys (account_id, event_id, occurred_at) \
        SELECT account_id, event_id, occurred_at FROM src s \
        WHERE NOT EXISTS (SELECT 1 FROM event_keys k \
            WHERE k.account_id = s.account_id AND k.event_id = s.event_id) \
        RETURNING account_id, event_id), \
    ins AS (INSERT INTO events \
        (account_id, event_id, user_id, event_type, occurred_at, value) \
        SELECT s.* FROM src s JOIN keys k \
            ON k.account_id = s.account_id AND k.event_id = s.event_id \
        RETURNING account_id, user_id, event_type, \
            (occurred_at AT TIME ZONE 'UTC')::date AS day, value), \
    users AS (INSERT INTO usage_daily_users (account_id, day, event_type, user_id) \
        SELECT DISTINCT account_id, day, event_type, user_id FROM ins i \
        WHERE user_id IS NOT NULL \
        AND NOT EXISTS (SELECT 1 FROM usage_daily_users u \
            WHERE u.account_id = i.account_id AND u.day = i.day \
            AND u.event_type = i.event_type AND u.user_id = i.user_id) \
        ORDER BY 1, 2, 3, 4 \
        RETURNING account_id, day, event_type), \
    n AS (SELECT n.account_id, n.day, n.event_type, n.count, \
                 COALESCE(u.users, 0) AS users, n.value_sum \
        FROM (SELECT account_id, day, event_type, count(*) AS count, \
                     sum(COALESCE(value, 0)) AS value_sum \
              FROM ins GROUP BY account_id, day, event_type) n \
        LEFT JOIN (SELECT account_id, day, event_type, count(*) AS users \
                   FROM users GROUP BY account_id, day, event_type) u \
        USING (account_id, day, event_type)), \
    upd AS (UPDATE usage_daily d SET \
        count = d.count + n.count, \
        distinct_users = d.distinct_users + n.users, \
        value_sum = d.value_sum + n.value_sum \
        FROM n WHERE d.account_id = n.account_id AND d.day = n.day \
        AND d.event_type = n.event_type \
        RETURNING d.account_id, d.day, d.event_type), \
    daily AS (INSERT INTO usage_daily \
        (account_id, day, event_type, count, distinct_users, value_sum) \
        SELECT * FROM n WHERE NOT EXISTS (SELECT 1 FROM upd \
            WHERE upd.account_id = n.account_id AND upd.day = n.day \
            AND upd.event_type = n.event_type) \
        ORDER BY 1, 2, 3 \
        RETURNING 1), \
    types AS (INSERT INTO event_types (name, display_name, is_key, description, \
                                       declared, event_count, created_at, updated_at) \
        SELECT DISTINCT event_type, '', false, '', false, 0::bigint, $9, $9 FROM ins \
        WHERE (SELECT count(*) FROM daily) + (SELECT count(*) FROM upd) >= 0 \
        ORDER BY 1 \
        ON CONFLICT (name) DO NOTHING \
        RETURNING 1), \
    counts AS (INSERT INTO event_type_counts (name, slot, event_count) \
        SELECT event_type, pg_backend_pid() % 64, count(*) FROM ins \
        WHERE (SELECT count(*) FROM types) >= 0 \
        GROUP BY event_type ORDER BY 1 \
        ON CONFLICT (name, slot) DO UPDATE SET \
        event_count = event_type_counts.event_count + excluded.event_count \
        RETURNING 1) \
    SELECT (SELECT count(*) FROM ins) AS new, (SELECT count(*) FROM counts) AS counts";

/// SQLSTATEs of a [`FAST`] statement that lost a race: `unique_violation`,
/// `deadlock_detected`, `serialization_failure`.
const RACES: [&str; 3] = ["23505", "40P01", "40001"];

/// Whether `e` is a race that [`BATCH`] resolves.
fn lost_race(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| RACES.contains(&c.as_ref()))
}

fn enc(e: sqlx::error::BoxDynError) -> sqlx::Error {
    sqlx::Error::Encode(e)
}

/// Writes `sorted` (distinct keys, in key order) of `accounts`; returns how many were
/// new. Returns after the commit (the driver reads up to `ReadyForQuery`, which the
/// server sends once the implicit transaction is committed). [`FAST`] first, [`BATCH`]
/// when it lost a race with a concurrent batch.
pub(super) async fn write_events(
    pool: &PgPool,
    accounts: &[&str],
    sorted: &[&NewEvent],
) -> Result<usize, sqlx::Error> {
    let now = Utc::now();
    match write_once(pool, accounts, sorted, now).await {
        Err(e) if no_partition(&e) => {
            // A month with no partition yet (an old event, or the job that creates them
            // ahead has not run): create it, then write the batch again.
            create_partitions(pool, sorted.iter().map(|e| e.occurred_at)).await?;
            write_once(pool, accounts, sorted, now).await
        }
        r => r,
    }
}

/// [`FAST`], then [`BATCH`] when it lost a race.
async fn write_once(
    pool: &PgPool,
    accounts: &[&str],
    sorted: &[&NewEvent],
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    match run(FAST, pool, accounts, sorted, now).await {
        Err(e) if lost_race(&e) => {
            tracing::debug!(error = %e, "events batch raced a concurrent one: written with ON CONFLICT");
            run(BATCH, pool, accounts, sorted, now).await
        }
        r => r,
    }
}

/// Whether `e` says that a row's month has no partition of `events`
/// (`check_violation`, "no partition of relation ... found for row").
fn no_partition(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().is_some_and(|c| c == "23514")
            && d.message().starts_with("no partition of relation")
    })
}

/// Runs `sql` ([`FAST`] or [`BATCH`]) on the batch.
async fn run(
    sql: &'static str,
    pool: &PgPool,
    accounts: &[&str],
    sorted: &[&NewEvent],
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let mut a = PgArguments::default();
    let col = |f: fn(&NewEvent) -> &str| sorted.iter().map(|e| f(e)).collect::<Vec<&str>>();
    a.add(col(|e| e.account_id.as_str())).map_err(enc)?;
    a.add(col(|e| e.event_id.as_str())).map_err(enc)?;
    a.add(
        sorted
            .iter()
            .map(|e| e.user_id.as_deref())
            .collect::<Vec<Option<&str>>>(),
    )
    .map_err(enc)?;
    a.add(col(|e| e.event_type.as_str())).map_err(enc)?;
    a.add(
        sorted
            .iter()
            .map(|e| e.occurred_at)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .map_err(enc)?;
    a.add(sorted.iter().map(|e| e.value).collect::<Vec<Option<f64>>>())
        .map_err(enc)?;
    a.add(serde_json::json!({})).map_err(enc)?;
    a.add(STATUS_UNASSIGNED).map_err(enc)?;
    a.add(now).map_err(enc)?;
    a.add(accounts).map_err(enc)?;
    let row = sqlx::query_with(sql, a).fetch_one(pool).await?;
    let new: i64 = row.try_get(0)?;
    Ok(new as usize)
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
