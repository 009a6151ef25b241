//! Benchmark at scale (issue 22): a synthetic portfolio of `--accounts` accounts (default
//! 1,000,000) in a PostgreSQL database, served by the production binary `vitals serve` in
//! its own process; measures the whole-portfolio recompute, GetScore at 64 clients,
//! Train, the ingest rate and the server's peak RSS in each of these phases.
//!
//! ```sh
//! cargo build --release -p vitals --bin vitals --example scale_bench
//! psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE scale_100k'
//! target/release/examples/scale_bench --accounts 100000 \
//!     --database-url postgres://postgres@127.0.0.1:5432/scale_100k [--keep]
//! ```
//!
//! Steps (each printed with its time and the load average):
//! 1. `vitals serve` (next to this example's directory: `target/release/vitals`, or
//!    `--server-bin`) starts on the database with auth off, schedules off and automatic
//!    training off (so that nothing runs beside what is measured); it migrates the
//!    database.
//! 2. An empty database gets three plan profiles (gRPC) and the portfolio of
//!    `bench_common::scale` (binary `COPY`, `--streams` connections; `--seed`); a
//!    database that already has accounts is reused as it is. ReassignAccounts assigns
//!    the profiles.
//! 3. ComputeScores (all accounts, as of now) `--runs` times.
//! 4. GetScore: `--clients` clients (one HTTP/2 connection each) on random active
//!    accounts, `--warmup` s then `--seconds` s measured; the server keeps its default
//!    score cache (100,000 entries) unless `--score-cache-entries`.
//! 5. Train (every profile and the global model, default options with `horizon_days`
//!    30). When the server's default dataset bound refuses it (RESOURCE_EXHAUSTED), the
//!    server restarts with `VITALS_LEARNER_MAX_DATASET_CELLS=--train-max-cells` and
//!    Train runs again.
//! 6. IngestEvents: `--ingest-events` new events (today's, for random active accounts,
//!    5 users each, the three event types) over `--ingest-streams` streams of
//!    1,000-event batches.
//! 7. The size of each table (`pg_total_relation_size`) and its rows.
//!
//! Peak RSS: the server's VmHWM, reset before each phase (`/proc/<pid>/clear_refs`), so
//! each figure is the peak of the whole `vitals serve` process (every service) during
//! that phase. The bench's own process (generator and clients) is reported apart.

mod bench_common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::child::{ChildOptions, ChildServer, get_score_load, gib, memory, reset_peak};
use bench_common::scale::{ScaleSpec, generate, table_sizes};
use bench_common::{BenchDb, Error, Rng, connect, create_profiles, loadavg};
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::sea_orm::sqlx;

/// The allocator of the `vitals` binary, for the bench's own process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    accounts: u32,
    days: u32,
    seed: u64,
    streams: u32,
    runs: u32,
    clients: u32,
    seconds: u64,
    warmup: u64,
    cache_entries: Option<u64>,
    train: bool,
    train_max_cells: u64,
    ingest_events: u32,
    ingest_streams: u32,
    database_url: Option<String>,
    postgres: Option<String>,
    server_bin: Option<PathBuf>,
    server_log: Option<PathBuf>,
    keep: bool,
}

const USAGE: &str = "flags: --accounts N (1000000) --days N (90) --seed N (42) --streams N (2) \
     --runs N (2) --clients N (64) --seconds N (15) --warmup N (5) --score-cache-entries N \
     --no-train --train-max-cells N (1000000000) --ingest-events N (500000) \
     --ingest-streams N (16) --database-url URL | --postgres SERVER_URL --server-bin PATH \
     --server-log PATH --keep";

fn parse() -> Result<Args, Error> {
    let mut a = Args {
        accounts: 1_000_000,
        days: 90,
        seed: 42,
        streams: 2,
        runs: 2,
        clients: 64,
        seconds: 15,
        warmup: 5,
        cache_entries: None,
        train: true,
        train_max_cells: 1_000_000_000,
        ingest_events: 500_000,
        ingest_streams: 16,
        database_url: None,
        postgres: None,
        server_bin: None,
        server_log: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, Error> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a valid number").into())
        }
        match flag.as_str() {
            "--accounts" => a.accounts = num(&flag, val()?)?,
            "--days" => a.days = num(&flag, val()?)?,
            "--seed" => a.seed = num(&flag, val()?)?,
            "--streams" => a.streams = num(&flag, val()?)?,
            "--runs" => a.runs = num(&flag, val()?)?,
            "--clients" => a.clients = num(&flag, val()?)?,
            "--seconds" => a.seconds = num(&flag, val()?)?,
            "--warmup" => a.warmup = num(&flag, val()?)?,
            "--score-cache-entries" => a.cache_entries = Some(num(&flag, val()?)?),
            "--no-train" => a.train = false,
            "--train-max-cells" => a.train_max_cells = num(&flag, val()?)?,
            "--ingest-events" => a.ingest_events = num(&flag, val()?)?,
            "--ingest-streams" => a.ingest_streams = num(&flag, val()?)?,
            "--database-url" => a.database_url = Some(val()?),
            "--postgres" => a.postgres = Some(val()?),
            "--server-bin" => a.server_bin = Some(val()?.into()),
            "--server-log" => a.server_log = Some(val()?.into()),
            "--keep" => a.keep = true,
            _ => return Err(format!("unknown flag {flag}; {USAGE}").into()),
        }
    }
    if a.accounts == 0 || a.accounts > 99_999_999 {
        return Err("--accounts: must be 1..=99,999,999".into());
    }
    if a.days < 2 || a.days > 3650 {
        return Err("--days: must be 2..=3650".into());
    }
    if a.clients == 0 || a.ingest_streams == 0 {
        return Err("--clients and --ingest-streams: must be at least 1".into());
    }
    let (given, server) = (a.database_url.as_deref(), a.postgres.as_deref());
    if !given.or(server).is_some_and(|u| u.starts_with("postgres")) {
        return Err(format!(
            "--database-url or --postgres: a PostgreSQL URL is needed (this bench runs on \
             PostgreSQL only); {USAGE}"
        )
        .into());
    }
    Ok(a)
}

/// `target/<profile>/vitals`, next to the folder of this example.
fn default_server_bin() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("vitals"))
        .ok_or("--server-bin: cannot find the vitals binary next to this example")?;
    if !bin.exists() {
        return Err(format!(
            "--server-bin: {} does not exist (cargo build --release -p vitals --bin vitals)",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// The server's peak RSS since the last reset, as "x.xx GiB".
fn peak(server: &ChildServer) -> String {
    memory(&server.pid().to_string())
        .map(|(_, hwm)| format!("{:.2} GiB", gib(hwm)))
        .unwrap_or_else(|| "?".into())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse()?;
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => default_server_bin()?,
    };
    let db = BenchDb::open(
        "scale-bench",
        args.database_url.as_deref(),
        args.postgres.as_deref(),
    )
    .await?;
    let url = db.url().to_string();
    let mut summary: Vec<String> = Vec::new();
    println!(
        "scale bench: {} accounts x {} days, database {}, server {}; load average {}",
        args.accounts,
        args.days,
        vitals_store::redact_url(&url),
        bin.display(),
        loadavg()
    );

    // Nothing runs on its own beside what is measured; long calls are allowed.
    let mut options = ChildOptions {
        cache_entries: args.cache_entries,
        log: args.server_log.clone(),
        env: [
            ("VITALS_REQUEST_TIMEOUT", "7200"),
            ("VITALS_HEAVY_QUEUE_TIMEOUT", "7200"),
            ("VITALS_CONCURRENCY_LIMIT", "4096"),
            ("VITALS_SCORING_INTERVAL", "0"),
            ("VITALS_PROFILES_REASSIGN_INTERVAL", "0"),
            ("VITALS_PROFILES_ASSIGN_PENDING_INTERVAL", "0"),
            ("VITALS_LEARNER_RETRAIN_AFTER_OUTCOMES", "0"),
            ("VITALS_LEARNER_DRIFT_CHECK_INTERVAL_SECS", "0"),
            ("VITALS_LOG_FORMAT", "json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    };
    let start_timeout = Duration::from_secs(600);
    let mut server = ChildServer::start(&bin, &url, &options, start_timeout).await?;
    let pid = server.pid().to_string();
    if !reset_peak(&pid) {
        println!("note: cannot reset the server's peak RSS: each figure is the peak so far");
    }
    let channel = connect(server.addr).await?;

    // The portfolio.
    let store = vitals_store::Store::connect(&url).await?;
    let pool = store.conn().get_postgres_connection_pool().clone();
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(&pool)
        .await?;
    if existing == 0 {
        create_profiles(channel.clone()).await?;
        let spec = ScaleSpec {
            accounts: args.accounts,
            days: args.days,
            last_day: chrono::Utc::now().date_naive() - chrono::Days::new(1),
            seed: args.seed,
            streams: args.streams,
        };
        let load = loadavg();
        let g = generate(&pool, &spec).await?;
        let line = format!(
            "generate: {} accounts ({} churned), {} subscriptions, {} outcomes in {:.1} s; \
             {} usage_daily rows ({} events) in {:.1} s = {:.0} rows/s; ANALYZE {:.1} s; \
             load average before {load}, after {}",
            g.accounts,
            g.churned,
            g.subscriptions,
            g.outcomes,
            secs(g.accounts_time),
            g.usage_rows,
            g.events,
            secs(g.usage_time),
            g.usage_rows as f64 / secs(g.usage_time),
            secs(g.analyze_time),
            loadavg()
        );
        println!("{line}");
        summary.push(line);
    } else {
        println!("reusing the {existing} accounts already in the database");
    }
    println!("bench process: {}", own_memory());

    let load = loadavg();
    let t = Instant::now();
    let r = ProfilesServiceClient::new(channel.clone())
        .reassign_accounts(ppb::ReassignAccountsRequest {
            dry_run: false,
            max_moves: 1,
        })
        .await?
        .into_inner();
    let line = format!(
        "ReassignAccounts: {} evaluated, {} moved in {:.1} s; server peak RSS {}; load \
         average before {load}",
        r.evaluated_count,
        r.moved_count,
        secs(t.elapsed()),
        peak(&server)
    );
    println!("{line}");
    summary.push(line);

    // Recompute.
    let mut scoring = ScoringServiceClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    for run in 1..=args.runs {
        reset_peak(&pid);
        let load = loadavg();
        let t = Instant::now();
        let r = scoring
            .compute_scores(spb::ComputeScoresRequest {
                scope: None,
                as_of: None,
            })
            .await?
            .into_inner();
        let wall = secs(t.elapsed());
        let line = format!(
            "ComputeScores run {run}: {} accounts scored, {} band changes in {wall:.2} s = \
             {:.0} accounts/s; server peak RSS {}; load average before {load}, after {}",
            r.scored_count,
            r.band_change_count,
            f64::from(r.scored_count) / wall,
            peak(&server),
            loadavg()
        );
        println!("{line}");
        summary.push(line);
    }

    // GetScore at 64 clients on active accounts.
    let active: Vec<String> =
        sqlx::query_scalar("SELECT id FROM accounts WHERE status <> 'churned' ORDER BY id")
            .fetch_all(&pool)
            .await?;
    if active.is_empty() {
        return Err("no active account to read".into());
    }
    let active = Arc::new(active);
    reset_peak(&pid);
    let load = loadavg();
    let start = Instant::now();
    let record_from = start + Duration::from_secs(args.warmup);
    let end = record_from + Duration::from_secs(args.seconds);
    let (mut lat, errors) =
        get_score_load(server.addr, &active, args.clients, (record_from, end)).await?;
    let (p50, p90, p99, max) = bench_common::percentiles(&mut lat);
    let line = format!(
        "GetScore: {} clients over {} active accounts, {} calls ok, {errors} errors in {} s = \
         {:.0} calls/s; p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; \
         server peak RSS {}; load average before {load}, after {}",
        args.clients,
        active.len(),
        lat.len(),
        args.seconds,
        lat.len() as f64 / args.seconds as f64,
        peak(&server),
        loadavg()
    );
    println!("{line}");
    summary.push(line);
    drop(lat);

    // Train: at the server's default dataset bound, then (if refused) a raised one.
    if args.train {
        let (line, refused) = train(&server, &pid).await?;
        println!("{line}");
        summary.push(line);
        if refused {
            server.stop().await?;
            options.env.push((
                "VITALS_LEARNER_MAX_DATASET_CELLS".into(),
                args.train_max_cells.to_string(),
            ));
            server = ChildServer::start(&bin, &url, &options, start_timeout).await?;
            let (line, _) = train(&server, &server.pid().to_string()).await?;
            let line = format!(
                "(server restarted with VITALS_LEARNER_MAX_DATASET_CELLS={}) {line}",
                args.train_max_cells
            );
            println!("{line}");
            summary.push(line);
        }
    }

    // Ingest.
    let pid = server.pid().to_string();
    reset_peak(&pid);
    let load = loadavg();
    let t = Instant::now();
    let accepted = ingest(server.addr, &active, &args).await?;
    let wall = secs(t.elapsed());
    let line = format!(
        "IngestEvents: {accepted} of {} events accepted over {} streams in {wall:.2} s = \
         {:.0} events/s; server peak RSS {}; load average before {load}, after {}",
        args.ingest_events,
        args.ingest_streams,
        f64::from(accepted) / wall,
        peak(&server),
        loadavg()
    );
    println!("{line}");
    summary.push(line);

    // Table sizes.
    println!("table sizes (pg_total_relation_size: heap, indexes, TOAST):");
    for (table, bytes, rows) in table_sizes(&pool).await? {
        let per = if rows > 0 { bytes / rows } else { 0 };
        let line = format!(
            "  {table}: {:.1} MiB, {rows} rows, {per} B/row",
            bytes as f64 / f64::from(1u32 << 20)
        );
        println!("{line}");
        summary.push(line);
    }
    println!("bench process: {}", own_memory());

    drop(scoring);
    drop(channel);
    server.stop().await?;
    store.close().await?;
    println!("== summary ({} accounts)", args.accounts);
    for l in summary {
        println!("{l}");
    }
    if args.keep {
        println!("database kept: {}", vitals_store::redact_url(&url));
        Ok(())
    } else {
        db.remove().await
    }
}

/// This process's RSS and peak.
fn own_memory() -> String {
    memory("self")
        .map(|(rss, hwm)| format!("RSS {:.2} GiB, peak {:.2} GiB", gib(rss), gib(hwm)))
        .unwrap_or_else(|| "?".into())
}

/// One Train of every profile and the global model (`horizon_days` 30, other options the
/// defaults); the line to print, and whether the server refused it as too large.
async fn train(server: &ChildServer, pid: &str) -> Result<(String, bool), Error> {
    reset_peak(pid);
    let load = loadavg();
    let t = Instant::now();
    let r = LearnerServiceClient::new(connect(server.addr).await?)
        .max_decoding_message_size(256 << 20)
        .train(lpb::TrainRequest {
            profile: String::new(),
            options: Some(lpb::TrainingOptions {
                horizon_days: Some(30),
                ..Default::default()
            }),
            as_of: None,
        })
        .await;
    let wall = secs(t.elapsed());
    Ok(match r {
        Ok(r) => {
            let r = r.into_inner();
            let w = r.window.unwrap_or_default();
            (
                format!(
                    "Train: {} models ({}), {} skipped ({}); {} observation dates, {} \
                     observations, {} censored in {wall:.1} s; server peak RSS {}; load \
                     average before {load}, after {}",
                    r.models.len(),
                    r.models
                        .iter()
                        .map(|m| format!(
                            "{} v{}: {} accounts, {} churned",
                            if m.profile.is_empty() {
                                "global"
                            } else {
                                &m.profile
                            },
                            m.version,
                            m.account_count,
                            m.churn_count
                        ))
                        .collect::<Vec<_>>()
                        .join("; "),
                    r.skipped.len(),
                    r.skipped
                        .iter()
                        .map(|s| format!("{}: {}", s.profile, s.reason))
                        .collect::<Vec<_>>()
                        .join("; "),
                    w.date_count,
                    w.observation_count,
                    w.censored_count,
                    peak(server),
                    loadavg()
                ),
                false,
            )
        }
        Err(s) if s.code() == tonic::Code::ResourceExhausted => (
            format!(
                "Train: refused after {wall:.1} s (RESOURCE_EXHAUSTED: {}); server peak RSS \
                 {}; load average before {load}",
                s.message(),
                peak(server)
            ),
            true,
        ),
        Err(s) => return Err(format!("Train failed after {wall:.1} s: {s}").into()),
    })
}

/// `--ingest-events` new events of today (for random active accounts, 5 users each) over
/// `--ingest-streams` IngestEvents streams of 1,000-event batches; returns the accepted.
async fn ingest(
    addr: std::net::SocketAddr,
    active: &Arc<Vec<String>>,
    args: &Args,
) -> Result<u32, Error> {
    const BATCH: u32 = 1_000;
    const TYPES: [&str; 3] = ["login", "report", "share"];
    let now = chrono::Utc::now();
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .ok_or("midnight")?
        .and_utc()
        .timestamp();
    // Times between today's midnight and now (at least one second apart from midnight).
    let span = (now.timestamp() - midnight).max(1) as u64;
    let run = now.timestamp_millis();
    let (n, streams) = (args.ingest_events, args.ingest_streams);
    let mut tasks = Vec::new();
    for k in 0..streams {
        let active = active.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = IngestionServiceClient::new(connect(addr).await?);
            let mut rng = Rng::new(7_000 + u64::from(k));
            let batches: Vec<ipb::IngestEventsRequest> = (k * BATCH..n)
                .step_by((BATCH * streams) as usize)
                .enumerate()
                .map(|(seq, start)| ipb::IngestEventsRequest {
                    sequence: seq as u64,
                    events: (start..(start + BATCH).min(n))
                        .map(|i| {
                            let account = &active[rng.below(active.len() as u64) as usize];
                            ipb::Event {
                                event_id: format!("scale-{run}-{i}"),
                                account_id: account.clone(),
                                user_id: format!("{account}-u{}", rng.below(5)),
                                event_type: TYPES[rng.below(3) as usize].into(),
                                occur_time: Some(prost_types::Timestamp {
                                    seconds: midnight + rng.below(span) as i64,
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
            let mut accepted = 0u32;
            while let Some(ack) = acks.message().await? {
                accepted += ack.accepted_count;
            }
            Ok::<u32, Error>(accepted)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}
