//! Long-running operations (docs/api.md "Long-running operations"): StartTraining and
//! StartEvaluation return a google.longrunning.Operation at once; it outlives the
//! server's request timeout, is stored, and is read, waited for, listed and cancelled
//! over new connections. Runs on SQLite (a file) and PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use common::{Env, Portfolio, at, global, quiet_args, ts};
use prost::Message;
use tonic::Code;
use vitals_proto::common::v1::OperationMetadata;
use vitals_proto::google::longrunning as lro;
use vitals_proto::google::longrunning::operations_client::OperationsClient;
use vitals_proto::learner::v1 as pb;
use vitals_server::WorkBudget;
use vitals_test_support::backends;

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 9, 1).expect("date")
}

/// The portfolio of the heavy-work tests: a training that takes seconds in a test build.
fn portfolio() -> Portfolio {
    Portfolio::new(48, 240, end())
}

fn train_request() -> pb::TrainRequest {
    pb::TrainRequest {
        profile: String::new(),
        options: Some(pb::TrainingOptions {
            observation_interval_days: Some(7),
            l2_penalty: Some(0.1),
            ..Default::default()
        }),
        as_of: Some(ts(at(end()))),
    }
}

/// A client on a new connection of its own.
async fn operations(env: &Env) -> OperationsClient<tonic::transport::Channel> {
    OperationsClient::new(env.server.channel().await)
}

fn metadata(op: &lro::Operation) -> OperationMetadata {
    let any = op.metadata.as_ref().expect("metadata");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/vitals.common.v1.OperationMetadata"
    );
    OperationMetadata::decode(any.value.as_slice()).expect("metadata decodes")
}

/// Waits (WaitOperation, each call under the request timeout) until `name` is done.
async fn wait_done(env: &Env, name: &str) -> lro::Operation {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let op = operations(env)
            .await
            .wait_operation(lro::WaitOperationRequest {
                name: name.to_string(),
                timeout: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
            })
            .await
            .expect("wait operation")
            .into_inner();
        if op.done {
            return op;
        }
        assert!(Instant::now() < deadline, "{name} not done in 120 s");
    }
}

fn one_second(c: &mut vitals_server::ServerConfig) {
    c.request_timeout = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_outlives_the_request_timeout_as_an_operation() {
    for backend in backends() {
        let env = Env::start_with(backend, quiet_args(), one_second, WorkBudget::default()).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;

        // The plain call cannot finish within the 1 s request timeout.
        let err = env
            .client
            .clone()
            .train(train_request())
            .await
            .expect_err("Train outlives the request timeout");
        assert_eq!(err.code(), Code::DeadlineExceeded, "{backend:?}: {err:?}");

        let started = Instant::now();
        let op = env
            .client
            .clone()
            .start_training(pb::StartTrainingRequest {
                request: Some(train_request()),
            })
            .await
            .expect("start training")
            .into_inner();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(op.name.starts_with("operations/"), "{}", op.name);
        assert!(!op.done);
        let m = metadata(&op);
        assert_eq!((m.kind.as_str(), m.target.as_str()), ("train", "global"));
        assert!(m.create_time.is_some() && m.end_time.is_none());

        // Read from a new connection while it runs, then until it is done.
        let running = operations(&env)
            .await
            .get_operation(lro::GetOperationRequest {
                name: op.name.clone(),
            })
            .await
            .expect("get operation")
            .into_inner();
        assert_eq!(running.name, op.name);
        let done = wait_done(&env, &op.name).await;
        assert!(
            started.elapsed() > Duration::from_secs(1),
            "{backend:?}: it did outlive the request timeout"
        );
        let m = metadata(&done);
        assert_eq!((m.phase.as_str(), m.progress_percent), ("done", 100.0));
        assert!(m.end_time.is_some());
        let Some(lro::operation::Result::Response(any)) = done.result else {
            panic!("{backend:?}: no response: {done:?}");
        };
        assert_eq!(
            any.type_url,
            "type.googleapis.com/vitals.learner.v1.TrainResponse"
        );
        let trained = pb::TrainResponse::decode(any.value.as_slice()).expect("decodes");
        assert_eq!(global(&trained).version, 1, "{backend:?}");
        // The model is stored like Train's.
        let models = env
            .client
            .clone()
            .list_models(pb::ListModelsRequest::default())
            .await
            .expect("list models")
            .into_inner();
        assert!(!models.models.is_empty());
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_training_ends_cancelled_and_stores_nothing() {
    for backend in backends() {
        let env = Env::start_with(backend, quiet_args(), one_second, WorkBudget::default()).await;
        let p = portfolio();
        env.put_portfolio(&p).await;
        env.record(p.churn_outcomes()).await;
        let op = env
            .client
            .clone()
            .start_training(pb::StartTrainingRequest {
                request: Some(train_request()),
            })
            .await
            .expect("start training")
            .into_inner();
        operations(&env)
            .await
            .cancel_operation(lro::CancelOperationRequest {
                name: op.name.clone(),
            })
            .await
            .expect("cancel");
        let done = wait_done(&env, &op.name).await;
        assert!(metadata(&done).cancel_requested);
        let Some(lro::operation::Result::Error(status)) = done.result else {
            panic!("{backend:?}: not cancelled: {done:?}");
        };
        assert_eq!(
            status.code,
            Code::Cancelled as i32,
            "{backend:?}: {status:?}"
        );
        let models = env
            .client
            .clone()
            .list_models(pb::ListModelsRequest::default())
            .await
            .expect("list models")
            .into_inner();
        assert!(models.models.is_empty(), "{backend:?}: {:?}", models.models);
        // Cancelling a finished operation changes nothing.
        operations(&env)
            .await
            .cancel_operation(lro::CancelOperationRequest {
                name: op.name.clone(),
            })
            .await
            .expect("cancel again");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_listed_by_page_and_filter_and_bad_requests_name_the_field() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        // Evaluations without a model end at once, with Evaluate's error (NOT_FOUND).
        let mut names = Vec::new();
        for _ in 0..3 {
            let op = env
                .client
                .clone()
                .start_evaluation(pb::StartEvaluationRequest {
                    request: Some(pb::EvaluateRequest::default()),
                })
                .await
                .expect("start evaluation")
                .into_inner();
            names.push(op.name);
        }
        for name in &names {
            let done = wait_done(&env, name).await;
            assert_eq!(metadata(&done).phase, "failed");
            let Some(lro::operation::Result::Error(status)) = done.result else {
                panic!("{backend:?}: {done:?}");
            };
            assert_eq!(status.code, Code::NotFound as i32, "{status:?}");
        }
        let mut client = operations(&env).await;
        let list = |filter: &str, page_size: i32, page_token: String| lro::ListOperationsRequest {
            name: "operations".into(),
            filter: filter.into(),
            page_size,
            page_token,
            return_partial_success: false,
        };
        let p1 = client
            .list_operations(list("", 2, String::new()))
            .await
            .expect("page 1")
            .into_inner();
        assert_eq!(p1.operations.len(), 2);
        assert!(!p1.next_page_token.is_empty());
        let p2 = client
            .list_operations(list("", 2, p1.next_page_token.clone()))
            .await
            .expect("page 2")
            .into_inner();
        assert_eq!(p2.operations.len(), 1);
        assert!(p2.next_page_token.is_empty());
        let mut listed: Vec<String> = p1
            .operations
            .iter()
            .chain(&p2.operations)
            .map(|o| o.name.clone())
            .collect();
        listed.sort();
        names.sort();
        assert_eq!(listed, names, "{backend:?}");
        for (filter, want) in [
            ("done = true", 3),
            ("done = false", 0),
            ("kind = \"evaluate\"", 3),
            ("kind = \"train\" AND done = true", 0),
        ] {
            let r = client
                .list_operations(list(filter, 10, String::new()))
                .await
                .expect("filtered")
                .into_inner();
            assert_eq!(r.operations.len(), want, "{backend:?}: {filter}");
        }
        // A token made for other filters, a bad filter, a bad name: INVALID_ARGUMENT.
        let err = client
            .list_operations(list("done = true", 2, p1.next_page_token))
            .await
            .expect_err("token of another filter");
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = client
            .list_operations(list("owner = me", 2, String::new()))
            .await
            .expect_err("bad filter");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("filter"), "{}", err.message());
        let err = client
            .get_operation(lro::GetOperationRequest {
                name: "jobs/1".into(),
            })
            .await
            .expect_err("bad name");
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = client
            .get_operation(lro::GetOperationRequest {
                name: "operations/ffff".into(),
            })
            .await
            .expect_err("unknown");
        assert_eq!(err.code(), Code::NotFound);
        // A bad nested field is refused before any operation starts, named in full.
        let err = env
            .client
            .clone()
            .start_training(pb::StartTrainingRequest {
                request: Some(pb::TrainRequest {
                    profile: "not a profile name".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect_err("bad profile");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("request.profile"),
            "{}",
            err.message()
        );
        // Deleted operations are gone.
        client
            .delete_operation(lro::DeleteOperationRequest {
                name: names[0].clone(),
            })
            .await
            .expect("delete");
        let err = client
            .get_operation(lro::GetOperationRequest {
                name: names[0].clone(),
            })
            .await
            .expect_err("deleted");
        assert_eq!(err.code(), Code::NotFound);
        env.stop().await;
    }
}
