//! What a person can do from the dashboard, each through the same code as the REST
//! API (`server::api::run_sim`, `server::api::ack_all`, `server::write::create` and
//! `delete`): simulated power off/on of a unit (labelled as a simulation),
//! acknowledging all events, checking or starting a live migration and cancelling one.
//!
//! Every action is a POST form guarded three ways (SameSite=Strict cookie, the
//! session's CSRF token, `Origin`), and needs a principal that may write. The script
//! sends forms with `fetch` and `Accept: application/json` and shows the answer in
//! the page's status line (the tiles change by the live stream); without the script
//! the server redirects back to the dashboard, or shows the error as a page.

use super::session::{same, same_origin, Session};
use crate::server::api::{ApiErr, AppState};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

/// The answer to an action: JSON for the script, a redirect or an error page otherwise.
fn reply(headers: &HeaderMap, result: Result<String, (StatusCode, String)>) -> Response {
    match (result, wants_json(headers)) {
        (Ok(msg), true) => Json(json!({"ok": true, "message": msg})).into_response(),
        (Err((code, msg)), true) => (code, Json(json!({"ok": false, "message": msg}))).into_response(),
        (Ok(_), false) => Redirect::to("/ui/").into_response(),
        (Err((code, msg)), false) => super::error_page(code, &msg),
    }
}

/// The checks every action passes first: a session that may write, a same-origin
/// request and the session's CSRF token.
fn guard(s: &AppState, headers: &HeaderMap, csrf: Option<&str>) -> Result<Session, (StatusCode, String)> {
    let Some((_, sess)) = s.ui.find(s, headers) else {
        return Err((StatusCode::UNAUTHORIZED, "the session has ended; log in again".into()));
    };
    if !same_origin(headers) {
        return Err((StatusCode::FORBIDDEN, "this request comes from another site".into()));
    }
    if !csrf.is_some_and(|c| same(c.as_bytes(), sess.csrf.as_bytes())) {
        return Err((
            StatusCode::FORBIDDEN,
            "the form's CSRF token does not match this session; reload the page".into(),
        ));
    }
    if !sess.who.can_write {
        return Err((StatusCode::FORBIDDEN, format!("user {} may not change anything", sess.who.name)));
    }
    Ok(sess)
}

/// The session's user as the API knows it (roles, audit), or 401 when it is gone.
fn actor(s: &AppState, sess: &Session) -> Result<crate::auth::Actor, (StatusCode, String)> {
    let user = crate::auth::users::get(s.store.as_ref(), &sess.who.name)
        .ok()
        .flatten()
        .ok_or_else(|| (StatusCode::UNAUTHORIZED, "the session's user is gone; log in again".to_string()))?;
    Ok(crate::auth::Actor { user, source: crate::auth::audit::Source::Http })
}

/// Records a dashboard action in the audit log, as the REST API records its own.
async fn audited(
    s: &AppState,
    who: &crate::auth::Actor,
    verb: crate::auth::Verb,
    what: &str,
    reason: String,
) -> Result<(), (StatusCode, String)> {
    let t = crate::auth::Target::other(what);
    crate::server::access::record_ok(s, who, verb, vec![(t, reason)], ().into_response()).await.map_err(api_err)?;
    Ok(())
}

fn api_err(e: ApiErr) -> (StatusCode, String) {
    (e.0, e.2)
}

fn form_err(e: FormRejection) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, e.body_text())
}

/// The power form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// A unit's name (MU, SU, HNC).
    pub unit: String,
    /// `off` or `on`.
    pub op: String,
}

/// POST /ui/action/power: `sim power off|on UNIT`.
pub async fn power(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<PowerForm>, FormRejection>,
) -> Response {
    let result = async {
        let Form(f) = form.map_err(form_err)?;
        let sess = guard(&s, &headers, Some(&f.csrf))?;
        let who = actor(&s, &sess)?;
        let args = vec!["power".to_string(), f.op.clone(), f.unit.clone()];
        let v = crate::server::api::run_sim(&s, &args).await.map_err(api_err)?;
        let at = format!("at {}", v["simulatedTime"].as_str().unwrap_or("?"));
        audited(&s, &who, crate::auth::Verb::Sim, &args.join(" "), at).await?;
        Ok(format!(
            "Simulation: {} powered {} (simulated time {})",
            f.unit,
            f.op,
            v["simulatedTime"].as_str().unwrap_or("?")
        ))
    }
    .await;
    reply(&headers, result)
}

/// The acknowledge form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// Where to go afterwards without the script: `events`, or the dashboard.
    #[serde(default)]
    pub back: Option<String>,
}

/// POST /ui/action/ack: acknowledge all events.
pub async fn ack(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let result = async {
        let Form(f) = form.map_err(form_err)?;
        let sess = guard(&s, &headers, Some(&f.csrf))?;
        let who = actor(&s, &sess)?;
        let s2 = s.clone();
        let n = tokio::task::spawn_blocking(move || crate::server::api::ack_all(&s2))
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(api_err)?;
        audited(&s, &who, crate::auth::Verb::Ack, "events", format!("{n} acknowledged")).await?;
        Ok((format!("{n} event(s) acknowledged"), f.back))
    }
    .await;
    match result {
        Ok((_, Some(back))) if back == "events" && !wants_json(&headers) => Redirect::to("/ui/events").into_response(),
        r => reply(&headers, r.map(|(m, _)| m)),
    }
}

/// The migrate form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// The VMDefinition's name.
    pub vm: String,
    /// `check` (CHECK-VM-MIGRATION) or `start`.
    pub mode: String,
}

/// A fresh LiveMigration name for a VM: `check-VM-xxxxxx` or `lm-VM-xxxxxx`.
fn lm_name(prefix: &str, vm: &str) -> String {
    let room = 63 - prefix.len() - 8;
    let vm: String = vm.chars().take(room).collect();
    let tail = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}-{}", vm.trim_end_matches('-'), &tail[..6])
}

/// POST /ui/action/migrate: creates a LiveMigration to the other SU of the VM's SU
/// cluster (`checkOnly` for a check) through the REST API's create.
pub async fn migrate(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<MigrateForm>, FormRejection>,
) -> Response {
    let result = async {
        let Form(f) = form.map_err(form_err)?;
        let sess = guard(&s, &headers, Some(&f.csrf))?;
        let who = actor(&s, &sess)?;
        let check = match f.mode.as_str() {
            "check" => true,
            "start" => false,
            other => return Err((StatusCode::BAD_REQUEST, format!("mode {other:?}: expected check or start"))),
        };
        let vm = f.vm.trim();
        crate::api::ObjectName::new(vm).map_err(|e| (StatusCode::BAD_REQUEST, format!("VM {vm:?}: {e}")))?;
        let name = lm_name(if check { "check" } else { "lm" }, vm);
        let body = json!({
            "apiVersion": crate::api::API_VERSION,
            "kind": "LiveMigration",
            "metadata": {"name": name},
            "spec": {"vm": vm, "checkOnly": check},
        });
        // The migration is the user's own request: authorized and audited as theirs.
        let r = crate::server::write::create(
            State(s.clone()),
            axum::Extension(who),
            axum::extract::Path("livemigrations".to_string()),
            axum::extract::Query(Default::default()),
            HeaderMap::new(),
            axum::body::Bytes::from(body.to_string()),
        )
        .await
        .map_err(api_err)?;
        if !r.status().is_success() {
            return Err((r.status(), format!("creating {name} failed")));
        }
        let what = if check { "check of the migration" } else { "live migration" };
        Ok(format!("{name}: {what} of {vm} created; its progress shows below"))
    }
    .await;
    reply(&headers, result)
}

/// The cancel form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// The LiveMigration's name.
    pub lm: String,
}

/// POST /ui/action/cancel: cancels a migration not finished yet by deleting its
/// LiveMigration through the REST API's delete (authorized and audited as the user);
/// the controller rolls it back. A finished one is refused (nothing to cancel).
pub async fn cancel(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CancelForm>, FormRejection>,
) -> Response {
    let result = async {
        let Form(f) = form.map_err(form_err)?;
        let sess = guard(&s, &headers, Some(&f.csrf))?;
        let who = actor(&s, &sess)?;
        let name = crate::api::ObjectName::new(f.lm.trim())
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("migration {:?}: {e}", f.lm)))?
            .to_string();
        let current = s
            .store
            .get(crate::api::Kind::LiveMigration, &name)
            .map_err(|e| api_err(e.into()))?
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("migration {name} does not exist (any more)")))?;
        let v = serde_json::to_value(&current).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if !super::migrations::cancellable(&v) {
            let phase = super::site::text(&v, "/status/phase");
            return Err((StatusCode::CONFLICT, format!("migration {name} has finished ({phase}): nothing to cancel")));
        }
        // The very object whose phase was read (a new one of the same name is not
        // cancelled by mistake).
        let pre = json!({"preconditions": {"uid": current.meta().uid}});
        let r = crate::server::write::delete(
            State(s.clone()),
            axum::Extension(who),
            axum::extract::Path(("livemigrations".to_string(), name.clone())),
            axum::extract::Query(Default::default()),
            axum::body::Bytes::from(pre.to_string()),
        )
        .await
        .map_err(api_err)?;
        if !r.status().is_success() {
            return Err((r.status(), format!("cancelling {name} failed")));
        }
        Ok(format!("{name}: cancelled; the migration is rolled back and its VM stays on the source SU"))
    }
    .await;
    match result {
        Ok(_) if !wants_json(&headers) => Redirect::to("/ui/migrations").into_response(),
        r => reply(&headers, r),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lm_names_are_valid_for_the_longest_vm_name() {
        let n = super::lm_name("check", &"a".repeat(63));
        assert!(crate::api::ObjectName::new(&n).is_ok(), "{n}");
        assert!(crate::api::ObjectName::new(super::lm_name("lm", "vm12prod")).is_ok());
    }
}
