//! Server-side apply over HTTP: PATCH with `Content-Type: application/apply-patch+yaml`
//! on an object or its `/status`, with `fieldManager` (required, as in Kubernetes)
//! and `force`. The configuration is read behind the manifest guards, checked for
//! what an apply may carry, merged by `api::server_side_apply`, then decoded, checked
//! against the store and written with the resourceVersion it was computed from (a
//! write in between: computed again). An object that does not exist is created.
//!
//! A conflict is a 409 `kind: Status` with reason Conflict, the message
//! kube-apiserver writes (`Apply failed with 1 conflict: conflict with "mgr":
//! .spec.memoryMiB`) and one `details.causes` entry (type FieldManagerConflict) per
//! field.

use super::api::{bad, ApiErr, AppState};
use super::field_managers::{pin, RETRIES};
use super::write::{dry_apply, WriteQuery};
use crate::api::managed_fields::{dotted, Scope};
use crate::api::server_side_apply::{self as ssa, ApplyError, Conflict};
use crate::api::{Kind, Resource, API_VERSION};
use crate::auth::{Actor, Verb};
use crate::store::StoreError;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Whether the request is a server-side apply.
pub fn is_apply(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/apply-patch+yaml"))
}

/// The 409 of an apply that would change fields others own.
fn conflict_response(cs: &[Conflict]) -> Response {
    let message = if let [c] = cs {
        format!("Apply failed with 1 conflict: conflict with {}: {}", c.owner(), dotted(&c.path))
    } else {
        let mut m = format!("Apply failed with {} conflicts:", cs.len());
        for c in cs {
            m.push_str(&format!(" conflict with {}: {};", c.owner(), dotted(&c.path)));
        }
        m.trim_end_matches(';').to_string()
    };
    let mut v = super::status::body(409, "Conflict", &message);
    let causes: Vec<Value> = cs
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.owner()), "field": dotted(&c.path)}))
        .collect();
    v["details"] = json!({"causes": causes});
    (StatusCode::CONFLICT, Json(v)).into_response()
}

/// Refuses what an apply configuration may not carry: another kind or name, fields
/// outside the scope, `managedFields`, nulls.
fn check_config(c: &Value, kind: Kind, name: &str, scope: Scope) -> Result<(), ApiErr> {
    let top = c.as_object().ok_or_else(|| bad("an apply configuration must be an object"))?;
    if c["apiVersion"] != API_VERSION || c["kind"] != kind.as_str() {
        return Err(bad(format!("an apply configuration needs apiVersion: {API_VERSION} and kind: {kind}")));
    }
    if c["metadata"]["name"] != name {
        return Err(bad(format!("metadata.name must be {name:?}, the name in the path")));
    }
    let (allowed, elsewhere): (&[&str], _) = match scope {
        Scope::Main => (&["apiVersion", "kind", "metadata", "spec"], "status is applied to the /status subresource"),
        Scope::Status => (&["apiVersion", "kind", "metadata", "status"], "the /status subresource applies status only"),
    };
    if let Some(k) = top.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!("{k}: not part of an apply here ({elsewhere})")));
    }
    let meta = c["metadata"].as_object().ok_or_else(|| bad("metadata must be an object"))?;
    let meta_ok: &[&str] = match scope {
        Scope::Main => &["name", "labels", "annotations", "resourceVersion"],
        Scope::Status => &["name", "resourceVersion"],
    };
    if meta.contains_key("managedFields") {
        return Err(bad("metadata.managedFields must be nil in an apply configuration"));
    }
    if let Some(k) = meta.keys().find(|k| !meta_ok.contains(&k.as_str())) {
        return Err(bad(format!("metadata.{k}: not part of an apply here (allowed: {})", meta_ok.join(", "))));
    }
    if let Some(p) = null_at(c, &mut String::new()) {
        return Err(bad(format!("{p}: null in an apply configuration; omit the field to stop managing it")));
    }
    Ok(())
}

fn null_at(v: &Value, path: &mut String) -> Option<String> {
    match v {
        Value::Null => Some(path.trim_start_matches('.').to_string()),
        Value::Object(m) => m.iter().find_map(|(k, c)| {
            let len = path.len();
            path.push('.');
            path.push_str(k);
            let r = null_at(c, path);
            path.truncate(len);
            r
        }),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, c)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let r = null_at(c, path);
            path.truncate(len);
            r
        }),
        _ => None,
    }
}

fn internal(e: impl ToString) -> ApiErr {
    ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string())
}

/// One apply of `body` to `kind/name` (or its status).
pub async fn apply(
    s: AppState,
    who: &Actor,
    kind: Kind,
    name: String,
    q: WriteQuery,
    body: Bytes,
    scope: Scope,
) -> Result<Response, Response> {
    let dry = q.check(true).map_err(IntoResponse::into_response)?;
    let manager = q
        .field_manager
        .clone()
        .ok_or_else(|| bad("fieldManager is required for apply requests (server-side apply)").into_response())?;
    let force = super::api::parse_flag("force", q.force.as_deref()).map_err(IntoResponse::into_response)?;
    let config =
        crate::manifest::decode_value("apply configuration", &body).map_err(|e| bad(e.to_string()).into_response())?;
    check_config(&config, kind, &name, scope).map_err(IntoResponse::into_response)?;
    let user_rv = config["metadata"]["resourceVersion"].as_str().map(str::to_string);
    let now = crate::store::now_rfc3339();
    let req = ssa::Request { config: &config, manager: &manager, force, scope, now: &now };
    let mut tries = 0;
    loop {
        let current = s.store.get(kind, &name).map_err(|e| ApiErr::from(e).into_response())?;
        let r = match current {
            None if scope == Scope::Status => Err(ApiErr::from(StoreError::NotFound { kind, name: name.clone() })),
            None => create(&s, who, kind, &name, &req, dry).await,
            Some(cur) => update(&s, who, kind, &name, cur, &req, user_rv.as_deref(), dry).await,
        };
        match r {
            // Written in between (or created meantime): compute again from the new state.
            Err(ApiErr(StatusCode::CONFLICT, _, _)) if user_rv.is_none() && tries < RETRIES => tries += 1,
            Err(e) => return Err(e.into_response()),
            Ok(Outcome::Done(resp)) => return Ok(resp),
            Ok(Outcome::Conflicts(cs)) => return Err(conflict_response(&cs)),
        }
    }
}

enum Outcome {
    Done(Response),
    Conflicts(Vec<Conflict>),
}

fn merged(live: Option<&Resource>, req: &ssa::Request) -> Result<Result<ssa::Applied, Vec<Conflict>>, ApiErr> {
    let live_json = live.map(serde_json::to_value).transpose().map_err(internal)?;
    let entries = live.and_then(|l| l.meta().managed_fields.clone()).unwrap_or_default();
    match ssa::apply(live_json.as_ref(), &entries, req) {
        Ok(a) => Ok(Ok(a)),
        Err(ApplyError::Conflicts(cs)) => Ok(Err(cs)),
        Err(ApplyError::Entries(e)) => {
            Err(ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("metadata.managedFields: {e}")))
        }
    }
}

/// Decides an apply of the object's main part like any other write (the `/status`
/// path is decided by the path, in `access::guard`); the guard records the request.
async fn authorized(s: &AppState, who: &Actor, verb: Verb, obj: &Resource) -> Result<(), ApiErr> {
    let targets = super::access::targets_of(s, vec![obj.clone()]).await?;
    super::access::authorize(s, who, verb, targets).await.map(drop)
}

async fn create(
    s: &AppState,
    who: &Actor,
    kind: Kind,
    name: &str,
    req: &ssa::Request<'_>,
    dry: bool,
) -> Result<Outcome, ApiErr> {
    let a = match merged(None, req)? {
        Ok(a) => a,
        Err(cs) => return Ok(Outcome::Conflicts(cs)),
    };
    let mut obj = super::patch::decoded(s, kind, name, &a.object)?;
    obj.meta_mut().managed_fields = Some(a.entries);
    authorized(s, who, Verb::Create, &obj).await?;
    let made =
        if dry { dry_apply(s, obj).await?.1 } else { super::blocking::run(&s.store, move |st| st.create(obj)).await? };
    Ok(Outcome::Done((StatusCode::CREATED, Json(made)).into_response()))
}

#[allow(clippy::too_many_arguments)]
async fn update(
    s: &AppState,
    who: &Actor,
    kind: Kind,
    name: &str,
    cur: Resource,
    req: &ssa::Request<'_>,
    user_rv: Option<&str>,
    dry: bool,
) -> Result<Outcome, ApiErr> {
    let a = match merged(Some(&cur), req)? {
        Ok(a) => a,
        Err(cs) => return Ok(Outcome::Conflicts(cs)),
    };
    let mut next = match req.scope {
        Scope::Main => {
            let n = super::patch::decoded(s, kind, name, &a.object)?;
            authorized(s, who, Verb::Patch, &n).await?;
            n
        }
        Scope::Status => {
            let mut n = cur.clone();
            n.set_status_json(a.object["status"].clone())
                .map_err(|e| ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("status: {e}")))?;
            n
        }
    };
    next.meta_mut().resource_version = None;
    next.meta_mut().managed_fields = Some(a.entries);
    match user_rv {
        Some(rv) => next.meta_mut().resource_version = Some(rv.to_string()),
        None => {
            pin(&cur, &mut next);
        }
    }
    let written = match (req.scope, dry) {
        (Scope::Main, true) => dry_apply(s, next).await?.1,
        (Scope::Main, false) => super::blocking::run(&s.store, move |st| st.update(next)).await?,
        (Scope::Status, true) if next.meta().rv() != cur.meta().rv() => {
            return Err(StoreError::Conflict {
                kind,
                name: name.to_string(),
                expected: next.meta().rv(),
                actual: cur.meta().rv(),
            }
            .into())
        }
        (Scope::Status, true) => next,
        (Scope::Status, false) => super::blocking::run(&s.store, move |st| st.update_status(next)).await?,
    };
    Ok(Outcome::Done(Json(written).into_response()))
}
