//! What only `EtcdStore` does: writes larger than one etcd request (128 operations,
//! 1.5 MiB) are staged and made visible by one small commit, so readers see all of
//! such a write or none of it, also when the writer is killed in the middle; a
//! 10,000-entity world saves in pieces; the CLI works on `--store etcd://`; bad
//! `--store` values are refused. Each test starts its own etcd (`apt install
//! etcd-server` when it is missing).

mod common;
mod etcd_server;

use common::vm;
use sectl::api::{Kind, Resource};
use sectl::store::{Batch, EtcdStore, Store};
use std::time::{Duration, Instant};

fn open(url: &str) -> EtcdStore {
    EtcdStore::open(url).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

fn vms(n: usize, memory: u64) -> Vec<Resource> {
    (0..n).map(|i| vm(&format!("vm{i:05}"), memory)).collect()
}

fn big_manifest(n: usize) -> String {
    (0..n).map(|i| format!("---\n{}", common::vm_yaml(&format!("vm{i:05}"), 1024))).collect()
}

/// How many VMDefinitions a fresh reader sees, and whether all have `memory`.
fn seen(url: &str) -> (usize, bool) {
    let s = open(url);
    let (items, _) = s.list(Kind::VMDefinition).unwrap();
    let all_same = items.iter().all(|r| r.spec_json()["memoryMiB"] == items[0].spec_json()["memoryMiB"]);
    (items.len(), all_same)
}

#[test]
fn a_large_apply_is_staged_and_readers_see_all_or_nothing() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let n = 3000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader in another connection, listing while the writes go on.
    let reader = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let r = open(&url);
            let mut counts = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (items, _) = r.list(Kind::VMDefinition).unwrap();
                let mems: std::collections::BTreeSet<String> =
                    items.iter().map(|o| o.spec_json()["memoryMiB"].to_string()).collect();
                counts.insert((items.len(), mems.len()));
            }
            counts
        })
    };
    let out = s.apply(vms(n, 1024), false).unwrap();
    assert_eq!(out.len(), n);
    // Each object's resourceVersion is the revision of the Txn that applied its piece:
    // what a read returns, and not newer than the store's.
    let first = s.resource_version();
    let (listed, list_rv) = s.list(Kind::VMDefinition).unwrap();
    assert_eq!(list_rv, first);
    let returned: std::collections::BTreeMap<&str, &str> =
        out.iter().map(|(_, o)| (o.name(), o.meta().resource_version.as_deref().unwrap())).collect();
    for o in &listed {
        assert_eq!(returned.get(o.name()).copied(), o.meta().resource_version.as_deref(), "{}", o.name());
        assert!(o.meta().rv() <= first && o.meta().rv() > 0);
    }
    // Every object changed in one apply: readers see the old or the new memory, never both.
    s.apply(vms(n, 2048), false).unwrap();
    assert!(s.resource_version() > first);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let counts = reader.join().unwrap();
    for (len, distinct) in &counts {
        assert!(
            (*len == 0 || *len == n) && *distinct <= 1,
            "a reader saw part of a write: {len} objects, {distinct} distinct memory sizes (all seen: {counts:?})"
        );
    }
    // A watch from the first apply has every object of the second, in order.
    let w = s.watch_from(first).unwrap();
    assert_eq!(w.len(), n);
    assert!(w.windows(2).all(|p| p[0].rv <= p[1].rv));
    assert!(w.iter().all(|e| e.rv > first && e.type_ == sectl::store::WatchType::Modified));
    // The write was applied by several Txns: its objects have several revisions. A
    // watch resumed from one of them (a client whose stream broke after that event)
    // gets exactly the write's objects it had not been sent yet.
    let (lo, hi) = (w[0].rv, w[w.len() - 1].rv);
    assert!(lo < hi, "one staged write of {n} objects in one Txn?");
    let rest = s.watch_from(lo).unwrap();
    let expected: Vec<_> = w.iter().filter(|e| e.rv > lo).map(|e| e.object.name().to_string()).collect();
    assert!(!expected.is_empty() && expected.len() < n);
    assert_eq!(rest.iter().map(|e| e.object.name().to_string()).collect::<Vec<_>>(), expected);
    assert_eq!(s.watch_from(hi).unwrap(), vec![]);
    // Nothing of the staging is left behind.
    let left = std::process::Command::new("etcdctl")
        .args(["--endpoints", &url.replace("etcd://", "http://"), "get", "--prefix", "--keys-only", "/sectl/x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "staged pieces left: {:?}", left);
}

#[test]
fn a_writer_killed_in_the_middle_of_a_staged_apply_leaves_all_or_nothing_and_it_is_finished() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let n = 2000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, big_manifest(n)).unwrap();
    // The writer dies (exit 86, no cleanup) after the commit and 3 of its ~40 pieces.
    let out = common::sectl()
        .args(["--store", &url, "--no-reconcile", "--data-dir"])
        .arg(dir.path().join("d"))
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .env("SECTL_TEST_ETCD_DIE_AT_PIECE", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(86), "{}", String::from_utf8_lossy(&out.stderr));
    // Until the dead writer's lease runs out readers see the state before it; then the
    // next reader applies the rest. Never a part.
    let start = Instant::now();
    let mut observed = Vec::new();
    loop {
        let (count, _) = seen(&url);
        observed.push(count);
        assert!(count == 0 || count == n, "a reader saw {count} of {n} objects: {observed:?}");
        if count == n {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "the committed write was never finished: {observed:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let s = open(&url);
    let rv = s.resource_version();
    assert!(rv > 0);
    let w = s.watch_from(0).unwrap();
    assert_eq!(w.len(), n);
    assert!(w.iter().all(|e| e.rv <= rv));
    // The store goes on: the next write is newer.
    let c = s.create(vm("after", 1)).unwrap();
    assert!(c.meta().rv() > rv);
    assert_eq!(s.resource_version(), c.meta().rv());
}

#[test]
fn a_world_of_ten_thousand_entities_saves_in_pieces_atomically() {
    let etcd = etcd_server::Etcd::start();
    let s = open(&etcd.url());
    let value =
        |i: usize, gen: u32| format!("{{\"vm\":{i},\"gen\":{gen},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes();
    let batch = |gen: u32| Batch {
        state: (0..10_000).map(|i| (format!("w/vm/{i:05}"), Some(value(i, gen)))).collect(),
        ..Default::default()
    };
    s.commit_batch(batch(1)).unwrap();
    let got = s.read_state("w/vm/").unwrap();
    assert_eq!(got.len(), 10_000);
    assert!(got.iter().enumerate().all(|(i, (k, v))| *k == format!("w/vm/{i:05}") && *v == value(i, 1)));
    // A second save, read concurrently: every read is one generation throughout.
    let reader = {
        let url = etcd.url();
        std::thread::spawn(move || {
            let r = open(&url);
            let mut gens = Vec::new();
            for _ in 0..20 {
                let st = r.read_state("w/vm/").unwrap();
                let g: std::collections::BTreeSet<u64> = st
                    .iter()
                    .map(|(_, v)| serde_json::from_slice::<serde_json::Value>(v).unwrap()["gen"].as_u64().unwrap())
                    .collect();
                gens.push((st.len(), g.len()));
            }
            gens
        })
    };
    s.commit_batch(batch(2)).unwrap();
    for (len, distinct) in reader.join().unwrap() {
        assert_eq!((len, distinct), (10_000, 1), "a reader saw a half-saved world");
    }
    assert!(s.read_state("w/vm/").unwrap().iter().enumerate().all(|(i, (_, v))| *v == value(i, 2)));
}

#[test]
fn the_cli_works_on_etcd_and_bad_store_values_are_refused() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vm.yaml");
    std::fs::write(&file, common::vm_yaml("web", 1024)).unwrap();
    let run = |args: &[&str]| {
        let out = common::sectl()
            .args(["--store", &url, "--no-reconcile", "--data-dir"])
            .arg(dir.path().join("d"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["get", "vm", "web", "-o", "name"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("web"), "{out}");
    // The embedded data dir was not used for objects.
    assert!(!dir.path().join("d").join("db").exists(), "sled was opened although --store is etcd");
    for (bad, says) in [
        ("etcd://nohostport", "not HOST:PORT"),
        ("postgres://h:1", "expected etcd://"),
        ("etcds://h:1", "TLS to etcd needs --etcd-cafile"),
        ("https://h:1", "write etcds://"),
        ("mysql", "expected `sled` or `etcd://"),
    ] {
        let out = common::sectl().args(["--store", bad, "get", "vm"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "--store {bad}: {err}");
    }
    // Election flags are refused where they would mean nothing, and bad TTLs always.
    for (args, says) in [
        (vec!["serve", "--lease-ttl", "3s"], "--lease-ttl and --replica-id are for replicas"),
        (vec!["serve", "--replica-id", "a"], "--lease-ttl and --replica-id are for replicas"),
        (vec!["--store", url.as_str(), "serve", "--lease-ttl", "500ms"], "a whole number of seconds"),
        (vec!["--store", url.as_str(), "serve", "--lease-ttl", "soon"], "--lease-ttl"),
        (vec!["get", "leader"], "needs --store etcd://"),
    ] {
        let out = common::sectl().arg("--data-dir").arg(dir.path().join("d2")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    // An etcd that is not there: a clear error naming it, no hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let out = common::sectl().args(["--store", &format!("etcd://127.0.0.1:{port}"), "get", "vm"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

/// Processes sharing one etcd (as `serve` replicas do) add the same user at once:
/// exactly one gets it, the others are told it exists, and the audit chain verifies
/// with one record per attempt (no seq written twice, no fork).
#[test]
fn processes_adding_the_same_user_at_once_get_it_once_and_keep_one_audit_chain() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().unwrap();
    let n = 6;
    let children: Vec<_> = (0..n)
        .map(|i| {
            common::sectl()
                .args(["--store", &url, "--data-dir"])
                .arg(dir.path().join(format!("d{i}")))
                .args(["user", "add", "bob", "--role", "operator"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("exists"), "a loser must be told bob exists: {err}");
    }
    assert_eq!(won, 1, "exactly one process adds bob");
    let s = open(&url);
    let v = sectl::auth::audit::verify(&s).unwrap();
    assert_eq!(v.broken, None, "{v:?}");
    let adds = sectl::auth::audit::records(&s).unwrap().into_iter().filter(|r| r.verb == "user-add").count();
    assert_eq!(adds, n, "one audit record per attempt");
}

/// `etcdctl get KEY -w json` on a plain etcd: (mod_revision, create_revision) of the key.
fn etcdctl_revisions(url: &str, key: &str) -> Option<(u64, u64)> {
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &url.replace("etcd://", "http://"), "get", key, "-w", "json"])
        .output()
        .expect("etcdctl (apt install etcd-client)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let kv = v["kvs"].get(0)?;
    Some((kv["mod_revision"].as_u64().unwrap(), kv["create_revision"].as_u64().unwrap()))
}

fn etcdctl_keys(url: &str, prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &url.replace("etcd://", "http://"), "get", "--prefix", "--keys-only", prefix])
        .output()
        .expect("etcdctl (apt install etcd-client)");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// resourceVersion is etcd's revision: an object's is its key's mod_revision, a
/// list's the revision of the last object write; a continued list reads at its first
/// page's revision; after a compaction a watch from before it is Expired (410) and a
/// list continued there SnapshotGone (410), and older tombstones are gone.
#[test]
fn resource_versions_are_etcd_revisions_and_compaction_expires_old_ones() {
    use sectl::store::{StoreError, WatchType};
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let a = s.create(vm("a", 1)).unwrap();
    let (modr, create) = etcdctl_revisions(&url, "/sectl/o/VMDefinition/a").expect("a stored");
    assert_eq!((a.meta().rv(), a.meta().rv()), (modr, create));
    let a2 = s.update(vm("a", 2)).unwrap();
    assert_eq!(etcdctl_revisions(&url, "/sectl/o/VMDefinition/a"), Some((a2.meta().rv(), create)));
    for n in ["b", "c", "d"] {
        s.create(vm(n, 1)).unwrap();
    }
    let (_, list_rv) = s.list(Kind::VMDefinition).unwrap();
    assert_eq!(Some(list_rv), etcdctl_revisions(&url, "/sectl/m/objects").map(|r| r.0));
    // Events and controller state are not objects: they leave the resourceVersion alone.
    s.commit_batch(Batch { state: vec![("t/x".into(), Some(b"1".to_vec()))], ..Default::default() }).unwrap();
    assert_eq!(s.resource_version(), list_rv);

    // A list in pages: the second page, read after changes, is the state of the first.
    let p1 = s.list_page(Kind::VMDefinition, None, 2, None).unwrap();
    assert_eq!((p1.items.len(), p1.more, p1.rv), (2, true, list_rv));
    s.update(vm("c", 99)).unwrap();
    let gone = s.delete(Kind::VMDefinition, "d").unwrap();
    assert_eq!(etcdctl_revisions(&url, "/sectl/o/VMDefinition/d"), None);
    let p2 = s.list_page(Kind::VMDefinition, Some("b"), 10, Some(p1.rv)).unwrap();
    let names: Vec<&str> = p2.items.iter().map(|o| o.name()).collect();
    assert_eq!(names, ["c", "d"], "the page is read at the first page's revision");
    assert_eq!(p2.items[0].spec_json()["memoryMiB"], 1);
    // The deletion has its own revision, the tombstone's; a watch reports it.
    let w = s.watch_from(list_rv).unwrap();
    let seen: Vec<(WatchType, &str, u64)> = w.iter().map(|e| (e.type_, e.object.name(), e.rv)).collect();
    let c2 = s.get(Kind::VMDefinition, "c").unwrap().unwrap();
    assert_eq!(seen, [(WatchType::Modified, "c", c2.meta().rv()), (WatchType::Deleted, "d", gone.meta().rv())]);
    assert_eq!(etcdctl_keys(&url, "/sectl/d/").len(), 1, "one tombstone");

    // Compaction: older resourceVersions are gone, newer ones work.
    let to = s.compact_now().unwrap();
    assert_eq!(to, gone.meta().rv());
    match s.watch_from(list_rv) {
        Err(StoreError::Expired { requested, oldest }) => assert_eq!((requested, oldest), (list_rv, to)),
        other => panic!("expected Expired, got {other:?}"),
    }
    match s.list_page(Kind::VMDefinition, Some("b"), 10, Some(p1.rv)) {
        Err(StoreError::SnapshotGone { at, .. }) => assert_eq!(at, p1.rv),
        other => panic!("expected SnapshotGone, got {other:?}"),
    }
    assert_eq!(s.watch_from(to).unwrap(), vec![]);
    assert!(etcdctl_keys(&url, "/sectl/d/").is_empty(), "tombstones before the compaction are dropped");
    // etcd itself was compacted: reading at an older revision fails there too.
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &url.replace("etcd://", "http://"), "get", "/sectl/o/VMDefinition/a"])
        .arg(format!("--rev={}", list_rv))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("compacted"), "{out:?}");
    // Another process sees the same.
    let other = open(&url);
    assert!(matches!(other.watch_from(list_rv), Err(StoreError::Expired { .. })));
    let e = s.create(vm("e", 1)).unwrap();
    assert_eq!(other.watch_from(to).unwrap().len(), 1);
    assert!(e.meta().rv() > to);
}

/// The background compaction of a long-running process (`SECTL_ETCD_COMPACTION_INTERVAL`
/// seconds) and a bad value of it refused.
#[test]
fn a_serving_process_compacts_the_history_every_interval() {
    use sectl::store::StoreError;
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().unwrap();
    let with_interval = |v: &str| {
        common::sectl()
            .args(["--store", &url, "--data-dir"])
            .arg(dir.path().join("d"))
            .args(["get", "vm"])
            .env("SECTL_ETCD_COMPACTION_INTERVAL", v)
            .output()
            .unwrap()
    };
    for bad in ["soon", "-1", "1.5", "18446744073709551616", ""] {
        let out = with_interval(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("SECTL_ETCD_COMPACTION_INTERVAL"), "{bad:?}: {err}");
    }
    // The largest number is an interval that never comes round: no overflow, no panic.
    let out = with_interval("18446744073709551615");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _serve = Kill(
        common::sectl()
            .args(["--store", &url, "--data-dir"])
            .arg(dir.path().join("d"))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--replica-id", "a"])
            .env("SECTL_ETCD_COMPACTION_INTERVAL", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let s = open(&url);
    let a = s.create(vm("a", 1)).unwrap();
    s.delete(Kind::VMDefinition, "a").unwrap();
    let start = Instant::now();
    loop {
        match s.watch_from(a.meta().rv()) {
            Err(StoreError::Expired { oldest, .. }) if oldest > a.meta().rv() => break,
            other => {
                assert!(start.elapsed() < Duration::from_secs(20), "not compacted after 20 s: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    assert!(etcdctl_keys(&url, "/sectl/d/").is_empty(), "the tombstone of a was not dropped");
}
