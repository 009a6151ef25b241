//! Fitting one scope's model: coefficients, shrunk KPI weights, category weights and
//! metrics, ready to store.

use std::collections::HashSet;
use std::time::Instant;

use vitals_learn_core::{
    Calibration, ChallengerRule, Dataset, DriftReference, FeatureTransform, GbmModel, GbmOptions,
    KpiTerm, LearnError, ServedModel, TrainOptions, TrainedKpiModel, TrainedModel,
    challenge_trained, suggest_category_weights, train_kpis, train_kpis_borrowing,
};

use super::borrowing::Borrowing;
use super::evaluation::{backtests, eval_health, eval_probabilities};
use super::features;
use super::stored::{
    StoredBacktest, StoredCategoryWeights, StoredChallenger, StoredCoefficient, StoredCoefficients,
    StoredKpiWeight, StoredMetrics, StoredOptions, StoredReference,
};
use super::{Prepared, Scope, Settings};
use crate::error::LearnerError;

/// Everything a training run produces for one scope, ready to store.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// Coefficients per KPI column (percentile, log value or value).
    pub coefficients: StoredCoefficients,
    /// KPI weights after shrinkage.
    pub kpi_weights: Vec<StoredKpiWeight>,
    /// Suggested category weights, when the category fit succeeded.
    pub category_weights: Option<StoredCategoryWeights>,
    /// Metrics and evaluation.
    pub metrics: StoredMetrics,
    /// Training observations.
    pub observations: usize,
    /// Churned training observations.
    pub churned: usize,
}

/// Fits the scope's model: lambda by time-ordered CV, class weights, KPI weights shrunk
/// toward the uniform prior, suggested category weights, in-sample metrics of the churn
/// probability and of the health score with the learned weights, and a 2-fold time-split
/// backtest of both (reported as missing, with the reason, when the data are too few).
///
/// With `borrowing` (see [`Borrowing`]), a profile's model is the global model plus a
/// deviation shrunk by the profile's data, and its backtest borrows from the global model
/// refitted in each fold; the global scope's fits are kept there for the profiles (fit the
/// global scope first).
///
/// With `s.challenger`, the gradient-boosted challenger is cross-validated on the logistic
/// model's folds and the rule decides which serves the churn probability: the decision is
/// stored in the metrics, and a serving booster in the coefficients (the in-sample
/// metrics and the calibration are then the booster's; the weights stay the logistic
/// model's).
///
/// `Err(Ok(reason))` means the scope was skipped (e.g. no churn among its members).
pub fn fit_scope(
    prep: &Prepared,
    scope: Scope,
    s: &Settings,
    borrowing: Option<&Borrowing>,
) -> Result<Fitted, Result<String, LearnerError>> {
    let rows = prep.rows(scope);
    if rows.is_empty() {
        return Err(Ok(
            "no observation of its members (no data or no labelled date yet)".into(),
        ));
    }
    let owned;
    let data = match (scope, borrowing) {
        (Scope::Global, Some(b)) => &b.data,
        _ => {
            owned = prep.kpi_data(&rows).map_err(Err)?;
            &owned
        }
    };
    let churned = data.n_churned();
    if churned == 0 {
        return Err(Ok(
            "no churn outcome among its members within the horizon of an observation".into(),
        ));
    }
    if churned == data.len() {
        return Err(Ok("every observation of its members is a churn".into()));
    }
    let n = prep.churn_count(scope);
    let opts = s.train_options(&prep.cancel);
    let skip = |e: LearnError| match e {
        LearnError::SingleClass { .. } | LearnError::Empty { .. } => Ok(e.to_string()),
        other => Err(LearnerError::Learn(other)),
    };
    let started = Instant::now();
    let trained_kpis = match (scope, borrowing) {
        (Scope::Profile(_), Some(b)) => {
            let global = b.full(prep, s).map_err(Err)?;
            train_kpis_borrowing(data, &prep.specs, &prep.choice, n, &opts, &global)
                .map_err(skip)?
        }
        _ => train_kpis(data, &prep.specs, &prep.choice, n, &opts).map_err(skip)?,
    };
    // The challenger against the logistic model just trained, on the folds of its CV.
    let Challenged {
        logistic: trained_kpis,
        challenger,
        booster,
        booster_calibration,
    } = if s.challenger {
        challenge(data, trained_kpis, &opts, prep).map_err(Err)?
    } else {
        Challenged::unchallenged(trained_kpis)
    };
    if let (Scope::Global, Some(b)) = (scope, borrowing) {
        b.remember_full(
            (
                trained_kpis.trained.model.clone(),
                trained_kpis.form.clone(),
            )
                .into(),
        );
    }
    let borrowed_from_global = matches!((scope, borrowing), (Scope::Profile(_), Some(_)))
        .then_some(trained_kpis.trained.lambda_selection.lambda);
    let trained = &trained_kpis.trained;
    let kpis = prep.pop.catalogue.kpis();
    // The model written per KPI column: for the book's preparation each KPI's value or log
    // value with its share of its group's coefficient.
    let (intercept, terms) = trained_kpis
        .form
        .kpi_terms(&trained.model, kpis.len())
        .map_err(|e| Err(e.into()))?;
    let mut coefficients = stored_coefficients(prep, intercept, trained.model.lambda, terms);
    if let Some(b) = &booster {
        coefficients.gbm = Some(b.to_json().map_err(|e| Err(e.into()))?);
    }
    let kpi_weights = stored_kpi_weights(trained);
    let categories = prep.category_data(&rows).map_err(Err)?;
    let category_weights = suggested_category_weights(prep, scope, &categories, n, &opts);
    // In-sample metrics of the model that serves the churn probability (the booster reads
    // every KPI column of `data`, as fitted).
    let p = match &booster {
        Some(b) => b.predict_proba(data.x.view()),
        None => trained_kpis
            .form
            .apply(data, &prep.specs)
            .and_then(|d| trained.model.predict_proba(d.x.view())),
    }
    .map_err(|e| Err(e.into()))?;
    let training = eval_probabilities(&p, &data.labels, true).map_err(Err)?;
    let w: Vec<f64> = prep.weight_vector(&kpi_weights);
    let suggested = category_weights
        .as_ref()
        .map(StoredCategoryWeights::to_core);
    let health_scores = prep
        .health_scores(data, &w, suggested.as_ref())
        .map_err(Err)?;
    let health = eval_health(&health_scores, &data.labels, true).map_err(Err)?;
    let fitted_ms = started.elapsed().as_millis() as u64;
    let (churn_backtest, health_backtest) =
        match backtests(prep, scope, data, &categories, 2, s, borrowing) {
            Ok(b) => b,
            Err(e @ LearnerError::Learn(LearnError::Cancelled)) => return Err(Err(e)),
            Err(e @ (LearnerError::FailedPrecondition(_) | LearnerError::Learn(_))) => (
                StoredBacktest::failed(e.to_string()),
                StoredBacktest::failed(e.to_string()),
            ),
            Err(e) => return Err(Err(e)),
        };
    tracing::debug!(
        fit_ms = fitted_ms,
        backtest_ms = started.elapsed().as_millis() as u64 - fitted_ms,
        "scope fit and backtest"
    );
    let accounts: HashSet<&str> = data.accounts.iter().map(String::as_str).collect();
    Ok(Fitted {
        metrics: StoredMetrics {
            options: StoredOptions {
                l2_penalty: Some(trained.model.lambda),
                ..s.stored()
            },
            as_of: prep.as_of,
            training,
            health,
            churn_backtest,
            health_backtest,
            account_count: accounts.len() as u32,
            churn_count: n as u32,
            shrinkage: trained.weights.data_share,
            contradicted: trained.weights.contradicting.clone(),
            categories_without_signal: trained.weights.categories_without_signal.clone(),
            lambda_fallback_reason: trained.lambda_selection.fallback_reason.clone(),
            censored: prep.censored as u32,
            window: None,
            // The calibration of the model that serves the churn probability.
            calibration: Some(
                booster_calibration.unwrap_or_else(|| trained_kpis.calibration.clone()),
            ),
            candidate: None,
            borrowed_from_global,
            drift_reference: drift_reference(data, kpis),
            challenger,
        },
        coefficients,
        kpi_weights,
        category_weights,
        observations: data.len(),
        churned,
    })
}

/// A scope's logistic model after the challenger's trial: the booster and its calibration
/// when it serves the churn probability.
struct Challenged {
    logistic: TrainedKpiModel,
    challenger: Option<StoredChallenger>,
    booster: Option<GbmModel>,
    booster_calibration: Option<Calibration>,
}

impl Challenged {
    /// No trial: the logistic model serves.
    fn unchallenged(logistic: TrainedKpiModel) -> Self {
        Self {
            logistic,
            challenger: None,
            booster: None,
            booster_calibration: None,
        }
    }
}

/// The gradient-boosted challenger cross-validated on the logistic model's folds, and
/// the rule's decision.
fn challenge(
    data: &Dataset,
    logistic: TrainedKpiModel,
    opts: &TrainOptions,
    prep: &Prepared,
) -> Result<Challenged, LearnerError> {
    let started = Instant::now();
    let gbm = GbmOptions {
        cancel: prep.cancel.clone(),
        ..GbmOptions::default()
    };
    let rule = ChallengerRule::default();
    let c = challenge_trained(data, logistic, opts, &gbm, &rule)?;
    let (booster, booster_calibration, trees) = match c.served {
        ServedModel::Gbm { model, calibration } => {
            let trees = model.trees as u32;
            (Some(*model), Some(calibration), trees)
        }
        ServedModel::Logistic => (None, None, 0),
    };
    Ok(Challenged {
        logistic: c.logistic,
        challenger: Some(StoredChallenger {
            decision: c.decision,
            rule,
            budget: gbm.budget,
            trees,
            seconds: started.elapsed().as_secs_f64(),
        }),
        booster,
        booster_calibration,
    })
}

/// The KPI weights as stored.
fn stored_kpi_weights(trained: &TrainedModel) -> Vec<StoredKpiWeight> {
    trained
        .weights
        .kpis
        .iter()
        .map(|w| StoredKpiWeight {
            kpi: w.name.clone(),
            category: w.category.clone(),
            weight: w.weight,
            learned: w.learned,
            prior: w.prior,
        })
        .collect()
}

/// The category weights suggested for the scope from its observations' category scores
/// `categories` (none when their fit fails), shrunk toward the scope's configured ones.
pub(super) fn suggested_category_weights(
    prep: &Prepared,
    scope: Scope,
    categories: &Dataset,
    n: usize,
    opts: &TrainOptions,
) -> Option<StoredCategoryWeights> {
    let prior: Vec<f64> = match scope {
        Scope::Profile(p) => prep.pop.profiles[p]
            .config
            .category_weights
            .as_array()
            .to_vec(),
        Scope::Global => vec![1.0; 5],
    };
    suggest_category_weights(categories, &prior, n, opts)
        .ok()
        .map(|sug| {
            StoredCategoryWeights::from_weights(
                &sug.weights
                    .kpis
                    .iter()
                    .map(|w| w.weight)
                    .collect::<Vec<_>>(),
            )
        })
}

/// The training distribution of each KPI's value (its `<kpi>:value` column of the
/// scope's observations), the reference of the drift report.
fn drift_reference(data: &Dataset, kpis: &[vitals_scoring_core::KpiDef]) -> Vec<StoredReference> {
    kpis.iter()
        .filter_map(|k| {
            let name = FeatureTransform::Value.column_name(&k.name);
            let j = data.feature_names.iter().position(|f| *f == name)?;
            let values: Vec<f64> = data.x.column(j).to_vec();
            Some(StoredReference {
                kpi: k.name.to_string(),
                reference: DriftReference::from_values(&values)?,
            })
        })
        .collect()
}

/// The stored form of a model's KPI terms (one coefficient per KPI column, with its
/// catalogue category and declared direction).
fn stored_coefficients(
    prep: &Prepared,
    intercept: f64,
    l2_penalty: f64,
    terms: Vec<KpiTerm>,
) -> StoredCoefficients {
    let kpis = prep.pop.catalogue.kpis();
    StoredCoefficients {
        intercept,
        l2_penalty,
        coefficients: terms
            .into_iter()
            .map(|t| StoredCoefficient {
                kpi: kpis[t.kpi].name.to_string(),
                transform: t.transform,
                // What the fit saw for a missing value: the percentiles were filled with
                // the median peer, the other forms with the training mean (z = 0).
                missing: match t.transform {
                    FeatureTransform::Percentile => features::MISSING_PERCENTILE,
                    FeatureTransform::LogValue | FeatureTransform::Value => t.missing,
                },
                group: t.group.map(|g| g as u32),
                category: kpis[t.kpi].category.as_str().to_owned(),
                coefficient: t.coefficient,
                standardized: t.standardized,
                declared_direction: kpis[t.kpi].direction.as_str().to_owned(),
                contradicted: t.standardized > 0.0,
            })
            .collect(),
        gbm: None,
    }
}
