//! Behaviour forecasting: each trend KPI against the account's own history (docs/scoring.md §4).
//!
//! z = (now - mean(history)) / (std(history) + eps), turned so that positive means
//! healthier, clamped to [-2, 2]; momentum = mean(z) / 2, in [-1, 1]. The usage
//! sub-score moves by momentum x trend weight.

use crate::Direction;

/// Absolute part of the z-score denominator guard.
const EPS_ABS: f64 = 1e-9;

/// Settings of the trend computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Relative part of eps: eps = `eps_relative` x |mean| + 1e-9. A flat history
    /// (std = 0) would otherwise turn a 1 % wiggle into a full +-2; with 0.1 a change
    /// of 20 % of the mean over a flat history gives z = 2.
    pub eps_relative: f64,
    /// Fewest past windows needed to say anything (with one, std is always 0).
    pub min_history: usize,
    /// |momentum| below this is reported as stable.
    pub stable_band: f64,
}

impl Default for TrendConfig {
    fn default() -> Self {
        Self {
            eps_relative: 0.1,
            min_history: 2,
            stable_band: 0.1,
        }
    }
}

/// The reported reading of momentum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MomentumLabel {
    /// Momentum >= the stable band.
    Improving,
    /// |momentum| < the stable band.
    Stable,
    /// Momentum <= -the stable band.
    Declining,
}

impl MomentumLabel {
    /// Reads a momentum value.
    pub fn of(momentum: f64, config: &TrendConfig) -> Self {
        if momentum >= config.stable_band {
            MomentumLabel::Improving
        } else if momentum <= -config.stable_band {
            MomentumLabel::Declining
        } else {
            MomentumLabel::Stable
        }
    }

    /// Stable name for the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MomentumLabel::Improving => "improving",
            MomentumLabel::Stable => "stable",
            MomentumLabel::Declining => "declining",
        }
    }
}

/// Direction-adjusted, clamped z-score of `now` against `history` (the same KPI in the
/// account's previous windows); `None` when the history is too short or anything is
/// missing (NaN history values are skipped).
pub fn trend_z(
    now: f64,
    history: &[f64],
    direction: Direction,
    config: &TrendConfig,
) -> Option<f64> {
    if !now.is_finite() {
        return None;
    }
    let (mut n, mut sum) = (0usize, 0.0);
    for &h in history.iter().filter(|h| h.is_finite()) {
        n += 1;
        sum += h;
    }
    if n == 0 || n < config.min_history {
        return None;
    }
    let mean = sum / n as f64;
    let var = history
        .iter()
        .filter(|h| h.is_finite())
        .map(|h| (h - mean) * (h - mean))
        .sum::<f64>()
        / n as f64;
    let eps = config.eps_relative * mean.abs() + EPS_ABS;
    let z = (now - mean) / (var.sqrt() + eps);
    let z = match direction {
        Direction::HigherIsBetter => z,
        Direction::LowerIsBetter => -z,
    };
    Some(z.clamp(-2.0, 2.0))
}

/// Momentum = mean(z) / 2 over the KPIs that have a z; `None` if none has.
pub fn momentum(zs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut n, mut sum) = (0usize, 0.0);
    for z in zs {
        n += 1;
        sum += z;
    }
    (n > 0).then(|| (sum / n as f64 / 2.0).clamp(-1.0, 1.0))
}

/// How far momentum moves the usage sub-score: momentum x trend weight (points).
pub fn trend_adjustment(momentum: f64, trend_weight: f64) -> f64 {
    momentum * trend_weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_by_hand() {
        let c = TrendConfig {
            eps_relative: 0.0,
            ..TrendConfig::default()
        };
        // history 8, 12: mean 10, population std 2 -> z = (13 - 10) / 2 = 1.5
        let z = trend_z(13.0, &[8.0, 12.0], Direction::HigherIsBetter, &c).unwrap();
        assert!((z - 1.5).abs() < 1e-6, "{z}");
        // lower is better flips the sign
        let z = trend_z(13.0, &[8.0, 12.0], Direction::LowerIsBetter, &c).unwrap();
        assert!((z + 1.5).abs() < 1e-6);
        // clamped
        assert_eq!(
            trend_z(100.0, &[8.0, 12.0], Direction::HigherIsBetter, &c),
            Some(2.0)
        );
        // too short
        assert_eq!(trend_z(1.0, &[8.0], Direction::HigherIsBetter, &c), None);
    }

    #[test]
    fn eps_relative_by_hand() {
        // flat history 10, 10: std 0, eps = 0.1 x 10 = 1 -> z = (11 - 10) / 1 = 1
        let z = trend_z(
            11.0,
            &[10.0, 10.0],
            Direction::HigherIsBetter,
            &TrendConfig::default(),
        )
        .unwrap();
        assert!((z - 1.0).abs() < 1e-6, "{z}");
        // all zero history and now: z = 0 (no movement)
        assert_eq!(
            trend_z(
                0.0,
                &[0.0, 0.0],
                Direction::HigherIsBetter,
                &TrendConfig::default()
            ),
            Some(0.0)
        );
    }

    #[test]
    fn momentum_by_hand() {
        // z = 2, 1, -1 -> mean 2/3 -> momentum 1/3
        let m = momentum([2.0, 1.0, -1.0]).unwrap();
        assert!((m - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(momentum([]), None);
        let c = TrendConfig::default();
        assert_eq!(MomentumLabel::of(m, &c), MomentumLabel::Improving);
        assert_eq!(MomentumLabel::of(-0.05, &c), MomentumLabel::Stable);
        assert_eq!(MomentumLabel::of(-0.1, &c), MomentumLabel::Declining);
        assert_eq!(trend_adjustment(0.5, 1.0), 0.5);
    }
}
