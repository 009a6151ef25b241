//! Benchmark: end-to-end recompute of a large portfolio (store read -> snapshots written)
//! through `ScoringService.ComputeScores`, on SQLite or PostgreSQL.
//!
//! ```sh
//! cargo run --release -p vitals --example recompute_bench                 # SQLite, 100,000 accounts
//! cargo run --release -p vitals --example recompute_bench -- \
//!     --postgres postgres://postgres@127.0.0.1:5432                       # a fresh PostgreSQL database
//! ```
//!
//! Setup (not timed as the recompute): the all-in-one server starts in this process on
//! the database (auth off, loopback); three plan profiles are created over gRPC; the
//! synthetic portfolio of `bench_common` is written straight into the store tables;
//! ReassignAccounts assigns it. Then ComputeScores (all accounts, as of now) runs `--runs`
//! times; the first run writes every snapshot, the next ones also compare with the
//! previous scores (band changes). Figures go to docs/bench-scoring-service.md.

mod bench_common;

/// The allocator of the `vitals` binary (mimalloc), so the server measured here runs as
/// it does in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use bench_common::{BenchDb, Error, Server, create_profiles, generate, loadavg};
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;

struct Args {
    accounts: u32,
    days: u32,
    runs: u32,
    database_url: Option<String>,
    postgres: Option<String>,
    keep: bool,
}

fn parse() -> Result<Args, Error> {
    let mut a = Args {
        accounts: 100_000,
        days: 90,
        runs: 2,
        database_url: None,
        postgres: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--accounts" => a.accounts = val()?.parse()?,
            "--days" => a.days = val()?.parse()?,
            "--runs" => a.runs = val()?.parse()?,
            "--database-url" => a.database_url = Some(val()?),
            "--postgres" => a.postgres = Some(val()?),
            "--keep" => a.keep = true,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --accounts N --days N --runs N \
                     --database-url URL | --postgres SERVER_URL, --keep"
                )
                .into());
            }
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse()?;
    // `VITALS_BENCH_LOG=1`: the server's log on stderr (RUST_LOG filters it), e.g. the
    // phase split (`load_ms`, `compute_ms`, `write_ms`) of each "scoring run committed".
    let _telemetry = if std::env::var_os("VITALS_BENCH_LOG").is_some() {
        Some(vitals_server::telemetry::init(
            "recompute-bench",
            vitals_server::LogFormat::Pretty,
        )?)
    } else {
        None
    };
    let db = BenchDb::open(
        "recompute-bench",
        args.database_url.as_deref(),
        args.postgres.as_deref(),
    )
    .await?;
    let url = db.url().to_string();
    println!(
        "recompute bench: {} accounts x {} days of usage, database {}",
        args.accounts,
        args.days,
        vitals_store::redact_url(&url)
    );
    println!("load average at start: {}", loadavg());

    let server = Server::start(&url).await?;
    let channel = server.channel().await?;
    create_profiles(channel.clone()).await?;

    let store = vitals_store::Store::connect(&url).await?;
    let existing: u64 = {
        use vitals_store::sea_orm::{EntityTrait, PaginatorTrait};
        vitals_store::entity::account::Entity::find()
            .count(store.conn())
            .await?
    };
    if existing == 0 {
        let g = generate(
            &store,
            args.accounts,
            args.days,
            chrono::Utc::now().date_naive(),
        )
        .await?;
        println!(
            "generated {} accounts, {} subscriptions, {} usage_daily rows in {:.1} s \
             (direct inserts)",
            g.accounts,
            g.subscriptions,
            g.usage_rows,
            g.elapsed.as_secs_f64()
        );
    } else {
        println!("reusing the {existing} accounts already in the database");
    }
    store.close().await?;

    let t = Instant::now();
    let r = ProfilesServiceClient::new(channel.clone())
        .reassign_accounts(ppb::ReassignAccountsRequest {
            dry_run: false,
            max_moves: 1,
        })
        .await?
        .into_inner();
    println!(
        "ReassignAccounts: {} evaluated, {} moved in {:.1} s",
        r.evaluated_count,
        r.moved_count,
        t.elapsed().as_secs_f64()
    );

    let mut scoring = ScoringServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    for run in 1..=args.runs {
        let load = loadavg();
        let t = Instant::now();
        let r = scoring
            .compute_scores(spb::ComputeScoresRequest {
                scope: None,
                as_of: None,
            })
            .await?
            .into_inner();
        let wall = t.elapsed().as_secs_f64();
        let server_s = r
            .duration
            .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
            .unwrap_or_default();
        println!(
            "ComputeScores run {run}: {} accounts scored, {} snapshots, {} band changes: \
             {wall:.2} s wall ({server_s:.2} s server-side), {:.0} accounts/s; \
             load average before {load}",
            r.scored_count,
            r.snapshot_count,
            r.band_change_count,
            f64::from(r.scored_count) / wall
        );
    }
    println!("load average at end: {}", loadavg());
    server.stop().await?;
    if args.keep {
        println!("database kept: {url}");
        Ok(())
    } else {
        db.remove().await
    }
}
