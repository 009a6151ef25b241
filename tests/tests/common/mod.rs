//! Shared helpers of the end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};
use vitals_test_support::TestServer;

/// Starts the all-in-one on a fresh database of `backend`.
pub async fn all_in_one(backend: vitals_test_support::Backend) -> TestServer {
    let url = vitals_test_support::fresh_url(backend)
        .await
        .expect("fresh database");
    let config = vitals::ServeConfig::for_tests(url);
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}

/// The services reflection v1 lists.
pub async fn list_services_v1(channel: Channel) -> BTreeSet<String> {
    use v1::server_reflection_client::ServerReflectionClient;
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection v1 call")
        .into_inner();
    let resp = stream.next().await.expect("one answer").expect("ok answer");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// The services reflection v1alpha (what grpcurl 1.8 speaks) lists.
pub async fn list_services_v1alpha(channel: Channel) -> BTreeSet<String> {
    use v1alpha::server_reflection_client::ServerReflectionClient;
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection v1alpha call")
        .into_inner();
    let resp = stream.next().await.expect("one answer").expect("ok answer");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// Path of a binary of the workspace, next to the test executable's folder
/// (`target/<profile>/<name>`): cargo builds the workspace's binaries before its tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "binary {} not built (run the tests with `cargo nextest run --workspace`)",
        path.display()
    );
    path
}

/// A free local port (bound then released, for a child process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process killed when dropped (so a failing test leaves nothing behind).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vitals serve` as a process on a free port with `env`; returns it and its address.
pub fn spawn_vitals(env: &[(&str, &str)]) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = Command::new(binary("vitals"));
    cmd.arg("serve")
        .env("VITALS_LISTEN", addr.to_string())
        .env("VITALS_AUTH", "off")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (ChildGuard(cmd.spawn().expect("spawn vitals serve")), addr)
}

/// Waits until the `vitals serve` child answers SERVING on `addr`, failing the test when
/// it exits first or is not serving within `within`.
pub async fn wait_serving(child: &mut ChildGuard, addr: SocketAddr, within: std::time::Duration) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let deadline = std::time::Instant::now() + within;
    while vitals_test_support::health(addr, "").await != Ok(ServingStatus::Serving) {
        assert!(
            child.0.try_wait().expect("try_wait").is_none(),
            "vitals serve exited early"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "vitals not serving within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits for a child to exit, polling so that the runtime keeps running (a client's
/// connection task must run to close its call).
pub async fn wait_exit(child: &mut Child, within: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process did not exit within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A unique path for a temporary SQLite file.
pub fn temp_db(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "vitals-e2e-{tag}-{}-{nanos}.db",
        std::process::id()
    ))
}

/// A database two servers (or a server and the test's own store) can share: a fresh
/// SQLite file named after `tag`, or a fresh PostgreSQL database.
pub async fn shared_url(backend: vitals_test_support::Backend, tag: &str) -> String {
    match backend {
        vitals_test_support::Backend::Sqlite => {
            format!("sqlite://{}?mode=rwc", temp_db(tag).display())
        }
        vitals_test_support::Backend::Postgres => vitals_test_support::fresh_url(backend)
            .await
            .expect("fresh database"),
    }
}

/// `r` carrying the bearer token `token`.
pub fn with_token<T>(mut r: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    let v: tonic::metadata::AsciiMetadataValue =
        format!("Bearer {token}").parse().expect("ascii token");
    r.metadata_mut().insert("authorization", v);
    r
}

/// The all-in-one on `url` with auth on and two tokens: `admin` (admin role; the token and
/// the name the server records as the actor) and `read` (read role); `adjust` changes the
/// rest of the test configuration.
pub async fn all_in_one_with_tokens(
    url: &str,
    (admin, admin_name): (&str, &str),
    read: &str,
    adjust: impl FnOnce(&mut vitals::ServeConfig),
) -> TestServer {
    use vitals_server::auth::{Role, TokenEntry};
    let mut config = vitals::ServeConfig::for_tests(url.to_string());
    config.server.auth = vitals_server::AuthMode::On;
    config.server.extra_tokens = vec![
        TokenEntry::for_token(Role::Admin, admin, admin_name.to_string()),
        TokenEntry::for_token(Role::Read, read, "test dashboard".to_string()),
    ];
    adjust(&mut config);
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}
