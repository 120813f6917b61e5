//! `Store::list_page` and `list_page_json` on the sled store (issue 8, item 6): pages
//! in name order that add up to the list, a continued page that is the snapshot of the
//! first, `SnapshotGone` when an object still to come changed or the history is gone,
//! and the raw JSON equal to the typed objects.

mod common;

use sectl::api::Kind;
use sectl::store::{SledStore, Store, StoreError};

fn store_with(n: usize, history: u64) -> (tempfile::TempDir, SledStore) {
    let d = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open_with_history(&d.path().join("data"), history).expect("open");
    let vms = (0..n).map(|i| common::vm(&format!("vm{i:03}"), 64)).collect();
    s.apply(vms, false).expect("apply");
    (d, s)
}

fn names(p: &sectl::store::Page) -> Vec<String> {
    p.items.iter().map(|o| o.name().to_string()).collect()
}

#[test]
fn pages_add_up_to_the_list_in_name_order() {
    let (_d, s) = store_with(25, 1_000);
    let (all, rv) = s.list(Kind::VMDefinition).expect("list");
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    let mut at = None;
    loop {
        let p = s.list_page(Kind::VMDefinition, after.as_deref(), 10, at).expect("page");
        assert!(p.items.len() <= 10);
        assert_eq!(p.rv, rv, "every page is at the list's resourceVersion");
        got.extend(p.items.iter().cloned());
        at = Some(p.rv);
        after = p.items.last().map(|o| o.name().to_string());
        if !p.more {
            break;
        }
    }
    assert_eq!(got, all);
    // Exactly 20: no `more` after the last one.
    let p = s.list_page(Kind::VMDefinition, Some("vm009"), 15, None).expect("page");
    assert_eq!((p.items.len(), p.more), (15, false));
    let p = s.list_page(Kind::VMDefinition, Some("vm009"), 14, None).expect("page");
    assert_eq!((p.items.len(), p.more), (14, true));
    // The raw page carries the same objects as JSON.
    let raw = s.list_page_json(Kind::VMDefinition, None, 5, None).expect("raw");
    let typed = s.list_page(Kind::VMDefinition, None, 5, None).expect("typed");
    for ((name, json), obj) in raw.items.iter().zip(&typed.items) {
        assert_eq!(name, obj.name());
        assert_eq!(json, &obj.to_json());
    }
    // Other kinds are not mixed in.
    assert!(s.list_page(Kind::SEServer, None, 10, None).expect("page").items.is_empty());
}

#[test]
fn a_continued_page_is_the_snapshot_or_snapshot_gone() {
    let (_d, s) = store_with(25, 1_000);
    let first = s.list_page(Kind::VMDefinition, None, 10, None).expect("page");
    assert_eq!(names(&first).last().map(String::as_str), Some("vm009"));
    // A change to an object already returned does not matter.
    s.update(common::vm("vm003", 128)).expect("update");
    let p = s.list_page(Kind::VMDefinition, Some("vm009"), 10, Some(first.rv)).expect("still consistent");
    assert_eq!(names(&p).first().map(String::as_str), Some("vm010"));
    // A change to one still to come does: the rest would not be the snapshot.
    s.update(common::vm("vm017", 128)).expect("update");
    match s.list_page(Kind::VMDefinition, Some("vm009"), 10, Some(first.rv)) {
        Err(StoreError::SnapshotGone { at, reason }) => {
            assert_eq!(at, first.rv);
            assert!(reason.contains("vm017"), "{reason}");
        }
        other => panic!("expected SnapshotGone, got {other:?}"),
    }
    // So does a new object after the last name, and a deletion.
    let (_d2, s2) = store_with(5, 1_000);
    let p = s2.list_page(Kind::VMDefinition, None, 2, None).expect("page");
    s2.create(common::vm("vm100", 64)).expect("create");
    assert!(matches!(
        s2.list_page(Kind::VMDefinition, Some("vm001"), 2, Some(p.rv)),
        Err(StoreError::SnapshotGone { .. })
    ));
    let (_d3, s3) = store_with(5, 1_000);
    let p = s3.list_page(Kind::VMDefinition, None, 2, None).expect("page");
    s3.delete(Kind::VMDefinition, "vm004").expect("delete");
    assert!(matches!(
        s3.list_page(Kind::VMDefinition, Some("vm001"), 2, Some(p.rv)),
        Err(StoreError::SnapshotGone { .. })
    ));
    // A token from the future is invalid, not gone.
    assert!(matches!(s3.list_page(Kind::VMDefinition, None, 2, Some(10_000)), Err(StoreError::Invalid(_))));
}

#[test]
fn a_continue_older_than_the_history_is_gone() {
    let (_d, s) = store_with(5, 4);
    let p = s.list_page(Kind::VMDefinition, None, 2, None).expect("page");
    // Changes to an object already returned push the history on.
    for i in 0..6 {
        s.update(common::vm("vm000", 100 + i)).expect("update");
    }
    match s.list_page(Kind::VMDefinition, Some("vm001"), 2, Some(p.rv)) {
        Err(StoreError::SnapshotGone { reason, .. }) => assert!(reason.contains("history"), "{reason}"),
        other => panic!("expected SnapshotGone, got {other:?}"),
    }
}
