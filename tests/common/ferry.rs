//! A `ferry sync` process for operator tests: started with a config file, its status
//! endpoints read over plain HTTP (std only), stopped with a signal, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FerryProc {
    pub child: Child,
    /// `127.0.0.1:PORT` of /status, /metrics, /healthz.
    pub status: String,
    /// Its standard error.
    pub log: PathBuf,
}

impl Drop for FerryProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `ferry sync --config CONFIG ARGS…` with `envs`, stderr to `dir/ferry.log`. The config
/// must set `[status] listen` to `status`.
pub fn start(
    dir: &Path,
    config: &Path,
    status: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> FerryProc {
    let log = dir.join("ferry.log");
    let err = std::fs::File::create(&log).expect("ferry log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("sync")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("ferry starts");
    FerryProc {
        child,
        status: status.to_string(),
        log,
    }
}

/// `GET path`: (status code, body), or None when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

impl FerryProc {
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(&self.status, "/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Panics (with the log) if ferry has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(code)) = self.child.try_wait() {
            panic!("ferry exited early with {code}:\n{}", self.log_tail());
        }
    }

    /// Waits until `/status` says consistent with `applied_offset >= want()`.
    pub fn wait_consistent(&mut self, want: impl Fn() -> u64, timeout: Duration) {
        let t0 = Instant::now();
        let mut last = None;
        loop {
            self.assert_running();
            let w = want();
            if let Some(s) = self.status_json() {
                let applied = s["stream"]["applied_offset"].as_u64().unwrap_or(0);
                if s["consistent"] == true && applied >= w {
                    return;
                }
                last = Some(s);
            }
            assert!(
                t0.elapsed() < timeout,
                "not consistent after {timeout:?}; last status {last:#?}\nferry log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `pred(status)` holds.
    pub fn wait_status(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            self.assert_running();
            if let Some(s) = self.status_json() {
                if pred(&s) {
                    return s;
                }
                assert!(
                    t0.elapsed() < timeout,
                    "{what}: not after {timeout:?}; status {s:#?}\nferry log:\n{}",
                    self.log_tail()
                );
            }
            assert!(t0.elapsed() < timeout, "{what}: no status");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: i32) {
        extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then the exit code (panics if it takes over `timeout`).
    pub fn stop(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal(15);
        let t0 = Instant::now();
        loop {
            if let Ok(Some(code)) = self.child.try_wait() {
                return code;
            }
            assert!(
                t0.elapsed() < timeout,
                "ferry did not stop within {timeout:?} of SIGTERM:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The source's `master_repl_offset`.
pub fn master_offset(c: &mut super::Client) -> u64 {
    c.info("replication")
        .get("master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The metric names `/metrics` exports (ferry's own list, which the README documents).
pub use ::ferry::status::METRICS;
