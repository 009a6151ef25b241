//! The one error enum of the learner service, mapped to a gRPC status here and nowhere
//! else.

use vitals_learn_core::LearnError;
use vitals_server::ApiError;
use vitals_store::StoreError;

/// What can go wrong in a learner operation.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The maths refused the data (e.g. one class only).
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The data does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request would build a training set over the memory bound
    /// ([`crate::domain::Settings::max_dataset_cells`]).
    #[error("{0}")]
    TooLarge(String),
    /// The work stopped before it finished (e.g. training cancelled before its commit).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
    /// An error already in its gRPC form: the heavy-work budget's (busy, cancelled,
    /// draining), a request field's, or one from the domain's blocking task.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<LearnerError> for ApiError {
    fn from(e: LearnerError) -> Self {
        match e {
            LearnerError::Store(s) => s.into(),
            LearnerError::Learn(
                l @ (LearnError::SingleClass { .. } | LearnError::Empty { .. }),
            ) => ApiError::FailedPrecondition(format!("not enough outcomes: {l}")),
            // The service reports who cancelled (caller or shutdown); this is the fallback.
            LearnerError::Learn(LearnError::Cancelled) => {
                ApiError::Unavailable("cancelled before it finished".into())
            }
            LearnerError::Learn(l) => ApiError::Internal(l.to_string()),
            LearnerError::NotFound(what) => ApiError::NotFound(what),
            LearnerError::FailedPrecondition(m) => ApiError::FailedPrecondition(m),
            LearnerError::TooLarge(m) => ApiError::ResourceExhausted(m),
            LearnerError::Unavailable(m) => ApiError::Unavailable(m),
            LearnerError::Internal(m) => ApiError::Internal(m),
            LearnerError::Api(a) => a,
        }
    }
}

impl From<LearnerError> for tonic::Status {
    fn from(e: LearnerError) -> Self {
        ApiError::from(e).into()
    }
}
