//! Building RESP commands straight into the buffer that becomes a [`Cmd`].
//!
//! Values arrive element by element, and a variadic command (`RPUSH key e1 e2 …`) needs
//! its argument count in its header before its first argument. [`Batch`] gathers the
//! arguments of one such command; [`CmdBuf`] gathers whole commands until they are worth
//! a `Cmd` of their own. Elements are copied once, from the decoder's buffer into these.

use bytes::Bytes;

use crate::rdb::Elem;
use crate::resp::{encode_array_header, encode_bulk_header};
use crate::target::{Cmd, CmdKind};

/// Appends one bulk string argument.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    encode_bulk_header(out, arg.len() as u64);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer as a bulk string of its decimal text, without allocating.
pub fn bulk_int(out: &mut Vec<u8>, n: i64) {
    crate::resp::encode_int_bulk(out, n);
}

/// Appends an element as a bulk string (integers as their decimal text).
pub fn bulk_elem(out: &mut Vec<u8>, e: Elem<'_>) {
    encode_bulk_header(out, e.text_len() as u64);
    e.write_to(out);
    out.extend_from_slice(b"\r\n");
}

/// Whole commands gathered for one `Cmd`.
#[derive(Debug, Default)]
pub struct CmdBuf {
    pub buf: Vec<u8>,
    /// Whole commands in `buf`.
    pub n: u32,
}

impl CmdBuf {
    /// Appends a whole command.
    pub fn command(&mut self, args: &[&[u8]]) {
        crate::resp::encode_command(&mut self.buf, args);
        self.n += 1;
    }

    /// Starts a command of `argc` arguments; the caller appends exactly that many with
    /// [`bulk`] and friends on `buf`, then calls [`end`](Self::end).
    pub fn begin(&mut self, argc: usize) {
        encode_array_header(&mut self.buf, argc as u64);
    }

    pub fn end(&mut self) {
        self.n += 1;
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The gathered commands as a `Cmd`, leaving this empty.
    pub fn take(&mut self, db: u32, kind: CmdKind) -> Option<Cmd> {
        if self.n == 0 {
            return None;
        }
        let n = std::mem::take(&mut self.n);
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        Some(Cmd {
            db: Some(db),
            bytes,
            n,
            tag: 0,
            kind,
        })
    }
}

/// The arguments of one variadic command being filled (`RPUSH`, `SADD`, `ZADD`, `HSET`).
#[derive(Debug, Default)]
pub struct Batch {
    pub verb: &'static [u8],
    pub args: Vec<u8>,
    /// Arguments in `args`.
    pub argc: usize,
    /// Elements in `args` (a zset member and its score, or a hash field and its value, are
    /// one element).
    pub elems: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Writes `verb name args…` into `cmds` and empties the batch.
    pub fn close_into(&mut self, cmds: &mut CmdBuf, name: &[u8]) {
        if self.argc == 0 {
            return;
        }
        cmds.begin(2 + self.argc);
        bulk(&mut cmds.buf, self.verb);
        bulk(&mut cmds.buf, name);
        cmds.buf.extend_from_slice(&self.args);
        cmds.end();
        self.args.clear();
        self.argc = 0;
        self.elems = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::cmd::{command_args, split_commands};

    #[test]
    fn integers_are_bulk_decimals() {
        for n in [0i64, 7, -7, 1_700_000_000_000, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            bulk_int(&mut out, n);
            let text = n.to_string();
            assert_eq!(out, format!("${}\r\n{text}\r\n", text.len()).as_bytes());
        }
    }

    #[test]
    fn batches_become_whole_commands() {
        let mut cmds = CmdBuf::default();
        cmds.command(&[b"DEL", b"k"]);
        let mut b = Batch {
            verb: b"RPUSH",
            ..Batch::default()
        };
        for e in [Elem::Int(-12), Elem::Bytes(b"x\r\n")] {
            bulk_elem(&mut b.args, e);
            b.argc += 1;
        }
        b.close_into(&mut cmds, b"k");
        assert!(b.is_empty());
        let cmd = cmds
            .take(3, CmdKind::Data { key: None })
            .expect("two commands");
        assert_eq!((cmd.n, cmd.db), (2, Some(3)));
        let r = split_commands(&cmd.bytes, 2).expect("well formed");
        assert_eq!(
            command_args(&cmd.bytes[r[1].clone()]),
            [&b"RPUSH"[..], b"k", b"-12", b"x\r\n"]
        );
        assert!(cmds.take(3, CmdKind::Script).is_none());
    }
}
