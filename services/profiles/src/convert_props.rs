//! Property tests of the profiles service's request decoders (`convert`), a fixed
//! number of cases each: no panic on any input, every error a clear INVALID_ARGUMENT
//! naming a field, and what is accepted can be stored on both back ends (no NUL, summed
//! numbers within the value bound).

use proptest::prelude::*;
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as pb;
use vitals_test_support::arb::{
    self, assert_clear_invalid, assert_storable_text, assert_storable_value,
};

use crate::convert;

fn weights() -> impl Strategy<Value = Option<cpb::CategoryWeights>> {
    prop::option::of(
        (
            arb::number(),
            arb::number(),
            arb::number(),
            arb::number(),
            arb::number(),
            prop::collection::btree_map(arb::short_text(), arb::number(), 0..3),
        )
            .prop_map(
                |(usage, conversations, pulse, contract, custom_metrics, f)| cpb::CategoryWeights {
                    usage,
                    conversations,
                    pulse,
                    contract,
                    custom_metrics,
                    custom_score_fields: f.into_iter().collect(),
                },
            ),
    )
}

fn bands() -> impl Strategy<Value = Option<cpb::BandThresholds>> {
    prop::option::of(
        (
            prop::option::of(arb::number()),
            prop::option::of(arb::number()),
        )
            .prop_map(|(yellow_from, green_from)| cpb::BandThresholds {
                yellow_from,
                green_from,
            }),
    )
}

/// CEL rules: plausible ones, and arbitrary short text.
fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        arb::short_text(),
        Just("plan == \"premium\"".to_string()),
        Just("plan == \"a\u{0}b\"".to_string()),
        Just("seats > 10 && country in [\"DE\", \"FR\"]".to_string()),
    ]
}

fn profile() -> impl Strategy<Value = pb::HealthProfile> {
    (
        (arb::text(), arb::text(), weights(), rule(), arb::int()),
        (
            prop::option::of(any::<u32>()),
            arb::int(),
            prop::collection::vec(arb::short_text(), 0..3),
            bands(),
            prop::option::of(any::<u32>()),
            prop::option::of(arb::number()),
        ),
    )
        .prop_map(
            |(
                (display_name, description, category_weights, assignment_rule, priority),
                (min_population, weights_mode, kpis, band_thresholds, window_days, trend_weight),
            )| pb::HealthProfile {
                display_name,
                description,
                category_weights,
                assignment_rule,
                priority,
                min_population,
                weights_mode,
                kpis,
                band_thresholds,
                window_days,
                trend_weight,
                ..Default::default()
            },
        )
}

fn measure() -> impl Strategy<Value = Option<pb::scorecard::Measure>> {
    use pb::scorecard::Measure as M;
    prop::option::of(prop_oneof![
        (arb::text(), any::<u32>(), arb::int()).prop_map(
            |(event_type, window_days, aggregation)| {
                M::EventCount(pb::EventCountMeasure {
                    event_type,
                    window_days,
                    aggregation,
                })
            }
        ),
        arb::text().prop_map(|attribute| M::Attribute(pb::AttributeMeasure { attribute })),
        (arb::text(), arb::int(), any::<u32>()).prop_map(|(name, aggregation, window_days)| {
            M::CustomMetric(pb::CustomMetricMeasure {
                name,
                aggregation,
                window_days,
            })
        }),
        arb::text().prop_map(|kpi| M::Kpi(pb::KpiMeasure { kpi })),
    ])
}

fn scorecard() -> impl Strategy<Value = pb::Scorecard> {
    (
        (
            arb::text(),
            arb::text(),
            measure(),
            arb::number(),
            arb::number(),
        ),
        (
            bands(),
            arb::int(),
            rule(),
            prop::collection::vec(arb::short_text(), 0..3),
        ),
    )
        .prop_map(
            |(
                (display_name, description, measure, worst_value, best_value),
                (band_thresholds, impact, segment, tags),
            )| pb::Scorecard {
                display_name,
                description,
                measure,
                worst_value,
                best_value,
                band_thresholds,
                impact,
                segment,
                tags,
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(arb::config())]

    #[test]
    fn health_profiles(p in profile()) {
        match convert::profile_fields("health_profile", &p) {
            Ok(f) => {
                assert_storable_text("display_name", &f.display_name);
                assert_storable_text("description", &f.description);
                assert_storable_text("assignment_rule", &f.rule);
                for k in &f.kpis {
                    assert_storable_text("kpis", k);
                }
                let w = &f.weights;
                for x in [w.usage, w.conversations, w.pulse, w.contract, w.custom_metrics] {
                    assert_storable_value("category_weights", x);
                }
                for (k, x) in &w.custom_score_fields {
                    assert_storable_text("custom_score_fields", k);
                    assert_storable_value("custom_score_fields", *x);
                }
            }
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn scorecards(s in scorecard(), draft in any::<bool>()) {
        match convert::scorecard_fields("scorecard", &s, draft) {
            Ok(f) => {
                assert_storable_text("display_name", &f.display_name);
                assert_storable_text("description", &f.description);
                assert_storable_text("segment", &f.segment);
                assert_storable_value("worst_value", f.worst);
                assert_storable_value("best_value", f.best);
                prop_assert!((f.best - f.worst).is_finite());
            }
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn names_pages_and_times(name in arb::short_text(), size in arb::int(), token in arb::text(),
                             t in arb::timestamp()) {
        if let Err(e) = convert::parse_name("name", "profiles", &name) {
            assert_clear_invalid(e);
        }
        let list = vitals_proto::profiles::v1::ListScorecardsRequest {
            page_size: size,
            page_token: token,
            ..Default::default()
        };
        if let Err(e) = convert::scorecard_list(list) {
            assert_clear_invalid(e);
        }
        match convert::as_of("as_of", &t) {
            Ok(at) => prop_assert!(at >= vitals_server::validate::EARLIEST),
            Err(e) => assert_clear_invalid(e),
        }
    }
}
