use super::*;
use crate::entity::{
    account, contact, custom_metric, custom_score_field, interaction, pulse, subscription,
    usage_daily, webhook_signal,
};
use crate::testing::{backends, fresh_store};
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use vitals_scoring_core::{ContactRole, InteractionDirection};

fn d(m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, day).unwrap()
}
fn ts(m: u32, day: u32) -> DateTime<Utc> {
    day_start(d(m, day)) + chrono::Duration::hours(12)
}

/// Inserts an account created on January 1st.
async fn put_account(
    conn: &impl ConnectionTrait,
    id: &str,
    name: &str,
    attributes: serde_json::Value,
    profile: Option<&str>,
    status: &str,
) {
    account::Model {
        id: id.into(),
        name: name.into(),
        attributes,
        profile_id: profile.map(Into::into),
        pinned: false,
        status: status.into(),
        created_at: ts(1, 1),
        updated_at: ts(1, 1),
    }
    .into_active_model()
    .insert(conn)
    .await
    .unwrap();
}

async fn seed(conn: &impl ConnectionTrait) {
    for (id, status, profile) in [
        ("a1", "active", Some("p")),
        ("a2", "active", None),
        ("a3", "churned", Some("p")),
    ] {
        put_account(
            conn,
            id,
            &id.to_uppercase(),
            serde_json::json!({"seats": {"number": 10.0}}),
            profile,
            status,
        )
        .await;
    }
    // T = 2026-06-30, W = 28, H = 3: span is (2026-03-10, 2026-06-30].
    for (day, ty, n) in [
        (d(6, 30), "login", 5),
        (d(6, 1), "login", 2),
        (d(3, 14), "report", 1),
        (d(7, 1), "login", 9),   // after T: not read
        (d(2, 10), "report", 3), // before the span: a marker
        (d(2, 1), "report", 4),
    ] {
        for account in ["a1", "a3"] {
            usage_daily::Model {
                account_id: account.into(),
                day,
                event_type: ty.into(),
                count: n,
                distinct_users: 1,
                value_sum: 1.5,
            }
            .into_active_model()
            .insert(conn)
            .await
            .unwrap();
        }
    }
    contact::Model {
        account_id: "a1".into(),
        id: "c1".into(),
        name: "C".into(),
        role: "champion".into(),
        email_domain: "x.com".into(),
        updated_at: ts(1, 1),
    }
    .into_active_model()
    .insert(conn)
    .await
    .unwrap();
    for (id, at, dir) in [
        ("i1", ts(6, 20), "outbound"),
        ("i2", ts(1, 5), "inbound"),
        ("i3", ts(1, 9), "inbound"),
    ] {
        interaction::Model {
            account_id: "a1".into(),
            id: id.into(),
            contact_id: Some("c1".into()),
            channel: "meeting".into(),
            direction: dir.into(),
            occurred_at: at,
            replied: true,
            text: None,
            sentiment: Some(0.5),
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
    }
    pulse::ActiveModel {
        account_id: sea_orm::Set("a1".into()),
        author: sea_orm::Set("csm".into()),
        value: sea_orm::Set(4),
        note: sea_orm::Set(String::new()),
        at: sea_orm::Set(ts(6, 2)),
        ..Default::default()
    }
    .insert(conn)
    .await
    .unwrap();
    subscription::Model {
        account_id: "a1".into(),
        id: "s1".into(),
        product: "p".into(),
        starts_at: ts(1, 1),
        ends_at: Some(ts(12, 31)),
        mrr: 100.0,
        quantity: Some(5.0),
        units: None,
        bill_period_months: 12,
        is_addon: false,
        discount: 0.1,
    }
    .into_active_model()
    .insert(conn)
    .await
    .unwrap();
    for (at, v) in [(ts(5, 1), 1.0), (ts(6, 1), 2.0), (ts(7, 1), 3.0)] {
        custom_metric::Model {
            account_id: "a1".into(),
            name: "roi".into(),
            at,
            value: v,
        }
        .into_active_model()
        .insert(conn)
        .await
        .unwrap();
    }
    custom_score_field::Model {
        account_id: "a1".into(),
        field: "exec_sponsor".into(),
        value: 5,
        updated_at: ts(6, 1),
    }
    .into_active_model()
    .insert(conn)
    .await
    .unwrap();
    for at in [ts(6, 25), ts(5, 1)] {
        webhook_signal::ActiveModel {
            account_id: sea_orm::Set("a1".into()),
            name: sea_orm::Set("nps".into()),
            value: sea_orm::Set(5),
            at: sea_orm::Set(at),
            ..Default::default()
        }
        .insert(conn)
        .await
        .unwrap();
    }
}

/// One usage row with its event type's name and `value_sum`'s bits.
type NamedUsage = (NaiveDate, String, u32, u32, u64);

/// Per account (in order): its usage rows by name, sorted.
fn normalised(l: &LoadedInputs) -> Vec<(String, Vec<NamedUsage>)> {
    l.accounts
        .iter()
        .zip(&l.data)
        .map(|(a, d)| {
            let mut u: Vec<_> = d
                .usage
                .iter()
                .map(|u| {
                    (
                        u.day,
                        l.spec.event_types[u.event_type as usize].clone(),
                        u.count,
                        u.distinct_users,
                        u.value_sum.to_bits(),
                    )
                })
                .collect();
            u.sort();
            (a.id.clone(), u)
        })
        .collect()
}

#[tokio::test]
async fn usage_read_in_two_halves_loads_the_same_inputs() {
    // A file database (its pool has several connections, unlike `:memory:`), and
    // PostgreSQL when configured.
    let dir = std::env::temp_dir().join(format!("vitals-inputs-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = crate::Store::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("split.db").display()
    ))
    .await
    .unwrap();
    file.migrate().await.unwrap();
    let mut stores = vec![file];
    for backend in backends() {
        if backend != crate::testing::Backend::Sqlite {
            stores.push(fresh_store(backend).await.unwrap());
        }
    }
    for store in &stores {
        let conn = store.conn();
        seed(conn).await;
        // More accounts on both sides of the middle one, with undeclared event types
        // seen in different orders.
        for n in 0..8u32 {
            let id = format!("b{n}");
            put_account(conn, &id, &id, serde_json::json!({}), None, "active").await;
            let types = if n % 2 == 0 {
                ["zeta", "alpha"]
            } else {
                ["alpha", "mid"]
            };
            for (k, ty) in types.iter().enumerate() {
                for day in [d(6, 1 + n), d(2, 1 + n)] {
                    usage_daily::Model {
                        account_id: id.clone(),
                        day,
                        event_type: (*ty).into(),
                        count: i64::from(n) + k as i64 + 1,
                        distinct_users: 1,
                        value_sum: 0.1 * f64::from(n),
                    }
                    .into_active_model()
                    .insert(conn)
                    .await
                    .unwrap();
                }
            }
        }
        if store.backend() == DbBackend::Sqlite {
            // The accounts read through rusqlite decodes the text forms of a
            // timestamp sqlx-sqlite decodes (the column's TEXT affinity stores any
            // number as text), a missing profile and the attributes JSON as sqlx does.
            for (id, created) in [
                ("b0", "'2026-05-01 10:00:00'"),
                ("b1", "'2026-05-01T10:00:00.123456Z'"),
                ("b2", "'2026-05-01 10:00:00.5+02:00'"),
                ("b3", "'2026-05-01T10:00'"),
                ("b4", "'2026-05-01 10:00Z'"),
            ] {
                conn.execute_unprepared(&format!(
                    "UPDATE accounts SET created_at = {created}, profile_id = NULL, \
                     attributes = '{{\"seats\": {{\"number\": 12.5}}, \"x\": [1, \"é\"]}}' \
                     WHERE id = '{id}'"
                ))
                .await
                .unwrap();
            }
        }
        let q = InputQuery::all(d(6, 30));
        let whole = load(conn, &q, usize::MAX, ReadPath::Auto).await.unwrap();
        let halves = load(conn, &q, 2, ReadPath::Auto).await.unwrap();
        // On the SQLite file, Auto reads through rusqlite: the same inputs as sqlx,
        // to the bit and in the same order.
        assert_eq!(
            load(conn, &q, usize::MAX, ReadPath::Sqlx).await.unwrap(),
            whole
        );
        assert_eq!(load(conn, &q, 2, ReadPath::Sqlx).await.unwrap(), halves);
        if store.backend() == DbBackend::Sqlite {
            assert!(sqlite::database_file(conn).await.unwrap().is_some());
        }
        assert_eq!(normalised(&halves), normalised(&whole));
        assert_eq!(halves.spec, whole.spec);
        assert_eq!(
            halves.spec.event_types,
            ["alpha", "login", "mid", "report", "zeta"],
            "undeclared event types in name order"
        );
        assert_eq!(halves.accounts, whole.accounts);
        let with_usage = halves.data.iter().filter(|d| !d.usage.is_empty()).count();
        assert_eq!(with_usage, 9, "a1 and the eight b accounts");
        // Each b account: 2 days in the span and 1 marker per type before it.
        let b3 = &halves.data[halves.index_of("b3").unwrap()];
        assert_eq!(b3.usage.len(), 4);
    }
    for s in stores {
        s.close().await.unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn loads_the_look_back_grouped_per_account() {
    for backend in backends() {
        let store = fresh_store(backend).await.unwrap();
        let conn = store.conn();
        seed(conn).await;
        if backend == crate::testing::Backend::Sqlite {
            // In memory: no file, the sqlx path.
            assert_eq!(sqlite::database_file(conn).await.unwrap(), None);
        }
        let q = InputQuery::all(d(6, 30));
        let got = load_inputs(&store, &q).await.unwrap();
        // The churned account is left out.
        let ids: Vec<&str> = got.accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2"], "{backend:?}");
        assert_eq!(got.data_start, Some(d(2, 1)));
        let a1 = &got.data[got.index_of("a1").unwrap()];
        let name = |id: u32| got.spec.event_types[id as usize].as_str();
        let mut usage: Vec<(NaiveDate, &str, u32)> = a1
            .usage
            .iter()
            .map(|u| (u.day, name(u.event_type), u.count))
            .collect();
        usage.sort();
        assert_eq!(
            usage,
            [
                (d(2, 10), "report", 1), // marker of the last active day before the span
                (d(3, 14), "report", 1),
                (d(6, 1), "login", 2),
                (d(6, 30), "login", 5),
            ],
            "{backend:?}"
        );
        // Window interaction with its contact role, plus the last inbound before.
        assert_eq!(a1.interactions.len(), 2, "{backend:?}");
        let win = a1.interactions.iter().find(|i| i.at == d(6, 20)).unwrap();
        assert_eq!(win.contact_role, Some(ContactRole::Champion));
        assert_eq!(win.replied, None, "reply_known is false by default");
        assert!(
            a1.interactions
                .iter()
                .any(|i| i.at == d(1, 9) && i.direction == InteractionDirection::Inbound)
        );
        assert_eq!(
            a1.pulses,
            [Pulse {
                at: d(6, 2),
                value: 4.0
            }]
        );
        assert_eq!(a1.subscriptions.len(), 1);
        assert_eq!(a1.subscriptions[0].end, Some(d(12, 31)));
        assert_eq!(a1.custom_metrics.len(), 1, "only the latest value up to T");
        assert_eq!(a1.custom_metrics[0].value, 2.0);
        assert_eq!(got.spec.custom_metrics[0].name, "roi");
        assert_eq!(a1.score_fields[0].value, 5.0);
        assert_eq!(got.spec.score_fields, ["exec_sponsor"]);
        assert_eq!(a1.webhook_signals.len(), 1, "only the current window");
        assert_eq!(a1.attributes.seats, Some(10.0));
        assert_eq!(a1.attributes.contacts, Some(1));
        assert_eq!(a1.attributes.created_at, Some(d(1, 1)));
        // The inputs feed scoring-core as they are.
        let cat = vitals_scoring_core::Catalogue::new(&got.spec).unwrap();
        let kpis = vitals_scoring_core::compute_kpis(
            &cat,
            &vitals_scoring_core::KpiConfig::default(),
            got.as_of,
            &got.inputs(),
        )
        .unwrap();
        let k = vitals_scoring_core::Builtin::DaysSinceLastActivity.index();
        assert_eq!(kpis.matrix.get(0, k), Some(0.0));
        // Per key event type: login on T, report last on 03-14 (108 days before).
        let per_type = |kpi: &str| kpis.matrix.get(0, cat.index_of(kpi).unwrap());
        assert_eq!(per_type("events_login__days_since"), Some(0.0));
        assert_eq!(per_type("events_report__days_since"), Some(108.0));
        assert_eq!(per_type("events_login__share"), Some(1.0));
        // Scopes.
        let one = load_inputs(
            &store,
            &InputQuery {
                scope: InputScope::Profile {
                    id: "p".into(),
                    include_unprofiled: false,
                },
                include_churned: true,
                ..q.clone()
            },
        )
        .await
        .unwrap();
        let ids: Vec<&str> = one.accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a3"]);
        let one = load_inputs(
            &store,
            &InputQuery {
                scope: InputScope::Accounts(vec!["a2".into()]),
                ..q.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(one.accounts.len(), 1);
        assert!(one.data[0].usage.is_empty());
    }
}
