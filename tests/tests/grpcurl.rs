//! The real grpcurl binary (1.8, v1alpha reflection) against a running Vitals: list,
//! describe, and a health check, with no .proto files. `.ci/test` installs grpcurl.

mod common;

use std::process::Command;

fn grpcurl(args: &[&str]) -> String {
    let out = Command::new("grpcurl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "grpcurl not runnable ({e}): run the tests with `bash .ci/test`, which installs it"
            )
        });
    assert!(
        out.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn grpcurl_lists_describes_and_checks_health() {
    let server = common::all_in_one(vitals_test_support::Backend::Sqlite).await;
    let addr = server.addr.to_string();
    let addr = addr.as_str();
    let listed = tokio::task::spawn_blocking({
        let a = addr.to_string();
        move || grpcurl(&["-plaintext", &a, "list"])
    })
    .await
    .unwrap();
    for name in vitals_proto::SERVICE_NAMES
        .iter()
        .chain(&["grpc.health.v1.Health"])
    {
        assert!(
            listed.lines().any(|l| l.trim() == *name),
            "{name} not in {listed}"
        );
    }
    let a = addr.to_string();
    let (described, health) = tokio::task::spawn_blocking(move || {
        (
            grpcurl(&[
                "-plaintext",
                &a,
                "describe",
                "vitals.scoring.v1.ScoringService",
            ]),
            grpcurl(&["-plaintext", &a, "grpc.health.v1.Health/Check"]),
        )
    })
    .await
    .unwrap();
    assert!(described.contains("rpc GetScore"), "{described}");
    assert!(described.contains("rpc WatchScores"), "{described}");
    assert!(health.contains("\"status\": \"SERVING\""), "{health}");
    server.stop().await.unwrap();
}
