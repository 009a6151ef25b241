//! Leases: which replica does a piece of once-per-cluster work (a schedule's ticks, the
//! scoring-run mutex), docs/deploy.md "Work shared between replicas".
//!
//! A lease is a row of `leases` (name, holder, expiry). A holder takes a free or expired
//! lease with [`try_acquire`], keeps it with [`renew`] before it runs out and gives it back
//! with [`release`]; a holder that stops renewing (killed, cut off from the database) loses
//! it at its expiry, and the next [`try_acquire`] of another holder takes it over. Times
//! are milliseconds since the Unix epoch on the database's clock (one clock for every
//! replica, whatever their own clocks say). Each call is one statement, atomic on both
//! back ends: two holders never both get the same lease.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};

use crate::{Db, Store, StoreError};

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct Lease {
    /// What it is for (e.g. `schedule:scoring`).
    pub name: String,
    /// Who holds it (a replica's id).
    pub holder: String,
    /// When the holder took it.
    pub acquired_ms: i64,
    /// When it runs out unless renewed.
    pub expires_ms: i64,
}

/// The database's clock, in milliseconds since the Unix epoch, as SQL.
fn now_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        _ => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, crate::placeholders(backend, sql), values)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Takes lease `name` for `holder` for `ttl` when it is free, expired or already
/// `holder`'s (then it is renewed); `true` when `holder` holds it afterwards.
pub async fn try_acquire(
    db: &impl Db,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let now = now_sql(b);
    let sql = format!(
        "INSERT INTO leases (name, holder, acquired_ms, expires_ms) VALUES (?, ?, {now}, {now} + ?) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         acquired_ms = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_ms \
         ELSE excluded.acquired_ms END, expires_ms = excluded.expires_ms \
         WHERE leases.holder = excluded.holder OR leases.expires_ms <= excluded.acquired_ms"
    );
    let r = conn
        .execute_raw(stmt(
            b,
            &sql,
            vec![name.into(), holder.into(), ms(ttl).into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Extends `holder`'s lease `name` to `ttl` from now; `false` when `holder` no longer
/// holds it (another holder took it over after it expired, or it was released). A lease
/// past its expiry that nobody took over is still the holder's and is renewed.
pub async fn renew(
    db: &impl Db,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let sql = format!(
        "UPDATE leases SET expires_ms = {} + ? WHERE name = ? AND holder = ?",
        now_sql(b)
    );
    let r = conn
        .execute_raw(stmt(
            b,
            &sql,
            vec![ms(ttl).into(), name.into(), holder.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives lease `name` back when `holder` holds it (another holder may take it at once);
/// `false` when it did not.
pub async fn release(db: &impl Db, name: &str, holder: &str) -> Result<bool, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let r = conn
        .execute_raw(stmt(
            b,
            "DELETE FROM leases WHERE name = ? AND holder = ?",
            vec![name.into(), holder.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Lease `name` as stored (possibly expired), if any.
pub async fn get(store: &Store, name: &str) -> Result<Option<Lease>, StoreError> {
    let conn = store.conn();
    let b = conn.get_database_backend();
    Ok(Lease::find_by_statement(stmt(
        b,
        "SELECT name, holder, acquired_ms, expires_ms FROM leases WHERE name = ?",
        vec![name.into()],
    ))
    .one(conn)
    .await?)
}

/// The database's clock now, in milliseconds since the Unix epoch (what expiries are
/// compared with).
pub async fn db_now_ms(store: &Store) -> Result<i64, StoreError> {
    let conn = store.conn();
    let b = conn.get_database_backend();
    let row = conn
        .query_one_raw(Statement::from_string(
            b,
            format!("SELECT {} AS now_ms", now_sql(b)),
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "now_ms"))
        .transpose()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    async fn lease_acquire_renew_release(store: Store) {
        assert!(try_acquire(&store, "job", "a", TTL).await.unwrap());
        let first = get(&store, "job").await.unwrap().expect("stored");
        assert_eq!(first.holder, "a");
        let now = db_now_ms(&store).await.unwrap();
        assert!(first.expires_ms > now + 20_000, "{first:?} now {now}");
        // Held: another holder cannot take it, nor renew or release it.
        assert!(!try_acquire(&store, "job", "b", TTL).await.unwrap());
        assert!(!renew(&store, "job", "b", TTL).await.unwrap());
        assert!(!release(&store, "job", "b").await.unwrap());
        assert_eq!(get(&store, "job").await.unwrap().unwrap().holder, "a");
        // The holder renews it (and acquiring again is renewing), keeping acquired_ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(renew(&store, "job", "a", TTL).await.unwrap());
        assert!(try_acquire(&store, "job", "a", TTL).await.unwrap());
        let renewed = get(&store, "job").await.unwrap().unwrap();
        assert_eq!(renewed.acquired_ms, first.acquired_ms);
        assert!(
            renewed.expires_ms > first.expires_ms,
            "{renewed:?} {first:?}"
        );
        // Leases are independent by name.
        assert!(try_acquire(&store, "other", "b", TTL).await.unwrap());
        // Released: the other holder takes it at once.
        assert!(release(&store, "job", "a").await.unwrap());
        assert!(get(&store, "job").await.unwrap().is_none());
        assert!(!renew(&store, "job", "a", TTL).await.unwrap());
        assert!(try_acquire(&store, "job", "b", TTL).await.unwrap());
        assert_eq!(get(&store, "job").await.unwrap().unwrap().holder, "b");
    }

    async fn lease_expiry_takeover(store: Store) {
        let short = Duration::from_millis(300);
        assert!(try_acquire(&store, "job", "a", short).await.unwrap());
        assert!(!try_acquire(&store, "job", "b", TTL).await.unwrap());
        // `a` stops renewing (killed): once expired, `b` takes it over.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(try_acquire(&store, "job", "b", TTL).await.unwrap());
        let l = get(&store, "job").await.unwrap().unwrap();
        assert_eq!(l.holder, "b");
        // `a` learns it lost it: it can neither renew nor release it.
        assert!(!renew(&store, "job", "a", TTL).await.unwrap());
        assert!(!release(&store, "job", "a").await.unwrap());
        assert!(!try_acquire(&store, "job", "a", TTL).await.unwrap());
        // An expired lease nobody took over is still its holder's to renew.
        assert!(try_acquire(&store, "solo", "a", short).await.unwrap());
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(renew(&store, "solo", "a", TTL).await.unwrap());
        assert!(!try_acquire(&store, "solo", "b", TTL).await.unwrap());
    }

    async fn lease_one_winner_among_concurrent_holders(store: Store) {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                try_acquire(&s, "race", &format!("h{i}"), TTL)
                    .await
                    .unwrap()
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1);
    }

    crate::store_test_suite!(
        lease_acquire_renew_release,
        lease_expiry_takeover,
        lease_one_winner_among_concurrent_holders
    );
}
