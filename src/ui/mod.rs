//! The web dashboard `sectl serve` serves at `/ui/`.
//!
//! Decision: server-rendered HTML plus one small hand-written script (`assets/app.js`)
//! and one style sheet, embedded in the binary with `include_str!`: no Node toolchain,
//! nothing fetched from elsewhere, works offline, one binary to ship. The server renders
//! every view (`dashboard`, `topology`, `vms`, `migrations`, `events`); live updates are server-sent events
//! (`stream`) fed from the store's watch that carry the same server-rendered HTML, so
//! the first paint and every update come from one code path and the script stays tiny
//! (replace a region, keep the keyboard focus, send forms with `fetch`).
//!
//! Access: a session cookie from the login form (`login`, `session`); actions
//! (`actions`) run through the same code as the REST API (`server::api`), guarded by
//! SameSite=Strict, a per-session CSRF token and an `Origin` check. A strict
//! Content-Security-Policy allows only the embedded script and style.

pub mod actions;
pub mod dashboard;
pub mod events;
pub mod html;
pub mod login;
pub mod migrations;
pub mod session;
pub mod site;
pub mod stream;
pub mod svg;
pub mod topology;
pub mod vm_table;
pub mod vms;

use crate::server::api::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

pub use session::Sessions;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The Content-Security-Policy of every page: only our own script, style and images.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page that takes no query parameters: any is refused, naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// The routes under `/ui`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(dashboard_page))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/topology", get(topology::page))
        .route("/ui/topology.svg", get(topology::svg_file))
        .route("/ui/migrations", get(migrations_page))
        .route("/ui/vms", get(vms::page))
        .route("/ui/events", get(events::page))
        .route("/ui/sources", get(events::sources))
        .route("/ui/stream", get(stream::stream))
        .route("/ui/action/power", post(actions::power))
        .route("/ui/action/ack", post(actions::ack))
        .route("/ui/action/migrate", post(actions::migrate))
        .route("/ui/action/cancel", post(actions::cancel))
        .route("/ui/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/ui/assets/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// An HTML answer with the security headers every page carries.
pub fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    r
}

/// The session of a page request, or the redirect to the login form.
pub fn need_session(s: &AppState, headers: &HeaderMap) -> Result<(String, session::Session), Redirect> {
    s.ui.find(s, headers).ok_or_else(|| Redirect::to("/ui/login"))
}

/// A failure as a page (for people) with a link back.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/ui/\">Back to the dashboard</a></p>",
        html::esc(message)
    );
    html_response(status, html::page("Error", "", None, &body))
}

/// Reads a view's data off the async threads (the store is synchronous).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("rendering failed: {e}")))
}

async fn dashboard_page(
    axum::extract::State(s): axum::extract::State<AppState>,
    query: Result<axum::extract::Query<NoQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = query {
        return error_page(StatusCode::BAD_REQUEST, &e.body_text());
    }
    let (_, sess) = match need_session(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let s2 = s.clone();
    let sess2 = sess.clone();
    let live = match blocking(move || stream::View::Dashboard.render(&s2, &sess2)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(r) => return r,
    };
    let body = live_region("view=dashboard", &live);
    html_response(StatusCode::OK, html::page("Dashboard", "/ui/", Some(&sess), &body))
}

async fn migrations_page(
    axum::extract::State(s): axum::extract::State<AppState>,
    query: Result<axum::extract::Query<NoQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = query {
        return error_page(StatusCode::BAD_REQUEST, &e.body_text());
    }
    let (_, sess) = match need_session(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let (s2, sess2) = (s.clone(), sess.clone());
    let live = match blocking(move || stream::View::Migrations.render(&s2, &sess2)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(r) => return r,
    };
    let body = format!("{}{}", migrations::form(&sess), live_region("view=migrations", &live));
    html_response(StatusCode::OK, html::page("Live migrations", "/ui/migrations", Some(&sess), &body))
}

/// A view's live region as first sent, with the stream that keeps it current. The
/// stream is told the digest of what the page already shows, so it sends only changes
/// (no needless replacement of the region, which would move a screen reader or eat a
/// click). `query` names the view and its filter (`view=vms&amp;name=...`), ready
/// for an attribute.
pub fn live_region(query: &str, html: &str) -> String {
    format!("<div id=\"live\" data-stream=\"/ui/stream?{query}&amp;shown={:016x}\">{html}</div>", stream::digest(html))
}
