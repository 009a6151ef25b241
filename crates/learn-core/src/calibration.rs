//! Calibration of churn probabilities: Platt scaling fitted on out-of-fold scores, and the
//! expected calibration error (docs/learning.md §2, "Calibration").
//!
//! The penalty the time-ordered CV chooses is the one that ranks best, and class weights
//! shift the scale; both can leave the probabilities too flat or too steep (a model fitted
//! on a few dozen churns is overconfident). Platt scaling maps a model's log-odds `η` to
//! `σ(a η + b)`, fitted by maximum likelihood on scores the model did not train on (the
//! out-of-fold scores of the CV that chose `λ`). As `a η + b` is again linear in the
//! features, the calibrated model is a logistic model with its coefficients times `a` and
//! its intercept `a b₀ + b`: it is stored and served exactly as before.

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::logistic::LogisticModel;
use crate::metrics::calibration_table;

/// The least slope kept: a calibration never reverses or flattens the model's ranking.
pub const MIN_SLOPE: f64 = 1e-3;

/// Bins of the expected calibration error (equal-count, as [`calibration_table`]).
pub const ECE_BINS: usize = 10;

/// A Platt scaling `p = σ(slope · η + offset)` of a model's log-odds `η`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    /// Multiplies the log-odds (> 0: the ranking is kept).
    pub slope: f64,
    /// Added to the scaled log-odds.
    pub offset: f64,
}

impl Default for Platt {
    fn default() -> Self {
        Self::IDENTITY
    }
}

/// How a model was calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The scaling applied (identity when none could be fitted).
    pub platt: Platt,
    /// Out-of-fold observations it was fitted on (0: not calibrated).
    pub observations: usize,
    /// Of those, churned.
    pub churned: usize,
    /// Expected calibration error of the out-of-fold probabilities before the scaling.
    pub ece_before: Option<f64>,
    /// Why the model is not calibrated, when it is not.
    pub skipped_reason: Option<String>,
}

impl Calibration {
    /// No calibration, with the reason.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self {
            platt: Platt::IDENTITY,
            observations: 0,
            churned: 0,
            ece_before: None,
            skipped_reason: Some(reason.into()),
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Platt {
    /// The scaling that changes nothing.
    pub const IDENTITY: Self = Self {
        slope: 1.0,
        offset: 0.0,
    };

    /// Fits the scaling on log-odds `scores` (never seen by the model that made them) and
    /// their labels, by Newton's method on the log-likelihood with Platt's (1999) smoothed
    /// targets `(n₁ + 1) / (n₁ + 2)` and `1 / (n₀ + 2)` (no 0/1 target, so a separable set
    /// does not push the slope to infinity). The slope is kept at least [`MIN_SLOPE`].
    pub fn fit(scores: &[f64], labels: &[bool]) -> Result<Self> {
        crate::error::check_len("labels", scores.len(), labels.len())?;
        let n1 = labels.iter().filter(|&&l| l).count();
        let n0 = labels.len() - n1;
        if n1 == 0 || n0 == 0 {
            return Err(LearnError::SingleClass {
                what: "calibration scores".to_owned(),
                positives: n1,
                negatives: n0,
            });
        }
        if scores.iter().any(|s| !s.is_finite()) {
            return Err(LearnError::InvalidParameter {
                name: "scores",
                reason: "not finite".to_owned(),
            });
        }
        let hi = (n1 as f64 + 1.0) / (n1 as f64 + 2.0);
        let lo = 1.0 / (n0 as f64 + 2.0);
        let t: Vec<f64> = labels.iter().map(|&l| if l { hi } else { lo }).collect();
        let prior = (n1 as f64 + 1.0) / (labels.len() as f64 + 2.0);
        let (mut a, mut b) = (0.0, (prior / (1.0 - prior)).ln());
        let loss = |a: f64, b: f64| -> f64 {
            scores
                .iter()
                .zip(&t)
                .map(|(&s, &t)| {
                    let z = a * s + b;
                    // log(1 + e^z) - t z, stable for large |z|
                    let softplus = if z > 0.0 {
                        z + (-z).exp().ln_1p()
                    } else {
                        z.exp().ln_1p()
                    };
                    softplus - t * z
                })
                .sum()
        };
        let mut current = loss(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&s, &t) in scores.iter().zip(&t) {
                let p = sigmoid(a * s + b);
                let d = p - t;
                let w = (p * (1.0 - p)).max(1e-12);
                ga += d * s;
                gb += d;
                haa += w * s * s;
                hab += w * s;
                hbb += w;
            }
            // A tiny ridge keeps the 2x2 system solvable when every score is equal.
            haa += 1e-9;
            hbb += 1e-9;
            let det = haa * hbb - hab * hab;
            if !(det.is_finite() && det > 0.0) {
                break;
            }
            let da = -(hbb * ga - hab * gb) / det;
            let db = -(haa * gb - hab * ga) / det;
            let mut step = 1.0;
            let mut moved = false;
            while step > 1e-10 {
                let (na, nb) = (a + step * da, b + step * db);
                let l = loss(na, nb);
                if l <= current {
                    (a, b, current, moved) = (na, nb, l, true);
                    break;
                }
                step *= 0.5;
            }
            if !moved || (da.abs() + db.abs()) * step < 1e-10 {
                break;
            }
        }
        Ok(Self {
            slope: a.max(MIN_SLOPE),
            offset: b,
        })
    }

    /// The calibrated probability of a log-odds `eta`.
    pub fn probability(&self, eta: f64) -> f64 {
        sigmoid(self.slope * eta + self.offset)
    }

    /// Folds the scaling into `model`: its log-odds become `slope · η + offset` (the
    /// coefficients times the slope, the intercept scaled and shifted).
    pub fn apply_to(&self, model: &mut LogisticModel) {
        for c in &mut model.coefficients {
            *c *= self.slope;
        }
        model.intercept = self.slope * model.intercept + self.offset;
    }
}

/// Expected calibration error: observations sorted by predicted probability in
/// [`ECE_BINS`] equal-count bins, the bins' `|mean predicted − observed rate|` weighted by
/// their share of the observations.
pub fn expected_calibration_error(probabilities: &[f64], labels: &[bool]) -> Result<f64> {
    let table = calibration_table(probabilities, labels, ECE_BINS)?;
    let n: usize = table.iter().map(|b| b.count).sum();
    if n == 0 {
        return Ok(0.0);
    }
    Ok(table
        .iter()
        .map(|b| b.count as f64 * (b.mean_predicted - b.observed_rate).abs())
        .sum::<f64>()
        / n as f64)
}

/// Fits a [`Calibration`] on out-of-fold log-odds and labels; when they cannot carry one
/// (none, or a single class) the identity, with the reason.
pub fn calibrate_out_of_fold(scores: &[f64], labels: &[bool]) -> Calibration {
    if scores.is_empty() {
        return Calibration::skipped("no out-of-fold score (cross-validation impossible)");
    }
    let churned = labels.iter().filter(|&&l| l).count();
    match Platt::fit(scores, labels) {
        Ok(platt) => {
            let before: Vec<f64> = scores.iter().map(|&s| sigmoid(s)).collect();
            Calibration {
                platt,
                observations: scores.len(),
                churned,
                ece_before: expected_calibration_error(&before, labels).ok(),
                skipped_reason: None,
            }
        }
        Err(e) => Calibration::skipped(format!("out-of-fold scores unusable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SplitMix64;

    /// Scores whose true probability is σ(2 s − 1): a model whose log-odds are `s` is
    /// miscalibrated (too flat), and Platt must find slope 2, offset −1.
    fn draw(n: usize, seed: u64) -> (Vec<f64>, Vec<bool>, Vec<f64>) {
        let mut rng = SplitMix64::new(seed);
        let mut s = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        let mut truth = Vec::with_capacity(n);
        for _ in 0..n {
            let x = rng.normal() - 1.5;
            let p = sigmoid(2.0 * x - 1.0);
            s.push(x);
            truth.push(p);
            y.push(rng.uniform() < p);
        }
        (s, y, truth)
    }

    #[test]
    fn platt_recovers_known_probabilities() {
        let (s, y, truth) = draw(50_000, 7);
        let platt = Platt::fit(&s, &y).unwrap();
        assert!((platt.slope - 2.0).abs() < 0.1, "{platt:?}");
        assert!((platt.offset + 1.0).abs() < 0.1, "{platt:?}");
        // On a fresh draw, calibrated probabilities are within 0.01 of the truth on average
        // and the ECE falls from the raw scores' to under 0.01.
        let (s2, y2, truth2) = draw(50_000, 8);
        let calibrated: Vec<f64> = s2.iter().map(|&v| platt.probability(v)).collect();
        let mae = calibrated
            .iter()
            .zip(&truth2)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / s2.len() as f64;
        assert!(mae < 0.01, "mean error {mae}");
        let raw: Vec<f64> = s2.iter().map(|&v| sigmoid(v)).collect();
        let ece_raw = expected_calibration_error(&raw, &y2).unwrap();
        let ece = expected_calibration_error(&calibrated, &y2).unwrap();
        assert!(ece < 0.01, "ece {ece}");
        assert!(ece_raw > 3.0 * ece, "raw {ece_raw} vs {ece}");
        drop(truth);
    }

    #[test]
    fn ece_of_true_probabilities_is_small_and_of_a_constant_shift_is_the_shift() {
        let (s, y, truth) = draw(100_000, 3);
        assert!(expected_calibration_error(&truth, &y).unwrap() < 0.006);
        let rate = y.iter().filter(|&&l| l).count() as f64 / y.len() as f64;
        let constant = vec![rate + 0.1; s.len()];
        let e = expected_calibration_error(&constant, &y).unwrap();
        assert!((e - 0.1).abs() < 1e-9, "{e}");
    }

    #[test]
    fn folding_into_a_model_gives_the_calibrated_probabilities() {
        let data = crate::synthetic::logistic_dataset(4_000, -2.0, &[1.0, -0.5], 11);
        let mut model = LogisticModel::fit(
            &data.feature_names,
            data.x.view(),
            &data.labels,
            &crate::logistic::LogisticOptions::default(),
        )
        .unwrap();
        let eta = model.decision_function(data.x.view()).unwrap();
        let platt = Platt {
            slope: 0.5,
            offset: 0.3,
        };
        platt.apply_to(&mut model);
        let p = model.predict_proba(data.x.view()).unwrap();
        for (e, p) in eta.iter().zip(&p) {
            assert!((platt.probability(*e) - p).abs() < 1e-12);
        }
    }

    #[test]
    fn single_class_or_no_scores_is_not_calibrated_and_says_why() {
        let c = calibrate_out_of_fold(&[], &[]);
        assert_eq!(c.platt, Platt::IDENTITY);
        assert!(c.skipped_reason.is_some());
        let c = calibrate_out_of_fold(&[0.1, 0.2], &[false, false]);
        assert_eq!(c.platt, Platt::IDENTITY);
        assert!(c.skipped_reason.unwrap().contains("unusable"));
    }

    #[test]
    fn the_slope_never_reverses_the_ranking() {
        // Scores that rank backwards: the fitted slope would be negative.
        let s: Vec<f64> = (0..200).map(|i| f64::from(i) / 100.0).collect();
        let y: Vec<bool> = (0..200).map(|i| i < 40).collect();
        let platt = Platt::fit(&s, &y).unwrap();
        assert!(platt.slope >= MIN_SLOPE);
    }
}
