//! Accounts, contacts, interactions, pulses, subscriptions, custom metrics, webhook
//! signals, event types and custom score fields: one transaction per batch, the same
//! statements on both engines (placeholders numbered on PostgreSQL).

use super::*;

// Accounts and contacts.

const ACCOUNT_COLS: &[&str] = &[
    "id",
    "name",
    "attributes",
    "profile_id",
    "pinned",
    "status",
    "created_at",
    "updated_at",
    "parent_id",
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
        parent_id: r.try_get("", "parent_id")?,
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
///
/// A parent set must exist or be created in the same batch, and may not make an account
/// its own ancestor (the chain of parents is walked up in the transaction, the batch's
/// new parents in place of the stored ones); otherwise nothing is written and the first
/// offending account (in batch order) is returned as a [`ParentError`]. An account is
/// never its own parent (checked by the caller). On PostgreSQL a batch that sets parents
/// takes a transaction-scoped advisory lock, so that two concurrent batches cannot
/// close a cycle between them.
pub async fn upsert_accounts(
    store: &Store,
    accounts: &[AccountUpsert],
    replace_attributes: bool,
) -> Result<Result<Upserted, ParentError>, StoreError> {
    let tx = store.begin_raw().await?;
    let mut sorted: Vec<&AccountUpsert> = accounts.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = sorted.iter().map(|a| a.id.as_str()).collect();
    let existing = load_accounts(&tx, &ids).await?;
    if let Err(e) = check_parents(&tx, accounts, &existing).await? {
        return Ok(Err(e));
    }
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
        rows.push(account_row(a, old, replace_attributes, now));
    }
    insert_rows(
        &tx,
        "accounts",
        ACCOUNT_COLS,
        rows,
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, attributes = excluded.attributes, \
         status = excluded.status, created_at = excluded.created_at, \
         updated_at = excluded.updated_at, parent_id = excluded.parent_id",
        false,
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(counts))
}

/// The row (in [`ACCOUNT_COLS`] order) of an upserted account over its stored form.
fn account_row(
    a: &AccountUpsert,
    old: Option<&AccountRecord>,
    replace_attributes: bool,
    now: DateTime<Utc>,
) -> Vec<Value> {
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
    let parent = match &a.parent {
        Some(p) => p.clone(),
        None => old.and_then(|o| o.parent_id.clone()),
    };
    vec![
        Value::from(a.id.clone()),
        Value::from(name),
        Value::from(serde_json::Value::Object(json)),
        Value::from(old.and_then(|o| o.profile_id.clone())),
        Value::from(false),
        Value::from(status),
        Value::from(created_at),
        Value::from(now),
        Value::from(parent),
    ]
}

/// Key of the advisory lock serialising the batches that set parents (PostgreSQL).
const PARENT_LOCK: i64 = 0x7669_7461_6c73_0017;

/// Checks the parents a batch sets (see [`upsert_accounts`]): `Ok(Err(_))` names the
/// first account (in batch order) whose parent is unknown or closes a cycle.
async fn check_parents<C: ConnectionTrait>(
    c: &C,
    accounts: &[AccountUpsert],
    existing: &HashMap<String, AccountRecord>,
) -> Result<Result<(), ParentError>, DbErr> {
    if !accounts.iter().any(|a| matches!(a.parent, Some(Some(_)))) {
        return Ok(Ok(()));
    }
    if c.get_database_backend() == DbBackend::Postgres {
        c.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [Value::from(PARENT_LOCK)],
        ))
        .await?;
    }
    // The parent of every account as it will be: the batch's, else the stored one.
    let mut parent_of: HashMap<String, Option<String>> = accounts
        .iter()
        .map(|a| {
            let p = match &a.parent {
                Some(p) => p.clone(),
                None => existing.get(&a.id).and_then(|o| o.parent_id.clone()),
            };
            (a.id.clone(), p)
        })
        .collect();
    let outside: Vec<&str> = distinct_sorted(
        accounts
            .iter()
            .filter_map(|a| a.parent.as_ref()?.as_deref())
            .filter(|p| !parent_of.contains_key(*p)),
    );
    for (id, a) in load_accounts(c, &outside).await? {
        parent_of.insert(id, a.parent_id);
    }
    for (index, a) in accounts.iter().enumerate() {
        let Some(Some(p)) = &a.parent else { continue };
        if !parent_of.contains_key(p) {
            let kind = ParentErrorKind::Unknown(p.clone());
            return Ok(Err(ParentError { index, kind }));
        }
        let mut chain = vec![a.id.clone()];
        let mut seen = HashSet::new();
        let mut cur = Some(p.clone());
        while let Some(id) = cur {
            chain.push(id.clone());
            if id == a.id {
                let kind = ParentErrorKind::Cycle(chain);
                return Ok(Err(ParentError { index, kind }));
            }
            if !seen.insert(id.clone()) {
                // A loop above this account, not through it: the account in it is
                // reported when its own turn comes.
                break;
            }
            if !parent_of.contains_key(&id) {
                let loaded = load_accounts(c, &[id.as_str()]).await?;
                let parent = loaded.get(&id).and_then(|r| r.parent_id.clone());
                parent_of.insert(id.clone(), parent);
            }
            cur = parent_of[&id].clone();
        }
    }
    Ok(Ok(()))
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
    /// Only the children of this account (its direct children).
    pub parent_id: Option<String>,
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
    if let Some(p) = &filter.parent_id {
        next += 1;
        conds.push(format!("parent_id = {}", ph(backend, next)));
        values.push(Value::from(p.clone()));
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
    let samples = items.iter().map(|m| {
        (
            m.account_id.as_str(),
            m.name.as_str(),
            m.at,
            Value::from(m.value),
        )
    });
    record_samples(store, "custom_metrics", samples.collect()).await
}

/// Stores webhook signals keyed by (account, name, at), replacing the value.
pub async fn record_webhook_signals(
    store: &Store,
    items: &[SignalRow],
) -> Result<Upserted, StoreError> {
    let samples = items.iter().map(|m| {
        (
            m.account_id.as_str(),
            m.name.as_str(),
            m.at,
            Value::from(m.value),
        )
    });
    record_samples(store, "webhook_signals", samples.collect()).await
}

/// Stores named samples `(account, name, at, value)` in `table` (whose columns are those
/// four, keyed by the first three), replacing the value of a sample already there.
async fn record_samples(
    store: &Store,
    table: &str,
    samples: Vec<(&str, &str, DateTime<Utc>, Value)>,
) -> Result<Upserted, StoreError> {
    let accounts = samples.iter().map(|s| s.0).collect();
    let rows = samples
        .into_iter()
        .map(|(account, name, at, value)| {
            vec![
                Value::from(account),
                Value::from(name),
                Value::from(at),
                value,
            ]
        })
        .collect();
    replace_keyed(
        store,
        table,
        &["account_id", "name", "at", "value"],
        3,
        accounts,
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

/// The account of the contact row of each user id of `users` updated last (a user may be
/// a contact of several accounts; ties go to the greatest account id). Users with no
/// contact row are absent. Segment's `track` without `context.groupId` is attributed
/// to this account (the user's last `identify` or `group`).
pub async fn last_account_of_users(
    store: &Store,
    users: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let c = store.conn();
    let backend = c.get_database_backend();
    let users = distinct_sorted(users.iter().copied());
    let mut best: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    for chunk in users.chunks(max_params(backend).min(10_000)) {
        let mut next = 0;
        let sql = format!(
            "SELECT id, account_id, updated_at FROM contacts WHERE id IN {}",
            in_list(backend, chunk.len(), &mut next)
        );
        let values: Vec<Value> = chunk.iter().map(|s| Value::from(s.to_string())).collect();
        for r in c
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            let user: String = r.try_get("", "id")?;
            let candidate = (r.try_get("", "updated_at")?, r.try_get("", "account_id")?);
            match best.get_mut(&user) {
                Some(current) if *current >= candidate => {}
                Some(current) => *current = candidate,
                None => {
                    best.insert(user, candidate);
                }
            }
        }
    }
    Ok(best.into_iter().map(|(u, (_, a))| (u, a)).collect())
}
