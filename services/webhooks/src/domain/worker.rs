//! The delivery worker: moves outbox events to deliveries, sends due deliveries (signed,
//! concurrently, each with a timeout), and records every attempt. At least once: a
//! delivery leased by a worker that dies is sent again once its lease runs out, with the
//! same `webhook-id`.
//!
//! Retry schedule (docs/webhooks.md): after failed attempt n (1, 2, ...) the next one is
//! due `retry_base x 2^(n-1)`, at most `retry_max`, later; after `max_attempts` attempts
//! the delivery fails. Every failed attempt counts toward the subscription's consecutive
//! failures; at `disable_after` it is disabled (a success resets the count).

use std::time::{Duration, Instant};

use vitals_store::webhooks::{self as sw, AttemptOutcome, DueDelivery};
use vitals_store::{Store, StoreError};

use super::{body, sign};

/// The worker's settings (from [`crate::WebhookArgs`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// How often it looks for work when idle.
    pub poll: Duration,
    /// Timeout of one attempt (connect to end of the answer).
    pub timeout: Duration,
    /// Delay before the first retry.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_max: Duration,
    /// Attempts before a delivery fails.
    pub max_attempts: u32,
    /// Failed attempts in a row that disable a subscription (0: never).
    pub disable_after: u32,
    /// Deliveries sent at once.
    pub batch: u32,
    /// How long finished deliveries, their attempts and their events are kept (`None`:
    /// for ever); trimmed every [`TRIM_EVERY`].
    pub retention: Option<Duration>,
}

/// How often the worker trims the delivery log.
pub const TRIM_EVERY: Duration = Duration::from_secs(3600);

/// The delay before the attempt that follows failed attempt `attempts` (1-based), or
/// `None` when no attempt is left.
pub fn retry_delay(s: &Settings, attempts: u32) -> Option<Duration> {
    if attempts >= s.max_attempts {
        return None;
    }
    let factor = 1u32 << attempts.saturating_sub(1).min(30);
    Some(s.retry_base.saturating_mul(factor).min(s.retry_max))
}

/// Runs until `stopped()` holds: a tick, then a pause of `poll` when the tick found
/// nothing to do.
pub async fn run(
    store: Store,
    settings: Settings,
    client: reqwest::Client,
    stopped: impl Fn() -> bool,
) {
    let mut trimmed: Option<Instant> = None;
    while !stopped() {
        if let Some(keep) = settings.retention
            && trimmed.is_none_or(|t| t.elapsed() >= TRIM_EVERY)
        {
            trimmed = Some(Instant::now());
            let before = sw::now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            match sw::trim_log(&store, before).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, "webhook log trimmed"),
                Err(e) => tracing::warn!(error = %e, "webhook worker: cannot trim the log"),
            }
        }
        match tick(&store, &settings, &client).await {
            Ok(0) => tokio::time::sleep(settings.poll).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "webhook worker: store error");
                tokio::time::sleep(settings.poll).await;
            }
        }
    }
}

/// One round: dispatches pending events, then sends one batch of due deliveries.
/// Returns the deliveries attempted (0: nothing was due).
pub async fn tick(
    store: &Store,
    s: &Settings,
    client: &reqwest::Client,
) -> Result<usize, StoreError> {
    while sw::dispatch_events(store, sw::DISPATCH_BATCH).await?.0 as u64 == sw::DISPATCH_BATCH {}
    let lease = (s.timeout + Duration::from_secs(30)).as_millis() as i64;
    let due = sw::claim_due(store, sw::now_ms(), lease, u64::from(s.batch.max(1))).await?;
    let n = due.len();
    let sent = futures::future::join_all(due.iter().map(|d| attempt(client, s, d))).await;
    for o in sent {
        if sw::record_attempt(store, &o).await? {
            tracing::warn!(
                subscription = %o.subscription_id,
                failures = s.disable_after,
                "webhook subscription disabled after failed attempts in a row"
            );
        }
    }
    Ok(n)
}

/// Sends one delivery and says how it went.
async fn attempt(client: &reqwest::Client, s: &Settings, d: &DueDelivery) -> AttemptOutcome {
    let at = sw::now_ms();
    let started = Instant::now();
    let result = send(client, d, at / 1000).await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let (status_code, error) = match result {
        Ok(code) if (200..300).contains(&code) => (Some(code), String::new()),
        Ok(code) => (Some(code), format!("HTTP {code}")),
        Err(e) => (None, e),
    };
    let success = error.is_empty();
    let attempts = u32::try_from(d.attempts).unwrap_or(0) + 1;
    let retry_at_ms = if success {
        None
    } else {
        retry_delay(s, attempts).map(|w| sw::now_ms() + w.as_millis() as i64)
    };
    AttemptOutcome {
        delivery_id: d.id,
        subscription_id: d.subscription_id.clone(),
        at_ms: at,
        status_code,
        error,
        duration_ms,
        success,
        retry_at_ms,
        disable_after: s.disable_after,
    }
}

/// Most bytes of an error kept in the log.
const ERROR_BYTES: usize = 500;

/// POSTs the delivery; its HTTP status, or why there was none.
async fn send(client: &reqwest::Client, d: &DueDelivery, timestamp: i64) -> Result<i32, String> {
    let key = sign::key_of(&d.secret)?;
    let body = body::body(&d.format, &d.kind, &d.payload);
    let signature = sign::signature(&key, &d.message_id, timestamp, &body);
    let r = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match r {
        Ok(resp) => Ok(i32::from(resp.status().as_u16())),
        Err(e) => {
            let mut m = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                format!("connection failed: {e}")
            } else {
                format!("request failed: {e}")
            };
            let mut cut = m.len().min(ERROR_BYTES);
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            Err(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap_then_stop() {
        let s = Settings {
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            max_attempts: 8,
            disable_after: 0,
            batch: 1,
            retention: None,
        };
        let d: Vec<u64> = (1..=8)
            .map(|n| retry_delay(&s, n).map_or(0, |d| d.as_secs()))
            .collect();
        assert_eq!(d, vec![30, 60, 120, 240, 480, 600, 600, 0]);
    }
}
