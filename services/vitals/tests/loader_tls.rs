//! `vitals load` against an ingestion server that serves TLS (and mutual TLS), with
//! certificates made by rcgen for each test: a tiny folder loads over `https://` with
//! `--ca-cert` (and `--client-cert` / `--client-key`), and the failures say which flag
//! is missing or which file is bad.

use std::io::Write;
use std::path::{Path, PathBuf};

use vitals::loader::{LoadArgs, LoadError, load};
use vitals_ingestion::{Config, IngestionArgs};
use vitals_server::ServerConfig;
use vitals_test_support::tls::{Pki, TlsServer};

fn write_gz(path: &Path, text: &str) {
    let f = std::fs::File::create(path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(text.as_bytes()).expect("write");
    gz.finish().expect("finish");
}

/// A sample-data folder of 2 accounts, 2 subscriptions, 2 event types and 5 events.
fn tiny_folder(dir: &Pki) -> PathBuf {
    let d = dir.path("data");
    std::fs::create_dir_all(&d).expect("data dir");
    write_gz(
        &d.join("account.csv.gz"),
        "account_id,channel,date_of_birth,country\n1,web,1980-01-02,FR\n2,appstore1,1990-03-04,DE\n",
    );
    write_gz(
        &d.join("subscription.csv.gz"),
        "account_id,product,start_date,end_date,mrr,quantity,units,bill_period_months,discount\n\
         1,basic,2020-01-01,2020-02-01,10,,,1,0\n\
         2,basic,2020-01-05,,10,,,1,0\n",
    );
    write_gz(
        &d.join("event_type.csv.gz"),
        "event_type_id,event_type_name\n0,post\n1,like\n",
    );
    write_gz(
        &d.join("event.csv.gz"),
        "account_id,event_time,event_type,user_id,event_value\n\
         1,2020-01-02 10:00:00,post,0,\n\
         1,2020-01-02 11:00:00,like,0,\n\
         1,2020-01-03 09:30:00,post,0,2.5\n\
         2,2020-01-06 08:00:00,post,0,\n\
         2,2020-01-06 08:00:00,post,0,\n",
    );
    d
}

/// The ingestion service alone on 127.0.0.1:0 over TLS (mutual when `mutual`).
async fn start(pki: &Pki, mutual: bool) -> TlsServer {
    let mut server = ServerConfig::for_tests("sqlite::memory:");
    server.tls_cert = Some(pki.path("server.crt"));
    server.tls_key = Some(pki.path("server.key"));
    if mutual {
        server.tls_client_ca = Some(pki.path("ca.crt"));
    }
    let config = Config {
        server,
        service: IngestionArgs::default(),
    };
    TlsServer::start(|listener, shutdown| vitals_ingestion::run(config, listener, shutdown)).await
}

fn args(data: &Path, addr: String) -> LoadArgs {
    let mut a = LoadArgs::new(data, addr);
    a.no_outcomes = true;
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_loads_over_tls_with_the_ca_and_names_what_is_missing() {
    let dir = Pki::new("loader-tls");
    let data = tiny_folder(&dir);
    let server = start(&dir, false).await;

    // With the CA: everything arrives (the repeated event is a duplicate).
    let mut with_ca = args(&data, server.https());
    with_ca.ca_cert = Some(dir.path("ca.crt"));
    let s = load(&with_ca).await.expect("load over https with the CA");
    assert_eq!((s.accounts.read, s.accounts.accepted), (2, 2));
    assert_eq!((s.subscriptions.read, s.subscriptions.accepted), (2, 2));
    assert_eq!((s.event_types.read, s.event_types.accepted), (2, 2));
    assert_eq!(
        (s.events.read, s.events.accepted, s.events.duplicates),
        (5, 5, 0),
        "the repeated event gets its own id (:1)"
    );
    // Again: nothing new.
    let again = load(&with_ca).await.expect("second load");
    assert_eq!((again.events.accepted, again.events.duplicates), (0, 5));

    // Without the CA: refused before connecting, naming the flag.
    let e = load(&args(&data, server.https()))
        .await
        .expect_err("https without a CA");
    assert!(matches!(e, LoadError::Addr(..)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("--ca-cert") && msg.contains("VITALS_CA_CERT"),
        "{msg}"
    );

    // A CA that did not sign the server certificate: the handshake fails.
    let mut wrong = args(&data, server.https());
    wrong.ca_cert = Some(dir.path("other-ca.crt"));
    let e = load(&wrong).await.expect_err("wrong CA");
    assert!(matches!(e, LoadError::Connect(..)), "{e:?}");
    assert!(e.to_string().contains(&server.https()), "{e}");

    // A CA file that does not exist, or that holds no certificate: the flag and the file.
    let mut missing = args(&data, server.https());
    missing.ca_cert = Some(dir.path("nope.crt"));
    let msg = load(&missing).await.expect_err("missing CA").to_string();
    assert!(
        msg.contains("--ca-cert") && msg.contains("nope.crt"),
        "{msg}"
    );
    let mut not_pem = args(&data, server.https());
    not_pem.ca_cert = Some(data.join("event.csv.gz"));
    let msg = load(&not_pem).await.expect_err("not a CA").to_string();
    assert!(
        msg.contains("--ca-cert") && msg.contains("event.csv.gz") && msg.contains("no PEM"),
        "{msg}"
    );

    // TLS settings with an http:// address are refused, not ignored.
    let mut plain = args(&data, format!("http://127.0.0.1:{}", server.port));
    plain.ca_cert = Some(dir.path("ca.crt"));
    let msg = load(&plain).await.expect_err("http with a CA").to_string();
    assert!(msg.contains("use https://"), "{msg}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_presents_its_client_certificate_for_mutual_tls() {
    let dir = Pki::new("loader-mtls");
    let data = tiny_folder(&dir);
    let server = start(&dir, true).await;

    let mut mtls = args(&data, server.https());
    mtls.ca_cert = Some(dir.path("ca.crt"));
    mtls.client_cert = Some(dir.path("client.crt"));
    mtls.client_key = Some(dir.path("client.key"));
    let s = load(&mtls).await.expect("load over mutual TLS");
    assert_eq!((s.events.read, s.events.accepted), (5, 5));

    // Without a client certificate the server refuses the connection.
    let mut no_cert = args(&data, server.https());
    no_cert.ca_cert = Some(dir.path("ca.crt"));
    assert!(load(&no_cert).await.is_err(), "mTLS without a certificate");

    // A key file given as the certificate: the flag and the file are named.
    let mut swapped = mtls.clone();
    swapped.client_cert = Some(dir.path("client.key"));
    let msg = load(&swapped)
        .await
        .expect_err("bad client cert")
        .to_string();
    assert!(
        msg.contains("--client-cert") && msg.contains("client.key"),
        "{msg}"
    );
    // A certificate without its key.
    let mut half = mtls.clone();
    half.client_key = None;
    let msg = load(&half).await.expect_err("cert without key").to_string();
    assert!(
        msg.contains("--client-cert") && msg.contains("--client-key"),
        "{msg}"
    );
    server.stop().await;
}
