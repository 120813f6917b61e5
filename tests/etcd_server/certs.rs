//! Certificates for a test etcd with TLS, made with rcgen in a folder: a CA, the
//! server's certificate (for 127.0.0.1 and localhost) and a client's, both signed by
//! that CA, and a second CA that signed nothing (to trust the wrong one).

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The PEM files, by role.
pub struct Certs {
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client's certificate and key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Another CA, which signed neither.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (p.self_signed(&key).expect("CA certificate"), key)
}

fn leaf(cn: &str, sans: &[&str], eku: Vec<Eku>, ca: &(Certificate, KeyPair)) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("leaf key");
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = eku;
    (p.signed_by(&key, &ca.0, &ca.1).expect("signed certificate"), key)
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("write PEM");
    p
}

impl Certs {
    /// Makes the certificates in `dir`.
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).expect("certs folder");
        let authority = ca("sectl test etcd CA");
        // etcd's own gateway dials the server with the server's certificate: both usages.
        let server = leaf("etcd", &["127.0.0.1", "localhost"], vec![Eku::ServerAuth, Eku::ClientAuth], &authority);
        let client = leaf("sectl", &[], vec![Eku::ClientAuth], &authority);
        let other = ca("some other CA");
        Certs {
            ca: write(dir, "ca.pem", &authority.0.pem()),
            server_cert: write(dir, "server.pem", &server.0.pem()),
            server_key: write(dir, "server-key.pem", &server.1.serialize_pem()),
            client_cert: write(dir, "client.pem", &client.0.pem()),
            client_key: write(dir, "client-key.pem", &client.1.serialize_pem()),
            other_ca: write(dir, "other-ca.pem", &other.0.pem()),
        }
    }
}
