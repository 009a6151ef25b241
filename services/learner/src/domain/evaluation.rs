//! Metrics of churn probabilities and health scores, time-split backtests, and the
//! evaluation of a stored model.

use std::collections::HashSet;

use chrono::Days;
use rayon::prelude::*;
use vitals_learn_core::{
    Dataset, Evaluation as LearnEvaluation, LearnError, calibration_table,
    expected_calibration_error, fit_kpis_borrowing, fit_kpis_cv, time_ordered_folds,
};

use super::borrowing::Borrowing;

use super::stored::{
    StoredBacktest, StoredCategoryWeights, StoredCoefficients, StoredEval, StoredFold,
    StoredKpiWeight,
};
use super::training::suggested_category_weights;
use super::{Prepared, Scope, Settings};
use crate::error::LearnerError;

pub(super) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn log_loss(p: &[f64], y: &[bool]) -> f64 {
    if p.is_empty() {
        return 0.0;
    }
    let eps = 1e-15;
    p.iter()
        .zip(y)
        .map(|(&p, &y)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / p.len() as f64
}

/// Metrics of churn probabilities.
pub(super) fn eval_probabilities(
    p: &[f64],
    y: &[bool],
    calibration: bool,
) -> Result<StoredEval, LearnerError> {
    let e = LearnEvaluation::of_probabilities(p, y)?;
    Ok(StoredEval {
        auc: e.auc,
        top_decile_lift: e.top_decile_lift,
        log_loss: log_loss(p, y),
        brier_score: e.brier.unwrap_or(0.0),
        observations: e.observations as u32,
        positives: e.churned as u32,
        calibration: if calibration {
            e.calibration
        } else {
            Vec::new()
        },
        calibration_error: Some(expected_calibration_error(p, y)?),
    })
}

/// Metrics of health scores (risk = 1 - score / 10).
pub(super) fn eval_health(
    scores: &[f64],
    y: &[bool],
    calibration: bool,
) -> Result<StoredEval, LearnerError> {
    let risk: Vec<f64> = scores
        .iter()
        .map(|s| (1.0 - s / 10.0).clamp(0.0, 1.0))
        .collect();
    let e = LearnEvaluation::of_scores(&risk, y)?;
    Ok(StoredEval {
        auc: e.auc,
        top_decile_lift: e.top_decile_lift,
        log_loss: 0.0,
        brier_score: 0.0,
        observations: e.observations as u32,
        positives: e.churned as u32,
        calibration: if calibration {
            calibration_table(&risk, y, 10)?
        } else {
            Vec::new()
        },
        calibration_error: None,
    })
}

/// Distinct accounts with a positive label: the churns a fold's training part has seen.
fn churned_accounts(d: &Dataset) -> usize {
    d.labels
        .iter()
        .zip(&d.accounts)
        .filter(|(l, _)| **l)
        .map(|(_, a)| a.as_str())
        .collect::<HashSet<_>>()
        .len()
}

/// Time-split backtests of the churn probability and of the health score with learned
/// weights: each fold refits (lambda by CV inside the training part) on the earlier
/// observations and is tested on the later ones. With `borrowing`, a profile's fold
/// borrows from the global model fitted on the observations before the fold's cut (never
/// on the tested period), and the global scope's folds are kept there for the profiles.
pub(super) fn backtests(
    prep: &Prepared,
    scope: Scope,
    data: &Dataset,
    categories: &Dataset,
    folds: usize,
    s: &Settings,
    borrowing: Option<&Borrowing>,
) -> Result<(StoredBacktest, StoredBacktest), LearnerError> {
    let opts = s.train_options(&prep.cancel);
    // The folds are independent: run them side by side (each fit is parallel over rows
    // too, but leaves cores idle), then take them, and the first failing one, in order.
    let folds: Vec<_> = time_ordered_folds(&data.dates, folds)?
        .into_iter()
        .enumerate()
        .collect();
    let results: Vec<Result<(StoredFold, StoredFold), LearnerError>> = folds
        .into_par_iter()
        .map(|(k, fold)| {
            prep.cancel.check()?;
            let train_part = data.subset(&fold.train);
            let test = data.subset(&fold.test);
            let churned = test.n_churned();
            if churned == 0 || churned == test.len() {
                return Err(LearnerError::FailedPrecondition(format!(
                    "not enough outcomes: backtest fold {} tests {} observations of which {churned} churned; \
                     each test fold needs churned and retained observations",
                    k + 1,
                    test.len()
                )));
            }
            let (model, form) = match (scope, borrowing) {
                (Scope::Profile(_), Some(b)) => {
                    let global = b.before(fold.cut, prep, s)?;
                    fit_kpis_borrowing(&train_part, &prep.specs, &opts, &global)?
                }
                (Scope::Global, Some(b)) => {
                    let fitted = fit_kpis_cv(&train_part, &prep.specs, &prep.choice, &opts)?;
                    b.remember_before(fold.cut, fitted.clone().into());
                    fitted
                }
                (_, None) => fit_kpis_cv(&train_part, &prep.specs, &prep.choice, &opts)?,
            };
            let p = model.predict_proba(form.apply(&test, &prep.specs)?.x.view())?;
            let n = churned_accounts(&train_part);
            let weights = prep.weights_of(&form, &model, n, s.prior_strength)?;
            let w: Vec<f64> = weights.kpis.iter().map(|w| w.weight).collect();
            let suggested = suggested_category_weights(
                prep,
                scope,
                &categories.subset(&fold.train),
                n,
                &opts,
            );
            let h = prep.health_scores(&test, &w, suggested.map(|c| c.to_core()).as_ref())?;
            let test_end = test
                .dates
                .iter()
                .max()
                .and_then(|d| d.checked_add_days(Days::new(1)))
                .unwrap_or(fold.cut);
            let fold_of = |metrics| StoredFold {
                train_end: fold.cut,
                test_start: fold.cut,
                test_end,
                train_count: train_part.len() as u32,
                metrics,
            };
            Ok((
                fold_of(eval_probabilities(&p, &test.labels, false)?),
                fold_of(eval_health(&h, &test.labels, false)?),
            ))
        })
        .collect();
    let mut churn = Vec::new();
    let mut health = Vec::new();
    for r in results {
        let (c, h) = r?;
        churn.push(c);
        health.push(h);
    }
    Ok((StoredBacktest::new(churn), StoredBacktest::new(health)))
}

/// The evaluation of a stored model on the current training set.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Churn probability: in-sample metrics and calibration with the stored model.
    pub churn: StoredEval,
    /// Its backtest (refits).
    pub churn_backtest: StoredBacktest,
    /// Health score with the stored weights.
    pub health: StoredEval,
    /// Its backtest (refitted weights).
    pub health_backtest: StoredBacktest,
}

/// Evaluates a stored model on the scope's observations, with a `folds`-fold backtest.
/// Frees `prep.data` once the KPI columns of the scope are taken from it (the evaluation
/// needs nothing else of it), so the backtest's copies are the only others held.
pub fn evaluate(
    prep: &mut Prepared,
    scope: Scope,
    coefficients: &StoredCoefficients,
    weights: &[StoredKpiWeight],
    categories: Option<&StoredCategoryWeights>,
    folds: usize,
    s: &Settings,
) -> Result<Evaluated, LearnerError> {
    let rows = prep.rows(scope);
    let data = prep.kpi_data(&rows)?;
    let category_data = prep.category_data(&rows)?;
    // A profile's backtest refits the global model it borrows from in each fold: it needs
    // every observation, taken before they are freed.
    let borrowing = match scope {
        Scope::Profile(_) if s.borrow_from_global => Some(Borrowing::new(prep)?),
        _ => None,
    };
    prep.data = prep.data.subset(&[]);
    let prep = &*prep;
    let churned = data.n_churned();
    if churned == 0 || churned == data.len() {
        return Err(LearnerError::FailedPrecondition(format!(
            "not enough outcomes: {} observations of which {churned} churned; churned and retained observations are both needed",
            data.len()
        )));
    }
    let p = prep.probabilities(&data, coefficients)?;
    let churn = eval_probabilities(&p, &data.labels, true)?;
    let suggested = categories.map(StoredCategoryWeights::to_core);
    let h = prep.health_scores(&data, &prep.weight_vector(weights), suggested.as_ref())?;
    let health = eval_health(&h, &data.labels, true)?;
    let (churn_backtest, health_backtest) = match backtests(
        prep,
        scope,
        &data,
        &category_data,
        folds,
        s,
        borrowing.as_ref(),
    ) {
        Err(LearnerError::Learn(e @ LearnError::InvalidParameter { .. })) => {
            return Err(LearnerError::FailedPrecondition(format!(
                "not enough observation dates for {folds} backtest folds: {e}"
            )));
        }
        other => other?,
    };
    Ok(Evaluated {
        churn,
        churn_backtest,
        health,
        health_backtest,
    })
}
