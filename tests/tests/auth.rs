//! Bearer-token authentication end to end: every RPC of every service (taken from the
//! descriptor set, so a new RPC cannot be forgotten) called without a token, with a bad
//! token and with a token of each role; health and reflection stay public; the
//! all-in-one's first-start admin token.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use vitals_server::AuthMode;
use vitals_server::auth::{Role, TokenEntry};
use vitals_test_support::TestServer;

/// One RPC of the API, from the descriptors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rpc {
    path: String,
    server_streaming: bool,
}

/// Every RPC of the services in `vitals_proto::SERVICE_NAMES`, from the descriptor set.
fn api_rpcs() -> Vec<Rpc> {
    let fds = prost_types::FileDescriptorSet::decode(vitals_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set decodes");
    let mut out = Vec::new();
    for file in &fds.file {
        for svc in &file.service {
            let full = format!("{}.{}", file.package(), svc.name());
            if !vitals_proto::SERVICE_NAMES.contains(&full.as_str())
                && full != vitals_proto::OPERATIONS_SERVICE
            {
                continue;
            }
            for m in &svc.method {
                out.push(Rpc {
                    path: format!("/{full}/{}", m.name()),
                    server_streaming: m.server_streaming(),
                });
            }
        }
    }
    out.sort();
    out
}

/// The role tables the five services declare (each service's `ROLES`, `src/roles.rs`).
fn rpc_roles() -> impl Iterator<Item = &'static (&'static str, Role)> {
    [
        vitals_ingestion::ROLES,
        vitals_profiles::ROLES,
        vitals_scoring::ROLES,
        vitals_learner::ROLES,
        vitals_webhooks::ROLES,
        vitals_server::operations::ROLES,
    ]
    .into_iter()
    .flatten()
}

fn required_role(path: &str) -> Role {
    rpc_roles()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("{path} has no role in its service's ROLES"))
}

/// Calls `path` with one empty request message and `token`; returns the final status
/// code (OK when the call was accepted and answered without error). A server-streaming
/// call that the server accepted (response headers without an error) is reported OK
/// without reading the stream: a refusal by auth is always a trailers-only answer.
async fn call(channel: Channel, rpc: &Rpc, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut req = tonic::Request::new(tokio_stream::iter(vec![()]));
    if let Some(t) = token {
        let v: AsciiMetadataValue = format!("Bearer {t}").parse().expect("ascii token");
        req.metadata_mut().insert("authorization", v);
    }
    let path = PathAndQuery::try_from(rpc.path.clone()).expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.streaming(req, path, codec).await {
        Err(status) => status.code(),
        Ok(_) if rpc.server_streaming => Code::Ok,
        Ok(resp) => {
            let mut stream = resp.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(())) => continue,
                    Ok(None) => break Code::Ok,
                    Err(status) => break status.code(),
                }
            }
        }
    }
}

const TOKENS: [(Role, &str); 3] = [
    (Role::Read, "e2e-read-token"),
    (Role::Ingest, "e2e-ingest-token"),
    (Role::Admin, "e2e-admin-token"),
];

async fn server_with_auth(backend: vitals_test_support::Backend) -> TestServer {
    let url = vitals_test_support::fresh_url(backend)
        .await
        .expect("fresh database");
    let mut config = vitals::ServeConfig::for_tests(url);
    config.server.auth = AuthMode::On;
    config.server.extra_tokens = TOKENS
        .iter()
        .map(|(role, t)| TokenEntry::for_token(*role, t, format!("e2e {role}")))
        .collect();
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}

#[test]
fn role_table_covers_exactly_the_api() {
    let api: BTreeSet<String> = api_rpcs().into_iter().map(|r| r.path).collect();
    let table: BTreeSet<String> = rpc_roles().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        api.difference(&table).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "RPCs without a role"
    );
    assert_eq!(
        table.difference(&api).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "roles of RPCs that do not exist"
    );
    // Every service of the API has RPCs here (the descriptor walk found them all).
    for svc in vitals_proto::SERVICE_NAMES {
        assert!(
            api.iter().any(|p| p.starts_with(&format!("/{svc}/"))),
            "{svc} has no RPC in the descriptor set"
        );
    }
}

#[test]
fn docs_api_names_every_admin_only_rpc_in_its_role_table() {
    // docs/api.md's roles table must name each RPC that needs admin (the others are
    // described by patterns such as `Get*`).
    let doc = std::fs::read_to_string(vitals_test_support::repo_root().join("docs/api.md"))
        .expect("docs/api.md");
    let roles = doc
        .split("### Roles")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Roles section in docs/api.md");
    for (path, role) in rpc_roles() {
        let method = path.rsplit('/').next().unwrap_or(path);
        let admin_by_pattern = ["Create", "Update", "Delete", "Reorder"]
            .iter()
            .any(|p| method.starts_with(p));
        if *role == Role::Admin && !admin_by_pattern {
            assert!(
                roles.contains(&format!("`{method}`")),
                "docs/api.md roles table does not name admin-only {method}"
            );
        }
    }
    assert!(roles.contains("profile and scorecard writes"));
}

#[tokio::test]
async fn every_rpc_checks_the_token_and_the_role() {
    let rpcs = api_rpcs();
    assert!(rpcs.len() >= 40, "only {} RPCs found", rpcs.len());
    for backend in vitals_test_support::backends() {
        let server = server_with_auth(backend).await;
        let channel = server.channel().await;
        let mut failures = Vec::new();
        for rpc in &rpcs {
            let needs = required_role(&rpc.path);
            let mut check = |who: &str, got: Code, want: &str, ok: bool| {
                if !ok {
                    failures.push(format!("{} as {who}: got {got:?}, want {want}", rpc.path));
                }
            };
            let got = call(channel.clone(), rpc, None).await;
            check(
                "no token",
                got,
                "UNAUTHENTICATED",
                got == Code::Unauthenticated,
            );
            let got = call(channel.clone(), rpc, Some("not-a-known-token")).await;
            check(
                "unknown token",
                got,
                "UNAUTHENTICATED",
                got == Code::Unauthenticated,
            );
            for (role, token) in TOKENS {
                let got = call(channel.clone(), rpc, Some(token)).await;
                if role.allows(needs) {
                    check(
                        role.as_str(),
                        got,
                        "anything but UNAUTHENTICATED / PERMISSION_DENIED",
                        got != Code::Unauthenticated && got != Code::PermissionDenied,
                    );
                } else {
                    check(
                        role.as_str(),
                        got,
                        "PERMISSION_DENIED",
                        got == Code::PermissionDenied,
                    );
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} wrong answers:\n{}",
            failures.len(),
            failures.join("\n")
        );

        // Health and reflection need no token.
        assert_eq!(
            vitals_test_support::health(server.addr, "").await,
            Ok(ServingStatus::Serving)
        );
        let listed = common::list_services_v1(channel.clone()).await;
        assert!(listed.contains("vitals.scoring.v1.ScoringService"));
        let listed = common::list_services_v1alpha(channel).await;
        assert!(listed.contains("vitals.learner.v1.LearnerService"));
        server.stop().await.expect("clean stop");
    }
}

#[test]
fn the_roles_match_the_issue() {
    // The contract of the roles, independent of the table: ingest writes data, read reads
    // scores, admin manages profiles, scorecards and training.
    for (path, role) in [
        (
            "/vitals.ingestion.v1.IngestionService/IngestEvents",
            Role::Ingest,
        ),
        ("/vitals.scoring.v1.ScoringService/GetScore", Role::Read),
        ("/vitals.scoring.v1.ScoringService/WatchScores", Role::Read),
        (
            "/vitals.profiles.v1.ProfilesService/CreateHealthProfile",
            Role::Admin,
        ),
        (
            "/vitals.profiles.v1.ProfilesService/CreateScorecard",
            Role::Admin,
        ),
        ("/vitals.learner.v1.LearnerService/Train", Role::Admin),
    ] {
        assert_eq!(required_role(path), role, "{path}");
    }
}

/// Everything a child wrote on `pipe` until it ends (call after the child is gone).
fn drain(pipe: Option<impl std::io::Read>) -> String {
    let mut out = String::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_string(&mut out);
    }
    out
}

#[tokio::test]
async fn first_start_admin_token_goes_to_a_private_file_not_to_the_logs() {
    let db = common::temp_db("first-start");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let env = [("DATABASE_URL", url.as_str()), ("VITALS_AUTH", "on")];
    let token_file = std::path::PathBuf::from(format!("{}.admin-token", db.display()));

    // First start: the token is written next to the database, mode 0600; stdout (not a
    // terminal here, as in a pod) and the log name the file, never the token.
    let (mut child, addr) = common::spawn_vitals(&env);
    common::wait_serving(&mut child, addr, Duration::from_secs(60)).await;
    let token = std::fs::read_to_string(&token_file)
        .expect("vitals wrote the first-start token next to the database")
        .trim()
        .to_string();
    assert!(token.starts_with("vitals_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let list = Rpc {
        path: "/vitals.profiles.v1.ProfilesService/ListHealthProfiles".into(),
        server_streaming: false,
    };
    assert_eq!(
        call(channel.clone(), &list, None).await,
        Code::Unauthenticated
    );
    assert_eq!(call(channel, &list, Some(&token)).await, Code::Ok);
    let _ = child.0.kill();
    let _ = child.0.wait();
    let (out, err) = (drain(child.0.stdout.take()), drain(child.0.stderr.take()));
    assert!(
        !out.contains(&token) && !err.contains(&token),
        "the token is in the output: {out} {err}"
    );
    assert!(
        err.contains(&token_file.display().to_string()),
        "the log names the file: {err}"
    );

    // Only the hash is stored.
    let store = vitals_store::Store::connect(&url).await.unwrap();
    let stored = vitals_store::auth::list_tokens(&store).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].token_sha256, token);
    assert!(!stored[0].token_sha256.contains(&token["vitals_".len()..]));
    store.close().await.unwrap();

    // Second start: the file is left alone, the same token still works.
    std::fs::remove_file(&token_file).unwrap();
    let (mut child, addr) = common::spawn_vitals(&env);
    common::wait_serving(&mut child, addr, Duration::from_secs(60)).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(call(channel, &list, Some(&token)).await, Code::Ok);
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(!token_file.exists(), "a token file was written again");
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn first_start_token_file_that_cannot_be_written_stops_the_start_and_keeps_no_token() {
    let db = common::temp_db("first-start-unwritable");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let bad = std::env::temp_dir().join("vitals-no-such-folder/admin-token");
    let bad_s = bad.display().to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("VITALS_AUTH", "on"),
        ("VITALS_ADMIN_TOKEN_FILE", bad_s.as_str()),
    ];
    let (mut child, _addr) = common::spawn_vitals(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "vitals did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(64));
    let err = drain(child.0.stderr.take());
    assert!(
        err.contains("VITALS_ADMIN_TOKEN_FILE") && err.contains(&bad_s),
        "{err}"
    );
    let store = vitals_store::Store::connect(&url).await.unwrap();
    assert!(
        vitals_store::auth::list_tokens(&store)
            .await
            .unwrap()
            .is_empty(),
        "a token nobody received is kept"
    );
    store.close().await.unwrap();
    let _ = std::fs::remove_file(&db);
}
