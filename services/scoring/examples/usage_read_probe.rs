//! Usage-read probe: times ways of reading the `usage_daily` look-back of an existing
//! store (e.g. one kept by `recompute_bench --keep`), to choose how `load_inputs` reads
//! it. Prints the query plans and, per variant, rows read and seconds.
//!
//! ```sh
//! cargo run --release -p vitals-scoring --example usage_read_probe -- --database-url URL
//! ```

use std::time::Instant;

use chrono::{Days, NaiveDate, Utc};
use futures::TryStreamExt;
use vitals_store::Store;
use vitals_store::sea_orm::sqlx::{self, Row};
use vitals_store::sea_orm::{ConnectionTrait, DbBackend, Statement};

type Error = Box<dyn std::error::Error + Send + Sync>;

const SQL: &str = "SELECT u.account_id, u.day, u.event_type, u.count, u.distinct_users, u.value_sum \
     FROM usage_daily u JOIN accounts a ON a.id = u.account_id \
     WHERE u.day > ? AND u.day <= ? AND a.status <> 'churned'";

fn pg(sql: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut url = None;
    let mut variants: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--database-url" => url = it.next(),
            v => variants.push(v.to_string()),
        }
    }
    let url = url.ok_or("--database-url URL")?;
    if variants.is_empty() {
        variants = vec!["plain".into(), "ordered".into(), "split2".into()];
    }
    let store = Store::connect(&url).await?;
    let conn = store.conn();
    let backend = conn.get_database_backend();
    let t = Utc::now().date_naive();
    let lo = t - Days::new(112);
    let ids: Vec<String> = {
        let rows = conn
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT a.id FROM accounts a WHERE a.status <> 'churned' ORDER BY a.id",
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0))
            .collect::<Result<_, _>>()?
    };
    println!("{} accounts; load average {}", ids.len(), loadavg());
    let mid = ids[ids.len() / 2].clone();
    for v in &variants {
        let started = Instant::now();
        let n = match (backend, v.as_str()) {
            (DbBackend::Sqlite, "plan") => {
                let pool = conn.get_sqlite_connection_pool();
                for q in [
                    format!("EXPLAIN QUERY PLAN {SQL}"),
                    format!("EXPLAIN QUERY PLAN {SQL} ORDER BY u.account_id"),
                    format!("EXPLAIN QUERY PLAN {SQL} AND u.account_id < ? ORDER BY u.account_id"),
                ] {
                    println!("{q}");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(q.clone()))
                        .bind(lo)
                        .bind(t)
                        .bind(&mid)
                        .fetch_all(pool)
                        .await?;
                    for r in rows {
                        println!("  {}", r.try_get::<&str, _>(3)?);
                    }
                }
                0
            }
            (DbBackend::Postgres, "plan") => {
                let pool = conn.get_postgres_connection_pool();
                for q in [
                    format!("EXPLAIN {SQL}"),
                    format!("EXPLAIN {SQL} ORDER BY u.account_id"),
                    format!("EXPLAIN {SQL} AND u.account_id < ? ORDER BY u.account_id"),
                ] {
                    let q = pg(&q);
                    println!("{q}");
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(q.clone())).bind(lo).bind(t);
                    if q.contains("$3") {
                        query = query.bind(&mid);
                    }
                    for r in query.fetch_all(pool).await? {
                        println!("  {}", r.try_get::<&str, _>(0)?);
                    }
                }
                0
            }
            (_, "plain") => read(&store, SQL.to_string(), lo, t, None).await?,
            (_, "ordered") => {
                read(&store, format!("{SQL} ORDER BY u.account_id"), lo, t, None).await?
            }
            (_, "split2") => {
                let a = read(
                    &store,
                    format!("{SQL} AND u.account_id < ? ORDER BY u.account_id"),
                    lo,
                    t,
                    Some(mid.clone()),
                );
                let b = read(
                    &store,
                    format!("{SQL} AND u.account_id >= ? ORDER BY u.account_id"),
                    lo,
                    t,
                    Some(mid.clone()),
                );
                let (a, b) = futures::future::try_join(a, b).await?;
                a + b
            }
            (_, "markers") => {
                let sql = "SELECT u.account_id, u.event_type, MAX(u.day) \
                     FROM usage_daily u JOIN accounts a ON a.id = u.account_id \
                     WHERE u.day <= ? AND u.count > 0 AND a.status <> 'churned' \
                     GROUP BY u.account_id, u.event_type";
                let rows = conn
                    .query_all_raw(Statement::from_sql_and_values(
                        backend,
                        if backend == DbBackend::Postgres {
                            pg(sql)
                        } else {
                            sql.to_string()
                        },
                        [lo.into()],
                    ))
                    .await?;
                rows.len() as u64
            }
            (_, "seaorm") => {
                let rows = conn
                    .query_all_raw(Statement::from_sql_and_values(
                        backend,
                        if backend == DbBackend::Postgres {
                            pg(SQL)
                        } else {
                            SQL.to_string()
                        },
                        [lo.into(), t.into()],
                    ))
                    .await?;
                rows.len() as u64
            }
            _ => return Err(format!("unknown variant {v}").into()),
        };
        println!(
            "{v}: {n} rows in {:.2} s (load average {})",
            started.elapsed().as_secs_f64(),
            loadavg()
        );
    }
    store.close().await?;
    Ok(())
}

/// Streams the rows, decoding every column, and counts them.
async fn read(
    store: &Store,
    sql: String,
    lo: NaiveDate,
    t: NaiveDate,
    split: Option<String>,
) -> Result<u64, Error> {
    let conn = store.conn();
    let mut n = 0u64;
    let mut sum = 0i64;
    let mut prev = String::new();
    let mut accounts = 0u64;
    if conn.get_database_backend() == DbBackend::Postgres {
        let sql = pg(&sql);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(lo)
            .bind(t);
        if let Some(s) = &split {
            q = q.bind(s);
        }
        let mut rows = q.fetch(conn.get_postgres_connection_pool());
        while let Some(r) = rows.try_next().await? {
            let id: &str = r.try_get(0)?;
            if id != prev {
                prev.clear();
                prev.push_str(id);
                accounts += 1;
            }
            let _day: NaiveDate = r.try_get(1)?;
            let _ty: &str = r.try_get(2)?;
            sum += r.try_get::<i64, _>(3)? + r.try_get::<i64, _>(4)?;
            let _v: f64 = r.try_get(5)?;
            n += 1;
        }
    } else {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(lo)
            .bind(t);
        if let Some(s) = &split {
            q = q.bind(s);
        }
        let mut rows = q.fetch(conn.get_sqlite_connection_pool());
        while let Some(r) = rows.try_next().await? {
            let id: &str = r.try_get(0)?;
            if id != prev {
                prev.clear();
                prev.push_str(id);
                accounts += 1;
            }
            let _day: NaiveDate = r.try_get(1)?;
            let _ty: &str = r.try_get(2)?;
            sum += r.try_get::<i64, _>(3)? + r.try_get::<i64, _>(4)?;
            let _v: f64 = r.try_get(5)?;
            n += 1;
        }
    }
    println!("  ({accounts} account runs, checksum {sum})");
    Ok(n)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}
