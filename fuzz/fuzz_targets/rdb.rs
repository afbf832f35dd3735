//! Any bytes, decoded whole and fed in small pieces: never a panic, and both agree.
#![no_main]
use ferry::rdb::collect::{collect, collect_split};
use ferry::rdb::DecoderConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = DecoderConfig { chunk_threshold: 32, raw_capture_max: 4096, ..Default::default() };
    let whole = collect(data, cfg.clone());
    let split = collect_split(data, cfg, |_| 7);
    match (whole, split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.offset, b.offset),
        (a, b) => panic!("whole {a:?} vs split {b:?}"),
    }
});
