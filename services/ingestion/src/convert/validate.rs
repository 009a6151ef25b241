//! Input rules shared by every ingestion RPC (see the header of `ingestion.proto`).
//!
//! Every check takes the path of the field it looks at (e.g. `events[3].account_id`) so
//! the error names it; batch checks stop at the first bad item.

use chrono::{DateTime, TimeDelta, Utc};
use vitals_server::ApiError;
use vitals_server::validate as sv;

/// Most items in one batch RPC (and in one IngestEvents message).
pub const MAX_BATCH: usize = 10_000;
/// Longest customer id (account, contact, event, interaction, subscription), in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest name (event type, metric, field, signal), in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Earliest accepted time: 2000-01-01T00:00:00Z (the rule of every service:
/// [`vitals_server::validate`]).
pub const MIN_TIME_SECS: i64 = sv::EARLIEST_SECS;
/// How far in the future a time may be.
pub const MAX_FUTURE: TimeDelta = sv::MAX_AHEAD;
/// Largest magnitude of a stored, summed number (event values, metric samples, MRR...).
pub const MAX_ABS_VALUE: f64 = sv::MAX_ABS_VALUE;

/// Checks that a batch holds 1..=[`MAX_BATCH`] items.
pub fn batch_len(field: &str, len: usize) -> Result<(), ApiError> {
    if len == 0 {
        return Err(ApiError::invalid(field, "must hold at least one item"));
    }
    if len > MAX_BATCH {
        return Err(ApiError::invalid(
            field,
            format!("holds {len} items, more than the limit of 10,000"),
        ));
    }
    Ok(())
}

fn no_control(field: &str, s: &str) -> Result<(), ApiError> {
    if s.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "contains a control character"));
    }
    Ok(())
}

/// A required customer id: 1..256 bytes, no control characters.
pub fn id(field: &str, s: &str) -> Result<String, ApiError> {
    if s.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if s.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid(field, "longer than 256 bytes"));
    }
    no_control(field, s)?;
    Ok(s.to_string())
}

/// An optional customer id: empty means none.
pub fn opt_id(field: &str, s: &str) -> Result<Option<String>, ApiError> {
    if s.is_empty() {
        Ok(None)
    } else {
        id(field, s).map(Some)
    }
}

/// A required name of 1..128 bytes without control characters (event types).
pub fn name(field: &str, s: &str) -> Result<String, ApiError> {
    if s.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid(field, "longer than 128 bytes"));
    }
    no_control(field, s)?;
    Ok(s.to_string())
}

/// A required identifier-like name: 1..128 bytes matching `[a-z][a-z0-9_]*` (metrics,
/// score fields, signals), so it can become a KPI name.
pub fn snake_name(field: &str, s: &str) -> Result<String, ApiError> {
    let s = name(field, s)?;
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(ApiError::invalid(field, "must match [a-z][a-z0-9_]*"));
    }
    Ok(s)
}

/// Optional free text of at most `max` bytes without NUL; empty means none.
pub fn text(field: &str, s: &str, max: usize) -> Result<Option<String>, ApiError> {
    if s.len() > max {
        return Err(ApiError::invalid(field, format!("longer than {max} bytes")));
    }
    sv::no_nul(field, s)?;
    Ok(if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    })
}

/// A finite number.
pub fn finite(field: &str, x: f64) -> Result<f64, ApiError> {
    if !x.is_finite() {
        return Err(ApiError::invalid(field, "must be a finite number"));
    }
    Ok(x)
}

/// A stored number that may be summed: finite and within -1e15..1e15
/// ([`MAX_ABS_VALUE`]), so that no daily or window sum can overflow.
pub fn value(field: &str, x: f64) -> Result<f64, ApiError> {
    sv::value(field, x)
}

/// A 1..5 rating.
pub fn rating(field: &str, v: i32) -> Result<i32, ApiError> {
    if !(1..=5).contains(&v) {
        return Err(ApiError::invalid(
            field,
            format!("must be in 1..5 (got {v})"),
        ));
    }
    Ok(v)
}

/// Any well-formed timestamp (0001-01-01..9999-12-31, no other range rule: e.g. a
/// date-of-birth attribute, the end of a contract).
pub fn any_time(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>, ApiError> {
    sv::timestamp(field, t)
}

/// A time from 2000-01-01 to 24 h from `now`.
pub fn time_at(
    field: &str,
    t: &prost_types::Timestamp,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    sv::data_time(field, t, now)
}

/// A required time from 2000-01-01 to 24 h from `now`.
pub fn required_time(
    field: &str,
    t: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let t = t.ok_or_else(|| ApiError::invalid(field, "is required"))?;
    time_at(field, t, now)
}

/// An enum value that must be known; `required` rejects the UNSPECIFIED zero.
pub fn enum_value<E: TryFrom<i32>>(field: &str, v: i32, required: bool) -> Result<E, ApiError> {
    if v == 0 && required {
        return Err(ApiError::invalid(field, "must be set"));
    }
    E::try_from(v).map_err(|_| ApiError::invalid(field, format!("unknown value {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert!(id("a", "acme").is_ok());
        assert_eq!(id("a", "").unwrap_err().to_string(), "a: must not be empty");
        assert_eq!(
            id("a", &"x".repeat(257)).unwrap_err().to_string(),
            "a: longer than 256 bytes"
        );
        assert!(id("a", &"x".repeat(256)).is_ok());
        assert!(id("a", "a\nb").is_err());
        assert!(snake_name("n", "nps_score2").is_ok());
        assert!(snake_name("n", "NPS").is_err());
        assert!(snake_name("n", "2x").is_err());
        assert!(name("n", &"y".repeat(129)).is_err());
    }

    #[test]
    fn times() {
        let now = Utc::now();
        let ts = |s: i64| prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        };
        assert!(time_at("t", &ts(MIN_TIME_SECS), now).is_ok());
        assert_eq!(
            time_at("t", &ts(MIN_TIME_SECS - 1), now)
                .unwrap_err()
                .to_string(),
            "t: before 2000-01-01"
        );
        let future = now.timestamp() + 25 * 3600;
        assert_eq!(
            time_at("t", &ts(future), now).unwrap_err().to_string(),
            "t: more than 24h in the future"
        );
        assert!(time_at("t", &ts(now.timestamp() + 23 * 3600), now).is_ok());
        let bad = prost_types::Timestamp {
            seconds: 1_600_000_000,
            nanos: -1,
        };
        assert!(time_at("t", &bad, now).is_err());
        assert_eq!(
            required_time("t", None, now).unwrap_err().to_string(),
            "t: is required"
        );
    }

    #[test]
    fn numbers_and_batches() {
        assert!(finite("v", f64::NAN).is_err());
        assert!(finite("v", f64::INFINITY).is_err());
        assert!(rating("v", 0).is_err());
        assert!(rating("v", 6).is_err());
        assert_eq!(rating("v", 5).unwrap(), 5);
        assert!(batch_len("events", 0).is_err());
        assert!(batch_len("events", 10_001).is_err());
        assert!(batch_len("events", 10_000).is_ok());
    }
}
