//! The gradient-boosted challenger through the learner's gRPC API (`options.challenger`):
//! on an interaction churn truth (an account churns when exactly one of its posts and its
//! CSM pulse is high, see `vitals_test_support::churn`) the booster wins the time-ordered
//! CV and serves the churn probability; on the linear planted signal of `common::Portfolio` the logistic model
//! keeps serving, and the decision with its reason is readable from the Model.

mod common;

use chrono::{Days, NaiveDate};
use common::{Env, Portfolio, at, churn, global, quiet_args, ts};
use vitals_proto::learner::v1 as pb;
use vitals_test_support::backends;
use vitals_test_support::churn::XorPortfolio;

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 9, 1).expect("date")
}

/// Fortnightly observations (enough churned ones in each CV fold of a small portfolio),
/// with or without the challenger.
fn options(challenger: Option<bool>) -> pb::TrainingOptions {
    pb::TrainingOptions {
        prior_strength: Some(10.0),
        observation_interval_days: Some(14),
        challenger,
        ..Default::default()
    }
}

async fn get_model(env: &Env, name: &str) -> pb::Model {
    env.client
        .clone()
        .get_model(pb::GetModelRequest { name: name.into() })
        .await
        .expect("get model")
        .into_inner()
        .model
        .expect("model")
}

async fn weights(env: &Env) -> pb::GetWeightsResponse {
    env.client
        .clone()
        .get_weights(pb::GetWeightsRequest::default())
        .await
        .expect("get weights")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_churn_is_served_by_the_booster() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = XorPortfolio::new(96, 240, end());
        env.put_xor_portfolio(&p).await;
        let outcomes = p.churns().iter().map(|(id, d)| churn(id, *d)).collect();
        assert_eq!(env.record(outcomes).await.recorded_count, 48);

        let trained = env.train(end(), options(Some(true))).await.expect("train");
        let g = global(&trained);
        let c = g.challenger.as_ref().expect("the decision is on the model");
        assert_eq!(c.served, "gbm", "{c:?}");
        assert_eq!(c.logistic_fold_aucs.len(), 2, "{c:?}");
        assert_eq!(c.gbm_fold_aucs.len(), 2, "{c:?}");
        let (l, b) = (
            c.logistic_mean_auc.expect("logistic mean"),
            c.gbm_mean_auc.expect("gbm mean"),
        );
        assert!(b >= l + c.min_mean_gain, "{c:?}");
        assert!(c.reason.contains("beats"), "{}", c.reason);
        assert_eq!((c.min_mean_gain, c.max_fold_loss), (0.01, 0.01));
        assert!(c.trees > 0 && c.seconds > 0.0, "{c:?}");
        assert_eq!(g.options.as_ref().and_then(|o| o.challenger), Some(true));
        // The in-sample metrics are the booster's: it ranks the interaction; the logistic
        // model's coefficients stay (for the KPI weights) next to it.
        let t = g.training_metrics.as_ref().expect("training metrics");
        assert!(t.auc > 0.9, "{t:?}");
        assert!(!g.coefficients.is_empty() && !g.kpi_weights.is_empty());
        let cal = g.calibration.as_ref().expect("calibration");
        assert!(
            cal.observation_count > 0,
            "the booster's, on its out-of-fold scores"
        );
        // GetModel shows the same decision; GetWeights hands out the booster.
        let stored = get_model(&env, &g.name).await;
        assert_eq!(stored.challenger.as_ref(), Some(c));
        let w = weights(&env).await;
        assert_eq!(w.model, g.name);
        assert!(w.booster_json.contains("feature_names"), "booster JSON");
        assert!(!w.coefficients.is_empty());

        // PredictChurn with the booster, before any churn (day 60): the churners (exactly
        // one of posts and pulse high) are far riskier than the others, which a sum of
        // per-KPI effects could not say.
        let before = p.start.checked_add_days(Days::new(55)).expect("date");
        let ids: Vec<String> = p.accounts.iter().map(|a| a.id.clone()).collect();
        let predicted = env
            .client
            .clone()
            .predict_churn(pb::PredictChurnRequest {
                account_ids: ids,
                as_of: Some(ts(at(before))),
            })
            .await
            .expect("predict")
            .into_inner()
            .predictions;
        let mean = |mid: bool| {
            let v: Vec<f64> = p
                .accounts
                .iter()
                .zip(&predicted)
                .filter(|(a, _)| (a.posts_high != a.pulse_high) == mid)
                .map(|(_, x)| x.probability)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(
            mean(true) > 2.0 * mean(false),
            "middle {} others {}",
            mean(true),
            mean(false)
        );
        assert!(predicted.iter().all(|x| x.model == g.name));

        // Evaluate scores the serving booster: in-sample AUC far above a monotone model's.
        let e = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest {
                as_of: Some(ts(at(end()))),
                ..Default::default()
            })
            .await
            .expect("evaluate")
            .into_inner();
        let churn = e
            .churn_probability
            .expect("churn")
            .metrics
            .expect("metrics");
        assert!((churn.auc - t.auc).abs() < 1e-9, "{churn:?} vs {t:?}");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_churn_keeps_the_logistic_model_serving_and_says_why() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = Portfolio::new(48, 240, end());
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;

        // Without the option (the server's default is off): no decision, as before.
        let plain = env.train(end(), options(None)).await.expect("train");
        let g = global(&plain);
        assert_eq!(g.challenger, None);
        assert_eq!(g.options.as_ref().and_then(|o| o.challenger), Some(false));

        let trained = env.train(end(), options(Some(true))).await.expect("train");
        let g = global(&trained);
        let c = g.challenger.as_ref().expect("the decision is on the model");
        assert_eq!(c.served, "logistic", "{c:?}");
        assert_eq!(c.trees, 0);
        assert_eq!(c.logistic_fold_aucs.len(), 2, "{c:?}");
        assert_eq!(c.gbm_fold_aucs.len(), 2, "{c:?}");
        assert!(
            c.reason.contains("does not beat") || c.reason.contains("worse on fold"),
            "{}",
            c.reason
        );
        let stored = get_model(&env, &g.name).await;
        assert_eq!(stored.challenger.as_ref(), Some(c));
        // The same probabilities as the logistic model trained without the option (same
        // data, same CV): the booster is not stored, GetWeights carries none.
        let first = global(&plain);
        let (a, b) = (
            first.training_metrics.as_ref().expect("metrics"),
            g.training_metrics.as_ref().expect("metrics"),
        );
        assert!((a.log_loss - b.log_loss).abs() < 1e-12, "{a:?} vs {b:?}");
        let w = weights(&env).await;
        assert_eq!(w.model, g.name);
        assert_eq!(w.booster_json, "");
        env.stop().await;
    }
}
