//! The cluster over real gRPC: the all-in-one, and the five services on their own ports,
//! each answering health and reflection, on SQLite and PostgreSQL.

mod common;

use std::collections::BTreeSet;

use tonic_health::pb::health_check_response::ServingStatus;
use vitals_proto::SERVICE_NAMES;
use vitals_server::ServerConfig;
use vitals_test_support::{TestServer, backends, health};

const HEALTH: &str = "grpc.health.v1.Health";

#[tokio::test]
async fn all_in_one_serves_every_service_health_and_reflection() {
    for backend in backends() {
        let server = common::all_in_one(backend).await;
        for name in SERVICE_NAMES.iter().chain(&[""]) {
            assert_eq!(
                health(server.addr, name).await.unwrap(),
                ServingStatus::Serving,
                "{backend:?} {name}"
            );
        }
        // An unknown service is NOT_FOUND, not silently SERVING.
        assert!(health(server.addr, "vitals.nope.v1.Nope").await.is_err());

        let want: BTreeSet<String> = SERVICE_NAMES
            .iter()
            .chain(&[HEALTH])
            .map(|s| s.to_string())
            .collect();
        let v1 = common::list_services_v1(server.channel().await).await;
        let v1alpha = common::list_services_v1alpha(server.channel().await).await;
        for listed in [&v1, &v1alpha] {
            assert!(
                want.is_subset(listed),
                "{backend:?}: listed {listed:?}, want {want:?}"
            );
        }
        server.stop().await.expect("clean stop");
    }
}

/// One standalone service on a shared database: serves its own API only.
async fn standalone(name: &str, url: &str) -> TestServer {
    let server = ServerConfig::for_tests(url);
    match name {
        "ingestion" => {
            let c = vitals_ingestion::Config {
                server,
                service: Default::default(),
            };
            TestServer::start(move |l, s| vitals_ingestion::run(c, l, s)).await
        }
        "profiles" => {
            let c = vitals_profiles::Config {
                server,
                service: Default::default(),
            };
            TestServer::start(move |l, s| vitals_profiles::run(c, l, s)).await
        }
        "scoring" => {
            let c = vitals_scoring::Config {
                server,
                service: Default::default(),
            };
            TestServer::start(move |l, s| vitals_scoring::run(c, l, s)).await
        }
        "learner" => {
            let c = vitals_learner::Config {
                server,
                service: Default::default(),
            };
            TestServer::start(move |l, s| vitals_learner::run(c, l, s)).await
        }
        "webhooks" => {
            let c = vitals_webhooks::Config {
                server,
                service: Default::default(),
            };
            TestServer::start(move |l, s| vitals_webhooks::run(c, l, s)).await
        }
        other => panic!("no service {other}"),
    }
}

#[tokio::test]
async fn five_services_on_their_own_ports_share_one_database() {
    let names = ["ingestion", "profiles", "scoring", "learner", "webhooks"];
    let sqlite = common::temp_db("four");
    let mut urls = vec![format!("sqlite://{}?mode=rwc", sqlite.display())];
    if backends().contains(&vitals_test_support::Backend::Postgres) {
        urls.push(
            vitals_test_support::fresh_url(vitals_test_support::Backend::Postgres)
                .await
                .unwrap(),
        );
    }
    for url in urls {
        let mut servers = Vec::new();
        for name in names {
            servers.push(standalone(name, &url).await);
        }
        let ports: BTreeSet<u16> = servers.iter().map(|s| s.addr.port()).collect();
        assert_eq!(ports.len(), 5, "each service has its own port");
        for (server, full) in servers.iter().zip(SERVICE_NAMES) {
            assert_eq!(
                health(server.addr, full).await.unwrap(),
                ServingStatus::Serving
            );
            let listed = common::list_services_v1alpha(server.channel().await).await;
            assert!(
                listed.contains(full),
                "{full} not listed by its own server: {listed:?}"
            );
            for other in SERVICE_NAMES.iter().filter(|o| *o != &full) {
                assert!(!listed.contains(*other), "{full}'s server lists {other}");
                assert!(
                    health(server.addr, other).await.is_err(),
                    "{full} reports {other}"
                );
            }
        }
        for s in servers {
            s.stop().await.expect("clean stop");
        }
    }
    let _ = std::fs::remove_file(&sqlite);
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_drains_open_calls() {
    use tokio_stream::StreamExt;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let mut server = common::all_in_one(vitals_test_support::Backend::Sqlite).await;
    // A long-lived call in flight: a health watch stream.
    let mut watch = HealthClient::new(server.channel().await)
        .watch(HealthCheckRequest {
            service: SERVICE_NAMES[2].to_string(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("first status").expect("ok");
    assert_eq!(first.status(), ServingStatus::Serving);

    server.signal_shutdown();
    // The call in flight is still served while draining, and sees NOT_SERVING.
    let next = watch
        .next()
        .await
        .expect("status while draining")
        .expect("ok");
    assert_eq!(next.status(), ServingStatus::NotServing);
    // Once the client ends its call, the server finishes draining and returns Ok.
    drop(watch);
    server.join().await.expect("drained cleanly");
}
