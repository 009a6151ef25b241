//! The read-only web UI under `/ui/`, served on the gRPC port (see
//! `vitals_server::GrpcServer::http`) by the scoring service, alone or in the all-in-one.
//!
//! Pages: the portfolio ([`portfolio`]), the accounts most at risk ([`risk`]), one
//! account ([`account`]) and the learner's models ([`model`]); HTML rendered on the
//! server with maud (every value escaped), charts as SVG drawn here ([`svg`]), inline
//! CSS ([`layout`]), no script at all. Sign-in ([`auth`]): the API's tokens, kept in an
//! HttpOnly, SameSite=Strict cookie; nothing else changes state. Every page reads
//! aggregates or a bounded number of rows (see `vitals_store::scoring::overview`).
//! What each page shows: docs/ui.md.

mod account;
mod auth;
mod layout;
mod model;
mod portfolio;
mod risk;
mod svg;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use vitals_server::{ApiError, HttpAuth};

use crate::{Inner, ScoringError, ScoringService};
use layout::Nav;

/// What every page handler gets.
pub(crate) struct UiState {
    pub(crate) inner: Arc<Inner>,
    /// Whether the sign-in cookie is `Secure` (the server speaks TLS).
    pub(crate) secure: bool,
}

type Ui = State<Arc<UiState>>;

/// The web UI's routes (every path under `/ui`) over `service`'s store; `secure`: the
/// server speaks TLS, so the sign-in cookie is marked `Secure`.
pub fn router(service: &ScoringService, secure: bool) -> Router {
    let state = Arc::new(UiState {
        inner: service.inner.clone(),
        secure,
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(portfolio::page))
        .route("/ui/risk", get(risk::page))
        .route("/ui/accounts/{id}", get(account::page))
        .route("/ui/model", get(model::page))
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/{*rest}", get(not_found))
        .with_state(state)
}

/// A failure of a page, shown as a page with its status.
#[derive(Debug)]
pub(crate) enum UiError {
    /// A query parameter is invalid: 400 naming it.
    Param { field: String, message: String },
    /// What the page is about does not exist: 404.
    NotFound(String),
    /// The database cannot be reached: 503.
    Unavailable(String),
    /// Anything else: 500, details logged only.
    Internal(String),
}

impl UiError {
    pub(crate) fn param(field: &str, message: impl Into<String>) -> Self {
        Self::Param {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument { field, message } => Self::Param { field, message },
            ApiError::NotFound(what) => Self::NotFound(what),
            ApiError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ScoringError> for UiError {
    fn from(e: ScoringError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<vitals_store::StoreError> for UiError {
    fn from(e: vitals_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl UiError {
    fn response(self, who: Option<&str>) -> Response {
        let (status, title, text) = match self {
            Self::Param { field, message } => (
                StatusCode::BAD_REQUEST,
                "Bad request",
                format!("{field}: {message}"),
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "Not found",
                format!("{what} not found"),
            ),
            Self::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                format!("the database cannot be reached: {m}"),
            ),
            Self::Internal(m) => {
                tracing::warn!(error = %m, "web UI page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    "internal error (see the server's log)".to_owned(),
                )
            }
        };
        let body = html! { h1 { (title) } p.error { (text) } p { a href="/ui/" { "Back to the portfolio" } } };
        html_response(status, layout::page(title, Nav::None, who, body))
    }
}

/// An HTML answer: no caching (the pages hold customer data), no script allowed, no
/// framing, no content sniffing.
pub(crate) fn html_response(status: StatusCode, page: Markup) -> Response {
    let mut resp = (status, page.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Renders a page for a signed-in reader: redirects to the sign-in page when auth is on
/// and the request has no valid cookie; else `render(who)` as the page, or its error.
pub(crate) async fn guarded<F, Fut>(auth: &HttpAuth, headers: &HeaderMap, render: F) -> Response
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Markup, UiError>>,
{
    let who = match auth::signed_in(auth, headers) {
        Ok(who) => who,
        Err(not_signed_in) => return not_signed_in.redirect(),
    };
    match render(who.clone()).await {
        Ok(page) => html_response(StatusCode::OK, page),
        Err(e) => e.response(who.as_deref()),
    }
}

async fn not_found(Extension(auth): Extension<HttpAuth>, headers: HeaderMap) -> Response {
    guarded(&auth, &headers, |_| async {
        Err::<Markup, _>(UiError::NotFound("page".into()))
    })
    .await
}

/// The query parameters of a page (unknown ones are ignored; empty values are unset).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn from_query(Query(q): Query<Vec<(String, String)>>) -> Self {
        Self(q)
    }

    /// The first non-empty value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Every non-empty value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// A profile id given as `name` (at most 200 characters).
    pub(crate) fn profile(&self, name: &str) -> Result<Option<String>, UiError> {
        match self.get(name) {
            None => Ok(None),
            Some(p) if p.chars().count() > 200 => {
                Err(UiError::param(name, "longer than 200 characters"))
            }
            Some(p) => Ok(Some(p.strip_prefix("profiles/").unwrap_or(p).to_owned())),
        }
    }
}

/// `s` percent-encoded for one URL path segment or query value.
pub(crate) fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_path("acc-1_x.y~"), "acc-1_x.y~");
        assert_eq!(encode_path("a/b c<é>"), "a%2Fb%20c%3C%C3%A9%3E");
    }

    #[test]
    fn params_ignore_empty_values_and_strip_the_profile_prefix() {
        let p = Params(vec![
            ("band".into(), "".into()),
            ("band".into(), "red".into()),
            ("profile".into(), "profiles/smb".into()),
        ]);
        assert_eq!(p.get("band"), Some("red"));
        assert_eq!(p.all("band"), ["red"]);
        assert_eq!(p.profile("profile").unwrap().as_deref(), Some("smb"));
        assert_eq!(p.profile("none").unwrap(), None);
        let long = Params(vec![("profile".into(), "x".repeat(201))]);
        assert!(matches!(
            long.profile("profile"),
            Err(UiError::Param { .. })
        ));
    }
}
