//! The crate's error type.

/// Everything that can go wrong in scoring-core: all of it is invalid input, since the
/// maths itself is total (missing values are data, not errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringError {
    /// A length does not match what another argument implies.
    #[error("{field}: expected length {expected}, got {actual}")]
    LengthMismatch {
        /// The offending argument or field.
        field: &'static str,
        /// The length implied by the other inputs.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// A weight is negative, infinite or NaN.
    #[error("{field}: weight must be finite and >= 0, got {value}")]
    InvalidWeight {
        /// The offending field (e.g. `category_weights.usage`, `kpi_weights`).
        field: String,
        /// The rejected value.
        value: f64,
    },
    /// An account refers to a profile index that does not exist.
    #[error("profile_of[{account}]: profile index {profile} out of range (have {profiles})")]
    UnknownProfile {
        /// Row of the account.
        account: usize,
        /// The profile index it refers to.
        profile: u32,
        /// How many profiles were given.
        profiles: usize,
    },
    /// A scorecard or band configuration that cannot produce a score.
    #[error("{field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// Two KPIs (built-in or custom) would get the same name.
    #[error("kpi name {0} is defined twice")]
    DuplicateKpi(String),
}
