//! A source given as `redis-sentinel://…/name`: ferry asks the sentinels for the master,
//! and follows a failover (SENTINEL FAILOVER) by asking again and continuing the stream
//! from the new master with PSYNC (no new full resync). Real sentinels
//! (`redis-server sentinel.conf --sentinel`); the comparison is the harness's.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dataset::{fill, read_back};
use common::ferry_proc::{self, free_port};
use common::workload::{self, Workload};
use common::{assert_models_equal, require_server, Client, Server, ServerSpec, TempDir};

/// A sentinel process, killed on drop.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::watchdog::untrack(self.child.id());
    }
}

impl Sentinel {
    fn start(spec: &ServerSpec, master_port: u16) -> Sentinel {
        let dir = TempDir::new("sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
                 sentinel monitor m 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds m 10000\n\
                 sentinel failover-timeout m 5000\n",
                dir.path().display(),
                dir.path().join("sentinel.log").display()
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new(&spec.path)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sentinel starts");
        common::watchdog::track(child.id());
        let s = Sentinel {
            child,
            port,
            _dir: dir,
        };
        let t0 = Instant::now();
        while s.try_client().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sentinel did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn try_client(&self) -> Option<Client> {
        let mut c = Client::try_connect(format!("127.0.0.1:{}", self.port).parse().ok()?).ok()?;
        c.try_cmd(&[b"PING"]).ok()?;
        Some(c)
    }

    /// Waits until the sentinel knows the master's replica (from the master's INFO).
    fn wait_for_replica(&self) {
        let t0 = Instant::now();
        while self.try_client().map(|mut c| {
            c.cmd_str(&["SENTINEL", "replicas", "m"])
                .as_array()
                .map_or(0, |a| a.len())
        }) != Some(1)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "sentinel never saw the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `SENTINEL FAILOVER`, then waits until `to` is the master the sentinel names and
    /// says so itself.
    fn fail_over_to(&self, to: &Server) {
        self.try_client()
            .expect("sentinel")
            .ok(&["SENTINEL", "FAILOVER", "m"]);
        let t0 = Instant::now();
        while self.master_port() != Some(to.port())
            || to
                .client()
                .info("replication")
                .get("role")
                .map(String::as_str)
                != Some("master")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the failover did not happen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn master_port(&self) -> Option<u16> {
        let r = self
            .try_client()?
            .cmd_str(&["SENTINEL", "get-master-addr-by-name", "m"]);
        r.as_array()?.get(1)?.as_text()?.parse().ok()
    }
}

/// The two tests run one at a time: each has its own sentinels monitoring a master named
/// `m` on loopback, and run side by side on 2 cores they starved each other's replication
/// (a replica far behind its master when the failover came).
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until `replica` is linked to `master` and has its whole stream.
fn wait_in_step(master: &Server, replica: &Server) {
    let want = offset(master);
    let t0 = Instant::now();
    loop {
        let info = replica.client().info("replication");
        let up = info.get("master_link_status").map(String::as_str) == Some("up");
        let at: u64 = info
            .get("slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if up && at >= want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the replica is not in step before the failover: {info:?}, master at {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn offset(s: &Server) -> u64 {
    s.client()
        .info("replication")
        .get("master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn source_failover_through_sentinel_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let fast = ["--repl-diskless-sync-delay", "0"];
    let master = Server::start(&spec, &fast);
    let port = master.port().to_string();
    let replica = Server::start(
        &spec,
        &[&fast[..], &["--replicaof", "127.0.0.1", &port]].concat(),
    );
    let s1 = Sentinel::start(&spec, master.port());
    let s2 = Sentinel::start(&spec, master.port());
    s1.wait_for_replica();
    let target = Server::start(&spec, &[]);
    fill(&mut master.client(), &spec);

    // The first sentinel listed is not there: ferry asks the next one.
    let url = format!(
        "redis-sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/m",
        free_port(),
        s1.port,
        s2.port
    );
    let dir = TempDir::new("sentinel-sync");
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2, stop2) = (master.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        workload::run(
            &mut c,
            &spec2,
            &Workload {
                ops: 1500,
                pause: Duration::from_millis(3),
                seed: 3,
            },
            &stop2,
        )
    });
    let mut ferry = ferry_proc::start(&url, &target.url(), dir.path(), &[]);
    writer.join().expect("workload");
    ferry_proc::wait_consistent(&mut ferry, || offset(&master), Duration::from_secs(60));

    // Failover: the replica is caught up, then the sentinels promote it. (A `WAIT` from a
    // connection that wrote nothing waits for nothing: its target offset is 0. It once let
    // the failover promote a replica still in its initial sync, which then held only the
    // writes made after the failover.)
    wait_in_step(&master, &replica);
    s1.fail_over_to(&replica);
    // Writes go on at the new master.
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2) = (replica.addr(), spec.clone());
    let ops = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        workload::run(
            &mut c,
            &spec2,
            &Workload {
                ops: 1500,
                pause: Duration::from_millis(3),
                seed: 4,
            },
            &stop,
        )
    })
    .join()
    .expect("workload on the new master");
    let status =
        ferry_proc::wait_consistent(&mut ferry, || offset(&replica), Duration::from_secs(60));
    let log = ferry.log.clone();
    ferry_proc::stop(ferry);
    drop(master);

    let dbs = [0, 1, 2, 3, 5];
    let expected = read_back(&mut replica.client(), &spec, &dbs);
    let actual = read_back(&mut target.client(), &spec, &dbs);
    assert_models_equal(&expected, &actual, 1_000);
    assert!(
        status["reconnects"].as_u64() >= Some(1),
        "the link moved: {status}"
    );
    // One snapshot only: after the failover the stream continued (PSYNC) from the new
    // master; a second snapshot would leave keys deleted meanwhile on the target.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("full resync: receiving the snapshot").count(),
        1,
        "{text}"
    );
    assert!(text.contains("continuing the stream"), "{text}");
    eprintln!(
        "sentinel failover followed: {} keys equal, {ops} writes after it; {}",
        actual.keys.len(),
        status["reconnects"]
    );
}

/// A target given by sentinels fails over (SENTINEL FAILOVER, with writes going on at
/// the source throughout): ferry finds the new master, reads its failover marker and
/// asks the source for the stream again from there. The writes the old master had taken
/// but not passed on before it was demoted are not lost, and the non-idempotent ones in
/// the workload (INCR, APPEND, RPUSH, LPOP, ZINCRBY) are not applied twice: the new
/// master ends equal to the source.
#[test]
fn target_failover_through_sentinel_redis_7_2() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    // A backlog that holds the whole failover window, so that ferry resumes from its
    // marker with a partial resync (a full one, the fallback, cannot delete the keys
    // removed meanwhile, and is not what this test is about).
    let source = Server::start(
        &spec,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "64mb",
        ],
    );
    let t1 = Server::start(&spec, &["--repl-diskless-sync-delay", "0"]);
    let port = t1.port().to_string();
    let t2 = Server::start(
        &spec,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let s1 = Sentinel::start(&spec, t1.port());
    s1.wait_for_replica();
    fill(&mut source.client(), &spec);
    let url = format!("redis-sentinel://127.0.0.1:{}/m", s1.port);
    let dir = TempDir::new("sentinel-target");
    let mut ferry = ferry_proc::start(&source.url(), &url, dir.path(), &[]);
    ferry_proc::wait_consistent(&mut ferry, || offset(&source), Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let (addr, spec2, stop2) = (source.addr(), spec.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        workload::run(
            &mut c,
            &spec2,
            &Workload {
                ops: u64::MAX,
                pause: Duration::from_millis(2),
                seed: 5,
            },
            &stop2,
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    s1.fail_over_to(&t2);
    // Writes go on while the old master is turned into a replica and after.
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = writer.join().expect("workload");
    let status =
        ferry_proc::wait_consistent(&mut ferry, || offset(&source), Duration::from_secs(60));
    let log = ferry.log.clone();
    ferry_proc::stop(ferry);

    let dbs = [0, 1, 2, 3, 5];
    let expected = read_back(&mut source.client(), &spec, &dbs);
    let actual = read_back(&mut t2.client(), &spec, &dbs);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // What ferry did around the failover, for a failure's report.
    for l in text.lines().filter(|l| {
        l.contains("marker") || l.contains("resync") || l.contains("WARN") || l.contains("master")
    }) {
        eprintln!("ferry: {l}");
    }
    assert_models_equal(&expected, &actual, 1_000);
    assert!(
        text.contains("asking the source for its stream again from the failover marker"),
        "{text}"
    );
    assert!(
        text.matches("full resync: receiving the snapshot").count() == 1,
        "one snapshot only: {text}"
    );
    // A clean stop removes the marker (the models above would differ otherwise).
    assert_eq!(
        t2.client().cmd_str(&["EXISTS", "ferry:applied"]).as_int(),
        Some(0)
    );
    eprintln!(
        "target failover followed: {} keys equal, {ops} writes; {}",
        actual.keys.len(),
        status["last_error"]
    );
}
