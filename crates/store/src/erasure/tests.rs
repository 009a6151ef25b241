use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use super::*;
use crate::ingestion as ing;
use crate::learner::{NewOutcome, record_outcomes};
use crate::profiles::{AssignmentSource, AssignmentWrite, write_assignments};
use crate::scoring::{NewSnapshot, RunRecord, write_run};

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
}

/// Every table of the schema (SQLite's catalogue or PostgreSQL's `public` schema).
async fn schema_tables(store: &Store) -> Vec<String> {
    let c = store.conn();
    let sql = match c.get_database_backend() {
        DbBackend::Postgres => {
            // Tables and partitioned tables, not their partitions.
            "SELECT c.relname::text AS name FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let rows = c
        .query_all_raw(Statement::from_string(c.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect()
}

/// Whether `table` has a column named `column`.
async fn has_column(store: &Store, table: &str, column: &str) -> bool {
    let c = store.conn();
    let backend = c.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT column_name AS name FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{table}'"
        ),
        _ => format!("SELECT name FROM pragma_table_info('{table}')"),
    };
    let rows = c
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap();
    rows.iter()
        .any(|r| r.try_get::<String>("", "name").unwrap() == column)
}

/// Rows of `account` in `table` (by its column `col`).
async fn count(store: &Store, table: &str, col: &str, account: &str) -> i64 {
    let c = store.conn();
    let backend = c.get_database_backend();
    let sql = crate::placeholders(
        backend,
        &format!("SELECT COUNT(*) AS n FROM {table} WHERE {col} = ?"),
    );
    let row = c
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [Value::from(account.to_string())],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Rows of every kind for `account`, through the store's own write functions.
async fn fill(store: &Store, account: &str) {
    let id = account.to_string();
    ing::upsert_accounts(
        store,
        &[ing::AccountUpsert {
            id: id.clone(),
            name: Some(format!("{account} Inc")),
            attributes: [(
                "plan".to_string(),
                Some(ing::AttributeValue::String("pro".into())),
            )]
            .into(),
            created_at: None,
            status: None,
            parent: None,
        }],
        false,
    )
    .await
    .unwrap()
    .unwrap();
    ing::upsert_contacts(
        store,
        &[ing::ContactUpsert {
            account_id: id.clone(),
            id: "u1".into(),
            role: Some("champion".into()),
            email_domain: Some("example.com".into()),
            name: Some("Ann".into()),
        }],
    )
    .await
    .unwrap();
    let events: Vec<ing::NewEvent> = (0..3)
        .map(|i| ing::NewEvent {
            account_id: id.clone(),
            event_id: format!("e{i}"),
            user_id: Some("u1".into()),
            event_type: "login".into(),
            occurred_at: at(1 + i),
            value: Some(1.0),
        })
        .collect();
    ing::EventWriter::new(store.clone())
        .write(events)
        .await
        .unwrap();
    ing::record_interactions(
        store,
        &[ing::InteractionRow {
            account_id: id.clone(),
            id: "i1".into(),
            contact_id: Some("u1".into()),
            channel: "email".into(),
            direction: "inbound".into(),
            occurred_at: at(2),
            replied: Some(true),
            sentiment: Some(0.5),
        }],
    )
    .await
    .unwrap();
    ing::record_pulses(
        store,
        &[ing::PulseRow {
            account_id: id.clone(),
            author: "csm".into(),
            value: 4,
            note: "fine".into(),
            at: at(3),
        }],
    )
    .await
    .unwrap();
    ing::upsert_subscriptions(
        store,
        &[ing::SubscriptionRow {
            account_id: id.clone(),
            id: "s1".into(),
            product: "core".into(),
            starts_at: at(1),
            ends_at: None,
            mrr: 100.0,
            quantity: None,
            units: None,
            bill_period_months: 1,
            is_addon: false,
            discount: 0.0,
        }],
    )
    .await
    .unwrap();
    ing::record_custom_metrics(
        store,
        &[ing::CustomMetricRow {
            account_id: id.clone(),
            name: "nps".into(),
            value: 8.0,
            at: at(4),
        }],
    )
    .await
    .unwrap();
    ing::set_custom_score_fields(
        store,
        &[ing::ScoreFieldRow {
            account_id: id.clone(),
            field: "exec_sponsor".into(),
            value: 3,
            at: at(4),
        }],
    )
    .await
    .unwrap();
    ing::record_webhook_signals(
        store,
        &[ing::SignalRow {
            account_id: id.clone(),
            name: "ticket_storm".into(),
            value: 2,
            at: at(5),
        }],
    )
    .await
    .unwrap();
    record_outcomes(
        store,
        &[NewOutcome {
            account_id: id.clone(),
            kind: "renewed".into(),
            at: at(6),
            note: String::new(),
        }],
    )
    .await
    .unwrap();
    write_assignments(
        store,
        &[AssignmentWrite {
            account_id: id.clone(),
            profile_id: "p1".into(),
            source: AssignmentSource::Pinned,
            moved: true,
            evaluated_at: at(6),
        }],
        at(6),
    )
    .await
    .unwrap();
    let snapshot = NewSnapshot {
        account_id: id.clone(),
        scorecard_id: "profile".into(),
        profile_id: "p1".into(),
        as_of: at(7),
        value: 6.5,
        band: "yellow".into(),
        global_value: Some(6.0),
        global_band: "yellow".into(),
        sub_scores: "{}".into(),
        momentum: 0.0,
        coverage_present: 1,
        coverage_total: 2,
        drivers: vec![1, 2, 3],
        churn_probability: None,
        weights_source: "uniform".into(),
        population_fallback: false,
    };
    write_run(
        store,
        &RunRecord {
            scope: format!("account:{account}"),
            started_at: at(7),
            accounts_scored: 1,
            details: serde_json::json!({}),
            events: vec![crate::webhooks::NewEvent {
                kind: crate::webhooks::KIND_BAND_CHANGED.into(),
                account_id: id.clone(),
                profile_id: "plan".into(),
                payload: serde_json::json!({"data": {"account_id": id}}),
            }],
        },
        &[snapshot],
    )
    .await
    .unwrap();
    // Its override (and the audit entry of setting it).
    crate::overrides::set_override(
        store,
        &crate::overrides::Override {
            account_id: id.clone(),
            scorecard_id: "profile".into(),
            band: "green".into(),
            value: None,
            reason_code: "renewal_signed".into(),
            note: "called".into(),
            set_by: "csm".into(),
            set_ms: 1,
            expires_ms: None,
        },
    )
    .await
    .unwrap();
    // A delivery of its event to a subscription, with one failed attempt.
    webhook_delivery(store).await;
}

/// Makes every pending outbox event a delivery of one subscription, and fails one attempt
/// of each due delivery.
async fn webhook_delivery(store: &Store) {
    use crate::webhooks as wh;
    if wh::get_subscription(store, "wh_erasure")
        .await
        .unwrap()
        .is_none()
    {
        wh::create_subscription(
            store,
            &wh::Subscription {
                id: "wh_erasure".into(),
                url: "http://127.0.0.1:9/hook".into(),
                description: String::new(),
                kinds: wh::KIND_BAND_CHANGED.into(),
                profile_ids: String::new(),
                churn_threshold: 0.5,
                format: "standard".into(),
                secret: "whsec_c2VjcmV0".into(),
                enabled: true,
                consecutive_failures: 0,
                disabled_reason: String::new(),
                created_ms: 1,
                updated_ms: 1,
            },
        )
        .await
        .unwrap();
    }
    wh::dispatch_events(store, 100).await.unwrap();
    for d in wh::claim_due(store, i64::MAX / 2, 1, 100).await.unwrap() {
        wh::record_attempt(
            store,
            &wh::AttemptOutcome {
                delivery_id: d.id,
                subscription_id: d.subscription_id.clone(),
                at_ms: 2,
                status_code: Some(500),
                error: "HTTP 500".into(),
                duration_ms: 1,
                success: false,
                retry_at_ms: Some(i64::MAX / 2),
                disable_after: 0,
            },
        )
        .await
        .unwrap();
    }
}

/// Rows of the webhook deliveries (or, with `attempts`, their attempts) of `account`'s
/// outbox events.
async fn deliveries_of(store: &Store, account: &str, attempts: bool) -> i64 {
    let c = store.conn();
    let backend = c.get_database_backend();
    let sql = if attempts {
        "SELECT COUNT(*) AS n FROM webhook_attempts a JOIN webhook_deliveries d \
         ON d.id = a.delivery_id JOIN webhook_events e ON e.id = d.event_id \
         WHERE e.account_id = ?"
    } else {
        "SELECT COUNT(*) AS n FROM webhook_deliveries d JOIN webhook_events e \
         ON e.id = d.event_id WHERE e.account_id = ?"
    };
    let row = c
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            crate::placeholders(backend, sql),
            [Value::from(account.to_string())],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The event count of `name` as ListEventTypes reads it.
async fn event_type_count(store: &Store, name: &str) -> i64 {
    ing::list_event_types(store, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == name)
        .map(|t| t.event_count)
        .unwrap()
}

async fn erases_every_row_of_one_account_and_nothing_of_another(store: Store) {
    fill(&store, "gone").await;
    fill(&store, "stays").await;
    // A child of the erased account.
    let child = ing::AccountUpsert {
        id: "child".into(),
        name: None,
        attributes: Default::default(),
        created_at: None,
        status: None,
        parent: Some(Some("gone".into())),
    };
    ing::upsert_accounts(&store, &[child], false)
        .await
        .unwrap()
        .unwrap();
    for (table, col) in ERASED {
        for account in ["gone", "stays"] {
            assert!(
                count(&store, table, col, account).await > 0,
                "the test fills {table} for {account}"
            );
        }
    }
    assert_eq!(event_type_count(&store, "login").await, 6);
    for attempts in [false, true] {
        assert!(deliveries_of(&store, "gone", attempts).await > 0);
        assert!(deliveries_of(&store, "stays", attempts).await > 0);
    }
    let attempts_total = |store: Store| async move {
        let c = store.conn();
        let row = c
            .query_one_raw(Statement::from_string(
                c.get_database_backend(),
                "SELECT COUNT(*) AS n FROM webhook_attempts",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    let attempts_before = attempts_total(store.clone()).await;
    let runs_before = crate::scoring::committed_runs(&store).await.unwrap();

    let erased = erase_accounts(&store, &["gone".into(), "never-seen".into(), "gone".into()])
        .await
        .unwrap();
    assert_eq!(erased.found, vec!["gone".to_string()]);
    assert!(erased.rows >= ERASED.len() as u64, "{erased:?}");

    for (table, col) in ERASED {
        assert_eq!(count(&store, table, col, "gone").await, 0, "{table} erased");
        assert!(count(&store, table, col, "stays").await > 0, "{table} kept");
    }
    // The erased account's deliveries and attempts are gone, the other's are not.
    assert!(deliveries_of(&store, "stays", false).await > 0);
    assert!(deliveries_of(&store, "stays", true).await > 0);
    let attempts_after = attempts_total(store.clone()).await;
    assert!(
        attempts_after > 0 && attempts_after < attempts_before,
        "{attempts_before} -> {attempts_after}"
    );
    // The erased events left the type's count; the run scope no longer names the id.
    assert_eq!(event_type_count(&store, "login").await, 3);
    assert_eq!(
        count(&store, "score_runs", "scope", "account:gone").await,
        0
    );
    assert_eq!(count(&store, "score_runs", "scope", ERASED_SCOPE).await, 1);
    assert_eq!(
        count(&store, "score_runs", "scope", "account:stays").await,
        1
    );
    // A committed "erasure" run moves the scoring caches' generation.
    assert_eq!(
        crate::scoring::committed_runs(&store).await.unwrap(),
        runs_before + 1
    );
    assert!(ing::get_account(&store, "gone").await.unwrap().is_none());
    // Its child is kept, top-level.
    let child = ing::get_account(&store, "child").await.unwrap().unwrap();
    assert_eq!(child.parent_id, None);

    // Again: nothing left to erase, nothing recorded.
    let again = erase_accounts(&store, &["gone".into()]).await.unwrap();
    assert_eq!(again, Erased::default());
    assert_eq!(
        crate::scoring::committed_runs(&store).await.unwrap(),
        runs_before + 1
    );
}

async fn every_table_is_erased_or_kept(store: Store) {
    let tables = schema_tables(&store).await;
    for table in &tables {
        let erased = ERASED
            .iter()
            .chain(ERASED_WITH_EVENTS)
            .chain(ERASED_POSTGRES)
            .any(|(t, _)| t == table);
        let kept = KEPT.iter().any(|(t, _)| t == table);
        assert!(
            erased ^ kept,
            "table {table}: add it to erasure::ERASED (with its account column) or to \
             erasure::KEPT (saying what remains)"
        );
        if kept {
            assert!(
                !has_column(&store, table, "account_id").await,
                "table {table} has an account_id column but erasure keeps it"
            );
        }
    }
    for (table, col) in ERASED {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} is in the schema"
        );
        assert!(has_column(&store, table, col).await, "{table}.{col}");
    }
}

crate::store_test_suite!(
    erases_every_row_of_one_account_and_nothing_of_another,
    every_table_is_erased_or_kept
);
