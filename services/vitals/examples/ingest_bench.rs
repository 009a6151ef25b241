//! Streaming-ingest benchmark: the loader streams the events of a sample-data folder
//! through loopback gRPC (1,000-event batches, several streams, several batches in
//! flight) into an ingestion server running in this process, on a SQLite file and on
//! PostgreSQL; then PostgreSQL's own `COPY` of the same rows into a table shaped like
//! `events` gives the ceiling.
//!
//! ```sh
//! cargo run --release -p vitals --example ingest_bench -- \
//!     --dir tests/data/socialnet7-small \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use tokio::net::TcpListener;
use vitals::loader::{LoadArgs, load};
use vitals_ingestion::{Config, IngestionArgs};
use vitals_server::ServerConfig;
use vitals_store::Store;
use vitals_store::sea_orm::{ConnectionTrait, Database};

/// The allocator of the `vitals-ingestion` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Sample-data folder.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/socialnet7-small"))]
    dir: PathBuf,
    /// PostgreSQL server (any database on it); a fresh database is created there.
    #[arg(long, env = "VITALS_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Skip the SQLite run.
    #[arg(long)]
    skip_sqlite: bool,
    /// IngestEvents streams (default: the loader's, `vitals load --streams`).
    #[arg(long)]
    streams: Option<u64>,
    /// Batches in flight per stream (default: the loader's).
    #[arg(long)]
    in_flight: Option<u64>,
    /// Events per batch (default: the loader's).
    #[arg(long)]
    batch_size: Option<u64>,
    /// Write transactions the service runs at once on PostgreSQL (default: the
    /// service's `--ingestion-write-concurrency`).
    #[arg(long)]
    write_concurrency: Option<u32>,
    /// Connections in the service's database pool (default: the server's
    /// `--database-max-connections`).
    #[arg(long)]
    database_max_connections: Option<u32>,
    /// Load only the accounts whose id is divisible by N (a deterministic subset).
    #[arg(long)]
    account_divisor: Option<u64>,
}

/// The loader's settings: its defaults, with the flags given.
fn load_args(args: &Args, addr: String) -> LoadArgs {
    let mut l = LoadArgs::new(&args.dir, addr);
    l.no_outcomes = true;
    l.streams = args.streams.unwrap_or(l.streams);
    l.in_flight = args.in_flight.unwrap_or(l.in_flight);
    l.batch_size = args.batch_size.unwrap_or(l.batch_size);
    l.account_divisor = args.account_divisor;
    l
}

async fn run_one(url: &str, args: &Args) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = ServerConfig::for_tests(url);
    server.database_max_connections = args.database_max_connections;
    let mut service = IngestionArgs::default();
    if let Some(n) = args.write_concurrency {
        service.write_concurrency = n;
    }
    let config = Config { server, service };
    let server = tokio::spawn(vitals_ingestion::run(
        config,
        listener,
        Box::pin(async move {
            let _ = rx.await;
        }),
    ));
    // Wait until it answers.
    let mut tries = 0;
    while tokio::net::TcpStream::connect(addr).await.is_err() && tries < 500 {
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let load_args = load_args(args, format!("http://{addr}"));
    let s = load(&load_args).await?;
    println!("{}", s.report());
    let _ = tx.send(());
    server.await??;
    Ok(s.events_per_second())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let l = load_args(&args, String::new());
    let service = IngestionArgs::default();
    println!(
        "data: {}\nbatch {} events, {} streams x {} in flight, PostgreSQL write concurrency {}, \
         pool {}\n",
        args.dir.display(),
        l.batch_size,
        l.streams,
        l.in_flight,
        args.write_concurrency.unwrap_or(service.write_concurrency),
        args.database_max_connections.map_or_else(
            || format!(
                "default ({} on PostgreSQL)",
                vitals_store::DEFAULT_POSTGRES_MAX_CONNECTIONS
            ),
            |n| n.to_string()
        ),
    );
    let mut lines = Vec::new();
    if !args.skip_sqlite {
        let path = std::env::temp_dir().join(format!("vitals-bench-{}.db", std::process::id()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        println!("== SQLite file {}", path.display());
        let eps = run_one(&url, &args).await?;
        lines.push(format!("SQLite (file, WAL): {eps:.0} events/s"));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }
    if let Some(base) = &args.postgres_url {
        let name = format!("vitals_bench_{}", std::process::id());
        let admin = Database::connect(base.as_str()).await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let (prefix, _) = base.rsplit_once('/').unwrap_or((base.as_str(), ""));
        let url = format!("{prefix}/{name}");
        println!("== PostgreSQL {}", vitals_store::redact_url(&url));
        let eps = run_one(&url, &args).await?;
        lines.push(format!("PostgreSQL: {eps:.0} events/s"));

        // The ceiling: PostgreSQL's COPY of the same rows into a table with the columns
        // of `events` and its unique key (account_id, event_id) (the events table
        // before it was partitioned; the unique key is now `event_keys`'), from a
        // server-side file.
        let store = Store::connect(&url).await?;
        let c = store.conn();
        let n: i64 = c
            .query_one_raw(vitals_store::sea_orm::Statement::from_string(
                c.get_database_backend(),
                "SELECT COUNT(*) AS n FROM events".to_string(),
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        // PostgreSQL runs on this machine (loopback): it writes and reads the file itself.
        let file = std::env::temp_dir()
            .join(format!("vitals_bench_events_{}.csv", std::process::id()))
            .display()
            .to_string();
        c.execute_unprepared(
            "CREATE TABLE events_copy (LIKE events INCLUDING DEFAULTS, \
             PRIMARY KEY (account_id, event_id))",
        )
        .await?;
        c.execute_unprepared(&format!(
            "COPY (SELECT * FROM events) TO '{file}' (FORMAT csv)"
        ))
        .await?;
        let t = Instant::now();
        c.execute_unprepared(&format!("COPY events_copy FROM '{file}' (FORMAT csv)"))
            .await?;
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&file);
        let copy = n as f64 / secs;
        lines.push(format!(
            "PostgreSQL COPY ceiling: {n} rows in {secs:.2} s = {copy:.0} rows/s"
        ));
        lines.push(format!(
            "PostgreSQL ingest / COPY: {:.0} %",
            100.0 * eps / copy
        ));
        store.close().await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin.close().await?;
    }
    println!("== summary");
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
