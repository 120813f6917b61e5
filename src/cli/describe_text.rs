//! The text of `sectl describe`, laid out as `kubectl describe`: metadata, spec and
//! status as aligned `Key: value` lines (nested parts indented), rounds and conflicts
//! as small tables, console lines with runs of per-device lines folded
//! (`VMS4005 DEVICES A000-A0FF ASSIGNED ... (256)`; all with `--show-all`), then
//! conditions and events. Metadata times are real time, status, console and event
//! times are the simulated clock; the headings say which.

use super::output::{finish, ms, opt, plain_table};
use crate::api::Resource;
use crate::store::Event;
use serde_json::Value;

/// Keys of status that get their own section.
const OWN_SECTIONS: [&str; 4] = ["conditions", "messages", "rounds", "conflicts"];

fn scalar(k: &str, v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if k.ends_with("Ms") => match n.as_u64() {
            Some(x) if x >= 10_000 => format!("{} ({x} ms)", ms(Some(x))),
            Some(x) => format!("{x} ms"),
            None => n.to_string(),
        },
        Value::Number(n) => n.to_string(),
        Value::Null => "<none>".into(),
        Value::Array(a) if a.is_empty() => "<none>".into(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(super::jsonpath::show).collect::<Vec<_>>().join(", ")
        }
        Value::Object(o) if o.is_empty() => "<none>".into(),
        _ => return None,
    })
}

/// `Key: value` lines of an object, nested parts indented below their key.
fn fields(v: &Value, indent: usize, skip: &[&str], out: &mut String) {
    let Some(obj) = v.as_object() else { return };
    let pad = " ".repeat(indent);
    let width = obj.keys().filter(|k| !skip.contains(&k.as_str())).map(|k| k.len()).max().unwrap_or(0) + 2;
    for (k, v) in obj.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        match scalar(k, v) {
            Some(s) => out.push_str(&format!("{pad}{:<width$}{s}\n", format!("{k}:"))),
            None => {
                out.push_str(&format!("{pad}{k}:\n"));
                match v {
                    Value::Array(items) => {
                        for item in items {
                            let mut sub = String::new();
                            fields(item, indent + 4, &[], &mut sub);
                            // First line of each item marked like YAML.
                            let sub = sub.replacen(&" ".repeat(indent + 4), &format!("{pad}  - "), 1);
                            out.push_str(&sub);
                        }
                    }
                    _ => fields(v, indent + 2, &[], out),
                }
            }
        }
    }
}

/// The 4-hex-digit quoted token of a console line (a device MN), and the line with it
/// cut out, to find runs of the same message about consecutive devices.
fn device_token(line: &str) -> Option<(u32, String, String)> {
    let start = line.find("DEVICE '")? + "DEVICE '".len();
    let tok = line.get(start..start + 4)?;
    if line.get(start + 4..start + 5)? != "'" {
        return None;
    }
    let n = u32::from_str_radix(tok, 16).ok()?;
    let key = format!("{}{}", &line[..start - 1], &line[start + 5..]);
    Some((n, tok.to_string(), key))
}

/// Console lines with runs of 3 or more lines about consecutive devices folded.
pub fn fold(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((n, first, key)) = device_token(&lines[i]) else {
            out.push(lines[i].clone());
            i += 1;
            continue;
        };
        let mut j = i + 1;
        let mut last = first.clone();
        while let Some((m, tok, k)) = lines.get(j).and_then(|l| device_token(l)) {
            if k != key || m != n + (j - i) as u32 {
                break;
            }
            last = tok;
            j += 1;
        }
        if j - i >= 3 {
            let l = &lines[i];
            out.push(format!(
                "{} ({})",
                l.replacen(&format!("DEVICE '{first}'"), &format!("DEVICES {first}-{last}"), 1),
                j - i
            ));
        } else {
            out.extend(lines[i..j].iter().cloned());
        }
        i = j;
    }
    out
}

fn table_of(items: &[Value], cols: &[(&str, &str)]) -> String {
    let mut t = plain_table(cols.iter().map(|(h, _)| *h).collect());
    for it in items {
        t.add_row(
            cols.iter().map(|(_, k)| scalar(k, &it[*k]).unwrap_or_else(|| it[*k].to_string())).collect::<Vec<_>>(),
        );
    }
    finish(t)
}

fn indented(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// `sectl describe` of one object.
pub fn describe(r: &Resource, events: &[Event], show_all: bool) -> String {
    let m = r.meta();
    let kv = |map: &crate::api::StringMap| {
        if map.is_empty() {
            "<none>".to_string()
        } else {
            map.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        }
    };
    let mut out = String::new();
    out.push_str(&format!("Name:              {}\n", m.name));
    out.push_str(&format!("Kind:              {}\n", r.kind()));
    out.push_str(&format!("Labels:            {}\n", kv(&m.labels)));
    out.push_str(&format!("Annotations:       {}\n", kv(&m.annotations)));
    out.push_str(&format!("UID:               {}\n", opt(&m.uid)));
    out.push_str(&format!("Resource Version:  {}\n", opt(&m.resource_version)));
    out.push_str(&format!("Generation:        {}\n", opt(&m.generation)));
    out.push_str(&format!("Created:           {} (real time)\n", opt(&m.creation_timestamp)));
    out.push_str("Spec:\n");
    fields(&r.spec_json(), 2, &[], &mut out);
    let status = r.status_json();
    out.push_str("Status (simulated clock):\n");
    if status.as_object().is_none_or(|o| o.keys().all(|k| OWN_SECTIONS.contains(&k.as_str()))) {
        out.push_str("  <none yet>\n");
    } else {
        fields(&status, 2, &OWN_SECTIONS, &mut out);
    }
    if let Some(cs) = status["conflicts"].as_array().filter(|c| !c.is_empty()) {
        out.push_str("Conflicts:\n");
        out.push_str(&indented(&table_of(cs, &[("CODE", "code"), ("REASON", "reason"), ("MESSAGE", "message")]), 2));
    }
    if let Some(rs) = status["rounds"].as_array().filter(|c| !c.is_empty()) {
        out.push_str("Rounds:\n");
        out.push_str(&indented(
            &table_of(
                rs,
                &[("ROUND", "round"), ("SENT-MIB", "sentMiB"), ("DIRTY-MIB", "dirtyMiB"), ("DURATION", "durationMs")],
            ),
            2,
        ));
    }
    if let Some(ms) = status["messages"].as_array().filter(|c| !c.is_empty()) {
        let lines: Vec<String> = ms.iter().map(super::jsonpath::show).collect();
        let shown = if show_all { lines.clone() } else { fold(&lines) };
        let note = if shown.len() < lines.len() {
            format!(", {} shown; all with --show-all", shown.len())
        } else {
            String::new()
        };
        out.push_str(&format!("Console (simulated clock, {} lines{note}):\n", lines.len()));
        for l in shown {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out.push_str("Conditions:\n");
    match status["conditions"].as_array().filter(|c| !c.is_empty()) {
        Some(cs) => out.push_str(&indented(
            &table_of(
                cs,
                &[
                    ("TYPE", "type"),
                    ("STATUS", "status"),
                    ("REASON", "reason"),
                    ("MESSAGE", "message"),
                    ("LAST-TRANSITION (SIMULATED)", "lastTransitionTime"),
                ],
            ),
            2,
        )),
        None => out.push_str("  <none>\n"),
    }
    let recent: Vec<&Event> =
        if show_all { events.iter().collect() } else { events.iter().rev().take(10).rev().collect() };
    out.push_str(&format!(
        "Events (simulated clock{}):\n",
        if recent.len() < events.len() {
            format!(", last {} of {}", recent.len(), events.len())
        } else {
            String::new()
        }
    ));
    if recent.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut t = plain_table(vec!["TIME", "TYPE", "PRIORITY", "COMPONENT", "REASON", "MESSAGE"]);
        for e in recent {
            t.add_row(vec![
                e.time.clone(),
                format!("{:?}", e.type_),
                e.priority.clone(),
                e.component.clone(),
                e.reason.clone(),
                e.message.clone(),
            ]);
        }
        out.push_str(&indented(&finish(t), 2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_runs_of_consecutive_devices_only() {
        let mut lines = vec!["A: VMS2450 STARTED".to_string()];
        for mn in ["4683", "4690"] {
            lines.push(format!("B: VMS4005 DEVICE '{mn}' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD)"));
        }
        for n in 0xA000..=0xA0FF {
            lines.push(format!("B: VMS4005 DEVICE '{n:04X}' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD)"));
        }
        lines.push("B: VMS4009 DEVICE 'A100' REMOVED".into());
        lines.push("A: VMS2451 DONE".into());
        let f = fold(&lines);
        assert_eq!(
            f,
            vec![
                "A: VMS2450 STARTED",
                "B: VMS4005 DEVICE '4683' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD)",
                "B: VMS4005 DEVICE '4690' ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD)",
                "B: VMS4005 DEVICES A000-A0FF ASSIGNED TO VIRTUAL MACHINE (12,VM12PROD) (256)",
                "B: VMS4009 DEVICE 'A100' REMOVED",
                "A: VMS2451 DONE",
            ]
        );
    }
}
