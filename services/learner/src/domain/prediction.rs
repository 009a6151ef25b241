//! Churn probabilities from a stored model.

use chrono::NaiveDate;

use super::evaluation::sigmoid;
use super::features::Population;
use super::stored::StoredCoefficients;
use crate::error::LearnerError;

/// Churn probabilities of accounts (population indices) at date `d` with the coefficients
/// chosen for each.
pub fn predict(
    pop: &Population,
    d: NaiveDate,
    accounts: &[usize],
    coefficients: &[&StoredCoefficients],
) -> Result<Vec<f64>, LearnerError> {
    let snap = pop.snapshot(d, accounts)?;
    let names = pop.kpi_columns();
    accounts
        .iter()
        .zip(coefficients)
        .map(|(i, c)| {
            let r = *snap.row_of.get(i).ok_or_else(|| {
                LearnerError::Internal("account missing from its snapshot".into())
            })?;
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
