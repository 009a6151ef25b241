//! Pure maths of the Vitals learner (explained in docs/learning.md): which signals predict
//! churn, and proof that they do. No I/O, no async, no database: plain data in, plain data out, so
//! the learner service can run it on a blocking thread and persist what it returns.
//!
//! The usual flow for a profile:
//! 1. [`build_training_set`]: observation points, outcomes and a feature function of
//!    (account, date) that sees only the past -> labelled [`Dataset`];
//! 2. [`train`]: `lambda` by time-ordered CV, L2 logistic regression with class weights
//!    ([`LogisticModel`]), KPI weights shrunk toward the prior ([`WeightReport`]), in-sample
//!    [`Evaluation`] (AUC, top-decile lift, calibration, Brier);
//! 3. [`backtest_model`]: train on the past, test on the future (the book's thirds scheme);
//!    [`backtest`] does the same for any score, e.g. the health score itself;
//! 4. [`suggest_category_weights`] from a fit on category scores;
//! 5. [`LogisticModel::predict_proba`]: each account's churn probability.
//!
//! `docs/learning.md` gives the method, the formulas and the measured figures.

pub mod backtest;
pub mod borrow;
pub mod calibration;
pub mod cancel;
pub mod challenger;
pub mod dataset;
pub mod drift;
pub mod error;
pub mod features;
pub mod gbm;
pub mod logistic;
pub mod metrics;
pub mod prepare;
pub mod standardize;
pub mod synthetic;
pub mod train;
pub mod weights;

pub use backtest::{BacktestReport, Fold, FoldResult, backtest, split_at_date, time_ordered_folds};
pub use borrow::{
    DEFAULT_DEVIATION_GRID, GlobalModel, fit_borrowing, fit_kpis_borrowing, select_deviation,
    train_kpis_borrowing,
};
pub use calibration::{Calibration, Platt, calibrate_out_of_fold, expected_calibration_error};
pub use cancel::Cancel;
pub use challenger::{
    ChallengedKpiModel, ChallengerBacktest, ChallengerDecision, ChallengerRule, GbmCv, ServedKind,
    ServedModel, backtest_challenger, challenge_trained, gbm_cv, train_kpis_with_challenger,
};
pub use dataset::{
    Dataset, DatedSeries, LabelOptions, ObservationPoint, Outcome, OutcomeKind, TrainingSet,
    build_training_set, regular_observations,
};
pub use drift::{DriftLevel, PSI_FLOOR, PSI_MODERATE, PSI_SHIFT, Reference as DriftReference};
pub use error::{LearnError, Result};
pub use features::{
    FeatureLayout, FeatureTransform, LOG_SUFFIX, MISSING_PERCENTILE, VALUE_SUFFIX, column_value,
    signed_log1p,
};
pub use gbm::{GbmModel, GbmOptions};
pub use logistic::{
    ClassWeight, LogisticModel, LogisticOptions, SolverOptions, newton_solve, newton_solve_offset,
};
pub use metrics::{
    CalibrationBin, Evaluation, auc, brier_score, calibration_table, lift, top_decile_lift,
};
pub use prepare::{
    KpiTerm, Preparation, PreparationOptions, PreparedKpi, correlation_groups, skewness,
};
pub use standardize::Standardizer;
pub use train::{
    CategorySuggestion, FittedForm, KpiForm, LambdaScore, LambdaSelection, LayoutChoice,
    LayoutScore, TrainOptions, TrainedKpiModel, TrainedModel, backtest_kpis, backtest_model,
    fit_cv, fit_kpis_cv, select_lambda, select_layout, suggest_category_weights, train, train_kpis,
};
pub use weights::{DEFAULT_N0, Direction, KpiSpec, KpiWeight, WeightReport, kpi_weights};
