//! `sectl check`: verifies that the store agrees with itself, for operators and for
//! the crash tests. It reads the store only (it changes nothing) and reports:
//! - objects that cannot be read;
//! - the simulated world's books (`World::audit`: holders, memory, indexes);
//! - statuses that disagree with the world: a VM's SU and state, a migration's phase
//!   (objects with a reconcile still pending are skipped: their status catches up);
//! - events logged twice: a VM created again the same way with nothing about it in
//!   between, a live
//!   migration started, completed or aborted more than once; event times that go back
//!   (the simulated clock never does).
//!
//! Trade-off: the event checks look at the log as kept (the newest 10,000 entries).

use crate::api::{Kind, LiveMigrationSpec, LmPhase, VMDefinitionSpec};
use crate::controller::effects;
use crate::sim::World;
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};

/// Event reasons that happen at most once per object.
const ONCE: &[&str] = &["LiveMigrationStarted", "LiveMigrationCompleted", "LiveMigrationAborted"];

/// Runs every check; returns the problems found (empty: the store is consistent).
pub fn check(store: &dyn Store) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut objs = BTreeMap::new();
    for k in Kind::ALL {
        let l = store.list_report(*k).map_err(|e| anyhow::anyhow!("{e}"))?;
        out.extend(l.bad.iter().map(|b| b.to_string()));
        objs.insert(*k, l.items);
    }
    let world = match World::load(store) {
        Ok(w) => w,
        Err(e) => {
            out.push(format!("the simulated world cannot be read: {e}"));
            return Ok(out);
        }
    };
    out.extend(world.audit().into_iter().map(|p| format!("world: {p}")));
    let (_, pending) = effects::load(store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pending: BTreeSet<(Kind, String)> = pending.into_iter().map(|(_, k)| k).collect();
    statuses(&objs, &world, &pending, &mut out);
    events(store, &mut out)?;
    Ok(out)
}

fn statuses(
    objs: &BTreeMap<Kind, Vec<crate::api::Resource>>,
    w: &World,
    pending: &BTreeSet<(Kind, String)>,
    out: &mut Vec<String>,
) {
    let settled = |k: Kind, n: &str| !pending.contains(&(k, n.to_string()));
    for r in &objs[&Kind::VMDefinition] {
        let Some(o) = r.as_typed::<VMDefinitionSpec>() else { continue };
        if !settled(Kind::VMDefinition, o.name()) {
            continue;
        }
        let Some(v) = w.vms.get(o.name()) else {
            if let Some(state) = o.status.state {
                out.push(format!(
                    "VMDefinition/{}: status says {state:?} on {:?}, the world has no such VM",
                    o.name(),
                    o.status.server_unit
                ));
            }
            continue;
        };
        if o.status.server_unit.as_deref() != Some(v.su.as_str()) {
            out.push(format!(
                "VMDefinition/{}: status says SU {:?}, the world has it on {}",
                o.name(),
                o.status.server_unit,
                v.su
            ));
        }
        if o.status.state != Some(v.state) {
            out.push(format!(
                "VMDefinition/{}: status says state {:?}, the world says {:?}",
                o.name(),
                o.status.state,
                v.state
            ));
        }
    }
    let in_flight = |p: LmPhase| matches!(p, LmPhase::Setup | LmPhase::Copying | LmPhase::Suspended | LmPhase::PostTreatment);
    for r in &objs[&Kind::LiveMigration] {
        let Some(o) = r.as_typed::<LiveMigrationSpec>() else { continue };
        if !settled(Kind::LiveMigration, o.name()) {
            continue;
        }
        match w.migrations.get(o.name()) {
            Some(m) if in_flight(m.phase) && m.phase != o.status.phase => out.push(format!(
                "LiveMigration/{}: status says phase {}, the world is in phase {}",
                o.name(),
                o.status.phase,
                m.phase
            )),
            None if in_flight(o.status.phase) => out.push(format!(
                "LiveMigration/{}: status says phase {}, but the world has no such migration running",
                o.name(),
                o.status.phase
            )),
            _ => {}
        }
    }
}

fn events(store: &dyn Store, out: &mut Vec<String>) -> anyhow::Result<()> {
    let evs = store.events().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut last: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    let mut once: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut prev: Option<(u64, std::time::SystemTime)> = None;
    let mut prev_seq = 0;
    for e in &evs {
        // The same creation again, with nothing about the object in between (a
        // migration's creation on its target names another SU).
        if e.reason == "VmCreated" && last.get(e.object.as_str()) == Some(&("VmCreated", e.message.as_str())) {
            out.push(format!("{}: created twice (event {}: {})", e.object, e.seq, e.message));
        }
        last.insert(&e.object, (&e.reason, &e.message));
        if ONCE.contains(&e.reason.as_str()) {
            let n = once.entry((&e.object, &e.reason)).or_insert(0);
            *n += 1;
            if *n == 2 {
                out.push(format!("{}: {} logged more than once (again as event {})", e.object, e.reason, e.seq));
            }
        }
        if e.seq <= prev_seq {
            out.push(format!("event {} comes after event {prev_seq}", e.seq));
        }
        prev_seq = e.seq;
        // GitOps stamps its events with wall time; the rest use the simulated clock.
        if e.component == "GitOps" {
            continue;
        }
        if let Ok(t) = humantime::parse_rfc3339_weak(&e.time) {
            if let Some((pseq, pt)) = prev {
                if t < pt {
                    out.push(format!("event {} ({}) is stamped before event {pseq}: the clock went back", e.seq, e.time));
                }
            }
            prev = Some((e.seq, t));
        }
    }
    Ok(())
}
