//! Issue 10: a bounded schemathesis run (`pip install schemathesis`) against a real
//! `sectl serve`, from the server's own OpenAPI v3 document
//! (`/openapi/v3/apis/sectl.io/v1alpha1`), with the bearer token and the data folder's
//! CA: no request it generates may get a 5xx (`--checks not_a_server_error`).
//!
//! Two changes to the document, for the run only: the `watch` parameter is left out
//! (a watch streams until `timeoutSeconds`, so schemathesis would wait on it to the
//! end of its request timeout and learn nothing more), and `{name}` is narrowed to the
//! names of objects that exist (and one that does not), so the generated PUTs, PATCHes
//! and DELETEs reach stored objects instead of 404. Fixed seed, 5 examples per
//! operation, fuzzing phase: well under a minute, the same requests every run.

mod common;

use common::serve::{run_bounded, Serve};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// Names that exist in `manifests/` per plural (and one that does not).
fn names(plural: &str) -> Value {
    let existing: &[&str] = match plural {
        "seservers" => &["se501", "se701"],
        "managementclusters" => &["mc-augsburg"],
        "suclusters" => &["su390", "sux86"],
        "vmdefinitions" => &["vm12prod", "app01", "web01"],
        _ => &[],
    };
    let mut all: Vec<&str> = existing.to_vec();
    all.push("nosuchobject");
    json!({"type": "string", "enum": all})
}

/// The document as the run uses it (see the module comment).
fn for_the_run(mut doc: Value) -> Value {
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, ops) in paths.iter_mut() {
        let plural = path.split('/').nth(4).unwrap_or("").to_string();
        for (method, op) in ops.as_object_mut().expect("operations").iter_mut() {
            let params = if method == "parameters" { op } else { &mut op["parameters"] };
            let Some(list) = params.as_array_mut() else { continue };
            list.retain(|p| p["name"] != "watch");
            for p in list.iter_mut().filter(|p| p["name"] == "name" && p["in"] == "path") {
                p["schema"] = names(&plural);
            }
        }
    }
    doc
}

#[test]
fn schemathesis_finds_no_server_error() {
    let which = Command::new("sh").args(["-c", "command -v schemathesis"]).output().expect("sh");
    assert!(
        which.status.success(),
        "schemathesis is not installed: pip install schemathesis (tests/schemathesis.rs runs it against sectl serve)"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let manifests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    common::sectl_in(&data).arg("apply").arg("-f").arg(&manifests).assert().success();
    let serve = Serve::start_only(&data);
    let doc = serve.api().call_any("GET", "/openapi/v3/apis/sectl.io/v1alpha1", None).expect("OpenAPI v3");
    let spec = tmp.path().join("openapi.json");
    let doc = for_the_run(doc);
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|ops| ops.as_object().expect("operations").keys().filter(|m| *m != "parameters").count())
        .sum();
    std::fs::write(&spec, serde_json::to_vec(&doc).expect("json")).expect("write spec");
    let mut cmd = Command::new("schemathesis");
    cmd.arg("run")
        .arg(&spec)
        .args(["--url", &serve.url])
        .args(["-H", &format!("Authorization: Bearer {}", serve.token())])
        .arg("--tls-verify")
        .arg(data.join("ca.crt"))
        .args(["--checks", "not_a_server_error", "--phases", "fuzzing", "-n", "5", "--seed", "1"])
        .args(["--generation-database", "none", "--no-color", "--request-timeout", "20"])
        .current_dir(tmp.path())
        .env("HOME", tmp.path());
    let (code, out, err) = run_bounded(cmd, Duration::from_secs(300));
    assert_eq!(code, Some(0), "schemathesis found problems:\n{out}\n{err}");
    // Every operation of the document was run (none skipped by a schema it cannot use).
    let selected = format!("{operations} selected / {operations} total");
    assert!(out.contains(&selected) && out.contains(&format!("{operations} passed")), "{selected}:\n{out}");
}
