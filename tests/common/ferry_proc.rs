//! The cluster and sentinel tests' view of a `ferry sync` process: URLs in, a status port
//! chosen here. A thin layer over [`super::ferry`].

use std::path::Path;
use std::time::Duration;

pub use super::ferry::{free_port, get_status, Ferry};

/// `ferry sync --source --target --status-listen` plus `extra`, logging into `dir`.
pub fn start(source_url: &str, target_url: &str, dir: &Path, extra: &[&str]) -> Ferry {
    let mut args = vec!["sync", "--source", source_url, "--target", target_url];
    args.extend_from_slice(extra);
    super::ferry::spawn_ferry(&args, &dir.join("ferry.log"))
}

pub fn log_tail(f: &Ferry, n: usize) -> String {
    let text = f.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until ferry reports `consistent` at (at least) the offset `want()` returns; the
/// status then.
pub fn wait_consistent(
    f: &mut Ferry,
    want: impl Fn() -> u64,
    timeout: Duration,
) -> serde_json::Value {
    f.wait_consistent(want, timeout);
    get_status(&f.status).unwrap_or_default()
}

/// Waits until ferry's applied offset reaches `want` (writes may still be running, so
/// `consistent` is not required).
pub fn wait_applied(f: &mut Ferry, want: u64, timeout: Duration) {
    f.wait_status(
        "applied offset",
        |s| s["stream"]["applied_offset"].as_u64().unwrap_or(0) >= want,
        timeout,
    );
}

/// Waits for ferry to exit by itself; its exit code and log.
pub fn wait_exit(f: &mut Ferry, timeout: Duration) -> (Option<i32>, String) {
    let code = f.wait_exit(timeout);
    (code.code(), f.log_text())
}

/// SIGTERM, and a clean exit 0 expected.
pub fn stop(f: Ferry) {
    super::ferry::stop_ferry(f)
}
