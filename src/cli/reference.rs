//! `docs/reference.md`, the user reference, generated from the same definitions the
//! program runs on: the verbs, flags and examples from the clap command, the kinds and
//! their fields from the JSON Schemas (via the `explain` walker). Hand-written parts
//! (exit codes, clocks, output forms) live here beside the generator so the file has
//! one source. `tests/cli_kubectl.rs` fails when the file is stale;
//! `SECTL_BLESS=1 cargo test --test cli_kubectl reference` rewrites it.

use super::explain::{field_in, Shape};
use crate::api::{schema, Kind, API_VERSION};
use std::fmt::Write as _;

const INTRO: &str = "# sectl reference

Generated from the program itself (`src/cli/reference.rs`: verbs and flags from the
command-line definitions, kinds and fields from the JSON Schemas in `schemas/`); do
not edit by hand. `sectl <verb> --help` and `sectl explain KIND[.field]` print the same
text.

## Exit status

| code | meaning |
|---|---|
| 0 | success (`diff`: no change) |
| 1 | rejected, invalid input, not found, a conflict, a wait that failed (`diff`: changes) |
| 2 | usage error: unknown verb, flag or flag value, an unknown phase or state in `wait --for` (`diff`: invalid input, as `kubectl diff`) |

## Naming objects, selectors, output

* `KIND` is the kind (`VMDefinition`), lower case, plural (`vmdefinitions`), a short
  name (`vm`), its plural (`vms`), or `KIND.sectl.io`. Objects: `KIND NAME...`,
  `KIND/NAME...`, `KIND,KIND`, or `all`.
* `-l/--selector`: `key=value`, `key==value`, `key!=value`, `key`, `!key`,
  `key in (a,b)`, `key notin (a,b)`, comma-joined. `--field-selector`: `path=value`,
  `path!=value` on any single-valued field of the kind (`status.phase=Completed`);
  a field the kind does not have is refused.
* `-o`: `table`, `wide`, `json`, `yaml`, `name` (`kind/name`), `jsonpath=TEMPLATE`
  (kubectl's templates: `{.a.b}`, `{range .items[*]}...{end}`, `{\"\\n\"}`, filters
  `[?(@.x==\"y\")]`; RFC 9535 underneath), `custom-columns=HEADER:PATH,...`;
  `--sort-by=PATH`, `--no-headers`.

## Two clocks

Object metadata (`creationTimestamp`, the `AGE` column, GitOps sync times) is real
time. Status times, console lines and events are the simulated clock, which moves
only with the reconcilers (embedded mode jumps it to the next due item while a verb
settles), `sim advance`, or `serve --time-scale`. `describe` and `events` label
which is which; `sectl sim clock` prints both.
";

fn flag_line(a: &clap::Arg) -> Option<String> {
    if a.is_hide_set() || matches!(a.get_id().as_str(), "help" | "version") {
        return None;
    }
    let mut name = match (a.get_short(), a.get_long()) {
        (Some(s), Some(l)) => format!("-{s}, --{l}"),
        (None, Some(l)) => format!("--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, None) => a.get_value_names().map(|v| v.join(" ")).unwrap_or_else(|| a.get_id().to_string()),
    };
    if (a.get_long().is_some() || a.get_short().is_some())
        && a.get_num_args().is_none_or(|n| n.takes_values())
        && a.get_action().takes_values()
    {
        let v = a.get_value_names().map(|v| v.join(" ")).unwrap_or_else(|| a.get_id().to_string().to_uppercase());
        let _ = write!(name, " {v}");
    }
    let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default().replace('\n', " ");
    let default: Vec<String> = a.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
    let default = if default.is_empty() { String::new() } else { format!(" (default: {})", default.join(",")) };
    Some(format!("| `{name}` | {}{default} |", help.replace('|', "\\|")))
}

fn verbs(out: &mut String) {
    let cmd = super::command();
    out.push_str("\n## Global flags\n\n| flag | what |\n|---|---|\n");
    for a in cmd.get_arguments() {
        if let Some(l) = flag_line(a) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out.push_str(
        "\nThe verbs that need no store (`validate`, `schema`, `explain`, `completion`, `version`) do not use them.\n",
    );
    out.push_str("\n## Verbs\n");
    for sc in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let _ = write!(out, "\n### sectl {}\n\n", sc.get_name());
        let about = sc.get_long_about().or(sc.get_about()).map(|s| s.to_string()).unwrap_or_default();
        out.push_str(&about);
        out.push_str("\n\n");
        let rows: Vec<String> = sc.get_arguments().filter(|a| !a.is_global_set()).filter_map(flag_line).collect();
        if !rows.is_empty() {
            out.push_str("| argument | what |\n|---|---|\n");
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
            out.push('\n');
        }
        if let Some(ex) = sc.get_after_help() {
            let ex = ex.to_string();
            let body = ex.strip_prefix("Examples:\n").unwrap_or(&ex);
            out.push_str("```sh\n");
            for l in body.lines() {
                out.push_str(l.strip_prefix("  ").unwrap_or(l));
                out.push('\n');
            }
            out.push_str("```\n");
        }
    }
}

fn fields_of(root: &serde_json::Value, kind: Kind, path: &mut Vec<String>, out: &mut String) {
    let Ok(f) = field_in(root, kind, path) else { return };
    for (name, ty, req, doc) in &f.children {
        path.push(name.clone());
        let dotted = path.join(".");
        let _ = writeln!(
            out,
            "| `{dotted}` | `{ty}` | {} | {} |",
            if *req { "yes" } else { "" },
            doc.replace('\n', " ").replace('|', "\\|")
        );
        let sub = field_in(root, kind, path);
        let values = sub.as_ref().map(|s| s.values.clone()).unwrap_or_default();
        if !values.is_empty() {
            let list: Vec<String> = values.iter().map(|(v, _)| format!("`{v}`")).collect();
            let _ = writeln!(out, "| | | | values: {} |", list.join(", "));
        }
        // Metadata is the same for every kind; it is listed once.
        let recurse = sub.is_ok_and(|s| matches!(s.shape, Shape::Object | Shape::Array) && !s.children.is_empty());
        if recurse && path.len() < 5 && dotted != "metadata" {
            fields_of(root, kind, path, out);
        }
        path.pop();
    }
}

fn kinds(out: &mut String) {
    out.push_str("\n## Kinds\n\nEvery object has `apiVersion: ");
    out.push_str(API_VERSION);
    out.push_str("`, `kind`, `metadata` (`name`, `labels`, `annotations`; the store sets `uid`, `resourceVersion`, `generation`, `creationTimestamp`), `spec`, and `status` (written by the controller only).\n");
    for k in Kind::ALL {
        let root = schema::document_schema(*k);
        let _ = write!(
            out,
            "\n### {}\n\n{}\n\nNames: `{}`, `{}`, `{}`. Schema: `schemas/{}.json`.\n\n| field | type | required | what |\n|---|---|---|---|\n",
            k.as_str(),
            k.description(),
            k.as_str(),
            k.plural(),
            k.short_names().join("`, `"),
            k.lower()
        );
        let mut path = Vec::new();
        for top in ["spec", "status"] {
            path.push(top.to_string());
            fields_of(&root, *k, &mut path, out);
            path.pop();
        }
    }
}

/// The whole of `docs/reference.md`.
pub fn markdown() -> String {
    let mut out = INTRO.to_string();
    verbs(&mut out);
    kinds(&mut out);
    out
}
