//! Streaming RDB decoder.

pub mod collect;
pub mod decoder;
pub mod dump;
pub mod elem;
pub mod error;
pub mod event;
pub mod module;
pub mod reader;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod writer;

// Encoding walkers (one file per encoding).
mod bounds;
pub mod crc;
pub mod intset;
pub mod listpack;
pub mod lzf;
pub mod ziplist;
pub mod zipmap;

pub use decoder::{Decoder, DecoderConfig, Step};
pub use elem::Elem;
pub use error::{EncodingError, ErrorKind, RdbError};
pub use event::*;
