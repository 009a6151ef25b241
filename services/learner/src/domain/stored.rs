//! The JSON the learner keeps in the `models` table: one type per JSON column
//! (`coefficients`, `kpi_weights`, `category_weights`, `metrics`).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use vitals_learn_core::{
    Calibration, CalibrationBin, ChallengerDecision, ChallengerRule, DriftReference,
    FeatureTransform, GbmModel, LearnError,
};

/// The settings a model was trained with, all resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoredOptions {
    /// Label horizon in days.
    pub horizon_days: u32,
    /// Days between observation dates.
    pub observation_interval_days: u32,
    /// Shrinkage strength n0.
    pub prior_strength: f64,
    /// L2 penalty (as given, or as chosen once stored with a model).
    pub l2_penalty: Option<f64>,
    /// Whether the gradient-boosted challenger was tried (false for models stored
    /// before it existed).
    #[serde(default)]
    pub challenger: bool,
}

/// One coefficient: of one KPI in one form ([`FeatureTransform`]).
///
/// Versioning: models stored before the log-scaled values existed have neither
/// `transform` nor `missing`; they read as percentile coefficients with a missing value
/// of 0.5 (the median peer), which is exactly how they were fitted and applied. Models
/// stored before the book's preparation have no `group` and no `value` transform; they
/// read unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCoefficient {
    /// KPI name.
    pub kpi: String,
    /// Which form of the KPI the coefficient applies to (default: percentile).
    #[serde(default)]
    pub transform: FeatureTransform,
    /// Feature value used when the KPI is missing for an account (the value the model was
    /// fitted with: 0.5 for a percentile, the training mean for a log value or value).
    #[serde(default = "median_percentile")]
    pub missing: f64,
    /// For a model on the book's preparation: the group (model column) of correlated KPIs
    /// the KPI was averaged into; its coefficient is its share of the group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Its category (`usage`, `conversations`, `pulse`, `contract`, `custom`).
    pub category: String,
    /// Coefficient on the feature: the healthy-direction percentile in [0, 1], the
    /// healthy-direction signed log1p of the KPI value, or the healthy-direction value.
    pub coefficient: f64,
    /// Coefficient on the standardised feature (what the weights are derived from).
    pub standardized: f64,
    /// Declared direction of the raw KPI (`higher` or `lower` is better).
    pub declared_direction: String,
    /// Learned effect against the declared direction.
    pub contradicted: bool,
}

fn median_percentile() -> f64 {
    0.5
}

impl StoredCoefficient {
    /// The feature's column name (`<kpi>` for a percentile, `<kpi>:log` for a log value,
    /// `<kpi>:value` for a value).
    pub fn column(&self) -> String {
        self.transform.column_name(&self.kpi)
    }
}

/// Intercept and coefficients: P(churn) = sigmoid(intercept + sum coefficient x feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCoefficients {
    /// Intercept on the percentile scale.
    pub intercept: f64,
    /// L2 penalty used.
    pub l2_penalty: f64,
    /// One per KPI feature.
    pub coefficients: Vec<StoredCoefficient>,
    /// When the gradient-boosted challenger serves the churn probability: the calibrated
    /// booster as [`GbmModel::to_json`] text (kept as text so that reading a model's
    /// coefficients does not parse the trees; [`StoredCoefficients::booster`] does).
    /// `None`: the logistic model above serves (and for every model stored before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbm: Option<String>,
}

impl StoredCoefficients {
    /// The booster that serves the churn probability, if one does.
    pub fn booster(&self) -> Result<Option<GbmModel>, LearnError> {
        self.gbm.as_deref().map(GbmModel::from_json).transpose()
    }
}

/// The decision between a model's logistic regression and its gradient-boosted
/// challenger (docs/learning.md, "The challenger in the learner").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChallenger {
    /// Which serves, both models' CV fold AUCs and why.
    #[serde(flatten)]
    pub decision: ChallengerDecision,
    /// The rule applied.
    pub rule: ChallengerRule,
    /// The booster's budget.
    pub budget: f32,
    /// Trees of the serving booster (0 when the logistic model serves).
    pub trees: u32,
    /// Seconds spent on the challenger (CV and, when it serves, the final fit).
    pub seconds: f64,
}

/// The weight of one KPI within its category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKpiWeight {
    /// KPI name.
    pub kpi: String,
    /// Its category.
    pub category: String,
    /// Weight after shrinkage.
    pub weight: f64,
    /// Data-only weight.
    pub learned: f64,
    /// Uniform prior weight.
    pub prior: f64,
}

/// Suggested category weights, summing to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoredCategoryWeights {
    /// Usage.
    pub usage: f64,
    /// Conversations.
    pub conversations: f64,
    /// Pulse.
    pub pulse: f64,
    /// Contract.
    pub contract: f64,
    /// Custom metrics.
    pub custom_metrics: f64,
}

impl StoredCategoryWeights {
    /// From five weights in scoring-core's category order.
    pub fn from_weights(w: &[f64]) -> Self {
        let g = |i: usize| w.get(i).copied().unwrap_or(0.0);
        Self {
            usage: g(0),
            conversations: g(1),
            pulse: g(2),
            contract: g(3),
            custom_metrics: g(4),
        }
    }

    /// As scoring-core's category weights.
    pub fn to_core(&self) -> vitals_scoring_core::CategoryWeights {
        vitals_scoring_core::CategoryWeights::from_array([
            self.usage,
            self.conversations,
            self.pulse,
            self.contract,
            self.custom_metrics,
        ])
    }
}

/// Metrics of one predictor on some observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEval {
    /// AUC.
    pub auc: f64,
    /// Top-decile lift.
    pub top_decile_lift: f64,
    /// Log loss (probabilities only).
    pub log_loss: f64,
    /// Brier score (probabilities only).
    pub brier_score: f64,
    /// Observations.
    pub observations: u32,
    /// Positives among them.
    pub positives: u32,
    /// Calibration by deciles (empty for backtest folds).
    pub calibration: Vec<CalibrationBin>,
    /// Expected calibration error of a churn probability (`None` for the health score
    /// and for metrics stored before it was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_error: Option<f64>,
}

/// One backtest fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFold {
    /// Training observations are dated before this.
    pub train_end: NaiveDate,
    /// First test date.
    pub test_start: NaiveDate,
    /// Day after the last test date.
    pub test_end: NaiveDate,
    /// Training observations.
    pub train_count: u32,
    /// Test metrics.
    pub metrics: StoredEval,
}

/// A time-split backtest, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBacktest {
    /// Folds, oldest first.
    pub folds: Vec<StoredFold>,
    /// Mean test AUC.
    pub mean_auc: f64,
    /// Mean test top-decile lift.
    pub mean_top_decile_lift: f64,
    /// Why it could not run (too few dates or outcomes), when it could not.
    pub error: Option<String>,
    /// Mean expected calibration error of the folds (churn probability only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_calibration_error: Option<f64>,
}

impl StoredBacktest {
    /// From the folds.
    pub fn new(folds: Vec<StoredFold>) -> Self {
        let n = folds.len().max(1) as f64;
        Self {
            mean_auc: folds.iter().map(|f| f.metrics.auc).sum::<f64>() / n,
            mean_top_decile_lift: folds.iter().map(|f| f.metrics.top_decile_lift).sum::<f64>() / n,
            mean_calibration_error: folds
                .iter()
                .map(|f| f.metrics.calibration_error)
                .sum::<Option<f64>>()
                .map(|s| s / n),
            folds,
            error: None,
        }
    }

    /// A backtest that could not run.
    pub fn failed(reason: String) -> Self {
        Self {
            folds: Vec::new(),
            mean_auc: 0.0,
            mean_top_decile_lift: 0.0,
            error: Some(reason),
            mean_calibration_error: None,
        }
    }
}

/// Everything measured about a model at training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMetrics {
    /// Settings used (the L2 penalty as chosen).
    pub options: StoredOptions,
    /// Last observation date.
    pub as_of: NaiveDate,
    /// In-sample metrics of the churn probability.
    pub training: StoredEval,
    /// In-sample metrics of the health score with the learned weights.
    pub health: StoredEval,
    /// Time-split backtest of the churn probability.
    pub churn_backtest: StoredBacktest,
    /// Time-split backtest of the health score with refitted weights.
    pub health_backtest: StoredBacktest,
    /// Distinct accounts in the training set.
    pub account_count: u32,
    /// Churn outcomes seen (n of the shrinkage).
    pub churn_count: u32,
    /// n / (n + n0).
    pub shrinkage: f64,
    /// KPIs whose effect contradicts their declared direction.
    pub contradicted: Vec<String>,
    /// Categories where no KPI had a healthy effect (they keep the prior).
    pub categories_without_signal: Vec<String>,
    /// Why the fallback L2 penalty was used instead of cross-validation, if it was.
    pub lambda_fallback_reason: Option<String>,
    /// Observations left out because their horizon is not over yet.
    pub censored: u32,
    /// The observation window (`None` for models stored before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// How the churn probability was calibrated (`None`: stored before calibration
    /// existed, not calibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Set when the version does not serve: why (its backtest was worse than the
    /// serving version's). Read from the JSON key `candidate` by
    /// [`is_candidate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Set when the model is a profile's that borrows from the global model (the global
    /// model plus a deviation, `vitals_learn_core::borrow`): the deviation's prior
    /// precision `k` the time-ordered CV chose (`None`: fitted alone, or stored before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowed_from_global: Option<f64>,
    /// The training distribution of each KPI's value (decile bins and their shares), the
    /// reference of the drift report (docs/learning.md, "Drift"). Empty for models stored
    /// before it was recorded: their drift cannot be measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_reference: Vec<StoredReference>,
    /// The challenger's decision, when the model was trained with it (`None`: trained
    /// without it, or stored before it existed; the logistic model serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger: Option<StoredChallenger>,
}

/// The training distribution of one KPI's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReference {
    /// KPI name.
    pub kpi: String,
    /// Bin edges, shares, missing share and count.
    #[serde(flatten)]
    pub reference: DriftReference,
}

/// Whether a stored `metrics` column marks its model as a candidate (not serving).
pub fn is_candidate(metrics: &serde_json::Value) -> bool {
    metrics.get("candidate").is_some_and(|v| !v.is_null())
}

/// Where the end of an observation window comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowEnd {
    /// The request's `as_of`.
    AsOf,
    /// The last usage day or subscription change the server holds.
    LatestData,
    /// Now: the server holds no dated data.
    Now,
}

impl WindowEnd {
    /// As the API says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AsOf => "as_of",
            Self::LatestData => "latest data",
            Self::Now => "now",
        }
    }
}

/// The observation window of a training or evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// First observation date.
    pub start: Option<NaiveDate>,
    /// Last observation date (the `as_of` day).
    pub end: NaiveDate,
    /// Where `end` comes from.
    pub end_source: WindowEnd,
    /// Observation dates.
    pub dates: u32,
    /// Labelled observations over the portfolio.
    pub observations: u32,
    /// Observations left out (horizon not over at `end`).
    pub censored: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coefficient as stored before the log-scaled values existed reads as a percentile
    /// coefficient with the median peer for a missing value; a new one round-trips.
    #[test]
    fn coefficients_stored_before_the_log_values_read_as_percentiles() {
        let old = serde_json::json!({
            "intercept": -2.0,
            "l2_penalty": 0.01,
            "coefficients": [{
                "kpi": "active_days",
                "category": "usage",
                "coefficient": -1.5,
                "standardized": -0.4,
                "declared_direction": "higher",
                "contradicted": false
            }]
        });
        let c: StoredCoefficients = serde_json::from_value(old).expect("legacy coefficients");
        let k = &c.coefficients[0];
        assert_eq!(k.transform, FeatureTransform::Percentile);
        assert_eq!(k.missing, 0.5);
        assert_eq!(k.column(), "active_days");
        assert_eq!(k.group, None);
        let new = StoredCoefficient {
            transform: FeatureTransform::LogValue,
            missing: 1.25,
            ..k.clone()
        };
        assert_eq!(new.column(), "active_days:log");
        // A model stored before the book's preparation has no `group` and writes none.
        let json = serde_json::to_value(&new).expect("json");
        assert!(json.get("group").is_none(), "{json}");
        let back: StoredCoefficient =
            serde_json::from_value(serde_json::to_value(&new).expect("json")).expect("parse");
        assert_eq!(back, new);
    }
}
