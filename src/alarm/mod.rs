//! Alarm management (manual s2.3.4): every event that passes a receiver's filter is
//! sent to it, as an SNMPv2c trap (`snmp.rs`) or a mail (`mail.rs`).
//!
//! Delivery is durable through an outbox (`outbox.rs`): the event log itself is the
//! outbox, and each receiver has a cursor (the last event seq it was given) in the
//! store's state keys, written in one batch with the receiver's status (sent, failed,
//! last error). A restart resumes after the cursor, so nothing is lost; the cursor
//! moves after each accepted trap or mail, so at most the one event in flight when
//! the process died is sent again. `sectl serve` runs delivery on its own thread
//! (`task.rs`) with back-off for a receiver that is down; an embedded verb that
//! changes something makes one pass before it returns (one attempt per receiver, no
//! waiting: what fails stays in the outbox for the next run or for `serve`).
//!
//! A receiver starts with the events recorded after delivery first saw it. The event
//! log keeps 10,000 events: a receiver that is down for longer loses the oldest.

pub mod mail;
mod outbox;
pub mod snmp;
mod task;

pub use outbox::{cluster_manager_on_v62, wanted, Outbox, Pass, SendError, CURSOR_PREFIX};
pub use task::{deliver_once, Delivery};

use crate::api::{AlarmReceiverSpec, Component, SoftwareVersion};

/// "snmp" or "mail".
pub fn target_type(s: &AlarmReceiverSpec) -> &'static str {
    match (&s.snmp, &s.mail) {
        (Some(_), _) => "snmp",
        (None, Some(_)) => "mail",
        (None, None) => "-",
    }
}

/// Where it sends, for tables: `host:port` or the recipients.
pub fn target_text(s: &AlarmReceiverSpec) -> String {
    match (&s.snmp, &s.mail) {
        (Some(t), _) => format!("{}:{}", t.host, t.port),
        (None, Some(m)) => {
            let to: Vec<&str> = m.to.iter().map(|a| a.as_str()).collect();
            format!("{} via {}:{}", to.join(","), m.smtp_host, m.smtp_port)
        }
        (None, None) => "-".into(),
    }
}

/// Checks across the fields of a receiver: (field path, problem).
pub fn check_spec(s: &AlarmReceiverSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match (&s.snmp, &s.mail) {
        (Some(_), Some(_)) => {
            out.push(("spec".into(), "give either snmp or mail, not both (make two receivers for both)".into()))
        }
        (None, None) => out.push((
            "spec".into(),
            "give a receiver: snmp {host, port, community} or mail {smtpHost, smtpPort, from, to}".into(),
        )),
        _ => {}
    }
    if let Some(m) = &s.mail {
        if m.to.is_empty() {
            out.push(("spec.mail.to".into(), "give at least one recipient".into()));
        }
        if m.to.len() > 100 {
            out.push(("spec.mail.to".into(), format!("at most 100 recipients, got {}", m.to.len())));
        }
    }
    let comps = &s.filter.components;
    if comps.is_empty() {
        out.push(("spec.filter.components".into(), "give at least one component, or [ANY]".into()));
    }
    if comps.len() > 1 && comps.contains(&Component::Any) {
        out.push(("spec.filter.components".into(), "ANY already admits every component: give [ANY] alone".into()));
    }
    for (i, c) in comps.iter().enumerate() {
        if comps[..i].contains(c) {
            out.push((format!("spec.filter.components[{i}]"), format!("{} is given twice", c.as_str())));
        }
    }
    if s.created_on == Some(SoftwareVersion::V62) && comps.as_slice() != [Component::Any] {
        out.push((
            "spec.filter.components".into(),
            "a receiver created on a V6.2 MU has no component filter (manual s2.5: it acts as component ANY): give [ANY], or delete it and create it again on V6.3".into(),
        ));
    }
    out
}
