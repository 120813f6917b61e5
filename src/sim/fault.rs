//! Faults and repairs: the `sectl sim ...` verbs as changes to the world. Each returns
//! the events the hardware itself reports (e.g. M2000: "MU deactivated"); the
//! consequences for clusters are found by the reconcilers.

use super::{UnitKind, World};
use crate::store::EventType;

/// One change to the simulated world.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Power a unit (MU, SU, HNC) off or on.
    Power { unit: String, on: bool },
    /// Take the ISL-E of a management cluster down or up.
    Link { cluster: String, up: bool },
    /// Fail or repair an external configuration disk.
    Disk { disk: String, ok: bool },
    /// Stop (/BCEND, on purpose), fail, or start BCAM in an SU /390's monitor.
    Bcam { su: String, up: bool, on_purpose: bool },
    /// Stop or start REWAS in an SU /390's monitor.
    Rewas { su: String, up: bool },
    /// Set how fast a VM's workload dirties memory (MiB/s).
    Dirty { vm: String, mibps: f64 },
    /// Put a running VM in state WAIT (the hypervisor stopped it), or let it resume.
    Wait { vm: String, on: bool },
    /// Start or end a dynamic I/O configuration change (/START-CONFIGURATION-UPDATE)
    /// in an SU's VM2000 monitor.
    IoConfig { su: String, running: bool },
    /// Initiate a VM2000 shutdown (/SHUTDOWN-VM VM-ID=*VM2000) on an SU, or cancel it.
    Shutdown { su: String, initiated: bool },
    /// A device of an SU is no longer (or again) in an operable state.
    Device { su: String, mn: String, ok: bool },
    /// The resource monitor finds a resource problem on a unit, or no longer.
    ResMon { unit: String, problem: bool },
    /// Switch an SU x86 to maintenance mode, or back to normal operation.
    Maintenance { su: String, on: bool },
    /// The network connection of an SU /390's monitor to its system disk fails or is
    /// repaired.
    SysDisk { su: String, ok: bool },
    /// Move the clock forward.
    Advance { ms: u64 },
}

/// An event the simulated hardware reports.
#[derive(Debug, Clone, PartialEq)]
pub struct HwEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// INFO, NOTICE, WARNING, ERROR.
    pub priority: &'static str,
    /// M2000, X2000, VM2000, ...
    pub component: &'static str,
    /// Unit or object.
    pub object: String,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Parses a duration like `90s`, `5m`, `1h30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 90s, 5m, 1h)"))?;
    u64::try_from(d.as_millis()).map_err(|_| format!("duration {s:?} is too long"))
}

/// Parses the duration of `sim advance`: like `parse_duration`, but a duration too
/// long to count in ms is u64::MAX, so that it is refused with the clock's own message
/// (the clock's end) rather than as bad syntax.
fn parse_advance(s: &str) -> Result<u64, String> {
    match humantime::parse_duration(s) {
        Ok(d) => Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        Err(humantime::DurationError::NumberOverflow) => Ok(u64::MAX),
        Err(e) => Err(format!("invalid duration {s:?}: {e} (use e.g. 90s, 5m, 1h)")),
    }
}

impl Fault {
    /// Parses `sectl sim` arguments, e.g. `["power", "off", "abgwhite"]`.
    pub fn parse(args: &[String]) -> Result<Fault, String> {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let usage = "usage: sim power off|on UNIT | link down|up MGMT-CLUSTER | disk fail|repair DISK | \
                     bcam stop|fail|start SU | rewas stop|start SU | dirty VM MIB_PER_S | wait|resume VM | \
                     ioconfig start|end SU | shutdown initiate|cancel SU | device fail|repair SU MN | \
                     resmon warning|clear UNIT | maintenance on|off SU | sysdisk fail|repair SU | advance DURATION";
        Ok(match a.as_slice() {
            ["power", "off", u] => Fault::Power { unit: u.to_string(), on: false },
            ["power", "on", u] => Fault::Power { unit: u.to_string(), on: true },
            ["link", "down", c] => Fault::Link { cluster: c.to_string(), up: false },
            ["link", "up", c] => Fault::Link { cluster: c.to_string(), up: true },
            ["disk", "fail", d] => Fault::Disk { disk: d.to_string(), ok: false },
            ["disk", "repair", d] => Fault::Disk { disk: d.to_string(), ok: true },
            ["bcam", "stop", s] => Fault::Bcam { su: s.to_string(), up: false, on_purpose: true },
            ["bcam", "fail", s] => Fault::Bcam { su: s.to_string(), up: false, on_purpose: false },
            ["bcam", "start", s] => Fault::Bcam { su: s.to_string(), up: true, on_purpose: false },
            ["rewas", "stop", s] => Fault::Rewas { su: s.to_string(), up: false },
            ["rewas", "start", s] => Fault::Rewas { su: s.to_string(), up: true },
            ["advance", d] => Fault::Advance { ms: parse_advance(d)? },
            ["device", "fail", s, mn] => Fault::Device { su: s.to_string(), mn: mn.to_string(), ok: false },
            ["device", "repair", s, mn] => Fault::Device { su: s.to_string(), mn: mn.to_string(), ok: true },
            ["resmon", "warning", u] => Fault::ResMon { unit: u.to_string(), problem: true },
            ["resmon", "clear", u] => Fault::ResMon { unit: u.to_string(), problem: false },
            ["sysdisk", "fail", s] => Fault::SysDisk { su: s.to_string(), ok: false },
            ["sysdisk", "repair", s] => Fault::SysDisk { su: s.to_string(), ok: true },
            ["maintenance", "on", s] => Fault::Maintenance { su: s.to_string(), on: true },
            ["maintenance", "off", s] => Fault::Maintenance { su: s.to_string(), on: false },
            ["ioconfig", "start", s] => Fault::IoConfig { su: s.to_string(), running: true },
            ["ioconfig", "end", s] => Fault::IoConfig { su: s.to_string(), running: false },
            ["shutdown", "initiate", s] => Fault::Shutdown { su: s.to_string(), initiated: true },
            ["shutdown", "cancel", s] => Fault::Shutdown { su: s.to_string(), initiated: false },
            ["wait", vm] => Fault::Wait { vm: vm.to_string(), on: true },
            ["resume", vm] => Fault::Wait { vm: vm.to_string(), on: false },
            ["dirty", vm, rate] => {
                let mibps: f64 = rate.parse().map_err(|_| format!("dirty rate {rate:?} must be a number of MiB/s"))?;
                if !(mibps >= 0.0 && mibps.is_finite()) {
                    return Err(format!("dirty rate must be >= 0, got {rate}"));
                }
                Fault::Dirty { vm: vm.to_string(), mibps }
            }
            _ => return Err(usage.to_string()),
        })
    }

    /// Applies the change; returns what the hardware reports, or why it cannot apply.
    pub fn apply(&self, w: &mut World) -> Result<Vec<HwEvent>, String> {
        let now = w.clock.now_ms;
        let mut evs = Vec::new();
        match self {
            Fault::Power { unit, on } => {
                let known: Vec<String> = w.units.keys().cloned().collect();
                let u = w.units.get_mut(unit).ok_or_else(|| {
                    format!(
                        "no unit {unit:?}; units are: {}",
                        if known.is_empty() { "(none yet)".into() } else { known.join(", ") }
                    )
                })?;
                if u.power_on != *on {
                    u.power_on = *on;
                    u.power_changed_ms = now;
                    let component = match u.kind {
                        UnitKind::MU => "M2000",
                        UnitKind::SU => "Sys-Mgmt",
                        UnitKind::HNC => "HNC",
                    };
                    evs.push(HwEvent {
                        type_: if *on { EventType::Normal } else { EventType::Warning },
                        priority: if *on { "INFO" } else { "NOTICE" },
                        component,
                        object: format!("SEServer/{}", u.server),
                        reason: if *on { "UnitActivated" } else { "UnitDeactivated" },
                        message: format!(
                            "{} {} of {} {}",
                            u.kind,
                            u.name,
                            u.server,
                            if *on { "powered on and activated" } else { "powered off: deactivated" }
                        ),
                    });
                    let is_su = u.su.is_some();
                    if let Some(su) = u.su.as_mut() {
                        // A restarted monitor comes up with its subsystems running.
                        if *on {
                            su.bcam_up = true;
                            su.bcam_ended_on_purpose = false;
                            su.rewas_up = true;
                        }
                    }
                    if is_su && !*on {
                        evs.extend(su_down(w, unit));
                    }
                }
            }
            Fault::Link { cluster, up } => {
                let l =
                    w.links.get_mut(cluster).ok_or_else(|| format!("no ISL-E of a management cluster {cluster:?}"))?;
                if l.up != *up {
                    l.up = *up;
                    evs.push(HwEvent {
                        type_: if *up { EventType::Normal } else { EventType::Warning },
                        priority: if *up { "INFO" } else { "ERROR" },
                        component: "Net",
                        object: format!("ManagementCluster/{cluster}"),
                        reason: if *up { "IslEUp" } else { "IslEDown" },
                        message: format!("ISL-E of management cluster {cluster} {}", if *up { "up" } else { "down" }),
                    });
                }
            }
            Fault::Disk { disk, ok } => {
                let d = w.disks.get_mut(disk).ok_or_else(|| format!("no external configuration disk {disk:?}"))?;
                if d.ok != *ok {
                    d.ok = *ok;
                    evs.push(HwEvent {
                        type_: if *ok { EventType::Normal } else { EventType::Warning },
                        priority: if *ok { "INFO" } else { "WARNING" },
                        component: "M2000",
                        object: d.owner.clone(),
                        reason: if *ok { "ConfigDiskRepaired" } else { "ConfigDiskFailed" },
                        message: format!(
                            "external configuration disk {disk} {}",
                            if *ok { "available again" } else { "failed" }
                        ),
                    });
                }
            }
            Fault::Bcam { su, up, on_purpose } => {
                let server = server_key(w, su);
                let s = monitor_390(w, su, "BCAM")?;
                if s.bcam_up != *up {
                    s.bcam_up = *up;
                    s.bcam_ended_on_purpose = !*up && *on_purpose;
                    evs.push(HwEvent {
                        type_: if *up { EventType::Normal } else { EventType::Warning },
                        priority: if *up { "INFO" } else { "WARNING" },
                        component: "VM2000",
                        object: server.clone(),
                        reason: if *up { "BcamStarted" } else { "BcamStopped" },
                        message: if *up {
                            format!("BCAM active again in the monitor system of {su}")
                        } else if *on_purpose {
                            format!("VMS2331 BCAM ended in the monitor system of {su} (/BCEND)")
                        } else {
                            format!("BCAM failed in the monitor system of {su}")
                        },
                    });
                }
            }
            Fault::Rewas { su, up } => {
                let server = server_key(w, su);
                let s = monitor_390(w, su, "REWAS")?;
                if s.rewas_up != *up {
                    s.rewas_up = *up;
                    evs.push(HwEvent {
                        type_: if *up { EventType::Normal } else { EventType::Warning },
                        priority: if *up { "INFO" } else { "WARNING" },
                        component: "VM2000",
                        object: server.clone(),
                        reason: if *up { "RewasStarted" } else { "RewasStopped" },
                        message: format!(
                            "REWAS {} in the monitor system of {su}",
                            if *up { "started" } else { "stopped" }
                        ),
                    });
                }
            }
            Fault::Dirty { vm, mibps } => {
                let key = vm_key(w, vm)?;
                w.dirty_override.insert(key, *mibps);
            }
            Fault::Wait { vm, on } => {
                let key = vm_key(w, vm)?;
                let v = &w.vms[&key];
                if *on {
                    if v.state != crate::api::VmState::Running {
                        return Err(format!(
                            "VM {} is {}, not RUNNING: only a running VM can be put in WAIT",
                            v.vm_name, v.state
                        ));
                    }
                    w.waiting_vms.insert(key.clone());
                    if let Some(v) = w.vms.get_mut(&key) {
                        v.state = crate::api::VmState::Wait;
                    }
                } else if w.waiting_vms.remove(&key) {
                    // The VM reconciler takes it back to its desired state.
                    if let Some(v) = w.vms.get_mut(&key) {
                        v.state = crate::api::VmState::Running;
                    }
                }
            }
            Fault::Device { su, mn, ok } => {
                let server = server_key(w, su);
                let s = w.su_mut(su).ok_or_else(|| format!("no server unit {su:?}"))?;
                if !s.devices.contains_key(mn) {
                    return Err(format!("device {mn:?} is not generated on {su}"));
                }
                let changed = if *ok { s.inoperable.remove(mn) } else { s.inoperable.insert(mn.clone()) };
                if changed {
                    evs.push(HwEvent {
                        type_: if *ok { EventType::Normal } else { EventType::Warning },
                        priority: if *ok { "INFO" } else { "WARNING" },
                        component: "Sys-Mgmt",
                        object: server,
                        reason: if *ok { "DeviceOperable" } else { "DeviceNotOperable" },
                        message: format!("device {mn} on {su} {}", if *ok { "operable again" } else { "not operable" }),
                    });
                }
            }
            Fault::ResMon { unit, problem } => {
                let u = w.units.get_mut(unit).ok_or_else(|| format!("no unit {unit:?}"))?;
                u.resmon_problem = *problem;
            }
            Fault::IoConfig { su, running } => evs.extend(io_config(w, su, *running)?),
            Fault::Maintenance { su, on } => evs.extend(maintenance(w, su, *on)?),
            Fault::SysDisk { su, ok } => {
                let server = server_key(w, su);
                let s = monitor_390(w, su, "a system disk reached over the network")?;
                if s.sysdisk_faulty == *ok {
                    s.sysdisk_faulty = !*ok;
                    evs.push(HwEvent {
                        type_: if *ok { EventType::Normal } else { EventType::Warning },
                        priority: if *ok { "INFO" } else { "WARNING" },
                        component: "VM2000",
                        object: server,
                        reason: if *ok { "SystemDiskReachable" } else { "SystemDiskUnreachable" },
                        message: format!(
                            "network connection of the monitor system of {su} to its system disk {}",
                            if *ok { "repaired" } else { "faulty" }
                        ),
                    });
                }
            }
            Fault::Shutdown { su, initiated } => {
                let server = server_key(w, su);
                let s = monitor_vm2000(w, su)?;
                if s.shutdown_initiated != *initiated {
                    s.shutdown_initiated = *initiated;
                    evs.push(HwEvent {
                        type_: if *initiated { EventType::Warning } else { EventType::Normal },
                        priority: if *initiated { "WARNING" } else { "INFO" },
                        component: "VM2000",
                        object: server,
                        reason: if *initiated { "Vm2000ShutdownInitiated" } else { "Vm2000ShutdownCancelled" },
                        message: format!(
                            "VM2000 shutdown {} on {su}",
                            if *initiated { "initiated (/SHUTDOWN-VM VM-ID=*VM2000)" } else { "cancelled" }
                        ),
                    });
                }
            }
            Fault::Advance { .. } => {}
        }
        w.touch();
        Ok(evs)
    }
}

/// "SEServer/<name>" of the server that has unit `unit` (the object events name).
fn server_key(w: &World, unit: &str) -> String {
    w.unit(unit).map(|u| format!("SEServer/{}", u.server)).unwrap_or_default()
}

/// The runtime of SU /390 `su`, whose monitor system runs `what` (BCAM, REWAS).
fn monitor_390<'a>(w: &'a mut World, su: &str, what: &str) -> Result<&'a mut super::SuRuntime, String> {
    let s = w.su_mut(su).ok_or_else(|| format!("no server unit {su:?}"))?;
    if s.su_type != crate::api::SuType::S390 {
        return Err(format!("{su} is an SU x86; {what} in a monitor system exists on SU /390 only"));
    }
    Ok(s)
}

/// The runtime of SU `su`, which must run VM2000 (a monitor system or X2000 hypervisor).
fn monitor_vm2000<'a>(w: &'a mut World, su: &str) -> Result<&'a mut super::SuRuntime, String> {
    let s = w.su_mut(su).ok_or_else(|| format!("no server unit {su:?}"))?;
    if s.mode != crate::api::OperationMode::VM2000 {
        return Err(format!("{su} runs Native BS2000: there is no VM2000 on it"));
    }
    Ok(s)
}

/// s4.8: "The command /START-CONFIGURATION-UPDATE is rejected during the LM"; "As long
/// as a VM has the sub-status DIFF, it's excluded from the dynamic I/O configuration
/// change".
fn io_config(w: &mut World, su: &str, running: bool) -> Result<Vec<HwEvent>, String> {
    let server = server_key(w, su);
    monitor_vm2000(w, su)?;
    let busy = w.migrations.iter().find(|(_, m)| {
        (m.source == su || m.target == su)
            && !matches!(m.phase, crate::api::LmPhase::Completed | crate::api::LmPhase::Aborted)
    });
    if let (true, Some((lm, _))) = (running, busy) {
        return Err(format!(
            "/START-CONFIGURATION-UPDATE on {su} rejected: live migration {lm} is running (manual s4.8)"
        ));
    }
    let diff: Vec<String> =
        w.vms_on(su).filter(|(_, v)| v.substates.contains("DIFF")).map(|(_, v)| v.vm_name.clone()).collect();
    let s = w.su_mut(su).expect("checked");
    if s.io_change_running == running {
        return Ok(Vec::new());
    }
    s.io_change_running = running;
    let excluded = if diff.is_empty() || !running {
        String::new()
    } else {
        format!("; excluded (substate DIFF): {}", diff.join(", "))
    };
    Ok(vec![HwEvent {
        type_: EventType::Normal,
        priority: "NOTICE",
        component: "VM2000",
        object: server,
        reason: if running { "IoConfigurationChangeStarted" } else { "IoConfigurationChangeEnded" },
        message: format!(
            "dynamic I/O configuration change {} on {su}{excluded}",
            if running { "started (/START-CONFIGURATION-UPDATE)" } else { "ended" }
        ),
    }])
}

/// Maintenance mode of an SU x86 (manual s3: the cluster status depends "on the
/// states of the involved units (for example normal operation or maintenance mode for
/// an SU x86)"). Only an SU x86 has it; it is refused while a live migration to or
/// from the SU runs (the migration would be cut off).
fn maintenance(w: &mut World, su: &str, on: bool) -> Result<Vec<HwEvent>, String> {
    let server = server_key(w, su);
    let s = w.su(su).ok_or_else(|| format!("no server unit {su:?}"))?;
    if s.su_type != crate::api::SuType::X86 {
        return Err(format!("{su} is an SU /390: maintenance mode exists for SU x86 only (manual s3)"));
    }
    let busy = w.migrations.iter().find(|(_, m)| {
        (m.source == su || m.target == su)
            && !matches!(m.phase, crate::api::LmPhase::Completed | crate::api::LmPhase::Aborted)
    });
    if let (true, Some((lm, _))) = (on, busy) {
        return Err(format!("maintenance mode for {su} refused: live migration {lm} is running"));
    }
    let u = w.units.get_mut(su).expect("an SU is a unit");
    if u.maintenance == on {
        return Ok(Vec::new());
    }
    u.maintenance = on;
    Ok(vec![HwEvent {
        type_: if on { EventType::Warning } else { EventType::Normal },
        priority: if on { "NOTICE" } else { "INFO" },
        component: "X2000",
        object: server,
        reason: if on { "MaintenanceModeOn" } else { "MaintenanceModeOff" },
        message: if on {
            format!("SU {su} switched to maintenance mode")
        } else {
            format!("SU {su} back in normal operation (maintenance mode ended)")
        },
    }])
}

/// The VMDefinition name of a placed VM given by object name or VM name.
fn vm_key(w: &World, vm: &str) -> Result<String, String> {
    w.vms
        .iter()
        .find(|(k, v)| *k == vm || v.vm_name == vm)
        .map(|(k, _)| k.clone())
        .ok_or_else(|| format!("no placed VM {vm:?} (give the VMDefinition name or the VM name)"))
}

/// An SU went down: its initialised VMs are gone. Persistent definitions stay (as
/// DEFINED_ONLY; RUNNING ones come back when the SU is powered on again), the others
/// are lost.
fn su_down(w: &mut World, su: &str) -> Vec<HwEvent> {
    let mut evs = Vec::new();
    let server = server_key(w, su);
    let names: Vec<String> = w.vms_on(su).map(|(k, _)| k.clone()).collect();
    for name in names {
        w.release_devices(su, &name);
        w.waiting_vms.remove(&name);
        let v = w.vms.get_mut(&name).expect("listed");
        if v.persistent {
            if v.initialised() {
                v.state = crate::api::VmState::DefinedOnly;
                v.index = None;
            }
        } else {
            let v = w.remove_vm(&name).expect("listed");
            w.lost_vms.insert(name.clone(), v.applied_generation);
            evs.push(HwEvent {
                type_: EventType::Warning,
                priority: "WARNING",
                component: "VM2000",
                object: format!("VMDefinition/{name}"),
                reason: "DefinitionLost",
                message: format!(
                    "VM {} on {su} was not persistent: its definition is gone with the SU ({server})",
                    v.vm_name
                ),
            });
        }
    }
    evs
}
