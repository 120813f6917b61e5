//! Watch-directory GitOps: `sectl serve --watch DIR` applies every manifest under DIR
//! at start, on every change (debounced), and on a period. A file that fails
//! validation applies nothing and is reported (log line, event, `sectl get sources`)
//! while the other files still apply. Each object remembers its file in the
//! `sectl.io/source` annotation; with `--prune`, objects whose file (or document) is
//! gone are deleted — only those, never objects applied by hand; a folder that cannot
//! be listed (removed, unmounted) syncs nothing rather than pruning everything. An
//! object changed (or deleted) by hand is set back to its file and that is reported as
//! drift. Status is never drift, and neither is a VM moved by a live migration (its
//! spec does not change).

use crate::api::{Kind, Resource};
use crate::manifest;
use crate::store::{ApplyOutcome, Event, EventType, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Annotation naming the file (relative to the watched folder) an object came from.
pub const SOURCE_ANNOTATION: &str = "sectl.io/source";

/// Per-file status, shared with the API (`sectl get sources`).
pub type Sources = Arc<Mutex<BTreeMap<String, SourceStatus>>>;

/// How one file fared at the last sync.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// File, relative to the watched folder.
    pub file: String,
    /// Applied, Invalid or Conflict.
    pub state: String,
    /// Objects from the file, as Kind/name.
    pub objects: Vec<String>,
    /// Errors (file:line:col: path: message) or a summary.
    pub message: String,
    /// When the file was last synced (wall time, RFC 3339).
    pub last_sync: String,
}

/// The sync engine for one folder.
pub struct GitOps {
    dir: PathBuf,
    prune: bool,
    store: Arc<dyn Store>,
    /// Per-file status.
    pub sources: Sources,
    /// Spec (as JSON) last applied per object, to tell drift from file edits.
    last_desired: HashMap<(Kind, String), serde_json::Value>,
    /// Objects per file at its last good sync (kept while the file is invalid).
    last_good: HashMap<String, Vec<(Kind, String)>>,
    /// The folder could not be listed at the last sync (reported once).
    unreadable: bool,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Files read.
    pub files: usize,
    /// Files with errors.
    pub invalid: usize,
    /// Objects created.
    pub created: usize,
    /// Objects updated (file edits).
    pub configured: usize,
    /// Objects set back to their file after a change by hand.
    pub drift: usize,
    /// Objects deleted because their file or document is gone.
    pub pruned: usize,
    /// Objects that would be pruned without --prune.
    pub orphaned: usize,
}

fn mtime_and_len(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl GitOps {
    /// A sync engine for `dir`.
    pub fn new(dir: PathBuf, prune: bool, store: Arc<dyn Store>) -> GitOps {
        GitOps {
            dir,
            prune,
            store,
            sources: Arc::new(Mutex::new(BTreeMap::new())),
            last_desired: HashMap::new(),
            last_good: HashMap::new(),
            unreadable: false,
        }
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.dir).unwrap_or(p).to_string_lossy().to_string()
    }

    fn event(&self, type_: EventType, object: String, reason: &str, message: String) {
        let _ = self.store.record_event(Event {
            seq: 0,
            time: crate::store::now_rfc3339(),
            type_,
            priority: if type_ == EventType::Warning { "WARNING" } else { "INFO" }.into(),
            component: "GitOps".into(),
            object,
            reason: reason.into(),
            message,
            acknowledged: false,
        });
    }

    /// Lists the manifest files once they have stopped changing (a file being written
    /// is never read half-way: its size or time must hold still for a moment).
    ///
    /// A folder that cannot be listed is an error, not an empty folder: read as empty,
    /// it would prune every object that came from it.
    fn stable_files(&self) -> std::io::Result<Vec<PathBuf>> {
        for _ in 0..20 {
            let files = manifest::collect_files(&self.dir)?;
            let before: Vec<_> = files.iter().map(|f| mtime_and_len(f)).collect();
            std::thread::sleep(Duration::from_millis(30));
            let again = manifest::collect_files(&self.dir)?;
            let after: Vec<_> = again.iter().map(|f| mtime_and_len(f)).collect();
            if files == again && before == after {
                return Ok(files);
            }
        }
        manifest::collect_files(&self.dir)
    }

    /// Reads the folder and makes the store match it.
    pub fn sync(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let now = crate::store::now_rfc3339();
        let files = match self.stable_files() {
            Ok(f) => {
                self.unreadable = false;
                f
            }
            Err(e) => {
                // Change nothing (above all, prune nothing) until it can be read again.
                let msg = format!("cannot read the watched folder {}: {e}; nothing synced", self.dir.display());
                tracing::error!("{msg}");
                if !self.unreadable {
                    self.event(EventType::Warning, format!("Source/{}", self.dir.display()), "SourceUnreadable", msg);
                    self.unreadable = true;
                }
                return report;
            }
        };
        report.files = files.len();
        let mut statuses: BTreeMap<String, SourceStatus> = BTreeMap::new();
        let mut desired: Vec<(String, Resource)> = Vec::new();
        let mut seen: HashMap<(Kind, String), String> = HashMap::new();
        for f in &files {
            let rel = self.rel(f);
            let docs = match manifest::read_file(f) {
                Ok(d) => d,
                Err(errs) => {
                    let msg: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                    statuses.insert(
                        rel.clone(),
                        SourceStatus {
                            file: rel,
                            state: "Invalid".into(),
                            objects: vec![],
                            message: msg.join("\n"),
                            last_sync: now.clone(),
                        },
                    );
                    continue;
                }
            };
            let mut objs = Vec::new();
            let mut clash = None;
            for d in docs {
                let key = (d.resource.kind(), d.resource.name().to_string());
                if let Some(other) = seen.get(&key) {
                    clash = Some(format!("{}/{} is also in {other}", key.0, key.1));
                }
                objs.push(d.resource);
            }
            if let Some(c) = clash {
                statuses.insert(
                    rel.clone(),
                    SourceStatus {
                        file: rel,
                        state: "Conflict".into(),
                        objects: vec![],
                        message: c,
                        last_sync: now.clone(),
                    },
                );
                continue;
            }
            let names: Vec<String> = objs.iter().map(|o| o.key()).collect();
            for mut o in objs {
                seen.insert((o.kind(), o.name().to_string()), rel.clone());
                o.meta_mut().annotations.0.insert(SOURCE_ANNOTATION.to_string(), rel.clone());
                // The file is the desired state: a resourceVersion in it (a manifest
                // exported with `get -o yaml`) would make every later sync a conflict,
                // and the whole sync, every other file's included, would fail.
                o.meta_mut().resource_version = None;
                desired.push((rel.clone(), o));
            }
            statuses.insert(
                rel.clone(),
                SourceStatus {
                    file: rel,
                    state: "Applied".into(),
                    objects: names,
                    message: String::new(),
                    last_sync: now.clone(),
                },
            );
        }
        // Checks across files and against the store: a file with a problem applies nothing.
        let servers = self.store.list(Kind::SEServer).map(|(s, _)| s).unwrap_or_default();
        let objs: Vec<Resource> = desired.iter().map(|(_, o)| o.clone()).collect();
        let problems = crate::api::validate::check_set(&objs, &servers);
        let mut bad_files: HashSet<String> = HashSet::new();
        for p in &problems {
            let (file, o) = &desired[p.index];
            bad_files.insert(file.clone());
            if let Some(s) = statuses.get_mut(file) {
                s.state = "Invalid".into();
                if !s.message.is_empty() {
                    s.message.push('\n');
                }
                s.message.push_str(&format!("{file}: {} {}: {}: {}", o.kind(), o.name(), p.path, p.message));
            }
        }
        desired.retain(|(f, _)| !bad_files.contains(f));
        for s in statuses.values_mut().filter(|s| s.state != "Applied") {
            s.objects.clear();
        }
        // Drift: the file did not change since we applied it, but the object did (or
        // was deleted by hand).
        let mut drifted = Vec::new();
        for (_, o) in &desired {
            let key = (o.kind(), o.name().to_string());
            if let (Some(prev), Ok(cur)) = (self.last_desired.get(&key), self.store.get(key.0, &key.1)) {
                if *prev == o.spec_json() && cur.as_ref().is_none_or(|c| !c.spec_eq(o)) {
                    drifted.push((o.key(), cur.is_none()));
                }
            }
        }
        let objs: Vec<Resource> = desired.iter().map(|(_, o)| o.clone()).collect();
        match self.store.apply(objs, false) {
            Ok(results) => {
                for (outcome, r) in &results {
                    match outcome {
                        ApplyOutcome::Created | ApplyOutcome::Configured
                            if drifted.iter().any(|(k, _)| *k == r.key()) =>
                        {
                            report.drift += 1
                        }
                        ApplyOutcome::Created => report.created += 1,
                        ApplyOutcome::Configured => report.configured += 1,
                        ApplyOutcome::Unchanged => {}
                    }
                }
                for (_, o) in &desired {
                    self.last_desired.insert((o.kind(), o.name().to_string()), o.spec_json());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "gitops apply failed; nothing applied");
                for s in statuses.values_mut().filter(|s| s.state == "Applied") {
                    s.state = "Invalid".into();
                    s.message = format!("apply failed, nothing written: {e}");
                }
                desired.clear();
                // Nothing was set back.
                drifted.clear();
            }
        }
        for (key, deleted) in &drifted {
            let what = if *deleted {
                "deleted by hand; created again from its file"
            } else {
                "changed by hand; set back to its file"
            };
            self.event(EventType::Warning, key.clone(), "DriftCorrected", format!("{key} was {what}"));
        }
        // Remember each good file's objects; an invalid file keeps its previous ones.
        for (file, s) in &statuses {
            if s.state == "Applied" {
                let keys =
                    desired.iter().filter(|(f, _)| f == file).map(|(_, o)| (o.kind(), o.name().to_string())).collect();
                self.last_good.insert(file.clone(), keys);
            }
        }
        self.last_good.retain(|f, _| statuses.contains_key(f));
        let keep: HashSet<(Kind, String)> = self.last_good.values().flatten().cloned().collect();
        // Objects from this folder whose file or document is gone.
        for k in Kind::ALL {
            let Ok((objs, _)) = self.store.list(*k) else { continue };
            for o in objs {
                let Some(src) = o.meta().annotations.0.get(SOURCE_ANNOTATION) else { continue };
                let key = (o.kind(), o.name().to_string());
                if keep.contains(&key) || desired.iter().any(|(_, d)| d.kind() == key.0 && d.name() == key.1) {
                    continue;
                }
                if statuses.get(src).is_some_and(|s| s.state != "Applied") {
                    continue;
                }
                if self.prune {
                    if self.store.delete(key.0, &key.1).is_ok() {
                        report.pruned += 1;
                        self.last_desired.remove(&key);
                        self.event(
                            EventType::Normal,
                            o.key(),
                            "Pruned",
                            format!("{} deleted: it is no longer in {src}", o.key()),
                        );
                    }
                } else {
                    report.orphaned += 1;
                }
            }
        }
        // Report newly invalid files once.
        let previous = self.sources.lock().map(|m| m.clone()).unwrap_or_default();
        for s in statuses.values() {
            let before = previous.get(&s.file);
            if s.state != "Applied" && before.is_none_or(|b| b.message != s.message) {
                tracing::warn!(file = %s.file, "{}", s.message);
                self.event(EventType::Warning, format!("Source/{}", s.file), "SourceInvalid", s.message.clone());
            }
        }
        report.invalid = statuses.values().filter(|s| s.state != "Applied").count();
        if let Ok(mut m) = self.sources.lock() {
            *m = statuses;
        }
        tracing::info!(
            files = report.files,
            invalid = report.invalid,
            created = report.created,
            configured = report.configured,
            drift = report.drift,
            pruned = report.pruned,
            orphaned = report.orphaned,
            "sync"
        );
        report
    }
}

/// Runs the watch loop until `stop` fires: sync at start, after each burst of changes
/// (debounced), on a rescan signal, and every `resync`.
pub async fn run(gitops: GitOps, resync: Duration, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    use notify::Watcher;
    let dir = gitops.dir.clone();
    std::fs::create_dir_all(&dir)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // true asks for a full rescan (the OS dropped events).
        let rescan = match &res {
            Ok(ev) => ev.need_rescan(),
            Err(_) => true,
        };
        let _ = tx.send(rescan);
    })?;
    watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
    let gitops = Arc::new(Mutex::new(gitops));
    let sync = |g: Arc<Mutex<GitOps>>| async move {
        let _ = tokio::task::spawn_blocking(move || g.lock().map(|mut g| g.sync()).ok()).await;
    };
    sync(gitops.clone()).await;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                if ev.is_none() { break; }
                // Debounce: wait until 100 ms pass without another event.
                while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {}
                sync(gitops.clone()).await;
            }
            _ = tokio::time::sleep(resync) => {
                sync(gitops.clone()).await;
            }
            _ = stop.changed() => break,
        }
    }
    drop(watcher);
    Ok(())
}
