//! The schema applies on every back end, twice without harm, and stores what it is given.

use chrono::{TimeZone, Utc};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, PaginatorTrait};
use vitals_store::entity::{account, usage_daily};
use vitals_store::testing::backends;
use vitals_store::{Store, StoreError};

async fn migrations_are_idempotent_and_tables_round_trip(store: Store) {
    let backend = store.backend();
    // A second run is a no-op, as it is at every start-up.
    store.migrate().await.expect("second migrate");

    let at = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
    account::Model {
        id: "acme".into(),
        name: "Acme".into(),
        attributes: serde_json::json!({"plan": {"string": "premium"}, "seats": {"number": 50.0}}),
        profile_id: None,
        pinned: false,
        status: "active".into(),
        created_at: at,
        updated_at: at,
    }
    .into_active_model()
    .insert(store.conn())
    .await
    .expect("insert account");
    usage_daily::Model {
        account_id: "acme".into(),
        day: at.date_naive(),
        event_type: "login".into(),
        count: 3,
        distinct_users: 2,
        value_sum: 1.5,
    }
    .into_active_model()
    .insert(store.conn())
    .await
    .expect("insert roll-up");

    let got = account::Entity::find_by_id("acme")
        .one(store.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.created_at, at, "{backend:?}");
    assert_eq!(got.attributes["seats"]["number"], 50.0, "{backend:?}");
    let n = usage_daily::Entity::find()
        .count(store.conn())
        .await
        .unwrap();
    assert_eq!(n, 1, "{backend:?}");

    // The idempotency key of events is the primary key: a duplicate is refused.
    let dup = account::Model {
        name: "Other".into(),
        ..got.clone()
    }
    .into_active_model()
    .insert(store.conn())
    .await;
    assert!(dup.is_err(), "{backend:?}: duplicate primary key accepted");
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_clear_error() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    let err = Store::connect("postgres://nobody:secret@127.0.0.1:1/none")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(!msg.contains("secret"), "password leaked: {msg}");
}

/// Migrations 8 (`COLLATE "C"` on the identifier columns, PostgreSQL) and 9 (the
/// `event_type_counts` slots) applied to a database that already holds rows: the rows
/// stay, the keys stay unique, the event-type counts go on from where they were, and
/// `down` gives the counts back to `event_types.event_count`.
#[tokio::test]
async fn collation_and_event_type_counts_migrations_keep_existing_rows() {
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::MigratorTrait;
    use vitals_store::ingestion::{NewEvent, list_event_types, write_events};
    use vitals_store::migration::Migrator;
    use vitals_store::testing::fresh_url;

    async fn int(store: &Store, sql: &str) -> i64 {
        let c = store.conn();
        c.query_one_raw(Statement::from_string(
            c.get_database_backend(),
            format!("SELECT CAST(({sql}) AS BIGINT) AS n"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
    }
    async fn collation(store: &Store, table: &str, column: &str) -> Option<String> {
        let c = store.conn();
        c.query_one_raw(Statement::from_string(
            c.get_database_backend(),
            format!(
                "SELECT collation_name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}' \
                 AND column_name = '{column}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<Option<String>>("", "collation_name")
        .unwrap()
    }
    fn events(from: u32, n: u32) -> Vec<NewEvent> {
        let at = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        (from..from + n)
            .map(|i| NewEvent {
                account_id: format!("acct-{}", i % 7),
                event_id: format!("ev-{i:05}"),
                user_id: Some(format!("u{}", i % 3)),
                event_type: ["login", "report", "Zed", "éclair"][i as usize % 4].to_string(),
                occurred_at: at + chrono::Duration::minutes(i as i64),
                value: Some(1.0),
            })
            .collect()
    }
    /// `evs` and their roll-ups as rows, the way the event writers before migration 9
    /// stored them.
    async fn old_rows(store: &Store, evs: &[NewEvent]) {
        use std::collections::{BTreeMap, BTreeSet};
        let c = store.conn();
        let run = |sql: String| async move {
            c.execute_unprepared(&sql).await.unwrap();
        };
        let ts = "'2024-03-01T12:00:00Z'";
        let accounts: BTreeSet<&str> = evs.iter().map(|e| e.account_id.as_str()).collect();
        for a in accounts {
            run(format!(
                "INSERT INTO accounts (id, name, attributes, pinned, status, created_at, \
                 updated_at) VALUES ('{a}', '', '{{}}', false, 'unassigned', {ts}, {ts})"
            ))
            .await;
        }
        let mut days: BTreeMap<(&str, String, &str), (i64, BTreeSet<&str>)> = BTreeMap::new();
        let mut types: BTreeMap<&str, i64> = BTreeMap::new();
        for e in evs {
            run(format!(
                "INSERT INTO events (account_id, event_id, user_id, event_type, occurred_at, \
                 value) VALUES ('{}', '{}', '{}', '{}', '{}', 1.0)",
                e.account_id,
                e.event_id,
                e.user_id.as_deref().unwrap(),
                e.event_type,
                e.occurred_at.to_rfc3339()
            ))
            .await;
            let d = days
                .entry((
                    e.account_id.as_str(),
                    e.occurred_at.date_naive().to_string(),
                    e.event_type.as_str(),
                ))
                .or_default();
            d.0 += 1;
            d.1.insert(e.user_id.as_deref().unwrap());
            *types.entry(e.event_type.as_str()).or_default() += 1;
        }
        for ((a, day, t), (n, us)) in &days {
            run(format!(
                "INSERT INTO usage_daily (account_id, day, event_type, count, distinct_users, \
                 value_sum) VALUES ('{a}', '{day}', '{t}', {n}, {}, {n})",
                us.len()
            ))
            .await;
            for u in us {
                run(format!(
                    "INSERT INTO usage_daily_users (account_id, day, event_type, user_id) \
                     VALUES ('{a}', '{day}', '{t}', '{u}')"
                ))
                .await;
            }
        }
        for (t, n) in types {
            run(format!(
                "INSERT INTO event_types (name, display_name, is_key, description, declared, \
                 event_count, created_at, updated_at) VALUES ('{t}', '', false, '', false, \
                 {n}, {ts}, {ts})"
            ))
            .await;
        }
    }
    async fn type_counts(store: &Store) -> Vec<(String, i64)> {
        list_event_types(store, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.event_count))
            .collect()
    }

    for backend in backends() {
        // A file for SQLite: the migrations run on one connection, the writes on others.
        let url = match backend {
            vitals_store::testing::Backend::Sqlite => {
                let path = std::env::temp_dir()
                    .join(format!("vitals-migration-8-9-{}.db", std::process::id()));
                for ext in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
                }
                format!("sqlite://{}?mode=rwc", path.display())
            }
            vitals_store::testing::Backend::Postgres => fresh_url(backend).await.unwrap(),
        };
        let store = Store::connect(&url).await.unwrap();
        // The schema as it was before migration 8, with rows as the writers of then left
        // them (the event-type counts in `event_types.event_count`).
        Migrator::up(store.conn(), Some(7)).await.unwrap();
        old_rows(&store, &events(0, 400)).await;
        if backend == vitals_store::testing::Backend::Postgres {
            assert_eq!(collation(&store, "events", "account_id").await, None);
        }
        assert_eq!(
            int(&store, "SELECT SUM(event_count) FROM event_types").await,
            400
        );
        // 400 events over 4 types; byte order puts upper case first and "é" last.
        let before = vec![
            ("Zed".to_string(), 100),
            ("login".to_string(), 100),
            ("report".to_string(), 100),
            ("éclair".to_string(), 100),
        ];
        let days = int(&store, "SELECT COUNT(*) FROM usage_daily").await;
        let users = int(&store, "SELECT COUNT(*) FROM usage_daily_users").await;

        store.migrate().await.unwrap();

        // Every row is still there and the counts are the same.
        assert_eq!(int(&store, "SELECT COUNT(*) FROM events").await, 400);
        assert_eq!(int(&store, "SELECT COUNT(*) FROM accounts").await, 7);
        assert_eq!(int(&store, "SELECT COUNT(*) FROM usage_daily").await, days);
        assert_eq!(
            int(&store, "SELECT COUNT(*) FROM usage_daily_users").await,
            users
        );
        assert_eq!(type_counts(&store).await, before, "{backend:?}");
        if backend == vitals_store::testing::Backend::Postgres {
            for (table, column) in [
                ("events", "account_id"),
                ("events", "event_id"),
                ("events", "user_id"),
                ("events", "event_type"),
                ("accounts", "id"),
                ("usage_daily", "account_id"),
                ("usage_daily_users", "user_id"),
                ("event_types", "name"),
                ("event_type_counts", "name"),
                ("score_latest", "scorecard_id"),
            ] {
                assert_eq!(
                    collation(&store, table, column).await.as_deref(),
                    Some("C"),
                    "{table}.{column}"
                );
            }
            // Shown to people: the database's collation.
            assert_eq!(collation(&store, "accounts", "name").await, None);
            // The rebuilt indexes are valid and are the primary keys still (the events'
            // key is `event_keys`' since migration 19).
            assert_eq!(
                int(
                    &store,
                    "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                     WHERE c.relname IN ('event_keys', 'usage_daily', 'usage_daily_users', \
                     'accounts', 'event_types') AND i.indisprimary AND i.indisvalid"
                )
                .await,
                5
            );
        }

        // The same events again are duplicates (the primary key still holds), new ones
        // add to the counts, now through `event_type_counts` on PostgreSQL.
        let w = write_events(&store, &events(0, 400)).await.unwrap();
        assert_eq!((w.accepted, w.duplicates), (0, 400), "{backend:?}");
        let w = write_events(&store, &events(400, 40)).await.unwrap();
        assert_eq!(w.accepted, 40, "{backend:?}");
        let after: Vec<(String, i64)> = before.iter().map(|(n, c)| (n.clone(), c + 10)).collect();
        assert_eq!(type_counts(&store).await, after, "{backend:?}");
        let slots = int(&store, "SELECT COUNT(*) FROM event_type_counts").await;
        match backend {
            vitals_store::testing::Backend::Postgres => assert!(slots >= 4, "{slots}"),
            vitals_store::testing::Backend::Sqlite => assert_eq!(slots, 0),
        }
        assert_eq!(
            int(&store, "SELECT SUM(count) FROM usage_daily").await,
            440,
            "{backend:?}"
        );

        // Down to 7 (every later migration, 8 and 9 among them): the slots are folded
        // back, the collation is the database's again.
        let later = u32::try_from(Migrator::migrations().len() - 7).unwrap();
        Migrator::down(store.conn(), Some(later)).await.unwrap();
        assert_eq!(
            int(&store, "SELECT SUM(event_count) FROM event_types").await,
            440,
            "{backend:?}"
        );
        if backend == vitals_store::testing::Backend::Postgres {
            assert_eq!(collation(&store, "events", "account_id").await, None);
        }
        assert_eq!(int(&store, "SELECT COUNT(*) FROM events").await, 440);
        // And up again.
        store.migrate().await.unwrap();
        assert_eq!(type_counts(&store).await, after, "{backend:?}");
        store.close().await.unwrap();
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .and_then(|u| u.strip_suffix("?mode=rwc"))
        {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{ext}"));
            }
        }
    }
}

/// Migration 19 (`events` partitioned by month on PostgreSQL, the keys in
/// `event_keys`) on a database that holds events: every row stays, in the partition of
/// its month; the keys still make the same events duplicates; `down` gives the plain
/// table back with its rows.
#[tokio::test]
async fn event_partitions_migration_keeps_existing_rows() {
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::MigratorTrait;
    use vitals_store::ingestion::{NewEvent, write_events};
    use vitals_store::migration::Migrator;
    use vitals_store::testing::fresh_url;

    async fn int(store: &Store, sql: &str) -> i64 {
        let c = store.conn();
        c.query_one_raw(Statement::from_string(
            c.get_database_backend(),
            format!("SELECT CAST(({sql}) AS BIGINT) AS n"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
    }
    let months = [(2023, 11), (2024, 2), (2024, 3)];
    let events: Vec<NewEvent> = (0..30u32)
        .map(|i| {
            let (y, m) = months[i as usize % 3];
            NewEvent {
                account_id: format!("acct-{}", i % 4),
                event_id: format!("ev-{i:03}"),
                user_id: Some(format!("u{}", i % 2)),
                event_type: "login".into(),
                occurred_at: Utc.with_ymd_and_hms(y, m, 1 + i % 27, 12, 0, 0).unwrap(),
                value: None,
            }
        })
        .collect();
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let before = names
        .iter()
        .position(|n| n == "m20261207_000019_event_partitions")
        .expect("migration 19");
    for backend in backends() {
        let url = fresh_url(backend).await.unwrap();
        let store = Store::connect(&url).await.unwrap();
        Migrator::up(store.conn(), Some(before as u32))
            .await
            .unwrap();
        let c = store.conn();
        // Rows as the writers before migration 19 stored them (their statements).
        let w = write_events(&store, &events).await;
        // The new statements need `event_keys`: on PostgreSQL they fail, on SQLite
        // (unchanged tables, only `event_retention` is new) they need that table.
        assert!(w.is_err(), "{backend:?}");
        for e in &events {
            c.execute_raw(Statement::from_sql_and_values(
                c.get_database_backend(),
                match backend {
                    vitals_store::testing::Backend::Postgres => {
                        "INSERT INTO events (account_id, event_id, user_id, event_type, \
                         occurred_at, value) VALUES ($1, $2, $3, $4, $5, NULL)"
                    }
                    vitals_store::testing::Backend::Sqlite => {
                        "INSERT INTO events (account_id, event_id, user_id, event_type, \
                         occurred_at, value) VALUES (?, ?, ?, ?, ?, NULL)"
                    }
                },
                [
                    e.account_id.clone().into(),
                    e.event_id.clone().into(),
                    e.user_id.clone().into(),
                    e.event_type.clone().into(),
                    e.occurred_at.into(),
                ],
            ))
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();
        assert_eq!(int(&store, "SELECT COUNT(*) FROM events").await, 30);
        if backend == vitals_store::testing::Backend::Postgres {
            assert_eq!(int(&store, "SELECT COUNT(*) FROM event_keys").await, 30);
            for (table, n) in [
                ("events_y2023m11", 10),
                ("events_y2024m02", 10),
                ("events_y2024m03", 10),
            ] {
                assert_eq!(
                    int(&store, &format!("SELECT COUNT(*) FROM {table}")).await,
                    n
                );
            }
            assert_eq!(
                int(
                    &store,
                    "SELECT COUNT(*) FROM pg_class WHERE relname = 'events' AND relkind = 'p'"
                )
                .await,
                1
            );
        }
        // The same events are duplicates, across partitions too; new ones are stored.
        let w = write_events(&store, &events).await.unwrap();
        assert_eq!((w.accepted, w.duplicates), (0, 30), "{backend:?}");
        let mut moved = events[0].clone();
        moved.occurred_at = Utc.with_ymd_and_hms(2024, 3, 5, 0, 0, 0).unwrap();
        let mut new = events[1].clone();
        new.event_id = "ev-new".into();
        let w = write_events(&store, &[moved, new]).await.unwrap();
        assert_eq!((w.accepted, w.duplicates), (1, 1), "{backend:?}");

        // Down: the plain table again, every row kept.
        let later = u32::try_from(names.len() - before).unwrap();
        Migrator::down(store.conn(), Some(later)).await.unwrap();
        assert_eq!(int(&store, "SELECT COUNT(*) FROM events").await, 31);
        store.migrate().await.unwrap();
        assert_eq!(int(&store, "SELECT COUNT(*) FROM events").await, 31);
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn pool_size_is_the_backend_default_unless_given() {
    use vitals_store::testing::{Backend, fresh_url};
    use vitals_store::{DEFAULT_POSTGRES_MAX_CONNECTIONS, DEFAULT_SQLITE_MAX_CONNECTIONS};
    fn max(store: &Store) -> u32 {
        match store.backend() {
            sea_orm::DbBackend::Postgres => store
                .conn()
                .get_postgres_connection_pool()
                .options()
                .get_max_connections(),
            _ => store
                .conn()
                .get_sqlite_connection_pool()
                .options()
                .get_max_connections(),
        }
    }
    let file = std::env::temp_dir().join(format!("vitals-pool-{}.db", std::process::id()));
    let sqlite_file = format!("sqlite://{}?mode=rwc", file.display());
    let memory = Store::connect_with_pool_size("sqlite::memory:", Some(5))
        .await
        .unwrap();
    assert_eq!(max(&memory), 1, "an in-memory database is one connection");
    let s = Store::connect(&sqlite_file).await.unwrap();
    assert_eq!(max(&s), DEFAULT_SQLITE_MAX_CONNECTIONS);
    s.close().await.unwrap();
    let s = Store::connect_with_pool_size(&sqlite_file, Some(3))
        .await
        .unwrap();
    assert_eq!(max(&s), 3);
    s.close().await.unwrap();
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
    }
    if backends().contains(&Backend::Postgres) {
        let url = fresh_url(Backend::Postgres).await.unwrap();
        let s = Store::connect(&url).await.unwrap();
        assert_eq!(max(&s), DEFAULT_POSTGRES_MAX_CONNECTIONS);
        s.close().await.unwrap();
        let s = Store::connect_with_pool_size(&url, Some(40)).await.unwrap();
        assert_eq!(max(&s), 40);
        s.close().await.unwrap();
    }
}

vitals_store::store_test_suite!(migrations_are_idempotent_and_tables_round_trip);
