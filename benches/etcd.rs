//! Benchmark of the etcd store (`--store etcd://`), on a single-member etcd it starts
//! on a free loopback port (needs `etcd` and `etcdctl`: `apt install etcd-server
//! etcd-client`). Prints, in one run:
//! 1. `sectl --no-reconcile --store etcd://... apply -f` of 10,000 VMDefinitions (the
//!    binary, end to end: read, decode, validate, the staged write of the objects and
//!    the one of their audit records), then the same apply again with the `timing!`
//!    spans logged, added up into a breakdown by phase;
//! 2. the same stored JSON values written straight with etcd-client: sequential puts,
//!    Txns of 100 puts one after the other, and Txns of 100 puts 8 in flight;
//! 3. the controller converging the same site on sled and on etcd (in-process), then a
//!    resync of every object (`SECTL_BENCH_RECONCILE_VMS`, default 1,000 VMs);
//! 4. failover: `serve` replicas with `--lease-ttl 2s`, the leader killed with SIGKILL
//!    `SECTL_BENCH_KILLS` times (default 5); time until another replica holds the
//!    leader key (p50, max).
//!
//! `cargo bench --features etcd --bench etcd [-- apply|reconcile|failover]`: release
//! build, and `CARGO_BIN_EXE_sectl` is then the release binary; `cargo test --features
//! etcd --bench etcd` runs it all in a debug build. With `RUST_LOG=sectl::timing=debug`
//! the spans of the in-process parts (3.) are logged to stderr.

#[path = "../tests/etcd_server/mod.rs"]
mod etcd_server;
mod support;

use futures_util::StreamExt;
use sectl::api::Kind;
use sectl::store::{EtcdStore, Store};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::private_dir;

const N: usize = 10_000;

fn vm_yaml(i: usize) -> String {
    format!(
        "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata:\n  name: vm{i:05}\n  labels: {{batch: big}}\nspec:\n  vmName: V{i:04}\n  serverUnit: ABGSE501\n  memoryMiB: {}\n  devices: [{{mn: \"4683\", usage: shared}}]\n",
        1024 + i % 4096
    )
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A site of `pairs` pairs of servers (3 SUs each, an SU cluster over the first SU
/// of each) and `vms` VMs spread over all SUs, as objects.
fn site(pairs: usize, vms: usize) -> Vec<sectl::api::Resource> {
    use std::fmt::Write as _;
    let mut s = String::new();
    for c in 0..pairs {
        for side in ["a", "b"] {
            let _ = write!(s, "---\napiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: se-{side}{c}}}\nspec:\n  model: SE310\n  version: V6.3\n  netUnit: {{speedGbps: 10}}\n  managementUnits: [{{name: mu-{side}{c}}}]\n  serverUnits:\n");
            for u in 0..3 {
                let _ = writeln!(s, "    - {{name: SU{side}{c}X{u}, type: \"x86\", cpus: 16, memoryMiB: 262144, cpuPools: [{{name: \"*STDPOOL\", cpus: 16}}], devices: [{{mn: \"A000-A0FF\", type: disk, hostConnector: \"01\", unitId: \"00\"}}]}}");
            }
        }
        let _ = write!(s, "---\napiVersion: sectl.io/v1alpha1\nkind: ManagementCluster\nmetadata: {{name: mc{c}}}\nspec:\n  servers: [se-a{c}, se-b{c}]\n  islE: {{bandwidthGbps: 10}}\n  configDisks: [{{name: crd{c}a}}, {{name: crd{c}b}}]\n---\napiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {{name: suc{c}}}\nspec: {{serverUnits: [SUa{c}X0, SUb{c}X0]}}\n");
    }
    let sus = pairs * 6;
    for i in 0..vms {
        let su = i % sus;
        let (c, side, u) = (su / 6, if su % 6 < 3 { "a" } else { "b" }, su % 3);
        let state = ["RUNNING", "RUNNING", "INIT_ONLY", "DOWN", "DEFINED_ONLY"][i % 5];
        let mn = 0xA000 + if side == "a" { 0 } else { 0x80 } + (i / sus) % 128;
        let _ = write!(s, "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm{i:05}}}\nspec:\n  vmName: V{i:05}\n  serverUnit: SU{side}{c}X{u}\n  state: {state}\n  memoryMiB: 1024\n  devices: [{{mn: \"{mn:04X}\", usage: exclusive}}]\n");
    }
    sectl::manifest::decode("site.yaml", s.as_bytes()).expect("valid site").into_iter().map(|d| d.resource).collect()
}

/// What the controller did on one store: converging the applied site from nothing,
/// then a resync (every object reconciled again, nothing to change).
struct Run {
    converge: Duration,
    converge_reconciles: u64,
    resync: Duration,
    resync_reconciles: u64,
}

fn run_controller(store: std::sync::Arc<dyn Store>, objs: Vec<sectl::api::Resource>) -> Run {
    let vms = objs.iter().filter(|o| o.kind() == Kind::VMDefinition).count();
    store.apply(objs, false).expect("apply the site");
    let t = Instant::now();
    let mut c = sectl::controller::Controller::new(store.clone(), Default::default()).expect("controller");
    c.run_until_quiet().expect("converge");
    let converge = t.elapsed();
    let converge_reconciles = c.stats.reconciles;
    let placed = store.list(Kind::VMDefinition).expect("list").0;
    assert_eq!(placed.iter().filter(|r| r.status_json()["serverUnit"].is_string()).count(), vms, "every VM placed");
    let t = Instant::now();
    c.wake_all();
    c.run_until_quiet().expect("resync");
    Run {
        converge,
        converge_reconciles,
        resync: t.elapsed(),
        resync_reconciles: c.stats.reconciles - converge_reconciles,
    }
}

/// The same site converged by the controller on sled and on etcd, in this run.
fn reconcile_throughput(url: &str) {
    let vms: usize = std::env::var("SECTL_BENCH_RECONCILE_VMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let pairs = vms.div_ceil(500).max(1);
    let dir = private_dir();
    let sled =
        run_controller(std::sync::Arc::new(sectl::store::SledStore::open(dir.path()).expect("sled")), site(pairs, vms));
    let etcd = run_controller(std::sync::Arc::new(EtcdStore::open(url).expect("etcd")), site(pairs, vms));
    println!();
    println!("Controller on each store, the same site ({pairs} SU clusters, {vms} VMs), in-process:");
    println!("| what | sled | etcd | etcd / sled |");
    println!("|---|---|---|---|");
    let row = |what: &str, a: Duration, ra: u64, b: Duration, rb: u64| {
        println!(
            "| {what} | {} ({ra} reconciles, {:.0}/s) | {} ({rb} reconciles, {:.0}/s) | {:.1}x time |",
            secs(a),
            ra as f64 / a.as_secs_f64(),
            secs(b),
            rb as f64 / b.as_secs_f64(),
            b.as_secs_f64() / a.as_secs_f64()
        );
    };
    row(
        "converge from the applied site until quiet",
        sled.converge,
        sled.converge_reconciles,
        etcd.converge,
        etcd.converge_reconciles,
    );
    row(
        "resync: every object reconciled again, nothing to change",
        sled.resync,
        sled.resync_reconciles,
        etcd.resync,
        etcd.resync_reconciles,
    );
}

/// Time per span path (`a:b:c`) and how many spans closed there, in first-seen order.
type Phases = Vec<(String, Duration, usize)>;

/// Runs the apply with `RUST_LOG=sectl::timing=debug`; its wall time and the spans.
fn apply_with_spans(url: &str, data_dir: &std::path::Path, file: &std::path::Path) -> (Duration, Phases) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .args(["--store", url, "--no-reconcile", "--data-dir"])
        .arg(data_dir)
        .arg("apply")
        .arg("-f")
        .arg(file)
        .env("RUST_LOG", "sectl::timing=debug")
        .stdout(Stdio::null())
        .output()
        .expect("run sectl");
    let wall = t.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (wall, phases(&String::from_utf8_lossy(&out.stderr)))
}

/// Adds up the span closes of a log: `... DEBUG a:b: sectl::timing: close time.busy=1.2ms time.idle=3µs`.
fn phases(log: &str) -> Phases {
    let mut out: Phases = Vec::new();
    for line in log.lines() {
        let Some((head, times)) = line.split_once(": sectl::timing: close ") else { continue };
        let path = head.rsplit(' ').next().unwrap_or(head).to_string();
        let d: Duration = times.split(' ').filter_map(|f| f.split_once('=')).map(|(_, v)| duration(v)).sum();
        match out.iter_mut().find(|(p, _, _)| *p == path) {
            Some(e) => {
                e.1 += d;
                e.2 += 1;
            }
            None => out.push((path, d, 1)),
        }
    }
    out
}

/// `1.2s`, `3.4ms`, `5.6µs`, `7ns` as tracing-subscriber prints them.
fn duration(v: &str) -> Duration {
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("span time {v:?}"));
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" | "us" => 1e-6,
        "ns" => 1e-9,
        other => panic!("span time unit {other:?} in {v:?}"),
    };
    Duration::from_secs_f64(n * scale)
}

/// The breakdown table: one row per span path (nested paths indented), and what the
/// spans do not cover (process start, connecting, exit).
fn print_breakdown(wall: Duration, phases: &Phases) {
    println!();
    println!("Breakdown of the same apply (another run, RUST_LOG=sectl::timing=debug; {}):", secs(wall));
    println!("| phase (span path) | spans | time |");
    println!("|---|---|---|");
    let mut top = Duration::ZERO;
    for (path, d, n) in phases {
        let depth = path.matches(':').count();
        if depth == 0 && path.starts_with("apply.") {
            top += *d;
        }
        println!("| {}{} | {n} | {} |", "&nbsp;&nbsp;".repeat(depth), path, secs(*d));
    }
    println!("| rest: process start and exit, outside the apply.* spans | | {} |", secs(wall.saturating_sub(top)));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench --bench etcd -- reconcile` runs only the parts whose name contains
    // the word: apply, reconcile, failover.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    // RUST_LOG=sectl::timing=debug logs the spans of the in-process parts.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let etcd = etcd_server::Etcd::start();
    let dir = private_dir();
    if want("apply") {
        apply_vs_etcd_client(&etcd, dir.path());
    }
    if want("reconcile") {
        reconcile_throughput(&etcd.url_with("bench-reconcile"));
    }
    if want("failover") {
        failover(&etcd, dir.path());
    }
}

/// 1. and 2.: sectl apply of N objects, end to end and broken down, vs etcd-client.
fn apply_vs_etcd_client(etcd: &etcd_server::Etcd, dir: &std::path::Path) {
    let file = dir.join("big.yaml");
    std::fs::write(&file, (0..N).map(vm_yaml).collect::<String>()).expect("write");
    let url = etcd.url_with("bench-sectl");
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .args(["--store", &url, "--no-reconcile", "--data-dir"])
        .arg(dir.join("d"))
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .stdout(Stdio::null())
        .output()
        .expect("run sectl");
    let apply = t.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same apply again on a fresh prefix, with the `timing!` spans logged: where the
    // time goes.
    let (spanned, phases) = apply_with_spans(&etcd.url_with("bench-spans"), &dir.join("d2"), &file);
    let store = EtcdStore::open(&url).expect("open");
    let items = store.list(Kind::VMDefinition).expect("list").0;
    assert_eq!(items.len(), N);
    let values: Vec<(String, Vec<u8>)> =
        items.iter().map(|o| (format!("/bench-raw/o/VMDefinition/{}", o.name()), o.to_json())).collect();
    let bytes: usize = values.iter().map(|(_, v)| v.len()).sum();
    drop(store);
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .args(["--store", &url, "get", "vm", "-o", "json"])
        .stdout(Stdio::null())
        .output()
        .expect("run sectl");
    let get = t.elapsed();
    assert!(out.status.success());

    // 2. the same values straight with etcd-client.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let endpoint = url.trim_start_matches("etcd://").split('/').next().expect("endpoint").to_string();
    let (sequential, batched, concurrent) = rt.block_on(async {
        let mut c = etcd_client::Client::connect([endpoint], None).await.expect("connect");
        let t = Instant::now();
        for (k, v) in &values {
            c.put(format!("{k}-seq"), v.clone(), None).await.expect("put");
        }
        let sequential = t.elapsed();
        let t = Instant::now();
        for chunk in values.chunks(100) {
            let ops: Vec<etcd_client::TxnOp> =
                chunk.iter().map(|(k, v)| etcd_client::TxnOp::put(format!("{k}-txn"), v.clone(), None)).collect();
            c.txn(etcd_client::Txn::new().and_then(ops)).await.expect("txn");
        }
        let batched = t.elapsed();
        // As sectl sends the pieces of a staged write: 8 requests in flight.
        let t = Instant::now();
        let txns = values.chunks(100).map(|chunk| {
            let ops: Vec<etcd_client::TxnOp> =
                chunk.iter().map(|(k, v)| etcd_client::TxnOp::put(format!("{k}-par"), v.clone(), None)).collect();
            let mut kv = c.kv_client();
            async move { kv.txn(etcd_client::Txn::new().and_then(ops)).await.expect("txn") }
        });
        futures_util::stream::iter(txns).buffer_unordered(8).collect::<Vec<_>>().await;
        (sequential, batched, t.elapsed())
    });

    println!(
        "etcd store, single-member etcd on loopback, {N} VMDefinitions ({:.1} MiB of JSON)",
        bytes as f64 / 1048576.0
    );
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| `sectl --no-reconcile --store etcd://… apply -f` of {N} (binary, end to end, one staged write) | {} |",
        secs(apply)
    );
    println!("| `sectl --store etcd://… get vm -o json` of {N} | {} |", secs(get));
    println!("| etcd-client, the same values, {N} sequential puts | {} |", secs(sequential));
    println!("| etcd-client, the same values, Txns of 100 puts, one after the other | {} |", secs(batched));
    println!("| etcd-client, the same values, Txns of 100 puts, 8 in flight | {} |", secs(concurrent));
    println!(
        "| ratio sectl apply / batched Txns one after the other | {:.1}x |",
        apply.as_secs_f64() / batched.as_secs_f64()
    );
    println!(
        "| ratio sectl apply / batched Txns 8 in flight | {:.1}x |",
        apply.as_secs_f64() / concurrent.as_secs_f64()
    );
    print_breakdown(spanned, &phases);
}

/// 4. failover: the leader killed `SECTL_BENCH_KILLS` times (default 5).
fn failover(etcd: &etcd_server::Etcd, dir: &std::path::Path) {
    let kills = std::env::var("SECTL_BENCH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5usize);
    let fo_url = etcd.url_with("bench-ha");
    let watcher = EtcdStore::open(&fo_url).expect("open");
    // Replicas share admin's token file (a replica without it is refused at start).
    let start = |id: &str| {
        let first = dir.join("r0").join("token");
        if id != "r0" {
            let own = dir.join(id);
            std::fs::create_dir_all(&own).expect("data dir");
            std::fs::copy(&first, own.join("token")).expect("copy admin's token file");
        }
        Command::new(env!("CARGO_BIN_EXE_sectl"))
            .args(["--store", &fo_url, "--data-dir"])
            .arg(dir.join(id))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--replica-id", id, "--lease-ttl", "2s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve")
    };
    let wait = |holder: &str| {
        let t = Instant::now();
        while watcher.leader().expect("leader").is_none_or(|l| l.holder != holder) {
            assert!(t.elapsed() < Duration::from_secs(60), "{holder} never led");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.elapsed()
    };
    let mut leader = start("r0");
    wait("r0");
    let mut times = Vec::new();
    for k in 1..=kills {
        let id = format!("r{k}");
        let next = start(&id);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(leader.try_wait().expect("try_wait").is_none(), "the leader exited by itself: no failover to time");
        let _ = leader.kill();
        let _ = leader.wait();
        times.push(wait(&id));
        leader = next;
    }
    let _ = leader.kill();
    let _ = leader.wait();
    times.sort();
    println!(
        "| failover after SIGKILL of the leader, --lease-ttl 2s, {kills} kills: p50 / max | {} / {} |",
        secs(times[times.len() / 2]),
        secs(*times.last().expect("one kill"))
    );
}
