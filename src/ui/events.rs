//! The event log (newest first, filtered by component and priority, 100 a page, with
//! *Acknowledge all*) and the GitOps sources of `serve --watch` with their state.
//! The log's page is live (the page a person chose, with its filter: new events
//! appear at its top); the sources page is not.

use super::dashboard::action_form;
use super::html::{badge, esc, urlencode};
use super::session::Session;
use super::site::PRIORITIES;
use super::{html_response, need_session, NoQuery};
use crate::server::api::AppState;
use crate::store::Event;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

/// Events per page.
pub const PAGE: usize = 100;

/// The filter (query parameters; any other is refused).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A component, or empty for all.
    #[serde(default)]
    pub component: String,
    /// A priority, or empty for all.
    #[serde(default)]
    pub priority: String,
    /// The page, from 1.
    #[serde(default)]
    pub page: Option<usize>,
}

fn select_box(id: &str, label: &str, values: &[String], chosen: &str) -> String {
    let mut o = String::from("<option value=\"\">any</option>");
    for v in values {
        let sel = if v == chosen { " selected" } else { "" };
        o.push_str(&format!("<option value=\"{0}\"{sel}>{0}</option>", esc(v)));
    }
    format!(
        "<label for=\"{id}\">{label}</label> <select id=\"{id}\" name=\"{id_name}\">{o}</select>",
        id_name = &id[2..]
    )
}

/// The filter form and *Acknowledge all* (outside the live region, so a choice being
/// made is never disturbed by an update).
pub fn form(events: &[Event], f: &Filter, s: &Session) -> String {
    let mut components: Vec<String> = events.iter().map(|e| e.component.clone()).collect();
    components.sort();
    components.dedup();
    let priorities: Vec<String> = PRIORITIES.iter().map(|p| p.to_string()).collect();
    let ack = action_form("/ui/action/ack", s, &[("back", "events")], "Acknowledge all events", "ack-all")
        .replace(" data-js", "");
    format!(
        "<form class=\"filter\" method=\"get\" action=\"/ui/events\" role=\"search\">{} {} \
         <button type=\"submit\" id=\"e-apply\">Filter</button> <a href=\"/ui/events\">Clear</a></form>{ack}",
        select_box("e-component", "Component", &components, &f.component),
        select_box("e-priority", "Priority", &priorities, &f.priority),
    )
}

fn tr(e: &Event) -> String {
    format!(
        "<tr data-ack=\"{}\" data-seq=\"{}\"><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        e.acknowledged,
        e.seq,
        e.seq,
        esc(&e.time),
        badge(&e.priority),
        esc(&e.component),
        esc(&e.object),
        esc(&e.reason),
        esc(&e.message),
        if e.acknowledged { "yes" } else { "no" }
    )
}

/// The live region: the count, the pager and one page of the log, newest first.
pub fn live(events: &[Event], f: &Filter) -> String {
    let matching: Vec<&Event> = events
        .iter()
        .rev()
        .filter(|e| {
            (f.component.is_empty() || e.component == f.component)
                && (f.priority.is_empty() || e.priority == f.priority)
        })
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let page = f.page.unwrap_or(1).clamp(1, pages);
    let rows: String = matching.iter().skip((page - 1) * PAGE).take(PAGE).map(|e| tr(e)).collect();
    let unacked = events.iter().filter(|e| !e.acknowledged).count();
    let nav =
        |p: usize, label: &str, rel: &str| format!("<a rel=\"{rel}\" href=\"/ui/events?{}\">{label}</a>", query(f, p));
    let prev = if page > 1 { nav(page - 1, "Previous page", "prev") } else { String::new() };
    let next = if page < pages { nav(page + 1, "Next page", "next") } else { String::new() };
    format!(
        "<p id=\"event-count\" data-matching=\"{n}\" data-unacknowledged=\"{unacked}\">{n} matching events, {unacked} unacknowledged in all; page {page} of {pages}.</p>\
         <nav class=\"pager\" aria-label=\"Pages\">{prev} {next}</nav>\
         <div class=\"scroll\"><table class=\"list\" id=\"event-table\"><caption class=\"sr\">Events, newest first</caption>\
         <thead><tr><th scope=\"col\">Seq</th><th scope=\"col\">Simulated time</th><th scope=\"col\">Priority</th><th scope=\"col\">Component</th>\
         <th scope=\"col\">Object</th><th scope=\"col\">Reason</th><th scope=\"col\">Message</th><th scope=\"col\">Ack</th></tr></thead>\
         <tbody>{rows}</tbody></table></div>",
        n = matching.len(),
    )
}

/// The filter and a page as a query string (for an attribute).
fn query(f: &Filter, page: usize) -> String {
    format!("component={}&amp;priority={}&amp;page={page}", urlencode(&f.component), urlencode(&f.priority))
}

/// The events page's body: the form, and the live region with its stream.
pub fn body(events: &[Event], f: &Filter, s: &Session) -> String {
    let stream = format!("view=events&amp;{}", query(f, f.page.unwrap_or(1)));
    format!("{}{}", form(events, f, s), super::live_region(&stream, &live(events, f)))
}

/// GET /ui/events.
pub async fn page(
    State(s): State<AppState>,
    query: Result<Query<Filter>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let f = match query {
        Ok(Query(f)) => f,
        Err(e) => return super::error_page(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let (_, sess) = match need_session(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let store = s.store.clone();
    let sess2 = sess.clone();
    match super::blocking(move || store.events().map(|ev| body(&ev, &f, &sess2))).await {
        Ok(Ok(b)) => html_response(StatusCode::OK, super::html::page("Events", "/ui/events", Some(&sess), &b)),
        Ok(Err(e)) => super::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(r) => r,
    }
}

fn sources_body(v: &Value) -> String {
    let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if items.is_empty() {
        return "<p>No watched files: <code>sectl serve</code> runs without <code>--watch DIR</code>, or the folder is empty.</p>"
            .into();
    }
    let s = |x: &Value, k: &str| x.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let rows: String = items
        .iter()
        .map(|x| {
            let objects = x["objects"].as_array().map(|o| o.len()).unwrap_or(0);
            let state = x["state"].as_str().map(str::to_string).unwrap_or_else(|| x["state"].to_string());
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"num\">{objects}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s(x, "file")),
                badge(&state),
                esc(&s(x, "revision")),
                esc(&s(x, "lastSync")),
                esc(&s(x, "message")),
            )
        })
        .collect();
    let prune = &v["prune"];
    let prune = if prune.is_null() {
        String::new()
    } else {
        format!(
            "<p>Prune: {} {}</p>",
            badge(prune["state"].as_str().unwrap_or("")),
            esc(prune["message"].as_str().unwrap_or(""))
        )
    };
    format!(
        "{prune}<div class=\"scroll\"><table class=\"list\" id=\"source-table\"><caption class=\"sr\">Watched files</caption>\
         <thead><tr><th scope=\"col\">File</th><th scope=\"col\">State</th><th scope=\"col\">Objects</th><th scope=\"col\">Revision</th>\
         <th scope=\"col\">Last sync</th><th scope=\"col\">Message</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

/// GET /ui/sources: the GitOps files and their state (`GET /sources` of the API).
pub async fn sources(
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
    // On an etcd standby the folder is the leader's: say so rather than show this
    // replica's idle view as if nothing were watched.
    let body = match crate::server::standby_refusal("the GitOps folder and its status") {
        Some(why) => format!("<p class=\"notice\" id=\"standby\">{}</p>", esc(&why)),
        None => sources_body(&s.sources.to_json()),
    };
    html_response(StatusCode::OK, super::html::page("GitOps sources", "/ui/sources", Some(&sess), &body))
}
