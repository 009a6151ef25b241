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
