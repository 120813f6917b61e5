//! TLS to etcd (`--store etcds://` with `--etcd-cafile`, `--etcd-certfile`,
//! `--etcd-keyfile`) against a real etcd that takes clients over TLS only and demands
//! their certificates (`--client-cert-auth`): the CLI and a `serve` replica work
//! through it, and a wrong CA or a missing client certificate is refused with a
//! sentence saying which. Each test starts its own etcd and stops it by PID.

mod common;
mod etcd_server;

use sectl::store::{EtcdStore, EtcdTls, Store};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs sectl on `url` with `args` after the global flags `tls`.
fn sectl(url: &str, data: &Path, tls: &[String], args: &[&str]) -> Output {
    common::sectl()
        .args(["--store", url, "--no-reconcile", "--data-dir"])
        .arg(data)
        .args(tls)
        .args(args)
        .env_remove("SECTL_ETCD_CAFILE")
        .env_remove("SECTL_ETCD_CERTFILE")
        .env_remove("SECTL_ETCD_KEYFILE")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a refused connection must not print: the gRPC client's debug dump.
fn assert_no_dump(err: &str) {
    for raw in ["Status {", "tonic", "source:", "metadata:"] {
        assert!(!err.contains(raw), "raw gRPC error in: {err}");
    }
}

#[test]
fn the_cli_applies_and_reads_over_tls_with_a_client_certificate() {
    let etcd = etcd_server::Etcd::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vm.yaml");
    std::fs::write(&file, common::vm_yaml("web", 1024)).unwrap();
    let tls = etcd.sectl_tls_args();
    let data = dir.path().join("d");
    let out = sectl(&etcd.url(), &data, &tls, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sectl(&etcd.url(), &data, &tls, &["get", "vm", "web", "-o", "name"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("web"), "{}", text(&out.stdout));
    // The library sees the same object through its own TLS connection.
    let c = etcd.tls.as_ref().unwrap();
    let files = EtcdTls {
        cafile: Some(c.ca.clone()),
        certfile: Some(c.client_cert.clone()),
        keyfile: Some(c.client_key.clone()),
    };
    let store = EtcdStore::open_with(&etcd.url(), &files).unwrap_or_else(|e| panic!("{e}"));
    assert!(store.get(sectl::api::Kind::VMDefinition, "web").unwrap().is_some());
}

#[test]
fn a_wrong_ca_is_refused_saying_so() {
    let etcd = etcd_server::Etcd::start_tls();
    let c = etcd.tls.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls: Vec<String> = vec![
        "--etcd-cafile".into(),
        c.other_ca.display().to_string(),
        "--etcd-certfile".into(),
        c.client_cert.display().to_string(),
        "--etcd-keyfile".into(),
        c.client_key.display().to_string(),
    ];
    let started = Instant::now();
    let out = sectl(&etcd.url(), &dir.path().join("d"), &tls, &["get", "vm"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err} {:?}", out.status);
    assert!(err.contains("TLS handshake failed") && err.contains("not signed by the CA in --etcd-cafile"), "{err}");
    assert!(err.contains(&c.other_ca.display().to_string()), "the CA file is not named: {err}");
    assert_no_dump(&err);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn a_missing_client_certificate_is_refused_saying_so() {
    let etcd = etcd_server::Etcd::start_tls();
    let c = etcd.tls.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls: Vec<String> = vec!["--etcd-cafile".into(), c.ca.display().to_string()];
    let out = sectl(&etcd.url(), &dir.path().join("d"), &tls, &["get", "vm"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err} {:?}", out.status);
    assert!(err.contains("etcd demands a client certificate") && err.contains("--etcd-certfile"), "{err}");
    assert_no_dump(&err);
    // A client certificate that etcd's CA did not sign (the server's CA is right).
    let stranger = etcd_server::certs::Certs::make(&dir.path().join("stranger"));
    let tls: Vec<String> = vec![
        "--etcd-cafile".into(),
        c.ca.display().to_string(),
        "--etcd-certfile".into(),
        stranger.client_cert.display().to_string(),
        "--etcd-keyfile".into(),
        stranger.client_key.display().to_string(),
    ];
    let out = sectl(&etcd.url(), &dir.path().join("d"), &tls, &["get", "vm"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err} {:?}", out.status);
    assert!(err.contains("etcd refused the client certificate"), "{err}");
    assert_no_dump(&err);
}

#[test]
fn plain_and_tls_mismatches_are_refused() {
    let etcd = etcd_server::Etcd::start_tls();
    let dir = tempfile::tempdir().unwrap();
    // TLS files with etcd:// (plain): refused before connecting, naming etcds://.
    let plain = etcd.url().replacen("etcds://", "etcd://", 1);
    let out = sectl(&plain, &dir.path().join("d"), &etcd.sectl_tls_args(), &["get", "vm"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("without TLS") && err.contains("etcds://"), "{err}");
    // TLS flags with the embedded store, or etcds:// without a CA: refused (exit 2).
    for (store, tls, says) in [
        ("sled", etcd.sectl_tls_args(), "only for --store etcds://"),
        (etcd.url().as_str(), vec![], "needs --etcd-cafile"),
        (etcd.url().as_str(), etcd.sectl_tls_args()[..4].to_vec(), "--etcd-certfile needs --etcd-keyfile"),
    ] {
        let out = sectl(store, &dir.path().join("d"), &tls, &["get", "vm"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{store} {tls:?}: {err}");
        assert!(err.contains(says), "{store} {tls:?}: {err}");
    }
    assert!(!dir.path().join("d").exists(), "a refused command opened the embedded store");
    // The verbs that need no store do not look at the flags (nor at --store).
    let out = common::sectl().env("SECTL_ETCD_CAFILE", "/nowhere").arg("version").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Plain TCP to an etcd that speaks TLS only: an error with a hint, no hang (and
    // no death by SIGPIPE when the first write meets the closed connection).
    let started = Instant::now();
    let out = sectl(&plain, &dir.path().join("d"), &[], &["get", "vm"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err} {:?}", out.status);
    assert!(err.contains("if etcd takes clients over TLS only, write etcds://"), "{err}");
    assert_no_dump(&err);
    // TLS to an etcd that speaks plain TCP only: the same, the other way round.
    let plain_etcd = etcd_server::Etcd::start();
    let tls_url = plain_etcd.url().replacen("etcd://", "etcds://", 1);
    let out = sectl(&tls_url, &dir.path().join("d"), &etcd.sectl_tls_args(), &["get", "vm"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err} {:?}", out.status);
    assert!(err.contains("if it takes clients over plain TCP, write etcd://"), "{err}");
    assert_no_dump(&err);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

/// A `serve` replica, killed on drop.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_serve_replica_over_tls_becomes_leader() {
    let etcd = etcd_server::Etcd::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let tls = etcd.sectl_tls_args();
    let mut replica = Replica(
        common::sectl()
            .args(["--store", &etcd.url(), "--data-dir"])
            .arg(dir.path().join("data"))
            .args(&tls)
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--replica-id", "tls-a", "--lease-ttl", "2s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    loop {
        if let Some(status) = replica.0.try_wait().unwrap() {
            panic!("the replica exited ({status}): {}", std::fs::read_to_string(dir.path().join("stderr")).unwrap());
        }
        let out = sectl(&etcd.url(), &dir.path().join("cli"), &tls, &["get", "leader", "-o", "json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["holder"], "tls-a", "{v}");
            return;
        }
        assert!(text(&out.stderr).contains("no replica leads"), "{}", text(&out.stderr));
        assert!(start.elapsed() < Duration::from_secs(30), "no leader after 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}
