//! SEServer: one SE Server with its Management Units, Server Units and Net Unit.

use super::checked::{self, Cpus, HexByte, MiB, MnSpec, PoolCpus, UnitName, VmLimit};
use super::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired shape of an SE Server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SEServerSpec {
    /// Server model, e.g. SE700, SE500, SE300, SE710, SE310 (a trailing B marks the
    /// second generation, e.g. SE300B).
    #[schemars(regex(pattern = r"^SE[0-9]{3}B?$"))]
    pub model: String,
    /// Where the server stands (free text, e.g. a site or building).
    #[serde(default)]
    pub location: String,
    /// Version of the SE Server software on all its units.
    pub version: SoftwareVersion,
    /// The Management Units (1 or 2). Each runs the SE Manager; in a Management Cluster
    /// exactly one MU of the two servers also runs the active Cluster Manager.
    #[schemars(length(min = 1, max = 2))]
    pub management_units: Vec<ManagementUnit>,
    /// The Net Unit: the LAN switches of the server.
    #[serde(default)]
    pub net_unit: NetUnit,
    /// HNCs (High Speed Net Connect): the Net Unit's LAN connection of the SU /390.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hncs: Vec<NamedUnit>,
    /// Application Units (AUs) the SE Manager knows (listed in the units overview; not
    /// simulated further). An AU registered only for hardware monitoring has the system
    /// status NOT_MONITORED (s2.5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_units: Vec<ApplicationUnit>,
    /// The Server Units. Unit names are unique across all servers.
    #[serde(default)]
    pub server_units: Vec<ServerUnitSpec>,
    /// External configuration disks of this server alone (at most two), mirrored with
    /// the internal ones into the server's CRD: needed for MU redundancy and for an SU
    /// x86 cluster inside the server. Disks shared by a Management Cluster are declared
    /// on the ManagementCluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "super::hardware::at_most_two_disks")]
    #[schemars(length(max = 2))]
    pub config_disks: Vec<super::hardware::ConfigDisk>,
    /// Global objects (s2.1). Before two servers form a Management Cluster these must be
    /// unambiguous: the same object configured the same way on both, or on one only.
    /// Conflicts are reported on the ManagementCluster, never silently resolved.
    #[serde(default, skip_serializing_if = "GlobalObjects::is_empty")]
    pub global_objects: GlobalObjects,
}

/// Global objects of a server that must agree across a Management Cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalObjects {
    /// SE Manager accounts (local or LDAP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<Account>,
    /// Alarm management: mail and SNMP trap receivers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarm_receivers: Vec<AlarmReceiver>,
    /// FC switches and whether they are monitored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fc_switches: Vec<FcSwitch>,
    /// User-defined management applications and links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<Application>,
}

impl GlobalObjects {
    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.alarm_receivers.is_empty()
            && self.fc_switches.is_empty()
            && self.applications.is_empty()
    }
}

/// Role of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Administrator: everything, including activating SU clusters.
    Administrator,
    /// BS2000 administrator.
    Bs2000Administrator,
    /// Operator, with individual rights per system.
    Operator,
}

/// An SE Manager account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    /// Account name, e.g. "admin".
    pub name: String,
    /// Role.
    pub role: Role,
    /// Local or LDAP.
    #[serde(default)]
    pub ldap: bool,
    /// A digest of the password (local accounts), compared across servers, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_digest: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Systems an operator may operate (individual rights).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<String>,
}

/// Kind of alarm receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReceiverType {
    /// E-mail.
    Mail,
    /// SNMP trap.
    SnmpTrap,
}

/// An alarm receiver (s2.3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlarmReceiver {
    /// Name of the entry.
    pub name: String,
    /// Mail or SNMP trap.
    #[serde(rename = "type")]
    pub receiver_type: ReceiverType,
    /// Mail address or trap destination.
    pub address: String,
    /// Component filter (e.g. ANY, Cluster, Sys-Mgmt).
    #[serde(default = "any")]
    pub component: String,
    /// Weight (priority) filter (e.g. ANY, WARNING).
    #[serde(default = "any")]
    pub weight: String,
}

fn any() -> String {
    "ANY".into()
}

/// An FC switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FcSwitch {
    /// Switch name.
    pub name: String,
    /// Monitored by the SE Manager.
    #[serde(default)]
    pub monitored: bool,
}

/// A user-defined management application or link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// Name shown in the SE Manager.
    pub name: String,
    /// URL.
    pub url: String,
}

/// Version of the SE Server software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum SoftwareVersion {
    /// Version 6.2.
    #[serde(rename = "V6.2")]
    V62,
    /// Version 6.3.
    #[serde(rename = "V6.3")]
    V63,
}

impl std::fmt::Display for SoftwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SoftwareVersion::V62 => "V6.2",
            SoftwareVersion::V63 => "V6.3",
        })
    }
}

/// A Management Unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementUnit {
    /// Unit name, unique across all servers (e.g. "abgwhite").
    pub name: UnitName,
}

/// A unit that only has a name (e.g. an HNC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedUnit {
    /// Unit name, unique across all servers.
    pub name: UnitName,
}

/// An Application Unit (AU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationUnit {
    /// Unit name, unique across all servers.
    pub name: UnitName,
    /// Registered only for hardware monitoring: system status NOT_MONITORED (s2.5: "If
    /// an AU has been registered only for HW monitoring its system status is
    /// NOT_MONITORED").
    #[serde(default)]
    pub hw_monitoring_only: bool,
}

/// The Net Unit of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetUnit {
    /// Speed of the LAN switches in Gbit/s: 1, or 10 with the Net Unit extension. A live
    /// migration between two SUs of one server copies memory over this.
    #[serde(default = "default_speed")]
    pub speed_gbps: LinkSpeed,
}

impl Default for NetUnit {
    fn default() -> Self {
        NetUnit { speed_gbps: default_speed() }
    }
}

fn default_speed() -> LinkSpeed {
    LinkSpeed::One
}

/// A LAN speed: 1 or 10 Gbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSpeed {
    /// 1 Gbit/s.
    One,
    /// 10 Gbit/s.
    Ten,
}

impl LinkSpeed {
    /// Gbit/s as a number.
    pub fn gbps(self) -> f64 {
        match self {
            LinkSpeed::One => 1.0,
            LinkSpeed::Ten => 10.0,
        }
    }
}

impl Serialize for LinkSpeed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.gbps() as u32)
    }
}

impl<'de> Deserialize<'de> for LinkSpeed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LinkSpeed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a link speed of 1 or 10 (Gbit/s)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LinkSpeed, E> {
                match v {
                    1 => Ok(LinkSpeed::One),
                    10 => Ok(LinkSpeed::Ten),
                    _ => Err(E::custom(format!("speed must be 1 or 10 (Gbit/s), got {v}"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LinkSpeed, E> {
                Err(E::custom(format!("speed must be 1 or 10 (Gbit/s), got {v}")))
            }
        }
        d.deserialize_u64(V)
    }
}

impl JsonSchema for LinkSpeed {
    fn schema_name() -> String {
        "LinkSpeed".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "Link speed in Gbit/s: 1 or 10",
            "type": "integer",
            "enum": [1, 10]
        }))
        .expect("static schema")
    }
}

/// Architecture of a Server Unit. Written "390" or "x86"; an unquoted 390 is taken
/// as "390" too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SuType {
    /// SU /390: BS2000 on /390 firmware, always under VM2000.
    #[serde(rename = "390")]
    S390,
    /// SU x86: BS2000 on x86, Native or under VM2000.
    #[serde(rename = "x86")]
    X86,
}

impl JsonSchema for SuType {
    fn schema_name() -> String {
        "SuType".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "Architecture: \"390\" (SU /390) or \"x86\" (SU x86)",
            "enum": ["390", 390, "x86"]
        }))
        .expect("static schema")
    }
}

impl std::fmt::Display for SuType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SuType::S390 => "/390",
            SuType::X86 => "x86",
        })
    }
}

/// How BS2000 runs on an SU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OperationMode {
    /// Under the hypervisor VM2000: a monitor system plus guest VMs.
    VM2000,
    /// One BS2000 system directly on the SU (SU /390 or x86; live migration of it on
    /// SU x86 only).
    Native,
}

/// A Server Unit and its resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerUnitSpec {
    /// Unit name, unique across all servers (e.g. "ABGSE701").
    pub name: UnitName,
    /// Architecture: "390" or "x86".
    #[serde(rename = "type")]
    pub su_type: SuType,
    /// VM2000 or Native BS2000 (both on SU /390 and SU x86; live migration of Native
    /// BS2000 only between SUs x86).
    #[serde(default = "default_mode")]
    pub operation_mode: OperationMode,
    /// The SU's model with its performance class, e.g. "SU700-70" or "SU500-10B": shown
    /// in configuration strings ("390SU- 700-70", s4.5). Without it they show the
    /// server model's digits only ("390SU- 700").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^SU[0-9]{3}(-[0-9A-Z]{1,4})?$"))]
    pub model: Option<String>,
    /// Real CPUs of the SU.
    pub cpus: Cpus,
    /// Main memory of the SU in MiB (the monitor system's share included).
    pub memory_mi_b: MiB,
    /// Memory the monitor system (or X2000 on x86) keeps for itself, in MiB.
    #[serde(default = "default_monitor_memory", deserialize_with = "checked::monitor_mib::de")]
    #[schemars(schema_with = "checked::monitor_mib::schema")]
    pub monitor_memory_mi_b: u64,
    /// Maximum number of VM definitions on this SU (VM2000 allows up to 99).
    #[serde(default = "default_limit")]
    pub max_vm_definitions: VmLimit,
    /// CPU pools. `*STDPOOL` always exists with all CPUs unless given here.
    #[serde(default)]
    pub cpu_pools: Vec<CpuPool>,
    /// VM groups.
    #[serde(default)]
    pub vm_groups: Vec<VmGroup>,
    /// The I/O configuration: devices generated on this SU.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
}

fn default_mode() -> OperationMode {
    OperationMode::VM2000
}
fn default_limit() -> VmLimit {
    VmLimit(99)
}
fn default_monitor_memory() -> u64 {
    1024
}

/// A CPU pool of an SU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CpuPool {
    /// Pool name, e.g. "*STDPOOL" or "POOL1".
    pub name: UnitName,
    /// Real CPUs assigned to the pool (may be 0).
    pub cpus: PoolCpus,
}

/// A VM group of an SU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmGroup {
    /// Group name.
    pub name: UnitName,
}

/// Kind of device, as far as live migration cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeviceType {
    /// A disk reachable from both SUs (e.g. over FC).
    Disk,
    /// A local disk of the SU; detached by a live migration.
    LocalDisk,
    /// A tape; detached by a live migration and stays detached.
    Tape,
    /// A PAV alias device; detached and re-attached by a live migration.
    PavAlias,
    /// Any other device (printers, communication devices).
    Other,
}

/// A device (or range of devices) in an SU's I/O configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceSpec {
    /// Mnemonic name (MN), e.g. "4683", or a range "A000-A0FF".
    pub mn: MnSpec,
    /// Device class.
    #[serde(rename = "type")]
    pub device_type: DeviceType,
    /// Host connector (two hex digits), e.g. "01".
    pub host_connector: HexByte,
    /// Unit ID (two hex digits), e.g. "00". For a range, the unit ID of its first device.
    pub unit_id: HexByte,
}

/// Observed state of an SE Server.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SEServerStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type (e.g. Ready).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Every unit of the server with its power and state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<super::hardware::UnitStatus>,
}
