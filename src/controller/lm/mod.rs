//! LiveMigration reconciler (manual s4). `preconditions.rs` checks every precondition
//! and reports all conflicts together (VMS2404/SEC2405/VMS2461, or VMS2460 for a check
//! that passes); a DEFINED_ONLY definition moves at once (VMS2320); otherwise
//! `phases.rs` runs the four phases on the virtual clock: setup (reservations on the
//! target), pre-copy rounds over the link (shared by concurrent migrations, limited by
//! the /390 monitors' CPU) ending with the last storage transfer, suspend and resume,
//! post-treatment. A fault on the way (target off, link down, VM deleted) rolls
//! everything back: the VM keeps running on the source. `console.rs` words the lines.
//!
//! One decision differs from VM2000 on purpose: VM2000 rejects a second migration
//! leaving a busy source SU (s4.8 "Only one LM can be started on a source SU. Every
//! further start is rejected as long as the LM is running"); a declarative object is
//! queued instead (phase Pending, MONJV $S "task accepted") and started when the source
//! is free, so VM2000 itself never sees two at once.

mod console;
mod phases;
mod preconditions;

pub use phases::{cleanup, rollback};

use super::common::{model_of, wake_waiting};
use super::sucluster::server_of;
use super::{Cx, Outcome};
use crate::api::{
    set_condition, ConditionStatus, CopyProgress, DeviceUsage, Kind, LiveMigrationSpec, LiveMigrationStatus, LmPhase,
    ManagementClusterSpec, Object, OperationMode, SUClusterSpec, SuType, VMDefinitionSpec, VmState,
};
use crate::controller::runtime::Action;
use crate::sim::migration::{self as mig, LinkRef, SimMigration};
use crate::sim::{Reservation, SimVm, World};
use crate::store::EventType;
use console::{vm_label, Console};
use preconditions::{found, preconditions, reject, Side};
use std::collections::BTreeMap;

/// The SU cluster that has both SUs.
fn su_cluster<'a>(cx: &'a Cx, a: &str, b: &str) -> Option<&'a Object<SUClusterSpec, crate::api::SUClusterStatus>> {
    cx.cache.typed::<SUClusterSpec>().find(|c| {
        c.spec.server_units.iter().any(|s| s.as_str() == a) && c.spec.server_units.iter().any(|s| s.as_str() == b)
    })
}

/// The other SU of the SU cluster that has `su` (when there is exactly one).
fn other_su(cx: &Cx, su: &str) -> Option<String> {
    let mut it = cx
        .cache
        .typed::<SUClusterSpec>()
        .filter(|c| c.spec.server_units.iter().any(|s| s.as_str() == su))
        .flat_map(|c| c.spec.server_units.iter().filter(|s| s.as_str() != su).map(|s| s.to_string()));
    let first = it.next();
    if it.next().is_some() {
        return None;
    }
    first
}

/// The link between two SUs and its bandwidth: the ISL-E between two servers, the Net
/// Unit inside one.
fn link_between(cx: &Cx, a: &str, b: &str) -> Option<(LinkRef, f64)> {
    let (sa, spec_a) = server_of(cx.cache, a)?;
    let (sb, _) = server_of(cx.cache, b)?;
    if sa == sb {
        return Some((LinkRef::NetUnit(sa.to_string()), spec_a.net_unit.speed_gbps.gbps()));
    }
    let mc = cx
        .cache
        .typed::<ManagementClusterSpec>()
        .find(|m| m.spec.servers.iter().any(|s| s.as_str() == sa) && m.spec.servers.iter().any(|s| s.as_str() == sb))?;
    let gbps = mc.spec.isl_e.as_ref().map(|i| i.bandwidth_gbps)?;
    Some((LinkRef::IslE(mc.name().to_string()), gbps))
}

/// The copy rate a migration gets now: its share of the link, and on /390 what the
/// monitors' CPUs allow (about 1 CPU on the source, 1.4 on the target, s4.8).
pub fn copy_rate(w: &World, m: &SimMigration, lm: &str) -> f64 {
    let gbps = match &m.link {
        LinkRef::IslE(mc) => w.links.get(mc).map(|l| l.bandwidth_gbps).unwrap_or(m.link_gbps),
        LinkRef::NetUnit(_) => m.link_gbps,
    };
    let active = |x: &SimMigration| matches!(x.phase, LmPhase::Copying | LmPhase::Setup);
    let sharing =
        w.migrations.iter().filter(|(k, x)| (k.as_str() == lm || active(x)) && x.link == m.link).count().max(1);
    let mut rate = mig::gbps_to_mibps(gbps) / sharing as f64;
    if m.su_type == SuType::S390 {
        let cpus = |su: &str| w.su(su).map(|s| s.cpus as f64).unwrap_or(1.0);
        let incoming =
            w.migrations.iter().filter(|(k, x)| (k.as_str() == lm || active(x)) && x.target == m.target).count().max(1);
        let share = (cpus(&m.source) / 1.0).min(cpus(&m.target) / 1.4 / incoming as f64).min(1.0);
        rate = rate.min(mig::MONITOR_COPY_MIBPS * share);
    }
    rate
}

fn dirty_rate(cx: &Cx, vm: &str) -> f64 {
    cx.world.dirty_override.get(vm).copied().unwrap_or_else(|| {
        cx.cache.get_typed::<VMDefinitionSpec>(vm).map(|v| v.spec.workload.dirty_rate_mi_bps).unwrap_or(0.0)
    })
}

/// Reconciles one LiveMigration.
pub fn reconcile(cx: &mut Cx, o: &Object<LiveMigrationSpec, LiveMigrationStatus>) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let gen = o.metadata.generation.unwrap_or(1);
    let mut st = o.status.clone();
    let terminal = matches!(st.phase, LmPhase::Completed | LmPhase::Aborted | LmPhase::Rejected | LmPhase::Possible);
    if let Some(m) = cx.world.migrations.get(&name) {
        if m.phase == LmPhase::Aborted && !terminal {
            // Rolled back from outside (the VM was deleted): report it as aborted.
            let why = m.abort_reason.clone().unwrap_or_else(|| "aborted".into());
            return Ok(phases::aborted(cx, o, st, &name, &why));
        }
        if !matches!(m.phase, LmPhase::Completed | LmPhase::Aborted) {
            return phases::step(cx, o, st);
        }
    }
    // A check-only object keeps telling whether a migration is possible now; an
    // ended migration stays ended until its spec changes.
    if terminal && st.observed_generation == Some(gen) && !o.spec.check_only {
        return Ok(Outcome { status: None, action: Action::Await });
    }
    if st.observed_generation != Some(gen) {
        st = LiveMigrationStatus::default();
    }
    st.observed_generation = Some(gen);
    start(cx, o, st)
}

/// Checks a new request and starts it, queues it, or ends it (rejected, possible,
/// definition moved).
fn start(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
) -> anyhow::Result<Outcome> {
    let spec = &o.spec;
    let vm_key = spec.vm.to_string();
    // What the migration refers to may not be there yet (a folder applied in one go):
    // the object waits, and is checked in full when it is.
    let Some(vm_obj) = cx.cache.get_typed::<VMDefinitionSpec>(&vm_key).cloned() else {
        return Ok(waiting(cx, o, st, "VmNotFound", format!("VMDefinition {vm_key} does not exist (yet)")));
    };
    let Some(v) = cx.world.vms.get(&vm_key).cloned() else {
        let msg = format!("VM {} has no definition on any SU yet", vm_obj.spec.vm_name);
        return Ok(waiting(cx, o, st, "VmNotPlaced", msg));
    };
    let source = v.su.clone();
    st.source_server_unit = Some(source.clone());
    let Some(target) = spec.target_server_unit.as_ref().map(|t| t.to_string()).or_else(|| other_su(cx, &source)) else {
        let why = format!("SU {source} is in no SU cluster with exactly one other SU; give spec.targetServerUnit");
        return Ok(reject(cx, o, st, vec![found(Side::Source, "TargetNotDetermined", why, None)], &source, None));
    };
    st.target_server_unit = Some(target.clone());
    // MIGRATE-VM-DEFINITION of an initialised VM is refused.
    if spec.definition_only && v.initialised() {
        let label = vm_label(v.index, &v.vm_name);
        let why = format!("VMS4015 VIRTUAL MACHINE {label} ALREADY INITIALIZED. /MIGRATE-VM-DEFINITION REJECTED");
        let f = found(Side::Source, "VmAlreadyInitialised", why, None);
        return Ok(reject(cx, o, st, vec![f], &source, Some(&target)));
    }
    if let Some(c) = su_cluster(cx, &source, &target) {
        if c.status.state.is_none() || c.status.observed_generation != c.metadata.generation {
            let msg = format!("SU cluster {} has not been reconciled yet", c.name());
            return Ok(waiting(cx, o, st, "SuClusterNotReconciled", msg));
        }
    }
    let conflicts = preconditions(cx, &vm_key, &source, &target);
    if !spec.check_only
        && !conflicts.is_empty()
        && conflicts.iter().all(|c| c.conflict.reason == "MigrationFromSourceRunning")
    {
        return Ok(queued(cx, o, st, &source));
    }
    if !conflicts.is_empty() {
        return Ok(reject(cx, o, st, conflicts, &source, Some(&target)));
    }
    if spec.check_only {
        return Ok(possible(cx, o, st, &v, &target));
    }
    if !v.initialised() {
        return Ok(definition_moved(cx, o, st, &vm_key, &v, &target));
    }
    Ok(begin(cx, o, st, &vm_key, &vm_obj.spec, &v, &target))
}

/// The decision kept on purpose (see the module comment): a second migration leaving
/// a busy source waits with MONJV $S and is checked again in full when that one ends.
fn queued(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    source: &str,
) -> Outcome {
    let now = cx.now();
    st.phase = LmPhase::Pending;
    st.monjv = Some("$S".into());
    st.conflicts.clear();
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::False,
        "Queued",
        &format!("waits until the live migration leaving SU {source} ends (one outgoing migration per SU)"),
        o.metadata.generation,
        &now,
    );
    done(o, st)
}

/// CHECK-VM-MIGRATION that passes: VMS2460.
fn possible(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    v: &SimVm,
    target: &str,
) -> Outcome {
    let now = cx.now();
    let label = vm_label(v.index, &v.vm_name);
    st.phase = LmPhase::Possible;
    st.conflicts.clear();
    st.messages = vec![format!("VMS2460 LIVE MIGRATION OF VM {label} TO TARGET SU '{target}' POSSIBLE")];
    set_condition(
        &mut st.conditions,
        "Possible",
        ConditionStatus::True,
        "PreconditionsMet",
        "no conflicts",
        o.metadata.generation,
        &now,
    );
    done(o, st)
}

/// MIGRATE-VM-DEFINITION: the definition moves; nothing is allocated (VMS2320).
fn definition_moved(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    vm_key: &str,
    v: &SimVm,
    target: &str,
) -> Outcome {
    let name = o.name();
    let now = cx.now();
    let source = v.su.clone();
    cx.world.move_vm(vm_key, target);
    cx.world.touch();
    st.phase = LmPhase::Completed;
    st.monjv = Some("$T".into());
    st.start_time = Some(now.clone());
    st.completion_time = Some(now.clone());
    st.duration_ms = Some(0);
    st.messages = vec![format!("VMS2320 DEFINITION OF VM {} MIGRATED TO TARGET SU '{target}'", v.vm_name)];
    let msg = st.messages[0].clone();
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::True,
        "DefinitionMigrated",
        &msg,
        o.metadata.generation,
        &now,
    );
    cx.event(
        EventType::Normal,
        "INFO",
        "Sys-Mgmt",
        format!("LiveMigration/{name}"),
        "DefinitionMigrated",
        format!("definition of VM {} migrated from {source} to {target}", v.vm_name),
    );
    cx.wake.push((Kind::VMDefinition, vm_key.to_string()));
    wake_waiting(cx, &source);
    done(o, st)
}

/// Devices a live migration detaches (tapes, local disks; PAV aliases come back on
/// the target), and those it moves. Devices an earlier migration detached stay
/// detached: not moved, not reported.
fn split_devices(w: &World, v: &SimVm) -> (BTreeMap<String, bool>, BTreeMap<String, DeviceUsage>) {
    let detach: BTreeMap<String, bool> = v
        .devices
        .keys()
        .filter(|mn| !v.detached.contains(*mn))
        .filter_map(|mn| {
            let t = w.su(&v.su)?.devices.get(mn)?.device_type;
            crate::sim::vm::detached_by_lm(t).map(|back| (mn.clone(), back))
        })
        .collect();
    let devices = v
        .devices
        .iter()
        .filter(|(mn, _)| detach.get(*mn) != Some(&false) && !v.detached.contains(*mn))
        .map(|(k, u)| (k.clone(), *u))
        .collect();
    (detach, devices)
}

/// Phase 1: setup. Reserves memory, index and devices on the target.
fn begin(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    vm_key: &str,
    spec: &VMDefinitionSpec,
    v: &SimVm,
    target: &str,
) -> Outcome {
    let name = o.name().to_string();
    let now = cx.now();
    let source = v.su.clone();
    let (link, gbps) = link_between(cx, &source, target).expect("checked by the preconditions");
    let (su_type, native) =
        cx.world.su(&source).map(|s| (s.su_type, s.mode == OperationMode::Native)).unwrap_or((SuType::S390, false));
    let fixed = v.index.filter(|_| matches!(spec.vm_index, crate::api::VmIndex::Fixed(_)));
    let index = cx.world.pick_index(target, fixed, vm_key);
    let (detach, devices) = split_devices(cx.world, v);
    cx.world.hold_devices(target, vm_key, &devices);
    let now_ms = cx.world.clock.now_ms;
    let loaded = v.state == VmState::Running;
    let console = Console {
        source: &source,
        target,
        vm_name: &v.vm_name,
        source_index: v.index,
        target_index: index,
        su_type,
        native,
        loaded,
    };
    let messages = console.setup(&devices, &detach);
    let mut m = SimMigration {
        vm: vm_key.to_string(),
        source: source.clone(),
        target: target.to_string(),
        source_index: v.index,
        su_type,
        link,
        link_gbps: gbps,
        phase: LmPhase::Setup,
        started_ms: now_ms,
        next_at_ms: crate::sim::clock::later(now_ms, mig::SETUP_MS),
        reservation: Some(Reservation {
            vm: vm_key.to_string(),
            vm_name: v.vm_name.clone(),
            su: target.to_string(),
            index,
            memory_mib: v.memory_mib,
            devices,
        }),
        memory_mib: v.memory_mib as f64,
        sending_mib: 0.0,
        rate_mibps: 0.0,
        rounds: Vec::new(),
        rest_mib: 0.0,
        downtime_target_ms: o.spec.downtime_target_ms.unwrap_or(mig::DEFAULT_DOWNTIME_TARGET_MS),
        budget_ms: 0,
        downtime_ms: None,
        messages,
        warnings: Vec::new(),
        last_transfer: false,
        loaded,
        native,
        abort_reason: None,
    };
    let different = phases::differently_generated(cx.world, &m, &v.devices);
    if !different.is_empty() {
        let list = different.join(", ");
        m.messages.push(format!(
            "{target}: SEC2440 DEVICES {list} GENERATED DIFFERENTLY ON TARGET SU '{target}': NOT ASSIGNABLE TO VIRTUAL MACHINE {} AFTER THE MIGRATION",
            vm_label(index, &v.vm_name)
        ));
        m.warnings.push(format!("devices {list} are generated differently on {target} and cannot be assigned there"));
    }
    cx.world.migrations.insert(name.clone(), m);
    cx.world.touch();
    st.phase = LmPhase::Setup;
    st.monjv = Some("$R".into());
    st.start_time = Some(now.clone());
    st.conflicts.clear();
    cx.event(
        EventType::Normal,
        "INFO",
        "Sys-Mgmt",
        format!("LiveMigration/{name}"),
        "LiveMigrationStarted",
        format!("live migration of VM {} from {source} to {target} started", v.vm_name),
    );
    cx.wake.push((Kind::VMDefinition, vm_key.to_string()));
    sync_status(cx, &name, &mut st);
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::False,
        "InProgress",
        "phase Setup",
        o.metadata.generation,
        &now,
    );
    Outcome { status: Some(with_status(o, st)), action: Action::RequeueAfter(mig::SETUP_MS) }
}

/// Leaves the object Pending until what it refers to exists.
fn waiting(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    reason: &str,
    message: String,
) -> Outcome {
    let now = cx.now();
    st.phase = LmPhase::Pending;
    st.monjv = None;
    st.conflicts.clear();
    let kind = if o.spec.check_only { "Possible" } else { "Completed" };
    set_condition(&mut st.conditions, kind, ConditionStatus::Unknown, reason, &message, o.metadata.generation, &now);
    done(o, st)
}

fn with_status(o: &Object<LiveMigrationSpec, LiveMigrationStatus>, st: LiveMigrationStatus) -> crate::api::Resource {
    let mut r = o.clone();
    r.status = st;
    r.into_resource()
}

fn done(o: &Object<LiveMigrationSpec, LiveMigrationStatus>, st: LiveMigrationStatus) -> Outcome {
    Outcome::status(with_status(o, st))
}

/// Copies the world's view of a running migration into the status.
fn sync_status(cx: &Cx, name: &str, st: &mut LiveMigrationStatus) {
    let Some(m) = cx.world.migrations.get(name) else { return };
    st.phase = m.phase;
    st.source_server_unit = Some(m.source.clone());
    st.target_server_unit = Some(m.target.clone());
    st.rounds = m.rounds.clone();
    st.messages = m.messages.clone();
    st.downtime_ms = m.downtime_ms;
    st.progress = (m.phase == LmPhase::Copying).then(|| progress(cx, m));
}

/// The round in flight, for live views.
fn progress(cx: &Cx, m: &SimMigration) -> CopyProgress {
    let start = m.next_at_ms.saturating_sub((m.sending_mib / m.rate_mibps.max(0.001) * 1000.0).ceil() as u64);
    let dirty = dirty_rate(cx, &m.vm);
    // If it suspended after this round: what the workload dirties meanwhile.
    let secs = m.sending_mib / m.rate_mibps.max(0.001);
    let rest = (dirty * secs).min(m.memory_mib);
    CopyProgress {
        round: m.rounds.len() as u32,
        sending_mi_b: m.sending_mib,
        rate_mi_bps: m.rate_mibps,
        dirty_rate_mi_bps: dirty,
        round_start_time: cx.world.clock.rfc3339_at(start),
        round_start_ms: start,
        round_duration_ms: m.next_at_ms - start,
        expected_downtime_ms: (rest / m.rate_mibps.max(0.001) * 1000.0) as u64 + mig::SUSPEND_OVERHEAD_MS,
    }
}

/// The console of a running migration.
fn console_of<'a>(m: &'a SimMigration, vm_name: &'a str, target_index: Option<u32>) -> Console<'a> {
    Console {
        source: &m.source,
        target: &m.target,
        vm_name,
        source_index: m.source_index,
        target_index,
        su_type: m.su_type,
        native: m.native,
        loaded: m.loaded,
    }
}

/// Configuration strings of both SUs (s4.5), e.g. "390SU- 500-10B".
fn configurations(cx: &Cx, m: &SimMigration) -> (String, String) {
    let from = cx.world.configuration_of(&m.source, &model_of(cx, &m.source));
    let to = cx.world.configuration_of(&m.target, &model_of(cx, &m.target));
    (from, to)
}
