//! Zipmap: the compact hash of Redis ≤ 2.4 (RDB type 9).
//!
//! ```text
//! <zmlen:u8> ( <len> key <len> <free:u8> value <free bytes> )* <0xFF>
//!
//! zmlen  number of pairs; 254 or more means "walk to count"
//! len    1 byte 0..=253  |  0xFE <u32, host order: LE in every file we will meet>
//! free   unused bytes left after the value by an in-place update; skipped
//! ```
//!
//! Example, {foo: bar, hello: world}:
//! `"\x02\x03foo\x03\x00bar\x05hello\x05\x00world\xff"`.
//!
//! The walker checks what `zipmapValidateIntegrity` checks (the server runs it in full
//! on every zipmap it loads): every length and padding against the bytes left before
//! the end byte, and in [`count`] `zmlen` against the walked count. The server also
//! rejects a zipmap with no pairs; we leave that to the caller, who sees it as a hash
//! with no fields.

use super::bounds::{slice, too_long};
use super::error::EncodingError;

const ENC: &str = "zipmap";

/// One field and its value, borrowed from the blob.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// A length byte saying a u32 follows.
const ZIPMAP_BIGLEN: u8 = 254;
/// The end byte, in place of a key length.
const ZIPMAP_END: u8 = 255;

#[cold]
fn error(offset: usize, message: impl Into<String>) -> EncodingError {
    EncodingError::new(ENC, offset, message)
}

/// Checks that the blob can be walked (a count byte, and the end byte last) and
/// returns the position of the first pair.
pub fn header(blob: &[u8]) -> Result<usize, EncodingError> {
    if blob.len() < 2 {
        return Err(error(
            0,
            format!(
                "blob of {} bytes is too short for a count and an end byte",
                blob.len()
            ),
        ));
    }
    if blob.last() != Some(&ZIPMAP_END) {
        return Err(error(blob.len() - 1, "last byte is not the end byte 0xff"));
    }
    Ok(1)
}

/// Decodes the length at `at` (the caller has ruled out the end byte), returning it and
/// the position after it.
#[inline(always)]
fn length(blob: &[u8], at: usize, end: usize) -> Result<(usize, usize), EncodingError> {
    match slice(blob, at, 1, end) {
        Some(&[ZIPMAP_BIGLEN]) => {
            let b: [u8; 4] = slice(blob, at + 1, 4, end)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| too_long(ENC, "length field of", at, 5, end))?;
            Ok((u32::from_le_bytes(b) as usize, at + 5))
        }
        Some(&[b]) => Ok((usize::from(b), at + 1)),
        _ => Err(too_long(ENC, "length field of", at, 1, end)),
    }
}

/// Reads the pair at `*pos` and moves `*pos` to the next one. Returns `None`, without
/// moving, at the end byte (which must be the blob's last byte). Call [`header`] first
/// and start at the position it returns.
#[inline]
pub fn next<'a>(blob: &'a [u8], pos: &mut usize) -> Result<Option<Pair<'a>>, EncodingError> {
    let start = *pos;
    // Pairs live between the count byte and the end byte; `end` is where that byte is.
    let end = blob.len().saturating_sub(1);
    if start < 1 {
        return Err(error(start, "cursor is on the count byte"));
    }
    match blob.get(start) {
        None => {
            return Err(error(
                start,
                format!("cursor is past the end of the {}-byte blob", blob.len()),
            ))
        }
        Some(&ZIPMAP_END) if start == end => return Ok(None),
        Some(&ZIPMAP_END) => {
            return Err(error(
                start,
                format!("end byte before the blob's last byte {end}"),
            ))
        }
        Some(_) => {}
    }

    let (klen, at) = length(blob, start, end)?;
    let key =
        slice(blob, at, klen, end).ok_or_else(|| too_long(ENC, "key length", at, klen, end))?;
    let at = at + klen;
    if blob.get(at) == Some(&ZIPMAP_END) {
        return Err(error(at, "end byte where a value length was expected"));
    }
    let (vlen, at) = length(blob, at, end)?;
    let free = slice(blob, at, 1, end)
        .and_then(|b| b.first())
        .map(|&f| usize::from(f))
        .ok_or_else(|| too_long(ENC, "free field of", at, 1, end))?;
    let at = at + 1;
    let value =
        slice(blob, at, vlen, end).ok_or_else(|| too_long(ENC, "value length", at, vlen, end))?;
    let at = at + vlen;
    if slice(blob, at, free, end).is_none() {
        return Err(too_long(ENC, "free padding of", at, free, end));
    }
    *pos = at + free;
    Ok(Some((key, value)))
}

/// Counts the pairs by walking them all, and checks the count against `zmlen` unless
/// that is 254 or more (unknown).
pub fn count(blob: &[u8]) -> Result<usize, EncodingError> {
    let mut pos = header(blob)?;
    let mut n = 0usize;
    while next(blob, &mut pos)?.is_some() {
        n += 1;
    }
    let zmlen = blob.first().copied().unwrap_or(ZIPMAP_BIGLEN);
    if zmlen < ZIPMAP_BIGLEN && usize::from(zmlen) != n {
        return Err(error(
            0,
            format!("zmlen says {zmlen} pairs, the walk found {n}"),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn len(n: usize) -> Vec<u8> {
        if n < usize::from(ZIPMAP_BIGLEN) {
            vec![n as u8]
        } else {
            [&[ZIPMAP_BIGLEN][..], &(n as u32).to_le_bytes()].concat()
        }
    }

    /// A zipmap of (key, value, free padding) triples.
    fn build(pairs: &[(&[u8], &[u8], u8)]) -> Vec<u8> {
        let mut zm = vec![pairs.len().min(254) as u8];
        for &(k, v, free) in pairs {
            zm.extend(len(k.len()));
            zm.extend_from_slice(k);
            zm.extend(len(v.len()));
            zm.push(free);
            zm.extend_from_slice(v);
            zm.extend(std::iter::repeat_n(0xaa, usize::from(free)));
        }
        zm.push(ZIPMAP_END);
        zm
    }

    fn decode(blob: &[u8]) -> Result<Vec<Pair<'_>>, EncodingError> {
        let mut pos = header(blob)?;
        let mut out = Vec::new();
        while let Some(p) = next(blob, &mut pos)? {
            out.push(p);
        }
        assert_eq!(pos, blob.len() - 1);
        Ok(out)
    }

    fn msg(blob: &[u8]) -> String {
        decode(blob).unwrap_err().message
    }

    #[test]
    fn reference_example() {
        let zm = b"\x02\x03foo\x03\x00bar\x05hello\x05\x00world\xff";
        assert_eq!(header(zm).unwrap(), 1);
        assert_eq!(
            decode(zm).unwrap(),
            [(&b"foo"[..], &b"bar"[..]), (b"hello", b"world")]
        );
        assert_eq!(count(zm).unwrap(), 2);
        assert_eq!(build(&[(b"foo", b"bar", 0), (b"hello", b"world", 0)]), zm);
    }

    #[test]
    fn long_values_and_free_padding() {
        let v253 = vec![b'v'; 253];
        let v254 = vec![b'w'; 254];
        let k300 = vec![b'k'; 300];
        let zm = build(&[
            (b"a", &v253, 0),
            (b"b", &v254, 3),
            (&k300, b"short", 4),
            (b"", b"", 0),
        ]);
        assert_eq!(zm[1 + 1 + 1 + 1 + 1 + 253 + 1 + 1], ZIPMAP_BIGLEN);
        assert_eq!(
            decode(&zm).unwrap(),
            [
                (&b"a"[..], &v253[..]),
                (b"b", &v254),
                (&k300, b"short"),
                (b"", b"")
            ]
        );
        assert_eq!(count(&zm).unwrap(), 4);
    }

    #[test]
    fn unknown_count_and_count_mismatch() {
        let mut zm = build(&[(b"a", b"1", 0)]);
        zm[0] = 254;
        assert_eq!(count(&zm).unwrap(), 1);
        zm[0] = 2;
        assert_eq!(
            count(&zm).unwrap_err().message,
            "zmlen says 2 pairs, the walk found 1"
        );
    }

    #[test]
    fn corrupt_zipmaps_are_rejected() {
        assert!(header(b"\xff").unwrap_err().message.contains("too short"));
        assert!(header(b"\x01\x00")
            .unwrap_err()
            .message
            .contains("last byte"));
        // A key longer than the rest of the blob; a value and a padding one byte
        // too long.
        assert_eq!(
            msg(b"\x01\x09foo\x01\x00x\xff"),
            "key length 9 exceeds the 6 bytes left"
        );
        assert_eq!(
            msg(b"\x01\x03foo\x02\x00x\xff"),
            "value length 2 exceeds the 1 bytes left"
        );
        assert_eq!(
            msg(b"\x01\x03foo\x01\x01x\xff"),
            "free padding of 1 exceeds the 0 bytes left"
        );
        // A big length cut off, a missing free byte, and an end byte for a value length.
        assert!(msg(b"\x01\xfe\x01\x00\xff").starts_with("length field of 5"));
        assert!(msg(b"\x01\x01a\x01\xff").starts_with("free field of 1"));
        assert_eq!(
            msg(b"\x01\x01a\xff\x00\xff"),
            "end byte where a value length was expected"
        );
        // An end byte before the last byte.
        assert_eq!(
            msg(b"\x01\x01a\x01\x00b\xff\x00\xff"),
            "end byte before the blob's last byte 8"
        );
        let mut pos = 0;
        assert!(next(b"\x00\xff", &mut pos).is_err());
    }

    /// Walks a blob the way the decoder does, requiring that every call errors, ends,
    /// or moves the cursor forward.
    fn walk_terminates(blob: &[u8]) -> Result<(), TestCaseError> {
        let _ = count(blob);
        let Ok(mut pos) = header(blob) else {
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

    fn pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, u8)> {
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(any::<u8>(), 0..300),
            0u8..5,
        )
    }

    proptest! {
        #[test]
        fn valid_zipmaps_round_trip(pairs in proptest::collection::vec(pair(), 0..20)) {
            let refs: Vec<(&[u8], &[u8], u8)> =
                pairs.iter().map(|(k, v, f)| (&k[..], &v[..], *f)).collect();
            let zm = build(&refs);
            let got = decode(&zm).unwrap();
            let want: Vec<(&[u8], &[u8])> = refs.iter().map(|&(k, v, _)| (k, v)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(count(&zm).unwrap(), pairs.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..64), pos in 0usize..80) {
            let mut p = pos;
            match next(&blob, &mut p) {
                Ok(Some(_)) => prop_assert!(p > pos),
                Ok(None) | Err(_) => prop_assert_eq!(p, pos),
            }
            walk_terminates(&blob)?;
            let mut ended = blob.clone();
            ended.push(ZIPMAP_END);
            walk_terminates(&ended)?;
        }

        #[test]
        fn mutated_zipmaps_never_panic(
            pairs in proptest::collection::vec(pair(), 1..8),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let refs: Vec<(&[u8], &[u8], u8)> =
                pairs.iter().map(|(k, v, f)| (&k[..], &v[..], *f)).collect();
            let mut zm = build(&refs);
            for (at, v) in edits {
                let i = at % zm.len();
                zm[i] = v;
            }
            walk_terminates(&zm)?;
            zm.truncate(1 + cut % (zm.len() - 1));
            zm.push(ZIPMAP_END);
            walk_terminates(&zm)?;
        }
    }
}
