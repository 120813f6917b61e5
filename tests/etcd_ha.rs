//! High availability on etcd: leader election among `serve` replicas, fencing of a
//! deposed leader, failover after kill -9, and a three-member etcd that loses a member.
//! Each test starts its own etcd (`apt install etcd-server` when it is missing) and its
//! own replicas, and stops them by PID.

mod common;
mod etcd_server;

use common::vm;
use sectl::store::{Batch, EtcdStore, Store};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open(url: &str) -> EtcdStore {
    EtcdStore::open(url).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

/// A `sectl serve` replica, killed on drop.
struct Replica {
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(url: &str, id: &str, ttl: &str) -> Replica {
        Self::start_with(url, id, ttl, &[])
    }

    fn start_with(url: &str, id: &str, ttl: &str, extra: &[&str]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let child = common::sectl()
            .args(["--store", url, "--data-dir"])
            // A folder that does not exist yet: serve on etcd creates it for its token.
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--replica-id", id, "--lease-ttl", ttl])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Replica { child: Some(child), _dir: dir }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr")).unwrap_or_default()
    }

    /// Still running (a replica that died by itself would fake a failover).
    fn assert_alive(&mut self) {
        let st = self.child.as_mut().expect("started").try_wait().unwrap();
        assert!(st.is_none(), "the replica exited by itself ({st:?}): {}", self.stderr());
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to end by itself; its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(st) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the replica did not exit within {within:?}")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process must be continued to die of SIGKILL promptly.
            // SAFETY: as in `signal`.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
        }
        self.kill9();
    }
}

/// Waits until `n` LeaderElected events are recorded (a leader records its own right
/// after taking the key: a replica stopped in between never does).
fn wait_elected(s: &EtcdStore, n: usize) {
    let count = || s.events().unwrap().iter().filter(|e| e.reason == "LeaderElected").count();
    let start = Instant::now();
    while count() < n {
        assert!(start.elapsed() < Duration::from_secs(30), "{n} LeaderElected events not recorded: {}", count());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `holder` leads; how long that took.
fn wait_leader(s: &EtcdStore, holder: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if s.leader().unwrap().is_some_and(|l| l.holder == holder) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{holder} did not lead within {within:?} (leader: {:?})", s.leader());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_deposed_leader_writes_nothing_and_learns_it_lost() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let a = open(&url);
    let lost = Arc::new(AtomicBool::new(false));
    let l2 = lost.clone();
    let lead = a.campaign("a", Duration::from_secs(2), move |_| l2.store(true, Ordering::SeqCst)).unwrap();
    assert_eq!(lead.info.holder, "a");
    assert_eq!(a.leader().unwrap().unwrap(), lead.info);
    a.create(vm("by-a", 1)).unwrap();
    // b waits while a leads.
    let b_url = url.clone();
    let b = std::thread::spawn(move || {
        let b = open(&b_url);
        let l = b.campaign("b", Duration::from_secs(2), |_| {}).unwrap();
        (b, l)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!b.is_finished(), "b led while a's lease was alive");
    // a's lease ends behind its back (as when a was stopped past its TTL).
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &url.replace("etcd://", "http://"), "lease", "revoke", &format!("{:x}", lead.lease)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (b, bl) = b.join().unwrap();
    assert_eq!(bl.info.holder, "b");
    // Every write of a is refused now, and writes nothing.
    let rv = b.resource_version();
    let err = a.create(vm("by-a-late", 1)).unwrap_err().to_string();
    assert!(err.contains("no longer leads"), "{err}");
    let batch = Batch { state: vec![("w/clock".into(), Some(b"late".to_vec()))], ..Default::default() };
    assert!(a.commit_batch(batch).unwrap_err().to_string().contains("no longer leads"));
    assert_eq!(b.resource_version(), rv);
    assert_eq!(b.get(sectl::api::Kind::VMDefinition, "by-a-late").unwrap(), None);
    assert!(b.read_state("w/clock").unwrap().is_empty());
    // b writes.
    b.create(vm("by-b", 1)).unwrap();
    let start = Instant::now();
    while !lost.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(5), "a never learnt it lost the lead");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_of_the_leader_hands_over_within_the_ttl() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start(&url, "a", "2s");
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let mut b = Replica::start(&url, "b", "2s");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.leader().unwrap().unwrap().holder, "a", "b took over while a was alive");
    a.assert_alive();
    a.kill9();
    let took = wait_leader(&s, "b", Duration::from_secs(2 + 3));
    eprintln!("failover after kill -9: {took:?}");
    // The change is in the event log (recorded by b right after it took the key).
    let elected = || -> Vec<String> {
        let evs = s.events().unwrap();
        evs.iter()
            .filter(|e| e.reason == "LeaderElected" && e.component == "Cluster")
            .map(|e| e.object.clone())
            .collect()
    };
    let start = Instant::now();
    while elected().len() < 2 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(elected(), ["replica/a", "replica/b"]);
    // `sectl get leader -o json` says so.
    let out = common::sectl().args(["--store", &url, "get", "leader", "-o", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(v["holder"], "b");
    assert!(v["since"].as_str().is_some_and(|t| humantime::parse_rfc3339(t).is_ok()), "{v}");
    b.kill9();
}

#[test]
fn a_stopped_leader_resumed_after_its_ttl_steps_down_and_exits() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start(&url, "a", "1s");
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let _b = Replica::start(&url, "b", "1s");
    a.assert_alive();
    a.signal(libc::SIGSTOP);
    wait_leader(&s, "b", Duration::from_secs(1 + 3));
    let elected = || s.events().unwrap().iter().filter(|e| e.reason == "LeaderElected").count();
    let start = Instant::now();
    while elected() < 2 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(elected(), 2);
    a.signal(libc::SIGCONT);
    // Its keep-alive finds the lease gone (exit 3), or its first write is refused by
    // the fence and the controller loop stops the process: either way it writes nothing.
    let code = a.wait_exit(Duration::from_secs(10));
    let err = a.stderr();
    assert!(code.is_some_and(|c| c != 0), "a deposed leader must exit non-zero, got {code:?}: {err}");
    assert!(err.contains("lost the leadership") || err.contains("no longer leads"), "{err}");
    assert_eq!(s.leader().unwrap().unwrap().holder, "b");
}

#[test]
fn a_three_member_etcd_keeps_working_without_one_member() {
    let mut etcd = etcd_server::Etcd::cluster(3);
    let s = open(&etcd.url());
    s.create(vm("before", 1)).unwrap();
    etcd.kill(0);
    // The members elect a new etcd leader if needed; writes go on within seconds.
    let start = Instant::now();
    let mut i = 0;
    while i < 20 {
        match s.create(vm(&format!("after{i}"), 1)) {
            Ok(_) => i += 1,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(20), "etcd with 2 of 3 members refused writes: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let (items, _) = s.list(sectl::api::Kind::VMDefinition).unwrap();
    assert_eq!(items.len(), 21);
    // A new client given only the surviving members works too.
    let fresh = open(&etcd.url());
    assert_eq!(fresh.list(sectl::api::Kind::VMDefinition).unwrap().0.len(), 21);
}

/// The status of an object as JSON (null when it does not exist).
fn status(s: &EtcdStore, kind: sectl::api::Kind, name: &str) -> serde_json::Value {
    s.get(kind, name).unwrap().map(|o| o.status_json()).unwrap_or_default()
}

fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_9_of_the_leader_mid_migration_the_next_leader_finishes_it_and_the_vm_is_on_one_su() {
    use sectl::api::Kind;
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start_with(&url, "a", "2s", &["--time-scale", "1"]);
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let dir = tempfile::tempdir().unwrap();
    let apply = |yaml: &str| {
        let f = dir.path().join("m.yaml");
        std::fs::write(&f, yaml).unwrap();
        // --no-reconcile: the leader's controller does the work, not this CLI.
        let out = common::sectl()
            .args(["--store", &url, "--no-reconcile", "--data-dir"])
            .arg(dir.path().join("cli"))
            .arg("apply")
            .arg("-f")
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // 16 GiB over a 1 Gbit/s ISL-E: round 0 alone takes over two simulated minutes.
    let site =
        common::SITE.replace("bandwidthGbps: 10", "bandwidthGbps: 1").replace("memoryMiB: 2048", "memoryMiB: 16384");
    assert_ne!(site, common::SITE);
    apply(&site);
    eventually("vm12prod RUNNING", Duration::from_secs(30), || {
        (status(&s, Kind::VMDefinition, "vm12prod")["state"] == "RUNNING").then_some(())
    });
    apply("apiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {name: lm-vm12}\nspec: {vm: vm12prod, targetServerUnit: ABGSE701}\n");
    eventually("the migration copying", Duration::from_secs(30), || {
        (status(&s, Kind::LiveMigration, "lm-vm12")["phase"] == "Copying").then_some(())
    });
    // The next leader runs its clock faster, so the rest takes seconds.
    let b = Replica::start_with(&url, "b", "2s", &["--time-scale", "1000"]);
    std::thread::sleep(Duration::from_millis(300));
    let clock_before = sectl::sim::World::load(&s).unwrap().clock.now_ms;
    a.assert_alive();
    a.kill9();
    let took = wait_leader(&s, "b", Duration::from_secs(2 + 3));
    eprintln!("failover mid-migration: {took:?}");
    let phase = eventually("the migration to end under the new leader", Duration::from_secs(60), || {
        let p = status(&s, Kind::LiveMigration, "lm-vm12")["phase"].as_str().unwrap_or("").to_string();
        matches!(p.as_str(), "Completed" | "Aborted").then_some(p)
    });
    let expect = if phase == "Completed" { "ABGSE701" } else { "ABGSE501" };
    let w = eventually("the world to agree", Duration::from_secs(10), || {
        let w = sectl::sim::World::load(&s).unwrap();
        let vm = status(&s, Kind::VMDefinition, "vm12prod");
        (vm["serverUnit"] == expect && w.vms.get("vm12prod").is_some_and(|v| v.su == expect)).then_some(w)
    });
    assert!(w.audit().is_empty(), "audit: {:#?}", w.audit());
    assert_eq!(w.vms.values().filter(|v| v.vm_name == "VM12PROD").count(), 1, "VM12PROD on exactly one SU");
    assert!(w.clock.now_ms >= clock_before, "the clock went back: {} < {clock_before}", w.clock.now_ms);
    // Resumed, not started over: one start message.
    let lm = status(&s, Kind::LiveMigration, "lm-vm12");
    let starts =
        lm["messages"].as_array().unwrap().iter().filter(|m| m.as_str().is_some_and(|m| m.contains("VMS2450")));
    assert_eq!(starts.count(), 1, "{lm}");
    drop(b);
}
