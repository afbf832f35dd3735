//! The RDB decoder against real servers: every installed Redis/Valkey version is filled
//! with every type and encoding it can produce, saves its RDB, and ferry's decode of that
//! file must equal what the server returns through ordinary commands (read by the test
//! harness's own client, not by ferry). The raw bytes ferry captures for RESTORE must
//! equal the body of the server's own DUMP of the same key.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::dataset::{
    fill, read_back, score_bits, GroupModel, KeyModel, Model, StreamModel, ValueModel,
};
use common::{assert_models_equal, require_any_servers, Client, Reply, Server, ServerSpec};
use ferry::rdb::collect::{collect, collect_split, Rdb, Value};
use ferry::rdb::DecoderConfig;

/// ferry's decode, in the harness's model.
fn to_model(rdb: &Rdb) -> Model {
    let mut m = Model::default();
    for code in &rdb.functions {
        m.functions.insert(code.clone());
    }
    for k in &rdb.keys {
        if k.empty {
            continue;
        }
        let value = match &k.value {
            Value::String(s) => ValueModel::String(s.clone()),
            Value::List(l) => ValueModel::List(l.clone()),
            Value::Set(s) => ValueModel::Set(s.iter().cloned().collect()),
            Value::Zset(z) => {
                ValueModel::ZSet(z.iter().map(|(m, s)| (m.clone(), score_bits(*s))).collect())
            }
            Value::Hash(h) => ValueModel::Hash(
                h.iter()
                    .map(|(f, v, e)| (f.clone(), (v.clone(), *e)))
                    .collect(),
            ),
            Value::Stream(s) => {
                let groups = s
                    .groups
                    .iter()
                    .map(|g| {
                        let mut owner = BTreeMap::new();
                        for c in &g.consumers {
                            for id in &c.pending {
                                owner.insert((id.ms, id.seq), c.name.clone());
                            }
                        }
                        let pending = g
                            .pending
                            .iter()
                            .map(|(id, _, count)| {
                                let id = (id.ms, id.seq);
                                (id, (owner.get(&id).cloned().unwrap_or_default(), *count))
                            })
                            .collect();
                        let gm = GroupModel {
                            last_id: (g.last_id.ms, g.last_id.seq),
                            entries_read: g.entries_read,
                            pending,
                            consumers: g
                                .consumers
                                .iter()
                                .map(|c| c.name.clone())
                                .collect::<BTreeSet<_>>(),
                        };
                        (g.name.clone(), gm)
                    })
                    .collect();
                ValueModel::Stream(StreamModel {
                    entries: s
                        .entries
                        .iter()
                        .map(|(id, f)| ((id.ms, id.seq), f.clone()))
                        .collect(),
                    last_id: (s.last_id.ms, s.last_id.seq),
                    entries_added: s.entries_added,
                    max_deleted_id: s.max_deleted_id.map(|i| (i.ms, i.seq)),
                    groups,
                })
            }
            Value::Module { name, .. } => panic!("unexpected module value of {name}"),
        };
        m.keys.insert(
            (k.db as u32, k.key.clone()),
            KeyModel {
                value,
                expire_ms: k.expire_ms,
            },
        );
    }
    m
}

fn dump_body(c: &mut Client, db: u64, key: &[u8]) -> Option<Vec<u8>> {
    c.select(db as u32);
    match c.cmd(&[b"DUMP", key]) {
        // type byte + value + 2-byte version + 8-byte CRC: the body is all but the last 10.
        Reply::Bulk(Some(p)) if p.len() > 10 => Some(p[..p.len() - 10].to_vec()),
        _ => None,
    }
}

/// Wraps a value body (type byte + value) in a one-key RDB with the given magic.
fn one_key_rdb(magic: &[u8], key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut w = magic.to_vec();
    w.push(body[0]);
    w.push(0x80);
    w.extend_from_slice(&(key.len() as u32).to_be_bytes());
    w.extend_from_slice(key);
    w.extend_from_slice(&body[1..]);
    w.push(0xff);
    w.extend_from_slice(&[0; 8]);
    w
}

fn same_content(magic: &[u8], key: &[u8], a: &[u8], b: &[u8]) -> bool {
    let decode = |body| {
        collect(&one_key_rdb(magic, key, body), DecoderConfig::default()).map(|r| to_model(&r))
    };
    matches!((decode(a), decode(b)), (Ok(x), Ok(y)) if x == y)
}

fn check_server(spec: &ServerSpec) -> String {
    let server = Server::start(spec, &[]);
    let mut c = server.client();
    let written = fill(&mut c, spec);
    c.ok(&["SAVE"]);
    let data = std::fs::read(server.rdb_path()).expect("the server wrote its RDB");
    let cfg = DecoderConfig {
        // Small enough that the dataset's large strings are delivered in chunks.
        chunk_threshold: 64 * 1024,
        raw_capture_max: 1 << 20,
        total_len: Some(data.len() as u64),
        ..Default::default()
    };
    let rdb = collect(&data, cfg.clone()).unwrap_or_else(|e| panic!("{spec}: decode failed: {e}"));

    // 1. ferry's decode equals what the server answers to ordinary commands.
    let decoded = to_model(&rdb);
    let back = read_back(&mut c, spec, &[0, 1, 2, 5]);
    let tolerance = if spec.has_pexpiretime() { 0 } else { 2_000 };
    assert_models_equal(&back, &decoded, tolerance);
    // …and what the harness wrote (the harness proves read_back == written elsewhere).
    assert_eq!(written.keys.len(), decoded.keys.len(), "{spec}: key count");

    // 2. The same result fed in odd-sized pieces.
    let split =
        collect_split(&data, cfg, |_| 4093).unwrap_or_else(|e| panic!("{spec}: split decode: {e}"));
    assert!(
        split == rdb,
        "{spec}: decoding in 4093-byte pieces differs from decoding whole"
    );

    // 3. Raw capture: the RDB bytes of each value are the body of the server's DUMP.
    let (mut compared, mut skipped) = (0, 0);
    for k in &rdb.keys {
        let Some(raw) = &k.raw else {
            skipped += 1;
            continue;
        };
        let body = dump_body(&mut c, k.db, &k.key)
            .unwrap_or_else(|| panic!("{spec}: DUMP of `{}` failed", common::escape(&k.key)));
        // Hashtable-encoded sets and hashes may be iterated in another order by DUMP than
        // by SAVE (Valkey 9 does): then both must decode to the same content.
        let same = *raw == body || same_content(&data[..9], &k.key, raw, &body);
        assert!(
            same,
            "{spec}: raw bytes of `{}` (type {}) differ from its DUMP body ({} vs {} bytes)",
            common::escape(&k.key),
            k.type_byte,
            raw.len(),
            body.len()
        );
        compared += 1;
    }
    c.select(0);
    format!(
        "{spec}: {} bytes, {} keys decoded and equal; raw capture equal to DUMP for {compared} keys ({skipped} over the limit)",
        data.len(),
        decoded.keys.len()
    )
}

#[test]
fn decodes_every_installed_servers_rdb_exactly() {
    let specs = require_any_servers();
    common::parallel::run_parallel(&specs, 2, |s| s.to_string(), check_server);
}
