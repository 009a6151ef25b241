//! Profiles: the settings of a health profile that have no column in the initial schema
//! (band thresholds, KPI window, trend weight) and the provenance of each account's
//! assignment (rule, default or pinned; when; which version of the account was seen).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn n(name: &'static str) -> Alias {
    Alias::new(name)
}

fn tables() -> Vec<TableCreateStatement> {
    vec![
        Table::create()
            .table(n("profile_settings"))
            .if_not_exists()
            .col(string(n("profile_id")).primary_key())
            .col(double_null(n("yellow_from")))
            .col(double_null(n("green_from")))
            .col(integer_null(n("window_days")))
            .col(double_null(n("trend_weight")))
            .to_owned(),
        Table::create()
            .table(n("account_assignments"))
            .if_not_exists()
            .col(string(n("account_id")).primary_key())
            .col(string(n("profile_id")))
            .col(string(n("source")))
            .col(timestamp_with_time_zone(n("assigned_at")))
            .col(timestamp_with_time_zone(n("evaluated_at")))
            .to_owned(),
    ]
}

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in tables() {
            manager.create_table(t).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["account_assignments", "profile_settings"] {
            manager
                .drop_table(Table::drop().table(n(name)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
