//! `sectl crds`: the output parses, every kind is there with its names, scope, status
//! subresource and `sectl get`'s columns, the schemas are structural (a check of
//! Kubernetes' rules written here), and every example manifest validates against its
//! CRD's schema with an independent validator (python-jsonschema), while broken
//! copies do not.

mod common;

use sectl::api::Kind;
use serde_json::Value;
use std::path::Path;

fn crds() -> Vec<Value> {
    let out = common::sectl().arg("crds").output().expect("run sectl crds");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sectl::manifest::yaml_to_json(&String::from_utf8_lossy(&out.stdout)).expect("the output is YAML")
}

/// The keywords of apiextensions.k8s.io/v1 JSONSchemaProps a generated schema may use.
const PROPS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
];

/// Kubernetes' structural-schema rules, collecting every violation with its path.
fn structural_problems(s: &Value, path: &str, out: &mut Vec<String>) {
    let Some(m) = s.as_object() else {
        out.push(format!("{path}: a schema must be an object, not {s}"));
        return;
    };
    for k in m.keys().filter(|k| !PROPS.contains(&k.as_str())) {
        out.push(format!("{path}: keyword {k} is not allowed"));
    }
    let ty = m.get("type").and_then(Value::as_str);
    let free = m.contains_key("x-kubernetes-int-or-string") || m.contains_key("x-kubernetes-preserve-unknown-fields");
    match ty {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        None if free => {}
        _ => out.push(format!("{path}: needs a type, has {:?}", m.get("type"))),
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        out.push(format!("{path}: properties and additionalProperties together"));
    }
    if ty == Some("array") && !m.get("items").is_some_and(Value::is_object) {
        out.push(format!("{path}: an array needs one items schema"));
    }
    if let Some(f) = m.get("format").and_then(Value::as_str) {
        if !sectl::api::structural::FORMATS.contains(&f) {
            out.push(format!("{path}: format {f} is not one Kubernetes knows"));
        }
    }
    for v in m.get("enum").and_then(Value::as_array).into_iter().flatten() {
        let fits = match ty {
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("boolean") => v.is_boolean(),
            _ => true,
        };
        if !fits {
            out.push(format!("{path}: enum value {v} is not a {ty:?}"));
        }
    }
    for (n, p) in m.get("properties").and_then(Value::as_object).into_iter().flatten() {
        if n == "metadata" && !path.is_empty() {
            out.push(format!("{path}: metadata below the root"));
        }
        structural_problems(p, &format!("{path}.{n}"), out);
    }
    if let Some(i) = m.get("items") {
        structural_problems(i, &format!("{path}[]"), out);
    }
    match m.get("additionalProperties") {
        Some(a @ Value::Object(_)) => structural_problems(a, &format!("{path}{{}}"), out),
        Some(other) => out.push(format!("{path}: additionalProperties must be a schema, not {other}")),
        None => {}
    }
}

#[test]
fn every_kind_has_a_crd_with_names_columns_and_status() {
    let docs = crds();
    let kinds: Vec<&str> = docs.iter().map(|d| d["spec"]["names"]["kind"].as_str().unwrap_or("")).collect();
    let want: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, want);
    for (d, k) in docs.iter().zip(Kind::ALL) {
        assert_eq!(d["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(d["kind"], "CustomResourceDefinition");
        assert_eq!(d["metadata"]["name"], format!("{}.sectl.io", k.plural()));
        let spec = &d["spec"];
        assert_eq!(spec["group"], "sectl.io");
        assert_eq!(spec["scope"], "Cluster");
        assert_eq!(spec["names"]["plural"], k.plural());
        assert_eq!(spec["names"]["categories"], serde_json::json!(["all"]));
        let short = spec["names"]["shortNames"].as_array().expect("shortNames");
        assert!(k.short_names().iter().any(|s| short.contains(&Value::from(*s))), "{k}: {short:?}");
        let v = &spec["versions"][0];
        assert_eq!(
            (v["name"].as_str(), v["served"].as_bool(), v["storage"].as_bool()),
            (Some("v1alpha1"), Some(true), Some(true))
        );
        assert!(v["subresources"]["status"].is_object(), "{k}");
        // sectl get's columns, in order; the -o wide ones at priority 1.
        let cols = v["additionalPrinterColumns"].as_array().expect("columns");
        let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap_or("")).collect();
        let mut header = sectl::cli::output::header(*k, true);
        header.retain(|h| *h != "NAME" && !sectl::cli::crds::COMPUTED.contains(&(*k, *h)));
        assert_eq!(names, header, "{k}");
        let narrow = sectl::cli::output::header(*k, false);
        let schema = &v["schema"]["openAPIV3Schema"];
        for c in cols {
            let name = c["name"].as_str().unwrap_or("");
            assert_eq!(c["priority"], if narrow.contains(&name) { 0 } else { 1 }, "{k} {name}");
            let path = c["jsonPath"].as_str().expect("jsonPath");
            if path != ".metadata.creationTimestamp" {
                assert!(sectl::cli::crds::node_at(schema, path).is_some(), "{k} {name}: {path} names no field");
            }
        }
    }
}

#[test]
fn the_schemas_are_structural() {
    for d in crds() {
        let schema = &d["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut problems = Vec::new();
        structural_problems(schema, "", &mut problems);
        assert!(problems.is_empty(), "{}: {problems:#?}", d["metadata"]["name"]);
        assert!(schema["properties"]["spec"]["properties"].is_object(), "{}", d["metadata"]["name"]);
    }
    // The check itself finds what Kubernetes refuses.
    let mut p = Vec::new();
    let bad = serde_json::json!({"type": "object", "properties": {"a": {"$ref": "#/x"}, "b": {"type": "array"}, "c": {"description": "untyped"}}});
    structural_problems(&bad, "", &mut p);
    assert_eq!(p.len(), 4, "{p:#?}");
}

const VALIDATE: &str = r#"
import json, sys
try:
    import jsonschema, yaml
except ImportError as e:
    print("missing python package:", e); sys.exit(3)
crds = json.load(open(sys.argv[1]))
bad = 0
seen = 0
for f in sys.argv[2:]:
    for d in yaml.safe_load_all(open(f)):
        if not d: continue
        s = crds[d["kind"]]
        seen += 1
        errs = list(jsonschema.Draft7Validator(s).iter_errors(d))
        if errs:
            bad += 1; print(f, d["metadata"]["name"], [e.message for e in errs])
        if d["kind"] == "VMDefinition":
            m = json.loads(json.dumps(d)); m["spec"]["memoryMiB"] = "lots"
            if jsonschema.Draft7Validator(s).is_valid(m):
                bad += 1; print(f, "memoryMiB: lots passed")
            m = json.loads(json.dumps(d)); del m["spec"]["vmName"]
            if jsonschema.Draft7Validator(s).is_valid(m):
                bad += 1; print(f, "no vmName passed")
print("documents", seen)
sys.exit(1 if bad else 0)
"#;

fn yaml_files(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").path()) {
        if e.is_dir() {
            yaml_files(&e, out);
        } else if e.extension().is_some_and(|x| x == "yaml") {
            out.push(e.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn the_examples_validate_against_the_crd_schemas() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let schemas: serde_json::Map<String, Value> = crds()
        .iter()
        .map(|d| {
            (
                d["spec"]["names"]["kind"].as_str().expect("kind").to_string(),
                d["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect();
    let sp = tmp.path().join("schemas.json");
    std::fs::write(&sp, Value::Object(schemas).to_string()).expect("write");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("manifests"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    files.sort();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(&sp)
        .args(&files)
        .output()
        .expect("python3 is needed: install python3 with the packages jsonschema and pyyaml");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(3), "install the python packages jsonschema and pyyaml: {text}");
    assert!(out.status.success(), "{text}");
    let n: usize =
        text.lines().find_map(|l| l.strip_prefix("documents ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(n >= 10, "only {n} documents checked: {text}");
}
