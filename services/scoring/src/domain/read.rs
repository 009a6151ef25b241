//! The read RPCs: latest scores, listings, history, distributions, explanations, KPIs.
//! They read committed rows only and take no lock, so a run in progress never blocks them.

use chrono::{DateTime, Utc};
use vitals_proto::scoring::v1 as pb;
use vitals_scoring_core as core;
use vitals_server::ApiError;
use vitals_store::inputs::{InputQuery, InputScope, load_inputs};
use vitals_store::profiles as sp;
use vitals_store::scoring::{
    self as ss, LatestFilter, LatestOrder, PROFILE_SCORECARD, SnapshotRecord,
};

use super::stored::{self, explanation_of};
use crate::Inner;
use crate::convert;
use crate::error::Result;

/// GetScore.
pub(crate) async fn get_score(
    inner: &Inner,
    req: pb::GetScoreRequest,
) -> Result<pb::GetScoreResponse> {
    let account = convert::account_id("account_id", &req.account_id)?;
    let card = convert::one_scorecard(convert::scorecard("scorecard", &req.scorecard, false)?);
    let at = req
        .as_of
        .as_ref()
        .map(|t| convert::from_timestamp("as_of", t))
        .transpose()?;
    // The latest score: from memory when cached (see crate::cache).
    let generation = inner.latest.generation();
    if at.is_none()
        && let Some(s) = inner.latest.get(&account, &card)
    {
        return Ok(pb::GetScoreResponse { snapshot: Some(s) });
    }
    let r = ss::snapshot_at(&inner.store, &account, &card, at)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "score of account \"{account}\" for scorecards/{card}"
            ))
        })?;
    let snapshot = convert::snapshot(&r, true);
    if at.is_none() {
        inner
            .latest
            .put(account, card, generation, snapshot.clone());
    }
    Ok(pb::GetScoreResponse {
        snapshot: Some(snapshot),
    })
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

/// ExplainScore.
pub(crate) async fn explain(
    inner: &Inner,
    req: pb::ExplainScoreRequest,
) -> Result<pb::ExplainScoreResponse> {
    let account = convert::account_id("account_id", &req.account_id)?;
    let card = convert::one_scorecard(convert::scorecard("scorecard", &req.scorecard, false)?);
    let since = req
        .since
        .as_ref()
        .map(|t| convert::from_timestamp("since", t))
        .transpose()?;
    let store = &inner.store;
    let now = ss::snapshot_at(store, &account, &card, None)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "score of account \"{account}\" for scorecards/{card}"
            ))
        })?;
    let after = convert::drivers(&now);
    let mut drivers: Vec<pb::Driver> = after.iter().map(convert::driver).collect();
    drivers.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    let mut resp = pb::ExplainScoreResponse {
        snapshot: Some(convert::snapshot(&now, true)),
        drivers,
        ..Default::default()
    };
    let Some(since) = since else {
        return Ok(resp);
    };
    let Some(base) = ss::snapshot_at(store, &account, &card, Some(since)).await? else {
        return Ok(resp);
    };
    resp.score_change = now.value - base.value;
    if card == PROFILE_SCORECARD {
        let before = convert::drivers(&base);
        let e_before = explanation_of(
            base.value,
            &before,
            convert::details(&base).adjustment_contribution,
        );
        let e_after = explanation_of(
            now.value,
            &after,
            convert::details(&now).adjustment_contribution,
        );
        let change = core::explain_change(&e_before, &e_after);
        let pct = |list: &[stored::StoredDriver], name: &str| {
            list.iter()
                .find(|d| d.0 == name)
                .and_then(|d| d.3)
                .map(|p| p * 100.0)
        };
        resp.kpi_changes = change
            .items
            .iter()
            .map(|it| pb::KpiChange {
                kpi: it.name.clone(),
                category: stored::change_category(it, &before, &after),
                before_value: it.value_before,
                after_value: it.value_after,
                before_percentile: pct(&before, &it.name),
                after_percentile: pct(&after, &it.name),
                contribution_change: it.delta,
            })
            .collect();
        let kpi_sum: f64 = change.items.iter().map(|i| i.delta).sum();
        resp.other_change = resp.score_change - kpi_sum;
    } else {
        resp.other_change = resp.score_change;
    }
    resp.baseline = Some(convert::snapshot(&base, true));
    Ok(resp)
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
