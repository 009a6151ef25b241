//! Segment messages (the HTTP Tracking API's JSON) and their validation into the
//! ingestion domain's rows. Field paths in errors are the Segment ones (`groupId`,
//! `batch[3].traits["plan"]`), so a sender sees which of its fields is wrong.
//!
//! The mapping (docs/api.md "Segment-compatible ingestion"):
//! - `group`: `groupId` -> account id; `traits.name` -> display name; `traits.createdAt`
//!   -> create time; every other scalar trait -> an attribute (string, number, bool;
//!   `null` removes it); objects and arrays are not stored. With a `userId`, the user
//!   also becomes a contact of the account.
//! - `identify`: `userId` -> contact id, in the account of `context.groupId`, else
//!   `traits.company.id`, else the user's last group; `traits.email` -> e-mail domain
//!   (only the domain is stored), `traits.name` (or `firstName` `lastName`) -> name,
//!   `traits.role` -> role when `user`, `champion` or `decision_maker`.
//! - `track`: a usage event: `event` -> event type, `messageId` -> event id (the
//!   idempotency key), `userId` -> user, account from `context.groupId` else the user's
//!   last group; `properties.value` (else `properties.revenue`) -> value; the time as
//!   Segment computes it ([`event_time`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use vitals_server::ApiError;
use vitals_store::ingestion as st;

use crate::convert::validate as v;
use crate::convert::{MAX_ATTRIBUTE_STRING, MAX_ATTRIBUTES, MAX_DISPLAY_NAME};

/// One Segment call: the fields Vitals reads (the rest is accepted and ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `identify`, `group`, `track`, ... (set by the route for single calls).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Unique id of the message: the idempotency key of a track.
    pub message_id: Option<String>,
    /// The user.
    pub user_id: Option<IdValue>,
    /// The anonymous id (not stored: Vitals keys contacts by user id).
    pub anonymous_id: Option<IdValue>,
    /// The group (account) of a `group` call.
    pub group_id: Option<IdValue>,
    /// The event name of a `track`.
    pub event: Option<String>,
    /// Traits of `identify` and `group`.
    pub traits: Option<Map<String, Value>>,
    /// Properties of a `track`.
    pub properties: Option<Map<String, Value>>,
    /// Context: `groupId` attributes a track or an identify to an account.
    pub context: Option<Map<String, Value>>,
    /// When it happened, as the sender states it (used as is).
    pub timestamp: Option<String>,
    /// The device's time when it happened (corrected by `sentAt`).
    pub original_timestamp: Option<String>,
    /// The device's time when it was sent.
    pub sent_at: Option<String>,
}

/// An id as Segment senders write it: a string or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IdValue {
    /// `"u1"`.
    Text(String),
    /// `42`.
    Number(serde_json::Number),
}

impl IdValue {
    fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Number(n) => n.to_string(),
        }
    }
}

/// A `/v1/batch` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchBody<'a> {
    /// The calls, each kept raw (its size is checked, then it is parsed).
    #[serde(borrow)]
    pub batch: Vec<&'a serde_json::value::RawValue>,
    /// The sender's time when it sent the batch (for every item without its own).
    pub sent_at: Option<String>,
    /// Context merged under each item's own.
    pub context: Option<Map<String, Value>>,
}

/// A validated call.
#[derive(Debug)]
pub enum Call {
    /// A group: the account, and the user linked to it (if any).
    Group {
        /// The account upsert.
        account: st::AccountUpsert,
        /// The user, linked as a contact.
        user: Option<String>,
    },
    /// An identify: the contact, and its account if the call names one.
    Identify {
        /// The contact (its `account_id` empty until attributed).
        contact: st::ContactUpsert,
        /// The account named by the call.
        group: Option<String>,
    },
    /// A track: the event (its `account_id` empty until attributed).
    Track {
        /// The event.
        event: st::NewEvent,
        /// The account named by the call.
        group: Option<String>,
    },
    /// A call type Vitals does not store (`page`, `screen`, `alias`): accepted.
    Ignored,
}

/// A string field parsed as an RFC 3339 time.
fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::invalid(field, "not an ISO-8601 (RFC 3339) time"))
}

/// A time of customer data: 2000-01-01 ..= now + 24 h (the gRPC rule).
fn data_time(field: &str, t: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let ts = prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    };
    v::time_at(field, &ts, now)
}

/// When the event happened, as Segment computes `timestamp`: the sender's `timestamp` as
/// is; else `originalTimestamp` corrected for the device's clock skew, `received -
/// (sentAt - originalTimestamp)`, when `sentAt` (the item's, else the batch's) is given;
/// else `originalTimestamp`; else the time received.
pub fn event_time(
    m: &Message,
    p: &str,
    batch_sent_at: Option<&str>,
    received: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let t = if let Some(t) = &m.timestamp {
        parse_time(&format!("{p}timestamp"), t)?
    } else if let Some(o) = &m.original_timestamp {
        let original = parse_time(&format!("{p}originalTimestamp"), o)?;
        match (&m.sent_at, batch_sent_at) {
            (Some(s), _) => received - (parse_time(&format!("{p}sentAt"), s)? - original),
            (None, Some(s)) => received - (parse_time("sentAt", s)? - original),
            (None, None) => original,
        }
    } else {
        received
    };
    let field = if m.timestamp.is_some() {
        "timestamp"
    } else if m.original_timestamp.is_some() {
        "originalTimestamp"
    } else {
        "timestamp"
    };
    data_time(&format!("{p}{field}"), t, received)
}

/// `context.groupId`, validated.
fn context_group(m: &Message, p: &str) -> Result<Option<String>, ApiError> {
    let Some(g) = m.context.as_ref().and_then(|c| c.get("groupId")) else {
        return Ok(None);
    };
    let f = format!("{p}context.groupId");
    match g {
        Value::Null => Ok(None),
        Value::String(s) => v::id(&f, s).map(Some),
        Value::Number(n) => v::id(&f, &n.to_string()).map(Some),
        _ => Err(ApiError::invalid(f, "must be a string")),
    }
}

fn opt_id(field: String, id: &Option<IdValue>) -> Result<Option<String>, ApiError> {
    match id {
        None => Ok(None),
        Some(i) => {
            let s = i.text();
            if s.is_empty() {
                Ok(None)
            } else {
                v::id(&field, &s).map(Some)
            }
        }
    }
}

/// A trait as a string, if it is one (a wrong type is an error naming it).
fn trait_str<'t>(
    traits: &'t Map<String, Value>,
    key: &str,
    p: &str,
) -> Result<Option<&'t str>, ApiError> {
    match traits.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(
            format!("{p}traits.{key}"),
            "must be a string",
        )),
    }
}

fn attribute_key_ok(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Group traits -> account attributes (every scalar trait but `name` and `createdAt`).
fn attributes(
    traits: &Map<String, Value>,
    p: &str,
) -> Result<BTreeMap<String, Option<st::AttributeValue>>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, value) in traits {
        if k == "name" || k == "createdAt" || value.is_object() || value.is_array() {
            continue;
        }
        let f = format!("{p}traits[{k:?}]");
        if k.len() > 128 || !attribute_key_ok(k) {
            return Err(ApiError::invalid(
                f,
                "key must be 1..128 bytes matching [A-Za-z_][A-Za-z0-9_]*",
            ));
        }
        let attr = match value {
            Value::Null => None,
            Value::Bool(b) => Some(st::AttributeValue::Bool(*b)),
            Value::Number(n) => {
                let x = n
                    .as_f64()
                    .ok_or_else(|| ApiError::invalid(&f, "not a finite number"))?;
                Some(st::AttributeValue::Number(v::value(&f, x)?))
            }
            Value::String(s) => {
                if s.len() > MAX_ATTRIBUTE_STRING {
                    return Err(ApiError::invalid(f, "string longer than 4096 bytes"));
                }
                vitals_server::validate::no_nul(&f, s)?;
                Some(st::AttributeValue::String(s.clone()))
            }
            Value::Object(_) | Value::Array(_) => unreachable!("skipped above"),
        };
        out.insert(k.clone(), attr);
    }
    if out.len() > MAX_ATTRIBUTES {
        return Err(ApiError::invalid(
            format!("{p}traits"),
            format!("holds {} attributes, more than 200", out.len()),
        ));
    }
    Ok(out)
}

fn group(m: &Message, p: &str, now: DateTime<Utc>) -> Result<Call, ApiError> {
    let id = opt_id(format!("{p}groupId"), &m.group_id)?
        .ok_or_else(|| ApiError::invalid(format!("{p}groupId"), "is required"))?;
    let empty = Map::new();
    let traits = m.traits.as_ref().unwrap_or(&empty);
    let name = match trait_str(traits, "name", p)? {
        Some(n) => v::text(&format!("{p}traits.name"), n, MAX_DISPLAY_NAME)?,
        None => None,
    };
    let created_at = match trait_str(traits, "createdAt", p)? {
        Some(t) => {
            let f = format!("{p}traits.createdAt");
            Some(data_time(&f, parse_time(&f, t)?, now)?)
        }
        None => None,
    };
    Ok(Call::Group {
        account: st::AccountUpsert {
            id,
            name,
            attributes: attributes(traits, p)?,
            created_at,
            status: None,
            // A Segment group has no parent: the stored one is kept.
            parent: None,
        },
        user: opt_id(format!("{p}userId"), &m.user_id)?,
    })
}

fn identify(m: &Message, p: &str) -> Result<Call, ApiError> {
    let Some(user) = opt_id(format!("{p}userId"), &m.user_id)? else {
        // Anonymous: nothing Vitals keys a contact by.
        return Ok(Call::Ignored);
    };
    let empty = Map::new();
    let traits = m.traits.as_ref().unwrap_or(&empty);
    let email_domain = match trait_str(traits, "email", p)? {
        Some(e) => {
            let f = format!("{p}traits.email");
            let domain = e
                .rsplit_once('@')
                .map(|(_, d)| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .ok_or_else(|| ApiError::invalid(&f, "not an e-mail address"))?;
            v::text(&f, &domain, 253)?
        }
        None => None,
    };
    let name = match trait_str(traits, "name", p)? {
        Some(n) => Some(n.to_string()),
        None => {
            let first = trait_str(traits, "firstName", p)?.unwrap_or("");
            let last = trait_str(traits, "lastName", p)?.unwrap_or("");
            let full = format!("{first} {last}").trim().to_string();
            (!full.is_empty()).then_some(full)
        }
    };
    let name = match name {
        Some(n) => v::text(&format!("{p}traits.name"), &n, MAX_DISPLAY_NAME)?,
        None => None,
    };
    let role = match trait_str(traits, "role", p)?.map(|r| r.to_ascii_lowercase()) {
        Some(r) if r == "user" || r == "champion" => Some(r),
        Some(r) if r == "decision_maker" || r == "decision maker" => {
            Some("decision_maker".to_string())
        }
        // Job titles and other roles are not Vitals roles: the stored role is kept.
        _ => None,
    };
    let company = match traits.get("company").and_then(|c| c.get("id")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(v::id(&format!("{p}traits.company.id"), s)?),
        Some(Value::Number(n)) => Some(v::id(&format!("{p}traits.company.id"), &n.to_string())?),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{p}traits.company.id"),
                "must be a string",
            ));
        }
    };
    Ok(Call::Identify {
        contact: st::ContactUpsert {
            account_id: String::new(),
            id: user,
            role,
            email_domain,
            name,
        },
        group: context_group(m, p)?.or(company),
    })
}

fn track(
    m: &Message,
    p: &str,
    batch_sent_at: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Call, ApiError> {
    let event_type = match &m.event {
        Some(e) => v::name(&format!("{p}event"), e)?,
        None => return Err(ApiError::invalid(format!("{p}event"), "is required")),
    };
    let event_id = match &m.message_id {
        Some(id) => v::id(&format!("{p}messageId"), id)?,
        None => {
            return Err(ApiError::invalid(
                format!("{p}messageId"),
                "is required (the idempotency key of the event)",
            ));
        }
    };
    let user_id = opt_id(format!("{p}userId"), &m.user_id)?;
    let value = match m.properties.as_ref().and_then(|props| {
        ["value", "revenue"]
            .into_iter()
            .find_map(|k| props.get(k).filter(|x| !x.is_null()).map(|x| (k, x)))
    }) {
        None => None,
        Some((k, x)) => {
            let f = format!("{p}properties.{k}");
            let x = x
                .as_f64()
                .ok_or_else(|| ApiError::invalid(&f, "must be a number"))?;
            Some(v::value(&f, x)?)
        }
    };
    Ok(Call::Track {
        event: st::NewEvent {
            account_id: String::new(),
            event_id,
            user_id,
            event_type,
            occurred_at: event_time(m, p, batch_sent_at, now)?,
            value,
        },
        group: context_group(m, p)?,
    })
}

/// Validates one call of type `kind` (the route's, or the item's `type` in a batch);
/// `p` is the prefix of its fields in errors (`batch[3].` or empty).
pub fn validate(
    m: &Message,
    kind: &str,
    p: &str,
    batch_sent_at: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Call, ApiError> {
    if m.user_id.is_none() && m.anonymous_id.is_none() && kind != "group" {
        return Err(ApiError::invalid(
            format!("{p}userId"),
            "userId or anonymousId is required",
        ));
    }
    match kind {
        "group" => group(m, p, now),
        "identify" => identify(m, p),
        "track" => track(m, p, batch_sent_at, now),
        "page" | "screen" | "alias" => Ok(Call::Ignored),
        other => Err(ApiError::invalid(
            format!("{p}type"),
            format!("unknown call type {other:?} (identify, group, track, page, screen, alias)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn msg(json: &str) -> Message {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn event_time_follows_segment() {
        let received = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let explicit = msg(r#"{"timestamp":"2026-11-30T10:00:00Z"}"#);
        assert_eq!(
            event_time(&explicit, "", None, received).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap()
        );
        // The device clock is 1 h ahead: sent at 13:00 by its clock, received at 12:00.
        let skewed =
            msg(r#"{"originalTimestamp":"2026-12-01T12:30:00Z","sentAt":"2026-12-01T13:00:00Z"}"#);
        assert_eq!(
            event_time(&skewed, "", None, received).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 11, 30, 0).unwrap()
        );
        // The batch's sentAt applies to items without their own.
        let item = msg(r#"{"originalTimestamp":"2026-12-01T12:30:00Z"}"#);
        assert_eq!(
            event_time(&item, "", Some("2026-12-01T13:00:00Z"), received).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 11, 30, 0).unwrap()
        );
        assert_eq!(
            event_time(&item, "", None, received).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 12, 30, 0).unwrap()
        );
        assert_eq!(
            event_time(&msg("{}"), "", None, received).unwrap(),
            received
        );
        let bad = msg(r#"{"timestamp":"yesterday"}"#);
        assert_eq!(
            event_time(&bad, "batch[2].", None, received)
                .unwrap_err()
                .to_string(),
            "batch[2].timestamp: not an ISO-8601 (RFC 3339) time"
        );
        let old = msg(r#"{"timestamp":"1999-01-01T00:00:00Z"}"#);
        assert!(event_time(&old, "", None, received).is_err());
    }

    #[test]
    fn group_traits_become_attributes() {
        let now = Utc::now();
        let m = msg(
            r#"{"groupId":"acme","userId":"u1","traits":{"name":"Acme","plan":"pro","mrr":99.5,
                "trial":false,"gone":null,"address":{"city":"X"},"tags":["a"],
                "createdAt":"2024-01-02T00:00:00Z"}}"#,
        );
        let Call::Group { account, user } = validate(&m, "group", "", None, now).unwrap() else {
            panic!("a group")
        };
        assert_eq!(user.as_deref(), Some("u1"));
        assert_eq!(account.id, "acme");
        assert_eq!(account.name.as_deref(), Some("Acme"));
        assert_eq!(
            account.created_at,
            Some(Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap())
        );
        let keys: Vec<&str> = account.attributes.keys().map(String::as_str).collect();
        assert_eq!(keys, ["gone", "mrr", "plan", "trial"]);
        assert_eq!(account.attributes["gone"], None);
        assert_eq!(
            account.attributes["mrr"],
            Some(st::AttributeValue::Number(99.5))
        );
        let bad = msg(r#"{"groupId":"acme","traits":{"Company Size":3}}"#);
        assert_eq!(
            validate(&bad, "group", "batch[1].", None, now)
                .unwrap_err()
                .to_string(),
            "batch[1].traits[\"Company Size\"]: key must be 1..128 bytes matching [A-Za-z_][A-Za-z0-9_]*"
        );
        let none = msg(r#"{"userId":"u1"}"#);
        assert_eq!(
            validate(&none, "group", "", None, now)
                .unwrap_err()
                .to_string(),
            "groupId: is required"
        );
    }

    #[test]
    fn identify_and_track() {
        let now = Utc::now();
        let m = msg(
            r#"{"userId":42,"traits":{"email":"Ann@Example.COM","firstName":"Ann","lastName":"Lee",
                "role":"Champion","company":{"id":"acme"}}}"#,
        );
        let Call::Identify { contact, group } = validate(&m, "identify", "", None, now).unwrap()
        else {
            panic!("an identify")
        };
        assert_eq!(contact.id, "42");
        assert_eq!(contact.email_domain.as_deref(), Some("example.com"));
        assert_eq!(contact.name.as_deref(), Some("Ann Lee"));
        assert_eq!(contact.role.as_deref(), Some("champion"));
        assert_eq!(group.as_deref(), Some("acme"));
        assert!(matches!(
            validate(&msg(r#"{"anonymousId":"a"}"#), "identify", "", None, now).unwrap(),
            Call::Ignored
        ));

        let t = msg(
            r#"{"userId":"u1","event":"Report Run","messageId":"m1","properties":{"revenue":12},
                "context":{"groupId":"acme"}}"#,
        );
        let Call::Track { event, group } = validate(&t, "track", "", None, now).unwrap() else {
            panic!("a track")
        };
        assert_eq!(event.event_type, "Report Run");
        assert_eq!(event.event_id, "m1");
        assert_eq!(event.value, Some(12.0));
        assert_eq!(group.as_deref(), Some("acme"));
        let no_id = msg(r#"{"userId":"u1","event":"x"}"#);
        assert_eq!(
            validate(&no_id, "track", "batch[0].", None, now)
                .unwrap_err()
                .to_string(),
            "batch[0].messageId: is required (the idempotency key of the event)"
        );
        let nobody = msg(r#"{"event":"x","messageId":"m"}"#);
        assert_eq!(
            validate(&nobody, "track", "", None, now)
                .unwrap_err()
                .to_string(),
            "userId: userId or anonymousId is required"
        );
        let odd = msg(r#"{"userId":"u","type":"purchase"}"#);
        assert!(validate(&odd, "purchase", "", None, now).is_err());
    }
}
