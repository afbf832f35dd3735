//! `ferry reverse` on real servers: the forward config (blue → green) run the other way.
//!
//! * `stream`: green asks for an empty snapshot (`REPLCONF rdb-filter-only ""`) and only
//!   its new writes reach blue: a key green had before the reverse started must not
//!   appear on blue, a key only blue had must stay, and everything written on green
//!   afterwards (a workload of every type, expiries, deletes, transactions, FLUSHDB) must
//!   be on blue, compared key by key by the harness.
//! * `full`: green copied over blue after confirmation (`--yes`); without it and without a
//!   terminal nothing is written.
//! * A green that cannot send an empty snapshot (Redis < 7.0) is refused with a message
//!   that names `--mode full`.
//!
//! Pairs are newer → older, as after an upgrade (Valkey 9.1 → Redis 6.2, Valkey 8.1 →
//! Redis 3.2, Redis 7.4 → Redis 5.0), plus one same-version pair.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dataset::{fill, read_back, Model};
use common::ferry::*;
use common::workload::{self, Workload};
use common::{assert_models_equal, installed_servers, require_server, Server, ServerSpec, TempDir};

fn find(name: &str) -> Option<ServerSpec> {
    installed_servers().into_iter().find(|s| s.name == name)
}

/// The pairs (green, blue) that are installed; a missing one is reported, not hidden.
fn pairs(names: &[(&str, &str)]) -> Vec<(ServerSpec, ServerSpec)> {
    let mut out = Vec::new();
    for (g, b) in names {
        match (find(g), find(b)) {
            (Some(g), Some(b)) => out.push((g, b)),
            _ if common::servers::missing_servers_allowed() => {
                eprintln!("skipping {g} -> {b}: not installed")
            }
            _ => panic!("{}", common::servers::install_hint(&[g, b])),
        }
    }
    out
}

/// The forward sync's config: blue is its source, green its target.
fn forward_config(dir: &Path, blue: &Server, green: &Server) -> PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n",
            blue.url(),
            green.url()
        ),
    )
    .expect("config written");
    path
}

fn wait_phase_stream(f: &mut Ferry, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(code)) = f.child.try_wait() {
            panic!("ferry exited early with {code}:\n{}", log_tail(f));
        }
        if get_status(&f.status).is_some_and(|s| s["phase"] == "stream") {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "no stream phase after {timeout:?}:\n{}",
            log_tail(f)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn without(mut m: Model, key: &[u8]) -> Model {
    m.keys.retain(|(_, k), _| k != key);
    m
}

fn reverse_stream(green_spec: &ServerSpec, blue_spec: &ServerSpec) {
    let dir = TempDir::new("reverse-stream");
    let blue = Server::start(blue_spec, &[]);
    let green = Server::start(green_spec, &[]);
    let (mut b, mut g) = (blue.client(), green.client());
    g.ok(&[
        "SET",
        "before:green-only",
        "green had it before the reverse",
    ]);
    b.ok(&["SET", "before:blue-only", "blue keeps it"]);
    let config = forward_config(dir.path(), &blue, &green);

    let mut ferry = spawn_ferry(
        &["reverse", "--config", config.to_str().expect("utf-8 path")],
        &dir.path().join("ferry.log"),
    );
    wait_phase_stream(&mut ferry, Duration::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    let w = Workload {
        ops: 3000,
        pause: Duration::from_millis(1),
        seed: 11,
    };
    let ops = workload::run(&mut green.client(), blue_spec, &w, &stop);
    wait_consistent(&mut ferry, &green, Duration::from_secs(60));
    let log = std::fs::read_to_string(&ferry.log).unwrap_or_default();
    stop_ferry(ferry);

    assert!(
        log.contains("snapshot applied: 0 keys"),
        "the snapshot was not empty:\n{log}"
    );
    let dbs = [0, 1, 2, 3, 5];
    let actual = read_back(&mut b, blue_spec, &dbs);
    assert!(
        !actual
            .keys
            .contains_key(&(0, b"before:green-only".to_vec())),
        "a key green had before the reverse was copied"
    );
    assert!(
        actual.keys.contains_key(&(0, b"before:blue-only".to_vec())),
        "a key only blue had is gone"
    );
    let expected = comparable(
        without(read_back(&mut g, green_spec, &dbs), b"before:green-only"),
        blue_spec,
    );
    assert_models_equal(&expected, &without(actual, b"before:blue-only"), 2_000);
    eprintln!(
        "reverse stream {green_spec} -> {blue_spec}: {} keys equal after {ops} writes",
        expected.keys.len()
    );
}

#[test]
fn reverse_stream_carries_only_the_new_writes() {
    for (green, blue) in pairs(&[
        ("redis-7.2", "redis-7.2"),
        ("valkey-9.1", "redis-6.2"),
        ("valkey-8.1", "redis-3.2"),
        ("redis-7.4", "redis-5.0"),
    ]) {
        reverse_stream(&green, &blue);
    }
}

#[test]
fn reverse_stream_is_refused_by_a_source_without_empty_snapshots() {
    for (green, blue) in pairs(&[("redis-6.2", "redis-6.2")]) {
        let dir = TempDir::new("reverse-refused");
        let blue = Server::start(&blue, &[]);
        let green = Server::start(&green, &[]);
        let config = forward_config(dir.path(), &blue, &green);
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["reverse", "--config", config.to_str().expect("utf-8")])
            .stdin(Stdio::null())
            .output()
            .expect("ferry runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "reverse stream succeeded:\n{err}");
        assert!(
            err.contains("rdb-filter-only") && err.contains("--mode full"),
            "{err}"
        );
    }
}

fn reverse_full(green_spec: &ServerSpec, blue_spec: &ServerSpec) {
    let dir = TempDir::new("reverse-full");
    let blue = Server::start(blue_spec, &[]);
    let green = Server::start(green_spec, &[]);
    let mut g = green.client();
    fill(&mut g, green_spec);
    let config = forward_config(dir.path(), &blue, &green);
    let config = config.to_str().expect("utf-8");

    // Without a terminal and without --yes: refused, nothing written.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["reverse", "--config", config, "--mode", "full", "--once"])
        .stdin(Stdio::null())
        .output()
        .expect("ferry runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(blue.client().ok(&["DBSIZE"]).as_int(), Some(0));

    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "reverse", "--config", config, "--mode", "full", "--yes", "--once",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ferry runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let dbs = [0, 1, 2, 3, 5];
    let expected = comparable(read_back(&mut g, green_spec, &dbs), blue_spec);
    let actual = read_back(&mut blue.client(), blue_spec, &dbs);
    assert_models_equal(&expected, &actual, 3_000);
    eprintln!(
        "reverse full {green_spec} -> {blue_spec}: {} keys equal",
        expected.keys.len()
    );
}

#[test]
fn reverse_full_copies_green_into_blue_after_confirmation() {
    for (green, blue) in pairs(&[
        ("redis-7.2", "redis-7.2"),
        ("valkey-9.1", "redis-6.2"),
        ("valkey-8.1", "redis-3.2"),
        ("redis-7.4", "redis-5.0"),
    ]) {
        reverse_full(&green, &blue);
    }
}

/// If green can only resume with a new full resync, stream mode would silently lose the
/// writes made meanwhile: it stops with an error naming the full mode instead.
#[test]
fn reverse_stream_stops_when_green_forces_a_new_full_resync() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let dir = TempDir::new("reverse-resync");
    let green = Server::start(&spec, &[]);
    let blue = Server::start(&spec, &[]);
    let config = forward_config(dir.path(), &blue, &green);
    let mut ferry = spawn_ferry(
        &[
            "reverse",
            "--config",
            config.to_str().expect("utf-8"),
            "--mode",
            "stream",
        ],
        &dir.path().join("ferry.log"),
    );
    let (mut g, mut b) = (green.client(), blue.client());
    let t0 = Instant::now();
    for i in 0.. {
        let probe = format!("probe:{i}");
        g.ok(&["SET", &probe, "x"]);
        std::thread::sleep(Duration::from_millis(200));
        if b.cmd_str(&["EXISTS", &probe]).as_int() == Some(1) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no probe reached blue:\n{}",
            ferry.log_text()
        );
    }
    // Drop the link and push its resume point out of a tiny backlog in the same pipeline,
    // before ferry can reconnect (it waits at least 100 ms).
    let value = vec![b'x'; 64 << 10];
    let mut cmds: Vec<Vec<Vec<u8>>> = vec![
        vec![
            b"CONFIG".to_vec(),
            b"SET".to_vec(),
            b"repl-backlog-size".to_vec(),
            b"16384".to_vec(),
        ],
        vec![
            b"CLIENT".to_vec(),
            b"KILL".to_vec(),
            b"TYPE".to_vec(),
            b"replica".to_vec(),
        ],
    ];
    for i in 0..16 {
        cmds.push(vec![
            b"SET".to_vec(),
            format!("fill:{i}").into_bytes(),
            value.clone(),
        ]);
    }
    g.pipeline_ok(&cmds);
    let code = ferry.wait_exit(Duration::from_secs(60));
    let log = ferry.log_text();
    assert!(!code.success(), "{log}");
    assert!(log.contains("--mode full"), "{log}");
}
