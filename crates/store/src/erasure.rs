//! Erasure: every row of an account removed from every table, in one transaction
//! (`DeleteAccount`, `DeleteAccounts`; docs/security.md "Erasure").
//!
//! [`ERASED`] is the one list of the tables that hold rows of an account and the column
//! naming it ([`ERASED_WITH_EVENTS`]: the webhook deliveries and attempts of its outbox
//! events, which name it only through them); [`KEPT`] lists every other table of the
//! schema and why erasure leaves it.
//! The store test `every_table_is_erased_or_kept` reads the schema's table list: a new
//! table in neither list (or a table with an `account_id` column in [`KEPT`]) fails it,
//! so a migration that adds a table must say here how erasure treats it.
//!
//! Besides the deletes, erasure
//! - makes the children of an erased account top-level (`accounts.parent_id` cleared),
//!   so that no row names the erased id;
//! - takes the erased events out of the event types' counts (from their daily roll-ups,
//!   which count each stored event exactly once);
//! - rewrites the scope `account:<id>` of the scoring runs that scored one erased account
//!   to `account:(erased)`;
//! - records a finished run row of scope `erasure` (no account scored), which moves the
//!   scoring service's cache generation, so no replica serves an erased score from memory
//!   longer than its refresh interval.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::{Store, StoreError};

/// Every table holding rows of an account, and the column with the account id, in the
/// lock order of the ingestion writes (accounts first, then the kinds' tables, then the
/// roll-ups; see `ingestion`), so that erasure and concurrent writes never deadlock.
pub const ERASED: &[(&str, &str)] = &[
    ("accounts", "id"),
    ("contacts", "account_id"),
    ("events", "account_id"),
    ("usage_daily_users", "account_id"),
    ("usage_daily", "account_id"),
    ("interactions", "account_id"),
    ("pulses", "account_id"),
    ("subscriptions", "account_id"),
    ("custom_metrics", "account_id"),
    ("custom_score_fields", "account_id"),
    ("custom_score_field_history", "account_id"),
    ("webhook_signals", "account_id"),
    ("account_assignments", "account_id"),
    ("outcomes", "account_id"),
    ("score_snapshots", "account_id"),
    ("score_latest", "account_id"),
    ("score_overrides", "account_id"),
    ("score_override_audit", "account_id"),
    ("webhook_events", "account_id"),
];

/// Tables of PostgreSQL only holding rows of an account, erased just before `events`
/// (the ingestion lock order): the idempotency keys of the partitioned events
/// (migration `m20261207_000019`).
pub const ERASED_POSTGRES: &[(&str, &str)] = &[("event_keys", "account_id")];

/// Tables with rows of an account that do not name it: the webhook deliveries of its
/// outbox events and their attempts, with the condition picking them (`{list}`: the ids).
/// Deleted before [`ERASED`] (which deletes the events they hang from).
pub const ERASED_WITH_EVENTS: &[(&str, &str)] = &[
    (
        "webhook_attempts",
        "delivery_id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_events e \
         ON e.id = d.event_id WHERE e.account_id IN ({list}))",
    ),
    (
        "webhook_deliveries",
        "event_id IN (SELECT id FROM webhook_events WHERE account_id IN ({list}))",
    ),
];

/// Every table of the schema with no row per account, and what of an erased account
/// remains in it (docs/security.md lists the same).
pub const KEPT: &[(&str, &str)] = &[
    ("seaql_migrations", "schema versions"),
    ("sqlite_sequence", "SQLite's row-id counters"),
    ("auth_tokens", "token hashes"),
    ("health_profiles", "profile definitions"),
    ("profile_settings", "profile settings"),
    ("scorecards", "scorecard definitions"),
    (
        "score_runs",
        "aggregate counts of accounts scored; a run's scope naming an erased account is rewritten",
    ),
    (
        "models",
        "learned weights and metrics: aggregates over every account of a profile",
    ),
    (
        "event_types",
        "event type names; counts lose the erased events",
    ),
    (
        "event_type_counts",
        "per-connection event counts by type (no account)",
    ),
    ("custom_metric_definitions", "metric definitions"),
    (
        "event_retention",
        "the retention watermark of raw events (no account)",
    ),
    (
        "kpi_names",
        "the KPI names stored snapshots refer to by number (no account)",
    ),
    (
        "operations",
        "long-running operations: kind, target profile or scope, phase, result (no account)",
    ),
    (
        "webhook_subscriptions",
        "webhook endpoints and their settings (no account)",
    ),
    (
        "leases",
        "which replica does once-per-cluster work (no account)",
    ),
];

/// Most accounts erased by one call (`DeleteAccounts`; more is `INVALID_ARGUMENT`).
pub const MAX_ERASE_BATCH: usize = 1_000;

/// Scope written in place of `account:<id>` in the runs of an erased account.
pub const ERASED_SCOPE: &str = "account:(erased)";

/// What an erasure removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// The ids (of those asked for) that had at least one row somewhere.
    pub found: Vec<String>,
    /// Rows deleted, over every table.
    pub rows: u64,
}

/// `?` placeholders for `n` values (renumbered `$n` on PostgreSQL by the caller).
fn marks(n: usize) -> String {
    vec!["?"; n].join(",")
}

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, crate::placeholders(backend, sql), values)
}

fn id_values(ids: &[&str]) -> Vec<Value> {
    ids.iter().map(|s| Value::from(s.to_string())).collect()
}

/// Removes every row of the accounts `ids` (at most [`MAX_ERASE_BATCH`], checked by the
/// caller) from every table of [`ERASED`], in one transaction: all of it or nothing.
/// Ids with no row anywhere are ignored (erasure is idempotent).
pub async fn erase_accounts(store: &Store, ids: &[String]) -> Result<Erased, StoreError> {
    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Erased::default());
    }
    let tx = store.begin_raw().await?;
    let backend = tx.get_database_backend();
    let list = marks(ids.len());

    // Which ids have any row, before anything is deleted.
    let union = ERASED
        .iter()
        .map(|(t, c)| format!("SELECT {c} AS id FROM {t} WHERE {c} IN ({list})"))
        .collect::<Vec<_>>()
        .join(" UNION ");
    let values: Vec<Value> = ERASED.iter().flat_map(|_| id_values(&ids)).collect();
    let mut found: Vec<String> = tx
        .query_all_raw(stmt(backend, &union, values))
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "id"))
        .collect::<Result<_, _>>()?;
    found.sort_unstable();

    let mut rows = 0u64;
    for (table, condition) in ERASED_WITH_EVENTS {
        let sql = format!(
            "DELETE FROM {table} WHERE {}",
            condition.replace("{list}", &list)
        );
        rows += tx
            .execute_raw(stmt(backend, &sql, id_values(&ids)))
            .await?
            .rows_affected();
    }
    let mut per_type: Vec<(String, i64)> = Vec::new();
    for (table, col) in ERASED {
        if *table == "usage_daily" {
            // The erased events' counts per type, from the roll-ups deleted here.
            let sql = format!(
                "DELETE FROM usage_daily WHERE account_id IN ({list}) RETURNING event_type, CAST(count AS BIGINT) AS n"
            );
            let deleted = tx
                .query_all_raw(stmt(backend, &sql, id_values(&ids)))
                .await?;
            rows += deleted.len() as u64;
            for r in deleted {
                let t: String = r.try_get("", "event_type")?;
                let n: i64 = r.try_get::<i64>("", "n")?;
                match per_type.iter_mut().find(|(name, _)| *name == t) {
                    Some((_, total)) => *total += n,
                    None => per_type.push((t, n)),
                }
            }
            continue;
        }
        if *table == "events" && backend == DbBackend::Postgres {
            for (table, col) in ERASED_POSTGRES {
                let sql = format!("DELETE FROM {table} WHERE {col} IN ({list})");
                tx.execute_raw(stmt(backend, &sql, id_values(&ids))).await?;
            }
        }
        let sql = format!("DELETE FROM {table} WHERE {col} IN ({list})");
        rows += tx
            .execute_raw(stmt(backend, &sql, id_values(&ids)))
            .await?
            .rows_affected();
    }

    // The erased accounts' children become top-level accounts.
    tx.execute_raw(stmt(
        backend,
        &format!("UPDATE accounts SET parent_id = NULL WHERE parent_id IN ({list})"),
        id_values(&ids),
    ))
    .await?;

    // Event types last (the ingestion lock order), in name order.
    per_type.sort();
    for (name, n) in per_type {
        tx.execute_raw(stmt(
            backend,
            "UPDATE event_types SET event_count = event_count - ? WHERE name = ?",
            vec![Value::from(n), Value::from(name)],
        ))
        .await?;
    }

    let scopes: Vec<Value> = ids
        .iter()
        .map(|id| Value::from(format!("account:{id}")))
        .collect();
    let mut values = vec![Value::from(ERASED_SCOPE)];
    values.extend(scopes);
    tx.execute_raw(stmt(
        backend,
        &format!("UPDATE score_runs SET scope = ? WHERE scope IN ({list})"),
        values,
    ))
    .await?;
    if !found.is_empty() {
        let now = Utc::now();
        tx.execute_raw(stmt(
            backend,
            "INSERT INTO score_runs (scope, started_at, finished_at, accounts_scored, details) \
             VALUES (?, ?, ?, 0, ?)",
            vec![
                Value::from("erasure"),
                Value::from(now),
                Value::from(now),
                Value::from(serde_json::json!({ "erased_accounts": found.len() })),
            ],
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(Erased { found, rows })
}

#[cfg(test)]
mod tests;
