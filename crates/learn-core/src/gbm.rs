//! The gradient-boosted challenger of the logistic churn model (docs/learning.md §2,
//! "Gradient-boosted challenger"): a [`perpetual`] booster (no hyperparameter search: one
//! `budget`) fitted with the log loss on a [`Dataset`], its log-odds Platt-calibrated on
//! out-of-fold scores as the logistic model's are, per-observation feature contributions
//! (exact tree-SHAP) for the drivers, and a JSON form the learner can store.
//!
//! Missing values (NaN) are handled by the booster itself (a split sends them to the side
//! that fits best), so no imputation is needed. Class imbalance is handled the way the crate
//! does it for the log loss: automatic class weights (effective-number weighting, blended
//! toward 1) inside the fit; they shift the raw log-odds, which the Platt scaling fitted on
//! out-of-fold scores puts back on the real churn-rate scale (as the prior correction does
//! for the logistic model).

use ndarray::{Array2, ArrayView2};
use perpetual::objective::Objective;
use perpetual::{ContributionsMethod, Matrix, PerpetualBooster};
use serde::{Deserialize, Serialize};

use crate::calibration::Platt;
use crate::cancel::Cancel;
use crate::dataset::Dataset;
use crate::error::{LearnError, Result, check_len};
use crate::features::column_value;
use crate::weights::Direction;

/// The booster's budget when none is given: the crate's own default (0.5; higher = more
/// trees and deeper interactions). Fixed, not searched (see docs/learning.md).
pub const DEFAULT_BUDGET: f32 = 0.5;

/// Options of a gradient-boosted fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbmOptions {
    /// The booster's complexity budget (perpetual's one hyperparameter), > 0.
    pub budget: f32,
    /// Seed of the booster's sampling: the same data and seed give the same model.
    pub seed: u64,
    /// Upper bound of one fit in seconds (the booster stops adding trees after it); `None`:
    /// no bound. A fit cannot be interrupted by [`GbmOptions::cancel`] once started.
    pub timeout_seconds: Option<f32>,
    /// Checked before each fit (each CV fold and the final fit); once it says stop, the
    /// call returns [`LearnError::Cancelled`].
    #[serde(skip)]
    pub cancel: Cancel,
}

impl Default for GbmOptions {
    fn default() -> Self {
        Self {
            budget: DEFAULT_BUDGET,
            seed: 0,
            timeout_seconds: None,
            cancel: Cancel::never(),
        }
    }
}

/// A fitted gradient-boosted churn model: the booster, the feature columns it reads and
/// the Platt scaling of its log-odds (identity until [`GbmModel::calibrate`]).
#[derive(Clone, Serialize, Deserialize)]
pub struct GbmModel {
    /// Feature names, in the column order the model reads.
    pub feature_names: Vec<String>,
    /// The booster (its log-odds before the scaling).
    pub booster: PerpetualBooster,
    /// Scaling of the booster's log-odds into the served probability.
    pub platt: Platt,
    /// Trees in the booster.
    pub trees: usize,
}

impl std::fmt::Debug for GbmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbmModel")
            .field("features", &self.feature_names.len())
            .field("trees", &self.trees)
            .field("platt", &self.platt)
            .finish_non_exhaustive()
    }
}

/// The rows of `x` in the column-major layout the booster reads.
fn column_major(x: ArrayView2<'_, f64>) -> Vec<f64> {
    x.t().iter().copied().collect()
}

fn booster_error(e: impl std::fmt::Display) -> LearnError {
    LearnError::Booster {
        reason: e.to_string(),
    }
}

impl GbmModel {
    /// Fits a booster with the log loss on every row of `data` (NaN = missing). Errors on
    /// an empty or single-class set, a budget that is not positive, or a failure of the
    /// booster.
    pub fn fit(data: &Dataset, options: &GbmOptions) -> Result<Self> {
        if !(options.budget.is_finite() && options.budget > 0.0) {
            return Err(LearnError::InvalidParameter {
                name: "budget",
                reason: format!("{} is not a positive number", options.budget),
            });
        }
        if data.is_empty() {
            return Err(LearnError::Empty {
                what: "training set",
            });
        }
        if data.n_features() == 0 {
            return Err(LearnError::Empty { what: "features" });
        }
        let churned = data.n_churned();
        if churned == 0 || churned == data.len() {
            return Err(LearnError::SingleClass {
                what: "training set".to_owned(),
                positives: churned,
                negatives: data.len() - churned,
            });
        }
        options.cancel.check()?;
        let flat = column_major(data.x.view());
        let matrix = Matrix::new(&flat, data.len(), data.n_features());
        let y: Vec<f64> = data
            .labels
            .iter()
            .map(|&l| f64::from(u8::from(l)))
            .collect();
        let mut booster = PerpetualBooster::default()
            .set_objective(Objective::LogLoss)
            .set_budget(options.budget)
            .set_missing(f64::NAN)
            .set_log_iterations(0)
            .set_seed(options.seed)
            .set_timeout(options.timeout_seconds);
        booster
            .fit(&matrix, &y, None, None)
            .map_err(booster_error)?;
        let trees = booster.get_prediction_trees().len();
        Ok(Self {
            feature_names: data.feature_names.clone(),
            booster,
            platt: Platt::IDENTITY,
            trees,
        })
    }

    fn check_columns(&self, x: ArrayView2<'_, f64>) -> Result<()> {
        check_len("feature columns", self.feature_names.len(), x.ncols())?;
        if let Some(index) = x.iter().position(|v| v.is_infinite()) {
            return Err(LearnError::NonFinite {
                what: "features",
                index,
            });
        }
        Ok(())
    }

    /// The booster's log-odds of churn for each row of `x` (before the scaling; ranks as
    /// the probability does).
    pub fn raw_log_odds(&self, x: ArrayView2<'_, f64>) -> Result<Vec<f64>> {
        self.check_columns(x)?;
        if x.nrows() == 0 {
            return Ok(Vec::new());
        }
        let flat = column_major(x);
        let matrix = Matrix::new(&flat, x.nrows(), x.ncols());
        Ok(self.booster.predict(&matrix, true))
    }

    /// Calibrated log-odds of churn for each row of `x`: `slope · η + offset`.
    pub fn decision_function(&self, x: ArrayView2<'_, f64>) -> Result<Vec<f64>> {
        let (a, b) = (self.platt.slope, self.platt.offset);
        Ok(self
            .raw_log_odds(x)?
            .into_iter()
            .map(|e| a * e + b)
            .collect())
    }

    /// Churn probability (within the training horizon) for each row of `x`.
    pub fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Vec<f64>> {
        Ok(self
            .raw_log_odds(x)?
            .into_iter()
            .map(|e| self.platt.probability(e))
            .collect())
    }

    /// Each row's contribution of each feature to its calibrated log-odds (exact
    /// tree-SHAP on the booster, times the Platt slope): `rows × (features + 1)`, the last
    /// column the base value (the scaled bias plus the offset), so every row sums to
    /// [`GbmModel::decision_function`]. Positive = more churn risk; the drivers of an
    /// account are its largest entries.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        self.check_columns(x)?;
        let (n, p) = (x.nrows(), x.ncols());
        if n == 0 {
            return Ok(Array2::zeros((0, p + 1)));
        }
        let flat = column_major(x);
        let matrix = Matrix::new(&flat, n, p);
        let c = self
            .booster
            .predict_contributions(&matrix, ContributionsMethod::Shapley, true);
        let mut out = Array2::from_shape_vec((n, p + 1), c).map_err(booster_error)?;
        out.mapv_inplace(|v| v * self.platt.slope);
        out.column_mut(p).mapv_inplace(|v| v + self.platt.offset);
        Ok(out)
    }

    /// The feature row of one account for this model, its columns by name from `kpi`
    /// ([`crate::column_value`]: the KPI's percentile, raw value and direction; a KPI it
    /// does not know is missing).
    pub fn row(
        &self,
        kpi: impl Fn(&str) -> Option<(Option<f64>, Option<f64>, Direction)>,
    ) -> Vec<f64> {
        self.feature_names
            .iter()
            .map(|name| column_value(name, &kpi))
            .collect()
    }

    /// Churn probabilities of rows built by [`GbmModel::row`] (each of the model's width).
    pub fn predict_rows(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>> {
        let p = self.feature_names.len();
        if let Some(r) = rows.iter().find(|r| r.len() != p) {
            check_len("feature columns", p, r.len())?;
        }
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let x = Array2::from_shape_vec((rows.len(), p), flat).map_err(booster_error)?;
        self.predict_proba(x.view())
    }

    /// Sets the scaling of the log-odds (fitted on out-of-fold scores; see
    /// [`crate::calibrate_out_of_fold`]).
    pub fn calibrate(&mut self, platt: Platt) {
        self.platt = platt;
    }

    /// The model as JSON (what the learner stores).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(booster_error)
    }

    /// A model from [`GbmModel::to_json`]'s text.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| LearnError::InvalidParameter {
            name: "gbm model json",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::auc;
    use crate::synthetic::logistic_dataset;

    #[test]
    fn contributions_sum_to_the_log_odds_and_json_keeps_predictions() {
        let mut data = logistic_dataset(3_000, -1.5, &[1.2, -0.8, 0.0], 5);
        // Some missing values, which the booster handles itself.
        for i in (0..data.len()).step_by(7) {
            data.x[[i, 1]] = f64::NAN;
        }
        let mut m = GbmModel::fit(&data, &GbmOptions::default()).unwrap();
        m.calibrate(Platt {
            slope: 0.8,
            offset: -0.2,
        });
        assert!(m.trees > 0);
        let eta = m.decision_function(data.x.view()).unwrap();
        assert!(auc(&eta, &data.labels).unwrap() > 0.7);
        let c = m.contributions(data.x.view()).unwrap();
        assert_eq!(c.ncols(), 4);
        for (row, e) in c.rows().into_iter().zip(&eta) {
            assert!((row.sum() - e).abs() < 1e-6, "{} vs {e}", row.sum());
        }
        // The feature without effect contributes far less than the two with one.
        let mean_abs = |j: usize| c.column(j).iter().map(|v| v.abs()).sum::<f64>();
        assert!(mean_abs(2) < 0.5 * mean_abs(1), "{c:?}");
        let back = GbmModel::from_json(&m.to_json().unwrap()).unwrap();
        assert_eq!(
            back.predict_proba(data.x.view()).unwrap(),
            m.predict_proba(data.x.view()).unwrap()
        );
        assert_eq!(back.platt, m.platt);
    }

    /// Rows built by column name (a percentile, a log value and a value, as the learner
    /// names its columns) from each KPI's inputs predict exactly as the dataset's rows.
    #[test]
    fn rows_by_column_name_predict_as_the_dataset() {
        let mut data = logistic_dataset(800, -1.0, &[1.5, -1.0, 0.5], 3);
        data.feature_names = vec!["a".into(), "b:log".into(), "c:value".into()];
        let m = GbmModel::fit(&data, &GbmOptions::default()).unwrap();
        let expected = m.predict_proba(data.x.view()).unwrap();
        // The inputs that give the dataset's values: the percentile as is, the raw value
        // whose signed log1p is the column, the value turned back (c: higher is worse).
        let rows: Vec<Vec<f64>> = data
            .x
            .rows()
            .into_iter()
            .map(|x| {
                m.row(|kpi| match kpi {
                    "a" => Some((Some(x[0]), None, Direction::HigherIsBetter)),
                    "b" => Some((
                        None,
                        Some(x[1].signum() * x[1].abs().exp_m1()),
                        Direction::HigherIsBetter,
                    )),
                    "c" => Some((None, Some(-x[2]), Direction::HigherIsWorse)),
                    _ => None,
                })
            })
            .collect();
        let got = m.predict_rows(&rows).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-9, "{g} vs {e}");
        }
        // A KPI without a value: the median percentile, NaN (missing) for the others; an
        // unknown KPI: missing.
        let row = m.row(|kpi| (kpi != "c").then_some((None, None, Direction::HigherIsBetter)));
        assert_eq!(row[0], 0.5);
        assert!(row[1].is_nan() && row[2].is_nan());
        assert!(m.predict_rows(&[row]).unwrap()[0].is_finite());
        assert!(matches!(
            m.predict_rows(&[vec![0.0; 2]]),
            Err(LearnError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn bad_inputs_are_refused_with_their_name() {
        let data = logistic_dataset(200, -1.0, &[1.0], 1);
        let single = data.subset(
            &(0..data.len())
                .filter(|&i| !data.labels[i])
                .collect::<Vec<_>>(),
        );
        assert!(matches!(
            GbmModel::fit(&single, &GbmOptions::default()),
            Err(LearnError::SingleClass { .. })
        ));
        let zero = GbmOptions {
            budget: 0.0,
            ..GbmOptions::default()
        };
        assert!(matches!(
            GbmModel::fit(&data, &zero),
            Err(LearnError::InvalidParameter { name: "budget", .. })
        ));
        let cancelled = GbmOptions {
            cancel: Cancel::new(|| true),
            ..GbmOptions::default()
        };
        assert_eq!(
            GbmModel::fit(&data, &cancelled).unwrap_err(),
            LearnError::Cancelled
        );
        let m = GbmModel::fit(&data, &GbmOptions::default()).unwrap();
        let wide = Array2::<f64>::zeros((3, 2));
        assert!(matches!(
            m.predict_proba(wide.view()),
            Err(LearnError::ShapeMismatch {
                what: "feature columns",
                ..
            })
        ));
        assert!(GbmModel::from_json("{").is_err());
    }
}
