//! The accounts and usage reads on a SQLite file through rusqlite.
//!
//! sqlx-sqlite costs about 5 µs per row (it copies every value, allocates each row and
//! hands it over a channel from the connection's worker thread): 35 s for the 7.2 M
//! roll-ups of 100,000 accounts. rusqlite steps the same statement on the calling thread
//! and lends each value in place. It links the same SQLite library (libsqlite3-sys 0.37,
//! as sqlx-sqlite 0.9), and opens its own read-only connections on the database's file,
//! one per statement (the two halves run on two threads): each statement reads one
//! consistent snapshot (its implicit read transaction; in WAL mode it never blocks the
//! writer), exactly as the two statements of the sqlx path do on two pooled
//! connections. The accounts statement runs the same way (one connection), its columns
//! decoded exactly as sqlx decodes them (the timestamp forms of sqlx-sqlite, the JSON
//! parsed from the stored text). In-memory databases (no file) keep the sqlx path.

use std::path::PathBuf;

use super::*;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// The file of the main database behind `conn` (SQLite), `None` for an in-memory or
/// temporary one (`PRAGMA database_list` gives it an empty file name).
pub(crate) async fn database_file(conn: &DatabaseConnection) -> Result<Option<PathBuf>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA database_list",
        ))
        .await?;
    for r in rows {
        let name: String = r.try_get_by_index(1)?;
        let file: String = r.try_get_by_index(2)?;
        if name == "main" {
            return Ok((!file.is_empty()).then(|| PathBuf::from(file)));
        }
    }
    Ok(None)
}

fn err(e: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("load_inputs: read (rusqlite): {e}"))
}

fn bad(what: &str, v: ValueRef<'_>) -> DbErr {
    DbErr::Custom(format!(
        "load_inputs: read (rusqlite): unexpected {what} {:?}",
        v.data_type()
    ))
}

/// `YYYY-MM-DD` (how sqlx stores a `NaiveDate` in SQLite), else any form chrono reads.
fn day(v: ValueRef<'_>) -> Result<NaiveDate, DbErr> {
    let ValueRef::Text(b) = v else {
        return Err(bad("day", v));
    };
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10))
        && let Some(day) = NaiveDate::from_ymd_opt(y as i32, m, d)
    {
        return Ok(day);
    }
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.get(..10))
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| bad("day", v))
}

fn int(what: &str, v: ValueRef<'_>) -> Result<i64, DbErr> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Real(f) => Ok(f as i64),
        _ => Err(bad(what, v)),
    }
}

fn real(what: &str, v: ValueRef<'_>) -> Result<f64, DbErr> {
    match v {
        ValueRef::Real(f) => Ok(f),
        ValueRef::Integer(i) => Ok(i as f64),
        _ => Err(bad(what, v)),
    }
}

fn text<'a>(what: &str, v: ValueRef<'a>) -> Result<&'a [u8], DbErr> {
    match v {
        ValueRef::Text(b) => Ok(b),
        _ => Err(bad(what, v)),
    }
}

/// A text column as an owned string (sqlx decodes only TEXT values as strings).
fn string(what: &str, v: ValueRef<'_>) -> Result<String, DbErr> {
    std::str::from_utf8(text(what, v)?)
        .map(str::to_string)
        .map_err(|_| bad(what, v))
}

/// A timestamp decoded as sqlx-sqlite decodes a `DateTime<Utc>`: TEXT in RFC 3339 or
/// one of SQLite's date-time forms (no offset: UTC), INTEGER as Unix seconds, REAL as
/// a Julian day.
fn datetime(what: &str, v: ValueRef<'_>) -> Result<DateTime<Utc>, DbErr> {
    use chrono::{FixedOffset, NaiveDateTime, Offset, TimeZone};
    let fixed: Option<DateTime<FixedOffset>> = match v {
        ValueRef::Text(b) => std::str::from_utf8(b).ok().and_then(|t| {
            if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
                return Some(dt);
            }
            // sqlx-sqlite's list, in its order.
            const FORMATS: [&str; 12] = [
                "%F %T%.f",
                "%F %R",
                "%F %RZ",
                "%F %R%:z",
                "%F %T%.fZ",
                "%F %T%.f%:z",
                "%FT%R",
                "%FT%RZ",
                "%FT%R%:z",
                "%FT%T%.f",
                "%FT%T%.fZ",
                "%FT%T%.f%:z",
            ];
            FORMATS.iter().find_map(|f| {
                DateTime::parse_from_str(t, f).ok().or_else(|| {
                    NaiveDateTime::parse_from_str(t, f)
                        .ok()
                        .map(|dt| Utc.fix().from_utc_datetime(&dt))
                })
            })
        }),
        ValueRef::Integer(i) => Utc.fix().timestamp_opt(i, 0).single(),
        ValueRef::Real(f) => {
            let seconds = (f - 2_440_587.5) * 86_400.0;
            seconds.is_finite().then_some(()).and_then(|()| {
                Utc.fix()
                    .timestamp_opt(seconds.trunc() as i64, (seconds.fract() * 1e9).abs() as u32)
                    .single()
            })
        }
        _ => None,
    };
    fixed
        .map(|dt| Utc.from_utc_datetime(&dt.naive_utc()))
        .ok_or_else(|| match v {
            ValueRef::Text(b) => DbErr::Custom(format!(
                "load_inputs: read (rusqlite): invalid {what} {:?}",
                String::from_utf8_lossy(b)
            )),
            _ => bad(what, v),
        })
}

/// Opens a read-only connection of its own on `file` (each statement reads one
/// consistent snapshot; in WAL mode it never blocks the writer).
fn open(file: &std::path::Path) -> Result<Connection, DbErr> {
    let c = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    Ok(c)
}

/// Binds `args` (`Arg` values, as sqlx binds them) to `stmt`.
fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Arg]) -> Result<(), DbErr> {
    for (k, a) in args.iter().enumerate() {
        match a {
            Arg::Date(d) => stmt.raw_bind_parameter(k + 1, d.format("%Y-%m-%d").to_string()),
            Arg::Text(t) => stmt.raw_bind_parameter(k + 1, t.as_str()),
        }
        .map_err(err)?;
    }
    Ok(())
}

/// The accounts statement of [`load`] (id, name, profile_id, status, attributes,
/// created_at, parent_id), each column decoded as the sqlx path decodes it (blocking).
pub(super) fn read_accounts(
    file: &std::path::Path,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<AccountMeta>, DbErr> {
    let c = open(file)?;
    let mut stmt = c.prepare(sql).map_err(err)?;
    bind(&mut stmt, args)?;
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(err)? {
        let col = |i: usize| row.get_ref(i).map_err(err);
        let attributes = col(4)?;
        out.push(AccountMeta {
            id: string("accounts.id", col(0)?)?,
            name: string("accounts.name", col(1)?)?,
            profile_id: match col(2)? {
                ValueRef::Null => None,
                v => Some(string("accounts.profile_id", v)?),
            },
            status: string("accounts.status", col(3)?)?,
            attributes: serde_json::from_slice(text("accounts.attributes", attributes)?)
                .map_err(|e| DbErr::Json(format!("load_inputs: accounts.attributes: {e}")))?,
            created_at: datetime("accounts.created_at", col(5)?)?,
            parent_id: match col(6)? {
                ValueRef::Null => None,
                v => Some(string("accounts.parent_id", v)?),
            },
        });
    }
    Ok(out)
}

/// Everything the read owns while it runs off the async threads, handed back after.
pub(super) struct ReadUsage {
    pub file: PathBuf,
    /// One or two statements (`?` placeholders) with their arguments.
    pub statements: Vec<(String, Vec<Arg>)>,
    /// The account id the statements split at (`<` it, `>=` it), if two.
    pub split: Option<String>,
    pub accounts: Vec<AccountMeta>,
    pub index: HashMap<String, usize>,
    pub data: Vec<AccountData>,
    pub events: Interner,
}

/// What one statement read: its accounts' usage is in place; rows of accounts outside
/// its range (none, with SQLite's default BINARY collation of the ids) are set aside.
struct Half {
    events: Interner,
    stray: Vec<(usize, DailyUsage)>,
}

type Read = (
    Vec<AccountMeta>,
    HashMap<String, usize>,
    Vec<AccountData>,
    Interner,
);

impl ReadUsage {
    /// Runs the statements, one thread each (blocking: call from `spawn_blocking`).
    pub(super) fn run(self) -> Result<Read, DbErr> {
        let Self {
            file,
            statements,
            split,
            accounts,
            index,
            mut data,
            mut events,
        } = self;
        // Statement k reads the accounts of ranges[k] (ids compared bytewise, as
        // SQLite's BINARY collation does; the accounts are sorted the same way).
        let mid = match (&split, statements.len()) {
            (Some(m), 2) => accounts.partition_point(|a| a.id.as_str() < m.as_str()),
            _ => accounts.len(),
        };
        let declared = events.names.len();
        let halves: Vec<Result<Half, DbErr>> = {
            let (lo, hi) = data.split_at_mut(mid);
            let mut parts = vec![(0usize, lo), (mid, hi)];
            parts.truncate(statements.len());
            std::thread::scope(|scope| {
                let handles: Vec<_> = statements
                    .iter()
                    .zip(parts)
                    .map(|((sql, args), (offset, slice))| {
                        let (file, accounts, index) = (&file, &accounts, &index);
                        let events = events.clone();
                        scope.spawn(move || {
                            read_half(file, sql, args, accounts, index, offset, slice, events)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(DbErr::Custom("load_inputs: usage read panicked".into()))
                        })
                    })
                    .collect()
            })
        };
        let mut ranges = vec![0..mid, mid..accounts.len()];
        ranges.truncate(halves.len());
        for (half, range) in halves.into_iter().zip(ranges) {
            let Half {
                events: local,
                mut stray,
            } = half?;
            // The half's own ids of names it met first: to the shared ids.
            let remap: Vec<u32> = (0..local.names.len())
                .map(|id| {
                    if id < declared {
                        id as u32
                    } else {
                        events.id(&local.names[id])
                    }
                })
                .collect();
            if remap.iter().enumerate().any(|(i, &g)| i as u32 != g) {
                for d in &mut data[range] {
                    for u in &mut d.usage {
                        u.event_type = remap[u.event_type as usize];
                    }
                }
                for (_, u) in &mut stray {
                    u.event_type = remap[u.event_type as usize];
                }
            }
            for (i, u) in stray {
                data[i].usage.push(u);
            }
        }
        Ok((accounts, index, data, events))
    }
}

/// Reads one statement into `slice` (the accounts from `offset` on).
#[allow(clippy::too_many_arguments)]
fn read_half(
    file: &std::path::Path,
    sql: &str,
    args: &[Arg],
    accounts: &[AccountMeta],
    index: &HashMap<String, usize>,
    offset: usize,
    slice: &mut [AccountData],
    mut events: Interner,
) -> Result<Half, DbErr> {
    let c = open(file)?;
    let mut stmt = c.prepare(sql).map_err(err)?;
    bind(&mut stmt, args)?;
    let mut stray = Vec::new();
    // The account (absolute index) of the previous row.
    let mut last = usize::MAX;
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(err)? {
        let id = text("account_id", row.get_ref(0).map_err(err)?)?;
        if last >= accounts.len() || accounts[last].id.as_bytes() != id {
            let Some(&i) = std::str::from_utf8(id).ok().and_then(|id| index.get(id)) else {
                continue;
            };
            last = i;
        }
        let name = text("event_type", row.get_ref(2).map_err(err)?)?;
        let event_type = match events.find_small(name) {
            Some(id) => id,
            None => events
                .id(std::str::from_utf8(name)
                    .map_err(|_| bad("event_type", ValueRef::Text(name)))?),
        };
        let u = DailyUsage {
            day: day(row.get_ref(1).map_err(err)?)?,
            event_type,
            count: clamp_u32(int("count", row.get_ref(3).map_err(err)?)?),
            distinct_users: clamp_u32(int("distinct_users", row.get_ref(4).map_err(err)?)?),
            value_sum: real("value_sum", row.get_ref(5).map_err(err)?)?,
        };
        match last.checked_sub(offset).and_then(|k| slice.get_mut(k)) {
            Some(d) => d.usage.push(u),
            None => stray.push((last, u)),
        }
    }
    Ok(Half { events, stray })
}
