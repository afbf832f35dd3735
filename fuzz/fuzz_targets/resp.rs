//! Any bytes through the whole-frame parser and the streaming decoder: never a panic.
#![no_main]
use ferry::resp::{parse_frame, Decoder, DecoderConfig, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_frame(data, &Limits::default());
    let mut dec = Decoder::new(DecoderConfig { inline_bulk_max: 16, ..Default::default() });
    let mut pos = 0;
    while let Ok(Some((_, used))) = dec.next(&data[pos..]) {
        pos += used;
        if used == 0 && pos == data.len() {
            break;
        }
    }
});
