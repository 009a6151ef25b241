//! Database outages without a restart: while PostgreSQL cannot be reached, every service
//! answers UNAVAILABLE (clients retry) and health reports each service NOT_SERVING (the
//! whole server, `""`, stays SERVING: the process is alive); once it is back,
//! health is SERVING and calls work again, with no restart of anything. PostgreSQL itself
//! is shared with other tests, so a loopback proxy between the server and it is cut.

mod common;

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use vitals_proto::SERVICE_NAMES;
use vitals_proto::ingestion::v1 as ing;
use vitals_proto::learner::v1 as lrn;
use vitals_proto::profiles::v1 as prf;
use vitals_proto::scoring::v1 as sco;
use vitals_test_support::proxy::{TcpProxy, reroute_postgres_url};
use vitals_test_support::{Backend, TestServer, backends};

/// One call of each kind on every service (reads and writes, a stream), each code.
async fn codes(channel: Channel, round: u32) -> Vec<(&'static str, Code)> {
    let code = |r: Result<(), tonic::Status>| match r {
        Ok(()) => Code::Ok,
        Err(s) => {
            if s.code() != Code::Ok && s.code() != Code::Unavailable {
                eprintln!("{s:?}");
            }
            s.code()
        }
    };
    let mut ingestion = ing::ingestion_service_client::IngestionServiceClient::new(channel.clone());
    let mut profiles = prf::profiles_service_client::ProfilesServiceClient::new(channel.clone());
    let mut scoring = sco::scoring_service_client::ScoringServiceClient::new(channel.clone());
    let mut learner = lrn::learner_service_client::LearnerServiceClient::new(channel);
    let account = format!("acme-{round}");
    let mut out = Vec::new();
    out.push((
        "UpsertAccounts",
        code(
            ingestion
                .upsert_accounts(ing::UpsertAccountsRequest {
                    accounts: vec![ing::Account {
                        account_id: account.clone(),
                        display_name: "Acme".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
    ));
    out.push((
        "ListAccounts",
        code(
            ingestion
                .list_accounts(ing::ListAccountsRequest::default())
                .await
                .map(drop),
        ),
    ));
    let event = ing::Event {
        event_id: format!("e-{round}"),
        account_id: "acme-0".into(),
        event_type: "login".into(),
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 0,
        }),
        ..Default::default()
    };
    let batch = ing::IngestEventsRequest {
        sequence: 1,
        events: vec![event],
    };
    let stream = async {
        let mut acks = ingestion
            .ingest_events(tokio_stream::iter([batch]))
            .await?
            .into_inner();
        match acks.next().await {
            Some(r) => r.map(drop),
            None => Err(tonic::Status::internal("no ack")),
        }
    };
    out.push(("IngestEvents", code(stream.await)));
    out.push((
        "ListHealthProfiles",
        code(
            profiles
                .list_health_profiles(prf::ListHealthProfilesRequest::default())
                .await
                .map(drop),
        ),
    ));
    out.push((
        "ListScores",
        code(
            scoring
                .list_scores(sco::ListScoresRequest::default())
                .await
                .map(drop),
        ),
    ));
    out.push((
        "ListOutcomes",
        code(
            learner
                .list_outcomes(lrn::ListOutcomesRequest::default())
                .await
                .map(drop),
        ),
    ));
    out.push((
        "ListModels",
        code(
            learner
                .list_models(lrn::ListModelsRequest::default())
                .await
                .map(drop),
        ),
    ));
    out
}

fn all(codes: &[(&'static str, Code)], want: Code) -> bool {
    codes.iter().all(|(_, c)| *c == want)
}

#[tokio::test]
async fn postgres_outage_is_unavailable_and_not_serving_then_recovers_without_restart() {
    // The server's log (its warnings name the driver's errors) goes with the test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    if !backends().contains(&Backend::Postgres) {
        eprintln!("note: VITALS_TEST_POSTGRES_URL not set: skipped");
        return;
    }
    let url = vitals_test_support::fresh_url(Backend::Postgres)
        .await
        .expect("fresh database");
    let (_, target) = reroute_postgres_url(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = TcpProxy::start(target).await;
    let (via_proxy, _) = reroute_postgres_url(&url, proxy.addr());
    let config = vitals::ServeConfig::for_tests(via_proxy);
    let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
    let channel = server.channel().await;

    let before = codes(channel.clone(), 0).await;
    assert!(all(&before, Code::Ok), "before the outage: {before:?}");

    proxy.cut();
    let during = codes(channel.clone(), 1).await;
    assert!(
        all(&during, Code::Unavailable),
        "while the database is cut off: {during:?}"
    );
    for name in SERVICE_NAMES {
        server
            .wait_for_status(name, ServingStatus::NotServing)
            .await;
    }
    // The process itself is alive (the liveness check): no restart for a database outage.
    assert_eq!(
        vitals_test_support::health(server.addr, "").await,
        Ok(ServingStatus::Serving)
    );
    // Still unavailable, not failing differently, after the pool gave up on its connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = codes(channel.clone(), 2).await;
    assert!(
        all(&still, Code::Unavailable),
        "later in the outage: {still:?}"
    );

    proxy.restore();
    for name in SERVICE_NAMES {
        server.wait_for_status(name, ServingStatus::Serving).await;
    }
    let after = codes(channel, 3).await;
    assert!(all(&after, Code::Ok), "after the outage: {after:?}");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn sqlite_file_stays_serving_under_the_readiness_probe() {
    let db = common::temp_db("readiness");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let config = vitals::ServeConfig::for_tests(url);
    let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
    // Three probe rounds: the file answers, health stays SERVING and calls work.
    for round in 0..3 {
        tokio::time::sleep(vitals_server::grpc::READINESS_INTERVAL).await;
        for name in SERVICE_NAMES.iter().chain(&[""]) {
            assert_eq!(
                vitals_test_support::health(server.addr, name).await,
                Ok(ServingStatus::Serving),
                "{name}"
            );
        }
        let got = codes(server.channel().await, round).await;
        assert!(all(&got, Code::Ok), "{got:?}");
    }
    server.stop().await.expect("clean stop");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
