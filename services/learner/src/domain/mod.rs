//! The learner's business logic: training sets from the store's history, model fitting
//! and evaluation with learn-core, and the stored form of a model. Everything here is
//! synchronous CPU work; the gRPC layer runs it on blocking threads.

pub mod features;
pub mod stored;

mod borrowing;
mod churn_model;
mod drift;
mod evaluation;
mod outcomes;
mod prediction;
mod prepared;
mod serving;
mod settings;
#[cfg(test)]
mod tests;
mod training;

pub use borrowing::Borrowing;
pub use churn_model::ChurnModel;
pub use drift::{Drift, KpiDrift, MIN_AUC_CLASS, drift, report_dates};
pub use evaluation::{Evaluated, evaluate};
pub use outcomes::outcomes_by_account;
pub use prediction::predict;
pub use prepared::{Prepared, check_facts, check_facts_on, prepare, prepare_population};
pub use serving::candidate_reason;
pub use settings::{Scope, Settings};
pub use training::{Fitted, fit_scope};
