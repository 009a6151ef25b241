//! The one error enum of the ingestion service's operations, mapped to a gRPC status here
//! and nowhere else. (Request validation answers [`ApiError::InvalidArgument`] directly,
//! from `convert`.)

use vitals_server::ApiError;
use vitals_store::StoreError;

/// What can go wrong in an ingestion operation once the request is valid.
#[derive(Debug, thiserror::Error)]
pub enum IngestionError {
    /// The account asked for does not exist.
    #[error("account {0:?} not found")]
    AccountNotFound(String),
    /// An account's parent is unknown or makes a cycle (INVALID_ARGUMENT naming
    /// `field`, `accounts[i].parent_id`); nothing was written.
    #[error("{field}: {reason}")]
    Parent {
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server is draining: no new write starts.
    #[error("server shutting down")]
    ShuttingDown,
    /// The store failed (UNAVAILABLE when the database cannot be reached).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sentiment scoring (a blocking task) failed: a bug.
    #[error("sentiment task failed: {0}")]
    Sentiment(String),
}

impl From<IngestionError> for ApiError {
    fn from(e: IngestionError) -> Self {
        match e {
            IngestionError::AccountNotFound(id) => ApiError::NotFound(format!("account {id:?}")),
            IngestionError::Parent { field, reason } => ApiError::invalid(field, reason),
            IngestionError::ShuttingDown => ApiError::Unavailable("server shutting down".into()),
            IngestionError::Store(s) => ApiError::from(s),
            IngestionError::Sentiment(reason) => {
                ApiError::Internal(format!("sentiment task failed: {reason}"))
            }
        }
    }
}

impl From<IngestionError> for tonic::Status {
    fn from(e: IngestionError) -> Self {
        ApiError::from(e).into()
    }
}

/// Result of the ingestion service's operations.
pub type Result<T, E = IngestionError> = std::result::Result<T, E>;
