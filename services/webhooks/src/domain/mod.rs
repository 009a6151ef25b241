//! The operations of the webhooks service, on plain types: subscriptions, the delivery
//! log, redelivery; the signing ([`sign`]), the bodies ([`body`]) and the delivery
//! worker ([`worker`]).

pub mod body;
pub mod sign;
pub mod worker;

use std::collections::HashMap;

use vitals_store::Store;
use vitals_store::webhooks::{self as sw, Attempt, Delivery, DeliveryFilter, Subscription};

use crate::error::WebhookError;

/// Default of a subscription's churn threshold.
pub const DEFAULT_CHURN_THRESHOLD: f64 = 0.5;
/// Attempts listed per delivery (the latest).
pub const ATTEMPTS_LISTED: usize = 50;

type Result<T> = std::result::Result<T, WebhookError>;

/// The settable fields of a subscription, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionSpec {
    /// http(s) URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Event kinds (store texts), at least one, unique.
    pub kinds: Vec<String>,
    /// Profile ids (empty: all).
    pub profiles: Vec<String>,
    /// In (0, 1).
    pub churn_threshold: f64,
    /// [`body::STANDARD`] or [`body::SLACK`].
    pub format: String,
    /// Whether deliveries are attempted.
    pub enabled: bool,
}

/// A delivery with its latest attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryLog {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, oldest first (at most [`ATTEMPTS_LISTED`], the latest).
    pub attempts: Vec<Attempt>,
}

fn new_id() -> Result<String> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| WebhookError::Internal(format!("random id: {e}")))?;
    Ok(format!(
        "wh_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// Creates a subscription; returns it and its secret (shown once).
pub async fn create(store: &Store, spec: SubscriptionSpec) -> Result<(Subscription, String)> {
    let secret =
        sign::new_secret().map_err(|e| WebhookError::Internal(format!("random secret: {e}")))?;
    let now = sw::now_ms();
    let s = Subscription {
        id: new_id()?,
        url: spec.url,
        description: spec.description,
        kinds: spec.kinds.join(","),
        profile_ids: spec.profiles.join(","),
        churn_threshold: spec.churn_threshold,
        format: spec.format,
        secret: secret.clone(),
        enabled: true,
        consecutive_failures: 0,
        disabled_reason: String::new(),
        created_ms: now,
        updated_ms: now,
    };
    sw::create_subscription(store, &s).await?;
    Ok((s, secret))
}

/// The subscription `id`.
pub async fn get(store: &Store, id: &str) -> Result<Subscription> {
    sw::get_subscription(store, id)
        .await?
        .ok_or_else(|| WebhookError::NotFound(format!("webhooks/{id}")))
}

/// A page of subscriptions and the total.
pub async fn list(store: &Store, offset: u64, limit: u64) -> Result<(Vec<Subscription>, u64)> {
    Ok(sw::list_subscriptions(store, offset, limit).await?)
}

/// Replaces the settable fields of subscription `id`.
pub async fn update(store: &Store, id: &str, spec: SubscriptionSpec) -> Result<Subscription> {
    let old = get(store, id).await?;
    let s = Subscription {
        url: spec.url,
        description: spec.description,
        kinds: spec.kinds.join(","),
        profile_ids: spec.profiles.join(","),
        churn_threshold: spec.churn_threshold,
        format: spec.format,
        enabled: spec.enabled,
        updated_ms: sw::now_ms(),
        ..old
    };
    if !sw::update_subscription(store, &s).await? {
        return Err(WebhookError::NotFound(format!("webhooks/{id}")));
    }
    get(store, id).await
}

/// Deletes subscription `id` and its log.
pub async fn delete(store: &Store, id: &str) -> Result<()> {
    if !sw::delete_subscription(store, id).await? {
        return Err(WebhookError::NotFound(format!("webhooks/{id}")));
    }
    Ok(())
}

/// A page of deliveries (newest first) with their attempts, and the total.
pub async fn deliveries(
    store: &Store,
    filter: &DeliveryFilter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<DeliveryLog>, u64)> {
    if let Some(id) = &filter.subscription_id {
        get(store, id).await?;
    }
    let (rows, total) = sw::list_deliveries(store, filter, offset, limit).await?;
    let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
    let mut attempts = sw::attempts_of(store, &ids).await?;
    Ok((
        rows.into_iter().map(|d| log_of(d, &mut attempts)).collect(),
        total,
    ))
}

fn log_of(delivery: Delivery, attempts: &mut HashMap<i64, Vec<Attempt>>) -> DeliveryLog {
    let mut a = attempts.remove(&delivery.id).unwrap_or_default();
    let skip = a.len().saturating_sub(ATTEMPTS_LISTED);
    a.drain(..skip);
    DeliveryLog {
        delivery,
        attempts: a,
    }
}

/// Puts delivery `id` of subscription `sub` back to pending, due now.
pub async fn redeliver(store: &Store, sub: &str, id: i64) -> Result<DeliveryLog> {
    let name = format!("webhooks/{sub}/deliveries/{id}");
    let s = get(store, sub).await?;
    let d = sw::get_delivery(store, id).await?;
    if d.as_ref().is_none_or(|d| d.subscription_id != sub) {
        return Err(WebhookError::NotFound(name));
    }
    if !s.enabled {
        return Err(WebhookError::FailedPrecondition(format!(
            "webhooks/{sub} is disabled ({}): enable it before redelivering",
            if s.disabled_reason.is_empty() {
                "by an update"
            } else {
                &s.disabled_reason
            }
        )));
    }
    sw::redeliver(store, id, sw::now_ms()).await?;
    let d = sw::get_delivery(store, id)
        .await?
        .ok_or_else(|| WebhookError::NotFound(name))?;
    let mut attempts = sw::attempts_of(store, &[id]).await?;
    Ok(log_of(d, &mut attempts))
}
