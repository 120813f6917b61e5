//! The alias-expansion guard. A YAML alias (`*name`) repeats the node its anchor
//! (`&name`) names, so a small file can stand for a huge one: one 100 KiB string and
//! 999 aliases to it decode to 100 MB. serde_yaml's own limit counts alias uses (up to
//! 100 per event), not bytes, so it lets that through.
//!
//! Before a file is decoded, its documents are walked once with a visitor that counts
//! what decoding would build (scalar bytes, plus a little per node) and stops at the
//! first byte over the budget; nothing is kept, so the walk itself stays small. The
//! budget is relative to the file (`RATIO` times its size, at least `FLOOR`) and
//! absolute (`CEILING`). The walk is skipped for text with no `&` or no `*`, which
//! cannot hold an alias.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// A file may expand to this many times its size...
pub const RATIO: u64 = 10;
/// ...but always to at least this much (small files with a few aliases are fine)...
pub const FLOOR: u64 = 1024 * 1024;
/// ...and never to more than this.
pub const CEILING: u64 = 64 * 1024 * 1024;
/// What one node (a key, a number, a collection) counts besides its text.
const NODE_BYTES: u64 = 8;

/// The expansion budget for a file of `len` bytes.
pub fn budget(len: usize) -> u64 {
    (len as u64).saturating_mul(RATIO).clamp(FLOOR, CEILING)
}

/// Where the budget ran out: the 0-based index of the document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverBudget {
    /// Index of the document, in the order serde_yaml yields them.
    pub document: usize,
    /// The budget that was exceeded, in bytes.
    pub budget: u64,
}

/// Walks the documents of `text` and reports the first one whose expansion takes the
/// file over its budget. Documents serde_yaml cannot load end the walk (the decoder
/// reports them).
pub fn check(text: &str) -> Option<OverBudget> {
    if !(text.contains('&') && text.contains('*')) {
        return None;
    }
    let budget = budget(text.len());
    let left = Cell::new(budget);
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Count(&left).deserialize(de) {
            Ok(()) => {}
            Err(_) if left.get() == 0 => return Some(OverBudget { document: i, budget }),
            Err(_) => return None,
        }
    }
    None
}

/// Counts a node against the budget left.
#[derive(Clone, Copy)]
struct Count<'a>(&'a Cell<u64>);

impl Count<'_> {
    fn spend<E: de::Error>(self, n: u64) -> Result<(), E> {
        let left = self.0.get();
        let n = n.saturating_add(NODE_BYTES);
        if n >= left {
            self.0.set(0);
            return Err(E::custom("expansion budget exceeded"));
        }
        self.0.set(left - n);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.spend(v.len() as u64)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.spend(v.len() as u64)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): count the tag and the value.
        use de::VariantAccess;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bomb(string_bytes: usize, aliases: usize) -> String {
        let mut t = format!("a: &s {}\nb:\n", "x".repeat(string_bytes));
        for i in 0..aliases {
            t.push_str(&format!("  k{i}: *s\n"));
        }
        t
    }

    #[test]
    fn an_alias_bomb_is_over_budget() {
        let t = bomb(100 * 1024, 999);
        assert_eq!(check(&t), Some(OverBudget { document: 0, budget: budget(t.len()) }));
        // In the second document.
        let t2 = format!("a: 1\n---\n{t}");
        assert_eq!(check(&t2).map(|o| o.document), Some(1));
    }

    #[test]
    fn ordinary_anchors_pass() {
        assert_eq!(check(&bomb(1000, 50)), None);
        assert_eq!(check("a: &x {b: 1}\nc: *x\nd: *x\n"), None);
        assert_eq!(check("no aliases here & there"), None);
    }

    #[test]
    fn budget_is_relative_and_bounded() {
        assert_eq!(budget(10), FLOOR);
        assert_eq!(budget(1024 * 1024), RATIO * 1024 * 1024);
        assert_eq!(budget(16 * 1024 * 1024), CEILING);
    }
}
