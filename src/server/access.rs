//! Who is asking and what is recorded, for every API request:
//! - `authenticate`: the bearer token names a user (tokens compared as SHA-256
//!   hashes); 401 otherwise. The user travels in the request as an `Actor`.
//! - `guard`: decides the requests whose target the path names (ack, sim, prune,
//!   users, audit, status writes); a refusal is recorded and answered 403 with a
//!   `kind: Status` naming the user, the verb, the object and the missing right.
//!   Object writes (create, update, patch, delete, apply) are decided by their
//!   handlers, which know the object (its system and server units). After the
//!   handler, a mutating request whose handler did not record it (`Recorded` marks
//!   those that did) is recorded from its path and status: so every mutating request
//!   and every refused one is recorded exactly once.
//! - the routes of users (`/users`, admin only), `whoami`, `audit` (+ `verify`) and
//!   `events/summary`.

use super::api::{ApiErr, AppState, NoParams};
use crate::api::Kind;
use crate::auth::{self, audit, manage, users, Actor, AuthError, Outcome, Role, Source, Target, Verb};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

/// Marks a response whose handler wrote its own audit record(s) (or had nothing to
/// record: a dry run).
#[derive(Clone, Copy)]
pub struct Recorded;

/// `resp` marked as recorded.
pub fn recorded(mut resp: Response) -> Response {
    resp.extensions_mut().insert(Recorded);
    resp
}

/// A refusal as the API answers it: 403 `Forbidden`, or the store's error.
impl From<AuthError> for ApiErr {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Denied(d) => ApiErr(StatusCode::FORBIDDEN, "Forbidden", d.to_string()),
            AuthError::Store(s) => s.into(),
        }
    }
}

impl From<manage::ManageError> for ApiErr {
    fn from(e: manage::ManageError) -> Self {
        let msg = e.to_string();
        match e {
            manage::ManageError::Auth(a) => a.into(),
            manage::ManageError::User(users::UserError::NotFound(_)) => ApiErr(StatusCode::NOT_FOUND, "NotFound", msg),
            manage::ManageError::User(users::UserError::Exists(_)) => {
                ApiErr(StatusCode::CONFLICT, "AlreadyExists", msg)
            }
            manage::ManageError::User(users::UserError::Invalid(_)) => {
                ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", msg)
            }
            manage::ManageError::User(users::UserError::Store(s)) => s.into(),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiErr {
    ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string())
}

/// The bearer token names a user; 401 otherwise.
pub async fn authenticate(State(s): State<AppState>, headers: HeaderMap, mut req: Request, next: Next) -> Response {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(super::api::bearer).unwrap_or("");
    let store = s.store.clone();
    let token = given.to_string();
    let found = match tokio::task::spawn_blocking(move || users::by_token(store.as_ref(), &token)).await {
        Ok(r) => r,
        Err(e) => return internal(e).into_response(),
    };
    let user = match found {
        Ok(Some(u)) if !given.is_empty() => u,
        Ok(_) => {
            return ApiErr(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a valid bearer token is required (SECTL_TOKEN, or the token file in the server's data directory)"
                    .into(),
            )
            .into_response()
        }
        Err(e) => return internal(e).into_response(),
    };
    req.extensions_mut().insert(Actor { user, source: Source::Http });
    next.run(req).await
}

/// What the path says a request does: verb, kind (for object routes), name.
fn classify(method: &Method, path: &str) -> Option<(Verb, Option<Kind>, String)> {
    let rest = path.strip_prefix(crate::client::PREFIX).map(|r| r.trim_start_matches('/'));
    let rest = match rest {
        Some(r) => r,
        None if path == "/audit" || path.starts_with("/audit/") => return Some((Verb::Audit, None, "-".into())),
        None => return None,
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let read = matches!(*method, Method::GET | Method::HEAD);
    let named = |i: usize| parts.get(i).map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    match parts.first().copied() {
        Some("audit") => Some((Verb::Audit, None, "-".into())),
        Some("users") => Some((Verb::Users, None, named(1))),
        Some("events") if parts.get(1) == Some(&"ack") => Some((Verb::Ack, None, "-".into())),
        Some("sim") => Some((Verb::Sim, None, "-".into())),
        Some("sources") if parts.get(1) == Some(&"prune") && !read => Some((Verb::Prune, None, "-".into())),
        Some("apply") => Some((Verb::Apply, None, "-".into())),
        Some(plural) => {
            let kind = Kind::ALL.iter().copied().find(|k| k.plural() == plural)?;
            let verb = match (method.clone(), parts.get(2)) {
                (m, _) if m == Method::GET || m == Method::HEAD => Verb::Read,
                (_, Some(&"status")) => Verb::Status,
                (Method::POST, _) => Verb::Create,
                (Method::PUT, _) => Verb::Update,
                (Method::PATCH, _) => Verb::Patch,
                (Method::DELETE, _) => Verb::Delete,
                _ => return None,
            };
            Some((verb, Some(kind), named(1)))
        }
        None => None,
    }
}

/// Verbs decided here from the path (the rest by the handlers, which know the object).
fn decided_by_path(v: Verb) -> bool {
    matches!(v, Verb::Ack | Verb::Sim | Verb::Prune | Verb::Users | Verb::Audit | Verb::Status)
}

/// Reads an error response's message (and gives the response back).
async fn message_of(resp: Response) -> (Response, String) {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, super::api::MAX_BODY_BYTES).await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let msg = v["message"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&bytes).into());
    (Response::from_parts(parts, axum::body::Body::from(bytes)), msg)
}

/// Decides path-named targets, runs the handler, records what it did not.
pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(who) = req.extensions().get::<Actor>().cloned() else { return next.run(req).await };
    let method = req.method().clone();
    let Some((verb, kind, name)) = classify(&method, req.uri().path()) else { return next.run(req).await };
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    // whoami and the audit of one's own requests are for everyone; GET /users lists.
    let target = Target { kind, name, system: None, vm_name: None, server_units: vec![] };
    if decided_by_path(verb) {
        let store = s.store.clone();
        let (w, t) = (who.clone(), target.clone());
        let r = tokio::task::spawn_blocking(move || w.authorize(store.as_ref(), verb, &[t])).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return ApiErr::from(e).into_response(),
            Err(e) => return internal(e).into_response(),
        }
    }
    let resp = next.run(req).await;
    if !mutating || resp.extensions().get::<Recorded>().is_some() || resp.status() == StatusCode::FORBIDDEN {
        return resp;
    }
    let status = resp.status();
    let (resp, reason) = if status.is_success() { (resp, "ok".to_string()) } else { message_of(resp).await };
    let result = match status {
        s if s.is_success() => Outcome::Ok,
        StatusCode::CONFLICT | StatusCode::GONE => Outcome::Conflict,
        _ => Outcome::Invalid,
    };
    let d = who.draft(verb, &target, result, auth::short(&reason));
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || audit::append(store.as_ref(), vec![d])).await {
        Ok(Ok(_)) => resp,
        Ok(Err(e)) => ApiErr::from(e).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// Decides an object write in a handler (records a refusal).
pub async fn authorize(s: &AppState, who: &Actor, verb: Verb, targets: Vec<Target>) -> Result<Vec<Target>, ApiErr> {
    let store = s.store.clone();
    let w = who.clone();
    tokio::task::spawn_blocking(move || w.authorize(store.as_ref(), verb, &targets).map(|()| targets))
        .await
        .map_err(internal)?
        .map_err(ApiErr::from)
}

/// Records a handler's successful write (one record per target), then marks the
/// response.
pub async fn record_ok(
    s: &AppState,
    who: &Actor,
    verb: Verb,
    drafts: Vec<(Target, String)>,
    resp: Response,
) -> Result<Response, ApiErr> {
    let store = s.store.clone();
    let drafts: Vec<auth::Draft> = drafts.iter().map(|(t, r)| who.draft(verb, t, Outcome::Ok, r.clone())).collect();
    tokio::task::spawn_blocking(move || audit::append(store.as_ref(), drafts)).await.map_err(internal)??;
    Ok(recorded(resp))
}

/// The targets of objects about to be written (their systems and server units).
pub async fn targets_of(s: &AppState, objs: Vec<crate::api::Resource>) -> Result<Vec<Target>, ApiErr> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || auth::targets_of(store.as_ref(), &objs)).await.map_err(internal)
}

/// GET /whoami.
pub async fn whoami(Extension(who): Extension<Actor>, Query(_): Query<NoParams>) -> Response {
    Json(who.user.public()).into_response()
}

/// GET /users.
pub async fn list_users(State(s): State<AppState>, Query(_): Query<NoParams>) -> Result<Response, ApiErr> {
    let all = users::list(s.store.as_ref()).map_err(|e| ApiErr::from(manage::ManageError::from(e)))?;
    Ok(Json(json!({"items": all.iter().map(users::User::public).collect::<Vec<_>>()})).into_response())
}

/// The body of POST /users.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewUser {
    name: String,
    role: Role,
    #[serde(default)]
    systems: Vec<String>,
    #[serde(default)]
    server_units: Vec<String>,
}

/// POST /users: the token is in the answer, once.
pub async fn add_user(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Query(_): Query<NoParams>,
    body: Bytes,
) -> Result<Response, ApiErr> {
    let n: NewUser = serde_json::from_slice(&body).map_err(|e| super::api::bad(format!("user: {e}")))?;
    let store = s.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        manage::add(store.as_ref(), &who, &n.name, n.role, n.systems, n.server_units)
    })
    .await
    .map_err(internal)?;
    // `manage` records its refusals itself.
    let (u, token) = match r {
        Ok(x) => x,
        Err(e) => return Ok(recorded(ApiErr::from(e).into_response())),
    };
    let v = json!({"name": u.name, "role": u.role, "token": token});
    Ok(recorded((StatusCode::CREATED, Json(v)).into_response()))
}

/// DELETE /users/<name>.
pub async fn delete_user(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Path(name): Path<String>,
    Query(_): Query<NoParams>,
) -> Result<Response, ApiErr> {
    let store = s.store.clone();
    let r = tokio::task::spawn_blocking(move || manage::delete(store.as_ref(), &who, &name)).await.map_err(internal)?;
    let u = match r {
        Ok(u) => u,
        Err(e) => return Ok(recorded(ApiErr::from(e).into_response())),
    };
    Ok(recorded(Json(u.public()).into_response()))
}

/// POST /users/<name>/rotate. Rotating `admin` also rewrites the data directory's
/// token file and kubeconfig, where the admin token lives.
pub async fn rotate_user(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Path(name): Path<String>,
    Query(_): Query<NoParams>,
    body: Bytes,
) -> Result<Response, ApiErr> {
    if !body.is_empty() {
        return Err(super::api::bad("send no body"));
    }
    let store = s.store.clone();
    let dir = s.data_dir.clone();
    let r = tokio::task::spawn_blocking(move || manage::rotate(store.as_ref(), &who, &name)).await.map_err(internal)?;
    let (u, token) = match r {
        Ok(x) => x,
        Err(e) => return Ok(recorded(ApiErr::from(e).into_response())),
    };
    if let (true, Some(dir)) = (manage::is_file_admin(&u.name), dir) {
        super::write_admin_token(&dir, &token).map_err(internal)?;
    }
    Ok(recorded(Json(json!({"name": u.name, "role": u.role, "token": token})).into_response()))
}

/// Query of GET /audit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user: Option<String>,
    /// A duration (e.g. 1h): records of the last DURATION.
    since: Option<String>,
}

/// The records a query picks.
pub fn select(recs: Vec<audit::Record>, user: Option<&str>, since: Option<&str>) -> Result<Vec<audit::Record>, String> {
    let cutoff = match since {
        None => None,
        Some(d) => {
            let ms = crate::sim::parse_duration(d).map_err(|e| format!("since: {e}"))?;
            // Further back than the clock can go: every record.
            std::time::SystemTime::now().checked_sub(std::time::Duration::from_millis(ms))
        }
    };
    Ok(recs
        .into_iter()
        .filter(|r| user.is_none_or(|u| r.user == u))
        .filter(|r| cutoff.is_none_or(|c| humantime::parse_rfc3339(&r.time).map(|t| t >= c).unwrap_or(true)))
        .collect())
}

/// GET /audit.
pub async fn audit_log(State(s): State<AppState>, Query(q): Query<AuditQuery>) -> Result<Response, ApiErr> {
    let store = s.store.clone();
    let recs = tokio::task::spawn_blocking(move || audit::records(store.as_ref())).await.map_err(internal)??;
    let items = select(recs, q.user.as_deref(), q.since.as_deref()).map_err(super::api::bad)?;
    Ok(Json(json!({"items": items})).into_response())
}

/// GET /audit/verify.
pub async fn audit_verify(State(s): State<AppState>, Query(_): Query<NoParams>) -> Result<Response, ApiErr> {
    let store = s.store.clone();
    let v = tokio::task::spawn_blocking(move || audit::verify(store.as_ref())).await.map_err(internal)??;
    Ok(Json(v).into_response())
}

/// GET /events/summary: unacknowledged events per priority.
pub async fn events_summary(State(s): State<AppState>, Query(_): Query<NoParams>) -> Result<Response, ApiErr> {
    let events = super::blocking::run(&s.store, |st| st.events()).await?;
    Ok(Json(auth::summary::unacknowledged(&events)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_checked_and_a_far_back_cutoff_selects_everything() {
        assert!(select(Vec::new(), None, Some("900y")).expect("900 years back").is_empty());
        assert!(select(Vec::new(), None, Some("soon")).is_err());
    }
}
