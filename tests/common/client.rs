//! A minimal blocking RESP2 client with its own reply parser.
//!
//! The tests judge ferry, so they talk to servers through code that shares nothing with it.
//! RESP3 reply types are folded into the RESP2 ones (a map becomes a flat array, a double or a
//! big number its text, a boolean 0/1) so that a connection switched with `HELLO 3` still works.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One reply. Error replies are values, not `Err`: many tests expect them.
#[derive(Clone, PartialEq)]
pub enum Reply {
    Simple(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }

    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Simple(b) | Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The text of a simple or bulk string (lossy UTF-8).
    pub fn as_text(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// An integer reply, or a string that holds an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => std::str::from_utf8(self.as_bytes()?).ok()?.parse().ok(),
        }
    }

    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Simple(b) | Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    pub fn into_array(self) -> Option<Vec<Reply>> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// A flat `[name, value, name, value, ...]` array (XINFO, FUNCTION LIST, HELLO, a RESP3
    /// map) as a map from name to value.
    pub fn as_field_map(&self) -> Option<BTreeMap<String, Reply>> {
        let items = self.as_array()?;
        if items.len() % 2 != 0 {
            return None;
        }
        items
            .chunks(2)
            .map(|kv| Some((kv[0].as_text()?, kv[1].clone())))
            .collect()
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(b) => write!(f, "+{}", escape(b)),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(None) | Reply::Array(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "\"{}\"", preview(b, 80)),
            Reply::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

/// Bytes as readable text: printable ASCII as is, `\r \n \t \0 \\ \"`, others as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// [`escape`]d, cut to `max` bytes with the full length noted.
pub fn preview(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        escape(bytes)
    } else {
        format!("{}... ({} bytes)", escape(&bytes[..max]), bytes.len())
    }
}

/// How long one reply may take before the test gives up instead of hanging.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects or panics with the address and the error.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Client {
            addr,
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one command and reads its reply. Panics on I/O or protocol errors (naming the
    /// command); error replies come back as [`Reply::Error`].
    pub fn cmd(&mut self, args: &[&[u8]]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{}: `{}` failed: {e}", self.addr, show_command(args)))
    }

    pub fn try_cmd(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut buf = Vec::new();
        encode_command(&mut buf, args);
        self.writer.write_all(&buf)?;
        read_reply(&mut self.reader)
    }

    /// [`Client::cmd`] with text arguments: `c.cmd_str(&["SET", "a", "1"])`.
    pub fn cmd_str(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&args)
    }

    /// [`Client::cmd_str`] that panics on an error reply, showing the command.
    pub fn ok(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.ok_bin(&args)
    }

    /// [`Client::cmd`] that panics on an error reply, showing the command.
    pub fn ok_bin(&mut self, args: &[&[u8]]) -> Reply {
        let reply = self.cmd(args);
        if let Reply::Error(e) = &reply {
            panic!(
                "{}: `{}` returned error: {e}",
                self.addr,
                show_command(args)
            );
        }
        reply
    }

    /// Sends all commands in one write, then reads one reply per command.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut buf = Vec::new();
        for cmd in cmds {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            encode_command(&mut buf, &args);
        }
        let addr = self.addr;
        let fail = |e: io::Error| -> ! {
            panic!("{addr}: pipeline of {} commands failed: {e}", cmds.len())
        };
        self.writer.write_all(&buf).unwrap_or_else(|e| fail(e));
        (0..cmds.len())
            .map(|_| read_reply(&mut self.reader).unwrap_or_else(|e| fail(e)))
            .collect()
    }

    /// `SET key value` for each pair, in one pipeline ([`Client::pipeline_ok`]).
    pub fn set_many(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        let cmds: Vec<Vec<Vec<u8>>> = pairs
            .into_iter()
            .map(|(k, v)| vec![b"SET".to_vec(), k.into_bytes(), v.into_bytes()])
            .collect();
        self.pipeline_ok(&cmds);
    }

    /// [`Client::pipeline`] that panics on the first error reply, showing its command.
    pub fn pipeline_ok(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let replies = self.pipeline(cmds);
        for (cmd, reply) in cmds.iter().zip(&replies) {
            if let Reply::Error(e) = reply {
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                panic!(
                    "{}: `{}` returned error: {e}",
                    self.addr,
                    show_command(&args)
                );
            }
        }
        replies
    }

    pub fn select(&mut self, db: u32) {
        self.ok(&["SELECT", &db.to_string()]);
    }

    /// `INFO [section]` as a map of its `name:value` lines.
    pub fn info(&mut self, section: &str) -> BTreeMap<String, String> {
        let reply = if section.is_empty() {
            self.ok(&["INFO"])
        } else {
            self.ok(&["INFO", section])
        };
        let text = reply.as_text().unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
            .collect()
    }
}

/// A command as it would be typed, arguments escaped and long ones cut.
pub fn show_command(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| preview(a, 60))
        .collect::<Vec<_>>()
        .join(" ")
}

fn encode_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        buf.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

fn protocol_error(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// One line without its `\r\n`.
fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol_error(format!(
            "reply line not ended by CRLF: {}",
            escape(&line)
        )));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(bytes: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol_error(format!("bad integer in reply: {}", escape(bytes))))
}

/// `len` bytes followed by CRLF.
fn read_blob(r: &mut impl BufRead, len: i64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| protocol_error(format!("bad length {len}")))?;
    let mut data = vec![0; len + 2];
    r.read_exact(&mut data)?;
    if !data.ends_with(b"\r\n") {
        return Err(protocol_error("bulk string not ended by CRLF".into()));
    }
    data.truncate(len);
    Ok(data)
}

fn read_items(r: &mut impl BufRead, n: i64) -> io::Result<Vec<Reply>> {
    (0..n).map(|_| read_reply(r)).collect()
}

/// Reads one reply (RESP2, plus RESP3 types folded into RESP2 ones).
pub fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| protocol_error("empty reply line".into()))?;
    Ok(match kind {
        b'+' => Reply::Simple(rest.to_vec()),
        b'-' => Reply::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Reply::Int(parse_int(rest)?),
        b'$' => match parse_int(rest)? {
            -1 => Reply::Bulk(None),
            n => Reply::Bulk(Some(read_blob(r, n)?)),
        },
        b'*' => match parse_int(rest)? {
            -1 => Reply::Array(None),
            n => Reply::Array(Some(read_items(r, n)?)),
        },
        // RESP3, folded: null, boolean, double, big number, verbatim string, blob error,
        // map (flattened), set, push; attributes are read and dropped.
        b'_' => Reply::Bulk(None),
        b'#' => Reply::Int(i64::from(rest == b"t")),
        b',' | b'(' => Reply::Bulk(Some(rest.to_vec())),
        b'=' => {
            let data = read_blob(r, parse_int(rest)?)?;
            Reply::Bulk(Some(data.get(4..).unwrap_or_default().to_vec()))
        }
        b'!' => Reply::Error(String::from_utf8_lossy(&read_blob(r, parse_int(rest)?)?).into()),
        b'%' => Reply::Array(Some(read_items(r, 2 * parse_int(rest)?)?)),
        b'~' | b'>' => Reply::Array(Some(read_items(r, parse_int(rest)?)?)),
        b'|' => {
            read_items(r, 2 * parse_int(rest)?)?;
            read_reply(r)?
        }
        _ => {
            return Err(protocol_error(format!(
                "unknown reply type: {}",
                escape(&line)
            )))
        }
    })
}
