//! An index of `score_latest` by (scorecard, profile, band): the web UI's band counts per
//! profile (`vitals_store::scoring::overview::band_counts`) read it alone, in its order,
//! instead of visiting every latest row (on 100,000 accounts, a scan of the index rather
//! than 100,000 row lookups). Costs one more index entry per latest row written.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "idx_score_latest_scorecard_profile_band";

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(Alias::new("score_latest"))
                    .if_not_exists()
                    .col(Alias::new("scorecard_id"))
                    .col(Alias::new("profile_id"))
                    .col(Alias::new("band"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NAME)
                    .table(Alias::new("score_latest"))
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
