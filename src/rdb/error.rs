//! Errors of the RDB decoder.
//!
//! Two layers: the pure encoding walkers (ziplist, listpack, …) report an
//! [`EncodingError`] relative to the blob they were given; the decoder wraps it into a
//! [`RdbError`] that names the absolute byte offset in the RDB stream and the key being
//! read, which is what an operator needs to find the damage.

use std::fmt;

/// A problem inside one encoded blob (ziplist, listpack, intset, zipmap, LZF data).
/// `offset` is relative to the start of the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingError {
    pub encoding: &'static str,
    pub offset: usize,
    pub message: String,
}

impl EncodingError {
    pub fn new(encoding: &'static str, offset: usize, message: impl Into<String>) -> Self {
        EncodingError {
            encoding,
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for EncodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {} of the blob: {}",
            self.encoding, self.offset, self.message
        )
    }
}

impl std::error::Error for EncodingError {}

/// What kind of failure, so callers can map it to a policy or an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes contradict the format (bad length, bad encoding byte, bad checksum…).
    Corrupt,
    /// The file is well formed as far as we can tell, but uses something we cannot
    /// decode (a future RDB version, an unknown type byte, a pre-GA module value).
    Unsupported,
    /// A configured limit was reached (an element or blob larger than allowed).
    Limit,
    /// The input ended before the RDB did.
    Truncated,
}

/// An error of the RDB decoder, with the place it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbError {
    pub kind: ErrorKind,
    /// Absolute offset in the RDB stream (0 = first byte of the magic).
    pub offset: u64,
    /// The key being read when the error happened, if any.
    pub key: Option<Vec<u8>>,
    pub message: String,
}

impl RdbError {
    pub fn new(kind: ErrorKind, offset: u64, message: impl Into<String>) -> Self {
        RdbError {
            kind,
            offset,
            key: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for RdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}", self.offset)?;
        if let Some(k) = &self.key {
            write!(f, " in key `{}`", crate::util::escape_bytes(k))?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RdbError {}
