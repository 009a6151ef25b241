//! The labelled training set (observation dates, features, labels) and the
//! memory bound checked before it is built.

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, NaiveDate};
use vitals_learn_core::{
    Cancel, Dataset, FittedForm, KpiSpec, LabelOptions, LayoutChoice, LogisticModel,
    ObservationPoint, Outcome, OutcomeKind, build_training_set, kpi_weights,
};
use vitals_scoring_core::{Catalogue, Category, CategoryWeights, KpiConfig};
use vitals_store::learner::{History, HistoryFacts, OutcomeRecord};

use super::churn_model::ChurnModel;
use super::features::{self, Account, Population, Snapshots};
use super::stored::{StoredCoefficients, StoredKpiWeight, Window, WindowEnd};
use super::{Scope, Settings, outcomes_by_account};
use crate::error::LearnerError;

pub(super) const CATEGORY_COLUMNS: [&str; 5] = [
    "__category_usage",
    "__category_conversations",
    "__category_pulse",
    "__category_contract",
    "__category_custom_metrics",
];
pub(super) const HEALTH_COLUMN: &str = "__health_score";

/// A labelled training set over the whole portfolio, with what is needed to rescore it.
#[derive(Debug)]
pub struct Prepared {
    /// The accounts and their inputs.
    pub pop: Population,
    /// The KPIs at every observation date, for rescoring the health score.
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
    /// The observation dates (oldest first).
    pub dates: Vec<NaiveDate>,
    /// Observations left out because their label is not known yet.
    pub censored: usize,
    /// Checked at every observation date, fold, profile and `lambda`: once it says stop,
    /// the work returns `LearnError::Cancelled`.
    pub cancel: Cancel,
}

/// Builds the training set as of `as_of`: each account observed a few days before each of
/// its renewals, or every `interval_days` when it has no billing schedule (see
/// [`observations`]), features from data strictly before the date, label = churned within
/// the horizon; outcomes after `as_of` are ignored.
///
/// Refused with [`LearnerError::TooLarge`] before any KPI is computed when the observations (the
/// accounts active at each date) times the feature columns exceed
/// [`Settings::max_dataset_cells`]; stops with `LearnError::Cancelled` at the first
/// observation date after `cancel` says so.
pub fn prepare(
    history: &History,
    outcomes: &[OutcomeRecord],
    as_of: NaiveDate,
    s: &Settings,
    cancel: &Cancel,
) -> Result<Prepared, LearnerError> {
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
) -> Result<Prepared, LearnerError> {
    cancel.check()?;
    let Observations { dates, points } = observations(&pop, as_of, s);
    let choice = LayoutChoice::default();
    let layout = choice.data.clone();
    let specs = pop.kpi_specs();
    let (names, n_kpi_columns) = feature_names(&specs);
    check_size(points.len() as u64, &dates, names.len(), as_of, s)?;
    let mut snapshots = BTreeMap::new();
    for &d in &dates {
        cancel.check()?;
        snapshots.insert(d, pop.snapshot(d, &[])?);
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
    // The scores were for the feature rows: only what rescoring needs stays.
    let snapshots: Snapshots = snapshots
        .into_iter()
        .map(|(d, snap)| (d, snap.into()))
        .collect();
    Ok(Prepared {
        pop,
        snapshots,
        data: set.dataset,
        n_kpi_columns,
        choice,
        specs,
        as_of,
        dates,
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
) -> Result<u64, LearnerError> {
    let dates = match facts.data_start {
        Some(start) => features::observation_dates(
            start,
            KpiConfig::default().window_days,
            as_of,
            s.interval_days,
        ),
        None => Vec::new(),
    };
    check_facts_on(facts, outcomes, &dates, as_of, s)
}

/// [`check_facts`] on given observation `dates` (e.g. the drift report's: the model's
/// dates since its training and the latest data day).
pub fn check_facts_on(
    facts: &HistoryFacts,
    outcomes: &[OutcomeRecord],
    dates: &[NaiveDate],
    as_of: NaiveDate,
    s: &Settings,
) -> Result<u64, LearnerError> {
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
    let catalogue = Catalogue::new(&spec).map_err(|e| LearnerError::Internal(e.to_string()))?;
    let columns = feature_names(&features::kpi_specs(&catalogue)).0.len();
    // The accounts active at each date: the observations of accounts without a billing
    // schedule, and about as many as those of monthly renewals.
    let observations: u64 = dates
        .iter()
        .map(|&d| accounts.iter().filter(|a| a.active_at(d)).count() as u64)
        .sum();
    check_size(observations, dates, columns, as_of, s)
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

/// Refuses a training set over [`Settings::max_dataset_cells`]: `observations` (an upper
/// bound: censored ones are dropped later) times `columns`, counted before any KPI is
/// computed. Returns the counted cells.
fn check_size(
    observations: u64,
    dates: &[NaiveDate],
    columns: usize,
    as_of: NaiveDate,
    s: &Settings,
) -> Result<u64, LearnerError> {
    let cells = observations.saturating_mul(columns as u64);
    if cells <= s.max_dataset_cells {
        return Ok(cells);
    }
    let first = dates.first().copied().unwrap_or(as_of);
    Err(LearnerError::TooLarge(format!(
        "options.observation_interval_days: {} observation dates from {first} to as_of \
         {as_of} (every {} days, and before each renewal) give {observations} \
         observations x {columns} features = {cells} cells, over the limit of {} \
         (VITALS_LEARNER_MAX_DATASET_CELLS); use a longer observation_interval_days or an \
         earlier as_of",
        dates.len(),
        s.interval_days,
        s.max_dataset_cells
    )))
}

/// Where the training set observes the accounts.
struct Observations {
    /// The observation dates, oldest first (a snapshot is computed at each).
    dates: Vec<NaiveDate>,
    /// The (account, date) points, each at one of `dates`.
    points: Vec<ObservationPoint>,
}

/// Days before a renewal an account with a billing schedule is observed, at least (the
/// grid adds up to [`RENEWAL_GRID_DAYS`] - 1 more): the run-up to the renewal decision,
/// as the book observes each account five days before each renewal.
pub const RENEWAL_LEAD_DAYS: u64 = 3;

/// Step of the date grid on which the renewal observations are placed: a snapshot (every
/// account's KPIs and peer percentiles) is computed at each grid date used.
pub const RENEWAL_GRID_DAYS: u32 = 7;

/// The observation points as of `as_of`.
///
/// An account with a billing schedule (subscriptions with an end, or open-ended ones with
/// a billing period) is observed once before each renewal: at the last date of a weekly
/// grid ending at `as_of` that is at least [`RENEWAL_LEAD_DAYS`] before the renewal (and
/// less than a grid step more), while it is a customer and the subscription that renews
/// is on file, and no more often than every `interval_days` less a grid step (so a longer
/// interval thins them too). Its label settles at the renewal when the store shows what
/// happened there
/// (a next subscription, an open-ended one running on, or a churn); a renewal with
/// neither a next subscription nor a churn recorded leaves the label unknown (censored).
/// An account without a schedule (or every account, when `horizon_days` is too short to
/// reach the renewal) is observed every `interval_days`, on dates ending at `as_of`, while
/// it is a customer.
fn observations(pop: &Population, as_of: NaiveDate, s: &Settings) -> Observations {
    let Some(start) = pop.data_start else {
        return Observations {
            dates: Vec::new(),
            points: Vec::new(),
        };
    };
    let step = RENEWAL_GRID_DAYS.min(s.interval_days).max(1);
    let grid = features::observation_dates(start, pop.window_days(), as_of, step);
    let every = features::observation_dates(start, pop.window_days(), as_of, s.interval_days);
    let mut points = Vec::new();
    for (i, a) in pop.accounts.iter().enumerate() {
        let point = |date, settles| ObservationPoint {
            account: a.id.clone(),
            date,
            settles,
        };
        // The renewal must fall inside the label's horizon.
        let renewals = if u64::from(s.horizon_days) >= RENEWAL_LEAD_DAYS + u64::from(step) {
            pop.renewals(i, as_of)
        } else {
            Vec::new()
        };
        if renewals.is_empty() {
            points.extend(
                every
                    .iter()
                    .filter(|&&d| a.active_at(d))
                    .map(|&d| point(d, None)),
            );
            continue;
        }
        let mut last = None;
        for r in renewals {
            let Some(target) = r.at.checked_sub_days(Days::new(RENEWAL_LEAD_DAYS)) else {
                continue;
            };
            let k = grid.partition_point(|&d| d <= target);
            let Some(&g) = k.checked_sub(1).and_then(|k| grid.get(k)) else {
                continue;
            };
            // No more often than every `interval_days` (less a grid step: monthly
            // renewals are 28-31 days apart and the grid moves each by up to 6 days).
            let too_soon = last.is_some_and(|l: NaiveDate| {
                l == g || (g - l).num_days() < i64::from(s.interval_days.saturating_sub(step))
            });
            if (target - g).num_days() >= i64::from(step)
                || g <= r.period_start
                || too_soon
                || !a.active_at(g)
            {
                continue;
            }
            last = Some(g);
            // Unknown: settled "never" (censored unless a churn is recorded).
            points.push(point(
                g,
                Some(if r.renewed_on_file {
                    r.at
                } else {
                    NaiveDate::MAX
                }),
            ));
        }
    }
    let mut dates: Vec<NaiveDate> = points.iter().map(|p| p.date).collect();
    dates.sort_unstable();
    dates.dedup();
    Observations { dates, points }
}

impl Prepared {
    /// The observation window of the training set, its end from `end_source`.
    pub fn window(&self, end_source: WindowEnd) -> Window {
        Window {
            start: self.dates.first().copied(),
            end: self.as_of,
            end_source,
            dates: self.dates.len() as u32,
            observations: self.data.len() as u32,
            censored: self.censored as u32,
        }
    }

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

    pub(super) fn kpi_names(&self) -> Vec<&str> {
        self.data.feature_names[..self.n_kpi_columns]
            .iter()
            .map(String::as_str)
            .collect()
    }

    /// The KPI-feature dataset of some rows (all of them: one copy, not two).
    pub fn kpi_data(&self, rows: &[usize]) -> Result<Dataset, LearnerError> {
        if rows.len() == self.data.len() && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(self.data.select_features(&self.kpi_names())?);
        }
        Ok(self.data.subset(rows).select_features(&self.kpi_names())?)
    }

    pub(super) fn category_data(&self, rows: &[usize]) -> Result<Dataset, LearnerError> {
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
    pub(super) fn weights_of(
        &self,
        form: &FittedForm,
        model: &LogisticModel,
        churn_outcomes: usize,
        n0: f64,
    ) -> Result<vitals_learn_core::WeightReport, LearnerError> {
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
    /// `weights` (catalogue order) applied, and the suggested `categories` as each
    /// profile's weights mode takes them (see [`Population::rescore`]).
    pub(super) fn health_scores(
        &self,
        data: &Dataset,
        weights: &[f64],
        categories: Option<&CategoryWeights>,
    ) -> Result<Vec<f64>, LearnerError> {
        let mut out = vec![5.0; data.len()];
        let mut by_date: HashMap<NaiveDate, Vec<usize>> = HashMap::new();
        for (r, d) in data.dates.iter().enumerate() {
            by_date.entry(*d).or_default().push(r);
        }
        for (d, rows) in by_date {
            let snap = self
                .snapshots
                .get(&d)
                .ok_or_else(|| LearnerError::Internal(format!("no snapshot at {d}")))?;
            let scores = self.pop.rescore(snap, weights, categories)?;
            for r in rows {
                let i = self.pop.index.get(&data.accounts[r]).copied();
                if let Some(row) = i.and_then(|i| snap.row_of.get(&i)) {
                    out[r] = scores[*row];
                }
            }
        }
        Ok(out)
    }

    /// Churn probabilities of observations `data` with a stored model: its booster when
    /// one serves, else its coefficients (a column the data lack, e.g. a KPI no longer in
    /// the catalogue, is missing).
    pub(super) fn probabilities(
        &self,
        data: &Dataset,
        c: &StoredCoefficients,
    ) -> Result<Vec<f64>, LearnerError> {
        ChurnModel::of(c)?.on_data(data)
    }
}
