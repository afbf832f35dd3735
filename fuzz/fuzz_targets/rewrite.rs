//! Any bytes through the snapshot path as `ferry sync` drives it: the RDB decoder fed in
//! pieces, the key rewriter in every value mode and conflict policy, for old and new
//! targets. Never a panic, and every command ferry would send parses as exactly the
//! number of RESP arrays of bulk strings it claims to hold.
#![no_main]
use ferry::rdb::{Decoder, DecoderConfig, Event, Flavor, Step};
use ferry::resp::{parse_frame, Frame, Limits};
use ferry::target::{Cmd, Conflict, ServerInfo};
use ferry::transform::{KeyRewriter, RewriteConfig, ValueMode};
use libfuzzer_sys::fuzz_target;

fn check(c: &Cmd) {
    let limits = Limits::default();
    let mut pos = 0;
    let mut n = 0;
    while pos < c.bytes.len() {
        let (frame, used) = parse_frame(&c.bytes[pos..], &limits)
            .unwrap_or_else(|e| panic!("malformed command at {pos}: {e}"))
            .unwrap_or_else(|| panic!("truncated command at {pos}"));
        match frame {
            Frame::Array(args) => assert!(
                !args.is_empty() && args.iter().all(|a| matches!(a, Frame::Bulk(_))),
                "not an array of bulk strings: {args:?}"
            ),
            other => panic!("not an array: {other:?}"),
        }
        pos += used;
        n += 1;
    }
    assert_eq!(n, c.n, "the command count");
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let cfg = RewriteConfig {
        batch_elems: 3,
        batch_bytes: 64,
        mode: [ValueMode::Auto, ValueMode::Restore, ValueMode::Commands][usize::from(sel % 3)],
        conflict: [Conflict::Replace, Conflict::Skip, Conflict::Error][usize::from(sel / 3 % 3)],
        restore_max: 256,
        strings_as_set: sel & 0x10 != 0,
        strings_as_mset: sel & 0x20 != 0,
    };
    let target = match sel >> 6 {
        0 => ServerInfo::new(false, (7, 2, 4)),
        1 => ServerInfo::new(false, (3, 2, 0)),
        2 => ServerInfo::new(true, (9, 1, 0)),
        _ => ServerInfo::new(false, (5, 0, 0)),
    };
    let mut dec = Decoder::new(DecoderConfig {
        chunk_threshold: 32,
        max_element: 1 << 16,
        raw_capture_max: cfg.restore_max,
        verify_checksum: false,
        total_len: None,
    });
    let mut rw: Option<KeyRewriter> = None;
    let mut flavor = Flavor::Redis;
    let mut out = |c: Cmd| check(&c);
    // Fed 7 bytes more at a time, like reads off a socket; what the decoder leaves is
    // offered again with the next bytes.
    let mut avail = 0;
    let mut pos = 0;
    while pos <= data.len() {
        let input = &data[pos..avail.min(data.len())];
        let Ok((used, step)) = dec.step(input) else {
            return;
        };
        let mut no_raw = false;
        match step {
            Step::Event(ev) => match ev {
                Event::Header { flavor: f, .. } => {
                    flavor = f;
                    rw = Some(KeyRewriter::new(&cfg, &target, f, 1_700_000_000_000));
                }
                Event::Aux { key, value } => {
                    if &key.as_bytes()[..] == b"lua" {
                        out(KeyRewriter::lua_script(&value.as_bytes()));
                    }
                }
                Event::Function(code) => {
                    if let Some(c) = KeyRewriter::function(code, &target) {
                        out(c);
                    }
                }
                Event::Key(k) => {
                    let r = rw.get_or_insert_with(|| {
                        KeyRewriter::new(&cfg, &target, flavor, 1_700_000_000_000)
                    });
                    r.key(&k, &mut out);
                    no_raw = !r.wants_raw();
                }
                Event::Value(p) => {
                    if let Some(r) = rw.as_mut() {
                        r.piece(&p, &mut out);
                        no_raw = !r.wants_raw();
                    }
                }
                Event::KeyEnd(e) => {
                    if let Some(r) = rw.as_mut() {
                        r.end(&e, &mut out);
                    }
                }
                _ => {}
            },
            Step::NeedMore => {
                if avail >= data.len() {
                    return;
                }
                avail += 7;
            }
            Step::Done => break,
        }
        if no_raw {
            dec.stop_capture();
        }
        pos += used;
    }
    if let Some(r) = rw.as_mut() {
        r.flush_pending(&mut out);
    }
});
