//! A loopback TCP proxy in front of a real server, to break and re-chunk replication links.
//!
//! std threads only (the tests judge ferry's async code with code that shares nothing with
//! it). Each accepted connection gets a connection to the target and two pump threads.
//!
//! * [`Proxy::cut_after`]: the server→client direction forwards exactly N more bytes, then
//!   both sockets of every open connection are shut down; later connections work normally.
//!   With N not on a command boundary the link is cut in the middle of a command.
//! * [`Mode::SplitEofMark`]: for a diskless (`$EOF:`) transfer, the proxy holds the transfer
//!   back until it has the whole mark, sends everything up to the middle of the mark, sends
//!   the master the `REPLCONF ACK` that starts its stream itself, waits for the first stream
//!   bytes, pauses so that the client has surely read the first part, then sends the rest of
//!   the mark and the stream bytes in one write: the mark split across two reads and glued
//!   to the stream, both on purpose.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    SplitEofMark,
}

struct Shared {
    target: SocketAddr,
    mode: Mode,
    stop: AtomicBool,
    /// Both sockets of every connection, for cutting.
    sockets: Mutex<Vec<TcpStream>>,
    /// Server→client bytes still allowed before a cut; `u64::MAX` when no cut is armed.
    budget: AtomicU64,
    connections: AtomicUsize,
    /// Stream bytes sent in the same write as the end of the `$EOF:` mark.
    glued: AtomicUsize,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards to `target`.
    pub fn start(target: SocketAddr, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            mode,
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
            budget: AtomicU64::new(u64::MAX),
            connections: AtomicUsize::new(0),
            glued: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(s.target) else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                start_pumps(&s, client, server);
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stream bytes glued to the end of the `$EOF:` mark ([`Mode::SplitEofMark`]).
    pub fn glued_stream_bytes(&self) -> usize {
        self.shared.glued.load(Ordering::SeqCst)
    }

    /// Forwards `bytes` more server→client bytes, then cuts every open connection.
    pub fn cut_after(&self, bytes: u64) {
        self.shared.budget.store(bytes, Ordering::SeqCst);
        if bytes == 0 {
            cut_all(&self.shared);
        }
    }

    /// Server→client bytes still allowed before the armed cut (`u64::MAX`: none armed).
    pub fn budget_left(&self) -> u64 {
        self.shared.budget.load(Ordering::SeqCst)
    }

    /// Whether an armed cut has happened (the budget is spent and disarmed).
    pub fn cut_done(&self) -> bool {
        self.shared.budget.load(Ordering::SeqCst) == u64::MAX
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        cut_all(&self.shared);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn cut_all(shared: &Shared) {
    let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
    for s in sockets.drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
    shared.budget.store(u64::MAX, Ordering::SeqCst);
}

fn start_pumps(shared: &Arc<Shared>, client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_w), Ok(server_r)) = clones else {
        return;
    };
    {
        let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for s in [&client, &server] {
            if let Ok(c) = s.try_clone() {
                sockets.push(c);
            }
        }
    }
    // The server's write side is shared: the SplitEofMark pump injects an ACK into it.
    let server_w = Arc::new(Mutex::new(server));
    let up = server_w.clone();
    let mut client_r = client;
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match client_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut w = up.lock().unwrap_or_else(|e| e.into_inner());
            if w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let w = up.lock().unwrap_or_else(|e| e.into_inner());
        let _ = w.shutdown(Shutdown::Write);
    });
    let s = shared.clone();
    thread::spawn(move || {
        let mut down = Down {
            shared: s,
            server_r,
            server_w,
            client_w,
        };
        if down.shared.mode == Mode::SplitEofMark && down.split_eof_mark().is_none() {
            down.close();
            return;
        }
        down.plain();
        down.close();
    });
}

/// The server→client direction.
struct Down {
    shared: Arc<Shared>,
    server_r: TcpStream,
    server_w: Arc<Mutex<TcpStream>>,
    client_w: TcpStream,
}

impl Down {
    fn close(&self) {
        let _ = self.client_w.shutdown(Shutdown::Both);
        let _ = self.server_r.shutdown(Shutdown::Both);
    }

    fn plain(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match self.server_r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !self.forward(&buf[..n]) {
                return;
            }
        }
    }

    /// Writes to the client within the cut budget; false once the connection is cut.
    fn forward(&mut self, data: &[u8]) -> bool {
        let budget = self.shared.budget.load(Ordering::SeqCst);
        let allowed = (data.len() as u64).min(budget) as usize;
        if self.client_w.write_all(&data[..allowed]).is_err() {
            return false;
        }
        if budget != u64::MAX {
            let left = budget - allowed as u64;
            self.shared.budget.store(left, Ordering::SeqCst);
            if left == 0 {
                cut_all(&self.shared);
                return false;
            }
        }
        true
    }

    fn read_more(&mut self, acc: &mut Vec<u8>) -> Option<()> {
        let mut buf = vec![0u8; 64 << 10];
        match self.server_r.read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                acc.extend_from_slice(&buf[..n]);
                Some(())
            }
        }
    }

    /// See the module doc. `None` when the connection ended first.
    fn split_eof_mark(&mut self) -> Option<()> {
        // The handshake replies pass as they come (the client waits for each); from
        // `+FULLRESYNC` on, everything is held.
        let mut acc = Vec::new();
        loop {
            self.read_more(&mut acc)?;
            if let Some(at) = find(&acc, b"+FULLRESYNC ") {
                self.client_w.write_all(&acc[..at]).ok()?;
                acc.drain(..at);
                break;
            }
            self.client_w.write_all(&acc).ok()?;
            acc.clear();
        }
        // `+FULLRESYNC <replid> <offset>\r\n`, then (after `\n`s) `$EOF:<mark>\r\n`.
        let (offset, header_end, mark) = loop {
            if let Some(found) = parse_transfer_start(&acc) {
                break found;
            }
            self.read_more(&mut acc)?;
        };
        let mark_at = loop {
            if let Some(at) = find(&acc[header_end..], &mark) {
                break header_end + at;
            }
            self.read_more(&mut acc)?;
        };
        let middle = mark_at + 20;
        self.client_w.write_all(&acc[..middle]).ok()?;
        // Start the master's stream ourselves: the client cannot, it has not seen the mark.
        // The master ignores ACKs until it has put the replica online (when it has reaped
        // the fork), so repeat it until stream bytes come.
        let mut rest = acc[middle..].to_vec();
        let ack = format!(
            "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n${}\r\n{offset}\r\n",
            offset.to_string().len()
        );
        self.server_r
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok()?;
        while rest.len() <= 20 {
            {
                let mut w = self.server_w.lock().unwrap_or_else(|e| e.into_inner());
                w.write_all(ack.as_bytes()).ok()?;
            }
            let mut buf = vec![0u8; 64 << 10];
            match self.server_r.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        self.server_r.set_read_timeout(None).ok()?;
        // Let the client read (and withhold) the first half of the mark on its own.
        thread::sleep(Duration::from_millis(300));
        self.shared.glued.store(rest.len() - 20, Ordering::SeqCst);
        self.client_w.write_all(&rest).ok()?;
        Some(())
    }
}

/// `(fullresync offset, end of the $EOF header line, mark)` once all of them are in `acc`.
fn parse_transfer_start(acc: &[u8]) -> Option<(u64, usize, Vec<u8>)> {
    let start = find(acc, b"+FULLRESYNC ")?;
    let line_end = start + find(&acc[start..], b"\r\n")?;
    let line = std::str::from_utf8(&acc[start..line_end]).ok()?;
    let offset = line.split(' ').nth(2)?.parse().ok()?;
    let eof = line_end + find(&acc[line_end..], b"$EOF:")?;
    let header_end = eof + 5 + 40 + 2;
    if acc.len() < header_end {
        return None;
    }
    Some((offset, header_end, acc[eof + 5..eof + 45].to_vec()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
