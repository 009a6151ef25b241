//! Distribution of scores over a population (dashboards, scorecard preview).

use crate::scorecard::{Band, BandThresholds};

/// Summary of a set of 0..10 scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Scores counted (NaN skipped).
    pub count: usize,
    /// Bins `[0,1)`, `[1,2)`, ..., `[9,10]`: the last bin includes 10 (values outside 0..10
    /// are clamped into the end bins).
    pub histogram: [u64; 10],
    /// Accounts per band: red, yellow, green.
    pub bands: [u64; 3],
    /// Mean (`None` when empty, like every statistic below).
    pub mean: Option<f64>,
    /// Median (50th percentile).
    pub median: Option<f64>,
    /// 10th percentile.
    pub p10: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// Population standard deviation (divides by n).
    pub std: Option<f64>,
}

impl Distribution {
    /// Counts in band `b`.
    pub fn band_count(&self, b: Band) -> u64 {
        match b {
            Band::Red => self.bands[0],
            Band::Yellow => self.bands[1],
            Band::Green => self.bands[2],
        }
    }
}

/// Quantile q of sorted data by linear interpolation between closest ranks
/// (position q x (n - 1), the common "type 7" definition).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Summarises `scores` (NaN skipped). O(n log n).
pub fn distribution(scores: impl IntoIterator<Item = f64>, bands: &BandThresholds) -> Distribution {
    let mut v: Vec<f64> = scores.into_iter().filter(|s| !s.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    let mut histogram = [0u64; 10];
    let mut band_counts = [0u64; 3];
    let mut sum = 0.0;
    for &s in &v {
        let bin = (s.clamp(0.0, 10.0).floor() as usize).min(9);
        histogram[bin] += 1;
        band_counts[bands.band(s) as usize] += 1;
        sum += s;
    }
    let n = v.len();
    let mean = (n > 0).then(|| sum / n as f64);
    let std = mean.map(|m| (v.iter().map(|s| (s - m) * (s - m)).sum::<f64>() / n as f64).sqrt());
    Distribution {
        count: n,
        histogram,
        bands: band_counts,
        mean,
        median: quantile_sorted(&v, 0.5),
        p10: quantile_sorted(&v, 0.1),
        p90: quantile_sorted(&v, 0.9),
        std,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // 1, 2, 3, 4, 10 (+ a NaN that is skipped)
        let d = distribution(
            [3.0, 10.0, f64::NAN, 1.0, 4.0, 2.0],
            &BandThresholds::default(),
        );
        assert_eq!(d.count, 5);
        assert_eq!(d.histogram, [0, 1, 1, 1, 1, 0, 0, 0, 0, 1]);
        // red < 3: 1, 2; yellow [3, 7): 3, 4; green: 10
        assert_eq!(d.bands, [2, 2, 1]);
        assert_eq!(d.band_count(Band::Green), 1);
        assert_eq!(d.mean, Some(4.0));
        assert_eq!(d.median, Some(3.0));
        // p10: pos 0.4 -> 1 + 0.4 x 1 = 1.4; p90: pos 3.6 -> 4 + 0.6 x 6 = 7.6
        assert!((d.p10.unwrap() - 1.4).abs() < 1e-12);
        assert!((d.p90.unwrap() - 7.6).abs() < 1e-12);
        // variance: (9 + 4 + 1 + 0 + 36) / 5 = 10
        assert!((d.std.unwrap() - 10f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn empty() {
        let d = distribution([], &BandThresholds::default());
        assert_eq!(d.count, 0);
        assert_eq!(d.mean, None);
        assert_eq!(d.median, None);
        assert_eq!(d.histogram, [0; 10]);
    }
}
