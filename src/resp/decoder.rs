//! The streaming (SAX) decoder: one [`Event`] per call, long bulk strings in parts.
//!
//! Byte layout of everything it reads (`CRLF` is `\r\n`; a "line" is the text between the
//! type byte and the first CRLF, at most `max_line` bytes):
//!
//! ```text
//! +<text>CRLF                        simple string               RESP2
//! -<text>CRLF                        error                       RESP2
//! :<int>CRLF                         integer, int = -?[0-9]+     RESP2
//! $<len>CRLF<len bytes>CRLF          bulk string; $-1CRLF = null RESP2
//! *<n>CRLF<n elements>               array;       *-1CRLF = null RESP2
//! _CRLF                              null                        RESP3
//! ,<double>CRLF                      double: 1.5, 1e300, inf, -inf, nan
//! #tCRLF  #fCRLF                     boolean
//! (<[+-]digits>CRLF                  big number
//! !<len>CRLF<len bytes>CRLF          bulk error
//! =<len>CRLF<fmt:3 bytes>:<text>CRLF verbatim string; len counts "fmt:" too
//! %<n>CRLF<2n elements>              map: key, value, key, value…
//! ~<n>CRLF<n elements>               set
//! ><n>CRLF<n elements>               push
//! |<n>CRLF<2n elements>              attribute: metadata about the element after it,
//!                                    not counted in its parent's length
//! $?CRLF  *?CRLF …                   streamed RESP3 strings/aggregates: unsupported
//! ```

use super::error::{ErrorKind, RespError};
use crate::util::escape_bytes;

/// Size limits. Every length read from the input is checked against these as soon as its
/// header line is complete, before anything waits for or allocates the bytes it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, bulk error or verbatim string (`$`, `!`, `=`).
    pub max_bulk_len: usize,
    /// Most elements of an array, set or push, and most pairs of a map or attribute.
    pub max_array_len: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
    /// Longest line (simple string, error, number, length header), without type byte and CRLF.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Redis's default `proto-max-bulk-len`: what a default server accepts, we accept.
            max_bulk_len: 512 << 20,
            // Redis refuses multibulk lengths above INT_MAX and nothing smaller; a replicated
            // SADD or MSET may legitimately carry millions of arguments.
            max_array_len: i32::MAX as usize,
            max_depth: 64,
            max_line: 64 << 10,
        }
    }
}

/// Configuration of a [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Bulk strings up to this length arrive whole as one [`Event::Bulk`]; longer ones as
    /// [`Event::BulkStart`], [`Event::BulkPart`]s and [`Event::BulkEnd`], so the caller
    /// never has to hold them in memory. Bulk errors and verbatim strings are reply types
    /// that never appear on a replication stream and always arrive whole.
    ///
    /// An inline bulk is only returned once all of it is buffered, so the caller's buffer
    /// must be able to grow to `inline_bulk_max` plus its header and CRLF (and a line to
    /// `limits.max_line + 3`); a fixed buffer smaller than that would wait forever.
    pub inline_bulk_max: usize,
    pub limits: Limits,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            inline_bulk_max: 1 << 20,
            limits: Limits::default(),
        }
    }
}

/// The kind of an [`Event::Aggregate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// `*`
    Array,
    /// `%`
    Map,
    /// `~`
    Set,
    /// `|`
    Attribute,
    /// `>`
    Push,
}

/// One step of a RESP stream. Slices borrow from the input given to [`Decoder::next`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    /// `$-1`, `*-1` or `_`.
    Null,
    /// A whole bulk string of at most `inline_bulk_max` bytes.
    Bulk(&'a [u8]),
    /// The header of a bulk string longer than `inline_bulk_max`; its data follows as
    /// [`Event::BulkPart`]s, then [`Event::BulkEnd`].
    BulkStart {
        len: u64,
    },
    /// The next piece of a streamed bulk string: whatever the input held, at least one byte
    /// and never past the end of the data.
    BulkPart(&'a [u8]),
    /// The CRLF after a streamed bulk string's data.
    BulkEnd,
    /// The header of an aggregate; `len` elements follow. For maps and attributes `len` is
    /// twice the number of pairs (key, value, key, value…). Attributes nested inside do not
    /// count towards `len`.
    Aggregate {
        kind: AggregateKind,
        len: u64,
    },
    Double(f64),
    Boolean(bool),
    BigNumber(&'a [u8]),
    BulkError(&'a [u8]),
    Verbatim {
        format: [u8; 3],
        text: &'a [u8],
    },
    /// Reported right after the last event of each top-level frame, consuming no bytes:
    /// the exact number of bytes of that frame, however the input was split.
    FrameEnd {
        len: u64,
    },
}

/// The type bytes of RESP2 and RESP3.
const TYPE_BYTES: &str = "+-:$*_,#(!=%~|>";

/// A streaming RESP decoder: a small state machine over the caller's buffer.
///
/// The caller keeps a buffer of unconsumed bytes, calls [`next`](Decoder::next) on it,
/// drops the consumed prefix, and reads more from the socket when it gets `Ok(None)`:
///
/// ```
/// use ferry::resp::{Decoder, DecoderConfig, Event};
///
/// let mut decoder = Decoder::new(DecoderConfig::default());
/// let mut buf = b"*1\r\n$4\r\nPING\r\n".to_vec();
/// let mut lens = Vec::new();
/// while let Some((event, used)) = decoder.next(&buf)? {
///     if let Event::FrameEnd { len } = event {
///         lens.push(len);
///     }
///     buf.drain(..used);
/// }
/// assert_eq!(lens, [14]);
/// # Ok::<(), ferry::resp::RespError>(())
/// ```
///
/// After an error the position in the stream is lost: drop the connection.
#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    /// Bytes consumed since creation: the base of every error offset.
    offset: u64,
    /// Bytes consumed by the current top-level frame so far.
    frame_len: u64,
    /// The aggregates still waiting for elements, outermost first.
    open: Vec<Open>,
    /// While a streamed bulk is read: data bytes still to come (0: only its CRLF is left).
    bulk_left: Option<u64>,
    /// The last event completed a top-level frame; the next call reports its FrameEnd.
    frame_done: bool,
}

#[derive(Debug)]
struct Open {
    /// Elements still to come.
    left: u64,
    attribute: bool,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        Decoder {
            cfg,
            offset: 0,
            frame_len: 0,
            open: Vec::new(),
            bulk_left: None,
            frame_done: false,
        }
    }

    /// Decodes the next event from the start of `input`, the caller's unconsumed bytes.
    /// Returns the event and how many bytes of `input` it consumed, or `Ok(None)` if
    /// `input` does not hold the whole event yet (nothing is consumed then).
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<Option<(Event<'a>, usize)>, RespError> {
        if self.frame_done {
            self.frame_done = false;
            let len = std::mem::take(&mut self.frame_len);
            return Ok(Some((Event::FrameEnd { len }, 0)));
        }
        let step = match self.bulk_left {
            Some(left) => self.bulk_data(input, left)?,
            None => self.token(input)?,
        };
        if let Some((event, used)) = step {
            self.advance(event, used);
        }
        Ok(step)
    }

    /// Total bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True when no frame is partly decoded and every FrameEnd has been reported: the
    /// only place where the stream may cleanly end.
    pub fn is_between_frames(&self) -> bool {
        self.frame_len == 0 && !self.frame_done
    }

    /// Updates the state for an event about to be returned; the event says what changed.
    fn advance(&mut self, event: Event<'_>, used: usize) {
        self.offset += used as u64;
        self.frame_len += used as u64;
        match event {
            Event::BulkStart { len } => self.bulk_left = Some(len),
            Event::BulkPart(data) => {
                if let Some(left) = &mut self.bulk_left {
                    *left -= data.len() as u64;
                }
            }
            Event::BulkEnd => {
                self.bulk_left = None;
                self.element_done(false);
            }
            Event::Aggregate { kind, len } => {
                let attribute = kind == AggregateKind::Attribute;
                if len == 0 {
                    self.element_done(attribute);
                } else {
                    self.open.push(Open {
                        left: len,
                        attribute,
                    });
                }
            }
            // Produced by `next` itself, never by a token.
            Event::FrameEnd { .. } => {}
            _ => self.element_done(false),
        }
    }

    /// Records that an element is complete: a scalar, a bulk, or an aggregate whose last
    /// element just completed (which may complete its parent in turn).
    fn element_done(&mut self, mut attribute: bool) {
        loop {
            let Some(parent) = self.open.last_mut() else {
                self.frame_done = true;
                return;
            };
            // An attribute annotates the element after it and is not one of its
            // parent's elements.
            if attribute {
                return;
            }
            parent.left -= 1;
            if parent.left > 0 {
                return;
            }
            attribute = parent.attribute;
            self.open.pop();
        }
    }

    /// Inside a streamed bulk: the next piece of its data, or its closing CRLF.
    fn bulk_data<'a>(
        &self,
        input: &'a [u8],
        left: u64,
    ) -> Result<Option<(Event<'a>, usize)>, RespError> {
        if left == 0 {
            let end = self.crlf(input, 0, "after bulk string data")?;
            return Ok(end.then_some((Event::BulkEnd, 2)));
        }
        let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        Ok((n > 0).then(|| (Event::BulkPart(&input[..n]), n)))
    }

    /// A whole event that starts with a type byte and a line.
    fn token<'a>(&self, input: &'a [u8]) -> Result<Option<(Event<'a>, usize)>, RespError> {
        let Some(&ty) = input.first() else {
            return Ok(None);
        };
        if !TYPE_BYTES.as_bytes().contains(&ty) {
            let found = show_byte(ty);
            let message = format!("expected a RESP type byte (one of {TYPE_BYTES}), found {found}");
            return Err(self.error(0, ErrorKind::Malformed, message));
        }
        let Some(cr) = self.line_end(input)? else {
            return Ok(None);
        };
        let line = &input[1..cr];
        let after = cr + 2;
        let event = match ty {
            b'+' => Event::Simple(line),
            b'-' => Event::Error(line),
            b':' => match parse_i64(line) {
                Some(n) => Event::Integer(n),
                None => return Err(self.bad_line(ty, line, "an integer (optional '-', digits)")),
            },
            b',' => match parse_double(line) {
                Some(d) => Event::Double(d),
                None => return Err(self.bad_line(ty, line, "a double (1.5, 1e9, inf, nan…)")),
            },
            b'#' => match line {
                b"t" => Event::Boolean(true),
                b"f" => Event::Boolean(false),
                _ => return Err(self.bad_line(ty, line, "'t' or 'f'")),
            },
            b'_' if line.is_empty() => Event::Null,
            b'_' => return Err(self.bad_line(ty, line, "an empty line")),
            b'(' if is_big_number(line) => Event::BigNumber(line),
            b'(' => return Err(self.bad_line(ty, line, "a big number (optional sign, digits)")),
            b'$' | b'!' | b'=' => return self.blob(ty, input, line, after),
            // `*` `%` `~` `|` `>`: the type byte was checked above.
            _ => self.aggregate(ty, line)?,
        };
        Ok(Some((event, after)))
    }

    /// Finds the CRLF ending the line that starts after the type byte; returns the index
    /// of its '\r', or `None` while the line is incomplete.
    fn line_end(&self, input: &[u8]) -> Result<Option<usize>, RespError> {
        let max = self.cfg.limits.max_line;
        // The CR of the longest allowed line sits at `max`; looking further is pointless.
        let rest = input.get(1..).unwrap_or_default();
        let window = &rest[..rest.len().min(max.saturating_add(1))];
        let Some(i) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
            if window.len() > max {
                let message = format!("line longer than {max} bytes (limits.max_line)");
                return Err(self.error(1, ErrorKind::Limit, message));
            }
            return Ok(None);
        };
        let cr = i + 1;
        if window[i] == b'\n' {
            let message = "expected '\\r\\n' at the end of the line, found 0x0a '\\n'";
            return Err(self.error(cr, ErrorKind::Malformed, message.to_string()));
        }
        match input.get(cr + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(cr)),
            Some(&b) => {
                let message = format!("expected '\\n' after '\\r', found {}", show_byte(b));
                Err(self.error(cr + 1, ErrorKind::Malformed, message))
            }
        }
    }

    /// `$`, `!`, `=`: after the length line, `len` bytes of data and a CRLF. `start` is
    /// the index of the first data byte.
    fn blob<'a>(
        &self,
        ty: u8,
        input: &'a [u8],
        line: &[u8],
        start: usize,
    ) -> Result<Option<(Event<'a>, usize)>, RespError> {
        let max = self.cfg.limits.max_bulk_len;
        let Some(len) = self.length(ty, line, max, "bytes (limits.max_bulk_len)")? else {
            return Ok(Some((Event::Null, start)));
        };
        if ty == b'$' && len > self.cfg.inline_bulk_max as u64 {
            return Ok(Some((Event::BulkStart { len }, start)));
        }
        // `len <= max_bulk_len`, a usize, so the cast is exact.
        let end = start.saturating_add(len as usize);
        if !self.crlf(input, end, "after string data")? {
            return Ok(None);
        }
        let data = &input[start..end];
        let event = match (ty, data) {
            (b'$', _) => Event::Bulk(data),
            (b'!', _) => Event::BulkError(data),
            (_, &[a, b, c, b':', ref text @ ..]) => Event::Verbatim {
                format: [a, b, c],
                text,
            },
            _ => {
                let message = format!(
                    "expected a 3-byte format and ':' at the start of a verbatim string, found \"{}\"",
                    show_line(data)
                );
                return Err(self.error(start, ErrorKind::Malformed, message));
            }
        };
        Ok(Some((event, end + 2)))
    }

    /// `*` `%` `~` `|` `>`: the header of an aggregate.
    fn aggregate<'a>(&self, ty: u8, line: &[u8]) -> Result<Event<'a>, RespError> {
        let kind = match ty {
            b'%' => AggregateKind::Map,
            b'~' => AggregateKind::Set,
            b'|' => AggregateKind::Attribute,
            b'>' => AggregateKind::Push,
            _ => AggregateKind::Array,
        };
        let limits = &self.cfg.limits;
        let unit = match kind {
            AggregateKind::Map | AggregateKind::Attribute => "pairs (limits.max_array_len)",
            _ => "elements (limits.max_array_len)",
        };
        let Some(n) = self.length(ty, line, limits.max_array_len, unit)? else {
            return Ok(Event::Null);
        };
        if self.open.len() >= limits.max_depth {
            let message = format!(
                "aggregates nested deeper than {} levels (limits.max_depth)",
                limits.max_depth
            );
            return Err(self.error(0, ErrorKind::Limit, message));
        }
        let len = match kind {
            AggregateKind::Map | AggregateKind::Attribute => n.saturating_mul(2),
            _ => n,
        };
        Ok(Event::Aggregate { kind, len })
    }

    /// The length line of `$ ! = * % ~ | >`, checked against `limit`. `Ok(None)` is RESP2's
    /// null, `$-1` or `*-1`.
    fn length(
        &self,
        ty: u8,
        line: &[u8],
        limit: usize,
        unit: &str,
    ) -> Result<Option<u64>, RespError> {
        if line == b"?" {
            let message = format!(
                "streamed RESP3 strings and aggregates ('{}?') are not supported",
                ty as char
            );
            return Err(self.error(1, ErrorKind::Unsupported, message));
        }
        let expected = "a length (digits; -1 only after '$' and '*')";
        let n = parse_i64(line).ok_or_else(|| self.bad_line(ty, line, expected))?;
        match u64::try_from(n) {
            Ok(n) if n > limit as u64 => {
                let ty = ty as char;
                let message =
                    format!("length {n} after '{ty}' exceeds the limit of {limit} {unit}");
                Err(self.error(1, ErrorKind::Limit, message))
            }
            Ok(n) => Ok(Some(n)),
            Err(_) if n == -1 && (ty == b'$' || ty == b'*') => Ok(None),
            Err(_) => Err(self.bad_line(ty, line, expected)),
        }
    }

    /// Checks the CRLF that must follow string data at `input[at]`. `Ok(false)` while it
    /// has not fully arrived (and what has arrived is right).
    fn crlf(&self, input: &[u8], at: usize, context: &str) -> Result<bool, RespError> {
        for (i, want) in [(at, b'\r'), (at.saturating_add(1), b'\n')] {
            match input.get(i) {
                None => return Ok(false),
                Some(&b) if b != want => {
                    let message = format!("expected '\\r\\n' {context}, found {}", show_byte(b));
                    return Err(self.error(i, ErrorKind::Malformed, message));
                }
                Some(_) => {}
            }
        }
        Ok(true)
    }

    /// An error at `input[at]` of the current call.
    fn error(&self, at: usize, kind: ErrorKind, message: String) -> RespError {
        RespError {
            kind,
            offset: self.offset + at as u64,
            message,
        }
    }

    /// A line that does not hold what its type byte announces; points at the line's start.
    fn bad_line(&self, ty: u8, line: &[u8], expected: &str) -> RespError {
        let (ty, line) = (ty as char, show_line(line));
        let message = format!("expected {expected} after '{ty}', found \"{line}\"");
        self.error(1, ErrorKind::Malformed, message)
    }
}

/// A RESP integer: an optional '-' and at least one digit; no '+', no spaces, no overflow.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate towards the sign, so that i64::MIN, whose magnitude is not an i64, parses.
    digits.iter().try_fold(0i64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        let acc = acc.checked_mul(10)?;
        if negative {
            acc.checked_sub(d)
        } else {
            acc.checked_add(d)
        }
    })
}

/// Accepts what Rust's float parser accepts, which covers RESP3's `1.5`, `-1e-3`, `inf`,
/// `-inf` and `nan`.
fn parse_double(s: &[u8]) -> Option<f64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn is_big_number(s: &[u8]) -> bool {
    let digits = match s {
        [b'-' | b'+', rest @ ..] => rest,
        _ => s,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// `0x41 'A'`, `0x0d '\r'`, or `0x00` for bytes without a readable form.
fn show_byte(b: u8) -> String {
    let escaped = escape_bytes(&[b]);
    if escaped.starts_with("\\x") {
        format!("0x{b:02x}")
    } else {
        format!("0x{b:02x} '{escaped}'")
    }
}

/// A line for an error message: escaped, and cut short since it may be 64 KiB long.
fn show_line(line: &[u8]) -> String {
    const SHOWN: usize = 40;
    match line.get(..SHOWN) {
        Some(head) if line.len() > SHOWN => format!("{}…", escape_bytes(head)),
        _ => escape_bytes(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode_command;
    use crate::resp::testing::{self, bytewise, encoded, random_cuts, run, Norm};
    use proptest::prelude::*;

    fn cfg(inline_bulk_max: usize) -> DecoderConfig {
        DecoderConfig {
            inline_bulk_max,
            ..DecoderConfig::default()
        }
    }

    /// Decodes `input` whole, one byte at a time and at random splits; all runs must
    /// produce the same events. Returns the whole run.
    fn run_every_split(cfg: DecoderConfig, input: &[u8]) -> testing::Run {
        let whole = run(cfg, input, &[]).expect("valid input");
        assert_eq!(whole.rest, 0);
        let splits = [
            bytewise(input),
            random_cuts(input.len(), 7),
            random_cuts(input.len(), 99),
        ];
        for cuts in splits {
            let split = run(cfg, input, &cuts).expect("valid input");
            assert_eq!(split.events, whole.events, "cuts {cuts:?}");
        }
        whole
    }

    fn first_error(cfg: DecoderConfig, input: &[u8]) -> RespError {
        run(cfg, input, &[]).expect_err("malformed input")
    }

    #[test]
    fn replication_stream_frames_have_exact_lengths() {
        let mut stream = Vec::new();
        encode_command(&mut stream, &["SELECT", "0"]);
        encode_command(&mut stream, &["SET", "a", "2"]);
        let getack = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";
        stream.extend_from_slice(getack);
        let binary: [&[u8]; 3] = [b"SET", b"k\r\n\0", b"\r\n*1\r\n$0\r\n\0"];
        encode_command(&mut stream, &binary);

        let run = run_every_split(DecoderConfig::default(), &stream);
        assert_eq!(run.frame_lens(), [23, 27, 37, 41]);
        let bulks = |args: &[&[u8]]| {
            args.iter()
                .map(|a| Norm::Bulk(a.to_vec()))
                .collect::<Vec<_>>()
        };
        let last = [
            vec![Norm::Aggregate(AggregateKind::Array, 3)],
            bulks(&binary),
            vec![Norm::FrameEnd(41)],
        ]
        .concat();
        assert_eq!(run.events[run.events.len() - 5..], last[..]);
        assert_eq!(run.streamed, 0);
    }

    #[test]
    fn long_bulk_is_streamed_and_never_buffered_whole() {
        let value: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut input = Vec::new();
        encode_command(&mut input, &[b"SET".as_slice(), b"big", &value]);
        const CHUNK: usize = 64 << 10;
        let cuts: Vec<usize> = (1..=input.len() / CHUNK).map(|i| i * CHUNK).collect();

        let streamed = run(cfg(1 << 20), &input, &cuts).expect("valid input");
        assert_eq!(streamed.streamed, 1);
        assert!(
            streamed.max_buffered <= CHUNK,
            "buffered {}",
            streamed.max_buffered
        );
        let expected = [
            Norm::Aggregate(AggregateKind::Array, 3),
            Norm::Bulk(b"SET".to_vec()),
            Norm::Bulk(b"big".to_vec()),
            Norm::Bulk(value),
            Norm::FrameEnd(input.len() as u64),
        ];
        assert_eq!(streamed.events, expected);

        let inline = run(cfg(4 << 20), &input, &cuts).expect("valid input");
        assert_eq!(inline.streamed, 0);
        assert_eq!(inline.events, expected);
    }

    #[test]
    fn streamed_bulk_events_in_order() {
        let mut d = Decoder::new(cfg(2));
        let input = b"$5\r\nhello\r\n";
        assert_eq!(d.next(input), Ok(Some((Event::BulkStart { len: 5 }, 4))));
        assert_eq!(d.next(b""), Ok(None));
        assert_eq!(d.next(b"hel"), Ok(Some((Event::BulkPart(b"hel"), 3))));
        // A part never runs past the data into the CRLF or the next frame.
        assert_eq!(d.next(b"lo\r\n+"), Ok(Some((Event::BulkPart(b"lo"), 2))));
        assert_eq!(d.next(b"\r"), Ok(None));
        assert_eq!(d.next(b"\r\n"), Ok(Some((Event::BulkEnd, 2))));
        assert_eq!(d.next(b""), Ok(Some((Event::FrameEnd { len: 11 }, 0))));
        assert!(d.is_between_frames());
        assert_eq!(d.offset(), 11);
    }

    #[test]
    fn inline_bulk_waits_for_data_and_crlf() {
        let mut d = Decoder::new(DecoderConfig::default());
        for partial in [
            &b"$3"[..],
            b"$3\r",
            b"$3\r\n",
            b"$3\r\nab",
            b"$3\r\nabc",
            b"$3\r\nabc\r",
        ] {
            assert_eq!(d.next(partial), Ok(None), "{partial:?}");
        }
        assert!(d.is_between_frames());
        assert_eq!(d.next(b"$3\r\nabc\r\n"), Ok(Some((Event::Bulk(b"abc"), 9))));
        assert!(!d.is_between_frames());
        assert_eq!(d.next(b""), Ok(Some((Event::FrameEnd { len: 9 }, 0))));
    }

    #[test]
    fn nested_attribute_is_not_counted_and_top_level_one_is_its_own_frame() {
        let input = b"*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:9\r\n#t\r\n";
        let run = run_every_split(DecoderConfig::default(), input);
        let expected = [
            Norm::Aggregate(AggregateKind::Array, 2),
            Norm::Aggregate(AggregateKind::Attribute, 2),
            Norm::Simple(b"k".to_vec()),
            Norm::Simple(b"v".to_vec()),
            Norm::Integer(1),
            Norm::Integer(2),
            Norm::FrameEnd(24),
            Norm::Aggregate(AggregateKind::Attribute, 2),
            Norm::Simple(b"ttl".to_vec()),
            Norm::Integer(9),
            Norm::FrameEnd(14),
            Norm::Boolean(true),
            Norm::FrameEnd(4),
        ];
        assert_eq!(run.events, expected);
    }

    #[test]
    fn every_type_decodes_at_every_split() {
        let input: &[u8] = b"+OK\r\n-ERR x\r\n:-42\r\n$0\r\n\r\n$-1\r\n*-1\r\n_\r\n,-1.5e3\r\n,inf\r\n\
            #f\r\n(-123\r\n!3\r\nbad\r\n=7\r\ntxt:abc\r\n%1\r\n+a\r\n*0\r\n~1\r\n:1\r\n>2\r\n+m\r\n_\r\n";
        let run = run_every_split(cfg(0), input);
        let expected = [
            Norm::Simple(b"OK".to_vec()),
            Norm::Error(b"ERR x".to_vec()),
            Norm::Integer(-42),
            Norm::Bulk(Vec::new()),
            Norm::Null,
            Norm::Null,
            Norm::Null,
            Norm::Double((-1500f64).to_bits()),
            Norm::Double(f64::INFINITY.to_bits()),
            Norm::Boolean(false),
            Norm::BigNumber(b"-123".to_vec()),
            Norm::BulkError(b"bad".to_vec()),
            Norm::Verbatim(*b"txt", b"abc".to_vec()),
            Norm::Aggregate(AggregateKind::Map, 2),
            Norm::Simple(b"a".to_vec()),
            Norm::Aggregate(AggregateKind::Array, 0),
            Norm::Aggregate(AggregateKind::Set, 1),
            Norm::Integer(1),
            Norm::Aggregate(AggregateKind::Push, 2),
            Norm::Simple(b"m".to_vec()),
            Norm::Null,
        ];
        let without_ends: Vec<_> = run
            .events
            .iter()
            .filter(|e| !matches!(e, Norm::FrameEnd(_)))
            .cloned()
            .collect();
        assert_eq!(without_ends, expected);
        assert_eq!(
            run.frame_lens(),
            [5, 8, 6, 6, 5, 5, 3, 9, 6, 4, 7, 9, 13, 12, 8, 11]
        );
    }

    #[test]
    fn malformed_input_is_reported_at_its_exact_offset() {
        use ErrorKind::*;
        let cases: &[(&[u8], u64, ErrorKind, &str)] = &[
            (b"x", 0, Malformed, "expected a RESP type byte (one of +-:$*_,#(!=%~|>), found 0x78 'x'"),
            (b"+OK\r\n\n", 5, Malformed, "expected a RESP type byte (one of +-:$*_,#(!=%~|>), found 0x0a '\\n'"),
            (b"*2\r\n$3\r\nfoo\r\n$1\r\nxA", 18, Malformed, "expected '\\r\\n' after string data, found 0x41 'A'"),
            (b"$3\r\nabc\rX", 8, Malformed, "expected '\\r\\n' after string data, found 0x58 'X'"),
            (b"+OK\n", 3, Malformed, "expected '\\r\\n' at the end of the line, found 0x0a '\\n'"),
            (b"+OK\rX", 4, Malformed, "expected '\\n' after '\\r', found 0x58 'X'"),
            (b":12a\r\n", 1, Malformed, "expected an integer (optional '-', digits) after ':', found \"12a\""),
            (b":\r\n", 1, Malformed, "after ':', found \"\""),
            (b":-\r\n", 1, Malformed, "found \"-\""),
            (b":+1\r\n", 1, Malformed, "found \"+1\""),
            (b": 1\r\n", 1, Malformed, "found \" 1\""),
            (b":9223372036854775808\r\n", 1, Malformed, "an integer"),
            (b"$-2\r\n", 1, Malformed, "expected a length (digits; -1 only after '$' and '*') after '$', found \"-2\""),
            (b"*-2\r\n", 1, Malformed, "found \"-2\""),
            (b"%-1\r\n", 1, Malformed, "after '%', found \"-1\""),
            (b"!-1\r\n", 1, Malformed, "after '!', found \"-1\""),
            (b"$1x\r\n", 1, Malformed, "found \"1x\""),
            (b"#x\r\n", 1, Malformed, "expected 't' or 'f' after '#', found \"x\""),
            (b"_x\r\n", 1, Malformed, "expected an empty line after '_'"),
            (b",1.2.3\r\n", 1, Malformed, "expected a double"),
            (b"(12a\r\n", 1, Malformed, "expected a big number"),
            (b"=3\r\nabc\r\n", 4, Malformed, "expected a 3-byte format and ':' at the start of a verbatim string, found \"abc\""),
            (b"$?\r\n", 1, Unsupported, "streamed RESP3 strings and aggregates ('$?') are not supported"),
            (b"*?\r\n", 1, Unsupported, "('*?')"),
            (b"*1\r\n$4294967296\r\n", 5, Limit, "length 4294967296 after '$' exceeds the limit of 536870912 bytes (limits.max_bulk_len)"),
            (b"*2147483648\r\n", 1, Limit, "exceeds the limit of 2147483647 elements (limits.max_array_len)"),
            (b"%2147483648\r\n", 1, Limit, "2147483647 pairs"),
        ];
        for &(input, offset, kind, message) in cases {
            let e = first_error(DecoderConfig::default(), input);
            assert_eq!((e.offset, e.kind), (offset, kind), "{input:?}: {e}");
            assert!(e.message.contains(message), "{input:?}: {e}");
        }
        let e = first_error(DecoderConfig::default(), b"*2\r\n$3\r\nfoo\r\n$1\r\nxA");
        assert_eq!(
            e.to_string(),
            "at byte 18: expected '\\r\\n' after string data, found 0x41 'A'"
        );
    }

    #[test]
    fn oversized_length_fails_before_its_data_arrives() {
        let mut d = Decoder::new(DecoderConfig::default());
        let e = d.next(b"$4294967296\r\n").expect_err("over max_bulk_len");
        assert_eq!(e.kind, ErrorKind::Limit);
        assert_eq!(
            e.to_string(),
            "at byte 1: length 4294967296 after '$' exceeds the limit of 536870912 bytes (limits.max_bulk_len)"
        );
    }

    #[test]
    fn error_offsets_are_absolute_across_calls() {
        let mut d = Decoder::new(DecoderConfig::default());
        assert_eq!(d.next(b"+OK\r\n"), Ok(Some((Event::Simple(b"OK"), 5))));
        assert_eq!(d.next(b""), Ok(Some((Event::FrameEnd { len: 5 }, 0))));
        assert_eq!(d.next(b":1"), Ok(None));
        assert_eq!(d.next(b":1x\r\n").map_err(|e| e.offset), Err(6));
    }

    #[test]
    fn lines_longer_than_max_line_are_refused_without_their_end() {
        let max = Limits::default().max_line;
        let mut line = vec![b'+'];
        line.resize(1 + max, b'a');
        let mut d = Decoder::new(DecoderConfig::default());
        assert_eq!(
            d.next(&line),
            Ok(None),
            "a line of exactly max_line may still end"
        );
        line.extend_from_slice(b"\r\n");
        assert!(matches!(d.next(&line), Ok(Some((Event::Simple(s), _))) if s.len() == max));

        let mut long = vec![b'+'];
        long.resize(2 + max, b'a');
        let e = Decoder::new(DecoderConfig::default())
            .next(&long)
            .expect_err("too long");
        assert_eq!((e.offset, e.kind), (1, ErrorKind::Limit));
        assert_eq!(
            e.message,
            format!("line longer than {max} bytes (limits.max_line)")
        );
    }

    #[test]
    fn nesting_beyond_max_depth_is_refused() {
        let mut ok = b"*1\r\n".repeat(64);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(
            run(DecoderConfig::default(), &ok, &[]).map(|r| r.frame_lens()),
            Ok(vec![260])
        );

        let deep = b"*1\r\n".repeat(65);
        let e = first_error(DecoderConfig::default(), &deep);
        assert_eq!((e.offset, e.kind), (256, ErrorKind::Limit));
        assert!(e.message.contains("nested deeper than 64 levels"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn frames_decode_alike_at_any_split_and_inline_size(
            frames in proptest::collection::vec(testing::frame(), 1..4),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            inline in prop_oneof![Just(0usize), Just(1), Just(5), Just(1 << 20)],
        ) {
            let input = encoded(&frames);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();

            let whole = run(DecoderConfig::default(), &input, &[])?;
            let lens: Vec<u64> = frames.iter().map(|f| encoded(std::slice::from_ref(f)).len() as u64).collect();
            prop_assert_eq!(whole.frame_lens(), lens);
            prop_assert_eq!(whole.rest, 0);

            let split = run(cfg(inline), &input, &cuts)?;
            prop_assert_eq!(split.events, whole.events);
        }

        #[test]
        fn decoder_never_panics_on_hostile_input(
            input in testing::garbage(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            tight in any::<bool>(),
            inline in 0usize..8,
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();
            let limits = if tight { testing::tight_limits() } else { Limits::default() };
            // Ok or Err both fine; `run` asserts the decoder's contract on every step.
            let _ = run(DecoderConfig { inline_bulk_max: inline, limits }, &input, &cuts);
        }
    }
}
