//! Erasure end to end through gRPC on every backend: DeleteAccount removes every row of
//! one account (checked table by table from the store's erasure list) and its scores
//! stop being served, the other account is untouched; DeleteAccounts in bulk, its limit
//! and its errors naming the field.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use prost_types::Timestamp;
use tonic::Code;
use tonic_types::StatusExt;
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::Store;
use vitals_store::erasure::ERASED;
use vitals_test_support::{Backend, TestServer, backends, query_int};

async fn server(backend: Backend) -> (TestServer, Store) {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", common::temp_db("erasure").display()),
        Backend::Postgres => vitals_test_support::fresh_url(backend)
            .await
            .expect("fresh database"),
    };
    let config = vitals::ServeConfig::for_tests(url.clone());
    let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
    let store = Store::connect(&url).await.expect("test's own connection");
    (server, store)
}

fn ts(days_ago: i64) -> Option<Timestamp> {
    let t = Utc::now() - chrono::Duration::days(days_ago);
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// Rows of `account` in every table of the erasure list.
async fn rows_of(store: &Store, account: &str) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for (table, col) in ERASED {
        let n = query_int(
            store,
            &format!("SELECT COUNT(*) FROM {table} WHERE {col} = '{account}'"),
        )
        .await;
        out.push((*table, n));
    }
    out
}

async fn fill(channel: tonic::transport::Channel, accounts: &[&str]) {
    let mut ing = IngestionServiceClient::new(channel.clone());
    ing.upsert_accounts(ipb::UpsertAccountsRequest {
        accounts: accounts
            .iter()
            .map(|a| ipb::Account {
                account_id: a.to_string(),
                display_name: format!("{a} Inc"),
                attributes: [(
                    "seats".to_string(),
                    cpb::AttributeValue {
                        kind: Some(cpb::attribute_value::Kind::NumberValue(10.0)),
                    },
                )]
                .into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    ing.upsert_contacts(ipb::UpsertContactsRequest {
        contacts: accounts
            .iter()
            .map(|a| ipb::Contact {
                account_id: a.to_string(),
                contact_id: "u1".into(),
                display_name: "Ann".into(),
                ..Default::default()
            })
            .collect(),
    })
    .await
    .unwrap();
    for a in accounts {
        for i in 0..5 {
            ing.ingest_event(ipb::IngestEventRequest {
                event: Some(ipb::Event {
                    event_id: format!("{a}-{i}"),
                    account_id: a.to_string(),
                    user_id: "u1".into(),
                    event_type: "login".into(),
                    occur_time: ts(i),
                    value: None,
                }),
            })
            .await
            .unwrap();
        }
    }
    LearnerServiceClient::new(channel.clone())
        .record_outcomes(lpb::RecordOutcomesRequest {
            outcomes: accounts
                .iter()
                .map(|a| lpb::Outcome {
                    account_id: a.to_string(),
                    kind: lpb::OutcomeKind::Renewed as i32,
                    occur_time: ts(30),
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .unwrap();
    ScoringServiceClient::new(channel)
        .compute_scores(spb::ComputeScoresRequest {
            scope: None,
            as_of: None,
        })
        .await
        .unwrap();
}

async fn get_score(channel: tonic::transport::Channel, account: &str) -> Result<(), Code> {
    ScoringServiceClient::new(channel)
        .get_score(spb::GetScoreRequest {
            account_id: account.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_account_erases_every_row_and_stops_serving_its_scores() {
    for backend in backends() {
        let (server, store) = server(backend).await;
        let channel = server.channel().await;
        fill(channel.clone(), &["gone", "stays"]).await;
        let before = rows_of(&store, "stays").await;
        for (table, n) in rows_of(&store, "gone").await {
            // Outcomes, assignments, snapshots, latest scores: written by the other
            // services through their own RPCs. (Interactions and the like: the store test.)
            if [
                "accounts",
                "contacts",
                "events",
                "usage_daily",
                "usage_daily_users",
                "outcomes",
                "account_assignments",
                "score_snapshots",
                "score_latest",
            ]
            .contains(&table)
            {
                assert!(n > 0, "{backend:?}: {table} filled");
            }
        }
        // Served (and cached) before.
        assert_eq!(get_score(channel.clone(), "gone").await, Ok(()));

        let mut ing = IngestionServiceClient::new(channel.clone());
        let r = ing
            .delete_account(ipb::DeleteAccountRequest {
                account_id: "gone".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.deleted_row_count >= 9, "{r:?}");
        for (table, n) in rows_of(&store, "gone").await {
            assert_eq!(
                n, 0,
                "{backend:?}: {table} still holds rows of the erased account"
            );
        }
        assert_eq!(rows_of(&store, "stays").await, before, "{backend:?}");
        let e = ing
            .get_account(ipb::GetAccountRequest {
                account_id: "gone".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        // The scoring cache lets go of the erased score within its refresh interval.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match get_score(channel.clone(), "gone").await {
                Err(Code::NotFound) => break,
                other if Instant::now() > deadline => {
                    panic!("{backend:?}: erased score still served: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert_eq!(get_score(channel.clone(), "stays").await, Ok(()));

        // Again: nothing left.
        let e = ing
            .delete_account(ipb::DeleteAccountRequest {
                account_id: "gone".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");

        // Bulk: found and not found counted, in one call.
        let r = ing
            .delete_accounts(ipb::DeleteAccountsRequest {
                account_ids: vec!["stays".into(), "nobody".into(), "stays".into()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.deleted_count, r.not_found_count), (1, 1), "{r:?}");
        assert_eq!(query_int(&store, "SELECT COUNT(*) FROM accounts").await, 0);
        assert_eq!(query_int(&store, "SELECT COUNT(*) FROM events").await, 0);

        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_accounts_refuses_bad_lists_naming_the_field() {
    let (server, _store) = server(Backend::Sqlite).await;
    let mut ing = IngestionServiceClient::new(server.channel().await);
    let field = |s: tonic::Status| {
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        s.get_details_bad_request().unwrap().field_violations[0]
            .field
            .clone()
    };
    let too_many = ing
        .delete_accounts(ipb::DeleteAccountsRequest {
            account_ids: (0..1001).map(|i| format!("a{i}")).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(field(too_many), "account_ids");
    let empty = ing
        .delete_accounts(ipb::DeleteAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(field(empty), "account_ids");
    let bad = ing
        .delete_accounts(ipb::DeleteAccountsRequest {
            account_ids: vec!["ok".into(), String::new()],
        })
        .await
        .unwrap_err();
    assert_eq!(field(bad), "account_ids[1]");
    let bad = ing
        .delete_account(ipb::DeleteAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(field(bad), "account_id");
    server.stop().await.unwrap();
}
