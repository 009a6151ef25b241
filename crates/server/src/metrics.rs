//! Metrics, through the OpenTelemetry global meter (exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, no-ops otherwise). docs/telemetry.md lists them.
//!
//! - Every RPC: [`RPC_DURATION`], a histogram in seconds with `rpc.service`,
//!   `rpc.method` and `rpc.grpc.status_code`; its count is the number of calls. Recorded
//!   by [`RpcMetricsLayer`], which [`crate::GrpcServer::serve`] installs.
//! - Domain counters the services call: [`events_ingested`], [`scores_computed`],
//!   [`training_run`], [`learner_fallback`].
//!
//! Instruments are created on first use from the global meter provider, so the provider
//! must be installed before (telemetry init, which `main_with` runs before serving).
//! Attribute values are `&'static str` so that no caller can blow up the number of series.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

/// Name of the meter every Vitals instrument belongs to.
pub const METER: &str = "vitals";
/// RPC latency histogram (seconds), by service, method and gRPC status code.
pub const RPC_DURATION: &str = "rpc.server.call.duration";
/// Counter of items ingested, by `kind`.
pub const EVENTS_INGESTED: &str = "vitals.ingested";
/// Counter of account scores computed, by `trigger`.
pub const SCORES_COMPUTED: &str = "vitals.scores.computed";
/// Counter of training runs, by `outcome`.
pub const TRAINING_RUNS: &str = "vitals.training.runs";
/// Counter of scoring's fallbacks when the learner did not answer, by `reason` and
/// `weights`.
pub const LEARNER_FALLBACKS: &str = "vitals.learner.fallbacks";

/// Histogram bucket bounds in seconds: 1 ms to 60 s.
const DURATION_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

struct Instruments {
    rpc_duration: Histogram<f64>,
    ingested: Counter<u64>,
    scores: Counter<u64>,
    training: Counter<u64>,
    fallbacks: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static I: OnceLock<Instruments> = OnceLock::new();
    I.get_or_init(|| {
        let m = opentelemetry::global::meter(METER);
        Instruments {
            rpc_duration: m
                .f64_histogram(RPC_DURATION)
                .with_unit("s")
                .with_description("Duration of gRPC calls served, by method and status code")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            ingested: m
                .u64_counter(EVENTS_INGESTED)
                .with_unit("{item}")
                .with_description(
                    "Items stored by ingestion (events, interactions, pulses, ...), by kind",
                )
                .build(),
            scores: m
                .u64_counter(SCORES_COMPUTED)
                .with_unit("{score}")
                .with_description("Account scores computed and stored")
                .build(),
            training: m
                .u64_counter(TRAINING_RUNS)
                .with_unit("{run}")
                .with_description("Learner training runs, by outcome")
                .build(),
            fallbacks: m
                .u64_counter(LEARNER_FALLBACKS)
                .with_unit("{fallback}")
                .with_description(
                    "Times scoring used cached or uniform weights because the learner failed",
                )
                .build(),
        }
    })
}

/// Records `n` items of `kind` stored by ingestion, after their transaction committed.
/// `kind` is one of: `event`, `account`, `contact`, `interaction`, `pulse`,
/// `subscription`, `event_type`, `custom_metric_definition`, `custom_metric`,
/// `custom_score_field`, `webhook_signal`.
pub fn events_ingested(kind: &'static str, n: u64) {
    if n > 0 {
        instruments()
            .ingested
            .add(n, &[KeyValue::new("kind", kind)]);
    }
}

/// Records `n` account scores computed and stored; `trigger` is `request` (ComputeScores)
/// or `schedule`.
pub fn scores_computed(trigger: &'static str, n: u64) {
    if n > 0 {
        instruments()
            .scores
            .add(n, &[KeyValue::new("trigger", trigger)]);
    }
}

/// Records one training run; `outcome` is `ok` or `failed`.
pub fn training_run(outcome: &'static str) {
    instruments()
        .training
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

/// Records one time scoring did without the learner's answer. `reason`: `unavailable`,
/// `timeout` or `error`; `weights`: `cached` (last known) or `uniform`.
pub fn learner_fallback(reason: &'static str, weights: &'static str) {
    instruments().fallbacks.add(
        1,
        &[
            KeyValue::new("reason", reason),
            KeyValue::new("weights", weights),
        ],
    );
}

/// The `(service, method)` attributes of a gRPC path; paths that are not Vitals, health
/// or reflection RPCs count as `unknown` so a scan of random paths cannot create series.
pub fn rpc_labels(path: &str) -> (&'static str, &'static str) {
    static KNOWN: OnceLock<Vec<(&'static str, &'static str, &'static str)>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut v = vitals_rpcs();
        for (p, svc, method) in [
            (
                "/grpc.health.v1.Health/Check",
                "grpc.health.v1.Health",
                "Check",
            ),
            (
                "/grpc.health.v1.Health/Watch",
                "grpc.health.v1.Health",
                "Watch",
            ),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo",
            ),
            (
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo",
            ),
        ] {
            v.push((p, svc, method));
        }
        v
    });
    known
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or(("unknown", "unknown"), |(_, s, m)| (*s, *m))
}

/// `(path, service, method)` of every RPC of the Vitals services, from the descriptor set
/// (leaked once: the labels live as long as the process).
fn vitals_rpcs() -> Vec<(&'static str, &'static str, &'static str)> {
    use prost::Message;
    let Ok(fds) = prost_types::FileDescriptorSet::decode(vitals_proto::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut v = Vec::new();
    for file in &fds.file {
        for svc in &file.service {
            let full = format!("{}.{}", file.package(), svc.name());
            if !vitals_proto::SERVICE_NAMES.contains(&full.as_str())
                && full != vitals_proto::OPERATIONS_SERVICE
            {
                continue;
            }
            let service = leak(full);
            for m in &svc.method {
                let path = leak(format!("/{service}/{}", m.name()));
                v.push((path, service, leak(m.name().to_string())));
            }
        }
    }
    v
}

/// Records one finished call, once.
struct Recorder {
    service: &'static str,
    method: &'static str,
    start: Instant,
}

impl Recorder {
    fn record(self, code: i32) {
        instruments().rpc_duration.record(
            self.start.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The tower layer recording [`RPC_DURATION`] for every call: from the request to the
/// end of the response stream (its trailers), with the final gRPC status code. A call
/// the client abandons counts as CANCELLED (1).
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service made by [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let (service, method) = rpc_labels(req.uri().path());
        let recorder = Recorder {
            service,
            method,
            start: Instant::now(),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(res) => {
                    let (parts, body) = res.into_parts();
                    // A trailers-only response (typical of errors) carries the code in
                    // its headers; otherwise it comes in the trailers at the end.
                    let recorder = match grpc_status(&parts.headers) {
                        Some(code) => {
                            recorder.record(code);
                            None
                        }
                        None => Some(recorder),
                    };
                    Ok(http::Response::from_parts(
                        parts,
                        MeteredBody {
                            inner: body,
                            recorder,
                        },
                    ))
                }
                Err(e) => {
                    recorder.record(tonic::Code::Unknown as i32);
                    Err(e)
                }
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call when its trailers (or its end) arrive.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the end: the client went away or the connection broke.
            if let Some(r) = this.project().recorder.take() {
                r.record(tonic::Code::Cancelled as i32);
            }
        }
    }
}

impl<B: http_body::Body> http_body::Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(r) = this.recorder.take()
                {
                    r.record(grpc_status(trailers).unwrap_or(tonic::Code::Unknown as i32));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = this.recorder.take() {
                    r.record(tonic::Code::Unknown as i32);
                }
            }
            Poll::Ready(None) => {
                // Ended without trailers: not a well-formed gRPC answer.
                if let Some(r) = this.recorder.take() {
                    r.record(tonic::Code::Unknown as i32);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            rpc_labels("/vitals.scoring.v1.ScoringService/GetScore"),
            ("vitals.scoring.v1.ScoringService", "GetScore")
        );
        assert_eq!(
            rpc_labels("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(rpc_labels("/x.Y/Z"), ("unknown", "unknown"));
    }
}
