//! Shutdown is bounded by the drain timeout: SIGTERM while a long blocking call runs (here
//! sentiment analysis of 15 MB of text) ends the process shortly after the drain timeout,
//! abandoning the work, instead of when the work would have finished.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use vitals_proto::ingestion::v1 as ing;

/// Texts of the long call: 250 of 60,000 bytes (under the 16 MiB message limit).
fn long_interactions() -> ing::RecordInteractionsRequest {
    let text: String =
        "the support was not great but the product is really very good and we love it "
            .repeat(800)
            .chars()
            .take(60_000)
            .collect();
    ing::RecordInteractionsRequest {
        interactions: (0..250)
            .map(|i| ing::Interaction {
                interaction_id: format!("i{i}"),
                account_id: "a".into(),
                channel: ing::Channel::Email as i32,
                direction: ing::Direction::Inbound as i32,
                occur_time: Some(prost_types::Timestamp {
                    seconds: 1_767_225_600,
                    nanos: 0,
                }),
                text: text.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

#[tokio::test]
async fn sigterm_during_a_long_blocking_call_exits_within_the_drain_timeout() {
    let db = common::temp_db("bounded-shutdown");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let (mut child, addr) =
        common::spawn_vitals(&[("DATABASE_URL", &url), ("VITALS_DRAIN_TIMEOUT", "1")]);
    common::wait_serving(&mut child, addr, Duration::from_secs(60)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ing::ingestion_service_client::IngestionServiceClient::new(channel);
    let started = Instant::now();
    let call = tokio::spawn(async move { client.record_interactions(long_interactions()).await });
    // Let the request arrive and its blocking work start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !call.is_finished(),
        "the long call ended too soon to test shutdown"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let signalled = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exit_after = signalled.elapsed();
    eprintln!("exited {exit_after:?} after SIGTERM (drain timeout 1 s)");
    // Drain timeout 1 s + closing 1 s + telemetry flush (nothing to flush) + 0.5 s for
    // blocking work, with room for a loaded machine.
    assert!(
        exit_after < Duration::from_secs(5),
        "exited {exit_after:?} after SIGTERM; the bound is about 2.5 s"
    );
    assert_eq!(status.code(), Some(0), "exit status");
    let outcome = call.await.expect("client task");
    assert!(
        outcome.is_err(),
        "the call finished ({:?} after it started) before the process exited: make it longer",
        started.elapsed()
    );
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("drain timed out"), "{err}");
    assert!(err.contains("stopped"), "{err}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
