//! [`Cmd`], the unit the writer is given, and the helpers that look inside one.
//!
//! A `Cmd` is one or more complete RESP commands in one buffer. Grouping several commands
//! (the `DEL`, the `RPUSH`es and the `PEXPIREAT` of one small key) into one `Cmd` keeps the
//! writer's per-command bookkeeping off the hot path; the writer only looks at the
//! individual commands of a `Cmd` when one of them fails ([`split_commands`]).

use bytes::Bytes;

/// One or more complete RESP commands, sent as they are.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The db the commands must run in; the writer sends `SELECT` first when the
    /// connection is in another one. `None`: whatever db the connection is in.
    pub db: Option<u32>,
    /// One or more complete RESP commands (arrays of bulk strings).
    pub bytes: Bytes,
    /// How many commands `bytes` holds, i.e. how many replies to expect (at least 1).
    pub n: u32,
    /// The caller's acknowledgement token (e.g. the source offset after this command);
    /// 0 = none. See [`Writer::acked_tag`](super::Writer::acked_tag).
    pub tag: u64,
    pub kind: CmdKind,
}

/// What a [`Cmd`] is for: error context, and the few replies the writer must interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdKind {
    /// Ordinary data commands. `key`: the one key they all touch, when known; the writer
    /// names it in records and uses it to tell whether a retry reorders writes to it.
    /// `None` (a verbatim command from a replication stream, say) is treated as
    /// touching every key.
    Data { key: Option<Bytes> },
    /// `RESTORE key …`. A `BUSYKEY` reply is judged by
    /// [`ErrorPolicy::busykey`](super::ErrorPolicy).
    Restore { key: Bytes },
    /// `RENAMENX staging key` then `DEL staging`: the end of a value written under a
    /// staging name because the target key must not be overwritten. A `:0` reply to the
    /// `RENAMENX` means the key existed, and is judged like `BUSYKEY`.
    Guard { key: Bytes },
    /// `MULTI … EXEC` as one unit. On a retry-class error the whole unit is sent again
    /// (a transaction that saw an error while queueing is discarded whole by `EXEC`).
    Transaction { key: Option<Bytes> },
    /// `FUNCTION LOAD` / `SCRIPT LOAD`.
    Script,
    /// Several snapshot keys written one command each (`RESTORE`, `SET`): command `i`
    /// touches only its own key, its first argument, and no other command of the batch
    /// touches that key. Grouping them keeps the writer's per-`Cmd` work off the path of
    /// a million small keys; a failed command is judged and retried on its own key.
    Batch,
}

impl CmdKind {
    /// The key the commands touch, when one is known.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            CmdKind::Data { key } | CmdKind::Transaction { key } => key.as_ref(),
            CmdKind::Restore { key } | CmdKind::Guard { key } => Some(key),
            CmdKind::Script | CmdKind::Batch => None,
        }
    }
}

impl Cmd {
    /// A `Cmd` of one command built from its arguments.
    pub fn from_args<A: AsRef<[u8]>>(db: Option<u32>, args: &[A], kind: CmdKind) -> Cmd {
        let mut buf = Vec::new();
        crate::resp::encode_command(&mut buf, args);
        Cmd {
            db,
            bytes: Bytes::from(buf),
            n: 1,
            tag: 0,
            kind,
        }
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: u64) -> Cmd {
        self.tag = tag;
        self
    }
}

/// The byte ranges of the first `n` RESP commands in `bytes`, or `None` when `bytes` does
/// not start with `n` well-formed arrays of bulk strings. Used on the error path only.
pub fn split_commands(bytes: &[u8], n: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::with_capacity(n);
    for_each_command(bytes, n, |r, _| out.push(r))?;
    Some(out)
}

/// One pass over `n` whole RESP commands: `f(range of the command, its second argument
/// (the key of a data command) if it has one)`. `None` (after calling `f` for the commands
/// before it) when one is malformed or cut.
pub fn for_each_command(
    bytes: &[u8],
    n: usize,
    mut f: impl FnMut(std::ops::Range<usize>, Option<&[u8]>),
) -> Option<()> {
    let mut pos = 0;
    for _ in 0..n {
        let start = pos;
        let argc = header(bytes, &mut pos, b'*')?;
        let mut key = None;
        for i in 0..argc {
            let len = header(bytes, &mut pos, b'$')?;
            let end = pos.checked_add(len)?.checked_add(2)?;
            if bytes.get(end - 2..end)? != b"\r\n" {
                return None;
            }
            if i == 1 {
                key = Some(pos..pos + len);
            }
            pos = end;
        }
        f(start..pos, key.map(|k| &bytes[k]));
    }
    Some(())
}

/// The arguments of one RESP command (as [`split_commands`] delimits it), borrowed.
pub fn command_args(cmd: &[u8]) -> Vec<&[u8]> {
    let mut pos = 0;
    let Some(argc) = header(cmd, &mut pos, b'*') else {
        return Vec::new();
    };
    let mut args = Vec::with_capacity(argc.min(16));
    for _ in 0..argc {
        let Some(len) = header(cmd, &mut pos, b'$') else {
            break;
        };
        let Some(arg) = cmd.get(pos..pos + len) else {
            break;
        };
        args.push(arg);
        pos += len + 2;
    }
    args
}

/// Reads `<ty><decimal>\r\n` at `*pos`.
fn header(b: &[u8], pos: &mut usize, ty: u8) -> Option<usize> {
    if *b.get(*pos)? != ty {
        return None;
    }
    let rest = b.get(*pos + 1..)?;
    let end = rest.iter().position(|&c| c == b'\r')?;
    if rest.get(end + 1) != Some(&b'\n') || end == 0 || end > 19 {
        return None;
    }
    let mut v: usize = 0;
    for &c in &rest[..end] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(usize::from(c - b'0'))?;
    }
    *pos += 1 + end + 2;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode_command;

    #[test]
    fn one_pass_finds_each_command_and_its_key() {
        let mut b = Vec::new();
        encode_command(&mut b, &[b"SET".as_slice(), b"k1", b"v"]);
        encode_command(&mut b, &[b"PING".as_slice()]);
        encode_command(&mut b, &[b"SET".as_slice(), b"", b"v"]);
        let mut seen = Vec::new();
        let r = for_each_command(&b, 3, |r, k| seen.push((r, k.map(<[u8]>::to_vec))));
        assert_eq!(r, Some(()));
        assert_eq!(seen[0].1.as_deref(), Some(&b"k1"[..]));
        assert_eq!(seen[1].1, None, "PING has no key");
        assert_eq!(
            seen[2].1.as_deref(),
            Some(&b""[..]),
            "an empty key is a key"
        );
        assert_eq!(seen[2].0.end, b.len());
        assert_eq!(
            Some(seen.iter().map(|s| s.0.clone()).collect()),
            split_commands(&b, 3)
        );
        // Cut, too many asked for, a wrong length: refused, never a panic.
        for cut in 0..b.len() {
            assert_eq!(
                for_each_command(&b[..cut], 3, |_, _| {}),
                None,
                "cut at {cut}"
            );
        }
        assert_eq!(for_each_command(&b, 4, |_, _| {}), None);
        assert_eq!(for_each_command(b"*1\r\n$9\r\nab\r\n", 1, |_, _| {}), None);
    }

    #[test]
    fn splits_pipelined_commands_and_reads_their_arguments() {
        let mut b = Vec::new();
        encode_command(&mut b, &["SET", "k", "a\r\nb"]);
        let first = b.len();
        encode_command(&mut b, &["DEL", "k"]);
        encode_command::<&[u8]>(&mut b, &[b"RPUSH", b"", b"x"]);
        let r = split_commands(&b, 3).expect("well formed");
        assert_eq!(r[0], 0..first);
        assert_eq!(r[2].end, b.len());
        assert_eq!(
            command_args(&b[r[0].clone()]),
            [&b"SET"[..], b"k", b"a\r\nb"]
        );
        assert_eq!(command_args(&b[r[2].clone()]), [&b"RPUSH"[..], b"", b"x"]);
        assert!(split_commands(&b, 4).is_none());
        assert!(split_commands(b"*1\r\n$3\r\nab", 1).is_none());
        assert!(split_commands(b"PING\r\n", 1).is_none());
    }
}
