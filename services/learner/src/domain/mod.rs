//! The learner's business logic: training sets from the store's history, model fitting
//! and evaluation with learn-core, and the stored form of a model. Everything here is
//! synchronous CPU work; the gRPC layer runs it on blocking threads.

pub mod features;
pub mod stored;

use std::collections::{HashMap, HashSet};

use chrono::{Days, NaiveDate};
use ndarray::Axis;
use vitals_learn_core::FeatureTransform;
use vitals_learn_core::{
    Cancel, Dataset, Evaluation as LearnEvaluation, FittedForm, KpiSpec, LabelOptions,
    LayoutChoice, LearnError, LogisticModel, ObservationPoint, Outcome, OutcomeKind, TrainOptions,
    build_training_set, calibration_table, fit_kpis_cv, kpi_weights, suggest_category_weights,
    time_ordered_folds, train_kpis,
};
use vitals_scoring_core::{Catalogue, Category, KpiConfig};
use vitals_server::ApiError;
use vitals_store::StoreError;
use vitals_store::learner::{History, HistoryFacts, OutcomeRecord};

use features::{Account, Population, Snapshots};
use stored::{
    StoredBacktest, StoredCategoryWeights, StoredCoefficient, StoredCoefficients, StoredEval,
    StoredFold, StoredKpiWeight, StoredMetrics, StoredOptions,
};

/// Errors of the learner's domain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The maths refused the data (e.g. one class only).
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The data does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request would build a training set over the memory bound
    /// ([`Settings::max_dataset_cells`]).
    #[error("{0}")]
    TooLarge(String),
    /// A bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(s) => s.into(),
            Error::Learn(l @ (LearnError::SingleClass { .. } | LearnError::Empty { .. })) => {
                ApiError::FailedPrecondition(format!("not enough outcomes: {l}"))
            }
            // The service reports who cancelled (caller or shutdown); this is the fallback.
            Error::Learn(LearnError::Cancelled) => {
                ApiError::Unavailable("cancelled before it finished".into())
            }
            Error::Learn(l) => ApiError::Internal(l.to_string()),
            Error::NotFound(what) => ApiError::NotFound(what),
            Error::FailedPrecondition(m) => ApiError::FailedPrecondition(m),
            Error::TooLarge(m) => ApiError::ResourceExhausted(m),
            Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// Training settings, every field resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Label horizon in days.
    pub horizon_days: u32,
    /// Days between observation dates.
    pub interval_days: u32,
    /// Shrinkage strength n0.
    pub prior_strength: f64,
    /// Fixed L2 penalty; `None` = chosen by time-ordered cross-validation.
    pub l2_penalty: Option<f64>,
    /// Most cells (observations x feature columns) a training set may hold: the memory
    /// bound of training and evaluation (`--learner-max-dataset-cells`).
    pub max_dataset_cells: u64,
}

impl Settings {
    fn train_options(&self, cancel: &Cancel) -> TrainOptions {
        let mut o = TrainOptions {
            n0: self.prior_strength,
            cancel: cancel.clone(),
            ..TrainOptions::default()
        };
        if let Some(l2) = self.l2_penalty {
            o.lambda_grid = vec![l2];
            o.fallback_lambda = l2;
        }
        o
    }

    /// The stored form.
    pub fn stored(&self) -> StoredOptions {
        StoredOptions {
            horizon_days: self.horizon_days,
            observation_interval_days: self.interval_days,
            prior_strength: self.prior_strength,
            l2_penalty: self.l2_penalty,
        }
    }
}

/// Which accounts a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every account.
    Global,
    /// The members of one profile (index into [`Population::profiles`]).
    Profile(usize),
}

const CATEGORY_COLUMNS: [&str; 5] = [
    "__category_usage",
    "__category_conversations",
    "__category_pulse",
    "__category_contract",
    "__category_custom_metrics",
];
const HEALTH_COLUMN: &str = "__health_score";

/// Learn-core outcomes per account from the stored ones.
pub fn outcomes_by_account(records: &[OutcomeRecord]) -> HashMap<String, Vec<Outcome>> {
    let mut map: HashMap<String, Vec<Outcome>> = HashMap::new();
    for r in records {
        let kind = match r.kind.as_str() {
            "churned" => OutcomeKind::Churned,
            "renewed" => OutcomeKind::Renewed,
            _ => OutcomeKind::Inactive,
        };
        map.entry(r.account_id.clone()).or_default().push(Outcome {
            kind,
            at: r.at.date_naive(),
        });
    }
    map
}

/// A labelled training set over the whole portfolio, with what is needed to rescore it.
#[derive(Debug)]
pub struct Prepared {
    /// The accounts and their inputs.
    pub pop: Population,
    /// KPIs and scores at every observation date.
    pub snapshots: Snapshots,
    /// Observations: the KPI columns of `choice.data`, then category scores, then the
    /// health score.
    pub data: Dataset,
    /// Number of KPI feature columns at the front of `data`.
    pub n_kpi_columns: usize,
    /// The forms in which the KPIs are in `data` (`choice.data`: percentile, log value and
    /// value) and the forms a model may use (the CV chooses).
    pub choice: LayoutChoice,
    /// The KPIs (catalogue order) with their declared directions.
    pub specs: Vec<KpiSpec>,
    /// Last observation date.
    pub as_of: NaiveDate,
    /// Observations left out because their label is not known yet.
    pub censored: usize,
    /// Checked at every observation date, fold, profile and `lambda`: once it says stop,
    /// the work returns `LearnError::Cancelled`.
    pub cancel: Cancel,
}

/// Builds the training set as of `as_of`: observation dates every `interval_days` ending at
/// `as_of`, the accounts active at each, features from data strictly before the date, label
/// = churned within the horizon; outcomes after `as_of` are ignored.
///
/// Refused with [`Error::TooLarge`] before any KPI is computed when the observations (the
/// accounts active at each date) times the feature columns exceed
/// [`Settings::max_dataset_cells`]; stops with `LearnError::Cancelled` at the first
/// observation date after `cancel` says so.
pub fn prepare(
    history: &History,
    outcomes: &[OutcomeRecord],
    as_of: NaiveDate,
    s: &Settings,
    cancel: &Cancel,
) -> Result<Prepared, Error> {
    cancel.check()?;
    let by_account = outcomes_by_account(outcomes);
    let pop = Population::build(history, &by_account)?;
    prepare_population(pop, &by_account, as_of, s, cancel)
}

/// [`prepare`] from a population already built (so that the caller can free the history
/// first) and the outcomes per account it was built with.
pub fn prepare_population(
    pop: Population,
    by_account: &HashMap<String, Vec<Outcome>>,
    as_of: NaiveDate,
    s: &Settings,
    cancel: &Cancel,
) -> Result<Prepared, Error> {
    cancel.check()?;
    let dates = match pop.data_start {
        Some(start) => {
            features::observation_dates(start, pop.window_days(), as_of, s.interval_days)
        }
        None => Vec::new(),
    };
    let choice = LayoutChoice::default();
    let layout = choice.data.clone();
    let specs = pop.kpi_specs();
    let (names, n_kpi_columns) = feature_names(&specs);
    check_size(&pop.accounts, &dates, names.len(), as_of, s)?;
    let mut snapshots = Snapshots::new();
    let mut points = Vec::new();
    for &d in &dates {
        cancel.check()?;
        let snap = pop.snapshot(d, &[])?;
        for &i in &snap.rows {
            points.push(ObservationPoint {
                account: pop.accounts[i].id.clone(),
                date: d,
            });
        }
        snapshots.insert(d, snap);
    }
    cancel.check()?;
    let label = LabelOptions {
        horizon_days: s.horizon_days,
        inactive_counts_as_churn: false,
    };
    let set = build_training_set(
        names,
        &points,
        by_account,
        as_of,
        &label,
        |account, date| {
            let snap = snapshots.get(&date)?;
            let i = *pop.index.get(account)?;
            let r = *snap.row_of.get(&i)?;
            Some(pop.feature_row(snap, r, &layout))
        },
    )?;
    Ok(Prepared {
        pop,
        snapshots,
        data: set.dataset,
        n_kpi_columns,
        choice,
        specs,
        as_of,
        censored: set.censored,
        cancel: cancel.clone(),
    })
}

/// Refuses a training set over [`Settings::max_dataset_cells`] from the store's
/// [`HistoryFacts`] and the outcomes, before the history is read: the same count as
/// [`prepare`]'s own check (the accounts active at each observation date times the
/// feature columns), so a request refused costs a few aggregate queries, not the
/// history. Returns the counted cells (at least the training set's).
pub fn check_facts(
    facts: &HistoryFacts,
    outcomes: &[OutcomeRecord],
    as_of: NaiveDate,
    s: &Settings,
) -> Result<u64, Error> {
    let mut by_account = outcomes_by_account(outcomes);
    let accounts: Vec<Account> = facts
        .accounts
        .iter()
        .map(|(id, start)| Account {
            id: id.clone(),
            profile: 0,
            start: *start,
            outcomes: by_account.remove(id).unwrap_or_default(),
        })
        .collect();
    let metrics: Vec<&str> = facts.custom_metrics.iter().map(String::as_str).collect();
    let spec = features::catalogue_spec(
        &facts.event_types,
        facts.key_event_types.as_ref(),
        &metrics,
        &facts.lower_is_better_metrics,
    );
    let catalogue = Catalogue::new(&spec).map_err(|e| Error::Internal(e.to_string()))?;
    let columns = feature_names(&features::kpi_specs(&catalogue)).0.len();
    let dates = match facts.data_start {
        Some(start) => features::observation_dates(
            start,
            KpiConfig::default().window_days,
            as_of,
            s.interval_days,
        ),
        None => Vec::new(),
    };
    check_size(&accounts, &dates, columns, as_of, s)
}

/// The training set's columns (the KPI columns of the default layout, then the category
/// scores and the health score) and how many of them are KPI columns.
fn feature_names(specs: &[KpiSpec]) -> (Vec<String>, usize) {
    let mut names = LayoutChoice::default().data.names(specs);
    let n_kpi_columns = names.len();
    names.extend(CATEGORY_COLUMNS.iter().map(|s| (*s).to_owned()));
    names.push(HEALTH_COLUMN.to_owned());
    (names, n_kpi_columns)
}

/// Refuses a training set over [`Settings::max_dataset_cells`]: the accounts active at each
/// observation date (an upper bound of the observations: censored ones are dropped later)
/// times `columns`, counted before any KPI is computed. Returns the counted cells.
fn check_size(
    accounts: &[Account],
    dates: &[NaiveDate],
    columns: usize,
    as_of: NaiveDate,
    s: &Settings,
) -> Result<u64, Error> {
    let observations: u64 = dates
        .iter()
        .map(|&d| accounts.iter().filter(|a| a.active_at(d)).count() as u64)
        .sum();
    let cells = observations.saturating_mul(columns as u64);
    if cells <= s.max_dataset_cells {
        return Ok(cells);
    }
    let first = dates.first().copied().unwrap_or(as_of);
    Err(Error::TooLarge(format!(
        "options.observation_interval_days: {} observation dates every {} days from {first} \
         to as_of {as_of} give {observations} observations x {columns} features = {cells} \
         cells, over the limit of {} (VITALS_LEARNER_MAX_DATASET_CELLS); use a longer \
         observation_interval_days or an earlier as_of",
        dates.len(),
        s.interval_days,
        s.max_dataset_cells
    )))
}

impl Prepared {
    /// Rows of `data` in the scope.
    pub fn rows(&self, scope: Scope) -> Vec<usize> {
        (0..self.data.len())
            .filter(|&r| match scope {
                Scope::Global => true,
                Scope::Profile(p) => self
                    .pop
                    .index
                    .get(&self.data.accounts[r])
                    .is_some_and(|&i| self.pop.accounts[i].profile == p),
            })
            .collect()
    }

    fn kpi_names(&self) -> Vec<&str> {
        self.data.feature_names[..self.n_kpi_columns]
            .iter()
            .map(String::as_str)
            .collect()
    }

    /// The KPI-feature dataset of some rows (all of them: one copy, not two).
    pub fn kpi_data(&self, rows: &[usize]) -> Result<Dataset, Error> {
        if rows.len() == self.data.len() && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(self.data.select_features(&self.kpi_names())?);
        }
        Ok(self.data.subset(rows).select_features(&self.kpi_names())?)
    }

    fn category_data(&self, rows: &[usize]) -> Result<Dataset, Error> {
        Ok(self.data.subset(rows).select_features(&CATEGORY_COLUMNS)?)
    }

    /// Churn outcomes (up to `as_of`) of the scope's accounts: `n` of the shrinkage.
    pub fn churn_count(&self, scope: Scope) -> usize {
        self.pop
            .accounts
            .iter()
            .filter(|a| match scope {
                Scope::Global => true,
                Scope::Profile(p) => a.profile == p,
            })
            .map(|a| {
                a.outcomes
                    .iter()
                    .filter(|o| o.kind == OutcomeKind::Churned && o.at <= self.as_of)
                    .count()
            })
            .sum()
    }

    /// KPI weights (one per KPI, catalogue order) from a model on the columns of `form`
    /// (each KPI's standardised healthy-direction effects summed; a group's coefficient of
    /// the book's preparation shared equally among its members).
    fn weights_of(
        &self,
        form: &FittedForm,
        model: &LogisticModel,
        churn_outcomes: usize,
        n0: f64,
    ) -> Result<vitals_learn_core::WeightReport, Error> {
        Ok(kpi_weights(
            &self.choice.data.weight_specs(&self.specs),
            &form.kpi_coefficients(model, self.specs.len())?,
            churn_outcomes,
            n0,
        )?)
    }

    /// KPI weight vector (catalogue order) for scoring-core from stored weights; a KPI
    /// without a stored weight gets its uniform prior.
    pub fn weight_vector(&self, weights: &[StoredKpiWeight]) -> Vec<f64> {
        let by_name: HashMap<&str, f64> =
            weights.iter().map(|w| (w.kpi.as_str(), w.weight)).collect();
        let kpis = self.pop.catalogue.kpis();
        let mut per_category: HashMap<Category, usize> = HashMap::new();
        for k in kpis {
            *per_category.entry(k.category).or_default() += 1;
        }
        kpis.iter()
            .map(|k| {
                by_name
                    .get(k.name.as_ref())
                    .copied()
                    .unwrap_or(1.0 / per_category[&k.category] as f64)
            })
            .collect()
    }

    /// Health scores of the observations `data` (rows carrying account and date) with
    /// `weights` (catalogue order) applied.
    fn health_scores(&self, data: &Dataset, weights: &[f64]) -> Result<Vec<f64>, Error> {
        let mut out = vec![5.0; data.len()];
        let mut by_date: HashMap<NaiveDate, Vec<usize>> = HashMap::new();
        for (r, d) in data.dates.iter().enumerate() {
            by_date.entry(*d).or_default().push(r);
        }
        for (d, rows) in by_date {
            let snap = self
                .snapshots
                .get(&d)
                .ok_or_else(|| Error::Internal(format!("no snapshot at {d}")))?;
            let scores = self.pop.rescore(snap, weights)?;
            for r in rows {
                let i = self.pop.index.get(&data.accounts[r]).copied();
                if let Some(row) = i.and_then(|i| snap.row_of.get(&i)) {
                    out[r] = scores[*row];
                }
            }
        }
        Ok(out)
    }

    /// Churn probabilities of observations `data` with stored coefficients (a coefficient
    /// whose column the data lack, e.g. a KPI no longer in the catalogue, gets its missing
    /// value).
    fn probabilities(&self, data: &Dataset, c: &StoredCoefficients) -> Vec<f64> {
        let cols: Vec<Option<usize>> = c
            .coefficients
            .iter()
            .map(|k| {
                let name = k.column();
                data.feature_names.iter().position(|f| *f == name)
            })
            .collect();
        data.x
            .axis_iter(Axis(0))
            .map(|row| {
                let eta = c.intercept
                    + c.coefficients
                        .iter()
                        .zip(&cols)
                        .map(|(k, col)| {
                            let v = col
                                .map(|j| row[j])
                                .filter(|v| v.is_finite())
                                .unwrap_or(k.missing);
                            k.coefficient * v
                        })
                        .sum::<f64>();
                sigmoid(eta)
            })
            .collect()
    }
}

fn sigmoid(x: f64) -> f64 {
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
fn eval_probabilities(p: &[f64], y: &[bool], calibration: bool) -> Result<StoredEval, Error> {
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
    })
}

/// Metrics of health scores (risk = 1 - score / 10).
fn eval_health(scores: &[f64], y: &[bool], calibration: bool) -> Result<StoredEval, Error> {
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
/// observations and is tested on the later ones.
fn backtests(
    prep: &Prepared,
    data: &Dataset,
    folds: usize,
    s: &Settings,
) -> Result<(StoredBacktest, StoredBacktest), Error> {
    let opts = s.train_options(&prep.cancel);
    let mut churn = Vec::new();
    let mut health = Vec::new();
    for (k, fold) in time_ordered_folds(&data.dates, folds)?
        .into_iter()
        .enumerate()
    {
        prep.cancel.check()?;
        let train_part = data.subset(&fold.train);
        let test = data.subset(&fold.test);
        let churned = test.n_churned();
        if churned == 0 || churned == test.len() {
            return Err(Error::FailedPrecondition(format!(
                "not enough outcomes: backtest fold {} tests {} observations of which {churned} churned; \
                 each test fold needs churned and retained observations",
                k + 1,
                test.len()
            )));
        }
        let (model, form) = fit_kpis_cv(&train_part, &prep.specs, &prep.choice, &opts)?;
        let p = model.predict_proba(form.apply(&test, &prep.specs)?.x.view())?;
        let weights = prep.weights_of(
            &form,
            &model,
            churned_accounts(&train_part),
            s.prior_strength,
        )?;
        let w: Vec<f64> = weights.kpis.iter().map(|w| w.weight).collect();
        let h = prep.health_scores(&test, &w)?;
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
        churn.push(fold_of(eval_probabilities(&p, &test.labels, false)?));
        health.push(fold_of(eval_health(&h, &test.labels, false)?));
    }
    Ok((StoredBacktest::new(churn), StoredBacktest::new(health)))
}

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
/// `Err(Ok(reason))` means the scope was skipped (e.g. no churn among its members).
pub fn fit_scope(
    prep: &Prepared,
    scope: Scope,
    s: &Settings,
) -> Result<Fitted, Result<String, Error>> {
    let rows = prep.rows(scope);
    if rows.is_empty() {
        return Err(Ok(
            "no observation of its members (no data or no labelled date yet)".into(),
        ));
    }
    let data = prep.kpi_data(&rows).map_err(Err)?;
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
    let trained_kpis =
        train_kpis(&data, &prep.specs, &prep.choice, n, &opts).map_err(|e| match e {
            LearnError::SingleClass { .. } | LearnError::Empty { .. } => Ok(e.to_string()),
            other => Err(Error::Learn(other)),
        })?;
    let trained = &trained_kpis.trained;
    let kpis = prep.pop.catalogue.kpis();
    // The model written per KPI column: for the book's preparation each KPI's value or log
    // value with its share of its group's coefficient.
    let (intercept, terms) = trained_kpis
        .form
        .kpi_terms(&trained.model, kpis.len())
        .map_err(|e| Err(e.into()))?;
    let coefficients = StoredCoefficients {
        intercept,
        l2_penalty: trained.model.lambda,
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
    };
    let kpi_weights: Vec<StoredKpiWeight> = trained
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
        .collect();
    let prior: Vec<f64> = match scope {
        Scope::Profile(p) => prep.pop.profiles[p]
            .config
            .category_weights
            .as_array()
            .to_vec(),
        Scope::Global => vec![1.0; 5],
    };
    let category_weights = prep
        .category_data(&rows)
        .ok()
        .and_then(|cd| suggest_category_weights(&cd, &prior, n, &opts).ok())
        .map(|sug| {
            StoredCategoryWeights::from_weights(
                &sug.weights
                    .kpis
                    .iter()
                    .map(|w| w.weight)
                    .collect::<Vec<_>>(),
            )
        });
    let p = trained_kpis
        .form
        .apply(&data, &prep.specs)
        .and_then(|d| trained.model.predict_proba(d.x.view()))
        .map_err(|e| Err(e.into()))?;
    let training = eval_probabilities(&p, &data.labels, true).map_err(Err)?;
    let w: Vec<f64> = prep.weight_vector(&kpi_weights);
    let health_scores = prep.health_scores(&data, &w).map_err(Err)?;
    let health = eval_health(&health_scores, &data.labels, true).map_err(Err)?;
    let (churn_backtest, health_backtest) = match backtests(prep, &data, 2, s) {
        Ok(b) => b,
        Err(e @ Error::Learn(LearnError::Cancelled)) => return Err(Err(e)),
        Err(e @ (Error::FailedPrecondition(_) | Error::Learn(_))) => (
            StoredBacktest::failed(e.to_string()),
            StoredBacktest::failed(e.to_string()),
        ),
        Err(e) => return Err(Err(e)),
    };
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
        },
        coefficients,
        kpi_weights,
        category_weights,
        observations: data.len(),
        churned,
    })
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
    folds: usize,
    s: &Settings,
) -> Result<Evaluated, Error> {
    let rows = prep.rows(scope);
    let data = prep.kpi_data(&rows)?;
    prep.data = prep.data.subset(&[]);
    let prep = &*prep;
    let churned = data.n_churned();
    if churned == 0 || churned == data.len() {
        return Err(Error::FailedPrecondition(format!(
            "not enough outcomes: {} observations of which {churned} churned; churned and retained observations are both needed",
            data.len()
        )));
    }
    let p = prep.probabilities(&data, coefficients);
    let churn = eval_probabilities(&p, &data.labels, true)?;
    let h = prep.health_scores(&data, &prep.weight_vector(weights))?;
    let health = eval_health(&h, &data.labels, true)?;
    let (churn_backtest, health_backtest) = match backtests(prep, &data, folds, s) {
        Err(Error::Learn(e @ LearnError::InvalidParameter { .. })) => {
            return Err(Error::FailedPrecondition(format!(
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

/// Churn probabilities of accounts (population indices) at date `d` with the coefficients
/// chosen for each.
pub fn predict(
    pop: &Population,
    d: NaiveDate,
    accounts: &[usize],
    coefficients: &[&StoredCoefficients],
) -> Result<Vec<f64>, Error> {
    let snap = pop.snapshot(d, accounts)?;
    let names: HashMap<&str, usize> = pop
        .catalogue
        .kpis()
        .iter()
        .enumerate()
        .map(|(i, k)| (k.name.as_ref(), i))
        .collect();
    accounts
        .iter()
        .zip(coefficients)
        .map(|(i, c)| {
            let r = *snap
                .row_of
                .get(i)
                .ok_or_else(|| Error::Internal("account missing from its snapshot".into()))?;
            let eta = c.intercept
                + c.coefficients
                    .iter()
                    .map(|k| {
                        let v = names
                            .get(k.kpi.as_str())
                            .map(|&col| pop.feature_value(&snap, r, col, k.transform))
                            .filter(|v| v.is_finite())
                            .unwrap_or(k.missing);
                        k.coefficient * v
                    })
                    .sum::<f64>();
            Ok(sigmoid(eta))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::tests::{active_account, at, day};
    use vitals_learn_core::KpiForm;
    use vitals_learn_core::synthetic::SplitMix64;
    use vitals_store::entity::usage_daily;
    use vitals_store::learner::outcome_row;

    /// 150 accounts with a heavy-tailed activity level (logins and posts both follow it),
    /// churning more often the less active they are; usage stops at the churn date.
    pub(super) fn portfolio() -> (History, Vec<OutcomeRecord>) {
        let start = day("2025-01-01");
        let mut rng = SplitMix64::new(5);
        let mut history = History {
            event_types: vec!["login".into(), "post".into()],
            ..History::default()
        };
        let mut outcomes = Vec::new();
        for a in 0..150 {
            let id = format!("acct-{a:03}");
            let level = 1.0 + 1.2 * rng.normal();
            let p_churn = 1.0 / (1.0 + (1.0 + 1.2 * level).exp());
            let churn = (rng.uniform() < p_churn)
                .then(|| start + Days::new(45 + (rng.uniform() * 150.0) as u64));
            history.accounts.push(active_account(&id, start));
            for d in 0..210 {
                let when = start + Days::new(d);
                if churn.is_some_and(|c| when >= c) {
                    break;
                }
                for (kind, share) in [("login", 1.0), ("post", 0.3)] {
                    let n = (share * level.exp() * (0.5 + rng.uniform())).floor() as i64;
                    if n > 0 {
                        history.usage.push(usage_daily::Model {
                            account_id: id.clone(),
                            day: when,
                            event_type: kind.into(),
                            count: n,
                            distinct_users: 1,
                            value_sum: 0.0,
                        });
                    }
                }
            }
            if let Some(c) = churn {
                outcomes.push(outcome_row::Model {
                    account_id: id,
                    kind: "churned".into(),
                    at: at(c),
                    recorded_at: at(c),
                    note: String::new(),
                });
            }
        }
        (history, outcomes)
    }

    fn settings() -> Settings {
        Settings {
            horizon_days: 30,
            interval_days: 14,
            prior_strength: 50.0,
            l2_penalty: None,
            max_dataset_cells: crate::DEFAULT_MAX_DATASET_CELLS,
        }
    }

    /// A model on the book's preparation is stored per KPI (value or log value, with its
    /// share of its group's coefficient) and the stored form gives exactly the fitted
    /// model's probabilities, in `Evaluate` (`probabilities`) and in `PredictChurn`
    /// (`predict`); members of a group carry equal standardised coefficients.
    #[test]
    fn a_book_model_is_stored_per_kpi_and_predicts_as_fitted() {
        let (history, outcomes) = portfolio();
        let s = settings();
        let mut prep =
            prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never()).expect("prepare");
        prep.choice = LayoutChoice::only(KpiForm::book());
        let fitted = fit_scope(&prep, Scope::Global, &s).expect("fit");
        let c = &fitted.coefficients;
        assert!(
            c.coefficients.iter().all(|k| k.group.is_some()
                && matches!(
                    k.transform,
                    FeatureTransform::Value | FeatureTransform::LogValue
                )),
            "{c:?}"
        );
        let mut by_group: HashMap<u32, Vec<f64>> = HashMap::new();
        for k in &c.coefficients {
            by_group
                .entry(k.group.expect("group"))
                .or_default()
                .push(k.standardized);
        }
        assert!(
            by_group.values().any(|v| v.len() > 1),
            "correlated KPIs are grouped: {c:?}"
        );
        for v in by_group.values() {
            assert!(v.iter().all(|x| *x == v[0]), "{v:?}");
        }
        // The stored coefficients reproduce the fitted model's in-sample probabilities.
        let data = prep.kpi_data(&prep.rows(Scope::Global)).expect("data");
        let p = prep.probabilities(&data, c);
        let e = eval_probabilities(&p, &data.labels, false).expect("eval");
        let t = &fitted.metrics.training;
        assert!(
            (e.brier_score - t.brier_score).abs() < 1e-12,
            "{e:?} vs {t:?}"
        );
        assert!((e.log_loss - t.log_loss).abs() < 1e-12);
        assert_eq!(e.auc, t.auc);
        // PredictChurn computes the same from a fresh snapshot.
        let d = *data.dates.iter().max().expect("dates");
        let rows: Vec<usize> = (0..data.len()).filter(|&r| data.dates[r] == d).collect();
        let accounts: Vec<usize> = rows
            .iter()
            .map(|&r| prep.pop.index[&data.accounts[r]])
            .collect();
        let q = predict(&prep.pop, d, &accounts, &vec![c; accounts.len()]).expect("predict");
        for (&r, q) in rows.iter().zip(q) {
            assert!((p[r] - q).abs() < 1e-12, "{} vs {q}", p[r]);
        }
    }

    /// A model stored before the book's preparation (percentile and log-value
    /// coefficients, no `group`) reads and predicts as it states: σ(intercept + Σ
    /// coefficient · feature), the log value's missing value where it is absent.
    #[test]
    fn a_model_stored_before_the_book_preparation_predicts_as_stated() {
        let (history, outcomes) = portfolio();
        let prep = prepare(
            &history,
            &outcomes,
            day("2025-07-25"),
            &settings(),
            &Cancel::never(),
        )
        .expect("prepare");
        let stored: StoredCoefficients = serde_json::from_value(serde_json::json!({
            "intercept": -3.0,
            "l2_penalty": 0.01,
            "coefficients": [
                {"kpi": "all_events", "transform": "percentile", "missing": 0.5,
                 "category": "usage", "coefficient": -1.0, "standardized": -0.3,
                 "declared_direction": "higher", "contradicted": false},
                {"kpi": "all_events", "transform": "log_value", "missing": 2.0,
                 "category": "usage", "coefficient": -0.5, "standardized": -0.4,
                 "declared_direction": "higher", "contradicted": false},
                {"kpi": "active_days", "transform": "log_value", "missing": 1.5,
                 "category": "usage", "coefficient": -0.25, "standardized": -0.2,
                 "declared_direction": "higher", "contradicted": false}
            ]
        }))
        .expect("coefficients as stored before");
        assert!(stored.coefficients.iter().all(|k| k.group.is_none()));
        let data = prep.kpi_data(&prep.rows(Scope::Global)).expect("data");
        let p = prep.probabilities(&data, &stored);
        let col = |name: &str| {
            data.feature_names
                .iter()
                .position(|f| f == name)
                .expect("column")
        };
        let (pct, log, days) = (
            col("all_events"),
            col("all_events:log"),
            col("active_days:log"),
        );
        let or = |v: f64, missing: f64| if v.is_finite() { v } else { missing };
        for (r, p) in p.iter().enumerate() {
            let x = data.x.row(r);
            let eta = -3.0 - or(x[pct], 0.5) - 0.5 * or(x[log], 2.0) - 0.25 * or(x[days], 1.5);
            assert!((p - sigmoid(eta)).abs() < 1e-15, "row {r}");
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::domain::features::tests::day;
    use tonic::Code;

    fn settings(interval_days: u32, max_dataset_cells: u64) -> Settings {
        Settings {
            horizon_days: 30,
            interval_days,
            prior_strength: 50.0,
            l2_penalty: None,
            max_dataset_cells,
        }
    }

    /// A training set over the cell bound is refused before any KPI is computed, with
    /// RESOURCE_EXHAUSTED naming `observation_interval_days` and the limit; a longer
    /// interval under the same bound is built.
    #[test]
    fn a_training_set_over_the_cell_bound_is_refused_naming_the_interval() {
        let (history, outcomes) = tests::portfolio();
        let as_of = day("2025-07-25");
        let ok = prepare(
            &history,
            &outcomes,
            as_of,
            &settings(14, u64::MAX),
            &Cancel::never(),
        )
        .expect("prepare");
        let cells_14 = (ok.data.len() + ok.censored) * ok.data.n_features();
        // Daily observations hold about 14 times as many cells: over a bound that the
        // two-weekly ones fit in.
        let bound = 2 * cells_14 as u64;
        prepare(
            &history,
            &outcomes,
            as_of,
            &settings(14, bound),
            &Cancel::never(),
        )
        .expect("under the bound");
        let err = prepare(
            &history,
            &outcomes,
            as_of,
            &settings(1, bound),
            &Cancel::never(),
        )
        .expect_err("over the bound");
        assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
        let status = tonic::Status::from(ApiError::from(err));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .starts_with("options.observation_interval_days: ")
                && status.message().contains(&bound.to_string())
                && status
                    .message()
                    .contains("VITALS_LEARNER_MAX_DATASET_CELLS"),
            "{}",
            status.message()
        );
    }

    /// Each stage stops at its next cancellation point once the flag is raised: building
    /// the observations (per date), fitting (per profile / fold / lambda), evaluating.
    #[test]
    fn cancelled_work_stops_at_its_next_check() {
        let (history, outcomes) = tests::portfolio();
        let as_of = day("2025-07-25");
        let s = settings(14, u64::MAX);
        let raised = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicUsize::new(0));
        let cancel = {
            let (raised, checks) = (raised.clone(), checks.clone());
            Cancel::new(move || {
                checks.fetch_add(1, Ordering::SeqCst);
                raised.load(Ordering::SeqCst)
            })
        };
        let prep = prepare(&history, &outcomes, as_of, &s, &cancel).expect("prepare");
        assert!(
            checks.load(Ordering::SeqCst) > 5,
            "checked per observation date"
        );
        let fitted = fit_scope(&prep, Scope::Global, &s).expect("fit while not cancelled");
        raised.store(true, Ordering::SeqCst);
        match prepare(&history, &outcomes, as_of, &s, &cancel) {
            Err(Error::Learn(LearnError::Cancelled)) => {}
            other => panic!("prepare went on: {other:?}"),
        }
        match fit_scope(&prep, Scope::Global, &s) {
            Err(Err(Error::Learn(LearnError::Cancelled))) => {}
            other => panic!("fit went on: {other:?}"),
        }
        let mut prep = prep;
        match evaluate(
            &mut prep,
            Scope::Global,
            &fitted.coefficients,
            &fitted.kpi_weights,
            2,
            &s,
        ) {
            Err(Error::Learn(LearnError::Cancelled)) => {}
            other => panic!("evaluate went on: {other:?}"),
        }
    }
}
