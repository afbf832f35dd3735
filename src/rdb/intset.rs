//! Intset: a sorted array of unique integers (RDB type 11, sets of integers).
//!
//! ```text
//! <encoding:u32 LE> <length:u32 LE> <length × int LE>
//!
//! encoding  bytes per integer: 2 (INTSET_ENC_INT16), 4 (INTSET_ENC_INT32),
//!           8 (INTSET_ENC_INT64); every integer uses the same width
//! length    number of integers, > 0; the blob is exactly 8 + length × encoding bytes
//! ```
//!
//! Example, the set {1, 2, 3}: `02000000 03000000 0100 0200 0300`.
//!
//! The integers are stored in ascending order without duplicates. Like the server's
//! default shallow check we do not verify the order; a duplicate would only make the
//! target set one member smaller.

use super::error::EncodingError;

const ENC: &str = "intset";

/// `encoding` + `length`.
pub const INTSET_HEADER_SIZE: usize = 8;
pub const INTSET_ENC_INT16: u32 = 2;
pub const INTSET_ENC_INT32: u32 = 4;
pub const INTSET_ENC_INT64: u32 = 8;

#[cold]
fn error(offset: usize, message: impl Into<String>) -> EncodingError {
    EncodingError::new(ENC, offset, message)
}

/// Reads and checks the header, returning the width of each integer in bytes (2, 4 or
/// 8) and how many there are (at least 1).
pub fn header(blob: &[u8]) -> Result<(u32, u32), EncodingError> {
    let word = |at: usize| {
        blob.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let (Some(enc), Some(len)) = (word(0), word(4)) else {
        return Err(error(
            0,
            format!(
                "blob of {} bytes is shorter than the 8-byte header",
                blob.len()
            ),
        ));
    };
    if !matches!(enc, INTSET_ENC_INT16 | INTSET_ENC_INT32 | INTSET_ENC_INT64) {
        return Err(error(0, format!("encoding {enc} is not 2, 4 or 8")));
    }
    if len == 0 {
        return Err(error(4, "intset is empty"));
    }
    // At most 8 + (2^32 - 1) × 8 bytes: no overflow in u64.
    let want = INTSET_HEADER_SIZE as u64 + u64::from(len) * u64::from(enc);
    if want != blob.len() as u64 {
        return Err(error(
            4,
            format!(
                "{len} integers of {enc} bytes need {want} bytes, the blob has {}",
                blob.len()
            ),
        ));
    }
    Ok((enc, len))
}

/// The integer at `index`, for the `enc` that [`header`] returned. Errors (rather than
/// panics) if `index` or `enc` do not fit the blob.
#[inline]
pub fn get(blob: &[u8], enc: u32, index: u32) -> Result<i64, EncodingError> {
    fn read<const N: usize>(blob: &[u8], at: usize) -> Option<[u8; N]> {
        blob.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    if !matches!(enc, INTSET_ENC_INT16 | INTSET_ENC_INT32 | INTSET_ENC_INT64) {
        return Err(error(0, format!("encoding {enc} is not 2, 4 or 8")));
    }
    let at = (index as usize)
        .checked_mul(enc as usize)
        .and_then(|x| x.checked_add(INTSET_HEADER_SIZE))
        .unwrap_or(usize::MAX);
    let v = match enc {
        INTSET_ENC_INT16 => read(blob, at).map(|b| i64::from(i16::from_le_bytes(b))),
        INTSET_ENC_INT32 => read(blob, at).map(|b| i64::from(i32::from_le_bytes(b))),
        // INTSET_ENC_INT64, the only width left.
        _ => read(blob, at).map(i64::from_le_bytes),
    };
    v.ok_or_else(|| {
        error(
            at.min(blob.len()),
            format!(
                "integer {index} is past the end of the {}-byte blob",
                blob.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(enc: u32, values: &[i64]) -> Vec<u8> {
        let mut b = enc.to_le_bytes().to_vec();
        b.extend_from_slice(&(values.len() as u32).to_le_bytes());
        for &v in values {
            b.extend_from_slice(&v.to_le_bytes()[..enc as usize]);
        }
        b
    }

    fn decode(blob: &[u8]) -> Result<Vec<i64>, EncodingError> {
        let (enc, len) = header(blob)?;
        (0..len).map(|i| get(blob, enc, i)).collect()
    }

    #[test]
    fn small_set_of_int16() {
        let blob = [2, 0, 0, 0, 3, 0, 0, 0, 1, 0, 2, 0, 3, 0];
        assert_eq!(header(&blob).unwrap(), (2, 3));
        assert_eq!(decode(&blob).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn every_width_at_its_limits() {
        let v16 = [i64::from(i16::MIN), -1, 0, i64::from(i16::MAX)];
        let v32 = [i64::from(i32::MIN), -40000, 40000, i64::from(i32::MAX)];
        let v64 = [i64::MIN, -(1 << 40), 1 << 40, i64::MAX];
        assert_eq!(decode(&build(2, &v16)).unwrap(), v16);
        assert_eq!(decode(&build(4, &v32)).unwrap(), v32);
        assert_eq!(decode(&build(8, &v64)).unwrap(), v64);
    }

    #[test]
    fn header_errors() {
        let m = |b: &[u8]| header(b).unwrap_err().message;
        assert!(m(&[2, 0, 0, 0, 1, 0, 0]).contains("shorter than the 8-byte header"));
        assert_eq!(m(&build(3, &[1])), "encoding 3 is not 2, 4 or 8");
        assert_eq!(m(&build(2, &[])), "intset is empty");
        let mut b = build(4, &[1, 2]);
        b.pop();
        assert_eq!(
            m(&b),
            "2 integers of 4 bytes need 16 bytes, the blob has 15"
        );
        let mut b = build(2, &[1]);
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(m(&b).contains("need 8589934598 bytes"));
    }

    #[test]
    fn get_out_of_range_errors() {
        let b = build(2, &[1, 2]);
        assert!(get(&b, 2, 2).is_err());
        assert!(get(&b, 8, 1).is_err());
        assert!(get(&b, 5, 0).is_err());
        assert!(get(&b, 8, u32::MAX).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            blob in proptest::collection::vec(any::<u8>(), 0..64),
            enc in any::<u32>(),
            index in any::<u32>(),
        ) {
            let _ = get(&blob, enc, index);
            if let Ok((enc, len)) = header(&blob) {
                for i in 0..len {
                    prop_assert!(get(&blob, enc, i).is_ok());
                }
            }
        }

        #[test]
        fn valid_intsets_round_trip(
            enc in prop_oneof![Just(2u32), Just(4), Just(8)],
            raw in proptest::collection::vec(any::<i64>(), 1..50),
        ) {
            let bits = enc * 8;
            let values: Vec<i64> = raw.iter().map(|&v| (v << (64 - bits)) >> (64 - bits)).collect();
            prop_assert_eq!(decode(&build(enc, &values)).unwrap(), values);
        }
    }
}
