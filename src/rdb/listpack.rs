//! Listpack: the compact list of Redis 7+ (RDB types 16, 17, 20, 25, stream nodes and
//! the packed nodes of quicklist type 18).
//!
//! ```text
//! <total_bytes:u32 LE> <num_elements:u16 LE, 65535 = unknown> <element>* <0xFF>
//!
//! element := <encoding+data> <backlen>
//!
//! 0xxxxxxx                         7-bit unsigned int                       size 1
//! 10llllll <l bytes>               string, len 0..=63                       size 1+l
//! 110xxxxx yyyyyyyy                13-bit int, two's complement             size 2
//! 1110llll llllllll <l bytes>      string, 12-bit len (high bits first)     size 2+l
//! 0xF0 <len:u32 LE> <len bytes>    string, 32-bit len                       size 5+len
//! 0xF1 <i16 LE>  0xF2 <i24 LE>  0xF3 <i32 LE>  0xF4 <i64 LE>               size 3/4/5/9
//! 0xF5..=0xFE                      invalid
//!
//! backlen := the element's size (encoding+data) in 7-bit groups, most significant
//!            group first; every byte but the first has bit 7 set, so a reader
//!            walking backwards knows where it stops. 1 byte if size <= 127,
//!            2 if < 16383, 3 if < 2097151, 4 if < 268435455, else 5.
//!            size 200 = 0b1_1001000 -> 0x01 0xC8
//! ```
//!
//! A forward walk only needs the backlen's length, but we check its bytes too: a
//! backlen that does not match its element is the cheapest sign of a damaged blob,
//! and the server checks the same (`lpValidateNext`).

use super::bounds::{array, slice, too_long};
use super::elem::Elem;
use super::error::EncodingError;

const ENC: &str = "listpack";

/// `total_bytes` + `num_elements`.
pub const LP_HDR_SIZE: usize = 6;
const LP_HDR_NUMELE_UNKNOWN: u16 = u16::MAX;
const LP_EOF: u8 = 0xFF;
/// Longest backlen: 5 groups of 7 bits cover any u32 string plus its header.
const LP_MAX_BACKLEN_SIZE: usize = 5;

const LP_ENCODING_7BIT_UINT: u8 = 0x00;
const LP_ENCODING_7BIT_UINT_MASK: u8 = 0x80;
const LP_ENCODING_6BIT_STR: u8 = 0x80;
const LP_ENCODING_6BIT_STR_MASK: u8 = 0xC0;
const LP_ENCODING_13BIT_INT: u8 = 0xC0;
const LP_ENCODING_13BIT_INT_MASK: u8 = 0xE0;
const LP_ENCODING_12BIT_STR: u8 = 0xE0;
const LP_ENCODING_12BIT_STR_MASK: u8 = 0xF0;
const LP_ENCODING_32BIT_STR: u8 = 0xF0;
const LP_ENCODING_16BIT_INT: u8 = 0xF1;
const LP_ENCODING_24BIT_INT: u8 = 0xF2;
const LP_ENCODING_32BIT_INT: u8 = 0xF3;
const LP_ENCODING_64BIT_INT: u8 = 0xF4;

#[cold]
fn error(offset: usize, message: impl Into<String>) -> EncodingError {
    EncodingError::new(ENC, offset, message)
}

/// The backlen of an element of `size` bytes, as `lpEncodeBacklen` writes it: the
/// bytes in a buffer and how many of them are used.
#[inline(always)]
fn encode_backlen(size: usize) -> ([u8; LP_MAX_BACKLEN_SIZE], usize) {
    let n = if size <= 127 {
        1
    } else if size < 16383 {
        2
    } else if size < 2097151 {
        3
    } else if size < 268435455 {
        4
    } else {
        5
    };
    let mut buf = [0u8; LP_MAX_BACKLEN_SIZE];
    // Most significant group first; it alone goes without the continuation bit. The
    // server does not mask it, so for 5 bytes it carries whatever is above bit 28.
    for (i, b) in buf.iter_mut().take(n).enumerate() {
        let group = (size >> (7 * (n - 1 - i))) as u8;
        *b = if i == 0 { group } else { (group & 0x7f) | 0x80 };
    }
    (buf, n)
}

/// Reads the header and returns the position of the first element and
/// `num_elements` (`None` when it is 65535, i.e. unknown).
pub fn header(blob: &[u8]) -> Result<(usize, Option<u16>), EncodingError> {
    let len = blob.len();
    if len <= LP_HDR_SIZE {
        return Err(error(
            0,
            format!("blob of {len} bytes is too short for a header and an end byte"),
        ));
    }
    let total = array(blob, 0, len).map_or(0, u32::from_le_bytes);
    let num = array(blob, 4, len).map_or(0, u16::from_le_bytes);
    if total as usize != len {
        return Err(error(
            0,
            format!("total_bytes says {total}, the blob has {len}"),
        ));
    }
    if blob.last() != Some(&LP_EOF) {
        return Err(error(len - 1, "last byte is not the end byte 0xff"));
    }
    Ok((LP_HDR_SIZE, (num != LP_HDR_NUMELE_UNKNOWN).then_some(num)))
}

/// Reads the element at `*pos` and moves `*pos` to the next one. Returns `None`,
/// without moving, at the end byte (which must be the blob's last byte). Call
/// [`header`] first and start at the position it returns.
#[inline]
pub fn next<'a>(blob: &'a [u8], pos: &mut usize) -> Result<Option<Elem<'a>>, EncodingError> {
    let start = *pos;
    // Elements live between the header and the end byte; `end` is where that byte is.
    let end = blob.len().saturating_sub(1);
    if start < LP_HDR_SIZE {
        return Err(error(start, "cursor is inside the header"));
    }
    let b = match blob.get(start) {
        None => {
            return Err(error(
                start,
                format!("cursor is past the end of the {}-byte blob", blob.len()),
            ))
        }
        Some(&LP_EOF) if start == end => return Ok(None),
        Some(&LP_EOF) => {
            return Err(error(
                start,
                format!("end byte before the blob's last byte {end}"),
            ))
        }
        Some(&b) => b,
    };

    let data = |at: usize, n: usize| {
        slice(blob, at, n, end).ok_or_else(|| too_long(ENC, "element length", at, n, end))
    };
    let (elem, size) = if b & LP_ENCODING_7BIT_UINT_MASK == LP_ENCODING_7BIT_UINT {
        (Elem::Int(i64::from(b)), 1)
    } else if b & LP_ENCODING_6BIT_STR_MASK == LP_ENCODING_6BIT_STR {
        let len = usize::from(b & 0x3f);
        (Elem::Bytes(data(start + 1, len)?), 1 + len)
    } else if b & LP_ENCODING_13BIT_INT_MASK == LP_ENCODING_13BIT_INT {
        let [lo] = array(blob, start + 1, end)
            .ok_or_else(|| too_long(ENC, "element length", start + 1, 1, end))?;
        let u = (i64::from(b & 0x1f) << 8) | i64::from(lo);
        // Two's complement in 13 bits: the top half of the range is negative.
        (Elem::Int(if u >= 1 << 12 { u - (1 << 13) } else { u }), 2)
    } else if b & LP_ENCODING_12BIT_STR_MASK == LP_ENCODING_12BIT_STR {
        let [lo] = array(blob, start + 1, end)
            .ok_or_else(|| too_long(ENC, "element length", start + 1, 1, end))?;
        let len = (usize::from(b & 0x0f) << 8) | usize::from(lo);
        (Elem::Bytes(data(start + 2, len)?), 2 + len)
    } else {
        let at = start + 1;
        let short = |n| too_long(ENC, "element length", at, n, end);
        match b {
            LP_ENCODING_32BIT_STR => {
                let n = array(blob, at, end).ok_or_else(|| short(4))?;
                let len = u32::from_le_bytes(n) as usize;
                (Elem::Bytes(data(start + 5, len)?), 5 + len)
            }
            LP_ENCODING_16BIT_INT => {
                let v = array(blob, at, end).ok_or_else(|| short(2))?;
                (Elem::Int(i64::from(i16::from_le_bytes(v))), 3)
            }
            LP_ENCODING_24BIT_INT => {
                let [x, y, z] = array(blob, at, end).ok_or_else(|| short(3))?;
                // Put the 24 bits at the top of an i32; shifting back extends the sign.
                (
                    Elem::Int(i64::from(i32::from_le_bytes([0, x, y, z]) >> 8)),
                    4,
                )
            }
            LP_ENCODING_32BIT_INT => {
                let v = array(blob, at, end).ok_or_else(|| short(4))?;
                (Elem::Int(i64::from(i32::from_le_bytes(v))), 5)
            }
            LP_ENCODING_64BIT_INT => {
                let v = array(blob, at, end).ok_or_else(|| short(8))?;
                (Elem::Int(i64::from_le_bytes(v)), 9)
            }
            _ => {
                return Err(error(
                    start,
                    format!("invalid element encoding byte {b:#04x}"),
                ))
            }
        }
    };

    // The element's `size` bytes were bounds-checked (except a lone 7-bit integer,
    // which may sit on the last byte of a blob whose header was not checked); the
    // backlen read below checks its own bounds.
    let back_at = start + size;
    let (want, n) = encode_backlen(size);
    let got = slice(blob, back_at, n, end).ok_or_else(|| {
        let left = end.saturating_sub(back_at);
        error(
            back_at,
            format!("backlen needs {n} bytes, only {left} are left before the end byte"),
        )
    })?;
    // Compared element by element: for these 1 to 5 bytes a loop beats a call to memcmp.
    if !got.iter().eq(want.iter().take(n)) {
        return Err(error(
            back_at,
            format!("backlen {got:02x?} does not encode the element size {size}"),
        ));
    }
    *pos = back_at + n;
    Ok(Some(elem))
}

/// Counts the elements by walking them all, and checks the count against
/// `num_elements` unless that is 65535 (unknown).
pub fn count(blob: &[u8]) -> Result<usize, EncodingError> {
    let (mut pos, num) = header(blob)?;
    let mut n = 0usize;
    while next(blob, &mut pos)?.is_some() {
        n += 1;
    }
    if let Some(num) = num {
        if usize::from(num) != n {
            return Err(error(
                4,
                format!("num_elements says {num}, the walk found {n}"),
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

    /// Backlen written out from the rule in listpack.c's comments, independently of
    /// `encode_backlen`: groups of 7 bits, most significant first, bit 7 on all but it.
    fn backlen(size: usize) -> Vec<u8> {
        let n = match size {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        (0..n)
            .map(|i| {
                let g = (size >> (7 * (n - 1 - i))) as u8;
                if i == 0 {
                    g
                } else {
                    g & 0x7f | 0x80
                }
            })
            .collect()
    }

    /// Encoding + data of a string, in the shortest form unless `form` forces one.
    fn lstr(s: &[u8], form: Option<u8>) -> Vec<u8> {
        let n = s.len();
        let form = form.unwrap_or(if n < 64 {
            LP_ENCODING_6BIT_STR
        } else if n < 4096 {
            LP_ENCODING_12BIT_STR
        } else {
            LP_ENCODING_32BIT_STR
        });
        let mut e = match form {
            LP_ENCODING_6BIT_STR => vec![LP_ENCODING_6BIT_STR | n as u8],
            LP_ENCODING_12BIT_STR => vec![LP_ENCODING_12BIT_STR | (n >> 8) as u8, n as u8],
            _ => [&[LP_ENCODING_32BIT_STR][..], &(n as u32).to_le_bytes()].concat(),
        };
        e.extend_from_slice(s);
        e
    }

    /// Encoding + data of an integer in the smallest form, as `lpEncodeIntegerGetType`
    /// picks.
    fn lint(v: i64) -> Vec<u8> {
        if (0..=127).contains(&v) {
            vec![v as u8]
        } else if (-4096..=4095).contains(&v) {
            let u = (v + 8192) % 8192;
            vec![LP_ENCODING_13BIT_INT | (u >> 8) as u8, u as u8]
        } else if let Ok(x) = i16::try_from(v) {
            [&[LP_ENCODING_16BIT_INT][..], &x.to_le_bytes()].concat()
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            [&[LP_ENCODING_24BIT_INT][..], &(v as i32).to_le_bytes()[..3]].concat()
        } else if let Ok(x) = i32::try_from(v) {
            [&[LP_ENCODING_32BIT_INT][..], &x.to_le_bytes()].concat()
        } else {
            [&[LP_ENCODING_64BIT_INT][..], &v.to_le_bytes()].concat()
        }
    }

    /// A listpack of elements given as encoding + data; backlens and header filled in.
    fn build(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut lp = vec![0; LP_HDR_SIZE];
        for e in elements {
            lp.extend_from_slice(e);
            lp.extend_from_slice(&backlen(e.len()));
        }
        lp.push(LP_EOF);
        let n = lp.len() as u32;
        lp[0..4].copy_from_slice(&n.to_le_bytes());
        lp[4..6].copy_from_slice(&(elements.len().min(65535) as u16).to_le_bytes());
        lp
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
    fn small_hash_as_the_server_writes_it() {
        // HSET h a 1
        let lp = hex("0c000000 0200 8161 02 01 01 ff");
        assert_eq!(header(&lp).unwrap(), (6, Some(2)));
        assert_eq!(decode(&lp).unwrap(), [Elem::Bytes(b"a"), Elem::Int(1)]);
        assert_eq!(build(&[lstr(b"a", None), lint(1)]), lp);
        assert_eq!(count(&lp).unwrap(), 2);
        let mut pos = 11;
        assert_eq!(next(&lp, &mut pos).unwrap(), None);
        assert_eq!(pos, 11);
    }

    #[test]
    fn strings_at_every_length_boundary() {
        let lens = [0usize, 1, 63, 64, 125, 126, 4095, 4096, 16377, 16378];
        let strings: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'x'; n]).collect();
        let mut elements: Vec<Vec<u8>> = strings.iter().map(|s| lstr(s, None)).collect();
        elements.push(lstr(b"short, 12-bit form", Some(LP_ENCODING_12BIT_STR)));
        elements.push(lstr(b"short, 32-bit form", Some(LP_ENCODING_32BIT_STR)));
        let lp = build(&elements);
        let mut want: Vec<Elem> = strings.iter().map(|s| Elem::Bytes(s)).collect();
        want.push(Elem::Bytes(b"short, 12-bit form"));
        want.push(Elem::Bytes(b"short, 32-bit form"));
        assert_eq!(decode(&lp).unwrap(), want);

        // The forms and backlen widths the boundaries are meant to hit.
        assert_eq!(lstr(&strings[2], None)[0], LP_ENCODING_6BIT_STR | 63);
        assert_eq!(lstr(&strings[3], None)[0], LP_ENCODING_12BIT_STR);
        assert_eq!(lstr(&strings[6], None)[0], LP_ENCODING_12BIT_STR | 0x0f);
        assert_eq!(lstr(&strings[7], None)[0], LP_ENCODING_32BIT_STR);
        assert_eq!(backlen(lstr(&strings[4], None).len()).len(), 1); // size 127
        assert_eq!(backlen(lstr(&strings[5], None).len()).len(), 2); // size 128
        assert_eq!(backlen(lstr(&strings[8], None).len()).len(), 2); // size 16382
        assert_eq!(backlen(lstr(&strings[9], None).len()).len(), 3); // size 16383
    }

    #[test]
    fn backlens_of_three_and_four_bytes() {
        // Element sizes 2097150 and 2097151 straddle the 3/4-byte boundary.
        let a = vec![b'a'; 2097150 - 5];
        let b = vec![b'b'; 2097151 - 5];
        let lp = build(&[lstr(&a, None), lstr(&b, None), lint(1)]);
        assert_eq!(
            decode(&lp).unwrap(),
            [Elem::Bytes(&a), Elem::Bytes(&b), Elem::Int(1)]
        );
    }

    #[test]
    fn backlen_encoding_matches_the_rule_at_every_boundary() {
        for size in [
            1usize,
            2,
            127,
            128,
            200,
            16382,
            16383,
            16384,
            2097150,
            2097151,
            2097152,
            268435454,
            268435455,
            268435456,
            1 << 32,
            (1 << 32) + 4,
        ] {
            let (buf, n) = encode_backlen(size);
            assert_eq!(&buf[..n], &backlen(size)[..], "size {size}");
        }
        assert_eq!(backlen(200), [0x01, 0xc8]);
        assert_eq!(backlen(16383), [0x00, 0xff, 0xff]);
        assert_eq!(backlen(16382), [0x7f, 0xfe]);
    }

    #[test]
    fn integers_at_every_width_boundary() {
        let values = [
            0i64,
            127,
            128,
            -1,
            -4096,
            4095,
            4096,
            -4097,
            -32768,
            32767,
            32768,
            -32769,
            -(1 << 23),
            (1 << 23) - 1,
            1 << 23,
            -(1 << 23) - 1,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX,
        ];
        let lp = build(&values.iter().map(|&v| lint(v)).collect::<Vec<_>>());
        let want: Vec<Elem> = values.iter().map(|&v| Elem::Int(v)).collect();
        assert_eq!(decode(&lp).unwrap(), want);

        // The encodings the boundaries are meant to hit.
        let first = |v| lint(v)[0];
        assert_eq!(first(127), 127);
        assert_eq!(lint(-1), [0xdf, 0xff]);
        assert_eq!(lint(-4096), [0xd0, 0x00]);
        assert_eq!(lint(4095), [0xcf, 0xff]);
        assert_eq!(first(4096), LP_ENCODING_16BIT_INT);
        assert_eq!(first(32768), LP_ENCODING_24BIT_INT);
        assert_eq!(first(1 << 23), LP_ENCODING_32BIT_INT);
        assert_eq!(first(i64::from(i32::MAX) + 1), LP_ENCODING_64BIT_INT);

        // Non-minimal forms are legal: 5 as a 13-bit, 16-bit and 64-bit integer.
        let lp = build(&[
            vec![LP_ENCODING_13BIT_INT, 5],
            vec![LP_ENCODING_16BIT_INT, 5, 0],
            [&[LP_ENCODING_64BIT_INT][..], &5i64.to_le_bytes()].concat(),
        ]);
        assert_eq!(decode(&lp).unwrap(), [Elem::Int(5); 3]);
    }

    #[test]
    fn header_errors() {
        let good = build(&[lint(7)]);
        assert!(header(&good[..6])
            .unwrap_err()
            .message
            .contains("too short"));
        let mut lp = good.clone();
        lp[0] += 1;
        assert_eq!(
            header(&lp).unwrap_err().message,
            "total_bytes says 10, the blob has 9"
        );
        let mut lp = good.clone();
        *lp.last_mut().unwrap() = 0;
        assert!(header(&lp).unwrap_err().message.contains("last byte"));
    }

    #[test]
    fn num_elements_is_checked_unless_unknown() {
        let mut lp = build(&[lint(1), lint(2)]);
        lp[4] = 3;
        assert_eq!(
            count(&lp).unwrap_err().message,
            "num_elements says 3, the walk found 2"
        );
        lp[4..6].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(header(&lp).unwrap().1, None);
        assert_eq!(count(&lp).unwrap(), 2);
        assert_eq!(count(&build(&[])).unwrap(), 0);
    }

    #[test]
    fn invalid_encodings_are_rejected() {
        for b in 0xf5..=0xfeu8 {
            let lp = build(&[vec![b, 0, 0, 0, 0, 0, 0, 0, 0]]);
            assert_eq!(msg(&lp), format!("invalid element encoding byte {b:#04x}"));
        }
    }

    #[test]
    fn lengths_past_the_end_are_rejected() {
        let mut lp = build(&[lstr(b"abc", None)]);
        lp[6] = LP_ENCODING_6BIT_STR | 5;
        assert_eq!(msg(&lp), "element length 5 exceeds the 4 bytes left");
        let lp = build(&[[&[LP_ENCODING_32BIT_STR][..], &[0xff; 4], b"xyz"].concat()]);
        assert_eq!(
            msg(&lp),
            "element length 4294967295 exceeds the 4 bytes left"
        );
        let lp = build(&[vec![LP_ENCODING_64BIT_INT, 1, 2]]);
        assert_eq!(msg(&lp), "element length 8 exceeds the 3 bytes left");
        // An element whose backlen would run into the end byte.
        let mut lp = build(&[lint(1)]);
        lp.remove(7);
        lp[0] -= 1;
        assert_eq!(
            msg(&lp),
            "backlen needs 1 bytes, only 0 are left before the end byte"
        );
    }

    #[test]
    fn wrong_backlens_are_rejected() {
        let good = build(&[lstr(&[b'z'; 200], None), lint(1)]);
        assert!(decode(&good).is_ok());
        // Size 202: backlen 0x01 0xca. A wrong value, a missing continuation bit, and
        // the non-minimal 3-byte form of a 2-byte value are all rejected.
        let at = 6 + 202;
        assert_eq!(&good[at..at + 2], [0x01, 0xca]);
        let mut lp = good.clone();
        lp[at + 1] = 0xcb;
        let e = decode(&lp).unwrap_err();
        assert_eq!(
            e.message,
            "backlen [01, cb] does not encode the element size 202"
        );
        assert_eq!(e.offset, at);
        let mut lp = good.clone();
        lp[at + 1] = 0x4a;
        assert!(msg(&lp).contains("does not encode"));
        let mut lp = good.clone();
        lp.splice(at..at + 2, [0x00, 0x81, 0xca]);
        lp[0] += 1;
        assert!(msg(&lp).contains("does not encode"));
    }

    #[test]
    fn stray_end_byte_and_bad_cursors() {
        let mut lp = build(&[lint(1), lint(2)]);
        lp[8] = LP_EOF;
        assert_eq!(msg(&lp), "end byte before the blob's last byte 10");
        let mut pos = 2;
        assert!(next(&lp, &mut pos)
            .unwrap_err()
            .message
            .contains("inside the header"));
        let mut pos = 50;
        assert!(next(&lp, &mut pos)
            .unwrap_err()
            .message
            .contains("past the end"));
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

    fn element() -> impl Strategy<Value = (Vec<u8>, Result<Vec<u8>, i64>)> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|s| (lstr(&s, None), Ok(s))),
            any::<i64>().prop_map(|v| (lint(v), Err(v))),
            (-5000i64..5000).prop_map(|v| (lint(v), Err(v))),
        ]
    }

    proptest! {
        #[test]
        fn valid_listpacks_round_trip(elements in proptest::collection::vec(element(), 0..40)) {
            let lp = build(&elements.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>());
            let got = decode(&lp).unwrap();
            prop_assert_eq!(got.len(), elements.len());
            for (g, (_, want)) in got.iter().zip(&elements) {
                match want {
                    Ok(s) => prop_assert_eq!(*g, Elem::Bytes(s)),
                    Err(v) => prop_assert_eq!(*g, Elem::Int(*v)),
                }
            }
            prop_assert_eq!(count(&lp).unwrap(), elements.len());
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
        fn arbitrary_bodies_with_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..80)) {
            let total = LP_HDR_SIZE + body.len() + 1;
            let mut lp = (total as u32).to_le_bytes().to_vec();
            lp.extend_from_slice(&[0xff, 0xff]);
            lp.extend_from_slice(&body);
            lp.push(LP_EOF);
            walk_terminates(&lp)?;
        }

        #[test]
        fn mutated_listpacks_never_panic(
            elements in proptest::collection::vec(element(), 1..12),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut lp = build(&elements.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>());
            for (at, v) in edits {
                let i = at % lp.len();
                lp[i] = v;
            }
            walk_terminates(&lp)?;
            lp.truncate(LP_HDR_SIZE + cut % (lp.len() - LP_HDR_SIZE));
            lp.push(LP_EOF);
            let n = lp.len() as u32;
            lp[0..4].copy_from_slice(&n.to_le_bytes());
            walk_terminates(&lp)?;
        }
    }
}
