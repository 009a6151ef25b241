//! The inputs, options and per-account results of [`super::score_population`].

use super::*;

/// Largest number of drivers kept per side (down and up).
pub const MAX_DRIVERS: usize = 16;

/// Weights of the five KPI categories in a profile score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryWeights {
    /// Product usage.
    pub usage: f64,
    /// Customer conversations.
    pub conversations: f64,
    /// CSM pulse.
    pub pulse: f64,
    /// Contract.
    pub contract: f64,
    /// Custom metrics.
    pub custom: f64,
}

impl Default for CategoryWeights {
    /// Equal weights.
    fn default() -> Self {
        Self {
            usage: 1.0,
            conversations: 1.0,
            pulse: 1.0,
            contract: 1.0,
            custom: 1.0,
        }
    }
}

impl CategoryWeights {
    /// In [`Category::WEIGHTED`] order.
    pub fn as_array(&self) -> [f64; 5] {
        [
            self.usage,
            self.conversations,
            self.pulse,
            self.contract,
            self.custom,
        ]
    }

    /// From weights in [`Category::WEIGHTED`] order.
    pub fn from_array(a: [f64; 5]) -> Self {
        Self {
            usage: a[0],
            conversations: a[1],
            pulse: a[2],
            contract: a[3],
            custom: a[4],
        }
    }

    /// The weights scaled to sum to 1 (a non-finite or non-positive weight counts as 0);
    /// `None` when no weight is positive.
    pub fn normalised(&self) -> Option<Self> {
        let a = self.as_array();
        let usable = |x: f64| x.is_finite() && x > 0.0;
        let s: f64 = a.iter().copied().filter(|x| usable(*x)).sum();
        (s > 0.0).then(|| Self::from_array(a.map(|x| if usable(x) { x / s } else { 0.0 })))
    }

    /// The category weights a profile scores with under its weights mode: its own
    /// (`manual`), the learner's suggestion (`learned`), or their mean (`blended`), each
    /// normalised; the profile's own when there is no usable suggestion, the suggestion
    /// when the profile has no usable weights of its own, equal weights when neither.
    pub fn chosen(mode: WeightsMode, manual: Option<&Self>, suggested: Option<&Self>) -> Self {
        let manual = manual.and_then(Self::normalised);
        let suggested = suggested.and_then(Self::normalised);
        let chosen = match (mode, manual, suggested) {
            (WeightsMode::Learned, _, Some(s)) => Some(s),
            (WeightsMode::Blended, Some(m), Some(s)) => {
                let (m, s) = (m.as_array(), s.as_array());
                Some(Self::from_array(
                    [0, 1, 2, 3, 4].map(|i| (m[i] + s[i]) / 2.0),
                ))
            }
            (_, Some(m), _) => Some(m),
            (_, None, s) => s,
        };
        chosen.unwrap_or_default()
    }
}

/// How a profile's category weights are chosen (the profile's `weights_mode`; see
/// [`CategoryWeights::chosen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsMode {
    /// The profile's own weights.
    #[default]
    Manual,
    /// The learner's suggested weights once it has some.
    Learned,
    /// The mean of the profile's own and the learner's suggested weights.
    Blended,
}

impl WeightsMode {
    /// From its stored name (`manual`, `learned`, `blended`); any other name is manual.
    pub fn from_name(name: &str) -> Self {
        match name {
            "learned" => Self::Learned,
            "blended" => Self::Blended,
            _ => Self::Manual,
        }
    }
}

/// Scores of the five categories, in [`Category::WEIGHTED`] order; `None` when the
/// category has no KPI with a value (or weight 0).
pub type CategoryScores = [Option<f64>; 5];

/// How one health profile scores its members.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    /// Weight of each category in the profile score.
    pub category_weights: CategoryWeights,
    /// Weight of each KPI (catalogue order) within its category (from the learner);
    /// for a custom score field, its own weight in the profile score. `None` = uniform
    /// (every KPI weight 1). Weight 0 leaves a KPI out.
    pub kpi_weights: Option<Vec<f64>>,
    /// Fewest members for comparing within the profile (default 10); below it the
    /// members are compared with the whole portfolio and flagged.
    pub min_population: usize,
    /// Points the usage sub-score moves at momentum +-1 (default 1).
    pub trend_weight: f64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            category_weights: CategoryWeights::default(),
            kpi_weights: None,
            min_population: 10,
            trend_weight: 1.0,
        }
    }
}

/// Options of [`score_population`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    /// Drivers kept per side (pulling down, pulling up), at most [`MAX_DRIVERS`].
    pub drivers: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self { drivers: 3 }
    }
}

/// Everything [`score_population`] needs.
#[derive(Debug, Clone, Copy)]
pub struct PopulationInput<'a> {
    /// The KPI definitions, one per matrix column ([`crate::Catalogue::kpis`]).
    pub kpis: &'a [KpiDef],
    /// KPI values, accounts x KPIs.
    pub matrix: &'a KpiMatrix,
    /// Profile index of each account (row), into `profiles`.
    pub profile_of: &'a [u32],
    /// Profile configurations.
    pub profiles: &'a [ProfileConfig],
    /// Momentum and webhook adjustment per account, if computed.
    pub signals: Option<&'a [AccountSignals]>,
}

/// How many of the KPIs that count in the account's profile had a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// KPIs with a value.
    pub present: u16,
    /// KPIs with a weight above 0 in the profile.
    pub total: u16,
}

impl Coverage {
    /// present / total (1 when the profile counts no KPI).
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            f64::from(self.present) / f64::from(self.total)
        }
    }
}

/// One driver of a score: a KPI pulling it up or down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Driver {
    /// KPI column.
    pub kpi: u32,
    /// weight x (KPI score - 5) / sum of weights, in score points.
    pub contribution: f32,
    /// Direction-adjusted percentile among the peers (0..1).
    pub percentile: f32,
    /// KPI score 0..10.
    pub kpi_score: f32,
}

pub(super) const EMPTY_DRIVER: Driver = Driver {
    kpi: u32::MAX,
    contribution: 0.0,
    percentile: f32::NAN,
    kpi_score: f32::NAN,
};

/// The result for one account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountScore {
    /// Profile score 0..10; `None` when no category or score field had a value.
    pub score: Option<f64>,
    /// Category sub-scores; the usage one includes the momentum and webhook adjustment.
    pub categories: CategoryScores,
    /// Points added to the usage sub-score by momentum x trend weight + webhook
    /// (after clamping the sub-score to 0..10).
    pub usage_adjustment: f64,
    /// Share of the profile's KPIs with a value.
    pub coverage: Coverage,
    /// Compared with the whole portfolio because the profile is too small.
    pub fallback: bool,
}
