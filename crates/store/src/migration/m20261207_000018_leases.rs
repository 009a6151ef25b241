//! Leases (docs/deploy.md "Work shared between replicas"): one row per named piece of
//! once-per-cluster work (a schedule, the scoring-run mutex), with the replica holding it
//! and when the lease runs out unless the holder renews it (milliseconds since the Unix
//! epoch, on the database's clock).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS leases (\
             name varchar NOT NULL PRIMARY KEY, \
             holder varchar NOT NULL, \
             acquired_ms bigint NOT NULL, \
             expires_ms bigint NOT NULL)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS leases").await?;
        Ok(())
    }
}
