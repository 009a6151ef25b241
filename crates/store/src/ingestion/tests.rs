use super::sqlite_file::{push_sqlite_day, push_sqlite_time};
use super::*;
use sea_orm::TryGetableMany;

/// A migrated store on a new SQLite file (the rusqlite writer needs a file).
async fn file_store(tag: &str) -> (Store, std::path::PathBuf) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "vitals-store-events-{tag}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    remove_db(&path);
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, path)
}

fn remove_db(path: &std::path::Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
}

/// Events over 3 accounts, 3 types, 3 days, 5 users (and none), with every form of
/// fraction sqlx writes (none, milli, micro, nano) and values present or not.
fn sample_event(i: u32) -> NewEvent {
    let nanos = match i % 4 {
        0 => 0,
        1 => 250_000_000,
        2 => 123_456_000,
        _ => 987_654_321,
    };
    NewEvent {
        account_id: format!("acct-{}", i % 3),
        event_id: format!("e{i}"),
        user_id: (i % 6 != 5).then(|| format!("u{}", i % 5)),
        event_type: format!("type{}", i % 3 + (i / 7) % 2),
        occurred_at: DateTime::from_timestamp(
            1_767_225_600 + i64::from(i % 3) * 86_400 + i64::from(i) * 61,
            nanos,
        )
        .unwrap(),
        value: (i % 4 != 3).then(|| f64::from(i) * 0.5),
    }
}

/// Batches that exercise every case: repeats within a batch, a partly new batch
/// (new events on days and users already seen, and new ones), a batch sent again,
/// and a single event.
fn sample_batches() -> Vec<Vec<NewEvent>> {
    let mut b1: Vec<NewEvent> = (0..40).map(sample_event).collect();
    b1.push(sample_event(3));
    b1.push(sample_event(17));
    b1.reverse();
    let b2: Vec<NewEvent> = (20..70).map(sample_event).collect();
    let b3 = b1.clone();
    let b4 = vec![sample_event(1000)];
    vec![b1, b2, b3, b4]
}

/// (accepted, duplicates) of each sample batch: 42 with 2 repeats, 50 of which 20
/// stored already, all 42 again, 1 new.
const SAMPLE_COUNTS: [(u32, u32); 4] = [(40, 2), (30, 20), (0, 42), (1, 0)];

type EventRow = (
    String,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    Option<f64>,
);
type DailyRow = (String, NaiveDate, String, i64, i64, f64);

/// Every row the events path writes, read back typed and sorted.
#[derive(Debug, PartialEq)]
struct Dump {
    accounts: Vec<(String, String, String, bool, serde_json::Value)>,
    events: Vec<EventRow>,
    daily: Vec<DailyRow>,
    users: Vec<(String, NaiveDate, String, String)>,
    types: Vec<(String, String, bool, String, bool, i64)>,
}

/// The rows of `sql`, each decoded column by column into `T` (a value or a tuple).
async fn rows<T: TryGetableMany>(store: &Store, sql: &str) -> Vec<T> {
    let c = store.conn();
    c.query_all_raw(Statement::from_string(c.get_database_backend(), sql))
        .await
        .expect(sql)
        .iter()
        .map(|r| r.try_get_many_by_index().expect(sql))
        .collect()
}

async fn dump(store: &Store) -> Dump {
    let sql = format!(
        "SELECT name, display_name, is_key, description, declared, {EVENT_COUNT} \
         FROM event_types"
    );
    let mut d = Dump {
        accounts: rows(
            store,
            "SELECT id, name, status, pinned, attributes FROM accounts",
        )
        .await,
        events: rows(
            store,
            "SELECT account_id, event_id, user_id, event_type, occurred_at, value FROM events",
        )
        .await,
        daily: rows(
            store,
            "SELECT account_id, day, event_type, count, distinct_users, value_sum \
             FROM usage_daily",
        )
        .await,
        users: rows(
            store,
            "SELECT account_id, day, event_type, user_id FROM usage_daily_users",
        )
        .await,
        types: rows(store, &sql).await,
    };
    d.accounts.sort_by(|a, b| a.0.cmp(&b.0));
    d.events.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    d.daily
        .sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    d.users.sort();
    d.types.sort_by(|a, b| a.0.cmp(&b.0));
    d
}

/// The roll-ups and counters recomputed from the stored events, in the dump's order.
fn expected_rollups(events: &[EventRow]) -> (Vec<DailyRow>, Vec<(String, i64)>) {
    type Day = (i64, BTreeSet<String>, f64);
    let mut days: BTreeMap<(String, NaiveDate, String), Day> = BTreeMap::new();
    let mut types: BTreeMap<String, i64> = BTreeMap::new();
    for (a, _, u, t, at, v) in events {
        let e = days
            .entry((a.clone(), at.date_naive(), t.clone()))
            .or_default();
        e.0 += 1;
        e.1.extend(u.clone());
        e.2 += v.unwrap_or(0.0);
        *types.entry(t.clone()).or_default() += 1;
    }
    let daily = days
        .into_iter()
        .map(|((a, d, t), (n, users, sum))| (a, d, t, n, users.len() as i64, sum))
        .collect();
    (daily, types.into_iter().collect())
}

/// Checks that the dump's roll-ups and event-type counts are those recomputed from its
/// events.
fn assert_rollups_of_events(d: &Dump) {
    let (daily, types) = expected_rollups(&d.events);
    assert_eq!(d.daily, daily);
    let counted: Vec<(String, i64)> = d.types.iter().map(|t| (t.0.clone(), t.5)).collect();
    assert_eq!(counted, types);
}

/// Checks the dump against the sample batches: the distinct events, each once, and
/// roll-ups equal to those recomputed from them.
///
/// `micros`: the back end keeps microseconds (PostgreSQL's `timestamptz`), so the
/// expected times lose their nanoseconds (truncated, as sqlx encodes them).
fn check_sample_dump(d: &Dump, micros: bool) {
    let mut want: Vec<EventRow> = sample_batches()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e.account_id,
                e.event_id,
                e.user_id,
                e.event_type,
                if micros {
                    DateTime::from_timestamp_micros(e.occurred_at.timestamp_micros()).unwrap()
                } else {
                    e.occurred_at
                },
                e.value,
            )
        })
        .collect();
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    want.dedup_by(|a, b| (&a.0, &a.1) == (&b.0, &b.1));
    assert_eq!(d.events, want);
    assert_rollups_of_events(d);
    let users: BTreeSet<_> = d
        .events
        .iter()
        .filter_map(|(a, _, u, t, at, _)| {
            u.clone()
                .map(|u| (a.clone(), at.date_naive(), t.clone(), u))
        })
        .collect();
    assert_eq!(d.users, users.into_iter().collect::<Vec<_>>());
    assert_eq!(
        d.accounts
            .iter()
            .map(|a| (a.0.as_str(), a.2.as_str(), a.3))
            .collect::<Vec<_>>(),
        vec![
            ("acct-0", STATUS_UNASSIGNED, false),
            ("acct-1", STATUS_UNASSIGNED, false),
            ("acct-2", STATUS_UNASSIGNED, false),
        ]
    );
}

/// Raw SQLite values (`quote()`: storage class and text) of the rows the events
/// path writes, timestamps of the accounts and event types left out (they are "now").
async fn raw_sqlite(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT quote(id) || quote(name) || quote(attributes) || quote(pinned) || \
         quote(status) || typeof(created_at) || typeof(updated_at) FROM accounts ORDER BY id",
        "SELECT quote(account_id) || quote(event_id) || quote(user_id) || \
         quote(event_type) || quote(occurred_at) || quote(value) FROM events \
         ORDER BY account_id, event_id",
        "SELECT quote(account_id) || quote(day) || quote(event_type) || quote(count) || \
         quote(distinct_users) || quote(value_sum) FROM usage_daily \
         ORDER BY account_id, day, event_type",
        "SELECT quote(account_id) || quote(day) || quote(event_type) || quote(user_id) \
         FROM usage_daily_users ORDER BY 1",
        "SELECT quote(name) || quote(display_name) || quote(is_key) || quote(description) \
         || quote(declared) || quote(event_count) || typeof(created_at) FROM event_types \
         ORDER BY name",
    ] {
        out.extend(rows::<String>(store, sql).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_writer_stores_what_the_sqlx_path_stores() {
    let (direct, p1) = file_store("direct").await;
    let (reference, p2) = file_store("sqlx").await;
    let writer = EventWriter::new(direct.clone());
    for (i, b) in sample_batches().into_iter().enumerate() {
        let w = writer.write(b.clone()).await.unwrap();
        let r = write_events(&reference, &b).await.unwrap();
        assert_eq!((w.accepted, w.duplicates), SAMPLE_COUNTS[i], "batch {i}");
        assert_eq!(w, r, "batch {i}");
    }
    // The rusqlite writer did the writes (a file database).
    assert!(matches!(writer.file.get(), Some(Some(_))));
    let d = dump(&direct).await;
    check_sample_dump(&d, false);
    assert_eq!(d, dump(&reference).await);
    let raw = raw_sqlite(&direct).await;
    assert!(raw.len() > 100, "{}", raw.len());
    assert_eq!(raw, raw_sqlite(&reference).await);
    drop(writer);
    direct.close().await.unwrap();
    reference.close().await.unwrap();
    remove_db(&p1);
    remove_db(&p2);
}

async fn event_writer_on_every_backend_counts_once(store: Store) {
    let backend = store.backend();
    // In-memory SQLite: the writer falls back to the sqlx path; a SQLite file has its own.
    let writer = EventWriter::new(store.clone());
    for (i, b) in sample_batches().into_iter().enumerate() {
        let w = writer.write(b).await.unwrap();
        assert_eq!(
            (w.accepted, w.duplicates),
            SAMPLE_COUNTS[i],
            "{backend:?} {i}"
        );
    }
    if backend == DbBackend::Sqlite {
        let file = crate::inputs::sqlite_database_file(store.conn())
            .await
            .unwrap();
        assert_eq!(
            matches!(writer.file.get(), Some(Some(_))),
            file.is_some(),
            "{file:?}"
        );
    }
    check_sample_dump(&dump(&store).await, backend == DbBackend::Postgres);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_writer_failing_batch_writes_nothing() {
    let (store, path) = file_store("fail").await;
    let writer = EventWriter::new(store.clone());
    // The roll-up statement fails after the events and the account were inserted.
    store
        .conn()
        .execute_unprepared("DROP TABLE usage_daily")
        .await
        .unwrap();
    let err = writer.write(sample_batches().remove(0)).await.unwrap_err();
    assert!(err.to_string().contains("usage_daily"), "{err}");
    for table in ["accounts", "events", "usage_daily_users", "event_types"] {
        let n = rows::<i64>(&store, &format!("SELECT COUNT(*) FROM {table}")).await[0];
        assert_eq!(n, 0, "{table}");
    }
    // The connection is usable again once the table is back.
    use sea_orm_migration::MigratorTrait;
    crate::migration::Migrator::fresh(store.conn())
        .await
        .unwrap();
    let w = writer.write(sample_batches().remove(0)).await.unwrap();
    assert_eq!((w.accepted, w.duplicates), SAMPLE_COUNTS[0]);
    drop(writer);
    store.close().await.unwrap();
    remove_db(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_writer_and_sqlx_writers_at_once_count_once() {
    let (store, path) = file_store("concurrent").await;
    let writer = EventWriter::new(store.clone());
    // Overlapping batches from the rusqlite writer and from the pool at once: each
    // event counted once whichever connection stored it.
    let mut tasks = Vec::new();
    for s in 0..4u32 {
        let (writer, store) = (writer.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            let mut totals = (0u32, 0u32);
            for b in 0..5u32 {
                let batch: Vec<NewEvent> = (0..60)
                    .map(|i| sample_event((i + b * 60 + s * 75) % 400))
                    .collect();
                let w = if s % 2 == 0 {
                    writer.write(batch).await.unwrap()
                } else {
                    write_events(&store, &batch).await.unwrap()
                };
                totals.0 += w.accepted;
                totals.1 += w.duplicates;
            }
            totals
        }));
    }
    let (mut accepted, mut dups) = (0, 0);
    for t in tasks {
        let (a, d) = t.await.unwrap();
        accepted += a;
        dups += d;
    }
    let d = dump(&store).await;
    assert_eq!(accepted as usize, d.events.len());
    assert_eq!(accepted + dups, 4 * 5 * 60);
    assert_rollups_of_events(&d);
    drop(writer);
    store.close().await.unwrap();
    remove_db(&path);
}

#[test]
fn sqlite_time_text_is_sqlx_text() {
    let mut buf = String::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..20_000u64 {
        // A spread of instants from 1970 to 9999 with every kind of fraction.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let secs = (x % 253_402_300_799) as i64;
        let nanos = match i % 4 {
            0 => 0,
            1 => (x % 1000) as u32 * 1_000_000,
            2 => (x % 1_000_000) as u32 * 1_000,
            _ => (x % 1_000_000_000) as u32,
        };
        let t = DateTime::from_timestamp(secs, nanos).unwrap();
        buf.clear();
        push_sqlite_time(&mut buf, &t);
        assert_eq!(buf, t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false));
        buf.clear();
        push_sqlite_day(&mut buf, t.date_naive());
        assert_eq!(buf, t.date_naive().format("%F").to_string());
    }
    // Outside 0..=9999 chrono's own form.
    let far = NaiveDate::from_ymd_opt(12345, 6, 7).unwrap();
    buf.clear();
    push_sqlite_day(&mut buf, far);
    assert_eq!(buf, far.format("%F").to_string());
}

#[test]
fn attribute_json_round_trips() {
    let t = DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap();
    for v in [
        AttributeValue::String("premium".into()),
        AttributeValue::Number(50.0),
        AttributeValue::Bool(true),
        AttributeValue::Timestamp(t),
    ] {
        assert_eq!(AttributeValue::from_json(&v.to_json()), Some(v));
    }
}

#[test]
fn placeholders_per_backend() {
    let mut s = String::new();
    let mut next = 0;
    push_groups(&mut s, DbBackend::Postgres, 2, 2, &mut next);
    assert_eq!(s, "($1,$2),($3,$4)");
    let mut s = String::new();
    push_groups(&mut s, DbBackend::Sqlite, 2, 2, &mut next);
    assert_eq!(s, "(?,?),(?,?)");
}

fn with_parent(id: &str, parent: Option<Option<&str>>) -> AccountUpsert {
    AccountUpsert {
        id: id.to_string(),
        name: None,
        attributes: BTreeMap::new(),
        created_at: None,
        status: None,
        parent: parent.map(|p| p.map(str::to_string)),
    }
}

async fn parent_of(store: &Store, id: &str) -> Option<String> {
    get_account(store, id).await.unwrap().unwrap().parent_id
}

/// Parents: set in the same batch as the parent, kept when not given, refused when
/// unknown or closing a cycle (with nothing written), cleared, listed by parent.
async fn account_parents_are_checked_kept_and_cleared(store: Store) {
    let batch = [
        with_parent("kid-a", Some(Some("top"))),
        with_parent("top", None),
        with_parent("kid-b", Some(Some("top"))),
    ];
    let u = upsert_accounts(&store, &batch, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.created, u.updated), (3, 0));
    assert_eq!(parent_of(&store, "kid-a").await.as_deref(), Some("top"));
    assert_eq!(parent_of(&store, "top").await, None);
    // Not given: kept.
    upsert_accounts(&store, &[with_parent("kid-a", None)], false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parent_of(&store, "kid-a").await.as_deref(), Some("top"));
    // Unknown parent: nothing of the batch is written.
    let e = upsert_accounts(
        &store,
        &[
            with_parent("new", None),
            with_parent("kid-b", Some(Some("ghost"))),
        ],
        false,
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.index, 1);
    assert_eq!(e.kind, ParentErrorKind::Unknown("ghost".into()));
    assert!(get_account(&store, "new").await.unwrap().is_none());
    // top -> kid-a -> top: a cycle through the stored parent.
    let e = upsert_accounts(&store, &[with_parent("top", Some(Some("kid-a")))], false)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.index, 0);
    assert_eq!(
        e.kind,
        ParentErrorKind::Cycle(vec!["top".into(), "kid-a".into(), "top".into()])
    );
    // A longer one, within one batch: g1 -> g2 -> g3 -> g1.
    let e = upsert_accounts(
        &store,
        &[
            with_parent("g1", Some(Some("g2"))),
            with_parent("g2", Some(Some("g3"))),
            with_parent("g3", Some(Some("g1"))),
        ],
        false,
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.index, 0);
    assert!(matches!(e.kind, ParentErrorKind::Cycle(ref c) if c.len() == 4));
    assert!(get_account(&store, "g1").await.unwrap().is_none());
    // Moving a parent under one of its children is fine once the child moves away.
    upsert_accounts(
        &store,
        &[
            with_parent("kid-a", Some(None)),
            with_parent("top", Some(Some("kid-a"))),
        ],
        false,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(parent_of(&store, "kid-a").await, None);
    assert_eq!(parent_of(&store, "top").await.as_deref(), Some("kid-a"));
    let filter = AccountFilter {
        parent_id: Some("top".into()),
        ..AccountFilter::default()
    };
    let (list, total) = list_accounts(&store, &filter, None, 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(list[0].id, "kid-b");
}

async fn last_account_of_users_is_the_contact_updated_last(store: Store) {
    let contact = |account: &str, id: &str| ContactUpsert {
        account_id: account.into(),
        id: id.into(),
        role: None,
        email_domain: None,
        name: None,
    };
    upsert_contacts(&store, &[contact("a", "u1"), contact("a", "u2")])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    upsert_contacts(&store, &[contact("b", "u1")])
        .await
        .unwrap();
    let last = last_account_of_users(&store, &["u1", "u2", "u3", "u1"])
        .await
        .unwrap();
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last["u1"], "b");
    assert_eq!(last["u2"], "a");
    // Upserted again into the first account: that one is now the last.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    upsert_contacts(&store, &[contact("a", "u1")])
        .await
        .unwrap();
    let last = last_account_of_users(&store, &["u1"]).await.unwrap();
    assert_eq!(last["u1"], "a");
}

/// Concurrent batches that share events, days and users (the same accounts, overlapping
/// event ids, in different orders): every distinct event is accepted exactly once over
/// all batches, and the roll-ups are those of the stored events. On PostgreSQL the
/// batches race (unique violations and lock waits of the plain-insert statement, then
/// the `ON CONFLICT` one).
async fn concurrent_overlapping_batches_count_once(store: Store) {
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let writer = EventWriter::new(store.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u32;
            for round in 0..6u32 {
                // Each task writes windows of the same 300 events, shifted per task.
                let start = (t * 37 + round * 53) % 300;
                let mut b: Vec<NewEvent> =
                    (0..120).map(|i| sample_event((start + i) % 300)).collect();
                if t % 2 == 1 {
                    b.reverse();
                }
                let w = writer.write(b).await.unwrap();
                assert_eq!(w.accepted + w.duplicates, 120);
                accepted += w.accepted;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let d = dump(&store).await;
    assert_eq!(accepted as usize, d.events.len());
    assert_rollups_of_events(&d);
    let users: BTreeSet<_> = d
        .events
        .iter()
        .filter_map(|(a, _, u, t, at, _)| {
            u.clone()
                .map(|u| (a.clone(), at.date_naive(), t.clone(), u))
        })
        .collect();
    assert_eq!(d.users, users.into_iter().collect::<Vec<_>>());
    store.close().await.unwrap();
}

/// Concurrent batches whose events repeat within each batch and across batches, over
/// months that have no partition yet (created by whichever batch needs one first), some
/// keys sent again at a time in another month: over all batches every distinct key is
/// accepted exactly once and every other event sent is answered as a duplicate; the
/// keys, the events and the roll-ups agree.
async fn concurrent_batches_report_every_duplicate_across_months(store: Store) {
    const KEYS: u32 = 240;
    // Key `k`: account `k % 4`, in one of 6 months of 2019 (no partition yet).
    let event = |k: u32, shift: bool| {
        let month = (k + u32::from(shift) * 3) % 6 + 1;
        ev(
            &format!("acct-{}", k % 4),
            &format!("k{k}"),
            &format!("2019-{month:02}-{:02}T{:02}:00:00Z", k % 28 + 1, k % 24),
            (!k.is_multiple_of(5))
                .then(|| format!("u{}", k % 7))
                .as_deref(),
            ["login", "post", "like"][(k % 3) as usize],
        )
    };
    let mut tasks = Vec::new();
    for t in 0..6u32 {
        let writer = EventWriter::new(store.clone());
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut duplicates, mut sent) = (0u32, 0u32, 0u32);
            for round in 0..5u32 {
                let start = (t * 41 + round * 67) % KEYS;
                let mut b: Vec<NewEvent> = (0..90)
                    .map(|i| event((start + i) % KEYS, (t + i) % 4 == 0))
                    .collect();
                // Repeats within the batch, at its own time and at another month's.
                b.extend((0..10).map(|i| event((start + i * 7) % KEYS, i % 2 == 0)));
                if (t + round) % 2 == 1 {
                    b.reverse();
                }
                sent += b.len() as u32;
                let w = writer.write(b).await.unwrap();
                assert!(w.duplicates >= 10, "{w:?}");
                accepted += w.accepted;
                duplicates += w.duplicates;
            }
            (accepted, duplicates, sent)
        }));
    }
    let (mut accepted, mut duplicates, mut sent) = (0, 0, 0);
    for t in tasks {
        let (a, d, s) = t.await.unwrap();
        (accepted, duplicates, sent) = (accepted + a, duplicates + d, sent + s);
    }
    let d = dump(&store).await;
    let keys: BTreeSet<_> = d
        .events
        .iter()
        .map(|e| (e.0.clone(), e.1.clone()))
        .collect();
    assert_eq!(keys.len(), d.events.len());
    assert_eq!(accepted as usize, d.events.len());
    assert_eq!(accepted + duplicates, sent);
    assert_rollups_of_events(&d);
    if store.backend() == DbBackend::Postgres {
        assert_eq!(
            count(&store, "SELECT count(*) FROM event_keys").await,
            i64::from(accepted)
        );
        // Each event is in its own month's partition.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM events e JOIN event_keys k USING (account_id, event_id) \
                 WHERE k.occurred_at = e.occurred_at \
                 AND e.tableoid::regclass::text = 'events_y2019m' \
                     || to_char(e.occurred_at AT TIME ZONE 'UTC', 'MM')"
            )
            .await,
            i64::from(accepted)
        );
    }
    store.close().await.unwrap();
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ev(account: &str, id: &str, t: &str, user: Option<&str>, ty: &str) -> NewEvent {
    NewEvent {
        account_id: account.into(),
        event_id: id.into(),
        user_id: user.map(Into::into),
        event_type: ty.into(),
        occurred_at: at(t),
        value: Some(1.5),
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    rows::<i64>(store, sql).await[0]
}

/// The month partitions of `events` (PostgreSQL).
async fn partitions(store: &Store) -> Vec<String> {
    rows(
        store,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    )
    .await
}

/// Events of many months: each stored once, in its month's partition (created on first
/// use on PostgreSQL); the same (account, event id) again, with its time or another
/// one (another partition), is a duplicate.
async fn events_of_every_month_are_stored_once(store: Store) {
    let writer = EventWriter::new(store.clone());
    let first = vec![
        ev("a", "e1", "2024-01-15T10:00:00Z", Some("u1"), "login"),
        ev("a", "e2", "2024-06-30T23:59:59.5Z", Some("u1"), "login"),
        ev("a", "e3", "2025-03-01T00:00:00Z", Some("u2"), "post"),
        ev("b", "e1", "2025-03-10T12:00:00Z", None, "post"),
        ev("b", "e4", "2031-07-04T08:00:00Z", Some("u3"), "login"),
    ];
    let w = writer.write(first).await.unwrap();
    assert_eq!((w.accepted, w.duplicates), (5, 0));
    let again = vec![
        ev("a", "e1", "2024-01-15T10:00:00Z", Some("u1"), "login"),
        // The same key at another time, in another month: still the same event.
        ev("a", "e2", "2025-03-02T00:00:00Z", Some("u9"), "post"),
        ev("b", "e4", "2024-01-01T00:00:00Z", Some("u3"), "login"),
        ev("a", "e5", "2025-03-02T00:00:00Z", Some("u1"), "post"),
    ];
    let w = writer.write(again).await.unwrap();
    assert_eq!((w.accepted, w.duplicates), (1, 3));
    let d = dump(&store).await;
    assert_eq!(d.events.len(), 6);
    let e2 = d.events.iter().find(|e| e.0 == "a" && e.1 == "e2").unwrap();
    assert_eq!(e2.4, at("2024-06-30T23:59:59.5Z"));
    assert_rollups_of_events(&d);
    if store.backend() == DbBackend::Postgres {
        let p = partitions(&store).await;
        for m in [
            "events_y2024m01",
            "events_y2024m06",
            "events_y2025m03",
            "events_y2031m07",
        ] {
            assert!(p.iter().any(|n| n == m), "{m} in {p:?}");
        }
        assert_eq!(
            count(&store, "SELECT count(*) FROM events_y2025m03").await,
            3
        );
        assert_eq!(count(&store, "SELECT count(*) FROM event_keys").await, 6);
        // Ahead: this month and the next, once.
        let made = event_retention_pass(&store, at("2040-01-31T12:00:00Z"), None)
            .await
            .unwrap();
        assert_eq!(made, AgedOut::default());
        let p = partitions(&store).await;
        assert!(p.iter().any(|n| n == "events_y2040m01"), "{p:?}");
        assert!(p.iter().any(|n| n == "events_y2040m02"), "{p:?}");
        assert_eq!(
            create_event_partitions(&store, [at("2040-02-29T00:00:00Z")])
                .await
                .unwrap(),
            0
        );
    } else {
        assert_eq!(
            create_event_partitions(&store, [at("2040-02-29T00:00:00Z")])
                .await
                .unwrap(),
            0
        );
    }
    store.close().await.unwrap();
}

/// Retention removes the raw events before the cut and keeps every roll-up: the scoring
/// inputs (hence the scores) as of any day are the same before and after; an event
/// older than what was dropped is then a duplicate.
async fn retention_drops_old_raw_events_and_keeps_rollups(store: Store) {
    let writer = EventWriter::new(store.clone());
    let old = vec![
        ev("a", "o1", "2024-01-10T10:00:00Z", Some("u1"), "login"),
        ev("a", "o2", "2024-01-10T11:00:00Z", Some("u2"), "login"),
        ev("a", "o3", "2024-02-20T09:00:00Z", Some("u1"), "post"),
        ev("b", "o1", "2024-02-28T23:00:00Z", None, "post"),
    ];
    let recent = vec![
        ev("a", "r1", "2024-03-20T10:00:00Z", Some("u1"), "login"),
        ev("b", "r2", "2024-04-02T10:00:00Z", Some("u3"), "post"),
    ];
    let w = writer
        .write([old.clone(), recent.clone()].concat())
        .await
        .unwrap();
    assert_eq!(w.accepted, 6);
    let ids = vec!["a".to_string(), "b".to_string()];
    let query = |day: &str| crate::inputs::InputQuery {
        scope: crate::inputs::InputScope::Accounts(ids.clone()),
        include_churned: true,
        ..crate::inputs::InputQuery::all(day.parse().unwrap())
    };
    let days = ["2024-02-25", "2024-03-01", "2024-04-10"];
    let mut before = Vec::new();
    for day in days {
        before.push(
            crate::inputs::load_inputs(&store, &query(day))
                .await
                .unwrap(),
        );
    }
    assert!(before[0].data.len() == 2, "{:?}", before[0]);
    let d0 = dump(&store).await;
    assert_eq!(events_dropped_before(&store).await.unwrap(), None);

    let cut = at("2024-03-15T00:00:00Z");
    let aged = age_out_events(&store, cut).await.unwrap();
    // PostgreSQL drops whole months (January and February); SQLite deletes up to the cut.
    let floor = match store.backend() {
        DbBackend::Postgres => {
            assert_eq!(aged.partitions_dropped, 2, "{aged:?}");
            assert_eq!(aged.keys_deleted, 4, "{aged:?}");
            let p = partitions(&store).await;
            assert!(
                !p.iter()
                    .any(|n| n == "events_y2024m01" || n == "events_y2024m02"),
                "{p:?}"
            );
            assert_eq!(count(&store, "SELECT count(*) FROM event_keys").await, 2);
            at("2024-03-01T00:00:00Z")
        }
        _ => {
            assert_eq!(aged.events_deleted, 4, "{aged:?}");
            cut
        }
    };
    assert_eq!(aged.dropped_before, Some(floor));
    assert_eq!(events_dropped_before(&store).await.unwrap(), Some(floor));
    // `usage_daily_users` of days before the watermark: 3 rows (a/01-10 x2, a/02-20).
    assert_eq!(aged.day_users_deleted, 3, "{aged:?}");
    let d1 = dump(&store).await;
    assert_eq!(d1.events.len(), 2);
    assert!(d1.events.iter().all(|e| e.4 >= floor));
    assert_eq!(d1.daily, d0.daily, "roll-ups kept");
    assert_eq!(d1.types, d0.types);
    for (i, day) in days.iter().enumerate() {
        let after = crate::inputs::load_inputs(&store, &query(day))
            .await
            .unwrap();
        assert_eq!(after, before[i], "inputs as of {day}");
    }

    // Old events again, or new ones that old: ignored (duplicates); roll-ups unmoved.
    let mut late = old.clone();
    late.push(ev("c", "n1", "2024-02-01T00:00:00Z", Some("u1"), "login"));
    let w = writer.write(late).await.unwrap();
    assert_eq!((w.accepted, w.duplicates), (0, 5));
    let w = writer.write(recent.clone()).await.unwrap();
    assert_eq!((w.accepted, w.duplicates), (0, 2));
    let w = writer
        .write(vec![ev(
            "a",
            "r3",
            "2024-03-21T00:00:00Z",
            Some("u1"),
            "login",
        )])
        .await
        .unwrap();
    assert_eq!((w.accepted, w.duplicates), (1, 0));
    let d2 = dump(&store).await;
    assert_eq!(d2.events.len(), 3);
    let old_daily: Vec<_> = d2
        .daily
        .iter()
        .filter(|r| r.1 < floor.date_naive())
        .collect();
    let old_daily0: Vec<_> = d0
        .daily
        .iter()
        .filter(|r| r.1 < floor.date_naive())
        .collect();
    assert_eq!(old_daily, old_daily0);
    // Again at the same cut: nothing more to do, the watermark never moves back.
    let again = age_out_events(&store, cut).await.unwrap();
    assert_eq!(
        (
            again.partitions_dropped,
            again.events_deleted,
            again.keys_deleted
        ),
        (0, 0, 0)
    );
    let back = age_out_events(&store, at("2020-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(back.dropped_before.map(|_| ()), Some(()));
    assert_eq!(events_dropped_before(&store).await.unwrap(), Some(floor));
    store.close().await.unwrap();
}

/// The retention cut is the start of the UTC day `days` before.
#[test]
fn retention_cut_is_a_day_start() {
    assert_eq!(
        retention_cut(at("2026-12-07T03:04:05Z"), 30),
        at("2026-11-07T00:00:00Z")
    );
}

crate::store_test_suite!(
    event_writer_on_every_backend_counts_once,
    events_of_every_month_are_stored_once,
    retention_drops_old_raw_events_and_keeps_rollups,
    concurrent_overlapping_batches_count_once,
    concurrent_batches_report_every_duplicate_across_months,
    account_parents_are_checked_kept_and_cleared,
    last_account_of_users_is_the_contact_updated_last
);
