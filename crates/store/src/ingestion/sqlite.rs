//! The events path on SQLite: multi-row `VALUES` lists, chunked under the parameter
//! limit, in a `BEGIN IMMEDIATE` transaction.

use super::*;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Row};

fn enc(e: sqlx::error::BoxDynError) -> sqlx::Error {
    sqlx::Error::Encode(e)
}

/// Runs `head VALUES (?, ...), ... tail` over `n` rows of `width` values, chunked
/// under the parameter limit; `bind(i, args)` adds row `i`'s values. Returns the
/// statement's rows when `returning`, and the count of rows it changed.
async fn insert<F>(
    c: &mut SqliteConnection,
    head: &str,
    tail: &str,
    n: usize,
    width: usize,
    returning: bool,
    mut bind: F,
) -> Result<(Vec<SqliteRow>, u64), sqlx::Error>
where
    F: FnMut(usize, &mut SqliteArguments) -> Result<(), sqlx::error::BoxDynError>,
{
    let per_chunk = (SQLITE_MAX_PARAMS / width).max(1);
    let mut out = Vec::new();
    let mut changed = 0;
    let mut start = 0;
    while start < n {
        let end = (start + per_chunk).min(n);
        let mut sql =
            String::with_capacity(head.len() + tail.len() + (end - start) * (width * 2 + 3));
        sql.push_str(head);
        sql.push_str(" VALUES ");
        push_groups(&mut sql, DbBackend::Sqlite, end - start, width, &mut 0);
        sql.push(' ');
        sql.push_str(tail);
        let mut args = SqliteArguments::default();
        args.reserve((end - start) * width, 0);
        for i in start..end {
            bind(i, &mut args).map_err(enc)?;
        }
        let q = sqlx::query_with(AssertSqlSafe(sql), args);
        if returning {
            let rows = q.fetch_all(&mut *c).await?;
            changed += rows.len() as u64;
            out.extend(rows);
        } else {
            changed += q.execute(&mut *c).await?.rows_affected();
        }
        start = end;
    }
    Ok((out, changed))
}

/// Writes `sorted` (distinct keys, in key order) of `accounts`; returns how many were new.
pub(super) async fn write_events(
    pool: &SqlitePool,
    accounts: &[&str],
    sorted: &[&NewEvent],
) -> Result<usize, sqlx::Error> {
    let now = Utc::now();
    // As on PostgreSQL: RETURNING only when some, not all, of the events are new.
    let mut returning = false;
    let (mut tx, new) = loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        // Events before the retention watermark are ignored (see `retention`).
        let kept: Vec<&NewEvent>;
        let sorted = match read_dropped_before(&mut tx).await? {
            Some(floor) => {
                kept = sorted
                    .iter()
                    .filter(|e| e.occurred_at >= floor)
                    .copied()
                    .collect();
                &kept[..]
            }
            None => sorted,
        };
        match insert_events(&mut tx, accounts, sorted, now, returning).await? {
            Some(new) => break (tx, new),
            None => {
                tx.rollback().await?;
                returning = true;
            }
        }
    };
    if new.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    write_rollups(&mut tx, &new, now).await?;
    tx.commit().await?;
    Ok(new.len())
}

/// Stores the implicit accounts and the events; returns the new events, or None when
/// some (not all, not none) are new and `returning` is off.
async fn insert_events<'e>(
    tx: &mut SqliteConnection,
    accounts: &[&str],
    sorted: &[&'e NewEvent],
    now: DateTime<Utc>,
    returning: bool,
) -> Result<Option<Vec<&'e NewEvent>>, sqlx::Error> {
    let empty = serde_json::json!({});
    insert(
        &mut *tx,
        "INSERT INTO accounts (id, name, attributes, pinned, status, created_at, updated_at)",
        "ON CONFLICT (id) DO NOTHING",
        accounts.len(),
        7,
        false,
        |i, a| {
            a.add(accounts[i])?;
            a.add("")?;
            a.add(&empty)?;
            a.add(false)?;
            a.add(STATUS_UNASSIGNED)?;
            a.add(now)?;
            a.add(now)
        },
    )
    .await?;

    let (rows, inserted) = insert(
        &mut *tx,
        "INSERT INTO events (account_id, event_id, user_id, event_type, occurred_at, value)",
        if returning {
            "ON CONFLICT (account_id, event_id) DO NOTHING RETURNING account_id, event_id"
        } else {
            "ON CONFLICT (account_id, event_id) DO NOTHING"
        },
        sorted.len(),
        6,
        returning,
        |i, a| {
            let e = sorted[i];
            a.add(e.account_id.as_str())?;
            a.add(e.event_id.as_str())?;
            a.add(e.user_id.as_deref())?;
            a.add(e.event_type.as_str())?;
            a.add(e.occurred_at)?;
            a.add(e.value)
        },
    )
    .await?;
    if !returning {
        return Ok(match inserted {
            0 => Some(Vec::new()),
            n if n as usize == sorted.len() => Some(sorted.to_vec()),
            _ => None,
        });
    }
    let mut keys = HashSet::with_capacity(rows.len());
    for r in &rows {
        keys.insert((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?));
    }
    Ok(Some(new_events(sorted, &keys)))
}

/// Adds the new events to `usage_daily`, `usage_daily_users` and `event_types`.
async fn write_rollups(
    tx: &mut SqliteConnection,
    new: &[&NewEvent],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut r = Rollups::of(new);
    if !r.users.is_empty() {
        let users: Vec<_> = r.users.iter().copied().collect();
        let (added, _) = insert(
            &mut *tx,
            "INSERT INTO usage_daily_users (account_id, day, event_type, user_id)",
            "ON CONFLICT (account_id, day, event_type, user_id) DO NOTHING \
             RETURNING account_id, day, event_type",
            users.len(),
            4,
            true,
            |i, a| {
                let (acc, d, t, u) = users[i];
                a.add(acc)?;
                a.add(d)?;
                a.add(t)?;
                a.add(u)
            },
        )
        .await?;
        if added.len() == users.len() {
            r.count_new_users(true, &[]);
        } else {
            let mut keys = Vec::with_capacity(added.len());
            for row in &added {
                keys.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
            r.count_new_users(false, &keys);
        }
    }

    let days: Vec<_> = r.days.iter().map(|(k, v)| (*k, *v)).collect();
    insert(
        &mut *tx,
        "INSERT INTO usage_daily (account_id, day, event_type, count, distinct_users, value_sum)",
        "ON CONFLICT (account_id, day, event_type) DO UPDATE SET \
         count = usage_daily.count + excluded.count, \
         distinct_users = usage_daily.distinct_users + excluded.distinct_users, \
         value_sum = usage_daily.value_sum + excluded.value_sum",
        days.len(),
        6,
        false,
        |i, a| {
            let ((acc, d, t), (n, sum, du)) = days[i];
            a.add(acc)?;
            a.add(d)?;
            a.add(t)?;
            a.add(n)?;
            a.add(du)?;
            a.add(sum)
        },
    )
    .await?;

    // Last, as on PostgreSQL (see there).
    let types: Vec<_> = r.per_type.iter().map(|(t, n)| (*t, *n)).collect();
    insert(
        &mut *tx,
        "INSERT INTO event_types (name, display_name, is_key, description, declared, \
         event_count, created_at, updated_at)",
        "ON CONFLICT (name) DO UPDATE SET event_count = event_types.event_count + excluded.event_count",
        types.len(),
        8,
        false,
        |i, a| {
            let (t, n) = types[i];
            a.add(t)?;
            a.add("")?;
            a.add(false)?;
            a.add("")?;
            a.add(false)?;
            a.add(n)?;
            a.add(now)?;
            a.add(now)
        },
    )
    .await?;
    Ok(())
}

/// The retention watermark as stored on SQLite (text in the events' format).
async fn read_dropped_before(
    c: &mut SqliteConnection,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT dropped_before FROM event_retention WHERE id = 1")
            .fetch_optional(&mut *c)
            .await?;
    Ok(s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// The retention watermark (`None`: retention never ran).
pub(super) async fn dropped_before(
    pool: &SqlitePool,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let mut c = pool.acquire().await?;
    read_dropped_before(&mut c).await
}

/// Moves the watermark to `cut` (never back), then deletes the events before `cut` and
/// the `usage_daily_users` rows of the days before it, `batch` rows per statement (each
/// its own short write transaction). Returns (events, user rows) deleted.
pub(super) async fn delete_events_before(
    pool: &SqlitePool,
    cut: DateTime<Utc>,
    batch: usize,
) -> Result<(u64, u64), sqlx::Error> {
    let mut at = String::new();
    super::sqlite_file::push_sqlite_time(&mut at, &cut);
    let mut day = String::new();
    super::sqlite_file::push_sqlite_day(&mut day, cut.date_naive());
    sqlx::query(
        "INSERT INTO event_retention (id, dropped_before) VALUES (1, ?1) \
         ON CONFLICT (id) DO UPDATE SET \
         dropped_before = max(event_retention.dropped_before, excluded.dropped_before)",
    )
    .bind(&at)
    .execute(pool)
    .await?;
    let mut counts = [0u64; 2];
    for (i, (sql, bound)) in [
        (
            "DELETE FROM events WHERE rowid IN \
             (SELECT rowid FROM events WHERE occurred_at < ?1 LIMIT ?2)",
            &at,
        ),
        (
            "DELETE FROM usage_daily_users WHERE rowid IN \
             (SELECT rowid FROM usage_daily_users WHERE day < ?1 LIMIT ?2)",
            &day,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        loop {
            let n = sqlx::query(sql)
                .bind(bound.as_str())
                .bind(batch as i64)
                .execute(pool)
                .await?
                .rows_affected();
            counts[i] += n;
            if (n as usize) < batch {
                break;
            }
        }
    }
    Ok((counts[0], counts[1]))
}
