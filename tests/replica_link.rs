//! The replica link against real servers.
//!
//! Every test starts its own servers (stopped on drop, also when a test fails) and judges
//! the link with code that shares nothing with it: the harness's RESP client for the
//! server's side (`INFO replication`, `WAIT`), a small RESP parser here for the stream
//! bytes, and ferry's RDB decoder only to check that the snapshot bytes are a whole RDB.
//!
//! * `full_sync_then_stream_*`: both framings (`$<len>` and diskless `$EOF:`) on six server
//!   lines: snapshot at the right offset and valid, stream bytes at offsets that match
//!   `master_repl_offset`, ACKs that follow `applied` (not what was received), `WAIT`
//!   satisfied by `ack_now` after a `REPLCONF GETACK`.
//! * `auth_*`: requirepass and ACL users; wrong passwords give clear errors without them.
//! * `resumes_with_continue_*`: a proxy cuts the link in the middle of a command; the link
//!   resumes with `PSYNC` and `+CONTINUE`, nothing lost or repeated; a new link resumes from
//!   a saved offset.
//! * `a_cut_during_the_snapshot_means_a_new_full_sync`: a cut mid-RDB gives a second
//!   `FullResync` and a whole second snapshot.
//! * `finds_the_eof_mark_split_and_glued_to_the_stream`: a proxy re-chunks a real diskless
//!   transfer so that the mark spans two reads and the first stream bytes share its read.
//! * `retries_while_the_source_has_no_master_link`: `-NOMASTERLINK` is waited out.
//! * `malformed_replies_are_errors_that_show_the_bytes`: a scripted source sends garbage;
//!   the errors name the source and show the bytes, escaped and cut.
//! * `resume_asks_for_the_next_byte_and_adopts_the_replid_of_continue`: the exact handshake,
//!   `PSYNC <replid> <offset+1>`, a new replid from `+CONTINUE <replid>`, ACKs of `applied`.
//! * `acks_claim_nothing_while_the_snapshot_is_pending`: the ACKs after a diskless transfer
//!   say 0 until the consumer is past the snapshot, then `applied`.
//! * `a_refused_resume_is_retried_from_the_last_data_command_only_when_caught_up`: a
//!   refused `PSYNC` is asked again from the consumer's last data command only when the
//!   target applied all that was received; else a full resync (no command twice).
//! * `slow_consumer_*` / `spool_cap_*`: the link drains a source with a 1 MiB replica output
//!   buffer limit while the consumer sleeps, on disk, without being disconnected; a small
//!   cap stops it with the operator-facing error.
//! * `throughput_*` (ignored, run by hand in release): MB/s of the link for a 1 GB snapshot
//!   from a real server and for 2 GiB from a fake master, each against a baseline measured
//!   in the same run.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{Mode, Proxy};
use common::{fill, require_server, Client, Reply, Server, ServerSpec, TempDir};
use ferry::endpoint::Endpoint;
use ferry::rdb::collect::collect;
use ferry::rdb::DecoderConfig;
use ferry::source::{ReplicaConfig, ReplicaLink, Resume, SourceItem};

/// Longest wait for one item or one condition; a test that needs longer is broken.
const PATIENCE: Duration = Duration::from_secs(20);

fn config(url: &str, dir: &TempDir) -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(Endpoint::parse(url).expect("test URL"));
    cfg.ack_interval = Duration::from_millis(100);
    cfg.retry_backoff = (Duration::from_millis(20), Duration::from_millis(200));
    cfg.spool_dir = dir.path().join("spool");
    cfg
}

fn applied_at(offset: u64) -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(offset))
}

// ---------------------------------------------------------------------------------------
// What the consumer saw.

/// The stream bytes, checked contiguous, and the commands parsed from them.
#[derive(Default)]
struct StreamLog {
    start: Option<u64>,
    end: u64,
    bytes: Vec<u8>,
    parsed: usize,
    /// (offset of the command's first byte, argv)
    commands: Vec<(u64, Vec<Vec<u8>>)>,
}

impl StreamLog {
    fn push(&mut self, offset: u64, data: &[u8]) {
        match self.start {
            None => {
                self.start = Some(offset);
                self.end = offset;
            }
            Some(_) => assert_eq!(offset, self.end, "stream offsets are contiguous"),
        }
        self.bytes.extend_from_slice(data);
        self.end += data.len() as u64;
        let start = self.start.unwrap_or_default();
        while let Some((argv, used)) = parse_command(&self.bytes[self.parsed..]) {
            self.commands.push((start + self.parsed as u64, argv));
            self.parsed += used;
        }
    }

    /// The commands named `name` (case-insensitive), as argv.
    fn named(&self, name: &str) -> Vec<&Vec<Vec<u8>>> {
        self.commands
            .iter()
            .filter(|(_, argv)| argv[0].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, argv)| argv)
            .collect()
    }

    /// Keys of the SETs whose key starts with `prefix`, in stream order.
    fn set_keys(&self, prefix: &str) -> Vec<String> {
        self.named("set")
            .into_iter()
            .map(|argv| String::from_utf8_lossy(&argv[1]).into_owned())
            .filter(|k| k.starts_with(prefix))
            .collect()
    }
}

/// One RESP multibulk command at the start of `b`, and its length; `None` if incomplete.
/// Panics on anything else: a replication stream holds nothing else.
fn parse_command(b: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let (n, mut pos) = header(b, 0, b'*')?;
    let mut argv = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, start) = header(b, pos, b'$')?;
        let end = start + len;
        if b.len() < end + 2 {
            return None;
        }
        assert_eq!(&b[end..end + 2], b"\r\n", "bulk not ended by CRLF at {end}");
        argv.push(b[start..end].to_vec());
        pos = end + 2;
    }
    Some((argv, pos))
}

/// `<kind><digits>\r\n` at `pos`: the number and the position after the line.
fn header(b: &[u8], pos: usize, kind: u8) -> Option<(usize, usize)> {
    let first = *b.get(pos)?;
    assert_eq!(
        first,
        kind,
        "expected `{}` at {pos}: {}",
        kind as char,
        common::escape(&b[pos..b.len().min(pos + 40)])
    );
    let crlf = pos + b[pos..].windows(2).position(|w| w == b"\r\n")?;
    let n = std::str::from_utf8(&b[pos + 1..crlf])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a length");
    Some((n, crlf + 2))
}

/// Drives a link and records what it delivers.
struct Consumer {
    link: ReplicaLink,
    full_resyncs: Vec<(String, u64)>,
    continues: Vec<(String, u64)>,
    reconnects: Vec<String>,
    rdb: Vec<u8>,
    rdb_ends: usize,
    stream: StreamLog,
}

impl Consumer {
    fn new(link: ReplicaLink) -> Consumer {
        Consumer {
            link,
            full_resyncs: Vec::new(),
            continues: Vec::new(),
            reconnects: Vec::new(),
            rdb: Vec::new(),
            rdb_ends: 0,
            stream: StreamLog::default(),
        }
    }

    async fn step(&mut self) {
        let item = tokio::time::timeout(PATIENCE, self.link.next())
            .await
            .expect("an item in time");
        let Some(item) = item else {
            panic!(
                "the link ended: {}",
                self.link
                    .error()
                    .map_or("no error".to_string(), |e| e.to_string())
            );
        };
        match item {
            SourceItem::FullResync { replid, offset } => {
                self.full_resyncs.push((replid, offset));
                self.rdb.clear();
                self.stream = StreamLog::default();
            }
            SourceItem::Continue { replid, offset } => {
                if self.stream.start.is_some() {
                    assert_eq!(
                        offset, self.stream.end,
                        "CONTINUE resumes exactly after the last byte delivered"
                    );
                }
                self.continues.push((replid, offset));
            }
            SourceItem::Rdb(data) => self.rdb.extend_from_slice(&data),
            SourceItem::RdbEnd => self.rdb_ends += 1,
            SourceItem::Stream { offset, data } => self.stream.push(offset, &data),
            SourceItem::Reconnecting { reason } => self.reconnects.push(reason),
        }
    }

    async fn until_rdb_end(&mut self) {
        let ends = self.rdb_ends;
        while self.rdb_ends == ends {
            self.step().await;
        }
    }

    /// Until the stream has reached `offset` (the master's `master_repl_offset`).
    async fn until_offset(&mut self, offset: u64) {
        while self.stream.start.is_none() || self.stream.end < offset {
            self.step().await;
        }
        assert_eq!(self.stream.end, offset, "stream end == master_repl_offset");
    }
}

// ---------------------------------------------------------------------------------------
// The server's side.

fn info_u64(c: &mut Client, section: &str, field: &str) -> u64 {
    let info = c.info(section);
    info.get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {info:?}"))
}

fn master_offset(c: &mut Client) -> u64 {
    info_u64(c, "replication", "master_repl_offset")
}

/// `(state, offset)` of the server's first replica (`slave0:ip=…,state=online,offset=…`).
fn replica_state(c: &mut Client) -> Option<(String, u64)> {
    let info = c.info("replication");
    let line = info.get("slave0")?;
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some((field("state")?, field("offset")?.parse().ok()?))
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn set_commands(prefix: &str, range: std::ops::Range<usize>, value: &[u8]) -> Vec<Vec<Vec<u8>>> {
    range
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("{prefix}{i}").into_bytes(),
                value.to_vec(),
            ]
        })
        .collect()
}

fn keys(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn write_sets(c: &mut Client, prefix: &str, range: std::ops::Range<usize>, value: &[u8]) {
    let cmds = set_commands(prefix, range, value);
    for batch in cmds.chunks(100) {
        c.pipeline_ok(batch);
    }
}

// ---------------------------------------------------------------------------------------
// Full sync and stream, both framings, six server lines.

async fn full_sync_then_stream(spec: &ServerSpec, diskless: bool) {
    let mut args = vec!["--repl-diskless-sync", if diskless { "yes" } else { "no" }];
    if diskless {
        args.extend(["--repl-diskless-sync-delay", "0"]);
    }
    let server = Server::start(spec, &args);
    let what = format!("{spec} diskless={diskless}");
    let mut c = server.client();
    let model = fill(&mut c, spec);
    let dir = TempDir::new("replica-link");
    let applied = applied_at(0);
    let link = ReplicaLink::start(config(&server.url(), &dir), None, applied.clone())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // The snapshot was forked when +FULLRESYNC was sent, and nothing was written since.
    let at_snapshot = master_offset(&mut c);
    let mut con = Consumer::new(link);
    con.until_rdb_end().await;

    // The snapshot: at the master's offset, a whole RDB with every key written.
    let (replid, offset) = con.full_resyncs[0].clone();
    assert_eq!(replid.len(), 40, "{what}: replid {replid}");
    assert_eq!(offset, at_snapshot, "{what}: FULLRESYNC offset");
    let rdb = collect(&con.rdb, DecoderConfig::default())
        .unwrap_or_else(|e| panic!("{what}: the snapshot bytes are not a valid RDB: {e}"));
    let keys_in_rdb = rdb.keys.iter().filter(|k| !k.empty).count();
    assert_eq!(
        keys_in_rdb,
        model.keys.len(),
        "{what}: keys in the snapshot"
    );
    if spec.is_valkey() && spec.version >= (9, 1, 0) {
        assert!(
            con.rdb.starts_with(b"VALKEY080"),
            "{what}: {}",
            common::escape(&con.rdb[..9])
        );
    }
    // The framing was the one asked for.
    let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
    let target = if diskless { "sockets" } else { "disk" };
    assert!(
        log.contains(&format!("BGSAVE for SYNC with target: {target}"))
            || log.contains(&format!("BGSAVE for SYNC with target: replicas {target}"))
            || log.contains(&format!("BGSAVE for SYNC with target: slaves {target}")),
        "{what}: the server log does not show a {target} transfer:\n{}",
        server.log_tail(20)
    );

    // The stream: every byte, at the master's offsets.
    write_sets(&mut c, "stream:", 0..100, b"v");
    c.ok(&["INCR", "counter"]);
    let m1 = master_offset(&mut c);
    con.until_offset(m1).await;
    assert_eq!(
        con.stream.start,
        Some(offset),
        "{what}: stream starts at the snapshot offset"
    );
    assert_eq!(
        con.stream.set_keys("stream:"),
        keys("stream:", 0..100),
        "{what}"
    );
    assert_eq!(con.stream.named("incr").len(), 1, "{what}");
    assert_eq!(con.link.received_offset(), m1);

    // We show as a replica on port 0 (REPLCONF listening-port), which Sentinel will not
    // take for a server it could promote.
    let line = c
        .info("replication")
        .get("slave0")
        .cloned()
        .unwrap_or_default();
    assert!(line.contains(",port=0,"), "{what}: {line}");

    // ACKs report what was applied, not what was received.
    applied.store(m1, Ordering::SeqCst);
    wait_for("the ACK of the applied offset", || {
        replica_state(&mut c) == Some(("online".into(), m1))
    })
    .await;
    c.ok(&["SET", "after", "1"]);
    let m2 = master_offset(&mut c);
    con.until_offset(m2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        replica_state(&mut c),
        Some(("online".into(), m1)),
        "{what}: received {m2} but applied {m1}: the ACK must say {m1}"
    );
    applied.store(m2, Ordering::SeqCst);
    wait_for("the ACK to advance with applied", || {
        replica_state(&mut c) == Some(("online".into(), m2))
    })
    .await;

    // WAIT: the master asks with REPLCONF GETACK; ack_now answers with the offset before
    // the GETACK (`applied` stays behind, so only ack_now can satisfy WAIT).
    let addr = server.addr();
    let waiter = std::thread::spawn(move || {
        let mut w = Client::connect(addr);
        w.ok(&["SET", "waited", "1"]);
        let t0 = Instant::now();
        (w.ok(&["WAIT", "1", "1000"]), t0.elapsed())
    });
    loop {
        con.step().await;
        let getack = con.stream.commands.iter().find(|(_, argv)| {
            argv.len() == 3
                && argv[0].eq_ignore_ascii_case(b"REPLCONF")
                && argv[1].eq_ignore_ascii_case(b"GETACK")
        });
        if let Some(&(at, _)) = getack {
            con.link.ack_now(at);
            break;
        }
    }
    let (reply, took) = tokio::task::spawn_blocking(move || waiter.join().expect("WAIT thread"))
        .await
        .expect("join");
    assert_eq!(reply, Reply::Int(1), "{what}: WAIT 1 1000 after ack_now");
    assert!(
        took < Duration::from_millis(900),
        "{what}: WAIT took {took:?}"
    );
    assert_eq!(con.link.reconnects(), 0);
    assert_eq!(info_u64(&mut c, "stats", "sync_full"), 1, "{what}");

    con.link.shutdown().await;
    assert!(!dir.path().join("spool").exists(), "spool dir removed");
    eprintln!(
        "ok {what}: snapshot {} bytes at {offset}, stream to {m2}",
        con.rdb.len()
    );
}

async fn both_framings(name: &str) {
    let Some(spec) = require_server(name) else {
        return;
    };
    for diskless in [false, true] {
        full_sync_then_stream(&spec, diskless).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_redis_3_0() {
    both_framings("redis-3.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_redis_5_0() {
    both_framings("redis-5.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_redis_7_0() {
    both_framings("redis-7.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_redis_7_4() {
    both_framings("redis-7.4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_valkey_8_1() {
    both_framings("valkey-8.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_valkey_9_1_in_its_native_format() {
    both_framings("valkey-9.1").await;
}

// ---------------------------------------------------------------------------------------
// Authentication.

async fn start_err(url: &str, dir: &TempDir) -> String {
    match ReplicaLink::start(config(url, dir), None, applied_at(0)).await {
        Ok(_) => panic!("{url}: the link started"),
        Err(e) => e.to_string(),
    }
}

async fn first_item(url: &str, dir: &TempDir) -> SourceItem {
    let mut link = ReplicaLink::start(config(url, dir), None, applied_at(0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let item = tokio::time::timeout(PATIENCE, link.next())
        .await
        .expect("in time");
    link.shutdown().await;
    item.expect("an item")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_requirepass_and_acl_users() {
    for name in ["redis-3.0", "redis-7.2"] {
        let Some(spec) = require_server(name) else {
            continue;
        };
        let server = Server::start(&spec, &[]);
        let addr = server.addr();
        let dir = TempDir::new("replica-auth");
        let mut c = server.client();
        c.ok(&["CONFIG", "SET", "requirepass", "s3cret-pw"]);
        c.ok(&["AUTH", "s3cret-pw"]);

        let item = first_item(&format!("redis://:s3cret-pw@{addr}"), &dir).await;
        assert!(
            matches!(item, SourceItem::FullResync { .. }),
            "{spec}: {item:?}"
        );

        let err = start_err(&format!("redis://:not-the-pw-42@{addr}"), &dir).await;
        assert!(
            err.starts_with(&format!("source {addr} refused AUTH: "))
                && !err.contains("not-the-pw-42"),
            "{spec}: {err}"
        );
        let err = start_err(&format!("redis://{addr}"), &dir).await;
        assert!(
            err.starts_with(&format!(
                "source {addr} requires a password (it answered PING with `NOAUTH"
            )),
            "{spec}: {err}"
        );

        if spec.redis_at_least(6, 0) {
            c.ok(&[
                "ACL",
                "SETUSER",
                "repl",
                "on",
                ">repl-pw-77",
                "+psync",
                "+replconf",
                "+ping",
            ]);
            c.ok(&[
                "ACL",
                "SETUSER",
                "weak",
                "on",
                ">weak-pw-88",
                "+ping",
                "+replconf",
            ]);
            let item = first_item(&format!("redis://repl:repl-pw-77@{addr}"), &dir).await;
            assert!(
                matches!(item, SourceItem::FullResync { .. }),
                "{spec}: {item:?}"
            );
            let err = start_err(&format!("redis://repl:wrong-pw-99@{addr}"), &dir).await;
            assert!(
                err.starts_with(&format!(
                    "source {addr} refused AUTH as user `repl`: WRONGPASS"
                )) && !err.contains("wrong-pw-99"),
                "{spec}: {err}"
            );
            let err = start_err(&format!("redis://weak:weak-pw-88@{addr}"), &dir).await;
            assert!(
                err.starts_with(&format!("source {addr} refused PSYNC: NOPERM"))
                    && err.ends_with("the source user needs at least +psync +replconf +ping")
                    && !err.contains("weak-pw-88"),
                "{spec}: {err}"
            );
        }
        eprintln!("ok {spec}");
    }
}

// ---------------------------------------------------------------------------------------
// Through a proxy: cuts and re-chunking.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_with_continue_after_a_cut_in_the_middle_of_a_command() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let server = Server::start(&spec, &["--repl-diskless-sync-delay", "0"]);
    let mut c = server.client();
    write_sets(&mut c, "pre:", 0..50, b"x");
    let proxy = Proxy::start(server.addr(), Mode::Plain);
    let dir = TempDir::new("replica-cut");
    let link = ReplicaLink::start(config(&proxy.url(), &dir), None, applied_at(0))
        .await
        .expect("link");
    let mut con = Consumer::new(link);
    con.until_rdb_end().await;

    write_sets(&mut c, "k:", 0..200, b"value");
    con.until_offset(master_offset(&mut c)).await;
    // 25 bytes into the next command (a SET of ~40 bytes), the connection is cut.
    proxy.cut_after(25);
    write_sets(&mut c, "k:", 200..500, b"value");
    wait_for("the cut", || proxy.cut_done()).await;
    write_sets(&mut c, "k:", 500..600, b"value");
    let m = master_offset(&mut c);
    con.until_offset(m).await;

    assert_eq!(con.reconnects.len(), 1, "{:?}", con.reconnects);
    assert_eq!(con.continues.len(), 1, "resumed with +CONTINUE");
    assert_eq!(con.full_resyncs.len(), 1, "no second full sync");
    assert_eq!(
        con.stream.set_keys("k:"),
        keys("k:", 0..600),
        "nothing lost or repeated"
    );
    assert_eq!(proxy.connections(), 2);
    assert_eq!(con.link.reconnects(), 1);
    assert_eq!(info_u64(&mut c, "stats", "sync_partial_ok"), 1);
    assert_eq!(info_u64(&mut c, "stats", "sync_full"), 1);

    // A new link resumes where the old one's consumer stopped (a restarted ferry).
    let (replid, _) = con.continues[0].clone();
    con.link.shutdown().await;
    write_sets(&mut c, "later:", 0..10, b"v");
    let resume = Resume {
        replid: replid.clone(),
        offset: m,
    };
    let link = ReplicaLink::start(config(&server.url(), &dir), Some(resume), applied_at(m))
        .await
        .expect("resume");
    let mut con = Consumer::new(link);
    con.step().await;
    assert_eq!(con.continues, vec![(replid, m)]);
    con.until_offset(master_offset(&mut c)).await;
    assert_eq!(con.stream.start, Some(m));
    assert_eq!(con.stream.set_keys("later:"), keys("later:", 0..10));
    assert_eq!(info_u64(&mut c, "stats", "sync_partial_ok"), 2);
    con.link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_during_the_snapshot_means_a_new_full_sync() {
    let Some(spec) = require_server("redis-7.0") else {
        return;
    };
    let server = Server::start(
        &spec,
        &["--repl-diskless-sync-delay", "0", "--rdbcompression", "no"],
    );
    let mut c = server.client();
    write_sets(&mut c, "pre:", 0..100, &[b'p'; 5000]);
    let proxy = Proxy::start(server.addr(), Mode::Plain);
    // The handshake replies and ~20 KB of the ~500 KB snapshot pass, then the cut.
    proxy.cut_after(20_000);
    let dir = TempDir::new("replica-cut-rdb");
    let link = ReplicaLink::start(config(&proxy.url(), &dir), None, applied_at(0))
        .await
        .expect("link");
    let mut con = Consumer::new(link);
    con.until_rdb_end().await;
    assert_eq!(con.full_resyncs.len(), 2, "a second full sync");
    assert_eq!(con.reconnects.len(), 1);
    let rdb = collect(&con.rdb, DecoderConfig::default()).expect("the second snapshot is whole");
    assert_eq!(rdb.keys.len(), 100);
    write_sets(&mut c, "k:", 0..10, b"v");
    con.until_offset(master_offset(&mut c)).await;
    assert_eq!(con.stream.set_keys("k:"), keys("k:", 0..10));
    assert_eq!(info_u64(&mut c, "stats", "sync_full"), 2);
    con.link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_while_the_source_has_no_master_link() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    // A replica of a master that does not exist answers PSYNC with -NOMASTERLINK.
    let server = Server::start(
        &spec,
        &[
            "--replicaof",
            "127.0.0.1",
            "1",
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let addr = server.addr();
    let promote = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        Client::connect(addr).ok(&["REPLICAOF", "NO", "ONE"]);
    });
    let dir = TempDir::new("replica-nomasterlink");
    let t0 = Instant::now();
    let mut link = ReplicaLink::start(config(&server.url(), &dir), None, applied_at(0))
        .await
        .expect("the link starts once the source has become a master");
    assert!(t0.elapsed() >= Duration::from_millis(400), "it waited");
    let item = tokio::time::timeout(PATIENCE, link.next())
        .await
        .expect("in time");
    assert!(
        matches!(item, Some(SourceItem::FullResync { .. })),
        "{item:?}"
    );
    promote.join().expect("promote");
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_eof_mark_split_and_glued_to_the_stream() {
    let Some(spec) = require_server("valkey-8.1") else {
        return;
    };
    let server = Server::start(
        &spec,
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let mut c = server.client();
    write_sets(&mut c, "pre:", 0..30, b"x");
    let proxy = Proxy::start(server.addr(), Mode::SplitEofMark);
    let dir = TempDir::new("replica-mark");
    let link = ReplicaLink::start(config(&proxy.url(), &dir), None, applied_at(0))
        .await
        .expect("link");
    // Written after the fork: they are the first stream bytes, which the proxy glues to
    // the second half of the mark.
    write_sets(&mut c, "g:", 0..50, b"glued");
    let m = master_offset(&mut c);
    let mut con = Consumer::new(link);
    con.until_rdb_end().await;
    con.until_offset(m).await;

    assert!(
        proxy.glued_stream_bytes() > 0,
        "the proxy glued stream bytes to the mark"
    );
    let rdb = collect(&con.rdb, DecoderConfig::default()).expect("a valid RDB");
    assert_eq!(rdb.keys.len(), 30);
    assert_eq!(con.stream.start, Some(con.full_resyncs[0].1));
    assert_eq!(con.stream.set_keys("g:"), keys("g:", 0..50));
    con.link.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Malformed input from a scripted source.

/// How a scripted source answers a command (argv).
type Answer = dyn Fn(&[Vec<u8>]) -> Vec<u8> + Send + Sync;

/// A fake source on loopback: answers each command with `reply(argv)`, then keeps the
/// connection open (reading) until the client goes. Serves any number of connections.
fn scripted_source(
    reply: impl Fn(&[Vec<u8>]) -> Vec<u8> + Send + Sync + 'static,
) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reply = Arc::new(reply);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let reply = reply.clone();
            std::thread::spawn(move || {
                let (mut input, mut parsed, mut buf) = (Vec::new(), 0, vec![0u8; 4096]);
                loop {
                    let n = match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    input.extend_from_slice(&buf[..n]);
                    // After the PSYNC reply the client sends `\n` keepalives and ACKs.
                    while input.get(parsed) == Some(&b'\n') {
                        parsed += 1;
                    }
                    while let Some((argv, used)) = parse_command(&input[parsed..]) {
                        parsed += used;
                        if conn.write_all(&reply(&argv)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A well-behaved handshake, with `psync` as the answer to PSYNC.
fn psync_answer(psync: &'static [u8]) -> impl Fn(&[Vec<u8>]) -> Vec<u8> + Send + Sync {
    move |argv| match argv[0].to_ascii_uppercase().as_slice() {
        b"PING" => b"+PONG\r\n".to_vec(),
        b"PSYNC" => psync.to_vec(),
        b"REPLCONF" if argv[1].eq_ignore_ascii_case(b"ACK") => Vec::new(),
        _ => b"+OK\r\n".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replies_are_errors_that_show_the_bytes() {
    let dir = TempDir::new("replica-malformed");
    let long = [&[b'x'; 300][..], b"\r\n"].concat();
    let long: &'static [u8] = Box::leak(long.into_boxed_slice());
    let cases: Vec<(Box<Answer>, String)> =
        vec![
        (
            Box::new(|_: &[Vec<u8>]| b"hello\r\n".to_vec()),
            "sent a malformed reply to PING: `hello\\r\\n`".into(),
        ),
        (
            Box::new(move |_: &[Vec<u8>]| long.to_vec()),
            format!("sent a malformed reply to PING: `{}… (302 bytes)`", "x".repeat(120)),
        ),
        (
            Box::new(psync_answer(b"+FULLRESYNC nope\r\n")),
            "sent an unexpected reply to PSYNC: `+FULLRESYNC nope`".into(),
        ),
        (
            Box::new(psync_answer(b":12\r\n")),
            "sent an unexpected reply to PSYNC: `:12\\r\\n`".into(),
        ),
        (
            Box::new(psync_answer(b"-ERR unknown command 'PSYNC'\r\n")),
            "refused PSYNC: ERR unknown command 'PSYNC'; the source does not offer replication \
             (use a SCAN-based source)"
                .into(),
        ),
    ];
    for (reply, want) in cases {
        let addr = scripted_source(reply);
        let err = start_err(&format!("redis://{addr}"), &dir).await;
        assert_eq!(err, format!("source {addr} {want}"));
    }

    // A bad transfer header comes after start(): the link ends with the error.
    let addr = scripted_source(psync_answer(
        b"+FULLRESYNC 0123456789012345678901234567890123456789 7\r\n\n\n$12x\r\n",
    ));
    let mut link = ReplicaLink::start(
        config(&format!("redis://{addr}"), &dir),
        None,
        applied_at(0),
    )
    .await
    .expect("link");
    // The FullResync may or may not come first: a fatal error ends the items at once.
    while let Some(item) = link.next().await {
        assert!(
            matches!(item, SourceItem::FullResync { offset: 7, .. }),
            "{item:?}"
        );
    }
    assert_eq!(
        link.error().map(|e| e.to_string()),
        Some(format!(
            "source {addr} sent a malformed RDB transfer header: `$12x`"
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_asks_for_the_next_byte_and_adopts_the_replid_of_continue() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let new_id = "b".repeat(40);
    let continue_reply = format!("+CONTINUE {new_id}\r\n*1\r\n$4\r\nPING\r\n").into_bytes();
    let addr = scripted_source(move |argv| {
        log.lock().expect("log").push(argv.to_vec());
        match argv[0].to_ascii_uppercase().as_slice() {
            b"PSYNC" => continue_reply.clone(),
            b"REPLCONF" if argv[1].eq_ignore_ascii_case(b"ACK") => Vec::new(),
            _ => b"+OK\r\n".to_vec(),
        }
    });
    let dir = TempDir::new("replica-resume");
    let resume = Resume {
        replid: "a".repeat(40),
        offset: 100,
    };
    let applied = applied_at(100);
    let mut link = ReplicaLink::start(
        config(&format!("redis://{addr}"), &dir),
        Some(resume),
        applied.clone(),
    )
    .await
    .expect("link");
    let first = link.next().await;
    assert_eq!(
        first,
        Some(SourceItem::Continue {
            replid: new_id.clone(),
            offset: 100
        })
    );
    let second = link.next().await;
    assert_eq!(
        second,
        Some(SourceItem::Stream {
            offset: 100,
            data: bytes::Bytes::from_static(b"*1\r\n$4\r\nPING\r\n")
        })
    );
    assert_eq!(link.received_offset(), 114);
    // ACKs say what was applied (100), not what was received (114)…
    let acked = |n: &'static [u8]| {
        let seen = seen.clone();
        move || {
            let seen = seen.lock().expect("log");
            seen.iter()
                .any(|a| a.len() == 3 && a[1] == b"ACK" && a[2] == n)
        }
    };
    wait_for("an ACK of 100", acked(b"100")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!acked(b"114")());
    // …until the consumer says it applied more.
    applied.store(114, Ordering::SeqCst);
    wait_for("an ACK of 114", acked(b"114")).await;
    link.shutdown().await;
    let seen = seen.lock().expect("log").clone();
    let shown: Vec<String> = seen
        .iter()
        .map(|argv| {
            argv.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let psync = format!("PSYNC {} 101", "a".repeat(40));
    assert_eq!(
        shown[..5],
        [
            "PING",
            "REPLCONF listening-port 0",
            "REPLCONF capa eof capa psync2",
            "REPLCONF version 9.1.0",
            psync.as_str()
        ]
    );
    let acks: Vec<&str> = shown[5..].iter().map(String::as_str).collect();
    assert!(
        acks.iter()
            .all(|a| *a == "REPLCONF ACK 100" || *a == "REPLCONF ACK 114"),
        "{acks:?}"
    );
}

/// After a diskless transfer the master waits for an ACK before it streams; that ACK (and
/// every other one until the consumer is past the snapshot) claims 0, not the snapshot's
/// offset: the target has not applied the snapshot yet, and `WAIT` would count us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_claim_nothing_while_the_snapshot_is_pending() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let log = seen.clone();
    let mark = "m".repeat(40);
    let psync = format!(
        "+FULLRESYNC {} 1000\r\n$EOF:{mark}\r\nREDIS0009-{mark}",
        "a".repeat(40)
    )
    .into_bytes();
    let addr = scripted_source(move |argv| match argv[0].to_ascii_uppercase().as_slice() {
        b"PING" => b"+PONG\r\n".to_vec(),
        b"PSYNC" => psync.clone(),
        b"REPLCONF" if argv[1].eq_ignore_ascii_case(b"ACK") => {
            log.lock().expect("log").push(argv[2].clone());
            Vec::new()
        }
        _ => b"+OK\r\n".to_vec(),
    });
    let dir = TempDir::new("replica-ack-snapshot");
    // What a consumer holds at a full resync's offset before it has applied anything.
    let applied = applied_at(1000);
    let mut link = ReplicaLink::start(config(&format!("redis://{addr}"), &dir), None, applied)
        .await
        .expect("link");
    let acks = |seen: &Arc<std::sync::Mutex<Vec<Vec<u8>>>>| seen.lock().expect("log").clone();
    // The first ACK comes at the mark, more every 50 ms while no stream byte arrives.
    wait_for("three ACKs after the transfer", || acks(&seen).len() >= 3).await;
    assert!(
        acks(&seen).iter().all(|a| a == b"0"),
        "ACKs before the snapshot was consumed: {:?}",
        acks(&seen)
    );
    // The consumer takes the snapshot: from then on the ACK says `applied`.
    assert!(matches!(
        link.next().await,
        Some(SourceItem::FullResync { offset: 1000, .. })
    ));
    loop {
        match link.next().await.expect("the snapshot's items") {
            SourceItem::RdbEnd => break,
            SourceItem::Rdb(_) => {}
            other => panic!("{other:?}"),
        }
    }
    wait_for("an ACK of 1000", || {
        acks(&seen).last().is_some_and(|a| a == b"1000")
    })
    .await;
    link.shutdown().await;
}

/// A refused partial resync is asked again from the end of the last data command the
/// consumer saw, but only once the target has applied all that was received: data
/// commands still queued after that point would come again and be applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_is_retried_from_the_last_data_command_only_when_caught_up() {
    // The first connection continues at 100 with `SET k v` (100..127) and a PING (..141),
    // then goes quiet until the link gives up on it; the next `PSYNC A 142` is refused.
    let id = "a".repeat(40);
    let run = |applied: u64, data_offset: u64| {
        let id = id.clone();
        async move {
            let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let log = seen.clone();
            let addr = scripted_source(move |argv| match argv[0].to_ascii_uppercase().as_slice() {
                b"PING" => b"+PONG\r\n".to_vec(),
                b"PSYNC" => {
                    let at = String::from_utf8_lossy(&argv[2]).into_owned();
                    log.lock().expect("log").push(at.clone());
                    match at.as_str() {
                        "101" => b"+CONTINUE\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n\
                                   *1\r\n$4\r\nPING\r\n"
                            .to_vec(),
                        "142" | "-1" => {
                            format!("+FULLRESYNC {} 500\r\n", "b".repeat(40)).into_bytes()
                        }
                        _ => b"+CONTINUE\r\n".to_vec(),
                    }
                }
                b"REPLCONF" if argv[1].eq_ignore_ascii_case(b"ACK") => Vec::new(),
                _ => b"+OK\r\n".to_vec(),
            });
            let dir = TempDir::new("replica-retry-data");
            let mut cfg = config(&format!("redis://{addr}"), &dir);
            cfg.read_timeout = Duration::from_millis(300);
            cfg.data_offset = Some(Arc::new(AtomicU64::new(data_offset)));
            let resume = Resume {
                replid: id,
                offset: 100,
            };
            let mut link = ReplicaLink::start(cfg, Some(resume), applied_at(applied))
                .await
                .expect("link");
            let mut items = Vec::new();
            while items.len() < 50 {
                let item = tokio::time::timeout(PATIENCE, link.next())
                    .await
                    .expect("an item")
                    .expect("the link goes on");
                let last = matches!(
                    item,
                    SourceItem::FullResync { .. } | SourceItem::Continue { offset: 127, .. }
                );
                items.push(item);
                if last {
                    break;
                }
            }
            link.shutdown().await;
            let psyncs = seen.lock().expect("log").clone();
            (psyncs, items.pop().expect("items"))
        }
    };
    // Caught up (the target applied 141, the SET was the last data command): asked again
    // from 127, and continued there; only the PING comes again.
    let (psyncs, last) = run(141, 127).await;
    assert_eq!(psyncs[..3], ["101", "142", "128"], "{psyncs:?} {last:?}");
    assert!(
        matches!(last, SourceItem::Continue { offset: 127, .. }),
        "{last:?}"
    );
    // Behind (the SET is received but not applied, and the consumer's last data command
    // ends at 100): asking again from 100 would bring the SET twice. A full resync.
    let (psyncs, last) = run(100, 100).await;
    assert_eq!(psyncs[..2], ["101", "142"], "{psyncs:?}");
    assert!(!psyncs[1..].contains(&"101".to_string()), "{psyncs:?}");
    assert!(
        matches!(last, SourceItem::FullResync { offset: 500, .. }),
        "{last:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A slow consumer: the spool.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_spools_to_disk_and_keeps_the_link() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let server = Server::start(
        &spec,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--client-output-buffer-limit",
            "replica 1mb 512kb 5",
        ],
    );
    let mut c = server.client();
    let dir = TempDir::new("replica-slow");
    let mut cfg = config(&server.url(), &dir);
    cfg.memory_queue = 256 << 10;
    cfg.spool_cap = 1 << 30;
    let spool_dir = cfg.spool_dir.clone();
    let link = ReplicaLink::start(cfg, None, applied_at(0))
        .await
        .expect("link");
    // Until the stream flows, a master buffers it for the replica whatever the replica
    // does (its snapshot is still on the way, or the master waits for the first ACK): no
    // replica survives 50 MB in that window under a 1 MiB limit. Wait for the stream.
    let at_snapshot = link.received_offset();
    c.ok(&["SET", "first", "1"]);
    wait_for("the stream to flow", || {
        link.received_offset() > at_snapshot
    })
    .await;

    // ~50 MB of writes while nobody calls next(), at ~50 MB/s: 50 times the limit, which a
    // replica that stopped reading would pass within 20 ms. (Unpaced, the writes run at
    // several hundred MB/s and a scheduling hiccup of a few ms on a loaded two-core machine
    // would pass a 1 MiB limit whoever the replica is.)
    let value = vec![b'v'; 10_000];
    let t0 = Instant::now();
    for (n, batch) in set_commands("big:", 0..5000, &value).chunks(20).enumerate() {
        c.pipeline_ok(batch);
        let due = t0 + Duration::from_millis(4 * (n as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let m = master_offset(&mut c);
    wait_for("the link to receive everything", || {
        link.received_offset() == m
    })
    .await;
    let took = t0.elapsed();

    // Still the first connection, never dropped by the server.
    let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
    for bad in [
        "output buffer limits",
        "isconnecting",
        "Connection with replica",
    ] {
        assert!(
            !log.contains(bad),
            "the server dropped us:\n{}",
            server.log_tail(20)
        );
    }
    assert_eq!(link.reconnects(), 0);
    assert_eq!(info_u64(&mut c, "replication", "connected_slaves"), 1);
    // Everything is waiting for the consumer, nearly all of it on disk.
    let on_disk: u64 = std::fs::read_dir(&spool_dir)
        .expect("spool dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(
        link.spooled_bytes() > 50_000_000,
        "spooled {}",
        link.spooled_bytes()
    );
    assert!(on_disk > 45_000_000, "{on_disk} bytes in spool files");
    assert_eq!(on_disk, link.spool_disk_bytes());
    eprintln!(
        "received {} MB in {took:?} with the consumer asleep; {} MB on disk",
        m / 1_000_000,
        on_disk / 1_000_000
    );

    let mut con = Consumer::new(link);
    con.until_rdb_end().await;
    con.until_offset(m).await;
    assert_eq!(con.stream.set_keys("big:"), keys("big:", 0..5000));
    let big = con.stream.named("set");
    assert!(big
        .iter()
        .filter(|a| a[1].starts_with(b"big:"))
        .all(|a| a[2] == value));
    assert_eq!(con.link.spooled_bytes(), 0);
    assert_eq!(con.link.spool_disk_bytes(), 0);
    assert_eq!(info_u64(&mut c, "stats", "sync_full"), 1);
    con.link.shutdown().await;
    assert!(!spool_dir.exists(), "spool files removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_cap_stops_the_link_with_a_clear_error() {
    let Some(spec) = require_server("valkey-8.1") else {
        return;
    };
    let server = Server::start(&spec, &["--repl-diskless-sync-delay", "0"]);
    let mut c = server.client();
    let dir = TempDir::new("replica-cap");
    let mut cfg = config(&server.url(), &dir);
    cfg.memory_queue = 64 << 10;
    cfg.spool_cap = 1 << 20;
    let spool_dir = cfg.spool_dir.clone();
    let mut link = ReplicaLink::start(cfg, None, applied_at(0))
        .await
        .expect("link");
    write_sets(&mut c, "fill:", 0..300, &[b'x'; 10_000]);
    // The reader stops at the cap; wait until the queue stops changing.
    let mut last = (u64::MAX, Instant::now());
    wait_for("the link to stop reading", || {
        let now = link.spooled_bytes();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(500)
    })
    .await;
    let item = tokio::time::timeout(PATIENCE, link.next())
        .await
        .expect("in time");
    assert!(item.is_none(), "the link goes on: {item:?}");
    let err = link.error().expect("an error").to_string();
    assert_eq!(
        err,
        format!(
            "spool reached its cap of 1 MiB at {}: the target is slower than the source; \
             raise [sync] spool_cap or speed up the target",
            spool_dir.display()
        )
    );
    drop(link);
    // Removal happens in drop, synchronously.
    assert!(!spool_dir.exists(), "spool files removed");
}

// ---------------------------------------------------------------------------------------
// Throughput (run by hand: cargo test --release --test replica_link -- --ignored --nocapture).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 1 GB of data, ~20 s"]
async fn throughput_of_a_1gb_snapshot() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    for diskless in ["no", "yes"] {
        let server = Server::start(
            &spec,
            &[
                "--rdbcompression",
                "no",
                "--repl-diskless-sync",
                diskless,
                "--repl-diskless-sync-delay",
                "0",
            ],
        );
        let mut c = server.client();
        c.ok(&["DEBUG", "POPULATE", "1000000", "key", "1000"]);
        let dir = TempDir::new("replica-bench");
        let t0 = Instant::now();
        let mut link = ReplicaLink::start(config(&server.url(), &dir), None, applied_at(0))
            .await
            .expect("link");
        let mut bytes = 0u64;
        loop {
            match link.next().await.expect("item") {
                SourceItem::Rdb(b) => bytes += b.len() as u64,
                SourceItem::RdbEnd => break,
                _ => {}
            }
        }
        let link_secs = t0.elapsed().as_secs_f64();
        link.shutdown().await;

        // The same transfer into redis-cli (C), writing to tmpfs (it fsyncs, so not
        // /dev/null): the pace of the server and the loopback.
        let cli = common::server_bin("redis-cli").expect("redis-cli");
        let out = std::path::Path::new("/dev/shm")
            .join(format!("ferry-bench-{}.rdb", std::process::id()));
        let t0 = Instant::now();
        let status = std::process::Command::new(cli)
            .args(["-p", &server.port().to_string(), "--rdb"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("redis-cli");
        let cli_secs = t0.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&out);
        assert!(status.success());
        eprintln!(
            "diskless={diskless}: {} MB snapshot: ferry link {:.0} MB/s ({link_secs:.2} s), \
             redis-cli --rdb {:.0} MB/s ({cli_secs:.2} s), ratio {:.2}",
            bytes / 1_000_000,
            bytes as f64 / 1e6 / link_secs,
            bytes as f64 / 1e6 / cli_secs,
            cli_secs / link_secs
        );
    }
}

/// A fake master on loopback: answers the handshake with `+OK`, then `PSYNC` with
/// `+FULLRESYNC` and a `$<len>` "snapshot" of `len` bytes sent from memory, then closes.
/// Serves one connection.
/// It is as fast as the loopback allows, so it measures the link itself.
fn fake_master(len: u64) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        // One connection: a reconnect after the transfer finds nobody (and retries).
        if let Some(Ok(mut conn)) = listener.incoming().next() {
            let mut input = Vec::new();
            let mut parsed = 0;
            let mut buf = vec![0u8; 4096];
            'handshake: loop {
                let n = match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                input.extend_from_slice(&buf[..n]);
                while let Some((argv, used)) = parse_command(&input[parsed..]) {
                    parsed += used;
                    if argv[0].eq_ignore_ascii_case(b"PSYNC") {
                        let head = format!("+FULLRESYNC {} 0\r\n${len}\r\n", "f".repeat(40));
                        let _ = conn.write_all(head.as_bytes());
                        let block = vec![b'r'; 1 << 20];
                        let mut left = len;
                        while left > 0 {
                            let n = left.min(block.len() as u64) as usize;
                            if conn.write_all(&block[..n]).is_err() {
                                break;
                            }
                            left -= n as u64;
                        }
                        // Closing with unread input (the replica's `\n`s) would reset the
                        // connection and drop what the replica has not read yet: half-close
                        // and drain instead.
                        let _ = conn.shutdown(std::net::Shutdown::Write);
                        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                        break 'handshake;
                    }
                    let _ = conn.write_all(b"+OK\r\n");
                }
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 2 GiB through the loopback"]
async fn throughput_against_a_fake_master() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LEN: u64 = 2 << 30;
    let mb = LEN as f64 / 1e6;

    // The physical limit: a plain socket read loop over the same transfer.
    let addr = fake_master(LEN);
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 512 << 10];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf).await.expect("read") {
            0 => break,
            n => total += n as u64,
        }
    }
    let raw = t0.elapsed().as_secs_f64();
    assert!(total > LEN);

    let dir = TempDir::new("replica-bench");
    let mut results = Vec::new();
    for asleep in [false, true] {
        let addr = fake_master(LEN);
        let mut cfg = config(&format!("redis://{addr}"), &dir);
        cfg.spool_cap = 3 << 30;
        let t0 = Instant::now();
        let mut link = ReplicaLink::start(cfg, None, applied_at(0))
            .await
            .expect("link");
        if asleep {
            // The consumer sleeps until everything is received: all of it goes to disk.
            wait_for("the transfer", || link.spooled_bytes() >= LEN).await;
        }
        let received = t0.elapsed().as_secs_f64();
        let mut bytes = 0u64;
        loop {
            match link.next().await.expect("item") {
                SourceItem::Rdb(b) => bytes += b.len() as u64,
                SourceItem::RdbEnd => break,
                _ => {}
            }
        }
        let all = t0.elapsed().as_secs_f64();
        assert_eq!(bytes, LEN);
        link.shutdown().await;
        results.push((received, all));
    }
    eprintln!(
        "2 GiB from a fake master: plain socket read {:.0} MB/s; link with a consumer {:.0} MB/s \
         ({:.2} of the plain read); link with the consumer asleep (all to the disk spool) \
         {:.0} MB/s received, then read back at {:.0} MB/s",
        mb / raw,
        mb / results[0].1,
        raw / results[0].1,
        mb / results[1].0,
        mb / (results[1].1 - results[1].0),
    );
}
