//! Watch-folder GitOps: `sectl serve --watch DIR` makes the store match the manifests
//! under DIR, at start, on every change and on a period.
//!
//! Each file has a *revision in force*: its last content that was complete, stable,
//! valid and applied (`revision.rs`). A file being written, empty, truncated or
//! unreadable keeps its revision in force, and `get sources` says so
//! (`status.rs`): absence is not deletion. Only regular files are read, never links
//! (unless `--follow-links-inside`), FIFOs or devices (`scan.rs`, `crate::safe_read`).
//! Each object remembers its file in the `sectl.io/source` annotation. With
//! `--prune`, an object in no file's revision in force is deleted after a grace
//! period, and a sync that would delete more than a share of the folder's objects is
//! held for a person to confirm (`prune.rs`). Objects applied by hand are never
//! pruned. An object changed or deleted by hand is set back to its file (drift);
//! status is never drift, and neither is a VM moved by a live migration.
//! `watch.rs` runs the loop (debounced notify events, bounded).

mod prune;
mod revision;
mod scan;
mod status;
#[cfg(test)]
mod tests;
mod watch;

pub use prune::{parse_share, PrunePolicy};
pub use status::{excerpt, ConfirmError, FileState, PruneStatus, SourceStatus, Sources};
pub use watch::run;

use crate::api::{Kind, Resource};
use crate::store::{ApplyOutcome, Event, EventType, Store};
use prune::{Key, Pruner};
use revision::{Reading, Revision, Tracked};
use scan::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Annotation naming the file (relative to the watched folder) an object came from.
pub const SOURCE_ANNOTATION: &str = "sectl.io/source";

/// Settings of the GitOps loop (flags of `sectl serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Delete objects whose file or document is gone (`--prune`).
    pub prune: bool,
    /// Grace period and largest share pruned without confirmation.
    pub policy: PrunePolicy,
    /// How long new content must be stable before it is read as complete.
    pub settle: Duration,
    /// Read links whose target is a regular file inside the folder.
    pub follow_links_inside: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            prune: false,
            policy: PrunePolicy { grace: DEFAULT_PRUNE_GRACE, max_share: DEFAULT_PRUNE_MAX_SHARE },
            settle: DEFAULT_SETTLE,
            follow_links_inside: false,
        }
    }
}

/// Default `--prune-grace`.
pub const DEFAULT_PRUNE_GRACE: Duration = Duration::from_secs(5);
/// Default `--prune-max-share`.
pub const DEFAULT_PRUNE_MAX_SHARE: f64 = 0.5;
/// Default `--settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// The sync engine for one folder.
pub struct GitOps {
    dir: PathBuf,
    opts: Options,
    store: Arc<dyn Store>,
    /// What `get sources` shows.
    pub sources: Sources,
    /// Confirmations from the API, served by the loop.
    confirm_rx: Option<tokio::sync::mpsc::Receiver<status::ConfirmRequest>>,
    /// Per file (relative path).
    files: BTreeMap<String, Tracked>,
    /// Spec (as JSON) last applied per object, to tell drift from file edits.
    last_desired: HashMap<Key, serde_json::Value>,
    pruner: Pruner,
    /// The folder could not be listed at the last sync (reported once).
    unreadable: bool,
    /// The user the folder is applied as (`serve --as`).
    actor: crate::auth::Actor,
    /// Refusals already recorded (object -> the spec refused), so a resync of the
    /// same refused file does not record it again.
    denied_seen: HashMap<Key, serde_json::Value>,
    /// The last failed apply's message (recorded once until it changes).
    last_failure: Option<String>,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Files listed (read or skipped).
    pub files: usize,
    /// Files not Applied (in progress, empty, invalid, conflicting, skipped).
    pub not_applied: usize,
    /// Objects created.
    pub created: usize,
    /// Objects updated (file edits).
    pub configured: usize,
    /// Objects set back to their file after a change by hand.
    pub drift: usize,
    /// Objects deleted because they are in no file any more.
    pub pruned: Vec<String>,
    /// Objects in no file, not (yet) deleted.
    pub absent: usize,
    /// A prune is held for confirmation.
    pub held: bool,
    /// Sync again at this time (a file settles, a grace ends).
    pub next_wake: Option<Instant>,
}

/// A file's outcome during one sync.
struct FileLine {
    state: FileState,
    message: String,
    /// A candidate revision (new content) not yet in force.
    candidate: Option<Revision>,
}

impl GitOps {
    /// A sync engine for `dir`.
    pub fn new(dir: PathBuf, opts: Options, store: Arc<dyn Store>) -> GitOps {
        if opts.prune && opts.policy.grace < opts.settle {
            tracing::warn!(
                "--prune-grace {} is shorter than --settle {}: a renamed file's objects may be pruned \
                 before its new name settles",
                humantime::format_duration(opts.policy.grace),
                humantime::format_duration(opts.settle)
            );
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        GitOps {
            dir,
            pruner: Pruner::new(opts.policy),
            opts,
            store,
            sources: Sources::new(tx),
            confirm_rx: Some(rx),
            actor: crate::auth::Actor { user: crate::auth::User::local_admin(), source: crate::auth::Source::Gitops },
            denied_seen: HashMap::new(),
            last_failure: None,
            files: BTreeMap::new(),
            last_desired: HashMap::new(),
            unreadable: false,
        }
    }

    /// The watched folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Records a warning about the folder (an event on `Source/DIR`).
    pub fn report_warning(&self, reason: &str, message: String) {
        self.event(EventType::Warning, format!("Source/{}", self.dir.display()), reason, message);
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

    /// Forgets which contents were judged invalid or empty (a full rescan).
    pub fn forget_judgements(&mut self) {
        self.files.values_mut().for_each(Tracked::forget_judgements);
    }

    /// Reads one listed entry into a line.
    fn read_entry(&mut self, e: &Entry, now: Instant, next_wake: &mut Option<Instant>) -> Option<FileLine> {
        let line = |state, message: String| FileLine { state, message, candidate: None };
        match e {
            Entry::Skipped { reason, .. } => Some(line(FileState::Skipped, reason.clone())),
            Entry::File { rel, path } => {
                let t = self.files.entry(rel.clone()).or_default();
                match t.read(path, rel, self.opts.settle, now) {
                    Reading::Gone => None,
                    Reading::Unchanged => Some(line(FileState::Applied, String::new())),
                    Reading::Settling { until } => {
                        *next_wake = Some(next_wake.map_or(until, |w| w.min(until)));
                        Some(line(FileState::InProgress, "being written; waits until it is stable".into()))
                    }
                    Reading::Empty => Some(line(FileState::Empty, "no objects in the file".into())),
                    Reading::Invalid(m) => Some(line(FileState::Invalid, m)),
                    Reading::Ready { hash, objects } => {
                        let objects = objects
                            .into_iter()
                            .map(|mut o| {
                                o.meta_mut().annotations.0.insert(SOURCE_ANNOTATION.to_string(), rel.clone());
                                // The file is the desired state: a resourceVersion in it (a
                                // manifest exported with `get -o yaml`) would make every
                                // later sync a conflict.
                                o.meta_mut().resource_version = None;
                                o
                            })
                            .collect();
                        let since = crate::store::now_rfc3339();
                        Some(FileLine {
                            state: FileState::Applied,
                            message: String::new(),
                            candidate: Some(Revision { hash, objects, since }),
                        })
                    }
                }
            }
        }
    }

    /// The objects each file would have in force, candidates taking their place.
    fn desired(&self, lines: &BTreeMap<String, FileLine>) -> Vec<(String, Resource)> {
        let mut out = Vec::new();
        for (rel, t) in &self.files {
            let rev = lines.get(rel).and_then(|l| l.candidate.as_ref()).or(t.in_force.as_ref());
            for o in rev.map(|r| r.objects.as_slice()).unwrap_or_default() {
                out.push((rel.clone(), o.clone()));
            }
        }
        out
    }

    /// Rejects candidates whose objects are also in another file's revision.
    fn reject_clashes(&self, lines: &mut BTreeMap<String, FileLine>) {
        let mut owner: HashMap<Key, String> = HashMap::new();
        for (rel, t) in &self.files {
            if lines.get(rel).is_some_and(|l| l.candidate.is_some()) {
                continue;
            }
            for o in t.in_force.iter().flat_map(|r| &r.objects) {
                owner.insert((o.kind(), o.name().to_string()), rel.clone());
            }
        }
        for (rel, l) in lines.iter_mut() {
            let Some(c) = &l.candidate else { continue };
            let clash = c.objects.iter().find_map(|o| {
                let k = (o.kind(), o.name().to_string());
                owner.get(&k).filter(|f| *f != rel).map(|f| format!("{}/{} is also in {f}", k.0, k.1))
            });
            match clash {
                Some(m) => {
                    l.state = FileState::Conflict;
                    l.message = m;
                    l.candidate = None;
                }
                None => {
                    for o in &c.objects {
                        owner.insert((o.kind(), o.name().to_string()), rel.clone());
                    }
                }
            }
        }
    }

    /// Checks the whole desired set; a candidate with a problem is rejected (its file
    /// keeps its revision in force), a revision in force with a problem is not applied
    /// this time. Returns the objects to apply.
    fn check(&self, lines: &mut BTreeMap<String, FileLine>) -> Vec<(String, Resource)> {
        let servers = self.store.list(Kind::SEServer).map(|(s, _)| s).unwrap_or_default();
        // A rejected candidate changes the set: check again (a few rounds at most).
        for _ in 0..4 {
            let desired = self.desired(lines);
            let objs: Vec<Resource> = desired.iter().map(|(_, o)| o.clone()).collect();
            let problems = crate::api::validate::check_set(&objs, &servers);
            let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for p in &problems {
                let (file, o) = &desired[p.index];
                bad.entry(file.clone()).or_default().push(format!(
                    "{file}: {} {}: {}: {}",
                    o.kind(),
                    o.name(),
                    p.path,
                    p.message
                ));
            }
            let mut rejected_candidate = false;
            for (file, msgs) in &bad {
                if let Some(l) = lines.get_mut(file) {
                    rejected_candidate |= l.candidate.take().is_some();
                    l.state = FileState::Invalid;
                    l.message = excerpt(&msgs.join("\n"));
                }
            }
            if !rejected_candidate {
                return desired.into_iter().filter(|(f, _)| !bad.contains_key(f)).collect();
            }
        }
        Vec::new()
    }

    /// Applies the folder as `actor` (`serve --as USER`; default admin).
    pub fn acting_as(mut self, actor: crate::auth::Actor) -> GitOps {
        self.actor = actor;
        self
    }

    /// The objects the acting user may apply, with their audit targets; refusals are
    /// recorded (once per refused spec) and reported as events.
    fn permitted(&mut self, apply: Vec<(String, Resource)>) -> (Vec<(String, Resource)>, Vec<crate::auth::Target>) {
        use crate::auth::{Outcome, Verb};
        let mut ok = Vec::new();
        let mut targets = Vec::new();
        for (file, o) in apply {
            let t = crate::auth::target_of(self.store.as_ref(), &o);
            match crate::auth::decide(&self.actor.user, Verb::Apply, &t) {
                Ok(()) => {
                    self.denied_seen.remove(&(o.kind(), o.name().to_string()));
                    ok.push((file, o));
                    targets.push(t);
                }
                Err(d) => {
                    let key = (o.kind(), o.name().to_string());
                    if self.denied_seen.get(&key) == Some(&o.spec_json()) {
                        continue;
                    }
                    self.denied_seen.insert(key, o.spec_json());
                    let draft = self.actor.draft(Verb::Apply, &t, Outcome::Denied, format!("missing {}", d.missing));
                    if let Err(e) = crate::auth::audit::append(self.store.as_ref(), vec![draft]) {
                        tracing::error!("audit log: {e}");
                    }
                    let msg = format!("{} in {file} not applied: {d}", o.key());
                    tracing::warn!("{msg}");
                    self.event(EventType::Warning, o.key(), "GitOpsDenied", msg);
                }
            }
        }
        (ok, targets)
    }

    /// Records what an apply changed (created/configured objects) or its failure
    /// (once per message).
    fn record_apply(
        &mut self,
        targets: &[crate::auth::Target],
        results: &Result<Vec<(ApplyOutcome, Resource)>, crate::store::StoreError>,
    ) -> Result<(), String> {
        use crate::auth::{Outcome, Verb};
        let drafts: Vec<crate::auth::Draft> = match results {
            Ok(done) => {
                self.last_failure = None;
                targets
                    .iter()
                    .zip(done)
                    .filter(|(_, (o, _))| *o != ApplyOutcome::Unchanged)
                    .map(|(t, (o, _))| self.actor.draft(Verb::Apply, t, Outcome::Ok, o.to_string()))
                    .collect()
            }
            Err(e) if self.last_failure.as_deref() != Some(&e.to_string()) => {
                self.last_failure = Some(e.to_string());
                let reason = crate::auth::short(&e.to_string());
                targets.iter().map(|t| self.actor.draft(Verb::Apply, t, Outcome::of(e), reason.clone())).collect()
            }
            Err(_) => Vec::new(),
        };
        crate::auth::audit::append(self.store.as_ref(), drafts).map(|_| ()).map_err(|e| format!("audit log: {e}"))
    }

    /// Applies the desired objects; counts outcomes and reports drift.
    fn apply(&mut self, apply: Vec<(String, Resource)>, report: &mut SyncReport) -> Result<(), String> {
        let (apply, targets) = self.permitted(apply);
        // Drift: the file did not change since we applied it, but the object did (or
        // was deleted by hand).
        let mut drifted = Vec::new();
        for (_, o) in &apply {
            let key = (o.kind(), o.name().to_string());
            if let (Some(prev), Ok(cur)) = (self.last_desired.get(&key), self.store.get(key.0, &key.1)) {
                if *prev == o.spec_json() && cur.as_ref().is_none_or(|c| !c.spec_eq(o)) {
                    drifted.push((o.key(), cur.is_none()));
                }
            }
        }
        let objs: Vec<Resource> = apply.iter().map(|(_, o)| o.clone()).collect();
        let results = self.store.apply(objs, false);
        self.record_apply(&targets, &results)?;
        let results = results.map_err(|e| e.to_string())?;
        for (outcome, r) in &results {
            match outcome {
                ApplyOutcome::Created | ApplyOutcome::Configured if drifted.iter().any(|(k, _)| *k == r.key()) => {
                    report.drift += 1
                }
                ApplyOutcome::Created => report.created += 1,
                ApplyOutcome::Configured => report.configured += 1,
                ApplyOutcome::Unchanged => {}
            }
        }
        for (_, o) in &apply {
            self.last_desired.insert((o.kind(), o.name().to_string()), o.spec_json());
        }
        for (key, deleted) in &drifted {
            let what = if *deleted {
                "deleted by hand; created again from its file"
            } else {
                "changed by hand; set back to its file"
            };
            self.event(EventType::Warning, key.clone(), "DriftCorrected", format!("{key} was {what}"));
        }
        Ok(())
    }

    /// Objects of the folder in the store, and those of them in no revision in force.
    /// Objects whose file exists but has no revision in force yet (being written at
    /// start) count as present.
    fn absent(&self, listed: &BTreeSet<String>) -> (usize, BTreeSet<Key>) {
        let keep: BTreeSet<Key> = self
            .files
            .values()
            .flat_map(|t| t.in_force.iter().flat_map(|r| &r.objects))
            .map(|o| (o.kind(), o.name().to_string()))
            .collect();
        let mut total = 0;
        let mut absent = BTreeSet::new();
        for k in Kind::ALL {
            let Ok((objs, _)) = self.store.list(*k) else { continue };
            for o in objs {
                let Some(src) = o.meta().annotations.0.get(SOURCE_ANNOTATION) else { continue };
                total += 1;
                let key = (o.kind(), o.name().to_string());
                let file_without_revision =
                    listed.contains(src) && self.files.get(src).is_none_or(|t| t.in_force.is_none());
                if !keep.contains(&key) && !file_without_revision {
                    absent.insert(key);
                }
            }
        }
        (total, absent)
    }

    /// Deletes what the plan says, with an event each.
    fn prune(&mut self, keys: &[Key], report: &mut SyncReport) {
        for key in keys {
            let Ok(Some(o)) = self.store.get(key.0, &key.1) else { continue };
            let Some(src) = o.meta().annotations.0.get(SOURCE_ANNOTATION).cloned() else { continue };
            if !self.may_prune(&o) {
                continue;
            }
            let t = crate::auth::target_of(self.store.as_ref(), &o);
            let deleted = self.store.delete(key.0, &key.1);
            if let Ok(_) | Err(crate::store::StoreError::NotFound { .. }) = &deleted {
                let r = self.actor.record(
                    self.store.as_ref(),
                    crate::auth::Verb::Delete,
                    &[t],
                    crate::auth::Outcome::Ok,
                    "pruned",
                );
                if let Err(e) = r {
                    tracing::error!("audit log: {e}");
                }
            }
            if deleted.is_ok() {
                report.pruned.push(o.key());
                self.last_desired.remove(key);
                let msg = format!("{} deleted: it is in no file of the folder any more (last in {src})", o.key());
                tracing::info!("{msg}");
                self.event(EventType::Normal, o.key(), "Pruned", msg);
            }
        }
    }

    /// Whether the acting user may delete `o` (a refusal is recorded once).
    fn may_prune(&mut self, o: &Resource) -> bool {
        use crate::auth::{Outcome, Verb};
        let t = crate::auth::target_of(self.store.as_ref(), o);
        let Err(d) = crate::auth::decide(&self.actor.user, Verb::Delete, &t) else { return true };
        let key = (o.kind(), o.name().to_string());
        if self.denied_seen.get(&key) != Some(&serde_json::Value::Null) {
            self.denied_seen.insert(key, serde_json::Value::Null);
            let draft = self.actor.draft(Verb::Delete, &t, Outcome::Denied, format!("missing {}", d.missing));
            if let Err(e) = crate::auth::audit::append(self.store.as_ref(), vec![draft]) {
                tracing::error!("audit log: {e}");
            }
            self.event(EventType::Warning, o.key(), "GitOpsDenied", format!("{} not pruned: {d}", o.key()));
        }
        false
    }

    /// Decides pruning and returns its line for `get sources`.
    fn prune_step(&mut self, listed: &BTreeSet<String>, now: Instant, report: &mut SyncReport) -> PruneStatus {
        let (total, absent) = self.absent(listed);
        let names = |ks: &[Key]| ks.iter().map(|(k, n)| format!("{k}/{n}")).collect::<Vec<_>>();
        let mut st = PruneStatus { state: "None".into(), folder_objects: total, ..Default::default() };
        if !self.opts.prune {
            report.absent = absent.len();
            if !absent.is_empty() {
                st.state = "Disabled".into();
                st.objects = names(&absent.into_iter().collect::<Vec<_>>());
                st.message = "in no file any more; kept (the server runs without --prune)".into();
            }
            return st;
        }
        let plan = self.pruner.plan(&absent, total, now);
        self.prune(&plan.delete, report);
        let left: Vec<Key> = plan.absent.into_iter().filter(|k| !plan.delete.contains(k)).collect();
        report.absent = left.len();
        report.held = plan.held;
        report.next_wake = match (report.next_wake, plan.next_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        st.objects = names(&left);
        if plan.held {
            st.state = "Held".into();
            st.message = format!(
                "{} of the folder's {total} objects are in no file any more: more than --prune-max-share {:.0}%; \
                 nothing is deleted until `sectl sources prune --confirm`",
                left.len(),
                self.opts.policy.max_share * 100.0
            );
            if plan.newly_held {
                tracing::warn!("{}", st.message);
                self.event(
                    EventType::Warning,
                    format!("Source/{}", self.dir.display()),
                    "PruneHeld",
                    st.message.clone(),
                );
            }
        } else if !left.is_empty() {
            st.state = "Pending".into();
            st.message = format!(
                "in no file any more; deleted once absent for --prune-grace {}",
                humantime::format_duration(self.opts.policy.grace)
            );
        }
        st
    }

    /// Confirms a held prune: deletes the held objects still in no file.
    pub fn confirm_prune(&mut self) -> Result<Vec<String>, ConfirmError> {
        if !self.opts.prune {
            return Err(ConfirmError::PruneDisabled);
        }
        if !self.pruner.confirm() {
            let pending = self.sources.pending_prunes();
            let why = if pending == 0 {
                String::new()
            } else {
                format!("; {pending} objects are in their --prune-grace and are deleted when it ends")
            };
            return Err(ConfirmError::NothingHeld(why));
        }
        Ok(self.sync().pruned)
    }

    /// Reads the folder and makes the store match it.
    pub fn sync(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let now = Instant::now();
        let now_text = crate::store::now_rfc3339();
        let entries = match scan::scan(&self.dir, self.opts.follow_links_inside) {
            Ok(e) => {
                self.unreadable = false;
                e
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
        let mut lines: BTreeMap<String, FileLine> = BTreeMap::new();
        let mut next_wake = None;
        for e in &entries {
            if let Some(l) = self.read_entry(e, now, &mut next_wake) {
                lines.insert(e.rel().to_string(), l);
            }
        }
        report.next_wake = next_wake;
        report.files = lines.len();
        // A file that is gone releases its revision (its objects become absent).
        self.files.retain(|rel, _| lines.contains_key(rel));
        self.reject_clashes(&mut lines);
        let apply = self.check(&mut lines);
        if let Err(e) = self.apply(apply, &mut report) {
            tracing::error!(error = %e, "gitops apply failed; nothing applied");
            for l in lines.values_mut().filter(|l| l.state == FileState::Applied) {
                l.state = FileState::Invalid;
                l.message = format!("apply failed, nothing written: {}", excerpt(&e));
                l.candidate = None;
            }
        }
        // Candidates that were applied are now in force.
        for (rel, l) in lines.iter_mut() {
            if let (Some(c), Some(t)) = (l.candidate.take(), self.files.get_mut(rel)) {
                t.in_force = Some(c);
            }
        }
        let listed: BTreeSet<String> = lines.keys().cloned().collect();
        let prune = self.prune_step(&listed, now, &mut report);
        self.publish(lines, prune, &now_text, &mut report);
        tracing::info!(
            files = report.files,
            not_applied = report.not_applied,
            created = report.created,
            configured = report.configured,
            drift = report.drift,
            pruned = report.pruned.len(),
            absent = report.absent,
            held = report.held,
            "sync"
        );
        report
    }

    /// Publishes the lines, reporting each new problem once (log and event).
    fn publish(&self, lines: BTreeMap<String, FileLine>, prune: PruneStatus, now: &str, report: &mut SyncReport) {
        let previous = self.sources.files();
        let mut out = BTreeMap::new();
        for (rel, l) in lines {
            let rev = self.files.get(&rel).and_then(|t| t.in_force.as_ref());
            let s = SourceStatus {
                file: rel.clone(),
                state: l.state,
                objects: rev.map(|r| r.objects.iter().map(|o| o.key()).collect()).unwrap_or_default(),
                revision: rev.map(|r| r.hash.clone()).unwrap_or_default(),
                revision_since: rev.map(|r| r.since.clone()).unwrap_or_default(),
                message: l.message,
                last_sync: now.to_string(),
            };
            let reportable =
                matches!(s.state, FileState::Invalid | FileState::Conflict | FileState::Skipped | FileState::Empty);
            if reportable && previous.get(&rel).is_none_or(|b| b.message != s.message || b.state != s.state) {
                let text =
                    if s.message.starts_with(&rel) { s.message.clone() } else { format!("{rel}: {}", s.message) };
                tracing::warn!(file = %rel, "{}", s.message);
                let reason = match s.state {
                    FileState::Skipped => "SourceSkipped",
                    FileState::Empty => "SourceEmpty",
                    _ => "SourceInvalid",
                };
                self.event(EventType::Warning, format!("Source/{rel}"), reason, text);
            }
            out.insert(rel, s);
        }
        report.not_applied = out.values().filter(|s| s.state != FileState::Applied).count();
        self.sources.publish(out, prune);
    }
}
