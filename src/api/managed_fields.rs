//! Field ownership as Kubernetes records it in `metadata.managedFields`: one entry per
//! manager and operation (`Apply` for server-side apply, `Update` for every other
//! write), each with the set of fields it owns in the `FieldsV1` form
//! (`{"f:spec": {"f:memoryMiB": {}}}`).
//!
//! Decisions and trade-offs:
//! * A field set is the set of *leaf* paths a manager owns. Maps (objects) are
//!   granular: each key is its own field, so two managers can own different labels or
//!   different spec fields. **Lists are atomic**: a list is one leaf, owned as a whole
//!   (Kubernetes' `x-kubernetes-list-type: atomic`). sectl's lists (devices, disks)
//!   are short and written by one hand; keyed merging (`k:` keys) would need a merge
//!   key per list in every schema. An entry read from elsewhere with `k:`, `v:` or
//!   `i:` keys is owned up to the list itself.
//! * Fields are scoped: the main resource manages `spec`, `metadata.labels` and
//!   `metadata.annotations`; the `/status` subresource manages `status`.
//! * An `Update` takes every field it changed from every other manager (and owns it,
//!   unless it removed it); a write that changes nothing changes no entry.
//! * The controller's own status writes are not recorded (they are the controller's
//!   by design, `ARCHITECTURE.md`), which keeps a reconcile one store batch.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Apply (server-side apply) or Update (any other write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, replace, patch, sectl's own apply.
    Update,
}

/// The only field set format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FieldsType {
    /// `f:<name>` keys nested like the object.
    FieldsV1,
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedFieldsEntry {
    /// Who manages the fields (the `fieldManager` of the writes).
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The API version the fields were written in.
    pub api_version: String,
    /// When the entry last changed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Always FieldsV1.
    pub fields_type: FieldsType,
    /// The fields owned.
    #[serde(rename = "fieldsV1", deserialize_with = "fields_v1")]
    #[schemars(schema_with = "fields_v1_schema")]
    pub fields_v1: Value,
    /// `status` for writes through the status subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

/// A field set: objects of objects (checked when decoded, so a bad one is refused
/// with its place instead of failing a later write).
fn fields_v1<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let v = Value::deserialize(d)?;
    FieldSet::from_v1(&v).map_err(serde::de::Error::custom)?;
    Ok(v)
}

fn fields_v1_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    let mut o = schemars::schema::SchemaObject {
        instance_type: Some(schemars::schema::InstanceType::Object.into()),
        ..Default::default()
    };
    o.metadata().description = Some("The fields owned, as nested `f:<name>` keys (objects of objects).".into());
    let nested = schemars::schema::SchemaObject {
        instance_type: Some(schemars::schema::InstanceType::Object.into()),
        ..Default::default()
    };
    o.object().additional_properties = Some(Box::new(nested.into()));
    o.into()
}

/// A path from the object's root: field names (map keys).
pub type Path = Vec<String>;

/// The set of leaf paths a manager owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<Path>);

/// Which part of an object a write manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The object: spec, labels, annotations.
    Main,
    /// The status subresource.
    Status,
}

impl Scope {
    /// The roots this scope manages.
    pub fn roots(self) -> &'static [&'static [&'static str]] {
        match self {
            Scope::Main => &[&["spec"], &["metadata", "labels"], &["metadata", "annotations"]],
            Scope::Status => &[&["status"]],
        }
    }

    /// The subresource recorded in entries.
    pub fn subresource(self) -> Option<String> {
        match self {
            Scope::Main => None,
            Scope::Status => Some("status".into()),
        }
    }
}

/// True when one path is a prefix of the other (they name the same field or one holds
/// the other).
pub fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// The value at `path`, if there is one.
pub fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

/// `.spec.memoryMiB`, as kube-apiserver prints paths.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// Leaves: scalars and lists. An empty map is no field: sectl writes empty maps
/// (labels, annotations) as absent, so owning `labels: {}` would only make
/// conflicts between `{}` and nothing.
fn leaves_into(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                leaves_into(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

impl FieldSet {
    /// The leaves of `obj` under the scope's roots.
    pub fn of(obj: &Value, scope: Scope) -> FieldSet {
        let mut out = BTreeSet::new();
        for root in scope.roots() {
            let mut path: Path = root.iter().map(|s| s.to_string()).collect();
            if let Some(v) = value_at(obj, &path) {
                leaves_into(v, &mut path, &mut out);
            }
        }
        FieldSet(out)
    }

    /// Whether any owned path overlaps `p`.
    pub fn touches(&self, p: &[String]) -> bool {
        self.0.iter().any(|q| overlaps(p, q))
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The FieldsV1 form.
    pub fn to_v1(&self) -> Value {
        let mut root = Map::new();
        for p in &self.0 {
            let mut node = &mut root;
            for k in p {
                node = node
                    .entry(format!("f:{k}"))
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("field set nodes are objects");
            }
        }
        Value::Object(root)
    }

    /// Reads the FieldsV1 form. Keys other than `f:` (`k:`, `v:`, `i:`, `.`) make the
    /// node they are in owned as a whole.
    pub fn from_v1(v: &Value) -> Result<FieldSet, String> {
        let mut out = BTreeSet::new();
        let root = v.as_object().ok_or("fieldsV1 must be an object")?;
        from_v1_into(root, &mut Vec::new(), &mut out)?;
        Ok(FieldSet(out))
    }
}

fn from_v1_into(m: &Map<String, Value>, path: &mut Path, out: &mut BTreeSet<Path>) -> Result<(), String> {
    let whole = m.keys().any(|k| !k.starts_with("f:"));
    if (m.is_empty() || whole) && !path.is_empty() {
        out.insert(path.clone());
        return Ok(());
    }
    for (k, child) in m {
        let name = k.strip_prefix("f:").unwrap_or(k);
        let child = child.as_object().ok_or_else(|| format!("fieldsV1 {}{k}: expected an object", dotted(path)))?;
        path.push(name.to_string());
        from_v1_into(child, path, out)?;
        path.pop();
    }
    Ok(())
}

impl ManagedFieldsEntry {
    /// An entry for `set`.
    pub fn new(manager: &str, operation: Operation, scope: Scope, set: &FieldSet, now: &str) -> Self {
        ManagedFieldsEntry {
            manager: manager.to_string(),
            operation,
            api_version: super::API_VERSION.to_string(),
            time: Some(now.to_string()),
            fields_type: FieldsType::FieldsV1,
            fields_v1: set.to_v1(),
            subresource: scope.subresource(),
        }
    }

    /// The fields it owns.
    pub fn set(&self) -> Result<FieldSet, String> {
        FieldSet::from_v1(&self.fields_v1).map_err(|e| format!("managedFields of {:?}: {e}", self.manager))
    }

    /// Whether this entry is `manager`'s for `operation` in `scope`.
    pub fn is(&self, manager: &str, operation: Operation, scope: Scope) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == scope.subresource()
    }
}

/// Entries with their parsed sets.
pub type Owned = Vec<(ManagedFieldsEntry, FieldSet)>;

/// Parses every entry's set.
pub fn parse(entries: &[ManagedFieldsEntry]) -> Result<Owned, String> {
    entries.iter().map(|e| Ok((e.clone(), e.set()?))).collect()
}

/// Back to entries: sets written out, empty ones dropped.
pub fn unparse(owned: Owned) -> Vec<ManagedFieldsEntry> {
    owned
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(mut e, s)| {
            e.fields_v1 = s.to_v1();
            e
        })
        .collect()
}

/// The leaf paths whose values differ between `old` and `new` in `scope` (present in
/// either).
pub fn changed(old: &Value, new: &Value, scope: Scope) -> BTreeSet<Path> {
    let (a, b) = (FieldSet::of(old, scope), FieldSet::of(new, scope));
    a.0.union(&b.0).filter(|p| value_at(old, p) != value_at(new, p)).cloned().collect()
}

/// The entries after an Update by `manager` that turned `old` (None: created) into
/// `new`: the manager takes every field it changed and still present; every other
/// entry loses them; removed fields leave every entry.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: &[ManagedFieldsEntry],
    manager: &str,
    scope: Scope,
    now: &str,
) -> Result<Vec<ManagedFieldsEntry>, String> {
    let changed = match old {
        Some(old) => changed(old, new, scope),
        None => FieldSet::of(new, scope).0,
    };
    if changed.is_empty() {
        return Ok(entries.to_vec());
    }
    let mut owned = parse(entries)?;
    for (_, s) in owned.iter_mut() {
        s.0.retain(|q| !changed.iter().any(|c| overlaps(c, q)));
    }
    let present = FieldSet::of(new, scope);
    let mine: BTreeSet<Path> = changed.into_iter().filter(|p| present.0.contains(p)).collect();
    match owned.iter_mut().find(|(e, _)| e.is(manager, Operation::Update, scope)) {
        Some((e, s)) => {
            s.0.extend(mine);
            e.time = Some(now.to_string());
            e.api_version = super::API_VERSION.to_string();
        }
        None => {
            let set = FieldSet(mine);
            owned.push((ManagedFieldsEntry::new(manager, Operation::Update, scope, &set, now), set));
        }
    }
    Ok(unparse(owned))
}

/// The manager of a write that names none: the User-Agent up to its first `/`
/// (`kubectl/v1.32.0 (linux/amd64) ...` gives `kubectl`), as kube-apiserver derives
/// it, else `sectl`.
pub fn default_manager(user_agent: Option<&str>) -> String {
    let name: String = user_agent
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "sectl".into()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Path {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn leaves_are_scoped_and_lists_atomic() {
        let o = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"m": 1, "d": [{"a": 1}], "e": {}}, "status": {"s": 1}});
        let s = FieldSet::of(&o, Scope::Main);
        let want: BTreeSet<Path> = ["metadata.labels.x", "spec.m", "spec.d"].into_iter().map(p).collect();
        assert_eq!(s.0, want);
        assert_eq!(FieldSet::of(&o, Scope::Status).0, [p("status.s")].into_iter().collect());
    }

    #[test]
    fn fields_v1_round_trips_and_reads_keyed_lists_as_whole() {
        let s = FieldSet([p("spec.m"), p("spec.d"), p("metadata.labels.x")].into_iter().collect());
        let v = s.to_v1();
        assert_eq!(v, json!({"f:spec": {"f:m": {}, "f:d": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}));
        assert_eq!(FieldSet::from_v1(&v).unwrap(), s);
        let k = json!({"f:spec": {"f:d": {"k:{\"mn\":\"A\"}": {".": {}}}}});
        assert_eq!(FieldSet::from_v1(&k).unwrap().0, [p("spec.d")].into_iter().collect());
        assert!(FieldSet::from_v1(&json!({"f:spec": 1})).is_err());
        assert!(FieldSet::from_v1(&json!([])).is_err());
    }

    #[test]
    fn an_update_takes_what_it_changed_from_others() {
        let old = json!({"spec": {"a": 1, "b": 2}});
        let a = FieldSet([p("spec.a"), p("spec.b")].into_iter().collect());
        let entries = vec![ManagedFieldsEntry::new("one", Operation::Apply, Scope::Main, &a, "t0")];
        let new = json!({"spec": {"a": 5, "c": 3}});
        let out = record_update(Some(&old), &new, &entries, "two", Scope::Main, "t1").unwrap();
        // "one" lost a (changed) and b (removed): its empty entry is gone.
        assert_eq!(out.len(), 1, "{out:?}");
        let two = &out[0];
        assert_eq!(two.manager, "two");
        assert_eq!(two.operation, Operation::Update);
        assert_eq!(two.set().unwrap().0, [p("spec.a"), p("spec.c")].into_iter().collect());
        // A write that changes nothing changes no entry.
        assert_eq!(record_update(Some(&new), &new, &out, "three", Scope::Main, "t2").unwrap(), out);
    }

    #[test]
    fn an_update_leaves_fields_it_did_not_touch() {
        let old = json!({"spec": {"a": 1, "b": 2}});
        let a = FieldSet([p("spec.a"), p("spec.b")].into_iter().collect());
        let entries = vec![ManagedFieldsEntry::new("one", Operation::Apply, Scope::Main, &a, "t0")];
        let new = json!({"spec": {"a": 1, "b": 3}});
        let out = record_update(Some(&old), &new, &entries, "two", Scope::Main, "t1").unwrap();
        assert_eq!(out[0].set().unwrap().0, [p("spec.a")].into_iter().collect());
        assert_eq!(out[1].set().unwrap().0, [p("spec.b")].into_iter().collect());
    }

    #[test]
    fn a_bad_field_set_is_refused_when_decoded() {
        let e = |f: Value| json!({"manager": "m", "operation": "Update", "apiVersion": "sectl.io/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": f});
        assert!(serde_json::from_value::<ManagedFieldsEntry>(e(json!({"f:spec": {"f:a": {}}}))).is_ok());
        assert!(serde_json::from_value::<ManagedFieldsEntry>(e(json!({"f:spec": 1}))).is_err());
        assert!(serde_json::from_value::<ManagedFieldsEntry>(e(json!("x"))).is_err());
    }

    #[test]
    fn default_manager_follows_the_user_agent() {
        assert_eq!(default_manager(Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc")), "kubectl");
        assert_eq!(default_manager(None), "sectl");
        assert_eq!(default_manager(Some("/x")), "sectl");
    }
}
