//! Proto <-> domain conversion with validation: everything a request may get wrong is
//! checked here and reported as INVALID_ARGUMENT naming the field.

pub mod requests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as pb;
use vitals_scoring_core::Catalogue;
use vitals_server::ApiError;
use vitals_server::paging::{self, OffsetPage, PageLimits};
use vitals_server::validate as sv;
use vitals_store::profiles::{ProfileRecord, ScorecardRecord, StoredMeasure, StoredWeights};

use crate::domain::scorecards::ScorecardFilter;
use crate::rules::Rule;

/// Most custom score fields a profile may weigh.
pub const MAX_SCORE_FIELD_WEIGHTS: usize = 100;
/// Most KPIs a profile may select.
pub const MAX_KPIS: usize = 500;
/// Most tags on a scorecard.
pub const MAX_TAGS: usize = 20;

/// Timestamp of a time.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// An `as_of` a client sends: from 2000-01-01 to 24 h past the server's clock (the rule
/// of every service, [`vitals_server::validate::data_time`]).
pub fn as_of(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>, ApiError> {
    sv::data_time(field, t, Utc::now())
}

pub use vitals_server::validate::resource_id as check_id;

/// An id derived from a display name: lower-cased, other characters become `-`, starting
/// with a letter, at most `max` characters.
pub fn slug_id(name: &str, max: usize) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "p-");
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The id in a resource name `{collection}/{id}`.
pub fn parse_name<'a>(field: &str, collection: &str, name: &'a str) -> Result<&'a str, ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid(field, "required"));
    }
    let id = name
        .strip_prefix(collection)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{name:?} is not of the form {collection}/{{id}}"),
            )
        })?;
    check_id(field, id)?;
    Ok(id)
}

fn check_text(field: &str, v: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if v.len() < min {
        return Err(ApiError::invalid(field, "required"));
    }
    if v.len() > max {
        return Err(ApiError::invalid(field, format!("longer than {max} bytes")));
    }
    sv::no_nul(field, v)
}

/// A CEL rule's text as stored: the compiler sees it only once it holds no NUL.
fn check_rule(field: &str, rule: &str) -> Result<(), ApiError> {
    sv::no_nul(field, rule)?;
    Rule::compile_optional(field, rule)?;
    Ok(())
}

fn check_weight(field: &str, w: f64) -> Result<(), ApiError> {
    if !w.is_finite() {
        return Err(ApiError::invalid(field, "must be finite"));
    }
    if w < 0.0 {
        return Err(ApiError::invalid(field, "must be >= 0"));
    }
    // Weights are summed (normalised over a profile): bounded so no sum overflows.
    sv::value(field, w)?;
    Ok(())
}

/// Validates category weights (finite, >= 0, not all zero); `None` means all ones.
pub fn weights(field: &str, w: Option<&cpb::CategoryWeights>) -> Result<StoredWeights, ApiError> {
    let Some(w) = w else {
        return Ok(StoredWeights {
            usage: 1.0,
            conversations: 1.0,
            pulse: 1.0,
            contract: 1.0,
            custom_metrics: 1.0,
            custom_score_fields: BTreeMap::new(),
        });
    };
    for (name, v) in [
        ("usage", w.usage),
        ("conversations", w.conversations),
        ("pulse", w.pulse),
        ("contract", w.contract),
        ("custom_metrics", w.custom_metrics),
    ] {
        check_weight(&format!("{field}.{name}"), v)?;
    }
    if w.custom_score_fields.len() > MAX_SCORE_FIELD_WEIGHTS {
        return Err(ApiError::invalid(
            format!("{field}.custom_score_fields"),
            format!("more than {MAX_SCORE_FIELD_WEIGHTS} entries"),
        ));
    }
    let mut fields = BTreeMap::new();
    for (k, v) in &w.custom_score_fields {
        let f = format!("{field}.custom_score_fields[{k:?}]");
        check_text(&f, k, 1, 128)?;
        check_weight(&f, *v)?;
        fields.insert(k.clone(), *v);
    }
    let any = [
        w.usage,
        w.conversations,
        w.pulse,
        w.contract,
        w.custom_metrics,
    ]
    .iter()
    .chain(fields.values())
    .any(|v| *v > 0.0);
    if !any {
        return Err(ApiError::invalid(field, "at least one weight must be > 0"));
    }
    Ok(StoredWeights {
        usage: w.usage,
        conversations: w.conversations,
        pulse: w.pulse,
        contract: w.contract,
        custom_metrics: w.custom_metrics,
        custom_score_fields: fields,
    })
}

/// Validates band thresholds; returns (yellow_from, green_from), unset parts as `None`.
pub fn bands(
    field: &str,
    b: Option<&cpb::BandThresholds>,
) -> Result<(Option<f64>, Option<f64>), ApiError> {
    let Some(b) = b else {
        return Ok((None, None));
    };
    for (name, v) in [("yellow_from", b.yellow_from), ("green_from", b.green_from)] {
        if let Some(v) = v
            && (!v.is_finite() || !(0.0..=10.0).contains(&v))
        {
            return Err(ApiError::invalid(
                format!("{field}.{name}"),
                "must be finite and in 0..10",
            ));
        }
    }
    let (y, g) = (b.yellow_from.unwrap_or(3.0), b.green_from.unwrap_or(7.0));
    if y > g {
        return Err(ApiError::invalid(
            field,
            format!("yellow_from ({y}) must not exceed green_from ({g})"),
        ));
    }
    Ok((b.yellow_from, b.green_from))
}

/// True when `name` is a KPI of the catalogue or a generated KPI name.
pub fn known_kpi(name: &str) -> bool {
    ["events_", "custom_", "score_field_"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
        || Catalogue::builtin_only().index_of(name).is_some()
}

fn weights_mode(field: &str, v: i32) -> Result<&'static str, ApiError> {
    match pb::WeightsMode::try_from(v) {
        Ok(pb::WeightsMode::Unspecified | pb::WeightsMode::Manual) => Ok("manual"),
        Ok(pb::WeightsMode::Learned) => Ok("learned"),
        Ok(pb::WeightsMode::Blended) => Ok("blended"),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("unknown weights mode {v}"),
        )),
    }
}

fn weights_mode_pb(s: &str) -> pb::WeightsMode {
    match s {
        "learned" => pb::WeightsMode::Learned,
        "blended" => pb::WeightsMode::Blended,
        _ => pb::WeightsMode::Manual,
    }
}

/// A validated health profile (everything but id and times).
#[derive(Debug, Clone)]
pub struct ProfileFields {
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Weights.
    pub weights: StoredWeights,
    /// Rule (compiled to check it, stored as text).
    pub rule: String,
    /// Priority.
    pub priority: i32,
    /// Minimum population.
    pub min_population: i32,
    /// Weights mode name.
    pub weights_mode: String,
    /// KPI selection.
    pub kpis: Vec<String>,
    /// Default flag as requested.
    pub is_default: bool,
    /// Yellow threshold.
    pub yellow_from: Option<f64>,
    /// Green threshold.
    pub green_from: Option<f64>,
    /// KPI window.
    pub window_days: Option<i32>,
    /// Trend weight.
    pub trend_weight: Option<f64>,
}

/// Validates a health profile whose fields are reported under `prefix` (e.g.
/// `health_profile`).
pub fn profile_fields(prefix: &str, p: &pb::HealthProfile) -> Result<ProfileFields, ApiError> {
    let f = |name: &str| format!("{prefix}.{name}");
    check_text(&f("display_name"), &p.display_name, 1, 200)?;
    check_text(&f("description"), &p.description, 0, 4096)?;
    let weights = weights(&f("category_weights"), p.category_weights.as_ref())?;
    check_rule(&f("assignment_rule"), &p.assignment_rule)?;
    if !(0..=1_000_000).contains(&p.priority) {
        return Err(ApiError::invalid(f("priority"), "must be in 0..1000000"));
    }
    let min_population = p.min_population.unwrap_or(10);
    if !(1..=1_000_000).contains(&min_population) {
        return Err(ApiError::invalid(
            f("min_population"),
            "must be in 1..1000000",
        ));
    }
    let mode = weights_mode(&f("weights_mode"), p.weights_mode)?;
    if p.kpis.len() > MAX_KPIS {
        return Err(ApiError::invalid(
            f("kpis"),
            format!("more than {MAX_KPIS} entries"),
        ));
    }
    for (i, k) in p.kpis.iter().enumerate() {
        sv::no_nul(&format!("{prefix}.kpis[{i}]"), k)?;
        if !known_kpi(k) {
            return Err(ApiError::invalid(
                format!("{prefix}.kpis[{i}]"),
                format!("unknown kpi {k:?} (see ScoringService.ListKpis)"),
            ));
        }
    }
    let (yellow_from, green_from) = bands(&f("band_thresholds"), p.band_thresholds.as_ref())?;
    if let Some(w) = p.window_days
        && !(7..=365).contains(&w)
    {
        return Err(ApiError::invalid(f("window_days"), "must be in 7..365"));
    }
    if let Some(t) = p.trend_weight
        && (!t.is_finite() || !(0.0..=5.0).contains(&t))
    {
        return Err(ApiError::invalid(
            f("trend_weight"),
            "must be finite and in 0..5",
        ));
    }
    Ok(ProfileFields {
        display_name: p.display_name.clone(),
        description: p.description.clone(),
        weights,
        rule: p.assignment_rule.clone(),
        priority: p.priority,
        min_population: min_population as i32,
        weights_mode: mode.to_string(),
        kpis: p.kpis.clone(),
        is_default: p.is_default,
        yellow_from,
        green_from,
        window_days: p.window_days.map(|w| w as i32),
        trend_weight: p.trend_weight,
    })
}

impl ProfileFields {
    /// The record of a profile with these fields.
    pub fn into_record(
        self,
        id: String,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> ProfileRecord {
        ProfileRecord {
            id,
            display_name: self.display_name,
            description: self.description,
            weights: self.weights,
            rule: self.rule,
            priority: self.priority,
            min_population: self.min_population,
            weights_mode: self.weights_mode,
            kpis: self.kpis,
            is_default: self.is_default,
            yellow_from: self.yellow_from,
            green_from: self.green_from,
            window_days: self.window_days,
            trend_weight: self.trend_weight,
            created_at,
            updated_at,
        }
    }
}

/// The API view of a stored profile.
pub fn profile_pb(p: &ProfileRecord) -> pb::HealthProfile {
    pb::HealthProfile {
        name: format!("profiles/{}", p.id),
        display_name: p.display_name.clone(),
        description: p.description.clone(),
        category_weights: Some(cpb::CategoryWeights {
            usage: p.weights.usage,
            conversations: p.weights.conversations,
            pulse: p.weights.pulse,
            contract: p.weights.contract,
            custom_metrics: p.weights.custom_metrics,
            custom_score_fields: p
                .weights
                .custom_score_fields
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }),
        assignment_rule: p.rule.clone(),
        priority: p.priority,
        min_population: Some(p.min_population.max(0) as u32),
        weights_mode: weights_mode_pb(&p.weights_mode) as i32,
        kpis: p.kpis.clone(),
        is_default: p.is_default,
        band_thresholds: (p.yellow_from.is_some() || p.green_from.is_some()).then_some(
            cpb::BandThresholds {
                yellow_from: p.yellow_from,
                green_from: p.green_from,
            },
        ),
        window_days: p.window_days.map(|w| w.max(0) as u32),
        trend_weight: p.trend_weight,
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}

/// Mutable fields of a health profile, as update-mask paths.
pub const PROFILE_MUTABLE: [&str; 12] = [
    "display_name",
    "description",
    "category_weights",
    "assignment_rule",
    "priority",
    "min_population",
    "weights_mode",
    "kpis",
    "is_default",
    "band_thresholds",
    "window_days",
    "trend_weight",
];

/// Copies the fields named by `paths` from `src` into `dst`.
pub fn apply_profile_mask(
    dst: &mut pb::HealthProfile,
    src: &pb::HealthProfile,
    paths: &[String],
) -> Result<(), ApiError> {
    let paths = expand_mask(
        paths,
        &PROFILE_MUTABLE,
        &["name", "create_time", "update_time"],
    )?;
    for p in paths {
        match p {
            "display_name" => dst.display_name = src.display_name.clone(),
            "description" => dst.description = src.description.clone(),
            "category_weights" => dst.category_weights = src.category_weights.clone(),
            "assignment_rule" => dst.assignment_rule = src.assignment_rule.clone(),
            "priority" => dst.priority = src.priority,
            "min_population" => dst.min_population = src.min_population,
            "weights_mode" => dst.weights_mode = src.weights_mode,
            "kpis" => dst.kpis = src.kpis.clone(),
            "is_default" => dst.is_default = src.is_default,
            "band_thresholds" => dst.band_thresholds = src.band_thresholds,
            "window_days" => dst.window_days = src.window_days,
            "trend_weight" => dst.trend_weight = src.trend_weight,
            _ => unreachable_path(p)?,
        }
    }
    Ok(())
}

fn unreachable_path(p: &str) -> Result<(), ApiError> {
    Err(ApiError::invalid(
        "update_mask",
        format!("unknown field {p:?}"),
    ))
}

/// Checks an update mask: required, known paths only, output-only paths refused; `*`
/// expands to every mutable path. Accepts lowerCamelCase (as some JSON clients send).
fn expand_mask<'a>(
    paths: &[String],
    mutable: &[&'a str],
    output_only: &[&str],
) -> Result<Vec<&'a str>, ApiError> {
    if paths.is_empty() {
        return Err(ApiError::invalid(
            "update_mask",
            "required (use \"*\" for every field)",
        ));
    }
    let mut out = Vec::new();
    for p in paths {
        if p == "*" {
            return Ok(mutable.to_vec());
        }
        let snake = camel_to_snake(p);
        if output_only.contains(&snake.as_str()) || snake == "display_order" {
            return Err(ApiError::invalid(
                "update_mask",
                format!("{p:?} is output only and cannot be updated"),
            ));
        }
        match mutable.iter().find(|m| **m == snake) {
            Some(m) => out.push(*m),
            None => {
                return Err(ApiError::invalid(
                    "update_mask",
                    format!("unknown or immutable field {p:?}"),
                ));
            }
        }
    }
    Ok(out)
}

fn camel_to_snake(p: &str) -> String {
    let mut s = String::with_capacity(p.len() + 4);
    for c in p.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// A validated scorecard (everything but id, order and times).
#[derive(Debug, Clone)]
pub struct ScorecardFields {
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Measure.
    pub measure: StoredMeasure,
    /// Worst value.
    pub worst: f64,
    /// Best value.
    pub best: f64,
    /// Yellow threshold.
    pub yellow_from: f64,
    /// Green threshold.
    pub green_from: f64,
    /// Impact name.
    pub impact: String,
    /// Segment.
    pub segment: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Enabled.
    pub enabled: bool,
    /// Counted in the global score.
    pub include_in_global: bool,
}

fn window(field: &str, w: u32) -> Result<u32, ApiError> {
    match w {
        0 => Ok(28),
        1..=365 => Ok(w),
        _ => Err(ApiError::invalid(field, "must be in 1..365 (0 means 28)")),
    }
}

/// Validates a measure.
pub fn measure(
    prefix: &str,
    m: Option<&pb::scorecard::Measure>,
) -> Result<StoredMeasure, ApiError> {
    use pb::scorecard::Measure as M;
    let Some(m) = m else {
        return Err(ApiError::invalid(
            format!("{prefix}.measure"),
            "one of event_count, attribute, custom_metric or kpi is required",
        ));
    };
    Ok(match m {
        M::EventCount(e) => {
            let f = format!("{prefix}.event_count");
            check_text(&format!("{f}.event_type"), &e.event_type, 1, 128)?;
            let aggregation = match pb::EventAggregation::try_from(e.aggregation) {
                Ok(pb::EventAggregation::Unspecified | pb::EventAggregation::Count) => "count",
                Ok(pb::EventAggregation::ValueSum) => "value_sum",
                Ok(pb::EventAggregation::ActiveDays) => "active_days",
                Err(_) => {
                    return Err(ApiError::invalid(
                        format!("{f}.aggregation"),
                        format!("unknown aggregation {}", e.aggregation),
                    ));
                }
            };
            StoredMeasure::EventCount {
                event_type: e.event_type.clone(),
                window_days: window(&format!("{f}.window_days"), e.window_days)?,
                aggregation: aggregation.into(),
            }
        }
        M::Attribute(a) => {
            check_text(
                &format!("{prefix}.attribute.attribute"),
                &a.attribute,
                1,
                128,
            )?;
            StoredMeasure::Attribute {
                attribute: a.attribute.clone(),
            }
        }
        M::CustomMetric(c) => {
            let f = format!("{prefix}.custom_metric");
            check_text(&format!("{f}.name"), &c.name, 1, 128)?;
            let aggregation = match pb::MetricAggregation::try_from(c.aggregation) {
                Ok(pb::MetricAggregation::Unspecified | pb::MetricAggregation::Latest) => "latest",
                Ok(pb::MetricAggregation::Sum) => "sum",
                Ok(pb::MetricAggregation::Mean) => "mean",
                Ok(pb::MetricAggregation::Min) => "min",
                Ok(pb::MetricAggregation::Max) => "max",
                Ok(pb::MetricAggregation::Count) => "count",
                Err(_) => {
                    return Err(ApiError::invalid(
                        format!("{f}.aggregation"),
                        format!("unknown aggregation {}", c.aggregation),
                    ));
                }
            };
            StoredMeasure::CustomMetric {
                name: c.name.clone(),
                aggregation: aggregation.into(),
                window_days: window(&format!("{f}.window_days"), c.window_days)?,
            }
        }
        M::Kpi(k) => {
            let f = format!("{prefix}.kpi.kpi");
            check_text(&f, &k.kpi, 1, 128)?;
            if !known_kpi(&k.kpi) {
                return Err(ApiError::invalid(
                    f,
                    format!("unknown kpi {:?} (see ScoringService.ListKpis)", k.kpi),
                ));
            }
            StoredMeasure::Kpi { kpi: k.kpi.clone() }
        }
    })
}

fn measure_pb(m: &StoredMeasure) -> pb::scorecard::Measure {
    use pb::scorecard::Measure as M;
    match m {
        StoredMeasure::EventCount {
            event_type,
            window_days,
            aggregation,
        } => M::EventCount(pb::EventCountMeasure {
            event_type: event_type.clone(),
            window_days: *window_days,
            aggregation: match aggregation.as_str() {
                "value_sum" => pb::EventAggregation::ValueSum,
                "active_days" => pb::EventAggregation::ActiveDays,
                _ => pb::EventAggregation::Count,
            } as i32,
        }),
        StoredMeasure::Attribute { attribute } => M::Attribute(pb::AttributeMeasure {
            attribute: attribute.clone(),
        }),
        StoredMeasure::CustomMetric {
            name,
            aggregation,
            window_days,
        } => M::CustomMetric(pb::CustomMetricMeasure {
            name: name.clone(),
            aggregation: match aggregation.as_str() {
                "sum" => pb::MetricAggregation::Sum,
                "mean" => pb::MetricAggregation::Mean,
                "min" => pb::MetricAggregation::Min,
                "max" => pb::MetricAggregation::Max,
                "count" => pb::MetricAggregation::Count,
                _ => pb::MetricAggregation::Latest,
            } as i32,
            window_days: *window_days,
        }),
        StoredMeasure::Kpi { kpi } => M::Kpi(pb::KpiMeasure { kpi: kpi.clone() }),
    }
}

/// Validates a scorecard whose fields are reported under `prefix`; `draft` allows an
/// empty display name (previews).
pub fn scorecard_fields(
    prefix: &str,
    s: &pb::Scorecard,
    draft: bool,
) -> Result<ScorecardFields, ApiError> {
    let f = |name: &str| format!("{prefix}.{name}");
    check_text(
        &f("display_name"),
        &s.display_name,
        usize::from(!draft),
        200,
    )?;
    check_text(&f("description"), &s.description, 0, 4096)?;
    let measure = measure(prefix, s.measure.as_ref())?;
    for (name, v) in [("worst_value", s.worst_value), ("best_value", s.best_value)] {
        if !v.is_finite() {
            return Err(ApiError::invalid(f(name), "must be finite"));
        }
        // best - worst must not overflow.
        sv::value(&f(name), v)?;
    }
    if s.worst_value == s.best_value {
        return Err(ApiError::invalid(
            f("best_value"),
            "must differ from worst_value",
        ));
    }
    let (y, g) = bands(&f("band_thresholds"), s.band_thresholds.as_ref())?;
    let impact = match pb::Impact::try_from(s.impact) {
        Ok(pb::Impact::Unspecified | pb::Impact::Medium) => "medium",
        Ok(pb::Impact::None) => "none",
        Ok(pb::Impact::Low) => "low",
        Ok(pb::Impact::High) => "high",
        Err(_) => {
            return Err(ApiError::invalid(
                f("impact"),
                format!("unknown impact {}", s.impact),
            ));
        }
    };
    sv::no_nul(&f("segment"), &s.segment)?;
    Rule::compile_segment_optional(&f("segment"), &s.segment)?;
    if s.tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            f("tags"),
            format!("more than {MAX_TAGS} tags"),
        ));
    }
    for (i, t) in s.tags.iter().enumerate() {
        let ok = !t.is_empty()
            && t.len() <= 64
            && t.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            return Err(ApiError::invalid(
                format!("{prefix}.tags[{i}]"),
                format!("{t:?} must be 1..64 bytes matching [a-z0-9][a-z0-9_-]*"),
            ));
        }
    }
    let mut tags = s.tags.clone();
    tags.dedup();
    Ok(ScorecardFields {
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        measure,
        worst: s.worst_value,
        best: s.best_value,
        yellow_from: y.unwrap_or(3.0),
        green_from: g.unwrap_or(7.0),
        impact: impact.into(),
        segment: s.segment.clone(),
        tags,
        enabled: s.enabled.unwrap_or(true),
        include_in_global: s.include_in_global.unwrap_or(true),
    })
}

impl ScorecardFields {
    /// The record of a scorecard with these fields.
    pub fn into_record(
        self,
        id: String,
        display_order: i32,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> ScorecardRecord {
        ScorecardRecord {
            id,
            display_name: self.display_name,
            description: self.description,
            measure: self.measure,
            worst: self.worst,
            best: self.best,
            yellow_from: self.yellow_from,
            green_from: self.green_from,
            impact: self.impact,
            segment: self.segment,
            tags: self.tags,
            display_order,
            enabled: self.enabled,
            include_in_global: self.include_in_global,
            created_at,
            updated_at,
        }
    }
}

/// The API view of a stored scorecard.
pub fn scorecard_pb(s: &ScorecardRecord) -> pb::Scorecard {
    pb::Scorecard {
        name: format!("scorecards/{}", s.id),
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        measure: Some(measure_pb(&s.measure)),
        worst_value: s.worst,
        best_value: s.best,
        band_thresholds: Some(cpb::BandThresholds {
            yellow_from: Some(s.yellow_from),
            green_from: Some(s.green_from),
        }),
        impact: match s.impact.as_str() {
            "none" => pb::Impact::None,
            "low" => pb::Impact::Low,
            "high" => pb::Impact::High,
            _ => pb::Impact::Medium,
        } as i32,
        segment: s.segment.clone(),
        tags: s.tags.clone(),
        display_order: s.display_order,
        enabled: Some(s.enabled),
        include_in_global: Some(s.include_in_global),
        create_time: Some(timestamp(s.created_at)),
        update_time: Some(timestamp(s.updated_at)),
    }
}

/// Mutable fields of a scorecard, as update-mask paths.
pub const SCORECARD_MUTABLE: [&str; 14] = [
    "display_name",
    "description",
    "event_count",
    "attribute",
    "custom_metric",
    "kpi",
    "worst_value",
    "best_value",
    "band_thresholds",
    "impact",
    "segment",
    "tags",
    "enabled",
    "include_in_global",
];

/// Copies the fields named by `paths` from `src` into `dst`.
pub fn apply_scorecard_mask(
    dst: &mut pb::Scorecard,
    src: &pb::Scorecard,
    paths: &[String],
) -> Result<(), ApiError> {
    use pb::scorecard::Measure as M;
    let star = paths.iter().any(|p| p == "*");
    let paths = expand_mask(
        paths,
        &SCORECARD_MUTABLE,
        &["name", "create_time", "update_time", "display_order"],
    )?;
    if star {
        // `*` replaces the measure with whichever member the request sets.
        dst.measure = src.measure.clone();
    }
    for p in paths {
        match p {
            "display_name" => dst.display_name = src.display_name.clone(),
            "description" => dst.description = src.description.clone(),
            "event_count" | "attribute" | "custom_metric" | "kpi" if star => {}
            "event_count" | "attribute" | "custom_metric" | "kpi" => {
                let matches = matches!(
                    (p, &src.measure),
                    ("event_count", Some(M::EventCount(_)))
                        | ("attribute", Some(M::Attribute(_)))
                        | ("custom_metric", Some(M::CustomMetric(_)))
                        | ("kpi", Some(M::Kpi(_)))
                );
                if !matches {
                    return Err(ApiError::invalid(
                        "update_mask",
                        format!("{p:?} is in the mask but scorecard.{p} is not set"),
                    ));
                }
                dst.measure = src.measure.clone();
            }
            "worst_value" => dst.worst_value = src.worst_value,
            "best_value" => dst.best_value = src.best_value,
            "band_thresholds" => dst.band_thresholds = src.band_thresholds,
            "impact" => dst.impact = src.impact,
            "segment" => dst.segment = src.segment.clone(),
            "tags" => dst.tags = src.tags.clone(),
            "enabled" => dst.enabled = Some(src.enabled.unwrap_or(true)),
            "include_in_global" => {
                dst.include_in_global = Some(src.include_in_global.unwrap_or(true))
            }
            _ => unreachable_path(p)?,
        }
    }
    Ok(())
}

/// The filter and page of a ListScorecards request; the token is bound to the filter.
pub fn scorecard_list(
    r: pb::ListScorecardsRequest,
) -> Result<(ScorecardFilter, OffsetPage), ApiError> {
    let mut parts: Vec<&str> = vec![if r.enabled_only { "enabled" } else { "all" }];
    parts.extend(r.tags.iter().map(String::as_str));
    let page = OffsetPage::decode(
        PageLimits::STANDARD,
        r.page_size,
        &r.page_token,
        paging::fingerprint(&parts),
    )?;
    let filter = ScorecardFilter {
        tags: r.tags,
        enabled_only: r.enabled_only,
    };
    Ok((filter, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_slugs() {
        assert!(check_id("f", "winter-premium").is_ok());
        assert!(check_id("f", "9a").is_err());
        assert!(check_id("f", "a-").is_err());
        assert!(check_id("f", "").is_err());
        assert_eq!(slug_id("Winter / Premium", 63), "winter-premium");
        assert_eq!(slug_id("2024 plan", 63), "p-2024-plan");
        assert_eq!(parse_name("name", "profiles", "profiles/x").unwrap(), "x");
        assert!(parse_name("name", "profiles", "scorecards/x").is_err());
    }

    #[test]
    fn weights_rules() {
        let w = |u: f64, c: f64| cpb::CategoryWeights {
            usage: u,
            conversations: c,
            ..Default::default()
        };
        assert!(weights("w", Some(&w(1.0, 0.0))).is_ok());
        let e = weights("w", Some(&w(0.0, 0.0))).unwrap_err().to_string();
        assert!(e.contains("at least one"), "{e}");
        let e = weights("w", Some(&w(f64::NAN, 1.0)))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "w.usage: must be finite");
        let e = weights("w", Some(&w(1.0, -1.0))).unwrap_err().to_string();
        assert_eq!(e, "w.conversations: must be >= 0");
    }

    #[test]
    fn kpi_names() {
        assert!(known_kpi("active_days"));
        assert!(known_kpi("events_login"));
        assert!(!known_kpi("events_"));
        assert!(!known_kpi("no_such_kpi"));
    }
}
