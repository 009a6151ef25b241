//! KPI weights from a fitted model's coefficients, shrunk toward the prior.
//!
//! For KPI `k` with standardised coefficient `beta_k` (positive = more churn risk) and
//! declared direction `s_k` (+1 higher is better, -1 higher is worse), the healthy effect
//! is `e_k = -s_k beta_k`: positive when the KPI moves churn risk the way it is declared
//! to. Then, per category `c`:
//!
//! ```text
//! learned_k = max(0, e_k) / sum_{j in c} max(0, e_j)
//! prior_k   = p_k / sum_{j in c} p_j
//! w_k       = n / (n + n0) * learned_k + n0 / (n + n0) * prior_k
//! ```
//!
//! `n` is the number of churn outcomes seen and `n0` the prior's strength (default 50):
//! with little history the prior dominates, with a lot the data do. A KPI with `e_k < 0`
//! contradicts its declared direction: its learned weight is 0 and it is reported. A
//! category where no KPI has a positive effect keeps its prior (learned = prior) and is
//! reported too. Weights sum to 1 in every category.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result, check_finite, check_len};

/// Default strength of the prior, in churn outcomes.
pub const DEFAULT_N0: f64 = 50.0;

/// Which way a KPI is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// More is healthier (e.g. active users).
    HigherIsBetter,
    /// More is less healthy (e.g. days since last activity).
    HigherIsWorse,
}

impl Direction {
    /// +1 for higher-is-better, -1 for higher-is-worse.
    pub fn sign(self) -> f64 {
        match self {
            Direction::HigherIsBetter => 1.0,
            Direction::HigherIsWorse => -1.0,
        }
    }
}

/// A KPI as the learner sees it: its feature column, category, direction and prior weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiSpec {
    /// KPI name (matches the feature name).
    pub name: String,
    /// Category the KPI belongs to (usage, conversations, pulse, contract, custom, ...).
    pub category: String,
    /// Declared healthy direction of the raw feature.
    pub direction: Direction,
    /// Prior (configured) weight, relative within the category; uniform = all 1.
    pub prior_weight: f64,
}

/// The learned, prior and final weight of one KPI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiWeight {
    /// KPI name.
    pub name: String,
    /// Its category.
    pub category: String,
    /// The model's standardised coefficient (positive = more churn risk).
    pub coefficient: f64,
    /// Healthy effect `-sign(direction) * coefficient`.
    pub healthy_effect: f64,
    /// Weight learned from data, normalised within the category.
    pub learned: f64,
    /// Prior weight, normalised within the category.
    pub prior: f64,
    /// Final weight after shrinkage toward the prior; what scoring should use.
    pub weight: f64,
    /// True when the learned effect goes against the declared direction.
    pub contradicts_direction: bool,
}

/// KPI weights for a profile, with what the learner wants to flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightReport {
    /// One entry per KPI, in input order.
    pub kpis: Vec<KpiWeight>,
    /// KPIs whose learned effect contradicts their declared direction (weight learned 0).
    pub contradicting: Vec<String>,
    /// Categories where no KPI had a healthy effect, so they kept their prior.
    pub categories_without_signal: Vec<String>,
    /// Churn outcomes seen (`n`).
    pub churn_outcomes: usize,
    /// Prior strength (`n0`).
    pub n0: f64,
    /// Share given to the data: `n / (n + n0)`.
    pub data_share: f64,
}

impl WeightReport {
    /// Final weight of a KPI by name.
    pub fn weight(&self, name: &str) -> Option<f64> {
        self.kpis.iter().find(|k| k.name == name).map(|k| k.weight)
    }
}

/// Turns coefficients (one per KPI, same order as `kpis`, on the standardised scale) into
/// per-category KPI weights shrunk toward the prior (formulas in the module doc).
///
/// Errors on a length mismatch, a non-finite coefficient, a negative or non-finite prior
/// weight or `n0`.
pub fn kpi_weights(
    kpis: &[KpiSpec],
    coefficients: &[f64],
    churn_outcomes: usize,
    n0: f64,
) -> Result<WeightReport> {
    check_len("coefficients", kpis.len(), coefficients.len())?;
    check_finite("coefficients", coefficients.iter().copied())?;
    if !(n0.is_finite() && n0 >= 0.0) {
        return Err(LearnError::InvalidParameter {
            name: "n0",
            reason: format!("{n0} is not a finite non-negative number"),
        });
    }
    if let Some(k) = kpis
        .iter()
        .find(|k| !(k.prior_weight.is_finite() && k.prior_weight >= 0.0))
    {
        return Err(LearnError::InvalidParameter {
            name: "prior_weight",
            reason: format!("kpi {} has prior weight {}", k.name, k.prior_weight),
        });
    }
    let n = churn_outcomes as f64;
    let data_share = if n + n0 > 0.0 { n / (n + n0) } else { 0.0 };

    let effects: Vec<f64> = kpis
        .iter()
        .zip(coefficients)
        .map(|(k, &b)| -k.direction.sign() * b)
        .collect();
    // Sums per category of positive effects and of priors (BTreeMap: deterministic order).
    let mut effect_sum: BTreeMap<&str, f64> = BTreeMap::new();
    let mut prior_sum: BTreeMap<&str, f64> = BTreeMap::new();
    let mut category_size: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, &e) in kpis.iter().zip(&effects) {
        *effect_sum.entry(&k.category).or_default() += e.max(0.0);
        *prior_sum.entry(&k.category).or_default() += k.prior_weight;
        *category_size.entry(&k.category).or_default() += 1;
    }
    let prior_of = |k: &KpiSpec| {
        let total = prior_sum[k.category.as_str()];
        if total > 0.0 {
            k.prior_weight / total
        } else {
            // All priors zero: treat the prior as uniform within the category.
            1.0 / category_size[k.category.as_str()] as f64
        }
    };
    let categories_without_signal: Vec<String> = effect_sum
        .iter()
        .filter(|(_, s)| **s <= 0.0)
        .map(|(c, _)| (*c).to_owned())
        .collect();

    let weights: Vec<KpiWeight> = kpis
        .iter()
        .zip(coefficients)
        .zip(&effects)
        .map(|((k, &b), &e)| {
            let prior = prior_of(k);
            let total = effect_sum[k.category.as_str()];
            let learned = if total > 0.0 {
                e.max(0.0) / total
            } else {
                prior
            };
            KpiWeight {
                name: k.name.clone(),
                category: k.category.clone(),
                coefficient: b,
                healthy_effect: e,
                learned,
                prior,
                weight: data_share * learned + (1.0 - data_share) * prior,
                contradicts_direction: e < 0.0,
            }
        })
        .collect();
    Ok(WeightReport {
        contradicting: weights
            .iter()
            .filter(|w| w.contradicts_direction)
            .map(|w| w.name.clone())
            .collect(),
        kpis: weights,
        categories_without_signal,
        churn_outcomes,
        n0,
        data_share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, cat: &str, dir: Direction) -> KpiSpec {
        KpiSpec {
            name: name.to_owned(),
            category: cat.to_owned(),
            direction: dir,
            prior_weight: 1.0,
        }
    }

    #[test]
    fn worked_example() {
        use Direction::*;
        let kpis = [
            spec("logins", "usage", HigherIsBetter),
            spec("days_idle", "usage", HigherIsWorse),
            spec("seats_used", "usage", HigherIsBetter),
            spec("nps", "pulse", HigherIsBetter),
        ];
        // logins: beta -0.6 -> effect 0.6; days_idle: beta 0.2 -> effect 0.2;
        // seats_used: beta 0.3 -> effect -0.3 (contradicts); nps: beta 0.1 -> -0.1.
        let r = kpi_weights(&kpis, &[-0.6, 0.2, 0.3, 0.1], 150, 50.0).unwrap();
        assert!((r.data_share - 0.75).abs() < 1e-12);
        let w = |n: &str| r.kpis.iter().find(|k| k.name == n).unwrap().clone();
        assert!((w("logins").learned - 0.75).abs() < 1e-12);
        assert!((w("days_idle").learned - 0.25).abs() < 1e-12);
        assert_eq!(w("seats_used").learned, 0.0);
        assert!((w("logins").weight - (0.75 * 0.75 + 0.25 / 3.0)).abs() < 1e-12);
        assert!((w("seats_used").weight - 0.25 / 3.0).abs() < 1e-12);
        assert_eq!(
            r.contradicting,
            vec!["seats_used".to_owned(), "nps".to_owned()]
        );
        assert_eq!(r.categories_without_signal, vec!["pulse".to_owned()]);
        assert!((w("nps").weight - 1.0).abs() < 1e-12);
        let usage: f64 = r
            .kpis
            .iter()
            .filter(|k| k.category == "usage")
            .map(|k| k.weight)
            .sum();
        assert!((usage - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_outcomes_means_prior() {
        let kpis = [
            KpiSpec {
                prior_weight: 3.0,
                ..spec("a", "c", Direction::HigherIsBetter)
            },
            spec("b", "c", Direction::HigherIsBetter),
        ];
        let r = kpi_weights(&kpis, &[-1.0, -0.01], 0, 50.0).unwrap();
        assert_eq!(r.weight("a"), Some(0.75));
        assert_eq!(r.weight("b"), Some(0.25));
        assert!(kpi_weights(&kpis, &[1.0], 0, 50.0).is_err());
        assert!(kpi_weights(&kpis, &[1.0, 1.0], 0, -1.0).is_err());
    }
}
