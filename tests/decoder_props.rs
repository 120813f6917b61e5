//! Properties of the manifest decoder (`sectl::manifest::decode`):
//! (a) arbitrary bytes never make it panic, and every error names the file;
//! (b) YAML-like text built from real field names, odd scalars, nesting, anchors,
//!     aliases and document separators never makes it panic either;
//! (c) a valid VMDefinition, written as YAML in many styles, decodes to an equal object.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use sectl::api::checked::{Cpus, MiB, MnSpec};
use sectl::api::{
    AnySpec, DesiredVmState, DeviceUsage, ObjectMeta, ObjectName, Resource, StringMap, UnitName, VMDefinitionSpec,
    VmIndex, VmName, Workload,
};
use sectl::manifest::{decode, Document, ManifestError};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Modest case counts: the whole file runs in a few seconds in a debug build.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Decodes `bytes` as file "f" and checks the shape of the answer.
fn check_decode(bytes: &[u8]) -> Result<Result<Vec<Document>, Vec<ManifestError>>, TestCaseError> {
    let started = Instant::now();
    let result = decode("f", bytes);
    prop_assert!(started.elapsed() < Duration::from_secs(2), "decode took {:?}", started.elapsed());
    let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    match &result {
        Ok(docs) => {
            for d in docs {
                prop_assert_eq!(d.source.file.as_str(), "f");
                prop_assert!(
                    d.source.line >= 1 && d.source.line <= lines,
                    "document line {} of {lines}",
                    d.source.line
                );
            }
        }
        Err(errs) => {
            prop_assert!(!errs.is_empty(), "Err with no errors");
            for e in errs {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("f:"), "error does not start with the file name: {shown:?}");
                prop_assert_eq!(e.file.as_str(), "f");
                prop_assert!(!e.message.is_empty(), "empty message: {shown:?}");
                // libyaml may point just past the last line (at the end of the stream).
                prop_assert!(e.line <= lines + 1, "error line {} past the end ({lines} lines): {shown:?}", e.line);
                // Only a short excerpt of the input is ever quoted.
                if let Some(q) = longest_quote(&e.message) {
                    prop_assert!(q <= 41, "a quote of {q} characters in {shown:?}");
                }
                prop_assert!(e.message.chars().count() <= 401, "a message of {} characters", e.message.len());
            }
        }
    }
    Ok(result)
}

/// Characters in the longest "..." or `...` span of `msg` (an escape like `\"` counts
/// as one, as it stands for one character of the input).
fn longest_quote(msg: &str) -> Option<usize> {
    let mut longest = None;
    let mut open: Option<(char, usize)> = None;
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        match open {
            Some((q, n)) if c == q => {
                longest = longest.max(Some(n));
                open = None;
            }
            Some((q, n)) => {
                if q == '"' && c == '\\' {
                    chars.next();
                }
                open = Some((q, n + 1));
            }
            None if c == '"' || c == '`' => open = Some((c, 0)),
            None => {}
        }
    }
    longest.max(open.map(|(_, n)| n))
}

// --- (a) arbitrary bytes ----------------------------------------------------------------

/// Bytes drawn mostly from YAML's punctuation, so they reach deeper into the parser than
/// uniformly random bytes do.
fn yamlish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> =
        b":-[]{}&*!|>'\"#%@`?,.~\\ \t\n\nakv1019ABx".iter().copied().chain([0xC3, 0xA9, 0xFF, 0x00]).collect();
    vec(prop::sample::select(alphabet), 0..300)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop_oneof![vec(any::<u8>(), 0..600), yamlish_bytes()]) {
        let _ = check_decode(&bytes)?;
    }
}

// --- (b) YAML-ish text --------------------------------------------------------------------

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
    "name",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "vmName",
    "serverUnit",
    "vmIndex",
    "persistent",
    "state",
    "memoryMiB",
    "cpus",
    "cpuPool",
    "vmGroup",
    "maxIo",
    "devices",
    "mn",
    "usage",
    "workload",
    "dirtyRateMiBps",
    "model",
    "location",
    "version",
    "managementUnits",
    "netUnit",
    "speedGbps",
    "hncs",
    "serverUnits",
    "type",
    "operationMode",
    "monitorMemoryMiB",
    "maxVmDefinitions",
    "cpuPools",
    "vmGroups",
    "hostConnector",
    "unitId",
    "servers",
    "islE",
    "bandwidthGbps",
    "rttMs",
    "lengthKm",
    "configDisks",
    "sizeGb",
    "active",
    "vm",
    "targetServerUnit",
    "checkOnly",
    "<<",
    "? x",
    "\"quoted key\"",
    "x",
];

const SCALARS: &[&str] = &[
    "sectl.io/v1alpha1",
    "v1",
    "VMDefinition",
    "SEServer",
    "ManagementCluster",
    "SUCluster",
    "LiveMigration",
    "VMRecovery",
    "vm1",
    "VM1",
    "vm12prod",
    "ABGSE501",
    "ABGSE701",
    "\"390\"",
    "x86",
    "VM2000",
    "Native",
    "\"*ANY\"",
    "\"*STDPOOL\"",
    "RUNNING",
    "DEFINED_ONLY",
    "shared",
    "exclusive",
    "disk",
    "\"4683\"",
    "4683",
    "\"A000-A0FF\"",
    "A0FF-A000",
    "\"01\"",
    "1",
    "0",
    "-1",
    "12",
    "99",
    "100",
    "1024",
    "65536",
    "18446744073709551616",
    "1.5",
    "-0.0",
    "1e400",
    ".nan",
    ".inf",
    "0x1F",
    "0o17",
    "true",
    "false",
    "null",
    "~",
    "''",
    "\"\"",
    "'it''s'",
    "\"a\\u0000b\"",
    "\"\\xFF\"",
    "!!str 5",
    "!!int x",
    "!!binary aGVsbG8=",
    "!custom x",
    "!!map {}",
    "|\n  text",
    ">-\n  folded",
    "V6.3",
    "SE700",
    "Augsburg",
    "{}",
    "[]",
    "[[]]",
    "{a: }",
];

/// A YAML node to render.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Alias(String),
    Anchored(String, Box<Node>),
}

fn anchor_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "ANY", "STDPOOL"]).prop_map(String::from)
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(SCALARS).prop_map(String::from),
        1 => "[a-zA-Z0-9 _.-]{0,10}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        6 => scalar().prop_map(Node::Scalar),
        1 => anchor_name().prop_map(Node::Alias),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            3 => vec((prop::sample::select(KEYS).prop_map(String::from), inner.clone()), 0..5).prop_map(Node::Map),
            2 => vec(inner.clone(), 0..5).prop_map(Node::Seq),
            1 => (anchor_name(), inner).prop_map(|(a, n)| Node::Anchored(a, Box::new(n))),
        ]
    })
}

/// Renders `n` inline (flow style).
fn flow(n: &Node, out: &mut String) {
    match n {
        Node::Scalar(s) => out.push_str(&s.replace('\n', " ")),
        Node::Alias(a) => {
            out.push('*');
            out.push_str(a);
        }
        Node::Anchored(a, inner) => {
            out.push('&');
            out.push_str(a);
            out.push(' ');
            flow(inner, out);
        }
        Node::Seq(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(it, out);
            }
            out.push(']');
        }
        Node::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                flow(v, out);
            }
            out.push('}');
        }
    }
}

/// Renders `n` in block style at `indent`, as the value after "key:" (or a "- ").
fn block(n: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match n {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(k);
                out.push(':');
                block(v, indent + 2, out);
            }
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for it in items {
                out.push_str(&pad);
                out.push('-');
                block(it, indent + 2, out);
            }
        }
        Node::Scalar(s) if s.contains('\n') => {
            // Block scalars: indent their content.
            out.push(' ');
            out.push_str(&s.replace('\n', &format!("\n{pad}")));
            out.push('\n');
        }
        _ => {
            out.push(' ');
            flow(n, out);
            out.push('\n');
        }
    }
}

/// One document: a mapping, often with a real header so decoding reaches the spec.
fn document() -> impl Strategy<Value = String> {
    let kinds =
        vec!["SEServer", "ManagementCluster", "SUCluster", "VMDefinition", "LiveMigration", "VMRecovery", "Nope"];
    (
        prop::option::of(prop::sample::select(kinds)),
        vec((prop::sample::select(KEYS).prop_map(String::from), node()), 0..6),
        any::<bool>(),
    )
        .prop_map(|(kind, entries, use_flow)| {
            let mut out = String::new();
            if let Some(k) = kind {
                out.push_str(&format!("apiVersion: sectl.io/v1alpha1\nkind: {k}\nmetadata: {{name: x}}\n"));
            }
            if use_flow {
                for (k, v) in &entries {
                    out.push_str(k);
                    out.push_str(": ");
                    flow(v, &mut out);
                    out.push('\n');
                }
            } else {
                for (k, v) in &entries {
                    out.push_str(k);
                    out.push(':');
                    block(v, 2, &mut out);
                }
            }
            out
        })
}

fn yaml_text() -> impl Strategy<Value = String> {
    (vec(document(), 1..4), prop::sample::select(vec!["---\n", "--- \n", "...\n---\n", "---\n# c\n"]), any::<bool>())
        .prop_map(|(docs, sep, lead)| {
            let body = docs.join(sep);
            if lead {
                format!("---\n{body}")
            } else {
                body
            }
        })
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn yamlish_text_never_panics(text in yaml_text()) {
        let _ = check_decode(text.as_bytes())?;
    }
}

/// Inputs found to break the decoder, kept as plain tests (with the property they break).
#[test]
fn unknown_alias_inside_a_mapping_does_not_panic() {
    // `cpuPool: *STDPOOL` / `vmIndex: *ANY` without quotes are aliases to anchors that
    // do not exist. serde_yaml stops the document at the alias and then starts the next
    // "document" in the middle of the mapping; decode must report an error, not panic.
    for text in [
        "a: *a\n",
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: vm1}\nspec:\n  vmName: VM1\n  serverUnit: SU1\n  memoryMiB: 1024\n  cpuPool: *STDPOOL\n",
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: vm1}\nspec: {vmName: VM1, serverUnit: SU1, memoryMiB: 1024, vmIndex: *ANY}\n",
        "x: &a [1]\n---\ny: *a\n",
    ] {
        let result = std::panic::catch_unwind(|| decode("f", text.as_bytes()));
        let result = result.unwrap_or_else(|p| {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            panic!("decode panicked ({msg:?}) on {text:?}")
        });
        let errs = result.expect_err("an unknown alias must be an error");
        assert!(errs.iter().any(|e| e.message.contains("unknown anchor")), "{text:?}: {errs:?}");
        assert!(errs.iter().all(|e| e.to_string().starts_with("f:")));
    }
}

#[test]
fn alias_bomb_in_ignored_status_is_cheap() {
    // A manifest's status is skipped without expanding aliases; whatever the answer,
    // it must come at once.
    let bomb = r#"apiVersion: sectl.io/v1alpha1
kind: VMDefinition
metadata: {name: vm1}
spec: {vmName: VM1, serverUnit: SU1, memoryMiB: 1024}
status:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"#;
    let started = Instant::now();
    let _ = decode("f", bomb.as_bytes());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // Where the value is really built (spec before kind), the repetition limit stops it.
    let laughs = &bomb[bomb.find("  a: &a").unwrap()..];
    let deferred =
        format!("spec:\n{laughs}apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {{name: vm1}}\n");
    let started = Instant::now();
    let errs = decode("f", deferred.as_bytes()).expect_err("a billion laughs in spec must be refused");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(errs.iter().any(|e| e.message.contains("expands through YAML aliases")), "{errs:?}");
}

// --- (c) round trip -------------------------------------------------------------------------

/// A generated valid VMDefinition, with the choices of how to write it.
#[derive(Debug, Clone)]
struct GenVm {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    vm_name: String,
    server_unit: String,
    /// None: leave out (default *ANY); Some(None): "*ANY"; Some(Some(n)): n.
    vm_index: Option<Option<u32>>,
    persistent: Option<bool>,
    state: Option<&'static str>,
    memory: u64,
    cpus: Option<u32>,
    cpu_pool: Option<String>,
    vm_group: Option<String>,
    max_io: Option<u32>,
    devices: Option<Vec<(String, Option<&'static str>)>>,
    dirty: Option<f64>,
    /// Order in which the spec's fields are written.
    order: Vec<usize>,
    /// Spec as a flow mapping rather than a block.
    flow_spec: bool,
    /// metadata as a flow mapping rather than a block.
    flow_meta: bool,
    /// Quoting style per scalar (cycled): 0 plain where possible, 1 single, 2 double.
    quoting: Vec<u8>,
    /// Start with "---" and a comment.
    preamble: bool,
}

fn object_name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9]", "[a-z0-9][-a-z0-9]{0,20}[a-z0-9]", "[a-z][a-z0-9]{61}[a-z0-9]"]
}

fn unit_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9*][A-Za-z0-9_*-]{0,31}"
}

fn mn() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z0-9]{2}",
        "[A-Z0-9]{4}",
        (0u32..=0xFFFF, 0u32..300).prop_map(|(a, len)| format!("{a:04X}-{:04X}", (a + len).min(0xFFFF))),
    ]
}

fn expand(mn: &str) -> Vec<String> {
    MnSpec::new(mn).expect("generated MN is valid").expand()
}

fn map_key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9./_-]{0,15}"
}

fn map_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,8}",
        "\\PC{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
        Just(String::new()),
        Just("true".to_string()),
        Just("123".to_string()),
        Just("*ANY".to_string()),
        Just("a: b # c".to_string()),
    ]
}

fn gen_vm() -> impl Strategy<Value = GenVm> {
    let meta = (object_name(), btree_map(map_key(), map_value(), 0..4), btree_map(map_key(), map_value(), 0..3));
    let spec1 = (
        "[A-Z0-9]{1,8}",
        unit_name(),
        prop::option::of(prop::option::of(2u32..=99)),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["DEFINED_ONLY", "INIT_ONLY", "RUNNING", "DOWN"])),
        1u64..=16_777_216,
        prop::option::of(1u32..=1024),
    );
    let spec2 = (
        prop::option::of(unit_name()),
        prop::option::of(unit_name()),
        prop::option::of(0u32..=1_000_000),
        prop::option::of(vec((mn(), prop::option::of(prop::sample::select(vec!["exclusive", "shared"]))), 0..5)),
        prop::option::of((0u32..200_000).prop_map(|x| f64::from(x) / 16.0)),
    );
    let style = (
        Just((0..11).collect::<Vec<usize>>()).prop_shuffle(),
        any::<bool>(),
        any::<bool>(),
        vec(0u8..3, 1..8),
        any::<bool>(),
    );
    (meta, spec1, spec2, style)
        .prop_map(|(meta, s1, s2, st)| GenVm {
            name: meta.0,
            labels: meta.1,
            annotations: meta.2,
            vm_name: s1.0,
            server_unit: s1.1,
            vm_index: s1.2,
            persistent: s1.3,
            state: s1.4,
            memory: s1.5,
            cpus: s1.6,
            cpu_pool: s2.0,
            vm_group: s2.1,
            max_io: s2.2,
            devices: s2.3,
            dirty: s2.4,
            order: st.0,
            flow_spec: st.1,
            flow_meta: st.2,
            quoting: st.3,
            preamble: st.4,
        })
        .prop_filter("device MNs must not repeat", |g| {
            let mut seen = BTreeSet::new();
            g.devices.iter().flatten().all(|(m, _)| expand(m).into_iter().all(|x| seen.insert(x)))
        })
}

impl GenVm {
    /// The object the YAML means, built without the decoder.
    fn expected(&self) -> Resource {
        let mut meta = ObjectMeta::named(ObjectName::new(self.name.as_str()).unwrap());
        meta.labels = StringMap(self.labels.clone());
        meta.annotations = StringMap(self.annotations.clone());
        // Every field this test knows is given explicitly, defaults included, so the
        // YAML (which leaves them out) must come out with the documented defaults.
        // Built from JSON so that fields added later keep their own defaults.
        let devices: Vec<serde_json::Value> = self
            .devices
            .iter()
            .flatten()
            .map(|(m, u)| serde_json::json!({"mn": m, "usage": u.unwrap_or("exclusive")}))
            .collect();
        let mut spec = serde_json::json!({
            "vmName": self.vm_name,
            "serverUnit": self.server_unit,
            "vmIndex": match self.vm_index {
                None | Some(None) => serde_json::json!("*ANY"),
                Some(Some(n)) => serde_json::json!(n),
            },
            "persistent": self.persistent.unwrap_or(true),
            "state": self.state.unwrap_or("DEFINED_ONLY"),
            "memoryMiB": self.memory,
            "cpus": self.cpus.unwrap_or(1),
            "cpuPool": self.cpu_pool.as_deref().unwrap_or("*STDPOOL"),
            "devices": devices,
            "workload": {"dirtyRateMiBps": self.dirty.unwrap_or(0.0)},
        });
        if let Some(g) = &self.vm_group {
            spec["vmGroup"] = serde_json::json!(g);
        }
        if let Some(m) = self.max_io {
            spec["maxIo"] = serde_json::json!(m);
        }
        let spec: VMDefinitionSpec = serde_json::from_value(spec).expect("the expected spec is valid");
        // And the typed view agrees with the defaults the API documents.
        assert_eq!(spec.vm_name, VmName::new(self.vm_name.as_str()).unwrap());
        assert_eq!(spec.server_unit, UnitName::new(self.server_unit.as_str()).unwrap());
        assert_eq!(spec.memory_mi_b, MiB(self.memory));
        assert_eq!(spec.cpus, Cpus(self.cpus.unwrap_or(1)));
        assert_eq!(spec.persistent, self.persistent.unwrap_or(true));
        if self.state.is_none() {
            assert_eq!(spec.state, DesiredVmState::DefinedOnly);
        }
        if self.vm_index.is_none() {
            assert_eq!(spec.vm_index, VmIndex::Any);
        }
        assert_eq!(spec.devices.len(), self.devices.as_ref().map_or(0, Vec::len));
        assert!(spec
            .devices
            .iter()
            .zip(self.devices.iter().flatten())
            .all(|(d, (m, u))| d.mn == MnSpec::new(m.as_str()).unwrap()
                && d.usage == if *u == Some("shared") { DeviceUsage::Shared } else { DeviceUsage::Exclusive }));
        assert_eq!(spec.workload, Workload { dirty_rate_mi_bps: self.dirty.unwrap_or(0.0) });
        Resource::new(meta, AnySpec::VMDefinition(spec))
    }

    /// The YAML text, in the generated style.
    fn render(&self) -> String {
        let mut q = Quoter { styles: &self.quoting, i: 0 };
        let mut out = String::new();
        if self.preamble {
            out.push_str("# generated\n---\n");
        }
        out.push_str("apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\n");
        let map = |q: &mut Quoter, m: &BTreeMap<String, String>| -> String {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", q.quote(k), q.quote(v))).collect();
            format!("{{{}}}", items.join(", "))
        };
        if self.flow_meta {
            let mut parts = vec![format!("name: {}", q.quote(&self.name))];
            if !self.labels.is_empty() {
                parts.push(format!("labels: {}", map(&mut q, &self.labels)));
            }
            if !self.annotations.is_empty() {
                parts.push(format!("annotations: {}", map(&mut q, &self.annotations)));
            }
            out.push_str(&format!("metadata: {{{}}}\n", parts.join(", ")));
        } else {
            out.push_str(&format!("metadata:\n  name: {}\n", q.quote(&self.name)));
            for (what, m) in [("labels", &self.labels), ("annotations", &self.annotations)] {
                if !m.is_empty() {
                    out.push_str(&format!("  {what}:\n"));
                    for (k, v) in m {
                        out.push_str(&format!("    {}: {}\n", q.quote(k), q.quote(v)));
                    }
                }
            }
        }
        let mut fields: Vec<(&str, String)> = Vec::new();
        for i in &self.order {
            let f = match i {
                0 => Some(("vmName", q.quote(&self.vm_name))),
                1 => Some(("serverUnit", q.quote(&self.server_unit))),
                2 => self.vm_index.map(|v| ("vmIndex", v.map_or_else(|| "\"*ANY\"".to_string(), |n| n.to_string()))),
                3 => self.persistent.map(|p| ("persistent", p.to_string())),
                4 => self.state.map(|s| ("state", q.quote(s))),
                5 => Some(("memoryMiB", self.memory.to_string())),
                6 => self.cpus.map(|c| ("cpus", c.to_string())),
                7 => self.cpu_pool.as_ref().map(|p| ("cpuPool", q.quote(p))),
                8 => self.vm_group.as_ref().map(|g| ("vmGroup", q.quote(g))),
                9 => self.max_io.map(|m| ("maxIo", m.to_string())),
                _ => None,
            };
            fields.extend(f);
            if *i == 10 {
                if let Some(devs) = &self.devices {
                    let items: Vec<String> = devs
                        .iter()
                        .map(|(m, u)| match u {
                            Some(u) => format!("{{mn: {}, usage: {u}}}", q.quote(m)),
                            None => format!("{{mn: {}}}", q.quote(m)),
                        })
                        .collect();
                    fields.push(("devices", format!("[{}]", items.join(", "))));
                }
                if let Some(d) = self.dirty {
                    fields.push(("workload", format!("{{dirtyRateMiBps: {d:?}}}")));
                }
            }
        }
        if self.flow_spec {
            let items: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out.push_str(&format!("spec: {{{}}}\n", items.join(",\n  ")));
        } else {
            out.push_str("spec:\n");
            for (k, v) in &fields {
                out.push_str(&format!("  {k}: {v}  # {k}\n"));
            }
        }
        out
    }
}

/// Writes scalars plain, single- or double-quoted, in turn, as far as each is safe.
struct Quoter<'a> {
    styles: &'a [u8],
    i: usize,
}

impl Quoter<'_> {
    fn quote(&mut self, s: &str) -> String {
        let style = self.styles[self.i % self.styles.len()];
        self.i += 1;
        let plain_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !["true", "false", "null", "yes", "no", "on", "off", "y", "n", "nan", "inf"]
                .contains(&s.to_ascii_lowercase().as_str());
        let single_ok = s.chars().all(|c| (' '..='~').contains(&c));
        match style {
            0 if plain_ok => s.to_string(),
            0 | 1 if single_ok => format!("'{}'", s.replace('\'', "''")),
            _ => double_quoted(s),
        }
    }
}

/// A YAML double-quoted scalar: printable ASCII as is, everything else escaped.
fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn valid_vm_definition_round_trips(g in gen_vm()) {
        let text = g.render();
        let want = g.expected();
        let docs = match check_decode(text.as_bytes())? {
            Ok(d) => d,
            Err(errs) => {
                let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                return Err(TestCaseError::fail(format!("valid YAML rejected: {shown:#?}\n{text}")));
            }
        };
        prop_assert_eq!(docs.len(), 1, "{}", text);
        prop_assert_eq!(&docs[0].resource, &want, "{}", text);

        // What sectl prints (`get -o yaml`) decodes to the same object too.
        let printed = sectl::manifest::to_yaml(&want);
        let again = match check_decode(printed.as_bytes())? {
            Ok(d) => d,
            Err(errs) => {
                let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                return Err(TestCaseError::fail(format!("printed YAML rejected: {shown:#?}\n{printed}")));
            }
        };
        prop_assert_eq!(again.len(), 1);
        prop_assert_eq!(&again[0].resource, &want, "{}", printed);
    }
}

// --- (d) the fuzz target: a repeatable, bounded run over all of the above -------------------

/// An anchored string of `len` bytes and `aliases` aliases to it, in annotations.
fn amplified(len: usize, aliases: usize) -> String {
    let mut t = format!(
        "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata:\n  name: a\n  annotations:\n    a0: &s \"{}\"\n",
        "x".repeat(len)
    );
    for i in 1..=aliases {
        t.push_str(&format!("    a{i}: *s\n"));
    }
    t.push_str("spec: {vmName: VM1, serverUnit: SU1, memoryMiB: 1}\n");
    t
}

/// The manifest decoder's fuzz target: arbitrary bytes, YAML-punctuation bytes,
/// YAML-like documents, valid documents with a byte-order mark, and alias
/// amplification, valid VM definitions in many styles (also after a byte-order
/// mark), with a fixed seed so that a run is repeatable. The properties:
/// no panic; every error names the file and quotes at most a short excerpt; a
/// decoded object survives a JSON round trip unchanged; an amplified document over
/// the budget is refused as such. `SECTL_FUZZ_CASES` (default 1500) and
/// `SECTL_FUZZ_SEED` (default 8) set the run; it prints how many cases ran and how
/// long it took.
#[test]
fn fuzz_manifest_decoder() {
    use proptest::test_runner::{RngSeed, TestRunner};
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (cases, seed) = (env("SECTL_FUZZ_CASES", 1500) as u32, env("SECTL_FUZZ_SEED", 8));
    let cfg = ProptestConfig { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(seed), ..config(cases) };
    let input = prop_oneof![
        3 => vec(any::<u8>(), 0..2000),
        3 => yamlish_bytes(),
        4 => yaml_text().prop_map(String::into_bytes),
        1 => yaml_text().prop_map(|t| format!("\u{feff}{t}").into_bytes()),
        2 => gen_vm().prop_map(|g| g.render().into_bytes()),
        1 => gen_vm().prop_map(|g| format!("\u{feff}{}", g.render()).into_bytes()),
        1 => (0usize..64 * 1024, 0usize..1200).prop_map(|(len, n)| amplified(len, n).into_bytes()),
    ];
    let (ok, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let started = Instant::now();
    TestRunner::new(cfg)
        .run(&input, |bytes| {
            match check_decode(&bytes)? {
                Ok(docs) => {
                    ok.set(ok.get() + 1);
                    for d in docs {
                        let back = Resource::from_json(&d.resource.to_json()).map_err(TestCaseError::fail)?;
                        prop_assert_eq!(back, d.resource);
                    }
                }
                Err(errs) => {
                    refused.set(refused.get() + 1);
                    // Amplified past the largest budget a file this small can have.
                    let text = String::from_utf8_lossy(&bytes);
                    let aliases = text.matches(": *s").count();
                    let anchored = text.split('"').nth(1).map_or(0, str::len);
                    if text.contains("&s \"")
                        && (aliases * anchored) as u64 > 11 * (1 << 20).max(10 * bytes.len() as u64)
                    {
                        prop_assert!(
                            errs.iter().any(|e| e.message.contains("expands through YAML aliases")),
                            "amplified {aliases} x {anchored} bytes: {errs:?}"
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "fuzz_manifest_decoder: {cases} cases (seed {seed}): {} decoded, {} refused, in {:.1?}",
        ok.get(),
        refused.get(),
        started.elapsed()
    );
}
