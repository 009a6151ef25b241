//! Scorecards over gRPC on SQLite and PostgreSQL: CRUD, tags, order, and the preview of a
//! draft matching what scoring-core gives on the same data.

mod common;

use chrono::{Days, Duration, TimeZone, Utc};
use common::{Env, attrs, quiet_args};
use serde_json::json;
use tonic::Code;
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as pb;
use vitals_scoring_core as core;
use vitals_test_support::backends;

fn card(name: &str, tags: &[&str]) -> pb::Scorecard {
    pb::Scorecard {
        display_name: name.into(),
        measure: Some(pb::scorecard::Measure::EventCount(pb::EventCountMeasure {
            event_type: "login".into(),
            window_days: 30,
            aggregation: 0,
        })),
        worst_value: 0.0,
        best_value: 20.0,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

async fn names(
    c: &mut pb::profiles_service_client::ProfilesServiceClient<tonic::transport::Channel>,
    req: pb::ListScorecardsRequest,
) -> Vec<(String, i32)> {
    c.list_scorecards(req)
        .await
        .unwrap()
        .into_inner()
        .scorecards
        .into_iter()
        .map(|s| (s.name, s.display_order))
        .collect()
}

#[tokio::test]
async fn scorecard_crud_tags_and_reorder() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        for (id, tags) in [
            ("logins", &["usage"][..]),
            ("seats", &["contract", "usage"]),
            ("nps", &[]),
        ] {
            let s = c
                .create_scorecard(pb::CreateScorecardRequest {
                    scorecard_id: id.into(),
                    scorecard: Some(card(id, tags)),
                })
                .await
                .unwrap()
                .into_inner()
                .scorecard
                .unwrap();
            assert_eq!(s.name, format!("scorecards/{id}"));
            assert_eq!((s.enabled, s.include_in_global), (Some(true), Some(true)));
            assert_eq!(s.impact, pb::Impact::Medium as i32);
        }
        let all = names(&mut c, Default::default()).await;
        assert_eq!(
            all,
            vec![
                ("scorecards/logins".into(), 0),
                ("scorecards/seats".into(), 1),
                ("scorecards/nps".into(), 2)
            ],
            "{backend:?}"
        );
        let tagged = names(
            &mut c,
            pb::ListScorecardsRequest {
                tags: vec!["contract".into()],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(tagged, vec![("scorecards/seats".to_string(), 1)]);

        // Reserved, taken and malformed.
        for (id, code) in [
            ("profile", Code::InvalidArgument),
            ("global", Code::InvalidArgument),
            ("nps", Code::AlreadyExists),
        ] {
            let err = c
                .create_scorecard(pb::CreateScorecardRequest {
                    scorecard_id: id.into(),
                    scorecard: Some(card("x", &[])),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{id}");
        }
        let mut bad = card("x", &["Bad Tag"]);
        let err = c
            .create_scorecard(pb::CreateScorecardRequest {
                scorecard_id: "x".into(),
                scorecard: Some(bad.clone()),
            })
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("scorecard.tags[0]:"),
            "{}",
            err.message()
        );
        bad.tags.clear();
        bad.best_value = 0.0;
        let err = c
            .create_scorecard(pb::CreateScorecardRequest {
                scorecard_id: "x".into(),
                scorecard: Some(bad.clone()),
            })
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("scorecard.best_value:"),
            "{}",
            err.message()
        );
        bad.best_value = 1.0;
        bad.measure = None;
        let err = c
            .create_scorecard(pb::CreateScorecardRequest {
                scorecard_id: "x".into(),
                scorecard: Some(bad.clone()),
            })
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("scorecard.measure:"),
            "{}",
            err.message()
        );
        bad.measure = Some(pb::scorecard::Measure::Kpi(pb::KpiMeasure {
            kpi: "bogus".into(),
        }));
        let err = c
            .create_scorecard(pb::CreateScorecardRequest {
                scorecard_id: "x".into(),
                scorecard: Some(bad),
            })
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("scorecard.kpi.kpi:"),
            "{}",
            err.message()
        );

        // Update: mask fields only; changing the measure names its member.
        let upd = c
            .update_scorecard(pb::UpdateScorecardRequest {
                scorecard: Some(pb::Scorecard {
                    name: "scorecards/seats".into(),
                    display_name: "ignored".into(),
                    measure: Some(pb::scorecard::Measure::Attribute(pb::AttributeMeasure {
                        attribute: "seats".into(),
                    })),
                    worst_value: 100.0,
                    best_value: 0.0,
                    enabled: Some(false),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![
                        "attribute".into(),
                        "worst_value".into(),
                        "best_value".into(),
                        "enabled".into(),
                    ],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .scorecard
            .unwrap();
        assert_eq!(upd.display_name, "seats");
        assert_eq!(
            (upd.worst_value, upd.best_value, upd.enabled),
            (100.0, 0.0, Some(false))
        );
        assert!(matches!(
            upd.measure,
            Some(pb::scorecard::Measure::Attribute(_))
        ));
        assert_eq!(upd.tags, ["contract", "usage"]);
        let err = c
            .update_scorecard(pb::UpdateScorecardRequest {
                scorecard: Some(pb::Scorecard {
                    name: "scorecards/seats".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["kpi".into()],
                }),
            })
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("update_mask:"),
            "{}",
            err.message()
        );
        let err = c
            .update_scorecard(pb::UpdateScorecardRequest {
                scorecard: Some(pb::Scorecard {
                    name: "scorecards/seats".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_order".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let enabled = names(
            &mut c,
            pb::ListScorecardsRequest {
                enabled_only: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(enabled.len(), 2, "{backend:?}");

        // Reorder: every scorecard exactly once.
        let order = |n: &[&str]| pb::ReorderScorecardsRequest {
            names: n.iter().map(|s| format!("scorecards/{s}")).collect(),
        };
        let r = c
            .reorder_scorecards(order(&["nps", "logins", "seats"]))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<(String, i32)> = r
            .scorecards
            .into_iter()
            .map(|s| (s.name, s.display_order))
            .collect();
        assert_eq!(
            got,
            vec![
                ("scorecards/nps".into(), 0),
                ("scorecards/logins".into(), 1),
                ("scorecards/seats".into(), 2)
            ]
        );
        let err = c
            .reorder_scorecards(order(&["nps", "logins"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = c
            .reorder_scorecards(order(&["nps", "nps", "logins", "seats"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = c
            .reorder_scorecards(order(&["nps", "logins", "seats", "ghost"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            names(&mut c, Default::default()).await[0].0,
            "scorecards/nps",
            "failed reorders wrote"
        );

        // Delete closes the gap; a new one goes last.
        c.delete_scorecard(pb::DeleteScorecardRequest {
            name: "scorecards/logins".into(),
        })
        .await
        .unwrap();
        let err = c
            .get_scorecard(pb::GetScorecardRequest {
                name: "scorecards/logins".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let s = c
            .create_scorecard(pb::CreateScorecardRequest {
                scorecard_id: String::new(),
                scorecard: Some(card("Weekly Logins", &[])),
            })
            .await
            .unwrap()
            .into_inner()
            .scorecard
            .unwrap();
        assert_eq!(s.name, "scorecards/weekly-logins");
        assert_eq!(
            names(&mut c, Default::default()).await,
            vec![
                ("scorecards/nps".into(), 0),
                ("scorecards/seats".into(), 1),
                ("scorecards/weekly-logins".into(), 2)
            ],
            "{backend:?}"
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn preview_matches_scoring_core_on_the_same_data_and_saves_nothing() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let as_of = Utc.with_ymd_and_hms(2026, 3, 31, 12, 0, 0).unwrap();
        let today = as_of.date_naive();
        // Account i logs in (i + 1) x 2 times on each of its i + 1 last days, plus one
        // old day outside the 30-day window that must not count.
        let mut usage: Vec<Vec<core::DailyUsage>> = Vec::new();
        for i in 0..8u32 {
            let id = format!("acct{i}");
            let plan = if i % 2 == 0 { "premium" } else { "basic" };
            env.put_account(
                &id,
                attrs(&[("plan", json!(plan)), ("seats", json!(i * 10))]),
                "active",
            )
            .await;
            let mut rows = Vec::new();
            for d in 0..=i {
                let day = today.checked_sub_days(Days::new(u64::from(d * 3))).unwrap();
                let count = (i + 1) * 2;
                env.put_usage(&id, day, "login", i64::from(count)).await;
                rows.push(core::DailyUsage {
                    day,
                    event_type: 0,
                    count,
                    distinct_users: 1,
                    value_sum: 0.0,
                });
            }
            let old = today.checked_sub_days(Days::new(45)).unwrap();
            env.put_usage(&id, old, "login", 100).await;
            rows.push(core::DailyUsage {
                day: old,
                event_type: 0,
                count: 100,
                distinct_users: 1,
                value_sum: 0.0,
            });
            env.put_metric(&id, "roi", as_of - Duration::days(2), f64::from(i))
                .await;
            env.put_metric(&id, "roi", as_of - Duration::days(1), f64::from(i) + 2.0)
                .await;
            usage.push(rows);
        }
        // A churned account is not scored.
        env.put_account("gone", attrs(&[("plan", json!("premium"))]), "churned")
            .await;
        env.put_usage("gone", today, "login", 50).await;

        let draft = pb::Scorecard {
            display_name: String::new(),
            measure: Some(pb::scorecard::Measure::EventCount(pb::EventCountMeasure {
                event_type: "login".into(),
                window_days: 30,
                aggregation: pb::EventAggregation::Count as i32,
            })),
            worst_value: 0.0,
            best_value: 40.0,
            band_thresholds: Some(cpb::BandThresholds {
                yellow_from: Some(2.5),
                green_from: Some(6.0),
            }),
            ..Default::default()
        };
        let mut c = env.client.clone();
        let preview = |s: pb::Scorecard| pb::PreviewScorecardRequest {
            scorecard: Some(s),
            as_of: Some(prost_types::Timestamp {
                seconds: as_of.timestamp(),
                nanos: 0,
            }),
        };
        let r = c
            .preview_scorecard(preview(draft.clone()))
            .await
            .unwrap()
            .into_inner();

        // The same with scoring-core, directly.
        let card = core::Scorecard {
            mapping: core::ScoreMapping::new(0.0, 40.0).unwrap(),
            bands: core::BandThresholds::new(2.5, 6.0).unwrap(),
            impact: core::Impact::Medium,
        };
        let raw: Vec<f64> = usage
            .iter()
            .map(|u| core::event_count(u, 0, today, 30) as f64)
            .collect();
        let scores: Vec<f64> = raw.iter().map(|v| card.evaluate(*v).unwrap().0).collect();
        let want = core::distribution(scores.iter().copied(), &card.bands);
        let d = r.distribution.unwrap();
        assert_eq!(
            (r.segment_count, r.with_value_count, d.count),
            (8, 8, 8),
            "{backend:?}"
        );
        let hist: Vec<u64> = d.bins.iter().map(|b| u64::from(b.count)).collect();
        assert_eq!(hist, want.histogram, "{backend:?}");
        let bands = d.band_counts.unwrap();
        assert_eq!(
            [
                u64::from(bands.red),
                u64::from(bands.yellow),
                u64::from(bands.green)
            ],
            want.bands
        );
        assert!((d.mean - want.mean.unwrap()).abs() < 1e-9);
        assert!((d.median - want.median.unwrap()).abs() < 1e-9);
        assert!((d.p10 - want.p10.unwrap()).abs() < 1e-9);
        assert!((d.p90 - want.p90.unwrap()).abs() < 1e-9);
        assert!((d.std_dev - want.std.unwrap()).abs() < 1e-9);
        assert_eq!((d.min, d.max), (scores[0], scores[7]));
        assert_eq!((r.measure_min, r.measure_max), (2.0, 128.0), "{backend:?}");
        assert_eq!(d.bins[9].count, 4, "scores clamp at 10");

        // With a segment: only premium accounts (0, 2, 4, 6).
        let mut seg = draft.clone();
        seg.segment = r#"plan == "premium""#.into();
        let r = c
            .preview_scorecard(preview(seg))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.segment_count, 4);
        let want = core::distribution([0, 2, 4, 6].iter().map(|&i| scores[i]), &card.bands);
        assert!((r.distribution.unwrap().mean - want.mean.unwrap()).abs() < 1e-9);

        // Active days and an attribute measure.
        let mut days = draft.clone();
        days.measure = Some(pb::scorecard::Measure::EventCount(pb::EventCountMeasure {
            event_type: "login".into(),
            window_days: 30,
            aggregation: pb::EventAggregation::ActiveDays as i32,
        }));
        days.best_value = 10.0;
        let r = c
            .preview_scorecard(preview(days))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.measure_min, r.measure_max), (1.0, 8.0), "{backend:?}");
        let mut seats = draft.clone();
        seats.measure = Some(pb::scorecard::Measure::Attribute(pb::AttributeMeasure {
            attribute: "seats".into(),
        }));
        seats.worst_value = 70.0;
        seats.best_value = 0.0;
        let r = c
            .preview_scorecard(preview(seats))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.measure_min, r.measure_median, r.measure_max),
            (0.0, 35.0, 70.0)
        );
        let d = r.distribution.unwrap();
        assert_eq!((d.min, d.max), (0.0, 10.0));

        // Custom metric: latest and mean in the window.
        let mut roi = draft.clone();
        roi.measure = Some(pb::scorecard::Measure::CustomMetric(
            pb::CustomMetricMeasure {
                name: "roi".into(),
                aggregation: pb::MetricAggregation::Mean as i32,
                window_days: 7,
            },
        ));
        roi.best_value = 10.0;
        let r = c
            .preview_scorecard(preview(roi.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.measure_min, r.measure_max), (1.0, 8.0), "{backend:?}");
        roi.measure = Some(pb::scorecard::Measure::CustomMetric(
            pb::CustomMetricMeasure {
                name: "roi".into(),
                aggregation: pb::MetricAggregation::Latest as i32,
                window_days: 0,
            },
        ));
        let r = c
            .preview_scorecard(preview(roi))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.measure_min, r.measure_max), (2.0, 9.0));

        // A KPI's raw value, computed by scoring-core from the roll-ups: active days in
        // the 28-day window (account i is active on i + 1 days spaced 3 apart).
        let mut kpi = draft.clone();
        kpi.measure = Some(pb::scorecard::Measure::Kpi(pb::KpiMeasure {
            kpi: "active_days".into(),
        }));
        kpi.best_value = 10.0;
        let r = c
            .preview_scorecard(preview(kpi))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.with_value_count, r.measure_min, r.measure_max),
            (8, 1.0, 8.0),
            "{backend:?}"
        );

        // Invalid drafts are refused like CreateScorecard; nothing was saved.
        let mut bad = draft;
        bad.worst_value = f64::NAN;
        let err = c.preview_scorecard(preview(bad)).await.unwrap_err();
        assert_eq!(err.message(), "scorecard.worst_value: must be finite");
        let n = c
            .list_scorecards(pb::ListScorecardsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .scorecards
            .len();
        assert_eq!(n, 0, "{backend:?}: preview saved a scorecard");
        env.stop().await;
    }
}
