//! Fuzz target for the HTTP request bodies and query strings of `sectl serve`
//! (issue 8): proptest sends arbitrary bytes, arbitrary JSON and mutated valid objects
//! to every route of the real router, in process (tower's `oneshot`, no sockets), on
//! a real sled store seeded with the tests' site. The controller is replaced by a stub
//! that answers `sim` requests at once (the engine is fuzzed elsewhere).
//!
//! `hostile_patch_bodies_...` sends hand-made PATCH bodies of every patch kind (too deep,
//! too large, too many operations, an alias bomb).
//!
//! Each case must: not panic; answer within 10 s; answer JSON with `code` equal to the
//! status and a `reason`, or a 2xx; never a 500; leave the store listable.
//! Bounded and repeatable: `PROPTEST_CASES` (default 400) cases, a fixed seed per run
//! unless `PROPTEST_RNG_SEED` is set; `cargo test --test http_fuzz -- --nocapture`
//! prints the number of cases and the time taken.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sectl::server::api::{router, AppState};
use sectl::server::engine::Cmd;
use sectl::store::{SledStore, Store};
use serde_json::{json, Value};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token-0123456789abcdef0123456789abcdef";
const API: &str = "/apis/sectl.io/v1alpha1";

/// The router over a seeded store, a stub engine and the runtime to drive it.
struct Harness {
    app: axum::Router,
    store: Arc<SledStore>,
    rt: tokio::runtime::Runtime,
    /// How many answers had each status, printed at the end.
    tally: Mutex<std::collections::BTreeMap<u16, usize>>,
    _stop: tokio::sync::watch::Sender<bool>,
    _tmp: tempfile::TempDir,
}

fn harness() -> Harness {
    harness_with(true, tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all())
}

/// `answer`: whether the stub controller answers `sim` requests (else it holds them).
fn harness_with(answer: bool, rt: &mut tokio::runtime::Builder) -> Harness {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(&tmp.path().join("data")).expect("store"));
    store.apply(common::all(common::SITE), false).expect("seed the site");
    sectl::auth::users::ensure_admin(store.as_ref(), TOKEN).expect("admin");
    let (tx, rx) = mpsc::channel::<Cmd>();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for Cmd::Fault(_, reply) in rx {
            if answer {
                let _ = reply.send(Ok("2026-01-01T00:00:00Z".to_string()));
            } else {
                held.push(reply);
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dyn_store: Arc<dyn Store> = store.clone();
    let state = AppState {
        store: dyn_store,
        engine: Arc::new(Mutex::new(tx)),
        token: Arc::new(TOKEN.to_string()),
        data_dir: None,
        sources: Default::default(),
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        sim_ms: Default::default(),
        time_scale: 1.0,
        stop: stop_rx,
        ui: Default::default(),
        watch_hub: Default::default(),
    };
    let rt = rt.build().expect("runtime");
    Harness { app: router(state), store, rt, tally: Default::default(), _stop: stop_tx, _tmp: tmp }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    query: String,
    auth: Option<String>,
    body: Vec<u8>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["VMDefinition", "SEServer", "sectl.io/v1alpha1", "vm12prod", "RUNNING", "items"])
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "apiVersion",
                        "kind",
                        "metadata",
                        "name",
                        "spec",
                        "status",
                        "items",
                        "args",
                        "memoryMiB",
                        "vmName",
                        "serverUnit",
                        "resourceVersion",
                        "labels",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A valid VM as JSON with one field replaced by an arbitrary value.
fn mutated_vm() -> impl Strategy<Value = Vec<u8>> {
    let fields = vec![
        "/metadata/name",
        "/metadata/resourceVersion",
        "/spec/vmName",
        "/spec/memoryMiB",
        "/spec/serverUnit",
        "/spec/state",
        "/spec/devices",
        "/kind",
        "/apiVersion",
        "/status",
    ];
    (prop::sample::select(fields), json_value()).prop_map(|(field, v)| {
        let mut vm = json!({"apiVersion": "sectl.io/v1alpha1", "kind": "VMDefinition", "metadata": {"name": "fz1"},
            "spec": {"vmName": "FZ1", "serverUnit": "ABGSE501", "state": "DEFINED_ONLY", "memoryMiB": 512}});
        if let Some(slot) = vm.pointer_mut(field) {
            *slot = v;
        } else if let Some((parent, key)) = field.rsplit_once('/') {
            if let Some(Value::Object(m)) = vm.pointer_mut(if parent.is_empty() { "" } else { parent }) {
                m.insert(key.to_string(), v);
            }
        }
        if field == "/spec/memoryMiB" {
            // Sometimes wrap in an apply list.
            return json!({"items": [vm]}).to_string().into_bytes();
        }
        vm.to_string().into_bytes()
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        json_value().prop_map(|v| json!({"items": [v]}).to_string().into_bytes()),
        json_value().prop_map(|v| json!({"args": v}).to_string().into_bytes()),
        mutated_vm(),
        "[ -~\n]{0,300}".prop_map(String::into_bytes),
    ]
}

fn request() -> impl Strategy<Value = Req> {
    let plural = prop::sample::select(vec!["vmdefinitions", "seservers", "sucluster", "livemigrations", "x"]);
    let name = prop::sample::select(vec!["vm12prod", "fz1", "abgse501", "nosuch", "%00", "..", "a%2Fb"]);
    // A route and the methods it serves (mostly used; sometimes any method).
    let route = (0..8u8, plural, name).prop_map(|(k, p, n)| match k {
        0 => (format!("{API}/{p}"), vec!["GET", "POST"]),
        1 => (format!("{API}/{p}/{n}"), vec!["GET", "PUT", "DELETE"]),
        2 => (format!("{API}/{p}/{n}/status"), vec!["PUT"]),
        3 => (format!("{API}/apply"), vec!["POST"]),
        4 => (format!("{API}/sim"), vec!["POST"]),
        5 => (format!("{API}/events"), vec!["GET"]),
        6 => (format!("{API}/events/ack"), vec!["POST"]),
        _ => ("/healthz".to_string(), vec!["GET"]),
    });
    let path = (route, any::<prop::sample::Index>(), 0..10u8).prop_map(|((path, served), i, dice)| {
        let all = ["GET", "POST", "PUT", "DELETE", "PATCH"];
        let method = if dice == 0 { all[i.index(all.len())] } else { served[i.index(served.len())] };
        (method, path)
    });
    let query = prop_oneof![
        Just(String::new()),
        Just("?dryRun=true".to_string()),
        Just("?limit=2".to_string()),
        (1..50u32).prop_map(|n| format!("?limit={n}&continue=eyJrIjoiVk1EZWZpbml0aW9uIiwicnYiOjEsImEiOiJhIn0")),
        "[a-zA-Z=&%0-9]{0,20}".prop_map(|q| format!("?{q}")),
    ];
    let auth = prop_oneof![
        8 => Just(Some(format!("Bearer {TOKEN}"))),
        1 => Just(Some(format!("bearer {TOKEN}"))),
        1 => Just(None),
        1 => "[ -~]{0,20}".prop_map(Some),
    ];
    (path, query, auth, body()).prop_map(|((method, path), query, auth, body)| Req { method, path, query, auth, body })
}

/// Sends one request and checks the answer.
fn check(h: &Harness, r: &Req) -> Result<(), TestCaseError> {
    let mut b = Request::builder().method(r.method).uri(format!("{}{}", r.path, r.query));
    if let Some(a) = &r.auth {
        b = b.header("authorization", a.as_str());
    }
    let Ok(req) = b.body(Body::from(r.body.clone())) else {
        return Ok(()); // not a request the HTTP layer would deliver (bad URI or header)
    };
    let app = h.app.clone();
    let watch = r.query.contains("watch");
    let (status, bytes) = h.rt.block_on(async move {
        let resp = tokio::time::timeout(Duration::from_secs(10), app.oneshot(req))
            .await
            .map_err(|_| TestCaseError::fail("no answer within 10 s"))?
            .map_err(|e| TestCaseError::fail(format!("router error: {e}")))?;
        let status = resp.status();
        let read = tokio::time::timeout(Duration::from_secs(2), axum::body::to_bytes(resp.into_body(), 64 << 20)).await;
        match read {
            Ok(Ok(b)) => Ok((status, b)),
            Ok(Err(e)) => Err(TestCaseError::fail(format!("body error: {e}"))),
            // A watch streams on: its head is the answer.
            Err(_) if watch && status == StatusCode::OK => Ok((status, Default::default())),
            Err(_) => Err(TestCaseError::fail("body not complete within 2 s")),
        }
    })?;
    *h.tally.lock().unwrap_or_else(|p| p.into_inner()).entry(status.as_u16()).or_default() += 1;
    prop_assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "500 for {r:?}: {}", String::from_utf8_lossy(&bytes));
    if !status.is_success() && r.path != "/healthz" {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            TestCaseError::fail(format!("{status} is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        })?;
        prop_assert_eq!(v["code"].as_u64(), Some(u64::from(status.as_u16())), "{}", v);
        prop_assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{}", v);
    }
    prop_assert!(h.store.list(sectl::api::Kind::VMDefinition).is_ok(), "the store is no longer listable");
    Ok(())
}

#[test]
fn http_request_bodies_never_panic_hang_or_500() {
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400);
    let seed: u64 = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|c| c.parse().ok()).unwrap_or(8);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let h = harness();
    let t0 = Instant::now();
    let result = runner.run(&request(), |r| check(&h, &r));
    let tally = h.tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!(
        "http_fuzz: {cases} cases (seed {seed}) in {:.1} s; answers by status: {tally:?}",
        t0.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Sends one request on `h`'s runtime; status and JSON body.
fn send(h: &Harness, req: Request<Body>) -> (StatusCode, Value) {
    let app = h.app.clone();
    h.rt.block_on(async move {
        let resp = app.oneshot(req).await.expect("router");
        let status = resp.status();
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    })
}

#[test]
fn a_sim_request_the_controller_does_not_answer_ends_with_504_after_30_s() {
    // Tokio's paused clock: the 30 s pass at once, and exactly.
    let h = harness_with(false, tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true));
    let req = Request::post(format!("{API}/sim"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(r#"{"args": ["power", "off", "ABGSE501"]}"#))
        .expect("request");
    let t0 = h.rt.block_on(async { tokio::time::Instant::now() });
    let (status, v) = send(&h, req);
    let waited = h.rt.block_on(async move { t0.elapsed() });
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!((v["code"].as_u64(), v["reason"].as_str()), (Some(504), Some("Timeout")), "{v}");
    assert!(waited >= Duration::from_secs(30) && waited < Duration::from_secs(31), "{waited:?}");
}

#[test]
fn a_body_that_never_ends_is_cut_off_with_408_after_60_s() {
    let h = harness_with(true, tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true));
    // A body that sends a few bytes and then nothing, for ever.
    let stream =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"items\": [")) })
            .chain(futures_util::stream::pending());
    let req = Request::post(format!("{API}/apply"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from_stream(stream))
        .expect("request");
    let (status, v) = send(&h, req);
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert_eq!(v["reason"].as_str(), Some("Timeout"), "{v}");
}

/// One PATCH of `vm12prod` with `content_type` and `body`; status, JSON body, seconds.
fn patch(h: &Harness, query: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value, f64) {
    let req = Request::patch(format!("{API}/vmdefinitions/vm12prod{query}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let t0 = Instant::now();
    let (status, v) = send(h, req);
    (status, v, t0.elapsed().as_secs_f64())
}

/// A YAML document whose aliases expand to 9^9 strings (the "billion laughs").
fn alias_bomb() -> String {
    let mut y = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (i, c) in "bcdefghi".chars().enumerate() {
        let prev = (b'a' + i as u8) as char;
        let refs = vec![format!("*{prev}"); 9].join(",");
        y.push_str(&format!("{c}: &{c} [{refs}]\n"));
    }
    y.push_str("spec: {devices: *i}\n");
    y
}

#[test]
fn hostile_patch_bodies_are_refused_in_bounded_time_and_change_nothing() {
    let h = harness();
    let get = || {
        let req = Request::get(format!("{API}/vmdefinitions/vm12prod"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request");
        send(&h, req)
    };
    let (code, before) = get();
    assert_eq!(code, StatusCode::OK, "{before}");
    let n = 100_000;
    let deep_json = format!("{}{}", "{\"a\":".repeat(n), "}".repeat(n)).replacen("{\"a\":}", "{\"a\":1}", 1);
    let deep_array = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_yaml = format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm12prod}}\nspec: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let huge = format!("{{\"metadata\":{{\"annotations\":{{\"x\":\"{}\"}}}}}}", "y".repeat(17 << 20));
    // Many operations, each valid alone: together more than an object may hold.
    let mut ops = vec![json!({"op": "add", "path": "/metadata/annotations", "value": {}})];
    ops.extend(
        (0..100_000)
            .map(|i| json!({"op": "add", "path": format!("/metadata/annotations/k{i}"), "value": "v".repeat(64)})),
    );
    let many_ops = serde_json::to_vec(&ops).expect("json");
    // Each `copy` doubles the document: 64 of them would need 2^64 times its size.
    let mut doubling = vec![json!({"op": "add", "path": "/metadata/annotations", "value": {"a": "x"}})];
    doubling.extend(
        (0..64).map(|i| json!({"op": "copy", "from": "/metadata", "path": format!("/metadata/annotations/c{i}")})),
    );
    let doubling = serde_json::to_vec(&doubling).expect("json");
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("?fieldManager=t", "application/apply-patch+yaml", deep_yaml.into_bytes()),
        ("?fieldManager=t", "application/apply-patch+yaml", alias_bomb().into_bytes()),
        ("?fieldManager=t", "application/apply-patch+yaml", deep_json.clone().into_bytes()),
        ("", "application/merge-patch+json", deep_json.into_bytes()),
        ("", "application/json-patch+json", deep_array.clone().into_bytes()),
        ("", "application/merge-patch+json", huge.into_bytes()),
        ("", "application/json-patch+json", many_ops),
        ("", "application/json-patch+json", doubling),
        ("", "application/strategic-merge-patch+json", deep_array.into_bytes()),
    ];
    for (query, ctype, body) in cases {
        let size = body.len();
        let (status, v, secs) = patch(&h, query, ctype, body);
        println!("{ctype}{query} ({size} bytes): {status} in {secs:.2} s: {}", v["message"]);
        assert!(status.is_client_error(), "{ctype} ({size} bytes): expected a 4xx, got {status}: {v}");
        assert_eq!(v["code"].as_u64(), Some(u64::from(status.as_u16())), "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(secs < 10.0, "{ctype}: {secs:.1} s");
        let (code, after) = get();
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
            "{ctype} changed the object"
        );
    }
}
