//! Mid-rank percentiles (docs/scoring.md §2).
//!
//! Among the n present values of a comparison group, a value x with L values strictly
//! below it and E values equal to it (itself included) has the percentile
//! (L + E / 2) / n. Ties therefore share one percentile, the result lies in (0, 1), and
//! the orientation "higher is healthier" is 1 - p for a lower-is-better KPI (which is
//! exactly (G + E / 2) / n, G = values strictly above).

use crate::Direction;

/// Order-preserving map of a finite `f64` onto `u64` (so sorting compares integers);
/// -0.0 and 0.0 map to the same key.
#[inline]
pub(crate) fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Orients a raw percentile so that higher is healthier.
#[inline]
pub(crate) fn orient(p: f64, direction: Direction) -> f64 {
    match direction {
        Direction::HigherIsBetter => p,
        Direction::LowerIsBetter => 1.0 - p,
    }
}

/// Direction-adjusted mid-rank percentile of every value within the group `values`
/// (NaN = missing, gets NaN back). O(n log n).
pub fn mid_rank_percentiles(values: &[f64], direction: Direction) -> Vec<f64> {
    let mut entries: Vec<(u64, u32)> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (order_key(v), i as u32))
        .collect();
    let mut out = vec![f64::NAN; values.len()];
    rank_sorted(&mut entries, |i, p| out[i as usize] = orient(p, direction));
    out
}

/// Direction-adjusted mid-rank percentile of `x` against `sorted` (the present values
/// of the group in ascending order; `x` itself must be one of them). `None` when the
/// group is empty.
pub fn percentile_in_sorted(sorted: &[f64], x: f64, direction: Direction) -> Option<f64> {
    if sorted.is_empty() || x.is_nan() {
        return None;
    }
    let below = sorted.partition_point(|&v| v < x);
    let upto = sorted.partition_point(|&v| v <= x);
    let p = (below as f64 + (upto - below) as f64 / 2.0) / sorted.len() as f64;
    Some(orient(p, direction))
}

/// Sorts `entries` (key, account) and calls `emit(account, raw percentile)` for each.
pub(crate) fn rank_sorted(entries: &mut [(u64, u32)], mut emit: impl FnMut(u32, f64)) {
    entries.sort_unstable_by_key(|e| e.0);
    let n = entries.len() as f64;
    let mut a = 0;
    while a < entries.len() {
        let key = entries[a].0;
        let mut b = a + 1;
        while b < entries.len() && entries[b].0 == key {
            b += 1;
        }
        // (L + E/2) / n with L = a, E = b - a.
        let p = (a + b) as f64 / (2.0 * n);
        for e in &entries[a..b] {
            emit(e.1, p);
        }
        a = b;
    }
}

/// Raw (not oriented) mid-rank percentile of key `k` within sorted `entries`.
pub(crate) fn raw_percentile_of_key(sorted: &[(u64, u32)], k: u64) -> f64 {
    let below = sorted.partition_point(|e| e.0 < k);
    let upto = sorted.partition_point(|e| e.0 <= k);
    (below + upto) as f64 / (2.0 * sorted.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_ranks_by_hand() {
        // values 10, 20, 20, 30, missing: n = 4
        // 10: L=0,E=1 -> 0.5/4 = 0.125; 20: L=1,E=2 -> 2/4 = 0.5; 30: L=3,E=1 -> 3.5/4 = 0.875
        let p = mid_rank_percentiles(
            &[20.0, 10.0, f64::NAN, 30.0, 20.0],
            Direction::HigherIsBetter,
        );
        assert_eq!(p[1], 0.125);
        assert_eq!(p[0], 0.5);
        assert_eq!(p[4], 0.5);
        assert_eq!(p[3], 0.875);
        assert!(p[2].is_nan());
        let q = mid_rank_percentiles(
            &[20.0, 10.0, f64::NAN, 30.0, 20.0],
            Direction::LowerIsBetter,
        );
        assert_eq!(q[1], 0.875);
        assert_eq!(q[3], 0.125);
        assert_eq!(q[0], 0.5);
        assert_eq!(
            percentile_in_sorted(&[10.0, 20.0, 20.0, 30.0], 20.0, Direction::HigherIsBetter),
            Some(0.5)
        );
        assert_eq!(
            percentile_in_sorted(&[], 20.0, Direction::HigherIsBetter),
            None
        );
    }

    #[test]
    fn single_value_and_all_ties_are_neutral() {
        assert_eq!(
            mid_rank_percentiles(&[7.0], Direction::HigherIsBetter),
            vec![0.5]
        );
        assert_eq!(
            mid_rank_percentiles(&[3.0, 3.0, 3.0], Direction::LowerIsBetter),
            vec![0.5; 3]
        );
    }

    #[test]
    fn order_key_is_monotone() {
        let xs = [-1e300, -2.5, -0.0, 0.0, 1e-300, 3.0, 1e300];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{w:?}");
        }
        assert_eq!(order_key(-0.0), order_key(0.0));
    }
}
