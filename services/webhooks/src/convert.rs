//! Proto <-> domain for the webhooks service, with field validation (errors name the
//! field).

use prost_types::Timestamp;
use vitals_proto::webhooks::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{self, PageLimits};
use vitals_store::webhooks::{self as sw, Attempt, DeliveryFilter, Subscription};

use crate::domain::{DEFAULT_CHURN_THRESHOLD, DeliveryLog, SubscriptionSpec, body};

/// Most bytes of a URL.
pub const MAX_URL_BYTES: usize = 2048;
/// Most bytes of a description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Most profiles in a filter.
pub const MAX_PROFILES: usize = 100;
/// Most bytes of a profile id.
pub const MAX_ID_BYTES: usize = 128;

fn kind_text(k: i32) -> Option<&'static str> {
    match pb::WebhookEventKind::try_from(k).ok()? {
        pb::WebhookEventKind::BandChanged => Some(sw::KIND_BAND_CHANGED),
        pb::WebhookEventKind::ChurnThresholdCrossed => Some(sw::KIND_CHURN_CROSSED),
        pb::WebhookEventKind::ModelTrained => Some(sw::KIND_MODEL_TRAINED),
        pb::WebhookEventKind::DriftDetected => Some(sw::KIND_DRIFT_DETECTED),
        pb::WebhookEventKind::Unspecified => None,
    }
}

fn kind_proto(k: &str) -> i32 {
    (match k {
        sw::KIND_BAND_CHANGED => pb::WebhookEventKind::BandChanged,
        sw::KIND_CHURN_CROSSED => pb::WebhookEventKind::ChurnThresholdCrossed,
        sw::KIND_MODEL_TRAINED => pb::WebhookEventKind::ModelTrained,
        sw::KIND_DRIFT_DETECTED => pb::WebhookEventKind::DriftDetected,
        _ => pb::WebhookEventKind::Unspecified,
    }) as i32
}

fn ts(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The subscription id of `webhooks/{id}` in `field`.
pub fn subscription_id(field: &str, name: &str) -> Result<String, ApiError> {
    let id = name
        .strip_prefix("webhooks/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| ApiError::invalid(field, "must be webhooks/{id}"))?;
    vitals_server::validate::no_nul(field, id)?;
    Ok(id.to_string())
}

/// (subscription id, delivery id) of `webhooks/{id}/deliveries/{delivery_id}`.
pub fn delivery_name(field: &str, name: &str) -> Result<(String, i64), ApiError> {
    let bad = || ApiError::invalid(field, "must be webhooks/{id}/deliveries/{delivery_id}");
    let rest = name.strip_prefix("webhooks/").ok_or_else(bad)?;
    let (sub, d) = rest.split_once("/deliveries/").ok_or_else(bad)?;
    if sub.is_empty() || sub.contains('/') || sub.contains('\0') {
        return Err(bad());
    }
    let d: i64 = d.parse().map_err(|_| bad())?;
    Ok((sub.to_string(), d))
}

fn url(field: &str, u: &str) -> Result<String, ApiError> {
    if u.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if u.len() > MAX_URL_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let parsed =
        reqwest::Url::parse(u).map_err(|e| ApiError::invalid(field, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::invalid(
            field,
            "must be an http or https URL with a host",
        ));
    }
    Ok(u.to_string())
}

/// `stored` with the fields named by `paths` (an update mask) taken from `new`; a path
/// that names no settable field is INVALID_ARGUMENT on `update_mask`.
pub fn apply_mask(
    mut stored: pb::WebhookSubscription,
    new: Option<&pb::WebhookSubscription>,
    paths: &[String],
) -> Result<pb::WebhookSubscription, ApiError> {
    let default = pb::WebhookSubscription::default();
    let new = new.unwrap_or(&default);
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "url" => stored.url.clone_from(&new.url),
            "description" => stored.description.clone_from(&new.description),
            "event_kinds" => stored.event_kinds.clone_from(&new.event_kinds),
            "profiles" => stored.profiles.clone_from(&new.profiles),
            "churn_threshold" => stored.churn_threshold = new.churn_threshold,
            "format" => stored.format = new.format,
            "enabled" => stored.enabled = new.enabled,
            other => {
                return Err(ApiError::invalid(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "{other:?} is not a settable field (url, description, event_kinds, \
                         profiles, churn_threshold, format, enabled)"
                    ),
                ));
            }
        }
    }
    Ok(stored)
}

/// The validated settable fields of `s` (`subscription.*` fields).
pub fn spec(s: Option<&pb::WebhookSubscription>) -> Result<SubscriptionSpec, ApiError> {
    let s = s.ok_or_else(|| ApiError::invalid("subscription", "is required"))?;
    let url = url("subscription.url", &s.url)?;
    if s.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ApiError::invalid(
            "subscription.description",
            format!("longer than {MAX_DESCRIPTION_BYTES} bytes"),
        ));
    }
    vitals_server::validate::no_nul("subscription.description", &s.description)?;
    if s.event_kinds.is_empty() {
        return Err(ApiError::invalid(
            "subscription.event_kinds",
            "at least one kind is required",
        ));
    }
    let mut kinds: Vec<String> = Vec::new();
    for (i, &k) in s.event_kinds.iter().enumerate() {
        let field = format!("subscription.event_kinds[{i}]");
        let t =
            kind_text(k).ok_or_else(|| ApiError::invalid(&field, "unknown or unspecified kind"))?;
        if kinds.iter().any(|x| x == t) {
            return Err(ApiError::invalid(field, "listed twice"));
        }
        kinds.push(t.to_string());
    }
    if s.profiles.len() > MAX_PROFILES {
        return Err(ApiError::invalid(
            "subscription.profiles",
            format!("more than {MAX_PROFILES}"),
        ));
    }
    let mut profiles = Vec::with_capacity(s.profiles.len());
    for (i, p) in s.profiles.iter().enumerate() {
        let field = format!("subscription.profiles[{i}]");
        let id = p
            .strip_prefix("profiles/")
            .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES)
            .filter(|id| !id.contains([',', '/', '\0']))
            .ok_or_else(|| ApiError::invalid(&field, "must be profiles/{id}"))?;
        profiles.push(id.to_string());
    }
    let churn_threshold = match s.churn_threshold {
        0.0 => DEFAULT_CHURN_THRESHOLD,
        t if t.is_finite() && t > 0.0 && t < 1.0 => t,
        _ => {
            return Err(ApiError::invalid(
                "subscription.churn_threshold",
                "must be in (0, 1), or 0 for the default 0.5",
            ));
        }
    };
    let format = match pb::WebhookFormat::try_from(s.format) {
        Ok(pb::WebhookFormat::Unspecified | pb::WebhookFormat::Standard) => body::STANDARD,
        Ok(pb::WebhookFormat::Slack) => body::SLACK,
        Err(_) => return Err(ApiError::invalid("subscription.format", "unknown format")),
    };
    Ok(SubscriptionSpec {
        url,
        description: s.description.clone(),
        kinds,
        profiles,
        churn_threshold,
        format: format.to_string(),
        enabled: s.enabled,
    })
}

/// A stored subscription as the API shows it (never its secret).
pub fn subscription(s: &Subscription) -> pb::WebhookSubscription {
    pb::WebhookSubscription {
        name: format!("webhooks/{}", s.id),
        url: s.url.clone(),
        description: s.description.clone(),
        event_kinds: s.kind_list().into_iter().map(kind_proto).collect(),
        profiles: s
            .profile_list()
            .iter()
            .map(|p| format!("profiles/{p}"))
            .collect(),
        churn_threshold: s.churn_threshold,
        format: if s.format == body::SLACK {
            pb::WebhookFormat::Slack
        } else {
            pb::WebhookFormat::Standard
        } as i32,
        enabled: s.enabled,
        consecutive_failures: s.consecutive_failures,
        disabled_reason: s.disabled_reason.clone(),
        create_time: Some(ts(s.created_ms)),
        update_time: Some(ts(s.updated_ms)),
    }
}

/// The offset page of a list request whose filters have fingerprint `filters`.
pub fn page(page_size: i32, token: &str, filters: &[&str]) -> Result<paging::OffsetPage, ApiError> {
    paging::OffsetPage::decode(
        PageLimits::STANDARD,
        page_size,
        token,
        paging::fingerprint(filters),
    )
}

/// The next page token after `page` when `total` rows match.
pub fn next_token(page: &paging::OffsetPage, total: u64) -> String {
    let end = page.offset.saturating_add(page.size);
    if end < total {
        paging::encode_offset(page.filters, end)
    } else {
        String::new()
    }
}

fn status_text(s: i32) -> Result<Option<&'static str>, ApiError> {
    match pb::WebhookDeliveryStatus::try_from(s) {
        Ok(pb::WebhookDeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::WebhookDeliveryStatus::Pending) => Ok(Some(sw::PENDING)),
        Ok(pb::WebhookDeliveryStatus::Delivered) => Ok(Some(sw::DELIVERED)),
        Ok(pb::WebhookDeliveryStatus::Failed) => Ok(Some(sw::FAILED)),
        Err(_) => Err(ApiError::invalid("status", "unknown status")),
    }
}

/// The filter and page of a ListWebhookDeliveries request.
pub fn deliveries_request(
    r: &pb::ListWebhookDeliveriesRequest,
) -> Result<(DeliveryFilter, paging::OffsetPage), ApiError> {
    let subscription_id = if r.parent.is_empty() {
        None
    } else {
        Some(subscription_id("parent", &r.parent)?)
    };
    let status = status_text(r.status)?;
    let page = page(
        r.page_size,
        &r.page_token,
        &[&r.parent, status.unwrap_or("")],
    )?;
    Ok((
        DeliveryFilter {
            subscription_id,
            status: status.map(str::to_string),
        },
        page,
    ))
}

fn attempt(a: &Attempt) -> pb::WebhookAttempt {
    pb::WebhookAttempt {
        attempt: a.attempt,
        attempt_time: Some(ts(a.at_ms)),
        status_code: a.status_code.unwrap_or(0),
        error: a.error.clone(),
        duration_ms: a.duration_ms,
    }
}

/// A delivery and its attempts as the API shows them.
pub fn delivery(l: &DeliveryLog) -> pb::WebhookDelivery {
    let d = &l.delivery;
    let status = match d.status.as_str() {
        sw::PENDING => pb::WebhookDeliveryStatus::Pending,
        sw::DELIVERED => pb::WebhookDeliveryStatus::Delivered,
        sw::FAILED => pb::WebhookDeliveryStatus::Failed,
        _ => pb::WebhookDeliveryStatus::Unspecified,
    };
    pb::WebhookDelivery {
        name: format!("webhooks/{}/deliveries/{}", d.subscription_id, d.id),
        message_id: d.message_id.clone(),
        event_kind: kind_proto(&d.kind),
        account_id: d.account_id.clone(),
        status: status as i32,
        attempts: d.attempts,
        next_attempt_time: (d.status == sw::PENDING).then(|| ts(d.next_attempt_ms)),
        last_status_code: d.last_status_code.unwrap_or(0),
        last_error: d.last_error.clone(),
        create_time: Some(ts(d.created_ms)),
        deliver_time: d.delivered_ms.map(ts),
        attempt_log: l.attempts.iter().map(attempt).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::WebhookSubscription {
        pb::WebhookSubscription {
            url: "https://hooks.example.com/x".into(),
            event_kinds: vec![pb::WebhookEventKind::BandChanged as i32],
            ..Default::default()
        }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let s = spec(Some(&valid())).unwrap();
        assert_eq!((s.churn_threshold, s.format.as_str()), (0.5, "standard"));
        let cases: Vec<(pb::WebhookSubscription, &str)> = vec![
            (
                pb::WebhookSubscription {
                    url: String::new(),
                    ..valid()
                },
                "subscription.url",
            ),
            (
                pb::WebhookSubscription {
                    url: "ftp://x/y".into(),
                    ..valid()
                },
                "subscription.url",
            ),
            (
                pb::WebhookSubscription {
                    url: "not a url".into(),
                    ..valid()
                },
                "subscription.url",
            ),
            (
                pb::WebhookSubscription {
                    event_kinds: vec![],
                    ..valid()
                },
                "subscription.event_kinds",
            ),
            (
                pb::WebhookSubscription {
                    event_kinds: vec![1, 1],
                    ..valid()
                },
                "subscription.event_kinds[1]",
            ),
            (
                pb::WebhookSubscription {
                    event_kinds: vec![0],
                    ..valid()
                },
                "subscription.event_kinds[0]",
            ),
            (
                pb::WebhookSubscription {
                    profiles: vec!["p1".into()],
                    ..valid()
                },
                "subscription.profiles[0]",
            ),
            (
                pb::WebhookSubscription {
                    churn_threshold: 1.0,
                    ..valid()
                },
                "subscription.churn_threshold",
            ),
            (
                pb::WebhookSubscription {
                    churn_threshold: f64::NAN,
                    ..valid()
                },
                "subscription.churn_threshold",
            ),
            (
                pb::WebhookSubscription {
                    format: 9,
                    ..valid()
                },
                "subscription.format",
            ),
        ];
        for (s, field) in cases {
            assert_eq!(field_of(spec(Some(&s)).unwrap_err()), field);
        }
        assert_eq!(field_of(spec(None).unwrap_err()), "subscription");
    }

    #[test]
    fn names_parse() {
        assert_eq!(subscription_id("name", "webhooks/wh_1").unwrap(), "wh_1");
        assert!(subscription_id("name", "webhooks/").is_err());
        assert_eq!(
            delivery_name("name", "webhooks/wh_1/deliveries/7").unwrap(),
            ("wh_1".into(), 7)
        );
        assert!(delivery_name("name", "webhooks/wh_1/deliveries/x").is_err());
    }
}
