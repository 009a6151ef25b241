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
//! Which path runs when (one module per backend):
//! - events on PostgreSQL: [`postgres`], per batch one transaction: a binary `COPY`
//!   into the connection's temporary staging table, then one data-modifying `WITH`
//!   statement from it (every batch, whatever its size);
//! - events on a SQLite file, through [`EventWriter`]: [`sqlite_file`], one rusqlite
//!   connection of the writer's own, prepared single-row statements per batch;
//! - events on in-memory SQLite (and [`write_events`] called directly on SQLite):
//!   [`sqlite`], multi-row statements on the sqlx pool;
//! - every other kind (accounts, contacts, interactions, ...): [`records`], the same
//!   multi-row statements on both engines, placeholders numbered on PostgreSQL.
//!
//! Encodings shared with the other services (they read these tables through
//! [`crate::entity`]; the texts are the enums of [`crate::values`]):
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
pub const STATUS_UNASSIGNED: &str = crate::values::AccountStatus::Unassigned.as_str();
/// Status of a new account upserted without a status.
pub const STATUS_ACTIVE: &str = crate::values::AccountStatus::Active.as_str();

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
    /// New parent: `None` keeps the stored one (none for a new account), `Some(None)`
    /// clears it, `Some(Some(id))` sets it (checked by [`upsert_accounts`]).
    pub parent: Option<Option<String>>,
}

/// Why [`upsert_accounts`] refused a batch's parent: nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentError {
    /// Position of the account in the batch as given.
    pub index: usize,
    /// What is wrong.
    pub kind: ParentErrorKind,
}

/// What is wrong with an account's parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParentErrorKind {
    /// The parent neither exists nor is created in the same batch.
    Unknown(String),
    /// The account would be its own ancestor: the chain of parents from it, ending with
    /// it again.
    Cycle(Vec<String>),
}

impl std::fmt::Display for ParentErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(p) => write!(
                f,
                "parent account {p:?} does not exist and is not in this batch"
            ),
            Self::Cycle(chain) => write!(f, "makes a cycle of parents: {}", chain.join(" -> ")),
        }
    }
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
    /// The parent account's id, if any.
    pub parent_id: Option<String>,
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
/// (docs/ingestion.md: data for an unknown account is kept, not dropped).
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
            postgres::write_events(
                store.conn().get_postgres_connection_pool(),
                &accounts,
                &sorted,
            )
            .await
        }
        _ => {
            sqlite::write_events(
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

mod postgres;
mod retention;
mod sqlite;

pub use retention::*;

/// The writer of event batches of one store: [`write_events`], except on a SQLite file,
/// where batches go through one rusqlite connection of its own (see [`file_writer`]).
///
/// Cheap to clone (shared state inside); the ingestion service keeps one per store.
#[derive(Clone, Debug)]
pub struct EventWriter {
    store: Store,
    /// The rusqlite writer of a SQLite file, opened on first use; `None` on PostgreSQL
    /// and in-memory SQLite (whose database is private to the sqlx pool).
    file: Arc<tokio::sync::OnceCell<Option<Arc<std::sync::Mutex<sqlite_file::Writer>>>>>,
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
                let w = tokio::task::spawn_blocking(move || sqlite_file::Writer::open(&path))
                    .await
                    .map_err(|e| DbErr::Custom(format!("events writer: open task failed: {e}")))?
                    .map_err(sqlite_file::err)?;
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
                .map_err(sqlite_file::err)?;
            Ok(EventsWritten {
                accepted: accepted as u32,
                duplicates: (sorted.len() - accepted + in_batch_repeats) as u32,
            })
        })
        .await
        .map_err(|e| DbErr::Custom(format!("events writer: task failed: {e}")))?
    }
}

mod records;
mod sqlite_file;

pub use records::*;

#[cfg(test)]
mod tests;
