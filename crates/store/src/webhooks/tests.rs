use super::*;
use crate::scoring::{NewSnapshot, PROFILE_SCORECARD, RunRecord, write_run};
use sea_orm::Statement;

fn sub(id: &str, kinds: &str, profiles: &str, threshold: f64) -> Subscription {
    Subscription {
        id: id.into(),
        url: format!("http://127.0.0.1:9/{id}"),
        description: String::new(),
        kinds: kinds.into(),
        profile_ids: profiles.into(),
        churn_threshold: threshold,
        format: "standard".into(),
        secret: "whsec_c2VjcmV0".into(),
        enabled: true,
        consecutive_failures: 0,
        disabled_reason: String::new(),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn band_event(account: &str, profile: &str) -> NewEvent {
    NewEvent {
        kind: KIND_BAND_CHANGED.into(),
        account_id: account.into(),
        profile_id: profile.into(),
        payload: serde_json::json!({"type": KIND_BAND_CHANGED, "data": {"account_id": account}}),
    }
}

fn churn_event(account: &str, old: f64, new: f64) -> NewEvent {
    NewEvent {
        kind: KIND_CHURN_CROSSED.into(),
        account_id: account.into(),
        profile_id: "p1".into(),
        payload: serde_json::json!({"type": KIND_CHURN_CROSSED,
            "data": {"previous_probability": old, "probability": new}}),
    }
}

fn snapshot(account: &str) -> NewSnapshot {
    NewSnapshot {
        account_id: account.into(),
        scorecard_id: PROFILE_SCORECARD.into(),
        profile_id: "p1".into(),
        as_of: chrono::Utc::now(),
        value: 3.0,
        band: "red".into(),
        global_value: None,
        global_band: String::new(),
        sub_scores: "{}".into(),
        momentum: 0.0,
        coverage_present: 1,
        coverage_total: 1,
        drivers: Vec::new(),
        churn_probability: Some(0.7),
        weights_source: "uniform".into(),
        population_fallback: false,
    }
}

/// Events go out through a scoring run's transaction, are fanned out to the
/// subscriptions that want them (kind, profile filter, churn threshold), leased once,
/// retried, delivered and redelivered with the same message id.
async fn outbox_to_delivery_log(store: Store) {
    create_subscription(&store, &sub("wh_a", KIND_BAND_CHANGED, "", 0.5))
        .await
        .unwrap();
    create_subscription(
        &store,
        &sub(
            "wh_b",
            &format!("{KIND_BAND_CHANGED},{KIND_CHURN_CROSSED}"),
            "p2",
            0.5,
        ),
    )
    .await
    .unwrap();
    create_subscription(&store, &sub("wh_c", KIND_CHURN_CROSSED, "", 0.6))
        .await
        .unwrap();
    let i = interest(&store).await.unwrap();
    assert!(i.wants(KIND_BAND_CHANGED) && i.wants(KIND_CHURN_CROSSED));
    assert!(!i.wants(KIND_MODEL_TRAINED));
    assert_eq!(i.churn_thresholds, vec![0.5, 0.6]);

    let run = RunRecord {
        scope: "all".into(),
        started_at: chrono::Utc::now(),
        accounts_scored: 1,
        details: serde_json::json!({}),
        events: vec![
            band_event("acc1", "p1"),
            band_event("acc2", "p2"),
            // Crosses 0.6 (wh_c), not 0.5.
            churn_event("acc1", 0.55, 0.65),
            // Crosses neither.
            churn_event("acc3", 0.1, 0.2),
        ],
    };
    let run_id = write_run(&store, &run, &[snapshot("acc1")]).await.unwrap();
    assert_eq!(dispatch_events(&store, 100).await.unwrap(), (4, 4));
    // Nothing left to dispatch.
    assert_eq!(dispatch_events(&store, 100).await.unwrap(), (0, 0));

    let (all, total) = list_deliveries(&store, &DeliveryFilter::default(), 0, 50)
        .await
        .unwrap();
    assert_eq!(total, 4);
    let mut got: Vec<(String, String)> = all
        .iter()
        .map(|d| (d.subscription_id.clone(), d.account_id.clone()))
        .collect();
    got.sort();
    let want = [
        ("wh_a", "acc1"),
        ("wh_a", "acc2"),
        ("wh_b", "acc2"),
        ("wh_c", "acc1"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );

    let now = now_ms();
    let due = claim_due(&store, now, 60_000, 100).await.unwrap();
    assert_eq!(due.len(), 4);
    let p: serde_json::Value = serde_json::from_str(&due[0].payload).unwrap();
    assert_eq!(p["data"]["run_id"], run_id);
    // Leased: a second worker gets nothing until the lease runs out.
    assert!(
        claim_due(&store, now, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        claim_due(&store, now + 60_001, 60_000, 100)
            .await
            .unwrap()
            .len(),
        4
    );

    let d = due.iter().find(|d| d.subscription_id == "wh_c").unwrap();
    let fail = AttemptOutcome {
        delivery_id: d.id,
        subscription_id: d.subscription_id.clone(),
        at_ms: now,
        status_code: Some(500),
        error: "HTTP 500".into(),
        duration_ms: 3,
        success: false,
        retry_at_ms: Some(now + 10),
        disable_after: 0,
    };
    assert!(!record_attempt(&store, &fail).await.unwrap());
    let ok = AttemptOutcome {
        status_code: Some(204),
        error: String::new(),
        success: true,
        retry_at_ms: None,
        at_ms: now + 20,
        ..fail.clone()
    };
    assert!(!record_attempt(&store, &ok).await.unwrap());
    let row = get_delivery(&store, d.id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), (DELIVERED, 2));
    assert_eq!(row.message_id, d.message_id);
    assert_eq!(
        get_subscription(&store, "wh_c")
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures,
        0
    );

    // Redelivered: pending again with a fresh schedule, the attempt log goes on.
    assert!(redeliver(&store, d.id, now + 30).await.unwrap());
    assert!(!redeliver(&store, 999_999, now).await.unwrap());
    let again = claim_due(&store, now + 30, 60_000, 100).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, d.message_id);
    assert_eq!(again[0].attempts, 0);
    record_attempt(
        &store,
        &AttemptOutcome {
            at_ms: now + 40,
            ..ok
        },
    )
    .await
    .unwrap();
    let log = attempts_of(&store, &[d.id]).await.unwrap();
    let codes: Vec<(i32, Option<i32>)> = log[&d.id]
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    assert_eq!(codes, vec![(1, Some(500)), (2, Some(204)), (3, Some(204))]);

    let filter = DeliveryFilter {
        subscription_id: Some("wh_a".into()),
        status: Some(PENDING.into()),
    };
    assert_eq!(list_deliveries(&store, &filter, 0, 1).await.unwrap().1, 2);
    assert!(delete_subscription(&store, "wh_a").await.unwrap());
    assert!(!delete_subscription(&store, "wh_a").await.unwrap());
    assert_eq!(list_deliveries(&store, &filter, 0, 1).await.unwrap().1, 0);
}

/// Consecutive failed attempts disable the subscription at the limit; its pending
/// deliveries are no longer claimed; enabling it again resets the count.
async fn failures_disable_the_subscription(store: Store) {
    create_subscription(&store, &sub("wh_x", KIND_BAND_CHANGED, "", 0.5))
        .await
        .unwrap();
    insert_events(&store, &[band_event("a", "p"), band_event("b", "p")])
        .await
        .unwrap();
    dispatch_events(&store, 100).await.unwrap();
    let now = now_ms();
    let due = claim_due(&store, now, 1, 100).await.unwrap();
    assert_eq!(due.len(), 2);
    let mut disabled = Vec::new();
    for (k, d) in due.iter().enumerate() {
        let o = AttemptOutcome {
            delivery_id: d.id,
            subscription_id: d.subscription_id.clone(),
            at_ms: now,
            status_code: None,
            error: "timed out".into(),
            duration_ms: 1,
            success: false,
            retry_at_ms: (k == 0).then_some(now),
            disable_after: 2,
        };
        disabled.push(record_attempt(&store, &o).await.unwrap());
    }
    assert_eq!(disabled, vec![false, true]);
    let s = get_subscription(&store, "wh_x").await.unwrap().unwrap();
    assert!(!s.enabled);
    assert_eq!(s.consecutive_failures, 2);
    assert!(s.disabled_reason.contains("2 failed attempts"));
    assert!(interest(&store).await.unwrap().kinds.is_empty());
    // The first delivery is still pending, but not claimed while disabled.
    assert!(
        claim_due(&store, now + 10, 1, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let again = Subscription {
        enabled: true,
        updated_ms: now,
        ..s
    };
    assert!(update_subscription(&store, &again).await.unwrap());
    let s = get_subscription(&store, "wh_x").await.unwrap().unwrap();
    assert!(s.enabled && s.consecutive_failures == 0 && s.disabled_reason.is_empty());
    assert_eq!(claim_due(&store, now + 10, 1, 100).await.unwrap().len(), 1);
}

/// A model stored by the learner writes its `model.trained` event in the same
/// transaction, only when a subscription wants it; a cancelled store writes neither.
async fn models_write_their_event(store: Store) {
    use crate::learner::{NewModel, insert_models};
    let model = NewModel {
        profile_id: "p1".into(),
        trained_at: chrono::Utc::now(),
        n_observations: 10,
        n_churned: 2,
        kpi_weights: serde_json::json!({}),
        category_weights: serde_json::json!({}),
        coefficients: serde_json::json!({}),
        metrics: serde_json::json!({}),
    };
    insert_models(&store, vec![model.clone()], || true)
        .await
        .unwrap();
    assert_eq!(dispatch_events(&store, 10).await.unwrap(), (0, 0));
    create_subscription(&store, &sub("wh_m", KIND_MODEL_TRAINED, "", 0.5))
        .await
        .unwrap();
    // Cancelled before the commit: no model, no event.
    let calls = std::sync::atomic::AtomicU32::new(0);
    let none = insert_models(&store, vec![model.clone()], || {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await
    .unwrap();
    assert!(none.is_none());
    assert_eq!(dispatch_events(&store, 10).await.unwrap(), (0, 0));
    insert_models(&store, vec![model], || true).await.unwrap();
    assert_eq!(dispatch_events(&store, 10).await.unwrap(), (1, 1));
    let due = claim_due(&store, now_ms(), 1000, 10).await.unwrap();
    let p: serde_json::Value = serde_json::from_str(&due[0].payload).unwrap();
    assert_eq!(p["data"]["model"], "models/p1-2");
    assert_eq!(due[0].kind, KIND_MODEL_TRAINED);
}

#[test]
fn churn_crossing_is_either_way_and_inclusive_above() {
    let p = |o: f64, n: f64| {
        serde_json::json!({"data": {"previous_probability": o, "probability": n}}).to_string()
    };
    assert!(churn_crossed(&p(0.4, 0.5), 0.5));
    assert!(churn_crossed(&p(0.5, 0.4), 0.5));
    assert!(!churn_crossed(&p(0.5, 0.9), 0.5));
    assert!(!churn_crossed(&p(0.1, 0.49), 0.5));
    assert!(!churn_crossed("{}", 0.5));
}

async fn count_rows(store: &Store, table: &str) -> i64 {
    let c = store.conn();
    let row = c
        .query_one_raw(Statement::from_string(
            c.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn the_log_is_trimmed_but_pending_work_is_kept(store: Store) {
    create_subscription(&store, &sub("wh_t", KIND_BAND_CHANGED, "", 0.5))
        .await
        .unwrap();
    insert_events(
        &store,
        &[
            band_event("ok", "p"),
            band_event("gave-up", "p"),
            band_event("retrying", "p"),
        ],
    )
    .await
    .unwrap();
    dispatch_events(&store, 100).await.unwrap();
    let now = now_ms();
    let due = claim_due(&store, now, 1, 100).await.unwrap();
    assert_eq!(due.len(), 3);
    for (k, d) in due.iter().enumerate() {
        let o = AttemptOutcome {
            delivery_id: d.id,
            subscription_id: d.subscription_id.clone(),
            at_ms: now,
            status_code: Some(if k == 0 { 200 } else { 500 }),
            error: if k == 0 {
                String::new()
            } else {
                "HTTP 500".into()
            },
            duration_ms: 1,
            success: k == 0,
            // The second gives up (no attempt left), the third retries later.
            retry_at_ms: (k == 2).then_some(now + 3_600_000),
            disable_after: 0,
        };
        record_attempt(&store, &o).await.unwrap();
    }
    assert_eq!(count_rows(&store, "webhook_attempts").await, 3);

    // Nothing is old enough yet.
    assert_eq!(trim_log(&store, now - 60_000).await.unwrap(), 0);
    // Everything finished is: the delivered and the failed delivery go, with their
    // attempts and events; the pending one stays whole.
    let deleted = trim_log(&store, now + 60_000).await.unwrap();
    assert_eq!(deleted, 2 + 2 + 2, "attempts, deliveries, events");
    assert_eq!(count_rows(&store, "webhook_deliveries").await, 1);
    assert_eq!(count_rows(&store, "webhook_attempts").await, 1);
    assert_eq!(count_rows(&store, "webhook_events").await, 1);
    let left = list_deliveries(&store, &DeliveryFilter::default(), 0, 10)
        .await
        .unwrap()
        .0;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, PENDING);
}

/// Drift is recorded once per model and level: the level goes into the model's metrics
/// and, when a subscription wants it, one `model.drift_detected` event with it.
async fn drift_is_written_once_per_model_and_level(store: Store) {
    use crate::learner::{
        DRIFT_REPORTED_KEY, GLOBAL_MODEL, NewModel, get_model, insert_models, record_drift_detected,
    };
    let model = NewModel {
        profile_id: GLOBAL_MODEL.into(),
        trained_at: chrono::Utc::now(),
        n_observations: 10,
        n_churned: 2,
        kpi_weights: serde_json::json!({}),
        category_weights: serde_json::json!({}),
        coefficients: serde_json::json!({}),
        metrics: serde_json::json!({"as_of": "2025-01-01"}),
    };
    let rows = insert_models(&store, vec![model], || true)
        .await
        .unwrap()
        .unwrap();
    let id = rows[0].id;
    // No subscription: recorded on the model, no event.
    assert!(
        record_drift_detected(&store, id, "moderate", serde_json::json!({"psi": 0.2}))
            .await
            .unwrap()
    );
    assert_eq!(count_rows(&store, "webhook_events").await, 0);
    create_subscription(&store, &sub("wh_d", KIND_DRIFT_DETECTED, "", 0.5))
        .await
        .unwrap();
    let data = serde_json::json!({"psi": 0.4});
    assert!(
        record_drift_detected(&store, id, "shift", data.clone())
            .await
            .unwrap()
    );
    assert!(
        !record_drift_detected(&store, id, "shift", data.clone())
            .await
            .unwrap()
    );
    assert!(
        !record_drift_detected(&store, id, "moderate", data.clone())
            .await
            .unwrap()
    );
    assert!(
        !record_drift_detected(&store, id + 100, "shift", data)
            .await
            .unwrap(),
        "no such model"
    );
    let row = get_model(&store, GLOBAL_MODEL, 1).await.unwrap().unwrap();
    assert_eq!(
        row.metrics[DRIFT_REPORTED_KEY],
        serde_json::json!(["moderate", "shift"])
    );
    assert_eq!(
        row.metrics["as_of"], "2025-01-01",
        "the rest of the metrics is kept"
    );
    assert_eq!(dispatch_events(&store, 10).await.unwrap(), (1, 1));
    let due = claim_due(&store, now_ms(), 1000, 10).await.unwrap();
    assert_eq!(due[0].kind, KIND_DRIFT_DETECTED);
    let p: serde_json::Value = serde_json::from_str(&due[0].payload).unwrap();
    assert_eq!(p["type"], KIND_DRIFT_DETECTED);
    assert_eq!(p["data"]["model"], "models/global-1");
    assert_eq!(p["data"]["level"], "shift");
    assert_eq!(p["data"]["psi"], 0.4);

    // The last drift check's summary: replaced by the next, beside the rest.
    use crate::learner::{DRIFT_CHECK_KEY, record_drift_check};
    for psi in [0.3, 0.05] {
        assert!(
            record_drift_check(&store, id, serde_json::json!({"psi": psi}))
                .await
                .unwrap()
        );
    }
    assert!(
        !record_drift_check(&store, id + 100, serde_json::json!({}))
            .await
            .unwrap(),
        "no such model"
    );
    let row = get_model(&store, GLOBAL_MODEL, 1).await.unwrap().unwrap();
    assert_eq!(
        row.metrics[DRIFT_CHECK_KEY],
        serde_json::json!({"psi": 0.05})
    );
    assert_eq!(
        row.metrics[DRIFT_REPORTED_KEY],
        serde_json::json!(["moderate", "shift"])
    );
    assert_eq!(row.metrics["as_of"], "2025-01-01");
}

crate::store_test_suite!(
    outbox_to_delivery_log,
    failures_disable_the_subscription,
    models_write_their_event,
    drift_is_written_once_per_model_and_level,
    the_log_is_trimmed_but_pending_work_is_kept
);
