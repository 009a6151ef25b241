//! Which model serves the churn probability: the logistic regression (champion) or the
//! gradient-boosted challenger ([`crate::gbm`]), decided by the time-ordered CV inside the
//! training data (docs/learning.md §2, "Gradient-boosted challenger").
//!
//! The rule ([`ChallengerRule`], written before it was measured): on the same time-ordered
//! folds that choose the logistic model's form, `lambda` and class weighting, the booster
//! serves only when its mean fold AUC beats the logistic model's by at least
//! `min_mean_gain` (0.01) **and** it is not worse on any fold by more than
//! `max_fold_loss` (0.01); otherwise, and whenever either CV is impossible, the logistic
//! model serves. The KPI weights of the health score always come from the logistic model
//! (it is the interpretable one); the drivers of an account come from the model that serves.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::backtest::{BacktestReport, Fold, FoldResult, fold_sets, time_ordered_folds};
use crate::calibration::{Calibration, calibrate_out_of_fold};
use crate::dataset::Dataset;
use crate::error::{LearnError, Result};
use crate::gbm::{GbmModel, GbmOptions};
use crate::logistic::{LogisticModel, LogisticOptions};
use crate::metrics::{auc, top_decile_lift};
use crate::train::{
    FittedForm, LambdaSelection, LayoutChoice, TrainOptions, TrainedKpiModel, select_layout,
    train_kpis,
};
use crate::weights::KpiSpec;

/// The decision rule between the logistic model and the gradient-boosted challenger.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChallengerRule {
    /// δ: the challenger's mean CV AUC must exceed the logistic model's by at least this.
    pub min_mean_gain: f64,
    /// ε: on no fold may the challenger's AUC be below the logistic model's by more.
    pub max_fold_loss: f64,
}

impl Default for ChallengerRule {
    /// δ = 0.01, ε = 0.01 (fixed before the first measurement; docs/learning.md).
    fn default() -> Self {
        Self {
            min_mean_gain: 0.01,
            max_fold_loss: 0.01,
        }
    }
}

/// The model that serves the churn probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedKind {
    /// The L2 logistic regression (the champion).
    Logistic,
    /// The gradient-boosted challenger.
    Gbm,
}

/// Both models' CV scores on the same folds and which one serves, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengerDecision {
    /// The model chosen.
    pub served: ServedKind,
    /// The logistic model's test AUC per fold (its chosen candidate; empty: CV impossible).
    pub logistic_fold_aucs: Vec<f64>,
    /// The challenger's test AUC per fold (empty: CV impossible or not run).
    pub gbm_fold_aucs: Vec<f64>,
    /// Why this model serves.
    pub reason: String,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl ChallengerDecision {
    /// The logistic model's mean CV AUC.
    pub fn logistic_mean_auc(&self) -> Option<f64> {
        mean(&self.logistic_fold_aucs)
    }

    /// The challenger's mean CV AUC.
    pub fn gbm_mean_auc(&self) -> Option<f64> {
        mean(&self.gbm_fold_aucs)
    }
}

impl ChallengerRule {
    /// Applies the rule to the two models' AUCs on the same folds (in the same order). The
    /// logistic model serves unless both lists are complete, of the same length, and the
    /// challenger wins by the rule's margins.
    pub fn decide(&self, logistic: &[f64], gbm: &[f64]) -> ChallengerDecision {
        let decision = |served, reason: String| ChallengerDecision {
            served,
            logistic_fold_aucs: logistic.to_vec(),
            gbm_fold_aucs: gbm.to_vec(),
            reason,
        };
        let (Some(l), Some(g)) = (mean(logistic), mean(gbm)) else {
            return decision(
                ServedKind::Logistic,
                "no cross-validation to compare the models on".to_owned(),
            );
        };
        if logistic.len() != gbm.len() {
            return decision(
                ServedKind::Logistic,
                format!(
                    "the models were scored on {} and {} folds",
                    logistic.len(),
                    gbm.len()
                ),
            );
        }
        let gain = g - l;
        let (worst_fold, worst_loss) = logistic
            .iter()
            .zip(gbm)
            .map(|(l, g)| l - g)
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (k, d)| if d > b.1 { (k, d) } else { b },
            );
        // Both false when an AUC is NaN: the logistic model then serves.
        let enough_gain = gain >= self.min_mean_gain;
        let no_bad_fold = worst_loss <= self.max_fold_loss;
        if !enough_gain {
            decision(
                ServedKind::Logistic,
                format!(
                    "gbm mean cv auc {g:.4} does not beat the logistic model's {l:.4} by {} (gain {gain:.4})",
                    self.min_mean_gain
                ),
            )
        } else if !no_bad_fold {
            decision(
                ServedKind::Logistic,
                format!(
                    "gbm mean cv auc {g:.4} beats the logistic model's {l:.4} by {gain:.4} but is {worst_loss:.4} worse on fold {} (more than {})",
                    worst_fold + 1,
                    self.max_fold_loss
                ),
            )
        } else {
            decision(
                ServedKind::Gbm,
                format!(
                    "gbm mean cv auc {g:.4} beats the logistic model's {l:.4} by {gain:.4} (at least {}) and is at most {:.4} worse on any fold (at most {})",
                    self.min_mean_gain,
                    worst_loss.max(0.0),
                    self.max_fold_loss
                ),
            )
        }
    }
}

/// The challenger's time-ordered CV: test AUC per fold and its out-of-fold log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbmCv {
    /// Test AUC in each fold.
    pub fold_aucs: Vec<f64>,
    /// (row of the data, raw log-odds) of every test row, scored by a booster that did not
    /// see it: what the challenger's calibration is fitted on. Not stored.
    #[serde(skip)]
    pub out_of_fold: Vec<(usize, f64)>,
}

/// Fits a booster on each fold's training rows and scores its test rows. Folds run one
/// after the other (each fit uses every core). Errors when a fold lacks a class or a fit
/// fails or is cancelled.
pub fn gbm_cv(data: &Dataset, folds: &[Fold], options: &GbmOptions) -> Result<GbmCv> {
    let mut fold_aucs = Vec::with_capacity(folds.len());
    let mut out_of_fold = Vec::new();
    for (k, fold) in folds.iter().enumerate() {
        let (train, test) = fold_sets(data, fold, &format!("cross-validation fold {}", k + 1))?;
        let m = GbmModel::fit(&train, options)?;
        let s = m.raw_log_odds(test.x.view())?;
        fold_aucs.push(auc(&s, &test.labels)?);
        out_of_fold.extend(fold.test.iter().copied().zip(s));
    }
    Ok(GbmCv {
        fold_aucs,
        out_of_fold,
    })
}

/// The fold AUCs of the candidate `selection` chose (empty when its CV was impossible).
fn chosen_fold_aucs(selection: &LambdaSelection) -> Vec<f64> {
    if selection.fallback_reason.is_some() {
        return Vec::new();
    }
    selection
        .scores
        .iter()
        .find(|s| s.lambda == selection.lambda && s.class_weight == selection.class_weight)
        .map(|s| s.fold_aucs.clone())
        .unwrap_or_default()
}

/// The challenger's CV on `data` (the logistic model's folds) and the rule's decision.
/// A CV the challenger cannot run (a fold without both classes) leaves the logistic model
/// serving, the reason saying why; other errors (cancelled, the booster failing) are returned.
fn challenge(
    data: &Dataset,
    logistic_fold_aucs: Vec<f64>,
    options: &TrainOptions,
    gbm: &GbmOptions,
    rule: &ChallengerRule,
) -> Result<(ChallengerDecision, Option<GbmCv>)> {
    if logistic_fold_aucs.is_empty() {
        return Ok((rule.decide(&logistic_fold_aucs, &[]), None));
    }
    // The training's flag stops the challenger too (the learner passes the same check in
    // both options; the booster's own is checked before each fit).
    options.cancel.check()?;
    let folds = time_ordered_folds(&data.dates, options.cv_splits)?;
    match gbm_cv(data, &folds, gbm) {
        Ok(cv) => Ok((rule.decide(&logistic_fold_aucs, &cv.fold_aucs), Some(cv))),
        Err(e @ (LearnError::SingleClass { .. } | LearnError::Empty { .. })) => {
            let mut d = rule.decide(&logistic_fold_aucs, &[]);
            d.reason = format!("gbm cross-validation impossible: {e}");
            Ok((d, None))
        }
        Err(e) => Err(e),
    }
}

/// Fits the challenger on all of `data` and calibrates it on its CV's out-of-fold log-odds
/// (when `options.calibrate`).
fn fit_challenger(
    data: &Dataset,
    cv: &GbmCv,
    options: &TrainOptions,
    gbm: &GbmOptions,
) -> Result<(GbmModel, Calibration)> {
    let mut model = GbmModel::fit(data, gbm)?;
    let calibration = if options.calibrate {
        let (scores, labels): (Vec<f64>, Vec<bool>) = cv
            .out_of_fold
            .iter()
            .map(|&(r, s)| (s, data.labels[r]))
            .unzip();
        calibrate_out_of_fold(&scores, &labels)
    } else {
        Calibration::skipped("calibration off")
    };
    model.calibrate(calibration.platt);
    Ok((model, calibration))
}

/// The churn model that serves, fitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedModel {
    /// The logistic model (`TrainedKpiModel::trained.model`, on its form's columns).
    Logistic,
    /// The challenger (on the data's columns), with its calibration.
    Gbm {
        /// The fitted, calibrated booster.
        model: Box<GbmModel>,
        /// Its Platt scaling, fitted on its CV's out-of-fold log-odds.
        calibration: Calibration,
    },
}

/// [`train_kpis`] with the gradient-boosted challenger: the logistic model (KPI weights,
/// form, calibration) as always, and which model serves the churn probability.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengedKpiModel {
    /// The logistic model; the health score's KPI weights always come from it.
    pub logistic: TrainedKpiModel,
    /// The model that serves the churn probability and the drivers.
    pub served: ServedModel,
    /// Both models' CV AUCs and the rule's decision.
    pub decision: ChallengerDecision,
}

impl ChallengedKpiModel {
    /// Calibrated log-odds of churn of the serving model for rows with the data layout's
    /// columns (`choice.data` over `kpis`, as trained).
    pub fn decision_function(&self, data: &Dataset, kpis: &[KpiSpec]) -> Result<Vec<f64>> {
        match &self.served {
            ServedModel::Logistic => self
                .logistic
                .trained
                .model
                .decision_function(self.logistic.form.apply(data, kpis)?.x.view()),
            ServedModel::Gbm { model, .. } => model.decision_function(data.x.view()),
        }
    }

    /// Churn probability of the serving model.
    pub fn churn_probability(&self, data: &Dataset, kpis: &[KpiSpec]) -> Result<Vec<f64>> {
        Ok(self
            .decision_function(data, kpis)?
            .into_iter()
            .map(|e| 1.0 / (1.0 + (-e).exp()))
            .collect())
    }

    /// The drivers' raw material from the serving model: the names of the columns it reads
    /// and each row's contribution of each column to its log-odds (`rows × (columns + 1)`,
    /// the last column the base value; every row sums to the log-odds). For the logistic
    /// model a column's contribution is its standardised value times its coefficient
    /// (0 for a missing value), the base value the intercept; for the challenger, the
    /// booster's tree-SHAP values ([`GbmModel::contributions`]).
    pub fn contributions(
        &self,
        data: &Dataset,
        kpis: &[KpiSpec],
    ) -> Result<(Vec<String>, Array2<f64>)> {
        match &self.served {
            ServedModel::Logistic => {
                let m = &self.logistic.trained.model;
                let input = self.logistic.form.apply(data, kpis)?;
                let z = m.standardizer.transform(input.x.view())?;
                let p = m.coefficients.len();
                let mut out = Array2::zeros((z.nrows(), p + 1));
                for (mut row, zr) in out.axis_iter_mut(Axis(0)).zip(z.axis_iter(Axis(0))) {
                    for j in 0..p {
                        row[j] = zr[j] * m.coefficients[j];
                    }
                    row[p] = m.intercept;
                }
                Ok((m.feature_names.clone(), out))
            }
            ServedModel::Gbm { model, .. } => Ok((
                model.feature_names.clone(),
                model.contributions(data.x.view())?,
            )),
        }
    }
}

/// Trains as [`train_kpis`] does, then runs the challenger's CV on the same folds (the
/// booster reads every column of `data`: trees need no transform, and a monotone transform
/// of a column changes nothing for them) and applies `rule`. The challenger is fitted on all
/// of `data` and calibrated only when it serves.
pub fn train_kpis_with_challenger(
    data: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    churn_outcomes: usize,
    options: &TrainOptions,
    gbm: &GbmOptions,
    rule: &ChallengerRule,
) -> Result<ChallengedKpiModel> {
    let logistic = train_kpis(data, kpis, choice, churn_outcomes, options)?;
    challenge_trained(data, logistic, options, gbm, rule)
}

/// The challenger against a logistic model already trained on `data` (by [`train_kpis`],
/// or by [`crate::train_kpis_borrowing`] for a profile that borrows from the global model):
/// the booster's CV on the folds of the logistic model's CV (`options.cv_splits` over
/// `data.dates`, as its selection used), the rule on both models' fold AUCs, and the
/// booster fitted on all of `data` and calibrated when it serves.
pub fn challenge_trained(
    data: &Dataset,
    logistic: TrainedKpiModel,
    options: &TrainOptions,
    gbm: &GbmOptions,
    rule: &ChallengerRule,
) -> Result<ChallengedKpiModel> {
    let (decision, cv) = challenge(
        data,
        chosen_fold_aucs(&logistic.trained.lambda_selection),
        options,
        gbm,
        rule,
    )?;
    let served = match (decision.served, cv) {
        (ServedKind::Gbm, Some(cv)) => {
            options.cancel.check()?;
            let (model, calibration) = fit_challenger(data, &cv, options, gbm)?;
            ServedModel::Gbm {
                model: Box::new(model),
                calibration,
            }
        }
        _ => ServedModel::Logistic,
    };
    Ok(ChallengedKpiModel {
        logistic,
        served,
        decision,
    })
}

/// A time-ordered backtest of the challenger procedure: per outer fold, the logistic
/// model (form, `lambda`, class weighting by CV inside the training part, calibrated), the
/// challenger (fitted on the training part, calibrated on its own inner CV) and the model
/// the rule serves, all scored on the same test part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengerBacktest {
    /// The logistic model alone.
    pub logistic: BacktestReport,
    /// The challenger alone.
    pub gbm: BacktestReport,
    /// Whichever the rule chose inside each training part.
    pub served: BacktestReport,
    /// The rule's decision inside each training part.
    pub decisions: Vec<ChallengerDecision>,
    /// Seconds spent fitting boosters in each fold (its inner CV and its final fit).
    pub gbm_fit_seconds: Vec<f64>,
}

/// Runs [`ChallengerBacktest`] over `splits` expanding-window folds of `data` (whose
/// columns are `choice.data` over `kpis`). Folds run one after the other.
pub fn backtest_challenger(
    data: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    splits: usize,
    options: &TrainOptions,
    gbm: &GbmOptions,
    rule: &ChallengerRule,
) -> Result<ChallengerBacktest> {
    let folds = time_ordered_folds(&data.dates, splits)?;
    let mut rows: [Vec<FoldResult>; 3] = Default::default();
    let mut decisions = Vec::with_capacity(folds.len());
    let mut gbm_fit_seconds = Vec::with_capacity(folds.len());
    for (k, fold) in folds.iter().enumerate() {
        let (train, test) = fold_sets(data, fold, &format!("backtest fold {}", k + 1))?;
        let (model, form, selection) = fit_logistic(&train, kpis, choice, options)?;
        let logistic_scores = model.decision_function(form.apply(&test, kpis)?.x.view())?;
        let t = std::time::Instant::now();
        let (decision, cv) = challenge(&train, chosen_fold_aucs(&selection), options, gbm, rule)?;
        // The challenger alone is backtested even when its inner CV was impossible
        // (uncalibrated then: the AUC and lift do not depend on the scaling).
        let cv = cv.unwrap_or(GbmCv {
            fold_aucs: Vec::new(),
            out_of_fold: Vec::new(),
        });
        let (booster, _) = fit_challenger(&train, &cv, options, gbm)?;
        gbm_fit_seconds.push(t.elapsed().as_secs_f64());
        let gbm_scores = booster.decision_function(test.x.view())?;
        let served_scores = match decision.served {
            ServedKind::Gbm => &gbm_scores,
            ServedKind::Logistic => &logistic_scores,
        };
        for (out, scores) in rows
            .iter_mut()
            .zip([&logistic_scores, &gbm_scores, served_scores])
        {
            out.push(FoldResult {
                cut: fold.cut,
                n_train: train.len(),
                n_test: test.len(),
                test_churned: test.n_churned(),
                auc: auc(scores, &test.labels)?,
                top_decile_lift: top_decile_lift(scores, &test.labels)?,
            });
        }
        decisions.push(decision);
    }
    let report = |folds: Vec<FoldResult>| {
        let k = folds.len() as f64;
        BacktestReport {
            mean_auc: folds.iter().map(|r| r.auc).sum::<f64>() / k,
            mean_top_decile_lift: folds.iter().map(|r| r.top_decile_lift).sum::<f64>() / k,
            folds,
        }
    };
    let [l, g, s] = rows;
    Ok(ChallengerBacktest {
        logistic: report(l),
        gbm: report(g),
        served: report(s),
        decisions,
        gbm_fit_seconds,
    })
}

/// The logistic model as [`crate::fit_kpis_cv`] fits it (form, `lambda` and class weighting
/// by CV, calibrated on the out-of-fold scores), with the selection whose fold AUCs the rule
/// compares.
fn fit_logistic(
    train: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    options: &TrainOptions,
) -> Result<(LogisticModel, FittedForm, LambdaSelection)> {
    let (sub, form, selection, _) = select_layout(train, kpis, choice, options)?;
    options.cancel.check()?;
    let mut model = LogisticModel::fit(
        &sub.feature_names,
        sub.x.view(),
        &sub.labels,
        &LogisticOptions {
            lambda: selection.lambda,
            class_weight: selection.class_weight,
            solver: options.solver,
        },
    )?;
    if options.calibrate {
        let (scores, labels): (Vec<f64>, Vec<bool>) = selection
            .out_of_fold
            .iter()
            .map(|&(r, s)| (s, sub.labels[r]))
            .unzip();
        calibrate_out_of_fold(&scores, &labels)
            .platt
            .apply_to(&mut model);
    }
    Ok((model, form, selection))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_needs_both_the_mean_gain_and_no_bad_fold() {
        let rule = ChallengerRule::default();
        // Wins by 0.02 on average, 0.005 worse on fold 1: the challenger serves.
        let d = rule.decide(&[0.70, 0.70], &[0.695, 0.745]);
        assert_eq!(d.served, ServedKind::Gbm, "{}", d.reason);
        // Same mean gain, 0.02 worse on fold 1: the logistic model serves, naming the fold.
        let d = rule.decide(&[0.70, 0.70], &[0.68, 0.76]);
        assert_eq!(d.served, ServedKind::Logistic);
        assert!(d.reason.contains("fold 1"), "{}", d.reason);
        // Better on every fold but by less than δ on average.
        let d = rule.decide(&[0.70, 0.70], &[0.705, 0.709]);
        assert_eq!(d.served, ServedKind::Logistic);
        assert!(d.reason.contains("does not beat"), "{}", d.reason);
        // No CV, or folds that do not match: the logistic model.
        assert_eq!(rule.decide(&[], &[0.9]).served, ServedKind::Logistic);
        assert_eq!(rule.decide(&[0.5], &[]).served, ServedKind::Logistic);
        assert_eq!(
            rule.decide(&[0.5], &[0.9, 0.9]).served,
            ServedKind::Logistic
        );
        // A NaN AUC never makes the challenger serve.
        assert_eq!(
            rule.decide(&[0.5, 0.5], &[f64::NAN, 0.9]).served,
            ServedKind::Logistic
        );
        let d = rule.decide(&[0.6, 0.7], &[0.7, 0.8]);
        assert!((d.logistic_mean_auc().unwrap() - 0.65).abs() < 1e-12);
        assert!((d.gbm_mean_auc().unwrap() - 0.75).abs() < 1e-12);
    }
}
