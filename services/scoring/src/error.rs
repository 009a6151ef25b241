//! The one error enum of the scoring service's operations, mapped to a gRPC status here
//! and nowhere else. (Request validation answers [`ApiError::InvalidArgument`] directly,
//! from `convert`.)

use vitals_server::ApiError;
use vitals_store::StoreError;

/// What can go wrong in a scoring operation.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// A request-level error (bad input, not found, cancelled, ...), already phrased for
    /// the caller.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed (UNAVAILABLE when the database cannot be reached).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// scoring-core rejected its input: a bug.
    #[error("scoring-core: {0}")]
    Core(#[from] vitals_scoring_core::ScoringError),
    /// A stored value could not be serialised: a bug.
    #[error("serialising a snapshot: {0}")]
    Serialise(#[from] serde_json::Error),
}

impl From<vitals_scorecard::ScorecardError> for ScoringError {
    fn from(e: vitals_scorecard::ScorecardError) -> Self {
        Self::Api(e.into())
    }
}

impl From<ScoringError> for ApiError {
    fn from(e: ScoringError) -> Self {
        match e {
            ScoringError::Api(a) => a,
            ScoringError::Store(s) => ApiError::from(s),
            ScoringError::Core(c) => ApiError::Internal(format!("scoring-core: {c}")),
            ScoringError::Serialise(s) => ApiError::Internal(s.to_string()),
        }
    }
}

impl From<ScoringError> for tonic::Status {
    fn from(e: ScoringError) -> Self {
        ApiError::from(e).into()
    }
}

/// Result of the scoring service's operations.
pub type Result<T, E = ScoringError> = std::result::Result<T, E>;

impl From<vitals_server::Cancelled> for ScoringError {
    fn from(e: vitals_server::Cancelled) -> Self {
        Self::Api(e.into())
    }
}
