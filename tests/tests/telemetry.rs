//! Telemetry end to end, with in-memory OpenTelemetry exporters installed where OTLP's
//! would be (the global tracer and meter providers):
//! - a trace that crosses two services: a client span -> the all-in-one's ComputeScores
//!   server span -> the separate learner's GetWeights server span (scoring calls it over
//!   gRPC through `vitals_server::client`), one trace id, W3C `traceparent` propagated;
//! - the metrics docs/telemetry.md lists, recorded by real calls.
//!
//! The providers are global: the tests share one setup, run one at a time (a lock, for
//! runners that put them in one process) and measure counters as differences.

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_server::client::ClientInterceptor;
use vitals_server::metrics;
use vitals_test_support::TestServer;

struct Otel {
    spans: InMemorySpanExporter,
    tracer: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter: SdkMeterProvider,
}

/// Held by each test: they share the global providers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs the in-memory pipelines once per process, before any instrument is created.
fn otel() -> &'static Otel {
    static O: OnceLock<Otel> = OnceLock::new();
    O.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let tracer = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        opentelemetry::global::set_tracer_provider(tracer.clone());
        opentelemetry::global::set_meter_provider(meter.clone());
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer.tracer("vitals-e2e")));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        Otel {
            spans,
            tracer,
            metrics,
            meter,
        }
    })
}

async fn learner_server() -> TestServer {
    let config = vitals_learner::Config {
        server: vitals_server::ServerConfig::for_tests("sqlite::memory:"),
        service: Default::default(),
    };
    TestServer::start(move |l, s| vitals_learner::run(config, l, s)).await
}

/// The all-in-one, asking the learner at `learner_url` for weights over gRPC.
async fn all_in_one(learner_url: String) -> TestServer {
    let mut config = vitals::ServeConfig::for_tests("sqlite::memory:");
    config.scoring.learner_url = Some(learner_url);
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}

async fn add_accounts(server: &TestServer, ids: &[&str]) {
    let mut c = IngestionServiceClient::new(server.channel().await);
    c.upsert_accounts(ipb::UpsertAccountsRequest {
        accounts: ids
            .iter()
            .map(|id| ipb::Account {
                account_id: id.to_string(),
                display_name: format!("Account {id}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
    .await
    .expect("accounts stored");
}

fn compute_all() -> spb::ComputeScoresRequest {
    spb::ComputeScoresRequest {
        scope: None,
        as_of: None,
    }
}

fn spans_named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_scoring_and_the_learner() {
    let _serial = SERIAL.lock().await;
    let otel = otel();
    let learner = learner_server().await;
    let server = all_in_one(learner.url()).await;
    add_accounts(&server, &["t1", "t2", "t3"]).await;

    // A traced client: its span is the root of the trace.
    let client_span = tracing::info_span!("e2e client", otel.kind = "client");
    let mut scoring = ScoringServiceClient::with_interceptor(
        server.channel().await,
        ClientInterceptor::new(None).expect("interceptor"),
    );
    let run = scoring
        .compute_scores(compute_all())
        .instrument(client_span.clone())
        .await
        .expect("scores computed")
        .into_inner();
    assert_eq!(run.scored_count, 3);
    drop(client_span);

    // An untraced client (no traceparent): its server span starts a trace of its own.
    let mut plain = ScoringServiceClient::new(server.channel().await);
    plain
        .list_kpis(spb::ListKpisRequest::default())
        .await
        .expect("kpis listed");

    // Stopping drains the calls, so every server span has ended.
    server.stop().await.expect("clean stop");
    learner.stop().await.expect("clean stop");
    otel.tracer.force_flush().expect("flush spans");
    let spans = otel.spans.get_finished_spans().expect("spans");

    let client = spans_named(&spans, "e2e client");
    assert_eq!(client.len(), 1, "one client span");
    let trace: TraceId = client[0].span_context.trace_id();
    let in_trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    let ids: HashSet<SpanId> = in_trace.iter().map(|s| s.span_context.span_id()).collect();

    let compute = spans_named(&spans, "vitals.scoring.v1.ScoringService/ComputeScores");
    assert_eq!(compute.len(), 1, "one ComputeScores server span");
    assert_eq!(compute[0].span_context.trace_id(), trace, "same trace id");
    assert_eq!(
        compute[0].parent_span_id,
        client[0].span_context.span_id(),
        "the server span is the client span's child"
    );
    assert!(
        compute[0].parent_span_is_remote,
        "parent came over the wire"
    );

    let weights = spans_named(&spans, "vitals.learner.v1.LearnerService/GetWeights");
    assert!(!weights.is_empty(), "the learner served GetWeights");
    for w in &weights {
        assert_eq!(
            w.span_context.trace_id(),
            trace,
            "the learner's span joins the trace"
        );
        assert!(w.parent_span_is_remote);
        assert!(
            ids.contains(&w.parent_span_id),
            "its parent is a span of scoring in the trace"
        );
    }

    let kpis = spans_named(&spans, "vitals.scoring.v1.ScoringService/ListKpis");
    assert_eq!(kpis.len(), 1);
    assert_ne!(
        kpis[0].span_context.trace_id(),
        trace,
        "no traceparent, no join"
    );
    assert_eq!(kpis[0].parent_span_id, SpanId::INVALID);
}

/// Sum of a u64 counter's points whose attributes include `attr`, over every export.
fn counter(otel: &Otel, name: &str, attr: &KeyValue) -> u64 {
    otel.meter.force_flush().expect("flush metrics");
    let mut total = 0;
    let exported = otel.metrics.get_finished_metrics().expect("metrics");
    // Cumulative temporality: the last export holds the totals.
    if let Some(rm) = exported.last() {
        for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
            if m.name() != name {
                continue;
            }
            if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                total += sum
                    .data_points()
                    .filter(|p| p.attributes().any(|a| a == attr))
                    .map(|p| p.value())
                    .sum::<u64>();
            }
        }
    }
    total
}

/// Calls of the RPC histogram with `method` and `code`.
fn rpc_calls(otel: &Otel, method: &str, code: i64) -> u64 {
    otel.meter.force_flush().expect("flush metrics");
    let exported = otel.metrics.get_finished_metrics().expect("metrics");
    let Some(rm) = exported.last() else {
        return 0;
    };
    let mut n = 0;
    for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
        if m.name() != metrics::RPC_DURATION {
            continue;
        }
        assert_eq!(m.unit(), "s");
        if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
            for p in h.data_points() {
                let attrs: Vec<&KeyValue> = p.attributes().collect();
                let has =
                    |k: &str, v: Value| attrs.iter().any(|a| a.key.as_str() == k && a.value == v);
                if has("rpc.method", Value::from(method.to_string()))
                    && has("rpc.grpc.status_code", Value::I64(code))
                {
                    n += p.count();
                }
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_domain_metrics_are_recorded() {
    let _serial = SERIAL.lock().await;
    let otel = otel();
    let events = KeyValue::new("kind", "event");
    let accounts = KeyValue::new("kind", "account");
    let request = KeyValue::new("trigger", "request");
    let failed = KeyValue::new("outcome", "failed");
    let uniform = KeyValue::new("weights", "uniform");
    let read = || {
        [
            counter(otel, metrics::EVENTS_INGESTED, &events),
            counter(otel, metrics::EVENTS_INGESTED, &accounts),
            counter(otel, metrics::SCORES_COMPUTED, &request),
            counter(otel, metrics::TRAINING_RUNS, &failed),
            counter(otel, metrics::LEARNER_FALLBACKS, &uniform),
            rpc_calls(otel, "IngestEvent", 0),
            rpc_calls(otel, "IngestEvent", 3),
            rpc_calls(otel, "ComputeScores", 0),
            rpc_calls(otel, "Train", 9),
        ]
    };
    let before = read();
    // A learner address where nothing listens: scoring falls back to uniform weights.
    let gone = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let server = all_in_one(format!("http://{gone}")).await;
    add_accounts(&server, &["m1", "m2"]).await;

    let mut ingestion = IngestionServiceClient::new(server.channel().await);
    let now = std::time::SystemTime::now();
    let event = |id: &str| ipb::Event {
        event_id: id.to_string(),
        account_id: "m1".into(),
        event_type: "login".into(),
        occur_time: Some(prost_types::Timestamp::from(now)),
        ..Default::default()
    };
    for id in ["e1", "e2", "e1"] {
        ingestion
            .ingest_event(ipb::IngestEventRequest {
                event: Some(event(id)),
            })
            .await
            .expect("event stored");
    }
    let bad = ingestion
        .ingest_event(ipb::IngestEventRequest { event: None })
        .await
        .expect_err("an event is required");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let mut scoring = ScoringServiceClient::new(server.channel().await);
    let run = scoring
        .compute_scores(compute_all())
        .await
        .expect("scores computed")
        .into_inner();
    assert_eq!(run.scored_count, 2);

    let mut learner = LearnerServiceClient::new(server.channel().await);
    let refused = learner
        .train(lpb::TrainRequest::default())
        .await
        .expect_err("no outcome recorded: nothing to learn from");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    server.stop().await.expect("clean stop");

    let after = read();
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(d[0], 2, "events ingested: the duplicate e1 is not counted");
    assert_eq!(d[1], 2, "accounts upserted");
    assert_eq!(d[2], u64::from(run.scored_count), "scores computed");
    assert_eq!(d[3], 1, "failed training runs");
    assert!(d[4] >= 1, "learner fallbacks to uniform weights");
    assert_eq!(d[5], 3, "IngestEvent OK");
    assert_eq!(d[6], 1, "IngestEvent INVALID_ARGUMENT");
    assert_eq!(d[7], 1, "ComputeScores OK");
    assert_eq!(d[8], 1, "Train FAILED_PRECONDITION");
}
