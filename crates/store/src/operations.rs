//! Long-running operations (AIP-151): the row of each operation, written by the replica
//! that runs it (start, heartbeats with phase and progress, the result) and read by any
//! replica. A cancel is a flag in the row ([`request_cancel`]) that the runner reads with
//! each heartbeat ([`heartbeat`]), so it works from any replica. Times are milliseconds
//! since the Unix epoch. The result is stored as the encoded message and its type name,
//! opaque to the store.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};

use crate::sealed::Sealed;
use crate::{Db, Store, StoreError};

/// One operation.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct OperationRow {
    /// Unique id (the name is `operations/<id>`).
    pub id: String,
    /// What it does (`train`, `evaluate`, `compute_scores`).
    pub kind: String,
    /// What it works on (a profile, `global`, a scope), for people.
    pub target: String,
    /// The role that started it: cancelling or deleting it needs this role.
    pub role: String,
    /// The label of the token that started it.
    pub started_by: String,
    /// Finished (with a response or an error).
    pub done: bool,
    /// What it is doing now (free text, e.g. `queued`, `reading history`).
    pub phase: String,
    /// Fraction done, 0..=1 (a rough figure).
    pub progress: f64,
    /// A cancel was asked for.
    pub cancel_requested: bool,
    /// gRPC status code of the failure (`None` unless done with an error).
    pub error_code: Option<i32>,
    /// Message of the failure.
    pub error_message: Option<String>,
    /// Full type name of the response message (done without error).
    pub response_type: Option<String>,
    /// The encoded response.
    pub response: Option<Vec<u8>>,
    /// When it was started.
    pub created_ms: i64,
    /// Last heartbeat of the runner (or last change).
    pub updated_ms: i64,
    /// When it finished.
    pub finished_ms: Option<i64>,
}

/// A new operation: running, phase `phase`, progress 0.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOperation {
    /// Unique id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// Role that started it.
    pub role: String,
    /// Token label of the starter.
    pub started_by: String,
    /// First phase.
    pub phase: String,
    /// Start time.
    pub now_ms: i64,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// With a response: (type name, encoded message).
    Response(String, Vec<u8>),
    /// With an error: (gRPC code, message).
    Error(i32, String),
}

/// Filter of [`list_operations`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationFilter {
    /// Only finished (`Some(true)`) or running (`Some(false)`) ones.
    pub done: Option<bool>,
    /// Only this kind.
    pub kind: Option<String>,
}

const COLUMNS: &str = "id, kind, target, role, started_by, done, phase, progress, \
     cancel_requested, error_code, error_message, response_type, response, created_ms, \
     updated_ms, finished_ms";

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, crate::placeholders(backend, sql), values)
}

/// Stores a new running operation.
pub async fn insert_operation(db: &impl Db, op: &NewOperation) -> Result<(), StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "INSERT INTO operations (id, kind, target, role, started_by, done, phase, progress, \
         cancel_requested, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        vec![
            op.id.clone().into(),
            op.kind.clone().into(),
            op.target.clone().into(),
            op.role.clone().into(),
            op.started_by.clone().into(),
            false.into(),
            op.phase.clone().into(),
            0.0f64.into(),
            false.into(),
            op.now_ms.into(),
            op.now_ms.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The operation `id`, if stored.
pub async fn get_operation(db: &impl Db, id: &str) -> Result<Option<OperationRow>, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    Ok(OperationRow::find_by_statement(stmt(
        b,
        &format!("SELECT {COLUMNS} FROM operations WHERE id = ?"),
        vec![id.into()],
    ))
    .one(conn)
    .await?)
}

/// The runner's heartbeat: records the phase and progress of a running operation and
/// returns whether a cancel was asked for (`None` when the row is gone, deleted).
pub async fn heartbeat(
    store: &Store,
    id: &str,
    phase: &str,
    progress: f64,
    now_ms: i64,
) -> Result<Option<bool>, StoreError> {
    let conn = store.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "UPDATE operations SET phase = ?, progress = ?, updated_ms = ? \
         WHERE id = ? AND done = ?",
        vec![
            phase.into(),
            progress.clamp(0.0, 1.0).into(),
            now_ms.into(),
            id.into(),
            false.into(),
        ],
    ))
    .await?;
    let row = conn
        .query_one_raw(stmt(
            b,
            "SELECT cancel_requested FROM operations WHERE id = ?",
            vec![id.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get::<bool>("", "cancel_requested")?),
        None => None,
    })
}

/// Finishes a running operation with `outcome` (phase `done`, progress 1 on success);
/// returns false when it was not running any more (finished or deleted).
pub async fn finish_operation(
    store: &Store,
    id: &str,
    outcome: &Outcome,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let conn = store.c();
    let b = conn.get_database_backend();
    #[allow(clippy::type_complexity)]
    let (code, message, rtype, body, progress, phase): (
        Option<i32>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
        Option<f64>,
        &str,
    ) = match outcome {
        Outcome::Response(t, bytes) => (
            None,
            None,
            Some(t.clone()),
            Some(bytes.clone()),
            Some(1.0),
            "done",
        ),
        Outcome::Error(c, m) => (Some(*c), Some(m.clone()), None, None, None, "failed"),
    };
    let r = conn
        .execute_raw(stmt(
            b,
            "UPDATE operations SET done = ?, phase = ?, progress = COALESCE(?, progress), \
             error_code = ?, error_message = ?, response_type = ?, response = ?, \
             updated_ms = ?, finished_ms = ? WHERE id = ? AND done = ?",
            vec![
                true.into(),
                phase.into(),
                progress.into(),
                code.into(),
                message.into(),
                rtype.into(),
                Value::Bytes(body),
                now_ms.into(),
                now_ms.into(),
                id.into(),
                false.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Asks for the cancel of `id`: sets the flag of a running operation. Returns the row
/// as it is after that (`None` when there is no such operation).
pub async fn request_cancel(
    store: &Store,
    id: &str,
    now_ms: i64,
) -> Result<Option<OperationRow>, StoreError> {
    let tx = store.begin_write().await?;
    let conn = tx.c();
    let b = conn.get_database_backend();
    conn.execute_raw(stmt(
        b,
        "UPDATE operations SET cancel_requested = ?, updated_ms = ? WHERE id = ? AND done = ?",
        vec![true.into(), now_ms.into(), id.into(), false.into()],
    ))
    .await?;
    let row = get_operation(&tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes the row of `id` (a running operation then stops at its next heartbeat);
/// returns whether there was one.
pub async fn delete_operation(store: &Store, id: &str) -> Result<bool, StoreError> {
    let conn = store.c();
    let b = conn.get_database_backend();
    let r = conn
        .execute_raw(stmt(
            b,
            "DELETE FROM operations WHERE id = ?",
            vec![id.into()],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Operations newest first (by start time, then id), matching `filter`, after the
/// (created_ms, id) of the last row of the previous page, at most `limit`.
pub async fn list_operations(
    db: &impl Db,
    filter: &OperationFilter,
    after: Option<(i64, &str)>,
    limit: u64,
) -> Result<Vec<OperationRow>, StoreError> {
    let conn = db.c();
    let b = conn.get_database_backend();
    let mut sql = format!("SELECT {COLUMNS} FROM operations WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(done) = filter.done {
        sql.push_str(" AND done = ?");
        values.push(done.into());
    }
    if let Some(kind) = &filter.kind {
        sql.push_str(" AND kind = ?");
        values.push(kind.clone().into());
    }
    if let Some((ms, id)) = after {
        sql.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
        values.extend([ms.into(), ms.into(), id.into()]);
    }
    sql.push_str(" ORDER BY created_ms DESC, id DESC LIMIT ?");
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    Ok(OperationRow::find_by_statement(stmt(b, &sql, values))
        .all(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, kind: &str, at: i64) -> NewOperation {
        NewOperation {
            id: id.into(),
            kind: kind.into(),
            target: "global".into(),
            role: "admin".into(),
            started_by: "test".into(),
            phase: "queued".into(),
            now_ms: at,
        }
    }

    async fn an_operation_runs_beats_and_finishes(store: Store) {
        insert_operation(&store, &new("a", "train", 1000))
            .await
            .unwrap();
        let row = get_operation(&store, "a").await.unwrap().unwrap();
        assert!(!row.done && !row.cancel_requested);
        assert_eq!((row.phase.as_str(), row.progress), ("queued", 0.0));
        assert_eq!(
            heartbeat(&store, "a", "fitting", 0.5, 2000).await.unwrap(),
            Some(false)
        );
        let row = get_operation(&store, "a").await.unwrap().unwrap();
        assert_eq!(
            (row.phase.as_str(), row.progress, row.updated_ms),
            ("fitting", 0.5, 2000)
        );
        let out = Outcome::Response("x.y.Z".into(), vec![1, 2, 3]);
        assert!(finish_operation(&store, "a", &out, 3000).await.unwrap());
        // Finished once only.
        assert!(
            !finish_operation(&store, "a", &Outcome::Error(1, "x".into()), 4000)
                .await
                .unwrap()
        );
        let row = get_operation(&store, "a").await.unwrap().unwrap();
        assert!(row.done);
        assert_eq!(row.response, Some(vec![1, 2, 3]));
        assert_eq!(row.response_type.as_deref(), Some("x.y.Z"));
        assert_eq!(
            (row.progress, row.finished_ms, row.error_code),
            (1.0, Some(3000), None)
        );
        // A heartbeat after the end changes nothing.
        heartbeat(&store, "a", "late", 0.1, 5000).await.unwrap();
        assert_eq!(
            get_operation(&store, "a").await.unwrap().unwrap().phase,
            "done"
        );
        assert!(get_operation(&store, "b").await.unwrap().is_none());
    }

    async fn a_cancel_reaches_the_heartbeat(store: Store) {
        insert_operation(&store, &new("c", "evaluate", 1000))
            .await
            .unwrap();
        let row = request_cancel(&store, "c", 1500).await.unwrap().unwrap();
        assert!(row.cancel_requested && !row.done);
        assert_eq!(
            heartbeat(&store, "c", "x", 0.2, 2000).await.unwrap(),
            Some(true)
        );
        let err = Outcome::Error(1, "cancelled".into());
        assert!(finish_operation(&store, "c", &err, 2500).await.unwrap());
        let row = get_operation(&store, "c").await.unwrap().unwrap();
        assert_eq!(row.error_code, Some(1));
        assert_eq!(row.phase, "failed");
        assert!(
            request_cancel(&store, "missing", 1)
                .await
                .unwrap()
                .is_none()
        );
        assert!(delete_operation(&store, "c").await.unwrap());
        assert!(!delete_operation(&store, "c").await.unwrap());
        assert_eq!(heartbeat(&store, "c", "x", 0.2, 3000).await.unwrap(), None);
    }

    async fn operations_list_newest_first_by_page_and_filter(store: Store) {
        for (i, kind) in ["train", "evaluate", "train", "compute_scores", "train"]
            .iter()
            .enumerate()
        {
            let id = format!("op{i}");
            insert_operation(&store, &new(&id, kind, 1000 + (i as i64 / 2)))
                .await
                .unwrap();
        }
        finish_operation(&store, "op0", &Outcome::Error(13, "x".into()), 9)
            .await
            .unwrap();
        let all = OperationFilter::default();
        let ids = |rows: &[OperationRow]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let p1 = list_operations(&store, &all, None, 2).await.unwrap();
        assert_eq!(ids(&p1), ["op4", "op3"]);
        let last = p1.last().unwrap();
        let p2 = list_operations(&store, &all, Some((last.created_ms, &last.id)), 10)
            .await
            .unwrap();
        assert_eq!(ids(&p2), ["op2", "op1", "op0"]);
        let trains = OperationFilter {
            kind: Some("train".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&list_operations(&store, &trains, None, 10).await.unwrap()),
            ["op4", "op2", "op0"]
        );
        let running_trains = OperationFilter {
            done: Some(false),
            kind: Some("train".into()),
        };
        assert_eq!(
            ids(&list_operations(&store, &running_trains, None, 10)
                .await
                .unwrap()),
            ["op4", "op2"]
        );
        let done = OperationFilter {
            done: Some(true),
            ..Default::default()
        };
        assert_eq!(
            ids(&list_operations(&store, &done, None, 10).await.unwrap()),
            ["op0"]
        );
    }

    crate::store_test_suite!(
        an_operation_runs_beats_and_finishes,
        a_cancel_reaches_the_heartbeat,
        operations_list_newest_first_by_page_and_filter,
    );
}
