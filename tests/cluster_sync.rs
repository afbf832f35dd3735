//! `ferry sync` into real clusters: standalone → 3-master cluster with writes during the
//! snapshot and the stream (cross-slot DEL/MSET/MSETNX/UNLINK, transactions within and
//! across slots, scripts), a multi-db source into a cluster through `[transform] db_map`,
//! and a target failover (CLUSTER FAILOVER on a replica) and slot migration (SETSLOT
//! IMPORTING/MIGRATING + MIGRATE) in the middle of the stream. Both sides are compared
//! key by key by the harness (its own client, its own slot hashing), never by ferry.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{slot_of, slot_owners, Cluster};
use common::dataset::{fill, read_back, Model};
use common::ferry::Ferry;
use common::ferry_proc;
use common::watchdog::StopOnDrop;
use common::workload::{self, Workload};
use common::{assert_models_equal, require_server, Client, Server, ServerSpec, TempDir};

const SYNC_TIMEOUT: Duration = Duration::from_secs(90);

/// One test at a time: several 3- and 6-node clusters starting and failing over side by
/// side on 2 cores made the runs flaky (a sync stuck on READONLY at the start of one test
/// while others started their clusters).
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn offset(source: &Server) -> impl Fn() -> u64 + '_ {
    move || {
        source
            .client()
            .info("replication")
            .get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Writes on db 0 only, with commands whose keys fall in several slots.
fn cluster_workload(
    addr: std::net::SocketAddr,
    ops: u64,
    seed: u64,
    spec: &ServerSpec,
    stop: &AtomicBool,
) -> u64 {
    let mut c = Client::connect(addr);
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut done = 0;
    let mut fresh = 0u64;
    while done < ops && !stop.load(Ordering::Relaxed) {
        let r = next();
        let n = r % 300;
        let k = |p: &str, m: u64| format!("cw:{p}:{}", n % m);
        let args: Vec<String> = match (r >> 20) % 16 {
            0 => vec!["SET".into(), k("s", 300), format!("v{r}")],
            1 => vec!["INCR".into(), k("ctr", 20)],
            2 => vec!["RPUSH".into(), k("l", 10), format!("e{n}")],
            3 => vec!["SADD".into(), k("set", 10), format!("m{n}")],
            4 => vec!["ZADD".into(), k("z", 10), n.to_string(), format!("m{n}")],
            5 => vec![
                "HSET".into(),
                k("h", 10),
                format!("f{}", n % 30),
                format!("v{r}"),
            ],
            6 => vec!["PEXPIRE".into(), k("s", 300), "3600000".into()],
            // Several slots in one command: split per slot by ferry.
            7 => vec![
                "DEL".into(),
                k("s", 300),
                format!("cw:s:{}", (n + 7) % 300),
                k("l", 10),
            ],
            8 => vec![
                "MSET".into(),
                k("s", 300),
                "m1".into(),
                format!("cw:s:{}", (n + 1) % 300),
                "m2".into(),
                format!("cw:s:{}", (n + 2) % 300),
                "m3".into(),
            ],
            9 => {
                fresh += 1;
                vec![
                    "MSETNX".into(),
                    format!("cw:nx:{fresh}:a"),
                    "1".into(),
                    format!("cw:nx:{fresh}:b"),
                    "2".into(),
                ]
            }
            10 if spec.redis_at_least(4, 0) => vec!["UNLINK".into(), k("set", 10), k("z", 10)],
            11 => {
                // A transaction across slots (split per slot) and one in a slot (atomic).
                c.cmd_str(&["MULTI"]);
                c.cmd_str(&["INCR", "cw:tx:a"]);
                c.cmd_str(&["INCR", "cw:tx:b"]);
                c.cmd_str(&["EXEC"]);
                c.cmd_str(&["MULTI"]);
                c.cmd_str(&["INCR", "{cw:tx}:a"]);
                c.cmd_str(&["RPUSH", "{cw:tx}:l", &n.to_string()]);
                c.cmd_str(&["EXEC"]);
                done += 1;
                continue;
            }
            12 => vec![
                "EVAL".into(),
                "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])".into(),
                "2".into(),
                format!("{{cw:ev}}:{}", n % 5),
                "{cw:ev}:n".into(),
                format!("{r}"),
            ],
            13 => vec!["SETEX".into(), k("ex", 20), "5000".into(), "v".into()],
            14 => vec!["LPOP".into(), k("l", 10)],
            _ => vec!["APPEND".into(), k("app", 10), format!("+{n}")],
        };
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = c.cmd_str(&refs);
        assert!(
            !reply.is_error() || refs[0] == "INCR",
            "{refs:?}: {reply:?}"
        );
        done += 1;
        if done % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    done
}

/// A source with every type and encoding in db 0 (the other dbs emptied), and bulk keys.
fn source_with_data(spec: &ServerSpec, keep_other_dbs: bool) -> Server {
    let source = Server::start(spec, &["--repl-diskless-sync", "no"]);
    let mut c = source.client();
    fill(&mut c, spec);
    if !keep_other_dbs {
        for db in [1, 5] {
            c.select(db);
            c.ok(&["FLUSHDB"]);
        }
        c.select(0);
    }
    let mut cmds = Vec::new();
    for i in 0..5000 {
        cmds.push(vec![
            b"SET".to_vec(),
            format!("bulk:{i}").into_bytes(),
            format!("value-{i}").into_bytes(),
        ]);
    }
    c.pipeline_ok(&cmds);
    source
}

/// Nothing refused: the only counters are the reported splits (and transactions split
/// across slots are among them).
fn assert_only_splits(status: &serde_json::Value) {
    let errors = status["errors"].as_object().cloned().unwrap_or_default();
    assert!(
        errors.keys().all(|k| k.starts_with("split_")),
        "no command refused: {status}"
    );
    assert!(
        errors.get("split_not_atomic").and_then(|v| v.as_u64()) > Some(0),
        "transactions across slots are reported: {status}"
    );
}

fn standalone_into_cluster(spec_name: &str) {
    let Some(spec) = require_server(spec_name) else {
        return;
    };
    let t0 = Instant::now();
    let cluster = Cluster::start(&spec, 3, 0);
    let source = source_with_data(&spec, false);
    let dir = TempDir::new("cluster-sync");
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2, stop2) = (source.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || cluster_workload(addr, 3000, 11, &spec2, &stop2));
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
    let ops = writer.join().expect("workload");
    let status = ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
    ferry_proc::stop(ferry);
    let expected = read_back(&mut source.client(), &spec, &[0]);
    let actual = cluster.read_back();
    assert_models_equal(&expected, &actual, 1_000);
    assert_only_splits(&status);
    assert!(
        status["errors"]["split_per_slot"].as_u64() > Some(0),
        "cross-slot commands were split: {status}"
    );
    let counts = cluster.key_counts();
    assert!(
        counts.iter().all(|&n| n > 1000),
        "keys spread over the masters: {counts:?}"
    );
    eprintln!(
        "{spec} -> 3-master cluster: {} keys equal ({counts:?}) after {ops} writes, errors {}, {:.1} s",
        actual.keys.len(),
        status["errors"],
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn standalone_into_cluster_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    standalone_into_cluster("redis-7.2");
}

/// A standalone source into a cluster, stopped with SIGTERM and started again with the same
/// `--checkpoint`: the second run continues the stream (no second full sync) with what the
/// source wrote meanwhile, and writes every slot's failover marker at once (the clean stop
/// had deleted them), so that a failover after the restart resumes from the markers. Then
/// a `kill -9` during writes: the next start resumes from those markers.
#[test]
fn standalone_into_cluster_resumes_from_a_checkpoint_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = source_with_data(&spec, false);
    let (dir1, dir2) = (TempDir::new("cluster-cp-1"), TempDir::new("cluster-cp-2"));
    let cp = dir1.path().join("checkpoint");
    let extra = ["--checkpoint", cp.to_str().expect("utf-8")];
    let stop = Arc::new(AtomicBool::new(false));
    let full_syncs = || {
        source.client().info("stats")["sync_full"]
            .parse::<u64>()
            .expect("sync_full")
    };

    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir1.path(), &extra);
    cluster_workload(source.addr(), 1000, 3, &spec, &stop);
    ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
    ferry_proc::stop(ferry);
    assert!(cp.exists(), "a clean stop saves a checkpoint");
    assert_eq!(
        cluster.read_back().keys.len(),
        read_back(&mut source.client(), &spec, &[0]).keys.len()
    );

    cluster_workload(source.addr(), 1500, 4, &spec, &stop);
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir2.path(), &extra);
    ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
    let log = ferry.log_text();
    assert!(log.contains("partial resync accepted"), "{log}");
    assert_eq!(full_syncs(), 1, "no second full sync");
    let expected = read_back(&mut source.client(), &spec, &[0]);
    let on_cluster: i64 = cluster.key_counts().iter().sum();
    assert_eq!(
        on_cluster as usize,
        expected.keys.len() + 16384,
        "every slot has its failover marker while the resumed run streams"
    );
    // Killed while INCR/RPUSH/MULTI run (the workload): no file, but every slot's marker
    // says how far it is, and the next start resumes from them (no second full sync).
    let (addr, spec2, stop2) = (source.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || cluster_workload(addr, 1_000_000, 5, &spec2, &stop2));
    std::thread::sleep(Duration::from_millis(700));
    ferry.signal(9);
    ferry.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("workload");
    assert!(!cp.exists(), "a killed ferry leaves no checkpoint");
    let dir3 = TempDir::new("cluster-cp-3");
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir3.path(), &extra);
    ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
    let log = ferry.log_text();
    ferry_proc::stop(ferry);
    assert!(log.contains("did not stop cleanly"), "{log}");
    assert_eq!(
        full_syncs(),
        1,
        "resumed from the slot markers after the kill"
    );
    let expected = read_back(&mut source.client(), &spec, &[0]);
    assert_models_equal(&expected, &cluster.read_back(), 1_000);
    assert_eq!(
        cluster.key_counts().iter().sum::<i64>() as usize,
        expected.keys.len(),
        "no marker left after the clean stop"
    );
}

/// The old-server path: CLUSTER SLOTS (no SHARDS), COMMAND without key specs (EVAL's keys
/// from the built-in table), no UNLINK.
#[test]
fn standalone_into_cluster_redis_3_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    standalone_into_cluster("redis-3.2");
}

/// dbs 0, 1, 3 and 5 of a standalone source into one cluster, each db under a prefix;
/// the workload switches dbs and flushes db 3 (a prefix-scoped delete on the cluster).
#[test]
fn multi_db_into_cluster_with_db_map_valkey_9_1() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("valkey-9.1") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = source_with_data(&spec, true);
    let dir = TempDir::new("cluster-dbmap");
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        "[transform]\ndb_map = { \"0\" = \"0:db0:\", \"1\" = \"0:db1:\", \"3\" = \"0:db3:\", \"5\" = \"0:db5:\" }\n",
    )
    .expect("config");
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2, stop2) = (source.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let w = Workload {
            ops: 2500,
            pause: Duration::from_millis(3),
            seed: 5,
        };
        workload::run(&mut c, &spec2, &w, &stop2)
    });
    let mut ferry = ferry_proc::start(
        &source.url(),
        &cluster.url(),
        dir.path(),
        &["--config", cfg.to_str().expect("utf-8")],
    );
    writer.join().expect("workload");
    // In the stream: db 3 gets keys (hash-tagged into several slots), is flushed (only
    // db3:* may go on the target, on every master), and gets one key back.
    let mut c = source.client();
    c.select(3);
    for i in 0..30 {
        c.ok(&["SET", &format!("gone:{i}"), "x"]);
    }
    c.ok(&["FLUSHDB"]);
    c.ok(&["SET", "kept", "y"]);
    c.select(0);
    let status = ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
    ferry_proc::stop(ferry);
    assert_only_splits(&status);
    let src = read_back(&mut source.client(), &spec, &[0, 1, 2, 3, 5]);
    assert!(
        src.keys.contains_key(&(3, b"kept".to_vec()))
            && src.keys.keys().filter(|k| k.0 == 0).count() > 5000
    );
    let mut expected = Model {
        functions: src.functions.clone(),
        ..Default::default()
    };
    for ((db, key), v) in src.keys {
        let mut k = format!("db{db}:").into_bytes();
        k.extend(key);
        expected.keys.insert((0, k), v);
    }
    let actual = cluster.read_back();
    assert_models_equal(&expected, &actual, 1_000);
}

/// A source with keys in db 1 into a cluster without a mapping: ferry refuses at start
/// and names the option.
#[test]
fn non_zero_db_into_cluster_without_mapping_stops_at_start() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = Server::start(&spec, &[]);
    let mut c = source.client();
    c.select(1);
    c.ok(&["SET", "k", "v"]);
    let dir = TempDir::new("cluster-nodbmap");
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
    let (code, log) = ferry_proc::wait_exit(&mut ferry, Duration::from_secs(30));
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("db_map") && log.contains("[1]"), "{log}");
}

/// Moves `slot` from the master that owns it to `to`, key by key, the way
/// `redis-cli --cluster reshard` does.
fn migrate_slot(cluster: &Cluster, slot: u16, to: &Server, before_done: impl FnOnce()) {
    let from = cluster.owner(slot);
    let (from_id, to_id) = (node_id(from), node_id(to));
    let s = slot.to_string();
    to.client()
        .ok(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    from.client()
        .ok(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let port = to.port().to_string();
    loop {
        let keys = from.client().ok(&["CLUSTER", "GETKEYSINSLOT", &s, "10"]);
        let keys: Vec<Vec<u8>> = keys
            .into_array()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| k.into_bytes())
            .collect();
        if keys.is_empty() {
            break;
        }
        for k in keys {
            let r = from.client().cmd(&[
                b"MIGRATE",
                b"127.0.0.1",
                port.as_bytes(),
                &k,
                b"0",
                b"5000",
                b"REPLACE",
            ]);
            assert!(!r.is_error(), "MIGRATE: {r:?}");
        }
        // Let writes hit the half-migrated slot (ASK for moved keys).
        std::thread::sleep(Duration::from_millis(20));
    }
    before_done();
    for n in &cluster.nodes {
        n.client()
            .cmd_str(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    }
}

/// After a failover, ferry reads every slot's marker to resume. A slot being migrated
/// whose marker has already moved answers the GET with `ASK`: the marker must be read on
/// the importing node (it once was an error retried until the wait ran out, while the
/// migration itself waited for ferry).
#[test]
fn failover_markers_are_read_through_a_slot_migration_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let replid = "1".repeat(40);
    let mut cc = cluster.client();
    for slot in 0..ferry::cluster::SLOTS as u16 {
        let key = ferry::target::failover::slot_marker_key(slot);
        let value = format!("{replid} {} 0", 1000 + u64::from(slot));
        let r = cc.cmd_key(&key, &[b"SET".as_slice(), &key, value.as_bytes()]);
        assert!(!r.is_error(), "SET of a marker: {r:?}");
    }
    let slot = slot_of(b"cw:s:1");
    let from_port = cluster.owner(slot).port();
    let to = cluster
        .current_masters()
        .into_iter()
        .find(|m| m.port() != from_port)
        .expect("another master");
    let (from, to_port) = (cluster.owner(slot), to.port());
    let s = slot.to_string();
    to.client()
        .ok(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &node_id(from)]);
    from.client()
        .ok(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &node_id(to)]);
    let key = ferry::target::failover::slot_marker_key(slot);
    let port = to_port.to_string();
    let r = from.client().cmd(&[
        b"MIGRATE",
        b"127.0.0.1",
        port.as_bytes(),
        &key,
        b"0",
        b"5000",
    ]);
    assert!(!r.is_error(), "MIGRATE: {r:?}");

    let seed = ferry::endpoint::Endpoint::parse(&cluster.url()).expect("cluster url");
    let markers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(ferry::target::failover::wait_for_cluster(
            &[seed],
            &replid,
            Duration::from_secs(10),
        ))
        .expect("the markers of a cluster with a slot in migration");
    assert_eq!(markers.len(), ferry::cluster::SLOTS);
    for (i, m) in markers.iter().enumerate() {
        assert_eq!(*m, Some((1000 + i as u64, 0)), "marker of slot {i}");
    }
}

fn node_id(s: &Server) -> String {
    s.client().ok(&["CLUSTER", "MYID"]).as_text().expect("id")
}

/// For the failover tests, one at a time: a 3-master redis-7.2 cluster with a replica
/// each, and a source with data whose backlog keeps the stream of the whole outage (node
/// timeout, failover, detection), so that ferry resumes from its markers rather than
/// copying everything again. `None`: redis-7.2 is not installed.
fn failover_setup() -> Option<(
    std::sync::MutexGuard<'static, ()>,
    ServerSpec,
    Cluster,
    Server,
)> {
    let alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let spec = require_server("redis-7.2")?;
    let cluster = Cluster::start(&spec, 3, 1);
    let source = source_with_data(&spec, false);
    source
        .client()
        .ok(&["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    Some((alone, spec, cluster, source))
}

/// A manual failover of master 0 and a slot migration while the stream runs; nothing lost.
#[test]
fn target_failover_and_slot_migration_during_the_stream_redis_7_2() {
    let Some((_alone, spec, cluster, source)) = failover_setup() else {
        return;
    };
    let dir = TempDir::new("cluster-topology");
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2, stop2) = (source.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || cluster_workload(addr, u64::MAX, 23, &spec2, &stop2));
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
    // In the stream, caught up with the source as it was a moment ago (with the workload
    // running, "consistent" is a matter of luck at any given instant).
    ferry.wait_status("the stream", |s| s["phase"] == "stream", SYNC_TIMEOUT);
    let now = offset(&source)();
    ferry_proc::wait_applied(&mut ferry, now, SYNC_TIMEOUT);

    // Failover: master 0's replica takes over (graceful, CLUSTER FAILOVER on the replica).
    let old_master = cluster.owner(0).port();
    replica_of(&cluster, old_master)
        .client()
        .ok(&["CLUSTER", "FAILOVER"]);
    let t0 = Instant::now();
    while cluster.owner(0).port() == old_master {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "failover did not happen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_ok();

    // Slot migration of a busy slot (cw:s:1 is written by the workload).
    let slot = slot_of(b"cw:s:1");
    let owner = cluster.owner(slot).port();
    let to = cluster
        .current_masters()
        .into_iter()
        .find(|m| m.port() != owner)
        .expect("another master");
    migrate_slot(&cluster, slot, to, || {
        // Keys of the slot written now are on neither side yet: the old owner answers
        // ASK, and ferry must send ASKING + the command to the importing node.
        let mut c = source.client();
        for i in 0..20 {
            let key = format!("{{cw:s:1}}:asked:{i}");
            c.ok(&["SET", &key, "a"]);
        }
        let want = offset(&source)();
        ferry_proc::wait_applied(&mut ferry, want, SYNC_TIMEOUT);
    });
    cluster.wait_ok();
    std::thread::sleep(Duration::from_millis(500));

    stop.store(true, Ordering::Relaxed);
    let ops = writer.join().expect("workload");
    let (status, log, actual) = stop_and_compare(ferry, &source, &spec, &cluster);
    // Even a graceful failover is taken from the markers: ferry cannot tell it from a
    // forced one by the map alone. (It is seen through a MOVED or the periodic read of the
    // map, whichever comes first, and the resumed run counts afresh: no MOVED count is
    // asserted.)
    assert_resumed_from_markers(&log);
    eprintln!(
        "failover + migration: {} keys equal after {ops} writes; errors {}",
        actual.keys.len(),
        status["errors"]
    );
    assert!(
        status["errors"]["ASK"].as_u64() > Some(0),
        "the migration asked: {status}"
    );
    assert!(actual
        .keys
        .contains_key(&(0, b"{cw:s:1}:asked:19".to_vec())));
}

/// A target master crashes (SIGKILL) in the middle of the stream and its replica takes
/// over after the node timeout; writes it had acknowledged may never have reached the
/// replica. ferry waits until every slot has a master, reads the per-slot failover
/// markers, and replays from the oldest one still needed, skipping per slot what is
/// there: nothing lost, and the non-idempotent writes of the workload (INCR, RPUSH,
/// LPOP, …) not applied twice.
#[test]
fn target_master_crash_during_the_stream_redis_7_2() {
    failover_during_the_stream("master crash", 29, crash_a_master);
}

/// A forced failover (`CLUSTER FAILOVER TAKEOVER`) of a target master that stays
/// reachable and had writes its replica never got: the router sees the slots pass to
/// the master's replica, stops, and the sync resumes from the markers; nothing lost and
/// nothing applied twice.
#[test]
fn target_forced_failover_with_the_old_master_reachable_redis_7_2() {
    failover_during_the_stream("forced failover", 31, take_over_from_a_master);
}

/// A target master cut off (frozen with SIGSTOP: its sockets stay open, nothing answers,
/// as in a network partition) while the workload runs: ferry's writes to it hang without a
/// reply, the cluster promotes its replica after the node timeout, and the old master, back
/// (SIGCONT), first serves what sat in its socket, then learns it was replaced and
/// becomes a replica, dropping whatever it accepted meanwhile. The cluster must end equal
/// to the source, each non-idempotent write applied once.
#[test]
fn target_master_partitioned_during_the_stream_redis_7_2() {
    failover_during_the_stream("partition", 37, partition_a_master);
}

/// The crash of the very node ferry was given as the target (the cluster's seed): ferry
/// must find the cluster through the other nodes it knows to resume.
#[test]
fn target_seed_master_crash_during_the_stream_redis_7_2() {
    failover_during_the_stream("seed master crash", 41, crash_the_seed_master);
}

/// A forced failover of a target master (`CLUSTER FAILOVER TAKEOVER`, the old master up,
/// its replica behind) in the middle of the snapshot: the new master lacks keys the old
/// one took, so ferry copies the snapshot again once every slot has a master.
#[test]
fn target_failover_during_the_snapshot_redis_7_2() {
    failover_without_writes(true);
}

/// The same once the snapshot is applied, with nothing written afterwards: no write
/// meets a `MOVED`, so only the periodic read of the slot map sees the failover; ferry
/// resumes from the markers before it says it is consistent again, and a stop must not
/// leave the lost keys behind.
#[test]
fn target_failover_while_the_stream_is_idle_redis_7_2() {
    failover_without_writes(false);
}

fn failover_without_writes(during_snapshot: bool) {
    let Some((_alone, spec, cluster, source)) = failover_setup() else {
        return;
    };
    // 80 MB that does not compress, in many keys: the snapshot lasts long enough for the
    // takeover to land inside it.
    let cmds: Vec<Vec<Vec<u8>>> = (0..20_000u64)
        .map(|i| {
            let mut v = Vec::with_capacity(4096);
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while v.len() < 4000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.extend_from_slice(&x.to_le_bytes());
            }
            vec![b"SET".to_vec(), format!("pop:{i}").into_bytes(), v]
        })
        .collect();
    source.client().pipeline_ok(&cmds);
    let dir = TempDir::new("cluster-quiet-failover");
    let ferry = if during_snapshot {
        // The replica gets none of the snapshot.
        let lagging = stop_the_replica(&cluster, b"pop:1");
        let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
        ferry.wait_status(
            "the snapshot under way",
            |s| s["phase"] == "snapshot" && s["snapshot"]["keys"].as_u64() > Some(500),
            SYNC_TIMEOUT,
        );
        take_over(&cluster, lagging);
        ferry
    } else {
        let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
        ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
        take_over_from_a_master(&cluster, b"pop:1");
        ferry
    };
    let (_, log, _) = stop_and_compare(ferry, &source, &spec, &cluster);
    if during_snapshot {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("failed over during the snapshot"), "{text}");
    } else {
        assert_resumed_from_markers(&log);
    }
}

/// A standalone source into a 3-master cluster with a replica each; `fault` makes a
/// master lose writes by a failover one second into a workload (seeded with `seed`).
/// The cluster must end equal to the source, and ferry must have resumed from its
/// failover markers.
fn failover_during_the_stream(what: &str, seed: u64, fault: fn(&Cluster, &[u8])) {
    let Some((_alone, spec, cluster, source)) = failover_setup() else {
        return;
    };
    let dir = TempDir::new("cluster-failover");
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
    ferry_proc::wait_consistent(&mut ferry, || 0, SYNC_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2, stop2) = (source.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || cluster_workload(addr, u64::MAX, seed, &spec2, &stop2));
    std::thread::sleep(Duration::from_millis(1000));

    fault(&cluster, b"cw:ctr:1");
    stop.store(true, Ordering::Relaxed);
    let ops = writer.join().expect("workload");
    let (status, log, actual) = stop_and_compare(ferry, &source, &spec, &cluster);
    assert_resumed_from_markers(&log);
    eprintln!(
        "{what}: {} keys equal after {ops} writes; {}",
        actual.keys.len(),
        status["last_error"]
    );
}

/// Once ferry is consistent with the source again: stops it (it must exit 0) and compares
/// the cluster with the source key by key. ferry's last status, its log, and the
/// cluster's keys.
fn stop_and_compare(
    mut ferry: Ferry,
    source: &Server,
    spec: &ServerSpec,
    cluster: &Cluster,
) -> (serde_json::Value, std::path::PathBuf, Model) {
    let status = ferry_proc::wait_consistent(&mut ferry, offset(source), SYNC_TIMEOUT);
    let log = ferry.log.clone();
    ferry_proc::stop(ferry);
    let expected = read_back(&mut source.client(), spec, &[0]);
    let actual = cluster.read_back();
    assert_models_equal(&expected, &actual, 1_000);
    (status, log, actual)
}

/// ferry's log says it resumed from the failover markers after a target master was lost.
fn assert_resumed_from_markers(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        text.contains("from the oldest failover marker still needed"),
        "{text}"
    );
}

/// Crashes the master of `key`'s slot (not the seed node given to ferry) with
/// [`crash_master`].
fn crash_a_master(cluster: &Cluster, key: &[u8]) {
    crash_master(cluster, victim_master(cluster, key).port());
}

/// Crashes the master on port `victim`: its replica is stopped (SIGSTOP) for 400 ms first,
/// so that the master takes writes the replica never gets (the promoted replica then lacks
/// them, and ferry must send them again), then the master killed (SIGKILL) and the replica
/// resumed; returns once the replica took over the slots.
fn crash_master(cluster: &Cluster, victim: u16) {
    let replica = replica_of(cluster, victim);
    signal("-STOP", replica.pid());
    std::thread::sleep(Duration::from_millis(400));
    cluster.crash(victim);
    signal("-CONT", replica.pid());
    wait_handed_over(cluster, victim);
}

/// Crashes nodes[0], the node whose URL ferry was given, as [`crash_a_master`] crashes
/// another; `key` is not used.
fn crash_the_seed_master(cluster: &Cluster, _key: &[u8]) {
    crash_master(cluster, cluster.nodes[0].port());
}

/// The master of `key`'s slot (not the seed node) frozen (SIGSTOP) until the cluster has
/// promoted its replica, then let go (SIGCONT); returns once the cluster is ok again.
fn partition_a_master(cluster: &Cluster, key: &[u8]) {
    let master = victim_master(cluster, key);
    let victim = master.port();
    signal("-STOP", master.pid());
    // Let go before a failure report, which asks every live node for its view.
    wait_slots_left(cluster, victim, || signal("-CONT", master.pid()));
    // Writes go on against the new master for a while before the old one comes back.
    std::thread::sleep(Duration::from_millis(1000));
    signal("-CONT", master.pid());
    cluster.wait_ok();
    std::thread::sleep(Duration::from_millis(1500));
}

/// The master of `key`'s slot (not the seed node) loses writes in a forced failover while
/// it stays reachable: its replica is stopped (SIGSTOP) for 400 ms while the master takes
/// writes, the master drops the replica's link (what it had not sent is gone), and the
/// replica, resumed, takes over at once (`CLUSTER FAILOVER TAKEOVER`). The old master
/// answers `MOVED` from then on; following it would lose those writes.
fn take_over_from_a_master(cluster: &Cluster, key: &[u8]) {
    let lagging = stop_the_replica(cluster, key);
    std::thread::sleep(Duration::from_millis(400));
    take_over(cluster, lagging);
}

/// The master of `key`'s slot (not the seed node) and its replica, stopped (SIGSTOP) so
/// that it falls behind.
fn stop_the_replica<'a>(cluster: &'a Cluster, key: &[u8]) -> (&'a Server, &'a Server) {
    let master = victim_master(cluster, key);
    let replica = replica_of(cluster, master.port());
    signal("-STOP", replica.pid());
    (master, replica)
}

/// The master of `key`'s slot, or of another slot when that is the seed node (nodes[0],
/// the one the harness asks for the slot map).
fn victim_master<'a>(cluster: &'a Cluster, key: &[u8]) -> &'a Server {
    let mut victim = cluster.owner(slot_of(key)).port();
    if victim == cluster.nodes[0].port() {
        victim = cluster.owner(slot_of(b"cw:l:1")).port();
    }
    cluster
        .nodes
        .iter()
        .find(|n| n.port() == victim)
        .expect("the victim")
}

/// The master drops the stopped replica's link (what it had not sent is gone), and the
/// replica, resumed, takes over at once; returns once the master serves no slot.
fn take_over(cluster: &Cluster, (master, replica): (&Server, &Server)) {
    master
        .client()
        .cmd_str(&["CLIENT", "KILL", "TYPE", "slave"]);
    signal("-CONT", replica.pid());
    replica.client().ok(&["CLUSTER", "FAILOVER", "TAKEOVER"]);
    wait_handed_over(cluster, master.port());
}

/// The replica of the master listening on `master_port`.
fn replica_of(cluster: &Cluster, master_port: u16) -> &Server {
    cluster
        .nodes
        .iter()
        .find(|n| {
            let r = n.client().info("replication");
            r.get("role").map(String::as_str) == Some("slave")
                && r.get("master_port").and_then(|p| p.parse::<u16>().ok()) == Some(master_port)
        })
        .expect("a replica of the master")
}

fn signal(sig: &str, pid: u32) {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
}

/// Returns once the node on port `victim` serves no slot any more and the cluster is ok.
fn wait_handed_over(cluster: &Cluster, victim: u16) {
    wait_slots_left(cluster, victim, || {});
    cluster.wait_ok();
    std::thread::sleep(Duration::from_millis(1500));
}

/// Returns once the node on port `victim` serves no slot in the map of another node;
/// after 30 s, calls `before_report` and panics with every live node's view.
fn wait_slots_left(cluster: &Cluster, victim: u16, before_report: impl FnOnce()) {
    let t0 = Instant::now();
    let asked = cluster
        .alive()
        .find(|n| n.port() != victim)
        .expect("another live node");
    while slot_owners(&mut asked.client())
        .values()
        .any(|&p| p == victim)
    {
        if t0.elapsed() > Duration::from_secs(30) {
            before_report();
            let views: Vec<String> = cluster
                .alive()
                .map(|n| {
                    let nodes = n.client().cmd_str(&["CLUSTER", "NODES"]);
                    format!("{}:\n{}", n.port(), nodes.as_text().unwrap_or_default())
                })
                .collect();
            panic!(
                "no failover of the master on port {victim}; the nodes' views:\n{}",
                views.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A cluster source into a cluster target whose master crashes: every shard's stream
/// resumes from its own markers (those of the slots it serves on the source).
#[test]
fn target_master_crash_with_a_cluster_source_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let src = Cluster::start(&spec, 3, 0);
    let dst = Cluster::start(&spec, 3, 1);
    for m in src.current_masters() {
        m.client()
            .ok(&["CONFIG", "SET", "repl-backlog-size", "64mb"]);
    }
    fill_cluster(&src, 2000);
    let dir = TempDir::new("cluster-cluster-crash");
    let stop = AtomicBool::new(false);
    let (ops, log) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let mut ferry = ferry_proc::start(&src.url(), &dst.url(), dir.path(), &[]);
        ferry_proc::wait_consistent(&mut ferry, || cluster_offsets(&src), SYNC_TIMEOUT);
        let w = s.spawn(|| cluster_source_workload(&src, &stop, u64::MAX));
        std::thread::sleep(Duration::from_millis(1000));
        crash_a_master(&dst, b"w:ctr:1");
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        let ops = w.join().expect("workload");
        ferry_proc::wait_consistent(&mut ferry, || cluster_offsets(&src), SYNC_TIMEOUT);
        let log = ferry.log.clone();
        ferry_proc::stop(ferry);
        (ops, log)
    });
    let expected = src.read_back();
    let actual = dst.read_back();
    assert_models_equal(&expected, &actual, 1_000);
    assert_resumed_from_markers(&log);
    eprintln!(
        "cluster source, target master crash: {} keys equal after {ops} writes",
        actual.keys.len()
    );
}

/// Every type, some with expiries, written through the harness's cluster client.
fn fill_cluster(cl: &Cluster, keys: usize) {
    let mut c = cl.client();
    for i in 0..keys {
        let k = format!("cs:{i}");
        match i % 6 {
            0 => c.cmd_str(&["SET", &k, &format!("v{i}")]),
            1 => c.cmd_str(&["RPUSH", &k, "a", "b", &i.to_string()]),
            2 => c.cmd_str(&["HSET", &k, "f", "1", "g", &i.to_string()]),
            3 => c.cmd_str(&["SADD", &k, "x", "y", &i.to_string()]),
            4 => c.cmd_str(&["ZADD", &k, "1.5", "m", &i.to_string(), "n"]),
            _ if cl.spec.has_streams() => c.cmd_str(&["XADD", &k, "*", "f", &i.to_string()]),
            _ => c.cmd_str(&["SET", &k, "s"]),
        };
        if i % 10 == 0 {
            c.cmd_str(&["PEXPIRE", &k, "3600000"]);
        }
    }
}

/// Single-slot writes through the cluster client until stopped.
fn cluster_source_workload(cl: &Cluster, stop: &AtomicBool, max: u64) -> u64 {
    let mut c = cl.client();
    let mut done = 0u64;
    let mut r: u64 = 0x9e3779b97f4a7c15;
    while !stop.load(Ordering::Relaxed) && done < max {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        let n = r % 500;
        let k = format!("cs:{n}");
        let reply = match r % 7 {
            0 => c.cmd_str(&["SET", &format!("w:{n}"), &r.to_string()]),
            1 => c.cmd_str(&["INCR", &format!("w:ctr:{}", n % 20)]),
            2 => c.cmd_str(&["DEL", &k]),
            3 => c.cmd_str(&["RPUSH", &format!("w:l:{}", n % 10), &n.to_string()]),
            4 => c.cmd_str(&["HSET", &format!("w:h:{}", n % 10), &format!("f{n}"), "v"]),
            5 => c.cmd_str(&["EXPIRE", &format!("w:{n}"), "3600"]),
            _ => c.cmd_str(&["APPEND", &format!("w:a:{}", n % 10), "+"]),
        };
        assert!(!reply.is_error(), "{reply:?}");
        done += 1;
        if done % 50 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    done
}

fn cluster_offsets(cl: &Cluster) -> u64 {
    cl.current_masters()
        .iter()
        .map(|m| {
            m.client()
                .info("replication")
                .get("master_repl_offset")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// 3 masters into 2 (a different slot layout), writes throughout.
#[test]
fn cluster_into_cluster_with_another_shard_count_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let src = Cluster::start(&spec, 3, 0);
    let dst = Cluster::start(&spec, 2, 0);
    fill_cluster(&src, 3000);
    let dir = TempDir::new("cluster-cluster");
    let stop = AtomicBool::new(false);
    let (ops, status) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let w = s.spawn(|| cluster_source_workload(&src, &stop, 4000));
        let mut ferry = ferry_proc::start(&src.url(), &dst.url(), dir.path(), &[]);
        let ops = w.join().expect("workload");
        let status =
            ferry_proc::wait_consistent(&mut ferry, || cluster_offsets(&src), SYNC_TIMEOUT);
        ferry_proc::stop(ferry);
        (ops, status)
    });
    assert_eq!(
        status["shards"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    let expected = src.read_back();
    let actual = dst.read_back();
    assert_models_equal(&expected, &actual, 1_000);
    eprintln!(
        "3 -> 2 masters: {} keys equal after {ops} writes",
        actual.keys.len()
    );
}

/// A cluster back into one standalone server (a rollback), with a slot migration on the
/// source in the middle of the stream.
#[test]
fn cluster_into_standalone_with_a_source_slot_migration_valkey_9_1() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("valkey-9.1") else {
        return;
    };
    let src = Cluster::start(&spec, 3, 0);
    let dst = Server::start(&spec, &[]);
    fill_cluster(&src, 3000);
    let dir = TempDir::new("cluster-standalone");
    let stop = AtomicBool::new(false);
    let status = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let w = s.spawn(|| cluster_source_workload(&src, &stop, u64::MAX));
        let mut ferry = ferry_proc::start(&src.url(), &dst.url(), dir.path(), &[]);
        // Every shard past its snapshot. Not `consistent`: with writes running all along,
        // three shards are rarely caught up at the same instant, and on a loaded machine a
        // wait for that can outlast any timeout.
        ferry.wait_status(
            "every shard streaming",
            |s| {
                s["shards"].as_array().is_some_and(|shards| {
                    shards.len() == 3 && shards.iter().all(|sh| sh["phase"] == "stream")
                })
            },
            SYNC_TIMEOUT,
        );
        // Move a slot with keys of the fill and of the workload (w:1 is written).
        let slot = slot_of(b"w:1");
        let owner = src.owner(slot).port();
        let to = src
            .current_masters()
            .into_iter()
            .find(|m| m.port() != owner)
            .expect("another master");
        // The exporting shard's link is kept busy (a large value in another of its
        // slots) just before its last writes to the slot and the migration, and the
        // importing shard overwrites the moved keys at once: without the guard's wait,
        // the exporting shard's "old" writes land on the target after the "new" ones.
        let big = (0u32..)
            .map(|i| format!("big:{i}"))
            .find(|k| {
                let s = slot_of(k.as_bytes());
                s != slot && src.owner(s).port() == owner
            })
            .expect("a key of the exporting shard");
        let mut c = src.client();
        let value = vec![b'b'; 48 << 20];
        c.cmd_key(big.as_bytes(), &[b"SET", big.as_bytes(), &value]);
        for i in 0..20 {
            c.cmd_str(&["SET", &format!("{{w:1}}:m{i}"), "old"]);
        }
        migrate_slot(&src, slot, to, || {});
        for i in 0..20 {
            to.client().ok(&["SET", &format!("{{w:1}}:m{i}"), "new"]);
        }
        src.wait_ok();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        w.join().expect("workload");
        let status =
            ferry_proc::wait_consistent(&mut ferry, || cluster_offsets(&src), SYNC_TIMEOUT);
        ferry_proc::stop(ferry);
        status
    });
    let expected = src.read_back();
    let actual = read_back(&mut dst.client(), &spec, &[0]);
    assert_models_equal(&expected, &actual, 1_000);
    // The migration was seen (RESTORE-ASKING in the importing shard's stream); its
    // deletes were either dropped (they came after the import) or waited for (before).
    assert!(
        status["errors"]["migrated_keys_seen"].as_u64() > Some(0),
        "the migration was detected: {status}"
    );
    eprintln!(
        "cluster -> standalone with a source migration: {} keys equal; {}",
        actual.keys.len(),
        status["errors"]
    );
}

/// A command that cannot be split (RENAME across slots): recorded and skipped by default,
/// a stop with a message naming the option under `cross_slot = "stop"`.
#[test]
fn cross_slot_commands_follow_the_policy_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = Server::start(&spec, &["--repl-diskless-sync-delay", "0"]);
    assert_ne!(slot_of(b"foo"), slot_of(b"bar"));
    let dir = TempDir::new("cluster-crossslot");
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &[]);
    ferry_proc::wait_consistent(&mut ferry, || 0, SYNC_TIMEOUT);
    let mut c = source.client();
    c.ok(&["SET", "foo", "1"]);
    c.ok(&["RENAME", "foo", "bar"]);
    c.ok(&["SET", "after", "x"]);
    let status = ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);
    ferry_proc::stop(ferry);
    assert_eq!(status["errors"]["CROSSSLOT"], 1, "{status}");
    assert_eq!(
        cluster
            .client()
            .cmd_str(&["GET", "after"])
            .as_text()
            .as_deref(),
        Some("x")
    );

    let cfg = dir.path().join("stop.toml");
    std::fs::write(&cfg, "[transform]\ncross_slot = \"stop\"\n").expect("config");
    let mut ferry = ferry_proc::start(
        &source.url(),
        &cluster.url(),
        dir.path(),
        &["--config", cfg.to_str().expect("utf-8")],
    );
    ferry_proc::wait_consistent(&mut ferry, || 0, SYNC_TIMEOUT);
    c.ok(&["RENAME", "bar", "foo"]);
    let (code, log) = ferry_proc::wait_exit(&mut ferry, SYNC_TIMEOUT);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("CROSSSLOT") && log.contains("cross_slot"),
        "{log}"
    );
}

/// Keys whose slot braces around them would change (`a}b`, `s}`, the empty key), into a
/// cluster with `conflict = "skip"` and the commands path: each is written under a staging
/// key whose computed tag hashes to its slot and moved in with RENAMENX, big elements
/// (over the 1 MiB chunk threshold) in pieces through a staging string in that slot too.
/// A key already on the target keeps its value. Before, such keys were skipped ("no
/// staging name in the key's cluster slot").
#[test]
fn keys_without_a_same_slot_brace_name_into_a_cluster_with_conflict_skip_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = Server::start(&spec, &[]);
    let mut c = source.client();
    let big = |n: usize, b: u8| (0..n).map(|i| b.wrapping_add(i as u8)).collect::<Vec<u8>>();
    let (item, field, text) = (big(2 << 20, 1), big(3 << 19, 7), big(3 << 20, 3));
    c.ok_bin(&[b"RPUSH", b"a}b", b"x", &item, b"y"]);
    c.ok_bin(&[b"HSET", b"", b"f", b"v", b"big", &field]);
    c.ok_bin(&[b"ZADD", b"z}", b"1.5", b"m"]);
    c.ok_bin(&[b"SET", b"s}", &text]);
    c.ok_bin(&[b"PEXPIRE", b"s}", b"600000"]);
    c.ok_bin(&[b"SET", b"kept}1", b"from the source"]);
    let mut cc = cluster.client();
    cc.cmd_key(b"kept}1", &[b"SET", b"kept}1", b"already on the target"]);

    let dir = TempDir::new("cluster-awkward-keys");
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        "[transform]\nconflict = \"skip\"\nvalue_mode = \"commands\"\n",
    )
    .expect("config");
    let mut ferry = ferry_proc::start(
        &source.url(),
        &cluster.url(),
        dir.path(),
        &["--once", "--config", cfg.to_str().expect("utf-8")],
    );
    let (code, log) = ferry_proc::wait_exit(&mut ferry, SYNC_TIMEOUT);
    assert_eq!(code, Some(0), "ferry --once: {log}");

    let mut expected = read_back(&mut source.client(), &spec, &[0]);
    let mut actual = cluster.read_back();
    let kept = actual.keys.remove(&(0, b"kept}1".to_vec()));
    expected.keys.remove(&(0, b"kept}1".to_vec()));
    assert_eq!(
        cc.cmd_key(b"kept}1", &[b"GET", b"kept}1"]).into_bytes(),
        Some(b"already on the target".to_vec()),
        "the key on the target was kept ({kept:?})"
    );
    assert_eq!(expected.keys.len(), 4);
    // No staging key is left, and every key arrived whole (the harness compares).
    assert_models_equal(&expected, &actual, 1_000);
}

/// A snapshot written into a slot that is being migrated: its owner answers `ASK` for
/// every key it does not have, so a batch of 300 small keys of that slot comes back
/// redirected whole. `ASKING` admits only the next command, so the resent batch needs one
/// before each command; with one in front of the batch only its first key went in and the
/// rest bounced between the two nodes until the router gave up after 200 rounds.
#[test]
fn a_batch_redirected_by_ask_goes_in_whole_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let slot = slot_of(b"{mig}");
    let from = cluster.owner(slot);
    let to = cluster
        .current_masters()
        .into_iter()
        .find(|m| m.port() != from.port())
        .expect("another master");
    let s = slot.to_string();
    to.client()
        .ok(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &node_id(from)]);
    from.client()
        .ok(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &node_id(to)]);

    let source = Server::start(&spec, &[]);
    let mut c = source.client();
    c.set_many((0..300).map(|i| (format!("{{mig}}:{i}"), format!("v{i}"))));
    let dir = TempDir::new("cluster-ask");
    let mut ferry = ferry_proc::start(&source.url(), &cluster.url(), dir.path(), &["--once"]);
    let (code, log) = ferry_proc::wait_exit(&mut ferry, SYNC_TIMEOUT);
    assert_eq!(code, Some(0), "ferry --once: {log}");
    // Every key landed on the importing node; end the migration there.
    let on_target = to.client().ok(&["CLUSTER", "COUNTKEYSINSLOT", &s]).as_int();
    for n in &cluster.nodes {
        n.client()
            .cmd_str(&["CLUSTER", "SETSLOT", &s, "NODE", &node_id(to)]);
    }
    let expected = read_back(&mut source.client(), &spec, &[0]);
    let actual = cluster.read_back();
    assert_models_equal(&expected, &actual, 1_000);
    assert_eq!(on_target, Some(300), "all on the importing node");
}

/// A target URL that lists several cluster nodes, the first of which does not answer
/// (`redis://dead,alive,…`): `ferry sync` and `ferry verify` start from the first node
/// that does. Before, the URL named one node and a dead one stopped ferry at start.
#[test]
fn a_cluster_url_listing_several_nodes_passes_over_a_dead_one_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = Server::start(&spec, &[]);
    let mut c = source.client();
    c.set_many((0..2000).map(|i| (format!("k:{i}"), format!("v{i}"))));
    let dead = common::ferry::free_port();
    let nodes: Vec<String> = cluster
        .current_masters()
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.port()))
        .collect();
    let url = format!("redis://127.0.0.1:{dead},{}", nodes.join(","));
    let dir = TempDir::new("cluster-seeds");
    let mut ferry = ferry_proc::start(&source.url(), &url, dir.path(), &["--once"]);
    let (code, log) = ferry_proc::wait_exit(&mut ferry, SYNC_TIMEOUT);
    assert_eq!(code, Some(0), "ferry --once: {log}");
    assert!(
        log.contains("does not answer"),
        "says which node it passed over: {log}"
    );
    let expected = read_back(&mut source.client(), &spec, &[0]);
    assert_models_equal(&expected, &cluster.read_back(), 1_000);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", "--source", &source.url(), "--target", &url])
        .output()
        .expect("ferry verify");
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify through the same URL: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGTERM while every master of a cluster target is frozen (SIGSTOP): the cluster router's
/// wait for replies is not cut short, so the process's own bound (drain_timeout + 5 s)
/// ends ferry, with exit 0 and a warning that still gives the last applied offset.
#[test]
fn a_stop_while_a_cluster_target_hangs_ends_at_the_bound_with_an_offset_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let cluster = Cluster::start(&spec, 3, 0);
    let source = Server::start(&spec, &[]);
    source.client().ok(&["SET", "a", "1"]);
    let dir = TempDir::new("cluster-stuck-stop");
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(&cfg, "[sync]\ndrain_timeout = 1.0\n").unwrap();
    let cfg = cfg.to_str().expect("utf-8 path");
    let mut ferry = ferry_proc::start(
        &source.url(),
        &cluster.url(),
        dir.path(),
        &["--config", cfg],
    );
    ferry_proc::wait_consistent(&mut ferry, offset(&source), SYNC_TIMEOUT);

    struct Resume(Vec<u32>);
    impl Drop for Resume {
        fn drop(&mut self) {
            for &pid in &self.0 {
                signal("-CONT", pid);
            }
        }
    }
    let masters: Vec<u32> = cluster.current_masters().iter().map(|s| s.pid()).collect();
    for &pid in &masters {
        signal("-STOP", pid);
    }
    let _resume = Resume(masters);
    for i in 0..30 {
        source.client().ok(&["SET", &format!("k{i}"), "v"]);
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = ferry.log.clone();
    let code = ferry.stop(Duration::from_secs(60));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(code.success(), "ferry exited with {code}:\n{log}");
    assert!(
        log.contains("still draining") && log.contains("last applied offset"),
        "{log}"
    );
}
