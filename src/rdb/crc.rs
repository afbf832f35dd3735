//! CRC-64 of an RDB file, as Redis computes it.
//!
//! ```text
//! REDIS0011 <aux…> <databases…> 0xFF <crc:u64 LE>
//! └──────────── covered by the CRC ───────┘
//! ```
//!
//! The algorithm is CRC-64/Jones ("CRC-64/REDIS" in the CRC catalogue): polynomial
//! 0xad93d23594c935a9, reflected input and output, initial value 0, no final xor.
//! `crc64.c` carries a pycrc banner claiming an all-ones initial value, but the server
//! always calls `crc64(0, …)`, so 0 is what matches real files. A stored CRC of 0 means
//! "saved with `rdbchecksum no`" and is the caller's business, not ours.
//!
//! The work is done by `crc-fast` (carry-less multiply folding on x86-64 and aarch64,
//! tables elsewhere); this module only pins the algorithm so callers cannot pick the
//! wrong one.

use crc_fast::{CrcAlgorithm, Digest};

/// A running CRC-64/Jones over bytes fed in any number of pieces.
#[derive(Clone, Copy, Debug)]
pub struct Crc64 {
    digest: Digest,
}

impl Crc64 {
    /// A CRC over no bytes yet (value 0).
    pub fn new() -> Self {
        Crc64 {
            digest: Digest::new(CrcAlgorithm::Crc64Redis),
        }
    }

    /// Adds `data` to the checksum. Splitting the input differently gives the same value.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The CRC of everything fed so far; feeding may continue afterwards.
    #[inline]
    pub fn value(&self) -> u64 {
        self.digest.finalize()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Crc64::new()
    }
}

/// The CRC-64/Jones of `data` in one call.
#[inline]
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Redis, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bitwise reflected CRC-64/Jones, the definition written out, to cross-check the
    /// library on inputs of every length.
    fn crc64_bitwise(data: &[u8]) -> u64 {
        const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;
        let mut crc = 0u64;
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn check_value_matches_crc64_c() {
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn empty_input_is_zero() {
        assert_eq!(crc64(b""), 0);
        assert_eq!(Crc64::default().value(), 0);
    }

    #[test]
    fn split_updates_equal_one_shot_at_every_split_point() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(131) >> 3) as u8)
            .collect();
        let whole = crc64(&data);
        assert_eq!(whole, crc64_bitwise(&data));
        for split in 0..=data.len() {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            // Reading the value in the middle must not disturb the running state.
            let _ = c.value();
            c.update(&data[split..]);
            assert_eq!(c.value(), whole, "split at {split}");
        }
    }

    #[test]
    fn library_matches_bitwise_definition_for_every_small_length() {
        let data: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(
                crc64(&data[..len]),
                crc64_bitwise(&data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn empty_redis_7_2_rdb_checksum() {
        let file = hex("524544495330303131 fa0972656469732d76657205372e322e30 \
             fa0a72656469732d62697473c040 fa056374696d65c26d08bc65 \
             fa08757365642d6d656dc2b0c41000 fa08616f662d62617365c000 ff \
             f06e3bfec0ff5aa2");
        let (body, trailer) = file.split_at(file.len() - 8);
        assert_eq!(crc64(body), 0xa25a_ffc0_fe3b_6ef0);
        assert_eq!(
            u64::from_le_bytes(trailer.try_into().unwrap()),
            0xa25a_ffc0_fe3b_6ef0
        );
    }
}
