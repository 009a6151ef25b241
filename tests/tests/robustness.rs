//! The standing robustness suite, through the product (docs/reliability.md, "Input
//! validation and the robustness suite"): the real `vitals serve` binary is killed with
//! SIGKILL in the middle of a `vitals load`, restarted on the same database, and the
//! load is run again: the database then holds exactly the events of the files, none lost
//! and none doubled, on SQLite (a file) and PostgreSQL.
//!
//! Bounded in time: a subset of the small sample (accounts whose id is divisible by
//! `VITALS_KILL_TEST_DIVISOR`, default 70: every 10th account of the small set, about
//! 120,000 events), loopback only. Needs the `vitals` binary (`cargo build -p vitals`,
//! or run the workspace's tests).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, Statement};
use vitals_test_support::{Backend, backends};

/// Data rows of a gzip CSV whose first column (account id) is divisible by `divisor`.
fn count_rows(path: &Path, divisor: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .expect("gzip csv");
    s.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|a| a.parse::<u64>().ok())
                .is_some_and(|n| n % divisor == 0)
        })
        .count() as u64
}

/// Events in the database at `url`, read directly (not through the server).
async fn events_in(url: &str) -> u64 {
    let db = Database::connect(url).await.expect("connect to count");
    let backend = db.get_database_backend();
    let n = match db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM events",
        ))
        .await
    {
        // Before the server has migrated the database there is no table yet.
        Ok(row) => row
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let _ = db.close().await;
    n.max(0) as u64
}

/// Starts `vitals serve` on `url` and waits until it is serving.
async fn serve(url: &str) -> (common::ChildGuard, std::net::SocketAddr) {
    let (mut child, addr) = common::spawn_vitals(&[("DATABASE_URL", url)]);
    common::wait_serving(&mut child, addr, Duration::from_secs(60)).await;
    (child, addr)
}

/// `vitals load` of the subset into `addr`, as a child process.
fn load(dir: &Path, addr: std::net::SocketAddr, divisor: u64) -> common::ChildGuard {
    let child = Command::new(common::binary("vitals"))
        .arg("load")
        .arg("--dir")
        .arg(dir)
        .args(["--addr", &format!("http://{addr}")])
        .args(["--account-divisor", &divisor.to_string()])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("VITALS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vitals load");
    common::ChildGuard(child)
}

fn output(child: &mut std::process::Child) -> String {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_mid_load_then_reload_gives_the_exact_event_count() {
    let dir = vitals_test_support::sample_small();
    let divisor: u64 = std::env::var("VITALS_KILL_TEST_DIVISOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(70);
    let expected = count_rows(&dir.join("event.csv.gz"), divisor);
    assert!(expected > 0, "the subset is empty: lower the divisor");

    for backend in backends() {
        let db_file = common::temp_db("kill9");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", db_file.display()),
            Backend::Postgres => vitals_test_support::fresh_url(backend)
                .await
                .expect("fresh PostgreSQL database"),
        };

        // Load, and kill -9 the server once a third of the events are committed (the
        // loader's streams then have batches in flight).
        let (mut server, addr) = serve(&url).await;
        let mut loader = load(&dir, addr, divisor);
        let deadline = Instant::now() + Duration::from_secs(300);
        let at_kill = loop {
            let n = events_in(&url).await;
            if n >= expected / 3 {
                break n;
            }
            assert!(
                loader.0.try_wait().expect("try_wait").is_none(),
                "{backend:?}: the load ended before a third of the events were in: {}",
                output(&mut loader.0)
            );
            assert!(Instant::now() < deadline, "{backend:?}: too slow (300 s)");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        server.0.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
        let killed = common::wait_exit(&mut server.0, Duration::from_secs(10)).await;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&killed),
            Some(9),
            "{backend:?}: {killed:?}"
        );
        assert!(
            at_kill < expected,
            "{backend:?}: the load was not interrupted ({at_kill} of {expected} events \
             already in): raise VITALS_KILL_TEST_DIVISOR's subset"
        );
        let status = common::wait_exit(&mut loader.0, Duration::from_secs(120)).await;
        assert!(
            !status.success(),
            "{backend:?}: the loader should fail when its server dies: {}",
            output(&mut loader.0)
        );
        let after_kill = events_in(&url).await;
        assert!(
            after_kill < expected,
            "{backend:?}: {after_kill} of {expected}"
        );

        // Restart on the same database and load everything again.
        let (server, addr) = serve(&url).await;
        let mut loader = load(&dir, addr, divisor);
        let status = common::wait_exit(&mut loader.0, Duration::from_secs(600)).await;
        let report = output(&mut loader.0);
        assert!(status.success(), "{backend:?}: reload failed: {report}");
        assert_eq!(
            events_in(&url).await,
            expected,
            "{backend:?}: events after kill -9 at {at_kill} and a reload\n{report}"
        );
        eprintln!(
            "{backend:?}: killed with {at_kill} events in ({after_kill} after the kill), \
             {expected} after the reload"
        );
        drop(server);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db_file.display()));
        }
    }
}
