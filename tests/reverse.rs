//! `ferry reverse` on real servers: the forward config (blue → green) run green → blue.
//! `stream` must carry green's writes from now on and re-copy nothing; `full` must make
//! blue hold every key of green, on same-version and newer → older pairs. Judged by the
//! harness reading both servers back, never by ferry.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::parallel::run_parallel;
use common::workload::{self, Workload};
use common::{
    assert_models_equal, fill, read_back, require_server, Model, Server, ServerSpec, TempDir,
    ValueModel,
};

const DBS: [u32; 5] = [0, 1, 2, 3, 5];

/// The forward sync's config: source blue, target green.
fn forward_config(dir: &Path, blue: &Server, green: &Server) -> PathBuf {
    let path = dir.join("forward.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n",
            blue.url(),
            green.url()
        ),
    )
    .expect("write the config");
    path
}

/// A running `ferry reverse`, killed when dropped (also when the test fails).
struct Ferry {
    child: Child,
    log: PathBuf,
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ferry {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn reverse(dir: &Path, config: &Path, extra: &[&str]) -> Ferry {
    let log = dir.join("ferry.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("reverse")
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("ferry starts");
    Ferry { child, log }
}

fn wait_exit(f: &mut Ferry, limit: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(status)) = f.child.try_wait() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            t0.elapsed() < limit,
            "ferry still running after {limit:?}:\n{}",
            f.log()
        );
        sleep(Duration::from_millis(50));
    }
}

/// What of `m` a server of `spec` can hold (the harness's view, as in sync_live.rs).
fn comparable(mut m: Model, spec: &ServerSpec) -> Model {
    if !spec.has_functions() {
        m.functions.clear();
    }
    m.keys
        .retain(|_, k| spec.has_streams() || !matches!(k.value, ValueModel::Stream(_)));
    if !spec.has_hash_field_ttl() {
        for k in m.keys.values_mut() {
            if let ValueModel::Hash(h) = &mut k.value {
                for v in h.values_mut() {
                    v.1 = None;
                }
            }
        }
    }
    m
}

fn expire_tolerance(a: &ServerSpec, b: &ServerSpec) -> i64 {
    if a.has_pexpiretime() && b.has_pexpiretime() {
        1_000
    } else {
        3_000
    }
}

/// (green, blue): same version and newer → older.
fn pairs() -> Vec<(ServerSpec, ServerSpec)> {
    [
        ("redis-7.2", "redis-7.2"),
        ("valkey-9.1", "redis-6.2"),
        ("redis-7.4", "redis-5.0"),
    ]
    .iter()
    .filter_map(|(g, b)| Some((require_server(g)?, require_server(b)?)))
    .collect()
}

/// Green holds the whole dataset, blue none of it. After `reverse --mode stream` is up,
/// a workload writes to green: blue must end with exactly green's workload keys and
/// nothing of the dataset (nothing re-copied).
fn stream_case(green_spec: &ServerSpec, blue_spec: &ServerSpec) -> String {
    let dir = TempDir::new("reverse-stream");
    let green = Server::start(green_spec, &[]);
    let blue = Server::start(blue_spec, &[]);
    let mut g = green.client();
    fill(&mut g, green_spec);
    let config = forward_config(dir.path(), &blue, &green);
    let mut ferry = reverse(dir.path(), &config, &["--mode", "stream"]);

    // Up when a probe written to green shows on blue.
    let mut b = blue.client();
    let t0 = Instant::now();
    let mut probes = Vec::new();
    loop {
        let probe = format!("probe:{}", probes.len());
        g.ok(&["SET", &probe, "x"]);
        probes.push(probe.clone());
        sleep(Duration::from_millis(200));
        if b.cmd_str(&["EXISTS", &probe]).as_int() == Some(1) {
            break;
        }
        assert!(
            ferry.child.try_wait().ok().flatten().is_none(),
            "ferry exited:\n{}",
            ferry.log()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no probe reached blue:\n{}",
            ferry.log()
        );
    }
    for p in &probes {
        g.ok(&["DEL", p]);
    }
    let compat = if green_spec.redis_compat() <= blue_spec.redis_compat() {
        green_spec
    } else {
        blue_spec
    };
    let stop = Arc::new(AtomicBool::new(false));
    let ops = workload::run(
        &mut green.client(),
        compat,
        &Workload {
            ops: 2000,
            pause: Duration::from_millis(2),
            seed: 11,
        },
        &stop,
    );
    g.select(0);
    g.ok(&["SET", "reverse:sentinel", "done"]);
    let t0 = Instant::now();
    b.select(0);
    while b.cmd_str(&["GET", "reverse:sentinel"]).as_text().as_deref() != Some("done") {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "writes did not reach blue:\n{}",
            ferry.log()
        );
        sleep(Duration::from_millis(50));
    }
    assert!(
        ferry.child.try_wait().ok().flatten().is_none(),
        "ferry exited:\n{}",
        ferry.log()
    );
    drop(ferry);

    let workload_keys = |m: Model| {
        let mut m = m;
        m.keys.retain(|(_, k), _| k.starts_with(b"wl:"));
        m.functions.clear();
        m
    };
    let green_model = read_back(&mut green.client(), green_spec, &DBS);
    let blue_model = read_back(&mut blue.client(), blue_spec, &DBS);
    let others: Vec<String> = blue_model
        .keys
        .keys()
        .filter(|(_, k)| !k.starts_with(b"wl:") && k.as_slice() != b"reverse:sentinel")
        .map(|(db, k)| format!("{db}:{}", String::from_utf8_lossy(k)))
        .take(10)
        .collect();
    assert!(
        others.is_empty(),
        "blue got keys that were not written during the reverse sync: {others:?}"
    );
    let expected = comparable(workload_keys(green_model), blue_spec);
    let actual = workload_keys(blue_model);
    assert!(
        !expected.keys.is_empty(),
        "the workload left no keys to compare"
    );
    assert_models_equal(&expected, &actual, expire_tolerance(green_spec, blue_spec));
    format!(
        "stream {} → {}: {ops} writes carried, {} workload keys equal, nothing re-copied",
        green_spec.name,
        blue_spec.name,
        expected.keys.len()
    )
}

/// `--mode full --yes --once` copies green's dataset over blue (replacing a key blue had);
/// without `--yes` and no terminal it refuses and writes nothing.
fn full_case(green_spec: &ServerSpec, blue_spec: &ServerSpec) -> String {
    let dir = TempDir::new("reverse-full");
    let green = Server::start(green_spec, &[]);
    let blue = Server::start(blue_spec, &[]);
    fill(&mut green.client(), green_spec);
    let mut b = blue.client();
    b.ok(&["SET", "str:short", "blue's old value"]);
    let config = forward_config(dir.path(), &blue, &green);

    let mut refused = reverse(dir.path(), &config, &["--mode", "full", "--once"]);
    assert_eq!(
        wait_exit(&mut refused, Duration::from_secs(30)),
        2,
        "{}",
        refused.log()
    );
    assert!(refused.log().contains("--yes"), "{}", refused.log());
    assert_eq!(
        b.cmd_str(&["DBSIZE"]).as_int(),
        Some(1),
        "blue was written without confirmation"
    );

    let mut ferry = reverse(dir.path(), &config, &["--mode", "full", "--yes", "--once"]);
    assert_eq!(
        wait_exit(&mut ferry, Duration::from_secs(120)),
        0,
        "{}",
        ferry.log()
    );
    let expected = comparable(read_back(&mut green.client(), green_spec, &DBS), blue_spec);
    let actual = read_back(&mut blue.client(), blue_spec, &DBS);
    assert_models_equal(&expected, &actual, expire_tolerance(green_spec, blue_spec));
    format!(
        "full {} → {}: {} keys equal",
        green_spec.name,
        blue_spec.name,
        expected.keys.len()
    )
}

#[test]
fn reverse_stream_carries_only_new_writes() {
    run_parallel(
        &pairs(),
        2,
        |(g, b)| format!("{} → {}", g.name, b.name),
        |(g, b)| stream_case(g, b),
    );
}

#[test]
fn reverse_full_copies_green_over_blue_after_confirmation() {
    run_parallel(
        &pairs(),
        2,
        |(g, b)| format!("{} → {}", g.name, b.name),
        |(g, b)| full_case(g, b),
    );
}

/// Green older than 7.0 cannot send an empty snapshot: stream mode says so and names the
/// full mode.
#[test]
fn reverse_stream_refuses_a_green_without_rdb_filter_only() {
    let (Some(old), Some(blue_spec)) = (require_server("redis-6.2"), require_server("redis-7.2"))
    else {
        return;
    };
    let dir = TempDir::new("reverse-old");
    let green = Server::start(&old, &[]);
    let blue = Server::start(&blue_spec, &[]);
    let config = forward_config(dir.path(), &blue, &green);
    let mut ferry = reverse(dir.path(), &config, &["--mode", "stream"]);
    assert_eq!(
        wait_exit(&mut ferry, Duration::from_secs(30)),
        2,
        "{}",
        ferry.log()
    );
    assert!(ferry.log().contains("--mode full"), "{}", ferry.log());
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
    let mut ferry = reverse(dir.path(), &config, &["--mode", "stream"]);
    let (mut g, mut b) = (green.client(), blue.client());
    let t0 = Instant::now();
    for i in 0.. {
        let probe = format!("probe:{i}");
        g.ok(&["SET", &probe, "x"]);
        sleep(Duration::from_millis(200));
        if b.cmd_str(&["EXISTS", &probe]).as_int() == Some(1) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no probe reached blue:\n{}",
            ferry.log()
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
    let code = wait_exit(&mut ferry, Duration::from_secs(60));
    assert_ne!(code, 0, "{}", ferry.log());
    assert!(ferry.log().contains("--mode full"), "{}", ferry.log());
}
