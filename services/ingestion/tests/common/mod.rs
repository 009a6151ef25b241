//! Shared helpers of the ingestion tests: a server per back end on a database the test
//! can also read, and small builders.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::transport::Channel;
use vitals_ingestion::{Config, IngestionArgs};
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_server::ServerConfig;
use vitals_store::Store;
use vitals_test_support::{Backend, TestServer};

/// A running ingestion server and a store handle on the same database.
pub struct Env {
    pub backend: Backend,
    pub server: TestServer,
    pub store: Store,
    pub url: String,
}

impl Env {
    pub async fn client(&self) -> IngestionServiceClient<Channel> {
        IngestionServiceClient::new(self.server.channel().await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// One integer from a query such as `SELECT COUNT(*) FROM events`.
    pub async fn int(&self, sql: &str) -> i64 {
        vitals_test_support::query_int(&self.store, sql).await
    }

    pub async fn stop(self) {
        self.store.close().await.expect("close store");
        self.server.stop().await.expect("server stops cleanly");
    }
}

/// A database URL the test can open too: a temporary SQLite file (an in-memory
/// database would be private to the server's pool), or a fresh PostgreSQL database.
pub async fn url_for(backend: Backend) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!(
                "vitals-ingestion-test-{}-{}.db",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
            }
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => vitals_test_support::fresh_url(backend)
            .await
            .expect("fresh postgres database"),
    }
}

pub async fn start(backend: Backend) -> Env {
    let url = url_for(backend).await;
    start_on(backend, url, IngestionArgs::default()).await
}

/// A server on the database `url` with the settings `service`.
pub async fn start_on(backend: Backend, url: String, service: IngestionArgs) -> Env {
    let config = Config {
        server: ServerConfig::for_tests(url.clone()),
        service,
    };
    let server =
        TestServer::start(|listener, shutdown| vitals_ingestion::run(config, listener, shutdown))
            .await;
    let store = Store::connect(&url).await.expect("connect");
    Env {
        backend,
        server,
        store,
        url,
    }
}

pub fn ts(s: &str) -> prost_types::Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339");
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

pub fn event(
    account: &str,
    id: &str,
    user: &str,
    kind: &str,
    at: &str,
    value: Option<f64>,
) -> pb::Event {
    pb::Event {
        event_id: id.to_string(),
        account_id: account.to_string(),
        user_id: user.to_string(),
        event_type: kind.to_string(),
        occur_time: Some(ts(at)),
        value,
    }
}

/// Streams `batches` on one IngestEvents call and returns the acks, or the status that
/// ended the stream together with the acks received before it.
pub async fn stream(
    client: &mut IngestionServiceClient<Channel>,
    batches: Vec<pb::IngestEventsRequest>,
) -> (Vec<pb::IngestEventsResponse>, Option<tonic::Status>) {
    let out = tokio_stream::iter(batches);
    let mut acks = Vec::new();
    let mut inbound = match client.ingest_events(out).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (acks, Some(s)),
    };
    loop {
        match inbound.message().await {
            Ok(Some(a)) => acks.push(a),
            Ok(None) => return (acks, None),
            Err(s) => return (acks, Some(s)),
        }
    }
}

pub fn batch(sequence: u64, events: Vec<pb::Event>) -> pb::IngestEventsRequest {
    pb::IngestEventsRequest { sequence, events }
}
