//! The store's conformance suite: the same test bodies run against every backend,
//! `SledStore` (module `sled`) and `EtcdStore` on an etcd the test starts (module
//! `etcd`; fails naming `apt install etcd-server` when etcd is missing): metadata the
//! store sets, the global resourceVersion (a number that grows with every write of
//! objects: sled's own counter, one per object; etcd's revision, one per Txn, so the
//! tests compare resourceVersions rather than expect numbers), optimistic concurrency, generation,
//! the status path, apply (atomic, dry run), delete, list, watch, events, reopen, and
//! the write-boundary checks. Backend-specific behaviour (sled's data folder and crash
//! recovery, etcd's staged writes) is tested in `store.rs` and `store_etcd.rs`.

mod common;
mod etcd_server;

use common::{all, one, vm};
use sectl::api::{Kind, Resource};
use sectl::store::{ApplyOutcome, EtcdStore, Event, EventType, SledStore, Store, StoreError, WatchEvent, WatchType};
use std::collections::BTreeMap;
use std::time::Duration;

/// A store under test, on one backend, that can be reopened or replaced by an empty one.
pub struct Fx {
    sled: Option<Vec<tempfile::TempDir>>,
    etcd: Option<etcd_server::Etcd>,
    n: usize,
    store: Option<Box<dyn Store>>,
}

impl Fx {
    fn sled() -> Fx {
        let mut fx = Fx { sled: Some(Vec::new()), etcd: None, n: 0, store: None };
        fx.fresh();
        fx
    }

    fn etcd() -> Fx {
        let mut fx = Fx { sled: None, etcd: Some(etcd_server::Etcd::start()), n: 0, store: None };
        fx.fresh();
        fx
    }

    fn open(&self) -> Box<dyn Store> {
        match (&self.sled, &self.etcd) {
            (Some(dirs), _) => {
                let dir = dirs.last().expect("a folder").path();
                // sled lets go of its file lock a moment after a close.
                let start = std::time::Instant::now();
                loop {
                    match SledStore::open(dir) {
                        Ok(s) => return Box::new(s),
                        Err(e) if start.elapsed() > Duration::from_secs(5) => panic!("open {}: {e}", dir.display()),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
            (None, Some(e)) => {
                let url = e.url_with(&format!("t{}", self.n));
                Box::new(EtcdStore::open(&url).unwrap_or_else(|err| panic!("open {url}: {err}")))
            }
            _ => unreachable!("a fixture has one backend"),
        }
    }

    /// The store.
    fn store(&self) -> &dyn Store {
        self.store.as_deref().expect("open")
    }

    /// Closes the store and opens it again.
    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(self.open());
    }

    /// Replaces the store with a new, empty one.
    fn fresh(&mut self) {
        self.store = None;
        self.n += 1;
        if let Some(dirs) = &mut self.sled {
            dirs.push(tempfile::tempdir().expect("temp dir"));
        }
        self.store = Some(self.open());
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $( #[test] fn $name() { super::$name(&mut super::Fx::sled()) } )*
        }
        mod etcd {
            $( #[test] fn $name() { super::$name(&mut super::Fx::etcd()) } )*
        }
    };
}

conformance!(
    create_sets_uid_rv_generation_timestamp_and_empty_status,
    resource_version_is_one_global_counter_across_kinds,
    subscribe_sees_each_commit,
    stale_resource_version_is_a_conflict_and_changes_nothing,
    update_without_resource_version_is_unconditional,
    generation_moves_only_with_the_spec,
    status_and_spec_paths_are_separate,
    apply_creates_configures_and_leaves_unchanged_objects_alone,
    apply_dry_run_writes_nothing,
    apply_is_all_or_nothing_on_a_stale_resource_version,
    delete_returns_the_last_state_and_removes_the_object,
    list_is_sorted_by_name_and_per_kind,
    watch_reports_changes_in_order_and_resumes_from_any_resource_version,
    events_are_numbered_and_acknowledged_all_at_once,
    non_finite_numbers_are_refused_at_every_write,
    an_object_over_the_size_limit_is_refused,
    a_batch_commits_only_while_its_expected_state_holds,
    audit_appends_racing_without_the_process_lock_keep_one_chain,
);

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

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The management cluster of the common site with its ISL-E bandwidth set to `gbps`.
fn mc_with_bandwidth(gbps: f64) -> Resource {
    let mut r = all(common::SITE).into_iter().find(|r| r.kind() == Kind::ManagementCluster).expect("mc");
    if let Resource::ManagementCluster(o) = &mut r {
        o.spec.isl_e.as_mut().expect("islE").bandwidth_gbps = gbps;
    }
    r
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

fn create_sets_uid_rv_generation_timestamp_and_empty_status(fx: &mut Fx) {
    let s = fx.store();
    assert_eq!(s.resource_version(), 0);
    let input = with_status(vm("a", 1024), serde_json::json!({"state": "RUNNING", "liveMigrationCount": 7}));
    let created = s.create(input.clone()).unwrap();
    let m = created.meta();
    let uid = m.uid.as_deref().expect("uid set");
    assert!(uuid_like(uid), "uid {uid:?} is not a UUID");
    assert!(rv(&created) > 0);
    assert_eq!(generation(&created), 1);
    let ts = m.creation_timestamp.as_deref().expect("creationTimestamp set");
    let t = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("creationTimestamp {ts:?}: {e}"));
    let age = std::time::SystemTime::now().duration_since(t).unwrap_or_default();
    assert!(age < Duration::from_secs(300), "creationTimestamp {ts} is not now");
    assert!(created.status_eq(&vm("a", 1)), "create must start with an empty status: {}", created.status_json());
    assert!(created.spec_eq(&input));
    // What get returns is what create returned.
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(created.clone()));
    assert_eq!(s.resource_version(), rv(&created));

    // Two objects get different uids.
    let b = s.create(vm("b", 1024)).unwrap();
    assert_ne!(b.meta().uid, created.meta().uid);

    // Create of an existing object fails and changes nothing.
    let err = s.create(vm("a", 4096)).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { kind: Kind::VMDefinition, ref name } if name == "a"), "{err:?}");
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(created));
    assert_eq!(s.resource_version(), rv(&b));
}

fn resource_version_is_one_global_counter_across_kinds(fx: &mut Fx) {
    let s = fx.store();
    let mut seen = Vec::new();
    seen.push(rv(&s.create(server("se1", "SU1")).unwrap()));
    seen.push(rv(&s.create(vm("a", 1024)).unwrap()));
    seen.push(rv(&s.create(su_cluster("suc")).unwrap()));
    seen.push(rv(&s.create(server("se2", "SU2")).unwrap()));
    seen.push(rv(&s.update(vm("a", 2048)).unwrap()));
    seen.push(rv(&s.update_status(with_status(vm("a", 1), serde_json::json!({"state": "RUNNING"}))).unwrap()));
    seen.push(rv(&s.delete(Kind::SUCluster, "suc").unwrap()));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "resourceVersions not strictly increasing: {seen:?}");
    let before = *seen.last().unwrap();
    // One apply is one write: its objects are newer than what came before, in order
    // (sled numbers them one by one, etcd gives one Txn's objects its revision).
    let applied = s.apply(vec![vm("b", 1), server("se3", "SU3"), vm("a", 4096)], false).unwrap();
    let batch: Vec<u64> = applied.iter().map(|(_, r)| rv(r)).collect();
    assert!(batch[0] > before && batch.windows(2).all(|w| w[0] <= w[1]), "{before} then {batch:?}");
    seen.extend(batch);
    assert_eq!(s.resource_version(), *seen.last().unwrap());
    // What a write returns is what a read returns.
    for (_, r) in &applied {
        assert_eq!(s.get(r.kind(), r.name()).unwrap().as_ref(), Some(r));
    }
    // Every list reports a resourceVersion at least as new as its items.
    for k in Kind::ALL {
        let (items, list_rv) = s.list(*k).unwrap();
        assert!(items.iter().all(|r| rv(r) <= list_rv));
        assert_eq!(list_rv, s.resource_version());
    }
}

fn subscribe_sees_each_commit(fx: &mut Fx) {
    let s = fx.store();
    let mut rx = s.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    let a = s.create(vm("a", 1)).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), rv(&a));
    let a2 = s.update(vm("a", 2)).unwrap();
    assert_eq!(*rx.borrow_and_update(), rv(&a2));
}

fn stale_resource_version_is_a_conflict_and_changes_nothing(fx: &mut Fx) {
    let s = fx.store();
    let first = s.create(vm("a", 1024)).unwrap();
    let second = s.update(vm("a", 2048)).unwrap();
    assert!(rv(&second) > rv(&first));

    // An update based on the first read.
    let stale = with_rv(vm("a", 4096), rv(&first));
    let err = s.update(stale).unwrap_err();
    match &err {
        StoreError::Conflict { kind, name, expected, actual } => {
            assert_eq!((*kind, name.as_str(), *expected, *actual), (Kind::VMDefinition, "a", rv(&first), rv(&second)));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("conflict"), "{err}");
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(second.clone()));
    assert_eq!(s.resource_version(), rv(&second));

    // The status path checks it too.
    let stale = with_status(with_rv(vm("a", 1), rv(&first)), serde_json::json!({"state": "DOWN"}));
    assert!(matches!(s.update_status(stale).unwrap_err(), StoreError::Conflict { .. }));
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), Some(second.clone()));

    // A resourceVersion from the future is just as wrong.
    assert!(matches!(s.update(with_rv(vm("a", 8), rv(&second) + 1000)).unwrap_err(), StoreError::Conflict { .. }));

    // The current one works.
    let third = s.update(with_rv(vm("a", 4096), rv(&second))).unwrap();
    assert!(rv(&third) > rv(&second));
    assert_eq!(generation(&third), 3);
}

fn update_without_resource_version_is_unconditional(fx: &mut Fx) {
    let s = fx.store();
    s.create(vm("a", 1024)).unwrap();
    s.update(vm("a", 2048)).unwrap();
    let r = vm("a", 3072);
    assert!(r.meta().resource_version.is_none());
    let u = s.update(r).unwrap();
    assert_eq!((rv(&u), generation(&u)), (s.resource_version(), 3));
    assert!(u.spec_eq(&vm("a", 3072)));
    // Update of something that does not exist.
    assert!(matches!(s.update(vm("nope", 1)).unwrap_err(), StoreError::NotFound { .. }));
    assert!(matches!(s.update_status(vm("nope", 1)).unwrap_err(), StoreError::NotFound { .. }));
    assert_eq!(s.resource_version(), rv(&u));
}

fn generation_moves_only_with_the_spec(fx: &mut Fx) {
    let s = fx.store();
    let c = s.create(vm("a", 1024)).unwrap();
    let uid = c.meta().uid.clone();
    let ts = c.meta().creation_timestamp.clone();

    // Labels only: new rv, same generation.
    let l = s.update(with_labels(vm("a", 1024), &[("app", "prod")])).unwrap();
    assert!(rv(&l) > rv(&c));
    assert_eq!(generation(&l), 1);
    assert_eq!(l.meta().labels.0.get("app").map(String::as_str), Some("prod"));

    // Annotations only: new rv, same generation.
    let mut ann = with_labels(vm("a", 1024), &[("app", "prod")]);
    ann.meta_mut().annotations.0.insert("note".into(), "hello".into());
    let a = s.update(ann.clone()).unwrap();
    assert!(rv(&a) > rv(&l));
    assert_eq!(generation(&a), 1);

    // Identical: nothing written at all.
    let same = s.update(ann.clone()).unwrap();
    assert_eq!((rv(&same), generation(&same)), (rv(&a), 1));
    assert_eq!(s.resource_version(), rv(&a));
    assert_eq!(s.watch_from(rv(&a)).unwrap(), vec![]);

    // Spec: new rv and new generation; uid and creation time stay.
    let mut spec = vm("a", 2048);
    spec.meta_mut().labels = ann.meta().labels.clone();
    spec.meta_mut().annotations = ann.meta().annotations.clone();
    let g = s.update(spec).unwrap();
    assert!(rv(&g) > rv(&a));
    assert_eq!(generation(&g), 2);
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
    assert!(rv(&st) > rv(&g));
    assert_eq!(generation(&st), 2);
}

fn status_and_spec_paths_are_separate(fx: &mut Fx) {
    let s = fx.store();
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

fn apply_creates_configures_and_leaves_unchanged_objects_alone(fx: &mut Fx) {
    let s = fx.store();
    let site = all(common::SITE);
    let first = s.apply(site.clone(), false).unwrap();
    assert!(first.iter().all(|(o, _)| *o == ApplyOutcome::Created), "{first:?}");
    let rvs: Vec<u64> = first.iter().map(|(_, r)| rv(r)).collect();
    assert!(rvs[0] > 0 && rvs.windows(2).all(|w| w[0] <= w[1]), "{rvs:?}");
    assert!(first.iter().all(|(_, r)| generation(r) == 1));
    let n = s.resource_version();
    assert_eq!(n, rvs[rvs.len() - 1]);
    assert_eq!(site.len(), first.len());

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
            assert!(rv(r) > n);
            assert_eq!(generation(r), 2);
        } else {
            assert_eq!(*o, ApplyOutcome::Unchanged);
            assert_eq!(r, &first[j].1);
        }
    }
    let n1 = s.resource_version();
    assert_eq!(n1, rv(&third[i].1));

    // A label-only change is "configured" but keeps the generation.
    let relabeled = with_labels(third[i].1.clone(), &[("app", "test")]);
    let fourth = s.apply(vec![relabeled], false).unwrap();
    assert_eq!(fourth[0].0, ApplyOutcome::Configured);
    assert!(rv(&fourth[0].1) > n1);
    assert_eq!(generation(&fourth[0].1), 2);
    let n2 = s.resource_version();

    // Giving the same object twice in one apply is refused and writes nothing.
    let err = s.apply(vec![vm("x", 1), vm("x", 2)], false).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(s.get(Kind::VMDefinition, "x").unwrap(), None);
    assert_eq!(s.resource_version(), n2);
    // ... and the next write follows on.
    assert!(rv(&s.create(vm("y", 1)).unwrap()) > n2);
}

fn apply_dry_run_writes_nothing(fx: &mut Fx) {
    let s = fx.store();
    s.create(vm("a", 1024)).unwrap();
    let b = rv(&s.create(vm("b", 1024)).unwrap());
    let before: Vec<Resource> = s.list(Kind::VMDefinition).unwrap().0;
    let out = s.apply(vec![vm("a", 1024), vm("b", 2048), vm("c", 1)], true).unwrap();
    let outcomes: Vec<ApplyOutcome> = out.iter().map(|(o, _)| *o).collect();
    assert_eq!(outcomes, [ApplyOutcome::Unchanged, ApplyOutcome::Configured, ApplyOutcome::Created]);
    assert!(out[1].1.spec_eq(&vm("b", 2048)), "dry run shows the result");
    assert_eq!(s.list(Kind::VMDefinition).unwrap().0, before);
    assert_eq!(s.get(Kind::VMDefinition, "c").unwrap(), None);
    assert_eq!(s.resource_version(), b);
    assert_eq!(s.watch_from(b).unwrap(), vec![]);
    // The next real write follows on.
    let d = rv(&s.create(vm("d", 1)).unwrap());
    assert!(d > b);
    // And it stays so across reopen.
    fx.reopen();
    let s = fx.store();
    assert_eq!(s.get(Kind::VMDefinition, "c").unwrap(), None);
    assert_eq!(s.resource_version(), d);
}

fn apply_is_all_or_nothing_on_a_stale_resource_version(fx: &mut Fx) {
    let s = fx.store();
    s.create(vm("a", 1024)).unwrap();
    let b_was = rv(&s.create(vm("b", 1024)).unwrap());
    let b_is = rv(&s.update(vm("b", 2048)).unwrap());
    let before: BTreeMap<Kind, Vec<Resource>> = Kind::ALL.iter().map(|k| (*k, s.list(*k).unwrap().0)).collect();
    let objs = vec![
        vm("new1", 1),                 // would be created
        vm("a", 4096),                 // would be configured
        server("se9", "SU9"),          // another kind, would be created
        with_rv(vm("b", 8192), b_was), // stale
        vm("new2", 1),                 // after the stale one
    ];
    let err = s.apply(objs, false).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref name, expected, actual, .. } if name == "b" && expected == b_was && actual == b_is),
        "{err:?}"
    );
    let after: BTreeMap<Kind, Vec<Resource>> = Kind::ALL.iter().map(|k| (*k, s.list(*k).unwrap().0)).collect();
    assert_eq!(after, before, "a failed apply changed the store");
    assert_eq!(s.resource_version(), b_is);
    assert_eq!(s.watch_from(b_is).unwrap(), vec![]);
    // The next write follows on.
    let c = rv(&s.create(vm("c", 1)).unwrap());
    assert!(c > b_is);
    fx.reopen();
    let s = fx.store();
    assert_eq!(s.get(Kind::VMDefinition, "new1").unwrap(), None);
    assert_eq!(s.get(Kind::SEServer, "se9").unwrap(), None);
    assert_eq!(s.resource_version(), c);
}

fn delete_returns_the_last_state_and_removes_the_object(fx: &mut Fx) {
    let s = fx.store();
    s.create(vm("a", 1024)).unwrap();
    let st = s.update_status(with_status(vm("a", 1), serde_json::json!({"state": "RUNNING"}))).unwrap();
    let gone = s.delete(Kind::VMDefinition, "a").unwrap();
    assert!(rv(&gone) > rv(&st), "the deletion has its own resourceVersion");
    assert_eq!(gone.status_json(), st.status_json());
    assert!(gone.spec_eq(&st));
    assert_eq!(gone.meta().uid, st.meta().uid);
    assert_eq!(s.get(Kind::VMDefinition, "a").unwrap(), None);
    assert!(s.list(Kind::VMDefinition).unwrap().0.is_empty());
    let err = s.delete(Kind::VMDefinition, "a").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { kind: Kind::VMDefinition, ref name } if name == "a"), "{err:?}");
    assert_eq!(s.resource_version(), rv(&gone));
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

fn list_is_sorted_by_name_and_per_kind(fx: &mut Fx) {
    let s = fx.store();
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

fn watch_reports_changes_in_order_and_resumes_from_any_resource_version(fx: &mut Fx) {
    let s = fx.store();

    // A hand-written sequence first, checked event by event.
    let a = s.create(vm("a", 1)).unwrap(); // 1 on sled
    s.create(server("b", "SU1")).unwrap(); // 2
    let a2 = s.update(vm("a", 2)).unwrap(); // 3
    let unit = serde_json::json!({"units": [{"name": "SU1", "unitType": "SU", "power": "ON", "state": "RUNNING"}]});
    let b2 = s.update_status(with_status(server("b", "SU1"), unit)).unwrap(); // 4
    let c = s.create(vm("c", 1)).unwrap(); // 5
    let a_gone = s.delete(Kind::VMDefinition, "a").unwrap(); // 6
    let (r1, r3, r4, r5, r6) = (rv(&a), rv(&a2), rv(&b2), rv(&c), rv(&a_gone));
    assert!(r1 < r3 && r3 < r4 && r4 < r5 && r5 < r6, "{:?}", (r1, r3, r4, r5, r6));
    let names =
        |evs: &[WatchEvent]| evs.iter().map(|e| (e.type_, e.object.name().to_string(), e.rv)).collect::<Vec<_>>();
    let s_ = |x: &str| x.to_string();
    // From 0: b was created and changed since, so it comes once, as ADDED with its newest
    // state; a was created, changed and deleted: only its deletion is left to report.
    assert_eq!(
        names(&s.watch_from(0).unwrap()),
        vec![(WatchType::Added, s_("b"), r4), (WatchType::Added, s_("c"), r5), (WatchType::Deleted, s_("a"), r6)],
        "watch from 0"
    );
    assert_eq!(
        names(&s.watch_from(r1).unwrap()),
        vec![(WatchType::Added, s_("b"), r4), (WatchType::Added, s_("c"), r5), (WatchType::Deleted, s_("a"), r6)],
        "watch from the first write"
    );
    // From the third the watcher has seen b already: its status change is MODIFIED.
    let from3 = s.watch_from(r3).unwrap();
    assert_eq!(
        names(&from3),
        vec![(WatchType::Modified, s_("b"), r4), (WatchType::Added, s_("c"), r5), (WatchType::Deleted, s_("a"), r6)],
        "watch from the third write"
    );
    assert_eq!(from3[0].object, b2);
    assert_eq!(from3[1].object, c);
    assert_eq!(from3[2].object, a_gone, "DELETED carries the last state");
    assert_eq!(names(&s.watch_from(r5).unwrap()), vec![(WatchType::Deleted, s_("a"), r6)]);
    assert_eq!(s.watch_from(r6).unwrap(), vec![], "nothing after the newest rv");

    // Then a long pseudo-random sequence against the reference model, from every rv.
    fx.fresh();
    let s = fx.store();
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
        let now = s.resource_version();
        if now == before {
            continue; // nothing written (e.g. an identical status)
        }
        assert!(now > before);
        assert_eq!(rv(&obj), now);
        log.push(Logged { rv: now, t, obj });
    }
    let newest = s.resource_version();
    assert!(log.len() > 200, "the sequence should write most steps, wrote {}", log.len());
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

fn events_are_numbered_and_acknowledged_all_at_once(fx: &mut Fx) {
    let s = fx.store();
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
    fx.reopen();
    let s = fx.store();
    assert_eq!(s.events().unwrap().len(), 4);
    assert!(s.events().unwrap().iter().all(|e| e.acknowledged));
    assert_eq!(s.record_event(event("Fifth")).unwrap().seq, 5);
}

fn non_finite_numbers_are_refused_at_every_write(fx: &mut Fx) {
    let s = fx.store();
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

fn an_object_over_the_size_limit_is_refused(fx: &mut Fx) {
    let s = fx.store();
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
    let small = s.create(vm("small", 1)).unwrap();
    assert_eq!(s.resource_version(), rv(&small));
}

fn a_batch_commits_only_while_its_expected_state_holds(fx: &mut Fx) {
    use sectl::store::Batch;
    let s = fx.store();
    let put = |k: &str, v: &[u8]| (k.to_string(), Some(v.to_vec()));
    let absent = |k: &str| (k.to_string(), None);
    s.commit_batch(Batch { state: vec![put("t/a", b"1")], expect: vec![absent("t/a")], ..Default::default() })
        .expect("absent as expected");
    // Expected absent, but present: nothing of the batch is written, the event neither.
    let events_before = s.events().expect("events").len();
    let b = Batch {
        state: vec![put("t/a", b"2"), put("t/b", b"x")],
        events: vec![event("Raced")],
        expect: vec![absent("t/a")],
        ..Default::default()
    };
    match s.commit_batch(b) {
        Err(StoreError::StateChanged { key }) => assert_eq!(key, "t/a"),
        other => panic!("expected StateChanged, got {other:?}"),
    }
    assert_eq!(s.read_state("t/").expect("state"), vec![("t/a".to_string(), b"1".to_vec())]);
    assert_eq!(s.events().expect("events").len(), events_before);
    // Expected bytes that are there: written.
    s.commit_batch(Batch { state: vec![put("t/a", b"3")], expect: vec![put("t/a", b"1")], ..Default::default() })
        .expect("holds the expected bytes");
    let stale = Batch { state: vec![put("t/a", b"4")], expect: vec![put("t/a", b"1")], ..Default::default() };
    assert!(matches!(s.commit_batch(stale), Err(StoreError::StateChanged { .. })));
    assert_eq!(s.read_state("t/a").expect("state"), vec![("t/a".to_string(), b"3".to_vec())]);
}

/// Four writers append audit records without the process-wide lock (as replicas in
/// different processes do): every record is kept once and the chain verifies.
fn audit_appends_racing_without_the_process_lock_keep_one_chain(fx: &mut Fx) {
    use sectl::auth::audit;
    let s = fx.store();
    let who = sectl::auth::Actor { user: sectl::auth::users::User::local_admin(), source: audit::Source::Cli };
    let per = 15;
    std::thread::scope(|scope| {
        for w in 0..4 {
            let who = &who;
            scope.spawn(move || {
                for i in 0..per {
                    let t = sectl::auth::Target::other(&format!("w{w}-{i}"));
                    let d = who.draft(sectl::auth::Verb::Sim, &t, audit::Outcome::Ok, "race");
                    audit::retrying(|| audit::append_locked(s, vec![d.clone()], vec![], 1000), audit::changed_first)
                        .expect("append");
                }
            });
        }
    });
    let records = audit::records(s).expect("records");
    assert_eq!(records.len(), 4 * per);
    let names: std::collections::BTreeSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 4 * per, "a record was overwritten by another writer's");
    let v = audit::verify(s).expect("verify");
    assert_eq!(v.broken, None, "{v:?}");
}
