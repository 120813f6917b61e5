//! Structural schemas for CustomResourceDefinitions, from the same schemars types as
//! `schemas/` (`schema::document_schema`). Kubernetes requires of a CRD's
//! `openAPIV3Schema`: a `type` on every node, no `$ref`, no `additionalProperties`
//! beside `properties`, only the keywords of `JSONSchemaProps`, and no `uniqueItems`.
//!
//! How the draft-07 schema is rewritten: `$ref`s are inlined (a description beside
//! the ref wins); `const` becomes a one-value `enum`; a `oneOf`/`anyOf` of string
//! enums (schemars' documented enums) becomes one string enum; integer-or-string
//! becomes `x-kubernetes-int-or-string`; any other union keeps its object branches'
//! properties merged (looser than sectl's decoder, which stays the strict one); a
//! schema that allows anything gets `x-kubernetes-preserve-unknown-fields`.
//! `additionalProperties: false` is dropped: Kubernetes prunes unknown fields instead.
//! Formats Kubernetes does not know (`uint32`, ...) are dropped; their bounds stay.

use serde_json::{json, Map, Value};

/// The keywords of Kubernetes' JSONSchemaProps kept from the generated schema.
const KEPT: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
];

/// Formats kube-apiserver validates; others are dropped.
pub const FORMATS: &[&str] = &["int32", "int64", "float", "double", "byte", "date", "date-time", "duration", "uuid"];

/// The structural form of `schema`, resolving `#/definitions/..` refs in `defs`.
pub fn structural(schema: &Value, defs: &Map<String, Value>) -> Value {
    structural_at(schema, defs, 0)
}

/// Deeper than this, a (recursive) schema keeps any value.
const MAX_DEPTH: usize = 64;

fn structural_at(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Some(m) = schema.as_object() else { return json!({"x-kubernetes-preserve-unknown-fields": true}) };
    if depth > MAX_DEPTH {
        return json!({"x-kubernetes-preserve-unknown-fields": true});
    }
    let mut m = inline_ref(m, defs);
    if let Some(c) = m.remove("const") {
        m.insert("enum".into(), json!([c]));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = m.remove(key) {
            let branches: Vec<Value> = branches.iter().map(|b| structural_at(b, defs, depth + 1)).collect();
            union(&mut m, &branches);
        }
    }
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .map(|p| p.iter().map(|(n, s)| (n.clone(), structural_at(s, defs, depth + 1))).collect())
                    .unwrap_or_default();
                out.insert(k, Value::Object(props));
            }
            "items" => {
                out.insert(k, structural_at(&v, defs, depth + 1));
            }
            "additionalProperties" if v.is_object() => {
                out.insert(k, structural_at(&v, defs, depth + 1));
            }
            "additionalProperties" => {}
            "format" if !v.as_str().is_some_and(|f| FORMATS.contains(&f)) => {}
            "default" if v.is_null() => {}
            _ if KEPT.contains(&k.as_str()) || k.starts_with("x-kubernetes-") => {
                out.insert(k, v);
            }
            _ => {}
        }
    }
    if out.contains_key("properties") {
        out.remove("additionalProperties");
        out.entry("type").or_insert(json!("object"));
    }
    let typed = out.get("type").is_some_and(Value::is_string)
        || out.contains_key("x-kubernetes-int-or-string")
        || out.contains_key("x-kubernetes-preserve-unknown-fields");
    if !typed {
        out.remove("type");
        out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    Value::Object(out)
}

fn inline_ref(m: &Map<String, Value>, defs: &Map<String, Value>) -> Map<String, Value> {
    let mut m = m.clone();
    let target =
        m.remove("$ref").and_then(|r| r.as_str().and_then(|r| r.strip_prefix("#/definitions/")).map(String::from));
    if let Some(Value::Object(d)) = target.and_then(|t| defs.get(&t)) {
        for (k, v) in d {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    m
}

/// Folds structural `branches` into `m`.
fn union(m: &mut Map<String, Value>, branches: &[Value]) {
    let ty = |b: &Value| b["type"].as_str().map(str::to_string);
    let types: std::collections::BTreeSet<Option<String>> = branches.iter().map(ty).collect();
    let only = |t: &str| types.len() == 1 && types.contains(&Some(t.to_string()));
    if only("string") && branches.iter().all(|b| b["enum"].is_array()) {
        let all: Vec<Value> = branches.iter().flat_map(|b| b["enum"].as_array().cloned().unwrap_or_default()).collect();
        m.insert("type".into(), json!("string"));
        m.insert("enum".into(), Value::Array(all));
    } else if types.len() == 1 && types.iter().next().is_some_and(Option::is_some) && !only("object") {
        m.insert("type".into(), branches[0]["type"].clone());
    } else if types == [Some("integer".to_string()), Some("string".to_string())].into_iter().collect() {
        m.insert("x-kubernetes-int-or-string".into(), json!(true));
    } else if only("object") {
        let mut props = Map::new();
        for b in branches {
            if let Some(p) = b["properties"].as_object() {
                for (k, v) in p {
                    props.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        m.insert("type".into(), json!("object"));
        if props.is_empty() {
            m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        } else {
            m.insert("properties".into(), Value::Object(props));
        }
    } else {
        m.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_inlined_enums_merged_int_or_string() {
        let defs = json!({
            "E": {"oneOf": [{"type": "string", "enum": ["A"]}, {"type": "string", "enum": ["B"]}]},
            "I": {"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["*"]}]},
        });
        let s = json!({"type": "object", "additionalProperties": false, "properties": {
            "e": {"description": "d", "$ref": "#/definitions/E"},
            "i": {"$ref": "#/definitions/I"},
            "n": {"type": "integer", "format": "uint32", "minimum": 0},
            "any": true,
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
        }});
        let out = structural(&s, defs.as_object().unwrap());
        assert_eq!(out["properties"]["e"], json!({"description": "d", "type": "string", "enum": ["A", "B"]}));
        assert_eq!(out["properties"]["i"], json!({"x-kubernetes-int-or-string": true}));
        assert_eq!(out["properties"]["n"], json!({"type": "integer", "minimum": 0}));
        assert_eq!(out["properties"]["any"], json!({"x-kubernetes-preserve-unknown-fields": true}));
        assert_eq!(out["properties"]["m"]["additionalProperties"], json!({"type": "string"}));
        assert!(out.get("additionalProperties").is_none());
    }
}
