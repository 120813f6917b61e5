//! Tables for `kubectl get` (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`):
//! the same columns and cells as `sectl get` (`cli::output::header` and `row`); the
//! columns only `-o wide` shows have priority 1, so kubectl shows them with `-o wide`
//! only. Each row carries the object's metadata (`includeObject=Metadata`, the
//! default) or the whole object (`includeObject=Object`).
//!
//! Content negotiation: the first media range of `Accept` that sectl can serve wins;
//! a header that names only forms sectl cannot serve (PartialObjectMetadata, protobuf)
//! is a 406, never a silent substitute. A watch is always JSON lines of objects
//! (kubectl lists `application/json` as acceptable there too).

use super::api::{bad, ApiErr};
use crate::api::{Kind, Resource};
use crate::cli::output;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

/// What the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The objects as JSON.
    Json,
    /// A meta.k8s.io Table.
    Table,
}

/// Reads `Accept`.
pub fn negotiate(headers: &HeaderMap) -> Result<Form, ApiErr> {
    let Some(accept) = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Form::Json);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        match get("as") {
            None => return Ok(Form::Json),
            Some("Table") if get("g") == Some("meta.k8s.io") && matches!(get("v"), Some("v1") | Some("v1beta1")) => {
                return Ok(Form::Table)
            }
            Some(_) => continue,
        }
    }
    Err(ApiErr(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        format!("Accept {accept:?}: sectl serves application/json and application/json;as=Table;v=v1;g=meta.k8s.io"),
    ))
}

/// `includeObject`: None, Metadata (default) or Object.
pub fn include(v: Option<&str>) -> Result<Option<&'static str>, ApiErr> {
    match v {
        None | Some("Metadata") => Ok(Some("Metadata")),
        Some("Object") => Ok(Some("Object")),
        Some("None") => Ok(None),
        Some(o) => Err(bad(format!("includeObject {o:?}: expected None, Metadata or Object"))),
    }
}

/// The Table of `objs` of `kind`.
pub fn table(kind: Kind, objs: &[Resource], rv: u64, cont: Option<String>, include: Option<&str>) -> Value {
    let narrow = output::header(kind, false);
    let columns: Vec<Value> = output::header(kind, true)
        .iter()
        .map(|c| {
            json!({
                "name": c,
                "type": "string",
                "format": if *c == "NAME" { "name" } else { "" },
                "description": "",
                "priority": if narrow.contains(c) { 0 } else { 1 },
            })
        })
        .collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut r = json!({"cells": output::row(o, true)});
            match include {
                Some("Object") => r["object"] = json!(o),
                Some(_) => {
                    r["object"] =
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.meta()})
                }
                None => {}
            }
            r
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Form, ApiErr> {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ACCEPT, v.parse().expect("header"));
        negotiate(&h)
    }

    #[test]
    fn negotiation_and_wide_columns() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(accept(kubectl).ok(), Some(Form::Table));
        assert_eq!(accept("application/json").ok(), Some(Form::Json));
        assert_eq!(accept("*/*").ok(), Some(Form::Json));
        assert!(accept("application/vnd.kubernetes.protobuf").is_err());
        assert!(accept("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io").is_err());
        let t = table(Kind::VMDefinition, &[], 7, None, Some("Metadata"));
        let cols = t["columnDefinitions"].as_array().expect("columns");
        let pri = |n: &str| cols.iter().find(|c| c["name"] == n).map(|c| c["priority"].clone());
        assert_eq!(pri("MEMORY"), Some(json!(0)));
        assert_eq!(pri("CPUS"), Some(json!(1)));
    }
}
