//! Property test of issue 9: any sequence of applies, deletions, faults, live
//! migrations and crashes leaves a store that `sectl check` finds consistent once a
//! controller has run again. A crash is simulated in-process by a store that refuses
//! every write after N controller batches: the controller stops there and is
//! dropped with all it held in memory, and a new one starts on what was committed
//! (the batches before the crash, as after a kill -9 at that batch boundary).

mod common;

use common::SITE;
use proptest::prelude::*;
use sectl::api::{Kind, Resource};
use sectl::controller::{Controller, Options};
use sectl::sim::{Fault, World};
use sectl::store::{
    ApplyOutcome, Batch, Committed, Event, Listing, Result, SledStore, Store, StoreError, WatchEvent,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A store whose controller batches fail once a budget is used up (the "crash").
struct Crashy {
    inner: Arc<SledStore>,
    budget: AtomicI64,
}

impl Crashy {
    fn spend(&self) -> Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(StoreError::Backend("simulated crash".into()));
        }
        Ok(())
    }
}

impl Store for Crashy {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>> {
        self.inner.get(kind, name)
    }
    fn list_report(&self, kind: Kind) -> Result<Listing> {
        self.inner.list_report(kind)
    }
    fn create(&self, obj: Resource) -> Result<Resource> {
        self.inner.create(obj)
    }
    fn update(&self, obj: Resource) -> Result<Resource> {
        self.inner.update(obj)
    }
    fn update_status(&self, obj: Resource) -> Result<Resource> {
        self.spend()?;
        self.inner.update_status(obj)
    }
    fn delete(&self, kind: Kind, name: &str) -> Result<Resource> {
        self.inner.delete(kind, name)
    }
    fn apply(&self, objs: Vec<Resource>, dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>> {
        self.inner.apply(objs, dry_run)
    }
    fn watch_from(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        self.inner.watch_from(rv)
    }
    fn changes_since(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        self.inner.changes_since(rv)
    }
    fn resource_version(&self) -> u64 {
        self.inner.resource_version()
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
    fn record_event(&self, ev: Event) -> Result<Event> {
        self.spend()?;
        self.inner.record_event(ev)
    }
    fn events(&self) -> Result<Vec<Event>> {
        self.inner.events()
    }
    fn ack_events(&self) -> Result<usize> {
        self.inner.ack_events()
    }
    fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_blob(name)
    }
    fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put_blob(name, bytes)
    }
    fn commit_batch(&self, b: Batch) -> Result<Committed> {
        self.spend()?;
        self.inner.commit_batch(b)
    }
    fn read_state(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.read_state(prefix)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Apply the site with extra VMs 0..n (memory varies with `mem`).
    Apply { n: usize, mem: u64 },
    /// Delete extra VM i.
    Delete(usize),
    /// A fault or repair (`sim` arguments).
    Fault(&'static str),
    /// Migrate vm12prod to the other SU.
    Migrate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..5, 1u64..4).prop_map(|(n, mem)| Op::Apply { n, mem }),
        (0usize..5).prop_map(Op::Delete),
        prop::sample::select(vec![
            "link down mc",
            "link up mc",
            "disk fail crd-a",
            "disk repair crd-a",
            "advance 30s",
            "bcam stop ABGSE701",
            "bcam start ABGSE701",
        ])
        .prop_map(Op::Fault),
        Just(Op::Migrate),
    ]
}

fn extra_vms(n: usize, mem: u64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: extra{i}}}\nspec:\n  vmName: EXTRA{i}\n  serverUnit: ABGSE701\n  state: RUNNING\n  memoryMiB: {}\n",
                512 * mem
            )
        })
        .collect()
}

/// Carries out one op against the store, then runs a controller (which may crash).
fn step(store: &Arc<Crashy>, op: &Op, lms: &mut usize, crash_after: Option<i64>) {
    let inner = &store.inner;
    let mut fault = None;
    match op {
        Op::Apply { n, mem } => {
            let text = format!("{SITE}{}", extra_vms(*n, *mem));
            inner.apply(common::all(&text), false).expect("apply");
        }
        Op::Delete(i) => {
            let _ = inner.delete(Kind::VMDefinition, &format!("extra{i}"));
        }
        Op::Fault(args) => fault = Some(Fault::parse(&args.split(' ').map(String::from).collect::<Vec<_>>()).expect("fault")),
        Op::Migrate => {
            let on = inner
                .get(Kind::VMDefinition, "vm12prod")
                .expect("get")
                .and_then(|v| v.status_json()["serverUnit"].as_str().map(String::from));
            if let Some(on) = on {
                let target = if on == "ABGSE701" { "ABGSE501" } else { "ABGSE701" };
                *lms += 1;
                let lm = format!(
                    "apiVersion: sectl.io/v1alpha1\nkind: LiveMigration\nmetadata: {{name: lm{lms}}}\nspec: {{vm: vm12prod, targetServerUnit: {target}}}\n"
                );
                inner.apply(common::all(&lm), false).expect("apply lm");
            }
        }
    }
    store.budget.store(crash_after.unwrap_or(i64::MAX), Ordering::SeqCst);
    // Controller construction itself may crash (it stores its relist).
    let Ok(mut c) = Controller::new(store.clone() as Arc<dyn Store>, Options::default()) else { return };
    if let Some(f) = fault {
        if c.apply_fault(&f).is_err() {
            return;
        }
    }
    let _ = c.run_until_quiet();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 20, .. ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_changes_and_crashes_leaves_a_consistent_store(
        ops in prop::collection::vec((op(), prop::option::of(0i64..12)), 1..8),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let inner = Arc::new(SledStore::open(dir.path()).expect("open"));
        let store = Arc::new(Crashy { inner: inner.clone(), budget: AtomicI64::new(i64::MAX) });
        inner.apply(common::all(SITE), false).expect("site");
        let mut lms = 0;
        for (op, crash) in &ops {
            step(&store, op, &mut lms, *crash);
        }
        // Restart without crashes and let it settle.
        store.budget.store(i64::MAX, Ordering::SeqCst);
        let mut c = Controller::new(store.clone() as Arc<dyn Store>, Options::default()).expect("controller");
        c.run_until_quiet().expect("settles");
        drop(c);
        let problems = sectl::check::check(inner.as_ref()).expect("check");
        prop_assert!(problems.is_empty(), "after {:?}: {:#?}", ops, problems);
        // The world holds exactly the VMs the store has.
        let w = World::load(inner.as_ref()).expect("world");
        let (vms, _) = inner.list(Kind::VMDefinition).expect("list");
        let names: std::collections::BTreeSet<String> = vms.iter().map(|v| v.name().to_string()).collect();
        for n in w.vms.keys() {
            prop_assert!(names.contains(n), "{} in the world but not in the store", n);
        }
        // Every migration ran to an end, once.
        let evs = inner.events().expect("events");
        for i in 1..=lms {
            let obj = format!("LiveMigration/lm{i}");
            let ends = evs.iter().filter(|e| e.object == obj && (e.reason == "LiveMigrationCompleted" || e.reason == "LiveMigrationAborted")).count();
            prop_assert!(ends <= 1, "{} ended {} times", obj, ends);
        }
    }
}
