//! Time-ordered splits and backtests: train on the past, test on the future.

use chrono::NaiveDate;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{LearnError, Result};
use crate::metrics::{auc, top_decile_lift};

/// One train/test split: row indices of the training and the test observations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Rows used for training (all dated before `cut`).
    pub train: Vec<usize>,
    /// Rows used for testing (dated on or after `cut`).
    pub test: Vec<usize>,
    /// First date of the test period.
    pub cut: NaiveDate,
}

/// Train on every observation dated before `cut`, test on every one dated on or after it.
pub fn split_at_date(dates: &[NaiveDate], cut: NaiveDate) -> Fold {
    let (train, test) = (0..dates.len()).partition(|&i| dates[i] < cut);
    Fold { train, test, cut }
}

/// Expanding-window time-ordered folds (as scikit-learn's `TimeSeriesSplit`): the rows
/// sorted by date are cut into `n_splits + 1` consecutive blocks; fold `k` trains on
/// blocks `0..=k` and tests on block `k + 1`. With `n_splits = 2` this is the book's
/// scheme: first third -> second third, first two thirds -> last third.
///
/// Block boundaries are moved to the nearest change of date so that no date is on both
/// sides (training observations are strictly earlier than test ones).
///
/// Errors when there are too few distinct dates for `n_splits` non-empty folds.
pub fn time_ordered_folds(dates: &[NaiveDate], n_splits: usize) -> Result<Vec<Fold>> {
    if n_splits == 0 {
        return Err(LearnError::InvalidParameter {
            name: "n_splits",
            reason: "must be at least 1".to_owned(),
        });
    }
    let mut order: Vec<usize> = (0..dates.len()).collect();
    order.sort_by_key(|&i| dates[i]);
    let n = order.len();
    let blocks = n_splits + 1;
    // Candidate boundaries: positions in the sorted order where the date changes.
    let mut bounds = Vec::with_capacity(blocks + 1);
    bounds.push(0);
    for k in 1..blocks {
        let target = k * n / blocks;
        let t = target.min(n.saturating_sub(1));
        let d = dates[order[t]];
        // Start of the run of equal dates containing t, and its end.
        let run_start = order[..t].partition_point(|&i| dates[i] < d);
        let run_end = run_start + order[run_start..].partition_point(|&i| dates[i] <= d);
        let b = if target - run_start <= run_end - target {
            run_start
        } else {
            run_end
        };
        bounds.push(b);
    }
    bounds.push(n);
    for w in bounds.windows(2) {
        if w[0] >= w[1] {
            return Err(LearnError::InvalidParameter {
                name: "n_splits",
                reason: format!(
                    "{n} observations over too few distinct dates for {n_splits} time-ordered folds"
                ),
            });
        }
    }
    Ok((0..n_splits)
        .map(|k| Fold {
            train: order[..bounds[k + 1]].to_vec(),
            test: order[bounds[k + 1]..bounds[k + 2]].to_vec(),
            cut: dates[order[bounds[k + 1]]],
        })
        .collect())
}

/// Result of one backtest fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// First date of the test period.
    pub cut: NaiveDate,
    /// Training observations.
    pub n_train: usize,
    /// Test observations.
    pub n_test: usize,
    /// Churned observations in the test period.
    pub test_churned: usize,
    /// AUC on the test period.
    pub auc: f64,
    /// Top-decile lift on the test period.
    pub top_decile_lift: f64,
}

/// Result of a backtest: each fold and the averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    /// Per-fold figures, in time order.
    pub folds: Vec<FoldResult>,
    /// Mean test AUC over the folds.
    pub mean_auc: f64,
    /// Mean test top-decile lift over the folds.
    pub mean_top_decile_lift: f64,
}

/// Runs a backtest: for each fold, `fit_and_score(train, test)` returns a risk score for
/// each test row (higher = more likely to churn), which is evaluated against the test
/// labels. The closure may ignore `train` (e.g. to backtest a health score: pass its
/// negation). Folds run in parallel.
///
/// Errors when a fold's test set lacks a class, the closure fails, or returns the wrong
/// number of scores.
pub fn backtest<F>(data: &Dataset, folds: &[Fold], fit_and_score: F) -> Result<BacktestReport>
where
    F: Fn(&Dataset, &Dataset) -> Result<Vec<f64>> + Sync,
{
    if folds.is_empty() {
        return Err(LearnError::InvalidParameter {
            name: "folds",
            reason: "no fold to run".to_owned(),
        });
    }
    let results = folds
        .par_iter()
        .enumerate()
        .map(|(k, fold)| {
            let (train, test) = fold_sets(data, fold, &format!("backtest fold {}", k + 1))?;
            let scores = fit_and_score(&train, &test)?;
            crate::error::check_len("backtest scores", test.len(), scores.len())?;
            Ok(FoldResult {
                cut: fold.cut,
                n_train: train.len(),
                n_test: test.len(),
                test_churned: test.n_churned(),
                auc: auc(&scores, &test.labels)?,
                top_decile_lift: top_decile_lift(&scores, &test.labels)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let k = results.len() as f64;
    Ok(BacktestReport {
        mean_auc: results.iter().map(|r| r.auc).sum::<f64>() / k,
        mean_top_decile_lift: results.iter().map(|r| r.top_decile_lift).sum::<f64>() / k,
        folds: results,
    })
}

/// The training and test rows of `fold`; an error naming `what` (e.g. "backtest fold 2")
/// when the test rows hold only one class (no AUC can be measured on them).
pub fn fold_sets(data: &Dataset, fold: &Fold, what: &str) -> Result<(Dataset, Dataset)> {
    let train = data.subset(&fold.train);
    let test = data.subset(&fold.test);
    let churned = test.n_churned();
    if churned == 0 || churned == test.len() {
        return Err(LearnError::SingleClass {
            what: format!("{what} test set"),
            positives: churned,
            negatives: test.len() - churned,
        });
    }
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2020, 1, day).unwrap()
    }

    #[test]
    fn thirds_follow_time_order() {
        // 9 observations on 9 different days, given out of order.
        let dates: Vec<NaiveDate> = [5, 1, 9, 3, 7, 2, 8, 4, 6].iter().map(|&x| d(x)).collect();
        let folds = time_ordered_folds(&dates, 2).unwrap();
        assert_eq!(folds.len(), 2);
        let days = |idx: &[usize]| {
            let mut v: Vec<u32> = idx
                .iter()
                .map(|&i| chrono::Datelike::day(&dates[i]))
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(days(&folds[0].train), vec![1, 2, 3]);
        assert_eq!(days(&folds[0].test), vec![4, 5, 6]);
        assert_eq!(days(&folds[1].train), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(days(&folds[1].test), vec![7, 8, 9]);
        assert_eq!(folds[1].cut, d(7));
    }

    #[test]
    fn folds_never_split_a_date() {
        // Regular observation dates: many accounts share each date.
        let mut dates = Vec::new();
        for day in [1, 8, 15, 22] {
            for _ in 0..5 {
                dates.push(d(day));
            }
        }
        let folds = time_ordered_folds(&dates, 2).unwrap();
        for f in &folds {
            let last_train = f.train.iter().map(|&i| dates[i]).max().unwrap();
            let first_test = f.test.iter().map(|&i| dates[i]).min().unwrap();
            assert!(last_train < first_test);
            assert_eq!(first_test, f.cut);
        }
        // One date only: impossible.
        assert!(time_ordered_folds(&[d(1); 10], 2).is_err());
    }

    #[test]
    fn split_at_date_partitions() {
        let dates = vec![d(1), d(5), d(3), d(9)];
        let f = split_at_date(&dates, d(4));
        assert_eq!(f.train, vec![0, 2]);
        assert_eq!(f.test, vec![1, 3]);
    }
}
