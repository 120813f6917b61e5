//! `<data-dir>/kubeconfig`, written by `sectl serve` once it listens, so that
//! `KUBECONFIG=<data-dir>/kubeconfig kubectl get vm` works at once: the server's URL,
//! the data folder's CA (when sectl issued the certificate) and the bearer token.
//! Mode 0600 from creation (it holds the token); written to a temporary file and
//! renamed, so a reader never sees half of it. JSON is valid kubeconfig YAML, so no
//! YAML encoder is needed here.

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
}
