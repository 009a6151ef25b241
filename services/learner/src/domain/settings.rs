//! Training settings and the scope of a model.

use vitals_learn_core::{Cancel, TrainOptions};

use super::stored::StoredOptions;

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
    /// Whether a profile's model borrows from the global model (the global model plus a
    /// deviation shrunk by the profile's data) rather than being fitted alone
    /// (`--learner-profile-borrowing`).
    pub borrow_from_global: bool,
    /// Whether training also fits the gradient-boosted challenger and lets the
    /// time-ordered CV decide which model serves the churn probability
    /// (`--learner-challenger`, `options.challenger`).
    pub challenger: bool,
}

impl Settings {
    pub(super) fn train_options(&self, cancel: &Cancel) -> TrainOptions {
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
            challenger: self.challenger,
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
