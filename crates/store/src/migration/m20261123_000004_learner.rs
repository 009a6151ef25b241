//! Learner: the free-text note of an outcome (e.g. the churn reason), and the indexes the
//! learner's listings and its "outcomes recorded since the last training" count use.

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
        if !manager.has_column("outcomes", "note").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(n("outcomes"))
                        .add_column(text(n("note")).default(""))
                        .to_owned(),
                )
                .await?;
        }
        for (name, col) in [
            ("idx_outcomes_at", "at"),
            ("idx_outcomes_recorded_at", "recorded_at"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(n("outcomes"))
                        .col(n(col))
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_outcomes_at", "idx_outcomes_recorded_at"] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(n("outcomes"))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(n("outcomes"))
                    .drop_column(n("note"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
