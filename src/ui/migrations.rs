//! The migrations view: check or start a live migration of a VM to the other SU of
//! its SU cluster (the check's conflicts, with their VMS message codes, show before
//! anyone starts), and every migration with its phase, MONJV, conflicts and, for
//! those in flight and the newest, the chart of its pre-copy rounds (`svg::lm_chart`),
//! live, with a *Cancel* button for each one not finished. Creating goes through the
//! REST API's own create (`server::write::create`); cancelling is the API's delete
//! (`server::write::delete`): the controller rolls a deleted migration back, as
//! KubeVirt cancels by deleting its migration object.

use super::html::{badge, esc};
use super::session::Session;
use super::site::{in_flight, items, name, text, Site};
use crate::api::Kind;

/// The kinds the view reads.
pub const KINDS: [Kind; 1] = [Kind::LiveMigration];
/// Migrations listed (newest first).
pub const SHOWN: usize = 50;

fn conflicts(lm: &serde_json::Value) -> String {
    let c = items(lm, "/status/conflicts");
    if c.is_empty() {
        return "none".into();
    }
    let li: String = c
        .iter()
        .map(|x| {
            let code = text(x, "/code");
            let code = if code.is_empty() { String::new() } else { format!("<strong>{}</strong> ", esc(code)) };
            format!("<li>{code}{}: {}</li>", esc(text(x, "/reason")), esc(text(x, "/message")))
        })
        .collect();
    format!("<ul class=\"conflicts\">{li}</ul>")
}

/// Not finished yet: a cancel (deleting it) still means something.
pub fn cancellable(lm: &serde_json::Value) -> bool {
    matches!(text(lm, "/status/phase"), "" | "Pending" | "Checking") || in_flight(lm)
}

/// The cell with the Cancel button of a migration not finished yet.
fn cancel_cell(lm: &serde_json::Value, s: &Session) -> String {
    if !cancellable(lm) {
        return "<td></td>".into();
    }
    let n = name(lm);
    let form = super::dashboard::action_form("/ui/action/cancel", s, &[("lm", n)], "Cancel", &format!("cancel-{n}"));
    let label = format!(" aria-label=\"Cancel {}\"", esc(n));
    format!("<td>{}</td>", form.replacen("<button ", &format!("<button{label} "), 1))
}

/// The live region: the table of migrations and the charts.
pub fn live(site: &Site, sess: &Session) -> String {
    let mut lms: Vec<&serde_json::Value> = site.lms.iter().collect();
    lms.sort_by(|a, b| {
        text(b, "/metadata/creationTimestamp").cmp(text(a, "/metadata/creationTimestamp")).then(name(a).cmp(name(b)))
    });
    let rows: String = lms
        .iter()
        .take(SHOWN)
        .map(|l| {
            let phase = text(l, "/status/phase");
            let check = l.pointer("/spec/checkOnly").and_then(|v| v.as_bool()).unwrap_or(false);
            format!(
                "<tr id=\"lm-{n}\" data-phase=\"{p}\"><th scope=\"row\">{n}</th><td>{vm}{kind}</td><td>{src} \u{2192} {dst}</td>\
                 <td>{b}</td><td>{monjv}</td><td class=\"num\">{rounds}</td><td>{down}</td><td>{c}</td>{cancel}</tr>",
                n = esc(name(l)),
                p = esc(phase),
                vm = esc(text(l, "/spec/vm")),
                kind = if check { " (check only)" } else { "" },
                src = esc(text(l, "/status/sourceServerUnit")),
                dst = esc(text(l, "/status/targetServerUnit")),
                b = badge(phase),
                monjv = esc(text(l, "/status/monjv")),
                rounds = items(l, "/status/rounds").len(),
                down = l.pointer("/status/downtimeMs").and_then(|v| v.as_u64()).map(|d| format!("{d} ms")).unwrap_or_default(),
                c = conflicts(l),
                cancel = cancel_cell(l, sess),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p>No live migrations yet.</p>".to_string()
    } else {
        format!(
            "<div class=\"scroll\"><table class=\"list\"><caption>Live migrations, newest first (at most {SHOWN})</caption>\
             <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">VM</th><th scope=\"col\">SU</th><th scope=\"col\">Phase</th>\
             <th scope=\"col\">MONJV</th><th scope=\"col\">Rounds</th><th scope=\"col\">Downtime</th><th scope=\"col\">Conflicts</th><th scope=\"col\">Action</th></tr></thead>\
             <tbody>{rows}</tbody></table></div>"
        )
    };
    let newest_move = lms.iter().find(|l| !l.pointer("/spec/checkOnly").and_then(|v| v.as_bool()).unwrap_or(false));
    let charts: String = lms
        .iter()
        .filter(|l| in_flight(l) || newest_move.is_some_and(|n| std::ptr::eq(*n, **l)))
        .map(|l| {
            format!(
                "<figure class=\"picture chart\" id=\"chart-{}\" data-rounds=\"{}\">{}</figure>",
                esc(name(l)),
                items(l, "/status/rounds").len(),
                super::svg::lm_chart(l)
            )
        })
        .collect();
    format!(
        "<h2>Migrations</h2>{table}<h2>Pre-copy rounds</h2>{}",
        if charts.is_empty() { "<p>None yet.</p>".into() } else { charts }
    )
}

/// The form that checks or starts a migration (outside the live region, so typing is
/// never disturbed by an update).
pub fn form(s: &Session) -> String {
    let disabled = super::session::disabled_attr(&s.who);
    format!(
        "<form class=\"migrate\" method=\"post\" action=\"/ui/action/migrate\" data-js>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"vm\">VM definition (name)</label> <input id=\"vm\" name=\"vm\" required pattern=\"[a-z0-9-]{{1,63}}\" \
         aria-describedby=\"vm-help\"> \
         <button type=\"submit\" name=\"mode\" value=\"check\" id=\"lm-check\"{disabled}>Check migration</button> \
         <button type=\"submit\" name=\"mode\" value=\"start\" id=\"lm-start\"{disabled}>Start live migration</button>\
         <p id=\"vm-help\" class=\"help\">To the other SU of the VM's SU cluster. Check first: its conflicts (with the \
         manual's VMS codes) appear below before anything moves.</p></form>",
        esc(&s.csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::session::Principal;
    use serde_json::json;

    fn lm(name: &str, phase: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"vm": "vm1"}, "status": {"phase": phase}})
    }

    #[test]
    fn cancel_is_offered_for_unfinished_migrations_and_disabled_for_readers() {
        let site =
            Site { lms: vec![lm("a", "Copying"), lm("b", "Completed"), lm("c", "Pending")], ..Default::default() };
        let admin = Session { who: Principal { name: "admin".into(), can_write: true }, csrf: "t".into() };
        let html = live(&site, &admin);
        assert!(html.contains("id=\"cancel-a\"") && html.contains("id=\"cancel-c\""), "{html}");
        assert!(!html.contains("cancel-b"), "a finished migration has nothing to cancel");
        let reader = Session { who: Principal { name: "op".into(), can_write: false }, csrf: "t".into() };
        let html = live(&site, &reader);
        let button = html.split("id=\"cancel-a\"").nth(1).expect("button").split('>').next().expect("attrs");
        assert!(button.contains("disabled") && button.contains("only administrators"), "{button}");
    }
}
