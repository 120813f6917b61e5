//! The controller: watches the store, keeps a reflector cache, schedules reconciles
//! per object (deduplicated), runs them with bounded concurrency (never two of one
//! object at once), writes back status (skipping writes that change nothing) and
//! events, and moves the simulated clock.
//!
//! One reconciler per kind lives in its own module. Each is level-based: it reads the
//! object, the cache and the simulated world, converges the world, and returns the
//! status it observed plus `Action::Await` or `Action::RequeueAfter`. It never sees why
//! it was woken.

mod lm;
mod mgmt;
mod recovery;
pub mod runtime;
mod server;
mod sucluster;
mod vm;

use crate::api::{Kind, Resource};
use crate::sim::{Fault, HwEvent, World};
use crate::store::{Event, EventType, Store, StoreError, WatchType};
use runtime::{Action, Backoff, Cache, Key, Scheduler};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// An event a reconciler wants logged.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// INFO, NOTICE, WARNING, ERROR.
    pub priority: &'static str,
    /// Cluster, M2000, Sys-Mgmt, VM2000, LM, ...
    pub component: &'static str,
    /// "Kind/name".
    pub object: String,
    /// CamelCase.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// What a reconciler sees.
pub struct Cx<'a> {
    /// The simulated world (the reconciler may converge it).
    pub world: &'a mut World,
    /// Every object as last seen.
    pub cache: &'a Cache,
    /// Events to log.
    pub events: Vec<NewEvent>,
    /// Other objects to wake after this reconcile.
    pub wake: Vec<Key>,
}

impl Cx<'_> {
    /// Now on the simulated clock, RFC 3339.
    pub fn now(&self) -> String {
        self.world.clock.rfc3339()
    }

    /// Logs an event.
    pub fn event(
        &mut self,
        type_: EventType,
        priority: &'static str,
        component: &'static str,
        object: String,
        reason: &str,
        message: String,
    ) {
        self.events.push(NewEvent { type_, priority, component, object, reason: reason.to_string(), message });
    }
}

/// What a reconcile returns.
pub struct Outcome {
    /// The object with the status the reconciler observed (written if it changed).
    pub status: Option<Resource>,
    /// When to run again.
    pub action: Action,
}

impl Outcome {
    /// Status to write, then wait for changes.
    pub fn status(r: Resource) -> Outcome {
        Outcome { status: Some(r), action: Action::Await }
    }
}

/// A reconcile's outcome with the events it logged and the objects it woke.
type Reconciled = (Outcome, Vec<NewEvent>, Vec<Key>);

/// Tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reconciles run at once (distinct objects). 1 makes runs deterministic.
    pub concurrency: usize,
    /// Stop `run_until_quiet` after this many reconciles (a safety net against a
    /// reconciler that never settles).
    pub max_reconciles: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { concurrency: 1, max_reconciles: 10_000_000 }
    }
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Reconciles run.
    pub reconciles: u64,
    /// Status writes that changed something.
    pub status_writes: u64,
    /// Status writes skipped because nothing changed.
    pub skipped_writes: u64,
    /// Reconciles that failed.
    pub errors: u64,
    /// Most reconciles seen running at once.
    pub max_parallel: usize,
}

/// The controller.
pub struct Controller {
    store: Arc<dyn Store>,
    world: Mutex<World>,
    cache: Cache,
    sched: Scheduler,
    backoff: Backoff,
    last_rv: u64,
    own_writes: HashMap<Key, u64>,
    saved_version: u64,
    saved_clock: u64,
    opts: Options,
    /// Counters.
    pub stats: Stats,
}

fn se(e: StoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

impl Controller {
    /// Starts a controller on `store`: loads the world, lists every object, removes
    /// what the world holds for objects that no longer exist, and schedules every
    /// object once.
    pub fn new(store: Arc<dyn Store>, opts: Options) -> anyhow::Result<Controller> {
        let world = World::load(store.as_ref()).map_err(se)?;
        let saved_version = world.version;
        let saved_clock = world.clock.now_ms;
        let mut c = Controller {
            store,
            world: Mutex::new(world),
            cache: Cache::default(),
            sched: Scheduler::default(),
            backoff: Backoff::default(),
            last_rv: 0,
            own_writes: HashMap::new(),
            saved_version,
            saved_clock,
            opts,
            stats: Stats::default(),
        };
        let (last, pending) = {
            let w = c.lock_world();
            (w.observed_rv, w.pending.clone())
        };
        for (t, k, n) in pending {
            if let Some(k) = Kind::from_manifest(&k) {
                c.sched.schedule((k, n), t);
            }
        }
        // Resume from the last processed change when the history still reaches back:
        // only what changed since is reconciled. Otherwise reconcile everything.
        let resumable = last > 0 && c.store.watch_from(last).is_ok();
        if resumable {
            for k in Kind::ALL {
                let (objs, _) = c.store.list(*k).map_err(se)?;
                c.cache.replace(*k, objs);
            }
            c.last_rv = last;
        } else {
            c.relist()?;
        }
        Ok(c)
    }

    /// The simulated world (a copy).
    pub fn world(&self) -> World {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Simulated now.
    pub fn now_ms(&self) -> u64 {
        self.lock_world().clock.now_ms
    }

    fn lock_world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reflector cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    fn relist(&mut self) -> anyhow::Result<()> {
        let rv = self.store.resource_version();
        for k in Kind::ALL {
            let (objs, _) = self.store.list(*k).map_err(se)?;
            self.cache.replace(*k, objs);
        }
        self.last_rv = rv;
        {
            let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
            gc(&mut w, &self.cache);
        }
        let now = self.now_ms();
        for k in Kind::ALL {
            let names: Vec<String> = self.cache.list(*k).map(|r| r.name().to_string()).collect();
            for n in names {
                self.sched.schedule((*k, n), now);
            }
        }
        Ok(())
    }

    /// Reads the store's changes since the last look into the cache and schedules the
    /// changed objects and those related to them.
    pub fn ingest(&mut self) -> anyhow::Result<()> {
        let events = match self.store.watch_from(self.last_rv) {
            Ok(e) => e,
            Err(StoreError::Expired { .. }) => return self.relist(),
            Err(e) => return Err(se(e)),
        };
        let now = self.now_ms();
        for ev in events {
            self.last_rv = ev.rv;
            let key: Key = (ev.object.kind(), ev.object.name().to_string());
            let own = self.own_writes.get(&key) == Some(&ev.rv);
            let mut wake = related(&self.cache, &ev.object);
            match ev.type_ {
                WatchType::Deleted => {
                    self.cache.remove(key.0, &key.1);
                    self.own_writes.remove(&key);
                    let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
                    let mut cx = Cx { world: &mut w, cache: &self.cache, events: Vec::new(), wake: Vec::new() };
                    cleanup(&mut cx, &ev.object);
                    let (evs, more) = (cx.events, cx.wake);
                    drop(w);
                    wake.extend(more);
                    self.write_events(evs)?;
                }
                _ => {
                    self.cache.put(ev.object.clone());
                    if !own {
                        self.sched.schedule(key.clone(), now);
                    }
                }
            }
            for k in wake {
                if k != key {
                    self.sched.schedule(k, now);
                }
            }
        }
        Ok(())
    }

    /// Applies a fault or repair to the world, logs what the hardware reports, and
    /// wakes every object it may concern.
    pub fn apply_fault(&mut self, f: &Fault) -> anyhow::Result<()> {
        if let Fault::Advance { ms } = f {
            // Checked before anything runs: a refused advance changes and saves nothing.
            let mut clock = self.lock_world().clock;
            let target = clock.advance_by(*ms).map_err(|e| anyhow::anyhow!("cannot advance the clock: {e}"))?;
            return self.run_until(Some(target));
        }
        let evs = {
            let mut w = self.lock_world();
            f.apply(&mut w).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let evs: Vec<NewEvent> = evs
            .into_iter()
            .map(|e: HwEvent| NewEvent {
                type_: e.type_,
                priority: e.priority,
                component: e.component,
                object: e.object,
                reason: e.reason.to_string(),
                message: e.message,
            })
            .collect();
        self.write_events(evs)?;
        self.wake_all();
        self.save_world()?;
        Ok(())
    }

    /// Schedules every object now (a resync).
    pub fn wake_all(&mut self) {
        let now = self.now_ms();
        for k in Kind::ALL {
            let names: Vec<String> = self.cache.list(*k).map(|r| r.name().to_string()).collect();
            for n in names {
                self.sched.schedule((*k, n), now);
            }
        }
    }

    /// Runs reconciles until nothing is due, jumping the clock to the next pending
    /// item whenever nothing is due now. Returns when the world is quiet.
    pub fn run_until_quiet(&mut self) -> anyhow::Result<()> {
        self.run_until(None)
    }

    /// Like `run_until_quiet`, but with `until` the clock ends exactly there: items due
    /// later stay pending.
    pub fn run_until(&mut self, until: Option<u64>) -> anyhow::Result<()> {
        let start = self.stats.reconciles;
        loop {
            self.ingest()?;
            let batch = self.due_batch();
            if !batch.is_empty() {
                self.run_batch(batch)?;
                if self.stats.reconciles - start > self.opts.max_reconciles {
                    anyhow::bail!("the controller did not settle after {} reconciles", self.opts.max_reconciles);
                }
                continue;
            }
            match (self.sched.next_time(), until) {
                (Some(t), Some(u)) if t <= u => self.lock_world().clock.advance_to(t),
                (Some(t), None) => self.lock_world().clock.advance_to(t),
                _ => break,
            }
        }
        if let Some(u) = until {
            let mut w = self.lock_world();
            w.clock.advance_to(u);
            w.touch();
        }
        self.save_world()?;
        Ok(())
    }

    /// Saves the world, with the controller's bookkeeping, if anything changed.
    pub fn save_world(&mut self) -> anyhow::Result<()> {
        let pending: Vec<(u64, String, String)> =
            self.sched.items().into_iter().map(|(t, (k, n))| (t, k.as_str().to_string(), n)).collect();
        let saved = {
            let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
            if w.version != self.saved_version
                || w.observed_rv != self.last_rv
                || w.pending != pending
                || w.clock.now_ms != self.saved_clock
            {
                w.observed_rv = self.last_rv;
                w.pending = pending;
                w.save(self.store.as_ref()).map_err(se)?;
                self.saved_clock = w.clock.now_ms;
                Some(w.version)
            } else {
                None
            }
        };
        if let Some(v) = saved {
            self.saved_version = v;
        }
        Ok(())
    }

    fn run_batch(&mut self, batch: Vec<Key>) -> anyhow::Result<()> {
        self.stats.max_parallel = self.stats.max_parallel.max(batch.len());
        let results: Vec<(Key, anyhow::Result<Option<Reconciled>>)> = if batch.len() == 1 {
            batch.into_iter().map(|k| (k.clone(), self.reconcile_one(&k))).collect()
        } else {
            let this = &*self;
            std::thread::scope(|s| {
                let handles: Vec<_> =
                    batch.into_iter().map(|k| s.spawn(move || (k.clone(), this.reconcile_one(&k)))).collect();
                handles.into_iter().map(|h| h.join().expect("reconcile thread")).collect()
            })
        };
        let now = self.now_ms();
        for (key, res) in results {
            self.stats.reconciles += 1;
            match res {
                Ok(None) => {}
                Ok(Some((outcome, events, wake))) => {
                    if tracing::enabled!(tracing::Level::INFO) {
                        let wrote = outcome
                            .status
                            .as_ref()
                            .is_some_and(|s| !self.cache.get(key.0, &key.1).is_some_and(|c| c.status_eq(s)));
                        tracing::info!(
                            object = %format!("{}/{}", key.0, key.1),
                            status = if wrote { "written" } else { "unchanged" },
                            next = ?outcome.action,
                            events = events.len(),
                            "reconciled"
                        );
                    }
                    if let Some(status) = outcome.status {
                        let unchanged = self.cache.get(key.0, &key.1).is_some_and(|c| c.status_eq(&status));
                        if unchanged {
                            self.stats.skipped_writes += 1;
                        } else {
                            match self.write_status(status) {
                                Ok((written, retried)) => {
                                    self.stats.status_writes += 1;
                                    self.own_writes.insert(key.clone(), written.meta().rv());
                                    self.cache.put(written);
                                    if retried {
                                        // Its new spec is reconciled next.
                                        self.sched.schedule(key.clone(), now);
                                    }
                                }
                                Err(StoreError::NotFound { .. }) => {}
                                Err(e @ StoreError::Conflict { .. }) => {
                                    // Changed again meanwhile: try again later; the
                                    // events come again with the status.
                                    self.stats.errors += 1;
                                    let delay = self.backoff.fail(&key);
                                    tracing::warn!(object = %format!("{}/{}", key.0, key.1), error = %e, retry_ms = delay, "status write failed");
                                    self.sched.schedule(key, crate::sim::clock::later(now, delay));
                                    continue;
                                }
                                Err(e) => return Err(se(e)),
                            }
                        }
                    }
                    self.write_events(events)?;
                    for k in wake {
                        self.sched.schedule(k, now);
                    }
                    self.backoff.succeed(&key);
                    if let Action::RequeueAfter(ms) = outcome.action {
                        self.sched.schedule(key, crate::sim::clock::later(now, ms));
                    }
                }
                Err(e) => {
                    self.stats.errors += 1;
                    let delay = self.backoff.fail(&key);
                    tracing::warn!(object = %format!("{}/{}", key.0, key.1), error = %e, retry_ms = delay, "reconcile failed");
                    self.sched.schedule(key, crate::sim::clock::later(now, delay));
                }
            }
        }
        Ok(())
    }

    /// Writes a status. It is the world's as the reconciler saw it, so when someone
    /// changed the object meanwhile (Conflict: a newer spec), it goes onto the newest
    /// object (true: retried); that change itself is reconciled next.
    fn write_status(&self, status: Resource) -> Result<(Resource, bool), StoreError> {
        match self.store.update_status(status.clone()) {
            Err(StoreError::Conflict { .. }) => {
                let (kind, name) = (status.kind(), status.name().to_string());
                let mut current = self.store.get(kind, &name)?.ok_or(StoreError::NotFound { kind, name })?;
                current.take_status_from(&status);
                Ok((self.store.update_status(current)?, true))
            }
            r => r.map(|w| (w, false)),
        }
    }

    /// Runs the reconciler of one object; None when the object is gone.
    fn reconcile_one(&self, key: &Key) -> anyhow::Result<Option<Reconciled>> {
        let Some(obj) = self.cache.get(key.0, &key.1) else { return Ok(None) };
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let mut cx = Cx { world: &mut w, cache: &self.cache, events: Vec::new(), wake: Vec::new() };
        let out = reconcile(&mut cx, obj)?;
        Ok(Some((out, cx.events, cx.wake)))
    }

    fn write_events(&self, evs: Vec<NewEvent>) -> anyhow::Result<()> {
        if evs.is_empty() {
            return Ok(());
        }
        let time = self.lock_world().clock.rfc3339();
        for e in evs {
            tracing::info!(object = %e.object, reason = %e.reason, "{}", e.message);
            self.store
                .record_event(Event {
                    seq: 0,
                    time: time.clone(),
                    type_: e.type_,
                    priority: e.priority.to_string(),
                    component: e.component.to_string(),
                    object: e.object,
                    reason: e.reason,
                    message: e.message,
                    acknowledged: false,
                })
                .map_err(se)?;
        }
        Ok(())
    }

    /// Takes up to `concurrency` distinct objects due now.
    fn due_batch(&mut self) -> Vec<Key> {
        let now = self.now_ms();
        let busy = BTreeSet::new();
        let mut batch = Vec::new();
        while batch.len() < self.opts.concurrency.max(1) {
            match self.sched.pop_due(now, &busy) {
                Some(k) => batch.push(k),
                None => break,
            }
        }
        batch
    }

    /// Runs everything due at the current simulated time, without moving the clock
    /// (the serve loop moves it with real time).
    pub fn run_due(&mut self) -> anyhow::Result<()> {
        loop {
            self.ingest()?;
            let batch = self.due_batch();
            if batch.is_empty() {
                return Ok(());
            }
            self.run_batch(batch)?;
        }
    }

    /// Moves the simulated clock forward by `ms`.
    pub fn advance_clock(&mut self, ms: u64) {
        if ms > 0 {
            let mut w = self.lock_world();
            let t = crate::sim::clock::later(w.clock.now_ms, ms);
            w.clock.advance_to(t);
        }
    }

    /// The simulated time of the next pending reconcile.
    pub fn next_due(&self) -> Option<u64> {
        self.sched.next_time()
    }

    /// Pending reconciles.
    pub fn pending(&self) -> usize {
        self.sched.len()
    }
}

/// Dispatches to the reconciler of the object's kind.
fn reconcile(cx: &mut Cx, obj: &Resource) -> anyhow::Result<Outcome> {
    match obj {
        Resource::SEServer(o) => server::reconcile(cx, o),
        Resource::ManagementCluster(o) => mgmt::reconcile(cx, o),
        Resource::SUCluster(o) => sucluster::reconcile(cx, o),
        Resource::VMDefinition(o) => vm::reconcile(cx, o),
        Resource::LiveMigration(o) => lm::reconcile(cx, o),
        Resource::VMRecovery(o) => recovery::reconcile(cx, o),
    }
}

/// Releases what the world holds for a deleted object.
fn cleanup(cx: &mut Cx, last: &Resource) {
    match last {
        Resource::SEServer(o) => server::cleanup(cx, o),
        Resource::ManagementCluster(o) => mgmt::cleanup(cx, o),
        Resource::VMDefinition(o) => vm::cleanup(cx, o),
        Resource::LiveMigration(o) => lm::cleanup(cx, o),
        _ => {}
    }
}

/// Whether a cluster object holds a member (a server or an SU) it lists: its status
/// reflects its current spec and its Prerequisites condition does not carry
/// `refusal`, the message that refuses it the member. Settles competing claims: the
/// cluster that holds a member keeps it.
pub fn holds_member(
    lists: bool,
    observed: Option<u64>,
    generation: Option<u64>,
    conditions: &[crate::api::Condition],
    refusal: &str,
) -> bool {
    lists
        && observed.is_some()
        && observed == generation
        && !conditions.iter().any(|k| k.type_ == "Prerequisites" && k.message.contains(refusal))
}

/// Removes from the world what belongs to objects that no longer exist (they may
/// have been deleted while no controller ran).
fn gc(w: &mut World, cache: &Cache) {
    let before = w.clone();
    w.units.retain(|_, u| cache.get(Kind::SEServer, &u.server).is_some());
    w.links.retain(|mc, _| cache.get(Kind::ManagementCluster, mc).is_some());
    w.cluster_managers.retain(|mc, _| cache.get(Kind::ManagementCluster, mc).is_some());
    w.disks.retain(|_, d| match d.owner.split_once('/') {
        Some((k, n)) => Kind::from_manifest(k).is_some_and(|k| cache.get(k, n).is_some()),
        None => false,
    });
    let gone: Vec<String> = w.vms.keys().filter(|k| cache.get(Kind::VMDefinition, k).is_none()).cloned().collect();
    for k in gone {
        if let Some(v) = w.remove_vm(&k) {
            w.release_devices(&v.su, &k);
        }
    }
    let orphans: Vec<String> =
        w.vms.iter().filter(|(_, v)| !w.units.contains_key(&v.su)).map(|(k, _)| k.clone()).collect();
    for k in orphans {
        w.remove_vm(&k);
    }
    let stale: Vec<String> = w
        .migrations
        .iter()
        .filter(|(k, m)| cache.get(Kind::LiveMigration, k).is_none() || !w.vms.contains_key(&m.vm))
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        if let Some(m) = w.migrations.remove(&k) {
            w.release_devices(&m.target, &m.vm);
        }
    }
    w.lost_vms.retain(|k, _| cache.get(Kind::VMDefinition, k).is_some());
    let placed: std::collections::BTreeSet<String> = w.vms.keys().cloned().collect();
    w.waiting_vms.retain(|k| placed.contains(k));
    if *w != before {
        w.touch();
    }
}

/// Objects to wake when `r` changes (kube-rs "watches"): those whose status depends
/// on it.
fn related(cache: &Cache, r: &Resource) -> Vec<Key> {
    let all = |k: Kind| cache.list(k).map(move |o| (k, o.name().to_string())).collect::<Vec<_>>();
    match r.kind() {
        Kind::SEServer => {
            let mut v = all(Kind::ManagementCluster);
            v.extend(all(Kind::SUCluster));
            v.extend(all(Kind::LiveMigration));
            // The VMs on its SUs (their SU may just have appeared or changed).
            if let Some(s) = r.as_typed::<crate::api::SEServerSpec>() {
                let sus: std::collections::HashSet<&str> =
                    s.spec.server_units.iter().map(|u| u.name.as_str()).collect();
                v.extend(
                    cache
                        .typed::<crate::api::VMDefinitionSpec>()
                        .filter(|vm| {
                            sus.contains(vm.spec.server_unit.as_str())
                                || vm.status.server_unit.as_deref().is_some_and(|x| sus.contains(x))
                        })
                        .map(|vm| (Kind::VMDefinition, vm.name().to_string())),
                );
            }
            v
        }
        Kind::ManagementCluster => {
            let mut v = all(Kind::SUCluster);
            v.extend(all(Kind::LiveMigration));
            v
        }
        // SU clusters compete for SUs: a change in one may settle another's claim.
        Kind::SUCluster => {
            let mut v = all(Kind::SUCluster);
            v.extend(all(Kind::LiveMigration));
            v
        }
        // A VM's migrations and recoveries depend on it.
        Kind::VMDefinition => {
            let vm = r.name();
            let mut v: Vec<Key> = cache
                .typed::<crate::api::LiveMigrationSpec>()
                .filter(|l| l.spec.vm.as_str() == vm || l.spec.check_only)
                .map(|l| (Kind::LiveMigration, l.name().to_string()))
                .collect();
            v.extend(
                cache
                    .typed::<crate::api::VMRecoverySpec>()
                    .filter(|x| x.spec.vm.as_str() == vm)
                    .map(|x| (Kind::VMRecovery, x.name().to_string())),
            );
            v
        }
        // A migration's VM shows its progress; a recovery's VM moves.
        Kind::LiveMigration => r
            .as_typed::<crate::api::LiveMigrationSpec>()
            .map(|l| vec![(Kind::VMDefinition, l.spec.vm.to_string())])
            .unwrap_or_default(),
        Kind::VMRecovery => r
            .as_typed::<crate::api::VMRecoverySpec>()
            .map(|l| vec![(Kind::VMDefinition, l.spec.vm.to_string())])
            .unwrap_or_default(),
    }
}
