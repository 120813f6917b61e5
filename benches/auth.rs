//! Benchmark of authorization + audit on the write path: apply of 10,000
//! VMDefinitions into a fresh store, once through `Backend::Embedded` (targets
//! resolved, the decision taken, 10,000 hash-chained audit records committed durably)
//! and once with `Store::apply` alone, in the same run, on fresh folders.
//!
//! Run with `cargo bench --bench auth`; it prints both times and the ratio.

use sectl::api::{Kind, Resource};
use sectl::cli::Backend;
use sectl::store::{SledStore, Store};
use std::sync::Arc;
use std::time::Instant;

const N: usize = 10_000;

fn objects() -> Vec<Resource> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let servers = std::fs::read(root.join("manifests/servers.yaml")).expect("manifests/servers.yaml");
    let mut objs: Vec<Resource> = sectl::manifest::decode("servers.yaml", &servers)
        .expect("servers decode")
        .into_iter()
        .map(|d| d.resource)
        .collect();
    let mut text = String::new();
    for i in 0..N {
        let su = if i % 2 == 0 { "ABGSE501" } else { "ABGSE701" };
        text.push_str(&format!(
            "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm-{i:05}}}\nspec: {{vmName: V{i:05}, serverUnit: {su}, vmIndex: '*ANY', state: DEFINED_ONLY, memoryMiB: 1024, cpus: 1}}\n"
        ));
    }
    objs.extend(
        sectl::manifest::decode("vms.yaml", text.as_bytes()).expect("vms decode").into_iter().map(|d| d.resource),
    );
    objs
}

fn timed(objs: &[Resource], audited: bool) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(dir.path()).expect("store"));
    let t = Instant::now();
    let done = if audited {
        Backend::Embedded { store: store.clone(), reconcile: false }.apply(objs.to_vec(), false)
    } else {
        store.apply(objs.to_vec(), false)
    }
    .expect("apply");
    let s = t.elapsed().as_secs_f64();
    assert_eq!(done.len(), objs.len());
    let records = sectl::auth::audit::records(store.as_ref()).expect("records").len();
    assert_eq!(records, if audited { objs.len() } else { 0 });
    assert_eq!(store.list(Kind::VMDefinition).expect("list").0.len(), N);
    s
}

fn main() {
    let objs = objects();
    let plain = timed(&objs, false);
    let audited = timed(&objs, true);
    println!("apply of {} objects ({N} VMDefinitions), fresh store, one run each:", objs.len());
    println!("  Store::apply alone:                     {plain:.3} s");
    println!("  with authorization + audit (10,000+ records): {audited:.3} s");
    println!("  ratio with / without:                   {:.2}x", audited / plain);
}
