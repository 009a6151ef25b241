//! Training, weights, models, evaluation and prediction over real gRPC, on a small
//! portfolio with a planted signal (see `common::Portfolio`): churners post little and
//! like a lot, retained accounts the reverse, with the same total activity.

mod common;

use chrono::{Days, NaiveDate, Utc};
use common::{
    CONTRADICTING_KPI, Env, Portfolio, SIGNAL_KPI, at, global, quiet_args, ts, weight_of,
};
use tonic::Code;
use vitals_learner::LearnerArgs;
use vitals_proto::common::v1::{ScoreCategory, WeightsSource};
use vitals_proto::learner::v1 as pb;
use vitals_store::entity::health_profile;
use vitals_store::sea_orm::{EntityTrait, IntoActiveModel};
use vitals_test_support::backends;
use vitals_test_support::monthly_subscription;

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 9, 1).expect("date")
}

fn options(prior_strength: f64) -> pb::TrainingOptions {
    pb::TrainingOptions {
        prior_strength: Some(prior_strength),
        ..Default::default()
    }
}

async fn put_profile(env: &Env, id: &str) {
    let now = Utc::now();
    health_profile::Entity::insert(
        health_profile::Model {
            id: id.into(),
            display_name: id.into(),
            description: String::new(),
            weights: serde_json::json!({}),
            rule: String::new(),
            priority: 1,
            min_population: 1,
            weights_mode: "learned".into(),
            kpis: serde_json::json!([]),
            is_default: false,
            created_at: now,
            updated_at: now,
        }
        .into_active_model(),
    )
    .exec(env.store.conn())
    .await
    .expect("insert profile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_weights_are_uniform_and_the_rest_says_why() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        for profile in ["", "profiles/premium"] {
            let w = c
                .get_weights(pb::GetWeightsRequest {
                    profile: profile.into(),
                })
                .await
                .expect("weights without a model")
                .into_inner();
            assert_eq!(w.profile, profile);
            assert_eq!(w.source, WeightsSource::Uniform as i32);
            assert!(w.model.is_empty() && w.kpi_weights.is_empty() && w.coefficients.is_empty());
            assert!(w.train_time.is_none() && w.suggested_category_weights.is_none());
        }
        let err = c
            .get_weights(pb::GetWeightsRequest {
                profile: "premium".into(),
            })
            .await
            .expect_err("bad name");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("profile:"), "{}", err.message());

        // No churn outcome: nothing to learn from.
        let err = env
            .train(end(), pb::TrainingOptions::default())
            .await
            .expect_err("no outcome");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        env.record(vec![pb::Outcome {
            kind: pb::OutcomeKind::Renewed as i32,
            ..common::churn("a1", end())
        }])
        .await;
        let err = env
            .train(end(), pb::TrainingOptions::default())
            .await
            .expect_err("no churn");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

        let err = c
            .predict_churn(pb::PredictChurnRequest {
                account_ids: vec!["a1".into()],
                as_of: None,
            })
            .await
            .expect_err("no model");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let err = c
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect_err("no model");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let err = c
            .get_model(pb::GetModelRequest {
                name: "models/global-1".into(),
            })
            .await
            .expect_err("no model");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let models = c
            .list_models(pb::ListModelsRequest::default())
            .await
            .expect("list")
            .into_inner();
        assert!(models.models.is_empty() && models.next_page_token.is_empty());
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        let bad_train = [
            (
                pb::TrainingOptions {
                    horizon_days: Some(0),
                    ..Default::default()
                },
                "options.horizon_days",
            ),
            (
                pb::TrainingOptions {
                    observation_interval_days: Some(366),
                    ..Default::default()
                },
                "options.observation_interval_days",
            ),
            (
                pb::TrainingOptions {
                    prior_strength: Some(f64::NAN),
                    ..Default::default()
                },
                "options.prior_strength",
            ),
            (
                pb::TrainingOptions {
                    l2_penalty: Some(0.0),
                    ..Default::default()
                },
                "options.l2_penalty",
            ),
        ];
        for (o, field) in bad_train {
            let err = env.train(end(), o).await.expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().starts_with(field), "{}", err.message());
        }
        let err = c
            .train(pb::TrainRequest {
                profile: "profiles/nope".into(),
                ..Default::default()
            })
            .await
            .expect_err("unknown profile");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let err = c
            .evaluate(pb::EvaluateRequest {
                backtest_folds: 11,
                ..Default::default()
            })
            .await
            .expect_err("folds");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with("backtest_folds"),
            "{}",
            err.message()
        );
        for (ids, field) in [
            (vec![], "account_ids"),
            (vec!["a".to_string(), String::new()], "account_ids[1]"),
            (vec!["a".to_string(); 1001], "account_ids"),
        ] {
            let err = c
                .predict_churn(pb::PredictChurnRequest {
                    account_ids: ids,
                    as_of: None,
                })
                .await
                .expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(
                err.message().starts_with(&format!("{field}:")),
                "{}",
                err.message()
            );
        }
        for name in [
            "",
            "global-1",
            "models/global",
            "models/global-0",
            "models/Bad-1",
        ] {
            let err = c
                .get_model(pb::GetModelRequest { name: name.into() })
                .await
                .expect_err(name);
            assert_eq!(err.code(), Code::InvalidArgument, "{name}");
            assert!(err.message().starts_with("name:"), "{}", err.message());
        }
        let err = c
            .list_models(pb::ListModelsRequest {
                page_size: -3,
                ..Default::default()
            })
            .await
            .expect_err("page size");
        assert_eq!(err.code(), Code::InvalidArgument);
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_signal_is_learned_evaluated_and_served() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        put_profile(&env, "premium").await;
        put_profile(&env, "empty").await;
        let mut p = Portfolio::new(48, 240, end());
        for (i, a) in p.accounts.iter_mut().enumerate() {
            if i % 2 == 0 {
                a.profile = Some("premium".into());
            }
        }
        env.put_portfolio(&p).await;
        let r = env.record(p.churn_outcomes()).await;
        assert_eq!(r.recorded_count, 16);

        let trained = env.train(end(), options(10.0)).await.expect("train");
        let g = global(&trained);
        assert_eq!((g.name.as_str(), g.version), ("models/global-1", 1));
        let premium = trained
            .models
            .iter()
            .find(|m| m.profile == "profiles/premium")
            .expect("premium model");
        assert_eq!(premium.name, "models/premium-1");
        assert!(
            trained
                .skipped
                .iter()
                .any(|s| s.profile == "profiles/empty" && !s.reason.is_empty()),
            "{:?}",
            trained.skipped
        );

        // The planted KPI: learned weight dominant in its category, shrunk weight well
        // above the uniform prior; the contradicting one is reported and learns 0.
        assert_eq!(g.churn_count, 16);
        let expected_shrinkage = 16.0 / (16.0 + 10.0);
        assert!(
            (g.shrinkage - expected_shrinkage).abs() < 1e-9,
            "{}",
            g.shrinkage
        );
        let w = weight_of(&g.kpi_weights, SIGNAL_KPI);
        assert_eq!(w.category, ScoreCategory::Usage as i32);
        assert!(
            w.weight > 3.0 * w.prior_weight,
            "{SIGNAL_KPI}: weight {} prior {}",
            w.weight,
            w.prior_weight
        );
        assert!(
            (w.weight - (g.shrinkage * w.learned_weight + (1.0 - g.shrinkage) * w.prior_weight))
                .abs()
                < 1e-9
        );
        let top = g
            .kpi_weights
            .iter()
            .filter(|k| k.category == ScoreCategory::Usage as i32)
            .max_by(|a, b| a.learned_weight.total_cmp(&b.learned_weight))
            .expect("usage weights");
        // The planted type's share of the events carries the same signal as its count
        // (the other types are unchanged), so either may be on top; the count itself must
        // be within 10 % of it.
        assert!(
            top.kpi == SIGNAL_KPI || top.kpi == format!("{SIGNAL_KPI}__share"),
            "{:?}",
            g.kpi_weights
        );
        assert!(
            w.learned_weight >= 0.9 * top.learned_weight,
            "{top:?} {w:?}"
        );
        let usage_sum: f64 = g
            .kpi_weights
            .iter()
            .filter(|k| k.category == ScoreCategory::Usage as i32)
            .map(|k| k.weight)
            .sum();
        assert!((usage_sum - 1.0).abs() < 1e-6, "{usage_sum}");
        // Its first column: the percentile (percentiles + log values) or its one value or
        // log value (the book's preparation), whichever form the CV chose.
        let coef = g
            .coefficients
            .iter()
            .find(|c| c.kpi.split(':').next() == Some(SIGNAL_KPI))
            .expect("coefficient");
        assert!(coef.coefficient < 0.0 && !coef.contradicted);
        assert!(
            g.contradicted_kpis.iter().any(|k| k == CONTRADICTING_KPI),
            "{:?}",
            g.contradicted_kpis
        );
        let like = weight_of(&g.kpi_weights, CONTRADICTING_KPI);
        assert_eq!(like.learned_weight, 0.0);
        assert!(like.weight < like.prior_weight);
        let m = g.training_metrics.as_ref().expect("metrics");
        assert!(m.auc > 0.85, "in-sample AUC {}", m.auc);
        assert!(m.positive_count > 0 && m.positive_count < m.observation_count);

        // GetWeights: the profile's own model, else the global one.
        let mut c = env.client.clone();
        let gw = c
            .get_weights(pb::GetWeightsRequest {
                profile: String::new(),
            })
            .await
            .expect("weights")
            .into_inner();
        assert_eq!(gw.source, WeightsSource::Learned as i32);
        assert_eq!(gw.model, g.name);
        assert_eq!(gw.kpi_weights, g.kpi_weights);
        assert_eq!(gw.coefficients, g.coefficients);
        assert_eq!(gw.intercept, g.intercept);
        let cw = gw.suggested_category_weights.expect("category weights");
        let total = cw.usage + cw.conversations + cw.pulse + cw.contract + cw.custom_metrics;
        assert!((total - 1.0).abs() < 1e-6, "{cw:?}");
        let pw = c
            .get_weights(pb::GetWeightsRequest {
                profile: "profiles/premium".into(),
            })
            .await
            .expect("weights")
            .into_inner();
        assert_eq!(pw.model, "models/premium-1");
        let ow = c
            .get_weights(pb::GetWeightsRequest {
                profile: "profiles/other".into(),
            })
            .await
            .expect("weights")
            .into_inner();
        assert_eq!(ow.model, "models/global-1");

        // GetModel and ListModels give back what Train returned.
        let got = c
            .get_model(pb::GetModelRequest {
                name: g.name.clone(),
            })
            .await
            .expect("model")
            .into_inner()
            .model
            .expect("model");
        assert_eq!(&got, g);
        let listed = c
            .list_models(pb::ListModelsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.models.len(), 1);
        assert!(!listed.next_page_token.is_empty());

        // Evaluate: numbers in range, the planted signal ranks churners first.
        let e = c
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect("evaluate")
            .into_inner();
        assert_eq!(e.model, g.name);
        for (what, ev) in [
            (
                "churn probability",
                e.churn_probability.as_ref().expect("churn"),
            ),
            ("health score", e.health_score.as_ref().expect("health")),
        ] {
            let m = ev.metrics.as_ref().expect("metrics");
            assert!((0.0..=1.0).contains(&m.auc), "{what} AUC {}", m.auc);
            assert!(m.top_decile_lift >= 0.0, "{what}");
            assert_eq!(ev.calibration.len(), 10, "{what}");
            let counted: u32 = ev.calibration.iter().map(|b| b.count).sum();
            assert_eq!(counted, m.observation_count, "{what}");
            for b in &ev.calibration {
                assert!(b.predicted_lower <= b.mean_predicted + 1e-12);
                assert!(b.mean_predicted <= b.predicted_upper + 1e-12);
                assert!((0.0..=1.0).contains(&b.observed_rate));
            }
            assert_eq!(ev.backtest_folds.len(), 2, "{what}");
            for f in &ev.backtest_folds {
                let tm = f.test_metrics.as_ref().expect("fold metrics");
                assert!((0.0..=1.0).contains(&tm.auc));
                assert!(f.train_count > 0 && tm.observation_count > 0);
                assert!(
                    f.train_end.as_ref().expect("train end").seconds
                        <= f.test_end.as_ref().expect("test end").seconds
                );
            }
            assert!((0.0..=1.0).contains(&ev.backtest_auc));
        }
        let churn = e.churn_probability.as_ref().expect("churn");
        let auc = churn.metrics.as_ref().expect("metrics").auc;
        assert!(auc > 0.85, "churn probability AUC {auc}");
        assert!(
            churn.backtest_auc > 0.75,
            "backtest AUC {}",
            churn.backtest_auc
        );
        assert!(churn.metrics.as_ref().expect("m").top_decile_lift > 1.5);
        let pe = c
            .evaluate(pb::EvaluateRequest {
                profile: "profiles/premium".into(),
                backtest_folds: 1,
                ..Default::default()
            })
            .await
            .expect("evaluate premium")
            .into_inner();
        assert_eq!(pe.model, "models/premium-1");
        assert_eq!(pe.churn_probability.expect("churn").backtest_folds.len(), 1);

        // PredictChurn a month before the last churn: the churner is more at risk than a
        // retained account.
        let last = p
            .accounts
            .iter()
            .filter_map(|a| a.churn.map(|d| (d, a.id.clone())))
            .max()
            .expect("a churner");
        let retained = p
            .accounts
            .iter()
            .find(|a| a.churn.is_none())
            .expect("a retained account");
        let when = last.0.checked_sub_days(Days::new(20)).expect("date");
        let pr = c
            .predict_churn(pb::PredictChurnRequest {
                account_ids: vec![last.1.clone(), retained.id.clone()],
                as_of: Some(ts(at(when))),
            })
            .await
            .expect("predict")
            .into_inner();
        assert_eq!(pr.predictions.len(), 2);
        assert_eq!(pr.predictions[0].account_id, last.1);
        for q in &pr.predictions {
            assert!((0.0..=1.0).contains(&q.probability));
            let expected = if q.profile == "profiles/premium" {
                "models/premium-1"
            } else {
                "models/global-1"
            };
            assert_eq!(q.model, expected);
        }
        assert!(
            pr.predictions[0].probability > pr.predictions[1].probability,
            "{:?}",
            pr.predictions
        );
        let err = c
            .predict_churn(pb::PredictChurnRequest {
                account_ids: vec![last.1.clone(), "nobody".into()],
                as_of: None,
            })
            .await
            .expect_err("unknown account");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(
            err.message().contains("account_ids[1]"),
            "{}",
            err.message()
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_outcomes_move_the_weights_toward_the_learned_ones() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = Portfolio::new(42, 240, end());
        env.put_portfolio(&p).await;
        let outcomes = p.churn_outcomes();
        let (first, rest): (Vec<_>, Vec<_>) = outcomes
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let first: Vec<pb::Outcome> = first.into_iter().map(|(_, o)| o).collect();
        let rest: Vec<pb::Outcome> = rest.into_iter().map(|(_, o)| o).collect();
        env.record(first.clone()).await;
        let t1 = env.train(end(), options(10.0)).await.expect("train 1");
        let m1 = global(&t1).clone();
        env.record(rest.clone()).await;
        let t2 = env.train(end(), options(10.0)).await.expect("train 2");
        let m2 = global(&t2).clone();
        assert_eq!((m1.version, m2.version), (1, 2));
        assert_eq!(m1.churn_count as usize, first.len());
        assert_eq!(m2.churn_count as usize, first.len() + rest.len());
        assert!(
            m2.shrinkage > m1.shrinkage,
            "{} {}",
            m1.shrinkage,
            m2.shrinkage
        );
        let (w1, w2) = (
            weight_of(&m1.kpi_weights, SIGNAL_KPI),
            weight_of(&m2.kpi_weights, SIGNAL_KPI),
        );
        assert!(
            w2.weight > w1.weight && w1.weight > w1.prior_weight,
            "{w1:?} -> {w2:?}"
        );
        // The gap to the data-only weight narrows as the data grows.
        assert!(
            (w2.learned_weight - w2.weight).abs() < (w1.learned_weight - w1.weight).abs(),
            "{w1:?} -> {w2:?}"
        );

        let mut c = env.client.clone();
        let latest = c
            .list_models(pb::ListModelsRequest {
                latest_only: true,
                ..Default::default()
            })
            .await
            .expect("latest")
            .into_inner();
        assert_eq!(latest.models.len(), 1);
        assert_eq!(latest.models[0].name, "models/global-2");
        let mut names = Vec::new();
        let mut token = String::new();
        loop {
            let page = c
                .list_models(pb::ListModelsRequest {
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("page")
                .into_inner();
            names.extend(page.models.into_iter().map(|m| m.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(names, ["models/global-2", "models/global-1"]);
        let w = c
            .get_weights(pb::GetWeightsRequest::default())
            .await
            .expect("weights")
            .into_inner();
        assert_eq!(w.model, "models/global-2");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_starts_by_itself_after_n_new_outcomes() {
    for backend in backends() {
        let env = Env::start(
            backend,
            LearnerArgs {
                retrain_after_outcomes: 12,
                prior_strength: 10.0,
                ..LearnerArgs::default()
            },
        )
        .await;
        // Data up to today: automatic training runs as of now.
        let today = Utc::now().date_naive();
        let p = Portfolio::new(36, 200, today);
        env.put_portfolio(&p).await;
        let outcomes = p.churn_outcomes();
        assert_eq!(outcomes.len(), 12);
        env.record(outcomes[..5].to_vec()).await;
        env.record(outcomes[5..].to_vec()).await;
        let mut c = env.client.clone();
        let mut waited = 0;
        let model = loop {
            let r = c
                .list_models(pb::ListModelsRequest::default())
                .await
                .expect("list")
                .into_inner();
            if let Some(m) = r.models.into_iter().find(|m| m.profile.is_empty()) {
                break m;
            }
            waited += 1;
            assert!(waited < 600, "no model trained after 12 new outcomes");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        assert_eq!(model.version, 1);
        assert_eq!(model.churn_count, 12);
        let o = model.options.expect("options");
        assert_eq!(o.horizon_days, Some(60));
        assert_eq!(o.prior_strength, Some(10.0));
        env.stop().await;
    }
}

/// No leakage: every account has the same usage (none) and the same monthly subscription
/// rows up to its churn, and retained accounts have their next month booked in advance. A
/// row starting after an observation date was not on file at that date; if the features
/// saw it, the renewal date would separate churners from retained accounts perfectly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_booked_after_an_observation_date_do_not_leak() {
    use vitals_store::entity::account;
    use vitals_store::sea_orm::ActiveModelTrait;
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let period = |k: u64| start.checked_add_days(Days::new(30 * k)).expect("date");
        let mut outcomes = Vec::new();
        for i in 0..30u64 {
            let id = format!("acct-{i:03}");
            account::Model {
                id: id.clone(),
                name: id.clone(),
                attributes: serde_json::json!({}),
                profile_id: None,
                pinned: false,
                status: "active".into(),
                created_at: at(start),
                updated_at: at(start),
            }
            .into_active_model()
            .insert(env.store.conn())
            .await
            .expect("account");
            // Every third account churns at the end of month 3..=7; the others renew
            // through month 9 (the last month booked ahead of the end of the data).
            let months = if i % 3 == 0 { 3 + (i / 3) % 5 } else { 9 };
            if i % 3 == 0 {
                outcomes.push(common::churn(&id, period(months)));
            }
            for k in 0..months {
                monthly_subscription(&id, &format!("{id}-{k}"), at(period(k)), at(period(k + 1)))
                    .into_active_model()
                    .insert(env.store.conn())
                    .await
                    .expect("subscription");
            }
        }
        env.record(outcomes).await;
        let trained = env.train(period(8), options(10.0)).await.expect("train");
        let m = global(&trained);
        let auc = m.training_metrics.as_ref().expect("metrics").auc;
        assert!(
            auc < 0.7,
            "in-sample AUC {auc}: the future leaked into the features"
        );
        env.stop().await;
    }
}

/// Models stored before the log-scaled KPI values existed have percentile coefficients
/// without `transform` and `missing`: they still load, are served by GetWeights and
/// Evaluate, and predict exactly like the same coefficients stated explicitly as
/// percentiles with the median peer for a missing KPI (how they were fitted). (The
/// percentile coefficients are made from the trained model's KPIs, whatever form it chose.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_stored_before_the_log_values_still_loads_and_predicts() {
    use vitals_store::entity::model;
    use vitals_store::learner::{GLOBAL_MODEL, NewModel, insert_model};
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = Portfolio::new(48, 240, end());
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        let trained = env.train(end(), options(10.0)).await.expect("train");
        let g = global(&trained);
        assert!(!g.coefficients.is_empty());
        let row = model::Entity::find()
            .all(env.store.conn())
            .await
            .expect("models")
            .into_iter()
            .next()
            .expect("the trained model");
        // New models name the form of every coefficient.
        let stored = row.coefficients["coefficients"]
            .as_array()
            .expect("coefficient list");
        assert!(
            stored.iter().all(|c| c["transform"].is_string()),
            "{stored:?}"
        );
        // Explicit: one percentile coefficient per KPI of the trained model, missing = 0.5.
        let mut explicit = row.coefficients.clone();
        let list = explicit["coefficients"]
            .as_array_mut()
            .expect("coefficient list");
        let mut seen = std::collections::HashSet::new();
        list.retain(|c| seen.insert(c["kpi"].as_str().unwrap_or_default().to_owned()));
        for c in list.iter_mut() {
            c["transform"] = serde_json::json!("percentile");
            c["missing"] = serde_json::json!(0.5);
            c.as_object_mut()
                .expect("coefficient object")
                .remove("group");
        }
        // Legacy: the same without the fields the log values brought.
        let mut legacy = explicit.clone();
        for c in legacy["coefficients"].as_array_mut().expect("list") {
            let c = c.as_object_mut().expect("coefficient object");
            c.remove("transform");
            c.remove("missing");
        }
        let store_as = |coefficients: serde_json::Value| NewModel {
            profile_id: GLOBAL_MODEL.to_owned(),
            trained_at: Utc::now(),
            n_observations: row.n_observations,
            n_churned: row.n_churned,
            kpi_weights: row.kpi_weights.clone(),
            category_weights: row.category_weights.clone(),
            coefficients,
            metrics: row.metrics.clone(),
        };
        let when = end().checked_sub_days(Days::new(40)).expect("date");
        let ids: Vec<String> = p.accounts.iter().take(12).map(|a| a.id.clone()).collect();
        let mut c = env.client.clone();
        let mut predictions = Vec::new();
        for (version, coefficients) in [(2, explicit), (3, legacy)] {
            insert_model(&env.store, store_as(coefficients))
                .await
                .expect("store model");
            let name = format!("models/global-{version}");
            let w = c
                .get_weights(pb::GetWeightsRequest::default())
                .await
                .expect("weights")
                .into_inner();
            assert_eq!(w.model, name);
            assert!(!w.coefficients.is_empty());
            assert!(w.coefficients.iter().all(|c| !c.kpi.contains(':')));
            let pr = c
                .predict_churn(pb::PredictChurnRequest {
                    account_ids: ids.clone(),
                    as_of: Some(ts(at(when))),
                })
                .await
                .expect("predict")
                .into_inner();
            assert!(pr.predictions.iter().all(|q| q.model == name));
            predictions.push(
                pr.predictions
                    .iter()
                    .map(|q| q.probability)
                    .collect::<Vec<_>>(),
            );
            let e = c
                .evaluate(pb::EvaluateRequest::default())
                .await
                .expect("evaluate")
                .into_inner();
            assert_eq!(e.model, name);
            let auc = e
                .churn_probability
                .and_then(|m| m.metrics)
                .expect("metrics")
                .auc;
            assert!((0.0..=1.0).contains(&auc), "{auc}");
        }
        assert_eq!(predictions[0], predictions[1]);
        assert!(
            predictions[0].iter().all(|p| (0.0..=1.0).contains(p)),
            "{predictions:?}"
        );
        // A row that does not parse is refused (INTERNAL; the server log names the model
        // and the column: "model N has bad coefficients"), never read as something else.
        insert_model(&env.store, store_as(serde_json::json!({"intercept": "x"})))
            .await
            .expect("store bad model");
        let err = c
            .get_weights(pb::GetWeightsRequest::default())
            .await
            .expect_err("bad model");
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        env.stop().await;
    }
}

/// Data that ended years ago: Train and Evaluate without `as_of` observe up to the last
/// day of data (not up to today), say so in their window, and Evaluate's backtest runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_as_of_the_window_ends_at_the_latest_data_even_years_ago() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let data_end = NaiveDate::from_ymd_opt(2019, 6, 1).expect("date");
        let p = Portfolio::new(48, 240, data_end);
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        let options = options(10.0);
        let trained = env
            .client
            .clone()
            .train(pb::TrainRequest {
                options: Some(options),
                ..Default::default()
            })
            .await
            .expect("train without as_of")
            .into_inner();
        let last_day = data_end.pred_opt().expect("day");
        let w = trained.window.clone().expect("window");
        let end = w.end_time.expect("end");
        assert_eq!(
            chrono::DateTime::from_timestamp(end.seconds, 0)
                .expect("time")
                .date_naive(),
            last_day,
            "{backend:?}: the last usage day, not today"
        );
        assert_eq!(w.end_source, "latest data");
        // Observation dates every 28 days from one KPI window after the start: about 8,
        // not the ~100 up to today.
        assert!((7..=9).contains(&w.date_count), "{w:?}");
        // At most the 48 accounts at every date, fewer once churners have left.
        assert!(w.observation_count > 0 && w.observation_count <= 48 * w.date_count);
        let g = global(&trained);
        assert_eq!(g.window.as_ref().map(|w| w.end_time), Some(Some(end)));
        let cal = g.calibration.clone().expect("calibration");
        assert!(cal.slope > 0.0, "{cal:?}");

        let evaluated = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect("evaluate without as_of")
            .into_inner();
        let ew = evaluated.window.expect("window");
        assert_eq!(ew.end_time, Some(end), "{backend:?}");
        assert_eq!(ew.end_source, "latest data");
        let churn = evaluated.churn_probability.expect("churn");
        assert_eq!(churn.backtest_folds.len(), 2);
        assert!(churn.backtest_expected_calibration_error >= 0.0);
        // Given by hand, `as_of` wins and says so.
        let evaluated = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest {
                as_of: Some(ts(at(last_day))),
                ..Default::default()
            })
            .await
            .expect("evaluate as of")
            .into_inner();
        assert_eq!(evaluated.window.expect("window").end_source, "as_of");
        env.stop().await;
    }
}

/// Champion/challenger: a new version whose backtest is worse than the serving one's is
/// stored as a candidate with the reason, and the serving version keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_worse_than_the_serving_model_is_not_served() {
    use vitals_store::learner as store;
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = Portfolio::new(48, 240, end());
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        let first = env.train(end(), options(10.0)).await.expect("train");
        assert!(!global(&first).candidate, "nothing to compare with: serves");
        // A serving version with an unbeatable backtest (its copy with AUC 0.999).
        let row = store::get_model(&env.store, store::GLOBAL_MODEL, 1)
            .await
            .expect("read")
            .expect("global-1");
        let mut metrics = row.metrics.clone();
        assert!(
            !metrics["churn_backtest"]["folds"]
                .as_array()
                .expect("folds")
                .is_empty(),
            "{backend:?}: the first version has a backtest"
        );
        metrics["churn_backtest"]["mean_auc"] = serde_json::json!(0.999);
        store::insert_model(
            &env.store,
            store::NewModel {
                profile_id: row.profile_id.clone(),
                trained_at: Utc::now(),
                n_observations: row.n_observations,
                n_churned: row.n_churned,
                kpi_weights: row.kpi_weights.clone(),
                category_weights: row.category_weights.clone(),
                coefficients: row.coefficients.clone(),
                metrics,
            },
        )
        .await
        .expect("insert the champion");
        let second = env.train(end(), options(10.0)).await.expect("train again");
        let g = global(&second);
        assert_eq!(g.name, "models/global-3");
        assert!(g.candidate, "{backend:?}");
        assert!(
            g.candidate_reason.contains("models/global-2") && g.candidate_reason.contains("0.9990"),
            "{}",
            g.candidate_reason
        );
        let w = env
            .client
            .clone()
            .get_weights(pb::GetWeightsRequest::default())
            .await
            .expect("weights")
            .into_inner();
        assert_eq!(
            w.model, "models/global-2",
            "{backend:?}: the champion serves"
        );
        let listed = env
            .client
            .clone()
            .list_models(pb::ListModelsRequest {
                latest_only: true,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        let latest = listed
            .models
            .iter()
            .find(|m| m.profile.is_empty())
            .expect("global");
        assert_eq!(latest.name, "models/global-3");
        assert!(latest.candidate && !latest.candidate_reason.is_empty());
        env.stop().await;
    }
}
