//! `labelSelector` and `fieldSelector`, as Kubernetes parses them, for list, watch
//! and delete-collection.
//!
//! Labels: comma-separated requirements `key`, `!key`, `key=v`, `key==v`, `key!=v`,
//! `key in (a,b)`, `key notin (a,b)`; all must hold. Fields: `f=v`, `f==v`, `f!=v` on
//! the few fields sectl indexes by meaning (`FIELDS`); any other field is refused, so
//! a selector is never silently ignored (the bug that made `delete -l` delete all).
//! Trade-off: a status field is read from the object's status JSON per object, which
//! costs a serialisation of the status; `metadata.name` costs nothing.

use crate::api::Resource;
use serde_json::Value;

/// The fields a `fieldSelector` may name.
pub const FIELDS: &[&str] =
    &["metadata.name", "status.phase", "status.state", "status.serverUnit", "spec.serverUnit", "spec.state"];

#[derive(Debug, Clone, PartialEq)]
enum Label {
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    path: String,
    value: String,
    equal: bool,
}

/// Both selectors of a request; empty ones match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Label>,
    fields: Vec<Field>,
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
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
        Err(format!("labelSelector {whole:?}: {k:?} is not a label key"))
    }
}

fn check_value(v: &str, whole: &str) -> Result<String, String> {
    let ok = v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("labelSelector {whole:?}: {v:?} is not a label value"))
    }
}

fn set_values(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("labelSelector {whole:?}: expected a set of values in parentheses"))?;
    inner.split(',').map(|v| check_value(v.trim(), whole)).collect()
}

fn parse_label(req: &str, whole: &str) -> Result<Label, String> {
    let r = req.trim();
    if let Some(k) = r.strip_prefix('!') {
        return Ok(Label::Absent(check_key(k.trim(), whole)?));
    }
    if let Some((k, v)) = r.split_once("!=") {
        return Ok(Label::NotIn(check_key(k.trim(), whole)?, vec![check_value(v.trim(), whole)?]));
    }
    if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        return Ok(Label::In(check_key(k.trim(), whole)?, vec![check_value(v.trim(), whole)?]));
    }
    if let Some((k, rest)) = r.split_once(" notin ") {
        return Ok(Label::NotIn(check_key(k.trim(), whole)?, set_values(rest, whole)?));
    }
    if let Some((k, rest)) = r.split_once(" in ") {
        return Ok(Label::In(check_key(k.trim(), whole)?, set_values(rest, whole)?));
    }
    Ok(Label::Exists(check_key(r, whole)?))
}

fn parse_field(req: &str, whole: &str) -> Result<Field, String> {
    let r = req.trim();
    let (path, value, equal) = if let Some((p, v)) = r.split_once("!=") {
        (p, v, false)
    } else if let Some((p, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        (p, v, true)
    } else {
        return Err(format!("fieldSelector {whole:?}: {r:?} is not FIELD=VALUE, FIELD==VALUE or FIELD!=VALUE"));
    };
    let path = path.trim();
    if !FIELDS.contains(&path) {
        return Err(format!(
            "fieldSelector {whole:?}: field {path:?} is not supported (supported: {})",
            FIELDS.join(", ")
        ));
    }
    Ok(Field { path: path.to_string(), value: value.trim().to_string(), equal })
}

impl Selector {
    /// Parses the two query parameters; an error names what is wrong.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let mut s = Selector::default();
        if let Some(l) = labels.filter(|l| !l.trim().is_empty()) {
            for req in split_top(l)? {
                s.labels.push(parse_label(req, l)?);
            }
        }
        if let Some(f) = fields.filter(|f| !f.trim().is_empty()) {
            for req in split_top(f)? {
                s.fields.push(parse_field(req, f)?);
            }
        }
        Ok(s)
    }

    /// True when it selects every object.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The name a `metadata.name=NAME` requirement pins, if any.
    pub fn name(&self) -> Option<&str> {
        self.fields.iter().find(|f| f.equal && f.path == "metadata.name").map(|f| f.value.as_str())
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Resource) -> bool {
        let labels = &obj.meta().labels.0;
        let label_ok = self.labels.iter().all(|l| match l {
            Label::Exists(k) => labels.contains_key(k),
            Label::Absent(k) => !labels.contains_key(k),
            Label::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Label::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        });
        if !label_ok {
            return false;
        }
        let mut status: Option<Value> = None;
        let mut spec: Option<Value> = None;
        self.fields.iter().all(|f| {
            let actual = match f.path.split_once('.') {
                Some(("metadata", _)) => obj.name().to_string(),
                Some(("status", key)) => text(status.get_or_insert_with(|| obj.status_json()).get(key)),
                Some(("spec", key)) => text(spec.get_or_insert_with(|| obj.spec_json()).get(key)),
                _ => String::new(),
            };
            (actual == f.value) == f.equal
        })
    }
}

/// A field's value as Kubernetes compares it: a string, or empty when absent.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(o) => o.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, labels: &[(&str, &str)]) -> Resource {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let yaml = format!(
            "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}, labels: {{{}}}}}\nspec:\n  vmName: VM1\n  serverUnit: ABGSE501\n  memoryMiB: 512\n",
            l.join(", ")
        );
        crate::manifest::decode("t.yaml", yaml.as_bytes()).expect("decodes").remove(0).resource
    }

    fn sel(l: &str) -> Selector {
        Selector::parse(Some(l), None).expect("parses")
    }

    #[test]
    fn label_operators() {
        let prod = vm("a", &[("env", "prod"), ("tier", "db")]);
        let test = vm("b", &[("env", "test")]);
        let none = vm("c", &[]);
        let pick = |s: &str| -> Vec<bool> { [&prod, &test, &none].iter().map(|o| sel(s).matches(o)).collect() };
        assert_eq!(pick("env=prod"), [true, false, false]);
        assert_eq!(pick("env==prod"), [true, false, false]);
        assert_eq!(pick("env!=prod"), [false, true, true]);
        assert_eq!(pick("env in (prod, test)"), [true, true, false]);
        assert_eq!(pick("env notin (prod)"), [false, true, true]);
        assert_eq!(pick("tier"), [true, false, false]);
        assert_eq!(pick("!tier"), [false, true, true]);
        assert_eq!(pick("env=prod,tier=db"), [true, false, false]);
        assert_eq!(pick("env in (prod,test),!tier"), [false, true, false]);
    }

    #[test]
    fn fields_and_refusals() {
        let a = vm("a", &[]);
        let s = Selector::parse(None, Some("metadata.name=a")).expect("parses");
        assert!(s.matches(&a) && s.name() == Some("a"));
        assert!(!Selector::parse(None, Some("metadata.name!=a")).expect("parses").matches(&a));
        assert!(Selector::parse(None, Some("spec.serverUnit=ABGSE501")).expect("parses").matches(&a));
        assert!(!Selector::parse(None, Some("status.state=RUNNING")).expect("parses").matches(&a));
        let e = Selector::parse(None, Some("spec.memoryMiB=512")).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(Selector::parse(Some("env in (a"), None).is_err());
        assert!(Selector::parse(Some("e nv=x"), None).is_err());
        assert!(Selector::parse(Some("env=a b"), None).is_err());
        assert!(Selector::parse(None, Some("metadata.name")).is_err());
    }
}
