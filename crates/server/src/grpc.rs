//! Assembles a gRPC server: the services of one binary, plus health, reflection (v1 and
//! v1alpha, so grpcurl 1.8 works) and the tower layers every Vitals server has.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::auth::{AuthError, AuthLayer, RoleTable, RpcRoles};
use crate::config::ServerConfig;
use crate::http::HttpSplitLayer;
use crate::limits::CallLimitsLayer;
use crate::metrics::RpcMetricsLayer;
use crate::telemetry::GrpcMakeSpan;
use crate::tls::TlsError;

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptor sets.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed (e.g. the listener broke).
    #[error("grpc transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Authentication is misconfigured (exit code 64).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// TLS is misconfigured (exit code 64).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl ServeError {
    /// Whether the error is a configuration mistake (exit code 64) rather than a failure.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Auth(_) | Self::Tls(_))
    }
}

/// The services one process serves; [`GrpcServer::serve`] adds health and reflection.
#[derive(Default)]
pub struct GrpcServer {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    roles: RoleTable,
    database: Option<vitals_store::Store>,
    http: Option<axum::Router>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("services", &self.names)
            .field("database", &self.database.is_some())
            .field("http", &self.http.is_some())
            .finish()
    }
}

impl GrpcServer {
    /// An empty server.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated tonic service with the roles of its RPCs (declared by the service,
    /// e.g. `vitals_ingestion::ROLES`; an RPC missing from them needs `admin`); it is
    /// reported SERVING by health and listed by reflection.
    pub fn add<S>(&mut self, svc: S, roles: RpcRoles) -> &mut Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        debug_assert!(
            roles.iter().all(|(path, _)| path
                .strip_prefix('/')
                .and_then(|p| p.split_once('/'))
                .is_some_and(|(service, _)| service == S::NAME)),
            "roles given with {} name RPCs of another service",
            S::NAME
        );
        self.names.push(S::NAME);
        self.roles.extend(roles);
        self.routes.add_service(svc);
        self
    }

    /// Serves the plain-HTTP routes of `router` on the same port as gRPC (see
    /// [`crate::http`]): every request that is not gRPC goes to them, outside the gRPC
    /// layers, with the server's [`crate::HttpAuth`] in its extensions. Routers given by
    /// several calls are merged (their paths must not overlap).
    pub fn http(&mut self, router: axum::Router) -> &mut Self {
        self.http = Some(match self.http.take() {
            Some(r) => r.merge(router),
            None => router,
        });
        self
    }

    /// Makes health follow the database: every service of this process is reported
    /// NOT_SERVING while `store` does not answer a probe (see [`READINESS_INTERVAL`]),
    /// SERVING again once it does. The whole server (`""`, the liveness check) stays
    /// SERVING.
    pub fn readiness(&mut self, store: &vitals_store::Store) -> &mut Self {
        self.database = Some(store.clone());
        self
    }

    /// The fully-qualified names of the services added so far.
    pub fn service_names(&self) -> &[&'static str] {
        &self.names
    }

    /// Serves on `listener` until `shutdown` completes, then: marks every service NOT_SERVING,
    /// stops accepting connections, lets in-flight calls finish for at most
    /// `config.drain_timeout`, and returns.
    ///
    /// A request that is not gRPC goes to the routes given to [`Self::http`] (when there
    /// are any), outside everything below. Every gRPC call goes through, outermost first: a tracing span per call (child of the
    /// caller's W3C trace context), the RPC metrics, bearer-token auth (when
    /// `config.auth` is on; health and reflection are public), then the concurrency limit,
    /// the deadline and the message size limit ([`CallLimitsLayer`]; health and reflection
    /// are outside the first two). With `config.tls_cert` the server speaks TLS only (and with
    /// `config.tls_client_ca` requires client certificates). Auth and TLS settings are
    /// checked before anything is served: a mistake is a [`ServeError::is_config`] error.
    pub async fn serve<F>(
        self,
        config: &ServerConfig,
        listener: TcpListener,
        shutdown: F,
    ) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let auth = config
            .authenticator()?
            .map(|a| a.with_roles(self.roles.clone()));
        let tls = crate::tls::server_tls_config(config)?;
        let http = HttpSplitLayer::new(self.http.clone(), auth.clone());
        let mut builder = tonic::transport::Server::builder();
        let tls_mode = match (&tls, &config.tls_client_ca) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "mutual (client certificates required)",
        };
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(|e| TlsError::Invalid {
                what: "VITALS_TLS_CERT / VITALS_TLS_KEY / VITALS_TLS_CLIENT_CA".into(),
                reason: crate::tls::error_chain(&e),
            })?;
        }
        match &auth {
            Some(a) => {
                let [read, ingest, admin] = a.counts();
                tracing::info!(
                    read,
                    ingest,
                    admin,
                    "authentication on: tokens accepted per role"
                );
            }
            None => tracing::warn!(
                "AUTHENTICATION IS OFF (VITALS_AUTH=off): anyone who can reach this port can \
                 read and change every account, score and model. Use it only on a laptop; \
                 set VITALS_AUTH=on and VITALS_TOKENS_FILE anywhere else"
            ),
        }
        let (reporter, health) = tonic_health::server::health_reporter();
        for name in self.names.iter().chain(std::iter::once(&"")) {
            reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let reflection = || {
            let mut b = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(vitals_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest & co, so grpcurl prints the details of an error.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health");
            // List only what this process serves, not every service in the descriptors.
            for name in &self.names {
                b = b.with_service_name(*name);
            }
            b
        };
        let readiness = self.database.as_ref().map(|store| {
            tokio::spawn(follow_database(
                store.clone(),
                reporter.clone(),
                self.names.clone(),
            ))
        });
        let mut routes = self.routes;
        routes
            .add_service(health)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);

        let listener_addr = listener.local_addr();
        let draining = Arc::new(Notify::new());
        let signal = {
            let draining = draining.clone();
            let names = self.names.clone();
            async move {
                shutdown.await;
                // Draining is NOT_SERVING for good: the probe stops before it is set.
                if let Some(probe) = readiness {
                    probe.abort();
                    let _ = probe.await;
                }
                for name in names.iter().chain(std::iter::once(&"")) {
                    reporter
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
                tracing::info!("draining in-flight calls");
                draining.notify_one();
            }
        };

        // Auth sits inside the metrics and the span (refusals are counted and logged in
        // the call's span) and outside the concurrency limit (a refused call takes no slot).
        // The deadline is applied here, not by tonic's `Server::timeout` (which answers
        // CANCELLED); it covers the wait for a slot and, for a stream, the time to its
        // first response headers (as tonic's did), not the stream itself.
        let layers = ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_grpc()
                    .make_span_with(GrpcMakeSpan)
                    .on_failure(DefaultOnFailure::new().level(Level::WARN)),
            )
            .layer(RpcMetricsLayer)
            .option_layer(auth.map(AuthLayer::new))
            .layer(CallLimitsLayer::new(
                config.concurrency_limit as usize,
                config.request_timeout,
                config.max_message_bytes as usize,
            ))
            .into_inner();
        let server = builder
            .tcp_nodelay(true)
            .accept_http1(http.serves_http())
            .layer(http)
            .layer(layers)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(accepted(listener), signal);
        if let Ok(addr) = listener_addr {
            tracing::info!(%addr, services = ?self.names, tls = tls_mode, "serving");
        }
        tokio::pin!(server);
        let drain_timeout = config.drain_timeout;
        tokio::select! {
            r = &mut server => {
                r?;
                tracing::info!("all calls drained");
            }
            _ = async { draining.notified().await; tokio::time::sleep(drain_timeout).await } => {
                tracing::warn!(timeout_s = drain_timeout.as_secs(), "drain timed out; closing remaining calls");
            }
        }
        Ok(())
    }
}

/// How often the database is probed for readiness.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(2);
/// How long a readiness probe may take before the database counts as unreachable.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes `store` every [`READINESS_INTERVAL`] and sets every service of `names` SERVING
/// or NOT_SERVING accordingly, logging each change. Runs until aborted.
///
/// The whole server (`""`) stays SERVING: it answers for the process (the Kubernetes
/// liveness probe checks it), and a database outage must not get every pod restarted;
/// the readiness probes check the services, which take the pods out of traffic.
async fn follow_database(
    store: vitals_store::Store,
    reporter: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
) {
    let probe = store.probe();
    let mut up = true;
    let mut tick = tokio::time::interval(READINESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_up = match tokio::time::timeout(READINESS_TIMEOUT, probe.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if up {
                    tracing::warn!(error = %e, "database unreachable: reporting NOT_SERVING");
                }
                false
            }
            Err(_) => {
                if up {
                    tracing::warn!(
                        timeout_s = READINESS_TIMEOUT.as_secs(),
                        "database probe timed out: reporting NOT_SERVING"
                    );
                }
                false
            }
        };
        if now_up == up {
            continue;
        }
        if now_up {
            tracing::info!("database reachable again: reporting SERVING");
        }
        up = now_up;
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in &names {
            reporter.set_service_status(name, status).await;
        }
    }
}

/// The connections `listener` accepts, with `TCP_NODELAY` set on each.
///
/// `serve_with_incoming*` ignores the builder's `tcp_nodelay`, so it is set here: without
/// it Nagle's algorithm holds back the last small segment of each response until the
/// client's delayed ACK (about 40 ms on Linux), which capped unary calls at ~44 ms each.
fn accepted(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = accepted(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_side = incoming.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap(), "TCP_NODELAY not set");
        drop(client);
    }
}
