//! Stored values as scoring-core's types: the one decoding of the strings the store keeps
//! (channels, directions, roles, metric directions, the `seats` attribute, counts) and the
//! one assembly of a [`CatalogueSpec`] from names. The input loader and the learner's
//! history both use these.

use std::collections::{HashMap, HashSet};

use vitals_scoring_core::{
    CatalogueSpec, Channel, ContactRole, CustomMetricSpec, Direction, InteractionDirection,
};

/// An interaction's stored channel, `None` for one scoring-core does not know.
pub fn channel(s: &str) -> Option<Channel> {
    Some(match s {
        "email" => Channel::Email,
        "call" => Channel::Call,
        "meeting" => Channel::Meeting,
        "ticket" => Channel::Ticket,
        "chat" => Channel::Chat,
        _ => return None,
    })
}

/// An interaction's stored direction (`inbound`, else outbound).
pub fn direction(s: &str) -> InteractionDirection {
    if s == "inbound" {
        InteractionDirection::Inbound
    } else {
        InteractionDirection::Outbound
    }
}

/// A contact's stored role, `None` for none or an unknown one.
pub fn role(s: &str) -> Option<ContactRole> {
    Some(match s {
        "user" => ContactRole::User,
        "decision_maker" => ContactRole::DecisionMaker,
        "champion" => ContactRole::Champion,
        _ => return None,
    })
}

/// A custom metric's stored direction (`lower_is_better`, else higher is better).
pub fn metric_direction(s: &str) -> Direction {
    if s == "lower_is_better" {
        Direction::LowerIsBetter
    } else {
        Direction::HigherIsBetter
    }
}

/// The `seats` attribute, `{"seats": {"number": n}}` (or a bare number).
pub fn seats(attributes: &serde_json::Value) -> Option<f64> {
    let v = attributes.get("seats")?;
    v.as_f64()
        .or_else(|| v.get("number").and_then(serde_json::Value::as_f64))
        .or_else(|| v.get("number_value").and_then(serde_json::Value::as_f64))
        .filter(|x| x.is_finite() && *x > 0.0)
}

/// A stored count as `u32` (negative: 0, too large: `u32::MAX`).
pub fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// The KPI catalogue's spec: the event types in id order, the key ones by name (`None`:
/// every type is key), the custom metrics in id order with their declared directions
/// (those in `lower_is_better` are, the others higher is better), and the score fields.
pub fn catalogue_spec(
    event_types: &[String],
    key_event_types: Option<&HashSet<String>>,
    metric_names: &[&str],
    lower_is_better: &HashSet<String>,
    score_fields: Vec<String>,
) -> CatalogueSpec {
    let type_id: HashMap<&str, u32> = event_types
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let key_event_types = key_event_types.map(|keys| {
        let mut k: Vec<u32> = keys
            .iter()
            .filter_map(|n| type_id.get(n.as_str()).copied())
            .collect();
        k.sort_unstable();
        k
    });
    CatalogueSpec {
        event_types: event_types.to_vec(),
        key_event_types,
        custom_metrics: metric_names
            .iter()
            .map(|n| CustomMetricSpec {
                name: (*n).to_owned(),
                direction: if lower_is_better.contains(*n) {
                    Direction::LowerIsBetter
                } else {
                    Direction::HigherIsBetter
                },
            })
            .collect(),
        score_fields,
    }
}
