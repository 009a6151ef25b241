//! What the scoring service keeps in `score_snapshots.sub_scores` (JSON) and
//! `.drivers_bin` (or, in rows written before migration 10, the JSON `.drivers`).
//!
//! The drivers are every present KPI's part in a profile score, most negative
//! contribution first: `(kpi, category, value, percentile, kpi_score, weight,
//! contribution)` (percentile 0..1 or none), so ExplainScore and "why it changed" never
//! recompute a population. The contribution is stored as scoring-core computed it (its
//! attribution of the calibrated category scores, see docs/scoring.md §9), so the
//! contributions plus the adjustment's share add up to the score minus 5. Numbers are
//! rounded to 6 decimals.
//!
//! The drivers' stored form (`drivers_bin`, and the JSON `drivers` of rows written
//! before migration 10) belongs to the store: `vitals_store::snapshot`, re-exported here.

use serde::{Deserialize, Serialize};
use vitals_scoring_core::{Category, ChangeItem, Explanation, KpiContribution};
use vitals_store::scoring::SnapshotRecord;
pub use vitals_store::snapshot::{
    StoredDriver, decode_drivers, encode_drivers, encode_drivers_with,
};

/// Rounds to 6 decimals.
pub fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// One category sub-score.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredCategory {
    /// Proto `ScoreCategory` value.
    pub c: i32,
    /// Custom score field name (score-field category only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub f: String,
    /// Sub-score; none when nothing of the category had a value.
    pub v: Option<f64>,
    /// Effective weight (sums to 1 over the present categories).
    pub w: f64,
    /// KPIs present.
    pub p: u32,
    /// KPIs counted.
    pub t: u32,
}

/// `sub_scores`: the category sub-scores and the other details of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredDetails {
    /// Category sub-scores (profile score only).
    #[serde(default)]
    pub categories: Vec<StoredCategory>,
    /// Global band (profile score only).
    #[serde(default)]
    pub global_band: String,
    /// Whether a momentum was computed (enough history).
    #[serde(default)]
    pub has_momentum: bool,
    /// Momentum x trend weight.
    #[serde(default)]
    pub trend_adjustment: f64,
    /// Webhook points.
    #[serde(default)]
    pub signal_adjustment: f64,
    /// Points applied to the usage sub-score.
    #[serde(default)]
    pub usage_adjustment: f64,
    /// Share of the score due to the usage adjustment.
    #[serde(default)]
    pub adjustment_contribution: f64,
    /// Model behind the weights, `models/{id}`.
    #[serde(default)]
    pub model: String,
    /// Peers compared with.
    #[serde(default)]
    pub peer_count: u32,
    /// Scorecards: the raw measure value.
    #[serde(default)]
    pub measure_value: Option<f64>,
    /// Parent accounts: the children's scores of the run rolled up (none without a
    /// scored child, and in rows written before parents existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup: Option<StoredRollup>,
}

/// The roll-up of a parent account's children (docs/scoring.md "Parent accounts").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredRollup {
    /// The rolled-up score.
    pub v: f64,
    /// Children rolled up.
    pub n: u32,
    /// The method used: `mrr-weighted`, `mean` or `min`.
    pub m: String,
}

/// The stored details of a snapshot (defaults when unreadable). Read in place, without
/// copying the JSON tree.
pub fn details(r: &SnapshotRecord) -> StoredDetails {
    StoredDetails::deserialize(&r.sub_scores).unwrap_or_default()
}

/// The stored contributions of a snapshot: the binary `drivers_bin` of rows written
/// since migration 10, else the JSON `drivers` of older rows (read in place). Unreadable
/// drivers read as none, as unreadable JSON always did, with a warning.
pub fn drivers(r: &SnapshotRecord) -> Vec<StoredDriver> {
    match &r.drivers_bin {
        Some(b) => decode_drivers(b).unwrap_or_else(|e| {
            tracing::warn!(account = %r.account_id, run = r.run_id, error = %e, "stored drivers unreadable");
            Vec::new()
        }),
        None => Vec::<StoredDriver>::deserialize(&r.drivers).unwrap_or_default(),
    }
}

/// The proto value of a scoring-core category.
pub fn category_proto(c: Category) -> i32 {
    use vitals_proto::common::v1::ScoreCategory as S;
    (match c {
        Category::Usage => S::Usage,
        Category::Conversations => S::Conversations,
        Category::Pulse => S::Pulse,
        Category::Contract => S::Contract,
        Category::Custom => S::CustomMetrics,
        Category::ScoreField => S::CustomScoreField,
    }) as i32
}

/// Stored form of an explanation's contributions.
pub fn drivers_of(e: &Explanation, category: impl Fn(usize) -> Category) -> Vec<StoredDriver> {
    e.contributions
        .iter()
        .map(|c| {
            let pct = c.percentile.is_finite().then(|| r6(c.percentile));
            StoredDriver(
                c.name.clone(),
                category_proto(category(c.kpi)),
                r6(c.value),
                pct,
                r6(c.kpi_score),
                r6(c.weight),
                r6(c.contribution),
            )
        })
        .collect()
}

/// Back to a scoring-core explanation (enough of it for `explain_change`).
pub fn explanation_of(
    score: f64,
    drivers: &[StoredDriver],
    adjustment_contribution: f64,
) -> Explanation {
    Explanation {
        score: vitals_scoring_core::AccountScore {
            score: Some(score),
            categories: [None; 5],
            usage_adjustment: 0.0,
            coverage: Default::default(),
            fallback: false,
        },
        contributions: drivers
            .iter()
            .enumerate()
            .map(|(i, d)| KpiContribution {
                kpi: i,
                name: d.0.clone(),
                value: d.2,
                percentile: d.3.unwrap_or(f64::NAN),
                kpi_score: d.4,
                weight: d.5,
                contribution: d.contribution(),
            })
            .collect(),
        adjustment_contribution,
    }
}

/// A change item's KPI category, looked up in both snapshots.
pub fn change_category(item: &ChangeItem, before: &[StoredDriver], after: &[StoredDriver]) -> i32 {
    after
        .iter()
        .chain(before)
        .find(|d| d.0 == item.name)
        .map_or(0, |d| d.1)
}
