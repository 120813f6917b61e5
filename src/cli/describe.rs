//! `sectl describe`: objects for people, as `kubectl describe` lays them out (see
//! `output::describe`); `-o json|yaml` gives the same facts for scripts.

use super::targets::{self, Selectors};
use super::{describe_text, Context, Format};
use std::process::ExitCode;

/// Examples for `--help`.
pub const EXAMPLES: &str = "Examples:
  # A migration: summary, rounds, console lines (runs of per-device lines folded)
  sectl describe lm lm-vm12

  # Every console line
  sectl describe lm lm-vm12 --show-all

  # All VMs a selector picks, or KIND/NAME
  sectl describe vm -l app=db
  sectl describe vm/vm12prod

  # For scripts: the object and its events
  sectl describe lm lm-vm12 -o json";

/// `describe` arguments.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// KIND NAME..., KIND/NAME..., or KIND (all of them, or those a selector picks).
    #[arg(required = true, value_name = "RESOURCE")]
    pub resources: Vec<String>,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Show every console line (runs of per-device lines are folded otherwise).
    #[arg(long)]
    pub show_all: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// `sectl describe`.
pub fn run(ctx: &mut Context, a: &DescribeArgs) -> anyhow::Result<ExitCode> {
    let req = targets::parse(&a.resources)?;
    let store = ctx.store()?;
    let found = targets::resolve(store, &req, &a.selectors)?;
    for (k, n) in &found.missing {
        eprintln!("error: {k} {n} not found");
    }
    let events = store.events()?;
    let mut docs = Vec::new();
    let mut text = String::new();
    for obj in found.objects() {
        let key = obj.key();
        let evs: Vec<_> = events.iter().filter(|e| e.object == key).cloned().collect();
        match a.output {
            Format::Table => {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(&describe_text::describe(obj, &evs, a.show_all));
            }
            _ => docs.push(serde_json::json!({"object": obj, "events": evs})),
        }
    }
    let doc = match docs.len() {
        1 => docs.pop().expect("one"),
        _ => serde_json::json!({"kind": "List", "items": docs}),
    };
    match a.output {
        Format::Table => super::get::emit(&text)?,
        Format::Json => super::get::emit(&(serde_json::to_string_pretty(&doc)? + "\n"))?,
        Format::Yaml => super::get::emit(&crate::manifest::to_yaml(&doc))?,
    }
    Ok(if found.missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
