//! The REST API of `sectl serve`, at kube-like paths:
//! `/apis/sectl.io/v1alpha1/<plural>[/<name>[/status]]` (list, get, create, update,
//! status, delete; `?watch=1&resourceVersion=N` streams ADDED/MODIFIED/DELETED as JSON
//! lines, 410 when the history is gone), plus `apply` (atomic batch), `events`,
//! `events/ack`, `sim` and `sources`. Every `/apis` request needs the bearer token
//! (scheme `Bearer`, any case, RFC 7235). Errors are JSON: `{"code", "reason",
//! "message"}`, including the framework's own refusals (413, bad query strings).
//!
//! Lists take `limit` and `continue` as Kubernetes does: the token is opaque (the
//! list's resourceVersion and the last name, base64) and a continued page is the
//! snapshot of the first one, or 410 when an object still to come changed since. A
//! list without `limit` is streamed from the store in chunks, so 36,000 objects never
//! sit in memory at once. A query parameter a route does not know is refused (400).

use super::engine::Cmd;
use super::gitops::Sources;
use crate::api::managed_fields::Scope as ManagedScope;
use crate::api::{Kind, Resource};
use crate::auth::{Actor, Verb};
use crate::manifest;
use crate::store::{Store, StoreError};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The largest request body: the same as a manifest file (16 MiB), so whatever
/// `sectl apply -f` accepts from a file also passes over HTTP.
pub const MAX_BODY_BYTES: usize = manifest::MAX_FILE_BYTES as usize;
/// A request (body read and handler) must finish within this; a watch's response
/// starts at once and then streams without limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `sim` request waits for the controller to carry it out.
pub const SIM_TIMEOUT: Duration = Duration::from_secs(30);
/// The most objects one page of a list holds, whatever `limit` asks (Kubernetes
/// allows a server to return fewer; `continue` fetches the rest).
pub const MAX_PAGE: usize = 5000;
/// Objects read from the store per chunk of a streamed list.
const CHUNK: usize = 500;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Requests to the controller thread.
    pub engine: Arc<Mutex<mpsc::Sender<Cmd>>>,
    /// The admin token (written into the kubeconfig).
    pub token: Arc<String>,
    /// The data directory whose token file and kubeconfig hold admin's token
    /// (rewritten when admin's token is rotated); None in tests without one.
    pub data_dir: Option<std::path::PathBuf>,
    /// GitOps per-file status.
    pub sources: Sources,
    /// False once shutdown began.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Simulated time (ms), published by the controller loop.
    pub sim_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Becomes true when shutdown begins; open watch streams end then.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// The web dashboard's sessions.
    pub ui: Arc<crate::ui::Sessions>,
    /// The one reader of the history that feeds every watch stream (started by the
    /// first watch).
    pub watch_hub: super::watch_hub::Slot,
}

/// An API error response.
pub struct ApiErr(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(super::status::body(self.0.as_u16(), self.1, &self.2))).into_response()
    }
}

impl From<StoreError> for ApiErr {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::NotFound { .. } => ApiErr(StatusCode::NOT_FOUND, "NotFound", msg),
            StoreError::AlreadyExists { .. } => ApiErr(StatusCode::CONFLICT, "AlreadyExists", msg),
            StoreError::Conflict { .. } | StoreError::StateChanged { .. } => {
                ApiErr(StatusCode::CONFLICT, "Conflict", msg)
            }
            StoreError::Expired { .. } => ApiErr(StatusCode::GONE, "Expired", msg),
            StoreError::Invalid(_) | StoreError::Remote(_) => ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", msg),
            StoreError::TooLarge { .. } => ApiErr(StatusCode::PAYLOAD_TOO_LARGE, "TooLarge", msg),
            StoreError::Backend(_) | StoreError::InUse { .. } => {
                ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", msg)
            }
            StoreError::SnapshotGone { .. } => ApiErr(StatusCode::GONE, "Expired", msg),
        }
    }
}

type ApiResult = Result<Response, ApiErr>;

pub(super) fn kind_of(plural: &str) -> Result<Kind, ApiErr> {
    Kind::ALL
        .iter()
        .copied()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| ApiErr(StatusCode::NOT_FOUND, "NotFound", format!("no resource type {plural:?}")))
}

/// Decodes a request body (JSON or YAML) into objects, with the decoder's checks.
pub(super) fn decode_body(body: &Bytes) -> Result<Vec<Resource>, ApiErr> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiErr(StatusCode::BAD_REQUEST, "BadRequest", "body is not UTF-8".into()))?;
    // A JSON list wrapper {"items": [...]} or one object; YAML is a superset of JSON.
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let docs: Vec<String> = match value.get("items").and_then(|i| i.as_array()) {
        Some(items) => items.iter().map(|i| i.to_string()).collect(),
        None => vec![text.to_string()],
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        match manifest::decode(&format!("item {}", i + 1), d.as_bytes()) {
            Ok(ds) => out.extend(ds.into_iter().map(|d| d.resource)),
            Err(es) => errors.extend(es.into_iter().map(|e| e.to_string())),
        }
    }
    if !errors.is_empty() {
        return Err(ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", errors.join("\n")));
    }
    Ok(out)
}

/// The metadata of a list (the items are written as stored, see `paging`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a> {
    api_version: &'static str,
    kind: &'a str,
    metadata: ListMeta,
    items: &'a [Resource],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListMeta {
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_: Option<String>,
}

/// A route that takes no query parameters: any is refused, naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    watch: Option<String>,
    // Strings, parsed by the handler, so that a bad value is a JSON error too.
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
    #[serde(rename = "fieldSelector")]
    field_selector: Option<String>,
    #[serde(rename = "timeoutSeconds")]
    timeout_seconds: Option<String>,
    #[serde(rename = "allowWatchBookmarks")]
    allow_watch_bookmarks: Option<String>,
    #[serde(rename = "resourceVersionMatch")]
    resource_version_match: Option<String>,
    #[serde(rename = "sendInitialEvents")]
    send_initial_events: Option<String>,
    pretty: Option<String>,
    #[serde(rename = "includeObject")]
    include_object: Option<String>,
}

pub(super) fn bad(msg: impl Into<String>) -> ApiErr {
    ApiErr(StatusCode::BAD_REQUEST, "BadRequest", msg.into())
}

pub(super) fn parse_flag(name: &str, v: Option<&str>) -> Result<bool, ApiErr> {
    match v {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(o) => Err(bad(format!("{name}={o:?}: expected true or false"))),
    }
}

fn parse_rv(v: &str) -> Result<u64, ApiErr> {
    v.parse::<u64>().map_err(|_| bad(format!("resourceVersion {v:?} is not a number")))
}

async fn list(
    State(s): State<AppState>,
    Path(plural): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    let watching = parse_flag("watch", q.watch.as_deref())?;
    check_list_params(&q, watching)?;
    let include = super::table::include(q.include_object.as_deref())?;
    if !watching {
        let form = super::table::negotiate(&headers)?;
        return list_objects(s, kind, q, form, include).await;
    }
    if q.limit.is_some() || q.continue_.is_some() {
        return Err(bad("limit and continue apply to lists, not to a watch"));
    }
    let selector =
        super::selector::Selector::parse(q.label_selector.as_deref(), q.field_selector.as_deref()).map_err(bad)?;
    let from = q.resource_version.as_deref().map(parse_rv).transpose()?;
    let params = super::watch::Params {
        from,
        timeout: super::watch::parse_timeout(q.timeout_seconds.as_deref()).map_err(bad)?,
        bookmarks: parse_flag("allowWatchBookmarks", q.allow_watch_bookmarks.as_deref())?,
        selector,
    };
    let hub = super::watch_hub::WatchHub::get(&s.watch_hub, &s.store, &s.stop).await?;
    let joined = hub
        .join()
        .ok_or_else(|| ApiErr(StatusCode::SERVICE_UNAVAILABLE, "ShuttingDown", "the server is stopping".into()))?;
    // Read after joining, so that the hub's batches continue it; refused at once
    // (410) when the history no longer reaches back.
    let read = match from.filter(|rv| *rv > 0) {
        Some(rv) => Some(super::blocking::run(&s.store, move |st| st.watch_from(rv)).await?),
        None => None,
    };
    let start = super::watch::Start { joined, read };
    Ok(super::watch::respond(s.store.clone(), kind, params, start, s.stop.clone()))
}

/// Checks the parameters lists and watches share: `resourceVersionMatch` (only
/// NotOlderThan, which is what sectl gives), `sendInitialEvents` (not served) and `pretty`.
fn check_list_params(q: &ListQuery, watching: bool) -> Result<(), ApiErr> {
    match q.resource_version_match.as_deref() {
        None | Some("") | Some("NotOlderThan") => {}
        Some("Exact") => {
            return Err(bad(
                "resourceVersionMatch=Exact is not served: sectl keeps no older snapshots; use NotOlderThan",
            ))
        }
        Some(o) => return Err(bad(format!("resourceVersionMatch {o:?}: expected NotOlderThan"))),
    }
    if parse_flag("sendInitialEvents", q.send_initial_events.as_deref())? {
        return Err(bad(
            "sendInitialEvents is not served; watch without resourceVersion (or with 0) to get the current state first",
        ));
    }
    parse_flag("pretty", q.pretty.as_deref())?;
    if !watching && (q.timeout_seconds.is_some() || q.allow_watch_bookmarks.is_some()) {
        // A list answers at once; Kubernetes accepts these there and so does sectl.
        super::watch::parse_timeout(q.timeout_seconds.as_deref()).map_err(bad)?;
        parse_flag("allowWatchBookmarks", q.allow_watch_bookmarks.as_deref())?;
    }
    Ok(())
}

/// A list: one page (`limit`/`continue`) or, without `limit`, the whole list streamed.
async fn list_objects(
    s: AppState,
    kind: Kind,
    q: ListQuery,
    form: super::table::Form,
    include: Option<&'static str>,
) -> ApiResult {
    let limit = match q.limit.as_deref() {
        None => None,
        Some(l) => match l.parse::<usize>() {
            // 0 means no limit, as in Kubernetes.
            Ok(0) => None,
            Ok(n) => Some(n.min(MAX_PAGE)),
            Err(_) => return Err(bad(format!("limit {l:?} is not a whole number"))),
        },
    };
    let token = q.continue_.as_deref().map(|t| super::paging::Token::decode(t, kind)).transpose().map_err(bad)?;
    if let Some(rv) = q.resource_version.as_deref() {
        if token.is_some() {
            return Err(bad("resourceVersion cannot be combined with continue (the token carries it)"));
        }
        // "Not older than": the newest state always is, unless the version is unknown.
        let want = parse_rv(rv)?;
        let have = s.store.resource_version();
        if want > have {
            return Err(bad(format!("resourceVersion {want} is newer than the store's ({have})")));
        }
    }
    let selector =
        super::selector::Selector::parse(q.label_selector.as_deref(), q.field_selector.as_deref()).map_err(bad)?;
    let table = form == super::table::Form::Table;
    if limit.is_none() && token.is_none() && !table {
        return super::paging::stream_list(s.store.clone(), kind, CHUNK, selector).await;
    }
    let store = s.store.clone();
    let (after, at) = match &token {
        Some(t) => (Some(t.after.clone()), Some(t.rv)),
        None => (None, None),
    };
    let size = limit.unwrap_or(MAX_PAGE);
    let page = tokio::task::spawn_blocking(move || store.list_page(kind, after.as_deref(), size, at))
        .await
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))??;
    let continue_ = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(super::paging::Token { rv: page.rv, after: last.name().to_string() }.encode(kind)),
        _ => None,
    };
    let meta = ListMeta { resource_version: page.rv.to_string(), continue_ };
    // A page may hold fewer than `limit` objects when a selector filters (as Kubernetes allows).
    let items: Vec<Resource> = page.items.into_iter().filter(|o| selector.matches(o)).collect();
    if table {
        return Ok(Json(super::table::table(kind, &items, page.rv, meta.continue_, include)).into_response());
    }
    let list_kind = format!("{}List", kind.as_str());
    Ok(Json(ListBody { api_version: crate::api::API_VERSION, kind: &list_kind, metadata: meta, items: &items })
        .into_response())
}

async fn get_one(
    State(s): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Query(_): Query<NoParams>,
    headers: HeaderMap,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    let form = super::table::negotiate(&headers)?;
    match s.store.get(kind, &name)? {
        Some(o) if form == super::table::Form::Table => {
            let rv = o.meta().rv();
            Ok(Json(super::table::table(kind, std::slice::from_ref(&o), rv, None, Some("Metadata"))).into_response())
        }
        Some(o) => Ok(Json(o).into_response()),
        None => Err(StoreError::NotFound { kind, name }.into()),
    }
}

pub(super) fn check_against_store(s: &AppState, objs: &[Resource]) -> Result<(), ApiErr> {
    let (servers, _) = s.store.list(Kind::SEServer)?;
    let problems = crate::api::validate::check_set(objs, &servers);
    if problems.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = problems
        .iter()
        .map(|p| format!("{} {}: {}: {}", objs[p.index].kind(), objs[p.index].name(), p.path, p.message))
        .collect();
    Err(ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", msgs.join("\n")))
}

async fn update_status(
    State(s): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<StatusQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let kind = kind_of(&plural)?;
    if let Some(m) = &q.field_manager {
        super::write::WriteQuery { field_manager: Some(m.clone()), ..Default::default() }.check(false)?;
    }
    let who = super::field_managers::manager(q.field_manager.as_deref(), &headers);
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiErr(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()))?;
    let mut tries = 0;
    loop {
        let current =
            s.store.get(kind, &name)?.ok_or_else(|| ApiErr::from(StoreError::NotFound { kind, name: name.clone() }))?;
        let mut next = current.clone();
        next.set_status_json(v["status"].clone())
            .map_err(|e| ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("status: {e}")))?;
        super::field_managers::record(Some(&current), &mut next, &who, ManagedScope::Status)?;
        let given = v["metadata"]["resourceVersion"].as_str();
        if let Some(rv) = given {
            next.meta_mut().resource_version = Some(rv.to_string());
        }
        match super::blocking::run(&s.store, move |st| st.update_status(next)).await {
            Err(StoreError::Conflict { .. }) if given.is_none() && tries < super::field_managers::RETRIES => tries += 1,
            r => return Ok(Json(r?).into_response()),
        }
    }
}

/// PUT /status takes who writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    #[serde(rename = "fieldManager")]
    field_manager: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
    /// Recorded in managedFields; `sectl` when absent.
    #[serde(rename = "fieldManager")]
    field_manager: Option<String>,
}

/// sectl's own apply: an atomic batch. Each object's Update entry is recorded against
/// the version read; the batch is pinned to those versions (unless the manifests name
/// their own) and computed again when something was written in between.
async fn apply(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Query(q): Query<ApplyQuery>,
    body: Bytes,
) -> ApiResult {
    let dry = parse_flag("dryRun", q.dry_run.as_deref())?;
    let manager = q.field_manager.clone().unwrap_or_else(|| "sectl".into());
    super::write::WriteQuery { field_manager: Some(manager.clone()), ..Default::default() }.check(false)?;
    let given = decode_body(&body)?;
    let targets = super::access::targets_of(&s, given.clone()).await?;
    let targets = super::access::authorize(&s, &who, Verb::Apply, targets).await?;
    check_against_store(&s, &given)?;
    let mut tries = 0;
    let results = loop {
        let mut objs = given.clone();
        let mut pinned = false;
        for o in objs.iter_mut() {
            let current = s.store.get(o.kind(), o.name())?;
            super::field_managers::record(current.as_ref(), o, &manager, ManagedScope::Main)?;
            if let Some(c) = &current {
                pinned |= super::field_managers::pin(c, o);
            }
        }
        let store = s.store.clone();
        let r = tokio::task::spawn_blocking(move || store.apply(objs, dry))
            .await
            .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))?;
        match r {
            Err(StoreError::Conflict { .. }) if pinned && tries < super::field_managers::RETRIES => tries += 1,
            r => break r?,
        }
    };
    let items: Vec<Value> = results.iter().map(|(o, r)| json!({"outcome": o, "object": r})).collect();
    let resp = Json(json!({"items": items})).into_response();
    if dry {
        return Ok(super::access::recorded(resp));
    }
    let drafts = targets.into_iter().zip(&results).map(|(t, (o, _))| (t, o.to_string())).collect();
    super::access::record_ok(&s, &who, Verb::Apply, drafts, resp).await
}

async fn events(State(s): State<AppState>, Query(_): Query<NoParams>) -> ApiResult {
    let items = super::blocking::run(&s.store, |st| st.events()).await?;
    Ok(Json(json!({"items": items})).into_response())
}

/// Acknowledges all events (the REST API and the dashboard).
pub fn ack_all(s: &AppState) -> Result<usize, ApiErr> {
    Ok(s.store.ack_events()?)
}

async fn ack(State(s): State<AppState>, Query(_): Query<NoParams>) -> ApiResult {
    let n = super::blocking::run(&s.store, |st| st.ack_events()).await?;
    Ok(Json(json!({"acknowledged": n})).into_response())
}

async fn sim(
    State(s): State<AppState>,
    Extension(who): Extension<Actor>,
    Query(_): Query<NoParams>,
    body: Bytes,
) -> ApiResult {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiErr(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()))?;
    let args: Vec<String> = serde_json::from_value(v["args"].clone())
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()))?;
    let answer = run_sim(&s, &args).await?;
    let at = format!("at {}", answer["simulatedTime"].as_str().unwrap_or("?"));
    let t = crate::auth::Target::other(&args.join(" "));
    super::access::record_ok(&s, &who, Verb::Sim, vec![(t, at)], Json(answer).into_response()).await
}

/// Carries out a `sim` request (the REST API and the dashboard): parses the words as
/// `sectl sim` does, hands the fault to the controller and waits for its answer.
pub async fn run_sim(s: &AppState, args: &[String]) -> Result<Value, ApiErr> {
    leader_only("`sim`")?;
    let fault = crate::sim::Fault::parse(args).map_err(|e| ApiErr(StatusCode::BAD_REQUEST, "BadRequest", e))?;
    let (tx, rx) = mpsc::channel();
    s.engine
        .lock()
        .map_err(|_| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "controller gone".into()))?
        .send(Cmd::Fault(fault, tx))
        .map_err(|_| ApiErr(StatusCode::SERVICE_UNAVAILABLE, "ShuttingDown", "the controller is stopping".into()))?;
    // The controller answers on a std channel: a thread hands its answer over, and the
    // request waits for it at most SIM_TIMEOUT (the thread ends when the controller
    // answers or stops).
    let (otx, orx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = otx.send(rx.recv());
    });
    let waited = tokio::time::timeout(SIM_TIMEOUT, orx).await;
    let r = match waited {
        Err(_) => {
            return Err(ApiErr(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                format!(
                    "the controller did not carry out the sim request within {}s; it may still do so",
                    SIM_TIMEOUT.as_secs()
                ),
            ))
        }
        Ok(answer) => answer.ok().and_then(Result::ok).ok_or_else(|| {
            ApiErr(StatusCode::SERVICE_UNAVAILABLE, "ShuttingDown", "the controller is stopping".into())
        })?,
    };
    match r {
        Ok(time) => Ok(json!({"simulatedTime": time})),
        Err(e) => Err(ApiErr(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e)),
    }
}

/// On a standby replica (etcd): 503 naming the leader, for what only the leader runs
/// (the controller, its clock, GitOps); nothing is carried out here.
fn leader_only(what: &str) -> Result<(), ApiErr> {
    match super::standby_refusal(what) {
        Some(why) => Err(ApiErr(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why)),
        None => Ok(()),
    }
}

async fn sources(State(s): State<AppState>, Query(_): Query<NoParams>) -> ApiResult {
    leader_only("the GitOps status (`sources`)")?;
    Ok(Json(s.sources.to_json()).into_response())
}

/// POST /sources/prune: a person confirms the held GitOps prune (no query, no body).
async fn sources_prune(State(s): State<AppState>, uri: axum::http::Uri, body: Bytes) -> ApiResult {
    if uri.query().is_some_and(|q| !q.is_empty()) || !body.is_empty() {
        return Err(ApiErr(StatusCode::BAD_REQUEST, "BadRequest", "send no query and no body".into()));
    }
    leader_only("confirming a GitOps prune")?;
    match s.sources.confirm_prune().await {
        Ok(pruned) => Ok(Json(json!({"pruned": pruned})).into_response()),
        Err(e) => {
            let (code, reason) = e.http();
            Err(ApiErr(StatusCode::from_u16(code).unwrap_or(StatusCode::CONFLICT), reason, e.to_string()))
        }
    }
}

async fn clock(State(s): State<AppState>, Query(_): Query<NoParams>) -> ApiResult {
    leader_only("the simulated clock (`clock`)")?;
    Ok(Json(json!({"simulatedMs": s.sim_ms.load(std::sync::atomic::Ordering::SeqCst), "timeScale": s.time_scale}))
        .into_response())
}

async fn healthz() -> Response {
    if !super::engine::alive() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the controller loop died").into_response();
    }
    "ok".into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    if !super::engine::alive() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the controller loop died").into_response();
    }
    if s.ready.load(std::sync::atomic::Ordering::SeqCst) {
        // On etcd every replica serving is ready for the API; the body says its role.
        super::role().map_or_else(|| "ok".into_response(), |r| format!("ok: {r}").into_response())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235 s2.1) and may be followed by more than one space.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim_matches(' '))
}

/// The router.
pub fn router(state: AppState) -> Router {
    let p = crate::client::PREFIX;
    let apis = Router::new()
        .route("/api", get(super::discovery::api))
        .route("/apis", get(super::discovery::apis))
        .route("/apis/sectl.io", get(super::discovery::api_group))
        .route("/openapi/v2", get(super::openapi::v2_doc))
        .route("/openapi/v3", get(super::openapi::v3_index))
        .route("/openapi/v3/apis/sectl.io/v1alpha1", get(super::openapi::v3))
        .route(p, get(super::discovery::resources))
        .route(&format!("{p}/apply"), post(apply))
        .route(&format!("{p}/events"), get(events))
        .route(&format!("{p}/events/ack"), post(ack))
        .route(&format!("{p}/events/summary"), get(super::access::events_summary))
        .route(&format!("{p}/whoami"), get(super::access::whoami))
        .route(&format!("{p}/users"), get(super::access::list_users).post(super::access::add_user))
        .route(&format!("{p}/users/{{name}}"), axum::routing::delete(super::access::delete_user))
        .route(&format!("{p}/users/{{name}}/rotate"), post(super::access::rotate_user))
        .route(&format!("{p}/audit"), get(super::access::audit_log))
        .route(&format!("{p}/audit/verify"), get(super::access::audit_verify))
        .route("/audit", get(super::access::audit_log))
        .route("/audit/verify", get(super::access::audit_verify))
        .route(&format!("{p}/sim"), post(sim))
        .route(&format!("{p}/sources"), get(sources))
        .route(&format!("{p}/sources/prune"), post(sources_prune))
        .route(&format!("{p}/clock"), get(clock))
        .route(&format!("{p}/{{plural}}"), get(list).post(super::write::create).delete(super::write::delete_collection))
        .route(
            &format!("{p}/{{plural}}/{{name}}"),
            get(get_one).put(super::write::update).delete(super::write::delete).patch(super::patch::object),
        )
        .route(&format!("{p}/{{plural}}/{{name}}/status"), get(get_one).put(update_status).patch(super::patch::status))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), super::access::guard))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), super::access::authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(super::discovery::version))
        .merge(apis)
        .merge(crate::ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(read_body))
        .layer(axum::middleware::from_fn(super::timeout::honour))
        .layer(axum::middleware::from_fn(request_timeout))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// A body over the limit is still read (and dropped) up to this much, so the client,
/// which sends the whole body before it reads the answer, gets the 413 instead of a
/// connection reset; a larger one ends the connection.
const DRAIN_BYTES: u64 = 4 * MAX_BODY_BYTES as u64;

/// Reads the request body, at most `MAX_BODY_BYTES`; a larger one is 413 (JSON).
async fn read_body(req: Request, next: Next) -> Response {
    use futures_util::StreamExt as _;
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return bad(format!("cannot read the request body: {e}")).into_response(),
        };
        seen += chunk.len() as u64;
        if seen <= MAX_BODY_BYTES as u64 {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES as u64 {
        let msg =
            format!("the request body is larger than {MAX_BODY_BYTES} bytes (16 MiB, the limit of a manifest file)");
        let mut resp = ApiErr(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", msg).into_response();
        if seen > DRAIN_BYTES {
            resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        return resp;
    }
    next.run(Request::from_parts(parts, Body::from(buf))).await
}

/// Ends a request whose body or handler takes longer than `REQUEST_TIMEOUT` (a watch
/// has its response by then and streams on).
async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiErr(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            format!("the request took longer than {}s", REQUEST_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}

/// Turns the framework's plain-text refusals (413 body too large, a query string
/// that does not parse, ...) into the JSON errors every other answer uses.
async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if path == "/ui" || path.starts_with("/ui/") {
        // The dashboard answers people with pages (and its script with its own JSON).
        return resp;
    }
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || status == StatusCode::SERVICE_UNAVAILABLE {
        return resp;
    }
    if is_json {
        // One of ours: add what only the path knows (resource and name).
        let text = axum::body::to_bytes(resp.into_body(), MAX_BODY_BYTES).await.unwrap_or_default();
        let mut v: Value = serde_json::from_slice(&text).unwrap_or_else(|_| json!({}));
        super::status::with_details(&path, &mut v);
        return (status, Json(v)).into_response();
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    let reason = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            message = format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes (16 MiB, the limit of a manifest file)"
            );
            "RequestEntityTooLarge"
        }
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        _ => "Error",
    };
    let mut v = super::status::body(status.as_u16(), reason, &message);
    super::status::with_details(&path, &mut v);
    (status, Json(v)).into_response()
}

/// Unknown paths: a JSON error like every other.
async fn not_found(uri: axum::http::Uri) -> ApiErr {
    ApiErr(StatusCode::NOT_FOUND, "NotFound", format!("no such path {}", uri.path()))
}

/// A known path with a method it does not serve.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiErr {
    ApiErr(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} is not served at {}", uri.path()))
}
