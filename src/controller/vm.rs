//! VMDefinition reconciler (seed 004, manual s5): places a definition on its SU with
//! real accounting (memory, VM index, definition limit, CPU pool, VM group, devices),
//! carries out state changes (DEFINED_ONLY = DELETE-VM keeping the definition,
//! INIT_ONLY, RUNNING, DOWN) and attribute changes, holds definition changes while
//! BCAM is down on an SU /390 (VMS2332, written later: VMS2330), and reports where
//! the definition is, its state, migrations and history.

use super::common::{migrating, model_of, wake_waiting, wanted_devices};
use super::runtime::Action;
use super::{sysdisk, Cx, Outcome};
use crate::api::{
    remove_condition, set_condition, ConditionStatus, DeviceUsage, Mighost, MigrationRecord, Object, SuType,
    SystemInformation, VMDefinitionSpec, VMDefinitionStatus, VmIndex, VmMonjv, VmState,
};
use crate::sim::{Demand, SimVm};
use crate::store::EventType;
use std::collections::BTreeMap;

fn fixed(i: VmIndex) -> Option<u32> {
    match i {
        VmIndex::Fixed(n) => Some(n),
        VmIndex::Any => None,
    }
}

fn vm_event(cx: &mut Cx, name: &str, t: EventType, reason: &str, msg: String) {
    let p = if t == EventType::Warning { "WARNING" } else { "INFO" };
    cx.event(t, p, "Sys-Mgmt", format!("VMDefinition/{name}"), reason, msg);
}

fn ipl_line(time: String, configuration: String, su: &str, index: Option<u32>) -> MigrationRecord {
    MigrationRecord { time, configuration, server_unit: su.to_string(), vm_index: index.unwrap_or(0) }
}

/// Reconciles one VMDefinition.
pub fn reconcile(cx: &mut Cx, o: &Object<VMDefinitionSpec, VMDefinitionStatus>) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let spec = &o.spec;
    let mut st = o.status.clone();
    st.observed_generation = Some(gen);
    let desired: VmState = spec.state.into();
    let devices = wanted_devices(spec);

    if still_lost(cx, &name, gen, &now, &mut st) {
        return Ok(finish(o, st));
    }

    if !cx.world.vms.contains_key(&name) {
        return place(cx, o, st, desired, devices);
    }
    let su = cx.world.vms[&name].su.clone();
    if spec.server_unit.as_str() != su {
        set_condition(&mut st.conditions, "Placement", ConditionStatus::True, "MovedBySectl",
            &format!("spec.serverUnit is {} but the definition is on {su}, where a live migration or recovery moved it; applying the manifest again does not move it back", spec.server_unit),
            Some(gen), &now);
    } else {
        remove_condition(&mut st.conditions, "Placement");
    }
    let s390 = cx.world.su(&su).is_some_and(|s| s.su_type == SuType::S390);
    let bcam_up = cx.world.su(&su).is_none_or(|s| s.bcam_up);
    let mut problems: Vec<(String, String)> = Vec::new();
    let applied = cx.world.vms[&name].applied_generation;

    if cx.world.waiting_vms.contains(&name) {
        problems
            .push(("Wait".into(), "the VM is in state WAIT (sim wait); nothing is changed until it resumes".into()));
    } else if migrating(cx.world, &name) {
        if applied != gen {
            problems.push((
                "ChangesWaitForMigration".into(),
                "spec changes are carried out after the live migration".into(),
            ));
        }
    } else if !cx.world.powered(&su) {
        problems.push(("ServerUnitPoweredOff".into(), format!("SU {su} is powered off")));
    } else if s390 && !bcam_up && applied != gen {
        if definition_command(&cx.world.vms[&name], spec, &devices) {
            held_vms2332(cx, &su, gen, &now, &mut st);
            return Ok(finish_status(cx, o, st, &name, problems));
        }
        // "All other VM2000 commands are executed. The contingent changes in the VM
        // definitions are saved by the VM2000 hypervisor and later ... transferred to
        // the system disk" (seed 004): VMS2330 when BCAM is back.
        cx.world.held_definitions.insert(su.clone());
        cx.world.touch();
        set_condition(&mut st.conditions, "DefinitionSynced", ConditionStatus::False, "SavedByHypervisor",
            &format!("BCAM is not active in the monitor system of {su}: the command was executed; the hypervisor writes the changed definition to the system disk when BCAM is back (VMS2330)"),
            Some(gen), &now);
        converge(cx, o, &name, &su, desired, &devices, &mut problems);
    } else {
        if s390 && bcam_up {
            bcam_back(cx, &su);
        }
        if bcam_up {
            remove_condition(&mut st.conditions, "DefinitionSynced");
        }
        let command = if applied != gen && definition_command(&cx.world.vms[&name], spec, &devices) {
            sysdisk::Command::Changed
        } else {
            sysdisk::Command::None
        };
        converge(cx, o, &name, &su, desired, &devices, &mut problems);
        let ids = (name.as_str(), spec.vm_name.as_str(), su.as_str());
        let retry = if s390 && bcam_up { sysdisk::after_command(cx, ids, command, gen, &mut st) } else { None };
        return Ok(with_retry(finish_status(cx, o, st, &name, problems), retry));
    }
    Ok(finish_status(cx, o, st, &name, problems))
}

/// The outcome, run again after `retry` ms at the latest (a system disk update).
fn with_retry(mut out: Outcome, retry: Option<u64>) -> Outcome {
    if let Some(ms) = retry {
        out.action = match out.action {
            Action::RequeueAfter(t) => Action::RequeueAfter(t.min(ms)),
            _ => Action::RequeueAfter(ms),
        };
    }
    out
}

/// A non-persistent definition that was removed (lost with its SU, or deleted by
/// DELETE-VM) stays removed until the spec changes. True while it does.
fn still_lost(cx: &mut Cx, name: &str, gen: u64, now: &str, st: &mut VMDefinitionStatus) -> bool {
    let Some(g) = cx.world.lost_vms.get(name).copied() else { return false };
    if gen <= g.max(1) && !cx.world.vms.contains_key(name) {
        st.state = None;
        st.server_unit = None;
        st.vm_index = None;
        let deleted = st.conditions.iter().any(|c| c.type_ == "Placed" && c.reason == "DeletedNotPersistent");
        if !deleted {
            set_condition(&mut st.conditions, "Placed", ConditionStatus::False, "DefinitionLost",
                "the definition was not persistent and was lost when its SU went down; change the spec to create it again", Some(gen), now);
        }
        set_condition(&mut st.conditions, "Ready", ConditionStatus::False, "DefinitionLost", "", Some(gen), now);
        return true;
    }
    cx.world.lost_vms.remove(name);
    cx.world.touch();
    false
}

/// Whether carrying out the spec change needs a command that directly concerns the
/// VM definition (seed 004: ACTIVATE-VM-DEFINITION, MODIFY-VM-DEFINITION, setting
/// PERSISTENT=*YES). sectl counts attribute and device changes as definition changes;
/// state changes of an initialised VM (START-VM, SHUTDOWN, DELETE-VM) are not.
fn definition_command(v: &SimVm, spec: &VMDefinitionSpec, devices: &BTreeMap<String, DeviceUsage>) -> bool {
    !v.initialised() || attrs_changed(v, spec, devices) || (spec.persistent && !v.persistent)
}

/// Whether the spec asks for other attributes or devices than the VM has.
fn attrs_changed(v: &SimVm, spec: &VMDefinitionSpec, devices: &BTreeMap<String, DeviceUsage>) -> bool {
    v.memory_mib != spec.memory_mi_b.get()
        || v.cpus != spec.cpus.get()
        || v.pool != spec.cpu_pool.as_str()
        || v.group.as_deref() != spec.vm_group.as_deref()
        || &v.devices != devices
        || v.vm_name != spec.vm_name.as_str()
        || (fixed(spec.vm_index).is_some() && v.index.is_some() && v.index != fixed(spec.vm_index))
}

/// The change is held: VMS2332 (and VMS2331 when BCAM was ended on purpose).
fn held_vms2332(cx: &mut Cx, su: &str, gen: u64, now: &str, st: &mut VMDefinitionStatus) {
    let on_purpose = cx.world.su(su).is_some_and(|s| s.bcam_ended_on_purpose);
    cx.world.held_definitions.insert(su.to_string());
    cx.world.touch();
    let why = if on_purpose { "VMS2331 BCAM was ended (/BCEND)" } else { "BCAM is not active" };
    set_condition(&mut st.conditions, "DefinitionSynced", ConditionStatus::False, "Vms2332",
        &format!("VMS2332 {why} in the monitor system of {su}: definition commands are rejected; the change is held and carried out when BCAM is back (VMS2330)"),
        Some(gen), now);
}

/// BCAM is active again on `su` after definition changes were held or saved by the
/// hypervisor: VMS2330, once, filed under the SU's server (not under one VM).
fn bcam_back(cx: &mut Cx, su: &str) {
    if cx.world.held_definitions.remove(su) {
        cx.world.touch();
        let server = cx.world.unit(su).map(|u| u.server.clone()).unwrap_or_default();
        cx.event(EventType::Normal, "INFO", "VM2000", format!("SEServer/{server}"), "Vms2330",
            format!("VMS2330 BCAM active again in the monitor system of {su}: VM definitions compared with the system disk and written"));
    }
}

/// Creates the definition on spec.serverUnit when everything it needs is there.
fn place(
    cx: &mut Cx,
    o: &Object<VMDefinitionSpec, VMDefinitionStatus>,
    mut st: VMDefinitionStatus,
    desired: VmState,
    devices: BTreeMap<String, DeviceUsage>,
) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let spec = &o.spec;
    let su = spec.server_unit.to_string();
    st.state = None;
    st.server_unit = None;
    st.vm_index = None;
    if let Some(s) = cx.world.su(&su) {
        if s.su_type == SuType::S390 && !s.bcam_up && cx.world.powered(&su) {
            let on_purpose = s.bcam_ended_on_purpose;
            cx.world.held_definitions.insert(su.clone());
            cx.world.touch();
            let why = if on_purpose { "VMS2331 BCAM was ended (/BCEND)" } else { "BCAM is not active" };
            set_condition(&mut st.conditions, "Placed", ConditionStatus::False, "Vms2332",
                &format!("VMS2332 {why} in the monitor system of {su}: CREATE-VM-DEFINITION is rejected; the definition is created when BCAM is back"),
                Some(gen), &now);
            set_condition(&mut st.conditions, "Ready", ConditionStatus::False, "NotPlaced", "", Some(gen), &now);
            return Ok(finish(o, st));
        }
        if s.su_type == SuType::S390 && s.bcam_up && cx.world.powered(&su) {
            // A creation held while BCAM was down is written now.
            bcam_back(cx, &su);
        }
    }
    let needs = desired != VmState::DefinedOnly;
    let demand = Demand {
        owner: &name,
        vm_name: spec.vm_name.as_str(),
        index: fixed(spec.vm_index),
        memory_mib: spec.memory_mi_b.get(),
        pool: spec.cpu_pool.as_str(),
        group: spec.vm_group.as_deref(),
        devices: &devices,
        resources: needs,
    };
    let (short, usage) = cx.world.shortfalls_usage(&su, &demand);
    if !short.is_empty() {
        let msg: Vec<String> = short.iter().map(|s| s.message.clone()).collect();
        set_condition(
            &mut st.conditions,
            "Placed",
            ConditionStatus::False,
            short[0].reason,
            &msg.join("; "),
            Some(gen),
            &now,
        );
        set_condition(
            &mut st.conditions,
            "Ready",
            ConditionStatus::False,
            "NotPlaced",
            "waiting until the definition can be placed",
            Some(gen),
            &now,
        );
        return Ok(finish(o, st));
    }
    // The usage `shortfalls` computed (same SU and owner, nothing changed since).
    let index = match (&usage, needs) {
        (Some(u), true) => cx.world.pick_index_given(&su, fixed(spec.vm_index), u),
        (None, true) => cx.world.pick_index(&su, fixed(spec.vm_index), &name),
        (_, false) => None,
    };
    let config = cx.world.configuration_of(&su, &model_of(cx, &su));
    let mut v = SimVm {
        vm_name: spec.vm_name.to_string(),
        su: su.clone(),
        state: desired,
        persistent: spec.persistent,
        index,
        memory_mib: spec.memory_mi_b.get(),
        cpus: spec.cpus.get(),
        detached_cpus: 0,
        pool: spec.cpu_pool.to_string(),
        group: spec.vm_group.as_ref().map(|g| g.to_string()),
        devices: devices.clone(),
        detached: Default::default(),
        substates: Default::default(),
        diff_source: None,
        not_assignable: Default::default(),
        monjv_terminated: false,
        lm_count: 0,
        history: Vec::new(),
        ipl_configuration: config.clone(),
        applied_generation: gen,
        hold_until_generation_above: None,
    };
    if desired == VmState::Running {
        v.history.push(ipl_line(now.clone(), config, &su, index));
    }
    if needs {
        cx.world.hold_devices(&su, &name, &devices);
    }
    cx.world.insert_vm(name.clone(), v);
    cx.world.touch();
    vm_event(
        cx,
        &name,
        EventType::Normal,
        "VmCreated",
        format!(
            "VM {} created on {su}{} ({desired})",
            spec.vm_name,
            index.map(|i| format!(" with index {i}")).unwrap_or_default()
        ),
    );
    let retry =
        sysdisk::after_command(cx, (&name, spec.vm_name.as_str(), &su), sysdisk::Command::Created, gen, &mut st);
    Ok(with_retry(finish_status(cx, o, st, &name, Vec::new()), retry))
}

/// Moves an existing definition toward the spec.
fn converge(
    cx: &mut Cx,
    o: &Object<VMDefinitionSpec, VMDefinitionStatus>,
    name: &str,
    su: &str,
    desired: VmState,
    devices: &BTreeMap<String, DeviceUsage>,
    problems: &mut Vec<(String, String)>,
) {
    let gen = o.metadata.generation.unwrap_or(1);
    let spec = &o.spec;
    let v = cx.world.vms[name].clone();
    // After a recovery the definition stays DEFINED_ONLY until the user changes it.
    if let Some(h) = v.hold_until_generation_above {
        if gen <= h {
            problems.push((
                "Recovered".into(),
                format!(
                "recovered to {su} in state DEFINED_ONLY; change the spec (e.g. devices, state) to activate it here"),
            ));
            return;
        }
        cx.world.vms.get_mut(name).expect("exists").hold_until_generation_above = None;
        cx.world.touch();
    }
    if desired == VmState::DefinedOnly {
        delete_vm(cx, o, name, su, &v, devices);
        return;
    }
    // Seed 004: "a persistent VM is set up again and restarted immediately when the
    // corresponding specifications are provided in the AUTO-IPL parameter". A definition
    // that fell back to DEFINED_ONLY with its spec unchanged came through a reboot.
    if !v.initialised() && v.applied_generation == gen && !spec.auto_ipl {
        problems.push((
            "NoAutoIpl".into(),
            format!("SU {su} was rebooted and AUTO-IPL is not set: the definition stays DEFINED_ONLY until the spec changes"),
        ));
        return;
    }
    if (!v.initialised() || attrs_changed(&v, spec, devices))
        && !activate_or_change(cx, o, name, su, &v, devices, problems)
    {
        return;
    }
    set_state(cx, name, su, desired);
    let w = cx.world.vms.get_mut(name).expect("exists");
    w.persistent = spec.persistent;
    w.applied_generation = gen;
    cx.world.touch();
}

/// DEFINED_ONLY wanted: DELETE-VM. The VM goes; a persistent definition stays, a
/// non-persistent one goes with it (seed 004: "A persistent VM definition is not
/// deleted by /DELETE-VM").
fn delete_vm(
    cx: &mut Cx,
    o: &Object<VMDefinitionSpec, VMDefinitionStatus>,
    name: &str,
    su: &str,
    v: &SimVm,
    devices: &BTreeMap<String, DeviceUsage>,
) {
    let gen = o.metadata.generation.unwrap_or(1);
    let spec = &o.spec;
    if v.initialised() {
        cx.world.release_devices(su, name);
        wake_waiting(cx, su);
        if !v.persistent {
            cx.world.remove_vm(name);
            cx.world.lost_vms.insert(name.to_string(), gen);
            cx.world.touch();
            let msg =
                format!("VM {} deleted on {su} (DELETE-VM); the definition was not persistent: deleted too", v.vm_name);
            vm_event(cx, name, EventType::Normal, "VmDefinitionDeleted", msg);
            return;
        }
        let w = cx.world.vms.get_mut(name).expect("exists");
        w.state = VmState::DefinedOnly;
        w.index = None;
        // The VM is gone: the DIFF and detached vCPUs a live migration left go with it
        // (detached devices are attached at the next activation).
        w.substates.remove("DIFF");
        w.diff_source = None;
        w.not_assignable.clear();
        w.detached_cpus = 0;
        vm_event(
            cx,
            name,
            EventType::Normal,
            "VmDeleted",
            format!("VM {} deleted on {su} (DELETE-VM); definition kept", v.vm_name),
        );
    }
    let w = cx.world.vms.get_mut(name).expect("exists");
    w.memory_mib = spec.memory_mi_b.get();
    w.cpus = spec.cpus.get();
    w.pool = spec.cpu_pool.to_string();
    w.group = spec.vm_group.as_ref().map(|g| g.to_string());
    w.devices = devices.clone();
    w.persistent = spec.persistent;
    w.vm_name = spec.vm_name.to_string();
    w.applied_generation = gen;
    cx.world.touch();
}

/// s4.8: "devices that were not generated on the source SU cannot be assigned to it
/// on the target SU" while the VM has substate DIFF. The first such device, if any.
fn not_generated_on_diff_source(cx: &Cx, v: &SimVm, devices: &BTreeMap<String, DeviceUsage>) -> Option<String> {
    let src = cx.world.su(v.diff_source.as_deref()?)?;
    devices.keys().find(|mn| !v.devices.contains_key(*mn) && !src.devices.contains_key(*mn)).cloned()
}

/// ACTIVATE-VM-DEFINITION, or changed attributes and devices of an initialised VM.
/// False when it cannot be carried out (the reason is in `problems`).
fn activate_or_change(
    cx: &mut Cx,
    o: &Object<VMDefinitionSpec, VMDefinitionStatus>,
    name: &str,
    su: &str,
    v: &SimVm,
    devices: &BTreeMap<String, DeviceUsage>,
    problems: &mut Vec<(String, String)>,
) -> bool {
    let spec = &o.spec;
    if v.initialised() {
        if let Some(mn) = not_generated_on_diff_source(cx, v, devices) {
            let from = v.diff_source.clone().unwrap_or_default();
            problems.push(("DiffDeviceNotOnSource".into(), format!(
                "the VM has substate DIFF: device {mn} was not generated on SU {from}, which it was migrated from, so it cannot be assigned on {su} (migrate it back or activate it anew here)")));
            return false;
        }
        let blocked: Vec<&String> =
            devices.keys().filter(|mn| !v.devices.contains_key(*mn) && v.not_assignable.contains(*mn)).collect();
        if let Some(mn) = blocked.first() {
            problems.push(("DeviceGeneratedDifferently".into(), format!(
                "device {mn} is generated differently on {su} than on the SU the VM was migrated from: it cannot be assigned to the migrated VM (s4.8; activate the VM anew here)")));
            return false;
        }
    }
    // A running VM keeps devices a live migration detached (tapes, local disks)
    // detached; a VM activated anew gets those generated on this SU (a local disk of
    // the SU it came from is not).
    let generated_here = |mn: &str| cx.world.su(su).is_some_and(|s| s.devices.contains_key(mn));
    let attach: BTreeMap<String, DeviceUsage> = devices
        .iter()
        .filter(|(mn, _)| !v.detached.contains(*mn) || (!v.initialised() && generated_here(mn)))
        .map(|(k, u)| (k.clone(), *u))
        .collect();
    let demand = Demand {
        owner: name,
        vm_name: spec.vm_name.as_str(),
        index: fixed(spec.vm_index).or(v.index),
        memory_mib: spec.memory_mi_b.get(),
        pool: spec.cpu_pool.as_str(),
        group: spec.vm_group.as_deref(),
        devices: &attach,
        resources: true,
    };
    let (short, usage) = cx.world.shortfalls_usage(su, &demand);
    if !short.is_empty() {
        let verb = if v.initialised() { "the change cannot be carried out" } else { "the VM cannot be activated" };
        let msg: Vec<String> = short.iter().map(|s| s.message.clone()).collect();
        problems.push((short[0].reason.to_string(), format!("{verb}: {}", msg.join("; "))));
        return false;
    }
    // The usage `shortfalls` computed (same SU and owner, nothing changed since).
    let index = match &usage {
        Some(u) => cx.world.pick_index_given(su, fixed(spec.vm_index).or(v.index), u),
        None => cx.world.pick_index(su, fixed(spec.vm_index).or(v.index), name),
    };
    cx.world.release_devices(su, name);
    cx.world.hold_devices(su, name, &attach);
    let w = cx.world.vms.get_mut(name).expect("exists");
    w.index = index;
    w.memory_mib = spec.memory_mi_b.get();
    w.cpus = spec.cpus.get();
    w.pool = spec.cpu_pool.to_string();
    w.group = spec.vm_group.as_ref().map(|g| g.to_string());
    w.devices = devices.clone();
    w.vm_name = spec.vm_name.to_string();
    w.detached.retain(|d| devices.contains_key(d));
    if !v.initialised() {
        // Activated anew here: DIFF ends (s4.8).
        w.detached.retain(|d| !attach.contains_key(d));
        w.substates.remove("DIFF");
        w.diff_source = None;
        w.not_assignable.clear();
        w.monjv_terminated = false;
        let what = index.map(|i| format!(" with index {i}")).unwrap_or_default();
        vm_event(cx, name, EventType::Normal, "VmActivated", format!("VM {} activated on {su}{what}", spec.vm_name));
    }
    if v.memory_mib > spec.memory_mi_b.get() || v.devices.len() > devices.len() {
        wake_waiting(cx, su);
    }
    true
}

/// The state the spec wants (START-VM, SHUTDOWN, ...). Starting BS2000 is an IPL:
/// LIVE-MIG-COUNT and the migration history start again, with this SU as the IPL
/// host. A DIFF substate stays (s4.8: only migrating back or activating anew ends it).
fn set_state(cx: &mut Cx, name: &str, su: &str, desired: VmState) {
    let now = cx.now();
    let config = cx.world.configuration_of(su, &model_of(cx, su));
    let w = cx.world.vms.get_mut(name).expect("exists");
    if w.state == desired {
        return;
    }
    if desired == VmState::Running {
        w.lm_count = 0;
        w.history = vec![ipl_line(now, config.clone(), su, w.index)];
        w.ipl_configuration = config;
    }
    let from = w.state;
    w.state = desired;
    let vm_name = w.vm_name.clone();
    vm_event(cx, name, EventType::Normal, "VmStateChanged", format!("VM {vm_name} on {su}: {from} -> {desired}"));
}

/// Fills the status from the world.
fn finish_status(
    cx: &mut Cx,
    o: &Object<VMDefinitionSpec, VMDefinitionStatus>,
    mut st: VMDefinitionStatus,
    name: &str,
    problems: Vec<(String, String)>,
) -> Outcome {
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let Some(v) = cx.world.vms.get(name).cloned() else {
        if cx.world.lost_vms.contains_key(name) {
            st.state = None;
            st.server_unit = None;
            st.vm_index = None;
            set_condition(
                &mut st.conditions,
                "Placed",
                ConditionStatus::False,
                "DeletedNotPersistent",
                "DELETE-VM deleted the definition too: it was not persistent; change the spec to create it again",
                Some(gen),
                &now,
            );
            set_condition(&mut st.conditions, "Ready", ConditionStatus::False, "DefinitionLost", "", Some(gen), &now);
        }
        return finish(o, st);
    };
    st.state = Some(v.state);
    st.server_unit = Some(v.su.clone());
    st.vm_index = v.index;
    let mut subs: Vec<String> = v.substates.iter().cloned().collect();
    if migrating(cx.world, name) {
        subs.insert(0, "MIGRATING".into());
    }
    st.substates = subs;
    st.live_migration_count = v.lm_count;
    st.migration_history = v.history.clone();
    st.detached_devices = v.detached.iter().cloned().collect();
    st.detached_cpus = v.detached_cpus;
    st.monjv = monjv(o, &v, migrating(cx.world, name));
    st.system_information = if v.lm_count > 0 {
        let current = cx.world.configuration_of(&v.su, &model_of(cx, &v.su));
        let (note, shown) = match o.spec.mighost {
            Mighost::Ipl => (
                "NSI6231 LIVE MIGRATION HAS OCCURRED; DATA OF THE IPL HOST WILL BE DISPLAYED",
                v.ipl_configuration.clone(),
            ),
            Mighost::Current => {
                ("NSI6232 LIVE MIGRATION HAS OCCURRED; DATA OF THE CURRENT HOST WILL BE DISPLAYED", current.clone())
            }
        };
        Some(SystemInformation {
            note: Some(note.to_string()),
            configuration: shown,
            ipl_configuration: v.ipl_configuration.clone(),
            current_configuration: current,
        })
    } else {
        None
    };
    let placed_msg = format!("on SU {}{}", v.su, v.index.map(|i| format!(", VM index {i}")).unwrap_or_default());
    set_condition(&mut st.conditions, "Placed", ConditionStatus::True, "Placed", &placed_msg, Some(gen), &now);
    let desired: VmState = o.spec.state.into();
    match problems.first() {
        Some((reason, _)) => {
            let msg: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            set_condition(
                &mut st.conditions,
                "Ready",
                ConditionStatus::False,
                reason,
                &msg.join("; "),
                Some(gen),
                &now,
            );
        }
        None if v.state == desired => {
            set_condition(
                &mut st.conditions,
                "Ready",
                ConditionStatus::True,
                "StateReached",
                &format!("{desired}"),
                Some(gen),
                &now,
            );
        }
        None => {
            set_condition(
                &mut st.conditions,
                "Ready",
                ConditionStatus::False,
                "Converging",
                &format!("{} -> {desired}", v.state),
                Some(gen),
                &now,
            );
        }
    }
    finish(o, st)
}

/// s4.8: "If the VM that needs to be migrated is monitored with a MONJV ... then on the
/// source SU at the start of the migration the string MIGR-OUT is written at the
/// distance 87 - 94 of the MONJV. If the migration is successful, than the monitoring
/// state is set to $T (VM terminated)." MONJVs exist from the activation on.
fn monjv(o: &Object<VMDefinitionSpec, VMDefinitionStatus>, v: &SimVm, migrating: bool) -> Option<VmMonjv> {
    let name = o.spec.monjv.clone()?;
    if !v.initialised() && !v.monjv_terminated {
        return None;
    }
    let state = if v.monjv_terminated { "$T" } else { "$R" };
    let migration = (migrating && !v.monjv_terminated).then(|| "MIGR-OUT".to_string());
    Some(VmMonjv { name, state: state.to_string(), migration })
}

fn finish(o: &Object<VMDefinitionSpec, VMDefinitionStatus>, st: VMDefinitionStatus) -> Outcome {
    let mut r = o.clone();
    r.status = st;
    Outcome::status(r.into_resource())
}

/// A deleted definition: its VM is deleted and its resources freed; a migration of it
/// is rolled back.
pub fn cleanup(cx: &mut Cx, o: &Object<VMDefinitionSpec, VMDefinitionStatus>) {
    let name = o.name().to_string();
    cx.world.lost_vms.remove(&name);
    cx.world.dirty_override.remove(&name);
    cx.world.waiting_vms.remove(&name);
    let lms: Vec<String> = cx.world.migrations.iter().filter(|(_, m)| m.vm == name).map(|(k, _)| k.clone()).collect();
    for lm in lms {
        super::lm::rollback(cx, &lm, "the VMDefinition was deleted");
    }
    if let Some(v) = cx.world.remove_vm(&name) {
        cx.world.release_devices(&v.su, &name);
        vm_event(
            cx,
            &name,
            EventType::Normal,
            "VmDefinitionDeleted",
            format!("VM {} and its definition deleted on {}", v.vm_name, v.su),
        );
        wake_waiting(cx, &v.su);
    }
    cx.world.touch();
}
