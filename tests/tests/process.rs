//! The `vitals` binary as a user runs it: bad configuration exits 64 with one clear line,
//! SIGTERM drains and exits 0.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;

#[test]
fn bad_database_url_exits_64_with_one_clear_line() {
    for url in [
        "mysql://localhost/vitals",
        "postgres://nobody@127.0.0.1:1/none",
    ] {
        let out = Command::new(common::binary("vitals"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", url)
            .env("VITALS_AUTH", "off")
            .stdin(Stdio::null())
            .output()
            .expect("run vitals");
        assert_eq!(out.status.code(), Some(64), "{url}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{url}: want one line, got {stderr:?}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains("database"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_flag_exits_64_naming_it() {
    let out = Command::new(common::binary("vitals"))
        .args(["serve", "--drain-timeout", "soon"])
        .stdin(Stdio::null())
        .output()
        .expect("run vitals");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--drain-timeout"));
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    use tokio_stream::StreamExt;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let db = common::temp_db("sigterm");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let (mut child, addr) =
        common::spawn_vitals(&[("DATABASE_URL", &url), ("VITALS_DRAIN_TIMEOUT", "30")]);
    common::wait_serving(&mut child, addr, Duration::from_secs(30)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Draining: the open call is still answered, now NOT_SERVING, and the process waits for it.
    let next = watch.next().await.expect("still open").expect("ok");
    assert_eq!(next.status(), ServingStatus::NotServing);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "exited before the call in flight ended"
    );
    drop(watch);

    let status = common::wait_exit(&mut child.0, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("SIGTERM received"), "{err}");
    assert!(err.contains("all calls drained"), "{err}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
