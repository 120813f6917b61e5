//! SEServer reconciler: makes the server's units exist in the simulated world
//! (powered on when first created), keeps each SU's resources and I/O configuration in
//! line with the spec, and reports every unit's power and state.

use super::{Cx, Outcome};
use crate::api::{set_condition, ConditionStatus, Object, SEServerSpec, SEServerStatus, ServerUnitSpec, UnitStatus};
use crate::sim::{Disk, SimDevice, SuRuntime, Unit, UnitKind, World};
use crate::store::EventType;
use std::collections::{BTreeMap, BTreeSet};

/// The SU runtime the spec asks for, keeping the live parts (subsystems, holders) of
/// `old`.
fn su_runtime(spec: &ServerUnitSpec, old: Option<&SuRuntime>) -> SuRuntime {
    let mut pools: BTreeMap<String, u32> = spec.cpu_pools.iter().map(|p| (p.name.to_string(), p.cpus.get())).collect();
    pools.entry("*STDPOOL".to_string()).or_insert(spec.cpus.get());
    let mut devices = BTreeMap::new();
    for d in &spec.devices {
        let first_unit = u32::from_str_radix(d.unit_id.as_str(), 16).unwrap_or(0);
        for (i, mn) in d.mn.expand().into_iter().enumerate() {
            let holders = old.and_then(|o| o.devices.get(&mn)).map(|x| x.holders.clone()).unwrap_or_default();
            devices.insert(
                mn,
                SimDevice {
                    device_type: d.device_type,
                    host_connector: d.host_connector.to_string(),
                    unit_id: format!("{:02X}", (first_unit + i as u32) & 0xFF),
                    holders,
                },
            );
        }
    }
    SuRuntime {
        su_type: spec.su_type,
        mode: spec.operation_mode,
        model: spec.model.clone(),
        cpus: spec.cpus.get(),
        memory_mib: spec.memory_mi_b.get(),
        monitor_mib: spec.monitor_memory_mi_b,
        max_vms: spec.max_vm_definitions.get(),
        pools,
        groups: spec.vm_groups.iter().map(|g| g.name.to_string()).collect(),
        devices,
        bcam_up: old.is_none_or(|o| o.bcam_up),
        bcam_ended_on_purpose: old.is_some_and(|o| o.bcam_ended_on_purpose),
        rewas_up: old.is_none_or(|o| o.rewas_up),
        io_change_running: old.is_some_and(|o| o.io_change_running),
        shutdown_initiated: old.is_some_and(|o| o.shutdown_initiated),
        inoperable: old.map(|o| o.inoperable.clone()).unwrap_or_default(),
        sysdisk_faulty: old.is_some_and(|o| o.sysdisk_faulty),
        unsynced: old.map(|o| o.unsynced.clone()).unwrap_or_default(),
    }
}

/// Makes the world's units of server `name` match `spec`. Returns units that belong to
/// another server (a conflict the validation normally prevents).
fn converge(w: &mut World, name: &str, spec: &SEServerSpec) -> Vec<String> {
    let now = w.clock.now_ms;
    let mut wanted: Vec<(String, UnitKind, Option<&ServerUnitSpec>)> = Vec::new();
    wanted.extend(spec.management_units.iter().map(|m| (m.name.to_string(), UnitKind::MU, None)));
    wanted.extend(spec.hncs.iter().map(|h| (h.name.to_string(), UnitKind::HNC, None)));
    wanted.extend(spec.server_units.iter().map(|s| (s.name.to_string(), UnitKind::SU, Some(s))));
    let mut changed = false;
    let mut foreign = Vec::new();
    let names: BTreeSet<String> = wanted.iter().map(|(n, _, _)| n.clone()).collect();
    for (uname, kind, su_spec) in wanted {
        // Read first: `get_mut` marks the unit (with its holds) to be written.
        match w.units.get(&uname) {
            Some(u) if u.server != name => foreign.push(format!("{uname} (unit of {})", u.server)),
            Some(u) => {
                let su = su_spec.map(|s| su_runtime(s, u.su.as_ref()));
                if u.kind != kind || u.su != su {
                    let u = w.units.get_mut(&uname).expect("read above");
                    u.kind = kind;
                    u.su = su;
                    changed = true;
                }
            }
            None => {
                let su = su_spec.map(|s| su_runtime(s, None));
                w.units.insert(
                    uname.clone(),
                    Unit {
                        name: uname,
                        server: name.to_string(),
                        kind,
                        power_on: true,
                        power_changed_ms: now,
                        resmon_problem: false,
                        maintenance: false,
                        su,
                    },
                );
                changed = true;
            }
        }
    }
    let before = w.units.len();
    w.units.retain(|n, u| u.server != name || names.contains(n));
    changed |= before != w.units.len();
    // The server's own external configuration disks.
    let owner = format!("SEServer/{name}");
    for d in &spec.config_disks {
        if !w.disks.contains_key(d.name.as_str()) {
            w.disks.insert(d.name.to_string(), Disk { ok: true, owner: owner.clone() });
            changed = true;
        }
    }
    let keep: BTreeSet<&str> = spec.config_disks.iter().map(|d| d.name.as_str()).collect();
    let before = w.disks.len();
    w.disks.retain(|n, d| d.owner != owner || keep.contains(n.as_str()));
    changed |= before != w.disks.len();
    if changed {
        w.touch();
    }
    foreign
}

/// Power and state of a unit as the SE Manager lists them.
pub fn unit_status(w: &World, name: &str, kind: UnitKind) -> UnitStatus {
    let u = w.unit(name);
    let on = u.is_some_and(|u| u.power_on);
    UnitStatus {
        name: name.to_string(),
        unit_type: kind.to_string(),
        power: if on { "ON" } else { "OFF" }.to_string(),
        state: match (u, on) {
            (None, _) => "UNKNOWN".to_string(),
            (_, false) => "DOWN".to_string(),
            (Some(u), true) => match &u.su {
                _ if u.maintenance => "MAINTENANCE".to_string(),
                Some(su) if su.su_type == crate::api::SuType::S390 && !su.bcam_up => "RUNNING (BCAM down)".to_string(),
                _ => "RUNNING".to_string(),
            },
        },
    }
}

/// Whether the resource monitor runs for the units of `server` (s2.5): it is new in
/// V6.3, and "In case that the Cluster Manager runs on a V6.2 MU ... Since the
/// resource monitor is not called there will be no status WARNING."
pub fn resmon_runs(cx: &Cx, server: &str) -> bool {
    let version_of = |srv: &str| cx.cache.get_typed::<SEServerSpec>(srv).map(|s| s.spec.version);
    let mc = cx
        .cache
        .typed::<crate::api::ManagementClusterSpec>()
        .find(|m| m.spec.servers.iter().any(|s| s.as_str() == server));
    let deciding = match mc.and_then(|m| cx.world.cluster_managers.get(m.name())) {
        Some(mu) => cx.world.unit(mu).map(|u| u.server.clone()),
        None => Some(server.to_string()),
    };
    deciding.and_then(|s| version_of(&s)) == Some(crate::api::SoftwareVersion::V63)
}

/// A unit as the SE Manager shows it: `unit_status`, with state WARNING when ResMon
/// runs and found a resource problem on a running unit (s2.5).
pub fn unit_view(cx: &Cx, name: &str, kind: UnitKind) -> UnitStatus {
    let mut u = unit_status(cx.world, name, kind);
    let problem = cx.world.unit(name).filter(|x| x.power_on && x.resmon_problem);
    if let Some(x) = problem {
        if resmon_runs(cx, &x.server) {
            u.state = "WARNING".to_string();
        }
    }
    u
}

/// An AU as the SE Manager lists it. s2.5: "If an AU has been registered only for HW
/// monitoring its system status is NOT_MONITORED", and "In case that the V6.3 MUs are
/// powered off and the enquire processes run on the V6.2 MUs ... System NOT_MONITORED
/// for units: This system status is not known in V6.2. Instead status UNCONFIGURED
/// will be displayed." AUs are not simulated further: always powered.
fn au_view(a: &crate::api::ApplicationUnit, v62_enquires: bool) -> UnitStatus {
    let state = match (a.hw_monitoring_only, v62_enquires) {
        (false, _) => "RUNNING",
        (true, false) => "NOT_MONITORED",
        (true, true) => "UNCONFIGURED",
    };
    UnitStatus { name: a.name.to_string(), unit_type: "AU".into(), power: "ON".into(), state: state.into() }
}

/// Whether the units of `server` are enquired by V6.2 MUs only: it is in an
/// inhomogeneous management cluster whose V6.3 MUs are all powered off (s2.5).
fn enquired_on_v62_only(cx: &Cx, server: &str) -> bool {
    let Some(mc) = cx
        .cache
        .typed::<crate::api::ManagementClusterSpec>()
        .find(|m| m.spec.servers.iter().any(|s| s.as_str() == server))
    else {
        return false;
    };
    let specs: Vec<&SEServerSpec> = mc
        .spec
        .servers
        .iter()
        .filter_map(|s| cx.cache.get_typed::<SEServerSpec>(s.as_str()))
        .map(|o| &o.spec)
        .collect();
    let (v63, v62): (Vec<&SEServerSpec>, Vec<&SEServerSpec>) =
        specs.into_iter().partition(|s| s.version == crate::api::SoftwareVersion::V63);
    let powered = |servers: &[&SEServerSpec]| -> Vec<bool> {
        servers.iter().flat_map(|s| &s.management_units).map(|m| cx.world.powered(m.name.as_str())).collect()
    };
    let (v63_on, v62_on) = (powered(&v63), powered(&v62));
    !v63_on.is_empty() && v63_on.iter().all(|on| !on) && v62_on.iter().any(|on| *on)
}

/// s2.5: the event "State of unit '<hostname>' changed from '<oldstate>' to 'WARNING'"
/// (and back), for units whose state turned to or from WARNING.
fn state_events(cx: &mut Cx, server: &str, before: &[UnitStatus], after: &[UnitStatus]) {
    for u in after {
        let Some(old) = before.iter().find(|b| b.name == u.name) else { continue };
        if old.state != u.state && (old.state == "WARNING" || u.state == "WARNING") {
            let (t, p) =
                if u.state == "WARNING" { (EventType::Warning, "WARNING") } else { (EventType::Normal, "INFO") };
            cx.event(
                t,
                p,
                "M2000",
                format!("SEServer/{server}"),
                "UnitStateChanged",
                format!("State of unit '{}' changed from '{}' to '{}'", u.name, old.state, u.state),
            );
        }
    }
}

/// Reconciles one SEServer.
pub fn reconcile(cx: &mut Cx, o: &Object<SEServerSpec, SEServerStatus>) -> anyhow::Result<Outcome> {
    let name = o.name();
    let foreign = converge(cx.world, name, &o.spec);
    let gen = o.metadata.generation;
    let now = cx.now();
    let mut st = o.status.clone();
    st.observed_generation = gen;
    let mut units = Vec::new();
    for m in &o.spec.management_units {
        units.push(unit_view(cx, m.name.as_str(), UnitKind::MU));
    }
    for h in &o.spec.hncs {
        units.push(unit_view(cx, h.name.as_str(), UnitKind::HNC));
    }
    for s in &o.spec.server_units {
        units.push(unit_view(cx, s.name.as_str(), UnitKind::SU));
    }
    let v62_enquires = enquired_on_v62_only(cx, name);
    units.extend(o.spec.application_units.iter().map(|a| au_view(a, v62_enquires)));
    let off: Vec<String> =
        units.iter().filter(|u| u.power != "ON").map(|u| format!("{} {}", u.unit_type, u.name)).collect();
    state_events(cx, name, &o.status.units, &units);
    st.units = units;
    if off.is_empty() {
        set_condition(
            &mut st.conditions,
            "Ready",
            ConditionStatus::True,
            "AllUnitsOn",
            "all units are powered on",
            gen,
            &now,
        );
    } else {
        set_condition(
            &mut st.conditions,
            "Ready",
            ConditionStatus::False,
            "UnitsPoweredOff",
            &format!("powered off: {}", off.join(", ")),
            gen,
            &now,
        );
    }
    let advice = recommendations(cx, name, &o.spec);
    if advice.is_empty() {
        set_condition(&mut st.conditions, "Recommendations", ConditionStatus::True, "Met", "", gen, &now);
    } else {
        let msg = advice.join("; ");
        set_condition(&mut st.conditions, "Recommendations", ConditionStatus::False, "NotMet", &msg, gen, &now);
    }
    if foreign.is_empty() {
        crate::api::remove_condition(&mut st.conditions, "UnitsUnique");
    } else {
        set_condition(
            &mut st.conditions,
            "UnitsUnique",
            ConditionStatus::False,
            "UnitOfAnotherServer",
            &format!("not taken over: {}", foreign.join(", ")),
            gen,
            &now,
        );
    }
    let mut r = o.clone();
    r.status = st;
    Ok(Outcome::status(r.into_resource()))
}

/// What the manual requires or recommends for redundancy and that this server lacks:
/// two MUs in an SE500/SE700 for redundant SKP (s2.1), external configuration disks
/// for MU redundancy (s1.3: mandatory for SE /390, recommended for SE x86), a monitor
/// system of at least 512 MB (s4.8).
fn recommendations(cx: &Cx, name: &str, spec: &SEServerSpec) -> Vec<String> {
    let mut out = Vec::new();
    let has_390 = spec.server_units.iter().any(|u| u.su_type == crate::api::SuType::S390);
    let big = spec.model.starts_with("SE500") || spec.model.starts_with("SE700");
    if big && spec.management_units.len() < 2 {
        out.push(format!(
            "{} with one MU: \"there are still two MUs in a SE500/SE700 required for the redundant SKP functionality\" (s2.1)",
            spec.model
        ));
    }
    let via_mc = cx
        .cache
        .typed::<crate::api::ManagementClusterSpec>()
        .any(|m| m.spec.servers.iter().any(|s| s.as_str() == name) && !m.spec.config_disks.is_empty());
    if spec.management_units.len() == 2 && spec.config_disks.is_empty() && !via_mc {
        out.push(if has_390 {
            "two MUs but no external configuration disk: MU redundancy for SE /390 needs them on both MUs (s1.3, mandatory)".to_string()
        } else {
            "two MUs but no external configuration disk: recommended for MU redundancy of an SE x86 (s1.3)".to_string()
        });
    }
    for su in spec.server_units.iter().filter(|u| u.operation_mode == crate::api::OperationMode::VM2000) {
        if su.monitor_memory_mi_b < 512 {
            out.push(format!(
                "the monitor system of SU {} has {} MiB: \"The main memory size of the monitor system should be at least 512 MB\" (s4.8)",
                su.name, su.monitor_memory_mi_b
            ));
        }
    }
    out
}

/// A deleted server's units leave the world.
pub fn cleanup(cx: &mut Cx, o: &Object<SEServerSpec, SEServerStatus>) {
    let name = o.name().to_string();
    let owner = format!("SEServer/{name}");
    let before = (cx.world.units.len(), cx.world.disks.len());
    cx.world.units.retain(|_, u| u.server != name);
    cx.world.disks.retain(|_, d| d.owner != owner);
    if before != (cx.world.units.len(), cx.world.disks.len()) {
        cx.world.touch();
    }
}
