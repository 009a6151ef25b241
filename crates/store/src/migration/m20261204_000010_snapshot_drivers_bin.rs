//! `score_snapshots.drivers_bin`: the drivers of a snapshot in the scoring service's
//! binary form (about 0.7 KB instead of 2.3 KB of JSON for a profile score with ~38 KPIs;
//! see the service's `domain::stored`). Rows written from this migration on carry the
//! drivers there and JSON `null` in `drivers`; rows written before keep their JSON
//! `drivers` and a NULL `drivers_bin`, and are read as before.
//!
//! Why: on PostgreSQL every run validated (`json`), compressed (lz4) and logged ~280 MB
//! of snapshot JSON for 100,000 accounts, most of it the drivers; the binary form is
//! small enough that a snapshot row stays under the TOAST threshold (no compression at
//! all). lz4 is set for the rare large values, as for the JSON columns (migration 7).
//!
//! Down: drops the column, and with it the drivers of the rows written since (their
//! `drivers` is `null`): the other columns of those snapshots stay readable.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const LZ4: &str = "DO $$ BEGIN \
    EXECUTE 'ALTER TABLE score_snapshots ALTER COLUMN drivers_bin SET COMPRESSION lz4'; \
    EXCEPTION WHEN OTHERS THEN \
    RAISE NOTICE 'score_snapshots.drivers_bin: lz4 compression not available (%), pglz kept', SQLERRM; \
    END $$";

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared("ALTER TABLE score_snapshots ADD COLUMN drivers_bin bytea")
                    .await?;
                db.execute_unprepared(LZ4).await?;
            }
            _ => {
                db.execute_unprepared("ALTER TABLE score_snapshots ADD COLUMN drivers_bin BLOB")
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE score_snapshots DROP COLUMN drivers_bin")
            .await?;
        Ok(())
    }
}
