//! Snapshot JSON as `json` on PostgreSQL: `score_snapshots.sub_scores` and `.drivers` are
//! written and read whole by the scoring service only (never queried inside), so the
//! `jsonb` parse on every write (about 250 MB of JSON for 100,000 snapshots) bought
//! nothing. `json` keeps the text as written (checked for validity, not re-encoded), and
//! its TOAST compression is lz4 instead of pglz when the server has lz4 (skipped with a
//! notice when it does not). Measured on PostgreSQL 15, 100,000 values of ~2.1 KB
//! inserted server-side: `jsonb` (pglz) 11.2 s, `json` (pglz) 6.5 s, `json` (lz4) 3.1-3.4 s;
//! reading them back as text 2.7 s (`jsonb`) vs 1.7 s (`json`, lz4).
//!
//! SQLite stores JSON as text either way: nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE score_snapshots \
    ALTER COLUMN sub_scores TYPE json USING sub_scores::json, \
    ALTER COLUMN drivers TYPE json USING drivers::json";

/// lz4 needs a server built with it; the type change above does not depend on it.
const LZ4: &str = "DO $$ BEGIN \
    EXECUTE 'ALTER TABLE score_snapshots ALTER COLUMN sub_scores SET COMPRESSION lz4, \
             ALTER COLUMN drivers SET COMPRESSION lz4'; \
    EXCEPTION WHEN OTHERS THEN \
    RAISE NOTICE 'score_snapshots: lz4 compression not available (%), pglz kept', SQLERRM; \
    END $$";

const DOWN: &str = "ALTER TABLE score_snapshots \
    ALTER COLUMN sub_scores SET COMPRESSION default, \
    ALTER COLUMN drivers SET COMPRESSION default, \
    ALTER COLUMN sub_scores TYPE jsonb USING sub_scores::jsonb, \
    ALTER COLUMN drivers TYPE jsonb USING drivers::jsonb";

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(UP).await?;
        db.execute_unprepared(LZ4).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
