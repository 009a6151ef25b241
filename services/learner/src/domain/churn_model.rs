//! The model that serves a stored version's churn probability: its logistic coefficients,
//! or its gradient-boosted challenger when the time-ordered CV chose it at training time
//! (docs/learning.md, "The challenger in the learner"). Evaluate, PredictChurn and the
//! drift report's AUC all score through it.

use std::collections::HashMap;

use ndarray::{Array2, Axis};
use vitals_learn_core::{Dataset, GbmModel};

use super::evaluation::sigmoid;
use super::features::{Population, Snapshot, learn_direction};
use super::stored::StoredCoefficients;
use crate::error::LearnerError;

/// The serving churn model of a stored version.
pub enum ChurnModel<'a> {
    /// The logistic regression of the stored coefficients.
    Logistic(&'a StoredCoefficients),
    /// The calibrated booster stored with them.
    Gbm(Box<GbmModel>),
}

impl<'a> ChurnModel<'a> {
    /// The model serving `c`'s churn probability (the booster when one is stored).
    pub fn of(c: &'a StoredCoefficients) -> Result<Self, LearnerError> {
        Ok(match c.booster()? {
            Some(b) => Self::Gbm(Box::new(b)),
            None => Self::Logistic(c),
        })
    }

    /// Churn probabilities of the observations of `data` (columns by name: a coefficient
    /// or booster column the data lack, e.g. a KPI no longer in the catalogue, is missing:
    /// the coefficient's missing value, NaN for the booster).
    pub fn on_data(&self, data: &Dataset) -> Result<Vec<f64>, LearnerError> {
        let position = |name: &str| data.feature_names.iter().position(|f| f == name);
        match self {
            Self::Logistic(c) => {
                let cols: Vec<Option<usize>> = c
                    .coefficients
                    .iter()
                    .map(|k| position(&k.column()))
                    .collect();
                Ok(data
                    .x
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
                    .collect())
            }
            Self::Gbm(b) => {
                let cols: Vec<Option<usize>> =
                    b.feature_names.iter().map(|n| position(n)).collect();
                let x = Array2::from_shape_fn((data.len(), cols.len()), |(r, j)| {
                    cols[j].map_or(f64::NAN, |c| data.x[[r, c]])
                });
                Ok(b.predict_proba(x.view())?)
            }
        }
    }

    /// Churn probabilities of snapshot rows `rows` (`column`: each KPI's column in the
    /// snapshot, [`Population::kpi_columns`]).
    pub fn at_rows(
        &self,
        pop: &Population,
        snap: &Snapshot,
        rows: &[usize],
        column: &HashMap<&str, usize>,
    ) -> Result<Vec<f64>, LearnerError> {
        match self {
            Self::Logistic(c) => Ok(rows
                .iter()
                .map(|&r| {
                    let eta = c.intercept
                        + c.coefficients
                            .iter()
                            .map(|k| {
                                let v = column
                                    .get(k.kpi.as_str())
                                    .map(|&col| pop.feature_value(snap, r, col, k.transform))
                                    .filter(|v| v.is_finite())
                                    .unwrap_or(k.missing);
                                k.coefficient * v
                            })
                            .sum::<f64>();
                    sigmoid(eta)
                })
                .collect()),
            Self::Gbm(b) => {
                let kpis = pop.catalogue.kpis();
                let x: Vec<Vec<f64>> = rows
                    .iter()
                    .map(|&r| {
                        b.row(|kpi| {
                            column.get(kpi).map(|&k| {
                                (
                                    snap.scores.percentile(r, k),
                                    snap.batch.matrix.get(r, k),
                                    learn_direction(kpis[k].direction),
                                )
                            })
                        })
                    })
                    .collect();
                Ok(b.predict_rows(&x)?)
            }
        }
    }
}
