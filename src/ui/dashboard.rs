//! The dashboard: one tile per management cluster and SU cluster (state as word,
//! symbol and colour, the reasons, the Cluster Manager), one per SE server with its
//! units' power and state (and simulated power off/on), the migrations in flight and
//! the unacknowledged events by priority. `live` renders the part the server-sent
//! events replace, so the first page and every update come from the same code.

use super::html::{badge, esc};
use super::session::Session;
use super::site::{in_flight, items, name, text, Site};
use crate::api::Kind;

/// The kinds the dashboard reads (never the VMs: it stays fast at 10,000 of them).
pub const KINDS: [Kind; 4] = [Kind::SEServer, Kind::ManagementCluster, Kind::SUCluster, Kind::LiveMigration];

fn reasons(v: &serde_json::Value) -> String {
    let r = items(v, "/status/reasons");
    if r.is_empty() {
        return String::new();
    }
    let li: String = r.iter().filter_map(|x| x.as_str()).map(|x| format!("<li>{}</li>", esc(x))).collect();
    format!("<ul class=\"reasons\" aria-label=\"Reasons\">{li}</ul>")
}

fn mc_tile(mc: &serde_json::Value) -> String {
    let n = name(mc);
    let cm = text(mc, "/status/clusterManager");
    let mus: String = items(mc, "/status/managementUnits")
        .iter()
        .map(|u| {
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(u, "/name")),
                esc(text(u, "/server")),
                badge(text(u, "/power")),
                esc(text(u, "/heartbeat"))
            )
        })
        .collect();
    let servers: Vec<&str> = items(mc, "/spec/servers").iter().filter_map(|s| s.as_str()).collect();
    format!(
        "<section class=\"tile\" id=\"mc-{id}\" aria-labelledby=\"mc-{id}-h\" data-state=\"{st}\">\
         <h3 id=\"mc-{id}-h\">Management cluster {n}</h3><p class=\"state\">{b}</p>\
         <p>Cluster Manager: <strong>{cm}</strong></p><p>Servers: {servers}</p>{r}\
         <table><caption class=\"sr\">Management units of {n}</caption>\
         <thead><tr><th scope=\"col\">MU</th><th scope=\"col\">Server</th><th scope=\"col\">Power</th><th scope=\"col\">Heartbeat</th></tr></thead>\
         <tbody>{mus}</tbody></table></section>",
        id = esc(n),
        n = esc(n),
        st = esc(text(mc, "/status/state")),
        b = badge(text(mc, "/status/state")),
        cm = if cm.is_empty() { "none".to_string() } else { esc(cm) },
        servers = esc(&servers.join(", ")),
        r = reasons(mc),
    )
}

fn suc_tile(suc: &serde_json::Value) -> String {
    let n = name(suc);
    let sus: String = items(suc, "/status/serverUnits")
        .iter()
        .map(|u| {
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(u, "/name")),
                esc(text(u, "/server")),
                badge(text(u, "/power")),
                badge(text(u, "/state"))
            )
        })
        .collect();
    format!(
        "<section class=\"tile\" id=\"suc-{id}\" aria-labelledby=\"suc-{id}-h\" data-state=\"{st}\">\
         <h3 id=\"suc-{id}-h\">SU cluster {n}</h3><p class=\"state\">{b}</p><p>Type: {ty}</p>{r}\
         <table><caption class=\"sr\">Server units of {n}</caption>\
         <thead><tr><th scope=\"col\">SU</th><th scope=\"col\">Server</th><th scope=\"col\">Power</th><th scope=\"col\">State</th></tr></thead>\
         <tbody>{sus}</tbody></table></section>",
        id = esc(n),
        n = esc(n),
        st = esc(text(suc, "/status/state")),
        b = badge(text(suc, "/status/state")),
        ty = esc(text(suc, "/status/suType")),
        r = reasons(suc),
    )
}

/// A POST form the script sends without leaving the page (it works without the
/// script too: the server answers with a redirect back).
pub fn action_form(action: &str, s: &Session, fields: &[(&str, &str)], label: &str, id: &str) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v)))
        .collect();
    let disabled = super::session::disabled_attr(&s.who);
    format!(
        "<form class=\"act\" method=\"post\" action=\"{}\" data-js>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}\
         <button type=\"submit\" id=\"{}\"{disabled}>{}</button></form>",
        esc(action),
        esc(&s.csrf),
        esc(id),
        esc(label)
    )
}

fn server_tile(se: &serde_json::Value, s: &Session) -> String {
    let n = name(se);
    let units: String = items(se, "/status/units")
        .iter()
        .map(|u| {
            let un = text(u, "/name");
            let on = text(u, "/power") == "ON";
            let (op, label) = if on { ("off", "Power off") } else { ("on", "Power on") };
            let form = action_form(
                "/ui/action/power",
                s,
                &[("unit", un), ("op", op)],
                &format!("{label} {un} (simulation)"),
                &format!("power-{op}-{un}"),
            );
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{form}</td></tr>",
                esc(un),
                esc(text(u, "/unitType")),
                badge(text(u, "/power")),
                badge(text(u, "/state"))
            )
        })
        .collect();
    format!(
        "<section class=\"tile wide\" id=\"se-{id}\" aria-labelledby=\"se-{id}-h\">\
         <h3 id=\"se-{id}-h\">SE server {n}</h3><p>{model}, {loc}</p>\
         <table><caption class=\"sr\">Units of {n}</caption>\
         <thead><tr><th scope=\"col\">Unit</th><th scope=\"col\">Type</th><th scope=\"col\">Power</th><th scope=\"col\">State</th><th scope=\"col\">Simulation</th></tr></thead>\
         <tbody>{units}</tbody></table></section>",
        id = esc(n),
        n = esc(n),
        model = esc(text(se, "/spec/model")),
        loc = esc(text(se, "/spec/location")),
    )
}

fn events_tile(site: &Site, s: &Session) -> String {
    let counts = site.unacknowledged();
    let total: usize = counts.iter().map(|(_, c)| c).sum();
    let rows: String = counts
        .iter()
        .map(|(p, c)| format!("<tr><th scope=\"row\">{}</th><td class=\"num\">{c}</td></tr>", badge(p)))
        .collect();
    let ack = action_form("/ui/action/ack", s, &[], "Acknowledge all events", "ack-all");
    format!(
        "<section class=\"tile\" id=\"events\" aria-labelledby=\"events-h\" data-unacknowledged=\"{total}\">\
         <h3 id=\"events-h\">Unacknowledged events: <span id=\"unack-total\">{total}</span></h3>\
         <table><caption class=\"sr\">Unacknowledged events by priority</caption>\
         <thead><tr><th scope=\"col\">Priority</th><th scope=\"col\">Count</th></tr></thead>\
         <tbody>{rows}</tbody></table>{ack}</section>"
    )
}

fn migrations_tile(site: &Site) -> String {
    let rows: String = site
        .lms
        .iter()
        .filter(|l| in_flight(l))
        .map(|l| {
            format!(
                "<li>{} {}: {} \u{2192} {}, round {}</li>",
                esc(name(l)),
                badge(text(l, "/status/phase")),
                esc(text(l, "/status/sourceServerUnit")),
                esc(text(l, "/status/targetServerUnit")),
                items(l, "/status/rounds").len()
            )
        })
        .collect();
    let body = if rows.is_empty() { "<p>None.</p>".to_string() } else { format!("<ul>{rows}</ul>") };
    format!(
        "<section class=\"tile\" id=\"migrations\" aria-labelledby=\"migrations-h\">\
         <h3 id=\"migrations-h\">Live migrations in flight</h3>{body}</section>"
    )
}

/// The part of the dashboard that live updates replace.
pub fn live(site: &Site, s: &Session) -> String {
    let mut out = String::from("<h2 class=\"sr\">Clusters</h2><div class=\"tiles\">");
    for mc in &site.mcs {
        out.push_str(&mc_tile(mc));
    }
    for suc in &site.sucs {
        out.push_str(&suc_tile(suc));
    }
    out.push_str(&events_tile(site, s));
    out.push_str(&migrations_tile(site));
    out.push_str("</div><h2 class=\"sr\">Servers</h2><div class=\"tiles\">");
    for se in &site.servers {
        out.push_str(&server_tile(se, s));
    }
    out.push_str("</div>");
    out
}
