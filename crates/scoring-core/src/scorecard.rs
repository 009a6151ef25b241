//! Custify-style scorecards (docs/scoring.md §8): a measure mapped linearly from worst to best
//! onto 0..10, bands with configurable thresholds, and the impact-weighted global score.

use crate::ScoringError;

/// Traffic-light band of a 0..10 score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Band {
    /// Below the yellow threshold.
    Red,
    /// From the yellow threshold (inclusive) to the green threshold (exclusive).
    Yellow,
    /// From the green threshold (inclusive) up.
    Green,
}

impl Band {
    /// Stable name for the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Red => "red",
            Band::Yellow => "yellow",
            Band::Green => "green",
        }
    }
}

/// Band thresholds; a boundary value belongs to the interval on its right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandThresholds {
    /// Lowest yellow score (default 3).
    pub yellow_from: f64,
    /// Lowest green score (default 7).
    pub green_from: f64,
}

impl Default for BandThresholds {
    fn default() -> Self {
        Self {
            yellow_from: crate::DEFAULT_YELLOW_FROM,
            green_from: crate::DEFAULT_GREEN_FROM,
        }
    }
}

impl BandThresholds {
    /// Checked thresholds: 0 <= yellow_from <= green_from <= 10.
    pub fn new(yellow_from: f64, green_from: f64) -> Result<Self, ScoringError> {
        if !(0.0..=10.0).contains(&yellow_from)
            || !(0.0..=10.0).contains(&green_from)
            || yellow_from > green_from
        {
            return Err(ScoringError::InvalidConfig {
                field: "band_thresholds",
                reason: format!(
                    "need 0 <= yellow_from <= green_from <= 10, got {yellow_from} and {green_from}"
                ),
            });
        }
        Ok(Self {
            yellow_from,
            green_from,
        })
    }

    /// Band of `score`: red below `yellow_from`, green from `green_from`.
    pub fn band(&self, score: f64) -> Band {
        if score >= self.green_from {
            Band::Green
        } else if score >= self.yellow_from {
            Band::Yellow
        } else {
            Band::Red
        }
    }
}

/// Weight of a scorecard in the global score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Impact {
    /// Not counted (weight 0).
    None,
    /// Weight 1.
    Low,
    /// Weight 2.
    Medium,
    /// Weight 3 (the built-in profile score).
    #[default]
    High,
}

impl Impact {
    /// none/low/medium/high = 0/1/2/3.
    pub fn weight(self) -> f64 {
        match self {
            Impact::None => 0.0,
            Impact::Low => 1.0,
            Impact::Medium => 2.0,
            Impact::High => 3.0,
        }
    }
}

/// Linear worst-to-best mapping of a measure onto 0..10, clamped. Works in either
/// orientation: `worst > best` means "lower is better" (e.g. days since login).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreMapping {
    worst: f64,
    best: f64,
}

impl ScoreMapping {
    /// Checked mapping: finite and `worst != best`.
    pub fn new(worst: f64, best: f64) -> Result<Self, ScoringError> {
        if !worst.is_finite() || !best.is_finite() || worst == best {
            return Err(ScoringError::InvalidConfig {
                field: "worst",
                reason: format!("worst and best must be finite and differ, got {worst} and {best}"),
            });
        }
        Ok(Self { worst, best })
    }

    /// Value that scores 0.
    pub fn worst(&self) -> f64 {
        self.worst
    }

    /// Value that scores 10.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// 10 x (value - worst) / (best - worst), clamped to 0..10; `None` for NaN.
    pub fn score(&self, value: f64) -> Option<f64> {
        if value.is_nan() {
            return None;
        }
        Some((10.0 * (value - self.worst) / (self.best - self.worst)).clamp(0.0, 10.0))
    }
}

/// A named score's maths (Custify style): the worst/best mapping, its bands and its
/// impact on the global score. Resolving the measure (event count in a window,
/// attribute, custom metric or KPI) and the segment is the caller's job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scorecard {
    /// Worst/best mapping onto 0..10.
    pub mapping: ScoreMapping,
    /// Band thresholds.
    pub bands: BandThresholds,
    /// Weight in the global score.
    pub impact: Impact,
}

impl Scorecard {
    /// Score and band of a measured value; `None` for NaN (no value: the scorecard does
    /// not apply).
    pub fn evaluate(&self, value: f64) -> Option<(f64, Band)> {
        self.mapping.score(value).map(|s| (s, self.bands.band(s)))
    }
}

/// Impact-weighted mean of the scorecards that apply to an account (`None` scores are
/// scorecards that do not apply, e.g. outside their segment). `None` when no scorecard
/// with impact above none applies. With only the built-in profile score (impact high)
/// the global score is the profile score.
pub fn global_score(scores: &[(Option<f64>, Impact)]) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for &(s, impact) in scores {
        if let Some(s) = s.filter(|s| !s.is_nan()) {
            num += impact.weight() * s;
            den += impact.weight();
        }
    }
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custify_global_score_example() {
        // a = low, b = medium, c = high: GHS = (a + 2b + 3c) / 6
        let (a, b, c) = (2.0, 5.0, 9.0);
        let g = global_score(&[
            (Some(a), Impact::Low),
            (Some(b), Impact::Medium),
            (Some(c), Impact::High),
        ])
        .unwrap();
        assert!((g - (a + 2.0 * b + 3.0 * c) / 6.0).abs() < 1e-12);
        assert!((g - 39.0 / 6.0).abs() < 1e-12);
        // impact none multiplies by zero
        let g2 = global_score(&[
            (Some(a), Impact::Low),
            (Some(b), Impact::Medium),
            (Some(c), Impact::High),
            (Some(0.0), Impact::None),
        ])
        .unwrap();
        assert_eq!(g, g2);
        // the profile score alone is the global score
        assert_eq!(
            global_score(&[(Some(6.5), Impact::High), (None, Impact::Low)]),
            Some(6.5)
        );
        assert_eq!(global_score(&[(Some(6.5), Impact::None)]), None);
    }

    #[test]
    fn linear_mapping_both_orientations() {
        // Custify login example: 0 logins worst, 10 best.
        let m = ScoreMapping::new(0.0, 10.0).unwrap();
        assert_eq!(m.score(4.0), Some(4.0));
        assert_eq!(m.score(25.0), Some(10.0));
        assert_eq!(m.score(-3.0), Some(0.0));
        // lower is better: 30 days since login worst, 0 best; 6 days -> 10 x (6 - 30) / (0 - 30) = 8
        let r = ScoreMapping::new(30.0, 0.0).unwrap();
        assert!((r.score(6.0).unwrap() - 8.0).abs() < 1e-12);
        assert_eq!(r.score(45.0), Some(0.0));
        assert_eq!(r.score(f64::NAN), None);
        assert!(ScoreMapping::new(1.0, 1.0).is_err());
    }

    #[test]
    fn scorecard_scores_and_bands() {
        // Custify's login example: 0 logins worst, 10 best; 3..6 logins are yellow.
        let card = Scorecard {
            mapping: ScoreMapping::new(0.0, 10.0).unwrap(),
            bands: BandThresholds::default(),
            impact: Impact::Medium,
        };
        assert_eq!(card.evaluate(2.0), Some((2.0, Band::Red)));
        assert_eq!(card.evaluate(3.0), Some((3.0, Band::Yellow)));
        assert_eq!(card.evaluate(6.0), Some((6.0, Band::Yellow)));
        assert_eq!(card.evaluate(7.0), Some((7.0, Band::Green)));
        assert_eq!(card.evaluate(f64::NAN), None);
    }

    #[test]
    fn boundary_goes_right() {
        let b = BandThresholds::default();
        assert_eq!(b.band(2.999), Band::Red);
        assert_eq!(b.band(3.0), Band::Yellow);
        assert_eq!(b.band(6.999), Band::Yellow);
        assert_eq!(b.band(7.0), Band::Green);
        assert_eq!(b.band(10.0), Band::Green);
        assert_eq!(b.band(0.0), Band::Red);
        let c = BandThresholds::new(4.0, 8.5).unwrap();
        assert_eq!(c.band(4.0), Band::Yellow);
        assert_eq!(c.band(8.4), Band::Yellow);
        assert_eq!(c.band(8.5), Band::Green);
        assert!(BandThresholds::new(8.0, 4.0).is_err());
        assert!(BandThresholds::new(-1.0, 4.0).is_err());
    }
}
