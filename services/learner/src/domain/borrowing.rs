//! Profile models that borrow strength from the global model (issue 21;
//! `vitals_learn_core::borrow`): the global model is fitted first, on every account, and
//! each profile's model is fitted as the global model plus a deviation shrunk by the
//! profile's data. In a backtest the global model a profile borrows from is fitted on the
//! observations before the fold's cut only, like the profile's own part, so nothing of the
//! tested period leaks in through it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::NaiveDate;
use vitals_learn_core::{Dataset, GlobalModel, fit_kpis_cv};

use super::{Prepared, Scope, Settings};
use crate::error::LearnerError;

/// The global model of one training or evaluation run and its refits per backtest cut,
/// each fitted once (the procedure of [`vitals_learn_core::fit_kpis_cv`]: form, lambda and
/// class weighting by CV, calibrated) and shared by every profile.
#[derive(Debug)]
pub struct Borrowing {
    /// Every observation of the run, KPI columns only.
    pub(super) data: Dataset,
    // Shared by backtest folds run in parallel: each is fitted outside the lock (two folds
    // asking for the same model at once may both fit it; the fits are equal).
    full: Mutex<Option<GlobalModel>>,
    before: Mutex<HashMap<NaiveDate, GlobalModel>>,
}

impl Borrowing {
    /// The global training set of `prep` (a copy of its KPI columns).
    pub fn new(prep: &Prepared) -> Result<Self, LearnerError> {
        Ok(Self {
            data: prep.kpi_data(&prep.rows(Scope::Global))?,
            full: Mutex::new(None),
            before: Mutex::new(HashMap::new()),
        })
    }

    /// The global model on every observation (fitted on first use unless the global
    /// scope's own training gave it).
    pub fn full(&self, prep: &Prepared, s: &Settings) -> Result<GlobalModel, LearnerError> {
        if let Some(g) = lock(&self.full).as_ref() {
            return Ok(g.clone());
        }
        let g = self.fit(&self.data, prep, s)?;
        *lock(&self.full) = Some(g.clone());
        Ok(g)
    }

    /// The global model on the observations dated before `cut` (a backtest fold's
    /// training part).
    pub fn before(
        &self,
        cut: NaiveDate,
        prep: &Prepared,
        s: &Settings,
    ) -> Result<GlobalModel, LearnerError> {
        if let Some(g) = lock(&self.before).get(&cut) {
            return Ok(g.clone());
        }
        let rows: Vec<usize> = (0..self.data.len())
            .filter(|&r| self.data.dates[r] < cut)
            .collect();
        let g = self.fit(&self.data.subset(&rows), prep, s)?;
        lock(&self.before).insert(cut, g.clone());
        Ok(g)
    }

    /// Keeps the global model the global scope's training fitted on every observation.
    pub(super) fn remember_full(&self, g: GlobalModel) {
        *lock(&self.full) = Some(g);
    }

    /// Keeps the global model the global scope's backtest fitted before `cut`.
    pub(super) fn remember_before(&self, cut: NaiveDate, g: GlobalModel) {
        lock(&self.before).insert(cut, g);
    }

    fn fit(
        &self,
        data: &Dataset,
        prep: &Prepared,
        s: &Settings,
    ) -> Result<GlobalModel, LearnerError> {
        let opts = s.train_options(&prep.cancel);
        Ok(fit_kpis_cv(data, &prep.specs, &prep.choice, &opts)?.into())
    }
}

/// The value behind `m`, also after a panic in another holder (a cache of fitted models:
/// a half-done fit never reaches it).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
