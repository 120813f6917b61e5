//! VMs in the simulated world: where each definition lives, what an initialised VM
//! holds (memory, VM index, devices), and the accounting rules every placement, live
//! migration and recovery shares. Free memory and free indexes are always computed
//! from the holdings, so the books cannot drift; `World::audit` checks the rest.

use super::{SuRuntime, World};
use crate::api::{DeviceType, DeviceUsage, MigrationRecord, OperationMode, SuType, VmState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A VM definition as VM2000 knows it, keyed in the world by VMDefinition object name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimVm {
    /// BS2000 VM name.
    pub vm_name: String,
    /// The SU the definition is assigned to.
    pub su: String,
    /// Actual state.
    pub state: VmState,
    /// Persistent definition (on the CRD).
    pub persistent: bool,
    /// VM index held while initialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Memory held while initialised (MiB).
    pub memory_mib: u64,
    /// Virtual CPUs (multiprocessor level).
    pub cpus: u32,
    /// vCPUs detached because the CPU pool is smaller than the multiprocessor level.
    #[serde(default)]
    pub detached_cpus: u32,
    /// CPU pool.
    pub pool: String,
    /// VM group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Devices assigned (held on the SU while initialised), by MN.
    pub devices: BTreeMap<String, DeviceUsage>,
    /// Devices detached by a live migration that stay detached (tapes).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub detached: BTreeSet<String>,
    /// Substates (DIFF, ...). MIGRATING is derived from running migrations.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub substates: BTreeSet<String>,
    /// Substate DIFF: the SU whose I/O configuration the VM was migrated from (s4.8).
    /// DIFF lasts until the VM migrates back there or is activated anew where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_source: Option<String>,
    /// SU x86: devices generated differently here than on the SU the VM was migrated
    /// from; they cannot be assigned to it here (s4.8) until it is activated anew.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub not_assignable: BTreeSet<String>,
    /// The VM's MONJV ended with $T: a live migration terminated the VM on the SU where
    /// the MONJV was defined (s4.8). Cleared when the VM is activated anew.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub monjv_terminated: bool,
    /// LIVE-MIG-COUNT.
    #[serde(default)]
    pub lm_count: u32,
    /// SHOW-LIVE-MIGRATION-HISTORY, first line the IPL.
    #[serde(default)]
    pub history: Vec<MigrationRecord>,
    /// Configuration at IPL, e.g. "390SU- 500".
    #[serde(default)]
    pub ipl_configuration: String,
    /// The spec generation last carried out.
    #[serde(default)]
    pub applied_generation: u64,
    /// After a recovery: stay DEFINED_ONLY until the spec changes past this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until_generation_above: Option<u64>,
}

impl SimVm {
    /// Initialised VMs hold memory, an index and devices.
    pub fn initialised(&self) -> bool {
        !matches!(self.state, VmState::DefinedOnly)
    }
}

/// What a VM asks of an SU.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand<'a> {
    /// VMDefinition object name (the holder name).
    pub owner: &'a str,
    /// VM name.
    pub vm_name: &'a str,
    /// Fixed index, or None for *ANY.
    pub index: Option<u32>,
    /// Memory (MiB).
    pub memory_mib: u64,
    /// CPU pool.
    pub pool: &'a str,
    /// VM group.
    pub group: Option<&'a str>,
    /// Devices and how.
    pub devices: &'a BTreeMap<String, DeviceUsage>,
    /// Whether resources (memory, index, devices) are needed: false for a
    /// DEFINED_ONLY definition.
    pub resources: bool,
}

/// One reason a placement is not possible (the LM conflicts reuse these).
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    /// VMS message ID, where the manual names one.
    pub code: Option<&'static str>,
    /// Stable CamelCase reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
    /// Extra detail for VMS2404 (e.g. the device MN).
    pub detail: Option<String>,
}

fn short(reason: &'static str, message: String) -> Shortfall {
    Shortfall { code: None, reason, message, detail: None }
}

/// What `World::usage` needs of a VM definition, kept in the per-SU index beside its
/// name: the usage of an SU is then one pass over its entries instead of a lookup of
/// each of its VMs in the world's map of all VMs (measured: 10-15% of the time of a
/// converge of 10,000 VMs, most of it comparing names in cache-missing map nodes).
/// A copy is exact for every VM not changed since the world's changes were last taken
/// or forgotten; `usage` reads the changed ones (`vms.dirty_keys()`) from the map, and
/// taking or forgetting the changes refreshes their copies first (`refresh_uses`).
/// Chosen over totals kept up to date on every change, which the dozen places that
/// change VMs in place would have had to maintain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VmUse {
    vm_name: String,
    memory_mib: u64,
    index: Option<u32>,
    initialised: bool,
}

impl VmUse {
    fn of(v: &SimVm) -> Self {
        VmUse { vm_name: v.vm_name.clone(), memory_mib: v.memory_mib, index: v.index, initialised: v.initialised() }
    }
}

/// The per-SU index of VM definitions: names per SU, each with its `VmUse`. Two
/// indexes are equal when they hold the same names (the copies are derived).
#[derive(Debug, Clone, Default)]
pub(crate) struct SuIndex(pub(crate) BTreeMap<String, BTreeMap<String, VmUse>>);

impl PartialEq for SuIndex {
    fn eq(&self, o: &Self) -> bool {
        self.0.len() == o.0.len() && self.0.iter().zip(&o.0).all(|((a, x), (b, y))| a == b && x.keys().eq(y.keys()))
    }
}

/// What an SU holds (`World::usage`): one pass over its VMs instead of one scan per
/// question (memory, indexes, count), with the asking VM's own share apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuUsage {
    /// Memory held by initialised VMs and reservations (MiB), the owner's included.
    pub memory_mib: u64,
    /// Memory the owner's own initialised definition holds here (MiB).
    pub own_memory_mib: u64,
    /// VM indexes in use, the owner's and the monitor's (1) included: bit i for
    /// index i < 128 ...
    low: u128,
    /// ... and any larger one (only a hand-edited world has them).
    high: Vec<u32>,
    /// The owner's own index here, if it has one.
    pub own_index: Option<u32>,
    /// Definitions here and reservations, the owner's not counted.
    pub others: usize,
    /// Another definition or reservation here has the VM name asked about.
    pub name_in_use: bool,
}

impl SuUsage {
    fn add_index(&mut self, i: u32) {
        match 1u128.checked_shl(i) {
            Some(b) => self.low |= b,
            None => self.high.push(i),
        }
    }

    /// Whether index `i` is in use by another VM than the owner (as a set: the
    /// owner's index counts as free even if another holder has it too).
    pub fn index_taken(&self, i: u32) -> bool {
        if self.own_index == Some(i) {
            return false;
        }
        match 1u128.checked_shl(i) {
            Some(b) => i == 1 || self.low & b != 0,
            None => self.high.contains(&i),
        }
    }
}

/// A reservation an incoming live migration holds on its target SU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// VMDefinition object name.
    pub vm: String,
    /// VM name.
    pub vm_name: String,
    /// Target SU.
    pub su: String,
    /// Index reserved.
    pub index: Option<u32>,
    /// Memory reserved (MiB).
    pub memory_mib: u64,
    /// Devices reserved.
    pub devices: BTreeMap<String, DeviceUsage>,
}

impl World {
    /// VMs whose definition is on `su`.
    pub fn vms_on<'a>(&'a self, su: &'a str) -> impl Iterator<Item = (&'a String, &'a SimVm)> + 'a {
        self.by_su.0.get(su).into_iter().flat_map(|m| m.keys()).filter_map(|n| self.vms.get_key_value(n))
    }

    /// Rebuilds the per-SU index from `vms`.
    pub fn reindex(&mut self) {
        self.by_su.0.clear();
        for (n, v) in &self.vms {
            self.by_su.0.entry(v.su.clone()).or_default().insert(n.clone(), VmUse::of(v));
        }
    }

    /// Brings the index's copies of what `usage` needs up to date for the VMs changed
    /// since the changes were last taken; called before the changes are forgotten.
    pub(crate) fn refresh_uses(&mut self) {
        for n in self.vms.dirty_keys() {
            if let Some(v) = self.vms.get(n) {
                if let Some(u) = self.by_su.0.get_mut(&v.su).and_then(|m| m.get_mut(n)) {
                    *u = VmUse::of(v);
                }
            }
        }
    }

    /// Adds (or replaces) a VM definition.
    pub fn insert_vm(&mut self, name: String, vm: SimVm) {
        self.remove_vm(&name);
        self.by_su.0.entry(vm.su.clone()).or_default().insert(name.clone(), VmUse::of(&vm));
        self.vms.insert(name, vm);
    }

    /// Removes a VM definition.
    pub fn remove_vm(&mut self, name: &str) -> Option<SimVm> {
        let v = self.vms.remove(name)?;
        if let Some(m) = self.by_su.0.get_mut(&v.su) {
            m.remove(name);
        }
        Some(v)
    }

    /// Assigns a VM definition to another SU.
    pub fn move_vm(&mut self, name: &str, su: &str) {
        let Some(v) = self.vms.get_mut(name) else { return };
        if let Some(m) = self.by_su.0.get_mut(&v.su) {
            m.remove(name);
        }
        v.su = su.to_string();
        self.by_su.0.entry(su.to_string()).or_default().insert(name.to_string(), VmUse::of(v));
    }

    /// Reservations of incoming migrations on `su`.
    pub fn reservations_on<'a>(&'a self, su: &'a str) -> impl Iterator<Item = &'a Reservation> + 'a {
        self.migrations.values().filter_map(|m| m.reservation.as_ref()).filter(move |r| r.su == su)
    }

    /// What `su` holds, summed in one pass over its VMs and the reservations of
    /// incoming migrations; `owner`'s own definition there is counted apart, and
    /// `name_in_use` says whether another one has `vm_name`.
    pub fn usage(&self, su: &str, owner: Option<&str>, vm_name: Option<&str>) -> SuUsage {
        let mut u = SuUsage::default();
        // Both are in name order: walk the changed names alongside the SU's.
        let mut changed = self.vms.dirty_keys().iter().peekable();
        for (k, kept) in self.by_su.0.get(su).into_iter().flatten() {
            while changed.next_if(|c| *c < k).is_some() {}
            // A VM changed since the changes were last taken may differ from its copy.
            let fresh;
            let v = if changed.peek() == Some(&k) {
                match self.vms.get(k) {
                    Some(v) => {
                        fresh = VmUse::of(v);
                        &fresh
                    }
                    None => continue,
                }
            } else {
                kept
            };
            let own = owner == Some(k.as_str());
            if !own && vm_name == Some(v.vm_name.as_str()) {
                u.name_in_use = true;
            }
            if v.initialised {
                u.memory_mib += v.memory_mib;
                if own {
                    u.own_memory_mib = v.memory_mib;
                }
            }
            if let Some(i) = v.index {
                if own {
                    u.own_index = Some(i);
                }
                u.add_index(i);
            }
            if !own {
                u.others += 1;
            }
        }
        for r in self.reservations_on(su) {
            if owner != Some(r.vm.as_str()) && vm_name == Some(r.vm_name.as_str()) {
                u.name_in_use = true;
            }
            u.memory_mib += r.memory_mib;
            if let Some(i) = r.index {
                u.add_index(i);
            }
            if owner != Some(r.vm.as_str()) {
                u.others += 1;
            }
        }
        u
    }

    /// Memory held on `su`: initialised VMs plus reservations.
    pub fn used_memory(&self, su: &str) -> u64 {
        self.usage(su, None, None).memory_mib
    }

    /// Memory free for VMs on `su`.
    pub fn free_memory(&self, su: &str) -> u64 {
        self.free_given(su, self.used_memory(su))
    }

    fn free_given(&self, su: &str, used: u64) -> u64 {
        match self.su(su) {
            None => 0,
            Some(s) => s.memory_mib.saturating_sub(s.monitor_mib).saturating_sub(used),
        }
    }

    /// VM indexes in use on `su` (1 is the monitor).
    pub fn used_indexes(&self, su: &str) -> BTreeSet<u32> {
        let mut s: BTreeSet<u32> = self.vms_on(su).filter_map(|(_, v)| v.index).collect();
        s.extend(self.reservations_on(su).filter_map(|r| r.index));
        s.insert(1);
        s
    }

    /// Number of VM definitions on `su`, counting incoming migrations.
    pub fn definitions_on(&self, su: &str) -> usize {
        self.vms_on(su).count() + self.reservations_on(su).count()
    }

    /// Everything that prevents `d` on `su`, all together (empty: possible).
    /// `leaving` is a VM that will leave `su` (ignored when counting).
    pub fn shortfalls(&self, su_name: &str, d: &Demand) -> Vec<Shortfall> {
        self.shortfalls_usage(su_name, d).0
    }

    /// `shortfalls`, and the SU's usage it computed for `d.owner` (None when the SU
    /// is missing or powered off), so that `pick_index_given` need not compute it again.
    pub fn shortfalls_usage(&self, su_name: &str, d: &Demand) -> (Vec<Shortfall>, Option<SuUsage>) {
        let mut out = Vec::new();
        let Some(su) = self.su(su_name) else {
            out.push(short("ServerUnitNotFound", format!("SU {su_name} does not exist")));
            return (out, None);
        };
        if !self.powered(su_name) {
            out.push(short("ServerUnitPoweredOff", format!("SU {su_name} is powered off")));
            return (out, None);
        }
        let usage = self.usage(su_name, Some(d.owner), Some(d.vm_name));
        let out = self.shortfalls_on(su_name, su, d, &usage, out);
        (out, Some(usage))
    }

    fn shortfalls_on(
        &self,
        su_name: &str,
        su: &SuRuntime,
        d: &Demand,
        usage: &SuUsage,
        mut out: Vec<Shortfall>,
    ) -> Vec<Shortfall> {
        if su.mode == OperationMode::Native {
            if usage.others > 0 {
                out.push(short(
                    "NativeServerUnitOccupied",
                    format!("SU {su_name} runs Native BS2000 and already has a BS2000 system"),
                ));
            }
        } else {
            if usage.name_in_use {
                out.push(short("VmNameInUse", format!("VM name {} is already used on SU {su_name}", d.vm_name)));
            }
            let defs = usage.others;
            if defs >= su.max_vms as usize {
                out.push(short(
                    "VmDefinitionLimitReached",
                    format!("SU {su_name} already has {defs} VM definitions, its limit is {}", su.max_vms),
                ));
            }
        }
        if !d.resources {
            return out;
        }
        let free = self.free_given(su_name, usage.memory_mib) + usage.own_memory_mib;
        if d.memory_mib > free {
            out.push(short(
                "InsufficientMemory",
                format!("SU {su_name} has {free} MiB of main memory free, the VM needs {} MiB", d.memory_mib),
            ));
        }
        if su.mode == OperationMode::VM2000 {
            match d.index {
                Some(i) if usage.index_taken(i) => {
                    out.push(short("VmIndexInUse", format!("VM index {i} is already used on SU {su_name}")))
                }
                None if (2..=99).all(|i| usage.index_taken(i)) => {
                    out.push(short("NoFreeVmIndex", format!("no VM index is free on SU {su_name}")))
                }
                _ => {}
            }
            match su.pools.get(d.pool) {
                None => {
                    out.push(short("CpuPoolMissing", format!("CPU pool {} does not exist on SU {su_name}", d.pool)))
                }
                Some(0) => out.push(short("CpuPoolEmpty", format!("CPU pool {} on SU {su_name} has no CPU", d.pool))),
                _ => {}
            }
            if let Some(g) = d.group {
                if !su.groups.contains(g) {
                    out.push(short("VmGroupMissing", format!("VM group {g} does not exist on SU {su_name}")));
                }
            }
        }
        for (mn, usage) in d.devices {
            match su.devices.get(mn) {
                None => out.push(Shortfall {
                    code: None,
                    reason: "DeviceNotGenerated",
                    message: format!("device {mn} is not generated on SU {su_name}"),
                    detail: Some(mn.clone()),
                }),
                Some(dev) => {
                    let others: Vec<(&String, &DeviceUsage)> =
                        dev.holders.iter().filter(|(h, _)| h.as_str() != d.owner).collect();
                    let excl_other = others.iter().find(|(_, u)| **u == DeviceUsage::Exclusive);
                    if let Some((h, _)) = excl_other {
                        out.push(Shortfall {
                            code: Some("VMS2437"),
                            reason: "DeviceAssignedExclusively",
                            message: format!("VMS2437 DEVICE '{mn}' NOT ASSIGNABLE TO VIRTUAL MACHINE: already assigned exclusively to {h} on SU {su_name}"),
                            detail: Some(mn.clone()),
                        });
                    } else if *usage == DeviceUsage::Exclusive && !others.is_empty() {
                        out.push(Shortfall {
                            code: Some("VMS2437"),
                            reason: "DeviceAssignedExclusively",
                            message: format!("VMS2437 DEVICE '{mn}' NOT ASSIGNABLE TO VIRTUAL MACHINE: wanted exclusively but already assigned to {} on SU {su_name}", others[0].0),
                            detail: Some(mn.clone()),
                        });
                    }
                }
            }
        }
        out
    }

    /// A free VM index on `su` (the fixed one if given and free).
    pub fn pick_index(&self, su: &str, fixed: Option<u32>, owner: &str) -> Option<u32> {
        // Native BS2000 has no VM2000, so no VM index.
        if self.su(su).is_some_and(|s| s.mode == OperationMode::Native) {
            return None;
        }
        self.pick_index_given(su, fixed, &self.usage(su, Some(owner), None))
    }

    /// `pick_index` with the SU's usage for the owner already computed (by
    /// `shortfalls_usage`, with nothing changed since).
    pub fn pick_index_given(&self, su: &str, fixed: Option<u32>, usage: &SuUsage) -> Option<u32> {
        if self.su(su).is_some_and(|s| s.mode == OperationMode::Native) {
            return None;
        }
        match fixed {
            Some(i) => (!usage.index_taken(i)).then_some(i),
            None => (2..=99).find(|i| !usage.index_taken(*i)),
        }
    }

    /// Configuration string as SHOW-SYSTEM-INFORMATION prints it, e.g. "390SU- 700-70"
    /// (s4.5): the SU's model with its performance class when the SU declares one
    /// (`model: SU700-70`), else the digits of the server's model ("390SU- 700").
    pub fn configuration_of(&self, su: &str, server_model: &str) -> String {
        let arch = match self.su(su).map(|s| s.su_type) {
            Some(SuType::X86) => "X86SU",
            _ => "390SU",
        };
        let own = self.su(su).and_then(|s| s.model.as_deref());
        let model = own.unwrap_or(server_model);
        let (base, class) = match model.split_once('-') {
            Some((b, c)) if own.is_some() => (b, format!("-{c}")),
            _ => (model, String::new()),
        };
        let digits: String = base.chars().filter(|c| c.is_ascii_digit()).collect();
        format!("{arch}-{digits:>4}{class}")
    }

    /// Checks the books: every holding belongs to an existing VM or migration on the
    /// right SU, no device is exclusive to two holders, no SU is over-committed, and
    /// every VM is on exactly one existing SU. Returns what is wrong.
    pub fn audit(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let indexed: usize = self.by_su.0.values().map(|s| s.len()).sum();
        if indexed != self.vms.len()
            || self.vms.iter().any(|(n, v)| !self.by_su.0.get(&v.su).is_some_and(|s| s.contains_key(n)))
        {
            bad.push("the per-SU index of VM definitions does not match the definitions".to_string());
        }
        let changed = self.vms.dirty_keys();
        for (n, v) in self.vms.iter().filter(|(n, _)| !changed.contains(*n)) {
            if self.by_su.0.get(&v.su).and_then(|s| s.get(n)).is_some_and(|u| *u != VmUse::of(v)) {
                bad.push(format!("the per-SU index holds an outdated copy of VM {n}"));
            }
        }
        for (name, v) in &self.vms {
            if self.su(&v.su).is_none() {
                bad.push(format!("VM {name} is on SU {} which does not exist", v.su));
            }
            if v.initialised() {
                for mn in v.devices.keys() {
                    let held =
                        self.su(&v.su).and_then(|s| s.devices.get(mn)).is_some_and(|d| d.holders.contains_key(name));
                    if !held && !v.detached.contains(mn) {
                        bad.push(format!("VM {name} is assigned {mn} but does not hold it on {}", v.su));
                    }
                }
            }
        }
        for (uname, u) in &self.units {
            let Some(s) = &u.su else { continue };
            for (mn, d) in &s.devices {
                let excl = d.holders.values().filter(|u| **u == DeviceUsage::Exclusive).count();
                if excl > 0 && d.holders.len() > 1 {
                    bad.push(format!("device {mn} on {uname} is exclusive but has {} holders", d.holders.len()));
                }
                for h in d.holders.keys() {
                    let by_vm = self.vms.get(h).is_some_and(|v| v.su == *uname && v.initialised());
                    let by_res = self.reservations_on(uname).any(|r| &r.vm == h && r.devices.contains_key(mn));
                    if !by_vm && !by_res {
                        bad.push(format!(
                            "device {mn} on {uname} is held by {h}, which neither runs there nor migrates there"
                        ));
                    }
                }
            }
            if self.used_memory(uname) + s.monitor_mib > s.memory_mib {
                bad.push(format!(
                    "SU {uname} is over-committed: {} MiB used + {} MiB monitor > {} MiB",
                    self.used_memory(uname),
                    s.monitor_mib,
                    s.memory_mib
                ));
            }
            let idx: Vec<u32> = self
                .vms_on(uname)
                .filter_map(|(_, v)| v.index)
                .chain(self.reservations_on(uname).filter_map(|r| r.index))
                .collect();
            let set: BTreeSet<u32> = idx.iter().copied().collect();
            if set.len() != idx.len() {
                bad.push(format!("SU {uname} has a VM index used twice: {idx:?}"));
            }
        }
        bad
    }
}

/// Whether a device of this type is detached by a live migration, and whether it
/// comes back on the target.
pub fn detached_by_lm(t: DeviceType) -> Option<bool> {
    match t {
        DeviceType::Tape => Some(false),
        DeviceType::LocalDisk => Some(false),
        DeviceType::PavAlias => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SuRuntime, Unit, UnitKind};

    fn world(vms: &[(&str, &str, Option<u32>, VmState)]) -> World {
        let mut w = World::default();
        let su = SuRuntime {
            su_type: SuType::X86,
            mode: OperationMode::VM2000,
            model: None,
            cpus: 4,
            memory_mib: 65536,
            monitor_mib: 1024,
            max_vms: 99,
            pools: [("*STDPOOL".to_string(), 4)].into_iter().collect(),
            groups: Default::default(),
            devices: Default::default(),
            bcam_up: true,
            bcam_ended_on_purpose: false,
            rewas_up: true,
            io_change_running: false,
            shutdown_initiated: false,
            inoperable: Default::default(),
            sysdisk_faulty: false,
            unsynced: Default::default(),
        };
        for name in ["SU1", "SU2"] {
            let unit = Unit {
                name: name.into(),
                server: "se".into(),
                kind: UnitKind::SU,
                power_on: true,
                power_changed_ms: 0,
                maintenance: false,
                resmon_problem: false,
                su: Some(su.clone()),
            };
            w.units.insert(name.into(), unit);
        }
        for (i, (name, on, index, state)) in vms.iter().enumerate() {
            let v = SimVm {
                vm_name: format!("V{i}"),
                su: on.to_string(),
                state: *state,
                persistent: true,
                index: *index,
                memory_mib: 1000 + i as u64,
                cpus: 1,
                detached_cpus: 0,
                pool: "*STDPOOL".into(),
                group: None,
                devices: Default::default(),
                detached: Default::default(),
                substates: Default::default(),
                diff_source: None,
                not_assignable: Default::default(),
                monjv_terminated: false,
                lm_count: 0,
                history: Vec::new(),
                ipl_configuration: String::new(),
                applied_generation: 1,
                hold_until_generation_above: None,
            };
            w.insert_vm(name.to_string(), v);
        }
        w
    }

    /// The rescans `usage` replaced, as they were.
    fn used_minus_own(w: &World, su: &str, owner: &str) -> BTreeSet<u32> {
        let mut used = w.used_indexes(su);
        if let Some(own) = w.vms.get(owner).filter(|v| v.su == su).and_then(|v| v.index) {
            used.remove(&own);
        }
        used
    }

    #[test]
    fn usage_in_one_pass_answers_as_the_rescans_did() {
        use VmState::*;
        let w = world(&[
            ("a", "SU1", Some(2), Running),
            ("b", "SU1", Some(3), DefinedOnly),
            ("c", "SU1", None, InitOnly),
            ("d", "SU2", Some(2), Running),
            // A hand-edited world: an index used twice, and one out of range.
            ("e", "SU1", Some(3), Running),
            ("f", "SU1", Some(500), Down),
        ]);
        for su in ["SU1", "SU2", "SU3"] {
            for owner in ["a", "b", "c", "d", "e", "f", "new"] {
                let u = w.usage(su, Some(owner), Some("V0"));
                let used = used_minus_own(&w, su, owner);
                for i in [0, 1, 2, 3, 4, 99, 127, 128, 500, u32::MAX] {
                    assert_eq!(u.index_taken(i), used.contains(&i), "{su} {owner} index {i}");
                }
                let held: u64 =
                    w.vms.get(owner).filter(|v| v.su == su && v.initialised()).map(|v| v.memory_mib).unwrap_or(0);
                assert_eq!(u.own_memory_mib, held, "{su} {owner}");
                let mem: u64 = w.vms_on(su).filter(|(_, v)| v.initialised()).map(|(_, v)| v.memory_mib).sum();
                assert_eq!(u.memory_mib, mem, "{su}");
                assert_eq!(u.others, w.vms_on(su).filter(|(k, _)| k.as_str() != owner).count(), "{su} {owner}");
                let named = w.vms_on(su).any(|(k, v)| k.as_str() != owner && v.vm_name == "V0");
                assert_eq!(u.name_in_use, named, "{su} {owner}");
                let pick = (2..=99).find(|i| !used.contains(i));
                assert_eq!(w.pick_index(su, None, owner), pick, "{su} {owner}");
                assert_eq!(w.pick_index(su, Some(3), owner), (!used.contains(&3)).then_some(3), "{su} {owner}");
            }
        }
        assert_eq!(w.usage("SU1", None, None).memory_mib, 1000 + 1002 + 1004 + 1005);
    }

    /// What `usage` answers from the index's copies, recomputed from the VMs.
    fn usage_by_lookup(w: &World, su: &str) -> (u64, usize, BTreeSet<u32>) {
        let mem = w.vms_on(su).filter(|(_, v)| v.initialised()).map(|(_, v)| v.memory_mib).sum();
        let idx = w.vms_on(su).filter_map(|(_, v)| v.index).collect();
        (mem, w.vms_on(su).count(), idx)
    }

    fn usage_now(w: &World, su: &str) -> (u64, usize, BTreeSet<u32>) {
        let u = w.usage(su, None, None);
        (u.memory_mib, u.others, (0..200).filter(|i| *i != 1 && u.index_taken(*i)).collect())
    }

    #[test]
    fn usage_follows_vms_changed_in_place_before_and_after_the_changes_are_taken() {
        use VmState::*;
        let mut w =
            world(&[("a", "SU1", Some(2), Running), ("b", "SU1", None, DefinedOnly), ("c", "SU2", Some(2), Running)]);
        let check = |w: &World| {
            for su in ["SU1", "SU2"] {
                assert_eq!(usage_now(w, su), usage_by_lookup(w, su), "{su}");
            }
            assert!(w.audit().iter().all(|p| !p.contains("per-SU index")), "{:?}", w.audit());
        };
        check(&w);
        w.take_changes().unwrap();
        check(&w);
        // Changed in place while clean: the copies are outdated, the VMs are marked.
        let b = w.vms.get_mut("b").unwrap();
        b.state = Running;
        b.index = Some(5);
        b.memory_mib = 4096;
        w.vms.get_mut("a").unwrap().index = None;
        check(&w);
        assert!(w.vms.get("b").unwrap().initialised());
        assert_eq!(w.usage("SU1", Some("b"), None).own_memory_mib, 4096);
        w.take_changes().unwrap();
        check(&w);
        w.vms.get_mut("c").unwrap().memory_mib = 7;
        w.move_vm("b", "SU2");
        check(&w);
        w.forget_changes();
        check(&w);
        w.remove_vm("c");
        w.take_changes().unwrap();
        check(&w);
        assert_eq!(usage_now(&w, "SU2"), (4096, 1, BTreeSet::from([5])));
        // A copy outdated behind the world's back is what the audit reports.
        w.by_su.0.get_mut("SU1").unwrap().get_mut("a").unwrap().memory_mib = 1;
        assert!(w.audit().iter().any(|p| p.contains("outdated copy of VM a")), "{:?}", w.audit());
    }

    #[test]
    fn pick_index_given_the_usage_of_shortfalls_picks_as_pick_index() {
        use VmState::*;
        let w = world(&[("a", "SU1", Some(2), Running), ("b", "SU1", Some(4), Down), ("d", "SU2", Some(2), Running)]);
        let devices = BTreeMap::new();
        for su in ["SU1", "SU2", "SU3"] {
            for owner in ["a", "b", "d", "new"] {
                for fixed in [None, Some(2), Some(3), Some(4)] {
                    let d = Demand {
                        owner,
                        vm_name: "VX",
                        index: fixed,
                        memory_mib: 1,
                        pool: "*STDPOOL",
                        group: None,
                        devices: &devices,
                        resources: true,
                    };
                    let (short, usage) = w.shortfalls_usage(su, &d);
                    assert_eq!(short, w.shortfalls(su, &d), "{su} {owner}");
                    assert_eq!(usage.is_some(), su != "SU3", "{su}: usage when the SU exists and is on");
                    if let Some(u) = usage {
                        assert_eq!(
                            w.pick_index_given(su, fixed, &u),
                            w.pick_index(su, fixed, owner),
                            "{su} {owner} {fixed:?}"
                        );
                    }
                }
            }
        }
    }
}
