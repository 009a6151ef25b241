//! TLS fixtures: certificates made by rcgen for one test, and a server started over TLS
//! on `127.0.0.1:0` (which [`crate::TestServer`] cannot wait for: its readiness check
//! speaks plaintext).

use std::future::Future;
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vitals_server::RunError;
use vitals_server::shutdown::Signal;

/// A folder of PEM files (and anything else a test puts there), removed at the end:
/// - `ca.crt`: a CA;
/// - `server.crt` / `server.key`: signed by it, for `localhost` and `127.0.0.1`;
/// - `client.crt` / `client.key`: a client certificate signed by it;
/// - `other-ca.crt`: another CA, and `rogue.crt` / `rogue.key`: a client certificate
///   signed by that other CA.
pub struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    /// Makes the certificates in a fresh temporary folder named after `tag`.
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "vitals-test-tls-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pki = Self { dir };
        let ca = pki.ca("ca", "Vitals test CA");
        pki.leaf("server", &["localhost", "127.0.0.1"], &ca);
        pki.leaf("client", &["vitals-test-client"], &ca);
        let other = pki.ca("other-ca", "Someone else's CA");
        pki.leaf("rogue", &["vitals-test-client"], &other);
        pki
    }

    /// A file of the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ca(&self, name: &str, cn: &str) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("self-signed CA");
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).expect("write");
        Issuer::new(params, key)
    }

    fn leaf(&self, name: &str, sans: &[&str], ca: &Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, ca).expect("signed");
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).expect("write");
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).expect("write");
    }
}

/// A server running on `127.0.0.1:0` in a task, stopped by [`TlsServer::stop`]. Unlike
/// [`crate::TestServer`] it does not wait for readiness (the listener is bound before the
/// task starts, so connections queue until it serves).
pub struct TlsServer {
    /// The port it listens on.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
}

impl TlsServer {
    /// Binds `127.0.0.1:0` and spawns `run(listener, shutdown)`.
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, Signal) -> Fut,
        Fut: Future<Output = Result<(), RunError>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        ));
        Self {
            port,
            stop: Some(tx),
            task,
        }
    }

    /// `https://localhost:{port}` (the name the server certificate carries).
    pub fn https(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Asks it to stop and waits; panics unless it stopped cleanly.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}
