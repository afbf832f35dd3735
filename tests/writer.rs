//! The pipelined writer against real servers: windows, reply matching, SELECT tracking,
//! every error class (skipped, retried, fatal), conflict policies on both value paths,
//! and values written in pieces.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::dataset::{read_back, score_bits, KeyModel, Model, ValueModel};
use common::{assert_models_equal, installed_servers, require_any_servers, Client, Flavor};
use common::{Reply, Server, ServerSpec, TempDir};
use ferry::endpoint::Endpoint;
use ferry::rdb::writer::RdbWriter;
use ferry::target::{Cmd, CmdKind, Conflict, OnError, TargetError, Writer, WriterConfig};
use ferry::transform::{restore_file, Outcome, RestoreError, RestoreOptions, ValueMode};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The newest installed server of `flavor` (any flavor if that one is missing).
fn newest(flavor: Flavor) -> Option<ServerSpec> {
    let all = require_any_servers();
    let pick = |f: Option<Flavor>| {
        installed_servers()
            .into_iter()
            .filter(|s| f.is_none_or(|f| s.flavor == f))
            .max_by_key(|s| s.version)
    };
    all.first()?;
    pick(Some(flavor)).or_else(|| pick(None))
}

fn config(server: &Server) -> WriterConfig {
    WriterConfig::new(Endpoint::parse(&server.url()).expect("server URL"))
}

fn data(db: Option<u32>, key: &str, args: &[&[u8]]) -> Cmd {
    Cmd::from_args(
        db,
        args,
        CmdKind::Data {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
        },
    )
}

/// `MULTI`, `cmds`, `EXEC` as one transaction Cmd for db 0.
fn transaction(cmds: &[&[&str]], tag: u64) -> Cmd {
    let mut tx = Vec::new();
    ferry::resp::encode_command(&mut tx, &["MULTI"]);
    for c in cmds {
        ferry::resp::encode_command(&mut tx, c);
    }
    ferry::resp::encode_command(&mut tx, &["EXEC"]);
    Cmd {
        db: Some(0),
        bytes: Bytes::from(tx),
        n: cmds.len() as u32 + 2,
        tag,
        kind: CmdKind::Transaction { key: None },
    }
}

fn list(c: &mut Client, key: &str) -> Vec<Vec<u8>> {
    c.ok(&["LRANGE", key, "0", "-1"])
        .into_array()
        .expect("LRANGE array")
        .into_iter()
        .filter_map(Reply::into_bytes)
        .collect()
}

#[test]
fn pipelines_thousands_of_commands_and_matches_each_reply_to_its_command() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut c = server.client();
    c.ok(&["SET", "text", "not a number"]);
    let mut cfg = config(&server);
    (cfg.window_cmds, cfg.window_bytes) = (64, 4096);
    let total = 5000u64;
    let rt = runtime();
    let (stats, acked) = rt.block_on(async {
        let mut w = Writer::connect(cfg).await.expect("connect");
        for i in 1..=total {
            // Every 97th command fails, and the failure must be pinned on that one.
            let key = if i % 97 == 0 { "text" } else { "counter" };
            let cmd = data(None, key, &[b"INCR", key.as_bytes()]).with_tag(i);
            w.send(cmd).await.expect("send");
            assert!(w.in_flight() <= 64, "window exceeded: {}", w.in_flight());
        }
        // A Cmd of several commands counts as several replies.
        let mut three = Vec::new();
        for _ in 0..3 {
            ferry::resp::encode_command(&mut three, &["INCR", "counter"]);
        }
        let cmd = Cmd {
            db: None,
            bytes: Bytes::from(three),
            n: 3,
            tag: total + 1,
            kind: CmdKind::Data { key: None },
        };
        w.send(cmd).await.expect("send");
        w.flush().await.expect("flush");
        (w.stats(), w.acked_tag())
    });
    let failed: Vec<u64> = stats.skipped.iter().map(|r| r.tag).collect();
    let expected: Vec<u64> = (1..=total).filter(|i| i % 97 == 0).collect();
    assert_eq!(failed, expected, "errors matched to the wrong commands");
    assert!(stats.skipped.iter().all(|r| r.class == "ERR"
        && r.command == "INCR"
        && r.key.as_deref() == Some(&b"text"[..])));
    let counter = c.ok(&["GET", "counter"]).as_int();
    assert_eq!(counter, Some((total - expected.len() as u64 + 3) as i64));
    assert_eq!(acked, total + 1);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(
        stats.errors_by_class.get("ERR"),
        Some(&(expected.len() as u64))
    );
}

#[test]
fn puts_each_command_in_its_db() {
    let Some(spec) = newest(Flavor::Valkey) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let rt = runtime();
    let n = 2000u32;
    // A deterministic walk over dbs 0..16 with runs and jumps.
    let db_of = |i: u32| (i.wrapping_mul(2654435761) >> 7) % 16 / (1 + (i % 3)) % 16;
    let stats = rt.block_on(async {
        let mut w = Writer::connect(config(&server)).await.expect("connect");
        for i in 0..n {
            let db = db_of(i);
            let key = format!("k{i}");
            let value = format!("db{db}");
            let cmd = data(Some(db), &key, &[b"SET", key.as_bytes(), value.as_bytes()]);
            w.send(cmd).await.expect("send");
        }
        w.flush().await.expect("flush");
        w.stats()
    });
    let mut c = server.client();
    let mut per_db: BTreeMap<u32, i64> = BTreeMap::new();
    for i in 0..n {
        *per_db.entry(db_of(i)).or_default() += 1;
    }
    for (db, count) in &per_db {
        c.select(*db);
        assert_eq!(c.ok(&["DBSIZE"]).as_int(), Some(*count), "db {db}");
        let sample = (0..n).find(|i| db_of(*i) == *db).expect("a key");
        let got = c.ok(&["GET", &format!("k{sample}")]).into_bytes();
        assert_eq!(got, Some(format!("db{db}").into_bytes()));
    }
    let selects = stats.commands - u64::from(n);
    assert!(
        selects > 16 && selects < u64::from(n),
        "{selects} SELECTs for {} dbs",
        per_db.len()
    );
}

#[test]
fn a_window_smaller_than_one_command_still_sends_it_alone() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut cfg = config(&server);
    (cfg.window_cmds, cfg.window_bytes) = (1, 16);
    let value = vec![b'v'; 4096];
    runtime().block_on(async {
        let mut w = Writer::connect(cfg).await.expect("connect");
        for i in 0..300 {
            let key = format!("big{i}");
            let cmd = data(Some(2), &key, &[b"SET", key.as_bytes(), &value]);
            w.send(cmd).await.expect("send");
            assert!(w.in_flight() <= 2, "in flight: {}", w.in_flight());
        }
        w.flush().await.expect("flush");
    });
    let mut c = server.client();
    c.select(2);
    assert_eq!(c.ok(&["DBSIZE"]).as_int(), Some(300));
    assert_eq!(c.ok(&["STRLEN", "big299"]).as_int(), Some(4096));
}

#[test]
fn wrongtype_is_skipped_and_recorded_or_stops_by_policy() {
    let Some(spec) = newest(Flavor::Valkey) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut c = server.client();
    c.ok(&["SET", "s", "a string"]);
    let rt = runtime();
    let stats = rt.block_on(async {
        let mut w = Writer::connect(config(&server)).await.expect("connect");
        w.send(data(Some(0), "s", &[b"RPUSH", b"s", b"x"]).with_tag(1))
            .await
            .expect("send");
        w.send(data(Some(0), "l", &[b"RPUSH", b"l", b"y"]).with_tag(2))
            .await
            .expect("send");
        w.flush()
            .await
            .expect("a skipped error does not stop the writer");
        assert_eq!(w.acked_tag(), 2);
        w.stats()
    });
    assert_eq!(stats.skipped.len(), 1);
    let r = &stats.skipped[0];
    assert_eq!(
        (r.class, r.command.as_str(), r.key.as_deref(), r.db, r.tag),
        ("WRONGTYPE", "RPUSH", Some(&b"s"[..]), Some(0), 1)
    );
    assert_eq!(list(&mut c, "l"), vec![b"y".to_vec()]);

    let mut cfg = config(&server);
    cfg.policy.on_error = OnError::Stop;
    let err = rt.block_on(async {
        let mut w = Writer::connect(cfg).await.expect("connect");
        w.send(data(Some(0), "s", &[b"LPUSH", b"s", b"x"]))
            .await
            .expect("send");
        let err = w.flush().await.expect_err("WRONGTYPE stops the writer");
        // It stays stopped.
        assert!(matches!(
            w.send(data(None, "x", &[b"PING"])).await,
            Err(TargetError::Stopped { .. })
        ));
        err
    });
    let msg = err.to_string();
    assert!(
        msg.contains("WRONGTYPE") && msg.contains("LPUSH") && msg.contains("`s`"),
        "{msg}"
    );
}

#[test]
fn noauth_and_a_wrong_password_are_fatal_and_say_what_to_do() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    // Set after the start: the harness's readiness probe does not authenticate.
    server
        .client()
        .ok(&["CONFIG", "SET", "requirepass", "s3cret-pw"]);
    let rt = runtime();
    let err = rt
        .block_on(Writer::connect(config(&server)))
        .err()
        .expect("no password: refused");
    let msg = err.to_string();
    assert!(matches!(err, TargetError::Auth { .. }), "{msg}");
    assert!(msg.contains("NOAUTH") && msg.contains("password"), "{msg}");

    let url = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
    let cfg = WriterConfig::new(Endpoint::parse(&url).expect("url"));
    let err = rt.block_on(Writer::connect(cfg)).err().expect("refused");
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, TargetError::Auth { .. }), "{msg}");
    assert!(!msg.contains("wrong-pw"), "the password leaked: {msg}");

    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    let cfg = WriterConfig::new(Endpoint::parse(&url).expect("url"));
    rt.block_on(async {
        let mut w = Writer::connect(cfg).await.expect("right password");
        w.send(data(Some(0), "k", &[b"SET", b"k", b"v"]))
            .await
            .expect("send");
        w.flush().await.expect("flush");
    });
}

/// Sends `n` RPUSHes of 0..n to `key`, one Cmd each, then waits for all.
async fn push_numbers(w: &mut Writer, key: &str, n: u64) {
    for i in 0..n {
        let v = i.to_string();
        let cmd = data(Some(0), key, &[b"RPUSH", key.as_bytes(), v.as_bytes()]).with_tag(i + 1);
        w.send(cmd).await.expect("send");
    }
    w.flush().await.expect("flush");
    assert_eq!(w.acked_tag(), n);
}

fn numbers(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| i.to_string().into_bytes()).collect()
}

#[test]
fn busy_script_is_waited_out_and_nothing_is_lost_or_reordered() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &["--lua-time-limit", "50"]);
    let addr = server.addr();
    let rt = runtime();
    let mut cfg = config(&server);
    cfg.window_cmds = 1000;
    // Connected first: at connect the writer would wait the script out instead.
    let mut w = rt.block_on(Writer::connect(cfg)).expect("connect");
    // A script that never ends; SCRIPT KILL ends it after a second.
    let looping = thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.cmd_str(&["EVAL", "while true do end", "0"])
    });
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1200));
        let mut c = Client::connect(addr);
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.cmd_str(&["SCRIPT", "KILL"]).is_error() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    });
    thread::sleep(Duration::from_millis(300));
    let stats = rt.block_on(async {
        push_numbers(&mut w, "list", 500).await;
        w.stats()
    });
    let _ = looping.join();
    let _ = killer.join();
    eprintln!(
        "errors {:?}, {} commands resent",
        stats.errors_by_class, stats.retried
    );
    let mut c = server.client();
    assert_eq!(list(&mut c, "list"), numbers(500));
    assert!(
        stats.errors_by_class.get("BUSY").copied().unwrap_or(0) > 0,
        "no BUSY seen: {:?}",
        stats.errors_by_class
    );
    assert!(stats.retried >= 500, "retried {}", stats.retried);
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
}

#[test]
fn a_transaction_refused_while_busy_goes_again_whole() {
    let Some(spec) = newest(Flavor::Valkey) else {
        return;
    };
    let server = Server::start(&spec, &["--lua-time-limit", "50"]);
    let addr = server.addr();
    let rt = runtime();
    let mut w = rt
        .block_on(Writer::connect(config(&server)))
        .expect("connect");
    let looping =
        thread::spawn(move || Client::connect(addr).cmd_str(&["EVAL", "while true do end", "0"]));
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(800));
        let mut c = Client::connect(addr);
        while c.cmd_str(&["SCRIPT", "KILL"]).is_error() {
            thread::sleep(Duration::from_millis(20));
        }
    });
    thread::sleep(Duration::from_millis(300));
    let stats = rt.block_on(async {
        for i in 0..50u64 {
            let v = i.to_string();
            let cmd = transaction(&[&["RPUSH", "tx", &v], &["INCR", "count"]], 2 * i + 1);
            w.send(cmd).await.expect("send");
            let cmd =
                data(Some(0), "plain", &[b"RPUSH", b"plain", v.as_bytes()]).with_tag(2 * i + 2);
            w.send(cmd).await.expect("send");
        }
        w.flush().await.expect("flush");
        assert_eq!(w.acked_tag(), 100);
        w.stats()
    });
    let _ = looping.join();
    let _ = killer.join();
    eprintln!(
        "errors {:?}, {} commands resent",
        stats.errors_by_class, stats.retried
    );
    let mut c = server.client();
    assert_eq!(list(&mut c, "tx"), numbers(50));
    assert_eq!(list(&mut c, "plain"), numbers(50));
    assert_eq!(c.ok(&["GET", "count"]).as_int(), Some(50));
    assert!(stats.errors_by_class.get("BUSY").copied().unwrap_or(0) > 0);
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
}

#[test]
fn loading_target_is_waited_out_and_nothing_is_lost() {
    // key-load-delay makes loading slow enough to write into (6.0+).
    let Some(spec) = newest(Flavor::Redis).filter(|s| s.redis_at_least(6, 0)) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut c = server.client();
    let mut fill = Vec::new();
    for i in 0..2000 {
        fill.push(vec![
            b"SET".to_vec(),
            format!("pre{i}").into_bytes(),
            b"x".to_vec(),
        ]);
    }
    c.pipeline_ok(&fill);
    c.ok(&["CONFIG", "SET", "key-load-delay", "500"]);
    c.ok(&[
        "CONFIG",
        "SET",
        "loading-process-events-interval-bytes",
        "1024",
    ]);
    let rt = runtime();
    let mut w = rt
        .block_on(Writer::connect(config(&server)))
        .expect("connect");
    let addr = server.addr();
    let reload = thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.cmd_str(&["DEBUG", "RELOAD"])
    });
    thread::sleep(Duration::from_millis(200));
    let stats = rt.block_on(async {
        push_numbers(&mut w, "list", 300).await;
        w.stats()
    });
    let reply = reload.join().expect("reload thread");
    assert!(!reply.is_error(), "DEBUG RELOAD: {reply:?}");
    c.ok(&["CONFIG", "SET", "key-load-delay", "0"]);
    eprintln!(
        "errors {:?}, {} commands resent",
        stats.errors_by_class, stats.retried
    );
    assert_eq!(list(&mut c, "list"), numbers(300));
    assert_eq!(c.ok(&["DBSIZE"]).as_int(), Some(2001));
    assert!(
        stats.errors_by_class.get("LOADING").copied().unwrap_or(0) > 0,
        "no LOADING seen: {:?}",
        stats.errors_by_class
    );
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
}

#[test]
fn a_retry_that_would_reorder_a_key_is_reported_and_retries_can_give_up() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut c = server.client();
    c.ok(&["SET", "k", "old"]);
    let mut cfg = config(&server);
    cfg.policy.max_retries = Some(2);
    cfg.retry_backoff = (Duration::from_millis(10), Duration::from_millis(20));
    let rt = runtime();
    let mut w = rt.block_on(Writer::connect(cfg)).expect("connect");
    // Out of memory: RPUSH (deny-oom) is refused, DEL and PEXPIREAT are not, so the
    // expiry runs before the RPUSH it followed: the order of `k` is lost.
    c.ok(&["CONFIG", "SET", "maxmemory", "1"]);
    let far = (common::dataset::now_ms() + 3_600_000).to_string();
    let mut bytes = Vec::new();
    ferry::resp::encode_command(&mut bytes, &["DEL", "k"]);
    ferry::resp::encode_command(&mut bytes, &["RPUSH", "k", "a"]);
    ferry::resp::encode_command(&mut bytes, &["PEXPIREAT", "k", &far]);
    let cmd = Cmd {
        db: Some(0),
        bytes: Bytes::from(bytes),
        n: 3,
        tag: 7,
        kind: CmdKind::Data {
            key: Some(Bytes::from_static(b"k")),
        },
    };
    let stats = rt.block_on(async {
        w.send(cmd).await.expect("send");
        w.flush().await.expect("skipped, not fatal");
        assert_eq!(w.acked_tag(), 7, "given up counts as answered");
        w.stats()
    });
    c.ok(&["CONFIG", "SET", "maxmemory", "0"]);
    let classes: Vec<(&str, &str)> = stats
        .skipped
        .iter()
        .map(|r| (r.class, r.command.as_str()))
        .collect();
    assert_eq!(
        classes,
        [("reorder", "RPUSH"), ("OOM", "RPUSH")],
        "{:?}",
        stats.skipped
    );
    assert_eq!(stats.errors_by_class.get("OOM"), Some(&3));
    assert_eq!(c.ok(&["EXISTS", "k"]).as_int(), Some(0));
}

#[test]
fn a_sleeping_target_only_delays_the_writes() {
    let Some(spec) = newest(Flavor::Valkey) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let addr = server.addr();
    let sleeper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        Client::connect(addr).cmd_str(&["DEBUG", "SLEEP", "1"])
    });
    let started = Instant::now();
    runtime().block_on(async {
        let mut w = Writer::connect(config(&server)).await.expect("connect");
        for round in 0..20 {
            for i in 0..250 {
                let n = (round * 250 + i).to_string();
                let cmd = data(Some(0), "list", &[b"RPUSH", b"list", n.as_bytes()]);
                w.send(cmd).await.expect("send");
            }
            w.push().await.expect("push");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        w.flush().await.expect("flush");
    });
    let _ = sleeper.join();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(list(&mut server.client(), "list"), numbers(5000));
}

/// Writes `rdb` to a file and restores it into `server`.
fn restore(
    server: &Server,
    dir: &TempDir,
    rdb: Vec<u8>,
    opts: &RestoreOptions,
) -> Result<ferry::transform::RestoreReport, RestoreError> {
    let path = dir.path().join("in.rdb");
    std::fs::write(&path, rdb).expect("write the RDB");
    restore_file(&path, config(server), opts)
}

fn small_rdb() -> Vec<u8> {
    let mut w = RdbWriter::new(9);
    w.select_db(0);
    w.string(b"s", b"from source", None);
    w.list(b"l", &[b"a".as_slice(), b"b"]);
    w.hash(b"h", &[(b"f".as_slice(), b"v".as_slice())]);
    w.string(b"fresh", b"new", None);
    w.finish()
}

#[test]
fn conflicts_follow_the_policy_on_both_value_paths() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let dir = TempDir::new("writer-conflict");
    let mut c = server.client();
    for mode in [ValueMode::Auto, ValueMode::Commands] {
        for conflict in [Conflict::Replace, Conflict::Skip, Conflict::Error] {
            let what = format!("{mode:?}/{conflict:?}");
            c.ok(&["FLUSHALL"]);
            c.ok(&["SET", "s", "on target"]);
            c.ok(&["RPUSH", "l", "target"]);
            c.ok(&["SET", "h", "a string on target"]);
            let mut opts = RestoreOptions {
                record_keys: true,
                ..RestoreOptions::default()
            };
            (opts.rewrite.mode, opts.rewrite.conflict) = (mode, conflict);
            let result = restore(&server, &dir, small_rdb(), &opts);
            let get = |c: &mut Client, k: &str| c.cmd_str(&["GET", k]).into_bytes();
            match conflict {
                Conflict::Replace => {
                    let r = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(r.writer.skipped_total, 0, "{what}");
                    assert_eq!(get(&mut c, "s"), Some(b"from source".to_vec()), "{what}");
                    assert_eq!(list(&mut c, "l"), vec![b"a".to_vec(), b"b".to_vec()]);
                    assert_eq!(c.ok(&["HGET", "h", "f"]).into_bytes(), Some(b"v".to_vec()));
                }
                Conflict::Skip => {
                    let r = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    let mut skipped: Vec<_> = r
                        .writer
                        .skipped
                        .iter()
                        .map(|s| (s.class, s.key.clone().unwrap_or_default()))
                        .collect();
                    skipped.sort();
                    let k = |s: &str| Bytes::copy_from_slice(s.as_bytes());
                    assert_eq!(
                        skipped,
                        vec![
                            ("BUSYKEY", k("h")),
                            ("BUSYKEY", k("l")),
                            ("BUSYKEY", k("s"))
                        ],
                        "{what}"
                    );
                    assert_eq!(get(&mut c, "s"), Some(b"on target".to_vec()), "{what}");
                    assert_eq!(list(&mut c, "l"), vec![b"target".to_vec()], "{what}");
                    assert_eq!(get(&mut c, "fresh"), Some(b"new".to_vec()), "{what}");
                    // No staging key is left behind.
                    assert_eq!(c.ok(&["DBSIZE"]).as_int(), Some(4), "{what}");
                }
                Conflict::Error => {
                    let e = result.err().unwrap_or_else(|| panic!("{what}: no error"));
                    let msg = e.to_string();
                    assert!(
                        msg.contains("BUSYKEY") && msg.contains("`s`"),
                        "{what}: {msg}"
                    );
                    assert_eq!(get(&mut c, "s"), Some(b"on target".to_vec()), "{what}");
                }
            }
        }
    }
}

/// The model of what `big_rdb` holds.
fn big_model() -> (Vec<u8>, Model) {
    let big = |tag: u8, n: usize| -> Vec<u8> { (0..n).map(|i| tag + (i % 23) as u8).collect() };
    let (s, item, member, hval) = (
        big(b'a', 300_000),
        big(b'b', 200_000),
        big(b'c', 150_000),
        big(b'd', 100_000),
    );
    let mut w = RdbWriter::new(9);
    w.select_db(3);
    w.string(b"big:string", &s, None);
    w.list(
        b"big:list",
        &[b"small".to_vec(), item.clone(), b"tail".to_vec()],
    );
    w.set(b"{tagged}big:set", &[member.clone(), b"m".to_vec()]);
    w.hash(
        b"big:hash",
        &[
            (b"f".to_vec(), hval.clone()),
            (b"g".to_vec(), b"1".to_vec()),
        ],
    );
    let zs: Vec<(Vec<u8>, f64)> = (0..3000)
        .map(|i| (format!("m{i}").into_bytes(), i as f64 / 7.0))
        .collect();
    w.zset(b"many:zset", &zs);
    let mut m = Model::default();
    let mut put = |k: &str, v: ValueModel| {
        m.keys.insert(
            (3, k.as_bytes().to_vec()),
            KeyModel {
                value: v,
                expire_ms: None,
            },
        );
    };
    put("big:string", ValueModel::String(s));
    put(
        "big:list",
        ValueModel::List(vec![b"small".to_vec(), item, b"tail".to_vec()]),
    );
    put(
        "{tagged}big:set",
        ValueModel::Set([member, b"m".to_vec()].into()),
    );
    put(
        "big:hash",
        ValueModel::Hash(
            [
                (b"f".to_vec(), (hval, None)),
                (b"g".to_vec(), (b"1".to_vec(), None)),
            ]
            .into(),
        ),
    );
    put(
        "many:zset",
        ValueModel::ZSet(zs.into_iter().map(|(k, s)| (k, score_bits(s))).collect()),
    );
    (w.finish(), m)
}

#[test]
fn big_values_are_written_in_pieces_on_every_path() {
    let Some(spec) = newest(Flavor::Valkey) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let dir = TempDir::new("writer-big");
    let mut c = server.client();
    let (rdb, expected) = big_model();
    for (mode, conflict, restore_max) in [
        (ValueMode::Auto, Conflict::Replace, 16 << 20),
        // Held commands outgrow the hold: committed to the commands path mid-value.
        (ValueMode::Auto, Conflict::Replace, 64 << 10),
        (ValueMode::Commands, Conflict::Replace, 16 << 20),
        (ValueMode::Commands, Conflict::Skip, 16 << 20),
    ] {
        c.ok(&["FLUSHALL"]);
        let mut opts = RestoreOptions {
            record_keys: true,
            chunk_threshold: 32 << 10,
            ..RestoreOptions::default()
        };
        opts.rewrite.mode = mode;
        opts.rewrite.conflict = conflict;
        opts.rewrite.restore_max = restore_max;
        opts.rewrite.batch_elems = 100;
        opts.rewrite.batch_bytes = 16 << 10;
        let r = restore(&server, &dir, rdb.clone(), &opts)
            .unwrap_or_else(|e| panic!("{mode:?}/{conflict:?}/{restore_max}: {e}"));
        let actual = read_back(&mut c, server.spec(), &[0, 3]);
        assert_models_equal(&expected, &actual, 0);
        for (_, key, outcome) in &r.key_outcomes {
            // Strings go as SET (+ APPENDs) with the replace policy, whatever their size.
            let string = &key[..] == b"big:string";
            let want = if mode == ValueMode::Auto && restore_max > 1 << 20 && !string {
                Outcome::Restore
            } else {
                Outcome::Commands
            };
            assert_eq!(*outcome, want, "{mode:?}/{conflict:?}: {key:?}");
        }
        assert_eq!(r.writer.skipped_total, 0, "{:?}", r.writer.skipped);
        eprintln!(
            "{mode:?}/{conflict:?}/restore_max {restore_max}: {} commands, {} bytes",
            r.writer.commands, r.writer.bytes
        );
    }
}

/// What the fake server answers: INFO, CONFIG GET, then a reply and garbage.
fn fake_replies() -> [String; 3] {
    let info = "redis_version:7.2.4\r\n";
    [
        format!("${}\r\n{info}\r\n", info.len()),
        "*2\r\n$18\r\nproto-max-bulk-len\r\n$9\r\n536870912\r\n".to_string(),
        "+OK\r\n?what\r\n".to_string(),
    ]
}

#[test]
fn a_malformed_reply_names_the_target_and_the_offset() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4096];
        for r in fake_replies() {
            let _ = s.read(&mut buf);
            let _ = s.write_all(r.as_bytes());
        }
        thread::sleep(Duration::from_millis(200));
    });
    let url = format!("redis://127.0.0.1:{port}");
    let err = runtime().block_on(async {
        let mut w = Writer::connect(WriterConfig::new(Endpoint::parse(&url).expect("url")))
            .await
            .expect("connect to the fake");
        w.send(data(None, "a", &[b"SET", b"a", b"1"]))
            .await
            .expect("send");
        w.send(data(None, "b", &[b"SET", b"b", b"2"]))
            .await
            .expect("send");
        w.flush().await.expect_err("garbage reply")
    });
    let _ = fake.join();
    let msg = err.to_string();
    assert!(matches!(err, TargetError::Protocol { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    // The `?` comes after the handshake's replies and one `+OK\r\n`.
    let at: usize = fake_replies()[..2].iter().map(String::len).sum::<usize>() + 5;
    assert!(msg.contains(&format!("at byte {at} ")), "{msg}");
}

/// `cargo test --release --test writer throughput -- --ignored --nocapture`: restores a
/// 1M-key RDB into a local server both ways, and times `redis-cli --pipe` sending the
/// same commands as the commands path (DEL + SET per key), the physical reference.
/// `FERRY_WINDOW=2048` tries another window.
#[test]
#[ignore]
fn throughput_of_a_million_keys_against_redis_cli_pipe() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let Some(cli) = common::server_bin("redis-cli") else {
        eprintln!("SKIP: no redis-cli in the server cache");
        return;
    };
    const N: usize = 1_000_000;
    let server = Server::start(&spec, &[]);
    let dir = TempDir::new("writer-throughput");
    let mut w = RdbWriter::new(9);
    w.select_db(0);
    let mut pipe = Vec::with_capacity(N * 80);
    for i in 0..N {
        let (k, v) = (format!("key:{i:08}"), format!("value-{i}-abcdefgh"));
        w.string(k.as_bytes(), v.as_bytes(), None);
        ferry::resp::encode_command(&mut pipe, &["DEL", &k]);
        ferry::resp::encode_command(&mut pipe, &["SET", &k, &v]);
    }
    let rdb = w.finish();
    let pipe_path = dir.path().join("cmds.resp");
    std::fs::write(&pipe_path, &pipe).expect("write the pipe file");
    let mut c = server.client();
    for mode in [ValueMode::Auto, ValueMode::Commands] {
        c.ok(&["FLUSHALL"]);
        let mut opts = RestoreOptions::default();
        opts.rewrite.mode = mode;
        let path = dir.path().join("in.rdb");
        std::fs::write(&path, &rdb).expect("write the RDB");
        let mut cfg = config(&server);
        if let Some(w) = std::env::var("FERRY_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
        {
            cfg.window_cmds = w;
        }
        let started = Instant::now();
        let r = restore_file(&path, cfg, &opts).expect("restore");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(c.ok(&["DBSIZE"]).as_int(), Some(N as i64));
        eprintln!(
            "ferry restore {mode:?}: {N} keys in {secs:.2} s = {:.0} keys/s \
             ({} commands, {:.1} MB sent)",
            N as f64 / secs,
            r.writer.commands,
            r.writer.bytes as f64 / 1e6
        );
    }
    c.ok(&["FLUSHALL"]);
    let started = Instant::now();
    let out = std::process::Command::new(&cli)
        .args(["-p", &server.port().to_string(), "--pipe"])
        .stdin(std::fs::File::open(&pipe_path).expect("open the pipe file"))
        .output()
        .expect("run redis-cli --pipe");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.ok(&["DBSIZE"]).as_int(), Some(N as i64));
    eprintln!(
        "redis-cli --pipe (DEL + SET per key): {N} keys in {secs:.2} s = {:.0} keys/s",
        N as f64 / secs
    );
}

/// A proxy in front of a real server that answers chosen commands itself with an error a
/// real server gives only at a moment a test cannot hit (OOM on one exact command,
/// EXECABORT at EXEC time) and forwards everything else, one command at a time. Every
/// command the client sent is logged in order, with `!` before the injected ones.
struct FaultProxy {
    addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// What the proxy does with a command: `None` forwards it; `Some((reply, instead))`
/// answers `reply` and sends `instead` (e.g. a DISCARD) to the server, if any.
type Decide = dyn FnMut(&[Vec<u8>]) -> Option<(String, Option<Vec<&'static str>>)> + Send;

impl FaultProxy {
    fn start(server: std::net::SocketAddr, mut decide: Box<Decide>) -> FaultProxy {
        use std::io::BufRead;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        thread::spawn(move || {
            // One client (the writer) is enough for these tests.
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let mut from_client = std::io::BufReader::new(client.try_clone().expect("clone"));
            let mut to_client = client;
            let mut real = Client::connect(server);
            let read_cmd =
                |r: &mut std::io::BufReader<std::net::TcpStream>| -> Option<Vec<Vec<u8>>> {
                    let mut line = Vec::new();
                    r.read_until(b'\n', &mut line).ok()?;
                    let n: usize = std::str::from_utf8(line.get(1..line.len().checked_sub(2)?)?)
                        .ok()?
                        .parse()
                        .ok()?;
                    let mut args = Vec::with_capacity(n);
                    for _ in 0..n {
                        line.clear();
                        r.read_until(b'\n', &mut line).ok()?;
                        let len: usize = std::str::from_utf8(&line[1..line.len() - 2])
                            .ok()?
                            .parse()
                            .ok()?;
                        let mut arg = vec![0u8; len + 2];
                        r.read_exact(&mut arg).ok()?;
                        arg.truncate(len);
                        args.push(arg);
                    }
                    Some(args)
                };
            while let Some(args) = read_cmd(&mut from_client) {
                let shown = args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ");
                let reply = match decide(&args) {
                    Some((reply, instead)) => {
                        log2.lock().expect("log").push(format!("!{shown}"));
                        if let Some(cmd) = instead {
                            real.cmd_str(&cmd);
                        }
                        reply.into_bytes()
                    }
                    None => {
                        log2.lock().expect("log").push(shown);
                        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                        encode_reply(&real.cmd(&argv))
                    }
                };
                if to_client.write_all(&reply).is_err() {
                    return;
                }
            }
        });
        FaultProxy { addr, log }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The data commands seen (not the writer's handshake), in order.
    fn seen(&self) -> Vec<String> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|c| !c.starts_with("INFO") && !c.starts_with("CONFIG"))
            .cloned()
            .collect()
    }
}

fn encode_reply(r: &Reply) -> Vec<u8> {
    match r {
        Reply::Simple(s) => [b"+", s.as_slice(), b"\r\n"].concat(),
        Reply::Error(e) => format!("-{e}\r\n").into_bytes(),
        Reply::Int(i) => format!(":{i}\r\n").into_bytes(),
        Reply::Bulk(None) => b"$-1\r\n".to_vec(),
        Reply::Bulk(Some(b)) => [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat(),
        Reply::Array(None) => b"*-1\r\n".to_vec(),
        Reply::Array(Some(items)) => {
            let mut out = format!("*{}\r\n", items.len()).into_bytes();
            for i in items {
                out.extend(encode_reply(i));
            }
            out
        }
    }
}

fn fast_retries(url: &str) -> WriterConfig {
    let mut cfg = WriterConfig::new(Endpoint::parse(url).expect("url"));
    cfg.retry_backoff = (Duration::from_millis(1), Duration::from_millis(5));
    cfg
}

/// Redis 6.2+ refuses an `EXEC` for a condition of the server (OOM, BUSY, LOADING…) with
/// `-EXECABORT Transaction discarded because of: OOM …`, every command before it having
/// been `+QUEUED`: the transaction was not run and must go again whole. Before, that
/// EXECABORT was skipped as an error and the transaction lost.
#[test]
fn a_transaction_refused_at_exec_time_goes_again_whole() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    // The SET after it is refused too, as a server out of memory does (else the writer
    // rightly reports that a later write succeeded before the resend: a reorder).
    let (mut execs, mut sets) = (0, 0);
    let oom = "OOM command not allowed when used memory > 'maxmemory'.";
    let proxy = FaultProxy::start(
        server.addr(),
        Box::new(move |args| {
            if args[0].eq_ignore_ascii_case(b"SET") {
                sets += 1;
                return (sets == 1).then(|| (format!("-{oom}\r\n"), None));
            }
            if !args[0].eq_ignore_ascii_case(b"EXEC") {
                return None;
            }
            execs += 1;
            (execs == 1).then(|| {
                (
                    format!("-EXECABORT Transaction discarded because of: {oom}\r\n"),
                    Some(vec!["DISCARD"]),
                )
            })
        }),
    );
    let stats = runtime().block_on(async {
        let mut w = Writer::connect(fast_retries(&proxy.url()))
            .await
            .expect("connect");
        w.send(transaction(&[&["INCR", "count"], &["RPUSH", "tx", "a"]], 1))
            .await
            .expect("send");
        w.send(data(Some(0), "after", &[b"SET", b"after", b"1"]).with_tag(2))
            .await
            .expect("send");
        w.flush().await.expect("flush");
        assert_eq!(w.acked_tag(), 2);
        w.stats()
    });
    let mut c = server.client();
    assert_eq!(
        c.ok(&["GET", "count"]).as_int(),
        Some(1),
        "{:?}",
        proxy.seen()
    );
    assert_eq!(list(&mut c, "tx"), vec![b"a".to_vec()]);
    assert_eq!(c.ok(&["GET", "after"]).as_bytes(), Some(&b"1"[..]));
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
    assert_eq!(stats.errors_by_class.get("OOM").copied(), Some(2));
}

/// OOM refuses only commands that may grow memory: a `DEL` behind a refused `SET` of the
/// same key runs. New commands must not overtake a resend that is refused again: the
/// writer sends nothing new until its resends are answered. The proxy refuses the first
/// two attempts of `SET k`; the `DEL k` given to the writer after the first refusal must
/// reach the server after the `SET k` that succeeds, so `k` ends deleted as on the source.
#[test]
fn a_new_command_does_not_overtake_a_resend_refused_again() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut sets = 0;
    let proxy = FaultProxy::start(
        server.addr(),
        Box::new(move |args| {
            if args[0].eq_ignore_ascii_case(b"SET") && args[1] == b"k" {
                sets += 1;
                if sets <= 2 {
                    return Some((
                        "-OOM command not allowed when used memory > 'maxmemory'.\r\n".into(),
                        None,
                    ));
                }
            }
            None
        }),
    );
    let stats = runtime().block_on(async {
        let mut w = Writer::connect(fast_retries(&proxy.url()))
            .await
            .expect("connect");
        w.send(data(Some(0), "k", &[b"SET", b"k", b"v"]).with_tag(1))
            .await
            .expect("send");
        w.push().await.expect("push");
        // The refusal is read: a retry is pending.
        while !w.stats().errors_by_class.contains_key("OOM") {
            w.recv().await.expect("recv");
        }
        w.send(data(Some(0), "k", &[b"DEL", b"k"]).with_tag(2))
            .await
            .expect("send");
        w.flush().await.expect("flush");
        assert_eq!(w.acked_tag(), 2);
        w.stats()
    });
    let seen = proxy.seen();
    assert_eq!(
        seen,
        ["!SET k v", "!SET k v", "SET k v", "DEL k"],
        "{stats:?}"
    );
    assert_eq!(server.client().cmd_str(&["EXISTS", "k"]).as_int(), Some(0));
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
}

/// A transaction that SELECTs inside leaves the connection in another db: the writer must
/// put its own SELECT before the next command, also after sending the transaction again.
/// The proxy refuses the transaction's `SET a` while it is queued (OOM, so EXEC aborts)
/// and the first `SET c`; after the retry, `SET d` is sent for db 0. Before, the writer
/// still believed it was in db 0 and `d` landed in db 5.
#[test]
fn a_resent_transaction_that_selects_inside_does_not_move_later_writes() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let (mut set_a, mut set_c, mut execs) = (0, 0, 0);
    let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
    let proxy = FaultProxy::start(
        server.addr(),
        Box::new(move |args| {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let key = args.get(1).map(Vec::as_slice);
            match (name.as_str(), key) {
                ("SET", Some(b"a")) => {
                    set_a += 1;
                    (set_a == 1).then(|| (oom.to_string(), None))
                }
                ("SET", Some(b"c")) => {
                    set_c += 1;
                    (set_c == 1).then(|| (oom.to_string(), None))
                }
                ("EXEC", _) => {
                    execs += 1;
                    (execs == 1).then(|| {
                        (
                            "-EXECABORT Transaction discarded because of previous errors.\r\n"
                                .to_string(),
                            Some(vec!["DISCARD"]),
                        )
                    })
                }
                _ => None,
            }
        }),
    );
    let stats = runtime().block_on(async {
        let mut w = Writer::connect(fast_retries(&proxy.url()))
            .await
            .expect("connect");
        w.send(transaction(&[&["SELECT", "5"], &["SET", "a", "1"]], 1))
            .await
            .expect("send");
        w.send(data(Some(0), "c", &[b"SET", b"c", b"1"]).with_tag(2))
            .await
            .expect("send");
        w.flush().await.expect("flush");
        w.send(data(Some(0), "d", &[b"SET", b"d", b"1"]).with_tag(3))
            .await
            .expect("send");
        w.flush().await.expect("flush");
        assert_eq!(w.acked_tag(), 3);
        w.stats()
    });
    let mut c = server.client();
    let seen = proxy.seen();
    c.select(5);
    assert_eq!(c.ok(&["GET", "a"]).as_bytes(), Some(&b"1"[..]), "{seen:?}");
    assert_eq!(
        c.ok(&["DBSIZE"]).as_int(),
        Some(1),
        "only `a` in db 5: {seen:?}"
    );
    c.select(0);
    assert_eq!(c.ok(&["GET", "c"]).as_bytes(), Some(&b"1"[..]), "{seen:?}");
    assert_eq!(c.ok(&["GET", "d"]).as_bytes(), Some(&b"1"[..]), "{seen:?}");
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
}

/// The router puts `ASKING` before each command of an ASK-redirected piece. Its `+OK`
/// writes nothing: when the piece's commands are refused for a while, the `ASKING`s
/// answered after them are not "a later write to the same key", so no reorder is
/// reported. (The proxy answers `ASKING` itself: this server is not a cluster node.)
#[test]
fn asking_replies_do_not_count_as_writes_in_the_reorder_check() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut sets = 0;
    let proxy = FaultProxy::start(
        server.addr(),
        Box::new(move |args| {
            if args[0].eq_ignore_ascii_case(b"ASKING") {
                return Some(("+OK\r\n".into(), None));
            }
            if args[0].eq_ignore_ascii_case(b"RPUSH") {
                sets += 1;
                if sets <= 2 {
                    return Some((
                        "-OOM command not allowed when used memory > 'maxmemory'.\r\n".into(),
                        None,
                    ));
                }
            }
            None
        }),
    );
    let stats = runtime().block_on(async {
        let mut w = Writer::connect(fast_retries(&proxy.url()))
            .await
            .expect("connect");
        let mut b = Vec::new();
        for v in ["1", "2"] {
            ferry::resp::encode_command(&mut b, &["ASKING"]);
            ferry::resp::encode_command(&mut b, &["RPUSH", "k", v]);
        }
        w.send(Cmd {
            db: Some(0),
            bytes: Bytes::from(b),
            n: 4,
            tag: 1,
            kind: CmdKind::Data {
                key: Some(Bytes::from_static(b"k")),
            },
        })
        .await
        .expect("send");
        w.flush().await.expect("flush");
        w.stats()
    });
    assert_eq!(stats.skipped_total, 0, "{:?}", stats.skipped);
    assert_eq!(
        list(&mut server.client(), "k"),
        [b"1".to_vec(), b"2".to_vec()]
    );
}

/// A guard (`RENAMENX staging key`, `DEL staging`) redirected by ASK comes with `ASKING`
/// before each command; its `RENAMENX` answering `:0` (the key exists on the target) is
/// still judged like a `BUSYKEY`: recorded, and the target's key kept. (The proxy answers
/// `ASKING` itself: this server is not a cluster node.)
#[test]
fn a_guard_redirected_by_ask_still_judges_its_renamenx() {
    let Some(spec) = newest(Flavor::Redis) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let mut c = server.client();
    c.ok(&["SET", "k", "on the target"]);
    c.ok(&["SET", "k:staging", "from the source"]);
    let proxy = FaultProxy::start(
        server.addr(),
        Box::new(|args| {
            args[0]
                .eq_ignore_ascii_case(b"ASKING")
                .then(|| ("+OK\r\n".to_string(), None))
        }),
    );
    let stats = runtime().block_on(async {
        let mut cfg = fast_retries(&proxy.url());
        cfg.policy.busykey = Conflict::Skip;
        let mut w = Writer::connect(cfg).await.expect("connect");
        let mut b = Vec::new();
        for cmd in [&["RENAMENX", "k:staging", "k"][..], &["DEL", "k:staging"]] {
            ferry::resp::encode_command(&mut b, &["ASKING"]);
            ferry::resp::encode_command(&mut b, cmd);
        }
        w.send(Cmd {
            db: Some(0),
            bytes: Bytes::from(b),
            n: 4,
            tag: 1,
            kind: CmdKind::Guard {
                key: Bytes::from_static(b"k"),
            },
        })
        .await
        .expect("send");
        w.flush().await.expect("flush");
        w.stats()
    });
    assert_eq!(stats.skipped_total, 1, "{:?}", stats.skipped);
    assert_eq!(stats.skipped[0].class, "BUSYKEY", "{:?}", stats.skipped);
    assert_eq!(c.ok(&["GET", "k"]).as_bytes(), Some(&b"on the target"[..]));
    assert_eq!(c.ok(&["EXISTS", "k:staging"]).as_int(), Some(0));
}
