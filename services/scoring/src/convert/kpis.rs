//! ListKpis: the category filter of the request and the KPI definitions of the answer
//! (display names and units).

use std::collections::HashMap;

use vitals_proto::common::v1 as cpb;
use vitals_proto::scoring::v1 as pb;
use vitals_scoring_core as core;
use vitals_server::ApiError;

use crate::domain::stored;

/// The category a ListKpis request keeps (its proto value; every category when `None`).
pub fn kpi_filter(req: &pb::ListKpisRequest) -> Result<Option<i32>, ApiError> {
    match cpb::ScoreCategory::try_from(req.category) {
        Ok(cpb::ScoreCategory::Unspecified) => Ok(None),
        Ok(c) => Ok(Some(c as i32)),
        Err(_) => Err(ApiError::invalid(
            "category",
            format!("unknown category {}", req.category),
        )),
    }
}

/// The ListKpis answer: the catalogue's KPIs of the `filter` category, by category and name.
pub fn kpis_response(catalogue: &[core::KpiDef], filter: Option<i32>) -> pb::ListKpisResponse {
    let units = units();
    let mut kpis: Vec<cpb::KpiDefinition> = catalogue
        .iter()
        .map(|k| cpb::KpiDefinition {
            name: k.name.to_string(),
            display_name: display_name(&k.name),
            description: k.doc.to_string(),
            category: stored::category_proto(k.category),
            direction: match k.direction {
                core::Direction::HigherIsBetter => cpb::KpiDirection::HigherIsBetter,
                core::Direction::LowerIsBetter => cpb::KpiDirection::LowerIsBetter,
            } as i32,
            unit: units
                .get(k.name.as_ref())
                .copied()
                .or_else(|| detail_unit(&k.name))
                .unwrap_or_else(|| default_unit(k.category))
                .to_string(),
        })
        .filter(|k| filter.is_none_or(|c| k.category == c))
        .collect();
    kpis.sort_by(|a, b| {
        a.category
            .cmp(&b.category)
            .then_with(|| a.name.cmp(&b.name))
    });
    pb::ListKpisResponse { kpis }
}

/// "days_since_last_activity" -> "Days since last activity";
/// "events_login__days_since" -> "Events login: days since".
fn display_name(name: &str) -> String {
    let s = name.replace("__", ": ").replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// Unit of a per key event type detail KPI (`events_<type>__share`, ...), from its family.
fn detail_unit(name: &str) -> Option<&'static str> {
    match name.rsplit_once("__")?.1 {
        "share" => Some("ratio"),
        "days_since" => Some("days"),
        "change_pct" => Some("percent"),
        _ => None,
    }
}

fn default_unit(c: core::Category) -> &'static str {
    match c {
        core::Category::Usage | core::Category::Conversations => "count",
        core::Category::Pulse | core::Category::ScoreField => "rating 1..5",
        core::Category::Contract | core::Category::Custom => "value",
    }
}

/// Units of the built-in KPIs whose unit is not the category default.
fn units() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("key_events", "events"),
        ("all_events", "events"),
        ("key_events_per_seat", "events/seat"),
        ("key_events_per_active_user", "events/user"),
        ("events_per_active_day", "events/day"),
        ("key_events_last_7d", "events"),
        ("recent_activity_ratio", "ratio"),
        ("active_days", "days"),
        ("active_weeks", "weeks"),
        ("avg_daily_active_users", "users"),
        ("peak_daily_active_users", "users"),
        ("active_user_ratio", "ratio"),
        ("avg_dau_per_seat", "ratio"),
        ("days_since_last_activity", "days"),
        ("mean_gap_between_active_days", "days"),
        ("max_inactive_streak", "days"),
        ("time_spent", "value units"),
        ("time_spent_per_active_user", "value units/user"),
        ("breadth", "ratio"),
        ("key_events_change_pct", "percent"),
        ("active_days_change_pct", "percent"),
        ("active_users_change_pct", "percent"),
        ("time_spent_change_pct", "percent"),
        ("breadth_change", "ratio"),
        ("weekly_events_slope", "ratio/week"),
        ("days_since_last_contact", "days"),
        ("days_since_last_inbound", "days"),
        ("contacts_reached", "contacts"),
        ("contacts_reached_share", "ratio"),
        ("decision_makers_involved", "contacts"),
        ("champions_involved", "contacts"),
        ("mean_sentiment", "sentiment -1..1"),
        ("negative_interaction_share", "ratio"),
        ("response_rate", "ratio"),
        ("interactions_change_pct", "percent"),
        ("sentiment_change", "sentiment -1..1"),
        ("pulse_age_days", "days"),
        ("pulse_change", "rating points"),
        ("mrr", "currency/month"),
        ("mrr_change_90d_pct", "percent"),
        ("add_ons", "subscriptions"),
        ("add_on_mrr_share", "ratio"),
        ("tenure_days", "days"),
        ("days_to_renewal", "days"),
        ("discount", "ratio"),
        ("quantity", "units"),
        ("active_subscriptions", "subscriptions"),
        ("billing_period_months", "months"),
        ("renewals", "subscriptions"),
    ])
}
