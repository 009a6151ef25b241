//! Storage of the learner service: outcomes (with their note), versioned models, and the
//! whole history the training set is built from.
//!
//! Formats:
//! - `outcomes.kind` is `churned`, `renewed` or `inactive`; the key (account, kind, at)
//!   makes recording idempotent.
//! - `models.profile_id` is the profile id, or [`GLOBAL_MODEL`] for the portfolio-wide
//!   model (the id `global` cannot be created as a profile). The JSON columns are written
//!   and read by the learner service only (its `StoredModel` type).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};

use crate::entity::{
    account, contact, custom_metric, health_profile, interaction, model, pulse, subscription,
    usage_daily, webhook_signal,
};
use crate::inputs::{InputQuery, InputScope, load_inputs};
use crate::{Store, StoreError};
use vitals_scoring_core::DailyUsage;

/// `models.profile_id` of the global model.
pub const GLOBAL_MODEL: &str = "global";

/// The `outcomes` table with the `note` column added by migration 4.
pub mod outcome_row {
    use sea_orm::entity::prelude::*;

    /// One recorded outcome.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outcomes")]
    pub struct Model {
        /// The account.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// `churned`, `renewed` or `inactive`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        /// When it happened.
        #[sea_orm(primary_key, auto_increment = false)]
        pub at: DateTimeUtc,
        /// When Vitals recorded it.
        pub recorded_at: DateTimeUtc,
        /// Free-text note.
        pub note: String,
    }

    /// No declared relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A recorded outcome.
pub type OutcomeRecord = outcome_row::Model;

/// An outcome to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOutcome {
    /// The account (created with status `unassigned` when unknown).
    pub account_id: String,
    /// `churned`, `renewed` or `inactive`.
    pub kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Free-text note.
    pub note: String,
}

/// What [`record_outcomes`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomesWritten {
    /// Outcomes that were new.
    pub recorded: u32,
    /// Outcomes already stored (or repeated in the batch), ignored.
    pub duplicates: u32,
}

/// Placeholder number `i` (1-based) in the back end's syntax.
fn ph(backend: DbBackend, i: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${i}"),
        _ => "?".to_owned(),
    }
}

/// Records a batch of outcomes in one transaction: unknown accounts are created
/// (status `unassigned`), outcomes already stored are counted as duplicates.
pub async fn record_outcomes(
    store: &Store,
    items: &[NewOutcome],
) -> Result<OutcomesWritten, StoreError> {
    if items.is_empty() {
        return Ok(OutcomesWritten::default());
    }
    let backend = store.backend();
    // BEGIN IMMEDIATE on SQLite: take the write lock up front so a concurrent writer
    // cannot make this transaction fail half-way with SQLITE_BUSY.
    let txn = store.begin_raw().await?;
    let now = Utc::now();
    let ids: BTreeSet<&str> = items.iter().map(|o| o.account_id.as_str()).collect();
    let account_sql = format!(
        "INSERT INTO accounts (id, name, attributes, pinned, status, created_at, updated_at) \
         VALUES ({}, '', {}, {}, 'unassigned', {}, {}) ON CONFLICT (id) DO NOTHING",
        ph(backend, 1),
        ph(backend, 2),
        ph(backend, 3),
        ph(backend, 4),
        ph(backend, 5)
    );
    for id in ids {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            account_sql.as_str(),
            [
                Value::from(id.to_owned()),
                Value::from(serde_json::json!({})),
                Value::from(false),
                Value::from(now),
                Value::from(now),
            ],
        ))
        .await?;
    }
    let outcome_sql = format!(
        "INSERT INTO outcomes (account_id, kind, at, recorded_at, note) VALUES ({}, {}, {}, {}, {}) \
         ON CONFLICT (account_id, kind, at) DO NOTHING",
        ph(backend, 1),
        ph(backend, 2),
        ph(backend, 3),
        ph(backend, 4),
        ph(backend, 5)
    );
    let mut written = OutcomesWritten::default();
    for o in items {
        let res = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                outcome_sql.as_str(),
                [
                    Value::from(o.account_id.clone()),
                    Value::from(o.kind.clone()),
                    Value::from(o.at),
                    Value::from(now),
                    Value::from(o.note.clone()),
                ],
            ))
            .await?;
        if res.rows_affected() > 0 {
            written.recorded += 1;
        } else {
            written.duplicates += 1;
        }
    }
    txn.commit().await?;
    Ok(written)
}

/// Filters of [`list_outcomes`]; `None` means any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutcomeFilter {
    /// Only this account.
    pub account_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only outcomes at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only outcomes before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Position after which a page of [`list_outcomes`] starts: the last outcome returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeCursor {
    /// Its time.
    pub at: DateTime<Utc>,
    /// Its account.
    pub account_id: String,
    /// Its kind.
    pub kind: String,
}

/// Outcomes matching `filter`, newest `at` first (then account id and kind ascending),
/// starting after `after`, at most `limit`.
pub async fn list_outcomes(
    store: &Store,
    filter: &OutcomeFilter,
    after: Option<&OutcomeCursor>,
    limit: u64,
) -> Result<Vec<OutcomeRecord>, StoreError> {
    use outcome_row::Column as C;
    let mut q = outcome_row::Entity::find();
    if let Some(a) = &filter.account_id {
        q = q.filter(C::AccountId.eq(a.clone()));
    }
    if let Some(k) = &filter.kind {
        q = q.filter(C::Kind.eq(k.clone()));
    }
    if let Some(from) = filter.from {
        q = q.filter(C::At.gte(from));
    }
    if let Some(to) = filter.to {
        q = q.filter(C::At.lt(to));
    }
    if let Some(c) = after {
        q = q.filter(
            Condition::any()
                .add(C::At.lt(c.at))
                .add(
                    Condition::all()
                        .add(C::At.eq(c.at))
                        .add(C::AccountId.gt(c.account_id.clone())),
                )
                .add(
                    Condition::all()
                        .add(C::At.eq(c.at))
                        .add(C::AccountId.eq(c.account_id.clone()))
                        .add(C::Kind.gt(c.kind.clone())),
                ),
        );
    }
    Ok(q.order_by_desc(C::At)
        .order_by_asc(C::AccountId)
        .order_by_asc(C::Kind)
        .limit(limit)
        .all(store.conn())
        .await?)
}

/// Every outcome that happened at or before `until`, oldest first.
pub async fn outcomes_until(
    store: &Store,
    until: DateTime<Utc>,
) -> Result<Vec<OutcomeRecord>, StoreError> {
    use outcome_row::Column as C;
    Ok(outcome_row::Entity::find()
        .filter(C::At.lte(until))
        .order_by_asc(C::At)
        .all(store.conn())
        .await?)
}

/// Number of outcomes recorded strictly after `since` (all of them for `None`).
pub async fn count_recorded_after(
    store: &Store,
    since: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    use outcome_row::Column as C;
    let mut q = outcome_row::Entity::find()
        .select_only()
        .column_as(Expr::col(C::AccountId).count(), "n");
    if let Some(s) = since {
        q = q.filter(C::RecordedAt.gt(s));
    }
    let n: Option<i64> = q.into_tuple().one(store.conn()).await?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

/// A trained model to store; the version is assigned by [`insert_model`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewModel {
    /// Profile id, or [`GLOBAL_MODEL`].
    pub profile_id: String,
    /// When training finished.
    pub trained_at: DateTime<Utc>,
    /// Training observations.
    pub n_observations: i64,
    /// Churned training observations.
    pub n_churned: i64,
    /// KPI weights (learner JSON).
    pub kpi_weights: serde_json::Value,
    /// Suggested category weights (learner JSON).
    pub category_weights: serde_json::Value,
    /// Intercept and coefficients (learner JSON).
    pub coefficients: serde_json::Value,
    /// Options, metrics, evaluation (learner JSON).
    pub metrics: serde_json::Value,
}

/// A stored model row.
pub type ModelRow = model::Model;

/// Stores a model as the next version of its profile (1 for the first), in one
/// transaction; the unique (profile, version) index guards against a concurrent writer.
pub async fn insert_model(store: &Store, m: NewModel) -> Result<ModelRow, StoreError> {
    let txn = store.begin_raw().await?;
    let row = insert_in(&txn, m).await?;
    txn.commit().await?;
    Ok(row)
}

/// Stores models (each the next version of its profile) in one transaction, committed
/// only if `still_wanted()` holds right before the commit: `None` (and nothing stored)
/// when it does not, e.g. the training run was cancelled meanwhile.
pub async fn insert_models(
    store: &Store,
    models: Vec<NewModel>,
    still_wanted: impl Fn() -> bool,
) -> Result<Option<Vec<ModelRow>>, StoreError> {
    // Versions are max + 1 per profile, guarded by the unique (profile, version) index:
    // a concurrent writer (another replica) that took the same number makes this
    // transaction fail whole; it is retried with the numbers read again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match insert_models_once(store, models.clone(), &still_wanted).await {
            Err(StoreError::Db(e))
                if attempt < VERSION_ATTEMPTS
                    && matches!(
                        e.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) =>
            {
                tracing::info!(
                    attempt,
                    "model version taken by a concurrent writer; retrying"
                );
            }
            other => return other,
        }
    }
}

/// Attempts of [`insert_models`] when a concurrent writer takes the same version.
const VERSION_ATTEMPTS: u32 = 5;

async fn insert_models_once(
    store: &Store,
    models: Vec<NewModel>,
    still_wanted: &impl Fn() -> bool,
) -> Result<Option<Vec<ModelRow>>, StoreError> {
    if !still_wanted() {
        return Ok(None);
    }
    let tx = store.begin_write().await?;
    let mut rows = Vec::with_capacity(models.len());
    for m in models {
        rows.push(insert_in(&tx.0, m).await?);
    }
    // A `model.trained` webhook event per model, in the models' transaction, when an
    // enabled subscription wants them.
    if crate::webhooks::interest(&tx)
        .await?
        .wants(crate::webhooks::KIND_MODEL_TRAINED)
    {
        let events: Vec<_> = rows.iter().map(model_trained_event).collect();
        crate::webhooks::insert_events(&tx, &events).await?;
    }
    if !still_wanted() {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(rows))
}

/// The `model.trained` webhook event of a stored model (docs/webhooks.md).
fn model_trained_event(m: &ModelRow) -> crate::webhooks::NewEvent {
    let kind = crate::webhooks::KIND_MODEL_TRAINED;
    crate::webhooks::NewEvent {
        kind: kind.to_string(),
        account_id: String::new(),
        profile_id: m.profile_id.clone(),
        payload: serde_json::json!({
            "type": kind,
            "timestamp": m.trained_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": {
                "model": format!("models/{}-{}", m.profile_id, m.version),
                "profile_id": m.profile_id,
                "version": m.version,
                "trained_at": m.trained_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "observations": m.n_observations,
                "churned": m.n_churned,
            },
        }),
    }
}

async fn insert_in(
    txn: &sea_orm::DatabaseTransaction,
    m: NewModel,
) -> Result<ModelRow, StoreError> {
    let last: Option<Option<i32>> = model::Entity::find()
        .select_only()
        .column_as(Expr::col(model::Column::Version).max(), "v")
        .filter(model::Column::ProfileId.eq(m.profile_id.clone()))
        .into_tuple()
        .one(txn)
        .await?;
    let version = last.flatten().unwrap_or(0) + 1;
    let am = model::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        profile_id: sea_orm::ActiveValue::Set(m.profile_id),
        version: sea_orm::ActiveValue::Set(version),
        trained_at: sea_orm::ActiveValue::Set(m.trained_at),
        n_observations: sea_orm::ActiveValue::Set(m.n_observations),
        n_churned: sea_orm::ActiveValue::Set(m.n_churned),
        kpi_weights: sea_orm::ActiveValue::Set(m.kpi_weights),
        category_weights: sea_orm::ActiveValue::Set(m.category_weights),
        coefficients: sea_orm::ActiveValue::Set(m.coefficients),
        metrics: sea_orm::ActiveValue::Set(m.metrics),
    };
    let res = model::Entity::insert(am).exec(txn).await?;
    let row = model::Entity::find_by_id(res.last_insert_id)
        .one(txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("inserted model".to_owned()))?;
    Ok(row)
}

/// The key of a model's `metrics` JSON listing the drift levels already reported for it
/// (written by [`record_drift_detected`]; readers of the metrics ignore it).
pub const DRIFT_REPORTED_KEY: &str = "drift_reported";

/// Records that drift at `level` was detected for model `model_id`, once per model and
/// level: in one transaction, adds `level` to the model's [`DRIFT_REPORTED_KEY`] list and
/// writes a `model.drift_detected` webhook event (`data` as its payload's data, with the
/// model's name, profile and version added) when an enabled subscription wants it.
/// Returns `false`, and writes nothing, when the level was already recorded for the model
/// or the model no longer exists. Callers serialise it (the learner holds its training
/// lease).
pub async fn record_drift_detected(
    store: &Store,
    model_id: i64,
    level: &str,
    mut data: serde_json::Value,
) -> Result<bool, StoreError> {
    let tx = store.begin_write().await?;
    let Some(row) = model::Entity::find_by_id(model_id).one(&tx.0).await? else {
        return Ok(false);
    };
    let mut metrics = row.metrics.clone();
    let Some(obj) = metrics.as_object_mut() else {
        return Ok(false);
    };
    let mut list: Vec<serde_json::Value> = obj
        .get(DRIFT_REPORTED_KEY)
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    if list.iter().any(|l| l.as_str() == Some(level)) {
        return Ok(false);
    }
    list.push(level.into());
    obj.insert(DRIFT_REPORTED_KEY.into(), list.into());
    let am = model::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        metrics: sea_orm::ActiveValue::Set(metrics),
        ..Default::default()
    };
    model::Entity::update(am).exec(&tx.0).await?;
    let kind = crate::webhooks::KIND_DRIFT_DETECTED;
    if crate::webhooks::interest(&tx).await?.wants(kind) {
        if let Some(d) = data.as_object_mut() {
            d.insert(
                "model".into(),
                format!("models/{}-{}", row.profile_id, row.version).into(),
            );
            d.insert("profile_id".into(), row.profile_id.clone().into());
            d.insert("version".into(), row.version.into());
            d.insert("level".into(), level.into());
        }
        let event = crate::webhooks::NewEvent {
            kind: kind.to_string(),
            account_id: String::new(),
            profile_id: row.profile_id.clone(),
            payload: serde_json::json!({
                "type": kind,
                "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": data,
            }),
        };
        crate::webhooks::insert_events(&tx, &[event]).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The key of a model's `metrics` JSON holding the result of the last scheduled drift
/// check of it (written by [`record_drift_check`]; the web UI's model page shows it).
pub const DRIFT_CHECK_KEY: &str = "drift_last_check";

/// Keeps `check`, the summary of the latest drift check of model `model_id`, under
/// [`DRIFT_CHECK_KEY`] of its metrics (replacing the previous one). Returns `false`, and
/// writes nothing, when the model no longer exists. Callers serialise it (the learner
/// holds its training lease).
pub async fn record_drift_check(
    store: &Store,
    model_id: i64,
    check: serde_json::Value,
) -> Result<bool, StoreError> {
    let tx = store.begin_write().await?;
    let Some(row) = model::Entity::find_by_id(model_id).one(&tx.0).await? else {
        return Ok(false);
    };
    let mut metrics = row.metrics;
    let Some(obj) = metrics.as_object_mut() else {
        return Ok(false);
    };
    obj.insert(DRIFT_CHECK_KEY.into(), check);
    let am = model::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        metrics: sea_orm::ActiveValue::Set(metrics),
        ..Default::default()
    };
    model::Entity::update(am).exec(&tx.0).await?;
    tx.commit().await?;
    Ok(true)
}

/// The latest version of a profile's (or the global) model.
pub async fn latest_model(store: &Store, profile_id: &str) -> Result<Option<ModelRow>, StoreError> {
    Ok(model::Entity::find()
        .filter(model::Column::ProfileId.eq(profile_id))
        .order_by_desc(model::Column::Version)
        .one(store.conn())
        .await?)
}

/// One version of a profile's (or the global) model.
pub async fn get_model(
    store: &Store,
    profile_id: &str,
    version: i32,
) -> Result<Option<ModelRow>, StoreError> {
    Ok(model::Entity::find()
        .filter(model::Column::ProfileId.eq(profile_id))
        .filter(model::Column::Version.eq(version))
        .one(store.conn())
        .await?)
}

/// Models newest first (by id, which follows training order), optionally of one profile
/// and only the latest version of each, with ids below `before_id`, at most `limit`.
pub async fn list_models(
    store: &Store,
    profile_id: Option<&str>,
    latest_only: bool,
    before_id: Option<i64>,
    limit: u64,
) -> Result<Vec<ModelRow>, StoreError> {
    let mut q = model::Entity::find();
    if let Some(p) = profile_id {
        q = q.filter(model::Column::ProfileId.eq(p));
    }
    if let Some(b) = before_id {
        q = q.filter(model::Column::Id.lt(b));
    }
    if latest_only {
        // Few models exist (one per profile and training run), so the latest id per
        // profile is computed here rather than with a correlated subquery.
        let pairs: Vec<(i64, String, i32)> = model::Entity::find()
            .select_only()
            .column(model::Column::Id)
            .column(model::Column::ProfileId)
            .column(model::Column::Version)
            .into_tuple()
            .all(store.conn())
            .await?;
        let mut best: std::collections::HashMap<String, (i32, i64)> = Default::default();
        for (id, p, v) in pairs {
            let e = best.entry(p).or_insert((v, id));
            if v > e.0 {
                *e = (v, id);
            }
        }
        let ids: Vec<i64> = best.values().map(|(_, id)| *id).collect();
        q = q.filter(model::Column::Id.is_in(ids));
    }
    Ok(q.order_by_desc(model::Column::Id)
        .limit(limit)
        .all(store.conn())
        .await?)
}

/// When the most recent model was trained, if any.
pub async fn last_trained_at(store: &Store) -> Result<Option<DateTime<Utc>>, StoreError> {
    let t: Option<Option<DateTime<Utc>>> = model::Entity::find()
        .select_only()
        .column_as(Expr::col(model::Column::TrainedAt).max(), "t")
        .into_tuple()
        .one(store.conn())
        .await?;
    Ok(t.flatten())
}

/// Whether a health profile with this id exists.
pub async fn profile_exists(store: &Store, id: &str) -> Result<bool, StoreError> {
    Ok(health_profile::Entity::find_by_id(id)
        .one(store.conn())
        .await?
        .is_some())
}

/// The accounts with these ids that exist.
pub async fn load_accounts(
    store: &Store,
    ids: &[String],
) -> Result<Vec<account::Model>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        out.extend(
            account::Entity::find()
                .filter(account::Column::Id.is_in(chunk.iter().cloned()))
                .all(store.conn())
                .await?,
        );
    }
    Ok(out)
}

/// Everything the learner computes KPIs from, for every account, up to a time: the raw
/// rows, turned into scoring-core inputs by the learner service.
#[derive(Debug, Default)]
pub struct History {
    /// Every account.
    pub accounts: Vec<account::Model>,
    /// Every health profile.
    pub profiles: Vec<health_profile::Model>,
    /// Contacts (for the contacts count and roles).
    pub contacts: Vec<contact::Model>,
    /// Daily roll-ups as rows (a history built by hand, e.g. in tests; [`load_history`]
    /// leaves it empty and fills `usage_by_account`).
    pub usage: Vec<usage_daily::Model>,
    /// Daily roll-ups up to the day of `until`, per account (sorted by account id), as
    /// scoring-core reads them: `DailyUsage::event_type` indexes `usage_event_types`.
    pub usage_by_account: Vec<(String, Vec<DailyUsage>)>,
    /// The event type names of `usage_by_account`.
    pub usage_event_types: Vec<String>,
    /// Interactions up to `until`.
    pub interactions: Vec<interaction::Model>,
    /// CSM pulses up to `until`.
    pub pulses: Vec<pulse::Model>,
    /// Subscriptions started up to `until`.
    pub subscriptions: Vec<subscription::Model>,
    /// Custom metric samples up to `until`.
    pub custom_metrics: Vec<custom_metric::Model>,
    /// Webhook signals up to `until`.
    pub webhook_signals: Vec<webhook_signal::Model>,
    /// Event types declared key; `None` when none is (then every type is key).
    pub key_event_types: Option<HashSet<String>>,
    /// Every event type known (declared or seen), sorted.
    pub event_types: Vec<String>,
    /// Custom metrics declared "lower is better".
    pub lower_is_better_metrics: HashSet<String>,
}

async fn names(conn: &impl ConnectionTrait, sql: &str) -> Result<Vec<String>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "name").ok())
        .collect())
}

/// Loads the [`History`] up to `until` (inclusive).
pub async fn load_history(store: &Store, until: DateTime<Utc>) -> Result<History, StoreError> {
    let c = store.conn();
    let (usage_by_account, usage_event_types) = usage_history(store, until.date_naive()).await?;
    let mut event_types: BTreeSet<String> = names(c, "SELECT name FROM event_types")
        .await?
        .into_iter()
        .collect();
    event_types.extend(usage_event_types.iter().cloned());
    let keys: HashSet<String> = names(c, "SELECT name FROM event_types WHERE is_key = TRUE")
        .await?
        .into_iter()
        .collect();
    Ok(History {
        accounts: account::Entity::find()
            .order_by_asc(account::Column::Id)
            .all(c)
            .await?,
        profiles: health_profile::Entity::find()
            .order_by_asc(health_profile::Column::Id)
            .all(c)
            .await?,
        contacts: contact::Entity::find().all(c).await?,
        usage: Vec::new(),
        usage_by_account,
        usage_event_types,
        interactions: interaction::Entity::find()
            .filter(interaction::Column::OccurredAt.lte(until))
            .all(c)
            .await?,
        pulses: pulse::Entity::find()
            .filter(pulse::Column::At.lte(until))
            .all(c)
            .await?,
        subscriptions: subscription::Entity::find()
            .filter(subscription::Column::StartsAt.lte(until))
            .all(c)
            .await?,
        custom_metrics: custom_metric::Entity::find()
            .filter(custom_metric::Column::At.lte(until))
            .all(c)
            .await?,
        webhook_signals: webhook_signal::Entity::find()
            .filter(webhook_signal::Column::At.lte(until))
            .all(c)
            .await?,
        key_event_types: (!keys.is_empty()).then_some(keys),
        event_types: event_types.into_iter().collect(),
        lower_is_better_metrics: names(
            c,
            "SELECT name FROM custom_metric_definitions WHERE direction = 'lower_is_better'",
        )
        .await?
        .into_iter()
        .collect(),
    })
}

/// Every account's daily roll-ups up to day `t`, read by the scoring input loader's
/// fast path (rusqlite on a SQLite file, binary COPY on PostgreSQL; about 5x faster than
/// rows through sqlx) with a span reaching back to the first roll-up, so that nothing is
/// left out and no marker row is added. Accounts sorted by id; event types by id.
async fn usage_history(
    store: &Store,
    t: NaiveDate,
) -> Result<(Vec<(String, Vec<DailyUsage>)>, Vec<String>), StoreError> {
    let first: Option<NaiveDate> = usage_daily::Entity::find()
        .select_only()
        .column_as(Expr::col(usage_daily::Column::Day).min(), "d")
        .filter(usage_daily::Column::Day.lte(t))
        .into_tuple()
        .one(store.conn())
        .await?
        .flatten();
    let Some(first) = first else {
        return Ok((Vec::new(), Vec::new()));
    };
    // The span (t - (h + 1) w, t] holds every day from `first` on.
    let w = vitals_scoring_core::DEFAULT_WINDOW_DAYS;
    let days = u32::try_from(Ord::max((t - first).num_days(), 0) + 1).unwrap_or(u32::MAX);
    let q = InputQuery {
        as_of: t,
        window_days: w,
        history_windows: days.div_ceil(w),
        scope: InputScope::All,
        include_churned: true,
    };
    let loaded = load_inputs(store, &q).await?;
    let by_account = loaded
        .accounts
        .into_iter()
        .zip(loaded.data)
        .map(|(a, d)| (a.id, d.usage))
        .filter(|(_, u)| !u.is_empty())
        .collect();
    Ok((by_account, loaded.spec.event_types))
}

/// What the training set's size follows from, read without the history's rows: the
/// accounts with their first day, the first day with data, and the names the KPI
/// catalogue is built from (as [`load_history`] reads them up to the same time).
#[derive(Debug, Default)]
pub struct HistoryFacts {
    /// Every account: (id, first day with data: creation, first roll-up or first
    /// contract up to `until`, whichever first).
    pub accounts: Vec<(String, NaiveDate)>,
    /// First day of a roll-up, interaction or contract up to `until`.
    pub data_start: Option<NaiveDate>,
    /// Event types declared key; `None` when none is.
    pub key_event_types: Option<HashSet<String>>,
    /// Every event type known (declared or seen up to `until`), sorted.
    pub event_types: Vec<String>,
    /// Names of the custom metrics with a sample up to `until`, sorted.
    pub custom_metrics: Vec<String>,
    /// Custom metrics declared "lower is better".
    pub lower_is_better_metrics: HashSet<String>,
}

/// Reads the [`HistoryFacts`] up to `until` (inclusive) with aggregate queries: a few
/// rows per account and per name, whatever the number of events.
pub async fn history_facts(
    store: &Store,
    until: DateTime<Utc>,
) -> Result<HistoryFacts, StoreError> {
    let c = store.conn();
    let day = until.date_naive();
    let created: Vec<(String, DateTime<Utc>)> = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .column(account::Column::CreatedAt)
        .order_by_asc(account::Column::Id)
        .into_tuple()
        .all(c)
        .await?;
    let first_usage: Vec<(String, NaiveDate)> = usage_daily::Entity::find()
        .select_only()
        .column(usage_daily::Column::AccountId)
        .column_as(Expr::col(usage_daily::Column::Day).min(), "d")
        .filter(usage_daily::Column::Day.lte(day))
        .group_by(usage_daily::Column::AccountId)
        .into_tuple()
        .all(c)
        .await?;
    let first_contract: Vec<(String, DateTime<Utc>)> = subscription::Entity::find()
        .select_only()
        .column(subscription::Column::AccountId)
        .column_as(Expr::col(subscription::Column::StartsAt).min(), "d")
        .filter(subscription::Column::StartsAt.lte(until))
        .group_by(subscription::Column::AccountId)
        .into_tuple()
        .all(c)
        .await?;
    let first_interaction: Option<DateTime<Utc>> = interaction::Entity::find()
        .select_only()
        .column_as(Expr::col(interaction::Column::OccurredAt).min(), "d")
        .filter(interaction::Column::OccurredAt.lte(until))
        .into_tuple()
        .one(c)
        .await?
        .flatten();
    let mut starts: HashMap<String, NaiveDate> = created
        .into_iter()
        .map(|(id, at)| (id, at.date_naive()))
        .collect();
    let mut data_start = first_interaction.map(|t| t.date_naive());
    let firsts = first_usage.into_iter().chain(
        first_contract
            .into_iter()
            .map(|(id, at)| (id, at.date_naive())),
    );
    for (id, d) in firsts {
        if let Some(s) = starts.get_mut(&id) {
            *s = Ord::min(*s, d);
            data_start = Some(data_start.map_or(d, |x| Ord::min(x, d)));
        }
    }
    let mut accounts: Vec<(String, NaiveDate)> = starts.into_iter().collect();
    accounts.sort_unstable();
    let mut event_types: BTreeSet<String> = names(c, "SELECT name FROM event_types")
        .await?
        .into_iter()
        .collect();
    let seen: Vec<String> = usage_daily::Entity::find()
        .select_only()
        .column(usage_daily::Column::EventType)
        .filter(usage_daily::Column::Day.lte(day))
        .distinct()
        .into_tuple()
        .all(c)
        .await?;
    event_types.extend(seen);
    let keys: HashSet<String> = names(c, "SELECT name FROM event_types WHERE is_key = TRUE")
        .await?
        .into_iter()
        .collect();
    let mut custom_metrics: Vec<String> = custom_metric::Entity::find()
        .select_only()
        .column(custom_metric::Column::Name)
        .filter(custom_metric::Column::At.lte(until))
        .distinct()
        .into_tuple()
        .all(c)
        .await?;
    custom_metrics.sort_unstable();
    Ok(HistoryFacts {
        accounts,
        data_start,
        key_event_types: (!keys.is_empty()).then_some(keys),
        event_types: event_types.into_iter().collect(),
        custom_metrics,
        lower_is_better_metrics: names(
            c,
            "SELECT name FROM custom_metric_definitions WHERE direction = 'lower_is_better'",
        )
        .await?
        .into_iter()
        .collect(),
    })
}

/// The end of the data the server holds as of `now`: the latest of the last usage day
/// (events are rolled up per day), the last subscription start and the last subscription
/// end, never after `now`'s day; `None` when there is no such data. The learner's default
/// `as_of` (docs/learning.md, "Observation window").
pub async fn latest_data_day(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Option<NaiveDate>, StoreError> {
    let c = store.conn();
    let today = now.date_naive();
    let usage: Option<NaiveDate> = usage_daily::Entity::find()
        .select_only()
        .column_as(Expr::col(usage_daily::Column::Day).max(), "d")
        .filter(usage_daily::Column::Day.lte(today))
        .into_tuple()
        .one(c)
        .await?
        .flatten();
    let started: Option<DateTime<Utc>> = subscription::Entity::find()
        .select_only()
        .column_as(Expr::col(subscription::Column::StartsAt).max(), "d")
        .filter(subscription::Column::StartsAt.lte(now))
        .into_tuple()
        .one(c)
        .await?
        .flatten();
    let ended: Option<DateTime<Utc>> = subscription::Entity::find()
        .select_only()
        .column_as(Expr::col(subscription::Column::EndsAt).max(), "d")
        .filter(subscription::Column::EndsAt.lte(now))
        .into_tuple()
        .one(c)
        .await?
        .flatten();
    Ok([
        usage,
        started.map(|t| t.date_naive()),
        ended.map(|t| t.date_naive()),
    ]
    .into_iter()
    .flatten()
    .max()
    .map(|d| Ord::min(d, today)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn new_model(profile: &str) -> NewModel {
        NewModel {
            profile_id: profile.to_owned(),
            trained_at: Utc::now(),
            n_observations: 10,
            n_churned: 2,
            kpi_weights: serde_json::json!([]),
            category_weights: serde_json::json!(null),
            coefficients: serde_json::json!({}),
            metrics: serde_json::json!({}),
        }
    }

    /// A batch of models is committed whole, and only while the run is still wanted:
    /// withdrawn right before the commit, nothing of it is stored.
    async fn models_are_committed_together_only_while_still_wanted(store: Store) {
        let backend = store.backend();
        // Wanted at the first check, withdrawn at the one before the commit.
        let checks = AtomicUsize::new(0);
        let r = insert_models(
            &store,
            vec![new_model("a"), new_model(GLOBAL_MODEL)],
            || checks.fetch_add(1, Ordering::SeqCst) == 0,
        )
        .await
        .expect("insert");
        assert!(r.is_none(), "{backend:?}");
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        assert!(latest_model(&store, "a").await.expect("read").is_none());
        assert!(
            latest_model(&store, GLOBAL_MODEL)
                .await
                .expect("read")
                .is_none()
        );
        let rows = insert_models(
            &store,
            vec![new_model("a"), new_model(GLOBAL_MODEL)],
            || true,
        )
        .await
        .expect("insert")
        .expect("committed");
        assert_eq!(
            rows.iter()
                .map(|r| (r.profile_id.as_str(), r.version))
                .collect::<Vec<_>>(),
            [("a", 1), (GLOBAL_MODEL, 1)],
            "{backend:?}: the withdrawn batch took no version"
        );
        store.close().await.expect("close");
    }

    crate::store_test_suite!(
        models_are_committed_together_only_while_still_wanted,
        latest_data_day_is_the_last_usage_or_subscription_change,
        the_history_holds_every_roll_up_up_to_its_day
    );

    /// `load_history` reads every roll-up up to its day, years back (the scoring
    /// loader's look-back would stop after four windows), of churned accounts too, with
    /// each row's values and event type, and nothing after the day.
    async fn the_history_holds_every_roll_up_up_to_its_day(store: Store) {
        use sea_orm::{ActiveModelTrait, IntoActiveModel};
        let backend = store.backend();
        let db = store.conn();
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let day = |s: &str| s.parse::<NaiveDate>().expect("day");
        for (id, status) in [("a", "active"), ("b", "churned"), ("c", "active")] {
            insert_account(db, id, status).await;
        }
        let rows = [
            ("a", "2018-02-03", "login", 3, 2, 1.5),
            ("a", "2019-12-31", "post", 1, 1, 0.0),
            ("b", "2018-06-30", "login", 7, 1, 2.0),
            ("a", "2020-01-02", "login", 9, 1, 0.0),
        ];
        for (a, d, e, count, users, value) in rows {
            usage_daily::Model {
                account_id: a.into(),
                day: day(d),
                event_type: e.into(),
                count,
                distinct_users: users,
                value_sum: value,
            }
            .into_active_model()
            .insert(db)
            .await
            .expect("usage");
        }
        let h = load_history(&store, t("2019-12-31T23:00:00Z"))
            .await
            .expect("history");
        let mut got: Vec<(String, NaiveDate, String, u32, u32, f64)> = h
            .usage_by_account
            .iter()
            .flat_map(|(a, us)| {
                us.iter().map(|u| {
                    (
                        a.clone(),
                        u.day,
                        h.usage_event_types[u.event_type as usize].clone(),
                        u.count,
                        u.distinct_users,
                        u.value_sum,
                    )
                })
            })
            .collect();
        got.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
        let want: Vec<(String, NaiveDate, String, u32, u32, f64)> = rows[..3]
            .iter()
            .map(|&(a, d, e, c, u, v)| (a.into(), day(d), e.into(), c as u32, u as u32, v))
            .collect();
        let mut want = want;
        want.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
        assert_eq!(got, want, "{backend:?}");
        assert!(h.usage.is_empty());
        assert_eq!(h.event_types, vec!["login".to_owned(), "post".to_owned()]);
        store.close().await.expect("close");
    }

    /// Inserts account `id` with `status`, created 2018-01-01.
    async fn insert_account(db: &sea_orm::DatabaseConnection, id: &str, status: &str) {
        use sea_orm::{ActiveModelTrait, IntoActiveModel};
        let created = "2018-01-01T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("time");
        account::Model {
            id: id.into(),
            name: id.into(),
            attributes: serde_json::json!({}),
            profile_id: None,
            pinned: false,
            status: status.into(),
            created_at: created,
            updated_at: created,
        }
        .into_active_model()
        .insert(db)
        .await
        .expect("account");
    }

    /// The data end is the last usage day or subscription change, never after now.
    async fn latest_data_day_is_the_last_usage_or_subscription_change(store: Store) {
        let backend = store.backend();
        let now = "2026-06-01T12:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("time");
        assert_eq!(latest_data_day(&store, now).await.expect("read"), None);
        use sea_orm::{ActiveModelTrait, IntoActiveModel};
        let db = store.conn();
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let day = |s: &str| s.parse::<NaiveDate>().expect("day");
        insert_account(db, "a", "active").await;
        usage_daily::Model {
            account_id: "a".into(),
            day: day("2019-03-04"),
            event_type: "login".into(),
            count: 1,
            distinct_users: 1,
            value_sum: 0.0,
        }
        .into_active_model()
        .insert(db)
        .await
        .expect("usage");
        assert_eq!(
            latest_data_day(&store, now).await.expect("read"),
            Some(day("2019-03-04")),
            "{backend:?}"
        );
        // A contract that ended later moves it; one that ends after now does not.
        for (id, start, end) in [
            ("p", "2019-01-01T00:00:00Z", "2019-05-01T00:00:00Z"),
            ("q", "2019-02-01T00:00:00Z", "2030-01-01T00:00:00Z"),
        ] {
            crate::testing::monthly_subscription("a", id, t(start), t(end))
                .into_active_model()
                .insert(db)
                .await
                .expect("subscription");
        }
        assert_eq!(
            latest_data_day(&store, now).await.expect("read"),
            Some(day("2019-05-01")),
            "{backend:?}"
        );
        store.close().await.expect("close");
    }
}
