//! Input validation over real gRPC, on SQLite and PostgreSQL (docs/reliability.md, "Input
//! validation and the robustness suite"): what one back end accepted and the other
//! failed with INTERNAL is INVALID_ARGUMENT naming the field on both.
//!
//! - a NUL character in any stored text field of any service;
//! - numbers that would overflow a sum (two event values of 1.7e308 on one day);
//! - timestamps outside the documented ranges (`as_of` in year 1 or year 3000, a
//!   timestamp attribute in year -100,000).

mod common;

use std::fmt::Debug;

use chrono::Utc;
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::scoring::v1 as spb;
use vitals_test_support::{Backend, backends};

use ipb::ingestion_service_client::IngestionServiceClient;
use lpb::learner_service_client::LearnerServiceClient;
use ppb::profiles_service_client::ProfilesServiceClient;
use spb::scoring_service_client::ScoringServiceClient;

const NUL: &str = "a\0b";

fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn now() -> Timestamp {
    ts(Utc::now().timestamp() - 3600)
}

/// Checks that `r` is INVALID_ARGUMENT whose message starts with `field: ` and contains
/// `says`, and that its details hold the same as one `google.rpc.BadRequest` field
/// violation (what a client reads without parsing the message).
fn invalid<T: Debug>(
    backend: Backend,
    r: Result<tonic::Response<T>, Status>,
    field: &str,
    says: &str,
) {
    let e = match r {
        Ok(ok) => panic!("{backend:?} {field}: accepted: {ok:?}"),
        Err(e) => e,
    };
    assert_eq!(
        e.code(),
        Code::InvalidArgument,
        "{backend:?} {field}: {}",
        e.message()
    );
    let msg = e.message();
    assert!(
        msg.starts_with(&format!("{field}: ")) && msg.contains(says),
        "{backend:?}: want {field}: ...{says}..., got {msg:?}"
    );
    let details = e
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("{backend:?} {field}: no BadRequest details in {e:?}"));
    let [violation] = details.field_violations.as_slice() else {
        panic!("{backend:?} {field}: want one field violation, got {details:?}");
    };
    assert_eq!(violation.field, field, "{backend:?}");
    assert_eq!(
        format!("{}: {}", violation.field, violation.description),
        msg,
        "{backend:?}"
    );
}

struct Clients {
    ingestion: IngestionServiceClient<Channel>,
    profiles: ProfilesServiceClient<Channel>,
    scoring: ScoringServiceClient<Channel>,
    learner: LearnerServiceClient<Channel>,
}

impl Clients {
    fn new(channel: Channel) -> Self {
        Self {
            ingestion: IngestionServiceClient::new(channel.clone()),
            profiles: ProfilesServiceClient::new(channel.clone()),
            scoring: ScoringServiceClient::new(channel.clone()),
            learner: LearnerServiceClient::new(channel),
        }
    }
}

fn account(id: &str) -> ipb::Account {
    ipb::Account {
        account_id: id.into(),
        display_name: "Acme".into(),
        ..Default::default()
    }
}

fn event(id: &str, value: Option<f64>) -> ipb::Event {
    ipb::Event {
        event_id: id.into(),
        account_id: "acme".into(),
        event_type: "login".into(),
        occur_time: Some(now()),
        value,
        ..Default::default()
    }
}

fn profile(display_name: &str) -> ppb::HealthProfile {
    ppb::HealthProfile {
        display_name: display_name.into(),
        ..Default::default()
    }
}

fn scorecard() -> ppb::Scorecard {
    ppb::Scorecard {
        display_name: "Logins".into(),
        measure: Some(ppb::scorecard::Measure::EventCount(
            ppb::EventCountMeasure {
                event_type: "login".into(),
                window_days: 30,
                aggregation: 0,
            },
        )),
        worst_value: 0.0,
        best_value: 20.0,
        ..Default::default()
    }
}

/// Every stored text field of every service, with a NUL in it.
async fn nul_everywhere(backend: Backend, c: &mut Clients) {
    let says = "NUL";
    // Ingestion.
    let mut a = account("acme");
    a.display_name = NUL.into();
    let r = c
        .ingestion
        .upsert_accounts(ipb::UpsertAccountsRequest {
            accounts: vec![account("ok"), a],
            ..Default::default()
        })
        .await;
    invalid(backend, r, "accounts[1].display_name", says);

    let mut a = account("acme");
    a.attributes.insert(
        "plan".into(),
        cpb::AttributeValue {
            kind: Some(cpb::attribute_value::Kind::StringValue(NUL.into())),
        },
    );
    let r = c
        .ingestion
        .upsert_accounts(ipb::UpsertAccountsRequest {
            accounts: vec![a],
            ..Default::default()
        })
        .await;
    invalid(backend, r, "accounts[0].attributes[\"plan\"]", says);

    let r = c
        .ingestion
        .upsert_contacts(ipb::UpsertContactsRequest {
            contacts: vec![ipb::Contact {
                account_id: "acme".into(),
                contact_id: "c1".into(),
                display_name: NUL.into(),
                ..Default::default()
            }],
        })
        .await;
    invalid(backend, r, "contacts[0].display_name", says);

    let mut e = event("e1", None);
    e.event_type = NUL.into();
    let r = c
        .ingestion
        .ingest_event(ipb::IngestEventRequest { event: Some(e) })
        .await;
    invalid(backend, r, "event.event_type", "control character");

    let r = c
        .ingestion
        .record_interactions(ipb::RecordInteractionsRequest {
            interactions: vec![ipb::Interaction {
                interaction_id: "i1".into(),
                account_id: "acme".into(),
                channel: ipb::Channel::Email as i32,
                direction: ipb::Direction::Inbound as i32,
                occur_time: Some(now()),
                text: NUL.into(),
                ..Default::default()
            }],
        })
        .await;
    invalid(backend, r, "interactions[0].text", says);

    let r = c
        .ingestion
        .record_pulses(ipb::RecordPulsesRequest {
            pulses: vec![ipb::Pulse {
                account_id: "acme".into(),
                author: "csm".into(),
                value: 3,
                note: NUL.into(),
                occur_time: Some(now()),
            }],
        })
        .await;
    invalid(backend, r, "pulses[0].note", says);

    let r = c
        .ingestion
        .upsert_subscriptions(ipb::UpsertSubscriptionsRequest {
            subscriptions: vec![ipb::Subscription {
                subscription_id: "s1".into(),
                account_id: "acme".into(),
                product: "basic".into(),
                start_time: Some(now()),
                mrr: 10.0,
                units: NUL.into(),
                ..Default::default()
            }],
        })
        .await;
    invalid(backend, r, "subscriptions[0].units", says);

    for (field, t) in [
        (
            "event_types[0].display_name",
            ipb::EventType {
                name: "login".into(),
                display_name: NUL.into(),
                ..Default::default()
            },
        ),
        (
            "event_types[0].description",
            ipb::EventType {
                name: "login".into(),
                description: NUL.into(),
                ..Default::default()
            },
        ),
    ] {
        let r = c
            .ingestion
            .upsert_event_types(ipb::UpsertEventTypesRequest {
                event_types: vec![t],
            })
            .await;
        invalid(backend, r, field, says);
    }

    for (field, d) in [
        (
            "definitions[0].display_name",
            ipb::CustomMetricDefinition {
                name: "nps".into(),
                display_name: NUL.into(),
                ..Default::default()
            },
        ),
        (
            "definitions[0].description",
            ipb::CustomMetricDefinition {
                name: "nps".into(),
                description: NUL.into(),
                ..Default::default()
            },
        ),
    ] {
        let r = c
            .ingestion
            .upsert_custom_metric_definitions(ipb::UpsertCustomMetricDefinitionsRequest {
                definitions: vec![d],
            })
            .await;
        invalid(backend, r, field, says);
    }

    let r = c
        .ingestion
        .list_accounts(ipb::ListAccountsRequest {
            profile: format!("profiles/{NUL}"),
            ..Default::default()
        })
        .await;
    invalid(backend, r, "profile", says);

    // Profiles.
    let mut profiles = vec![
        ("health_profile.display_name", profile(NUL)),
        (
            "health_profile.description",
            ppb::HealthProfile {
                description: NUL.into(),
                ..profile("P")
            },
        ),
        (
            "health_profile.assignment_rule",
            ppb::HealthProfile {
                assignment_rule: "plan == \"a\0b\"".into(),
                ..profile("P")
            },
        ),
        (
            "health_profile.kpis[0]",
            ppb::HealthProfile {
                kpis: vec![format!("events_{NUL}")],
                ..profile("P")
            },
        ),
    ];
    for (field, p) in profiles.drain(..) {
        let r = c
            .profiles
            .create_health_profile(ppb::CreateHealthProfileRequest {
                profile_id: "p".into(),
                health_profile: Some(p),
            })
            .await;
        invalid(backend, r, field, says);
    }

    let cards = [
        (
            "scorecard.display_name",
            ppb::Scorecard {
                display_name: NUL.into(),
                ..scorecard()
            },
        ),
        (
            "scorecard.description",
            ppb::Scorecard {
                description: NUL.into(),
                ..scorecard()
            },
        ),
        (
            "scorecard.segment",
            ppb::Scorecard {
                segment: "plan == \"a\0b\"".into(),
                ..scorecard()
            },
        ),
        (
            "scorecard.event_count.event_type",
            ppb::Scorecard {
                measure: Some(ppb::scorecard::Measure::EventCount(
                    ppb::EventCountMeasure {
                        event_type: NUL.into(),
                        window_days: 30,
                        aggregation: 0,
                    },
                )),
                ..scorecard()
            },
        ),
    ];
    for (field, s) in cards {
        let r = c
            .profiles
            .create_scorecard(ppb::CreateScorecardRequest {
                scorecard_id: "s".into(),
                scorecard: Some(s),
            })
            .await;
        invalid(backend, r, field, says);
    }

    let r = c
        .profiles
        .create_profile_cross_product(ppb::CreateProfileCrossProductRequest {
            dimensions: vec![ppb::Dimension {
                name: "plan".into(),
                values: vec![ppb::DimensionValue {
                    label: NUL.into(),
                    rule: "true".into(),
                }],
            }],
            ..Default::default()
        })
        .await;
    invalid(backend, r, "dimensions[0].values[0].label", says);

    let r = c
        .profiles
        .get_account_profile(ppb::GetAccountProfileRequest {
            account_id: NUL.into(),
        })
        .await;
    invalid(backend, r, "account_id", "control characters");

    // Learner.
    let r = c
        .learner
        .record_outcomes(lpb::RecordOutcomesRequest {
            outcomes: vec![lpb::Outcome {
                account_id: "acme".into(),
                kind: lpb::OutcomeKind::Churned as i32,
                occur_time: Some(now()),
                note: NUL.into(),
                ..Default::default()
            }],
        })
        .await;
    invalid(backend, r, "outcomes[0].note", says);

    // Nothing of the above was written.
    let accounts = c
        .ingestion
        .list_accounts(ipb::ListAccountsRequest::default())
        .await
        .expect("list accounts")
        .into_inner()
        .accounts;
    assert!(accounts.is_empty(), "{backend:?}: {accounts:?}");
}

#[tokio::test]
async fn a_nul_in_any_stored_text_is_invalid_argument_on_both_backends() {
    for backend in backends() {
        let server = common::all_in_one(backend).await;
        let mut c = Clients::new(server.channel().await);
        nul_everywhere(backend, &mut c).await;
        // Text with other control characters (new lines, tabs) and any Unicode is fine.
        c.ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: vec![ipb::Account {
                    display_name: "Ac\tme\n Ünïcode 日本 🚀".into(),
                    ..account("acme")
                }],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e:?}"));
        server.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn event_values_are_bounded_so_no_daily_sum_overflows() {
    for backend in backends() {
        let server = common::all_in_one(backend).await;
        let mut c = Clients::new(server.channel().await);
        // Two values of 1.7e308 on one day: their daily sum overflows f64.
        let r = c
            .ingestion
            .ingest_event(ipb::IngestEventRequest {
                event: Some(event("e1", Some(1.7e308))),
            })
            .await;
        invalid(backend, r, "event.value", "-1e15..1e15");
        let mut stream = c
            .ingestion
            .ingest_events(tokio_stream::iter([ipb::IngestEventsRequest {
                sequence: 1,
                events: vec![event("e1", Some(1.0)), event("e2", Some(-1.7e308))],
            }]))
            .await
            .expect("stream opened")
            .into_inner();
        let e = stream.message().await.expect_err("the batch is refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{backend:?}: {e:?}");
        assert!(
            e.message()
                .contains("events[1].value: must be within -1e15..1e15"),
            "{backend:?}: {}",
            e.message()
        );
        for (field, bad) in [("event.value", f64::NAN), ("event.value", f64::INFINITY)] {
            let r = c
                .ingestion
                .ingest_event(ipb::IngestEventRequest {
                    event: Some(event("e3", Some(bad))),
                })
                .await;
            invalid(backend, r, field, "finite");
        }
        // Other stored and summed numbers: custom metric samples, MRR, quantity,
        // numeric attributes.
        let r = c
            .ingestion
            .record_custom_metrics(ipb::RecordCustomMetricsRequest {
                metrics: vec![ipb::CustomMetric {
                    account_id: "acme".into(),
                    name: "nps".into(),
                    value: 1e300,
                    occur_time: Some(now()),
                }],
            })
            .await;
        invalid(backend, r, "metrics[0].value", "-1e15..1e15");
        let r = c
            .ingestion
            .upsert_subscriptions(ipb::UpsertSubscriptionsRequest {
                subscriptions: vec![ipb::Subscription {
                    subscription_id: "s1".into(),
                    account_id: "acme".into(),
                    product: "basic".into(),
                    start_time: Some(now()),
                    mrr: 1.7e308,
                    ..Default::default()
                }],
            })
            .await;
        invalid(backend, r, "subscriptions[0].mrr", "-1e15..1e15");
        let mut a = account("acme");
        a.attributes.insert(
            "seats".into(),
            cpb::AttributeValue {
                kind: Some(cpb::attribute_value::Kind::NumberValue(-1e308)),
            },
        );
        let r = c
            .ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: vec![a],
                ..Default::default()
            })
            .await;
        invalid(
            backend,
            r,
            "accounts[0].attributes[\"seats\"]",
            "-1e15..1e15",
        );
        let r = c
            .profiles
            .create_scorecard(ppb::CreateScorecardRequest {
                scorecard_id: "s".into(),
                scorecard: Some(ppb::Scorecard {
                    worst_value: -1.7e308,
                    best_value: 1.7e308,
                    ..scorecard()
                }),
            })
            .await;
        invalid(backend, r, "scorecard.worst_value", "-1e15..1e15");
        let r = c
            .profiles
            .create_health_profile(ppb::CreateHealthProfileRequest {
                profile_id: "p".into(),
                health_profile: Some(ppb::HealthProfile {
                    category_weights: Some(cpb::CategoryWeights {
                        usage: 1.7e308,
                        conversations: 1.7e308,
                        ..Default::default()
                    }),
                    ..profile("P")
                }),
            })
            .await;
        invalid(
            backend,
            r,
            "health_profile.category_weights.usage",
            "-1e15..1e15",
        );

        // At the bound, twice on one day, the batch loads and sums exactly.
        let w = c
            .ingestion
            .ingest_event(ipb::IngestEventRequest {
                event: Some(event("e1", Some(1e15))),
            })
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e:?}"))
            .into_inner();
        assert!(!w.duplicate, "{backend:?}");
        c.ingestion
            .ingest_event(ipb::IngestEventRequest {
                event: Some(event("e2", Some(1e15))),
            })
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e:?}"));
        server.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn client_timestamps_outside_the_documented_ranges_are_refused() {
    const YEAR_1: i64 = -62_135_596_800;
    const YEAR_3000: i64 = 32_503_680_000;
    for backend in backends() {
        let server = common::all_in_one(backend).await;
        let mut c = Clients::new(server.channel().await);
        // as_of: 2000-01-01 ..= now + 24 h, in every service.
        for (at, says) in [
            (YEAR_1, "before 2000-01-01"),
            (YEAR_3000, "more than 24h in the future"),
        ] {
            let r = c
                .scoring
                .compute_scores(spb::ComputeScoresRequest {
                    as_of: Some(ts(at)),
                    ..Default::default()
                })
                .await;
            invalid(backend, r, "as_of", says);
            let r = c
                .profiles
                .preview_scorecard(ppb::PreviewScorecardRequest {
                    scorecard: Some(scorecard()),
                    as_of: Some(ts(at)),
                })
                .await;
            invalid(backend, r, "as_of", says);
            let r = c
                .learner
                .train(lpb::TrainRequest {
                    as_of: Some(ts(at)),
                    ..Default::default()
                })
                .await;
            invalid(backend, r, "as_of", says);
            let r = c
                .learner
                .predict_churn(lpb::PredictChurnRequest {
                    account_ids: vec!["acme".into()],
                    as_of: Some(ts(at)),
                })
                .await;
            invalid(backend, r, "as_of", says);
        }
        // GetDriftReport: a malformed profile name.
        let r = c
            .learner
            .get_drift_report(lpb::GetDriftReportRequest {
                profile: "premium".into(),
            })
            .await;
        invalid(backend, r, "profile", "is not a profile name");
        // ComputeScores further refuses any future as_of.
        let r = c
            .scoring
            .compute_scores(spb::ComputeScoresRequest {
                as_of: Some(ts(Utc::now().timestamp() + 3600)),
                ..Default::default()
            })
            .await;
        invalid(backend, r, "as_of", "must not be in the future");

        // Any timestamp: within 0001-01-01..9999-12-31 (what both back ends store).
        let mut a = account("acme");
        a.attributes.insert(
            "born".into(),
            cpb::AttributeValue {
                kind: Some(cpb::attribute_value::Kind::TimestampValue(ts(
                    -3_217_862_419_200, // year -100,000
                ))),
            },
        );
        let r = c
            .ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: vec![a],
                ..Default::default()
            })
            .await;
        invalid(
            backend,
            r,
            "accounts[0].attributes[\"born\"]",
            "outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z",
        );
        let r = c
            .ingestion
            .upsert_subscriptions(ipb::UpsertSubscriptionsRequest {
                subscriptions: vec![ipb::Subscription {
                    subscription_id: "s1".into(),
                    account_id: "acme".into(),
                    product: "basic".into(),
                    start_time: Some(now()),
                    end_time: Some(ts(253_402_300_800)), // 10000-01-01
                    mrr: 10.0,
                    ..Default::default()
                }],
            })
            .await;
        invalid(
            backend,
            r,
            "subscriptions[0].end_time",
            "outside 0001-01-01",
        );
        let r = c
            .scoring
            .get_score(spb::GetScoreRequest {
                account_id: "acme".into(),
                as_of: Some(Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..Default::default()
            })
            .await;
        invalid(backend, r, "as_of", "nanos must be in 0..999999999");
        let r = c
            .learner
            .list_outcomes(lpb::ListOutcomesRequest {
                time_range: Some(cpb::TimeRange {
                    start_time: Some(ts(i64::MIN)),
                    end_time: None,
                }),
                ..Default::default()
            })
            .await;
        invalid(backend, r, "time_range.start_time", "outside 0001-01-01");
        // A date of birth in 1950 is a valid attribute; a subscription may end in 2100.
        let mut a = account("acme");
        a.attributes.insert(
            "born".into(),
            cpb::AttributeValue {
                kind: Some(cpb::attribute_value::Kind::TimestampValue(ts(-631_152_000))),
            },
        );
        c.ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: vec![a],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e:?}"));
        server.stop().await.expect("clean stop");
    }
}
