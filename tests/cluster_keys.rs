//! ferry's key positions (from the target's `COMMAND` reply, key specs or first/last/step
//! plus the built-in table) agree with what each real server says with `COMMAND
//! GETKEYS`, on old and new versions.

mod common;

use common::{require_server, Reply, Server};
use ferry::cluster::KeyFinder;
use ferry::endpoint::Endpoint;

const SAMPLES: &[&str] = &[
    "SET k v",
    "SET k v PX 100",
    "GET k",
    "DEL a b c",
    "UNLINK a b",
    "EXISTS a b a",
    "MSET a 1 b 2 c 3",
    "MSETNX a 1 b 2",
    "EVAL return 2 k1 k2 arg",
    "EVAL return 0",
    "EVALSHA 0123456789012345678901234567890123456789 1 k",
    "ZUNIONSTORE d 2 a b WEIGHTS 1 2",
    "ZINTERSTORE d 1 a",
    "SORT l BY w STORE dst",
    "SORT l LIMIT 0 1",
    "RENAME a b",
    "RPOPLPUSH a b",
    "LMOVE a b LEFT RIGHT",
    "SMOVE a b m",
    "BITOP AND d a b",
    "PFMERGE d a b",
    "GEORADIUS k 0 0 1 km STORE d",
    "XADD s * f v",
    "XGROUP CREATE s g $",
    "XCLAIM s g c 0 1-1",
    "RESTORE k 0 payload",
    "PEXPIREAT k 1",
    "HSET h f v",
    "SINTERSTORE d a b",
    "FCALL f 2 k1 k2 x",
    "MIGRATE h 1 k 0 10",
    "MIGRATE h 1 \"\" 0 10 KEYS a b",
    "OBJECT ENCODING k",
    "COPY a b",
    "ZRANGESTORE d s 0 -1",
    "BLMOVE a b LEFT RIGHT 0",
    "SETRANGE k 0 v",
    "PUBLISH ch m",
];

fn args_of(s: &str) -> Vec<Vec<u8>> {
    s.split(' ')
        .map(|a| {
            if a == "\"\"" {
                Vec::new()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

fn check(name: &str) {
    let Some(spec) = require_server(name) else {
        return;
    };
    let server = Server::start(&spec, &[]);
    let ep = Endpoint::parse(&server.url()).expect("url");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = rt
        .block_on(ferry::admin::calls(
            &ep,
            &[&[b"COMMAND"]],
            std::time::Duration::from_secs(10),
        ))
        .expect("COMMAND");
    let kf = KeyFinder::from_command_reply(&reply[0]).expect("command table");
    let mut c = server.client();
    let mut compared = 0;
    for sample in SAMPLES {
        let args = args_of(sample);
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if !kf.knows(refs[0]) {
            continue;
        }
        // Redis 3.0's GETKEYS knows no keys for MIGRATE (no getkeys procedure before
        // 3.2); the built-in table does.
        if spec.version < (3, 2, 0) && sample.starts_with("MIGRATE") {
            continue;
        }
        let mut q: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        q.extend(&refs);
        let server_keys: Vec<Vec<u8>> = match c.cmd(&q) {
            Reply::Array(items) => items
                .unwrap_or_default()
                .into_iter()
                .filter_map(Reply::into_bytes)
                .collect(),
            // "The command has no key arguments" / "Invalid arguments" (no keys).
            Reply::Error(_) => Vec::new(),
            other => panic!("{spec}: GETKEYS {sample}: {other:?}"),
        };
        let ours: Vec<Vec<u8>> = kf
            .key_positions(&refs)
            .unwrap_or_else(|e| panic!("{spec}: {sample}: {e}"))
            .into_iter()
            .map(|p| args[p].clone())
            .collect();
        let (mut a, mut b) = (ours.clone(), server_keys.clone());
        a.sort();
        a.dedup();
        b.sort();
        b.dedup();
        assert_eq!(
            a, b,
            "{spec}: `{sample}`: ferry {ours:?}, server {server_keys:?}"
        );
        compared += 1;
    }
    assert!(compared >= 20, "{spec}: only {compared} commands compared");
    eprintln!("{spec}: {compared} commands, same keys as COMMAND GETKEYS");
}

#[test]
fn key_positions_match_command_getkeys() {
    for v in [
        "redis-3.0",
        "redis-3.2",
        "redis-5.0",
        "redis-6.2",
        "redis-7.2",
        "redis-8.2",
        "valkey-9.1",
    ] {
        check(v);
    }
}
