//! Manual score overrides (docs/scoring-service.md "Overrides"): the override in force
//! per (account, scorecard), and the audit trail of every set and clear. Times are
//! milliseconds since the Unix epoch.

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
        let serial = match manager.get_database_backend() {
            DbBackend::Postgres => "bigserial PRIMARY KEY",
            _ => "integer PRIMARY KEY AUTOINCREMENT",
        };
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS score_overrides (account_id varchar NOT NULL, \
             scorecard_id varchar NOT NULL, band varchar NOT NULL, value double precision, \
             reason_code varchar NOT NULL, note varchar NOT NULL, set_by varchar NOT NULL, \
             set_ms bigint NOT NULL, expires_ms bigint, \
             PRIMARY KEY (account_id, scorecard_id))",
        )
        .await?;
        db.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS score_override_audit (id {serial}, \
             account_id varchar NOT NULL, scorecard_id varchar NOT NULL, \
             action varchar NOT NULL, band varchar NOT NULL, value double precision, \
             reason_code varchar NOT NULL, note varchar NOT NULL, actor varchar NOT NULL, \
             at_ms bigint NOT NULL, expires_ms bigint)"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS score_override_audit_account \
             ON score_override_audit (account_id, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS score_override_audit")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS score_overrides")
            .await?;
        Ok(())
    }
}
