//! A loopback TCP proxy a test puts between a server and its database, to cut the
//! database off and bring it back without restarting either (PostgreSQL is shared by the
//! other tests, so it is never stopped).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP proxy on `127.0.0.1:<free port>` to one target; stops when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy to `target`.
    ///
    /// # Panics
    /// If the port cannot be bound (test code: the panic is the report).
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (cut, links) = (cut.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        // Accepted and closed at once: the peer sees its connection reset.
                        drop(client);
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut l = links.lock().unwrap_or_else(|p| p.into_inner());
                    l.retain(|h| !h.is_finished());
                    l.push(link.abort_handle());
                }
            })
        };
        Self {
            addr,
            cut,
            links,
            accept,
        }
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the database off: closes every open connection and closes new ones at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }
}

/// `url` (`postgres://user@host:port/db`) with its `host:port` replaced by `addr`, and the
/// `host:port` it named.
///
/// # Panics
/// If the url has no `@host:port/` part.
pub fn reroute_postgres_url(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let at = url.rfind('@').expect("postgres url with user@host");
    let rest = &url[at + 1..];
    let slash = rest.find('/').expect("postgres url with /database");
    let host_port = &rest[..slash];
    let target: SocketAddr = if host_port.contains(':') {
        host_port.replace("localhost", "127.0.0.1").parse()
    } else {
        format!("{}:5432", host_port.replace("localhost", "127.0.0.1")).parse()
    }
    .expect("host:port of the postgres url");
    (format!("{}@{addr}{}", &url[..at], &rest[slash..]), target)
}
