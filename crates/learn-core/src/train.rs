//! The training pipeline the learner service calls: choose `lambda` by time-ordered
//! cross-validation, fit, derive KPI weights, evaluate, backtest.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backtest::{BacktestReport, backtest, time_ordered_folds};
use crate::dataset::Dataset;
use crate::error::{LearnError, Result};
use crate::logistic::{ClassWeight, LogisticModel, LogisticOptions, SolverOptions};
use crate::metrics::{Evaluation, auc};
use crate::weights::{DEFAULT_N0, Direction, KpiSpec, WeightReport, kpi_weights};

/// Options of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Candidate L2 strengths; the one with the best mean time-ordered CV AUC wins.
    pub lambda_grid: Vec<f64>,
    /// Number of expanding-window folds for choosing `lambda` (2 = thirds).
    pub cv_splits: usize,
    /// `lambda` used when cross-validation is impossible (too few dates or churns in a
    /// fold); the selection then says why.
    pub fallback_lambda: f64,
    /// Class-imbalance handling.
    pub class_weight: ClassWeight,
    /// Solver stopping rules.
    pub solver: SolverOptions,
    /// Prior strength `n0` for the KPI-weight shrinkage.
    pub n0: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            lambda_grid: vec![
                1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5,
            ],
            cv_splits: 2,
            fallback_lambda: 1e-2,
            class_weight: ClassWeight::Balanced,
            solver: SolverOptions::default(),
            n0: DEFAULT_N0,
        }
    }
}

impl TrainOptions {
    fn logistic(&self, lambda: f64) -> LogisticOptions {
        LogisticOptions {
            lambda,
            class_weight: self.class_weight,
            solver: self.solver,
        }
    }
}

/// Cross-validated AUC of one candidate `lambda`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaScore {
    /// The candidate.
    pub lambda: f64,
    /// Test AUC in each time-ordered fold.
    pub fold_aucs: Vec<f64>,
    /// Mean of `fold_aucs`.
    pub mean_auc: f64,
}

/// How `lambda` was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaSelection {
    /// The chosen `lambda`.
    pub lambda: f64,
    /// Every candidate's CV score (empty when CV was impossible).
    pub scores: Vec<LambdaScore>,
    /// Why the fallback `lambda` was used, when it was.
    pub fallback_reason: Option<String>,
}

/// Chooses `lambda` by time-ordered cross-validation on `data`: expanding-window folds
/// (see [`time_ordered_folds`]), each candidate fitted on the earlier part and scored by
/// AUC on the later part; the best mean AUC wins, ties going to the stronger penalty.
/// When the folds cannot be formed or a fold lacks a class, falls back to
/// `options.fallback_lambda` and says why (never silently).
pub fn select_lambda(data: &Dataset, options: &TrainOptions) -> Result<LambdaSelection> {
    if options.lambda_grid.is_empty() {
        return Err(LearnError::InvalidParameter {
            name: "lambda_grid",
            reason: "no candidate".to_owned(),
        });
    }
    let fallback = |reason: String| LambdaSelection {
        lambda: options.fallback_lambda,
        scores: Vec::new(),
        fallback_reason: Some(reason),
    };
    let folds = match time_ordered_folds(&data.dates, options.cv_splits) {
        Ok(f) => f,
        Err(e) => return Ok(fallback(format!("cross-validation impossible: {e}"))),
    };
    // Strong to weak penalty, so each fit warm-starts from a nearby solution.
    let mut grid = options.lambda_grid.clone();
    grid.sort_by(|a, b| b.total_cmp(a));
    let per_fold: Vec<Result<Vec<f64>>> = folds
        .par_iter()
        .map(|fold| {
            let train = data.subset(&fold.train);
            let test = data.subset(&fold.test);
            let mut aucs = Vec::with_capacity(grid.len());
            let mut warm: Option<LogisticModel> = None;
            for &lambda in &grid {
                let m = LogisticModel::fit_warm(
                    &train.feature_names,
                    train.x.view(),
                    &train.labels,
                    &options.logistic(lambda),
                    warm.as_ref(),
                )?;
                let scores = m.decision_function(test.x.view())?;
                aucs.push(auc(&scores, &test.labels)?);
                warm = Some(m);
            }
            Ok(aucs)
        })
        .collect();
    let mut fold_aucs = Vec::with_capacity(per_fold.len());
    for (k, r) in per_fold.into_iter().enumerate() {
        match r {
            Ok(a) => fold_aucs.push(a),
            Err(e @ (LearnError::SingleClass { .. } | LearnError::Empty { .. })) => {
                return Ok(fallback(format!(
                    "cross-validation fold {} unusable: {e}",
                    k + 1
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let scores: Vec<LambdaScore> = grid
        .iter()
        .enumerate()
        .map(|(i, &lambda)| {
            let fa: Vec<f64> = fold_aucs.iter().map(|f| f[i]).collect();
            LambdaScore {
                lambda,
                mean_auc: fa.iter().sum::<f64>() / fa.len() as f64,
                fold_aucs: fa,
            }
        })
        .collect();
    // Grid is strong-to-weak, so keeping the first maximum prefers the stronger penalty.
    let best = scores.iter().fold(
        &scores[0],
        |b, s| if s.mean_auc > b.mean_auc { s } else { b },
    );
    Ok(LambdaSelection {
        lambda: best.lambda,
        scores: scores.clone(),
        fallback_reason: None,
    })
}

/// Fits the model with the `lambda` chosen by [`select_lambda`].
pub fn fit_cv(data: &Dataset, options: &TrainOptions) -> Result<(LogisticModel, LambdaSelection)> {
    let selection = select_lambda(data, options)?;
    let model = LogisticModel::fit(
        &data.feature_names,
        data.x.view(),
        &data.labels,
        &options.logistic(selection.lambda),
    )?;
    Ok((model, selection))
}

/// Everything one training run produces for a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModel {
    /// The churn model (gives each account's churn probability).
    pub model: LogisticModel,
    /// How `lambda` was chosen.
    pub lambda_selection: LambdaSelection,
    /// KPI weights derived from the model, shrunk toward the prior.
    pub weights: WeightReport,
    /// In-sample evaluation of the churn probability (optimistic; see the backtest).
    pub in_sample: Evaluation,
}

/// Trains a profile's (or the global) churn model: `lambda` by time-ordered CV, fit,
/// KPI weights (one [`KpiSpec`] per feature column, same names in the same order),
/// in-sample evaluation. `churn_outcomes` is `n` of the shrinkage (distinct churns seen).
pub fn train(
    data: &Dataset,
    kpis: &[KpiSpec],
    churn_outcomes: usize,
    options: &TrainOptions,
) -> Result<TrainedModel> {
    crate::error::check_len("kpi specs", data.n_features(), kpis.len())?;
    if let Some((k, f)) = kpis
        .iter()
        .zip(&data.feature_names)
        .find(|(k, f)| &k.name != *f)
    {
        return Err(LearnError::InvalidParameter {
            name: "kpi specs",
            reason: format!("kpi {} does not match feature column {f}", k.name),
        });
    }
    let (model, lambda_selection) = fit_cv(data, options)?;
    let weights = kpi_weights(kpis, &model.coefficients, churn_outcomes, options.n0)?;
    let probabilities = model.predict_proba(data.x.view())?;
    let in_sample = Evaluation::of_probabilities(&probabilities, &data.labels)?;
    Ok(TrainedModel {
        model,
        lambda_selection,
        weights,
        in_sample,
    })
}

/// Time-ordered backtest of the whole training procedure (including the choice of
/// `lambda`, nested inside each training part): `splits` expanding-window folds, 2 = the
/// book's thirds scheme.
pub fn backtest_model(
    data: &Dataset,
    splits: usize,
    options: &TrainOptions,
) -> Result<BacktestReport> {
    let folds = time_ordered_folds(&data.dates, splits)?;
    backtest(data, &folds, |train, test| {
        let (model, _) = fit_cv(train, options)?;
        model.decision_function(test.x.view())
    })
}

/// Suggested category weights, from a model fitted on category scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorySuggestion {
    /// Weights per category (all in one group, summing to 1), shrunk toward the prior.
    pub weights: WeightReport,
    /// The model fitted on the category scores.
    pub model: LogisticModel,
    /// How its `lambda` was chosen.
    pub lambda_selection: LambdaSelection,
}

/// Suggests category weights: `data` holds one column per category score (higher =
/// healthier, e.g. 0..10), `prior` the profile's current category weights in the same
/// order. The weights follow the same rule as KPI weights within one group: proportional
/// to the healthy effect, contradicting categories at 0 and reported, shrunk toward
/// the prior by `n / (n + n0)`.
pub fn suggest_category_weights(
    data: &Dataset,
    prior: &[f64],
    churn_outcomes: usize,
    options: &TrainOptions,
) -> Result<CategorySuggestion> {
    crate::error::check_len("prior category weights", data.n_features(), prior.len())?;
    let (model, lambda_selection) = fit_cv(data, options)?;
    let specs: Vec<KpiSpec> = data
        .feature_names
        .iter()
        .zip(prior)
        .map(|(name, &p)| KpiSpec {
            name: name.clone(),
            category: "profile".to_owned(),
            direction: Direction::HigherIsBetter,
            prior_weight: p,
        })
        .collect();
    let weights = kpi_weights(&specs, &model.coefficients, churn_outcomes, options.n0)?;
    Ok(CategorySuggestion {
        weights,
        model,
        lambda_selection,
    })
}
