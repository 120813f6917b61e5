//! Discovery, so Kubernetes clients can find sectl's resources: `GET /version`,
//! `/api` (no core group: APIVersions with no versions), `/apis` (APIGroupList with
//! `sectl.io`), `/apis/sectl.io` (APIGroup) and `/apis/sectl.io/v1alpha1`
//! (APIResourceList: each kind with its short names, the category `all`, its verbs,
//! `namespaced: false`, and its `/status` subresource). All derived from `Kind`, so a
//! new kind appears here without an edit. A client that asks for the aggregated form
//! first in `Accept` gets it from `/api` and `/apis` (`aggregated`).

use super::api::{ApiErr, AppState, NoParams};
use crate::api::Kind;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The group and version served.
pub const GROUP: &str = "sectl.io";
/// The version served.
pub const VERSION: &str = "v1alpha1";
/// The verbs on every kind.
pub const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

type ApiResult = Result<Response, ApiErr>;

/// The short names clients may type (`vm`), without the lower-case kind.
pub fn short_names(k: Kind) -> Vec<&'static str> {
    let lower = k.as_str().to_ascii_lowercase();
    k.short_names().iter().copied().filter(|s| *s != lower).collect()
}

/// GET /version: the Kubernetes API level sectl's REST surface follows.
pub async fn version(Query(_): Query<NoParams>) -> Response {
    Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0+sectl-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
    .into_response()
}

/// GET /api: there is no core group.
pub async fn api(Query(_): Query<NoParams>, headers: axum::http::HeaderMap) -> Response {
    if super::aggregated::wanted(&headers) {
        return super::aggregated::respond(false);
    }
    Json(json!({"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []})).into_response()
}

fn group() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

/// GET /apis.
pub async fn apis(Query(_): Query<NoParams>, headers: axum::http::HeaderMap) -> Response {
    if super::aggregated::wanted(&headers) {
        return super::aggregated::respond(true);
    }
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]})).into_response()
}

/// GET /apis/sectl.io.
pub async fn api_group(Query(_): Query<NoParams>) -> Response {
    let mut g = group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Json(g).into_response()
}

/// The APIResourceList of sectl.io/v1alpha1.
pub fn resource_list() -> Value {
    let mut resources = Vec::new();
    for k in Kind::ALL.iter().copied() {
        resources.push(json!({
            "name": k.plural(),
            "singularName": k.as_str().to_ascii_lowercase(),
            "namespaced": false,
            "kind": k.as_str(),
            "verbs": VERBS,
            "shortNames": short_names(k),
            "categories": ["all", "sectl"],
        }));
        resources.push(json!({
            "name": format!("{}/status", k.plural()),
            "singularName": "",
            "namespaced": false,
            "kind": k.as_str(),
            "verbs": ["get", "patch", "update"],
        }));
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"), "resources": resources})
}

/// GET /apis/sectl.io/v1alpha1.
pub async fn resources(State(_): State<AppState>, Query(_): Query<NoParams>) -> ApiResult {
    Ok(Json(resource_list()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_with_its_short_name_and_status() {
        let v = resource_list();
        let r = v["resources"].as_array().expect("resources");
        assert_eq!(r.len(), 14);
        let vm = r.iter().find(|x| x["name"] == "vmdefinitions").expect("vm");
        assert_eq!(vm["shortNames"], json!(["vm"]));
        assert_eq!(vm["namespaced"], false);
        assert!(r.iter().any(|x| x["name"] == "vmrecoveries/status"));
        assert!(r.iter().any(|x| x["name"] == "alarmreceivers/status"));
        let shorts: Vec<String> = r.iter().filter_map(|x| x["shortNames"].get(0)).map(|s| s.to_string()).collect();
        assert_eq!(shorts.join(","), r#""se","mc","suc","vm","lm","rec","ar""#);
    }
}
