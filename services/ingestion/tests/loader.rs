//! The loader on the sample data over real gRPC: row counts in the store match the
//! files, and a second run stores nothing new.
//!
//! The data folder is `VITALS_SAMPLE_DIR` when set, else the repository's
//! `tests/data/socialnet7-small`. To stay fast in a debug build on 2 cores, the test
//! loads a deterministic subset (accounts whose id is divisible by
//! `VITALS_LOADER_TEST_DIVISOR`, default 210, i.e. every 30th account of the small set);
//! the full set is loaded by the benchmark (docs/bench-ingestion.md).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::start;
use vitals_ingestion::loader::{LoadArgs, load};
use vitals_test_support::backends;

fn sample_dir() -> PathBuf {
    match std::env::var("VITALS_SAMPLE_DIR") {
        Ok(d) if !d.is_empty() => {
            let dir = PathBuf::from(d);
            assert!(
                dir.join("event.csv.gz").is_file(),
                "VITALS_SAMPLE_DIR={} has no event.csv.gz (expected account.csv.gz, \
                 subscription.csv.gz, event_type.csv.gz and event.csv.gz)",
                dir.display()
            );
            dir
        }
        _ => vitals_test_support::sample_small(),
    }
}

/// Data rows of a gzip CSV whose first column (account id) passes `keep`.
fn count_rows(path: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .unwrap();
    s.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .filter(|l| keep(l.split(',').next().unwrap_or("")))
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_matches_the_files_and_is_idempotent() {
    let dir = sample_dir();
    let divisor: u64 = std::env::var("VITALS_LOADER_TEST_DIVISOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(210);
    let keep = |a: &str| a.parse::<u64>().is_ok_and(|n| n % divisor == 0);
    let accounts = count_rows(&dir.join("account.csv.gz"), keep);
    let subs = count_rows(&dir.join("subscription.csv.gz"), keep);
    let events = count_rows(&dir.join("event.csv.gz"), keep);
    let types = count_rows(&dir.join("event_type.csv.gz"), |_| true);
    assert!(
        accounts > 0 && events > 0,
        "the subset is empty: lower the divisor"
    );

    for backend in backends() {
        let env = start(backend).await;
        let mut args = LoadArgs::new(&dir, env.server.url());
        args.account_divisor = Some(divisor);
        let s = load(&args).await.expect("load");
        eprintln!("{backend:?}\n{}", s.report());
        assert_eq!(
            (s.accounts.read, s.accounts.accepted, s.accounts.skipped),
            (accounts, accounts, 0)
        );
        assert_eq!(
            (s.subscriptions.read, s.subscriptions.accepted),
            (subs, subs)
        );
        assert_eq!((s.event_types.read, s.event_types.accepted), (types, types));
        assert_eq!(
            (
                s.events.read,
                s.events.accepted,
                s.events.duplicates,
                s.events.skipped
            ),
            (events, events, 0, 0),
            "{backend:?}"
        );
        assert!(s.skip_reasons.is_empty(), "{:?}", s.skip_reasons);

        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts").await as u64,
            accounts
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts WHERE status = 'active'")
                .await as u64,
            accounts,
            "every account of the file is a real (not implicit) account"
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM subscriptions").await as u64,
            subs
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM events").await as u64,
            events,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await as u64,
            events
        );
        assert_eq!(
            env.int("SELECT SUM(event_count) FROM event_types").await as u64,
            events
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM event_types").await as u64,
            types
        );
        // Every event has user 0: one distinct user per roll-up row.
        assert_eq!(
            env.int("SELECT MAX(distinct_users) FROM usage_daily").await,
            1
        );

        // Again: nothing new.
        let again = load(&args).await.expect("second load");
        assert_eq!(
            (again.events.accepted, again.events.duplicates),
            (0, events),
            "{backend:?}"
        );
        assert_eq!(
            (again.accounts.accepted, again.accounts.duplicates),
            (0, accounts)
        );
        assert_eq!(
            (again.subscriptions.accepted, again.subscriptions.duplicates),
            (0, subs)
        );
        assert_eq!(env.int("SELECT COUNT(*) FROM events").await as u64, events);
        assert_eq!(
            env.int("SELECT SUM(count) FROM usage_daily").await as u64,
            events
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn loader_names_a_missing_folder() {
    let args = LoadArgs::new("/nonexistent/vitals-sample", "http://127.0.0.1:1");
    let e = load(&args).await.expect_err("no server, no folder");
    // The connection fails first (nothing listens on port 1); a reachable server with a
    // missing folder names the file instead.
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");

    let env = start(vitals_test_support::Backend::Sqlite).await;
    let args = LoadArgs::new("/nonexistent/vitals-sample", env.server.url());
    let e = load(&args).await.expect_err("missing folder");
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/vitals-sample/subscription.csv.gz")
            && msg.contains("cannot open"),
        "{msg}"
    );
    env.stop().await;
}
