//! The topology view: the picture of `svg::topology`, live, and as a file
//! (`/ui/topology.svg`, the same bytes `sectl plot topology` writes).

use super::site::Site;
use super::{html, html_response, need_session, NoQuery};
use crate::api::Kind;
use crate::server::api::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The kinds the picture reads.
pub const KINDS: [Kind; 5] =
    [Kind::SEServer, Kind::ManagementCluster, Kind::SUCluster, Kind::VMDefinition, Kind::LiveMigration];

/// The live region: the picture in a scrollable figure (a wide site scrolls inside
/// it, never the page).
pub fn live(site: &Site) -> String {
    format!(
        "<figure class=\"picture\" tabindex=\"0\" aria-label=\"Topology picture (scrolls)\">{}</figure>",
        super::svg::topology(site)
    )
}

/// GET /ui/topology.
pub async fn page(
    State(s): State<AppState>,
    query: Result<Query<NoQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = query {
        return super::error_page(StatusCode::BAD_REQUEST, &e.body_text());
    }
    let (_, sess) = match need_session(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let (s2, sess2) = (s.clone(), sess.clone());
    let live = match super::blocking(move || super::stream::View::Topology.render(&s2, &sess2)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return super::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(r) => return r,
    };
    let body = format!(
        "<p><a href=\"/ui/topology.svg\" download=\"site.svg\">Download as SVG</a> \
         (the same picture as <code>sectl plot topology -o site.svg</code>)</p>\
         {}",
        super::live_region("view=topology", &live)
    );
    html_response(StatusCode::OK, html::page("Topology", "/ui/topology", Some(&sess), &body))
}

/// GET /ui/topology.svg: the picture alone.
pub async fn svg_file(
    State(s): State<AppState>,
    query: Result<Query<NoQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = query {
        return super::error_page(StatusCode::BAD_REQUEST, &e.body_text());
    }
    if let Err(r) = need_session(&s, &headers) {
        return r.into_response();
    }
    let store = s.store.clone();
    let site = super::blocking(move || Site::load(&KINDS, |k| store.list(k).map(|(v, _)| v), None)).await;
    match site {
        Ok(Ok(site)) => {
            let mut r = super::svg::topology(&site).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(Err(e)) => super::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(r) => r,
    }
}
