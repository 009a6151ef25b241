//! Schema migrations, applied at start-up (idempotent) or by `vitals migrate`.
//!
//! One file per migration: `DeriveMigrationName` takes the version from the file name.
//! Migrations are frozen once released; a schema change is a new file.

use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_ingestion;
mod m20261123_000003_profiles;
mod m20261123_000004_learner;
mod m20261123_000005_scoring;
mod m20261123_000006_auth;
mod m20261123_000007_snapshot_json;
mod m20261204_000008_c_collation;
mod m20261204_000009_event_type_counts;
mod m20261204_000010_snapshot_drivers_bin;
mod m20261206_000011_webhooks;
mod m20261206_000012_score_overrides;
mod m20261206_000013_latest_band_index;
mod m20261207_000014_account_parent;
mod m20261207_000016_operations;
mod m20261207_000018_leases;
mod m20261207_000019_event_partitions;
mod m20261207_000020_kpi_names;

/// Every migration of the store, in order.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_ingestion::Migration),
            Box::new(m20261123_000003_profiles::Migration),
            Box::new(m20261123_000004_learner::Migration),
            Box::new(m20261123_000005_scoring::Migration),
            Box::new(m20261123_000006_auth::Migration),
            Box::new(m20261123_000007_snapshot_json::Migration),
            Box::new(m20261204_000008_c_collation::Migration),
            Box::new(m20261204_000009_event_type_counts::Migration),
            Box::new(m20261204_000010_snapshot_drivers_bin::Migration),
            Box::new(m20261206_000011_webhooks::Migration),
            Box::new(m20261206_000012_score_overrides::Migration),
            Box::new(m20261206_000013_latest_band_index::Migration),
            Box::new(m20261207_000014_account_parent::Migration),
            Box::new(m20261207_000016_operations::Migration),
            Box::new(m20261207_000018_leases::Migration),
            Box::new(m20261207_000019_event_partitions::Migration),
            Box::new(m20261207_000020_kpi_names::Migration),
        ]
    }
}
