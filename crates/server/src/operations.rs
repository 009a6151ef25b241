//! Long-running operations (Google AIP-151): a heavy call (`StartTraining`,
//! `StartEvaluation`, `StartComputeScores`) returns a `google.longrunning.Operation` at
//! once and runs in a task of the replica that took it; the operation lives in the store
//! (`vitals_store::operations`), so any replica answers `GetOperation`, `ListOperations`
//! and `WaitOperation`, and `CancelOperation` on any replica sets a flag that the runner
//! reads with its heartbeat (every [`HEARTBEAT`]). docs/api.md "Long-running operations".
//!
//! The work reports its phase with [`report`] (a no-op outside an operation); the
//! heavy-work budget reports `running` when the work gets its slot (`queued` before).
//! An unfinished operation whose heartbeat is older than [`STALE_AFTER`] (its replica
//! stopped) reads as failed with ABORTED.
//!
//! One `google.longrunning.Operations` service per server: [`register`] adds it once,
//! whichever service asks first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use prost::Message;
use tonic::{Code, Request, Response, Status};
use vitals_proto::common::v1::OperationMetadata;
use vitals_proto::google::longrunning as pb;
use vitals_proto::google::longrunning::operations_server::OperationsServer;
use vitals_store::Store;
use vitals_store::operations::{
    self as store, NewOperation, OperationFilter, OperationRow, Outcome,
};

use crate::auth::{Principal, Role, RpcRoles};
use crate::error::ApiError;
use crate::paging::{self, KeysetPage, PageLimits};
use crate::{GrpcServer, ServerConfig};

/// How often a running operation writes its phase and reads its cancel flag.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// An unfinished operation without a heartbeat for this long reads as ABORTED.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often `WaitOperation` reads the operation.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// Prefix of operation names.
pub const NAME_PREFIX: &str = "operations/";
/// Type URL prefix of the `Any` messages of operations.
const TYPE_URL: &str = "type.googleapis.com/";
/// Full name of the metadata message.
const METADATA_TYPE: &str = "vitals.common.v1.OperationMetadata";

/// The role each `google.longrunning.Operations` RPC needs at the door: `read`.
/// Cancelling or deleting an operation further needs the role of the RPC that started it
/// (checked by the handler: PERMISSION_DENIED otherwise).
pub const ROLES: RpcRoles = &[
    ("/google.longrunning.Operations/ListOperations", Role::Read),
    ("/google.longrunning.Operations/GetOperation", Role::Read),
    ("/google.longrunning.Operations/WaitOperation", Role::Read),
    ("/google.longrunning.Operations/CancelOperation", Role::Read),
    ("/google.longrunning.Operations/DeleteOperation", Role::Read),
];

tokio::task_local! {
    static PROGRESS: Arc<Mutex<(String, f64)>>;
}

/// Reports the phase and progress (0..=1) of the operation the current task runs; the
/// next heartbeat stores them. Does nothing outside an operation.
pub fn report(phase: &str, fraction: f64) {
    let _ = PROGRESS.try_with(|p| {
        if let Ok(mut p) = p.lock() {
            *p = (phase.to_string(), fraction.clamp(0.0, 1.0));
        }
    });
}

/// Starts and answers operations over one store.
#[derive(Clone, Debug)]
pub struct Operations {
    store: Store,
    /// Longest `WaitOperation` (below the server's request timeout).
    max_wait: Duration,
}

/// The longest a `WaitOperation` waits under a request timeout of `timeout`: 5 s less
/// than it from 10 s up, half of it below, so the answer always beats the timeout.
pub fn max_wait(timeout: Duration) -> Duration {
    if timeout >= Duration::from_secs(10) {
        timeout - Duration::from_secs(5)
    } else {
        timeout / 2
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ts(ms: i64) -> prost_types::Timestamp {
    let t: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(format!("random id: {e}")))?;
    Ok(hex::encode(bytes))
}

fn role_of(name: &str) -> Role {
    Role::ALL
        .into_iter()
        .find(|r| r.as_str() == name)
        .unwrap_or(Role::Admin)
}

/// The id of an operation name (`operations/{id}`), else INVALID_ARGUMENT on `name`.
fn parse_name(name: &str) -> Result<&str, ApiError> {
    match name.strip_prefix(NAME_PREFIX) {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(id),
        _ if name.is_empty() => Err(ApiError::invalid("name", "must be set")),
        _ => Err(ApiError::invalid(
            "name",
            format!("{name:?} is not an operation name (operations/{{id}})"),
        )),
    }
}

/// The filter of ListOperations: `done = true|false` and `kind = "<kind>"` joined by
/// `AND` (empty: every operation).
fn parse_filter(filter: &str) -> Result<OperationFilter, ApiError> {
    let mut f = OperationFilter::default();
    let bad = |m: String| ApiError::invalid("filter", m);
    if filter.trim().is_empty() {
        return Ok(f);
    }
    for term in filter.split(" AND ") {
        let (key, value) = term
            .split_once('=')
            .ok_or_else(|| bad(format!("{term:?}: expected `field = value`")))?;
        let value = value.trim();
        match key.trim() {
            "done" => {
                f.done = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("done must be true or false, not {value:?}"))),
                })
            }
            "kind" | "metadata.kind" => {
                let v = value.trim_matches('"');
                if !matches!(v, "train" | "evaluate" | "compute_scores") {
                    return Err(bad(format!(
                        "kind must be \"train\", \"evaluate\" or \"compute_scores\", not {value}"
                    )));
                }
                f.kind = Some(v.to_string());
            }
            other => {
                return Err(bad(format!(
                    "unknown field {other:?} (use done and kind, joined by AND)"
                )));
            }
        }
    }
    Ok(f)
}

/// The time a client allows a call (`grpc-timeout` header), if it set one.
fn client_deadline<T>(request: &Request<T>) -> Option<Duration> {
    let v = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// An error about a field of the request nested in a `Start*` request: its field is
/// named under `prefix` (e.g. `request.profile`).
pub fn nested(prefix: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::InvalidArgument { field, message } => ApiError::InvalidArgument {
            field: format!("{prefix}.{field}"),
            message,
        },
        other => other,
    }
}

/// The operation message of a stored row.
pub fn operation(row: &OperationRow) -> pb::Operation {
    let now = now_ms();
    let stale = !row.done
        && now.saturating_sub(row.updated_ms) > i64::try_from(STALE_AFTER.as_millis()).unwrap_or(0);
    let phase = if stale { "failed" } else { row.phase.as_str() };
    let metadata = OperationMetadata {
        kind: row.kind.clone(),
        target: row.target.clone(),
        phase: phase.to_string(),
        progress_percent: (row.progress * 100.0).clamp(0.0, 100.0),
        create_time: Some(ts(row.created_ms)),
        update_time: Some(ts(row.updated_ms)),
        end_time: row.finished_ms.map(ts),
        cancel_requested: row.cancel_requested,
        started_by: row.started_by.clone(),
    };
    let result = if stale {
        Some(pb::operation::Result::Error(
            vitals_proto::google::rpc::Status {
                code: Code::Aborted as i32,
                message: format!(
                    "the replica running this operation stopped (no heartbeat for over {} s); \
                     start it again",
                    STALE_AFTER.as_secs()
                ),
                details: vec![],
            },
        ))
    } else if !row.done {
        None
    } else if let (Some(t), Some(body)) = (&row.response_type, &row.response) {
        Some(pb::operation::Result::Response(prost_types::Any {
            type_url: format!("{TYPE_URL}{t}"),
            value: body.clone(),
        }))
    } else {
        Some(pb::operation::Result::Error(
            vitals_proto::google::rpc::Status {
                code: row.error_code.unwrap_or(Code::Unknown as i32),
                message: row.error_message.clone().unwrap_or_default(),
                details: vec![],
            },
        ))
    };
    pb::Operation {
        name: format!("{NAME_PREFIX}{}", row.id),
        metadata: Some(prost_types::Any {
            type_url: format!("{TYPE_URL}{METADATA_TYPE}"),
            value: metadata.encode_to_vec(),
        }),
        done: row.done || stale,
        result,
    }
}

impl Operations {
    /// Operations over `store`; `WaitOperation` waits at most [`max_wait`] of `config`'s
    /// request timeout.
    pub fn new(store: Store, config: &ServerConfig) -> Self {
        Self {
            store,
            max_wait: max_wait(config.request_timeout),
        }
    }

    async fn row(&self, name: &str) -> Result<OperationRow, ApiError> {
        let id = parse_name(name)?;
        store::get_operation(&self.store, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("operation {name}")))
    }

    /// Checks that `caller` has the role that started `row`.
    fn may_change(caller: Option<&Principal>, row: &OperationRow) -> Result<(), Status> {
        let required = role_of(&row.role);
        match caller {
            Some(p) if !p.role.allows(required) => Err(Status::permission_denied(format!(
                "operations/{}: cancelling or deleting it needs the role {} (that of the RPC \
                 that started it); this token has {}",
                row.id,
                required.as_str(),
                p.role.as_str()
            ))),
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl pb::operations_server::Operations for Operations {
    async fn list_operations(
        &self,
        request: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        let r = request.into_inner();
        if !(r.name.is_empty() || r.name == "operations") {
            return Err(ApiError::invalid("name", "must be empty or \"operations\"").into());
        }
        let filter = parse_filter(&r.filter)?;
        let page = KeysetPage::<2>::decode(
            PageLimits::STANDARD,
            r.page_size,
            &r.page_token,
            paging::fingerprint(&[r.filter.as_str()]),
        )?;
        let after = match &page.after {
            Some([ms, id]) => Some((
                ms.parse::<i64>()
                    .map_err(|_| ApiError::invalid(paging::PAGE_TOKEN_FIELD, paging::BAD_TOKEN))?,
                id.as_str(),
            )),
            None => None,
        };
        let mut rows = store::list_operations(&self.store, &filter, after, page.limit())
            .await
            .map_err(ApiError::from)?;
        let next = page.next(&mut rows, |o| [o.created_ms.to_string(), o.id.clone()]);
        Ok(Response::new(pb::ListOperationsResponse {
            operations: rows.iter().map(operation).collect(),
            next_page_token: next,
            unreachable: vec![],
        }))
    }

    async fn get_operation(
        &self,
        request: Request<pb::GetOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let row = self.row(&request.get_ref().name).await?;
        Ok(Response::new(operation(&row)))
    }

    async fn delete_operation(
        &self,
        request: Request<pb::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let row = self.row(&request.get_ref().name).await?;
        Self::may_change(request.extensions().get::<Principal>(), &row)?;
        store::delete_operation(&self.store, &row.id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn cancel_operation(
        &self,
        request: Request<pb::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let row = self.row(&request.get_ref().name).await?;
        Self::may_change(request.extensions().get::<Principal>(), &row)?;
        store::request_cancel(&self.store, &row.id, now_ms())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn wait_operation(
        &self,
        request: Request<pb::WaitOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let mut wait = self.max_wait;
        if let Some(d) = client_deadline(&request) {
            // Answer before the client gives up.
            wait = wait.min(max_wait(d));
        }
        let r = request.into_inner();
        if let Some(t) = r.timeout {
            if t.seconds < 0 || t.nanos < 0 {
                return Err(ApiError::invalid("timeout", "must not be negative").into());
            }
            let asked = Duration::new(t.seconds.unsigned_abs(), t.nanos.unsigned_abs());
            wait = wait.min(asked);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let row = self.row(&r.name).await?;
            let op = operation(&row);
            if op.done || tokio::time::Instant::now() + WAIT_POLL > deadline {
                return Ok(Response::new(op));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}

/// Starts `work` as an operation of `kind` on `target`, started by `caller` through an
/// RPC that needs `required` (the role a cancel needs), and returns the operation at
/// once. Its response is `work`'s message, of full type name `response_type`; its
/// error the status `work` fails with (CANCELLED after a CancelOperation).
pub async fn start<M, F>(
    store: &Store,
    kind: &str,
    target: &str,
    caller: Option<&Principal>,
    required: Role,
    response_type: &'static str,
    work: F,
) -> Result<pb::Operation, ApiError>
where
    M: Message + Send + 'static,
    F: Future<Output = Result<M, Status>> + Send + 'static,
{
    let id = new_id()?;
    let new = NewOperation {
        id: id.clone(),
        kind: kind.to_string(),
        target: target.to_string(),
        role: required.as_str().to_string(),
        started_by: caller.map_or_else(|| "anonymous".to_string(), |p| p.label.clone()),
        phase: "queued".to_string(),
        now_ms: now_ms(),
    };
    store::insert_operation(store, &new).await?;
    let row = store::get_operation(store, &id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("operation {id} vanished")))?;
    let st = store.clone();
    tokio::spawn(async move {
        let state = Arc::new(Mutex::new(("queued".to_string(), 0.0)));
        // The work runs in a task of its own, so that a slow heartbeat never holds it up;
        // aborting the task drops the work, which cancels it (its heavy-work slot's flag)
        // before the end is written: nothing of a cancelled operation commits after.
        let mut task = tokio::spawn(PROGRESS.scope(state.clone(), work));
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let outcome = loop {
            tokio::select! {
                r = &mut task => break match r {
                    Ok(Ok(m)) => Outcome::Response(response_type.to_string(), m.encode_to_vec()),
                    Ok(Err(s)) => Outcome::Error(s.code() as i32, s.message().to_string()),
                    Err(e) => Outcome::Error(Code::Internal as i32, format!("the operation's task failed: {e}")),
                },
                _ = tick.tick() => {
                    let (phase, p) = state.lock().map(|s| s.clone()).unwrap_or_default();
                    match store::heartbeat(&st, &id, &phase, p, now_ms()).await {
                        Ok(Some(false)) => {}
                        Ok(Some(true)) => {
                            task.abort();
                            // Wait for the aborted work to be dropped (its slot freed).
                            let _ = (&mut task).await;
                            break Outcome::Error(
                                Code::Cancelled as i32,
                                "cancelled by CancelOperation".to_string(),
                            );
                        }
                        Ok(None) => {
                            task.abort();
                            tracing::info!(operation = %id, "operation deleted: stopped");
                            return;
                        }
                        Err(e) => tracing::warn!(operation = %id, error = %e, "operation heartbeat failed"),
                    }
                }
            }
        };
        for attempt in 0..5u32 {
            match store::finish_operation(&st, &id, &outcome, now_ms()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(operation = %id, error = %e, attempt, "cannot store the end of an operation");
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            }
        }
    });
    Ok(operation(&row))
}

/// Adds the `google.longrunning.Operations` service over `store` to `grpc`, unless it is
/// there already (`vitals serve` hosts the learner and scoring services on one server:
/// one Operations service answers for both).
pub fn register(grpc: &mut GrpcServer, store: &Store, config: &ServerConfig) {
    if grpc
        .service_names()
        .contains(&vitals_proto::OPERATIONS_SERVICE)
    {
        return;
    }
    grpc.add(
        OperationsServer::new(Operations::new(store.clone(), config)),
        ROLES,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters_parse_or_name_the_field() {
        assert_eq!(parse_name("operations/ab12").unwrap(), "ab12");
        for bad in ["", "operations/", "ops/x", "operations/a/b"] {
            assert!(matches!(
                parse_name(bad),
                Err(ApiError::InvalidArgument { ref field, .. }) if field == "name"
            ));
        }
        assert_eq!(parse_filter("").unwrap(), OperationFilter::default());
        let f = parse_filter("done = false AND kind = \"train\"").unwrap();
        assert_eq!((f.done, f.kind.as_deref()), (Some(false), Some("train")));
        for bad in ["done = maybe", "kind = \"x\"", "owner = me", "done"] {
            assert!(matches!(
                parse_filter(bad),
                Err(ApiError::InvalidArgument { ref field, .. }) if field == "filter"
            ));
        }
    }

    #[test]
    fn a_stale_running_operation_reads_as_aborted() {
        let row = OperationRow {
            id: "x".into(),
            kind: "train".into(),
            target: "global".into(),
            role: "admin".into(),
            started_by: "t".into(),
            done: false,
            phase: "running".into(),
            progress: 0.5,
            cancel_requested: false,
            error_code: None,
            error_message: None,
            response_type: None,
            response: None,
            created_ms: 0,
            updated_ms: 0,
            finished_ms: None,
        };
        let op = operation(&row);
        assert!(op.done);
        assert!(
            matches!(op.result, Some(pb::operation::Result::Error(ref s)) if s.code == Code::Aborted as i32)
        );
        let fresh = OperationRow {
            updated_ms: now_ms(),
            ..row
        };
        let op = operation(&fresh);
        assert!(!op.done && op.result.is_none());
        let m = OperationMetadata::decode(op.metadata.unwrap().value.as_slice()).unwrap();
        assert_eq!((m.phase.as_str(), m.progress_percent), ("running", 50.0));
    }
}
