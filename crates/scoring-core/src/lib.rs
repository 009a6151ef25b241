//! vitals-scoring-core: the health-score maths of Vitals, pure and deterministic
//! (no I/O, no async, no database), shared by the scoring service, the profiles service
//! (scorecard preview) and the learner (KPI features).
//!
//! The pipeline, as in docs/scoring.md:
//! 1. [`Catalogue::new`] lists the KPIs (55 built-ins + four per key event type: its
//!    count, share, days since last use and change, see [`EventDetail`] + one per
//!    custom metric and custom score field).
//! 2. [`compute_kpis`] turns per-account inputs ([`AccountInputs`]: daily roll-ups,
//!    interactions, pulses, subscriptions, custom values, webhook signals) into a
//!    [`KpiMatrix`] plus each account's momentum and webhook adjustment, as of a day T.
//! 3. [`score_population`] ranks every KPI within each health profile (mid-rank
//!    percentiles), builds category sub-scores, the profile score, coverage and drivers.
//! 4. [`explain_account`] and [`explain_change`] explain one score and the change
//!    between two snapshots; [`ScoreMapping`], [`BandThresholds`] and [`global_score`]
//!    are the Custify-style scorecards; [`distribution`] summarises a population.

//!
//! ```
//! use chrono::NaiveDate;
//! use vitals_scoring_core::*;
//!
//! let day = |d| NaiveDate::from_ymd_opt(2024, 3, d).unwrap();
//! let catalogue = Catalogue::new(&CatalogueSpec {
//!     event_types: vec!["login".into(), "report".into()],
//!     ..CatalogueSpec::default()
//! })?;
//! // Three accounts; account i logs in i + 1 times on each of the last i + 1 days.
//! let usage: Vec<Vec<DailyUsage>> = (0..3u32)
//!     .map(|i| {
//!         (0..=i)
//!             .map(|d| DailyUsage {
//!                 day: day(31 - d),
//!                 event_type: 0,
//!                 count: i + 1,
//!                 distinct_users: 1,
//!                 value_sum: 0.0,
//!             })
//!             .collect()
//!     })
//!     .collect();
//! let inputs: Vec<AccountInputs<'_>> =
//!     usage.iter().map(|u| AccountInputs { usage: u, ..AccountInputs::default() }).collect();
//! let kpis = compute_kpis(&catalogue, &KpiConfig::default(), day(31), &inputs)?;
//! assert_eq!(kpis.matrix.get(2, Builtin::KeyEvents.index()), Some(9.0));
//!
//! let profiles = [ProfileConfig { min_population: 1, ..ProfileConfig::default() }];
//! let input = PopulationInput {
//!     kpis: catalogue.kpis(),
//!     matrix: &kpis.matrix,
//!     profile_of: &[0, 0, 0],
//!     profiles: &profiles,
//!     signals: Some(&kpis.signals),
//! };
//! let scores = score_population(&input, &ScoreOptions::default())?;
//! let (worst, best) = (scores.account(0), scores.account(2));
//! assert!(worst.score < best.score);
//! let why = explain_account(&input, &scores, 0)?;
//! assert!(why.contributions[0].contribution < 0.0);
//! let band = BandThresholds::default().band(best.score.unwrap_or(0.0));
//! # let _ = band;
//! # Ok::<(), ScoringError>(())
//! ```

#![warn(missing_docs)]

mod catalogue;
mod compute;
mod distribution;
mod error;
mod explain;
mod inputs;
mod matrix;
mod percentile;
mod population;
mod rollup;
mod scorecard;
mod trend;

pub use catalogue::{
    BUILTIN_COUNT, Builtin, Catalogue, CatalogueSpec, Category, CustomMetricSpec, Direction,
    EventDetail, KpiDef, ScoreMode, slug,
};
pub use compute::{
    AccountSignals, KpiBatch, KpiConfig, KpiScratch, compute_account, compute_kpis, event_count,
    pct_change, webhook_points,
};
pub use distribution::{Distribution, distribution, quantile_sorted};
pub use error::ScoringError;
pub use explain::{ChangeItem, ScoreChange, explain_change};
pub use inputs::{
    AccountAttributes, AccountInputs, Channel, ContactRole, CustomMetricValue, DailyUsage,
    Interaction, InteractionDirection, Pulse, ScoreFieldValue, Subscription, WebhookSignal,
};
pub use matrix::KpiMatrix;
pub use percentile::{mid_rank_percentiles, percentile_in_sorted};
pub use population::{
    AccountScore, CategoryScores, CategoryWeights, Coverage, Driver, Explanation, KpiContribution,
    MAX_DRIVERS, PopulationInput, PopulationScores, ProfileConfig, ScoreOptions, WeightsMode,
    explain_account, score_population,
};
pub use rollup::{Rollup, RollupMethod, current_mrr, rollup};
pub use scorecard::{Band, BandThresholds, Impact, ScoreMapping, Scorecard, global_score};
pub use trend::{MomentumLabel, TrendConfig, momentum, trend_adjustment, trend_z};

/// The KPI window, in days, when a profile sets none (`KpiConfig::default`, the store's
/// input loader, profiles, scorecards and the learner all use this one).
pub const DEFAULT_WINDOW_DAYS: u32 = 28;

/// Past windows the trend compares the current one against by default.
pub const DEFAULT_HISTORY_WINDOWS: u32 = 3;

/// Lowest yellow score when a profile or scorecard sets no band thresholds.
pub const DEFAULT_YELLOW_FROM: f64 = 3.0;

/// Lowest green score when a profile or scorecard sets no band thresholds.
pub const DEFAULT_GREEN_FROM: f64 = 7.0;
