//! TLS and mutual TLS end to end, with certificates made by rcgen for each test: the
//! all-in-one over TLS with auth on, `vitals_server::client` as the client (what scoring
//! uses for the learner), clients without the CA or without a certificate refused.

use std::path::Path;

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vitals_proto::profiles::v1::ListHealthProfilesRequest;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_server::AuthMode;
use vitals_server::auth::{Role, TokenEntry};
use vitals_server::client::{self, ClientInterceptor, ClientTls};
use vitals_test_support::tls::{Pki, TlsServer};

const ADMIN: &str = "tls-e2e-admin-token";

/// The all-in-one on 127.0.0.1:0 (SQLite in memory) over TLS (mutual when `mutual`),
/// auth on with one admin token.
async fn start(pki: &Pki, mutual: bool) -> TlsServer {
    let mut config = vitals::ServeConfig::for_tests("sqlite::memory:");
    config.server.auth = AuthMode::On;
    config.server.extra_tokens = vec![TokenEntry::for_token(Role::Admin, ADMIN, "tls e2e")];
    config.server.tls_cert = Some(pki.path("server.crt"));
    config.server.tls_key = Some(pki.path("server.key"));
    if mutual {
        config.server.tls_client_ca = Some(pki.path("ca.crt"));
    }
    TlsServer::start(|listener, shutdown| vitals::run(config, listener, shutdown)).await
}

/// Health over `channel`: the connection is accepted as soon as the server serves (the
/// listener is bound before it starts), so no polling is needed.
async fn health(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status())
}

async fn list_profiles(channel: Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut c = ProfilesServiceClient::with_interceptor(
        channel,
        ClientInterceptor::new(token).expect("token"),
    );
    c.list_health_profiles(ListHealthProfilesRequest::default())
        .await
        .map(|_| ())
}

fn tls(pki: &Pki, ca: &str, cert: Option<&str>) -> ClientTls {
    ClientTls {
        ca_cert: Some(pki.path(&format!("{ca}.crt"))),
        client_cert: cert.map(|c| pki.path(&format!("{c}.crt"))),
        client_key: cert.map(|c| pki.path(&format!("{c}.key"))),
        domain: None,
    }
}

#[tokio::test]
async fn tls_serves_verified_clients_and_refuses_plaintext() {
    let pki = Pki::new("server");
    let server = start(&pki, false).await;

    let channel = client::connect_lazy(&server.https(), &tls(&pki, "ca", None)).expect("client");
    assert_eq!(
        health(channel.clone()).await.unwrap(),
        ServingStatus::Serving
    );
    list_profiles(channel.clone(), Some(ADMIN))
        .await
        .expect("an authenticated call over TLS");
    // TLS does not replace the token.
    assert_eq!(
        list_profiles(channel, None).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // A client that does not trust the server's CA fails the handshake.
    let untrusting =
        client::connect_lazy(&server.https(), &tls(&pki, "other-ca", None)).expect("client");
    assert!(health(untrusting).await.is_err());

    // Plaintext to a TLS port gets no answer.
    let plain = client::connect_lazy(
        &format!("http://127.0.0.1:{}", server.port),
        &ClientTls::default(),
    )
    .expect("client");
    assert!(health(plain).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new("mutual");
    let server = start(&pki, true).await;

    let with_cert =
        client::connect_lazy(&server.https(), &tls(&pki, "ca", Some("client"))).expect("client");
    assert_eq!(
        health(with_cert.clone()).await.unwrap(),
        ServingStatus::Serving
    );
    list_profiles(with_cert, Some(ADMIN))
        .await
        .expect("an authenticated call over mTLS");

    // A service presenting its own server certificate (how scoring calls the learner).
    let mut scoring = vitals_server::ServerConfig::for_tests("sqlite::memory:");
    scoring.tls_cert = Some(pki.path("server.crt"));
    scoring.tls_key = Some(pki.path("server.key"));
    let service_tls = ClientTls::for_service(&scoring, Some(pki.path("ca.crt")));
    let service = client::connect_lazy(&server.https(), &service_tls).expect("client");
    assert_eq!(health(service).await.unwrap(), ServingStatus::Serving);

    // No client certificate: refused, even for the public health check.
    let without = client::connect_lazy(&server.https(), &tls(&pki, "ca", None)).expect("client");
    assert!(health(without.clone()).await.is_err());
    assert!(list_profiles(without, Some(ADMIN)).await.is_err());

    // A certificate from another CA: refused.
    let rogue =
        client::connect_lazy(&server.https(), &tls(&pki, "ca", Some("rogue"))).expect("client");
    assert!(health(rogue).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn unusable_tls_files_are_configuration_errors() {
    let pki = Pki::new("bad");
    let missing: &Path = &pki.path("missing.crt");
    let mut config = vitals::ServeConfig::for_tests("sqlite::memory:");
    config.server.tls_cert = Some(missing.to_path_buf());
    config.server.tls_key = Some(pki.path("server.key"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = vitals::run(config, listener, Box::pin(std::future::pending()))
        .await
        .expect_err("a missing certificate stops the server");
    assert_eq!(err.exit_code(), vitals_server::EXIT_CONFIG, "{err}");
    assert!(err.to_string().contains("VITALS_TLS_CERT"), "{err}");

    // A key that is not a key.
    let mut config = vitals::ServeConfig::for_tests("sqlite::memory:");
    config.server.tls_cert = Some(pki.path("server.crt"));
    config.server.tls_key = Some(pki.path("server.crt"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = vitals::run(config, listener, Box::pin(std::future::pending()))
        .await
        .expect_err("a certificate as key stops the server");
    assert_eq!(err.exit_code(), vitals_server::EXIT_CONFIG, "{err}");
    assert!(err.to_string().contains("VITALS_TLS_KEY"), "{err}");
}
