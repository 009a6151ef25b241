//! The demo's own server: the all-in-one on a loopback port in this process, over a
//! temporary SQLite file unless a database is given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Endpoint;
use vitals_server::RunError;
use vitals_server::shutdown::Signal;

use super::{DEMO_MAX_DATASET_CELLS, DEMO_REQUEST_TIMEOUT, DemoError, READY_WAIT, io};

/// The in-process server: stop it with [`Server::stop`].
pub(super) struct Server {
    pub(super) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Server {
    pub(super) async fn start(database_url: &str, listen: SocketAddr) -> Result<Self, DemoError> {
        let mut config = crate::ServeConfig::for_tests(database_url);
        config.server.listen = listen;
        config.server.request_timeout = DEMO_REQUEST_TIMEOUT;
        config.learner.max_dataset_cells = DEMO_MAX_DATASET_CELLS;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(io(format!("binding {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        let (tx, rx) = oneshot::channel::<()>();
        let signal: Signal = Box::pin(async move {
            let _ = rx.await;
        });
        let handle = tokio::spawn(crate::run(config, listener, signal));
        let mut server = Self {
            addr,
            shutdown: Some(tx),
            handle,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_ready(&mut self) -> Result<(), DemoError> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if self.handle.is_finished() {
                return Err(match (&mut self.handle).await {
                    Ok(Err(e)) => DemoError::Server(e.to_string()),
                    Ok(Ok(())) => DemoError::Server("stopped before serving".into()),
                    Err(e) => DemoError::Server(e.to_string()),
                });
            }
            let status = async {
                let ch = Endpoint::from_shared(self.url())
                    .ok()?
                    .connect_timeout(Duration::from_secs(1))
                    .connect()
                    .await
                    .ok()?;
                let r = HealthClient::new(ch)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .ok()?;
                Some(r.into_inner().status())
            }
            .await;
            if status == Some(ServingStatus::Serving) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::Server(format!(
                    "not serving after {} s",
                    READY_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(super) async fn stop(mut self) -> Result<(), DemoError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DemoError::Server(e.to_string())),
            Err(e) => Err(DemoError::Server(e.to_string())),
        }
    }
}

/// A fresh SQLite database in a new temporary folder, removed on drop.
pub(super) struct TempDb {
    pub(super) dir: PathBuf,
}

impl TempDb {
    pub(super) fn create() -> Result<Self, DemoError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("vitals-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(Self { dir })
    }

    pub(super) fn url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.join("vitals-demo.db").display()
        )
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
