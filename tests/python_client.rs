//! Issue 10: the official Kubernetes Python client (`pip install kubernetes`) against a
//! real `sectl serve`, using only the kubeconfig the server writes. The checks are in
//! `tests/py/k8s_client.py` (typed lists, label and field selectors, watch from
//! resourceVersion 0 and with timeout_seconds, merge patch, dry_run=All); this test
//! starts the server and fails with the script's message, or says what to install.

mod common;

use common::serve::{run_bounded, Serve};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const EXTRA: &str = r#"apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm-a, labels: {env: prod}}
spec: {vmName: VMA, serverUnit: ABGSE501, memoryMiB: 1024}
---
apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm-b, labels: {env: dev}}
spec: {vmName: VMB, serverUnit: ABGSE501, memoryMiB: 1024}
---
apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm-c}
spec: {vmName: VMC, serverUnit: ABGSE501, memoryMiB: 1024}
"#;

#[test]
fn the_official_python_client_lists_watches_patches_and_dry_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(&tmp.path().join("data"), EXTRA);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/k8s_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(serve.kubeconfig()).env("HOME", tmp.path()).env_remove("KUBECONFIG");
    let which = Command::new("sh").args(["-c", "command -v python3"]).output().expect("sh");
    assert!(which.status.success(), "python3 is not installed: install python3 and `pip install kubernetes`");
    let (code, out, err) = run_bounded(cmd, Duration::from_secs(120));
    assert_ne!(code, Some(3), "the Python client is missing: pip install kubernetes\n{err}");
    assert_eq!(code, Some(0), "tests/py/k8s_client.py failed:\nstdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("ok:"), "{out}");
}
