//! The initial schema: the whole data model described in docs/architecture.md.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn n(name: &'static str) -> Alias {
    Alias::new(name)
}

/// A table with its columns and a primary key over `pk` (empty when a column is
/// already an auto-increment key).
fn table(name: &'static str, cols: Vec<ColumnDef>, pk: &[&'static str]) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(n(name)).if_not_exists();
    for mut c in cols {
        t.col(&mut c);
    }
    if !pk.is_empty() {
        let mut idx = Index::create();
        for c in pk {
            idx.col(n(c));
        }
        t.primary_key(&mut idx);
    }
    t.to_owned()
}

fn index(table: &'static str, name: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(n(table)).if_not_exists();
    for c in cols {
        i.col(n(c));
    }
    i.to_owned()
}

fn tables() -> Vec<TableCreateStatement> {
    let ts = |c: &'static str| timestamp_with_time_zone(n(c));
    let ts_null = |c: &'static str| timestamp_with_time_zone_null(n(c));
    let s = |c: &'static str| string(n(c));
    let s_null = |c: &'static str| string_null(n(c));
    let js = |c: &'static str| json_binary(n(c));
    vec![
        table(
            "accounts",
            vec![
                s("id"),
                s("name"),
                js("attributes"),
                s_null("profile_id"),
                boolean(n("pinned")),
                s("status"),
                ts("created_at"),
                ts("updated_at"),
            ],
            &["id"],
        ),
        table(
            "contacts",
            vec![
                s("account_id"),
                s("id"),
                s("name"),
                s("role"),
                s("email_domain"),
                ts("updated_at"),
            ],
            &["account_id", "id"],
        ),
        table(
            "events",
            vec![
                s("account_id"),
                s("event_id"),
                s_null("user_id"),
                s("event_type"),
                ts("occurred_at"),
                double_null(n("value")),
            ],
            &["account_id", "event_id"],
        ),
        table(
            "usage_daily",
            vec![
                s("account_id"),
                date(n("day")),
                s("event_type"),
                big_integer(n("count")),
                big_integer(n("distinct_users")),
                double(n("value_sum")),
            ],
            &["account_id", "day", "event_type"],
        ),
        table(
            "usage_daily_users",
            vec![
                s("account_id"),
                date(n("day")),
                s("event_type"),
                s("user_id"),
            ],
            &["account_id", "day", "event_type", "user_id"],
        ),
        table(
            "interactions",
            vec![
                s("account_id"),
                s("id"),
                s_null("contact_id"),
                s("channel"),
                s("direction"),
                ts("occurred_at"),
                boolean(n("replied")),
                text_null(n("text")),
                double_null(n("sentiment")),
            ],
            &["account_id", "id"],
        ),
        table(
            "pulses",
            vec![
                big_pk_auto(n("id")),
                s("account_id"),
                s("author"),
                integer(n("value")),
                text(n("note")),
                ts("at"),
            ],
            &[],
        ),
        table(
            "subscriptions",
            vec![
                s("account_id"),
                s("id"),
                s("product"),
                ts("starts_at"),
                ts_null("ends_at"),
                double(n("mrr")),
                double_null(n("quantity")),
                s_null("units"),
                integer(n("bill_period_months")),
                boolean(n("is_addon")),
                double(n("discount")),
            ],
            &["account_id", "id"],
        ),
        table(
            "custom_metrics",
            vec![s("account_id"), s("name"), ts("at"), double(n("value"))],
            &["account_id", "name", "at"],
        ),
        table(
            "custom_score_fields",
            vec![
                s("account_id"),
                s("field"),
                integer(n("value")),
                ts("updated_at"),
            ],
            &["account_id", "field"],
        ),
        table(
            "webhook_signals",
            vec![
                big_pk_auto(n("id")),
                s("account_id"),
                s("name"),
                integer(n("value")),
                ts("at"),
            ],
            &[],
        ),
        table(
            "health_profiles",
            vec![
                s("id"),
                s("display_name"),
                text(n("description")),
                js("weights"),
                text(n("rule")),
                integer(n("priority")),
                integer(n("min_population")),
                s("weights_mode"),
                js("kpis"),
                boolean(n("is_default")),
                ts("created_at"),
                ts("updated_at"),
            ],
            &["id"],
        ),
        table(
            "scorecards",
            vec![
                s("id"),
                s("display_name"),
                text(n("description")),
                js("measure"),
                double(n("worst")),
                double(n("best")),
                double(n("red_below")),
                double(n("green_from")),
                s("impact"),
                text(n("segment")),
                js("tags"),
                integer(n("display_order")),
                boolean(n("enabled")),
                boolean(n("include_in_global")),
                ts("created_at"),
                ts("updated_at"),
            ],
            &["id"],
        ),
        table(
            "score_runs",
            vec![
                big_pk_auto(n("id")),
                s("scope"),
                ts("started_at"),
                ts_null("finished_at"),
                big_integer(n("accounts_scored")),
                js("details"),
            ],
            &[],
        ),
        table(
            "score_snapshots",
            vec![
                big_pk_auto(n("id")),
                big_integer(n("run_id")),
                s("account_id"),
                s("scorecard_id"),
                s("profile_id"),
                ts("as_of"),
                double(n("value")),
                s("band"),
                double(n("global_value")),
                js("sub_scores"),
                double(n("momentum")),
                integer(n("coverage_present")),
                integer(n("coverage_total")),
                js("drivers"),
                double_null(n("churn_probability")),
                s("weights_source"),
                boolean(n("population_fallback")),
            ],
            &[],
        ),
        table(
            "outcomes",
            vec![s("account_id"), s("kind"), ts("at"), ts("recorded_at")],
            &["account_id", "kind", "at"],
        ),
        table(
            "models",
            vec![
                big_pk_auto(n("id")),
                s("profile_id"),
                integer(n("version")),
                ts("trained_at"),
                big_integer(n("n_observations")),
                big_integer(n("n_churned")),
                js("kpi_weights"),
                js("category_weights"),
                js("coefficients"),
                js("metrics"),
            ],
            &[],
        ),
    ]
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        index("accounts", "idx_accounts_profile", &["profile_id"]),
        index(
            "interactions",
            "idx_interactions_account_at",
            &["account_id", "occurred_at"],
        ),
        index("pulses", "idx_pulses_account_at", &["account_id", "at"]),
        index(
            "webhook_signals",
            "idx_webhook_signals_account_at",
            &["account_id", "at"],
        ),
        index(
            "score_snapshots",
            "idx_score_snapshots_account",
            &["account_id", "scorecard_id", "as_of"],
        ),
        index("score_snapshots", "idx_score_snapshots_run", &["run_id"]),
        index(
            "models",
            "idx_models_profile_version",
            &["profile_id", "version"],
        )
        .unique()
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in tables().into_iter().rev() {
            let name = t.get_table_name().cloned();
            if let Some(name) = name {
                manager
                    .drop_table(Table::drop().table(name).if_exists().to_owned())
                    .await?;
            }
        }
        Ok(())
    }
}
