//! Storage of outbound webhooks (docs/webhooks.md): subscriptions, the outbox of events,
//! one delivery per (event, subscription) and the log of every attempt.
//!
//! The flow, at least once:
//! 1. The change that causes an event writes it to `webhook_events` in its own write
//!    transaction: a scoring run's [`crate::scoring::write_run`] (band changes, churn
//!    thresholds crossed), the learner's [`crate::learner::insert_models`] (models
//!    trained) and [`crate::learner::record_drift_detected`] (drift detected). A rolled-back change leaves no event; a committed one always has its
//!    events.
//! 2. [`dispatch_events`] turns undispatched events into `webhook_deliveries` rows, one
//!    per enabled subscription that wants the event, and marks the events dispatched, in
//!    one transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas share the work).
//! 3. [`claim_due`] leases due deliveries (moves their `next_attempt_ms` past the lease
//!    in the same statement that picks them, PostgreSQL: `SKIP LOCKED`); a worker that
//!    dies mid-send leaves them to be retried once the lease runs out.
//! 4. [`record_attempt`] logs the attempt and moves the delivery on (delivered, next
//!    attempt, or failed), and counts the subscription's consecutive failures, disabling
//!    it at the caller's limit.
//!
//! Times are milliseconds since the Unix epoch.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};

use crate::sealed::Sealed;
use crate::{Db, Store, StoreError};

/// Event kind: the band of an account's score changed in a scoring run.
pub const KIND_BAND_CHANGED: &str = "score.band_changed";
/// Event kind: an account's churn probability crossed a subscription's threshold.
pub const KIND_CHURN_CROSSED: &str = "score.churn_threshold_crossed";
/// Event kind: the learner stored a newly trained model.
pub const KIND_MODEL_TRAINED: &str = "model.trained";
/// Event kind: the learner's drift check found a serving model's population shifted
/// (written by [`crate::learner::record_drift_detected`], docs/webhooks.md).
pub const KIND_DRIFT_DETECTED: &str = "model.drift_detected";
/// Every event kind.
pub const KINDS: [&str; 4] = [
    KIND_BAND_CHANGED,
    KIND_CHURN_CROSSED,
    KIND_MODEL_TRAINED,
    KIND_DRIFT_DETECTED,
];

/// Delivery status: waiting for its next attempt.
pub const PENDING: &str = "pending";
/// Delivery status: the receiver answered 2xx.
pub const DELIVERED: &str = "delivered";
/// Delivery status: every attempt failed.
pub const FAILED: &str = "failed";

/// Events dispatched per transaction of [`dispatch_events`].
pub const DISPATCH_BATCH: u64 = 500;

/// A subscription row.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct Subscription {
    /// `wh_` and 24 hex digits.
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Event kinds, comma-separated.
    pub kinds: String,
    /// Profile ids, comma-separated; empty: every profile.
    pub profile_ids: String,
    /// Churn probability threshold of [`KIND_CHURN_CROSSED`].
    pub churn_threshold: f64,
    /// `standard` or `slack`.
    pub format: String,
    /// `whsec_` + base64 of the key.
    pub secret: String,
    /// Whether deliveries are attempted.
    pub enabled: bool,
    /// Failed attempts in a row.
    pub consecutive_failures: i32,
    /// Why it was disabled by the worker (empty otherwise).
    pub disabled_reason: String,
    /// Created.
    pub created_ms: i64,
    /// Last changed.
    pub updated_ms: i64,
}

impl Subscription {
    /// The kinds it wants.
    pub fn kind_list(&self) -> Vec<&str> {
        split(&self.kinds)
    }

    /// The profiles it is limited to (empty: all).
    pub fn profile_list(&self) -> Vec<&str> {
        split(&self.profile_ids)
    }

    /// Whether it wants `event`.
    pub fn wants(&self, event: &EventRow) -> bool {
        if !self.kind_list().contains(&event.kind.as_str()) {
            return false;
        }
        let profiles = self.profile_list();
        if !profiles.is_empty() && !profiles.contains(&event.profile_id.as_str()) {
            return false;
        }
        if event.kind == KIND_CHURN_CROSSED {
            return churn_crossed(&event.payload, self.churn_threshold);
        }
        true
    }
}

fn split(s: &str) -> Vec<&str> {
    s.split(',').filter(|p| !p.is_empty()).collect()
}

/// Whether the churn event's `data.previous_probability` and `data.probability` lie on
/// both sides of `threshold` (a probability reaching it counts as above).
fn churn_crossed(payload: &str, threshold: f64) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
        return false;
    };
    let p = |k: &str| {
        v.get("data")
            .and_then(|d| d.get(k))
            .and_then(|x| x.as_f64())
    };
    match (p("previous_probability"), p("probability")) {
        (Some(old), Some(new)) => (old >= threshold) != (new >= threshold),
        _ => false,
    }
}

/// An event to write to the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// One of [`KINDS`].
    pub kind: String,
    /// The account (empty for events about no account).
    pub account_id: String,
    /// The profile (of the account, or of the model; empty when none).
    pub profile_id: String,
    /// The Standard Webhooks payload: `{"type", "timestamp", "data"}`.
    pub payload: serde_json::Value,
}

/// An outbox row.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct EventRow {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Account.
    pub account_id: String,
    /// Profile.
    pub profile_id: String,
    /// The payload JSON text.
    pub payload: String,
    /// Written.
    pub created_ms: i64,
}

/// What the enabled subscriptions want: the kinds, and the churn thresholds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interest {
    /// Kinds wanted by at least one enabled subscription.
    pub kinds: Vec<String>,
    /// Thresholds of the enabled subscriptions that want [`KIND_CHURN_CROSSED`].
    pub churn_thresholds: Vec<f64>,
}

impl Interest {
    /// Whether some enabled subscription wants `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind)
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, crate::placeholders(backend, sql), values)
}

const SUB_COLUMNS: &str = "id, url, description, kinds, profile_ids, churn_threshold, format, \
     secret, enabled, consecutive_failures, disabled_reason, created_ms, updated_ms";

/// Stores a new subscription.
pub async fn create_subscription(db: &impl Db, s: &Subscription) -> Result<(), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        &format!(
            "INSERT INTO webhook_subscriptions ({SUB_COLUMNS}) \
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        ),
        vec![
            s.id.clone().into(),
            s.url.clone().into(),
            s.description.clone().into(),
            s.kinds.clone().into(),
            s.profile_ids.clone().into(),
            s.churn_threshold.into(),
            s.format.clone().into(),
            s.secret.clone().into(),
            s.enabled.into(),
            s.consecutive_failures.into(),
            s.disabled_reason.clone().into(),
            s.created_ms.into(),
            s.updated_ms.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The subscription `id`.
pub async fn get_subscription(db: &impl Db, id: &str) -> Result<Option<Subscription>, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    Ok(Subscription::find_by_statement(stmt(
        b,
        &format!("SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE id = ?"),
        vec![id.into()],
    ))
    .one(conn)
    .await?)
}

/// Subscriptions by id, `limit` of them after skipping `offset`, and the total count.
pub async fn list_subscriptions(
    db: &impl Db,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Subscription>, u64), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let rows = Subscription::find_by_statement(stmt(
        b,
        &format!("SELECT {SUB_COLUMNS} FROM webhook_subscriptions ORDER BY id LIMIT ? OFFSET ?"),
        vec![(limit as i64).into(), (offset as i64).into()],
    ))
    .all(conn)
    .await?;
    let total = count(
        db,
        "SELECT COUNT(*) AS n FROM webhook_subscriptions",
        vec![],
    )
    .await?;
    Ok((rows, total))
}

async fn count(db: &impl Db, sql: &str, values: Vec<Value>) -> Result<u64, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let n = conn
        .query_one_raw(stmt(b, sql, values))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Replaces the settable fields of subscription `s.id` (url, description, kinds,
/// profiles, threshold, format, enabled); enabling it resets its failure count and
/// reason. Returns whether it exists.
pub async fn update_subscription(db: &impl Db, s: &Subscription) -> Result<bool, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let r = conn
        .execute_raw(stmt(
            b,
            "UPDATE webhook_subscriptions SET url = ?, description = ?, kinds = ?, \
             profile_ids = ?, churn_threshold = ?, format = ?, \
             consecutive_failures = CASE WHEN ? THEN 0 ELSE consecutive_failures END, \
             disabled_reason = CASE WHEN ? THEN '' ELSE disabled_reason END, \
             enabled = ?, updated_ms = ? WHERE id = ?",
            vec![
                s.url.clone().into(),
                s.description.clone().into(),
                s.kinds.clone().into(),
                s.profile_ids.clone().into(),
                s.churn_threshold.into(),
                s.format.clone().into(),
                s.enabled.into(),
                s.enabled.into(),
                s.enabled.into(),
                s.updated_ms.into(),
                s.id.clone().into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Deletes subscription `id` with its deliveries and their attempts, in one
/// transaction. Returns whether it existed.
pub async fn delete_subscription(store: &Store, id: &str) -> Result<bool, StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "DELETE FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE subscription_id = ?)",
        vec![id.into()],
    ))
    .await?;
    conn.execute_raw(stmt(
        b,
        "DELETE FROM webhook_deliveries WHERE subscription_id = ?",
        vec![id.into()],
    ))
    .await?;
    let r = conn
        .execute_raw(stmt(
            b,
            "DELETE FROM webhook_subscriptions WHERE id = ?",
            vec![id.into()],
        ))
        .await?;
    tx.commit().await?;
    Ok(r.rows_affected() > 0)
}

/// Trims the delivery log: deletes the finished deliveries (delivered or failed) created
/// before `before_ms` with their attempts, then the dispatched events created before it
/// that no delivery refers to any more. Pending deliveries and their events are kept,
/// whatever their age. Returns the rows deleted.
pub async fn trim_log(store: &Store, before_ms: i64) -> Result<u64, StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    let finished = format!("status IN ('{DELIVERED}', '{FAILED}') AND created_ms < ?");
    let mut rows = 0;
    for sql in [
        format!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE {finished})"
        ),
        format!("DELETE FROM webhook_deliveries WHERE {finished}"),
        "DELETE FROM webhook_events WHERE dispatched AND created_ms < ? AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)"
            .to_string(),
    ] {
        rows += conn
            .execute_raw(stmt(b, &sql, vec![before_ms.into()]))
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(rows)
}

/// What the enabled subscriptions want (read by the writers of events before they build
/// them, so that nothing is built when nobody listens).
pub async fn interest(db: &impl Db) -> Result<Interest, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let subs = Subscription::find_by_statement(stmt(
        b,
        &format!("SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE enabled = ?"),
        vec![true.into()],
    ))
    .all(conn)
    .await?;
    let mut out = Interest::default();
    for s in &subs {
        for k in s.kind_list() {
            if !out.wants(k) {
                out.kinds.push(k.to_string());
            }
            if k == KIND_CHURN_CROSSED && !out.churn_thresholds.contains(&s.churn_threshold) {
                out.churn_thresholds.push(s.churn_threshold);
            }
        }
    }
    Ok(out)
}

/// Appends `events` to the outbox (inside the caller's transaction when `db` is a
/// [`crate::WriteTx`]).
pub async fn insert_events(db: &impl Db, events: &[NewEvent]) -> Result<(), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let now = now_ms();
    for chunk in events.chunks(crate::scoring::INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO webhook_events (kind, account_id, profile_id, payload, created_ms, \
             dispatched) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 6);
        crate::push_groups(&mut sql, DbBackend::Sqlite, chunk.len(), 6, &mut 0);
        for e in chunk {
            values.extend([
                Value::from(e.kind.clone()),
                e.account_id.clone().into(),
                e.profile_id.clone().into(),
                e.payload.to_string().into(),
                now.into(),
                false.into(),
            ]);
        }
        conn.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// Sets `data.run_id` of each event's payload (the run id is known only inside the
/// run's transaction).
pub(crate) fn with_run_id(
    events: &[NewEvent],
    run_id: i64,
) -> Vec<(String, String, String, String)> {
    events
        .iter()
        .map(|e| {
            let mut p = e.payload.clone();
            if let Some(d) = p.get_mut("data").and_then(|d| d.as_object_mut()) {
                d.insert("run_id".into(), run_id.into());
            }
            (
                e.kind.clone(),
                e.account_id.clone(),
                e.profile_id.clone(),
                p.to_string(),
            )
        })
        .collect()
}

/// Dispatches up to `limit` undispatched events: one delivery per enabled subscription
/// that wants each (`message_id` `msg_<event>_<subscription>`, due now), then marks them
/// dispatched, in one transaction. Returns (events dispatched, deliveries created).
pub async fn dispatch_events(store: &Store, limit: u64) -> Result<(usize, usize), StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    let lock = if b == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let events = EventRow::find_by_statement(stmt(
        b,
        &format!(
            "SELECT id, kind, account_id, profile_id, payload, created_ms FROM webhook_events \
             WHERE dispatched = ? ORDER BY id LIMIT ?{lock}"
        ),
        vec![false.into(), (limit as i64).into()],
    ))
    .all(conn)
    .await?;
    if events.is_empty() {
        return Ok((0, 0));
    }
    let subs = Subscription::find_by_statement(stmt(
        b,
        &format!("SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE enabled = ?"),
        vec![true.into()],
    ))
    .all(conn)
    .await?;
    let now = now_ms();
    let mut rows: Vec<Value> = Vec::new();
    let mut n = 0;
    for e in &events {
        for s in subs.iter().filter(|s| s.wants(e)) {
            n += 1;
            rows.extend([
                Value::from(e.id),
                s.id.clone().into(),
                format!("msg_{}_{}", e.id, s.id).into(),
                PENDING.into(),
                0i32.into(),
                now.into(),
                "".into(),
                now.into(),
            ]);
        }
    }
    for chunk in rows.chunks(8 * crate::scoring::INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO webhook_deliveries (event_id, subscription_id, message_id, status, \
             attempts, next_attempt_ms, last_error, created_ms) VALUES ",
        );
        crate::push_groups(&mut sql, DbBackend::Sqlite, chunk.len() / 8, 8, &mut 0);
        sql.push_str(" ON CONFLICT (message_id) DO NOTHING");
        conn.execute_raw(stmt(b, &sql, chunk.to_vec())).await?;
    }
    let mut sql = String::from("UPDATE webhook_events SET dispatched = ? WHERE id IN ");
    crate::push_groups(&mut sql, DbBackend::Sqlite, 1, events.len(), &mut 0);
    let mut values = vec![Value::from(true)];
    values.extend(events.iter().map(|e| Value::from(e.id)));
    conn.execute_raw(stmt(b, &sql, values)).await?;
    tx.commit().await?;
    Ok((events.len(), n))
}

/// A delivery leased by [`claim_due`], with what sending it needs.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct DueDelivery {
    /// Delivery id.
    pub id: i64,
    /// `webhook-id`: the same on every attempt.
    pub message_id: String,
    /// Attempts since it was created or redelivered.
    pub attempts: i32,
    /// The subscription.
    pub subscription_id: String,
    /// Its URL.
    pub url: String,
    /// Its secret.
    pub secret: String,
    /// Its format.
    pub format: String,
    /// The event kind.
    pub kind: String,
    /// The event payload JSON.
    pub payload: String,
    /// When the event was written.
    pub event_ms: i64,
}

/// Leases up to `limit` due pending deliveries of enabled subscriptions: their
/// `next_attempt_ms` moves to `now + lease_ms` in the statement that picks them
/// (PostgreSQL: rows locked by another worker are skipped), so no other worker takes them
/// until the lease runs out.
pub async fn claim_due(
    store: &Store,
    now: i64,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<DueDelivery>, StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    let lock = if b == DbBackend::Postgres {
        " FOR UPDATE OF d SKIP LOCKED"
    } else {
        ""
    };
    let ids: Vec<i64> = conn
        .query_all_raw(stmt(
            b,
            &format!(
                "UPDATE webhook_deliveries SET next_attempt_ms = ? WHERE id IN \
                 (SELECT d.id FROM webhook_deliveries d JOIN webhook_subscriptions s \
                 ON s.id = d.subscription_id WHERE d.status = ? AND d.next_attempt_ms <= ? \
                 AND s.enabled = ? ORDER BY d.next_attempt_ms, d.id LIMIT ?{lock}) \
                 RETURNING id"
            ),
            vec![
                (now + lease_ms).into(),
                PENDING.into(),
                now.into(),
                true.into(),
                (limit as i64).into(),
            ],
        ))
        .await?
        .iter()
        .map(|r| r.try_get::<i64>("", "id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from(
        "SELECT d.id, d.message_id, d.attempts, d.subscription_id, s.url, s.secret, \
         s.format, e.kind, e.payload, e.created_ms AS event_ms FROM webhook_deliveries d \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         JOIN webhook_events e ON e.id = d.event_id WHERE d.id IN ",
    );
    crate::push_groups(&mut sql, DbBackend::Sqlite, 1, ids.len(), &mut 0);
    sql.push_str(" ORDER BY d.id");
    let rows = DueDelivery::find_by_statement(stmt(
        b,
        &sql,
        ids.iter().map(|&i| Value::from(i)).collect(),
    ))
    .all(conn)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// The outcome of one attempt, for [`record_attempt`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptOutcome {
    /// The delivery.
    pub delivery_id: i64,
    /// Its subscription.
    pub subscription_id: String,
    /// When it was sent.
    pub at_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Why it failed (empty on success).
    pub error: String,
    /// How long it took.
    pub duration_ms: i64,
    /// Whether it succeeded (2xx).
    pub success: bool,
    /// On failure: when to try again; `None`: no attempt left (the delivery fails).
    pub retry_at_ms: Option<i64>,
    /// Disable the subscription once this many attempts in a row have failed (0: never).
    pub disable_after: u32,
}

/// Logs an attempt and moves its delivery on, and its subscription's failure count, in
/// one transaction. Returns whether the subscription was disabled by this attempt.
pub async fn record_attempt(store: &Store, o: &AttemptOutcome) -> Result<bool, StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "INSERT INTO webhook_attempts (delivery_id, attempt, at_ms, status_code, error, \
         duration_ms) VALUES (?, (SELECT COUNT(*) + 1 FROM webhook_attempts \
         WHERE delivery_id = ?), ?, ?, ?, ?)",
        vec![
            o.delivery_id.into(),
            o.delivery_id.into(),
            o.at_ms.into(),
            o.status_code.into(),
            o.error.clone().into(),
            o.duration_ms.into(),
        ],
    ))
    .await?;
    let (status, next, delivered) = match (o.success, o.retry_at_ms) {
        (true, _) => (DELIVERED, o.at_ms, Some(o.at_ms + o.duration_ms)),
        (false, Some(at)) => (PENDING, at, None),
        (false, None) => (FAILED, o.at_ms, None),
    };
    conn.execute_raw(stmt(
        b,
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, \
         next_attempt_ms = ?, last_status_code = ?, last_error = ?, delivered_ms = ? \
         WHERE id = ?",
        vec![
            status.into(),
            next.into(),
            o.status_code.into(),
            o.error.clone().into(),
            delivered.into(),
            o.delivery_id.into(),
        ],
    ))
    .await?;
    let mut disabled = false;
    if o.success {
        conn.execute_raw(stmt(
            b,
            "UPDATE webhook_subscriptions SET consecutive_failures = 0 WHERE id = ?",
            vec![o.subscription_id.clone().into()],
        ))
        .await?;
    } else {
        conn.execute_raw(stmt(
            b,
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1 \
             WHERE id = ?",
            vec![o.subscription_id.clone().into()],
        ))
        .await?;
        if o.disable_after > 0 {
            let r = conn
                .execute_raw(stmt(
                    b,
                    "UPDATE webhook_subscriptions SET enabled = ?, disabled_reason = ?, \
                     updated_ms = ? WHERE id = ? AND enabled = ? AND consecutive_failures >= ?",
                    vec![
                        false.into(),
                        format!("{} failed attempts in a row", o.disable_after).into(),
                        o.at_ms.into(),
                        o.subscription_id.clone().into(),
                        true.into(),
                        (o.disable_after as i32).into(),
                    ],
                ))
                .await?;
            disabled = r.rows_affected() > 0;
        }
    }
    tx.commit().await?;
    Ok(disabled)
}

/// A delivery row.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct Delivery {
    /// Id.
    pub id: i64,
    /// The event.
    pub event_id: i64,
    /// The subscription.
    pub subscription_id: String,
    /// `webhook-id`.
    pub message_id: String,
    /// [`PENDING`], [`DELIVERED`] or [`FAILED`].
    pub status: String,
    /// Attempts since created or redelivered.
    pub attempts: i32,
    /// When the next attempt is due (pending).
    pub next_attempt_ms: i64,
    /// The last HTTP status.
    pub last_status_code: Option<i32>,
    /// The last error.
    pub last_error: String,
    /// Created.
    pub created_ms: i64,
    /// Delivered.
    pub delivered_ms: Option<i64>,
    /// The event kind.
    pub kind: String,
    /// The event's account.
    pub account_id: String,
}

/// One logged attempt.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct Attempt {
    /// The delivery.
    pub delivery_id: i64,
    /// 1, 2, ... over the delivery's whole life (redeliveries continue the count).
    pub attempt: i32,
    /// When.
    pub at_ms: i64,
    /// HTTP status, when the receiver answered.
    pub status_code: Option<i32>,
    /// Why it failed (empty on success).
    pub error: String,
    /// How long it took.
    pub duration_ms: i64,
}

/// Filters of [`list_deliveries`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryFilter {
    /// Only this subscription.
    pub subscription_id: Option<String>,
    /// Only this status.
    pub status: Option<String>,
}

const DELIVERY_SELECT: &str = "SELECT d.id, d.event_id, d.subscription_id, d.message_id, \
     d.status, d.attempts, d.next_attempt_ms, d.last_status_code, d.last_error, \
     d.created_ms, d.delivered_ms, e.kind, e.account_id FROM webhook_deliveries d \
     JOIN webhook_events e ON e.id = d.event_id";

/// Deliveries matching `f`, newest first, `limit` after skipping `offset`, and the count
/// over all pages.
pub async fn list_deliveries(
    db: &impl Db,
    f: &DeliveryFilter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Delivery>, u64), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let mut w = String::from(" WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(s) = &f.subscription_id {
        w.push_str(" AND d.subscription_id = ?");
        values.push(s.clone().into());
    }
    if let Some(s) = &f.status {
        w.push_str(" AND d.status = ?");
        values.push(s.clone().into());
    }
    let total = count(
        db,
        &format!("SELECT COUNT(*) AS n FROM webhook_deliveries d{w}"),
        values.clone(),
    )
    .await?;
    values.extend([Value::from(limit as i64), Value::from(offset as i64)]);
    let rows = Delivery::find_by_statement(stmt(
        b,
        &format!("{DELIVERY_SELECT}{w} ORDER BY d.id DESC LIMIT ? OFFSET ?"),
        values,
    ))
    .all(conn)
    .await?;
    Ok((rows, total))
}

/// The delivery `id`.
pub async fn get_delivery(db: &impl Db, id: i64) -> Result<Option<Delivery>, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    Ok(Delivery::find_by_statement(stmt(
        b,
        &format!("{DELIVERY_SELECT} WHERE d.id = ?"),
        vec![id.into()],
    ))
    .one(conn)
    .await?)
}

/// The logged attempts of these deliveries, oldest first, by delivery.
pub async fn attempts_of(
    db: &impl Db,
    delivery_ids: &[i64],
) -> Result<HashMap<i64, Vec<Attempt>>, StoreError> {
    let mut out: HashMap<i64, Vec<Attempt>> = HashMap::new();
    if delivery_ids.is_empty() {
        return Ok(out);
    }
    let conn = db.c();
    let b = conn.get_database_backend();
    let mut sql = String::from(
        "SELECT delivery_id, attempt, at_ms, status_code, error, duration_ms \
         FROM webhook_attempts WHERE delivery_id IN ",
    );
    crate::push_groups(&mut sql, DbBackend::Sqlite, 1, delivery_ids.len(), &mut 0);
    sql.push_str(" ORDER BY delivery_id, id");
    let rows = Attempt::find_by_statement(stmt(
        b,
        &sql,
        delivery_ids.iter().map(|&i| Value::from(i)).collect(),
    ))
    .all(conn)
    .await?;
    for r in rows {
        out.entry(r.delivery_id).or_default().push(r);
    }
    Ok(out)
}

/// Puts delivery `id` back to pending, due at `now`, with a fresh retry schedule (its
/// `webhook-id` unchanged). Returns whether it exists.
pub async fn redeliver(db: &impl Db, id: i64, now: i64) -> Result<bool, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let r = conn
        .execute_raw(stmt(
            b,
            "UPDATE webhook_deliveries SET status = ?, attempts = 0, next_attempt_ms = ? \
             WHERE id = ?",
            vec![PENDING.into(), now.into(), id.into()],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

#[cfg(test)]
mod tests;
