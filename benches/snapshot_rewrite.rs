//! The snapshot path without the network: RDB bytes → decoder → rewriter → `Cmd`s, the
//! work ferry does per key between the source socket and the target socket.
//!
//! Shapes: small strings (one `SET` each, gathered into batches), small hashes (one
//! `RESTORE` each, payload and CRC written in place), and large collections in `commands`
//! mode (variadic batches, the downgrade path). Throughput is in bytes of RDB; the line
//! next to each, `copy_out`, copies the same number of bytes as the commands produced —
//! the least any tool that re-encodes the data must do — so the ratio shows the
//! rewriter's overhead against the memory system, not against an absolute number.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::rdb::reader::decode_reader;
use ferry::rdb::writer::RdbWriter;
use ferry::rdb::{DecoderConfig, Event, Flavor};
use ferry::target::ServerInfo;
use ferry::transform::{KeyRewriter, RewriteConfig, ValueMode};

fn small_strings(n: usize) -> Vec<u8> {
    let mut w = RdbWriter::new(11);
    w.select_db(0);
    let value = vec![b'v'; 100];
    for i in 0..n {
        w.string(format!("key:{i:012}").as_bytes(), &value, None);
    }
    w.finish()
}

fn small_hashes(n: usize) -> Vec<u8> {
    let mut w = RdbWriter::new(11);
    w.select_db(0);
    let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..8)
        .map(|i| {
            (
                format!("field{i}").into_bytes(),
                format!("value-{i}").into_bytes(),
            )
        })
        .collect();
    for i in 0..n {
        w.hash(format!("hash:{i:012}").as_bytes(), &fields);
    }
    w.finish()
}

fn large_collections() -> Vec<u8> {
    let mut w = RdbWriter::new(11);
    w.select_db(0);
    let items: Vec<Vec<u8>> = (0..200_000)
        .map(|i| format!("element-{i:08}").into_bytes())
        .collect();
    w.list(b"list", &items);
    w.set(b"set", &items);
    let h: Vec<(Vec<u8>, Vec<u8>)> = items.iter().map(|m| (m.clone(), m.clone())).collect();
    w.hash(b"hash", &h);
    w.finish()
}

/// Decodes and rewrites `data`; returns the bytes of commands produced.
fn rewrite(data: &[u8], cfg: &RewriteConfig, target: &ServerInfo) -> u64 {
    let mut out_bytes = 0u64;
    let mut rw = KeyRewriter::new(cfg, target, Flavor::Redis, 0);
    let mut sink = |c: ferry::target::Cmd| out_bytes += c.bytes.len() as u64;
    let dcfg = DecoderConfig {
        raw_capture_max: cfg.restore_max,
        ..DecoderConfig::default()
    };
    decode_reader(data, dcfg, |ev| {
        match ev {
            Event::Key(k) => rw.key(k, &mut sink),
            Event::Value(p) => rw.piece(p, &mut sink),
            Event::KeyEnd(e) => {
                rw.end(e, &mut sink);
            }
            _ => {}
        }
        Ok::<(), ()>(())
    })
    .expect("generated RDB decodes");
    rw.flush_pending(&mut sink);
    out_bytes
}

fn bench(c: &mut Criterion) {
    let target = ServerInfo::new(false, (7, 2, 4));
    let auto = RewriteConfig::default();
    let commands = RewriteConfig {
        mode: ValueMode::Commands,
        ..RewriteConfig::default()
    };
    for (name, data, cfg) in [
        ("rewrite_small_strings_set", small_strings(200_000), &auto),
        ("rewrite_small_hashes_restore", small_hashes(100_000), &auto),
        (
            "rewrite_collections_commands",
            large_collections(),
            &commands,
        ),
    ] {
        let produced = rewrite(&data, cfg, &target) as usize;
        let src = vec![7u8; produced];
        let mut dst = vec![0u8; produced];
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("ferry_decode_and_rewrite", |b| {
            b.iter(|| black_box(rewrite(black_box(&data), cfg, &target)))
        });
        g.bench_function("copy_out", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(dst[produced / 2])
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
