//! The controller: watches the store, keeps a reflector cache, schedules reconciles
//! per object (deduplicated), runs them with bounded concurrency (never two of one
//! object at once), and moves the simulated clock. Each reconcile's effects — the
//! world entities it changed, its status (skipped when nothing changed), its events,
//! what it left pending and the newest resourceVersion seen — are committed as ONE
//! store batch under the world lock (`effects.rs`), so a crash leaves the store at a
//! step boundary. A panicking reconcile is caught and becomes an error of its object.
//!
//! One reconciler per kind lives in its own module. Each is level-based: it reads the
//! object, the cache and the simulated world, converges the world, and returns the
//! status it observed plus `Action::Await` or `Action::RequeueAfter`. It never sees why
//! it was woken.

mod common;
pub(crate) mod effects;
mod group;
mod lm;
mod mgmt;
mod recovery;
pub mod runtime;
mod server;
mod sucluster;
mod sysdisk;
mod vm;

use crate::api::{Kind, Resource};
use crate::sim::{Fault, HwEvent, World};
use crate::store::{Batch, Committed, Event, EventType, StatusWrite, Store, StoreError, WatchType};
use runtime::{Action, Backoff, Cache, Key, Scheduler};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Reconciles that panicked (counted in `errors` too).
    pub panics: u64,
    /// Store batches committed.
    pub batches: u64,
    /// Most reconciles seen running at once.
    pub max_parallel: usize,
    /// Reconciles run, by kind.
    pub by_kind: std::collections::BTreeMap<Kind, u64>,
}

/// The controller.
pub struct Controller {
    store: Arc<dyn Store>,
    world: Mutex<World>,
    cache: Cache,
    sched: Scheduler,
    backoff: Backoff,
    last_rv: u64,
    /// The newest processed resourceVersion as stored.
    stored_rv: AtomicU64,
    own_writes: HashMap<Key, u64>,
    /// Reconciles run and not stored yet (`group.rs`).
    group: Mutex<group::Group>,
    batches: AtomicU64,
    opts: Options,
    /// Counters.
    pub stats: Stats,
}

fn se(e: StoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// How one reconcile ended, after its batch was committed.
enum Ended {
    /// It ran; its effects are in the open group (`group.rs`), `status` the object
    /// with the status it wrote (not stored yet).
    Ran { action: Action, wake: Vec<Key>, status: Option<Resource>, events: usize },
    /// It failed (an error, a panic, or effects the store refused): retry after backoff.
    Failed { error: String, panicked: bool, status: Option<StatusWrite> },
}

impl Controller {
    /// Starts a controller on `store`: loads the world and the bookkeeping, lists
    /// every object, and either resumes from the last processed change (when the watch
    /// history still reaches back) or removes what the world holds for objects that no
    /// longer exist and schedules every object once.
    pub fn new(store: Arc<dyn Store>, opts: Options) -> anyhow::Result<Controller> {
        let loaded = World::load_full(store.as_ref()).map_err(se)?;
        let (observed, pending) = match &loaded.legacy {
            Some(book) => {
                let p = book
                    .pending
                    .iter()
                    .filter_map(|(t, k, n)| Kind::from_manifest(k).map(|k| (*t, (k, n.clone()))))
                    .collect();
                (Some(book.observed_rv), p)
            }
            None => effects::load(store.as_ref()).map_err(se)?,
        };
        let legacy = loaded.legacy.is_some();
        let last = observed.unwrap_or(0);
        let mut c = Controller {
            store,
            world: Mutex::new(loaded.world),
            cache: Cache::default(),
            sched: Scheduler::default(),
            backoff: Backoff::default(),
            last_rv: 0,
            stored_rv: AtomicU64::new(if legacy { 0 } else { last }),
            own_writes: HashMap::new(),
            group: Mutex::new(group::Group::default()),
            batches: AtomicU64::new(0),
            opts,
            stats: Stats::default(),
        };
        for (t, k) in pending {
            c.sched.schedule(k, t);
        }
        if legacy {
            // A store of an older version: write its world by entity, once.
            let mut b = Batch { durable: true, ..Default::default() };
            for (t, k) in c.sched.items() {
                effects::set_pending(&mut b, &k, Some(t));
            }
            c.commit_world(b)?;
        }
        // Resume from the last processed change when the history still reaches back:
        // only what changed since is reconciled. Otherwise reconcile everything.
        let resumable = last > 0 && c.store.changes_since(last).is_ok();
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
        self.lock_world().clone()
    }

    /// The simulated clock (a copy; the world is not cloned).
    pub fn clock(&self) -> crate::sim::Clock {
        self.lock_world().clock
    }

    /// Simulated now.
    pub fn now_ms(&self) -> u64 {
        self.lock_world().clock.now_ms
    }

    /// The world, locked. A lock poisoned by a panic is not reused as it is: the
    /// world is read again from the store (the state after the last committed step).
    fn lock_world(&self) -> std::sync::MutexGuard<'_, World> {
        match self.world.lock() {
            Ok(g) => g,
            Err(p) => {
                let mut g = p.into_inner();
                if let Err(e) = self.reload(&mut g) {
                    panic!("{e}");
                }
                self.world.clear_poison();
                g
            }
        }
    }

    /// Replaces the world in memory by the stored one: the changes of a step that
    /// was not committed are dropped.
    fn reload(&self, w: &mut World) -> anyhow::Result<()> {
        // The open group holds changes of steps before this one: stored first.
        self.flush_group()?;
        *w = World::load(self.store.as_ref())
            .map_err(|e| anyhow::anyhow!("the simulated world cannot be read back from the store: {e}"))?;
        Ok(())
    }

    /// The reflector cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Commits one step's batch after the open group (`group.rs`), each as one
    /// store batch.
    fn commit(&self, b: Batch) -> Result<Committed, StoreError> {
        self.store_group()?;
        self.commit_now(b)
    }

    /// Stores the open group, if any, as one batch; its statuses wait in the group's
    /// `done` until `take_done` takes them into the cache. A group the store refuses
    /// stops the controller (its reconciles were checked as the store checks them, and
    /// their world changes are already gone from the world's change marks).
    fn store_group(&self) -> Result<(), StoreError> {
        let mut g = self.group.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_empty() {
            return Ok(());
        }
        let (b, keys) = g.take();
        let done = self.commit_now(b).map_err(|e| match e {
            StoreError::Invalid(m) => StoreError::Backend(format!("a group of reconciles was refused: {m}")),
            other => other,
        })?;
        self.log_events(&done.events);
        g.done.extend(keys.into_iter().zip(done.statuses));
        Ok(())
    }

    /// `store_group` for the controller's own callers.
    fn flush_group(&self) -> anyhow::Result<()> {
        self.store_group().map_err(se)
    }

    fn group_is_empty(&self) -> bool {
        self.group.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    fn in_group(&self, key: &Key) -> bool {
        self.group.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }

    /// Stores the open group and takes its statuses into the cache.
    fn end_group(&mut self) -> anyhow::Result<()> {
        self.flush_group()?;
        self.take_done();
        Ok(())
    }

    /// Takes the statuses of stored groups into the cache (an object whose status
    /// went onto a newer spec is reconciled again).
    fn take_done(&mut self) {
        let done = std::mem::take(&mut self.group.lock().unwrap_or_else(|p| p.into_inner()).done);
        if done.is_empty() {
            return;
        }
        let now = self.now_ms();
        for (key, st) in done {
            if let StatusWrite::Written { object, .. } = &st {
                self.skip_own_write(&key, object);
            }
            if self.note_status(&key, Some(st)) {
                self.sched.schedule(key, now);
            }
        }
    }

    /// The watch of a write of the group that directly follows what was processed
    /// would only bring the object back into the cache (where `note_status` puts it)
    /// and wake nobody: it is taken as processed instead of read back from the store.
    /// A write that wakes other objects, or one after a change of someone else, is
    /// left to `ingest`.
    fn skip_own_write(&mut self, key: &Key, object: &Resource) {
        if object.meta().rv() == self.last_rv + 1 && !related(&self.cache, object).iter().any(|k| k != key) {
            self.last_rv += 1;
        }
    }

    /// Commits one batch (test hook: may abort the process first).
    fn commit_now(&self, b: Batch) -> Result<Committed, StoreError> {
        effects::before_commit();
        match self.store.commit_batch(b) {
            Ok(r) => {
                self.batches.fetch_add(1, Ordering::Relaxed);
                Ok(r)
            }
            Err(e) => {
                // The processed resourceVersion may not be stored: store it again.
                self.stored_rv.store(u64::MAX, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Adds the world's changes and the processed resourceVersion to `b` and commits
    /// it (see `commit_step`).
    fn commit_world(&self, b: Batch) -> anyhow::Result<Committed> {
        let mut w = self.lock_world();
        self.commit_step(&mut w, b).map_err(|e| match e {
            StepError::Refused(m) => anyhow::anyhow!("{m}"),
            StepError::Store(e) => e,
        })
    }

    fn add_observed(&self, b: &mut Batch) {
        if self.stored_rv.load(Ordering::SeqCst) != self.last_rv {
            effects::set_observed(b, self.last_rv);
            self.stored_rv.store(self.last_rv, Ordering::SeqCst);
        }
    }

    fn relist(&mut self) -> anyhow::Result<()> {
        let rv = self.store.resource_version();
        for k in Kind::ALL {
            let l = self.store.list_report(*k).map_err(se)?;
            for bad in &l.bad {
                tracing::warn!(object = %format!("{}/{}", bad.kind, bad.name), error = %bad.error, "stored object cannot be read; not reconciled");
            }
            self.cache.replace(*k, l.items);
        }
        self.last_rv = rv;
        {
            let mut w = self.lock_world();
            gc(&mut w, &self.cache);
        }
        let now = self.now_ms();
        let mut b = Batch::default();
        for k in Kind::ALL {
            let names: Vec<String> = self.cache.list(*k).map(|r| r.name().to_string()).collect();
            for n in names {
                let key = (*k, n);
                effects::set_pending(&mut b, &key, Some(now));
                self.sched.schedule(key, now);
            }
        }
        self.commit_world(b)?;
        Ok(())
    }

    /// Reads the store's changes since the last look into the cache and schedules the
    /// changed objects and those related to them; stores what it scheduled, the world
    /// released for deleted objects and their events as one batch.
    pub fn ingest(&mut self) -> anyhow::Result<()> {
        self.end_group()?;
        let events = match self.store.changes_since(self.last_rv) {
            Ok(e) => e,
            Err(StoreError::Expired { .. }) => return self.relist(),
            Err(e) => return Err(se(e)),
        };
        if events.is_empty() {
            return Ok(());
        }
        let now = self.now_ms();
        let mut scheduled: BTreeSet<Key> = BTreeSet::new();
        let mut logged = Vec::new();
        for ev in events {
            self.last_rv = ev.rv;
            let key: Key = (ev.object.kind(), ev.object.name().to_string());
            let own = self.own_writes.get(&key) == Some(&ev.rv);
            let mut wake = related(&self.cache, &ev.object);
            match ev.type_ {
                WatchType::Deleted => {
                    self.cache.remove(key.0, &key.1);
                    self.own_writes.remove(&key);
                    let mut w = self.lock_world();
                    let mut cx = Cx { world: &mut w, cache: &self.cache, events: Vec::new(), wake: Vec::new() };
                    cleanup(&mut cx, &ev.object);
                    let (evs, more) = (cx.events, cx.wake);
                    let time = w.clock.rfc3339();
                    drop(w);
                    wake.extend(more);
                    logged.extend(evs.into_iter().map(|e| to_event(e, &time)));
                    scheduled.insert(key.clone());
                }
                // The cache has the controller's own writes already (`note_status`:
                // the same object at the same resourceVersion).
                _ if own && self.cache.get(key.0, &key.1).is_some_and(|o| o.meta().rv() == ev.rv) => {}
                _ if own => self.cache.put(ev.object.clone()),
                _ => {
                    self.cache.put(ev.object.clone());
                    self.sched.schedule(key.clone(), now);
                    scheduled.insert(key.clone());
                }
            }
            for k in wake {
                if k != key {
                    self.sched.schedule(k.clone(), now);
                    scheduled.insert(k);
                }
            }
        }
        let changed = !scheduled.is_empty() || !logged.is_empty() || self.lock_world().has_changes();
        if !changed {
            // Only the controller's own writes: the next batch stores the new rv.
            return Ok(());
        }
        let mut b = Batch { events: logged, ..Default::default() };
        for k in scheduled {
            let due = self.sched.due_of(&k);
            effects::set_pending(&mut b, &k, due);
        }
        let done = self.commit_world(b)?;
        self.log_events(&done.events);
        Ok(())
    }

    /// Applies a fault or repair to the world, logs what the hardware reports, and
    /// wakes every object it may concern; stored as one durable batch.
    pub fn apply_fault(&mut self, f: &Fault) -> anyhow::Result<()> {
        self.end_group()?;
        if let Fault::Advance { ms } = f {
            // Checked before anything runs: a refused advance changes and saves nothing.
            let mut clock = self.lock_world().clock;
            let target = clock.advance_by(*ms).map_err(|e| anyhow::anyhow!("cannot advance the clock: {e}"))?;
            return self.run_until(Some(target));
        }
        let (evs, time) = {
            let mut w = self.lock_world();
            match f.apply(&mut w) {
                Ok(evs) => (evs, w.clock.rfc3339()),
                Err(e) => {
                    // A refused fault may have changed nothing; make sure.
                    self.reload(&mut w)?;
                    return Err(anyhow::anyhow!("{e}"));
                }
            }
        };
        let events: Vec<Event> = evs
            .into_iter()
            .map(|e: HwEvent| {
                let ne = NewEvent {
                    type_: e.type_,
                    priority: e.priority,
                    component: e.component,
                    object: e.object,
                    reason: e.reason.to_string(),
                    message: e.message,
                };
                to_event(ne, &time)
            })
            .collect();
        self.wake_all();
        let mut b = Batch { events, durable: true, ..Default::default() };
        for (t, k) in self.sched.items() {
            effects::set_pending(&mut b, &k, Some(t));
        }
        let done = self.commit_world(b)?;
        self.log_events(&done.events);
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
            // While a group is open the store holds nothing new but its own writes
            // that wake nobody (`group.rs`).
            if self.group_is_empty() {
                self.ingest()?;
            }
            let batch = self.due_batch();
            if !batch.is_empty() {
                self.run_batch(batch)?;
                if self.stats.reconciles - start > self.opts.max_reconciles {
                    self.end_group()?;
                    anyhow::bail!("the controller did not settle after {} reconciles", self.opts.max_reconciles);
                }
                continue;
            }
            if !self.group_is_empty() {
                self.end_group()?;
                continue;
            }
            match (self.sched.next_time(), until) {
                (Some(t), Some(u)) if t <= u => self.lock_world().clock.advance_to(t),
                // Only objects that keep failing are left: they are retried (after
                // backoff) by the next run, not in an endless loop now.
                (Some(_), None) if self.only_failing_pending() => break,
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

    fn only_failing_pending(&self) -> bool {
        self.sched.items().iter().all(|(_, k)| self.backoff.failures(k) > 0)
    }

    /// Stores what is not stored yet (the clock, the processed resourceVersion) and
    /// makes everything durable.
    pub fn save_world(&mut self) -> anyhow::Result<()> {
        self.store_clock()?;
        self.store.sync().map_err(se)?;
        Ok(())
    }

    /// Stores the clock (and the processed resourceVersion) if they moved since the
    /// last batch; not flushed.
    pub fn store_clock(&mut self) -> anyhow::Result<()> {
        self.end_group()?;
        let moved = self.lock_world().has_changes() || self.stored_rv.load(Ordering::SeqCst) != self.last_rv;
        if moved {
            self.commit_world(Batch::default())?;
        }
        self.stats.batches = self.batches.load(Ordering::Relaxed);
        Ok(())
    }

    fn run_batch(&mut self, batch: Vec<Key>) -> anyhow::Result<()> {
        self.take_done();
        self.stats.max_parallel = self.stats.max_parallel.max(batch.len());
        let results: Vec<(Key, anyhow::Result<Option<Ended>>)> = if batch.len() == 1 {
            batch.into_iter().map(|k| (k.clone(), self.reconcile_one(&k))).collect()
        } else {
            let this = &*self;
            std::thread::scope(|s| {
                let handles: Vec<_> =
                    batch.into_iter().map(|k| (k.clone(), s.spawn(move || this.reconcile_one(&k)))).collect();
                handles
                    .into_iter()
                    .map(|(k, h)| {
                        let r = h
                            .join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("reconcile thread of {}/{} died", k.0, k.1)));
                        (k, r)
                    })
                    .collect()
            })
        };
        let now = self.now_ms();
        let mut fatal = None;
        // A status write that wakes other objects ends the group: the watch of that
        // write (`ingest`) wakes them before anything else runs, as without groups.
        let mut wakes_others = false;
        for (key, res) in results {
            self.stats.reconciles += 1;
            *self.stats.by_kind.entry(key.0).or_default() += 1;
            // Statuses of a group stored meanwhile (before a failure was stored).
            self.take_done();
            match res {
                Ok(None) => {}
                Ok(Some(Ended::Ran { action, wake, status, events })) => {
                    match status {
                        // In the cache now, as the next reconciles must see it; the
                        // stored object (its new resourceVersion) replaces it when
                        // the group is stored (`take_done`).
                        Some(st) => {
                            wakes_others |= related(&self.cache, &st).iter().any(|k| *k != key);
                            self.cache.put(st);
                        }
                        None => self.stats.skipped_writes += 1,
                    }
                    tracing::info!(object = %format!("{}/{}", key.0, key.1), next = ?action, events, "reconciled");
                    for k in wake {
                        self.sched.schedule(k, now);
                    }
                    self.backoff.succeed(&key);
                    if let Action::RequeueAfter(ms) = action {
                        self.sched.schedule(key, crate::sim::clock::later(now, ms));
                    }
                }
                Ok(Some(Ended::Failed { error, panicked, status })) => {
                    self.note_status(&key, status);
                    self.stats.errors += 1;
                    if panicked {
                        self.stats.panics += 1;
                    }
                    let delay = self.backoff.fail(&key);
                    tracing::warn!(object = %format!("{}/{}", key.0, key.1), error = %error, panicked, retry_ms = delay, "reconcile failed");
                    self.sched.schedule(key, crate::sim::clock::later(now, delay));
                }
                Err(e) => {
                    // The store failed: nothing of the step is stored; stop here.
                    self.stats.errors += 1;
                    let delay = self.backoff.fail(&key);
                    self.sched.schedule(key, crate::sim::clock::later(now, delay));
                    fatal.get_or_insert(e);
                }
            }
        }
        if fatal.is_none() && (wakes_others || self.group.lock().unwrap_or_else(|p| p.into_inner()).full()) {
            self.end_group()?;
        }
        self.take_done();
        self.stats.batches = self.batches.load(Ordering::Relaxed);
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Takes a committed status into the cache; true when it went onto a newer object.
    fn note_status(&mut self, key: &Key, status: Option<StatusWrite>) -> bool {
        match status {
            None => {
                self.stats.skipped_writes += 1;
                false
            }
            Some(StatusWrite::Written { object, retried }) => {
                self.stats.status_writes += 1;
                self.own_writes.insert(key.clone(), object.meta().rv());
                // Usually the cache has it already, put in before it was stored.
                if retried || !self.cache.refresh_version(&object) {
                    self.cache.put(object);
                }
                retried
            }
            Some(StatusWrite::Unchanged(_)) => {
                self.stats.skipped_writes += 1;
                false
            }
            Some(StatusWrite::Gone) => false,
        }
    }

    /// Runs the reconciler of one object and commits its effects as one batch (under
    /// the world lock, so batches are stored in the order the world saw them). None
    /// when the object is gone; Err when the store failed.
    fn reconcile_one(&self, key: &Key) -> anyhow::Result<Option<Ended>> {
        let Some(obj) = self.cache.get(key.0, &key.1) else { return Ok(None) };
        let mut w = self.lock_world();
        let mut cx = Cx { world: &mut w, cache: &self.cache, events: Vec::new(), wake: Vec::new() };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            effects::maybe_panic_reconcile(key);
            reconcile(&mut cx, obj)
        }));
        let (logged, wake) = (std::mem::take(&mut cx.events), std::mem::take(&mut cx.wake));
        let now = w.clock.now_ms;
        let time = w.clock.rfc3339();
        let outcome = match ran {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err((format!("{e:#}"), false)),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                // Half-done changes of a panicking reconcile are not kept.
                self.reload(&mut w)?;
                Err((msg, true))
            }
        };
        let mut b = Batch::default();
        let ended = match outcome {
            Ok(mut out) => {
                clear_failure(obj, &mut out);
                let status = out.status.filter(|s| !obj.status_eq(s));
                b.statuses.extend(status.clone());
                b.events = logged.into_iter().map(|e| to_event(e, &time)).collect();
                let own_due = match out.action {
                    Action::RequeueAfter(ms) => Some(crate::sim::clock::later(now, ms)),
                    Action::Await => None,
                };
                effects::set_pending(&mut b, key, own_due);
                for k in &wake {
                    if k != key {
                        let due = self.sched.due_of(k).map_or(now, |t| t.min(now));
                        effects::set_pending(&mut b, k, Some(due));
                    }
                }
                let events = b.events.len();
                match self.stage_step(&mut w, key, b) {
                    Ok(()) => Ended::Ran { action: out.action, wake, status, events },
                    Err(StepError::Refused(error)) => self.failed(&mut w, obj, key, error, false, now, &time)?,
                    Err(StepError::Store(e)) => return Err(e),
                }
            }
            Err((error, panicked)) => {
                // An error keeps the changes it made (as they were made); a panic's
                // were dropped above.
                self.failed(&mut w, obj, key, error, panicked, now, &time)?
            }
        };
        Ok(Some(ended))
    }

    /// Stores a failed reconcile: the world as it is, a Warning event, the object's
    /// `Reconciled` condition set to False, and the retry after backoff.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        w: &mut World,
        obj: &Resource,
        key: &Key,
        error: String,
        panicked: bool,
        now: u64,
        time: &str,
    ) -> anyhow::Result<Ended> {
        let (reason, what) = if panicked { ("ReconcilePanicked", "panicked") } else { ("ReconcileFailed", "failed") };
        let message = format!("the reconcile of {}/{} {what}: {error}", key.0, key.1);
        let mut st = obj.clone();
        crate::api::set_condition(
            st.conditions_mut(),
            "Reconciled",
            crate::api::ConditionStatus::False,
            reason,
            &message,
            obj.meta().generation,
            time,
        );
        let mut b = Batch::default();
        let has_status = !obj.status_eq(&st);
        if has_status {
            b.statuses.push(st);
        }
        // The event once per failure streak, not at every retry.
        if self.backoff.failures(key) == 0 {
            b.events.push(to_event(
                NewEvent {
                    type_: EventType::Warning,
                    priority: "ERROR",
                    component: "Controller",
                    object: format!("{}/{}", key.0, key.1),
                    reason: reason.to_string(),
                    message: message.clone(),
                },
                time,
            ));
        }
        effects::set_pending(&mut b, key, Some(crate::sim::clock::later(now, self.backoff.next_delay(key))));
        match self.commit_step(w, b) {
            Ok(mut done) => {
                self.log_events(&done.events);
                let status = if has_status { done.statuses.pop() } else { None };
                Ok(Ended::Failed { error: message, panicked, status })
            }
            Err(StepError::Refused(e)) => Err(anyhow::anyhow!("{message}; storing that failed too: {e}")),
            Err(StepError::Store(e)) => Err(e),
        }
    }

    /// Adds a reconcile's batch and the world's changes to the open group
    /// (`group.rs`). Content the store would refuse (a non-finite number in the world
    /// or in the status) is refused here, with the store's message, and the world goes
    /// back to the stored one, as `commit_step` does.
    fn stage_step(&self, w: &mut World, key: &Key, mut b: Batch) -> Result<(), StepError> {
        self.add_world(w, &mut b)?;
        for st in &b.statuses {
            // The spec was checked when it was stored: the status is enough, and the
            // whole object names the field as the store does.
            if !status_finite(st) {
                if let Err(e) = crate::store::check_finite(st) {
                    return Err(self.refuse(w, format!("{}: {e}", st.key())));
                }
            }
        }
        self.group.lock().unwrap_or_else(|p| p.into_inner()).add(key, b);
        Ok(())
    }

    /// Adds the world's changes and the observed generations to a step's batch.
    fn add_world(&self, w: &mut World, b: &mut Batch) -> Result<(), StepError> {
        let state = match w.take_changes() {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(w, format!("the simulated world cannot be stored: {e}"))),
        };
        b.state.extend(state);
        self.add_observed(b);
        Ok(())
    }

    /// A step refused for its content: the world goes back to the stored one.
    fn refuse(&self, w: &mut World, m: String) -> StepError {
        match self.reload(w) {
            Ok(()) => StepError::Refused(m),
            Err(e) => StepError::Store(e),
        }
    }

    /// Commits a step with the world's changes. A refused step (invalid content) puts
    /// the world back to the stored one and is an error of the object; a failing
    /// store is returned as it is (the controller stops: its world in memory is then
    /// ahead of the store and is not used again).
    fn commit_step(&self, w: &mut World, mut b: Batch) -> Result<Committed, StepError> {
        self.add_world(w, &mut b)?;
        match self.commit(b) {
            Ok(done) => Ok(done),
            Err(StoreError::Invalid(m)) => Err(self.refuse(w, m)),
            Err(other) => Err(StepError::Store(se(other))),
        }
    }

    fn log_events(&self, evs: &[Event]) {
        for e in evs {
            tracing::info!(object = %e.object, reason = %e.reason, "{}", e.message);
        }
    }

    /// Takes up to `concurrency` distinct objects due now: the first due one and those
    /// right behind it in the queue that are of the same kind. A batch never mixes
    /// kinds, so a chain that crosses kinds (MU off -> management cluster -> SU
    /// cluster, the manual's order of messages) runs in the order it was woken, with
    /// any concurrency; objects of one kind (the bulk: VMs) still run in parallel.
    fn due_batch(&mut self) -> Vec<Key> {
        let now = self.now_ms();
        let busy = BTreeSet::new();
        let mut batch: Vec<Key> = Vec::new();
        while batch.len() < self.opts.concurrency.max(1) {
            match (self.sched.first_due(now), batch.first()) {
                (None, _) => break,
                (Some(next), Some(first)) if next.0 != first.0 => break,
                // Reconciled in the open group: the group is stored first.
                (Some(next), _) if self.in_group(next) => break,
                _ => {}
            }
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
            if self.group_is_empty() {
                self.ingest()?;
            }
            let batch = self.due_batch();
            if batch.is_empty() {
                if self.group_is_empty() {
                    return Ok(());
                }
                self.end_group()?;
                continue;
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

    /// Store batches committed so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Pending reconciles.
    pub fn pending(&self) -> usize {
        self.sched.len()
    }
}

/// Why a step's batch was not stored.
enum StepError {
    /// The content was refused (e.g. a non-finite number): an error of that object.
    Refused(String),
    /// The store failed.
    Store(anyhow::Error),
}

/// Whether every number in the object's status is finite.
fn status_finite(r: &Resource) -> bool {
    use crate::store::check_finite as check;
    match r {
        Resource::SEServer(o) => check(&o.status).is_ok(),
        Resource::ManagementCluster(o) => check(&o.status).is_ok(),
        Resource::SUCluster(o) => check(&o.status).is_ok(),
        Resource::VMDefinition(o) => check(&o.status).is_ok(),
        Resource::LiveMigration(o) => check(&o.status).is_ok(),
        Resource::VMRecovery(o) => check(&o.status).is_ok(),
        Resource::AlarmReceiver(o) => check(&o.status).is_ok(),
    }
}

/// After a success, the `Reconciled` condition a failure left goes away.
fn clear_failure(obj: &Resource, out: &mut Outcome) {
    let failed = |r: &Resource| r.conditions().iter().any(|c| c.type_ == "Reconciled");
    if out.status.as_ref().is_some_and(failed) || (out.status.is_none() && failed(obj)) {
        let mut st = out.status.take().unwrap_or_else(|| obj.clone());
        crate::api::remove_condition(st.conditions_mut(), "Reconciled");
        out.status = Some(st);
    }
}

/// An event for the log, stamped with the simulated time.
fn to_event(e: NewEvent, time: &str) -> Event {
    Event {
        seq: 0,
        time: time.to_string(),
        type_: e.type_,
        priority: e.priority.to_string(),
        component: e.component.to_string(),
        object: e.object,
        reason: e.reason,
        message: e.message,
        acknowledged: false,
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
        // Delivery (crate::alarm) owns the receiver's status; nothing to converge.
        Resource::AlarmReceiver(_) => Ok(Outcome { status: None, action: Action::Await }),
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
            // The VMs on its SUs (their SU may just have appeared or changed), from
            // the cache's index of VMs by SU, in name order.
            if let Some(s) = r.as_typed::<crate::api::SEServerSpec>() {
                let names = cache.vms_on_sus(s.spec.server_units.iter().map(|u| u.name.as_str()));
                v.extend(names.into_iter().map(|n| (Kind::VMDefinition, n)));
            }
            v
        }
        Kind::ManagementCluster => {
            let mut v = all(Kind::SUCluster);
            v.extend(all(Kind::LiveMigration));
            // Its servers' recommendations count its external configuration disks.
            if let Some(m) = r.as_typed::<crate::api::ManagementClusterSpec>() {
                v.extend(m.spec.servers.iter().map(|s| (Kind::SEServer, s.to_string())));
            }
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
        Kind::AlarmReceiver => Vec::new(),
    }
}
