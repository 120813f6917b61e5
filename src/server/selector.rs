//! `labelSelector` and `fieldSelector` for list, watch and delete-collection. The
//! grammar is `api::selector`'s (shared with the CLI's `-l`). Fields: `f=v`, `f==v`, `f!=v` on
//! the few fields sectl indexes by meaning (`FIELDS`); any other field is refused, so
//! a selector is never silently ignored (the bug that made `delete -l` delete all).
//! Trade-off: a status field is read from the object's status JSON per object, which
//! costs a serialisation of the status; `metadata.name` costs nothing.

use crate::api::selector::{parse_fields, FieldReq, LabelSelector};
use crate::api::Resource;
use serde_json::Value;

/// The fields a `fieldSelector` may name.
pub const FIELDS: &[&str] =
    &["metadata.name", "status.phase", "status.state", "status.serverUnit", "spec.serverUnit", "spec.state"];

/// Both selectors of a request; empty ones match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: LabelSelector,
    fields: Vec<FieldReq>,
}

impl Selector {
    /// Parses the two query parameters; an error names what is wrong.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        // The error names the query parameter the client sent.
        let labels: LabelSelector = labels.unwrap_or("").parse().map_err(|e| format!("labelSelector: {e}"))?;
        let fields = parse_fields(fields.unwrap_or("")).map_err(|e| format!("fieldSelector: {e}"))?;
        if let Some(f) = fields.iter().find(|f| !FIELDS.contains(&f.path.as_str())) {
            return Err(format!(
                "fieldSelector: field {:?} is not supported (supported: {})",
                f.path,
                FIELDS.join(", ")
            ));
        }
        Ok(Selector { labels, fields })
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
        if !self.labels.matches(obj) {
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
