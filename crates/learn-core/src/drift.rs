//! Population drift: how far the current distribution of a feature has moved from the
//! one a model was trained on, by the population stability index (PSI).
//!
//! At training time [`Reference::from_values`] keeps, per KPI, the bin edges (the deciles
//! of the training observations' values) and the share of the observations in each bin,
//! plus the share of missing values. Later [`Reference::psi`] bins the current values on
//! the same edges and compares:
//!
//! ```text
//! PSI = Σ_b (a_b − e_b) · ln(a_b / e_b)
//! ```
//!
//! `e_b` the training share of bin `b`, `a_b` the current share, each floored at
//! [`PSI_FLOOR`] so that an empty bin gives a large but finite term. The missing values are
//! one more bin. The usual reading ([`DriftLevel`]): below 0.1 stable, 0.1 to 0.25 a
//! moderate shift, above 0.25 a significant shift.

use serde::{Deserialize, Serialize};

/// The smallest share a bin counts with (an empty bin would make `ln(a / e)` infinite).
pub const PSI_FLOOR: f64 = 1e-4;
/// Below this PSI the population is read as stable.
pub const PSI_MODERATE: f64 = 0.1;
/// Above this PSI the population is read as shifted.
pub const PSI_SHIFT: f64 = 0.25;
/// Number of equal-count bins of the training distribution (deciles).
pub const PSI_BINS: usize = 10;

/// How far a population moved, from its PSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftLevel {
    /// PSI < 0.1.
    Stable,
    /// 0.1 <= PSI <= 0.25.
    Moderate,
    /// PSI > 0.25.
    Shift,
}

impl DriftLevel {
    /// The level of a PSI by the usual reading.
    pub fn of(psi: f64) -> Self {
        if psi > PSI_SHIFT {
            Self::Shift
        } else if psi >= PSI_MODERATE {
            Self::Moderate
        } else {
            Self::Stable
        }
    }

    /// As stored and shown: `stable`, `moderate`, `shift`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Moderate => "moderate",
            Self::Shift => "shift",
        }
    }
}

/// The training distribution of one feature: bin edges and the share of the training
/// observations in each bin, compact enough to store with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Upper bounds of the bins but the last (the distinct deciles of the finite training
    /// values, ascending): bin `i` holds `edges[i-1] < v <= edges[i]`.
    pub edges: Vec<f64>,
    /// Share of all training observations in each bin (`edges.len() + 1` of them, empty
    /// when no training value was finite).
    pub proportions: Vec<f64>,
    /// Share of the training observations whose value was missing (not finite).
    pub missing: f64,
    /// Training observations.
    pub count: u32,
}

impl Reference {
    /// The reference of the training values (NaN = missing); `None` when there are none.
    pub fn from_values(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        finite.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::with_capacity(PSI_BINS - 1);
        if !finite.is_empty() {
            let n = finite.len();
            for k in 1..PSI_BINS {
                // Nearest-rank decile.
                let rank = (k * n).div_ceil(PSI_BINS).clamp(1, n);
                let e = finite[rank - 1];
                if edges.last().is_none_or(|&last| e > last) {
                    edges.push(e);
                }
            }
        }
        let mut r = Self {
            edges,
            proportions: Vec::new(),
            missing: 0.0,
            count: values.len() as u32,
        };
        let (proportions, missing) = r.shares(values);
        r.proportions = if finite.is_empty() {
            Vec::new()
        } else {
            proportions
        };
        r.missing = missing;
        Some(r)
    }

    /// The share of `values` in each bin of this reference, and the share missing.
    pub fn shares(&self, values: &[f64]) -> (Vec<f64>, f64) {
        let mut counts = vec![0usize; self.edges.len() + 1];
        let mut missing = 0usize;
        for &v in values {
            if v.is_finite() {
                counts[self.edges.partition_point(|&e| e < v)] += 1;
            } else {
                missing += 1;
            }
        }
        let n = values.len().max(1) as f64;
        (
            counts.into_iter().map(|c| c as f64 / n).collect(),
            missing as f64 / n,
        )
    }

    /// The PSI of the current `values` (NaN = missing) against this reference; `None`
    /// when there are no current values.
    pub fn psi(&self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let (mut actual, missing) = self.shares(values);
        let mut expected = if self.proportions.is_empty() {
            vec![0.0; actual.len()]
        } else {
            self.proportions.clone()
        };
        actual.push(missing);
        expected.push(self.missing);
        Some(psi(&expected, &actual))
    }
}

/// The population stability index of two distributions over the same bins (shares
/// floored at [`PSI_FLOOR`]): `Σ (a − e) ln(a / e)`. 0 for identical shares, never
/// negative.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic sample of a normal distribution (Box-Muller on a simple LCG).
    fn normal(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (next(), next());
                mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
            })
            .collect()
    }

    #[test]
    fn deciles_hold_a_tenth_each() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let r = Reference::from_values(&values).expect("reference");
        assert_eq!(r.edges.len(), 9);
        assert_eq!(r.proportions.len(), 10);
        for p in &r.proportions {
            assert!((p - 0.1).abs() < 1e-9, "{:?}", r.proportions);
        }
        assert_eq!(r.missing, 0.0);
        assert_eq!(r.count, 1000);
    }

    #[test]
    fn the_same_population_is_stable() {
        let train = normal(5000, 10.0, 2.0, 1);
        let r = Reference::from_values(&train).expect("reference");
        assert!(r.psi(&train).expect("psi") < 1e-12);
        // Another sample of the same distribution.
        let again = normal(5000, 10.0, 2.0, 2);
        let p = r.psi(&again).expect("psi");
        assert!(p < 0.02, "{p}");
        assert_eq!(DriftLevel::of(p), DriftLevel::Stable);
    }

    #[test]
    fn a_shifted_population_is_a_shift() {
        let r = Reference::from_values(&normal(5000, 10.0, 2.0, 1)).expect("reference");
        // Mean moved by one standard deviation.
        let p = r.psi(&normal(5000, 12.0, 2.0, 3)).expect("psi");
        assert!(p > PSI_SHIFT, "{p}");
        assert_eq!(DriftLevel::of(p), DriftLevel::Shift);
        // A smaller move reads as moderate.
        let m = r.psi(&normal(5000, 10.8, 2.0, 4)).expect("psi");
        assert_eq!(DriftLevel::of(m), DriftLevel::Moderate, "{m}");
    }

    #[test]
    fn ties_and_missing_values_get_their_own_bins() {
        // 60 % zeros, 30 % spread, 10 % missing: the zeros share one bin.
        let mut train = vec![0.0; 600];
        train.extend((1..=300).map(f64::from));
        train.extend(std::iter::repeat_n(f64::NAN, 100));
        let r = Reference::from_values(&train).expect("reference");
        assert_eq!(r.edges[0], 0.0);
        assert!((r.proportions[0] - 0.6).abs() < 1e-9, "{r:?}");
        assert!((r.missing - 0.1).abs() < 1e-9);
        let sum: f64 = r.proportions.iter().sum::<f64>() + r.missing;
        assert!((sum - 1.0).abs() < 1e-9);
        assert!(r.psi(&train).expect("psi") < 1e-12);
        // Every value missing now: a shift.
        assert!(r.psi(&[f64::NAN; 50]).expect("psi") > PSI_SHIFT);
        // A constant training feature: values up to it, and above it (an empty bin, at
        // the floor); the same constant is stable, a larger value a shift.
        let c = Reference::from_values(&[3.0; 20]).expect("reference");
        assert_eq!(c.edges, vec![3.0]);
        assert!(c.psi(&[3.0; 7]).expect("psi") < 1e-12);
        assert!(c.psi(&[4.0; 7]).expect("psi") > PSI_SHIFT);
        assert_eq!(Reference::from_values(&[]), None);
        assert_eq!(r.psi(&[]), None);
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_positive_otherwise() {
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        let p = psi(&[0.5, 0.5], &[0.9, 0.1]);
        let expected = 0.4 * (0.9f64 / 0.5).ln() + (-0.4) * (0.1f64 / 0.5).ln();
        assert!((p - expected).abs() < 1e-12);
        // An empty bin counts with the floor, so the PSI stays finite.
        assert!(psi(&[1.0, 0.0], &[0.5, 0.5]).is_finite());
    }

    #[test]
    fn levels_follow_the_usual_reading() {
        assert_eq!(DriftLevel::of(0.05), DriftLevel::Stable);
        assert_eq!(DriftLevel::of(0.1), DriftLevel::Moderate);
        assert_eq!(DriftLevel::of(0.25), DriftLevel::Moderate);
        assert_eq!(DriftLevel::of(0.26), DriftLevel::Shift);
        assert_eq!(DriftLevel::Shift.as_str(), "shift");
    }
}
