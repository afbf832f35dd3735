//! `ferry sync` end to end, on real servers: every installed version into itself and into
//! the next newer one, plus the downgrades operators roll back through. The source is
//! filled with every type and encoding, a workload writes during the snapshot and the
//! stream, and when ferry reports `consistent` at the source's final offset both servers
//! are compared key by key by the harness (type, value, expiry, db) — not by ferry.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dataset::{fill, read_back};
use common::ferry::*;
use common::proxy::{Mode, Proxy};
use common::workload::{self, Workload};
use common::{assert_models_equal, installed_servers, require_any_servers, Server, ServerSpec};

fn sync_pair(src: &ServerSpec, dst: &ServerSpec, diskless: bool) -> String {
    let t0 = Instant::now();
    let diskless_args: &[&str] = if diskless {
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ]
    } else {
        &["--repl-diskless-sync", "no"]
    };
    let source = Server::start(src, diskless_args);
    let target = Server::start(dst, &[]);
    let mut c = source.client();
    fill(&mut c, src);
    // One value over 64 MiB in every pair: it cannot go as one RESTORE (restore_max) and
    // must pass through ferry in pieces.
    c.ok_bin(&[b"SET", b"big:65mib", &noise(65 << 20, 5)]);

    // Writes run through the snapshot and into the stream.
    let stop = Arc::new(AtomicBool::new(false));
    let compat = older(src, dst).clone();
    let addr = source.addr();
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = common::Client::connect(addr);
        let w = Workload {
            ops: 3000,
            pause: Duration::from_millis(3),
            seed: 7,
        };
        workload::run(&mut c, &compat, &w, &stop2)
    });
    let mut ferry = start_ferry(&source, &target, &[]);
    let ops = writer.join().expect("workload thread");
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    let status = get_status(&ferry.status).unwrap_or_default();
    stop_ferry(ferry);
    if !diskless {
        // A disk-based transfer announces its size: /status shows it, and all of it was read.
        let snap = &status["snapshot"];
        assert!(
            snap["bytes_total"].as_u64().is_some(),
            "snapshot.bytes_total for a disk transfer: {snap}"
        );
        assert_eq!(snap["bytes_total"], snap["bytes_read"], "{snap}");
    }

    let dbs = [0, 1, 2, 3, 5];
    let expected = comparable(read_back(&mut c, src, &dbs), dst);
    let actual = read_back(&mut target.client(), dst, &dbs);
    // Sources before 7.0 replicate EXPIRE/SETEX as relative times, which the target
    // counts from when it applies them: the stream's lag (seconds on a loaded 2-core
    // machine) is added to those keys' expiry. From 7.0 on every expiry is absolute.
    let tolerance = if !src.is_7_0_plus() {
        10_000
    } else if src.has_pexpiretime() && dst.has_pexpiretime() {
        1_000
    } else {
        3_000
    };
    assert_models_equal(&expected, &actual, tolerance);
    format!(
        "{src} -> {dst} ({}): {} keys equal after {ops} concurrent writes, offset {}, {:.1} s",
        if diskless { "diskless" } else { "disk" },
        actual.keys.len(),
        status["stream"]["applied_offset"],
        t0.elapsed().as_secs_f64()
    )
}

fn find(name: &str) -> Option<ServerSpec> {
    installed_servers().into_iter().find(|s| s.name == name)
}

/// The pairs: each version into itself and into the next newer installed one (ordered
/// by the Redis features they have), plus the four downgrades.
fn pairs() -> Vec<(ServerSpec, ServerSpec)> {
    let mut specs = require_any_servers();
    specs.sort_by_key(|s| (s.redis_compat(), s.is_valkey(), s.version));
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        out.push((s.clone(), s.clone()));
        if let Some(next) = specs.get(i + 1) {
            out.push((s.clone(), next.clone()));
        }
    }
    for (a, b) in [
        ("valkey-9.1", "redis-6.2"),
        ("redis-8.2", "valkey-8.1"),
        ("redis-7.4", "redis-5.0"),
        ("redis-7.0", "redis-3.2"),
    ] {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            out.push((a, b));
        }
    }
    out
}

/// The pair matrix keeps both cores busy, and the 64 MiB test moves a lot of bytes; the
/// spool test measures whether ferry drains a source faster than its output-buffer limit,
/// and the link-cut test counts bytes through a proxy: the tests of this file run one at
/// a time.
static BUSY: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn syncs_every_version_pair_with_writes_running() {
    let _alone = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    let pairs: Vec<(usize, (ServerSpec, ServerSpec))> = pairs().into_iter().enumerate().collect();
    common::parallel::run_parallel(
        &pairs,
        2,
        |(_, (a, b))| format!("{a} -> {b}"),
        |(i, (a, b))| sync_pair(a, b, i % 2 == 0),
    );
}

fn info_u64(server: &Server, section: &str, field: &str) -> u64 {
    server
        .client()
        .info(section)
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Deterministic bytes that LZF cannot compress.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn carries_values_over_64_mib_in_the_snapshot_and_the_stream() {
    let _alone = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    let (Some(src), Some(dst)) = (
        common::require_server("redis-7.2"),
        common::require_server("valkey-9.1"),
    ) else {
        return;
    };
    let source = Server::start(&src, &[]);
    let target = Server::start(&dst, &[]);
    let mut c = source.client();
    let big = 70 << 20;
    // One incompressible (plain bytes in the RDB) and one repetitive (LZF-compressed).
    c.ok_bin(&[b"SET", b"big:noise", &noise(big, 1)]);
    c.ok_bin(&[b"SET", b"big:pattern", &b"ferry!".repeat(big / 6)]);
    c.ok_bin(&[b"RPUSH", b"big:list", b"a", &noise(3 << 20, 2), b"z"]);
    let mut ferry = start_ferry(&source, &target, &[]);
    wait_consistent(&mut ferry, &source, Duration::from_secs(120));
    // And one through the replication stream.
    c.ok_bin(&[b"SET", b"big:stream", &noise(big, 3)]);
    wait_consistent(&mut ferry, &source, Duration::from_secs(120));
    stop_ferry(ferry);
    let expected = read_back(&mut c, &src, &[0]);
    let actual = read_back(&mut target.client(), &dst, &[0]);
    assert_models_equal(&expected, &actual, 1_000);
}

#[test]
fn spools_while_the_target_is_paused_and_keeps_the_link() {
    let Some(spec) = common::require_server("redis-7.2") else {
        return;
    };
    let _alone = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    let source = Server::start(
        &spec,
        &["--client-output-buffer-limit", "replica 1mb 512kb 5"],
    );
    let target = Server::start(&spec, &[]);
    let mut c = source.client();
    fill(&mut c, &spec);
    let mut ferry = start_ferry(&source, &target, &[]);
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));

    // The target stops answering for 8 s while ~24 MB of writes arrive at the source (in
    // pipelined batches, so they land early in the pause even on a loaded machine): far
    // more than the source may buffer for its replica (1 MB) in total. Watch the spool
    // from the side for the whole pause.
    let watching = Arc::new(AtomicBool::new(true));
    let (w2, status_addr) = (watching.clone(), ferry.status.clone());
    let watcher = std::thread::spawn(move || {
        let mut max = 0u64;
        while w2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(s) = get_status(&status_addr) {
                max = max.max(s["spool_bytes"].as_u64().unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        max
    });
    let pause = Duration::from_secs(10);
    target
        .client()
        .ok(&["CLIENT", "PAUSE", &pause.as_millis().to_string()]);
    let value = noise(12 * 1024, 9);
    let t0 = Instant::now();
    // Batches of 20 (240 KB) with short gaps: each burst stays well under the source's
    // 1 MB hard limit, which no replica could beat if one burst were larger (a scheduling
    // hiccup of a few ms on a loaded machine would do); in total far more than the limit.
    for batch in 0..80u32 {
        let cmds: Vec<Vec<Vec<u8>>> = (0..20u32)
            .map(|i| {
                vec![
                    b"SET".to_vec(),
                    format!("paused:{}", batch * 20 + i).into_bytes(),
                    value.clone(),
                ]
            })
            .collect();
        c.pipeline_ok(&cmds);
        std::thread::sleep(Duration::from_millis(30));
    }
    let wrote_in = t0.elapsed();
    assert!(
        wrote_in < pause / 2,
        "the writes should land early in the pause (took {wrote_in:?})"
    );
    std::thread::sleep(pause.saturating_sub(t0.elapsed()));
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let max_spool = watcher.join().expect("watcher");
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    let ferry_log = ferry.log_text();
    stop_ferry(ferry);

    assert!(
        max_spool > 1 << 20,
        "ferry kept reading the source: {max_spool} bytes spooled at the peak"
    );
    let log = std::fs::read_to_string(source.log_path()).unwrap_or_default();
    assert_eq!(
        info_u64(&source, "stats", "sync_full"),
        1,
        "the source never had to start over\nsource log:\n{log}\nferry log:\n{ferry_log}"
    );
    assert!(
        !log.contains("scheduled to be closed ASAP for overcoming of output buffer limits"),
        "{log}"
    );
    let dbs = [0, 1, 2, 5];
    assert_models_equal(
        &read_back(&mut c, &spec, &dbs),
        &read_back(&mut target.client(), &spec, &dbs),
        1_000,
    );
}

/// A source filled with every type, an empty target of the same version, and a client of
/// the source.
fn filled_source_and_empty_target(spec: &ServerSpec) -> (Server, Server, common::Client) {
    // A backlog that outlasts what the writers put out while ferry is down: with the 1 MiB
    // default, a fast writer overruns it and the source answers a resume with a full sync,
    // which is right but not what these tests are about.
    let source = Server::start(spec, &["--repl-backlog-size", "64mb"]);
    let target = Server::start(spec, &[]);
    let mut c = source.client();
    fill(&mut c, spec);
    (source, target, c)
}

#[test]
fn resumes_through_a_cut_link_without_loss() {
    let _alone = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = common::require_server("redis-7.0") else {
        return;
    };
    let (source, target, mut c) = filled_source_and_empty_target(&spec);
    let proxy = Proxy::start(source.addr(), Mode::Plain);
    let mut ferry = start_ferry_url(&proxy.url(), &source, &target, &[]);
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));

    // Armed before the writes start: the cut falls 777 bytes into the stream they make,
    // most likely in the middle of a command.
    proxy.cut_after(777);
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, stop2, spec2) = (source.addr(), stop.clone(), spec.clone());
    let writer = std::thread::spawn(move || {
        let mut c = common::Client::connect(addr);
        workload::run(
            &mut c,
            &spec2,
            &Workload {
                ops: 4000,
                pause: Duration::from_millis(2),
                seed: 11,
            },
            &stop2,
        )
    });
    writer.join().expect("workload");
    // After a diskless snapshot the source may hold the stream until it has reaped its
    // fork and seen our ACK: the bytes (and so the cut) can come after the writes ended.
    let t0 = Instant::now();
    while !proxy.cut_done() && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        proxy.cut_done(),
        "the cut happened: {} bytes of budget left, {} connections",
        proxy.budget_left(),
        proxy.connections()
    );
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    let status = get_status(&ferry.status).unwrap_or_default();
    stop_ferry(ferry);

    assert!(status["reconnects"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert!(
        info_u64(&source, "stats", "sync_partial_ok") >= 1,
        "resumed with +CONTINUE"
    );
    assert_eq!(
        info_u64(&source, "stats", "sync_full"),
        1,
        "no second full sync"
    );
    let dbs = [0, 1, 2, 3, 5];
    assert_models_equal(
        &read_back(&mut c, &spec, &dbs),
        &read_back(&mut target.client(), &spec, &dbs),
        1_000,
    );
}

/// A stop with SIGTERM saves a checkpoint (`--checkpoint FILE`). The next start resumes the
/// stream from it: `+CONTINUE`, no second full sync. What the source wrote while ferry was
/// stopped arrives then, including counters and lists (applied twice they would differ) and
/// commands in the db the stream was in at the stop: the source does not select it again.
/// A ferry that is killed leaves no checkpoint file; its next start resumes from the
/// failover markers it keeps on the target when a checkpoint is configured.
#[test]
fn resumes_from_a_checkpoint_after_a_clean_stop() {
    let _alone = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = common::require_server("redis-7.0") else {
        return;
    };
    let (source, target, mut c) = filled_source_and_empty_target(&spec);
    let cp = source.dir().join("checkpoint");
    let cps = cp.to_str().expect("utf-8 path").to_string();
    let (src_url, dst_url) = (source.url(), target.url());
    let args = [
        "sync",
        "--source",
        &src_url,
        "--target",
        &dst_url,
        "--checkpoint",
        &cps,
    ];
    let counters = |c: &mut common::Client, n: usize| {
        // Ends in db 3: the stream's db at the stop.
        for _ in 0..n {
            c.select(0);
            c.cmd_str(&["INCR", "cp:counter"]);
            c.cmd_str(&["RPUSH", "cp:list", "x"]);
            c.select(3);
            c.cmd_str(&["INCRBY", "cp:counter3", "7"]);
        }
    };

    let mut ferry = spawn_ferry(&args, &source.dir().join("ferry-1.log"));
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    counters(&mut c, 50);
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    stop_ferry(ferry);
    let saved = std::fs::read_to_string(&cp).expect("a clean stop saves a checkpoint");
    assert!(saved.contains("db = 3"), "{saved}");

    // Written while ferry is stopped; the first commands need no SELECT on the source.
    c.select(3);
    c.cmd_str(&["INCRBY", "cp:counter3", "100"]);
    counters(&mut c, 30);
    let stop = Arc::new(AtomicBool::new(false));
    workload::run(
        &mut c,
        &spec,
        &Workload {
            ops: 1000,
            pause: Duration::ZERO,
            seed: 21,
        },
        &stop,
    );
    let mut ferry = spawn_ferry(&args, &source.dir().join("ferry-2.log"));
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    let log = ferry.log_text();
    assert!(!cp.exists(), "a start takes the checkpoint");
    assert!(log.contains("partial resync accepted"), "{log}");
    assert_eq!(
        info_u64(&source, "stats", "sync_full"),
        1,
        "no second full sync"
    );
    // /status names the history it continues (it was null after a resume).
    let replid = c.info("replication").get("master_replid").cloned();
    let status = get_status(&ferry.status).unwrap_or_default();
    assert_eq!(
        status["replid"].as_str().map(str::to_string),
        replid,
        "{status}"
    );
    counters(&mut c, 10);
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    let dbs = [0, 1, 2, 3, 5];
    // While it runs, the target also holds ferry's failover marker (a key per db written).
    let mut on_target = read_back(&mut target.client(), &spec, &dbs);
    let markers = on_target.keys.len();
    on_target
        .keys
        .retain(|(_, k), _| k.as_slice() != b"ferry:applied");
    assert!(
        markers > on_target.keys.len(),
        "a failover marker while running"
    );
    assert_models_equal(&read_back(&mut c, &spec, &dbs), &on_target, 1_000);

    // Killed while counters and lists are being written: no checkpoint file, but the
    // target's failover marker says how far it is, and the next start resumes from there
    // (still no second full sync), each command applied once.
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, stop2) = (source.addr(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut c = common::Client::connect(addr);
        let mut n = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            c.select(0);
            c.cmd_str(&["INCR", "cp:counter"]);
            c.cmd_str(&["RPUSH", "cp:list", "y"]);
            c.select(3);
            c.cmd_str(&["INCRBY", "cp:counter3", "7"]);
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(500));
    ferry.signal(9);
    ferry.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().expect("writer");
    assert!(!cp.exists(), "a killed ferry leaves no checkpoint");
    counters(&mut c, 5);
    let mut ferry = spawn_ferry(&args, &source.dir().join("ferry-3.log"));
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    let log = ferry.log_text();
    stop_ferry(ferry);
    assert!(log.contains("did not stop cleanly"), "{log}");
    assert_eq!(
        info_u64(&source, "stats", "sync_full"),
        1,
        "resumed from the target's marker after the kill ({rounds} rounds written around it)\n{log}"
    );
    assert_models_equal(
        &read_back(&mut c, &spec, &dbs),
        &read_back(&mut target.client(), &spec, &dbs),
        1_000,
    );
    let mut t = target.client();
    for db in 0..16 {
        t.select(db);
        assert!(
            t.cmd_str(&["GET", "ferry:applied"]).is_nil(),
            "markers deleted at the stop (db {db})"
        );
    }
}

/// `[sync] uncompressed_snapshot = true`: a diskless source writes ferry's snapshot without
/// LZF (a compressible dataset arrives many times larger than with the source's default),
/// and its `rdbcompression` is `yes` again afterwards. Without the option the same data
/// comes compressed (so the first check can fail). A source that replicates through its
/// dump file is left alone: that file stays compressed.
#[test]
fn an_uncompressed_snapshot_is_asked_for_and_the_setting_put_back() {
    let Some(spec) = common::require_server("redis-7.2") else {
        return;
    };
    let source = Server::start(
        &spec,
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let mut c = source.client();
    c.set_many((0..3000).map(|i| (format!("text:{i}"), format!("{i:06}").repeat(400))));
    let raw: u64 = 3000 * 2400;
    let config = source.dir().join("uncompressed.toml");
    std::fs::write(&config, "[sync]\nuncompressed_snapshot = true\n").expect("config");
    // (asked for uncompressed, the source diskless)
    for (ask, diskless) in [(false, true), (true, true), (true, false)] {
        if !diskless {
            c.ok(&["CONFIG", "SET", "repl-diskless-sync", "no"]);
        }
        let uncompressed = ask && diskless;
        let target = Server::start(&spec, &[]);
        let extra: Vec<&str> = if ask {
            vec!["--config", config.to_str().expect("utf-8")]
        } else {
            vec![]
        };
        let mut ferry = start_ferry(&source, &target, &extra);
        wait_consistent(&mut ferry, &source, Duration::from_secs(60));
        let status = get_status(&ferry.status).unwrap_or_default();
        let log = ferry.log_text();
        stop_ferry(ferry);
        let total = status["snapshot"]["bytes_read"].as_u64().unwrap_or(0);
        if !diskless {
            // A disk transfer announces its size: shown even when the snapshot took less
            // than a status tick (it was null here before).
            assert_eq!(status["snapshot"]["bytes_total"], total, "{status}");
        }
        if ask && !diskless {
            assert!(log.contains("must stay compressed"), "{log}");
        }
        if uncompressed {
            assert!(
                total > raw,
                "an uncompressed snapshot: {total} bytes: {status}"
            );
        } else {
            assert!(
                total > 0 && total < raw / 4,
                "a compressed snapshot: {total} bytes: {status}"
            );
        }
        let setting = c.cmd_str(&["CONFIG", "GET", "rdbcompression"]);
        assert_eq!(
            setting
                .as_array()
                .and_then(|a| a.get(1))
                .and_then(|v| v.as_text()),
            Some("yes".to_string()),
            "the source's setting is back"
        );
        let expected = read_back(&mut c, &spec, &[0]);
        let actual = read_back(&mut target.client(), &spec, &[0]);
        assert_models_equal(&expected, &actual, 1_000);
    }
}

/// A stop while ferry waits for the `PSYNC` reply (the source delays its diskless fork by
/// 3 s): the source's `rdbcompression`, set to `no` for ferry's snapshot, is `yes` again
/// after ferry exits. (The first handshake runs to its reply before the stop is seen; a
/// reconnect's handshake abandoned by a stop puts the setting back from a guard's drop.)
#[test]
fn a_stop_before_the_fork_puts_the_compression_setting_back() {
    let Some(spec) = common::require_server("redis-7.2") else {
        return;
    };
    let source = Server::start(
        &spec,
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "3",
        ],
    );
    let target = Server::start(&spec, &[]);
    let mut c = source.client();
    c.ok(&["SET", "k", "v"]);
    let config = source.dir().join("uncompressed.toml");
    std::fs::write(&config, "[sync]\nuncompressed_snapshot = true\n").expect("config");
    let ferry = start_ferry(
        &source,
        &target,
        &["--config", config.to_str().expect("utf-8")],
    );
    let setting = |c: &mut common::Client| {
        c.cmd_str(&["CONFIG", "GET", "rdbcompression"])
            .as_array()
            .and_then(|a| a.get(1))
            .and_then(|v| v.as_text())
    };
    let t0 = Instant::now();
    while setting(&mut c).as_deref() != Some("no") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "ferry never turned compression off"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_ferry(ferry);
    assert_eq!(
        setting(&mut c).as_deref(),
        Some("yes"),
        "put back at the stop"
    );
}
