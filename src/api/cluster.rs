//! ManagementCluster (two SE Servers joined by ISL-E and a CRD) and SUCluster (two SUs
//! of one type between which BS2000 systems can be live-migrated).

use super::checked::{self, ObjectName, UnitName};
use super::hardware::{at_most_two_disks, checked_seq, ConfigDisk};
use super::Condition;
use schemars::JsonSchema;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

/// Desired Management Cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementClusterSpec {
    /// The two SEServer objects (by name) that form the cluster.
    #[serde(deserialize_with = "two_different_names")]
    #[schemars(length(min = 2, max = 2))]
    pub servers: Vec<ObjectName>,
    /// The ISL-E link between the two servers' Net Units. It carries the private
    /// management network MCNPR, over which live migration copies main memory.
    /// Without it the cluster cannot work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isl_e: Option<IslE>,
    /// External configuration disks (FC, >= 8 GB), at most two, mirrored with the
    /// internal ones into the CRD. Reachable from every MU of both servers.
    #[serde(default, deserialize_with = "at_most_two_disks")]
    #[schemars(length(max = 2))]
    pub config_disks: Vec<ConfigDisk>,
}

/// The ISL-E link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IslE {
    /// Bandwidth in Gbit/s (recommended: 1, or 10 with the Net Unit extension).
    #[schemars(schema_with = "checked::bandwidth_gbps::schema")]
    #[serde(deserialize_with = "checked::bandwidth_gbps::de")]
    pub bandwidth_gbps: f64,
    /// Round-trip time in milliseconds (recommended: under 5 ms).
    #[serde(default = "default_rtt", deserialize_with = "checked::rtt_ms::de")]
    #[schemars(schema_with = "checked::rtt_ms::schema")]
    pub rtt_ms: f64,
    /// Cable length in km (recommended: at most 15 km).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "checked::length_km::de_opt")]
    #[schemars(schema_with = "checked::length_km::schema_opt")]
    pub length_km: Option<f64>,
}

fn default_rtt() -> f64 {
    1.0
}

/// A list of exactly two different names.
pub(crate) fn two_different<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + std::fmt::Display,
{
    checked_seq(d, "a list of exactly two different names", |v: &[T]| {
        if v.len() != 2 {
            return Err(format!("must name exactly two, got {}", v.len()));
        }
        if v[0] == v[1] {
            return Err(format!("must name two different ones, got {} twice", v[0]));
        }
        Ok(())
    })
}

fn two_different_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ObjectName>, D::Error> {
    two_different(d)
}

/// Cluster state as the SE Manager shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterState {
    /// All functions available, full redundancy.
    Normal,
    /// Functions kept, redundancy lost.
    Warning,
    /// Functions lost.
    Error,
    /// SU cluster deactivated (no live migration).
    Inactive,
}

impl std::fmt::Display for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterState::Normal => "NORMAL",
            ClusterState::Warning => "WARNING",
            ClusterState::Error => "ERROR",
            ClusterState::Inactive => "INACTIVE",
        })
    }
}

/// Observed state of a Management Cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementClusterStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// NORMAL, WARNING or ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ClusterState>,
    /// The MU on which the Cluster Manager is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_manager: Option<String>,
    /// Why the state is not NORMAL, one line per cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Every MU of the cluster as the SE Manager lists it: server, power, configuration
    /// disks and network heartbeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub management_units: Vec<MuStatus>,
    /// The internal resources of the Cluster Manager, as the management cluster's main
    /// window shows them beside its name (s2.2): CRD, MCNPR, ResMon, GlobalData.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_manager_resources: Vec<CmResource>,
}

/// One internal resource of the Cluster Manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CmResource {
    /// CRD (the configuration disks as its MU sees them), MCNPR (the private management
    /// network to the other server), ResMon (the resource monitor), GlobalData (where
    /// the global data are enquired).
    pub name: String,
    /// CRD: OK, DEGRADED, FAILED, NONE; MCNPR: OK, FAILED, NONE; ResMon: OK,
    /// NOT_CALLED; GlobalData: COMPLETE, RESTRICTED.
    pub state: String,
    /// Why, when not OK or COMPLETE.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One MU of a Management Cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MuStatus {
    /// MU name.
    pub name: String,
    /// SEServer the MU belongs to.
    pub server: String,
    /// ON or OFF.
    pub power: String,
    /// External configuration disks as seen from the MU: OK, DEGRADED, FAILED or NONE.
    pub config_disks: String,
    /// Network heartbeat: OK or NO_ANSWER.
    pub heartbeat: String,
}

/// Desired SU cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SUClusterSpec {
    /// The two Server Units (by unit name), of the same type.
    #[serde(deserialize_with = "two_different_units")]
    #[schemars(length(min = 2, max = 2))]
    pub server_units: Vec<UnitName>,
    /// Whether the cluster is active. An inactive cluster (INACTIVE) allows no live
    /// migration; only administrators may activate or deactivate it.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn two_different_units<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<UnitName>, D::Error> {
    two_different(d)
}

/// Observed state of an SU cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SUClusterStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// NORMAL, WARNING, ERROR or INACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ClusterState>,
    /// SU type of the cluster ("/390" or "x86").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub su_type: Option<String>,
    /// Why the state is not NORMAL, one line per cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// For an SU /390 cluster: the MUs of the servers and their state, as the SE
    /// Manager lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub management_units: Vec<super::hardware::UnitStatus>,
    /// The SUs and their values relevant for the cluster function (s3.3: "a table with
    /// the SUs and its values that are relevant for the cluster functionality").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_units: Vec<ClusterServerUnit>,
}

/// One SU of an SU cluster as its main window lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterServerUnit {
    /// SU name (for SU /390 the SEM name; VM2000 knows the monitor's BCAM host name).
    pub name: String,
    /// The SEServer it belongs to.
    pub server: String,
    /// "/390" or "x86".
    pub su_type: String,
    /// VM2000 or Native.
    pub operation_mode: String,
    /// ON or OFF.
    pub power: String,
    /// Operating state, e.g. RUNNING, DOWN, "RUNNING (BCAM down)".
    pub state: String,
    /// SU /390: REWAS active in the monitor system (needed for LM, s4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewas: Option<bool>,
}
