//! The web UI (`/ui/`) of a real all-in-one server over HTTP/1.1, on the demo data (a
//! part of the small sample: loaded, trained and scored by `vitals demo`), with an
//! account named `<script>alert(1)</script>`: every page's status and content, escaping,
//! auth off and on (sign-in form, cookie, redirect without it, wrong token refused,
//! sign-out). Then each page in headless Chromium (skipped with a message when no
//! Chromium is installed): rendered with its SVG charts and no console error, a
//! screenshot kept under `target/ui-screenshots/`.
//!
//! The demo loads the accounts of the small sample whose id is divisible by
//! `VITALS_UI_TEST_DIVISOR` (default 9, about 120 accounts).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vitals::demo::{DemoArgs, DemoError, run as demo};
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_server::AuthMode;
use vitals_server::auth::{Role, TokenEntry};
use vitals_test_support::{Backend, TestServer, backends, fresh_url, sample_small};

const XSS_ID: &str = "xss<i>1</i>";
const XSS_NAME: &str = "<script>alert(1)</script>";
const READ_TOKEN: &str = "ui-read-token";

/// An HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`connection: close`), with an optional cookie and form body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Resp {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("cookie: {c}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req.push_str("content-type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Resp {
    http(addr, "GET", path, cookie, None).await
}

/// The path of an account's page.
fn account_path(id: &str) -> String {
    let enc: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/ui/accounts/{enc}")
}

/// A database with the demo data, two earlier (backfilled) runs, and the `<script>`
/// account scored with a pulse; returns its URL and the demo's as-of day.
async fn fixture(backend: Backend, tag: &str) -> (String, NaiveDate) {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", common::temp_db(tag).display()),
        Backend::Postgres => fresh_url(backend).await.expect("fresh database"),
    };
    let divisor = std::env::var("VITALS_UI_TEST_DIVISOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let mut args = DemoArgs::new(sample_small());
    args.database_url = Some(url.clone());
    args.account_divisor = Some(divisor);
    let mut out = Vec::new();
    match demo(&args, &mut out).await {
        Ok(_) => {}
        // The demo's last step evaluates the models with a backtest, which a portfolio
        // this small may not have the churns for; everything the UI shows is stored by
        // then (loaded, trained, scored).
        Err(DemoError::Rpc {
            rpc: "Evaluate", ..
        }) => {}
        Err(e) => panic!("demo failed: {e}\n{}", String::from_utf8_lossy(&out)),
    }
    let end = {
        let store = vitals_store::Store::connect(&url).await.expect("connect");
        let runs = vitals_store::scoring::overview::recent_runs(&store, 1)
            .await
            .expect("runs");
        store.close().await.expect("close");
        let run = runs.first().expect("the demo's scoring run");
        let as_of = run.details["as_of"].as_str().expect("as_of of the run");
        chrono::DateTime::parse_from_rfc3339(as_of)
            .expect("rfc3339")
            .date_naive()
    };

    let server = TestServer::start({
        let config = vitals::ServeConfig::for_tests(url.clone());
        move |l, s| vitals::run(config, l, s)
    })
    .await;
    let channel = server.channel().await;
    let ts = |days_before: i64| {
        let t = Utc.from_utc_datetime(&end.and_hms_opt(23, 59, 59).expect("time"))
            - chrono::Duration::days(days_before);
        prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        }
    };
    let mut ingestion = IngestionServiceClient::new(channel.clone());
    ingestion
        .upsert_accounts(ipb::UpsertAccountsRequest {
            accounts: vec![ipb::Account {
                account_id: XSS_ID.into(),
                display_name: XSS_NAME.into(),
                // Before the runs' as_of: an account created later is not scored then.
                create_time: Some(ts(60)),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("upsert the <script> account");
    // Two earlier runs (backfills: history only) and one at the demo's as_of, over every
    // account, the <script> one included.
    let mut scoring = ScoringServiceClient::new(channel);
    for days in [14, 7, 0] {
        scoring
            .compute_scores(spb::ComputeScoresRequest {
                scope: None,
                as_of: Some(ts(days)),
            })
            .await
            .expect("scoring run");
    }
    server.stop().await.expect("stop");
    let store = vitals_store::Store::connect(&url).await.expect("connect");
    vitals_store::ingestion::record_pulses(
        &store,
        &[vitals_store::ingestion::PulseRow {
            account_id: XSS_ID.into(),
            author: "<b>csm</b>".into(),
            value: 2,
            note: "<img src=x onerror=alert(2)>".into(),
            at: Utc::now(),
        }],
    )
    .await
    .expect("pulse");
    // A CSM's override (with markup in its note) and so an audit entry.
    vitals_store::overrides::set_override(
        &store,
        &vitals_store::overrides::Override {
            account_id: XSS_ID.into(),
            scorecard_id: "profile".into(),
            band: "green".into(),
            value: Some(8.5),
            reason_code: "exec_sponsor".into(),
            note: "<u>renewal call</u>".into(),
            set_by: "csm-ann".into(),
            set_ms: Utc::now().timestamp_millis(),
            expires_ms: None,
        },
    )
    .await
    .expect("override");
    let scored = vitals_test_support::query_int(
        &store,
        "SELECT COUNT(*) FROM score_snapshots WHERE account_id = 'xss<i>1</i>'",
    )
    .await;
    assert_eq!(
        scored, 3,
        "the <script> account has a snapshot per run ({url})"
    );
    store.close().await.expect("close");
    (url, end)
}

async fn serve(url: &str, auth: bool) -> TestServer {
    let mut config = vitals::ServeConfig::for_tests(url.to_owned());
    if auth {
        config.server.auth = AuthMode::On;
        config.server.extra_tokens =
            vec![TokenEntry::for_token(Role::Read, READ_TOKEN, "ui reader")];
    }
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}

/// Every page is served, has its content, and escapes what the data holds.
async fn check_pages(addr: SocketAddr, cookie: Option<&str>) {
    let page = |r: &Resp, what: &str| {
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{what}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert!(
            r.header("content-security-policy")
                .is_some_and(|c| c.contains("default-src 'none'")),
            "{what}"
        );
        assert!(
            !r.body.contains("<script"),
            "{what} holds a script: {}",
            r.body
        );
        assert!(!r.body.contains("<img"), "{what} holds an unescaped tag");
    };
    let portfolio = get(addr, "/ui/", cookie).await;
    page(&portfolio, "portfolio");
    for want in [
        "Portfolio",
        "<svg",
        "Score histogram",
        "Mean score over time",
        "Bands per profile",
        "/ui/risk?profile=",
        "KPI coverage",
    ] {
        assert!(portfolio.body.contains(want), "portfolio lacks {want:?}");
    }
    // The trend has a line per profile (three runs with means).
    assert!(portfolio.body.contains("<polyline"), "trend line");
    assert_eq!(
        get(addr, "/ui", cookie).await.header("location"),
        Some("/ui/")
    );

    let risk = get(addr, "/ui/risk?limit=500", cookie).await;
    page(&risk, "risk");
    assert!(
        risk.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped name"
    );
    assert!(
        risk.body.contains(&account_path(XSS_ID)),
        "link to the account"
    );
    assert!(risk.body.contains("Top drivers down"));
    let red = get(addr, "/ui/risk?band=red&min_churn=0", cookie).await;
    page(&red, "risk red");
    assert!(!red.body.contains("band green"), "only red rows");
    let bad = get(addr, "/ui/risk?band=blue", cookie).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("band: "), "{}", bad.body);
    assert_eq!(get(addr, "/ui/risk?limit=501", cookie).await.status, 400);

    let account = get(addr, &account_path(XSS_ID), cookie).await;
    page(&account, "account");
    for want in [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "Score history",
        "Sub-scores",
        "Drivers",
        "Why it changed",
        "Outcomes",
        "CSM pulse",
        "&lt;img src=x onerror=alert(2)&gt;",
        "&lt;b&gt;csm&lt;/b&gt;",
        "Manual override in force",
        "exec_sponsor",
        "&lt;u&gt;renewal call&lt;/u&gt;",
        "Override audit",
        "csm-ann",
    ] {
        assert!(account.body.contains(want), "account page lacks {want:?}");
    }
    assert!(account.body.contains("id=\"score-history\""), "score chart");
    let bad_since = get(
        addr,
        &format!("{}?since=yesterday", account_path(XSS_ID)),
        cookie,
    )
    .await;
    assert_eq!(bad_since.status, 400);
    assert!(bad_since.body.contains("since: "));
    assert_eq!(
        get(addr, "/ui/accounts/no-such-account", cookie)
            .await
            .status,
        404
    );

    let model = get(addr, "/ui/model", cookie).await;
    page(&model, "model");
    for want in [
        "ROC curve",
        "Calibration",
        "Backtest: churn probability",
        "KPI weights",
        "Drift",
        "id=\"roc\"",
    ] {
        assert!(model.body.contains(want), "model page lacks {want:?}");
    }
    assert_eq!(
        get(addr, "/ui/model?profile=nope", cookie).await.status,
        404
    );
    assert_eq!(get(addr, "/ui/nowhere", cookie).await.status, 404);
}

/// The account page of the most at-risk account of the demo has both history charts and
/// a "why it changed" table (the backfilled runs are its history).
async fn check_demo_account(addr: SocketAddr) {
    let risk = get(addr, "/ui/risk?limit=5", None).await;
    let href = risk
        .body
        .split("href=\"/ui/accounts/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|h| !h.starts_with("xss"))
        .expect("a demo account's link");
    let page = get(addr, &format!("/ui/accounts/{href}"), None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"churn-history\""), "churn chart");
    assert!(page.body.contains("Peer pct then"), "why-it-changed table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_pages_with_auth_off_and_on() {
    for backend in backends() {
        let (url, _) = fixture(backend, "ui").await;

        // Auth off: no sign-in, every page served.
        let server = serve(&url, false).await;
        check_pages(server.addr, None).await;
        check_demo_account(server.addr).await;
        assert_eq!(
            get(server.addr, "/ui/login", None).await.header("location"),
            Some("/ui/"),
            "no sign-in with auth off"
        );
        server.stop().await.expect("stop");

        // Auth on: nothing without the cookie; the form sets it.
        let server = serve(&url, true).await;
        let addr = server.addr;
        for path in [
            "/ui/",
            "/ui/risk",
            "/ui/model",
            &account_path(XSS_ID),
            "/ui/nowhere",
        ] {
            let r = get(addr, path, None).await;
            assert_eq!(r.status, 303, "{path} without a cookie");
            assert_eq!(r.header("location"), Some("/ui/login"), "{path}");
            assert!(!r.body.contains("alert"), "{path} leaks content");
        }
        let bogus = get(addr, "/ui/", Some("vitals_ui=bm9wZQ")).await;
        assert_eq!(bogus.status, 303, "a cookie of no token");
        let form = get(addr, "/ui/login", None).await;
        assert_eq!(form.status, 200);
        assert!(
            form.body
                .contains("<form method=\"post\" action=\"/ui/login\"")
        );
        let wrong = http(addr, "POST", "/ui/login", None, Some("token=wrong")).await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.header("set-cookie").is_none());
        assert!(wrong.body.contains("token: not accepted"));
        let ok = http(
            addr,
            "POST",
            "/ui/login",
            None,
            Some(&format!("token={READ_TOKEN}")),
        )
        .await;
        assert_eq!(ok.status, 303, "{}", ok.body);
        assert_eq!(ok.header("location"), Some("/ui/"));
        let set = ok.header("set-cookie").expect("cookie set").to_owned();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        assert!(!set.contains("Secure"), "no TLS, no Secure: {set}");
        assert!(
            !set.contains(READ_TOKEN),
            "the cookie is not the token's text: {set}"
        );
        let cookie = set.split(';').next().expect("name=value").to_owned();
        check_pages(addr, Some(&cookie)).await;
        assert!(
            get(addr, "/ui/", Some(&cookie))
                .await
                .body
                .contains("signed in: ui reader (read)")
        );
        let out = http(addr, "POST", "/ui/logout", Some(&cookie), Some("")).await;
        assert_eq!(out.status, 303);
        assert!(
            out.header("set-cookie")
                .is_some_and(|c| c.contains("Max-Age=0"))
        );
        server.stop().await.expect("stop");
        eprintln!("{backend:?}: web UI pages checked with auth off and on");
    }
}

/// The folder test artifacts go to: `target/ui-screenshots`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .expect("target folder");
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// The installed Chromium, if any.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
}

/// Runs headless Chromium on `url` with `args`; returns its stdout and stderr.
fn run_chromium(
    bin: &std::path::Path,
    profile: &std::path::Path,
    url: &str,
    args: &[&str],
) -> (String, String) {
    let out = std::process::Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        eprintln!(
            "SKIPPED every_page_renders_in_headless_chromium: no chromium on PATH \
             (install it with .ci/install-chromium)"
        );
        return;
    };
    let (url, _) = fixture(Backend::Sqlite, "ui-browser").await;
    let server = serve(&url, false).await;
    let base = format!("http://{}", server.addr);
    let dir = screenshot_dir();
    let profile = common::temp_db("chromium-profile").with_extension("d");
    let pages = [
        ("portfolio", "/ui/".to_owned(), 2),
        ("risk", "/ui/risk".to_owned(), 0),
        ("account", account_path(XSS_ID), 1),
        ("model", "/ui/model".to_owned(), 2),
    ];
    for (name, path, charts) in pages {
        let url = format!("{base}{path}");
        let shot = dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let bin2 = bin.clone();
        let (dom, log) = tokio::task::spawn_blocking({
            let (url, profile) = (url.clone(), profile.clone());
            move || run_chromium(&bin2, &profile, &url, &["--dump-dom"])
        })
        .await
        .expect("chromium task");
        let bin2 = bin.clone();
        let (_, shot_log) = tokio::task::spawn_blocking({
            let (url, profile, shot) = (url.clone(), profile.clone(), shot.clone());
            move || {
                run_chromium(
                    &bin2,
                    &profile,
                    &url,
                    &[&format!("--screenshot={}", shot.display())],
                )
            }
        })
        .await
        .expect("chromium task");
        assert!(dom.contains("<main>"), "{name}: not rendered: {dom}");
        assert!(
            dom.matches("<svg").count() >= charts,
            "{name}: {charts} SVG charts expected in the rendered DOM"
        );
        for l in log.lines().chain(shot_log.lines()) {
            let lower = l.to_ascii_lowercase();
            assert!(
                !(l.contains("Uncaught")
                    || (lower.contains("console") && lower.contains("error"))
                    || l.contains("Refused to")),
                "{name}: console error: {l}"
            );
        }
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{name}: no screenshot: {e}"));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: not a real screenshot"
        );
        eprintln!("{name}: {} ({} bytes)", shot.display(), png.len());
    }
    let _ = std::fs::remove_dir_all(&profile);
    server.stop().await.expect("stop");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
