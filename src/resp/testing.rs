//! Test helpers shared by the RESP tests: a socket-like decoder driver and proptest
//! strategies for frames and hostile input.

use super::{AggregateKind, Decoder, DecoderConfig, Event, Frame, Limits, RespError};
use proptest::collection::vec;
use proptest::prelude::*;

/// An owned event with streamed bulks joined, so that runs with different splits and
/// different `inline_bulk_max` can be compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Norm {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Null,
    Bulk(Vec<u8>),
    Aggregate(AggregateKind, u64),
    /// The bits, so that NaN equals NaN.
    Double(u64),
    Boolean(bool),
    BigNumber(Vec<u8>),
    BulkError(Vec<u8>),
    Verbatim([u8; 3], Vec<u8>),
    FrameEnd(u64),
}

/// What a run of the decoder produced.
#[derive(Debug, Default)]
pub struct Run {
    pub events: Vec<Norm>,
    /// How many bulks arrived streamed (BulkStart…BulkEnd).
    pub streamed: usize,
    /// The most bytes the caller's buffer ever held.
    pub max_buffered: usize,
    /// Bytes left undecoded at the end.
    pub rest: usize,
}

impl Run {
    pub fn frame_lens(&self) -> Vec<u64> {
        let ends = self.events.iter().filter_map(|e| match e {
            Norm::FrameEnd(len) => Some(*len),
            _ => None,
        });
        ends.collect()
    }
}

/// Feeds `input` to a fresh decoder the way a socket loop does: the chunks end at `cuts`
/// (sorted, out-of-range ones ignored); after each chunk, decode until `Ok(None)` and drop
/// what was consumed. Checks the decoder's contract on every step.
pub fn run(cfg: DecoderConfig, input: &[u8], cuts: &[usize]) -> Result<Run, RespError> {
    let mut decoder = Decoder::new(cfg);
    let mut out = Run::default();
    let mut buf = Vec::new();
    // A streamed bulk being joined: its announced length and the data so far.
    let mut bulk: Option<(u64, Vec<u8>)> = None;
    let mut from = 0;
    let mut last_was_end = false;
    let ends = cuts.iter().copied().filter(|&c| c > 0 && c < input.len());
    for to in ends.chain([input.len()]) {
        buf.extend_from_slice(&input[from..to.max(from)]);
        from = to.max(from);
        out.max_buffered = out.max_buffered.max(buf.len());
        while let Some((event, used)) = decoder.next(&buf)? {
            assert!(used <= buf.len());
            let is_end = matches!(event, Event::FrameEnd { .. });
            assert!(
                used > 0 || (is_end && !last_was_end),
                "{event:?} consumed nothing"
            );
            last_was_end = is_end;
            // Streamed bulks are joined: only BulkEnd yields the (whole) Bulk.
            let norm = match event {
                Event::Simple(s) => Some(Norm::Simple(s.to_vec())),
                Event::Error(s) => Some(Norm::Error(s.to_vec())),
                Event::Integer(n) => Some(Norm::Integer(n)),
                Event::Null => Some(Norm::Null),
                Event::Bulk(b) => {
                    assert!(b.len() <= cfg.inline_bulk_max, "long bulk not streamed");
                    Some(Norm::Bulk(b.to_vec()))
                }
                Event::BulkStart { len } => {
                    assert!(len > cfg.inline_bulk_max as u64, "short bulk streamed");
                    assert!(bulk.is_none(), "BulkStart inside a bulk");
                    bulk = Some((len, Vec::new()));
                    out.streamed += 1;
                    None
                }
                Event::BulkPart(part) => {
                    let Some((len, data)) = &mut bulk else {
                        panic!("BulkPart outside a bulk")
                    };
                    assert!(!part.is_empty(), "empty BulkPart");
                    data.extend_from_slice(part);
                    assert!(data.len() as u64 <= *len, "BulkPart past the data");
                    None
                }
                Event::BulkEnd => {
                    let Some((len, data)) = bulk.take() else {
                        panic!("BulkEnd outside a bulk")
                    };
                    assert_eq!(data.len() as u64, len);
                    Some(Norm::Bulk(data))
                }
                Event::Aggregate { kind, len } => Some(Norm::Aggregate(kind, len)),
                // One bit pattern for every NaN, so that NaN equals NaN.
                Event::Double(d) => Some(Norm::Double(if d.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    d.to_bits()
                })),
                Event::Boolean(b) => Some(Norm::Boolean(b)),
                Event::BigNumber(n) => Some(Norm::BigNumber(n.to_vec())),
                Event::BulkError(e) => Some(Norm::BulkError(e.to_vec())),
                Event::Verbatim { format, text } => Some(Norm::Verbatim(format, text.to_vec())),
                Event::FrameEnd { len } => Some(Norm::FrameEnd(len)),
            };
            out.events.extend(norm);
            buf.drain(..used);
        }
    }
    out.rest = buf.len();
    if out.rest == 0 && decoder.is_between_frames() {
        let total: u64 = out.frame_lens().iter().sum();
        assert_eq!(total, decoder.offset(), "FrameEnd lengths do not add up");
    }
    Ok(out)
}

/// Every split point: the input arrives one byte at a time.
pub fn bytewise(input: &[u8]) -> Vec<usize> {
    (1..input.len()).collect()
}

/// Deterministic pseudo-random split points (xorshift), for tests outside proptest.
pub fn random_cuts(len: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut cuts: Vec<usize> = (0..len / 3 + 1)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (len as u64 + 1)) as usize
        })
        .collect();
    cuts.sort_unstable();
    cuts
}

pub fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out);
    }
    out
}

/// Small limits, so that random input reaches the limit checks.
pub fn tight_limits() -> Limits {
    Limits {
        max_bulk_len: 64,
        max_array_len: 8,
        max_depth: 3,
        max_line: 16,
    }
}

/// Bytes for `+`, `-` lines: anything but CR and LF.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_map(|b| if b == b'\r' || b == b'\n' { b'.' } else { b }),
        0..12,
    )
}

fn scalar() -> impl Strategy<Value = Frame> {
    let double = prop_oneof![
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(-0.0),
        Just(1e300),
        Just(5e-324),
    ];
    let big = (
        prop_oneof![Just(""), Just("-"), Just("+")],
        vec(b'0'..=b'9', 1..30),
    )
        .prop_map(|(sign, digits)| Frame::BigNumber([sign.as_bytes(), &digits].concat()));
    let verbatim = (
        [b'a'..=b'z', b'a'..=b'z', b'a'..=b'z'],
        vec(any::<u8>(), 0..12),
    )
        .prop_map(|(format, text)| Frame::Verbatim { format, text });
    prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        vec(any::<u8>(), 0..24).prop_map(Frame::Bulk),
        Just(Frame::Null),
        double.prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        big,
        vec(any::<u8>(), 0..12).prop_map(Frame::BulkError),
        verbatim,
    ]
}

/// A frame as it can appear inside an aggregate (no attributes).
fn element() -> impl Strategy<Value = Frame> {
    scalar().prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Frame::Array),
            vec(inner.clone(), 0..4).prop_map(Frame::Set),
            vec(inner.clone(), 0..4).prop_map(Frame::Push),
            vec((inner.clone(), inner), 0..3).prop_map(Frame::Map),
        ]
    })
}

/// A top-level frame: any element, or an attribute.
pub fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => element(),
        1 => vec((element(), element()), 0..3).prop_map(Frame::Attribute),
    ]
}

/// Hostile input: random bytes, or valid encodings with a few bytes replaced, inserted
/// or removed.
pub fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let random = vec(any::<u8>(), 0..200);
    let edits = vec((any::<usize>(), 0..3u8, any::<u8>()), 1..4);
    let mutated = (vec(frame(), 1..3), edits).prop_map(|(frames, edits)| {
        let mut bytes = encoded(&frames);
        for (at, op, byte) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    });
    prop_oneof![random, mutated]
}
