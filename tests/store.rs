//! What only `SledStore` does: history expiry with a short history, durability across
//! reopen and kill -9, unreadable objects, and the data folder itself. The semantics
//! every backend shares are in `store_conformance.rs`.

mod common;

use common::{all, vm};
use sectl::api::{Kind, Resource};
use sectl::store::{Event, EventType, SledStore, Store, StoreError, WatchEvent, WatchType};
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

fn with_status(mut r: Resource, status: serde_json::Value) -> Resource {
    r.set_status_json(status).expect("valid status");
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

/// The store's sled database and tree, opened directly (the store must be closed).
fn raw_tree(dir: &Path) -> (sled::Db, sled::Tree) {
    // sled lets go of its file lock shortly after a handle is dropped: retry a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::open(dir.join("db")) {
            Ok(db) => break db,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("open sled: {e}"),
        }
    };
    let tree = db.open_tree("sectl").expect("tree");
    (db, tree)
}

/// Writes a raw value under an object's key, as an older or damaged store might hold.
fn plant(dir: &Path, kind: Kind, name: &str, json: &str) {
    let (db, tree) = raw_tree(dir);
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

/// managedFields are written when an update carries them and kept when it does not,
/// on the object and through the status path; they never move the generation.
#[test]
fn managed_fields_are_taken_when_given_and_kept_when_absent() {
    use sectl::api::managed_fields::{FieldSet, ManagedFieldsEntry, Operation, Scope};
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let created = s.create(vm("vm1", 512)).unwrap();
    let entry = |m: &str| {
        let set = FieldSet([vec!["spec".to_string(), "memoryMiB".to_string()]].into_iter().collect());
        ManagedFieldsEntry::new(m, Operation::Apply, Scope::Main, &set, "2026-01-01T00:00:00Z")
    };
    let mut given = created.clone();
    given.meta_mut().managed_fields = Some(vec![entry("a")]);
    let written = s.update(given).unwrap();
    assert!(rv(&written) > rv(&created), "a change of owners alone is written");
    assert_eq!(generation(&written), generation(&created), "owners are not the spec");
    assert_eq!(s.get(Kind::VMDefinition, "vm1").unwrap().unwrap().meta().managed_fields, Some(vec![entry("a")]));
    // Absent: kept (a controller or an old client writing the object drops nothing).
    let mut plain = s.get(Kind::VMDefinition, "vm1").unwrap().unwrap();
    plain.meta_mut().managed_fields = None;
    plain.meta_mut().labels.0.insert("x".into(), "1".into());
    s.update(plain).unwrap();
    assert_eq!(s.get(Kind::VMDefinition, "vm1").unwrap().unwrap().meta().managed_fields, Some(vec![entry("a")]));
    // Through the status path too.
    let mut st = s.get(Kind::VMDefinition, "vm1").unwrap().unwrap();
    st.meta_mut().managed_fields = Some(vec![entry("b")]);
    s.update_status(st).unwrap();
    assert_eq!(s.get(Kind::VMDefinition, "vm1").unwrap().unwrap().meta().managed_fields, Some(vec![entry("b")]));
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

/// A big apply stays one all-or-nothing batch with
/// resourceVersions in the objects' order, reports the first problem in that order
/// (a non-finite number before a name given twice further on), and writes nothing on a
/// dry run or an error; re-applied, nothing is written.
#[test]
fn big_apply_is_one_ordered_batch_and_reports_the_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let objs: Vec<Resource> = (0..1500).map(|i| vm(&format!("vm{i:04}"), 1024 + i)).collect();
    // Errors: a NaN at 700, a name given twice at 1200.
    let mut bad = objs.clone();
    if let Resource::VMDefinition(o) = &mut bad[700] {
        o.spec.workload.dirty_rate_mi_bps = f64::NAN;
    }
    bad[1200] = vm("vm0003", 1);
    let err = s.apply(bad, false).unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("vm0700") && m.contains("NaN")), "{err}");
    assert_eq!(s.resource_version(), 0);
    assert!(s.list(Kind::VMDefinition).unwrap().0.is_empty());
    // A dry run gives every outcome and writes nothing.
    let dry = s.apply(objs.clone(), true).unwrap();
    assert_eq!(dry.len(), 1500);
    assert_eq!(s.resource_version(), 0);
    assert!(s.list(Kind::VMDefinition).unwrap().0.is_empty());
    // Applied: every object, versions 1..=1500 in order, as the store holds them.
    let done = s.apply(objs.clone(), false).unwrap();
    assert_eq!(s.resource_version(), 1500);
    for (i, (outcome, r)) in done.iter().enumerate() {
        assert_eq!(*outcome, sectl::store::ApplyOutcome::Created);
        assert_eq!(rv(r), i as u64 + 1);
        assert_eq!(s.get(Kind::VMDefinition, r.name()).unwrap().as_ref(), Some(r));
    }
    let history = s.watch_from(0).unwrap();
    assert_eq!(history.len(), 1500);
    assert!(history.iter().enumerate().all(|(i, e)| e.rv == i as u64 + 1 && e.type_ == WatchType::Added));
    // Again: unchanged, nothing written.
    let again = s.apply(objs, false).unwrap();
    assert!(again.iter().all(|(o, _)| *o == sectl::store::ApplyOutcome::Unchanged));
    assert_eq!(s.resource_version(), 1500);
}

/// The history keys (`h/<rv>`) a closed store holds, as resourceVersions.
fn history_keys(dir: &Path) -> Vec<u64> {
    let (_db, tree) = raw_tree(dir);
    tree.scan_prefix(b"h/")
        .map(|item| u64::from_be_bytes(item.expect("read").0[2..10].try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn one_writes_changes_are_one_history_entry_read_from_anywhere_inside() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_history(dir.path(), 8).unwrap();
    for i in 0..3 {
        s.create(vm(&format!("a{i}"), 1)).unwrap();
    }
    let objs: Vec<Resource> = (0..6).map(|i| vm(&format!("b{i}"), 1)).collect();
    s.apply(objs, false).unwrap();
    assert_eq!(s.resource_version(), 9);
    // Resumed from anywhere, inside the apply's block included: exactly what came after.
    for from in 1..=9u64 {
        let rvs: Vec<u64> = s.watch_from(from).unwrap().iter().map(|e| e.rv).collect();
        assert_eq!(rvs, ((from + 1)..=9).collect::<Vec<_>>(), "watch_from({from})");
    }
    // A list continued at a version inside the block sees the block's later changes.
    let first = s.list_page(Kind::VMDefinition, None, 4, None).unwrap();
    assert_eq!(first.rv, 9);
    let names: Vec<&str> = first.items.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["a0", "a1", "a2", "b0"]);
    match s.list_page(Kind::VMDefinition, Some("b0"), 4, Some(6)) {
        Err(StoreError::SnapshotGone { at: 6, reason }) => {
            assert!(reason.contains("VMDefinition/b3") && reason.contains("resourceVersion 7"), "{reason}")
        }
        other => panic!("continued at 6, inside the block 4..=9: expected SnapshotGone, got {other:?}"),
    }
    drop(s);
    // The single records still in the window (2, 3; 1 is out of it) and the block
    // under its last version.
    assert_eq!(history_keys(dir.path()), [2, 3, 9]);
    let s = SledStore::open_with_history(dir.path(), 8).unwrap();
    // Single writes move the window: the singles go first, the block only when its
    // last record leaves the window, never while a version in it may still be asked for.
    let set_state = |name: &str| {
        let cur = s.get(Kind::VMDefinition, name).unwrap().unwrap();
        s.update_status(with_status(cur, serde_json::json!({"state": "RUNNING"}))).unwrap();
    };
    for i in 0..3 {
        set_state(&format!("b{i}"));
    }
    // (b0-b2's records at 4-6 report nothing now: their later changes report them.)
    let got: Vec<u64> = s.watch_from(5).unwrap().iter().map(|e| e.rv).collect();
    assert_eq!(got, [7, 8, 9, 10, 11, 12]);
    for i in 3..6 {
        set_state(&format!("b{i}"));
    }
    assert_eq!(s.resource_version(), 15);
    assert!(matches!(s.watch_from(6), Err(StoreError::Expired { oldest: 7, .. })));
    let got: Vec<u64> = s.watch_from(7).unwrap().iter().map(|e| e.rv).collect();
    assert_eq!(got, [10, 11, 12, 13, 14, 15]);
    drop(s);
    // The block (4..=9) is still there: 8 and 9 are inside the window.
    assert_eq!(history_keys(dir.path()), [9, 10, 11, 12, 13, 14, 15]);
}

#[test]
fn a_large_write_is_stored_in_blocks_of_at_most_16_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_history(dir.path(), 100).unwrap();
    s.create(vm("first", 1)).unwrap();
    let objs: Vec<Resource> = (0..40).map(|i| vm(&format!("b{i:02}"), 1)).collect();
    s.apply(objs, false).unwrap();
    assert_eq!(s.resource_version(), 41);
    for from in 0..=41u64 {
        let got: Vec<(u64, String)> =
            s.watch_from(from).unwrap().iter().map(|e| (e.rv, e.object.name().to_string())).collect();
        let want: Vec<(u64, String)> = ((from + 1)..=41)
            .map(|rv| (rv, if rv == 1 { "first".to_string() } else { format!("b{:02}", rv - 2) }))
            .collect();
        assert_eq!(got, want, "watch_from({from})");
    }
    drop(s);
    // The single create, then the apply's 40 records as blocks of 16, 16 and 8.
    assert_eq!(history_keys(dir.path()), [1, 17, 33, 41]);
}

#[test]
fn a_block_larger_than_16_records_as_written_before_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let names =
        |from: u64| -> Vec<(u64, String)> { ((from + 1)..=40).map(|rv| (rv, format!("b{:02}", rv - 1))).collect() };
    {
        let s = SledStore::open_with_history(dir.path(), 100).unwrap();
        s.apply((0..40).map(|i| vm(&format!("b{i:02}"), 1)).collect(), false).unwrap();
    }
    assert_eq!(history_keys(dir.path()), [16, 32, 40]);
    // Rewrite them as the version before wrote them: the whole apply in one entry.
    {
        let (db, tree) = raw_tree(dir.path());
        let key = |rv: u64| [b"h/".as_slice(), &rv.to_be_bytes()].concat();
        let mut records = Vec::new();
        for rv in [16u64, 32, 40] {
            let block: serde_json::Value = serde_json::from_slice(&tree.remove(key(rv)).unwrap().unwrap()).unwrap();
            records.extend(block["r"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(records.len(), 40);
        let whole = serde_json::json!({"f": 1, "r": records});
        tree.insert(key(40), serde_json::to_vec(&whole).unwrap()).unwrap();
        db.flush().unwrap();
    }
    assert_eq!(history_keys(dir.path()), [40]);
    let s = SledStore::open_with_history(dir.path(), 100).unwrap();
    for from in 0..=40u64 {
        let got: Vec<(u64, String)> =
            s.watch_from(from).unwrap().iter().map(|e| (e.rv, e.object.name().to_string())).collect();
        assert_eq!(got, names(from), "watch_from({from})");
    }
}

#[test]
fn damaged_history_entries_fail_the_watch_clearly_and_break_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..6 {
        s.create(vm(&format!("v{i}"), 1)).unwrap();
    }
    drop(s);
    let rec = r#"{"t":"ADDED","k":"VMDefinition","n":"v4"}"#;
    // A block claiming versions up to u64::MAX, one that does not end at its key, an
    // empty one, and bytes that are no record at all.
    let bad = [
        format!(r#"{{"f":{},"r":[{rec},{rec}]}}"#, u64::MAX),
        format!(r#"{{"f":2,"r":[{rec},{rec}]}}"#),
        r#"{"f":5,"r":[]}"#.to_string(),
        "not json".to_string(),
    ];
    for value in &bad {
        {
            let (db, tree) = raw_tree(dir.path());
            let mut key = b"h/".to_vec();
            key.extend_from_slice(&5u64.to_be_bytes());
            tree.insert(key, value.as_bytes()).expect("insert");
            db.flush().expect("flush");
        }
        let s = reopen(dir.path());
        match s.watch_from(4) {
            Err(StoreError::Backend(m)) => assert!(m.contains("history entry 5 is damaged"), "{value}: {m}"),
            other => panic!("{value}: expected a Backend error, got {other:?}"),
        }
        // What does not read the damaged entry works as before.
        assert_eq!(s.list(Kind::VMDefinition).unwrap().0.len(), 6);
        let rvs: Vec<u64> = s.watch_from(5).unwrap().iter().map(|e| e.rv).collect();
        assert_eq!(rvs, [6]);
    }
}
