//! `[transform] db_map` into a standalone target: source dbs moved to other dbs and under
//! key prefixes, for the snapshot (whose small keys travel in batches) and for the stream
//! (verbatim commands, SELECTs mapped). Judged by the harness's own read-back.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::dataset::{fill, read_back, Model};
use common::ferry::*;
use common::workload::{self, Workload};
use common::{assert_models_equal, require_server, Server, TempDir};

#[test]
fn dbs_move_and_take_prefixes_on_a_standalone_target() {
    let Some(spec) = require_server("redis-7.2") else {
        return;
    };
    let source = Server::start(&spec, &[]);
    let target = Server::start(&spec, &[]);
    let mut c = source.client();
    fill(&mut c, &spec);
    // Many small keys in a prefixed db: the snapshot sends them in batches.
    c.select(1);
    let cmds: Vec<Vec<Vec<u8>>> = (0..3000)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("small:{i}").into_bytes(),
                b"v".to_vec(),
            ]
        })
        .collect();
    c.pipeline_ok(&cmds);
    c.select(0);
    let dir = TempDir::new("dbmap-standalone");
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[transform]\ndb_map = {{ \"0\" = \"0:db0:\", \"1\" = \"0:db1:\", \"5\" = \"2\" }}\n",
            source.url(),
            target.url()
        ),
    )
    .expect("config");
    let mut ferry = spawn_ferry(
        &["sync", "--config", cfg.to_str().expect("utf-8")],
        &dir.path().join("ferry.log"),
    );
    let w = Workload {
        ops: 2000,
        pause: Duration::from_millis(1),
        seed: 9,
    };
    workload::run(&mut c, &spec, &w, &Arc::new(AtomicBool::new(false)));
    wait_consistent(&mut ferry, &source, Duration::from_secs(60));
    stop_ferry(ferry);

    let src = read_back(&mut source.client(), &spec, &[0, 1, 2, 3, 5]);
    assert!(src.keys.keys().any(|k| k.0 == 5), "the dataset has db 5");
    let mut expected = Model {
        functions: src.functions.clone(),
        ..Default::default()
    };
    for ((db, key), v) in src.keys {
        let mapped = match db {
            0 | 1 => (0, [format!("db{db}:").into_bytes(), key].concat()),
            5 => (2, key),
            other => (other, key),
        };
        expected.keys.insert(mapped, v);
    }
    let actual = read_back(&mut target.client(), &spec, &[0, 1, 2, 3, 5]);
    assert_models_equal(&expected, &actual, 1_000);
}
