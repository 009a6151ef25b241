//! Logs, traces and metrics.
//!
//! Logs always go to stderr (pretty or JSON). Traces and metrics are exported over OTLP
//! (gRPC) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without it nothing is exported,
//! nothing is retried and nothing is logged about a missing collector. The standard
//! `OTEL_*` variables (timeout, headers, service name) are honoured by the exporters.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// The environment variable that switches OTLP export on.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Default log filter when `RUST_LOG` is unset: our info, libraries' warnings.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,h2=warn,hyper=warn,tower=warn";

/// How long shutdown waits for exporters to flush before giving up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (e.g. a malformed endpoint).
    #[error("cannot set up OTLP export to {endpoint}: {reason}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// The exporter's error.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(String),
}

/// Owns the exporters; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether OTLP export is on.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }

    /// Flushes and stops the exporters, at most [`FLUSH_TIMEOUT`]. Their shutdowns block, so
    /// they run on blocking threads, in parallel.
    pub async fn shutdown(self) {
        let mut tasks = Vec::new();
        if let Some(t) = self.tracer {
            tasks.push(tokio::task::spawn_blocking(move || {
                t.shutdown().map_err(|e| e.to_string())
            }));
        }
        if let Some(m) = self.meter {
            tasks.push(tokio::task::spawn_blocking(move || {
                m.shutdown().map_err(|e| e.to_string())
            }));
        }
        let all = futures::future::join_all(tasks);
        match tokio::time::timeout(FLUSH_TIMEOUT, all).await {
            Ok(results) => {
                for r in results {
                    if let Ok(Err(e)) = r {
                        tracing::warn!(error = %e, "telemetry flush failed");
                    }
                }
            }
            Err(_) => tracing::warn!("telemetry flush timed out; some spans may be lost"),
        }
    }
}

fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => base.with_target(false).boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    }
}

/// Installs the global log subscriber and, when [`OTLP_ENDPOINT_ENV`] is set, the OTLP
/// trace and metric pipelines. Must run inside the tokio runtime (the exporter is a tonic
/// client). `service` names the process in traces (`service.name`).
pub fn init(service: &'static str, format: LogFormat) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let endpoint = std::env::var(OTLP_ENDPOINT_ENV)
        .ok()
        .filter(|e| !e.trim().is_empty());
    let telemetry = match &endpoint {
        Some(endpoint) => otlp(service, endpoint)?,
        None => Telemetry::default(),
    };
    let otel_layer = telemetry
        .tracer
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(fmt_layer(format))
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, "exporting traces and metrics over OTLP");
    }
    Ok(telemetry)
}

fn otlp(service: &'static str, endpoint: &str) -> Result<Telemetry, TelemetryError> {
    let err = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    };
    let resource = Resource::builder().with_service_name(service).build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| err(&e))?;
    let tracer = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(spans)
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| err(&e))?;
    let meter = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_periodic_exporter(metrics)
        .build();
    opentelemetry::global::set_tracer_provider(tracer.clone());
    opentelemetry::global::set_meter_provider(meter.clone());
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(Telemetry {
        tracer: Some(tracer),
        meter: Some(meter),
    })
}

/// Makes the span of each served call (for tower-http's `TraceLayer`): named after the
/// RPC, with the OpenTelemetry RPC attributes, and child of the caller's span when the
/// request carries a W3C `traceparent` (see [`crate::client::ClientInterceptor`]).
/// Health and reflection calls get DEBUG spans, so probes do not flood the traces.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMakeSpan;

impl<B> tower_http::trace::MakeSpan<B> for GrpcMakeSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        let path = request.uri().path();
        let (service, method) = crate::metrics::rpc_labels(path);
        let rpc = path.strip_prefix('/').unwrap_or(path);
        let span = if crate::auth::is_public(path) {
            tracing::debug_span!(
                "grpc",
                otel.name = %rpc,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
            )
        } else {
            tracing::info_span!(
                "grpc",
                otel.name = %rpc,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
            )
        };
        let parent = extract_trace_context(request.headers());
        if parent.span().span_context().is_valid() {
            // Only fails when the span is disabled (filtered out): nothing to attach then.
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) of incoming request headers; an
/// empty context when there is none or it is malformed. W3C is the only format read:
/// it is what Vitals clients and OpenTelemetry SDKs send by default.
pub fn extract_trace_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator;
    opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
