//! Hash slots: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384.
//!
//! The rules are the server's `keyHashSlot` (cluster.c): if the key has a `{`, and a `}`
//! somewhere after it, and at least one byte between them, only the bytes between the
//! *first* `{` and the first `}` after it are hashed; otherwise the whole key is.

/// Number of hash slots of a Redis/Valkey cluster.
pub const SLOTS: usize = 16384;

/// CRC16-CCITT as the cluster spec defines it (XMODEM): polynomial 0x1021, initial value
/// 0, no reflection, no final XOR.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc = (crc << 8) ^ TABLE[(((crc >> 8) as u8) ^ b) as usize];
    }
    crc
}

const TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

/// The part of `key` that is hashed: its hash tag when it has a non-empty one.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS as u16 - 1)
}

/// A short hash tag (without its braces) whose keys hash to `slot`: `ferry:<n>` with the
/// smallest `n` that lands there. Gives a helper key in any key's slot, also for keys that
/// no suffix or prefix of their own can keep there (`a}b`, the empty key).
pub fn slot_tag(slot: u16) -> &'static [u8] {
    static TAGS: std::sync::OnceLock<Vec<Box<[u8]>>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        // Every slot is hit after about 160 000 candidates (16384 × ln 16384); the search
        // stops when the last one is.
        let mut tags: Vec<Option<Box<[u8]>>> = vec![None; SLOTS];
        let mut left = SLOTS;
        let mut n: u64 = 0;
        while left > 0 {
            let tag = format!("ferry:{n}").into_bytes();
            let s = key_slot(&tag) as usize;
            if tags[s].is_none() {
                tags[s] = Some(tag.into_boxed_slice());
                left -= 1;
            }
            n += 1;
        }
        tags.into_iter().flatten().collect()
    });
    &tags[slot as usize & (SLOTS - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_spec_vector() {
        // "The CRC16 ... output for '123456789': 31C3" (cluster spec, appendix A).
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn hash_tags_follow_key_hash_slot() {
        // The spec's examples.
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"{user1000}.followers"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{}"), b"{}");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"a}b{c"), b"a}b{c");
        assert_eq!(hash_tag(b"a}b{c}"), b"c");
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }

    #[test]
    fn every_slot_has_a_tag_of_its_own() {
        for slot in 0..SLOTS as u16 {
            let tag = slot_tag(slot);
            assert_eq!(key_slot(tag), slot);
            assert!(tag.starts_with(b"ferry:") && !tag.contains(&b'}'));
            let mut key = b"{".to_vec();
            key.extend_from_slice(tag);
            key.extend_from_slice(b"}a}b");
            assert_eq!(key_slot(&key), slot);
        }
    }

    #[test]
    fn slots_agree_with_a_real_server() {
        // CLUSTER KEYSLOT answers of redis-7.2 (and valkey-9.1), recorded.
        for (key, slot) in [
            (&b"foo"[..], 12182u16),
            (b"bar", 5061),
            (b"hello", 866),
            (b"", 0),
            (b"{user1000}.following", 3443),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
        ] {
            assert_eq!(key_slot(key), slot, "{:?}", String::from_utf8_lossy(key));
        }
    }
}
