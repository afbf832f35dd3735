//! A `ferry` process run by a test: started with arguments, its log in a file, its
//! `/status` polled, stopped with SIGTERM (and killed on drop if the test fails first).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dataset::{Model, ValueModel};
use super::{Server, ServerSpec};

pub struct Ferry {
    pub child: Child,
    /// The `/status` listen address.
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
    let status = status.to_string();
    let out = std::fs::File::create(log).expect("ferry log file");
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--status-listen", &status])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file handle"))
        .stderr(out)
        .spawn()
        .expect("ferry starts");
    Ferry {
        child,
        status,
        log: log.to_path_buf(),
    }
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

pub fn log_tail(f: &Ferry) -> String {
    let text = std::fs::read_to_string(&f.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Waits until ferry is consistent at (at least) the source's current offset.
pub fn wait_consistent(f: &mut Ferry, source: &Server, timeout: Duration) {
    let t0 = Instant::now();
    let mut last = None;
    loop {
        if let Ok(Some(code)) = f.child.try_wait() {
            panic!("ferry exited early with {code}:\n{}", log_tail(f));
        }
        let want: u64 = source
            .client()
            .info("replication")
            .get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Some(s) = get_status(&f.status) {
            let applied = s["stream"]["applied_offset"].as_u64().unwrap_or(0);
            if s["consistent"] == true && applied >= want {
                return;
            }
            last = Some(s);
        }
        if t0.elapsed() > timeout {
            panic!(
                "not consistent after {timeout:?}; last status {last:?}\nferry log:\n{}",
                log_tail(f)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then a clean exit within 20 s.
pub fn stop_ferry(mut f: Ferry) {
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
                    log_tail(&f)
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
