//! Hardware pieces that both the server and the cluster kinds use: external
//! configuration disks (declared on a server or a Management Cluster) and the
//! power/state line of one unit (listed by a server and, for MUs, by clusters). They
//! live here, below `server.rs` and `cluster.rs`, so neither imports the other.

use super::checked::{self, UnitName};
use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

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
pub(crate) fn checked_seq<'de, D, T>(
    d: D,
    what: &'static str,
    check: fn(&[T]) -> Result<(), String>,
) -> Result<Vec<T>, D::Error>
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

/// Power and state of one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitStatus {
    /// Unit name.
    pub name: String,
    /// MU, SU, HNC or AU.
    pub unit_type: String,
    /// ON or OFF.
    pub power: String,
    /// Operating state, e.g. RUNNING, DOWN, WARNING (ResMon), MAINTENANCE (SU x86),
    /// NOT_MONITORED (an AU registered only for HW monitoring; UNCONFIGURED while only
    /// V6.2 MUs enquire it, s2.5).
    pub state: String,
}
