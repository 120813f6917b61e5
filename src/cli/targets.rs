//! Which objects a verb acts on, named the ways kubectl takes them: `vm NAME...`,
//! `vm/NAME lm/NAME`, `vm,lm`, `all`, with `-l` and `--field-selector` narrowing
//! whole kinds. Shared by get, delete, wait, label, annotate, patch and edit.

use super::select::{FieldSelector, LabelSelector};
use super::{parse_kind, Backend};
use crate::api::{Kind, Resource};
use anyhow::{anyhow, bail};

/// Objects asked for: per kind, the names given (empty: every object of the kind).
#[derive(Debug, Clone, PartialEq)]
pub struct Request(pub Vec<(Kind, Vec<String>)>);

/// Selectors that narrow a request.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Selectors {
    /// Label selector, e.g. -l app=db,tier!=web,'env in (prod,qa)',!legacy.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<LabelSelector>,
    /// Field selector, e.g. --field-selector status.phase=Completed,spec.serverUnit!=ABGSE501.
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<FieldSelector>,
}

impl Selectors {
    fn is_set(&self) -> bool {
        self.selector.is_some() || self.field_selector.is_some()
    }

    fn matches(&self, r: &Resource) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(r)) && self.field_selector.as_ref().is_none_or(|s| s.matches(r))
    }
}

/// Parses `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`; `all` is every kind.
pub fn parse(args: &[String]) -> anyhow::Result<Request> {
    let Some(first) = args.first() else { bail!("give a kind, e.g. `vm`, `vm NAME`, `vm/NAME` or `all`") };
    if args.iter().any(|a| a.contains('/')) {
        let mut out: Vec<(Kind, Vec<String>)> = Vec::new();
        for a in args {
            let (k, n) = a
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty())
                .ok_or_else(|| anyhow!("{a:?}: when one argument is KIND/NAME, all must be (e.g. vm/vm12prod)"))?;
            let kind = parse_kind(k)?;
            match out.iter_mut().find(|(k2, _)| *k2 == kind) {
                Some((_, names)) => names.push(n.to_string()),
                None => out.push((kind, vec![n.to_string()])),
            }
        }
        return Ok(Request(out));
    }
    let mut kinds = Vec::new();
    for t in first.split(',') {
        if t == "all" {
            kinds.extend(Kind::ALL.iter().copied());
        } else {
            kinds.push(parse_kind(t)?);
        }
    }
    kinds.dedup();
    let names: Vec<String> = args[1..].to_vec();
    if kinds.len() > 1 && !names.is_empty() {
        bail!("names need exactly one kind; for several kinds write KIND/NAME (e.g. vm/vm12prod lm/lm-vm12)");
    }
    Ok(Request(kinds.into_iter().map(|k| (k, names.clone())).collect()))
}

/// What a request found: the objects per kind, and the names that do not exist.
pub struct Found {
    /// Objects per kind, in the order asked.
    pub groups: Vec<(Kind, Vec<Resource>)>,
    /// (kind, name) asked for by name and not found.
    pub missing: Vec<(Kind, String)>,
}

impl Found {
    /// All objects found.
    pub fn objects(&self) -> impl Iterator<Item = &Resource> {
        self.groups.iter().flat_map(|(_, v)| v.iter())
    }
}

/// Reads what `req` names, narrowed by `sel`. Names and selectors do not mix.
pub fn resolve(store: &Backend, req: &Request, sel: &Selectors) -> anyhow::Result<Found> {
    let named = req.0.iter().any(|(_, n)| !n.is_empty());
    if named && sel.is_set() {
        bail!("names cannot be given together with -l/--selector or --field-selector");
    }
    let mut found = Found { groups: Vec::new(), missing: Vec::new() };
    for (kind, names) in &req.0 {
        if let Some(fs) = &sel.field_selector {
            fs.check(*kind).map_err(|e| anyhow!(e))?;
        }
        let mut objs = Vec::new();
        if names.is_empty() {
            let (all, _) = store.list(*kind)?;
            objs.extend(all.into_iter().filter(|r| sel.matches(r)));
        } else {
            for n in names {
                match store.get(*kind, n)? {
                    Some(o) => objs.push(o),
                    None => found.missing.push((*kind, n.clone())),
                }
            }
        }
        found.groups.push((*kind, objs));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> anyhow::Result<Request> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn kubectl_forms() {
        assert_eq!(p(&["vms"]).unwrap().0, vec![(Kind::VMDefinition, vec![])]);
        assert_eq!(
            p(&["vmdefinitions.sectl.io", "a", "b"]).unwrap().0,
            vec![(Kind::VMDefinition, vec!["a".into(), "b".into()])]
        );
        assert_eq!(
            p(&["vm/a", "lm/x", "vm/b"]).unwrap().0,
            vec![(Kind::VMDefinition, vec!["a".into(), "b".into()]), (Kind::LiveMigration, vec!["x".into()])]
        );
        assert_eq!(p(&["all"]).unwrap().0.len(), Kind::ALL.len());
        assert_eq!(p(&["vm,lm"]).unwrap().0.len(), 2);
        assert!(p(&["vm,lm", "a"]).is_err());
        assert!(p(&["vm/a", "b"]).is_err());
        assert!(p(&["vmx"]).is_err());
        assert!(p(&[]).is_err());
    }
}
