//! What `sectl get sources` (GET /sources) shows of the watched folder: one line per
//! file (its state and the revision in force) and the state of pruning (pending in
//! its grace, held for a person to confirm, or disabled). Also the handle the API uses
//! to confirm a held prune (POST /sources/prune), which the watch loop serves.
//!
//! Every message built from a file's content goes through [`excerpt`], so a file can
//! never put more than a short excerpt of itself into `/sources`, events or the log.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The state of one file of the folder.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum FileState {
    /// The file's current content is the revision in force.
    Applied,
    /// The file changed and has not been stable for `--settle` yet (being written);
    /// the previous revision stays in force.
    InProgress,
    /// The file is complete but holds no object; the previous revision stays in force
    /// (delete the file to remove its objects).
    Empty,
    /// The file does not decode or validate; the previous revision stays in force.
    Invalid,
    /// An object of the file is also in another file; the previous revision stays.
    Conflict,
    /// Not read: a symbolic link, FIFO, socket or device.
    Skipped,
}

/// One file's line.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// File, relative to the watched folder.
    pub file: String,
    /// See [`FileState`].
    pub state: FileState,
    /// Objects of the revision in force, as Kind/name.
    pub objects: Vec<String>,
    /// The revision in force: the first 16 hex digits of its SHA-256 (compare with
    /// `sha256sum FILE`); empty when none is.
    pub revision: String,
    /// When that revision came into force (RFC 3339).
    pub revision_since: String,
    /// Errors (file:line:col: path: message, each an excerpt) or why it was skipped.
    pub message: String,
    /// When the file was last looked at (RFC 3339).
    pub last_sync: String,
}

/// The state of pruning.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PruneStatus {
    /// None, Pending (in the grace period), Held (waits for `sectl sources prune
    /// --confirm`) or Disabled (no --prune: the objects stay).
    pub state: String,
    /// Objects from the folder that are in no file any more.
    pub objects: Vec<String>,
    /// Objects from the folder in the store.
    pub folder_objects: usize,
    /// What will happen.
    pub message: String,
}

/// Why a confirmation was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfirmError {
    /// The server watches no folder.
    #[error("this server watches no folder (sectl serve --watch DIR)")]
    NotWatching,
    /// Pruning is off.
    #[error("this server does not prune (started without --prune)")]
    PruneDisabled,
    /// Nothing to confirm.
    #[error("no prune is held{0}")]
    NothingHeld(String),
    /// Shutting down, or no answer in time.
    #[error("the GitOps loop did not answer: {0}")]
    Unavailable(String),
}

impl ConfirmError {
    /// The HTTP status code and reason for the API.
    pub fn http(&self) -> (u16, &'static str) {
        match self {
            ConfirmError::NotWatching => (404, "NotFound"),
            ConfirmError::PruneDisabled | ConfirmError::NothingHeld(_) => (409, "Conflict"),
            ConfirmError::Unavailable(_) => (503, "Unavailable"),
        }
    }
}

/// A confirmation sent to the watch loop, answered with the objects deleted.
pub type ConfirmRequest = tokio::sync::oneshot::Sender<Result<Vec<String>, ConfirmError>>;

#[derive(Debug, Default)]
struct Shared {
    files: BTreeMap<String, SourceStatus>,
    prune: PruneStatus,
}

/// The shared view, cheap to clone; `Default` is "no folder watched".
#[derive(Clone, Default)]
pub struct Sources {
    shared: Arc<Mutex<Shared>>,
    confirm: Option<tokio::sync::mpsc::Sender<ConfirmRequest>>,
}

/// The longest wait for the watch loop to answer a confirmation.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

impl Sources {
    /// A view whose confirmations go to `confirm`.
    pub fn new(confirm: tokio::sync::mpsc::Sender<ConfirmRequest>) -> Sources {
        Sources { shared: Default::default(), confirm: Some(confirm) }
    }

    /// Replaces the lines after a sync.
    pub fn publish(&self, files: BTreeMap<String, SourceStatus>, prune: PruneStatus) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.files = files;
        s.prune = prune;
    }

    /// The file lines.
    pub fn files(&self) -> BTreeMap<String, SourceStatus> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).files.clone()
    }

    /// Objects waiting for their prune grace, as last published.
    pub fn pending_prunes(&self) -> usize {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if s.prune.state == "Pending" {
            s.prune.objects.len()
        } else {
            0
        }
    }

    /// The body of GET /sources: `{"items": [file lines], "prune": {...}}`.
    pub fn to_json(&self) -> Value {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let items: Vec<&SourceStatus> = s.files.values().collect();
        json!({"items": items, "prune": s.prune})
    }

    /// Confirms the held prune: the watch loop deletes the held objects that are
    /// still in no file, and answers with them.
    pub async fn confirm_prune(&self) -> Result<Vec<String>, ConfirmError> {
        let tx = self.confirm.as_ref().ok_or(ConfirmError::NotWatching)?;
        let (answer, rx) = tokio::sync::oneshot::channel();
        tx.try_send(answer).map_err(|e| ConfirmError::Unavailable(e.to_string()))?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ConfirmError::Unavailable("the loop stopped".into())),
            Err(_) => Err(ConfirmError::Unavailable(format!("no answer within {CONFIRM_TIMEOUT:?}"))),
        }
    }
}

/// Longest line of a message quoted from a file's errors (characters).
pub const EXCERPT_LINE: usize = 200;
/// Most lines of such a message.
pub const EXCERPT_LINES: usize = 10;

/// Bounds a message built from a file's content: at most `EXCERPT_LINES` lines of at
/// most `EXCERPT_LINE` characters each, saying how much was left out.
pub fn excerpt(message: &str) -> String {
    let lines: Vec<&str> = message.lines().collect();
    let mut out: Vec<String> = lines
        .iter()
        .take(EXCERPT_LINES)
        .map(|l| match l.char_indices().nth(EXCERPT_LINE) {
            Some((at, _)) => format!("{}... ({} more characters)", &l[..at], l[at..].chars().count()),
            None => l.to_string(),
        })
        .collect();
    if lines.len() > EXCERPT_LINES {
        out.push(format!("... and {} more lines", lines.len() - EXCERPT_LINES));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_bounds_lines_and_their_length() {
        assert_eq!(excerpt("a\nb"), "a\nb");
        let long = "é".repeat(EXCERPT_LINE + 50);
        let e = excerpt(&long);
        assert!(e.starts_with(&"é".repeat(EXCERPT_LINE)), "{e}");
        assert!(e.ends_with("... (50 more characters)"), "{e}");
        let many: Vec<String> = (0..25).map(|i| format!("line {i}")).collect();
        let e = excerpt(&many.join("\n"));
        assert_eq!(e.lines().count(), EXCERPT_LINES + 1);
        assert!(e.ends_with("... and 15 more lines"), "{e}");
    }
}
