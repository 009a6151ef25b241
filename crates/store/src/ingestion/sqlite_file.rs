//! The events path on a SQLite file: one rusqlite connection, owned by the
//! [`EventWriter`], runs each batch as one `BEGIN IMMEDIATE` transaction of single-row
//! prepared statements stepped on the calling (blocking) thread.
//!
//! Through sqlx, a batch was 7 round trips to the connection's worker thread (begin, 5
//! statements, commit), each statement a 1,000-row `VALUES` list whose values are copied
//! into sqlx's argument buffer first, and a batch that was partly new ran twice (the
//! second time with `RETURNING`). Here every statement is prepared once per batch and
//! stepped per row: the change count of each events insert says whether that event is
//! new, and of each `usage_daily_users` insert whether its user is new to the day, so
//! nothing is read back and nothing runs twice.
//!
//! Same tables and the same stored values as the sqlx path (text timestamps in sqlx's
//! format, `YYYY-MM-DD` days, booleans as 0/1, JSON as text); it links the same SQLite
//! library (libsqlite3-sys 0.37, as sqlx-sqlite). SQLite has one writer per database:
//! other writers (the sqlx pool) wait for this connection's transaction through the busy
//! timeout, as they wait for each other.

use std::path::Path;
use std::time::Duration;

use super::*;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

/// Page cache of the writer connection: the events table and its key index grow by
/// ~100 bytes per event, and B-tree inserts in key order touch the same pages.
const CACHE_KIB: i64 = 64 * 1024;

/// A rusqlite error as a store error.
pub(crate) fn err(e: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("events writer (rusqlite): {e}"))
}

/// The connection of the events writer.
#[derive(Debug)]
pub(crate) struct Writer {
    conn: Connection,
    /// Reused text buffers (timestamps and days).
    buf: String,
}

impl Writer {
    /// Opens the existing database file `path` (already in WAL mode: the store's
    /// pool set it when it connected) read-write, with the pool's settings:
    /// `synchronous=NORMAL` and a 5 s busy timeout.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        Ok(Self {
            conn,
            buf: String::with_capacity(64),
        })
    }

    /// Writes `sorted` (distinct keys, in key order) of `accounts` in one
    /// transaction; returns how many events were new.
    pub(crate) fn write(
        &mut self,
        accounts: &[&str],
        sorted: &[&NewEvent],
        now: DateTime<Utc>,
    ) -> rusqlite::Result<usize> {
        let buf = &mut self.buf;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Events before the retention watermark (same text format) are ignored (see
        // `retention`).
        let floor: Option<String> = tx
            .query_row(
                "SELECT dropped_before FROM event_retention WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        buf.clear();
        push_sqlite_time(buf, &now);
        let now_text = buf.clone();
        {
            let mut st = tx.prepare(
                "INSERT INTO accounts \
                 (id, name, attributes, pinned, status, created_at, updated_at) \
                 VALUES (?1, '', '{}', 0, ?2, ?3, ?3) ON CONFLICT (id) DO NOTHING",
            )?;
            for a in accounts {
                st.execute(params![a, STATUS_UNASSIGNED, now_text])?;
            }
        }
        let mut new = Vec::with_capacity(sorted.len());
        {
            let mut st = tx.prepare(
                "INSERT INTO events \
                 (account_id, event_id, user_id, event_type, occurred_at, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (account_id, event_id) DO NOTHING",
            )?;
            for e in sorted {
                buf.clear();
                push_sqlite_time(buf, &e.occurred_at);
                if floor.as_deref().is_some_and(|f| buf.as_str() < f) {
                    continue;
                }
                let n = st.execute(params![
                    e.account_id,
                    e.event_id,
                    e.user_id,
                    e.event_type,
                    buf.as_str(),
                    e.value
                ])?;
                if n > 0 {
                    new.push(*e);
                }
            }
        }
        if new.is_empty() {
            tx.commit()?;
            return Ok(0);
        }
        let mut r = Rollups::of(&new);
        if !r.users.is_empty() {
            let mut st = tx.prepare(
                "INSERT INTO usage_daily_users (account_id, day, event_type, user_id) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account_id, day, event_type, user_id) DO NOTHING",
            )?;
            for &(a, d, t, u) in &r.users {
                buf.clear();
                push_sqlite_day(buf, d);
                if st.execute(params![a, buf.as_str(), t, u])? > 0
                    && let Some(v) = r.days.get_mut(&(a, d, t))
                {
                    v.2 += 1;
                }
            }
        }
        {
            let mut st = tx.prepare(
                "INSERT INTO usage_daily \
                 (account_id, day, event_type, count, distinct_users, value_sum) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (account_id, day, event_type) DO UPDATE SET \
                 count = usage_daily.count + excluded.count, \
                 distinct_users = usage_daily.distinct_users + excluded.distinct_users, \
                 value_sum = usage_daily.value_sum + excluded.value_sum",
            )?;
            for (&(a, d, t), &(n, sum, users)) in &r.days {
                buf.clear();
                push_sqlite_day(buf, d);
                st.execute(params![a, buf.as_str(), t, n, users, sum])?;
            }
        }
        {
            let mut st = tx.prepare(
                "INSERT INTO event_types (name, display_name, is_key, description, \
                 declared, event_count, created_at, updated_at) \
                 VALUES (?1, '', 0, '', 0, ?2, ?3, ?3) \
                 ON CONFLICT (name) DO UPDATE SET \
                 event_count = event_types.event_count + excluded.event_count",
            )?;
            for (t, n) in &r.per_type {
                st.execute(params![t, n, now_text])?;
            }
        }
        tx.commit()?;
        Ok(new.len())
    }
}

/// `t` as sqlx-sqlite stores a `DateTime<Utc>` (`to_rfc3339_opts(AutoSi, false)`:
/// `2026-01-10T09:00:00+00:00`, with 3, 6 or 9 fraction digits when the nanoseconds
/// need them), appended to `buf` without chrono's formatting machinery.
pub(super) fn push_sqlite_time(buf: &mut String, t: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign, and leap seconds: its own formatter.
        buf.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false));
        return;
    }
    push_sqlite_day_parts(buf, year as u32, t.month(), t.day());
    buf.push('T');
    push_digits(buf, t.hour(), 2);
    buf.push(':');
    push_digits(buf, t.minute(), 2);
    buf.push(':');
    push_digits(buf, t.second(), 2);
    if nanos != 0 {
        buf.push('.');
        if nanos.is_multiple_of(1_000_000) {
            push_digits(buf, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            push_digits(buf, nanos / 1_000, 6);
        } else {
            push_digits(buf, nanos, 9);
        }
    }
    buf.push_str("+00:00");
}

/// `d` as sqlx-sqlite stores a `NaiveDate` (`%F`: `2026-01-10`), appended to `buf`.
pub(super) fn push_sqlite_day(buf: &mut String, d: NaiveDate) {
    use chrono::Datelike;
    if (0..=9999).contains(&d.year()) {
        push_sqlite_day_parts(buf, d.year() as u32, d.month(), d.day());
    } else {
        buf.push_str(&d.format("%F").to_string());
    }
}

pub(super) fn push_sqlite_day_parts(buf: &mut String, year: u32, month: u32, day: u32) {
    push_digits(buf, year, 4);
    buf.push('-');
    push_digits(buf, month, 2);
    buf.push('-');
    push_digits(buf, day, 2);
}

/// `n` in decimal, zero-padded to `width` digits (`n < 10^width`).
pub(super) fn push_digits(buf: &mut String, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        buf.push(char::from(b'0' + ((n / div) % 10) as u8));
        div /= 10;
    }
}
