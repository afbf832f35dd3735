//! `Elem`: one element of a value as the RDB stores it, without copying.
//!
//! Compact encodings (ziplist, listpack, intset) and integer-encoded RDB strings store
//! numbers as binary integers, not as text. The server materialises them as their
//! canonical decimal text (`ll2string`), and so must we; but most consumers only copy
//! the element somewhere (a RESP buffer, a JSON writer), so an `Elem` keeps the integer
//! and renders it on demand instead of allocating a string per element.

use std::borrow::Cow;
use std::fmt;

/// One string element of a value: either bytes borrowed from a buffer or an integer
/// that stands for its decimal text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Elem<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}

impl<'a> Elem<'a> {
    /// Appends the element's text to `out` (integers as canonical decimal).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match *self {
            Elem::Bytes(b) => out.extend_from_slice(b),
            Elem::Int(i) => {
                let mut buf = itoa_buf();
                out.extend_from_slice(fmt_i64(i, &mut buf));
            }
        }
    }

    /// The element's text, borrowed when possible.
    pub fn as_bytes(&self) -> Cow<'a, [u8]> {
        match *self {
            Elem::Bytes(b) => Cow::Borrowed(b),
            Elem::Int(i) => Cow::Owned(i.to_string().into_bytes()),
        }
    }

    /// The element's text as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_bytes().into_owned()
    }

    /// Length in bytes of the element's text.
    pub fn text_len(&self) -> usize {
        match *self {
            Elem::Bytes(b) => b.len(),
            Elem::Int(i) => {
                let mut buf = itoa_buf();
                fmt_i64(i, &mut buf).len()
            }
        }
    }

    /// The element as an integer, if it is one or its text is a canonical integer.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Elem::Int(i) => Some(i),
            Elem::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        }
    }
}

impl fmt::Debug for Elem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Elem::Int(i) => write!(f, "{i}"),
        }
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Formats `v` in decimal into the tail of `buf` (20 bytes hold any i64).
fn fmt_i64(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_render_as_canonical_decimal() {
        for v in [0i64, 7, -7, 12, i64::MAX, i64::MIN, 4194304, -65523] {
            let mut out = Vec::new();
            Elem::Int(v).write_to(&mut out);
            assert_eq!(out, v.to_string().into_bytes());
            assert_eq!(Elem::Int(v).text_len(), v.to_string().len());
        }
    }
}
