//! The replica link: ferry connects to the source as a replica (`PSYNC`) and receives the RDB
//! snapshot, then the replication command stream, for as long as the sync runs.
//!
//! The link frames; it does not decode. What the consumer gets ([`SourceItem`]) is the RDB
//! bytes without their `$<len>` / `$EOF:<mark>` framing and the stream bytes with their
//! master offsets, in order. The pieces and why they are built this way:
//!
//! * **Handshake** (`handshake`): `PING`, `AUTH`, `REPLCONF listening-port`, `REPLCONF capa
//!   eof capa psync2`, `REPLCONF version`, `PSYNC`, one reply read before the next command,
//!   bare `\n` keepalives skipped (a master sends them while it delays the fork). We announce
//!   no `dual-channel` / `rdb-channel-repl` capability: the classic single-connection flow works
//!   against every server, and the others would need a second connection. We announce
//!   `version 9.1.0` because Valkey ≥ 9.1 otherwise picks RDB 11, which cannot hold hash
//!   field TTLs, and the fork then fails on every attempt.
//! * **Framing** (`Framer`): a pure state machine over the read buffer, unit-tested with every
//!   split of its input. With `$EOF:<40 bytes>` framing the end of the snapshot is only known
//!   when the mark has been seen, so the last 39 bytes received are withheld until more
//!   bytes show they are not the start of the mark. The mark may be split across reads and
//!   stream bytes may follow it in the same read; both were real bugs of other tools.
//! * **Drain at network speed** (the reader task): one task reads the socket continuously
//!   and pushes every item into the spool (`spool.rs`): RAM up to `memory_queue`, then
//!   capped files on disk. A master disconnects a replica that reads too slowly (its output
//!   buffer passes `client-output-buffer-limit replica`) and every later full sync then fails
//!   the same way; reading at network speed whatever the target does prevents that. A spool
//!   that reaches its cap stops the link with a clear error instead of stalling the source.
//! * **ACKs** (the writer task): `REPLCONF ACK <applied>` every `ack_interval`, where
//!   `applied` is what the *target* has applied (the consumer updates it), never merely what
//!   we received. The ACK is what `WAIT`, `min-replicas-to-write` and Valkey's slot migration
//!   trust, and what a restart resumes from; acknowledging received bytes would promise
//!   durability the target does not have. While a snapshot is being received or applied we
//!   send `\n` instead, as a loading replica does: it keeps the master's timeout at bay and
//!   claims nothing. The exception is the end of a diskless snapshot: the master starts the
//!   stream only on an ACK that arrives after it has reaped its fork, so from the mark until
//!   the first stream byte we ACK at once and then every 50 ms; meanwhile the master buffers
//!   the stream for us, against its output buffer limit. Those ACKs say 0 while the
//!   snapshot is still to be applied (a master keeps the largest ACK it saw, and any value
//!   starts the stream), as does the answer to a `GETACK` then.
//! * **Reconnect**: a connection that drops in the stream phase is re-established with
//!   `PSYNC <replid> <received+1>`: everything received is already queued for the consumer, so
//!   `+CONTINUE` loses and repeats nothing. A drop during the snapshot means a new full sync.
//!   The consumer sees `Reconnecting`, then `Continue` or `FullResync`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::{NetStream, NetWriteHalf};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::spool::{self, SpoolConfig, SpoolReceiver, SpoolSender};
use super::SourceError;
use crate::endpoint::Endpoint;
use crate::resp::{encode_command, parse_frame, Frame, Limits};
use crate::util::escape_bytes;

/// Length of the `$EOF:` mark of a diskless transfer (`RDB_EOF_MARK_SIZE`).
const EOF_MARK_LEN: usize = 40;
/// The socket is read into blocks of this size; items are slices of them, so a busy source
/// gives items of up to this size (fewer, larger spool records and consumer wake-ups).
const READ_BLOCK: usize = 512 << 10;
/// A new block is allocated when less than this is left in the current one.
const MIN_READ: usize = 32 << 10;
/// How long a refused partial resync waits for the target to apply what was received
/// before it retries from the last data command (see `retry_from_data_offset`).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// Longest `$…` transfer header line we wait for (`$EOF:` + 40 + CRLF is 47 bytes).
const MAX_HEADER_LINE: usize = 256;
/// ACK period from the end of a diskless snapshot until the stream flows.
const STREAM_START_ACK: Duration = Duration::from_millis(50);
/// How many bytes of bad input an error message shows.
const SHOWN_BYTES: usize = 120;

/// Defaults of [`ReplicaConfig`], also the config file's.
pub const DEFAULT_ANNOUNCE_VERSION: &str = "9.1.0";
pub const DEFAULT_SPOOL_CAP: u64 = 4 << 30;
pub const DEFAULT_MEMORY_QUEUE: usize = 16 << 20;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the source and how the link behaves. [`ReplicaConfig::new`] has the
/// defaults.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub endpoint: Endpoint,
    /// Sent as `REPLCONF listening-port`. 0 (the default): Sentinel discovers replicas from
    /// the master's `INFO` and must never see us as a reachable, promotable one.
    pub listening_port: u16,
    /// Sent as `REPLCONF version` (Valkey ≥ 9.1 then sends its native `VALKEY080` format;
    /// servers that do not know the option answer an error, which is ignored). "9.1.0".
    pub announce_version: String,
    /// Connecting, and each handshake reply before `PSYNC`. 10 s.
    pub connect_timeout: Duration,
    /// `CONFIG SET rdbcompression no` on the source (another connection) just before
    /// `PSYNC`, and `yes` again once the reply came (the source sends `+FULLRESYNC` in the
    /// event-loop turn in which it forks, or after, so it runs our `CONFIG SET yes` only
    /// once the child exists: the snapshot is written uncompressed). Only when it was
    /// `yes` and the source replicates diskless (else its own dump file would be written
    /// uncompressed); a source that refuses `CONFIG` gets a warning and its own setting.
    /// Off by default.
    pub uncompressed_snapshot: bool,
    /// A connection on which nothing arrives for this long is dropped and re-established
    /// (a master pings its replicas every 10 s; it sends `\n` while it prepares a snapshot).
    /// The master's own `repl-timeout` default: 60 s.
    pub read_timeout: Duration,
    /// `REPLCONF ACK` period. 1 s, as a real replica.
    pub ack_interval: Duration,
    /// First and longest pause between attempts (after `-LOADING`, `-NOMASTERLINK`, a failed
    /// connect, a dropped link); doubles on each failure. 100 ms .. 5 s.
    pub retry_backoff: (Duration, Duration),
    /// Where the spool files go. `$TMPDIR/ferry-spool-<pid>`.
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold on disk. 4 GiB.
    pub spool_cap: u64,
    /// Bytes of items kept in RAM before spilling to disk. 16 MiB.
    pub memory_queue: usize,
    /// Sent as `REPLCONF rdb-filter-only <value>` (Redis 7.0+, Valkey): `""` asks for an
    /// empty snapshot, so that only the live stream follows (`ferry reverse --mode
    /// stream`). A source that refuses it is a fatal error that says so. `None` (the
    /// default): not sent.
    pub rdb_filter_only: Option<String>,
    /// Set by the consumer: the offset after the last command that changed data (not
    /// PING, REPLCONF, PUBLISH, SELECT). When a partial resync at the received offset is
    /// refused (a new master after a forced failover lacks the old master's last pings
    /// and sentinel hellos), the link asks again from here before accepting a full resync.
    pub data_offset: Option<std::sync::Arc<AtomicU64>>,
}

impl ReplicaConfig {
    /// The defaults for `endpoint`.
    pub fn new(endpoint: Endpoint) -> ReplicaConfig {
        ReplicaConfig {
            endpoint,
            listening_port: 0,
            announce_version: DEFAULT_ANNOUNCE_VERSION.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            uncompressed_snapshot: false,
            read_timeout: Duration::from_secs(60),
            ack_interval: Duration::from_secs(1),
            retry_backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            spool_dir: std::env::temp_dir().join(format!("ferry-spool-{}", std::process::id())),
            spool_cap: DEFAULT_SPOOL_CAP,
            memory_queue: DEFAULT_MEMORY_QUEUE,
            rdb_filter_only: None,
            data_offset: None,
        }
    }
}

/// Where a previous run stopped: resume with `PSYNC <replid> <offset+1>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub replid: String,
    /// The last offset the target applied.
    pub offset: u64,
}

/// What the consumer receives, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceItem {
    /// `+FULLRESYNC`: an RDB snapshot follows; `offset` is the master offset at the snapshot.
    FullResync { replid: String, offset: u64 },
    /// `+CONTINUE` (after a reconnect or a requested resume): the stream continues after
    /// `offset` (the offset asked for minus one: the bytes up to it were already received).
    Continue { replid: String, offset: u64 },
    /// Bytes of the RDB snapshot, without framing (no `$len`, no `$EOF:` marks).
    Rdb(Bytes),
    /// The snapshot ended: all its bytes were delivered.
    RdbEnd,
    /// Bytes of the replication command stream; `offset` is the master offset before the
    /// first byte (so the offset after them is `offset + data.len()`).
    Stream { offset: u64, data: Bytes },
    /// The link dropped and is reconnecting (for logs and status).
    Reconnecting { reason: String },
}

/// A running replica link. Dropping it stops the link and removes the spool files, like
/// [`ReplicaLink::shutdown`] without waiting.
pub struct ReplicaLink {
    shared: Arc<Shared>,
    rx: SpoolReceiver,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    error: Option<SourceError>,
    finished: bool,
}

impl ReplicaLink {
    /// Connects, handshakes (retrying while the source answers `-LOADING` or
    /// `-NOMASTERLINK`) and starts the reader task; the first item is `FullResync` or, when
    /// `resume` was accepted, `Continue`. Fails if the source cannot be reached or refuses
    /// us (authentication, `PSYNC` not allowed).
    ///
    /// `applied` is the offset the target has applied, kept up to date by the consumer (it
    /// must be in the current replication id's offset space: after a `FullResync`, a value
    /// no larger than its offset until the stream is applied). The link acknowledges
    /// `min(applied, received)` every `ack_interval`.
    pub async fn start(
        cfg: ReplicaConfig,
        resume: Option<Resume>,
        applied: Arc<AtomicU64>,
    ) -> Result<ReplicaLink, SourceError> {
        let resume = resume.map(|r| (r.replid, r.offset));
        let mut backoff = Backoff::new(cfg.retry_backoff);
        let est = loop {
            match establish(&cfg, resume.as_ref()).await {
                Ok(est) => break est,
                Err(Failure::Busy(reason)) => {
                    let pause = backoff.next();
                    tracing::info!("{reason}; retrying in {pause:?}");
                    sleep(pause).await;
                }
                Err(Failure::Lost(reason)) => {
                    return Err(SourceError::Connect {
                        addr: cfg.endpoint.addr(),
                        reason,
                    })
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        };
        let (tx, rx) = spool::channel(SpoolConfig {
            dir: cfg.spool_dir.clone(),
            cap: cfg.spool_cap,
            memory: cfg.memory_queue,
        });
        let shared = Arc::new(Shared {
            applied,
            rdb_total: AtomicU64::new(0),
            received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            ack_request: AtomicU64::new(0),
            ack_notify: Notify::new(),
            fullsyncs_received: AtomicU64::new(0),
            fullsyncs_consumed: AtomicU64::new(0),
            consumer_in_rdb: AtomicBool::new(false),
            fatal: Mutex::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut reader = Reader {
            shared: shared.clone(),
            tx,
            stop: stop_rx,
            backoff: Backoff::new(cfg.retry_backoff),
            cfg,
        };
        reader.begin(&est)?;
        let task = tokio::spawn(reader.run(est));
        Ok(ReplicaLink {
            shared,
            rx,
            stop,
            task: Some(task),
            error: None,
            finished: false,
        })
    }

    /// The next item; waits for one. `None` after a fatal error ([`ReplicaLink::error`] says
    /// which); items still queued then are dropped (a restart resumes from the applied
    /// offset).
    pub async fn next(&mut self) -> Option<SourceItem> {
        if self.finished {
            return None;
        }
        if let Some(e) = self.shared.take_fatal() {
            return self.finish(Some(e));
        }
        match self.rx.recv().await {
            Ok(Some(item)) => {
                match &item {
                    SourceItem::FullResync { .. } => {
                        self.shared.consumer_in_rdb.store(true, Ordering::SeqCst);
                        self.shared
                            .fullsyncs_consumed
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    SourceItem::RdbEnd | SourceItem::Continue { .. } => {
                        self.shared.consumer_in_rdb.store(false, Ordering::SeqCst)
                    }
                    _ => {}
                }
                Some(item)
            }
            // The reader task ended: it stores its error before it drops the sender.
            Ok(None) => {
                let e = self.shared.take_fatal();
                self.finish(e)
            }
            Err(e) => self.finish(Some(e)),
        }
    }

    fn finish(&mut self, error: Option<SourceError>) -> Option<SourceItem> {
        self.error = error;
        self.finished = true;
        let _ = self.stop.send(true);
        None
    }

    /// Why [`ReplicaLink::next`] returned `None`, if it was an error.
    pub fn error(&self) -> Option<&SourceError> {
        self.error.as_ref()
    }

    /// Sends `REPLCONF ACK <offset>` now: the answer to a `REPLCONF GETACK` seen in the
    /// stream, with `offset` the applied offset *before* the GETACK's own bytes.
    pub fn ack_now(&self, offset: u64) {
        self.shared.ack_request.store(offset, Ordering::SeqCst);
        self.shared.ack_notify.notify_one();
    }

    /// Offset received from the source (master offset space): the snapshot's offset plus the
    /// stream bytes received since.
    pub fn received_offset(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// Bytes waiting for the consumer, in RAM and on disk.
    pub fn spooled_bytes(&self) -> u64 {
        self.rx.queued_bytes()
    }

    /// Bytes in spool files on disk now (what `spool_cap` bounds).
    pub fn spool_disk_bytes(&self) -> u64 {
        self.rx.disk_bytes()
    }

    /// A handle on the link's counters that another task can read while the consumer is
    /// busy (a status page must keep moving while the target is slow).
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            shared: self.shared.clone(),
            spool: self.rx.gauge(),
        }
    }

    /// Times the link dropped and reconnected (or is reconnecting).
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::SeqCst)
    }

    /// Stops the link, waits for its tasks to end and removes the spool files.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReplicaLink {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// State shared by the handle, the reader task and the writer task.
/// The link's counters, readable from any task. See [`ReplicaLink::stats`].
#[derive(Clone)]
pub struct LinkStats {
    shared: Arc<Shared>,
    spool: super::spool::SpoolGauge,
}

impl LinkStats {
    /// The current snapshot's size, when the source announced it (disk-based transfers).
    pub fn rdb_total(&self) -> Option<u64> {
        Some(self.shared.rdb_total.load(Ordering::SeqCst)).filter(|&n| n > 0)
    }
    pub fn received_offset(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }
    pub fn spooled_bytes(&self) -> u64 {
        self.spool.queued_bytes()
    }
    pub fn spool_disk_bytes(&self) -> u64 {
        self.spool.disk_bytes()
    }
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::SeqCst)
    }
}

struct Shared {
    applied: Arc<AtomicU64>,
    /// Size of the current snapshot when the source announced it (`$<len>`); 0 = unknown
    /// (diskless `$EOF:` transfers never say).
    rdb_total: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    /// The offset of the last `ack_now`, sent on `ack_notify`.
    ack_request: AtomicU64,
    ack_notify: Notify,
    /// `+FULLRESYNC` replies received / `FullResync` items handed to the consumer, and
    /// whether the consumer is between a `FullResync` and its `RdbEnd`: while a snapshot is
    /// not yet through the consumer, `applied` means nothing and we send `\n`, not ACKs.
    fullsyncs_received: AtomicU64,
    fullsyncs_consumed: AtomicU64,
    consumer_in_rdb: AtomicBool,
    /// Set by the reader task before it ends on an error.
    fatal: Mutex<Option<SourceError>>,
}

impl Shared {
    fn snapshot_pending(&self) -> bool {
        self.fullsyncs_received.load(Ordering::SeqCst)
            != self.fullsyncs_consumed.load(Ordering::SeqCst)
            || self.consumer_in_rdb.load(Ordering::SeqCst)
    }

    /// What we acknowledge: what the target applied, and never more than we received (an
    /// `applied` left over from before a full resync may belong to another offset space).
    /// While a snapshot is received or applied, 0: the target has not applied the snapshot
    /// offset yet, and a master keeps the largest ACK it saw (0 claims nothing, and still
    /// starts the stream after a diskless transfer).
    fn ack_value(&self) -> u64 {
        self.ack_claim(self.applied.load(Ordering::SeqCst))
    }

    /// `offset` as an ACK may claim it now (see [`Shared::ack_value`]).
    fn ack_claim(&self, offset: u64) -> u64 {
        if self.snapshot_pending() {
            return 0;
        }
        offset.min(self.received.load(Ordering::SeqCst))
    }

    fn take_fatal(&self) -> Option<SourceError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn set_fatal(&self, e: SourceError) {
        *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }
}

// ---------------------------------------------------------------------------------------
// The reader task: one connection after the other, each pumped until it drops.

struct Reader {
    cfg: ReplicaConfig,
    shared: Arc<Shared>,
    tx: SpoolSender,
    stop: watch::Receiver<bool>,
    /// Grows with every failed attempt and every connection lost before its stream
    /// started (a master that drops us during each full sync must not be hammered);
    /// reset when a connection reaches the stream.
    backoff: Backoff,
}

/// How a connection ended.
enum End {
    Stopped,
    Dropped(String),
    Fatal(SourceError),
}

impl Reader {
    async fn run(mut self, mut est: Established) {
        loop {
            let replid = est.replid.clone();
            let mut framer = est.framer;
            let reason = match self.pump(est.conn, &mut framer).await {
                End::Stopped => return,
                End::Fatal(e) => return self.shared.set_fatal(e),
                End::Dropped(reason) => reason,
            };
            // Everything received is queued, so the stream can continue right after it; a
            // snapshot cut short cannot be continued.
            let resume = framer.in_stream().then_some((replid, framer.offset));
            if framer.in_stream() {
                self.backoff = Backoff::new(self.cfg.retry_backoff);
            }
            tracing::warn!(
                source = %self.cfg.endpoint.addr(),
                "replica link dropped: {reason}; reconnecting with {}",
                match &resume {
                    Some((id, off)) => format!("PSYNC {id} {}", off + 1),
                    None => "a full resync".to_string(),
                }
            );
            self.shared.reconnects.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = self.tx.push(SourceItem::Reconnecting { reason }) {
                return self.shared.set_fatal(e);
            }
            if resume.is_none() && !self.pause().await {
                return;
            }
            est = match self.reconnect(resume).await {
                Ok(Some(est)) => est,
                Ok(None) => return,
                Err(e) => return self.shared.set_fatal(e),
            };
        }
    }

    /// Waits the next backoff pause; false if the link was stopped meanwhile.
    async fn pause(&mut self) -> bool {
        let pause = self.backoff.next();
        tokio::select! {
            biased;
            _ = stopped(&mut self.stop) => false,
            _ = sleep(pause) => true,
        }
    }

    /// Tries until a connection is established (`Some`), the link is stopped (`None`) or
    /// the source refuses us for good.
    async fn reconnect(
        &mut self,
        resume: Option<(String, u64)>,
    ) -> Result<Option<Established>, SourceError> {
        loop {
            let attempt = tokio::select! {
                biased;
                _ = stopped(&mut self.stop) => return Ok(None),
                r = establish(&self.cfg, resume.as_ref()) => r,
            };
            let attempt = match attempt {
                Ok(est) => self.retry_from_data_offset(est, resume.as_ref()).await,
                Err(f) => Err(f),
            };
            let reason = match attempt {
                Ok(est) => {
                    self.begin(&est)?;
                    return Ok(Some(est));
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Busy(reason)) => reason,
                Err(Failure::Lost(reason)) => {
                    format!(
                        "cannot connect to source {}: {reason}",
                        self.cfg.endpoint.addr()
                    )
                }
            };
            tracing::warn!("{reason}; retrying");
            if !self.pause().await {
                return Ok(None);
            }
        }
    }

    /// A full resync offered where a partial one was asked: when only non-data bytes
    /// follow the last data command, asks for a partial resync from there instead (the
    /// consumer rewinds to it on `Continue`). The first connection is dropped.
    async fn retry_from_data_offset(
        &mut self,
        est: Established,
        resume: Option<&(String, u64)>,
    ) -> Result<Established, Failure> {
        let (Some((id, off)), Some(d)) = (resume, self.cfg.data_offset.as_ref()) else {
            return Ok(est);
        };
        if est.framer.in_stream() {
            return Ok(est);
        }
        // `d` is the end of the last data command the *consumer* has seen. Only once the
        // target has applied everything received is it the last one received: data
        // commands still queued after it would be applied twice when the master sends
        // them again from `d`. A consumer that does not catch up in a short while means a
        // full resync, the safe way.
        let deadline = Instant::now() + CATCH_UP_WAIT;
        while self.shared.applied.load(Ordering::SeqCst) < *off {
            if *self.stop.borrow() {
                return Ok(est);
            }
            if Instant::now() >= deadline {
                tracing::info!(
                    offset = off,
                    applied = self.shared.applied.load(Ordering::SeqCst),
                    "partial resync refused, and the target has not applied all that was \
                     received: full resync"
                );
                return Ok(est);
            }
            sleep(Duration::from_millis(20)).await;
        }
        let d = d.load(Ordering::SeqCst);
        if d == 0 || d >= *off {
            return Ok(est);
        }
        tracing::info!(
            offset = off,
            data_offset = d,
            "partial resync refused; asking again from the last data command (only pings and \
             hellos follow it)"
        );
        drop(est.conn);
        establish(&self.cfg, Some(&(id.clone(), d))).await
    }

    /// Queues the first item of a new connection.
    fn begin(&mut self, est: &Established) -> Result<(), SourceError> {
        let (replid, offset) = (est.replid.clone(), est.framer.offset);
        let addr = self.cfg.endpoint.addr();
        let item = if est.framer.in_stream() {
            tracing::info!(source = %addr, %replid, offset, "partial resync accepted");
            SourceItem::Continue { replid, offset }
        } else {
            tracing::info!(source = %addr, %replid, offset, "full resync");
            self.shared
                .fullsyncs_received
                .fetch_add(1, Ordering::SeqCst);
            self.shared.rdb_total.store(0, Ordering::SeqCst);
            SourceItem::FullResync { replid, offset }
        };
        self.shared.received.store(offset, Ordering::SeqCst);
        self.tx.push(item)
    }

    /// Reads one connection until it drops: frames what arrives and queues it.
    async fn pump(&mut self, conn: Conn, framer: &mut Framer) -> End {
        let Conn {
            stream,
            mut buf,
            addr,
            ..
        } = conn;
        let (mut rd, wr) = stream.into_split();
        // The first ACK after a diskless snapshot goes through this channel; closing it (when
        // this function returns) also ends the writer task.
        let (first_ack, first_ack_rx) = mpsc::channel::<u64>(1);
        let awaiting_stream = Arc::new(AtomicBool::new(false));
        let _writer = AbortOnDrop(tokio::spawn(write_loop(
            wr,
            self.shared.clone(),
            first_ack_rx,
            awaiting_stream.clone(),
            self.cfg.ack_interval,
        )));
        let mut pieces = Vec::new();
        loop {
            // The handshake may have read past the PSYNC reply: frame what is buffered first.
            let framed = framer.feed(&mut buf, &mut pieces);
            if let Some(total) = framer.announced.take() {
                self.shared.rdb_total.store(total, Ordering::SeqCst);
            }
            if let Err(e) = framed {
                return match e {
                    FrameError::MasterError(text) => {
                        End::Dropped(format!("source {addr} aborted the full sync: {text}"))
                    }
                    FrameError::BadHeader(bytes) => End::Fatal(SourceError::Protocol {
                        addr,
                        what: "a malformed RDB transfer header".into(),
                        bytes: show(&bytes),
                    }),
                };
            }
            for piece in pieces.drain(..) {
                let item = match piece {
                    Piece::Rdb(data) => SourceItem::Rdb(data),
                    Piece::RdbEnd { diskless } => {
                        if diskless {
                            // The master holds the stream back until an ACK arrives after
                            // it has put us online (`repl_start_cmd_stream_on_ack`). Any
                            // value starts it, so this one too says only what the target
                            // has applied: 0 while it still applies the snapshot.
                            awaiting_stream.store(true, Ordering::SeqCst);
                            let _ = first_ack.try_send(self.shared.ack_value());
                        }
                        SourceItem::RdbEnd
                    }
                    Piece::Stream { offset, data } => {
                        awaiting_stream.store(false, Ordering::SeqCst);
                        let end = offset + data.len() as u64;
                        self.shared.received.store(end, Ordering::SeqCst);
                        SourceItem::Stream { offset, data }
                    }
                };
                if let Err(e) = self.tx.push(item) {
                    return End::Fatal(e);
                }
            }
            if buf.capacity() - buf.len() < MIN_READ {
                buf.reserve(READ_BLOCK);
            }
            let read = tokio::select! {
                biased;
                _ = stopped(&mut self.stop) => return End::Stopped,
                r = timeout(self.cfg.read_timeout, rd.read_buf(&mut buf)) => r,
            };
            match read {
                Ok(Ok(0)) => return End::Dropped(format!("source {addr} closed the connection")),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return End::Dropped(format!("reading from source {addr}: {e}")),
                Err(_) => {
                    return End::Dropped(format!(
                        "no data from source {addr} for {:?}",
                        self.cfg.read_timeout
                    ))
                }
            }
        }
    }
}

/// Resolves once the link is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Aborts a task when dropped (a plain `JoinHandle` detaches instead).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The writer task of one connection: keepalives and ACKs. Ends when the reader closes the
/// `first_ack` channel or a write fails (the reader then sees the connection drop too).
///
/// `awaiting_stream` is set from the end of a diskless snapshot until the first stream
/// byte: the master ignores an ACK that arrives before it has reaped its fork and put us
/// online, so until the stream flows every tick is an ACK (a `\n` would not start it, and a
/// master that buffers the stream for us while the consumer applies a long snapshot would
/// eventually drop us for its output buffer).
async fn write_loop(
    mut wr: NetWriteHalf,
    shared: Arc<Shared>,
    mut first_ack: mpsc::Receiver<u64>,
    awaiting_stream: Arc<AtomicBool>,
    every: Duration,
) {
    let mut next_tick = Instant::now();
    let mut out = Vec::with_capacity(64);
    loop {
        out.clear();
        tokio::select! {
            msg = first_ack.recv() => match msg {
                Some(offset) => ack(&mut out, offset),
                None => return,
            },
            _ = shared.ack_notify.notified() => {
                // The GETACK answered may have come on an earlier connection (the consumer
                // reads from the spool): clamped like any ACK.
                ack(&mut out, shared.ack_claim(shared.ack_request.load(Ordering::SeqCst)))
            }
            _ = sleep_until(next_tick) => {
                let awaiting = awaiting_stream.load(Ordering::SeqCst);
                if shared.snapshot_pending() && !awaiting {
                    // What a loading replica sends (`replicationSendNewlineToMaster`): it
                    // refreshes the master's last-ACK time and claims no offset. As
                    // `\r\n`, not the real replica's `\n`: Redis 3.0's inline parser skips
                    // two bytes after an empty line, and would eat the `*` of an ACK that
                    // reaches its buffer together with a bare `\n`.
                    out.extend_from_slice(b"\r\n");
                } else {
                    ack(&mut out, shared.ack_value());
                }
                // The master buffers the stream for us until an ACK lands after it has
                // reaped the fork (its cron runs every 100 ms): do not leave it waiting a
                // whole `every`.
                let period = if awaiting { every.min(STREAM_START_ACK) } else { every };
                next_tick = Instant::now() + period;
            }
        }
        // (the flush sends what TLS may still hold of it)
        if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
}

fn ack(out: &mut Vec<u8>, offset: u64) {
    let offset = offset.to_string();
    encode_command(out, &[&b"REPLCONF"[..], b"ACK", offset.as_bytes()]);
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new((first, max): (Duration, Duration)) -> Backoff {
        Backoff { next: first, max }
    }

    fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

// ---------------------------------------------------------------------------------------
// Connecting and the handshake.

/// Why an attempt to connect did not give a link.
enum Failure {
    /// The source asks us to come back later (`-LOADING`, `-NOMASTERLINK`).
    Busy(String),
    /// No usable connection: refused, timed out, closed during the handshake. Fatal for the
    /// first connection (most likely a wrong address), retried later on.
    Lost(String),
    /// The source refuses us for good or speaks something we do not understand.
    Fatal(SourceError),
}

/// A connection during the handshake: the socket and what was read but not yet used.
struct Conn {
    stream: NetStream,
    buf: BytesMut,
    addr: String,
    /// The server connected to (a sentinel endpoint resolved to its master).
    ep: Endpoint,
}

/// A connection past `PSYNC`, ready to be pumped. The framer starts in the stream phase
/// after `+CONTINUE` and before the snapshot after `+FULLRESYNC`.
struct Established {
    conn: Conn,
    replid: String,
    framer: Framer,
}

/// The reply to `PSYNC`.
#[derive(Debug, PartialEq, Eq)]
enum PsyncReply {
    FullResync {
        replid: String,
        offset: u64,
    },
    /// `+CONTINUE <replid>` (PSYNC2) or `+CONTINUE` (older masters: same replid).
    Continue {
        replid: Option<String>,
    },
}

/// Connects, handshakes and sends `PSYNC <replid> <offset+1>` (or `PSYNC ? -1`).
async fn establish(
    cfg: &ReplicaConfig,
    resume: Option<&(String, u64)>,
) -> Result<Established, Failure> {
    let mut conn = connect(cfg).await?;
    let psync = resume.map(|(id, offset)| (id.as_str(), offset + 1));
    match handshake(&mut conn, cfg, psync).await? {
        PsyncReply::FullResync { replid, offset } => Ok(Established {
            conn,
            replid,
            framer: Framer::full_resync(offset),
        }),
        PsyncReply::Continue { replid } => {
            let Some((asked_id, offset)) = resume else {
                return Err(Failure::Fatal(SourceError::Protocol {
                    addr: conn.addr,
                    what: "+CONTINUE to `PSYNC ? -1`".into(),
                    bytes: "+CONTINUE".into(),
                }));
            };
            // A new replid (after a failover) replaces ours; the offsets carry on.
            let replid = replid.unwrap_or_else(|| asked_id.clone());
            Ok(Established {
                conn,
                replid,
                framer: Framer::stream(*offset),
            })
        }
    }
}

async fn connect(cfg: &ReplicaConfig) -> Result<Conn, Failure> {
    // A sentinel endpoint: the current master, asked again on every (re)connect.
    let ep = crate::sentinel::resolve(&cfg.endpoint, cfg.connect_timeout)
        .await
        .map_err(Failure::Lost)?;
    let addr = ep.addr();
    let stream = match timeout(cfg.connect_timeout, crate::net::connect(&ep)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Failure::Lost(e.to_string())),
        Err(_) => {
            return Err(Failure::Lost(format!(
                "no answer within {:?}",
                cfg.connect_timeout
            )))
        }
    };
    // ACKs are tiny and should leave at once.
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        buf: BytesMut::with_capacity(16 << 10),
        addr,
        ep,
    })
}

/// The classic single-connection replica handshake, ending with the `PSYNC` reply.
/// `psync` is `(replid, offset)` to ask for, or `None` for a full sync.
async fn handshake(
    conn: &mut Conn,
    cfg: &ReplicaConfig,
    psync: Option<(&str, u64)>,
) -> Result<PsyncReply, Failure> {
    let t = cfg.connect_timeout;
    let ep = &cfg.endpoint;

    match conn.command(&[b"PING"], t).await? {
        Frame::Simple(_) => {}
        Frame::Error(e) if is_busy(&e) => return Err(Failure::Busy(conn.busy("PING", &e))),
        // Refused until AUTH, which comes next.
        Frame::Error(e) if is_auth_needed(&e) && ep.password.is_some() => {}
        Frame::Error(e) if is_auth_needed(&e) => {
            return Err(Failure::Fatal(SourceError::NoPassword {
                addr: conn.addr.clone(),
                reply: show(&e),
            }))
        }
        other => return Err(conn.unexpected("PING", &other)),
    }

    if let Some(password) = &ep.password {
        let reply = match &ep.user {
            Some(user) => {
                conn.command(&[b"AUTH", user.as_bytes(), password.as_bytes()], t)
                    .await?
            }
            None => conn.command(&[b"AUTH", password.as_bytes()], t).await?,
        };
        match reply {
            Frame::Simple(_) => {}
            Frame::Error(e) => {
                return Err(Failure::Fatal(SourceError::Auth {
                    addr: conn.addr.clone(),
                    as_user: ep
                        .user
                        .as_ref()
                        .map(|u| format!(" as user `{u}`"))
                        .unwrap_or_default(),
                    reply: show(&e),
                }))
            }
            other => return Err(conn.unexpected("AUTH", &other)),
        }
    }

    let port = cfg.listening_port.to_string();
    let version = cfg.announce_version.as_bytes();
    // Old masters refuse options they do not know (`capa` before 2.8.18, `version` before
    // Valkey 8.0): those errors are expected and harmless.
    let optional: [&[&[u8]]; 3] = [
        &[b"REPLCONF", b"listening-port", port.as_bytes()],
        &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"],
        &[b"REPLCONF", b"version", version],
    ];
    for args in optional {
        match conn.command(args, t).await? {
            Frame::Simple(_) => {}
            Frame::Error(e) if is_busy(&e) => return Err(Failure::Busy(conn.busy("REPLCONF", &e))),
            Frame::Error(e) => tracing::debug!(
                source = %conn.addr,
                "ignoring the answer to REPLCONF {}: {}",
                String::from_utf8_lossy(args[1]),
                show(&e)
            ),
            other => return Err(conn.unexpected("REPLCONF", &other)),
        }
    }

    if let Some(filter) = &cfg.rdb_filter_only {
        // After `capa eof`: the source requires it for a filtered snapshot.
        match conn
            .command(&[b"REPLCONF", b"rdb-filter-only", filter.as_bytes()], t)
            .await?
        {
            Frame::Simple(_) => {}
            Frame::Error(e) if is_busy(&e) => return Err(Failure::Busy(conn.busy("REPLCONF", &e))),
            Frame::Error(e) => {
                return Err(Failure::Fatal(SourceError::Refused {
                    addr: conn.addr.clone(),
                    command: "REPLCONF rdb-filter-only".into(),
                    reply: show(&e),
                    hint: "; this source cannot send an empty snapshot (it needs Redis 7.0+ \
                           or Valkey): copy everything instead (`ferry reverse --mode full`)"
                        .into(),
                }))
            }
            other => return Err(conn.unexpected("REPLCONF", &other)),
        }
    }

    let (id, offset) = match psync {
        Some((id, offset)) => (id.to_string(), offset.to_string()),
        None => ("?".to_string(), "-1".to_string()),
    };
    // Put back however this ends: on the reply, or (the handshake abandoned by a stop)
    // from a task the guard's drop spawns.
    let compression_back = if cfg.uncompressed_snapshot && compression_off(&conn.ep, t).await {
        Some(CompressionBack {
            ep: Some(conn.ep.clone()),
            timeout: t,
        })
    } else {
        None
    };
    // The master may prepare the snapshot for a while (`repl-diskless-sync-delay`, a
    // BGSAVE in progress); it sends `\n` meanwhile, which counts as progress.
    let reply = conn
        .command(
            &[b"PSYNC", id.as_bytes(), offset.as_bytes()],
            cfg.read_timeout,
        )
        .await;
    if let Some(back) = compression_back {
        back.now().await;
    }
    let reply = reply?;
    match reply {
        Frame::Simple(line) => parse_psync_reply(&line).ok_or_else(|| {
            Failure::Fatal(SourceError::Protocol {
                addr: conn.addr.clone(),
                what: "an unexpected reply to PSYNC".into(),
                bytes: show(&[b"+", line.as_slice()].concat()),
            })
        }),
        Frame::Error(e) if is_busy(&e) => Err(Failure::Busy(conn.busy("PSYNC", &e))),
        Frame::Error(e) => {
            let hint = if e.starts_with(b"NOPERM") {
                "; the source user needs at least +psync +replconf +ping".to_string()
            } else if e.starts_with(b"ERR unknown command") {
                "; the source does not offer replication (use a SCAN-based source)".to_string()
            } else {
                String::new()
            };
            Err(Failure::Fatal(SourceError::Refused {
                addr: conn.addr.clone(),
                command: "PSYNC".into(),
                reply: show(&e),
                hint,
            }))
        }
        other => Err(conn.unexpected("PSYNC", &other)),
    }
}

/// `rdbcompression no` on the source if it was `yes` (see
/// [`ReplicaConfig::uncompressed_snapshot`]); whether it was changed. A refusal is a
/// warning: the snapshot then comes as the source writes it.
async fn compression_off(ep: &Endpoint, t: Duration) -> bool {
    let get: &[&[u8]] = &[b"CONFIG", b"GET", b"rdbcompression"];
    let set: &[&[u8]] = &[b"CONFIG", b"SET", b"rdbcompression", b"no"];
    let was_on = match crate::admin::command(ep, get, t).await {
        // RESP2 `[name, value]`; RESP3 would be a map, which admin does not ask for.
        Ok(Frame::Array(a)) => a
            .get(1)
            .and_then(Frame::as_bytes)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"yes")),
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(
                source = %ep.addr(),
                "uncompressed_snapshot: cannot read rdbcompression ({e}); the snapshot comes \
                 as the source writes it"
            );
            return false;
        }
    };
    if !was_on {
        return false;
    }
    // A source that replicates through a file writes that snapshot to its own `dbfilename`:
    // uncompressed, its dump would grow (by the data's compression ratio) and stay so until
    // its next save. Only a diskless source (Redis 7's default) is asked.
    let diskless: &[&[u8]] = &[b"CONFIG", b"GET", b"repl-diskless-sync"];
    let diskless = match crate::admin::command(ep, diskless, t).await {
        Ok(Frame::Array(a)) => a.get(1).and_then(Frame::as_bytes).map(|v| v.to_vec()),
        _ => None,
    };
    match diskless.as_deref() {
        Some(v) if v.eq_ignore_ascii_case(b"yes") => {}
        Some(_) => {
            tracing::warn!(
                source = %ep.addr(),
                "uncompressed_snapshot: the source writes replica snapshots to its own dump \
                 file (repl-diskless-sync is not `yes`), which must stay compressed: the \
                 snapshot comes as the source writes it"
            );
            return false;
        }
        None => {
            tracing::warn!(
                source = %ep.addr(),
                "uncompressed_snapshot: cannot read repl-diskless-sync, so the source may \
                 write replica snapshots to its own dump file, which must stay compressed: \
                 the snapshot comes as the source writes it"
            );
            return false;
        }
    }
    match crate::admin::command(ep, set, t).await {
        Ok(_) => {
            tracing::warn!(
                source = %ep.addr(),
                "uncompressed_snapshot: the source's rdbcompression is `no` until it forks for \
                 ferry's PSYNC, then `yes` again; should ferry stop before that, run \
                 CONFIG SET rdbcompression yes on it"
            );
            true
        }
        Err(e) => {
            tracing::warn!(
                source = %ep.addr(),
                "uncompressed_snapshot: cannot set rdbcompression ({e}); the snapshot comes \
                 as the source writes it"
            );
            false
        }
    }
}

/// Puts `rdbcompression yes` back once: [`CompressionBack::now`], or when dropped before
/// that (a handshake abandoned while waiting for the `PSYNC` reply), from a spawned task.
struct CompressionBack {
    ep: Option<Endpoint>,
    timeout: Duration,
}

impl CompressionBack {
    async fn now(mut self) {
        if let Some(ep) = &self.ep {
            compression_back(ep, self.timeout).await;
        }
        // Only once done: cancelled during the call, the drop tries again.
        self.ep = None;
    }
}

impl Drop for CompressionBack {
    fn drop(&mut self) {
        let Some(ep) = self.ep.take() else {
            return;
        };
        let timeout = self.timeout;
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move { compression_back(&ep, timeout).await });
            }
            Err(_) => tracing::error!(
                source = %ep.addr(),
                "uncompressed_snapshot: the source's rdbcompression may still be `no`; run \
                 CONFIG SET rdbcompression yes on it"
            ),
        }
    }
}

/// Puts `rdbcompression yes` back after [`compression_off`]; a failure is an error in the
/// log that says what to run.
async fn compression_back(ep: &Endpoint, t: Duration) {
    let set: &[&[u8]] = &[b"CONFIG", b"SET", b"rdbcompression", b"yes"];
    match crate::admin::command(ep, set, t).await {
        Ok(_) => {
            tracing::info!(
                source = %ep.addr(),
                "uncompressed_snapshot: the source's rdbcompression is `yes` again"
            )
        }
        Err(e) => tracing::error!(
            source = %ep.addr(),
            "uncompressed_snapshot: could not set the source's rdbcompression back to `yes` \
             ({e}); run CONFIG SET rdbcompression yes on it"
        ),
    }
}

/// `FULLRESYNC <replid> <offset>` or `CONTINUE [<replid>]` (the text of a `+` reply).
fn parse_psync_reply(line: &[u8]) -> Option<PsyncReply> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    match words.next()? {
        "FULLRESYNC" => {
            let replid = words.next()?.to_string();
            let offset = words.next()?.parse::<u64>().ok()?;
            words
                .next()
                .is_none()
                .then_some(PsyncReply::FullResync { replid, offset })
        }
        "CONTINUE" => {
            let replid = words.next().map(str::to_string);
            words
                .next()
                .is_none()
                .then_some(PsyncReply::Continue { replid })
        }
        _ => None,
    }
}

/// `-LOADING` (the source is loading its data) and `-NOMASTERLINK` (it is a replica without
/// a master, or failing over): come back later.
fn is_busy(error: &[u8]) -> bool {
    error.starts_with(b"LOADING") || error.starts_with(b"NOMASTERLINK")
}

/// The answers to PING that mean "authenticate first".
fn is_auth_needed(error: &[u8]) -> bool {
    error.starts_with(b"NOAUTH")
        || error.starts_with(b"NOPERM")
        || error.starts_with(b"ERR operation not permitted")
}

impl Conn {
    /// Sends a command and reads its reply; `idle` bounds each wait for bytes.
    async fn command(&mut self, args: &[&[u8]], idle: Duration) -> Result<Frame, Failure> {
        let name = String::from_utf8_lossy(args[0]).into_owned();
        let mut out = Vec::new();
        encode_command(&mut out, args);
        let send = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        match timeout(idle, send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Failure::Lost(format!("sending {name}: {e}"))),
            Err(_) => return Err(Failure::Lost(format!("sending {name} took over {idle:?}"))),
        }
        self.reply(&name, idle).await
    }

    /// One reply, skipping the bare `\n` keepalives that may come first.
    async fn reply(&mut self, command: &str, idle: Duration) -> Result<Frame, Failure> {
        // Replies in a handshake are short lines; anything long is not a reply we expect.
        let limits = Limits {
            max_bulk_len: 64 << 10,
            max_array_len: 64,
            max_depth: 4,
            max_line: 4 << 10,
        };
        loop {
            let keepalives = self.buf.iter().take_while(|&&b| b == b'\n').count();
            self.buf.advance(keepalives);
            if !self.buf.is_empty() {
                match parse_frame(&self.buf, &limits) {
                    Ok(Some((frame, used))) => {
                        self.buf.advance(used);
                        return Ok(frame);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        return Err(Failure::Fatal(SourceError::Protocol {
                            addr: self.addr.clone(),
                            what: format!("a malformed reply to {command}"),
                            bytes: show(&self.buf),
                        }))
                    }
                }
            }
            self.buf.reserve(4 << 10);
            match timeout(idle, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => {
                    return Err(Failure::Lost(format!(
                        "the connection was closed while waiting for the reply to {command}"
                    )))
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(Failure::Lost(format!(
                        "reading the reply to {command}: {e}"
                    )))
                }
                Err(_) => return Err(Failure::Lost(format!("no reply to {command} in {idle:?}"))),
            }
        }
    }

    fn busy(&self, command: &str, error: &[u8]) -> String {
        format!(
            "source {} answered {command} with `{}`",
            self.addr,
            show(error)
        )
    }

    fn unexpected(&self, command: &str, reply: &Frame) -> Failure {
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        Failure::Fatal(SourceError::Protocol {
            addr: self.addr.clone(),
            what: format!("an unexpected reply to {command}"),
            bytes: show(&bytes),
        })
    }
}

/// Bytes for an error message: escaped, cut after [`SHOWN_BYTES`].
fn show(bytes: &[u8]) -> String {
    if bytes.len() <= SHOWN_BYTES {
        escape_bytes(bytes)
    } else {
        format!(
            "{}… ({} bytes)",
            escape_bytes(&bytes[..SHOWN_BYTES]),
            bytes.len()
        )
    }
}

// ---------------------------------------------------------------------------------------
// Framing: a pure state machine over the read buffer.

/// Where the bytes after the PSYNC reply are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// After `+FULLRESYNC`: `\n` keepalives, then `$<len>\r\n` or `$EOF:<mark>\r\n`.
    Header,
    /// `$<len>` framing: this many RDB bytes are still to come. No CRLF follows them; the
    /// stream starts on the very next byte.
    Sized { left: u64 },
    /// `$EOF:` framing: the RDB ends with the same 40 bytes as the header's.
    Marked { mark: [u8; EOF_MARK_LEN] },
    /// The command stream.
    Stream,
}

/// What the framer found, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Rdb(Bytes),
    /// `diskless`: the `$EOF:` framing, after which the master waits for an ACK.
    RdbEnd {
        diskless: bool,
    },
    Stream {
        offset: u64,
        data: Bytes,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    /// The master sent an error line instead of the transfer header (`-ERR BGSAVE failed,
    /// replication can't continue`); it closes the connection after it.
    MasterError(String),
    /// A header we do not understand (the bytes).
    BadHeader(Vec<u8>),
}

#[derive(Debug)]
struct Framer {
    phase: Phase,
    /// The master offset of the next stream byte (the snapshot's offset until the stream
    /// starts). `\n` keepalives before the header are not stream bytes and do not count.
    offset: u64,
    /// The snapshot size a `$<len>` header announced, until the reader takes it.
    announced: Option<u64>,
}

impl Framer {
    /// After `+FULLRESYNC <replid> <offset>`.
    fn full_resync(offset: u64) -> Framer {
        Framer {
            phase: Phase::Header,
            offset,
            announced: None,
        }
    }

    /// After `+CONTINUE`: the stream resumes after `offset`.
    fn stream(offset: u64) -> Framer {
        Framer {
            phase: Phase::Stream,
            offset,
            announced: None,
        }
    }

    fn in_stream(&self) -> bool {
        self.phase == Phase::Stream
    }

    /// Consumes what it can from `buf` and appends the pieces to `out`. Bytes that may
    /// still turn out to be the end mark stay in `buf` for the next call.
    fn feed(&mut self, buf: &mut BytesMut, out: &mut Vec<Piece>) -> Result<(), FrameError> {
        loop {
            match self.phase {
                Phase::Header => {
                    let keepalives = buf.iter().take_while(|&&b| b == b'\n').count();
                    buf.advance(keepalives);
                    if let Some(&first) = buf.first() {
                        if first != b'$' && first != b'-' {
                            return Err(FrameError::BadHeader(buf.to_vec()));
                        }
                    }
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_HEADER_LINE {
                            return Err(FrameError::BadHeader(buf.to_vec()));
                        }
                        return Ok(());
                    };
                    let line = buf.split_to(end + 2);
                    self.phase = parse_transfer_header(&line[..end])?;
                    if let Phase::Sized { left } = self.phase {
                        self.announced = Some(left);
                    }
                }
                Phase::Sized { left } => {
                    if left == 0 {
                        out.push(Piece::RdbEnd { diskless: false });
                        self.phase = Phase::Stream;
                        continue;
                    }
                    if buf.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(buf.len() as u64);
                    out.push(Piece::Rdb(buf.split_to(n as usize).freeze()));
                    self.phase = Phase::Sized { left: left - n };
                }
                Phase::Marked { mark } => match find(buf, &mark) {
                    Some(at) => {
                        if at > 0 {
                            out.push(Piece::Rdb(buf.split_to(at).freeze()));
                        }
                        buf.advance(EOF_MARK_LEN);
                        out.push(Piece::RdbEnd { diskless: true });
                        self.phase = Phase::Stream;
                    }
                    None => {
                        // The mark is not in `buf`, but its first 39 bytes may end it:
                        // withhold those until the next read tells.
                        let withheld = EOF_MARK_LEN - 1;
                        if buf.len() > withheld {
                            let n = buf.len() - withheld;
                            out.push(Piece::Rdb(buf.split_to(n).freeze()));
                        }
                        return Ok(());
                    }
                },
                Phase::Stream => {
                    if !buf.is_empty() {
                        let data = buf.split().freeze();
                        let offset = self.offset;
                        self.offset += data.len() as u64;
                        out.push(Piece::Stream { offset, data });
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// `$EOF:<40 bytes>`, `$<len>` or `-<error>` (a line without its CRLF).
fn parse_transfer_header(line: &[u8]) -> Result<Phase, FrameError> {
    if let Some(mark) = line.strip_prefix(b"$EOF:") {
        let mark: [u8; EOF_MARK_LEN] = mark
            .try_into()
            .map_err(|_| FrameError::BadHeader(line.to_vec()))?;
        return Ok(Phase::Marked { mark });
    }
    if let Some(len) = line.strip_prefix(b"$") {
        let left = std::str::from_utf8(len)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| FrameError::BadHeader(line.to_vec()))?;
        return Ok(Phase::Sized { left });
    }
    if let Some(error) = line.strip_prefix(b"-") {
        return Err(FrameError::MasterError(show(error)));
    }
    Err(FrameError::BadHeader(line.to_vec()))
}

/// Where `needle` (non-empty) first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    // A byte-at-a-time scan for the mark's first character stopped every 16 bytes in
    // hex-like values (the mark is 40 hex characters): 11 % of ferry's CPU on small keys.
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

    /// Feeds `input` in pieces cut at `cuts`, like reads of a socket would deliver it, and
    /// merges adjacent pieces of the same kind (checking stream offsets are contiguous).
    fn run(framer: &mut Framer, input: &[u8], cuts: &[usize]) -> Result<Vec<Piece>, FrameError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut prev = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            buf.extend_from_slice(&input[prev..cut]);
            prev = cut;
            framer.feed(&mut buf, &mut out)?;
        }
        let mut merged: Vec<Piece> = Vec::new();
        for piece in out {
            match (merged.last_mut(), piece) {
                (Some(Piece::Rdb(a)), Piece::Rdb(b)) => {
                    *a = [a.as_ref(), b.as_ref()].concat().into()
                }
                (
                    Some(Piece::Stream { offset, data }),
                    Piece::Stream {
                        offset: o2,
                        data: d2,
                    },
                ) => {
                    assert_eq!(*offset + data.len() as u64, o2, "stream offsets contiguous");
                    *data = [data.as_ref(), d2.as_ref()].concat().into();
                }
                (_, piece) => merged.push(piece),
            }
        }
        Ok(merged)
    }

    fn diskless_input(rdb: &[u8], stream: &[u8]) -> Vec<u8> {
        let mut v = b"\n\n$EOF:".to_vec();
        v.extend_from_slice(MARK);
        v.extend_from_slice(b"\r\n");
        v.extend_from_slice(rdb);
        v.extend_from_slice(MARK);
        v.extend_from_slice(stream);
        v
    }

    const STREAM: &[u8] =
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\n1\r\n";

    fn expected(rdb: &[u8], diskless: bool) -> Vec<Piece> {
        let mut v = vec![];
        if !rdb.is_empty() {
            v.push(Piece::Rdb(Bytes::copy_from_slice(rdb)));
        }
        v.push(Piece::RdbEnd { diskless });
        v.push(Piece::Stream {
            offset: 1000,
            data: Bytes::from_static(STREAM),
        });
        v
    }

    #[test]
    fn finds_the_eof_mark_in_every_split_of_two_and_three_reads() {
        // The RDB ends with a prefix of the mark and contains another: only the whole mark
        // ends it.
        let mut rdb = b"REDIS0011\xfa\x09redis-ver".to_vec();
        rdb.extend_from_slice(&MARK[..39]);
        rdb.extend_from_slice(b"\xff12345678");
        rdb.extend_from_slice(&MARK[..20]);
        let input = diskless_input(&rdb, STREAM);
        let want = expected(&rdb, true);
        for a in 0..=input.len() {
            let got = run(&mut Framer::full_resync(1000), &input, &[a]).unwrap();
            assert_eq!(got, want, "cut at {a}");
        }
        for a in (0..=input.len()).step_by(3) {
            for b in (a..=input.len()).step_by(5) {
                let got = run(&mut Framer::full_resync(1000), &input, &[a, b]).unwrap();
                assert_eq!(got, want, "cuts at {a}, {b}");
            }
        }
        // One byte per read.
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            run(&mut Framer::full_resync(1000), &input, &cuts).unwrap(),
            want
        );
    }

    #[test]
    fn withholds_only_what_may_be_the_mark() {
        let mut framer = Framer::full_resync(5);
        let mut buf = BytesMut::from(&diskless_input(&[7u8; 100], b"")[..140]);
        let mut out = Vec::new();
        framer.feed(&mut buf, &mut out).unwrap();
        let delivered: usize = out
            .iter()
            .map(|p| match p {
                Piece::Rdb(b) => b.len(),
                _ => panic!("{p:?}"),
            })
            .sum();
        // 2 newlines + 47 header bytes + 91 RDB bytes were given; 39 are withheld.
        assert_eq!((delivered, buf.len()), (91 - 39, 39));
    }

    #[test]
    fn sized_transfer_has_no_crlf_after_the_rdb() {
        let rdb = b"REDIS0009\xff\x00\x01\x02\x03\x04\x05\x06\x07";
        let mut input = format!("\n\n\n${}\r\n", rdb.len()).into_bytes();
        input.extend_from_slice(rdb);
        input.extend_from_slice(STREAM);
        let want = expected(rdb, false);
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let got = run(&mut Framer::full_resync(1000), &input, &[a, b]).unwrap();
                assert_eq!(got, want, "cuts at {a}, {b}");
            }
        }
        // An empty snapshot.
        let got = run(
            &mut Framer::full_resync(1000),
            &[b"$0\r\n", STREAM].concat(),
            &[],
        );
        assert_eq!(got.unwrap(), expected(b"", false));
    }

    #[test]
    fn a_continued_stream_counts_from_the_given_offset() {
        let mut framer = Framer::stream(1000);
        let got = run(&mut framer, STREAM, &[3, 17]).unwrap();
        assert_eq!(
            got,
            vec![Piece::Stream {
                offset: 1000,
                data: Bytes::from_static(STREAM)
            }]
        );
        assert_eq!(framer.offset, 1000 + STREAM.len() as u64);
    }

    #[test]
    fn reports_master_errors_and_bad_headers() {
        let e = run(
            &mut Framer::full_resync(0),
            b"\n-ERR BGSAVE failed, replication can't continue\r\n",
            &[],
        );
        assert_eq!(
            e,
            Err(FrameError::MasterError(
                "ERR BGSAVE failed, replication can't continue".into()
            ))
        );
        for bad in [
            &b"+OK\r\n"[..],
            b"$EOF:short\r\n",
            b"$12x\r\n",
            b"$-1\r\n",
            b"$\r\n",
            &[b'$'; 300],
        ] {
            assert!(
                matches!(
                    run(&mut Framer::full_resync(0), bad, &[]),
                    Err(FrameError::BadHeader(_))
                ),
                "{}",
                escape_bytes(bad)
            );
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let alphabet = b"$EOF:\r\n-0123456789abcdef\xff";
        for _ in 0..2000 {
            let len = (rand() % 120) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[(rand() % alphabet.len() as u64) as usize])
                .collect();
            if rand() % 2 == 0 {
                input = [b"$EOF:".as_slice(), MARK, b"\r\n", &input].concat();
            }
            let cut = (rand() as usize) % (input.len() + 1);
            let _ = run(&mut Framer::full_resync(0), &input, &[cut]);
        }
    }

    #[test]
    fn parses_psync_replies() {
        let id = "a".repeat(40);
        assert_eq!(
            parse_psync_reply(format!("FULLRESYNC {id} 955").as_bytes()),
            Some(PsyncReply::FullResync {
                replid: id.clone(),
                offset: 955
            })
        );
        assert_eq!(
            parse_psync_reply(format!("CONTINUE {id}").as_bytes()),
            Some(PsyncReply::Continue {
                replid: Some(id.clone())
            })
        );
        assert_eq!(
            parse_psync_reply(b"CONTINUE"),
            Some(PsyncReply::Continue { replid: None })
        );
        for bad in [
            &b"FULLRESYNC x"[..],
            b"FULLRESYNC x -1",
            b"OK",
            b"",
            b"\xff",
        ] {
            assert_eq!(parse_psync_reply(bad), None);
        }
    }

    #[test]
    fn find_is_a_plain_substring_search() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abd"), None);
        assert_eq!(find(b"abd", b"abd"), Some(0));
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(find(b"", b"a"), None);
    }
}
