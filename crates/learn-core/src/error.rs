//! The error type of the crate.

/// Everything that can go wrong in `vitals-learn-core`.
///
/// Messages are lowercase and name the offending input so that the learner service can
/// pass them on as `InvalidArgument` / `FailedPrecondition` details unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    /// Two inputs that must describe the same observations have different lengths.
    #[error("{what} has {got} entries, expected {expected}")]
    ShapeMismatch {
        /// Which input is wrong (e.g. `labels`).
        what: &'static str,
        /// The length implied by the other inputs.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("{what} contains a non-finite value at index {index}")]
    NonFinite {
        /// Which input holds the bad value.
        what: &'static str,
        /// Position of the first bad value (row-major for matrices).
        index: usize,
    },
    /// No observations at all.
    #[error("{what} is empty")]
    Empty {
        /// Which input is empty.
        what: &'static str,
    },
    /// The labels hold only churned or only retained observations, so nothing can be learned
    /// or ranked.
    #[error(
        "{what} has {positives} churned and {negatives} retained observations: both classes are needed"
    )]
    SingleClass {
        /// Which data set (e.g. `training set`, `backtest fold 1 test set`).
        what: String,
        /// Number of churned (positive) observations.
        positives: usize,
        /// Number of retained (negative) observations.
        negatives: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The computation was cancelled through its [`crate::Cancel`] check (the caller went
    /// away or the server is shutting down).
    #[error("cancelled")]
    Cancelled,
    /// The gradient-boosting library failed (fit, contributions or its JSON form).
    #[error("gradient-boosted model: {reason}")]
    Booster {
        /// The library's message.
        reason: String,
    },
    /// The Newton solver's linear system could not be solved even after regularising it.
    #[error("the hessian is not positive definite (lambda {lambda}); add regularisation")]
    Singular {
        /// The regularisation strength in use.
        lambda: f64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = LearnError> = std::result::Result<T, E>;

/// Checks that every value is finite, naming the input in the error.
pub(crate) fn check_finite(
    what: &'static str,
    values: impl IntoIterator<Item = f64>,
) -> Result<()> {
    for (index, v) in values.into_iter().enumerate() {
        if !v.is_finite() {
            return Err(LearnError::NonFinite { what, index });
        }
    }
    Ok(())
}

/// Checks that `got == expected`, naming the input in the error.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(LearnError::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}
