//! Streaming RDB decoder.

pub mod crc;
pub mod elem;
pub mod error;
pub mod intset;
pub mod listpack;
pub mod lzf;
pub mod ziplist;
pub mod zipmap;

pub use elem::Elem;
pub use error::{EncodingError, ErrorKind, RdbError};
