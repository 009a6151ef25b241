//! Drift over real gRPC: a model trained on the planted portfolio (`common::Portfolio`),
//! then a population whose posts moved far above anything seen in training while every
//! account stays active every day. GetDriftReport must report the shifted KPI as a shift
//! and the unchanged one as stable; the scheduled drift check must write one
//! `model.drift_detected` event and retrain.

mod common;

use chrono::{Days, NaiveDate};
use common::{Env, Portfolio, at, churn, global, quiet_args};
use tonic::Code;
use vitals_learner::LearnerArgs;
use vitals_proto::learner::v1 as pb;
use vitals_store::entity::usage_daily;
use vitals_store::learner as store;
use vitals_store::sea_orm::{ConnectionTrait, EntityTrait, IntoActiveModel, Statement};
use vitals_store::webhooks;
use vitals_test_support::backends;

/// The KPI the new population shifts.
const SHIFTED: &str = "events_post";
/// A KPI the new population leaves as it was (every account active every day).
const UNSHIFTED: &str = "active_days";
/// Days of data after the training's end.
const NEW_DAYS: u64 = 60;
/// Accounts still customers at the end that churn in the new period.
const NEW_CHURNERS: usize = 8;

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 9, 1).expect("date")
}

fn day(offset: u64) -> NaiveDate {
    end().checked_add_days(Days::new(offset)).expect("day")
}

/// Trains the global model as of `end()` with a 20-day horizon (so that observations
/// after the training are labelled within the new period).
async fn train(env: &Env, p: &Portfolio) -> pb::Model {
    env.put_portfolio(p).await;
    env.record(p.churn_outcomes()).await;
    let r = env
        .train(
            end(),
            pb::TrainingOptions {
                prior_strength: Some(10.0),
                horizon_days: Some(20),
                ..Default::default()
            },
        )
        .await
        .expect("train");
    global(&r).clone()
}

/// `NEW_DAYS` days of usage after `end()` for the accounts still customers, active every
/// day; the first `NEW_CHURNERS` of them churn between days 31 and 45, and their outcomes
/// are recorded. `shifted`: each posts 30..50 a day and likes 5 (before: 1..9 posts,
/// 10 events a day in all), the churners the least; else the training's pattern goes on
/// (churners post 1..5 a day, the others 4..9, likes making up 10).
async fn extend(env: &Env, p: &Portfolio, shifted: bool) {
    let current: Vec<&str> = p
        .accounts
        .iter()
        .filter(|a| a.churn.is_none())
        .map(|a| a.id.as_str())
        .collect();
    assert!(current.len() > NEW_CHURNERS * 2);
    let mut rows = Vec::new();
    let mut outcomes = Vec::new();
    for (i, id) in current.iter().enumerate() {
        let churn_day = (i < NEW_CHURNERS).then(|| 31 + 2 * i as u64);
        if let Some(c) = churn_day {
            outcomes.push(churn(id, day(c)));
        }
        for offset in 0..churn_day.unwrap_or(NEW_DAYS) {
            let noise = (i as u64 * 7 + offset * 3) as i64;
            let (posts, likes) = match (shifted, churn_day.is_some()) {
                (true, true) => (30 + noise % 5, 5),
                (true, false) => (40 + noise % 10, 5),
                (false, true) => (1 + noise % 5, 0),
                (false, false) => (4 + noise % 6, 0),
            };
            let likes = if shifted { likes } else { 10 - posts };
            for (ty, count) in [("post", posts), ("like", likes)] {
                rows.push(usage_daily::Model {
                    account_id: (*id).to_owned(),
                    day: day(offset),
                    event_type: ty.into(),
                    count,
                    distinct_users: 1,
                    value_sum: 0.0,
                });
            }
        }
    }
    for chunk in rows.chunks(1000) {
        usage_daily::Entity::insert_many(chunk.iter().map(|u| u.clone().into_active_model()))
            .exec(env.store.conn())
            .await
            .expect("insert roll-ups");
    }
    env.record(outcomes).await;
}

fn kpi<'a>(r: &'a pb::GetDriftReportResponse, name: &str) -> &'a pb::KpiDrift {
    r.kpis
        .iter()
        .find(|k| k.kpi == name)
        .unwrap_or_else(|| panic!("no drift of {name} in {:?}", r.kpis))
}

async fn report(env: &Env, profile: &str) -> Result<pb::GetDriftReportResponse, tonic::Status> {
    env.client
        .clone()
        .get_drift_report(pb::GetDriftReportRequest {
            profile: profile.into(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_population_is_reported_as_drift() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        // No model yet; a malformed or unknown profile.
        let e = report(&env, "").await.expect_err("no model");
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = report(&env, "premium").await.expect_err("malformed");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("profile"), "{}", e.message());
        let e = report(&env, "profiles/nope").await.expect_err("unknown");
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().contains("profiles/nope"), "{}", e.message());

        let p = Portfolio::new(48, 240, end());
        let model = train(&env, &p).await;
        // The population the model was trained on: nothing moved, nothing due.
        let before = report(&env, "").await.expect("report");
        assert_eq!(before.model, model.name);
        assert_eq!(before.outcomes_since_training, 0);
        assert!(!before.retrain_due, "{}", before.retrain_reason);
        assert!(before.auc_since_training.is_none());
        assert!(!before.auc_unavailable_reason.is_empty());
        assert!(kpi(&before, UNSHIFTED).psi < 0.1, "{:?}", before.kpis);

        extend(&env, &p, true).await;
        let r = report(&env, "").await.expect("report");
        assert_eq!(r.model, model.name);
        assert_eq!(r.as_of, Some(common::ts(at(day(NEW_DAYS - 1)))));
        assert_eq!(r.model_as_of, Some(common::ts(at(end()))));
        let shifted = kpi(&r, SHIFTED);
        assert!(shifted.psi > 0.25, "{backend:?}: {shifted:?}");
        assert_eq!(shifted.level, pb::DriftLevel::Shift as i32);
        assert!(shifted.training_observations > 0);
        let unshifted = kpi(&r, UNSHIFTED);
        assert!(unshifted.psi < 0.1, "{backend:?}: {unshifted:?}");
        assert_eq!(unshifted.level, pb::DriftLevel::Stable as i32);
        assert_eq!(r.level, pb::DriftLevel::Shift as i32);
        assert!(
            r.kpis[0].psi >= r.kpis[r.kpis.len() - 1].psi,
            "highest first"
        );
        assert_eq!(r.outcomes_since_training, NEW_CHURNERS as u64);
        // Observations after the training: day 28 (every account then a customer, labelled
        // by day 48: the new churners churned, the others' horizon is over); day 56's
        // horizon is not over (left out).
        assert_eq!(r.labelled_observations, 32, "{r:?}");
        assert_eq!(r.churned_observations as usize, NEW_CHURNERS, "{r:?}");
        let auc = r
            .auc_since_training
            .unwrap_or_else(|| panic!("{backend:?}: no AUC: {}", r.auc_unavailable_reason));
        assert!((0.0..=1.0).contains(&auc), "{auc}");
        assert!(r.auc_unavailable_reason.is_empty());
        assert!(r.retrain_due);
        assert!(
            r.retrain_reason.contains("PSI") && r.retrain_reason.contains("0.25"),
            "{}",
            r.retrain_reason
        );
        env.stop().await;
    }
}

/// The AUC since training measures the serving model on the outcomes recorded after it:
/// with the training's pattern going on, the model that learned it ranks the new
/// churners first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_after_training_give_the_models_auc_since() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = Portfolio::new(48, 240, end());
        let model = train(&env, &p).await;
        extend(&env, &p, false).await;
        let r = report(&env, "").await.expect("report");
        assert_eq!(r.model, model.name);
        assert_eq!(r.labelled_observations, 32, "{r:?}");
        assert_eq!(r.churned_observations as usize, NEW_CHURNERS);
        let auc = r
            .auc_since_training
            .unwrap_or_else(|| panic!("{backend:?}: no AUC: {}", r.auc_unavailable_reason));
        assert!(auc > 0.8, "{backend:?}: AUC {auc}");
        assert!(kpi(&r, UNSHIFTED).psi < 0.1, "{:?}", r.kpis);

        // The report is bounded as Train is: the KPI snapshots it computes (the model's
        // dates since training, every 28 days, and the day after the data's end) count
        // against VITALS_LEARNER_MAX_DATASET_CELLS, from the store's facts. Over the
        // bound it is refused before the history is read (the `pulses` table, read only
        // with the history, is hidden); at the bound it runs.
        let until = at(day(NEW_DAYS - 1));
        let facts = store::history_facts(&env.store, until)
            .await
            .expect("facts");
        let outcomes = store::outcomes_until(&env.store, until)
            .await
            .expect("outcomes");
        let count = vitals_learner::domain::Settings {
            horizon_days: 20,
            interval_days: 28,
            prior_strength: 10.0,
            l2_penalty: None,
            max_dataset_cells: u64::MAX,
            borrow_from_global: true,
            challenger: false,
        };
        let cells = vitals_learner::domain::check_facts_on(
            &facts,
            &outcomes,
            &[day(28), day(56), day(NEW_DAYS)],
            day(NEW_DAYS - 1),
            &count,
        )
        .expect("count");
        let url = env.url();
        env.stop().await;
        for (limit, refused) in [(cells - 1, true), (cells, false)] {
            let args = LearnerArgs {
                max_dataset_cells: limit,
                ..quiet_args()
            };
            let env = Env::start_at(backend, url.clone(), args).await;
            let hide = |sql: &'static str| {
                let conn = env.store.conn().clone();
                async move { conn.execute_unprepared(sql).await.expect(sql) }
            };
            if refused {
                hide("ALTER TABLE pulses RENAME TO pulses_hidden").await;
                let e = report(&env, "").await.expect_err("over the bound");
                assert_eq!(e.code(), Code::ResourceExhausted, "{backend:?}: {e:?}");
                assert!(
                    e.message().contains("VITALS_LEARNER_MAX_DATASET_CELLS")
                        && e.message().contains(&format!("{cells} cells")),
                    "{}",
                    e.message()
                );
                hide("ALTER TABLE pulses_hidden RENAME TO pulses").await;
            } else {
                let again = report(&env, "").await.expect("at the bound");
                assert_eq!(again.labelled_observations, 32);
            }
            env.stop().await;
        }
    }
}

async fn drift_events(env: &Env) -> Vec<serde_json::Value> {
    let c = env.store.conn();
    let rows = c
        .query_all_raw(Statement::from_string(
            c.get_database_backend(),
            format!(
                "SELECT payload FROM webhook_events WHERE kind = '{}' ORDER BY id",
                webhooks::KIND_DRIFT_DETECTED
            ),
        ))
        .await
        .expect("events");
    rows.iter()
        .map(|r| {
            let p: String = r.try_get("", "payload").expect("payload");
            serde_json::from_str(&p).expect("json")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_once_and_retrains() {
    for backend in backends() {
        let env = Env::start(
            backend,
            LearnerArgs {
                retrain_psi_threshold: 0.25,
                drift_check_interval_secs: 1,
                ..quiet_args()
            },
        )
        .await;
        let now = webhooks::now_ms();
        webhooks::create_subscription(
            &env.store,
            &webhooks::Subscription {
                id: "wh_000000000000000000000001".into(),
                url: "http://127.0.0.1:9/hook".into(),
                description: String::new(),
                kinds: webhooks::KIND_DRIFT_DETECTED.into(),
                profile_ids: String::new(),
                churn_threshold: 0.5,
                format: "standard".into(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                enabled: true,
                consecutive_failures: 0,
                disabled_reason: String::new(),
                created_ms: now,
                updated_ms: now,
            },
        )
        .await
        .expect("subscription");
        let p = Portfolio::new(48, 240, end());
        let model = train(&env, &p).await;
        // Ticks on the training's own data find nothing to report.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert!(drift_events(&env).await.is_empty(), "{backend:?}");
        extend(&env, &p, true).await;
        // The next tick reports the drift and retrains: a second version appears.
        let mut waited = 0;
        loop {
            let latest = store::latest_model(&env.store, store::GLOBAL_MODEL)
                .await
                .expect("read");
            if latest.is_some_and(|m| m.version >= 2) {
                break;
            }
            waited += 1;
            assert!(waited < 600, "{backend:?}: no retraining after the drift");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        // More ticks: the new version was trained on the new data (nothing newer), and
        // the first one's level was reported already.
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        let events = drift_events(&env).await;
        assert_eq!(events.len(), 1, "{backend:?}: {events:?}");
        let e = &events[0];
        assert_eq!(e["type"], webhooks::KIND_DRIFT_DETECTED);
        assert_eq!(e["data"]["model"], model.name.as_str());
        assert_eq!(e["data"]["level"], "shift");
        assert_eq!(e["data"]["retraining"], true);
        assert!(e["data"]["psi"].as_f64().expect("psi") > 0.25);
        let kpis = e["data"]["kpis"].as_array().expect("kpis");
        assert!(kpis.iter().any(|k| k["kpi"] == SHIFTED), "{kpis:?}");
        assert!(kpis.iter().all(|k| k["kpi"] != UNSHIFTED), "{kpis:?}");
        // The model row remembers the level reported.
        let row = store::get_model(&env.store, store::GLOBAL_MODEL, model.version as i32)
            .await
            .expect("read")
            .expect("model");
        assert_eq!(
            row.metrics[store::DRIFT_REPORTED_KEY],
            serde_json::json!(["shift"])
        );
        // And the check that found it (the web UI's model page shows it): the KPIs with
        // the highest PSI first (the volume KPIs moved with the posts), the retraining
        // it started.
        let check = &row.metrics[store::DRIFT_CHECK_KEY];
        assert_eq!(check["level"], "shift", "{check}");
        let psi: Vec<f64> = check["kpis"]
            .as_array()
            .expect("kpis")
            .iter()
            .map(|k| k["psi"].as_f64().expect("psi"))
            .collect();
        assert!(!psi.is_empty() && psi.len() <= 10, "{check}");
        assert!(
            psi[0] > 0.25 && psi.windows(2).all(|w| w[0] >= w[1]),
            "{check}"
        );
        assert!(check["kpis_measured"].as_u64().expect("measured") >= psi.len() as u64);
        assert!(check["retrain"].as_str().expect("retrain").contains("PSI"));
        // (The check can run between the new usage and its outcomes: any count up to the
        // new churners.)
        assert!(check["outcomes_since"].as_u64().expect("outcomes") <= NEW_CHURNERS as u64);
        // The new version is checked too, on its own training data: stable.
        let new = store::latest_model(&env.store, store::GLOBAL_MODEL)
            .await
            .expect("read")
            .expect("model");
        let check = &new.metrics[store::DRIFT_CHECK_KEY];
        assert!(check["retrain"].is_null(), "{check}");
        env.stop().await;
    }
}
