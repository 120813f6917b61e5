//! Issue 10 item 9: a verb without `--server` whose data directory is held by a running
//! `sectl serve` talks to that server through `<data-dir>/kubeconfig` (same output,
//! same exit codes, same errors as embedded mode), and says clearly when it cannot: a
//! stale kubeconfig, a wrong token, no kubeconfig, verbs that need the store itself.
//!
//! Every server is killed on drop; every wait is bounded.

mod common;

use common::serve::Serve;
use common::SITE;
use sectl::api::Kind;
use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `sectl --data-dir DIR ARGS` without --server, bounded.
fn sectl(data: &Path, args: &[&str]) -> Output {
    let mut c = common::sectl();
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("SECTL_SERVER")
        .env_remove("SECTL_DATA_DIR")
        .env_remove("SECTL_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn sectl");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("sectl finished in time").expect("output")
}

fn text(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs and expects exit `code`; returns (stdout, stderr).
fn run(data: &Path, code: i32, args: &[&str]) -> (String, String) {
    let (c, out, err) = text(&sectl(data, args));
    assert_eq!(c, Some(code), "sectl {args:?}: want exit {code}\nstdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

fn vm(name: &str, memory: u64) -> String {
    format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}}}\nspec:\n  vmName: {}\n  serverUnit: ABGSE501\n  memoryMiB: {memory}\n",
        name.to_uppercase()
    )
}

#[test]
fn verbs_go_through_the_server_that_holds_the_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let _serve = Serve::start(&data, "");
    let api = _serve.api();
    let (_, rv) = api.list(Kind::VMDefinition).expect("list");

    // The server's own watch sees what the CLI writes: it went through that server.
    let (tx, rx) = mpsc::channel::<(String, String)>();
    let watcher = _serve.api();
    std::thread::spawn(move || {
        let _ = watcher.watch(Kind::VMDefinition, rv, |ev| {
            let name = ev.object["metadata"]["name"].as_str().unwrap_or("").to_string();
            tx.send((ev.type_, name)).is_ok()
        });
    });

    let (out, _) = run(&data, 0, &["get", "vm"]);
    assert!(out.starts_with("NAME") && out.contains("vm12prod"), "{out}");

    let f = tmp.path().join("vm2.yaml");
    std::fs::write(&f, vm("vm2", 1024)).expect("write");
    let (out, _) = run(&data, 0, &["apply", "-f", &f.display().to_string()]);
    assert_eq!(out.trim(), "vmdefinition/vm2 created", "{out}");
    let seen = rx.recv_timeout(Duration::from_secs(20)).expect("the server's watch saw the CLI's create");
    assert_eq!(seen, ("ADDED".to_string(), "vm2".to_string()));
    assert!(api.get(Kind::VMDefinition, "vm2").expect("get").is_some(), "the server has vm2");

    // sim goes to the server's world: its clock moves.
    let clock = |api: &sectl::client::Client| {
        api.call_any("GET", &format!("{}/clock", sectl::client::PREFIX), None).expect("clock")["simulatedMs"]
            .as_u64()
            .expect("ms")
    };
    let before = clock(&api);
    run(&data, 0, &["sim", "advance", "1h"]);
    assert!(clock(&api) >= before + 3_600_000, "the server's clock did not move");

    let (out, _) = run(&data, 0, &["delete", "vm", "vm2"]);
    assert!(out.contains("vmdefinition/vm2 deleted"), "{out}");
    assert!(api.get(Kind::VMDefinition, "vm2").expect("get").is_none(), "deleted on the server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx.recv_timeout(left).expect("the server's watch saw the delete");
        if ev.0 == "DELETED" {
            assert_eq!(ev.1, "vm2");
            break;
        }
    }

    // -o json through the server is the object the API has.
    let (out, _) = run(&data, 0, &["get", "vm", "vm12prod", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    let direct =
        serde_json::to_value(api.get(Kind::VMDefinition, "vm12prod").expect("get").expect("there")).expect("value");
    assert_eq!(v["metadata"]["uid"], direct["metadata"]["uid"]);
}

#[test]
fn errors_and_exit_codes_are_those_of_embedded_mode() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (held, alone) = (tmp.path().join("held"), tmp.path().join("alone"));
    let _serve = Serve::start(&held, "");
    std::fs::write(tmp.path().join("site.yaml"), SITE).expect("site");
    run(&alone, 0, &["apply", "-f", &tmp.path().join("site.yaml").display().to_string()]);
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, vm("vm3", 1024) + "  bogus: 1\n").expect("write");
    let stale = tmp.path().join("stale.yaml");
    std::fs::write(
        &stale,
        vm("vm12prod", 1024)
            .replace("metadata: {name: vm12prod}", "metadata: {name: vm12prod, resourceVersion: \"1\"}"),
    )
    .expect("write");
    for args in [
        vec!["get", "vm", "nosuchvm"],
        vec!["get", "vm", "-l", "app=prod", "-o", "name"],
        vec!["delete", "vm", "nosuchvm"],
        vec!["describe", "vm", "nosuchvm"],
        vec!["get", "nosuchkind"],
        vec!["apply", "-f", &bad.display().to_string()],
        vec!["apply", "-f", &stale.display().to_string()],
        vec!["sim", "power", "off", "NOSUCHUNIT"],
    ] {
        let (a, b) = (text(&sectl(&held, &args)), text(&sectl(&alone, &args)));
        let (a_err, b_err) =
            (a.2.replace(&held.display().to_string(), "D"), b.2.replace(&alone.display().to_string(), "D"));
        assert_eq!((a.0, &a.1), (b.0, &b.1), "{args:?}: exit code or stdout differ\nheld: {a_err}\nalone: {b_err}");
        assert_eq!(a.0 == Some(0), b.0 == Some(0), "{args:?}");
        // The first line says the same thing (the server may add detail after it).
        // (Resource versions differ between the two stores.)
        let first = |s: &str| s.lines().next().unwrap_or("").replace(|c: char| c.is_ascii_digit(), "#");
        assert_eq!(first(&a_err), first(&b_err), "{args:?}: errors differ\nheld:\n{a_err}\nalone:\n{b_err}");
    }
}

#[test]
fn what_cannot_go_through_the_server_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut serve = Serve::start(&data, "");
    let (_, err) = run(&data, 1, &["check"]);
    assert!(
        err.contains("`sectl check` reads the embedded store directly") && err.contains("stop the server"),
        "{err}"
    );
    let (_, err) = run(&data, 1, &["sim", "clock", "reset"]);
    assert!(err.contains("stop the server"), "{err}");
    let (_, err) = run(&data, 1, &["--no-reconcile", "get", "vm"]);
    assert!(err.contains("--no-reconcile applies to the embedded store"), "{err}");

    // A stale kubeconfig: the server it names is gone. Clear error, nothing written.
    let kc = data.join("kubeconfig");
    let good = std::fs::read_to_string(&kc).expect("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = serve.api().url().to_string();
    std::fs::write(&kc, good.replace(&url, &format!("https://127.0.0.1:{port}"))).expect("write");
    let f = tmp.path().join("vm9.yaml");
    std::fs::write(&f, vm("vm9", 1024)).expect("write");
    let started = Instant::now();
    let (_, err) = run(&data, 1, &["apply", "-f", &f.display().to_string()]);
    assert!(err.contains("does not answer") && err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("nothing was done"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());

    // A token the server does not take.
    std::fs::write(&kc, good.replace("\"token\": \"", "\"token\": \"x")).expect("write");
    let (_, err) = run(&data, 1, &["get", "vm"]);
    assert!(err.contains("refuses the token"), "{err}");

    // No kubeconfig while the store is held.
    std::fs::remove_file(&kc).expect("rm");
    let (_, err) = run(&data, 1, &["get", "vm"]);
    assert!(err.contains("in use by another sectl process") && err.contains("names no server"), "{err}");

    // Put back: it works again, and vm9 was never written.
    std::fs::write(&kc, &good).expect("write");
    let (_, err) = run(&data, 1, &["get", "vm", "vm9"]);
    assert!(err.contains("not found"), "{err}");

    // A stopped server takes its kubeconfig along; the store is the CLI's again.
    serve.stop();
    assert!(!kc.exists(), "kubeconfig left behind by a stopped server");
    let (out, _) = run(&data, 0, &["get", "vm", "-o", "name"]);
    assert_eq!(out.trim(), "vmdefinition/vm12prod");
}

#[test]
fn a_kubeconfig_left_by_a_killed_server_is_removed_at_the_next_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut serve = Serve::start(&data, "");
    let kc = data.join("kubeconfig");
    let _ = serve.child.kill();
    let _ = serve.child.wait();
    assert!(kc.exists(), "a killed server cannot remove its kubeconfig");
    // The store is free: the CLI opens it itself (the stale file is not consulted).
    let (out, _) = run(&data, 0, &["get", "vm", "-o", "name"]);
    assert_eq!(out.trim(), "vmdefinition/vm12prod");
    let old = std::fs::read_to_string(&kc).expect("old kubeconfig");
    let again = Serve::start(&data, "");
    let new = std::fs::read_to_string(&kc).expect("new kubeconfig");
    assert_ne!(old, new, "the new server writes its own");
    assert_eq!(again.api().url(), sectl::server::kubeconfig::read(&data).expect("read").expect("there").server);
    run(&data, 0, &["get", "vm", "vm12prod"]);
}
