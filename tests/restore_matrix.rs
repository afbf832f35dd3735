//! `restore_file` between every installed server version: each version is filled with
//! everything it can hold and saves its RDB; the file is restored into the same version,
//! into the newest Redis and the newest Valkey, and along the downgrades operators roll
//! back on, once with RESTORE where possible (`auto`) and once with type commands only.
//! The target is then read back by the test harness's own client and compared with what
//! the source held, less what the target cannot hold (functions before 7.0, hash field
//! TTLs before Redis 7.4 / Valkey 9.0, streams before 5.0).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use common::dataset::{fill, read_back, Model, ValueModel};
use common::parallel::run_parallel;
use common::{assert_models_equal, installed_servers, require_any_servers, Server, ServerSpec};
use common::{escape, TempDir};
use ferry::endpoint::Endpoint;
use ferry::target::WriterConfig;
use ferry::transform::{restore_file, Outcome, RestoreOptions, RestoreReport, ValueMode};

/// The dbs the dataset writes.
const DBS: &[u32] = &[0, 1, 5];

/// Downgrades and cross-family rollbacks, by catalogue name.
const DOWNGRADES: &[(&str, &str)] = &[
    ("valkey-9.1", "redis-6.2"),
    ("redis-8.2", "valkey-8.1"),
    ("redis-7.4", "redis-5.0"),
    ("redis-7.0", "redis-3.2"),
];

/// A source version's saved RDB and what its server held.
struct Source {
    spec: ServerSpec,
    rdb: PathBuf,
    model: Model,
}

fn prepare(spec: &ServerSpec, dir: &TempDir) -> Source {
    let server = Server::start(spec, &[]);
    let mut c = server.client();
    fill(&mut c, spec);
    c.ok(&["SAVE"]);
    let model = read_back(&mut c, spec, DBS);
    let rdb = dir.path().join(format!("{}.rdb", spec.name));
    std::fs::copy(server.rdb_path(), &rdb).expect("copy the RDB");
    Source {
        spec: spec.clone(),
        rdb,
        model,
    }
}

/// What the target can hold of the source's data.
fn expected_on(target: &ServerSpec, source: &Model) -> Model {
    let mut m = source.clone();
    if !target.has_functions() {
        m.functions.clear();
    }
    if !target.has_streams() {
        m.keys
            .retain(|_, k| !matches!(k.value, ValueModel::Stream(_)));
    }
    if !target.has_hash_field_ttl() {
        for k in m.keys.values_mut() {
            if let ValueModel::Hash(h) = &mut k.value {
                for (_, ttl) in h.values_mut() {
                    *ttl = None;
                }
            }
        }
    }
    m
}

/// "43 RESTORE, 6 commands [hash:ttl:small …]" for the log.
fn paths(report: &RestoreReport) -> String {
    let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (db, key, outcome) in &report.key_outcomes {
        let name = match outcome {
            Outcome::Restore => "RESTORE",
            Outcome::Commands => "commands",
            Outcome::Expired => "expired",
            Outcome::Empty => "empty",
            Outcome::Skipped => "skipped",
        };
        by.entry(name)
            .or_default()
            .push(format!("db{db}:{}", escape(key)));
    }
    let total = report.key_outcomes.len();
    by.iter()
        .map(|(name, keys)| {
            // Name the keys of the minority paths; the majority is "the rest".
            if keys.len() * 2 <= total {
                format!("{} {name} [{}]", keys.len(), keys.join(" "))
            } else {
                format!("{} {name}", keys.len())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_pair((source, target): &(&Source, ServerSpec)) -> String {
    let server = Server::start(target, &[]);
    let mut c = server.client();
    let expected = expected_on(target, &source.model);
    let tolerance = if source.spec.has_pexpiretime() && target.has_pexpiretime() {
        0
    } else {
        2_000
    };
    let mut lines = Vec::new();
    for mode in [ValueMode::Auto, ValueMode::Commands] {
        let mut opts = RestoreOptions {
            record_keys: true,
            ..RestoreOptions::default()
        };
        opts.rewrite.mode = mode;
        let endpoint = Endpoint::parse(&server.url()).expect("server URL");
        let started = Instant::now();
        let report = restore_file(&source.rdb, WriterConfig::new(endpoint), &opts)
            .unwrap_or_else(|e| panic!("{mode:?}: restore failed: {e}"));
        let elapsed = started.elapsed();
        let actual = read_back(&mut c, target, DBS);
        assert_models_equal(&expected, &actual, tolerance);
        let w = &report.writer;
        assert_eq!(
            w.skipped_total, 0,
            "{mode:?}: the target refused commands: {:?}",
            w.skipped
        );
        if mode == ValueMode::Commands {
            assert_eq!(report.restored, 0, "commands mode used RESTORE");
        }
        let streams_lost = expected.keys.len() < source.model.keys.len();
        assert_eq!(
            report.skipped > 0,
            streams_lost,
            "{mode:?}: skipped keys: {:?}",
            report.rewrite.skips
        );
        lines.push(format!(
            "    {mode:?}: {} in {elapsed:.2?} ({} commands, {} bytes sent)",
            paths(&report),
            w.commands,
            w.bytes
        ));
        // Empty the target for the next mode.
        for db in DBS {
            c.select(*db);
            c.ok(&["FLUSHDB"]);
        }
        c.select(0);
        if target.has_functions() {
            c.ok(&["FUNCTION", "FLUSH"]);
        }
    }
    format!(
        "{} -> {}: {} keys equal\n{}",
        source.spec,
        target,
        expected.keys.len(),
        lines.join("\n")
    )
}

#[test]
fn restores_every_version_into_same_newest_and_older_servers() {
    let specs = require_any_servers();
    if specs.is_empty() {
        return;
    }
    let dir = TempDir::new("restore-matrix");
    let started = Instant::now();
    let sources: std::sync::Mutex<Vec<Source>> = std::sync::Mutex::new(Vec::new());
    run_parallel(
        &specs,
        2,
        |s| format!("prepare {s}"),
        |spec| {
            let src = prepare(spec, &dir);
            let line = format!("{spec}: source {}", src.model.summary());
            sources.lock().unwrap_or_else(|e| e.into_inner()).push(src);
            line
        },
    );
    let sources = sources.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!("sources ready in {:.1?}", started.elapsed());

    let installed = installed_servers();
    let find = |name: &str| installed.iter().find(|s| s.name == name).cloned();
    let newest = |flavor| {
        installed
            .iter()
            .filter(|s| s.flavor == flavor)
            .max_by_key(|s| s.version)
            .cloned()
    };
    let mut pairs: Vec<(&Source, ServerSpec)> = Vec::new();
    for src in &sources {
        let mut targets = vec![src.spec.clone()];
        targets.extend(newest(common::Flavor::Redis));
        targets.extend(newest(common::Flavor::Valkey));
        for (from, to) in DOWNGRADES {
            if *from == src.spec.name {
                targets.extend(find(to));
            }
        }
        targets.dedup_by(|a, b| a.name == b.name);
        let mut seen = Vec::new();
        for t in targets {
            if !seen.contains(&t.name) {
                seen.push(t.name.clone());
                pairs.push((src, t));
            }
        }
    }
    let n = pairs.len();
    run_parallel(
        &pairs,
        2,
        |(s, t)| format!("{} -> {}", s.spec, t),
        check_pair,
    );
    eprintln!("{n} pairs restored both ways in {:.1?}", started.elapsed());
}
