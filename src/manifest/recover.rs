//! Every bad field of a document, not only the first.
//!
//! Decision: serde stops at the first error, and the typed structs (with their checks
//! inside deserialisation, `api::checked`) are the one definition of what is valid, so
//! rather than a second, hand-written validator over a `Value`, a document that failed
//! is decoded again with error recovery: its `serde_yaml::Value` (it loaded, so this
//! cannot fail) loses the field that failed, and the typed decoding runs again, until it
//! succeeds. Errors that only the removal caused (a missing field, a list now too short:
//! any error on a node above a removed one) are not reported; their node is removed in
//! turn, so the fields beside it are still checked. A `Value` holds no positions, so
//! each error found this way is placed with `locate` on the document's own text.
//!
//! Bounds: at most `MAX_FIELD_ERRORS` errors per document (the rest is summed up in one
//! line), and each round removes one node, so the work is at most that many decodings
//! plus the depth of the document.

use super::locate::Seg;
use serde_yaml::Value;

/// Most field errors reported for one document.
pub(super) const MAX_FIELD_ERRORS: usize = 20;

/// Most decoding rounds for one document (errors plus removed parents).
const MAX_ROUNDS: usize = 4 * MAX_FIELD_ERRORS;

/// One more error of a document: its path in the document as written (None: not
/// known) and serde_yaml's error.
pub(super) type Found = (Option<Vec<Seg>>, serde_yaml::Error);

/// What `decode` reports: Ok, or where (as far as known) and what failed.
pub(super) type Attempt = Result<(), Found>;

/// The errors of `value` after the first one (at `first`), found by removing each
/// failing node and decoding again with `decode`. The second value says whether more
/// errors were left unreported (`MAX_FIELD_ERRORS`).
pub(super) fn more_errors(mut value: Value, first: &[Seg], decode: impl Fn(Value) -> Attempt) -> (Vec<Found>, bool) {
    let mut out = Vec::new();
    if first.is_empty() || !remove(&mut value, first) {
        return (out, false);
    }
    let mut removed = vec![first.to_vec()];
    for _ in 0..MAX_ROUNDS {
        let (current, e) = match decode(value.clone()) {
            Ok(()) => break,
            Err((None, e)) => {
                out.push((None, e));
                break;
            }
            Err((Some(current), e)) => (current, e),
        };
        let original = to_original(&current, &removed);
        let caused_by_removal = removed.iter().any(|r| r.len() > original.len() && r.starts_with(&original));
        if !caused_by_removal {
            if out.len() == MAX_FIELD_ERRORS - 1 {
                return (out, true);
            }
            out.push((Some(original.clone()), e));
        }
        if original.is_empty() || !remove(&mut value, &current) {
            break;
        }
        removed.push(original);
    }
    (out, false)
}

/// Converts serde_path_to_error's path into segments; None when it holds a step that
/// is not a key or an index.
pub(super) fn segments(path: &serde_path_to_error::Path) -> Option<Vec<Seg>> {
    path.iter()
        .map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            _ => None,
        })
        .collect()
}

/// Removes the node at `segs` from `value`; false when it is not there.
fn remove(value: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut node = value;
    for s in parents {
        node = match (s, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(v)) => match v.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            (s, Value::Tagged(t)) => return remove(&mut t.value, std::slice::from_ref(s)),
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => m.shift_remove(k.as_str()).is_some(),
        (Seg::Index(i), Value::Sequence(v)) if *i < v.len() => {
            v.remove(*i);
            true
        }
        _ => false,
    }
}

/// A path in the current (pruned) value as a path in the document as written: list
/// indexes shift back over the elements removed before them.
fn to_original(current: &[Seg], removed: &[Vec<Seg>]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::with_capacity(current.len());
    for s in current {
        let Seg::Index(i) = s else {
            out.push(s.clone());
            continue;
        };
        let mut gone: Vec<usize> = removed
            .iter()
            .filter(|r| r.len() == out.len() + 1 && r.starts_with(&out))
            .filter_map(|r| match r[out.len()] {
                Seg::Index(x) => Some(x),
                Seg::Key(_) => None,
            })
            .collect();
        gone.sort_unstable();
        let mut index = *i;
        for g in gone {
            if g <= index {
                index += 1;
            }
        }
        out.push(Seg::Index(index));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::locate::parse;
    use super::*;

    #[test]
    fn indexes_shift_back_over_removed_elements() {
        let removed = vec![parse("a[1]"), parse("a[3]"), parse("b[0]")];
        assert_eq!(to_original(&parse("a[0].x"), &removed), parse("a[0].x"));
        assert_eq!(to_original(&parse("a[1].x"), &removed), parse("a[2].x"));
        assert_eq!(to_original(&parse("a[2]"), &removed), parse("a[4]"));
        assert_eq!(to_original(&parse("b[0]"), &removed), parse("b[1]"));
    }

    #[test]
    fn removes_keys_and_elements() {
        let mut v: Value = serde_yaml::from_str("a: [1, {x: 2, y: 3}]\nb: 4\n").unwrap();
        assert!(remove(&mut v, &parse("a[1].x")));
        assert!(remove(&mut v, &parse("a[0]")));
        assert!(!remove(&mut v, &parse("c")));
        assert!(remove(&mut v, &parse("b")));
        assert_eq!(v, serde_yaml::from_str::<Value>("a: [{y: 3}]\n").unwrap());
    }
}
