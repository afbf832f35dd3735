//! Encoders: commands for the writer, and every [`Frame`] variant.

use super::frame::Frame;

/// Appends a command as RESP2 clients send it: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per
/// argument. Takes `&str`, `&[u8]` or `Vec<u8>` arguments alike.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    header(out, b'*', args.len() as u64);
    for arg in args {
        let arg = arg.as_ref();
        encode_bulk_header(out, arg.len() as u64);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `*<n>\r\n`, the head of a command of `n` arguments.
pub fn encode_array_header(out: &mut Vec<u8>, n: u64) {
    header(out, b'*', n);
}

/// Appends `$<len>\r\n`, so that a writer can stream an argument too large to hold:
/// this header, then exactly `len` bytes of data in pieces, then `\r\n`.
pub fn encode_bulk_header(out: &mut Vec<u8>, len: u64) {
    header(out, b'$', len);
}

impl Frame {
    /// Appends the RESP encoding of this frame. `Simple`, `Error` and `BigNumber` text
    /// must not contain `\r` or `\n` (RESP has no escape for them).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(n) => {
                out.push(b':');
                if *n < 0 {
                    out.push(b'-');
                }
                decimal(out, n.unsigned_abs());
                out.extend_from_slice(b"\r\n");
            }
            Frame::Bulk(b) => blob(out, b'$', b),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::Array(items) => aggregate(out, b'*', items),
            Frame::Double(d) => line(out, b',', double(*d).as_bytes()),
            Frame::Boolean(true) => out.extend_from_slice(b"#t\r\n"),
            Frame::Boolean(false) => out.extend_from_slice(b"#f\r\n"),
            Frame::BigNumber(n) => line(out, b'(', n),
            Frame::BulkError(e) => blob(out, b'!', e),
            Frame::Verbatim { format, text } => {
                // The length covers the format and its ':' too.
                header(out, b'=', 4 + text.len() as u64);
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Map(pairs) => map(out, b'%', pairs),
            Frame::Set(items) => aggregate(out, b'~', items),
            Frame::Attribute(pairs) => map(out, b'|', pairs),
            Frame::Push(items) => aggregate(out, b'>', items),
        }
    }
}

/// `<ty><n>\r\n`: the header of a string or an aggregate.
fn header(out: &mut Vec<u8>, ty: u8, n: u64) {
    out.push(ty);
    decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, ty: u8, text: &[u8]) {
    out.push(ty);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn blob(out: &mut Vec<u8>, ty: u8, data: &[u8]) {
    header(out, ty, data.len() as u64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, ty: u8, items: &[Frame]) {
    header(out, ty, items.len() as u64);
    for item in items {
        item.encode(out);
    }
}

fn map(out: &mut Vec<u8>, ty: u8, pairs: &[(Frame, Frame)]) {
    header(out, ty, pairs.len() as u64);
    for (key, value) in pairs {
        key.encode(out);
        value.encode(out);
    }
}

/// Writes `n` in decimal without going through `fmt`: every argument of every command
/// the writer sends has a length header, so this is on the hot path.
fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    out.extend_from_slice(decimal_digits(&mut digits, n));
}

/// The decimal digits of `n`, written at the end of `digits`.
fn decimal_digits(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[start..]
}

/// Appends an integer as a bulk string of its decimal text (`$2\r\n-7\r\n`), without
/// allocating.
pub fn encode_int_bulk(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let text = decimal_digits(&mut digits, n.unsigned_abs());
    header(out, b'$', (text.len() + usize::from(n < 0)) as u64);
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// The shortest text that parses back to the same double (Rust's `{:?}`, which switches to
/// exponent form for very large and small magnitudes), and RESP3's `inf`, `-inf`, `nan`.
fn double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_string()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse_frame, Limits};

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        out
    }

    #[test]
    fn command_is_an_array_of_bulks() {
        let mut out = Vec::new();
        encode_command(&mut out, &["SET", "key", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n");
        out.clear();
        encode_command(&mut out, &[vec![0u8; 10], b"\r\n".to_vec()]);
        assert_eq!(
            out,
            [&b"*2\r\n$10\r\n"[..], &[0; 10], b"\r\n$2\r\n\r\n\r\n"].concat()
        );
        out.clear();
        encode_command::<&[u8]>(&mut out, &[]);
        assert_eq!(out, b"*0\r\n");
    }

    #[test]
    fn streamed_argument_matches_the_whole_encoding() {
        let value = vec![b'v'; 12345];
        let mut whole = Vec::new();
        encode_command(&mut whole, &[b"SET".as_slice(), b"k", &value]);

        let mut streamed = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n".to_vec();
        encode_bulk_header(&mut streamed, value.len() as u64);
        for piece in value.chunks(1000) {
            streamed.extend_from_slice(piece);
        }
        streamed.extend_from_slice(b"\r\n");
        assert_eq!(streamed, whole);
    }

    #[test]
    fn decimals_are_exact_at_the_edges() {
        for (n, text) in [
            (0, "0"),
            (9, "9"),
            (10, "10"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            encode_bulk_header(&mut out, n);
            assert_eq!(out, format!("${text}\r\n").as_bytes());
        }
        assert_eq!(
            encode(&Frame::Integer(i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(
            encode(&Frame::Integer(i64::MAX)),
            b":9223372036854775807\r\n"
        );
        assert_eq!(encode(&Frame::Integer(-1)), b":-1\r\n");
    }

    #[test]
    fn doubles_are_shortest_round_trip_text() {
        let cases = [
            (1.5, ",1.5\r\n"),
            (0.1, ",0.1\r\n"),
            (-2.0, ",-2.0\r\n"),
            (1e300, ",1e300\r\n"),
            (1e-7, ",1e-7\r\n"),
            (f64::INFINITY, ",inf\r\n"),
            (f64::NEG_INFINITY, ",-inf\r\n"),
            (f64::NAN, ",nan\r\n"),
        ];
        for (d, text) in cases {
            assert_eq!(encode(&Frame::Double(d)), text.as_bytes());
        }
        for d in [0.1 + 0.2, f64::MAX, f64::MIN_POSITIVE, 5e-324, -0.0] {
            let bytes = encode(&Frame::Double(d));
            let Ok(Some((Frame::Double(back), _))) = parse_frame(&bytes, &Limits::default()) else {
                panic!("{bytes:?} does not parse back");
            };
            assert_eq!(back.to_bits(), d.to_bits());
        }
    }

    #[test]
    fn null_is_the_resp2_null_bulk() {
        assert_eq!(encode(&Frame::Null), b"$-1\r\n");
    }
}
