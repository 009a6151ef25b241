//! Proto <-> domain for the scoring service, with the validation of every request field.

use chrono::{DateTime, Timelike, Utc};
use vitals_proto::common::v1 as cpb;
use vitals_proto::scoring::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{self, PageLimits};
use vitals_server::validate as sv;
use vitals_store::scoring::{LatestFilter, LatestOrder, PROFILE_SCORECARD, SnapshotRecord};
use vitals_store::values::Band;

use crate::domain::compute::{BandChange, RunSummary, Scope};
use crate::domain::read::{DistributionQuery, HistoryQuery, LatestValues, ListQuery, Score};
use crate::domain::stored::{self, StoredDetails, StoredDriver};
use crate::weights::Source;

mod explain;
mod kpis;
pub mod overrides;

pub use explain::{explain_query, explain_response, score_query, score_response};
pub use kpis::{kpi_filter, kpis_response};

/// Times are kept to the microsecond (what PostgreSQL stores), so both engines return
/// the same values.
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

/// A proto timestamp, checked: well-formed (0001-01-01..9999-12-31; the filters of the
/// reads take any such time).
pub fn from_timestamp(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>, ApiError> {
    sv::timestamp(field, t).map(truncate)
}

/// The `as_of` of a scoring run: from 2000-01-01 (the rule of every service,
/// [`vitals_server::validate::data_time`]) and not after `now`: a snapshot from the
/// future would shadow every later one.
pub fn run_as_of(
    field: &str,
    t: &prost_types::Timestamp,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let at = sv::data_time(field, t, now)?;
    if at > now {
        return Err(ApiError::invalid(field, "must not be in the future"));
    }
    Ok(truncate(at))
}

/// To a proto timestamp.
pub fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Checks a customer id: 1..256 bytes, no control characters.
pub fn account_id(field: &str, id: &str) -> Result<String, ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid(field, "required"));
    }
    if id.len() > 256 {
        return Err(ApiError::invalid(field, "longer than 256 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "contains control characters"));
    }
    Ok(id.to_string())
}

/// `profiles/{id}` -> id; empty -> `None`.
pub fn profile(field: &str, name: &str) -> Result<Option<String>, ApiError> {
    if name.is_empty() {
        return Ok(None);
    }
    let id = name.strip_prefix("profiles/").ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("expected profiles/{{profile_id}}, got {name:?}"),
        )
    })?;
    sv::resource_id(field, id)?;
    Ok(Some(id.to_string()))
}

/// A scorecard selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scorecards {
    /// One scorecard id (`profile` for the profile score).
    One(String),
    /// Every scorecard (`scorecards/-`).
    All,
}

/// `scorecards/{id}`, `scorecards/profile`, empty (= profile) or, when `wildcard`,
/// `scorecards/-`.
pub fn scorecard(field: &str, name: &str, wildcard: bool) -> Result<Scorecards, ApiError> {
    if name.is_empty() {
        return Ok(Scorecards::One(PROFILE_SCORECARD.to_string()));
    }
    let id = name.strip_prefix("scorecards/").ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("expected scorecards/{{scorecard_id}}, got {name:?}"),
        )
    })?;
    if id == "-" {
        return if wildcard {
            Ok(Scorecards::All)
        } else {
            Err(ApiError::invalid(field, "scorecards/- is not allowed here"))
        };
    }
    sv::resource_id(field, id)?;
    Ok(Scorecards::One(id.to_string()))
}

/// The resource name of a stored scorecard id.
pub fn scorecard_name(id: &str) -> String {
    format!("scorecards/{id}")
}

/// The resource name of a stored profile id (empty stays empty).
pub fn profile_name(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!("profiles/{id}")
    }
}

/// Stored band -> proto.
pub fn band(s: &str) -> cpb::Band {
    match s.parse::<Band>() {
        Ok(Band::Red) => cpb::Band::Red,
        Ok(Band::Yellow) => cpb::Band::Yellow,
        Ok(Band::Green) => cpb::Band::Green,
        Err(_) => cpb::Band::Unspecified,
    }
}

/// Proto band filter -> stored bands; UNSPECIFIED means any band (no filter).
pub fn bands(field: &str, values: &[i32]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match cpb::Band::try_from(*v) {
            Ok(cpb::Band::Unspecified) => return Ok(Vec::new()),
            Ok(b) => out.push(
                match b {
                    cpb::Band::Red => Band::Red,
                    cpb::Band::Yellow => Band::Yellow,
                    _ => Band::Green,
                }
                .as_str()
                .to_string(),
            ),
            Err(_) => {
                return Err(ApiError::invalid(
                    format!("{field}[{i}]"),
                    format!("unknown band {v}"),
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A score bound: finite, within 0..10.
pub fn score_bound(field: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=10.0).contains(&x) => Err(ApiError::invalid(
            field,
            format!("must be a number in 0..10, got {x}"),
        )),
        other => Ok(other),
    }
}

/// A page size: `0` -> `default`, above `max` -> `max`, negative rejected
/// ([`PageLimits::size`]).
pub fn page_size(field: &str, v: i32, default: u64, max: u64) -> Result<u64, ApiError> {
    debug_assert_eq!(field, paging::PAGE_SIZE_FIELD);
    PageLimits::new(default, max).size(v)
}

/// The offset in a page token bound to the request's filters ([`paging::decode_offset`]).
pub fn page_token(field: &str, token: &str, fingerprint: u64) -> Result<u64, ApiError> {
    debug_assert_eq!(field, paging::PAGE_TOKEN_FIELD);
    paging::decode_offset(token, fingerprint)
}

/// The next page's token, or empty after the last page.
pub fn next_token(
    offset: u64,
    returned: usize,
    limit: u64,
    total: Option<u64>,
    fingerprint: u64,
) -> String {
    let next = offset + returned as u64;
    let more = match total {
        Some(t) => next < t,
        None => returned as u64 == limit,
    };
    if more && returned > 0 {
        paging::encode_offset(fingerprint, next)
    } else {
        String::new()
    }
}

/// A stable fingerprint of a request's filters ([`paging::fingerprint`]).
pub fn fingerprint(parts: &[&str]) -> u64 {
    paging::fingerprint(parts)
}

/// Whether a view is the full one (`default_full` for UNSPECIFIED).
pub fn full_view(field: &str, v: i32, default_full: bool) -> Result<bool, ApiError> {
    match pb::ScoreView::try_from(v) {
        Ok(pb::ScoreView::Unspecified) => Ok(default_full),
        Ok(pb::ScoreView::Basic) => Ok(false),
        Ok(pb::ScoreView::Full) => Ok(true),
        Err(_) => Err(ApiError::invalid(field, format!("unknown view {v}"))),
    }
}

/// A stored contribution as a proto driver.
pub fn driver(d: &StoredDriver) -> pb::Driver {
    pb::Driver {
        kpi: d.0.clone(),
        category: d.1,
        contribution: d.contribution(),
        peer_percentile: d.3.map_or(0.0, |p| p * 100.0),
        kpi_score: d.4,
        value: d.2,
        weight: d.5,
    }
}

/// Top drivers ([`crate::domain::read::top_drivers`]) as proto.
pub fn top_drivers(all: &[StoredDriver]) -> Vec<pb::Driver> {
    crate::domain::read::top_drivers(all).map(driver).collect()
}

/// A stored row as proto (`full`: with category scores and top drivers).
pub fn snapshot(r: &SnapshotRecord, full: bool) -> pb::ScoreSnapshot {
    let drivers = if full { stored::drivers(r) } else { Vec::new() };
    snapshot_of(r, &stored::details(r), &drivers, full)
}

/// A decoded score as proto (`full`: with category scores and top drivers).
pub fn score(s: &Score, full: bool) -> pb::ScoreSnapshot {
    snapshot_of(&s.record, &s.details, &s.drivers, full)
}

/// A row, its details and its drivers as proto.
fn snapshot_of(
    r: &SnapshotRecord,
    d: &StoredDetails,
    drivers: &[StoredDriver],
    full: bool,
) -> pb::ScoreSnapshot {
    let is_profile = r.scorecard_id == PROFILE_SCORECARD;
    let trend = if !is_profile || !d.has_momentum {
        cpb::Trend::Unspecified
    } else {
        match vitals_scoring_core::MomentumLabel::of(r.momentum, &Default::default()) {
            vitals_scoring_core::MomentumLabel::Improving => cpb::Trend::Improving,
            vitals_scoring_core::MomentumLabel::Stable => cpb::Trend::Stable,
            vitals_scoring_core::MomentumLabel::Declining => cpb::Trend::Declining,
        }
    };
    let mut s = pb::ScoreSnapshot {
        account_id: r.account_id.clone(),
        profile: profile_name(&r.profile_id),
        scorecard: scorecard_name(&r.scorecard_id),
        as_of: Some(to_timestamp(r.as_of)),
        run_id: r.run_id.to_string(),
        value: r.value,
        band: band(&r.band) as i32,
        weights_source: Source::parse(&r.weights_source).to_proto() as i32,
        model: d.model.clone(),
        population_fallback: r.population_fallback,
        peer_count: d.peer_count,
        measure_value: d.measure_value,
        ..Default::default()
    };
    if is_profile {
        s.global_score = Some(r.global_value);
        s.global_band = band(&d.global_band) as i32;
        s.momentum = r.momentum;
        s.trend = trend as i32;
        s.trend_adjustment = d.trend_adjustment;
        s.signal_adjustment = d.signal_adjustment;
        s.usage_adjustment = d.usage_adjustment;
        s.coverage = Some(pb::Coverage {
            kpis_present: r.coverage_present.max(0) as u32,
            kpis_total: r.coverage_total.max(0) as u32,
        });
        s.churn_probability = r.churn_probability;
        if let Some(ru) = &d.rollup {
            s.rollup_score = Some(ru.v);
            s.rollup_children = ru.n;
            s.rollup_method = ru.m.clone();
        }
        if full {
            s.category_scores = d
                .categories
                .iter()
                .map(|c| pb::CategoryScore {
                    category: c.c,
                    custom_score_field: c.f.clone(),
                    value: c.v,
                    weight: c.w,
                    kpis_present: c.p,
                    kpis_total: c.t,
                })
                .collect();
            s.drivers = top_drivers(drivers);
        }
    }
    s
}

/// A scoring-core distribution as proto.
pub fn distribution(scores: &[f64], bands_of: &[String]) -> cpb::Distribution {
    let d = vitals_scoring_core::distribution(scores.iter().copied(), &Default::default());
    let count = |b: &str| bands_of.iter().filter(|x| x.as_str() == b).count() as u32;
    cpb::Distribution {
        bins: d
            .histogram
            .iter()
            .enumerate()
            .map(|(i, &c)| cpb::HistogramBin {
                lower: i as f64,
                upper: i as f64 + 1.0,
                count: c as u32,
            })
            .collect(),
        band_counts: Some(cpb::BandCounts {
            red: count(Band::Red.as_str()),
            yellow: count(Band::Yellow.as_str()),
            green: count(Band::Green.as_str()),
        }),
        count: d.count as u32,
        mean: d.mean.unwrap_or(0.0),
        median: d.median.unwrap_or(0.0),
        p10: d.p10.unwrap_or(0.0),
        p90: d.p90.unwrap_or(0.0),
        std_dev: d.std.unwrap_or(0.0),
        min: scores.iter().copied().reduce(f64::min).unwrap_or(0.0),
        max: scores.iter().copied().reduce(f64::max).unwrap_or(0.0),
    }
}

/// Proto duration.
pub fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The scope of a ComputeScores request.
pub fn scope(req: &pb::ComputeScoresRequest) -> Result<Scope, ApiError> {
    Ok(match &req.scope {
        None => Scope::All,
        Some(pb::compute_scores_request::Scope::Profile(p)) => match profile("profile", p)? {
            Some(id) => Scope::Profile(id),
            None => return Err(ApiError::invalid("profile", "required when set")),
        },
        Some(pb::compute_scores_request::Scope::AccountId(a)) => {
            Scope::Account(account_id("account_id", a)?)
        }
    })
}

/// The WatchScores filter, decoded.
pub struct WatchFilter {
    /// Only this profile.
    pub profile: Option<String>,
    /// Only changes into these bands (any when empty).
    pub bands: Vec<String>,
    /// Only this scorecard.
    pub scorecard: Option<String>,
}

impl WatchFilter {
    /// Whether `c` passes the filter.
    pub fn matches(&self, c: &BandChange) -> bool {
        self.profile.as_ref().is_none_or(|p| *p == c.profile_id)
            && (self.bands.is_empty() || self.bands.contains(&c.new_band))
            && self.scorecard.as_ref().is_none_or(|s| *s == c.scorecard_id)
    }
}

/// The WatchScores message of a band change.
pub fn change(c: &BandChange) -> pb::WatchScoresResponse {
    pb::WatchScoresResponse {
        account_id: c.account_id.clone(),
        profile: profile_name(&c.profile_id),
        scorecard: scorecard_name(&c.scorecard_id),
        old_band: band(&c.old_band) as i32,
        new_band: band(&c.new_band) as i32,
        old_value: c.old_value,
        new_value: c.new_value,
        change_time: Some(to_timestamp(c.as_of)),
        run_id: c.run_id.to_string(),
    }
}

/// The scope and `as_of` of a ComputeScores request.
pub fn compute_request(
    req: &pb::ComputeScoresRequest,
    now: DateTime<Utc>,
) -> Result<(Scope, Option<DateTime<Utc>>), ApiError> {
    let scope = scope(req)?;
    let as_of = match &req.as_of {
        Some(t) => Some(run_as_of("as_of", t, now)?),
        None => None,
    };
    Ok((scope, as_of))
}

/// The ComputeScores response of a run.
pub fn compute_response(r: &RunSummary) -> pb::ComputeScoresResponse {
    pb::ComputeScoresResponse {
        run_id: r.run_id.to_string(),
        as_of: Some(to_timestamp(r.as_of)),
        scored_count: r.scored,
        snapshot_count: r.snapshots,
        band_change_count: r.band_changes,
        duration: Some(duration(r.duration)),
        profiles: r
            .profiles
            .iter()
            .map(|p| pb::ProfileRunSummary {
                profile: profile_name(&p.profile_id),
                scored_count: p.scored,
                weights_source: p.source.to_proto() as i32,
                model: p.model.clone(),
                population_fallback: p.fallback,
            })
            .collect(),
    }
}

/// The filter of a WatchScores request.
pub fn watch_filter(req: &pb::WatchScoresRequest) -> Result<WatchFilter, ApiError> {
    Ok(WatchFilter {
        profile: profile("profile", &req.profile)?,
        bands: bands("bands", &req.bands)?,
        scorecard: match scorecard("scorecard", &req.scorecard, true)? {
            Scorecards::One(id) => Some(id),
            Scorecards::All => None,
        },
    })
}

/// One scorecard id: `profile` when the request names every scorecard.
pub fn one_scorecard(s: Scorecards) -> String {
    match s {
        Scorecards::One(id) => id,
        Scorecards::All => PROFILE_SCORECARD.to_string(),
    }
}

/// The query of a GetDistribution request.
pub fn distribution_query(req: &pb::GetDistributionRequest) -> Result<DistributionQuery, ApiError> {
    let profile = profile("profile", &req.profile)?;
    let scorecard = if req.global {
        PROFILE_SCORECARD.to_string()
    } else {
        one_scorecard(scorecard("scorecard", &req.scorecard, false)?)
    };
    Ok(DistributionQuery {
        profile,
        scorecard,
        global: req.global,
    })
}

/// The GetDistribution answer.
pub fn distribution_response(l: &LatestValues) -> pb::GetDistributionResponse {
    pb::GetDistributionResponse {
        distribution: Some(distribution(&l.values, &l.bands)),
        as_of: l.as_of.map(to_timestamp),
    }
}

/// The query of a GetScoreHistory request, its view (full or basic) and its paging
/// fingerprint.
pub fn history_query(
    req: &pb::GetScoreHistoryRequest,
) -> Result<(HistoryQuery, bool, u64), ApiError> {
    let account = account_id("account_id", &req.account_id)?;
    let card = one_scorecard(scorecard("scorecard", &req.scorecard, false)?);
    let limit = page_size("page_size", req.page_size, 1000, 10_000)?;
    let full = full_view("view", req.view, false)?;
    let (start, end) = match &req.time_range {
        Some(r) => (
            r.start_time
                .as_ref()
                .map(|t| from_timestamp("time_range.start_time", t))
                .transpose()?,
            r.end_time
                .as_ref()
                .map(|t| from_timestamp("time_range.end_time", t))
                .transpose()?,
        ),
        None => (None, None),
    };
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(ApiError::invalid(
            "time_range.end_time",
            "must not be before start_time",
        ));
    }
    let fp = fingerprint(&[&account, &card, &format!("{start:?}/{end:?}")]);
    let offset = page_token("page_token", &req.page_token, fp)?;
    let q = HistoryQuery {
        account,
        scorecard: card,
        start,
        end,
        offset,
        limit,
    };
    Ok((q, full, fp))
}

/// The GetScoreHistory answer for the query's page `rows`.
pub fn history_response(
    q: &HistoryQuery,
    full: bool,
    fp: u64,
    rows: &[SnapshotRecord],
) -> pb::GetScoreHistoryResponse {
    pb::GetScoreHistoryResponse {
        next_page_token: next_token(q.offset, rows.len(), q.limit, None, fp),
        snapshots: rows.iter().map(|r| snapshot(r, full)).collect(),
    }
}

/// The query of a ListScores request, its view (full or basic) and its paging fingerprint.
pub fn list_query(req: &pb::ListScoresRequest) -> Result<(ListQuery, bool, u64), ApiError> {
    let limit = page_size("page_size", req.page_size, 100, 1000)?;
    let profile = profile("profile", &req.profile)?;
    let scorecard = match scorecard("scorecard", &req.scorecard, true)? {
        Scorecards::One(id) => Some(id),
        Scorecards::All => None,
    };
    let bands = bands("bands", &req.bands)?;
    let min_value = score_bound("min_value", req.min_value)?;
    let max_value = score_bound("max_value", req.max_value)?;
    if let (Some(lo), Some(hi)) = (min_value, max_value)
        && lo > hi
    {
        return Err(ApiError::invalid(
            "max_value",
            "must not be below min_value",
        ));
    }
    let order = match req.order_by.trim() {
        "" | "value" | "value asc" => LatestOrder::ValueAsc,
        "value desc" => LatestOrder::ValueDesc,
        "account_id" | "account_id asc" => LatestOrder::AccountId,
        other => {
            return Err(ApiError::invalid(
                "order_by",
                format!("expected \"value\", \"value desc\" or \"account_id\", got {other:?}"),
            ));
        }
    };
    let parent_id = if req.parent_id.is_empty() {
        None
    } else {
        Some(account_id("parent_id", &req.parent_id)?)
    };
    let full = full_view("view", req.view, false)?;
    let (bands_s, bounds, order_s) = (
        bands.join(","),
        format!("{min_value:?}/{max_value:?}"),
        format!("{order:?}"),
    );
    let mut parts = vec![
        profile.as_deref().unwrap_or(""),
        scorecard.as_deref().unwrap_or("-"),
        &bands_s,
        &bounds,
        &order_s,
    ];
    // Only when set, so that tokens of requests without it keep their fingerprint.
    if let Some(p) = &parent_id {
        parts.push(p);
    }
    let fp = fingerprint(&parts);
    let offset = page_token("page_token", &req.page_token, fp)?;
    let filter = LatestFilter {
        profile_id: profile,
        scorecard_id: scorecard,
        bands,
        min_value,
        max_value,
        parent_id,
    };
    let q = ListQuery {
        filter,
        order,
        offset,
        limit,
    };
    Ok((q, full, fp))
}

/// The ListScores answer for the query's page `rows` of `total` matching rows.
pub fn list_response(
    q: &ListQuery,
    full: bool,
    fp: u64,
    rows: &[SnapshotRecord],
    total: u64,
) -> pb::ListScoresResponse {
    pb::ListScoresResponse {
        next_page_token: next_token(q.offset, rows.len(), q.limit, Some(total), fp),
        snapshots: rows.iter().map(|r| snapshot(r, full)).collect(),
        total_size: total as u32,
    }
}
