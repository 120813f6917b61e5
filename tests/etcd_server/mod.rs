//! A throwaway etcd for tests: one member (or several) on free loopback ports in a
//! temporary folder, stopped by PID when dropped (also when the test fails). A missing
//! `etcd` binary fails the test with what to install. `start_tls` starts one that
//! takes clients over TLS only and demands their certificates (`certs.rs` makes them).
#![allow(dead_code)]

pub mod certs;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member the test started.
pub struct Member {
    pub child: Option<Child>,
    pub client_port: u16,
    pub peer_port: u16,
    pub name: String,
}

/// An etcd cluster the test started (kept until dropped).
pub struct Etcd {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
    /// With TLS: the certificates (clients must present one signed by `ca`).
    pub tls: Option<certs::Certs>,
}

/// A free loopback port for etcd to listen on, below Linux's ephemeral range
/// (32768-60999): a port from `bind(0)` is one the kernel also hands out as the local
/// port of outgoing connections (the tests' own clients), which can take it between
/// this check and etcd's bind ("address already in use"). Random, so that tests
/// running in parallel seldom try the same one; `start_with` retries if one does.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..1000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999")
}

fn etcd_binary() -> String {
    let found = Command::new("etcd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    match found {
        Ok(s) if s.success() => "etcd".to_string(),
        _ => panic!("the etcd tests need the etcd server binary on PATH: `apt install etcd-server` (Debian/Ubuntu)"),
    }
}

impl Etcd {
    /// A single member.
    pub fn start() -> Etcd {
        Self::cluster(1)
    }

    /// `n` members forming one cluster.
    pub fn cluster(n: usize) -> Etcd {
        Self::start_with(n, false)
    }

    /// A single member taking clients over TLS only, with `--client-cert-auth`.
    pub fn start_tls() -> Etcd {
        Self::start_with(1, true)
    }

    /// Starts a new cluster; when a port was taken meanwhile (by another test), starts
    /// it again on other ports, in a fresh folder.
    fn start_with(n: usize, tls: bool) -> Etcd {
        let bin = etcd_binary();
        let mut tries = 0;
        loop {
            let dir = tempfile::tempdir().expect("temp dir");
            let certs = tls.then(|| certs::Certs::make(&dir.path().join("certs")));
            let members: Vec<Member> = (0..n)
                .map(|i| Member {
                    child: None,
                    client_port: free_port(),
                    peer_port: free_port(),
                    name: format!("m{i}"),
                })
                .collect();
            let mut e = Etcd { members, dir, tls: certs };
            for i in 0..n {
                e.spawn(&bin, i);
            }
            match e.healthy_within(Duration::from_secs(30)) {
                Ok(()) => return e,
                Err(_) if tries < 5 && e.bind_failed() => tries += 1,
                Err(logs) => panic!("etcd did not become healthy within 30s:\n{logs}"),
            }
        }
    }

    /// Starts member `i` (its data folder kept from an earlier start, if any).
    fn spawn(&mut self, bin: &str, i: usize) {
        let initial: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let initial = initial.join(",");
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).expect("log file");
        let scheme = self.client_scheme();
        let child = Command::new(bin)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args(self.server_tls_args())
            .args([
                &format!("--listen-client-urls={scheme}://127.0.0.1:{}", m.client_port),
                &format!("--advertise-client-urls={scheme}://127.0.0.1:{}", m.client_port),
                &format!("--listen-peer-urls=http://127.0.0.1:{}", m.peer_port),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", m.peer_port),
                &format!("--initial-cluster={initial}"),
                "--initial-cluster-state=new",
                "--initial-cluster-token=sectl-test",
                "--log-level=error",
                "--heartbeat-interval=50",
                "--election-timeout=500",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd (`apt install etcd-server`): {e}"));
        self.members[i].child = Some(child);
    }

    fn client_scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// etcd's flags for TLS to clients (none without TLS).
    fn server_tls_args(&self) -> Vec<String> {
        let Some(c) = &self.tls else { return Vec::new() };
        vec![
            format!("--cert-file={}", c.server_cert.display()),
            format!("--key-file={}", c.server_key.display()),
            format!("--trusted-ca-file={}", c.ca.display()),
            "--client-cert-auth".to_string(),
        ]
    }

    /// `etcd://127.0.0.1:P[,...]` of the running members (`etcds://` with TLS).
    pub fn url(&self) -> String {
        let eps: Vec<String> =
            self.members.iter().filter(|m| m.child.is_some()).map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", eps.join(","))
    }

    /// sectl's flags for TLS to this etcd: CA, client certificate and key.
    pub fn sectl_tls_args(&self) -> Vec<String> {
        let c = self.tls.as_ref().expect("an etcd started with TLS");
        let arg = |p: &std::path::Path| p.display().to_string();
        vec![
            "--etcd-cafile".into(),
            arg(&c.ca),
            "--etcd-certfile".into(),
            arg(&c.client_cert),
            "--etcd-keyfile".into(),
            arg(&c.client_key),
        ]
    }

    /// etcdctl's flags for TLS to this etcd (none without TLS).
    fn etcdctl_tls_args(&self) -> Vec<String> {
        let Some(c) = &self.tls else { return Vec::new() };
        vec![
            format!("--cacert={}", c.ca.display()),
            format!("--cert={}", c.client_cert.display()),
            format!("--key={}", c.client_key.display()),
        ]
    }

    /// The URL with a key prefix (a separate namespace on the same etcd).
    pub fn url_with(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.url())
    }

    fn wait_healthy(&self, within: Duration) {
        if let Err(logs) = self.healthy_within(within) {
            panic!("etcd did not become healthy within {within:?}:\n{logs}")
        }
    }

    /// Waits until every member answers; else the members' logs.
    fn healthy_within(&self, within: Duration) -> Result<(), String> {
        let start = Instant::now();
        let scheme = self.client_scheme();
        let eps: Vec<String> = self.members.iter().map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port)).collect();
        loop {
            let ok = Command::new("etcdctl")
                .args(["--endpoints", &eps.join(","), "--command-timeout=1s"])
                .args(self.etcdctl_tls_args())
                .args(["endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success());
            match ok {
                Ok(true) => return Ok(()),
                Err(e) => panic!("etcdctl not found (`apt install etcd-client`): {e}"),
                Ok(false) if start.elapsed() > within || self.bind_failed() => {
                    return Err(self.logs());
                }
                Ok(false) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Whether a member exited because its port was taken.
    fn bind_failed(&self) -> bool {
        self.logs().contains("address already in use")
    }

    fn logs(&self) -> String {
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|m| std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name))).unwrap_or_default())
            .collect();
        logs.join("\n")
    }

    /// Stops every member with SIGKILL and starts them again on the same data folders
    /// and ports (a restart of the whole cluster, e.g. after a power failure).
    pub fn restart_all(&mut self) {
        let bin = etcd_binary();
        for i in 0..self.members.len() {
            self.kill(i);
        }
        for i in 0..self.members.len() {
            self.spawn(&bin, i);
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Kills member `i` with SIGKILL (by its PID).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
