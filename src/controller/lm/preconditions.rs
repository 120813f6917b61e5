//! The preconditions of a live migration (s4.1, s4.8) and the rejection that reports
//! them all together. Each unmet precondition is a `Conflict` with a message code: the
//! manual's where it names one (VMS2437, VMS4015, VMS2332), else sectl's own SEC24xx
//! (one per reason, see `code_of`). Conflicts found on the target SU are listed in
//! VMS2404 "REJECTED BY THE TARGET SU"; those of the source SU, the VM or the SU cluster
//! in SEC2405 "REJECTED BY THE SOURCE SU"; then VMS2461 "NOT POSSIBLE" (s4.3).

use super::console::vm_label;
use super::{done, link_between, su_cluster};
use crate::api::{
    set_condition, ClusterState, ConditionStatus, Conflict, LiveMigrationSpec, LiveMigrationStatus, LmPhase, Object,
    OperationMode, SuType, VMDefinitionSpec, VmState,
};
use crate::controller::common::{migrating, wanted_devices};
use crate::controller::{Cx, Outcome};
use crate::sim::{SuRuntime, World};
use crate::store::EventType;

/// Which side of the migration a conflict was found on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source SU, the VM itself or the SU cluster (checked where the command runs).
    Source,
    /// The target SU (VMS2404).
    Target,
}

/// One unmet precondition, with the device it concerns (for VMS2404's REASON list).
#[derive(Debug, Clone)]
pub struct Found {
    /// The conflict as the status shows it.
    pub conflict: Conflict,
    /// Where it was found.
    pub side: Side,
    /// The MN it concerns, if any.
    pub device: Option<String>,
}

/// The message code of a reason: the manual's where it names one, else sectl's.
pub fn code_of(reason: &str) -> &'static str {
    match reason {
        "DeviceAssignedExclusively" => "VMS2437",
        "VmAlreadyInitialised" => "VMS4015",
        "BcamNotActive" => "VMS2332",
        "SameServerUnit" => "SEC2410",
        "ServerUnitNotFound" | "TargetNotDetermined" => "SEC2411",
        "MonitorVm" => "SEC2412",
        "NotSameSuCluster" => "SEC2413",
        "SuClusterInactive" => "SEC2414",
        "SuClusterError" => "SEC2415",
        "ArchitectureMismatch" => "SEC2416",
        "OperationModeMismatch" => "SEC2417",
        "NativeOn390" => "SEC2418",
        "NoManagementCluster" => "SEC2419",
        "SourceUnavailable" | "ServerUnitPoweredOff" => "SEC2420",
        "VmStateWait" => "SEC2421",
        "InsufficientMemory" => "SEC2422",
        "VmNameInUse" => "SEC2423",
        "VmIndexInUse" | "NoFreeVmIndex" => "SEC2424",
        "VmDefinitionLimitReached" => "SEC2426",
        "CpuPoolMissing" | "CpuPoolEmpty" => "SEC2427",
        "VmGroupMissing" => "SEC2428",
        "NativeServerUnitOccupied" => "SEC2429",
        "DeviceNotGenerated" => "SEC2433",
        "DeviceNotCompatible" => "SEC2434",
        "RewasNotActive" => "SEC2435",
        "MigrationFromSourceRunning" | "AlreadyMigrating" => "SEC2436",
        "IoConfigurationChangeRunning" => "SEC2438",
        "Vm2000ShutdownInitiated" => "SEC2439",
        "ServerUnitInMaintenance" => "SEC2408",
        "SystemDiskUnreachable" => "SEC2307",
        _ => "SEC2409",
    }
}

/// A conflict found on `side`.
pub fn found(side: Side, reason: &str, message: String, device: Option<String>) -> Found {
    Found {
        conflict: Conflict { code: Some(code_of(reason).to_string()), reason: reason.to_string(), message },
        side,
        device,
    }
}

/// Every unmet precondition (s4.1, s4.8), all together.
pub fn preconditions(cx: &Cx, vm: &str, source: &str, target: &str) -> Vec<Found> {
    use Side::*;
    let mut out = Vec::new();
    let w = &*cx.world;
    let v = &w.vms[vm];
    if source == target {
        out.push(found(Source, "SameServerUnit", format!("the VM is already on SU {target}"), None));
        return out;
    }
    let (Some(src), Some(tgt)) = (w.su(source), w.su(target)) else {
        out.push(found(Target, "ServerUnitNotFound", format!("SU {target} does not exist"), None));
        return out;
    };
    if v.index == Some(1) {
        out.push(found(Source, "MonitorVm", "the monitor VM cannot be migrated".into(), None));
    }
    cluster_conflicts(cx, source, target, src, tgt, &mut out);
    if !w.powered(source) {
        out.push(found(Source, "SourceUnavailable", format!("SU {source} is powered off"), None));
    }
    for (side, su) in [(Source, source), (Target, target)] {
        if w.unit(su).is_some_and(|u| u.maintenance) {
            out.push(found(side, "ServerUnitInMaintenance", format!("SU {su} is in maintenance mode"), None));
        }
    }
    if v.state == VmState::Wait {
        out.push(found(Source, "VmStateWait", format!("VM {} is in state WAIT", v.vm_name), None));
    }
    target_conflicts(cx, vm, source, target, src, tgt, &mut out);
    monitor_conflicts(w, vm, source, target, src, tgt, &mut out);
    out
}

/// Same active SU cluster, architecture, operation mode, Management Cluster (s4.1).
fn cluster_conflicts(cx: &Cx, source: &str, target: &str, src: &SuRuntime, tgt: &SuRuntime, out: &mut Vec<Found>) {
    use Side::*;
    match su_cluster(cx, source, target) {
        None => out.push(found(
            Source,
            "NotSameSuCluster",
            format!("SUs {source} and {target} are not in one SU cluster"),
            None,
        )),
        Some(c) if !c.spec.active => {
            out.push(found(Source, "SuClusterInactive", format!("SU cluster {} is INACTIVE", c.name()), None))
        }
        Some(c) if c.status.state == Some(ClusterState::Error) => out.push(found(
            Source,
            "SuClusterError",
            format!("SU cluster {} is in ERROR: {}", c.name(), c.status.reasons.join("; ")),
            None,
        )),
        Some(_) => {}
    }
    if src.su_type != tgt.su_type {
        out.push(found(
            Source,
            "ArchitectureMismatch",
            format!("SU {source} is {} but SU {target} is {}", src.su_type, tgt.su_type),
            None,
        ));
    }
    if src.mode != tgt.mode {
        out.push(found(
            Source,
            "OperationModeMismatch",
            format!("SU {source} runs {:?} but SU {target} runs {:?}", src.mode, tgt.mode),
            None,
        ));
    }
    // s4.1: "LM of native BS2000 is only possible for SU x86".
    if src.su_type == SuType::S390 && (src.mode == OperationMode::Native || tgt.mode == OperationMode::Native) {
        out.push(found(
            Source,
            "NativeOn390",
            "live migration of Native BS2000 is only possible between SUs x86".into(),
            None,
        ));
    }
    if link_between(cx, source, target).is_none() {
        out.push(found(
            Source,
            "NoManagementCluster",
            format!("SUs {source} and {target} are in two servers without a management cluster with ISL-E"),
            None,
        ));
    }
}

/// What the target must offer: memory, name, index, definition slot, pool, group and
/// devices (the same rules as placing a definition), devices generated compatibly.
fn target_conflicts(
    cx: &Cx,
    vm: &str,
    source: &str,
    target: &str,
    src: &SuRuntime,
    tgt: &SuRuntime,
    out: &mut Vec<Found>,
) {
    let w = &*cx.world;
    let v = &w.vms[vm];
    let vm_obj = cx.cache.get_typed::<VMDefinitionSpec>(vm).expect("checked by the caller");
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
        // s4.3: "VMS2437 DEVICE '(&00)' NOT ASSIGNABLE TO VIRTUAL MACHINE ON THE TARGET SU".
        let message = s.message.replacen("TO VIRTUAL MACHINE:", "TO VIRTUAL MACHINE ON THE TARGET SU:", 1);
        out.push(found(Side::Target, s.reason, message, s.detail));
    }
    // I/O configuration: each assigned device generated compatibly (same MN, type,
    // host connector, unit ID).
    for mn in devices.keys() {
        if let (Some(a), Some(b)) = (src.devices.get(mn), tgt.devices.get(mn)) {
            if a.device_type != b.device_type || a.host_connector != b.host_connector || a.unit_id != b.unit_id {
                out.push(found(Side::Target, "DeviceNotCompatible", format!(
                    "device {mn} is generated differently on {target} (type {:?}, host connector {}, unit ID {}) than on {source} ({:?}, {}, {})",
                    b.device_type, b.host_connector, b.unit_id, a.device_type, a.host_connector, a.unit_id), Some(mn.clone())));
            }
        }
    }
    if src.mode == OperationMode::Native {
        native_devices(source, target, src, tgt, &devices, out);
    }
}

/// s4.8: "In the case of native BS2000, all devices are assigned to the BS2000. In
/// case of unidentical generation of BS2000 devices, an LM is only possible on one side
/// only or not at all": every device of the source (but tapes and local disks, which
/// are detached) must be generated identically on the target.
fn native_devices(
    source: &str,
    target: &str,
    src: &SuRuntime,
    tgt: &SuRuntime,
    checked: &std::collections::BTreeMap<String, crate::api::DeviceUsage>,
    out: &mut Vec<Found>,
) {
    for (mn, a) in &src.devices {
        if checked.contains_key(mn) || crate::sim::vm::detached_by_lm(a.device_type) == Some(false) {
            continue;
        }
        match tgt.devices.get(mn) {
            None => out.push(found(
                Side::Target,
                "DeviceNotGenerated",
                format!("device {mn} of SU {source} is not generated on SU {target}: all devices belong to the Native BS2000 system"),
                Some(mn.clone()),
            )),
            Some(b) if a.device_type != b.device_type || a.host_connector != b.host_connector || a.unit_id != b.unit_id => {
                out.push(found(
                    Side::Target,
                    "DeviceNotCompatible",
                    format!("device {mn} is generated differently on {target} than on {source}: all devices belong to the Native BS2000 system"),
                    Some(mn.clone()),
                ))
            }
            _ => {}
        }
    }
}

/// The monitors: REWAS (/390), BCAM for a definition move (/390), one outgoing
/// migration per source, no I/O configuration change, no VM2000 shutdown.
fn monitor_conflicts(
    w: &World,
    vm: &str,
    source: &str,
    target: &str,
    src: &SuRuntime,
    tgt: &SuRuntime,
    out: &mut Vec<Found>,
) {
    let v = &w.vms[vm];
    let sides = [(Side::Source, source, src), (Side::Target, target, tgt)];
    if src.su_type == SuType::S390 {
        for (side, su, s) in sides {
            if !s.rewas_up {
                out.push(found(
                    side,
                    "RewasNotActive",
                    format!("REWAS is not active in the monitor system of {su}"),
                    None,
                ));
            }
            // "VM definitions" (seed 004): with BCAM down every command that directly
            // concerns VM definitions is rejected with VMS2332; MIGRATE-VM-DEFINITION is one.
            if !v.initialised() && !s.bcam_up {
                out.push(found(
                    side,
                    "BcamNotActive",
                    format!(
                        "VMS2332 BCAM is not active in the monitor system of {su}: /MIGRATE-VM-DEFINITION rejected"
                    ),
                    None,
                ));
            } else if !v.initialised() && s.sysdisk_faulty {
                // "... may possibly be executed with a warning or rejected with a
                // corresponding message" (seed 004): moving a definition between two
                // system disks is rejected (see `controller::sysdisk`).
                out.push(found(
                    side,
                    "SystemDiskUnreachable",
                    format!(
                        "the network connection of {su} to its system disk is faulty: /MIGRATE-VM-DEFINITION rejected"
                    ),
                    None,
                ));
            }
        }
    }
    if w.migrations
        .values()
        .any(|m| m.source == source && m.vm != vm && !matches!(m.phase, LmPhase::Completed | LmPhase::Aborted))
    {
        out.push(found(
            Side::Source,
            "MigrationFromSourceRunning",
            format!("another live migration from SU {source} is running"),
            None,
        ));
    }
    if migrating(w, vm) {
        out.push(found(Side::Source, "AlreadyMigrating", format!("VM {} is already being migrated", v.vm_name), None));
    }
    for (side, su, s) in sides {
        if s.io_change_running {
            out.push(found(
                side,
                "IoConfigurationChangeRunning",
                format!("a dynamic I/O configuration change is running on {su}"),
                None,
            ));
        }
        if s.shutdown_initiated {
            out.push(found(side, "Vm2000ShutdownInitiated", format!("a VM2000 shutdown was initiated on {su}"), None));
        }
    }
}

/// The REASON list of VMS2404 / SEC2405: codes, with the MN where one is concerned.
fn reason_list(found: &[Found], side: Side) -> Option<String> {
    let items: Vec<String> = found
        .iter()
        .filter(|f| f.side == side)
        .map(|f| {
            let code = f.conflict.code.clone().unwrap_or_default();
            match &f.device {
                Some(mn) => format!("{code},{mn}"),
                None => code,
            }
        })
        .collect();
    (!items.is_empty()).then(|| items.join(" "))
}

/// The console lines of a rejection (s4.3).
pub fn rejection_lines(label: &str, source: &str, target: &str, found: &[Found]) -> Vec<String> {
    if let Some(f) = found.iter().find(|f| f.conflict.code.as_deref() == Some("VMS4015")) {
        return vec![f.conflict.message.clone()];
    }
    let mut out = Vec::new();
    if let Some(r) = reason_list(found, Side::Target) {
        out.push(format!("VMS2404 LIVE MIGRATION OF VM {label} REJECTED BY THE TARGET SU '{target}'. REASON: {r}"));
    }
    if let Some(r) = reason_list(found, Side::Source) {
        out.push(format!("SEC2405 LIVE MIGRATION OF VM {label} REJECTED BY THE SOURCE SU '{source}'. REASON: {r}"));
    }
    out.push(format!("VMS2461 LIVE MIGRATION OF VM {label} TO TARGET SU '{target}' NOT POSSIBLE"));
    out
}

/// Ends the object as Rejected with all conflicts.
pub fn reject(
    cx: &mut Cx,
    o: &Object<LiveMigrationSpec, LiveMigrationStatus>,
    mut st: LiveMigrationStatus,
    found: Vec<Found>,
    source: &str,
    target: Option<&str>,
) -> Outcome {
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let vm = cx.world.vms.get(o.spec.vm.as_str());
    let label = vm.map(|v| vm_label(v.index, &v.vm_name)).unwrap_or_else(|| format!("(-,{})", o.spec.vm));
    let messages = rejection_lines(&label, source, target.unwrap_or("-"), &found);
    let conflicts: Vec<Conflict> = found.into_iter().map(|f| f.conflict).collect();
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
