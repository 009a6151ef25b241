//! Parent and child accounts (docs/ingestion.md "Parent accounts"): `accounts.parent_id`,
//! the id of the account's parent (none for a top-level account), indexed for the
//! children-of filters of ListAccounts and ListScores.

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
        db.execute_unprepared("ALTER TABLE accounts ADD COLUMN parent_id varchar")
            .await?;
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS accounts_parent ON accounts (parent_id)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS accounts_parent")
            .await?;
        db.execute_unprepared("ALTER TABLE accounts DROP COLUMN parent_id")
            .await?;
        Ok(())
    }
}
