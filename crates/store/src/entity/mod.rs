//! sea-orm entities: one module per table of the data model (docs/architecture.md).
//!
//! Every customer-facing thing is keyed by the customer's own external ids (strings of at
//! most 256 bytes), so callers never need to learn an internal id. Free-form structures
//! (attributes, weights, drivers) are JSON columns: `jsonb` on PostgreSQL, text on SQLite.

/// Generates an entity module from a table name and its columns, so the many simple
/// tables of the data model stay one readable list each.
macro_rules! entity {
    (
        $(#[$doc:meta])*
        $module:ident, $table:literal,
        { $( $(#[$fattr:meta])* $field:ident : $ty:ty ),* $(,)? }
    ) => {
        $(#[$doc])*
        pub mod $module {
            use sea_orm::entity::prelude::*;

            /// One row of the table.
            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                $( $(#[$fattr])* pub $field: $ty, )*
            }

            /// No declared relations: joins are written explicitly where needed.
            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

entity!(
    /// A customer account. `status` is `active`, `churned`, or `unassigned` (created
    /// implicitly by an event for an unknown account). `profile_id` is the one health
    /// profile it belongs to; `pinned` means a manual assignment that rules do not move.
    /// The nullable `parent_id` (migration 14) is read and written by the ingestion
    /// statements only (`ingestion::records`, the scoring-input loader), so it is not a
    /// field here: rows inserted through this entity are top-level accounts.
    account, "accounts", {
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        name: String,
        #[sea_orm(column_type = "JsonBinary")]
        attributes: Json,
        profile_id: Option<String>,
        pinned: bool,
        status: String,
        created_at: DateTimeUtc,
        updated_at: DateTimeUtc,
    }
);

entity!(
    /// A user or contact of an account; `role` is `user`, `decision_maker` or `champion`.
    contact, "contacts", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        name: String,
        role: String,
        email_domain: String,
        updated_at: DateTimeUtc,
    }
);

entity!(
    /// A raw usage event. The primary key (account, event_id) is the idempotency key: a
    /// retried batch inserts nothing new.
    event, "events", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        event_id: String,
        user_id: Option<String>,
        event_type: String,
        occurred_at: DateTimeUtc,
        value: Option<f64>,
    }
);

entity!(
    /// Daily usage roll-up: what KPI computation reads instead of raw events.
    usage_daily, "usage_daily", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        day: Date,
        #[sea_orm(primary_key, auto_increment = false)]
        event_type: String,
        count: i64,
        distinct_users: i64,
        value_sum: f64,
    }
);

entity!(
    /// The users seen per (account, day, event type): makes `usage_daily.distinct_users`
    /// exact and incrementally maintainable.
    usage_daily_user, "usage_daily_users", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        day: Date,
        #[sea_orm(primary_key, auto_increment = false)]
        event_type: String,
        #[sea_orm(primary_key, auto_increment = false)]
        user_id: String,
    }
);

entity!(
    /// A conversation touchpoint. `sentiment` is a compound score in [-1, 1], given by the
    /// caller or computed from `text`.
    interaction, "interactions", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        contact_id: Option<String>,
        channel: String,
        direction: String,
        occurred_at: DateTimeUtc,
        replied: bool,
        text: Option<String>,
        sentiment: Option<f64>,
    }
);

entity!(
    /// A CSM pulse: the account manager's own 1..5 reading of the account.
    pulse, "pulses", {
        #[sea_orm(primary_key)]
        id: i64,
        account_id: String,
        author: String,
        value: i32,
        note: String,
        at: DateTimeUtc,
    }
);

entity!(
    /// A subscription (contract line). `ends_at` is exclusive; `None` means open-ended.
    subscription, "subscriptions", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        product: String,
        starts_at: DateTimeUtc,
        ends_at: Option<DateTimeUtc>,
        mrr: f64,
        quantity: Option<f64>,
        units: Option<String>,
        bill_period_months: i32,
        is_addon: bool,
        discount: f64,
    }
);

entity!(
    /// A value of a customer-defined metric at a time.
    custom_metric, "custom_metrics", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        at: DateTimeUtc,
        value: f64,
    }
);

entity!(
    /// A custom score field (1..5), set by a person or an integration; the latest value wins.
    custom_score_field, "custom_score_fields", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        field: String,
        value: i32,
        updated_at: DateTimeUtc,
    }
);

entity!(
    /// A signal (1..5) pushed by another system; it nudges the usage sub-score.
    webhook_signal, "webhook_signals", {
        #[sea_orm(primary_key)]
        id: i64,
        account_id: String,
        name: String,
        value: i32,
        at: DateTimeUtc,
    }
);

entity!(
    /// A health profile: a segment of accounts compared with each other, with its own
    /// category weights (`weights` JSON) and a CEL assignment rule.
    health_profile, "health_profiles", {
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        display_name: String,
        description: String,
        #[sea_orm(column_type = "JsonBinary")]
        weights: Json,
        rule: String,
        priority: i32,
        min_population: i32,
        weights_mode: String,
        #[sea_orm(column_type = "JsonBinary")]
        kpis: Json,
        is_default: bool,
        created_at: DateTimeUtc,
        updated_at: DateTimeUtc,
    }
);

entity!(
    /// A named scorecard (Custify-style health score) with its measure as JSON.
    scorecard, "scorecards", {
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        display_name: String,
        description: String,
        #[sea_orm(column_type = "JsonBinary")]
        measure: Json,
        worst: f64,
        best: f64,
        red_below: f64,
        green_from: f64,
        impact: String,
        segment: String,
        #[sea_orm(column_type = "JsonBinary")]
        tags: Json,
        display_order: i32,
        enabled: bool,
        include_in_global: bool,
        created_at: DateTimeUtc,
        updated_at: DateTimeUtc,
    }
);

entity!(
    /// One scoring run (what was computed, when, how long it took).
    score_run, "score_runs", {
        #[sea_orm(primary_key)]
        id: i64,
        scope: String,
        started_at: DateTimeUtc,
        finished_at: Option<DateTimeUtc>,
        accounts_scored: i64,
        #[sea_orm(column_type = "JsonBinary")]
        details: Json,
    }
);

entity!(
    /// A score snapshot: one account, one scorecard (`profile` for the built-in profile
    /// score), one run. The history of an account is its snapshots ordered by `as_of`.
    score_snapshot, "score_snapshots", {
        #[sea_orm(primary_key)]
        id: i64,
        run_id: i64,
        account_id: String,
        scorecard_id: String,
        profile_id: String,
        as_of: DateTimeUtc,
        value: f64,
        band: String,
        global_value: f64,
        #[sea_orm(column_type = "JsonBinary")]
        sub_scores: Json,
        momentum: f64,
        coverage_present: i32,
        coverage_total: i32,
        /// Rows written before migration 10: the drivers as JSON; since then JSON `null`
        /// (the drivers are in `drivers_bin`).
        #[sea_orm(column_type = "JsonBinary")]
        drivers: Json,
        churn_probability: Option<f64>,
        weights_source: String,
        population_fallback: bool,
        /// Since migration 10: the drivers in the scoring service's binary form (NULL in
        /// rows written before it).
        drivers_bin: Option<Vec<u8>>,
    }
);

entity!(
    /// A recorded outcome: `churned`, `renewed` or `inactive`, at a date.
    outcome, "outcomes", {
        #[sea_orm(primary_key, auto_increment = false)]
        account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        at: DateTimeUtc,
        recorded_at: DateTimeUtc,
    }
);

entity!(
    /// A trained model version for a profile (`global` for the portfolio-wide one).
    model, "models", {
        #[sea_orm(primary_key)]
        id: i64,
        profile_id: String,
        version: i32,
        trained_at: DateTimeUtc,
        n_observations: i64,
        n_churned: i64,
        #[sea_orm(column_type = "JsonBinary")]
        kpi_weights: Json,
        #[sea_orm(column_type = "JsonBinary")]
        category_weights: Json,
        #[sea_orm(column_type = "JsonBinary")]
        coefficients: Json,
        #[sea_orm(column_type = "JsonBinary")]
        metrics: Json,
    }
);
