//! The input rules every Vitals service applies to what a client sends, in one place so
//! that the four services (and both database back ends) agree on them.
//!
//! - **Text** that is stored must not contain a NUL character: PostgreSQL `text` cannot
//!   hold one (SQLite can), so without this rule the same request was INTERNAL on one
//!   back end and accepted on the other.
//! - **Timestamps** must be valid `google.protobuf.Timestamp`s (nanos in
//!   0..=999,999,999, seconds from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, the
//!   range the protobuf type defines and both back ends store); times of customer data
//!   and `as_of`-like times must also lie in [`EARLIEST`] ..= now + [`MAX_AHEAD`].
//! - **Numbers** that are stored and later summed (event values, metric samples, MRR,
//!   weights...) must be finite and at most [`MAX_ABS_VALUE`] in magnitude, so that no
//!   sum of them can overflow (`f64::MAX` is about 1.8e308; PostgreSQL raises an error
//!   on a `double precision` overflow instead of returning infinity).
//!
//! Every check takes the path of the field it looks at (e.g. `events[3].event_type`) and
//! fails with [`ApiError::InvalidArgument`] naming it (INVALID_ARGUMENT on the wire).

use chrono::{DateTime, TimeDelta, Utc};

use crate::ApiError;

/// Largest magnitude of a number a client sends that is stored and summed: 1e15.
///
/// Exact for integers (below 2^53), far beyond any real amount, count or duration, and
/// a sum of 10^290 of them still fits in an `f64`.
pub const MAX_ABS_VALUE: f64 = 1e15;

/// Earliest time of customer data or of an `as_of`: 2000-01-01T00:00:00Z (seconds).
pub const EARLIEST_SECS: i64 = 946_684_800;

/// How far past the server's clock a time of data or an `as_of` may lie (clock skew
/// between a client and the server).
pub const MAX_AHEAD: TimeDelta = TimeDelta::hours(24);

/// First second of the protobuf Timestamp range: 0001-01-01T00:00:00Z.
pub const TIMESTAMP_MIN_SECS: i64 = -62_135_596_800;

/// Last second of the protobuf Timestamp range: 9999-12-31T23:59:59Z.
pub const TIMESTAMP_MAX_SECS: i64 = 253_402_300_799;

/// [`EARLIEST_SECS`] as a time.
pub const EARLIEST: DateTime<Utc> = match DateTime::from_timestamp(EARLIEST_SECS, 0) {
    Some(t) => t,
    None => DateTime::<Utc>::MIN_UTC,
};

/// Checks the id of a Vitals-owned resource (a profile, a scorecard):
/// `[a-z]([a-z0-9-]*[a-z0-9])?`, 1..63 characters.
pub fn resource_id(field: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "{id:?} is not a valid id: 1..63 characters matching [a-z]([a-z0-9-]*[a-z0-9])?"
            ),
        ))
    }
}

/// Checks that stored text holds no NUL character.
pub fn no_nul(field: &str, s: &str) -> Result<(), ApiError> {
    if s.contains('\0') {
        return Err(ApiError::invalid(field, "contains a NUL character"));
    }
    Ok(())
}

/// A well-formed timestamp: nanos in 0..=999,999,999 and seconds within
/// 0001-01-01T00:00:00Z..=9999-12-31T23:59:59Z. No other range rule (filters, a date of
/// birth, the end of a contract).
pub fn timestamp(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>, ApiError> {
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| ApiError::invalid(field, "nanos must be in 0..999999999"))?;
    if !(TIMESTAMP_MIN_SECS..=TIMESTAMP_MAX_SECS).contains(&t.seconds) {
        return Err(ApiError::invalid(
            field,
            "outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z",
        ));
    }
    DateTime::from_timestamp(t.seconds, nanos).ok_or_else(|| {
        ApiError::invalid(field, "outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z")
    })
}

/// A time of customer data or an `as_of`: well-formed and within
/// 2000-01-01T00:00:00Z ..= `now` + 24 h.
pub fn data_time(
    field: &str,
    t: &prost_types::Timestamp,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let at = timestamp(field, t)?;
    if at < EARLIEST {
        return Err(ApiError::invalid(field, "before 2000-01-01"));
    }
    if at > now + MAX_AHEAD {
        return Err(ApiError::invalid(field, "more than 24h in the future"));
    }
    Ok(at)
}

/// A number that is stored and may be summed: finite, |x| <= [`MAX_ABS_VALUE`].
pub fn value(field: &str, x: f64) -> Result<f64, ApiError> {
    if !x.is_finite() {
        return Err(ApiError::invalid(field, "must be a finite number"));
    }
    if x.abs() > MAX_ABS_VALUE {
        return Err(ApiError::invalid(
            field,
            "must be within -1e15..1e15 (so that no sum can overflow)",
        ));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    #[test]
    fn nul_is_refused_by_name() {
        assert!(no_nul("f", "a\nb\tc é").is_ok());
        assert_eq!(
            no_nul("events[3].event_type", "a\0b")
                .unwrap_err()
                .to_string(),
            "events[3].event_type: contains a NUL character"
        );
    }

    #[test]
    fn timestamps_in_the_protobuf_range() {
        assert!(timestamp("t", &ts(TIMESTAMP_MIN_SECS, 0)).is_ok());
        assert!(timestamp("t", &ts(TIMESTAMP_MAX_SECS, 999_999_999)).is_ok());
        for bad in [
            ts(TIMESTAMP_MIN_SECS - 1, 0),
            ts(TIMESTAMP_MAX_SECS + 1, 0),
            ts(i64::MIN, 0),
            ts(i64::MAX, 0),
        ] {
            assert_eq!(
                timestamp("t", &bad).unwrap_err().to_string(),
                "t: outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"
            );
        }
        for nanos in [-1, 1_000_000_000, i32::MIN, i32::MAX] {
            assert_eq!(
                timestamp("t", &ts(0, nanos)).unwrap_err().to_string(),
                "t: nanos must be in 0..999999999"
            );
        }
    }

    #[test]
    fn data_times_from_2000_to_a_day_ahead() {
        let now = Utc::now();
        assert_eq!(EARLIEST.to_rfc3339(), "2000-01-01T00:00:00+00:00");
        assert!(data_time("t", &ts(EARLIEST_SECS, 0), now).is_ok());
        assert_eq!(
            data_time("as_of", &ts(EARLIEST_SECS - 1, 999_999_999), now)
                .unwrap_err()
                .to_string(),
            "as_of: before 2000-01-01"
        );
        // Year 1 and year 3000.
        assert!(data_time("as_of", &ts(-62_135_596_800, 0), now).is_err());
        let y3000 = 32_503_680_000;
        assert_eq!(
            data_time("as_of", &ts(y3000, 0), now)
                .unwrap_err()
                .to_string(),
            "as_of: more than 24h in the future"
        );
        assert!(data_time("t", &ts(now.timestamp() + 23 * 3600, 0), now).is_ok());
        assert!(data_time("t", &ts(now.timestamp() + 25 * 3600, 0), now).is_err());
    }

    #[test]
    fn values_are_bounded() {
        assert_eq!(value("v", 1e15).unwrap(), 1e15);
        assert_eq!(value("v", -1e15).unwrap(), -1e15);
        assert_eq!(
            value("events[0].value", 1.7e308).unwrap_err().to_string(),
            "events[0].value: must be within -1e15..1e15 (so that no sum can overflow)"
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                value("v", bad).unwrap_err().to_string(),
                "v: must be a finite number"
            );
        }
        assert!(value("v", 1e15 + 1.0).is_err());
        assert!(value("v", -f64::MAX).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        #[test]
        fn any_input_is_accepted_within_the_rules_or_named(
            s in proptest::prelude::any::<String>(),
            x in proptest::prelude::any::<f64>(),
            seconds in proptest::prelude::any::<i64>(),
            nanos in proptest::prelude::any::<i32>(),
        ) {
            let field = "items[1].field";
            let named = |e: ApiError| {
                assert!(e.to_string().starts_with("items[1].field: "), "{e}");
                assert_eq!(e.code(), tonic::Code::InvalidArgument);
            };
            match no_nul(field, &s) {
                Ok(()) => assert!(!s.contains('\0')),
                Err(e) => named(e),
            }
            match value(field, x) {
                Ok(v) => assert!(v.is_finite() && v.abs() <= MAX_ABS_VALUE),
                Err(e) => named(e),
            }
            let now = Utc::now();
            let t = prost_types::Timestamp { seconds, nanos };
            match data_time(field, &t, now) {
                Ok(at) => assert!(at >= EARLIEST && at <= now + MAX_AHEAD),
                Err(e) => named(e),
            }
            match timestamp(field, &t) {
                Ok(at) => assert!((TIMESTAMP_MIN_SECS..=TIMESTAMP_MAX_SECS).contains(&at.timestamp())),
                Err(e) => named(e),
            }
        }
    }
}
