//! Benchmark: server-side render time of each web UI page (`/ui/...`) over a portfolio
//! of scored accounts.
//!
//! ```sh
//! cargo run --release -p vitals-scoring --example ui_bench                 # 100,000 accounts, SQLite
//! cargo run --release -p vitals-scoring --example ui_bench -- --accounts 20000 --runs 5
//! cargo run --release -p vitals-scoring --example ui_bench -- --database-url postgres://postgres@127.0.0.1:5432/<empty database>
//! ```
//!
//! Fills a database (a temporary SQLite file unless `--database-url` is given; an empty
//! one is filled, one that holds accounts is reused) straight through the store: three
//! profiles, `--accounts` accounts (default 100,000) with `--runs` scoring runs each
//! (default 3, a day apart: every account has that many snapshots with 15 drivers, and
//! every run its per-profile means), and one model per profile. Then each page is
//! requested through the UI's axum router in this process (no network, auth off):
//! `--iterations` times (default 20) after 3 warm-up requests; prints the median, p95
//! and max time to the whole body, the process's CPU time per request (user + system,
//! every thread: what a page costs whatever else the machine runs), and the body's size. The figures go to
//! docs/benchmarks.md.

use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use chrono::Utc;
use http::Request;
use tower::ServiceExt;
use vitals_scoring::{ScoringArgs, ScoringService};
use vitals_server::HttpAuth;
use vitals_store::Store;
use vitals_store::ingestion::{AccountUpsert, upsert_accounts};
use vitals_store::learner::{NewModel, insert_model};
use vitals_store::profiles::{ProfileRecord, StoredWeights, insert_profile};
use vitals_store::scoring::{NewSnapshot, PROFILE_SCORECARD, RunRecord, write_run};
use vitals_store::snapshot::{StoredDriver, encode_drivers};

type Error = Box<dyn std::error::Error + Send + Sync>;

const PROFILES: [&str; 3] = ["starter", "growth", "enterprise"];
const KPIS: [&str; 15] = [
    "active_days",
    "logins",
    "reports",
    "shares",
    "active_users",
    "seat_use",
    "tickets",
    "ticket_age",
    "nps",
    "pulse",
    "mrr_change",
    "days_to_renewal",
    "feature_breadth",
    "usage_trend",
    "last_seen_days",
];

struct Args {
    accounts: u32,
    runs: u32,
    iterations: usize,
    database_url: Option<String>,
}

fn parse() -> Result<Args, Error> {
    let mut a = Args {
        accounts: 100_000,
        runs: 3,
        iterations: 20,
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--accounts" => a.accounts = v()?.parse()?,
            "--runs" => a.runs = v()?.parse()?,
            "--iterations" => a.iterations = v()?.parse()?,
            "--database-url" => a.database_url = Some(v()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn profile(id: &str, default: bool) -> ProfileRecord {
    let now = Utc::now();
    ProfileRecord {
        id: id.into(),
        display_name: format!("{id} accounts"),
        description: String::new(),
        weights: StoredWeights::default(),
        rule: String::new(),
        priority: 0,
        min_population: 10,
        weights_mode: "manual".into(),
        kpis: Vec::new(),
        is_default: default,
        yellow_from: None,
        green_from: None,
        window_days: None,
        trend_weight: None,
        created_at: now,
        updated_at: now,
    }
}

fn model_json(rng: &mut Rng) -> (serde_json::Value, serde_json::Value) {
    let bins: Vec<serde_json::Value> = (0..10)
        .map(|k| {
            let p = (f64::from(k) + 0.5) / 10.0;
            serde_json::json!({"min_predicted": p - 0.05, "max_predicted": p + 0.05, "count": 400,
                "mean_predicted": p, "observed_rate": (p + (rng.next() - 0.5) * 0.1).clamp(0.0, 1.0)})
        })
        .collect();
    let eval = |auc: f64, cal: Vec<serde_json::Value>| {
        serde_json::json!({"auc": auc, "top_decile_lift": 3.1, "log_loss": 0.41, "brier_score": 0.12,
            "observations": 4000, "positives": 600, "calibration": cal})
    };
    let fold = |s: &str, e: &str| {
        serde_json::json!({"train_end": s, "test_start": s, "test_end": e, "train_count": 2000,
            "metrics": eval(0.71, vec![])})
    };
    let backtest = serde_json::json!({"folds": [fold("2026-09-01", "2026-10-01"), fold("2026-10-01", "2026-11-01")],
        "mean_auc": 0.71, "mean_top_decile_lift": 3.0, "error": null});
    let metrics = serde_json::json!({
        "options": {"horizon_days": 90, "observation_interval_days": 7, "prior_strength": 20.0, "l2_penalty": 0.01},
        "as_of": "2026-12-01", "training": eval(0.74, bins), "health": eval(0.69, vec![]),
        "churn_backtest": backtest.clone(), "health_backtest": backtest, "account_count": 4000,
        "churn_count": 600, "shrinkage": 0.97, "contradicted": ["tickets"],
        "categories_without_signal": [], "lambda_fallback_reason": null, "censored": 0});
    let weights: Vec<serde_json::Value> = KPIS
        .iter()
        .map(|k| {
            serde_json::json!({"kpi": k, "category": "usage", "weight": 1.0 / 15.0,
            "learned": rng.next() / 7.5, "prior": 1.0 / 15.0})
        })
        .collect();
    (metrics, serde_json::Value::Array(weights))
}

async fn fill(store: &Store, args: &Args) -> Result<(), Error> {
    let t = Instant::now();
    for (i, p) in PROFILES.iter().enumerate() {
        insert_profile(store, &profile(p, i == 0)).await?;
    }
    let ids: Vec<String> = (0..args.accounts).map(|i| format!("acc{i:07}")).collect();
    for chunk in ids.chunks(5_000) {
        let rows: Vec<AccountUpsert> = chunk
            .iter()
            .map(|id| AccountUpsert {
                id: id.clone(),
                name: Some(format!("Account {id}")),
                attributes: Default::default(),
                created_at: None,
                status: None,
                parent: None,
            })
            .collect();
        upsert_accounts(store, &rows, false)
            .await?
            .map_err(|e| format!("{e:?}"))?;
    }
    let mut rng = Rng(7);
    let now = Utc::now();
    for r in 0..args.runs {
        let as_of = now - chrono::Duration::days(i64::from(args.runs - 1 - r));
        let rows: Vec<NewSnapshot> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let value = (rng.next() * 10.0 * 1e6).round() / 1e6;
                let drivers: Vec<StoredDriver> = KPIS
                    .iter()
                    .map(|k| {
                        let c = (rng.next() - 0.5) * 0.8;
                        StoredDriver(k.to_string(), 1, rng.next() * 100.0, Some(rng.next()), rng.next() * 10.0, 1.0 / 15.0, c)
                    })
                    .collect();
                let band = if value < 3.0 { "red" } else if value < 7.0 { "yellow" } else { "green" };
                NewSnapshot {
                    account_id: id.clone(),
                    scorecard_id: PROFILE_SCORECARD.into(),
                    profile_id: PROFILES[i % 3].into(),
                    as_of,
                    value,
                    band: band.into(),
                    global_value: Some(value),
                    global_band: band.into(),
                    sub_scores: format!(
                        r#"{{"categories":[{{"c":1,"v":{value},"w":0.6,"p":9,"t":10}},{{"c":2,"v":5.0,"w":0.4,"p":4,"t":5}}],"global_band":"{band}","has_momentum":true,"model":"models/{}","peer_count":33333}}"#,
                        i % 3 + 1
                    ),
                    momentum: 0.0,
                    coverage_present: 13,
                    coverage_total: 15,
                    drivers: encode_drivers(&drivers),
                    churn_probability: Some(((10.0 - value) / 10.0 * 0.8).clamp(0.0, 1.0)),
                    weights_source: "learned".into(),
                    population_fallback: false,
                }
            })
            .collect();
        let profiles: Vec<serde_json::Value> = PROFILES
            .iter()
            .map(|p| {
                let mine: Vec<&NewSnapshot> = rows.iter().filter(|s| s.profile_id == *p).collect();
                let n = mine.len().max(1) as f64;
                serde_json::json!({"profile": p, "scored": mine.len(), "weights_source": "learned",
                    "model": "", "population_fallback": false,
                    "mean_score": mine.iter().map(|s| s.value).sum::<f64>() / n,
                    "mean_coverage": 13.0 / 15.0,
                    "mean_churn_probability": mine.iter().filter_map(|s| s.churn_probability).sum::<f64>() / n})
            })
            .collect();
        let run = RunRecord {
            scope: "all".into(),
            started_at: as_of,
            accounts_scored: i64::from(args.accounts),
            details: serde_json::json!({"as_of": as_of.to_rfc3339(), "snapshots": rows.len(), "profiles": profiles}),
            events: Vec::new(),
        };
        write_run(store, &run, &rows).await?;
    }
    for p in PROFILES {
        let (metrics, kpi_weights) = model_json(&mut rng);
        insert_model(
            store,
            NewModel {
                profile_id: p.into(),
                trained_at: now,
                n_observations: 4000,
                n_churned: 600,
                kpi_weights,
                category_weights: serde_json::json!({}),
                coefficients: serde_json::json!({}),
                metrics,
            },
        )
        .await?;
    }
    println!(
        "filled: {} accounts x {} runs ({} snapshots) in {:.1} s",
        args.accounts,
        args.runs,
        u64::from(args.accounts) * u64::from(args.runs),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// CPU time of this process so far (user + system, every thread), from /proc/self/stat
/// (clock ticks of 10 ms): `None` where there is no /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): utime is the 14th field,
    // stime the 15th, i.e. the 12th and 13th after the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

async fn time_page(
    router: &axum::Router,
    path: &str,
    iterations: usize,
) -> Result<(Vec<Duration>, usize), Error> {
    let mut times = Vec::with_capacity(iterations);
    let mut size = 0;
    for i in 0..iterations + 3 {
        let req = Request::get(path).body(Body::empty())?;
        let t = Instant::now();
        let resp = router.clone().oneshot(req).await?;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
        let took = t.elapsed();
        if !status.is_success() {
            return Err(format!("{path}: {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        size = body.len();
        if i >= 3 {
            times.push(took);
        }
    }
    times.sort();
    Ok((times, size))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse()?;
    let dir = std::env::temp_dir().join(format!("vitals-ui-bench-{}", std::process::id()));
    let url = match &args.database_url {
        Some(u) => u.clone(),
        None => {
            std::fs::create_dir_all(&dir)?;
            format!("sqlite://{}?mode=rwc", dir.join("bench.db").display())
        }
    };
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    if vitals_store::profiles::load_profiles(&store)
        .await?
        .is_empty()
    {
        fill(&store, &args).await?;
    } else {
        println!(
            "reusing the data already in {}",
            vitals_store::redact_url(&url)
        );
    }
    let service = ScoringService::new(store.clone(), &ScoringArgs::default(), None);
    let router = vitals_scoring::ui::router(&service, false).layer(Extension(HttpAuth(None)));
    let worst = vitals_store::scoring::overview::at_risk(&store, &Default::default(), 1)
        .await?
        .pop()
        .ok_or("no scored account")?
        .account_id;
    let pages = [
        "/ui/".to_owned(),
        "/ui/?profile=growth".to_owned(),
        "/ui/risk".to_owned(),
        "/ui/risk?band=red&min_churn=50&limit=200".to_owned(),
        format!("/ui/accounts/{worst}"),
        "/ui/model".to_owned(),
    ];
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>12} {:>9}",
        "page", "median", "p95", "max", "cpu/request", "bytes"
    );
    for p in &pages {
        let cpu0 = cpu_time();
        let (t, size) = time_page(&router, p, args.iterations).await?;
        // CPU per request (the 3 warm-up requests included): what the page costs the
        // server, whatever else the machine runs.
        let cpu = cpu0
            .zip(cpu_time())
            .map(|(a, b)| (b - a) / (args.iterations as u32 + 3));
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let p95 = t[(t.len() * 95 / 100).min(t.len() - 1)];
        println!(
            "{p:<42} {:>9} {:>9} {:>9} {:>12} {size:>9}",
            ms(t[t.len() / 2]),
            ms(p95),
            ms(t[t.len() - 1]),
            cpu.map_or_else(|| "-".to_owned(), ms)
        );
    }
    store.close().await?;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
