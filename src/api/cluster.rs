//! ManagementCluster (two SE Servers joined by ISL-E and a CRD) and SUCluster (two SUs
//! of one type between which BS2000 systems can be live-migrated).

use super::checked::{self, ObjectName, UnitName};
use super::Condition;
use schemars::JsonSchema;
use serde::de::{self, Deserializer};
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

/// An external configuration disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigDisk {
    /// Disk name (used by `sectl sim disk fail|repair`).
    pub name: UnitName,
    /// Capacity in GB; at least 8.
    #[serde(default = "default_disk_size", deserialize_with = "disk_size")]
    #[schemars(schema_with = "checked::disk_gb::schema")]
    pub size_gb: u32,
}

fn default_disk_size() -> u32 {
    8
}

fn disk_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a disk size in GB, at least 8")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            if (8..=1_000_000).contains(&v) {
                Ok(v as u32)
            } else {
                Err(E::custom(format!("an external configuration disk needs at least 8 GB, got {v}")))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            Err(E::custom(format!("an external configuration disk needs at least 8 GB, got {v}")))
        }
    }
    d.deserialize_u64(V)
}

/// Reads a sequence, then checks it with `check` inside the visitor so that the error
/// carries the position of the sequence.
fn checked_seq<'de, D, T>(d: D, what: &'static str, check: fn(&[T]) -> Result<(), String>) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T> {
        what: &'static str,
        check: fn(&[T]) -> Result<(), String>,
    }
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.what)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(x) = s.next_element()? {
                out.push(x);
            }
            (self.check)(&out).map_err(de::Error::custom)?;
            Ok(out)
        }
    }
    d.deserialize_seq(V { what, check })
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

pub(crate) fn at_most_two_disks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ConfigDisk>, D::Error> {
    checked_seq(d, "a list of at most two configuration disks", |v: &[ConfigDisk]| {
        if v.len() > 2 {
            return Err(format!("at most two external configuration disks are possible, got {}", v.len()));
        }
        if v.len() == 2 && v[0].name == v[1].name {
            return Err(format!("disk {} is named twice", v[0].name));
        }
        Ok(())
    })
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
    pub management_units: Vec<super::server::UnitStatus>,
}
