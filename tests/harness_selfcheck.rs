//! Proves the test harness itself against every installed server: what `fill` says it wrote
//! is what `read_back` finds, and `SAVE` writes an RDB file where `rdb_path` says.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use common::dataset::fill_with_coverage;
use common::servers::{install_hint, missing_servers_allowed, CATALOGUE};
use common::{assert_models_equal, read_back, require_any_servers, Server, ServerSpec};

/// Starts `spec`, fills it, reads it back, compares, saves. Returns a one-line report.
fn check_server(spec: &ServerSpec) -> String {
    let t0 = Instant::now();
    let server = Server::start(spec, &[]);
    let mut c = server.client();
    let (model, covered) = fill_with_coverage(&mut c, spec);
    let t_fill = t0.elapsed();
    let back = read_back(&mut c, spec, &[0, 1, 2, 5]);
    // PEXPIRETIME (7.0+) is exact; before it the expiry is PTTL + now, off by the read's time.
    let tolerance = if spec.has_pexpiretime() { 0 } else { 2_000 };
    assert_models_equal(&model, &back, tolerance);

    c.ok(&["SAVE"]);
    let rdb = std::fs::read(server.rdb_path())
        .unwrap_or_else(|e| panic!("{spec}: no RDB at {}: {e}", server.rdb_path().display()));
    assert!(
        rdb.starts_with(b"REDIS") || rdb.starts_with(b"VALKEY"),
        "{spec}: {} does not start with an RDB magic: {:?}",
        server.rdb_path().display(),
        common::escape(&rdb[..rdb.len().min(9)])
    );
    format!(
        "{spec}: {} in {:?} (fill {:?}), RDB {} bytes, magic {}; covers {}",
        model.summary(),
        t0.elapsed(),
        t_fill,
        rdb.len(),
        String::from_utf8_lossy(&rdb[..9]),
        covered.join(" ")
    )
}

#[test]
fn fill_reads_back_identically_on_every_installed_server() {
    let specs = require_any_servers();
    let t0 = Instant::now();
    // Two at a time: the machines this runs on have two cores.
    common::parallel::run_parallel(&specs, 2, |s| s.to_string(), check_server);
    eprintln!("{} servers checked in {:?}", specs.len(), t0.elapsed());
}

#[test]
fn every_catalogued_server_is_installed() {
    let installed: Vec<String> = common::installed_servers()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let missing: Vec<&str> = CATALOGUE
        .iter()
        .copied()
        .filter(|n| !installed.iter().any(|i| i == n))
        .collect();
    if missing.is_empty() {
        return;
    }
    if missing_servers_allowed() {
        eprintln!("SKIP: servers not installed: {missing:?} (FERRY_ALLOW_MISSING_SERVERS=1)");
        return;
    }
    panic!(
        "servers not installed: {missing:?}; {}",
        install_hint(&missing)
    );
}

/// The newest installed server (the one with the most features), or None to skip.
fn newest_server() -> Option<ServerSpec> {
    require_any_servers()
        .into_iter()
        .max_by_key(|s| (s.redis_compat(), s.has_hash_field_ttl(), s.version))
}

#[test]
fn comparison_reports_each_kind_of_change() {
    let Some(spec) = newest_server() else { return };
    let server = Server::start(&spec, &[]);
    let mut c = server.client();
    let model = common::fill(&mut c, &spec);
    let later = common::dataset::now_ms() + 3 * 3_600_000;
    let next_after_tenth = f64::from_bits(0.1f64.to_bits() + 1).to_string();
    let mut expected = vec![
        "db0 `str:short`: string of 11 bytes differs from the expected 11 bytes at offset 10",
        "db0 `list:large`: list element 1999 is \"x\"",
        "db0 `set:large`: missing (expected set)",
        "db2 `extra`: unexpected string key",
        "db0 `str:expire:hour`: expire",
        "db5 `str:short`: expire none, expected",
        "db0 `hash:large`: field \"field:7\" is \"changed\", expected \"v7\"",
        "db0 `zset:small`: score of \"tenth\" is 1.0000000000000002e-1",
    ];
    c.ok(&["SET", "str:short", "hello ferrY"]);
    c.ok(&["LSET", "list:large", "1999", "x"]);
    c.ok(&["DEL", "set:large"]);
    c.ok(&["PEXPIREAT", "str:expire:hour", &later.to_string()]);
    c.ok(&["HSET", "hash:large", "field:7", "changed"]);
    c.ok(&["ZADD", "zset:small", &next_after_tenth, "tenth"]);
    if spec.has_streams() {
        c.ok(&["XACK", "stream:big", "g1", "1700000000000-3"]);
        c.ok(&["XADD", "stream:empty", "7-7", "new", "entry"]);
        expected.push(
            "db0 `stream:big` group \"g1\": 1 pending entr(ies) missing, e.g. 1700000000000-3",
        );
        expected.push("db0 `stream:empty`: stream has 1 entries, expected 0");
        expected.push("db0 `stream:empty`: last id 7-7, expected 0-0");
        if spec.has_stream_counters() {
            expected.push("db0 `stream:empty`: entries-added Some(1), expected Some(0)");
        }
    }
    if spec.has_hash_field_ttl() {
        c.ok(&["HPERSIST", "hash:ttl:small", "FIELDS", "1", "a"]);
        expected.push("db0 `hash:ttl:small`: field \"a\" expire none, expected");
    }
    if spec.has_functions() {
        c.ok(&["FUNCTION", "FLUSH"]);
        expected.push("function library missing: #!lua name=ferrylib");
    }
    c.select(2);
    c.ok(&["SET", "extra", "1"]);
    c.select(5);
    c.ok(&["PERSIST", "str:short"]);
    c.select(0);

    let back = read_back(&mut c, &spec, &[0, 1, 2, 5]);
    let diffs = common::dataset::model_diffs(&model, &back, 0);
    let report = diffs.join("\n");
    for want in &expected {
        assert!(
            diffs.iter().any(|d| d.starts_with(want)),
            "{spec}: no difference reported starting with {want:?}; reported:\n{report}"
        );
    }
    assert_eq!(
        diffs.len(),
        expected.len(),
        "{spec}: unexpected extra differences:\n{report}"
    );
    let shown = catch_unwind(|| assert_models_equal(&model, &back, 0)).expect_err("models differ");
    let shown = shown.downcast_ref::<String>().expect("panic message");
    assert!(
        shown.contains(&format!("models differ in {} place(s)", expected.len())),
        "{shown}"
    );
}

#[test]
fn dropping_a_server_stops_the_real_process_and_removes_its_dir() {
    // redis-7.2 runs through a wrapper script that execs the server: the pid must be the server.
    let specs = require_any_servers();
    let Some(spec) = specs
        .iter()
        .find(|s| s.name == "redis-7.2")
        .or(specs.first())
    else {
        return;
    };
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();

    let server = Server::start(spec, &[]);
    let (pid, dir) = (server.pid(), server.dir().to_path_buf());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/PID/exe");
    let exe_name = exe
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    assert!(
        exe_name.contains("redis") || exe_name.contains("valkey"),
        "{spec}: pid {pid} is {}, not the server",
        exe.display()
    );
    assert!(dir.is_dir());
    drop(server);
    assert!(!alive(pid), "{spec}: pid {pid} still alive after drop");
    assert!(
        !dir.exists(),
        "{spec}: {} still exists after drop",
        dir.display()
    );

    // The same when the test panics while the server is running.
    let (tx, rx) = std::sync::mpsc::channel();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let server = Server::start(spec, &[]);
        tx.send((server.pid(), server.dir().to_path_buf())).unwrap();
        panic!("test failure while the server runs");
    }));
    assert!(result.is_err());
    let (pid, dir) = rx.recv().unwrap();
    assert!(!alive(pid), "{spec}: pid {pid} still alive after a panic");
    assert!(
        !dir.exists(),
        "{spec}: {} still exists after a panic",
        dir.display()
    );
}

#[test]
fn reply_parser_reads_resp2_and_folds_resp3() {
    use common::client::read_reply;
    use common::Reply::{Array, Bulk, Error, Int, Simple};
    let input: &[u8] = b"+OK\r\n-ERR bad\r\n:-42\r\n$-1\r\n$4\r\na\r\n\x00\r\n*-1\r\n\
        *2\r\n:1\r\n*1\r\n$0\r\n\r\n_\r\n#t\r\n,1.5\r\n(123456789012345678901\r\n\
        =8\r\ntxt:abcd\r\n%1\r\n+k\r\n:2\r\n~1\r\n:3\r\n|1\r\n+a\r\n+b\r\n:9\r\n!3\r\nbad\r\n";
    let want = vec![
        Simple(b"OK".to_vec()),
        Error("ERR bad".into()),
        Int(-42),
        Bulk(None),
        Bulk(Some(b"a\r\n\x00".to_vec())),
        Array(None),
        Array(Some(vec![
            Int(1),
            Array(Some(vec![Bulk(Some(Vec::new()))])),
        ])),
        Bulk(None),
        Int(1),
        Bulk(Some(b"1.5".to_vec())),
        Bulk(Some(b"123456789012345678901".to_vec())),
        Bulk(Some(b"abcd".to_vec())),
        Array(Some(vec![Simple(b"k".to_vec()), Int(2)])),
        Array(Some(vec![Int(3)])),
        Int(9),
        Error("bad".into()),
    ];
    let mut r = std::io::BufReader::new(input);
    for w in want {
        assert_eq!(read_reply(&mut r).unwrap(), w);
    }
    assert!(read_reply(&mut r).is_err(), "end of input is an error");
    let truncated: &[u8] = b"$5\r\nab";
    assert!(read_reply(&mut std::io::BufReader::new(truncated)).is_err());
}

/// Not run on its own: the body the watchdog test below runs in a child test process. It
/// starts a server, prints its pid and hangs as a test does that waits for a thread never
/// told to stop.
#[test]
#[ignore = "run by watchdog_fails_a_hung_test_and_kills_its_servers"]
fn hangs_on_purpose() {
    let Some(spec) = newest_server() else {
        return;
    };
    let server = Server::start(&spec, &[]);
    println!("SERVER_PID {}", server.pid());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A hung test fails its binary (exit 101, its name printed) within the limit, and takes
/// the servers it started with it.
#[test]
fn watchdog_fails_a_hung_test_and_kills_its_servers() {
    if newest_server().is_none() {
        return;
    }
    // The child exits without unwinding, so its server's directory stays: in here, which
    // goes when this test ends.
    let tmp = common::TempDir::new("watchdog-child");
    let t0 = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--ignored", "--exact", "hangs_on_purpose", "--nocapture"])
        .env("FERRY_TEST_TIMEOUT", "3")
        .env("TMPDIR", tmp.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the hanging test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(101), "{text}");
    assert!(
        text.contains("WATCHDOG: hangs_on_purpose ran over 3s"),
        "{text}"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(60), "{text}");
    let pid: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("SERVER_PID "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SERVER_PID line:\n{text}"));
    // Killed: gone, or a zombie waiting for a reaper (its parent, the child test process,
    // has exited).
    let t1 = Instant::now();
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'));
        if !running {
            break;
        }
        if t1.elapsed() > std::time::Duration::from_secs(10) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("server {pid} still ran 10 s after the watchdog fired: {state}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
