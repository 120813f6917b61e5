//! Lists the watched folder: every `*.yaml`/`*.yml` regular file below it (sorted,
//! hidden entries skipped), and the entries that are *not* read, with the reason, so
//! that `get sources` can report them instead of silently ignoring them:
//! symbolic links (to files or folders) and FIFOs, sockets and devices.
//!
//! With `--follow-links-inside`, a link whose canonical target is a regular file
//! inside the folder is read (at its target); links leading outside still are not.
//! Nothing here opens a file, so no entry can block the scan.

use std::path::{Path, PathBuf};

/// One entry of the folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A manifest to read at `path`.
    File {
        /// Relative to the folder (the link's own name for a followed link).
        rel: String,
        /// What to open.
        path: PathBuf,
    },
    /// Not read.
    Skipped {
        /// Relative to the folder.
        rel: String,
        /// Why.
        reason: String,
    },
}

impl Entry {
    /// The path relative to the folder.
    pub fn rel(&self) -> &str {
        match self {
            Entry::File { rel, .. } | Entry::Skipped { rel, .. } => rel,
        }
    }
}

fn is_manifest_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Lists `dir`. An error (the folder or a sub-folder cannot be listed) means "unknown",
/// never "empty".
pub fn scan(dir: &Path, follow_links_inside: bool) -> std::io::Result<Vec<Entry>> {
    let root = std::fs::canonicalize(dir)?;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let p = entry.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().to_string();
            // The entry itself (lstat): links are not followed here.
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() {
                if let Some(e) = link_entry(&root, rel, &p, is_manifest_name(&name), follow_links_inside) {
                    out.push(e);
                }
            } else if is_manifest_name(&name) {
                if ft.is_file() {
                    out.push(Entry::File { rel, path: p });
                } else {
                    let kind = std::fs::symlink_metadata(&p)
                        .map(|m| crate::safe_read::kind_name(&m))
                        .unwrap_or("special file");
                    out.push(Entry::Skipped { rel, reason: format!("not a regular file but a {kind}; not read") });
                }
            }
        }
    }
    out.sort_by(|a, b| a.rel().cmp(b.rel()));
    Ok(out)
}

/// What to do with a symbolic link; None for links that concern no manifest.
fn link_entry(root: &Path, rel: String, p: &Path, manifest_name: bool, follow_inside: bool) -> Option<Entry> {
    // stat follows the link without opening the target (a FIFO cannot block it).
    let target_meta = std::fs::metadata(p).ok();
    if target_meta.as_ref().is_some_and(|m| m.is_dir()) {
        return Some(Entry::Skipped { rel, reason: "a symbolic link to a folder; not followed".into() });
    }
    if !manifest_name {
        return None;
    }
    if !follow_inside {
        return Some(Entry::Skipped {
            rel,
            reason: "a symbolic link; not followed (--follow-links-inside reads links to files inside the folder)"
                .into(),
        });
    }
    let inside = std::fs::canonicalize(p).ok().filter(|t| t.starts_with(root));
    match (inside, target_meta) {
        (Some(target), Some(m)) if m.is_file() => Some(Entry::File { rel, path: target }),
        (Some(_), Some(m)) => Some(Entry::Skipped {
            rel,
            reason: format!("a symbolic link to a {}; not read", crate::safe_read::kind_name(&m)),
        }),
        (Some(_), None) => Some(Entry::Skipped { rel, reason: "a broken symbolic link; not read".into() }),
        (None, _) => {
            Some(Entry::Skipped { rel, reason: "a symbolic link leading outside the folder; not read".into() })
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lists_regular_files_and_reports_links_and_specials() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("w");
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("a.yaml"), "").expect("write");
        std::fs::write(d.join("sub/b.yml"), "").expect("write");
        std::fs::write(d.join("notes.txt"), "").expect("write");
        std::fs::write(d.join(".hidden.yaml"), "").expect("write");
        std::fs::write(t.path().join("outside.yaml"), "").expect("write");
        symlink(t.path().join("outside.yaml"), d.join("out.yaml")).expect("link");
        symlink(d.join("a.yaml"), d.join("in.yaml")).expect("link");
        symlink(t.path(), d.join("up")).expect("link");
        symlink("/dev/zero", d.join("zero.yaml")).expect("link");
        let st = std::process::Command::new("mkfifo").arg(d.join("p.yaml")).status().expect("mkfifo (coreutils)");
        assert!(st.success());

        let got = scan(&d, false).expect("scan");
        let rels: Vec<&str> = got.iter().map(|e| e.rel()).collect();
        assert_eq!(rels, ["a.yaml", "in.yaml", "out.yaml", "p.yaml", "sub/b.yml", "up", "zero.yaml"]);
        assert!(matches!(&got[0], Entry::File { .. }));
        for i in [1, 2, 3, 5, 6] {
            assert!(matches!(&got[i], Entry::Skipped { .. }), "{:?}", got[i]);
        }
        assert!(matches!(&got[3], Entry::Skipped { reason, .. } if reason.contains("FIFO")));
        assert!(matches!(&got[4], Entry::File { .. }));

        // Following links inside: only in.yaml becomes readable, at its target.
        let got = scan(&d, true).expect("scan");
        let canon_a = std::fs::canonicalize(d.join("a.yaml")).expect("canon");
        assert_eq!(got[1], Entry::File { rel: "in.yaml".into(), path: canon_a });
        assert!(matches!(&got[2], Entry::Skipped { reason, .. } if reason.contains("outside")));
        assert!(matches!(&got[6], Entry::Skipped { reason, .. } if reason.contains("outside")));
        assert!(matches!(&got[5], Entry::Skipped { reason, .. } if reason.contains("folder")));
    }

    #[test]
    fn an_unlistable_folder_is_an_error() {
        assert!(scan(Path::new("/nonexistent/sectl-watch"), false).is_err());
    }
}
