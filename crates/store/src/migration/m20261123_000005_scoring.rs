//! Scoring: `score_latest`, the latest snapshot of each (account, scorecard), kept in the
//! same transaction as the snapshots so that listings, distributions and band-change
//! detection never scan the history; and the indexes of its filters and orderings.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn n(name: &'static str) -> Alias {
    Alias::new(name)
}

fn index(name: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(n("score_latest")).if_not_exists();
    for c in cols {
        i.col(n(c));
    }
    i.to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        index(
            "idx_score_latest_scorecard_value",
            &["scorecard_id", "value", "account_id"],
        ),
        index(
            "idx_score_latest_profile_value",
            &["profile_id", "scorecard_id", "value", "account_id"],
        ),
    ]
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
                    .table(n("score_latest"))
                    .if_not_exists()
                    .col(string(n("account_id")))
                    .col(string(n("scorecard_id")))
                    .col(string(n("profile_id")))
                    .col(timestamp_with_time_zone(n("as_of")))
                    .col(big_integer(n("run_id")))
                    .col(double(n("value")))
                    .col(string(n("band")))
                    .col(double_null(n("global_value")))
                    .col(string(n("global_band")))
                    .primary_key(Index::create().col(n("account_id")).col(n("scorecard_id")))
                    .to_owned(),
            )
            .await?;
        for i in indexes() {
            manager.create_index(i).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(n("score_latest"))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
