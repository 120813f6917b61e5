//! `sectl edit`: opens objects in `$SECTL_EDITOR`, `$EDITOR` or `vi` as YAML, as
//! `kubectl edit` does. On save the text is decoded and validated like a manifest;
//! when it is invalid the file is opened again with the errors as comments on top; an
//! unchanged or emptied file, or an editor that fails, writes nothing. The write is
//! conditional on the resourceVersion read, so a concurrent change is a conflict, not
//! a lost update. `decode_edited` and `save` are shared with label/annotate/patch.

use super::apply::write;
use super::targets::{self, Selectors};
use super::{all_objects, Context, DryRun};
use crate::api::{Kind, Resource};
use crate::manifest;
use crate::store::ApplyOutcome;
use anyhow::{anyhow, bail, Context as _};
use std::process::ExitCode;

/// Examples for `--help`.
pub const EXAMPLES: &str = "Examples:
  # Edit a VM definition in $EDITOR (vi when unset)
  sectl edit vm vm12prod

  # With another editor
  EDITOR=nano sectl edit vm/vm12prod

  # Check the edit without writing it
  sectl edit vm vm12prod --dry-run=server";

/// `edit` arguments.
#[derive(clap::Args, Debug)]
pub struct EditArgs {
    /// KIND NAME..., KIND/NAME..., or KIND with a selector.
    #[arg(required = true, value_name = "RESOURCE")]
    pub resources: Vec<String>,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Validate the edit and show the outcome; write nothing.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none")]
    pub dry_run: DryRun,
}

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// The text without comment lines.
fn strip_comments(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect()
}

/// Decodes an edited object and checks that it is still `original` (same kind and
/// name; status untouched, since the controller owns it). Errors are lines for people.
pub fn decode_edited(
    label: &str,
    text: &str,
    original: &Resource,
    servers: &[Resource],
) -> Result<Resource, Vec<String>> {
    let docs =
        manifest::decode(label, text.as_bytes()).map_err(|es| es.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let [doc] = docs.as_slice() else {
        return Err(vec![format!("{label}: expected exactly one object, found {}", docs.len())]);
    };
    let errors: Vec<String> = manifest::check_documents(&docs, servers).iter().map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut obj = doc.resource.clone();
    if obj.kind() != original.kind() || obj.name() != original.name() {
        return Err(vec![format!(
            "{label}: kind and metadata.name cannot change (was {}/{}, now {}/{})",
            original.kind(),
            original.name(),
            obj.kind(),
            obj.name()
        )]);
    }
    let edited_status = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .or_else(|| manifest::yaml_to_json(text).ok().and_then(|mut v| v.pop()))
        .map(|v| v["status"].clone());
    if let Some(st) = edited_status {
        if !st.is_null() && st != original.status_json() {
            return Err(vec![format!("{label}: status is written by the controller; change spec or metadata only")]);
        }
    }
    // The write is conditional on the version that was read.
    obj.meta_mut().resource_version = original.meta().resource_version.clone();
    Ok(obj)
}

/// Writes `obj`, printing `kind/name VERB` (or `... (no change)`); 1 on a conflict.
pub fn save(ctx: &mut Context, obj: Resource, dry_run: DryRun, verb: &str) -> anyhow::Result<ExitCode> {
    let Some(results) = write(ctx, vec![obj], dry_run)? else { return Ok(ExitCode::from(1)) };
    let suffix = match dry_run {
        DryRun::None => "",
        DryRun::Client => " (dry run)",
        DryRun::Server => " (server dry run)",
    };
    for (outcome, r) in results {
        let what = if outcome == ApplyOutcome::Unchanged { format!("{verb} (no change)") } else { verb.to_string() };
        println!("{} {what}{suffix}", super::format::qualified(&r));
    }
    Ok(ExitCode::SUCCESS)
}

fn editor() -> String {
    ["SECTL_EDITOR", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_string())
}

/// Runs the editor on `path`; the editor value may carry arguments (`code --wait`).
fn run_editor(path: &std::path::Path) -> anyhow::Result<()> {
    let ed = editor();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{ed} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("starting the editor {ed:?}"))?;
    if !status.success() {
        bail!("the editor {ed:?} ended with {status}; nothing was written");
    }
    Ok(())
}

/// A private temporary file for one edit.
fn temp_file(r: &Resource) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir();
    for i in 0..100 {
        let p = dir.join(format!("sectl-edit-{}-{}-{}-{i}.yaml", std::process::id(), r.kind().lower(), r.name()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(anyhow!("creating {}: {e}", p.display())),
        }
    }
    bail!("could not create a temporary file in {}", dir.display())
}

/// Edits one object; returns its exit status.
fn edit_one(ctx: &mut Context, original: &Resource, servers: &[Resource], dry_run: DryRun) -> anyhow::Result<ExitCode> {
    let path = temp_file(original)?;
    let label = format!("{}/{}", original.kind().lower(), original.name());
    let body = manifest::to_yaml(original);
    let mut text = format!("{HEADER}{body}");
    let mut last_invalid: Option<String> = None;
    loop {
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        if let Err(e) = run_editor(&path) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let edited = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let content = strip_comments(&edited);
        if content.trim().is_empty() || content == strip_comments(&body) {
            let _ = std::fs::remove_file(&path);
            eprintln!("Edit cancelled, no changes made.");
            return Ok(ExitCode::SUCCESS);
        }
        if last_invalid.as_deref() == Some(content.as_str()) {
            eprintln!("error: the edit is still invalid; nothing was written. Your edit is kept in {}", path.display());
            return Ok(ExitCode::from(1));
        }
        match decode_edited(&label, &content, original, servers) {
            Ok(obj) => {
                let _ = std::fs::remove_file(&path);
                return save(ctx, obj, dry_run, "edited");
            }
            Err(errors) => {
                let mut top = format!("{HEADER}# {label} was not valid:\n");
                for e in &errors {
                    for l in e.lines() {
                        top.push_str(&format!("# * {l}\n"));
                    }
                }
                top.push_str("#\n");
                text = top + &content;
                last_invalid = Some(content);
            }
        }
    }
}

/// `sectl edit`.
pub fn run(ctx: &mut Context, a: &EditArgs) -> anyhow::Result<ExitCode> {
    let req = targets::parse(&a.resources)?;
    let store = ctx.store()?;
    let found = targets::resolve(store, &req, &a.selectors)?;
    if let Some((k, n)) = found.missing.first() {
        bail!("{k} {n} not found");
    }
    let servers = all_objects(store, Kind::SEServer)?;
    let objs: Vec<Resource> = found.objects().cloned().collect();
    if objs.is_empty() {
        bail!("nothing to edit");
    }
    let mut code = ExitCode::SUCCESS;
    for o in &objs {
        let c = edit_one(ctx, o, &servers, a.dry_run)?;
        if c != ExitCode::SUCCESS {
            code = c;
        }
    }
    Ok(code)
}
