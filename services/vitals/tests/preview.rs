//! A scorecard preview (ProfilesService.PreviewScorecard) tells the truth: after saving
//! the same draft and computing the scores (ScoringService.ComputeScores as of the same
//! time), the scoring service's distribution of that scorecard is the one the preview
//! announced. End to end over gRPC through the all-in-one, on SQLite and PostgreSQL.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use vitals::ServeConfig;
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_test_support::{Backend, TestServer, backends, fresh_url};

fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn text(s: &str) -> cpb::AttributeValue {
    cpb::AttributeValue {
        kind: Some(cpb::attribute_value::Kind::StringValue(s.into())),
    }
}

/// A SQLite file (shared by the server's pool) or a fresh PostgreSQL database.
async fn url(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!(
                "vitals-preview-{}-{}.db",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ));
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => fresh_url(backend).await.expect("fresh postgres database"),
    }
}

/// Two drafts: logins over 30 days for everyone, and active days over 14 days for the
/// premium segment only (so the segment and the accounts without a value count too).
fn drafts() -> Vec<(&'static str, ppb::Scorecard)> {
    let thresholds = || {
        Some(cpb::BandThresholds {
            yellow_from: Some(3.0),
            green_from: Some(6.5),
        })
    };
    vec![
        (
            "logins",
            ppb::Scorecard {
                display_name: "Logins".into(),
                measure: Some(ppb::scorecard::Measure::EventCount(
                    ppb::EventCountMeasure {
                        event_type: "login".into(),
                        window_days: 30,
                        aggregation: ppb::EventAggregation::Count as i32,
                    },
                )),
                worst_value: 0.0,
                best_value: 120.0,
                band_thresholds: thresholds(),
                ..Default::default()
            },
        ),
        (
            "premium-days",
            ppb::Scorecard {
                display_name: "Premium active days".into(),
                measure: Some(ppb::scorecard::Measure::EventCount(
                    ppb::EventCountMeasure {
                        event_type: "login".into(),
                        window_days: 14,
                        aggregation: ppb::EventAggregation::ActiveDays as i32,
                    },
                )),
                worst_value: 0.0,
                best_value: 14.0,
                band_thresholds: thresholds(),
                segment: "plan == \"premium\"".into(),
                ..Default::default()
            },
        ),
    ]
}

fn same(a: &cpb::Distribution, b: &cpb::Distribution, what: &str) {
    let bins = |d: &cpb::Distribution| -> Vec<(u32, f64, f64)> {
        d.bins.iter().map(|b| (b.count, b.lower, b.upper)).collect()
    };
    assert_eq!(bins(a), bins(b), "{what}: histogram");
    assert_eq!(a.band_counts, b.band_counts, "{what}: band counts");
    assert_eq!(a.count, b.count, "{what}: count");
    for (x, y, name) in [
        (a.mean, b.mean, "mean"),
        (a.median, b.median, "median"),
        (a.p10, b.p10, "p10"),
        (a.p90, b.p90, "p90"),
        (a.min, b.min, "min"),
        (a.max, b.max, "max"),
        (a.std_dev, b.std_dev, "std_dev"),
    ] {
        assert!((x - y).abs() < 1e-6, "{what}: {name} {x} vs {y}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_matches_what_saving_and_scoring_give() {
    for backend in backends() {
        let config = ServeConfig::for_tests(url(backend).await);
        let server =
            TestServer::start(|listener, shutdown| vitals::run(config, listener, shutdown)).await;
        let channel = server.channel().await;
        let mut ingestion = IngestionServiceClient::new(channel.clone());
        let mut profiles = ProfilesServiceClient::new(channel.clone());
        let mut scoring = ScoringServiceClient::new(channel);

        // 24 accounts, half premium; account i logs in (i % 5) + 1 times a day on each of
        // its last (i % 9) x 3 days, so counts and active days spread out.
        let now = Utc::now();
        let accounts: Vec<ipb::Account> = (0..24)
            .map(|i| ipb::Account {
                account_id: format!("acct-{i:02}"),
                display_name: format!("Account {i}"),
                attributes: HashMap::from([(
                    "plan".to_string(),
                    text(if i % 2 == 0 { "premium" } else { "basic" }),
                )]),
                create_time: Some(ts(now - Duration::days(200))),
                ..Default::default()
            })
            .collect();
        ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts,
                replace_attributes: false,
            })
            .await
            .expect("upsert accounts");
        let mut events = Vec::new();
        for i in 0..24u32 {
            for day in 0..(i % 9) * 3 {
                for k in 0..=(i % 5) {
                    events.push(ipb::Event {
                        event_id: format!("e-{i}-{day}-{k}"),
                        account_id: format!("acct-{i:02}"),
                        user_id: format!("u-{i}-{}", k % 2),
                        event_type: "login".into(),
                        occur_time: Some(ts(now - Duration::days(i64::from(day)))),
                        value: None,
                    });
                }
            }
        }
        // An event well outside both windows must count in neither.
        events.push(ipb::Event {
            event_id: "old".into(),
            account_id: "acct-23".into(),
            user_id: "u-old".into(),
            event_type: "login".into(),
            occur_time: Some(ts(now - Duration::days(60))),
            value: None,
        });
        let sent = events.len() as u32;
        let acks: Vec<ipb::IngestEventsResponse> = {
            let stream = tokio_stream::iter(vec![ipb::IngestEventsRequest {
                sequence: 1,
                events,
            }]);
            let mut s = ingestion
                .ingest_events(stream)
                .await
                .expect("ingest events")
                .into_inner();
            let mut acks = Vec::new();
            while let Some(a) = s.message().await.expect("ack") {
                acks.push(a);
            }
            acks
        };
        assert_eq!(acks.iter().map(|a| a.accepted_count).sum::<u32>(), sent);

        let as_of = || ts(now);
        for (id, draft) in drafts() {
            let what = format!("{backend:?} {id}");
            let preview = profiles
                .preview_scorecard(ppb::PreviewScorecardRequest {
                    scorecard: Some(draft.clone()),
                    as_of: Some(as_of()),
                })
                .await
                .expect("preview")
                .into_inner();
            let expected_segment = if draft.segment.is_empty() { 24 } else { 12 };
            assert_eq!(preview.segment_count, expected_segment, "{what}");
            let want = preview.distribution.expect("preview distribution");
            assert_eq!(want.count, preview.with_value_count, "{what}");
            assert!(want.count > 0, "{what}: the preview scored nobody");
            // Not all in one bin: the comparison below means something.
            assert!(
                want.bins.iter().filter(|b| b.count > 0).count() >= 3,
                "{what}: {want:?}"
            );

            // The preview saved nothing.
            let listed = profiles
                .list_scorecards(ppb::ListScorecardsRequest::default())
                .await
                .expect("list scorecards")
                .into_inner()
                .scorecards;
            assert!(
                listed.iter().all(|s| s.name != format!("scorecards/{id}")),
                "{what}: the preview saved the draft"
            );

            profiles
                .create_scorecard(ppb::CreateScorecardRequest {
                    scorecard_id: id.into(),
                    scorecard: Some(draft),
                })
                .await
                .expect("create scorecard");
        }

        let run = scoring
            .compute_scores(spb::ComputeScoresRequest {
                scope: None,
                as_of: Some(as_of()),
            })
            .await
            .expect("compute scores")
            .into_inner();
        assert_eq!(run.scored_count, 24, "{backend:?}");

        for (id, draft) in drafts() {
            let what = format!("{backend:?} {id}");
            // The preview again, now that the scorecard is saved: still the same answer.
            let want = profiles
                .preview_scorecard(ppb::PreviewScorecardRequest {
                    scorecard: Some(draft),
                    as_of: Some(as_of()),
                })
                .await
                .expect("preview")
                .into_inner()
                .distribution
                .expect("preview distribution");
            let got = scoring
                .get_distribution(spb::GetDistributionRequest {
                    profile: String::new(),
                    scorecard: format!("scorecards/{id}"),
                    global: false,
                })
                .await
                .expect("distribution")
                .into_inner()
                .distribution
                .expect("scored distribution");
            same(&want, &got, &what);
        }
        server.stop().await.expect("clean stop");
    }
}
