//! The pipelined writer: one connection to one target server.
//!
//! # Pipelining
//!
//! Commands are written without waiting for their replies, up to a window of
//! `window_cmds` commands and `window_bytes` bytes in flight; replies come back in the
//! order the commands were sent, so they are matched first-in first-out. Waiting for each
//! reply would cost a network round trip per command; an unbounded pipeline would hold
//! unbounded memory (every in-flight command is kept until answered, for the retry
//! below). A single command larger than `window_bytes` is still sent, alone.
//!
//! Small commands are coalesced into one socket write of up to [`WRITE_BATCH`] bytes:
//! one `write` per command would cost a system call each and halve the throughput on
//! small keys. The queued bytes go out as soon as the batch is full, whenever the writer
//! waits for replies, and on [`Writer::push`]. A caller that forwards a trickle of
//! commands (the replication stream of an idle source) calls `push` once it has sent
//! what it had.
//!
//! # SELECT
//!
//! The writer knows which db the connection is in. A [`Cmd`] names the db it belongs to
//! and the writer puts a `SELECT` before it when that differs, and counts its `+OK`.
//!
//! # Errors and retries
//!
//! Every error reply is classified ([`super::policy`]). Skip-class errors are recorded
//! ([`SkipRecord`]: key, command, message, counted per class, logged) or stop the writer,
//! as [`ErrorPolicy`] says. Retry-class errors (LOADING, BUSY, OOM, …) mean the server did
//! not execute the command and will take it later. On one, the writer stops sending new
//! commands, reads the replies of every command still in flight, waits (exponential
//! backoff between `retry_backoff.0` and `.1`), then sends again every command that failed
//! that way, in their original order, and carries on with new commands only once those are
//! answered.
//! Commands that succeeded are not sent again (most are not idempotent: `RPUSH`, `INCR`).
//!
//! ## Why resending only the failed commands keeps the data right
//!
//! Resending moves each failed command after the commands that followed it and
//! succeeded. The final state is the same as in the original order when every failed
//! command commutes with every later command that succeeded — and commands on different
//! keys commute. So the order is kept *per key*, which is the guarantee the design asks
//! of the writer, exactly when no later command on the same key succeeded before the
//! resend. The retry classes make that the normal case: they are states of the whole
//! server (loading, a script running, out of memory, a failover) that refuse every write
//! while they last, so the commands after a refused one are refused too, and go back in
//! the same order. The exceptions are a state that ends while a window is in flight (a
//! run of refused commands, then accepted ones) and OOM, which refuses only the commands
//! that may grow memory (`SET`, `RPUSH`; not `DEL`, `EXPIRE`, `LPOP`). The writer does
//! not guess: it numbers every reply, remembers for each key the last success, and before
//! resending checks, for each failed command, whether a command on the same key (or on an
//! unknown key, a `Cmd` without one) succeeded after it. If so the order of that key is lost; the key is
//! recorded (class `reorder`) and named, or the writer stops, per `on_error`. A `SELECT`
//! that was refused while later commands were not would have sent those commands to the
//! wrong db: the writer checks the db of every success and stops with an error if one
//! ran elsewhere, since that cannot be repaired. At connect the writer waits for a
//! loading server to finish, which removes the most common straddle.
//!
//! # Acknowledged tags
//!
//! [`Writer::acked_tag`] is the largest tag such that its command and every command
//! before it were answered (successfully, or with an error that was skipped). A command
//! waiting for a retry holds it back, even if later commands succeeded: that is the
//! offset a replica may report with `REPLCONF ACK` and a checkpoint may save.
//!
//! # Cancellation
//!
//! Every await point leaves the state consistent (socket writes advance the queue only
//! by what was written; the backoff deadline is stored before sleeping), so `recv`,
//! `push` and `flush` can be used in a `select!`, abandoned and called again. A `send`
//! that is abandoned may already have queued its command: do not send it again.
//!
//! After an I/O error or a fatal error the writer is stopped: commands after `acked_tag`
//! may or may not have been applied, and the caller resumes from `acked_tag` on a new
//! writer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IoSlice;
use std::time::Duration;

use crate::net::NetStream;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cmd::{command_args, split_commands, Cmd, CmdKind};
use super::error::{Rejection, TargetError};
use super::info::{ServerInfo, DEFAULT_PROTO_MAX_BULK_LEN};
use super::policy::{classify, hint, Class, Conflict, ErrorPolicy, OnError};
use crate::endpoint::Endpoint;
use crate::resp::{self, parse_frame, Frame, Limits};
use crate::util::escape_bytes;

/// Bytes of small commands gathered into one socket write.
pub const WRITE_BATCH: usize = 64 << 10;
/// Commands longer than this are written from their own buffer instead of being copied
/// into the coalescing one.
const COALESCE_MAX: usize = 16 << 10;
/// Resends of a command a cluster node refuses with READONLY before the writer stops (the
/// node became a replica; see `prepare_resend`).
const READONLY_ATTEMPTS_IN_A_CLUSTER: u32 = 5;
/// Skip records kept (the newest); the count in the stats has them all.
pub const SKIP_RECORDS_KEPT: usize = 1000;

/// Defaults of [`WriterConfig`]'s window, also the config file's.
pub const DEFAULT_WINDOW_CMDS: usize = 512;
pub const DEFAULT_WINDOW_BYTES: usize = 8 << 20;

/// Settings of one writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub endpoint: Endpoint,
    /// Most commands in flight (sent, not yet answered).
    pub window_cmds: usize,
    /// Most bytes in flight; one larger command still goes alone.
    pub window_bytes: usize,
    pub connect_timeout: Duration,
    /// How long the writer waits for a reply before giving up on the connection.
    pub reply_timeout: Duration,
    pub policy: ErrorPolicy,
    /// First and longest wait before resending commands refused with a retry-class error.
    pub retry_backoff: (Duration, Duration),
    /// Hand `MOVED`/`ASK` replies back ([`Writer::take_redirected`]) instead of stopping:
    /// for a cluster router in front of one writer per node.
    pub redirects: bool,
}

impl WriterConfig {
    /// Defaults: 512 commands or 8 MiB in flight, 10 s to connect, 120 s for a reply,
    /// the default [`ErrorPolicy`], backoff from 50 ms to 2 s.
    pub fn new(endpoint: Endpoint) -> WriterConfig {
        WriterConfig {
            endpoint,
            window_cmds: DEFAULT_WINDOW_CMDS,
            window_bytes: DEFAULT_WINDOW_BYTES,
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(120),
            policy: ErrorPolicy::default(),
            retry_backoff: (Duration::from_millis(50), Duration::from_secs(2)),
            redirects: false,
        }
    }
}

/// A command whose error was recorded and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRecord {
    /// The class name it is counted under (`WRONGTYPE`, `BUSYKEY`, `payload`, `reorder`…).
    pub class: &'static str,
    /// The command's name (`RESTORE`, `RPUSH`…).
    pub command: String,
    pub key: Option<Bytes>,
    pub db: Option<u32>,
    /// The server's error message (or the writer's, for `reorder`).
    pub message: String,
    /// The tag of the `Cmd` it belonged to.
    pub tag: u64,
}

/// Counters of one writer.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    /// Commands sent (resends and the writer's own `SELECT`s included).
    pub commands: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Error replies per class name, retried ones included.
    pub errors_by_class: BTreeMap<&'static str, u64>,
    /// The newest [`SKIP_RECORDS_KEPT`] skip records.
    pub skipped: Vec<SkipRecord>,
    /// Every skip, also those no longer in `skipped`.
    pub skipped_total: u64,
    /// Commands sent again after a retry-class error.
    pub retried: u64,
    /// Commands in flight now.
    pub in_flight: usize,
}

/// What a reply said, as much as the writer needs.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Ok {
        int: Option<i64>,
        queued: bool,
    },
    Error(Vec<u8>),
    /// An array with error elements (the reply of an `EXEC`).
    Nested(Vec<Vec<u8>>),
}

/// Builds a [`Reply`] from the streaming decoder's events of one frame.
#[derive(Debug, Default)]
struct ReplyScan {
    top: Option<Reply>,
    nested: Vec<Vec<u8>>,
}

impl ReplyScan {
    fn event(&mut self, ev: resp::Event<'_>) -> Option<Reply> {
        use resp::Event as E;
        if let E::FrameEnd { .. } = ev {
            let top = self.top.take().unwrap_or(Reply::Ok {
                int: None,
                queued: false,
            });
            let nested = std::mem::take(&mut self.nested);
            return Some(if nested.is_empty() {
                top
            } else {
                Reply::Nested(nested)
            });
        }
        match (&self.top, ev) {
            (None, E::Error(t) | E::BulkError(t)) => self.top = Some(Reply::Error(t.to_vec())),
            (None, E::Integer(i)) => {
                self.top = Some(Reply::Ok {
                    int: Some(i),
                    queued: false,
                })
            }
            (None, E::Simple(s)) => {
                self.top = Some(Reply::Ok {
                    int: None,
                    queued: s == b"QUEUED",
                })
            }
            (None, _) => {
                self.top = Some(Reply::Ok {
                    int: None,
                    queued: false,
                })
            }
            (Some(_), E::Error(t) | E::BulkError(t)) => {
                if self.nested.len() < 16 {
                    self.nested.push(t.to_vec());
                }
            }
            (Some(_), _) => {}
        }
        None
    }
}

/// A retry-class failure of one command of an entry.
#[derive(Debug, Clone)]
struct Failure {
    /// Which command of the entry (0-based, in the entry's own bytes).
    idx: u32,
    /// The reply sequence number of the failure.
    seq: u64,
    text: Vec<u8>,
    class: &'static str,
}

#[derive(Debug, Clone)]
enum EntryKind {
    Cmd(CmdKind),
    /// The writer's own `SELECT`.
    Select(u32),
}

/// A `Cmd` in flight (or waiting to be sent again).
#[derive(Debug)]
struct Entry {
    db: Option<u32>,
    bytes: Bytes,
    /// Commands in `bytes`.
    n: u32,
    tag: u64,
    kind: EntryKind,
    /// Replies received so far.
    got: u32,
    /// Send `DISCARD` before it (a transaction sent again: the connection may still be in
    /// the MULTI state the failed attempt opened); its reply is ignored.
    discard_first: bool,
    failures: Vec<Failure>,
    /// Retry rounds its commands have failed so far.
    attempts: u32,
    /// It is a resend, counted in `Writer::outstanding`.
    outstanding: bool,
    /// Commands answered `MOVED`/`ASK` (index, error text), with `redirects` on.
    redirected: Vec<(u32, Vec<u8>)>,
    /// A transaction with a `SELECT` inside: after it (sent, or answered) the
    /// connection's db is not known, and the next command gets a `SELECT` of its own.
    db_unknown_after: bool,
}

impl Entry {
    fn expected(&self) -> u32 {
        self.n + u32::from(self.discard_first)
    }

    fn key(&self) -> Option<&Bytes> {
        match &self.kind {
            EntryKind::Cmd(k) => k.key(),
            EntryKind::Select(_) => None,
        }
    }

    /// The bytes of command `idx` (error path only).
    fn command(&self, idx: u32) -> &[u8] {
        split_commands(&self.bytes, self.n as usize)
            .and_then(|r| r.get(idx as usize).cloned())
            .and_then(|r| self.bytes.get(r))
            .unwrap_or(&[])
    }
}

const DISCARD: &[u8] = b"*1\r\n$7\r\nDISCARD\r\n";
/// `sent_db`/`server_db` when the connection's db is not known (after a transaction that
/// SELECTs inside): never equal to a Cmd's db, so the next one gets a `SELECT`.
const DB_UNKNOWN: u32 = u32::MAX;
/// What a guard's refused `RENAMENX` is recorded as: a `BUSYKEY`, as RESTORE would say.
const GUARD_REFUSED: &[u8] =
    b"BUSYKEY Target key name already exists (the staged value was not moved in)";

/// A pipelined connection to one target server.
pub struct Writer {
    cfg: WriterConfig,
    info: ServerInfo,
    target: String,
    stream: NetStream,

    // Writing: queued bytes not yet on the socket.
    out: VecDeque<Bytes>,
    small: Vec<u8>,
    /// Commands queued since the last write.
    unsent_cmds: usize,

    // Reading.
    inbuf: BytesMut,
    decoder: resp::Decoder,
    scan: ReplyScan,
    /// Reply bytes consumed before the decoder took over (the handshake), for offsets.
    handshake_bytes: u64,

    inflight: VecDeque<Entry>,
    inflight_cmds: usize,
    inflight_bytes: usize,
    /// The db the connection will be in once everything queued has run.
    sent_db: u32,
    /// The db the connection is in after the replies processed so far.
    server_db: u32,

    // Retries.
    retry_pending: bool,
    /// Resent commands are in flight: nothing new is sent until they are answered.
    resends_in_flight: bool,
    resend: Vec<Entry>,
    resend_at: Option<tokio::time::Instant>,
    reply_seq: u64,
    /// While a retry is pending: the reply number of the last success per key, of any
    /// success, and of a success whose key is unknown.
    last_ok_by_key: HashMap<Bytes, u64>,
    last_ok_any: u64,
    last_ok_unknown: u64,
    /// Resends not yet answered successfully.
    outstanding: usize,
    /// The largest tag answered while `outstanding > 0`.
    carry: u64,
    acked: u64,

    stats: WriterStats,
    skipped: VecDeque<SkipRecord>,
    stopped: Option<String>,
    redirected_out: Vec<Redirected>,
}

/// Commands a cluster node answered `MOVED` or `ASK`, handed back to the router.
#[derive(Debug, Clone)]
pub struct Redirected {
    pub db: Option<u32>,
    /// The redirected commands (a transaction: all of it, `MULTI` to `EXEC`).
    pub bytes: Bytes,
    pub n: u32,
    pub tag: u64,
    pub kind: CmdKind,
    /// The first redirect's text: `MOVED 3999 127.0.0.1:7002` or `ASK …`.
    pub error: String,
}

impl Writer {
    /// Connects, authenticates, reads what the server is, waits while it is loading, and
    /// selects the URL's db.
    pub async fn connect(cfg: WriterConfig) -> Result<Writer, TargetError> {
        let target = cfg.endpoint.to_string();
        let stream =
            match tokio::time::timeout(cfg.connect_timeout, crate::net::connect(&cfg.endpoint))
                .await
            {
                Err(_) => {
                    return Err(TargetError::ConnectTimeout {
                        target,
                        timeout: cfg.connect_timeout,
                    })
                }
                Ok(Err(source)) => return Err(TargetError::Connect { target, source }),
                Ok(Ok(s)) => s,
            };
        // Small commands must not wait for Nagle's timer: coalescing is done here.
        let _ = stream.set_nodelay(true);
        let db = cfg.endpoint.db.unwrap_or(0);
        let mut w = Writer {
            info: ServerInfo::new(false, (0, 0, 0)),
            target,
            stream,
            out: VecDeque::new(),
            small: Vec::with_capacity(WRITE_BATCH + COALESCE_MAX),
            unsent_cmds: 0,
            inbuf: BytesMut::with_capacity(64 << 10),
            decoder: resp::Decoder::new(resp::DecoderConfig {
                inline_bulk_max: 64 << 10,
                limits: Limits::default(),
            }),
            scan: ReplyScan::default(),
            handshake_bytes: 0,
            inflight: VecDeque::new(),
            inflight_cmds: 0,
            inflight_bytes: 0,
            sent_db: 0,
            server_db: 0,
            retry_pending: false,
            resends_in_flight: false,
            resend: Vec::new(),
            resend_at: None,
            reply_seq: 0,
            last_ok_by_key: HashMap::new(),
            last_ok_any: 0,
            last_ok_unknown: 0,
            outstanding: 0,
            carry: 0,
            acked: 0,
            stats: WriterStats::default(),
            skipped: VecDeque::new(),
            stopped: None,
            redirected_out: Vec::new(),
            cfg,
        };
        w.handshake(db).await?;
        Ok(w)
    }

    async fn handshake(&mut self, db: u32) -> Result<(), TargetError> {
        if let Some(password) = self.cfg.endpoint.password.clone() {
            let user = self.cfg.endpoint.user.clone();
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            let reply = self.call(&args).await?;
            if let Some(e) = reply.error_text() {
                let text = String::from_utf8_lossy(e).into_owned();
                // A password for a server that has none: harmless, go on.
                if text.contains("no password is set") || text.contains("without any password") {
                    let target = &self.target;
                    tracing::warn!(%target, "no password set on the target; AUTH ignored");
                } else {
                    let (_, name) = classify(e);
                    return Err(TargetError::Auth {
                        target: self.target.clone(),
                        message: text,
                        hint: hint(name),
                    });
                }
            }
        }
        let mut waited = 0u32;
        let text = loop {
            let reply = self.call_patiently(&[b"INFO"]).await?;
            let text = match (reply.error_text(), reply.as_bytes()) {
                (Some(e), _) => {
                    let (class, name) = classify(e);
                    let message = String::from_utf8_lossy(e).into_owned();
                    if class == Class::Fatal {
                        return Err(TargetError::Auth {
                            target: self.target.clone(),
                            message,
                            hint: hint(name),
                        });
                    }
                    return Err(TargetError::Unsupported {
                        target: self.target.clone(),
                        message: format!("INFO failed: {message}"),
                    });
                }
                (None, Some(t)) => String::from_utf8_lossy(t).into_owned(),
                (None, None) => String::new(),
            };
            if !text.lines().any(|l| l.trim() == "loading:1") {
                break text;
            }
            // Commands sent now would only earn LOADING errors; wait for the data.
            waited += 1;
            self.wait_for_server(waited, "loading its dataset").await?;
        };
        let mut info = ServerInfo::from_info(&text).ok_or_else(|| TargetError::Unsupported {
            target: self.target.clone(),
            message: "INFO names no redis_version: not a Redis or Valkey server?".into(),
        })?;
        let reply = self
            .call_patiently(&[b"CONFIG", b"GET", b"proto-max-bulk-len"])
            .await?;
        info.proto_max_bulk_len = match reply {
            Frame::Array(items) => items.get(1).and_then(Frame::to_i64).map(|v| v as u64),
            _ => None,
        }
        .unwrap_or(DEFAULT_PROTO_MAX_BULK_LEN);
        self.info = info;
        if db != 0 {
            let text = db.to_string();
            let reply = self.call_patiently(&[b"SELECT", text.as_bytes()]).await?;
            if let Some(e) = reply.error_text() {
                return Err(TargetError::Rejected(Box::new(Rejection {
                    target: self.target.clone(),
                    class: "ERR",
                    command: "SELECT".into(),
                    key: String::new(),
                    message: String::from_utf8_lossy(e).into_owned(),
                    hint: " (the db in the target URL does not exist there)",
                })));
            }
            self.sent_db = db;
            self.server_db = db;
        }
        Ok(())
    }

    /// [`call`](Self::call), waiting out retry-class error replies (a server that is
    /// loading, or busy with a script) with the retry backoff.
    async fn call_patiently(&mut self, args: &[&[u8]]) -> Result<Frame, TargetError> {
        let mut attempt = 0u32;
        loop {
            let reply = self.call(args).await?;
            let Some(e) = reply.error_text().filter(|e| classify(e).0 == Class::Retry) else {
                return Ok(reply);
            };
            let why = String::from_utf8_lossy(e).into_owned();
            attempt += 1;
            if self.wait_for_server(attempt, &why).await.is_err() {
                return Ok(reply);
            }
        }
    }

    /// Sleeps before asking a server that cannot serve yet again; an error once the
    /// policy's retries are spent.
    async fn wait_for_server(&mut self, attempt: u32, why: &str) -> Result<(), TargetError> {
        if self.cfg.policy.max_retries.is_some_and(|m| attempt > m) {
            return Err(TargetError::Unsupported {
                target: self.target.clone(),
                message: format!("not ready after the allowed retries: {why}"),
            });
        }
        if attempt == 1 || attempt % 10 == 0 {
            tracing::warn!(target = %self.target, attempt, "target not ready ({why}); waiting");
        }
        tokio::time::sleep(self.backoff(attempt)).await;
        Ok(())
    }

    /// One command and its whole reply, with nothing else in flight (the handshake).
    async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, TargetError> {
        let mut buf = Vec::new();
        resp::encode_command(&mut buf, args);
        self.queue_bytes(&Bytes::from(buf));
        self.write_out().await?;
        loop {
            match parse_frame(&self.inbuf, &Limits::default()) {
                Ok(Some((frame, used))) => {
                    self.inbuf.advance(used);
                    self.handshake_bytes += used as u64;
                    return Ok(frame);
                }
                Ok(None) => self.read_more().await?,
                Err(e) => {
                    return Err(TargetError::Protocol {
                        target: self.target.clone(),
                        offset: self.handshake_bytes + e.offset,
                        message: e.message,
                    })
                }
            }
        }
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The target, as `redis://user@host:port/db` (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Queues `cmd`. When the window is full, first reads replies until there is room; when
    /// a retry is pending, first resends. The bytes reach the socket once [`WRITE_BATCH`]
    /// bytes are queued, or on [`push`](Self::push), [`flush`](Self::flush) or any wait
    /// for replies.
    pub async fn send(&mut self, cmd: Cmd) -> Result<(), TargetError> {
        self.check_stopped()?;
        if cmd.n == 0 || cmd.bytes.is_empty() {
            return Err(TargetError::Invalid {
                target: self.target.clone(),
                message: "a Cmd must hold at least one command".into(),
            });
        }
        if self.info.cluster && cmd.db.is_some_and(|d| d != 0) {
            return Err(TargetError::Invalid {
                target: self.target.clone(),
                message: format!(
                    "db {} on a cluster target, which has only db 0: map the source dbs to 0",
                    cmd.db.unwrap_or(0)
                ),
            });
        }
        // A Cmd whose `n` does not match its bytes would shift every later reply onto
        // the wrong command; the check costs a scan, so it runs in debug builds.
        debug_assert!(
            split_commands(&cmd.bytes, cmd.n as usize)
                .is_some_and(|r| r.last().map(|r| r.end) == Some(cmd.bytes.len())),
            "a Cmd's bytes must be exactly its {} commands",
            cmd.n
        );
        self.drive_retry().await?;
        let select = u32::from(self.needs_select(cmd.db));
        let need_cmds = (cmd.n + select) as usize;
        while !self.inflight.is_empty()
            && (self.inflight_cmds + need_cmds > self.cfg.window_cmds
                || self.inflight_bytes + cmd.bytes.len() > self.cfg.window_bytes)
        {
            self.read_some().await?;
            self.drive_retry().await?;
        }
        let db_unknown_after =
            matches!(cmd.kind, CmdKind::Transaction { .. }) && selects_inside(&cmd.bytes, cmd.n);
        self.enqueue(Entry {
            db_unknown_after,
            db: cmd.db,
            bytes: cmd.bytes,
            n: cmd.n,
            tag: cmd.tag,
            kind: EntryKind::Cmd(cmd.kind),
            got: 0,
            discard_first: false,
            failures: Vec::new(),
            attempts: 0,
            outstanding: false,
            redirected: Vec::new(),
        });
        // Write once a batch is gathered, or a quarter of the window: waiting for a full
        // window before writing would leave the server idle while it fills.
        self.unsent_cmds += need_cmds;
        if self.queued() >= WRITE_BATCH || self.unsent_cmds >= self.cfg.window_cmds / 4 {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Writes every queued byte to the socket, without waiting for replies.
    pub async fn push(&mut self) -> Result<(), TargetError> {
        self.check_stopped()?;
        self.write_out().await
    }

    /// Waits for some replies and processes them, resending when a retry is due. For a
    /// `select!` loop that wants [`acked_tag`](Self::acked_tag) to advance while it waits
    /// for other input; guard it with `if w.in_flight() > 0`, since with nothing in flight
    /// it returns at once.
    pub async fn recv(&mut self) -> Result<(), TargetError> {
        self.check_stopped()?;
        if self.retry_pending || self.resends_in_flight {
            return self.drive_retry().await;
        }
        self.read_some().await
    }

    /// Waits until every command sent so far is answered (and every retry done).
    pub async fn flush(&mut self) -> Result<(), TargetError> {
        self.check_stopped()?;
        loop {
            self.drive_retry().await?;
            if self.inflight.is_empty() && !self.retry_pending {
                return self.write_out().await;
            }
            self.read_some().await?;
        }
    }

    /// Commands answered `MOVED`/`ASK` since the last call (with `redirects` on). The
    /// writer counts them as answered in [`acked_tag`](Self::acked_tag): the caller owns
    /// them now, and must take them before it reads `acked_tag`.
    pub fn take_redirected(&mut self) -> Vec<Redirected> {
        std::mem::take(&mut self.redirected_out)
    }

    /// Moves an entry's redirected commands to `redirected_out`: a transaction whole, else
    /// the commands that were redirected, in order.
    fn hand_back(&mut self, entry: &mut Entry) {
        let redirected = std::mem::take(&mut entry.redirected);
        let error = String::from_utf8_lossy(&redirected[0].1).into_owned();
        let kind = match &entry.kind {
            EntryKind::Cmd(k) => k.clone(),
            EntryKind::Select(_) => return,
        };
        let (bytes, n) = if matches!(kind, CmdKind::Transaction { .. }) {
            entry.failures.clear();
            (entry.bytes.clone(), entry.n)
        } else {
            let ranges = split_commands(&entry.bytes, entry.n as usize).unwrap_or_default();
            let mut b = Vec::new();
            for (idx, _) in &redirected {
                if let Some(r) = ranges.get(*idx as usize) {
                    b.extend_from_slice(&entry.bytes[r.clone()]);
                }
            }
            (Bytes::from(b), redirected.len() as u32)
        };
        self.redirected_out.push(Redirected {
            db: entry.db,
            bytes,
            n,
            tag: entry.tag,
            kind,
            error,
        });
    }

    /// The largest tag such that it and every command before it were answered and none
    /// of them waits for a retry.
    pub fn acked_tag(&self) -> u64 {
        self.acked
    }

    /// Commands sent and not yet answered, and commands waiting to be sent again after a
    /// retry-class refusal (a `flush` abandoned during the backoff leaves some).
    pub fn in_flight(&self) -> usize {
        self.inflight_cmds + self.resend.iter().map(|e| e.n as usize).sum::<usize>()
    }

    pub fn stats(&self) -> WriterStats {
        let mut s = self.stats.clone();
        s.skipped = self.skipped.iter().cloned().collect();
        s.in_flight = self.in_flight();
        s
    }

    fn check_stopped(&self) -> Result<(), TargetError> {
        match &self.stopped {
            Some(first) => Err(TargetError::Stopped {
                target: self.target.clone(),
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Stops the writer with `e` (kept for the calls that follow).
    fn stop(&mut self, e: TargetError) -> TargetError {
        if self.stopped.is_none() {
            self.stopped = Some(e.to_string());
        }
        e
    }

    fn needs_select(&self, db: Option<u32>) -> bool {
        match db {
            Some(db) => db != self.sent_db && !(self.info.cluster && db == 0),
            None => false,
        }
    }

    fn queued(&self) -> usize {
        self.small.len() + self.out.iter().map(Bytes::len).sum::<usize>()
    }

    /// Puts an entry in flight (with a `SELECT` before it when needed) and queues its bytes.
    fn enqueue(&mut self, entry: Entry) {
        if self.needs_select(entry.db) {
            let db = entry.db.unwrap_or(0);
            let mut buf = Vec::with_capacity(24);
            resp::encode_command(&mut buf, &[b"SELECT".as_slice(), db.to_string().as_bytes()]);
            self.sent_db = db;
            self.enqueue_raw(Entry {
                db_unknown_after: false,
                db: None,
                bytes: Bytes::from(buf),
                n: 1,
                tag: 0,
                kind: EntryKind::Select(db),
                got: 0,
                discard_first: false,
                failures: Vec::new(),
                attempts: 0,
                outstanding: false,
                redirected: Vec::new(),
            });
        }
        let unknown = entry.db_unknown_after;
        self.enqueue_raw(entry);
        if unknown {
            self.sent_db = DB_UNKNOWN;
        }
    }

    fn enqueue_raw(&mut self, entry: Entry) {
        if entry.discard_first {
            self.queue_bytes(&Bytes::from_static(DISCARD));
        }
        self.queue_bytes(&entry.bytes);
        self.inflight_cmds += entry.expected() as usize;
        self.inflight_bytes += entry.bytes.len();
        self.stats.commands += u64::from(entry.expected());
        self.inflight.push_back(entry);
    }

    /// Small commands are copied into the coalescing buffer; large ones are queued as
    /// they are (a reference count, no copy).
    fn queue_bytes(&mut self, b: &Bytes) {
        self.stats.bytes += b.len() as u64;
        if b.len() <= COALESCE_MAX {
            self.small.extend_from_slice(b);
        } else {
            self.seal_small();
            self.out.push_back(b.clone());
        }
    }

    /// Moves the coalesced small commands into the write queue, keeping the order.
    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            let cap = WRITE_BATCH + COALESCE_MAX;
            let full = std::mem::replace(&mut self.small, Vec::with_capacity(cap));
            self.out.push_back(Bytes::from(full));
        }
    }

    /// Writes the queue out. Each `write_vectored` either writes some bytes, which are then
    /// dropped from the queue, or none: cancelling between them loses nothing.
    async fn write_out(&mut self) -> Result<(), TargetError> {
        self.seal_small();
        self.unsent_cmds = 0;
        while !self.out.is_empty() {
            let slices: Vec<IoSlice<'_>> =
                self.out.iter().take(64).map(|b| IoSlice::new(b)).collect();
            // A target that stops reading (black-holed, frozen) fails the write after the
            // same time a missing reply does, not after the kernel's retransmissions.
            let write =
                tokio::time::timeout(self.cfg.reply_timeout, self.stream.write_vectored(&slices));
            let written = match write.await {
                Err(_) => {
                    let e = TargetError::WriteTimeout {
                        target: self.target.clone(),
                        timeout: self.cfg.reply_timeout,
                        in_flight: self.inflight_cmds,
                    };
                    return Err(self.stop(e));
                }
                Ok(Ok(0)) => {
                    let e = TargetError::Closed {
                        target: self.target.clone(),
                        in_flight: self.inflight_cmds,
                    };
                    return Err(self.stop(e));
                }
                Ok(Ok(n)) => n,
                Ok(Err(source)) => {
                    let e = TargetError::Io {
                        target: self.target.clone(),
                        in_flight: self.inflight_cmds,
                        source,
                    };
                    return Err(self.stop(e));
                }
            };
            let mut left = written;
            while left > 0 {
                let Some(front) = self.out.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        // TLS counts bytes as written once its session holds them, and keeps the records
        // the socket could not take yet until the next write or a flush: without this,
        // the last commands before a wait for replies could sit there until the reply
        // timeout. A no-op for plain TCP.
        match tokio::time::timeout(self.cfg.reply_timeout, self.stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            Err(_) => {
                let e = TargetError::WriteTimeout {
                    target: self.target.clone(),
                    timeout: self.cfg.reply_timeout,
                    in_flight: self.inflight_cmds,
                };
                Err(self.stop(e))
            }
            Ok(Err(source)) => {
                let e = TargetError::Io {
                    target: self.target.clone(),
                    in_flight: self.inflight_cmds,
                    source,
                };
                Err(self.stop(e))
            }
        }
    }

    /// Reads what the socket has (waiting up to `reply_timeout`) into the buffer.
    async fn read_more(&mut self) -> Result<(), TargetError> {
        self.inbuf.reserve(64 << 10);
        let read = tokio::time::timeout(
            self.cfg.reply_timeout,
            self.stream.read_buf(&mut self.inbuf),
        )
        .await;
        let e = match read {
            Ok(Ok(0)) => TargetError::Closed {
                target: self.target.clone(),
                in_flight: self.inflight_cmds,
            },
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(source)) => TargetError::Io {
                target: self.target.clone(),
                in_flight: self.inflight_cmds,
                source,
            },
            Err(_) => TargetError::ReplyTimeout {
                target: self.target.clone(),
                timeout: self.cfg.reply_timeout,
                in_flight: self.inflight_cmds,
            },
        };
        Err(self.stop(e))
    }

    /// Sends what is queued, waits for more reply bytes and processes every whole reply.
    async fn read_some(&mut self) -> Result<(), TargetError> {
        self.write_out().await?;
        if self.inflight.is_empty() {
            return Ok(());
        }
        self.read_more().await?;
        self.process_replies()
    }

    fn process_replies(&mut self) -> Result<(), TargetError> {
        loop {
            let reply = match self.decoder.next(&self.inbuf) {
                Ok(Some((ev, used))) => {
                    let reply = self.scan.event(ev);
                    self.inbuf.advance(used);
                    reply
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    let e = TargetError::Protocol {
                        target: self.target.clone(),
                        offset: self.handshake_bytes + e.offset,
                        message: e.message,
                    };
                    return Err(self.stop(e));
                }
            };
            if let Some(reply) = reply {
                if let Err(e) = self.on_reply(reply) {
                    return Err(self.stop(e));
                }
            }
        }
    }

    /// Matches one reply to the oldest command in flight.
    fn on_reply(&mut self, reply: Reply) -> Result<(), TargetError> {
        self.reply_seq += 1;
        let seq = self.reply_seq;
        let offset = self.handshake_bytes + self.decoder.offset();
        let Some(entry) = self.inflight.front_mut() else {
            return Err(TargetError::Protocol {
                target: self.target.clone(),
                offset,
                message: "a reply arrived with no command in flight".into(),
            });
        };
        let raw_idx = entry.got;
        entry.got += 1;
        let done = entry.got == entry.expected();
        // The DISCARD sent before a resent transaction: its reply (OK or "DISCARD without
        // MULTI") says nothing about the data.
        if entry.discard_first && raw_idx == 0 {
            return self.finish_front(done);
        }
        let idx = raw_idx - u32::from(entry.discard_first);
        let kind = entry.kind.clone();
        match (&kind, reply) {
            (EntryKind::Select(db), Reply::Ok { .. }) => self.server_db = *db,
            (EntryKind::Select(_), Reply::Error(text)) => {
                let (class, name) = classify(&text);
                self.count_error(name);
                if class == Class::Retry {
                    self.fail_retry(idx, seq, text, name);
                } else {
                    return Err(self.rejected(0, name, &text));
                }
            }
            (EntryKind::Select(_), Reply::Nested(_)) => {}
            (EntryKind::Cmd(k), Reply::Ok { int, queued }) => {
                if queued && !matches!(k, CmdKind::Transaction { .. }) {
                    return Err(TargetError::Order {
                        target: self.target.clone(),
                        message: "the connection is in a MULTI block it did not open \
                                  (a transaction's EXEC was refused): commands were queued \
                                  instead of run"
                            .into(),
                    });
                }
                self.check_db()?;
                // The guard's RENAMENX: its first command, or its second after the router's
                // ASKING (a guard redirected by ASK).
                let renamenx = |w: &Self| {
                    w.inflight.front().is_some_and(|e| {
                        command_name(e.command(idx)).eq_ignore_ascii_case("RENAMENX")
                    })
                };
                if matches!(k, CmdKind::Guard { .. }) && int == Some(0) && renamenx(self) {
                    self.judge(Class::BusyKey, "BUSYKEY", GUARD_REFUSED, idx)?;
                }
                let last = matches!(k, CmdKind::Transaction { .. }) && done;
                if self.retry_pending && (last || !matches!(k, CmdKind::Transaction { .. })) {
                    self.note_success(seq, idx);
                }
            }
            (EntryKind::Cmd(k), Reply::Error(text)) => {
                // `EXEC` refused for a condition of the server (6.2+: OOM, BUSY, LOADING,
                // READONLY, MOVED…) discards the transaction with `-EXECABORT … because
                // of: <error>`: judged as that error (a retry sends it again whole).
                let text = match exec_abort_cause(&text) {
                    Some(cause) if matches!(k, CmdKind::Transaction { .. }) => {
                        match classify(cause).0 {
                            Class::Retry | Class::Redirect => cause.to_vec(),
                            _ => text,
                        }
                    }
                    _ => text,
                };
                let (class, name) = classify(&text);
                self.count_error(name);
                if self.cfg.redirects {
                    let front = self.inflight.front_mut();
                    if let Some(e) = front.filter(|_| class == Class::Redirect) {
                        e.redirected.push((idx, text));
                        return self.finish_front(done);
                    }
                    let redirected = self
                        .inflight
                        .front()
                        .is_some_and(|e| !e.redirected.is_empty());
                    if redirected && name == "EXECABORT" {
                        // Discarded because a queued command was redirected: the whole
                        // transaction goes to the node that owns it.
                        return self.finish_front(done);
                    }
                }
                let has_failures = self
                    .inflight
                    .front()
                    .is_some_and(|e| !e.failures.is_empty());
                if class == Class::Retry {
                    self.fail_retry(idx, seq, text, name);
                } else if matches!(k, CmdKind::Transaction { .. })
                    && name == "EXECABORT"
                    && has_failures
                {
                    // The transaction was discarded because a command was refused while
                    // queueing with a retry-class error: it goes again whole.
                } else {
                    self.judge(class, name, &text, idx)?;
                }
            }
            (EntryKind::Cmd(_), Reply::Nested(errors)) => {
                self.check_db()?;
                for text in errors {
                    let (_, name) = classify(&text);
                    self.count_error(name);
                    self.judge(Class::Skip, name, &text, idx)?;
                }
                if self.retry_pending {
                    self.note_success(seq, idx);
                }
            }
        }
        self.finish_front(done)
    }

    /// A success of the front entry at a time a retry is pending: remember it for the
    /// reorder check.
    fn note_success(&mut self, seq: u64, idx: u32) {
        let front = self.inflight.front();
        if front.is_some_and(|e| command_name(e.command(idx)).eq_ignore_ascii_case("ASKING")) {
            // The router's ASKING before a redirected command: it wrote nothing.
            return;
        }
        self.last_ok_any = seq;
        if front.is_some_and(|e| matches!(e.kind, EntryKind::Cmd(CmdKind::Batch))) {
            // A batch's keys are its own: no other command waits on them.
            return;
        }
        let key = front.and_then(Entry::key).cloned();
        match key {
            Some(k) => {
                self.last_ok_by_key.insert(k, seq);
            }
            None => self.last_ok_unknown = seq,
        }
    }

    /// A success must have run in the db its command was meant for.
    fn check_db(&self) -> Result<(), TargetError> {
        let Some(entry) = self.inflight.front() else {
            return Ok(());
        };
        match entry.db {
            Some(db) if db != self.server_db && !(self.info.cluster && db == 0) => {
                Err(TargetError::Order {
                    target: self.target.clone(),
                    message: format!(
                        "a command for db {db} ran in db {} because a SELECT was refused while \
                         the commands after it were not (key {}); the target needs checking",
                        self.server_db,
                        self.describe_key(entry)
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    fn fail_retry(&mut self, idx: u32, seq: u64, text: Vec<u8>, class: &'static str) {
        self.retry_pending = true;
        if let Some(e) = self.inflight.front_mut() {
            e.failures.push(Failure {
                idx,
                seq,
                text,
                class,
            });
        }
    }

    fn count_error(&mut self, name: &'static str) {
        *self.stats.errors_by_class.entry(name).or_default() += 1;
    }

    /// Pops the front entry once all its replies are in: done, or waiting for a resend.
    fn finish_front(&mut self, done: bool) -> Result<(), TargetError> {
        if !done {
            return Ok(());
        }
        let Some(mut entry) = self.inflight.pop_front() else {
            return Ok(());
        };
        if entry.db_unknown_after {
            // Whether it ran or not, its SELECTs may have: `drive_retry` and `check_db`
            // must not trust the db of the last tracked SELECT.
            self.server_db = DB_UNKNOWN;
        }
        self.inflight_cmds -= entry.expected() as usize;
        self.inflight_bytes -= entry.bytes.len();
        if !entry.redirected.is_empty() {
            self.hand_back(&mut entry);
        }
        if entry.failures.is_empty() {
            if entry.outstanding {
                self.outstanding -= 1;
            }
            self.advance_ack(entry.tag);
            return Ok(());
        }
        if let EntryKind::Select(_) = entry.kind {
            // Not sent again as such: `enqueue` puts SELECTs where the resends need them.
            return Ok(());
        }
        if !entry.outstanding {
            entry.outstanding = true;
            self.outstanding += 1;
        }
        entry.attempts += 1;
        let resend = if matches!(entry.kind, EntryKind::Cmd(CmdKind::Transaction { .. })) {
            entry.discard_first = true;
            entry
        } else if entry.failures.len() == entry.n as usize {
            entry
        } else {
            // Only the commands that failed go again.
            let ranges = split_commands(&entry.bytes, entry.n as usize).ok_or_else(|| {
                TargetError::Invalid {
                    target: self.target.clone(),
                    message: format!(
                        "a Cmd's bytes do not hold the {} RESP commands it claims",
                        entry.n
                    ),
                }
            })?;
            let mut bytes = Vec::new();
            let mut failures = Vec::with_capacity(entry.failures.len());
            for (i, f) in entry.failures.iter().enumerate() {
                if let Some(r) = ranges.get(f.idx as usize) {
                    bytes.extend_from_slice(&entry.bytes[r.clone()]);
                    failures.push(Failure {
                        idx: i as u32,
                        ..f.clone()
                    });
                }
            }
            Entry {
                n: failures.len() as u32,
                bytes: Bytes::from(bytes),
                failures,
                ..entry
            }
        };
        self.resend.push(Entry { got: 0, ..resend });
        Ok(())
    }

    fn advance_ack(&mut self, tag: u64) {
        if self.outstanding == 0 {
            self.acked = self.acked.max(self.carry).max(tag);
            self.carry = 0;
        } else {
            self.carry = self.carry.max(tag);
        }
    }

    /// The resend procedure: drain, check, back off, send the failed commands again.
    async fn drive_retry(&mut self) -> Result<(), TargetError> {
        while self.retry_pending || self.resends_in_flight {
            while !self.inflight.is_empty() {
                self.read_some().await?;
            }
            // Everything in flight was answered: the connection is in the db of the last
            // SELECT that succeeded.
            self.sent_db = self.server_db;
            self.resends_in_flight = false;
            if !self.retry_pending {
                break;
            }
            let deadline = match self.resend_at {
                Some(at) => at,
                None => match self.prepare_resend() {
                    Ok(Some(at)) => at,
                    Ok(None) => continue,
                    Err(e) => return Err(self.stop(e)),
                },
            };
            tokio::time::sleep_until(deadline).await;
            self.resend_at = None;
            self.retry_pending = false;
            self.last_ok_by_key.clear();
            self.last_ok_any = 0;
            self.last_ok_unknown = 0;
            for mut entry in std::mem::take(&mut self.resend) {
                entry.failures.clear();
                self.stats.retried += u64::from(entry.n);
                self.enqueue(entry);
            }
            // Nothing new goes out until the resends are answered: a state that refuses
            // only some commands (OOM lets DEL, EXPIRE, LPOP through) would otherwise let
            // a new command overtake a resend that is refused again.
            self.resends_in_flight = true;
            self.write_out().await?;
        }
        Ok(())
    }

    /// After the drain: records reorders, gives up on commands past the retry limit,
    /// and returns when to resend (`None`: nothing left to resend).
    fn prepare_resend(&mut self) -> Result<Option<tokio::time::Instant>, TargetError> {
        let resend = std::mem::take(&mut self.resend);
        let mut keep = Vec::with_capacity(resend.len());
        for entry in resend {
            for f in &entry.failures {
                if self.reordered(&entry, f) {
                    let message = format!(
                        "{} was refused ({}) while a later write to the same key succeeded; \
                         resending it changes their order, so the key may differ from the source",
                        command_name(entry.command(f.idx)),
                        String::from_utf8_lossy(&f.text)
                    );
                    self.count_error("reorder");
                    self.judge_entry(&entry, Class::Skip, "reorder", message.as_bytes(), f.idx)?;
                }
            }
            if self.cfg.redirects
                && entry.attempts > READONLY_ATTEMPTS_IN_A_CLUSTER
                && entry.failures.iter().any(|f| f.class == "READONLY")
            {
                // A cluster node that turned replica (a failover): waiting does not help,
                // the slot map must be read again. Stop; the sync resumes from its failover
                // markers on the new masters.
                let e = TargetError::Unsupported {
                    target: self.target.clone(),
                    message: format!(
                        "the node answers READONLY after {} attempts: it is a replica now (a failover)",
                        entry.attempts
                    ),
                };
                return Err(self.stop(e));
            }
            let give_up = self
                .cfg
                .policy
                .max_retries
                .is_some_and(|m| entry.attempts > m);
            if give_up {
                for f in &entry.failures {
                    tracing::warn!(
                        target = %self.target,
                        class = f.class,
                        attempts = entry.attempts,
                        "giving up on a command after retries"
                    );
                    self.judge_entry(&entry, Class::Skip, f.class, &f.text, f.idx)?;
                }
                if entry.outstanding {
                    self.outstanding -= 1;
                }
                self.advance_ack(entry.tag);
            } else {
                keep.push(entry);
            }
        }
        if keep.is_empty() {
            self.retry_pending = false;
            return Ok(None);
        }
        let attempt = keep.iter().map(|e| e.attempts).max().unwrap_or(1);
        let delay = self.backoff(attempt);
        let first = &keep[0];
        let class = first.failures.first().map_or("?", |f| f.class);
        tracing::warn!(
            target = %self.target,
            class,
            commands = keep.iter().map(|e| e.n as usize).sum::<usize>(),
            attempt,
            delay_ms = delay.as_millis() as u64,
            "target refused commands for now; resending after a pause"
        );
        self.resend = keep;
        let at = tokio::time::Instant::now() + delay;
        self.resend_at = Some(at);
        Ok(Some(at))
    }

    /// Did a command on the same key succeed after the failure numbered `seq`?
    fn reordered(&self, entry: &Entry, f: &Failure) -> bool {
        let seq = f.seq;
        let key = match &entry.kind {
            EntryKind::Select(_) => return false,
            // Each command of a batch has its own key, its first argument.
            EntryKind::Cmd(CmdKind::Batch) => command_args(entry.command(f.idx))
                .get(1)
                .map(|k| Bytes::copy_from_slice(k)),
            EntryKind::Cmd(k) => k.key().cloned(),
        };
        match key.as_ref() {
            Some(k) => {
                self.last_ok_unknown > seq || self.last_ok_by_key.get(k).is_some_and(|&s| s > seq)
            }
            None => self.last_ok_any > seq,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let (min, max) = self.cfg.retry_backoff;
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        min.saturating_mul(factor).min(max)
    }

    /// Applies the policy to a non-retry error of command `idx` of the front entry.
    fn judge(
        &mut self,
        class: Class,
        name: &'static str,
        text: &[u8],
        idx: u32,
    ) -> Result<(), TargetError> {
        let Some(entry) = self.inflight.pop_front() else {
            return Ok(());
        };
        let r = self.judge_entry(&entry, class, name, text, idx);
        self.inflight.push_front(entry);
        r
    }

    fn judge_entry(
        &mut self,
        entry: &Entry,
        class: Class,
        name: &'static str,
        text: &[u8],
        idx: u32,
    ) -> Result<(), TargetError> {
        let policy = &self.cfg.policy;
        let skip = match class {
            Class::Retry | Class::Skip => policy.on_error == OnError::Skip,
            Class::BusyKey => match policy.busykey {
                Conflict::Skip => true,
                Conflict::Error => false,
                Conflict::Replace => policy.on_error == OnError::Skip,
            },
            Class::Redirect | Class::Fatal => false,
        };
        let command = entry.command(idx);
        if !skip {
            return Err(self.rejected_entry(entry, command, name, text));
        }
        let key = entry.key().cloned().or_else(|| {
            command_args(command)
                .get(1)
                .map(|k| Bytes::copy_from_slice(k))
        });
        let record = SkipRecord {
            class: name,
            command: command_name(command),
            key,
            db: entry.db,
            message: String::from_utf8_lossy(text).into_owned(),
            tag: entry.tag,
        };
        if class == Class::BusyKey && policy.busykey == Conflict::Skip {
            tracing::debug!(
                target = %self.target,
                key = %show_key(record.key.as_ref()),
                "key exists on the target; kept"
            );
        } else {
            tracing::warn!(
                target = %self.target,
                class = name,
                command = %record.command,
                key = %show_key(record.key.as_ref()),
                db = ?record.db,
                "skipped: {}",
                record.message
            );
        }
        self.stats.skipped_total += 1;
        if self.skipped.len() == SKIP_RECORDS_KEPT {
            self.skipped.pop_front();
        }
        self.skipped.push_back(record);
        Ok(())
    }

    fn rejected(&self, idx: u32, name: &'static str, text: &[u8]) -> TargetError {
        match self.inflight.front() {
            Some(entry) => self.rejected_entry(entry, entry.command(idx), name, text),
            None => TargetError::Protocol {
                target: self.target.clone(),
                offset: self.decoder.offset(),
                message: "no command in flight".into(),
            },
        }
    }

    fn rejected_entry(
        &self,
        entry: &Entry,
        command: &[u8],
        name: &'static str,
        text: &[u8],
    ) -> TargetError {
        let key = match &entry.kind {
            // A batch's command names its own key; an `MSET` of snapshot strings, its
            // first key and how many more.
            EntryKind::Cmd(CmdKind::Batch) => {
                let args = command_args(command);
                let first = args.get(1).map(|k| escape_bytes(k)).unwrap_or_default();
                if args
                    .first()
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"MSET"))
                    && args.len() > 3
                {
                    format!("{first} and {} more keys (one MSET)", (args.len() - 3) / 2)
                } else {
                    first
                }
            }
            _ => self.describe_key(entry),
        };
        let message = String::from_utf8_lossy(text).into_owned();
        if matches!(name, "NOAUTH" | "WRONGPASS" | "auth") {
            return TargetError::Auth {
                target: self.target.clone(),
                message,
                hint: hint(name),
            };
        }
        TargetError::Rejected(Box::new(Rejection {
            target: self.target.clone(),
            class: name,
            command: command_name(command),
            key: if key.is_empty() {
                String::new()
            } else {
                format!(" of key `{key}`")
            },
            message,
            hint: hint(name),
        }))
    }

    fn describe_key(&self, entry: &Entry) -> String {
        match entry.key() {
            Some(k) => escape_bytes(k),
            None => String::new(),
        }
    }
}

fn command_name(cmd: &[u8]) -> String {
    command_args(cmd)
        .first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_else(|| "command".into())
}

fn show_key(key: Option<&Bytes>) -> String {
    key.map(|k| escape_bytes(k)).unwrap_or_default()
}

/// Whether a transaction's commands include a `SELECT` (between `MULTI` and `EXEC`).
fn selects_inside(bytes: &[u8], n: u32) -> bool {
    split_commands(bytes, n as usize).is_some_and(|ranges| {
        ranges.into_iter().any(|r| {
            command_args(&bytes[r])
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case(b"SELECT"))
        })
    })
}

/// The error an `EXECABORT` names as its cause (`… because of: OOM …`), if any.
fn exec_abort_cause(text: &[u8]) -> Option<&[u8]> {
    const MARK: &[u8] = b"because of: ";
    if !text.starts_with(b"EXECABORT") {
        return None;
    }
    let at = text.windows(MARK.len()).position(|w| w == MARK)?;
    Some(&text[at + MARK.len()..]).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(input: &[u8]) -> Vec<Reply> {
        let mut dec = resp::Decoder::new(resp::DecoderConfig::default());
        let mut s = ReplyScan::default();
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((ev, used)) = dec.next(&input[pos..]).expect("valid") {
            if let Some(r) = s.event(ev) {
                out.push(r);
            }
            pos += used;
        }
        out
    }

    #[test]
    fn scans_replies_into_what_the_writer_needs() {
        let r = scan(
            b"+OK\r\n-ERR x\r\n:0\r\n*2\r\n:1\r\n-WRONGTYPE y\r\n$3\r\nabc\r\n+QUEUED\r\n*0\r\n",
        );
        assert_eq!(
            r,
            vec![
                Reply::Ok {
                    int: None,
                    queued: false
                },
                Reply::Error(b"ERR x".to_vec()),
                Reply::Ok {
                    int: Some(0),
                    queued: false
                },
                Reply::Nested(vec![b"WRONGTYPE y".to_vec()]),
                Reply::Ok {
                    int: None,
                    queued: false
                },
                Reply::Ok {
                    int: None,
                    queued: true
                },
                Reply::Ok {
                    int: None,
                    queued: false
                },
            ]
        );
    }
}
