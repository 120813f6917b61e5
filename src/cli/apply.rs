//! The verbs that take manifests: `apply`, `delete`, `diff`, `validate`. Apply is all
//! or nothing; it prints kubectl-style warnings for references that do not resolve and,
//! in embedded mode (where the reconcilers have run when it returns), each migration's
//! and recovery's outcome on its line.

use super::format::{self, Output};
use super::get::emit;
use super::targets::{self, Selectors};
use super::wait::Verdict;
use super::{all_objects, live, load, print_errors, warn, Context, DryRun, UsageError};
use crate::api::{Kind, LiveMigrationSpec, Resource, VMRecoverySpec};
use crate::manifest;
use crate::store::{ApplyOutcome, StoreError};
use anyhow::bail;
use std::process::ExitCode;

/// Examples for `apply --help`.
pub const APPLY_EXAMPLES: &str = "Examples:
  # Apply the example site (a folder, recursively)
  sectl apply -f manifests/

  # From stdin
  cat vm.yaml | sectl apply -f -

  # Check only: locally, or with the store's (server's) own verdict; nothing written
  sectl apply -f manifests/ --dry-run=client
  sectl apply -f manifests/ --dry-run=server

  # Against a server, and wait until everything has converged
  sectl --server https://127.0.0.1:7443 apply -f examples/live-migration.yaml --wait";

/// Examples for `delete --help`.
pub const DELETE_EXAMPLES: &str = "Examples:
  # By kind and name, or KIND/NAME
  sectl delete lm lm-vm12
  sectl delete lm/lm-vm12 rec/rec-vm12

  # What files define
  sectl delete -f examples/live-migration.yaml

  # By selector, or every object of a kind
  sectl delete vm -l app=test
  sectl delete lm --field-selector status.phase=Rejected
  sectl delete lm --all";

/// Examples for `diff --help`.
pub const DIFF_EXAMPLES: &str = "Examples:
  # What applying the site would change (exit 0: nothing, 1: changes, 2: invalid input)
  sectl diff -f manifests/";

/// Examples for `validate --help`.
pub const VALIDATE_EXAMPLES: &str = "Examples:
  # Check a whole site (also warns about references that do not resolve)
  sectl validate -f manifests/

  # One file from stdin
  sectl validate -f - < vm.yaml";

/// `apply` arguments.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Files, folders (recursively, *.yaml/*.yml) or - for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Write nothing: `client` checks locally, `server` asks the store or server for
    /// every outcome. A bare --dry-run means client.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none")]
    pub dry_run: DryRun,
    /// Wait for the objects to converge (with --server; embedded apply always does).
    #[arg(long)]
    pub wait: bool,
    /// Print the resulting objects: json, yaml, name, jsonpath=..., custom-columns=...
    #[arg(short, long, value_name = "FORMAT")]
    pub output: Option<Output>,
}

/// `delete` arguments.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// KIND NAME..., KIND/NAME..., or KIND with -l, --field-selector or --all.
    #[arg(value_name = "RESOURCE")]
    pub resources: Vec<String>,
    /// Files or folders whose objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Every object of the kind.
    #[arg(long)]
    pub all: bool,
    /// Succeed when an object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Show what would be deleted; delete nothing.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none")]
    pub dry_run: DryRun,
}

/// `diff` arguments.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Files, folders or -.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
}

/// `validate` arguments.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Files, folders or -.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
}

/// What apply would do to `obj`, judged locally (client dry run).
fn client_outcome(current: Option<&Resource>, obj: &Resource) -> ApplyOutcome {
    match current {
        None => ApplyOutcome::Created,
        Some(c)
            if c.spec_eq(obj)
                && c.meta().labels == obj.meta().labels
                && c.meta().annotations == obj.meta().annotations =>
        {
            ApplyOutcome::Unchanged
        }
        Some(_) => ApplyOutcome::Configured,
    }
}

/// Writes `objs` (or not, by `dry_run`); Ok(None) after a conflict was reported.
pub fn write(
    ctx: &mut Context,
    objs: Vec<Resource>,
    dry_run: DryRun,
) -> anyhow::Result<Option<Vec<(ApplyOutcome, Resource)>>> {
    let store = ctx.store()?;
    let results = match dry_run {
        DryRun::Client => {
            let mut out = Vec::new();
            for o in objs {
                let cur = store.get(o.kind(), o.name())?;
                out.push((client_outcome(cur.as_ref(), &o), o));
            }
            Ok(out)
        }
        DryRun::Server => store.apply(objs, true),
        DryRun::None => store.apply(objs, false),
    };
    match results {
        Ok(r) => {
            if dry_run == DryRun::None {
                ctx.settle()?;
            }
            Ok(Some(r))
        }
        Err(e @ StoreError::Conflict { .. }) => {
            eprintln!("error: {e}");
            eprintln!("nothing was written");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The outcome of a migration or recovery as one phrase: `Possible (VMS2460)`,
/// `Rejected: VMS2437 device 4683 ...`, `Completed (MONJV $T, downtime 512 ms)`.
pub fn request_outcome(r: &Resource) -> Option<String> {
    let first_conflict = |cs: &[crate::api::Conflict]| {
        cs.first().map(|c| {
            let code = c.code.as_deref().map(|x| format!("{x} ")).unwrap_or_default();
            format!(": {code}{}", c.message)
        })
    };
    let message_id = |msgs: &[String], ids: &[&str]| {
        msgs.iter().rev().find_map(|m| ids.iter().find(|id| m.contains(*id)).map(|id| format!(" ({id})")))
    };
    if let Some(o) = r.as_typed::<LiveMigrationSpec>() {
        let st = &o.status;
        let tail = match st.phase {
            crate::api::LmPhase::Rejected | crate::api::LmPhase::Aborted => {
                first_conflict(&st.conflicts).or_else(|| message_id(&st.messages, &["VMS2425", "VMS2461", "VMS2404"]))
            }
            crate::api::LmPhase::Possible => message_id(&st.messages, &["VMS2460"]),
            crate::api::LmPhase::Completed => Some(format!(
                " (MONJV {}, downtime {})",
                st.monjv.as_deref().unwrap_or("-"),
                st.downtime_ms.map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into())
            )),
            _ => None,
        };
        return Some(format!("{}{}", st.phase, tail.unwrap_or_default()));
    }
    let o = r.as_typed::<VMRecoverySpec>()?;
    Some(format!("{}{}", o.status.phase, first_conflict(&o.status.conflicts).unwrap_or_default()))
}

/// `sectl apply`.
pub fn apply(ctx: &mut Context, a: &ApplyArgs) -> anyhow::Result<ExitCode> {
    // Decode first: a file with errors never opens (or locks) the store.
    let decode = crate::timing!("apply.decode").entered();
    let (docs, mut errors) = manifest::read_inputs(&a.files);
    drop(decode);
    if !errors.is_empty() {
        errors.extend(manifest::check_documents(&docs, &[]));
        print_errors(&errors);
        return Ok(ExitCode::from(1));
    }
    let store = crate::timing!("apply.open_store").in_scope(|| ctx.store())?;
    let validate = crate::timing!("apply.validate").entered();
    let servers = all_objects(store, Kind::SEServer)?;
    let errors = manifest::check_documents(&docs, &servers);
    drop(validate);
    if !errors.is_empty() {
        print_errors(&errors);
        return Ok(ExitCode::from(1));
    }
    let objs: Vec<Resource> = docs.into_iter().map(|d| d.resource).collect();
    // What the warnings resolve references against, as stored before the write: the
    // servers (listed above), and the VMs only when a migration or recovery is applied
    // (no other reference names a VM; no other kind is looked up).
    // The applied objects are the results (same specs) unless a migration's check reads
    // a VM's status: then the objects as given (no status), as always.
    let read_stored = crate::timing!("apply.read_stored").entered();
    let mut stored = servers;
    let as_given =
        objs.iter().any(|o| matches!(o.kind(), Kind::LiveMigration | Kind::VMRecovery)).then(|| objs.clone());
    if as_given.is_some() {
        stored.extend(all_objects(store, Kind::VMDefinition)?);
    }
    drop(read_stored);
    let written = crate::timing!("apply.write").in_scope(|| write(ctx, objs, a.dry_run))?;
    let Some(results) = written else { return Ok(ExitCode::from(1)) };
    let _report = crate::timing!("apply.warn_and_report").entered();
    let changed: Vec<&Resource> =
        results.iter().filter(|(o, _)| *o != ApplyOutcome::Unchanged).map(|(_, r)| r).collect();
    if !changed.is_empty() {
        let site = match &as_given {
            Some(objs) => warn::Site::full(&stored, objs),
            None => warn::Site::full(&stored, results.iter().map(|(_, r)| r)),
        };
        warn::print(&changed.iter().flat_map(|r| warn::references(r, &site)).collect::<Vec<_>>());
    }
    let reconcile = ctx.reconcile;
    let store = ctx.store()?;
    let embedded_ran = a.dry_run == DryRun::None && store.remote().is_none() && reconcile;
    if a.wait && a.dry_run == DryRun::None {
        if store.remote().is_some() {
            // With a server: block until the controller has observed every object's
            // generation, and every live migration or recovery has ended.
            for (_, r) in &results {
                let code = live::wait_remote(store, r.kind(), r.name(), 300_000, "converged", |o| match o {
                    None => Verdict::Never("it was deleted".into()),
                    Some(o) => converged(o).map_or_else(Verdict::NotYet, |_| Verdict::Met),
                })?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
            }
        } else if !reconcile {
            return Err(UsageError("--wait and --no-reconcile contradict each other".into()).into());
        }
    }
    let store = ctx.store()?;
    match &a.output {
        Some(f) if !matches!(f, Output::Table | Output::Wide) => {
            // Show the objects as they are now, status included.
            let mut objs = Vec::new();
            for (_, r) in &results {
                objs.push(store.get(r.kind(), r.name())?.unwrap_or_else(|| r.clone()));
            }
            let single = objs.len() == 1;
            emit(&format::render(&[(Kind::SEServer, objs)], f, &Default::default(), single))?;
        }
        _ => {
            let suffix = match a.dry_run {
                DryRun::None => "",
                DryRun::Client => " (dry run)",
                DryRun::Server => " (server dry run)",
            };
            let mut text = String::new();
            for (outcome, r) in &results {
                let mut line = format!("{} {outcome}{suffix}", format::qualified(r));
                if embedded_ran && matches!(r.kind(), Kind::LiveMigration | Kind::VMRecovery) {
                    if let Some(now) = store.get(r.kind(), r.name())? {
                        line.push_str(&format!(": {}", request_outcome(&now).unwrap_or_default()));
                    }
                }
                text.push_str(&line);
                text.push('\n');
            }
            emit(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the controller has caught up with `obj`: its status reflects the current
/// generation, and a migration or recovery has ended.
fn converged(obj: &Resource) -> Result<(), String> {
    let st = obj.status_json();
    let gen = obj.meta().generation.unwrap_or(1);
    if st["observedGeneration"].as_u64().unwrap_or(0) < gen {
        return Err(format!("generation {gen} not observed yet"));
    }
    match (obj.kind(), st["phase"].as_str()) {
        (Kind::LiveMigration, Some("Pending" | "Checking" | "Setup" | "Copying" | "Suspended" | "PostTreatment")) => {
            Err(format!("phase {}", st["phase"]))
        }
        (Kind::VMRecovery, Some("Pending")) => Err("phase Pending".into()),
        _ => Ok(()),
    }
}

/// `sectl delete`.
pub fn delete(ctx: &mut Context, a: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let sel_set = a.selectors.selector.is_some() || a.selectors.field_selector.is_some();
    let targets: Vec<(Kind, String)> = match (a.resources.is_empty(), a.files.is_empty()) {
        (true, false) => {
            if sel_set || a.all {
                bail!("-f names the objects; it does not mix with selectors or --all");
            }
            let Some(docs) = load(&a.files, &[]) else { return Ok(ExitCode::from(1)) };
            docs.iter().map(|d| (d.resource.kind(), d.resource.name().to_string())).collect()
        }
        (false, true) => {
            let req = targets::parse(&a.resources)?;
            let named = req.0.iter().any(|(_, n)| !n.is_empty());
            if !named && !sel_set && !a.all {
                return Err(UsageError(
                    "give names, -l/--selector, --field-selector or --all (to delete every object of the kind)".into(),
                )
                .into());
            }
            if named && a.all {
                bail!("--all does not mix with names");
            }
            let found = targets::resolve(ctx.store()?, &req, &a.selectors)?;
            let mut t: Vec<(Kind, String)> = found.objects().map(|r| (r.kind(), r.name().to_string())).collect();
            t.extend(found.missing);
            t
        }
        _ => bail!("give either KIND NAME..., KIND/NAME..., KIND with a selector, or -f PATH"),
    };
    let store = ctx.store()?;
    if a.dry_run == DryRun::Server && store.remote().is_some() {
        bail!("the server has no dry run for delete; --dry-run=client shows what would be deleted");
    }
    let mut failed = false;
    for (k, n) in targets {
        let who = format!("{}/{}", k.lower(), n);
        if a.dry_run != DryRun::None {
            match store.get(k, &n)? {
                Some(_) => println!("{who} deleted (dry run)"),
                None if a.ignore_not_found => {}
                None => {
                    eprintln!("error: {k} {n} not found");
                    failed = true;
                }
            }
            continue;
        }
        match store.delete(k, &n) {
            Ok(_) => println!("{who} deleted"),
            Err(StoreError::NotFound { .. }) if a.ignore_not_found => {}
            Err(e @ StoreError::NotFound { .. }) => {
                eprintln!("error: {e}");
                failed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if a.dry_run == DryRun::None {
        ctx.settle()?;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `sectl diff`: exit 0 no change, 1 changes, 2 invalid input.
pub fn diff(ctx: &mut Context, a: &DiffArgs) -> anyhow::Result<ExitCode> {
    let (docs, mut errors) = manifest::read_inputs(&a.files);
    if !errors.is_empty() {
        errors.extend(manifest::check_documents(&docs, &[]));
        print_errors(&errors);
        return Ok(ExitCode::from(2));
    }
    let store = ctx.store()?;
    let servers = all_objects(store, Kind::SEServer)?;
    let errors = manifest::check_documents(&docs, &servers);
    if !errors.is_empty() {
        print_errors(&errors);
        return Ok(ExitCode::from(2));
    }
    let mut changed = false;
    for d in &docs {
        let current = store.get(d.resource.kind(), d.resource.name())?;
        if let Some(text) = super::diff::object_diff(current.as_ref(), &d.resource) {
            changed = true;
            print!("{text}");
        }
    }
    Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `sectl validate`.
pub fn validate(a: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let Some(docs) = load(&a.files, &[]) else { return Ok(ExitCode::from(1)) };
    let nfiles: std::collections::BTreeSet<&str> = docs.iter().map(|d| d.source.file.as_str()).collect();
    let objs: Vec<Resource> = docs.iter().map(|d| d.resource.clone()).collect();
    let site = warn::Site::partial(&objs);
    warn::print(&objs.iter().flat_map(|r| warn::references(r, &site)).collect::<Vec<_>>());
    println!("{} object(s) in {} file(s) valid", docs.len(), nfiles.len());
    Ok(ExitCode::SUCCESS)
}
