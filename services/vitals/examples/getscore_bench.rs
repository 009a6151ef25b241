//! Benchmark: `ScoringService.GetScore` latency and throughput under concurrent clients
//! over loopback.
//!
//! ```sh
//! cargo run --release -p vitals --example getscore_bench                  # 64 clients, SQLite
//! cargo run --release -p vitals --example getscore_bench -- --postgres postgres://postgres@127.0.0.1:5432
//! cargo run --release -p vitals --example getscore_bench -- --database-url URL   # an already scored database
//! cargo run --release -p vitals --example getscore_bench -- --score-cache-entries 0   # every call reads the database
//! ```
//!
//! The all-in-one server runs in this process (auth off) on a database holding scores:
//! the one given with `--database-url` when it already has scores, else a fresh one with
//! the synthetic portfolio of `bench_common` (`--accounts`, default 100,000) scored once.
//! Then `--clients` tasks (default 64), each with its own HTTP/2 connection, call GetScore
//! back to back for pseudo-random accounts (full view, the profile scorecard) for
//! `--warmup` seconds (not recorded) and `--seconds` seconds (recorded). Client and
//! server share the machine's cores. Figures go to docs/bench-scoring-service.md.
//!
//! With `--server-bin PATH` (e.g. `target/release/vitals`, built by
//! `cargo build --release -p vitals`), the set-up still runs in this process, then the
//! in-process server stops and `PATH serve` (auth off, the score cache as configured)
//! serves the measured calls from its own process, as in production: the clients' and the
//! server's runtimes no longer share one scheduler. `--client-threads N` and
//! `--server-threads N` set the worker threads of the clients' runtime and of the server's
//! (default: tokio's, one per core each).

mod bench_common;

/// The allocator of the `vitals` binary (mimalloc), so the server measured here runs as
/// it does in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use bench_common::child::{ChildOptions, ChildServer, get_score_load};
use bench_common::{BenchDb, Error, Server, account_id, create_profiles, generate, loadavg};
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;

struct Args {
    accounts: u32,
    clients: u32,
    seconds: u64,
    warmup: u64,
    database_url: Option<String>,
    postgres: Option<String>,
    cache_entries: Option<u64>,
    server_bin: Option<std::path::PathBuf>,
    client_threads: Option<usize>,
    server_threads: Option<usize>,
}

fn parse() -> Result<Args, Error> {
    let mut a = Args {
        accounts: 100_000,
        clients: 64,
        seconds: 20,
        warmup: 3,
        database_url: None,
        postgres: None,
        cache_entries: None,
        server_bin: None,
        client_threads: None,
        server_threads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--accounts" => a.accounts = val()?.parse()?,
            "--clients" => a.clients = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--database-url" => a.database_url = Some(val()?),
            "--postgres" => a.postgres = Some(val()?),
            "--score-cache-entries" => a.cache_entries = Some(val()?.parse()?),
            "--server-bin" => a.server_bin = Some(val()?.into()),
            "--client-threads" => a.client_threads = Some(val()?.parse()?),
            "--server-threads" => a.server_threads = Some(val()?.parse()?),
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --accounts N --clients N --seconds N \
                     --warmup N --database-url URL | --postgres SERVER_URL \
                     --score-cache-entries N --server-bin PATH --client-threads N \
                     --server-threads N"
                )
                .into());
            }
        }
    }
    Ok(a)
}

fn main() -> Result<(), Error> {
    let args = parse()?;
    // This process's runtime: tokio's default (one worker per core, or
    // TOKIO_WORKER_THREADS) unless `--client-threads` says.
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.client_threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Error> {
    let db = BenchDb::open(
        "getscore-bench",
        args.database_url.as_deref(),
        args.postgres.as_deref(),
    )
    .await?;
    let url = db.url().to_string();
    let server = Server::start_with(&url, |c| {
        if let Some(n) = args.cache_entries {
            c.scoring.score_cache_entries = n;
        }
    })
    .await?;
    let channel = server.channel().await?;
    let mut scoring = ScoringServiceClient::new(channel.clone());

    // Scores to read: the database's, or a fresh portfolio scored once.
    let accounts = accounts_to_read(&mut scoring, &channel, &url, &args).await?;
    if accounts.is_empty() {
        return Err("no account to read".into());
    }
    // What one answer holds, so that a run reading empty or trimmed snapshots shows.
    let sample = scoring
        .get_score(spb::GetScoreRequest {
            account_id: accounts[0].clone(),
            scorecard: String::new(),
            as_of: None,
        })
        .await?
        .into_inner();
    let snapshot = sample
        .snapshot
        .as_ref()
        .ok_or("GetScore answered no snapshot")?;
    println!(
        "one answer ({}): {} bytes encoded, {} drivers, {} category scores",
        snapshot.account_id,
        prost::Message::encoded_len(&sample),
        snapshot.drivers.len(),
        snapshot.category_scores.len()
    );
    let accounts = std::sync::Arc::new(accounts);

    // The server the clients call: this process's, or the `vitals` binary in its own
    // process (`--server-bin`), started on the same database once the set-up is done.
    let target = match &args.server_bin {
        None => Target::InProcess(server),
        Some(bin) => {
            drop(scoring);
            drop(channel);
            server.stop().await?;
            Target::Child(
                ChildServer::start(
                    bin,
                    &url,
                    &ChildOptions {
                        cache_entries: args.cache_entries,
                        threads: args.server_threads,
                        ..Default::default()
                    },
                    Duration::from_secs(120),
                )
                .await?,
            )
        }
    };

    println!(
        "GetScore bench: {} clients (one connection each), {} s warm-up + {} s measured, \
         {} accounts, database {}, server {}",
        args.clients,
        args.warmup,
        args.seconds,
        accounts.len(),
        vitals_store::redact_url(&url),
        match &target {
            Target::InProcess(_) => "in this process".to_string(),
            Target::Child(c) => format!("{} (pid {})", c.bin.display(), c.child.id().unwrap_or(0)),
        }
    );
    let load_before = loadavg();
    let start = Instant::now();
    let record_from = start + Duration::from_secs(args.warmup);
    let end = record_from + Duration::from_secs(args.seconds);
    let (mut all, errors) = call_get_score(&target, &accounts, &args, (record_from, end)).await?;
    let (p50, p90, p99, max) = bench_common::percentiles(&mut all);
    println!(
        "GetScore: {} calls ok, {errors} errors in {} s = {:.0} calls/s; latency p50 {p50:.2} \
         ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; load average before {load_before}, \
         after {}",
        all.len(),
        args.seconds,
        all.len() as f64 / args.seconds as f64,
        loadavg()
    );
    // The memory of this process (clients, and the server when it runs here) and of the
    // server's process.
    print_memory("this process", "/proc/self/status");
    match target {
        Target::InProcess(server) => server.stop().await?,
        Target::Child(child) => {
            print_memory(
                "server process",
                &format!("/proc/{}/status", child.child.id().unwrap_or(0)),
            );
            child.stop().await?;
        }
    }
    db.remove().await
}

/// The account ids to read: the scored ones of the database, or `--accounts` synthetic
/// accounts generated, assigned and scored once.
async fn accounts_to_read(
    scoring: &mut ScoringServiceClient<Channel>,
    channel: &Channel,
    url: &str,
    args: &Args,
) -> Result<Vec<String>, Error> {
    let listed = scoring
        .list_scores(spb::ListScoresRequest {
            page_size: 1,
            order_by: "account_id".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(if listed.total_size > 0 {
        println!("reusing the {} scores of {url}", listed.total_size);
        // Synthetic ids when the database was made by these benches, else the listed
        // ones page by page.
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let page = scoring
                .list_scores(spb::ListScoresRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    order_by: "account_id".into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            ids.extend(page.snapshots.into_iter().map(|s| s.account_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        ids
    } else {
        create_profiles(channel.clone()).await?;
        let store = vitals_store::Store::connect(url).await?;
        let g = generate(&store, args.accounts, 90, chrono::Utc::now().date_naive()).await?;
        store.close().await?;
        println!(
            "generated {} accounts, {} usage_daily rows in {:.1} s",
            g.accounts,
            g.usage_rows,
            g.elapsed.as_secs_f64()
        );
        ProfilesServiceClient::new(channel.clone())
            .reassign_accounts(ppb::ReassignAccountsRequest {
                dry_run: false,
                max_moves: 1,
            })
            .await?;
        let t = Instant::now();
        let r = scoring
            .compute_scores(spb::ComputeScoresRequest::default())
            .await?
            .into_inner();
        println!(
            "scored {} accounts in {:.1} s",
            r.scored_count,
            t.elapsed().as_secs_f64()
        );
        (0..args.accounts).map(account_id).collect()
    })
}

/// `--clients` clients on the target until `end` (see [`get_score_load`]).
async fn call_get_score(
    target: &Target,
    accounts: &std::sync::Arc<Vec<String>>,
    args: &Args,
    window: (Instant, Instant),
) -> Result<(Vec<u32>, u64), Error> {
    get_score_load(target.addr(), accounts, args.clients, window).await
}

fn print_memory(what: &str, status_file: &str) {
    let status = std::fs::read_to_string(status_file).unwrap_or_default();
    for l in status.lines() {
        if l.starts_with("VmRSS") || l.starts_with("VmHWM") {
            println!("{what}: {l}");
        }
    }
}

/// Where the clients' calls go.
enum Target {
    InProcess(Server),
    Child(ChildServer),
}

impl Target {
    fn addr(&self) -> SocketAddr {
        match self {
            Self::InProcess(s) => s.addr,
            Self::Child(c) => c.addr,
        }
    }
}
