//! The VM list: every VMDefinition with its state, substates, SU (where it is now),
//! memory, CPUs and LIVE-MIG-COUNT, filtered by name (part of the object or VM
//! name), state, SU and a label selector (`env=prod`, the API's `labelSelector`
//! syntax), paged on the server (`PAGE` rows), so 10,000 VMs send one page of HTML.
//!
//! Trade-offs: the filter runs over the prepared rows of `vm_table` (kept current
//! from the store's watch; no index: a scan of 10,000 rows is a few milliseconds) and
//! the page is a GET form, so a filtered page is a link that can be bookmarked. The
//! count, pager and table are a live region: the page's stream (`stream`, view
//! `vms` with the filter and page) replaces them when the rows change.

use super::html::{badge, esc, urlencode};
use super::vm_table::Row;
use super::{html_response, need_session};
use crate::server::api::AppState;
use crate::server::selector::Selector;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

/// Rows per page.
pub const PAGE: usize = 100;
/// The states a VM can report, for the filter.
const STATES: [&str; 5] = ["DEFINED_ONLY", "INIT_ONLY", "RUNNING", "DOWN", "WAIT"];

/// The filter (query parameters; any other is refused).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Part of the object name or the VM name (case-insensitive).
    #[serde(default)]
    pub name: String,
    /// A state, or empty for all.
    #[serde(default)]
    pub state: String,
    /// An SU, or empty for all.
    #[serde(default)]
    pub su: String,
    /// A label selector.
    #[serde(default)]
    pub label: String,
    /// The page, from 1.
    #[serde(default)]
    pub page: Option<usize>,
}

/// The rows that pass the filter, and all SUs seen (for the SU choice).
fn select<'a>(all: &'a [Arc<Row>], f: &Filter, sel: &Selector) -> (Vec<&'a Row>, Vec<String>) {
    let needle = f.name.trim().to_lowercase();
    let mut sus = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for row in all {
        sus.insert(row.su.as_str());
        let name_ok = needle.is_empty() || row.name.contains(&needle) || row.vm_name_lc.contains(&needle);
        if name_ok
            && (f.state.is_empty() || row.state == f.state)
            && (f.su.is_empty() || row.su == f.su)
            && (sel.is_empty() || sel.matches(&row.obj))
        {
            out.push(row.as_ref());
        }
    }
    (out, sus.into_iter().map(str::to_string).collect())
}

fn options(values: &[String], chosen: &str, all: &str) -> String {
    let mut o = format!("<option value=\"\">{all}</option>");
    for v in values {
        let sel = if v == chosen { " selected" } else { "" };
        o.push_str(&format!("<option value=\"{0}\"{sel}>{0}</option>", esc(v)));
    }
    o
}

fn link(f: &Filter, page: usize) -> String {
    let q = [("name", &f.name), ("state", &f.state), ("su", &f.su), ("label", &f.label)]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .chain(std::iter::once(format!("page={page}")))
        .collect::<Vec<_>>()
        .join("&amp;");
    format!("/ui/vms?{q}")
}

/// The filter form (outside the live region, so typing is never disturbed).
fn form(f: &Filter, sus: &[String]) -> String {
    let states: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
    format!(
        "<form class=\"filter\" method=\"get\" action=\"/ui/vms\" role=\"search\">\
         <label for=\"f-name\">Name</label> <input id=\"f-name\" name=\"name\" value=\"{}\"> \
         <label for=\"f-state\">State</label> <select id=\"f-state\" name=\"state\">{}</select> \
         <label for=\"f-su\">SU</label> <select id=\"f-su\" name=\"su\">{}</select> \
         <label for=\"f-label\">Labels</label> <input id=\"f-label\" name=\"label\" value=\"{}\" placeholder=\"env=prod\"> \
         <button type=\"submit\" id=\"f-apply\">Filter</button> <a href=\"/ui/vms\">Clear</a></form>",
        esc(&f.name),
        options(&states, &f.state, "any"),
        options(sus, &f.su, "any"),
        esc(&f.label),
    )
}

fn tr(r: &Row) -> String {
    format!(
        "<tr id=\"vm-{}\" data-state=\"{}\"><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        esc(&r.name),
        esc(&r.state),
        esc(&r.name),
        esc(&r.vm_name),
        esc(&r.su),
        badge(&r.state),
        esc(&r.substates),
        r.memory,
        r.cpus,
        r.lm_count,
        esc(&r.labels)
    )
}

/// The live region for a filter over the rows: the count, the pager and one page of
/// the table (or the selector's error).
fn live(all: &[Arc<Row>], f: &Filter, sel: &Result<Selector, String>) -> (String, Vec<String>) {
    let (rows, sus) = match sel {
        Ok(sel) => select(all, f, sel),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let error = match sel {
        Err(e) => format!("<p class=\"error\" role=\"alert\">Label selector: {}</p>", esc(e)),
        Ok(_) => String::new(),
    };
    let pages = rows.len().div_ceil(PAGE).max(1);
    let page = f.page.unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * PAGE;
    let shown = &rows[first.min(rows.len())..(first + PAGE).min(rows.len())];
    let trs: String = shown.iter().map(|r| tr(r)).collect();
    let prev = if page > 1 {
        format!("<a href=\"{}\" rel=\"prev\">Previous page</a>", link(f, page - 1))
    } else {
        String::new()
    };
    let next = if page < pages {
        format!("<a href=\"{}\" rel=\"next\">Next page</a>", link(f, page + 1))
    } else {
        String::new()
    };
    let (from, to) = if shown.is_empty() { (0, 0) } else { (first + 1, first + shown.len()) };
    let html = format!(
        "{error}<p id=\"vm-count\" data-matching=\"{n}\" data-total=\"{total}\">VMs {from}\u{2013}{to} of {n} matching ({total} in all), page {page} of {pages}.</p>\
         <nav class=\"pager\" aria-label=\"Pages\">{prev} {next}</nav>\
         <div class=\"scroll\"><table class=\"list\" id=\"vm-table\"><caption class=\"sr\">VM definitions</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">VM name</th><th scope=\"col\">SU</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Substates</th><th scope=\"col\">Memory (MiB)</th><th scope=\"col\">CPUs</th><th scope=\"col\">LIVE-MIG-COUNT</th>\
         <th scope=\"col\">Labels</th></tr></thead><tbody>{trs}</tbody></table></div>",
        n = rows.len(),
        total = all.len(),
    );
    (html, sus)
}

/// The live region of the VM list for a filter, from the table (blocking: waits for
/// the table's first list).
pub fn render_live(s: &AppState, f: &Filter) -> Result<String, String> {
    render(s, f).map(|(live, _)| live)
}

fn render(s: &AppState, f: &Filter) -> Result<(String, Vec<String>), String> {
    s.ui.vms.ensure_loaded(s.store.as_ref()).map_err(|e| e.to_string())?;
    let (all, _) = s.ui.vms.rows();
    let sel = Selector::parse(Some(&f.label), None);
    Ok(live(&all, f, &sel))
}

/// The stream's query for a filter (`view=vms&...`), as an attribute value.
pub fn stream_query(f: &Filter) -> String {
    link(f, f.page.unwrap_or(1)).replacen("/ui/vms?", "view=vms&amp;", 1)
}

/// GET /ui/vms.
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
    super::vm_table::follow(&s);
    let (s2, f2) = (s.clone(), f.clone());
    match super::blocking(move || render(&s2, &f2)).await {
        Ok(Ok((live, sus))) => {
            let b = format!("{}{}", form(&f, &sus), super::live_region(&stream_query(&f), &live));
            html_response(StatusCode::OK, super::html::page("VMs", "/ui/vms", Some(&sess), &b))
        }
        Ok(Err(e)) => super::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(r) => r,
    }
}
