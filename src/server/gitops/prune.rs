//! When an object that came from the folder may be deleted (`--prune`).
//!
//! An object is *absent* when no file's revision in force holds it. It is deleted only
//! after it has been absent for the whole grace period (`--prune-grace`), so a file
//! that is moved, renamed or rewritten in steps never loses its objects. When the
//! absent objects are more than `--prune-max-share` of the folder's objects, nothing
//! is deleted: the prune is *held* until a person confirms it (`sectl sources prune
//! --confirm`), which deletes the held objects that are still absent then.
//!
//! The share counts every absent object, in its grace or not, so a folder emptied
//! one file at a time within the grace period is held too.

use crate::api::Kind;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// An object: kind and name.
pub type Key = (Kind, String);

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrunePolicy {
    /// How long an object must be absent before it is deleted.
    pub grace: Duration,
    /// Largest share (0..=1) of the folder's objects deleted without a confirmation.
    pub max_share: f64,
}

/// What to do now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Delete these.
    pub delete: Vec<Key>,
    /// Absent objects, in their grace or held.
    pub absent: Vec<Key>,
    /// Nothing is deleted until a person confirms.
    pub held: bool,
    /// The hold is new (or its objects changed): report it.
    pub newly_held: bool,
    /// When the next object's grace ends.
    pub next_due: Option<Instant>,
}

/// Absence bookkeeping between syncs.
#[derive(Debug)]
pub struct Pruner {
    policy: PrunePolicy,
    absent: HashMap<Key, Instant>,
    held: Option<BTreeSet<Key>>,
    confirmed: Option<BTreeSet<Key>>,
}

impl Pruner {
    /// No object absent yet.
    pub fn new(policy: PrunePolicy) -> Pruner {
        Pruner { policy, absent: HashMap::new(), held: None, confirmed: None }
    }

    /// A person confirmed the held prune: the next plan deletes those objects that
    /// are still absent. False when nothing is held.
    pub fn confirm(&mut self) -> bool {
        match self.held.take() {
            Some(h) => {
                self.confirmed = Some(h);
                true
            }
            None => false,
        }
    }

    /// Plans with the objects absent now out of `total` from the folder.
    pub fn plan(&mut self, absent_now: &BTreeSet<Key>, total: usize, now: Instant) -> Plan {
        self.absent.retain(|k, _| absent_now.contains(k));
        for k in absent_now {
            self.absent.entry(k.clone()).or_insert(now);
        }
        let mut plan = Plan { absent: absent_now.iter().cloned().collect(), ..Plan::default() };
        if let Some(c) = self.confirmed.take() {
            plan.delete = c.into_iter().filter(|k| absent_now.contains(k)).collect();
            for k in &plan.delete {
                self.absent.remove(k);
            }
            return plan;
        }
        if absent_now.is_empty() {
            self.held = None;
            return plan;
        }
        let share = absent_now.len() as f64 / total.max(absent_now.len()).max(1) as f64;
        if share > self.policy.max_share {
            plan.held = true;
            plan.newly_held = self.held.as_ref() != Some(absent_now);
            self.held = Some(absent_now.clone());
            return plan;
        }
        self.held = None;
        for (k, since) in &self.absent {
            let due = *since + self.policy.grace;
            if due <= now {
                plan.delete.push(k.clone());
            } else {
                plan.next_due = Some(plan.next_due.map_or(due, |d: Instant| d.min(due)));
            }
        }
        plan.delete.sort();
        for k in &plan.delete {
            self.absent.remove(k);
        }
        plan
    }
}

/// Parses a share: `50%` or `0.5`, from 0 to 1 (100%).
pub fn parse_share(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.trim().strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (s.trim(), 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{s:?} is not a share; expected e.g. 50% or 0.5"))?;
    let v = v / scale;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?} is out of range; expected 0% to 100% (0 to 1)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> BTreeSet<Key> {
        names.iter().map(|n| (Kind::VMDefinition, n.to_string())).collect()
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[test]
    fn deletes_only_after_the_grace() {
        let mut p = Pruner::new(PrunePolicy { grace: GRACE, max_share: 0.5 });
        let t = Instant::now();
        let plan = p.plan(&keys(&["a"]), 10, t);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.next_due, Some(t + GRACE));
        // Back in a file before the grace ends: forgotten.
        assert_eq!(p.plan(&keys(&[]), 10, t + GRACE / 2), Plan::default());
        p.plan(&keys(&["a"]), 10, t + GRACE);
        assert!(p.plan(&keys(&["a"]), 10, t + GRACE + GRACE / 2).delete.is_empty(), "the grace restarts");
        assert_eq!(p.plan(&keys(&["a"]), 10, t + GRACE * 2).delete, vec![(Kind::VMDefinition, "a".into())]);
    }

    #[test]
    fn a_large_share_is_held_until_confirmed() {
        let mut p = Pruner::new(PrunePolicy { grace: GRACE, max_share: 0.5 });
        let t = Instant::now();
        let plan = p.plan(&keys(&["a", "b", "c"]), 4, t);
        assert!(plan.held && plan.newly_held && plan.delete.is_empty());
        let plan = p.plan(&keys(&["a", "b", "c"]), 4, t + GRACE * 10);
        assert!(plan.held && !plan.newly_held && plan.delete.is_empty(), "held past the grace: {plan:?}");
        assert!(p.confirm());
        // c came back meanwhile: only a and b are deleted.
        let plan = p.plan(&keys(&["a", "b"]), 4, t + GRACE * 10);
        assert_eq!(plan.delete.len(), 2);
        assert!(!p.confirm(), "nothing held any more");
        // Exactly the share is not more than it.
        let mut p = Pruner::new(PrunePolicy { grace: Duration::ZERO, max_share: 0.5 });
        assert_eq!(p.plan(&keys(&["a", "b"]), 4, t).delete.len(), 2);
    }

    #[test]
    fn shares_parse_strictly() {
        assert_eq!(parse_share("50%"), Ok(0.5));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(parse_share("100%"), Ok(1.0));
        assert!(parse_share("150%").is_err());
        assert!(parse_share("-1").is_err());
        assert!(parse_share("half").is_err());
        assert!(parse_share("NaN").is_err());
    }
}
