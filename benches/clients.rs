//! Benchmark of Kubernetes clients against `sectl serve` (issue 10), run with
//! `cargo bench --bench clients`. It drives the release binary (a serve on a temporary
//! data directory, `--time-scale 0`) holding 10,000 VMDefinitions (32 servers with 4
//! x86 SUs each; applied over HTTP in batches of 1,000 and left to settle) and prints:
//! 1. `kubectl get vm` (the server answers with a meta.k8s.io Table) and
//!    `sectl get vm` (which finds the data directory held and goes through the
//!    server's kubeconfig): wall time of the whole command, 5 runs each (p50, min,
//!    max), and the rows printed.
//! 2. 100 concurrent watchers of vmdefinitions (one HTTPS connection each, from the
//!    list's resourceVersion); 20 writes (a merge patch of one VM's label, 250 ms
//!    apart), each delivered to all 100: time from sending the write to the last
//!    watcher reading it (p50, p99, max over the writes), and to the first. All the
//!    while another client keeps applying (`APPLIED` VMs relabelled per apply, back to
//!    back), so every watcher also streams those changes and the controller works.
//!
//! `SECTL_BENCH_WATCH_ONLY=1` skips part 1.
//! Every serve is stopped on drop (SIGTERM, then SIGKILL). target/release/sectl is
//! built when missing; `SECTL_BENCH_BIN=/path/to/sectl` measures another build.

use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PREFIX: &str = "/apis/sectl.io/v1alpha1";
const VMS: usize = 10_000;
const SERVERS: usize = 32;
const SUS: usize = 4;
const RUNS: usize = 5;
const WATCHERS: usize = 100;
const WRITES: usize = 20;
/// VMs relabelled by each of the applies that run during the watcher writes.
const APPLIED: usize = 50;

fn release_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SECTL_BENCH_BIN") {
        return PathBuf::from(bin);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("sectl");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--release", "--bin", "sectl"])
            .current_dir(&root)
            .status()
            .expect("run cargo build --release");
        assert!(ok.success(), "cargo build --release failed");
    }
    bin
}

struct Serve {
    child: Child,
    url: String,
    data: PathBuf,
    agent: ureq::Agent,
    token: String,
    _tmp: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(bin: &Path) -> Serve {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0", "--time-scale", "0"])
            .env_remove("SECTL_SERVER")
            .env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("address");
        let url = first.trim().strip_prefix("sectl serve: listening on ").expect("address line").to_string();
        let access = sectl::server::kubeconfig::read(&data).expect("kubeconfig").expect("present");
        let tls = sectl::server::tls::client_config_pem(access.ca_pem.as_deref().expect("CA")).expect("tls");
        let agent = ureq::AgentBuilder::new().tls_config(Arc::new(tls)).build();
        Serve { child, url, data, agent, token: access.token, _tmp: tmp }
    }

    fn req(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{PREFIX}/{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    fn apply(&self, yaml: &str) {
        self.req("POST", "apply").set("Content-Type", "application/yaml").send_string(yaml).expect("apply");
    }

    fn rv(&self) -> String {
        let text = self.req("GET", "vmdefinitions?limit=1").call().expect("list").into_string().expect("body");
        let v: Value = serde_json::from_str(&text).expect("json");
        v["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string()
    }

    /// Waits until the resourceVersion has not moved for 3 s (the controller is done).
    fn quiet(&self) {
        let t0 = Instant::now();
        let (mut last, mut since) = (String::new(), Instant::now());
        while t0.elapsed() < Duration::from_secs(300) {
            let rv = self.rv();
            if rv != last {
                (last, since) = (rv, Instant::now());
            } else if since.elapsed() >= Duration::from_secs(3) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the controller did not settle in 300 s");
    }
}

fn servers_yaml() -> String {
    let mut s = String::new();
    for n in 0..SERVERS {
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: se{n}}}\nspec:\n  model: SE310\n  version: V6.3\n  managementUnits: [{{name: mu{n}}}]\n  serverUnits:\n"
        );
        for u in 0..SUS {
            let _ = writeln!(
                s,
                "    - {{name: SU{n}X{u}, type: x86, cpus: 16, memoryMiB: 262144, cpuPools: [{{name: \"*STDPOOL\", cpus: 16}}], devices: [{{mn: \"A000-A0FF\", type: disk, hostConnector: \"01\", unitId: \"00\"}}]}}"
            );
        }
    }
    s
}

fn vms_yaml(from: usize, to: usize) -> String {
    let total = SERVERS * SUS;
    let mut s = String::new();
    for i in from..to {
        let su = i % total;
        let mn = 0xA000 + (i / total) % 256;
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm{i:05}, labels: {{app: bench}}}}\nspec:\n  vmName: V{i:05}\n  serverUnit: SU{}X{}\n  state: RUNNING\n  memoryMiB: 1024\n  devices: [{{mn: \"{mn:04X}\", usage: exclusive}}]\n",
            su / SUS,
            su % SUS
        );
    }
    s
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Runs `cmd` RUNS times: (sorted wall times, rows in the last output).
fn time_command(mut make: impl FnMut() -> Command) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = make().stdin(Stdio::null()).output().expect("run");
        times.push(t0.elapsed());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        rows = String::from_utf8_lossy(&out.stdout).lines().count();
    }
    times.sort();
    (times, rows)
}

fn lists(serve: &Serve, bin: &Path, home: &Path) {
    println!("1. {VMS} VMs listed as a table (whole command, {RUNS} runs)");
    let (kubectl, rows) = time_command(|| {
        let mut c = Command::new("kubectl");
        c.args(["get", "vm"]).env("KUBECONFIG", serve.data.join("kubeconfig")).env("HOME", home);
        c
    });
    println!(
        "  kubectl get vm: p50 {}, min {}, max {} ({rows} lines)",
        ms(pct(&kubectl, 0.5)),
        ms(kubectl[0]),
        ms(kubectl[RUNS - 1])
    );
    let (sectl, rows) = time_command(|| {
        let mut c = Command::new(bin);
        c.arg("--data-dir").arg(&serve.data).args(["get", "vm"]).env_remove("SECTL_SERVER").env_remove("SECTL_TOKEN");
        c
    });
    println!(
        "  sectl get vm (through the server's kubeconfig): p50 {}, min {}, max {} ({rows} lines)",
        ms(pct(&sectl, 0.5)),
        ms(sectl[0]),
        ms(sectl[RUNS - 1])
    );
}

/// Applies the last `APPLIED` VMs with a new `round` label, back to back, until
/// `stop`; returns (applies, their total time).
fn keep_applying(serve: &Serve, stop: &std::sync::atomic::AtomicBool) -> (usize, Duration) {
    let (mut n, mut spent) = (0, Duration::ZERO);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let yaml = vms_yaml(VMS - APPLIED, VMS).replace("app: bench}", &format!("app: bench, round: r{n}}}"));
        let t0 = Instant::now();
        serve.apply(&yaml);
        spent += t0.elapsed();
        n += 1;
    }
    (n, spent)
}

fn watchers(serve: &Serve) {
    println!(
        "2. {WATCHERS} concurrent watchers, {WRITES} writes of one VM each delivered to all, while applies of {APPLIED} VMs continue"
    );
    let rv = serve.rv();
    let (tx, rx) = mpsc::channel::<(usize, String, Instant)>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    for w in 0..WATCHERS {
        let resp = serve.req("GET", &format!("vmdefinitions?watch=1&resourceVersion={rv}")).call().expect("watch");
        let tx = tx.clone();
        let ready = ready_tx.clone();
        std::thread::spawn(move || {
            let _ = ready.send(());
            let reader = BufReader::new(resp.into_reader());
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                if !line.contains("\"mark\"") {
                    continue; // the concurrent applies' changes
                }
                let Ok(ev) = serde_json::from_str::<Value>(&line) else { continue };
                let mark = ev["object"]["metadata"]["labels"]["mark"].as_str().unwrap_or("").to_string();
                if tx.send((w, mark, at)).is_err() {
                    break;
                }
            }
        });
    }
    for _ in 0..WATCHERS {
        ready_rx.recv_timeout(Duration::from_secs(30)).expect("watcher started");
    }
    std::thread::sleep(Duration::from_millis(500));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (last, first, (applies, spent)) = std::thread::scope(|sc| {
        let applier = sc.spawn(|| keep_applying(serve, &stop));
        let (last, first) = timed_writes(serve, &rx);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (last, first, applier.join().expect("applier"))
    });
    println!(
        "  write -> last of {WATCHERS} deliveries: p50 {}, p99 {}, max {}",
        ms(pct(&last, 0.5)),
        ms(pct(&last, 0.99)),
        ms(last[WRITES - 1])
    );
    println!("  write -> first delivery: p50 {}, max {}", ms(pct(&first, 0.5)), ms(first[WRITES - 1]));
    println!("  meanwhile {applies} applies of {APPLIED} VMs, {} each on average", ms(spent / applies.max(1) as u32));
}

/// The `WRITES` writes of vm00000, each waited for on all watchers: sorted times to
/// the last and to the first delivery.
fn timed_writes(serve: &Serve, rx: &mpsc::Receiver<(usize, String, Instant)>) -> (Vec<Duration>, Vec<Duration>) {
    let (mut last, mut first) = (Vec::new(), Vec::new());
    for i in 0..WRITES {
        let mark = format!("w{i}");
        let body = format!(r#"{{"metadata":{{"labels":{{"mark":"{mark}"}}}}}}"#);
        let t0 = Instant::now();
        serve
            .req("PATCH", "vmdefinitions/vm00000")
            .set("Content-Type", "application/merge-patch+json")
            .send_string(&body)
            .expect("patch");
        let mut seen = vec![None; WATCHERS];
        let mut got = 0;
        while got < WATCHERS {
            let (w, m, at) = rx.recv_timeout(Duration::from_secs(30)).expect("delivery within 30 s");
            if m == mark && seen[w].is_none() {
                seen[w] = Some(at - t0);
                got += 1;
            }
        }
        let times: Vec<Duration> = seen.into_iter().flatten().collect();
        last.push(*times.iter().max().expect("some"));
        first.push(*times.iter().min().expect("some"));
        std::thread::sleep(Duration::from_millis(250));
        while rx.try_recv().is_ok() {}
    }
    last.sort();
    first.sort();
    (last, first)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    if std::env::args().skip(1).any(|a| a != "--bench") {
        eprintln!("usage: cargo bench --bench clients");
        std::process::exit(2);
    }
    let bin = release_binary();
    let which = Command::new("sh").args(["-c", "command -v kubectl"]).output().expect("sh");
    assert!(which.status.success(), "kubectl is not installed: install kubectl to run this benchmark");
    let serve = Serve::start(&bin);
    let t0 = Instant::now();
    serve.apply(&servers_yaml());
    for from in (0..VMS).step_by(1000) {
        serve.apply(&vms_yaml(from, (from + 1000).min(VMS)));
    }
    serve.quiet();
    println!("sectl serve ({}) with {VMS} VMs, applied and settled in {}", bin.display(), ms(t0.elapsed()));
    let home = tempfile::tempdir().expect("home");
    if std::env::var_os("SECTL_BENCH_WATCH_ONLY").is_none() {
        lists(&serve, &bin, home.path());
    }
    watchers(&serve);
}
