//! `sectl explain KIND[.field.path]`: the documentation of a kind or field, read from
//! the same JSON Schemas `sectl schema` writes (generated from the Rust types by
//! schemars), laid out as `kubectl explain` does. The walker here also serves field
//! selectors and `wait --for` (the valid phases and states come from the schema).

use super::parse_kind;
use crate::api::{schema, Kind, API_VERSION};
use serde_json::Value;
use std::process::ExitCode;

/// Examples for `--help`.
pub const EXAMPLES: &str = "Examples:
  # The fields of a LiveMigration
  sectl explain lm

  # One field, with its allowed values
  sectl explain livemigration.status.phase

  # Fields of list items (devices of a VM definition)
  sectl explain vm.spec.devices";

/// `explain` arguments.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// KIND or KIND.FIELD.PATH, e.g. lm, vm.spec.memoryMiB.
    pub target: String,
}

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string, number or boolean.
    Scalar,
    /// An object with named fields.
    Object,
    /// A list.
    Array,
    /// A map of names to values.
    Map,
}

/// One field (or the whole document) as the schema describes it.
#[derive(Debug, Clone)]
pub struct Field {
    /// kubectl-style type: string, integer, boolean, []Item, map[string]string, Name.
    pub type_name: String,
    /// Scalar, object, list or map.
    pub shape: Shape,
    /// The documentation.
    pub description: String,
    /// Allowed values with their documentation, when the field is an enumeration.
    pub values: Vec<(String, String)>,
    /// Fields of an object (or of the items of a list): name, type, required, doc.
    pub children: Vec<(String, String, bool, String)>,
}

fn definition<'a>(root: &'a Value, r: &str) -> Option<&'a Value> {
    root["definitions"].get(r.strip_prefix("#/definitions/")?)
}

/// Follows `$ref` and one-element `allOf`; returns the target and the ref's name.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> (&'a Value, Option<String>) {
    if let Some(r) = node["$ref"].as_str() {
        if let Some(d) = definition(root, r) {
            return (d, r.rsplit('/').next().map(str::to_string));
        }
    }
    if let Some([one]) = node["allOf"].as_array().map(|a| a.as_slice()) {
        return resolve(root, one);
    }
    (node, None)
}

fn description(root: &Value, node: &Value) -> String {
    let (target, _) = resolve(root, node);
    node["description"].as_str().or(target["description"].as_str()).unwrap_or("").to_string()
}

fn enum_values(target: &Value) -> Vec<(String, String)> {
    if let Some(e) = target["enum"].as_array() {
        return e.iter().map(|v| (super::jsonpath::show(v), String::new())).collect();
    }
    target["oneOf"]
        .as_array()
        .map(|alts| {
            alts.iter()
                .flat_map(|a| {
                    let d = a["description"].as_str().unwrap_or("").to_string();
                    a["enum"].as_array().into_iter().flatten().map(move |v| (super::jsonpath::show(v), d.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn shape_and_type(root: &Value, node: &Value) -> (Shape, String) {
    let (t, name) = resolve(root, node);
    let ty = match &t["type"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().filter_map(|x| x.as_str()).find(|x| *x != "null").unwrap_or("").to_string(),
        _ if t.get("properties").is_some() => "object".into(),
        _ if t.get("oneOf").is_some() || t.get("enum").is_some() => "string".into(),
        _ => String::new(),
    };
    match ty.as_str() {
        "array" => (Shape::Array, format!("[]{}", shape_and_type(root, &t["items"]).1)),
        "object" if t.get("properties").is_none() => {
            let inner = t.get("additionalProperties").map(|a| shape_and_type(root, a).1).unwrap_or("string".into());
            (Shape::Map, format!("map[string]{inner}"))
        }
        "object" => (Shape::Object, name.unwrap_or_else(|| "Object".into())),
        "" => (Shape::Scalar, name.unwrap_or_else(|| "any".into())),
        other => (Shape::Scalar, other.to_string()),
    }
}

/// The object schema under `node` (through lists and refs), if any.
fn object_of<'a>(root: &'a Value, node: &'a Value) -> Option<&'a Value> {
    let (t, _) = resolve(root, node);
    if t.get("properties").is_some() {
        return Some(t);
    }
    if t.get("items").is_some() {
        return object_of(root, &t["items"]);
    }
    None
}

fn describe(root: &Value, node: &Value) -> Field {
    let (shape, type_name) = shape_and_type(root, node);
    let (t, _) = resolve(root, node);
    let item = if shape == Shape::Array { resolve(root, &t["items"]).0 } else { t };
    let children = object_of(root, node)
        .map(|o| {
            let req: Vec<&str> = o["required"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
            o["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), shape_and_type(root, v).1, req.contains(&k.as_str()), description(root, v)))
                .collect()
        })
        .unwrap_or_default();
    Field { type_name, shape, description: description(root, node), values: enum_values(item), children }
}

/// The field at `path` (e.g. ["status", "phase"]) of `kind`; lists are walked through.
pub fn field(kind: Kind, path: &[String]) -> Result<Field, String> {
    field_in(&schema::document_schema(kind), kind, path)
}

/// `field` on a schema already generated (`root` is `kind`'s document schema).
pub fn field_in(root: &Value, kind: Kind, path: &[String]) -> Result<Field, String> {
    let mut node = root.clone();
    for (i, step) in path.iter().enumerate() {
        let next = object_of(root, &node).and_then(|o| o["properties"].get(step.as_str()));
        match next {
            Some(n) => node = n.clone(),
            None => {
                let at = if i == 0 { kind.to_string() } else { format!("{kind}.{}", path[..i].join(".")) };
                return Err(format!("{at} has no field {step:?}"));
            }
        }
    }
    Ok(describe(root, &node))
}

/// The allowed values of `status.<name>` of `kind`, when it is an enumeration.
pub fn status_values(kind: Kind, name: &str) -> Option<Vec<String>> {
    let f = field(kind, &["status".to_string(), name.to_string()]).ok()?;
    (!f.values.is_empty()).then(|| f.values.into_iter().map(|(v, _)| v).collect())
}

fn wrap(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for w in para.split_whitespace() {
            if !line.is_empty() && line.len() + w.len() + 1 > 80 - indent {
                out.push_str(&format!("{pad}{line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        out.push_str(&format!("{pad}{line}\n"));
    }
    out
}

/// The text `explain` prints.
pub fn render(kind: Kind, path: &[String], f: &Field) -> String {
    let mut out = format!("KIND:     {}\nVERSION:  {API_VERSION}\n\n", kind.as_str());
    if let Some(last) = path.last() {
        out.push_str(&format!("FIELD:    {last} <{}>\n\n", f.type_name));
    }
    out.push_str("DESCRIPTION:\n");
    out.push_str(&wrap(if f.description.is_empty() { "<empty>" } else { &f.description }, 5));
    if !f.values.is_empty() {
        out.push_str("\nVALUES:\n");
        for (v, d) in &f.values {
            out.push_str(&format!("   {v}\n"));
            if !d.is_empty() {
                out.push_str(&wrap(d, 5));
            }
        }
    }
    if !f.children.is_empty() {
        out.push_str("\nFIELDS:\n");
        for (name, ty, req, doc) in &f.children {
            out.push_str(&format!("   {name}\t<{ty}>{}\n", if *req { " -required-" } else { "" }));
            out.push_str(&wrap(if doc.is_empty() { "<empty>" } else { doc }, 5));
            out.push('\n');
        }
    }
    out
}

/// `sectl explain`.
pub fn run(a: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let mut parts = a.target.split('.');
    let kind = parse_kind(parts.next().unwrap_or(""))?;
    let path: Vec<String> = parts.map(str::to_string).collect();
    match field(kind, &path) {
        Ok(f) => {
            print!("{}", render(kind, &path, &f));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow::anyhow!("{e}; see `sectl explain {}`", kind.lower())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn walks_refs_lists_and_enums() {
        let phase = field(Kind::LiveMigration, &p("status.phase")).unwrap();
        assert_eq!(phase.shape, Shape::Scalar);
        assert!(phase.values.iter().any(|(v, _)| v == "Completed"), "{phase:?}");
        let devs = field(Kind::VMDefinition, &p("spec.devices")).unwrap();
        assert_eq!(devs.shape, Shape::Array);
        assert!(devs.type_name.starts_with("[]"), "{}", devs.type_name);
        assert!(!devs.children.is_empty());
        let labels = field(Kind::VMDefinition, &p("metadata.labels")).unwrap();
        assert_eq!(labels.shape, Shape::Map, "{labels:?}");
        let top = field(Kind::VMDefinition, &[]).unwrap();
        assert!(top.children.iter().any(|c| c.0 == "spec" && c.2));
        assert!(field(Kind::VMDefinition, &p("spec.nope")).unwrap_err().contains("nope"));
        assert_eq!(status_values(Kind::VMRecovery, "phase").unwrap(), vec!["Pending", "Completed", "Rejected"]);
    }
}
