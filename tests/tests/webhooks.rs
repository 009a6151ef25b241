//! Outbound webhooks over the real all-in-one: a scoring run's band changes reach a
//! local HTTP receiver that fails (500), times out, then recovers; nothing is lost,
//! every retry of one event carries the same `webhook-id` and body, every signature
//! verifies; a Slack subscription gets `{"text"}`; a receiver that always fails gets its
//! subscription disabled; redelivery sends the same message again. On SQLite and
//! PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use tonic::transport::Channel;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_proto::webhooks::v1 as pb;
use vitals_proto::webhooks::v1::webhook_service_client::WebhookServiceClient;
use vitals_store::Store;
use vitals_store::ingestion::NewEvent;
use vitals_test_support::{Backend, TestServer, backends, seed};
use vitals_webhooks::domain::sign;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    /// What the receiver answered (0: it let the request time out).
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
}

/// `/flaky`: the first message's first request gets 500, its second hangs past the
/// sender's timeout, its third and every request of other messages 204. `/dead`: always 500. Anything else: 200.
async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let id = h("webhook-id");
    // The first message of /flaky fails, the others go through at once.
    let seen = {
        let log = r.log.lock().unwrap();
        let victim = log.iter().find(|x| x.path == "flaky").map(|x| x.id.clone());
        match victim {
            Some(v) if v != id => 2,
            _ => log.iter().filter(|x| x.path == path && x.id == id).count(),
        }
    };
    let answer = match (path.as_str(), seen) {
        ("flaky", 0) => StatusCode::INTERNAL_SERVER_ERROR,
        ("flaky", 1) => StatusCode::REQUEST_TIMEOUT,
        ("flaky", _) => StatusCode::NO_CONTENT,
        ("dead", _) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    let timed_out = answer == StatusCode::REQUEST_TIMEOUT;
    r.log.lock().unwrap().push(Received {
        path,
        id,
        timestamp: h("webhook-timestamp").parse().unwrap_or(0),
        signature: h("webhook-signature"),
        body: body.to_vec(),
        answered: if timed_out { 0 } else { answer.as_u16() },
    });
    if timed_out {
        // Longer than the sender's timeout (--webhook-timeout-ms below).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    answer
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (r, format!("http://{addr}"))
}

/// Accounts a00..a11 (a00 the least active), the default profile on usage only.
async fn seed_ladder(store: &Store) {
    vitals_scorecard::defaults::ensure_default_profile(store)
        .await
        .unwrap();
    let mut p = vitals_store::profiles::get_profile(store, "default")
        .await
        .unwrap()
        .unwrap();
    p.weights = vitals_store::profiles::StoredWeights {
        usage: 1.0,
        ..Default::default()
    };
    vitals_store::profiles::update_profile(store, &p)
        .await
        .unwrap();
    let ids: Vec<String> = (0..12).map(|i| format!("a{i:02}")).collect();
    seed::accounts(store, &ids, Utc::now() - chrono::Duration::days(400))
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        logins(store, id, i as u32 + 1, i as u32 + 1, "ladder").await;
    }
}

async fn logins(store: &Store, account: &str, days: u32, per_day: u32, tag: &str) {
    let now = Utc::now();
    let mut events = Vec::new();
    for d in 0..days {
        for k in 0..per_day {
            events.push(NewEvent {
                event_id: format!("{tag}-{account}-{d}-{k}"),
                account_id: account.into(),
                user_id: Some(format!("u{k}")),
                event_type: "login".into(),
                occurred_at: now
                    - chrono::Duration::days(i64::from(d))
                    - chrono::Duration::minutes(5),
                value: None,
            });
        }
    }
    seed::events(store, events).await.unwrap();
}

async fn subscribe(
    c: &mut WebhookServiceClient<Channel>,
    url: String,
    format: pb::WebhookFormat,
) -> (String, String) {
    let r = c
        .create_webhook_subscription(pb::CreateWebhookSubscriptionRequest {
            subscription: Some(pb::WebhookSubscription {
                url,
                event_kinds: vec![pb::WebhookEventKind::BandChanged as i32],
                profiles: vec!["profiles/default".into()],
                format: format as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.secret.starts_with("whsec_"));
    (r.subscription.unwrap().name, r.secret)
}

async fn deliveries(
    c: &mut WebhookServiceClient<Channel>,
    parent: &str,
) -> Vec<pb::WebhookDelivery> {
    c.list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
        parent: parent.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .deliveries
}

/// Waits until `done` holds for the deliveries of `parent`.
async fn wait_for(
    c: &mut WebhookServiceClient<Channel>,
    parent: &str,
    done: impl Fn(&[pb::WebhookDelivery]) -> bool,
) -> Vec<pb::WebhookDelivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = deliveries(c, parent).await;
        if done(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries of {parent} not done: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn delivered(d: &[pb::WebhookDelivery]) -> bool {
    !d.is_empty()
        && d.iter()
            .all(|x| x.status == pb::WebhookDeliveryStatus::Delivered as i32)
}

async fn start(url: &str) -> TestServer {
    let mut config = vitals::ServeConfig::for_tests(url.to_string());
    config.webhooks = vitals_webhooks::WebhookArgs {
        poll_ms: 50,
        timeout_ms: 1000,
        retry_base_ms: 100,
        retry_max_ms: 400,
        max_attempts: 8,
        disable_after: 3,
        concurrency: 4,
        ..Default::default()
    };
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn band_changes_are_delivered_signed_at_least_once_through_failures() {
    for backend in backends() {
        let url = common::shared_url(backend, "webhooks").await;
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        seed_ladder(&store).await;
        let server = start(&url).await;
        let mut hooks = WebhookServiceClient::new(server.channel().await);
        let mut scoring = ScoringServiceClient::new(server.channel().await);
        let (receiver, base) = start_receiver().await;

        let (flaky, secret) = subscribe(
            &mut hooks,
            format!("{base}/flaky"),
            pb::WebhookFormat::Standard,
        )
        .await;
        let (slack, _) = subscribe(
            &mut hooks,
            format!("{base}/slack"),
            pb::WebhookFormat::Slack,
        )
        .await;
        let (dead, _) = subscribe(
            &mut hooks,
            format!("{base}/dead"),
            pb::WebhookFormat::Standard,
        )
        .await;

        // The first run has nothing to compare with: no band change, no delivery.
        scoring
            .compute_scores(spb::ComputeScoresRequest::default())
            .await
            .unwrap();
        // The least active account becomes the most active one.
        logins(&store, "a00", 28, 20, "burst").await;
        let run = scoring
            .compute_scores(spb::ComputeScoresRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(run.band_change_count >= 1, "{backend:?}");
        let n = run.band_change_count as usize;

        let flaky_log = wait_for(&mut hooks, &flaky, |d| d.len() == n && delivered(d)).await;
        wait_for(&mut hooks, &slack, |d| d.len() == n && delivered(d)).await;

        // Nothing lost: every delivery's message reached the receiver with a 2xx; every
        // request of one message carried the same body; every signature verifies.
        let key = sign::key_of(&secret).unwrap();
        let log = receiver.log.lock().unwrap().clone();
        let mut by_id: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
        for r in log.iter().filter(|r| r.path == "flaky") {
            assert!(
                sign::verify(&key, &r.id, r.timestamp, &r.body, &r.signature),
                "{backend:?}: bad signature on {r:?}"
            );
            by_id.entry(r.id.clone()).or_default().push(r);
        }
        let ids: BTreeSet<String> = flaky_log.iter().map(|d| d.message_id.clone()).collect();
        assert_eq!(
            by_id.keys().cloned().collect::<BTreeSet<_>>(),
            ids,
            "{backend:?}"
        );
        for (id, reqs) in &by_id {
            assert!(
                reqs.iter().any(|r| r.answered == 204),
                "{id} never delivered"
            );
            assert!(
                reqs.iter().all(|r| r.body == reqs[0].body),
                "{id}: bodies differ"
            );
            let p: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
            assert_eq!(p["type"], "score.band_changed");
            assert_eq!(p["data"]["run_id"].to_string(), run.run_id);
        }
        // The first message failed twice (500, then a timeout), then went through; the
        // delivery log says so.
        let first = &log.iter().find(|r| r.path == "flaky").unwrap().id;
        assert_eq!(by_id[first].len(), 3, "{backend:?}: {:?}", by_id[first]);
        let d = flaky_log.iter().find(|d| &d.message_id == first).unwrap();
        let codes: Vec<i32> = d.attempt_log.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, vec![500, 0, 204], "{backend:?}");
        assert!(
            d.attempt_log[1].error.contains("timed out"),
            "{:?}",
            d.attempt_log[1]
        );
        assert_eq!(d.attempt_log[0].error, "HTTP 500");

        // Slack: {"text"} naming the account and the band change.
        let s = log.iter().find(|r| r.path == "slack").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(
            text.contains("moved from") && text.contains("Top drivers"),
            "{text}"
        );

        // The dead receiver's subscription is disabled after 3 failed attempts in a row.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let sub = loop {
            let s = hooks
                .get_webhook_subscription(pb::GetWebhookSubscriptionRequest { name: dead.clone() })
                .await
                .unwrap()
                .into_inner()
                .subscription
                .unwrap();
            if !s.enabled {
                break s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{dead} never disabled"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Attempts of one batch run at once: the count may pass the limit by a few.
        assert!(sub.consecutive_failures >= 3, "{sub:?}");
        assert!(sub.disabled_reason.contains("3 failed attempts"), "{sub:?}");
        let d = deliveries(&mut hooks, &dead).await;
        let e = hooks
            .redeliver_webhook(pb::RedeliverWebhookRequest {
                name: d[0].name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);

        // Redelivery: the same message (same webhook-id) once more.
        let before = receiver.log.lock().unwrap().len();
        let again = hooks
            .redeliver_webhook(pb::RedeliverWebhookRequest {
                name: d_name(&flaky_log, first),
            })
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
        assert_eq!(again.status, pb::WebhookDeliveryStatus::Pending as i32);
        let after = wait_for(&mut hooks, &flaky, delivered).await;
        let d = after.iter().find(|d| &d.message_id == first).unwrap();
        assert_eq!(d.attempt_log.len(), 4);
        let log = receiver.log.lock().unwrap().clone();
        let new: Vec<&Received> = log[before..].iter().filter(|r| r.path == "flaky").collect();
        assert_eq!(new.len(), 1);
        assert_eq!(&new[0].id, first);

        server.stop().await.unwrap();
        store.close().await.unwrap();
    }
}

fn d_name(log: &[pb::WebhookDelivery], message_id: &str) -> String {
    log.iter()
        .find(|d| d.message_id == message_id)
        .unwrap()
        .name
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_fields_are_validated_and_the_secret_is_shown_once() {
    let server = common::all_in_one(Backend::Sqlite).await;
    let mut c = WebhookServiceClient::new(server.channel().await);
    let e = c
        .create_webhook_subscription(pb::CreateWebhookSubscriptionRequest {
            subscription: Some(pb::WebhookSubscription {
                url: "ftp://example.com/x".into(),
                event_kinds: vec![1],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("subscription.url"), "{}", e.message());
    let (name, _) = subscribe(
        &mut c,
        "https://hooks.example.com/a".into(),
        pb::WebhookFormat::Slack,
    )
    .await;
    let got = c
        .get_webhook_subscription(pb::GetWebhookSubscriptionRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(got.format, pb::WebhookFormat::Slack as i32);
    assert_eq!(got.churn_threshold, 0.5);
    let mut changed = got.clone();
    changed.event_kinds = vec![
        pb::WebhookEventKind::ModelTrained as i32,
        pb::WebhookEventKind::DriftDetected as i32,
    ];
    changed.enabled = false;
    let updated = c
        .update_webhook_subscription(pb::UpdateWebhookSubscriptionRequest {
            subscription: Some(changed),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(updated.event_kinds, vec![3, 4]);
    assert!(!updated.enabled);
    // With an update mask only the named fields change: re-enable it, keep the rest.
    let masked = c
        .update_webhook_subscription(pb::UpdateWebhookSubscriptionRequest {
            subscription: Some(pb::WebhookSubscription {
                name: name.clone(),
                enabled: true,
                description: "not in the mask".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert!(masked.enabled);
    assert_eq!(masked.event_kinds, vec![3, 4]);
    assert_eq!(masked.url, updated.url);
    assert_eq!(masked.description, updated.description);
    let e = c
        .update_webhook_subscription(pb::UpdateWebhookSubscriptionRequest {
            subscription: Some(pb::WebhookSubscription {
                name: name.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["secret".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("update_mask.paths[0]"),
        "{}",
        e.message()
    );
    let list = c
        .list_webhook_subscriptions(pb::ListWebhookSubscriptionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 1);
    c.delete_webhook_subscription(pb::DeleteWebhookSubscriptionRequest { name: name.clone() })
        .await
        .unwrap();
    let e = c
        .get_webhook_subscription(pb::GetWebhookSubscriptionRequest { name })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    server.stop().await.unwrap();
}
