//! The error type of the profiles crate and its mapping to the API's errors.

use vitals_server::ApiError;

/// What can go wrong in the profiles service.
#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    /// A request-level error (bad input, not found, ...), already phrased for the caller.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] vitals_store::StoreError),
    /// No profile is marked default, so accounts no rule matches have nowhere to go.
    #[error("no default profile exists")]
    NoDefaultProfile,
    /// A background computation failed to complete (a bug).
    #[error("computation failed: {0}")]
    Task(String),
}

impl From<vitals_scorecard::ScorecardError> for ProfilesError {
    fn from(e: vitals_scorecard::ScorecardError) -> Self {
        Self::Api(e.into())
    }
}

impl From<ProfilesError> for ApiError {
    fn from(e: ProfilesError) -> Self {
        match e {
            ProfilesError::Api(a) => a,
            ProfilesError::Store(d) => ApiError::from(d),
            ProfilesError::NoDefaultProfile => {
                ApiError::FailedPrecondition("no default profile exists".into())
            }
            ProfilesError::Task(t) => ApiError::Internal(t),
        }
    }
}

impl From<ProfilesError> for tonic::Status {
    fn from(e: ProfilesError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<tokio::task::JoinError> for ProfilesError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Task(e.to_string())
    }
}

/// Result of the profiles crate.
pub type Result<T, E = ProfilesError> = std::result::Result<T, E>;
