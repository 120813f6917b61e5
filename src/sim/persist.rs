//! How the simulated world is kept in the store: one state entry per entity, so a
//! reconcile writes only the entities it changed, in the same atomic batch as the
//! statuses and events that go with them (see `controller`).
//!
//! Keys (the store's controller state, `Store::read_state`):
//! - `w/meta`             the clock, the change counter, the WAIT and held-definition sets
//! - `w/unit/<name>`      a unit (power, SU resources and devices, without holders)
//! - `w/hold/<su>/<mn>`   the holders of one device of an SU (VM object -> usage; no
//!   entry when none), apart from the unit so that a placement writes only these
//!   (`hold.rs`; units written before hold their holders inside and are rewritten)
//! - `w/vm/<object>`      a VM definition where VM2000 has it (SU, state, holdings)
//! - `w/lm/<object>`      a running (or just ended) live migration
//! - `w/link/<mc>`, `w/disk/<name>`, `w/cm/<mc>`, `w/dirty/<vm>`, `w/lost/<vm>`
//!
//! Stores written before this layout hold the world as one blob named `world`; it is
//! read once, and the first batch after it writes every entity (the blob is then no
//! longer read, since `w/meta` exists).
//!
//! Trade-off: the small parts kept in `w/meta` are compared with their last written
//! form after every reconcile (a few hundred bytes) instead of being tracked.

use super::{hold, Clock, EntityMap, Unit, World};
use crate::store::{encode_finite, NonFinite, StateWrites, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// Name of the blob of the world in stores written before it was kept by entity.
const LEGACY_BLOB: &str = "world";
/// Prefix of every world entry.
pub const PREFIX: &str = "w/";
const META: &str = "w/meta";

/// The last written form of `w/meta`. Never part of the world's equality.
#[derive(Debug, Clone, Default)]
pub struct Shadow(Option<Vec<u8>>);

impl PartialEq for Shadow {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    clock: Clock,
    version: u64,
    #[serde(default)]
    waiting_vms: BTreeSet<String>,
    #[serde(default)]
    held_definitions: BTreeSet<String>,
}

/// Controller bookkeeping found in a world saved as one blob by older versions.
#[derive(Debug, Default, Deserialize)]
pub struct LegacyBookkeeping {
    /// The newest resourceVersion the controller had processed.
    #[serde(default)]
    pub observed_rv: u64,
    /// Reconciles that were due later (simulated ms, kind, name).
    #[serde(default)]
    pub pending: Vec<(u64, String, String)>,
}

/// A world as loaded, with where it came from.
pub struct Loaded {
    /// The world.
    pub world: World,
    /// Read from an old single-blob store: every entity still has to be written
    /// (they are marked), and this is the controller's bookkeeping from it.
    pub legacy: Option<LegacyBookkeeping>,
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("the simulated world's entry {key} cannot be read: {e}"))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))
}

/// The entity maps with their key prefixes, for writing (taking the changes).
macro_rules! each_map {
    ($w:expr, $f:ident) => {{
        $f(&mut $w.units, "w/unit/");
        $f(&mut $w.vms, "w/vm/");
        $f(&mut $w.migrations, "w/lm/");
        $f(&mut $w.links, "w/link/");
        $f(&mut $w.disks, "w/disk/");
        $f(&mut $w.cluster_managers, "w/cm/");
        $f(&mut $w.dirty_override, "w/dirty/");
        $f(&mut $w.lost_vms, "w/lost/");
    }};
}

fn put<V: DeserializeOwned>(m: &mut EntityMap<V>, key: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    m.insert(name.to_string(), decode(key, bytes)?);
    Ok(())
}

impl World {
    /// A new world, its clock at wall time.
    pub fn new_now() -> World {
        World { clock: Clock::starting_now(), ..Default::default() }
    }

    /// Loads the world from the store, or a new one (clock at wall time) if none.
    /// A clock past the end of simulated time is refused (see `clock`), with the way
    /// out: `reset_clock`.
    pub fn load(store: &dyn Store) -> Result<World, StoreError> {
        Ok(World::load_full(store)?.world)
    }

    /// Loads the world without checking its clock (for `reset_clock`).
    pub fn load_unchecked(store: &dyn Store) -> Result<World, StoreError> {
        Ok(World::load_full_unchecked(store)?.world)
    }

    /// Loads the world, saying whether it came from an old single-blob store; refuses
    /// a clock past the end of simulated time.
    pub fn load_full(store: &dyn Store) -> Result<Loaded, StoreError> {
        let loaded = World::load_full_unchecked(store)?;
        loaded.world.clock.check().map_err(StoreError::Invalid)?;
        Ok(loaded)
    }

    fn load_full_unchecked(store: &dyn Store) -> Result<Loaded, StoreError> {
        let entries = store.read_state(PREFIX)?;
        if entries.is_empty() {
            return Self::load_legacy(store);
        }
        let mut w = World::default();
        let mut meta = None;
        let mut holds = Vec::new();
        for (key, bytes) in &entries {
            if key == META {
                meta = Some(decode::<Meta>(key, bytes)?);
                w.persisted_meta = Shadow(Some(bytes.clone()));
                continue;
            }
            let rest = &key[PREFIX.len()..];
            let (kind, name) = rest.split_once('/').ok_or_else(|| corrupt(key, "unknown key"))?;
            match kind {
                "hold" => holds.push((key, name, decode::<hold::Holders>(key, bytes)?)),
                "unit" => put(&mut w.units, key, name, bytes)?,
                "vm" => put(&mut w.vms, key, name, bytes)?,
                "lm" => put(&mut w.migrations, key, name, bytes)?,
                "link" => put(&mut w.links, key, name, bytes)?,
                "disk" => put(&mut w.disks, key, name, bytes)?,
                "cm" => put(&mut w.cluster_managers, key, name, bytes)?,
                "dirty" => put(&mut w.dirty_override, key, name, bytes)?,
                "lost" => put(&mut w.lost_vms, key, name, bytes)?,
                _ => return Err(corrupt(key, "unknown kind of entry")),
            }
        }
        // Absence is not deletion: entities without their meta entry mean a store
        // this version did not write.
        let m = meta.ok_or_else(|| corrupt(META, "missing while other entries exist"))?;
        w.clock = m.clock;
        w.version = m.version;
        w.waiting_vms = m.waiting_vms;
        w.held_definitions = m.held_definitions;
        // Units written by the layout before `w/hold/` hold their holders inside.
        let inside: Vec<String> = w.units.iter().filter(|(_, u)| holds_inside(u)).map(|(n, _)| n.clone()).collect();
        for (key, name, holders) in holds {
            let (su, mn) = hold::split_name(name).ok_or_else(|| corrupt(key, "not w/hold/<su>/<mn>"))?;
            w.load_hold(su, mn, holders).map_err(|e| corrupt(key, e))?;
        }
        w.forget_changes();
        for name in inside {
            w.units.mark(name);
        }
        w.reindex();
        Ok(Loaded { world: w, legacy: None })
    }

    fn load_legacy(store: &dyn Store) -> Result<Loaded, StoreError> {
        let Some(b) = store.get_blob(LEGACY_BLOB)? else {
            return Ok(Loaded { world: World::new_now(), legacy: None });
        };
        let mut w: World = serde_json::from_slice(&b).map_err(|e| corrupt("(blob world)", e))?;
        let book: LegacyBookkeeping = serde_json::from_slice(&b).map_err(|e| corrupt("(blob world)", e))?;
        w.reindex();
        w.mark_all();
        Ok(Loaded { world: w, legacy: Some(book) })
    }

    /// Marks every entity changed, so the next `take_changes` writes the whole world.
    pub fn mark_all(&mut self) {
        fn mark<V>(m: &mut EntityMap<V>, _: &str) {
            m.mark_all();
        }
        each_map!(self, mark);
        self.persisted_meta = Shadow(None);
    }

    /// Forgets which entities changed (they are as stored).
    pub fn forget_changes(&mut self) {
        self.refresh_uses();
        fn forget<V>(m: &mut EntityMap<V>, _: &str) {
            m.take_dirty();
        }
        each_map!(self, forget);
        self.holds.forget_changes();
    }

    /// The entries to write for what changed since the last call: each changed entity
    /// (`None` when removed) and `w/meta` when it differs from what was written. A
    /// non-finite number anywhere in them is refused (it would be written as null and
    /// could not be read back); the changes are then still pending.
    pub fn take_changes(&mut self) -> Result<StateWrites, NonFinite> {
        let mut out = Vec::new();
        let mut err = None;
        let units_changed = self.units.dirty_keys().clone();
        self.refresh_uses();
        let mut take = |m: &mut dyn DirtyMap, prefix: &str| {
            if err.is_none() {
                if let Err(e) = m.changes(prefix, &mut out) {
                    err = Some(e);
                }
            }
        };
        take(&mut self.units, "w/unit/");
        take(&mut self.vms, "w/vm/");
        take(&mut self.migrations, "w/lm/");
        take(&mut self.links, "w/link/");
        take(&mut self.disks, "w/disk/");
        take(&mut self.cluster_managers, "w/cm/");
        take(&mut self.dirty_override, "w/dirty/");
        take(&mut self.lost_vms, "w/lost/");
        if let Some(e) = err {
            return Err(e);
        }
        self.hold_changes(&units_changed, &mut out);
        let bytes = self.meta_bytes();
        if self.persisted_meta.0.as_deref() != Some(&bytes[..]) {
            self.persisted_meta = Shadow(Some(bytes.clone()));
            out.push((META.to_string(), Some(bytes)));
        }
        Ok(out)
    }

    /// Whether anything changed since the last `take_changes`.
    pub fn has_changes(&self) -> bool {
        let maps = self.units.is_dirty()
            || self.vms.is_dirty()
            || self.migrations.is_dirty()
            || self.links.is_dirty()
            || self.disks.is_dirty()
            || self.cluster_managers.is_dirty()
            || self.dirty_override.is_dirty()
            || self.lost_vms.is_dirty()
            || self.holds.is_dirty();
        maps || self.persisted_meta.0.as_deref() != Some(&self.meta_bytes()[..])
    }

    fn meta_bytes(&self) -> Vec<u8> {
        let meta = Meta {
            clock: self.clock,
            version: self.version,
            waiting_vms: self.waiting_vms.clone(),
            held_definitions: self.held_definitions.clone(),
        };
        serde_json::to_vec(&meta).expect("the world's meta serialises")
    }

    /// Writes the whole world durably, replacing what the store has (tests and tools
    /// that edit a stopped store's world use this).
    pub fn save(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut w = self.clone();
        w.mark_all();
        let mut state = w.take_changes().map_err(|e| StoreError::Invalid(format!("simulated world: {e}")))?;
        let written: BTreeSet<String> = state.iter().map(|(k, _)| k.clone()).collect();
        for (k, _) in store.read_state(PREFIX)? {
            if !written.contains(&k) {
                state.push((k, None));
            }
        }
        store.commit_batch(crate::store::Batch { state, durable: true, ..Default::default() }).map(|_| ())
    }
}

/// A map whose changed entries can be written out.
trait DirtyMap {
    fn changes(&mut self, prefix: &str, out: &mut StateWrites) -> Result<(), NonFinite>;
}

/// Whether a unit as read holds device holders inside (the layout before `w/hold/`).
fn holds_inside(u: &Unit) -> bool {
    u.su.as_ref().is_some_and(|s| s.devices.values().any(|d| !d.holders.is_empty()))
}

/// An entity as it is stored: itself, but for a unit, which is stored without its
/// devices' holders (they have their own entries, `hold.rs`).
trait Stored: Serialize + Clone {
    fn stored(&self) -> Cow<'_, Self> {
        Cow::Borrowed(self)
    }
}

impl Stored for Unit {
    fn stored(&self) -> Cow<'_, Self> {
        if !holds_inside(self) {
            return Cow::Borrowed(self);
        }
        let mut u = self.clone();
        for d in u.su.iter_mut().flat_map(|s| s.devices.values_mut()) {
            d.holders.clear();
        }
        Cow::Owned(u)
    }
}

impl Stored for super::SimVm {}
impl Stored for super::SimMigration {}
impl Stored for super::Link {}
impl Stored for super::Disk {}
impl Stored for String {}
impl Stored for f64 {}
impl Stored for u64 {}

impl<V: Stored> DirtyMap for EntityMap<V> {
    fn changes(&mut self, prefix: &str, out: &mut StateWrites) -> Result<(), NonFinite> {
        if !self.is_dirty() {
            return Ok(());
        }
        let dirty = self.take_dirty();
        let mut staged = Vec::with_capacity(dirty.len());
        for k in &dirty {
            let key = format!("{prefix}{k}");
            match self.get(k) {
                Some(v) => {
                    match encode_finite(&*v.stored()) {
                        Ok(bytes) => staged.push((key, Some(bytes))),
                        Err(e) => {
                            // Keep them pending: nothing of this is written.
                            for d in dirty {
                                self.mark(d);
                            }
                            return Err(NonFinite(format!("{key}: {e}")));
                        }
                    }
                }
                None => staged.push((key, None)),
            }
        }
        out.extend(staged);
        Ok(())
    }
}
