//! Long-running operations (docs/api.md "Long-running operations"): one row per
//! operation started by `StartTraining`, `StartEvaluation` or `StartComputeScores`, so
//! that any replica can answer `GetOperation`, `ListOperations` and `WaitOperation`, and
//! a `CancelOperation` on any replica reaches the one running it (through
//! `cancel_requested`, which the runner polls). Times are milliseconds since the Unix
//! epoch; `updated_ms` is the runner's heartbeat.

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
        let bytes = match manager.get_database_backend() {
            DbBackend::Postgres => "bytea",
            _ => "blob",
        };
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS operations (id varchar NOT NULL PRIMARY KEY, \
             kind varchar NOT NULL, target varchar NOT NULL, role varchar NOT NULL, \
             started_by varchar NOT NULL, done boolean NOT NULL, phase varchar NOT NULL, \
             progress double precision NOT NULL, cancel_requested boolean NOT NULL, \
             error_code integer, error_message varchar, response_type varchar, \
             response {bytes}, created_ms bigint NOT NULL, updated_ms bigint NOT NULL, \
             finished_ms bigint)"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS operations_created ON operations (created_ms, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS operations")
            .await?;
        Ok(())
    }
}
