//! VMRecovery reconciler (RECOVER-VM-DEFINITION, manual s5): moves a VM definition
//! from an unavailable SU to the local SU of the same SU cluster, only when the remote
//! monitor (or X2000) has written no alive message to the CRD within the intended
//! time, the VM name is unused locally and the local definition limit is not reached.
//! The definition arrives DEFINED_ONLY and stays so until the user changes its spec
//! (e.g. swaps device ranges to the mirror disks and sets state RUNNING).

use super::common::wake_waiting;
use super::{Cx, Outcome};
use crate::api::{
    set_condition, ConditionStatus, Conflict, Kind, Object, OperationMode, RecoveryPhase, SUClusterSpec, SuType,
    VMDefinitionSpec, VMRecoverySpec, VMRecoveryStatus, VmState,
};
use crate::controller::runtime::Action;
use crate::sim::Demand;
use crate::store::EventType;

fn conflict(reason: &str, message: String) -> Conflict {
    Conflict { code: None, reason: reason.to_string(), message }
}

/// Reconciles one VMRecovery.
pub fn reconcile(cx: &mut Cx, o: &Object<VMRecoverySpec, VMRecoveryStatus>) -> anyhow::Result<Outcome> {
    let name = o.name().to_string();
    let gen = o.metadata.generation.unwrap_or(1);
    let now = cx.now();
    let mut st = o.status.clone();
    if st.phase != RecoveryPhase::Pending && st.observed_generation == Some(gen) {
        return Ok(Outcome { status: None, action: Action::Await });
    }
    st = VMRecoveryStatus { observed_generation: Some(gen), conditions: st.conditions, ..Default::default() };
    let vm = o.spec.vm.to_string();
    let local = o.spec.target_server_unit.to_string();
    let vm_obj = cx.cache.get_typed::<VMDefinitionSpec>(&vm).cloned();
    let sim = cx.world.vms.get(&vm).cloned();
    let conflicts = conflicts_of(cx, o, &vm, &local, vm_obj.is_some(), sim.as_ref());
    if !conflicts.is_empty() {
        st.phase = RecoveryPhase::Rejected;
        let summary: Vec<&str> = conflicts.iter().map(|c| c.message.as_str()).collect();
        set_condition(
            &mut st.conditions,
            "Completed",
            ConditionStatus::False,
            &conflicts[0].reason.clone(),
            &summary.join("; "),
            Some(gen),
            &now,
        );
        cx.event(
            EventType::Warning,
            "WARNING",
            "VM2000",
            format!("VMRecovery/{name}"),
            "RecoveryRejected",
            format!("RECOVER-VM-DEFINITION of {vm} to {local} rejected: {}", summary.join("; ")),
        );
        st.conflicts = conflicts;
        return Ok(finish(o, st));
    }
    let v = sim.expect("checked");
    let remote = v.su.clone();
    let vm_gen = vm_obj.as_ref().and_then(|o| o.metadata.generation).unwrap_or(1);
    cx.world.release_devices(&remote, &vm);
    cx.world.move_vm(&vm, &local);
    let w = cx.world.vms.get_mut(&vm).expect("checked");
    w.state = VmState::DefinedOnly;
    w.index = None;
    w.hold_until_generation_above = Some(vm_gen);
    cx.world.touch();
    st.phase = RecoveryPhase::Completed;
    st.messages = vec![
        format!("{local}: SEC2000 COMMAND /RECOVER-VM-DEFINITION VM-NAME={},SERVER-UNIT-NAME={remote}", v.vm_name),
        format!("{local}: SEC2320 DEFINITION OF VM {} RECOVERED FROM SU '{remote}' (STATE DEFINED_ONLY)", v.vm_name),
    ];
    set_condition(&mut st.conditions, "Completed", ConditionStatus::True, "Recovered",
        &format!("the definition of {} is on {local} in state DEFINED_ONLY; modify it (e.g. devices) and set state RUNNING to start it", v.vm_name),
        Some(gen), &now);
    cx.event(
        EventType::Normal,
        "NOTICE",
        "VM2000",
        format!("VMRecovery/{name}"),
        "DefinitionRecovered",
        format!("definition of VM {} recovered from {remote} to {local}", v.vm_name),
    );
    cx.wake.push((Kind::VMDefinition, vm));
    wake_waiting(cx, &remote);
    Ok(finish(o, st))
}

/// Every unmet condition of RECOVER-VM-DEFINITION (s5), all together.
fn conflicts_of(
    cx: &Cx,
    o: &Object<VMRecoverySpec, VMRecoveryStatus>,
    vm: &str,
    local: &str,
    defined: bool,
    sim: Option<&crate::sim::SimVm>,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    match (defined, sim) {
        (false, _) => conflicts.push(conflict("VmNotFound", format!("VMDefinition {vm} does not exist"))),
        (true, None) if cx.world.lost_vms.contains_key(vm) => conflicts.push(conflict(
            "DefinitionNotPersistent",
            format!("the definition of {vm} was not persistent and is gone with its SU; nothing to recover"),
        )),
        (true, None) => conflicts.push(conflict("VmNotPlaced", format!("{vm} has no definition on any SU"))),
        (true, Some(v)) if v.su == local => {
            conflicts.push(conflict("AlreadyLocal", format!("the definition of {} is already on {local}", v.vm_name)))
        }
        (true, Some(v)) => {
            let remote = v.su.clone();
            let same = cx.cache.typed::<SUClusterSpec>().any(|c| {
                c.spec.server_units.iter().any(|s| s.as_str() == remote)
                    && c.spec.server_units.iter().any(|s| s.as_str() == local)
            });
            if !same {
                conflicts
                    .push(conflict("NotSameSuCluster", format!("SUs {remote} and {local} are not in one SU cluster")));
            }
            conflicts.extend(vm2000_conflicts(cx, &remote, local));
            let limit_ms = o.spec.alive_timeout_s.saturating_mul(1000);
            if let Some(last) = cx.world.last_alive_ms(&remote) {
                let age = cx.world.clock.now_ms.saturating_sub(last);
                if age < limit_ms {
                    conflicts.push(conflict("RemoteSuAlive", format!(
                        "the monitor of {remote} wrote an alive message to the CRD {} s ago; recovery needs none for {} s (make sure the SU is really down)",
                        age / 1000, o.spec.alive_timeout_s)));
                }
            }
            let empty = Default::default();
            let demand = Demand {
                owner: vm,
                vm_name: &v.vm_name,
                index: None,
                memory_mib: v.memory_mib,
                pool: &v.pool,
                group: v.group.as_deref(),
                devices: &empty,
                resources: false,
            };
            for s in cx.world.shortfalls(local, &demand) {
                conflicts.push(Conflict {
                    code: s.code.map(|c| c.to_string()),
                    reason: s.reason.to_string(),
                    message: s.message,
                });
            }
        }
    }
    conflicts
}

/// s5: "The command /RECOVER-VM-DEFINITION is available in any SU Cluster (SU /390 and
/// SU x86) with VM2000"; on SU /390 it is a command that directly concerns VM
/// definitions, so it is rejected with VMS2332 while BCAM is down in the local monitor
/// ("VM definitions", seed 004).
fn vm2000_conflicts(cx: &Cx, remote: &str, local: &str) -> Vec<Conflict> {
    let mut out = Vec::new();
    for su in [local, remote] {
        if cx.world.su(su).is_some_and(|s| s.mode == OperationMode::Native) {
            out.push(conflict(
                "NoVm2000",
                format!("SU {su} runs Native BS2000: RECOVER-VM-DEFINITION exists only in SU clusters with VM2000"),
            ));
        }
    }
    if let Some(s) = cx.world.su(local).filter(|s| s.su_type == SuType::S390 && s.mode == OperationMode::VM2000) {
        if !s.bcam_up {
            let why = if s.bcam_ended_on_purpose { "VMS2331 BCAM was ended (/BCEND)" } else { "BCAM is not active" };
            out.push(Conflict {
                code: Some("VMS2332".into()),
                reason: "BcamNotActive".into(),
                message: format!("VMS2332 {why} in the monitor system of {local}: /RECOVER-VM-DEFINITION rejected"),
            });
        } else if s.sysdisk_faulty {
            // See `controller::sysdisk`: a definition moved onto a system disk that
            // cannot be reached is rejected.
            out.push(Conflict {
                code: Some("SEC2307".into()),
                reason: "SystemDiskUnreachable".into(),
                message: format!(
                    "the network connection of {local} to its system disk is faulty: /RECOVER-VM-DEFINITION rejected"
                ),
            });
        }
    }
    out
}

fn finish(o: &Object<VMRecoverySpec, VMRecoveryStatus>, st: VMRecoveryStatus) -> Outcome {
    let mut r = o.clone();
    r.status = st;
    Outcome::status(r.into_resource())
}
