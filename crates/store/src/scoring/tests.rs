use super::*;
use crate::testing::backends;

fn snapshots(as_of: DateTime<Utc>) -> Vec<NewSnapshot> {
    (0..2 * WRITE_CHUNK + 7)
        .map(|i| {
            let card = i % 3 == 2;
            NewSnapshot {
                account_id: format!("acc{:05}", i / 3),
                scorecard_id: [PROFILE_SCORECARD, "health", "nps"][i % 3].into(),
                profile_id: if i % 5 == 0 { String::new() } else { "p1".into() },
                as_of,
                value: 10.0 * (i as f64 / 4000.0) + 0.123_456,
                band: ["red", "yellow", "green"][i % 3].into(),
                global_value: (!card).then_some(1.0 / (i as f64 + 3.0)),
                global_band: if card { String::new() } else { "green".into() },
                sub_scores: format!(
                    r#"{{"categories":[{{"c":1,"v":{},"w":0.5,"p":3,"t":4}}],"global_band":"green","model":"models/7","peer_count":{i}}}"#,
                    i as f64 / 7.0
                ),
                momentum: -0.25 * i as f64,
                coverage_present: (i % 17) as i32,
                coverage_total: 17,
                // Any bytes (zeros, bytes that are not UTF-8); none for scorecards.
                drivers: if card {
                    Vec::new()
                } else {
                    let mut b = vec![1, 0, 0xff, b'\'', b'\\', 0x80];
                    b.extend((0..i % 300).map(|k| (k * 7 + i) as u8));
                    b
                },
                churn_probability: (i % 4 == 0).then_some(0.5 + i as f64 * 1e-6),
                weights_source: ["learned", "uniform"][i % 2].into(),
                population_fallback: i % 7 == 0,
            }
        })
        .collect()
}

/// Every column of the run's snapshots (or latest rows) as the database prints it.
async fn dump(
    conn: &sea_orm::DatabaseConnection,
    table: &str,
    run_id: i64,
) -> Vec<Vec<Option<String>>> {
    let cols: &[&str] = if table == "score_snapshots" {
        &[
            "account_id",
            "scorecard_id",
            "profile_id",
            "as_of",
            "value",
            "band",
            "global_value",
            "sub_scores",
            "momentum",
            "coverage_present",
            "coverage_total",
            "drivers",
            "churn_probability",
            "weights_source",
            "population_fallback",
            "drivers_bin",
        ]
    } else {
        &[
            "account_id",
            "scorecard_id",
            "profile_id",
            "as_of",
            "value",
            "band",
            "global_value",
            "global_band",
        ]
    };
    let backend = conn.get_database_backend();
    let mut select: Vec<String> = cols
        .iter()
        .map(|c| match (*c, backend) {
            ("drivers_bin", DbBackend::Postgres) => format!("encode({c}, 'hex')"),
            ("drivers_bin", _) => format!("hex({c})"),
            _ => format!("CAST({c} AS TEXT)"),
        })
        .collect();
    if backend == DbBackend::Sqlite {
        // The storage class too: text, real, integer or null.
        select.extend(cols.iter().map(|c| format!("typeof({c})")));
    }
    let sql = format!(
        "SELECT {} FROM {table} WHERE run_id = ? ORDER BY account_id, scorecard_id",
        select.join(", ")
    );
    conn.query_all_raw(stmt(backend, &sql, vec![Value::from(run_id)]))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (0..select.len())
                .map(|i| r.try_get_by_index::<Option<String>>(i).unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn snapshots_written_before_migration_10_read_as_before() {
    use crate::testing::fresh_url;
    use sea_orm_migration::MigratorTrait;
    for backend in backends() {
        let store = crate::Store::connect(&fresh_url(backend).await.unwrap())
            .await
            .unwrap();
        let conn = store.conn();
        // The schema as it was before migration 10, and a snapshot written by the
        // statement of that time (drivers as JSON).
        crate::migration::Migrator::up(conn, Some(7)).await.unwrap();
        let drivers = r#"[["mrr",4,421.251168,0.340703,3.407026,0.025,-0.270963]]"#;
        let sql = format!(
            "INSERT INTO score_snapshots (run_id, account_id, scorecard_id, profile_id, \
             as_of, value, band, global_value, sub_scores, momentum, coverage_present, \
             coverage_total, drivers, churn_probability, weights_source, \
             population_fallback) VALUES {}",
            if backend == crate::testing::Backend::Postgres {
                "(?,?,?,?,?,?,?,?,CAST(? AS json),?,?,?,CAST(? AS json),?,?,?)".to_string()
            } else {
                tuple(16)
            }
        );
        let at = Utc::now();
        conn.execute_raw(stmt(
            conn.get_database_backend(),
            &sql,
            vec![
                Value::from(1i64),
                Value::from("old"),
                Value::from(PROFILE_SCORECARD),
                Value::from("p1"),
                Value::from(at),
                Value::from(4.5),
                Value::from("yellow"),
                Value::from(4.5),
                Value::from(r#"{"global_band":"yellow"}"#),
                Value::from(0.0),
                Value::from(1),
                Value::from(1),
                Value::from(drivers),
                Value::from(None::<f64>),
                Value::from("uniform"),
                Value::from(false),
            ],
        ))
        .await
        .unwrap();
        // Every migration since, then a new run beside it.
        store.migrate().await.unwrap();
        let run = RunRecord {
            scope: "all".into(),
            started_at: at,
            accounts_scored: 1,
            details: serde_json::json!({}),
            events: Vec::new(),
        };
        let mut new = snapshots(at);
        new.truncate(1);
        write_run(&store, &run, &new).await.unwrap();
        let old = snapshot_at(&store, "old", PROFILE_SCORECARD, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.drivers_bin, None, "{backend:?}");
        assert_eq!(
            old.drivers,
            serde_json::from_str::<serde_json::Value>(drivers).unwrap()
        );
        assert_eq!(old.value, 4.5);
        let (listed, n) = list_latest(
            &store,
            &LatestFilter::default(),
            LatestOrder::AccountId,
            0,
            10,
        )
        .await
        .unwrap();
        assert_eq!(n, 1, "only the new run moved score_latest");
        assert_eq!(
            listed[0].drivers_bin.as_deref(),
            Some(new[0].drivers.as_slice())
        );
        let h = history(&store, "old", PROFILE_SCORECARD, None, None, 0, 10)
            .await
            .unwrap();
        assert_eq!(h, vec![old]);
        store.close().await.unwrap();
    }
}

async fn write_run_stores_what_the_generic_statements_store(store: Store) {
    let backend = store.backend();
    let conn = store.conn();
    let as_of = DateTime::parse_from_rfc3339("2026-06-30T12:34:56.789012Z")
        .unwrap()
        .with_timezone(&Utc);
    let rows = snapshots(as_of);
    let details = serde_json::json!({"as_of": as_of.to_rfc3339(), "snapshots": rows.len()});

    // The generic path: start_run, write_snapshots, finish_run in one transaction.
    let txn = store.begin_write().await.unwrap();
    let old = start_run(&txn, "all", as_of).await.unwrap();
    write_snapshots(&txn, old, &rows).await.unwrap();
    finish_run(&txn, old, Utc::now(), 42, details.clone())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let old_snaps = dump(conn, "score_snapshots", old).await;
    let old_latest = dump(conn, "score_latest", old).await;
    assert_eq!(old_snaps.len(), rows.len(), "{backend:?}");
    assert_eq!(old_latest.len(), rows.len(), "{backend:?}");

    // write_run, same rows: the same snapshots, and it takes over score_latest
    // (same as_of).
    let run = RunRecord {
        scope: "all".into(),
        started_at: as_of,
        accounts_scored: 42,
        details: details.clone(),
        events: Vec::new(),
    };
    let new = write_run(&store, &run, &rows).await.unwrap();
    assert!(new > old);
    assert_eq!(
        dump(conn, "score_snapshots", new).await,
        old_snaps,
        "{backend:?}"
    );
    assert_eq!(
        dump(conn, "score_latest", new).await,
        old_latest,
        "{backend:?}"
    );
    assert!(dump(conn, "score_latest", old).await.is_empty());
    let runs = score_run::Entity::find()
        .order_by_asc(score_run::Column::Id)
        .all(conn)
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].scope, "all");
    assert_eq!(runs[1].started_at, runs[0].started_at);
    assert_eq!(runs[1].accounts_scored, 42);
    assert_eq!(runs[1].details, details);
    assert!(runs[1].finished_at.is_some());
    // The stored JSON reads back as written.
    let s = snapshot_at(&store, "acc00001", PROFILE_SCORECARD, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.run_id, new);
    let written = &rows[3];
    assert_eq!(s.account_id, written.account_id);
    let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(s.drivers, serde_json::Value::Null);
    assert_eq!(s.drivers_bin.as_deref(), Some(written.drivers.as_slice()));
    assert_eq!(s.sub_scores, json(&written.sub_scores));

    // The latest rows of a large population (one pass over the table) are those
    // of the chunked look-up.
    let mut ids: Vec<String> = rows.iter().map(|r| r.account_id.clone()).collect();
    ids.dedup();
    let half = &ids[..ids.len() / 2];
    let chunked = latest_of_accounts(&store, half).await.unwrap();
    let expected = rows.iter().filter(|r| half.contains(&r.account_id)).count();
    assert_eq!(chunked.len(), expected, "{backend:?}");
    let mut many = half.to_vec();
    many.extend((0..LATEST_SCAN_FROM).map(|i| format!("absent{i}")));
    assert_eq!(latest_of_accounts(&store, &many).await.unwrap(), chunked);

    // A past as_of only adds history: score_latest stays on the newer rows.
    let past = snapshots(as_of - chrono::Duration::days(1));
    let back = write_run(&store, &run, &past).await.unwrap();
    assert!(dump(conn, "score_latest", back).await.is_empty());
    assert_eq!(dump(conn, "score_snapshots", back).await.len(), past.len());
    store.close().await.unwrap();
}

async fn band_changes_of_a_run_read_back(store: Store) {
    let as_of = DateTime::parse_from_rfc3339("2026-06-30T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let record = RunRecord {
        scope: "all".into(),
        started_at: as_of,
        accounts_scored: 1,
        details: serde_json::json!({}),
        events: Vec::new(),
    };
    assert_eq!(last_committed_run(&store).await.unwrap(), 0);
    let first = snapshots(as_of);
    let r1 = write_run(&store, &record, &first).await.unwrap();
    // A first run changes no band (nothing before it).
    assert!(band_changes_of_run(&store, r1).await.unwrap().is_empty());
    let mut second = snapshots(as_of + chrono::Duration::days(1));
    let flip = |b: &str| if b == "red" { "green" } else { "red" }.to_string();
    second[0].band = flip(&first[0].band);
    second[2].band = flip(&first[2].band);
    let r2 = write_run(&store, &record, &second).await.unwrap();
    let changes = band_changes_of_run(&store, r2).await.unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].account_id, first[0].account_id);
    assert_eq!(changes[0].scorecard_id, first[0].scorecard_id);
    assert_eq!(changes[0].old_band, first[0].band);
    assert_eq!(changes[0].new_band, second[0].band);
    assert_eq!(changes[0].old_value, first[0].value);
    assert_eq!(changes[0].as_of, second[0].as_of);
    assert_eq!(changes[1].account_id, first[2].account_id);
    assert_eq!(last_committed_run(&store).await.unwrap(), r2);
    assert_eq!(committed_runs_after(&store, 0).await.unwrap(), vec![r1, r2]);
    assert_eq!(committed_runs_after(&store, r1).await.unwrap(), vec![r2]);
    assert!(committed_runs_after(&store, r2).await.unwrap().is_empty());
}

/// Drivers written by number ([`crate::snapshot::names`]) come back from every snapshot
/// reader in the self-contained form, including numbers added by another process after
/// this store cached the table; a number the table lacks is left as stored.
async fn numbered_drivers_read_back_named(store: Store) {
    use crate::snapshot::{KpiNames, StoredDriver, decode_drivers, encode_drivers_with, kpi_names};
    let names = kpi_names(&store, &["mrr", "nps"]).await.unwrap();
    let (mrr, nps) = (names.id("mrr").unwrap(), names.id("nps").unwrap());
    assert_ne!(mrr, nps);
    // Asking again keeps the numbers and adds only what is missing.
    let more = kpi_names(&store, &["nps", "logins", "mrr"]).await.unwrap();
    assert_eq!((more.id("mrr"), more.id("nps")), (Some(mrr), Some(nps)));
    assert_eq!(more.len(), 3);
    // Another process adds a name: this store's cache does not know it yet.
    let conn = store.conn();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "INSERT INTO kpi_names (name) VALUES (?)",
        vec!["seats".into()],
    ))
    .await
    .unwrap();
    let seats = conn
        .query_one_raw(stmt(
            b,
            "SELECT id FROM kpi_names WHERE name = ?",
            vec!["seats".into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "id")
        .unwrap() as u32;
    let theirs = KpiNames::from_pairs([(mrr, "mrr"), (nps, "nps"), (seats, "seats")]);
    let d = |k: &str, c: f64| StoredDriver(k.into(), 4, 1200.5, Some(0.25), 7.5, 0.025, c);
    let drivers = [
        vec![d("mrr", -0.1), d("nps", 0.2)],
        vec![d("seats", -1.5), d("mrr", 0.3)],
        vec![d("nps", 0.0)],
    ];
    let as_of = DateTime::parse_from_rfc3339("2026-06-30T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut rows: Vec<NewSnapshot> = snapshots(as_of)
        .into_iter()
        .filter(|r| r.scorecard_id == PROFILE_SCORECARD)
        .take(3)
        .collect();
    for (r, d) in rows.iter_mut().zip(&drivers) {
        r.drivers = encode_drivers_with(d, &theirs);
        assert_eq!(r.drivers[0], 3, "stored by number");
    }
    // A number no table holds: left as stored, its decoding says why.
    rows[2].drivers = encode_drivers_with(&drivers[2], &KpiNames::from_pairs([(9999, "nps")]));
    let run = RunRecord {
        scope: "all".into(),
        started_at: as_of,
        accounts_scored: 3,
        details: serde_json::json!({}),
        events: Vec::new(),
    };
    write_run(&store, &run, &rows).await.unwrap();
    let read = |r: &SnapshotRecord| decode_drivers(r.drivers_bin.as_deref().unwrap());
    for (i, row) in rows.iter().enumerate() {
        let at = snapshot_at(&store, &row.account_id, PROFILE_SCORECARD, None)
            .await
            .unwrap()
            .unwrap();
        let hist = history(
            &store,
            &row.account_id,
            PROFILE_SCORECARD,
            None,
            None,
            0,
            10,
        )
        .await
        .unwrap();
        let recent = overview::recent_snapshots(&store, &row.account_id, PROFILE_SCORECARD, 5)
            .await
            .unwrap();
        for got in [&at, &hist[0], &recent[0]] {
            if i < 2 {
                assert_eq!(read(got).unwrap(), drivers[i], "row {i}");
            } else {
                assert_eq!(
                    read(got).unwrap_err(),
                    "KPIs stored by number, read without the KPI names"
                );
                assert!(
                    crate::snapshot::decode_drivers_with(
                        got.drivers_bin.as_deref().unwrap(),
                        &theirs
                    )
                    .unwrap_err()
                    .contains("unknown KPI number 9999")
                );
            }
        }
    }
    let filter = LatestFilter {
        scorecard_id: Some(PROFILE_SCORECARD.into()),
        ..LatestFilter::default()
    };
    let (listed, _) = list_latest(&store, &filter, LatestOrder::AccountId, 0, 10)
        .await
        .unwrap();
    let risky = overview::at_risk(&store, &overview::RiskFilter::default(), 10)
        .await
        .unwrap();
    for got in [listed, risky] {
        let ok: Vec<_> = got.iter().filter_map(|r| read(r).ok()).collect();
        assert_eq!(ok.len(), 2);
        assert!(ok.contains(&drivers[0]) && ok.contains(&drivers[1]));
    }
    // The cache learnt the other process's name.
    assert_eq!(
        kpi_names(&store, &["seats"]).await.unwrap().id("seats"),
        Some(seats)
    );
}

crate::store_test_suite!(
    write_run_stores_what_the_generic_statements_store,
    band_changes_of_a_run_read_back,
    numbered_drivers_read_back_named
);
