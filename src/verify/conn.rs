//! A small pipelined RESP2 connection for the verifier: send a batch of commands in one
//! write, read one reply per command. Reads and writes run together, so a batch larger
//! than the socket buffers cannot deadlock against a server that is still answering.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::VerifyError;
use crate::endpoint::Endpoint;
use crate::resp::{encode_command, AggregateKind, Decoder, DecoderConfig, Event, Frame, Limits};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one batch may wait for its replies before the server is taken as gone.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// Read size: large, because replies to a batch arrive in bulk.
const READ_CHUNK: usize = 256 << 10;

/// Commands encoded back to back, each with the hash slot of its key (for cluster routing).
#[derive(Default, Clone)]
pub struct Batch {
    pub buf: Vec<u8>,
    /// Byte offset just past each command.
    pub ends: Vec<usize>,
    /// The slot of each command's key; `None` for keyless commands.
    pub slots: Vec<Option<u16>>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Appends a command whose key is `args[key_index]`.
    pub fn push_keyed(&mut self, args: &[&[u8]], key_index: usize) {
        encode_command(&mut self.buf, args);
        self.ends.push(self.buf.len());
        self.slots
            .push(args.get(key_index).map(|k| super::side::key_slot(k)));
    }

    /// Appends a command with the key in position 1 (`TYPE key`, `LRANGE key 0 9`).
    pub fn push(&mut self, args: &[&[u8]]) {
        self.push_keyed(args, 1);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The encoded bytes of command `i`.
    pub fn command(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

/// One connection to one server.
pub struct Conn {
    /// `host:port`, for messages.
    pub addr: String,
    stream: crate::net::NetStream,
    rbuf: Vec<u8>,
    /// Start of the unparsed bytes in `rbuf`.
    rpos: usize,
    /// Decodes replies as their bytes arrive.
    decoder: Decoder,
    /// Bytes read so far (replies), for the throughput figures.
    pub bytes_read: u64,
}

impl Conn {
    /// Connects to `addr` with the credentials of `ep` and selects `db`.
    pub async fn connect(ep: &Endpoint, addr: &str) -> Result<Conn, VerifyError> {
        // `addr` may be another node than the URL's (a cluster): same credentials and TLS.
        let mut node = ep.clone();
        if let Some((host, port)) = addr.rsplit_once(':') {
            node.host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            node.port = port.parse().unwrap_or(ep.port);
        }
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, crate::net::connect(&node)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(VerifyError::io(addr, "connect", e)),
            Err(_) => {
                return Err(VerifyError::Server {
                    addr: addr.to_string(),
                    message: format!("no connection within {CONNECT_TIMEOUT:?}"),
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            addr: addr.to_string(),
            stream,
            rbuf: Vec::with_capacity(READ_CHUNK),
            rpos: 0,
            decoder: whole_values(),
            bytes_read: 0,
        };
        if let Some(pw) = &ep.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &ep.user {
                args.push(u.as_bytes());
            }
            args.push(pw.as_bytes());
            let reply = conn.cmd(&args).await?;
            if let Some(e) = reply.error_text() {
                // The server's message, never the password.
                return Err(VerifyError::Server {
                    addr: addr.to_string(),
                    message: format!("AUTH refused: {}", String::from_utf8_lossy(e)),
                });
            }
        }
        Ok(conn)
    }

    /// One command, one reply (error replies are returned, not raised).
    pub async fn cmd(&mut self, args: &[&[u8]]) -> Result<Frame, VerifyError> {
        let mut b = Batch::new();
        b.push(args);
        let mut r = self.run(&b.buf, 1).await?;
        Ok(r.pop().unwrap_or(Frame::Null))
    }

    /// Sends `n` encoded commands and returns their `n` replies in order.
    pub async fn run(&mut self, encoded: &[u8], n: usize) -> Result<Vec<Frame>, VerifyError> {
        let mut builder = Builder::default();
        let mut out = Vec::with_capacity(n);
        self.exchange(encoded, n, |e| out.extend(builder.event(e)))
            .await?;
        Ok(out)
    }

    /// Sends `n` encoded commands and hands every event of their replies to
    /// `visit(reply index, event)` without building frames: the big-value paths digest
    /// millions of elements this way without an allocation each.
    pub async fn visit(
        &mut self,
        encoded: &[u8],
        n: usize,
        visit: &mut (dyn FnMut(usize, Event<'_>) + Send),
    ) -> Result<(), VerifyError> {
        let mut i = 0;
        self.exchange(encoded, n, |e| match e {
            Event::FrameEnd { .. } => i += 1,
            e => visit(i, e),
        })
        .await
    }

    /// Writes `encoded` while reading the events of `n` replies into `on_event`.
    async fn exchange<F>(
        &mut self,
        encoded: &[u8],
        n: usize,
        mut on_event: F,
    ) -> Result<(), VerifyError>
    where
        F: FnMut(Event<'_>) + Send,
    {
        let Conn {
            addr,
            stream,
            rbuf,
            rpos,
            decoder,
            bytes_read,
        } = self;
        let fut = async {
            let (mut rd, mut wr) = tokio::io::split(&mut *stream);
            let write = async {
                wr.write_all(encoded).await?;
                wr.flush().await
            };
            let read = async {
                let mut ended = 0;
                while ended < n {
                    // Every event is consumed as it is decoded, so each reply byte is walked
                    // once, however the reads split it.
                    match decoder.next(&rbuf[*rpos..]) {
                        Ok(Some((event, used))) => {
                            *rpos += used;
                            if let Event::FrameEnd { .. } = event {
                                ended += 1;
                            }
                            on_event(event);
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                e.to_string(),
                            ))
                        }
                    }
                    if *rpos > 0 {
                        rbuf.drain(..*rpos);
                        *rpos = 0;
                    }
                    rbuf.reserve(READ_CHUNK);
                    let got = rd.read_buf(rbuf).await?;
                    if got == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "connection closed by the server",
                        ));
                    }
                    *bytes_read += got as u64;
                }
                if *rpos == rbuf.len() {
                    rbuf.clear();
                    *rpos = 0;
                }
                Ok(())
            };
            let (w, r) = tokio::join!(write, read);
            w?;
            r
        };
        match tokio::time::timeout(REPLY_TIMEOUT, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(VerifyError::io(addr, "read/write", e)),
            Err(_) => Err(VerifyError::Server {
                addr: addr.clone(),
                message: format!("no reply within {REPLY_TIMEOUT:?}"),
            }),
        }
    }
}

/// A decoder that reports every bulk whole (replies are built whole anyway).
fn whole_values() -> Decoder {
    let limits = Limits::default();
    Decoder::new(DecoderConfig {
        inline_bulk_max: limits.max_bulk_len,
        limits,
    })
}

/// Builds owned frames from decoder events, one event at a time. (`parse_frame` wants the
/// whole frame buffered and walks it twice; replies here are built while they arrive.)
/// Attributes nested in an aggregate are dropped, as `parse_frame` drops them.
#[derive(Default)]
struct Builder {
    /// Open aggregates, outermost first: kind, elements expected, elements so far.
    open: Vec<(AggregateKind, usize, Vec<Frame>)>,
    /// The finished top-level frame, handed out at its `FrameEnd`.
    done: Option<Frame>,
}

impl Builder {
    /// Feeds one event; returns a frame at the end of each top-level frame.
    fn event(&mut self, event: Event<'_>) -> Option<Frame> {
        let mut value = match event {
            Event::FrameEnd { .. } => return self.done.take(),
            Event::Aggregate { kind, len } if len > 0 => {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                // Grows as elements arrive: a hostile length costs nothing up front.
                self.open
                    .push((kind, len, Vec::with_capacity(len.min(1024))));
                return None;
            }
            Event::Aggregate { kind, .. } => finish(kind, Vec::new()),
            // `whole_values` never streams a bulk.
            scalar => crate::resp::scalar_frame(scalar)?,
        };
        // Give the finished value to its parent, closing each aggregate it fills.
        loop {
            let Some((kind, len, mut items)) = self.open.pop() else {
                self.done = Some(value);
                return None;
            };
            if !matches!(value, Frame::Attribute(_)) {
                items.push(value);
            }
            if items.len() < len {
                self.open.push((kind, len, items));
                return None;
            }
            value = finish(kind, items);
        }
    }
}

fn finish(kind: AggregateKind, items: Vec<Frame>) -> Frame {
    let pairs = |items: Vec<Frame>| {
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        out
    };
    match kind {
        AggregateKind::Array => Frame::Array(items),
        AggregateKind::Set => Frame::Set(items),
        AggregateKind::Push => Frame::Push(items),
        AggregateKind::Map => Frame::Map(pairs(items)),
        AggregateKind::Attribute => Frame::Attribute(pairs(items)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::parse_frame;

    /// The builder agrees with `parse_frame` on every reply shape, fed byte by byte.
    #[test]
    fn builds_what_parse_frame_parses() {
        let input: &[u8] = b"+OK\r\n-ERR x\r\n:5\r\n$3\r\nabc\r\n$-1\r\n*0\r\n\
*2\r\n*2\r\n$1\r\na\r\n:1\r\n*0\r\n%1\r\n+k\r\n,1.5\r\n~1\r\n#t\r\n\
*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n";
        let mut want = Vec::new();
        let mut pos = 0;
        while let Some((f, used)) = parse_frame(&input[pos..], &Limits::default()).unwrap() {
            want.push(f);
            pos += used;
        }
        assert_eq!(pos, input.len());
        let (mut d, mut b) = (whole_values(), Builder::default());
        let mut got = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for &byte in input {
            buf.push(byte);
            while let Some((e, used)) = d.next(&buf).unwrap() {
                got.extend(b.event(e));
                buf.drain(..used);
            }
        }
        assert_eq!(got, want);
    }
}
