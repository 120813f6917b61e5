//! The VM list: every VMDefinition with its state, substates, SU (where it is now),
//! memory, CPUs and LIVE-MIG-COUNT, filtered by name (part of the object or VM
//! name), state, SU and a label selector (`env=prod`, the API's `labelSelector`
//! syntax), paged on the server (`PAGE` rows), so 10,000 VMs send one page of HTML.
//!
//! Trade-offs: the filter reads the typed objects from one store list per request
//! (no index; at 10,000 VMs that is the cost measured in the README) and the page is
//! a GET form, so a filtered page is a link that can be bookmarked. The list does not
//! update live (the dashboard and migrations do); reload or filter again.

use super::html::{badge, esc};
use super::{html_response, need_session};
use crate::api::{Resource, VMDefinitionSpec};
use crate::server::api::AppState;
use crate::server::selector::Selector;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

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

/// One row.
struct Row {
    name: String,
    vm_name: String,
    su: String,
    state: String,
    substates: String,
    memory: u64,
    cpus: u64,
    lm_count: u32,
    labels: String,
}

fn row(r: &Resource) -> Option<Row> {
    let o = r.as_typed::<VMDefinitionSpec>()?;
    let su = o.status.server_unit.clone().unwrap_or_else(|| o.spec.server_unit.to_string());
    Some(Row {
        name: o.metadata.name.to_string(),
        vm_name: o.spec.vm_name.to_string(),
        su,
        state: o.status.state.map(|s| s.to_string()).unwrap_or_default(),
        substates: o.status.substates.join(", "),
        memory: o.spec.memory_mi_b.get(),
        cpus: u64::from(o.spec.cpus.get()),
        lm_count: o.status.live_migration_count,
        labels: o.metadata.labels.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
    })
}

/// The rows that pass the filter, and all SUs seen (for the SU choice).
fn select(all: &[Resource], f: &Filter, sel: &Selector) -> (Vec<Row>, Vec<String>) {
    let needle = f.name.trim().to_lowercase();
    let mut sus = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in all {
        let Some(row) = row(r) else { continue };
        sus.insert(row.su.clone());
        let name_ok = needle.is_empty() || row.name.contains(&needle) || row.vm_name.to_lowercase().contains(&needle);
        if name_ok
            && (f.state.is_empty() || row.state == f.state)
            && (f.su.is_empty() || row.su == f.su)
            && (sel.is_empty() || sel.matches(r))
        {
            out.push(row);
        }
    }
    (out, sus.into_iter().collect())
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

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The page body for a filter over all VMDefinitions (or the selector's error).
pub fn body(all: &[Resource], f: &Filter) -> String {
    let sel = Selector::parse(Some(&f.label), None);
    let (rows, sus) = match &sel {
        Ok(sel) => select(all, f, sel),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let error = match &sel {
        Err(e) => format!("<p class=\"error\" role=\"alert\">Label selector: {}</p>", esc(e)),
        Ok(_) => String::new(),
    };
    let pages = rows.len().div_ceil(PAGE).max(1);
    let page = f.page.unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * PAGE;
    let shown = &rows[first.min(rows.len())..(first + PAGE).min(rows.len())];
    let trs: String = shown
        .iter()
        .map(|r| {
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
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
        })
        .collect();
    let states: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
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
    format!(
        "<form class=\"filter\" method=\"get\" action=\"/ui/vms\" role=\"search\">\
         <label for=\"f-name\">Name</label> <input id=\"f-name\" name=\"name\" value=\"{}\"> \
         <label for=\"f-state\">State</label> <select id=\"f-state\" name=\"state\">{}</select> \
         <label for=\"f-su\">SU</label> <select id=\"f-su\" name=\"su\">{}</select> \
         <label for=\"f-label\">Labels</label> <input id=\"f-label\" name=\"label\" value=\"{}\" placeholder=\"env=prod\"> \
         <button type=\"submit\" id=\"f-apply\">Filter</button> <a href=\"/ui/vms\">Clear</a></form>{error}\
         <p id=\"vm-count\" data-matching=\"{}\" data-total=\"{}\">VMs {from}\u{2013}{to} of {} matching ({} in all), page {page} of {pages}.</p>\
         <nav class=\"pager\" aria-label=\"Pages\">{prev} {next}</nav>\
         <div class=\"scroll\"><table class=\"list\" id=\"vm-table\"><caption class=\"sr\">VM definitions</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">VM name</th><th scope=\"col\">SU</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Substates</th><th scope=\"col\">Memory (MiB)</th><th scope=\"col\">CPUs</th><th scope=\"col\">LIVE-MIG-COUNT</th>\
         <th scope=\"col\">Labels</th></tr></thead><tbody>{trs}</tbody></table></div>",
        esc(&f.name),
        options(&states, &f.state, "any"),
        options(&sus, &f.su, "any"),
        esc(&f.label),
        rows.len(),
        all.len(),
        rows.len(),
        all.len(),
    )
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
    let store = s.store.clone();
    let html = super::blocking(move || store.list(crate::api::Kind::VMDefinition).map(|(all, _)| body(&all, &f))).await;
    match html {
        Ok(Ok(b)) => html_response(StatusCode::OK, super::html::page("VMs", "/ui/vms", Some(&sess), &b)),
        Ok(Err(e)) => super::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(r) => r,
    }
}
