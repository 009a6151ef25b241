//! Drift of a serving model: how far the current population moved from the one it was
//! trained on (the PSI of each KPI's value against the training distribution stored with
//! the model), and how well it ranks the observations labelled since its training
//! (docs/learning.md, "Drift").

use std::collections::HashMap;

use chrono::{Days, NaiveDate};
use vitals_learn_core::{
    Cancel, DriftLevel, FeatureTransform, LabelOptions, ObservationPoint, Outcome,
    build_training_set,
};

use super::churn_model::ChurnModel;
use super::features::{Population, Snapshot};
use super::stored::{StoredCoefficients, StoredMetrics};
use crate::error::LearnerError;

/// Fewest churned (and retained) labelled observations for the AUC since training.
pub const MIN_AUC_CLASS: usize = 5;

/// The drift of one KPI.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiDrift {
    /// KPI name.
    pub kpi: String,
    /// Population stability index of the current values against the training ones.
    pub psi: f64,
    /// Its usual reading.
    pub level: DriftLevel,
    /// Training observations of the reference.
    pub training_observations: u32,
    /// Accounts in the current population.
    pub current_accounts: u32,
}

/// A drift report, before the service adds the outcome counts and the retrain decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// The date of the current population (the latest data day).
    pub as_of: NaiveDate,
    /// Per KPI, highest PSI first.
    pub kpis: Vec<KpiDrift>,
    /// Why there is no PSI, when there is none.
    pub unavailable: Option<String>,
    /// The AUC of the model on the observations labelled since its training, or why not.
    pub auc: Result<f64, String>,
    /// Labelled observations dated after the model's last observation date.
    pub labelled: u32,
    /// Churned among them.
    pub churned: u32,
}

impl Drift {
    /// The highest KPI level (stable when there is none).
    pub fn level(&self) -> DriftLevel {
        self.kpis
            .iter()
            .map(|k| k.level)
            .max()
            .unwrap_or(DriftLevel::Stable)
    }

    /// The highest PSI, if any.
    pub fn max_psi(&self) -> Option<f64> {
        self.kpis.iter().map(|k| k.psi).reduce(f64::max)
    }
}

/// The drift of the model (`metrics`, `coefficients`) on the accounts of `in_scope`
/// (population indices pass it) as of the latest data day `as_of`: the current population
/// is every such account active the day after (its KPIs from data up to `as_of`'s day,
/// as a training observation sees the data before its date); the AUC is on observation
/// dates every `interval` days after the model's last one, labelled with the outcomes
/// known up to `as_of`.
pub fn drift(
    pop: &Population,
    by_account: &HashMap<String, Vec<Outcome>>,
    metrics: &StoredMetrics,
    coefficients: &StoredCoefficients,
    in_scope: &dyn Fn(usize) -> bool,
    as_of: NaiveDate,
    cancel: &Cancel,
) -> Result<Drift, LearnerError> {
    let day = next_day(as_of)?;
    let snap = pop.snapshot(day, &[])?;
    let rows: Vec<usize> = (0..snap.rows.len())
        .filter(|&r| in_scope(snap.rows[r]))
        .collect();
    let (kpis, unavailable) = if metrics.drift_reference.is_empty() {
        (
            Vec::new(),
            Some(
                "the model was stored before training distributions were recorded: train a \
                 new version"
                    .to_owned(),
            ),
        )
    } else if rows.is_empty() {
        (
            Vec::new(),
            Some(format!("no active account in scope on {as_of}")),
        )
    } else {
        (psi_per_kpi(pop, &snap, &rows, metrics), None)
    };
    cancel.check()?;
    let (auc, labelled, churned) = auc_since(
        pop,
        by_account,
        metrics,
        coefficients,
        in_scope,
        as_of,
        cancel,
    )?;
    Ok(Drift {
        as_of,
        kpis,
        unavailable,
        auc,
        labelled,
        churned,
    })
}

fn next_day(d: NaiveDate) -> Result<NaiveDate, LearnerError> {
    d.checked_add_days(Days::new(1))
        .ok_or_else(|| LearnerError::Internal(format!("no day after {d}")))
}

/// The PSI of each KPI of the model's reference on the snapshot's `rows`; a KPI no longer
/// in the catalogue counts as missing for every account (as the model then sees it).
fn psi_per_kpi(
    pop: &Population,
    snap: &Snapshot,
    rows: &[usize],
    metrics: &StoredMetrics,
) -> Vec<KpiDrift> {
    let column = pop.kpi_columns();
    let mut out: Vec<KpiDrift> = metrics
        .drift_reference
        .iter()
        .filter_map(|r| {
            let values: Vec<f64> = match column.get(r.kpi.as_str()) {
                Some(&k) => rows
                    .iter()
                    .map(|&row| pop.feature_value(snap, row, k, FeatureTransform::Value))
                    .collect(),
                None => vec![f64::NAN; rows.len()],
            };
            let psi = r.reference.psi(&values)?;
            Some(KpiDrift {
                kpi: r.kpi.clone(),
                psi,
                level: DriftLevel::of(psi),
                training_observations: r.reference.count,
                current_accounts: rows.len() as u32,
            })
        })
        .collect();
    out.sort_by(|a, b| b.psi.total_cmp(&a.psi).then_with(|| a.kpi.cmp(&b.kpi)));
    out
}

/// The model's AUC on the observations dated after its last observation date (every
/// `observation_interval_days` of its settings, up to `as_of`) whose label is known at
/// `as_of` (churned within the horizon, or the horizon over), with (labelled, churned).
/// The observation dates a drift report scores the model on: every
/// `observation_interval_days` after the model's last one, up to `as_of`.
pub fn dates_since(metrics: &StoredMetrics, as_of: NaiveDate) -> Vec<NaiveDate> {
    let step = Days::new(u64::from(metrics.options.observation_interval_days.max(1)));
    let mut dates = Vec::new();
    let mut d = metrics.as_of;
    while let Some(next) = d.checked_add_days(step) {
        if next > as_of {
            break;
        }
        dates.push(next);
        d = next;
    }
    dates
}

/// The dates a drift report computes KPIs on: [`dates_since`] and the day after `as_of`
/// (the current population's snapshot).
pub fn report_dates(
    metrics: &StoredMetrics,
    as_of: NaiveDate,
) -> Result<Vec<NaiveDate>, LearnerError> {
    let mut dates = dates_since(metrics, as_of);
    dates.push(next_day(as_of)?);
    Ok(dates)
}

fn auc_since(
    pop: &Population,
    by_account: &HashMap<String, Vec<Outcome>>,
    metrics: &StoredMetrics,
    coefficients: &StoredCoefficients,
    in_scope: &dyn Fn(usize) -> bool,
    as_of: NaiveDate,
    cancel: &Cancel,
) -> Result<(Result<f64, String>, u32, u32), LearnerError> {
    let dates = dates_since(metrics, as_of);
    if dates.is_empty() {
        return Ok((
            Err(format!(
                "no observation date yet after the model's last one ({}): the data end on {as_of}",
                metrics.as_of
            )),
            0,
            0,
        ));
    }
    let column = pop.kpi_columns();
    let model = ChurnModel::of(coefficients)?;
    // The probability of each (account, date), computed per date's snapshot.
    let mut scored: HashMap<(String, NaiveDate), f64> = HashMap::new();
    let mut points = Vec::new();
    for &d in &dates {
        cancel.check()?;
        let snap = pop.snapshot(d, &[])?;
        let rows: Vec<usize> = (0..snap.rows.len())
            .filter(|&r| in_scope(snap.rows[r]))
            .collect();
        let p = model.at_rows(pop, &snap, &rows, &column)?;
        for (&r, p) in rows.iter().zip(p) {
            let id = pop.accounts[snap.rows[r]].id.clone();
            scored.insert((id.clone(), d), p);
            points.push(ObservationPoint {
                account: id,
                date: d,
                settles: None,
            });
        }
    }
    let label = LabelOptions {
        horizon_days: metrics.options.horizon_days,
        inactive_counts_as_churn: false,
    };
    let set = build_training_set(
        vec!["churn_probability".to_owned()],
        &points,
        by_account,
        as_of,
        &label,
        |account, date| scored.get(&(account.to_owned(), date)).map(|&p| vec![p]),
    )?;
    let data = set.dataset;
    let churned = data.n_churned();
    let labelled = data.len();
    let retained = labelled - churned;
    if churned < MIN_AUC_CLASS || retained < MIN_AUC_CLASS {
        return Ok((
            Err(format!(
                "{labelled} observations labelled since the model's last observation date \
                 ({churned} churned): at least {MIN_AUC_CLASS} churned and {MIN_AUC_CLASS} \
                 retained are needed"
            )),
            labelled as u32,
            churned as u32,
        ));
    }
    let scores: Vec<f64> = data.x.column(0).to_vec();
    let auc = vitals_learn_core::auc(&scores, &data.labels)?;
    Ok((Ok(auc), labelled as u32, churned as u32))
}
