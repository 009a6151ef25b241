//! `vitals demo` on the small sample (tests/data/socialnet7-small): the printed summary
//! holds together. Runs on SQLite (the demo's default: a temporary file) and, when
//! `VITALS_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL database too.
//!
//! To stay within a few minutes in a debug build on 2 cores (loading, then training with
//! weekly observations, dominate), the test loads the accounts of the small sample whose
//! id is divisible by `VITALS_DEMO_TEST_DIVISOR` (default 3: every 21st account of the
//! full sample, about 350 accounts, 370,000 events and 36 churns); set it to 1 for the
//! whole small sample.

use vitals::demo::{AT_RISK_ROWS, DemoArgs, DemoError, run};
use vitals_test_support::{Backend, backends, fresh_url, sample_small};

/// The numbers of the line of `text` starting with `prefix` (after trimming).
fn numbers_of(text: &str, prefix: &str) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"));
    line[line.find(prefix).unwrap() + prefix.len()..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| !w.is_empty() && *w != ".")
        .map(|w| w.trim_end_matches('.').parse::<f64>().unwrap())
        .collect()
}

/// The lines between the line starting with `start` and the next empty line.
fn section<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(start))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

fn check_summary(text: &str) {
    // "Portfolio as of 2020-05-31: 933 accounts scored"
    let scored = *numbers_of(text, "Portfolio as of ").last().unwrap();
    assert!(scored > 0.0, "nothing scored:\n{text}");

    // Band counts per profile; the total row adds them up.
    let rows = section(text, "profile ");
    let (total, profiles) = rows.split_last().expect("profile table");
    assert!(total.starts_with("total"), "{text}");
    assert!(!profiles.is_empty(), "{text}");
    let mut sums = [0.0; 4];
    for row in profiles {
        let n: Vec<f64> = row
            .split_whitespace()
            .rev()
            .take(4)
            .map(|w| w.parse().unwrap())
            .collect();
        let (green, yellow, red, count) = (n[0], n[1], n[2], n[3]);
        assert_eq!(
            red + yellow + green,
            count,
            "bands of {row:?} do not add up"
        );
        for (s, v) in sums.iter_mut().zip([count, red, yellow, green]) {
            *s += v;
        }
    }
    let t = numbers_of(text, "total");
    assert_eq!(t, sums.to_vec(), "total row is not the sum of the profiles");
    assert_eq!(
        t[0], scored,
        "band counts do not add up to the accounts scored"
    );
    assert_eq!(t[1] + t[2] + t[3], scored);

    // The histogram: 10 bins holding every score.
    let bins = section(text, "Health scores (0..10)");
    assert_eq!(bins.len(), 10, "{text}");
    let in_bins: f64 = bins
        .iter()
        .map(|b| {
            let after = &b[b.find([']', ')']).unwrap() + 1..];
            after
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    assert_eq!(in_bins, scored, "histogram does not hold every score");

    // Ten accounts most at risk, lowest score first, each with a band and a driver.
    let risk = section(text, "The ");
    let (header, risk) = risk.split_first().unwrap();
    assert!(header.contains("account"), "{text}");
    assert_eq!(risk.len(), AT_RISK_ROWS.min(scored as usize), "{text}");
    let mut last = f64::NEG_INFINITY;
    for (i, row) in risk.iter().enumerate() {
        let w: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(w[0], (i + 1).to_string());
        let score: f64 = w[3].parse().unwrap();
        assert!((0.0..=10.0).contains(&score) && score >= last, "{row}");
        last = score;
        assert!(["red", "yellow", "green"].contains(&w[4]), "{row}");
        assert!(row.contains("(p"), "no driver in {row:?}");
    }

    // The learner's AUCs.
    for line in ["churn probability: AUC", "health score:      AUC"] {
        let auc = numbers_of(text, line);
        assert!(
            (0.0..=1.0).contains(&auc[0]) && (0.0..=1.0).contains(&auc[1]),
            "{line}: {auc:?}"
        );
    }
}

/// The demo on `backend`: one test per backend, so that the two run side by side.
async fn demo_prints_a_consistent_portfolio(backend: Backend) {
    let divisor: u64 = std::env::var("VITALS_DEMO_TEST_DIVISOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut args = DemoArgs::new(sample_small());
    args.account_divisor = (divisor > 1).then_some(divisor);
    if backend == Backend::Postgres {
        args.database_url = Some(fresh_url(backend).await.expect("postgres database"));
    }
    let mut out = Vec::new();
    let summary = run(&args, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: demo failed: {e}"));
    let text = String::from_utf8(out).unwrap();
    eprintln!("{backend:?}:\n{text}");
    check_summary(&text);
    // What was printed is what was returned.
    assert_eq!(
        summary.profiles.iter().map(|p| p.scored).sum::<u32>(),
        summary.scored
    );
    assert_eq!(summary.at_risk.len(), AT_RISK_ROWS);
    assert!(
        summary.churn_auc > 0.5,
        "the learner learned nothing: {summary:?}"
    );
    // Churned customers are not in the portfolio.
    assert!(text.contains("marked CHURNED"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_consistent_portfolio_on_sqlite() {
    demo_prints_a_consistent_portfolio(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_consistent_portfolio_on_postgres() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    demo_prints_a_consistent_portfolio(Backend::Postgres).await;
}

#[tokio::test]
async fn missing_data_is_a_clear_error() {
    let args = DemoArgs::new("/nonexistent/vitals-demo-data");
    let mut out = Vec::new();
    let e = run(&args, &mut out).await.unwrap_err();
    assert!(matches!(e, DemoError::NoData(_)), "{e:?}");
    assert!(
        e.to_string().contains("/nonexistent/vitals-demo-data"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 64);
    assert!(out.is_empty(), "nothing is started without data");
}
