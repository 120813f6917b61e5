//! The reconciler runtime's parts, after kube-rs: a reflector `Cache` of all objects,
//! a `Scheduler` that keeps at most one pending entry per object (the earliest), and
//! per-object exponential backoff for failing reconciles.
//!
//! The cache keeps one secondary index, VMDefinitions by SU (the one in the spec and
//! the one in the status), so that a change of a server wakes the VMs on its SUs
//! without a scan of every VM; it is updated on every put and remove.

use crate::api::{Kind, Resource};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Identifies an object.
pub type Key = (Kind, String);

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something related changes.
    Await,
    /// Run again after this many simulated milliseconds (work in progress).
    RequeueAfter(u64),
}

/// All objects as last seen on the watch.
#[derive(Debug, Default)]
pub struct Cache {
    objs: BTreeMap<Kind, BTreeMap<String, Resource>>,
    /// VMDefinition names by SU (spec.serverUnit and status.serverUnit).
    vms_by_su: HashMap<String, BTreeSet<String>>,
}

/// The SUs a VMDefinition is indexed under: its spec's and its status's.
fn sus_of(r: &Resource) -> Vec<String> {
    let Some(vm) = r.as_typed::<crate::api::VMDefinitionSpec>() else { return Vec::new() };
    let mut v = vec![vm.spec.server_unit.to_string()];
    if let Some(s) = vm.status.server_unit.as_deref() {
        if s != v[0] {
            v.push(s.to_string());
        }
    }
    v
}

impl Cache {
    /// One object.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Resource> {
        self.objs.get(&kind).and_then(|m| m.get(name))
    }

    /// All objects of a kind, by name.
    pub fn list(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.objs.get(&kind).into_iter().flat_map(|m| m.values())
    }

    /// Typed objects of a kind.
    pub fn typed<S: crate::api::KindSpec + 'static>(&self) -> impl Iterator<Item = &crate::api::Object<S, S::Status>> {
        self.list(S::KIND).filter_map(|r| S::peek(r))
    }

    /// One typed object.
    pub fn get_typed<S: crate::api::KindSpec + 'static>(
        &self,
        name: &str,
    ) -> Option<&crate::api::Object<S, S::Status>> {
        self.get(S::KIND, name).and_then(|r| S::peek(r))
    }

    /// Names of the VMDefinitions whose spec or status names one of `sus`, sorted
    /// by name (the order `typed` would give them in).
    pub fn vms_on_sus<'a>(&self, sus: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for su in sus {
            if let Some(names) = self.vms_by_su.get(su) {
                out.extend(names.iter().cloned());
            }
        }
        out
    }

    /// Stores the newest state of an object.
    pub fn put(&mut self, r: Resource) {
        let objs = self.objs.entry(r.kind()).or_default();
        match objs.get_mut(r.name()) {
            // Replaced in place; the index changes only when its SUs do.
            Some(cur) => {
                let (old, new) = (sus_of(cur), sus_of(&r));
                if old != new {
                    unindex(&mut self.vms_by_su, r.name(), old);
                    index(&mut self.vms_by_su, &r);
                }
                *cur = r;
            }
            None => {
                index(&mut self.vms_by_su, &r);
                objs.insert(r.name().to_string(), r);
            }
        }
    }

    /// Takes in the stored form of an object the cache already holds with the same
    /// content (a status the controller put in before it was stored): only its
    /// resourceVersion changes, without replacing it. False, and nothing changed, when
    /// the content differs or the object is not there.
    pub fn refresh_version(&mut self, stored: &Resource) -> bool {
        let Some(cur) = self.objs.get_mut(&stored.kind()).and_then(|m| m.get_mut(stored.name())) else {
            return false;
        };
        let old = std::mem::replace(&mut cur.meta_mut().resource_version, stored.meta().resource_version.clone());
        if cur == stored {
            return true;
        }
        cur.meta_mut().resource_version = old;
        false
    }

    /// Forgets an object.
    pub fn remove(&mut self, kind: Kind, name: &str) -> Option<Resource> {
        let old = self.objs.get_mut(&kind).and_then(|m| m.remove(name))?;
        unindex(&mut self.vms_by_su, name, sus_of(&old));
        Some(old)
    }

    /// Replaces all objects of a kind (after a relist).
    pub fn replace(&mut self, kind: Kind, objs: Vec<Resource>) {
        let old = self.objs.insert(kind, objs.into_iter().map(|r| (r.name().to_string(), r)).collect());
        for r in old.iter().flat_map(|m| m.values()) {
            unindex(&mut self.vms_by_su, r.name(), sus_of(r));
        }
        for r in self.objs.get(&kind).into_iter().flat_map(|m| m.values()) {
            index(&mut self.vms_by_su, r);
        }
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objs.values().map(|m| m.len()).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn index(by_su: &mut HashMap<String, BTreeSet<String>>, r: &Resource) {
    for su in sus_of(r) {
        by_su.entry(su).or_default().insert(r.name().to_string());
    }
}

fn unindex(by_su: &mut HashMap<String, BTreeSet<String>>, name: &str, sus: Vec<String>) {
    for su in sus {
        if let Some(set) = by_su.get_mut(&su) {
            set.remove(name);
            if set.is_empty() {
                by_su.remove(&su);
            }
        }
    }
}

/// Pending reconciles by due time, at most one per object.
#[derive(Debug, Default)]
pub struct Scheduler {
    due: BTreeSet<(u64, u64, Key)>,
    index: HashMap<Key, (u64, u64)>,
    seq: u64,
}

impl Scheduler {
    /// Schedules `key` at simulated time `at`, unless it is already scheduled earlier.
    pub fn schedule(&mut self, key: Key, at: u64) {
        if let Some(&(t, s)) = self.index.get(&key) {
            if t <= at {
                return;
            }
            self.due.remove(&(t, s, key.clone()));
        }
        self.seq += 1;
        self.index.insert(key.clone(), (at, self.seq));
        self.due.insert((at, self.seq, key));
    }

    /// Takes the first item due at or before `now`, skipping keys in `busy`.
    pub fn pop_due(&mut self, now: u64, busy: &BTreeSet<Key>) -> Option<Key> {
        let item = self.due.iter().take_while(|(t, _, _)| *t <= now).find(|(_, _, k)| !busy.contains(k)).cloned()?;
        self.due.remove(&item);
        self.index.remove(&item.2);
        Some(item.2)
    }

    /// The first item due at or before `now`, left in place.
    pub fn first_due(&self, now: u64) -> Option<&Key> {
        self.due.iter().next().filter(|(t, _, _)| *t <= now).map(|(_, _, k)| k)
    }

    /// When `key` is due, if it is pending.
    pub fn due_of(&self, key: &Key) -> Option<u64> {
        self.index.get(key).map(|&(t, _)| t)
    }

    /// The earliest due time.
    pub fn next_time(&self) -> Option<u64> {
        self.due.iter().next().map(|(t, _, _)| *t)
    }

    /// All pending items (due time, key), earliest first.
    pub fn items(&self) -> Vec<(u64, Key)> {
        self.due.iter().map(|(t, _, k)| (*t, k.clone())).collect()
    }

    /// Number of pending items.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// Exponential backoff per object for failing reconciles: 1 s, 2 s, 4 s ... up to 5 min
/// (simulated), reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: HashMap<Key, u32>,
}

impl Backoff {
    /// Records a failure; returns the delay before the next try.
    pub fn fail(&mut self, key: &Key) -> u64 {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n += 1;
        (1000u64 << (*n - 1).min(20)).min(300_000)
    }

    /// The delay `fail` would return next, without recording anything.
    pub fn next_delay(&self, key: &Key) -> u64 {
        let n = self.failures(key) + 1;
        (1000u64 << (n - 1).min(20)).min(300_000)
    }

    /// Records a success.
    pub fn succeed(&mut self, key: &Key) {
        self.failures.remove(key);
    }

    /// Failures in a row so far.
    pub fn failures(&self, key: &Key) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> Key {
        (Kind::VMDefinition, n.to_string())
    }

    #[test]
    fn scheduler_dedups_and_keeps_earliest() {
        let mut s = Scheduler::default();
        s.schedule(k("a"), 10);
        s.schedule(k("a"), 20);
        s.schedule(k("b"), 5);
        s.schedule(k("a"), 1);
        assert_eq!(s.len(), 2);
        let busy = BTreeSet::new();
        assert_eq!(s.pop_due(100, &busy), Some(k("a")));
        assert_eq!(s.pop_due(100, &busy), Some(k("b")));
        assert_eq!(s.pop_due(100, &busy), None);
    }

    #[test]
    fn scheduler_skips_busy_and_future() {
        let mut s = Scheduler::default();
        s.schedule(k("a"), 0);
        s.schedule(k("b"), 0);
        s.schedule(k("c"), 50);
        let busy: BTreeSet<Key> = [k("a")].into_iter().collect();
        assert_eq!(s.pop_due(10, &busy), Some(k("b")));
        assert_eq!(s.pop_due(10, &busy), None);
        assert_eq!(s.next_time(), Some(0));
    }

    fn vm(name: &str, su: &str, status_su: Option<&str>) -> Resource {
        let yaml = format!("apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}}}\nspec:\n  vmName: VM1\n  serverUnit: {su}\n  memoryMiB: 512\n");
        let mut r = crate::manifest::decode("t.yaml", yaml.as_bytes()).expect("decodes").remove(0).resource;
        if let Some(s) = status_su {
            r.set_status_json(serde_json::json!({"serverUnit": s})).expect("status");
        }
        r
    }

    /// What the index must answer: the scan it replaces.
    fn scanned(c: &Cache, sus: &[&str]) -> BTreeSet<String> {
        c.typed::<crate::api::VMDefinitionSpec>()
            .filter(|v| {
                sus.contains(&v.spec.server_unit.as_str())
                    || v.status.server_unit.as_deref().is_some_and(|x| sus.contains(&x))
            })
            .map(|v| v.name().to_string())
            .collect()
    }

    #[test]
    fn vms_by_su_follows_puts_moves_removes_and_relists() {
        let mut c = Cache::default();
        c.put(vm("a", "SU1", None));
        c.put(vm("b", "SU2", Some("SU1")));
        c.put(vm("c", "SU2", None));
        let check = |c: &Cache| {
            for sus in [&["SU1"][..], &["SU2"], &["SU3"], &["SU1", "SU2"], &["SU2", "SU3"]] {
                assert_eq!(c.vms_on_sus(sus.iter().copied()), scanned(c, sus), "{sus:?}");
            }
        };
        check(&c);
        assert_eq!(c.vms_on_sus(["SU1"]), ["a", "b"].iter().map(|s| s.to_string()).collect());
        // b's status follows its spec to SU2: it leaves SU1.
        c.put(vm("b", "SU2", Some("SU2")));
        check(&c);
        assert_eq!(c.vms_on_sus(["SU1"]), ["a"].iter().map(|s| s.to_string()).collect());
        // a moves to SU3 in its spec while its status still says SU1.
        c.put(vm("a", "SU3", Some("SU1")));
        check(&c);
        c.remove(Kind::VMDefinition, "a");
        check(&c);
        assert!(c.vms_on_sus(["SU1", "SU3"]).is_empty());
        c.replace(Kind::VMDefinition, vec![vm("d", "SU1", None), vm("c", "SU3", None)]);
        check(&c);
        assert_eq!(c.vms_on_sus(["SU2"]), BTreeSet::new());
        assert_eq!(c.vms_on_sus(["SU3", "SU1"]), ["c", "d"].iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn refresh_version_only_for_the_same_content() {
        let mut c = Cache::default();
        let mut a = vm("a", "SU1", Some("SU1"));
        a.meta_mut().resource_version = Some("5".into());
        c.put(a.clone());
        let mut stored = a.clone();
        stored.meta_mut().resource_version = Some("9".into());
        assert!(c.refresh_version(&stored));
        assert_eq!(c.get(Kind::VMDefinition, "a"), Some(&stored));
        // Other content (a status, a spec): refused, the cached object unchanged.
        let mut other = vm("a", "SU2", Some("SU1"));
        other.meta_mut().resource_version = Some("10".into());
        assert!(!c.refresh_version(&other));
        assert_eq!(c.get(Kind::VMDefinition, "a"), Some(&stored));
        let mut moved = vm("a", "SU1", Some("SU2"));
        moved.meta_mut().resource_version = Some("11".into());
        assert!(!c.refresh_version(&moved));
        assert_eq!(c.get(Kind::VMDefinition, "a"), Some(&stored));
        assert!(!c.refresh_version(&vm("b", "SU1", None)));
        assert_eq!(c.vms_on_sus(["SU1"]), ["a"].iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.fail(&k("a")), 1000);
        assert_eq!(b.fail(&k("a")), 2000);
        assert_eq!(b.fail(&k("a")), 4000);
        b.succeed(&k("a"));
        assert_eq!(b.fail(&k("a")), 1000);
        for _ in 0..30 {
            b.fail(&k("x"));
        }
        assert_eq!(b.fail(&k("x")), 300_000);
    }
}
