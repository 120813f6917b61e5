//! Live updates as server-sent events (`GET /ui/stream?view=dashboard|topology|migrations`,
//! `view=vms` with the VM list's filter and page, `view=events` with the event log's).
//!
//! A task per open page waits on the store's watch (`Store::subscribe`, which moves
//! with every committed change), lets a burst settle for `SETTLE`, renders the view's
//! live region and sends it as one `update` event when it differs from the last one
//! sent. Events acknowledged or the clock moving change no object, so the task also
//! renders every `RECHECK`. Each event's id is the digest of the region it carries;
//! the page tells the stream the digest of what it shows (`shown`), and a reconnecting
//! browser sends the last id (`Last-Event-ID`), so only real changes are sent. It ends when the page goes away, the session ends (the
//! page then reloads to the login form) or the server shuts down. No polling by the
//! browser and no reloads.

use super::session::Session;
use super::site::Site;
use crate::api::Kind;
use crate::server::api::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;

/// How long a burst of store changes may settle before one render.
pub const SETTLE: Duration = Duration::from_millis(100);
/// Render at least this often (changes that are no object: acknowledgements).
pub const RECHECK: Duration = Duration::from_secs(1);

/// A view with a live region.
#[derive(Debug, Clone)]
pub enum View {
    /// The tiles.
    Dashboard,
    /// The topology picture.
    Topology,
    /// The migrations and their charts.
    Migrations,
    /// One page of the VM list, filtered.
    Vms(super::vms::Filter),
    /// One page of the event log, filtered.
    Events(super::events::Filter),
}

impl View {
    /// The view a stream's query names, with its filter; a filter field the view does
    /// not have is refused.
    fn parse(q: StreamQuery) -> Result<View, String> {
        let vm_filter = q.name.is_some() || q.state.is_some() || q.su.is_some() || q.label.is_some();
        let event_filter = q.component.is_some() || q.priority.is_some();
        let plain = !vm_filter && !event_filter && q.page.is_none();
        match q.view.as_str() {
            "dashboard" if plain => Ok(View::Dashboard),
            "topology" if plain => Ok(View::Topology),
            "migrations" if plain => Ok(View::Migrations),
            "vms" if !event_filter => Ok(View::Vms(super::vms::Filter {
                name: q.name.unwrap_or_default(),
                state: q.state.unwrap_or_default(),
                su: q.su.unwrap_or_default(),
                label: q.label.unwrap_or_default(),
                page: q.page,
            })),
            "events" if !vm_filter => Ok(View::Events(super::events::Filter {
                component: q.component.unwrap_or_default(),
                priority: q.priority.unwrap_or_default(),
                page: q.page,
            })),
            "dashboard" | "topology" | "migrations" | "vms" | "events" => {
                Err(format!("view {}: a filter parameter that view does not have", q.view))
            }
            v => Err(format!("view {v:?}: expected dashboard, topology, migrations, vms or events")),
        }
    }

    /// The view's live region now (blocking: reads the store).
    pub fn render(&self, s: &AppState, sess: &Session) -> Result<String, String> {
        let store = s.store.clone();
        let list = |k: Kind| store.list(k).map(|(v, _)| v);
        match self {
            View::Dashboard => {
                let events = store.events().map_err(|e| e.to_string())?;
                let site = Site::load(&super::dashboard::KINDS, list, Some(events)).map_err(|e| e.to_string())?;
                Ok(super::dashboard::live(&site, sess))
            }
            View::Topology => {
                let site = Site::load(&super::topology::KINDS, list, None).map_err(|e| e.to_string())?;
                Ok(super::topology::live(&site))
            }
            View::Migrations => {
                let site = Site::load(&super::migrations::KINDS, list, None).map_err(|e| e.to_string())?;
                Ok(super::migrations::live(&site, sess))
            }
            View::Vms(f) => super::vms::render_live(s, f),
            View::Events(f) => {
                let events = store.events().map_err(|e| e.to_string())?;
                Ok(super::events::live(&events, f))
            }
        }
    }
}

/// The stream's query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// `dashboard`, `topology`, `migrations`, `vms` or `events`.
    pub view: String,
    /// The digest (`digest`, 16 hex digits) of the region the page shows already.
    #[serde(default)]
    pub shown: Option<String>,
    /// VM list: part of the name.
    #[serde(default)]
    pub name: Option<String>,
    /// VM list: the state.
    #[serde(default)]
    pub state: Option<String>,
    /// VM list: the SU.
    #[serde(default)]
    pub su: Option<String>,
    /// VM list: the label selector.
    #[serde(default)]
    pub label: Option<String>,
    /// Event log: the component.
    #[serde(default)]
    pub component: Option<String>,
    /// Event log: the priority.
    #[serde(default)]
    pub priority: Option<String>,
    /// VM list or event log: the page.
    #[serde(default)]
    pub page: Option<usize>,
}

/// A digest of a rendered region (not for security: tells "the same" from "changed").
pub fn digest(html: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    html.hash(&mut h);
    h.finish()
}

/// GET /ui/stream: the live region of a view, as it changes.
pub async fn stream(
    State(s): State<AppState>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some((id, _)) = s.ui.find(&s, &headers) else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    // A reconnecting EventSource says what it has (the id of the last event, which
    // is the digest of what it carried); a new one has the page's region.
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let given = last_id.or_else(|| query.as_ref().ok().and_then(|q| q.shown.clone()));
    let shown = match given.map(|h| u64::from_str_radix(&h, 16)) {
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "shown: expected 16 hex digits").into_response(),
        Some(Ok(h)) => Some(h),
        None => None,
    };
    let view = match query.map(|Query(q)| View::parse(q)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    if matches!(view, View::Vms(_)) {
        super::vm_table::follow(&s);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(4);
    tokio::spawn(run(s, id, view, shown, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, std::convert::Infallible>(e), rx))
    });
    Sse::new(body).keep_alive(KeepAlive::default()).into_response()
}

async fn run(s: AppState, id: String, view: View, shown: Option<u64>, tx: tokio::sync::mpsc::Sender<Event>) {
    let mut changes = s.store.subscribe();
    let mut stop = s.stop.clone();
    // What the page shows: given by the page, then what was sent last.
    let mut last = shown;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(sess) = s.ui.by_id(&s, &id) else { break };
        let (s2, v2) = (s.clone(), view.clone());
        let html = match tokio::task::spawn_blocking(move || v2.render(&s2, &sess)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!("dashboard stream: {e}");
                String::new()
            }
            Err(_) => break,
        };
        let d = digest(&html);
        if !html.is_empty() && last != Some(d) {
            if tx.send(Event::default().event("update").id(format!("{d:016x}")).data(html)).await.is_err() {
                break;
            }
            last = Some(d);
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() { break; }
                tokio::time::sleep(SETTLE).await;
            }
            _ = tokio::time::sleep(RECHECK) => {}
            _ = stop.changed() => break,
            _ = tx.closed() => break,
        }
    }
}
