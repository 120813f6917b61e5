//! One file's revisions: the revision in force (the last content that was complete,
//! stable, valid and applied) and what the file holds now.
//!
//! New content becomes a candidate only once it is *stable*: it did not change while
//! it was read, and either the file's change time (ctime, which no tool sets back) is
//! at least `settle` old, or the same content (by SHA-256) has been seen for at least
//! `settle`. A writer that truncates and rewrites, or writes in parts with pauses
//! shorter than `settle`, is therefore never read half-way. Content that is empty or
//! does not decode never replaces the revision in force: absence is not deletion.
//!
//! Trade-off: a writer pausing longer than `settle` exactly at a document boundary
//! cannot be told from a finished file; the prune grace period still keeps such a
//! half from deleting anything.

use crate::api::Resource;
use crate::manifest;
use crate::safe_read::{self, ReadError};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// A revision of a file that was applied.
#[derive(Debug, Clone)]
pub struct Revision {
    /// First 16 hex digits of the content's SHA-256.
    pub hash: String,
    /// Its objects (annotated with their file, resourceVersion cleared).
    pub objects: Vec<Resource>,
    /// When it came into force (RFC 3339).
    pub since: String,
}

/// What the file holds now, compared with the revision in force.
#[derive(Debug, Clone)]
pub enum Reading {
    /// The same content as the revision in force.
    Unchanged,
    /// New content, not stable yet; look again at `until`.
    Settling {
        /// When it may be stable.
        until: Instant,
    },
    /// Complete, stable, decoded: a candidate revision.
    Ready {
        /// Its hash.
        hash: String,
        /// Its objects.
        objects: Vec<Resource>,
    },
    /// Complete and stable but without objects.
    Empty,
    /// Does not decode, or cannot be read (the message is bounded).
    Invalid(String),
    /// The file is gone.
    Gone,
}

/// Per-file memory between syncs.
#[derive(Debug, Default)]
pub struct Tracked {
    /// The revision in force.
    pub in_force: Option<Revision>,
    /// New content first seen at: (hash, when).
    pending: Option<(String, Instant)>,
    /// Stable content already judged Empty or Invalid, not decoded again.
    rejected: Option<(String, Reading)>,
}

/// Hex SHA-256 prefix.
pub fn content_hash(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Tracked {
    /// Forgets judged content, so the next read decodes everything again.
    pub fn forget_judgements(&mut self) {
        self.rejected = None;
    }

    /// Reads the file at `path` (named `rel` in messages).
    pub fn read(&mut self, path: &Path, rel: &str, settle: Duration, now: Instant) -> Reading {
        let snap = match safe_read::read_regular(path, manifest::MAX_FILE_BYTES) {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Reading::Gone,
            Err(e @ ReadError::TooLarge { .. }) => return Reading::Invalid(format!("{rel}: {e} (16 MiB)")),
            Err(e) => return Reading::Invalid(format!("{rel}: {e}")),
        };
        if snap.changed_while_read {
            self.pending = None;
            return Reading::Settling { until: now + settle };
        }
        let hash = content_hash(&snap.bytes);
        if self.in_force.as_ref().is_some_and(|r| r.hash == hash) {
            self.pending = None;
            return Reading::Unchanged;
        }
        let since = match &self.pending {
            Some((h, t)) if *h == hash => *t,
            _ => now,
        };
        self.pending = Some((hash.clone(), since));
        let ctime_age = snap.changed_at.and_then(|c| SystemTime::now().duration_since(c).ok());
        let stable = ctime_age.is_some_and(|a| a >= settle) || now.duration_since(since) >= settle;
        if !stable {
            let by_ctime = ctime_age.map(|a| now + (settle - a));
            let by_seen = since + settle;
            return Reading::Settling { until: by_ctime.map_or(by_seen, |c| c.min(by_seen)) };
        }
        if let Some((h, r)) = &self.rejected {
            if *h == hash {
                return r.clone();
            }
        }
        let judged = match manifest::decode(rel, &snap.bytes) {
            Ok(docs) if docs.is_empty() => Reading::Empty,
            Ok(docs) => return Reading::Ready { hash, objects: docs.into_iter().map(|d| d.resource).collect() },
            Err(errs) => {
                let msg: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                Reading::Invalid(super::status::excerpt(&msg.join("\n")))
            }
        };
        self.rejected = Some((hash, judged.clone()));
        judged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: vm-a}\nspec:\n  vmName: VMA\n  serverUnit: ABGSE501\n  state: DEFINED_ONLY\n  memoryMiB: 512\n";

    #[test]
    fn new_content_waits_for_settle_then_is_ready() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("a.yaml");
        std::fs::write(&p, VM).expect("write");
        let mut t = Tracked::default();
        let now = Instant::now();
        let settle = Duration::from_secs(3600);
        assert!(matches!(t.read(&p, "a.yaml", settle, now), Reading::Settling { .. }));
        // The same content, seen again after `settle`, is stable.
        match t.read(&p, "a.yaml", settle, now + settle) {
            Reading::Ready { hash, objects } => {
                assert_eq!(hash, content_hash(VM.as_bytes()));
                assert_eq!(objects.len(), 1);
                t.in_force = Some(Revision { hash, objects, since: String::new() });
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(t.read(&p, "a.yaml", settle, now + settle), Reading::Unchanged));
        // Truncated: new content (empty), settling; once stable, Empty, never Ready.
        std::fs::write(&p, "").expect("truncate");
        assert!(matches!(t.read(&p, "a.yaml", settle, now + settle), Reading::Settling { .. }));
        assert!(matches!(t.read(&p, "a.yaml", settle, now + settle * 2), Reading::Empty));
        // Half a document: Invalid once stable, with a bounded message.
        std::fs::write(&p, &VM[..VM.len() / 2]).expect("half");
        assert!(matches!(t.read(&p, "a.yaml", settle, now + settle * 2), Reading::Settling { .. }));
        assert!(matches!(t.read(&p, "a.yaml", settle, now + settle * 3), Reading::Invalid(_)));
        // Back to the revision in force: unchanged at once.
        std::fs::write(&p, VM).expect("write");
        assert!(matches!(t.read(&p, "a.yaml", settle, now + settle * 3), Reading::Unchanged));
        std::fs::remove_file(&p).expect("rm");
        assert!(matches!(t.read(&p, "a.yaml", settle, now), Reading::Gone));
    }

    #[test]
    fn an_old_file_is_stable_at_once() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("a.yaml");
        std::fs::write(&p, VM).expect("write");
        let mut t = Tracked::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(matches!(t.read(&p, "a.yaml", Duration::from_millis(20), Instant::now()), Reading::Ready { .. }));
    }
}
