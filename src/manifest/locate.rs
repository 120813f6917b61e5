//! Where a field path (`spec.devices[2].mn`) sits in a document's text, as line and
//! column. serde_yaml keeps no positions in its `Value`, but it attaches the position
//! of the node being read to any error a visitor raises; so a walker follows the path
//! through the document and raises an error on arrival, and the error's location is
//! the answer. One walk per path, over one document's text: callers bound how many
//! paths they locate (see `recover`).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index (0-based).
    Index(usize),
}

/// Renders segments as the user reads paths: `spec.devices[2].mn`.
pub(super) fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses `spec.devices[2].mn` (the form `validate` and `render` write) into segments.
pub(super) fn parse(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some((n, after)) = rest.split_once(']') {
            match n.parse() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) => return out,
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// Whether to point at a field's key (`memoryMiB:`) or at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    /// The key: for "this field" errors (unknown field, cross-field checks).
    Key,
    /// The value: for "this value" errors (wrong type, out of range).
    Value,
}

/// 1-based line and column of `segs` in the first document of `text`, or None when
/// the path is not there (or `text` holds no document).
pub(super) fn locate(text: &str, segs: &[Seg], at: At) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text).next()?;
    match (Finder { segs, at }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(ARRIVED) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
}

/// The message of the walker's own error (never shown).
const ARRIVED: &str = "sectl-locate: arrived";

struct Finder<'a> {
    segs: &'a [Seg],
    at: At,
}

impl<'de> DeserializeSeed<'de> for Finder<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Finder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom(ARRIVED));
        };
        let key_is_target = rest.is_empty() && self.at == At::Key;
        while let Some(hit) = map.next_key_seed(KeyProbe { want, fail: key_is_target })? {
            if hit {
                return map.next_value_seed(Finder { segs: rest, at: self.at });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(n), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom(ARRIVED));
        };
        for _ in 0..*n {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Finder { segs: rest, at: self.at }).map(|_| ())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Finder<'_> {
    /// A scalar is the target only when the path ends here.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.segs.is_empty() {
            Err(E::custom(ARRIVED))
        } else {
            Ok(())
        }
    }
}

/// Reads a mapping key: whether it is `want`; with `fail`, a match is the target.
struct KeyProbe<'a> {
    want: &'a str,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match (v == self.want, self.fail) {
            (true, true) => Err(E::custom(ARRIVED)),
            (hit, _) => Ok(hit),
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "---\nkind: X\nspec:\n  vmName: VM1\n  devices:\n  - {mn: A000, shared: true}\n  - mn: A001\n    shared: false\n";

    #[test]
    fn paths_round_trip() {
        for p in ["spec.devices[1].mn", "spec", "spec.a[0][2].b", "metadata.labels"] {
            assert_eq!(render(&parse(p)), p);
        }
    }

    #[test]
    fn finds_keys_and_values_block_and_flow() {
        let at = |p: &str, a| locate(DOC, &parse(p), a);
        assert_eq!(at("spec.vmName", At::Key), Some((4, 3)));
        assert_eq!(at("spec.vmName", At::Value), Some((4, 11)));
        assert_eq!(at("spec.devices[0].mn", At::Key), Some((6, 6)));
        assert_eq!(at("spec.devices[1].shared", At::Key), Some((8, 5)));
        assert_eq!(at("spec.devices[1]", At::Value), Some((7, 5)));
        assert_eq!(at("spec.memoryMiB", At::Key), None);
        assert_eq!(at("spec.devices[5].mn", At::Key), None);
        assert_eq!(at("kind.x", At::Key), None);
    }
}
