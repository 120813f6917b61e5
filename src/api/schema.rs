//! JSON Schemas (draft-07, which yaml-language-server understands) for whole documents
//! of each kind: apiVersion, kind, metadata, spec, and an optional status.

use super::{kind_schemas, Kind, ObjectMeta, API_VERSION};
use schemars::gen::SchemaSettings;
use serde_json::{json, Value};

/// The schema of a whole document of `kind`.
pub fn document_schema(kind: Kind) -> Value {
    let mut g = SchemaSettings::draft07().with(|s| s.option_add_null_type = false).into_generator();
    let meta = g.subschema_for::<ObjectMeta>();
    let (spec, status) = kind_schemas(kind, &mut g);
    let defs = g.take_definitions();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": format!("https://sectl.io/schemas/{}.json", kind.lower()),
        "title": kind.as_str(),
        "description": kind.description(),
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"description": "API group and version.", "type": "string", "const": API_VERSION},
            "kind": {"description": "Kind of object.", "type": "string", "const": kind.as_str()},
            "metadata": meta,
            "spec": spec,
            "status": status,
        },
        "definitions": defs,
    })
}

/// Writes `DIR/<kind>.json` for every kind; returns the paths written.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for k in Kind::ALL {
        let p = dir.join(format!("{}.json", k.lower()));
        let mut text = serde_json::to_string_pretty(&document_schema(*k)).expect("schema serialises");
        text.push('\n');
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}

/// The file content `write_all` would write for `kind`.
pub fn rendered(kind: Kind) -> String {
    let mut text = serde_json::to_string_pretty(&document_schema(kind)).expect("schema serialises");
    text.push('\n');
    text
}
