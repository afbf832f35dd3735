//! Owned argv from the events of a command.

use super::decoder::{AggregateKind, Event};
use super::error::{ErrorKind, RespError};

/// Collects the [`Event`]s of a command, a top-level array of bulk strings (the only shape
/// a master sends on the replication stream), into an owned argv.
///
/// Only for commands whose arguments all arrive inline: a streamed argument
/// ([`Event::BulkStart`]) is an error, because an owned argv is exactly what a huge
/// argument must not become. A caller that must accept those handles the events itself.
#[derive(Debug, Default)]
pub struct CommandAssembler {
    argv: Vec<Vec<u8>>,
    /// Arguments still to come, once the array header has been seen.
    left: Option<u64>,
    /// An error was returned for the current frame: ignore the rest of it.
    failed: bool,
    /// Where the current frame starts, counted from the first event fed.
    frame_start: u64,
}

impl CommandAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next event (every event of the stream, including [`Event::FrameEnd`]).
    /// Returns the argv at the FrameEnd of a command.
    ///
    /// A frame that is not a command is an [`ErrorKind::Unexpected`] error at the offset
    /// where it starts (counted from the first event fed); the rest of that frame is then
    /// ignored and assembly resumes with the next one.
    pub fn push(&mut self, event: Event<'_>) -> Result<Option<Vec<Vec<u8>>>, RespError> {
        match (event, self.left) {
            (Event::FrameEnd { len }, _) => {
                self.frame_start += len;
                self.left = None;
                let argv = std::mem::take(&mut self.argv);
                Ok((!std::mem::take(&mut self.failed)).then_some(argv))
            }
            _ if self.failed => Ok(None),
            (
                Event::Aggregate {
                    kind: AggregateKind::Array,
                    len,
                },
                None,
            ) => {
                self.left = Some(len);
                Ok(None)
            }
            (Event::Bulk(arg), Some(left)) if left > 0 => {
                self.argv.push(arg.to_vec());
                self.left = Some(left - 1);
                Ok(None)
            }
            (other, left) => {
                self.failed = true;
                self.argv.clear();
                let expected = match left {
                    None => "a command (an array of bulk strings)",
                    Some(_) => "a bulk string argument",
                };
                Err(RespError {
                    kind: ErrorKind::Unexpected,
                    offset: self.frame_start,
                    message: format!("expected {expected}, found {}", describe(&other)),
                })
            }
        }
    }
}

fn describe(event: &Event<'_>) -> &'static str {
    match event {
        Event::Simple(_) => "a simple string",
        Event::Error(_) => "an error reply",
        Event::Integer(_) => "an integer",
        Event::Null => "a null",
        Event::Bulk(_) => "a bulk string",
        Event::BulkStart { .. } | Event::BulkPart(_) | Event::BulkEnd => {
            "a bulk string longer than inline_bulk_max"
        }
        Event::Aggregate { kind, .. } => match kind {
            AggregateKind::Array => "an array",
            AggregateKind::Map => "a map",
            AggregateKind::Set => "a set",
            AggregateKind::Attribute => "an attribute",
            AggregateKind::Push => "a push",
        },
        Event::Double(_) => "a double",
        Event::Boolean(_) => "a boolean",
        Event::BigNumber(_) => "a big number",
        Event::BulkError(_) => "a bulk error",
        Event::Verbatim { .. } => "a verbatim string",
        Event::FrameEnd { .. } => "the end of the frame",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{encode_command, Decoder, DecoderConfig};

    /// Decodes `input` one byte at a time through an assembler; collects argvs and errors.
    fn assemble(cfg: DecoderConfig, input: &[u8]) -> Vec<Result<Vec<Vec<u8>>, RespError>> {
        let mut decoder = Decoder::new(cfg);
        let mut assembler = CommandAssembler::new();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for &b in input {
            buf.push(b);
            while let Some((event, used)) = decoder.next(&buf).expect("valid RESP") {
                match assembler.push(event) {
                    Ok(Some(argv)) => out.push(Ok(argv)),
                    Ok(None) => {}
                    Err(e) => out.push(Err(e)),
                }
                buf.drain(..used);
            }
        }
        out
    }

    fn argv(args: &[&[u8]]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn assembles_the_commands_of_a_replication_stream() {
        let commands: [&[&[u8]]; 4] = [
            &[b"SELECT", b"0"],
            &[b"set", b"a\r\n", b"\0\x01\xff"],
            &[b"REPLCONF", b"GETACK", b"*"],
            &[b"PING"],
        ];
        let mut input = Vec::new();
        for c in commands {
            encode_command(&mut input, c);
        }
        let expected: Vec<_> = commands.iter().map(|c| Ok(argv(c))).collect();
        assert_eq!(assemble(DecoderConfig::default(), &input), expected);
    }

    #[test]
    fn rejects_frames_that_are_not_commands_and_resumes() {
        let input = b"+OK\r\n*2\r\n$1\r\na\r\n:1\r\n*1\r\n*0\r\n*1\r\n$1\r\nb\r\n";
        let out = assemble(DecoderConfig::default(), input);
        let errors: Vec<_> = out
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.kind, e.offset, e.message.as_str()))
            .collect();
        assert_eq!(
            errors,
            [
                (
                    ErrorKind::Unexpected,
                    0,
                    "expected a command (an array of bulk strings), found a simple string"
                ),
                (
                    ErrorKind::Unexpected,
                    5,
                    "expected a bulk string argument, found an integer"
                ),
                (
                    ErrorKind::Unexpected,
                    20,
                    "expected a bulk string argument, found an array"
                ),
            ]
        );
        assert_eq!(out.last(), Some(&Ok(argv(&[b"b"]))));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn refuses_a_streamed_argument() {
        let mut input = Vec::new();
        encode_command(&mut input, &["SET", "k", "0123456789"]);
        let cfg = DecoderConfig {
            inline_bulk_max: 4,
            ..DecoderConfig::default()
        };
        let out = assemble(cfg, &input);
        assert!(matches!(&out[..], [Err(e)] if e.message.ends_with("longer than inline_bulk_max")));
    }
}
