//! Recompute probe: fills a fresh store with `--accounts` synthetic accounts (daily
//! roll-ups of two event types over 112 days, a subscription each), then times
//! `ScoringService::compute(Scope::All)` end to end (store read -> snapshots written),
//! twice (the second run also replaces `score_latest` rows and detects band changes).
//! The run's phases (load, compute, write) are logged at INFO.
//!
//! ```sh
//! cargo run --release -p vitals-scoring --example recompute_probe -- --accounts 100000
//! cargo run --release -p vitals-scoring --example recompute_probe -- --accounts 100000 \
//!     --database-url postgres://postgres@127.0.0.1:5432/probe   # an empty database
//! ```

use std::time::Instant;

use chrono::{Days, Utc};
use clap::Parser;
use vitals_scoring::{Scope, ScoringArgs, ScoringService};
use vitals_store::Store;
use vitals_store::sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

#[derive(Debug, Parser)]
struct Args {
    /// Accounts to create.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Database (default: a fresh SQLite file in the temporary folder).
    #[arg(long)]
    database_url: Option<String>,
    /// Score the accounts already in the database (e.g. one kept by `recompute_bench
    /// --keep`) instead of filling it.
    #[arg(long)]
    reuse: bool,
    /// Scoring runs.
    #[arg(long, default_value_t = 2)]
    runs: u32,
}

fn placeholders(backend: DbBackend, rows: usize, cols: usize) -> String {
    let mut n = 0;
    let mut out = String::new();
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push(',');
            }
            if backend == DbBackend::Postgres {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push('?');
            }
        }
        out.push(')');
    }
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber_init();
    let args = Args::parse();
    let url = args.database_url.clone().unwrap_or_else(|| {
        let p = std::env::temp_dir().join(format!("vitals-probe-{}.db", std::process::id()));
        format!("sqlite://{}?mode=rwc", p.display())
    });
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    if !args.reuse {
        vitals_scorecard::defaults::ensure_default_profile(&store).await?;
    }
    let conn = store.conn();
    let backend = conn.get_database_backend();
    let now = Utc::now();
    let t = Instant::now();
    if args.reuse {
        println!("reusing the accounts of the database");
    } else {
        fill(conn, backend, args.accounts, now).await?;
        println!(
            "filled {} accounts in {:.1} s",
            args.accounts,
            t.elapsed().as_secs_f64()
        );
    }

    let service = ScoringService::new(store.clone(), &ScoringArgs::default(), None);
    for run in 1..=args.runs {
        let t = Instant::now();
        let r = service.compute(Scope::All, None).await?;
        println!(
            "run {run}: {} accounts, {} snapshots, {} band changes in {:.2} s (load average {})",
            r.scored,
            r.snapshots,
            r.band_changes,
            t.elapsed().as_secs_f64(),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
    }
    store.close().await?;
    Ok(())
}

/// Writes the synthetic accounts and roll-ups.
async fn fill(
    conn: &vitals_store::sea_orm::DatabaseConnection,
    backend: DbBackend,
    accounts: usize,
    now: chrono::DateTime<Utc>,
) -> Result<(), Box<dyn std::error::Error>> {
    let today = now.date_naive();
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(1000) {
        let sql = format!(
            "INSERT INTO accounts (id, name, attributes, profile_id, pinned, status, created_at, updated_at) VALUES {}",
            placeholders(backend, chunk.len(), 8)
        );
        let mut v: Vec<Value> = Vec::new();
        for i in chunk {
            v.extend([
                Value::from(format!("acc{i:07}")),
                Value::from(format!("Account {i}")),
                Value::from(serde_json::json!({"seats": {"number": 10 + i % 40}})),
                Value::from("default"),
                Value::from(false),
                Value::from("active"),
                Value::from(now - chrono::Duration::days(400)),
                Value::from(now),
            ]);
        }
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, v))
            .await?;
    }
    // Roll-ups: account i is active on days where (d + i) % (2 + i % 5) == 0.
    let mut rows: Vec<(usize, u64, &str, i64)> = Vec::new();
    let flush = |rows: Vec<(usize, u64, &'static str, i64)>| {
        let sql = format!(
            "INSERT INTO usage_daily (account_id, day, event_type, count, distinct_users, value_sum) VALUES {}",
            placeholders(backend, rows.len(), 6)
        );
        let mut v: Vec<Value> = Vec::new();
        for (i, d, ty, c) in rows {
            v.extend([
                Value::from(format!("acc{i:07}")),
                Value::from(today - Days::new(d)),
                Value::from(ty),
                Value::from(c),
                Value::from((c / 3).max(1)),
                Value::from(c as f64 * 1.5),
            ]);
        }
        Statement::from_sql_and_values(backend, sql, v)
    };
    for i in 0..accounts {
        for d in 0..112u64 {
            if (d as usize + i).is_multiple_of(2 + i % 5) {
                rows.push((i, d, "login", 1 + (i % 13) as i64));
                if i % 3 == 0 {
                    rows.push((i, d, "report", 1 + (i % 7) as i64));
                }
            }
            if rows.len() >= 900 {
                conn.execute_raw(flush(std::mem::take(&mut rows))).await?;
            }
        }
    }
    if !rows.is_empty() {
        conn.execute_raw(flush(rows)).await?;
    }
    Ok(())
}

fn tracing_subscriber_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .try_init();
}
