//! `<data-dir>/kubeconfig`, written by `sectl serve` once it listens, so that
//! `KUBECONFIG=<data-dir>/kubeconfig kubectl get vm` works at once: the server's URL,
//! the data folder's CA (when sectl issued the certificate) and the bearer token.
//! Mode 0600 from creation (it holds the token); written to a temporary file and
//! renamed, so a reader never sees half of it. JSON is valid kubeconfig YAML, so no
//! YAML encoder is needed here.
//!
//! The CLI reads it back (`read`) when it finds its data folder held by a running
//! `serve`: the file is how that server tells where it listens. `serve` removes a
//! kubeconfig left by an earlier run as soon as it holds the store, and its own when
//! it stops, so a file present while the store is held names the holder (or one about
//! to listen). Only the JSON `serve` writes is read back: a file someone replaced with
//! other YAML is an error naming the file, never guessed at.

use base64::Engine as _;
use serde_json::json;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file's name in the data folder.
pub const FILE: &str = "kubeconfig";

/// The URL clients use for `addr`: an unspecified address (0.0.0.0, ::) becomes loopback.
pub fn url(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v) if v.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v) if v.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v) => format!("[{v}]"),
        ip => ip.to_string(),
    };
    format!("{scheme}://{ip}:{}", addr.port())
}

/// Writes the kubeconfig; `ca` is the PEM to trust (None: the system's roots).
pub fn write(data_dir: &Path, server: &str, ca: Option<&[u8]>, token: &str) -> anyhow::Result<PathBuf> {
    let mut cluster = json!({"server": server});
    if let Some(pem) = ca {
        cluster["certificate-authority-data"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    let cfg = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sectl", "cluster": cluster}],
        "users": [{"name": "sectl", "user": {"token": token}}],
        "contexts": [{"name": "sectl", "context": {"cluster": "sectl", "user": "sectl"}}],
        "current-context": "sectl",
    });
    save(data_dir, &cfg)
}

/// Replaces the token in an existing kubeconfig (admin's token rotated); nothing
/// when there is none yet (`serve` writes it at start).
pub fn set_token(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    let path = data_dir.join(FILE);
    let Ok(text) = std::fs::read(&path) else { return Ok(()) };
    let mut cfg: serde_json::Value = serde_json::from_slice(&text)?;
    cfg["users"] = json!([{"name": "sectl", "user": {"token": token}}]);
    save(data_dir, &cfg)?;
    Ok(())
}

fn save(data_dir: &Path, cfg: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(FILE);
    let tmp = data_dir.join(format!(".{FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(serde_json::to_string_pretty(cfg)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Removes the kubeconfig of an earlier run (it names a server that is gone).
pub fn remove(data_dir: &Path) {
    match std::fs::remove_file(data_dir.join(FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %data_dir.join(FILE).display(), "cannot remove the old kubeconfig: {e}"),
    }
}

/// What a kubeconfig of `serve` says: where the server is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The server's URL.
    pub server: String,
    /// The PEM of the CA to trust (None: the server runs with `--tls-cert`).
    pub ca_pem: Option<Vec<u8>>,
    /// The bearer token.
    pub token: String,
}

/// Why a kubeconfig could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the kubeconfig `serve` writes.
    #[error("{path}: not the kubeconfig `sectl serve` writes: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The most of a kubeconfig read (ours is a few KiB).
const MAX_BYTES: u64 = 1024 * 1024;

/// Reads `<data_dir>/kubeconfig`: None when there is none.
pub fn read(data_dir: &Path) -> Result<Option<Access>, ReadError> {
    let path = data_dir.join(FILE);
    let bad = |what: String| ReadError::Malformed { path: path.clone(), what };
    // `serve` writes a regular file: a link, FIFO or device there is refused, never
    // followed or waited on (`safe_read`: O_NOFOLLOW, O_NONBLOCK, capped).
    let text = match crate::safe_read::read_regular(&path, MAX_BYTES) {
        Ok(snap) => snap.bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    parse(&v).map(Some).map_err(bad)
}

/// The current context's cluster and user.
fn parse(v: &serde_json::Value) -> Result<Access, String> {
    let current = v["current-context"].as_str().ok_or("no current-context")?;
    let named = |list: &str, name: &str| -> Result<serde_json::Value, String> {
        v[list]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name))
            .cloned()
            .ok_or_else(|| format!("no {list} entry named {name:?}"))
    };
    let ctx = named("contexts", current)?;
    let (cluster_name, user_name) = (ctx["context"]["cluster"].as_str(), ctx["context"]["user"].as_str());
    let cluster = named("clusters", cluster_name.ok_or("context without a cluster")?)?;
    let user = named("users", user_name.ok_or("context without a user")?)?;
    let server = cluster["cluster"]["server"].as_str().ok_or("cluster without a server URL")?.to_string();
    let ca_pem = match &cluster["cluster"]["certificate-authority-data"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("certificate-authority-data is not base64: {e}"))?,
        ),
        _ => return Err("certificate-authority-data is not a string".into()),
    };
    let token = user["user"]["token"].as_str().filter(|t| !t.is_empty()).ok_or("user without a token")?.to_string();
    Ok(Access { server, ca_pem, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_complete_and_loopback_for_any_address() {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(d.path(), "https://127.0.0.1:1", Some(b"PEM"), "tok").expect("written");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["clusters"][0]["cluster"]["certificate-authority-data"], "UEVN");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(url("https", "0.0.0.0:8443".parse().expect("addr")), "https://127.0.0.1:8443");
        assert_eq!(url("https", "[::]:1".parse().expect("addr")), "https://[::1]:1");
    }

    #[test]
    fn read_gives_back_what_write_wrote_and_refuses_other_files() {
        let d = tempfile::tempdir().expect("tmp");
        assert_eq!(read(d.path()).expect("absent is fine"), None);
        write(d.path(), "https://127.0.0.1:9", Some(b"PEM"), "tok").expect("written");
        let a = read(d.path()).expect("read").expect("present");
        assert_eq!(
            a,
            Access { server: "https://127.0.0.1:9".into(), ca_pem: Some(b"PEM".to_vec()), token: "tok".into() }
        );
        write(d.path(), "https://h:9", None, "tok").expect("written");
        assert_eq!(read(d.path()).expect("read").expect("present").ca_pem, None);
        for (text, want) in [
            ("apiVersion: v1\n", "not JSON"),
            ("{}", "no current-context"),
            (r#"{"current-context": "x", "contexts": []}"#, "no contexts entry named \"x\""),
        ] {
            std::fs::write(d.path().join(FILE), text).expect("write");
            let e = read(d.path()).expect_err(text).to_string();
            assert!(e.contains(want) && e.contains("kubeconfig"), "{e}");
        }
        remove(d.path());
        assert_eq!(read(d.path()).expect("gone"), None);
    }

    #[test]
    fn a_link_a_fifo_or_a_huge_file_in_its_place_is_refused_at_once() {
        let d = tempfile::tempdir().expect("tmp");
        let other = d.path().join("elsewhere");
        write(d.path(), "https://127.0.0.1:9", None, "tok").expect("written");
        std::fs::rename(d.path().join(FILE), &other).expect("move");
        std::os::unix::fs::symlink(&other, d.path().join(FILE)).expect("link");
        assert!(read(d.path()).is_err(), "a link is not followed");
        std::fs::remove_file(d.path().join(FILE)).expect("unlink");
        let fifo = std::ffi::CString::new(d.path().join(FILE).to_str().expect("utf-8")).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        assert!(read(d.path()).is_err(), "a FIFO is refused");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "and not waited on");
        std::fs::remove_file(d.path().join(FILE)).expect("unlink");
        std::fs::write(d.path().join(FILE), vec![b' '; MAX_BYTES as usize + 1]).expect("big");
        assert!(read(d.path()).is_err(), "too large");
    }
}
