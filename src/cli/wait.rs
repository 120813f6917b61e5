//! `sectl wait`: until objects meet `--for` (condition, state, phase, a JSONPath
//! value) or are deleted.
//!
//! Embedded mode does not move the simulated clock: it runs what is already due and
//! answers at once (the world changes on its own only under `sectl serve`, or with
//! `sectl sim advance`). With a server it polls in real time up to `--timeout`. Either
//! way, waiting for what can no longer happen (a Rejected migration `--for=phase=
//! Completed`, an object that does not exist) fails at once and says why, and a phase
//! or state the kind does not have is a usage error listing the valid ones.

use super::explain;
use super::jsonpath::{show, Expr};
use super::targets::{self, Selectors};
use super::{live, Context, UsageError};
use crate::api::{Kind, LiveMigrationSpec, LmPhase, RecoveryPhase, Resource, VMRecoverySpec};
use anyhow::bail;
use std::process::ExitCode;

/// Examples for `--help`.
pub const EXAMPLES: &str = "Examples:
  # Until a migration has completed (a Rejected or Aborted one fails at once)
  sectl wait lm/lm-vm12 --for=phase=Completed

  # A condition, a state, a JSONPath value
  sectl wait vm/vm12prod --for=condition=Ready
  sectl wait suc/su390 --for=state=NORMAL
  sectl wait lm/lm-vm12 --for=jsonpath='{.status.monjv}'='$T'

  # Until objects are gone; every VM a selector picks
  sectl wait lm/lm-vm12 --for=delete
  sectl --server https://127.0.0.1:7443 wait vm -l app=db --for=state=RUNNING --timeout=2m";

/// `wait` arguments.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// KIND/NAME..., KIND NAME..., or KIND with -l, --field-selector or --all.
    #[arg(required = true, value_name = "RESOURCE")]
    pub resources: Vec<String>,
    /// condition=TYPE[=True|False|Unknown], state=VALUE, phase=VALUE, delete, or
    /// jsonpath='{PATH}'[=VALUE].
    #[arg(long = "for", value_name = "CONDITION")]
    pub for_: String,
    /// With a server: give up after this long (e.g. 30s, 5m). Embedded mode answers at
    /// once (the simulated clock moves only with `sim advance`).
    #[arg(long, default_value = "5m")]
    pub timeout: String,
    #[command(flatten)]
    pub selectors: Selectors,
    /// Every object of the kind.
    #[arg(long)]
    pub all: bool,
}

/// Parsed `--for`.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// A condition with a status.
    Condition(String, String),
    /// `status.state` or `status.phase` equals a value.
    Field(&'static str, String),
    /// The object is gone.
    Delete,
    /// A JSONPath selects something (equal to the value, when given).
    JsonPath(Expr, Option<String>),
}

/// What an object says about a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The condition holds.
    Met,
    /// Not yet; why.
    NotYet(String),
    /// It can no longer happen; why.
    Never(String),
}

fn usage(m: String) -> anyhow::Error {
    UsageError(m).into()
}

/// Parses `--for` for `kind`; a phase or state `kind` does not have is a usage error.
pub fn parse_for(s: &str, kind: Kind) -> anyhow::Result<WaitFor> {
    if s == "delete" {
        return Ok(WaitFor::Delete);
    }
    if let Some(rest) = s.strip_prefix("condition=") {
        let (t, v) = rest.split_once('=').unwrap_or((rest, "True"));
        if t.is_empty() {
            return Err(usage("--for=condition=TYPE needs a condition type, e.g. condition=Ready".into()));
        }
        if !["true", "false", "unknown"].contains(&v.to_ascii_lowercase().as_str()) {
            return Err(usage(format!("--for=condition={t}={v}: the status must be True, False or Unknown")));
        }
        return Ok(WaitFor::Condition(t.to_string(), v.to_string()));
    }
    if let Some(rest) = s.strip_prefix("jsonpath=") {
        let (path, value) = if rest.starts_with('{') {
            let end = rest.find('}').ok_or_else(|| usage(format!("--for=jsonpath: unclosed '{{' in {rest:?}")))?;
            let tail = &rest[end + 1..];
            let value = match tail.strip_prefix('=') {
                Some(v) => Some(v.to_string()),
                None if tail.is_empty() => None,
                None => return Err(usage(format!("--for=jsonpath: expected ={{VALUE}} after the path, got {tail:?}"))),
            };
            (&rest[..=end], value)
        } else {
            match rest.rsplit_once('=') {
                Some((p, v)) => (p, Some(v.to_string())),
                None => (rest, None),
            }
        };
        return Ok(WaitFor::JsonPath(Expr::parse(path).map_err(usage)?, value));
    }
    for field in ["state", "phase"] {
        if let Some(v) = s.strip_prefix(field).and_then(|r| r.strip_prefix('=')) {
            let Some(valid) = explain::status_values(kind, field) else {
                let other = if field == "state" { "phase" } else { "state" };
                return Err(usage(format!(
                    "{kind} has no status.{field}{}",
                    if explain::status_values(kind, other).is_some() {
                        format!("; it has status.{other} (--for={other}=VALUE)")
                    } else {
                        String::new()
                    }
                )));
            };
            return match valid.iter().find(|x| x.eq_ignore_ascii_case(v)) {
                Some(x) => Ok(WaitFor::Field(if field == "state" { "state" } else { "phase" }, x.clone())),
                None => Err(usage(format!("{kind} has no {field} {v:?}; valid: {}", valid.join(", ")))),
            };
        }
    }
    Err(usage(format!(
        "--for must be condition=TYPE[=STATUS], state=VALUE, phase=VALUE, delete or jsonpath='{{PATH}}'[=VALUE], got {s:?}"
    )))
}

/// Why `obj` is finished for its generation: a migration or recovery in a final phase.
fn finished(obj: &Resource) -> Option<String> {
    let gen = obj.meta().generation.unwrap_or(1);
    if let Some(o) = obj.as_typed::<LiveMigrationSpec>() {
        let st = &o.status;
        let final_ =
            matches!(st.phase, LmPhase::Completed | LmPhase::Aborted | LmPhase::Rejected) && !o.spec.check_only;
        if final_ && st.observed_generation.unwrap_or(0) >= gen {
            let outcome = super::apply::request_outcome(obj).unwrap_or_default();
            return Some(format!("{outcome}: final for generation {gen}"));
        }
    }
    if let Some(o) = obj.as_typed::<VMRecoverySpec>() {
        let st = &o.status;
        if matches!(st.phase, RecoveryPhase::Completed | RecoveryPhase::Rejected)
            && st.observed_generation.unwrap_or(0) >= gen
        {
            return Some(format!("{}: final for generation {gen}", st.phase));
        }
    }
    None
}

/// The verdict of `obj` (None: it does not exist) on `w`.
pub fn check(obj: Option<&Resource>, w: &WaitFor) -> Verdict {
    let Some(obj) = obj else {
        return match w {
            WaitFor::Delete => Verdict::Met,
            _ => Verdict::Never("not found".into()),
        };
    };
    let status = obj.status_json();
    let not_met = match w {
        WaitFor::Delete => "it still exists".to_string(),
        WaitFor::Condition(t, v) => {
            let c = status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == t.as_str()));
            match c {
                Some(c) if c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(v)) => return Verdict::Met,
                Some(c) => {
                    format!("condition {t} is {} ({}: {})", show(&c["status"]), show(&c["reason"]), show(&c["message"]))
                }
                None => format!("no condition {t} yet"),
            }
        }
        WaitFor::Field(f, v) => match status[*f].as_str() {
            Some(x) if x.eq_ignore_ascii_case(v) => return Verdict::Met,
            Some(x) => format!("{f} is {x}"),
            None => format!("no {f} yet"),
        },
        WaitFor::JsonPath(e, want) => {
            let doc = serde_json::to_value(obj).unwrap_or_default();
            let got: Vec<String> = e.query(&doc).into_iter().map(show).collect();
            match (want, got.as_slice()) {
                (None, [_, ..]) => return Verdict::Met,
                (Some(w), [one]) if one == w => return Verdict::Met,
                (_, []) => format!("{} selects nothing", e.text()),
                (_, vals) => format!("{} is {}", e.text(), vals.join(" ")),
            }
        }
    };
    match finished(obj) {
        Some(why) if !matches!(w, WaitFor::Delete) => {
            Verdict::Never(format!("{not_met}; the {} is {why}, so this will not change", obj.kind().as_str()))
        }
        _ => Verdict::NotYet(not_met),
    }
}

/// `sectl wait`.
pub fn run(ctx: &mut Context, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    let req = targets::parse(&a.resources)?;
    let named = req.0.iter().any(|(_, n)| !n.is_empty());
    let sel = a.selectors.selector.is_some() || a.selectors.field_selector.is_some();
    if !named && !sel && !a.all {
        return Err(usage("give names (KIND/NAME), -l/--selector, --field-selector or --all".into()));
    }
    let mut fors = Vec::new();
    for (k, _) in &req.0 {
        fors.push((*k, parse_for(&a.for_, *k)?));
    }
    let timeout_ms = crate::sim::parse_duration(&a.timeout).map_err(|e| usage(format!("--timeout: {e}")))?;
    if ctx.remote()?.is_none() && ctx.reconcile {
        // Run only what is already due; never move the clock.
        let mut c = ctx.controller()?;
        let now = c.now_ms();
        c.run_until(Some(now))?;
    }
    let found = targets::resolve(ctx.store()?, &req, &a.selectors)?;
    let mut items: Vec<(Kind, String)> = found.objects().map(|r| (r.kind(), r.name().to_string())).collect();
    items.extend(found.missing.iter().cloned());
    if items.is_empty() {
        bail!("no objects to wait for");
    }
    let remote = ctx.remote()?.is_some();
    let store = ctx.store()?;
    let start = std::time::Instant::now();
    for (kind, name) in items {
        let w = &fors.iter().find(|(k, _)| *k == kind).expect("parsed per kind").1;
        let who = format!("{}/{name}", kind.lower());
        if remote {
            let left = timeout_ms.saturating_sub(start.elapsed().as_millis() as u64);
            let code = live::wait_remote(store, kind, &name, left, &a.for_, |o| check(o, w))?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            continue;
        }
        match check(store.get(kind, &name)?.as_ref(), w) {
            Verdict::Met => println!("{who} condition met ({})", a.for_),
            Verdict::Never(why) => {
                eprintln!("error: {who}: {why}");
                return Ok(ExitCode::from(1));
            }
            Verdict::NotYet(why) => {
                let mut c = ctx.controller()?;
                // A fresh controller first takes in the store (what is due now runs).
                let now = c.now_ms();
                c.run_until(Some(now))?;
                let hint = match c.next_due() {
                    Some(t) => format!(
                        "; the next reconcile is due in {} simulated s: `sectl sim advance DURATION` moves the clock",
                        t.saturating_sub(c.now_ms()).div_ceil(1000)
                    ),
                    None => "; nothing is due in the simulated world, so this will not change by itself".to_string(),
                };
                eprintln!("error: {who}: {why}{hint} (embedded mode runs only what is due; `sectl serve` moves time)");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_phase_or_state_is_a_usage_error_listing_the_valid_ones() {
        let e = parse_for("phase=Complete", Kind::LiveMigration).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert!(e.to_string().contains("Completed"), "{e}");
        assert!(parse_for("phase=completed", Kind::LiveMigration).is_ok());
        let e = parse_for("phase=Running", Kind::VMDefinition).unwrap_err();
        assert!(e.to_string().contains("status.state"), "{e}");
        assert!(parse_for("state=RUNNING", Kind::VMDefinition).is_ok());
        assert!(parse_for("jsonpath={.status.monjv}=$T", Kind::LiveMigration).is_ok());
        assert!(parse_for("jsonpath={.status.monjv", Kind::LiveMigration).is_err());
        assert!(parse_for("condition=Ready=Maybe", Kind::VMDefinition).is_err());
        assert!(parse_for("ready", Kind::VMDefinition).is_err());
    }
}
