//! `ferry cutover` on real servers: a forward sync blue → green runs with writers on blue;
//! the cutover pauses blue, waits for green, stops the forward sync, starts the reverse
//! sync and unpauses blue; then writers run on green and blue must receive them. Both
//! sides are compared key by key by the harness, not by ferry. A cutover that cannot be
//! done (green without empty snapshots) changes nothing: blue is not paused and the
//! forward sync keeps running.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dataset::{fill, read_back};
use common::ferry::*;
use common::workload::{self, Workload};
use common::{assert_models_equal, installed_servers, Server, ServerSpec, TempDir};

fn find(name: &str) -> Option<ServerSpec> {
    let found = installed_servers().into_iter().find(|s| s.name == name);
    if found.is_none() && !common::servers::missing_servers_allowed() {
        panic!("{}", common::servers::install_hint(&[name]));
    }
    found
}

/// The forward config, with the forward sync's status address.
fn config(dir: &Path, blue: &Server, green: &Server, status: &str) -> PathBuf {
    let path = dir.join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n\n[status]\nlisten = \"{status}\"\n",
            blue.url(),
            green.url()
        ),
    )
    .expect("config written");
    path
}

fn wait_for_line(f: &mut Ferry, needle: &str, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&f.log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if let Ok(Some(code)) = f.child.try_wait() {
            panic!("ferry exited with {code} before `{needle}`:\n{text}");
        }
        assert!(
            t0.elapsed() < timeout,
            "no `{needle}` after {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn writes(server: &Server, compat: &ServerSpec, seed: u64) -> u64 {
    let w = Workload {
        ops: 2000,
        pause: Duration::from_millis(1),
        seed,
    };
    workload::run(
        &mut server.client(),
        compat,
        &w,
        &Arc::new(AtomicBool::new(false)),
    )
}

#[test]
fn cutover_switches_to_green_and_keeps_blue_for_rollback() {
    let (Some(blue_spec), Some(green_spec)) = (find("redis-7.2"), find("valkey-9.1")) else {
        return;
    };
    let dir = TempDir::new("cutover");
    let blue = Server::start(&blue_spec, &[]);
    let green = Server::start(&green_spec, &[]);
    fill(&mut blue.client(), &blue_spec);
    let forward_status = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &blue, &green, &forward_status);
    let cfg = cfg.to_str().expect("utf-8");

    let mut forward = spawn_ferry_at(
        &["sync", "--config", cfg],
        &dir.path().join("forward.log"),
        &forward_status,
    );
    let mut before = writes(&blue, &blue_spec, 21);
    wait_consistent(&mut forward, &blue, Duration::from_secs(60));
    // More writes once streaming, for the verify step's window.
    before += writes(&blue, &blue_spec, 23);
    wait_consistent(&mut forward, &blue, Duration::from_secs(60));

    let reverse_status = format!("127.0.0.1:{}", free_port());
    let mut cut = spawn_ferry_at(
        &["cutover", "--config", cfg],
        &dir.path().join("cutover.log"),
        &reverse_status,
    );
    wait_for_line(&mut cut, "ferry cutover done", Duration::from_secs(90));
    let log = std::fs::read_to_string(&cut.log).unwrap_or_default();
    // The stream's writes were compared (the keys of the last minutes in full, or every
    // key in outline when a flush made that list incomplete).
    assert!(log.contains("verify: blue and green are equal"), "{log}");
    let code = forward.wait_exit(Duration::from_secs(30));
    assert!(
        code.success(),
        "forward sync: {code}:\n{}",
        log_tail(&forward)
    );
    // Blue takes writes again (the pause is over).
    blue.client().ok(&["SET", "blue:after-cutover", "unpaused"]);
    blue.client().ok(&["DEL", "blue:after-cutover"]);

    let after = writes(&green, &blue_spec, 22);
    wait_consistent(&mut cut, &green, Duration::from_secs(60));
    stop_ferry(cut);

    let dbs = [0, 1, 2, 3, 5];
    let expected = comparable(
        read_back(&mut green.client(), &green_spec, &dbs),
        &blue_spec,
    );
    let actual = read_back(&mut blue.client(), &blue_spec, &dbs);
    assert_models_equal(&expected, &actual, 2_000);
    eprintln!(
        "cutover redis-7.2 -> valkey-9.1: {before} writes on blue before, {after} on green after; {} keys equal",
        expected.keys.len()
    );
}

/// blue and green with `k = v` on blue, and a forward sync blue → green consistent.
struct Setup {
    dir: TempDir,
    blue: Server,
    green: Server,
    cfg: String,
    forward: Ferry,
}

fn forward_sync(blue: &ServerSpec, green: &ServerSpec, label: &str) -> Setup {
    let dir = TempDir::new(label);
    let blue = Server::start(blue, &[]);
    let green = Server::start(green, &[]);
    blue.client().ok(&["SET", "k", "v"]);
    let forward_status = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &blue, &green, &forward_status)
        .to_str()
        .expect("utf-8")
        .to_string();
    let mut forward = spawn_ferry_at(
        &["sync", "--config", &cfg],
        &dir.path().join("forward.log"),
        &forward_status,
    );
    wait_consistent(&mut forward, &blue, Duration::from_secs(30));
    Setup {
        dir,
        blue,
        green,
        cfg,
        forward,
    }
}

#[test]
fn a_cutover_that_cannot_stream_back_changes_nothing() {
    let (Some(blue_spec), Some(green_spec)) = (find("redis-6.2"), find("redis-6.2")) else {
        return;
    };
    let Setup {
        dir,
        blue,
        green,
        cfg,
        mut forward,
    } = forward_sync(&blue_spec, &green_spec, "cutover-refused");
    let cfg = cfg.as_str();
    let mut cut = spawn_ferry_at(
        &["cutover", "--config", cfg, "--skip-verify"],
        &dir.path().join("cutover.log"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let code = cut.wait_exit(Duration::from_secs(30));
    let log = std::fs::read_to_string(&cut.log).unwrap_or_default();
    assert_eq!(code.code(), Some(1), "{log}");
    assert!(
        log.contains("rdb-filter-only") && log.contains("--mode full"),
        "{log}"
    );
    // Nothing changed: blue takes writes, the forward sync still carries them.
    blue.client().ok(&["SET", "k", "after"]);
    wait_consistent(&mut forward, &blue, Duration::from_secs(30));
    assert_eq!(
        green.client().cmd_str(&["GET", "k"]).into_bytes(),
        Some(b"after".to_vec())
    );
    stop_ferry(forward);
}

#[test]
fn a_difference_found_by_verify_aborts_unpauses_blue_and_keeps_the_forward_sync() {
    let (Some(blue_spec), Some(green_spec)) = (find("redis-7.4"), find("valkey-8.1")) else {
        return;
    };
    let Setup {
        dir,
        blue,
        green,
        cfg,
        mut forward,
    } = forward_sync(&blue_spec, &green_spec, "cutover-abort");
    let cfg = cfg.as_str();
    // A key the stream wrote lately, changed behind ferry's back on green: the verify step
    // (the keys of the last minutes, in full) must see it and stop the cutover.
    blue.client().ok(&["SET", "k", "from blue"]);
    wait_consistent(&mut forward, &blue, Duration::from_secs(30));
    green.client().ok(&["SET", "k", "tampered on green"]);
    let mut cut = spawn_ferry_at(
        &[
            "cutover",
            "--config",
            cfg,
            "--verify-rounds",
            "1",
            "--pause-timeout",
            "600",
        ],
        &dir.path().join("cutover.log"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let code = cut.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&cut.log).unwrap_or_default();
    assert_eq!(code.code(), Some(1), "{log}");
    assert!(
        log.contains("verifying the keys the forward sync wrote in the window")
            && log.contains("verify found differences")
            && log.contains("blue is unpaused"),
        "{log}"
    );
    assert!(
        log.contains("cutover step 2/7"),
        "blue was never paused:\n{log}"
    );
    // The report the error names is there and names the key.
    let report = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("ferry-cutover-verify-"))
        .unwrap_or_else(|| panic!("no verify report in {}:\n{log}", dir.path().display()));
    assert!(log.contains(&report.display().to_string()), "{log}");
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.contains("\"k\""), "{report}");
    // Blue takes writes (a pause left in place would outlast the client's reply timeout,
    // since the cutover asked for a 600 s one), and the forward sync still carries them.
    blue.client().ok(&["SET", "k", "after"]);
    wait_consistent(&mut forward, &blue, Duration::from_secs(30));
    assert_eq!(
        green.client().cmd_str(&["GET", "k"]).into_bytes(),
        Some(b"after".to_vec())
    );
    stop_ferry(forward);
}
