//! Writes of one object (create, replace, delete) and delete-collection, with the
//! parameters Kubernetes clients send: `dryRun=All` (full validation, nothing written,
//! the would-be result returned), `fieldManager` and `fieldValidation`, and the
//! `DeleteOptions` body of a delete (its `dryRun` and `preconditions` honoured).
//!
//! Decisions: sectl's decoder always refuses unknown and duplicate fields, so every
//! `fieldValidation` value gets strict validation (an unknown field is an error, never
//! dropped). `fieldManager` is checked (Kubernetes' limit: 128 printable characters)
//! and recorded as an `Update` entry of `metadata.managedFields` (`field_managers`);
//! a replace that names no resourceVersion is made conditional on the version it was
//! recorded against and retried after a conflict. sectl objects have no dependents and no finalizers, so every
//! `propagationPolicy` deletes the same way, at once, and `gracePeriodSeconds` has
//! nothing to wait for. A dry run other than `All` is refused, as Kubernetes does.

use super::access::{authorize, record_ok, recorded, targets_of};
use super::api::{bad, check_against_store, decode_body, kind_of, ApiErr, AppState};
use super::field_managers::{manager, pin, record, RETRIES};
use super::selector::Selector;
use crate::api::managed_fields::Scope;
use crate::api::{Kind, Resource, API_VERSION};
use crate::auth::{Actor, Verb};
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

type ApiResult = Result<Response, ApiErr>;

/// Query parameters of create, replace and patch.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WriteQuery {
    /// `All` or absent.
    #[serde(rename = "dryRun")]
    pub dry_run: Option<String>,
    /// Who makes the change.
    #[serde(rename = "fieldManager")]
    pub field_manager: Option<String>,
    /// Strict, Warn or Ignore (sectl is always strict).
    #[serde(rename = "fieldValidation")]
    pub field_validation: Option<String>,
    /// Server-side apply: take over fields another manager owns.
    pub force: Option<String>,
    /// Ignored by Kubernetes too: output formatting only.
    pub pretty: Option<String>,
}

impl WriteQuery {
    /// Checks the values; returns whether this is a dry run. `force` is for
    /// server-side apply only.
    pub fn check(&self, server_side_apply: bool) -> Result<bool, ApiErr> {
        if self.force.is_some() && !server_side_apply {
            return Err(bad("force applies to server-side apply (PATCH with application/apply-patch+yaml) only"));
        }
        if let Some(m) = &self.field_manager {
            if m.is_empty() || m.chars().count() > 128 || m.chars().any(|c| c.is_control()) {
                return Err(bad(format!("fieldManager {m:?}: expected 1 to 128 printable characters")));
            }
        }
        match self.field_validation.as_deref() {
            None | Some("Strict") | Some("Warn") | Some("Ignore") => {}
            Some(o) => return Err(bad(format!("fieldValidation {o:?}: expected Strict, Warn or Ignore"))),
        }
        if let Some(p) = self.pretty.as_deref() {
            super::api::parse_flag("pretty", Some(p))?;
        }
        dry_run(self.dry_run.as_deref())
    }
}

/// `dryRun`: absent, empty or `All`.
pub fn dry_run(v: Option<&str>) -> Result<bool, ApiErr> {
    match v {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(o) => Err(bad(format!("dryRun {o:?}: the only dry run is All"))),
    }
}

fn one_object(body: &Bytes, kind: Kind, name: Option<&str>) -> Result<Resource, ApiErr> {
    let mut objs = decode_body(body)?;
    let fits = objs.len() == 1 && objs[0].kind() == kind && name.is_none_or(|n| objs[0].name() == n);
    if !fits {
        return Err(bad(match name {
            Some(n) => format!("send the {} object named {n}", kind.as_str()),
            None => format!("send one {} object", kind.as_str()),
        }));
    }
    Ok(objs.remove(0))
}

/// POST /<plural>.
pub async fn create(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Path(plural): Path<String>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    let dry = q.check(false)?;
    let mut obj = one_object(&body, kind, None)?;
    let targets = authorize(&s, &who, Verb::Create, targets_of(&s, vec![obj.clone()]).await?).await?;
    check_against_store(&s, std::slice::from_ref(&obj))?;
    record(None, &mut obj, &manager(q.field_manager.as_deref(), &headers), Scope::Main)?;
    if !dry {
        let made = super::blocking::run(&s.store, move |st| st.create(obj)).await?;
        let resp = (StatusCode::CREATED, Json(made)).into_response();
        let drafts = targets.into_iter().map(|t| (t, "created".to_string())).collect();
        return record_ok(&s, &who, Verb::Create, drafts, resp).await;
    }
    if s.store.get(kind, obj.name())?.is_some() {
        return Err(StoreError::AlreadyExists { kind, name: obj.name().to_string() }.into());
    }
    let (_, would) = dry_apply(&s, obj).await?;
    Ok(recorded((StatusCode::CREATED, Json(would)).into_response()))
}

/// PUT /<plural>/<name>.
pub async fn update(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    let dry = q.check(false)?;
    let given = one_object(&body, kind, Some(&name))?;
    let targets = authorize(&s, &who, Verb::Update, targets_of(&s, vec![given.clone()]).await?).await?;
    check_against_store(&s, std::slice::from_ref(&given))?;
    let manager = manager(q.field_manager.as_deref(), &headers);
    let mut tries = 0;
    loop {
        let current = s.store.get(kind, &name)?.ok_or_else(|| StoreError::NotFound { kind, name: name.clone() })?;
        let mut obj = given.clone();
        record(Some(&current), &mut obj, &manager, Scope::Main)?;
        let pinned = pin(&current, &mut obj);
        if dry {
            return Ok(recorded(Json(dry_apply(&s, obj).await?.1).into_response()));
        }
        match super::blocking::run(&s.store, move |st| st.update(obj)).await {
            Err(StoreError::Conflict { .. }) if pinned && tries < RETRIES => tries += 1,
            r => {
                let resp = Json(r?).into_response();
                let drafts = targets.into_iter().map(|t| (t, "updated".to_string())).collect();
                return record_ok(&s, &who, Verb::Update, drafts, resp).await;
            }
        }
    }
}

/// The store's apply in dry-run mode: the full checks, the would-be object.
pub async fn dry_apply(s: &AppState, obj: Resource) -> Result<(crate::store::ApplyOutcome, Resource), ApiErr> {
    let store = s.store.clone();
    let mut r = tokio::task::spawn_blocking(move || store.apply(vec![obj], true))
        .await
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))??;
    r.pop().ok_or_else(|| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "empty apply result".into()))
}

/// The body of a DELETE (`DeleteOptions`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteOptions {
    kind: Option<String>,
    api_version: Option<String>,
    #[serde(default)]
    dry_run: Vec<String>,
    propagation_policy: Option<String>,
    grace_period_seconds: Option<i64>,
    orphan_dependents: Option<bool>,
    preconditions: Option<Preconditions>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// Query parameters of a delete.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteQuery {
    dry_run: Option<String>,
    propagation_policy: Option<String>,
    grace_period_seconds: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    pretty: Option<String>,
}

fn delete_options(q: &DeleteQuery, body: &Bytes) -> Result<(bool, Option<Preconditions>), ApiErr> {
    let o: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("DeleteOptions body: {e}")))?
    };
    if o.kind.as_deref().is_some_and(|k| k != "DeleteOptions") {
        return Err(bad("the body of a delete must be DeleteOptions"));
    }
    if o.api_version.as_deref().is_some_and(|v| !matches!(v, "v1" | "meta.k8s.io/v1")) {
        return Err(bad("DeleteOptions: apiVersion must be v1 or meta.k8s.io/v1"));
    }
    for p in [o.propagation_policy.as_deref(), q.propagation_policy.as_deref()].into_iter().flatten() {
        if !matches!(p, "Background" | "Foreground" | "Orphan") {
            return Err(bad(format!("propagationPolicy {p:?}: expected Background, Foreground or Orphan")));
        }
    }
    if o.grace_period_seconds.is_some_and(|g| g < 0)
        || q.grace_period_seconds.as_deref().is_some_and(|g| g.parse::<u64>().is_err())
    {
        return Err(bad("gracePeriodSeconds must be a whole number of seconds, 0 or more"));
    }
    let _ = o.orphan_dependents;
    let mut dry = dry_run(q.dry_run.as_deref())?;
    for d in &o.dry_run {
        dry |= dry_run(Some(d))?;
    }
    if let Some(p) = q.pretty.as_deref() {
        super::api::parse_flag("pretty", Some(p))?;
    }
    Ok((dry, o.preconditions))
}

fn check_preconditions(p: &Option<Preconditions>, obj: &Resource) -> Result<(), ApiErr> {
    let Some(p) = p else { return Ok(()) };
    let meta = obj.meta();
    if let Some(uid) = &p.uid {
        if meta.uid.as_deref() != Some(uid) {
            return Err(ApiErr(
                StatusCode::CONFLICT,
                "Conflict",
                format!("precondition failed: uid is {}, not {uid}", meta.uid.as_deref().unwrap_or("unset")),
            ));
        }
    }
    if let Some(rv) = &p.resource_version {
        if meta.resource_version.as_deref() != Some(rv) {
            return Err(ApiErr(
                StatusCode::CONFLICT,
                "Conflict",
                format!("precondition failed: resourceVersion is {}, not {rv}", meta.rv()),
            ));
        }
    }
    Ok(())
}

/// DELETE /<plural>/<name>.
pub async fn delete(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
    body: Bytes,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    if q.label_selector.is_some() || q.field_selector.is_some() {
        return Err(bad("labelSelector and fieldSelector apply to a delete of a collection, not of one object"));
    }
    let (dry, pre) = delete_options(&q, &body)?;
    let current =
        s.store.get(kind, &name)?.ok_or_else(|| ApiErr::from(StoreError::NotFound { kind, name: name.clone() }))?;
    let targets = authorize(&s, &who, Verb::Delete, targets_of(&s, vec![current.clone()]).await?).await?;
    check_preconditions(&pre, &current)?;
    if dry {
        return Ok(recorded(Json(current).into_response()));
    }
    let gone = super::blocking::run(&s.store, move |st| st.delete(kind, &name)).await?;
    let resp = Json(gone).into_response();
    let drafts = targets.into_iter().map(|t| (t, "deleted".to_string())).collect();
    record_ok(&s, &who, Verb::Delete, drafts, resp).await
}

/// DELETE /<plural>: every object the selectors pick (all when none is given).
pub async fn delete_collection(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Path(plural): Path<String>,
    Query(q): Query<DeleteQuery>,
    body: Bytes,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    let (dry, pre) = delete_options(&q, &body)?;
    if pre.is_some() {
        return Err(bad("preconditions apply to a delete of one object"));
    }
    let sel = Selector::parse(q.label_selector.as_deref(), q.field_selector.as_deref()).map_err(bad)?;
    let (objs, rv) = s.store.list(kind)?;
    let objs: Vec<Resource> = objs.into_iter().filter(|o| sel.matches(o)).collect();
    // All or nothing: one object the user may not delete refuses the request.
    let targets = authorize(&s, &who, Verb::Delete, targets_of(&s, objs.clone()).await?).await?;
    let mut deleted = Vec::new();
    let mut done = Vec::new();
    for (o, t) in objs.into_iter().zip(targets) {
        if dry {
            deleted.push(o);
            continue;
        }
        let n = o.name().to_string();
        match super::blocking::run(&s.store, move |st| st.delete(kind, &n)).await {
            Ok(d) => {
                deleted.push(d);
                done.push((t, "deleted".to_string()));
            }
            // Deleted meanwhile by someone else: that is what was asked.
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => {
                // What was deleted before the failure is recorded; the failure by `guard`.
                record_ok(&s, &who, Verb::Delete, done, Response::default()).await?;
                return Err(e.into());
            }
        }
    }
    let resp = Json(json!({
        "apiVersion": API_VERSION,
        "kind": format!("{}List", kind.as_str()),
        "metadata": {"resourceVersion": if dry { rv } else { s.store.resource_version() }.to_string()},
        "items": deleted,
    }))
    .into_response();
    if dry || done.is_empty() {
        // Nothing deleted: nothing to record (an empty delete changes nothing).
        return Ok(recorded(resp));
    }
    record_ok(&s, &who, Verb::Delete, done, resp).await
}
