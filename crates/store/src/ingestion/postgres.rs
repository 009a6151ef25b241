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

use super::*;
use sqlx::postgres::{PgArguments, PgPool};
use sqlx::{Arguments, Row};

const BATCH: &str = "WITH \
    acc AS (INSERT INTO accounts \
        (id, name, attributes, pinned, status, created_at, updated_at) \
        SELECT id, '', $7, false, $8, $9, $9 FROM UNNEST($10::text[]) AS a(id) \
        ON CONFLICT (id) DO NOTHING RETURNING 1), \
    ins AS (INSERT INTO events \
        (account_id, event_id, user_id, event_type, occurred_at, value) \
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                             $5::timestamptz[], $6::float8[]) \
        WHERE (SELECT count(*) FROM acc) >= 0 \
        ON CONFLICT (account_id, event_id) DO NOTHING \
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

fn enc(e: sqlx::error::BoxDynError) -> sqlx::Error {
    sqlx::Error::Encode(e)
}

/// Writes `sorted` (distinct keys, in key order) of `accounts`; returns how many were
/// new. Returns after the commit (the driver reads up to `ReadyForQuery`, which the
/// server sends once the implicit transaction is committed).
pub(super) async fn write_events(
    pool: &PgPool,
    accounts: &[&str],
    sorted: &[&NewEvent],
) -> Result<usize, sqlx::Error> {
    let now = Utc::now();
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
    let row = sqlx::query_with(BATCH, a).fetch_one(pool).await?;
    let new: i64 = row.try_get(0)?;
    Ok(new as usize)
}
