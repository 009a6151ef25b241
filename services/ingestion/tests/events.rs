//! Usage events over real gRPC, on SQLite and (when configured) PostgreSQL: idempotent
//! re-send, exactly-once roll-ups with exact distinct users, a bad batch writes nothing,
//! concurrent streams for the same account.

mod common;

use common::{batch, event, start, start_on, stream, url_for};
use tonic::Code;
use vitals_proto::ingestion::v1 as pb;
use vitals_test_support::backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_is_idempotent_and_rollups_move_once() {
    for backend in backends() {
        let env = start(backend).await;
        let mut c = env.client().await;
        let day1 = "2026-01-10T09:00:00Z";
        let day1b = "2026-01-10T23:59:59Z";
        let day2 = "2026-01-11T00:00:00Z";
        let first = vec![
            event("acme", "e1", "u1", "login", day1, Some(2.0)),
            event("acme", "e2", "u2", "login", day1b, Some(3.5)),
            event("acme", "e3", "u1", "login", day1, None),
            // Repeated within the batch: a duplicate.
            event("acme", "e3", "u1", "login", day1, None),
            event("acme", "e4", "", "report", day2, Some(1.0)),
            event("globex", "e1", "u9", "login", day2, None),
        ];
        let (acks, err) = stream(&mut c, vec![batch(7, first.clone()), batch(8, first)]).await;
        assert!(err.is_none(), "{backend:?}: {err:?}");
        assert_eq!(acks.len(), 2);
        assert_eq!(
            (
                acks[0].sequence,
                acks[0].accepted_count,
                acks[0].duplicate_count
            ),
            (7, 5, 1)
        );
        assert_eq!(
            (
                acks[1].sequence,
                acks[1].accepted_count,
                acks[1].duplicate_count
            ),
            (8, 0, 6)
        );

        // A third batch with one old and two new events (one new user, one known).
        let more = vec![
            event("acme", "e2", "u2", "login", day1b, Some(3.5)),
            event("acme", "e5", "u3", "login", day1, Some(0.5)),
            event("acme", "e6", "u2", "login", day1, None),
        ];
        let (acks, err) = stream(&mut c, vec![batch(9, more)]).await;
        assert!(err.is_none(), "{backend:?}: {err:?}");
        assert_eq!((acks[0].accepted_count, acks[0].duplicate_count), (2, 1));

        // The unary form.
        let r = c
            .ingest_event(pb::IngestEventRequest {
                event: Some(event("acme", "e6", "u2", "login", day1, None)),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.duplicate, "{backend:?}");
        let r = c
            .ingest_event(pb::IngestEventRequest {
                event: Some(event("acme", "e7", "u4", "report", day2, Some(2.0))),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.duplicate, "{backend:?}");

        assert_eq!(
            env.int("SELECT COUNT(*) FROM events").await,
            8,
            "{backend:?}"
        );
        // acme/day1/login: e1 u1 2.0, e2 u2 3.5, e3 u1, e5 u3 0.5, e6 u2 -> 5 events, 3 users.
        let q = |col: &str, day: &str, kind: &str| {
            format!(
                "SELECT {col} FROM usage_daily WHERE account_id = 'acme' AND day = '{day}' AND event_type = '{kind}'"
            )
        };
        assert_eq!(
            env.int(&q("count", "2026-01-10", "login")).await,
            5,
            "{backend:?}"
        );
        assert_eq!(
            env.int(&q("distinct_users", "2026-01-10", "login")).await,
            3,
            "{backend:?}"
        );
        assert_eq!(
            env.int(&q("CAST(value_sum * 10 AS BIGINT)", "2026-01-10", "login"))
                .await,
            60,
            "{backend:?}"
        );
        // acme/day2/report: e4 (no user) and e7 (u4).
        assert_eq!(
            env.int(&q("count", "2026-01-11", "report")).await,
            2,
            "{backend:?}"
        );
        assert_eq!(
            env.int(&q("distinct_users", "2026-01-11", "report")).await,
            1,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await,
            8,
            "{backend:?}"
        );

        // Unknown accounts were created, unassigned.
        let acc = c
            .get_account(pb::GetAccountRequest {
                account_id: "globex".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        assert_eq!(acc.status(), pb::AccountStatus::Unassigned, "{backend:?}");

        // Event types seen in events, with their counts.
        let types = c
            .list_event_types(pb::ListEventTypesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .event_types;
        let got: Vec<(String, u64)> = types.into_iter().map(|t| (t.name, t.event_count)).collect();
        assert_eq!(
            got,
            vec![("login".into(), 6), ("report".into(), 2)],
            "{backend:?}"
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_writes_nothing_and_names_batch_index_and_field() {
    for backend in backends() {
        let env = start(backend).await;
        let mut c = env.client().await;
        let good = vec![event(
            "acme",
            "g1",
            "u1",
            "login",
            "2026-01-10T09:00:00Z",
            None,
        )];
        let mut bad: Vec<pb::Event> = (0..5)
            .map(|i| {
                event(
                    "acme",
                    &format!("b{i}"),
                    "u1",
                    "login",
                    "2026-01-10T10:00:00Z",
                    None,
                )
            })
            .collect();
        bad[3].occur_time = Some(common::ts("1999-12-31T23:59:59Z"));
        let after = vec![event(
            "acme",
            "a1",
            "u1",
            "login",
            "2026-01-10T11:00:00Z",
            None,
        )];
        let (acks, err) =
            stream(&mut c, vec![batch(1, good), batch(2, bad), batch(3, after)]).await;
        assert_eq!(
            acks.len(),
            1,
            "{backend:?}: only the batch before the bad one is acked"
        );
        let err = err.expect("the stream ends with an error");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "batch 2: events[3].occur_time: before 2000-01-01",
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM events").await,
            1,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await,
            1,
            "{backend:?}"
        );

        // The same through the unary RPC.
        let mut e = event(
            "acme",
            "x",
            "u1",
            "login",
            "2026-01-10T11:00:00Z",
            Some(f64::NAN),
        );
        let s = c
            .ingest_event(pb::IngestEventRequest {
                event: Some(e.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::InvalidArgument,
                "event.value: must be a finite number"
            )
        );
        e.value = None;
        e.account_id = String::new();
        let s = c
            .ingest_event(pb::IngestEventRequest { event: Some(e) })
            .await
            .unwrap_err();
        assert_eq!(s.message(), "event.account_id: must not be empty");
        assert_eq!(
            env.int("SELECT COUNT(*) FROM events").await,
            1,
            "{backend:?}"
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_validation_cases() {
    let env = start(vitals_test_support::Backend::Sqlite).await;
    let mut c = env.client().await;
    let now = chrono::Utc::now();
    let future = prost_types::Timestamp {
        seconds: now.timestamp() + 25 * 3600,
        nanos: 0,
    };
    let base = || event("acme", "e", "u", "login", "2026-01-10T09:00:00Z", None);
    type Case = (Box<dyn Fn(&mut pb::Event)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|e| e.event_id.clear()),
            "events[1].event_id: must not be empty",
        ),
        (
            Box::new(|e| e.event_id = "x".repeat(257)),
            "events[1].event_id: longer than 256 bytes",
        ),
        (
            Box::new(|e| e.account_id = "a".repeat(300)),
            "events[1].account_id: longer than 256 bytes",
        ),
        (
            Box::new(|e| e.account_id = "a\u{7}".into()),
            "events[1].account_id: contains a control character",
        ),
        (
            Box::new(|e| e.user_id = "u".repeat(257)),
            "events[1].user_id: longer than 256 bytes",
        ),
        (
            Box::new(|e| e.event_type.clear()),
            "events[1].event_type: must not be empty",
        ),
        (
            Box::new(|e| e.event_type = "t".repeat(129)),
            "events[1].event_type: longer than 128 bytes",
        ),
        (
            Box::new(|e| e.occur_time = None),
            "events[1].occur_time: is required",
        ),
        (
            Box::new(move |e| e.occur_time = Some(future)),
            "events[1].occur_time: more than 24h in the future",
        ),
        (
            Box::new(|e| e.value = Some(f64::INFINITY)),
            "events[1].value: must be a finite number",
        ),
        (
            Box::new(|e| e.value = Some(f64::NAN)),
            "events[1].value: must be a finite number",
        ),
    ];
    for (i, (mutate, want)) in cases.into_iter().enumerate() {
        let mut bad = base();
        mutate(&mut bad);
        let (acks, err) = stream(&mut c, vec![batch(i as u64, vec![base(), bad])]).await;
        assert!(acks.is_empty());
        let err = err.expect("rejected");
        assert_eq!(err.code(), Code::InvalidArgument, "{want}");
        assert_eq!(err.message(), format!("batch {i}: {want}"));
    }
    // Oversized and empty batches.
    let big: Vec<pb::Event> = (0..10_001)
        .map(|i| event("a", &i.to_string(), "", "t", "2026-01-10T09:00:00Z", None))
        .collect();
    let (_, err) = stream(&mut c, vec![batch(5, big)]).await;
    assert_eq!(
        err.unwrap().message(),
        "batch 5: events: holds 10001 items, more than the limit of 10,000"
    );
    let (_, err) = stream(&mut c, vec![batch(6, vec![])]).await;
    assert_eq!(
        err.unwrap().message(),
        "batch 6: events: must hold at least one item"
    );
    assert_eq!(env.int("SELECT COUNT(*) FROM events").await, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_for_one_account_count_once() {
    for backend in backends() {
        let env = start(backend).await;
        // 4 streams send overlapping events (ids 0..600 with offsets) for one account,
        // in different orders, 6 batches of 100 each.
        let mut tasks = Vec::new();
        for s in 0..4u64 {
            let mut c = env.client().await;
            tasks.push(tokio::spawn(async move {
                let mut ids: Vec<u64> = (0..600).map(|i| (i + s * 150) % 900).collect();
                if s % 2 == 1 {
                    ids.reverse();
                }
                let batches = ids
                    .chunks(100)
                    .enumerate()
                    .map(|(b, chunk)| {
                        batch(
                            b as u64,
                            chunk
                                .iter()
                                .map(|i| {
                                    event(
                                        "acme",
                                        &format!("e{i}"),
                                        &format!("u{}", i % 7),
                                        if i % 2 == 0 { "even" } else { "odd" },
                                        &format!("2026-01-{:02}T10:00:00Z", 1 + i % 3),
                                        Some(1.0),
                                    )
                                })
                                .collect(),
                        )
                    })
                    .collect();
                let (acks, err) = stream(&mut c, batches).await;
                assert!(err.is_none(), "{err:?}");
                acks.iter()
                    .map(|a| (a.accepted_count, a.duplicate_count))
                    .fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1))
            }));
        }
        let mut accepted = 0;
        let mut dups = 0;
        for t in tasks {
            let (a, d) = t.await.unwrap();
            accepted += a;
            dups += d;
        }
        // Distinct ids: (i + s*150) % 900 for i in 0..600, s in 0..4 covers 0..900.
        assert_eq!(accepted, 900, "{backend:?}");
        assert_eq!(dups, 4 * 600 - 900, "{backend:?}");
        assert_eq!(env.int("SELECT COUNT(*) FROM events").await, 900);
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await,
            900,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT CAST(SUM(value_sum) AS BIGINT) FROM usage_daily")
                .await,
            900,
            "{backend:?}"
        );
        // Each (day, parity) group holds ids with the same i % 6, so i % 7 spans all 7 users.
        assert_eq!(
            env.int("SELECT COUNT(*) FROM usage_daily").await,
            6,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT MIN(distinct_users) FROM usage_daily").await,
            7,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT MAX(distinct_users) FROM usage_daily").await,
            7
        );
        assert_eq!(
            env.int(&format!(
                "SELECT SUM({}) FROM event_types",
                vitals_store::ingestion::EVENT_COUNT
            ))
            .await,
            900
        );
        env.stop().await;
    }
}

/// `--event-retention-days`: a server started with it ages out the raw events older than
/// that at start-up (the job then runs hourly); the roll-ups stay, and the old events
/// sent again are answered as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_setting_ages_out_old_raw_events_and_keeps_rollups() {
    for backend in backends() {
        let url = url_for(backend).await;
        let env = start_on(
            backend,
            url.clone(),
            vitals_ingestion::IngestionArgs::default(),
        )
        .await;
        let mut c = env.client().await;
        let recent = (chrono::Utc::now() - chrono::Duration::days(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let old = vec![
            event(
                "acme",
                "o1",
                "u1",
                "login",
                "2020-01-10T09:00:00Z",
                Some(1.0),
            ),
            event("acme", "o2", "u2", "login", "2020-02-10T09:00:00Z", None),
        ];
        let all = vec![
            old[0].clone(),
            old[1].clone(),
            event("acme", "r1", "u1", "login", &recent, None),
        ];
        let (acks, err) = stream(&mut c, vec![batch(1, all)]).await;
        assert!(err.is_none(), "{backend:?}: {err:?}");
        assert_eq!(acks[0].accepted_count, 3);
        let daily = env.int("SELECT SUM(count) FROM usage_daily").await;
        assert_eq!(daily, 3);
        env.stop().await;

        let args = vitals_ingestion::IngestionArgs {
            event_retention_days: Some(30),
            ..vitals_ingestion::IngestionArgs::default()
        };
        let env = start_on(backend, url, args).await;
        let mut left = -1;
        for _ in 0..200 {
            left = env.int("SELECT COUNT(*) FROM events").await;
            if left == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(left, 1, "{backend:?}: the old raw events are gone");
        assert_eq!(env.int("SELECT SUM(count) FROM usage_daily").await, 3);
        let mut c = env.client().await;
        let (acks, err) = stream(&mut c, vec![batch(2, old)]).await;
        assert!(err.is_none(), "{backend:?}: {err:?}");
        assert_eq!((acks[0].accepted_count, acks[0].duplicate_count), (0, 2));
        assert_eq!(env.int("SELECT SUM(count) FROM usage_daily").await, 3);
        env.stop().await;
    }
}
