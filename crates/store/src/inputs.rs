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

use std::collections::HashMap;
use std::sync::Arc;

use crate::placeholders;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use futures::StreamExt;
use sea_orm::sqlx::{self, Row};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr, Statement,
    Value,
};
use vitals_scoring_core::{
    AccountAttributes, AccountInputs, CatalogueSpec, Channel, ContactRole, CustomMetricSpec,
    CustomMetricValue, DailyUsage, Direction, Interaction, InteractionDirection, Pulse,
    ScoreFieldValue, Subscription, WebhookSignal,
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
            window_days: 28,
            history_windows: 3,
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
/// read of `pgcopy` does, so both paths run the same plan and return the rows in the same
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

fn channel(s: &str) -> Option<Channel> {
    Some(match s {
        "email" => Channel::Email,
        "call" => Channel::Call,
        "meeting" => Channel::Meeting,
        "ticket" => Channel::Ticket,
        "chat" => Channel::Chat,
        _ => return None,
    })
}

fn direction(s: &str) -> InteractionDirection {
    if s == "inbound" {
        InteractionDirection::Inbound
    } else {
        InteractionDirection::Outbound
    }
}

fn role(s: &str) -> Option<ContactRole> {
    Some(match s {
        "user" => ContactRole::User,
        "decision_maker" => ContactRole::DecisionMaker,
        "champion" => ContactRole::Champion,
        _ => return None,
    })
}

/// The `seats` attribute, `{"seats": {"number": n}}` (or a bare number).
fn seats(attributes: &serde_json::Value) -> Option<f64> {
    let v = attributes.get("seats")?;
    v.as_f64()
        .or_else(|| v.get("number").and_then(serde_json::Value::as_f64))
        .or_else(|| v.get("number_value").and_then(serde_json::Value::as_f64))
        .filter(|x| x.is_finite() && *x > 0.0)
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// Loads the KPI inputs of the accounts in `q.scope` as of `q.as_of` (see the module doc
/// for exactly what is read). Accounts come back sorted by id, each with its inputs.
///
/// Cost: about a dozen set-based statements, each joined with `accounts` for the scope;
/// memory proportional to the rows in the look-back. The usage roll-ups (most of the
/// rows) are streamed straight from the driver into each account's inputs; from
/// [`SPLIT_MIN_ACCOUNTS`] accounts on they are read as two halves of the accounts at
/// once, on two connections of the pool (when it has two).
pub async fn load_inputs(conn: &DatabaseConnection, q: &InputQuery) -> Result<LoadedInputs, DbErr> {
    load(conn, q, SPLIT_MIN_ACCOUNTS, ReadPath::Auto).await
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

/// [`load_inputs`], splitting the usage read from `split_min` accounts on.
async fn load(
    conn: &DatabaseConnection,
    q: &InputQuery,
    split_min: usize,
    read_path: ReadPath,
) -> Result<LoadedInputs, DbErr> {
    let backend = conn.get_database_backend();
    let t = q.as_of;
    let clock = std::time::Instant::now();
    let w = u64::from(q.window_days.max(1));
    let span = w * (u64::from(q.history_windows) + 1);
    let end = day_start(t + Days::new(1));
    let usage_lo = t - Days::new(span); // exclusive
    let conv_lo = day_start(t - Days::new(2 * w) + Days::new(1));
    let signal_lo = day_start(t - Days::new(w) + Days::new(1));
    let (filter, fvals) = scope_filter(q);
    let with = |mut head: Vec<Value>| {
        head.extend(fvals.iter().cloned());
        head
    };

    // A SQLite file is read through rusqlite (see `lite`).
    let file = match (backend, read_path) {
        (DbBackend::Sqlite, ReadPath::Auto) => lite::database_file(conn).await?,
        _ => None,
    };

    // ---- accounts
    let accounts_sql = format!(
        "SELECT a.id, a.name, a.profile_id, a.status, a.attributes, a.created_at \
         FROM accounts a WHERE 1 = 1{filter} ORDER BY a.id"
    );
    let mut accounts = if let Some(file) = &file {
        let (file, sql, args) = (file.clone(), accounts_sql, args_of(&with(vec![]))?);
        tokio::task::spawn_blocking(move || lite::read_accounts(&file, &sql, &args))
            .await
            .map_err(|e| DbErr::Custom(format!("load_inputs: accounts read task: {e}")))??
    } else {
        let rows = conn
            .query_all_raw(stmt(backend, &accounts_sql, with(vec![])))
            .await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for r in &rows {
            accounts.push(AccountMeta {
                id: r.try_get_by_index(0)?,
                name: r.try_get_by_index(1)?,
                profile_id: r.try_get_by_index(2)?,
                status: r.try_get_by_index(3)?,
                attributes: r.try_get_by_index(4)?,
                created_at: r.try_get_by_index(5)?,
            });
        }
        accounts
    };
    // The middle account in the database's order: the usage read splits there.
    let pool_size = match backend {
        DbBackend::Sqlite => conn
            .get_sqlite_connection_pool()
            .options()
            .get_max_connections(),
        DbBackend::Postgres => conn
            .get_postgres_connection_pool()
            .options()
            .get_max_connections(),
        _ => 1,
    };
    let split: Option<String> = (accounts.len() >= split_min && pool_size >= 2)
        .then(|| accounts[accounts.len() / 2].id.clone());
    // The database's collation may order ids differently from byte order.
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    let mut index: HashMap<String, usize> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.clone(), i))
        .collect();
    let mut data: Vec<AccountData> = accounts
        .iter()
        .map(|a| AccountData {
            attributes: AccountAttributes {
                seats: seats(&a.attributes),
                created_at: Some(a.created_at.date_naive()),
                contacts: None,
            },
            ..AccountData::default()
        })
        .collect();
    let accounts_ms = clock.elapsed().as_millis() as u64;
    // ---- names: declared event types and metrics first, so ids are stable across runs
    let mut events = Interner::default();
    let mut key: Vec<u32> = Vec::new();
    for r in conn
        .query_all_raw(stmt(
            backend,
            "SELECT name, is_key FROM event_types ORDER BY name",
            vec![],
        ))
        .await?
    {
        let name: String = r.try_get_by_index(0)?;
        let is_key: bool = r.try_get_by_index(1)?;
        let id = events.id(&name);
        if is_key {
            key.push(id);
        }
    }
    let declared_events = events.names.len();
    let mut metrics = Interner::default();
    let mut metric_dirs: Vec<Direction> = Vec::new();
    for r in conn
        .query_all_raw(stmt(
            backend,
            "SELECT name, direction FROM custom_metric_definitions ORDER BY name",
            vec![],
        ))
        .await?
    {
        let name: String = r.try_get_by_index(0)?;
        let dir: String = r.try_get_by_index(1)?;
        metrics.id(&name);
        metric_dirs.push(if dir == "lower_is_better" {
            Direction::LowerIsBetter
        } else {
            Direction::HigherIsBetter
        });
    }
    let mut fields = Interner::default();
    let mut signals = Interner::default();
    let mut contacts = Interner::default();

    let data_start_sql = stmt(backend, "SELECT MIN(day) FROM usage_daily", vec![]);
    let first_day = |rows: &[QueryResult]| -> Result<Option<NaiveDate>, DbErr> {
        Ok(rows
            .first()
            .map(|r| r.try_get_by_index::<Option<NaiveDate>>(0))
            .transpose()?
            .flatten())
    };

    if accounts.is_empty() {
        let data_start = first_day(&conn.query_all_raw(data_start_sql).await?)?;
        return Ok(LoadedInputs {
            as_of: t,
            spec: CatalogueSpec {
                event_types: events.names,
                key_event_types: (!key.is_empty()).then_some(key),
                custom_metrics: metric_specs(metrics.names, &metric_dirs),
                score_fields: fields.names,
            },
            data_start,
            accounts,
            data,
        });
    }

    // The usage statements join `accounts` for a narrower scope only: for every account,
    // the rows of accounts out of scope (churned) are dropped as they arrive (they are
    // not in `index`), which spares a look-up in `accounts` per roll-up row.
    let (usage_from_sql, usage_filter, with_usage) = if q.scope == InputScope::All {
        ("usage_daily u", "", Vec::new())
    } else {
        (
            "usage_daily u JOIN accounts a ON a.id = u.account_id",
            filter.as_str(),
            fvals.clone(),
        )
    };
    let with_usage = |mut head: Vec<Value>| {
        head.extend(with_usage.iter().cloned());
        head
    };

    // The other statements (every one but the usage read of the span): run while the
    // usage is read, on other pooled connections, their rows processed after it in this
    // order (so names are interned in the same order as when run one after the other).
    let rest = vec![
        data_start_sql,
        // last active day before the span, one marker per event type
        stmt(
            backend,
            &format!(
                "SELECT u.account_id, u.event_type, MAX(u.day) FROM {usage_from_sql} \
                 WHERE u.day <= ? AND u.count > 0{usage_filter} \
                 GROUP BY u.account_id, u.event_type"
            ),
            with_usage(vec![Value::from(usage_lo)]),
        ),
        // interactions of the two windows, with the contact's role
        stmt(
            backend,
            &format!(
                "SELECT i.account_id, i.channel, i.direction, i.occurred_at, i.replied, \
                 i.reply_known, i.contact_id, c.role, i.sentiment \
                 FROM interactions i JOIN accounts a ON a.id = i.account_id \
                 LEFT JOIN contacts c ON c.account_id = i.account_id AND c.id = i.contact_id \
                 WHERE i.occurred_at >= ? AND i.occurred_at < ?{filter}"
            ),
            with(vec![Value::from(conv_lo), Value::from(end)]),
        ),
        // last interaction before the windows, one marker per direction
        stmt(
            backend,
            &format!(
                "SELECT i.account_id, i.direction, MAX(i.occurred_at) \
                 FROM interactions i JOIN accounts a ON a.id = i.account_id \
                 WHERE i.occurred_at < ?{filter} GROUP BY i.account_id, i.direction"
            ),
            with(vec![Value::from(conv_lo)]),
        ),
        // contacts per account
        stmt(
            backend,
            &format!(
                "SELECT c.account_id, COUNT(*) FROM contacts c \
                 JOIN accounts a ON a.id = c.account_id WHERE 1 = 1{filter} GROUP BY c.account_id"
            ),
            with(vec![]),
        ),
        // pulses up to T
        stmt(
            backend,
            &format!(
                "SELECT p.account_id, p.value, p.at FROM pulses p \
                 JOIN accounts a ON a.id = p.account_id WHERE p.at < ?{filter}"
            ),
            with(vec![Value::from(end)]),
        ),
        // subscriptions, all of them
        stmt(
            backend,
            &format!(
                "SELECT s.account_id, s.starts_at, s.ends_at, s.mrr, s.quantity, s.is_addon, \
                 s.discount, s.bill_period_months FROM subscriptions s \
                 JOIN accounts a ON a.id = s.account_id WHERE 1 = 1{filter}"
            ),
            with(vec![]),
        ),
        // custom metrics: the values at each (account, metric)'s latest time up to T
        stmt(
            backend,
            &format!(
                "SELECT m.account_id, m.name, m.at, m.value FROM custom_metrics m \
                 JOIN (SELECT account_id, name, MAX(at) AS last_at FROM custom_metrics \
                       WHERE at < ? GROUP BY account_id, name) x \
                   ON x.account_id = m.account_id AND x.name = m.name AND x.last_at = m.at \
                 JOIN accounts a ON a.id = m.account_id WHERE 1 = 1{filter}"
            ),
            with(vec![Value::from(end)]),
        ),
        // custom score fields set at or before T
        stmt(
            backend,
            &format!(
                "SELECT f.account_id, f.field, f.value FROM custom_score_fields f \
                 JOIN accounts a ON a.id = f.account_id WHERE f.updated_at < ?{filter}"
            ),
            with(vec![Value::from(end)]),
        ),
        // webhook signals of the current window
        stmt(
            backend,
            &format!(
                "SELECT s.account_id, s.name, s.value, s.at FROM webhook_signals s \
                 JOIN accounts a ON a.id = s.account_id \
                 WHERE s.at >= ? AND s.at < ?{filter}"
            ),
            with(vec![Value::from(signal_lo), Value::from(end)]),
        ),
    ];
    // At most REST_CONNECTIONS at once, and not on the last two connections of the pool
    // (the usage read's); a pool of fewer than four connections runs them after the read.
    let concurrent = pool_size >= 4;
    let rest_rows = futures::stream::iter(rest)
        .map(|s| conn.query_all_raw(s))
        .buffered(
            (pool_size as usize)
                .saturating_sub(2)
                .clamp(1, REST_CONNECTIONS),
        )
        .collect::<Vec<Result<Vec<QueryResult>, DbErr>>>();

    // ---- usage roll-ups in the span, streamed (two halves at once for a large scope).
    // Rows of one account mostly come together: each stream remembers the last account
    // it saw and looks an id up only when it changes.
    let sql = format!(
        "SELECT u.account_id, u.day, u.event_type, u.count, u.distinct_users, u.value_sum \
         FROM {usage_from_sql} WHERE u.day > ? AND u.day <= ?{usage_filter}"
    );
    let statements = split_statements(
        backend,
        &sql,
        &with_usage(vec![Value::from(usage_lo), Value::from(t)]),
        "u.account_id",
        split.as_deref(),
    )?;
    let usage_from = clock.elapsed().as_millis() as u64;
    let via_rusqlite = file.is_some();
    let usage = async {
        if let Some(file) = file {
            // SQLite file: read through rusqlite on connections of its own (see `lite`).
            let read = lite::ReadUsage {
                file,
                statements,
                split,
                accounts: std::mem::take(&mut accounts),
                index: std::mem::take(&mut index),
                data: std::mem::take(&mut data),
                events: std::mem::take(&mut events),
            };
            let read = tokio::task::spawn_blocking(move || read.run())
                .await
                .map_err(|e| DbErr::Custom(format!("load_inputs: usage read task: {e}")))??;
            (accounts, index, data, events) = read;
        } else if backend == DbBackend::Postgres
            && read_path == ReadPath::Auto
            && q.scope == InputScope::All
        {
            // PostgreSQL, every account: binary COPY (see `pgcopy`).
            pgcopy::read_usage(
                conn.get_postgres_connection_pool(),
                (usage_lo, t),
                split.as_deref(),
                &accounts,
                &index,
                &mut data,
                &mut events,
            )
            .await?;
        } else {
            let mut last = [usize::MAX; 2];
            stream_rows!(conn, statements, |s, (id: &str, day: NaiveDate, name: &str, count: i64, users: i64, value_sum: f64)| {
                let i = match last[s] {
                    i if i < accounts.len() && accounts[i].id == id => i,
                    _ => match index.get(id) {
                        Some(&i) => {
                            last[s] = i;
                            i
                        }
                        None => continue,
                    },
                };
                data[i].usage.push(DailyUsage {
                    day,
                    event_type: events.id(name),
                    count: clamp_u32(count),
                    distinct_users: clamp_u32(users),
                    value_sum,
                });
            });
        }
        Ok::<(), DbErr>(())
    };
    let rest_rows = if concurrent {
        let (read, rest_rows) = tokio::join!(usage, rest_rows);
        read?;
        rest_rows
    } else {
        usage.await?;
        rest_rows.await
    };
    let usage_ms = clock.elapsed().as_millis() as u64 - usage_from;
    let mut rest_rows = rest_rows.into_iter();
    let mut next_rows = || -> Result<Vec<QueryResult>, DbErr> {
        rest_rows
            .next()
            .ok_or_else(|| DbErr::Custom("load_inputs: a statement's rows are missing".into()))?
    };
    let data_start = first_day(&next_rows()?)?;
    let slot = |r: &QueryResult| -> Result<Option<usize>, DbErr> {
        let id: String = r.try_get_by_index(0)?;
        Ok(index.get(&id).copied())
    };
    // ---- last active day before the span, one marker per event type
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        data[i].usage.push(DailyUsage {
            day: r.try_get_by_index(2)?,
            event_type: events.id(&name),
            count: 1,
            distinct_users: 0,
            value_sum: 0.0,
        });
    }

    // Undeclared event types in name order: the two halves of the usage read arrive in
    // no fixed order, so first-seen order would vary from run to run.
    if events.names.len() > declared_events + 1 {
        let mut order: Vec<usize> = (declared_events..events.names.len()).collect();
        order.sort_by(|&a, &b| events.names[a].cmp(&events.names[b]));
        if order.windows(2).any(|w| w[0] > w[1]) {
            let mut remap: Vec<u32> = (0..events.names.len() as u32).collect();
            for (k, &old) in order.iter().enumerate() {
                remap[old] = (declared_events + k) as u32;
            }
            let mut names = events.names[..declared_events].to_vec();
            names.extend(order.iter().map(|&o| events.names[o].clone()));
            events.ids = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect();
            events.names = names;
            for d in &mut data {
                for u in &mut d.usage {
                    u.event_type = remap[u.event_type as usize];
                }
            }
        }
    }

    let markers_ms = clock.elapsed().as_millis() as u64 - usage_from - usage_ms;
    // ---- interactions of the two windows, with the contact's role
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let ch: String = r.try_get_by_index(1)?;
        let Some(channel) = channel(&ch) else {
            continue;
        };
        let dir: String = r.try_get_by_index(2)?;
        let at: DateTime<Utc> = r.try_get_by_index(3)?;
        let replied: bool = r.try_get_by_index(4)?;
        let known: bool = r.try_get_by_index(5)?;
        let contact: Option<String> = r.try_get_by_index(6)?;
        let role_s: Option<String> = r.try_get_by_index(7)?;
        data[i].interactions.push(Interaction {
            at: at.date_naive(),
            channel,
            direction: direction(&dir),
            replied: known.then_some(replied),
            contact: contact.as_deref().map(|c| contacts.id(c)),
            contact_role: role_s.as_deref().and_then(role),
            sentiment: r.try_get_by_index(8)?,
        });
    }
    drop(rows);
    // ---- last interaction before the windows, one marker per direction
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let dir: String = r.try_get_by_index(1)?;
        let at: DateTime<Utc> = r.try_get_by_index(2)?;
        data[i].interactions.push(Interaction {
            at: at.date_naive(),
            channel: Channel::Email,
            direction: direction(&dir),
            replied: None,
            contact: None,
            contact_role: None,
            sentiment: None,
        });
    }

    // ---- contacts per account
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let n: i64 = r.try_get_by_index(1)?;
        data[i].attributes.contacts = Some(clamp_u32(n));
    }

    // ---- pulses up to T
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let v: i32 = r.try_get_by_index(1)?;
        let at: DateTime<Utc> = r.try_get_by_index(2)?;
        data[i].pulses.push(Pulse {
            at: at.date_naive(),
            value: f64::from(v),
        });
    }

    // ---- subscriptions, all of them
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let start: DateTime<Utc> = r.try_get_by_index(1)?;
        let end_at: Option<DateTime<Utc>> = r.try_get_by_index(2)?;
        let period: i32 = r.try_get_by_index(7)?;
        data[i].subscriptions.push(Subscription {
            start: start.date_naive(),
            end: end_at.map(|e| e.date_naive()),
            mrr: r.try_get_by_index(3)?,
            quantity: r.try_get_by_index(4)?,
            add_on: r.try_get_by_index(5)?,
            discount: r.try_get_by_index(6)?,
            billing_period_months: u16::try_from(period.max(0)).unwrap_or(u16::MAX),
        });
    }

    // ---- custom metrics: the values at each (account, metric)'s latest time up to T
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        let at: DateTime<Utc> = r.try_get_by_index(2)?;
        let metric = metrics.id(&name);
        data[i].custom_metrics.push(CustomMetricValue {
            metric,
            at: at.date_naive(),
            value: r.try_get_by_index(3)?,
        });
    }

    // ---- custom score fields set at or before T
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        let v: i32 = r.try_get_by_index(2)?;
        data[i].score_fields.push(ScoreFieldValue {
            field: fields.id(&name),
            value: f64::from(v),
        });
    }

    // ---- webhook signals of the current window
    let rows = next_rows()?;
    for r in &rows {
        let Some(i) = slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        let v: i32 = r.try_get_by_index(2)?;
        let at: DateTime<Utc> = r.try_get_by_index(3)?;
        data[i].webhook_signals.push(WebhookSignal {
            signal: signals.id(&name),
            at: at.date_naive(),
            value: f64::from(v),
        });
    }

    tracing::debug!(
        accounts = accounts.len(),
        accounts_ms,
        usage_ms,
        via_rusqlite,
        markers_ms,
        elapsed_ms = clock.elapsed().as_millis() as u64,
        "load_inputs"
    );
    let n_metrics = metrics.names.len();
    metric_dirs.resize(n_metrics, Direction::HigherIsBetter);
    Ok(LoadedInputs {
        as_of: t,
        spec: CatalogueSpec {
            event_types: events.names,
            key_event_types: (!key.is_empty()).then_some(key),
            custom_metrics: metric_specs(metrics.names, &metric_dirs),
            score_fields: fields.names,
        },
        data_start,
        accounts,
        data,
    })
}

/// The SQLite file behind a connection (shared with the ingestion writer).
pub(crate) use lite::database_file as sqlite_database_file;

/// The usage read of the whole portfolio on PostgreSQL as binary `COPY ... TO STDOUT`.
///
/// Through sqlx's row path each of the 7.2 M roll-ups of 100,000 accounts is a message
/// decoded into an allocated row (about 7 s); the server itself produces them in under a
/// second. `COPY (SELECT ...) TO STDOUT (FORMAT binary)` streams the same rows as raw
/// bytes, parsed here in place (each field a length and its big-endian value). COPY takes
/// no bind parameters: the statement carries the two days (formatted from dates) and the
/// split account id as an escaped string literal (`E'...'`, every `\` and `'` doubled).
/// The split compares in the "C" collation (byte order): any order gives a partition of
/// the rows, and the server's default collation (e.g. `C.UTF-8`, which PostgreSQL 15 does
/// not treat as "C") compares through `strcoll`, which cost ~0.5 s of server CPU per half
/// over the 7.2 M roll-ups of the bench (1.52 s -> 1.02 s per half, measured in `psql`).
mod pgcopy {
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
                    None => events
                        .id(std::str::from_utf8(name).map_err(|_| bad("event type not UTF-8"))?),
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
}

/// The accounts and usage reads on a SQLite file through rusqlite.
///
/// sqlx-sqlite costs about 5 µs per row (it copies every value, allocates each row and
/// hands it over a channel from the connection's worker thread): 35 s for the 7.2 M
/// roll-ups of 100,000 accounts. rusqlite steps the same statement on the calling thread
/// and lends each value in place. It links the same SQLite library (libsqlite3-sys 0.37,
/// as sqlx-sqlite 0.9), and opens its own read-only connections on the database's file,
/// one per statement (the two halves run on two threads): each statement reads one
/// consistent snapshot (its implicit read transaction; in WAL mode it never blocks the
/// writer), exactly as the two statements of the sqlx path do on two pooled
/// connections. The accounts statement runs the same way (one connection), its columns
/// decoded exactly as sqlx decodes them (the timestamp forms of sqlx-sqlite, the JSON
/// parsed from the stored text). In-memory databases (no file) keep the sqlx path.
mod lite {
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
    /// created_at), each column decoded as the sqlx path decodes it (blocking).
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
                None => events.id(std::str::from_utf8(name)
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
}

fn metric_specs(names: Vec<String>, dirs: &[Direction]) -> Vec<CustomMetricSpec> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| CustomMetricSpec {
            name,
            direction: dirs.get(i).copied().unwrap_or(Direction::HigherIsBetter),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{
        account, contact, custom_metric, custom_score_field, interaction, pulse, subscription,
        usage_daily, webhook_signal,
    };
    use crate::testing::{backends, fresh_store};
    use sea_orm::{ActiveModelTrait, IntoActiveModel};

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }
    fn ts(m: u32, day: u32) -> DateTime<Utc> {
        day_start(d(m, day)) + chrono::Duration::hours(12)
    }

    /// Inserts an account created on January 1st.
    async fn put_account(
        conn: &impl ConnectionTrait,
        id: &str,
        name: &str,
        attributes: serde_json::Value,
        profile: Option<&str>,
        status: &str,
    ) {
        account::Model {
            id: id.into(),
            name: name.into(),
            attributes,
            profile_id: profile.map(Into::into),
            pinned: false,
            status: status.into(),
            created_at: ts(1, 1),
            updated_at: ts(1, 1),
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
    }

    async fn seed(conn: &impl ConnectionTrait) {
        for (id, status, profile) in [
            ("a1", "active", Some("p")),
            ("a2", "active", None),
            ("a3", "churned", Some("p")),
        ] {
            put_account(
                conn,
                id,
                &id.to_uppercase(),
                serde_json::json!({"seats": {"number": 10.0}}),
                profile,
                status,
            )
            .await;
        }
        // T = 2026-06-30, W = 28, H = 3: span is (2026-03-10, 2026-06-30].
        for (day, ty, n) in [
            (d(6, 30), "login", 5),
            (d(6, 1), "login", 2),
            (d(3, 14), "report", 1),
            (d(7, 1), "login", 9),   // after T: not read
            (d(2, 10), "report", 3), // before the span: a marker
            (d(2, 1), "report", 4),
        ] {
            for account in ["a1", "a3"] {
                usage_daily::Model {
                    account_id: account.into(),
                    day,
                    event_type: ty.into(),
                    count: n,
                    distinct_users: 1,
                    value_sum: 1.5,
                }
                .into_active_model()
                .insert(conn)
                .await
                .unwrap();
            }
        }
        contact::Model {
            account_id: "a1".into(),
            id: "c1".into(),
            name: "C".into(),
            role: "champion".into(),
            email_domain: "x.com".into(),
            updated_at: ts(1, 1),
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
        for (id, at, dir) in [
            ("i1", ts(6, 20), "outbound"),
            ("i2", ts(1, 5), "inbound"),
            ("i3", ts(1, 9), "inbound"),
        ] {
            interaction::Model {
                account_id: "a1".into(),
                id: id.into(),
                contact_id: Some("c1".into()),
                channel: "meeting".into(),
                direction: dir.into(),
                occurred_at: at,
                replied: true,
                text: None,
                sentiment: Some(0.5),
            }
            .into_active_model()
            .insert(conn)
            .await
            .unwrap();
        }
        pulse::ActiveModel {
            account_id: sea_orm::Set("a1".into()),
            author: sea_orm::Set("csm".into()),
            value: sea_orm::Set(4),
            note: sea_orm::Set(String::new()),
            at: sea_orm::Set(ts(6, 2)),
            ..Default::default()
        }
        .insert(conn)
        .await
        .unwrap();
        subscription::Model {
            account_id: "a1".into(),
            id: "s1".into(),
            product: "p".into(),
            starts_at: ts(1, 1),
            ends_at: Some(ts(12, 31)),
            mrr: 100.0,
            quantity: Some(5.0),
            units: None,
            bill_period_months: 12,
            is_addon: false,
            discount: 0.1,
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
        for (at, v) in [(ts(5, 1), 1.0), (ts(6, 1), 2.0), (ts(7, 1), 3.0)] {
            custom_metric::Model {
                account_id: "a1".into(),
                name: "roi".into(),
                at,
                value: v,
            }
            .into_active_model()
            .insert(conn)
            .await
            .unwrap();
        }
        custom_score_field::Model {
            account_id: "a1".into(),
            field: "exec_sponsor".into(),
            value: 5,
            updated_at: ts(6, 1),
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
        for at in [ts(6, 25), ts(5, 1)] {
            webhook_signal::ActiveModel {
                account_id: sea_orm::Set("a1".into()),
                name: sea_orm::Set("nps".into()),
                value: sea_orm::Set(5),
                at: sea_orm::Set(at),
                ..Default::default()
            }
            .insert(conn)
            .await
            .unwrap();
        }
    }

    /// One usage row with its event type's name and `value_sum`'s bits.
    type NamedUsage = (NaiveDate, String, u32, u32, u64);

    /// Per account (in order): its usage rows by name, sorted.
    fn normalised(l: &LoadedInputs) -> Vec<(String, Vec<NamedUsage>)> {
        l.accounts
            .iter()
            .zip(&l.data)
            .map(|(a, d)| {
                let mut u: Vec<_> = d
                    .usage
                    .iter()
                    .map(|u| {
                        (
                            u.day,
                            l.spec.event_types[u.event_type as usize].clone(),
                            u.count,
                            u.distinct_users,
                            u.value_sum.to_bits(),
                        )
                    })
                    .collect();
                u.sort();
                (a.id.clone(), u)
            })
            .collect()
    }

    #[tokio::test]
    async fn usage_read_in_two_halves_loads_the_same_inputs() {
        // A file database (its pool has several connections, unlike `:memory:`), and
        // PostgreSQL when configured.
        let dir = std::env::temp_dir().join(format!("vitals-inputs-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = crate::Store::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.join("split.db").display()
        ))
        .await
        .unwrap();
        file.migrate().await.unwrap();
        let mut stores = vec![file];
        for backend in backends() {
            if backend != crate::testing::Backend::Sqlite {
                stores.push(fresh_store(backend).await.unwrap());
            }
        }
        for store in &stores {
            let conn = store.conn();
            seed(conn).await;
            // More accounts on both sides of the middle one, with undeclared event types
            // seen in different orders.
            for n in 0..8u32 {
                let id = format!("b{n}");
                put_account(conn, &id, &id, serde_json::json!({}), None, "active").await;
                let types = if n % 2 == 0 {
                    ["zeta", "alpha"]
                } else {
                    ["alpha", "mid"]
                };
                for (k, ty) in types.iter().enumerate() {
                    for day in [d(6, 1 + n), d(2, 1 + n)] {
                        usage_daily::Model {
                            account_id: id.clone(),
                            day,
                            event_type: (*ty).into(),
                            count: i64::from(n) + k as i64 + 1,
                            distinct_users: 1,
                            value_sum: 0.1 * f64::from(n),
                        }
                        .into_active_model()
                        .insert(conn)
                        .await
                        .unwrap();
                    }
                }
            }
            if store.backend() == DbBackend::Sqlite {
                // The accounts read through rusqlite decodes the text forms of a
                // timestamp sqlx-sqlite decodes (the column's TEXT affinity stores any
                // number as text), a missing profile and the attributes JSON as sqlx does.
                for (id, created) in [
                    ("b0", "'2026-05-01 10:00:00'"),
                    ("b1", "'2026-05-01T10:00:00.123456Z'"),
                    ("b2", "'2026-05-01 10:00:00.5+02:00'"),
                    ("b3", "'2026-05-01T10:00'"),
                    ("b4", "'2026-05-01 10:00Z'"),
                ] {
                    conn.execute_unprepared(&format!(
                        "UPDATE accounts SET created_at = {created}, profile_id = NULL, \
                         attributes = '{{\"seats\": {{\"number\": 12.5}}, \"x\": [1, \"é\"]}}' \
                         WHERE id = '{id}'"
                    ))
                    .await
                    .unwrap();
                }
            }
            let q = InputQuery::all(d(6, 30));
            let whole = load(conn, &q, usize::MAX, ReadPath::Auto).await.unwrap();
            let halves = load(conn, &q, 2, ReadPath::Auto).await.unwrap();
            // On the SQLite file, Auto reads through rusqlite: the same inputs as sqlx,
            // to the bit and in the same order.
            assert_eq!(
                load(conn, &q, usize::MAX, ReadPath::Sqlx).await.unwrap(),
                whole
            );
            assert_eq!(load(conn, &q, 2, ReadPath::Sqlx).await.unwrap(), halves);
            if store.backend() == DbBackend::Sqlite {
                assert!(lite::database_file(conn).await.unwrap().is_some());
            }
            assert_eq!(normalised(&halves), normalised(&whole));
            assert_eq!(halves.spec, whole.spec);
            assert_eq!(
                halves.spec.event_types,
                ["alpha", "login", "mid", "report", "zeta"],
                "undeclared event types in name order"
            );
            assert_eq!(halves.accounts, whole.accounts);
            let with_usage = halves.data.iter().filter(|d| !d.usage.is_empty()).count();
            assert_eq!(with_usage, 9, "a1 and the eight b accounts");
            // Each b account: 2 days in the span and 1 marker per type before it.
            let b3 = &halves.data[halves.index_of("b3").unwrap()];
            assert_eq!(b3.usage.len(), 4);
        }
        for s in stores {
            s.close().await.unwrap();
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn loads_the_look_back_grouped_per_account() {
        for backend in backends() {
            let store = fresh_store(backend).await.unwrap();
            let conn = store.conn();
            seed(conn).await;
            if backend == crate::testing::Backend::Sqlite {
                // In memory: no file, the sqlx path.
                assert_eq!(lite::database_file(conn).await.unwrap(), None);
            }
            let q = InputQuery::all(d(6, 30));
            let got = load_inputs(conn, &q).await.unwrap();
            // The churned account is left out.
            let ids: Vec<&str> = got.accounts.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(ids, ["a1", "a2"], "{backend:?}");
            assert_eq!(got.data_start, Some(d(2, 1)));
            let a1 = &got.data[got.index_of("a1").unwrap()];
            let name = |id: u32| got.spec.event_types[id as usize].as_str();
            let mut usage: Vec<(NaiveDate, &str, u32)> = a1
                .usage
                .iter()
                .map(|u| (u.day, name(u.event_type), u.count))
                .collect();
            usage.sort();
            assert_eq!(
                usage,
                [
                    (d(2, 10), "report", 1), // marker of the last active day before the span
                    (d(3, 14), "report", 1),
                    (d(6, 1), "login", 2),
                    (d(6, 30), "login", 5),
                ],
                "{backend:?}"
            );
            // Window interaction with its contact role, plus the last inbound before.
            assert_eq!(a1.interactions.len(), 2, "{backend:?}");
            let win = a1.interactions.iter().find(|i| i.at == d(6, 20)).unwrap();
            assert_eq!(win.contact_role, Some(ContactRole::Champion));
            assert_eq!(win.replied, None, "reply_known is false by default");
            assert!(
                a1.interactions
                    .iter()
                    .any(|i| i.at == d(1, 9) && i.direction == InteractionDirection::Inbound)
            );
            assert_eq!(
                a1.pulses,
                [Pulse {
                    at: d(6, 2),
                    value: 4.0
                }]
            );
            assert_eq!(a1.subscriptions.len(), 1);
            assert_eq!(a1.subscriptions[0].end, Some(d(12, 31)));
            assert_eq!(a1.custom_metrics.len(), 1, "only the latest value up to T");
            assert_eq!(a1.custom_metrics[0].value, 2.0);
            assert_eq!(got.spec.custom_metrics[0].name, "roi");
            assert_eq!(a1.score_fields[0].value, 5.0);
            assert_eq!(got.spec.score_fields, ["exec_sponsor"]);
            assert_eq!(a1.webhook_signals.len(), 1, "only the current window");
            assert_eq!(a1.attributes.seats, Some(10.0));
            assert_eq!(a1.attributes.contacts, Some(1));
            assert_eq!(a1.attributes.created_at, Some(d(1, 1)));
            // The inputs feed scoring-core as they are.
            let cat = vitals_scoring_core::Catalogue::new(&got.spec).unwrap();
            let kpis = vitals_scoring_core::compute_kpis(
                &cat,
                &vitals_scoring_core::KpiConfig::default(),
                got.as_of,
                &got.inputs(),
            )
            .unwrap();
            let k = vitals_scoring_core::Builtin::DaysSinceLastActivity.index();
            assert_eq!(kpis.matrix.get(0, k), Some(0.0));
            // Per key event type: login on T, report last on 03-14 (108 days before).
            let per_type = |kpi: &str| kpis.matrix.get(0, cat.index_of(kpi).unwrap());
            assert_eq!(per_type("events_login__days_since"), Some(0.0));
            assert_eq!(per_type("events_report__days_since"), Some(108.0));
            assert_eq!(per_type("events_login__share"), Some(1.0));
            // Scopes.
            let one = load_inputs(
                conn,
                &InputQuery {
                    scope: InputScope::Profile {
                        id: "p".into(),
                        include_unprofiled: false,
                    },
                    include_churned: true,
                    ..q.clone()
                },
            )
            .await
            .unwrap();
            let ids: Vec<&str> = one.accounts.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(ids, ["a1", "a3"]);
            let one = load_inputs(
                conn,
                &InputQuery {
                    scope: InputScope::Accounts(vec!["a2".into()]),
                    ..q.clone()
                },
            )
            .await
            .unwrap();
            assert_eq!(one.accounts.len(), 1);
            assert!(one.data[0].usage.is_empty());
        }
    }
}
