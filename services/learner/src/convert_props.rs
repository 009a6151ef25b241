//! Property tests of the learner service's request decoders (`convert`), a fixed number
//! of cases each: no panic on any input, every error a clear INVALID_ARGUMENT naming a
//! field, and what is accepted can be stored on both back ends (no NUL, times within
//! their documented range).

use chrono::Utc;
use proptest::prelude::*;
use vitals_proto::learner::v1 as pb;
use vitals_server::paging::PageLimits;
use vitals_server::validate::{EARLIEST, MAX_AHEAD};
use vitals_test_support::arb::{self, assert_clear_invalid, assert_storable_text};

use crate::LearnerArgs;
use crate::convert;

fn outcome() -> impl Strategy<Value = pb::Outcome> {
    (arb::text(), arb::int(), arb::opt_timestamp(), arb::text()).prop_map(
        |(account_id, kind, occur_time, note)| pb::Outcome {
            account_id,
            kind,
            occur_time,
            note,
            record_time: None,
        },
    )
}

fn options() -> impl Strategy<Value = Option<pb::TrainingOptions>> {
    prop::option::of(
        (
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            prop::option::of(arb::number()),
            prop::option::of(arb::number()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                |(
                    horizon_days,
                    observation_interval_days,
                    prior_strength,
                    l2_penalty,
                    challenger,
                )| {
                    pb::TrainingOptions {
                        horizon_days,
                        observation_interval_days,
                        prior_strength,
                        l2_penalty,
                        challenger,
                    }
                },
            ),
    )
}

proptest! {
    #![proptest_config(arb::config())]

    #[test]
    fn outcomes(items in prop::collection::vec(outcome(), 0..4)) {
        let now = Utc::now();
        match convert::new_outcomes(&items, now) {
            Ok(rows) => for o in rows {
                assert_storable_text("account_id", &o.account_id);
                assert_storable_text("note", &o.note);
                prop_assert!(o.at >= EARLIEST && o.at <= now + MAX_AHEAD);
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn times(t in arb::opt_timestamp()) {
        let now = Utc::now();
        match convert::as_of("as_of", t.as_ref(), now) {
            Ok(at) => prop_assert!(at >= EARLIEST && at <= now + MAX_AHEAD),
            Err(e) => assert_clear_invalid(e),
        }
        if let Some(t) = t
            && let Err(e) = convert::time("time_range.start_time", &t)
        {
            assert_clear_invalid(e);
        }
    }

    #[test]
    fn names_tokens_and_options(s in arb::text(), n in any::<u64>(), size in arb::int(), kind in arb::int(),
                                o in options()) {
        if let Err(e) = convert::account_id("account_id", &s) {
            assert_clear_invalid(e);
        }
        if let Err(e) = convert::profile_name("profile", &s) {
            assert_clear_invalid(e);
        }
        if let Err(e) = convert::parse_model_name(&s) {
            assert_clear_invalid(e);
        }
        match convert::outcome_cursor(&s, n) {
            Ok(c) => for p in c.into_iter().flat_map(|c| [c.account_id, c.kind]) {
                assert_storable_text("page_token", &p);
            },
            Err(e) => assert_clear_invalid(e),
        }
        if let Err(e) = convert::model_cursor(&s, n) {
            assert_clear_invalid(e);
        }
        if let Err(e) = PageLimits::STANDARD.size(size) {
            assert_clear_invalid(e);
        }
        if let Err(e) = convert::kind_filter(kind) {
            assert_clear_invalid(e);
        }
        if let Err(e) = convert::settings(o.as_ref(), &LearnerArgs::default()) {
            assert_clear_invalid(e);
        }
    }
}
