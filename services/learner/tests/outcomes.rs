//! RecordOutcomes and ListOutcomes over real gRPC: a bad item rejects the whole batch
//! (nothing written, the error names the item's index and field), re-sent outcomes are
//! duplicates, listing pages newest first with filters.

mod common;

use chrono::{Duration, NaiveDate, Utc};
use common::{Env, at, churn, quiet_args, ts};
use tonic::Code;
use vitals_proto::learner::v1 as pb;
use vitals_test_support::backends;

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).expect("date")
}

fn outcome(id: &str, kind: pb::OutcomeKind, d: NaiveDate) -> pb::Outcome {
    pb::Outcome {
        account_id: id.into(),
        kind: kind as i32,
        occur_time: Some(ts(at(d))),
        note: String::new(),
        record_time: None,
    }
}

async fn list_all(env: &Env, req: pb::ListOutcomesRequest) -> Vec<pb::Outcome> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = env
            .client
            .clone()
            .list_outcomes(pb::ListOutcomesRequest {
                page_token: token.clone(),
                ..req.clone()
            })
            .await
            .expect("list outcomes")
            .into_inner();
        out.extend(r.outcomes);
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_item_rejects_the_batch_and_names_the_field() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let good = churn("a1", day(3, 1));
        let cases: Vec<(Vec<pb::Outcome>, &str)> = vec![
            (vec![], "outcomes"),
            (
                vec![
                    good.clone(),
                    outcome("a2", pb::OutcomeKind::Unspecified, day(3, 2)),
                ],
                "outcomes[1].kind",
            ),
            (
                vec![
                    good.clone(),
                    good.clone(),
                    pb::Outcome {
                        kind: 42,
                        ..good.clone()
                    },
                ],
                "outcomes[2].kind",
            ),
            (
                vec![pb::Outcome {
                    account_id: String::new(),
                    ..good.clone()
                }],
                "outcomes[0].account_id",
            ),
            (
                vec![
                    good.clone(),
                    pb::Outcome {
                        account_id: "x".repeat(257),
                        ..good.clone()
                    },
                ],
                "outcomes[1].account_id",
            ),
            (
                vec![pb::Outcome {
                    occur_time: None,
                    ..good.clone()
                }],
                "outcomes[0].occur_time",
            ),
            (
                vec![pb::Outcome {
                    occur_time: Some(ts(Utc::now() + Duration::hours(48))),
                    ..good.clone()
                }],
                "outcomes[0].occur_time",
            ),
            (
                vec![pb::Outcome {
                    occur_time: Some(ts(at(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap()))),
                    ..good.clone()
                }],
                "outcomes[0].occur_time",
            ),
            (
                vec![
                    good.clone(),
                    pb::Outcome {
                        note: "n".repeat(4097),
                        ..good.clone()
                    },
                ],
                "outcomes[1].note",
            ),
        ];
        for (outcomes, field) in cases {
            let err = env
                .client
                .clone()
                .record_outcomes(pb::RecordOutcomesRequest { outcomes })
                .await
                .expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
            assert!(
                err.message().starts_with(&format!("{field}:")),
                "{field}: {}",
                err.message()
            );
        }
        let too_many = vec![good.clone(); 10_001];
        let err = env
            .client
            .clone()
            .record_outcomes(pb::RecordOutcomesRequest { outcomes: too_many })
            .await
            .expect_err("too many");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("outcomes:"), "{}", err.message());

        // Nothing of any rejected batch was written, not even the valid first items.
        let all = list_all(&env, pb::ListOutcomesRequest::default()).await;
        assert!(all.is_empty(), "{all:?}");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_idempotent_and_listed_newest_first() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let batch = vec![
            churn("a1", day(3, 1)),
            outcome("a2", pb::OutcomeKind::Renewed, day(4, 1)),
            outcome("a3", pb::OutcomeKind::Inactive, day(5, 1)),
            churn("a4", day(6, 1)),
            pb::Outcome {
                note: "price".into(),
                ..churn("a5", day(6, 1))
            },
        ];
        let r = env.record(batch.clone()).await;
        assert_eq!((r.recorded_count, r.duplicate_count), (5, 0));
        let mut again = batch.clone();
        again.push(churn("a6", day(7, 1)));
        let r = env.record(again).await;
        assert_eq!((r.recorded_count, r.duplicate_count), (1, 5));

        // Paged by 2: every outcome once, newest occur_time first (ties by account).
        let all = list_all(
            &env,
            pb::ListOutcomesRequest {
                page_size: 2,
                ..Default::default()
            },
        )
        .await;
        let ids: Vec<&str> = all.iter().map(|o| o.account_id.as_str()).collect();
        assert_eq!(ids, ["a6", "a4", "a5", "a3", "a2", "a1"]);
        assert!(all.iter().all(|o| o.record_time.is_some()));
        assert_eq!(all[2].note, "price");

        let churned = list_all(
            &env,
            pb::ListOutcomesRequest {
                kind: pb::OutcomeKind::Churned as i32,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(churned.len(), 4);
        let one = list_all(
            &env,
            pb::ListOutcomesRequest {
                account_id: "a2".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].kind, pb::OutcomeKind::Renewed as i32);
        let range = list_all(
            &env,
            pb::ListOutcomesRequest {
                time_range: Some(vitals_proto::common::v1::TimeRange {
                    start_time: Some(ts(at(day(4, 1)))),
                    end_time: Some(ts(at(day(6, 1)))),
                }),
                ..Default::default()
            },
        )
        .await;
        let ids: Vec<&str> = range.iter().map(|o| o.account_id.as_str()).collect();
        assert_eq!(ids, ["a3", "a2"]);

        for (req, field) in [
            (
                pb::ListOutcomesRequest {
                    page_size: -1,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                pb::ListOutcomesRequest {
                    page_token: "zz".into(),
                    ..Default::default()
                },
                "page_token",
            ),
            (
                pb::ListOutcomesRequest {
                    kind: 9,
                    ..Default::default()
                },
                "kind",
            ),
            (
                pb::ListOutcomesRequest {
                    time_range: Some(vitals_proto::common::v1::TimeRange {
                        start_time: Some(ts(at(day(6, 1)))),
                        end_time: Some(ts(at(day(4, 1)))),
                    }),
                    ..Default::default()
                },
                "time_range.end_time",
            ),
        ] {
            let err = env
                .client
                .clone()
                .list_outcomes(req)
                .await
                .expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().starts_with(field), "{}", err.message());
        }
        env.stop().await;
    }
}
