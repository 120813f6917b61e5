//! Helpers shared by the integration tests: a small good site, building objects from
//! YAML, and running the real binary.
#![allow(dead_code)]

pub mod serve;
pub mod world;

use sectl::api::Resource;
use std::path::Path;

/// A small, valid site: two servers with one SU /390 each, a Management Cluster, an SU
/// cluster and one VM definition.
pub const SITE: &str = r#"apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se701}
spec:
  model: SE700
  location: Augsburg
  version: V6.3
  managementUnits: [{name: abgwhite}]
  netUnit: {speedGbps: 10}
  serverUnits:
    - name: ABGSE701
      type: "390"
      operationMode: VM2000
      cpus: 8
      memoryMiB: 65536
      cpuPools: [{name: "*STDPOOL", cpus: 8}]
      devices:
        - {mn: "4683", type: disk, hostConnector: "01", unitId: "00"}
---
apiVersion: sectl.io/v1alpha1
kind: SEServer
metadata: {name: se501}
spec:
  model: SE500
  location: Augsburg
  version: V6.3
  managementUnits: [{name: abgblack}]
  serverUnits:
    - name: ABGSE501
      type: "390"
      cpus: 4
      memoryMiB: 32768
      devices:
        - {mn: "4683", type: disk, hostConnector: "01", unitId: "00"}
---
apiVersion: sectl.io/v1alpha1
kind: ManagementCluster
metadata: {name: mc}
spec:
  servers: [se701, se501]
  islE: {bandwidthGbps: 10, rttMs: 1}
  configDisks: [{name: crd-a}, {name: crd-b}]
---
apiVersion: sectl.io/v1alpha1
kind: SUCluster
metadata: {name: su390}
spec: {serverUnits: [ABGSE701, ABGSE501], active: true}
---
apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm12prod, labels: {app: prod}}
spec:
  vmName: VM12PROD
  serverUnit: ABGSE501
  vmIndex: 12
  state: RUNNING
  memoryMiB: 2048
  cpus: 1
  devices: [{mn: "4683", usage: exclusive}]
  workload: {dirtyRateMiBps: 40}
"#;

/// Decodes YAML that must hold exactly one valid object.
pub fn one(yaml: &str) -> Resource {
    let docs = sectl::manifest::decode("test.yaml", yaml.as_bytes())
        .unwrap_or_else(|errs| panic!("test YAML does not decode: {errs:?}\n{yaml}"));
    assert_eq!(docs.len(), 1, "expected one document in\n{yaml}");
    docs.into_iter().next().expect("one").resource
}

/// Decodes YAML holding any number of valid objects.
pub fn all(yaml: &str) -> Vec<Resource> {
    sectl::manifest::decode("test.yaml", yaml.as_bytes())
        .unwrap_or_else(|errs| panic!("test YAML does not decode: {errs:?}"))
        .into_iter()
        .map(|d| d.resource)
        .collect()
}

/// A VMDefinition named `name` with `memory` MiB.
pub fn vm(name: &str, memory: u64) -> Resource {
    one(&vm_yaml(name, memory))
}

/// The YAML of `vm`.
pub fn vm_yaml(name: &str, memory: u64) -> String {
    format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: {name}}}\nspec:\n  vmName: VM1\n  serverUnit: ABGSE501\n  memoryMiB: {memory}\n"
    )
}

/// The real binary.
pub fn sectl() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sectl"))
}

/// The real binary as an assert_cmd command working on `data_dir`.
pub fn sectl_in(data_dir: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_sectl"));
    c.arg("--data-dir").arg(data_dir).env_remove("SECTL_SERVER").env_remove("SECTL_DATA_DIR");
    c
}
