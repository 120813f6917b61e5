//! Aggregated discovery (`apidiscovery.k8s.io/v2`): `/api` and `/apis` answer an
//! `APIGroupDiscoveryList` when `Accept` asks for it first, so kubectl learns every
//! resource in two requests instead of one per group version. Built from the same
//! `Kind` data as the unaggregated documents (`discovery`); `/api` lists no group
//! (there is no core group). The answer's Content-Type names the form, which is how
//! client-go tells it from the unaggregated one.

use super::discovery::{short_names, GROUP, VERBS, VERSION};
use crate::api::Kind;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The media type of the aggregated form.
pub const MEDIA: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether `Accept` prefers the aggregated form (its first range sectl can serve).
pub fn wanted(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match (get("g"), get("v"), get("as")) {
            (None, None, None) => return false,
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => return true,
            // Another version (v2beta1) or form: try the next range.
            _ => continue,
        }
    }
    false
}

fn gvk(kind: &str) -> Value {
    json!({"group": GROUP, "version": VERSION, "kind": kind})
}

/// The APIGroupDiscoveryList: sectl.io for `/apis`, empty for `/api`.
pub fn list(with_group: bool) -> Value {
    let resources: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            json!({
                "resource": k.plural(),
                "responseKind": gvk(k.as_str()),
                "scope": "Cluster",
                "singularResource": k.as_str().to_ascii_lowercase(),
                "verbs": VERBS,
                "shortNames": short_names(*k),
                "categories": ["all", "sectl"],
                "subresources": [{"subresource": "status", "responseKind": gvk(k.as_str()), "verbs": ["get", "patch", "update"]}],
            })
        })
        .collect();
    let items = if with_group {
        vec![json!({
            "metadata": {"name": GROUP},
            "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}],
        })]
    } else {
        Vec::new()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// The aggregated answer, with its Content-Type.
pub fn respond(with_group: bool) -> Response {
    let mut r = axum::Json(list(with_group)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation_and_document() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wanted(&accept(kubectl)));
        assert!(!wanted(&accept("application/json")));
        assert!(!wanted(&accept(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wanted(&HeaderMap::new()));
        let l = list(true);
        let res = l["items"][0]["versions"][0]["resources"].as_array().unwrap();
        assert_eq!(res.len(), Kind::ALL.len());
        let vm = res.iter().find(|r| r["resource"] == "vmdefinitions").unwrap();
        assert_eq!(vm["shortNames"], json!(["vm"]));
        assert_eq!(vm["subresources"][0]["subresource"], "status");
        assert_eq!(list(false)["items"], json!([]));
    }
}
