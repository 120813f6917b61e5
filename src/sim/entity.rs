//! `EntityMap`: a map of named entities of the simulated world (units, VM placements,
//! migrations ...) that remembers which entries changed since the changes were last
//! taken, so that a reconcile writes only the entities it touched, not the world.
//!
//! Reads go through `Deref` to the inner `BTreeMap`; every way to change an entry
//! (`get_mut`, `insert`, `remove`, `retain`, `entry`, `values_mut`, `iter_mut`)
//! marks it. Marking on `get_mut` without a change only costs a write of an equal
//! value. The one exception, `get_mut_unmarked`, is for parts stored apart from the
//! entity that their caller tracks itself (device holders). Equality, cloning and the serialised form are those of the plain map.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{btree_map, BTreeMap, BTreeSet};

/// A map of entities by name with change tracking.
#[derive(Debug, Clone)]
pub struct EntityMap<V> {
    map: BTreeMap<String, V>,
    dirty: BTreeSet<String>,
}

impl<V> Default for EntityMap<V> {
    fn default() -> Self {
        EntityMap { map: BTreeMap::new(), dirty: BTreeSet::new() }
    }
}

impl<V: PartialEq> PartialEq for EntityMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V> std::ops::Deref for EntityMap<V> {
    type Target = BTreeMap<String, V>;
    fn deref(&self) -> &BTreeMap<String, V> {
        &self.map
    }
}

impl<'a, V> IntoIterator for &'a EntityMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = btree_map::Iter<'a, String, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<V> FromIterator<(String, V)> for EntityMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        EntityMap { map: iter.into_iter().collect(), dirty: BTreeSet::new() }
    }
}

impl<V: Serialize> Serialize for EntityMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for EntityMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(EntityMap { map: BTreeMap::deserialize(d)?, dirty: BTreeSet::new() })
    }
}

impl<V> EntityMap<V> {
    /// The entry, mutable; marks it changed.
    pub fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        let v = self.map.get_mut(k)?;
        if !self.dirty.contains(k) {
            self.dirty.insert(k.to_string());
        }
        Some(v)
    }

    /// The entry, mutable, *without* marking it: only for parts of an entity that are
    /// stored apart from it and tracked by the caller (device holders, see `hold.rs`).
    pub(crate) fn get_mut_unmarked(&mut self, k: &str) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    /// Inserts or replaces an entry.
    pub fn insert(&mut self, k: String, v: V) -> Option<V> {
        self.dirty.insert(k.clone());
        self.map.insert(k, v)
    }

    /// Removes an entry.
    pub fn remove(&mut self, k: &str) -> Option<V> {
        let v = self.map.remove(k)?;
        self.dirty.insert(k.to_string());
        Some(v)
    }

    /// Keeps the entries for which `f` is true.
    pub fn retain(&mut self, mut f: impl FnMut(&String, &mut V) -> bool) {
        let dirty = &mut self.dirty;
        self.map.retain(|k, v| {
            let keep = f(k, v);
            if !keep {
                dirty.insert(k.clone());
            }
            keep
        });
    }

    /// The entry API of the map; marks the key.
    pub fn entry(&mut self, k: String) -> btree_map::Entry<'_, String, V> {
        self.dirty.insert(k.clone());
        self.map.entry(k)
    }

    /// All values, mutable; marks every entry.
    pub fn values_mut(&mut self) -> btree_map::ValuesMut<'_, String, V> {
        self.dirty.extend(self.map.keys().cloned());
        self.map.values_mut()
    }

    /// All entries, mutable; marks every entry.
    pub fn iter_mut(&mut self) -> btree_map::IterMut<'_, String, V> {
        self.dirty.extend(self.map.keys().cloned());
        self.map.iter_mut()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.dirty.extend(self.map.keys().cloned());
        self.map.clear();
    }

    /// Marks one key changed (present or removed).
    pub fn mark(&mut self, k: String) {
        self.dirty.insert(k);
    }

    /// Marks every entry changed (to write them all).
    pub fn mark_all(&mut self) {
        self.dirty.extend(self.map.keys().cloned());
    }

    /// The keys changed since the last call, and forgets them.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// The keys changed since the last `take_dirty`, without forgetting them.
    pub fn dirty_keys(&self) -> &BTreeSet<String> {
        &self.dirty
    }

    /// Whether any entry changed since the last `take_dirty`.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_tracked_by_key() {
        let mut m: EntityMap<u32> = EntityMap::default();
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        assert_eq!(m.take_dirty().len(), 2);
        assert!(m.get("a").is_some());
        assert!(!m.is_dirty(), "reads mark nothing");
        *m.get_mut("a").unwrap() = 5;
        assert!(m.get_mut("zz").is_none());
        m.retain(|k, _| k != "b");
        assert_eq!(m.take_dirty().into_iter().collect::<Vec<_>>(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(m.remove("nope"), None);
        assert!(!m.is_dirty());
        let copy: EntityMap<u32> = [("a".to_string(), 5)].into_iter().collect();
        assert_eq!(m, copy);
    }
}
