//! `proptest` strategies for what a hostile or careless client can put in a request
//! (strings with NUL, control characters, any Unicode or 70 KB; NaN, infinities and
//! extreme numbers; timestamps with any seconds and nanos), and the check every request
//! decoder's error must pass. Used by the property tests of every service's validation.

use proptest::prelude::*;
use vitals_server::ApiError;

/// Cases per property: fixed, so the suite is bounded in time.
pub const CASES: u32 = 256;

/// The proptest configuration of the decoder properties: [`CASES`] cases.
pub fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

/// Any string a client might send: plausible ids and names, any Unicode, a NUL inside,
/// control characters, empty, or huge (up to 70,000 bytes).
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9_]{0,12}",
        2 => any::<String>(),
        2 => "\\PC{0,8}\u{0}\\PC{0,8}",
        1 => "[\\x00-\\x1f\\x7f]{1,4}",
        1 => Just(String::new()),
        1 => (0usize..70_000).prop_map(|n| "x".repeat(n)),
        1 => "[\u{80}-\u{10ffff}]{1,64}",
    ]
}

/// A short string (rules, resource names): as [`text`] without the huge ones.
pub fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9_]{0,12}",
        2 => "\\PC{0,40}",
        2 => "\\PC{0,8}\u{0}\\PC{0,8}",
        1 => "[\\x00-\\x1f]{1,4}",
        1 => Just(String::new()),
    ]
}

/// Any number: ordinary ones, the bounds of the value rule, NaN, infinities, extremes.
pub fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -100.0..100.0f64,
        2 => any::<f64>(),
        1 => -1e16..1e16f64,
        1 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            1.7e308,
            -1.7e308,
            1e15,
            -1e15,
            f64::MIN_POSITIVE,
            -0.0,
            0.0,
        ]),
    ]
}

/// Any 32-bit integer, with the edges and small values more often.
pub fn int() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => -3..12i32,
        1 => any::<i32>(),
        1 => prop::sample::select(vec![i32::MIN, i32::MAX, -1, 0, 365, 366, 1_000_000]),
    ]
}

/// Any timestamp: seconds anywhere (the i64 edges, around year 1 and year 9999, around
/// 2000 and today), nanos anywhere (negative, too large).
pub fn timestamp() -> impl Strategy<Value = prost_types::Timestamp> {
    let seconds = prop_oneof![
        3 => 946_684_700i64..2_000_000_000,
        1 => any::<i64>(),
        1 => -62_135_596_900i64..-62_135_596_700,
        1 => 253_402_300_700i64..253_402_300_900,
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1, 32_503_680_000]),
    ];
    let nanos = prop_oneof![
        3 => 0..1_000_000_000i32,
        1 => any::<i32>(),
        1 => prop::sample::select(vec![-1, 1_000_000_000, i32::MIN, i32::MAX]),
    ];
    (seconds, nanos).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
}

/// An optional [`timestamp`].
pub fn opt_timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    prop::option::of(timestamp())
}

/// Checks that a decoder's error is a clear INVALID_ARGUMENT: a field path, a message
/// without a trailing period, and the status message `field: message`.
///
/// # Panics
/// When it is not (this is test code: the panic is the failure report).
pub fn assert_clear_invalid(e: ApiError) {
    let (field, message) = match &e {
        ApiError::InvalidArgument { field, message } => (field.clone(), message.clone()),
        other => panic!("not INVALID_ARGUMENT: {other:?}"),
    };
    assert!(!field.trim().is_empty(), "no field named: {e:?}");
    assert!(!message.trim().is_empty(), "empty message: {e:?}");
    assert!(!message.ends_with('.'), "trailing period: {e:?}");
    assert!(
        !field.contains('\0') && !message.contains('\0'),
        "a raw NUL in the error: {e:?}"
    );
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), format!("{field}: {message}"));
}

/// Checks that accepted text can be stored on every back end (no NUL).
///
/// # Panics
/// When it holds a NUL.
pub fn assert_storable_text(field: &str, s: &str) {
    assert!(!s.contains('\0'), "{field}: accepted a NUL: {s:?}");
}

/// Checks that an accepted number is within the value rule (finite, |x| <= 1e15).
///
/// # Panics
/// When it is not.
pub fn assert_storable_value(field: &str, x: f64) {
    assert!(
        x.is_finite() && x.abs() <= vitals_server::validate::MAX_ABS_VALUE,
        "{field}: accepted {x}"
    );
}
