//! Long-running operations through the all-in-one `vitals serve` (one
//! google.longrunning.Operations service for the learner and the scoring service), with
//! auth on and a 1 s request timeout: StartComputeScores answers an operation at once,
//! which a new connection reads until done with the ComputeScoresResponse; a read token
//! may read it but not cancel it (the admin role started it); the operation is listed;
//! a second server on the same database (another replica) answers about it. On SQLite
//! and PostgreSQL. (The training that outlives the request timeout, cancel and paging:
//! services/learner/tests/operations.rs.)

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use prost::Message;
use tonic::Code;
use vitals_proto::common::v1::OperationMetadata;
use vitals_proto::google::longrunning as lro;
use vitals_proto::google::longrunning::operations_client::OperationsClient;
use vitals_proto::scoring::v1 as pb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::Store;
use vitals_test_support::{backends, seed};

const ADMIN: &str = "operations-admin-token";
const READ: &str = "operations-read-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoring_run_as_an_operation_is_read_from_new_connections_and_replicas() {
    for backend in backends() {
        let url = common::shared_url(backend, "operations").await;
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        vitals_scorecard::defaults::ensure_default_profile(&store)
            .await
            .unwrap();
        let ids: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
        seed::accounts(&store, &ids, Utc::now() - chrono::Duration::days(400))
            .await
            .unwrap();
        let server = common::all_in_one_with_tokens(&url, (ADMIN, "ops admin"), READ, |c| {
            c.server.request_timeout = Duration::from_secs(1)
        })
        .await;

        let op = ScoringServiceClient::new(server.channel().await)
            .start_compute_scores(common::with_token(
                tonic::Request::new(pb::StartComputeScoresRequest {
                    request: Some(pb::ComputeScoresRequest::default()),
                }),
                ADMIN,
            ))
            .await
            .expect("start compute scores")
            .into_inner();
        assert!(op.name.starts_with("operations/"), "{}", op.name);

        // A read token reads it (new connection) but may not cancel it.
        let mut reader = OperationsClient::new(server.channel().await);
        let err = reader
            .cancel_operation(common::with_token(
                tonic::Request::new(lro::CancelOperationRequest {
                    name: op.name.clone(),
                }),
                READ,
            ))
            .await
            .expect_err("read may not cancel an admin's operation");
        assert_eq!(err.code(), Code::PermissionDenied, "{backend:?}: {err:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let o = OperationsClient::new(server.channel().await)
                .wait_operation(common::with_token(
                    tonic::Request::new(lro::WaitOperationRequest {
                        name: op.name.clone(),
                        timeout: None,
                    }),
                    READ,
                ))
                .await
                .expect("wait")
                .into_inner();
            if o.done {
                break o;
            }
            assert!(Instant::now() < deadline, "{backend:?}: not done");
        };
        let meta =
            OperationMetadata::decode(done.metadata.as_ref().unwrap().value.as_slice()).unwrap();
        assert_eq!(
            (
                meta.kind.as_str(),
                meta.target.as_str(),
                meta.started_by.as_str()
            ),
            ("compute_scores", "all", "ops admin")
        );
        let Some(lro::operation::Result::Response(any)) = done.result else {
            panic!("{backend:?}: {done:?}");
        };
        assert_eq!(
            any.type_url,
            "type.googleapis.com/vitals.scoring.v1.ComputeScoresResponse"
        );
        let r = pb::ComputeScoresResponse::decode(any.value.as_slice()).unwrap();
        assert_eq!(r.scored_count, 6, "{backend:?}: {r:?}");

        // Another replica on the same database answers about it.
        let replica = common::all_in_one_with_tokens(&url, (ADMIN, "ops admin"), READ, |c| {
            c.server.request_timeout = Duration::from_secs(1)
        })
        .await;
        let listed = OperationsClient::new(replica.channel().await)
            .list_operations(common::with_token(
                tonic::Request::new(lro::ListOperationsRequest {
                    filter: "kind = \"compute_scores\" AND done = true".into(),
                    ..Default::default()
                }),
                READ,
            ))
            .await
            .expect("list on the replica")
            .into_inner();
        assert_eq!(listed.operations.len(), 1, "{backend:?}");
        assert_eq!(listed.operations[0].name, op.name);
        // Without a token: UNAUTHENTICATED.
        let err = OperationsClient::new(replica.channel().await)
            .get_operation(lro::GetOperationRequest {
                name: op.name.clone(),
            })
            .await
            .expect_err("no token");
        assert_eq!(err.code(), Code::Unauthenticated);
        replica.stop().await.expect("clean stop");
        server.stop().await.expect("clean stop");
        store.close().await.unwrap();
    }
}
