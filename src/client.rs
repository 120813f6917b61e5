//! HTTP client for a running `sectl serve` (the CLI's `--server`). Maps the API's
//! JSON errors back to `StoreError`s so the verbs treat both back ends alike.

use crate::api::{Kind, Resource};
use crate::store::{ApplyOutcome, Event, StoreError};
use serde::Deserialize;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

/// API path prefix.
pub const PREFIX: &str = "/apis/sectl.io/v1alpha1";

/// File in the data directory that holds the bearer token.
pub const TOKEN_FILE: &str = "token";

/// A client of one server.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// An error body: `{"code": 409, "reason": "Conflict", "message": "..."}`.
#[derive(Debug, Deserialize)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// CamelCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
pub struct WireEvent {
    /// ADDED, MODIFIED, DELETED or ERROR.
    #[serde(rename = "type")]
    pub type_: String,
    /// The object (or an ApiError for ERROR).
    pub object: Value,
}

/// The API error as the `StoreError` the server had, so the verbs handle conflicts,
/// missing objects and invalid requests alike in both modes. The server sends the
/// error's text; the typed fields are read back from it. What does not parse (an
/// unknown path, a proxy's page) stays `Remote` with code and reason.
fn to_store_error(e: ApiError) -> StoreError {
    typed_error(&e).unwrap_or_else(|| StoreError::Remote(format!("{} ({} {})", e.message, e.code, e.reason)))
}

fn typed_error(e: &ApiError) -> Option<StoreError> {
    let w: Vec<&str> = e.message.split_whitespace().collect();
    let typed = match (e.code, e.reason.as_str(), w.as_slice()) {
        (
            409,
            "Conflict",
            ["conflict:", kind, name, "has", "resourceVersion", actual, "the", "request", "was", "based", "on", expected, ..],
        ) => StoreError::Conflict {
            kind: Kind::from_manifest(kind)?,
            name: name.to_string(),
            expected: expected.trim_end_matches(';').parse().ok()?,
            actual: actual.trim_end_matches(',').parse().ok()?,
        },
        (409, "AlreadyExists", [kind, name, "already", "exists"]) => {
            StoreError::AlreadyExists { kind: Kind::from_manifest(kind)?, name: name.to_string() }
        }
        (404, "NotFound", [kind, name, "not", "found"]) => {
            StoreError::NotFound { kind: Kind::from_manifest(kind)?, name: name.to_string() }
        }
        (422, "Invalid", _) => {
            StoreError::Invalid(e.message.strip_prefix("invalid: ").unwrap_or(&e.message).to_string())
        }
        _ => return None,
    };
    // Only when the text is exactly what the server's error prints.
    (typed.to_string() == e.message || matches!(typed, StoreError::Invalid(_))).then_some(typed)
}

impl Client {
    /// A client for `url`; the token comes from SECTL_TOKEN or `<data_dir>/token`.
    pub fn new(url: &str, data_dir: &Path) -> anyhow::Result<Client> {
        let token = match std::env::var("SECTL_TOKEN") {
            Ok(t) if !t.is_empty() => t,
            _ => std::fs::read_to_string(data_dir.join(TOKEN_FILE)).map(|t| t.trim().to_string()).map_err(|e| {
                anyhow::anyhow!(
                    "no token: set SECTL_TOKEN or give the server's --data-dir ({}: {e})",
                    data_dir.join(TOKEN_FILE).display()
                )
            })?,
        };
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).build();
        Ok(Client { base: url.trim_end_matches('/').to_string(), token, agent })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let resp = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        match resp {
            Ok(r) => {
                let text =
                    r.into_string().map_err(|e| ApiError { code: 0, reason: "Io".into(), message: e.to_string() })?;
                if text.is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|e| ApiError {
                    code: 0,
                    reason: "BadResponse".into(),
                    message: e.to_string(),
                })
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                Err(serde_json::from_str(&text).unwrap_or(ApiError { code, reason: "Error".into(), message: text }))
            }
            Err(e) => Err(ApiError {
                code: 0,
                reason: "Unreachable".into(),
                message: format!("cannot reach {}: {e}", self.base),
            }),
        }
    }

    /// Calls and turns API errors into anyhow errors with the server's message.
    pub fn call_any(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.call(method, path, body).map_err(|e| anyhow::anyhow!("{} ({} {})", e.message, e.code, e.reason))
    }

    /// Creates or updates objects atomically.
    pub fn apply(&self, objs: &[Resource], dry_run: bool) -> Result<Vec<(ApplyOutcome, Resource)>, StoreError> {
        let body = serde_json::json!({"items": objs});
        let v = self.call("POST", &format!("{PREFIX}/apply?dryRun={dry_run}"), Some(&body)).map_err(to_store_error)?;
        let mut out = Vec::new();
        for item in v["items"].as_array().cloned().unwrap_or_default() {
            let outcome = match item["outcome"].as_str() {
                Some("created") => ApplyOutcome::Created,
                Some("configured") => ApplyOutcome::Configured,
                _ => ApplyOutcome::Unchanged,
            };
            let obj = Resource::from_json(item["object"].to_string().as_bytes()).map_err(StoreError::Backend)?;
            out.push((outcome, obj));
        }
        Ok(out)
    }

    /// One object.
    pub fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError> {
        match self.call("GET", &format!("{PREFIX}/{}/{name}", kind.plural()), None) {
            Ok(v) => Resource::from_json(v.to_string().as_bytes()).map(Some).map_err(StoreError::Backend),
            // Only the object's own 404 means "absent"; an unknown path is an error.
            Err(e) => match to_store_error(e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// All objects of a kind and the list's resourceVersion.
    pub fn list(&self, kind: Kind) -> Result<(Vec<Resource>, u64), StoreError> {
        let v = self.call("GET", &format!("{PREFIX}/{}", kind.plural()), None).map_err(to_store_error)?;
        let rv = v["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut out = Vec::new();
        for item in v["items"].as_array().cloned().unwrap_or_default() {
            out.push(Resource::from_json(item.to_string().as_bytes()).map_err(StoreError::Backend)?);
        }
        Ok((out, rv))
    }

    /// Deletes an object.
    pub fn delete(&self, kind: Kind, name: &str) -> Result<Resource, StoreError> {
        match self.call("DELETE", &format!("{PREFIX}/{}/{name}", kind.plural()), None) {
            Ok(v) => Resource::from_json(v.to_string().as_bytes()).map_err(StoreError::Backend),
            Err(e) => Err(to_store_error(e)),
        }
    }

    /// The event log, oldest first.
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        let v = self.call("GET", &format!("{PREFIX}/events"), None).map_err(to_store_error)?;
        serde_json::from_value(v["items"].clone()).map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Acknowledges all events.
    pub fn ack(&self) -> Result<usize, StoreError> {
        let v = self.call("POST", &format!("{PREFIX}/events/ack"), None).map_err(to_store_error)?;
        Ok(v["acknowledged"].as_u64().unwrap_or(0) as usize)
    }

    /// A `sim` change, carried out by the server's controller.
    pub fn sim(&self, args: &[String]) -> Result<Value, StoreError> {
        self.call("POST", &format!("{PREFIX}/sim"), Some(&serde_json::json!({"args": args}))).map_err(to_store_error)
    }

    /// Streams changes of `kind` after `rv`, calling `f` per event until it returns false.
    pub fn watch(&self, kind: Kind, rv: u64, mut f: impl FnMut(WireEvent) -> bool) -> anyhow::Result<()> {
        let url = format!("{}{PREFIX}/{}?watch=1&resourceVersion={rv}", self.base, kind.plural());
        let resp = self.agent.get(&url).set("Authorization", &format!("Bearer {}", self.token)).call();
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                anyhow::bail!("watch refused ({code}): {text}");
            }
            Err(e) => anyhow::bail!("cannot reach {}: {e}", self.base),
        };
        let reader = std::io::BufReader::new(resp.into_reader());
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let ev: WireEvent = serde_json::from_str(&line)?;
            if ev.type_ == "ERROR" {
                anyhow::bail!("watch ended: {}", ev.object);
            }
            if !f(ev) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod typed_error_tests {
    use super::*;

    fn api(code: u16, reason: &str, e: &StoreError) -> ApiError {
        ApiError { code, reason: reason.into(), message: e.to_string() }
    }

    #[test]
    fn store_errors_survive_the_wire() {
        for (code, reason, e) in [
            (
                409,
                "Conflict",
                StoreError::Conflict { kind: Kind::VMDefinition, name: "vm1".into(), expected: 3, actual: 7 },
            ),
            (409, "AlreadyExists", StoreError::AlreadyExists { kind: Kind::LiveMigration, name: "lm".into() }),
            (404, "NotFound", StoreError::NotFound { kind: Kind::SUCluster, name: "su390".into() }),
            (422, "Invalid", StoreError::Invalid("bad".into())),
        ] {
            assert_eq!(to_store_error(api(code, reason, &e)), e);
        }
        // An unknown path is not a missing object.
        let path = ApiError { code: 404, reason: "NotFound".into(), message: "no such path /x".into() };
        assert!(matches!(to_store_error(path), StoreError::Remote(_)));
    }
}
