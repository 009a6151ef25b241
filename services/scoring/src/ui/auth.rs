//! Sign-in to the web UI: the API's own tokens (any role: each includes `read`), entered
//! once on `/ui/login` (a form POST) and kept in a cookie.
//!
//! The cookie (`vitals_ui`) holds the token itself, base64url-encoded (a cookie-safe
//! form, not a secret): `HttpOnly` (no script can read it, and the pages run none),
//! `SameSite=Strict` (no other site can make the browser send it), `Path=/ui`,
//! `Secure` when the server speaks TLS, for 12 hours. Every request checks it against
//! the server's token table, so a revoked or rotated token stops working at once, and
//! any replica of the service accepts it (no session state on the server). With auth
//! off there is no sign-in: every page is served.

use axum::Form;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;
use vitals_server::HttpAuth;

use super::layout::{self, Nav};
use super::{Ui, html_response};

/// The cookie's name.
pub(crate) const COOKIE: &str = "vitals_ui";
/// How long the cookie lasts, in seconds (12 hours).
pub(crate) const COOKIE_MAX_AGE_SECS: u64 = 12 * 3600;
/// Longest token accepted by the form (a longer one is refused with 400).
pub(crate) const MAX_TOKEN_BYTES: usize = 4096;

/// The token of the request's sign-in cookie, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| URL_SAFE_NO_PAD.decode(value.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// A request without a valid sign-in cookie (auth on).
#[derive(Debug)]
pub(crate) struct NotSignedIn;

impl NotSignedIn {
    /// The answer: to the sign-in page.
    pub(crate) fn redirect(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

/// Who is signed in: `Ok(None)` with auth off, `Ok(Some(label))` for a valid cookie.
pub(crate) fn signed_in(
    auth: &HttpAuth,
    headers: &HeaderMap,
) -> Result<Option<String>, NotSignedIn> {
    if !auth.is_on() {
        return Ok(None);
    }
    let token = cookie_token(headers);
    match auth.identify(token.as_deref()) {
        Some(p) => Ok(Some(format!("{} ({})", p.label, p.role.as_str()))),
        None => Err(NotSignedIn),
    }
}

fn form_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        div.login.card {
            h1 { "Sign in to Vitals" }
            p.muted { "Enter an API token (any role). It is kept in a cookie of this browser for 12 hours." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/ui/login" {
                p {
                    label for="token" { "Token" }
                    input id="token" name="token" type="password" autocomplete="current-password" required;
                }
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    html_response(status, layout::page("Sign in", Nav::None, None, body))
}

/// GET /ui/login: the form (with auth off, straight to the portfolio).
pub(crate) async fn login_form(Extension(auth): Extension<HttpAuth>) -> Response {
    if !auth.is_on() {
        return Redirect::to("/ui/").into_response();
    }
    form_page(StatusCode::OK, None)
}

/// The form's fields.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// POST /ui/login: sets the cookie for a valid token and goes to the portfolio; a wrong
/// token gets the form again with 401.
pub(crate) async fn login(
    State(ui): Ui,
    Extension(auth): Extension<HttpAuth>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !auth.is_on() {
        return Redirect::to("/ui/").into_response();
    }
    let token = form.token.trim();
    if token.is_empty() {
        return form_page(StatusCode::BAD_REQUEST, Some("token: required"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return form_page(
            StatusCode::BAD_REQUEST,
            Some("token: longer than 4096 bytes"),
        );
    }
    if auth.identify(Some(token)).is_none() {
        return form_page(StatusCode::UNAUTHORIZED, Some("token: not accepted"));
    }
    let secure = if ui.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECS}{secure}",
        URL_SAFE_NO_PAD.encode(token)
    );
    let mut resp = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// POST /ui/logout: removes the cookie.
pub(crate) async fn logout(State(ui): Ui) -> Response {
    let secure = if ui.secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_decoded() {
        let mut h = HeaderMap::new();
        let v = format!("a=1; {COOKIE}={}; b=2", URL_SAFE_NO_PAD.encode("tok;en=x"));
        h.insert(header::COOKIE, HeaderValue::from_str(&v).unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some("tok;en=x"));
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, HeaderValue::from_static("vitals_ui=***"));
        assert_eq!(cookie_token(&bad), None);
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
