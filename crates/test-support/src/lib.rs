//! Test helpers for Vitals (not published): servers on port 0 with no sleeps, readiness
//! waits, and the sample data.
//!
//! ```ignore
//! let server = TestServer::start(|listener, shutdown| vitals_ingestion::run(config, listener, shutdown)).await;
//! let client = IngestionServiceClient::new(server.channel().await);
//! // ...
//! server.stop().await.unwrap();
//! ```

pub mod arb;
pub mod churn;
pub mod http1;
pub mod proxy;
pub mod seed;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vitals_server::RunError;
use vitals_server::shutdown::Signal;

pub use vitals_store::testing::{Backend, backends, fresh_store, fresh_url, monthly_subscription};

/// How long the `wait_for_*` helpers wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// A server running inside the test on `127.0.0.1:<free port>`.
#[derive(Debug)]
pub struct TestServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), RunError>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0`, spawns `run(listener, shutdown)`, and returns once the server
    /// answers health checks as SERVING.
    ///
    /// # Panics
    /// If the port cannot be bound or the server does not become ready within [`WAIT`]
    /// (this is test code: a panic is the failure report).
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, Signal) -> Fut,
        Fut: Future<Output = Result<(), RunError>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let signal: Signal = Box::pin(async move {
            let _ = rx.await;
        });
        let handle = tokio::spawn(run(listener, signal));
        let server = Self {
            addr,
            shutdown: Some(tx),
            handle,
        };
        server.wait_for_serving("").await;
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new client channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid url")
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// Waits until health reports `service` (`""` for the whole server) SERVING.
    ///
    /// # Panics
    /// If it is not SERVING within [`WAIT`], or the server task ended.
    pub async fn wait_for_serving(&self, service: &str) {
        wait_for_status(self.addr, service, ServingStatus::Serving, &self.handle).await;
    }

    /// Waits until health reports `service` (`""` for the whole server) as `want`.
    ///
    /// # Panics
    /// If it is not so within [`WAIT`], or the server task ended.
    pub async fn wait_for_status(&self, service: &str, want: ServingStatus) {
        wait_for_status(self.addr, service, want, &self.handle).await;
    }

    /// Sends the shutdown signal and waits for the server to drain and return.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(WAIT, &mut self.handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => panic!("server task panicked: {join}"),
            Err(_) => panic!("server did not stop within {WAIT:?}"),
        }
    }

    /// Sends the shutdown signal without waiting (e.g. to test draining); then call
    /// [`TestServer::join`].
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server task to end after [`TestServer::signal_shutdown`].
    pub async fn join(mut self) -> Result<(), RunError> {
        match tokio::time::timeout(WAIT, &mut self.handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => panic!("server task panicked: {join}"),
            Err(_) => panic!("server did not stop within {WAIT:?}"),
        }
    }
}

/// Polls grpc.health.v1 at `addr` until `service` has `want`, for at most [`WAIT`].
///
/// # Panics
/// On timeout, or when `task` (the server) has already ended.
pub async fn wait_for_status<T>(
    addr: SocketAddr,
    service: &str,
    want: ServingStatus,
    task: &JoinHandle<T>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        assert!(
            !task.is_finished(),
            "the server stopped before it was {want:?}: {last}"
        );
        match health(addr, service).await {
            Ok(s) if s == want => return,
            Ok(s) => last = format!("status {s:?}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} service {service:?} not {want:?} within {WAIT:?}: {last}");
}

/// One health check of `service` at `addr`.
pub async fn health(addr: SocketAddr, service: &str) -> Result<ServingStatus, String> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|s| s.to_string())?;
    Ok(r.into_inner().status())
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The small sample data set (socialnet7-small: 1,046 accounts, 1.2 M events), shipped
/// in the repository under `tests/data/socialnet7-small`.
///
/// # Panics
/// With a clear message when the folder is missing.
pub fn sample_small() -> PathBuf {
    let dir = repo_root().join("tests/data/socialnet7-small");
    assert!(
        dir.join("event.csv.gz").is_file(),
        "sample data missing: expected {} (see tests/data/README.md)",
        dir.display()
    );
    dir
}

/// The full sample data set (`../shared/data/socialnet7`, 7,321 accounts, 8.9 M events),
/// which is not in the repository: `None`, with a notice, when it is not there.
pub fn sample_full() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/data/socialnet7");
    if dir.join("event.csv.gz").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "note: full sample data not found at {}: skipped",
            dir.display()
        );
        None
    }
}

/// One integer from a query such as `SELECT COUNT(*) FROM events` on `store`, on either
/// back end (the result is cast to BIGINT: a SUM of a bigint is numeric on PostgreSQL).
///
/// # Panics
/// When the query fails or gives no integer.
pub async fn query_int(store: &vitals_store::Store, sql: &str) -> i64 {
    use vitals_store::sea_orm::{ConnectionTrait, Statement};
    let c = store.conn();
    let sql = format!("SELECT CAST(({sql}) AS BIGINT) AS n");
    let row = c
        .query_one_raw(Statement::from_string(c.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("an integer column")
}
