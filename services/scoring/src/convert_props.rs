//! Property tests of the scoring service's request decoders (`convert`), a fixed number
//! of cases each: no panic on any input, every error a clear INVALID_ARGUMENT naming a
//! field, and accepted times within their documented range.

use chrono::Utc;
use proptest::prelude::*;
use vitals_server::validate::{EARLIEST, TIMESTAMP_MAX_SECS, TIMESTAMP_MIN_SECS};
use vitals_test_support::arb::{self, assert_clear_invalid, assert_storable_text};

use crate::convert;

proptest! {
    #![proptest_config(arb::config())]

    #[test]
    fn times(t in arb::timestamp()) {
        let now = Utc::now();
        match convert::run_as_of("as_of", &t, now) {
            Ok(at) => prop_assert!(at >= EARLIEST && at <= now),
            Err(e) => assert_clear_invalid(e),
        }
        match convert::from_timestamp("as_of", &t) {
            Ok(at) => prop_assert!((TIMESTAMP_MIN_SECS..=TIMESTAMP_MAX_SECS).contains(&at.timestamp())),
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn ids_and_names(s in arb::text(), wildcard in any::<bool>()) {
        match convert::account_id("account_id", &s) {
            Ok(id) => assert_storable_text("account_id", &id),
            Err(e) => assert_clear_invalid(e),
        }
        match convert::profile("profile", &s) {
            Ok(Some(id)) => assert_storable_text("profile", &id),
            Ok(None) => prop_assert!(s.is_empty()),
            Err(e) => assert_clear_invalid(e),
        }
        if let Err(e) = convert::scorecard("scorecard", &s, wildcard) {
            assert_clear_invalid(e);
        }
    }

    #[test]
    fn filters_and_pages(bands in prop::collection::vec(arb::int(), 0..4), bound in prop::option::of(arb::number()),
                         size in arb::int(), token in arb::text(), fp in any::<u64>(), view in arb::int()) {
        if let Err(e) = convert::bands("bands", &bands) {
            assert_clear_invalid(e);
        }
        match convert::score_bound("min_value", bound) {
            Ok(Some(x)) => prop_assert!(x.is_finite() && (0.0..=10.0).contains(&x)),
            Ok(None) => {}
            Err(e) => assert_clear_invalid(e),
        }
        if let Err(e) = convert::page_size("page_size", size, 100, 1000) {
            assert_clear_invalid(e);
        }
        if let Err(e) = convert::page_token("page_token", &token, fp) {
            assert_clear_invalid(e);
        }
        if let Err(e) = convert::full_view("view", view, false) {
            assert_clear_invalid(e);
        }
    }
}
