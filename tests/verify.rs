//! `ferry verify` against real servers: pairs filled identically by the harness (the
//! dataset of every type and encoding, copied with the harness's own DUMP/RESTORE), then
//! exact, planted differences. The test reads ferry's JSON report and asserts it names
//! exactly the planted keys and kinds, nothing else.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::parallel::run_parallel;
use common::{fill, require_server, Client, Reply, Server, ServerSpec, TempDir};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// The outcome of one `ferry verify` run.
struct Run {
    code: i32,
    report: serde_json::Value,
    /// The command, its status and what it printed, for failure messages.
    output: String,
    /// Only what ferry printed (stdout and stderr).
    printed: String,
}

impl Run {
    /// (db, key, kind) of every reported difference.
    fn found(&self) -> BTreeSet<(u64, String, String)> {
        self.report["differences"]
            .as_array()
            .unwrap_or_else(|| panic!("report without differences:\n{}", self.output))
            .iter()
            .map(|d| {
                (
                    d["db"].as_u64().expect("db"),
                    d["key"].as_str().expect("key").to_string(),
                    d["kind"].as_str().expect("kind").to_string(),
                )
            })
            .collect()
    }

    /// The detail of the difference of `key` of kind `kind`.
    fn detail(&self, key: &str, kind: &str) -> String {
        self.report["differences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["key"] == key && d["kind"] == kind)
            .and_then(|d| d["detail"].as_str())
            .unwrap_or_else(|| panic!("no {kind} difference for {key}:\n{}", self.output))
            .to_string()
    }
}

fn verify(source: &str, target: &str, extra: &[&str]) -> Run {
    let dir = TempDir::new("verify-report");
    let report = dir.path().join("report.json");
    let out = Command::new(FERRY)
        .args(["verify", "--source", source, "--target", target])
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .expect("run ferry verify");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let output = format!(
        "ferry verify {source} {target} {extra:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_report(&report).unwrap_or(serde_json::Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        output,
        printed,
    }
}

fn read_report(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// Copies every key of the client's current db with DUMP + PTTL → RESTORE … REPLACE, the
/// harness's own copy (not ferry's). `route` picks the target connection for a key.
fn copy_db(from: &mut Client, route: &mut dyn FnMut(&[u8]) -> usize, to: &mut [Client]) {
    let keys: Vec<Vec<u8>> = common::dataset::scan_keys(from).into_iter().collect();
    for chunk in keys.chunks(100) {
        let mut reads = Vec::new();
        for k in chunk {
            reads.push(args(&[b"DUMP", k]));
            reads.push(args(&[b"PTTL", k]));
        }
        let replies = from.pipeline_ok(&reads);
        for (k, pair) in chunk.iter().zip(replies.chunks(2)) {
            let Some(payload) = pair[0].as_bytes() else {
                continue; // expired meanwhile
            };
            let ttl = pair[1].as_int().filter(|&t| t > 0).unwrap_or(0).to_string();
            to[route(k)].ok_bin(&[b"RESTORE", k, ttl.as_bytes(), payload, b"REPLACE"]);
        }
    }
}

/// Copies dbs `dbs` of a standalone server to another.
fn copy_standalone(from: &Server, to: &Server, dbs: &[u32]) {
    let (mut f, mut t) = (from.client(), [to.client()]);
    for &db in dbs {
        f.select(db);
        t[0].select(db);
        copy_db(&mut f, &mut |_| 0, &mut t);
    }
}

/// The keys the plants start from, written to the source before the copy.
fn base_keys(c: &mut dyn FnMut(&[&[u8]]), spec: &ServerSpec, with_moved: bool, field_ttls: bool) {
    if field_ttls {
        // A small hash (one HSCAN call) and a big one (the chunked path), a TTL on a field.
        c(&[b"HSET", b"v:fttl", b"f1", b"a", b"f2", b"b"]);
        c(&[b"HPEXPIRE", b"v:fttl", b"3600000", b"FIELDS", b"1", b"f1"]);
        let mut a = args(&[b"HSET", b"v:bigfttl"]);
        for i in 0..300 {
            a.push(format!("f{i}").into_bytes());
            a.push(b"v".to_vec());
        }
        c(&a.iter().map(Vec::as_slice).collect::<Vec<_>>());
        c(&[
            b"HPEXPIRE",
            b"v:bigfttl",
            b"3600000",
            b"FIELDS",
            b"2",
            b"f7",
            b"f250",
        ]);
    }
    c(&[b"SET", b"v:missing", b"here"]);
    c(&[b"SET", b"v:type", b"a string"]);
    for start in (0..3000).step_by(500) {
        let mut a: Vec<Vec<u8>> = args(&[b"RPUSH", b"v:list"]);
        a.extend((start..start + 500).map(|i| format!("element-{i}").into_bytes()));
        c(&a.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
    let mut a = args(&[b"RPUSH", b"v:trunc"]);
    a.extend((0..100).map(|i| format!("t{i}").into_bytes()));
    c(&a.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let mut a = args(&[b"HMSET", b"v:hash", b"email", b"a@example.com"]);
    for i in 0..2000 {
        a.push(format!("field-{i}").into_bytes());
        a.push(format!("value-{i}").into_bytes());
    }
    c(&a.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let mut a = args(&[b"ZADD", b"v:zset", b"0.123456789012345", b"m"]);
    for i in 0..200 {
        a.push(format!("{}", f64::from(i) * 1.1).into_bytes());
        a.push(format!("member-{i}").into_bytes());
    }
    c(&a.iter().map(Vec::as_slice).collect::<Vec<_>>());
    c(&[b"SET", b"v:ttl", b"x", b"PX", b"3600000"]);
    if with_moved {
        c(&[b"SET", b"v:moved", b"to db 1"]);
    }
    if spec.has_streams() {
        c(&[b"XADD", b"v:stream", b"1-1", b"f", b"1"]);
        c(&[b"XADD", b"v:stream", b"2-1", b"f", b"2"]);
        c(&[b"XGROUP", b"CREATE", b"v:stream", b"g1", b"0"]);
        c(&[b"XGROUP", b"CREATE", b"v:stream", b"g2", b"0"]);
        c(&[
            b"XREADGROUP",
            b"GROUP",
            b"g1",
            b"c1",
            b"COUNT",
            b"1",
            b"STREAMS",
            b"v:stream",
            b">",
        ]);
    }
}

/// The planted differences, applied to the target; returns what verify must report in
/// full mode.
fn plant(
    c: &mut dyn FnMut(&[&[u8]]),
    spec: &ServerSpec,
    with_moved: bool,
    field_ttls: bool,
) -> Vec<(u64, &'static str, &'static str)> {
    c(&[b"DEL", b"v:missing"]);
    c(&[b"SET", b"v:extra", b"only here"]);
    c(&[b"DEL", b"v:type"]);
    c(&[b"RPUSH", b"v:type", b"now a list"]);
    c(&[b"LSET", b"v:list", b"41", b"changed"]);
    c(&[b"LTRIM", b"v:trunc", b"0", b"59"]);
    c(&[b"HSET", b"v:hash", b"email", b"b@example.com"]);
    // The 15th significant digit.
    c(&[b"ZADD", b"v:zset", b"0.123456789012346", b"m"]);
    c(&[b"PEXPIRE", b"v:ttl", b"7200000"]);
    let mut want = vec![
        (0, "v:missing", "missing"),
        (0, "v:extra", "extra"),
        (0, "v:type", "type"),
        (0, "v:list", "value"),
        (0, "v:trunc", "length"),
        (0, "v:hash", "value"),
        (0, "v:zset", "value"),
        (0, "v:ttl", "expire"),
    ];
    if with_moved {
        c(&[b"MOVE", b"v:moved", b"1"]);
        want.push((0, "v:moved", "missing"));
        want.push((1, "v:moved", "extra"));
    }
    if spec.has_streams() {
        c(&[b"XGROUP", b"DESTROY", b"v:stream", b"g2"]);
        want.push((0, "v:stream", "value"));
    }
    if field_ttls {
        c(&[b"HPEXPIRE", b"v:fttl", b"7200000", b"FIELDS", b"1", b"f1"]);
        c(&[b"HPERSIST", b"v:bigfttl", b"FIELDS", b"1", b"f250"]);
        want.push((0, "v:fttl", "expire"));
        want.push((0, "v:bigfttl", "expire"));
    }
    want
}

fn set_of(v: &[(u64, &str, &str)]) -> BTreeSet<(u64, String, String)> {
    v.iter()
        .map(|(db, k, kind)| (*db, k.to_string(), kind.to_string()))
        .collect()
}

fn ok_on(c: &mut Client) -> impl FnMut(&[&[u8]]) + '_ {
    move |a: &[&[u8]]| {
        c.ok_bin(a);
    }
}

/// Checks the details name the first differing element.
fn check_details(run: &Run, streams: bool) {
    let list = run.detail("v:list", "value");
    assert!(list.contains("index 41"), "{list}");
    let trunc = run.detail("v:trunc", "length");
    assert!(
        trunc.contains("100 vs 60") && trunc.contains("index 60"),
        "{trunc}"
    );
    let hash = run.detail("v:hash", "value");
    assert!(hash.contains("\"email\""), "{hash}");
    let zset = run.detail("v:zset", "value");
    assert!(zset.contains("\"m\""), "{zset}");
    if streams {
        let s = run.detail("v:stream", "value");
        assert!(s.contains("group \"g2\" only on the source"), "{s}");
    }
}

/// One pair: identical copy → exit 0; planted → exactly the plants, in every mode.
fn planted_case(src_spec: &ServerSpec, tgt_spec: &ServerSpec) -> String {
    let src = Server::start(src_spec, &[]);
    let tgt = Server::start(tgt_spec, &[]);
    let mut c = src.client();
    fill(&mut c, src_spec);
    let field_ttls = src_spec.has_hash_field_ttl() && tgt_spec.has_hash_field_ttl();
    base_keys(&mut ok_on(&mut c), src_spec, true, field_ttls);
    copy_standalone(&src, &tgt, &[0, 1, 5]);
    let (s, t) = (src.url(), tgt.url());

    let same = verify(&s, &t, &["--rounds", "1"]);
    assert_eq!(
        same.code, 0,
        "identical sides must be equal:\n{}",
        same.output
    );
    assert_eq!(same.report["result"], "equal", "{}", same.output);
    assert_eq!(same.found(), BTreeSet::new());

    let mut tc = tgt.client();
    let want = plant(&mut ok_on(&mut tc), src_spec, true, field_ttls);
    let streams = src_spec.has_streams();

    let full = verify(&s, &t, &["--rounds", "1"]);
    assert_eq!(full.code, 1, "{}", full.output);
    assert_eq!(full.found(), set_of(&want), "{}", full.output);
    check_details(&full, streams);
    if field_ttls {
        let d = full.detail("v:bigfttl", "expire");
        assert!(d.contains("\"f250\"") && d.contains("target none"), "{d}");
    }

    // outline: type, length, expiry; keys: existence.
    let outline = verify(&s, &t, &["--rounds", "1", "--mode", "outline"]);
    let want_outline: Vec<_> = want
        .iter()
        .copied()
        .filter(|(_, k, _)| {
            !matches!(
                *k,
                "v:list" | "v:hash" | "v:zset" | "v:stream" | "v:fttl" | "v:bigfttl"
            )
        })
        .collect();
    assert_eq!(outline.found(), set_of(&want_outline), "{}", outline.output);
    let keys = verify(&s, &t, &["--rounds", "1", "--mode", "keys"]);
    let want_keys: Vec<_> = want
        .iter()
        .copied()
        .filter(|(_, _, kind)| matches!(*kind, "missing" | "extra"))
        .collect();
    assert_eq!(keys.found(), set_of(&want_keys), "{}", keys.output);

    // --db and --key-pattern narrow the comparison.
    let db1 = verify(&s, &t, &["--rounds", "1", "--db", "1"]);
    assert_eq!(
        db1.found(),
        set_of(&[(1, "v:moved", "extra")]),
        "{}",
        db1.output
    );
    let pat = verify(&s, &t, &["--rounds", "1", "--key-pattern", "v:t*"]);
    assert_eq!(
        pat.found(),
        set_of(&[
            (0, "v:type", "type"),
            (0, "v:trunc", "length"),
            (0, "v:ttl", "expire")
        ]),
        "{}",
        pat.output
    );
    let r = &full.report["rounds"][0];
    format!(
        "{} → {}: {} planted differences found exactly ({} + {} keys scanned)",
        src_spec.name,
        tgt_spec.name,
        want.len(),
        r["source_keys"],
        r["target_keys"]
    )
}

#[test]
fn finds_exactly_the_planted_differences_across_versions() {
    let pairs: Vec<(ServerSpec, ServerSpec)> = [
        ("redis-3.0", "valkey-9.1"),
        ("redis-6.2", "redis-8.2"),
        ("valkey-8.1", "valkey-9.1"),
        ("redis-7.4", "redis-8.2"),
    ]
    .iter()
    .filter_map(|(a, b)| Some((require_server(a)?, require_server(b)?)))
    .collect();
    run_parallel(
        &pairs,
        2,
        |(a, b)| format!("{} → {}", a.name, b.name),
        |(a, b)| planted_case(a, b),
    );
}

#[test]
fn exit_2_when_it_cannot_compare_and_no_password_is_shown() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let src = Server::start(&spec, &[]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("redis://{}", dead.local_addr().unwrap());
    drop(dead);
    let run = verify(&src.url(), &dead_url, &["--rounds", "1"]);
    assert_eq!(run.code, 2, "{}", run.output);
    // A password the server does not expect: AUTH fails, the password stays secret.
    let url = format!("redis://:hunter2secret@{}", src.addr());
    let run = verify(&url, &src.url(), &["--rounds", "1"]);
    assert_eq!(run.code, 2, "{}", run.output);
    assert!(run.printed.contains("AUTH"), "{}", run.output);
    assert!(!run.printed.contains("hunter2secret"), "{}", run.output);
}

/// A writer keeps changing the source; a copier (harness code) applies each change to the
/// target 1.5 s later. Round 1 sees the changes in flight; later rounds re-check them after
/// they landed, and the run ends equal.
#[test]
fn rounds_converge_while_writes_continue() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let src = Server::start(&spec, &[]);
    let tgt = Server::start(&spec, &[]);
    let mut c = src.client();
    let mut seed = Vec::new();
    for i in 0..2000 {
        seed.push(args(&[b"SET", format!("seed:{i}").as_bytes(), b"v"]));
    }
    c.pipeline_ok(&seed);
    copy_standalone(&src, &tgt, &[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let stop = stop.clone();
        let mut c = src.client();
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Each key is written once: a new key, an update of a seed key, a delete.
                let new = format!("new:{i}").into_bytes();
                let seed = format!("seed:{}", i % 2000).into_bytes();
                let gone = format!("seed:{}", (i + 1000) % 2000).into_bytes();
                if i < 1000 {
                    c.ok_bin(&[b"SET", &seed, format!("updated {i}").as_bytes()]);
                    c.ok_bin(&[b"DEL", &gone]);
                    let _ = tx.send((Instant::now(), seed));
                    let _ = tx.send((Instant::now(), gone));
                }
                c.ok_bin(&[b"HSET", &new, b"f", b"v"]);
                let _ = tx.send((Instant::now(), new));
                i += 1;
                thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let copier = {
        let (mut from, mut to) = (src.client(), tgt.client());
        thread::spawn(move || {
            for (at, key) in rx {
                let due = at + Duration::from_millis(1500);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                match from.cmd(&[b"DUMP", &key]) {
                    Reply::Bulk(Some(payload)) => {
                        to.ok_bin(&[b"RESTORE", &key, b"0", &payload, b"REPLACE"]);
                    }
                    _ => {
                        to.ok_bin(&[b"DEL", &key]);
                    }
                }
            }
        })
    };
    thread::sleep(Duration::from_millis(500));
    let run = verify(
        &src.url(),
        &tgt.url(),
        &["--rounds", "10", "--interval", "2s"],
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    copier.join().expect("copier");
    assert_eq!(run.code, 0, "{}", run.output);
    let rounds = run.report["rounds"].as_array().expect("rounds");
    eprintln!("rounds: {}", serde_json::Value::Array(rounds.clone()));
    assert!(
        rounds.len() >= 2 && rounds[0]["differences"].as_u64() > Some(0),
        "round 1 should have seen writes in flight:\n{}",
        run.output
    );
    assert_eq!(rounds.last().unwrap()["differences"], 0, "{}", run.output);
}

/// A 3-master cluster against a standalone server, both ways round: SCAN on every master,
/// point reads routed by slot.
#[test]
fn cluster_sides_find_exactly_the_planted_differences() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let single = Server::start(&spec, &[]);
    let mut conns: Vec<Client> = cluster.nodes.iter().map(Server::client).collect();
    let slot_nodes = cluster.slot_nodes();
    // The key of each command the plants send.
    let node_of = |a: &[&[u8]]| {
        let key = match a[0] {
            b"XGROUP" => a[2],
            b"XREADGROUP" => a[7],
            _ => a[1],
        };
        slot_nodes[common::cluster::slot_of(key) as usize]
    };
    {
        let mut write = |a: &[&[u8]]| {
            let n = node_of(a);
            conns[n].ok_bin(a);
        };
        base_keys(&mut write, &spec, false, false);
        for i in 0..3000 {
            let k = format!("plain:{i}");
            write(&[b"SET", k.as_bytes(), b"value"]);
        }
        write(&[b"SADD", b"{tag}set", b"a", b"b"]);
        write(&[b"SADD", b"{tag}other", b"c"]);
    }
    let mut target = [single.client()];
    for n in &mut conns {
        copy_db(n, &mut |_| 0, &mut target);
    }
    let same = verify(&cluster.url(), &single.url(), &["--rounds", "1"]);
    assert_eq!(same.code, 0, "{}", same.output);
    assert_eq!(
        same.report["rounds"][0]["source_keys"],
        3000 + 8 + 2,
        "{}",
        same.output
    );

    // Planted on the cluster, which is now the target.
    let want = {
        let mut write = |a: &[&[u8]]| {
            let n = node_of(a);
            conns[n].ok_bin(a);
        };
        plant(&mut write, &spec, false, false)
    };
    let run = verify(&single.url(), &cluster.url(), &["--rounds", "1"]);
    assert_eq!(run.code, 1, "{}", run.output);
    assert_eq!(run.found(), set_of(&want), "{}", run.output);
    check_details(&run, true);
    // And the other way round: missing and extra swap.
    let back = verify(&cluster.url(), &single.url(), &["--rounds", "1"]);
    let swapped: Vec<_> = want
        .iter()
        .map(|&(db, k, kind)| {
            (
                db,
                k,
                match kind {
                    "missing" => "extra",
                    "extra" => "missing",
                    other => other,
                },
            )
        })
        .collect();
    assert_eq!(back.found(), set_of(&swapped), "{}", back.output);
}
