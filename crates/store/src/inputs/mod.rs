//! The KPI inputs of scoring-core, read from the store in a few set-based queries.
//!
//! [`load_inputs`] reads, for every account in scope (all scored accounts, one profile,
//! or a list of accounts), everything [`vitals_scoring_core::compute_kpis`] needs to
//! compute the KPIs as of a day T, and groups it per account in memory. It never reads
//! raw events (only the `usage_daily` roll-ups) and never runs a query per account: about
//! a dozen statements whatever the population, each joined with `accounts` for the scope.
//!
//! Look-back (what is read, per account, for `window_days` W and `history_windows` H):
//! - `usage_daily`: the days in `(T - (H + 1) W, T]`, plus, per event type, one marker
//!   row on the last active day before that span (count 1, no users, no value) so that
//!   `days_since_last_activity` sees activity older than the span; the marker lies
//!   outside every window, so no count, user or time KPI sees it;
//! - `interactions`: the two windows `(T - 2W, T]` (with the contact's role), plus one
//!   marker per direction on the last interaction before them (for the "days since last
//!   contact / inbound" KPIs; outside both windows, so counted nowhere else);
//! - `pulses`: every pulse up to T (the latest two days and the last 90 days are used);
//! - `subscriptions`: every line (future ones chain renewals);
//! - `custom_metrics`: per (account, metric), the values at the latest timestamp up to T
//!   (scoring-core uses the latest day's values; values earlier on that same day are not
//!   read);
//! - `custom_score_fields`: the current value of each field, when set at or before T
//!   (a field changed after T is missing when backfilling);
//! - `webhook_signals`: the window `(T - W, T]`;
//! - attributes: `seats` (the `seats` number attribute), `created_at`, and the number of
//!   contacts.
//!
//! Names are interned to the `u32` ids scoring-core wants; [`LoadedInputs::spec`] is the
//! matching [`CatalogueSpec`]: event types declared in `event_types` (sorted by name)
//! then undeclared ones seen in the data (sorted by name); key event types are those declared key (all
//! when none is); custom metrics from `custom_metric_definitions` and the data (with
//! their declared direction, else higher is better); score fields seen in the data.
//!
//! Layout: this file holds the query and result types and the scope filter; `read.rs`
//! the load (accounts, names, the usage read, the other statements); `sqlite.rs` the
//! rusqlite read of a SQLite file (accounts and usage), `postgres.rs` the binary COPY
//! usage read of a whole-portfolio run on PostgreSQL (any other case reads through
//! sqlx); [`decode`] the stored strings as scoring-core's types and the catalogue spec,
//! shared with the learner.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Store, StoreError, placeholders};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use futures::StreamExt;
use sea_orm::sqlx::{self, Row};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr, Statement,
    Value,
};
use vitals_scoring_core::{
    AccountAttributes, AccountInputs, CatalogueSpec, Channel, CustomMetricValue, DailyUsage,
    Direction, Interaction, Pulse, ScoreFieldValue, Subscription, WebhookSignal,
};

/// Which accounts to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputScope {
    /// Every account (subject to [`InputQuery::include_churned`]).
    All,
    /// The members of one profile (`accounts.profile_id`).
    Profile {
        /// The profile id (without `profiles/`).
        id: String,
        /// Also the accounts without a profile (for the default profile).
        include_unprofiled: bool,
    },
    /// These accounts only (an empty list loads nothing).
    Accounts(Vec<String>),
}

/// What [`load_inputs`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputQuery {
    /// The day T the KPIs are computed as of (inclusive, UTC).
    pub as_of: NaiveDate,
    /// Window length W in days (the largest window of the profiles scored).
    pub window_days: u32,
    /// Past windows H the trend compares against.
    pub history_windows: u32,
    /// Which accounts.
    pub scope: InputScope,
    /// Also load churned accounts (the learner's training set); scoring leaves them out.
    pub include_churned: bool,
}

impl InputQuery {
    /// A query for every scored account as of `as_of` with scoring-core's default
    /// windows (28 days, 3 past windows).
    pub fn all(as_of: NaiveDate) -> Self {
        Self {
            as_of,
            window_days: vitals_scoring_core::DEFAULT_WINDOW_DAYS,
            history_windows: vitals_scoring_core::DEFAULT_HISTORY_WINDOWS,
            scope: InputScope::All,
            include_churned: false,
        }
    }
}

/// An account as read from `accounts`.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountMeta {
    /// External id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its health profile, if assigned.
    pub profile_id: Option<String>,
    /// `active`, `trial`, `churned` or `unassigned`.
    pub status: String,
    /// The attributes JSON (see [`crate::profiles::parse_attributes`]).
    pub attributes: serde_json::Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// The parent account's id, if any.
    pub parent_id: Option<String>,
}

/// The owned inputs of one account; [`AccountData::inputs`] borrows them as scoring-core's
/// [`AccountInputs`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountData {
    /// Daily roll-ups (and last-activity markers).
    pub usage: Vec<DailyUsage>,
    /// Interactions (and last-contact markers).
    pub interactions: Vec<Interaction>,
    /// CSM pulses.
    pub pulses: Vec<Pulse>,
    /// Subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// Latest custom metric values.
    pub custom_metrics: Vec<CustomMetricValue>,
    /// Custom score fields.
    pub score_fields: Vec<ScoreFieldValue>,
    /// Webhook signals of the current window.
    pub webhook_signals: Vec<WebhookSignal>,
    /// Seats, creation day, contacts.
    pub attributes: AccountAttributes,
}

impl AccountData {
    /// Borrows the buffers as scoring-core inputs.
    pub fn inputs(&self) -> AccountInputs<'_> {
        AccountInputs {
            usage: &self.usage,
            interactions: &self.interactions,
            pulses: &self.pulses,
            subscriptions: &self.subscriptions,
            custom_metrics: &self.custom_metrics,
            score_fields: &self.score_fields,
            webhook_signals: &self.webhook_signals,
            attributes: self.attributes,
        }
    }
}

/// Everything [`load_inputs`] read: accounts (sorted by id) and their inputs, in the
/// same order, with the catalogue spec their ids refer to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedInputs {
    /// The day T.
    pub as_of: NaiveDate,
    /// Names behind the interned ids (build the [`vitals_scoring_core::Catalogue`] from it).
    pub spec: CatalogueSpec,
    /// First day of any roll-up in the store (scoring-core's `KpiConfig::data_start`),
    /// `None` without usage data.
    pub data_start: Option<NaiveDate>,
    /// The accounts, sorted by id.
    pub accounts: Vec<AccountMeta>,
    /// Their inputs, `data[i]` for `accounts[i]`.
    pub data: Vec<AccountData>,
}

impl LoadedInputs {
    /// The borrowed scoring-core inputs of every account, in account order.
    pub fn inputs(&self) -> Vec<AccountInputs<'_>> {
        self.data.iter().map(AccountData::inputs).collect()
    }

    /// Position of an account, if loaded.
    pub fn index_of(&self, account_id: &str) -> Option<usize> {
        self.accounts
            .binary_search_by(|a| a.id.as_str().cmp(account_id))
            .ok()
    }
}

/// Start of a UTC day.
fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

/// A statement with `?` placeholders, renumbered `$n` on PostgreSQL.
fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

/// Accounts from which the usage roll-ups of the span are read as two halves at once, on
/// two connections of the pool (when it has two): that read is most of a large load.
pub const SPLIT_MIN_ACCOUNTS: usize = 2_000;

/// Connections the other statements of a load (all but the usage read) use at most, at
/// once, while the usage is read.
const REST_CONNECTIONS: usize = 4;

/// A value bound to a streamed statement (those bind dates and texts only).
#[derive(Clone, Debug)]
enum Arg {
    Date(NaiveDate),
    Text(String),
}

fn args_of(values: &[Value]) -> Result<Vec<Arg>, DbErr> {
    values
        .iter()
        .map(|v| match v {
            Value::ChronoDate(Some(d)) => Ok(Arg::Date(*d)),
            Value::String(Some(s)) => Ok(Arg::Text(s.clone())),
            other => Err(DbErr::Custom(format!(
                "load_inputs: no streamed binding for {other:?}"
            ))),
        })
        .collect()
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

/// The streamed statements of `sql` (with `?` placeholders, bound to `values`): the whole
/// of it, or, with `split` (an account id), the rows below it and the rows from it on
/// (any order makes a partition: `account_col` is compared in byte order, as the COPY
/// read of `postgres` does, so both paths run the same plan and return the rows in the same
/// order; SQLite compares texts in byte order already).
fn split_statements(
    backend: DbBackend,
    sql: &str,
    values: &[Value],
    account_col: &str,
    split: Option<&str>,
) -> Result<Vec<(String, Vec<Arg>)>, DbErr> {
    let args = args_of(values)?;
    Ok(match split {
        None => vec![(placeholders(backend, sql), args)],
        Some(mid) => ["<", ">="]
            .into_iter()
            .map(|op| {
                let mut a = args.clone();
                a.push(Arg::Text(mid.to_string()));
                let collate = if backend == DbBackend::Postgres {
                    " COLLATE \"C\""
                } else {
                    ""
                };
                (
                    placeholders(backend, &format!("{sql} AND {account_col}{collate} {op} ?")),
                    a,
                )
            })
            .collect(),
    })
}

/// Runs the statements of `$statements` at once on `$pool` (one connection each), and
/// runs `$body` on every row as it arrives (`$row`, from statement number `$s`), without
/// holding the rows in memory. The rows of one statement come in their order.
macro_rules! for_each_row {
    ($pool:expr, $statements:expr, |$s:ident, $row:ident| $body:block) => {{
        let mut streams = futures::stream::SelectAll::new();
        for (s, (sql, args)) in $statements.into_iter().enumerate() {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for a in args {
                q = match a {
                    Arg::Date(d) => q.bind(d),
                    Arg::Text(t) => q.bind(t),
                };
            }
            streams.push(q.fetch($pool).map(move |r| r.map(|row| (s, row))));
        }
        while let Some(item) = streams.next().await {
            let ($s, $row) = item.map_err(query_err)?;
            $body
        }
    }};
}

/// Runs `$body` on each row of `$statements` (see [`for_each_row`]) on the pool of
/// `$db`, the row's columns decoded by index as the types of `$decode` (borrowed texts,
/// no copy) and bound to its names.
macro_rules! stream_rows {
    ($db:expr, $statements:expr, |$s:ident, ($($name:ident: $ty:ty),+)| $body:block) => {{
        match $db.get_database_backend() {
            DbBackend::Sqlite => for_each_row!($db.get_sqlite_connection_pool(), $statements, |$s, row| {
                stream_rows!(@decode row, 0usize, $($name: $ty),+);
                $body
            }),
            DbBackend::Postgres => for_each_row!($db.get_postgres_connection_pool(), $statements, |$s, row| {
                stream_rows!(@decode row, 0usize, $($name: $ty),+);
                $body
            }),
            other => {
                return Err(DbErr::Custom(format!("load_inputs: unsupported database {other:?}")));
            }
        }
    }};
    (@decode $row:ident, $i:expr, $name:ident: $ty:ty $(, $rest:ident: $rty:ty)*) => {
        let $name: $ty = $row.try_get($i).map_err(query_err)?;
        stream_rows!(@decode $row, $i + 1usize $(, $rest: $rty)*);
    };
    (@decode $row:ident, $i:expr) => {};
}

/// The account filter (on alias `a`) and its values.
fn scope_filter(q: &InputQuery) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    if !q.include_churned {
        sql.push_str(" AND a.status <> 'churned'");
    }
    match &q.scope {
        InputScope::All => {}
        InputScope::Profile {
            id,
            include_unprofiled,
        } => {
            if *include_unprofiled {
                sql.push_str(" AND (a.profile_id = ? OR a.profile_id IS NULL)");
            } else {
                sql.push_str(" AND a.profile_id = ?");
            }
            values.push(Value::from(id.clone()));
        }
        InputScope::Accounts(ids) => {
            if ids.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                sql.push_str(" AND a.id IN (");
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push('?');
                    values.push(Value::from(id.clone()));
                }
                sql.push(')');
            }
        }
    }
    (sql, values)
}

/// Interns names to dense ids in first-seen order.
#[derive(Clone, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    /// The id of `name` when there are a handful of names (no hashing), else `None`.
    fn find_small(&self, name: &[u8]) -> Option<u32> {
        if self.names.len() > 8 {
            return None;
        }
        self.names
            .iter()
            .position(|n| n.as_bytes() == name)
            .map(|id| id as u32)
    }

    fn id(&mut self, name: &str) -> u32 {
        // A handful of names (event types) is looked up once per usage row: a scan of
        // the few names beats hashing.
        if self.names.len() <= 8 {
            if let Some(id) = self.names.iter().position(|n| n == name) {
                return id as u32;
            }
        } else if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        id
    }
}

/// Loads the KPI inputs of the accounts in `q.scope` as of `q.as_of` (see the module doc
/// for exactly what is read). Accounts come back sorted by id, each with its inputs.
///
/// Cost: about a dozen set-based statements, each joined with `accounts` for the scope;
/// memory proportional to the rows in the look-back. The usage roll-ups (most of the
/// rows) are streamed straight from the driver into each account's inputs; from
/// [`SPLIT_MIN_ACCOUNTS`] accounts on they are read as two halves of the accounts at
/// once, on two connections of the pool (when it has two).
pub async fn load_inputs(store: &Store, q: &InputQuery) -> Result<LoadedInputs, StoreError> {
    Ok(load(store.conn(), q, SPLIT_MIN_ACCOUNTS, ReadPath::Auto).await?)
}

/// How [`load`] reads the accounts and the usage roll-ups of the span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadPath {
    /// Through rusqlite on a SQLite file (accounts and usage); on PostgreSQL the usage of
    /// a whole-portfolio run as binary COPY; else through sqlx.
    Auto,
    /// Through sqlx, always (tests compare the two).
    #[cfg_attr(not(test), allow(dead_code))]
    Sqlx,
}

pub mod decode;
mod read;
use decode::{channel, clamp_u32, direction, metric_direction, role, seats};
use read::load;

/// The SQLite file behind a connection (shared with the ingestion writer).
pub(crate) use sqlite::database_file as sqlite_database_file;

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;
