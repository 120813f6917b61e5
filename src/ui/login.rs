//! Logging in and out. The form's input is named `token` (the user's API token, as
//! `shared/API.md` fixes); a good token opens a session (`session::Sessions`) and
//! sets its cookie, a bad one shows the form again with the reason (401). Logging out
//! is a POST with the CSRF token, so another site cannot log a user out.

use super::html::{esc, page};
use super::{html_response, NoQuery};
use crate::server::api::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

fn form_page(status: StatusCode, error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "{err}<form class=\"login\" method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus \
         aria-describedby=\"token-help\">\
         <p id=\"token-help\" class=\"help\">The token of your user; for the administrator, the file \
         <code>{}</code> in the server's data directory.</p>\
         <button type=\"submit\">Log in</button></form>",
        crate::client::TOKEN_FILE
    );
    html_response(status, page("Log in", "", None, &body))
}

/// GET /ui/login: the form.
pub async fn form(query: Result<Query<NoQuery>, QueryRejection>) -> Response {
    if let Err(e) = query {
        return super::error_page(StatusCode::BAD_REQUEST, &e.body_text());
    }
    form_page(StatusCode::OK, None)
}

/// The login form's fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    /// The user's API token.
    pub token: String,
}

/// POST /ui/login: a good token opens a session.
pub async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !super::session::same_origin(&headers) {
        return form_page(StatusCode::FORBIDDEN, Some("This form was sent from another site; log in here."));
    }
    let Ok(Form(f)) = form else {
        return form_page(StatusCode::BAD_REQUEST, Some("Send the form with one field, token."));
    };
    let token = f.token.trim();
    if super::session::principal(&s, token).is_none() {
        return form_page(StatusCode::UNAUTHORIZED, Some("This token is not valid."));
    }
    let id = s.ui.open(token);
    let mut r = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&s.ui.set_cookie(&id)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The logout form's fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// POST /ui/logout: ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some((id, sess)) = s.ui.find(&s, &headers) else {
        return Redirect::to("/ui/login").into_response();
    };
    let ok = super::session::same_origin(&headers)
        && form.is_ok_and(|Form(f)| super::session::same(f.csrf.as_bytes(), sess.csrf.as_bytes()));
    if !ok {
        return super::error_page(
            StatusCode::FORBIDDEN,
            "Logging out needs the form of this site (CSRF check failed).",
        );
    }
    s.ui.close(&id);
    let mut r = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&s.ui.clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
