//! The README's tour, run verbatim (issue 11): the first ```sh block under "## A
//! tour" is executed by bash with `set -e` in a scratch folder holding copies of
//! `manifests/` and `examples/` and `target/release/sectl` (a link to the binary under
//! test), on a fresh store. Its promised results are checked, so the README cannot
//! drift from the program.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tour's shell block.
fn tour() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let after = readme.split_once("\n## A tour\n").expect("README has `## A tour`").1;
    let block = after.split_once("```sh\n").expect("a ```sh block in the tour").1;
    block.split_once("\n```").expect("the block ends").0.to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn the_readme_tour_runs_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_dir(&root().join("manifests"), &d.join("manifests"));
    copy_dir(&root().join("examples"), &d.join("examples"));
    std::fs::create_dir_all(d.join("target/release")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sectl"), d.join("target/release/sectl")).unwrap();
    std::fs::create_dir(d.join("tmp")).unwrap();
    let script = format!("set -e\n{}", tour());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(d)
        .env_remove("SECTL_DATA_DIR")
        .env_remove("SECTL_SERVER")
        .env("TMPDIR", d.join("tmp"))
        .output()
        .expect("bash must be installed to run the README tour (apt-get install bash)");
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the tour failed\nscript:\n{script}\nstdout:\n{so}\nstderr:\n{se}");
    assert!(!se.contains("panicked") && !se.contains("Warning:"), "{se}");
    for promised in [
        "su390",
        "NORMAL",
        "redundancy lost",
        "livemigration/check-vm12 created: Possible (VMS2460)",
        "livemigration/lm-vm12 created: Completed (MONJV $TW",
        "VMS2450",
        "VMS2451",
        "Rounds:",
        "liveMigrationCount: 1",
        "vmrecovery/rec-vm12 created: Completed",
        "DEFINED_ONLY",
        "Rejected",
    ] {
        assert!(so.contains(promised), "the tour promises {promised:?}; it printed:\n{so}");
    }
    assert!(d.join(".sectl").is_dir(), "the first part uses ./.sectl");
}
