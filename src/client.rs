//! HTTP client for a running `sectl serve` (the CLI's `--server`, or the server that
//! holds `--data-dir`, found through its kubeconfig: `cli::attach`). Maps the API's
//! JSON errors back to `StoreError`s so the verbs treat both back ends alike.
//!
//! `https://` servers are verified against the data directory's `ca.crt` and any
//! `--certificate-authority` file (see `server::tls`); `http://` is accepted only
//! for a loopback host, so the token never crosses the network in clear. Every call
//! has a connect, a read and an overall timeout; a watch has the connect timeout only
//! (it may rightly be quiet for hours; the server ends it when it stops).

use crate::api::{Kind, Resource};
use crate::store::{ApplyOutcome, Event, StoreError};
use serde::Deserialize;
use serde_json::Value;
use std::io::{BufRead, Read as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Time to open a connection (and finish the TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next bytes of an answer: above the server's own request
/// timeout (60 s), so the server's JSON error arrives first.
pub const READ_TIMEOUT: Duration = Duration::from_secs(75);
/// Longest time for a whole call (not a watch).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of an error body the client reads.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// API path prefix.
pub const PREFIX: &str = "/apis/sectl.io/v1alpha1";

/// File in the data directory that holds the bearer token.
pub const TOKEN_FILE: &str = "token";

/// A client of one server.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// The same TLS settings without read and overall timeouts, for watches.
    watch_agent: ureq::Agent,
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

/// The host of an `http://` or `https://` URL (brackets of IPv6 kept).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    Some(match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    })
}

/// Whether `host` names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Which certificate authorities an https server is verified against.
enum Trust<'a> {
    /// The data directory's `ca.crt` and the `--certificate-authority` files.
    Files {
        /// The data directory.
        data_dir: &'a Path,
        /// Extra CA files.
        ca: &'a [PathBuf],
    },
    /// Exactly this CA (PEM), e.g. a kubeconfig's `certificate-authority-data`.
    Pem(&'a [u8]),
}

/// The agent builder for `url`: TLS settings for https, a refusal for plain http
/// off loopback or an unknown scheme.
fn builder_for(url: &str, trust: &Trust) -> anyhow::Result<ureq::AgentBuilder> {
    let b = ureq::AgentBuilder::new().timeout_connect(CONNECT_TIMEOUT);
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        let cfg = match trust {
            Trust::Files { data_dir, ca } => crate::server::tls::client_config(data_dir, ca)?,
            Trust::Pem(pem) => crate::server::tls::client_config_pem(pem)?,
        };
        return Ok(b.tls_config(std::sync::Arc::new(cfg)));
    }
    if lower.starts_with("http://") {
        let host = host_of(url).unwrap_or("");
        if !is_loopback_host(host) {
            anyhow::bail!("--server {url}: plain http is accepted only on loopback (the token would cross the network in clear); use https://");
        }
        return Ok(b);
    }
    anyhow::bail!("--server {url}: expected an https:// (or loopback http://) URL")
}

impl Client {
    /// A client for `url`; the token comes from SECTL_TOKEN or `<data_dir>/token`;
    /// an https server is trusted through `<data_dir>/ca.crt` and the `ca` files.
    pub fn new(url: &str, data_dir: &Path, ca: &[PathBuf]) -> anyhow::Result<Client> {
        let token = match std::env::var("SECTL_TOKEN") {
            Ok(t) if !t.is_empty() => t,
            _ => std::fs::read_to_string(data_dir.join(TOKEN_FILE)).map(|t| t.trim().to_string()).map_err(|e| {
                anyhow::anyhow!(
                    "no token: set SECTL_TOKEN or give the server's --data-dir ({}: {e})",
                    data_dir.join(TOKEN_FILE).display()
                )
            })?,
        };
        Client::build(url, token, &Trust::Files { data_dir, ca })
    }

    /// A client for the server a kubeconfig of `sectl serve` names (see
    /// `server::kubeconfig`): its URL and token, and its CA as the only one trusted;
    /// without a CA in it (a server given `--tls-cert`), the data directory's `ca.crt`
    /// and the `ca` files.
    pub fn from_kubeconfig(
        access: &crate::server::kubeconfig::Access,
        data_dir: &Path,
        ca: &[PathBuf],
    ) -> anyhow::Result<Client> {
        let trust = match &access.ca_pem {
            Some(pem) => Trust::Pem(pem),
            None => Trust::Files { data_dir, ca },
        };
        Client::build(&access.server, access.token.clone(), &trust)
    }

    fn build(url: &str, token: String, trust: &Trust) -> anyhow::Result<Client> {
        let agent = builder_for(url, trust)?.timeout_read(READ_TIMEOUT).timeout(CALL_TIMEOUT).build();
        let watch_agent = builder_for(url, trust)?.build();
        Ok(Client { base: url.trim_end_matches('/').to_string(), token, agent, watch_agent })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Checks that the server answers and takes the token (an authenticated GET of
    /// the API's resource list): the error says which of the two failed.
    pub fn probe(&self) -> Result<(), ApiError> {
        self.call("GET", PREFIX, None).map(|_| ())
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
                // Read as a stream: a list of many objects may exceed any string cap.
                let mut reader = std::io::BufReader::new(r.into_reader());
                let empty = reader
                    .fill_buf()
                    .map_err(|e| ApiError { code: 0, reason: "Io".into(), message: e.to_string() })?
                    .is_empty();
                if empty {
                    return Ok(Value::Null);
                }
                serde_json::from_reader(reader).map_err(|e| ApiError {
                    code: 0,
                    reason: "BadResponse".into(),
                    message: e.to_string(),
                })
            }
            Err(ureq::Error::Status(code, r)) => {
                let mut text = String::new();
                let _ = r.into_reader().take(MAX_ERROR_BODY).read_to_string(&mut text);
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
        let resp = self.watch_agent.get(&url).set("Authorization", &format!("Bearer {}", self.token)).call();
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let mut text = String::new();
                let _ = r.into_reader().take(MAX_ERROR_BODY).read_to_string(&mut text);
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
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert_eq!(host_of("http://127.0.0.1:7443/x"), Some("127.0.0.1"));
        assert_eq!(host_of("https://[::1]:7443"), Some("[::1]"));
        assert_eq!(host_of("http://u@localhost"), Some("localhost"));
        assert!(is_loopback_host("[::1]") && is_loopback_host("127.0.0.2") && is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("10.0.0.1") && !is_loopback_host("example.org"));
        let d = &Trust::Files { data_dir: std::path::Path::new("/nonexistent"), ca: &[] };
        assert!(builder_for("http://127.0.0.1:1", d).is_ok());
        let Err(e) = builder_for("http://192.0.2.1:7443", d) else { panic!("plain http off loopback accepted") };
        let e = e.to_string();
        assert!(e.contains("plain http is accepted only on loopback"), "{e}");
        let Err(e) = builder_for("https://127.0.0.1:1", d) else { panic!("https without a CA accepted") };
        let e = e.to_string();
        assert!(e.contains("--certificate-authority"), "{e}");
        assert!(builder_for("ftp://x", d).is_err());
        let Err(e) = builder_for("https://127.0.0.1:1", &Trust::Pem(b"not pem")) else { panic!("bad CA accepted") };
        assert!(e.to_string().contains("certificate"), "{e}");
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
