//! A minimal HTTP/1.1 client for the tests and benchmarks of the plain-HTTP routes
//! (the Segment endpoints): `POST` with a body on a kept-alive connection, the answer's
//! status and body (the server always sends a `content-length`).

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One kept-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Http1 {
    conn: BufReader<TcpStream>,
}

/// An answer: status code and body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Http1 {
    /// Connects to `addr`.
    ///
    /// # Panics
    /// When the connection fails (test code).
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            conn: BufReader::new(stream),
        }
    }

    /// `POST path` with `body` (`content-type: application/json`) and `headers`.
    ///
    /// # Panics
    /// On an I/O error or an answer that is not HTTP/1.1 with a `content-length`.
    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: vitals\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        // Head and body in one write: a server that answers early (e.g. 413 on the
        // content-length alone) and closes must not turn the rest of the request into a
        // broken pipe before its answer is read. A write that fails because the server
        // already answered and closed still lets the answer be read.
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let stream = self.conn.get_mut();
        if let Err(e) = stream.write_all(&bytes).await {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "write: {e}"
            );
        }
        let mut line = String::new();
        self.conn.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            line.clear();
            self.conn.read_line(&mut line).await.expect("header line");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header");
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().expect("content-length");
            }
            headers.push((k, v));
        }
        let mut buf = vec![0; length];
        self.conn.read_exact(&mut buf).await.expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&buf).into_owned(),
        }
    }
}
