//! Observations (features, label, date, account) and the leakage-safe training-set builder.

use std::collections::HashMap;

use chrono::{Days, NaiveDate};
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result, check_len};

/// A table of observations: one row per (account, observation date), its features as of
/// that date and whether the account churned within the horizon after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Feature matrix, rows = observations; NaN marks a missing value.
    pub x: Array2<f64>,
    /// Label of each row: true = churned within the horizon.
    pub labels: Vec<bool>,
    /// Observation date of each row (used for time-ordered splits).
    pub dates: Vec<NaiveDate>,
    /// Account id of each row.
    pub accounts: Vec<String>,
}

impl Dataset {
    /// Builds a dataset after checking that every per-row input has `x.nrows()` entries and
    /// that there is one name per column. Infinite features are rejected (NaN = missing is
    /// allowed).
    pub fn new(
        feature_names: Vec<String>,
        x: Array2<f64>,
        labels: Vec<bool>,
        dates: Vec<NaiveDate>,
        accounts: Vec<String>,
    ) -> Result<Self> {
        check_len("feature names", x.ncols(), feature_names.len())?;
        check_len("labels", x.nrows(), labels.len())?;
        check_len("dates", x.nrows(), dates.len())?;
        check_len("accounts", x.nrows(), accounts.len())?;
        if let Some(index) = x.iter().position(|v| v.is_infinite()) {
            return Err(LearnError::NonFinite {
                what: "features",
                index,
            });
        }
        Ok(Self {
            feature_names,
            x,
            labels,
            dates,
            accounts,
        })
    }

    /// Number of observations (rows).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no observation.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of features (columns).
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Number of churned observations.
    pub fn n_churned(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            feature_names: self.feature_names.clone(),
            x: self.x.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            dates: indices.iter().map(|&i| self.dates[i]).collect(),
            accounts: indices.iter().map(|&i| self.accounts[i].clone()).collect(),
        }
    }

    /// Row indices sorted by observation date (stable: equal dates keep their order).
    pub fn time_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.dates[i]);
        order
    }

    /// A copy with only the named columns, in the given order (e.g. to fit on a subset of
    /// KPIs). Errors on an unknown name.
    pub fn select_features(&self, names: &[&str]) -> Result<Self> {
        let cols = names
            .iter()
            .map(|name| {
                self.feature_names
                    .iter()
                    .position(|f| f == name)
                    .ok_or_else(|| LearnError::InvalidParameter {
                        name: "feature name",
                        reason: format!("unknown feature {name}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            feature_names: names.iter().map(|s| (*s).to_owned()).collect(),
            x: self.x.select(Axis(1), &cols),
            labels: self.labels.clone(),
            dates: self.dates.clone(),
            accounts: self.accounts.clone(),
        })
    }
}

/// What happened to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutcomeKind {
    /// The customer left (contract ended without renewal).
    Churned,
    /// The customer renewed.
    Renewed,
    /// The customer stopped using the product for long (counts as churn only when
    /// [`LabelOptions::inactive_counts_as_churn`] is set).
    Inactive,
}

/// A recorded outcome of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// When it happened (for a churn: the day the contract ended).
    pub at: NaiveDate,
}

/// How labels are derived from outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOptions {
    /// An observation is labelled churned when a churn outcome falls in
    /// `(date, date + horizon_days]`. Default 60.
    pub horizon_days: u32,
    /// Whether a long-inactive outcome counts as a churn. Default false: only recorded
    /// churns are learned from, inactivity is a softer signal the CSM may reverse.
    pub inactive_counts_as_churn: bool,
}

impl Default for LabelOptions {
    fn default() -> Self {
        Self {
            horizon_days: 60,
            inactive_counts_as_churn: false,
        }
    }
}

/// One (account, date) at which to observe the account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObservationPoint {
    /// Account id.
    pub account: String,
    /// Observation date: features use only data before this date.
    pub date: NaiveDate,
    /// The day by which the label is settled, when not at the horizon's end: e.g. an
    /// observation made a few days before a renewal is settled once the renewal date has
    /// passed and the store shows the account renewed; `NaiveDate::MAX` when it can never
    /// be told (nothing on file after the renewal). A churn seen within the horizon
    /// settles it in any case. `None`: `date + horizon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settles: Option<NaiveDate>,
}

/// The built training set and how many candidate observations were left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingSet {
    /// The labelled observations.
    pub dataset: Dataset,
    /// Left out because the horizon reaches past `outcomes_known_until` without a churn:
    /// the label is not known yet (counting them as retained would bias the model).
    pub censored: usize,
    /// Left out because the account had already churned at the observation date.
    pub already_churned: usize,
    /// Left out because the feature function returned `None` (no data for the account).
    pub without_features: usize,
}

/// Observation dates every `step_days` from `first` to `last` (inclusive) for each
/// account, restricted to the account's active period `[start, end)` (`end` = churn date,
/// `None` while active). This gives the "observe every 4 weeks" scheme (`step_days = 28`).
pub fn regular_observations(
    accounts: &[(String, NaiveDate, Option<NaiveDate>)],
    first: NaiveDate,
    last: NaiveDate,
    step_days: u32,
) -> Result<Vec<ObservationPoint>> {
    if step_days == 0 {
        return Err(LearnError::InvalidParameter {
            name: "step_days",
            reason: "must be at least 1".to_owned(),
        });
    }
    let mut dates = Vec::new();
    let mut d = first;
    while d <= last {
        dates.push(d);
        match d.checked_add_days(Days::new(u64::from(step_days))) {
            Some(next) => d = next,
            None => break,
        }
    }
    let mut points = Vec::new();
    for (account, start, end) in accounts {
        for &date in &dates {
            if date >= *start && end.is_none_or(|e| date < e) {
                points.push(ObservationPoint {
                    account: account.clone(),
                    date,
                    settles: None,
                });
            }
        }
    }
    Ok(points)
}

/// Builds a labelled training set without leakage.
///
/// For each observation point the features come from `features(account, date)`, which
/// must compute them from data strictly before `date` (use [`DatedSeries::before`] to make
/// that impossible to get wrong). The builder itself never passes anything later than the
/// observation date to it; only the label looks ahead, by design:
/// label = a churn outcome in `(date, date + horizon]`.
///
/// Left out (and counted in the result): observations whose account had already churned
/// at the date (last outcome at or before the date is a churn), observations settled
/// (see [`ObservationPoint::settles`]; else at the horizon's end) after
/// `outcomes_known_until` with no churn seen (unknown label), and
/// those for which `features` returns `None`. The feature function runs in parallel.
///
/// Errors when a feature vector's length differs from `feature_names`.
pub fn build_training_set<F>(
    feature_names: Vec<String>,
    points: &[ObservationPoint],
    outcomes: &HashMap<String, Vec<Outcome>>,
    outcomes_known_until: NaiveDate,
    options: &LabelOptions,
    features: F,
) -> Result<TrainingSet>
where
    F: Fn(&str, NaiveDate) -> Option<Vec<f64>> + Sync,
{
    let is_churn = |k: OutcomeKind| {
        k == OutcomeKind::Churned
            || (options.inactive_counts_as_churn && k == OutcomeKind::Inactive)
    };
    let horizon = Days::new(u64::from(options.horizon_days));
    let no_outcomes: Vec<Outcome> = Vec::new();

    enum Fate {
        Keep(bool),
        Censored,
        AlreadyChurned,
    }
    let fates: Vec<Fate> = points
        .iter()
        .map(|pt| {
            let outs = outcomes.get(&pt.account).unwrap_or(&no_outcomes);
            let last_before = outs.iter().filter(|o| o.at <= pt.date).max_by_key(|o| o.at);
            if last_before.is_some_and(|o| is_churn(o.kind)) {
                return Fate::AlreadyChurned;
            }
            let end = pt.date.checked_add_days(horizon).unwrap_or(NaiveDate::MAX);
            let churned = outs
                .iter()
                .any(|o| is_churn(o.kind) && o.at > pt.date && o.at <= end);
            let settles = pt.settles.unwrap_or(end);
            if !churned && settles > outcomes_known_until {
                Fate::Censored
            } else {
                Fate::Keep(churned)
            }
        })
        .collect();

    let rows: Vec<Option<Result<Vec<f64>>>> = points
        .par_iter()
        .zip(fates.par_iter())
        .map(|(pt, fate)| match fate {
            Fate::Keep(_) => features(&pt.account, pt.date)
                .map(|v| check_len("feature vector", feature_names.len(), v.len()).map(|()| v)),
            _ => None,
        })
        .collect();

    let (mut censored, mut already_churned, mut without_features) = (0, 0, 0);
    let mut flat = Vec::new();
    let (mut labels, mut dates, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for ((pt, fate), row) in points.iter().zip(&fates).zip(rows) {
        match (fate, row) {
            (Fate::Censored, _) => censored += 1,
            (Fate::AlreadyChurned, _) => already_churned += 1,
            (Fate::Keep(_), None) => without_features += 1,
            (Fate::Keep(label), Some(row)) => {
                flat.extend(row?);
                labels.push(*label);
                dates.push(pt.date);
                accounts.push(pt.account.clone());
            }
        }
    }
    let x = Array2::from_shape_vec((labels.len(), feature_names.len()), flat).map_err(|e| {
        LearnError::InvalidParameter {
            name: "feature vector",
            reason: e.to_string(),
        }
    })?;
    Ok(TrainingSet {
        dataset: Dataset::new(feature_names, x, labels, dates, accounts)?,
        censored,
        already_churned,
        without_features,
    })
}

/// A per-account history of dated records (daily roll-ups, interactions, ...) that only
/// hands out what happened before a date, so feature code written on top of it cannot
/// look into the future.
#[derive(Debug, Clone, PartialEq)]
pub struct DatedSeries<T> {
    records: Vec<(NaiveDate, T)>,
}

impl<T> DatedSeries<T> {
    /// Wraps records (any order); they are sorted by date, stable.
    pub fn new(mut records: Vec<(NaiveDate, T)>) -> Self {
        records.sort_by_key(|(d, _)| *d);
        Self { records }
    }

    /// The records dated strictly before `date`, oldest first.
    pub fn before(&self, date: NaiveDate) -> &[(NaiveDate, T)] {
        let end = self.records.partition_point(|(d, _)| *d < date);
        &self.records[..end]
    }

    /// The records in the `days` days before `date`: `[date - days, date)`.
    pub fn window(&self, date: NaiveDate, days: u32) -> &[(NaiveDate, T)] {
        let before = self.before(date);
        let start_date = date
            .checked_sub_days(Days::new(u64::from(days)))
            .unwrap_or(NaiveDate::MIN);
        let start = before.partition_point(|(d, _)| *d < start_date);
        &before[start..]
    }
}
