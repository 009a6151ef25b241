//! The one mapping from Vitals errors to gRPC status codes.
//!
//! Services turn their domain errors into [`ApiError`]; `From<ApiError> for Status` is the
//! only place codes are chosen. Messages are lowercase, have no trailing period, and name
//! the offending field. An invalid field is also sent as a `google.rpc.BadRequest` detail
//! ([`invalid_field`]), so clients read the field without parsing the message.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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
    /// A budget ran out (e.g. a CEL rule's evaluation steps); the message says which.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The work ran past its deadline and was abandoned.
    #[error("{0}")]
    DeadlineExceeded(String),
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
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
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
        if let ApiError::InvalidArgument { field, message } = &e {
            return invalid_field(field, message);
        }
        Status::new(e.code(), e.to_string())
    }
}

/// INVALID_ARGUMENT on `field` of the request: the message `{field}: {description}`, and
/// the same as a `google.rpc.BadRequest` field violation in the status details
/// (`grpc-status-details-bin`). Every validation error goes through here (as
/// [`ApiError::InvalidArgument`]).
pub fn invalid_field(field: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

impl From<vitals_store::StoreError> for ApiError {
    /// A database that cannot be reached (see [`vitals_store::is_unavailable`]) is
    /// UNAVAILABLE, so that clients retry; any other storage failure is INTERNAL.
    fn from(e: vitals_store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable(DATABASE_UNAVAILABLE.into())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<vitals_scorecard::ScorecardError> for ApiError {
    /// Scorecard evaluation's errors are already phrased for the caller: variant for variant.
    fn from(e: vitals_scorecard::ScorecardError) -> Self {
        use vitals_scorecard::ScorecardError as E;
        match e {
            E::InvalidArgument { field, message } => Self::InvalidArgument { field, message },
            E::ResourceExhausted(m) => Self::ResourceExhausted(m),
            E::DeadlineExceeded(m) => Self::DeadlineExceeded(m),
            E::Store(e) => e.into(),
            E::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        vitals_store::StoreError::from(e).into()
    }
}

/// The message of UNAVAILABLE when the database cannot be reached (the driver's detail
/// goes to the log).
pub const DATABASE_UNAVAILABLE: &str = "database unavailable: retry later";

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
        let v = &s
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].field.as_str(), v[0].description.as_str()),
            ("events[3].account_id", "must not be empty")
        );
        // Other codes carry no details.
        let s: Status = ApiError::NotFound("profile \"x\"".into()).into();
        assert!(s.get_details_bad_request().is_none() && s.details().is_empty());
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

    #[test]
    fn unreachable_database_is_unavailable_and_other_storage_errors_internal() {
        use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
        use std::sync::Arc;
        let io = |kind| {
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(sea_orm::sqlx::Error::Io(
                std::io::Error::from(kind),
            ))))
        };
        let unavailable = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::ConnectionRefused),
            io(std::io::ErrorKind::UnexpectedEof),
            DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
                sea_orm::sqlx::Error::PoolTimedOut,
            ))),
            // What a connection closed at once by a proxy gives on PostgreSQL.
            DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
                sea_orm::sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into()),
            ))),
        ];
        for e in unavailable {
            // Through the store's error (ingestion, learner) and directly (profiles, scoring).
            let via_store: Status =
                ApiError::from(vitals_store::StoreError::from(e.clone())).into();
            let direct: Status = ApiError::from(e.clone()).into();
            for s in [via_store, direct] {
                assert_eq!(s.code(), Code::Unavailable, "{e}");
                assert_eq!(s.message(), DATABASE_UNAVAILABLE);
            }
        }
        for e in [
            DbErr::Custom("bad row".into()),
            DbErr::RecordNotFound("x".into()),
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(
                sea_orm::sqlx::Error::RowNotFound,
            ))),
        ] {
            let s: Status = ApiError::from(vitals_store::StoreError::from(e.clone())).into();
            assert_eq!(s.code(), Code::Internal, "{e}");
        }
    }
}
