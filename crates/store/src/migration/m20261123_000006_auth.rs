//! Auth: the tokens Vitals creates itself (the all-in-one's first-start admin token),
//! stored as SHA-256 hashes only. Tokens configured by operators live in the tokens file,
//! not here.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn n(name: &'static str) -> Alias {
    Alias::new(name)
}

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(n("auth_tokens"))
                    .if_not_exists()
                    .col(string_len(n("name"), 128).primary_key())
                    .col(string_len(n("role"), 16))
                    .col(string_len(n("token_sha256"), 64).unique_key())
                    .col(timestamp_with_time_zone(n("created_at")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(n("auth_tokens")).if_exists().to_owned())
            .await
    }
}
