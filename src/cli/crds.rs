//! `sectl crds`: a CustomResourceDefinition (apiextensions.k8s.io/v1) per kind, so the
//! same manifests validate in any Kubernetes tooling. The schema is the structural
//! form (`api::structural`) of the schemars types behind `schemas/`; the printer
//! columns are `sectl get`'s (the `-o wide` ones at priority 1), each the field it is
//! computed from. Where `sectl get` computes a cell (a count, `2Gi`, `(SU)` before
//! placement), the CRD column shows the field itself: CRD columns are JSONPaths.

use crate::api::schema::document_schema;
use crate::api::structural::structural;
use crate::api::{Kind, API_VERSION};
use crate::cli::output::header;
use serde_json::{json, Map, Value};
use std::process::ExitCode;

/// Examples for `crds --help`.
pub const EXAMPLES: &str = "Examples:
  # Install the kinds into a Kubernetes cluster
  sectl crds | kubectl apply -f -

  # Keep them with the manifests
  sectl crds > crds.yaml";

/// The field behind each column of `sectl get` (NAME is implicit in Kubernetes).
fn column_path(kind: Kind, column: &str) -> Option<&'static str> {
    Some(match (kind, column) {
        (_, "AGE") => ".metadata.creationTimestamp",
        (Kind::SEServer, "MODEL") => ".spec.model",
        (Kind::SEServer, "VERSION") => ".spec.version",
        (Kind::SEServer, "LOCATION") => ".spec.location",
        (Kind::SEServer, "MUS") => ".spec.managementUnits[*].name",
        (Kind::SEServer, "SUS") => ".spec.serverUnits[*].name",
        (Kind::SEServer, "UNITS-ON") => ".status.units[?(@.power==\"ON\")].name",
        (Kind::SEServer, "NET-GBPS") => ".spec.netUnit.speedGbps",
        (Kind::ManagementCluster, "SERVERS") => ".spec.servers",
        (Kind::ManagementCluster | Kind::SUCluster, "STATE") => ".status.state",
        (Kind::ManagementCluster, "CLUSTER-MANAGER") => ".status.clusterManager",
        (Kind::ManagementCluster, "ISL-E-GBPS") => ".spec.islE.bandwidthGbps",
        (Kind::ManagementCluster, "DISKS") => ".spec.configDisks[*].name",
        (Kind::ManagementCluster | Kind::SUCluster, "REASONS") => ".status.reasons",
        (Kind::SUCluster, "SERVER-UNITS") => ".spec.serverUnits",
        (Kind::SUCluster, "TYPE") => ".status.suType",
        (Kind::SUCluster, "ACTIVE") => ".spec.active",
        (Kind::VMDefinition, "VM-NAME") => ".spec.vmName",
        (Kind::VMDefinition, "SU") => ".status.serverUnit",
        (Kind::VMDefinition, "INDEX") => ".status.vmIndex",
        (Kind::VMDefinition, "STATE") => ".status.state",
        (Kind::VMDefinition, "DESIRED") => ".spec.state",
        (Kind::VMDefinition, "SUBSTATES") => ".status.substates",
        (Kind::VMDefinition, "MEMORY") => ".spec.memoryMiB",
        (Kind::VMDefinition, "CPUS") => ".spec.cpus",
        (Kind::VMDefinition, "POOL") => ".spec.cpuPool",
        (Kind::VMDefinition, "PERSISTENT") => ".spec.persistent",
        (Kind::VMDefinition, "LM-COUNT") => ".status.liveMigrationCount",
        (Kind::LiveMigration | Kind::VMRecovery, "VM") => ".spec.vm",
        (Kind::LiveMigration, "SOURCE") => ".status.sourceServerUnit",
        (Kind::LiveMigration, "TARGET") => ".status.targetServerUnit",
        (Kind::LiveMigration, "CHECK-ONLY") => ".spec.checkOnly",
        (Kind::LiveMigration | Kind::VMRecovery, "PHASE") => ".status.phase",
        (Kind::LiveMigration, "MONJV") => ".status.monjv",
        (Kind::LiveMigration, "ROUNDS") => ".status.rounds[*].round",
        (Kind::LiveMigration, "DOWNTIME") => ".status.downtimeMs",
        (Kind::LiveMigration, "DURATION") => ".status.durationMs",
        (Kind::LiveMigration, "CONFLICTS") => ".status.conflicts[*].reason",
        (Kind::VMRecovery, "TARGET") => ".spec.targetServerUnit",
        (Kind::AlarmReceiver, "COMPONENTS") => ".spec.filter.components",
        (Kind::AlarmReceiver, "MIN-WEIGHT") => ".spec.filter.minWeight",
        (Kind::AlarmReceiver, "SENT") => ".status.sent",
        (Kind::AlarmReceiver, "FAILED") => ".status.failed",
        (Kind::AlarmReceiver, "PENDING") => ".status.pending",
        (Kind::AlarmReceiver, "DELIVERED-SEQ") => ".status.deliveredSeq",
        (Kind::AlarmReceiver, "LAST-ERROR") => ".status.lastError",
        _ => return None,
    })
}

/// The schema node a column's JSONPath names (`[*]` and filters step into items).
pub fn node_at<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    // Brackets (`[*]`, `[?(@.power=="ON")]`) become `[]`: they step into items.
    let mut plain = String::new();
    let mut depth = 0u32;
    for c in path.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    plain.push('[');
                }
                depth += 1;
            }
            ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    plain.push(']');
                }
            }
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let mut node = schema;
    for part in plain.trim_start_matches('.').split('.') {
        let (field, rest) = part.split_once('[').map(|(f, r)| (f, Some(r))).unwrap_or((part, None));
        node = node.get("properties")?.get(field)?;
        if rest.is_some() {
            node = node.get("items")?;
        }
    }
    Some(node)
}

fn column_type(kind: Kind, path: &str, schema: &Value) -> &'static str {
    if path == ".metadata.creationTimestamp" {
        return "date";
    }
    let _ = kind;
    match node_at(schema, path).and_then(|n| n["type"].as_str()) {
        Some("integer") if !path.contains('[') => "integer",
        Some("number") if !path.contains('[') => "number",
        Some("boolean") if !path.contains('[') => "boolean",
        _ => "string",
    }
}

/// Columns of `sectl get` that no single field holds (an AlarmReceiver's TYPE and
/// TARGET come from whichever of `spec.snmp` and `spec.mail` is set): a CRD column is
/// one JSONPath, so these have none.
pub const COMPUTED: &[(Kind, &str)] = &[(Kind::AlarmReceiver, "TYPE"), (Kind::AlarmReceiver, "TARGET")];

fn printer_columns(kind: Kind, schema: &Value) -> Vec<Value> {
    let narrow = header(kind, false);
    header(kind, true)
        .into_iter()
        .filter(|c| *c != "NAME" && !COMPUTED.contains(&(kind, *c)))
        .map(|c| {
            let path = column_path(kind, c).unwrap_or_else(|| panic!("no CRD column for {kind} {c}"));
            json!({
                "name": c,
                "type": column_type(kind, path, schema),
                "jsonPath": path,
                "priority": if narrow.contains(&c) { 0 } else { 1 },
            })
        })
        .collect()
}

/// The openAPIV3Schema of `kind`.
pub fn schema(kind: Kind) -> Value {
    let doc = document_schema(kind);
    let defs: Map<String, Value> = doc["definitions"].as_object().cloned().unwrap_or_default();
    let part = |name: &str| structural(&doc["properties"][name], &defs);
    json!({
        "description": kind.description(),
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API group and version."},
            "kind": {"type": "string", "description": "Kind of object."},
            "metadata": {"type": "object"},
            "spec": part("spec"),
            "status": part("status"),
        },
    })
}

/// The CustomResourceDefinition of `kind`.
pub fn crd(kind: Kind) -> Value {
    let (group, version) = API_VERSION.split_once('/').expect("group/version");
    let singular = kind.lower();
    let short: Vec<&str> = kind.short_names().iter().copied().filter(|s| *s != singular).collect();
    let schema = schema(kind);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{group}", kind.plural())},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {
                "kind": kind.as_str(),
                "listKind": format!("{}List", kind.as_str()),
                "plural": kind.plural(),
                "singular": singular,
                "shortNames": short,
                "categories": ["all"],
            },
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer_columns(kind, &schema),
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    })
}

/// Every kind's CRD as YAML documents.
pub fn render() -> String {
    Kind::ALL.iter().map(|k| format!("---\n{}", crate::manifest::to_yaml(&crd(*k)))).collect()
}

/// `sectl crds`.
pub fn run() -> anyhow::Result<ExitCode> {
    super::get::emit(&render())?;
    Ok(ExitCode::SUCCESS)
}
