//! Streaming RDB decoder.

pub mod elem;
pub mod error;

pub use elem::Elem;
pub use error::{EncodingError, ErrorKind, RdbError};
