//! Plain HTTP beside gRPC on the same port: an axum [`Router`] given to
//! [`GrpcServer::http`](crate::GrpcServer::http) answers every request that is not gRPC.
//!
//! A request is gRPC when its `content-type` starts with `application/grpc`; it then goes
//! through the gRPC layers (tracing, metrics, bearer-token auth, call limits) as before.
//! Any other request goes to the HTTP routes, which have their own tracing span and their
//! own authentication: a handler reads the server's [`HttpAuth`] from the request's
//! extensions (`axum::Extension<HttpAuth>`) and checks the credentials its clients send
//! (a bearer token, Basic auth with the token as user name, a cookie).
//!
//! With HTTP routes the server also accepts HTTP/1.1 (browsers, curl, webhook senders);
//! gRPC keeps HTTP/2. A request for a path no route answers gets the router's fallback
//! (axum's `404` unless the router sets one).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use futures::future::BoxFuture;
use tonic::body::Body;

/// The error type the transport accepts from a service.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::auth::{Authenticator, Principal};

/// How the HTTP routes authenticate: `None` when the server runs with `VITALS_AUTH=off`.
///
/// Put in every HTTP request's extensions; read it with `axum::Extension<HttpAuth>`.
#[derive(Clone, Debug)]
pub struct HttpAuth(pub Option<Arc<Authenticator>>);

impl HttpAuth {
    /// Whether authentication is on.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The principal of `token` (any role), or `None` when no token matches. With auth off
    /// every token (and none) is accepted as an `admin` principal labelled `auth-off`.
    pub fn identify(&self, token: Option<&str>) -> Option<Principal> {
        match &self.0 {
            None => Some(Principal {
                role: crate::auth::Role::Admin,
                label: "auth-off".into(),
            }),
            Some(auth) => auth.identify(token?),
        }
    }

    /// The bearer token of an `Authorization: Bearer <token>` header, if any.
    pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|t| !t.is_empty())
    }
}

/// Whether `req` is a gRPC call (its content type is `application/grpc...`).
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The outermost layer of the server: sends gRPC calls down the gRPC stack and every
/// other request to `router` (with no router, everything goes down the gRPC stack).
#[derive(Clone)]
pub(crate) struct HttpSplitLayer {
    router: Option<Router>,
}

impl HttpSplitLayer {
    /// A split to `router`, with `auth` in every HTTP request's extensions.
    pub(crate) fn new(router: Option<Router>, auth: Option<Authenticator>) -> Self {
        let auth = HttpAuth(auth.map(Arc::new));
        let router = router.map(|r| {
            r.layer(axum::Extension(auth)).layer(
                TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::WARN)),
            )
        });
        Self { router }
    }

    /// Whether any HTTP route is served (the server then accepts HTTP/1.1 too).
    pub(crate) fn serves_http(&self) -> bool {
        self.router.is_some()
    }
}

impl<S> tower::Layer<S> for HttpSplitLayer {
    type Service = HttpSplit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpSplit {
            inner,
            router: self.router.clone(),
        }
    }
}

/// The service made by [`HttpSplitLayer`].
#[derive(Clone)]
pub(crate) struct HttpSplit<S> {
    inner: S,
    router: Option<Router>,
}

impl<S, B> tower::Service<http::Request<Body>> for HttpSplit<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let router = match &self.router {
            Some(router) if !is_grpc(&req) => router.clone(),
            _ => {
                // The readiness polled above belongs to this service: take it, leave a clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                return Box::pin(async move {
                    let resp = inner.call(req).await.map_err(Into::into)?;
                    Ok(resp.map(Body::new))
                });
            }
        };
        Box::pin(async move {
            let resp: Result<_, Infallible> = tower::ServiceExt::oneshot(router, req).await;
            let Ok(resp) = resp;
            Ok(resp.map(Body::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::{GrpcServer, ServerConfig};

    /// Who the request's token belongs to, as an HTTP handler would check it.
    async fn whoami(
        axum::Extension(auth): axum::Extension<HttpAuth>,
        headers: http::HeaderMap,
    ) -> (http::StatusCode, String) {
        match auth.identify(HttpAuth::bearer(&headers)) {
            Some(p) => (http::StatusCode::OK, format!("{} {}", p.role, p.label)),
            None => (http::StatusCode::UNAUTHORIZED, "no".into()),
        }
    }

    async fn http1_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn http_routes_answer_http1_beside_grpc_with_the_servers_tokens() {
        let mut config = ServerConfig::for_tests("sqlite::memory:");
        config.auth = crate::AuthMode::On;
        config.extra_tokens = vec![crate::auth::TokenEntry::for_token(
            crate::auth::Role::Read,
            "reader-token",
            "dashboards",
        )];
        let mut server = GrpcServer::new();
        server.http(Router::new().route("/whoami", get(whoami)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            server
                .serve(&config, listener, async {
                    let _ = stopped.await;
                })
                .await
        });

        let ok = http1_get(addr, "/whoami", Some("reader-token")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("read dashboards"), "{ok}");
        let refused = http1_get(addr, "/whoami", Some("wrong")).await;
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
        let missing = http1_get(addr, "/nowhere", None).await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        // gRPC on the same port still goes through the gRPC stack (health is public).
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
    }
}
