//! A minimal RDB writer for the plain encodings (string, list, set, zset-2, hash).
//!
//! It produces files every server loads, and exists for tests and benchmarks: decoders
//! are checked against it split at every byte, and benches generate large RDBs with it
//! without a server.

use super::crc::Crc64;
use super::decoder::*;

#[derive(Debug)]
pub struct RdbWriter {
    buf: Vec<u8>,
}

impl RdbWriter {
    /// Starts a file with magic `REDIS` + `version` (4 digits).
    pub fn new(version: u32) -> Self {
        let mut w = RdbWriter { buf: Vec::new() };
        w.buf
            .extend_from_slice(format!("REDIS{version:04}").as_bytes());
        w
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn write_len(&mut self, n: u64) {
        if n < 1 << 6 {
            self.buf.push(n as u8);
        } else if n < 1 << 14 {
            self.buf.push(0x40 | (n >> 8) as u8);
            self.buf.push(n as u8);
        } else if n <= u32::MAX as u64 {
            self.buf.push(0x80);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            self.buf.push(0x81);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// A plain (never integer- or LZF-encoded) RDB string.
    pub fn write_str(&mut self, s: &[u8]) {
        self.write_len(s.len() as u64);
        self.buf.extend_from_slice(s);
    }

    /// An integer-encoded RDB string (0xC0..0xC2).
    pub fn write_int_str(&mut self, v: i32) {
        if let Ok(v) = i8::try_from(v) {
            self.buf.push(0xC0);
            self.buf.push(v as u8);
        } else if let Ok(v) = i16::try_from(v) {
            self.buf.push(0xC1);
            self.buf.extend_from_slice(&v.to_le_bytes());
        } else {
            self.buf.push(0xC2);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub fn aux(&mut self, k: &[u8], v: &[u8]) {
        self.buf.push(RDB_OPCODE_AUX);
        self.write_str(k);
        self.write_str(v);
    }

    pub fn select_db(&mut self, db: u64) {
        self.buf.push(RDB_OPCODE_SELECTDB);
        self.write_len(db);
    }

    pub fn resize_db(&mut self, size: u64, expires: u64) {
        self.buf.push(RDB_OPCODE_RESIZEDB);
        self.write_len(size);
        self.write_len(expires);
    }

    fn key(&mut self, t: u8, key: &[u8], expire_ms: Option<i64>) {
        if let Some(ms) = expire_ms {
            self.buf.push(RDB_OPCODE_EXPIRETIME_MS);
            self.buf.extend_from_slice(&ms.to_le_bytes());
        }
        self.buf.push(t);
        self.write_str(key);
    }

    pub fn string(&mut self, key: &[u8], value: &[u8], expire_ms: Option<i64>) {
        self.key(RDB_TYPE_STRING, key, expire_ms);
        self.write_str(value);
    }

    pub fn list<I: AsRef<[u8]>>(&mut self, key: &[u8], items: &[I]) {
        self.key(RDB_TYPE_LIST, key, None);
        self.write_len(items.len() as u64);
        for i in items {
            self.write_str(i.as_ref());
        }
    }

    pub fn set<I: AsRef<[u8]>>(&mut self, key: &[u8], members: &[I]) {
        self.key(RDB_TYPE_SET, key, None);
        self.write_len(members.len() as u64);
        for m in members {
            self.write_str(m.as_ref());
        }
    }

    pub fn zset<I: AsRef<[u8]>>(&mut self, key: &[u8], members: &[(I, f64)]) {
        self.key(RDB_TYPE_ZSET_2, key, None);
        self.write_len(members.len() as u64);
        for (m, s) in members {
            self.write_str(m.as_ref());
            self.buf.extend_from_slice(&s.to_le_bytes());
        }
    }

    pub fn hash<I: AsRef<[u8]>>(&mut self, key: &[u8], fields: &[(I, I)]) {
        self.key(RDB_TYPE_HASH, key, None);
        self.write_len(fields.len() as u64);
        for (f, v) in fields {
            self.write_str(f.as_ref());
            self.write_str(v.as_ref());
        }
    }

    /// Appends raw bytes (for hand-built records in tests).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Ends the file: EOF opcode and the CRC-64 trailer (RDB ≥ 5).
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(RDB_OPCODE_EOF);
        let v: u32 = std::str::from_utf8(&self.buf[5..9])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if v >= 5 {
            let mut crc = Crc64::new();
            crc.update(&self.buf);
            let c = crc.value();
            self.buf.extend_from_slice(&c.to_le_bytes());
        }
        self.buf
    }
}
