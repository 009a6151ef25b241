//! The read RPCs: latest scores, listings, history, distributions, explanations, KPIs.
//! They read committed rows only and take no lock, so a run in progress never blocks them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use vitals_scoring_core as core;
use vitals_server::ApiError;
use vitals_store::inputs::{InputQuery, InputScope, load_inputs};
use vitals_store::overrides::Override;
use vitals_store::profiles as sp;
use vitals_store::scoring::{
    self as ss, LatestFilter, LatestOrder, NewSnapshot, PROFILE_SCORECARD, SnapshotRecord,
};
use vitals_store::snapshot::{KpiNames, decode_drivers_with};

use super::overrides;
use super::stored::{self, StoredDetails, StoredDriver, explanation_of};
use crate::Inner;
use crate::error::Result;

/// A GetScore query.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreQuery {
    /// The account.
    pub account: String,
    /// Scorecard id (`profile` for the profile score).
    pub scorecard: String,
    /// The snapshot in force at this time; the latest when `None`.
    pub at: Option<DateTime<Utc>>,
}

/// One stored score as the read calls return it: the row with its details and drivers
/// decoded once (the row's encoded copies are dropped).
#[derive(Clone, Debug)]
pub struct Score {
    /// The row, without its encoded details and drivers.
    pub record: SnapshotRecord,
    /// The decoded details (`sub_scores`).
    pub details: StoredDetails,
    /// Every stored driver, most negative contribution first (empty unless asked for).
    pub drivers: Vec<StoredDriver>,
    /// The override of this account and scorecard when the score was read as the latest
    /// (GetScore without `as_of`), expired or not: see [`Score::override_at`].
    pub manual_override: Option<Override>,
}

impl Score {
    /// Decodes `record` (its drivers only when `with_drivers`).
    pub fn new(mut record: SnapshotRecord, with_drivers: bool) -> Self {
        let details = stored::details(&record);
        let drivers = if with_drivers {
            stored::drivers(&record)
        } else {
            Vec::new()
        };
        record.sub_scores = serde_json::Value::Null;
        record.drivers = serde_json::Value::Null;
        record.drivers_bin = None;
        Self {
            record,
            details,
            drivers,
            manual_override: None,
        }
    }

    /// The score a run has just written as `s` in run `run_id` (its drivers' KPI numbers
    /// read in `names`), as GetScore would read it back: what a run puts in the cache.
    pub fn of_written(s: &NewSnapshot, run_id: i64, names: &KpiNames) -> Self {
        let record = SnapshotRecord {
            id: 0,
            run_id,
            account_id: s.account_id.clone(),
            scorecard_id: s.scorecard_id.clone(),
            profile_id: s.profile_id.clone(),
            // As stored: to the microsecond.
            as_of: crate::convert::truncate(s.as_of),
            value: s.value,
            band: s.band.clone(),
            global_value: s.global_value.unwrap_or(s.value),
            sub_scores: serde_json::Value::Null,
            momentum: s.momentum,
            coverage_present: s.coverage_present,
            coverage_total: s.coverage_total,
            drivers: serde_json::Value::Null,
            churn_probability: s.churn_probability,
            weights_source: s.weights_source.clone(),
            population_fallback: s.population_fallback,
            drivers_bin: None,
        };
        let details = serde_json::from_str(&s.sub_scores).unwrap_or_default();
        let drivers = decode_drivers_with(&s.drivers, names).unwrap_or_else(|e| {
            tracing::warn!(account = %s.account_id, run = run_id, error = %e, "written drivers unreadable");
            Vec::new()
        });
        let mut score = Self {
            record,
            details,
            drivers,
            manual_override: None,
        };
        score.keep_top_drivers();
        score
    }

    /// Drops every driver an answer does not show ([`top_drivers`] picks the same ones
    /// from what is kept), so that a cached score holds its answer, not every KPI's part
    /// (the cache holds up to 100,000 scores by default).
    pub fn keep_top_drivers(&mut self) {
        // Which ones, by address in this vector (at most 2 x TOP_DRIVERS); kept in their
        // stored order, so that `top_drivers` of what is left gives the same answer.
        let keep: Vec<*const StoredDriver> =
            top_drivers(&self.drivers).map(std::ptr::from_ref).collect();
        let mask: Vec<bool> = self
            .drivers
            .iter()
            .map(|d| keep.contains(&std::ptr::from_ref(d)))
            .collect();
        let mut i = 0;
        // `retain` visits each element once, in order.
        self.drivers.retain(|_| {
            i += 1;
            mask[i - 1]
        });
        self.drivers.shrink_to_fit();
    }

    /// The override in force at `now_ms` (ms since the epoch), if one was read with this
    /// score and has not expired since.
    pub fn override_at(&self, now_ms: i64) -> Option<&Override> {
        self.manual_override
            .as_ref()
            .filter(|o| o.expires_ms.is_none_or(|e| e > now_ms))
    }
}

/// Drivers an answer shows on each side: pulling the score down, and pulling it up.
pub const TOP_DRIVERS: usize = 5;

/// The drivers an answer shows, from drivers stored most negative contribution first:
/// up to [`TOP_DRIVERS`] pulling down (most negative first), then up to [`TOP_DRIVERS`]
/// pulling up (most positive first).
pub fn top_drivers(all: &[StoredDriver]) -> impl Iterator<Item = &StoredDriver> {
    let down = all
        .iter()
        .filter(|d| d.contribution() < 0.0)
        .take(TOP_DRIVERS);
    let up = all
        .iter()
        .rev()
        .filter(|d| d.contribution() > 0.0)
        .take(TOP_DRIVERS);
    down.chain(up)
}

/// GetScore: the latest score (from memory when cached, see crate::cache) or the one in
/// force at `q.at`, with its drivers.
pub(crate) async fn get_score(inner: &Inner, q: &ScoreQuery) -> Result<Arc<Score>> {
    let generation = inner.latest.generation();
    if q.at.is_none()
        && let Some(s) = inner.latest.get(&q.account, &q.scorecard)
    {
        return Ok(s);
    }
    let r = ss::snapshot_at(&inner.store, &q.account, &q.scorecard, q.at)
        .await?
        .ok_or_else(|| not_scored(&q.account, &q.scorecard))?;
    let mut score = Score::new(r, true);
    score.keep_top_drivers();
    if q.at.is_none() {
        // Read with the score so that a cache hit needs no query; cached until the next
        // override change (crate::cache).
        let key = (q.account.clone(), q.scorecard.clone());
        score.manual_override = overrides::active(inner, std::slice::from_ref(&key))
            .await?
            .remove(&key);
    }
    let score = Arc::new(score);
    if q.at.is_none() {
        inner.latest.put(
            q.account.clone(),
            q.scorecard.clone(),
            generation,
            score.clone(),
        );
    }
    Ok(score)
}

/// The NOT_FOUND of an account with no score for a scorecard.
fn not_scored(account: &str, card: &str) -> ApiError {
    ApiError::NotFound(format!(
        "score of account \"{account}\" for scorecards/{card}"
    ))
}

/// A ListScores query: a filter, an order and a page of the latest snapshots.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Which latest rows.
    pub filter: LatestFilter,
    /// Their order.
    pub order: LatestOrder,
    /// Rows to skip (from the page token).
    pub offset: u64,
    /// Page size.
    pub limit: u64,
}

/// ListScores: the query's page of latest snapshots and the number of matching rows.
pub(crate) async fn list_scores(
    inner: &Inner,
    q: &ListQuery,
) -> Result<(Vec<SnapshotRecord>, u64)> {
    Ok(ss::list_latest(&inner.store, &q.filter, q.order, q.offset, q.limit).await?)
}

/// A GetScoreHistory query: one account's snapshots of one scorecard in a time range.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryQuery {
    /// The account.
    pub account: String,
    /// Scorecard id (`profile` for the profile score).
    pub scorecard: String,
    /// From (inclusive), when set.
    pub start: Option<DateTime<Utc>>,
    /// Until, when set.
    pub end: Option<DateTime<Utc>>,
    /// Rows to skip (from the page token).
    pub offset: u64,
    /// Page size.
    pub limit: u64,
}

/// GetScoreHistory: the query's page of snapshots, oldest first.
pub(crate) async fn history(inner: &Inner, q: &HistoryQuery) -> Result<Vec<SnapshotRecord>> {
    Ok(ss::history(
        &inner.store,
        &q.account,
        &q.scorecard,
        q.start,
        q.end,
        q.offset,
        q.limit,
    )
    .await?)
}

/// What GetDistribution summarises: the latest scores of a profile and/or scorecard.
#[derive(Clone, Debug, PartialEq)]
pub struct DistributionQuery {
    /// Profile id (every profile when `None`).
    pub profile: Option<String>,
    /// Scorecard id (`profile` for the profile score).
    pub scorecard: String,
    /// The global score instead of the scorecard's.
    pub global: bool,
}

/// The latest values and bands a distribution is computed over.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatestValues {
    /// Values.
    pub values: Vec<f64>,
    /// Their bands.
    pub bands: Vec<String>,
    /// The newest as_of among them.
    pub as_of: Option<DateTime<Utc>>,
}

/// GetDistribution: the latest values of the query's profile and scorecard.
pub(crate) async fn distribution(inner: &Inner, q: DistributionQuery) -> Result<LatestValues> {
    let DistributionQuery {
        profile,
        scorecard: card,
        global,
    } = q;
    let store = &inner.store;
    if let Some(p) = &profile
        && sp::get_profile(store, p).await?.is_none()
    {
        return Err(ApiError::NotFound(format!("profile \"profiles/{p}\"")).into());
    }
    if card != PROFILE_SCORECARD && sp::get_scorecard(store, &card).await?.is_none() {
        return Err(ApiError::NotFound(format!("scorecard \"scorecards/{card}\"")).into());
    }
    let rows = ss::latest_rows(store, profile.as_deref(), &card).await?;
    let (values, bands): (Vec<f64>, Vec<String>) = rows
        .iter()
        .map(|r| {
            if global {
                (r.global_value.unwrap_or(r.value), r.global_band.clone())
            } else {
                (r.value, r.band.clone())
            }
        })
        .unzip();
    Ok(LatestValues {
        values,
        bands,
        as_of: rows.iter().map(|r| r.as_of).max(),
    })
}

/// An ExplainScore query.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainQuery {
    /// The account.
    pub account: String,
    /// Scorecard id (`profile` for the profile score).
    pub scorecard: String,
    /// Explain the change since the snapshot in force at this time, when set.
    pub since: Option<DateTime<Utc>>,
}

/// What ExplainScore answers.
#[derive(Clone, Debug)]
pub struct Explained {
    /// The latest score, with its drivers.
    pub score: Score,
    /// Every driver of it, largest absolute contribution first.
    pub drivers: Vec<StoredDriver>,
    /// The change since `since`, when asked for and there was a score then.
    pub change: Option<Change>,
}

/// A score's change since an earlier snapshot.
#[derive(Clone, Debug)]
pub struct Change {
    /// The earlier snapshot.
    pub baseline: Score,
    /// Score now minus score then.
    pub score_change: f64,
    /// Per KPI (profile score only).
    pub kpi_changes: Vec<KpiChange>,
    /// The part of `score_change` no KPI explains (adjustments; all of it for a scorecard).
    pub other_change: f64,
}

/// One KPI's part of a [`Change`].
#[derive(Clone, Debug, PartialEq)]
pub struct KpiChange {
    /// The KPI.
    pub kpi: String,
    /// Its category, as stored (the proto `ScoreCategory` number).
    pub category: i32,
    /// Raw value then and now.
    pub before_value: Option<f64>,
    /// Raw value now.
    pub after_value: Option<f64>,
    /// Peer percentile (0..100) then.
    pub before_percentile: Option<f64>,
    /// Peer percentile (0..100) now.
    pub after_percentile: Option<f64>,
    /// Contribution now minus then, in points.
    pub contribution_change: f64,
}

/// ExplainScore: the latest score's drivers and, with `since`, what changed since then.
pub(crate) async fn explain(inner: &Inner, q: &ExplainQuery) -> Result<Explained> {
    let store = &inner.store;
    let (account, card) = (&q.account, &q.scorecard);
    let now = ss::snapshot_at(store, account, card, None)
        .await?
        .ok_or_else(|| not_scored(account, card))?;
    let now = Score::new(now, true);
    let mut drivers = now.drivers.clone();
    drivers.sort_by(|a, b| b.contribution().abs().total_cmp(&a.contribution().abs()));
    let base = match q.since {
        Some(since) => ss::snapshot_at(store, account, card, Some(since)).await?,
        None => None,
    };
    let change = base.map(|base| change_since(Score::new(base, true), &now));
    Ok(Explained {
        score: now,
        drivers,
        change,
    })
}

/// The change from `base` to `now`, per KPI for the profile score.
fn change_since(base: Score, now: &Score) -> Change {
    let score_change = now.record.value - base.record.value;
    if now.record.scorecard_id != PROFILE_SCORECARD {
        return Change {
            baseline: base,
            score_change,
            kpi_changes: Vec::new(),
            other_change: score_change,
        };
    }
    let (before, after) = (&base.drivers, &now.drivers);
    let e_before = explanation_of(
        base.record.value,
        before,
        base.details.adjustment_contribution,
    );
    let e_after = explanation_of(now.record.value, after, now.details.adjustment_contribution);
    let change = core::explain_change(&e_before, &e_after);
    let pct = |list: &[StoredDriver], name: &str| {
        list.iter()
            .find(|d| d.0 == name)
            .and_then(|d| d.3)
            .map(|p| p * 100.0)
    };
    let kpi_changes: Vec<KpiChange> = change
        .items
        .iter()
        .map(|it| KpiChange {
            kpi: it.name.clone(),
            category: stored::change_category(it, before, after),
            before_value: it.value_before,
            after_value: it.value_after,
            before_percentile: pct(before, &it.name),
            after_percentile: pct(after, &it.name),
            contribution_change: it.delta,
        })
        .collect();
    let kpi_sum: f64 = change.items.iter().map(|i| i.delta).sum();
    Change {
        baseline: base,
        score_change,
        kpi_changes,
        other_change: score_change - kpi_sum,
    }
}

/// ListKpis: the KPI catalogue of the store's current event types, custom metrics and
/// custom score fields.
pub(crate) async fn list_kpis(inner: &Inner) -> Result<Vec<core::KpiDef>> {
    let today = chrono::Utc::now().date_naive();
    let mut q = InputQuery::all(today);
    q.scope = InputScope::Accounts(Vec::new());
    let mut spec = load_inputs(&inner.store, &q).await?.spec;
    for name in ss::recorded_metric_names(&inner.store).await? {
        if !spec.custom_metrics.iter().any(|m| m.name == name) {
            spec.custom_metrics.push(core::CustomMetricSpec {
                name,
                direction: core::Direction::HigherIsBetter,
            });
        }
    }
    for name in ss::recorded_score_fields(&inner.store).await? {
        if !spec.score_fields.contains(&name) {
            spec.score_fields.push(name);
        }
    }
    let catalogue =
        core::Catalogue::new(&spec).map_err(|e| ApiError::Internal(format!("catalogue: {e}")))?;
    Ok(catalogue.kpis().to_vec())
}

/// A stored row with no details or drivers, for tests.
#[cfg(test)]
pub(crate) fn record(account: &str, card: &str, value: f64, band: &str) -> SnapshotRecord {
    SnapshotRecord {
        id: 0,
        run_id: 1,
        account_id: account.into(),
        scorecard_id: card.into(),
        profile_id: "default".into(),
        as_of: Utc::now(),
        value,
        band: band.into(),
        global_value: value,
        sub_scores: serde_json::Value::Null,
        momentum: 0.0,
        coverage_present: 0,
        coverage_total: 0,
        drivers: serde_json::Value::Null,
        churn_probability: None,
        weights_source: String::new(),
        population_fallback: false,
        drivers_bin: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(kpi: &str, contribution: f64) -> StoredDriver {
        StoredDriver(kpi.into(), 1, 1.0, Some(0.5), 5.0, 0.1, contribution)
    }

    /// A cached score keeps only the drivers its answer shows, and shows the same ones.
    #[test]
    fn a_cached_score_keeps_the_drivers_its_answer_shows() {
        // Stored most negative first: 7 pulling down, one neutral, 6 pulling up.
        let mut all: Vec<StoredDriver> = (0..7)
            .map(|i| driver(&format!("d{i}"), -7.0 + f64::from(i)))
            .collect();
        all.push(driver("zero", 0.0));
        all.extend((0..6).map(|i| driver(&format!("u{i}"), 1.0 + f64::from(i))));
        let record = record("a", "profile", 5.0, "yellow");
        let mut score = Score::new(record, false);
        score.drivers = all.clone();
        let shown: Vec<StoredDriver> = top_drivers(&all).cloned().collect();
        score.keep_top_drivers();
        let names: Vec<&str> = score.drivers.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(
            names,
            ["d0", "d1", "d2", "d3", "d4", "u1", "u2", "u3", "u4", "u5"],
            "the top ones, in stored order"
        );
        let again: Vec<StoredDriver> = top_drivers(&score.drivers).cloned().collect();
        assert_eq!(again, shown);
        assert_eq!(shown.first().map(|d| d.0.as_str()), Some("d0"));
        assert_eq!(shown.last().map(|d| d.0.as_str()), Some("u1"));
    }
}
