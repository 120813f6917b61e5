//! Errors as Kubernetes clients read them: a `kind: Status` object (`status:
//! Failure`, `reason`, `message`, `code`, `details`). kubectl prints `details.kind`,
//! `details.name` and each of `details.causes` (`field`, `message`), so a 422 reads
//! `The vmdefinitions "vm1" is invalid: spec.memoryMiB: ...`.
//!
//! Handlers keep returning `ApiErr(code, reason, message)`; `body` builds the Status
//! from it (one cause per line of an Invalid message, with the field path found in
//! the line), and `with_details` adds what only the request path knows (the resource
//! and the name), in the one middleware every error passes through.

use serde_json::{json, Value};

/// The Status body of an error. The old fields `code`, `reason`, `message` stay at
/// the top level, so sectl's own client reads it unchanged.
pub fn body(code: u16, reason: &str, message: &str) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if reason == "Invalid" {
        let causes: Vec<Value> = message
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| json!({"reason": "FieldValueInvalid", "message": l, "field": field_of(l)}))
            .collect();
        v["details"] = json!({"causes": causes});
    }
    v
}

/// The field path in a message line such as `item 1:4:3: spec.memoryMiB: too large`
/// or `VMDefinition vm1: spec.devices[0].mn: unknown`; empty when there is none.
pub fn field_of(line: &str) -> String {
    line.split(": ")
        .map(str::trim)
        .find(|part| {
            ["metadata", "spec", "status"].iter().any(|root| {
                *part == *root || part.starts_with(&format!("{root}.")) || part.starts_with(&format!("{root}["))
            }) && !part.contains(' ')
        })
        .unwrap_or("")
        .to_string()
}

/// Adds `details.group`, `details.kind` (the plural) and `details.name` from an API
/// path `/apis/sectl.io/v1alpha1/<plural>[/<name>[/status]]`.
pub fn with_details(path: &str, v: &mut Value) {
    let Some(rest) = path.strip_prefix(crate::client::PREFIX) else { return };
    let mut parts = rest.trim_start_matches('/').split('/');
    let plural = parts.next().unwrap_or("");
    if crate::api::Kind::ALL.iter().all(|k| k.plural() != plural) {
        return;
    }
    if !v["details"].is_object() {
        v["details"] = json!({});
    }
    v["details"]["group"] = json!("sectl.io");
    v["details"]["kind"] = json!(plural);
    if let Some(name) = parts.next().filter(|n| !n.is_empty()) {
        v["details"]["name"] = json!(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lines_become_causes_with_field_paths() {
        let v = body(
            422,
            "Invalid",
            "item 1:4:3: spec.memoryMiB: too large\nVMDefinition vm1: spec.devices[0].mn: unknown",
        );
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["status"], "Failure");
        let causes = v["details"]["causes"].as_array().expect("causes");
        assert_eq!(causes[0]["field"], "spec.memoryMiB");
        assert_eq!(causes[1]["field"], "spec.devices[0].mn");
        let mut n = body(404, "NotFound", "x");
        with_details("/apis/sectl.io/v1alpha1/vmdefinitions/vm1/status", &mut n);
        assert_eq!(n["details"], json!({"group": "sectl.io", "kind": "vmdefinitions", "name": "vm1"}));
        assert_eq!(field_of("no path here"), "");
    }
}
