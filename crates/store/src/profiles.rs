//! Storage of the profiles service: health profiles (with their extra settings), the
//! assignment of accounts to profiles, scorecards, and the data a scorecard preview reads
//! (account attributes, daily roll-ups, custom metrics, and every KPI input).
//!
//! Formats shared with other services:
//! - `accounts.attributes` is a JSON object from attribute name to a one-key object
//!   tagged by type: `{"plan": {"string": "premium"}, "seats": {"number": 50.0},
//!   "partner": {"bool": true}, "renewal": {"timestamp": "2026-03-01T00:00:00Z"}}`.
//!   [`parse_attributes`] also accepts bare JSON scalars and timestamps as Unix seconds.
//! - `health_profiles.weights` is [`StoredWeights`] as JSON; `health_profiles.kpis` a JSON
//!   array of KPI names; band thresholds, window and trend weight live in
//!   `profile_settings` (see [`ProfileRecord`]).
//! - `scorecards.measure` is [`StoredMeasure`] as JSON; `scorecards.tags` a JSON array.
//! - `accounts.profile_id` / `accounts.pinned` are the assignment every service reads;
//!   `account_assignments` records why and when (see [`AssignmentSource`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

use crate::entity::{
    account, contact, custom_metric, custom_score_field, health_profile, interaction, pulse,
    scorecard, subscription, usage_daily, webhook_signal,
};
use crate::{Db, StoreError};

/// Extra settings of a health profile (one row per profile).
pub mod profile_settings {
    use sea_orm::entity::prelude::*;

    /// One row: the settings of `profile_id`; `None` means the documented default.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_settings")]
    pub struct Model {
        /// The profile id (without `profiles/`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        /// Lowest yellow score (default 3).
        pub yellow_from: Option<f64>,
        /// Lowest green score (default 7).
        pub green_from: Option<f64>,
        /// KPI window in days (default 28).
        pub window_days: Option<i32>,
        /// Points moved by full momentum (default 1).
        pub trend_weight: Option<f64>,
    }

    /// No declared relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Why and since when an account is in its profile (one row per assigned account).
pub mod account_assignment {
    use sea_orm::entity::prelude::*;

    /// One row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "account_assignments")]
    pub struct Model {
        /// The account.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// The profile id it was assigned to (mirrors `accounts.profile_id`).
        pub profile_id: String,
        /// `rule`, `default` or `pinned`.
        pub source: String,
        /// When it joined this profile.
        pub assigned_at: DateTimeUtc,
        /// The account's `updated_at` when the rules last looked at it: a later
        /// `updated_at` means its attributes may have changed since.
        pub evaluated_at: DateTimeUtc,
    }

    /// No declared relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A typed account attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// A string.
    String(String),
    /// A finite number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time.
    Timestamp(DateTime<Utc>),
}

impl AttrValue {
    /// Decodes one attribute value from its JSON form (see the module doc); `None` for
    /// null or a shape it does not know.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        use serde_json::Value as J;
        match v {
            J::String(s) => Some(Self::String(s.clone())),
            J::Number(n) => n.as_f64().filter(|f| f.is_finite()).map(Self::Number),
            J::Bool(b) => Some(Self::Bool(*b)),
            J::Object(o) if o.len() == 1 => {
                let (k, inner) = o.iter().next()?;
                match (k.as_str(), inner) {
                    ("string" | "string_value", J::String(s)) => Some(Self::String(s.clone())),
                    ("number" | "number_value", J::Number(n)) => {
                        n.as_f64().filter(|f| f.is_finite()).map(Self::Number)
                    }
                    ("bool" | "bool_value", J::Bool(b)) => Some(Self::Bool(*b)),
                    ("timestamp" | "timestamp_value", J::String(s)) => {
                        DateTime::parse_from_rfc3339(s)
                            .ok()
                            .map(|t| Self::Timestamp(t.with_timezone(&Utc)))
                    }
                    ("timestamp" | "timestamp_value", J::Number(n)) => n
                        .as_i64()
                        .and_then(|s| Utc.timestamp_opt(s, 0).single())
                        .map(Self::Timestamp),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The JSON form written to `accounts.attributes`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::String(s) => serde_json::json!({ "string": s }),
            Self::Number(n) => serde_json::json!({ "number": n }),
            Self::Bool(b) => serde_json::json!({ "bool": b }),
            Self::Timestamp(t) => serde_json::json!({
                "timestamp": t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            }),
        }
    }
}

/// Decodes an `accounts.attributes` JSON object; entries it cannot read are skipped.
pub fn parse_attributes(json: &serde_json::Value) -> BTreeMap<String, AttrValue> {
    json.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| AttrValue::from_json(v).map(|v| (k.clone(), v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Encodes attributes into the `accounts.attributes` JSON form.
pub fn attributes_json(attrs: &BTreeMap<String, AttrValue>) -> serde_json::Value {
    serde_json::Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

/// Category weights as stored in `health_profiles.weights`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredWeights {
    /// Usage weight.
    #[serde(default)]
    pub usage: f64,
    /// Conversations weight.
    #[serde(default)]
    pub conversations: f64,
    /// Pulse weight.
    #[serde(default)]
    pub pulse: f64,
    /// Contract weight.
    #[serde(default)]
    pub contract: f64,
    /// Custom-metrics weight.
    #[serde(default)]
    pub custom_metrics: f64,
    /// Weight per custom score field (fields not listed weigh 1).
    #[serde(default)]
    pub custom_score_fields: BTreeMap<String, f64>,
}

/// A health profile with everything stored about it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRecord {
    /// Id (the resource name is `profiles/{id}`).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Category weights.
    pub weights: StoredWeights,
    /// CEL assignment rule ("" matches nothing).
    pub rule: String,
    /// Evaluation order, lowest first.
    pub priority: i32,
    /// Minimum population for peer comparison.
    pub min_population: i32,
    /// `manual`, `learned` or `blended`.
    pub weights_mode: String,
    /// KPI selection (empty = all).
    pub kpis: Vec<String>,
    /// Whether this is the default profile.
    pub is_default: bool,
    /// Lowest yellow score, `None` = 3.
    pub yellow_from: Option<f64>,
    /// Lowest green score, `None` = 7.
    pub green_from: Option<f64>,
    /// KPI window in days, `None` = 28.
    pub window_days: Option<i32>,
    /// Trend weight, `None` = 1.
    pub trend_weight: Option<f64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl ProfileRecord {
    fn from_rows(p: health_profile::Model, s: Option<profile_settings::Model>) -> Self {
        let weights = serde_json::from_value(p.weights).unwrap_or_default();
        let kpis = serde_json::from_value(p.kpis).unwrap_or_default();
        let s = s.unwrap_or(profile_settings::Model {
            profile_id: p.id.clone(),
            yellow_from: None,
            green_from: None,
            window_days: None,
            trend_weight: None,
        });
        Self {
            id: p.id,
            display_name: p.display_name,
            description: p.description,
            weights,
            rule: p.rule,
            priority: p.priority,
            min_population: p.min_population,
            weights_mode: p.weights_mode,
            kpis,
            is_default: p.is_default,
            yellow_from: s.yellow_from,
            green_from: s.green_from,
            window_days: s.window_days,
            trend_weight: s.trend_weight,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }

    fn rows(&self) -> Result<(health_profile::Model, profile_settings::Model), DbErr> {
        let json = |e: serde_json::Error| DbErr::Custom(format!("encode profile: {e}"));
        Ok((
            health_profile::Model {
                id: self.id.clone(),
                display_name: self.display_name.clone(),
                description: self.description.clone(),
                weights: serde_json::to_value(&self.weights).map_err(json)?,
                rule: self.rule.clone(),
                priority: self.priority,
                min_population: self.min_population,
                weights_mode: self.weights_mode.clone(),
                kpis: serde_json::to_value(&self.kpis).map_err(json)?,
                is_default: self.is_default,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            profile_settings::Model {
                profile_id: self.id.clone(),
                yellow_from: self.yellow_from,
                green_from: self.green_from,
                window_days: self.window_days,
                trend_weight: self.trend_weight,
            },
        ))
    }
}

/// Every profile in evaluation order (ascending priority, then id).
pub async fn load_profiles(db: &impl Db) -> Result<Vec<ProfileRecord>, StoreError> {
    let conn = db.c();
    let rows = health_profile::Entity::find()
        .order_by_asc(health_profile::Column::Priority)
        .order_by_asc(health_profile::Column::Id)
        .all(conn)
        .await?;
    let mut settings: HashMap<String, profile_settings::Model> = profile_settings::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|s| (s.profile_id.clone(), s))
        .collect();
    Ok(rows
        .into_iter()
        .map(|p| {
            let s = settings.remove(&p.id);
            ProfileRecord::from_rows(p, s)
        })
        .collect())
}

/// One profile by id.
pub async fn get_profile(db: &impl Db, id: &str) -> Result<Option<ProfileRecord>, StoreError> {
    let conn = db.c();
    let Some(p) = health_profile::Entity::find_by_id(id).one(conn).await? else {
        return Ok(None);
    };
    let s = profile_settings::Entity::find_by_id(id).one(conn).await?;
    Ok(Some(ProfileRecord::from_rows(p, s)))
}

/// Inserts a new profile (fails on a taken id).
pub async fn insert_profile(db: &impl Db, p: &ProfileRecord) -> Result<(), StoreError> {
    let conn = db.c();
    let (row, settings) = p.rows()?;
    row.into_active_model().insert(conn).await?;
    upsert_settings(conn, settings).await
}

/// Writes a profile's settings row, replacing the one there.
async fn upsert_settings(
    conn: &impl ConnectionTrait,
    settings: profile_settings::Model,
) -> Result<(), StoreError> {
    profile_settings::Entity::insert(settings.into_active_model())
        .on_conflict(
            OnConflict::column(profile_settings::Column::ProfileId)
                .update_columns([
                    profile_settings::Column::YellowFrom,
                    profile_settings::Column::GreenFrom,
                    profile_settings::Column::WindowDays,
                    profile_settings::Column::TrendWeight,
                ])
                .to_owned(),
        )
        .exec(conn)
        .await?;
    Ok(())
}

/// Inserts the profile unless one with its id exists; true when it was inserted. Safe
/// against concurrent callers (the loser's insert does nothing).
pub async fn insert_profile_if_absent(db: &impl Db, p: &ProfileRecord) -> Result<bool, StoreError> {
    let conn = db.c();
    let (row, settings) = p.rows()?;
    let res = health_profile::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::column(health_profile::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    if res == 0 {
        return Ok(false);
    }
    profile_settings::Entity::insert(settings.into_active_model())
        .on_conflict(
            OnConflict::column(profile_settings::Column::ProfileId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(true)
}

/// Overwrites every stored field of an existing profile.
pub async fn update_profile(db: &impl Db, p: &ProfileRecord) -> Result<(), StoreError> {
    let conn = db.c();
    let (row, settings) = p.rows()?;
    row.into_active_model().reset_all().update(conn).await?;
    upsert_settings(conn, settings).await
}

/// Clears `is_default` on every profile but `keep`.
pub async fn clear_default_except(db: &impl Db, keep: &str) -> Result<(), StoreError> {
    let conn = db.c();
    health_profile::Entity::update_many()
        .col_expr(health_profile::Column::IsDefault, Expr::value(false))
        .filter(health_profile::Column::Id.ne(keep))
        .filter(health_profile::Column::IsDefault.eq(true))
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes a profile and its settings; true when it existed.
pub async fn delete_profile(db: &impl Db, id: &str) -> Result<bool, StoreError> {
    let conn = db.c();
    profile_settings::Entity::delete_by_id(id)
        .exec(conn)
        .await?;
    let res = health_profile::Entity::delete_by_id(id).exec(conn).await?;
    Ok(res.rows_affected > 0)
}

/// An account as the assignment rules and segments see it.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRecord {
    /// The customer's account id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `active`, `trial`, `churned` or `unassigned`.
    pub status: String,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// Last change of the account row (attributes included).
    pub updated_at: DateTime<Utc>,
    /// Typed attributes.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Current profile id, if assigned.
    pub profile_id: Option<String>,
    /// Pinned by a manual assignment.
    pub pinned: bool,
}

impl From<account::Model> for AccountRecord {
    fn from(a: account::Model) -> Self {
        Self {
            attributes: parse_attributes(&a.attributes),
            id: a.id,
            name: a.name,
            status: a.status,
            created_at: a.created_at,
            updated_at: a.updated_at,
            profile_id: a.profile_id,
            pinned: a.pinned,
        }
    }
}

/// Every account, by id.
pub async fn load_accounts(db: &impl Db) -> Result<Vec<AccountRecord>, StoreError> {
    let conn = db.c();
    Ok(account::Entity::find()
        .order_by_asc(account::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(AccountRecord::from)
        .collect())
}

/// The accounts with these ids (unknown ids are simply absent), by id.
pub async fn load_accounts_by_id(
    db: &impl Db,
    ids: &[String],
) -> Result<Vec<AccountRecord>, StoreError> {
    let conn = db.c();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        out.extend(
            account::Entity::find()
                .filter(account::Column::Id.is_in(chunk.iter().cloned()))
                .all(conn)
                .await?
                .into_iter()
                .map(AccountRecord::from),
        );
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

/// Where an assignment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignmentSource {
    /// A profile's rule matched.
    Rule,
    /// No rule matched: the default profile.
    Default,
    /// Pinned by a manual or bulk assignment.
    Pinned,
}

impl AssignmentSource {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Default => "default",
            Self::Pinned => "pinned",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rule" => Some(Self::Rule),
            "default" => Some(Self::Default),
            "pinned" => Some(Self::Pinned),
            _ => None,
        }
    }
}

/// One assignment to write.
#[derive(Clone, Debug, PartialEq)]
pub struct AssignmentWrite {
    /// The account.
    pub account_id: String,
    /// Its profile id.
    pub profile_id: String,
    /// Why.
    pub source: AssignmentSource,
    /// True when the profile changes (so `assigned_at` restarts).
    pub moved: bool,
    /// The account's `updated_at` as seen by the evaluation.
    pub evaluated_at: DateTime<Utc>,
}

/// The recorded provenance of every assignment, by account id.
pub async fn load_assignments(
    db: &impl Db,
) -> Result<HashMap<String, account_assignment::Model>, StoreError> {
    let conn = db.c();
    Ok(account_assignment::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|a| (a.account_id.clone(), a))
        .collect())
}

/// The recorded provenance of one account's assignment.
pub async fn get_assignment(
    db: &impl Db,
    account_id: &str,
) -> Result<Option<account_assignment::Model>, StoreError> {
    let conn = db.c();
    account_assignment::Entity::find_by_id(account_id)
        .one(conn)
        .await
        .map_err(Into::into)
}

/// Writes assignments: `accounts.profile_id` / `pinned` and the provenance rows. Rule and
/// default assignments only touch accounts that are not pinned at write time, so a
/// background run never undoes a pin made meanwhile. Call inside a transaction.
pub async fn write_assignments(
    db: &impl Db,
    writes: &[AssignmentWrite],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let conn = db.c();
    for w in writes {
        let pinned = w.source == AssignmentSource::Pinned;
        let mut upd = account::Entity::update_many()
            .col_expr(
                account::Column::ProfileId,
                Expr::value(w.profile_id.clone()),
            )
            .col_expr(account::Column::Pinned, Expr::value(pinned))
            .filter(account::Column::Id.eq(w.account_id.clone()));
        if !pinned {
            upd = upd.filter(account::Column::Pinned.eq(false));
        }
        let res = upd.exec(conn).await?;
        if res.rows_affected == 0 {
            continue;
        }
        let row = account_assignment::ActiveModel {
            account_id: Set(w.account_id.clone()),
            profile_id: Set(w.profile_id.clone()),
            source: Set(w.source.as_str().to_string()),
            assigned_at: Set(now),
            evaluated_at: Set(w.evaluated_at),
        };
        let mut update_cols = vec![
            account_assignment::Column::ProfileId,
            account_assignment::Column::Source,
            account_assignment::Column::EvaluatedAt,
        ];
        if w.moved {
            update_cols.push(account_assignment::Column::AssignedAt);
        }
        account_assignment::Entity::insert(row)
            .on_conflict(
                OnConflict::column(account_assignment::Column::AccountId)
                    .update_columns(update_cols)
                    .to_owned(),
            )
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Marks accounts as evaluated (their rules gave the profile they already have).
pub async fn touch_evaluated(
    db: &impl Db,
    seen: &[(String, DateTime<Utc>)],
) -> Result<(), StoreError> {
    let conn = db.c();
    for (id, at) in seen {
        account_assignment::Entity::update_many()
            .col_expr(account_assignment::Column::EvaluatedAt, Expr::value(*at))
            .filter(account_assignment::Column::AccountId.eq(id.clone()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Clears the pin of these accounts (their profile stays until the rules move them).
pub async fn unpin(db: &impl Db, ids: &[String]) -> Result<(), StoreError> {
    let conn = db.c();
    for chunk in ids.chunks(500) {
        account::Entity::update_many()
            .col_expr(account::Column::Pinned, Expr::value(false))
            .filter(account::Column::Id.is_in(chunk.iter().cloned()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// A measure of a scorecard as stored in `scorecards.measure`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredMeasure {
    /// Events of one type over a trailing window.
    EventCount {
        /// Event type.
        event_type: String,
        /// Window in days.
        window_days: u32,
        /// `count`, `value_sum` or `active_days`.
        aggregation: String,
    },
    /// An account attribute.
    Attribute {
        /// Attribute name.
        attribute: String,
    },
    /// A custom metric.
    CustomMetric {
        /// Metric name.
        name: String,
        /// `latest`, `sum`, `mean`, `min`, `max` or `count`.
        aggregation: String,
        /// Window in days.
        window_days: u32,
    },
    /// A KPI's raw value.
    Kpi {
        /// KPI name.
        kpi: String,
    },
}

/// A scorecard with everything stored about it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScorecardRecord {
    /// Id (`scorecards/{id}`).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// What is measured.
    pub measure: StoredMeasure,
    /// Value scoring 0.
    pub worst: f64,
    /// Value scoring 10.
    pub best: f64,
    /// Lowest yellow score.
    pub yellow_from: f64,
    /// Lowest green score.
    pub green_from: f64,
    /// `none`, `low`, `medium` or `high`.
    pub impact: String,
    /// CEL segment ("" = every account).
    pub segment: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Position in the display order.
    pub display_order: i32,
    /// Computed at all.
    pub enabled: bool,
    /// Counted in the global score.
    pub include_in_global: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<scorecard::Model> for ScorecardRecord {
    type Error = DbErr;
    fn try_from(m: scorecard::Model) -> Result<Self, DbErr> {
        let measure = serde_json::from_value(m.measure)
            .map_err(|e| DbErr::Custom(format!("scorecard {}: bad measure: {e}", m.id)))?;
        Ok(Self {
            id: m.id,
            display_name: m.display_name,
            description: m.description,
            measure,
            worst: m.worst,
            best: m.best,
            yellow_from: m.red_below,
            green_from: m.green_from,
            impact: m.impact,
            segment: m.segment,
            tags: serde_json::from_value(m.tags).unwrap_or_default(),
            display_order: m.display_order,
            enabled: m.enabled,
            include_in_global: m.include_in_global,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl ScorecardRecord {
    fn row(&self) -> Result<scorecard::Model, DbErr> {
        let json = |e: serde_json::Error| DbErr::Custom(format!("encode scorecard: {e}"));
        Ok(scorecard::Model {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            measure: serde_json::to_value(&self.measure).map_err(json)?,
            worst: self.worst,
            best: self.best,
            red_below: self.yellow_from,
            green_from: self.green_from,
            impact: self.impact.clone(),
            segment: self.segment.clone(),
            tags: serde_json::to_value(&self.tags).map_err(json)?,
            display_order: self.display_order,
            enabled: self.enabled,
            include_in_global: self.include_in_global,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Every scorecard in display order (then id).
pub async fn load_scorecards(db: &impl Db) -> Result<Vec<ScorecardRecord>, StoreError> {
    let conn = db.c();
    scorecard::Entity::find()
        .order_by_asc(scorecard::Column::DisplayOrder)
        .order_by_asc(scorecard::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(ScorecardRecord::try_from)
        .collect::<Result<_, DbErr>>()
        .map_err(Into::into)
}

/// One scorecard by id.
pub async fn get_scorecard(db: &impl Db, id: &str) -> Result<Option<ScorecardRecord>, StoreError> {
    let conn = db.c();
    scorecard::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(ScorecardRecord::try_from)
        .transpose()
        .map_err(Into::into)
}

/// Inserts a scorecard (fails on a taken id).
pub async fn insert_scorecard(db: &impl Db, s: &ScorecardRecord) -> Result<(), StoreError> {
    let conn = db.c();
    s.row()?.into_active_model().insert(conn).await?;
    Ok(())
}

/// Overwrites every stored field of an existing scorecard.
pub async fn update_scorecard(db: &impl Db, s: &ScorecardRecord) -> Result<(), StoreError> {
    let conn = db.c();
    s.row()?
        .into_active_model()
        .reset_all()
        .update(conn)
        .await?;
    Ok(())
}

/// Deletes a scorecard; true when it existed.
pub async fn delete_scorecard(db: &impl Db, id: &str) -> Result<bool, StoreError> {
    let conn = db.c();
    Ok(scorecard::Entity::delete_by_id(id)
        .exec(conn)
        .await?
        .rows_affected
        > 0)
}

/// Sets the display order of scorecards: `ids[i]` gets position `i`.
pub async fn set_display_order(db: &impl Db, ids: &[String]) -> Result<(), StoreError> {
    let conn = db.c();
    for (i, id) in ids.iter().enumerate() {
        scorecard::Entity::update_many()
            .col_expr(scorecard::Column::DisplayOrder, Expr::value(i as i32))
            .filter(scorecard::Column::Id.eq(id.clone()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Daily roll-ups of one event type with `from <= day <= to`, for every account.
pub async fn usage_rows(
    db: &impl Db,
    event_type: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<usage_daily::Model>, StoreError> {
    let conn = db.c();
    usage_daily::Entity::find()
        .filter(usage_daily::Column::EventType.eq(event_type))
        .filter(usage_daily::Column::Day.gte(from))
        .filter(usage_daily::Column::Day.lte(to))
        .all(conn)
        .await
        .map_err(Into::into)
}

/// Samples of one custom metric at or before `to`, for every account, oldest first.
pub async fn metric_samples(
    db: &impl Db,
    name: &str,
    to: DateTime<Utc>,
) -> Result<Vec<custom_metric::Model>, StoreError> {
    let conn = db.c();
    custom_metric::Entity::find()
        .filter(custom_metric::Column::Name.eq(name))
        .filter(custom_metric::Column::At.lte(to))
        .order_by_asc(custom_metric::Column::At)
        .all(conn)
        .await
        .map_err(Into::into)
}

/// Everything the KPI computation reads, for every account, up to `to`: the raw rows,
/// to be turned into scoring-core inputs by the caller. Roll-ups start at `usage_from`.
#[derive(Debug, Default)]
pub struct KpiData {
    /// Daily roll-ups.
    pub usage: Vec<usage_daily::Model>,
    /// Interactions.
    pub interactions: Vec<interaction::Model>,
    /// Contacts.
    pub contacts: Vec<contact::Model>,
    /// CSM pulses.
    pub pulses: Vec<pulse::Model>,
    /// Subscriptions.
    pub subscriptions: Vec<subscription::Model>,
    /// Custom metric samples.
    pub custom_metrics: Vec<custom_metric::Model>,
    /// Current custom score fields.
    pub score_fields: Vec<custom_score_field::Model>,
    /// Webhook signals.
    pub webhook_signals: Vec<webhook_signal::Model>,
}

/// Loads [`KpiData`] as of `to`.
pub async fn load_kpi_data(
    db: &impl Db,
    usage_from: NaiveDate,
    to: DateTime<Utc>,
) -> Result<KpiData, StoreError> {
    let conn = db.c();
    Ok(KpiData {
        usage: usage_daily::Entity::find()
            .filter(usage_daily::Column::Day.gte(usage_from))
            .filter(usage_daily::Column::Day.lte(to.date_naive()))
            .all(conn)
            .await?,
        interactions: interaction::Entity::find()
            .filter(interaction::Column::OccurredAt.lte(to))
            .all(conn)
            .await?,
        contacts: contact::Entity::find().all(conn).await?,
        pulses: pulse::Entity::find()
            .filter(pulse::Column::At.lte(to))
            .all(conn)
            .await?,
        subscriptions: subscription::Entity::find()
            .filter(subscription::Column::StartsAt.lte(to))
            .all(conn)
            .await?,
        custom_metrics: custom_metric::Entity::find()
            .filter(custom_metric::Column::At.lte(to))
            .all(conn)
            .await?,
        score_fields: custom_score_field::Entity::find().all(conn).await?,
        webhook_signals: webhook_signal::Entity::find()
            .filter(webhook_signal::Column::At.lte(to))
            .all(conn)
            .await?,
    })
}

/// The event types declared key in `event_types` (the ingestion service's table), or
/// `None` when none is declared (then every event type counts as key).
pub async fn key_event_types(
    db: &impl Db,
) -> Result<Option<std::collections::HashSet<String>>, StoreError> {
    let conn = db.c();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT name FROM event_types WHERE is_key = TRUE",
        ))
        .await?;
    let keys: std::collections::HashSet<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "name").ok())
        .collect();
    Ok((!keys.is_empty()).then_some(keys))
}

/// Custom metric names declared "lower is better" in `custom_metric_definitions`.
pub async fn lower_is_better_metrics(
    db: &impl Db,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let conn = db.c();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT name FROM custom_metric_definitions WHERE direction = 'lower_is_better'",
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "name").ok())
        .collect())
}
