//! Segment-compatible HTTP ingestion on the gRPC port: `POST /v1/identify`, `/v1/group`,
//! `/v1/track` and `/v1/batch` (also `/v1/import`, Segment's alias of batch), as the
//! Segment HTTP Tracking API takes them, so that Segment, RudderStack or any of their
//! libraries pointed at Vitals deliver product data without glue (docs/api.md
//! "Segment-compatible ingestion" has the field mapping).
//!
//! Authentication: Basic auth with an ingest (or admin) token as the user name and an
//! empty password (how Segment and RudderStack send a write key), or
//! `Authorization: Bearer <token>`. No or an unknown token: 401; a read token: 403.
//!
//! A request is validated whole (one bad call refuses it all with 400 naming the field,
//! `batch[3].groupId`, nothing written), then written through the same domain functions
//! as gRPC: the accounts of `group` calls, then the contacts, then the events, each in
//! one transaction, and answered 200 only once all three have committed. When a write
//! fails the answer is 5xx and nothing later is written; Segment retries the whole
//! request, and every part is idempotent (upserts, events keyed by `messageId`), so the
//! retry ends in the same state as a single delivery.
//!
//! Status codes as Segment's retry logic expects: 400 bad input (not retried), 401/403
//! authentication, 413 a body or a batch item over its size limit, 429 more than
//! [`MAX_IN_FLIGHT`] requests at once (retried), 5xx server faults (retried).

pub mod message;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::Semaphore;
use vitals_server::ApiError;
use vitals_server::HttpAuth;
use vitals_server::auth::Role;
use vitals_store::ingestion as st;

use crate::IngestionService;
use message::{BatchBody, Call, Message};

/// Largest body of `/v1/batch` (Segment's own limit): 500 KB. Past it: 413.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Largest body of a single call, and of each item of a batch: 32 KB. Past it: 413.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Most calls in one batch (Segment's own limit): 2,500. Past it: 400.
pub const MAX_BATCH_ITEMS: usize = 2_500;
/// Segment requests handled at once by one server; one more is answered 429 at once
/// (with `Retry-After: 1`), which Segment retries with backoff.
pub const MAX_IN_FLIGHT: usize = 64;

/// The state of the Segment routes.
#[derive(Clone)]
struct Segment {
    service: IngestionService,
    slots: Arc<Semaphore>,
}

/// The Segment routes over `service`, for [`vitals_server::GrpcServer::http`].
pub fn router(service: IngestionService) -> Router {
    let state = Segment {
        service,
        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    Router::new()
        .route("/v1/batch", post(batch))
        .route("/v1/import", post(batch))
        .route("/v1/identify", post(identify))
        .route("/v1/group", post(group))
        .route("/v1/track", post(track))
        .with_state(state)
}

/// An error answer: `{"error": {"field": ..., "message": ...}}` (`field` for bad input).
#[derive(Debug)]
struct Failure(StatusCode, ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        let code = match &e {
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::FailedPrecondition(_) => StatusCode::CONFLICT,
            ApiError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(code, e)
    }
}

impl From<crate::error::IngestionError> for Failure {
    fn from(e: crate::error::IngestionError) -> Self {
        ApiError::from(e).into()
    }
}

fn fail(code: StatusCode, message: impl Into<String>) -> Failure {
    Failure(code, ApiError::Internal(message.into()))
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let Failure(code, e) = self;
        let body = match &e {
            ApiError::InvalidArgument { field, message } => {
                json!({ "error": { "field": field, "message": message } })
            }
            ApiError::Internal(detail) if code == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %detail, "segment ingestion: internal error");
                json!({ "error": { "message": "internal error (see the server log)" } })
            }
            ApiError::Internal(message) => json!({ "error": { "message": message } }),
            other => json!({ "error": { "message": other.to_string() } }),
        };
        let mut resp = json_response(code, &body);
        if code == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A JSON answer.
fn json_response(code: StatusCode, body: &serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The token of `Authorization: Basic <base64(token:)>` (the user name; the password
/// when the user name is empty) or `Bearer <token>`.
fn token(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = HttpAuth::bearer(headers) {
        return Some(t.to_string());
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    let t = if user.is_empty() { password } else { user };
    (!t.is_empty()).then(|| t.to_string())
}

/// Checks the request's credentials: an ingest or admin token.
fn authorize(auth: &HttpAuth, headers: &HeaderMap) -> Result<(), Failure> {
    let Some(principal) = auth.identify(token(headers).as_deref()) else {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "missing or unknown token: send an ingest token as the Basic auth user name \
             (the Segment write key) or as a Bearer token",
        ));
    };
    if !principal.role.allows(Role::Ingest) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} has role {}; Segment ingestion needs ingest or admin",
                principal.label, principal.role
            ),
        ));
    }
    Ok(())
}

/// The body, at most `limit` bytes (413 past it).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, Failure> {
    let too_big = || {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) => Err(Failure::from(ApiError::invalid(
            "body",
            format!("could not be read: {e}"),
        ))),
    }
}

/// A JSON parse error naming where it failed.
fn bad_json(field: &str, e: &serde_json::Error) -> Failure {
    ApiError::invalid(field, format!("invalid JSON: {e}")).into()
}

/// The calls of a request, validated; `kind` is the route's call type (`None`: batch).
fn parse(body: &[u8], kind: Option<&str>) -> Result<Vec<Call>, Failure> {
    let now = Utc::now();
    let Some(kind) = kind else {
        let b: BatchBody<'_> = serde_json::from_slice(body).map_err(|e| bad_json("batch", &e))?;
        if b.batch.len() > MAX_BATCH_ITEMS {
            return Err(ApiError::invalid(
                "batch",
                format!(
                    "holds {} calls, more than the limit of 2,500",
                    b.batch.len()
                ),
            )
            .into());
        }
        let mut calls = Vec::with_capacity(b.batch.len());
        for (i, raw) in b.batch.iter().enumerate() {
            let p = format!("batch[{i}]");
            if raw.get().len() > MAX_MESSAGE_BYTES {
                return Err(fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{p}: larger than the limit of {MAX_MESSAGE_BYTES} bytes per call"),
                ));
            }
            let mut m: Message = serde_json::from_str(raw.get()).map_err(|e| bad_json(&p, &e))?;
            if let Some(shared) = &b.context {
                let own = m.context.get_or_insert_with(Default::default);
                for (k, v) in shared {
                    own.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            let item_kind = m
                .kind
                .clone()
                .ok_or_else(|| ApiError::invalid(format!("{p}.type"), "is required"))?;
            calls.push(message::validate(
                &m,
                &item_kind,
                &format!("{p}."),
                b.sent_at.as_deref(),
                now,
            )?);
        }
        return Ok(calls);
    };
    let m: Message = serde_json::from_slice(body).map_err(|e| bad_json("body", &e))?;
    Ok(vec![message::validate(&m, kind, "", None, now)?])
}

/// Rows of a request, attributed to their accounts.
#[derive(Default)]
struct Rows {
    accounts: BTreeMap<String, st::AccountUpsert>,
    /// By (account, user): a later call's fields override an earlier one's, unset
    /// fields keep them.
    contacts: BTreeMap<(String, String), st::ContactUpsert>,
    events: Vec<st::NewEvent>,
    /// Calls with no account to attribute them to (tracks and identifies of users never
    /// grouped, anonymous tracks without `context.groupId`).
    skipped: u32,
}

impl Rows {
    fn add_contact(&mut self, c: st::ContactUpsert) {
        match self.contacts.get_mut(&(c.account_id.clone(), c.id.clone())) {
            Some(into) => {
                into.role = c.role.or(into.role.take());
                into.email_domain = c.email_domain.or(into.email_domain.take());
                into.name = c.name.or(into.name.take());
            }
            None => {
                self.contacts
                    .insert((c.account_id.clone(), c.id.clone()), c);
            }
        }
    }
}

/// Merges a later `group` call of the same account into an earlier one.
fn merge(into: &mut st::AccountUpsert, later: st::AccountUpsert) {
    if later.name.is_some() {
        into.name = later.name;
    }
    if later.created_at.is_some() {
        into.created_at = later.created_at;
    }
    into.attributes.extend(later.attributes);
}

impl Segment {
    /// Attributes every call to an account: its own group, else the user's last group
    /// set earlier in the request, else the user's last group in the store.
    async fn attribute(&self, calls: Vec<Call>) -> Result<Rows, Failure> {
        let mut rows = Rows::default();
        let mut last: HashMap<String, String> = HashMap::new();
        let mut pending_contacts = Vec::new();
        let mut pending_events = Vec::new();
        for call in calls {
            match call {
                Call::Group { account, user } => {
                    if let Some(u) = user {
                        last.insert(u.clone(), account.id.clone());
                        rows.add_contact(st::ContactUpsert {
                            account_id: account.id.clone(),
                            id: u,
                            role: None,
                            email_domain: None,
                            name: None,
                        });
                    }
                    match rows.accounts.get_mut(&account.id) {
                        Some(a) => merge(a, account),
                        None => {
                            rows.accounts.insert(account.id.clone(), account);
                        }
                    }
                }
                Call::Identify { mut contact, group } => {
                    match group.or_else(|| last.get(&contact.id).cloned()) {
                        Some(g) => {
                            last.insert(contact.id.clone(), g.clone());
                            contact.account_id = g;
                            rows.add_contact(contact);
                        }
                        None => pending_contacts.push(contact),
                    }
                }
                Call::Track { mut event, group } => {
                    let known = event.user_id.as_ref().and_then(|u| last.get(u).cloned());
                    match group.or(known) {
                        Some(g) => {
                            event.account_id = g;
                            rows.events.push(event);
                        }
                        None if event.user_id.is_some() => pending_events.push(event),
                        None => rows.skipped += 1,
                    }
                }
                Call::Ignored => {}
            }
        }
        if pending_contacts.is_empty() && pending_events.is_empty() {
            return Ok(rows);
        }
        let users: Vec<&str> = pending_contacts
            .iter()
            .map(|c| c.id.as_str())
            .chain(pending_events.iter().filter_map(|e| e.user_id.as_deref()))
            .collect();
        let stored = self.service.last_account_of_users(&users).await?;
        for mut c in pending_contacts {
            match stored.get(&c.id) {
                Some(a) => {
                    c.account_id = a.clone();
                    rows.add_contact(c);
                }
                None => rows.skipped += 1,
            }
        }
        for mut e in pending_events {
            match e.user_id.as_ref().and_then(|u| stored.get(u)) {
                Some(a) => {
                    e.account_id = a.clone();
                    rows.events.push(e);
                }
                None => rows.skipped += 1,
            }
        }
        Ok(rows)
    }

    /// Validates, attributes and writes a request; the 200 answer once all committed.
    async fn handle(
        &self,
        auth: &HttpAuth,
        headers: &HeaderMap,
        body: Body,
        kind: Option<&str>,
    ) -> Result<Response, Failure> {
        authorize(auth, headers)?;
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            return Err(ApiError::ResourceExhausted(format!(
                "more than {MAX_IN_FLIGHT} Segment requests at once; retry later"
            ))
            .into());
        };
        let limit = if kind.is_none() {
            MAX_BATCH_BYTES
        } else {
            MAX_MESSAGE_BYTES
        };
        let body = read_body(headers, body, limit).await?;
        let calls = parse(&body, kind)?;
        let rows = self.attribute(calls).await?;
        let accounts = rows.accounts.len();
        if !rows.accounts.is_empty() {
            let accounts: Vec<_> = rows.accounts.into_values().collect();
            self.service.upsert_accounts(accounts, false).await?;
        }
        let contacts = rows.contacts.len();
        if !rows.contacts.is_empty() {
            let contacts = rows.contacts.into_values().collect();
            self.service.upsert_contacts(contacts).await?;
        }
        let written = if rows.events.is_empty() {
            st::EventsWritten::default()
        } else {
            self.service.write_events(rows.events).await?
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "success": true,
                "accounts": accounts,
                "contacts": contacts,
                "events": { "accepted": written.accepted, "duplicates": written.duplicates },
                "skipped": rows.skipped,
            }),
        ))
    }
}

async fn answer(
    s: &Segment,
    auth: &HttpAuth,
    headers: &HeaderMap,
    body: Body,
    kind: Option<&str>,
) -> Response {
    match s.handle(auth, headers, body, kind).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn batch(
    State(s): State<Segment>,
    axum::Extension(auth): axum::Extension<HttpAuth>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(&s, &auth, &headers, body, None).await
}

async fn identify(
    State(s): State<Segment>,
    axum::Extension(auth): axum::Extension<HttpAuth>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(&s, &auth, &headers, body, Some("identify")).await
}

async fn group(
    State(s): State<Segment>,
    axum::Extension(auth): axum::Extension<HttpAuth>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(&s, &auth, &headers, body, Some("group")).await
}

async fn track(
    State(s): State<Segment>,
    axum::Extension(auth): axum::Extension<HttpAuth>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(&s, &auth, &headers, body, Some("track")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_basic_and_bearer() {
        let mut h = HeaderMap::new();
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        h.insert(header::AUTHORIZATION, basic("wk:").parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("wk"));
        h.insert(header::AUTHORIZATION, basic(":wk").parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("wk"));
        h.insert(header::AUTHORIZATION, basic("wk").parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("wk"));
        h.insert(header::AUTHORIZATION, "Bearer tk".parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("tk"));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(token(&h), None);
        h.remove(header::AUTHORIZATION);
        assert_eq!(token(&h), None);
    }

    #[test]
    fn contacts_of_one_request_merge_field_by_field() {
        let c = |name: Option<&str>, role: Option<&str>| st::ContactUpsert {
            account_id: "acme".into(),
            id: "ann".into(),
            role: role.map(str::to_string),
            email_domain: None,
            name: name.map(str::to_string),
        };
        let mut rows = Rows::default();
        // identify (name), then group (no fields), then identify (role).
        rows.add_contact(c(Some("Ann"), None));
        rows.add_contact(c(None, None));
        rows.add_contact(c(None, Some("champion")));
        let merged: Vec<_> = rows.contacts.into_values().collect();
        assert_eq!(merged, vec![c(Some("Ann"), Some("champion"))]);
    }

    #[test]
    fn batch_errors_name_the_item() {
        let body = br#"{"batch":[{"type":"track","userId":"u","event":"x","messageId":"m"},
                                 {"type":"group","userId":"u"}]}"#;
        let Err(Failure(code, e)) = parse(body, None) else {
            panic!("refused")
        };
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(e.to_string(), "batch[1].groupId: is required");
        let Err(Failure(code, _)) = parse(b"{", None) else {
            panic!("refused")
        };
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let big = format!(
            r#"{{"batch":[{{"type":"track","userId":"u","event":"x","messageId":"m","properties":{{"p":"{}"}}}}]}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        let Err(Failure(code, _)) = parse(big.as_bytes(), None) else {
            panic!("refused")
        };
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
