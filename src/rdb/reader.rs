//! Drives a [`Decoder`] over any `Read` (a file, a pipe).
//!
//! The buffer holds the decoder's unconsumed bytes plus one read; it grows only when a
//! single unit (at most `max_element` bytes) does not fit, so memory stays bounded by the
//! decoder's settings whatever the file size.

use std::io::Read;

use super::{Decoder, DecoderConfig, Event, RdbError, Step};

/// Bytes read from the source at a time.
pub const READ_SIZE: usize = 256 * 1024;

/// Why a decode over a reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriveError<E> {
    #[error("{0}")]
    Rdb(RdbError),
    #[error("read error at byte {offset}: {source}")]
    Io { offset: u64, source: std::io::Error },
    /// The event handler asked to stop.
    #[error("{0}")]
    Handler(E),
}

/// Decodes the whole RDB read from `reader`, calling `on_event` for every event.
/// Returns the decoder (for its version, offset…) after the EOF event.
pub fn decode_reader<R: Read, E>(
    mut reader: R,
    cfg: DecoderConfig,
    mut on_event: impl FnMut(&Event<'_>) -> Result<(), E>,
) -> Result<Decoder, DriveError<E>> {
    let mut dec = Decoder::new(cfg);
    let mut buf = vec![0u8; READ_SIZE];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        let (used, step) = dec.step(&buf[start..end]).map_err(DriveError::Rdb)?;
        start += used;
        match step {
            Step::Event(ev) => on_event(&ev).map_err(DriveError::Handler)?,
            Step::Done => return Ok(dec),
            Step::NeedMore => {
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                if end == buf.len() {
                    // One unit is larger than the buffer: grow (the decoder has already
                    // checked the unit against max_element).
                    buf.resize(buf.len() * 2, 0);
                }
                let n = loop {
                    match reader.read(&mut buf[end..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(DriveError::Io {
                                offset: dec.offset() + (end - start) as u64,
                                source,
                            })
                        }
                    }
                };
                if n == 0 {
                    dec.finish().map_err(DriveError::Rdb)?;
                    return Ok(dec);
                }
                end += n;
            }
        }
    }
}
