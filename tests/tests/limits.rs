//! The per-call limits as a client meets them: a call past its deadline gets
//! DEADLINE_EXCEEDED (server request timeout or the client's own deadline), streams are
//! not cut by the request timeout, an oversize message gets RESOURCE_EXHAUSTED naming the
//! setting, and health and reflection answer while every call slot is taken.

mod common;

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::Code;
use vitals_proto::ingestion::v1 as ing;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_test_support::TestServer;

/// An all-in-one on a fresh SQLite file with `tune` applied; the file's path.
async fn server(
    tag: &str,
    tune: impl FnOnce(&mut vitals::ServeConfig),
) -> (TestServer, String, std::path::PathBuf) {
    let db = common::temp_db(tag);
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut config = vitals::ServeConfig::for_tests(url.clone());
    tune(&mut config);
    let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
    (server, url, db)
}

fn remove(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

fn accounts(id: &str, name_bytes: usize) -> ing::UpsertAccountsRequest {
    ing::UpsertAccountsRequest {
        accounts: vec![ing::Account {
            account_id: id.into(),
            display_name: "x".repeat(name_bytes),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Holds SQLite's write lock on `url` (another writer, as a long transaction would):
/// every write of the server waits for it (up to its 5 s busy timeout).
async fn hold_write_lock(url: &str) -> (vitals_store::Store, vitals_store::WriteTx) {
    let store = vitals_store::Store::connect(url).await.expect("open");
    let tx = store.begin_write().await.expect("BEGIN IMMEDIATE");
    (store, tx)
}

#[tokio::test]
async fn server_request_timeout_answers_deadline_exceeded() {
    let (server, url, db) = server("deadline", |c| {
        c.server.request_timeout = Duration::from_secs(1);
    })
    .await;
    let mut client = IngestionServiceClient::new(server.channel().await);
    client
        .upsert_accounts(accounts("a", 4))
        .await
        .expect("fast call");

    let (_store, tx) = hold_write_lock(&url).await;
    let start = Instant::now();
    let err = client
        .upsert_accounts(accounts("b", 4))
        .await
        .expect_err("a write behind the lock outlives the request timeout");
    let took = start.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("VITALS_REQUEST_TIMEOUT"),
        "{}",
        err.message()
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    tx.rollback().await.unwrap();
    server.stop().await.expect("clean stop");
    remove(&db);
}

#[tokio::test]
async fn client_deadline_answers_deadline_exceeded() {
    let (server, url, db) = server("client-deadline", |_| {}).await;
    let mut client = IngestionServiceClient::new(server.channel().await);
    let (_store, tx) = hold_write_lock(&url).await;
    // The client enforces its deadline too: on a loaded machine its own timer can fire
    // before the server's answer arrives (CANCELLED "Timeout expired", made by the client).
    // That race is the client's, not the server's: try a few times and require the
    // server's DEADLINE_EXCEEDED at least once, and nothing but those two answers. A
    // server that does not answer DEADLINE_EXCEEDED itself never passes.
    let mut server_answers = 0;
    for _ in 0..5 {
        let mut req = tonic::Request::new(accounts("b", 4));
        req.set_timeout(Duration::from_millis(400));
        let start = Instant::now();
        let err = client
            .upsert_accounts(req)
            .await
            .expect_err("past its deadline");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        match err.code() {
            Code::DeadlineExceeded => {
                assert!(
                    err.message().contains("the client's deadline of 400 ms"),
                    "{}",
                    err.message()
                );
                server_answers += 1;
                break;
            }
            Code::Cancelled if std::error::Error::source(&err).is_some() => continue,
            _ => panic!(
                "neither the server's DEADLINE_EXCEEDED nor the client's own timeout: {err:?}"
            ),
        }
    }
    assert_eq!(
        server_answers, 1,
        "the server never answered DEADLINE_EXCEEDED"
    );
    tx.rollback().await.unwrap();
    server.stop().await.expect("clean stop");
    remove(&db);
}

#[tokio::test]
async fn streams_outlive_the_request_timeout() {
    let (server, _url, db) = server("stream-timeout", |c| {
        c.server.request_timeout = Duration::from_secs(1);
    })
    .await;
    let mut client = IngestionServiceClient::new(server.channel().await);
    client
        .upsert_accounts(accounts("a", 4))
        .await
        .expect("account");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = client
        .ingest_events(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream open")
        .into_inner();
    let batch = |seq: u64| ing::IngestEventsRequest {
        sequence: seq,
        events: vec![ing::Event {
            event_id: format!("e{seq}"),
            account_id: "a".into(),
            event_type: "login".into(),
            occur_time: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            ..Default::default()
        }],
    };
    tx.send(batch(1)).await.unwrap();
    assert_eq!(acks.next().await.unwrap().unwrap().sequence, 1);
    // Longer than the request timeout: the stream is bounded by its client, not by it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.send(batch(2)).await.unwrap();
    let ack = acks.next().await.unwrap().expect("second batch acked");
    assert_eq!((ack.sequence, ack.accepted_count), (2, 1));
    drop(tx);
    assert!(acks.next().await.is_none());
    server.stop().await.expect("clean stop");
    remove(&db);
}

#[tokio::test]
async fn oversize_message_is_resource_exhausted_naming_the_setting() {
    let (server, _url, db) = server("oversize", |_| {}).await;
    let mut client = IngestionServiceClient::new(server.channel().await);
    let err = client
        .upsert_accounts(accounts("a", 20 * 1024 * 1024))
        .await
        .expect_err("20 MB message");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("over the limit of 16777216 bytes")
            && err.message().contains("VITALS_MAX_MESSAGE_BYTES"),
        "{}",
        err.message()
    );
    // The same in a stream.
    let big = ing::IngestEventsRequest {
        sequence: 1,
        events: vec![ing::Event {
            event_id: "x".repeat(20 * 1024 * 1024),
            account_id: "a".into(),
            event_type: "login".into(),
            ..Default::default()
        }],
    };
    let r = async {
        let mut acks = client
            .ingest_events(tokio_stream::iter([big]))
            .await?
            .into_inner();
        acks.next()
            .await
            .unwrap_or(Ok(Default::default()))
            .map(drop)
    }
    .await;
    let err = r.expect_err("20 MB batch");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("VITALS_MAX_MESSAGE_BYTES"),
        "{err:?}"
    );
    // The server is fine and takes normal calls on the same connection.
    client
        .upsert_accounts(accounts("a", 4))
        .await
        .expect("normal call");
    server.stop().await.expect("clean stop");
    remove(&db);
}

#[tokio::test]
async fn health_and_reflection_answer_while_every_slot_is_taken() {
    let (server, url, db) = server("saturated", |c| {
        c.server.concurrency_limit = 1;
    })
    .await;
    let channel = server.channel().await;
    let (_store, tx) = hold_write_lock(&url).await;
    // The one slot: a write waiting for the lock (up to the 5 s busy timeout).
    let mut client = IngestionServiceClient::new(channel.clone());
    let slow = tokio::spawn(async move { client.upsert_accounts(accounts("b", 4)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.is_finished(), "the slow call should hold the slot");

    let start = Instant::now();
    assert_eq!(
        vitals_test_support::health(server.addr, "").await,
        Ok(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
    let listed = common::list_services_v1alpha(channel.clone()).await;
    assert!(listed.contains("grpc.health.v1.Health"), "{listed:?}");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "health and reflection waited {took:?} behind the concurrency limit"
    );
    assert!(!slow.is_finished(), "they did not wait for the slow call");
    tx.rollback().await.unwrap();
    let _ = slow.await;
    server.stop().await.expect("clean stop");
    remove(&db);
}
