//! Server-side apply on JSON documents, as Kubernetes defines it (structured-merge-diff
//! semantics, with sectl's field sets from `managed_fields`):
//!
//! 1. The applied configuration's fields (its leaves in the scope) are the manager's.
//! 2. A field the configuration would *change* that another entry owns is a conflict;
//!    an equal value is shared ownership, no conflict. With `force` the conflicting
//!    fields move to the applier.
//! 3. Fields the manager applied before and no longer applies are removed from the
//!    object, unless another entry owns them.
//! 4. The configuration is merged into the live object: maps field by field, lists
//!    and scalars replaced whole (lists are atomic, see `managed_fields`).
//!
//! The result still goes through the decoder, the cross-object checks and optimistic
//! concurrency in the caller; this file only computes it.

use super::managed_fields::{overlaps, parse, unparse, value_at, FieldSet, ManagedFieldsEntry, Operation, Path, Scope};
use serde_json::Value;

/// A field another manager owns that the apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The owner.
    pub manager: String,
    /// Its operation.
    pub operation: Operation,
    /// Its API version.
    pub api_version: String,
    /// The field.
    pub path: Path,
}

impl Conflict {
    /// `"mgr"` for an applier, `"mgr" using sectl.io/v1alpha1` for an updater, as
    /// kube-apiserver names them.
    pub fn owner(&self) -> String {
        match self.operation {
            Operation::Apply => format!("{:?}", self.manager),
            Operation::Update => format!("{:?} using {}", self.manager, self.api_version),
        }
    }
}

/// Why an apply cannot be done.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyError {
    /// Fields owned by others would change (and `force` was not given).
    Conflicts(Vec<Conflict>),
    /// The stored entries cannot be read.
    Entries(String),
}

/// What an apply gives: the merged document and the entries to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The live document with the configuration merged in.
    pub object: Value,
    /// managedFields after the apply.
    pub entries: Vec<ManagedFieldsEntry>,
}

/// One apply request.
pub struct Request<'a> {
    /// The applied configuration (already checked for fields it may not carry).
    pub config: &'a Value,
    /// Who applies.
    pub manager: &'a str,
    /// Take over conflicting fields.
    pub force: bool,
    /// The object or its status.
    pub scope: Scope,
    /// The time for the entry.
    pub now: &'a str,
}

/// Applies `req` to `live` (None: the object does not exist yet).
pub fn apply(live: Option<&Value>, entries: &[ManagedFieldsEntry], req: &Request) -> Result<Applied, ApplyError> {
    let mine = FieldSet::of(req.config, req.scope);
    let Some(live) = live else {
        let entry = ManagedFieldsEntry::new(req.manager, Operation::Apply, req.scope, &mine, req.now);
        return Ok(Applied { object: req.config.clone(), entries: unparse(vec![(entry, mine)]) });
    };
    let mut owned = parse(entries).map_err(ApplyError::Entries)?;
    let is_mine = |e: &ManagedFieldsEntry| e.is(req.manager, Operation::Apply, req.scope);
    let conflicts = conflicts(live, &owned, &mine, req, &is_mine);
    if !conflicts.is_empty() && !req.force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for c in &conflicts {
        for (e, s) in owned.iter_mut().filter(|(e, _)| !is_mine(e)) {
            if e.manager == c.manager && e.operation == c.operation {
                s.0.remove(&c.path);
            }
        }
    }
    let before = owned.iter().position(|(e, _)| is_mine(e));
    let previous = before.map(|i| owned[i].1.clone()).unwrap_or_default();
    let mut object = live.clone();
    for root in req.scope.roots() {
        let path: Path = root.iter().map(|s| s.to_string()).collect();
        if let Some(v) = value_at(req.config, &path) {
            merge_at(&mut object, &path, v);
        }
    }
    for gone in previous.0.iter().filter(|p| !mine.touches(p)) {
        let others = owned.iter().filter(|(e, _)| !is_mine(e)).any(|(_, s)| s.touches(gone));
        if !others {
            remove_at(&mut object, gone);
        }
    }
    match before {
        Some(i) if owned[i].1 == mine => {}
        Some(i) => {
            owned[i].1 = mine;
            owned[i].0.time = Some(req.now.to_string());
        }
        None => owned.push((ManagedFieldsEntry::new(req.manager, Operation::Apply, req.scope, &mine, req.now), mine)),
    }
    Ok(Applied { object, entries: unparse(owned) })
}

fn conflicts(
    live: &Value,
    owned: &[(ManagedFieldsEntry, FieldSet)],
    mine: &FieldSet,
    req: &Request,
    is_mine: &dyn Fn(&ManagedFieldsEntry) -> bool,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (e, s) in owned.iter().filter(|(e, _)| !is_mine(e)) {
        for q in &s.0 {
            let changes = mine.0.iter().filter(|p| overlaps(p, q)).any(|p| {
                let at = if p.len() >= q.len() { p } else { q };
                value_at(req.config, at) != value_at(live, at)
            });
            if changes {
                out.push(Conflict {
                    manager: e.manager.clone(),
                    operation: e.operation,
                    api_version: e.api_version.clone(),
                    path: q.clone(),
                });
            }
        }
    }
    out
}

/// Merges `v` into `doc` at `path`: maps field by field, anything else replaced.
fn merge_at(doc: &mut Value, path: &[String], v: &Value) {
    let mut node = doc;
    for k in path {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        node = node.as_object_mut().expect("made an object").entry(k.clone()).or_insert(Value::Null);
    }
    merge(node, v);
}

fn merge(into: &mut Value, v: &Value) {
    match (into, v) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), bv);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn remove_at(doc: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else { return };
    let mut node = doc;
    for k in parent {
        match node.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(m) = node.as_object_mut() {
        m.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req<'a>(config: &'a Value, manager: &'a str, force: bool) -> Request<'a> {
        Request { config, manager, force, scope: Scope::Main, now: "t" }
    }

    fn set_of(entries: &[ManagedFieldsEntry], manager: &str) -> Vec<String> {
        let e = entries.iter().find(|e| e.manager == manager).expect("entry");
        e.set().unwrap().0.iter().map(|p| p.join(".")).collect()
    }

    #[test]
    fn create_then_second_manager_conflicts_then_forces() {
        let c1 = json!({"spec": {"a": 1, "b": [1, 2]}, "metadata": {"labels": {"x": "1"}}});
        let one = apply(None, &[], &req(&c1, "one", false)).unwrap();
        assert_eq!(set_of(&one.entries, "one"), ["metadata.labels.x", "spec.a", "spec.b"]);
        // Another manager applying the same value shares it: no conflict.
        let same = json!({"spec": {"a": 1}});
        let shared = apply(Some(&one.object), &one.entries, &req(&same, "two", false)).unwrap();
        assert_eq!(set_of(&shared.entries, "two"), ["spec.a"]);
        assert_eq!(set_of(&shared.entries, "one"), ["metadata.labels.x", "spec.a", "spec.b"]);
        // A different value and a different list are conflicts naming field and owner.
        let c2 = json!({"spec": {"a": 2, "b": [3], "c": 1}});
        let err = apply(Some(&one.object), &one.entries, &req(&c2, "two", false)).unwrap_err();
        let ApplyError::Conflicts(cs) = err else { panic!("conflicts expected") };
        let named: Vec<(String, String)> =
            cs.iter().map(|c| (c.owner(), super::super::managed_fields::dotted(&c.path))).collect();
        assert_eq!(named, [("\"one\"".to_string(), ".spec.a".to_string()), ("\"one\"".into(), ".spec.b".into())]);
        // Forced: ownership moves, values taken.
        let forced = apply(Some(&one.object), &one.entries, &req(&c2, "two", true)).unwrap();
        assert_eq!(forced.object["spec"], json!({"a": 2, "b": [3], "c": 1}));
        assert_eq!(set_of(&forced.entries, "one"), ["metadata.labels.x"]);
        assert_eq!(set_of(&forced.entries, "two"), ["spec.a", "spec.b", "spec.c"]);
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_another_owns_them() {
        let c1 = json!({"spec": {"a": 1, "b": 2, "c": 3}});
        let one = apply(None, &[], &req(&c1, "one", false)).unwrap();
        let two = apply(Some(&one.object), &one.entries, &req(&json!({"spec": {"c": 3}}), "two", false)).unwrap();
        let c1b = json!({"spec": {"a": 1}});
        let after = apply(Some(&two.object), &two.entries, &req(&c1b, "one", false)).unwrap();
        // b was only "one"'s: removed; c is also "two"'s: kept.
        assert_eq!(after.object["spec"], json!({"a": 1, "c": 3}));
        assert_eq!(set_of(&after.entries, "one"), ["spec.a"]);
    }

    #[test]
    fn an_updater_is_named_with_its_api_version_and_a_reapply_keeps_the_time() {
        let live = json!({"spec": {"a": 1}});
        let set = FieldSet::of(&live, Scope::Main);
        let entries = vec![ManagedFieldsEntry::new("kubectl-edit", Operation::Update, Scope::Main, &set, "t0")];
        let err = apply(Some(&live), &entries, &req(&json!({"spec": {"a": 2}}), "me", false)).unwrap_err();
        let ApplyError::Conflicts(cs) = err else { panic!("conflicts expected") };
        assert_eq!(cs[0].owner(), "\"kubectl-edit\" using sectl.io/v1alpha1");
        let c = json!({"spec": {"b": 1}});
        let first = apply(Some(&live), &entries, &Request { now: "t1", ..req(&c, "me", false) }).unwrap();
        let again = apply(Some(&first.object), &first.entries, &Request { now: "t2", ..req(&c, "me", false) }).unwrap();
        assert_eq!(again, first, "re-applying the same configuration changes nothing");
    }
}
