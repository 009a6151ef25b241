//! The load itself: the accounts, the names, the usage roll-ups of the span (through the
//! backend's fast path: `sqlite` on a SQLite file, `postgres` for a whole-portfolio run
//! on PostgreSQL, else sqlx) and the other statements, run while the usage is read and
//! applied in a fixed order so names are interned the same way whatever the timing.

use std::collections::HashSet;
use std::path::PathBuf;

use super::*;

/// The days and times a load reads (see the module doc of `inputs`).
struct Bounds {
    /// The day T.
    t: NaiveDate,
    /// Start of the day after T (exclusive end of every timestamp range).
    end: DateTime<Utc>,
    /// The usage span's day before its first (exclusive).
    usage_lo: NaiveDate,
    /// Start of the two interaction windows.
    conv_lo: DateTime<Utc>,
    /// Start of the webhook signals' window.
    signal_lo: DateTime<Utc>,
}

impl Bounds {
    fn new(q: &InputQuery) -> Self {
        let t = q.as_of;
        let w = u64::from(q.window_days.max(1));
        let span = w * (u64::from(q.history_windows) + 1);
        Self {
            t,
            end: day_start(t + Days::new(1)),
            usage_lo: t - Days::new(span),
            conv_lo: day_start(t - Days::new(2 * w) + Days::new(1)),
            signal_lo: day_start(t - Days::new(w) + Days::new(1)),
        }
    }
}

/// The names the rows refer to, interned as they are met.
#[derive(Default)]
struct Names {
    events: Interner,
    /// Ids of the event types declared key.
    key: Vec<u32>,
    /// Event types declared in `event_types` (the first ids).
    declared_events: usize,
    metrics: Interner,
    /// Declared directions of the first metrics.
    metric_dirs: Vec<Direction>,
    fields: Interner,
    signals: Interner,
    contacts: Interner,
}

impl Names {
    /// The declared event types and metrics (first, so ids are stable across runs).
    async fn declared(conn: &DatabaseConnection) -> Result<Self, DbErr> {
        let backend = conn.get_database_backend();
        let mut names = Self::default();
        let sql = "SELECT name, is_key FROM event_types ORDER BY name";
        for r in conn.query_all_raw(stmt(backend, sql, vec![])).await? {
            let name: String = r.try_get_by_index(0)?;
            let is_key: bool = r.try_get_by_index(1)?;
            let id = names.events.id(&name);
            if is_key {
                names.key.push(id);
            }
        }
        names.declared_events = names.events.names.len();
        let sql = "SELECT name, direction FROM custom_metric_definitions ORDER BY name";
        for r in conn.query_all_raw(stmt(backend, sql, vec![])).await? {
            let name: String = r.try_get_by_index(0)?;
            let dir: String = r.try_get_by_index(1)?;
            names.metrics.id(&name);
            names.metric_dirs.push(metric_direction(&dir));
        }
        Ok(names)
    }

    /// The catalogue spec of these names.
    fn spec(self) -> CatalogueSpec {
        let key: HashSet<String> = self
            .key
            .iter()
            .map(|&id| self.events.names[id as usize].clone())
            .collect();
        // Metrics met in the data only (past the declared ones) are higher-is-better.
        let lower: HashSet<String> = self
            .metrics
            .names
            .iter()
            .zip(&self.metric_dirs)
            .filter(|(_, d)| **d == Direction::LowerIsBetter)
            .map(|(n, _)| n.clone())
            .collect();
        let metrics: Vec<&str> = self.metrics.names.iter().map(String::as_str).collect();
        decode::catalogue_spec(
            &self.events.names,
            (!self.key.is_empty()).then_some(&key),
            &metrics,
            &lower,
            self.fields.names,
        )
    }

    /// Undeclared event types in name order: the two halves of the usage read arrive in
    /// no fixed order, so first-seen order would vary from run to run.
    fn sort_undeclared_events(&mut self, data: &mut [AccountData]) {
        let (declared, events) = (self.declared_events, &mut self.events);
        if events.names.len() <= declared + 1 {
            return;
        }
        let mut order: Vec<usize> = (declared..events.names.len()).collect();
        order.sort_by(|&a, &b| events.names[a].cmp(&events.names[b]));
        if !order.windows(2).any(|w| w[0] > w[1]) {
            return;
        }
        let mut remap: Vec<u32> = (0..events.names.len() as u32).collect();
        for (k, &old) in order.iter().enumerate() {
            remap[old] = (declared + k) as u32;
        }
        let mut names = events.names[..declared].to_vec();
        names.extend(order.iter().map(|&o| events.names[o].clone()));
        events.ids = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        events.names = names;
        for d in data {
            for u in &mut d.usage {
                u.event_type = remap[u.event_type as usize];
            }
        }
    }
}

/// The accounts in scope (sorted by id), their positions, and their inputs as they fill.
#[derive(Default)]
struct Loading {
    accounts: Vec<AccountMeta>,
    index: HashMap<String, usize>,
    data: Vec<AccountData>,
}

impl Loading {
    /// Sorts `accounts` and starts each one's inputs with its attributes.
    fn new(mut accounts: Vec<AccountMeta>) -> Self {
        // The database's collation may order ids differently from byte order.
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        let index = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        let data = accounts
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
        Self {
            accounts,
            index,
            data,
        }
    }

    /// The position of the row's account (column 0), `None` when it is not loaded.
    fn slot(&self, r: &QueryResult) -> Result<Option<usize>, DbErr> {
        let id: String = r.try_get_by_index(0)?;
        Ok(self.index.get(&id).copied())
    }
}

/// Connections of `conn`'s pool.
fn pool_size(conn: &DatabaseConnection) -> u32 {
    match conn.get_database_backend() {
        DbBackend::Sqlite => conn
            .get_sqlite_connection_pool()
            .options()
            .get_max_connections(),
        DbBackend::Postgres => conn
            .get_postgres_connection_pool()
            .options()
            .get_max_connections(),
        _ => 1,
    }
}

/// The accounts in scope, in the database's order (through rusqlite from `file`).
async fn read_accounts(
    conn: &DatabaseConnection,
    file: Option<&PathBuf>,
    filter: &str,
    values: Vec<Value>,
) -> Result<Vec<AccountMeta>, DbErr> {
    let sql = format!(
        "SELECT a.id, a.name, a.profile_id, a.status, a.attributes, a.created_at, a.parent_id \
         FROM accounts a WHERE 1 = 1{filter} ORDER BY a.id"
    );
    if let Some(file) = file {
        let (file, args) = (file.clone(), args_of(&values)?);
        return tokio::task::spawn_blocking(move || sqlite::read_accounts(&file, &sql, &args))
            .await
            .map_err(|e| DbErr::Custom(format!("load_inputs: accounts read task: {e}")))?;
    }
    let backend = conn.get_database_backend();
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    let mut accounts = Vec::with_capacity(rows.len());
    for r in &rows {
        accounts.push(AccountMeta {
            id: r.try_get_by_index(0)?,
            name: r.try_get_by_index(1)?,
            profile_id: r.try_get_by_index(2)?,
            status: r.try_get_by_index(3)?,
            attributes: r.try_get_by_index(4)?,
            created_at: r.try_get_by_index(5)?,
            parent_id: r.try_get_by_index(6)?,
        });
    }
    Ok(accounts)
}

/// The first day of any roll-up, from the rows of `SELECT MIN(day)`.
fn first_day(rows: &[QueryResult]) -> Result<Option<NaiveDate>, DbErr> {
    Ok(rows
        .first()
        .map(|r| r.try_get_by_index::<Option<NaiveDate>>(0))
        .transpose()?
        .flatten())
}

/// [`load_inputs`], splitting the usage read from `split_min` accounts on.
pub(super) async fn load(
    conn: &DatabaseConnection,
    q: &InputQuery,
    split_min: usize,
    read_path: ReadPath,
) -> Result<LoadedInputs, DbErr> {
    let backend = conn.get_database_backend();
    let clock = std::time::Instant::now();
    let b = Bounds::new(q);
    let (filter, fvals) = scope_filter(q);
    // A SQLite file is read through rusqlite (see `sqlite`).
    let file = match (backend, read_path) {
        (DbBackend::Sqlite, ReadPath::Auto) => sqlite::database_file(conn).await?,
        _ => None,
    };
    let accounts = read_accounts(conn, file.as_ref(), &filter, fvals.clone()).await?;
    // The middle account in the database's order: the usage read splits there.
    let pool_size = pool_size(conn);
    let split: Option<String> = (accounts.len() >= split_min && pool_size >= 2)
        .then(|| accounts[accounts.len() / 2].id.clone());
    let mut l = Loading::new(accounts);
    let accounts_ms = clock.elapsed().as_millis() as u64;
    let mut names = Names::declared(conn).await?;
    let data_start_sql = stmt(backend, "SELECT MIN(day) FROM usage_daily", vec![]);
    if l.accounts.is_empty() {
        let data_start = first_day(&conn.query_all_raw(data_start_sql).await?)?;
        return Ok(finish(b.t, names, data_start, l));
    }
    let scope = Scope {
        filter: &filter,
        values: &fvals,
        all: q.scope == InputScope::All,
    };
    let rest = rest_statements(backend, &b, &scope, data_start_sql);
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
    let usage_from = clock.elapsed().as_millis() as u64;
    let via_rusqlite = file.is_some();
    let read = UsageRead {
        conn,
        bounds: (b.usage_lo, b.t),
        scope: &scope,
        file,
        split,
        copy: backend == DbBackend::Postgres && read_path == ReadPath::Auto && scope.all,
    };
    let usage = read.run(&mut l, &mut names.events);
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
    apply_usage_markers(&next_rows()?, &mut l, &mut names)?;
    names.sort_undeclared_events(&mut l.data);
    let markers_ms = clock.elapsed().as_millis() as u64 - usage_from - usage_ms;
    apply_interactions(&next_rows()?, &mut l, &mut names)?;
    apply_interaction_markers(&next_rows()?, &mut l)?;
    apply_contacts(&next_rows()?, &mut l)?;
    apply_pulses(&next_rows()?, &mut l)?;
    apply_subscriptions(&next_rows()?, &mut l)?;
    apply_custom_metrics(&next_rows()?, &mut l, &mut names)?;
    apply_score_fields(&next_rows()?, &mut l, &mut names)?;
    apply_webhook_signals(&next_rows()?, &mut l, &mut names)?;
    tracing::debug!(
        accounts = l.accounts.len(),
        accounts_ms,
        usage_ms,
        via_rusqlite,
        markers_ms,
        elapsed_ms = clock.elapsed().as_millis() as u64,
        "load_inputs"
    );
    Ok(finish(b.t, names, data_start, l))
}

/// What was loaded, as [`LoadedInputs`].
fn finish(
    as_of: NaiveDate,
    names: Names,
    data_start: Option<NaiveDate>,
    l: Loading,
) -> LoadedInputs {
    LoadedInputs {
        as_of,
        spec: names.spec(),
        data_start,
        accounts: l.accounts,
        data: l.data,
    }
}

/// The account filter of a load (on alias `a`), its values, and whether it is every
/// account.
struct Scope<'a> {
    filter: &'a str,
    values: &'a [Value],
    all: bool,
}

impl Scope<'_> {
    /// `head` then the filter's values.
    fn with(&self, mut head: Vec<Value>) -> Vec<Value> {
        head.extend(self.values.iter().cloned());
        head
    }

    /// The usage statements join `accounts` for a narrower scope only: for every account,
    /// the rows of accounts out of scope (churned) are dropped as they arrive (they are
    /// not in the index), which spares a look-up in `accounts` per roll-up row. The FROM
    /// clause, the filter and its values.
    fn usage(&self, head: Vec<Value>) -> (&'static str, &str, Vec<Value>) {
        if self.all {
            ("usage_daily u", "", head)
        } else {
            (
                "usage_daily u JOIN accounts a ON a.id = u.account_id",
                self.filter,
                self.with(head),
            )
        }
    }
}

/// The other statements (every one but the usage read of the span): run while the usage
/// is read, on other pooled connections, their rows applied after it in this order (so
/// names are interned in the same order as when run one after the other).
fn rest_statements(
    backend: DbBackend,
    b: &Bounds,
    scope: &Scope<'_>,
    data_start_sql: Statement,
) -> Vec<Statement> {
    let (end, usage_lo, conv_lo, signal_lo) = (b.end, b.usage_lo, b.conv_lo, b.signal_lo);
    let filter = scope.filter;
    let with = |head: Vec<Value>| scope.with(head);
    let (usage_from_sql, usage_filter, usage_values) = scope.usage(vec![Value::from(usage_lo)]);
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
            usage_values,
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
    rest
}

/// A usage read of the span: through rusqlite on a SQLite file, binary COPY for every
/// account on PostgreSQL (`copy`), else streamed through sqlx.
struct UsageRead<'a> {
    conn: &'a DatabaseConnection,
    /// The span: days `(lo, t]`.
    bounds: (NaiveDate, NaiveDate),
    scope: &'a Scope<'a>,
    file: Option<PathBuf>,
    /// The account id the read splits at, if in two halves.
    split: Option<String>,
    copy: bool,
}

impl UsageRead<'_> {
    /// Reads the roll-ups of the span into `l` (two halves at once for a large scope).
    /// Rows of one account mostly come together: each stream remembers the last account
    /// it saw and looks an id up only when it changes.
    async fn run(self, l: &mut Loading, events: &mut Interner) -> Result<(), DbErr> {
        let backend = self.conn.get_database_backend();
        let (lo, t) = self.bounds;
        let (from, filter, values) = self.scope.usage(vec![Value::from(lo), Value::from(t)]);
        let sql = format!(
            "SELECT u.account_id, u.day, u.event_type, u.count, u.distinct_users, u.value_sum \
             FROM {from} WHERE u.day > ? AND u.day <= ?{filter}"
        );
        let statements = split_statements(
            backend,
            &sql,
            &values,
            "u.account_id",
            self.split.as_deref(),
        )?;
        if let Some(file) = self.file {
            // SQLite file: read through rusqlite on connections of its own (see `sqlite`).
            let read = sqlite::ReadUsage {
                file,
                statements,
                split: self.split,
                accounts: std::mem::take(&mut l.accounts),
                index: std::mem::take(&mut l.index),
                data: std::mem::take(&mut l.data),
                events: std::mem::take(events),
            };
            let read = tokio::task::spawn_blocking(move || read.run())
                .await
                .map_err(|e| DbErr::Custom(format!("load_inputs: usage read task: {e}")))??;
            (l.accounts, l.index, l.data, *events) = read;
            return Ok(());
        }
        if self.copy {
            // PostgreSQL, every account: binary COPY (see `postgres`).
            return postgres::read_usage(
                self.conn.get_postgres_connection_pool(),
                self.bounds,
                self.split.as_deref(),
                &l.accounts,
                &l.index,
                &mut l.data,
                events,
            )
            .await;
        }
        let conn = self.conn;
        let mut last = [usize::MAX; 2];
        stream_rows!(conn, statements, |s, (id: &str, day: NaiveDate, name: &str, count: i64, users: i64, value_sum: f64)| {
            let i = match last[s] {
                i if i < l.accounts.len() && l.accounts[i].id == id => i,
                _ => match l.index.get(id) {
                    Some(&i) => {
                        last[s] = i;
                        i
                    }
                    None => continue,
                },
            };
            l.data[i].usage.push(DailyUsage {
                day,
                event_type: events.id(name),
                count: clamp_u32(count),
                distinct_users: clamp_u32(users),
                value_sum,
            });
        });
        Ok(())
    }
}

/// The last active day before the span, one marker per event type.
fn apply_usage_markers(
    rows: &[QueryResult],
    l: &mut Loading,
    names: &mut Names,
) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        l.data[i].usage.push(DailyUsage {
            day: r.try_get_by_index(2)?,
            event_type: names.events.id(&name),
            count: 1,
            distinct_users: 0,
            value_sum: 0.0,
        });
    }
    Ok(())
}

/// The interactions of the two windows, with the contact's role.
fn apply_interactions(
    rows: &[QueryResult],
    l: &mut Loading,
    names: &mut Names,
) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
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
        l.data[i].interactions.push(Interaction {
            at: at.date_naive(),
            channel,
            direction: direction(&dir),
            replied: known.then_some(replied),
            contact: contact.as_deref().map(|c| names.contacts.id(c)),
            contact_role: role_s.as_deref().and_then(role),
            sentiment: r.try_get_by_index(8)?,
        });
    }
    Ok(())
}

/// The last interaction before the windows, one marker per direction.
fn apply_interaction_markers(rows: &[QueryResult], l: &mut Loading) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let dir: String = r.try_get_by_index(1)?;
        let at: DateTime<Utc> = r.try_get_by_index(2)?;
        l.data[i].interactions.push(Interaction {
            at: at.date_naive(),
            channel: Channel::Email,
            direction: direction(&dir),
            replied: None,
            contact: None,
            contact_role: None,
            sentiment: None,
        });
    }
    Ok(())
}

/// The number of contacts per account.
fn apply_contacts(rows: &[QueryResult], l: &mut Loading) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let n: i64 = r.try_get_by_index(1)?;
        l.data[i].attributes.contacts = Some(clamp_u32(n));
    }
    Ok(())
}

/// The pulses up to T.
fn apply_pulses(rows: &[QueryResult], l: &mut Loading) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let v: i32 = r.try_get_by_index(1)?;
        let at: DateTime<Utc> = r.try_get_by_index(2)?;
        l.data[i].pulses.push(Pulse {
            at: at.date_naive(),
            value: f64::from(v),
        });
    }
    Ok(())
}

/// Every subscription.
fn apply_subscriptions(rows: &[QueryResult], l: &mut Loading) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let start: DateTime<Utc> = r.try_get_by_index(1)?;
        let end_at: Option<DateTime<Utc>> = r.try_get_by_index(2)?;
        let period: i32 = r.try_get_by_index(7)?;
        l.data[i].subscriptions.push(Subscription {
            start: start.date_naive(),
            end: end_at.map(|e| e.date_naive()),
            mrr: r.try_get_by_index(3)?,
            quantity: r.try_get_by_index(4)?,
            add_on: r.try_get_by_index(5)?,
            discount: r.try_get_by_index(6)?,
            billing_period_months: u16::try_from(period.max(0)).unwrap_or(u16::MAX),
        });
    }
    Ok(())
}

/// The custom metric values at each (account, metric)'s latest time up to T.
fn apply_custom_metrics(
    rows: &[QueryResult],
    l: &mut Loading,
    names: &mut Names,
) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        let at: DateTime<Utc> = r.try_get_by_index(2)?;
        let metric = names.metrics.id(&name);
        l.data[i].custom_metrics.push(CustomMetricValue {
            metric,
            at: at.date_naive(),
            value: r.try_get_by_index(3)?,
        });
    }
    Ok(())
}

/// The custom score fields set at or before T.
fn apply_score_fields(
    rows: &[QueryResult],
    l: &mut Loading,
    names: &mut Names,
) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        let v: i32 = r.try_get_by_index(2)?;
        l.data[i].score_fields.push(ScoreFieldValue {
            field: names.fields.id(&name),
            value: f64::from(v),
        });
    }
    Ok(())
}

/// The webhook signals of the current window.
fn apply_webhook_signals(
    rows: &[QueryResult],
    l: &mut Loading,
    names: &mut Names,
) -> Result<(), DbErr> {
    for r in rows {
        let Some(i) = l.slot(r)? else { continue };
        let name: String = r.try_get_by_index(1)?;
        let v: i32 = r.try_get_by_index(2)?;
        let at: DateTime<Utc> = r.try_get_by_index(3)?;
        l.data[i].webhook_signals.push(WebhookSignal {
            signal: names.signals.id(&name),
            at: at.date_naive(),
            value: f64::from(v),
        });
    }
    Ok(())
}
