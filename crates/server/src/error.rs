//! The one mapping from Vitals errors to gRPC status codes.
//!
//! Services turn their domain errors into [`ApiError`]; `From<ApiError> for Status` is the
//! only place codes are chosen. Messages are lowercase, have no trailing period, and name
//! the offending field.

use tonic::{Code, Status};

/// An error as a caller of the API sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: `field` names what is wrong (e.g. `events[3].account_id`).
    #[error("{field}: {message}")]
    InvalidArgument {
        /// Path of the offending field in the request.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The system is not in a state where the call can succeed (e.g. no model trained).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency (database, another service) is down; the call may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A bounded resource is used up (e.g. every heavy-work slot is busy, or the request
    /// would build a training set over the memory bound); the message names the limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The RPC belongs to a part of Vitals that is not built yet.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or an unexpected failure; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for an invalid-argument error on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The gRPC code this error is sent with.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unavailable(_) => Code::Unavailable,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        if let ApiError::Internal(detail) = &e {
            tracing::error!(error = %detail, "internal error");
            return Status::internal("internal error (see the server log)");
        }
        Status::new(e.code(), e.to_string())
    }
}

impl From<vitals_store::StoreError> for ApiError {
    fn from(e: vitals_store::StoreError) -> Self {
        match e {
            vitals_store::StoreError::Connect { .. } => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        match e {
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                Self::Unavailable(format!("database unavailable: {e}"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The answer of an RPC whose part of Vitals is not built yet: UNIMPLEMENTED, saying so.
pub fn not_yet(rpc: &str, issue: &str) -> Status {
    ApiError::Unimplemented(format!("{rpc} is not implemented yet (tracked in {issue})")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let s: Status = ApiError::invalid("events[3].account_id", "must not be empty").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "events[3].account_id: must not be empty");
        let s: Status = ApiError::NotFound("profile \"x\"".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "profile \"x\" not found")
        );
        let s: Status = ApiError::Internal("secret detail".into()).into();
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("secret"));
        assert_eq!(not_yet("Train", "issue 6").code(), Code::Unimplemented);
    }
}
