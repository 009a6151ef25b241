//! Ingestion tables beyond the initial schema: declared event types (with a running event
//! count), custom metric definitions, the history of custom score fields, and the unique
//! keys that make pulses and webhook signals idempotent on
//! (account, author or name, time), and `interactions.reply_known`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn n(name: &'static str) -> Alias {
    Alias::new(name)
}

fn tables() -> Vec<TableCreateStatement> {
    vec![
        // One row per event type, declared or first seen in an event. `event_count` is
        // kept up to date in the same transaction as the events, so ListEventTypes never
        // scans the roll-ups.
        Table::create()
            .table(n("event_types"))
            .if_not_exists()
            .col(string(n("name")).primary_key())
            .col(string(n("display_name")))
            .col(boolean(n("is_key")))
            .col(text(n("description")))
            .col(boolean(n("declared")))
            .col(big_integer(n("event_count")))
            .col(timestamp_with_time_zone(n("created_at")))
            .col(timestamp_with_time_zone(n("updated_at")))
            .to_owned(),
        Table::create()
            .table(n("custom_metric_definitions"))
            .if_not_exists()
            .col(string(n("name")).primary_key())
            .col(string(n("display_name")))
            .col(text(n("description")))
            .col(string(n("direction")))
            .col(timestamp_with_time_zone(n("created_at")))
            .col(timestamp_with_time_zone(n("updated_at")))
            .to_owned(),
        // Every value a custom score field took, so scoring as of a past date sees the
        // value then (custom_score_fields keeps only the latest).
        Table::create()
            .table(n("custom_score_field_history"))
            .if_not_exists()
            .col(string(n("account_id")))
            .col(string(n("field")))
            .col(timestamp_with_time_zone(n("at")))
            .col(integer(n("value")))
            .primary_key(
                Index::create()
                    .col(n("account_id"))
                    .col(n("field"))
                    .col(n("at")),
            )
            .to_owned(),
    ]
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("uq_pulses_account_author_at")
            .table(n("pulses"))
            .col(n("account_id"))
            .col(n("author"))
            .col(n("at"))
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("uq_webhook_signals_account_name_at")
            .table(n("webhook_signals"))
            .col(n("account_id"))
            .col(n("name"))
            .col(n("at"))
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("idx_accounts_status")
            .table(n("accounts"))
            .col(n("status"))
            .if_not_exists()
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
        for i in indexes() {
            manager.create_index(i).await?;
        }
        // `interactions.replied` cannot say "unknown" (the API's optional `replied`); this
        // flag does, so the response-rate KPI counts only interactions with a known outcome.
        if !manager.has_column("interactions", "reply_known").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(n("interactions"))
                        .add_column(boolean(n("reply_known")).default(false))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(n("interactions"))
                    .drop_column(n("reply_known"))
                    .to_owned(),
            )
            .await?;
        for name in [
            "uq_pulses_account_author_at",
            "uq_webhook_signals_account_name_at",
            "idx_accounts_status",
        ] {
            let table = match name {
                "uq_pulses_account_author_at" => "pulses",
                "uq_webhook_signals_account_name_at" => "webhook_signals",
                _ => "accounts",
            };
            manager
                .drop_index(Index::drop().name(name).table(n(table)).to_owned())
                .await?;
        }
        for t in tables().into_iter().rev() {
            if let Some(name) = t.get_table_name().cloned() {
                manager
                    .drop_table(Table::drop().table(name).if_exists().to_owned())
                    .await?;
            }
        }
        Ok(())
    }
}
