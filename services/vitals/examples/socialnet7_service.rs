//! The learner service end to end on the sample data: an in-process server (ingestion +
//! learner over a fresh SQLite file) is loaded with the sample through the loader (events,
//! subscriptions, and the churn dates as outcomes through `RecordOutcomes`), then `Train`
//! and `Evaluate` run over gRPC with the book's one-month horizon, timed.
//!
//! Run: `cargo run --release -p vitals --example socialnet7_service [DIR]`
//! (DIR defaults to the repository's `tests/data/socialnet7-small`; the full set is
//! `../shared/data/socialnet7` next to the repository). Figures: docs/bench-learner.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use vitals_learner::LearnerArgs;
use vitals_proto::learner::v1 as pb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_server::{GrpcServer, ServerConfig};
use vitals_store::Store;
use vitals_test_support::TestServer;

fn fmt_eval(what: &str, e: &pb::Evaluation) -> String {
    let m = e.metrics.unwrap_or_default();
    format!(
        "{what}: in-sample AUC {:.3} lift {:.2} ({} observations, {} churned); backtest AUC {:.3} lift {:.2} [{}]",
        m.auc,
        m.top_decile_lift,
        m.observation_count,
        m.positive_count,
        e.backtest_auc,
        e.backtest_top_decile_lift,
        e.backtest_folds
            .iter()
            .map(|f| {
                let t = f.test_metrics.unwrap_or_default();
                format!(
                    "train {} / test {} ({} churned) AUC {:.3} lift {:.2}",
                    f.train_count, t.observation_count, t.positive_count, t.auc, t.top_decile_lift
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(vitals_test_support::sample_small);
    if !dir.join("event.csv.gz").is_file() {
        eprintln!(
            "{} has no event.csv.gz: pass the folder of the sample data (see \
             ../shared/data/README.md next to the repository)",
            dir.display()
        );
        return ExitCode::from(2);
    }
    match run(dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::temp_dir().join(format!("vitals-learner-bench-{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let mut config = ServerConfig::for_tests(url);
    config.request_timeout = Duration::from_secs(3600);
    let args = LearnerArgs {
        retrain_after_outcomes: 0,
        ..LearnerArgs::default()
    };
    let (s, c) = (store.clone(), config.clone());
    let server = TestServer::start(move |listener, shutdown| async move {
        let mut grpc = GrpcServer::new();
        vitals_ingestion::register(&mut grpc, s.clone(), &Default::default(), &c)?;
        vitals_learner::register(&mut grpc, s, &args, &c)?;
        grpc.serve(&c, listener, shutdown).await?;
        Ok(())
    })
    .await;

    let t = Instant::now();
    let summary = vitals::loader::load(&vitals::loader::LoadArgs::new(&dir, server.url())).await?;
    println!("{}", summary.report());
    println!("load: {:.1} s", t.elapsed().as_secs_f64());

    let mut client =
        LearnerServiceClient::new(server.channel().await).max_decoding_message_size(64 << 20);
    // The book's horizon (one month) and observation spacing (about a month); as of the
    // end of the simulation.
    let end = NaiveDate::from_ymd_opt(2020, 6, 1).ok_or("date")?;
    let options = pb::TrainingOptions {
        horizon_days: Some(30),
        observation_interval_days: Some(28),
        ..Default::default()
    };
    let t = Instant::now();
    let trained = client
        .train(pb::TrainRequest {
            profile: String::new(),
            options: Some(options),
            as_of: Some(prost_types::Timestamp {
                seconds: end
                    .and_hms_opt(0, 0, 0)
                    .ok_or("time")?
                    .and_utc()
                    .timestamp(),
                nanos: 0,
            }),
        })
        .await?
        .into_inner();
    println!("Train: {:.1} s", t.elapsed().as_secs_f64());
    for m in &trained.models {
        let tm = m.training_metrics.unwrap_or_default();
        let mut top: Vec<&pb::KpiWeight> = m.kpi_weights.iter().collect();
        top.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        println!(
            "{} ({}): {} accounts, {} churn outcomes, shrinkage {:.2}, lambda {}, in-sample AUC {:.3} lift {:.2} ({} obs, {} churned); top weights: {}; contradicted: {}",
            m.name,
            if m.profile.is_empty() {
                "global"
            } else {
                &m.profile
            },
            m.account_count,
            m.churn_count,
            m.shrinkage,
            m.l2_penalty,
            tm.auc,
            tm.top_decile_lift,
            tm.observation_count,
            tm.positive_count,
            top.iter()
                .take(6)
                .map(|w| format!("{} {:.3}", w.kpi, w.weight))
                .collect::<Vec<_>>()
                .join(", "),
            m.contradicted_kpis.join(", ")
        );
    }
    for s in &trained.skipped {
        println!("skipped {}: {}", s.profile, s.reason);
    }

    let t = Instant::now();
    let e = client
        .evaluate(pb::EvaluateRequest {
            profile: String::new(),
            options: Some(options),
            backtest_folds: 2,
            as_of: None,
        })
        .await?
        .into_inner();
    println!("Evaluate ({}): {:.1} s", e.model, t.elapsed().as_secs_f64());
    if let Some(c) = &e.churn_probability {
        println!("{}", fmt_eval("churn probability", c));
    }
    if let Some(h) = &e.health_score {
        println!("{}", fmt_eval("health score (learned weights)", h));
    }
    let t = Instant::now();
    let w = client
        .get_weights(pb::GetWeightsRequest::default())
        .await?
        .into_inner();
    println!(
        "GetWeights: {} KPI weights from {} in {:.1} ms",
        w.kpi_weights.len(),
        w.model,
        t.elapsed().as_secs_f64() * 1e3
    );

    server.stop().await?;
    store.close().await?;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    Ok(())
}
