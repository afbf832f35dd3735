//! The operator's surface on a real sync: `/status`, `/metrics` and `/healthz` scraped while
//! ferry copies a live Redis 7.2 into a Valkey 8.1 with writes going on; every documented
//! status field and metric name is there; the heartbeat gives `lag_seconds`; the log has
//! its phase lines; `/healthz` goes red once the source is stopped; SIGTERM exits 0. The
//! data is compared key by key by the harness, not by ferry.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::dataset::{fill, read_back};
use common::ferry::{self, http_get, master_offset};
use common::workload::{self, Workload};
use common::{assert_models_equal, require_server, Server, TempDir};

/// Every `/status` field the README documents (JSON pointers).
pub const STATUS_FIELDS: &[&str] = &[
    "/phase",
    "/consistent",
    "/source",
    "/target",
    "/replid",
    "/snapshot/bytes_total",
    "/snapshot/bytes_read",
    "/snapshot/keys",
    "/snapshot/keys_skipped_expired",
    "/snapshot/seconds",
    "/snapshot/done",
    "/stream/received_offset",
    "/stream/applied_offset",
    "/stream/lag_bytes",
    "/stream/lag_seconds",
    "/stream/commands",
    "/in_flight",
    "/spool_bytes",
    "/reconnects",
    "/errors",
    "/last_error",
    "/shards",
    "/uptime_seconds",
    "/timings/handshake_seconds",
    "/timings/snapshot_seconds",
    "/timings/stream_seconds",
    "/written/keys",
    "/written/commands",
    "/written/bytes",
    "/spool/bytes",
    "/spool/disk_bytes",
    "/spool/cap",
    "/health/ok",
    "/health/source_link_up",
    "/health/target_up",
    "/health/reason",
];

const HEARTBEAT_KEY: &str = "ops:heartbeat";

/// The README documents every status field (in its JSON example) and every metric.
#[test]
fn readme_documents_every_status_field_and_metric() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for p in STATUS_FIELDS {
        let leaf = p.rsplit('/').next().unwrap();
        assert!(
            readme.contains(&format!("\"{leaf}\"")),
            "README: no status field {p}"
        );
    }
    for (name, _) in ferry::METRICS {
        assert!(
            readme.contains(&format!("| `{name}")),
            "README: metric {name} not in the list"
        );
    }
}

/// The value of a metric sample line `name{labels} value` (first match).
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn status_metrics_and_healthz_during_a_real_sync() {
    let (Some(src), Some(dst)) = (require_server("redis-7.2"), require_server("valkey-8.1")) else {
        return;
    };
    let dir = TempDir::new("operator");
    // Disk-based transfer: the source announces the snapshot's size (bytes_total).
    let source = Server::start(&src, &["--repl-diskless-sync", "no"]);
    let target = Server::start(&dst, &[]);
    let mut c = source.client();
    fill(&mut c, &src);
    // A key on the target that the stream will hit with the wrong type: errors by class.
    target.client().ok(&["SET", "ops:wrongtype", "a string"]);

    let status = format!("127.0.0.1:{}", ferry::free_port());
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
             [sync]\nheartbeat_interval = 0.2\nheartbeat_key = \"{HEARTBEAT_KEY}\"\n\
             [status]\nlisten = \"{status}\"\nhealthz_timeout = 1.0\n\
             [log]\nprogress_interval = 0.5\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (addr, compat, stop2) = (source.addr(), src.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut c = common::Client::connect(addr);
        let w = Workload {
            ops: 2000,
            pause: Duration::from_millis(2),
            seed: 11,
        };
        workload::run(&mut c, &compat, &w, &stop2)
    });
    let mut f = ferry::start(dir.path(), &config, &status, &[], &[]);
    writer.join().expect("workload");
    let src_addr = source.addr();
    let want = move || master_offset(&mut common::Client::connect(src_addr));
    f.wait_consistent(want, Duration::from_secs(60));

    c.ok(&["LPUSH", "ops:wrongtype", "x"]);
    let s = f.wait_status(
        "a WRONGTYPE error counted and a heartbeat measured",
        |s| s["errors"]["WRONGTYPE"].as_u64() == Some(1) && s["stream"]["lag_seconds"].is_f64(),
        Duration::from_secs(30),
    );
    for p in STATUS_FIELDS {
        assert!(s.pointer(p).is_some(), "/status lacks {p}: {s:#}");
    }
    assert_eq!(s["phase"], "stream");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("LPUSH") && e.contains("WRONGTYPE")),
        "{s:#}"
    );
    assert_eq!(s["health"]["ok"], true, "{s:#}");
    assert!(s["snapshot"]["done"] == true && s["snapshot"]["keys"].as_u64() > Some(0));
    assert_eq!(s["snapshot"]["bytes_total"], s["snapshot"]["bytes_read"]);
    assert_eq!(s["written"]["keys"], s["snapshot"]["keys"]);
    assert!(s["written"]["commands"].as_u64() >= s["written"]["keys"].as_u64());
    assert!(s["timings"]["snapshot_seconds"].as_f64() > Some(0.0));
    assert!(s["timings"]["stream_seconds"].as_f64() > Some(0.0));
    assert!(s["stream"]["commands"].as_u64() > Some(0));
    let lag = s["stream"]["lag_seconds"].as_f64().unwrap();
    assert!(lag >= 0.0, "lag_seconds {lag}");

    let (code, m) = http_get(&status, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200, "{m}");
    for (name, _) in ferry::METRICS {
        let present = m
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")));
        assert!(present, "/metrics lacks {name}:\n{m}");
        assert!(
            m.contains(&format!("# TYPE {name} ")),
            "no TYPE line for {name}"
        );
    }
    assert_eq!(metric(&m, "ferry_phase{phase=\"stream\"}"), Some(1.0));
    assert_eq!(
        metric(&m, "ferry_errors_total{class=\"WRONGTYPE\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "ferry_keys_written_total"),
        s["written"]["keys"].as_f64()
    );
    assert_eq!(
        metric(&m, "ferry_snapshot_bytes_total"),
        s["snapshot"]["bytes_total"].as_f64()
    );
    assert_eq!(metric(&m, "ferry_source_link_up"), Some(1.0));
    assert_eq!(metric(&m, "ferry_healthy"), Some(1.0));
    assert_eq!(http_get(&status, "/healthz").map(|r| r.0), Some(200));
    assert!(healthcheck(&status).0, "ferry healthcheck while healthy");
    assert_eq!(http_get(&status, "/nope").map(|r| r.0), Some(404));

    // The data: every key equal, but for the two this test wrote on purpose (the heartbeat
    // keeps changing on the source; the wrong-type key differs by design).
    let dbs = [0, 1, 2, 3, 5];
    let mut expected = read_back(&mut c, &src, &dbs);
    f.wait_consistent(want, Duration::from_secs(30));
    let mut actual = read_back(&mut target.client(), &dst, &dbs);
    for m in [&mut expected, &mut actual] {
        for k in [HEARTBEAT_KEY, "ops:wrongtype"] {
            m.keys.remove(&(0, k.as_bytes().to_vec()));
        }
    }
    assert_models_equal(&expected, &actual, 1_000);

    // The log: the phase lines with their figures, the progress lines, and a "snapshot
    // applied" line that scripts/bench-sync.sh can still read its seconds from. A stream
    // progress line comes every progress_interval (0.5 s) once streaming: wait for one.
    let t0 = std::time::Instant::now();
    while !f.log_text().contains("stream: applied offset") && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = f.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("snapshot applied: "))
        .unwrap_or_else(|| panic!("no `snapshot applied` line:\n{log}"));
    let keys = s["snapshot"]["keys"].as_u64().unwrap();
    assert!(
        line.contains(&format!("snapshot applied: {} keys", thousands(keys))),
        "{line}"
    );
    let secs = line
        .split(" in ")
        .nth(1)
        .and_then(|r| r.split(" s ").next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(secs.is_some(), "no `in <secs> s ` in: {line}");
    assert!(line.contains("streaming from offset "), "{line}");
    for phase_line in [
        "target connected",
        "replica link established in ",
        "full resync: receiving the snapshot",
        "stream: applied offset",
    ] {
        assert!(log.contains(phase_line), "no `{phase_line}` line:\n{log}");
    }

    // The source goes away: the link is down, and past healthz_timeout /healthz is red.
    drop(source);
    let s = f.wait_status(
        "source link down",
        |s| s["health"]["source_link_up"] == false && s["health"]["ok"] == false,
        Duration::from_secs(30),
    );
    assert!(
        s["health"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("source link")),
        "{s:#}"
    );
    let (code, body) = http_get(&status, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("source link has been down"), "{body}");
    let (ok, err) = healthcheck(&status);
    assert!(
        !ok && err.contains("503") && err.contains("source link"),
        "{err}"
    );
    let (_, m) = http_get(&status, "/metrics").unwrap();
    assert_eq!(metric(&m, "ferry_source_link_up"), Some(0.0));
    assert_eq!(metric(&m, "ferry_healthy"), Some(0.0));

    // SIGTERM: drain and exit 0, even with the source gone.
    let code = f.stop(Duration::from_secs(40));
    assert!(code.success(), "ferry exited with {code}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// `ferry healthcheck ADDR` (the containers' health check): (exit 0, stderr).
fn healthcheck(addr: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["healthcheck", addr])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn signal(pid: u32, sig: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: a signal to a server process this test started and has not reaped.
    unsafe { kill(pid as i32, sig) };
}
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

/// A target that stops answering (SIGSTOP) turns /healthz red once the heartbeat's
/// commands stay unacknowledged past healthz_timeout, and green again when it resumes;
/// SIGTERM while it hangs ends ferry with exit 0 after drain_timeout, final offset logged.
#[test]
fn healthz_red_while_the_target_hangs_and_sigterm_still_exits() {
    let Some(spec) = require_server("valkey-8.1") else {
        return;
    };
    let dir = TempDir::new("operator-stall");
    let source = Server::start(&spec, &[]);
    let target = Server::start(&spec, &[]);
    source.client().ok(&["SET", "a", "1"]);
    let status = format!("127.0.0.1:{}", ferry::free_port());
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
             [sync]\nheartbeat_interval = 0.2\ndrain_timeout = 1.0\n\
             [status]\nlisten = \"{status}\"\nhealthz_timeout = 1.0\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    let mut f = ferry::start(dir.path(), &config, &status, &[], &[]);
    let src_addr = source.addr();
    let want = move || master_offset(&mut common::Client::connect(src_addr));
    f.wait_consistent(want, Duration::from_secs(60));
    assert_eq!(http_get(&status, "/healthz").map(|r| r.0), Some(200));

    // Resumes the target even if an assertion fails, so that it can be stopped.
    struct Resume(u32);
    impl Drop for Resume {
        fn drop(&mut self) {
            signal(self.0, SIGCONT);
        }
    }
    signal(target.pid(), SIGSTOP);
    let resume = Resume(target.pid());
    let s = f.wait_status(
        "the target reported down",
        |s| s["health"]["target_up"] == false,
        Duration::from_secs(30),
    );
    assert!(
        s["health"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("target has made no progress")),
        "{s:#}"
    );
    assert_eq!(s["health"]["source_link_up"], true);
    let (code, body) = http_get(&status, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");

    drop(resume);
    f.wait_status(
        "the target back up",
        |s| s["health"]["ok"] == true,
        Duration::from_secs(30),
    );

    signal(target.pid(), SIGSTOP);
    let _resume = Resume(target.pid());
    f.wait_status(
        "the target reported down again",
        |s| s["health"]["target_up"] == false,
        Duration::from_secs(30),
    );
    let log = f.log.clone();
    let code = f.stop(Duration::from_secs(60));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(code.success(), "ferry exited with {code}:\n{log}");
    // The stop is seen while the tick waits on the hung target; the drain gives up after
    // drain_timeout and ferry ends by itself, with its final offset (before, the process
    // bound cut it off 5 s later).
    assert!(
        log.contains("stopping: draining")
            && log.contains("drain timeout")
            && log.contains("stopped; final applied offset")
            && !log.contains("still draining"),
        "{log}"
    );
}
