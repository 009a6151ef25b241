//! The ingestion service's conversions: validation of every kind of record and its
//! conversion from the API messages into the store's plain rows, and back.
//!
//! Each `*_batch` function validates a whole batch (stopping at the first bad item, whose
//! index and field it names) before anything is written, so a rejected batch writes
//! nothing.

pub mod validate;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use vitals_proto::common::v1 as cpb;
use vitals_proto::common::v1::attribute_value::Kind;
use vitals_proto::ingestion::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{self, KeysetPage, PageLimits};
use vitals_store::ingestion as st;
use vitals_store::values::{
    AccountStatus, Channel, ContactRole, InteractionDirection, MetricDirection,
};

use validate as v;

/// Longest account or contact display name, in bytes.
pub const MAX_DISPLAY_NAME: usize = 1024;
/// Most attributes per account.
pub const MAX_ATTRIBUTES: usize = 200;
/// Longest string attribute value, in bytes.
pub const MAX_ATTRIBUTE_STRING: usize = 4096;
/// Longest interaction text, in bytes.
pub const MAX_TEXT: usize = 65_536;
/// Longest pulse note, in bytes.
pub const MAX_NOTE: usize = 4096;

/// Store string of an account status (`None` for UNSPECIFIED: keep the stored one).
fn status_str(s: pb::AccountStatus) -> Option<&'static str> {
    match s {
        pb::AccountStatus::Unspecified => None,
        pb::AccountStatus::Active => Some(AccountStatus::Active.as_str()),
        pb::AccountStatus::Trial => Some(AccountStatus::Trial.as_str()),
        pb::AccountStatus::Churned => Some(AccountStatus::Churned.as_str()),
        pb::AccountStatus::Unassigned => Some(AccountStatus::Unassigned.as_str()),
    }
}

/// The API status of a stored status string.
pub fn status_from_str(s: &str) -> pb::AccountStatus {
    match s.parse::<AccountStatus>() {
        Ok(AccountStatus::Active) => pb::AccountStatus::Active,
        Ok(AccountStatus::Trial) => pb::AccountStatus::Trial,
        Ok(AccountStatus::Churned) => pb::AccountStatus::Churned,
        Ok(AccountStatus::Unassigned) => pb::AccountStatus::Unassigned,
        Err(_) => pb::AccountStatus::Unspecified,
    }
}

/// Parses a status filter (UNSPECIFIED: any).
pub fn status_filter(v: i32) -> Result<Option<String>, ApiError> {
    let s: pb::AccountStatus = v::enum_value("status", v, false)?;
    Ok(status_str(s).map(str::to_string))
}

fn attribute_key_ok(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn account(a: &pb::Account, p: &str, now: DateTime<Utc>) -> Result<st::AccountUpsert, ApiError> {
    let id = v::id(&format!("{p}.account_id"), &a.account_id)?;
    let name = v::text(
        &format!("{p}.display_name"),
        &a.display_name,
        MAX_DISPLAY_NAME,
    )?;
    if a.attributes.len() > MAX_ATTRIBUTES {
        return Err(ApiError::invalid(
            format!("{p}.attributes"),
            format!("holds {} attributes, more than 200", a.attributes.len()),
        ));
    }
    let mut attributes = BTreeMap::new();
    // Sorted so that the first bad key reported is the same on every call.
    let mut keys: Vec<&String> = a.attributes.keys().collect();
    keys.sort();
    for k in keys {
        let f = format!("{p}.attributes[{k:?}]");
        if k.is_empty() || k.len() > MAX_NAME_KEY || !attribute_key_ok(k) {
            return Err(ApiError::invalid(
                f,
                "key must be 1..128 bytes matching [A-Za-z_][A-Za-z0-9_]*",
            ));
        }
        let value = match a.attributes.get(k).and_then(|x| x.kind.as_ref()) {
            None => None,
            Some(Kind::StringValue(s)) => {
                if s.len() > MAX_ATTRIBUTE_STRING {
                    return Err(ApiError::invalid(f, "string longer than 4096 bytes"));
                }
                vitals_server::validate::no_nul(&f, s)?;
                Some(st::AttributeValue::String(s.clone()))
            }
            Some(Kind::NumberValue(x)) => Some(st::AttributeValue::Number(v::value(&f, *x)?)),
            Some(Kind::BoolValue(b)) => Some(st::AttributeValue::Bool(*b)),
            Some(Kind::TimestampValue(t)) => {
                Some(st::AttributeValue::Timestamp(v::any_time(&f, t)?))
            }
        };
        attributes.insert(k.clone(), value);
    }
    let created_at = match &a.create_time {
        Some(t) => Some(v::time_at(&format!("{p}.create_time"), t, now)?),
        None => None,
    };
    let status: pb::AccountStatus = v::enum_value(&format!("{p}.status"), a.status, false)?;
    if status == pb::AccountStatus::Unassigned {
        return Err(ApiError::invalid(
            format!("{p}.status"),
            "ACCOUNT_STATUS_UNASSIGNED cannot be set",
        ));
    }
    let parent = match a.parent_id.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(parent) => {
            let f = format!("{p}.parent_id");
            let parent = v::id(&f, parent)?;
            if parent == id {
                return Err(ApiError::invalid(f, "an account cannot be its own parent"));
            }
            Some(Some(parent))
        }
    };
    Ok(st::AccountUpsert {
        id,
        name,
        attributes,
        created_at,
        status: status_str(status).map(str::to_string),
        parent,
    })
}

const MAX_NAME_KEY: usize = 128;

/// Validates an UpsertAccounts batch (account ids must be unique within it).
pub fn accounts_batch(r: &pb::UpsertAccountsRequest) -> Result<Vec<st::AccountUpsert>, ApiError> {
    v::batch_len("accounts", r.accounts.len())?;
    let now = Utc::now();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(r.accounts.len());
    for (i, a) in r.accounts.iter().enumerate() {
        let p = format!("accounts[{i}]");
        out.push(account(a, &p, now)?);
        if let Some(first) = seen.insert(a.account_id.as_str(), i) {
            return Err(ApiError::invalid(
                format!("{p}.account_id"),
                format!("duplicate of accounts[{first}]"),
            ));
        }
    }
    Ok(out)
}

/// The API form of a stored account.
pub fn account_to_pb(a: st::AccountRecord) -> pb::Account {
    let ts = |t: DateTime<Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    };
    pb::Account {
        account_id: a.id,
        display_name: a.name,
        attributes: a
            .attributes
            .into_iter()
            .map(|(k, v)| {
                let kind = match v {
                    st::AttributeValue::String(s) => Kind::StringValue(s),
                    st::AttributeValue::Number(x) => Kind::NumberValue(x),
                    st::AttributeValue::Bool(b) => Kind::BoolValue(b),
                    st::AttributeValue::Timestamp(t) => Kind::TimestampValue(ts(t)),
                };
                (k, cpb::AttributeValue { kind: Some(kind) })
            })
            .collect(),
        create_time: Some(ts(a.created_at)),
        status: status_from_str(&a.status) as i32,
        profile: a
            .profile_id
            .map(|p| format!("profiles/{p}"))
            .unwrap_or_default(),
        update_time: Some(ts(a.updated_at)),
        parent_id: a.parent_id,
    }
}

/// Validates an UpsertContacts batch.
pub fn contacts_batch(r: &pb::UpsertContactsRequest) -> Result<Vec<st::ContactUpsert>, ApiError> {
    v::batch_len("contacts", r.contacts.len())?;
    r.contacts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = format!("contacts[{i}]");
            let role: pb::ContactRole = v::enum_value(&format!("{p}.role"), c.role, false)?;
            let role = match role {
                pb::ContactRole::Unspecified => None,
                pb::ContactRole::User => Some(ContactRole::User.as_str()),
                pb::ContactRole::DecisionMaker => Some(ContactRole::DecisionMaker.as_str()),
                pb::ContactRole::Champion => Some(ContactRole::Champion.as_str()),
            };
            let domain = v::text(&format!("{p}.email_domain"), &c.email_domain, 253)?;
            if let Some(d) = &domain
                && d.chars()
                    .any(|ch| ch.is_control() || ch.is_whitespace() || ch == '@')
            {
                return Err(ApiError::invalid(
                    format!("{p}.email_domain"),
                    "must be a bare domain such as example.com",
                ));
            }
            Ok(st::ContactUpsert {
                account_id: v::id(&format!("{p}.account_id"), &c.account_id)?,
                id: v::id(&format!("{p}.contact_id"), &c.contact_id)?,
                role: role.map(str::to_string),
                email_domain: domain.map(|d| d.to_lowercase()),
                name: v::text(
                    &format!("{p}.display_name"),
                    &c.display_name,
                    MAX_DISPLAY_NAME,
                )?,
            })
        })
        .collect()
}

/// Validates one event at path `p` (e.g. `events[3]`).
pub fn event(e: &pb::Event, p: &str, now: DateTime<Utc>) -> Result<st::NewEvent, ApiError> {
    Ok(st::NewEvent {
        event_id: v::id(&format!("{p}.event_id"), &e.event_id)?,
        account_id: v::id(&format!("{p}.account_id"), &e.account_id)?,
        user_id: v::opt_id(&format!("{p}.user_id"), &e.user_id)?,
        event_type: v::name(&format!("{p}.event_type"), &e.event_type)?,
        occurred_at: v::required_time(&format!("{p}.occur_time"), e.occur_time.as_ref(), now)?,
        value: match e.value {
            Some(x) => Some(v::value(&format!("{p}.value"), x)?),
            None => None,
        },
    })
}

/// Validates one IngestEvents batch, taking its strings without copying; errors name
/// the batch's sequence number.
pub fn events_batch(r: pb::IngestEventsRequest) -> Result<(u64, Vec<st::NewEvent>), ApiError> {
    let seq = r.sequence;
    let named = |e: ApiError| match e {
        ApiError::InvalidArgument { field, message } => ApiError::InvalidArgument {
            field: format!("batch {seq}: {field}"),
            message,
        },
        other => other,
    };
    v::batch_len("events", r.events.len()).map_err(named)?;
    let now = Utc::now();
    let mut out = Vec::with_capacity(r.events.len());
    for (i, e) in r.events.into_iter().enumerate() {
        out.push(event_fast(e, i, now).map_err(named)?);
    }
    Ok((seq, out))
}

/// [`event`] without building any field path unless the event is bad: the hot path of
/// streaming ingestion formats nothing and copies no string for good events.
fn event_fast(e: pb::Event, i: usize, now: DateTime<Utc>) -> Result<st::NewEvent, ApiError> {
    let simple_id =
        |s: &str| !s.is_empty() && s.len() <= v::MAX_ID_BYTES && !s.chars().any(char::is_control);
    let ok = simple_id(&e.event_id)
        && simple_id(&e.account_id)
        && (e.user_id.is_empty() || simple_id(&e.user_id))
        && !e.event_type.is_empty()
        && e.event_type.len() <= v::MAX_NAME_BYTES
        && !e.event_type.chars().any(char::is_control)
        && e.value
            .is_none_or(|x| x.is_finite() && x.abs() <= v::MAX_ABS_VALUE);
    let at = e.occur_time.as_ref().and_then(|t| {
        let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
        let at = DateTime::from_timestamp(t.seconds, nanos)?;
        (at.timestamp() >= v::MIN_TIME_SECS && at <= now + v::MAX_FUTURE).then_some(at)
    });
    match (ok, at) {
        (true, Some(occurred_at)) => Ok(st::NewEvent {
            user_id: (!e.user_id.is_empty()).then_some(e.user_id),
            account_id: e.account_id,
            event_id: e.event_id,
            event_type: e.event_type,
            occurred_at,
            value: e.value,
        }),
        // Slow path: find and name the bad field.
        _ => event(&e, &format!("events[{i}]"), now),
    }
}

/// Validates RecordInteractions; `sentiment` stays `None` where it is to be computed
/// from the text (returned alongside, by index).
pub fn interactions_batch(
    r: &pb::RecordInteractionsRequest,
) -> Result<Vec<(st::InteractionRow, Option<String>)>, ApiError> {
    v::batch_len("interactions", r.interactions.len())?;
    let now = Utc::now();
    r.interactions
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("interactions[{i}]");
            let channel: pb::Channel = v::enum_value(&format!("{p}.channel"), x.channel, true)?;
            let direction: pb::Direction =
                v::enum_value(&format!("{p}.direction"), x.direction, true)?;
            let sentiment = match x.sentiment {
                Some(s) => {
                    let f = format!("{p}.sentiment");
                    let s = v::finite(&f, s)?;
                    if !(-1.0..=1.0).contains(&s) {
                        return Err(ApiError::invalid(f, "must be in [-1, 1]"));
                    }
                    Some(s)
                }
                None => None,
            };
            let text = v::text(&format!("{p}.text"), &x.text, MAX_TEXT)?;
            Ok((
                st::InteractionRow {
                    id: v::id(&format!("{p}.interaction_id"), &x.interaction_id)?,
                    account_id: v::id(&format!("{p}.account_id"), &x.account_id)?,
                    contact_id: v::opt_id(&format!("{p}.contact_id"), &x.contact_id)?,
                    channel: match channel {
                        pb::Channel::Email => Channel::Email,
                        pb::Channel::Call => Channel::Call,
                        pb::Channel::Meeting => Channel::Meeting,
                        pb::Channel::Ticket => Channel::Ticket,
                        pb::Channel::Chat | pb::Channel::Unspecified => Channel::Chat,
                    }
                    .as_str()
                    .to_string(),
                    direction: match direction {
                        pb::Direction::Inbound => InteractionDirection::Inbound,
                        pb::Direction::Outbound | pb::Direction::Unspecified => {
                            InteractionDirection::Outbound
                        }
                    }
                    .as_str()
                    .to_string(),
                    occurred_at: v::required_time(
                        &format!("{p}.occur_time"),
                        x.occur_time.as_ref(),
                        now,
                    )?,
                    replied: x.replied,
                    sentiment,
                },
                if sentiment.is_none() { text } else { None },
            ))
        })
        .collect()
}

/// Validates RecordPulses.
pub fn pulses_batch(r: &pb::RecordPulsesRequest) -> Result<Vec<st::PulseRow>, ApiError> {
    v::batch_len("pulses", r.pulses.len())?;
    let now = Utc::now();
    r.pulses
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("pulses[{i}]");
            Ok(st::PulseRow {
                account_id: v::id(&format!("{p}.account_id"), &x.account_id)?,
                author: v::id(&format!("{p}.author"), &x.author)?,
                value: v::rating(&format!("{p}.value"), x.value)?,
                note: v::text(&format!("{p}.note"), &x.note, MAX_NOTE)?.unwrap_or_default(),
                at: v::required_time(&format!("{p}.occur_time"), x.occur_time.as_ref(), now)?,
            })
        })
        .collect()
}

/// Validates UpsertSubscriptions. The end time may lie in the future (contracts end
/// later); the start follows the usual rule.
pub fn subscriptions_batch(
    r: &pb::UpsertSubscriptionsRequest,
) -> Result<Vec<st::SubscriptionRow>, ApiError> {
    v::batch_len("subscriptions", r.subscriptions.len())?;
    let now = Utc::now();
    r.subscriptions
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("subscriptions[{i}]");
            let id = v::id(&format!("{p}.subscription_id"), &x.subscription_id)?;
            let account_id = v::id(&format!("{p}.account_id"), &x.account_id)?;
            let product = v::id(&format!("{p}.product"), &x.product)?;
            let starts_at =
                v::required_time(&format!("{p}.start_time"), x.start_time.as_ref(), now)?;
            let ends_at = match &x.end_time {
                Some(t) => {
                    let f = format!("{p}.end_time");
                    let e = v::any_time(&f, t)?;
                    if e <= starts_at {
                        return Err(ApiError::invalid(f, "must be after start_time"));
                    }
                    Some(e)
                }
                None => None,
            };
            let mrr = v::value(&format!("{p}.mrr"), x.mrr)?;
            if mrr < 0.0 {
                return Err(ApiError::invalid(
                    format!("{p}.mrr"),
                    "must not be negative",
                ));
            }
            let quantity = match x.quantity {
                Some(q) => {
                    let q = v::value(&format!("{p}.quantity"), q)?;
                    if q < 0.0 {
                        return Err(ApiError::invalid(
                            format!("{p}.quantity"),
                            "must not be negative",
                        ));
                    }
                    Some(q)
                }
                None => None,
            };
            let units = v::text(&format!("{p}.units"), &x.units, 64)?;
            let bill = match x.billing_period_months {
                0 => 1,
                n @ 1..=120 => n as i32,
                n => {
                    return Err(ApiError::invalid(
                        format!("{p}.billing_period_months"),
                        format!("must be in 1..120 (got {n})"),
                    ));
                }
            };
            let discount = v::finite(&format!("{p}.discount"), x.discount)?;
            if !(0.0..1.0).contains(&discount) {
                return Err(ApiError::invalid(
                    format!("{p}.discount"),
                    "must be in [0, 1)",
                ));
            }
            Ok(st::SubscriptionRow {
                account_id,
                id,
                product,
                starts_at,
                ends_at,
                mrr,
                quantity,
                units,
                bill_period_months: bill,
                is_addon: x.add_on,
                discount,
            })
        })
        .collect()
}

/// Validates UpsertEventTypes.
pub fn event_types_batch(
    r: &pb::UpsertEventTypesRequest,
) -> Result<Vec<st::EventTypeUpsert>, ApiError> {
    v::batch_len("event_types", r.event_types.len())?;
    r.event_types
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("event_types[{i}]");
            Ok(st::EventTypeUpsert {
                name: v::name(&format!("{p}.name"), &x.name)?,
                display_name: v::text(&format!("{p}.display_name"), &x.display_name, 200)?,
                is_key: x.key,
                description: v::text(&format!("{p}.description"), &x.description, 4096)?,
            })
        })
        .collect()
}

/// The API form of a stored event type.
pub fn event_type_to_pb(t: st::EventTypeRecord) -> pb::EventType {
    pb::EventType {
        name: t.name,
        display_name: t.display_name,
        key: t.is_key,
        description: t.description,
        event_count: t.event_count.max(0) as u64,
    }
}

/// Validates UpsertCustomMetricDefinitions.
pub fn metric_definitions_batch(
    r: &pb::UpsertCustomMetricDefinitionsRequest,
) -> Result<Vec<st::MetricDefinitionRow>, ApiError> {
    v::batch_len("definitions", r.definitions.len())?;
    r.definitions
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("definitions[{i}]");
            let dir: cpb::KpiDirection =
                v::enum_value(&format!("{p}.direction"), x.direction, false)?;
            Ok(st::MetricDefinitionRow {
                name: v::snake_name(&format!("{p}.name"), &x.name)?,
                display_name: v::text(&format!("{p}.display_name"), &x.display_name, 200)?
                    .unwrap_or_default(),
                description: v::text(&format!("{p}.description"), &x.description, 4096)?
                    .unwrap_or_default(),
                direction: match dir {
                    cpb::KpiDirection::LowerIsBetter => MetricDirection::LowerIsBetter,
                    _ => MetricDirection::HigherIsBetter,
                }
                .as_str()
                .to_string(),
            })
        })
        .collect()
}

/// Validates RecordCustomMetrics.
pub fn custom_metrics_batch(
    r: &pb::RecordCustomMetricsRequest,
) -> Result<Vec<st::CustomMetricRow>, ApiError> {
    v::batch_len("metrics", r.metrics.len())?;
    let now = Utc::now();
    r.metrics
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("metrics[{i}]");
            Ok(st::CustomMetricRow {
                account_id: v::id(&format!("{p}.account_id"), &x.account_id)?,
                name: v::snake_name(&format!("{p}.name"), &x.name)?,
                value: v::value(&format!("{p}.value"), x.value)?,
                at: v::required_time(&format!("{p}.occur_time"), x.occur_time.as_ref(), now)?,
            })
        })
        .collect()
}

/// Validates SetCustomScoreFields ((account, field) at most once per batch).
pub fn score_fields_batch(
    r: &pb::SetCustomScoreFieldsRequest,
) -> Result<Vec<st::ScoreFieldRow>, ApiError> {
    v::batch_len("fields", r.fields.len())?;
    let now = Utc::now();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut out = Vec::with_capacity(r.fields.len());
    for (i, x) in r.fields.iter().enumerate() {
        let p = format!("fields[{i}]");
        let row = st::ScoreFieldRow {
            account_id: v::id(&format!("{p}.account_id"), &x.account_id)?,
            field: v::snake_name(&format!("{p}.field"), &x.field)?,
            value: v::rating(&format!("{p}.value"), x.value)?,
            at: match &x.update_time {
                Some(t) => v::time_at(&format!("{p}.update_time"), t, now)?,
                None => now,
            },
        };
        if let Some(first) = seen.insert((x.account_id.as_str(), x.field.as_str()), i) {
            return Err(ApiError::invalid(
                format!("{p}.field"),
                format!("duplicate of fields[{first}] for the same account"),
            ));
        }
        out.push(row);
    }
    Ok(out)
}

/// Validates RecordWebhookSignals.
pub fn signals_batch(r: &pb::RecordWebhookSignalsRequest) -> Result<Vec<st::SignalRow>, ApiError> {
    v::batch_len("signals", r.signals.len())?;
    let now = Utc::now();
    r.signals
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("signals[{i}]");
            Ok(st::SignalRow {
                account_id: v::id(&format!("{p}.account_id"), &x.account_id)?,
                name: v::snake_name(&format!("{p}.name"), &x.name)?,
                value: v::rating(&format!("{p}.value"), x.value)?,
                at: v::required_time(&format!("{p}.occur_time"), x.occur_time.as_ref(), now)?,
            })
        })
        .collect()
}

/// A decoded ListAccounts request: the filter and the page.
#[derive(Clone, Debug)]
pub struct AccountsQuery {
    /// Which accounts.
    pub filter: st::AccountFilter,
    /// Which page of them (after an account id).
    pub page: KeysetPage<1>,
}

/// Validates a ListAccounts request; the page token is bound to its filters.
pub fn list_accounts_request(r: &pb::ListAccountsRequest) -> Result<AccountsQuery, ApiError> {
    let size = PageLimits::STANDARD.size(r.page_size)?;
    vitals_server::validate::no_nul("profile", &r.profile)?;
    let profile_id = if r.profile.is_empty() {
        None
    } else {
        let id = r
            .profile
            .strip_prefix("profiles/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| ApiError::invalid("profile", "must be profiles/{profile_id}"))?;
        Some(id.to_string())
    };
    let status = status_filter(r.status)?;
    let parent_id = if r.parent_id.is_empty() {
        None
    } else {
        Some(v::id("parent_id", &r.parent_id)?)
    };
    let status_s = r.status.to_string();
    let mut parts = vec![r.profile.as_str(), status_s.as_str()];
    // Only when set, so that tokens of requests without it keep their fingerprint.
    if let Some(p) = &parent_id {
        parts.push(p);
    }
    let filters = paging::fingerprint(&parts);
    let after = paging::decode::<1>(&r.page_token, filters)?;
    Ok(AccountsQuery {
        filter: st::AccountFilter {
            profile_id,
            status,
            parent_id,
        },
        page: KeysetPage {
            size,
            after,
            filters,
        },
    })
}

/// The ListAccounts response of `rows` (read with the page's limit) out of `total`.
pub fn list_accounts_response(
    mut rows: Vec<st::AccountRecord>,
    total: u64,
    page: &KeysetPage<1>,
) -> pb::ListAccountsResponse {
    let next_page_token = page.next(&mut rows, |a| [a.id.clone()]);
    pb::ListAccountsResponse {
        accounts: rows.into_iter().map(account_to_pb).collect(),
        next_page_token,
        total_size: u32::try_from(total).unwrap_or(u32::MAX),
    }
}

/// Validates a ListEventTypes request (paged after an event type name).
pub fn list_event_types_request(r: &pb::ListEventTypesRequest) -> Result<KeysetPage<1>, ApiError> {
    KeysetPage::decode(
        PageLimits::STANDARD,
        r.page_size,
        &r.page_token,
        paging::fingerprint(&[]),
    )
}

/// The ListEventTypes response of `rows` (read with the page's limit).
pub fn list_event_types_response(
    mut rows: Vec<st::EventTypeRecord>,
    page: &KeysetPage<1>,
) -> pb::ListEventTypesResponse {
    let next_page_token = page.next(&mut rows, |t| [t.name.clone()]);
    pb::ListEventTypesResponse {
        event_types: rows.into_iter().map(event_type_to_pb).collect(),
        next_page_token,
    }
}

/// Validates an IngestEvent request.
pub fn ingest_event_request(r: &pb::IngestEventRequest) -> Result<st::NewEvent, ApiError> {
    let e = r
        .event
        .as_ref()
        .ok_or_else(|| ApiError::invalid("event", "is required"))?;
    event(e, "event", Utc::now())
}

/// Validates a DeleteAccounts request: 1..=[`MAX_ERASE_BATCH`] ids, each a valid id.
///
/// [`MAX_ERASE_BATCH`]: vitals_store::erasure::MAX_ERASE_BATCH
pub fn delete_accounts_request(r: &pb::DeleteAccountsRequest) -> Result<Vec<String>, ApiError> {
    let max = vitals_store::erasure::MAX_ERASE_BATCH;
    if r.account_ids.is_empty() {
        return Err(ApiError::invalid(
            "account_ids",
            "must hold at least one id",
        ));
    }
    if r.account_ids.len() > max {
        return Err(ApiError::invalid(
            "account_ids",
            format!(
                "holds {} ids, more than the limit of 1,000",
                r.account_ids.len()
            ),
        ));
    }
    r.account_ids
        .iter()
        .enumerate()
        .map(|(i, id)| v::id(&format!("account_ids[{i}]"), id))
        .collect()
}

/// The DeleteAccounts response: `asked` distinct ids, of which `erased` had rows.
pub fn delete_accounts_response(
    asked: usize,
    erased: &vitals_store::erasure::Erased,
) -> pb::DeleteAccountsResponse {
    let found = erased.found.len();
    pb::DeleteAccountsResponse {
        deleted_count: found as u32,
        not_found_count: asked.saturating_sub(found) as u32,
        deleted_row_count: erased.rows,
    }
}
