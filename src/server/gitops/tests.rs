//! Sync-level tests of GitOps against a real store in a temporary folder, without the
//! watch loop: revisions in force across conflicts, renames and restarts.

use super::*;
use crate::store::SledStore;

fn server(name: &str, n: u32) -> String {
    format!(
        "apiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: {name}}}\nspec:\n  model: SE500\n  \
         location: Augsburg\n  version: V6.3\n  managementUnits: [{{name: mu{n}}}]\n  serverUnits:\n    - name: SU{n}\n      \
         type: \"390\"\n      cpus: 4\n      memoryMiB: 32768\n"
    )
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: Arc<dyn Store>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("watch");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&tmp.path().join("data")).expect("store"));
    Fixture { _tmp: tmp, dir, store }
}

fn opts(settle: Duration) -> Options {
    Options {
        prune: true,
        policy: PrunePolicy { grace: Duration::ZERO, max_share: 1.0 },
        settle,
        follow_links_inside: false,
    }
}

fn source_of(store: &Arc<dyn Store>, name: &str) -> Option<String> {
    let o = store.get(Kind::SEServer, name).expect("get")?;
    o.meta().annotations.0.get(SOURCE_ANNOTATION).cloned()
}

#[test]
fn a_new_revision_clashing_with_another_file_is_a_conflict_and_the_old_stays() {
    let f = fixture();
    std::fs::write(f.dir.join("a.yaml"), server("se-a", 1)).expect("write");
    std::fs::write(f.dir.join("b.yaml"), server("se-b", 2)).expect("write");
    let mut g = GitOps::new(f.dir.clone(), opts(Duration::ZERO), f.store.clone());
    assert_eq!(g.sync().created, 2);
    // b.yaml now claims se-a (and no longer holds se-b).
    std::fs::write(f.dir.join("b.yaml"), server("se-a", 1)).expect("write");
    let r = g.sync();
    assert!(r.pruned.is_empty(), "{r:?}");
    let lines = g.sources.files();
    assert_eq!(lines["b.yaml"].state, FileState::Conflict, "{lines:?}");
    assert!(lines["b.yaml"].message.contains("also in a.yaml"), "{lines:?}");
    assert_eq!(lines["b.yaml"].objects, vec!["SEServer/se-b".to_string()], "the old revision stays in force");
    assert_eq!(source_of(&f.store, "se-a").as_deref(), Some("a.yaml"));
    assert_eq!(source_of(&f.store, "se-b").as_deref(), Some("b.yaml"));
}

#[test]
fn a_renamed_file_keeps_its_objects_even_without_a_grace() {
    let f = fixture();
    std::fs::write(f.dir.join("a.yaml"), server("se-a", 1)).expect("write");
    let mut g = GitOps::new(f.dir.clone(), opts(Duration::ZERO), f.store.clone());
    g.sync();
    let uid = f.store.get(Kind::SEServer, "se-a").expect("get").expect("se-a").meta().uid.clone();
    std::fs::rename(f.dir.join("a.yaml"), f.dir.join("c.yaml")).expect("rename");
    let r = g.sync();
    assert!(r.pruned.is_empty(), "{r:?}");
    let o = f.store.get(Kind::SEServer, "se-a").expect("get").expect("still there");
    assert_eq!(o.meta().uid, uid);
    assert_eq!(source_of(&f.store, "se-a").as_deref(), Some("c.yaml"));
}

#[test]
fn objects_of_a_file_being_written_at_start_are_kept() {
    let f = fixture();
    std::fs::write(f.dir.join("a.yaml"), server("se-a", 1)).expect("write");
    GitOps::new(f.dir.clone(), opts(Duration::ZERO), f.store.clone()).sync();
    // A restart while a.yaml is being rewritten: it has no revision in force yet.
    std::fs::write(f.dir.join("a.yaml"), server("se-a", 1).replace("cpus: 4", "cpus: 2")).expect("write");
    let mut g = GitOps::new(f.dir.clone(), opts(Duration::from_secs(3600)), f.store.clone());
    let r = g.sync();
    assert!(r.pruned.is_empty() && r.absent == 0, "{r:?}");
    assert_eq!(g.sources.files()["a.yaml"].state, FileState::InProgress);
    assert!(r.next_wake.is_some(), "it wakes when the file settles");
    assert!(f.store.get(Kind::SEServer, "se-a").expect("get").is_some());
}

#[test]
fn an_empty_file_keeps_its_revision_and_a_deleted_one_is_pruned() {
    let f = fixture();
    std::fs::write(f.dir.join("a.yaml"), server("se-a", 1)).expect("write");
    std::fs::write(f.dir.join("b.yaml"), server("se-b", 2)).expect("write");
    let mut g = GitOps::new(f.dir.clone(), opts(Duration::ZERO), f.store.clone());
    g.sync();
    std::fs::write(f.dir.join("a.yaml"), "# nothing yet\n").expect("truncate");
    let r = g.sync();
    assert!(r.pruned.is_empty(), "{r:?}");
    let line = &g.sources.files()["a.yaml"];
    assert_eq!(line.state, FileState::Empty);
    assert_eq!(line.objects, vec!["SEServer/se-a".to_string()]);
    std::fs::remove_file(f.dir.join("a.yaml")).expect("rm");
    assert_eq!(g.sync().pruned, vec!["SEServer/se-a".to_string()]);
    assert!(f.store.get(Kind::SEServer, "se-b").expect("get").is_some());
}
