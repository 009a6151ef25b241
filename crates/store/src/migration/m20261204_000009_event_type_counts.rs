//! `event_type_counts`: the running count of events per event type, split in slots, so
//! that concurrent PostgreSQL event batches do not all update the same `event_types` row.
//!
//! Before, every batch added its per-type counts to `event_types.event_count`: with 16
//! batches in their transactions at once, each waited for the others' row locks on the
//! few event-type rows (held until the commit, so commits could not share a WAL flush).
//! Now a PostgreSQL batch adds to the `(name, slot)` row of its connection's slot
//! (`pg_backend_pid() % 64`): batches on different connections touch different rows. A
//! type's count is `event_types.event_count` (what SQLite writers and the rows stored
//! before this migration hold) plus the sum of its slots; see
//! `vitals_store::ingestion::list_event_types`. At most 64 rows per event type.
//!
//! The table exists on SQLite too (same read query), where writers keep adding to
//! `event_types.event_count` (one writer at a time: no contention) and it stays empty.
//! `down` folds the slots back into `event_types.event_count` before dropping it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `name` compares bytes like `event_types.name` (COLLATE "C" on PostgreSQL since
        // m20261204_000008; SQLite's default).
        let collate = match manager.get_database_backend() {
            DbBackend::Postgres => " COLLATE \"C\"",
            _ => "",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE TABLE IF NOT EXISTS event_type_counts (\
                 name varchar{collate} NOT NULL, slot integer NOT NULL, \
                 event_count bigint NOT NULL, PRIMARY KEY (name, slot))"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE event_types SET event_count = event_count + \
             (SELECT CAST(sum(c.event_count) AS bigint) FROM event_type_counts c \
              WHERE c.name = event_types.name) \
             WHERE name IN (SELECT name FROM event_type_counts)",
        )
        .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS event_type_counts")
            .await?;
        Ok(())
    }
}
