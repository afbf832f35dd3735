//! DUMP / RESTORE payloads (reference §4).
//!
//! ```text
//! <type: 1 byte> <value exactly as in an RDB file> <rdb_version: u16 LE> <crc64: u64 LE>
//! ```
//! The CRC covers the type byte, the value and the two version bytes. A value's bytes do
//! not depend on the footer's version, so a value from a newer server can be restored on
//! an older one by stamping the version that server accepts — as long as that server knows
//! the value's type byte. Which it does is decided here.

use super::crc::crc64;
use super::decoder::*;
use super::Flavor;

/// Appends the footer to `raw` (type byte + value bytes, as `KeyEnd::raw` gives them).
pub fn payload(raw: &[u8], version: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(raw.len() + 10);
    p.extend_from_slice(raw);
    p.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// What a target server accepts in RESTORE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreTarget {
    pub flavor: Flavor,
    /// The newest RDB version it loads (its own).
    pub rdb_version: u16,
    /// Redis ≤ 3.2.0 accepts only exactly its own version.
    pub exact: bool,
}

impl RestoreTarget {
    /// From the server's identity: `valkey` tells the family, `version` is its release
    /// (`valkey_version` for Valkey, `redis_version` for Redis).
    pub fn for_server(valkey: bool, version: (u32, u32, u32)) -> RestoreTarget {
        let (major, minor, patch) = version;
        if valkey {
            let v = if major >= 9 {
                VALKEY_VERSION as u16
            } else {
                11
            };
            return RestoreTarget {
                flavor: Flavor::Valkey,
                rdb_version: v,
                exact: false,
            };
        }
        let (v, exact) = match (major, minor) {
            (0..=2, _) | (3, 0) => (6, true),
            (3, 2) if patch == 0 => (7, true),
            (3, _) => (7, false),
            (4, _) => (8, false),
            (5, _) | (6, _) => (9, false),
            (7, 0) => (10, false),
            // 7.1.24x are the 7.2 release candidates.
            (7, 1 | 2) => (11, false),
            (7, _) | (8, 0..=4) => (12, false),
            (8, 5..=7) => (13, false),
            _ => (14, false),
        };
        RestoreTarget {
            flavor: Flavor::Redis,
            rdb_version: v,
            exact,
        }
    }

    /// The footer version to stamp on a value of type `type_byte` read from a
    /// `source`-flavoured RDB, or `None` when this target cannot load that type (then
    /// the value must go as commands).
    pub fn version_for(&self, source: Flavor, type_byte: u8) -> Option<u16> {
        let first = first_version(source, type_byte)?;
        let loads = match self.flavor {
            // Valkey numbers its own format 80 and reads every Redis type up to 21, plus
            // its own HASH_2 (22). Redis's 22–25 would be misread: never.
            Flavor::Valkey => {
                first <= 11
                    || (type_byte == RDB_TYPE_22
                        && source == Flavor::Valkey
                        && self.rdb_version >= 80)
            }
            // Redis loads what its version has. A Valkey 9 value of a type Redis shares
            // (≤ 21) has the same bytes: only the footer differs, and we write the footer.
            Flavor::Redis => (source == Flavor::Redis || first <= 11) && first <= self.rdb_version,
        };
        loads.then_some(self.rdb_version)
    }
}

/// The first RDB version that has this type byte (reference §2.4), per flavour.
pub fn first_version(flavor: Flavor, type_byte: u8) -> Option<u16> {
    Some(match type_byte {
        RDB_TYPE_STRING | RDB_TYPE_LIST | RDB_TYPE_SET | RDB_TYPE_ZSET | RDB_TYPE_HASH => 1,
        RDB_TYPE_HASH_ZIPMAP
        | RDB_TYPE_LIST_ZIPLIST
        | RDB_TYPE_SET_INTSET
        | RDB_TYPE_ZSET_ZIPLIST => 2,
        RDB_TYPE_HASH_ZIPLIST => 4,
        RDB_TYPE_LIST_QUICKLIST => 7,
        RDB_TYPE_ZSET_2 | RDB_TYPE_MODULE_2 => 8,
        RDB_TYPE_STREAM_LISTPACKS => 9,
        RDB_TYPE_HASH_LISTPACK
        | RDB_TYPE_ZSET_LISTPACK
        | RDB_TYPE_LIST_QUICKLIST_2
        | RDB_TYPE_STREAM_LISTPACKS_2 => 10,
        RDB_TYPE_SET_LISTPACK | RDB_TYPE_STREAM_LISTPACKS_3 => 11,
        RDB_TYPE_22 if flavor == Flavor::Valkey => 80,
        // 22 and 23 are Redis 7.4 release-candidate types; no GA server loads them.
        RDB_TYPE_HASH_METADATA | RDB_TYPE_HASH_LISTPACK_EX if flavor == Flavor::Redis => 12,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_matches_a_real_dump() {
        // DUMP of "hello" from Redis 7.0.15 (reference §4.1).
        let p = payload(b"\x00\x05hello", 10);
        assert_eq!(
            p,
            [
                0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0x0a, 0x00, 0x63, 0x72, 0xdf, 0x76, 0x65,
                0x34, 0x20, 0x0a
            ]
        );
    }

    #[test]
    fn chooses_what_each_target_loads() {
        let r62 = RestoreTarget::for_server(false, (6, 2, 14));
        assert_eq!(r62.version_for(Flavor::Redis, RDB_TYPE_STRING), Some(9));
        assert_eq!(
            r62.version_for(Flavor::Redis, RDB_TYPE_LIST_QUICKLIST_2),
            None
        );
        let v81 = RestoreTarget::for_server(true, (8, 1, 8));
        assert_eq!(
            v81.version_for(Flavor::Redis, RDB_TYPE_STREAM_LISTPACKS_3),
            Some(11)
        );
        assert_eq!(
            v81.version_for(Flavor::Redis, RDB_TYPE_HASH_LISTPACK_EX),
            None
        );
        let v91 = RestoreTarget::for_server(true, (9, 1, 2));
        assert_eq!(v91.version_for(Flavor::Valkey, RDB_TYPE_22), Some(80));
        assert_eq!(v91.version_for(Flavor::Redis, RDB_TYPE_22), None);
        assert_eq!(
            r62.version_for(Flavor::Valkey, RDB_TYPE_ZSET_ZIPLIST),
            Some(9)
        );
        let r74 = RestoreTarget::for_server(false, (7, 4, 1));
        assert_eq!(r74.version_for(Flavor::Valkey, RDB_TYPE_22), None);
        assert_eq!(
            r74.version_for(Flavor::Redis, RDB_TYPE_HASH_METADATA),
            Some(12)
        );
        // A 7.2 release candidate (7.1.240) loads RDB 11, not 12.
        assert_eq!(
            RestoreTarget::for_server(false, (7, 1, 240)).rdb_version,
            11
        );
        let r30 = RestoreTarget::for_server(false, (3, 0, 5));
        assert!(r30.exact);
        assert_eq!(
            r30.version_for(Flavor::Redis, RDB_TYPE_HASH_ZIPLIST),
            Some(6)
        );
        assert_eq!(
            r30.version_for(Flavor::Redis, RDB_TYPE_LIST_QUICKLIST),
            None
        );
    }
}
