//! Segment HTTP ingestion next to gRPC streaming ingest, in one run: the same synthetic
//! usage events (N accounts, one event type per event, distinct message ids) sent
//!  - through `IngestEvents` (gRPC streams of 1,000-event batches), and
//!  - through `POST /v1/batch` (Segment `track` calls with `context.groupId`, 1,000
//!    calls per request, about 230 KB, under Segment's 500 KB), over kept-alive HTTP/1.1
//!    connections,
//!
//! each into a fresh database of an ingestion server running in this process (a SQLite
//! file; PostgreSQL too with `--postgres-url`). Prints events/s of each path.
//!
//! ```sh
//! cargo build --release -p vitals --example segment_bench
//! target/release/examples/segment_bench --events 400000 \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use clap::Parser;
use tokio::net::TcpListener;
use vitals_ingestion::{Config, IngestionArgs};
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_server::ServerConfig;
use vitals_store::sea_orm::{ConnectionTrait, Database};
use vitals_test_support::http1::Http1;

/// The allocator of the `vitals-ingestion` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Events sent through each path.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Accounts the events are spread over.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Events per gRPC batch and Segment calls per `/v1/batch` request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// gRPC streams, and HTTP connections, at once.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Distinct users per account (more: more `usage_daily_users` rows per event).
    #[arg(long, default_value_t = 5)]
    users_per_account: usize,
    /// Days the event times spread over (more: more roll-up rows).
    #[arg(long, default_value_t = 20)]
    days: usize,
    /// PostgreSQL server (any database on it); fresh databases are created there.
    #[arg(long, env = "VITALS_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
}

/// Event `i`: account, event id, user, type, seconds ago.
fn event(i: usize, args: &Shape) -> (String, String, String, &'static str, i64) {
    let Shape {
        accounts,
        users_per_account,
        days,
    } = *args;
    const TYPES: [&str; 4] = ["login", "report_run", "export", "invite"];
    (
        format!("acct-{:05}", i % accounts),
        format!("m-{i}"),
        format!("u-{}", i % (accounts * users_per_account.max(1))),
        TYPES[i % TYPES.len()],
        ((i * 7_919) % (days.max(1) * 86_400)) as i64,
    )
}

/// The shape of the generated events.
#[derive(Clone, Copy, Debug)]
struct Shape {
    accounts: usize,
    users_per_account: usize,
    days: usize,
}

impl Args {
    fn shape(&self) -> Shape {
        Shape {
            accounts: self.accounts,
            users_per_account: self.users_per_account,
            days: self.days,
        }
    }
}

async fn grpc_path(addr: SocketAddr, args: &Args) -> anyhow::Result<usize> {
    let now = chrono::Utc::now().timestamp();
    let mut tasks = Vec::new();
    for k in 0..args.connections {
        let (n, batch, accounts, conns) = (args.events, args.batch, args.shape(), args.connections);
        tasks.push(tokio::spawn(async move {
            let mut client = IngestionServiceClient::connect(format!("http://{addr}")).await?;
            let batches: Vec<pb::IngestEventsRequest> = (k * batch..n)
                .step_by(batch * conns)
                .enumerate()
                .map(|(seq, start)| pb::IngestEventsRequest {
                    sequence: seq as u64,
                    events: (start..(start + batch).min(n))
                        .map(|i| {
                            let (a, id, u, t, ago) = event(i, &accounts);
                            pb::Event {
                                event_id: id,
                                account_id: a,
                                user_id: u,
                                event_type: t.into(),
                                occur_time: Some(prost_types::Timestamp {
                                    seconds: now - ago,
                                    nanos: 0,
                                }),
                                value: None,
                            }
                        })
                        .collect(),
                })
                .collect();
            let mut acks = client
                .ingest_events(tokio_stream::iter(batches))
                .await?
                .into_inner();
            let mut accepted = 0usize;
            while let Some(ack) = acks.message().await? {
                accepted += ack.accepted_count as usize;
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

async fn segment_path(addr: SocketAddr, args: &Args) -> anyhow::Result<usize> {
    let now = chrono::Utc::now();
    let mut tasks = Vec::new();
    for k in 0..args.connections {
        let (n, batch, accounts, conns) = (args.events, args.batch, args.shape(), args.connections);
        tasks.push(tokio::spawn(async move {
            let mut c = Http1::connect(addr).await;
            let mut accepted = 0usize;
            for start in (k * batch..n).step_by(batch * conns) {
                let calls: Vec<serde_json::Value> = (start..(start + batch).min(n))
                    .map(|i| {
                        let (a, id, u, t, ago) = event(i, &accounts);
                        let at = now - chrono::Duration::seconds(ago);
                        serde_json::json!({
                            "type": "track", "event": t, "messageId": id, "userId": u,
                            "timestamp": at.to_rfc3339(), "context": {"groupId": a}
                        })
                    })
                    .collect();
                let body = serde_json::json!({ "batch": calls }).to_string();
                let r = c.post("/v1/batch", &[], body.as_bytes()).await;
                anyhow::ensure!(r.status == 200, "{}: {}", r.status, r.body);
                accepted += r.json()["events"]["accepted"].as_u64().unwrap_or(0) as usize;
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// Starts an ingestion server on `url`, runs `path` against it, returns events/s.
async fn measure(url: &str, args: &Args, segment: bool) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        server: ServerConfig::for_tests(url),
        service: IngestionArgs::default(),
    };
    let server = tokio::spawn(vitals_ingestion::run(
        config,
        listener,
        Box::pin(async move {
            let _ = rx.await;
        }),
    ));
    let mut tries = 0;
    while tokio::net::TcpStream::connect(addr).await.is_err() && tries < 500 {
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    let accepted = if segment {
        segment_path(addr, args).await?
    } else {
        grpc_path(addr, args).await?
    };
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted == args.events,
        "{accepted} of {} accepted",
        args.events
    );
    let _ = tx.send(());
    server.await??;
    Ok(accepted as f64 / secs)
}

/// A fresh database URL of `backend` (`None`: a SQLite file), and its cleanup.
async fn fresh(base: Option<&str>, tag: &str) -> anyhow::Result<String> {
    let Some(base) = base else {
        let path =
            std::env::temp_dir().join(format!("vitals-seg-bench-{tag}-{}.db", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        return Ok(format!("sqlite://{}?mode=rwc", path.display()));
    };
    let name = format!("vitals_seg_bench_{tag}_{}", std::process::id());
    let admin = Database::connect(base).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    let (prefix, _) = base.rsplit_once('/').unwrap_or((base, ""));
    Ok(format!("{prefix}/{name}"))
}

/// Removes a database made by [`fresh`].
async fn drop_db(base: Option<&str>, url: &str) -> anyhow::Result<()> {
    match base {
        None => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_end_matches("?mode=rwc");
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{ext}"));
            }
        }
        Some(base) => {
            let name = url.rsplit('/').next().unwrap_or_default();
            let admin = Database::connect(base).await?;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            admin.close().await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "{} events over {} accounts ({} users each, {} days), {} per batch, {} connections",
        args.events, args.accounts, args.users_per_account, args.days, args.batch, args.connections
    );
    let mut backends: Vec<(&str, Option<&str>)> = vec![("SQLite file", None)];
    if let Some(pg) = &args.postgres_url {
        backends.push(("PostgreSQL", Some(pg.as_str())));
    }
    for (name, base) in backends {
        let (g, sg) = (fresh(base, "grpc").await?, fresh(base, "segment").await?);
        let grpc = measure(&g, &args, false).await?;
        let segment = measure(&sg, &args, true).await?;
        println!(
            "{name}: gRPC IngestEvents {grpc:.0} events/s, Segment /v1/batch {segment:.0} \
             events/s ({:.2}x)",
            segment / grpc
        );
        for url in [g, sg] {
            drop_db(base, &url).await?;
        }
    }
    Ok(())
}
