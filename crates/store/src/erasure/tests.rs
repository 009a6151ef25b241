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
            "SELECT table_name AS name FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
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
        }],
        false,
    )
    .await
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
        },
        &[snapshot],
    )
    .await
    .unwrap();
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
    for (table, col) in ERASED {
        for account in ["gone", "stays"] {
            assert!(
                count(&store, table, col, account).await > 0,
                "the test fills {table} for {account}"
            );
        }
    }
    assert_eq!(event_type_count(&store, "login").await, 6);
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
        let erased = ERASED.iter().any(|(t, _)| t == table);
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
