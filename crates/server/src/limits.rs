//! The per-call limits every Vitals server applies, as one tower layer: the concurrency
//! limit, the deadline (the server's request timeout or the client's `grpc-timeout`,
//! whichever is shorter, answered DEADLINE_EXCEEDED) and the message size limit on the
//! request body (answered RESOURCE_EXHAUSTED).
//!
//! Health and reflection ([`crate::auth::PUBLIC_SERVICES`]) take no slot and have no
//! deadline: a probe is answered even when every slot is taken by slow calls.
//!
//! tonic's own `Server::timeout` is not used: it answers CANCELLED ("Timeout expired"),
//! and its decoder answers an oversize message OUT_OF_RANGE.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::Frame;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tower::ServiceExt;

/// Taken off a client's `grpc-timeout` so that this layer's DEADLINE_EXCEEDED reaches the
/// client before tonic's own handling of that header (which answers CANCELLED) fires, and
/// before the client's own timer does (tonic and grpc-go clients enforce the deadline
/// locally too). 20 ms covers the answer's trip on a busy machine.
const CLIENT_DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// The layer: see the module documentation.
#[derive(Clone, Debug)]
pub struct CallLimitsLayer {
    slots: Arc<Semaphore>,
    request_timeout: Duration,
    max_message_bytes: usize,
}

impl CallLimitsLayer {
    /// At most `concurrency_limit` calls at once (more wait for a slot, within their
    /// deadline), each within `request_timeout` (or the client's shorter deadline), each
    /// request message at most `max_message_bytes`.
    pub fn new(
        concurrency_limit: usize,
        request_timeout: Duration,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency_limit.max(1))),
            request_timeout,
            max_message_bytes,
        }
    }
}

impl<S> tower::Layer<S> for CallLimitsLayer {
    type Service = CallLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimits {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service made by [`CallLimitsLayer`].
#[derive(Clone, Debug)]
pub struct CallLimits<S> {
    inner: S,
    limits: CallLimitsLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for CallLimits<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let limit = self.limits.max_message_bytes;
        let req = req.map(|b| Body::new(SizeLimited::new(b, limit)));
        // The instance polled ready serves this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if crate::auth::is_public(req.uri().path()) {
            return Box::pin(async move { inner.call(req).await });
        }
        let (deadline, why) = deadline(req.headers(), self.limits.request_timeout);
        // The deadline as the caller set it (the client's without the margin).
        let shown = match why {
            DeadlineBy::Client => deadline + CLIENT_DEADLINE_MARGIN,
            DeadlineBy::Server => deadline,
        };
        // The timer starts now (not at the first poll), as the client's does.
        let sleep = tokio::time::sleep(deadline);
        let slots = self.limits.slots.clone();
        let rpc = req.uri().path().to_owned();
        Box::pin(async move {
            let call = async move {
                // The semaphore is never closed; a closed one would just not limit.
                let _slot = slots.acquire_owned().await.ok();
                inner.ready().await?.call(req).await
            };
            tokio::pin!(call);
            tokio::select! {
                biased;
                r = &mut call => r,
                _ = sleep => {
                    tracing::info!(rpc, timeout_ms = deadline.as_millis() as u64, by = why.setting(), "deadline exceeded");
                    Ok(Status::deadline_exceeded(why.message(shown)).into_http())
                }
            }
        })
    }
}

/// Whose deadline a call has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeadlineBy {
    Server,
    Client,
}

impl DeadlineBy {
    fn setting(self) -> &'static str {
        match self {
            Self::Server => "VITALS_REQUEST_TIMEOUT",
            Self::Client => "grpc-timeout",
        }
    }

    fn message(self, d: Duration) -> String {
        match self {
            Self::Server => format!(
                "deadline exceeded: the call took longer than the server's request timeout \
                 of {} s (VITALS_REQUEST_TIMEOUT)",
                d.as_secs_f64()
            ),
            Self::Client => format!(
                "deadline exceeded: the call took longer than the client's deadline of {} ms",
                d.as_millis()
            ),
        }
    }
}

/// The shorter of the server's request timeout and the client's `grpc-timeout`.
fn deadline(headers: &http::HeaderMap, server: Duration) -> (Duration, DeadlineBy) {
    match headers
        .get("grpc-timeout")
        .and_then(|v| parse_grpc_timeout(v.to_str().ok()?))
    {
        Some(client) if client < server => (
            client.saturating_sub(CLIENT_DEADLINE_MARGIN),
            DeadlineBy::Client,
        ),
        _ => (server, DeadlineBy::Server),
    }
}

/// A `grpc-timeout` header value: at most 8 digits and a unit (H, M, S, m, u, n), as the
/// gRPC over HTTP/2 protocol defines it; `None` when malformed (then only the server's
/// timeout applies, as with tonic).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A request body that fails with RESOURCE_EXHAUSTED as soon as a gRPC message's
/// length prefix announces more than the limit, before the message is read.
struct SizeLimited {
    inner: Body,
    limit: usize,
    /// Bytes of the current 5-byte message prefix seen so far.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    failed: bool,
}

impl SizeLimited {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            prefix: [0; 5],
            prefix_len: 0,
            remaining: 0,
            failed: false,
        }
    }

    /// Follows the message framing through `data`; the error when a message is too big.
    fn check(&mut self, data: &Bytes) -> Result<(), Status> {
        let mut buf = data.clone();
        while buf.has_remaining() {
            if self.remaining > 0 {
                let n = self.remaining.min(buf.remaining() as u64);
                buf.advance(n as usize);
                self.remaining -= n;
                continue;
            }
            let n = (5 - self.prefix_len).min(buf.remaining());
            buf.copy_to_slice(&mut self.prefix[self.prefix_len..self.prefix_len + n]);
            self.prefix_len += n;
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                if len as usize > self.limit {
                    return Err(too_big(len as usize, self.limit));
                }
                self.remaining = u64::from(len);
            }
        }
        Ok(())
    }
}

/// The status of a request message over the limit.
pub fn too_big(len: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "message of {len} bytes is over the limit of {limit} bytes (VITALS_MAX_MESSAGE_BYTES)"
    ))
}

impl http_body::Body for SizeLimited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = self.check(data)
        {
            self.failed = true;
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "1", "1x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        let mut h = http::HeaderMap::new();
        let server = Duration::from_secs(60);
        assert_eq!(deadline(&h, server), (server, DeadlineBy::Server));
        h.insert("grpc-timeout", http::HeaderValue::from_static("2S"));
        assert_eq!(
            deadline(&h, server),
            (Duration::from_millis(1980), DeadlineBy::Client)
        );
        h.insert("grpc-timeout", http::HeaderValue::from_static("2M"));
        assert_eq!(deadline(&h, server), (server, DeadlineBy::Server));
    }

    /// Feeds `chunks` through the framing check.
    fn run(chunks: &[&[u8]], limit: usize) -> Result<(), Status> {
        let mut b = SizeLimited::new(Body::empty(), limit);
        for c in chunks {
            b.check(&Bytes::copy_from_slice(c))?;
        }
        Ok(())
    }

    fn message(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, len as usize));
        v
    }

    #[test]
    fn framing_is_followed_across_chunks() {
        let mut stream = message(10);
        stream.extend(message(100));
        stream.extend(message(0));
        stream.extend(message(100));
        assert!(run(&[&stream], 100).is_ok());
        // Split at every place, including inside a length prefix.
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert!(run(&[a, b], 100).is_ok(), "cut at {cut}");
            let e = run(&[a, b], 99).unwrap_err();
            assert_eq!(e.code(), tonic::Code::ResourceExhausted, "cut at {cut}");
            assert_eq!(
                e.message(),
                "message of 100 bytes is over the limit of 99 bytes (VITALS_MAX_MESSAGE_BYTES)"
            );
        }
        // Only the prefix is needed to refuse.
        let big = (20u32 << 20).to_be_bytes();
        let e = run(&[&[0, big[0], big[1]], &[big[2], big[3]]], 16 << 20).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }
}
