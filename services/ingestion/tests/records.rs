//! Every non-event RPC over real gRPC: what is stored, created/updated counts,
//! idempotency keys, unknown accounts, and the validation cases of issue 3.

mod common;

use std::collections::HashMap;

use common::{start, ts};
use tonic::Code;
use vitals_proto::common::v1 as cpb;
use vitals_proto::common::v1::attribute_value::Kind;
use vitals_proto::ingestion::v1 as pb;
use vitals_test_support::backends;

fn attr(k: Kind) -> cpb::AttributeValue {
    cpb::AttributeValue { kind: Some(k) }
}

fn account(id: &str, attrs: Vec<(&str, Kind)>) -> pb::Account {
    pb::Account {
        account_id: id.into(),
        attributes: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), attr(v)))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_upsert_get_list() {
    for backend in backends() {
        let env = start(backend).await;
        let mut c = env.client().await;
        // An event first creates "b" implicitly.
        c.ingest_event(pb::IngestEventRequest {
            event: Some(common::event(
                "b",
                "e1",
                "",
                "login",
                "2026-01-10T09:00:00Z",
                None,
            )),
        })
        .await
        .unwrap();
        let mut a = account(
            "a",
            vec![
                ("plan", Kind::StringValue("premium".into())),
                ("seats", Kind::NumberValue(50.0)),
                ("dob", Kind::TimestampValue(ts("1971-05-07T00:00:00Z"))),
            ],
        );
        a.display_name = "Acme".into();
        a.create_time = Some(ts("2024-03-01T00:00:00Z"));
        let r = c
            .upsert_accounts(pb::UpsertAccountsRequest {
                accounts: vec![a, account("b", vec![("partner", Kind::BoolValue(true))])],
                replace_attributes: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (1, 1), "{backend:?}");

        // Merge: seats changes, plan is removed (no kind), dob and name are kept.
        let mut merge = account("a", vec![("seats", Kind::NumberValue(60.0))]);
        merge
            .attributes
            .insert("plan".into(), cpb::AttributeValue { kind: None });
        merge.status = pb::AccountStatus::Trial as i32;
        c.upsert_accounts(pb::UpsertAccountsRequest {
            accounts: vec![merge],
            replace_attributes: false,
        })
        .await
        .unwrap();
        let got = c
            .get_account(pb::GetAccountRequest {
                account_id: "a".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        assert_eq!(got.display_name, "Acme");
        assert_eq!(got.status(), pb::AccountStatus::Trial);
        assert_eq!(got.create_time, Some(ts("2024-03-01T00:00:00Z")));
        let keys: Vec<&String> = {
            let mut k: Vec<&String> = got.attributes.keys().collect();
            k.sort();
            k
        };
        assert_eq!(keys, vec!["dob", "seats"], "{backend:?}");
        assert_eq!(got.attributes["seats"].kind, Some(Kind::NumberValue(60.0)));
        assert_eq!(
            got.attributes["dob"].kind,
            Some(Kind::TimestampValue(ts("1971-05-07T00:00:00Z")))
        );
        // The implicit account became active when upserted.
        let b = c
            .get_account(pb::GetAccountRequest {
                account_id: "b".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        assert_eq!(b.status(), pb::AccountStatus::Active);

        // Replace attributes.
        c.upsert_accounts(pb::UpsertAccountsRequest {
            accounts: vec![account(
                "a",
                vec![("tier", Kind::StringValue("gold".into()))],
            )],
            replace_attributes: true,
        })
        .await
        .unwrap();
        let got = c
            .get_account(pb::GetAccountRequest {
                account_id: "a".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        assert_eq!(got.attributes.len(), 1);

        let s = c
            .get_account(pb::GetAccountRequest {
                account_id: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::NotFound);

        // Paging over 25 accounts, 10 per page.
        let many: Vec<pb::Account> = (0..23)
            .map(|i| account(&format!("m{i:02}"), vec![]))
            .collect();
        c.upsert_accounts(pb::UpsertAccountsRequest {
            accounts: many,
            replace_attributes: false,
        })
        .await
        .unwrap();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let r = c
                .list_accounts(pb::ListAccountsRequest {
                    page_size: 10,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.total_size, 25);
            seen.extend(r.accounts.into_iter().map(|a| a.account_id));
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 25, "{backend:?}");
        let r = c
            .list_accounts(pb::ListAccountsRequest {
                status: pb::AccountStatus::Trial as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // "a" kept its trial status through the later upserts that did not set one.
        assert_eq!(r.total_size, 1, "{backend:?}");
        assert_eq!(r.accounts[0].account_id, "a");
        let s = c
            .list_accounts(pb::ListAccountsRequest {
                page_token: "zz".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::InvalidArgument,
                "page_token: not a token from a previous response of this list"
            )
        );
        let s = c
            .list_accounts(pb::ListAccountsRequest {
                page_size: -1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(s.message(), "page_size: must not be negative");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_interactions_pulses_subscriptions() {
    for backend in backends() {
        let env = start(backend).await;
        let mut c = env.client().await;
        let r = c
            .upsert_contacts(pb::UpsertContactsRequest {
                contacts: vec![pb::Contact {
                    account_id: "acme".into(),
                    contact_id: "jo".into(),
                    role: pb::ContactRole::DecisionMaker as i32,
                    email_domain: "Acme.COM".into(),
                    display_name: "Jo".into(),
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (1, 0));
        // Unspecified role keeps the stored one.
        let r = c
            .upsert_contacts(pb::UpsertContactsRequest {
                contacts: vec![pb::Contact {
                    account_id: "acme".into(),
                    contact_id: "jo".into(),
                    ..Default::default()
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));
        assert_eq!(
            env.int("SELECT COUNT(*) FROM contacts WHERE role = 'decision_maker' AND email_domain = 'acme.com' AND name = 'Jo'").await,
            1,
            "{backend:?}"
        );

        let inter = |id: &str, text: &str, sentiment: Option<f64>| pb::Interaction {
            interaction_id: id.into(),
            account_id: "acme".into(),
            contact_id: "jo".into(),
            channel: pb::Channel::Ticket as i32,
            direction: pb::Direction::Inbound as i32,
            occur_time: Some(ts("2026-01-10T09:00:00Z")),
            replied: Some(true),
            text: text.into(),
            sentiment,
        };
        let r = c
            .record_interactions(pb::RecordInteractionsRequest {
                interactions: vec![
                    inter(
                        "t1",
                        "The export is broken again and we are very frustrated",
                        None,
                    ),
                    inter("t2", "great", Some(-0.25)),
                    inter("t3", "", None),
                ],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.created_count, r.updated_count, r.sentiment_computed_count),
            (3, 0, 1)
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM interactions WHERE id = 't1' AND sentiment < -0.3 AND text IS NULL").await,
            1,
            "{backend:?}: sentiment computed, text discarded"
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM interactions WHERE id = 't2' AND sentiment = -0.25")
                .await,
            1
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM interactions WHERE id = 't3' AND sentiment IS NULL")
                .await,
            1
        );
        let r = c
            .record_interactions(pb::RecordInteractionsRequest {
                interactions: vec![inter("t3", "", Some(0.5))],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));

        let pulse = |v: i32, note: &str| pb::Pulse {
            account_id: "acme".into(),
            author: "csm@vendor.com".into(),
            value: v,
            note: note.into(),
            occur_time: Some(ts("2026-01-09T09:00:00Z")),
        };
        let r = c
            .record_pulses(pb::RecordPulsesRequest {
                pulses: vec![pulse(2, "meh")],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (1, 0));
        let r = c
            .record_pulses(pb::RecordPulsesRequest {
                pulses: vec![pulse(4, "better")],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));
        assert_eq!(env.int("SELECT COUNT(*) FROM pulses").await, 1);
        assert_eq!(env.int("SELECT value FROM pulses").await, 4, "{backend:?}");

        let sub = |id: &str, mrr: f64| pb::Subscription {
            subscription_id: id.into(),
            account_id: "newco".into(),
            product: "basic".into(),
            start_time: Some(ts("2025-01-01T00:00:00Z")),
            end_time: Some(ts("2027-01-01T00:00:00Z")),
            mrr,
            quantity: Some(5.0),
            units: "seats".into(),
            billing_period_months: 12,
            add_on: false,
            discount: 0.1,
        };
        let r = c
            .upsert_subscriptions(pb::UpsertSubscriptionsRequest {
                subscriptions: vec![sub("s1", 100.0), sub("s2", 20.0)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (2, 0));
        let r = c
            .upsert_subscriptions(pb::UpsertSubscriptionsRequest {
                subscriptions: vec![sub("s1", 120.0)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));
        assert_eq!(
            env.int("SELECT CAST(SUM(mrr) AS BIGINT) FROM subscriptions")
                .await,
            140
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM accounts WHERE id = 'newco' AND status = 'unassigned'")
                .await,
            1,
            "{backend:?}: unknown account created unassigned"
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_metrics_fields_signals() {
    for backend in backends() {
        let env = start(backend).await;
        let mut c = env.client().await;
        let r = c
            .upsert_event_types(pb::UpsertEventTypesRequest {
                event_types: vec![
                    pb::EventType {
                        name: "login".into(),
                        display_name: "Log in".into(),
                        key: true,
                        ..Default::default()
                    },
                    pb::EventType {
                        name: "export".into(),
                        ..Default::default()
                    },
                ],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (2, 0));
        c.ingest_event(pb::IngestEventRequest {
            event: Some(common::event(
                "a",
                "e",
                "",
                "login",
                "2026-01-10T09:00:00Z",
                None,
            )),
        })
        .await
        .unwrap();
        // Empty display name keeps the stored one.
        let r = c
            .upsert_event_types(pb::UpsertEventTypesRequest {
                event_types: vec![pb::EventType {
                    name: "login".into(),
                    key: true,
                    ..Default::default()
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));
        let page1 = c
            .list_event_types(pb::ListEventTypesRequest {
                page_size: 1,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page1.event_types[0].name, "export");
        let page2 = c
            .list_event_types(pb::ListEventTypesRequest {
                page_size: 1,
                page_token: page1.next_page_token,
            })
            .await
            .unwrap()
            .into_inner();
        let login = &page2.event_types[0];
        assert_eq!(
            (
                login.name.as_str(),
                login.display_name.as_str(),
                login.key,
                login.event_count
            ),
            ("login", "Log in", true, 1),
            "{backend:?}"
        );
        assert!(page2.next_page_token.is_empty());

        let r = c
            .upsert_custom_metric_definitions(pb::UpsertCustomMetricDefinitionsRequest {
                definitions: vec![pb::CustomMetricDefinition {
                    name: "open_invoices".into(),
                    display_name: "Open invoices".into(),
                    description: "count".into(),
                    direction: cpb::KpiDirection::LowerIsBetter as i32,
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (1, 0));
        assert_eq!(
            env.int(
                "SELECT COUNT(*) FROM custom_metric_definitions WHERE direction = 'lower_is_better'"
            )
            .await,
            1
        );

        let metric = |v: f64| pb::CustomMetric {
            account_id: "a".into(),
            name: "open_invoices".into(),
            value: v,
            occur_time: Some(ts("2026-01-05T00:00:00Z")),
        };
        c.record_custom_metrics(pb::RecordCustomMetricsRequest {
            metrics: vec![metric(3.0)],
        })
        .await
        .unwrap();
        let r = c
            .record_custom_metrics(pb::RecordCustomMetricsRequest {
                metrics: vec![metric(4.0)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));
        assert_eq!(
            env.int("SELECT CAST(value AS BIGINT) FROM custom_metrics")
                .await,
            4
        );

        let field = |v: i32, at: &str| pb::CustomScoreField {
            account_id: "a".into(),
            field: "exec_sponsor".into(),
            value: v,
            update_time: Some(ts(at)),
        };
        c.set_custom_score_fields(pb::SetCustomScoreFieldsRequest {
            fields: vec![field(4, "2026-01-05T00:00:00Z")],
        })
        .await
        .unwrap();
        // An older value goes to the history but does not replace the current one.
        let r = c
            .set_custom_score_fields(pb::SetCustomScoreFieldsRequest {
                fields: vec![field(2, "2026-01-01T00:00:00Z")],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.set_count, 1);
        assert_eq!(
            env.int("SELECT value FROM custom_score_fields").await,
            4,
            "{backend:?}"
        );
        assert_eq!(
            env.int("SELECT COUNT(*) FROM custom_score_field_history")
                .await,
            2
        );
        c.set_custom_score_fields(pb::SetCustomScoreFieldsRequest {
            fields: vec![field(5, "2026-01-06T00:00:00Z")],
        })
        .await
        .unwrap();
        assert_eq!(env.int("SELECT value FROM custom_score_fields").await, 5);

        let signal = |v: i32| pb::WebhookSignal {
            account_id: "a".into(),
            name: "support_escalation".into(),
            value: v,
            occur_time: Some(ts("2026-01-05T00:00:00Z")),
        };
        c.record_webhook_signals(pb::RecordWebhookSignalsRequest {
            signals: vec![signal(1)],
        })
        .await
        .unwrap();
        let r = c
            .record_webhook_signals(pb::RecordWebhookSignalsRequest {
                signals: vec![signal(2)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.created_count, r.updated_count), (0, 1));
        assert_eq!(
            env.int("SELECT value FROM webhook_signals").await,
            2,
            "{backend:?}"
        );
        env.stop().await;
    }
}

/// Each case: the RPC's error message for one bad item at index 1 of a batch (index 0
/// good), and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_cases_reject_the_whole_batch() {
    for backend in backends() {
        let env = start(backend).await;
        let mut c = env.client().await;
        let now = chrono::Utc::now();
        let future = prost_types::Timestamp {
            seconds: now.timestamp() + 2 * 86_400,
            nanos: 0,
        };
        let old = ts("1999-06-01T00:00:00Z");
        let t = || Some(ts("2026-01-05T00:00:00Z"));
        let mut errors: Vec<(tonic::Status, &str)> = Vec::new();

        // Accounts.
        let acc = |f: &dyn Fn(&mut pb::Account)| {
            let mut a = account("ok", vec![]);
            let mut b = account("bad", vec![]);
            f(&mut b);
            a.account_id = "ok".into();
            pb::UpsertAccountsRequest {
                accounts: vec![a, b],
                replace_attributes: false,
            }
        };
        let cases: Vec<(pb::UpsertAccountsRequest, &str)> = vec![
            (
                acc(&|a| a.account_id.clear()),
                "accounts[1].account_id: must not be empty",
            ),
            (
                acc(&|a| a.account_id = "x".repeat(257)),
                "accounts[1].account_id: longer than 256 bytes",
            ),
            (
                acc(&|a| a.account_id = "ok".into()),
                "accounts[1].account_id: duplicate of accounts[0]",
            ),
            (
                acc(&|a| a.create_time = Some(old)),
                "accounts[1].create_time: before 2000-01-01",
            ),
            (
                acc(&|a| a.create_time = Some(future)),
                "accounts[1].create_time: more than 24h in the future",
            ),
            (
                acc(&|a| a.status = 99),
                "accounts[1].status: unknown value 99",
            ),
            (
                acc(&|a| a.status = 4),
                "accounts[1].status: ACCOUNT_STATUS_UNASSIGNED cannot be set",
            ),
            (
                acc(&|a| {
                    a.attributes
                        .insert("seats".into(), attr(Kind::NumberValue(f64::NAN)));
                }),
                "accounts[1].attributes[\"seats\"]: must be a finite number",
            ),
            (
                acc(&|a| {
                    a.attributes
                        .insert("bad key".into(), attr(Kind::BoolValue(true)));
                }),
                "accounts[1].attributes[\"bad key\"]: key must be 1..128 bytes matching [A-Za-z_][A-Za-z0-9_]*",
            ),
        ];
        for (req, want) in cases {
            errors.push((c.upsert_accounts(req).await.unwrap_err(), want));
        }
        let s = c
            .upsert_accounts(pb::UpsertAccountsRequest::default())
            .await
            .unwrap_err();
        errors.push((s, "accounts: must hold at least one item"));

        // Contacts.
        let s = c
            .upsert_contacts(pb::UpsertContactsRequest {
                contacts: vec![
                    pb::Contact {
                        account_id: "a".into(),
                        contact_id: "c".into(),
                        ..Default::default()
                    },
                    pb::Contact {
                        account_id: "a".into(),
                        contact_id: "c2".into(),
                        role: 7,
                        ..Default::default()
                    },
                ],
            })
            .await
            .unwrap_err();
        errors.push((s, "contacts[1].role: unknown value 7"));

        // Interactions.
        let inter = |f: &dyn Fn(&mut pb::Interaction)| {
            let good = pb::Interaction {
                interaction_id: "i0".into(),
                account_id: "a".into(),
                channel: pb::Channel::Email as i32,
                direction: pb::Direction::Outbound as i32,
                occur_time: t(),
                ..Default::default()
            };
            let mut bad = good.clone();
            bad.interaction_id = "i1".into();
            f(&mut bad);
            pb::RecordInteractionsRequest {
                interactions: vec![good, bad],
            }
        };
        for (req, want) in [
            (
                inter(&|i| i.channel = 0),
                "interactions[1].channel: must be set",
            ),
            (
                inter(&|i| i.channel = 42),
                "interactions[1].channel: unknown value 42",
            ),
            (
                inter(&|i| i.direction = 0),
                "interactions[1].direction: must be set",
            ),
            (
                inter(&|i| i.sentiment = Some(1.5)),
                "interactions[1].sentiment: must be in [-1, 1]",
            ),
            (
                inter(&|i| i.sentiment = Some(f64::NAN)),
                "interactions[1].sentiment: must be a finite number",
            ),
            (
                inter(&|i| i.occur_time = Some(old)),
                "interactions[1].occur_time: before 2000-01-01",
            ),
            (
                inter(&|i| i.text = "x".repeat(65_537)),
                "interactions[1].text: longer than 65536 bytes",
            ),
        ] {
            errors.push((c.record_interactions(req).await.unwrap_err(), want));
        }

        // Pulses.
        let pulse = |v: i32| pb::Pulse {
            account_id: "a".into(),
            author: "csm".into(),
            value: v,
            note: String::new(),
            occur_time: t(),
        };
        for (v, want) in [
            (0, "pulses[1].value: must be in 1..5 (got 0)"),
            (6, "pulses[1].value: must be in 1..5 (got 6)"),
        ] {
            let s = c
                .record_pulses(pb::RecordPulsesRequest {
                    pulses: vec![pulse(3), pulse(v)],
                })
                .await
                .unwrap_err();
            errors.push((s, want));
        }
        let mut p = pulse(3);
        p.author.clear();
        errors.push((
            c.record_pulses(pb::RecordPulsesRequest {
                pulses: vec![pulse(3), p],
            })
            .await
            .unwrap_err(),
            "pulses[1].author: must not be empty",
        ));

        // Subscriptions.
        let sub = |f: &dyn Fn(&mut pb::Subscription)| {
            let good = pb::Subscription {
                subscription_id: "s0".into(),
                account_id: "a".into(),
                product: "basic".into(),
                start_time: Some(ts("2025-01-01T00:00:00Z")),
                end_time: None,
                mrr: 10.0,
                ..Default::default()
            };
            let mut bad = good.clone();
            bad.subscription_id = "s1".into();
            f(&mut bad);
            pb::UpsertSubscriptionsRequest {
                subscriptions: vec![good, bad],
            }
        };
        for (req, want) in [
            (
                sub(&|s| s.mrr = -1.0),
                "subscriptions[1].mrr: must not be negative",
            ),
            (
                sub(&|s| s.mrr = f64::INFINITY),
                "subscriptions[1].mrr: must be a finite number",
            ),
            (
                sub(&|s| s.end_time = Some(ts("2024-01-01T00:00:00Z"))),
                "subscriptions[1].end_time: must be after start_time",
            ),
            (
                sub(&|s| s.discount = 1.0),
                "subscriptions[1].discount: must be in [0, 1)",
            ),
            (
                sub(&|s| s.billing_period_months = 121),
                "subscriptions[1].billing_period_months: must be in 1..120 (got 121)",
            ),
            (
                sub(&|s| s.start_time = None),
                "subscriptions[1].start_time: is required",
            ),
            (
                sub(&|s| s.product.clear()),
                "subscriptions[1].product: must not be empty",
            ),
        ] {
            errors.push((c.upsert_subscriptions(req).await.unwrap_err(), want));
        }

        // Names and ratings.
        let s = c
            .record_custom_metrics(pb::RecordCustomMetricsRequest {
                metrics: vec![
                    pb::CustomMetric {
                        account_id: "a".into(),
                        name: "nps".into(),
                        value: 1.0,
                        occur_time: t(),
                    },
                    pb::CustomMetric {
                        account_id: "a".into(),
                        name: "NPS".into(),
                        value: 1.0,
                        occur_time: t(),
                    },
                ],
            })
            .await
            .unwrap_err();
        errors.push((s, "metrics[1].name: must match [a-z][a-z0-9_]*"));
        let s = c
            .record_custom_metrics(pb::RecordCustomMetricsRequest {
                metrics: vec![
                    pb::CustomMetric {
                        account_id: "a".into(),
                        name: "nps".into(),
                        value: 1.0,
                        occur_time: t(),
                    },
                    pb::CustomMetric {
                        account_id: "a".into(),
                        name: "nps".into(),
                        value: f64::NAN,
                        occur_time: t(),
                    },
                ],
            })
            .await
            .unwrap_err();
        errors.push((s, "metrics[1].value: must be a finite number"));
        let f = |v: i32, field: &str| pb::CustomScoreField {
            account_id: "a".into(),
            field: field.into(),
            value: v,
            update_time: None,
        };
        errors.push((
            c.set_custom_score_fields(pb::SetCustomScoreFieldsRequest {
                fields: vec![f(3, "x"), f(6, "y")],
            })
            .await
            .unwrap_err(),
            "fields[1].value: must be in 1..5 (got 6)",
        ));
        errors.push((
            c.set_custom_score_fields(pb::SetCustomScoreFieldsRequest {
                fields: vec![f(3, "x"), f(4, "x")],
            })
            .await
            .unwrap_err(),
            "fields[1].field: duplicate of fields[0] for the same account",
        ));
        let sig = |v: i32| pb::WebhookSignal {
            account_id: "a".into(),
            name: "esc".into(),
            value: v,
            occur_time: t(),
        };
        errors.push((
            c.record_webhook_signals(pb::RecordWebhookSignalsRequest {
                signals: vec![sig(3), sig(0)],
            })
            .await
            .unwrap_err(),
            "signals[1].value: must be in 1..5 (got 0)",
        ));
        let mut late = sig(3);
        late.occur_time = Some(future);
        errors.push((
            c.record_webhook_signals(pb::RecordWebhookSignalsRequest {
                signals: vec![sig(3), late],
            })
            .await
            .unwrap_err(),
            "signals[1].occur_time: more than 24h in the future",
        ));
        errors.push((
            c.upsert_event_types(pb::UpsertEventTypesRequest {
                event_types: vec![
                    pb::EventType {
                        name: "ok".into(),
                        ..Default::default()
                    },
                    pb::EventType {
                        name: "x".repeat(129),
                        ..Default::default()
                    },
                ],
            })
            .await
            .unwrap_err(),
            "event_types[1].name: longer than 128 bytes",
        ));
        errors.push((
            c.upsert_custom_metric_definitions(pb::UpsertCustomMetricDefinitionsRequest {
                definitions: vec![
                    pb::CustomMetricDefinition {
                        name: "ok".into(),
                        ..Default::default()
                    },
                    pb::CustomMetricDefinition {
                        name: "ok2".into(),
                        direction: 9,
                        ..Default::default()
                    },
                ],
            })
            .await
            .unwrap_err(),
            "definitions[1].direction: unknown value 9",
        ));
        let big = pb::RecordPulsesRequest {
            pulses: vec![pulse(3); 10_001],
        };
        errors.push((
            c.record_pulses(big).await.unwrap_err(),
            "pulses: holds 10001 items, more than the limit of 10,000",
        ));

        let mut wrong = HashMap::new();
        for (s, want) in &errors {
            if s.code() != Code::InvalidArgument || s.message() != *want {
                wrong.insert(*want, format!("{:?}: {}", s.code(), s.message()));
            }
        }
        assert!(wrong.is_empty(), "{backend:?}: {wrong:#?}");
        // Nothing of any rejected batch was written (not even its good item 0 or the
        // implicit account "a").
        for table in [
            "accounts",
            "contacts",
            "interactions",
            "pulses",
            "subscriptions",
            "custom_metrics",
            "custom_score_fields",
            "webhook_signals",
            "event_types",
            "custom_metric_definitions",
        ] {
            assert_eq!(
                env.int(&format!("SELECT COUNT(*) FROM {table}")).await,
                0,
                "{backend:?} {table}"
            );
        }
        env.stop().await;
    }
}
