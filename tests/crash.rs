//! Issue 9, end to end: kill -9 (and aborts at every batch boundary) while the
//! controller works, then a restart; afterwards `sectl check` finds nothing, every VM
//! was created exactly once, every live migration completed exactly once, and every
//! acknowledged write is there. Also: a panicking reconcile, a dying engine, and two
//! applies racing with clashing unit names.
//!
//! Sites are small enough to keep each test within a minute of a debug build (the
//! README reports the 10,000-VM figure). Every wait is bounded.

mod common;

use common::SITE;
use sectl::api::{Kind, VMDefinitionSpec};
use sectl::sim::World;
use sectl::store::{SledStore, Store};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Trials per kill test.
const TRIALS: usize = 20;
/// The longest a wait may take.
const LIMIT: Duration = Duration::from_secs(60);

/// A site of `clusters` pairs of x86 servers with `sus` SUs each and `vms` VMs.
fn site(clusters: usize, sus: usize, vms: usize) -> String {
    let mut s = String::new();
    for c in 0..clusters {
        for side in ["a", "b"] {
            let _ = write!(
                s,
                "---\napiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: se-{side}{c}}}\nspec:\n  model: SE310\n  version: V6.3\n  netUnit: {{speedGbps: 10}}\n  managementUnits: [{{name: mu-{side}{c}}}]\n  serverUnits:\n"
            );
            for u in 0..sus {
                let _ = writeln!(
                    s,
                    "    - {{name: SU{side}{c}X{u}, type: \"x86\", cpus: 16, memoryMiB: 262144, cpuPools: [{{name: \"*STDPOOL\", cpus: 16}}]}}"
                );
            }
        }
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: ManagementCluster\nmetadata: {{name: mc{c}}}\nspec:\n  servers: [se-a{c}, se-b{c}]\n  islE: {{bandwidthGbps: 10}}\n  configDisks: [{{name: crd{c}a}}, {{name: crd{c}b}}]\n"
        );
    }
    let total = clusters * 2 * sus;
    for i in 0..vms {
        let su_i = i % total;
        let c = su_i / (2 * sus);
        let side = if (su_i / sus).is_multiple_of(2) { "a" } else { "b" };
        let u = su_i % sus;
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm{i:05}}}\nspec:\n  vmName: V{i:05}\n  serverUnit: SU{side}{c}X{u}\n  state: RUNNING\n  memoryMiB: 1024\n"
        );
    }
    s
}

fn vm_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("vm{i:05}")).collect()
}

fn sectl(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sectl"));
    c.arg("--data-dir")
        .arg(data)
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_DATA_DIR")
        .env_remove("SECTL_TEST_PANIC_RECONCILE")
        .env_remove("SECTL_TEST_PANIC_ENGINE")
        .env_remove("SECTL_TEST_ABORT_AFTER_BATCHES")
        .stdin(Stdio::null());
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

/// A child killed (SIGKILL) and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// After a restart has settled: `sectl check` is clean, every VM in `vms` is in the
/// world with a status that agrees, and was created exactly once (plus once on the
/// target of each completed live migration: BS2000 resumes there).
fn verify(data: &Path, vms: &[String], what: &str) {
    let out = sectl(data).arg("check").output().expect("run check");
    assert!(
        out.status.success(),
        "{what}: sectl check found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let store = open_store(data);
    let w = World::load(&store).expect("world");
    let evs = store.events().expect("events");
    for n in vms {
        let created = evs.iter().filter(|e| e.reason == "VmCreated" && e.object == format!("VMDefinition/{n}")).count();
        let migrated = store
            .list(Kind::LiveMigration)
            .expect("list")
            .0
            .iter()
            .filter(|l| l.spec_json()["vm"] == n.as_str() && l.status_json()["phase"] == "Completed")
            .count();
        assert_eq!(created, 1 + migrated, "{what}: VM {n} created {created} times ({migrated} migrations)");
        let v = w.vms.get(n).unwrap_or_else(|| panic!("{what}: VM {n} missing from the world"));
        let o = store.get(Kind::VMDefinition, n).expect("get").unwrap_or_else(|| panic!("{what}: {n} lost"));
        let o = o.as_typed::<VMDefinitionSpec>().expect("typed");
        assert_eq!(o.status.server_unit.as_deref(), Some(v.su.as_str()), "{what}: {n}");
    }
}

/// Opens a store this process closed a moment ago. sled lets go of its file lock
/// from a background thread shortly after the handle is dropped, so a reopen at once
/// can find it still held; it is retried for a moment (the store's open/drop fix is
/// being made apart from this work).
fn open_store(p: &Path) -> SledStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(p) {
            Ok(s) => return s,
            Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("open {}: {e}", p.display()),
        }
    }
}

/// Copies a (closed) data folder.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).expect("copy");
        }
    }
}

#[cfg(unix)]
#[test]
fn kill_9_at_random_moments_of_an_embedded_apply_of_a_large_site() {
    const VMS: usize = 300;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = write(tmp.path(), "site.yaml", &site(2, 2, VMS));
    // How long an uninterrupted apply takes: the kills are spread over it.
    let full = tmp.path().join("full");
    let t0 = Instant::now();
    ok(sectl(&full).args(["apply", "-f"]).arg(&file).output().expect("apply"), "full apply");
    let span = t0.elapsed();
    verify(&full, &vm_names(VMS), "uninterrupted");
    let mut killed_mid_run = 0;
    for i in 0..TRIALS {
        let data = tmp.path().join(format!("t{i}"));
        let mut child = Guard(
            sectl(&data)
                .args(["apply", "-f"])
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn"),
        );
        // Spread over the first 80 % of a full run (the machine may be faster now).
        std::thread::sleep(span.mul_f64(0.8 * (i as f64 + 0.5) / TRIALS as f64));
        if child.0.try_wait().expect("try_wait").is_none() {
            killed_mid_run += 1;
        }
        drop(child);
        // Restart: the same apply again settles what is left.
        ok(sectl(&data).args(["apply", "-f"]).arg(&file).output().expect("apply"), "apply after kill");
        verify(&data, &vm_names(VMS), &format!("trial {i}"));
    }
    assert!(killed_mid_run >= TRIALS / 4, "only {killed_mid_run} kills landed while the apply ran");
}

/// The site of the migration tests: vm12prod (16 GiB) migrates over a 1 Gbit/s ISL-E.
fn lm_site() -> String {
    SITE.replace("bandwidthGbps: 10", "bandwidthGbps: 1").replace("memoryMiB: 2048", "memoryMiB: 16384")
}

const LM: &str = "apiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {name: lm-vm12}\nspec: {vm: vm12prod, targetServerUnit: ABGSE701}\n";

/// After the migration was applied again and settled: it completed exactly once.
fn verify_lm(data: &Path, what: &str) {
    verify(data, &["vm12prod".to_string()], what);
    let store = open_store(data);
    let w = World::load(&store).expect("world");
    assert_eq!(w.vms.get("vm12prod").map(|v| v.su.as_str()), Some("ABGSE701"), "{what}");
    let evs = store.events().expect("events");
    let done = evs.iter().filter(|e| e.reason == "LiveMigrationCompleted").count();
    assert_eq!(done, 1, "{what}: completed {done} times");
    let lm = store.get(Kind::LiveMigration, "lm-vm12").expect("get").expect("lm");
    assert_eq!(lm.status_json()["phase"], "Completed", "{what}");
}

#[cfg(unix)]
#[test]
fn abort_at_every_batch_boundary_of_a_live_migration() {
    let tmp = tempfile::tempdir().expect("tmp");
    let site = write(tmp.path(), "site.yaml", &lm_site());
    let lm = write(tmp.path(), "lm.yaml", LM);
    let template = tmp.path().join("template");
    ok(sectl(&template).args(["apply", "-f"]).arg(&site).output().expect("apply"), "site");
    let mut n = 0u64;
    loop {
        let data = tmp.path().join(format!("n{n}"));
        copy_dir(&template, &data);
        let out = sectl(&data)
            .args(["apply", "-f"])
            .arg(&lm)
            .env("SECTL_TEST_ABORT_AFTER_BATCHES", n.to_string())
            .output()
            .expect("apply lm");
        let finished = out.status.success();
        if !finished {
            assert_eq!(out.status.code(), None, "aborted by the hook (a signal), not an error: {out:?}");
            ok(sectl(&data).args(["apply", "-f"]).arg(&lm).output().expect("apply"), "apply after abort");
        }
        verify_lm(&data, &format!("aborted before batch {}", n + 1));
        std::fs::remove_dir_all(&data).expect("clean up");
        if finished {
            break;
        }
        n += 1;
        assert!(n < 500, "the migration never finished");
    }
    assert!(n >= 8, "a live migration takes several batches (phases); only {n} seen");
}

/// A running `sectl serve` (plain HTTP on loopback), killed with SIGKILL on drop.
struct Server {
    _guard: Guard,
    url: String,
}

impl Server {
    fn start(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut c = sectl(data);
        c.args(["serve", "--listen", "127.0.0.1:0", "--insecure-http"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let guard = Guard(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx.recv_timeout(LIMIT).expect("serve printed its address");
        let url = first.rsplit(' ').next().expect("url").to_string();
        Server { _guard: guard, url }
    }

    fn cli(&self, data: &Path, args: &[&str]) -> Output {
        sectl(data).arg("--server").arg(&self.url).args(args).output().expect("cli")
    }
}

#[cfg(unix)]
#[test]
fn kill_9_at_random_moments_of_a_serve_convergence() {
    const VMS: usize = 150;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = write(tmp.path(), "site.yaml", &site(1, 2, VMS));
    for i in 0..TRIALS {
        let data = tmp.path().join(format!("t{i}"));
        let s = Server::start(&data, &["--time-scale", "1000"], &[]);
        // Acknowledged: after this returns, every object must survive the kill.
        ok(s.cli(&data, &["apply", "-f", file.to_str().expect("utf-8")]), "apply through serve");
        std::thread::sleep(Duration::from_millis(40 * i as u64));
        drop(s);
        ok(sectl(&data).args(["apply", "-f"]).arg(&file).output().expect("apply"), "apply after kill");
        verify(&data, &vm_names(VMS), &format!("trial {i}"));
    }
}

/// Kill -9 while `serve --watch` applies a folder (its GitOps sync and the reconciles
/// that follow), at a moment moving through the sync; then the folder is applied again
/// and the store must be one the controller passed through.
#[cfg(unix)]
#[test]
fn kill_9_at_random_moments_of_a_gitops_sync() {
    const VMS: usize = 150;
    let tmp = tempfile::tempdir().expect("tmp");
    let folder = tmp.path().join("site");
    std::fs::create_dir(&folder).expect("folder");
    write(&folder, "site.yaml", &site(1, 2, VMS));
    let folder_arg = folder.to_str().expect("utf-8");
    for i in 0..TRIALS {
        let data = tmp.path().join(format!("t{i}"));
        let s = Server::start(&data, &["--time-scale", "1000", "--watch", folder_arg, "--settle", "100ms"], &[]);
        std::thread::sleep(Duration::from_millis(60 * i as u64));
        drop(s);
        ok(sectl(&data).args(["apply", "-f"]).arg(&folder).output().expect("apply"), "apply after kill");
        verify(&data, &vm_names(VMS), &format!("trial {i}"));
    }
}

#[cfg(unix)]
#[test]
fn kill_9_during_and_right_after_a_live_migration_in_serve() {
    let tmp = tempfile::tempdir().expect("tmp");
    let site = write(tmp.path(), "site.yaml", &lm_site());
    let lm = write(tmp.path(), "lm.yaml", LM);
    let mut after_completed = 0;
    for i in 0..TRIALS {
        let data = tmp.path().join(format!("t{i}"));
        ok(sectl(&data).args(["apply", "-f"]).arg(&site).output().expect("apply"), "site");
        let s = Server::start(&data, &["--time-scale", "2000"], &[]);
        ok(s.cli(&data, &["apply", "-f", lm.to_str().expect("utf-8")]), "apply lm");
        // Half of the trials kill at a moment within the migration; the other half
        // right after the API reported Completed.
        let reported = if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(8 * i as u64));
            None
        } else {
            let out = s.cli(&data, &["wait", "lm/lm-vm12", "--for=phase=Completed", "--timeout", "60s"]);
            ok(out, "wait for Completed");
            Some(())
        };
        drop(s);
        if reported.is_some() {
            after_completed += 1;
            // What the API reported is what the store holds (no settle in between).
            let store = open_store(&data);
            let lmo = store.get(Kind::LiveMigration, "lm-vm12").expect("get").expect("lm");
            assert_eq!(lmo.status_json()["phase"], "Completed", "trial {i}: the reported phase was lost");
            let w = World::load(&store).expect("world");
            assert_eq!(w.vms.get("vm12prod").map(|v| v.su.as_str()), Some("ABGSE701"), "trial {i}");
        }
        ok(sectl(&data).args(["apply", "-f"]).arg(&lm).output().expect("apply"), "apply after kill");
        verify_lm(&data, &format!("trial {i}"));
    }
    assert_eq!(after_completed, TRIALS / 2);
}

#[cfg(unix)]
#[test]
fn resource_versions_are_never_served_twice_across_kill_9() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("d");
    let site = write(tmp.path(), "site.yaml", &lm_site());
    let lm = write(tmp.path(), "lm.yaml", LM);
    ok(sectl(&data).args(["apply", "-f"]).arg(&site).output().expect("apply"), "site");
    let mut served = 0u64;
    for i in 0..5 {
        let s = Server::start(&data, &["--time-scale", "2000"], &[]);
        if i == 0 {
            ok(s.cli(&data, &["apply", "-f", lm.to_str().expect("utf-8")]), "apply lm");
        }
        std::thread::sleep(Duration::from_millis(100));
        let out = ok(s.cli(&data, &["get", "lm", "lm-vm12", "-o", "json"]), "get");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let rv: u64 = v["metadata"]["resourceVersion"].as_str().expect("rv").parse().expect("number");
        served = served.max(rv);
        drop(s);
        let store = open_store(&data);
        assert!(store.resource_version() >= served, "the store went back behind a served version");
        let next = store.create(common::vm(&format!("probe{i}"), 64)).expect("create");
        assert!(next.meta().rv() > served, "rv {} handed out again after a kill", next.meta().rv());
        store.delete(Kind::VMDefinition, &format!("probe{i}")).expect("delete");
        served = served.max(store.resource_version());
    }
}

#[cfg(unix)]
#[test]
fn a_panicking_reconcile_is_an_error_of_that_object_only() {
    const VMS: usize = 12;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = write(tmp.path(), "site.yaml", &site(1, 1, VMS));
    let data = tmp.path().join("d");
    let out = sectl(&data)
        .args(["apply", "-f"])
        .arg(&file)
        .env("SECTL_TEST_PANIC_RECONCILE", "VMDefinition/vm00003")
        .output()
        .expect("apply");
    ok(out, "apply with one panicking reconcile");
    let store = open_store(&data);
    let w = World::load(&store).expect("world");
    for n in vm_names(VMS) {
        assert_eq!(w.vms.contains_key(&n), n != "vm00003", "{n}: only the panicking one is missing");
    }
    let o = store.get(Kind::VMDefinition, "vm00003").expect("get").expect("vm");
    let c = o.conditions().iter().find(|c| c.type_ == "Reconciled").expect("a Reconciled condition").clone();
    assert_eq!(c.reason, "ReconcilePanicked");
    assert!(c.message.contains("test fault hook"), "{c:?}");
    let evs = store.events().expect("events");
    assert_eq!(evs.iter().filter(|e| e.reason == "ReconcilePanicked").count(), 1, "one event per failure streak");
    drop(store);
    // Without the fault, the next run reconciles it and the condition goes away.
    ok(sectl(&data).args(["apply", "-f"]).arg(&file).output().expect("apply"), "apply again");
    verify(&data, &vm_names(VMS), "after the panics stopped");
    let store = open_store(&data);
    let o = store.get(Kind::VMDefinition, "vm00003").expect("get").expect("vm");
    assert!(o.conditions().iter().all(|c| c.type_ != "Reconciled"), "{:?}", o.conditions());
}

#[cfg(unix)]
#[test]
fn a_panicking_reconcile_in_serve_leaves_the_server_and_the_others_working() {
    const VMS: usize = 8;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = write(tmp.path(), "site.yaml", &site(1, 1, VMS));
    let data = tmp.path().join("d");
    let s = Server::start(&data, &["--time-scale", "100"], &[("SECTL_TEST_PANIC_RECONCILE", "VMDefinition/vm00001")]);
    ok(s.cli(&data, &["apply", "-f", file.to_str().expect("utf-8")]), "apply");
    ok(s.cli(&data, &["wait", "vm/vm00007", "--for=state=RUNNING", "--timeout", "30s"]), "others run");
    let out = ok(s.cli(&data, &["get", "vm", "vm00001", "-o", "json"]), "get");
    assert!(out.contains("ReconcilePanicked"), "{out}");
    let health = ureq::get(&format!("{}/healthz", s.url)).call().expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = ureq::get(&format!("{}/readyz", s.url)).call().expect("readyz");
    assert_eq!(ready.status(), 200);
    // And it still takes and carries out changes.
    ok(
        s.cli(
            &data,
            &["apply", "-f", write(tmp.path(), "more.yaml", &common::vm_yaml("extra", 512)).to_str().expect("utf-8")],
        ),
        "apply more",
    );
    drop(s);
}

#[cfg(unix)]
#[test]
fn a_dying_engine_stops_serve_with_a_non_zero_exit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("d");
    let mut child = sectl(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SECTL_TEST_PANIC_ENGINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "serve kept running with a dead controller");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("read");
    assert!(!status.success(), "exit status {status:?}");
    assert!(err.contains("the controller loop died") || err.contains("the controller died"), "{err}");
}

#[test]
fn concurrent_applies_with_clashing_unit_names_cannot_both_pass() {
    let server = |name: &str| {
        common::one(&format!(
            "apiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: {name}}}\nspec:\n  model: SE310\n  version: V6.3\n  managementUnits: [{{name: mu-{name}}}]\n  serverUnits:\n    - {{name: SHARED1, type: \"x86\", cpus: 4, memoryMiB: 8192}}\n"
        ))
    };
    for trial in 0..TRIALS {
        let dir = tempfile::tempdir().expect("tmp");
        let store = std::sync::Arc::new(open_store(dir.path()));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = ["sea", "seb"]
            .into_iter()
            .map(|n| {
                let (store, barrier, obj) = (store.clone(), barrier.clone(), server(n));
                std::thread::spawn(move || {
                    barrier.wait();
                    store.apply(vec![obj], false)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        let passed = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 1, "trial {trial}: {results:?}");
        let err = results.iter().find_map(|r| r.as_ref().err()).expect("one refused").to_string();
        assert!(err.contains("unit SHARED1 is already a unit of SEServer"), "{err}");
        assert_eq!(store.list(Kind::SEServer).expect("list").0.len(), 1);
    }
}

#[test]
fn a_world_saved_as_one_blob_by_an_older_version_is_read_and_stored_by_entity() {
    let dir = tempfile::tempdir().expect("tmp");
    let old_world = {
        // Build a converged world, then keep it only as the old single blob.
        let other = tempfile::tempdir().expect("tmp");
        let s = std::sync::Arc::new(open_store(other.path()));
        s.apply(common::all(SITE), false).expect("apply");
        let mut c = sectl::controller::Controller::new(s.clone() as std::sync::Arc<dyn Store>, Default::default())
            .expect("controller");
        c.run_until_quiet().expect("settle");
        c.world()
    };
    let mut blob = serde_json::to_value(&old_world).expect("json");
    blob["observed_rv"] = serde_json::json!(0);
    blob["pending"] = serde_json::json!([]);
    {
        let s = open_store(dir.path());
        s.apply(common::all(SITE), false).expect("apply");
        s.put_blob("world", blob.to_string().as_bytes()).expect("blob");
        assert!(s.read_state("w/").expect("state").is_empty());
    }
    let s = std::sync::Arc::new(open_store(dir.path()));
    let mut c = sectl::controller::Controller::new(s.clone() as std::sync::Arc<dyn Store>, Default::default())
        .expect("controller");
    c.run_until_quiet().expect("settle");
    assert_eq!(c.world().vms, old_world.vms, "the placements of the old world are kept");
    drop(c);
    assert!(s.read_state("w/vm/vm12prod").expect("state").len() == 1, "stored by entity now");
    let evs = s.events().expect("events");
    assert_eq!(evs.iter().filter(|e| e.reason == "VmCreated").count(), 0, "nothing created again");
    assert!(sectl::check::check(s.as_ref()).expect("check").is_empty());
}
