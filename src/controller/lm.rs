//! LiveMigration reconciler (manual s4): checks every precondition and reports all
//! conflicts together (VMS2404/VMS2461, or VMS2460 for a check that passes); moves a
//! DEFINED_ONLY definition at once (VMS2320); otherwise runs the four phases on the
//! virtual clock: setup (reservations on the target), pre-copy rounds over the link
//! (shared by concurrent migrations, limited by the /390 monitors' CPU), suspend and
//! resume, post-treatment. A fault on the way (target off, link down, VM deleted)
//! rolls everything back: the VM keeps running on the source.
//!
//! Message IDs are the manual's. Where the manual names none (aborts other than
//! VMS2425), lines carry sectl's own IDs, SEC2xxx.

use super::sucluster::server_of;
use super::vm::{migrating, model_of, wake_waiting, wanted_devices};
use super::{Cx, Outcome};
use crate::api::{
    set_condition, ClusterState, ConditionStatus, Conflict, CopyProgress, CopyRound, DeviceUsage, Kind,
    LiveMigrationSpec, LiveMigrationStatus, LmPhase, ManagementClusterSpec, MigrationRecord, Object, SUClusterSpec,
    SuType, VMDefinitionSpec, VmState,
};
use crate::controller::runtime::Action;
use crate::sim::migration::{self as mig, LinkRef, Next, SimMigration};
use crate::sim::{Reservation, World};
use crate::store::EventType;
use std::collections::BTreeMap;

fn conflict(code: Option<&str>, reason: &str, message: String) -> Conflict {
    Conflict { code: code.map(|c| c.to_string()), reason: reason.to_string(), message }
}

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
            return Ok(aborted(cx, o, st, &name, &why));
        }
        if !matches!(m.phase, LmPhase::Completed | LmPhase::Aborted) {
            return step(cx, o, st);
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

fn vm_label(index: Option<u32>, vm_name: &str) -> String {
    match index {
        Some(i) => format!("({i},{vm_name})"),
        None => format!("(-,{vm_name})"),
    }
}

fn start(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let spec = &o.spec;
    let vm_key = spec.vm.to_string();
    // What the migration refers to may not be there yet (a folder applied in one go):
    // the object waits, and is checked in full when it is.
    let Some(vm_obj) = cx.cache.get_typed::<VMDefinitionSpec>(&vm_key).cloned() else {
        return Ok(waiting(cx, o, st, "VmNotFound", format!("VMDefinition {vm_key} does not exist (yet)")));
    };
    let Some(v) = cx.world.vms.get(&vm_key).cloned() else {
        return Ok(waiting(
            cx,
            o,
            st,
            "VmNotPlaced",
            format!("VM {} has no definition on any SU yet", vm_obj.spec.vm_name),
        ));
    };
    let source = v.su.clone();
    st.source_server_unit = Some(source.clone());
    let target = match spec.target_server_unit.as_ref().map(|t| t.to_string()).or_else(|| other_su(cx, &source)) {
        Some(t) => t,
        None => {
            let c = conflict(
                None,
                "TargetNotDetermined",
                format!("SU {source} is in no SU cluster with exactly one other SU; give spec.targetServerUnit"),
            );
            return Ok(reject(cx, o, st, vec![c], None));
        }
    };
    st.target_server_unit = Some(target.clone());
    let label = vm_label(v.index, &v.vm_name);

    // MIGRATE-VM-DEFINITION of an initialised VM is refused.
    if spec.definition_only && v.initialised() {
        let c = conflict(
            Some("VMS4015"),
            "VmAlreadyInitialised",
            format!("VMS4015 VIRTUAL MACHINE {label} ALREADY INITIALIZED. /MIGRATE-VM-DEFINITION REJECTED"),
        );
        return Ok(reject(cx, o, st, vec![c], Some(&target)));
    }
    if let Some(c) = su_cluster(cx, &source, &target) {
        if c.status.state.is_none() || c.status.observed_generation != c.metadata.generation {
            let msg = format!("SU cluster {} has not been reconciled yet", c.name());
            return Ok(waiting(cx, o, st, "SuClusterNotReconciled", msg));
        }
    }
    let conflicts = preconditions(cx, &vm_key, &source, &target);
    // VM2000 allows one outgoing migration per SU and rejects a second one; a
    // declarative object waits for its turn instead (MONJV $S: accepted), and is
    // checked again in full when the running one ends.
    if !spec.check_only && !conflicts.is_empty() && conflicts.iter().all(|c| c.reason == "MigrationFromSourceRunning") {
        st.phase = LmPhase::Pending;
        st.monjv = Some("$S".into());
        st.conflicts.clear();
        set_condition(
            &mut st.conditions,
            "Completed",
            ConditionStatus::False,
            "Queued",
            &format!("waits until the live migration leaving SU {source} ends (one outgoing migration per SU)"),
            Some(gen),
            &now,
        );
        return Ok(done(o, st));
    }
    if !conflicts.is_empty() {
        return Ok(reject(cx, o, st, conflicts, Some(&target)));
    }
    if spec.check_only {
        st.phase = LmPhase::Possible;
        st.conflicts.clear();
        st.messages = vec![format!("VMS2460 LIVE MIGRATION OF VM {label} TO TARGET SU '{target}' POSSIBLE")];
        set_condition(
            &mut st.conditions,
            "Possible",
            ConditionStatus::True,
            "PreconditionsMet",
            "no conflicts",
            Some(gen),
            &now,
        );
        return Ok(done(o, st));
    }
    if !v.initialised() {
        // MIGRATE-VM-DEFINITION: move the definition; nothing is allocated.
        cx.world.move_vm(&vm_key, &target);
        cx.world.touch();
        st.phase = LmPhase::Completed;
        st.monjv = Some("$T".into());
        st.start_time = Some(now.clone());
        st.completion_time = Some(now.clone());
        st.duration_ms = Some(0);
        st.messages = vec![format!("VMS2320 DEFINITION OF VM {} MIGRATED TO TARGET SU '{target}'", v.vm_name)];
        set_condition(
            &mut st.conditions,
            "Completed",
            ConditionStatus::True,
            "DefinitionMigrated",
            &st.messages[0].clone(),
            Some(gen),
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
        cx.wake.push((Kind::VMDefinition, vm_key));
        wake_waiting(cx, &source);
        return Ok(done(o, st));
    }
    // Phase 1: setup. Reserve memory, index and devices on the target.
    let (link, gbps) = link_between(cx, &source, &target).expect("checked by the preconditions");
    let su_type = cx.world.su(&source).map(|s| s.su_type).unwrap_or(SuType::S390);
    let index = cx.world.pick_index(
        &target,
        v.index.filter(|_| matches!(vm_obj.spec.vm_index, crate::api::VmIndex::Fixed(_))),
        &vm_key,
    );
    // Devices an earlier migration detached stay detached: not moved, not reported.
    let detach: BTreeMap<String, bool> = v
        .devices
        .keys()
        .filter(|mn| !v.detached.contains(*mn))
        .filter_map(|mn| {
            let t = cx.world.su(&source)?.devices.get(mn)?.device_type;
            crate::sim::vm::detached_by_lm(t).map(|back| (mn.clone(), back))
        })
        .collect();
    let devices: BTreeMap<String, DeviceUsage> = v
        .devices
        .iter()
        .filter(|(mn, _)| detach.get(*mn) != Some(&false) && !v.detached.contains(*mn))
        .map(|(k, u)| (k.clone(), *u))
        .collect();
    cx.world.hold_devices(&target, &vm_key, &devices);
    let memory = v.memory_mib as f64;
    let now_ms = cx.world.clock.now_ms;
    let mut m = SimMigration {
        vm: vm_key.clone(),
        source: source.clone(),
        target: target.clone(),
        source_index: v.index,
        su_type,
        link,
        link_gbps: gbps,
        phase: LmPhase::Setup,
        started_ms: now_ms,
        next_at_ms: crate::sim::clock::later(now_ms, mig::SETUP_MS),
        reservation: Some(Reservation {
            vm: vm_key.clone(),
            vm_name: v.vm_name.clone(),
            su: target.clone(),
            index,
            memory_mib: v.memory_mib,
            devices: devices.clone(),
        }),
        memory_mib: memory,
        sending_mib: 0.0,
        rate_mibps: 0.0,
        rounds: Vec::new(),
        rest_mib: 0.0,
        downtime_target_ms: spec.downtime_target_ms.unwrap_or(mig::DEFAULT_DOWNTIME_TARGET_MS),
        budget_ms: 0,
        downtime_ms: None,
        messages: Vec::new(),
        warnings: Vec::new(),
        abort_reason: None,
    };
    let new_label = vm_label(index, &v.vm_name);
    let x86 = su_type == SuType::X86;
    m.messages.push(format!(
        "{source}: SEC2000 COMMAND /MIGRATE-VM VM-ID={},SERVER-UNIT-NAME={target}",
        v.index.map(|i| i.to_string()).unwrap_or(v.vm_name.clone())
    ));
    m.messages.push(format!("{source}: VMS2450 LIVE MIGRATION OF VM {label} TO TARGET SU '{target}' STARTED"));
    if !x86 {
        m.messages
            .push(format!("{target}: VMS2430 LIVE MIGRATION OF VM {new_label} FROM SOURCE SU '{source}' STARTED"));
        m.messages.push(format!("{target}: VMS3050 VIRTUAL MACHINE {new_label} CREATED"));
    } else {
        m.messages.push(format!("{target}: VMS6020 VIRTUAL MACHINE {new_label} CREATED BY SYSTEM ADMINISTRATION"));
    }
    for mn in devices.keys() {
        m.messages.push(format!("{target}: VMS4005 DEVICE '{mn}' ASSIGNED TO VIRTUAL MACHINE {new_label}"));
    }
    m.messages.push(format!("{}: ETMDR01 DYNAMIC RECONFIGURATION WITH FUNCTION 'MIGRATE' STARTED", v.vm_name));
    for (mn, back) in &detach {
        let what = if *back { "PAV alias, re-attached on the target" } else { "stays detached" };
        m.messages.push(format!("{}: SEC2011 /DETACH-DEVICE {mn} ({what})", v.vm_name));
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
    cx.wake.push((Kind::VMDefinition, vm_key));
    sync_status(cx, &name, &mut st);
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::False,
        "InProgress",
        "phase Setup",
        Some(gen),
        &now,
    );
    Ok(Outcome { status: Some(with_status(o, st)), action: Action::RequeueAfter(mig::SETUP_MS) })
}

/// Every unmet precondition (s4.1, s4.8), all together.
fn preconditions(cx: &Cx, vm: &str, source: &str, target: &str) -> Vec<Conflict> {
    let mut out = Vec::new();
    let w = &*cx.world;
    let v = &w.vms[vm];
    let vm_obj = cx.cache.get_typed::<VMDefinitionSpec>(vm).expect("checked");
    if source == target {
        out.push(conflict(None, "SameServerUnit", format!("the VM is already on SU {target}")));
        return out;
    }
    let (Some(src), Some(tgt)) = (w.su(source), w.su(target)) else {
        out.push(conflict(None, "ServerUnitNotFound", format!("SU {target} does not exist")));
        return out;
    };
    if v.index == Some(1) {
        out.push(conflict(None, "MonitorVm", "the monitor VM cannot be migrated".into()));
    }
    match su_cluster(cx, source, target) {
        None => {
            out.push(conflict(None, "NotSameSuCluster", format!("SUs {source} and {target} are not in one SU cluster")))
        }
        Some(c) if !c.spec.active => {
            out.push(conflict(None, "SuClusterInactive", format!("SU cluster {} is INACTIVE", c.name())))
        }
        Some(c) if c.status.state == Some(ClusterState::Error) => out.push(conflict(
            None,
            "SuClusterError",
            format!("SU cluster {} is in ERROR: {}", c.name(), c.status.reasons.join("; ")),
        )),
        Some(_) => {}
    }
    if src.su_type != tgt.su_type {
        out.push(conflict(
            None,
            "ArchitectureMismatch",
            format!("SU {source} is {} but SU {target} is {}", src.su_type, tgt.su_type),
        ));
    }
    if src.mode != tgt.mode {
        out.push(conflict(
            None,
            "OperationModeMismatch",
            format!("SU {source} runs {:?} but SU {target} runs {:?}", src.mode, tgt.mode),
        ));
    }
    if link_between(cx, source, target).is_none() {
        out.push(conflict(
            None,
            "NoManagementCluster",
            format!("SUs {source} and {target} are in two servers without a management cluster with ISL-E"),
        ));
    }
    if !w.powered(source) {
        out.push(conflict(None, "SourceUnavailable", format!("SU {source} is powered off")));
    }
    if v.state == VmState::Wait {
        out.push(conflict(None, "VmStateWait", format!("VM {} is in state WAIT", v.vm_name)));
    }
    // Target resources (the same rules as placing a definition).
    let mut devices = if v.initialised() { v.devices.clone() } else { wanted_devices(&vm_obj.spec) };
    // Tapes and local disks are detached for the migration and not attached on the
    // target (s4.4, s4.8): the target need not have them (a local disk never has).
    // Devices an earlier migration detached are not moved either.
    if v.initialised() {
        devices.retain(|mn, _| {
            !v.detached.contains(mn)
                && src.devices.get(mn).and_then(|d| crate::sim::vm::detached_by_lm(d.device_type)) != Some(false)
        });
    }
    let fixed = match vm_obj.spec.vm_index {
        crate::api::VmIndex::Fixed(_) => v.index,
        crate::api::VmIndex::Any => None,
    };
    let demand = crate::sim::Demand {
        owner: vm,
        vm_name: &v.vm_name,
        index: fixed,
        memory_mib: v.memory_mib,
        pool: &v.pool,
        group: v.group.as_deref(),
        devices: &devices,
        resources: v.initialised(),
    };
    for s in w.shortfalls(target, &demand) {
        out.push(Conflict { code: s.code.map(|c| c.to_string()), reason: s.reason.to_string(), message: s.message });
    }
    // I/O configuration: each assigned device generated compatibly (same MN, type,
    // host connector, unit ID).
    for mn in devices.keys() {
        if let (Some(a), Some(b)) = (src.devices.get(mn), tgt.devices.get(mn)) {
            if a.device_type != b.device_type || a.host_connector != b.host_connector || a.unit_id != b.unit_id {
                out.push(conflict(None, "DeviceNotCompatible", format!(
                    "device {mn} is generated differently on {target} (type {:?}, host connector {}, unit ID {}) than on {source} ({:?}, {}, {})",
                    b.device_type, b.host_connector, b.unit_id, a.device_type, a.host_connector, a.unit_id)));
            }
        }
    }
    if src.su_type == SuType::S390 {
        for (su, s) in [(source, src), (target, tgt)] {
            if !s.rewas_up {
                out.push(conflict(
                    None,
                    "RewasNotActive",
                    format!("REWAS is not active in the monitor system of {su}"),
                ));
            }
        }
    }
    if w.migrations
        .values()
        .any(|m| m.source == source && m.vm != vm && !matches!(m.phase, LmPhase::Completed | LmPhase::Aborted))
    {
        out.push(conflict(
            None,
            "MigrationFromSourceRunning",
            format!("another live migration from SU {source} is running"),
        ));
    }
    if migrating(w, vm) {
        out.push(conflict(None, "AlreadyMigrating", format!("VM {} is already being migrated", v.vm_name)));
    }
    for (su, s) in [(source, src), (target, tgt)] {
        if s.io_change_running {
            out.push(conflict(
                None,
                "IoConfigurationChangeRunning",
                format!("a dynamic I/O configuration change is running on {su}"),
            ));
        }
        if s.shutdown_initiated {
            out.push(conflict(None, "Vm2000ShutdownInitiated", format!("a VM2000 shutdown was initiated on {su}")));
        }
    }
    out
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

/// Ends the object as Rejected with all conflicts (VMS2404 lists the target's).
fn reject(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    conflicts: Vec<Conflict>,
    target: Option<&str>,
) -> Outcome {
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let vm = cx.world.vms.get(o.spec.vm.as_str());
    let label = vm.map(|v| vm_label(v.index, &v.vm_name)).unwrap_or_else(|| format!("(-,{})", o.spec.vm));
    let t = target.unwrap_or("-");
    let mut messages = Vec::new();
    let reasons: Vec<String> = conflicts
        .iter()
        .filter_map(|c| match (&c.code, &c.reason[..]) {
            (Some(code), _) if code == "VMS4015" => None,
            (Some(code), _) => Some(format!("{code},{}", device_of(&c.message).unwrap_or_default())),
            (None, r) => Some(r.to_string()),
        })
        .collect();
    if conflicts.iter().any(|c| c.code.as_deref() == Some("VMS4015")) {
        messages.push(conflicts[0].message.clone());
    } else {
        messages.push(format!(
            "VMS2404 LIVE MIGRATION OF VM {label} REJECTED BY THE TARGET SU '{t}'. REASON: {}",
            reasons.join(" ")
        ));
        messages.push(format!("VMS2461 LIVE MIGRATION OF VM {label} TO TARGET SU '{t}' NOT POSSIBLE"));
    }
    let changed = st.phase != LmPhase::Rejected || st.conflicts != conflicts;
    st.phase = LmPhase::Rejected;
    st.monjv = if o.spec.check_only { None } else { Some("$AF".into()) };
    st.messages = messages;
    let summary: Vec<&str> = conflicts.iter().map(|c| c.reason.as_str()).collect();
    set_condition(
        &mut st.conditions,
        if o.spec.check_only { "Possible" } else { "Completed" },
        ConditionStatus::False,
        "Rejected",
        &summary.join(", "),
        Some(gen),
        &now,
    );
    if changed {
        cx.event(
            EventType::Warning,
            "WARNING",
            "Sys-Mgmt",
            format!("LiveMigration/{}", o.name()),
            "LiveMigrationRejected",
            format!(
                "live migration of {} {}: {}",
                o.spec.vm,
                if o.spec.check_only { "not possible" } else { "rejected" },
                conflicts.iter().map(|c| c.message.as_str()).collect::<Vec<_>>().join("; ")
            ),
        );
    }
    st.conflicts = conflicts;
    done(o, st)
}

fn device_of(msg: &str) -> Option<String> {
    let s = msg.split('\'').nth(1)?;
    Some(s.to_string())
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
    st.progress = if m.phase == LmPhase::Copying {
        let start = m.next_at_ms.saturating_sub((m.sending_mib / m.rate_mibps.max(0.001) * 1000.0).ceil() as u64);
        Some(CopyProgress {
            round: m.rounds.len() as u32,
            sending_mi_b: m.sending_mib,
            rate_mi_bps: m.rate_mibps,
            dirty_rate_mi_bps: dirty_rate(cx, &m.vm),
            round_start_time: cx.world.clock.rfc3339_at(start),
            round_start_ms: start,
            round_duration_ms: m.next_at_ms - start,
            expected_downtime_ms: {
                // If it suspended after this round: what the workload dirties meanwhile.
                let secs = m.sending_mib / m.rate_mibps.max(0.001);
                let rest = (dirty_rate(cx, &m.vm) * secs).min(m.memory_mib);
                (rest / m.rate_mibps.max(0.001) * 1000.0) as u64 + mig::SUSPEND_OVERHEAD_MS
            },
        })
    } else {
        None
    };
}

/// Why a running migration must stop now, if it must.
fn fault(cx: &Cx, m: &SimMigration) -> Option<String> {
    if !cx.world.vms.contains_key(&m.vm) {
        return Some("the VM definition was deleted".into());
    }
    if !cx.world.powered(&m.target) {
        return Some(format!("target SU {} is not available", m.target));
    }
    if !cx.world.powered(&m.source) {
        return Some(format!("source SU {} is not available", m.source));
    }
    if let LinkRef::IslE(mc) = &m.link {
        if !cx.world.links.get(mc).is_some_and(|l| l.up) {
            return Some("the network connection between the SE Servers (ISL-E) was interrupted".into());
        }
    }
    None
}

/// Undoes a running migration: the target's reservations are released and the VM
/// stays (or keeps running) on the source. Returns false when there was nothing to undo.
pub fn rollback(cx: &mut Cx, lm: &str, why: &str) -> bool {
    let Some(mut m) = cx.world.migrations.remove(lm) else { return false };
    if matches!(m.phase, LmPhase::Completed | LmPhase::Aborted) {
        return false;
    }
    // After the resume (post-treatment) the VM already runs on the target and holds
    // its devices there; the source's are released. Nothing is left to undo.
    let resumed = m.phase == LmPhase::PostTreatment;
    if !resumed {
        cx.world.release_devices(&m.target, &m.vm);
    }
    m.reservation = None;
    let vm_name = cx.world.vms.get(&m.vm).map(|v| v.vm_name.clone()).unwrap_or_else(|| m.vm.clone());
    let index = cx.world.vms.get(&m.vm).and_then(|v| v.index);
    let label = vm_label(index, &vm_name);
    let (source, target) = (m.source.clone(), m.target.clone());
    if resumed {
        m.messages.push(format!(
            "{target}: SEC2002 LIVE MIGRATION OF VM {label} FROM SOURCE SU '{source}' ENDED AFTER THE RESUME: {why}; THE VM RUNS ON THE TARGET SU"
        ));
    } else {
        m.messages.push(format!(
            "{source}: SEC2001 LIVE MIGRATION OF VM {label} TO TARGET SU '{target}' ABORTED: {why}; ALL ACTIONS REVERSED"
        ));
    }
    if let Some(v) = cx.world.vms.get(&m.vm).filter(|_| !resumed) {
        for mn in v.devices.keys() {
            if cx
                .world
                .su(&source)
                .and_then(|s| s.devices.get(mn))
                .is_some_and(|d| crate::sim::vm::detached_by_lm(d.device_type).is_some())
            {
                m.messages.push(format!("{vm_name}: SEC2012 /ATTACH-DEVICE {mn} (re-attached after the abort)"));
            }
        }
    }
    m.phase = LmPhase::Aborted;
    m.abort_reason = Some(why.to_string());
    let stays = if resumed { &target } else { &source };
    cx.event(
        EventType::Warning,
        "WARNING",
        "Sys-Mgmt",
        format!("LiveMigration/{lm}"),
        "LiveMigrationAborted",
        format!("live migration of VM {vm_name} from {source} to {target} aborted: {why}; the VM stays on {stays}"),
    );
    cx.wake.push((Kind::VMDefinition, m.vm.clone()));
    cx.world.migrations.insert(lm.to_string(), m);
    cx.world.touch();
    wake_waiting(cx, &target);
    // Migrations queued behind this one may start now.
    let queued: Vec<String> =
        cx.cache.typed::<LiveMigrationSpec>().filter(|l| l.name() != lm).map(|l| l.name().to_string()).collect();
    cx.wake.extend(queued.into_iter().map(|n| (Kind::LiveMigration, n)));
    true
}

/// Advances a running migration by one step when its time has come.
fn step(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let now_ms = cx.world.clock.now_ms;
    let m = cx.world.migrations[&name].clone();
    // After the resume only a deleted VM stops the post-treatment: the source's
    // resources are already released and the VM runs on the target (an outage there
    // is the target's, not the migration's).
    let fault = fault(cx, &m).filter(|_| m.phase != LmPhase::PostTreatment || !cx.world.vms.contains_key(&m.vm));
    if let Some(why) = fault {
        rollback(cx, &name, &why);
        return Ok(aborted(cx, o, st, &name, &why));
    }
    if now_ms < m.next_at_ms {
        sync_status(cx, &name, &mut st);
        return Ok(Outcome { status: Some(with_status(o, st)), action: Action::RequeueAfter(m.next_at_ms - now_ms) });
    }
    let vm = cx.world.vms[&m.vm].clone();
    let label_src = vm_label(m.source_index, &vm.vm_name);
    let new_index = m.reservation.as_ref().and_then(|r| r.index).or(if vm.su == m.target { vm.index } else { None });
    let label_tgt = vm_label(new_index, &vm.vm_name);
    let x86 = m.su_type == SuType::X86;
    let dirty = dirty_rate(cx, &m.vm);
    let mut m2 = m.clone();
    let mut events: Vec<(&str, String)> = Vec::new();
    match m.phase {
        LmPhase::Setup => {
            let rate = copy_rate(cx.world, &m, &name);
            m2.rate_mibps = rate;
            m2.sending_mib = m.memory_mib;
            m2.budget_ms = o
                .spec
                .time_budget_s
                .map(|s| s.saturating_mul(1000))
                .unwrap_or_else(|| mig::default_budget_ms(m.memory_mib, rate));
            let (ms, _) = mig::round(m.memory_mib, rate, dirty, m.memory_mib);
            m2.phase = LmPhase::Copying;
            m2.next_at_ms = crate::sim::clock::later(now_ms, ms);
        }
        LmPhase::Copying => {
            let duration = (m.sending_mib / m.rate_mibps.max(0.001) * 1000.0).ceil() as u64;
            let (_, dirtied) = mig::round(m.sending_mib, m.rate_mibps, dirty, m.memory_mib);
            m2.rounds.push(CopyRound {
                round: m.rounds.len() as u32,
                sent_mi_b: m.sending_mib,
                dirty_mi_b: dirtied,
                duration_ms: duration,
            });
            let elapsed = now_ms - m.started_ms - mig::SETUP_MS;
            match mig::decide(
                m.su_type,
                m2.rounds.len() as u32,
                m.sending_mib,
                dirtied,
                m.rate_mibps,
                m.downtime_target_ms,
                elapsed,
                m.budget_ms,
            ) {
                Next::Round(n) => {
                    let rate = copy_rate(cx.world, &m, &name);
                    m2.rate_mibps = rate;
                    m2.sending_mib = n;
                    let (ms, _) = mig::round(n, rate, dirty, m.memory_mib);
                    m2.next_at_ms = crate::sim::clock::later(now_ms, ms);
                }
                Next::Suspend(rest) => {
                    m2.messages.push(format!(
                        "{}: SEC2010 I/O STOPPED FOR THE MIGRATION (I/O REQUESTS NOTED, STARTED ON THE TARGET)",
                        vm.vm_name
                    ));
                    if x86 {
                        m2.messages.push(format!("{}: HAL0331 BS2000 SUSPEND", m.source));
                    } else {
                        m2.messages.push(format!(
                            "{}: VMS2452 VM {label_src} SUSPENDED AT LIVE MIGRATION TO TARGET SU '{}'",
                            m.source, m.target
                        ));
                    }
                    let downtime = (rest / m.rate_mibps.max(0.001) * 1000.0).ceil() as u64 + mig::SUSPEND_OVERHEAD_MS;
                    if downtime > m.downtime_target_ms {
                        m2.warnings.push(format!(
                            "suspension of {downtime} ms exceeded the target of {} ms",
                            m.downtime_target_ms
                        ));
                    }
                    m2.rest_mib = rest;
                    m2.downtime_ms = Some(downtime);
                    m2.phase = LmPhase::Suspended;
                    m2.next_at_ms = crate::sim::clock::later(now_ms, downtime);
                    events.push(("VmPaused", format!("VM {} paused on {} (BS2000 suspend)", vm.vm_name, m.source)));
                }
                Next::Abort => {
                    let why = format!("VMS2425 CHANGING MEMORY PAGES CANNOT BE TRANSFERRED IN TIME. LIVE MIGRATION OF VM {label_src} TO TARGET SU '{}' ABORTED", m.target);
                    cx.world.migrations.insert(name.clone(), m2);
                    let msg = why.clone();
                    if let Some(mm) = cx.world.migrations.get_mut(&name) {
                        mm.messages.push(format!("{}: {msg}", m.source));
                    }
                    rollback(cx, &name, "memory pages change faster than they can be transferred (VMS2425)");
                    return Ok(aborted(cx, o, st, &name, &why));
                }
            }
        }
        LmPhase::Suspended => {
            // Resume on the target: the VM moves.
            if x86 {
                m2.messages.push(format!("{}: HAL0332 BS2000 RESUME, CONTINUING", m.target));
            } else {
                m2.messages.push(format!(
                    "{}: VMS2432 VM {label_tgt} RESUMED AT LIVE MIGRATION FROM SOURCE SU '{}'",
                    m.target, m.source
                ));
            }
            let src_model = model_of(cx, &m.source);
            let tgt_model = model_of(cx, &m.target);
            let from_conf = cx.world.configuration_of(&m.source, &src_model);
            let to_conf = cx.world.configuration_of(&m.target, &tgt_model);
            m2.messages.push(format!(
                "{}: ETMDR03 LIVE MIGRATION FROM SOURCE CONFIGURATION '{from_conf}' TO TARGET CONFIGURATION '{to_conf}' FINISHED. INITIAL CONFIGURATION WAS '{}'",
                vm.vm_name, vm.ipl_configuration
            ));
            let res = m2.reservation.take().expect("reserved at setup");
            // Devices: the target's reservation becomes the VM's holding; the source's
            // are released in post-treatment (here at once, in the books).
            cx.world.release_devices(&m.source, &m.vm);
            let pool_cpus = cx.world.su(&m.target).and_then(|s| s.pools.get(&vm.pool).copied()).unwrap_or(u32::MAX);
            // DIFF: the target's I/O configuration differs from that of the SU the
            // system was loaded on; it goes when the system is back there (s4.8).
            let home = vm.history.first().map(|h| h.server_unit.clone()).unwrap_or_else(|| m.source.clone());
            let diff = {
                let (a, b) = (cx.world.su(&home), cx.world.su(&m.target));
                match (a, b) {
                    (Some(a), Some(b)) if m.su_type == SuType::S390 => {
                        let sig = |s: &crate::sim::SuRuntime| -> Vec<(String, String, String)> {
                            s.devices
                                .iter()
                                .map(|(k, d)| (k.clone(), d.host_connector.clone(), d.unit_id.clone()))
                                .collect()
                        };
                        sig(a) != sig(b)
                    }
                    _ => false,
                }
            };
            let time = now.clone();
            cx.world.move_vm(&m.vm, &m.target);
            let w = cx.world.vms.get_mut(&m.vm).expect("checked");
            let detached_now: Vec<String> =
                w.devices.keys().filter(|mn| !res.devices.contains_key(*mn)).cloned().collect();
            w.index = res.index;
            w.lm_count += 1;
            if w.history.is_empty() {
                w.history.push(MigrationRecord {
                    time: time.clone(),
                    configuration: from_conf.clone(),
                    server_unit: m.source.clone(),
                    vm_index: vm.index.unwrap_or(0),
                });
            }
            w.history.push(MigrationRecord {
                time,
                configuration: to_conf.clone(),
                server_unit: m.target.clone(),
                vm_index: res.index.unwrap_or(0),
            });
            w.detached.extend(detached_now.iter().cloned());
            // vCPUs: detached when the target pool is smaller, re-attached when back.
            let usable = w.cpus.min(pool_cpus);
            w.detached_cpus = w.cpus - usable;
            if diff {
                w.substates.insert("DIFF".into());
            } else {
                w.substates.remove("DIFF");
            }
            let detached_cpus = w.detached_cpus;
            if !detached_now.is_empty() {
                m2.warnings.push(format!("devices {} detached and not re-attached", detached_now.join(", ")));
            }
            if detached_cpus > 0 {
                m2.warnings.push(format!(
                    "{detached_cpus} vCPU(s) detached: CPU pool {} on {} has fewer CPUs",
                    vm.pool, m.target
                ));
                m2.messages.push(format!(
                    "{}: SEC2011 /DETACH-DEVICE of {detached_cpus} surplus CPU(s) (target pool smaller)",
                    vm.vm_name
                ));
            } else if vm.detached_cpus > 0 {
                m2.messages.push(format!(
                    "{}: SEC2012 /ATTACH-DEVICE of {} CPU(s) detached earlier",
                    vm.vm_name, vm.detached_cpus
                ));
            }
            if diff {
                m2.warnings.push("I/O configurations of source and target differ: substate DIFF".into());
            }
            m2.phase = LmPhase::PostTreatment;
            m2.next_at_ms = crate::sim::clock::later(now_ms, mig::POST_TREATMENT_MS);
            events.push(("VmCreated", format!("VM {} created on {} (BS2000 resume)", vm.vm_name, m.target)));
            cx.wake.push((Kind::VMDefinition, m.vm.clone()));
        }
        LmPhase::PostTreatment => {
            for mn in vm.devices.keys() {
                m2.messages
                    .push(format!("{}: VMS4009 DEVICE '{mn}' REMOVED FROM VIRTUAL MACHINE {label_src}", m.source));
            }
            if x86 {
                m2.messages.push(format!(
                    "{}: VMS6021 VIRTUAL MACHINE {label_src} TERMINATED BY SYSTEM ADMINISTRATION",
                    m.source
                ));
                events.push(("VmDeactivated", format!("VM {} deactivated on {}", vm.vm_name, m.source)));
            } else {
                m2.messages.push(format!("{}: VMS4024 VIRTUAL MACHINE {label_src} TERMINATED", m.source));
                m2.messages.push(format!(
                    "{}: VMS2431 LIVE MIGRATION OF VM {label_tgt} FROM SOURCE SU '{}' COMPLETED",
                    m.target, m.source
                ));
            }
            m2.messages.push(format!(
                "{}: VMS2451 LIVE MIGRATION OF VM {label_src} TO TARGET SU '{}' COMPLETED",
                m.source, m.target
            ));
            events.push(("VmDeleted", format!("VM {} deleted on {}", vm.vm_name, m.source)));
            m2.phase = LmPhase::Completed;
            st.monjv = Some(if m2.warnings.is_empty() { "$T".into() } else { "$TW".into() });
            st.duration_ms = Some(now_ms - m.started_ms);
            st.completion_time = Some(now.clone());
            cx.wake.push((Kind::VMDefinition, m.vm.clone()));
        }
        _ => {}
    }
    for (reason, msg) in events {
        cx.event(EventType::Normal, "INFO", "Sys-Mgmt", format!("VMDefinition/{}", m.vm), reason, msg);
    }
    let finished = m2.phase == LmPhase::Completed;
    let next = m2.next_at_ms;
    let source = m2.source.clone();
    cx.world.migrations.insert(name.clone(), m2);
    cx.world.touch();
    sync_status(cx, &name, &mut st);
    if finished {
        let m = cx.world.migrations.remove(&name).expect("just put");
        cx.world.touch();
        set_condition(
            &mut st.conditions,
            "Completed",
            ConditionStatus::True,
            "Migrated",
            &format!(
                "now on {}; {}",
                m.target,
                if m.warnings.is_empty() { "no warnings".to_string() } else { m.warnings.join("; ") }
            ),
            Some(gen),
            &now,
        );
        cx.event(
            EventType::Normal,
            "INFO",
            "Sys-Mgmt",
            format!("LiveMigration/{name}"),
            "LiveMigrationCompleted",
            format!(
                "live migration of VM {} from {} to {} completed in {} ms, suspended {} ms",
                vm.vm_name,
                m.source,
                m.target,
                st.duration_ms.unwrap_or(0),
                m.downtime_ms.unwrap_or(0)
            ),
        );
        wake_waiting(cx, &source);
        // A migration from the same source may have waited for this one.
        let waiting: Vec<String> =
            cx.cache.typed::<LiveMigrationSpec>().filter(|l| l.name() != name).map(|l| l.name().to_string()).collect();
        cx.wake.extend(waiting.into_iter().map(|n| (Kind::LiveMigration, n)));
        return Ok(done(o, st));
    }
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::False,
        "InProgress",
        &format!("phase {}", st.phase),
        Some(gen),
        &now,
    );
    Ok(Outcome { status: Some(with_status(o, st)), action: Action::RequeueAfter(next.saturating_sub(now_ms).max(1)) })
}

fn aborted(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    name: &str,
    why: &str,
) -> Outcome {
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    sync_status(cx, name, &mut st);
    cx.world.migrations.remove(name);
    cx.world.touch();
    st.phase = LmPhase::Aborted;
    st.monjv = Some("$AE".into());
    st.progress = None;
    st.completion_time = Some(now.clone());
    set_condition(&mut st.conditions, "Completed", ConditionStatus::False, "Aborted", why, Some(gen), &now);
    done(o, st)
}

/// A deleted LiveMigration cancels a running migration (rolled back).
pub fn cleanup(cx: &mut Cx, o: &Object<LiveMigrationSpec, LiveMigrationStatus>) {
    if !rollback(cx, o.name(), "cancelled: the LiveMigration object was deleted") {
        return;
    }
    cx.world.migrations.remove(o.name());
    cx.world.touch();
}
