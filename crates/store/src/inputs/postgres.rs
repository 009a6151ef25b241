//! The usage read of the whole portfolio on PostgreSQL as binary `COPY ... TO STDOUT`.
//!
//! Through sqlx's row path each of the 7.2 M roll-ups of 100,000 accounts is a message
//! decoded into an allocated row (about 7 s); the server itself produces them in under a
//! second. `COPY (SELECT ...) TO STDOUT (FORMAT binary)` streams the same rows as raw
//! bytes, parsed here in place (each field a length and its big-endian value). COPY takes
//! no bind parameters: the statement carries the two days (formatted from dates) and the
//! split account id as an escaped string literal (`E'...'`, every `\` and `'` doubled).
//! The split compares in the "C" collation (byte order): any order gives a partition of
//! the rows, and the server's default collation (e.g. `C.UTF-8`, which PostgreSQL 15 does
//! not treat as "C") compares through `strcoll`, which cost ~0.5 s of server CPU per half
//! over the 7.2 M roll-ups of the bench (1.52 s -> 1.02 s per half, measured in `psql`).

use super::*;
use sea_orm::sqlx::postgres::{PgPool, PgPoolCopyExt};

/// The binary COPY signature, then the flags and the header extension length.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

fn bad(what: &str) -> DbErr {
    DbErr::Custom(format!("load_inputs: usage read (COPY): {what}"))
}

/// `E'...'`: a literal of `s` whatever `standard_conforming_strings` says.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// One statement's bytes, parsed as they come.
struct Parser {
    buf: Vec<u8>,
    header: bool,
    done: bool,
    /// Absolute index of the previous row's account.
    last: usize,
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

impl Parser {
    fn new() -> Self {
        Self {
            buf: Vec::new(),
            header: false,
            done: false,
            last: usize::MAX,
        }
    }

    /// Parses the complete rows of `chunk` (and of what was left over).
    fn feed(
        &mut self,
        chunk: &[u8],
        accounts: &[AccountMeta],
        index: &HashMap<String, usize>,
        data: &mut [AccountData],
        events: &mut Interner,
    ) -> Result<(), DbErr> {
        self.buf.extend_from_slice(chunk);
        let b = self.buf.as_slice();
        let mut pos = 0;
        if !self.header {
            if b.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &b[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad("not a binary COPY stream"));
            }
            let ext = be_i32(&b[SIGNATURE.len() + 4..]) as usize;
            if b.len() < SIGNATURE.len() + 8 + ext {
                return Ok(());
            }
            pos = SIGNATURE.len() + 8 + ext;
            self.header = true;
        }
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or_else(|| bad("epoch"))?;
        'rows: while !self.done && b.len() >= pos + 2 {
            let n = i16::from_be_bytes([b[pos], b[pos + 1]]);
            if n == -1 {
                self.done = true;
                pos += 2;
                break;
            }
            if n != 6 {
                return Err(bad("unexpected field count"));
            }
            // The six fields, or wait for more bytes.
            let mut f: [&[u8]; 6] = [&[]; 6];
            let mut p = pos + 2;
            for field in &mut f {
                if b.len() < p + 4 {
                    break 'rows;
                }
                let len = be_i32(&b[p..]);
                if len < 0 {
                    return Err(bad("unexpected NULL"));
                }
                let len = len as usize;
                if b.len() < p + 4 + len {
                    break 'rows;
                }
                *field = &b[p + 4..p + 4 + len];
                p += 4 + len;
            }
            pos = p;
            let [id, day, name, count, users, value_sum] = f;
            if day.len() != 4 || count.len() != 8 || users.len() != 8 || value_sum.len() != 8 {
                return Err(bad("unexpected column types"));
            }
            if self.last >= accounts.len() || accounts[self.last].id.as_bytes() != id {
                let Some(&i) = std::str::from_utf8(id).ok().and_then(|id| index.get(id)) else {
                    continue;
                };
                self.last = i;
            }
            let event_type = match events.find_small(name) {
                Some(id) => id,
                None => {
                    events.id(std::str::from_utf8(name).map_err(|_| bad("event type not UTF-8"))?)
                }
            };
            let day = epoch
                .checked_add_signed(chrono::Duration::days(i64::from(be_i32(day))))
                .ok_or_else(|| bad("day out of range"))?;
            data[self.last].usage.push(DailyUsage {
                day,
                event_type,
                count: clamp_u32(be_i64(count)),
                distinct_users: clamp_u32(be_i64(users)),
                value_sum: f64::from_bits(be_i64(value_sum) as u64),
            });
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

/// Reads the roll-ups of days `(lo, t]` of every account, in two halves at `split`.
pub(super) async fn read_usage(
    pool: &PgPool,
    (lo, t): (NaiveDate, NaiveDate),
    split: Option<&str>,
    accounts: &[AccountMeta],
    index: &HashMap<String, usize>,
    data: &mut [AccountData],
    events: &mut Interner,
) -> Result<(), DbErr> {
    let base = format!(
        "SELECT u.account_id, u.day, u.event_type, u.count, u.distinct_users, u.value_sum \
         FROM usage_daily u WHERE u.day > '{}' AND u.day <= '{}'",
        lo.format("%Y-%m-%d"),
        t.format("%Y-%m-%d")
    );
    let selects: Vec<String> = match split {
        None => vec![base],
        Some(mid) => ["<", ">="]
            .iter()
            .map(|op| {
                format!(
                    "{base} AND u.account_id COLLATE \"C\" {op} {}",
                    literal(mid)
                )
            })
            .collect(),
    };
    let mut streams = futures::stream::SelectAll::new();
    for (k, select) in selects.iter().enumerate() {
        let stream = pool
            .copy_out_raw(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
            .await
            .map_err(query_err)?;
        streams.push(stream.map(move |c| c.map(|c| (k, c))));
    }
    let mut parsers: Vec<Parser> = selects.iter().map(|_| Parser::new()).collect();
    while let Some(item) = streams.next().await {
        let (k, chunk) = item.map_err(query_err)?;
        parsers[k].feed(&chunk, accounts, index, data, events)?;
    }
    if parsers.iter().any(|p| !p.done || !p.buf.is_empty()) {
        return Err(bad("stream ended early"));
    }
    Ok(())
}
