//! Real alarm receivers for tests and the alarm benchmark: Debian's `snmptrapd`
//! logging every trap as one line to a file, and Python's `aiosmtpd` storing every
//! mail in a maildir. Each listens on a free loopback port, lives in a temporary
//! directory and is killed by PID on drop (also when a test fails). A missing
//! program fails the test with the package to install.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a receiver may take to come up, or a trap or mail to arrive.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A free UDP port on loopback (bound and released; the caller binds it next).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `snmptrapd` on 127.0.0.1:`port`, community `public`, numeric OIDs, one line per
/// trap: `TRAP <oid> = <type>: <value>\t<oid> = ...`.
pub struct Trapd {
    _proc: Proc,
    log: PathBuf,
    /// Its UDP port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

impl Trapd {
    /// Starts it on `port` and waits until it listens.
    pub fn start(port: u16) -> Trapd {
        assert!(
            which("snmptrapd"),
            "snmptrapd not found: install Debian's package `snmptrapd` (apt-get install snmptrapd; .ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("snmptrapd.conf");
        std::fs::write(&conf, "authCommunity log public\nformat2 TRAP %V\\t%v\\n\n").unwrap();
        let log = dir.path().join("traps.log");
        let bin = if Path::new("/usr/sbin/snmptrapd").exists() {
            "/usr/sbin/snmptrapd".into()
        } else {
            "snmptrapd".to_string()
        };
        let child = Command::new(bin)
            .args(["-f", "-On", "-M", "/nonexistent", "-m", "", "-C", "-c"])
            .arg(&conf)
            .arg("-Lf")
            .arg(&log)
            .args(["-p"])
            .arg(dir.path().join("pid"))
            .arg(format!("udp:127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting snmptrapd");
        let t = Trapd { _proc: Proc(child), log, port, _dir: dir };
        let deadline = Instant::now() + LIMIT;
        while !std::fs::read_to_string(&t.log).unwrap_or_default().contains("NET-SNMP version") {
            assert!(Instant::now() < deadline, "snmptrapd did not start on udp:127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    /// The traps received so far: each a list of (numeric OID, "TYPE: value").
    pub fn traps(&self) -> Vec<Vec<(String, String)>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("TRAP "))
            .map(|l| {
                l.split('\t')
                    .filter_map(|vb| vb.split_once(" = ").map(|(o, v)| (o.trim().to_string(), v.to_string())))
                    .collect()
            })
            .collect()
    }

    /// Waits until at least `n` traps arrived; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Vec<(String, String)>> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let t = self.traps();
            if t.len() >= n {
                return t;
            }
            assert!(Instant::now() < deadline, "only {} of {n} traps arrived at snmptrapd", t.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The value of `oid` in a trap.
pub fn varbind<'a>(trap: &'a [(String, String)], oid: &str) -> Option<&'a str> {
    trap.iter().find(|(o, _)| o == oid).map(|(_, v)| v.as_str())
}

/// An SMTP server (`python3 -m aiosmtpd`) on 127.0.0.1:`port` that stores each mail
/// in a maildir.
pub struct Smtpd {
    _proc: Proc,
    maildir: PathBuf,
    /// Its TCP port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Smtpd {
    /// Starts it on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> Smtpd {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "Python's aiosmtpd not found: install it with `python3 -m pip install aiosmtpd` (.ci/run does)");
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd");
        let s = Smtpd { _proc: Proc(child), maildir, port, _dir: dir };
        let deadline = Instant::now() + LIMIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// The mails received so far, as text.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    }

    /// Waits until at least `n` mails arrived; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let m = self.mails();
            if m.len() >= n {
                return m;
            }
            assert!(Instant::now() < deadline, "only {} of {n} mails arrived at aiosmtpd", m.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
