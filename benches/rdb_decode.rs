//! Decoder throughput on generated RDBs, in MB/s of RDB bytes.
//!
//! Two shapes: many small strings (the per-key path: opcodes, key header, one element)
//! and a few large collections (the per-element path). The physical limit next to them
//! is `memchr`-free byte summing over the same buffer — what touching every byte once
//! costs on this machine — printed as a ratio so a regression shows against the hardware,
//! not against an absolute number. (`scripts/bench-rdb.sh` compares with the server's own
//! loader on a real ≥ 1 GiB file.)

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::rdb::reader::decode_reader;
use ferry::rdb::writer::RdbWriter;
use ferry::rdb::{DecoderConfig, Event};

fn small_strings(n: usize) -> Vec<u8> {
    let mut w = RdbWriter::new(11);
    w.select_db(0);
    let value = vec![b'v'; 100];
    for i in 0..n {
        w.string(format!("key:{i:012}").as_bytes(), &value, None);
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
    let z: Vec<(Vec<u8>, f64)> = items
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), i as f64 * 0.5))
        .collect();
    w.zset(b"zset", &z);
    let h: Vec<(Vec<u8>, Vec<u8>)> = items.iter().map(|m| (m.clone(), m.clone())).collect();
    w.hash(b"hash", &h);
    w.finish()
}

fn decode(data: &[u8]) -> u64 {
    let mut n = 0u64;
    decode_reader(data, DecoderConfig::default(), |ev| {
        if let Event::Value(_) = ev {
            n += 1;
        }
        Ok::<(), ()>(())
    })
    .expect("generated RDB decodes");
    n
}

fn bench(c: &mut Criterion) {
    for (name, data) in [
        ("small_strings", small_strings(200_000)),
        ("large_collections", large_collections()),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("ferry_decode", |b| {
            b.iter(|| black_box(decode(black_box(&data))))
        });
        g.bench_function("touch_every_byte", |b| {
            b.iter(|| black_box(data.iter().fold(0u64, |a, &x| a.wrapping_add(x as u64))))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
