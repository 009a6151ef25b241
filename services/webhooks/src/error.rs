//! The one error enum of the webhooks service, mapped to a gRPC status here and nowhere
//! else.

use vitals_server::ApiError;
use vitals_store::StoreError;

/// What can go wrong in a webhooks operation.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow the operation (e.g. redelivering to a disabled
    /// subscription).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bug or an unexpected failure.
    #[error("{0}")]
    Internal(String),
    /// A request field's error, already in its gRPC form.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Store(s) => s.into(),
            WebhookError::NotFound(what) => ApiError::NotFound(what),
            WebhookError::FailedPrecondition(m) => ApiError::FailedPrecondition(m),
            WebhookError::Internal(m) => ApiError::Internal(m),
            WebhookError::Api(a) => a,
        }
    }
}

impl From<WebhookError> for tonic::Status {
    fn from(e: WebhookError) -> Self {
        ApiError::from(e).into()
    }
}
