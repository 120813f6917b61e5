//! VMDefinition: the configuration description of a BS2000 VM (seed 004): attributes,
//! devices and the desired state, assigned to one Server Unit.

use super::checked::{self, Cpus, MiB, MnSpec, UnitName, VmIndex, VmName};
use super::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired VM definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VMDefinitionSpec {
    /// The BS2000 VM name (1-8 characters A-Z, 0-9). Unique per SU.
    pub vm_name: VmName,
    /// The SU the definition is created on. Only a LiveMigration or a VMRecovery moves
    /// it afterwards (see status.serverUnit); re-applying never moves it back.
    pub server_unit: UnitName,
    /// VM index 2-99, or "*ANY" for any free one.
    #[serde(default)]
    pub vm_index: VmIndex,
    /// Persistent definitions live on the CRD, survive a reboot of the SU and are not
    /// removed by DELETE-VM (state DEFINED_ONLY).
    #[serde(default = "yes")]
    pub persistent: bool,
    /// AUTO-IPL: after a reboot of its SU a persistent VM is set up again and
    /// restarted at once only when this is set (seed 004); otherwise its definition
    /// stays DEFINED_ONLY until the spec changes.
    #[serde(default = "yes")]
    pub auto_ipl: bool,
    /// Desired state: DEFINED_ONLY (definition only, CREATE-VM-DEFINITION / DELETE-VM),
    /// INIT_ONLY (VM initialised, BS2000 not started), RUNNING, DOWN (BS2000 shut down,
    /// VM kept).
    #[serde(default = "defined_only")]
    pub state: DesiredVmState,
    /// Main memory of the VM in MiB.
    pub memory_mi_b: MiB,
    /// Number of virtual CPUs (multiprocessor level).
    #[serde(default = "one_cpu")]
    pub cpus: Cpus,
    /// CPU pool the VM is assigned to.
    #[serde(default = "std_pool")]
    pub cpu_pool: UnitName,
    /// VM group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_group: Option<UnitName>,
    /// MAX-IO: upper limit of the I/O rate, if any.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "checked::max_io::de_opt")]
    #[schemars(schema_with = "checked::max_io::schema_opt")]
    pub max_io: Option<u32>,
    /// Devices assigned to the VM.
    #[serde(default)]
    pub devices: Vec<VmDevice>,
    /// Simulation only: how the BS2000 workload behaves.
    #[serde(default)]
    pub workload: Workload,
    /// System parameter MIGHOST: which configuration SHOW-SYSTEM-INFORMATION shows by
    /// default after a live migration, the IPL host's (IPL, NSI6231) or the current
    /// host's (CURRENT, NSI6232).
    #[serde(default)]
    pub mighost: Mighost,
    /// BCAM lines of the BS2000 system: after a live migration BCAM activates them on
    /// the target SU's LAN devices (BCA07DC for a LINE, BCA05EC for a VLAN-LINE, s4.6.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcam_lines: Vec<BcamLine>,
    /// The MONJV the VM is monitored with (MONJV= of /CREATE-VM or
    /// /ACTIVATE-VM-DEFINITION), e.g. "JV.VM.VM12PROD": see status.monjv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monjv: Option<String>,
}

/// A BCAM line of the BS2000 system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BcamLine {
    /// Line name, 1-8 characters A-Z, 0-9, #, @, $ (e.g. "L#MANLO1").
    #[schemars(regex(pattern = r"^[A-Z0-9#@$]{1,8}$"))]
    pub name: String,
    /// A VLAN line (BCA05EC) rather than a plain LINE (BCA07DC).
    #[serde(default)]
    pub vlan: bool,
}

/// The MIGHOST setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mighost {
    /// Data of the IPL host (the default, for compatibility).
    #[default]
    Ipl,
    /// Data of the current host.
    Current,
}

fn yes() -> bool {
    true
}
fn defined_only() -> DesiredVmState {
    DesiredVmState::DefinedOnly
}
fn one_cpu() -> Cpus {
    Cpus(1)
}
fn std_pool() -> UnitName {
    UnitName::new("*STDPOOL").expect("valid")
}

/// A state a user may ask for. WAIT is never asked for; only the simulation shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredVmState {
    /// Only the definition exists; the VM is not initialised.
    DefinedOnly,
    /// The VM is initialised; BS2000 is not started.
    InitOnly,
    /// BS2000 runs in the VM.
    Running,
    /// BS2000 was shut down; the VM still exists.
    Down,
}

/// A VM state as VM2000 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VmState {
    /// Only the definition exists.
    DefinedOnly,
    /// Initialised, BS2000 not started.
    InitOnly,
    /// BS2000 runs.
    Running,
    /// BS2000 shut down.
    Down,
    /// The VM waits (e.g. stopped by the hypervisor).
    Wait,
}

impl From<DesiredVmState> for VmState {
    fn from(s: DesiredVmState) -> Self {
        match s {
            DesiredVmState::DefinedOnly => VmState::DefinedOnly,
            DesiredVmState::InitOnly => VmState::InitOnly,
            DesiredVmState::Running => VmState::Running,
            DesiredVmState::Down => VmState::Down,
        }
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VmState::DefinedOnly => "DEFINED_ONLY",
            VmState::InitOnly => "INIT_ONLY",
            VmState::Running => "RUNNING",
            VmState::Down => "DOWN",
            VmState::Wait => "WAIT",
        })
    }
}

impl std::fmt::Display for DesiredVmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        VmState::from(*self).fmt(f)
    }
}

/// How a device is assigned to the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeviceUsage {
    /// Only this VM may use the device.
    Exclusive,
    /// Several VMs may use the device.
    Shared,
}

/// A device (or range) assigned to the VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmDevice {
    /// Mnemonic name, e.g. "4683", or a range "B008-B0FF".
    pub mn: MnSpec,
    /// exclusive or shared.
    #[serde(default = "exclusive")]
    pub usage: DeviceUsage,
}

fn exclusive() -> DeviceUsage {
    DeviceUsage::Exclusive
}

/// Simulated workload of the BS2000 system.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// How fast the system dirties main memory pages, in MiB/s. Drives the pre-copy
    /// rounds of a live migration.
    #[serde(default, deserialize_with = "checked::dirty_rate::de")]
    #[schemars(schema_with = "checked::dirty_rate::schema")]
    pub dirty_rate_mi_bps: f64,
}

/// One line of the migration history (SHOW-LIVE-MIGRATION-HISTORY).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationRecord {
    /// Simulated time of the migration (RFC 3339).
    pub time: String,
    /// Configuration the system ran in afterwards: SE server and SU.
    pub configuration: String,
    /// The SU the system was migrated to.
    pub server_unit: String,
    /// VM index on that SU.
    pub vm_index: u32,
}

/// Observed state of a VM definition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VMDefinitionStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type (e.g. Placed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The state VM2000 reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<VmState>,
    /// Substates, e.g. MIGRATING, DIFF.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substates: Vec<String>,
    /// The SU the definition is on now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_unit: Option<String>,
    /// The VM index it holds there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_index: Option<u32>,
    /// LIVE-MIG-COUNT: how often the system was live-migrated.
    #[serde(default)]
    pub live_migration_count: u32,
    /// The migration history, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migration_history: Vec<MigrationRecord>,
    /// SHOW-SYSTEM-INFORMATION after a migration: the configuration at IPL, the
    /// current one, and which one is shown by default (MIGHOST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_information: Option<SystemInformation>,
    /// Devices detached by a live migration that stay detached (tapes, local disks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached_devices: Vec<String>,
    /// vCPUs detached because the target CPU pool is smaller.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub detached_cpus: u32,
    /// The VM's MONJV (spec.monjv) while the VM is initialised: its state ($R VM
    /// running, $T VM terminated) and "MIGR-OUT" in bytes 87-94 while the VM migrates
    /// away (s4.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monjv: Option<VmMonjv>,
}

/// The monitoring job variable of a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmMonjv {
    /// The MONJV's name.
    pub name: String,
    /// $R (VM running) or $T (VM terminated, e.g. on the source after a live migration).
    pub state: String,
    /// Bytes 87-94: "MIGR-OUT" while a live migration moves the VM away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What SHOW-SYSTEM-INFORMATION shows about the hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemInformation {
    /// NSI6231 (IPL host shown) or NSI6232 (current host shown), after a migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// CONFIGURATION as shown by default (per MIGHOST).
    pub configuration: String,
    /// Configuration of the host the system was loaded on.
    pub ipl_configuration: String,
    /// CURRENT-CONFIGURATION: the host it runs on now.
    pub current_configuration: String,
}
