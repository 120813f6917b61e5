//! Label selectors (`-l app=db,tier!=web,env in (prod,qa),!legacy`) and field
//! selectors (`--field-selector status.phase=Completed,spec.serverUnit!=ABGSE501`)
//! with kubectl's grammar. A field selector names a path of the kind's schema; a path
//! the kind does not have is refused (kubectl refuses unsupported fields too), so a typo
//! never silently selects nothing.

use super::explain;
use crate::api::{Kind, Resource};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; all requirements must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector(Vec<Req>);

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn key(k: &str, whole: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || "=!(),".contains(c)) {
        return Err(format!("label selector {whole:?}: bad key {k:?}"));
    }
    Ok(k.to_string())
}

fn set(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("label selector {whole:?}: expected a set like (a,b)"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

impl std::str::FromStr for LabelSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(format!("label selector {s:?}: empty requirement"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(key(k, s)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(key(k, s)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(key(k, s)?, v.trim().to_string())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Req::NotIn(key(k, s)?, set(rest, s)?)
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Req::In(key(k, s)?, set(rest, s)?)
            } else {
                Req::Exists(key(p, s)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }
}

impl LabelSelector {
    /// Whether `r`'s labels meet every requirement.
    pub fn matches(&self, r: &Resource) -> bool {
        let labels = &r.meta().labels.0;
        self.0.iter().all(|q| match q {
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::Ne(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|x| !vs.contains(x)),
        })
    }
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-joined.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl std::str::FromStr for FieldSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        for p in s.split(',') {
            let (path, eq, v) = if let Some((k, v)) = p.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("field selector {p:?}: expected FIELD=VALUE or FIELD!=VALUE"));
            };
            let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
            if path.iter().any(|s| s.is_empty()) {
                return Err(format!("field selector {p:?}: bad field path"));
            }
            reqs.push((path, eq, v.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }
}

impl FieldSelector {
    /// Refuses paths that `kind`'s schema does not have, or that are not single values.
    pub fn check(&self, kind: Kind) -> Result<(), String> {
        for (path, _, _) in &self.0 {
            let dotted = path.join(".");
            let f = explain::field(kind, path)
                .map_err(|e| format!("field selector: {e} (see `sectl explain {}`)", kind.lower()))?;
            if f.shape != explain::Shape::Scalar {
                return Err(format!("field selector: {dotted} of {kind} is {}, not a single value", f.type_name));
            }
        }
        Ok(())
    }

    /// Whether `r` meets every requirement (a missing field is the empty string).
    pub fn matches(&self, r: &Resource) -> bool {
        let v = serde_json::to_value(r).unwrap_or(Value::Null);
        self.0.iter().all(|(path, eq, want)| {
            let got = path.iter().fold(&v, |v, k| &v[k.as_str()]);
            let got = match got {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selector_grammar() {
        let l: LabelSelector = "app=db,tier!=web,env in (prod, qa),!legacy,team".parse().unwrap();
        assert_eq!(l.0.len(), 5);
        assert_eq!(l.0[2], Req::In("env".into(), vec!["prod".into(), "qa".into()]));
        assert!("a in prod".parse::<LabelSelector>().is_err());
        assert!("a,,b".parse::<LabelSelector>().is_err());
        assert!("=x".parse::<LabelSelector>().is_err());
    }

    #[test]
    fn field_selector_refuses_unknown_paths() {
        let ok: FieldSelector = "status.phase=Completed,metadata.name!=x".parse().unwrap();
        assert!(ok.check(Kind::LiveMigration).is_ok());
        let bad: FieldSelector = "status.phaze=Completed".parse().unwrap();
        assert!(bad.check(Kind::LiveMigration).is_err());
        let list: FieldSelector = "spec.devices=x".parse().unwrap();
        assert!(list.check(Kind::VMDefinition).is_err());
        assert!("status.phase".parse::<FieldSelector>().is_err());
    }
}
