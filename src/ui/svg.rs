//! Pictures as SVG text, shared by the web UI and `sectl plot`: the topology (servers
//! with their MUs and SUs, the VMs on each SU coloured and labelled by state, ISL-E
//! links, management and SU clusters, migrations in flight as arrows) and a live
//! migration's pre-copy rounds (MiB sent and dirtied per round, the suspension).
//!
//! Trade-offs: a fixed column layout (one column per server, grouped by management
//! cluster) that needs no layout engine and draws the same picture every time; at
//! most `MAX_VM_CHIPS` VMs per SU are drawn, the rest counted ("+N more"), so 10,000
//! VMs still give a readable picture. Every colour comes with its word.

use super::html::{esc, state_class};
use super::site::{in_flight, items, name, text, Site};
use std::collections::HashMap;
use std::fmt::Write as _;

/// VMs drawn per SU; the rest are counted.
pub const MAX_VM_CHIPS: usize = 16;

const COL_W: f64 = 300.0;
const GAP: f64 = 70.0;
const MARGIN: f64 = 20.0;
const CHIP_W: f64 = 128.0;
const CHIP_H: f64 = 20.0;

/// Fill and text colours per state class (text on fill has a contrast above 4.5:1).
fn colours(class: &str) -> (&'static str, &'static str) {
    match class {
        "ok" => ("#d4edda", "#14532d"),
        "warn" => ("#fff3cd", "#6b4e00"),
        "err" => ("#f8d7da", "#7f1d1d"),
        "info" => ("#dbeafe", "#1e3a8a"),
        _ => ("#e5e7eb", "#1f2937"),
    }
}

#[derive(Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

fn rect(out: &mut String, r: Rect, fill: &str, stroke: &str, extra: &str) {
    let _ = write!(
        out,
        "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{:.0}\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\"{extra}/>",
        r.x, r.y, r.w, r.h
    );
}

fn label(out: &mut String, x: f64, y: f64, size: u32, fill: &str, weight: &str, t: &str) {
    let _ = write!(
        out,
        "<text x=\"{x:.0}\" y=\"{y:.0}\" font-size=\"{size}\" fill=\"{fill}\" font-weight=\"{weight}\">{}</text>",
        esc(t)
    );
}

/// Servers in drawing order: each management cluster's servers together, then the rest.
fn server_order(site: &Site) -> Vec<(&serde_json::Value, Option<&serde_json::Value>)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for mc in &site.mcs {
        for s in items(mc, "/spec/servers").iter().filter_map(|s| s.as_str()) {
            if let Some(se) = site.servers.iter().find(|x| name(x) == s) {
                if seen.insert(s.to_string()) {
                    out.push((se, Some(mc)));
                }
            }
        }
    }
    for se in &site.servers {
        if seen.insert(name(se).to_string()) {
            out.push((se, None));
        }
    }
    out
}

fn vm_su(vm: &serde_json::Value) -> &str {
    let now = text(vm, "/status/serverUnit");
    if now.is_empty() {
        text(vm, "/spec/serverUnit")
    } else {
        now
    }
}

fn su_height(n_vms: usize) -> f64 {
    let shown = n_vms.min(MAX_VM_CHIPS);
    let rows = shown.div_ceil(2) as f64;
    let more = if n_vms > MAX_VM_CHIPS { 18.0 } else { 0.0 };
    44.0 + rows * (CHIP_H + 4.0) + more + 6.0
}

/// The topology picture of a site.
pub fn topology(site: &Site) -> String {
    let mut vms_on: HashMap<&str, Vec<&serde_json::Value>> = HashMap::new();
    for vm in &site.vms {
        vms_on.entry(vm_su(vm)).or_default().push(vm);
    }
    let order = server_order(site);
    let mut body = String::new();
    let mut su_box: HashMap<String, Rect> = HashMap::new();
    let top = MARGIN + 34.0;
    let mut height: f64 = 200.0;
    let mut server_box: Vec<(Rect, Option<&serde_json::Value>, &serde_json::Value)> = Vec::new();
    for (i, (se, mc)) in order.iter().enumerate() {
        let x = MARGIN + i as f64 * (COL_W + GAP);
        let mut y = top + 10.0;
        let mut inner = String::new();
        label(&mut inner, x + 10.0, y + 18.0, 14, "#111827", "bold", &format!("SE server {}", name(se)));
        label(
            &mut inner,
            x + 10.0,
            y + 34.0,
            11,
            "#374151",
            "normal",
            &format!("{} \u{b7} {}", text(se, "/spec/model"), text(se, "/spec/location")),
        );
        y += 44.0;
        // Management units: small boxes in a row.
        for (j, mu) in items(se, "/spec/managementUnits").iter().enumerate() {
            let mu_name = text(mu, "/name");
            let (power, state) = site.unit(mu_name);
            let shown = if power == "OFF" { "OFF" } else { state };
            let (fill, fg) = colours(state_class(if power == "OFF" { "OFF" } else { state }));
            let r = Rect { x: x + 10.0 + j as f64 * 142.0, y, w: 136.0, h: 34.0 };
            let _ = write!(inner, "<g><title>MU {} power {} state {}</title>", esc(mu_name), esc(power), esc(state));
            rect(&mut inner, r, fill, "#6b7280", "");
            label(&mut inner, r.x + 6.0, r.y + 14.0, 11, fg, "bold", &format!("MU {mu_name}"));
            label(&mut inner, r.x + 6.0, r.y + 28.0, 10, fg, "normal", shown);
            inner.push_str("</g>");
        }
        y += 44.0;
        for su in items(se, "/spec/serverUnits") {
            let su_name = text(su, "/name");
            let vms = vms_on.get(su_name).cloned().unwrap_or_default();
            let (power, state) = site.unit(su_name);
            let h = su_height(vms.len());
            let r = Rect { x: x + 10.0, y, w: COL_W - 20.0, h };
            su_box.insert(su_name.to_string(), r);
            let (fill, fg) = colours(state_class(if power == "OFF" { "OFF" } else { state }));
            let _ = write!(
                inner,
                "<g class=\"su\" data-su=\"{}\"><title>SU {} ({}) power {} state {}, {} VMs</title>",
                esc(su_name),
                esc(su_name),
                esc(text(su, "/type")),
                esc(power),
                esc(state),
                vms.len()
            );
            rect(&mut inner, r, "#ffffff", "#374151", " stroke-width=\"1.5\"");
            rect(&mut inner, Rect { x: r.x, y: r.y, w: r.w, h: 22.0 }, fill, "#374151", "");
            label(
                &mut inner,
                r.x + 6.0,
                r.y + 15.0,
                12,
                fg,
                "bold",
                &format!("SU {su_name} /{} \u{b7} {} {}", text(su, "/type"), power, state),
            );
            let cluster = site
                .sucs
                .iter()
                .find(|c| items(c, "/spec/serverUnits").iter().any(|u| u.as_str() == Some(su_name)))
                .map(|c| format!(" \u{b7} SU cluster {} {}", name(c), text(c, "/status/state")))
                .unwrap_or_default();
            label(&mut inner, r.x + 6.0, r.y + 36.0, 10, "#374151", "normal", &format!("{} VMs{cluster}", vms.len()));
            for (k, vm) in vms.iter().take(MAX_VM_CHIPS).enumerate() {
                let st = text(vm, "/status/state");
                let migrating = items(vm, "/status/substates").iter().any(|s| s.as_str() == Some("MIGRATING"));
                let (cf, ct) = colours(state_class(st));
                let c = Rect {
                    x: r.x + 6.0 + (k % 2) as f64 * (CHIP_W + 8.0),
                    y: r.y + 44.0 + (k / 2) as f64 * (CHIP_H + 4.0),
                    w: CHIP_W,
                    h: CHIP_H,
                };
                let vm_name = text(vm, "/spec/vmName");
                let _ = write!(inner, "<g class=\"vm\"><title>VM {} {}</title>", esc(vm_name), esc(st));
                let dash = if migrating { " stroke-dasharray=\"3 2\"" } else { "" };
                rect(&mut inner, c, cf, "#6b7280", dash);
                let short = match st {
                    "RUNNING" => "RUN",
                    "INIT_ONLY" => "INIT",
                    "DEFINED_ONLY" => "DEF",
                    other => other,
                };
                label(&mut inner, c.x + 4.0, c.y + 14.0, 10, ct, "normal", &format!("{vm_name} {short}"));
                inner.push_str("</g>");
            }
            if vms.len() > MAX_VM_CHIPS {
                label(
                    &mut inner,
                    r.x + 6.0,
                    r.y + h - 10.0,
                    10,
                    "#374151",
                    "normal",
                    &format!("+{} more", vms.len() - MAX_VM_CHIPS),
                );
            }
            inner.push_str("</g>");
            y += h + 10.0;
        }
        let sr = Rect { x, y: top, w: COL_W, h: y - top };
        let _ = write!(body, "<g class=\"server\" data-server=\"{}\">", esc(name(se)));
        rect(&mut body, sr, "#f9fafb", "#111827", " stroke-width=\"2\"");
        body.push_str(&inner);
        body.push_str("</g>");
        height = height.max(y + 20.0);
        server_box.push((sr, *mc, se));
    }
    let width = (MARGIN * 2.0 + (order.len().max(1) as f64) * (COL_W + GAP) - GAP).max(LEGEND_W + 2.0 * MARGIN);
    let mut over = String::new();
    draw_clusters(&mut over, site, &server_box, &su_box, height);
    draw_migrations(&mut over, site, &su_box);
    let legend_y = height + 50.0;
    draw_legend(&mut over, legend_y);
    let total_h = legend_y + 30.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"topo-title\" viewBox=\"0 0 {width:.0} {total_h:.0}\" width=\"{width:.0}\" height=\"{total_h:.0}\" font-family=\"sans-serif\">\
         <title id=\"topo-title\">Topology: {} servers, {} management clusters, {} SU clusters, {} VMs, {} migrations in flight</title>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#1d4ed8\"/></marker></defs>\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>{body}{over}</svg>",
        order.len(),
        site.mcs.len(),
        site.sucs.len(),
        site.vms.len(),
        site.lms.iter().filter(|l| in_flight(l)).count()
    )
}

/// Management clusters (a frame around their servers, ISL-E between them) and SU
/// clusters (a line joining their SUs, labelled with the state).
fn draw_clusters(
    out: &mut String,
    site: &Site,
    servers: &[(Rect, Option<&serde_json::Value>, &serde_json::Value)],
    sus: &HashMap<String, Rect>,
    height: f64,
) {
    for mc in &site.mcs {
        let boxes: Vec<Rect> =
            servers.iter().filter(|(_, m, _)| m.is_some_and(|m| name(m) == name(mc))).map(|(r, _, _)| *r).collect();
        let (Some(first), Some(last)) = (boxes.first(), boxes.last()) else { continue };
        let st = text(mc, "/status/state");
        let (fill, fg) = colours(state_class(st));
        let frame =
            Rect { x: first.x - 8.0, y: MARGIN - 4.0, w: last.x + last.w - first.x + 16.0, h: height - MARGIN + 10.0 };
        let _ = write!(out, "<g class=\"mc\" data-mc=\"{}\" data-state=\"{}\">", esc(name(mc)), esc(st));
        rect(out, frame, "none", "#4b5563", " stroke-dasharray=\"6 4\"");
        rect(out, Rect { x: frame.x + 8.0, y: MARGIN, w: 520.0_f64.min(frame.w - 16.0), h: 24.0 }, fill, "#4b5563", "");
        let cm = text(mc, "/status/clusterManager");
        label(
            out,
            frame.x + 14.0,
            MARGIN + 16.0,
            12,
            fg,
            "bold",
            &format!(
                "Management cluster {} \u{b7} {} \u{b7} CM {}",
                name(mc),
                st,
                if cm.is_empty() { "none" } else { cm }
            ),
        );
        let isl = mc.pointer("/spec/islE");
        for pair in boxes.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let y = a.y + 30.0;
            let _ = write!(
                out,
                "<line x1=\"{:.0}\" y1=\"{y:.0}\" x2=\"{:.0}\" y2=\"{y:.0}\" stroke=\"#111827\" stroke-width=\"3\"/>",
                a.x + a.w,
                b.x
            );
            let gbps = isl.and_then(|i| i.get("bandwidthGbps")).and_then(|v| v.as_f64()).unwrap_or(0.0);
            label(out, a.x + a.w + 4.0, y - 6.0, 10, "#111827", "bold", "ISL-E");
            label(out, a.x + a.w + 4.0, y + 14.0, 10, "#111827", "normal", &format!("{gbps} Gbit/s"));
        }
        out.push_str("</g>");
    }
    for suc in &site.sucs {
        let st = text(suc, "/status/state");
        let (fill, fg) = colours(state_class(st));
        let rects: Vec<Rect> = items(suc, "/spec/serverUnits")
            .iter()
            .filter_map(|u| u.as_str())
            .filter_map(|u| sus.get(u))
            .copied()
            .collect();
        let _ = write!(out, "<g class=\"suc\" data-suc=\"{}\" data-state=\"{}\">", esc(name(suc)), esc(st));
        for pair in rects.windows(2) {
            let (a, b) = if pair[0].x <= pair[1].x { (pair[0], pair[1]) } else { (pair[1], pair[0]) };
            if (a.x - b.x).abs() < 1.0 {
                // Both SUs in one server: a bracket along their right edges.
                let x = a.x + a.w + 4.0;
                let _ = write!(
                    out,
                    "<path d=\"M{:.0},{:.0} H{x:.0} V{:.0} H{:.0}\" fill=\"none\" stroke=\"{fg}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
                    a.x + a.w,
                    a.y + 11.0,
                    b.y + 11.0,
                    b.x + b.w
                );
                continue;
            }
            let (x1, y1, x2, y2) = (a.x + a.w, a.y + 11.0, b.x, b.y + 11.0);
            let _ = write!(
                out,
                "<line x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{x2:.0}\" y2=\"{y2:.0}\" stroke=\"{fg}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>"
            );
            let mx = (x1 + x2) / 2.0;
            let my = (y1 + y2) / 2.0 + 14.0;
            rect(out, Rect { x: mx - 40.0, y: my - 11.0, w: 80.0, h: 30.0 }, fill, fg, "");
            label(out, mx - 36.0, my + 1.0, 10, fg, "bold", name(suc));
            label(out, mx - 36.0, my + 14.0, 10, fg, "normal", st);
        }
        out.push_str("</g>");
    }
}

/// Migrations in flight: an arrow from the source SU to the target SU.
fn draw_migrations(out: &mut String, site: &Site, sus: &HashMap<String, Rect>) {
    for (i, lm) in site.lms.iter().filter(|l| in_flight(l)).enumerate() {
        let (Some(a), Some(b)) =
            (sus.get(text(lm, "/status/sourceServerUnit")), sus.get(text(lm, "/status/targetServerUnit")))
        else {
            continue;
        };
        let (x1, y1) = (a.x + a.w / 2.0, a.y + 30.0);
        let (x2, y2) = (b.x + b.w / 2.0, b.y + 30.0);
        let lift = 50.0 + 16.0 * i as f64;
        let (cx, cy) = ((x1 + x2) / 2.0, y1.min(y2) - lift);
        let phase = text(lm, "/status/phase");
        let rounds = items(lm, "/status/rounds").len();
        let _ = write!(
            out,
            "<g class=\"lm\" data-lm=\"{}\"><title>Live migration {} of {}: {} round {}</title>\
             <path d=\"M{x1:.0},{y1:.0} Q{cx:.0},{cy:.0} {x2:.0},{y2:.0}\" fill=\"none\" stroke=\"#1d4ed8\" stroke-width=\"3\" marker-end=\"url(#arrow)\"/>",
            esc(name(lm)),
            esc(name(lm)),
            esc(text(lm, "/spec/vm")),
            esc(phase),
            rounds
        );
        let lx = cx - 70.0;
        let ly = (y1.min(y2) + cy) / 2.0;
        rect(out, Rect { x: lx, y: ly - 14.0, w: 140.0, h: 20.0 }, "#dbeafe", "#1d4ed8", "");
        label(out, lx + 4.0, ly, 10, "#1e3a8a", "bold", &format!("LM {} {} r{}", text(lm, "/spec/vm"), phase, rounds));
        out.push_str("</g>");
    }
}

const LEGEND: [(&str, &str); 5] = [
    ("ok", "NORMAL / RUNNING / ON"),
    ("warn", "WARNING / WAIT / migrating"),
    ("err", "ERROR"),
    ("info", "INIT_ONLY"),
    ("off", "INACTIVE / DOWN / OFF / DEFINED_ONLY"),
];
/// The legend's width: its label and entries.
const LEGEND_W: f64 = 880.0;

fn legend_entry_w(text: &str) -> f64 {
    14.0 + 7.0 * text.len() as f64
}

fn draw_legend(out: &mut String, y: f64) {
    let mut x = MARGIN;
    label(out, x, y, 12, "#111827", "bold", "Legend:");
    x += 60.0;
    for (class, text) in LEGEND {
        let (fill, fg) = colours(class);
        let w = legend_entry_w(text);
        rect(out, Rect { x, y: y - 14.0, w, h: 20.0 }, fill, "#6b7280", "");
        label(out, x + 6.0, y, 11, fg, "normal", text);
        x += w + 10.0;
    }
}

/// A live migration's pre-copy rounds: per round, MiB sent and MiB still dirty at its
/// end, as bars; the suspension (downtime) when known; the phase in the title.
pub fn lm_chart(lm: &serde_json::Value) -> String {
    let rounds = items(lm, "/status/rounds");
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let max = rounds.iter().map(|r| num(r, "sentMiB").max(num(r, "dirtyMiB"))).fold(1.0_f64, f64::max);
    let (w, h, left, bottom, top) = (640.0, 320.0, 60.0, 40.0, 50.0);
    let plot_h = h - bottom - top;
    let n = rounds.len().max(1) as f64;
    let slot = (w - left - 20.0) / n;
    let bar = (slot / 2.0 - 4.0).clamp(2.0, 40.0);
    let mut out = String::new();
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = top + plot_h - plot_h * i as f64 / 4.0;
        let _ =
            write!(out, "<line x1=\"{left}\" y1=\"{y:.0}\" x2=\"{:.0}\" y2=\"{y:.0}\" stroke=\"#e5e7eb\"/>", w - 20.0);
        label(&mut out, 4.0, y + 4.0, 10, "#374151", "normal", &format!("{v:.0} MiB"));
    }
    for (i, r) in rounds.iter().enumerate() {
        let x = left + i as f64 * slot + 4.0;
        for (j, (key, fill, what)) in
            [("sentMiB", "#1d4ed8", "sent"), ("dirtyMiB", "#b45309", "dirty")].iter().enumerate()
        {
            let v = num(r, key);
            let bh = plot_h * v / max;
            let bx = x + j as f64 * (bar + 2.0);
            let _ = write!(
                out,
                "<rect class=\"round\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"><title>round {} {what} {v:.0} MiB</title></rect>",
                top + plot_h - bh,
                num(r, "round")
            );
        }
        if rounds.len() <= 20 || i % (rounds.len() / 10).max(1) == 0 {
            label(&mut out, x, top + plot_h + 14.0, 10, "#374151", "normal", &format!("{}", i + 1));
        }
    }
    let phase = text(lm, "/status/phase");
    let down = lm.pointer("/status/downtimeMs").and_then(|v| v.as_u64());
    let susp = match down {
        Some(ms) => format!("suspension {ms} ms"),
        None if phase == "Suspended" => "suspended now".into(),
        None => "not suspended yet".into(),
    };
    let title =
        format!("Live migration {} of {}: {phase}, {} rounds, {susp}", name(lm), text(lm, "/spec/vm"), rounds.len());
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"lm-title\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\">\
         <title id=\"lm-title\">{}</title><rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\
         <text x=\"{left}\" y=\"20\" font-size=\"13\" font-weight=\"bold\" fill=\"#111827\">{}</text>\
         <rect x=\"{left}\" y=\"30\" width=\"10\" height=\"10\" fill=\"#1d4ed8\"/><text x=\"{:.0}\" y=\"39\" font-size=\"11\" fill=\"#111827\">MiB sent</text>\
         <rect x=\"{:.0}\" y=\"30\" width=\"10\" height=\"10\" fill=\"#b45309\"/><text x=\"{:.0}\" y=\"39\" font-size=\"11\" fill=\"#111827\">MiB dirty at round end</text>\
         {out}<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#374151\">pre-copy round</text></svg>",
        esc(&title),
        esc(&title),
        left + 14.0,
        left + 90.0,
        left + 104.0,
        w / 2.0 - 40.0,
        h - 6.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site() -> Site {
        Site {
            servers: vec![json!({"metadata": {"name": "se1"}, "spec": {"model": "SE700", "location": "A",
                "managementUnits": [{"name": "mu1"}], "serverUnits": [{"name": "SU1", "type": "390"}, {"name": "SU2", "type": "390"}]},
                "status": {"units": [{"name": "SU1", "power": "OFF", "state": "OFF"}]}})],
            vms: (0..20)
                .map(|i| json!({"spec": {"vmName": format!("V{i}"), "serverUnit": "SU1"}, "status": {"state": "RUNNING"}}))
                .collect(),
            lms: vec![json!({"metadata": {"name": "lm<1>"}, "spec": {"vm": "v1"},
                "status": {"phase": "Copying", "sourceServerUnit": "SU1", "targetServerUnit": "SU2", "rounds": [{"round": 1, "sentMiB": 100.0, "dirtyMiB": 10.0}]}})],
            ..Site::default()
        }
    }

    #[test]
    fn topology_draws_vms_states_and_arrows() {
        let svg = topology(&site());
        assert!(svg.contains("V0 RUN"));
        assert!(svg.contains(&format!("+{} more", 20 - MAX_VM_CHIPS)));
        assert!(svg.contains("SU SU1 /390 \u{b7} OFF OFF"));
        assert!(svg.contains("marker-end=\"url(#arrow)\""));
        assert!(svg.contains("lm&lt;1&gt;"), "names are escaped");
    }

    #[test]
    fn chart_has_a_bar_pair_per_round() {
        let svg = lm_chart(&site().lms[0]);
        assert_eq!(svg.matches("class=\"round\"").count(), 2);
        assert!(svg.contains("Copying, 1 rounds, not suspended yet"));
    }
}
