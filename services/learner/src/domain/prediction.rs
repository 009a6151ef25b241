//! Churn probabilities from a stored model.

use chrono::NaiveDate;

use super::churn_model::ChurnModel;
use super::features::Population;
use crate::error::LearnerError;

/// Churn probabilities of accounts (population indices) at date `d`, account `i` with
/// `models[model_of[i]]` (its coefficients, or its booster when that serves).
pub fn predict(
    pop: &Population,
    d: NaiveDate,
    accounts: &[usize],
    models: &[ChurnModel<'_>],
    model_of: &[usize],
) -> Result<Vec<f64>, LearnerError> {
    let snap = pop.snapshot(d, accounts)?;
    let names = pop.kpi_columns();
    accounts
        .iter()
        .zip(model_of)
        .map(|(i, &m)| {
            let r = *snap.row_of.get(i).ok_or_else(|| {
                LearnerError::Internal("account missing from its snapshot".into())
            })?;
            let model = models
                .get(m)
                .ok_or_else(|| LearnerError::Internal("no model for an account".into()))?;
            Ok(model.at_rows(pop, &snap, &[r], &names)?[0])
        })
        .collect()
}
