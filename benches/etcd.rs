//! Benchmark of the etcd store (`--store etcd://`), on a single-member etcd it starts
//! on a free loopback port (needs `etcd` and `etcdctl`: `apt install etcd-server
//! etcd-client`). Prints:
//! 1. `sectl --no-reconcile --store etcd://... apply -f` of 10,000 VMDefinitions (the
//!    binary, end to end: read, decode, validate, one staged write);
//! 2. the same stored JSON values written straight with etcd-client: sequential puts,
//!    and Txns of 100 puts;
//! 3. failover: `serve` replicas with `--lease-ttl 2s`, the leader killed with SIGKILL
//!    several times; time until another replica holds the leader key (p50, max).
//!
//! Run with `cargo bench --bench etcd` (or, without a release build, `cargo test
//! --bench etcd` — then the figures are of a debug build).

#[path = "../tests/etcd_server/mod.rs"]
mod etcd_server;

use sectl::api::Kind;
use sectl::store::{EtcdStore, Store};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let etcd = etcd_server::Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, (0..N).map(vm_yaml).collect::<String>()).expect("write");

    // 1. sectl apply, end to end.
    let url = etcd.url_with("bench-sectl");
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sectl"))
        .args(["--store", &url, "--no-reconcile", "--data-dir"])
        .arg(dir.path().join("d"))
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .stdout(Stdio::null())
        .output()
        .expect("run sectl");
    let apply = t.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    let (sequential, batched) = rt.block_on(async {
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
        (sequential, t.elapsed())
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
    println!("| etcd-client, the same values, Txns of 100 puts | {} |", secs(batched));
    println!("| ratio sectl apply / batched Txns | {:.1}x |", apply.as_secs_f64() / batched.as_secs_f64());

    // 3. failover.
    let kills = std::env::var("SECTL_BENCH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5usize);
    let fo_url = etcd.url_with("bench-ha");
    let watcher = EtcdStore::open(&fo_url).expect("open");
    // Replicas share admin's token file (a replica without it is refused at start).
    let start = |id: &str| {
        let first = dir.path().join("r0").join("token");
        if id != "r0" {
            let own = dir.path().join(id);
            std::fs::create_dir_all(&own).expect("data dir");
            std::fs::copy(&first, own.join("token")).expect("copy admin's token file");
        }
        Command::new(env!("CARGO_BIN_EXE_sectl"))
            .args(["--store", &fo_url, "--data-dir"])
            .arg(dir.path().join(id))
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
