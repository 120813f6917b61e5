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
        // A folder that does not exist yet: serve on etcd creates it for its token.
        Self::spawn(dir, url, id, ttl, extra)
    }

    /// A further replica: admin's token file copied from `first`, as the README says.
    fn join(first: &Replica, url: &str, id: &str, ttl: &str, extra: &[&str]) -> Replica {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().unwrap();
        std::fs::DirBuilder::new().mode(0o700).create(dir.path().join("data")).unwrap();
        let token = dir.path().join("data").join("token");
        std::fs::write(&token, first.token()).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self::spawn(dir, url, id, ttl, extra)
    }

    fn spawn(dir: tempfile::TempDir, url: &str, id: &str, ttl: &str, extra: &[&str]) -> Replica {
        let child = common::sectl()
            .args(["--store", url, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--replica-id", id, "--lease-ttl", ttl])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Replica { child: Some(child), _dir: dir }
    }

    fn data(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    /// Admin's token, as this replica's token file holds it (waits for the file).
    fn token(&self) -> String {
        let f = self.data().join("token");
        eventually("the token file", Duration::from_secs(30), || {
            std::fs::read_to_string(&f).ok().filter(|t| !t.trim().is_empty()).map(|t| t.trim().to_string())
        })
    }

    /// The API's URL, once the replica listens (it says so on stdout).
    fn url(&mut self) -> String {
        let out = self._dir.path().join("stdout");
        eventually("the replica to listen", Duration::from_secs(30), || {
            self.assert_alive();
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.lines().find_map(|l| l.strip_prefix("sectl serve: listening on ").map(str::to_string))
        })
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
    let lead = a.campaign("a", None, Duration::from_secs(2), move |_| l2.store(true, Ordering::SeqCst)).unwrap();
    assert_eq!(lead.info.holder, "a");
    assert_eq!(a.leader().unwrap().unwrap(), lead.info);
    a.create(vm("by-a", 1)).unwrap();
    // b waits while a leads.
    let b_url = url.clone();
    let b = std::thread::spawn(move || {
        let b = open(&b_url);
        let l = b.campaign("b", None, Duration::from_secs(2), |_| {}).unwrap();
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
    let mut b = Replica::join(&a, &url, "b", "2s", &[]);
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
    let _b = Replica::join(&a, &url, "b", "1s", &[]);
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
    let b = Replica::join(&a, &url, "b", "2s", &["--time-scale", "1000"]);
    std::thread::sleep(Duration::from_millis(300));
    let clock_before = sectl::sim::World::load(&s).unwrap().clock.now_ms;
    a.assert_alive();
    a.kill9();
    let took = wait_leader(&s, "b", Duration::from_secs(2 + 3));
    eprintln!("failover mid-migration: {took:?}");
    // Resumed, not started over: one start message.
    let (_, starts, lm) = migration_ends_on_one_su(&s, clock_before);
    assert_eq!(starts, 1, "{lm}");
    drop(b);
}

/// A plain HTTP request: (status, body).
fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut r = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => r.set("Content-Type", "application/json").send_string(b),
        None => r.call(),
    };
    match res {
        Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

const API: &str = "/apis/sectl.io/v1alpha1";
/// A `sim` request body: move the simulated clock on by a second.
const ADVANCE: &str = r#"{"args":["advance","1s"]}"#;

/// `sectl --server <replica> ...` with the replica's token file; (success, stdout+stderr).
fn cli(r: &Replica, url: &str, args: &[&str]) -> (bool, String) {
    let out = common::sectl().args(["--server", url, "--data-dir"]).arg(r.data()).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A dashboard page read with a session opened by logging in with `token`.
fn ui_get(url: &str, token: &str, path: &str) -> String {
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(30)).build();
    let login = agent
        .post(&format!("{url}/ui/login"))
        .set("Origin", url)
        .send_form(&[("token", token)])
        .unwrap_or_else(|e| panic!("log in at {url}: {e}"));
    assert_eq!(login.status(), 303, "log in at {url}");
    let cookie = login.header("Set-Cookie").expect("a session cookie").split(';').next().unwrap().to_string();
    let page = agent.get(&format!("{url}{path}")).set("Cookie", &cookie).call().unwrap();
    assert_eq!(page.status(), 200);
    page.into_string().unwrap()
}

/// A VM's status state read through a replica's API.
fn vm_state(url: &str, token: &str, name: &str) -> Option<String> {
    let (code, body) = http("GET", &format!("{url}{API}/vmdefinitions/{name}"), Some(token), None);
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["status"]["state"].as_str().map(str::to_string)
}

#[test]
fn a_standby_serves_the_api_and_its_writes_are_reconciled_by_the_leader() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start_with(&url, "a", "2s", &["--time-scale", "1000"]);
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let a_url = a.url();
    let mut b = Replica::join(&a, &url, "b", "2s", &[]);
    // b serves at once, as a standby: a still leads.
    let b_url = b.url();
    assert_eq!(s.leader().unwrap().unwrap().holder, "a");
    let (code, body) = http("GET", &format!("{b_url}/readyz"), None, None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("role=standby") && body.contains(&format!("replica a at {a_url}")), "{body}");
    // a says it leads once its controller runs (it won the key a moment before).
    eventually("a to say it leads", Duration::from_secs(30), || {
        let (code, body) = http("GET", &format!("{a_url}/readyz"), None, None);
        (code == 200 && body.starts_with("ok: role=leader")).then_some(())
    });
    // Admin's token works on both; a wrong one on neither.
    let token = a.token();
    assert_eq!(b.token(), token);
    for u in [&a_url, &b_url] {
        assert_eq!(http("GET", &format!("{u}{API}/vmdefinitions"), Some(&token), None).0, 200);
        assert_eq!(http("GET", &format!("{u}{API}/vmdefinitions"), Some("wrong"), None).0, 401);
    }
    // A user added through the standby is known to the leader, and its token works there.
    let (code, body) =
        http("POST", &format!("{b_url}{API}/users"), Some(&token), Some(r#"{"name":"ops","role":"bs2000-admin"}"#));
    assert_eq!(code, 201, "{body}");
    let ops: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ops_token = ops["token"].as_str().unwrap();
    for u in [&a_url, &b_url] {
        let (code, body) = http("GET", &format!("{u}{API}/whoami"), Some(ops_token), None);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"ops\""), "{body}");
    }
    // The site applied through the standby: the leader's controller reconciles it, and
    // the standby serves the statuses it wrote.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("site.yaml");
    std::fs::write(&f, common::SITE).unwrap();
    let (ok, out) = cli(&b, &b_url, &["apply", "-f", f.to_str().unwrap()]);
    assert!(ok, "{out}");
    eventually("vm12prod RUNNING, read through the standby", Duration::from_secs(60), || {
        (vm_state(&b_url, &token, "vm12prod").as_deref() == Some("RUNNING")).then_some(())
    });
    // What only the leader runs is refused on the standby (503, naming the leader),
    // and carried out on the leader.
    let (code, body) = http("POST", &format!("{b_url}{API}/sim"), Some(&token), Some(ADVANCE));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("replica b is a standby") && body.contains(&format!("replica a at {a_url}")), "{body}");
    let (ok, out) = cli(&b, &b_url, &["sim", "clock"]);
    assert!(!ok && out.contains("standby") && out.contains(&a_url), "{out}");
    let (code, body) = http("GET", &format!("{b_url}{API}/sources"), Some(&token), None);
    assert_eq!(code, 503, "{body}");
    // The dashboard's GitOps page on the standby names the leader instead of showing
    // the standby's own idle view; on the leader it shows the folder's state.
    let page = ui_get(&b_url, &token, "/ui/sources");
    assert!(page.contains("replica b is a standby") && page.contains(&a_url), "{page}");
    let page = ui_get(&a_url, &token, "/ui/sources");
    assert!(!page.contains("standby") && page.contains("No watched files"), "{page}");
    let (code, body) = http("GET", &format!("{a_url}{API}/clock"), Some(&token), None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = http("POST", &format!("{a_url}{API}/sim"), Some(&token), Some(ADVANCE));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("simulatedTime"), "{body}");
    a.assert_alive();
    b.assert_alive();
}

#[test]
fn after_kill_9_of_the_leader_the_serving_standby_takes_over_without_restarting() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start_with(&url, "a", "2s", &["--time-scale", "1000"]);
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let mut b = Replica::join(&a, &url, "b", "2s", &["--time-scale", "1000"]);
    let b_url = b.url();
    let b_pid = b.pid();
    let token = b.token();
    let (code, body) = http("POST", &format!("{b_url}{API}/sim"), Some(&token), Some(ADVANCE));
    assert_eq!(code, 503, "{body}");
    a.assert_alive();
    a.kill9();
    wait_leader(&s, "b", Duration::from_secs(2 + 3));
    wait_elected(&s, 2);
    // The same process, listening all along, now runs the controller.
    b.assert_alive();
    assert_eq!(b.pid(), b_pid);
    eventually("b to say it leads", Duration::from_secs(10), || {
        let (code, body) = http("GET", &format!("{b_url}/readyz"), None, None);
        (code == 200 && body.starts_with("ok: role=leader")).then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("site.yaml");
    std::fs::write(&f, common::SITE).unwrap();
    let (ok, out) = cli(&b, &b_url, &["apply", "-f", f.to_str().unwrap()]);
    assert!(ok, "{out}");
    eventually("vm12prod RUNNING under the new leader", Duration::from_secs(60), || {
        (vm_state(&b_url, &token, "vm12prod").as_deref() == Some("RUNNING")).then_some(())
    });
    let (ok, out) = cli(&b, &b_url, &["sim", "clock"]);
    assert!(ok, "{out}");
    let (code, body) = http("POST", &format!("{b_url}{API}/sim"), Some(&token), Some(ADVANCE));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_replica_without_admins_token_file_is_refused_clearly() {
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let a = Replica::start(&url, "a", "2s");
    wait_leader(&s, "a", Duration::from_secs(30));
    let _ = a.token();
    let mut c = Replica::start(&url, "c", "2s");
    let code = c.wait_exit(Duration::from_secs(30));
    assert!(code.is_some_and(|c| c != 0), "{code:?}");
    let err = c.stderr();
    assert!(err.contains("user admin already exists") && err.contains("copy the token file"), "{err}");
    assert_eq!(s.leader().unwrap().unwrap().holder, "a");
}

/// Kill -9 of the leader in each phase of a live migration (the issue: "in every phase").
/// The leader runs its clock by hand (`--time-scale 0`, moved in steps of 100 ms with
/// `sim advance`) so that the test kills it while the saved world holds the migration
/// in the phase named; "accepted" kills it right after the LiveMigration was applied,
/// before or while it is checked. A standby with a fast clock takes over; the migration
/// ends (completed or rolled back) with the VM on exactly one SU, the books balanced,
/// the clock not gone back, and the migration resumed rather than started again.
#[test]
fn kill_9_of_the_leader_in_each_phase_of_a_migration() {
    use sectl::api::LmPhase;
    let etcd = etcd_server::Etcd::start();
    let phases = [
        ("accepted", None),
        ("setup", Some(LmPhase::Setup)),
        ("copying", Some(LmPhase::Copying)),
        ("suspended", Some(LmPhase::Suspended)),
        ("post-treatment", Some(LmPhase::PostTreatment)),
    ];
    for (name, phase) in phases {
        let ended = kill_in_phase(&etcd.url_with(&format!("phase-{name}")), phase);
        eprintln!("leader killed in phase {name}: the migration ended {ended}");
    }
}

/// One run of the test above on its own key prefix; the phase the migration ended in.
fn kill_in_phase(url: &str, phase: Option<sectl::api::LmPhase>) -> String {
    use sectl::api::{Kind, LmPhase};
    let s = open(url);
    let mut a = Replica::start_with(url, "a", "2s", &["--time-scale", "0"]);
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let a_url = a.url();
    let token = a.token();
    let dir = tempfile::tempdir().unwrap();
    let apply = |yaml: &str| {
        let f = dir.path().join("m.yaml");
        std::fs::write(&f, yaml).unwrap();
        let (ok, out) = cli(&a, &a_url, &["apply", "-f", f.to_str().unwrap()]);
        assert!(ok, "{out}");
    };
    let advance = |by: &str| {
        let body = format!(r#"{{"args":["advance","{by}"]}}"#);
        let (code, out) = http("POST", &format!("{a_url}{API}/sim"), Some(&token), Some(&body));
        assert_eq!(code, 200, "{out}");
    };
    apply(common::SITE);
    eventually("vm12prod RUNNING", Duration::from_secs(60), || {
        advance("1s");
        (status(&s, Kind::VMDefinition, "vm12prod")["state"] == "RUNNING").then_some(())
    });
    let b = Replica::join(&a, url, "b", "2s", &["--time-scale", "1000"]);
    let _ = b.token();
    apply("apiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {name: lm-vm12}\nspec: {vm: vm12prod, targetServerUnit: ABGSE701}\n");
    if let Some(want) = phase {
        let mut seen: Vec<LmPhase> = Vec::new();
        eventually(&format!("the saved migration in phase {want}"), Duration::from_secs(60), || {
            let w = sectl::sim::World::load(&s).unwrap();
            let now = w.migrations.values().find(|m| m.vm == "vm12prod").map(|m| m.phase);
            if let Some(p) = now {
                if seen.last() != Some(&p) {
                    seen.push(p);
                }
            }
            if now == Some(want) {
                return Some(());
            }
            let past = seen.iter().any(|p| rank(*p) > rank(want));
            assert!(!past, "phase {want} passed between two steps of 100 ms: saw {seen:?}");
            advance("100ms");
            None
        });
    }
    let clock_before = sectl::sim::World::load(&s).unwrap().clock.now_ms;
    a.assert_alive();
    a.kill9();
    wait_leader(&s, "b", Duration::from_secs(2 + 3));
    let (ended, n, lm) = migration_ends_on_one_su(&s, clock_before);
    assert!(if ended == "Completed" { n == 1 } else { n <= 1 }, "started {n} times: {lm}");
    drop(b);
    ended
}

/// After a failover: lm-vm12 ends (Completed or Aborted) under the new leader with
/// VM12PROD on exactly one SU (the target or the source), the books balanced and the
/// clock not gone back from `clock_before`. The phase it ended in, how many start
/// messages (VMS2450) it has, and its status.
fn migration_ends_on_one_su(s: &EtcdStore, clock_before: u64) -> (String, usize, serde_json::Value) {
    use sectl::api::Kind;
    let ended = eventually("the migration to end under the new leader", Duration::from_secs(60), || {
        let p = status(s, Kind::LiveMigration, "lm-vm12")["phase"].as_str().unwrap_or("").to_string();
        matches!(p.as_str(), "Completed" | "Aborted").then_some(p)
    });
    let on = if ended == "Completed" { "ABGSE701" } else { "ABGSE501" };
    let w = eventually("the world to agree", Duration::from_secs(10), || {
        let w = sectl::sim::World::load(s).unwrap();
        let vm = status(s, Kind::VMDefinition, "vm12prod");
        (vm["serverUnit"] == on && w.vms.get("vm12prod").is_some_and(|v| v.su == on)).then_some(w)
    });
    assert!(w.audit().is_empty(), "audit: {:#?}", w.audit());
    assert_eq!(w.vms.values().filter(|v| v.vm_name == "VM12PROD").count(), 1, "VM12PROD on exactly one SU");
    assert!(w.clock.now_ms >= clock_before, "the clock went back: {} < {clock_before}", w.clock.now_ms);
    let lm = status(s, Kind::LiveMigration, "lm-vm12");
    let starts =
        lm["messages"].as_array().unwrap().iter().filter(|m| m.as_str().is_some_and(|m| m.contains("VMS2450"))).count();
    (ended, starts, lm)
}

/// The order of a migration's phases in the world (Completed and Aborted last).
fn rank(p: sectl::api::LmPhase) -> usize {
    use sectl::api::LmPhase::*;
    [Pending, Checking, Possible, Rejected, Setup, Copying, Suspended, PostTreatment, Completed, Aborted]
        .iter()
        .position(|x| *x == p)
        .unwrap()
}

/// Restart of everything: a three-member etcd and both replicas killed at once, then
/// started again on the same data. The objects, their statuses, the saved world and
/// the users are as they were, a replica leads again and keeps reconciling.
#[test]
fn after_a_restart_of_all_etcd_members_and_replicas_the_state_is_intact() {
    use sectl::api::Kind;
    let mut etcd = etcd_server::Etcd::cluster(3);
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start_with(&url, "a", "2s", &["--time-scale", "1000"]);
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let a_url = a.url();
    let token = a.token();
    let b = Replica::join(&a, &url, "b", "2s", &["--time-scale", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("site.yaml");
    std::fs::write(&f, common::SITE).unwrap();
    let (ok, out) = cli(&a, &a_url, &["apply", "-f", f.to_str().unwrap()]);
    assert!(ok, "{out}");
    eventually("vm12prod RUNNING", Duration::from_secs(60), || {
        (vm_state(&a_url, &token, "vm12prod").as_deref() == Some("RUNNING")).then_some(())
    });
    let (code, body) =
        http("POST", &format!("{a_url}{API}/users"), Some(&token), Some(r#"{"name":"ops","role":"operator"}"#));
    assert_eq!(code, 201, "{body}");
    let ops: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ops_token = ops["token"].as_str().unwrap().to_string();
    // What is there before: every object with its status, and the saved world.
    let snapshot = |s: &EtcdStore| {
        let mut all = Vec::new();
        for kind in [Kind::SEServer, Kind::ManagementCluster, Kind::SUCluster, Kind::VMDefinition] {
            for o in s.list(kind).unwrap().0 {
                all.push((o.name().to_string(), o.spec_json(), o.status_json()));
            }
        }
        all
    };
    // Settled: two snapshots a second apart agree.
    let before = eventually("the site to settle", Duration::from_secs(30), || {
        let one = snapshot(&s);
        std::thread::sleep(Duration::from_secs(1));
        (snapshot(&s) == one).then_some(one)
    });
    let world_before = sectl::sim::World::load(&s).unwrap();
    drop(s);
    a.kill9();
    drop(b);
    etcd.restart_all();
    let s = open(&etcd.url());
    assert_eq!(snapshot(&s), before);
    assert_eq!(sectl::sim::World::load(&s).unwrap().vms, world_before.vms);
    let mut c = Replica::join(&a, &url, "c", "2s", &["--time-scale", "1000"]);
    wait_leader(&s, "c", Duration::from_secs(30));
    let c_url = c.url();
    for t in [&token, &ops_token] {
        let (code, body) = http("GET", &format!("{c_url}{API}/vmdefinitions/vm12prod"), Some(t), None);
        assert_eq!(code, 200, "{body}");
    }
    // It reconciles: a VM added after the restart runs.
    let vm2 = common::SITE
        .split("\n---\n")
        .find(|d| d.contains("kind: VMDefinition") && d.contains("name: vm12prod"))
        .expect("vm12prod in the site")
        .replace("name: vm12prod", "name: vm13prod")
        .replace("VM12PROD", "VM13PROD")
        .replace("vmIndex: 12", "vmIndex: 13")
        .replace("  devices: [{mn: \"4683\", usage: exclusive}]\n", "");
    assert!(!vm2.contains("4683") && vm2.contains("vmIndex: 13"), "{vm2}");
    std::fs::write(&f, vm2).unwrap();
    let (ok, out) = cli(&c, &c_url, &["apply", "-f", f.to_str().unwrap()]);
    assert!(ok, "{out}");
    eventually("vm13prod RUNNING after the restart", Duration::from_secs(60), || {
        (vm_state(&c_url, &token, "vm13prod").as_deref() == Some("RUNNING")).then_some(())
    });
    assert!(sectl::sim::World::load(&s).unwrap().audit().is_empty());
    c.assert_alive();
}

/// No acknowledged write is lost: a client creates VMs through the leader's API, one
/// after another, while the leader is killed with SIGKILL. Every create answered 201
/// is in the store afterwards (and readable through the new leader); the ones that got
/// no answer may or may not be there.
#[test]
fn acknowledged_writes_survive_kill_9_of_the_replica_that_took_them() {
    use sectl::api::Kind;
    let etcd = etcd_server::Etcd::start();
    let url = etcd.url();
    let s = open(&url);
    let mut a = Replica::start_with(&url, "a", "2s", &["--time-scale", "1000"]);
    wait_leader(&s, "a", Duration::from_secs(30));
    wait_elected(&s, 1);
    let a_url = a.url();
    let token = a.token();
    let mut b = Replica::join(&a, &url, "b", "2s", &["--time-scale", "1000"]);
    let b_url = b.url();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (stop, count, a_url, token) = (stop.clone(), count.clone(), a_url.clone(), token.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("w{i}");
                let body = String::from_utf8(common::vm(&name, 256).to_json()).unwrap();
                let res = ureq::post(&format!("{a_url}{API}/vmdefinitions"))
                    .timeout(Duration::from_secs(5))
                    .set("Authorization", &format!("Bearer {token}"))
                    .set("Content-Type", "application/json")
                    .send_string(&body);
                match res {
                    Ok(r) if r.status() == 201 => {
                        acked.push(name);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("create {name}: {}", r.status()),
                    Err(ureq::Error::Status(code, r)) => panic!("create {name}: {code} {}", r.into_string().unwrap()),
                    // The replica is gone: the write got no answer.
                    Err(_) => break,
                }
            }
            acked
        })
    };
    eventually("some writes acknowledged", Duration::from_secs(30), || {
        (count.load(Ordering::SeqCst) >= 20).then_some(())
    });
    a.assert_alive();
    a.kill9();
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap();
    assert!(acked.len() >= 20, "{} acknowledged", acked.len());
    wait_leader(&s, "b", Duration::from_secs(2 + 3));
    let stored: std::collections::BTreeSet<String> =
        s.list(Kind::VMDefinition).unwrap().0.iter().map(|o| o.name().to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let last = acked.last().unwrap();
    let (code, body) = http("GET", &format!("{b_url}{API}/vmdefinitions/{last}"), Some(&token), None);
    assert_eq!(code, 200, "{body}");
    b.assert_alive();
}
