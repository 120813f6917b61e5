//! PATCH of an object and of its `/status`, by content type:
//! `application/merge-patch+json` (RFC 7386) and `application/json-patch+json`
//! (RFC 6902, the `json-patch` crate). Strategic merge patch exists only for
//! Kubernetes' built-in types and is refused (415), as for custom resources in
//! Kubernetes. Server-side apply (`application/apply-patch+yaml`) is handed to `ssa`;
//! its CBOR form is refused (415). Merge and JSON patches record an `Update` entry in
//! `metadata.managedFields` for their manager (`field_managers`).
//!
//! The patched document goes through the same decoder, cross-object checks and
//! optimistic concurrency as PUT: it keeps the resourceVersion it was read at, so a
//! write in between is a 409 unless the patch names no resourceVersion, in which case
//! the patch is applied again to the newer object (a few times), as Kubernetes does.

use super::api::{bad, check_against_store, decode_body, kind_of, ApiErr, AppState};
use super::field_managers::{manager, record, RETRIES};
use super::write::{dry_apply, WriteQuery};
use crate::api::managed_fields::Scope;
use crate::api::{Kind, Resource};
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde_json::Value;

type ApiResult = Result<Response, ApiErr>;

enum PatchDoc {
    Merge(Value),
    Json(json_patch::Patch),
}

fn unsupported(msg: String) -> ApiErr {
    ApiErr(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", msg)
}

fn parse(headers: &HeaderMap, body: &Bytes) -> Result<PatchDoc, ApiErr> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let value = || serde_json::from_slice::<Value>(body).map_err(|e| bad(format!("patch body is not JSON: {e}")));
    match media.as_str() {
        "application/merge-patch+json" => Ok(PatchDoc::Merge(value()?)),
        "application/json-patch+json" => serde_json::from_value(value()?)
            .map(PatchDoc::Json)
            .map_err(|e| bad(format!("not a JSON patch (RFC 6902): {e}"))),
        "application/strategic-merge-patch+json" => Err(unsupported(
            "strategic merge patch is for Kubernetes' built-in types; use application/merge-patch+json or application/json-patch+json".into(),
        )),
        "application/apply-patch+cbor" => Err(unsupported(
            "server-side apply is served as application/apply-patch+yaml only, not CBOR".into(),
        )),
        "" => Err(unsupported("a PATCH needs a Content-Type: application/merge-patch+json or application/json-patch+json".into())),
        o => Err(unsupported(format!(
            "Content-Type {o:?} is not a patch sectl serves: use application/merge-patch+json or application/json-patch+json"
        ))),
    }
}

/// Applies the patch to the object's JSON.
fn patched(current: &Resource, p: &PatchDoc) -> Result<Value, ApiErr> {
    let mut doc = serde_json::to_value(current)
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))?;
    match p {
        PatchDoc::Merge(m) => json_patch::merge(&mut doc, m),
        PatchDoc::Json(ops) => apply_json_patch(&mut doc, ops)?,
    }
    Ok(doc)
}

/// How large a document may grow while a JSON patch is applied: the request body's
/// limit. The patched object must fit one stored object (1.5 MiB) in the end; the
/// slack lets a patch pass through larger states on its way.
pub const MAX_PATCHED_BYTES: usize = super::api::MAX_BODY_BYTES;

/// Applies the operations one by one, keeping an upper bound of the document's encoded
/// size: `add`/`replace` add their value, `copy` the value it copies (`remove`, `move`
/// and `test` add nothing). `copy` can double the document per operation, so without
/// the bound a patch of a few dozen operations would ask for terabytes; with it the
/// patch is refused (413) before the operation that would cross the limit. The bound
/// never shrinks, so a patch adding and removing more than the limit in total is
/// refused too (it would be near the body limit anyway). The document is a copy: a
/// failed patch leaves nothing behind.
fn apply_json_patch(doc: &mut Value, ops: &[json_patch::PatchOperation]) -> Result<(), ApiErr> {
    use json_patch::PatchOperation as Op;
    let mut size = encoded_len(doc);
    for (i, op) in ops.iter().enumerate() {
        let (grows, path) = match op {
            Op::Add(a) => (encoded_len(&a.value), &a.path),
            Op::Replace(r) => (encoded_len(&r.value), &r.path),
            Op::Copy(c) => (doc.pointer(c.from.as_str()).map_or(0, encoded_len), &c.path),
            Op::Remove(r) => (0, &r.path),
            Op::Move(m) => (0, &m.path),
            Op::Test(t) => (0, &t.path),
        };
        size = size.saturating_add(grows);
        if size > MAX_PATCHED_BYTES {
            return Err(ApiErr(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!(
                    "the JSON patch's operation '/{i}' (at path '{path}') would make the object larger than \
                     {MAX_PATCHED_BYTES} bytes; one stored object may be at most 1.5 MiB"
                ),
            ));
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| {
            ApiErr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("the JSON patch does not apply: operation '/{i}' failed at path '{}': {}", e.path, e.kind),
            )
        })?;
    }
    Ok(())
}

/// The length of `v` encoded as JSON, without building the text.
fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a counter cannot fail (string keys, finite numbers).
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Whether the patch itself names a resourceVersion (then a conflict is the caller's).
fn names_rv(p: &PatchDoc) -> bool {
    match p {
        PatchDoc::Merge(m) => !m["metadata"]["resourceVersion"].is_null(),
        PatchDoc::Json(ops) => serde_json::to_string(ops).is_ok_and(|s| s.contains("/metadata/resourceVersion")),
    }
}

fn get(s: &AppState, kind: Kind, name: &str) -> Result<Resource, ApiErr> {
    s.store.get(kind, name)?.ok_or_else(|| StoreError::NotFound { kind, name: name.to_string() }.into())
}

/// The patched object, decoded and checked like a PUT body. One larger than a stored
/// object may be is refused before it is decoded (decoding megabytes only to refuse
/// them would let a patch hold a worker for seconds).
pub(super) fn decoded(s: &AppState, kind: Kind, name: &str, doc: &Value) -> Result<Resource, ApiErr> {
    let text = doc.to_string();
    crate::store::check_object_size(kind, name, text.len())?;
    let mut objs = decode_body(&Bytes::from(text))?;
    if objs.len() != 1 || objs[0].kind() != kind || objs[0].name() != name {
        return Err(bad(format!("a patch may not change the kind or the name (of {} {name})", kind.as_str())));
    }
    let obj = objs.remove(0);
    check_against_store(s, std::slice::from_ref(&obj))?;
    Ok(obj)
}

/// PATCH /<plural>/<name>.
pub async fn object(
    State(s): State<AppState>,
    Extension(who): Extension<crate::auth::Actor>,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let kind = kind_of(&plural).map_err(IntoResponse::into_response)?;
    if super::ssa::is_apply(&headers) {
        return super::ssa::apply(s, &who, kind, name, q, body, Scope::Main).await;
    }
    patch_object(s, &who, kind, name, q, headers, body).await.map_err(IntoResponse::into_response)
}

async fn patch_object(
    s: AppState,
    who: &crate::auth::Actor,
    kind: Kind,
    name: String,
    q: WriteQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = parse(&headers, &body)?;
    let dry = q.check(false)?;
    let manager = manager(q.field_manager.as_deref(), &headers);
    let mut tries = 0;
    loop {
        let current = get(&s, kind, &name)?;
        let mut obj = decoded(&s, kind, &name, &patched(&current, &p)?)?;
        record(Some(&current), &mut obj, &manager, Scope::Main)?;
        let verb = crate::auth::Verb::Patch;
        let targets = super::access::targets_of(&s, vec![obj.clone()]).await?;
        let targets = super::access::authorize(&s, who, verb, targets).await?;
        if dry {
            return Ok(super::access::recorded(Json(dry_apply(&s, obj).await?.1).into_response()));
        }
        match super::blocking::run(&s.store, move |st| st.update(obj)).await {
            Err(StoreError::Conflict { .. }) if !names_rv(&p) && tries < RETRIES => tries += 1,
            r => {
                let resp = Json(r?).into_response();
                let t = targets.into_iter().map(|t| (t, "patched".to_string())).collect();
                return super::access::record_ok(&s, who, verb, t, resp).await;
            }
        }
    }
}

/// PATCH /<plural>/<name>/status: only the status of the patched document is taken.
pub async fn status(
    State(s): State<AppState>,
    Extension(who): Extension<crate::auth::Actor>,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let kind = kind_of(&plural).map_err(IntoResponse::into_response)?;
    if super::ssa::is_apply(&headers) {
        return super::ssa::apply(s, &who, kind, name, q, body, Scope::Status).await;
    }
    patch_status(s, kind, name, q, headers, body).await.map_err(IntoResponse::into_response)
}

async fn patch_status(
    s: AppState,
    kind: Kind,
    name: String,
    q: WriteQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = parse(&headers, &body)?;
    let dry = q.check(false)?;
    let who = manager(q.field_manager.as_deref(), &headers);
    let mut tries = 0;
    loop {
        let current = get(&s, kind, &name)?;
        let doc = patched(&current, &p)?;
        let mut next = current.clone();
        next.set_status_json(doc["status"].clone())
            .map_err(|e| ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("status: {e}")))?;
        record(Some(&current), &mut next, &who, Scope::Status)?;
        if let Some(rv) = doc["metadata"]["resourceVersion"].as_str() {
            next.meta_mut().resource_version = Some(rv.to_string());
        }
        if dry {
            return Ok(Json(next).into_response());
        }
        match super::blocking::run(&s.store, move |st| st.update_status(next)).await {
            Err(StoreError::Conflict { .. }) if !names_rv(&p) && tries < RETRIES => tries += 1,
            r => return Ok(Json(r?).into_response()),
        }
    }
}
