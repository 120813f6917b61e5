//! The outbox: the event log read after each receiver's cursor. One `pass` looks at
//! every receiver once: a receiver seen for the first time gets a cursor at the
//! newest event; then the events after its cursor are filtered and sent in order. Each
//! accepted trap or mail moves the cursor and the status counters in one durable
//! store batch (`state` key `alarm/cursor/<name>` + status), so a crash re-sends at
//! most the one event in flight. A failure counts, is kept as `lastError`, and puts
//! the receiver into back-off (1 s doubling to 60 s); its cursor stays, so the event
//! is retried and nothing after it overtakes it.
//!
//! Manual s2.5: when the Cluster Manager runs on a V6.2 MU, alarms are sent
//! "regardless of the components specified"; a receiver created on V6.2 acts as
//! component ANY (so it and a V6.3 twin both send: the alarm arrives twice).

use super::{mail, snmp};
use crate::api::{
    set_condition, AlarmReceiverSpec, Component, ConditionStatus, Kind, KindSpec, Object, Resource, SoftwareVersion,
    Weight,
};
use crate::store::{Batch, Event, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// State key prefix of the cursors.
pub const CURSOR_PREFIX: &str = "alarm/cursor/";
/// Events read at once per receiver.
const CHUNK: usize = 256;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A receiver's durable cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// The receiver object it belongs to (a receiver deleted and created again
    /// starts afresh).
    uid: String,
    /// The last event seq given to the receiver (sent, or passed by its filter).
    seq: u64,
}

struct Backoff {
    next: Instant,
    delay: Duration,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    /// Traps and mails accepted.
    pub sent: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// The earliest moment a receiver in back-off may be tried again.
    pub retry_at: Option<Instant>,
}

/// Why one event did not reach a receiver.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The trap could not be built.
    #[error("{0}")]
    Encode(#[from] snmp::TrapError),
    /// The trap was refused or could not be sent.
    #[error("trap to {to}: {source}")]
    Trap {
        /// host:port.
        to: String,
        /// What went wrong.
        #[source]
        source: snmp::TrapError,
    },
    /// The mail was not accepted.
    #[error("{0}")]
    Mail(#[from] mail::MailError),
    /// Neither snmp nor mail is given (validation refuses that).
    #[error("no receiver given (snmp or mail)")]
    NoTarget,
}

/// The delivery state of one process: the store and each receiver's back-off.
pub struct Outbox {
    store: std::sync::Arc<dyn Store>,
    backoff: HashMap<String, Backoff>,
    started: Instant,
    request_id: i32,
    /// Ignore back-off (an embedded verb's single pass tries each receiver once).
    pub eager: bool,
}

/// Whether `ev` passes the filter of `spec`; `any_component` when the manual's V6.2
/// rules make every receiver act as component ANY. An event of a priority sectl does
/// not know passes any weight (an alarm is better sent than lost).
pub fn wanted(spec: &AlarmReceiverSpec, ev: &Event, any_component: bool) -> bool {
    let f = &spec.filter;
    let weight = f.min_weight == Weight::Any || Weight::of_priority(&ev.priority).is_none_or(|w| w >= f.min_weight);
    let component = any_component
        || spec.created_on == Some(SoftwareVersion::V62)
        || f.components.iter().any(|c| *c == Component::Any || c.as_str() == ev.component);
    weight && component
}

/// The Cluster Manager MU of a management cluster, when it is an MU of a V6.2 server
/// (manual s2.5: then alarms are sent regardless of the components specified).
pub fn cluster_manager_on_v62(store: &dyn Store) -> Result<Option<String>, StoreError> {
    let (mcs, _) = store.list(Kind::ManagementCluster)?;
    let (servers, _) = store.list(Kind::SEServer)?;
    for mc in &mcs {
        let Some(o) = mc.as_typed::<crate::api::ManagementClusterSpec>() else { continue };
        let Some(cm) = o.status.cluster_manager.as_deref() else { continue };
        let on_v62 = servers.iter().filter_map(|s| s.as_typed::<crate::api::SEServerSpec>()).any(|s| {
            s.spec.version == SoftwareVersion::V62 && s.spec.management_units.iter().any(|m| m.name.as_str() == cm)
        });
        if on_v62 {
            return Ok(Some(cm.to_string()));
        }
    }
    Ok(None)
}

type Receiver = Object<AlarmReceiverSpec, <AlarmReceiverSpec as KindSpec>::Status>;

impl Outbox {
    /// An outbox on `store`.
    pub fn new(store: std::sync::Arc<dyn Store>) -> Outbox {
        Outbox { store, backoff: HashMap::new(), started: Instant::now(), request_id: 0, eager: false }
    }

    /// One pass over every receiver.
    pub fn pass(&mut self) -> Result<Pass, StoreError> {
        let (receivers, _) = self.store.list(Kind::AlarmReceiver)?;
        let cursors: HashMap<String, Cursor> = self
            .store
            .read_state(CURSOR_PREFIX)?
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(CURSOR_PREFIX)?.to_string();
                serde_json::from_slice(&v).ok().map(|c| (name, c))
            })
            .collect();
        // Cursors of receivers that are gone.
        let gone: Vec<(String, Option<Vec<u8>>)> = cursors
            .keys()
            .filter(|n| !receivers.iter().any(|r| r.name() == n.as_str()))
            .map(|n| (format!("{CURSOR_PREFIX}{n}"), None))
            .collect();
        if !gone.is_empty() {
            self.store.commit_batch(Batch { state: gone, durable: true, ..Default::default() })?;
        }
        self.backoff.retain(|uid, _| receivers.iter().any(|r| r.meta().uid.as_deref() == Some(uid.as_str())));
        let mut pass = Pass::default();
        if receivers.is_empty() {
            return Ok(pass);
        }
        let any_component = cluster_manager_on_v62(self.store.as_ref())?.is_some();
        for r in receivers {
            let Some(o) = AlarmReceiverSpec::unwrap(r) else { continue };
            let cursor = cursors.get(o.name()).filter(|c| Some(&c.uid) == o.metadata.uid.as_ref()).map(|c| c.seq);
            self.deliver(o, cursor, any_component, &mut pass)?;
        }
        Ok(pass)
    }

    /// Sends what `o` has waiting.
    fn deliver(&mut self, mut o: Receiver, cursor: Option<u64>, any: bool, pass: &mut Pass) -> Result<(), StoreError> {
        let uid = o.metadata.uid.clone().unwrap_or_default();
        let mut cur = match cursor {
            Some(c) => c,
            None => {
                let c = self.store.last_event_seq()?;
                o.status.delivered_seq = c;
                self.commit(&o, &uid, c)?;
                c
            }
        };
        if let Some(b) = self.backoff.get(&uid) {
            if !self.eager && Instant::now() < b.next {
                pass.retry_at = Some(pass.retry_at.map_or(b.next, |t| t.min(b.next)));
                return Ok(());
            }
        }
        let mut moved = false;
        loop {
            let evs = self.store.events_after(cur, CHUNK)?;
            if evs.is_empty() {
                break;
            }
            for ev in evs {
                if !wanted(&o.spec, &ev, any) {
                    cur = ev.seq;
                    moved = true;
                    continue;
                }
                match self.send(&o.spec, &ev) {
                    Ok(()) => {
                        cur = ev.seq;
                        moved = false;
                        o.status.sent += 1;
                        o.status.last_sent_time = Some(crate::store::now_rfc3339());
                        self.status_ok(&mut o, cur);
                        self.commit(&o, &uid, cur)?;
                        self.backoff.remove(&uid);
                        pass.sent += 1;
                    }
                    Err(e) => {
                        tracing::warn!(receiver = o.name(), event = ev.seq, error = %e, "alarm not delivered; retried with back-off");
                        o.status.failed += 1;
                        o.status.last_error = Some(e.to_string());
                        o.status.pending = self.store.events_after(cur, usize::MAX)?.len() as u64;
                        self.status_failing(&mut o, cur);
                        self.commit(&o, &uid, cur)?;
                        let b = self
                            .backoff
                            .entry(uid.clone())
                            .or_insert(Backoff { next: Instant::now(), delay: FIRST_BACKOFF });
                        b.next = Instant::now() + b.delay;
                        pass.retry_at = Some(pass.retry_at.map_or(b.next, |t| t.min(b.next)));
                        b.delay = (b.delay * 2).min(MAX_BACKOFF);
                        pass.failed += 1;
                        return Ok(());
                    }
                }
            }
        }
        if moved || o.status.pending != 0 || o.status.delivered_seq != cur {
            self.status_ok(&mut o, cur);
            self.commit(&o, &uid, cur)?;
        }
        Ok(())
    }

    fn status_ok(&self, o: &mut Receiver, cur: u64) {
        o.status.delivered_seq = cur;
        o.status.pending = 0;
        o.status.observed_generation = o.metadata.generation;
        let now = crate::store::now_rfc3339();
        set_condition(
            &mut o.status.conditions,
            "Ready",
            ConditionStatus::True,
            "Delivered",
            "",
            o.metadata.generation,
            &now,
        );
    }

    fn status_failing(&self, o: &mut Receiver, cur: u64) {
        o.status.delivered_seq = cur;
        o.status.observed_generation = o.metadata.generation;
        let now = crate::store::now_rfc3339();
        let msg = o.status.last_error.clone().unwrap_or_default();
        set_condition(
            &mut o.status.conditions,
            "Ready",
            ConditionStatus::False,
            "DeliveryFailing",
            &msg,
            o.metadata.generation,
            &now,
        );
    }

    /// Writes the cursor and the status in one durable batch.
    fn commit(&self, o: &Receiver, uid: &str, seq: u64) -> Result<(), StoreError> {
        let c = Cursor { uid: uid.to_string(), seq };
        let bytes = serde_json::to_vec(&c).map_err(|e| StoreError::Backend(e.to_string()))?;
        let batch = Batch {
            statuses: vec![Resource::AlarmReceiver(o.clone())],
            state: vec![(format!("{CURSOR_PREFIX}{}", o.name()), Some(bytes))],
            durable: true,
            ..Default::default()
        };
        self.store.commit_batch(batch).map(|_| ())
    }

    fn send(&mut self, spec: &AlarmReceiverSpec, ev: &Event) -> Result<(), SendError> {
        if let Some(t) = &spec.snmp {
            self.request_id = self.request_id.wrapping_add(1) & 0x7fff_ffff;
            let ticks = (self.started.elapsed().as_millis() / 10) as u32;
            let bytes = snmp::encode(t.community.as_str(), ev, ticks, self.request_id)?;
            return snmp::send(t, &bytes)
                .map_err(|source| SendError::Trap { to: format!("{}:{}", t.host, t.port), source });
        }
        if let Some(m) = &spec.mail {
            return Ok(mail::send(m, ev)?);
        }
        Err(SendError::NoTarget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventType;

    fn spec(components: &[Component], min: Weight, created_on: Option<SoftwareVersion>) -> AlarmReceiverSpec {
        AlarmReceiverSpec {
            snmp: None,
            mail: None,
            filter: crate::api::AlarmFilter { components: components.to_vec(), min_weight: min },
            created_on,
        }
    }

    fn ev(priority: &str, component: &str) -> Event {
        Event {
            seq: 1,
            time: String::new(),
            type_: EventType::Normal,
            priority: priority.into(),
            component: component.into(),
            object: String::new(),
            reason: String::new(),
            message: String::new(),
            acknowledged: false,
        }
    }

    #[test]
    fn weights_are_ordered_and_unknown_priorities_pass() {
        let s = spec(&[Component::Any], Weight::Warning, None);
        assert!(!wanted(&s, &ev("INFO", "Net"), false));
        assert!(!wanted(&s, &ev("NOTICE", "Net"), false));
        assert!(wanted(&s, &ev("WARNING", "Net"), false));
        assert!(wanted(&s, &ev("ERROR", "Net"), false));
        assert!(wanted(&s, &ev("CRITICAL", "Net"), false));
        assert!(wanted(&s, &ev("SEVERE", "Net"), false), "an unknown priority is sent");
        assert!(wanted(&spec(&[Component::Any], Weight::Any, None), &ev("INFO", "Net"), false));
    }

    #[test]
    fn components_match_by_name_unless_v62_rules_apply() {
        let s = spec(&[Component::SysMgmt, Component::M2000], Weight::Any, None);
        assert!(wanted(&s, &ev("INFO", "Sys-Mgmt"), false));
        assert!(wanted(&s, &ev("INFO", "M2000"), false));
        assert!(!wanted(&s, &ev("INFO", "Cluster"), false));
        assert!(wanted(&s, &ev("INFO", "Cluster"), true), "Cluster Manager on V6.2");
        let old = spec(&[Component::Any], Weight::Error, Some(SoftwareVersion::V62));
        assert!(wanted(&old, &ev("ERROR", "Cluster"), false));
        assert!(!wanted(&old, &ev("INFO", "Cluster"), true), "weights still apply");
    }

    #[test]
    fn a_trap_is_ber_that_decodes_back() {
        let mut e = ev("WARNING", "Cluster");
        e.seq = 4_000_000_000_000;
        e.message = "ä message".into();
        let bytes = snmp::encode("public", &e, 42, 7).unwrap();
        let m: rasn_snmp::v2c::Message<rasn_snmp::v2::Pdus> = rasn::ber::decode(&bytes).unwrap();
        assert_eq!(m.version, 1.into());
        assert_eq!(&m.community[..], b"public");
        let rasn_snmp::v2::Pdus::Trap(t) = m.data else { panic!("not a trap") };
        assert_eq!(t.0.request_id, 7);
        assert_eq!(t.0.variable_bindings.len(), 10);
        let seq = &t.0.variable_bindings[2];
        assert_eq!(seq.name.to_vec(), snmp::event_object(1));
        let want = rasn_snmp::v2::VarBindValue::Value(rasn_smi::v2::Counter64(4_000_000_000_000).into());
        assert_eq!(seq.value, want);
    }
}
