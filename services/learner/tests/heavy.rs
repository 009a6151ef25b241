//! Heavy work under a budget (docs/reliability.md, "Heavy work: budget, memory,
//! cancellation"): Train and Evaluate hold a slot of the process's budget, are cancelled
//! when their caller goes away or the server drains, commit nothing after that, and
//! refuse a training set over the memory bound before building it.

mod common;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use common::{Env, Portfolio, at, global, quiet_args, ts};
use tonic::Code;
use vitals_learner::LearnerArgs;
use vitals_proto::learner::v1 as pb;
use vitals_server::WorkBudget;
use vitals_test_support::backends;

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 9, 1).expect("date")
}

/// Weekly observations over 240 days of 48 accounts: a training run that takes seconds
/// in a test build (far longer than the short deadlines below).
fn portfolio() -> Portfolio {
    Portfolio::new(48, 240, end())
}

/// Weekly observations; a fixed L2 penalty keeps the runs of these tests short (no
/// lambda search).
fn weekly() -> pb::TrainingOptions {
    pb::TrainingOptions {
        observation_interval_days: Some(7),
        l2_penalty: Some(0.1),
        ..Default::default()
    }
}

fn train_request(options: pb::TrainingOptions) -> pb::TrainRequest {
    pb::TrainRequest {
        profile: String::new(),
        options: Some(options),
        as_of: Some(ts(at(end()))),
    }
}

/// Every stored model version, as `(profile, version)`.
async fn versions(env: &Env) -> Vec<(String, u32)> {
    let r = env
        .client
        .clone()
        .list_models(pb::ListModelsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list models")
        .into_inner();
    let mut v: Vec<(String, u32)> = r
        .models
        .into_iter()
        .map(|m| (m.profile, m.version))
        .collect();
    v.sort();
    v
}

/// Polls until `cond` holds, for at most 30 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Finding 4: a Train whose client deadline passes stores no model (before, the run went
/// on in a task of its own and committed a version after the client was told it failed,
/// so a retry made a second one); the retry makes exactly one version per scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_train_past_its_deadline_stores_nothing_and_a_retry_stores_one_version() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;

        let mut request = tonic::Request::new(train_request(weekly()));
        request.set_timeout(Duration::from_millis(300));
        let err = env
            .client
            .clone()
            .train(request)
            .await
            .expect_err("the deadline passes first");
        assert!(
            matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{backend:?}: {err:?}"
        );

        let retry = env
            .client
            .clone()
            .train(train_request(weekly()))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(global(&retry).version, 1, "{backend:?}: {:?}", retry.models);
        let stored = versions(&env).await;
        assert_eq!(
            stored,
            vec![(String::new(), 1)],
            "{backend:?}: exactly the retry's version"
        );
        env.stop().await;
    }
}

/// Finding 6 (heavy-work half): the shutdown signal cancels a Train in flight; the client
/// is told UNAVAILABLE (it may retry elsewhere), nothing is stored, and the server stops
/// at once instead of waiting out the training or the drain timeout (here 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_train_in_flight_and_stores_nothing() {
    for backend in backends() {
        let work = WorkBudget::new(2, Duration::from_secs(30));
        let env = Env::start_with(
            backend,
            quiet_args(),
            |s| s.drain_timeout = Duration::from_secs(60),
            work.clone(),
        )
        .await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;

        let mut client = env.client.clone();
        let call = tokio::spawn(async move { client.train(train_request(weekly())).await });
        wait_until("the Train holds a heavy-work slot", || {
            work.in_flight() == 1
        })
        .await;

        let Env {
            mut server, store, ..
        } = env;
        let t = Instant::now();
        server.signal_shutdown();
        server.join().await.expect("clean stop");
        let stopped_in = t.elapsed();
        let err = call
            .await
            .expect("join")
            .expect_err("the Train was cancelled");
        assert_eq!(err.code(), Code::Unavailable, "{backend:?}: {err:?}");
        assert!(err.message().contains("shutting down"), "{err:?}");
        assert!(
            stopped_in < Duration::from_secs(10),
            "{backend:?}: stopped after {stopped_in:?}"
        );
        // The blocking part stops too: the slot comes back.
        wait_until("the cancelled Train let its slot go", || {
            work.in_flight() == 0
        })
        .await;
        let models = vitals_store::learner::list_models(&store, None, false, None, 10)
            .await
            .expect("list models");
        assert!(models.is_empty(), "{backend:?}: {models:?}");
        store.close().await.expect("close");
    }
}

/// At most `--heavy-concurrency` heavy operations at once: with one slot busy (a second
/// Train) and no queueing, an Evaluate is refused with RESOURCE_EXHAUSTED naming the
/// setting; once that Train is abandoned, the slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_refuses_heavy_work_naming_the_limit() {
    for backend in backends() {
        let work = WorkBudget::new(1, Duration::ZERO);
        let env = Env::start_with(backend, quiet_args(), |_| {}, work.clone()).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        env.client
            .clone()
            .train(train_request(weekly()))
            .await
            .expect("a first model");

        let mut client = env.client.clone();
        let call = tokio::spawn(async move { client.train(train_request(weekly())).await });
        wait_until("the Train holds the slot", || work.in_flight() == 1).await;
        let err = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect_err("no slot");
        assert_eq!(err.code(), Code::ResourceExhausted, "{backend:?}: {err:?}");
        assert!(
            err.message().contains("VITALS_HEAVY_CONCURRENCY"),
            "{}",
            err.message()
        );
        call.abort();
        let _ = call.await;
        wait_until("the abandoned Train let its slot go", || {
            work.in_flight() == 0
        })
        .await;
        env.stop().await;
    }
}

/// Finding 3: a request whose training set would exceed the cell bound is refused before
/// anything is built, with RESOURCE_EXHAUSTED naming `options.observation_interval_days`;
/// the same model evaluates with its own (coarser) interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluate_over_the_memory_bound_is_refused_naming_the_interval() {
    for backend in backends() {
        // Weekly observations of the portfolio: 1,325 x 195 features = 258,375 cells;
        // daily ones about seven times as many.
        let args = LearnerArgs {
            max_dataset_cells: 500_000,
            ..quiet_args()
        };
        let env = Env::start(backend, args).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        env.client
            .clone()
            .train(train_request(weekly()))
            .await
            .expect("train weekly");

        let err = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest {
                options: Some(pb::TrainingOptions {
                    observation_interval_days: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect_err("over the bound");
        assert_eq!(err.code(), Code::ResourceExhausted, "{backend:?}: {err:?}");
        assert!(
            err.message()
                .starts_with("options.observation_interval_days: ")
                && err.message().contains("500000"),
            "{}",
            err.message()
        );
        env.client
            .clone()
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect("the model's own interval fits");
        env.stop().await;
    }
}

/// Memory bound, cheap half: a request over the cell bound is refused from aggregate
/// facts before the history is read. The `pulses` table (read with the history, not
/// with the facts) is hidden: the refusal still comes as RESOURCE_EXHAUSTED (before,
/// the history read failed first), and an accepted request then does read the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_memory_bound_is_refused_before_the_history_is_read() {
    use vitals_store::sea_orm::ConnectionTrait;
    for backend in backends() {
        let args = LearnerArgs {
            max_dataset_cells: 500_000,
            ..quiet_args()
        };
        let env = Env::start(backend, args).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        env.client
            .clone()
            .train(train_request(weekly()))
            .await
            .expect("train weekly");
        let hide = |sql: &'static str| {
            let conn = env.store.conn().clone();
            async move { conn.execute_unprepared(sql).await.expect(sql) }
        };
        hide("ALTER TABLE pulses RENAME TO pulses_hidden").await;

        let daily = pb::TrainingOptions {
            observation_interval_days: Some(1),
            ..Default::default()
        };
        let err = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest {
                options: Some(daily),
                ..Default::default()
            })
            .await
            .expect_err("over the bound");
        assert_eq!(err.code(), Code::ResourceExhausted, "{backend:?}: {err:?}");
        assert!(
            err.message()
                .starts_with("options.observation_interval_days: "),
            "{}",
            err.message()
        );
        let err = env
            .client
            .clone()
            .train(train_request(daily))
            .await
            .expect_err("over the bound");
        assert_eq!(err.code(), Code::ResourceExhausted, "{backend:?}: {err:?}");
        // Under the bound the history is read: the hidden table shows.
        let err = env
            .client
            .clone()
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect_err("the history read fails");
        assert_ne!(err.code(), Code::ResourceExhausted, "{backend:?}: {err:?}");
        hide("ALTER TABLE pulses_hidden RENAME TO pulses").await;
        env.client
            .clone()
            .evaluate(pb::EvaluateRequest::default())
            .await
            .expect("the model's own interval fits");
        env.stop().await;
    }
}

/// The count checked before the history is read is the training set's own: never below
/// the cells `prepare` builds (observations plus censored ones, times the features), and
/// the same as the check `prepare` makes on the population.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_counted_from_the_facts_is_not_below_the_training_set() {
    use vitals_learn_core::Cancel;
    use vitals_learner::domain::{self, Settings};
    use vitals_store::learner as store;
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        let until = at(end());
        let outcomes = store::outcomes_until(&env.store, until)
            .await
            .expect("outcomes");
        let facts = store::history_facts(&env.store, until)
            .await
            .expect("facts");
        let history = store::load_history(&env.store, until)
            .await
            .expect("history");
        for interval_days in [1, 7, 30] {
            let s = Settings {
                horizon_days: 30,
                interval_days,
                prior_strength: 50.0,
                l2_penalty: Some(0.1),
                max_dataset_cells: u64::MAX,
                borrow_from_global: true,
                challenger: false,
            };
            let counted =
                domain::check_facts(&facts, &outcomes, end(), &s).expect("under u64::MAX");
            let prep =
                domain::prepare(&history, &outcomes, end(), &s, &Cancel::never()).expect("prepare");
            let built = ((prep.data.len() + prep.censored) * prep.data.n_features()) as u64;
            assert!(
                counted >= built && built > 0,
                "{backend:?}, every {interval_days} days: counted {counted} < built {built}"
            );
            // One cell under the count: prepare refuses too (the same count).
            let tight = Settings {
                max_dataset_cells: counted - 1,
                ..s
            };
            assert!(domain::check_facts(&facts, &outcomes, end(), &tight).is_err());
            assert!(matches!(
                domain::prepare(&history, &outcomes, end(), &tight, &Cancel::never()),
                Err(vitals_learner::LearnerError::TooLarge(_))
            ));
        }
        env.stop().await;
    }
}
