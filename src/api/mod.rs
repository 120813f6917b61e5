//! The resource model: the kinds of `shared/API.md` as typed Rust structs, their
//! common metadata and conditions, and `Resource`, the one enum the store, the CLI and
//! the controllers pass around.
//!
//! Validation of single fields lives in the types themselves (`checked`), so a decoding
//! error points at the exact line; checks across fields and objects live in `validate`.

pub mod alarm;
pub mod checked;
pub mod cluster;
pub mod hardware;
pub mod managed_fields;
pub mod migration;
pub mod schema;
pub mod selector;
pub mod server;
pub mod server_side_apply;
pub mod structural;
pub mod validate;
pub mod vm;

pub use alarm::{AlarmFilter, AlarmReceiverSpec, AlarmReceiverStatus, Component, MailTarget, SnmpTarget, Weight};
pub use checked::{ObjectName, StringMap, UnitName, VmIndex, VmName};
pub use cluster::*;
pub use hardware::{ConfigDisk, UnitStatus};
pub use migration::*;
pub use server::*;
pub use vm::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group and version every object carries.
pub const API_VERSION: &str = "sectl.io/v1alpha1";

/// Metadata common to all objects. The store sets `uid`, `resourceVersion`,
/// `generation` and `creationTimestamp`; values given in a manifest for those are
/// ignored, except `resourceVersion`, which makes an update conditional (optimistic
/// concurrency: a stale one is a conflict).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name, unique per kind: 1-63 characters a-z, 0-9 and '-'.
    pub name: ObjectName,
    /// Labels: identifying key/value pairs.
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
    /// Annotations: free-form key/value pairs.
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub annotations: StringMap,
    /// Unique ID set by the store at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Version of this object, from one global counter; changes on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Bumped only when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// When the object was created (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Which manager owns which fields (server-side apply and the API's writes), as
    /// Kubernetes records it. Absent in a write: the stored entries are kept.
    #[serde(default, skip_serializing_if = "no_entries")]
    pub managed_fields: Option<Vec<managed_fields::ManagedFieldsEntry>>,
}

fn no_entries(e: &Option<Vec<managed_fields::ManagedFieldsEntry>>) -> bool {
    e.as_ref().is_none_or(Vec::is_empty)
}

impl ObjectMeta {
    /// Metadata with only a name.
    pub fn named(name: ObjectName) -> Self {
        ObjectMeta {
            name,
            labels: StringMap::default(),
            annotations: StringMap::default(),
            uid: None,
            resource_version: None,
            generation: None,
            creation_timestamp: None,
            managed_fields: None,
        }
    }

    /// resourceVersion as a number (0 when unset or not a number).
    pub fn rv(&self) -> u64 {
        self.resource_version.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// True, False or Unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not hold.
    False,
    /// Not known.
    Unknown,
}

/// One condition of an object's status, keyed by `type`. `lastTransitionTime` moves
/// only when `status` changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// What the condition is about, e.g. Ready, Placed, IslE.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// Stable CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// For people.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339, simulated clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
}

/// An object of one kind with typed spec and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<S, St> {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// What the user wants.
    pub spec: S,
    /// What the controller observed.
    pub status: St,
}

/// Implemented by every spec type: ties it to its kind and status type.
pub trait KindSpec: Sized + Clone + PartialEq {
    /// The kind.
    const KIND: Kind;
    /// Its status type.
    type Status: Default + Clone + PartialEq + Serialize;
    /// Wraps a typed object into a `Resource`.
    fn wrap(o: Object<Self, Self::Status>) -> Resource;
    /// Unwraps a `Resource` of this kind.
    fn unwrap(r: Resource) -> Option<Object<Self, Self::Status>>;
    /// Borrows a `Resource` of this kind.
    fn peek(r: &Resource) -> Option<&Object<Self, Self::Status>>;
}

macro_rules! kinds {
    ($( $variant:ident { spec: $spec:ident, status: $status:ident, plural: $plural:expr, short: [$($short:expr),*], doc: $doc:expr } ),* $(,)?) => {
        /// The kinds of object.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $( #[doc = $doc] $variant ),* }

        impl Kind {
            /// All kinds, in dependency order (servers before clusters before VMs).
            pub const ALL: &'static [Kind] = &[ $( Kind::$variant ),* ];

            /// The kind as written in manifests, e.g. "VMDefinition".
            pub fn as_str(self) -> &'static str {
                match self { $( Kind::$variant => stringify!($variant) ),* }
            }

            /// Lower-case plural, used in API paths, e.g. "vmdefinitions".
            pub fn plural(self) -> &'static str {
                match self { $( Kind::$variant => $plural ),* }
            }

            /// Short names accepted on the command line.
            pub fn short_names(self) -> &'static [&'static str] {
                match self { $( Kind::$variant => &[$($short),*] ),* }
            }

            /// One line saying what the kind is.
            pub fn description(self) -> &'static str {
                match self { $( Kind::$variant => $doc ),* }
            }
        }

        /// An object of any kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource { $( #[doc = $doc] $variant(Object<$spec, $status>) ),* }

        /// A spec of any kind (what a manifest document carries).
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnySpec { $( #[doc = $doc] $variant($spec) ),* }

        $(
            impl KindSpec for $spec {
                const KIND: Kind = Kind::$variant;
                type Status = $status;
                fn wrap(o: Object<Self, $status>) -> Resource { Resource::$variant(o) }
                fn unwrap(r: Resource) -> Option<Object<Self, $status>> {
                    #[allow(unreachable_patterns)]
                    match r { Resource::$variant(o) => Some(o), _ => None }
                }
                fn peek(r: &Resource) -> Option<&Object<Self, $status>> {
                    #[allow(unreachable_patterns)]
                    match r { Resource::$variant(o) => Some(o), _ => None }
                }
            }
        )*

        impl Resource {
            /// Builds an object with default (empty) status.
            pub fn new(metadata: ObjectMeta, spec: AnySpec) -> Resource {
                match spec { $( AnySpec::$variant(spec) => Resource::$variant(Object { metadata, spec, status: Default::default() }) ),* }
            }
            /// The kind.
            pub fn kind(&self) -> Kind {
                match self { $( Resource::$variant(_) => Kind::$variant ),* }
            }
            /// Metadata.
            pub fn meta(&self) -> &ObjectMeta {
                match self { $( Resource::$variant(o) => &o.metadata ),* }
            }
            /// Metadata, mutable.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self { $( Resource::$variant(o) => &mut o.metadata ),* }
            }
            /// True when both are of one kind with equal specs.
            pub fn spec_eq(&self, other: &Resource) -> bool {
                #[allow(unreachable_patterns)]
                match (self, other) { $( (Resource::$variant(a), Resource::$variant(b)) => a.spec == b.spec, )* _ => false }
            }
            /// True when both are of one kind with equal statuses.
            pub fn status_eq(&self, other: &Resource) -> bool {
                #[allow(unreachable_patterns)]
                match (self, other) { $( (Resource::$variant(a), Resource::$variant(b)) => a.status == b.status, )* _ => false }
            }
            /// Copies the status of `other` (same kind) into self.
            pub fn take_status_from(&mut self, other: &Resource) {
                #[allow(unreachable_patterns)]
                match (self, other) { $( (Resource::$variant(a), Resource::$variant(b)) => a.status = b.status.clone(), )* _ => {} }
            }
            /// Copies the spec of `other` (same kind) into self.
            pub fn take_spec_from(&mut self, other: &Resource) {
                #[allow(unreachable_patterns)]
                match (self, other) { $( (Resource::$variant(a), Resource::$variant(b)) => a.spec = b.spec.clone(), )* _ => {} }
            }
            /// The status's conditions.
            pub fn conditions(&self) -> &[Condition] {
                match self { $( Resource::$variant(o) => &o.status.conditions ),* }
            }
            /// The status's conditions, mutable.
            pub fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                match self { $( Resource::$variant(o) => &mut o.status.conditions ),* }
            }
            /// Resets the status to empty.
            pub fn clear_status(&mut self) {
                match self { $( Resource::$variant(o) => o.status = Default::default() ),* }
            }
            /// The spec as JSON.
            pub fn spec_json(&self) -> serde_json::Value {
                match self { $( Resource::$variant(o) => serde_json::to_value(&o.spec).unwrap_or_default() ),* }
            }
            /// The status as JSON.
            pub fn status_json(&self) -> serde_json::Value {
                match self { $( Resource::$variant(o) => serde_json::to_value(&o.status).unwrap_or_default() ),* }
            }
            /// Replaces the status from JSON (as sent to the status path).
            pub fn set_status_json(&mut self, v: serde_json::Value) -> Result<(), serde_json::Error> {
                match self { $( Resource::$variant(o) => { o.status = serde_json::from_value(v)?; Ok(()) } ),* }
            }
        }

        impl Serialize for Resource {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( Resource::$variant(o) => Envelope {
                    api_version: API_VERSION, kind: stringify!($variant), metadata: &o.metadata, spec: &o.spec, status: &o.status,
                }.serialize(s) ),* }
            }
        }

        /// Decodes the spec of `kind` from any serde deserializer (used by the YAML
        /// decoder, so that errors keep their positions).
        pub fn decode_spec<'de, D: serde::Deserializer<'de>>(kind: Kind, d: D) -> Result<AnySpec, D::Error> {
            match kind { $( Kind::$variant => Ok(AnySpec::$variant(<$spec as Deserialize>::deserialize(d)?)) ),* }
        }

        /// Checks a status of `kind` as written in a manifest, then drops it.
        pub fn check_status<'de, D: serde::Deserializer<'de>>(kind: Kind, d: D) -> Result<(), D::Error> {
            match kind { $( Kind::$variant => { <$status as Deserialize>::deserialize(d)?; Ok(()) } ),* }
        }

        /// Decodes the status of `kind` from JSON.
        fn decode_status(kind: Kind, raw: &serde_json::value::RawValue, r: &mut Resource) -> Result<(), serde_json::Error> {
            let _ = kind;
            match r { $( Resource::$variant(o) => { o.status = serde_json::from_str(raw.get())?; } ),* }
            Ok(())
        }

        /// Schemas (spec, status) per kind.
        pub(crate) fn kind_schemas(kind: Kind, g: &mut schemars::gen::SchemaGenerator) -> (schemars::schema::Schema, schemars::schema::Schema) {
            match kind { $( Kind::$variant => (g.subschema_for::<$spec>(), g.subschema_for::<$status>()) ),* }
        }
    };
}

kinds! {
    SEServer { spec: SEServerSpec, status: SEServerStatus, plural: "seservers", short: ["seserver", "se"],
        doc: "An SE Server: its MUs, SUs, Net Unit and I/O configuration." },
    ManagementCluster { spec: ManagementClusterSpec, status: ManagementClusterStatus, plural: "managementclusters", short: ["managementcluster", "mc"],
        doc: "Two SE Servers joined by ISL-E and a CRD, managed by one Cluster Manager." },
    SUCluster { spec: SUClusterSpec, status: SUClusterStatus, plural: "suclusters", short: ["sucluster", "suc"],
        doc: "Two Server Units of one type between which BS2000 systems can be live-migrated." },
    VMDefinition { spec: VMDefinitionSpec, status: VMDefinitionStatus, plural: "vmdefinitions", short: ["vmdefinition", "vm"],
        doc: "The definition of a BS2000 VM on a Server Unit." },
    LiveMigration { spec: LiveMigrationSpec, status: LiveMigrationStatus, plural: "livemigrations", short: ["livemigration", "lm"],
        doc: "A live migration of a BS2000 system to the other SU of its SU cluster." },
    VMRecovery { spec: VMRecoverySpec, status: VMRecoveryStatus, plural: "vmrecoveries", short: ["vmrecovery", "rec"],
        doc: "Recovery of a VM definition from an unavailable SU (RECOVER-VM-DEFINITION)." },
    AlarmReceiver { spec: AlarmReceiverSpec, status: AlarmReceiverStatus, plural: "alarmreceivers", short: ["alarmreceiver", "ar"],
        doc: "Who is sent which events (SNMPv2c trap or mail), global in the management cluster (alarm management)." },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, S, St> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a S,
    status: &'a St,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope<'a> {
    #[allow(dead_code)]
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    #[serde(borrow)]
    spec: &'a serde_json::value::RawValue,
    #[serde(borrow, default)]
    status: Option<&'a serde_json::value::RawValue>,
}

impl Kind {
    /// Parses a kind as users type it: the kind, lower case, plural or short name.
    pub fn parse(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().to_ascii_lowercase() == l || k.plural() == l || k.short_names().contains(&l.as_str()))
    }

    /// Parses the `kind:` field of a document (exact spelling).
    pub fn from_manifest(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Lower-case kind, used for schema file names.
    pub fn lower(self) -> String {
        self.as_str().to_ascii_lowercase()
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Resource {
    /// The object's name.
    pub fn name(&self) -> &str {
        self.meta().name.as_str()
    }

    /// "Kind/name".
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// Serialises to JSON (the store's encoding).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("resources always serialise")
    }

    /// Decodes from the store's JSON encoding.
    pub fn from_json(bytes: &[u8]) -> Result<Resource, String> {
        let env: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let kind = Kind::from_manifest(&env.kind).ok_or_else(|| format!("unknown kind {}", env.kind))?;
        let mut de = serde_json::Deserializer::from_str(env.spec.get());
        let spec = decode_spec(kind, &mut de).map_err(|e| e.to_string())?;
        let mut r = Resource::new(env.metadata, spec);
        if let Some(st) = env.status {
            if st.get() != "null" {
                decode_status(kind, st, &mut r).map_err(|e| e.to_string())?;
            }
        }
        Ok(r)
    }

    /// Typed view of this object, if it is of kind `S::KIND`.
    pub fn as_typed<S: KindSpec>(&self) -> Option<&Object<S, S::Status>> {
        S::peek(self)
    }
}

impl<S: KindSpec> Object<S, S::Status> {
    /// Wraps into a `Resource`.
    pub fn into_resource(self) -> Resource {
        S::wrap(self)
    }
    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_str()
    }
}

/// Sets the condition of `type_` in `conds`, keeping `lastTransitionTime` unless the
/// status changes. Returns true when anything changed.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<u64>,
    now: &str,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        let before = c.clone();
        if c.status != status {
            c.last_transition_time = Some(now.to_string());
        }
        c.status = status;
        c.reason = reason.to_string();
        c.message = message.to_string();
        c.observed_generation = generation;
        return *c != before;
    }
    conds.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: Some(now.to_string()),
        observed_generation: generation,
    });
    true
}

/// Removes the condition of `type_`. Returns true when there was one.
pub fn remove_condition(conds: &mut Vec<Condition>, type_: &str) -> bool {
    let n = conds.len();
    conds.retain(|c| c.type_ != type_);
    n != conds.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_parse() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
            assert_eq!(Kind::parse(k.plural()), Some(*k));
            for s in k.short_names() {
                assert_eq!(Kind::parse(s), Some(*k));
            }
        }
        assert_eq!(Kind::parse("vm"), Some(Kind::VMDefinition));
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn condition_transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        assert!(set_condition(&mut c, "Ready", ConditionStatus::True, "Ok", "", Some(1), "t1"));
        assert!(!set_condition(&mut c, "Ready", ConditionStatus::True, "Ok", "", Some(1), "t2"));
        assert_eq!(c[0].last_transition_time.as_deref(), Some("t1"));
        assert!(set_condition(&mut c, "Ready", ConditionStatus::True, "Other", "m", Some(2), "t3"));
        assert_eq!(c[0].last_transition_time.as_deref(), Some("t1"));
        assert!(set_condition(&mut c, "Ready", ConditionStatus::False, "Down", "", Some(2), "t4"));
        assert_eq!(c[0].last_transition_time.as_deref(), Some("t4"));
    }
}
