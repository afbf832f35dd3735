//! RESP2 and RESP3, the protocol of Redis and Valkey: decoding and encoding.
//!
//! Both decoding APIs are pure: they take the caller's unconsumed bytes, say what they
//! decoded and how many bytes that took, and know nothing of sockets.
//!
//! * [`parse_frame`] returns one whole, owned [`Frame`] once all its bytes are buffered.
//!   For replies: the handshake, the target writer, the verifier.
//! * [`Decoder`] is the streaming decoder for the replication link. It returns one
//!   [`Event`] per call and keeps only small state (a stack of element counts). It exists for two reasons.
//!   A master propagates commands verbatim, so one `SET` can carry a 512 MiB argument (or
//!   1 GiB with a raised `proto-max-bulk-len`): bulks longer than
//!   [`DecoderConfig::inline_bulk_max`] arrive as `BulkStart`, `BulkPart`s and `BulkEnd`,
//!   and the link never holds a value whole. And the offset a replica acknowledges
//!   (`REPLCONF ACK`) counts every byte of the stream, so after each top-level frame the
//!   decoder reports [`Event::FrameEnd`] with that frame's exact length, the same however
//!   the reads happened to split the input.
//!
//! `parse_frame` is built on the `Decoder`, so both accept exactly the same input and
//! enforce the same [`Limits`]. [`CommandAssembler`] turns the events of an ordinary
//! command into an owned argv.
//!
//! Encoders: [`encode_command`], [`encode_bulk_header`] (to stream a huge argument:
//! header, data in pieces, `\r\n`) and [`Frame::encode`].
//!
//! Errors ([`RespError`]) name the absolute byte offset, what was expected and what was
//! found. After one, the position in the stream is lost: drop the connection. The decoder
//! does not skip the bare `\n` keepalives a master may send before the RDB payload; the
//! handshake must consume those itself.

mod command;
mod decoder;
mod encode;
mod error;
mod frame;
#[cfg(test)]
mod testing;

pub use command::CommandAssembler;
pub use decoder::{AggregateKind, Decoder, DecoderConfig, Event, Limits};
pub use encode::{encode_array_header, encode_bulk_header, encode_command, encode_int_bulk};
pub use error::{ErrorKind, RespError};
pub(crate) use frame::scalar_frame;
pub use frame::{parse_frame, Frame};
