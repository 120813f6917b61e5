//! A `sectl serve` for the integration tests: on a free loopback port over a data
//! directory holding `SITE` (plus any extra YAML, applied first in embedded mode so
//! the world is settled when the server starts), with the simulated clock stopped
//! (`--time-scale 0`). Killed on drop; `stop` sends SIGTERM and waits (bounded).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// Its data directory.
    pub data: PathBuf,
    /// Its URL, as printed.
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Applies SITE and `extra` to `data`, then serves it.
    pub fn start(data: &Path, extra: &str) -> Serve {
        let site = data.with_extension("site.yaml");
        std::fs::write(&site, format!("{}---\n{extra}", super::SITE)).expect("site");
        super::sectl_in(data).arg("apply").arg("-f").arg(&site).assert().success();
        Serve::start_only(data)
    }

    /// Serves `data` as it is.
    pub fn start_only(data: &Path) -> Serve {
        let mut child = super::sectl()
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--time-scale", "0"])
            .env_remove("SECTL_SERVER")
            .env_remove("SECTL_DATA_DIR")
            .env_remove("SECTL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sectl serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut serve = Serve { child, data: data.to_path_buf(), url: String::new() };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("serve prints its address");
        serve.url = first.trim().strip_prefix("sectl serve: listening on ").unwrap_or_else(|| panic!("{first}")).into();
        serve
    }

    /// The kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig")
    }

    /// The API as the kubeconfig describes it (what kubectl would use).
    pub fn api(&self) -> sectl::client::Client {
        let access = sectl::server::kubeconfig::read(&self.data).expect("kubeconfig").expect("present");
        sectl::client::Client::from_kubeconfig(&access, &self.data, &[]).expect("client")
    }

    /// The bearer token.
    pub fn token(&self) -> String {
        sectl::server::kubeconfig::read(&self.data).expect("kubeconfig").expect("present").token
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `cmd` with a time limit: (exit code, stdout, stderr); kills it when over.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.expect("output");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}
