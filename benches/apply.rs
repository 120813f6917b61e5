//! Benchmark of the foundation's write path: `sectl apply` of 10,000 VMDefinitions.
//!
//! Run with `cargo bench --bench apply`. Everything is measured in one run:
//! 1. a multi-document YAML file of 10,000 realistic VMDefinitions is generated;
//! 2. it is applied in-process into a fresh `SledStore`, the same path `sectl apply`
//!    takes (read + decode, open store, list servers, check, `Store::apply`), several
//!    times on fresh folders; re-applying it unchanged is timed too;
//! 3. baseline: the same stored JSON bytes written into a raw sled tree with one batch
//!    and one flush;
//! 4. the release binary: `sectl get vm -o json` of the 10,000, and the end-to-end
//!    `sectl --no-reconcile apply -f big.yaml`.
//!
//! Targets (issue 15): apply at most 6x raw sled for the same values in the same run,
//! and under 1 s.

use sectl::api::{Kind, Resource};
use sectl::manifest;
use sectl::store::{SledStore, Store};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const N: usize = 10_000;

/// Runs per measurement: 3, or `SECTL_BENCH_RUNS`.
fn runs() -> usize {
    std::env::var("SECTL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(3)
}

/// A small deterministic generator (xorshift64*), so every run sees the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const APPS: &[&str] = &["billing", "payroll", "ledger", "claims", "booking", "archive", "reporting", "crm"];
const ENVS: &[&str] = &["prod", "test", "dev", "qa", "staging"];
const TIERS: &[&str] = &["online", "batch", "mixed"];
const STATES: &[&str] = &["DEFINED_ONLY", "INIT_ONLY", "RUNNING", "RUNNING", "RUNNING", "DOWN"];
const MEMORY: &[u64] = &[512, 1024, 2048, 4096, 6144, 8192, 12288, 16384, 32768, 65536];

/// One VMDefinition document (about 1-1.5 KB).
fn vm_doc(i: usize, r: &mut Rng, out: &mut String) {
    let app = r.pick(APPS);
    let env = r.pick(ENVS);
    let su = 1 + r.below(16);
    out.push_str("---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata:\n");
    let _ = writeln!(out, "  name: vm-{i:05}-{app}-{env}");
    out.push_str("  labels:\n");
    let _ = writeln!(out, "    app: {app}\n    env: {env}\n    tier: {}", r.pick(TIERS));
    let _ = writeln!(out, "    team: team-{:02}\n    cost-center: cc-{:04}", r.below(40), 1000 + r.below(9000));
    let _ = writeln!(out, "    sectl.io/site: site-{}", if su <= 8 { "a" } else { "b" });
    out.push_str("  annotations:\n");
    let _ = writeln!(out, "    sectl.io/owner: \"ops-{app}@example.com\"");
    let _ =
        writeln!(out, "    description: \"BS2000 {env} system {i} of {app}, nightly batch and online transactions\"");
    let _ = writeln!(out, "    sectl.io/change-ticket: \"CHG{:07}\"", r.below(10_000_000));
    out.push_str("spec:\n");
    let _ = writeln!(out, "  vmName: VM{i:05}");
    let _ = writeln!(out, "  serverUnit: SU{su}");
    if r.below(3) == 0 {
        out.push_str("  vmIndex: \"*ANY\"\n");
    } else {
        let _ = writeln!(out, "  vmIndex: {}", 2 + r.below(98));
    }
    let _ = writeln!(out, "  persistent: {}", r.below(4) != 0);
    let _ = writeln!(out, "  state: {}", r.pick(STATES));
    let _ = writeln!(out, "  memoryMiB: {}", MEMORY[r.below(MEMORY.len() as u64) as usize]);
    let _ = writeln!(out, "  cpus: {}", 1 + r.below(8));
    if r.below(2) == 0 {
        out.push_str("  cpuPool: \"*STDPOOL\"\n");
    } else {
        let _ = writeln!(out, "  cpuPool: POOL{}", 1 + r.below(4));
    }
    if r.below(2) == 0 {
        let _ = writeln!(out, "  vmGroup: GRP{}", 1 + r.below(6));
    }
    if r.below(3) == 0 {
        let _ = writeln!(out, "  maxIo: {}", 1000 * (1 + r.below(20)));
    }
    out.push_str("  devices:\n");
    // Disks and tapes: distinct 4-digit MNs, sometimes a small range, sometimes shared.
    let ndev = 12 + r.below(10);
    let mut mn = 0x1000 + r.below(0x8000) as u32;
    for d in 0..ndev {
        if d == 0 && r.below(4) == 0 {
            let _ = writeln!(out, "    - mn: \"{:04X}-{:04X}\"\n      usage: shared", mn, mn + 15);
            mn += 16;
        } else {
            let usage = if r.below(5) == 0 { "shared" } else { "exclusive" };
            let _ = writeln!(out, "    - mn: \"{mn:04X}\"\n      usage: {usage}");
            mn += 1 + r.below(3) as u32;
        }
    }
    let _ = writeln!(out, "  workload:\n    dirtyRateMiBps: {}.{}", r.below(200), r.below(10));
}

fn generate(path: &Path) -> (usize, usize) {
    let mut r = Rng(0x5EC7_1234_ABCD_0001);
    let mut text = String::with_capacity(N * 1400);
    text.push_str("# 10,000 VMDefinitions generated by benches/apply.rs\n");
    let mut min = usize::MAX;
    let mut max = 0;
    for i in 0..N {
        let before = text.len();
        vm_doc(i, &mut r, &mut text);
        let len = text.len() - before;
        min = min.min(len);
        max = max.max(len);
    }
    std::fs::write(path, &text).expect("write manifest");
    (min, max)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn best_median(mut xs: Vec<Duration>) -> (Duration, Duration) {
    xs.sort();
    (xs[0], xs[xs.len() / 2])
}

/// CPU time (user + system, all threads) this process has used so far, from
/// /proc/self/stat (Linux; in clock ticks of 10 ms). Zero where unavailable. The
/// machine may be shared, so CPU time is shown beside wall time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Times of one in-process apply, split by phase.
#[derive(Clone, Copy)]
struct ApplyTimes {
    decode: Duration,
    validate: Duration,
    store: Duration,
    /// Parts of `store`: opening the store and listing its servers.
    open_list: Duration,
    total: Duration,
    decode_cpu: Duration,
    total_cpu: Duration,
}

/// The path of `sectl apply` (src/cli/mod.rs), in-process.
fn apply_once(file: &Path, dir: &Path, expect_created: bool) -> (ApplyTimes, SledStore) {
    let (c0, t0) = (cpu_time(), Instant::now());
    let (docs, errors) = manifest::read_inputs(&[file.display().to_string()]);
    assert!(errors.is_empty(), "manifest errors: {:?}", &errors[..errors.len().min(3)]);
    assert_eq!(docs.len(), N);
    let (c1, t1) = (cpu_time(), Instant::now());
    let store = SledStore::open(dir).expect("open store");
    let servers = store.list(Kind::SEServer).expect("list").0;
    let t2 = Instant::now();
    let errors = manifest::check_documents(&docs, &servers);
    assert!(errors.is_empty(), "check errors: {:?}", &errors[..errors.len().min(3)]);
    let t3 = Instant::now();
    let objs: Vec<Resource> = docs.into_iter().map(|d| d.resource).collect();
    let results = store.apply(objs, false).expect("apply");
    let (c4, t4) = (cpu_time(), Instant::now());
    assert_eq!(results.len(), N);
    let want = if expect_created { sectl::store::ApplyOutcome::Created } else { sectl::store::ApplyOutcome::Unchanged };
    assert!(results.iter().all(|(o, _)| *o == want));
    drop(results);
    let times = ApplyTimes {
        decode: t1 - t0,
        validate: t3 - t2,
        store: (t2 - t1) + (t4 - t3),
        open_list: t2 - t1,
        total: t4 - t0,
        decode_cpu: c1 - c0,
        total_cpu: c4 - c0,
    };
    (times, store)
}

/// The baseline: the stored bytes into a raw sled tree, one batch, one flush.
fn raw_sled(dir: &Path, items: &[(Vec<u8>, Vec<u8>)]) -> Duration {
    let t0 = Instant::now();
    let db = sled::Config::new().path(dir.join("db")).open().expect("sled open");
    let tree = db.open_tree("raw").expect("tree");
    let mut batch = sled::Batch::default();
    for (k, v) in items {
        batch.insert(k.as_slice(), v.as_slice());
    }
    tree.apply_batch(batch).expect("batch");
    db.flush().expect("flush");
    let d = t0.elapsed();
    assert_eq!(tree.len(), items.len());
    d
}

/// The release binary, built by `cargo bench` (a bench gets the package's binaries);
/// falls back to `cargo build --release` if it is not there.
fn sectl_binary() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_sectl"));
    if built.exists() {
        return built;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let release = root.join("target/release/sectl");
    if !release.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "sectl"])
            .current_dir(root)
            .status()
            .expect("run cargo build --release");
        assert!(status.success(), "cargo build --release failed");
    }
    release
}

fn run_binary(bin: &Path, args: &[&str]) -> Duration {
    let t0 = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env_remove("SECTL_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run sectl");
    let d = t0.elapsed();
    assert!(out.status.success(), "sectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    d
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    let runs_n = runs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("big.yaml");
    let (min, max) = generate(&file);
    let size = std::fs::metadata(&file).expect("stat").len();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} core(s)");
    println!(
        "manifest: {N} VMDefinitions, {:.1} MiB, {} bytes/document on average (min {min}, max {max})",
        size as f64 / (1024.0 * 1024.0),
        size as usize / N
    );

    // 2. In-process apply into fresh stores.
    let mut runs = Vec::new();
    let mut last_dir = None;
    for i in 0..runs_n {
        let dir = tmp.path().join(format!("store-{i}"));
        let (t, store) = apply_once(&file, &dir, true);
        drop(store);
        runs.push(t);
        last_dir = Some(dir);
    }
    let filled = last_dir.expect("at least one run");
    let (best, median) = best_median(runs.iter().map(|t| t.total).collect());
    let pick = |d: Duration| *runs.iter().find(|t| t.total == d).expect("a run");
    let (b, m) = (pick(best), pick(median));
    println!(
        "apply {N} VMDefinitions (decode+validate+store+flush), best of {runs_n}: {} (median {})",
        secs(best),
        secs(median)
    );
    for (label, t) in [("best run:  ", b), ("median run:", m)] {
        println!(
            "  split, {label} read+decode {} + validate {} = {}; store (open+list {} + apply+flush {}) {}; cpu: decode {}, all {}",
            secs(t.decode),
            secs(t.validate),
            secs(t.decode + t.validate),
            secs(t.open_list),
            secs(t.store - t.open_list),
            secs(t.store),
            secs(t.decode_cpu),
            secs(t.total_cpu)
        );
    }

    // Re-apply the same file to the filled store: every object unchanged.
    let (again, store) = apply_once(&file, &filled, false);
    println!(
        "re-apply {N} unchanged: {} (read+decode {}, validate {}, store {})",
        secs(again.total),
        secs(again.decode),
        secs(again.validate),
        secs(again.store)
    );

    // 3. Baseline: the bytes the store holds for each object, into raw sled.
    let (objs, _) = store.list(Kind::VMDefinition).expect("list");
    assert_eq!(objs.len(), N);
    let items: Vec<(Vec<u8>, Vec<u8>)> =
        objs.iter().map(|o| (format!("o/{}/{}", o.kind().as_str(), o.name()).into_bytes(), o.to_json())).collect();
    let json_bytes: usize = items.iter().map(|(_, v)| v.len()).sum();
    drop((objs, store));
    let raw: Vec<Duration> = (0..runs_n).map(|i| raw_sled(&tmp.path().join(format!("raw-{i}")), &items)).collect();
    let (raw_best, raw_median) = best_median(raw);
    println!(
        "raw sled, same {N} JSON values ({:.1} MiB), one batch + one flush, best of {runs_n}: {} (median {})",
        json_bytes as f64 / (1024.0 * 1024.0),
        secs(raw_best),
        secs(raw_median)
    );
    let ratio = best.as_secs_f64() / raw_best.as_secs_f64();
    println!(
        "ratio sectl apply / raw sled (best): {ratio:.2}x (store part alone: {:.2}x); target <= 6x: {}",
        b.store.as_secs_f64() / raw_best.as_secs_f64(),
        if ratio <= 6.0 { "met" } else { "MISSED" }
    );
    println!("apply under 1 s (best in-process): {}", if best < Duration::from_secs(1) { "met" } else { "MISSED" });

    // 4. The release binary.
    let bin = sectl_binary();
    let data = filled.display().to_string();
    let gets: Vec<Duration> = (0..runs_n)
        .map(|_| run_binary(&bin, &["--data-dir", &data, "--no-reconcile", "get", "vm", "-o", "json"]))
        .collect();
    let (g_best, g_median) = best_median(gets);
    println!("sectl get vm -o json ({N} objects, binary): best {} (median {})", secs(g_best), secs(g_median));
    let f = file.display().to_string();
    let e2e: Vec<Duration> = (0..runs_n)
        .map(|i| {
            let dir = tmp.path().join(format!("bin-{i}")).display().to_string();
            run_binary(&bin, &["--data-dir", &dir, "--no-reconcile", "apply", "-f", &f])
        })
        .collect();
    let (e_best, e_median) = best_median(e2e);
    println!(
        "sectl --no-reconcile apply -f big.yaml (binary, fresh store): best {} (median {})",
        secs(e_best),
        secs(e_median)
    );
}
