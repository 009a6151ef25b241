//! Writes and reads of the ingestion service: accounts, contacts, usage events with their
//! daily roll-ups, interactions, pulses, subscriptions, event types, custom metrics (and
//! their definitions), custom score fields and webhook signals.
//!
//! Every write takes one batch, already validated by the caller, and runs in one
//! transaction: either all of it is stored or nothing is. Bulk paths use multi-row
//! `INSERT ... ON CONFLICT` statements (SQLite >= 3.35 and PostgreSQL both support
//! `RETURNING`), chunked under each engine's limit on bound parameters, because the
//! ORM's row-by-row path is an order of magnitude slower for events.
//!
//! Lock order (PostgreSQL): every transaction touches tables in the same order
//! (accounts, then the kind's own tables, then roll-ups, then event types) and the rows
//! of each statement sorted by key, so concurrent batches wait for each other but never
//! deadlock. SQLite writes start with `BEGIN IMMEDIATE` and so are serialised.
//!
//! Encodings shared with the other services (they read these tables through
//! [`crate::entity`]):
//! - `accounts.status`: `active`, `trial`, `churned` or `unassigned`;
//! - `accounts.attributes`: a JSON object `{name: {"string": s} | {"number": x} |
//!   {"bool": b} | {"timestamp": "RFC 3339"}}`;
//! - `contacts.role`: `user`, `decision_maker`, `champion`;
//! - `interactions.channel`: `email`, `call`, `meeting`, `ticket`, `chat`;
//!   `direction`: `inbound`, `outbound`; `reply_known` says whether `replied` is known;
//! - `custom_metric_definitions.direction`: `higher_is_better`, `lower_is_better`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DbBackend, DbErr, QueryResult, RuntimeErr, Statement, Value,
    sqlx,
};

use crate::{Store, StoreError, push_groups};

/// Most parameters bound in one SQLite statement (SQLITE_MAX_VARIABLE_NUMBER is 32,766
/// since 3.32).
const SQLITE_MAX_PARAMS: usize = 32_766;
/// Most parameters bound in one PostgreSQL statement (the wire protocol's u16 count).
const POSTGRES_MAX_PARAMS: usize = 65_535;

/// Status of an account created implicitly by data naming an unknown account id.
pub const STATUS_UNASSIGNED: &str = "unassigned";
/// Status of a new account upserted without a status.
pub const STATUS_ACTIVE: &str = "active";

// ---------------------------------------------------------------------------------------
// Plain data in and out (no proto, no ORM types)
// ---------------------------------------------------------------------------------------

/// One usage event, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// The account.
    pub account_id: String,
    /// Idempotency key within the account.
    pub event_id: String,
    /// The user (contact id) who did it, if known.
    pub user_id: Option<String>,
    /// Kind of event.
    pub event_type: String,
    /// When it happened (its UTC day is the roll-up day).
    pub occurred_at: DateTime<Utc>,
    /// Optional value, summed in the roll-up.
    pub value: Option<f64>,
}

/// What a batch of events did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventsWritten {
    /// Events new to the store.
    pub accepted: u32,
    /// Events already stored, or repeated within the batch.
    pub duplicates: u32,
}

/// Counts of an upsert batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Keys that did not exist before.
    pub created: u32,
    /// Items whose key existed already (or appeared earlier in the batch).
    pub updated: u32,
}

/// A typed account attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A string.
    String(String),
    /// A finite number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time.
    Timestamp(DateTime<Utc>),
}

impl AttributeValue {
    /// The JSON form stored in `accounts.attributes`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::String(s) => serde_json::json!({ "string": s }),
            Self::Number(x) => serde_json::json!({ "number": x }),
            Self::Bool(b) => serde_json::json!({ "bool": b }),
            Self::Timestamp(t) => serde_json::json!({
                "timestamp": t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            }),
        }
    }

    /// Reads the stored JSON form; `None` for anything else.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let o = v.as_object()?;
        if let Some(s) = o.get("string").and_then(|s| s.as_str()) {
            return Some(Self::String(s.to_string()));
        }
        if let Some(x) = o.get("number").and_then(|x| x.as_f64()) {
            return Some(Self::Number(x));
        }
        if let Some(b) = o.get("bool").and_then(|b| b.as_bool()) {
            return Some(Self::Bool(b));
        }
        let t = o.get("timestamp").and_then(|t| t.as_str())?;
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| Self::Timestamp(t.with_timezone(&Utc)))
    }
}

/// An account to create or update.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountUpsert {
    /// The account id.
    pub id: String,
    /// New display name; `None` keeps the stored one.
    pub name: Option<String>,
    /// Attributes to set (`Some`) or remove (`None`).
    pub attributes: BTreeMap<String, Option<AttributeValue>>,
    /// New creation time; `None` keeps the stored one (now for a new account).
    pub created_at: Option<DateTime<Utc>>,
    /// New status; `None` keeps the stored one (`active` for a new account).
    pub status: Option<String>,
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRecord {
    /// The account id.
    pub id: String,
    /// Display name (empty when never given).
    pub name: String,
    /// Typed attributes.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Assigned health profile id, if any.
    pub profile_id: Option<String>,
    /// Status string (see the module doc).
    pub status: String,
    /// When it became a customer.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A contact to create or update.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactUpsert {
    /// The account.
    pub account_id: String,
    /// The contact id.
    pub id: String,
    /// Role; `None` keeps the stored one (`user` for a new contact).
    pub role: Option<String>,
    /// E-mail domain; `None` keeps the stored one.
    pub email_domain: Option<String>,
    /// Display name; `None` keeps the stored one.
    pub name: Option<String>,
}

/// An interaction to store (replacing one with the same key).
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionRow {
    /// The account.
    pub account_id: String,
    /// The interaction id.
    pub id: String,
    /// Contact involved, if known.
    pub contact_id: Option<String>,
    /// Channel string.
    pub channel: String,
    /// Direction string.
    pub direction: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Whether the other side replied, when known.
    pub replied: Option<bool>,
    /// Sentiment in [-1, 1], if any.
    pub sentiment: Option<f64>,
}

/// A CSM pulse.
#[derive(Clone, Debug, PartialEq)]
pub struct PulseRow {
    /// The account.
    pub account_id: String,
    /// Who rated.
    pub author: String,
    /// 1..5.
    pub value: i32,
    /// Free text.
    pub note: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A subscription (contract line).
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionRow {
    /// The account.
    pub account_id: String,
    /// The subscription id.
    pub id: String,
    /// Product.
    pub product: String,
    /// Start (inclusive).
    pub starts_at: DateTime<Utc>,
    /// End (exclusive), if any.
    pub ends_at: Option<DateTime<Utc>>,
    /// Monthly recurring revenue.
    pub mrr: f64,
    /// Quantity, if any.
    pub quantity: Option<f64>,
    /// Units, if any.
    pub units: Option<String>,
    /// Billing period in months.
    pub bill_period_months: i32,
    /// Add-on flag.
    pub is_addon: bool,
    /// Discount fraction.
    pub discount: f64,
}

/// An event type declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct EventTypeUpsert {
    /// Name as in events.
    pub name: String,
    /// Display name; `None` keeps the stored one.
    pub display_name: Option<String>,
    /// Key event type.
    pub is_key: bool,
    /// Description; `None` keeps the stored one.
    pub description: Option<String>,
}

/// An event type as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct EventTypeRecord {
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Key event type.
    pub is_key: bool,
    /// Description.
    pub description: String,
    /// Declared through UpsertEventTypes (rather than only seen in events).
    pub declared: bool,
    /// Events of this type stored so far.
    pub event_count: i64,
}

/// A custom metric definition.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDefinitionRow {
    /// Metric name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// `higher_is_better` or `lower_is_better`.
    pub direction: String,
}

/// A sample of a custom metric.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomMetricRow {
    /// The account.
    pub account_id: String,
    /// Metric name.
    pub name: String,
    /// The value.
    pub value: f64,
    /// When observed.
    pub at: DateTime<Utc>,
}

/// A custom score field value.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreFieldRow {
    /// The account.
    pub account_id: String,
    /// Field name.
    pub field: String,
    /// 1..5.
    pub value: i32,
    /// When set.
    pub at: DateTime<Utc>,
}

/// A webhook signal.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalRow {
    /// The account.
    pub account_id: String,
    /// Signal name.
    pub name: String,
    /// 1..5.
    pub value: i32,
    /// When it fired.
    pub at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// SQL helpers
// ---------------------------------------------------------------------------------------

fn max_params(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => POSTGRES_MAX_PARAMS,
        _ => SQLITE_MAX_PARAMS,
    }
}

/// Column list `a,b,c`.
fn col_list(cols: &[&str]) -> String {
    cols.join(",")
}

/// Runs `INSERT INTO table (cols) VALUES ... <tail>` over `rows` (each `cols.len()`
/// values), chunked under the parameter limit. When `returning` is set the statement's
/// rows are collected, else the affected-row count is summed into the result's length
/// being empty.
async fn insert_rows<C: ConnectionTrait>(
    c: &C,
    table: &str,
    cols: &[&str],
    rows: Vec<Vec<Value>>,
    tail: &str,
    returning: bool,
) -> Result<Vec<QueryResult>, DbErr> {
    let backend = c.get_database_backend();
    let width = cols.len();
    let per_chunk = (max_params(backend) / width).max(1);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", col_list(cols));
        let mut next = 0;
        push_groups(&mut sql, backend, chunk.len(), width, &mut next);
        sql.push(' ');
        sql.push_str(tail);
        let values: Vec<Value> = chunk.into_iter().flatten().collect();
        let stmt = Statement::from_sql_and_values(backend, sql, values);
        if returning {
            out.extend(c.query_all_raw(stmt).await?);
        } else {
            c.execute_raw(stmt).await?;
        }
    }
    Ok(out)
}

/// How many of `keys` (tuples over `key_cols`) exist in `table`.
async fn count_existing<C: ConnectionTrait>(
    c: &C,
    table: &str,
    key_cols: &[&str],
    keys: Vec<Vec<Value>>,
) -> Result<u32, DbErr> {
    let backend = c.get_database_backend();
    let width = key_cols.len();
    let per_chunk = (max_params(backend) / width).max(1);
    let mut total = 0i64;
    let mut keys = keys.into_iter().peekable();
    while keys.peek().is_some() {
        let chunk: Vec<Vec<Value>> = keys.by_ref().take(per_chunk).collect();
        let mut sql = if width == 1 {
            format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE {} IN ",
                key_cols[0]
            )
        } else {
            format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE ({}) IN (VALUES ",
                col_list(key_cols)
            )
        };
        let mut next = 0;
        if width == 1 {
            // `key IN (p, p, ...)`: one group of one placeholder per key.
            push_groups(&mut sql, backend, 1, chunk.len(), &mut next);
        } else {
            push_groups(&mut sql, backend, chunk.len(), width, &mut next);
            sql.push(')');
        }
        let values: Vec<Value> = chunk.into_iter().flatten().collect();
        let row = c
            .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        if let Some(row) = row {
            total += row.try_get::<i64>("", "n")?;
        }
    }
    Ok(u32::try_from(total).unwrap_or(u32::MAX))
}

/// Sorted, distinct.
fn distinct_sorted<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let set: BTreeSet<&str> = ids.into_iter().collect();
    set.into_iter().collect()
}

/// Creates every account of `ids` that does not exist yet, with status `unassigned`
/// (DESIGN §5: data for an unknown account is kept, not dropped).
pub(crate) async fn ensure_accounts<C: ConnectionTrait>(c: &C, ids: &[&str]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let empty = serde_json::json!({});
    let rows = ids
        .iter()
        .map(|id| {
            vec![
                Value::from(id.to_string()),
                Value::from(String::new()),
                Value::from(empty.clone()),
                Value::from(false),
                Value::from(STATUS_UNASSIGNED),
                Value::from(now),
                Value::from(now),
            ]
        })
        .collect();
    insert_rows(
        c,
        "accounts",
        &[
            "id",
            "name",
            "attributes",
            "pinned",
            "status",
            "created_at",
            "updated_at",
        ],
        rows,
        "ON CONFLICT (id) DO NOTHING",
        false,
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// Key of a daily roll-up row.
type DayKey<'a> = (&'a str, NaiveDate, &'a str);

/// Writes a batch of events and their daily roll-ups in one transaction.
///
/// Idempotent on (account_id, event_id): an event already stored, or repeated within the
/// batch, is a duplicate and changes nothing. The roll-up (count, distinct users, value
/// sum per account, UTC day and event type) and the event type's running count move
/// exactly once per new event, in the same transaction as the event itself.
///
/// This is the hot path of streaming ingestion, so it talks to the sqlx pool under
/// sea-orm directly (same tables, same column encodings as the ORM's): on PostgreSQL
/// the batch is one statement (see the `pg` module), the same prepared statement
/// whatever the batch size; on SQLite multi-row `VALUES` lists, chunked under the
/// parameter limit. The ingestion service writes through [`EventWriter`], which on a
/// SQLite file uses a rusqlite connection of its own instead (same rows).
pub async fn write_events(store: &Store, events: &[NewEvent]) -> Result<EventsWritten, StoreError> {
    if events.is_empty() {
        return Ok(EventsWritten::default());
    }
    let (sorted, in_batch_repeats) = distinct_in_key_order(events);
    let accounts = distinct_sorted(sorted.iter().map(|e| e.account_id.as_str()));

    let accepted = match store.backend() {
        DbBackend::Postgres => {
            pg::write_events(
                store.conn().get_postgres_connection_pool(),
                &accounts,
                &sorted,
            )
            .await
        }
        _ => {
            lite::write_events(
                store.conn().get_sqlite_connection_pool(),
                &accounts,
                &sorted,
            )
            .await
        }
    }
    .map_err(sqlx_err)?;

    Ok(EventsWritten {
        accepted: accepted as u32,
        duplicates: (sorted.len() - accepted + in_batch_repeats) as u32,
    })
}

/// The first occurrence of each (account_id, event_id) of `events`, in key order, and
/// the count of later repeats (duplicates within the batch). Sorted rows make concurrent
/// PostgreSQL batches lock index entries in one order, and SQLite B-tree inserts local.
fn distinct_in_key_order(events: &[NewEvent]) -> (Vec<&NewEvent>, usize) {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&events[a], &events[b]);
        (x.account_id.as_str(), x.event_id.as_str(), a).cmp(&(
            y.account_id.as_str(),
            y.event_id.as_str(),
            b,
        ))
    });
    order.dedup_by(|b, a| {
        events[*a].account_id == events[*b].account_id && events[*a].event_id == events[*b].event_id
    });
    let in_batch_repeats = events.len() - order.len();
    (
        order.iter().map(|&i| &events[i]).collect(),
        in_batch_repeats,
    )
}

/// A driver error as the ORM would have reported it.
fn sqlx_err(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))),
    }
}

/// The events of `sorted` whose key is in `returned` (the keys the insert stored).
fn new_events<'e>(
    sorted: &[&'e NewEvent],
    returned: &HashSet<(String, String)>,
) -> Vec<&'e NewEvent> {
    sorted
        .iter()
        .filter(|e| returned.contains(&(e.account_id.clone(), e.event_id.clone())))
        .copied()
        .collect()
}

/// The roll-up rows that a set of new events adds to.
struct Rollups<'a> {
    /// (count, value sum, distinct users added) per `usage_daily` row.
    days: BTreeMap<DayKey<'a>, (i64, f64, i64)>,
    /// `usage_daily_users` rows (account, day, type, user), sorted.
    users: BTreeSet<(&'a str, NaiveDate, &'a str, &'a str)>,
    /// New events per event type.
    per_type: BTreeMap<&'a str, i64>,
}

impl<'a> Rollups<'a> {
    fn of(new: &[&'a NewEvent]) -> Self {
        let mut r = Self {
            days: BTreeMap::new(),
            users: BTreeSet::new(),
            per_type: BTreeMap::new(),
        };
        for e in new {
            let day = e.occurred_at.date_naive();
            let entry = r
                .days
                .entry((e.account_id.as_str(), day, e.event_type.as_str()))
                .or_default();
            entry.0 += 1;
            entry.1 += e.value.unwrap_or(0.0);
            if let Some(u) = &e.user_id {
                r.users.insert((
                    e.account_id.as_str(),
                    day,
                    e.event_type.as_str(),
                    u.as_str(),
                ));
            }
            *r.per_type.entry(e.event_type.as_str()).or_default() += 1;
        }
        r
    }

    /// Counts the distinct users new to their day: every row of `users` when all were
    /// inserted, else the (account, day, type) of each inserted row in `added`.
    fn count_new_users(&mut self, all: bool, added: &[(String, NaiveDate, String)]) {
        if all {
            for (a, d, t, _) in &self.users {
                if let Some(v) = self.days.get_mut(&(*a, *d, *t)) {
                    v.2 += 1;
                }
            }
        } else {
            let mut counts: HashMap<(&str, NaiveDate, &str), i64> = HashMap::new();
            for (a, d, t) in added {
                *counts.entry((a.as_str(), *d, t.as_str())).or_default() += 1;
            }
            for (k, v) in self.days.iter_mut() {
                if let Some(n) = counts.get(k) {
                    v.2 += n;
                }
            }
        }
    }
}

/// The events path on PostgreSQL: the whole batch is one statement, run in its own
/// (implicit) transaction, so a batch is one round trip.
///
/// The events are bound as one array per column and `UNNEST`ed; data-modifying `WITH`
/// parts then insert the implicit accounts, the events (`ON CONFLICT DO NOTHING
/// RETURNING` the new ones), the distinct users of the new events (`RETURNING` those new
/// to their day), and the `usage_daily` and `event_types` roll-ups aggregated in SQL
/// from the new events alone: the roll-ups move exactly once per new event, whatever
/// other transactions store at the same time (an `ON CONFLICT` on a key another
/// transaction has just inserted waits for its commit). The statement is prepared once
/// per connection and does not depend on the batch size.
///
/// The event types seen are created if new (`ON CONFLICT DO NOTHING`: an existing row
/// is neither changed nor locked), and their counts go to `event_type_counts`, in the
/// slot of the connection (`pg_backend_pid() % 64`), not to `event_types.event_count`:
/// every batch adds to the same few event types, and one row per type made concurrent
/// batches wait for each other's commit (see the migration `m20261204_000009`).
///
/// Lock order: each part reads the complete output of the one before it (`(SELECT
/// count(*) FROM ...)`), so the tables are written in the order accounts, events,
/// `usage_daily_users`, `usage_daily`, `event_types`, `event_type_counts`, each in key
/// order (`ORDER BY`), in every batch: concurrent batches wait for each other but do
/// not deadlock.
///
/// Before (one `UNNEST` statement per table in an explicit transaction) a batch took 7
/// round trips (8 when partly new: the events insert ran again with `RETURNING`), and
/// the roll-ups were aggregated in the service and sent back.
mod pg {
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
}

/// The events path on SQLite: multi-row `VALUES` lists, chunked under the parameter
/// limit, in a `BEGIN IMMEDIATE` transaction.
mod lite {
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
}

/// The writer of event batches of one store: [`write_events`], except on a SQLite file,
/// where batches go through one rusqlite connection of its own (see [`file_writer`]).
///
/// Cheap to clone (shared state inside); the ingestion service keeps one per store.
#[derive(Clone, Debug)]
pub struct EventWriter {
    store: Store,
    /// The rusqlite writer of a SQLite file, opened on first use; `None` on PostgreSQL
    /// and in-memory SQLite (whose database is private to the sqlx pool).
    file: Arc<tokio::sync::OnceCell<Option<Arc<std::sync::Mutex<file_writer::Writer>>>>>,
}

impl EventWriter {
    /// A writer of events into `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            file: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Writes a batch of events with the semantics of [`write_events`] (one transaction,
    /// idempotent on (account_id, event_id), roll-ups moved exactly once per new event).
    pub async fn write(&self, events: Vec<NewEvent>) -> Result<EventsWritten, StoreError> {
        if events.is_empty() {
            return Ok(EventsWritten::default());
        }
        let file = self
            .file
            .get_or_try_init(|| async {
                if self.store.backend() != DbBackend::Sqlite {
                    return Ok::<_, DbErr>(None);
                }
                let Some(path) = crate::inputs::sqlite_database_file(self.store.conn()).await?
                else {
                    return Ok(None);
                };
                let w = tokio::task::spawn_blocking(move || file_writer::Writer::open(&path))
                    .await
                    .map_err(|e| DbErr::Custom(format!("events writer: open task failed: {e}")))?
                    .map_err(file_writer::err)?;
                Ok(Some(Arc::new(std::sync::Mutex::new(w))))
            })
            .await?;
        let Some(file) = file.clone() else {
            return write_events(&self.store, &events).await;
        };
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier batch leaves no open transaction behind (its
            // `Transaction` rolled back when dropped), so the connection stays usable.
            let mut w = file.lock().unwrap_or_else(|p| p.into_inner());
            let (sorted, in_batch_repeats) = distinct_in_key_order(&events);
            let accounts = distinct_sorted(sorted.iter().map(|e| e.account_id.as_str()));
            let accepted = w
                .write(&accounts, &sorted, Utc::now())
                .map_err(file_writer::err)?;
            Ok(EventsWritten {
                accepted: accepted as u32,
                duplicates: (sorted.len() - accepted + in_batch_repeats) as u32,
            })
        })
        .await
        .map_err(|e| DbErr::Custom(format!("events writer: task failed: {e}")))?
    }
}

/// `t` as sqlx-sqlite stores a `DateTime<Utc>` (`to_rfc3339_opts(AutoSi, false)`:
/// `2026-01-10T09:00:00+00:00`, with 3, 6 or 9 fraction digits when the nanoseconds
/// need them), appended to `buf` without chrono's formatting machinery.
fn push_sqlite_time(buf: &mut String, t: &DateTime<Utc>) {
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
fn push_sqlite_day(buf: &mut String, d: NaiveDate) {
    use chrono::Datelike;
    if (0..=9999).contains(&d.year()) {
        push_sqlite_day_parts(buf, d.year() as u32, d.month(), d.day());
    } else {
        buf.push_str(&d.format("%F").to_string());
    }
}

fn push_sqlite_day_parts(buf: &mut String, year: u32, month: u32, day: u32) {
    push_digits(buf, year, 4);
    buf.push('-');
    push_digits(buf, month, 2);
    buf.push('-');
    push_digits(buf, day, 2);
}

/// `n` in decimal, zero-padded to `width` digits (`n < 10^width`).
fn push_digits(buf: &mut String, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        buf.push(char::from(b'0' + ((n / div) % 10) as u8));
        div /= 10;
    }
}

/// The events path on a SQLite file: one rusqlite connection, owned by the
/// [`EventWriter`], runs each batch as one `BEGIN IMMEDIATE` transaction of single-row
/// prepared statements stepped on the calling (blocking) thread.
///
/// Through sqlx, a batch was 7 round trips to the connection's worker thread (begin, 5
/// statements, commit), each statement a 1,000-row `VALUES` list whose values are copied
/// into sqlx's argument buffer first, and a batch that was partly new ran twice (the
/// second time with `RETURNING`). Here every statement is prepared once per batch and
/// stepped per row: the change count of each events insert says whether that event is
/// new, and of each `usage_daily_users` insert whether its user is new to the day, so
/// nothing is read back and nothing runs twice.
///
/// Same tables and the same stored values as the sqlx path (text timestamps in sqlx's
/// format, `YYYY-MM-DD` days, booleans as 0/1, JSON as text); it links the same SQLite
/// library (libsqlite3-sys 0.37, as sqlx-sqlite). SQLite has one writer per database:
/// other writers (the sqlx pool) wait for this connection's transaction through the busy
/// timeout, as they wait for each other.
pub(crate) mod file_writer {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

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
}

// ---------------------------------------------------------------------------------------
// Accounts and contacts
// ---------------------------------------------------------------------------------------

const ACCOUNT_COLS: &[&str] = &[
    "id",
    "name",
    "attributes",
    "profile_id",
    "pinned",
    "status",
    "created_at",
    "updated_at",
];

fn account_from_row(r: &QueryResult) -> Result<AccountRecord, DbErr> {
    let attrs: serde_json::Value = r.try_get("", "attributes")?;
    let attributes = attrs
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| AttributeValue::from_json(v).map(|v| (k.clone(), v)))
                .collect()
        })
        .unwrap_or_default();
    Ok(AccountRecord {
        id: r.try_get("", "id")?,
        name: r.try_get("", "name")?,
        attributes,
        profile_id: r.try_get("", "profile_id")?,
        status: r.try_get("", "status")?,
        created_at: r.try_get("", "created_at")?,
        updated_at: r.try_get("", "updated_at")?,
    })
}

/// Placeholder number `i` (1-based) for `backend`.
fn ph(backend: DbBackend, i: usize) -> String {
    if backend == DbBackend::Postgres {
        format!("${i}")
    } else {
        "?".to_string()
    }
}

/// `IN (...)` over `n` placeholders starting after `*next`.
fn in_list(backend: DbBackend, n: usize, next: &mut usize) -> String {
    let mut s = String::from("(");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        *next += 1;
        s.push_str(&ph(backend, *next));
    }
    s.push(')');
    s
}

async fn load_accounts<C: ConnectionTrait>(
    c: &C,
    ids: &[&str],
) -> Result<HashMap<String, AccountRecord>, DbErr> {
    let backend = c.get_database_backend();
    let mut out = HashMap::new();
    for chunk in ids.chunks(max_params(backend).min(10_000)) {
        let mut next = 0;
        let sql = format!(
            "SELECT {} FROM accounts WHERE id IN {}",
            col_list(ACCOUNT_COLS),
            in_list(backend, chunk.len(), &mut next)
        );
        let values: Vec<Value> = chunk.iter().map(|s| Value::from(s.to_string())).collect();
        for r in c
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            let a = account_from_row(&r)?;
            out.insert(a.id.clone(), a);
        }
    }
    Ok(out)
}

/// Creates or updates accounts (ids unique within the batch, checked by the caller).
///
/// Attributes are merged key by key into the stored ones (a `None` value removes the
/// key), or replace them when `replace_attributes`. The profile assignment is kept.
pub async fn upsert_accounts(
    store: &Store,
    accounts: &[AccountUpsert],
    replace_attributes: bool,
) -> Result<Upserted, StoreError> {
    let tx = store.begin_raw().await?;
    let mut sorted: Vec<&AccountUpsert> = accounts.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = sorted.iter().map(|a| a.id.as_str()).collect();
    let existing = load_accounts(&tx, &ids).await?;
    let now = Utc::now();
    let mut counts = Upserted::default();
    let mut rows = Vec::with_capacity(sorted.len());
    for a in sorted {
        let old = existing.get(&a.id);
        if old.is_some() {
            counts.updated += 1;
        } else {
            counts.created += 1;
        }
        let mut attrs: BTreeMap<String, AttributeValue> = match (old, replace_attributes) {
            (Some(o), false) => o.attributes.clone(),
            _ => BTreeMap::new(),
        };
        for (k, v) in &a.attributes {
            match v {
                Some(v) => {
                    attrs.insert(k.clone(), v.clone());
                }
                None => {
                    attrs.remove(k);
                }
            }
        }
        let json: serde_json::Map<String, serde_json::Value> = attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let name = a
            .name
            .clone()
            .or_else(|| old.map(|o| o.name.clone()))
            .unwrap_or_default();
        let status = a
            .status
            .clone()
            .or_else(|| {
                // An implicitly created account becomes a real one when it is upserted.
                old.map(|o| o.status.clone())
                    .filter(|s| s != STATUS_UNASSIGNED)
            })
            .unwrap_or_else(|| STATUS_ACTIVE.to_string());
        let created_at = a
            .created_at
            .or_else(|| old.map(|o| o.created_at))
            .unwrap_or(now);
        rows.push(vec![
            Value::from(a.id.clone()),
            Value::from(name),
            Value::from(serde_json::Value::Object(json)),
            Value::from(old.and_then(|o| o.profile_id.clone())),
            Value::from(false),
            Value::from(status),
            Value::from(created_at),
            Value::from(now),
        ]);
    }
    insert_rows(
        &tx,
        "accounts",
        ACCOUNT_COLS,
        rows,
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, attributes = excluded.attributes, \
         status = excluded.status, created_at = excluded.created_at, updated_at = excluded.updated_at",
        false,
    )
    .await?;
    tx.commit().await?;
    Ok(counts)
}

/// One account, or `None`.
pub async fn get_account(store: &Store, id: &str) -> Result<Option<AccountRecord>, StoreError> {
    let mut m = load_accounts(store.conn(), &[id]).await?;
    Ok(m.remove(id))
}

/// Filters of [`list_accounts`].
#[derive(Clone, Debug, Default)]
pub struct AccountFilter {
    /// Only accounts of this profile id.
    pub profile_id: Option<String>,
    /// Only accounts with this status.
    pub status: Option<String>,
}

/// A page of accounts in byte order of id after `after`, at most `limit`, and the total
/// matching the filter.
pub async fn list_accounts(
    store: &Store,
    filter: &AccountFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<AccountRecord>, u64), StoreError> {
    let c = store.conn();
    let backend = c.get_database_backend();
    let mut next = 0;
    let mut conds = Vec::new();
    let mut values = Vec::new();
    if let Some(p) = &filter.profile_id {
        next += 1;
        conds.push(format!("profile_id = {}", ph(backend, next)));
        values.push(Value::from(p.clone()));
    }
    if let Some(s) = &filter.status {
        next += 1;
        conds.push(format!("status = {}", ph(backend, next)));
        values.push(Value::from(s.clone()));
    }
    let where_filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let total_sql = format!("SELECT COUNT(*) AS n FROM accounts{where_filter}");
    let total = c
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            total_sql,
            values.clone(),
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    // Byte order on PostgreSQL too, whatever the database's collation.
    let collate = if backend == DbBackend::Postgres {
        " COLLATE \"C\""
    } else {
        ""
    };
    if let Some(a) = after {
        next += 1;
        conds.push(format!("id{collate} > {}", ph(backend, next)));
        values.push(Value::from(a.to_string()));
    }
    let where_all = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM accounts{where_all} ORDER BY id{collate} LIMIT {limit}",
        col_list(ACCOUNT_COLS)
    );
    let rows = c
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let list = rows
        .iter()
        .map(account_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((list, total.max(0) as u64))
}

/// Creates or updates contacts; later items win over earlier ones with the same key.
pub async fn upsert_contacts(
    store: &Store,
    contacts: &[ContactUpsert],
) -> Result<Upserted, StoreError> {
    let tx = store.begin_raw().await?;
    let backend = tx.get_database_backend();
    let accounts = distinct_sorted(contacts.iter().map(|c| c.account_id.as_str()));
    ensure_accounts(&tx, &accounts).await?;
    // Last occurrence of each key wins; key order for the lock order.
    let mut latest: BTreeMap<(&str, &str), &ContactUpsert> = BTreeMap::new();
    for c in contacts {
        latest.insert((c.account_id.as_str(), c.id.as_str()), c);
    }
    // Stored rows of those keys, to keep fields the batch leaves unset.
    let mut stored: HashMap<(String, String), (String, String, String)> = HashMap::new();
    let keys: Vec<(&str, &str)> = latest.keys().copied().collect();
    for chunk in keys.chunks(max_params(backend) / 2) {
        let mut sql = String::from(
            "SELECT account_id, id, role, email_domain, name FROM contacts WHERE (account_id, id) IN (VALUES ",
        );
        let mut next = 0;
        push_groups(&mut sql, backend, chunk.len(), 2, &mut next);
        sql.push(')');
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|(a, i)| [Value::from(a.to_string()), Value::from(i.to_string())])
            .collect();
        for r in tx
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            stored.insert(
                (r.try_get("", "account_id")?, r.try_get("", "id")?),
                (
                    r.try_get("", "role")?,
                    r.try_get("", "email_domain")?,
                    r.try_get("", "name")?,
                ),
            );
        }
    }
    let now = Utc::now();
    let created = latest
        .keys()
        .filter(|(a, i)| !stored.contains_key(&(a.to_string(), i.to_string())))
        .count() as u32;
    let rows = latest
        .values()
        .map(|c| {
            let old = stored.get(&(c.account_id.clone(), c.id.clone()));
            let role = c
                .role
                .clone()
                .or_else(|| old.map(|o| o.0.clone()))
                .unwrap_or_else(|| "user".to_string());
            let domain = c
                .email_domain
                .clone()
                .or_else(|| old.map(|o| o.1.clone()))
                .unwrap_or_default();
            let name = c
                .name
                .clone()
                .or_else(|| old.map(|o| o.2.clone()))
                .unwrap_or_default();
            vec![
                Value::from(c.account_id.clone()),
                Value::from(c.id.clone()),
                Value::from(name),
                Value::from(role),
                Value::from(domain),
                Value::from(now),
            ]
        })
        .collect();
    insert_rows(
        &tx,
        "contacts",
        &[
            "account_id",
            "id",
            "name",
            "role",
            "email_domain",
            "updated_at",
        ],
        rows,
        "ON CONFLICT (account_id, id) DO UPDATE SET name = excluded.name, role = excluded.role, \
         email_domain = excluded.email_domain, updated_at = excluded.updated_at",
        false,
    )
    .await?;
    tx.commit().await?;
    Ok(Upserted {
        created,
        updated: contacts.len() as u32 - created,
    })
}

// ---------------------------------------------------------------------------------------
// Keyed replace-on-conflict kinds
// ---------------------------------------------------------------------------------------

/// Upserts rows keyed by the first `key_width` columns: later rows of the batch win,
/// `created` counts keys new to the store.
async fn replace_keyed(
    store: &Store,
    table: &str,
    cols: &[&str],
    key_width: usize,
    accounts: Vec<&str>,
    rows: Vec<Vec<Value>>,
    update_tail: &str,
) -> Result<Upserted, StoreError> {
    let n = rows.len() as u32;
    // Last occurrence per key; ordered by key (values' debug form is a stable total
    // order for the value kinds used as keys: strings and timestamps).
    let mut latest: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in rows {
        let key = format!("{:?}", &r[..key_width]);
        latest.insert(key, r);
    }
    let rows: Vec<Vec<Value>> = latest.into_values().collect();
    let keys: Vec<Vec<Value>> = rows.iter().map(|r| r[..key_width].to_vec()).collect();
    let tx = store.begin_raw().await?;
    let accounts = distinct_sorted(accounts);
    ensure_accounts(&tx, &accounts).await?;
    let existing = count_existing(&tx, table, &cols[..key_width], keys).await?;
    let distinct = rows.len() as u32;
    let conflict = format!(
        "ON CONFLICT ({}) DO UPDATE SET {update_tail}",
        col_list(&cols[..key_width])
    );
    insert_rows(&tx, table, cols, rows, &conflict, false).await?;
    tx.commit().await?;
    let created = distinct - existing.min(distinct);
    Ok(Upserted {
        created,
        updated: n - created,
    })
}

/// Stores interactions, replacing those with the same (account, id).
pub async fn record_interactions(
    store: &Store,
    items: &[InteractionRow],
) -> Result<Upserted, StoreError> {
    let rows = items
        .iter()
        .map(|i| {
            vec![
                Value::from(i.account_id.clone()),
                Value::from(i.id.clone()),
                Value::from(i.contact_id.clone()),
                Value::from(i.channel.clone()),
                Value::from(i.direction.clone()),
                Value::from(i.occurred_at),
                Value::from(i.replied.unwrap_or(false)),
                Value::from(i.replied.is_some()),
                Value::from(i.sentiment),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "interactions",
        &[
            "account_id",
            "id",
            "contact_id",
            "channel",
            "direction",
            "occurred_at",
            "replied",
            "reply_known",
            "sentiment",
        ],
        2,
        items.iter().map(|i| i.account_id.as_str()).collect(),
        rows,
        "contact_id = excluded.contact_id, channel = excluded.channel, \
         direction = excluded.direction, occurred_at = excluded.occurred_at, \
         replied = excluded.replied, reply_known = excluded.reply_known, \
         sentiment = excluded.sentiment, text = NULL",
    )
    .await
}

/// Stores CSM pulses keyed by (account, author, at), replacing value and note.
pub async fn record_pulses(store: &Store, items: &[PulseRow]) -> Result<Upserted, StoreError> {
    let rows = items
        .iter()
        .map(|p| {
            vec![
                Value::from(p.account_id.clone()),
                Value::from(p.author.clone()),
                Value::from(p.at),
                Value::from(p.value),
                Value::from(p.note.clone()),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "pulses",
        &["account_id", "author", "at", "value", "note"],
        3,
        items.iter().map(|i| i.account_id.as_str()).collect(),
        rows,
        "value = excluded.value, note = excluded.note",
    )
    .await
}

/// Stores subscriptions keyed by (account, id), replacing every field.
pub async fn upsert_subscriptions(
    store: &Store,
    items: &[SubscriptionRow],
) -> Result<Upserted, StoreError> {
    let rows = items
        .iter()
        .map(|s| {
            vec![
                Value::from(s.account_id.clone()),
                Value::from(s.id.clone()),
                Value::from(s.product.clone()),
                Value::from(s.starts_at),
                Value::from(s.ends_at),
                Value::from(s.mrr),
                Value::from(s.quantity),
                Value::from(s.units.clone()),
                Value::from(s.bill_period_months),
                Value::from(s.is_addon),
                Value::from(s.discount),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "subscriptions",
        &[
            "account_id",
            "id",
            "product",
            "starts_at",
            "ends_at",
            "mrr",
            "quantity",
            "units",
            "bill_period_months",
            "is_addon",
            "discount",
        ],
        2,
        items.iter().map(|i| i.account_id.as_str()).collect(),
        rows,
        "product = excluded.product, starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
         mrr = excluded.mrr, quantity = excluded.quantity, units = excluded.units, \
         bill_period_months = excluded.bill_period_months, is_addon = excluded.is_addon, \
         discount = excluded.discount",
    )
    .await
}

/// Stores custom metric samples keyed by (account, name, at), replacing the value.
pub async fn record_custom_metrics(
    store: &Store,
    items: &[CustomMetricRow],
) -> Result<Upserted, StoreError> {
    let rows = items
        .iter()
        .map(|m| {
            vec![
                Value::from(m.account_id.clone()),
                Value::from(m.name.clone()),
                Value::from(m.at),
                Value::from(m.value),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "custom_metrics",
        &["account_id", "name", "at", "value"],
        3,
        items.iter().map(|i| i.account_id.as_str()).collect(),
        rows,
        "value = excluded.value",
    )
    .await
}

/// Stores webhook signals keyed by (account, name, at), replacing the value.
pub async fn record_webhook_signals(
    store: &Store,
    items: &[SignalRow],
) -> Result<Upserted, StoreError> {
    let rows = items
        .iter()
        .map(|m| {
            vec![
                Value::from(m.account_id.clone()),
                Value::from(m.name.clone()),
                Value::from(m.at),
                Value::from(m.value),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "webhook_signals",
        &["account_id", "name", "at", "value"],
        3,
        items.iter().map(|i| i.account_id.as_str()).collect(),
        rows,
        "value = excluded.value",
    )
    .await
}

/// Declares custom metrics keyed by name, replacing every field.
pub async fn upsert_metric_definitions(
    store: &Store,
    items: &[MetricDefinitionRow],
) -> Result<Upserted, StoreError> {
    let now = Utc::now();
    let rows = items
        .iter()
        .map(|d| {
            vec![
                Value::from(d.name.clone()),
                Value::from(d.display_name.clone()),
                Value::from(d.description.clone()),
                Value::from(d.direction.clone()),
                Value::from(now),
                Value::from(now),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "custom_metric_definitions",
        &[
            "name",
            "display_name",
            "description",
            "direction",
            "created_at",
            "updated_at",
        ],
        1,
        Vec::new(),
        rows,
        "display_name = excluded.display_name, description = excluded.description, \
         direction = excluded.direction, updated_at = excluded.updated_at",
    )
    .await
}

/// Declares event types keyed by name; empty display name or description keep the
/// stored ones.
pub async fn upsert_event_types(
    store: &Store,
    items: &[EventTypeUpsert],
) -> Result<Upserted, StoreError> {
    let now = Utc::now();
    let rows = items
        .iter()
        .map(|t| {
            vec![
                Value::from(t.name.clone()),
                Value::from(t.display_name.clone().unwrap_or_default()),
                Value::from(t.is_key),
                Value::from(t.description.clone().unwrap_or_default()),
                Value::from(true),
                Value::from(0i64),
                Value::from(now),
                Value::from(now),
            ]
        })
        .collect();
    replace_keyed(
        store,
        "event_types",
        &[
            "name",
            "display_name",
            "is_key",
            "description",
            "declared",
            "event_count",
            "created_at",
            "updated_at",
        ],
        1,
        Vec::new(),
        rows,
        "display_name = CASE WHEN excluded.display_name = '' THEN event_types.display_name \
         ELSE excluded.display_name END, is_key = excluded.is_key, \
         description = CASE WHEN excluded.description = '' THEN event_types.description \
         ELSE excluded.description END, declared = excluded.declared, \
         updated_at = excluded.updated_at",
    )
    .await
}

/// The events stored so far of the `event_types` row in scope: its own count (SQLite
/// writers, and every row stored before `event_type_counts` existed) plus its slots in
/// `event_type_counts` (PostgreSQL writers). A bigint on both back ends.
pub const EVENT_COUNT: &str = "(event_types.event_count + COALESCE((SELECT CAST(sum(c.event_count) \
     AS bigint) FROM event_type_counts c WHERE c.name = event_types.name), 0))";

/// A page of event types by name (byte order) after `after`.
pub async fn list_event_types(
    store: &Store,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<EventTypeRecord>, StoreError> {
    let c = store.conn();
    let backend = c.get_database_backend();
    let collate = if backend == DbBackend::Postgres {
        " COLLATE \"C\""
    } else {
        ""
    };
    let (cond, values) = match after {
        Some(a) => (
            format!(" WHERE name{collate} > {}", ph(backend, 1)),
            vec![Value::from(a.to_string())],
        ),
        None => (String::new(), Vec::new()),
    };
    let sql = format!(
        "SELECT name, display_name, is_key, description, declared, {EVENT_COUNT} AS event_count \
         FROM event_types{cond} ORDER BY name{collate} LIMIT {limit}"
    );
    let rows = c
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(EventTypeRecord {
                name: r.try_get("", "name")?,
                display_name: r.try_get("", "display_name")?,
                is_key: r.try_get("", "is_key")?,
                description: r.try_get("", "description")?,
                declared: r.try_get("", "declared")?,
                event_count: r.try_get("", "event_count")?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()
        .map_err(StoreError::from)
}

/// Sets custom score fields: every value goes to the history; the current value of a
/// (account, field) is the one with the latest time.
pub async fn set_custom_score_fields(
    store: &Store,
    items: &[ScoreFieldRow],
) -> Result<u32, StoreError> {
    let tx = store.begin_raw().await?;
    let mut sorted: Vec<&ScoreFieldRow> = items.iter().collect();
    sorted.sort_by(|a, b| (&a.account_id, &a.field).cmp(&(&b.account_id, &b.field)));
    let accounts = distinct_sorted(sorted.iter().map(|i| i.account_id.as_str()));
    ensure_accounts(&tx, &accounts).await?;
    let hist = sorted
        .iter()
        .map(|f| {
            vec![
                Value::from(f.account_id.clone()),
                Value::from(f.field.clone()),
                Value::from(f.at),
                Value::from(f.value),
            ]
        })
        .collect();
    insert_rows(
        &tx,
        "custom_score_field_history",
        &["account_id", "field", "at", "value"],
        hist,
        "ON CONFLICT (account_id, field, at) DO UPDATE SET value = excluded.value",
        false,
    )
    .await?;
    let cur = sorted
        .iter()
        .map(|f| {
            vec![
                Value::from(f.account_id.clone()),
                Value::from(f.field.clone()),
                Value::from(f.value),
                Value::from(f.at),
            ]
        })
        .collect();
    insert_rows(
        &tx,
        "custom_score_fields",
        &["account_id", "field", "value", "updated_at"],
        cur,
        "ON CONFLICT (account_id, field) DO UPDATE SET value = excluded.value, \
         updated_at = excluded.updated_at \
         WHERE excluded.updated_at >= custom_score_fields.updated_at",
        false,
    )
    .await?;
    tx.commit().await?;
    Ok(items.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Backend, backends, fresh_store};
    use sea_orm::TryGetableMany;

    /// A migrated store on a new SQLite file (the rusqlite writer needs a file).
    async fn file_store(tag: &str) -> (Store, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "vitals-store-events-{tag}-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        remove_db(&path);
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        (store, path)
    }

    fn remove_db(path: &std::path::Path) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }

    /// Events over 3 accounts, 3 types, 3 days, 5 users (and none), with every form of
    /// fraction sqlx writes (none, milli, micro, nano) and values present or not.
    fn sample_event(i: u32) -> NewEvent {
        let nanos = match i % 4 {
            0 => 0,
            1 => 250_000_000,
            2 => 123_456_000,
            _ => 987_654_321,
        };
        NewEvent {
            account_id: format!("acct-{}", i % 3),
            event_id: format!("e{i}"),
            user_id: (i % 6 != 5).then(|| format!("u{}", i % 5)),
            event_type: format!("type{}", i % 3 + (i / 7) % 2),
            occurred_at: DateTime::from_timestamp(
                1_767_225_600 + i64::from(i % 3) * 86_400 + i64::from(i) * 61,
                nanos,
            )
            .unwrap(),
            value: (i % 4 != 3).then(|| f64::from(i) * 0.5),
        }
    }

    /// Batches that exercise every case: repeats within a batch, a partly new batch
    /// (new events on days and users already seen, and new ones), a batch sent again,
    /// and a single event.
    fn sample_batches() -> Vec<Vec<NewEvent>> {
        let mut b1: Vec<NewEvent> = (0..40).map(sample_event).collect();
        b1.push(sample_event(3));
        b1.push(sample_event(17));
        b1.reverse();
        let b2: Vec<NewEvent> = (20..70).map(sample_event).collect();
        let b3 = b1.clone();
        let b4 = vec![sample_event(1000)];
        vec![b1, b2, b3, b4]
    }

    /// (accepted, duplicates) of each sample batch: 42 with 2 repeats, 50 of which 20
    /// stored already, all 42 again, 1 new.
    const SAMPLE_COUNTS: [(u32, u32); 4] = [(40, 2), (30, 20), (0, 42), (1, 0)];

    type EventRow = (
        String,
        String,
        Option<String>,
        String,
        DateTime<Utc>,
        Option<f64>,
    );
    type DailyRow = (String, NaiveDate, String, i64, i64, f64);

    /// Every row the events path writes, read back typed and sorted.
    #[derive(Debug, PartialEq)]
    struct Dump {
        accounts: Vec<(String, String, String, bool, serde_json::Value)>,
        events: Vec<EventRow>,
        daily: Vec<DailyRow>,
        users: Vec<(String, NaiveDate, String, String)>,
        types: Vec<(String, String, bool, String, bool, i64)>,
    }

    /// The rows of `sql`, each decoded column by column into `T` (a value or a tuple).
    async fn rows<T: TryGetableMany>(store: &Store, sql: &str) -> Vec<T> {
        let c = store.conn();
        c.query_all_raw(Statement::from_string(c.get_database_backend(), sql))
            .await
            .expect(sql)
            .iter()
            .map(|r| r.try_get_many_by_index().expect(sql))
            .collect()
    }

    async fn dump(store: &Store) -> Dump {
        let sql = format!(
            "SELECT name, display_name, is_key, description, declared, {EVENT_COUNT} \
             FROM event_types"
        );
        let mut d = Dump {
            accounts: rows(
                store,
                "SELECT id, name, status, pinned, attributes FROM accounts",
            )
            .await,
            events: rows(
                store,
                "SELECT account_id, event_id, user_id, event_type, occurred_at, value FROM events",
            )
            .await,
            daily: rows(
                store,
                "SELECT account_id, day, event_type, count, distinct_users, value_sum \
                 FROM usage_daily",
            )
            .await,
            users: rows(
                store,
                "SELECT account_id, day, event_type, user_id FROM usage_daily_users",
            )
            .await,
            types: rows(store, &sql).await,
        };
        d.accounts.sort_by(|a, b| a.0.cmp(&b.0));
        d.events.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        d.daily
            .sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
        d.users.sort();
        d.types.sort_by(|a, b| a.0.cmp(&b.0));
        d
    }

    /// The roll-ups and counters recomputed from the stored events, in the dump's order.
    fn expected_rollups(events: &[EventRow]) -> (Vec<DailyRow>, Vec<(String, i64)>) {
        type Day = (i64, BTreeSet<String>, f64);
        let mut days: BTreeMap<(String, NaiveDate, String), Day> = BTreeMap::new();
        let mut types: BTreeMap<String, i64> = BTreeMap::new();
        for (a, _, u, t, at, v) in events {
            let e = days
                .entry((a.clone(), at.date_naive(), t.clone()))
                .or_default();
            e.0 += 1;
            e.1.extend(u.clone());
            e.2 += v.unwrap_or(0.0);
            *types.entry(t.clone()).or_default() += 1;
        }
        let daily = days
            .into_iter()
            .map(|((a, d, t), (n, users, sum))| (a, d, t, n, users.len() as i64, sum))
            .collect();
        (daily, types.into_iter().collect())
    }

    /// Checks that the dump's roll-ups and event-type counts are those recomputed from its
    /// events.
    fn assert_rollups_of_events(d: &Dump) {
        let (daily, types) = expected_rollups(&d.events);
        assert_eq!(d.daily, daily);
        let counted: Vec<(String, i64)> = d.types.iter().map(|t| (t.0.clone(), t.5)).collect();
        assert_eq!(counted, types);
    }

    /// Checks the dump against the sample batches: the distinct events, each once, and
    /// roll-ups equal to those recomputed from them.
    ///
    /// `micros`: the back end keeps microseconds (PostgreSQL's `timestamptz`), so the
    /// expected times lose their nanoseconds (truncated, as sqlx encodes them).
    fn check_sample_dump(d: &Dump, micros: bool) {
        let mut want: Vec<EventRow> = sample_batches()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e.account_id,
                    e.event_id,
                    e.user_id,
                    e.event_type,
                    if micros {
                        DateTime::from_timestamp_micros(e.occurred_at.timestamp_micros()).unwrap()
                    } else {
                        e.occurred_at
                    },
                    e.value,
                )
            })
            .collect();
        want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        want.dedup_by(|a, b| (&a.0, &a.1) == (&b.0, &b.1));
        assert_eq!(d.events, want);
        assert_rollups_of_events(d);
        let users: BTreeSet<_> = d
            .events
            .iter()
            .filter_map(|(a, _, u, t, at, _)| {
                u.clone()
                    .map(|u| (a.clone(), at.date_naive(), t.clone(), u))
            })
            .collect();
        assert_eq!(d.users, users.into_iter().collect::<Vec<_>>());
        assert_eq!(
            d.accounts
                .iter()
                .map(|a| (a.0.as_str(), a.2.as_str(), a.3))
                .collect::<Vec<_>>(),
            vec![
                ("acct-0", STATUS_UNASSIGNED, false),
                ("acct-1", STATUS_UNASSIGNED, false),
                ("acct-2", STATUS_UNASSIGNED, false),
            ]
        );
    }

    /// Raw SQLite values (`quote()`: storage class and text) of the rows the events
    /// path writes, timestamps of the accounts and event types left out (they are "now").
    async fn raw_sqlite(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT quote(id) || quote(name) || quote(attributes) || quote(pinned) || \
             quote(status) || typeof(created_at) || typeof(updated_at) FROM accounts ORDER BY id",
            "SELECT quote(account_id) || quote(event_id) || quote(user_id) || \
             quote(event_type) || quote(occurred_at) || quote(value) FROM events \
             ORDER BY account_id, event_id",
            "SELECT quote(account_id) || quote(day) || quote(event_type) || quote(count) || \
             quote(distinct_users) || quote(value_sum) FROM usage_daily \
             ORDER BY account_id, day, event_type",
            "SELECT quote(account_id) || quote(day) || quote(event_type) || quote(user_id) \
             FROM usage_daily_users ORDER BY 1",
            "SELECT quote(name) || quote(display_name) || quote(is_key) || quote(description) \
             || quote(declared) || quote(event_count) || typeof(created_at) FROM event_types \
             ORDER BY name",
        ] {
            out.extend(rows::<String>(store, sql).await);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_file_writer_stores_what_the_sqlx_path_stores() {
        let (direct, p1) = file_store("direct").await;
        let (reference, p2) = file_store("sqlx").await;
        let writer = EventWriter::new(direct.clone());
        for (i, b) in sample_batches().into_iter().enumerate() {
            let w = writer.write(b.clone()).await.unwrap();
            let r = write_events(&reference, &b).await.unwrap();
            assert_eq!((w.accepted, w.duplicates), SAMPLE_COUNTS[i], "batch {i}");
            assert_eq!(w, r, "batch {i}");
        }
        // The rusqlite writer did the writes (a file database).
        assert!(matches!(writer.file.get(), Some(Some(_))));
        let d = dump(&direct).await;
        check_sample_dump(&d, false);
        assert_eq!(d, dump(&reference).await);
        let raw = raw_sqlite(&direct).await;
        assert!(raw.len() > 100, "{}", raw.len());
        assert_eq!(raw, raw_sqlite(&reference).await);
        drop(writer);
        direct.close().await.unwrap();
        reference.close().await.unwrap();
        remove_db(&p1);
        remove_db(&p2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn event_writer_on_every_backend_counts_once() {
        for backend in backends() {
            let store = fresh_store(backend).await.unwrap();
            // In-memory SQLite: the writer falls back to the sqlx path.
            let writer = EventWriter::new(store.clone());
            for (i, b) in sample_batches().into_iter().enumerate() {
                let w = writer.write(b).await.unwrap();
                assert_eq!(
                    (w.accepted, w.duplicates),
                    SAMPLE_COUNTS[i],
                    "{backend:?} {i}"
                );
            }
            if backend == Backend::Sqlite {
                assert!(matches!(writer.file.get(), Some(None)));
            }
            check_sample_dump(&dump(&store).await, backend == Backend::Postgres);
            store.close().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_file_writer_failing_batch_writes_nothing() {
        let (store, path) = file_store("fail").await;
        let writer = EventWriter::new(store.clone());
        // The roll-up statement fails after the events and the account were inserted.
        store
            .conn()
            .execute_unprepared("DROP TABLE usage_daily")
            .await
            .unwrap();
        let err = writer.write(sample_batches().remove(0)).await.unwrap_err();
        assert!(err.to_string().contains("usage_daily"), "{err}");
        for table in ["accounts", "events", "usage_daily_users", "event_types"] {
            let n = rows::<i64>(&store, &format!("SELECT COUNT(*) FROM {table}")).await[0];
            assert_eq!(n, 0, "{table}");
        }
        // The connection is usable again once the table is back.
        use sea_orm_migration::MigratorTrait;
        crate::migration::Migrator::fresh(store.conn())
            .await
            .unwrap();
        let w = writer.write(sample_batches().remove(0)).await.unwrap();
        assert_eq!((w.accepted, w.duplicates), SAMPLE_COUNTS[0]);
        drop(writer);
        store.close().await.unwrap();
        remove_db(&path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_file_writer_and_sqlx_writers_at_once_count_once() {
        let (store, path) = file_store("concurrent").await;
        let writer = EventWriter::new(store.clone());
        // Overlapping batches from the rusqlite writer and from the pool at once: each
        // event counted once whichever connection stored it.
        let mut tasks = Vec::new();
        for s in 0..4u32 {
            let (writer, store) = (writer.clone(), store.clone());
            tasks.push(tokio::spawn(async move {
                let mut totals = (0u32, 0u32);
                for b in 0..5u32 {
                    let batch: Vec<NewEvent> = (0..60)
                        .map(|i| sample_event((i + b * 60 + s * 75) % 400))
                        .collect();
                    let w = if s % 2 == 0 {
                        writer.write(batch).await.unwrap()
                    } else {
                        write_events(&store, &batch).await.unwrap()
                    };
                    totals.0 += w.accepted;
                    totals.1 += w.duplicates;
                }
                totals
            }));
        }
        let (mut accepted, mut dups) = (0, 0);
        for t in tasks {
            let (a, d) = t.await.unwrap();
            accepted += a;
            dups += d;
        }
        let d = dump(&store).await;
        assert_eq!(accepted as usize, d.events.len());
        assert_eq!(accepted + dups, 4 * 5 * 60);
        assert_rollups_of_events(&d);
        drop(writer);
        store.close().await.unwrap();
        remove_db(&path);
    }

    #[test]
    fn sqlite_time_text_is_sqlx_text() {
        let mut buf = String::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000u64 {
            // A spread of instants from 1970 to 9999 with every kind of fraction.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 253_402_300_799) as i64;
            let nanos = match i % 4 {
                0 => 0,
                1 => (x % 1000) as u32 * 1_000_000,
                2 => (x % 1_000_000) as u32 * 1_000,
                _ => (x % 1_000_000_000) as u32,
            };
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            buf.clear();
            push_sqlite_time(&mut buf, &t);
            assert_eq!(buf, t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false));
            buf.clear();
            push_sqlite_day(&mut buf, t.date_naive());
            assert_eq!(buf, t.date_naive().format("%F").to_string());
        }
        // Outside 0..=9999 chrono's own form.
        let far = NaiveDate::from_ymd_opt(12345, 6, 7).unwrap();
        buf.clear();
        push_sqlite_day(&mut buf, far);
        assert_eq!(buf, far.format("%F").to_string());
    }

    #[test]
    fn attribute_json_round_trips() {
        let t = DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        for v in [
            AttributeValue::String("premium".into()),
            AttributeValue::Number(50.0),
            AttributeValue::Bool(true),
            AttributeValue::Timestamp(t),
        ] {
            assert_eq!(AttributeValue::from_json(&v.to_json()), Some(v));
        }
    }

    #[test]
    fn placeholders_per_backend() {
        let mut s = String::new();
        let mut next = 0;
        push_groups(&mut s, DbBackend::Postgres, 2, 2, &mut next);
        assert_eq!(s, "($1,$2),($3,$4)");
        let mut s = String::new();
        push_groups(&mut s, DbBackend::Sqlite, 2, 2, &mut next);
        assert_eq!(s, "(?,?),(?,?)");
    }
}
