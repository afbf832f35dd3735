//! The sync: source → snapshot → target, then the command stream, until stopped.
//!
//! This is the one place that knows every stage. Read [`run`] top to bottom: connect the
//! writer, start the replica link, then handle what the link delivers in order — a full
//! resync starts a snapshot, RDB bytes are decoded as they arrive and each key is
//! rewritten into RESTORE or commands, the end of the RDB switches to the stream, and
//! stream commands are forwarded byte for byte (MULTI…EXEC as one unit). The offset the
//! target has *applied* is what the link ACKs and what the status shows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::endpoint::Endpoint;
use crate::rdb::{self, Decoder, DecoderConfig, Event, Flavor, Step};
use crate::resp::{self, Frame};
use crate::source::{human_bytes, LinkStats, ReplicaConfig, ReplicaLink, SourceItem};
use crate::status::{Phase, Status};
use crate::target::{Cmd, CmdKind, Writer, WriterConfig};
use crate::transform::{KeyRewriter, RewriteConfig};

/// Everything a sync needs, resolved from the config and the command line.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub replica: ReplicaConfig,
    pub writer: WriterConfig,
    pub rewrite: RewriteConfig,
    pub decoder: DecoderConfig,
    /// Largest replication command held whole (one command is forwarded as one unit).
    pub max_command: usize,
    pub once: bool,
    pub progress_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("source: {0}")]
    Source(String),
    #[error("target: {0}")]
    Target(String),
    #[error("snapshot from {source_addr}: {error}")]
    Rdb {
        source_addr: String,
        error: rdb::RdbError,
    },
    #[error("replication stream from {source_addr}: {message}")]
    Stream {
        source_addr: String,
        message: String,
    },
}

/// How a sync ended without error.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub applied_offset: u64,
    pub replid: Option<String>,
}

/// Runs a sync until `shutdown` turns true (or, with `once`, until caught up).
pub async fn run(
    opts: SyncOptions,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SyncOutcome, SyncError> {
    let source_addr = opts.replica.endpoint.addr();
    let mut writer = Writer::connect(opts.writer.clone())
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    let target_info = writer.info().clone();
    info!(target = %opts.writer.endpoint, version = ?target_info.version, valkey = target_info.valkey, "target connected");

    let applied = Arc::new(AtomicU64::new(0));
    let mut link = ReplicaLink::start(opts.replica.clone(), None, applied.clone())
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    info!(source = %opts.replica.endpoint, "replica link established");
    // The link's counters move while the loop below waits on a slow target: refresh them
    // in /status from a task of their own.
    let refresher = tokio::spawn(refresh_link_status(
        link.stats(),
        applied.clone(),
        status.clone(),
    ));

    let mut snapshot: Option<Snapshot> = None;
    let mut pump = StreamPump::new(opts.max_command, &target_info);
    let mut replid = None;
    let mut once_target: Option<u64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_progress = Instant::now();

    let outcome = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                info!("stopping: draining what is in flight");
                break Ok(());
            }
            _ = tick.tick() => {
                if writer.in_flight() > 0 {
                    writer.flush().await.map_err(|e| SyncError::Target(e.to_string()))?;
                }
                let a = pump.applied(&writer);
                applied.store(a, Ordering::Relaxed);
                update_status(&status, &link, &writer, &pump, snapshot.as_ref());
                if last_progress.elapsed() >= opts.progress_interval {
                    last_progress = Instant::now();
                    log_progress(&status);
                }
                if let Some(t) = once_target {
                    if snapshot.is_none() && a >= t && writer.in_flight() == 0 {
                        info!(applied_offset = a, "caught up with the source's offset at the snapshot's end (--once)");
                        break Ok(());
                    }
                }
            }
            item = link.next() => {
                let Some(item) = item else {
                    break Err(SyncError::Source(link.error().map_or_else(|| "the replica link ended".to_string(), |e| e.to_string())));
                };
                match item {
                    SourceItem::FullResync { replid: id, offset } => {
                        if pump.started() && opts.replica.rdb_filter_only {
                            // An empty snapshot again: the writes since the link broke
                            // would never reach the target.
                            break Err(SyncError::Source(
                                "the source started a new full resync, but this link asks for an empty snapshot \
                                 (ferry reverse --mode stream): the writes made while the link was down would be \
                                 lost; copy them with `ferry reverse --mode full`".into(),
                            ));
                        }
                        if pump.started() {
                            warn!("the source started a new full resync: keys deleted on the source meanwhile may remain on the target");
                        }
                        info!(replid = %id, offset, "full resync: receiving the snapshot");
                        replid = Some(id.clone());
                        status.update(|s| {
                            s.phase = Phase::Snapshot;
                            s.replid = Some(id.clone());
                            s.consistent = false;
                            s.snapshot = Default::default();
                        });
                        pump.reset(offset);
                        snapshot = Some(Snapshot::new(&opts, &target_info));
                    }
                    SourceItem::Rdb(data) => {
                        let Some(snap) = snapshot.as_mut() else {
                            return Err(SyncError::Source("RDB bytes without a full resync".into()));
                        };
                        snap.feed(&data, &mut writer, &mut pump).await.map_err(|e| e.with_source(&source_addr))?;
                    }
                    SourceItem::RdbEnd => {
                        let Some(snap) = snapshot.take() else {
                            return Err(SyncError::Source("end of an RDB without a full resync".into()));
                        };
                        let report = snap.finish().map_err(|e| e.with_source(&source_addr))?;
                        writer.flush().await.map_err(|e| SyncError::Target(e.to_string()))?;
                        let secs = report.started.elapsed().as_secs_f64();
                        info!(
                            "snapshot applied: {} keys ({} expired skipped), {} in {:.1} s ({}/s); streaming from offset {}",
                            report.keys, report.expired, human_bytes(report.bytes), secs,
                            human_bytes((report.bytes as f64 / secs.max(1e-9)) as u64), pump.processed
                        );
                        status.update(|s| {
                            s.phase = Phase::Stream;
                            s.snapshot.done = true;
                            s.snapshot.keys = report.keys;
                            s.snapshot.bytes_read = report.bytes;
                            s.snapshot.keys_skipped_expired = report.expired;
                            s.snapshot.seconds = secs;
                        });
                        if opts.once {
                            let t = source_offset(&opts.replica.endpoint, opts.replica.connect_timeout).await
                                .map_err(SyncError::Source)?;
                            info!(source_offset = t, "--once: waiting until the target has applied the source's current offset");
                            once_target = Some(t);
                        }
                    }
                    SourceItem::Stream { offset, data } => {
                        pump.feed(offset, &data, &mut writer, &link).await.map_err(|m| SyncError::Stream {
                            source_addr: source_addr.clone(),
                            message: m,
                        })?;
                        // Commands are coalesced into larger writes; do not let a quiet
                        // stream leave the last ones unsent.
                        writer.push().await.map_err(|e| SyncError::Target(e.to_string()))?;
                    }
                    SourceItem::Continue { replid: id, offset } => {
                        info!(replid = %id, offset, "partial resync accepted: continuing the stream");
                        replid = Some(id);
                    }
                    SourceItem::Reconnecting { reason } => {
                        warn!(%reason, "source link dropped; reconnecting");
                    }
                }
            }
        }
    };

    // Drain: everything sent is acknowledged before we report the offset.
    let flushed = writer.flush().await;
    let a = pump.applied(&writer);
    applied.store(a, Ordering::Relaxed);
    update_status(&status, &link, &writer, &pump, snapshot.as_ref());
    status.update(|s| s.phase = Phase::Stopped);
    refresher.abort();
    link.shutdown().await;
    flushed.map_err(|e| SyncError::Target(e.to_string()))?;
    outcome?;
    info!(
        applied_offset = a,
        replid = replid.as_deref().unwrap_or("-"),
        "stopped; final applied offset"
    );
    Ok(SyncOutcome {
        applied_offset: a,
        replid,
    })
}

fn update_status(
    status: &Status,
    link: &ReplicaLink,
    writer: &Writer,
    pump: &StreamPump,
    snap: Option<&Snapshot>,
) {
    let st = writer.stats();
    let applied = pump.applied(writer);
    let received = link.received_offset().max(pump.processed);
    status.update(|s| {
        if let Some(sn) = snap {
            s.snapshot.bytes_read = sn.bytes;
            s.snapshot.keys = sn.keys;
            s.snapshot.keys_skipped_expired = sn.expired;
        }
        s.stream.received_offset = received;
        s.stream.applied_offset = applied;
        s.stream.lag_bytes = received.saturating_sub(applied);
        s.stream.commands = pump.commands;
        s.in_flight = st.in_flight as u64;
        s.spool_bytes = link.spooled_bytes();
        s.reconnects = link.reconnects();
        s.errors = st
            .errors_by_class
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        s.consistent = s.phase == Phase::Stream
            && st.in_flight == 0
            && applied == received
            && !pump.in_multi();
    });
}

async fn refresh_link_status(stats: LinkStats, applied: Arc<AtomicU64>, status: Arc<Status>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let received = stats.received_offset();
        let applied = applied.load(Ordering::Relaxed);
        status.update(|s| {
            s.spool_bytes = stats.spooled_bytes();
            s.reconnects = stats.reconnects();
            if s.phase == Phase::Snapshot || s.snapshot.done {
                s.snapshot.bytes_total = s.snapshot.bytes_total.or(stats.rdb_total());
            }
            if s.phase == Phase::Stream {
                s.stream.received_offset = s.stream.received_offset.max(received);
                s.stream.lag_bytes = s.stream.received_offset.saturating_sub(applied);
                s.consistent &= s.stream.lag_bytes == 0;
            }
        });
    }
}

fn log_progress(status: &Status) {
    let s = status.snapshot();
    match s.phase {
        Phase::Snapshot => info!(
            "snapshot: {} keys, {} read",
            s.snapshot.keys,
            human_bytes(s.snapshot.bytes_read)
        ),
        Phase::Stream => info!(
            "stream: applied offset {} (lag {} bytes), {} commands, consistent={}",
            s.stream.applied_offset, s.stream.lag_bytes, s.stream.commands, s.consistent
        ),
        _ => {}
    }
}

/// An error while decoding the snapshot, before the source address is attached.
enum SnapError {
    Rdb(rdb::RdbError),
    Target(String),
}

impl SnapError {
    fn with_source(self, addr: &str) -> SyncError {
        match self {
            SnapError::Rdb(error) => SyncError::Rdb {
                source_addr: addr.to_string(),
                error,
            },
            SnapError::Target(m) => SyncError::Target(m),
        }
    }
}

/// The snapshot being received: the decoder, its unconsumed bytes, the key in progress.
struct Snapshot {
    dec: Decoder,
    buf: BytesMut,
    rw: Option<KeyRewriter>,
    rewrite: RewriteConfig,
    target: crate::target::ServerInfo,
    flavor: Flavor,
    keys: u64,
    expired: u64,
    bytes: u64,
    started: Instant,
    out: Vec<Cmd>,
}

struct SnapReport {
    keys: u64,
    expired: u64,
    bytes: u64,
    started: Instant,
}

impl Snapshot {
    fn new(opts: &SyncOptions, target: &crate::target::ServerInfo) -> Snapshot {
        let mut dcfg = opts.decoder.clone();
        dcfg.raw_capture_max = opts.rewrite.restore_max;
        dcfg.total_len = None;
        Snapshot {
            dec: Decoder::new(dcfg),
            buf: BytesMut::new(),
            rw: None,
            rewrite: opts.rewrite.clone(),
            target: target.clone(),
            flavor: Flavor::Redis,
            keys: 0,
            expired: 0,
            bytes: 0,
            started: Instant::now(),
            out: Vec::new(),
        }
    }

    /// Decodes what `data` completes and sends the resulting commands.
    async fn feed(
        &mut self,
        data: &[u8],
        writer: &mut Writer,
        pump: &mut StreamPump,
    ) -> Result<(), SnapError> {
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        loop {
            let Snapshot {
                dec,
                buf,
                rw,
                rewrite,
                target,
                flavor,
                keys,
                expired,
                out,
                ..
            } = self;
            let (used, step) = dec.step(buf).map_err(SnapError::Rdb)?;
            let mut done = false;
            let mut more = false;
            match step {
                Step::Event(ev) => {
                    let mut push = |c: Cmd| out.push(c);
                    match ev {
                        Event::Header { flavor: f, .. } => *flavor = f,
                        Event::Aux { key, value } => {
                            let k = key.as_bytes();
                            if &k[..] == b"lua" {
                                push(KeyRewriter::lua_script(&value.as_bytes()));
                            } else if &k[..] == b"repl-stream-db" {
                                if let Some(db) = value.as_i64() {
                                    pump.cur_db = db as u32;
                                }
                            }
                        }
                        Event::Function(code) => {
                            if let Some(c) = KeyRewriter::function(code, target) {
                                push(c);
                            } else {
                                warn!("the target has no functions: a function library from the source is not copied");
                            }
                        }
                        Event::Key(k) => {
                            *keys += 1;
                            let now = now_ms();
                            if k.expire_ms.is_some_and(|e| e <= now) {
                                *expired += 1;
                            }
                            let mut r = KeyRewriter::new(rewrite, target, *flavor, now);
                            r.key(&k, &mut push);
                            *rw = Some(r);
                        }
                        Event::Value(p) => {
                            if let Some(r) = rw.as_mut() {
                                r.piece(&p, &mut push);
                            }
                        }
                        Event::KeyEnd(e) => {
                            if let Some(mut r) = rw.take() {
                                r.end(&e, &mut push);
                            }
                        }
                        _ => {}
                    }
                }
                Step::NeedMore => more = true,
                Step::Done => done = true,
            }
            buf.advance(used);
            for c in out.drain(..) {
                writer
                    .send(c)
                    .await
                    .map_err(|e| SnapError::Target(e.to_string()))?;
            }
            if more || done {
                return Ok(());
            }
        }
    }

    fn finish(self) -> Result<SnapReport, SnapError> {
        self.dec.finish().map_err(SnapError::Rdb)?;
        Ok(SnapReport {
            keys: self.keys,
            expired: self.expired,
            bytes: self.bytes,
            started: self.started,
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A transaction being collected from the stream.
struct Multi {
    bytes: Vec<u8>,
    /// Commands in `bytes` (replies to expect).
    n: u32,
    /// The db the transaction starts in.
    db: u32,
    /// A SELECT between its commands was forwarded inside it.
    inner_select: bool,
}

/// The replication command stream: framing, SELECT tracking, transactions, offsets.
struct StreamPump {
    buf: BytesMut,
    /// Master offset of `buf[0]`.
    base: u64,
    /// Offset after the last command fully handled (not inside MULTI).
    processed: u64,
    cur_db: u32,
    multi: Option<Multi>,
    limits: resp::Limits,
    commands: u64,
    started: bool,
    /// Targets older than Redis 6.2 lack `SET … PXAT/EXAT`.
    target_has_set_pxat: bool,
}

impl StreamPump {
    fn new(max_command: usize, target: &crate::target::ServerInfo) -> StreamPump {
        let limits = resp::Limits {
            max_bulk_len: max_command,
            ..Default::default()
        };
        StreamPump {
            buf: BytesMut::new(),
            base: 0,
            processed: 0,
            cur_db: 0,
            multi: None,
            limits,
            commands: 0,
            started: false,
            target_has_set_pxat: target.valkey || target.redis_at_least(6, 2),
        }
    }

    fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.base = offset;
        self.processed = offset;
        self.multi = None;
        self.started = true;
    }

    fn started(&self) -> bool {
        self.started && self.processed > 0
    }

    fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// The offset the target has applied: everything, when nothing is in flight.
    fn applied(&self, writer: &Writer) -> u64 {
        if writer.in_flight() == 0 && self.multi.is_none() {
            self.processed
        } else {
            writer.acked_tag().min(self.processed)
        }
    }

    async fn feed(
        &mut self,
        offset: u64,
        data: &[u8],
        writer: &mut Writer,
        link: &ReplicaLink,
    ) -> Result<(), String> {
        if self.buf.is_empty() {
            self.base = offset;
        } else if self.base + self.buf.len() as u64 != offset {
            return Err(format!(
                "stream bytes at offset {offset} do not follow the previous ones (expected {})",
                self.base + self.buf.len() as u64
            ));
        }
        self.buf.extend_from_slice(data);
        loop {
            let (frame, len) = match resp::parse_frame(&self.buf, &self.limits) {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("at offset {}: {e}", self.base)),
            };
            let raw = self.buf.split_to(len).freeze();
            let start = self.base;
            self.base += len as u64;
            let end = self.base;
            self.command(frame, raw, start, end, writer, link).await?;
        }
    }

    async fn command(
        &mut self,
        frame: Frame,
        raw: Bytes,
        start: u64,
        end: u64,
        writer: &mut Writer,
        link: &ReplicaLink,
    ) -> Result<(), String> {
        let Frame::Array(args) = &frame else {
            return Err(format!(
                "at offset {start}: expected a command (an array), found {frame:?}"
            ));
        };
        let arg = |i: usize| args.get(i).and_then(|f| f.as_bytes()).unwrap_or_default();
        let name = arg(0).to_ascii_uppercase();
        self.commands += 1;
        // Verbatim stream commands: the writer treats them as touching every key when it
        // checks whether a retry would reorder writes.
        let send = |bytes: Bytes, n: u32, db: u32, tag: u64| {
            let kind = if n > 1 {
                CmdKind::Transaction { key: None }
            } else {
                CmdKind::Data { key: None }
            };
            Cmd {
                db: Some(db),
                bytes,
                n,
                tag,
                kind,
            }
        };
        match &name[..] {
            b"PING" => {}
            b"REPLCONF" => {
                if arg(1).eq_ignore_ascii_case(b"GETACK") {
                    // The ACK excludes the GETACK's own bytes: it is what was applied before it.
                    link.ack_now(self.applied(writer));
                }
            }
            b"SELECT" => {
                let db = std::str::from_utf8(arg(1))
                    .ok()
                    .and_then(|s| s.parse().ok());
                self.cur_db =
                    db.ok_or_else(|| format!("at offset {start}: bad SELECT argument"))?;
                // Servers >= 7.0 put the SELECT after the MULTI it belongs to. Right after
                // MULTI it just says where the transaction runs; between its commands it
                // must run inside it.
                if let Some(m) = self.multi.as_mut() {
                    if m.n == 1 {
                        m.db = self.cur_db;
                    } else {
                        m.bytes.extend_from_slice(&raw);
                        m.n += 1;
                        m.inner_select = true;
                    }
                    return Ok(());
                }
            }
            b"MULTI" => {
                self.multi = Some(Multi {
                    bytes: raw.to_vec(),
                    n: 1,
                    db: self.cur_db,
                    inner_select: false,
                });
                return Ok(());
            }
            b"EXEC" if self.multi.is_some() => {
                if let Some(mut m) = self.multi.take() {
                    m.bytes.extend_from_slice(&raw);
                    m.n += 1;
                    if m.inner_select {
                        // The writer believes the connection is still in `m.db`: make it so.
                        resp::encode_command(
                            &mut m.bytes,
                            &[b"SELECT".as_slice(), m.db.to_string().as_bytes()],
                        );
                        m.n += 1;
                    }
                    writer
                        .send(send(Bytes::from(m.bytes), m.n, m.db, end))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            _ => {
                let raw = match self.rewrite(&name, args) {
                    Some(argv) => {
                        let mut b = Vec::new();
                        resp::encode_command(&mut b, &argv);
                        Bytes::from(b)
                    }
                    None => raw,
                };
                if let Some(m) = self.multi.as_mut() {
                    m.bytes.extend_from_slice(&raw);
                    m.n += 1;
                    return Ok(());
                }
                writer
                    .send(send(raw, 1, self.cur_db, end))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        self.processed = end;
        Ok(())
    }
}

impl StreamPump {
    /// A command the target would not understand, rewritten into one it does; `None`
    /// when it goes verbatim (the common case).
    ///
    /// Servers ≥ 7.0 replicate every expiry as an absolute time (`SET … PXAT`,
    /// `PEXPIREAT`). Redis < 6.2 has no `PXAT`/`EXAT`: the time becomes a relative `PX`
    /// from now (the source's absolute time, so no drift accumulates), or a `DEL` when it
    /// has already passed.
    fn rewrite(&self, name: &[u8], args: &[Frame]) -> Option<Vec<Vec<u8>>> {
        if self.target_has_set_pxat || name != b"SET" {
            return None;
        }
        let argv: Vec<&[u8]> = args
            .iter()
            .map(|f| f.as_bytes().unwrap_or_default())
            .collect();
        let i = argv
            .iter()
            .skip(3)
            .position(|a| a.eq_ignore_ascii_case(b"PXAT") || a.eq_ignore_ascii_case(b"EXAT"))?
            + 3;
        let at: i64 = std::str::from_utf8(argv.get(i + 1)?).ok()?.parse().ok()?;
        let at_ms = if argv[i].eq_ignore_ascii_case(b"EXAT") {
            at.saturating_mul(1000)
        } else {
            at
        };
        let left = at_ms - now_ms();
        if left <= 0 {
            return Some(vec![b"DEL".to_vec(), argv.get(1)?.to_vec()]);
        }
        let mut out: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
        out[i] = b"PX".to_vec();
        out[i + 1] = left.to_string().into_bytes();
        Some(out)
    }
}

/// The source's current `master_repl_offset`, over a separate connection.
pub async fn source_offset(ep: &Endpoint, timeout: Duration) -> Result<u64, String> {
    let text = info_section(ep, "replication", timeout).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{}: INFO replication has no master_repl_offset", ep.addr()))
}

/// `INFO <section>` of a server, as text.
pub async fn info_section(
    ep: &Endpoint,
    section: &str,
    timeout: Duration,
) -> Result<String, String> {
    let addr = ep.addr();
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut out = Vec::new();
        if let Some(pw) = &ep.password {
            match &ep.user {
                Some(u) => resp::encode_command(
                    &mut out,
                    &[b"AUTH".as_slice(), u.as_bytes(), pw.as_bytes()],
                ),
                None => resp::encode_command(&mut out, &[b"AUTH".as_slice(), pw.as_bytes()]),
            }
        }
        resp::encode_command(&mut out, &[b"INFO".as_slice(), section.as_bytes()]);
        s.write_all(&out)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let want = if ep.password.is_some() { 2 } else { 1 };
        while replies.len() < want {
            let mut chunk = [0u8; 16 * 1024];
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            if n == 0 {
                return Err(format!("{addr}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((f, len)) = resp::parse_frame(&buf, &resp::Limits::default())
                .map_err(|e| format!("{addr}: {e}"))?
            {
                buf.drain(..len);
                replies.push(f);
            }
        }
        match replies.pop() {
            Some(Frame::Bulk(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(f) if f.is_error() => Err(format!(
                "{addr}: INFO failed: {}",
                String::from_utf8_lossy(f.error_text().unwrap_or_default())
            )),
            other => Err(format!("{addr}: unexpected INFO reply {other:?}")),
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{addr}: INFO timed out"))?
}

/// Builds a stop signal from SIGINT and SIGTERM.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    rx
}
