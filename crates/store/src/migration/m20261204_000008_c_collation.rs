//! Identifier columns compare bytes on PostgreSQL: every `varchar` column that holds an
//! id or a key name (account, contact, event, user, profile, scorecard ids, event types,
//! metric, field and signal names, outcome kinds) gets `COLLATE "C"`.
//!
//! Why: a database created with a libc locale (`C.UTF-8`, `en_US.UTF-8`, ...) compares
//! text through `strcoll`, on every B-tree step of every index insert and lookup. The
//! event path inserts about 1,650 index entries per 1,000-event batch into text-keyed
//! indexes (`events`, `usage_daily`, `usage_daily_users`), so the comparisons are a
//! visible share of its CPU; under `"C"` they are `memcmp`.
//!
//! What changes for readers: `ORDER BY` of these columns is byte order, which for UTF-8
//! is code point order: the same as a `C.UTF-8` database already gave (glibc sorts
//! `C.UTF-8` by code point), different from a linguistic locale such as `en_US.UTF-8`
//! (upper case before lower case, accents after `z`). The listing RPCs already promised
//! byte order (they asked for `COLLATE "C"` in the query). Equality is the same under
//! every deterministic collation, so keys, conflicts and joins match the same rows.
//! Columns shown to people (names, descriptions, notes) and enum strings keep the
//! database's collation.
//!
//! Only the collation changes (same `varchar` type): PostgreSQL keeps the table's rows
//! as they are and rebuilds the indexes over the changed columns, one `ALTER TABLE` per
//! table. SQLite compares bytes already (`BINARY`): nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each table with its identifier columns (every one `varchar` without a length).
const KEY_COLUMNS: &[(&str, &[&str])] = &[
    ("accounts", &["id", "profile_id"]),
    ("account_assignments", &["account_id", "profile_id"]),
    ("contacts", &["account_id", "id"]),
    ("custom_metric_definitions", &["name"]),
    ("custom_metrics", &["account_id", "name"]),
    ("custom_score_field_history", &["account_id", "field"]),
    ("custom_score_fields", &["account_id", "field"]),
    ("event_types", &["name"]),
    (
        "events",
        &["account_id", "event_id", "user_id", "event_type"],
    ),
    ("health_profiles", &["id"]),
    ("interactions", &["account_id", "id", "contact_id"]),
    ("models", &["profile_id"]),
    ("outcomes", &["account_id", "kind"]),
    ("profile_settings", &["profile_id"]),
    ("pulses", &["account_id"]),
    (
        "score_latest",
        &["account_id", "scorecard_id", "profile_id"],
    ),
    (
        "score_snapshots",
        &["account_id", "scorecard_id", "profile_id"],
    ),
    ("scorecards", &["id"]),
    ("subscriptions", &["account_id", "id"]),
    ("usage_daily", &["account_id", "event_type"]),
    (
        "usage_daily_users",
        &["account_id", "event_type", "user_id"],
    ),
    ("webhook_signals", &["account_id", "name"]),
];

/// Gives every column of [`KEY_COLUMNS`] `collation`, one `ALTER TABLE` per table
/// (PostgreSQL; nothing on SQLite).
async fn set_collation(manager: &SchemaManager<'_>, collation: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for (table, cols) in KEY_COLUMNS {
        let alters: Vec<String> = cols
            .iter()
            .map(|c| format!("ALTER COLUMN {c} TYPE varchar COLLATE {collation}"))
            .collect();
        manager
            .get_connection()
            .execute_unprepared(&format!("ALTER TABLE {table} {}", alters.join(", ")))
            .await?;
    }
    Ok(())
}

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_collation(manager, "\"C\"").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_collation(manager, "\"default\"").await
    }
}
