//! The error of scorecard evaluation, phrased for the caller; the services map it to their
//! API errors (`vitals_server::ApiError` converts it, variant for variant).

use vitals_store::StoreError;

/// What can go wrong while compiling or evaluating a rule or measuring accounts.
#[derive(Debug, thiserror::Error)]
pub enum ScorecardError {
    /// An expression given on `field` is not accepted.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// Path of the offending field in the request.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A budget ran out (an evaluation's comprehension steps); the message says which.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A batch of evaluations ran past its deadline or was abandoned.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an unexpected failure (a panic, a task that ended without an answer).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScorecardError {
    /// Shorthand for an invalid-argument error on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<vitals_store::sea_orm::DbErr> for ScorecardError {
    fn from(e: vitals_store::sea_orm::DbErr) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio::task::JoinError> for ScorecardError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(e.to_string())
    }
}
