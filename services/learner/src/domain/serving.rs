//! The champion/challenger rule: a newly trained version serves only when its backtest
//! is not worse than the serving version's; otherwise it is stored as a candidate, with
//! the reason (docs/learning.md, "Serving rule").

use super::stored::StoredBacktest;

/// Why a new version with backtest `new` must not replace the serving version `serving`
/// (named `serving_name`), or `None` when it serves: the serving version has no backtest,
/// or the new one's mean backtest AUC of the churn probability is at least the serving
/// one's.
pub fn candidate_reason(
    new: &StoredBacktest,
    serving: &StoredBacktest,
    serving_name: &str,
) -> Option<String> {
    if serving.error.is_some() || serving.folds.is_empty() {
        return None;
    }
    if let Some(e) = &new.error {
        return Some(format!(
            "no backtest ({e}) while the serving model {serving_name} has one (AUC {:.4})",
            serving.mean_auc
        ));
    }
    (new.mean_auc < serving.mean_auc).then(|| {
        format!(
            "backtest AUC {:.4} below the serving model {serving_name}'s {:.4}",
            new.mean_auc, serving.mean_auc
        )
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::stored::{StoredEval, StoredFold};

    fn backtest(auc: f64) -> StoredBacktest {
        let d = NaiveDate::from_ymd_opt(2025, 1, 1).expect("day");
        StoredBacktest::new(vec![StoredFold {
            train_end: d,
            test_start: d,
            test_end: d,
            train_count: 10,
            metrics: StoredEval {
                auc,
                top_decile_lift: 1.0,
                log_loss: 0.0,
                brier_score: 0.0,
                observations: 10,
                positives: 2,
                calibration: Vec::new(),
                calibration_error: None,
            },
        }])
    }

    #[test]
    fn a_worse_backtest_is_a_candidate_an_equal_or_better_one_serves() {
        let serving = backtest(0.72);
        let r = candidate_reason(&backtest(0.70), &serving, "models/global-1").expect("worse");
        assert!(r.contains("0.7000") && r.contains("models/global-1"), "{r}");
        assert_eq!(candidate_reason(&backtest(0.72), &serving, "m"), None);
        assert_eq!(candidate_reason(&backtest(0.75), &serving, "m"), None);
        // No backtest on the new side against one on the serving side: candidate.
        let failed = StoredBacktest::failed("too few dates".into());
        assert!(candidate_reason(&failed, &serving, "m").is_some());
        // Nothing to compare with: serves.
        assert_eq!(candidate_reason(&backtest(0.5), &failed, "m"), None);
    }
}
