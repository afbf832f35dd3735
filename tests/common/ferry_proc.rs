//! A running `ferry sync` process for end-to-end tests: start with a status port, read
//! `/status`, wait until consistent, stop with SIGTERM (killed on drop if a test fails).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ferry {
    pub child: Child,
    pub status: String,
    pub log: PathBuf,
}

impl Drop for Ferry {
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

/// `ferry sync --source --target --status-listen` plus `extra`, logging into `dir`.
pub fn start(source_url: &str, target_url: &str, dir: &Path, extra: &[&str]) -> Ferry {
    let status = format!("127.0.0.1:{}", free_port());
    let log = dir.join("ferry.log");
    let out = std::fs::File::create(&log).expect("ferry log file");
    let mut args = vec![
        "sync".to_string(),
        "--source".into(),
        source_url.to_string(),
        "--target".into(),
        target_url.to_string(),
        "--status-listen".into(),
        status.clone(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("ferry starts");
    Ferry { child, status, log }
}

pub fn get_status(addr: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).ok()?;
    let i = body.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&body[i + 4..]).ok()
}

pub fn log_tail(f: &Ferry, n: usize) -> String {
    let text = std::fs::read_to_string(&f.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until ferry reports `consistent` at (at least) the offset `want()` returns.
pub fn wait_consistent(
    f: &mut Ferry,
    want: impl Fn() -> u64,
    timeout: Duration,
) -> serde_json::Value {
    let t0 = Instant::now();
    let mut last = None;
    loop {
        if let Ok(Some(code)) = f.child.try_wait() {
            panic!("ferry exited early with {code}:\n{}", log_tail(f, 30));
        }
        let want = want();
        if let Some(s) = get_status(&f.status) {
            let applied = s["stream"]["applied_offset"].as_u64().unwrap_or(0);
            if s["consistent"] == true && applied >= want {
                return s;
            }
            last = Some(s);
        }
        if t0.elapsed() > timeout {
            panic!(
                "not consistent after {timeout:?}; last status {last:?}\nferry log:\n{}",
                log_tail(f, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until ferry's applied offset reaches `want` (writes may still be running, so
/// `consistent` is not required).
pub fn wait_applied(f: &mut Ferry, want: u64, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(code)) = f.child.try_wait() {
            panic!("ferry exited early with {code}:\n{}", log_tail(f, 30));
        }
        if let Some(s) = get_status(&f.status) {
            if s["stream"]["applied_offset"].as_u64().unwrap_or(0) >= want {
                return;
            }
        }
        if t0.elapsed() > timeout {
            panic!(
                "applied offset {want} not reached in {timeout:?}:\n{}",
                log_tail(f, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for ferry to exit by itself; returns its exit code and log.
pub fn wait_exit(f: &mut Ferry, timeout: Duration) -> (Option<i32>, String) {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(code)) = f.child.try_wait() {
            return (
                code.code(),
                std::fs::read_to_string(&f.log).unwrap_or_default(),
            );
        }
        if t0.elapsed() > timeout {
            panic!(
                "ferry did not exit within {timeout:?}:\n{}",
                log_tail(f, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, and a clean exit 0 expected.
pub fn stop(mut f: Ferry) {
    let pid = f.child.id() as i32;
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: sending SIGTERM to our own child process.
    unsafe { kill(pid, 15) };
    let t0 = Instant::now();
    loop {
        match f.child.try_wait() {
            Ok(Some(code)) => {
                assert!(
                    code.success(),
                    "ferry exited with {code} after SIGTERM:\n{}",
                    log_tail(&f, 30)
                );
                return;
            }
            _ if t0.elapsed() > Duration::from_secs(20) => {
                panic!("ferry did not stop within 20 s of SIGTERM")
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
