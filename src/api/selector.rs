//! Selector grammar shared by the CLI (`-l`, `--field-selector`) and the API
//! (`labelSelector`, `fieldSelector`), as Kubernetes parses it.
//!
//! Labels: comma-separated requirements `key`, `!key`, `key=v`, `key==v`, `key!=v`,
//! `key in (a,b)`, `key notin (a,b)`; all must hold. Keys and values are checked as
//! label keys and values, so a typo such as `env = prod` is an error, not a selector
//! that quietly selects nothing. Fields: `path=v`, `path==v`, `path!=v`; which paths a
//! caller accepts is its own decision (the API indexes a few by meaning, the CLI
//! accepts any scalar of the kind's schema), so this module only parses them.

use crate::api::Resource;

/// One label requirement (`=`/`==` is `In` with one value, `!=` is `NotIn`).
#[derive(Debug, Clone, PartialEq)]
pub enum LabelReq {
    /// `key`
    Exists(String),
    /// `!key`
    Absent(String),
    /// `key=v`, `key in (a,b)`
    In(String, Vec<String>),
    /// `key!=v`, `key notin (a,b)` (an object without the label matches)
    NotIn(String, Vec<String>),
}

/// A parsed label selector; all requirements must hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector(pub Vec<LabelReq>);

/// One field requirement: `path=value` (`equal`) or `path!=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldReq {
    /// The dotted path as written, e.g. `status.phase`.
    pub path: String,
    /// The value compared with the field's text.
    pub value: String,
    /// `=`/`==` (true) or `!=` (false).
    pub equal: bool,
}

/// Splits on commas outside parentheses; unbalanced or nested parentheses are errors.
pub fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
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
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in {s:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {s:?}"));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn check_key(k: &str, whole: &str) -> Result<String, String> {
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("label selector {whole:?}: {k:?} is not a label key"))
    }
}

fn check_value(v: &str, whole: &str) -> Result<String, String> {
    let ok = v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("label selector {whole:?}: {v:?} is not a label value"))
    }
}

fn set_values(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("label selector {whole:?}: expected a set of values in parentheses, like (a,b)"))?;
    inner.split(',').map(|v| check_value(v.trim(), whole)).collect()
}

fn parse_label(req: &str, whole: &str) -> Result<LabelReq, String> {
    let r = req.trim();
    if r.is_empty() {
        return Err(format!("label selector {whole:?}: empty requirement"));
    }
    if let Some(k) = r.strip_prefix('!') {
        return Ok(LabelReq::Absent(check_key(k.trim(), whole)?));
    }
    if let Some((k, v)) = r.split_once("!=") {
        return Ok(LabelReq::NotIn(check_key(k.trim(), whole)?, vec![check_value(v.trim(), whole)?]));
    }
    if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        return Ok(LabelReq::In(check_key(k.trim(), whole)?, vec![check_value(v.trim(), whole)?]));
    }
    if let Some((k, rest)) = r.split_once(" notin ") {
        return Ok(LabelReq::NotIn(check_key(k.trim(), whole)?, set_values(rest, whole)?));
    }
    if let Some((k, rest)) = r.split_once(" in ") {
        return Ok(LabelReq::In(check_key(k.trim(), whole)?, set_values(rest, whole)?));
    }
    Ok(LabelReq::Exists(check_key(r, whole)?))
}

impl std::str::FromStr for LabelSelector {
    type Err = String;

    /// Parses a selector; a blank string selects everything.
    fn from_str(s: &str) -> Result<LabelSelector, String> {
        if s.trim().is_empty() {
            return Ok(LabelSelector::default());
        }
        split_top(s)?.into_iter().map(|r| parse_label(r, s)).collect::<Result<_, _>>().map(LabelSelector)
    }
}

impl LabelSelector {
    /// True when it selects every object.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `r`'s labels meet every requirement.
    pub fn matches(&self, r: &Resource) -> bool {
        let labels = &r.meta().labels.0;
        self.0.iter().all(|q| match q {
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::Absent(k) => !labels.contains_key(k),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Parses a field selector into requirements (paths unchecked); blank gives none.
pub fn parse_fields(s: &str) -> Result<Vec<FieldReq>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_top(s)?.into_iter().map(|r| parse_field(r, s)).collect()
}

fn parse_field(req: &str, whole: &str) -> Result<FieldReq, String> {
    let r = req.trim();
    let (path, value, equal) = if let Some((p, v)) = r.split_once("!=") {
        (p, v, false)
    } else if let Some((p, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        (p, v, true)
    } else {
        return Err(format!("field selector {whole:?}: {r:?} is not FIELD=VALUE, FIELD==VALUE or FIELD!=VALUE"));
    };
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("field selector {whole:?}: {path:?} is not a field path"));
    }
    Ok(FieldReq { path: path.to_string(), value: value.trim().to_string(), equal })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_grammar_and_refusals() {
        let l: LabelSelector = "app=db,tier!=web,env in (prod, qa),!legacy,team".parse().unwrap();
        assert_eq!(l.0.len(), 5);
        assert_eq!(l.0[2], LabelReq::In("env".into(), vec!["prod".into(), "qa".into()]));
        assert_eq!(l.0[1], LabelReq::NotIn("tier".into(), vec!["web".into()]));
        for bad in ["a in prod", "a,,b", "=x", "env in (a", "e nv=x", "env=a b", "a in ((b))"] {
            assert!(bad.parse::<LabelSelector>().is_err(), "{bad}");
        }
        assert!("".parse::<LabelSelector>().unwrap().is_empty());
    }

    #[test]
    fn field_grammar() {
        let f = parse_fields("status.phase=Completed,metadata.name!=x").unwrap();
        assert_eq!(f[1], FieldReq { path: "metadata.name".into(), value: "x".into(), equal: false });
        assert!(parse_fields("status.phase").is_err());
        assert!(parse_fields("status..phase=x").is_err());
        assert!(parse_fields(" ").unwrap().is_empty());
    }
}
