//! Benchmark of `sectl serve`, run with `cargo bench --bench serve`. It drives the
//! release binary over HTTP (each serve on its own temporary data directory) and
//! prints, from one run:
//! 1. GitOps latency: serve watches a folder holding a small site (the tests' `SITE`);
//!    one manifest (the VMDefinition) is edited 100 times, alternating plain writes and
//!    editor-style saves (temp file + rename); each edit is timed from the save until
//!    the API returns the object with the new memoryMiB (polled every 5 ms).
//!    Target: p50 <= 250 ms.
//! 2. Apply to converged: a generated site (2 servers with 3 x86 SUs each, a
//!    management cluster, an SU cluster, 500 VMs) POSTed to /apply, timed until every
//!    VM has status.serverUnit and the SU cluster is NORMAL.
//! 3. Memory: serve holding 10,000 VMDefinitions (plus 32 servers with 128 SUs, at
//!    most 79 VMs per SU), applied through the API in batches of 1,000 and converged
//!    (every VM placed, checked with GETs of single objects): VmRSS from
//!    /proc/PID/status at convergence and 3 s later (the target applies to the latter);
//!    then the same after one list of all 10,000 VMs. Target: <= 150 MB.
//! 4. Lists (issue 8 item 6): 36,000 VMDefinitions; 50 concurrent lists of all of
//!    them, first streamed (no `limit`), then paged (`limit=500` + `continue`): wall
//!    time per list (p50, max) and the server's peak VmRSS (sampled every 20 ms).
//! 5. Slow and idle clients (issue 8 item 5): 5,000 connections sending one byte every
//!    10 s for 35 s, then 20,000 idle TCP connections held 15 s: /healthz latency on
//!    a fresh TLS connection every 250 ms (p50, max, failures), the server's peak
//!    VmRSS, and how many attack connections the server closed. Loopback only.
//!
//! Every serve is stopped with SIGTERM; a guard kills it when the bench panics.
//! target/release/sectl is rebuilt (`cargo build --release`) when it is missing or
//! older than the sources; `SECTL_BENCH_BIN=/path/to/sectl` measures another build.

#[path = "../tests/common/mod.rs"]
mod common;

use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

const PREFIX: &str = "/apis/sectl.io/v1alpha1";
const EDITS: usize = 100;
const POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------
// The binary

fn newest_mtime(p: &Path, newest: &mut SystemTime) {
    let Ok(meta) = std::fs::metadata(p) else { return };
    if meta.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            newest_mtime(&e.path(), newest);
        }
    } else if let Ok(t) = meta.modified() {
        *newest = (*newest).max(t);
    }
}

/// target/release/sectl, built first when it is missing or older than the sources;
/// `SECTL_BENCH_BIN` names another binary to measure instead (used as it is).
fn release_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SECTL_BENCH_BIN") {
        return PathBuf::from(bin);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("sectl");
    let mut sources = SystemTime::UNIX_EPOCH;
    for p in ["src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        newest_mtime(&root.join(p), &mut sources);
    }
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_none_or(|b| b < sources) {
        eprintln!("building {} (missing or older than the sources) ...", bin.display());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "sectl"])
            .current_dir(&root)
            .stdout(Stdio::null())
            .status()
            .expect("run cargo build --release");
        if !status.success() {
            if bin.exists() {
                eprintln!("warning: cargo build --release failed ({status}); using the existing {}", bin.display());
            } else {
                panic!("cargo build --release failed: {status}");
            }
        }
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

// ---------------------------------------------------------------------------------
// A running serve

/// Kills the child when dropped (a panic included): SIGTERM first, SIGKILL when it
/// has not exited after 10 s.
struct ChildGuard {
    child: Child,
    stopped: Option<(ExitStatus, Duration)>,
}

impl ChildGuard {
    /// Stops the process with SIGTERM; returns its exit status and how long it took.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        if let Some(s) = self.stopped {
            return s;
        }
        let t0 = Instant::now();
        if let Ok(Some(st)) = self.child.try_wait() {
            self.stopped = Some((st, Duration::ZERO));
            return (st, Duration::ZERO);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.stopped = Some((st, t0.elapsed()));
                return (st, t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("serve (pid {}) ignored SIGTERM for 10 s; killing it", self.child.id());
        let _ = self.child.kill();
        let st = self.child.wait().expect("wait for serve");
        self.stopped = Some((st, t0.elapsed()));
        (st, t0.elapsed())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// An agent trusting the CA that serve made in `data` (for an https URL).
fn agent_for(url: &str, data: &Path) -> ureq::AgentBuilder {
    let b = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5));
    if url.starts_with("https://") {
        let cfg = sectl::server::tls::client_config(data, &[]).expect("trust serve's CA");
        return b.tls_config(std::sync::Arc::new(cfg));
    }
    b
}

/// `sectl serve` on a temporary folder, with an HTTP client for its API.
struct Serve {
    // Dropped first: the process stops before its folder is removed.
    guard: ChildGuard,
    base: String,
    auth: String,
    agent: ureq::Agent,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Serve {
    /// Starts serve in a new temporary folder; `files` (name, content) are written to
    /// a watched folder first, when given.
    fn start(bin: &Path, watch: Option<&[(&str, String)]>) -> Serve {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let log = tmp.path().join("serve.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir").arg(&data).args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(files) = watch {
            let dir = tmp.path().join("watch");
            std::fs::create_dir_all(&dir).expect("watch folder");
            for (name, text) in files {
                std::fs::write(dir.join(name), text).expect("write manifest");
            }
            cmd.arg("--watch").arg(&dir);
        }
        cmd.env_remove("SECTL_SERVER")
            .env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("start sectl serve");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard { child, stopped: None };
        // Read the first line; keep draining stdout afterwards.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(30)).ok().flatten().unwrap_or_default();
        let Some(url) = first.strip_prefix("sectl serve: listening on ") else {
            panic!("serve did not start: first stdout line {first:?}\n{}", tail(&log));
        };
        let token = std::fs::read_to_string(data.join("token")).expect("token file");
        let agent = agent_for(url, &data).timeout(Duration::from_secs(120)).build();
        Serve {
            guard,
            base: url.trim().trim_end_matches('/').to_string(),
            auth: format!("Bearer {}", token.trim()),
            agent,
            log,
            _tmp: tmp,
        }
    }

    fn watch_dir(&self) -> PathBuf {
        self._tmp.path().join("watch")
    }

    fn data_dir(&self) -> PathBuf {
        self._tmp.path().join("data")
    }

    /// Samples VmRSS every 20 ms until the returned flag is set; the thread returns
    /// the largest value seen (KiB).
    fn rss_sampler(&self) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u64>) {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, pid) = (stop.clone(), self.pid());
        let h = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                }) {
                    peak = peak.max(kib);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        (stop, h)
    }

    fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    /// GET; None on 404.
    fn get(&self, path: &str) -> Option<Value> {
        match self.agent.get(&format!("{}{PREFIX}/{path}", self.base)).set("Authorization", &self.auth).call() {
            Ok(r) => Some(serde_json::from_reader(r.into_reader()).expect("JSON response")),
            Err(ureq::Error::Status(404, _)) => None,
            Err(ureq::Error::Status(code, r)) => {
                panic!("GET {path}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("GET {path}: {e}\n{}", tail(&self.log)),
        }
    }

    /// The items of a list.
    fn list(&self, plural: &str) -> Vec<Value> {
        match self.get(plural) {
            Some(Value::Object(mut m)) => match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => panic!("GET {plural}: no items"),
            },
            other => panic!("GET {plural}: {other:?}"),
        }
    }

    /// POSTs manifests (YAML) to /apply; returns how many objects came back.
    fn apply(&self, yaml: &str) -> usize {
        let url = format!("{}{PREFIX}/apply", self.base);
        match self
            .agent
            .post(&url)
            .set("Authorization", &self.auth)
            .set("Content-Type", "application/yaml")
            .send_string(yaml)
        {
            Ok(r) => {
                let v: Value = serde_json::from_reader(r.into_reader()).expect("apply response");
                v["items"].as_array().map_or(0, |a| a.len())
            }
            Err(ureq::Error::Status(code, r)) => {
                panic!("POST apply: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("POST apply: {e}\n{}", tail(&self.log)),
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{}/status", self.pid()))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Stops serve with SIGTERM; reports the exit status and how long it took.
    fn stop(mut self, what: &str) {
        let (st, took) = self.guard.terminate();
        println!("  ({what}: serve stopped by SIGTERM in {} ms, {st})", took.as_millis());
        assert!(st.success(), "serve exited with {st} after SIGTERM\n{}", tail(&self.log));
    }
}

/// The last lines of a log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("--- last lines of {} ---\n{}", log.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
}

fn placed(vm: &Value) -> bool {
    vm["status"]["serverUnit"].as_str().is_some_and(|s| !s.is_empty())
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[Duration], q: f64) -> Duration {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------
// 1. GitOps latency

/// The VMDefinition of `SITE` with its memoryMiB set to `mem`.
fn with_memory(vm_doc: &str, mem: u64) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in vm_doc.lines() {
        match line.split_once("memoryMiB:") {
            Some((indent, _)) if !done && indent.trim().is_empty() => {
                let _ = writeln!(out, "{indent}memoryMiB: {mem}");
                done = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(done, "no memoryMiB line in the VMDefinition of SITE:\n{vm_doc}");
    out
}

fn gitops_latency(bin: &Path) {
    println!("1. GitOps latency: {EDITS} edits of one watched manifest (save -> stored, polled every 5 ms)");
    // The site in two files: everything but the VM, and the VM (the file edited).
    let docs: Vec<&str> = common::SITE.split("\n---\n").collect();
    let (vm_docs, rest): (Vec<&str>, Vec<&str>) = docs.iter().partition(|d| d.contains("kind: VMDefinition"));
    assert_eq!(vm_docs.len(), 1, "SITE should hold one VMDefinition");
    let vm_doc = vm_docs[0].trim_start_matches("---\n").to_string();
    let vm = common::one(&vm_doc);
    let name = vm.name().to_string();
    let site = rest.join("\n---\n");
    let serve = Serve::start(bin, Some(&[("site.yaml", site), ("vm.yaml", with_memory(&vm_doc, 1024))]));
    let dir = serve.watch_dir();
    let path = format!("vmdefinitions/{name}");

    // The initial sync applies the site; wait until the VM is placed.
    let t0 = Instant::now();
    loop {
        if serve.get(&path).is_some_and(|v| placed(&v)) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the site was not applied within 30 s\n{}", tail(&serve.log));
        std::thread::sleep(POLL);
    }
    println!("  initial site ({} objects) applied and VM placed: {}", docs.len(), ms(t0.elapsed()));
    std::thread::sleep(Duration::from_millis(300));

    let file = dir.join("vm.yaml");
    let temp = dir.join(".vm.yaml.swp");
    let mut plain = Vec::new();
    let mut renamed = Vec::new();
    for i in 0..EDITS {
        let mem = 1024 + 16 * (i as u64 + 1);
        let text = with_memory(&vm_doc, mem);
        let start = Instant::now();
        if i % 2 == 0 {
            std::fs::write(&file, &text).expect("write manifest");
        } else {
            std::fs::write(&temp, &text).expect("write temp file");
            std::fs::rename(&temp, &file).expect("rename over manifest");
        }
        loop {
            let v = serve.get(&path).expect("the VM is gone");
            if v["spec"]["memoryMiB"].as_u64() == Some(mem) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "edit {i} (memoryMiB {mem}) not stored within 10 s\n{}",
                tail(&serve.log)
            );
            std::thread::sleep(POLL);
        }
        let took = start.elapsed();
        if i % 2 == 0 { &mut plain } else { &mut renamed }.push(took);
        // A person saves again after a moment, not in the same millisecond.
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut all: Vec<Duration> = plain.iter().chain(&renamed).copied().collect();
    all.sort();
    plain.sort();
    renamed.sort();
    let p50 = pct(&all, 0.50);
    println!(
        "  save -> stored: p50 {}  p90 {}  p99 {}  max {}  (min {})",
        ms(p50),
        ms(pct(&all, 0.90)),
        ms(pct(&all, 0.99)),
        ms(all[all.len() - 1]),
        ms(all[0])
    );
    println!("    plain write:   p50 {}  max {}", ms(pct(&plain, 0.5)), ms(plain[plain.len() - 1]));
    println!("    temp + rename: p50 {}  max {}", ms(pct(&renamed, 0.5)), ms(renamed[renamed.len() - 1]));
    println!("  target p50 <= 250 ms: {}", if p50 <= Duration::from_millis(250) { "met" } else { "MISSED" });
    serve.stop("GitOps");
}

// ---------------------------------------------------------------------------------
// 2 and 3: generated sites

/// `servers` SE Servers with `sus` x86 SUs each (SU<s>X<u>); with `cluster` (needs two
/// servers) a management cluster and an SU cluster over the first SU of each.
fn servers_yaml(servers: usize, sus: usize, cluster: bool) -> String {
    let mut s = String::new();
    for n in 0..servers {
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: se{n}}}\nspec:\n  model: SE310\n  version: V6.3\n  netUnit: {{speedGbps: 10}}\n  managementUnits: [{{name: mu{n}}}]\n  serverUnits:\n"
        );
        for u in 0..sus {
            let _ = writeln!(
                s,
                "    - {{name: SU{n}X{u}, type: x86, cpus: 16, memoryMiB: 262144, cpuPools: [{{name: \"*STDPOOL\", cpus: 16}}], devices: [{{mn: \"A000-A0FF\", type: disk, hostConnector: \"01\", unitId: \"00\"}}]}}"
            );
        }
    }
    if cluster {
        assert_eq!(servers, 2);
        s.push_str(
            "---\napiVersion: sectl.io/v1alpha1\nkind: ManagementCluster\nmetadata: {name: mc}\nspec:\n  servers: [se0, se1]\n  islE: {bandwidthGbps: 10}\n  configDisks: [{name: crd-a}, {name: crd-b}]\n---\napiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {name: suc}\nspec: {serverUnits: [SU0X0, SU1X0]}\n",
        );
    }
    s
}

/// VMs `from..to`, spread round-robin over all SUs (at most ceil(n / SUs) per SU),
/// each with its own exclusive disk on its SU.
fn vms_yaml(servers: usize, sus: usize, from: usize, to: usize) -> String {
    let total = servers * sus;
    let mut s = String::new();
    for i in from..to {
        let su = i % total;
        let state = ["RUNNING", "RUNNING", "INIT_ONLY", "DOWN", "DEFINED_ONLY"][i % 5];
        let mn = 0xA000 + (i / total) % 256;
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm{i:05}, labels: {{app: bench}}}}\nspec:\n  vmName: V{i:05}\n  serverUnit: SU{}X{}\n  state: {state}\n  memoryMiB: 1024\n  devices: [{{mn: \"{mn:04X}\", usage: exclusive}}]\n  workload: {{dirtyRateMiBps: 20}}\n",
            su / sus,
            su % sus
        );
    }
    s
}

fn apply_to_converged(bin: &Path) {
    const VMS: usize = 500;
    println!("2. Apply to converged over HTTP: 2 servers (6 SUs), MC, SU cluster, {VMS} VMs in one POST");
    let serve = Serve::start(bin, None);
    let yaml = format!("{}{}", servers_yaml(2, 3, true), vms_yaml(2, 3, 0, VMS));
    let t0 = Instant::now();
    let n = serve.apply(&yaml);
    let posted = t0.elapsed();
    assert_eq!(n, VMS + 4, "apply returned {n} objects");
    let (mut placed_n, mut state) = (0, String::new());
    loop {
        if placed_n < VMS {
            placed_n = serve.list("vmdefinitions").iter().filter(|v| placed(v)).count();
        }
        if placed_n == VMS {
            state = serve
                .get("suclusters/suc")
                .and_then(|c| c["status"]["state"].as_str().map(String::from))
                .unwrap_or_default();
            if state == "NORMAL" {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not converged after 60 s: {placed_n}/{VMS} VMs placed, SU cluster {state:?}\n{}",
            tail(&serve.log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    println!("  POST /apply ({} objects, {} KiB of YAML) returned in {}", n, yaml.len() / 1024, ms(posted));
    println!("  apply -> converged (all {VMS} VMs placed, SU cluster NORMAL): {}", ms(took));
    serve.stop("apply");
}

fn memory(bin: &Path) {
    const VMS: usize = 10_000;
    const BATCH: usize = 1_000;
    const SERVERS: usize = 32;
    const SUS: usize = 4;
    println!(
        "3. Memory: {VMS} VMDefinitions + {SERVERS} servers ({} SUs, at most {} VMs per SU), batches of {BATCH}",
        SERVERS * SUS,
        VMS.div_ceil(SERVERS * SUS)
    );
    let serve = Serve::start(bin, None);
    let (idle, _) = serve.rss_kib();
    let t0 = Instant::now();
    assert_eq!(serve.apply(&servers_yaml(SERVERS, SUS, false)), SERVERS);
    for from in (0..VMS).step_by(BATCH) {
        let n = serve.apply(&vms_yaml(SERVERS, SUS, from, (from + BATCH).min(VMS)));
        assert_eq!(n, (from + BATCH).min(VMS) - from);
    }
    let applied = t0.elapsed();
    // Converged: the last VM is placed, then every VM, checked one by one (GETs of
    // single objects; a list of all 10,000 costs the server ~100 MB of transient memory
    // itself, measured separately below).
    let mut pending: Vec<usize> = (0..VMS).rev().collect();
    loop {
        pending.retain(|i| !serve.get(&format!("vmdefinitions/vm{i:05}")).is_some_and(|v| placed(&v)));
        if pending.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "not converged after 120 s: {} of {VMS} VMs not placed\n{}",
            pending.len(),
            tail(&serve.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = t0.elapsed();
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let settle = Duration::from_secs(3);
    let (at_converged, _) = serve.rss_kib();
    std::thread::sleep(settle);
    let (settled, hwm) = serve.rss_kib();
    let t1 = Instant::now();
    let listed = serve.list("vmdefinitions").len();
    let list_took = t1.elapsed();
    let (after_list, _) = serve.rss_kib();
    std::thread::sleep(settle);
    let (after_list_settled, hwm2) = serve.rss_kib();
    assert_eq!(listed, VMS);
    println!("  applied in {}, converged (all {VMS} placed) after {}", ms(applied), ms(converged));
    println!(
        "  VmRSS: empty {:.1} MB; holding {} objects: {:.1} MB at convergence, {:.1} MB ({:.1} MiB) {} s later; peak {:.1} MB",
        mb(idle),
        VMS + SERVERS,
        mb(at_converged),
        mb(settled),
        settled as f64 / 1024.0,
        settle.as_secs(),
        mb(hwm)
    );
    println!(
        "  after one GET of all {VMS} VMs ({}): {:.1} MB, {} s later {:.1} MB; peak {:.1} MB",
        ms(list_took),
        mb(after_list),
        settle.as_secs(),
        mb(after_list_settled),
        mb(hwm2)
    );
    println!("  target <= 150 MB (holding, settled): {}", if mb(settled) <= 150.0 { "met" } else { "MISSED" });
    serve.stop("memory");
}

// ---------------------------------------------------------------------------------
// 4. Lists of 36,000 VMs

/// Waits until the resourceVersion has not moved for 3 s (the controller is done).
fn quiet(serve: &Serve, limit: Duration) {
    let t0 = Instant::now();
    let (mut last, mut since) = (String::new(), Instant::now());
    while t0.elapsed() < limit {
        let v = serve.get("vmdefinitions?limit=1").expect("list");
        let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        if rv != last {
            (last, since) = (rv, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(3) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("  (the store still changed after {limit:?}; measuring anyway)");
}

/// One whole list: streamed (`limit == 0`) or paged; returns (objects, bytes).
fn one_list(serve: &Serve, limit: usize) -> (usize, usize) {
    if limit == 0 {
        let url = format!("{}{PREFIX}/vmdefinitions", serve.base);
        let r = serve.agent.get(&url).set("Authorization", &serve.auth).call().expect("list");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).expect("read list");
        // Count items without keeping a parsed copy around longer than needed.
        let v: Value = serde_json::from_slice(&body).expect("list JSON");
        return (v["items"].as_array().map_or(0, |a| a.len()), body.len());
    }
    let (mut n, mut bytes, mut cont) = (0, 0, None::<String>);
    loop {
        let q = match &cont {
            Some(c) => format!("vmdefinitions?limit={limit}&continue={c}"),
            None => format!("vmdefinitions?limit={limit}"),
        };
        let v = serve.get(&q).expect("page");
        n += v["items"].as_array().map_or(0, |a| a.len());
        bytes += v.to_string().len();
        match v["metadata"]["continue"].as_str() {
            Some(c) => cont = Some(c.to_string()),
            None => return (n, bytes),
        }
    }
}

fn lists(bin: &Path) {
    const VMS: usize = 36_000;
    const CLIENTS: usize = 50;
    const SERVERS: usize = 128;
    const SUS: usize = 4;
    println!("4. Lists: {VMS} VMDefinitions, {CLIENTS} concurrent lists of all of them");
    let serve = Serve::start(bin, None);
    let t0 = Instant::now();
    assert_eq!(serve.apply(&servers_yaml(SERVERS, SUS, false)), SERVERS);
    for from in (0..VMS).step_by(2_000) {
        serve.apply(&vms_yaml(SERVERS, SUS, from, (from + 2_000).min(VMS)));
    }
    quiet(&serve, Duration::from_secs(300));
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let (before, _) = serve.rss_kib();
    println!(
        "  applied and settled in {:.1} s; VmRSS before the lists {:.1} MB",
        t0.elapsed().as_secs_f64(),
        mb(before)
    );
    for (what, limit) in [("streamed (no limit)", 0), ("paged (limit=500)", 500)] {
        let (stop, sampler) = serve.rss_sampler();
        let t1 = Instant::now();
        let times: Vec<(Duration, usize, usize)> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    sc.spawn(|| {
                        let t = Instant::now();
                        let (n, b) = one_list(&serve, limit);
                        (t.elapsed(), n, b)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("list thread")).collect()
        });
        let wall = t1.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let peak = sampler.join().expect("sampler");
        assert!(times.iter().all(|t| t.1 == VMS), "a list did not return all {VMS} VMs");
        let mut d: Vec<Duration> = times.iter().map(|t| t.0).collect();
        d.sort();
        println!(
            "  {what}: {CLIENTS} lists of {VMS} ({:.1} MB each) in {:.1} s; per list p50 {}, max {}; server peak VmRSS {:.1} MB",
            times[0].2 as f64 / 1e6,
            wall.as_secs_f64(),
            ms(pct(&d, 0.5)),
            ms(pct(&d, 1.0)),
            mb(peak)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    serve.stop("lists");
}

// ---------------------------------------------------------------------------------
// 5. Slow and idle clients

/// Whether the server has closed `c`.
fn closed(c: &mut std::net::TcpStream) -> bool {
    let _ = c.set_read_timeout(Some(Duration::from_millis(5)));
    let mut b = [0u8; 256];
    match std::io::Read::read(c, &mut b) {
        Ok(0) => true,
        Ok(_) => closed(c),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Probes /healthz on a fresh TLS connection every 250 ms while `busy` returns true;
/// returns the latencies (None: no answer within 5 s).
fn probe_while(serve: &Serve, mut busy: impl FnMut() -> bool) -> Vec<Option<Duration>> {
    let mut out = Vec::new();
    let data = serve.data_dir();
    while busy() {
        let agent = agent_for(&serve.base, &data).timeout(Duration::from_secs(5)).build();
        let t = Instant::now();
        let ok = agent.get(&format!("{}/healthz", serve.base)).call().is_ok_and(|r| r.status() == 200);
        out.push(ok.then(|| t.elapsed()));
        std::thread::sleep(Duration::from_millis(250));
    }
    out
}

fn report_probes(what: &str, probes: &[Option<Duration>], peak_kib: u64, closed: usize, total: usize) {
    let mut ok: Vec<Duration> = probes.iter().flatten().copied().collect();
    ok.sort();
    let failed = probes.len() - ok.len();
    let (p50, max) = if ok.is_empty() { ("-".into(), "-".into()) } else { (ms(pct(&ok, 0.5)), ms(pct(&ok, 1.0))) };
    println!(
        "  {what}: /healthz {} probes, p50 {p50}, max {max}, {failed} unanswered; server peak VmRSS {:.1} MB; {closed} of {total} attack connections closed by the server",
        probes.len(),
        peak_kib as f64 * 1024.0 / 1e6
    );
}

fn attacks(bin: &Path) {
    const SLOW: usize = 5_000;
    const IDLE: usize = 20_000;
    // The client side needs a file handle per connection.
    let want = (IDLE + 2_000) as u64;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    println!("5. Slow and idle clients (open-file limit of the bench: {soft})");
    // Keep handles for the probes: a hard limit below 20,000 bounds the attack.
    let idle_n = IDLE.min(usize::try_from(soft.saturating_sub(1_000)).unwrap_or(IDLE));
    let serve = Serve::start(bin, None);
    let addr = serve.base.trim_start_matches("https://").to_string();
    let base = probe_while(&serve, {
        let mut n = 0;
        move || {
            n += 1;
            n <= 8
        }
    });
    report_probes("no attack", &base, serve.rss_kib().1, 0, 0);

    // 5,000 connections, one byte (of a TLS record header) every 10 s, for 35 s.
    let mut slow: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..SLOW {
        match std::net::TcpStream::connect(&addr) {
            Ok(c) => slow.push(c),
            Err(e) => {
                println!("  (connect {} failed: {e})", slow.len());
                break;
            }
        }
    }
    let (stop, sampler) = serve.rss_sampler();
    let t0 = Instant::now();
    let mut next_byte = Instant::now();
    let mut sent = 0usize;
    let probes = probe_while(&serve, || {
        if Instant::now() >= next_byte {
            let b = [b""[sent % 4]];
            for c in slow.iter_mut() {
                let _ = std::io::Write::write(c, &b);
            }
            sent += 1;
            next_byte += Duration::from_secs(10);
        }
        t0.elapsed() < Duration::from_secs(35)
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().expect("sampler");
    let n = slow.len();
    let shut = slow.iter_mut().map(closed).filter(|&c| c).count();
    report_probes(&format!("{n} slow connections, 35 s"), &probes, peak, shut, n);
    drop(slow);
    std::thread::sleep(Duration::from_secs(2));

    // 20,000 idle TCP connections held 15 s.
    let mut idle: Vec<std::net::TcpStream> = Vec::new();
    let t_open = Instant::now();
    for _ in 0..idle_n {
        match std::net::TcpStream::connect(&addr) {
            Ok(c) => idle.push(c),
            Err(e) => {
                println!("  (connect {} failed: {e})", idle.len());
                break;
            }
        }
    }
    println!("  opened {} idle connections in {:.1} s", idle.len(), t_open.elapsed().as_secs_f64());
    let (stop, sampler) = serve.rss_sampler();
    let t0 = Instant::now();
    let probes = probe_while(&serve, || t0.elapsed() < Duration::from_secs(15));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().expect("sampler");
    let n = idle.len();
    let shut = idle.iter_mut().map(closed).filter(|&c| c).count();
    report_probes(&format!("{n} idle connections, 15 s"), &probes, peak, shut, n);
    drop(idle);
    serve.stop("attacks");
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported, but
    // SECTL_BENCH_ONLY=lists|attacks runs one part.
    let bin = release_binary();
    println!("sectl serve benchmark ({})", bin.display());
    let t0 = Instant::now();
    match std::env::var("SECTL_BENCH_ONLY").as_deref() {
        Ok("lists") => lists(&bin),
        Ok("attacks") => attacks(&bin),
        _ => {
            gitops_latency(&bin);
            apply_to_converged(&bin);
            memory(&bin);
            lists(&bin);
            attacks(&bin);
        }
    }
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
