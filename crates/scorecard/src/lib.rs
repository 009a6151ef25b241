//! Scorecard evaluation for Vitals, with no proto and no gRPC: the CEL rules over accounts
//! ([`rules`]: profile assignment rules, bulk filters, scorecard segments, with their
//! limits and their evaluation pool), the measures of scorecards ([`measure`]), and the
//! default profile ([`defaults`]). The profiles service (rule checks, previews) and the
//! scoring service (scorecard snapshots) both evaluate scorecards through this crate.

mod error;

pub mod defaults;
pub mod measure;
pub mod rules;

pub use error::ScorecardError;
