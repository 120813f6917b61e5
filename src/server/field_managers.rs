//! Who made a write, and the `Update` entry of `metadata.managedFields` that records
//! it: for create, replace, merge and JSON patch, sectl's own apply, of objects and of
//! their status. The manager is the `fieldManager` parameter, else the User-Agent's
//! first word as kube-apiserver derives it (`kubectl`), else `sectl`.
//!
//! The entries are computed from the object as read and written with its
//! resourceVersion, so a write in between is a conflict; callers that were not given
//! a resourceVersion read again and retry (`pin`), as Kubernetes' own writes do.

use super::api::ApiErr;
use crate::api::managed_fields::{default_manager, record_update, Scope};
use crate::api::Resource;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// How often a write without a resourceVersion is retried after a conflict.
pub const RETRIES: usize = 5;

/// The manager of a write: `fieldManager`, else from the User-Agent.
pub fn manager(field_manager: Option<&str>, headers: &HeaderMap) -> String {
    match field_manager {
        Some(m) => m.to_string(),
        None => default_manager(headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok())),
    }
}

fn json(o: &Resource) -> Result<Value, ApiErr> {
    serde_json::to_value(o).map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))
}

/// Sets `new`'s managedFields to what they are after `manager`'s Update of `current`
/// (None: a create). Entries `new` carries itself are the base, as in Kubernetes;
/// else the stored ones.
pub fn record(current: Option<&Resource>, new: &mut Resource, manager: &str, scope: Scope) -> Result<(), ApiErr> {
    let base = match (&new.meta().managed_fields, current) {
        (Some(given), _) => given.clone(),
        (None, Some(c)) => c.meta().managed_fields.clone().unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    let old = current.map(json).transpose()?;
    let entries = record_update(old.as_ref(), &json(new)?, &base, manager, scope, &crate::store::now_rfc3339())
        .map_err(|e| ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("metadata.managedFields: {e}")))?;
    new.meta_mut().managed_fields = Some(entries);
    Ok(())
}

/// Makes `new` conditional on `current`'s resourceVersion when it names none; returns
/// whether it did (then a conflict means "read again and retry").
pub fn pin(current: &Resource, new: &mut Resource) -> bool {
    if new.meta().resource_version.is_some() {
        return false;
    }
    new.meta_mut().resource_version = current.meta().resource_version.clone();
    true
}
