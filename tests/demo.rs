//! `scripts/demo.sh` end to end (with the ferry built for the tests: FERRY_BIN), and the
//! comparison it relies on, `scripts/compare.py`, proven to see differences.

mod common;

use std::path::Path;
use std::process::Command;

use common::{require_server, Server};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python_ok() -> bool {
    let ok = Command::new("python3").arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIP: python3 is not installed");
    }
    ok
}

#[test]
fn demo_script_runs_end_to_end_and_verifies_green() {
    // The demo's default pair; scripts/servers.sh (which the demo runs) is then a no-op.
    if require_server("redis-6.2").is_none() || require_server("valkey-9.1").is_none() {
        return;
    }
    if !python_ok() {
        return;
    }
    let out = Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .env("FERRY_BIN", env!("CARGO_BIN_EXE_ferry"))
        .env("FERRY_SERVERS", common::servers::cache_dir())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo.sh failed:\n{text}");
    for want in [
        "all equal (type, value, expiry)",
        "ferry exited 0",
        "snapshot applied: ",
        "final applied offset",
        "/metrics ferry_lag_seconds",
    ] {
        assert!(
            text.contains(want),
            "no `{want}` in the demo's output:\n{text}"
        );
    }
    assert!(!text.contains("DIFF"), "{text}");
}

#[test]
fn compare_script_sees_every_kind_of_difference() {
    let Some(spec) = require_server("valkey-8.1").or_else(|| require_server("redis-7.2")) else {
        return;
    };
    if !python_ok() {
        return;
    }
    let a = Server::start(&spec, &[]);
    let b = Server::start(&spec, &[]);
    let compare = |extra: &[&str]| {
        let out = Command::new("python3")
            .arg(root().join("scripts/compare.py"))
            .args(extra)
            .arg(format!("127.0.0.1:{}", a.port()))
            .arg(format!("127.0.0.1:{}", b.port()))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (mut ca, mut cb) = (a.client(), b.client());
    for c in [&mut ca, &mut cb] {
        c.ok(&["SET", "s", "1"]);
        c.ok(&["RPUSH", "l", "a", "b"]);
        c.ok(&["ZADD", "z", "0.1", "m"]);
        c.ok(&["HSET", "h", "f", "v"]);
        c.ok(&["SADD", "set", "x", "y"]);
        c.ok(&["SELECT", "3"]);
        c.ok(&["SET", "in-db3", "v"]);
        c.ok(&["SELECT", "0"]);
    }
    assert_eq!(compare(&[]).0, Some(0), "{}", compare(&[]).1);

    let differ = |what: &str,
                  cmds_a: &[&[&str]],
                  cmds_b: &[&[&str]],
                  ca: &mut common::Client,
                  cb: &mut common::Client| {
        for c in cmds_a {
            ca.ok(c);
        }
        for c in cmds_b {
            cb.ok(c);
        }
        let (code, out) = compare(&[]);
        assert_eq!(code, Some(1), "{what} not seen:\n{out}");
        out
    };
    let out = differ(
        "a changed value",
        &[&["RPUSH", "l", "c"]],
        &[],
        &mut ca,
        &mut cb,
    );
    assert!(out.contains("'l'") || out.contains("b'l'"), "{out}");
    cb.ok(&["RPUSH", "l", "c"]);
    let out = differ(
        "a missing key",
        &[&["SET", "only-a", "1"]],
        &[],
        &mut ca,
        &mut cb,
    );
    assert!(out.contains("missing on the target"), "{out}");
    ca.ok(&["DEL", "only-a"]);
    let out = differ(
        "a type",
        &[&["DEL", "s"], &["SADD", "s", "1"]],
        &[],
        &mut ca,
        &mut cb,
    );
    assert!(out.contains("type set on the source, string"), "{out}");
    ca.ok(&["DEL", "s"]);
    ca.ok(&["SET", "s", "1"]);
    let out = differ(
        "an expiry",
        &[&["EXPIRE", "s", "1000"]],
        &[],
        &mut ca,
        &mut cb,
    );
    assert!(out.contains("expiry"), "{out}");
    cb.ok(&["EXPIRE", "s", "1000"]);
    let out = differ(
        "a key in another db",
        &[&["SELECT", "3"], &["SET", "in-db3", "w"], &["SELECT", "0"]],
        &[],
        &mut ca,
        &mut cb,
    );
    assert!(out.contains("db3"), "{out}");
    // Left out on purpose: equal again.
    assert_eq!(compare(&["--exclude", "in-db3"]).0, Some(0));
}
