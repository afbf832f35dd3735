//! The one error type of the RESP layer.

/// What kind of failure, so callers can map it to a policy (drop the link, report a bug
/// in the peer, raise a limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes are not RESP (bad type byte, bad integer, missing CRLF…).
    Malformed,
    /// A length, a line or the nesting exceeds a configured [`Limits`](super::Limits) value.
    Limit,
    /// Valid RESP3 that we do not decode: streamed strings and aggregates (`$?`, `*?`).
    Unsupported,
    /// Well-formed RESP of the wrong shape for the caller, e.g. a reply where the
    /// [`CommandAssembler`](super::CommandAssembler) wanted a command.
    Unexpected,
}

/// A RESP decoding error and the absolute byte offset where it was found.
///
/// The offset counts from the first byte the [`Decoder`](super::Decoder) was fed, or from
/// the start of the slice given to [`parse_frame`](super::parse_frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {message}")]
pub struct RespError {
    pub kind: ErrorKind,
    pub offset: u64,
    pub message: String,
}
