//! Property tests of every ingestion request decoder (`vitals_ingestion::convert`), a
//! fixed number of cases each: whatever a client sends (strings with NUL, control
//! characters, any Unicode or 70 KB; NaN, infinities, extreme numbers; timestamps with
//! any seconds and nanos), the decoder does not panic, every error is a clear
//! INVALID_ARGUMENT naming a field, and what it accepts can be stored on both back ends
//! (no NUL, numbers within the value bound, times within their range).

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use vitals_ingestion::convert;
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as pb;
use vitals_server::paging;
use vitals_server::validate::{EARLIEST, MAX_AHEAD, TIMESTAMP_MAX_SECS, TIMESTAMP_MIN_SECS};
use vitals_test_support::arb::{
    self, assert_clear_invalid, assert_storable_text, assert_storable_value,
};

fn data_time_ok(field: &str, t: DateTime<Utc>) {
    assert!(
        t >= EARLIEST && t <= Utc::now() + MAX_AHEAD,
        "{field}: accepted {t}"
    );
}

fn any_time_ok(field: &str, t: DateTime<Utc>) {
    assert!(
        (TIMESTAMP_MIN_SECS..=TIMESTAMP_MAX_SECS).contains(&t.timestamp()),
        "{field}: accepted {t}"
    );
}

fn attribute() -> impl Strategy<Value = cpb::AttributeValue> {
    use cpb::attribute_value::Kind;
    prop_oneof![
        Just(None),
        arb::text().prop_map(|s| Some(Kind::StringValue(s))),
        arb::number().prop_map(|x| Some(Kind::NumberValue(x))),
        any::<bool>().prop_map(|b| Some(Kind::BoolValue(b))),
        arb::timestamp().prop_map(|t| Some(Kind::TimestampValue(t))),
    ]
    .prop_map(|kind| cpb::AttributeValue { kind })
}

fn account() -> impl Strategy<Value = pb::Account> {
    (
        arb::text(),
        arb::text(),
        prop::collection::btree_map(arb::short_text(), attribute(), 0..4),
        arb::opt_timestamp(),
        arb::int(),
    )
        .prop_map(
            |(account_id, display_name, attributes, create_time, status)| pb::Account {
                account_id,
                display_name,
                attributes: attributes.into_iter().collect(),
                create_time,
                status,
                ..Default::default()
            },
        )
}

fn event() -> impl Strategy<Value = pb::Event> {
    (
        arb::text(),
        arb::text(),
        arb::text(),
        arb::text(),
        arb::opt_timestamp(),
        prop::option::of(arb::number()),
    )
        .prop_map(
            |(event_id, account_id, user_id, event_type, occur_time, value)| pb::Event {
                event_id,
                account_id,
                user_id,
                event_type,
                occur_time,
                value,
            },
        )
}

/// A plausible, valid event that the strategy's mutations start from (so that the
/// later fields are reached, not only the first one).
fn good_event(i: usize) -> pb::Event {
    pb::Event {
        event_id: format!("e{i}"),
        account_id: "acme".into(),
        user_id: String::new(),
        event_type: "login".into(),
        occur_time: Some(prost_types::Timestamp {
            seconds: Utc::now().timestamp() - 3600,
            nanos: 0,
        }),
        value: None,
    }
}

fn check_event(e: &vitals_store::ingestion::NewEvent) {
    for (f, s) in [
        ("event_id", &e.event_id),
        ("account_id", &e.account_id),
        ("event_type", &e.event_type),
    ] {
        assert_storable_text(f, s);
    }
    if let Some(u) = &e.user_id {
        assert_storable_text("user_id", u);
    }
    if let Some(v) = e.value {
        assert_storable_value("value", v);
    }
    data_time_ok("occur_time", e.occurred_at);
}

proptest! {
    #![proptest_config(arb::config())]

    #[test]
    fn accounts(accounts in prop::collection::vec(account(), 0..4)) {
        let r = pb::UpsertAccountsRequest { accounts, replace_attributes: false };
        match convert::accounts_batch(&r) {
            Ok(rows) => for a in rows {
                assert_storable_text("account_id", &a.id);
                if let Some(n) = &a.name { assert_storable_text("display_name", n); }
                for (k, v) in &a.attributes {
                    assert_storable_text("attribute key", k);
                    match v {
                        Some(vitals_store::ingestion::AttributeValue::String(s)) => assert_storable_text(k, s),
                        Some(vitals_store::ingestion::AttributeValue::Number(x)) => assert_storable_value(k, *x),
                        Some(vitals_store::ingestion::AttributeValue::Timestamp(t)) => any_time_ok(k, *t),
                        _ => {}
                    }
                }
                if let Some(t) = a.created_at { data_time_ok("create_time", t); }
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn events_one_and_streamed(
        bad in event(),
        at in 0usize..3,
        mutate in prop::sample::select(vec!["all", "event_id", "account_id", "user_id", "event_type", "occur_time", "value"]),
    ) {
        // The arbitrary event, and a good batch with one field of it taken from the
        // arbitrary one.
        match convert::event(&bad, "event", Utc::now()) {
            Ok(e) => check_event(&e),
            Err(e) => assert_clear_invalid(e),
        }
        let mut events: Vec<pb::Event> = (0..3).map(good_event).collect();
        let target = &mut events[at];
        match mutate {
            "event_id" => target.event_id = bad.event_id.clone(),
            "account_id" => target.account_id = bad.account_id.clone(),
            "user_id" => target.user_id = bad.user_id.clone(),
            "event_type" => target.event_type = bad.event_type.clone(),
            "occur_time" => target.occur_time = bad.occur_time,
            "value" => target.value = bad.value,
            _ => *target = bad.clone(),
        }
        let r = pb::IngestEventsRequest { sequence: 7, events };
        match convert::events_batch(r) {
            Ok((seq, rows)) => {
                prop_assert_eq!(seq, 7);
                prop_assert_eq!(rows.len(), 3);
                rows.iter().for_each(check_event);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with(&format!("batch 7: events[{at}].")), "{}", msg);
                assert_clear_invalid(e);
            }
        }
    }

    #[test]
    fn contacts(account_id in arb::text(), contact_id in arb::text(), role in arb::int(),
                email_domain in arb::text(), display_name in arb::text()) {
        let r = pb::UpsertContactsRequest { contacts: vec![pb::Contact {
            account_id, contact_id, role, email_domain, display_name,
        }] };
        match convert::contacts_batch(&r) {
            Ok(rows) => for c in rows {
                assert_storable_text("account_id", &c.account_id);
                assert_storable_text("contact_id", &c.id);
                if let Some(d) = &c.email_domain { assert_storable_text("email_domain", d); }
                if let Some(n) = &c.name { assert_storable_text("display_name", n); }
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn interactions(interaction_id in arb::text(), account_id in arb::text(), contact_id in arb::text(),
                    channel in arb::int(), direction in arb::int(), occur_time in arb::opt_timestamp(),
                    text in arb::text(), sentiment in prop::option::of(arb::number())) {
        let r = pb::RecordInteractionsRequest { interactions: vec![pb::Interaction {
            interaction_id, account_id, contact_id, channel, direction, occur_time,
            replied: None, text, sentiment,
        }] };
        match convert::interactions_batch(&r) {
            Ok(rows) => for (row, text) in rows {
                assert_storable_text("interaction_id", &row.id);
                assert_storable_text("account_id", &row.account_id);
                data_time_ok("occur_time", row.occurred_at);
                if let Some(t) = text { assert_storable_text("text", &t); }
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn pulses(account_id in arb::text(), author in arb::text(), value in arb::int(),
              note in arb::text(), occur_time in arb::opt_timestamp()) {
        let r = pb::RecordPulsesRequest { pulses: vec![pb::Pulse { account_id, author, value, note, occur_time }] };
        match convert::pulses_batch(&r) {
            Ok(rows) => for p in rows {
                assert_storable_text("note", &p.note);
                assert_storable_text("author", &p.author);
                data_time_ok("occur_time", p.at);
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn subscriptions(subscription_id in arb::text(), account_id in arb::text(), product in arb::text(),
                     start_time in arb::opt_timestamp(), end_time in arb::opt_timestamp(),
                     mrr in arb::number(), quantity in prop::option::of(arb::number()),
                     units in arb::text(), billing_period_months in any::<u32>(), discount in arb::number()) {
        let r = pb::UpsertSubscriptionsRequest { subscriptions: vec![pb::Subscription {
            subscription_id, account_id, product, start_time, end_time, mrr, quantity, units,
            billing_period_months, add_on: false, discount,
        }] };
        match convert::subscriptions_batch(&r) {
            Ok(rows) => for s in rows {
                assert_storable_text("product", &s.product);
                assert_storable_value("mrr", s.mrr);
                if let Some(q) = s.quantity { assert_storable_value("quantity", q); }
                data_time_ok("start_time", s.starts_at);
                if let Some(t) = s.ends_at { any_time_ok("end_time", t); }
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn event_types_and_metric_definitions(name in arb::text(), display_name in arb::text(),
                                          description in arb::text(), direction in arb::int()) {
        let r = pb::UpsertEventTypesRequest { event_types: vec![pb::EventType {
            name: name.clone(), display_name: display_name.clone(), key: true,
            description: description.clone(), event_count: 0,
        }] };
        match convert::event_types_batch(&r) {
            Ok(rows) => for t in rows {
                assert_storable_text("name", &t.name);
                if let Some(d) = &t.display_name { assert_storable_text("display_name", d); }
                if let Some(d) = &t.description { assert_storable_text("description", d); }
            },
            Err(e) => assert_clear_invalid(e),
        }
        let r = pb::UpsertCustomMetricDefinitionsRequest { definitions: vec![pb::CustomMetricDefinition {
            name, display_name, description, direction,
        }] };
        match convert::metric_definitions_batch(&r) {
            Ok(rows) => for d in rows {
                assert_storable_text("display_name", &d.display_name);
                assert_storable_text("description", &d.description);
            },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn metrics_fields_and_signals(account_id in arb::text(), name in arb::text(), value in arb::number(),
                                  rating in arb::int(), t in arb::opt_timestamp()) {
        let r = pb::RecordCustomMetricsRequest { metrics: vec![pb::CustomMetric {
            account_id: account_id.clone(), name: name.clone(), value, occur_time: t,
        }] };
        match convert::custom_metrics_batch(&r) {
            Ok(rows) => for m in rows {
                assert_storable_value("value", m.value);
                data_time_ok("occur_time", m.at);
            },
            Err(e) => assert_clear_invalid(e),
        }
        let r = pb::SetCustomScoreFieldsRequest { fields: vec![pb::CustomScoreField {
            account_id: account_id.clone(), field: name.clone(), value: rating, update_time: t,
        }] };
        match convert::score_fields_batch(&r) {
            Ok(rows) => for f in rows { data_time_ok("update_time", f.at); },
            Err(e) => assert_clear_invalid(e),
        }
        let r = pb::RecordWebhookSignalsRequest { signals: vec![pb::WebhookSignal {
            account_id, name, value: rating, occur_time: t,
        }] };
        match convert::signals_batch(&r) {
            Ok(rows) => for s in rows { data_time_ok("occur_time", s.at); },
            Err(e) => assert_clear_invalid(e),
        }
    }

    #[test]
    fn filters_and_page_tokens(status in arb::int(), token in arb::text()) {
        if let Err(e) = convert::status_filter(status) {
            assert_clear_invalid(e);
        }
        match paging::decode::<1>(&token, paging::fingerprint(&[])) {
            Ok(keys) => for k in keys.into_iter().flatten() { assert_storable_text("page_token", &k); },
            Err(e) => assert_clear_invalid(e),
        }
    }
}
