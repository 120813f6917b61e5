//! The simulated SE hardware: what *is*, kept apart from what the specs *want*.
//!
//! `World` holds units (MU, SU, HNC) with power, SU resources and who holds them, the
//! ISL-E links, the external configuration disks, BCAM/REWAS per SU /390 monitor, and
//! a virtual clock. It changes only through reconcilers converging it toward the specs
//! and through faults (`sectl sim ...`, see `Fault`). It is persisted in the store by
//! entity (`persist.rs`): each unit, device hold, VM placement, migration ... is one
//! value, and the maps remember what changed (`entity.rs`, `hold.rs`), so a reconcile
//! writes only that.

pub mod clock;
pub mod entity;
mod fault;
pub mod hold;
pub mod migration;
pub mod persist;
pub mod vm;

pub use entity::EntityMap;

pub use clock::Clock;
pub use fault::{parse_duration, Fault, HwEvent};
pub use migration::SimMigration;
pub use vm::{Demand, Reservation, Shortfall, SimVm};

use crate::api::{DeviceType, DeviceUsage, OperationMode, SuType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Interval at which monitor systems write their alive message to the CRD.
pub const ALIVE_INTERVAL_MS: u64 = 10_000;

/// Kind of unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitKind {
    /// Management Unit.
    MU,
    /// Server Unit.
    SU,
    /// High-speed Net Connect.
    HNC,
}

impl std::fmt::Display for UnitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// One unit of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// Unit name (unique across servers).
    pub name: String,
    /// SEServer object the unit belongs to.
    pub server: String,
    /// MU, SU or HNC.
    pub kind: UnitKind,
    /// Powered on.
    pub power_on: bool,
    /// Simulated time of the last power change.
    pub power_changed_ms: u64,
    /// The resource monitor (ResMon, V6.3) detects a resource problem on the unit
    /// (`sim resmon warning|clear UNIT`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resmon_problem: bool,
    /// An SU x86 in maintenance mode (`sim maintenance on|off SU`; manual s3, cluster
    /// status: "maintenance mode for an SU x86").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    /// Server Unit runtime, for SUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub su: Option<SuRuntime>,
}

/// A device generated on an SU and who holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimDevice {
    /// Device class.
    pub device_type: DeviceType,
    /// Host connector.
    pub host_connector: String,
    /// Unit ID.
    pub unit_id: String,
    /// VMs (VMDefinition object names) holding the device, with how. Stored apart from
    /// the unit (`hold.rs`); change them with `hold_devices` / `release_devices`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub holders: BTreeMap<String, DeviceUsage>,
}

/// Actual resources and subsystems of a Server Unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuRuntime {
    /// /390 or x86.
    pub su_type: SuType,
    /// VM2000 or Native.
    pub mode: OperationMode,
    /// The SU's model with its performance class, e.g. "SU700-70", when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Real CPUs.
    pub cpus: u32,
    /// Main memory in MiB.
    pub memory_mib: u64,
    /// Memory the monitor system keeps.
    pub monitor_mib: u64,
    /// Limit of VM definitions.
    pub max_vms: u32,
    /// CPU pools and their CPUs.
    pub pools: BTreeMap<String, u32>,
    /// VM groups.
    pub groups: BTreeSet<String>,
    /// Generated devices by MN.
    pub devices: BTreeMap<String, SimDevice>,
    /// BCAM running in the monitor system (SU /390).
    pub bcam_up: bool,
    /// BCAM was ended on purpose (/BCEND): VMS2331 rather than a failure.
    pub bcam_ended_on_purpose: bool,
    /// REWAS running in the monitor system (SU /390).
    pub rewas_up: bool,
    /// A dynamic I/O configuration change is running.
    #[serde(default)]
    pub io_change_running: bool,
    /// A VM2000 shutdown was initiated.
    #[serde(default)]
    pub shutdown_initiated: bool,
    /// Devices (MNs) not in an operable state on this SU (`sim device fail`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub inoperable: BTreeSet<String>,
    /// SU /390: the monitor's network connection to the system disk is faulty (`sim
    /// sysdisk fail|repair SU`; "VM definitions": VMS2306/VMS2308).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sysdisk_faulty: bool,
    /// Definitions (VMDefinition names) changed while the system disk could not be
    /// reached, with the simulated ms of the warning: VM2000 updates them periodically.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsynced: BTreeMap<String, u64>,
}

/// An ISL-E link of a management cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Gbit/s.
    pub bandwidth_gbps: f64,
    /// Up.
    pub up: bool,
}

/// An external configuration disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Working.
    pub ok: bool,
    /// The object that declares it ("ManagementCluster/mc" or "SEServer/se701").
    pub owner: String,
}

/// The simulated world.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct World {
    /// The virtual clock.
    pub clock: Clock,
    /// Units by name.
    pub units: EntityMap<Unit>,
    /// ISL-E links by ManagementCluster name.
    pub links: EntityMap<Link>,
    /// External configuration disks by name.
    pub disks: EntityMap<Disk>,
    /// Which MU runs the Cluster Manager, by ManagementCluster name.
    pub cluster_managers: EntityMap<String>,
    /// Changes since creation; bumps on every change.
    pub version: u64,
    /// VM definitions by VMDefinition object name. Read freely; add, remove and move
    /// them with `insert_vm`, `remove_vm` and `move_vm`, which keep the per-SU index.
    #[serde(default)]
    pub vms: EntityMap<SimVm>,
    /// Index: VM names per SU with what `usage` needs of each (derived from `vms`,
    /// rebuilt on load; see `vm::VmUse`).
    #[serde(skip)]
    pub(crate) by_su: vm::SuIndex,
    /// Running (and recently ended) live migrations by LiveMigration object name.
    #[serde(default)]
    pub migrations: EntityMap<SimMigration>,
    /// `sim dirty`: dirty rates (MiB/s) overriding a VM's workload, by object name.
    #[serde(default)]
    pub dirty_override: EntityMap<f64>,
    /// Non-persistent definitions lost when their SU went down, with the generation
    /// they had: not recreated until the spec changes.
    #[serde(default)]
    pub lost_vms: EntityMap<u64>,
    /// VMs the simulation holds in state WAIT (`sim wait VM`), by object name.
    #[serde(default)]
    pub waiting_vms: BTreeSet<String>,
    /// SUs /390 whose definition changes are held by the hypervisor while BCAM is down.
    #[serde(default)]
    pub held_definitions: BTreeSet<String>,
    /// What was last written of the parts kept as one value (clock, sets).
    #[serde(skip)]
    pub(crate) persisted_meta: persist::Shadow,
    /// Which device holds changed, and which the store has (`hold.rs`).
    #[serde(skip)]
    pub(crate) holds: hold::HoldBook,
}

impl World {
    /// Brings a clock that is past the end of simulated time back: to the latest time
    /// the world recorded that is within the end (a unit's power change, a
    /// migration's start or next step), or 0. Every recorded time
    /// later than that is set to it, so what was due stays due. A world whose epoch
    /// cannot be written as a date gets the wall time as its epoch. Returns the clock
    /// before and after.
    pub fn reset_clock(&mut self) -> (Clock, Clock) {
        let before = self.clock;
        if self.clock.epoch_unix_ms.checked_add(clock::MAX_SIM_MS).is_none_or(|ms| ms >= 253_402_300_800_000) {
            self.clock.epoch_unix_ms = Clock::starting_now().epoch_unix_ms;
        }
        let recorded = self
            .units
            .values()
            .map(|u| u.power_changed_ms)
            .chain(self.migrations.values().flat_map(|m| [m.started_ms, m.next_at_ms]))
            .chain([self.clock.now_ms]);
        let now = recorded.filter(|t| *t <= clock::MAX_SIM_MS).max().unwrap_or(0);
        self.clock.now_ms = now;
        for u in self.units.values_mut() {
            u.power_changed_ms = u.power_changed_ms.min(now);
        }
        for m in self.migrations.values_mut() {
            m.started_ms = m.started_ms.min(now);
            m.next_at_ms = m.next_at_ms.min(now);
        }
        self.touch();
        (before, self.clock)
    }

    /// Marks a change.
    pub fn touch(&mut self) {
        self.version += 1;
    }

    /// The unit of that name.
    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.get(name)
    }

    /// Whether the unit exists and is powered on.
    pub fn powered(&self, name: &str) -> bool {
        self.units.get(name).is_some_and(|u| u.power_on)
    }

    /// Units of a server, sorted by name.
    pub fn units_of<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a Unit> + 'a {
        self.units.values().filter(move |u| u.server == server)
    }

    /// The SU runtime of a unit.
    pub fn su(&self, name: &str) -> Option<&SuRuntime> {
        self.units.get(name).and_then(|u| u.su.as_ref())
    }

    /// The SU runtime of a unit, mutable.
    pub fn su_mut(&mut self, name: &str) -> Option<&mut SuRuntime> {
        self.units.get_mut(name).and_then(|u| u.su.as_mut())
    }

    /// Simulated time of the SU's last alive message on the CRD: now while its
    /// monitor runs (rounded down to the alive interval), the power-off time after.
    pub fn last_alive_ms(&self, su: &str) -> Option<u64> {
        let u = self.units.get(su)?;
        if u.power_on {
            let now = self.clock.now_ms;
            Some(now - now % ALIVE_INTERVAL_MS)
        } else {
            Some(u.power_changed_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_message_stops_at_power_off() {
        let mut w = World::default();
        w.units.insert(
            "SU1".into(),
            Unit {
                name: "SU1".into(),
                server: "s".into(),
                kind: UnitKind::SU,
                power_on: true,
                power_changed_ms: 0,
                resmon_problem: false,
                maintenance: false,
                su: None,
            },
        );
        w.clock.now_ms = 25_000;
        assert_eq!(w.last_alive_ms("SU1"), Some(20_000));
        w.units.get_mut("SU1").unwrap().power_on = false;
        w.units.get_mut("SU1").unwrap().power_changed_ms = 25_000;
        w.clock.now_ms = 100_000;
        assert_eq!(w.last_alive_ms("SU1"), Some(25_000));
    }
}
