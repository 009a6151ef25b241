//! Per-profile models that borrow strength from the global model (issue 21): instead of
//! fitting a profile alone on its few dozen churns, fit its **deviation** from the global
//! model. The global model's log-odds are a fixed offset; the profile's intercept shift `d0`
//! and coefficient deviations `d` are fitted on the profile's rows, in the global model's
//! columns (its fitted KPI form and its standardisation), with an L2 penalty on `d`:
//!
//! ```text
//! eta_i = eta_global(x_i) + d0 + d . z_i
//! L(d0, d) = sum_i [ log(1 + e^{eta_i}) - y_i eta_i ] + (k / 2) |d|^2
//! ```
//!
//! The data term is a **sum** (not a mean as in [`crate::logistic`]): `k` is a prior
//! precision on the deviation, so the deviation is shrunk by the profile's amount of data
//! (its information grows with its churns): with few churns the profile model is the global
//! model (plus its own base rate), with many it departs where its data say so. `k` is
//! chosen by the same time-ordered CV that picks `lambda` ([`crate::select_lambda`]): best
//! mean test AUC over [`TrainOptions::deviation_grid`], ties to the stronger penalty; when
//! the CV is impossible (a fold without churn) the strongest penalty is used. The profile
//! model is then `global + deviation`, one linear model in the global model's columns
//! (coefficients `beta_global + d`, intercept `b_global + d0`), so it is stored, served,
//! calibrated (Platt scaling on the CV's out-of-fold scores of the chosen `k`) and turned
//! into KPI weights exactly like any other model. See `docs/learning.md`, "Profiles borrow
//! from the global model".

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::backtest::time_ordered_folds;
use crate::dataset::Dataset;
use crate::error::{LearnError, Result};
use crate::logistic::{
    ClassWeight, LogisticModel, SolverOutput, newton_solve_offset, targets_and_weights,
};
use crate::metrics::auc;
use crate::train::{
    FittedForm, LambdaScore, LambdaSelection, LayoutChoice, Selected, TrainOptions,
    TrainedKpiModel, calibrate, finish_kpi_model,
};
use crate::weights::KpiSpec;

/// Default candidates for the deviation's prior precision `k` (penalty per summed loss),
/// strongest first. `1e4` keeps a profile with a few hundred churns within a few percent
/// of the global coefficients; `1` is close to a lone fit.
pub const DEFAULT_DEVIATION_GRID: [f64; 9] = [1e4, 3e3, 1e3, 3e2, 1e2, 3e1, 1e1, 3.0, 1.0];

/// The global model a profile model borrows from: the model and the KPI form it was
/// fitted on (as returned by [`crate::fit_kpis_cv`] or [`crate::train_kpis`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalModel {
    /// The global churn model (calibrated or not: its log-odds are the offset).
    pub model: LogisticModel,
    /// The form of its columns, as fitted on the global training part.
    pub form: FittedForm,
}

impl From<(LogisticModel, FittedForm)> for GlobalModel {
    fn from((model, form): (LogisticModel, FittedForm)) -> Self {
        Self { model, form }
    }
}

/// A profile's rows in the global model's columns: standardised features and the global
/// log-odds (the offset).
struct Borrowed {
    z: Array2<f64>,
    offset: Vec<f64>,
}

impl Borrowed {
    /// `data` must have the global model's columns (see [`FittedForm::apply`]).
    fn new(data: &Dataset, global: &LogisticModel) -> Result<Self> {
        crate::error::check_len(
            "feature columns",
            global.coefficients.len(),
            data.n_features(),
        )?;
        let z = global.standardizer.transform(data.x.view())?;
        let beta = ArrayView1::from(global.coefficients.as_slice());
        let offset = (z.dot(&beta) + global.intercept).to_vec();
        Ok(Self { z, offset })
    }

    fn rows(&self, rows: &[usize]) -> Self {
        Self {
            z: self.z.select(Axis(0), rows),
            offset: rows.iter().map(|&r| self.offset[r]).collect(),
        }
    }
}

/// Fits the deviation with prior precision `k` on rows with both classes.
fn fit_deviation(
    b: &Borrowed,
    labels: &[bool],
    k: f64,
    warm: Option<&SolverOutput>,
    options: &TrainOptions,
) -> Result<SolverOutput> {
    let (y, w, _) = targets_and_weights(labels, ClassWeight::None)?;
    // The solver's data term is a mean: k on the summed loss is k / n on the mean.
    let lambda = k / labels.len().max(1) as f64;
    newton_solve_offset(
        b.z.view(),
        &y,
        &w,
        Some(&b.offset),
        lambda,
        warm.map(|o| (o.intercept, o.coefficients.as_slice())),
        options.solver,
    )
}

/// Log-odds of `global + deviation` on rows `z` with offsets.
fn deviation_scores(z: ArrayView2<'_, f64>, offset: &[f64], dev: &SolverOutput) -> Vec<f64> {
    let d = ArrayView1::from(dev.coefficients.as_slice());
    z.dot(&d)
        .iter()
        .zip(offset)
        .map(|(s, o)| o + dev.intercept + s)
        .collect()
}

fn check_grid(options: &TrainOptions) -> Result<Vec<f64>> {
    let mut grid = options.deviation_grid.clone();
    if grid.is_empty() {
        return Err(LearnError::InvalidParameter {
            name: "deviation_grid",
            reason: "no candidate".to_owned(),
        });
    }
    if let Some(k) = grid.iter().find(|k| !(k.is_finite() && **k > 0.0)) {
        return Err(LearnError::InvalidParameter {
            name: "deviation_grid",
            reason: format!("{k} is not a finite number > 0"),
        });
    }
    // Strong to weak: warm starts, and the first maximum is the stronger penalty.
    grid.sort_by(|a, b| b.total_cmp(a));
    Ok(grid)
}

/// Chooses the deviation's prior precision `k` by time-ordered CV on `data` (columns of
/// `global`): each fold fits the deviation on the earlier rows for every `k` and scores
/// the later rows by AUC; the best mean AUC wins, ties to the stronger penalty. The
/// selection's `lambda` is `k`, its class weighting none (the offset is already on the
/// churn-rate scale). When CV is impossible, the strongest `k` with the reason.
pub fn select_deviation(
    data: &Dataset,
    global: &LogisticModel,
    options: &TrainOptions,
) -> Result<LambdaSelection> {
    let b = Borrowed::new(data, global)?;
    select_on(data, &b, options)
}

fn select_on(data: &Dataset, b: &Borrowed, options: &TrainOptions) -> Result<LambdaSelection> {
    let grid = check_grid(options)?;
    let fallback = |reason: String| LambdaSelection {
        lambda: grid[0],
        class_weight: ClassWeight::None,
        scores: Vec::new(),
        fallback_reason: Some(reason),
        out_of_fold: Vec::new(),
    };
    let folds = match time_ordered_folds(&data.dates, options.cv_splits) {
        Ok(f) => f,
        Err(e) => return Ok(fallback(format!("cross-validation impossible: {e}"))),
    };
    let mut fold_aucs: Vec<Vec<f64>> = Vec::with_capacity(folds.len());
    let mut fold_scores: Vec<Vec<Vec<f64>>> = Vec::with_capacity(folds.len());
    for (i, fold) in folds.iter().enumerate() {
        let train_y: Vec<bool> = fold.train.iter().map(|&r| data.labels[r]).collect();
        let test_y: Vec<bool> = fold.test.iter().map(|&r| data.labels[r]).collect();
        let both = |y: &[bool]| y.iter().any(|&l| l) && y.iter().any(|&l| !l);
        if !both(&train_y) || !both(&test_y) {
            return Ok(fallback(format!(
                "cross-validation fold {} unusable: its training or test part lacks churned or retained observations",
                i + 1
            )));
        }
        let (train, test) = (b.rows(&fold.train), b.rows(&fold.test));
        let mut aucs = Vec::with_capacity(grid.len());
        let mut scores = Vec::with_capacity(grid.len());
        let mut warm: Option<SolverOutput> = None;
        for &k in &grid {
            options.cancel.check()?;
            let dev = fit_deviation(&train, &train_y, k, warm.as_ref(), options)?;
            let s = deviation_scores(test.z.view(), &test.offset, &dev);
            aucs.push(auc(&s, &test_y)?);
            scores.push(s);
            warm = Some(dev);
        }
        fold_aucs.push(aucs);
        fold_scores.push(scores);
    }
    let scores: Vec<LambdaScore> = grid
        .iter()
        .enumerate()
        .map(|(j, &k)| {
            let fa: Vec<f64> = fold_aucs.iter().map(|f| f[j]).collect();
            LambdaScore {
                lambda: k,
                class_weight: ClassWeight::None,
                mean_auc: fa.iter().sum::<f64>() / fa.len() as f64,
                fold_aucs: fa,
            }
        })
        .collect();
    let best = (0..scores.len()).fold(0, |b, j| {
        if scores[j].mean_auc > scores[b].mean_auc {
            j
        } else {
            b
        }
    });
    let out_of_fold = folds
        .iter()
        .zip(&fold_scores)
        .flat_map(|(fold, sc)| fold.test.iter().copied().zip(sc[best].iter().copied()))
        .collect();
    Ok(LambdaSelection {
        lambda: scores[best].lambda,
        class_weight: ClassWeight::None,
        scores,
        fallback_reason: None,
        out_of_fold,
    })
}

/// Fits `global + deviation` on every row of `data` (columns of `global`) with the `k` of
/// `selection`: one model in the global model's columns and standardisation.
fn fit_combined(
    data: &Dataset,
    b: &Borrowed,
    global: &LogisticModel,
    selection: &LambdaSelection,
    options: &TrainOptions,
) -> Result<LogisticModel> {
    if data.is_empty() {
        return Err(LearnError::Empty {
            what: "training set",
        });
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
    let dev = fit_deviation(b, &data.labels, selection.lambda, None, options)?;
    Ok(LogisticModel {
        feature_names: global.feature_names.clone(),
        standardizer: global.standardizer.clone(),
        intercept: global.intercept + dev.intercept,
        coefficients: global
            .coefficients
            .iter()
            .zip(&dev.coefficients)
            .map(|(g, d)| g + d)
            .collect(),
        lambda: selection.lambda / data.len() as f64,
        class_weights: (1.0, 1.0),
        iterations: dev.iterations,
        converged: dev.converged,
    })
}

/// Fits a profile model on `data` (columns of `global`) as `global + deviation`, `k` by
/// time-ordered CV ([`select_deviation`]); calibrated on the CV's out-of-fold scores when
/// `options.calibrate`. Returns the model and how `k` was chosen.
pub fn fit_borrowing(
    data: &Dataset,
    global: &LogisticModel,
    options: &TrainOptions,
) -> Result<(LogisticModel, LambdaSelection)> {
    let b = Borrowed::new(data, global)?;
    let selection = select_on(data, &b, options)?;
    let mut model = fit_combined(data, &b, global, &selection, options)?;
    calibrate(data, &selection, &mut model, options);
    Ok((model, selection))
}

/// [`crate::train_kpis`] for a profile that borrows from `global`: `data` has the columns
/// of `choice.data` over `kpis` (as for the global model); the global model's fitted form
/// turns them into its columns, the deviation's `k` is chosen by CV, the KPI weights come
/// from `global + deviation` (so they borrow too) before the calibration, which is fitted
/// on the out-of-fold scores of the chosen `k`. `layout_scores` is empty (the form is the
/// global model's).
pub fn train_kpis_borrowing(
    data: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    churn_outcomes: usize,
    options: &TrainOptions,
    global: &GlobalModel,
) -> Result<TrainedKpiModel> {
    choice.validate(kpis, data)?;
    let sub = global.form.apply(data, kpis)?;
    let b = Borrowed::new(&sub, &global.model)?;
    let lambda_selection = select_on(&sub, &b, options)?;
    let model = fit_combined(&sub, &b, &global.model, &lambda_selection, options)?;
    let fitted = Selected {
        sub: &sub,
        lambda_selection,
        layout_scores: Vec::new(),
    };
    finish_kpi_model(
        fitted,
        model,
        global.form.clone(),
        choice,
        kpis,
        churn_outcomes,
        options,
    )
}

/// [`crate::fit_kpis_cv`] for a profile that borrows from `global` (fitted on the same
/// training part's dates or earlier, never on the rows tested next): returns the
/// calibrated `global + deviation` model and its form (the global model's).
pub fn fit_kpis_borrowing(
    train: &Dataset,
    kpis: &[KpiSpec],
    options: &TrainOptions,
    global: &GlobalModel,
) -> Result<(LogisticModel, FittedForm)> {
    let sub = global.form.apply(train, kpis)?;
    let (model, _) = fit_borrowing(&sub, &global.model, options)?;
    Ok((model, global.form.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::logistic_dataset;
    use crate::train::fit_cv;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    fn log_loss(p: &[f64], y: &[bool]) -> f64 {
        p.iter()
            .zip(y)
            .map(|(&p, &y)| {
                let p = p.clamp(1e-15, 1.0 - 1e-15);
                if y { -p.ln() } else { -(1.0 - p).ln() }
            })
            .sum::<f64>()
            / p.len() as f64
    }

    /// True churn probabilities of a synthetic dataset's rows.
    fn truth(data: &Dataset, intercept: f64, coefs: &[f64]) -> Vec<f64> {
        data.x
            .axis_iter(Axis(0))
            .map(|r| sigmoid(intercept + r.iter().zip(coefs).map(|(x, c)| x * c).sum::<f64>()))
            .collect()
    }

    /// The lone fit as the learner makes it: lambda and class weights by CV, calibrated.
    fn lone(data: &Dataset, o: &TrainOptions) -> LogisticModel {
        let (mut m, sel) = fit_cv(data, o).unwrap();
        calibrate(data, &sel, &mut m, o);
        m
    }

    const GLOBAL: [f64; 12] = [0.9, -0.7, 0.5, 0.4, -0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];

    /// Five real effects and 35 columns of noise: few churns and many columns are what
    /// makes a lone fit overconfident.
    fn wide(real: &[f64]) -> Vec<f64> {
        let mut c = real.to_vec();
        c.resize(40, 0.0);
        c
    }

    #[test]
    fn a_small_profile_sharing_the_global_truth_borrows_and_is_not_overconfident() {
        let o = TrainOptions::default();
        let coefs = wide(&[0.6, -0.5, 0.4, 0.3, -0.3]);
        let global_data = logistic_dataset(30_000, -3.2, &coefs, 1);
        let global = lone(&global_data, &o);
        // 800 observations, a few dozen churns.
        let profile = logistic_dataset(800, -3.2, &coefs, 2);
        assert!((20..80).contains(&profile.n_churned()));
        let held_out = logistic_dataset(30_000, -3.2, &coefs, 3);
        let (shrunk, sel) = fit_borrowing(&profile, &global, &o).unwrap();
        let alone = lone(&profile, &o);

        let p_true = truth(&held_out, -3.2, &coefs);
        let p_shrunk = shrunk.predict_proba(held_out.x.view()).unwrap();
        let p_alone = alone.predict_proba(held_out.x.view()).unwrap();
        let (ll_true, ll_shrunk, ll_alone) = (
            log_loss(&p_true, &held_out.labels),
            log_loss(&p_shrunk, &held_out.labels),
            log_loss(&p_alone, &held_out.labels),
        );
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let mean_error = |p: &[f64]| {
            p.iter()
                .zip(&p_true)
                .map(|(a, b)| (logit(*a) - logit(*b)).abs())
                .sum::<f64>()
                / p.len() as f64
        };
        let max = |p: &[f64]| p.iter().copied().fold(0.0f64, f64::max);
        eprintln!(
            "churns {}; k {} ({:?}); held-out log loss: truth {ll_true:.5}, shrunk {ll_shrunk:.5}, \
             alone {ll_alone:.5}; mean |log-odds error|: shrunk {:.3}, alone {:.3}; \
             max p: truth {:.3}, shrunk {:.3}, alone {:.3}",
            profile.n_churned(),
            sel.lambda,
            sel.fallback_reason,
            mean_error(&p_shrunk),
            mean_error(&p_alone),
            max(&p_true),
            max(&p_shrunk),
            max(&p_alone),
        );
        assert!(
            ll_shrunk < ll_alone,
            "shrunk {ll_shrunk} not below alone {ll_alone}"
        );
        // Within 1 % of the truth's own loss: the shrunk model is (nearly) the truth.
        assert!(ll_shrunk < ll_true * 1.01, "{ll_shrunk} vs truth {ll_true}");
        // No probability near 1 that the truth does not have, and the log-odds near the
        // truth's row by row.
        assert!(max(&p_shrunk) <= max(&p_true) + 0.05);
        assert!(mean_error(&p_shrunk) < 0.25);
        assert!(mean_error(&p_shrunk) < mean_error(&p_alone));
    }

    #[test]
    fn a_large_profile_with_another_truth_departs_from_the_global_model() {
        let o = TrainOptions::default();
        let global_data = logistic_dataset(30_000, -3.0, &GLOBAL, 11);
        let global = lone(&global_data, &o);
        // The profile's first two effects are reversed, a third one appears.
        let mut other = GLOBAL;
        other[0] = -0.9;
        other[1] = 0.7;
        other[5] = 0.6;
        let profile = logistic_dataset(20_000, -2.5, &other, 12);
        let held_out = logistic_dataset(20_000, -2.5, &other, 13);
        let (shrunk, sel) = fit_borrowing(&profile, &global, &o).unwrap();
        let alone = lone(&profile, &o);
        eprintln!("k {}; coefficients {:?}", sel.lambda, shrunk.coefficients);
        for (j, want) in [(0, -0.9), (1, 0.7), (5, 0.6)] {
            assert!(
                (shrunk.coefficients[j] - want).abs() < 0.15,
                "coefficient {j}: {} vs {want}",
                shrunk.coefficients[j]
            );
        }
        let ll = |m: &LogisticModel| {
            log_loss(
                &m.predict_proba(held_out.x.view()).unwrap(),
                &held_out.labels,
            )
        };
        let (ll_shrunk, ll_alone, ll_global) = (ll(&shrunk), ll(&alone), ll(&global));
        eprintln!("held-out log loss: shrunk {ll_shrunk}, alone {ll_alone}, global {ll_global}");
        assert!(ll_shrunk < ll_alone * 1.005);
        assert!(ll_shrunk < ll_global * 0.95);
    }

    #[test]
    fn without_usable_folds_the_profile_model_is_the_global_one_with_its_base_rate() {
        let o = TrainOptions::default();
        let global_data = logistic_dataset(20_000, -3.0, &GLOBAL, 21);
        let global = lone(&global_data, &o);
        // One date only: no time-ordered fold.
        let mut profile = logistic_dataset(90, -1.5, &GLOBAL, 22);
        profile.dates = vec![profile.dates[0]; profile.len()];
        assert!(profile.n_churned() > 0);
        let (m, sel) = fit_borrowing(&profile, &global, &o).unwrap();
        assert!(sel.fallback_reason.is_some());
        assert_eq!(sel.lambda, DEFAULT_DEVIATION_GRID[0]);
        for (a, g) in m.coefficients.iter().zip(&global.coefficients) {
            assert!((a - g).abs() < 0.05, "{a} vs global {g}");
        }
        // Its own base rate: the intercept moved up toward the profile's higher rate.
        assert!(m.intercept > global.intercept + 0.5);
    }

    #[test]
    fn offsets_of_the_wrong_width_are_refused() {
        let o = TrainOptions::default();
        let global = lone(&logistic_dataset(5_000, -2.0, &[0.5, 0.5], 31), &o);
        let data = logistic_dataset(500, -2.0, &[0.5], 32);
        assert!(matches!(
            fit_borrowing(&data, &global, &o),
            Err(LearnError::ShapeMismatch { .. })
        ));
    }
}
