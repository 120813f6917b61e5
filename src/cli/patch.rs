//! `sectl label`, `sectl annotate` and `sectl patch` (`--type merge`: RFC 7386 JSON
//! merge patch; `--type json`: RFC 6902 JSON patch, both by the json-patch crate).
//! The changed object is decoded and validated like a manifest and written on the
//! resourceVersion that was read (a concurrent change is a conflict). Status belongs
//! to the controller: a patch that changes it is refused.

use super::edit::{decode_edited, save};
use super::targets::{self, Selectors};
use super::{all_objects, Context, DryRun, UsageError};
use crate::api::{Kind, Resource};
use anyhow::{anyhow, bail};
use serde_json::Value;
use std::process::ExitCode;

/// Examples for `label --help`.
pub const LABEL_EXAMPLES: &str = "Examples:
  # Add or change labels (changing one needs --overwrite)
  sectl label vm vm12prod app=db tier=backend
  sectl label vm/vm12prod app=erp --overwrite

  # Remove a label
  sectl label vm vm12prod tier-

  # Every VM a selector picks
  sectl label vm -l app=db backup=daily";

/// Examples for `annotate --help`.
pub const ANNOTATE_EXAMPLES: &str = "Examples:
  # Add an annotation, then remove it
  sectl annotate vm vm12prod owner='team erp'
  sectl annotate vm vm12prod owner-";

/// Examples for `patch --help`.
pub const PATCH_EXAMPLES: &str = "Examples:
  # JSON merge patch (the default)
  sectl patch vm vm12prod -p '{\"spec\":{\"memoryMiB\":4096}}'

  # JSON patch
  sectl patch vm/vm12prod --type json -p '[{\"op\":\"replace\",\"path\":\"/spec/cpus\",\"value\":2}]'

  # From a file, checked by the store without writing
  sectl patch vm vm12prod --patch-file fix.json --dry-run=server";

/// `label` and `annotate` arguments.
#[derive(clap::Args, Debug)]
pub struct MetaArgs {
    /// KIND NAME... or KIND/NAME..., then KEY=VALUE to set and KEY- to remove.
    #[arg(required = true, value_name = "RESOURCE|KEY=VALUE|KEY-")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Every object of the kind.
    #[arg(long)]
    pub all: bool,
    /// Allow changing a key that already has a value.
    #[arg(long)]
    pub overwrite: bool,
    /// Write nothing.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none")]
    pub dry_run: DryRun,
}

/// Patch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// RFC 6902 JSON patch.
    Json,
    /// Kubernetes' strategic merge patch (not supported: sectl has no patch strategies).
    Strategic,
}

/// `patch` arguments.
#[derive(clap::Args, Debug)]
pub struct PatchArgs {
    /// KIND NAME..., KIND/NAME..., or KIND with a selector.
    #[arg(required = true, value_name = "RESOURCE")]
    pub resources: Vec<String>,
    /// The patch (JSON or YAML).
    #[arg(short = 'p', long = "patch", required_unless_present = "patch_file", conflicts_with = "patch_file")]
    pub patch: Option<String>,
    /// A file holding the patch.
    #[arg(long)]
    pub patch_file: Option<std::path::PathBuf>,
    /// merge or json.
    #[arg(long = "type", value_enum, default_value = "merge")]
    pub type_: PatchType,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Write nothing.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none")]
    pub dry_run: DryRun,
}

/// Which metadata map label/annotate change.
#[derive(Debug, Clone, Copy)]
pub enum MetaField {
    /// metadata.labels
    Labels,
    /// metadata.annotations
    Annotations,
}

fn objects(ctx: &mut Context, res: &[String], sel: &Selectors, all: bool) -> anyhow::Result<Vec<Resource>> {
    let req = targets::parse(res)?;
    let named = req.0.iter().any(|(_, n)| !n.is_empty());
    if !named && !all && sel.selector.is_none() && sel.field_selector.is_none() {
        return Err(UsageError("give names, -l/--selector, --field-selector or --all".into()).into());
    }
    let found = targets::resolve(ctx.store()?, &req, sel)?;
    if let Some((k, n)) = found.missing.first() {
        bail!("{k} {n} not found");
    }
    Ok(found.objects().cloned().collect())
}

/// Decodes `v` (the whole changed object) against `original` and saves it.
fn finish(ctx: &mut Context, original: &Resource, v: &Value, dry_run: DryRun, verb: &str) -> anyhow::Result<ExitCode> {
    let servers = all_objects(ctx.store()?, Kind::SEServer)?;
    let label = format!("{}/{} ({verb})", original.kind().lower(), original.name());
    let text = serde_json::to_string_pretty(v)?;
    match decode_edited(&label, &text, original, &servers) {
        Ok(obj) => save(ctx, obj, dry_run, verb),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            eprintln!("nothing was written");
            Ok(ExitCode::from(1))
        }
    }
}

/// `sectl label` / `sectl annotate`.
pub fn meta(ctx: &mut Context, a: &MetaArgs, field: MetaField) -> anyhow::Result<ExitCode> {
    let is_change = |s: &String| !s.contains('/') && (s.contains('=') || (s.ends_with('-') && s.len() > 1));
    let (changes, res): (Vec<String>, Vec<String>) = a.args.iter().cloned().partition(is_change);
    if changes.is_empty() {
        return Err(UsageError("give at least one KEY=VALUE or KEY-".into()).into());
    }
    let (key, verb) = match field {
        MetaField::Labels => ("labels", "labeled"),
        MetaField::Annotations => ("annotations", "annotated"),
    };
    let objs = objects(ctx, &res, &a.selectors, a.all)?;
    let mut code = ExitCode::SUCCESS;
    for o in objs {
        let mut v = serde_json::to_value(&o)?;
        let map = v["metadata"]
            .as_object_mut()
            .ok_or_else(|| anyhow!("object without metadata"))?
            .entry(key)
            .or_insert_with(|| Value::Object(Default::default()));
        let map = map.as_object_mut().ok_or_else(|| anyhow!("metadata.{key} is not a map"))?;
        for c in &changes {
            match c.split_once('=') {
                Some((k, val)) => {
                    if let Some(old) = map.get(k).and_then(|x| x.as_str()) {
                        if old != val && !a.overwrite {
                            bail!(
                                "{}: {key} {k} already has value {old:?}; use --overwrite to change it",
                                super::format::qualified(&o)
                            );
                        }
                    }
                    map.insert(k.to_string(), Value::String(val.to_string()));
                }
                None => {
                    let k = c.trim_end_matches('-');
                    if map.remove(k).is_none() {
                        eprintln!("{}: {key} {k} not found", super::format::qualified(&o));
                    }
                }
            }
        }
        let c = finish(ctx, &o, &v, a.dry_run, verb)?;
        if c != ExitCode::SUCCESS {
            code = c;
        }
    }
    Ok(code)
}

/// Applies `patch` (merge or json) to `v`.
fn apply_patch(v: &mut Value, patch: &Value, t: PatchType) -> anyhow::Result<()> {
    match t {
        PatchType::Merge => {
            if !patch.is_object() {
                bail!("a merge patch must be a JSON object, e.g. {{\"spec\":{{\"cpus\":2}}}}");
            }
            json_patch::merge(v, patch);
            Ok(())
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| anyhow!("a JSON patch is a list of operations like {{\"op\":\"replace\",\"path\":\"/spec/cpus\",\"value\":2}}: {e}"))?;
            json_patch::patch(v, &p).map_err(|e| anyhow!("JSON patch: {e}"))
        }
        PatchType::Strategic => Err(UsageError(
            "--type strategic is Kubernetes' patch for its built-in types; sectl takes --type merge or --type json"
                .into(),
        )
        .into()),
    }
}

/// `sectl patch`.
pub fn run(ctx: &mut Context, a: &PatchArgs) -> anyhow::Result<ExitCode> {
    let text = match (&a.patch, &a.patch_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| anyhow!("{}: {e}", f.display()))?,
        (None, None) => return Err(UsageError("give -p PATCH or --patch-file FILE".into()).into()),
    };
    let patch: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(json_err) => {
            let docs = crate::manifest::yaml_to_json(&text)
                .map_err(|e| anyhow!("the patch is neither JSON ({json_err}) nor YAML ({e})"))?;
            match <[Value; 1]>::try_from(docs) {
                Ok([v]) => v,
                Err(d) => bail!("the patch must be one document, found {}", d.len()),
            }
        }
    };
    if a.type_ == PatchType::Strategic {
        apply_patch(&mut Value::Null, &patch, a.type_)?;
    }
    let objs = objects(ctx, &a.resources, &a.selectors, false)?;
    let mut code = ExitCode::SUCCESS;
    for o in objs {
        let mut v = serde_json::to_value(&o)?;
        if let Err(e) = apply_patch(&mut v, &patch, a.type_) {
            eprintln!("error: {}: {e:#}; nothing was written", super::format::qualified(&o));
            code = ExitCode::from(1);
            continue;
        }
        let c = finish(ctx, &o, &v, a.dry_run, "patched")?;
        if c != ExitCode::SUCCESS {
            code = c;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patches() {
        let mut v = json!({"spec": {"cpus": 1, "memoryMiB": 1024}});
        apply_patch(&mut v, &json!({"spec": {"cpus": 2, "memoryMiB": null}}), PatchType::Merge).unwrap();
        assert_eq!(v, json!({"spec": {"cpus": 2}}));
        apply_patch(&mut v, &json!([{"op": "replace", "path": "/spec/cpus", "value": 3}]), PatchType::Json).unwrap();
        assert_eq!(v["spec"]["cpus"], 3);
        assert!(apply_patch(&mut v, &json!([{"op": "remove", "path": "/spec/nope"}]), PatchType::Json).is_err());
        assert!(apply_patch(&mut v, &json!([1]), PatchType::Json).is_err());
        assert!(apply_patch(&mut v, &json!([1]), PatchType::Merge).is_err());
        assert!(apply_patch(&mut v, &json!({}), PatchType::Strategic).is_err());
    }
}
