//! The phases of a running live migration on the virtual clock (s4.4): setup, pre-copy
//! rounds ending with the last storage transfer (I/O stopped), suspension (the rest and
//! the registers copied), resume on the target, post-treatment; and the roll-back when
//! something fails on the way (s4.7).

use super::{configurations, console_of, copy_rate, dirty_rate, done, sync_status, with_status};
use crate::api::{
    set_condition, ConditionStatus, CopyRound, DeviceType, Kind, LiveMigrationSpec, LiveMigrationStatus, LmPhase,
    MigrationRecord, Object, SuType, VMDefinitionSpec,
};
use crate::controller::common::wake_waiting;
use crate::controller::runtime::Action;
use crate::controller::{Cx, Outcome};
use crate::sim::migration::{self as mig, LinkRef, Next, SimMigration};
use crate::sim::{SimVm, SuRuntime};
use crate::store::EventType;

/// VM events of one step (reason, message), logged after it.
type Events = Vec<(&'static str, String)>;

/// Advances a running migration by one step when its time has come.
pub fn step(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
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
    let mut m2 = m.clone();
    let mut events: Events = Vec::new();
    match m.phase {
        LmPhase::Setup => setup_done(cx, o, &name, &mut m2),
        LmPhase::Copying => {
            if let Some(why) = round_done(cx, &name, &vm, &mut m2, &mut events) {
                cx.world.migrations.insert(name.clone(), m2);
                rollback(cx, &name, "memory pages change faster than they can be transferred (VMS2425)");
                return Ok(aborted(cx, o, st, &name, &why));
            }
        }
        LmPhase::Suspended => resumed(cx, &vm, &mut m2, &mut events),
        LmPhase::PostTreatment => post_treatment_done(cx, &vm, &mut m2, &mut st, &mut events),
        _ => {}
    }
    for (reason, msg) in events {
        cx.event(EventType::Normal, "INFO", "Sys-Mgmt", format!("VMDefinition/{}", m.vm), reason, msg);
    }
    let finished = m2.phase == LmPhase::Completed;
    let next = m2.next_at_ms;
    cx.world.migrations.insert(name.clone(), m2);
    cx.world.touch();
    sync_status(cx, &name, &mut st);
    if finished {
        return Ok(completed(cx, o, st, &name, &vm.vm_name));
    }
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::False,
        "InProgress",
        &format!("phase {}", st.phase),
        o.metadata.generation,
        &cx.now(),
    );
    Ok(Outcome { status: Some(with_status(o, st)), action: Action::RequeueAfter(next.saturating_sub(now_ms).max(1)) })
}

/// Phase 1 ends: round 0 starts sending all memory.
fn setup_done(cx: &mut Cx, o: &Object<LiveMigrationSpec, LiveMigrationStatus>, name: &str, m: &mut SimMigration) {
    let rate = copy_rate(cx.world, m, name);
    let dirty = dirty_rate(cx, &m.vm);
    m.rate_mibps = rate;
    m.sending_mib = m.memory_mib;
    m.budget_ms = o
        .spec
        .time_budget_s
        .map(|s| s.saturating_mul(1000))
        .unwrap_or_else(|| mig::default_budget_ms(m.memory_mib, rate));
    let (ms, _) = mig::round(m.memory_mib, rate, dirty, m.memory_mib);
    m.phase = LmPhase::Copying;
    m.next_at_ms = crate::sim::clock::later(cx.world.clock.now_ms, ms);
}

/// A pre-copy round ends: another round, the last storage transfer (I/O stopped),
/// the suspension after it, or (/390) an abort with VMS2425, whose text it returns.
fn round_done(cx: &mut Cx, name: &str, vm: &SimVm, m: &mut SimMigration, events: &mut Events) -> Option<String> {
    let now_ms = cx.world.clock.now_ms;
    let dirty = dirty_rate(cx, &m.vm);
    let duration = (m.sending_mib / m.rate_mibps.max(0.001) * 1000.0).ceil() as u64;
    let (_, dirtied) = mig::round(m.sending_mib, m.rate_mibps, dirty, m.memory_mib);
    m.rounds.push(CopyRound {
        round: m.rounds.len() as u32,
        sent_mi_b: m.sending_mib,
        dirty_mi_b: dirtied,
        duration_ms: duration,
        last: m.last_transfer,
    });
    if m.last_transfer {
        suspend(m, vm, dirtied, now_ms, events);
        return None;
    }
    let elapsed = now_ms - m.started_ms - mig::SETUP_MS;
    let rounds = m.rounds.len() as u32;
    match mig::decide(
        m.su_type,
        rounds,
        m.sending_mib,
        dirtied,
        m.rate_mibps,
        m.downtime_target_ms,
        elapsed,
        m.budget_ms,
    ) {
        Next::Round(n) => next_round(cx, name, m, n, false),
        Next::Suspend(rest) => {
            // s4.4: "At the end of phase 2, the I/O system is stopped ... At the very
            // end of Phase 2, a last storage transfer is carried out."
            let lines = console_of(m, &vm.vm_name, None).io_stopped();
            m.messages.extend(lines);
            next_round(cx, name, m, rest, true);
        }
        Next::Abort => {
            let label = super::console::vm_label(m.source_index, &vm.vm_name);
            let why = format!("VMS2425 CHANGING MEMORY PAGES CANNOT BE TRANSFERRED IN TIME. LIVE MIGRATION OF VM {label} TO TARGET SU '{}' ABORTED", m.target);
            m.messages.push(format!("{}: {why}", m.source));
            return Some(why);
        }
    }
    None
}

/// Starts a round sending `mib` (the last storage transfer when `last`).
fn next_round(cx: &mut Cx, name: &str, m: &mut SimMigration, mib: f64, last: bool) {
    let rate = copy_rate(cx.world, m, name);
    let dirty = dirty_rate(cx, &m.vm);
    m.rate_mibps = rate;
    m.sending_mib = mib;
    m.last_transfer = last;
    let (ms, _) = mig::round(mib, rate, dirty, m.memory_mib);
    m.next_at_ms = crate::sim::clock::later(cx.world.clock.now_ms, ms);
}

/// Phase 3 starts: the system stops on the source; the rest is copied meanwhile.
fn suspend(m: &mut SimMigration, vm: &SimVm, rest: f64, now_ms: u64, events: &mut Events) {
    let lines = console_of(m, &vm.vm_name, None).suspend();
    m.messages.extend(lines);
    let downtime = mig::suspension_ms(rest, m.rate_mibps);
    if downtime > m.downtime_target_ms {
        m.warnings.push(format!("suspension of {downtime} ms exceeded the target of {} ms", m.downtime_target_ms));
    }
    m.rest_mib = rest;
    m.downtime_ms = Some(downtime);
    m.phase = LmPhase::Suspended;
    m.next_at_ms = crate::sim::clock::later(now_ms, downtime);
    if m.loaded {
        events.push(("VmPaused", format!("VM {} paused on {} (BS2000 suspend)", vm.vm_name, m.source)));
    }
}

/// The device signature of an SU's I/O configuration (MN, host connector, unit ID).
fn io_signature(s: &SuRuntime) -> Vec<(String, String, String)> {
    s.devices.iter().map(|(k, d)| (k.clone(), d.host_connector.clone(), d.unit_id.clone())).collect()
}

/// s4.8: the SU a VM's DIFF refers to after this migration. DIFF goes when the VM is
/// back on that SU; it comes when source and target I/O configurations differ (/390).
fn diff_after(cx: &Cx, vm: &SimVm, m: &SimMigration) -> Option<String> {
    if m.su_type != SuType::S390 {
        return None;
    }
    if vm.diff_source.as_deref() == Some(m.target.as_str()) {
        return None;
    }
    if vm.diff_source.is_some() {
        return vm.diff_source.clone();
    }
    match (cx.world.su(&m.source), cx.world.su(&m.target)) {
        (Some(a), Some(b)) if io_signature(a) != io_signature(b) => Some(m.source.clone()),
        _ => None,
    }
}

/// Phase 3 ends: the system resumes on the target and the VM moves there.
fn resumed(cx: &mut Cx, vm: &SimVm, m: &mut SimMigration, events: &mut Events) {
    let now = cx.now();
    let res = m.reservation.take().expect("reserved at setup");
    let (from_conf, to_conf) = configurations(cx, m);
    let lines = cx.cache.get_typed::<VMDefinitionSpec>(&m.vm).map(|o| o.spec.bcam_lines.clone()).unwrap_or_default();
    let out = console_of(m, &vm.vm_name, res.index).resume(&from_conf, &to_conf, &vm.ipl_configuration, &lines);
    m.messages.extend(out);
    // Devices: the target's reservation becomes the VM's holding; the source's are
    // released in post-treatment (here at once, in the books).
    cx.world.release_devices(&m.source, &m.vm);
    let pool_cpus = cx.world.su(&m.target).and_then(|s| s.pools.get(&vm.pool).copied()).unwrap_or(u32::MAX);
    let diff = diff_after(cx, vm, m);
    let different = differently_generated(cx.world, m, &vm.devices).into_iter().collect();
    cx.world.move_vm(&m.vm, &m.target);
    let w = cx.world.vms.get_mut(&m.vm).expect("checked");
    let detached_now: Vec<String> = w.devices.keys().filter(|mn| !res.devices.contains_key(*mn)).cloned().collect();
    w.index = res.index;
    if m.loaded {
        // LIVE-MIG-COUNT and the history are the loaded system's (s4.5).
        w.lm_count += 1;
        if w.history.is_empty() {
            let index = vm.index.unwrap_or(0);
            w.history.push(MigrationRecord {
                time: now.clone(),
                configuration: from_conf,
                server_unit: m.source.clone(),
                vm_index: index,
            });
        }
        w.history.push(MigrationRecord {
            time: now,
            configuration: to_conf,
            server_unit: m.target.clone(),
            vm_index: res.index.unwrap_or(0),
        });
        // vCPUs: detached when the target pool is smaller, re-attached when back.
        w.detached_cpus = w.cpus - w.cpus.min(pool_cpus);
    }
    w.detached.extend(detached_now.iter().cloned());
    w.not_assignable = different;
    w.diff_source = diff.clone();
    if diff.is_some() {
        w.substates.insert("DIFF".into());
    } else {
        w.substates.remove("DIFF");
    }
    let detached_cpus = w.detached_cpus;
    cpu_lines(m, vm, detached_cpus);
    if !detached_now.is_empty() {
        m.warnings.push(format!("devices {} detached and not re-attached", detached_now.join(", ")));
    }
    if diff.is_some() {
        m.warnings.push("I/O configurations of source and target differ: substate DIFF".into());
    }
    m.phase = LmPhase::PostTreatment;
    m.next_at_ms = crate::sim::clock::later(cx.world.clock.now_ms, mig::POST_TREATMENT_MS);
    let how = if m.loaded { " (BS2000 resume)" } else { "" };
    events.push(("VmCreated", format!("VM {} created on {}{how}", vm.vm_name, m.target)));
    cx.wake.push((Kind::VMDefinition, m.vm.clone()));
}

/// SU x86 (VM2000): devices not assigned to the VM that are generated on both SUs but
/// differently (s4.8: "warnings will appear also for unassigned devices with different
/// generation during LM and those devices cannot be assigned on the target SU").
pub fn differently_generated(
    w: &crate::sim::World,
    m: &SimMigration,
    assigned: &std::collections::BTreeMap<String, crate::api::DeviceUsage>,
) -> Vec<String> {
    if m.su_type != SuType::X86 || m.native {
        return Vec::new();
    }
    let (Some(a), Some(b)) = (w.su(&m.source), w.su(&m.target)) else { return Vec::new() };
    a.devices
        .iter()
        .filter(|(mn, _)| !assigned.contains_key(*mn))
        .filter_map(|(mn, x)| {
            let y = b.devices.get(mn)?;
            let same = x.device_type == y.device_type && x.host_connector == y.host_connector && x.unit_id == y.unit_id;
            (!same).then(|| mn.clone())
        })
        .collect()
}

/// vCPUs detached on a smaller pool, or attached again (s4.8), with a warning.
fn cpu_lines(m: &mut SimMigration, vm: &SimVm, detached_cpus: u32) {
    if !m.loaded {
        return;
    }
    if detached_cpus > 0 {
        m.warnings
            .push(format!("{detached_cpus} vCPU(s) detached: CPU pool {} on {} has fewer CPUs", vm.pool, m.target));
        m.messages.push(format!(
            "{}: SEC2011 /DETACH-DEVICE of {detached_cpus} surplus CPU(s) (target pool smaller)",
            vm.vm_name
        ));
    } else if vm.detached_cpus > 0 {
        m.messages
            .push(format!("{}: SEC2012 /ATTACH-DEVICE of {} CPU(s) detached earlier", vm.vm_name, vm.detached_cpus));
    }
}

/// Phase 4 ends: the source's resources are released; the migration is complete.
fn post_treatment_done(
    cx: &mut Cx,
    vm: &SimVm,
    m: &mut SimMigration,
    st: &mut LiveMigrationStatus,
    events: &mut Events,
) {
    let devices: Vec<String> = vm.devices.keys().cloned().collect();
    let lines = console_of(m, &vm.vm_name, vm.index).finish(&devices);
    m.messages.extend(lines);
    if m.su_type == SuType::X86 {
        events.push(("VmDeactivated", format!("VM {} deactivated on {}", vm.vm_name, m.source)));
    }
    events.push(("VmDeleted", format!("VM {} deleted on {}", vm.vm_name, m.source)));
    if let Some(w) = cx.world.vms.get_mut(&m.vm) {
        w.monjv_terminated = true;
    }
    m.phase = LmPhase::Completed;
    st.monjv = Some(if m.warnings.is_empty() { "$T".into() } else { "$TW".into() });
    st.duration_ms = Some(cx.world.clock.now_ms - m.started_ms);
    st.completion_time = Some(cx.now());
    cx.wake.push((Kind::VMDefinition, m.vm.clone()));
}

/// The migration ended well: status, event, and whoever waited for it.
fn completed(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    name: &str,
    vm_name: &str,
) -> Outcome {
    let now = cx.now();
    let m = cx.world.migrations.remove(name).expect("just put");
    cx.world.touch();
    let warnings = if m.warnings.is_empty() { "no warnings".to_string() } else { m.warnings.join("; ") };
    set_condition(
        &mut st.conditions,
        "Completed",
        ConditionStatus::True,
        "Migrated",
        &format!("now on {}; {warnings}", m.target),
        o.metadata.generation,
        &now,
    );
    cx.event(
        EventType::Normal,
        "INFO",
        "Sys-Mgmt",
        format!("LiveMigration/{name}"),
        "LiveMigrationCompleted",
        format!(
            "live migration of VM {vm_name} from {} to {} completed in {} ms, suspended {} ms",
            m.source,
            m.target,
            st.duration_ms.unwrap_or(0),
            m.downtime_ms.unwrap_or(0)
        ),
    );
    wake_waiting(cx, &m.source);
    wake_migrations(cx, name);
    done(o, st)
}

/// Migrations queued behind `lm` (same source) may start now.
fn wake_migrations(cx: &mut Cx, lm: &str) {
    let waiting: Vec<String> =
        cx.cache.typed::<LiveMigrationSpec>().filter(|l| l.name() != lm).map(|l| l.name().to_string()).collect();
    cx.wake.extend(waiting.into_iter().map(|n| (Kind::LiveMigration, n)));
}

/// Ends the object as Aborted (MONJV $AE).
pub fn aborted(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    name: &str,
    why: &str,
) -> Outcome {
    let now = cx.now();
    sync_status(cx, name, &mut st);
    cx.world.migrations.remove(name);
    cx.world.touch();
    st.phase = LmPhase::Aborted;
    st.monjv = Some("$AE".into());
    st.progress = None;
    st.completion_time = Some(now.clone());
    set_condition(&mut st.conditions, "Completed", ConditionStatus::False, "Aborted", why, o.metadata.generation, &now);
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
    // s4.7 (SU /390): "The attached disks in the guest system are not in operable
    // state on the target SU".
    if m.su_type == SuType::S390 && m.phase != LmPhase::PostTreatment {
        let tgt = cx.world.su(&m.target)?;
        let res = m.reservation.as_ref()?;
        let bad = res.devices.keys().find(|mn| {
            tgt.inoperable.contains(*mn) && tgt.devices.get(*mn).is_some_and(|d| d.device_type == DeviceType::Disk)
        });
        if let Some(mn) = bad {
            return Some(format!("the attached disk {mn} is not in an operable state on the target SU {}", m.target));
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
    let label = super::console::vm_label(index, &vm_name);
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
    if let Some(v) = cx.world.vms.get(&m.vm).filter(|_| !resumed && m.loaded) {
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
    wake_migrations(cx, lm);
    true
}
