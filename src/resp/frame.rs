//! The owned [`Frame`] and [`parse_frame`], which returns one once it is wholly buffered.

use super::decoder::{parse_i64, AggregateKind, Decoder, DecoderConfig, Event, Limits};
use super::error::RespError;

/// One whole RESP2 or RESP3 value, owned. Its `Debug` shows byte strings as escaped
/// text (`Error("ASK 8860 127.0.0.1:7001")`), as they appear in error messages.
#[derive(Clone, PartialEq)]
pub enum Frame {
    /// `+`
    Simple(Vec<u8>),
    /// `-`
    Error(Vec<u8>),
    /// `:`
    Integer(i64),
    /// `$`
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or `_`; encoded as `$-1`, which RESP2 and RESP3 clients both read.
    Null,
    /// `*`
    Array(Vec<Frame>),
    /// `,`
    Double(f64),
    /// `#`
    Boolean(bool),
    /// `(`, the digits as sent.
    BigNumber(Vec<u8>),
    /// `!`
    BulkError(Vec<u8>),
    /// `=`, e.g. format `txt` or `mkd`.
    Verbatim { format: [u8; 3], text: Vec<u8> },
    /// `%`
    Map(Vec<(Frame, Frame)>),
    /// `~`
    Set(Vec<Frame>),
    /// `|`: metadata about the reply that follows it, returned as a frame of its own.
    /// Attributes nested inside an aggregate are dropped by [`parse_frame`] (no server
    /// sends them); the [`Decoder`] reports them as events.
    Attribute(Vec<(Frame, Frame)>),
    /// `>`
    Push(Vec<Frame>),
}

/// Bytes as escaped text in quotes.
struct Text<'a>(&'a [u8]);

impl std::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |f: &mut std::fmt::Formatter<'_>, name: &str, b: &[u8]| {
            f.debug_tuple(name).field(&Text(b)).finish()
        };
        match self {
            Frame::Simple(b) => text(f, "Simple", b),
            Frame::Error(b) => text(f, "Error", b),
            Frame::Integer(i) => f.debug_tuple("Integer").field(i).finish(),
            Frame::Bulk(b) => text(f, "Bulk", b),
            Frame::Null => f.write_str("Null"),
            Frame::Array(v) => f.debug_tuple("Array").field(v).finish(),
            Frame::Double(d) => f.debug_tuple("Double").field(d).finish(),
            Frame::Boolean(b) => f.debug_tuple("Boolean").field(b).finish(),
            Frame::BigNumber(b) => text(f, "BigNumber", b),
            Frame::BulkError(b) => text(f, "BulkError", b),
            Frame::Verbatim { format, text: t } => f
                .debug_struct("Verbatim")
                .field("format", &Text(format))
                .field("text", &Text(t))
                .finish(),
            Frame::Map(v) => f.debug_tuple("Map").field(v).finish(),
            Frame::Set(v) => f.debug_tuple("Set").field(v).finish(),
            Frame::Attribute(v) => f.debug_tuple("Attribute").field(v).finish(),
            Frame::Push(v) => f.debug_tuple("Push").field(v).finish(),
        }
    }
}

impl Frame {
    /// The text of a simple string, bulk string or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) | Frame::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// True for error replies, `-` and `!`.
    pub fn is_error(&self) -> bool {
        self.error_text().is_some()
    }

    /// The message of an error reply, `-` or `!`.
    pub fn error_text(&self) -> Option<&[u8]> {
        match self {
            Frame::Error(b) | Frame::BulkError(b) => Some(b),
            _ => None,
        }
    }

    /// An integer reply, or a simple string, bulk string or big number holding an integer
    /// that fits in an i64 (servers send numbers both ways, e.g. `CONFIG GET` values).
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            Frame::Simple(b) | Frame::Bulk(b) => parse_i64(b),
            Frame::BigNumber(b) => parse_i64(b.strip_prefix(b"+").unwrap_or(b)),
            _ => None,
        }
    }
}

/// If `input` starts with a whole frame, returns it and its exact length in bytes;
/// `Ok(None)` if `input` holds only a prefix of one. Error offsets count from `input[0]`.
///
/// Like mini-redis, a check pass first walks the frame without allocating, so a large
/// frame that is still arriving costs a scan per call and no memory; only once every
/// byte is there is the owned frame built. Both passes run the [`Decoder`], so the two
/// APIs accept exactly the same input.
pub fn parse_frame(input: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, RespError> {
    let Some(len) = frame_len(input, limits)? else {
        return Ok(None);
    };
    build(&input[..len], limits)
}

/// A decoder that delivers every bulk whole: `parse_frame` wants owned values anyway.
fn whole_values(limits: &Limits) -> Decoder {
    Decoder::new(DecoderConfig {
        inline_bulk_max: limits.max_bulk_len,
        limits: *limits,
    })
}

/// The check pass: the length of the frame at the start of `input`, if it is all there.
fn frame_len(input: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
    let mut decoder = whole_values(limits);
    let mut pos = 0;
    while let Some((event, used)) = decoder.next(&input[pos..])? {
        if let Event::FrameEnd { .. } = event {
            return Ok(Some(pos));
        }
        pos += used;
    }
    Ok(None)
}

/// An aggregate being built.
struct Partial {
    kind: AggregateKind,
    /// Elements expected (twice the pairs for maps and attributes).
    len: usize,
    items: Vec<Frame>,
}

impl Partial {
    fn new(kind: AggregateKind, len: u64) -> Self {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        // Safe to reserve: the check pass proved all `len` elements are in the input.
        let items = Vec::with_capacity(len);
        Partial { kind, len, items }
    }

    fn finish(self) -> Frame {
        match self.kind {
            AggregateKind::Array => Frame::Array(self.items),
            AggregateKind::Set => Frame::Set(self.items),
            AggregateKind::Push => Frame::Push(self.items),
            AggregateKind::Map => Frame::Map(pairs(self.items)),
            AggregateKind::Attribute => Frame::Attribute(pairs(self.items)),
        }
    }
}

/// key, value, key, value… → (key, value)…; the decoder counts an even number.
fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        out.push((key, value));
    }
    out
}

/// The build pass over exactly one frame's bytes.
fn build(input: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, RespError> {
    let mut decoder = whole_values(limits);
    let mut pos = 0;
    let mut open: Vec<Partial> = Vec::new();
    while let Some((event, used)) = decoder.next(&input[pos..])? {
        pos += used;
        let mut done = match event {
            Event::Aggregate { kind, len } if len > 0 => {
                open.push(Partial::new(kind, len));
                continue;
            }
            Event::Aggregate { kind, .. } => Partial::new(kind, 0).finish(),
            // `whole_values` never streams a bulk, aggregates are handled above, and this
            // returns before asking for the FrameEnd.
            scalar => match scalar_frame(scalar) {
                Some(f) => f,
                None => unreachable!("not a scalar event"),
            },
        };
        // `done` is complete: give it to its parent, closing each aggregate it fills.
        loop {
            let Some(mut parent) = open.pop() else {
                return Ok(Some((done, pos)));
            };
            if !matches!(done, Frame::Attribute(_)) {
                parent.items.push(done);
            }
            if parent.items.len() < parent.len {
                open.push(parent);
                break;
            }
            done = parent.finish();
        }
    }
    Ok(None)
}

/// The owned frame of a scalar event; `None` for the events that are not one (aggregate
/// headers, streamed bulk pieces, frame ends).
pub(crate) fn scalar_frame(event: Event<'_>) -> Option<Frame> {
    Some(match event {
        Event::Simple(s) => Frame::Simple(s.to_vec()),
        Event::Error(s) => Frame::Error(s.to_vec()),
        Event::Integer(n) => Frame::Integer(n),
        Event::Null => Frame::Null,
        Event::Bulk(b) => Frame::Bulk(b.to_vec()),
        Event::Double(d) => Frame::Double(d),
        Event::Boolean(b) => Frame::Boolean(b),
        Event::BigNumber(n) => Frame::BigNumber(n.to_vec()),
        Event::BulkError(e) => Frame::BulkError(e.to_vec()),
        Event::Verbatim { format, text } => Frame::Verbatim {
            format,
            text: text.to_vec(),
        },
        Event::BulkStart { .. }
        | Event::BulkPart(_)
        | Event::BulkEnd
        | Event::Aggregate { .. }
        | Event::FrameEnd { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::testing::{self, encoded, run};
    use crate::resp::ErrorKind;
    use proptest::prelude::*;

    fn parse(input: &[u8]) -> Result<Option<(Frame, usize)>, RespError> {
        parse_frame(input, &Limits::default())
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn debug_shows_byte_strings_as_text() {
        let f = Frame::Array(vec![
            Frame::Error(b"ASK 8860 127.0.0.1:7001".to_vec()),
            Frame::Bulk(b"a\r\n\xff\"".to_vec()),
            Frame::Integer(3),
            Frame::Null,
        ]);
        assert_eq!(
            format!("{f:?}"),
            r#"Array([Error("ASK 8860 127.0.0.1:7001"), Bulk("a\r\n\xff\""), Integer(3), Null])"#
        );
    }

    /// Every variant with its exact encoding.
    fn every_type() -> Vec<(Frame, &'static [u8])> {
        vec![
            (Frame::Simple(b"OK".to_vec()), b"+OK\r\n"),
            (Frame::Error(b"ERR no".to_vec()), b"-ERR no\r\n"),
            (Frame::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Frame::Integer(0), b":0\r\n"),
            (bulk("a\r\nb"), b"$4\r\na\r\nb\r\n"),
            (bulk(""), b"$0\r\n\r\n"),
            (Frame::Null, b"$-1\r\n"),
            (
                Frame::Array(vec![bulk("GET"), Frame::Integer(1)]),
                b"*2\r\n$3\r\nGET\r\n:1\r\n",
            ),
            (Frame::Array(vec![]), b"*0\r\n"),
            (Frame::Double(1.5), b",1.5\r\n"),
            (Frame::Double(f64::NEG_INFINITY), b",-inf\r\n"),
            (Frame::Double(1e300), b",1e300\r\n"),
            (Frame::Boolean(true), b"#t\r\n"),
            (
                Frame::BigNumber(b"-3492890328409238509324850943850943825024385".to_vec()),
                b"(-3492890328409238509324850943850943825024385\r\n",
            ),
            (
                Frame::BulkError(b"SYNTAX x".to_vec()),
                b"!8\r\nSYNTAX x\r\n",
            ),
            (
                Frame::Verbatim {
                    format: *b"txt",
                    text: b"Some".to_vec(),
                },
                b"=8\r\ntxt:Some\r\n",
            ),
            (
                Frame::Map(vec![(Frame::Simple(b"k".to_vec()), Frame::Integer(1))]),
                b"%1\r\n+k\r\n:1\r\n",
            ),
            (Frame::Set(vec![Frame::Boolean(false)]), b"~1\r\n#f\r\n"),
            (
                Frame::Attribute(vec![(bulk("ttl"), Frame::Integer(9))]),
                b"|1\r\n$3\r\nttl\r\n:9\r\n",
            ),
            (
                Frame::Push(vec![bulk("message"), Frame::Null]),
                b">2\r\n$7\r\nmessage\r\n$-1\r\n",
            ),
        ]
    }

    #[test]
    fn every_type_round_trips_with_its_exact_length() {
        for (frame, bytes) in every_type() {
            assert_eq!(encoded(std::slice::from_ref(&frame)), bytes, "{frame:?}");
            assert_eq!(parse(bytes), Ok(Some((frame.clone(), bytes.len()))));
            let followed = [bytes, b"+next\r\n"].concat();
            assert_eq!(parse(&followed), Ok(Some((frame, bytes.len()))));
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete_not_an_error() {
        for (frame, bytes) in every_type() {
            for end in 0..bytes.len() {
                assert_eq!(parse(&bytes[..end]), Ok(None), "{frame:?} cut at {end}");
            }
        }
    }

    #[test]
    fn all_null_spellings_parse_to_null() {
        for input in [&b"$-1\r\n"[..], b"*-1\r\n", b"_\r\n"] {
            assert_eq!(parse(input), Ok(Some((Frame::Null, input.len()))));
        }
    }

    #[test]
    fn attributes_inside_aggregates_are_dropped() {
        let input = b"*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n%1\r\n|0\r\n+a\r\n:2\r\n";
        let expected = Frame::Array(vec![
            Frame::Integer(1),
            Frame::Map(vec![(Frame::Simple(b"a".to_vec()), Frame::Integer(2))]),
        ]);
        assert_eq!(parse(input), Ok(Some((expected, input.len()))));
    }

    #[test]
    fn large_frame_still_arriving_is_incomplete() {
        let mut input = b"*2\r\n$100000000\r\n".to_vec();
        input.resize(4096, b'x');
        assert_eq!(parse(&input), Ok(None));
    }

    #[test]
    fn oversized_header_fails_at_once() {
        let e = parse(b"$4294967296\r\n").expect_err("over max_bulk_len");
        assert_eq!((e.offset, e.kind), (1, ErrorKind::Limit));
        assert!(e.message.contains("536870912"), "{e}");
        let e = parse(b"~1\r\n$?\r\n").expect_err("streamed string");
        assert_eq!((e.offset, e.kind), (5, ErrorKind::Unsupported));
    }

    #[test]
    fn helpers_read_replies() {
        assert_eq!(Frame::Simple(b"OK".to_vec()).as_bytes(), Some(&b"OK"[..]));
        assert_eq!(bulk("v").as_bytes(), Some(&b"v"[..]));
        let verbatim = Frame::Verbatim {
            format: *b"txt",
            text: b"t".to_vec(),
        };
        assert_eq!(verbatim.as_bytes(), Some(&b"t"[..]));
        assert_eq!(Frame::Integer(1).as_bytes(), None);

        assert!(Frame::Error(b"ERR".to_vec()).is_error());
        assert_eq!(
            Frame::BulkError(b"E".to_vec()).error_text(),
            Some(&b"E"[..])
        );
        assert!(!bulk("ERR").is_error());
        assert_eq!(bulk("ERR").error_text(), None);

        assert_eq!(Frame::Integer(-5).to_i64(), Some(-5));
        assert_eq!(bulk("1234").to_i64(), Some(1234));
        assert_eq!(Frame::Simple(b"-7".to_vec()).to_i64(), Some(-7));
        assert_eq!(Frame::BigNumber(b"+12".to_vec()).to_i64(), Some(12));
        assert_eq!(
            Frame::BigNumber(b"99999999999999999999".to_vec()).to_i64(),
            None
        );
        assert_eq!(bulk("12x").to_i64(), None);
        assert_eq!(Frame::Null.to_i64(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_frames_round_trip(
            frames in proptest::collection::vec(testing::frame(), 1..4),
            cut in any::<usize>(),
        ) {
            let input = encoded(&frames);
            let mut rest = &input[..];
            for frame in &frames {
                let len = encoded(std::slice::from_ref(frame)).len();
                let Some((parsed, used)) = parse(rest)? else {
                    return Err(TestCaseError::fail("complete frame reported incomplete"));
                };
                prop_assert_eq!(used, len);
                // Compare encodings: NaN != NaN in `Frame`'s PartialEq.
                prop_assert_eq!(encoded(&[parsed]), encoded(std::slice::from_ref(frame)));
                prop_assert_eq!(parse(&rest[..cut % len])?, None);
                rest = &rest[used..];
            }
        }

        #[test]
        fn parse_frame_agrees_with_the_decoder_on_hostile_input(
            input in testing::garbage(),
            tight in any::<bool>(),
        ) {
            let limits = if tight { testing::tight_limits() } else { Limits::default() };
            let cfg = DecoderConfig { inline_bulk_max: limits.max_bulk_len, limits };
            let frames = |input: &[u8]| run(cfg, input, &[]).map(|r| r.frame_lens());
            match parse_frame(&input, &limits) {
                Ok(Some((_, len))) => prop_assert_eq!(frames(&input[..len]), Ok(vec![len as u64])),
                Ok(None) => prop_assert_eq!(frames(&input), Ok(vec![])),
                Err(e) => prop_assert_eq!(frames(&input), Err(e)),
            }
        }
    }
}
