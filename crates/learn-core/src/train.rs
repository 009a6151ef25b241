//! The training pipeline the learner service calls: choose `lambda` by time-ordered
//! cross-validation, fit, derive KPI weights, evaluate, backtest.

use serde::{Deserialize, Serialize};

use crate::backtest::{BacktestReport, backtest, time_ordered_folds};
use crate::calibration::{Calibration, calibrate_out_of_fold};
use crate::cancel::Cancel;
use crate::dataset::Dataset;
use crate::error::{LearnError, Result};
use crate::features::{FeatureLayout, FeatureTransform};
use crate::logistic::{ClassWeight, LogisticModel, LogisticOptions, SolverOptions};
use crate::metrics::{Evaluation, auc};
use crate::prepare::{KpiTerm, Preparation, PreparationOptions};
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
    /// Class-imbalance handling when it is not chosen by cross-validation: used when
    /// `class_weight_candidates` is empty, and as the fallback when CV is impossible.
    pub class_weight: ClassWeight,
    /// Class weightings the time-ordered CV chooses from, together with `lambda` (every
    /// pair is scored; the best mean CV AUC wins). Empty = `class_weight` only.
    #[serde(default)]
    pub class_weight_candidates: Vec<ClassWeight>,
    /// Solver stopping rules.
    pub solver: SolverOptions,
    /// Prior strength `n0` for the KPI-weight shrinkage.
    pub n0: f64,
    /// Whether [`train_kpis`] and [`fit_kpis_cv`] calibrate the churn probability (Platt
    /// scaling on the CV's out-of-fold scores, folded into the model; see
    /// [`crate::calibration`]).
    #[serde(default = "yes")]
    pub calibrate: bool,
    /// Candidate prior precisions `k` of a profile model's deviation from the global model
    /// ([`crate::borrow`]); the time-ordered CV picks one, ties to the strongest.
    #[serde(default = "deviation_grid")]
    pub deviation_grid: Vec<f64>,
    /// Checked per `lambda` of the cross-validation, per KPI form and before each final
    /// fit; once it says stop, the call returns [`LearnError::Cancelled`].
    #[serde(skip)]
    pub cancel: Cancel,
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
            class_weight_candidates: vec![ClassWeight::Balanced, ClassWeight::None],
            solver: SolverOptions::default(),
            n0: DEFAULT_N0,
            calibrate: true,
            deviation_grid: deviation_grid(),
            cancel: Cancel::never(),
        }
    }
}

fn yes() -> bool {
    true
}

fn deviation_grid() -> Vec<f64> {
    crate::borrow::DEFAULT_DEVIATION_GRID.to_vec()
}

impl TrainOptions {
    fn logistic(&self, lambda: f64, class_weight: ClassWeight) -> LogisticOptions {
        LogisticOptions {
            lambda,
            class_weight,
            solver: self.solver,
        }
    }

    /// The class weightings the CV tries, in order, without repeats.
    fn class_weights(&self) -> Vec<ClassWeight> {
        let mut out: Vec<ClassWeight> = Vec::new();
        let given = if self.class_weight_candidates.is_empty() {
            std::slice::from_ref(&self.class_weight)
        } else {
            &self.class_weight_candidates[..]
        };
        for cw in given {
            if !out.contains(cw) {
                out.push(*cw);
            }
        }
        out
    }
}

/// Cross-validated AUC of one candidate (`lambda`, class weighting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaScore {
    /// The candidate's `lambda`.
    pub lambda: f64,
    /// The candidate's class weighting.
    pub class_weight: ClassWeight,
    /// Test AUC in each time-ordered fold.
    pub fold_aucs: Vec<f64>,
    /// Mean of `fold_aucs`.
    pub mean_auc: f64,
}

/// How `lambda` and the class weighting were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaSelection {
    /// The chosen `lambda`.
    pub lambda: f64,
    /// The chosen class weighting.
    pub class_weight: ClassWeight,
    /// Every candidate's CV score (empty when CV was impossible).
    pub scores: Vec<LambdaScore>,
    /// Why the fallback `lambda` was used, when it was.
    pub fallback_reason: Option<String>,
    /// Out-of-fold log-odds of the chosen candidate: (row of the CV's data, score) for
    /// every CV test row, each scored by a model that did not see it (empty when CV was
    /// impossible). What the calibration is fitted on; not stored.
    #[serde(skip)]
    pub out_of_fold: Vec<(usize, f64)>,
}

/// One CV fold's test AUC per candidate and its test scores per candidate.
type FoldScores = (Vec<f64>, Vec<Vec<f64>>);

/// Chooses `lambda` and the class weighting by time-ordered cross-validation on `data`:
/// expanding-window folds (see [`time_ordered_folds`]), each candidate pair fitted on the
/// earlier part and scored by AUC on the later part; the best mean AUC wins, ties going to
/// the earlier class weighting in `class_weight_candidates`, then to the stronger penalty.
/// (The top-decile lift is not a criterion: a CV test fold's top decile holds only a
/// handful of churns, so one churn more or less moves it by far more than the candidates
/// differ.) When the folds cannot be formed or a fold lacks a class, falls back to
/// `options.fallback_lambda` and `options.class_weight` and says why (never silently).
pub fn select_lambda(data: &Dataset, options: &TrainOptions) -> Result<LambdaSelection> {
    if options.lambda_grid.is_empty() {
        return Err(LearnError::InvalidParameter {
            name: "lambda_grid",
            reason: "no candidate".to_owned(),
        });
    }
    let fallback = |reason: String| LambdaSelection {
        lambda: options.fallback_lambda,
        class_weight: options.class_weight,
        scores: Vec::new(),
        fallback_reason: Some(reason),
        out_of_fold: Vec::new(),
    };
    let folds = match time_ordered_folds(&data.dates, options.cv_splits) {
        Ok(f) => f,
        Err(e) => return Ok(fallback(format!("cross-validation impossible: {e}"))),
    };
    // Strong to weak penalty, so each fit warm-starts from a nearby solution.
    let mut grid = options.lambda_grid.clone();
    grid.sort_by(|a, b| b.total_cmp(a));
    let weightings = options.class_weights();
    let candidates: Vec<(ClassWeight, f64)> = weightings
        .iter()
        .flat_map(|&cw| grid.iter().map(move |&l| (cw, l)))
        .collect();
    // One fold at a time: each holds copies of its training and test rows (and the fit
    // its standardised copy), so folds in parallel held them all at once; the fits use
    // every core anyway (the solver's passes are parallel over row chunks).
    let per_fold: Vec<Result<FoldScores>> = folds
        .iter()
        .map(|fold| {
            let train = data.subset(&fold.train);
            let test = data.subset(&fold.test);
            let mut aucs = Vec::with_capacity(candidates.len());
            let mut fold_scores = Vec::with_capacity(candidates.len());
            for &cw in &weightings {
                let mut warm: Option<LogisticModel> = None;
                for &lambda in &grid {
                    options.cancel.check()?;
                    let m = LogisticModel::fit_warm(
                        &train.feature_names,
                        train.x.view(),
                        &train.labels,
                        &options.logistic(lambda, cw),
                        warm.as_ref(),
                    )?;
                    let scores = m.decision_function(test.x.view())?;
                    aucs.push(auc(&scores, &test.labels)?);
                    fold_scores.push(scores);
                    warm = Some(m);
                }
            }
            Ok((aucs, fold_scores))
        })
        .collect();
    let mut fold_aucs = Vec::with_capacity(per_fold.len());
    let mut oof_scores = Vec::with_capacity(per_fold.len());
    for (k, r) in per_fold.into_iter().enumerate() {
        match r {
            Ok((a, sc)) => {
                fold_aucs.push(a);
                oof_scores.push(sc);
            }
            Err(e @ (LearnError::SingleClass { .. } | LearnError::Empty { .. })) => {
                return Ok(fallback(format!(
                    "cross-validation fold {} unusable: {e}",
                    k + 1
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let scores: Vec<LambdaScore> = candidates
        .iter()
        .enumerate()
        .map(|(i, &(class_weight, lambda))| {
            let fa: Vec<f64> = fold_aucs.iter().map(|f| f[i]).collect();
            LambdaScore {
                lambda,
                class_weight,
                mean_auc: fa.iter().sum::<f64>() / fa.len() as f64,
                fold_aucs: fa,
            }
        })
        .collect();
    // Candidates are in class-weighting order, each strong-to-weak, so keeping the first
    // maximum prefers the earlier weighting, then the stronger penalty.
    let best_index = (0..scores.len()).fold(0, |b, i| {
        if scores[i].mean_auc > scores[b].mean_auc {
            i
        } else {
            b
        }
    });
    let best = &scores[best_index];
    let out_of_fold = folds
        .iter()
        .zip(&oof_scores)
        .flat_map(|(fold, sc)| {
            fold.test
                .iter()
                .copied()
                .zip(sc[best_index].iter().copied())
        })
        .collect();
    Ok(LambdaSelection {
        lambda: best.lambda,
        class_weight: best.class_weight,
        scores: scores.clone(),
        fallback_reason: None,
        out_of_fold,
    })
}

/// Fits `data` with the `lambda` and class weighting of `selection`.
fn fit_selected(
    data: &Dataset,
    selection: &LambdaSelection,
    options: &TrainOptions,
) -> Result<LogisticModel> {
    options.cancel.check()?;
    LogisticModel::fit(
        &data.feature_names,
        data.x.view(),
        &data.labels,
        &options.logistic(selection.lambda, selection.class_weight),
    )
}

/// Fits the model with the `lambda` and class weighting chosen by [`select_lambda`].
pub fn fit_cv(data: &Dataset, options: &TrainOptions) -> Result<(LogisticModel, LambdaSelection)> {
    let selection = select_lambda(data, options)?;
    let model = fit_selected(data, &selection, options)?;
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

/// A way of turning the dataset's KPI columns into the model's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiForm {
    /// Fixed columns: the layout's transforms of every KPI (see [`crate::features`]).
    Layout(FeatureLayout),
    /// The book's preparation (skew rule, z-scores, correlated KPIs averaged into groups;
    /// [`crate::prepare`]), fitted on each training part.
    Book(PreparationOptions),
}

impl KpiForm {
    /// The book's preparation with the book's thresholds.
    pub fn book() -> Self {
        KpiForm::Book(PreparationOptions::default())
    }

    /// Short text: the layout's transforms joined by `+`, or `book`.
    pub fn describe(&self) -> String {
        match self {
            KpiForm::Layout(l) => l
                .transforms
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            KpiForm::Book(_) => "book".to_owned(),
        }
    }

    /// The transforms this form reads from the data.
    fn needs(&self) -> Vec<FeatureTransform> {
        match self {
            KpiForm::Layout(l) => l.transforms.clone(),
            KpiForm::Book(_) => vec![FeatureTransform::Value, FeatureTransform::LogValue],
        }
    }

    /// Fits the form on a training part whose columns are a [`FeatureLayout`] over `kpis`.
    pub fn fit(&self, data: &Dataset, kpis: &[KpiSpec]) -> Result<FittedForm> {
        Ok(match self {
            KpiForm::Layout(l) => FittedForm::Layout(l.clone()),
            KpiForm::Book(o) => FittedForm::Book(Preparation::fit(data, kpis, *o)?),
        })
    }
}

/// A [`KpiForm`] fitted on a training part: how the model's columns come from the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FittedForm {
    /// The layout's columns as they are.
    Layout(FeatureLayout),
    /// The book's preparation as fitted.
    Book(Preparation),
}

impl FittedForm {
    /// The model's input from a dataset with the data layout's columns (any rows).
    pub fn apply(&self, data: &Dataset, kpis: &[KpiSpec]) -> Result<Dataset> {
        match self {
            FittedForm::Layout(l) => {
                let names = l.names(kpis);
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                data.select_features(&refs)
            }
            FittedForm::Book(p) => p.transform(data),
        }
    }

    /// Short text: the layout's transforms, or `book` with its groups.
    pub fn describe(&self) -> String {
        match self {
            FittedForm::Layout(l) => KpiForm::Layout(l.clone()).describe(),
            FittedForm::Book(p) => format!(
                "book ({} KPIs, {} log-transformed, {} columns; groups: {})",
                p.kpis.len(),
                p.kpis
                    .iter()
                    .filter(|k| k.transform == FeatureTransform::LogValue)
                    .count(),
                p.groups.len(),
                p.names
                    .iter()
                    .filter(|n| n.contains('+'))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// `model` (fitted on [`FittedForm::apply`]'s columns) written per KPI column: the
    /// intercept and, for each column of each KPI, its transform, coefficient on the
    /// transformed value, standardised coefficient and the value used when it is missing
    /// (the training mean), such that `intercept + Σ coefficient · value` is the model's
    /// log-odds. For the book's preparation a group's coefficient is shared equally among
    /// its members (see [`Preparation::kpi_terms`]).
    pub fn kpi_terms(&self, model: &LogisticModel, n_kpis: usize) -> Result<(f64, Vec<KpiTerm>)> {
        match self {
            FittedForm::Layout(l) => {
                crate::error::check_len(
                    "model columns",
                    l.n_columns(n_kpis),
                    model.coefficients.len(),
                )?;
                let (intercept, raw) = model.raw_coefficients();
                let terms = l
                    .columns(n_kpis)
                    .into_iter()
                    .enumerate()
                    .map(|(j, (k, t))| KpiTerm {
                        kpi: k,
                        transform: t,
                        coefficient: raw[j],
                        standardized: model.coefficients[j],
                        missing: model.standardizer.means[j],
                        group: None,
                    })
                    .collect();
                Ok((intercept, terms))
            }
            FittedForm::Book(p) => p.kpi_terms(model),
        }
    }

    /// Each KPI's coefficient on the healthy-direction scale (positive = more churn risk):
    /// the sum of its terms' standardised coefficients (0 for a KPI the model does not
    /// use). Feed it to [`crate::kpi_weights`] with [`FeatureLayout::weight_specs`].
    pub fn kpi_coefficients(&self, model: &LogisticModel, n_kpis: usize) -> Result<Vec<f64>> {
        let (_, terms) = self.kpi_terms(model, n_kpis)?;
        let mut out = vec![0.0; n_kpis];
        for t in terms {
            out[t.kpi] += t.standardized;
        }
        Ok(out)
    }
}

/// Which KPI forms the time-ordered CV chooses from, and the layout of the dataset they
/// are cut from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutChoice {
    /// The dataset's KPI columns (every candidate's transforms must be among these).
    pub data: FeatureLayout,
    /// Candidate forms, in tie-breaking order (an exact tie goes to the earlier one).
    pub candidates: Vec<KpiForm>,
}

impl Default for LayoutChoice {
    /// [`LayoutChoice::book_or_layout`]: the CV inside the training part chooses between
    /// the book's preparation and percentiles + log values (ties: the book's). See
    /// `docs/bench-learner.md` for the rule that made it the default.
    fn default() -> Self {
        Self::book_or_layout()
    }
}

impl LayoutChoice {
    /// The data layout every choice below reads: percentile, log value and value of every
    /// KPI.
    pub fn full_data() -> FeatureLayout {
        FeatureLayout {
            transforms: vec![
                FeatureTransform::Percentile,
                FeatureTransform::LogValue,
                FeatureTransform::Value,
            ],
        }
    }

    /// One fixed layout (no choice).
    pub fn fixed(layout: FeatureLayout) -> Self {
        Self {
            data: layout.clone(),
            candidates: vec![KpiForm::Layout(layout)],
        }
    }

    /// One form, read from [`LayoutChoice::full_data`].
    pub fn only(form: KpiForm) -> Self {
        Self {
            data: Self::full_data(),
            candidates: vec![form],
        }
    }

    /// The default: the book's preparation or percentiles + log values, whichever has the
    /// better time-ordered CV AUC inside the training part (exact ties: the book's).
    pub fn book_or_layout() -> Self {
        Self {
            data: Self::full_data(),
            candidates: vec![KpiForm::book(), KpiForm::Layout(FeatureLayout::default())],
        }
    }

    /// The CV chooses among percentiles + log values, percentiles only and log values
    /// only (read from [`LayoutChoice::full_data`]).
    pub fn by_cv() -> Self {
        Self {
            data: Self::full_data(),
            candidates: vec![
                KpiForm::Layout(FeatureLayout::default()),
                KpiForm::Layout(FeatureLayout::percentiles_only()),
                KpiForm::Layout(FeatureLayout {
                    transforms: vec![FeatureTransform::LogValue],
                }),
            ],
        }
    }

    pub(crate) fn validate(&self, kpis: &[KpiSpec], data: &Dataset) -> Result<()> {
        self.data.validate()?;
        if self.candidates.is_empty() {
            return Err(LearnError::InvalidParameter {
                name: "layout candidates",
                reason: "no candidate".to_owned(),
            });
        }
        for c in &self.candidates {
            if let KpiForm::Layout(l) = c {
                l.validate()?;
            }
            if let Some(t) = c.needs().iter().find(|t| !self.data.transforms.contains(t)) {
                return Err(LearnError::InvalidParameter {
                    name: "layout candidates",
                    reason: format!("transform {} is not in the data", t.as_str()),
                });
            }
        }
        let names = self.data.names(kpis);
        crate::error::check_len("feature columns", names.len(), data.n_features())?;
        if let Some((n, f)) = names.iter().zip(&data.feature_names).find(|(n, f)| n != f) {
            return Err(LearnError::InvalidParameter {
                name: "kpi specs",
                reason: format!("layout column {n} does not match feature column {f}"),
            });
        }
        Ok(())
    }
}

/// The CV score of one candidate form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutScore {
    /// The candidate.
    pub layout: KpiForm,
    /// Its best (`lambda`, class weighting) by time-ordered CV.
    pub selection: LambdaSelection,
    /// That selection's mean CV AUC (`None` when CV was impossible).
    pub mean_auc: Option<f64>,
}

/// Chooses the KPI form, `lambda` and the class weighting together by the time-ordered
/// CV of [`select_lambda`], on the same folds: every candidate's best mean CV AUC is
/// compared and the highest wins (exact ties: the earlier candidate). A form with
/// fitted statistics (the book's preparation) is fitted on the whole of `data` before the
/// CV; it uses no label. A form that cannot be fitted (the book's preparation when every KPI
/// is constant) is skipped, its score saying why. When CV is impossible the first usable
/// candidate is kept with the fallback `lambda`. Returns the chosen form's model input, the fitted form, its
/// selection, and every candidate's score.
pub fn select_layout(
    data: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    options: &TrainOptions,
) -> Result<(Dataset, FittedForm, LambdaSelection, Vec<LayoutScore>)> {
    choice.validate(kpis, data)?;
    let mut scores = Vec::with_capacity(choice.candidates.len());
    // Only the candidate chosen so far keeps its model input (memory: one copy of the
    // training part per form would otherwise be held until the end).
    let mut kept: Option<(usize, FittedForm, Dataset)> = None;
    let mut best: Option<(usize, f64)> = None;
    let mut first_error = None;
    for (i, form) in choice.candidates.iter().enumerate() {
        options.cancel.check()?;
        // A form that cannot be fitted on this training part (the book's preparation when
        // every KPI is constant in it) is skipped and says why; the others compete.
        let f = match form.fit(data, kpis) {
            Ok(f) => f,
            Err(e @ LearnError::InvalidParameter { .. }) => {
                scores.push(LayoutScore {
                    layout: form.clone(),
                    selection: LambdaSelection {
                        lambda: options.fallback_lambda,
                        class_weight: options.class_weight,
                        scores: Vec::new(),
                        fallback_reason: Some(format!("form not usable: {e}")),
                        out_of_fold: Vec::new(),
                    },
                    mean_auc: None,
                });
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let sub = f.apply(data, kpis)?;
        let selection = select_lambda(&sub, options)?;
        let mean_auc = selection.fallback_reason.is_none().then(|| {
            selection
                .scores
                .iter()
                .find(|s| s.lambda == selection.lambda && s.class_weight == selection.class_weight)
                .map_or(f64::NAN, |s| s.mean_auc)
        });
        let better = mean_auc
            .filter(|a| a.is_finite())
            .filter(|&a| best.is_none_or(|(_, b)| a > b));
        if let Some(a) = better {
            best = Some((i, a));
        }
        scores.push(LayoutScore {
            layout: form.clone(),
            selection,
            mean_auc,
        });
        // The best CV AUC, else (CV impossible everywhere) the first usable candidate.
        if better.is_some() || (best.is_none() && kept.is_none()) {
            kept = Some((i, f, sub));
        }
    }
    let Some((chosen, form, sub)) = kept else {
        return Err(first_error.unwrap_or(LearnError::InvalidParameter {
            name: "layout candidates",
            reason: "no usable candidate".to_owned(),
        }));
    };
    let selection = scores[chosen].selection.clone();
    Ok((sub, form, selection, scores))
}

/// A churn model on KPI features with its form chosen by CV ([`train_kpis`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedKpiModel {
    /// The model (its columns are `form`'s), weights (one per KPI) and evaluation.
    pub trained: TrainedModel,
    /// The chosen form, as fitted.
    pub form: FittedForm,
    /// Every candidate form's CV score.
    pub layout_scores: Vec<LayoutScore>,
    /// The Platt scaling folded into `trained.model` (fitted on the chosen candidate's
    /// out-of-fold scores).
    pub calibration: Calibration,
}

/// Calibrates `model` on the out-of-fold scores of the CV that chose it (rows of `data`),
/// when `options.calibrate`; folds the scaling into the model and returns it.
pub(crate) fn calibrate(
    data: &Dataset,
    selection: &LambdaSelection,
    model: &mut LogisticModel,
    options: &TrainOptions,
) -> Calibration {
    if !options.calibrate {
        return Calibration::skipped("calibration off");
    }
    let (scores, labels): (Vec<f64>, Vec<bool>) = selection
        .out_of_fold
        .iter()
        .map(|&(r, s)| (s, data.labels[r]))
        .unzip();
    let c = calibrate_out_of_fold(&scores, &labels);
    c.platt.apply_to(model);
    c
}

/// Trains on a dataset whose columns are `choice.data` over `kpis` (each KPI in several
/// forms, e.g. percentile, log value and value; see [`crate::features`]): the form,
/// `lambda` and the class weighting by time-ordered CV ([`select_layout`]), then the fit
/// on the chosen form's columns; the KPI weights come from each KPI's summed
/// healthy-direction standardised coefficients ([`FittedForm::kpi_coefficients`]), one
/// weight per KPI (in `kpis` order); in-sample evaluation.
pub fn train_kpis(
    data: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    churn_outcomes: usize,
    options: &TrainOptions,
) -> Result<TrainedKpiModel> {
    let (sub, form, lambda_selection, layout_scores) = select_layout(data, kpis, choice, options)?;
    let model = fit_selected(&sub, &lambda_selection, options)?;
    let fitted = Selected {
        sub: &sub,
        lambda_selection,
        layout_scores,
    };
    finish_kpi_model(fitted, model, form, choice, kpis, churn_outcomes, options)
}

/// What the CV chose for a KPI model: the rows in the chosen form, `lambda` and the form
/// scores.
pub(crate) struct Selected<'a> {
    pub(crate) sub: &'a Dataset,
    pub(crate) lambda_selection: LambdaSelection,
    pub(crate) layout_scores: Vec<LayoutScore>,
}

/// The end of every KPI model's training, once fitted: the KPI weights from the fitted
/// effects (the calibration, a positive scaling of every coefficient, would not change
/// them, but a skipped one must not either), the calibration and the in-sample evaluation.
pub(crate) fn finish_kpi_model(
    fitted: Selected<'_>,
    mut model: LogisticModel,
    form: FittedForm,
    choice: &LayoutChoice,
    kpis: &[KpiSpec],
    churn_outcomes: usize,
    options: &TrainOptions,
) -> Result<TrainedKpiModel> {
    let Selected {
        sub,
        lambda_selection,
        layout_scores,
    } = fitted;
    let weights = kpi_weights(
        &choice.data.weight_specs(kpis),
        &form.kpi_coefficients(&model, kpis.len())?,
        churn_outcomes,
        options.n0,
    )?;
    let calibration = calibrate(sub, &lambda_selection, &mut model, options);
    let probabilities = model.predict_proba(sub.x.view())?;
    let in_sample = Evaluation::of_probabilities(&probabilities, &sub.labels)?;
    Ok(TrainedKpiModel {
        trained: TrainedModel {
            model,
            lambda_selection,
            weights,
            in_sample,
        },
        form,
        layout_scores,
        calibration,
    })
}

/// Fits a KPI model as [`train_kpis`] does (form, `lambda` and class weighting by CV
/// inside `train`) without the weights and evaluation; returns the model and its fitted
/// form (apply it to new rows with [`FittedForm::apply`]).
pub fn fit_kpis_cv(
    train: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    options: &TrainOptions,
) -> Result<(LogisticModel, FittedForm)> {
    let (sub, form, selection, _) = select_layout(train, kpis, choice, options)?;
    let mut model = fit_selected(&sub, &selection, options)?;
    calibrate(&sub, &selection, &mut model, options);
    Ok((model, form))
}

/// Time-ordered backtest of [`train_kpis`]'s procedure: in each fold the form (and its
/// statistics), `lambda` and class weighting are chosen by CV inside the training part
/// only.
pub fn backtest_kpis(
    data: &Dataset,
    kpis: &[KpiSpec],
    choice: &LayoutChoice,
    splits: usize,
    options: &TrainOptions,
) -> Result<BacktestReport> {
    let folds = time_ordered_folds(&data.dates, splits)?;
    backtest(data, &folds, |train, test| {
        let (model, form) = fit_kpis_cv(train, kpis, choice, options)?;
        model.decision_function(form.apply(test, kpis)?.x.view())
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
