//! TLS for `sectl serve` (rustls with the `ring` provider) and the trust the CLI
//! puts in it.
//!
//! Without `--tls-cert/--tls-key`, the server makes its own small PKI in the data
//! directory: a CA (`ca.crt`, `ca.key`, made once and kept) and a server certificate
//! (`server.crt`, `server.key`) signed by it, issued afresh at every start for
//! `localhost`, `127.0.0.1`, `::1` and the listen host (so a changed `--listen` is
//! always covered). Keys are written with mode 0600. A CA of which one half is
//! missing is an error, never replaced: clients that trust it would break silently.
//! The CLI trusts the data directory's `ca.crt` and any `--certificate-authority`
//! file; nothing else (no system roots), so a server is trusted only when named.

use anyhow::{anyhow, bail, Context as _};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The CA certificate in the data directory (what clients trust).
pub const CA_CERT: &str = "ca.crt";
/// The CA key (0600).
pub const CA_KEY: &str = "ca.key";
/// The server certificate issued at start.
pub const SERVER_CERT: &str = "server.crt";
/// Its key (0600).
pub const SERVER_KEY: &str = "server.key";

/// The crypto provider used everywhere (ring: no C toolchain beyond cc needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes `bytes` to `path` readable by its owner only (0600), whoever made it.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        o.mode(0o600);
        let mut f = o.open(path).with_context(|| format!("cannot write {}", path.display()))?;
        // The mode above applies only to a new file.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let mut f = o.open(path).with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    Ok(())
}

/// Today as (year, month, day), UTC.
fn today() -> (i32, u8, u8) {
    let s = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i32>().ok()).unwrap_or(1);
    (num(0..4), num(5..7) as u8, num(8..10) as u8)
}

/// Valid from yesterday's month start (clock skew) for `years`.
fn validity(p: &mut CertificateParams, years: i32) {
    let (y, m, _) = today();
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    p.not_before = rcgen::date_time_ymd(py, pm, 1);
    p.not_after = rcgen::date_time_ymd(y + years, m, 1);
}

/// The CA's parameters; the common name is derived from its key, so the same key
/// always gives the same issuer name (the CA certificate need not be parsed again).
fn ca_params(key: &KeyPair) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let id: String = key.public_key_raw().iter().skip(1).take(6).map(|b| format!("{b:02x}")).collect();
    p.distinguished_name.push(DnType::CommonName, format!("sectl serve CA {id}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut p, 10);
    Ok(p)
}

/// Loads the data directory's CA, or makes one when neither file exists.
fn load_or_create_ca(dir: &Path) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    let (crt, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let key_pair = match (crt.exists(), key.exists()) {
        (true, true) => {
            let pem = std::fs::read_to_string(&key).with_context(|| format!("cannot read {}", key.display()))?;
            KeyPair::from_pem(&pem).map_err(|e| anyhow!("{}: not a private key in PEM: {e}", key.display()))?
        }
        (false, false) => {
            let k = KeyPair::generate()?;
            let cert = ca_params(&k)?.self_signed(&k)?;
            write_private(&key, k.serialize_pem().as_bytes())?;
            std::fs::write(&crt, cert.pem()).with_context(|| format!("cannot write {}", crt.display()))?;
            tracing::info!(ca = %crt.display(), "made a certificate authority for this server");
            k
        }
        (has_crt, _) => {
            let (there, missing) = if has_crt { (&crt, &key) } else { (&key, &crt) };
            bail!(
                "{} exists but {} is missing: restore it, or remove {} to make a new CA (clients must then trust the new {CA_CERT})",
                there.display(),
                missing.display(),
                there.display()
            )
        }
    };
    // Re-made from the same key and name: it signs exactly as the stored one does.
    let cert = ca_params(&key_pair)?.self_signed(&key_pair)?;
    Ok((cert, key_pair))
}

/// The names a server certificate covers: localhost, 127.0.0.1, ::1 and `host`
/// (for an unspecified address such as 0.0.0.0: the machine's host name).
pub fn san_names(host: &str) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let extra = match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string())
        }
        _ => Some(host.to_string()),
    };
    if let Some(h) = extra.filter(|h| !h.is_empty()) {
        if !names.contains(&h) {
            names.push(h);
        }
    }
    names
}

/// Issues the server certificate for `host` from the data directory's CA (made at
/// first start) and writes it beside the CA; returns the paths of cert and key.
pub fn issue_server_cert(dir: &Path, host: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (ca, ca_key) = load_or_create_ca(dir)?;
    let mut p = CertificateParams::new(san_names(host))?;
    p.distinguished_name.push(DnType::CommonName, "sectl serve");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut p, 1);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca, &ca_key)?;
    let (crt_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    // The chain: the server certificate, then the CA's.
    std::fs::write(&crt_path, format!("{}{}", cert.pem(), ca.pem()))
        .with_context(|| format!("cannot write {}", crt_path.display()))?;
    Ok((crt_path, key_path))
}

/// Reads a PEM certificate chain.
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)", path.display());
    }
    Ok(certs)
}

/// The server's TLS settings from a certificate chain and key in PEM (HTTP/1.1).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain = read_certs(cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow!("{}: no private key in PEM: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| anyhow!("{} and {} do not make a usable certificate: {e}", cert.display(), key.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The CLI's TLS settings: trusts the data directory's CA (when it exists) and every
/// `extra` file. Fails when there is nothing to trust, naming what to give.
pub fn client_config(data_dir: &Path, extra: &[PathBuf]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let own = data_dir.join(CA_CERT);
    let mut files: Vec<PathBuf> = extra.to_vec();
    if own.exists() {
        files.push(own.clone());
    }
    if files.is_empty() {
        bail!(
            "no certificate authority to trust for an https server: give --certificate-authority FILE (the server's {}) or the server's --data-dir",
            own.display()
        );
    }
    for f in &files {
        for c in read_certs(f)? {
            roots.add(c).map_err(|e| anyhow!("{}: cannot trust this certificate: {e}", f.display()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The CLI's TLS settings trusting exactly the CA in `pem` (a kubeconfig's
/// `certificate-authority-data`).
pub fn client_config_pem(pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("certificate-authority-data: not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        bail!("certificate-authority-data: no certificate in it (expected PEM `BEGIN CERTIFICATE`)");
    }
    for c in certs {
        roots.add(c).map_err(|e| anyhow!("certificate-authority-data: cannot trust this certificate: {e}"))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_cover_loopback_and_the_listen_host() {
        assert_eq!(san_names("127.0.0.1"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(san_names("[::1]"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(san_names("sectl.example"), ["localhost", "127.0.0.1", "::1", "sectl.example"]);
        assert!(!san_names("0.0.0.0").contains(&"0.0.0.0".to_string()));
    }

    #[test]
    fn the_ca_is_made_once_and_a_half_missing_ca_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        issue_server_cert(d.path(), "127.0.0.1").expect("first start");
        let ca1 = std::fs::read(d.path().join(CA_CERT)).expect("ca.crt");
        issue_server_cert(d.path(), "127.0.0.1").expect("second start");
        assert_eq!(std::fs::read(d.path().join(CA_CERT)).expect("ca.crt"), ca1, "the CA is kept");
        #[cfg(unix)]
        for k in [CA_KEY, SERVER_KEY] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(d.path().join(k)).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
        server_config(&d.path().join(SERVER_CERT), &d.path().join(SERVER_KEY)).expect("usable");
        std::fs::remove_file(d.path().join(CA_KEY)).expect("rm");
        let e = issue_server_cert(d.path(), "127.0.0.1").expect_err("half a CA");
        assert!(e.to_string().contains("ca.key is missing"), "{e}");
        assert_eq!(std::fs::read(d.path().join(CA_CERT)).expect("ca.crt"), ca1, "not replaced");
    }
}
