//! Benchmarks of the controller, run with `cargo bench --bench controller`:
//! 1. convergence: a generated site of 20 SU clusters and 10,000 VM definitions
//!    converges from an empty store (apply + reconcile until quiet), then the doubled
//!    site (40 clusters, 20,000 VMs); the ratio shows how time grows. The wall time
//!    includes the apply; `reconcile` is the part after it (controller start included);
//! 2. live migration: 1,000 VMs on 10 SU clusters, 100 LiveMigrations applied at once
//!    and simulated to the end (they queue per source SU: one outgoing at a time);
//! 3. the planning table: simulated duration and downtime of one live migration for VM
//!    sizes 1-64 GiB, dirty rates and 1/10 Gbit/s, each run through the controller.
//!
//! Everything prints its figures; nothing here asserts on time.

mod support;

use sectl::api::{Kind, LiveMigrationSpec, LmPhase, Resource};
use sectl::controller::{Controller, Options};
use sectl::manifest;
use sectl::store::{SledStore, Store};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;
use support::private_dir;

/// A site: `clusters` pairs of x86 servers, each server with `sus` SUs, a management
/// cluster per pair and an SU cluster over the first SU of each server; `vms` VMs
/// spread over all SUs.
fn site(clusters: usize, sus: usize, vms: usize, gbps: u32, arch: &str) -> String {
    let mut s = String::new();
    for c in 0..clusters {
        for side in ["a", "b"] {
            let _ = write!(
                s,
                "---\napiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: se-{side}{c}}}\nspec:\n  model: SE310\n  version: V6.3\n  netUnit: {{speedGbps: {}}}\n  managementUnits: [{{name: mu-{side}{c}}}]\n  serverUnits:\n",
                if gbps >= 10 { 10 } else { 1 }
            );
            for u in 0..sus {
                let _ = writeln!(
                    s,
                    "    - {{name: SU{side}{c}X{u}, type: \"{arch}\", cpus: 16, memoryMiB: 262144, cpuPools: [{{name: \"*STDPOOL\", cpus: 16}}], devices: [{{mn: \"A000-A0FF\", type: disk, hostConnector: \"01\", unitId: \"00\"}}]}}"
                );
            }
        }
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: ManagementCluster\nmetadata: {{name: mc{c}}}\nspec:\n  servers: [se-a{c}, se-b{c}]\n  islE: {{bandwidthGbps: {gbps}}}\n  configDisks: [{{name: crd{c}a}}, {{name: crd{c}b}}]\n---\napiVersion: sectl.io/v1alpha1\nkind: SUCluster\nmetadata: {{name: suc{c}}}\nspec: {{serverUnits: [SUa{c}X0, SUb{c}X0]}}\n"
        );
    }
    let total_sus = clusters * 2 * sus;
    for i in 0..vms {
        let su_i = i % total_sus;
        let c = su_i / (2 * sus);
        let side = if (su_i / sus).is_multiple_of(2) { "a" } else { "b" };
        let u = su_i % sus;
        let state = ["RUNNING", "RUNNING", "INIT_ONLY", "DOWN", "DEFINED_ONLY"][i % 5];
        // Each side of a pair uses its own half of A000-A0FF, so a VM can migrate to
        // the other side without meeting its devices held there.
        let mn = 0xA000 + if side == "a" { 0 } else { 0x80 } + (i / total_sus) % 128;
        let _ = write!(
            s,
            "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm{i:05}}}\nspec:\n  vmName: V{i:05}\n  serverUnit: SU{side}{c}X{u}\n  state: {state}\n  memoryMiB: 1024\n  devices: [{{mn: \"{mn:04X}\", usage: exclusive}}]\n  workload: {{dirtyRateMiBps: 20}}\n"
        );
    }
    s
}

fn open(dir: &std::path::Path) -> Arc<SledStore> {
    Arc::new(SledStore::open(dir).expect("store"))
}

/// Applies the site in one store write; decoded as files of at most 8 MiB (a manifest
/// may be 16 MiB; the 100,000-VM site is 24 MB), as `apply -f` of a folder does.
fn apply_text(store: &Arc<SledStore>, text: &str) {
    let mut objs: Vec<Resource> = Vec::new();
    let mut file = String::new();
    let mut decode = |file: &mut String| {
        let docs = manifest::decode("site.yaml", file.as_bytes()).expect("valid site");
        objs.extend(docs.into_iter().map(|d| d.resource));
        file.clear();
    };
    for doc in text.split("---\n").filter(|d| !d.is_empty()) {
        if file.len() + doc.len() > 8 << 20 {
            decode(&mut file);
        }
        file.push_str("---\n");
        file.push_str(doc);
    }
    decode(&mut file);
    store.apply(objs, false).expect("apply");
}

fn converge(clusters: usize, vms: usize) -> (f64, f64, u64, String) {
    let dir = private_dir();
    let text = site(clusters, 3, vms, 10, "x86");
    let store = open(dir.path());
    let t = Instant::now();
    apply_text(&store, &text);
    let applied = t.elapsed().as_secs_f64();
    let dynstore: Arc<dyn Store> = store.clone();
    let mut c = Controller::new(dynstore, Options::default()).expect("controller");
    c.run_until_quiet().expect("quiet");
    let total = t.elapsed().as_secs_f64();
    let (vms_now, _) = store.list(Kind::VMDefinition).expect("list");
    let placed = vms_now.iter().filter(|r| r.status_json()["serverUnit"].is_string()).count();
    assert_eq!(placed, vms, "every VM placed");
    let kinds: Vec<String> = c.stats.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    (applied, total, c.stats.reconciles, kinds.join(", "))
}

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    // `SECTL_BENCH_VMS=N` converges one site of N VMs (N/500 SU clusters) only: a
    // small site for `valgrind --tool=callgrind` (instructions per reconcile).
    let only: Option<usize> =
        std::env::var("SECTL_BENCH_VMS").ok().map(|v| v.parse().expect("SECTL_BENCH_VMS: a number"));
    if let (true, Some(n)) = (want("converge"), only) {
        let (a, t, r, kinds) = converge((n / 500).max(1), n);
        println!(
            "converge {} SU clusters, {n} VMs: {t:.3} s wall (apply {a:.3} s, reconcile {:.3} s, {r} reconciles: {kinds})",
            (n / 500).max(1),
            t - a
        );
        return;
    }
    if want("converge") {
        let (a1, t1, r1, k1) = converge(20, 10_000);
        println!("converge 20 SU clusters, 10000 VMs: {t1:.3} s wall (apply {a1:.3} s, reconcile {:.3} s, {r1} reconciles: {k1})", t1 - a1);
        let (a2, t2, r2, k2) = converge(40, 20_000);
        println!("converge 40 SU clusters, 20000 VMs: {t2:.3} s wall (apply {a2:.3} s, reconcile {:.3} s, {r2} reconciles: {k2})", t2 - a2);
        println!("converge ratio doubled/base: {:.2} (reconcile only: {:.2})", t2 / t1, (t2 - a2) / (t1 - a1));
    }

    if want("migrate") {
        let dir = private_dir();
        let store = open(dir.path());
        // 10 SU clusters of 2 SUs (one SU per server here), 50 VMs per SU.
        apply_text(&store, &site(10, 1, 1000, 10, "x86"));
        let dynstore: Arc<dyn Store> = store.clone();
        let mut c = Controller::new(dynstore, Options::default()).expect("controller");
        c.run_until_quiet().expect("quiet");
        let (vms, _) = store.list(Kind::VMDefinition).expect("list");
        let movable: Vec<String> = vms
            .iter()
            .filter(|r| matches!(r.status_json()["state"].as_str(), Some("RUNNING")))
            .map(|r| r.name().to_string())
            .take(100)
            .collect();
        let mut text = String::new();
        for (i, vm) in movable.iter().enumerate() {
            let _ = write!(text, "---\napiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {{name: lm{i:03}}}\nspec: {{vm: {vm}}}\n");
        }
        let sim0 = c.now_ms();
        let t = Instant::now();
        apply_text(&store, &text);
        c.run_until_quiet().expect("quiet");
        let wall = t.elapsed().as_secs_f64();
        let (lms, _) = store.list(Kind::LiveMigration).expect("list");
        let done = lms
            .iter()
            .filter(|r| r.as_typed::<LiveMigrationSpec>().is_some_and(|l| l.status.phase == LmPhase::Completed))
            .count();
        println!(
            "migrate 1000 VMs on 10 SU clusters, {} LiveMigrations at once: {wall:.3} s wall, {done} completed, {:.1} min simulated",
            movable.len(),
            (c.now_ms() - sim0) as f64 / 60_000.0
        );
        let audit = c.world().audit();
        println!("migrate audit problems: {}", audit.len());
    }

    if want("table") {
        println!(
            "\n| SU | VM size | dirty MiB/s | link | duration | downtime | rounds (last transfer included) | result |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (arch, gbps) in [("x86", 1u32), ("x86", 10), ("390", 1), ("390", 10)] {
            for gib in [1u64, 4, 16, 64] {
                for dirty in [0u32, 50, 200] {
                    let dir = private_dir();
                    let store = open(dir.path());
                    let mut text = site(1, 1, 0, gbps, arch);
                    let _ = write!(text, "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: big}}\nspec:\n  vmName: BIG\n  serverUnit: SUa0X0\n  state: RUNNING\n  memoryMiB: {}\n  workload: {{dirtyRateMiBps: {dirty}}}\n---\napiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {{name: lm}}\nspec: {{vm: big}}\n", gib * 1024);
                    apply_text(&store, &text);
                    let dynstore: Arc<dyn Store> = store.clone();
                    let mut c = Controller::new(dynstore, Options::default()).expect("controller");
                    c.run_until_quiet().expect("quiet");
                    let lm = store.get(Kind::LiveMigration, "lm").expect("get").expect("lm");
                    let l = lm.as_typed::<LiveMigrationSpec>().expect("lm");
                    let fmt = |ms: Option<u64>| {
                        ms.map(|m| {
                            if m >= 60_000 {
                                format!("{:.1} min", m as f64 / 60_000.0)
                            } else {
                                format!("{:.1} s", m as f64 / 1000.0)
                            }
                        })
                        .unwrap_or("-".into())
                    };
                    println!(
                        "| {} | {gib} GiB | {dirty} | {gbps} Gbit/s | {} | {} | {} | {} |",
                        if arch == "390" { "/390" } else { "x86" },
                        fmt(l.status.duration_ms),
                        fmt(l.status.downtime_ms),
                        l.status.rounds.len(),
                        l.status.phase
                    );
                }
            }
        }
        println!(
            "(SU pairs over ISL-E, 16 CPUs each; x86 always completes, with a longer suspension when the copy cannot converge; /390 copies at most 800 MiB/s and aborts with VMS2425 when it cannot converge)"
        );
    }
}
