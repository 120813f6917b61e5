//! TLS to etcd: `--store etcds://HOST:PORT[,...]` with the flags kube-apiserver names
//! `--etcd-cafile` (the CA that signed the members' certificates; etcdctl's
//! `--cacert`) and, for an etcd started with `--client-cert-auth`, `--etcd-certfile`
//! and `--etcd-keyfile` (etcdctl's `--cert` and `--key`).
//!
//! This file checks the flags against the store URL (a TLS flag with a plain
//! `etcd://` store is refused, never taken as a hint), reads and checks the files
//! before anything connects, and says in one sentence why a handshake failed. It is
//! built without the `etcd` feature too: the CLI checks its flags in every build.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// The scheme of a store on etcd reached with TLS.
pub const TLS_SCHEME: &str = "etcds://";
/// The scheme of a store on etcd reached over plain TCP.
pub const PLAIN_SCHEME: &str = "etcd://";

/// The TLS files given for etcd (all `None`: none given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// `--etcd-cafile`: the CA certificate(s) (PEM) the members' certificates must chain to.
    pub cafile: Option<PathBuf>,
    /// `--etcd-certfile`: this client's certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// `--etcd-keyfile`: the private key (PEM) of `certfile`.
    pub keyfile: Option<PathBuf>,
}

/// The files, read and checked: PEM as the gRPC client takes them.
#[derive(Clone)]
pub struct TlsFiles {
    /// The CA certificate(s).
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and key, when given.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Whether `--store` names etcd (with or without TLS).
pub fn is_etcd(spec: &str) -> bool {
    spec.starts_with(PLAIN_SCHEME) || spec.starts_with(TLS_SCHEME)
}

impl EtcdTls {
    /// The flags given, by name.
    fn given(&self) -> Vec<&'static str> {
        let all =
            [("--etcd-cafile", &self.cafile), ("--etcd-certfile", &self.certfile), ("--etcd-keyfile", &self.keyfile)];
        all.iter().filter(|(_, v)| v.is_some()).map(|(n, _)| *n).collect()
    }

    /// Checks the flags against `--store` (reads no file): TLS needs a CA, a
    /// certificate needs its key and the other way round, and TLS flags need
    /// `etcds://`.
    pub fn check_flags(&self, spec: &str) -> Result<(), String> {
        let given = self.given();
        if spec.starts_with(TLS_SCHEME) {
            if self.cafile.is_none() {
                return Err(format!(
                    "--store {spec}: TLS to etcd needs --etcd-cafile FILE, the CA certificate (PEM) that signed the etcd members' certificates (etcdctl's --cacert)"
                ));
            }
            return match (&self.certfile, &self.keyfile) {
                (Some(_), None) => {
                    Err("--etcd-certfile needs --etcd-keyfile, the private key of that certificate".into())
                }
                (None, Some(_)) => Err("--etcd-keyfile needs --etcd-certfile, the certificate of that key".into()),
                _ => Ok(()),
            };
        }
        if given.is_empty() {
            return Ok(());
        }
        let flags = given.join(", ");
        match spec.strip_prefix(PLAIN_SCHEME) {
            Some(rest) => Err(format!(
                "{flags} given, but --store {spec} connects to etcd without TLS: write --store {TLS_SCHEME}{rest} to connect with TLS, or leave out {flags}"
            )),
            None => Err(format!("{flags}: only for --store {TLS_SCHEME}HOST:PORT[,...]; --store is {spec:?}")),
        }
    }

    /// Reads and checks the files: each readable, the CA a PEM certificate, the key a
    /// PEM private key that belongs to the certificate. `None` without a CA file.
    pub fn load(&self) -> Result<Option<TlsFiles>, String> {
        let Some(ca) = &self.cafile else { return Ok(None) };
        let ca_pem = read(ca, "--etcd-cafile")?;
        let identity = match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => Some((read(cert, "--etcd-certfile")?, read(key, "--etcd-keyfile")?)),
            (None, None) => None,
            _ => return Err("--etcd-certfile and --etcd-keyfile go together".into()),
        };
        let files = TlsFiles { ca_pem, identity };
        self.config(&files)?;
        Ok(Some(files))
    }

    /// The TLS settings the gRPC client makes of the files (trust the CA only; present
    /// the client certificate when given).
    fn config(&self, files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
        let ca = self.cafile.as_deref().unwrap_or(Path::new(""));
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&files.ca_pem, ca, "--etcd-cafile")? {
            roots.add(c).map_err(|e| format!("--etcd-cafile {}: cannot trust this certificate: {e}", ca.display()))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let Some((cert_pem, key_pem)) = &files.identity else { return Ok(builder.with_no_client_auth()) };
        let (cert, key) =
            (self.certfile.as_deref().unwrap_or(Path::new("")), self.keyfile.as_deref().unwrap_or(Path::new("")));
        let chain = certs(cert_pem, cert, "--etcd-certfile")?;
        let key_der = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("--etcd-keyfile {}: no private key in PEM: {e}", key.display()))?;
        builder.with_client_auth_cert(chain, key_der).map_err(|e| {
            format!("--etcd-certfile {} and --etcd-keyfile {} do not go together: {e}", cert.display(), key.display())
        })
    }

    /// Why etcd at `endpoint` refuses a TLS connection, found by making one as the
    /// gRPC client does and reading from it (a server that refuses the client's
    /// certificate says so with an alert after the handshake, which the gRPC client
    /// may miss when its first write meets the closed connection). `None` when the
    /// connection works or fails for another reason.
    pub async fn probe(&self, endpoint: &str) -> Option<String> {
        use tokio::io::AsyncReadExt as _;
        let files = self.load().ok()??;
        let mut config = self.config(&files).ok()?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let host = endpoint.rsplit_once(':')?.0.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let limit = std::time::Duration::from_secs(3);
        let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect(endpoint)).await.ok()?.ok()?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let failed = match tokio::time::timeout(limit, connector.connect(name, tcp)).await.ok()? {
            Err(e) => e,
            Ok(mut stream) => tokio::time::timeout(limit, stream.read(&mut [0u8; 256])).await.ok()?.err()?,
        };
        rustls_error(&failed).map(|r| self.explain_rustls(r))
    }

    /// Why a connection failed, in words, when the cause is TLS (a failed handshake,
    /// or TLS on one side only); `None` for anything else.
    pub fn explain(&self, err: &(dyn std::error::Error + 'static)) -> Option<String> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(r) = rustls_error(e) {
                return Some(self.explain_rustls(r));
            }
            cur = e.source();
        }
        None
    }

    /// A rustls error in words.
    fn explain_rustls(&self, r: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let ca = self.cafile.as_deref().map(Path::display);
        let ca = ca.map(|c| c.to_string()).unwrap_or_default();
        let why = match r {
            E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                format!("etcd's server certificate is not signed by the CA in --etcd-cafile {ca}")
            }
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                "etcd's server certificate does not name the host in --store (its subject alternative names must contain it)".to_string()
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "etcd's server certificate has expired".into(),
            E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                "etcd's server certificate is not valid yet (check the clocks)".into()
            }
            E::InvalidCertificate(other) => format!("etcd's server certificate is refused: {other:?}"),
            E::AlertReceived(
                A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::HandshakeFailure,
            ) => match self.certfile {
                None => self.no_client_cert(),
                Some(_) => self.client_cert_refused(),
            },
            E::InvalidMessage(_) => "etcd does not answer with TLS: is it plain TCP (then write etcd://)?".into(),
            other => other.to_string(),
        };
        format!("TLS handshake failed: {why} ({r})")
    }

    fn no_client_cert(&self) -> String {
        "etcd demands a client certificate (it runs with --client-cert-auth): give --etcd-certfile and --etcd-keyfile"
            .into()
    }

    fn client_cert_refused(&self) -> String {
        let cert = self.certfile.as_deref().map(|c| c.display().to_string()).unwrap_or_default();
        format!("etcd refused the client certificate in --etcd-certfile {cert}; it must be signed by a CA in etcd's --trusted-ca-file")
    }
}

/// The rustls error inside `e` (tokio-rustls wraps it in an `io::Error`, whose
/// `source()` skips it).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// The largest TLS file read (a CA bundle of every public root is about 250 KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a file named by a flag, as files named on the command line are read: links
/// followed, directories refused, at most `MAX_PEM_BYTES` (`--etcd-cafile /dev/zero`
/// must not fill the memory).
fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    crate::safe_read::read_named(path, MAX_PEM_BYTES).map_err(|e| match e {
        crate::safe_read::ReadError::Io(e) => format!("{flag} {}: cannot read it: {e}", path.display()),
        other => format!("{flag} {}: {other}", path.display()),
    })
}

/// The PEM certificates in `pem` (at least one).
fn certs(pem: &[u8], path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} {}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> EtcdTls {
        EtcdTls { cafile: ca.map(PathBuf::from), certfile: cert.map(PathBuf::from), keyfile: key.map(PathBuf::from) }
    }

    #[test]
    fn flags_must_fit_the_store_url() {
        let (all, ca) = (tls(Some("ca"), Some("c"), Some("k")), tls(Some("ca"), None, None));
        for ok in [(&all, "etcds://h:1"), (&ca, "etcds://u@h:1,g:2/p"), (&EtcdTls::default(), "etcd://h:1")] {
            assert_eq!(ok.0.check_flags(ok.1), Ok(()), "{ok:?}");
        }
        assert_eq!(EtcdTls::default().check_flags("sled"), Ok(()));
        for (t, spec, says) in [
            (tls(None, None, None), "etcds://h:1", "needs --etcd-cafile"),
            (tls(None, Some("c"), Some("k")), "etcds://h:1", "needs --etcd-cafile"),
            (tls(Some("ca"), Some("c"), None), "etcds://h:1", "--etcd-certfile needs --etcd-keyfile"),
            (tls(Some("ca"), None, Some("k")), "etcds://h:1", "--etcd-keyfile needs --etcd-certfile"),
            (ca.clone(), "etcd://h:1/p", "without TLS: write --store etcds://h:1/p"),
            (tls(None, Some("c"), Some("k")), "etcd://h:1", "--etcd-certfile, --etcd-keyfile given"),
            (ca.clone(), "sled", "only for --store etcds://"),
        ] {
            let e = t.check_flags(spec).unwrap_err();
            assert!(e.contains(says), "{t:?} {spec}: {e}");
        }
    }

    /// A CA, a certificate it signed, that certificate's key, and a key of another.
    fn pems() -> (String, String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["client".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem(), KeyPair::generate().unwrap().serialize_pem())
    }

    #[test]
    fn files_are_read_and_checked_before_connecting() {
        let d = tempfile::tempdir().unwrap();
        let (ca, cert, key, other_key) = pems();
        let file = |name: &str, text: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (ca, cert, key, other_key) = (file("ca", &ca), file("c", &cert), file("k", &key), file("o", &other_key));
        let junk = file("junk", "not a certificate\n");
        let missing = d.path().join("missing").display().to_string();
        let good = tls(Some(&ca), Some(&cert), Some(&key)).load().unwrap().unwrap();
        assert!(good.identity.is_some());
        assert!(tls(Some(&ca), None, None).load().unwrap().unwrap().identity.is_none());
        assert!(EtcdTls::default().load().unwrap().is_none());
        for (t, says) in [
            (tls(Some(&missing), None, None), "--etcd-cafile"),
            (tls(Some(&junk), None, None), "no certificate in it"),
            (tls(Some(&key), None, None), "no certificate in it"),
            (tls(Some(&ca), Some(&missing), Some(&key)), "--etcd-certfile"),
            (tls(Some(&ca), Some(&cert), Some(&missing)), "--etcd-keyfile"),
            (tls(Some(&ca), Some(&junk), Some(&key)), "no certificate in it"),
            (tls(Some(&ca), Some(&cert), Some(&junk)), "no private key in PEM"),
            (tls(Some(&ca), Some(&cert), Some(&other_key)), "do not go together"),
        ] {
            let e = t.load().err().unwrap_or_else(|| panic!("{t:?} accepted"));
            assert!(e.contains(says), "{t:?}: {e}");
        }
        let e = tls(Some(&missing), None, None).load().err().unwrap();
        assert!(e.contains("cannot read it") && e.contains(&missing), "{e}");
        // Hostile files: endless, too big, a folder; a link to a good file is followed.
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'A'; 2 * 1024 * 1024]).unwrap();
        let dir = d.path().display().to_string();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&ca, &link).unwrap();
        for (path, says) in [("/dev/zero", "larger than"), (big.to_str().unwrap(), "larger than"), (&dir, "directory")]
        {
            let e = tls(Some(path), None, None).load().err().unwrap_or_else(|| panic!("{path} accepted"));
            assert!(e.contains("--etcd-cafile") && e.contains(says), "{path}: {e}");
        }
        assert!(tls(Some(link.to_str().unwrap()), None, None).load().unwrap().is_some());
    }

    #[test]
    fn handshake_failures_are_told_in_words() {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let wrapped = |r: E| std::io::Error::new(std::io::ErrorKind::InvalidData, r);
        let ca_only = tls(Some("/etc/ca.pem"), None, None);
        let with_cert = tls(Some("/etc/ca.pem"), Some("/etc/me.pem"), Some("/etc/me.key"));
        for (t, err, says) in [
            (&ca_only, E::InvalidCertificate(C::UnknownIssuer), "not signed by the CA in --etcd-cafile /etc/ca.pem"),
            (&ca_only, E::InvalidCertificate(C::NotValidForName), "does not name the host"),
            (&ca_only, E::AlertReceived(A::BadCertificate), "demands a client certificate"),
            (&ca_only, E::AlertReceived(A::CertificateRequired), "demands a client certificate"),
            (
                &with_cert,
                E::AlertReceived(A::BadCertificate),
                "refused the client certificate in --etcd-certfile /etc/me.pem",
            ),
        ] {
            let w = t.explain(&wrapped(err)).unwrap();
            assert!(w.starts_with("TLS handshake failed: ") && w.contains(says), "{w}");
        }
        assert_eq!(ca_only.explain(&std::io::Error::other("connection refused")), None);
    }
}
