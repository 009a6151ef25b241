//! Shared helpers of the loader tests: an ingestion server on a database the test can
//! also read (the loader's counterpart; the service's own tests live with the service).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use vitals_ingestion::{Config, IngestionArgs};
use vitals_server::ServerConfig;
use vitals_store::Store;
use vitals_test_support::{Backend, TestServer};

/// An ingestion server and a store handle on its database.
pub struct Env {
    pub server: TestServer,
    pub store: Store,
}

impl Env {
    /// One integer from a query such as `SELECT COUNT(*) FROM events`.
    pub async fn int(&self, sql: &str) -> i64 {
        vitals_test_support::query_int(&self.store, sql).await
    }

    pub async fn stop(self) {
        self.store.close().await.expect("close store");
        self.server.stop().await.expect("server stops cleanly");
    }
}

/// A temporary SQLite file (an in-memory database would be private to the server's pool)
/// or a fresh PostgreSQL database.
pub async fn url_for(backend: Backend) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    if backend == Backend::Postgres {
        return vitals_test_support::fresh_url(backend)
            .await
            .expect("fresh postgres database");
    }
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("vitals-loader-test-{}-{n}.db", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    format!("sqlite://{}?mode=rwc", path.display())
}

/// The ingestion service alone on a fresh database of `backend`.
pub async fn start(backend: Backend) -> Env {
    let url = url_for(backend).await;
    let config = Config {
        server: ServerConfig::for_tests(url.clone()),
        service: IngestionArgs::default(),
    };
    let server =
        TestServer::start(|listener, shutdown| vitals_ingestion::run(config, listener, shutdown))
            .await;
    let store = Store::connect(&url).await.expect("connect");
    Env { server, store }
}
