//! Segment-compatible HTTP ingestion end to end, on the all-in-one with auth on, on
//! every backend: Basic auth with the write key, bearer, 401, 403, bad JSON and bad
//! fields (400 naming the field), a retried messageId not counted twice, a track
//! attributed through the user's last group, a batch of mixed calls, the limits.

mod common;

use base64::Engine;
use serde_json::json;
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_server::AuthMode;
use vitals_server::auth::{Role, TokenEntry};
use vitals_store::Store;
use vitals_test_support::http1::{Answer, Http1};
use vitals_test_support::{Backend, TestServer, backends, query_int};

const INGEST: &str = "seg-ingest-token";
const READ: &str = "seg-read-token";

/// The all-in-one with auth on, on a database the test can read too.
async fn server(backend: Backend, tag: &str) -> (TestServer, Store) {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", common::temp_db(tag).display()),
        Backend::Postgres => vitals_test_support::fresh_url(backend)
            .await
            .expect("fresh database"),
    };
    let mut config = vitals::ServeConfig::for_tests(url.clone());
    config.server.auth = AuthMode::On;
    config.server.extra_tokens = vec![
        TokenEntry::for_token(Role::Ingest, INGEST, "segment source"),
        TokenEntry::for_token(Role::Read, READ, "dashboards"),
    ];
    let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
    let store = Store::connect(&url).await.expect("test's own connection");
    (server, store)
}

fn basic(write_key: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
    format!("Basic {b64}")
}

async fn post(c: &mut Http1, path: &str, auth: &str, body: serde_json::Value) -> Answer {
    c.post(
        path,
        &[("authorization", auth)],
        body.to_string().as_bytes(),
    )
    .await
}

async fn events_of(store: &Store, account: &str) -> i64 {
    query_int(
        store,
        &format!("SELECT COUNT(*) FROM events WHERE account_id = '{account}'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_calls_land_in_accounts_contacts_and_events() {
    for backend in backends() {
        let (server, store) = server(backend, "segment").await;
        let mut c = Http1::connect(server.addr).await;
        let key = basic(INGEST);

        // group with the write key as Basic user name: the account and its traits.
        let r = post(
            &mut c,
            "/v1/group",
            &key,
            json!({"groupId": "acme", "userId": "ann",
                   "traits": {"name": "Acme Inc", "plan": "pro", "mrr": 1200, "seats": 40}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["success"], true);
        let mut grpc = IngestionServiceClient::new(server.channel().await);
        let mut req = tonic::Request::new(pb::GetAccountRequest {
            account_id: "acme".into(),
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {READ}").parse().unwrap());
        let account = grpc
            .get_account(req)
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        assert_eq!(account.display_name, "Acme Inc");
        let mut attrs: Vec<&str> = account.attributes.keys().map(String::as_str).collect();
        attrs.sort_unstable();
        assert_eq!(attrs, ["mrr", "plan", "seats"]);

        // identify (bearer token), its contact in the user's last group.
        let r = post(
            &mut c,
            "/v1/identify",
            &format!("Bearer {INGEST}"),
            json!({"userId": "ann", "traits": {"email": "ann@acme.example", "name": "Ann"}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["contacts"], 1);
        assert_eq!(
            query_int(
                &store,
                "SELECT COUNT(*) FROM contacts WHERE account_id = 'acme' AND id = 'ann' \
                 AND email_domain = 'acme.example' AND name = 'Ann'"
            )
            .await,
            1
        );

        // track without context.groupId: attributed to ann's last group; sent twice
        // (a Segment retry): counted once.
        let track = json!({"userId": "ann", "event": "Report Run", "messageId": "m-1",
                           "timestamp": "2026-11-20T10:00:00Z", "properties": {"value": 3}});
        let first = post(&mut c, "/v1/track", &key, track.clone()).await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_eq!(first.json()["events"]["accepted"], 1);
        let retry = post(&mut c, "/v1/track", &key, track).await;
        assert_eq!(retry.status, 200, "{}", retry.body);
        assert_eq!(retry.json()["events"]["duplicates"], 1);
        assert_eq!(events_of(&store, "acme").await, 1);
        assert_eq!(
            query_int(
                &store,
                "SELECT SUM(count) FROM usage_daily WHERE account_id = 'acme'"
            )
            .await,
            1
        );

        // A batch of mixed calls: a new group for bob, tracks through context.groupId
        // and through the group set earlier in the same batch, an anonymous page, an
        // untraceable anonymous track (skipped), skew-corrected times.
        let r = post(
            &mut c,
            "/v1/batch",
            &key,
            json!({"sentAt": "2026-12-01T00:00:00Z", "batch": [
                {"type": "group", "groupId": "globex", "userId": "bob",
                 "traits": {"name": "Globex"}},
                {"type": "identify", "userId": "bob", "traits": {"role": "champion"}},
                {"type": "track", "userId": "bob", "event": "Login", "messageId": "b-1"},
                {"type": "track", "userId": "ann", "event": "Login", "messageId": "b-2",
                 "context": {"groupId": "globex"}},
                {"type": "track", "anonymousId": "x", "event": "Login", "messageId": "b-3"},
                {"type": "page", "anonymousId": "x", "name": "Home"},
                {"type": "track", "userId": "ann", "event": "Login", "messageId": "b-4",
                 "originalTimestamp": "2026-11-30T23:00:00Z"}
            ]}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        assert_eq!(j["accounts"], 1);
        assert_eq!(j["events"]["accepted"], 3);
        assert_eq!(j["skipped"], 1);
        assert_eq!(events_of(&store, "globex").await, 2);
        assert_eq!(events_of(&store, "acme").await, 2);
        assert_eq!(
            query_int(
                &store,
                "SELECT COUNT(*) FROM contacts WHERE account_id = 'globex' AND id = 'bob' \
                 AND role = 'champion'"
            )
            .await,
            1
        );

        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_refuses_bad_credentials_bad_input_and_oversize_bodies() {
    let (server, store) = server(Backend::Sqlite, "segment-refusals").await;
    let mut c = Http1::connect(server.addr).await;
    let key = basic(INGEST);
    let track = json!({"userId": "u", "event": "Login", "messageId": "m",
                       "context": {"groupId": "acme"}});

    let none = c.post("/v1/track", &[], track.to_string().as_bytes()).await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(none.json()["error"]["message"].is_string());
    let wrong = post(&mut c, "/v1/track", &basic("not-a-token"), track.clone()).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let reader = post(&mut c, "/v1/track", &basic(READ), track.clone()).await;
    assert_eq!(reader.status, 403, "{}", reader.body);

    let bad_json = c
        .post(
            "/v1/batch",
            &[("authorization", key.as_str())],
            b"{\"batch\": [",
        )
        .await;
    assert_eq!(bad_json.status, 400, "{}", bad_json.body);
    assert_eq!(bad_json.json()["error"]["field"], "batch");

    // One bad item refuses the whole batch, naming it; nothing of it is written.
    let r = post(
        &mut c,
        "/v1/batch",
        &key,
        json!({"batch": [
            {"type": "track", "userId": "u", "event": "Login", "messageId": "ok-1",
             "context": {"groupId": "acme"}},
            {"type": "group", "userId": "u", "traits": {"name": "No id"}},
        ]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["field"], "batch[1].groupId");
    assert_eq!(query_int(&store, "SELECT COUNT(*) FROM events").await, 0);
    let r = post(
        &mut c,
        "/v1/track",
        &key,
        json!({"userId": "u", "event": "Login", "messageId": "m",
               "timestamp": "2199-01-01T00:00:00Z", "context": {"groupId": "acme"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["field"], "timestamp");

    // 32 KB per call, 500 KB per batch (the server answers before reading such a body,
    // then closes the connection: each is sent on a new one).
    let big = json!({"userId": "u", "event": "Login", "messageId": "m",
                     "properties": {"pad": "x".repeat(33 * 1024)}});
    let mut c = Http1::connect(server.addr).await;
    let r = post(&mut c, "/v1/track", &key, big.clone()).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let mut c = Http1::connect(server.addr).await;
    let r = post(&mut c, "/v1/batch", &key, json!({"batch": vec![big; 1]})).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let item = json!({"type": "track", "userId": "u", "event": "Login", "messageId": "m",
                      "properties": {"pad": "x".repeat(30 * 1024)}});
    let mut c = Http1::connect(server.addr).await;
    let r = post(&mut c, "/v1/batch", &key, json!({"batch": vec![item; 20]})).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(query_int(&store, "SELECT COUNT(*) FROM events").await, 0);

    server.stop().await.unwrap();
}
