//! OpenAPI documents for Kubernetes clients, generated from the same schemars types as
//! `schemas/` (`api::schema::document_schema`), so `kubectl explain vm.spec.devices`
//! and kubectl's validation see exactly what the decoder accepts.
//!
//! * `/openapi/v3`: the index (`paths` -> `serverRelativeURL` with a content hash).
//! * `/openapi/v3/apis/sectl.io/v1alpha1`: OpenAPI 3.0 with one schema per kind (named
//!   `io.sectl.v1alpha1.<Kind>`, with `x-kubernetes-group-version-kind`), its list,
//!   and the paths with their query parameters. The PATCH operations list
//!   `fieldValidation`, so kubectl leaves validation to the server, which is strict.
//! * `/openapi/v2`: the same schemas as Swagger 2.0 definitions (JSON only).
//!
//! Draft-07's `const` becomes a one-value `enum` (OpenAPI 3.0 has no `const`).

use super::discovery::{GROUP, VERSION};
use crate::api::schema::document_schema;
use crate::api::Kind;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The schema name of a kind.
pub fn schema_name(kind: Kind) -> String {
    format!("io.sectl.{VERSION}.{}", kind.as_str())
}

/// Rewrites `$ref`s to `prefix` and `const` to `enum`, recursively.
fn convert(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/definitions/") {
                    *r = format!("{prefix}{name}");
                }
            }
            if let Some(c) = m.remove("const") {
                m.insert("enum".into(), json!([c]));
            }
            for x in m.values_mut() {
                convert(x, prefix);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| convert(x, prefix)),
        _ => {}
    }
}

fn gvk(kind: &str) -> Value {
    json!([{"group": GROUP, "version": VERSION, "kind": kind}])
}

/// Every schema (kinds, lists, shared definitions), with refs under `prefix`.
fn schemas(prefix: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for k in Kind::ALL.iter().copied() {
        let mut doc = document_schema(k);
        let Some(obj) = doc.as_object_mut() else { continue };
        if let Some(Value::Object(defs)) = obj.remove("definitions") {
            for (n, mut d) in defs {
                convert(&mut d, prefix);
                out.insert(n, d);
            }
        }
        for key in ["$schema", "$id", "title"] {
            obj.remove(key);
        }
        convert(&mut doc, prefix);
        doc["x-kubernetes-group-version-kind"] = gvk(k.as_str());
        out.insert(schema_name(k), doc);
        let list = format!("{}List", k.as_str());
        out.insert(
            format!("{}List", schema_name(k)),
            json!({
                "description": format!("A list of {}.", k.as_str()),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "continue": {"type": "string"}}},
                    "items": {"type": "array", "items": {"$ref": format!("{prefix}{}", schema_name(k))}},
                },
                "x-kubernetes-group-version-kind": gvk(&list),
            }),
        );
    }
    out
}

fn param(name: &str, ty: &str, v3: bool) -> Value {
    if v3 {
        json!({"name": name, "in": "query", "schema": {"type": ty}, "uniqueItems": true})
    } else {
        json!({"name": name, "in": "query", "type": ty, "uniqueItems": true})
    }
}

/// What an operation takes and answers with.
#[derive(Clone, Copy, PartialEq)]
enum Body {
    /// No request body.
    None,
    /// The object (POST, PUT).
    Object,
    /// A merge patch or a JSON patch.
    Patch,
}

fn op(kind: Kind, action: &str, params: &[(&str, &str)], body: Body, prefix: &str, v3: bool) -> Value {
    let object = json!({"$ref": format!("{prefix}{}", schema_name(kind))});
    let answer = match action {
        "list" | "deletecollection" => json!({"$ref": format!("{prefix}{}List", schema_name(kind))}),
        _ => object.clone(),
    };
    let mut codes = vec!["200"];
    if action == "post" {
        codes.push("201");
    }
    let responses: Map<String, Value> = codes
        .into_iter()
        .map(|c| {
            let r = if v3 {
                json!({"description": "OK", "content": {"application/json": {"schema": answer}}})
            } else {
                json!({"description": "OK", "schema": answer})
            };
            (c.to_string(), r)
        })
        .collect();
    let mut parameters: Vec<Value> = params.iter().map(|(n, t)| param(n, t, v3)).collect();
    let merge = json!({"type": "object", "description": "a JSON merge patch (RFC 7386)"});
    let json_patch = json!({"type": "array", "description": "a JSON patch (RFC 6902)", "items": {"type": "object"}});
    let mut o = json!({
        "operationId": format!("{action}{}", kind.as_str()),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": kind.as_str()},
        "responses": responses,
    });
    match (body, v3) {
        (Body::None, _) => {}
        (Body::Object, true) => {
            o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": object}}})
        }
        (Body::Patch, true) => {
            o["requestBody"] = json!({"required": true, "content": {
                "application/merge-patch+json": {"schema": merge},
                "application/json-patch+json": {"schema": json_patch},
            }})
        }
        (Body::Object, false) => {
            parameters.push(json!({"name": "body", "in": "body", "required": true, "schema": object}))
        }
        (Body::Patch, false) => {
            o["consumes"] = json!(["application/merge-patch+json", "application/json-patch+json"]);
            parameters.push(json!({"name": "body", "in": "body", "required": true, "schema": merge}));
        }
    }
    o["parameters"] = Value::Array(parameters);
    o
}

const WRITE: &[(&str, &str)] = &[("dryRun", "string"), ("fieldManager", "string"), ("fieldValidation", "string")];
const LIST: &[(&str, &str)] = &[
    ("labelSelector", "string"),
    ("fieldSelector", "string"),
    ("limit", "integer"),
    ("continue", "string"),
    ("resourceVersion", "string"),
    ("watch", "boolean"),
    ("timeoutSeconds", "integer"),
    ("allowWatchBookmarks", "boolean"),
];

fn paths(prefix: &str, v3: bool) -> Map<String, Value> {
    let base = crate::client::PREFIX;
    let mut out = Map::new();
    for k in Kind::ALL.iter().copied() {
        let name = json!([if v3 {
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}})
        } else {
            json!({"name": "name", "in": "path", "required": true, "type": "string"})
        }]);
        out.insert(
            format!("{base}/{}", k.plural()),
            json!({
                "get": op(k, "list", LIST, Body::None, prefix, v3),
                "post": op(k, "post", WRITE, Body::Object, prefix, v3),
                "delete": op(k, "deletecollection", &[("dryRun", "string"), ("labelSelector", "string"), ("fieldSelector", "string")], Body::None, prefix, v3),
            }),
        );
        let mut one = json!({
            "parameters": name,
            "get": op(k, "get", &[], Body::None, prefix, v3),
            "put": op(k, "put", WRITE, Body::Object, prefix, v3),
            "patch": op(k, "patch", WRITE, Body::Patch, prefix, v3),
        });
        // `/status` has no DELETE (405): the document lists only what is served.
        let status = one.clone();
        one["delete"] = op(k, "delete", &[("dryRun", "string")], Body::None, prefix, v3);
        out.insert(format!("{base}/{}/{{name}}", k.plural()), one);
        out.insert(format!("{base}/{}/{{name}}/status", k.plural()), status);
    }
    out
}

/// The OpenAPI 3.0 document of sectl.io/v1alpha1.
pub fn v3_group() -> &'static (Vec<u8>, String) {
    static DOC: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    DOC.get_or_init(|| {
        let prefix = "#/components/schemas/";
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "sectl", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths(prefix, true),
            "components": {"schemas": schemas(prefix)},
        });
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = format!("{:X}", Sha256::digest(&bytes));
        (bytes, hash)
    })
}

/// The Swagger 2.0 document.
pub fn v2() -> &'static Vec<u8> {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        let prefix = "#/definitions/";
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "sectl", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths(prefix, false),
            "definitions": schemas(prefix),
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    })
}

fn json_bytes(b: &[u8]) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], b.to_vec()).into_response()
}

/// GET /openapi/v3.
pub async fn v3_index(Query(_): Query<super::api::NoParams>) -> Response {
    let hash = &v3_group().1;
    axum::Json(json!({"paths": {format!("apis/{GROUP}/{VERSION}"): {"serverRelativeURL": format!("/openapi/v3/apis/{GROUP}/{VERSION}?hash={hash}")}}}))
        .into_response()
}

/// The query of the group document: the hash the index gave.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashQuery {
    hash: Option<String>,
}

/// GET /openapi/v3/apis/sectl.io/v1alpha1.
pub async fn v3(Query(q): Query<HashQuery>) -> Response {
    let (bytes, hash) = v3_group();
    if q.hash.as_ref().is_some_and(|h| h != hash) {
        return super::api::ApiErr(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no OpenAPI document with that hash: read /openapi/v3 again".into(),
        )
        .into_response();
    }
    json_bytes(bytes)
}

/// GET /openapi/v2.
pub async fn v2_doc(Query(_): Query<super::api::NoParams>) -> Response {
    json_bytes(v2())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_resolve_and_kinds_carry_their_gvk() {
        let doc: Value = serde_json::from_slice(&v3_group().0).expect("json");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').expect("end")];
            assert!(schemas.contains_key(name), "dangling ref {name}");
        }
        assert!(!text.contains("\"const\""));
        let vm = &schemas["io.sectl.v1alpha1.VMDefinition"];
        assert_eq!(vm["x-kubernetes-group-version-kind"][0]["kind"], "VMDefinition");
        let v2: Value = serde_json::from_slice(v2()).expect("json");
        assert!(v2["definitions"]["io.sectl.v1alpha1.SEServer"].is_object());
    }

    #[test]
    fn operations_are_those_served_with_their_bodies() {
        let doc: Value = serde_json::from_slice(&v3_group().0).expect("json");
        let p = &doc["paths"];
        let one = &p["/apis/sectl.io/v1alpha1/vmdefinitions/{name}"];
        let status = &p["/apis/sectl.io/v1alpha1/vmdefinitions/{name}/status"];
        assert!(one["delete"].is_object() && status["delete"].is_null(), "no DELETE on /status");
        assert_eq!(
            one["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.sectl.v1alpha1.VMDefinition"
        );
        let patch = &one["patch"]["requestBody"]["content"];
        assert_eq!(patch["application/json-patch+json"]["schema"]["type"], "array");
        assert_eq!(patch["application/merge-patch+json"]["schema"]["type"], "object");
        let list = &p["/apis/sectl.io/v1alpha1/vmdefinitions"]["get"]["responses"]["200"];
        assert_eq!(
            list["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.sectl.v1alpha1.VMDefinitionList"
        );
        assert!(p["/apis/sectl.io/v1alpha1/vmdefinitions"]["post"]["responses"]["201"].is_object());
    }
}
