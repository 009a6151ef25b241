//! The gradient-boosted challenger end to end in the all-in-one: trained with
//! `options.challenger` on an interaction churn truth (`vitals_test_support::churn`: churn
//! when exactly one of posts and CSM pulse is high), the booster serves, and the scoring
//! service's churn probabilities are the booster's: the same as the learner's PredictChurn
//! for every account, and they rank the churners above the others, which a sum of per-KPI
//! effects cannot.

mod common;

use chrono::{DateTime, Days, NaiveDate, Utc};
use prost_types::Timestamp;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, TransactionTrait};
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::Store;
use vitals_store::entity::{account, usage_daily};
use vitals_test_support::churn::XorPortfolio;
use vitals_test_support::{TestServer, backends};

fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn at(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// Writes the portfolio's accounts (active, no profile) and daily roll-ups.
async fn put(store: &Store, p: &XorPortfolio) {
    let txn = store.conn().begin().await.expect("begin");
    for a in &p.accounts {
        account::Entity::insert(
            account::Model {
                id: a.id.clone(),
                name: a.id.clone(),
                attributes: serde_json::json!({}),
                profile_id: None,
                pinned: false,
                status: "active".into(),
                created_at: p.created_at(),
                updated_at: p.created_at(),
            }
            .into_active_model(),
        )
        .exec(&txn)
        .await
        .expect("insert account");
    }
    let rows = p.usage();
    for chunk in rows.chunks(1000) {
        usage_daily::Entity::insert_many(chunk.iter().map(|u| u.clone().into_active_model()))
            .exec(&txn)
            .await
            .expect("insert roll-ups");
    }
    for row in p.pulse_rows() {
        row.insert(&txn).await.expect("insert pulse");
    }
    txn.commit().await.expect("commit");
}

/// Trains the global model on the XOR portfolio (the challenger asked for or not),
/// scores the portfolio before the first churn, and checks every account's churn
/// probability from scoring against the learner's PredictChurn (equal to the stored 6
/// decimals). Returns the global model and each account's probability, with whether it
/// is one of the "exactly one high" accounts that churn.
async fn scored_as_the_learner_predicts(
    backend: vitals_test_support::Backend,
    challenger: bool,
) -> (lpb::Model, Vec<(bool, f64)>) {
    let url = common::shared_url(backend, "challenger").await;
    let config = vitals::ServeConfig::for_tests(url.clone());
    let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
    let store = Store::connect(&url).await.expect("test's own connection");
    let end = NaiveDate::from_ymd_opt(2025, 9, 1).expect("date");
    let p = XorPortfolio::new(96, 240, end);
    put(&store, &p).await;
    let channel = server.channel().await;
    let mut learner = LearnerServiceClient::new(channel.clone());
    learner
        .record_outcomes(lpb::RecordOutcomesRequest {
            outcomes: p
                .churns()
                .into_iter()
                .map(|(id, d)| lpb::Outcome {
                    account_id: id,
                    kind: lpb::OutcomeKind::Churned as i32,
                    occur_time: ts(at(d)),
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .expect("record");
    let trained = learner
        .train(lpb::TrainRequest {
            options: Some(lpb::TrainingOptions {
                observation_interval_days: Some(14),
                challenger: Some(challenger),
                ..Default::default()
            }),
            as_of: ts(at(end)),
            ..Default::default()
        })
        .await
        .expect("train")
        .into_inner();
    let g = trained
        .models
        .iter()
        .find(|m| m.profile.is_empty())
        .expect("global model")
        .clone();

    // Score the portfolio as it was before the first churn (day 60): every account is
    // a customer, and the learner's PredictChurn sees the same peers.
    let before =
        at(p.start.checked_add_days(Days::new(56)).expect("date")) - chrono::Duration::seconds(1);
    let mut scoring = ScoringServiceClient::new(channel);
    scoring
        .compute_scores(spb::ComputeScoresRequest {
            scope: None,
            as_of: ts(before),
        })
        .await
        .expect("compute");
    let snapshots = scoring
        .list_scores(spb::ListScoresRequest {
            page_size: 1000,
            order_by: "account_id".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .snapshots;
    assert_eq!(snapshots.len(), p.accounts.len());
    let predicted = learner
        .predict_churn(lpb::PredictChurnRequest {
            account_ids: snapshots.iter().map(|s| s.account_id.clone()).collect(),
            as_of: ts(before),
        })
        .await
        .expect("predict")
        .into_inner()
        .predictions;
    let mut out = Vec::new();
    for (s, x) in snapshots.iter().zip(&predicted) {
        assert_eq!(s.model, g.name);
        let c = s.churn_probability.expect("a churn probability");
        // Stored to 6 decimals.
        assert!(
            (c - x.probability).abs() < 1e-6,
            "{backend:?}, challenger {challenger}: {}: scoring {c} learner {}",
            s.account_id,
            x.probability
        );
        let a = p
            .accounts
            .iter()
            .find(|a| a.id == s.account_id)
            .expect("account");
        out.push((a.posts_high != a.pulse_high, c));
    }
    store.close().await.expect("close");
    server.stop().await.expect("stop");
    (g, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_takes_the_churn_probability_from_the_serving_booster() {
    for backend in backends() {
        let (g, scored) = scored_as_the_learner_predicts(backend, true).await;
        let decision = g.challenger.as_ref().expect("decision");
        assert_eq!(decision.served, "gbm", "{decision:?}");
        let mean = |middle: bool| {
            let v: Vec<f64> = scored
                .iter()
                .filter(|s| s.0 == middle)
                .map(|s| s.1)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean(true) > 2.0 * mean(false), "{scored:?}");
    }
}

/// The logistic model's probability in scoring is the learner's too: each coefficient
/// on its own column (percentile, log value or value) with the column's missing value
/// (before, scoring read every column as the KPI's percentile, so a `<kpi>:log`
/// coefficient counted as 0.5 x coefficient).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_takes_the_churn_probability_of_the_logistic_model_as_the_learner_does() {
    for backend in backends() {
        let (g, _) = scored_as_the_learner_predicts(backend, false).await;
        assert!(g.challenger.is_none());
        assert!(
            g.coefficients.iter().any(|c| c.kpi.contains(':')),
            "the model uses log values or values: {:?}",
            g.coefficients.iter().map(|c| &c.kpi).collect::<Vec<_>>()
        );
    }
}
