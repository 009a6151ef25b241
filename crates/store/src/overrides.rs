//! Manual score overrides: a CSM's band and/or score for an account's scorecard, with a
//! reason and an optional expiry, next to the computed snapshot (never written into it:
//! snapshots, `score_latest` and everything the learner reads keep the computed values).
//! Every set and clear is appended to `score_override_audit` in the same transaction.
//! Times are milliseconds since the Unix epoch.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};

use crate::sealed::Sealed;
use crate::{Db, Store, StoreError};

/// Audit action of a set.
pub const SET: &str = "set";
/// Audit action of a clear.
pub const CLEAR: &str = "clear";

/// An override.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct Override {
    /// The account.
    pub account_id: String,
    /// The scorecard (`profile` for the profile score).
    pub scorecard_id: String,
    /// The band set (`red`, `yellow`, `green`; empty: the computed band stands).
    pub band: String,
    /// The score set (`None`: the computed score stands).
    pub value: Option<f64>,
    /// Why (a short code).
    pub reason_code: String,
    /// Free text.
    pub note: String,
    /// Who (the token's label).
    pub set_by: String,
    /// When.
    pub set_ms: i64,
    /// When it stops applying (`None`: never).
    pub expires_ms: Option<i64>,
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct AuditEntry {
    /// Id (order of writing).
    pub id: i64,
    /// The account.
    pub account_id: String,
    /// The scorecard.
    pub scorecard_id: String,
    /// [`SET`] or [`CLEAR`].
    pub action: String,
    /// Band set (set only).
    pub band: String,
    /// Value set (set only).
    pub value: Option<f64>,
    /// Reason code (a clear's own reason).
    pub reason_code: String,
    /// Note.
    pub note: String,
    /// Who.
    pub actor: String,
    /// When.
    pub at_ms: i64,
    /// Expiry set (set only).
    pub expires_ms: Option<i64>,
}

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, crate::placeholders(backend, sql), values)
}

async fn audit(db: &impl Db, action: &str, o: &Override) -> Result<(), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "INSERT INTO score_override_audit (account_id, scorecard_id, action, band, value, \
         reason_code, note, actor, at_ms, expires_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
        vec![
            o.account_id.clone().into(),
            o.scorecard_id.clone().into(),
            action.into(),
            o.band.clone().into(),
            o.value.into(),
            o.reason_code.clone().into(),
            o.note.clone().into(),
            o.set_by.clone().into(),
            o.set_ms.into(),
            o.expires_ms.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Sets (replaces) the override of (account, scorecard) and audits it, in one
/// transaction.
pub async fn set_override(store: &Store, o: &Override) -> Result<(), StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "INSERT INTO score_overrides (account_id, scorecard_id, band, value, reason_code, \
         note, set_by, set_ms, expires_ms) VALUES (?,?,?,?,?,?,?,?,?) \
         ON CONFLICT (account_id, scorecard_id) DO UPDATE SET band = excluded.band, \
         value = excluded.value, reason_code = excluded.reason_code, note = excluded.note, \
         set_by = excluded.set_by, set_ms = excluded.set_ms, expires_ms = excluded.expires_ms",
        vec![
            o.account_id.clone().into(),
            o.scorecard_id.clone().into(),
            o.band.clone().into(),
            o.value.into(),
            o.reason_code.clone().into(),
            o.note.clone().into(),
            o.set_by.clone().into(),
            o.set_ms.into(),
            o.expires_ms.into(),
        ],
    ))
    .await?;
    audit(&tx, SET, o).await?;
    tx.commit().await?;
    Ok(())
}

/// Removes the override of (account, scorecard), auditing it with `reason_code`, `note`,
/// `actor` and `at_ms`; returns whether there was one (nothing is audited otherwise).
pub async fn clear_override(
    store: &Store,
    account_id: &str,
    scorecard_id: &str,
    reason_code: &str,
    note: &str,
    actor: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    let r = conn
        .execute_raw(stmt(
            b,
            "DELETE FROM score_overrides WHERE account_id = ? AND scorecard_id = ?",
            vec![account_id.into(), scorecard_id.into()],
        ))
        .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    let entry = Override {
        account_id: account_id.into(),
        scorecard_id: scorecard_id.into(),
        band: String::new(),
        value: None,
        reason_code: reason_code.into(),
        note: note.into(),
        set_by: actor.into(),
        set_ms: at_ms,
        expires_ms: None,
    };
    audit(&tx, CLEAR, &entry).await?;
    tx.commit().await?;
    Ok(true)
}

const COLUMNS: &str = "account_id, scorecard_id, band, value, reason_code, note, set_by, \
     set_ms, expires_ms";

/// A number that changes whenever an override is set, cleared or erased (the last audit
/// id and the count of audit rows): the score cache of every replica polls it.
pub async fn last_change(store: &Store) -> Result<(i64, i64), StoreError> {
    let conn = store.conn();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COALESCE(MAX(id), 0) AS last, COUNT(*) AS n FROM score_override_audit",
        ))
        .await?;
    Ok(match row {
        Some(r) => (r.try_get::<i64>("", "last")?, r.try_get::<i64>("", "n")?),
        None => (0, 0),
    })
}

/// The overrides in force at `now` (not expired) of these (account, scorecard) pairs.
pub async fn active_overrides(
    db: &impl Db,
    keys: &[(String, String)],
    now_ms: i64,
) -> Result<HashMap<(String, String), Override>, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let mut out = HashMap::new();
    let accounts: Vec<&String> = {
        let mut a: Vec<&String> = keys.iter().map(|k| &k.0).collect();
        a.sort();
        a.dedup();
        a
    };
    for chunk in accounts.chunks(crate::scoring::INSERT_CHUNK) {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM score_overrides WHERE (expires_ms IS NULL OR expires_ms > ?) \
             AND account_id IN "
        );
        crate::push_groups(&mut sql, DbBackend::Sqlite, 1, chunk.len(), &mut 0);
        let mut values = vec![Value::from(now_ms)];
        values.extend(chunk.iter().map(|a| Value::from((*a).clone())));
        for o in Override::find_by_statement(stmt(b, &sql, values))
            .all(conn)
            .await?
        {
            let k = (o.account_id.clone(), o.scorecard_id.clone());
            if keys.contains(&k) {
                out.insert(k, o);
            }
        }
    }
    Ok(out)
}

/// Every override in force at `now` (not expired), by (account, scorecard): what a
/// scoring run gives the score cache with its new scores (overrides are set by hand, so
/// there are few).
pub async fn overrides_in_force(
    db: &impl Db,
    now_ms: i64,
) -> Result<HashMap<(String, String), Override>, StoreError> {
    let conn = db.c();
    let sql =
        format!("SELECT {COLUMNS} FROM score_overrides WHERE expires_ms IS NULL OR expires_ms > ?");
    Ok(Override::find_by_statement(stmt(
        conn.get_database_backend(),
        &sql,
        vec![Value::from(now_ms)],
    ))
    .all(conn)
    .await?
    .into_iter()
    .map(|o| ((o.account_id.clone(), o.scorecard_id.clone()), o))
    .collect())
}

/// The audit trail, newest first, optionally of one account, `limit` after skipping
/// `offset`, and the count over all pages.
pub async fn list_audit(
    db: &impl Db,
    account_id: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<AuditEntry>, u64), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let (w, mut values): (&str, Vec<Value>) = match account_id {
        Some(a) => (" WHERE account_id = ?", vec![a.into()]),
        None => ("", vec![]),
    };
    let total = conn
        .query_one_raw(stmt(
            b,
            &format!("SELECT COUNT(*) AS n FROM score_override_audit{w}"),
            values.clone(),
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    values.extend([Value::from(limit as i64), Value::from(offset as i64)]);
    let rows = AuditEntry::find_by_statement(stmt(
        b,
        &format!(
            "SELECT id, account_id, scorecard_id, action, band, value, reason_code, note, \
             actor, at_ms, expires_ms FROM score_override_audit{w} ORDER BY id DESC \
             LIMIT ? OFFSET ?"
        ),
        values,
    ))
    .all(conn)
    .await?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(account: &str, expires: Option<i64>) -> Override {
        Override {
            account_id: account.into(),
            scorecard_id: "profile".into(),
            band: "red".into(),
            value: Some(1.5),
            reason_code: "exec_escalation".into(),
            note: "CEO emailed".into(),
            set_by: "csm-alice".into(),
            set_ms: 1000,
            expires_ms: expires,
        }
    }

    /// Set, replace, expire and clear, each audited; the learner's whole input (the
    /// history it trains on) is the same with and without overrides.
    async fn overrides_apply_expire_and_are_audited(store: Store) {
        let until = chrono::Utc::now();
        let before = crate::learner::load_history(&store, until).await.unwrap();
        set_override(&store, &o("a", None)).await.unwrap();
        set_override(&store, &o("b", Some(2000))).await.unwrap();
        let replaced = Override {
            band: "green".into(),
            value: None,
            ..o("a", None)
        };
        set_override(&store, &replaced).await.unwrap();
        let keys = vec![
            ("a".to_string(), "profile".to_string()),
            ("b".to_string(), "profile".to_string()),
            ("a".to_string(), "nps".to_string()),
        ];
        let at_1500 = active_overrides(&store, &keys, 1500).await.unwrap();
        assert_eq!(at_1500.len(), 2);
        assert_eq!(at_1500[&keys[0]], replaced);
        // b expired at 2000.
        let at_2500 = active_overrides(&store, &keys, 2500).await.unwrap();
        assert_eq!(at_2500.keys().collect::<Vec<_>>(), vec![&keys[0]]);
        assert!(
            clear_override(&store, "a", "profile", "resolved", "", "csm-bob", 3000)
                .await
                .unwrap()
        );
        assert!(
            !clear_override(&store, "a", "profile", "resolved", "", "csm-bob", 3000)
                .await
                .unwrap()
        );
        assert!(
            active_overrides(&store, &keys, 3000)
                .await
                .unwrap()
                .is_empty()
        );
        let (all, total) = list_audit(&store, None, 0, 10).await.unwrap();
        assert_eq!(total, 4);
        let actions: Vec<(&str, &str, &str)> = all
            .iter()
            .map(|e| (e.account_id.as_str(), e.action.as_str(), e.actor.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("a", CLEAR, "csm-bob"),
                ("a", SET, "csm-alice"),
                ("b", SET, "csm-alice"),
                ("a", SET, "csm-alice")
            ]
        );
        let (mine, n) = list_audit(&store, Some("b"), 0, 10).await.unwrap();
        assert_eq!((mine.len(), n), (1, 1));
        assert_eq!(mine[0].expires_ms, Some(2000));
        let after = crate::learner::load_history(&store, until).await.unwrap();
        assert_eq!(format!("{before:?}"), format!("{after:?}"));
    }

    crate::store_test_suite!(overrides_apply_expire_and_are_audited);
}
