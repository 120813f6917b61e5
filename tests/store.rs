//! Semantics of the object store (`SledStore` through the `Store` trait): metadata the
//! store sets, the global resourceVersion counter, optimistic concurrency, generation,
//! the status path, apply (atomic, dry run), delete, list, watch, history expiry,
//! durability across reopen and kill -9, events, and the data folder itself.

mod common;

use common::{all, one, vm};
use sectl::api::{Kind, Resource};
use sectl::store::{ApplyOutcome, Event, EventType, SledStore, Store, StoreError, WatchEvent, WatchType};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn rv(r: &Resource) -> u64 {
    r.meta().resource_version.as_deref().expect("resourceVersion set").parse().expect("resourceVersion is a number")
}

fn generation(r: &Resource) -> u64 {
    r.meta().generation.expect("generation set")
}

fn server(name: &str, unit: &str) -> Resource {
    one(&format!(
        "apiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: {name}}}\nspec:\n  model: SE700\n  version: V6.3\n  managementUnits: [{{name: mu-{name}}}]\n  serverUnits:\n    - {{name: {unit}, type: \"390\", cpus: 4, memoryMiB: 8192}}\n"
    ))
}

fn su_cluster(name: &str) -> Resource {
    one(&format!(
        "apiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {{name: {name}}}\nspec: {{serverUnits: [SU1, SU2]}}\n"
    ))
}

fn with_labels(mut r: Resource, labels: &[(&str, &str)]) -> Resource {
    r.meta_mut().labels.0 = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    r
}

fn with_status(mut r: Resource, status: serde_json::Value) -> Resource {
    r.set_status_json(status).expect("valid status");
    r
}

fn with_rv(mut r: Resource, rv: u64) -> Resource {
    r.meta_mut().resource_version = Some(rv.to_string());
    r
}

fn event(reason: &str) -> Event {
    Event {
        seq: 0,
        time: "2025-01-01T00:00:00Z".into(),
        type_: EventType::Normal,
        priority: "INFO".into(),
        component: "Cluster".into(),
        object: "VMDefinition/a".into(),
        reason: reason.into(),
        message: format!("{reason} happened"),
        acknowledged: false,
    }
}

#[test]
fn create_sets_uid_rv_generation_timestamp_and_empty_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.resource_version(), 0);
    let input = with_status(vm("a", 1024), serde_json::json!({"state": "RUNNING", "liveMigrationCount": 7}));
    let created = s.create(input.clone()).unwrap();
    let m = created.meta();
    let uid = m.uid.as_deref().expect("uid set");
    assert!(uuid_like(uid), "uid {uid:?} is not a UUID");
    assert_eq!(rv(&created), 1);
    assert_eq!(generation(&created), 1);
    let ts = m.creation_timestamp.as_deref().expect("creationTimestamp set");
    let t = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("creationTimestamp {ts:?}: {e}"));
    let age = std::time::SystemTime::now().duration_since(t).unwrap_or_default();
    assert!(age < Duration::from_secs(300), "creationTimestamp {ts} is not now");
    assert!(created.status_eq(&vm("a", 1)), "create must start with an empty status: {}", created.status_json());
    assert!(created.spec_eq(&input));
    // What get returns is what create returned.
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(created.clone()));
    assert_eq!(s.resource_version(), 1);

    // Two objects get different uids.
    let b = s.create(vm("b", 1024)).unwrap();
    assert_ne!(b.meta().uid, created.meta().uid);

    // Create of an existing object fails and changes nothing.
    let err = s.create(vm("a", 4096)).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { kind: Kind::VMDefinition, ref name } if name == "a"), "{err:?}");
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(created));
    assert_eq!(s.resource_version(), 2);
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn resource_version_is_one_global_counter_across_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut seen = Vec::new();
    seen.push(rv(&s.create(server("se1", "SU1")).unwrap()));
    seen.push(rv(&s.create(vm("a", 1024)).unwrap()));
    seen.push(rv(&s.create(su_cluster("suc")).unwrap()));
    seen.push(rv(&s.create(server("se2", "SU2")).unwrap()));
    seen.push(rv(&s.update(vm("a", 2048)).unwrap()));
    seen.push(rv(&s.update_status(with_status(vm("a", 1), serde_json::json!({"state": "RUNNING"}))).unwrap()));
    seen.push(rv(&s.delete(Kind::SUCluster, "suc").unwrap()));
    let applied = s.apply(vec![vm("b", 1), server("se3", "SU3"), vm("a", 4096)], false).unwrap();
    seen.extend(applied.iter().map(|(_, r)| rv(r)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "resourceVersions not strictly increasing: {seen:?}");
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>(), "one counter, no gaps, for every write");
    assert_eq!(s.resource_version(), *seen.last().unwrap());
    // Every list reports a resourceVersion at least as new as its items.
    for k in Kind::ALL {
        let (items, list_rv) = s.list(*k).unwrap();
        assert!(items.iter().all(|r| rv(r) <= list_rv));
        assert_eq!(list_rv, s.resource_version());
    }
}

#[test]
fn subscribe_sees_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut rx = s.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    s.create(vm("a", 1)).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 1);
    s.update(vm("a", 2)).unwrap();
    assert_eq!(*rx.borrow_and_update(), 2);
}

#[test]
fn stale_resource_version_is_a_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let first = s.create(vm("a", 1024)).unwrap();
    let second = s.update(vm("a", 2048)).unwrap();
    assert_eq!(rv(&second), 2);

    // An update based on the first read.
    let stale = with_rv(vm("a", 4096), rv(&first));
    let err = s.update(stale).unwrap_err();
    match &err {
        StoreError::Conflict { kind, name, expected, actual } => {
            assert_eq!((*kind, name.as_str(), *expected, *actual), (Kind::VMDefinition, "a", 1, 2));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("conflict"), "{err}");
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(second.clone()));
    assert_eq!(s.resource_version(), 2);

    // The status path checks it too.
    let stale = with_status(with_rv(vm("a", 1), 1), serde_json::json!({"state": "DOWN"}));
    assert!(matches!(s.update_status(stale).unwrap_err(), StoreError::Conflict { .. }));
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(second.clone()));

    // A resourceVersion from the future is just as wrong.
    assert!(matches!(s.update(with_rv(vm("a", 8), 99)).unwrap_err(), StoreError::Conflict { .. }));

    // The current one works.
    let third = s.update(with_rv(vm("a", 4096), 2)).unwrap();
    assert_eq!((rv(&third), generation(&third)), (3, 3));
}

#[test]
fn update_without_resource_version_is_unconditional() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1024)).unwrap();
    s.update(vm("a", 2048)).unwrap();
    let r = vm("a", 3072);
    assert!(r.meta().resource_version.is_none());
    let u = s.update(r).unwrap();
    assert_eq!((rv(&u), generation(&u)), (3, 3));
    assert!(u.spec_eq(&vm("a", 3072)));
    // Update of something that does not exist.
    assert!(matches!(s.update(vm("nope", 1)).unwrap_err(), StoreError::NotFound { .. }));
    assert!(matches!(s.update_status(vm("nope", 1)).unwrap_err(), StoreError::NotFound { .. }));
    assert_eq!(s.resource_version(), 3);
}

#[test]
fn generation_moves_only_with_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let c = s.create(vm("a", 1024)).unwrap();
    let uid = c.meta().uid.clone();
    let ts = c.meta().creation_timestamp.clone();

    // Labels only: new rv, same generation.
    let l = s.update(with_labels(vm("a", 1024), &[("app", "prod")])).unwrap();
    assert_eq!((rv(&l), generation(&l)), (2, 1));
    assert_eq!(l.meta().labels.0.get("app").map(String::as_str), Some("prod"));

    // Annotations only: new rv, same generation.
    let mut ann = with_labels(vm("a", 1024), &[("app", "prod")]);
    ann.meta_mut().annotations.0.insert("note".into(), "hello".into());
    let a = s.update(ann.clone()).unwrap();
    assert_eq!((rv(&a), generation(&a)), (3, 1));

    // Identical: nothing written at all.
    let same = s.update(ann.clone()).unwrap();
    assert_eq!((rv(&same), generation(&same)), (3, 1));
    assert_eq!(s.resource_version(), 3);
    assert_eq!(s.watch_from(3).unwrap(), vec![]);

    // Spec: new rv and new generation; uid and creation time stay.
    let mut spec = vm("a", 2048);
    spec.meta_mut().labels = ann.meta().labels.clone();
    spec.meta_mut().annotations = ann.meta().annotations.clone();
    let g = s.update(spec).unwrap();
    assert_eq!((rv(&g), generation(&g)), (4, 2));
    assert_eq!(g.meta().uid, uid);
    assert_eq!(g.meta().creation_timestamp, ts);

    // Fields the store owns are not taken from the caller.
    let mut forged = g.clone();
    forged.meta_mut().uid = Some("forged".into());
    forged.meta_mut().generation = Some(77);
    forged.meta_mut().creation_timestamp = Some("1999-01-01T00:00:00Z".into());
    let f = s.update(forged).unwrap();
    assert_eq!(f, g, "uid/generation/creationTimestamp from the caller must be ignored");

    // Status writes never move the generation.
    let st = s.update_status(with_status(vm("a", 1), serde_json::json!({"state": "RUNNING"}))).unwrap();
    assert_eq!((rv(&st), generation(&st)), (5, 2));
}

#[test]
fn status_and_spec_paths_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1024)).unwrap();
    let status = serde_json::json!({"state": "RUNNING", "serverUnit": "ABGSE501", "liveMigrationCount": 2});

    // update_status with a different spec in hand: spec untouched, status written.
    let st = s.update_status(with_status(with_labels(vm("a", 9999), &[("x", "y")]), status.clone())).unwrap();
    assert!(st.spec_eq(&vm("a", 1024)), "update_status changed the spec");
    assert!(st.meta().labels.is_empty(), "update_status changed the labels");
    assert_eq!(generation(&st), 1);
    assert_eq!(st.status_json(), with_status(vm("a", 1), status.clone()).status_json());
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(st.clone()));

    // The same status again: no write, no new rv.
    let again = s.update_status(with_status(vm("a", 9999), status.clone())).unwrap();
    assert_eq!(rv(&again), rv(&st));
    assert_eq!(s.resource_version(), rv(&st));

    // update with an empty (or different) status in hand: status untouched.
    let up = s.update(with_status(vm("a", 2048), serde_json::json!({"state": "DOWN"}))).unwrap();
    assert_eq!(up.status_json(), st.status_json(), "update changed the status");
    assert!(up.spec_eq(&vm("a", 2048)));
    let up2 = s.update(vm("a", 4096)).unwrap();
    assert_eq!(up2.status_json(), st.status_json(), "update with an empty status cleared the status");

    // apply never touches the status either.
    let applied = s.apply(vec![vm("a", 8192)], false).unwrap();
    assert_eq!(applied[0].0, ApplyOutcome::Configured);
    assert_eq!(applied[0].1.status_json(), st.status_json(), "apply changed the status");
    let stored = s.get(Kind::VMDefinition, "a").unwrap().unwrap();
    assert_eq!(stored.status_json(), st.status_json());
}

#[test]
fn apply_creates_configures_and_leaves_unchanged_objects_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let site = all(common::SITE);
    let n = site.len() as u64;
    let first = s.apply(site.clone(), false).unwrap();
    assert!(first.iter().all(|(o, _)| *o == ApplyOutcome::Created), "{first:?}");
    assert_eq!(first.iter().map(|(_, r)| rv(r)).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    assert!(first.iter().all(|(_, r)| generation(r) == 1));
    assert_eq!(s.resource_version(), n);

    let second = s.apply(site.clone(), false).unwrap();
    assert!(second.iter().all(|(o, _)| *o == ApplyOutcome::Unchanged), "{second:?}");
    for ((_, a), (_, b)) in first.iter().zip(&second) {
        assert_eq!(a, b, "an unchanged apply must return the stored object as it was");
    }
    assert_eq!(s.resource_version(), n, "an unchanged apply must not write");
    assert_eq!(s.watch_from(n).unwrap(), vec![]);

    // One object changed: only it is configured, gets one new rv and generation 2.
    let mut changed = site.clone();
    let i = changed.iter().position(|r| r.kind() == Kind::VMDefinition).unwrap();
    let mut text = sectl::manifest::to_yaml(&changed[i]);
    text = text.replace("memoryMiB: 2048", "memoryMiB: 4096");
    changed[i] = one(&text);
    let third = s.apply(changed, false).unwrap();
    for (j, (o, r)) in third.iter().enumerate() {
        if j == i {
            assert_eq!(*o, ApplyOutcome::Configured);
            assert_eq!((rv(r), generation(r)), (n + 1, 2));
        } else {
            assert_eq!(*o, ApplyOutcome::Unchanged);
            assert_eq!(r, &first[j].1);
        }
    }
    assert_eq!(s.resource_version(), n + 1);

    // A label-only change is "configured" but keeps the generation.
    let relabeled = with_labels(third[i].1.clone(), &[("app", "test")]);
    let fourth = s.apply(vec![relabeled], false).unwrap();
    assert_eq!(fourth[0].0, ApplyOutcome::Configured);
    assert_eq!((rv(&fourth[0].1), generation(&fourth[0].1)), (n + 2, 2));

    // Giving the same object twice in one apply is refused and writes nothing.
    let err = s.apply(vec![vm("x", 1), vm("x", 2)], false).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(s.get(Kind::VMDefinition, "x").unwrap(), None);
    assert_eq!(s.resource_version(), n + 2);
    // ... and the counter was not advanced by the refused apply.
    assert_eq!(rv(&s.create(vm("y", 1)).unwrap()), n + 3);
}

#[test]
fn apply_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1024)).unwrap();
    s.create(vm("b", 1024)).unwrap();
    let before: Vec<Resource> = s.list(Kind::VMDefinition).unwrap().0;
    let out = s.apply(vec![vm("a", 1024), vm("b", 2048), vm("c", 1)], true).unwrap();
    let outcomes: Vec<ApplyOutcome> = out.iter().map(|(o, _)| *o).collect();
    assert_eq!(outcomes, [ApplyOutcome::Unchanged, ApplyOutcome::Configured, ApplyOutcome::Created]);
    assert!(out[1].1.spec_eq(&vm("b", 2048)), "dry run shows the result");
    assert_eq!(s.list(Kind::VMDefinition).unwrap().0, before);
    assert_eq!(s.get(Kind::VMDefinition, "c").unwrap(), None);
    assert_eq!(s.resource_version(), 2);
    assert_eq!(s.watch_from(2).unwrap(), vec![]);
    // The counter did not move: the next real write gets rv 3.
    assert_eq!(rv(&s.create(vm("d", 1)).unwrap()), 3);
    // And it stays so across reopen.
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.get(Kind::VMDefinition, "c").unwrap(), None);
    assert_eq!(s.resource_version(), 3);
}

#[test]
fn apply_is_all_or_nothing_on_a_stale_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1024)).unwrap();
    s.create(vm("b", 1024)).unwrap();
    s.update(vm("b", 2048)).unwrap(); // b is at rv 3 now
    let before: BTreeMap<Kind, Vec<Resource>> = Kind::ALL.iter().map(|k| (*k, s.list(*k).unwrap().0)).collect();
    let objs = vec![
        vm("new1", 1),             // would be created
        vm("a", 4096),             // would be configured
        server("se9", "SU9"),      // another kind, would be created
        with_rv(vm("b", 8192), 2), // stale
        vm("new2", 1),             // after the stale one
    ];
    let err = s.apply(objs, false).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { ref name, expected: 2, actual: 3, .. } if name == "b"), "{err:?}");
    let after: BTreeMap<Kind, Vec<Resource>> = Kind::ALL.iter().map(|k| (*k, s.list(*k).unwrap().0)).collect();
    assert_eq!(after, before, "a failed apply changed the store");
    assert_eq!(s.resource_version(), 3);
    assert_eq!(s.watch_from(3).unwrap(), vec![]);
    // The next write continues from 3: nothing was half-counted.
    assert_eq!(rv(&s.create(vm("c", 1)).unwrap()), 4);
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.get(Kind::VMDefinition, "new1").unwrap(), None);
    assert_eq!(s.get(Kind::SEServer, "se9").unwrap(), None);
    assert_eq!(s.resource_version(), 4);
}

#[test]
fn delete_returns_the_last_state_and_removes_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1024)).unwrap();
    let st = s.update_status(with_status(vm("a", 1), serde_json::json!({"state": "RUNNING"}))).unwrap();
    let gone = s.delete(Kind::VMDefinition, "a").unwrap();
    assert_eq!(rv(&gone), 3, "the deletion has its own resourceVersion");
    assert_eq!(gone.status_json(), st.status_json());
    assert!(gone.spec_eq(&st));
    assert_eq!(gone.meta().uid, st.meta().uid);
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), None);
    assert!(s.list(Kind::VMDefinition).unwrap().0.is_empty());
    let err = s.delete(Kind::VMDefinition, "a").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { kind: Kind::VMDefinition, ref name } if name == "a"), "{err:?}");
    assert_eq!(s.resource_version(), 3);
    // Same name, other kind: untouched by the deletion.
    s.create(vm("x", 1)).unwrap();
    s.create(server("x", "SU1")).unwrap();
    s.delete(Kind::SEServer, "x").unwrap();
    assert!(s.get(Kind::VMDefinition, "x").unwrap().is_some());
    // Re-created after deletion: a new object (new uid, generation 1).
    let again = s.create(vm("a", 1024)).unwrap();
    assert_ne!(again.meta().uid, st.meta().uid);
    assert_eq!(generation(&again), 1);
}

#[test]
fn list_is_sorted_by_name_and_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let names = ["m", "a-1", "zz", "a1", "b", "a", "a-0", "vm10", "vm9", "0x", "z-z"];
    for n in names {
        s.create(vm(n, 1)).unwrap();
    }
    s.create(server("a", "SU1")).unwrap();
    s.create(su_cluster("b")).unwrap();
    let (items, list_rv) = s.list(Kind::VMDefinition).unwrap();
    let got: Vec<&str> = items.iter().map(|r| r.name()).collect();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert!(items.iter().all(|r| r.kind() == Kind::VMDefinition));
    assert_eq!(list_rv, s.resource_version());
    assert_eq!(s.list(Kind::SEServer).unwrap().0.len(), 1);
    assert_eq!(s.list(Kind::SUCluster).unwrap().0.len(), 1);
    assert!(s.list(Kind::VMRecovery).unwrap().0.is_empty());
    assert!(s.list(Kind::LiveMigration).unwrap().0.is_empty());
}

/// One write in the reference model: its rv, type, and the object's state after it
/// (the last state for a deletion).
struct Logged {
    rv: u64,
    t: WatchType,
    obj: Resource,
}

/// What `watch_from(from)` must return, computed from the log: deletions are always
/// reported; otherwise each object is reported once, at its newest change, with its
/// current state, as ADDED when it was created after `from` (and not deleted since),
/// else as MODIFIED. Changes made before a later deletion are only visible through
/// that deletion.
fn expected_watch(log: &[Logged], from: u64) -> Vec<(WatchType, u64, Resource)> {
    let window: Vec<&Logged> = log.iter().filter(|l| l.rv > from).collect();
    let mut out = Vec::new();
    for (i, l) in window.iter().enumerate() {
        let key = (l.obj.kind(), l.obj.name().to_string());
        let same = |x: &&&Logged| (x.obj.kind(), x.obj.name().to_string()) == key;
        if l.t == WatchType::Deleted {
            out.push((WatchType::Deleted, l.rv, l.obj.clone()));
            continue;
        }
        // Reported only when this is the key's last change in the window.
        if window[i + 1..].iter().any(|x| same(&x)) {
            continue;
        }
        // Added when the run of changes since the last deletion (or the window start)
        // contains the creation.
        let run_start = window[..i].iter().rposition(|x| same(&x) && x.t == WatchType::Deleted).map_or(0, |p| p + 1);
        let added = window[run_start..=i].iter().any(|x| same(&x) && x.t == WatchType::Added);
        out.push((if added { WatchType::Added } else { WatchType::Modified }, l.rv, l.obj.clone()));
    }
    out
}

fn simplify(evs: Vec<WatchEvent>) -> Vec<(WatchType, u64, Resource)> {
    evs.into_iter().map(|e| (e.type_, e.rv, e.object)).collect()
}

/// A small deterministic PRNG (xorshift), so the sequence is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn watch_reports_changes_in_order_and_resumes_from_any_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());

    // A hand-written sequence first, checked event by event.
    let a = s.create(vm("a", 1)).unwrap(); // 1
    s.create(server("b", "SU1")).unwrap(); // 2
    let a2 = s.update(vm("a", 2)).unwrap(); // 3
    let unit = serde_json::json!({"units": [{"name": "SU1", "unitType": "SU", "power": "ON", "state": "RUNNING"}]});
    let b2 = s.update_status(with_status(server("b", "SU1"), unit)).unwrap(); // 4
    let c = s.create(vm("c", 1)).unwrap(); // 5
    let a_gone = s.delete(Kind::VMDefinition, "a").unwrap(); // 6
    assert_eq!((rv(&a), rv(&a2), rv(&b2), rv(&c), rv(&a_gone)), (1, 3, 4, 5, 6));
    let names =
        |evs: &[WatchEvent]| evs.iter().map(|e| (e.type_, e.object.name().to_string(), e.rv)).collect::<Vec<_>>();
    let s_ = |x: &str| x.to_string();
    // From 0: b was created and changed since, so it comes once, as ADDED with its newest
    // state; a was created, changed and deleted: only its deletion is left to report.
    assert_eq!(
        names(&s.watch_from(0).unwrap()),
        vec![(WatchType::Added, s_("b"), 4), (WatchType::Added, s_("c"), 5), (WatchType::Deleted, s_("a"), 6)],
        "watch from 0"
    );
    assert_eq!(
        names(&s.watch_from(1).unwrap()),
        vec![(WatchType::Added, s_("b"), 4), (WatchType::Added, s_("c"), 5), (WatchType::Deleted, s_("a"), 6)],
        "watch from 1"
    );
    // From 3 the watcher has seen b already: its status change is MODIFIED.
    let from3 = s.watch_from(3).unwrap();
    assert_eq!(
        names(&from3),
        vec![(WatchType::Modified, s_("b"), 4), (WatchType::Added, s_("c"), 5), (WatchType::Deleted, s_("a"), 6)],
        "watch from 3"
    );
    assert_eq!(from3[0].object, b2);
    assert_eq!(from3[1].object, c);
    assert_eq!(from3[2].object, a_gone, "DELETED carries the last state");
    assert_eq!(names(&s.watch_from(5).unwrap()), vec![(WatchType::Deleted, s_("a"), 6)]);
    assert_eq!(s.watch_from(6).unwrap(), vec![], "nothing after the newest rv");

    // Then a long pseudo-random sequence against the reference model, from every rv.
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut log: Vec<Logged> = Vec::new();
    let mut rng = Rng(0x5EC7_1234_ABCD_0001);
    let names = ["a", "b", "c", "d", "e"];
    for step in 0..300u64 {
        let name = names[rng.below(names.len() as u64) as usize];
        let kind_is_vm = rng.below(4) != 0;
        let kind = if kind_is_vm { Kind::VMDefinition } else { Kind::SUCluster };
        let exists = s.get(kind, name).unwrap();
        let field = if kind_is_vm { "substates" } else { "reasons" };
        let make = |mem: u64| if kind_is_vm { vm(name, mem) } else { su_cluster(name) };
        let before = s.resource_version();
        let (t, obj) = match (exists, rng.below(5)) {
            (None, _) => (WatchType::Added, s.create(make(1 + step)).unwrap()),
            (Some(_), 0) => (WatchType::Deleted, s.delete(kind, name).unwrap()),
            (Some(_), 1) => (
                WatchType::Modified,
                s.update_status(with_status(make(1), serde_json::json!({field: [format!("step {step}")]}))).unwrap(),
            ),
            (Some(_), 2) => {
                (WatchType::Modified, s.update(with_labels(make(1), &[("step", &step.to_string())])).unwrap())
            }
            (Some(cur), _) => {
                if kind_is_vm {
                    (WatchType::Modified, s.apply(vec![vm(name, 1 + step)], false).unwrap().remove(0).1)
                } else {
                    let mut r = cur.clone();
                    r.meta_mut().annotations.0.insert("step".into(), step.to_string());
                    (WatchType::Modified, s.update(r).unwrap())
                }
            }
        };
        if s.resource_version() == before {
            continue; // nothing written (e.g. an identical status)
        }
        assert_eq!(s.resource_version(), before + 1);
        assert_eq!(rv(&obj), before + 1);
        log.push(Logged { rv: before + 1, t, obj });
    }
    let newest = s.resource_version();
    assert!(newest > 200, "the sequence should write most steps, wrote {newest}");
    for from in 0..=newest {
        let got = simplify(s.watch_from(from).unwrap());
        let want = expected_watch(&log, from);
        assert_eq!(got, want, "watch_from({from})");
        // Oldest first, all after `from`.
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1));
        assert!(got.iter().all(|e| e.1 > from && e.1 <= newest));
    }

    // The property watchers rely on: a list at rv R plus watch_from(R) is the current state.
    for from in (0..=newest).step_by(7) {
        let mut state: BTreeMap<(Kind, String), Resource> = BTreeMap::new();
        for l in log.iter().filter(|l| l.rv <= from) {
            let key = (l.obj.kind(), l.obj.name().to_string());
            if l.t == WatchType::Deleted {
                state.remove(&key);
            } else {
                state.insert(key, l.obj.clone());
            }
        }
        for e in s.watch_from(from).unwrap() {
            let key = (e.object.kind(), e.object.name().to_string());
            match e.type_ {
                WatchType::Deleted => {
                    state.remove(&key);
                }
                WatchType::Added => {
                    state.insert(key, e.object);
                }
                WatchType::Modified => {
                    assert!(state.contains_key(&key), "MODIFIED for {key:?} that the watcher never saw (from {from})");
                    state.insert(key, e.object);
                }
            }
        }
        let mut now: BTreeMap<(Kind, String), Resource> = BTreeMap::new();
        for k in [Kind::VMDefinition, Kind::SUCluster] {
            for r in s.list(k).unwrap().0 {
                now.insert((k, r.name().to_string()), r);
            }
        }
        assert_eq!(state, now, "list at {from} + watch_from({from}) != current state");
    }
}

#[test]
fn watch_history_expires() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_history(dir.path(), 5).unwrap();
    for i in 0..20 {
        s.create(vm(&format!("v{i}"), 1)).unwrap();
    }
    assert_eq!(s.resource_version(), 20);
    for old in [0, 1, 10, 14] {
        match s.watch_from(old) {
            Err(StoreError::Expired { requested, oldest }) => {
                assert_eq!(requested, old);
                assert_eq!(oldest, 15);
            }
            other => panic!("watch_from({old}) with a history of 5 at rv 20: expected Expired, got {other:?}"),
        }
    }
    let msg = s.watch_from(0).unwrap_err().to_string();
    assert!(msg.contains("expired") && msg.contains("list again"), "{msg}");
    for from in 15..=20u64 {
        let evs = s.watch_from(from).unwrap();
        let rvs: Vec<u64> = evs.iter().map(|e| e.rv).collect();
        assert_eq!(rvs, ((from + 1)..=20).collect::<Vec<_>>(), "watch_from({from})");
        assert!(evs.iter().all(|e| e.type_ == WatchType::Added));
    }
    // One big apply in a single batch trims the history just the same.
    let objs: Vec<Resource> = (0..12).map(|i| vm(&format!("w{i}"), 1)).collect();
    s.apply(objs, false).unwrap();
    assert_eq!(s.resource_version(), 32);
    assert!(matches!(s.watch_from(26), Err(StoreError::Expired { oldest: 27, .. })));
    assert_eq!(s.watch_from(27).unwrap().len(), 5);
    // After reopen, with the same history length, the same holds.
    drop(s);
    let s = SledStore::open_with_history(dir.path(), 5).unwrap();
    assert!(matches!(s.watch_from(26), Err(StoreError::Expired { .. })));
    assert_eq!(s.watch_from(27).unwrap().len(), 5);
}

#[test]
fn reopen_keeps_objects_counters_events_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, events) = {
        let s = open(dir.path());
        s.apply(all(common::SITE), false).unwrap();
        s.update_status(with_status(vm("vm12prod", 1), serde_json::json!({"state": "RUNNING"}))).unwrap();
        s.delete(Kind::ManagementCluster, "mc").unwrap();
        s.record_event(event("One")).unwrap();
        s.record_event(event("Two")).unwrap();
        s.put_blob("world", b"\x00binary\xffblob").unwrap();
        let snap: BTreeMap<Kind, Vec<Resource>> = Kind::ALL.iter().map(|k| (*k, s.list(*k).unwrap().0)).collect();
        (snap, s.events().unwrap())
    };
    let s = open(dir.path());
    let again: BTreeMap<Kind, Vec<Resource>> = Kind::ALL.iter().map(|k| (*k, s.list(*k).unwrap().0)).collect();
    assert_eq!(again, snapshot);
    assert_eq!(s.resource_version(), 7);
    assert_eq!(s.events().unwrap(), events);
    assert_eq!(s.get_blob("world").unwrap().as_deref(), Some(&b"\x00binary\xffblob"[..]));
    assert_eq!(s.get_blob("nothing").unwrap(), None);
    // Counters continue.
    assert_eq!(rv(&s.create(vm("next", 1)).unwrap()), 8);
    assert_eq!(s.record_event(event("Three")).unwrap().seq, 3);
    // The watch history survived too.
    let evs = s.watch_from(5).unwrap();
    assert_eq!(
        evs.iter().map(|e| (e.type_, e.object.name(), e.rv)).collect::<Vec<_>>(),
        vec![(WatchType::Modified, "vm12prod", 6), (WatchType::Deleted, "mc", 7), (WatchType::Added, "next", 8)]
    );
    let _ = s.subscribe();
}

#[test]
fn events_are_numbered_and_acknowledged_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert!(s.events().unwrap().is_empty());
    assert_eq!(s.ack_events().unwrap(), 0);
    let e1 = s.record_event(event("First")).unwrap();
    let mut warn = event("Second");
    warn.type_ = EventType::Warning;
    warn.seq = 999; // ignored: the store assigns seq
    warn.acknowledged = false;
    let e2 = s.record_event(warn).unwrap();
    let e3 = s.record_event(event("Third")).unwrap();
    assert_eq!((e1.seq, e2.seq, e3.seq), (1, 2, 3));
    let evs = s.events().unwrap();
    assert_eq!(evs.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(), ["First", "Second", "Third"]);
    assert_eq!(evs[1].type_, EventType::Warning);
    assert!(evs.iter().all(|e| !e.acknowledged));

    assert_eq!(s.ack_events().unwrap(), 3);
    assert!(s.events().unwrap().iter().all(|e| e.acknowledged));
    assert_eq!(s.ack_events().unwrap(), 0, "acknowledging twice acknowledges nothing new");

    let e4 = s.record_event(event("Fourth")).unwrap();
    assert_eq!(e4.seq, 4);
    let evs = s.events().unwrap();
    assert_eq!(evs.iter().map(|e| e.acknowledged).collect::<Vec<_>>(), [true, true, true, false]);
    assert_eq!(s.ack_events().unwrap(), 1);

    // Events are not objects: they do not move the resourceVersion.
    assert_eq!(s.resource_version(), 0);
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.events().unwrap().len(), 4);
    assert!(s.events().unwrap().iter().all(|e| e.acknowledged));
    assert_eq!(s.record_event(event("Fifth")).unwrap().seq, 5);
}

#[cfg(unix)]
#[test]
fn data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    // A folder that does not exist yet.
    let fresh = parent.path().join("a/b/store");
    drop(open(&fresh));
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "new data dir has mode {mode:o}");
    // A folder that exists keeps its mode (it may be shared on purpose); the store's
    // own folder inside it is private.
    let wide = parent.path().join("wide");
    std::fs::create_dir(&wide).unwrap();
    std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(&wide));
    let mode = std::fs::metadata(&wide).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "existing data dir has mode {mode:o}");
    let mode = std::fs::metadata(wide.join("db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the store's folder in a shared data dir has mode {mode:o}");
    // The CLI gives the same result.
    let cli_dir = parent.path().join("cli");
    let out = common::sectl().arg("--data-dir").arg(&cli_dir).args(["get", "vm", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::fs::metadata(&cli_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data dir made by the CLI has mode {mode:o}");
}

#[test]
fn second_open_of_a_store_in_use_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1)).unwrap();

    // In this process.
    let started = Instant::now();
    let err = match SledStore::open(dir.path()) {
        Ok(_) => panic!("a second open of a store in use succeeded"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(5), "the second open waited instead of failing");
    let msg = err.to_string();
    assert!(msg.contains("in use by another sectl process"), "unclear message: {msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "message does not name the folder: {msg}");

    // From another process: the CLI exits 1 and says why.
    let out = common::sectl()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["get", "vm", "-o", "json"])
        .env_remove("SECTL_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another sectl process"), "unclear message: {stderr}");

    // The first handle still works, and after it is closed the store opens again.
    s.create(vm("b", 1)).unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.list(Kind::VMDefinition).unwrap().0.len(), 2);
}

/// 3000 VM definitions in one multi-document file.
fn big_manifest(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata:\n  name: vm{i:04}\n  labels: {{batch: big}}\nspec:\n  vmName: V{i:04}\n  serverUnit: ABGSE501\n  memoryMiB: {}\n  devices: [{{mn: \"4683\", usage: shared}}]\n",
            1024 + i
        ));
    }
    out
}

/// Opens the store after a kill and checks it holds none or all of the big apply.
fn check_after_kill(dir: &Path, n: usize, what: &str) -> usize {
    let s = SledStore::open(dir).unwrap_or_else(|e| panic!("{what}: the store does not open after kill -9: {e}"));
    let (vms, list_rv) =
        s.list(Kind::VMDefinition).unwrap_or_else(|e| panic!("{what}: an object does not decode after kill -9: {e}"));
    assert!(
        vms.is_empty() || vms.len() == n,
        "{what}: {} of {n} VMDefinitions after kill -9 (apply is one batch)",
        vms.len()
    );
    for k in Kind::ALL {
        s.list(*k).unwrap_or_else(|e| panic!("{what}: listing {k} after kill -9: {e}"));
    }
    if vms.len() == n {
        // The counter and the history moved with the objects. After a kill the
        // counter restarts past its durable reservation (versions the lost part of a
        // run may have handed out are never handed out again).
        assert!(s.resource_version() >= n as u64, "{what}");
        assert!(list_rv >= n as u64, "{what}");
        let evs = s.watch_from(0).unwrap_or_else(|e| panic!("{what}: watch after kill -9: {e}"));
        assert_eq!(evs.len(), n, "{what}");
        assert_eq!(evs.last().map(|e| e.rv), Some(n as u64), "{what}");
        for (i, r) in vms.iter().enumerate() {
            assert_eq!(r.name(), format!("vm{i:04}"), "{what}");
            assert!(r.meta().uid.is_some() && r.meta().generation == Some(1), "{what}");
        }
    } else {
        assert!(s.watch_from(0).unwrap().is_empty(), "{what}: history without objects");
    }
    // The store takes writes afterwards.
    s.create(vm("after-kill", 1)).unwrap_or_else(|e| panic!("{what}: write after kill -9: {e}"));
    vms.len()
}

#[cfg(unix)]
#[test]
fn kill_9_during_apply_leaves_all_or_nothing() {
    const N: usize = 3000;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("big.yaml");
    std::fs::write(&file, big_manifest(N)).unwrap();
    let run = |dir: &Path| {
        common::sectl()
            .arg("--no-reconcile")
            .args(["apply", "-f"])
            .arg(&file)
            .arg("--data-dir")
            .arg(dir)
            .env_remove("SECTL_SERVER")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sectl")
    };

    // The CLI decodes everything first and opens the store (creating the data dir) only
    // then; the write is one batch and a flush after that. Waits for the data dir to
    // appear, or for the child to end.
    let wait_for_store = |dir: &Path, child: &mut std::process::Child| {
        let limit = Instant::now() + Duration::from_secs(60);
        while !dir.exists() && child.try_wait().unwrap().is_none() && Instant::now() < limit {
            std::thread::sleep(Duration::from_micros(200));
        }
    };

    // How long a full apply takes here, and how much of it comes after the store is
    // opened (debug builds are slow; the delays scale with what is measured).
    let full = work.path().join("full");
    let started = Instant::now();
    let mut child = run(&full);
    wait_for_store(&full, &mut child);
    let decoding = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let total = started.elapsed();
    assert!(out.status.success(), "the big apply failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(check_after_kill(&full, N, "complete run"), N);
    let writing = total.saturating_sub(decoding).max(Duration::from_millis(5));

    // Three phases:
    // 1. kills at delays from the start, spread over the whole run and a little past it;
    // 2. kills at delays after the data dir appears, spread over the second half of the
    //    writing part (where the batch is committed and flushed) and a little past it;
    // 3. a bisection between the latest delay (after the store opened) that left nothing
    //    and the earliest that left everything, to kill as close to the commit as the
    //    timing jitter allows.
    let mut tally: BTreeMap<(usize, bool), u32> = BTreeMap::new();
    let mut kill_at = |phase: u32, step: u32, after_open: bool, delay: Duration| -> usize {
        let dir = work.path().join(format!("p{phase}s{step}"));
        let mut child = run(&dir);
        if after_open {
            wait_for_store(&dir, &mut child);
        }
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; fails only when it has already exited
        let status = child.wait().unwrap();
        let what = format!(
            "killed {delay:?} after {} (phase {phase}, step {step}, {status})",
            if after_open { "the store was opened" } else { "start" }
        );
        let n = check_after_kill(&dir, N, &what);
        *tally.entry((n, status.success())).or_insert(0) += 1;
        std::fs::remove_dir_all(&dir).ok();
        n
    };
    for step in 0..=4u32 {
        kill_at(1, step, false, total * 11 * step / 40);
    }
    let (mut lo, mut hi) = (Duration::ZERO, writing * 2);
    for step in 0..=6u32 {
        let delay = writing / 2 + writing * 6 * step / 60;
        if kill_at(2, step, true, delay) == 0 {
            lo = lo.max(delay);
        } else {
            hi = hi.min(delay);
        }
    }
    for step in 0..10u32 {
        let delay = (lo + hi) / 2;
        if kill_at(3, step, true, delay) == 0 {
            lo = delay;
        } else {
            hi = delay;
        }
    }
    eprintln!(
        "kill -9 outcomes (objects found, exited normally) -> runs: {tally:?}; a full apply took {total:?}, {writing:?} of it after the store was opened; the commit lies between {lo:?} and {hi:?} after the open"
    );
}

#[cfg(unix)]
#[test]
fn kill_9_right_after_apply_returns_keeps_everything() {
    // The CLI prints one line per object after the store's apply returned (durably, per
    // the Store trait). Read the first line, leave the rest in the pipe (the child
    // blocks writing it), and kill: everything must be there.
    use std::io::BufRead;
    const N: usize = 3000;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("big.yaml");
    std::fs::write(&file, big_manifest(N)).unwrap();
    let dir = work.path().join("data");
    let mut child = common::sectl()
        .arg("--no-reconcile")
        .args(["apply", "-f"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir)
        .env_remove("SECTL_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sectl");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "vmdefinition/vm0000 created");
    child.kill().expect("the child is still writing its output");
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(check_after_kill(&dir, N, "killed after apply returned"), N);
}

// ---------------------------------------------------------------------------------
// Issue 9 item 3: numbers that cannot be stored, and objects that cannot be read

/// The management cluster of the common site with its ISL-E bandwidth set to `gbps`.
fn mc_with_bandwidth(gbps: f64) -> Resource {
    let mut r = all(common::SITE).into_iter().find(|r| r.kind() == Kind::ManagementCluster).expect("mc");
    if let Resource::ManagementCluster(o) = &mut r {
        o.spec.isl_e.as_mut().expect("islE").bandwidth_gbps = gbps;
    }
    r
}

#[test]
fn non_finite_numbers_are_refused_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for bad in [f64::INFINITY, f64::NAN, f64::NEG_INFINITY] {
        for (what, r) in [
            ("create", s.create(mc_with_bandwidth(bad))),
            ("apply", s.apply(vec![mc_with_bandwidth(bad)], false).map(|mut v| v.remove(0).1)),
        ] {
            let e = r.expect_err(what).to_string();
            assert!(e.contains("spec.islE.bandwidthGbps") && e.contains("not a finite number"), "{what}: {e}");
        }
    }
    s.create(mc_with_bandwidth(10.0)).expect("a finite one is stored");
    let e = s.update(mc_with_bandwidth(f64::INFINITY)).expect_err("update").to_string();
    assert!(e.contains("not a finite number"), "{e}");
    // Nothing half-written: the stored one still reads back.
    let (mcs, _) = s.list(Kind::ManagementCluster).unwrap();
    assert_eq!(mcs, vec![s.get(Kind::ManagementCluster, "mc").unwrap().unwrap()]);
    assert_eq!(mcs[0].spec_json()["islE"]["bandwidthGbps"], 10.0);
}

/// Opens a store closed a moment ago (sled lets go of its file lock shortly after).
fn reopen(dir: &Path) -> SledStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(dir) {
            Ok(s) => return s,
            Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    }
}

/// Writes a raw value under an object's key, as an older or damaged store might hold.
fn plant(dir: &Path, kind: Kind, name: &str, json: &str) {
    // sled lets go of its file lock shortly after a handle is dropped: retry a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::open(dir.join("db")) {
            Ok(db) => break db,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open sled: {e}"),
        }
    };
    let tree = db.open_tree("sectl").expect("tree");
    tree.insert(format!("o/{}/{name}", kind.as_str()), json.as_bytes()).expect("insert");
    db.flush().expect("flush");
}

#[test]
fn one_unreadable_object_blocks_nothing_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.apply(all(common::SITE), false).unwrap();
        s.create(vm("good", 512)).unwrap();
    }
    // A non-finite number written as null, as serde_json did before writes refused it.
    plant(
        dir.path(),
        Kind::VMDefinition,
        "broken",
        r#"{"apiVersion":"sectl.io/v1alpha1","kind":"VMDefinition","metadata":{"name":"broken","resourceVersion":"3"},"spec":{"vmName":"BROKEN","serverUnit":"ABGSE501","memoryMiB":null}}"#,
    );
    let s = reopen(dir.path());
    let l = s.list_report(Kind::VMDefinition).expect("a list with a bad object still lists");
    let names: Vec<&str> = l.items.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["good", "vm12prod"]);
    assert_eq!(l.bad.len(), 1);
    assert_eq!((l.bad[0].kind, l.bad[0].name.as_str()), (Kind::VMDefinition, "broken"));
    let shown = l.bad[0].to_string();
    assert!(shown.contains("VMDefinition/broken cannot be read") && shown.contains("sectl delete"), "{shown}");
    assert_eq!(s.list(Kind::VMDefinition).unwrap().0.len(), 2, "list leaves it out");
    let e = s.get(Kind::VMDefinition, "broken").expect_err("get names it").to_string();
    assert!(e.contains("VMDefinition/broken"), "{e}");
    // The controller starts and reconciles the others.
    let shared: std::sync::Arc<dyn Store> = std::sync::Arc::new(s);
    let mut c = sectl::controller::Controller::new(shared.clone(), Default::default()).expect("controller starts");
    c.run_until_quiet().expect("settles");
    assert!(c.world().vms.contains_key("good"));
    drop(c);
    // Delete removes it (and says that what it held could not be read).
    let e = shared.delete(Kind::VMDefinition, "broken").expect_err("reported").to_string();
    assert!(e.contains("was removed"), "{e}");
    assert_eq!(shared.get(Kind::VMDefinition, "broken").unwrap(), None);
    assert!(shared.list_report(Kind::VMDefinition).unwrap().bad.is_empty());
    // Watches go on past the removal.
    shared.watch_from(0).expect("watch");
}

#[test]
fn an_object_whose_status_cannot_be_read_is_deleted_with_its_spec() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.apply(all(common::SITE), false).unwrap();
    }
    plant(
        dir.path(),
        Kind::VMDefinition,
        "halfbad",
        r#"{"apiVersion":"sectl.io/v1alpha1","kind":"VMDefinition","metadata":{"name":"halfbad","resourceVersion":"3"},"spec":{"vmName":"HALF","serverUnit":"ABGSE501","memoryMiB":512},"status":{"liveMigrationCount":null}}"#,
    );
    let s = reopen(dir.path());
    let rv = s.resource_version();
    let last = s.delete(Kind::VMDefinition, "halfbad").expect("deleted with its readable part");
    assert_eq!(last.spec_json()["vmName"], "HALF");
    let evs = s.watch_from(rv).unwrap();
    assert!(matches!(evs.as_slice(), [WatchEvent { type_: WatchType::Deleted, .. }]), "{evs:?}");
}

/// A store dropped and opened again at once, many times, with writes in between (the
/// writes leave sled background work that held its file lock past the drop).
#[test]
fn reopen_right_after_drop_never_finds_the_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        let s = SledStore::open(dir.path()).unwrap_or_else(|e| panic!("reopen {i}: {e}"));
        s.create(vm(&format!("v{i}"), 1)).unwrap();
        for _ in 0..5 {
            s.record_event(event("Tick")).unwrap();
        }
        drop(s);
    }
    assert_eq!(open(dir.path()).list(Kind::VMDefinition).unwrap().0.len(), 200);
}

/// A shared folder (sticky, world-writable) as data directory: its mode, sticky bit
/// included, is left as it is, and the CLI warns on stderr that others can open it.
#[cfg(unix)]
#[test]
fn shared_data_dir_keeps_its_mode_and_warns() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let shared = parent.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = common::sectl()
        .arg("--data-dir")
        .arg(&shared)
        .args(["get", "vm", "-o", "json"])
        .env_remove("SECTL_SERVER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "a shared data dir was changed to {mode:o}");
    assert!(stderr.contains("warning: data directory") && stderr.contains("(mode 1777)"), "no warning: {stderr}");
    assert!(stderr.contains("readable and writable by other users"), "{stderr}");
    // A private one gets no warning.
    let private = parent.path().join("private");
    let out = common::sectl().arg("--data-dir").arg(&private).args(["get", "vm"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{out:?}");
}

/// One stored object may be at most 1.5 MiB encoded: a bigger one is refused by name
/// and size, and nothing is written.
#[test]
fn an_object_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut big = vm("big", 1);
    big.meta_mut().annotations.0.insert("note".into(), "x".repeat(2 * 1024 * 1024));
    for err in [s.create(big.clone()).unwrap_err(), s.apply(vec![vm("small", 1), big], false).unwrap_err()] {
        match &err {
            StoreError::TooLarge { kind, name, size, limit } => {
                assert_eq!((*kind, name.as_str(), *limit), (Kind::VMDefinition, "big", 1536 * 1024));
                assert!(*size > 2 * 1024 * 1024, "{err}");
            }
            other => panic!("expected TooLarge, got {other}"),
        }
        assert!(err.to_string().contains("VMDefinition big is"), "{err}");
    }
    assert_eq!(s.resource_version(), 0, "a refused write moved the resourceVersion");
    assert!(s.list(Kind::VMDefinition).unwrap().0.is_empty());
    s.create(vm("small", 1)).unwrap();
    assert_eq!(s.resource_version(), 1);
}

/// The store keeps the statuses of controller batches decoded for its next reads
/// (issue 15): whatever is written afterwards (a spec update, a delete) must be what the next reads return, never the kept copy.
#[test]
fn statuses_kept_decoded_never_hide_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(vm("a", 1)).unwrap();
    let status = |mem: u64, state: &str| with_status(vm("a", mem), serde_json::json!({"state": state}));
    let batch = |st: Resource| sectl::store::Batch { statuses: vec![st], ..Default::default() };
    s.commit_batch(batch(status(1, "RUNNING"))).unwrap();
    let before = s.resource_version();
    // A spec change after the status write: the watch and the next batch see it.
    s.update(vm("a", 2)).unwrap();
    let evs = s.watch_from(before).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].object.spec_json()["memoryMiB"], 2);
    assert_eq!(evs[0].object.status_json()["state"], "RUNNING");
    s.commit_batch(batch(status(2, "DOWN"))).unwrap();
    let now = s.get(Kind::VMDefinition, "a").unwrap().unwrap();
    assert_eq!((now.spec_json()["memoryMiB"].clone(), now.status_json()["state"].clone()), (2.into(), "DOWN".into()));
    // A delete after a status write: gone for every read.
    s.commit_batch(batch(status(2, "RUNNING"))).unwrap();
    s.delete(Kind::VMDefinition, "a").unwrap();
    assert!(s.get(Kind::VMDefinition, "a").unwrap().is_none());
    assert!(matches!(s.update(vm("a", 3)).unwrap_err(), StoreError::NotFound { .. }));
    assert_eq!(s.commit_batch(batch(status(2, "DOWN"))).unwrap().statuses, vec![sectl::store::StatusWrite::Gone]);
}
