//! A `ferry` process run by a test: started with a config file or arguments, its log in
//! a file, its status endpoints read over plain HTTP (std only), stopped with a signal,
//! killed on drop if the test fails first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dataset::{Model, ValueModel};
use super::{Server, ServerSpec};

/// The name the operator tests use.
pub type FerryProc = Ferry;

pub struct Ferry {
    pub child: Child,
    /// `127.0.0.1:PORT` of /status, /metrics, /healthz.
    pub status: String,
    /// Its standard error.
    pub log: PathBuf,
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        super::watchdog::untrack(self.child.id());
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
    let config = config.to_str().expect("utf-8 config path");
    let mut argv = vec!["sync", "--config", config];
    argv.extend_from_slice(args);
    launch(&argv, envs, &dir.join("ferry.log"), status)
}

/// `ferry ARGV…` with `envs`; stdout and stderr to `log`.
fn launch(argv: &[&str], envs: &[(&str, &str)], log: &Path, status: &str) -> Ferry {
    let out = std::fs::File::create(log).expect("ferry log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    // Whatever ferry puts in the temp dir (a spool, a cutover's verify report) lands in the
    // test's own directory, removed with it, and a test can look at it there.
    if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
        cmd.env("TMPDIR", dir);
    }
    let child = cmd
        .args(argv)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file handle"))
        .stderr(out)
        .spawn()
        .expect("ferry starts");
    super::watchdog::track(child.id());
    Ferry {
        child,
        status: status.to_string(),
        log: log.to_path_buf(),
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

impl Ferry {
    pub fn status_json(&self) -> Option<serde_json::Value> {
        get_status(&self.status)
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

    /// Waits for ferry to exit by itself (panics, with the log, after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(code)) = self.child.try_wait() {
                super::watchdog::untrack(self.child.id());
                return code;
            }
            assert!(
                t0.elapsed() < timeout,
                "ferry did not exit within {timeout:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// `ferry sync --source S --target T` with a status port.
pub fn start_ferry(source: &Server, target: &Server, extra: &[&str]) -> Ferry {
    start_ferry_url(&source.url(), source, target, extra)
}

/// `ferry sync` from `source_url` (the server itself or a proxy in front of it).
pub fn start_ferry_url(
    source_url: &str,
    source: &Server,
    target: &Server,
    extra: &[&str],
) -> Ferry {
    let mut args = vec![
        "sync".to_string(),
        "--source".into(),
        source_url.to_string(),
        "--target".into(),
        target.url(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_ferry(&args, &source.dir().join("ferry.log"))
}

/// `ferry ARGS… --status-listen ADDR` on a free port, stderr to `log`.
pub fn spawn_ferry(args: &[&str], log: &std::path::Path) -> Ferry {
    spawn_ferry_at(args, log, &format!("127.0.0.1:{}", free_port()))
}

/// `ferry ARGS… --status-listen STATUS`, stdout and stderr to `log`.
pub fn spawn_ferry_at(args: &[&str], log: &std::path::Path, status: &str) -> Ferry {
    let mut argv = args.to_vec();
    argv.extend_from_slice(&["--status-listen", status]);
    launch(&argv, &[], log, status)
}

pub fn get_status(addr: &str) -> Option<serde_json::Value> {
    let (code, body) = http_get(addr, "/status")?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

pub fn log_tail(f: &Ferry) -> String {
    f.log_tail()
}

/// Waits until ferry is consistent at (at least) the source's current offset.
pub fn wait_consistent(f: &mut Ferry, source: &Server, timeout: Duration) {
    f.wait_consistent(|| master_offset(&mut source.client()), timeout)
}

/// SIGTERM, then a clean exit within 20 s.
pub fn stop_ferry(f: Ferry) {
    let log = f.log.clone();
    let code = f.stop(Duration::from_secs(20));
    assert!(
        code.success(),
        "ferry exited with {code} after SIGTERM:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// What of the source's data a target of this version can hold at all.
pub fn comparable(mut m: Model, target: &ServerSpec) -> Model {
    if !target.has_functions() {
        m.functions.clear();
    }
    m.keys
        .retain(|_, k| target.has_streams() || !matches!(k.value, ValueModel::Stream(_)));
    if !target.has_hash_field_ttl() {
        for k in m.keys.values_mut() {
            if let ValueModel::Hash(h) = &mut k.value {
                for v in h.values_mut() {
                    v.1 = None;
                }
            }
        }
    }
    m
}

pub fn older<'a>(a: &'a ServerSpec, b: &'a ServerSpec) -> &'a ServerSpec {
    if a.redis_compat() <= b.redis_compat() {
        a
    } else {
        b
    }
}
