//! Module type ids (reference §3.1).
//!
//! A MODULE_2 value or MODULE_AUX record starts with a 64-bit id that packs the
//! module type's 9-character name and its encoding version:
//!
//! ```text
//! bits 63..10 : 9 characters × 6 bits, name[0] in the highest 6 bits
//! bits  9..0  : encver (0..1023)
//! charset     : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
//! ```
//!
//! The body that follows is a sequence of `(opcode: len, operand)` pairs ending with
//! opcode 0, so it can be skipped without the module.

use super::event::ModuleId;

const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub const RDB_MODULE_OPCODE_EOF: u64 = 0;
pub const RDB_MODULE_OPCODE_SINT: u64 = 1;
pub const RDB_MODULE_OPCODE_UINT: u64 = 2;
pub const RDB_MODULE_OPCODE_FLOAT: u64 = 3;
pub const RDB_MODULE_OPCODE_DOUBLE: u64 = 4;
pub const RDB_MODULE_OPCODE_STRING: u64 = 5;

/// Splits a module type id into name and encoding version.
pub fn decode_id(id: u64) -> ModuleId {
    let mut name = [0u8; 9];
    let mut v = id >> 10;
    for slot in name.iter_mut().rev() {
        *slot = CHARSET[(v & 63) as usize];
        v >>= 6;
    }
    ModuleId {
        id,
        name,
        encver: (id & 1023) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(name: &[u8; 9], encver: u64) -> u64 {
        let mut id = 0u64;
        for c in name {
            let idx = CHARSET.iter().position(|x| x == c).unwrap() as u64;
            id = (id << 6) | idx;
        }
        (id << 10) | encver
    }

    #[test]
    fn decodes_known_module_names() {
        for (name, ver) in [(b"ReJSON-RL", 3u64), (b"TSDB-TYPE", 1), (b"MBbloom--", 4)] {
            let m = decode_id(encode(name, ver));
            assert_eq!(&m.name, name);
            assert_eq!(m.encver as u64, ver);
        }
    }
}
