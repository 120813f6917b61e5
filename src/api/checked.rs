//! Checked scalar types: names, mnemonics, counts.
//!
//! Each type validates itself *inside* its serde visitor, so a bad value is reported by
//! the YAML decoder at the exact line and column of the value (an error raised after
//! deserialising would only carry the position of the enclosing mapping). Each also
//! carries its JSON Schema (pattern, bounds, description) for editors.

use schemars::gen::SchemaGenerator;
use schemars::schema::{InstanceType, Metadata, Schema, SchemaObject, StringValidation};
use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Defines a string newtype whose values are checked by `$check` while decoding.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, pattern = $pattern:expr, max = $max:expr, expecting = $exp:expr, check = $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Ok($name(s))
            }
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($exp)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::new(v).map_err(E::custom)
                    }
                }
                // deserialize_any, so that an unquoted number is a type error (as in
                // the schema) rather than silently taken as text.
                d.deserialize_any(V)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> String {
                stringify!($name).to_string()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                string_schema($pattern, $max, $exp)
            }
        }
    };
}

fn string_schema(pattern: &str, max: u32, description: &str) -> Schema {
    SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        string: Some(Box::new(StringValidation {
            max_length: Some(max),
            min_length: Some(1),
            pattern: Some(pattern.to_string()),
        })),
        metadata: Some(Box::new(Metadata { description: Some(description.to_string()), ..Default::default() })),
        ..Default::default()
    }
    .into()
}

fn all_chars(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

checked_string!(
    /// An object name (`metadata.name`, and references to objects): a DNS label.
    ObjectName,
    pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    max = 63,
    expecting = "a name of 1-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit",
    check = |s| {
        if s.is_empty() || s.len() > 63 {
            return Err(format!("name {s:?} must be 1-63 characters long"));
        }
        if !all_chars(s, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(format!(
                "name {s:?} may contain only lower-case letters a-z, digits and '-' (no '/', '.', spaces or upper case)"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(format!("name {s:?} must start and end with a letter or digit"));
        }
        Ok(())
    }
);

checked_string!(
    /// A BS2000 VM name: 1-8 characters A-Z and 0-9.
    VmName,
    pattern = "^[A-Z0-9]{1,8}$",
    max = 8,
    expecting = "a BS2000 VM name of 1-8 characters A-Z, 0-9",
    check = |s| {
        if s.is_empty() || s.len() > 8 || !all_chars(s, |c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return Err(format!("VM name {s:?} must be 1-8 characters A-Z, 0-9"));
        }
        Ok(())
    }
);

checked_string!(
    /// The name of a unit (MU, SU, HNC), a configuration disk, a CPU pool or a VM group.
    UnitName,
    pattern = "^[A-Za-z0-9*][A-Za-z0-9_*-]{0,31}$",
    max = 32,
    expecting = "a unit name of 1-32 characters A-Z, a-z, 0-9, '_', '-' or '*'",
    check = |s| {
        let ok = !s.is_empty()
            && s.len() <= 32
            && all_chars(s, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*')
            && !s.starts_with(['-', '_']);
        if !ok {
            return Err(format!(
                "unit name {s:?} must be 1-32 characters A-Z, a-z, 0-9, '_', '-' or '*', not starting with '-' or '_'"
            ));
        }
        Ok(())
    }
);

checked_string!(
    /// Two hexadecimal digits, as in a host connector or unit ID ("01", "0A").
    HexByte,
    pattern = "^[0-9A-Fa-f]{2}$",
    max = 2,
    expecting = "two hexadecimal digits, e.g. \"01\"",
    check = |s| {
        if s.len() != 2 || !all_chars(s, |c| c.is_ascii_hexdigit()) {
            return Err(format!("{s:?} must be two hexadecimal digits, e.g. \"01\""));
        }
        Ok(())
    }
);

checked_string!(
    /// A device mnemonic (MN) of 2 or 4 characters A-Z, 0-9, or a range of 4-digit
    /// hexadecimal MNs "A000-A0FF" (inclusive, not reversed).
    MnSpec,
    pattern = "^([A-Z0-9]{2}|[A-Z0-9]{4}|[0-9A-F]{4}-[0-9A-F]{4})$",
    max = 9,
    expecting = "a device mnemonic like \"4683\" or a range like \"A000-A0FF\"",
    check = |s| {
        match s.split_once('-') {
            None => {
                if !(s.len() == 2 || s.len() == 4) || !all_chars(s, |c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                    return Err(format!("MN {s:?} must be 2 or 4 characters A-Z, 0-9"));
                }
                Ok(())
            }
            Some((a, b)) => {
                let hex4 = |x: &str| x.len() == 4 && all_chars(x, |c| c.is_ascii_digit() || ('A'..='F').contains(&c));
                if !hex4(a) || !hex4(b) {
                    return Err(format!("MN range {s:?} must be two 4-digit hexadecimal MNs, like \"A000-A0FF\""));
                }
                let (x, y) = (u32::from_str_radix(a, 16).unwrap_or(0), u32::from_str_radix(b, 16).unwrap_or(0));
                if x > y {
                    return Err(format!("MN range {s:?} is reversed: {a} comes after {b}"));
                }
                Ok(())
            }
        }
    }
);

impl MnSpec {
    /// The single MNs this spec names, in order (a range expands to each member).
    pub fn expand(&self) -> Vec<String> {
        match self.0.split_once('-') {
            None => vec![self.0.clone()],
            Some((a, b)) => {
                let x = u32::from_str_radix(a, 16).unwrap_or(0);
                let y = u32::from_str_radix(b, 16).unwrap_or(0);
                (x..=y).map(|n| format!("{n:04X}")).collect()
            }
        }
    }
    /// Number of devices named.
    pub fn count(&self) -> usize {
        match self.0.split_once('-') {
            None => 1,
            Some((a, b)) => {
                let x = u32::from_str_radix(a, 16).unwrap_or(0);
                let y = u32::from_str_radix(b, 16).unwrap_or(0);
                (y - x + 1) as usize
            }
        }
    }
}

/// Defines an unsigned integer newtype with a lower (and optional upper) bound,
/// checked while decoding.
macro_rules! bounded_uint {
    ($(#[$doc:meta])* $name:ident($t:ty), min = $min:expr, max = $max:expr, what = $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub $t);

        impl $name {
            /// The plain number.
            pub fn get(self) -> $t {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} (an integer from {} to {})", $what, $min, $max)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        if v < $min as u64 || v > $max as u64 {
                            return Err(E::custom(format!(
                                "{} must be from {} to {}, got {}",
                                $what, $min, $max, v
                            )));
                        }
                        Ok($name(v as $t))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        if v < 0 {
                            return Err(E::custom(format!(
                                "{} must be from {} to {}, got {}",
                                $what, $min, $max, v
                            )));
                        }
                        self.visit_u64(v as u64)
                    }
                }
                // deserialize_any: serde_yaml calls visit_i64 for a negative number only then
                d.deserialize_any(V)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> String {
                stringify!($name).to_string()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                SchemaObject {
                    instance_type: Some(InstanceType::Integer.into()),
                    number: Some(Box::new(schemars::schema::NumberValidation {
                        minimum: Some($min as f64),
                        maximum: Some($max as f64),
                        ..Default::default()
                    })),
                    metadata: Some(Box::new(Metadata {
                        description: Some(format!("{}, from {} to {}", $what, $min, $max)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }
                .into()
            }
        }
    };
}

bounded_uint!(
    /// An amount of main memory in MiB, at least 1 (up to 16 TiB).
    MiB(u64), min = 1u64, max = 16_777_216u64, what = "memory in MiB"
);
bounded_uint!(
    /// A number of CPUs, at least 1.
    Cpus(u32), min = 1u32, max = 1024u32, what = "number of CPUs"
);
bounded_uint!(
    /// A number of CPUs that may be zero (a CPU pool may be empty).
    PoolCpus(u32), min = 0u32, max = 1024u32, what = "number of CPUs"
);
bounded_uint!(
    /// The maximum number of VM definitions on an SU.
    VmLimit(u32), min = 1u32, max = 99u32, what = "VM-definition limit"
);

/// The bounds of a plain numeric spec field, checked while decoding (so a bad value
/// is reported at its line and column) and written into the schema.
pub struct Bound {
    /// What the number is, for messages and the schema.
    pub what: &'static str,
    /// Smallest value allowed.
    pub min: f64,
    /// Largest value allowed.
    pub max: f64,
    /// Whether only whole numbers are allowed.
    pub integer: bool,
}

impl Bound {
    fn expecting(&self) -> String {
        let kind = if self.integer { "an integer" } else { "a number" };
        format!("{} ({kind} from {} to {})", self.what, self.min, self.max)
    }

    fn check<E: de::Error>(&self, v: f64, shown: &dyn fmt::Display) -> Result<f64, E> {
        if v.is_nan() || v < self.min {
            return Err(E::custom(format!("{} must be at least {}, got {shown}", self.what, self.min)));
        }
        if v > self.max {
            return Err(E::custom(format!("{} must be at most {}, got {shown}", self.what, self.max)));
        }
        Ok(v)
    }

    /// Decodes a number within the bounds (as f64; integers are exact below 2^53,
    /// far above every bound).
    pub fn decode<'de, D: Deserializer<'de>>(&'static self, d: D) -> Result<f64, D::Error> {
        struct V(&'static Bound);
        impl<'de> Visitor<'de> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.expecting())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                self.0.check(v as f64, &v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                self.0.check(v as f64, &v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                if self.0.integer {
                    return Err(E::invalid_type(de::Unexpected::Float(v), &self));
                }
                if !v.is_finite() {
                    return Err(E::custom(format!("{} must be a finite number, got {v}", self.0.what)));
                }
                // Debug writes 1e300 as such, Display as 301 digits.
                self.0.check(v, &format!("{v:?}"))
            }
        }
        d.deserialize_any(V(self))
    }

    /// Decodes an optional number within the bounds (absent or null is None).
    pub fn decode_opt<'de, D: Deserializer<'de>>(&'static self, d: D) -> Result<Option<f64>, D::Error> {
        struct V(&'static Bound);
        impl<'de> Visitor<'de> for V {
            type Value = Option<f64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.expecting())
            }
            fn visit_none<E: de::Error>(self) -> Result<Option<f64>, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
                self.0.decode(d).map(Some)
            }
        }
        d.deserialize_option(V(self))
    }

    /// The JSON Schema of the field; `nullable` to allow null too.
    pub fn schema(&self, nullable: bool) -> Schema {
        let t = if self.integer { InstanceType::Integer } else { InstanceType::Number };
        let instance_type = if nullable { vec![t, InstanceType::Null].into() } else { t.into() };
        SchemaObject {
            instance_type: Some(instance_type),
            number: Some(Box::new(schemars::schema::NumberValidation {
                minimum: Some(self.min),
                maximum: Some(self.max),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

/// Defines, for a numeric spec field, its `Bound` and the functions serde and
/// schemars call: `de`, `de_opt`, `schema`, `schema_opt`.
macro_rules! bounded_field {
    ($(#[$doc:meta])* $name:ident: $t:ty, min = $min:expr, max = $max:expr, integer = $int:expr, what = $what:expr) => {
        $(#[$doc])*
        pub mod $name {
            use super::*;
            /// The bounds.
            pub static BOUND: Bound = Bound { what: $what, min: $min as f64, max: $max as f64, integer: $int };
            /// Largest value allowed.
            pub const MAX: $t = $max;
            /// Decodes the field.
            pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                BOUND.decode(d).map(|v| v as $t)
            }
            /// Decodes the optional field.
            pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
                BOUND.decode_opt(d).map(|v| v.map(|v| v as $t))
            }
            /// The field's schema.
            pub fn schema(_: &mut SchemaGenerator) -> Schema {
                BOUND.schema(false)
            }
            /// The optional field's schema (absent when not given, as schemars writes
            /// other optional fields).
            pub fn schema_opt(_: &mut SchemaGenerator) -> Schema {
                BOUND.schema(false)
            }
        }
    };
}

bounded_field!(
    /// `islE.bandwidthGbps`: 0.001 to 400 Gbit/s.
    bandwidth_gbps: f64, min = 0.001, max = 400.0, integer = false, what = "bandwidth in Gbit/s"
);
bounded_field!(
    /// `islE.rttMs`: 0 to 1000 ms.
    rtt_ms: f64, min = 0.0, max = 1000.0, integer = false, what = "round-trip time in ms"
);
bounded_field!(
    /// `islE.lengthKm`: 0 to 1000 km.
    length_km: f64, min = 0.0, max = 1000.0, integer = false, what = "cable length in km"
);
bounded_field!(
    /// `workload.dirtyRateMiBps`: 0 to 1 TiB/s.
    dirty_rate: f64, min = 0.0, max = 1_048_576.0, integer = false, what = "dirty rate in MiB/s"
);
bounded_field!(
    /// `configDisks[].sizeGb`: 8 GB to 1 PB.
    disk_gb: u32, min = 8u32, max = 1_000_000u32, integer = true, what = "disk size in GB"
);
bounded_field!(
    /// `monitorMemoryMiB`: 0 to 16 TiB.
    monitor_mib: u64, min = 0u64, max = 16_777_216u64, integer = true, what = "monitor memory in MiB"
);
bounded_field!(
    /// `maxIo`: 0 to 1,000,000.
    max_io: u32, min = 0u32, max = 1_000_000u32, integer = true, what = "MAX-IO"
);
bounded_field!(
    /// `downtimeTargetMs`: 100 ms to one day.
    downtime_target_ms: u64, min = 100u64, max = 86_400_000u64, integer = true, what = "downtime target in ms"
);
bounded_field!(
    /// `timeBudgetS`: 1 s to 365 days.
    time_budget_s: u64, min = 1u64, max = 31_536_000u64, integer = true, what = "time budget in s"
);
bounded_field!(
    /// `aliveTimeoutS`: 1 s to 365 days.
    alive_timeout_s: u64, min = 1u64, max = 31_536_000u64, integer = true, what = "alive timeout in s"
);

/// A VM index: a fixed number (2-99; index 1 is the monitor VM) or `*ANY` for any free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmIndex {
    /// VM2000 picks any free index (`*ANY`).
    #[default]
    Any,
    /// This index, which must be free on the SU.
    Fixed(u32),
}

impl fmt::Display for VmIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmIndex::Any => f.write_str("*ANY"),
            VmIndex::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for VmIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VmIndex::Any => s.serialize_str("*ANY"),
            VmIndex::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for VmIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VmIndex;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a VM index from 2 to 99 or \"*ANY\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VmIndex, E> {
                if !(2..=99).contains(&v) {
                    return Err(E::custom(format!(
                        "VM index must be from 2 to 99 (1 is the monitor VM) or \"*ANY\", got {v}"
                    )));
                }
                Ok(VmIndex::Fixed(v as u32))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VmIndex, E> {
                if v < 0 {
                    return Err(E::custom(format!("VM index must be from 2 to 99 or \"*ANY\", got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VmIndex, E> {
                if v == "*ANY" {
                    Ok(VmIndex::Any)
                } else {
                    Err(E::custom(format!("VM index must be from 2 to 99 or \"*ANY\", got {v:?}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for VmIndex {
    fn schema_name() -> String {
        "VmIndex".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let v: serde_json::Value = serde_json::json!({
            "description": "VM index: 2-99 (1 is the monitor VM), or \"*ANY\" for any free index",
            "oneOf": [
                {"type": "integer", "minimum": 2, "maximum": 99},
                {"type": "string", "enum": ["*ANY"]}
            ]
        });
        serde_json::from_value(v).expect("static schema")
    }
}

checked_string!(
    /// A host to send alarms to: a DNS name or an IP address (IPv6 without brackets).
    HostName,
    pattern = "^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$",
    max = 253,
    expecting = "a host name or IP address, 1-253 characters A-Z, a-z, 0-9, '.', '-' (':' in IPv6)",
    check = |s| {
        if s.is_empty() || s.len() > 253 {
            return Err(format!("host {s:?} must be 1-253 characters long"));
        }
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Ok(());
        }
        for label in s.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && all_chars(label, |c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "host {s:?} is neither an IP address nor a DNS name (labels of 1-63 characters A-Z, a-z, 0-9 and '-', separated by '.')"
                ));
            }
        }
        Ok(())
    }
);

checked_string!(
    /// An SNMPv2c community: 1-32 printable ASCII characters, no spaces.
    Community,
    pattern = "^[!-~]{1,32}$",
    max = 32,
    expecting = "an SNMP community of 1-32 printable ASCII characters without spaces",
    check = |s| {
        if s.is_empty() || s.len() > 32 || !all_chars(s, |c| c.is_ascii_graphic()) {
            return Err(format!("community {s:?} must be 1-32 printable ASCII characters without spaces"));
        }
        Ok(())
    }
);

checked_string!(
    /// A mail address (RFC 5321 `local@domain`, as the SMTP library accepts it).
    MailAddress,
    pattern = "^[^@\\s]+@[^@\\s]+$",
    max = 254,
    expecting = "a mail address like ops@example.com",
    check = |s| {
        if s.len() > 254 {
            return Err(format!("mail address {s:?} is longer than 254 characters"));
        }
        s.parse::<lettre::Address>().map(|_| ()).map_err(|e| format!("mail address {s:?}: {e}"))
    }
);

bounded_uint!(
    /// A UDP or TCP port, 1-65535.
    Port(u16), min = 1u16, max = 65535u16, what = "port"
);

/// A string map (labels, annotations) that rejects duplicate keys, which YAML would
/// otherwise silently collapse to the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct StringMap(pub std::collections::BTreeMap<String, String>);

impl StringMap {
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<StringMap, A::Error> {
                let mut out = std::collections::BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    if k.is_empty() || k.len() > 253 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(de::Error::custom(format!("key {k:?} must be 1-253 characters without spaces")));
                    }
                    let v: String = m.next_value::<StrictString>()?.0;
                    if out.insert(k.clone(), v).is_some() {
                        return Err(de::Error::custom(format!("duplicate key {k:?}")));
                    }
                }
                Ok(StringMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string that must be written as one: numbers and booleans are type errors.
struct StrictString(String);

impl<'de> Deserialize<'de> for StrictString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (quote numbers and true/false)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictString, E> {
                Ok(StrictString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(ObjectName::new("vm12prod").is_ok());
        for bad in ["", "a/b", "..", ".", "A", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(ObjectName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(VmName::new("VM12PROD").is_ok());
        assert!(VmName::new("VM12PRODX").is_err());
        assert!(VmName::new("vm1").is_err());
    }

    #[test]
    fn numeric_fields_are_bounded_at_decode() {
        let de = |t: &str| bandwidth_gbps::de(serde_json::from_str::<serde_json::Value>(t).unwrap());
        assert_eq!(de("10").unwrap(), 10.0);
        assert_eq!(de("0.5").unwrap(), 0.5);
        assert!(de("1e300").unwrap_err().to_string().contains("must be at most 400, got 1e300"));
        assert!(de("0").unwrap_err().to_string().contains("must be at least 0.001"));
        let de = |t: &str| alive_timeout_s::de(serde_json::from_str::<serde_json::Value>(t).unwrap());
        assert_eq!(de("60").unwrap(), 60);
        assert!(de("18446744073709551615").unwrap_err().to_string().contains("must be at most 31536000"));
        assert!(de("-5").unwrap_err().to_string().contains("must be at least 1, got -5"));
        assert!(de("1.5").unwrap_err().to_string().contains("invalid type: floating point"));
        // The largest values, times 1000 (ms), stay far from overflow.
        assert!(alive_timeout_s::MAX.checked_mul(1000).is_some());
        assert!(time_budget_s::MAX.checked_mul(1000).is_some());
    }

    #[test]
    fn mn_ranges() {
        let r = MnSpec::new("A000-A0FF").unwrap();
        assert_eq!(r.count(), 256);
        assert_eq!(r.expand()[255], "A0FF");
        assert!(MnSpec::new("A0FF-A000").unwrap_err().contains("reversed"));
        assert!(MnSpec::new("A000-").is_err());
        assert!(MnSpec::new("4683").is_ok());
        assert!(MnSpec::new("ZZ").is_ok());
        assert!(MnSpec::new("ABC").is_err());
    }
}
