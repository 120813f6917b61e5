//! Small helpers the VM, live-migration and recovery reconcilers share: the devices a
//! spec asks for, a server's model for configuration strings, whether a VM is being
//! migrated, and waking definitions that wait for room on an SU. They sit below
//! `vm.rs`, `lm/` and `recovery.rs` so those need not import each other for them.

use super::Cx;
use crate::api::{ConditionStatus, DeviceUsage, Kind, LmPhase, SEServerSpec, VMDefinitionSpec};
use crate::sim::World;
use std::collections::BTreeMap;

/// The devices a spec asks for, by single MN.
pub fn wanted_devices(spec: &VMDefinitionSpec) -> BTreeMap<String, DeviceUsage> {
    let mut m = BTreeMap::new();
    for d in &spec.devices {
        for mn in d.mn.expand() {
            m.insert(mn, d.usage);
        }
    }
    m
}

/// The model of the server that has SU `su` (for configuration strings).
pub fn model_of(cx: &Cx, su: &str) -> String {
    cx.world
        .unit(su)
        .and_then(|u| cx.cache.get_typed::<SEServerSpec>(&u.server))
        .map(|s| s.spec.model.clone())
        .unwrap_or_default()
}

/// Whether a migration of `vm` is in flight.
pub fn migrating(w: &World, vm: &str) -> bool {
    w.migrations.values().any(|m| m.vm == vm && !matches!(m.phase, LmPhase::Completed | LmPhase::Aborted))
}

/// Wakes definitions that wait for resources on `su` (after something was freed there).
pub fn wake_waiting(cx: &mut Cx, su: &str) {
    let waiting: Vec<String> = cx
        .cache
        .typed::<VMDefinitionSpec>()
        .filter(|v| {
            let on = v.status.server_unit.as_deref().unwrap_or(v.spec.server_unit.as_str()) == su;
            let ready = v.status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
            on && !ready
        })
        .map(|v| v.name().to_string())
        .collect();
    cx.wake.extend(waiting.into_iter().map(|n| (Kind::VMDefinition, n)));
}
