//! Evaluation metrics for churn scores: AUC, lift, calibration, Brier score.
//!
//! Every function takes *risk* scores: higher means more likely to churn. To evaluate a
//! health score (higher is healthier) pass its negation.

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result, check_finite, check_len};

/// Counts positives (churned) and negatives (retained) after checking lengths and finiteness.
fn check_scores(scores: &[f64], labels: &[bool]) -> Result<(usize, usize)> {
    check_len("labels", scores.len(), labels.len())?;
    if scores.is_empty() {
        return Err(LearnError::Empty { what: "scores" });
    }
    check_finite("scores", scores.iter().copied())?;
    let positives = labels.iter().filter(|&&l| l).count();
    Ok((positives, labels.len() - positives))
}

fn require_both_classes(positives: usize, negatives: usize) -> Result<()> {
    if positives == 0 || negatives == 0 {
        return Err(LearnError::SingleClass {
            what: "labels".to_owned(),
            positives,
            negatives,
        });
    }
    Ok(())
}

/// Indices of `scores` sorted ascending (stable, so equal scores keep their input order).
fn ascending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order
}

/// Area under the ROC curve: the probability that a randomly chosen churned observation
/// has a higher risk score than a randomly chosen retained one, ties counting one half.
///
/// Rank-based (Mann–Whitney U with mid-ranks for ties), O(n log n):
/// `AUC = (R+ - n+(n+ + 1)/2) / (n+ n-)` where `R+` is the sum of the positives' mid-ranks.
/// A perfect score gives 1, a reversed one 0, a constant one 0.5.
///
/// Errors when lengths differ, a score is not finite, or a class is missing.
pub fn auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    let (positives, negatives) = check_scores(scores, labels)?;
    require_both_classes(positives, negatives)?;
    let order = ascending_order(scores);
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        // A run of tied scores [i, j) shares the mid-rank of its 1-based ranks i+1 ..= j.
        let mut j = i + 1;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + 1 + j) as f64 / 2.0;
        let pos_in_run = order[i..j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += mid_rank * pos_in_run as f64;
        i = j;
    }
    let (np, nn) = (positives as f64, negatives as f64);
    Ok((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn))
}

/// Lift of the `fraction` (0 < fraction <= 1) of observations with the highest risk: their
/// churn rate divided by the overall churn rate.
///
/// The top group holds `fraction * n` observations (not rounded). When scores tie across
/// the boundary, the tied observations count in proportion to the part of them that falls
/// inside (the expected value under a random tie-break), so the result does not depend on
/// the input order.
///
/// Errors when lengths differ, a score is not finite, or there is no churned observation.
pub fn lift(scores: &[f64], labels: &[bool], fraction: f64) -> Result<f64> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(LearnError::InvalidParameter {
            name: "fraction",
            reason: format!("{fraction} is not in (0, 1]"),
        });
    }
    let (positives, negatives) = check_scores(scores, labels)?;
    if positives == 0 {
        return Err(LearnError::SingleClass {
            what: "labels".to_owned(),
            positives,
            negatives,
        });
    }
    let n = scores.len();
    let target = fraction * n as f64;
    let mut order = ascending_order(scores);
    order.reverse();
    let mut taken = 0.0;
    let mut churn_taken = 0.0;
    let mut i = 0;
    while i < n && taken < target {
        let mut j = i + 1;
        while j < n && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let run = (j - i) as f64;
        let run_pos = order[i..j].iter().filter(|&&k| labels[k]).count() as f64;
        let share = ((target - taken) / run).min(1.0);
        taken += share * run;
        churn_taken += share * run_pos;
        i = j;
    }
    let top_rate = churn_taken / target;
    let base_rate = positives as f64 / n as f64;
    Ok(top_rate / base_rate)
}

/// Lift of the top 10 % by risk (see [`lift`]).
pub fn top_decile_lift(scores: &[f64], labels: &[bool]) -> Result<f64> {
    lift(scores, labels, 0.1)
}

/// Brier score: mean squared difference between the predicted churn probability and the
/// outcome (1 churned, 0 retained). Lower is better; predicting the base rate `r` for
/// everyone scores `r (1 - r)`.
pub fn brier_score(probabilities: &[f64], labels: &[bool]) -> Result<f64> {
    check_scores(probabilities, labels)?;
    check_probabilities(probabilities)?;
    let sum: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &l)| {
            let y = if l { 1.0 } else { 0.0 };
            (p - y) * (p - y)
        })
        .sum();
    Ok(sum / probabilities.len() as f64)
}

fn check_probabilities(probabilities: &[f64]) -> Result<()> {
    if let Some(index) = probabilities.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(LearnError::InvalidParameter {
            name: "probabilities",
            reason: format!(
                "value {} at index {index} is not in [0, 1]",
                probabilities[index]
            ),
        });
    }
    Ok(())
}

/// One row of a calibration table: a group of observations with similar predicted
/// probability, and how often they really churned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lowest predicted probability in the bin.
    pub min_predicted: f64,
    /// Highest predicted probability in the bin.
    pub max_predicted: f64,
    /// Number of observations in the bin.
    pub count: usize,
    /// Mean predicted churn probability in the bin.
    pub mean_predicted: f64,
    /// Share of the bin's observations that churned.
    pub observed_rate: f64,
}

/// Calibration table: observations sorted by predicted probability and cut into `bins`
/// groups of (nearly) equal size (deciles for `bins = 10`); each row gives the mean
/// predicted probability against the observed churn rate. A calibrated model has the two
/// close in every row.
///
/// Bin `b` holds the sorted observations `[b n / bins, (b + 1) n / bins)`; with fewer
/// observations than bins the empty bins are left out.
pub fn calibration_table(
    probabilities: &[f64],
    labels: &[bool],
    bins: usize,
) -> Result<Vec<CalibrationBin>> {
    if bins == 0 {
        return Err(LearnError::InvalidParameter {
            name: "bins",
            reason: "must be at least 1".to_owned(),
        });
    }
    check_scores(probabilities, labels)?;
    check_probabilities(probabilities)?;
    let order = ascending_order(probabilities);
    let n = order.len();
    let mut table = Vec::with_capacity(bins);
    for b in 0..bins {
        let (lo, hi) = (b * n / bins, (b + 1) * n / bins);
        if lo == hi {
            continue;
        }
        let members = &order[lo..hi];
        let count = members.len();
        let sum_p: f64 = members.iter().map(|&k| probabilities[k]).sum();
        let churned = members.iter().filter(|&&k| labels[k]).count();
        table.push(CalibrationBin {
            min_predicted: probabilities[members[0]],
            max_predicted: probabilities[members[count - 1]],
            count,
            mean_predicted: sum_p / count as f64,
            observed_rate: churned as f64 / count as f64,
        });
    }
    Ok(table)
}

/// How well a score separates churned from retained observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Number of observations evaluated.
    pub observations: usize,
    /// Number of churned observations among them.
    pub churned: usize,
    /// Area under the ROC curve (see [`auc`]).
    pub auc: f64,
    /// Top-decile lift (see [`top_decile_lift`]).
    pub top_decile_lift: f64,
    /// Brier score, only for probabilities (see [`brier_score`]).
    pub brier: Option<f64>,
    /// Calibration by deciles, only for probabilities (see [`calibration_table`]).
    pub calibration: Vec<CalibrationBin>,
}

impl Evaluation {
    /// Evaluates a ranking score that is not a probability (e.g. a negated health score):
    /// AUC and lift only.
    pub fn of_scores(risk_scores: &[f64], labels: &[bool]) -> Result<Self> {
        let auc = auc(risk_scores, labels)?;
        let top_decile_lift = top_decile_lift(risk_scores, labels)?;
        Ok(Self {
            observations: labels.len(),
            churned: labels.iter().filter(|&&l| l).count(),
            auc,
            top_decile_lift,
            brier: None,
            calibration: Vec::new(),
        })
    }

    /// Evaluates churn probabilities: AUC, lift, Brier score and the decile calibration table.
    pub fn of_probabilities(probabilities: &[f64], labels: &[bool]) -> Result<Self> {
        let mut e = Self::of_scores(probabilities, labels)?;
        e.brier = Some(brier_score(probabilities, labels)?);
        e.calibration = calibration_table(probabilities, labels, 10)?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_of_perfect_reversed_and_constant_scores() {
        let labels = [false, false, true, false, true, true];
        let perfect = [0.1, 0.2, 0.7, 0.3, 0.8, 0.9];
        assert!(close(auc(&perfect, &labels).unwrap(), 1.0));
        let reversed: Vec<f64> = perfect.iter().map(|s| -s).collect();
        assert!(close(auc(&reversed, &labels).unwrap(), 0.0));
        assert!(close(auc(&[1.0; 6], &labels).unwrap(), 0.5));
    }

    #[test]
    fn auc_counts_ties_as_one_half() {
        // pairs (pos, neg): (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.1) = 1, (0.9 vs 0.5) = 1,
        // (0.9 vs 0.1) = 1 -> 3.5 / 4.
        let scores = [0.5, 0.5, 0.9, 0.1];
        let labels = [true, false, true, false];
        assert!(close(auc(&scores, &labels).unwrap(), 3.5 / 4.0));
    }

    #[test]
    fn auc_matches_pairwise_count() {
        let scores = [0.3, 0.3, 0.1, 0.8, 0.8, 0.8, 0.2, 0.5, 0.5, 0.9];
        let labels = [
            true, false, false, true, false, true, false, false, true, false,
        ];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..scores.len() {
            for j in 0..scores.len() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        assert!(close(auc(&scores, &labels).unwrap(), wins / pairs));
    }

    #[test]
    fn auc_rejects_single_class_and_nan() {
        assert!(matches!(
            auc(&[0.1, 0.2], &[true, true]),
            Err(LearnError::SingleClass { .. })
        ));
        assert!(matches!(
            auc(&[0.1, f64::NAN], &[true, false]),
            Err(LearnError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            auc(&[0.1], &[true, false]),
            Err(LearnError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn lift_worked_example() {
        // 20 observations, 4 churned (base rate 0.2). The top 10 % = 2 observations
        // (scores 20 and 19): one churned -> rate 0.5 -> lift 2.5.
        let scores: Vec<f64> = (1..=20).map(f64::from).collect();
        let mut labels = vec![false; 20];
        for k in [19, 10, 5, 2] {
            labels[k] = true; // scores 20, 11, 6, 3
        }
        assert!(close(top_decile_lift(&scores, &labels).unwrap(), 2.5));
        // Top half (scores 11..=20) holds 2 churns of 10 -> rate 0.2 -> lift 1.
        assert!(close(lift(&scores, &labels, 0.5).unwrap(), 1.0));
        // Everyone: lift 1 by definition.
        assert!(close(lift(&scores, &labels, 1.0).unwrap(), 1.0));
    }

    #[test]
    fn lift_shares_ties_at_the_boundary() {
        // 10 observations, top 10 % = 1 observation, but the top score is shared by two,
        // one churned: expected churn share 0.5 -> rate 0.5; base rate 2/10 -> lift 2.5.
        let scores = [5.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let labels = [
            true, false, false, false, false, false, false, false, false, true,
        ];
        assert!(close(top_decile_lift(&scores, &labels).unwrap(), 2.5));
        // Swapping the tied pair changes nothing.
        let labels2 = [
            false, true, false, false, false, false, false, false, false, true,
        ];
        assert!(close(top_decile_lift(&scores, &labels2).unwrap(), 2.5));
    }

    #[test]
    fn calibration_worked_example() {
        // 10 observations, 2 bins of 5.
        let p = [0.05, 0.9, 0.1, 0.8, 0.15, 0.7, 0.2, 0.6, 0.25, 0.5];
        let l = [
            false, true, false, true, true, false, false, true, false, true,
        ];
        let t = calibration_table(&p, &l, 2).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].count, 5);
        assert!(close(t[0].mean_predicted, 0.15));
        assert!(close(t[0].observed_rate, 0.2)); // only 0.15 churned
        assert!(close(t[0].min_predicted, 0.05));
        assert!(close(t[0].max_predicted, 0.25));
        assert!(close(t[1].mean_predicted, 0.7));
        assert!(close(t[1].observed_rate, 0.8)); // 0.5, 0.6, 0.8, 0.9 churned
        // Deciles of 20 observations: 10 bins of 2.
        let p20: Vec<f64> = (0..20).map(|i| f64::from(i) / 20.0).collect();
        let l20: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let t = calibration_table(&p20, &l20, 10).unwrap();
        assert_eq!(t.len(), 10);
        assert!(
            t.iter()
                .all(|b| b.count == 2 && close(b.observed_rate, 0.5))
        );
    }

    #[test]
    fn brier_worked_example() {
        let p = [0.0, 1.0, 0.5, 0.2];
        let l = [false, true, true, false];
        // (0 + 0 + 0.25 + 0.04) / 4
        assert!(close(brier_score(&p, &l).unwrap(), 0.29 / 4.0));
        assert!(brier_score(&[1.5], &[true]).is_err());
    }
}
