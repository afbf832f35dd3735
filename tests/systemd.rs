//! ferry under systemd: the units pass `systemd-analyze verify` (skipped where it is not
//! installed), and a real sync speaks the notify protocol to a socket this test provides
//! in place of systemd's: `READY=1` only once the replica link is established, `WATCHDOG=1`
//! pings when `WATCHDOG_USEC` is set, `STOPPING=1` on SIGTERM, then exit 0. SIGHUP reopens
//! `[log] file` after logrotate has moved it.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ferry;
use common::{installed_servers, require_any_servers, Server, TempDir};

const UNITS: &[&str] = &["ferry.service", "ferry@.service"];

fn unit_text(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/systemd")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `Key=value` of the unit (last one wins), ignoring comments.
fn directive<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .next()
}

fn seconds(v: &str) -> f64 {
    v.trim_end_matches('s').parse().unwrap()
}

#[test]
fn units_say_what_the_readme_promises() {
    let drain = ferry_lib_default_drain();
    for name in UNITS {
        let t = unit_text(name);
        assert_eq!(directive(&t, "Type"), Some("notify"), "{name}");
        assert_eq!(directive(&t, "Restart"), Some("on-failure"), "{name}");
        assert!(directive(&t, "WatchdogSec").is_some(), "{name}");
        assert_eq!(directive(&t, "DynamicUser"), Some("yes"), "{name}");
        assert_eq!(directive(&t, "NoNewPrivileges"), Some("yes"), "{name}");
        assert!(
            directive(&t, "ExecReload").is_some_and(|v| v.contains("-HUP")),
            "{name}"
        );
        // systemd must give the drain its time before it sends SIGKILL.
        let stop = seconds(directive(&t, "TimeoutStopSec").unwrap());
        assert!(
            stop > drain,
            "{name}: TimeoutStopSec {stop} <= drain_timeout {drain}"
        );
        // The notify socket is a Unix socket: the address families must allow it.
        assert!(
            directive(&t, "RestrictAddressFamilies").is_some_and(|v| v.contains("AF_UNIX")),
            "{name}"
        );
        let exec = directive(&t, "ExecStart").unwrap();
        assert!(
            exec.contains(" sync --config /etc/ferry/"),
            "{name}: {exec}"
        );
    }
    assert!(directive(&unit_text("ferry@.service"), "ExecStart")
        .unwrap()
        .contains("%i.toml"));
}

fn ferry_lib_default_drain() -> f64 {
    ::ferry::config::Config::default().sync.drain_timeout
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    }
    let dir = TempDir::new("units");
    for name in UNITS {
        // The installed path of the binary does not exist here: point at the one built.
        let text = unit_text(name).replace("/usr/local/bin/ferry", env!("CARGO_BIN_EXE_ferry"));
        // A template is verified through an instance of it.
        let file = dir.path().join(name.replace("@.", "@blue."));
        std::fs::write(&file, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = err.lines().filter(|l| l.contains("ferry")).collect();
        assert!(
            out.status.success(),
            "{name}: systemd-analyze verify failed:\n{err}"
        );
        // verify exits 0 on unknown keys and bad values, but prints them.
        assert!(ours.is_empty(), "{name}: systemd-analyze verify:\n{err}");
    }
}

#[test]
fn notify_ready_watchdog_stopping_and_sighup_reopen_during_a_real_sync() {
    let specs = require_any_servers();
    let Some(spec) = ["valkey-8.1", "redis-7.2"]
        .iter()
        .find_map(|n| installed_servers().into_iter().find(|s| s.name == *n))
        .or_else(|| specs.last().cloned())
    else {
        return;
    };
    let dir = TempDir::new("notify");
    let d = dir.path();
    let source = Server::start(&spec, &[]);
    let target = Server::start(&spec, &[]);
    let mut c = source.client();
    for i in 0..500 {
        c.ok(&["SET", &format!("k{i}"), "v"]);
    }

    let sock_path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log_file = d.join("ferry.log");
    let status = format!("127.0.0.1:{}", ferry::free_port());
    let config = d.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[status]\nlisten = \"{status}\"\n\
             [log]\nfile = \"{}\"\nformat = \"json\"\n[sync]\ndrain_timeout = 5.0\n",
            source.url(),
            target.url(),
            log_file.display()
        ),
    )
    .unwrap();
    let sock_env = sock_path.to_str().unwrap().to_string();
    let mut f = ferry::start(
        d,
        &config,
        &status,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    let mut msgs: Vec<String> = Vec::new();
    let recv = |msgs: &mut Vec<String>, until: &dyn Fn(&[String]) -> bool, what: &str| {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        while !until(msgs) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no {what}; got {msgs:?}"
            );
            if let Ok(n) = sock.recv(&mut buf) {
                for m in String::from_utf8_lossy(&buf[..n]).lines() {
                    msgs.push(m.to_string());
                }
            }
        }
    };
    let has = |m: &[String], s: &str| m.iter().any(|x| x == s);
    recv(&mut msgs, &|m| has(m, "READY=1"), "READY=1");
    // READY=1 is sent after the link is up: the log says so already.
    let log_now = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        log_now.contains("replica link established"),
        "READY=1 before the link:\n{log_now}"
    );
    recv(&mut msgs, &|m| has(m, "WATCHDOG=1"), "WATCHDOG=1");
    recv(
        &mut msgs,
        &|m| m.iter().any(|x| x == "STATUS=streaming"),
        "STATUS=streaming",
    );
    f.assert_running();

    // logrotate: move the file away, SIGHUP, and ferry writes to a new one.
    let rotated = d.join("ferry.log.1");
    std::fs::rename(&log_file, &rotated).unwrap();
    f.signal(1);
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log_file)
        .unwrap_or_default()
        .contains("reopened the log file")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no new log file after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("snapshot applied"));

    let code = f.stop(Duration::from_secs(30));
    assert!(code.success(), "ferry exited with {code}");
    recv(&mut msgs, &|m| has(m, "STOPPING=1"), "STOPPING=1");
    let ready = msgs.iter().position(|m| m == "READY=1").unwrap();
    let stopping = msgs.iter().position(|m| m == "STOPPING=1").unwrap();
    assert!(ready < stopping, "{msgs:?}");
    let after = std::fs::read_to_string(&log_file).unwrap();
    assert!(after.contains("final applied offset"));
    // `[log] format = "json"`: one JSON object per line, in both files.
    let before = std::fs::read_to_string(&rotated).unwrap();
    for line in before.lines().chain(after.lines()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}
