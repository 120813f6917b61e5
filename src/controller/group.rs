//! Group commit: the batches of reconciles that run one after the other are merged
//! and stored as ONE store batch, so what every reconcile writes anyway (the
//! resourceVersion and event counters, `w/meta`, `c/observed`) is written once per
//! group and the store's per-commit work is paid once.
//!
//! A group is still all or nothing in the store, and it ends at a step boundary, so a
//! crash leaves the store at a state the controller passed through (a kill can now take
//! back up to a group of steps instead of one; they are done again, as before).
//!
//! The controller keeps the order of effects exactly as without groups: it ends a
//! group (commits it) before an object in it is reconciled again, before a status
//! write that wakes other objects is followed by anything (the watch of that write
//! must wake them first), before any other batch (ingest, fault, clock), before the
//! world is read back from the store, and when nothing is due. While a group is open,
//! the only changes in the store since the controller last looked are its own status
//! writes that wake nobody, so it does not look (`ingest`) until the group ends.

use super::runtime::Key;
use crate::store::{Batch, StatusWrite};
use std::collections::HashSet;

/// At most this many reconciles per group.
pub const MAX_STEPS: usize = 64;

/// Reconciles run and not stored yet, and the results of stored groups that the
/// controller has not taken into its cache yet.
#[derive(Default)]
pub struct Group {
    /// The merged batches, in the order the reconciles ran.
    batch: Batch,
    /// The objects reconciled in the group.
    keys: HashSet<Key>,
    /// The object of each status in `batch.statuses`, in order.
    status_keys: Vec<Key>,
    /// Reconciles in the group.
    steps: usize,
    /// Stored statuses, to take into the cache (`Controller::take_done`).
    pub done: Vec<(Key, StatusWrite)>,
}

impl Group {
    /// True when nothing waits to be stored.
    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// Whether `key` was reconciled in the open group.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// Whether the group is as large as it may get.
    pub fn full(&self) -> bool {
        self.steps >= MAX_STEPS
    }

    /// Adds one reconcile's batch (its world changes included). State writes are
    /// applied in order by the store, so a later write of a key wins, as it would have
    /// in a later batch.
    pub fn add(&mut self, key: &Key, b: Batch) {
        self.keys.insert(key.clone());
        self.status_keys.extend(b.statuses.iter().map(|_| key.clone()));
        self.batch.statuses.extend(b.statuses);
        self.batch.events.extend(b.events);
        self.batch.state.extend(b.state);
        self.batch.expect.extend(b.expect);
        self.batch.durable |= b.durable;
        self.steps += 1;
    }

    /// Empties the group: its batch and the object of each of its statuses.
    pub fn take(&mut self) -> (Batch, Vec<Key>) {
        self.keys.clear();
        self.steps = 0;
        (std::mem::take(&mut self.batch), std::mem::take(&mut self.status_keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Kind;

    fn k(n: &str) -> Key {
        (Kind::VMDefinition, n.to_string())
    }

    fn state(key: &str, v: Option<&str>) -> Batch {
        Batch { state: vec![(key.to_string(), v.map(|s| s.as_bytes().to_vec()))], ..Default::default() }
    }

    #[test]
    fn merges_in_order_and_empties() {
        let mut g = Group::default();
        assert!(g.is_empty());
        g.add(&k("a"), state("x", Some("1")));
        g.add(&k("b"), state("x", Some("2")));
        assert!(g.contains(&k("a")) && g.contains(&k("b")) && !g.contains(&k("c")));
        assert!(!g.is_empty() && !g.full());
        let (b, keys) = g.take();
        // Both writes, in order: the store applies them in order, so the last wins.
        assert_eq!(b.state, vec![("x".to_string(), Some(b"1".to_vec())), ("x".to_string(), Some(b"2".to_vec()))]);
        assert!(keys.is_empty());
        assert!(g.is_empty() && !g.contains(&k("a")));
    }

    #[test]
    fn full_after_max_steps() {
        let mut g = Group::default();
        for i in 0..MAX_STEPS {
            assert!(!g.full());
            g.add(&k(&i.to_string()), Batch::default());
        }
        assert!(g.full());
    }
}
