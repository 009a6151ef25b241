//! The synthetic portfolio at scale (`scale_bench`, issue 22): up to millions of accounts
//! written straight into a PostgreSQL database by binary `COPY`, deterministic for a
//! seed.
//!
//! What is written, per account (its own random stream, seeded from the seed and the
//! account's number, so that any slice of accounts is generated alone and streams run in
//! parallel):
//! - `accounts`: the `plan` / `seats` attributes of [`super::PLANS`] (no profile: the
//!   bench assigns them with ReassignAccounts), created 30-89 days before the first day
//!   (the learner's observation dates start one KPI window after the first contract, so
//!   older contracts would add observation dates without usage);
//! - `subscriptions`: one line, MRR by plan, ended on the churn day for churned accounts;
//! - `outcomes`: a `churned` outcome on the churn day (status `churned`) for about 9 % of
//!   the accounts, more likely the less active the account (so that there is something to
//!   learn), on a day uniform over the span after its first two weeks;
//! - `usage_daily`: the daily roll-ups that scoring and learning read, for `days` days
//!   ending on `last_day`: an activity rate uniform in 5-65 % of the days (a third of it
//!   in the 28 days before a churn, none after), `login` on every active day, `report` on
//!   40 % and `share` on 20 % of them, 1 to 5 events per row (mean 2) from 1 to `seats`
//!   users. About 50 rows and 100 events per account over 90 days: 1,000,000 accounts
//!   give about 50 M roll-up rows standing for about 100 M events.
//!
//! Not written: the raw `events`, their `event_keys` and `usage_daily_users` (the
//! per-user rows that keep `distinct_users` exact when later events of the same day
//! arrive). Nothing the bench measures reads them (scoring and learning read only the
//! roll-ups), and writing 100 M raw events would take longer than everything measured;
//! their size per event is measured separately (docs/deploy.md), and the bench's ingest
//! step writes raw events for a day with no generated roll-up (the day after `last_day`).

use std::time::{Duration, Instant};

use chrono::{Datelike, Days, NaiveDate, Utc};
use vitals_store::sea_orm::sqlx::{
    self, AssertSqlSafe,
    postgres::{PgPool, PgPoolCopyExt},
};

use super::{Error, PLANS, Rng, account_id};

/// What to generate.
#[derive(Clone, Debug)]
pub struct ScaleSpec {
    /// Accounts `0..accounts` (ids from [`account_id`]).
    pub accounts: u32,
    /// Days of usage, ending on `last_day`.
    pub days: u32,
    /// The last day with usage.
    pub last_day: NaiveDate,
    /// The seed of every account's random stream.
    pub seed: u64,
    /// `COPY` streams (connections) writing `usage_daily` at once.
    pub streams: u32,
}

/// What [`generate`] wrote, and how long each part took.
#[derive(Debug, Default)]
pub struct ScaleGenerated {
    pub accounts: u64,
    pub churned: u64,
    pub subscriptions: u64,
    pub outcomes: u64,
    pub usage_rows: u64,
    /// The events the roll-ups stand for (sum of their counts).
    pub events: u64,
    /// Accounts, subscriptions and outcomes.
    pub accounts_time: Duration,
    /// `usage_daily`.
    pub usage_time: Duration,
    /// `ANALYZE` of the tables written.
    pub analyze_time: Duration,
}

/// Days before the first day of the span at which no churn happens (accounts churn
/// after the span's first two weeks).
const NO_CHURN_DAYS: u32 = 14;
/// Days before its churn in which an account's activity falls to a third.
const DECLINE_DAYS: u32 = 28;
/// Bytes sent per `CopyData` message.
const SEND_BYTES: usize = 1 << 20;

/// One account's facts, drawn first from its random stream.
struct Facts {
    plan: usize,
    seats: u64,
    /// Share of active days.
    rate: f64,
    /// Events per roll-up row: 1 + below(1 + 2 * volume).
    volume: u64,
    /// Day index (0 = first day) of its churn.
    churn: Option<u32>,
    /// Days before the first day it was created.
    created_before: u64,
    /// Share of its plan's MRR (0.5..1.5).
    mrr_share: f64,
    /// The stream, positioned after these draws (the usage continues from it).
    rng: Rng,
}

impl Facts {
    fn of(seed: u64, i: u32, days: u32) -> Self {
        // Each account's own stream: the seed moved by the account's number (splitmix64
        // mixes neighbouring states apart).
        let mut rng = Rng::new(seed ^ u64::from(i).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let u = rng.f64();
        let mut acc = 0.0;
        let plan = PLANS
            .iter()
            .position(|p| {
                acc += p.1;
                u < acc
            })
            .unwrap_or(0);
        let seats = match plan {
            0 => 1 + rng.below(10),
            1 => 10 + rng.below(90),
            _ => 100 + rng.below(900),
        };
        let x = rng.f64();
        let rate = 0.05 + 0.6 * x;
        // Churn within the span: 2 % + 20 % x (1 - x)^2, about 8.7 % on average.
        let churns = rng.f64() < 0.02 + 0.2 * (1.0 - x) * (1.0 - x);
        let churn_day =
            NO_CHURN_DAYS + rng.below(u64::from(days.saturating_sub(NO_CHURN_DAYS))) as u32;
        let churn = (churns && days > NO_CHURN_DAYS).then_some(churn_day);
        Self {
            plan,
            seats,
            rate,
            volume: rng.below(3),
            churn,
            created_before: 30 + rng.below(60),
            mrr_share: 0.5 + rng.f64(),
            rng,
        }
    }
}

/// PostgreSQL's binary `COPY` format: the signature and an empty header, then per row
/// the field count and each field as its length and big-endian value (-1 for NULL), then
/// the trailer.
struct Copy {
    buf: Vec<u8>,
}

/// 2000-01-01, PostgreSQL's epoch for dates and timestamps.
fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default()
}

impl Copy {
    fn new() -> Self {
        let mut buf = Vec::with_capacity(SEND_BYTES + (64 << 10));
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        Self { buf }
    }
    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(b);
    }
    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.bytes(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes(&v.to_be_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.bytes(&v.to_bits().to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.bytes(&[u8::from(v)]);
    }
    /// A `date`: days since 2000-01-01.
    fn date(&mut self, d: NaiveDate) {
        self.i32((d - pg_epoch()).num_days() as i32);
    }
    /// A `timestamptz` at `hour`:00 UTC of `d`: microseconds since 2000-01-01.
    fn day_time(&mut self, d: NaiveDate, hour: i64) {
        self.i64(((d - pg_epoch()).num_days() * 24 + hour) * 3_600_000_000);
    }
    /// A `jsonb`: format version 1, then the JSON text.
    fn jsonb(&mut self, json: &str) {
        self.buf
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }
    fn full(&self) -> bool {
        self.buf.len() >= SEND_BYTES
    }
}

/// One `COPY ... FROM STDIN (FORMAT binary)` on its own connection: rows appended to a
/// [`Copy`] are sent in pieces of about [`SEND_BYTES`].
struct CopyIn {
    copy: sqlx::postgres::PgCopyIn<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    rows: Copy,
}

impl CopyIn {
    async fn start(pool: &PgPool, table_columns: &str) -> Result<Self, Error> {
        let copy = pool
            .copy_in_raw(&format!("COPY {table_columns} FROM STDIN (FORMAT binary)"))
            .await?;
        Ok(Self {
            copy,
            rows: Copy::new(),
        })
    }
    async fn flush_if_full(&mut self) -> Result<(), Error> {
        if self.rows.full() {
            self.copy.send(self.rows.buf.as_slice()).await?;
            self.rows.buf.clear();
        }
        Ok(())
    }
    async fn finish(mut self) -> Result<u64, Error> {
        self.rows.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.copy.send(self.rows.buf.as_slice()).await?;
        Ok(self.copy.finish().await?)
    }
}

/// Writes the portfolio of `spec` into the (migrated, empty) PostgreSQL database of
/// `pool`, then `ANALYZE`s the tables written.
pub async fn generate(pool: &PgPool, spec: &ScaleSpec) -> Result<ScaleGenerated, Error> {
    let mut out = ScaleGenerated::default();
    let first = spec
        .last_day
        .checked_sub_days(Days::new(u64::from(spec.days.saturating_sub(1))))
        .ok_or("days: the span starts before the calendar does")?;
    let started = Instant::now();
    let now_us = Utc::now().timestamp_micros() - 946_684_800_000_000;

    // Accounts, subscriptions and outcomes: three COPYs at once, one connection each.
    let mut accounts = CopyIn::start(
        pool,
        "accounts (id, name, attributes, profile_id, pinned, status, created_at, \
         updated_at, parent_id)",
    )
    .await?;
    let mut subs = CopyIn::start(
        pool,
        "subscriptions (account_id, id, product, starts_at, ends_at, mrr, quantity, units, \
         bill_period_months, is_addon, discount)",
    )
    .await?;
    let mut outcomes =
        CopyIn::start(pool, "outcomes (account_id, kind, at, recorded_at, note)").await?;
    for i in 0..spec.accounts {
        let f = Facts::of(spec.seed, i, spec.days);
        let id = account_id(i);
        let plan = PLANS[f.plan];
        let created = first - Days::new(f.created_before);
        let churn_day = f.churn.map(|d| first + Days::new(u64::from(d)));
        let a = &mut accounts.rows;
        a.row(9);
        a.text(&id);
        a.text(&format!("Account {i}"));
        a.jsonb(&format!(
            "{{\"plan\": \"{}\", \"seats\": {}}}",
            plan.0, f.seats
        ));
        a.null();
        a.bool(false);
        a.text(if churn_day.is_some() {
            "churned"
        } else {
            "active"
        });
        a.day_time(created, 0);
        a.i64(now_us);
        a.null();
        let s = &mut subs.rows;
        s.row(11);
        s.text(&id);
        s.text("main");
        s.text("platform");
        s.day_time(created, 0);
        match churn_day {
            Some(d) => s.day_time(d, 12),
            None => s.null(),
        }
        s.f64(plan.2 * f.mrr_share);
        s.f64(f.seats as f64);
        s.text("seats");
        s.i32(12);
        s.bool(false);
        s.f64(0.0);
        out.accounts += 1;
        out.subscriptions += 1;
        if let Some(d) = churn_day {
            let o = &mut outcomes.rows;
            o.row(5);
            o.text(&id);
            o.text("churned");
            o.day_time(d, 12);
            o.day_time(d, 13);
            o.text("");
            out.outcomes += 1;
            out.churned += 1;
        }
        accounts.flush_if_full().await?;
        subs.flush_if_full().await?;
        outcomes.flush_if_full().await?;
    }
    accounts.finish().await?;
    subs.finish().await?;
    outcomes.finish().await?;
    out.accounts_time = started.elapsed();

    // Usage roll-ups: `streams` COPYs at once over consecutive slices of the accounts,
    // each in key order (account, day, event type) as the primary key wants them.
    let started = Instant::now();
    let streams = spec.streams.clamp(1, 64);
    let per = spec.accounts.div_ceil(streams);
    let mut tasks = Vec::new();
    for k in 0..streams {
        let (pool, spec) = (pool.clone(), spec.clone());
        let range = (k * per).min(spec.accounts)..((k + 1) * per).min(spec.accounts);
        tasks.push(tokio::spawn(async move {
            usage_slice(&pool, &spec, first, range).await
        }));
    }
    for t in tasks {
        let (rows, events) = t.await??;
        out.usage_rows += rows;
        out.events += events;
    }
    out.usage_time = started.elapsed();

    let started = Instant::now();
    for table in ["accounts", "subscriptions", "outcomes", "usage_daily"] {
        sqlx::query(AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    out.analyze_time = started.elapsed();
    Ok(out)
}

/// Event types of the roll-ups (in key order) and the share of active days each is on.
const EVENT_TYPES: [(&str, f64); 3] = [("login", 1.0), ("report", 0.4), ("share", 0.2)];

/// The `usage_daily` rows of the accounts of `range`; returns (rows, events).
async fn usage_slice(
    pool: &PgPool,
    spec: &ScaleSpec,
    first: NaiveDate,
    range: std::ops::Range<u32>,
) -> Result<(u64, u64), Error> {
    let mut copy = CopyIn::start(
        pool,
        "usage_daily (account_id, day, event_type, count, distinct_users, value_sum)",
    )
    .await?;
    let (mut rows, mut events) = (0u64, 0u64);
    // Days as PostgreSQL dates, computed once.
    let days: Vec<NaiveDate> = (0..spec.days)
        .map(|d| first + Days::new(u64::from(d)))
        .collect();
    debug_assert!(days.iter().all(|d| d.year() >= 2000));
    for i in range {
        let Facts {
            seats,
            rate,
            volume,
            churn,
            mut rng,
            ..
        } = Facts::of(spec.seed, i, spec.days);
        let id = account_id(i);
        let active_until = churn.unwrap_or(spec.days);
        for (d, day) in days.iter().enumerate().take(active_until as usize) {
            let d = d as u32;
            let declining = churn.is_some_and(|c| d + DECLINE_DAYS >= c);
            let p = if declining { rate / 3.0 } else { rate };
            if rng.f64() >= p {
                continue;
            }
            for (event, share) in EVENT_TYPES {
                if share < 1.0 && rng.f64() >= share {
                    continue;
                }
                let count = 1 + rng.below(1 + 2 * volume);
                let users = 1 + rng.below(count.min(seats));
                let r = &mut copy.rows;
                r.row(6);
                r.text(&id);
                r.date(*day);
                r.text(event);
                r.i64(count as i64);
                r.i64(users as i64);
                r.f64(0.0);
                rows += 1;
                events += count;
            }
        }
        copy.flush_if_full().await?;
    }
    copy.finish().await?;
    Ok((rows, events))
}

/// The on-disk size of each table the scale bench fills (heap, indexes, TOAST; a
/// partitioned table's partitions summed) and its rows: (table, bytes, rows).
pub async fn table_sizes(pool: &PgPool) -> Result<Vec<(String, i64, i64)>, Error> {
    use sqlx::Row;
    let mut out = Vec::new();
    for table in [
        "accounts",
        "subscriptions",
        "outcomes",
        "usage_daily",
        "usage_daily_users",
        "events",
        "event_keys",
        "score_snapshots",
        "score_latest",
    ] {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(pool)
            .await?;
        if exists.is_none() {
            continue;
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT GREATEST(pg_total_relation_size('{table}'::regclass), (SELECT \
             COALESCE(SUM(pg_total_relation_size(relid)), 0) FROM \
             pg_partition_tree('{table}'::regclass)))::bigint AS bytes, \
             (SELECT COUNT(*) FROM {table})::bigint AS n"
        )))
        .fetch_one(pool)
        .await?;
        out.push((table.to_string(), row.try_get("bytes")?, row.try_get("n")?));
    }
    Ok(out)
}
