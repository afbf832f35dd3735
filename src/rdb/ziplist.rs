//! Ziplist: the compact list of Redis 2.6–6.2 (RDB types 10, 12, 13 and the nodes of
//! quicklist type 14).
//!
//! ```text
//! <zlbytes:u32 LE> <zltail:u32 LE> <zllen:u16 LE> <entry>* <zlend:0xFF>
//!
//! zlbytes  size of the whole blob, itself included
//! zltail   offset of the last entry (of the end byte when the list is empty)
//! zllen    number of entries, 65535 = "too many, walk to count"
//!
//! entry    := <prevlen> <encoding> [data]
//! prevlen  := 1 byte 0..=253  |  0xFE <u32 LE>          size of the previous entry
//! encoding := 00pppppp                                   string, len 0..=63
//!           | 01pppppp qqqqqqqq                          string, 14-bit len, BIG-endian
//!           | 10______ <u32 BE>                          string, 32-bit len, BIG-endian
//!           | 0xC0 <i16 LE> | 0xD0 <i32 LE> | 0xE0 <i64 LE>
//!           | 0xF0 <i24 LE> | 0xFE <i8>
//!           | 0xF1..=0xFD                                immediate 0..=12 (low nibble - 1)
//! ```
//!
//! Example, the list `2, 5`: `0f000000 0c000000 0200 00f3 02f6 ff`.
//!
//! The walker checks what `ziplistValidateIntegrity` checks (the server always runs it
//! in full on ziplists it loads): the header against the blob, every length against
//! the bytes left before the end byte, each entry's `prevlen` against the size of the
//! entry before it, `zltail` against the last entry, and `zllen` (in [`count`])
//! against the walked count. Each entry's successor's `prevlen` is checked when the
//! entry itself is read, so a cursor is all the state the walk needs.

use super::bounds::{array, slice};
use super::elem::Elem;
use super::error::EncodingError;

const ENC: &str = "ziplist";

/// `zlbytes` + `zltail` + `zllen`.
pub const ZIPLIST_HEADER_SIZE: usize = 10;
/// The end byte; no entry starts with it.
const ZIP_END: u8 = 0xFF;
/// A `prevlen` first byte saying a u32 follows.
const ZIP_BIG_PREVLEN: u8 = 0xFE;
/// `zllen` saying the count did not fit.
const ZIPLIST_LEN_UNKNOWN: u16 = u16::MAX;

/// Encoding bytes below this are strings; their top two bits give the length form.
const ZIP_STR_MASK: u8 = 0xC0;
const ZIP_STR_06B: u8 = 0x00;
const ZIP_STR_14B: u8 = 0x40;
const ZIP_STR_32B: u8 = 0x80;
const ZIP_INT_16B: u8 = 0xC0;
const ZIP_INT_32B: u8 = 0xD0;
const ZIP_INT_64B: u8 = 0xE0;
const ZIP_INT_24B: u8 = 0xF0;
const ZIP_INT_8B: u8 = 0xFE;
const ZIP_INT_IMM_MIN: u8 = 0xF1;
const ZIP_INT_IMM_MAX: u8 = 0xFD;
const ZIP_INT_IMM_MASK: u8 = 0x0F;

#[cold]
fn error(offset: usize, message: impl Into<String>) -> EncodingError {
    EncodingError::new(ENC, offset, message)
}

/// An entry's contents (string or integer bytes) run into the end byte.
#[cold]
fn data_too_long(at: usize, n: usize, end: usize) -> EncodingError {
    let left = end.saturating_sub(at);
    error(
        at,
        format!("entry length {n} exceeds the {left} bytes left"),
    )
}

/// An entry's `prevlen` or encoding runs into the end byte.
#[cold]
fn header_too_long(at: usize, n: usize, end: usize) -> EncodingError {
    let left = end.saturating_sub(at);
    error(
        at,
        format!("entry header needs {n} bytes, only {left} are left before the end byte"),
    )
}

/// Reads the header and returns the position of the first entry and `zllen` (`None`
/// when it is 65535, i.e. unknown).
pub fn header(blob: &[u8]) -> Result<(usize, Option<u16>), EncodingError> {
    let len = blob.len();
    // Room for the header and the end byte; `end` = len - 1 is then past the header.
    if len <= ZIPLIST_HEADER_SIZE {
        return Err(error(
            0,
            format!("blob of {len} bytes is too short for a header and an end byte"),
        ));
    }
    let zlbytes = array(blob, 0, len).map_or(0, u32::from_le_bytes);
    let zltail = array(blob, 4, len).map_or(0, u32::from_le_bytes);
    let zllen = array(blob, 8, len).map_or(0, u16::from_le_bytes);
    if zlbytes as usize != len {
        return Err(error(
            0,
            format!("zlbytes says {zlbytes} bytes, the blob has {len}"),
        ));
    }
    if zltail as usize >= len {
        return Err(error(
            4,
            format!("zltail {zltail} is outside the {len}-byte blob"),
        ));
    }
    if blob.last() != Some(&ZIP_END) {
        return Err(error(len - 1, "last byte is not the end byte 0xff"));
    }
    Ok((
        ZIPLIST_HEADER_SIZE,
        (zllen != ZIPLIST_LEN_UNKNOWN).then_some(zllen),
    ))
}

/// Decodes the `prevlen` at `at`, returning it and the position after it.
#[inline(always)]
fn prevlen(blob: &[u8], at: usize, end: usize) -> Result<(usize, usize), EncodingError> {
    match blob.get(at) {
        Some(&ZIP_BIG_PREVLEN) => {
            let b: [u8; 4] = array(blob, at + 1, end).ok_or_else(|| header_too_long(at, 5, end))?;
            Ok((u32::from_le_bytes(b) as usize, at + 5))
        }
        Some(&b) => Ok((usize::from(b), at + 1)),
        None => Err(error(at, "entry starts past the end of the blob")),
    }
}

/// Reads the entry at `*pos` and moves `*pos` to the next one. Returns `None`, without
/// moving, at the end byte (which must be the blob's last byte). Call [`header`] first
/// and start at the position it returns.
#[inline]
pub fn next<'a>(blob: &'a [u8], pos: &mut usize) -> Result<Option<Elem<'a>>, EncodingError> {
    let start = *pos;
    // Entries live between the header and the end byte; `end` is where that byte is.
    let end = blob.len().saturating_sub(1);
    if start < ZIPLIST_HEADER_SIZE {
        return Err(error(start, "cursor is inside the header"));
    }
    match blob.get(start) {
        None => {
            return Err(error(
                start,
                format!("cursor is past the end of the {}-byte blob", blob.len()),
            ))
        }
        Some(&ZIP_END) if start == end => return Ok(None),
        Some(&ZIP_END) => {
            return Err(error(
                start,
                format!("end byte before the blob's last byte {end}"),
            ))
        }
        Some(_) => {}
    }

    let (prev, at) = prevlen(blob, start, end)?;
    if start == ZIPLIST_HEADER_SIZE && prev != 0 {
        return Err(error(
            start,
            format!("first entry has prevlen {prev}, not 0"),
        ));
    }
    let enc = *blob
        .get(at)
        .filter(|_| at < end)
        .ok_or_else(|| header_too_long(start, at + 1 - start, end))?;

    let (elem, next_pos) = if enc < ZIP_STR_MASK {
        // A string: the top two bits say how its length is stored.
        let form = enc & ZIP_STR_MASK;
        let (len, data_at) = if form == ZIP_STR_06B {
            (usize::from(enc & 0x3f), at + 1)
        } else if form == ZIP_STR_14B {
            let [lo] = array(blob, at + 1, end).ok_or_else(|| header_too_long(at, 2, end))?;
            ((usize::from(enc & 0x3f) << 8) | usize::from(lo), at + 2)
        } else {
            // ZIP_STR_32B. The server ignores the low six bits (it masks the byte with
            // ZIP_STR_MASK), so we do too.
            debug_assert_eq!(form, ZIP_STR_32B);
            let b = array(blob, at + 1, end).ok_or_else(|| header_too_long(at, 5, end))?;
            (u32::from_be_bytes(b) as usize, at + 5)
        };
        let data =
            slice(blob, data_at, len, end).ok_or_else(|| data_too_long(data_at, len, end))?;
        (Elem::Bytes(data), data_at + len)
    } else {
        let data_at = at + 1;
        let short = |n| data_too_long(data_at, n, end);
        let (v, int_len) = match enc {
            ZIP_INT_8B => {
                let b = array(blob, data_at, end).ok_or_else(|| short(1))?;
                (i64::from(i8::from_le_bytes(b)), 1)
            }
            ZIP_INT_16B => {
                let b = array(blob, data_at, end).ok_or_else(|| short(2))?;
                (i64::from(i16::from_le_bytes(b)), 2)
            }
            ZIP_INT_24B => {
                let [a, b, c] = array(blob, data_at, end).ok_or_else(|| short(3))?;
                // Put the 24 bits at the top of an i32; shifting back extends the sign.
                (i64::from(i32::from_le_bytes([0, a, b, c]) >> 8), 3)
            }
            ZIP_INT_32B => {
                let b = array(blob, data_at, end).ok_or_else(|| short(4))?;
                (i64::from(i32::from_le_bytes(b)), 4)
            }
            ZIP_INT_64B => {
                let b = array(blob, data_at, end).ok_or_else(|| short(8))?;
                (i64::from_le_bytes(b), 8)
            }
            ZIP_INT_IMM_MIN..=ZIP_INT_IMM_MAX => (i64::from(enc & ZIP_INT_IMM_MASK) - 1, 0),
            _ => return Err(error(at, format!("invalid entry encoding byte {enc:#04x}"))),
        };
        (Elem::Int(v), data_at + int_len)
    };

    check_successor(blob, start, next_pos, end)?;
    *pos = next_pos;
    Ok(Some(elem))
}

/// Checks what follows the entry `start..next_pos`: either the next entry, whose
/// `prevlen` must be this entry's size, or the end byte, in which case `zltail` must
/// point at this entry.
#[inline(always)]
fn check_successor(
    blob: &[u8],
    start: usize,
    next_pos: usize,
    end: usize,
) -> Result<(), EncodingError> {
    if next_pos == end {
        let zltail = array(blob, 4, end).map_or(0, u32::from_le_bytes);
        if zltail as usize != start {
            return Err(error(
                4,
                format!("zltail is {zltail}, but the last entry starts at byte {start}"),
            ));
        }
        return Ok(());
    }
    if blob.get(next_pos) == Some(&ZIP_END) {
        return Err(error(
            next_pos,
            format!("end byte before the blob's last byte {end}"),
        ));
    }
    let (prev, _) = prevlen(blob, next_pos, end)?;
    let size = next_pos - start;
    if prev != size {
        return Err(error(
            next_pos,
            format!("prevlen is {prev}, but the entry before it is {size} bytes"),
        ));
    }
    Ok(())
}

/// Counts the entries by walking them all, and checks the count against `zllen`.
pub fn count(blob: &[u8]) -> Result<usize, EncodingError> {
    let (mut pos, zllen) = header(blob)?;
    let mut n = 0usize;
    while next(blob, &mut pos)?.is_some() {
        n += 1;
    }
    if let Some(zllen) = zllen {
        if usize::from(zllen) != n {
            return Err(error(
                8,
                format!("zllen says {zllen} entries, the walk found {n}"),
            ));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Encoding + data of a string, in the shortest form unless `form` forces one.
    fn zstr(s: &[u8], form: Option<u8>) -> Vec<u8> {
        let n = s.len();
        let form = form.unwrap_or(if n <= 0x3f {
            ZIP_STR_06B
        } else if n <= 0x3fff {
            ZIP_STR_14B
        } else {
            ZIP_STR_32B
        });
        let mut e = match form {
            ZIP_STR_06B => vec![n as u8],
            ZIP_STR_14B => vec![ZIP_STR_14B | (n >> 8) as u8, n as u8],
            _ => {
                let mut e = vec![ZIP_STR_32B];
                e.extend_from_slice(&(n as u32).to_be_bytes());
                e
            }
        };
        e.extend_from_slice(s);
        e
    }

    /// Encoding + data of an integer in the smallest form, as `zipTryEncoding` picks.
    fn zint(v: i64) -> Vec<u8> {
        if (0..=12).contains(&v) {
            vec![ZIP_INT_IMM_MIN + v as u8]
        } else if let Ok(x) = i8::try_from(v) {
            vec![ZIP_INT_8B, x as u8]
        } else if let Ok(x) = i16::try_from(v) {
            [&[ZIP_INT_16B][..], &x.to_le_bytes()].concat()
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            [&[ZIP_INT_24B][..], &(v as i32).to_le_bytes()[..3]].concat()
        } else if let Ok(x) = i32::try_from(v) {
            [&[ZIP_INT_32B][..], &x.to_le_bytes()].concat()
        } else {
            [&[ZIP_INT_64B][..], &v.to_le_bytes()].concat()
        }
    }

    /// A ziplist of entries given as encoding + data; prevlens, zltail, zlbytes and
    /// zllen are filled in.
    fn build(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut tail = ZIPLIST_HEADER_SIZE;
        for e in entries {
            tail = ZIPLIST_HEADER_SIZE + body.len();
            let before = body.len();
            if prev < 254 {
                body.push(prev as u8);
            } else {
                body.push(ZIP_BIG_PREVLEN);
                body.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            body.extend_from_slice(e);
            prev = body.len() - before;
        }
        let total = ZIPLIST_HEADER_SIZE + body.len() + 1;
        let mut zl = Vec::new();
        zl.extend_from_slice(&(total as u32).to_le_bytes());
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&(entries.len().min(65535) as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(ZIP_END);
        zl
    }

    fn decode(blob: &[u8]) -> Result<Vec<Elem<'_>>, EncodingError> {
        let (mut pos, _) = header(blob)?;
        let mut out = Vec::new();
        while let Some(e) = next(blob, &mut pos)? {
            out.push(e);
        }
        assert_eq!(pos, blob.len() - 1);
        Ok(out)
    }

    fn msg(blob: &[u8]) -> String {
        decode(blob).unwrap_err().message
    }

    #[test]
    fn reference_vector_2_5() {
        let zl = hex("0f000000 0c000000 0200 00f3 02f6 ff");
        assert_eq!(header(&zl).unwrap(), (10, Some(2)));
        assert_eq!(decode(&zl).unwrap(), [Elem::Int(2), Elem::Int(5)]);
        assert_eq!(count(&zl).unwrap(), 2);
        // At the end byte `next` keeps returning None without moving.
        let mut pos = 14;
        assert_eq!(next(&zl, &mut pos).unwrap(), None);
        assert_eq!(pos, 14);
    }

    #[test]
    fn every_encoding_decodes() {
        let s63 = vec![b'a'; 63];
        let s64 = vec![b'b'; 64];
        let s300 = vec![b'c'; 300];
        let s16383 = vec![b'd'; 16383];
        let s16384 = vec![b'e'; 16384];
        let mut entries = vec![
            zstr(b"", None),
            zstr(b"hello", None),
            zstr(&s63, None),
            zstr(&s64, None),
            zstr(&s300, None),
            zstr(&s16383, None),
            zstr(&s16384, None),
            zstr(b"tiny in 14-bit form", Some(ZIP_STR_14B)),
            zstr(b"tiny in 32-bit form", Some(ZIP_STR_32B)),
        ];
        let ints = [
            -128,
            127,
            -32768,
            32767,
            -8_388_608,
            -8_388_607,
            -1_000_000,
            -129,
            8_388_607,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
            -1,
            13,
        ];
        entries.extend(ints.iter().map(|&v| zint(v)));
        entries.extend((0..=12).map(zint));
        // Non-minimal integer forms are legal: -1 as int24 and 5 as int64.
        entries.push(vec![ZIP_INT_24B, 0xff, 0xff, 0xff]);
        entries.push([&[ZIP_INT_64B][..], &5i64.to_le_bytes()].concat());
        let zl = build(&entries);

        let mut want: Vec<Elem> = [&b""[..], b"hello", &s63, &s64, &s300, &s16383, &s16384]
            .into_iter()
            .map(Elem::Bytes)
            .collect();
        want.push(Elem::Bytes(b"tiny in 14-bit form"));
        want.push(Elem::Bytes(b"tiny in 32-bit form"));
        want.extend(ints.iter().map(|&v| Elem::Int(v)));
        want.extend((0..=12).map(Elem::Int));
        want.push(Elem::Int(-1));
        want.push(Elem::Int(5));
        assert_eq!(decode(&zl).unwrap(), want);
        assert_eq!(count(&zl).unwrap(), want.len());

        // The encodings the test relies on are the ones the format names.
        assert_eq!(zint(-8_388_608)[0], ZIP_INT_24B);
        assert_eq!(zint(-129)[0], ZIP_INT_16B);
        assert_eq!(zstr(&s64, None)[0], ZIP_STR_14B);
        assert_eq!(zstr(&s16384, None)[0], ZIP_STR_32B);
    }

    #[test]
    fn empty_ziplist_and_unknown_count() {
        let zl = build(&[]);
        assert_eq!(header(&zl).unwrap(), (10, Some(0)));
        assert_eq!(count(&zl).unwrap(), 0);

        let mut zl = build(&[zint(1), zint(2)]);
        zl[8..10].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(header(&zl).unwrap().1, None);
        assert_eq!(count(&zl).unwrap(), 2);
    }

    #[test]
    fn header_errors() {
        let good = build(&[zint(7)]);
        assert!(header(&good[..10])
            .unwrap_err()
            .message
            .contains("too short"));
        let mut zl = good.clone();
        zl[0] += 1;
        assert!(header(&zl).unwrap_err().message.contains("zlbytes says"));
        let mut zl = good.clone();
        zl[4..8].copy_from_slice(&(good.len() as u32).to_le_bytes());
        assert!(header(&zl).unwrap_err().message.contains("zltail"));
        let mut zl = good.clone();
        *zl.last_mut().unwrap() = 0;
        assert!(header(&zl).unwrap_err().message.contains("last byte"));
    }

    #[test]
    fn length_past_the_end_is_reported_with_what_is_left() {
        let mut zl = build(&[[&[ZIP_STR_32B][..], &[0xff; 4], &[b'x'; 37]].concat()]);
        assert_eq!(
            msg(&zl),
            "entry length 4294967295 exceeds the 37 bytes left"
        );
        // One byte too long, in each string form.
        zl = build(&[zstr(b"abc", None)]);
        zl[11] = 4;
        assert_eq!(msg(&zl), "entry length 4 exceeds the 3 bytes left");
        zl = build(&[zstr(b"abc", Some(ZIP_STR_14B))]);
        zl[12] = 4;
        assert_eq!(msg(&zl), "entry length 4 exceeds the 3 bytes left");
        // An integer whose bytes run into the end byte.
        zl = build(&[vec![ZIP_INT_64B, 1, 2, 3]]);
        assert_eq!(msg(&zl), "entry length 8 exceeds the 3 bytes left");
        // A header that runs into the end byte.
        zl = build(&[vec![ZIP_STR_32B, 0, 0]]);
        assert!(msg(&zl).starts_with("entry header needs 5 bytes, only 3"));
        zl = build(&[vec![ZIP_STR_14B]]);
        assert!(msg(&zl).starts_with("entry header needs 2 bytes"));
    }

    #[test]
    fn invalid_encoding_bytes_are_rejected() {
        let valid = [
            ZIP_INT_16B,
            ZIP_INT_32B,
            ZIP_INT_64B,
            ZIP_INT_24B,
            ZIP_INT_8B,
        ];
        for b in 0xc0..=0xffu8 {
            if valid.contains(&b) || (ZIP_INT_IMM_MIN..=ZIP_INT_IMM_MAX).contains(&b) {
                continue;
            }
            let zl = build(&[vec![b, 0, 0, 0, 0, 0, 0, 0, 0]]);
            assert_eq!(msg(&zl), format!("invalid entry encoding byte {b:#04x}"));
        }
    }

    #[test]
    fn prevlen_chain_and_zltail_are_checked() {
        let good = build(&[zstr(b"one", None), zstr(b"two", None), zint(3)]);
        assert!(decode(&good).is_ok());

        let mut zl = good.clone();
        zl[10] = 1; // first entry's prevlen must be 0
        assert_eq!(msg(&zl), "first entry has prevlen 1, not 0");

        let mut zl = good.clone();
        zl[15] = 4; // second entry's prevlen: the first entry is 5 bytes
        let e = decode(&zl).unwrap_err();
        assert_eq!(
            e.message,
            "prevlen is 4, but the entry before it is 5 bytes"
        );
        assert_eq!(e.offset, 15);

        let mut zl = good.clone();
        zl[4..8].copy_from_slice(&15u32.to_le_bytes());
        assert_eq!(
            msg(&zl),
            "zltail is 15, but the last entry starts at byte 20"
        );

        // A 5-byte prevlen holding a small value is legal (the server leaves such
        // prevlens behind when it shrinks entries).
        let mut zl = build(&[zint(1), zint(2)]);
        zl.splice(12..13, [ZIP_BIG_PREVLEN, 2, 0, 0, 0]);
        let n = zl.len() as u32;
        zl[0..4].copy_from_slice(&n.to_le_bytes());
        zl[4..8].copy_from_slice(&12u32.to_le_bytes());
        assert_eq!(decode(&zl).unwrap(), [Elem::Int(1), Elem::Int(2)]);

        // A 5-byte prevlen cut off by the end byte.
        let mut zl = build(&[zint(1)]);
        zl.splice(12..12, [ZIP_BIG_PREVLEN, 2]);
        let n = zl.len() as u32;
        zl[0..4].copy_from_slice(&n.to_le_bytes());
        assert!(msg(&zl).starts_with("entry header needs 5 bytes, only 2"));
    }

    #[test]
    fn stray_end_byte_and_bad_cursors() {
        let mut zl = build(&[zint(1), zint(2)]);
        zl[12] = ZIP_END;
        assert_eq!(msg(&zl), "end byte before the blob's last byte 14");
        let zl = build(&[zint(1)]);
        let mut pos = 3;
        assert!(next(&zl, &mut pos)
            .unwrap_err()
            .message
            .contains("inside the header"));
        let mut pos = 99;
        assert!(next(&zl, &mut pos)
            .unwrap_err()
            .message
            .contains("past the end"));
    }

    #[test]
    fn count_checks_zllen() {
        let mut zl = build(&[zint(1), zint(2)]);
        zl[8] = 3;
        let e = count(&zl).unwrap_err();
        assert_eq!(e.message, "zllen says 3 entries, the walk found 2");
    }

    /// Walks a blob the way the decoder does, requiring that every call errors, ends,
    /// or moves the cursor forward.
    fn walk_terminates(blob: &[u8]) -> Result<(), TestCaseError> {
        let _ = count(blob);
        let Ok((mut pos, _)) = header(blob) else {
            return Ok(());
        };
        for _ in 0..=blob.len() {
            let before = pos;
            match next(blob, &mut pos) {
                Err(_) => return Ok(()),
                Ok(None) => {
                    prop_assert_eq!(pos, before);
                    return Ok(());
                }
                Ok(Some(_)) => prop_assert!(pos > before && pos < blob.len()),
            }
        }
        Err(TestCaseError::fail("walk did not end"))
    }

    fn entry() -> impl Strategy<Value = (Vec<u8>, Result<Vec<u8>, i64>)> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|s| (zstr(&s, None), Ok(s))),
            any::<i64>().prop_map(|v| (zint(v), Err(v))),
            (-20i64..300).prop_map(|v| (zint(v), Err(v))),
        ]
    }

    proptest! {
        #[test]
        fn valid_ziplists_round_trip(entries in proptest::collection::vec(entry(), 0..40)) {
            let zl = build(&entries.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>());
            let got = decode(&zl).unwrap();
            prop_assert_eq!(got.len(), entries.len());
            for (g, (_, want)) in got.iter().zip(&entries) {
                match want {
                    Ok(s) => prop_assert_eq!(*g, Elem::Bytes(s)),
                    Err(v) => prop_assert_eq!(*g, Elem::Int(*v)),
                }
            }
            prop_assert_eq!(count(&zl).unwrap(), entries.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..64), pos in 0usize..80) {
            let mut p = pos;
            match next(&blob, &mut p) {
                Ok(Some(_)) => prop_assert!(p > pos),
                Ok(None) | Err(_) => prop_assert_eq!(p, pos),
            }
            walk_terminates(&blob)?;
        }

        #[test]
        fn arbitrary_bodies_with_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..80),
            tail in any::<u32>(),
        ) {
            let total = ZIPLIST_HEADER_SIZE + body.len() + 1;
            let mut zl = (total as u32).to_le_bytes().to_vec();
            zl.extend_from_slice(&(tail % total as u32).to_le_bytes());
            zl.extend_from_slice(&[0xff, 0xff]);
            zl.extend_from_slice(&body);
            zl.push(ZIP_END);
            walk_terminates(&zl)?;
        }

        #[test]
        fn mutated_ziplists_never_panic(
            entries in proptest::collection::vec(entry(), 1..12),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut zl = build(&entries.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>());
            for (at, v) in edits {
                let i = at % zl.len();
                zl[i] = v;
            }
            walk_terminates(&zl)?;
            // Truncated, with the header patched to match so the walk gets going.
            zl.truncate(ZIPLIST_HEADER_SIZE + cut % (zl.len() - ZIPLIST_HEADER_SIZE));
            zl.push(ZIP_END);
            let n = zl.len() as u32;
            zl[0..4].copy_from_slice(&n.to_le_bytes());
            walk_terminates(&zl)?;
        }
    }
}
