//! The VM list's rows, kept in memory and current from the store's watch, so a page
//! of the VM list filters prepared rows instead of reading and decoding every
//! VMDefinition (10,000 of them took about 2 s per page in a debug build).
//!
//! One task (`follow`) lists the VMDefinitions once, then takes the changes from the
//! API's one reader of the history (`server::watch_hub`, which every watch stream
//! shares), reads `Store::watch_from` itself only to close a gap (lagging behind the
//! hub), and lists again when the history no longer reaches back (`Expired`, the
//! API's 410). Pages and streams only read the rows (a page that comes before the
//! first list waits for it): they never wait on the store, which flushes before a
//! watch read returns. A change shows within the task's lag (milliseconds; the open
//! page's stream sends it).

use crate::api::{Kind, Resource, VMDefinitionSpec};
use crate::server::api::AppState;
use crate::store::{Store, StoreError, WatchType};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// One VM as the list shows it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The object's name.
    pub name: String,
    /// The VM name (BS2000's).
    pub vm_name: String,
    /// Lower-case VM name, for the name filter.
    pub vm_name_lc: String,
    /// The SU it is on now (its spec's until the status says).
    pub su: String,
    /// The state, or empty.
    pub state: String,
    /// The substates, comma-separated.
    pub substates: String,
    /// Memory in MiB.
    pub memory: u64,
    /// CPUs.
    pub cpus: u64,
    /// LIVE-MIG-COUNT.
    pub lm_count: u32,
    /// `k=v, ...`.
    pub labels: String,
    /// The object, for label selectors.
    pub obj: Resource,
}

/// A row for a VMDefinition, or none when it cannot be read as one.
pub fn row(r: &Resource) -> Option<Row> {
    let o = r.as_typed::<VMDefinitionSpec>()?;
    let su = o.status.server_unit.clone().unwrap_or_else(|| o.spec.server_unit.to_string());
    let vm_name = o.spec.vm_name.to_string();
    Some(Row {
        name: o.metadata.name.to_string(),
        vm_name_lc: vm_name.to_lowercase(),
        vm_name,
        su,
        state: o.status.state.map(|s| s.to_string()).unwrap_or_default(),
        substates: o.status.substates.join(", "),
        memory: o.spec.memory_mi_b.get(),
        cpus: u64::from(o.spec.cpus.get()),
        lm_count: o.status.live_migration_count,
        labels: o.metadata.labels.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        obj: r.clone(),
    })
}

#[derive(Default)]
struct Inner {
    /// By object name (the list's order).
    rows: BTreeMap<String, Arc<Row>>,
    /// The resourceVersion the rows are current at.
    rv: u64,
    /// A list has been taken.
    loaded: bool,
}

/// The table, shared by every page and stream of the VM list.
#[derive(Default)]
pub struct VmTable {
    inner: RwLock<Inner>,
    /// Held while listing: one list at a time.
    listing: Mutex<()>,
    following: AtomicBool,
}

impl VmTable {
    /// The rows now (cheap: shared rows), in name order, and their resourceVersion.
    pub fn rows(&self) -> (Vec<Arc<Row>>, u64) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (g.rows.values().cloned().collect(), g.rv)
    }

    fn loaded(&self) -> (bool, u64) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (g.loaded, g.rv)
    }

    /// Makes sure the rows have been listed once (a page before the task's first list
    /// waits for it rather than listing a second time). Blocking: reads the store.
    pub fn ensure_loaded(&self, store: &dyn Store) -> Result<(), StoreError> {
        if self.loaded().0 {
            return Ok(());
        }
        let _one = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        if self.loaded().0 {
            return Ok(());
        }
        self.relist(store)
    }

    /// Brings the rows up to the store's newest durable change (blocking: reads the
    /// store). Lists again when there is no list yet or the history is gone.
    pub fn catch_up(&self, store: &dyn Store) -> Result<(), StoreError> {
        let (loaded, rv) = self.loaded();
        if !loaded {
            return self.ensure_loaded(store);
        }
        match store.watch_from(rv) {
            Ok(evs) => {
                self.take(0, evs.iter());
                Ok(())
            }
            Err(StoreError::Expired { .. }) => {
                let _one = self.listing.lock().unwrap_or_else(|e| e.into_inner());
                self.relist(store)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies changes newer than the rows (several may share a resourceVersion: one
    /// batch); the rows are then current at least at `to`.
    fn take<'a>(&self, to: u64, evs: impl Iterator<Item = &'a crate::store::WatchEvent>) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        let from = g.rv;
        for ev in evs.filter(|e| e.rv > from) {
            if ev.object.kind() == Kind::VMDefinition {
                apply(&mut g.rows, ev.type_, &ev.object);
            }
            g.rv = ev.rv;
        }
        g.rv = g.rv.max(to);
    }

    fn relist(&self, store: &dyn Store) -> Result<(), StoreError> {
        let (all, at) = store.list(Kind::VMDefinition)?;
        let rows = all.iter().filter_map(|r| row(r).map(|x| (x.name.clone(), Arc::new(x)))).collect();
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !g.loaded || at >= g.rv {
            *g = Inner { rows, rv: at, loaded: true };
        }
        Ok(())
    }
}

fn apply(rows: &mut BTreeMap<String, Arc<Row>>, t: WatchType, obj: &Resource) {
    match (t, row(obj)) {
        (WatchType::Deleted, _) | (_, None) => {
            rows.remove(obj.name());
        }
        (_, Some(r)) => {
            rows.insert(r.name.clone(), Arc::new(r));
        }
    }
}

/// Starts the task that keeps `s.ui.vms` current, once per server (later calls do
/// nothing). It takes the changes from the API's one reader of the history
/// (`server::watch_hub`, shared with every watch stream) and reads the store itself
/// only to start, after lagging behind the hub, or when a batch does not continue where
/// the table is. It ends when the server stops.
pub fn follow(s: &AppState) {
    if s.ui.vms.following.swap(true, Ordering::SeqCst) {
        return;
    }
    let s = s.clone();
    tokio::spawn(async move {
        if let Err(e) = follow_hub(&s).await {
            tracing::warn!("dashboard VM table: {e}; the VM list is no longer kept current");
        }
        s.ui.vms.following.store(false, Ordering::SeqCst);
    });
}

/// Reads the store's changes since the table's resourceVersion itself (on a blocking thread).
async fn catch_up_blocking(s: &AppState) {
    let s2 = s.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s2.ui.vms.catch_up(s2.store.as_ref())).await {
        tracing::warn!("dashboard VM table: {e}");
    }
}

async fn follow_hub(s: &AppState) -> Result<(), StoreError> {
    use tokio::sync::broadcast::error::RecvError;
    let hub = crate::server::watch_hub::WatchHub::get(&s.watch_hub, &s.store, &s.stop).await?;
    let Some(mut joined) = hub.join() else { return Ok(()) };
    // Joined first, then read: every change after the read arrives in a batch.
    catch_up_blocking(s).await;
    let mut stop = s.stop.clone();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let batch = tokio::select! {
            b = joined.rx.recv() => b,
            _ = stop.changed() => continue,
        };
        match batch {
            Ok(b) if b.error.is_some() => {}
            Ok(b) => {
                let (_, rv) = s.ui.vms.loaded();
                if b.from > rv {
                    catch_up_blocking(s).await;
                } else {
                    s.ui.vms.take(b.to, b.events.iter().map(|e| &e.ev));
                }
            }
            Err(RecvError::Lagged(_)) => catch_up_blocking(s).await,
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn vm(name: &str, su: &str) -> Resource {
        let y = format!(
            "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}}}\n\
             spec: {{vmName: {}, serverUnit: {su}, vmIndex: '*ANY', persistent: true, state: DEFINED_ONLY, memoryMiB: 64, cpus: 1}}\n",
            name.to_uppercase()
        );
        crate::manifest::decode("t.yaml", y.as_bytes()).expect("decodes").remove(0).resource
    }

    #[test]
    fn follows_creates_updates_and_deletes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(&tmp.path().join("data")).expect("store");
        store.create(vm("a", "ABGSE701")).expect("create");
        let t = VmTable::default();
        t.catch_up(&store).expect("list");
        assert_eq!(t.rows().0.len(), 1);
        store.create(vm("b", "ABGSE501")).expect("create");
        let mut a = store.get(Kind::VMDefinition, "a").expect("get").expect("a");
        a.meta_mut().labels.0.insert("tier".into(), "gold".into());
        store.update(a).expect("update");
        t.catch_up(&store).expect("catch up");
        let (rows, rv) = t.rows();
        assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(rows[0].labels, "tier=gold");
        assert_eq!(rv, store.resource_version());
        store.delete(Kind::VMDefinition, "a").expect("delete");
        t.catch_up(&store).expect("catch up");
        assert_eq!(t.rows().0.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["b"]);
    }
}
