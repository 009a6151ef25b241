//! Outbound webhooks (docs/webhooks.md): subscriptions, the outbox of events written in
//! the same transaction as the change that caused them, one delivery per (event,
//! subscription) and the log of every delivery attempt.
//!
//! Times are milliseconds since the Unix epoch (`*_ms`, bigint): the delivery worker
//! compares them in SQL on both engines.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 4] = [
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_events",
    "webhook_subscriptions",
];

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
        for sql in [
            "CREATE TABLE IF NOT EXISTS webhook_subscriptions (\
             id varchar NOT NULL PRIMARY KEY, url varchar NOT NULL, \
             description varchar NOT NULL, kinds varchar NOT NULL, \
             profile_ids varchar NOT NULL, churn_threshold double precision NOT NULL, \
             format varchar NOT NULL, secret varchar NOT NULL, enabled boolean NOT NULL, \
             consecutive_failures integer NOT NULL, disabled_reason varchar NOT NULL, \
             created_ms bigint NOT NULL, updated_ms bigint NOT NULL)"
                .to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS webhook_events (id {serial}, \
                 kind varchar NOT NULL, account_id varchar NOT NULL, \
                 profile_id varchar NOT NULL, payload text NOT NULL, \
                 created_ms bigint NOT NULL, dispatched boolean NOT NULL)"
            ),
            "CREATE INDEX IF NOT EXISTS webhook_events_pending \
             ON webhook_events (dispatched, id)"
                .to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS webhook_deliveries (id {serial}, \
                 event_id bigint NOT NULL, subscription_id varchar NOT NULL, \
                 message_id varchar NOT NULL UNIQUE, status varchar NOT NULL, \
                 attempts integer NOT NULL, next_attempt_ms bigint NOT NULL, \
                 last_status_code integer, last_error varchar NOT NULL, \
                 created_ms bigint NOT NULL, delivered_ms bigint)"
            ),
            "CREATE INDEX IF NOT EXISTS webhook_deliveries_due \
             ON webhook_deliveries (status, next_attempt_ms)"
                .to_string(),
            "CREATE INDEX IF NOT EXISTS webhook_deliveries_subscription \
             ON webhook_deliveries (subscription_id, id)"
                .to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS webhook_attempts (id {serial}, \
                 delivery_id bigint NOT NULL, attempt integer NOT NULL, \
                 at_ms bigint NOT NULL, status_code integer, error varchar NOT NULL, \
                 duration_ms bigint NOT NULL)"
            ),
            "CREATE INDEX IF NOT EXISTS webhook_attempts_delivery \
             ON webhook_attempts (delivery_id, id)"
                .to_string(),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for t in TABLES {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                .await?;
        }
        Ok(())
    }
}
