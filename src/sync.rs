//! The sync: source → snapshot → target, then the command stream, until stopped.
//!
//! This is the one place that knows every stage. Read [`run`] top to bottom: connect the
//! writer, start the replica link, then handle what the link delivers in order — a full
//! resync starts a snapshot, RDB bytes are decoded as they arrive and each key is
//! rewritten into RESTORE or commands, the end of the RDB switches to the stream, and
//! stream commands are forwarded byte for byte (MULTI…EXEC as one unit). The offset the
//! target has *applied* is what the link ACKs and what the status shows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::endpoint::Endpoint;
use crate::notify::Notifier;
use crate::rdb::{self, Decoder, DecoderConfig, Event, Flavor, Step};
use crate::resp::{self, Frame};
use crate::source::{human_bytes, LinkStats, ReplicaConfig, ReplicaLink, SourceItem};
use crate::status::{Phase, Status};
// `Writer` here is the sink: one writer, or a router over a cluster's masters.
use crate::target::failover;
use crate::target::{Cmd, CmdKind, Sink as Writer, SinkOptions, TargetError, WriterConfig};
use crate::transform::{KeyRewriter, RewriteConfig};

/// Everything a sync needs, resolved from the config and the command line.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub replica: ReplicaConfig,
    pub writer: WriterConfig,
    /// Cluster routing and the db mapping.
    pub sink: SinkOptions,
    pub rewrite: RewriteConfig,
    pub decoder: DecoderConfig,
    /// Largest replication command held whole (one command is forwarded as one unit).
    pub max_command: usize,
    pub once: bool,
    pub progress_interval: Duration,
    /// Heartbeat writes on the source, for `lag_seconds` (None: off).
    pub heartbeat: Option<HeartbeatConfig>,
    /// How long a stop (SIGTERM/SIGINT) may spend draining what is in flight.
    pub drain_timeout: Duration,
    /// Draw a progress bar for the snapshot (the caller checks that stderr is a terminal).
    pub progress_bar: bool,
    /// `/healthz` turns red after the source link is down, or the target makes no
    /// progress, for this long.
    pub healthz_timeout: Duration,
    /// For one shard of a cluster source: the slot ranges it serves there (its failover
    /// markers on a cluster target cover those). `None`: every slot.
    pub marker_slots: Option<Vec<(u16, u16)>>,
    /// Where a clean stop saves its resume point and a start takes it
    /// ([`crate::checkpoint`]). `None`: every start copies everything.
    pub checkpoint: Option<std::path::PathBuf>,
}

/// `[sync] heartbeat_interval` and `heartbeat_key`.
///
/// Every `interval`, a separate connection to the source runs
/// `SET <key> <unix ms> PX <10 intervals>`. The write is replicated like any other, so it
/// reaches the target through the stream, and source and target hold the same value: a
/// key-by-key comparison sees no difference once the stream has caught up (at most the
/// newest heartbeat is in flight; exclude the key when comparing while ferry runs). When
/// the pump forwards that SET, ferry notes its offset; once the target has applied that
/// offset, `now - value` is the lag in seconds.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub interval: Duration,
    pub key: String,
}

impl SyncOptions {
    /// The options a config file describes (its `[source]` to its `[target]`).
    pub fn from_config(cfg: &crate::config::Config) -> Result<SyncOptions, String> {
        use crate::config::{ConflictCfg, ValueModeCfg};
        use crate::target::Conflict;
        use crate::transform::ValueMode;
        let source = cfg.source.endpoint("source")?;
        let target = cfg.target.endpoint("target")?;
        let mut replica = ReplicaConfig::new(source);
        replica.announce_version = cfg.sync.announce_version.clone();
        replica.uncompressed_snapshot = cfg.sync.uncompressed_snapshot;
        replica.connect_timeout = cfg.connect_timeout();
        replica.spool_cap = cfg.sync.spool_cap;
        replica.memory_queue = cfg.sync.memory_queue;
        if let Some(d) = &cfg.sync.spool_dir {
            replica.spool_dir = d.clone();
        }
        let conflict = match cfg.transform.conflict {
            ConflictCfg::Replace => Conflict::Replace,
            ConflictCfg::Skip => Conflict::Skip,
            ConflictCfg::Error => Conflict::Error,
        };
        let mut writer = WriterConfig::new(target);
        writer.window_cmds = cfg.sync.window_cmds;
        writer.window_bytes = cfg.sync.window_bytes;
        writer.connect_timeout = cfg.connect_timeout();
        writer.policy.busykey = conflict;
        let rewrite = RewriteConfig {
            batch_elems: cfg.transform.batch_elems,
            batch_bytes: cfg.transform.batch_bytes,
            mode: match cfg.transform.value_mode {
                ValueModeCfg::Auto => ValueMode::Auto,
                ValueModeCfg::Restore => ValueMode::Restore,
                ValueModeCfg::Commands => ValueMode::Commands,
            },
            conflict,
            restore_max: cfg.transform.restore_max,
            ..RewriteConfig::default()
        };
        Ok(SyncOptions {
            replica,
            writer,
            rewrite,
            decoder: DecoderConfig {
                chunk_threshold: cfg.advanced.chunk_threshold,
                max_element: cfg.advanced.max_element,
                ..Default::default()
            },
            max_command: cfg.advanced.max_element,
            once: cfg.sync.once,
            progress_interval: Duration::from_secs_f64(cfg.log.progress_interval.max(0.1)),
            heartbeat: (cfg.sync.heartbeat_interval > 0.0).then(|| HeartbeatConfig {
                interval: Duration::from_secs_f64(cfg.sync.heartbeat_interval),
                key: cfg.sync.heartbeat_key.clone(),
            }),
            drain_timeout: Duration::from_secs_f64(cfg.sync.drain_timeout),
            // The binary turns it on for a terminal.
            progress_bar: false,
            healthz_timeout: Duration::from_secs_f64(cfg.status.healthz_timeout),
            sink: cfg.sink_options()?,
            marker_slots: None,
            checkpoint: cfg.sync.checkpoint.clone(),
        })
    }
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
    #[error("{0}")]
    Checkpoint(String),
}

/// How a sync ended without error.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub applied_offset: u64,
    pub replid: Option<String>,
}

/// Runs a sync until `shutdown` turns true (or, with `once`, until caught up).
///
/// A target given by sentinels is followed through a failover: when the sync fails while
/// streaming and the target's master changed or went away, ferry waits for the master the
/// sentinels name, reads its failover marker, and asks the source for its stream again
/// from there (see [`crate::target::failover`]).
pub async fn run(
    opts: SyncOptions,
    status: Arc<Status>,
    shutdown: watch::Receiver<bool>,
) -> Result<SyncOutcome, SyncError> {
    let mut resume = match &opts.checkpoint {
        None => None,
        Some(path) => {
            let (source, target) = (opts.replica.endpoint.addr(), opts.writer.endpoint.addr());
            crate::checkpoint::take(path, &source, &target)
                .map_err(SyncError::Checkpoint)?
                .map(|cp| {
                    info!(path = %path.display(), replid = %cp.replid, offset = cp.offset, db = cp.db, "checkpoint of a clean stop taken: asking the source for its stream from there");
                    ResumeAfterFailover {
                        from: crate::source::Resume { replid: cp.replid, offset: cp.offset },
                        db: cp.db,
                        skip: None,
                        checkpoint_of: Some(cp.target_run_id),
                    }
                })
        }
    };
    let mut first = true;
    // After a cluster target's failover: the nodes the failed run knew, through which the
    // next run reaches the cluster when the node given is the one that failed.
    let mut seeds: Vec<Endpoint> = Vec::new();
    loop {
        let mut st = RunState::default();
        let r = run_once(
            opts.clone(),
            status.clone(),
            shutdown.clone(),
            resume.take(),
            std::mem::take(&mut first),
            &seeds,
            &mut st,
        )
        .await;
        let Err(e) = &r else {
            return r;
        };
        let timeout = opts.writer.connect_timeout;
        if st.failover.load(std::sync::atomic::Ordering::Relaxed)
            && !st.streaming
            && !*shutdown.borrow()
        {
            // The snapshot is not complete on the new master: copy it again.
            warn!(error = %e, "the target cluster failed over during the snapshot; copying everything again once every slot has a master");
            status.update(|s| s.last_error = Some(format!("target failover: {e}")));
            seeds = st.seeds(&opts);
            failover::wait_for_cluster(&seeds, "", FAILOVER_WAIT)
                .await
                .map_err(|m| {
                    SyncError::Target(format!("{e}; and the cluster did not recover: {m}"))
                })?;
            continue;
        }
        let (Some(replid), Some(old)) = (st.replid.clone(), st.target.clone()) else {
            return r;
        };
        if !st.streaming || *shutdown.borrow() || matches!(e, SyncError::Source(_)) {
            return r;
        }
        if let Some(sm) = st.slots.clone() {
            // A cluster target.
            let seen = st.failover.load(std::sync::atomic::Ordering::Relaxed);
            if !seen && !failover::cluster_master_lost(&st.masters, timeout).await {
                return r;
            }
            warn!(error = %e, "a master of the target cluster is gone; waiting until every slot has a master again");
            status.update(|s| s.last_error = Some(format!("target failover: {e}")));
            seeds = st.seeds(&opts);
            let mut markers = failover::wait_for_cluster(&seeds, &replid, FAILOVER_WAIT)
                .await
                .map_err(|m| {
                    SyncError::Target(format!("{e}; and the cluster did not recover: {m}"))
                })?;
            for m in markers.iter_mut() {
                if m.is_some_and(|(o, _)| o < st.base) {
                    *m = None;
                }
            }
            let sm = sm.lock().unwrap_or_else(|p| p.into_inner());
            match failover::plan_resume(&markers, sm.sent_offsets(), sm.cut(), |s| sm.keeps(s)) {
                Some((skip, offset, db)) => {
                    let until = sm.cut().0;
                    info!(offset, until, db, "every slot has a master: asking the source for its stream again from the oldest failover marker still needed");
                    resume = Some(ResumeAfterFailover {
                        from: crate::source::Resume { replid, offset },
                        db,
                        skip: Some((skip, until)),
                        checkpoint_of: None,
                    });
                }
                None => {
                    let missing: Vec<usize> = markers
                        .iter()
                        .enumerate()
                        .filter(|(s, m)| m.is_none() && sm.keeps(*s as u16))
                        .map(|(s, _)| s)
                        .collect();
                    warn!(
                        slots = missing.len(),
                        first = missing.first().copied(),
                        base = st.base,
                        "slots of the new masters have no failover marker of this history (part of the snapshot was lost with its master): copying everything again (full resync)"
                    )
                }
            }
            continue;
        }
        if opts.writer.endpoint.sentinel.is_none() {
            return r;
        }
        if !failover::master_changed(&opts.writer.endpoint, &old, timeout).await {
            return r;
        }
        warn!(error = %e, "the target's master changed or is gone; waiting for the master the sentinels name");
        status.update(|s| s.last_error = Some(format!("target failover: {e}")));
        let (master, offset) =
            match failover::wait_for_master(&opts.writer.endpoint, &replid, FAILOVER_WAIT).await {
                Ok(x) => x,
                Err(m) => return Err(SyncError::Target(format!("{e}; and no new master: {m}"))),
            };
        match offset.filter(|&(o, _)| o >= st.base) {
            Some((o, db)) => {
                info!(master = %master.addr(), offset = o, db, "new target master: asking the source for its stream again from the failover marker");
                resume = Some(ResumeAfterFailover {
                    from: crate::source::Resume { replid, offset: o },
                    db,
                    skip: None,
                    checkpoint_of: None,
                });
            }
            None => {
                warn!(master = %master.addr(), "new target master without a failover marker of this stream: copying everything again (full resync)");
            }
        }
    }
}

/// A command on the failover marker of `slot` (a cluster target: routed by that key).
fn slot_marker_cmd(slot: u16, bytes: Vec<u8>, tag: u64) -> Cmd {
    Cmd {
        db: Some(0),
        bytes: Bytes::from(bytes),
        n: 1,
        tag,
        kind: CmdKind::Data {
            key: Some(Bytes::from(failover::slot_marker_key(slot))),
        },
    }
}

/// A task stopped when this is dropped: a run that ends early (an error returned with `?`)
/// leaves nothing behind when `run` starts the next one after a failover.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a failed sync waits for the sentinels to name a working target master.
const FAILOVER_WAIT: Duration = Duration::from_secs(60);

/// What `run` needs to know of a run that failed.
#[derive(Default)]
struct RunState {
    /// The source's replication id of the stream.
    replid: Option<String>,
    /// The stream phase was reached.
    streaming: bool,
    /// The target master written to.
    target: Option<Endpoint>,
    /// The offset the current history on the target starts at (the snapshot's, or the
    /// resume's): older markers are not trusted.
    base: u64,
    /// A cluster target: its masters at start, and the per-slot markers.
    masters: Vec<Endpoint>,
    slots: Option<Arc<std::sync::Mutex<failover::SlotMarkers>>>,
    /// Set by the cluster router when the slot map shows a failover.
    failover: Arc<std::sync::atomic::AtomicBool>,
}

impl RunState {
    /// Where to read a cluster target's map after a failover: the target given, then its
    /// masters at start.
    fn seeds(&self, opts: &SyncOptions) -> Vec<Endpoint> {
        let ep = &opts.writer.endpoint;
        let mut seeds = vec![ep.clone()];
        seeds.extend(self.masters.iter().cloned());
        // The other nodes the URL listed, after those the run has seen.
        seeds.extend(ep.seeds.iter().map(|(host, port)| {
            ep.node(&crate::cluster::NodeAddr {
                host: host.clone(),
                port: *port,
            })
        }));
        seeds
    }
}

/// Connects to the target given; when that fails after a cluster failover, to the cluster
/// through another node of `seeds` (the node given may be the master that failed).
async fn connect_target(opts: &SyncOptions, seeds: &[Endpoint]) -> Result<Writer, SyncError> {
    let given = &opts.writer.endpoint;
    let err = match Writer::connect(opts.writer.clone(), opts.sink.clone()).await {
        Ok(w) => return Ok(w),
        Err(e) => e,
    };
    for seed in seeds.iter().filter(|s| s.addr() != given.addr()) {
        let mut cfg = opts.writer.clone();
        cfg.endpoint = seed.clone();
        match Writer::connect(cfg, opts.sink.clone()).await {
            Ok(w) => {
                warn!(given = %given, via = %seed.addr(), "the target node given does not answer ({err}): reached its cluster through another node the last run knew");
                return Ok(w);
            }
            Err(e) => {
                warn!(node = %seed.addr(), "another node of the target cluster does not answer either: {e}")
            }
        }
    }
    Err(SyncError::Target(err.to_string()))
}

/// Where a run after a target failover starts.
struct ResumeAfterFailover {
    from: crate::source::Resume,
    /// The source db at that offset.
    db: u32,
    /// A cluster target: per slot how far it is on the target, and where the failed run
    /// had got to.
    skip: Option<(Vec<u64>, u64)>,
    /// A start from a checkpoint (not a failover): the target's `run_id` then. Every slot
    /// of a cluster target has everything up to the offset.
    checkpoint_of: Option<String>,
}

async fn run_once(
    opts: SyncOptions,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
    mut resume: Option<ResumeAfterFailover>,
    first: bool,
    seeds: &[Endpoint],
    st: &mut RunState,
) -> Result<SyncOutcome, SyncError> {
    let source_addr = opts.replica.endpoint.addr();
    let started = Instant::now();
    status.update(|s| {
        s.set_phase(Phase::Handshake);
        s.healthz_timeout = Some(opts.healthz_timeout);
        s.spool.cap = opts.replica.spool_cap;
    });
    let mut notifier = Notifier::from_env();
    let mut writer = connect_target(&opts, seeds).await?;
    let keyspace = crate::admin::info_section(
        &opts.replica.endpoint,
        "keyspace",
        opts.replica.connect_timeout,
    )
    .await
    .map_err(SyncError::Source)?;
    crate::target::dbmap::check_start(&opts.sink, &keyspace, writer.is_cluster())
        .map_err(SyncError::Target)?;
    let target_info = writer.info().clone();
    st.target = Some(writer.endpoint().clone());
    info!(target = %opts.writer.endpoint, version = ?target_info.version, valkey = target_info.valkey, "target connected");
    let target_run_id = match &opts.checkpoint {
        Some(_) => target_run_id(writer.endpoint(), opts.writer.connect_timeout).await,
        None => None,
    };
    if let Some(want) = resume.as_ref().and_then(|r| r.checkpoint_of.as_ref()) {
        if target_run_id.as_ref() != Some(want) {
            warn!("the target restarted since the checkpoint was written (another run_id): it may lack what it had applied, copying everything again (full resync)");
            resume = None;
        }
    }
    // With a checkpoint file, a standalone target also keeps failover markers: they are
    // what a start after a run that did not stop cleanly (a crash, `kill -9`) resumes from.
    let crash_markers = opts.checkpoint.is_some() && !writer.is_cluster();
    let target_dbs = match crash_markers {
        true => failover::databases(writer.endpoint(), opts.writer.connect_timeout)
            .await
            .map_err(SyncError::Target)?,
        false => 0,
    };
    if first && crash_markers && resume.is_none() {
        match failover::read_any_marker(writer.endpoint(), opts.writer.connect_timeout).await {
            Ok(Some((replid, offset, db))) => {
                warn!(%replid, offset, db, "no checkpoint file, but the target holds ferry's failover marker: the last run did not stop cleanly; asking the source for its stream from the marker");
                resume = Some(ResumeAfterFailover {
                    from: crate::source::Resume { replid, offset },
                    db,
                    skip: None,
                    checkpoint_of: None,
                });
            }
            Ok(None) => {}
            Err(e) => {
                warn!("could not read the target's failover markers ({e}): copying everything")
            }
        }
    }
    // A cluster target keeps per-slot markers anyway (not with db_map key prefixes).
    let slot_markers = writer.is_cluster() && !opts.sink.db_map.has_prefix();
    if first && opts.checkpoint.is_some() && slot_markers && resume.is_none() {
        resume = resume_from_slot_markers(&opts).await;
    }
    let from_checkpoint = resume.as_ref().is_some_and(|r| r.checkpoint_of.is_some());

    let applied = Arc::new(AtomicU64::new(0));
    let data_offset = Arc::new(AtomicU64::new(0));
    let mut replica_cfg = opts.replica.clone();
    replica_cfg.data_offset = Some(data_offset.clone());
    let resume_db = resume.as_ref().map(|r| r.db);
    let mut resume_skip = resume.as_mut().and_then(|r| r.skip.take());
    let mut link = ReplicaLink::start(replica_cfg, resume.map(|r| r.from), applied.clone())
        .await
        .map_err(|e| SyncError::Source(e.to_string()))?;
    info!(
        source = %opts.replica.endpoint,
        "replica link established in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    notifier.send("READY=1\nSTATUS=replica link established");
    // Connections that delivered their first item (FULLRESYNC or CONTINUE): the link is
    // down while it has dropped more often than that, less the first connection.
    let link_starts = Arc::new(AtomicU64::new(0));
    // The link's counters move while the loop below waits on a slow target: refresh them
    // in /status from a task of their own.
    let refresher = AbortOnDrop(tokio::spawn(refresh_link_status(
        link.stats(),
        applied.clone(),
        link_starts.clone(),
        status.clone(),
    )));
    let heartbeat = opts.heartbeat.clone().map(|hb| {
        AbortOnDrop(tokio::spawn(write_heartbeats(
            opts.replica.endpoint.clone(),
            hb,
            opts.replica.connect_timeout,
        )))
    });
    let mut lag = HeartbeatLag::new(opts.heartbeat.as_ref().map(|h| h.interval));
    let mut bar: Option<indicatif::ProgressBar> = None;

    let mut snapshot: Option<Snapshot> = None;
    let mut pump = StreamPump::new(opts.max_command, &target_info);
    pump.heartbeat_key = opts.heartbeat.as_ref().map(|h| h.key.as_bytes().to_vec());
    pump.data_offset = Some(data_offset);
    pump.marker =
        (opts.writer.endpoint.sentinel.is_some() || crash_markers) && !writer.is_cluster();
    // A clean stop deletes the markers of every db, not only of those this run wrote in:
    // a marker left from an earlier run would be resumed from later.
    pump.marker_dbs.extend(0..target_dbs);
    // The sentinels are asked every second whether the target's master moved.
    let moved =
        opts.writer.endpoint.sentinel.is_some().then(|| {
            failover::watch_master(opts.writer.endpoint.clone(), writer.endpoint().clone())
        });
    // Key positions for /recent-keys, from the target's own command table.
    match crate::admin::command(
        writer.endpoint(),
        &[b"COMMAND"],
        opts.writer.connect_timeout,
    )
    .await
    .and_then(|f| crate::cluster::KeyFinder::from_command_reply(&f))
    {
        Ok(finder) => {
            status
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enabled = true;
            // (Not with `db_map` key prefixes: a prefixed key lies in another slot than the
            // source key, so the slot of a command is not known here.)
            if let Some(c) = writer
                .cluster_mut()
                .filter(|_| !opts.sink.db_map.has_prefix())
            {
                // A cluster target can lose a master: per-slot failover markers (for a
                // shard of a cluster source, of the slots it serves there).
                let sm = Arc::new(std::sync::Mutex::new(failover::SlotMarkers::new(
                    finder.clone(),
                    opts.marker_slots.as_deref(),
                )));
                pump.slots = Some(sm.clone());
                st.slots = Some(sm);
                // A failover seen in the slot map stops the router, and `run` resumes
                // from the markers (following MOVED would lose what the old master had
                // acknowledged and not replicated).
                c.stop_on_failover(st.failover.clone());
                st.masters = c
                    .topology()
                    .masters
                    .iter()
                    .map(|m| opts.writer.endpoint.node(&m.addr))
                    .collect();
            }
            pump.recent = Some((status.clone(), finder));
        }
        Err(e) => warn!("no /recent-keys (a cutover then verifies every key): {e}"),
    }
    let mut replid = None;
    let mut once_target: Option<u64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_progress = Instant::now();

    let outcome = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                announce_stop(&opts, &notifier);
                break Ok(());
            }
            _ = tick.tick() => {
                notifier.watchdog_tick();
                if moved.as_ref().is_some_and(|m| m.moved()) {
                    break Err(SyncError::Target(format!(
                        "the sentinels name another master than {}",
                        writer.endpoint().addr()
                    )));
                }
                if snapshot.is_none() {
                    pump.write_marker(&mut writer).await.map_err(|e| SyncError::Target(e.to_string()))?;
                }
                // A cluster target: also when idle, so that its slot map is read again
                // every `cluster_refresh_ms` and a failover is seen without a write.
                if writer.in_flight() > 0 || writer.is_cluster() {
                    // A standalone target that does not answer holds this wait: a stop is
                    // still seen here (that writer's flush keeps its state in itself, so
                    // the drain below resumes it). The cluster router's is not cut short.
                    let flushed = if writer.is_cluster() {
                        Some(writer.flush().await)
                    } else {
                        tokio::select! {
                            biased;
                            _ = shutdown.changed() => None,
                            r = writer.flush() => Some(r),
                        }
                    };
                    match flushed {
                        Some(r) => r.map_err(|e| SyncError::Target(e.to_string()))?,
                        None => {
                            announce_stop(&opts, &notifier);
                            break Ok(());
                        }
                    }
                }
                let a = pump.applied(&writer);
                if snapshot.is_none() {
                    // What the link acknowledges: nothing of a snapshot still being applied
                    // (its last commands may be in flight after the link saw its end).
                    applied.store(a, Ordering::Relaxed);
                }
                if snapshot.is_none() && pump.started() {
                    writer.publish_applied(a);
                }
                lag.applied(&mut pump.heartbeats, a);
                update_status(&status, &link, &writer, &pump, snapshot.as_ref());
                status.update(|s| s.stream.lag_seconds = lag.seconds());
                if let (Some(b), Some(sn)) = (bar.as_ref(), snapshot.as_ref()) {
                    draw_bar(b, sn, link.stats().rdb_total());
                }
                if last_progress.elapsed() >= opts.progress_interval {
                    last_progress = Instant::now();
                    if bar.is_none() {
                        log_progress(&status);
                    }
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
                        if pump.started() && opts.replica.rdb_filter_only.is_some() {
                            // An empty snapshot now would silently drop every write made
                            // while the link was down.
                            break Err(SyncError::Source(format!(
                                "the source refused a partial resync (new replication id {id}); \
                                 with an empty snapshot (stream-only mode) the writes made while \
                                 the link was down would be lost: copy everything instead \
                                 (`ferry reverse --mode full`)"
                            )));
                        }
                        if pump.started() {
                            warn!("the source started a new full resync: keys deleted on the source meanwhile may remain on the target");
                        }
                        link_starts.fetch_add(1, Ordering::SeqCst);
                        // Nothing of this history is applied yet (see the tick).
                        applied.store(0, Ordering::Relaxed);
                        info!(replid = %id, offset, "full resync: receiving the snapshot");
                        notifier.send("STATUS=receiving the snapshot");
                        replid = Some(id.clone());
                        pump.replid = Some(id.clone());
                        st.replid = Some(id.clone());
                        // Markers below this offset are another history's (an earlier run).
                        st.base = offset;
                        st.streaming = false;
                        if opts.progress_bar {
                            bar = Some(new_bar());
                        }
                        status.update(|s| {
                            s.set_phase(Phase::Snapshot);
                            s.replid = Some(id.clone());
                            s.consistent = false;
                            s.snapshot = Default::default();
                        });
                        if crash_markers {
                            // Markers of an older history go before the snapshot's first
                            // key: a run that dies during this snapshot must not be
                            // resumed from them.
                            pump.delete_db_markers(&mut writer, 0..target_dbs).await.map_err(|e| SyncError::Target(e.to_string()))?;
                        }
                        if opts.checkpoint.is_some() && pump.slots.is_some() {
                            // The same for a cluster target's per-slot markers (the
                            // snapshot's end writes them all again).
                            pump.delete_slot_markers(&mut writer).await.map_err(|e| SyncError::Target(e.to_string()))?;
                        }
                        pump.reset(offset);
                        writer.restart_shard();
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
                        if let Some(sm) = &pump.slots {
                            // Every slot gets its marker now, acknowledged with the
                            // snapshot: a failover right after it then resumes from them
                            // rather than copying everything again.
                            sm.lock().unwrap_or_else(|p| p.into_inner()).all_dirty(pump.processed);
                            pump.write_marker(&mut writer).await.map_err(|e| SyncError::Target(e.to_string()))?;
                        }
                        writer.flush().await.map_err(|e| SyncError::Target(e.to_string()))?;
                        let secs = report.started.elapsed().as_secs_f64();
                        if let Some(b) = bar.take() {
                            b.finish_and_clear();
                        }
                        // scripts/bench-sync.sh reads the seconds from "… in <secs> s …".
                        info!(
                            "snapshot applied: {} keys ({} expired skipped), {} in {:.1} s ({}/s, {} keys/s); streaming from offset {}",
                            thousands(report.keys), thousands(report.expired), human_bytes(report.bytes), secs,
                            human_bytes((report.bytes as f64 / secs.max(1e-9)) as u64),
                            thousands((report.keys as f64 / secs.max(1e-9)) as u64), pump.processed
                        );
                        notifier.send("STATUS=streaming");
                        st.streaming = true;
                        // A snapshot shorter than a status tick: its size is shown at once.
                        let total = link.stats().rdb_total();
                        status.update(|s| {
                            s.set_phase(Phase::Stream);
                            s.written.keys += report.keys;
                            s.snapshot.bytes_total = s.snapshot.bytes_total.or(total);
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
                            // Check at once rather than at the next tick: with nothing written
                            // meanwhile, the target already has it.
                            tick.reset_immediately();
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
                        if snapshot.is_none() {
                            writer.publish_applied(pump.applied(&writer));
                        }
                    }
                    SourceItem::Continue { replid: id, offset } => {
                        link_starts.fetch_add(1, Ordering::SeqCst);
                        if let (Some(db), false) = (resume_db, pump.started) {
                            // A resume after a target failover: the stream from the marker,
                            // in the db it was in there.
                            pump.reset(offset);
                            pump.cur_db = db;
                            if let (Some(sm), Some((skip, until))) = (&pump.slots, resume_skip.take()) {
                                sm.lock().unwrap_or_else(|p| p.into_inner()).resume(skip, until);
                            }
                            if let (Some(sm), true) = (&pump.slots, from_checkpoint) {
                                // The clean stop deleted the markers; every slot has the
                                // stream up to here.
                                sm.lock().unwrap_or_else(|p| p.into_inner()).all_dirty(offset);
                                pump.write_marker(&mut writer).await.map_err(|e| SyncError::Target(e.to_string()))?;
                            }
                            st.base = offset;
                            // A shard of a cluster source: what it had published before the
                            // failover is not all on the new master; it is up to `offset`.
                            writer.restart_shard();
                            writer.publish_applied(offset);
                            if opts.once {
                                let t = source_offset(&opts.replica.endpoint, opts.replica.connect_timeout).await
                                    .map_err(SyncError::Source)?;
                                once_target = Some(t);
                            }
                            st.streaming = true;
                            status.update(|s| {
                                s.set_phase(Phase::Stream);
                                s.snapshot.done = true;
                            });
                        }
                        // Asked again from the last data command: what follows it comes again.
                        pump.rewind(offset);
                        pump.replid = Some(id.clone());
                        st.replid = Some(id.clone());
                        // A resume (checkpoint, markers) or a source that failed over: the
                        // history /status names is this one.
                        status.update(|s| s.replid = Some(id.clone()));
                        info!(replid = %id, offset, "partial resync accepted: continuing the stream");
                        replid = Some(id);
                    }
                    SourceItem::Reconnecting { reason } => {
                        warn!(%reason, "source link dropped; reconnecting");
                        status.update(|s| s.last_error = Some(format!("source link dropped: {reason}")));
                    }
                }
            }
        }
    };

    // Drain: everything sent is acknowledged before we report the offset, within the
    // drain timeout (what is not acknowledged by then is simply not counted as applied).
    if let Some(h) = heartbeat {
        h.0.abort();
    }
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    // `drained`: false when the timeout cut the drain short. The target is then stuck
    // (a retry that does not end, a reply that does not come): nothing more is sent to it,
    // not even the deletion of the failover markers, which stay as a valid resume point.
    let (flushed, drained) = match tokio::time::timeout(opts.drain_timeout, writer.flush()).await {
        Ok(r) => (r, true),
        Err(_) => {
            warn!(
                in_flight = writer.in_flight(),
                "drain timeout ({:.0} s) reached: stopping with commands unacknowledged",
                opts.drain_timeout.as_secs_f64()
            );
            (Ok(()), false)
        }
    };
    // With a checkpoint file that cannot be written, a standalone target keeps its markers:
    // the next start resumes from them.
    let blocker = checkpoint_blocker(
        st,
        &pump,
        pump.applied(&writer),
        replid.as_deref(),
        target_run_id.as_deref(),
    );
    let keep_markers =
        (crash_markers || (opts.checkpoint.is_some() && pump.slots.is_some())) && blocker.is_some();
    if drained
        && flushed.is_ok()
        && outcome.is_ok()
        && !keep_markers
        && (!pump.marker_dbs.is_empty() || pump.slots.is_some())
    {
        if let Err(e) = pump.delete_markers(&mut writer).await {
            if st.failover.load(Ordering::Relaxed) {
                // The target lost writes it had acknowledged: stopping now would leave it
                // behind while saying the offset was applied. The markers stay.
                return Err(SyncError::Target(format!(
                    "{e}; this failover happened while ferry was stopping: the failover \
                     markers are kept, run `ferry sync` again to copy what the new masters lack"
                )));
            }
            warn!("could not delete the failover marker `ferry:applied` on the target: {e}");
        }
    }
    let a = pump.applied(&writer);
    applied.store(a, Ordering::Relaxed);
    update_status(&status, &link, &writer, &pump, snapshot.as_ref());
    status.update(|s| s.set_phase(Phase::Stopped));
    refresher.0.abort();
    if tokio::time::timeout(Duration::from_secs(2), link.shutdown())
        .await
        .is_err()
    {
        warn!("the replica link did not close in 2 s");
    }
    flushed.map_err(|e| SyncError::Target(e.to_string()))?;
    outcome?;
    if let Some(path) = &opts.checkpoint {
        match (&blocker, replid.as_deref(), target_run_id) {
            (None, Some(replid), Some(run_id)) => {
                let cp = crate::checkpoint::Checkpoint {
                    source: opts.replica.endpoint.addr(),
                    target: opts.writer.endpoint.addr(),
                    target_run_id: run_id,
                    replid: replid.to_string(),
                    offset: a,
                    db: pump.cur_db,
                };
                match crate::checkpoint::save(path, &cp) {
                    Ok(()) => {
                        info!(path = %path.display(), offset = cp.offset, db = cp.db, "checkpoint saved: the next start resumes from here")
                    }
                    Err(e) => warn!("no checkpoint saved ({e}): the next start copies everything"),
                }
            }
            (why, _, _) => {
                let why = why.as_deref().unwrap_or("no replication id");
                match keep_markers {
                    true => {
                        warn!(path = %path.display(), "no checkpoint saved ({why}): the failover markers stay on the target, and the next start resumes from them")
                    }
                    false => {
                        warn!(path = %path.display(), "no checkpoint saved ({why}): the next start copies everything")
                    }
                }
            }
        }
    }
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

/// The log line and systemd notice of a stop signal.
fn announce_stop(opts: &SyncOptions, notifier: &Notifier) {
    info!(
        "stopping: draining what is in flight (at most {:.0} s)",
        opts.drain_timeout.as_secs_f64()
    );
    notifier.send("STOPPING=1");
}

/// Why a clean stop cannot save an exact resume point (`None`: it can): the stream phase
/// must have been reached and everything received acknowledged (the db at the offset is
/// then known).
fn checkpoint_blocker(
    st: &RunState,
    pump: &StreamPump,
    applied: u64,
    replid: Option<&str>,
    target_run_id: Option<&str>,
) -> Option<String> {
    if !st.streaming {
        Some("the snapshot was not applied".into())
    } else if st.failover.load(Ordering::Relaxed) {
        Some("the target failed over".into())
    } else if applied != pump.processed {
        Some(format!(
            "the target acknowledged offset {applied} of {} received",
            pump.processed
        ))
    } else if replid.is_none() {
        Some("no replication id".into())
    } else if target_run_id.is_none() {
        Some("the target's run_id is unknown".into())
    } else {
        None
    }
}

/// A start with a checkpoint configured but no file, into a cluster target: the per-slot
/// markers of a run that did not stop cleanly say, slot by slot, how far the target is.
/// The plan is a failover's: the stream from the oldest marker, each slot skipping what it
/// has. `None`: no markers of one history on every slot this stream keeps (copy everything).
async fn resume_from_slot_markers(opts: &SyncOptions) -> Option<ResumeAfterFailover> {
    let seeds = RunState::default().seeds(opts);
    let markers = match failover::wait_for_cluster_any(&seeds, Duration::from_secs(10)).await {
        Ok(m) => m,
        Err(e) => {
            warn!("could not read the target's failover markers ({e}): copying everything");
            return None;
        }
    };
    let keeps = |s: u16| {
        opts.marker_slots
            .as_ref()
            .is_none_or(|r| r.iter().any(|&(a, b)| a <= s && s <= b))
    };
    // The history: that of the first slot this stream keeps.
    let first = (0..crate::cluster::SLOTS as u16).find(|&s| keeps(s))?;
    let replid = markers[first as usize].as_ref()?.0.clone();
    let mine: Vec<Option<(u64, u32)>> = markers
        .iter()
        .map(|m| {
            m.as_ref()
                .filter(|(id, _, _)| *id == replid)
                .map(|&(_, off, db)| (off, db))
        })
        .collect();
    let cut = mine.iter().flatten().copied().max_by_key(|&(off, _)| off)?;
    // What the crashed run had sent is unknown: every slot needs its commands from its
    // own marker on.
    let sent = vec![u64::MAX; crate::cluster::SLOTS];
    match failover::plan_resume(&mine, &sent, cut, keeps) {
        Some((skip, offset, db)) => {
            warn!(%replid, offset, until = cut.0, db, "no checkpoint file, but every slot of the target holds ferry's failover marker: the last run did not stop cleanly; asking the source for its stream from the oldest, each slot skipping what it has");
            Some(ResumeAfterFailover {
                from: crate::source::Resume { replid, offset },
                db,
                skip: Some((skip, cut.0)),
                checkpoint_of: None,
            })
        }
        None => {
            warn!(
                "slots of the target without a failover marker of the last run: copying everything"
            );
            None
        }
    }
}

/// The `run_id` of a target server (`INFO server`), to tell a restarted target.
async fn target_run_id(ep: &Endpoint, timeout: Duration) -> Option<String> {
    let text = crate::admin::info_section(ep, "server", timeout)
        .await
        .ok()?;
    crate::admin::info_field(&text, "run_id").map(str::to_string)
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
        // The target made progress: it had nothing to do, or something moved since the
        // last update.
        if st.in_flight == 0
            || st.commands != s.written.commands
            || applied != s.stream.applied_offset
            || s.target_progress_at.is_none()
        {
            s.target_progress_at = Some(Instant::now());
        }
        s.written.commands = st.commands;
        s.written.bytes = st.bytes;
        s.stream.received_offset = received;
        s.stream.applied_offset = applied;
        s.stream.lag_bytes = received.saturating_sub(applied);
        s.stream.commands = pump.commands;
        s.in_flight = st.in_flight as u64;
        s.spool_bytes = link.spooled_bytes();
        s.spool.bytes = s.spool_bytes;
        s.spool.disk_bytes = link.spool_disk_bytes();
        s.reconnects = link.reconnects();
        if let Some(r) = st.skipped.last() {
            s.last_error = Some(format!("{} ({}): {}", r.command, r.class, r.message));
        }
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

async fn refresh_link_status(
    stats: LinkStats,
    applied: Arc<AtomicU64>,
    link_starts: Arc<AtomicU64>,
    status: Arc<Status>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let received = stats.received_offset();
        let applied = applied.load(Ordering::Relaxed);
        let down = stats.reconnects() > link_starts.load(Ordering::SeqCst).saturating_sub(1);
        status.update(|s| {
            match (down, s.source_down_since) {
                (true, None) => s.source_down_since = Some(Instant::now()),
                (false, Some(_)) => s.source_down_since = None,
                _ => {}
            }
            s.spool_bytes = stats.spooled_bytes();
            s.spool.bytes = s.spool_bytes;
            s.spool.disk_bytes = stats.spool_disk_bytes();
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
            "snapshot: {} keys, {} read{}",
            thousands(s.snapshot.keys),
            human_bytes(s.snapshot.bytes_read),
            s.snapshot.bytes_total.map_or(String::new(), |t| format!(
                " of {} ({:.0}%)",
                human_bytes(t),
                100.0 * s.snapshot.bytes_read as f64 / t.max(1) as f64
            ))
        ),
        Phase::Stream => info!(
            "stream: applied offset {} (lag {} bytes{}), {} commands, {} in flight, spool {}, consistent={}",
            s.stream.applied_offset,
            thousands(s.stream.lag_bytes),
            s.stream.lag_seconds.map_or(String::new(), |l| format!(", {l:.1} s")),
            thousands(s.stream.commands),
            s.in_flight,
            human_bytes(s.spool.bytes),
            s.consistent
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
    db_map: crate::target::dbmap::DbMap,
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
            db_map: opts.sink.db_map.clone(),
        }
    }

    /// Decodes what `data` completes and sends the resulting commands.
    ///
    /// Decoding goes straight from `data`. An item left unfinished by the previous read
    /// waits in `buf`; it is completed from the start of `data`, appended in doubling
    /// pieces, and once the decoder is past it, decoding goes on in `data` itself: a read
    /// is not copied whole because the previous one ended inside a key (as almost every
    /// read does with small keys).
    async fn feed(
        &mut self,
        data: &[u8],
        writer: &mut Writer,
        pump: &mut StreamPump,
    ) -> Result<(), SnapError> {
        self.bytes += data.len() as u64;
        let mut rest = data;
        if !self.buf.is_empty() {
            // `buf` = what is left of the unfinished item, then `data[..given]`.
            let mut given = 0;
            loop {
                let more = self.buf.len().max(4096).min(data.len() - given);
                if more == 0 {
                    // All of `data` went in and the item is still not complete.
                    return Ok(());
                }
                self.buf.extend_from_slice(&data[given..given + more]);
                given += more;
                let tail = self.buf.len() - given;
                let last = given == data.len();
                let (used, done) = self.steps(true, &[], writer, pump, last).await?;
                if done {
                    self.buf.advance(used);
                    return Ok(());
                }
                if used >= tail {
                    rest = &data[used - tail..];
                    self.buf.clear();
                    break;
                }
                self.buf.advance(used);
            }
        }
        let (used, done) = self.steps(false, rest, writer, pump, true).await?;
        if !done {
            self.buf.extend_from_slice(&rest[used..]);
        }
        Ok(())
    }

    /// Decodes from `buf` (`owned`) or from `data` until the decoder needs more or
    /// the snapshot ends, sending the commands; the bytes used, and whether it ended.
    /// `batch_end`: small keys gathered for a batch are sent at the end too.
    async fn steps(
        &mut self,
        owned: bool,
        data: &[u8],
        writer: &mut Writer,
        pump: &mut StreamPump,
        batch_end: bool,
    ) -> Result<(usize, bool), SnapError> {
        let mut pos = 0;
        // The clock once per read, not once per key (a system call's worth on 1M keys).
        let now = now_ms();
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
                db_map,
                ..
            } = self;
            let input = if owned { &buf[pos..] } else { &data[pos..] };
            let (used, step) = dec.step(input).map_err(SnapError::Rdb)?;
            let mut done = false;
            let mut more = false;
            let mut no_raw = false;
            match step {
                Step::Event(ev) => {
                    let mut push = |c: Cmd| out.push(c);
                    match ev {
                        Event::Header { flavor: f, .. } => {
                            *flavor = f;
                            *rw = Some(KeyRewriter::new(rewrite, target, f, now_ms()));
                        }
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
                            let renamed = db_map.key(k.db as u32, k.key);
                            let k = rdb::KeyInfo {
                                db: u64::from(renamed.0),
                                key: renamed.1.as_deref().unwrap_or(k.key),
                                ..k
                            };
                            *keys += 1;
                            if k.expire_ms.is_some_and(|e| e <= now) {
                                *expired += 1;
                            }
                            let r = rw.get_or_insert_with(|| {
                                KeyRewriter::new(rewrite, target, *flavor, now)
                            });
                            r.set_now(now);
                            r.key(&k, &mut push);
                            no_raw = !r.wants_raw();
                        }
                        Event::Value(p) => {
                            if let Some(r) = rw.as_mut() {
                                r.piece(&p, &mut push);
                                no_raw = !r.wants_raw();
                            }
                        }
                        Event::KeyEnd(e) => {
                            if let Some(r) = rw.as_mut() {
                                r.end(&e, &mut push);
                            }
                        }
                        _ => {}
                    }
                }
                Step::NeedMore => more = true,
                Step::Done => done = true,
            }
            if no_raw {
                dec.stop_capture();
            }
            pos += used;
            if (more && batch_end) || done {
                // Small keys wait in the rewriter for a batch: not past this read.
                if let Some(r) = rw.as_mut() {
                    r.flush_pending(&mut |c| out.push(c));
                }
            }
            for c in out.drain(..) {
                writer
                    .send(c)
                    .await
                    .map_err(|e| SnapError::Target(e.to_string()))?;
            }
            if more || done {
                return Ok((pos, done));
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
    /// The slots its commands write (a cluster target with failover markers).
    slots: Option<failover::Slots>,
    /// Commands in `bytes` (replies to expect).
    n: u32,
    /// The db the transaction starts in.
    db: u32,
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
    /// `[sync] heartbeat_key`, when heartbeats are on.
    heartbeat_key: Option<Vec<u8>>,
    /// Heartbeats forwarded and not yet known applied: (offset after it, its time in ms).
    heartbeats: VecDeque<(u64, i64)>,
    /// The offset after the last command that changed data, for the link.
    data_offset: Option<Arc<AtomicU64>>,
    /// Where the keys of forwarded commands are listed (`/recent-keys`), and how they are
    /// found (the target's `COMMAND` key specs).
    recent: Option<(Arc<Status>, crate::cluster::KeyFinder)>,
    /// A target given by sentinels: the failover marker is kept (see
    /// [`crate::target::failover`]).
    marker: bool,
    /// The source's replication id (for the marker).
    replid: Option<String>,
    /// The offset of the last marker sent.
    marked: u64,
    /// Source dbs a marker was written in (deleted at a clean stop).
    marker_dbs: std::collections::BTreeSet<u32>,
    /// A cluster target: the per-slot markers (shared with `run`, which reads them
    /// after a failure).
    slots: Option<Arc<std::sync::Mutex<failover::SlotMarkers>>>,
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
            heartbeat_key: None,
            heartbeats: VecDeque::new(),
            data_offset: None,
            marker: false,
            replid: None,
            marked: 0,
            marker_dbs: Default::default(),
            slots: None,
            recent: None,
        }
    }

    /// The link continues from `offset`, before what was received: drop the partial
    /// command and carry on from there (only non-data commands lay after it).
    fn rewind(&mut self, offset: u64) {
        if offset < self.base + self.buf.len() as u64 && self.multi.is_none() {
            self.buf.clear();
            self.base = offset;
            self.processed = self.processed.min(offset);
        }
    }

    fn note_data(&self, end: u64) {
        if let Some(d) = &self.data_offset {
            d.store(end, Ordering::Relaxed);
        }
    }

    fn reset(&mut self, offset: u64) {
        self.note_data(offset);
        self.buf.clear();
        self.base = offset;
        self.processed = offset;
        self.multi = None;
        self.started = true;
        // A new history on the target: its first marker is due at once.
        self.marked = 0;
    }

    /// Writes the failover marker when the stream moved since the last one (per slot
    /// written since, on a cluster target).
    async fn write_marker(&mut self, writer: &mut Writer) -> Result<(), TargetError> {
        if let (Some(sm), Some(id)) = (self.slots.clone(), self.replid.clone()) {
            if self.multi.is_some() || !self.started {
                return Ok(());
            }
            let dirty = sm.lock().unwrap_or_else(|p| p.into_inner()).take_dirty();
            for slot in dirty {
                let mut b = Vec::with_capacity(96);
                failover::slot_marker_command(&mut b, slot, &id, self.processed, self.cur_db);
                sm.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .marked(slot, self.processed);
                writer
                    .send(slot_marker_cmd(slot, b, self.processed))
                    .await?;
            }
            return Ok(());
        }
        let Some(id) = self.replid.as_deref().filter(|_| self.marker) else {
            return Ok(());
        };
        if self.multi.is_some() || !self.started || self.processed <= self.marked {
            return Ok(());
        }
        let mut b = Vec::with_capacity(96);
        failover::marker_command(&mut b, id, self.processed, self.cur_db);
        self.marked = self.processed;
        self.marker_dbs.insert(self.cur_db);
        writer
            .send(Cmd {
                db: Some(self.cur_db),
                bytes: Bytes::from(b),
                n: 1,
                tag: self.processed,
                kind: CmdKind::Data { key: None },
            })
            .await
    }

    /// Deletes the marker of each db in `dbs` (a standalone target).
    async fn delete_db_markers(
        &mut self,
        writer: &mut Writer,
        dbs: impl IntoIterator<Item = u32>,
    ) -> Result<(), TargetError> {
        for db in dbs {
            let mut b = Vec::new();
            resp::encode_command(&mut b, &[b"DEL".as_slice(), failover::MARKER_KEY]);
            writer
                .send(Cmd {
                    db: Some(db),
                    bytes: Bytes::from(b),
                    n: 1,
                    tag: self.processed,
                    kind: CmdKind::Data { key: None },
                })
                .await?;
        }
        Ok(())
    }

    /// Deletes the failover markers (a clean stop).
    async fn delete_markers(&mut self, writer: &mut Writer) -> Result<(), TargetError> {
        if self.slots.is_some() {
            if !self.started {
                return Ok(());
            }
            self.delete_slot_markers(writer).await?;
            return writer.flush().await;
        }
        let dbs = std::mem::take(&mut self.marker_dbs);
        self.delete_db_markers(writer, dbs).await?;
        writer.flush().await
    }

    /// Deletes the marker of every slot this stream keeps (a cluster target).
    async fn delete_slot_markers(&mut self, writer: &mut Writer) -> Result<(), TargetError> {
        // Every slot: a run that resumed after a failover found them all written.
        let kept: Vec<u16> = {
            let sm = self
                .slots
                .as_ref()
                .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
            (0..crate::cluster::SLOTS as u16)
                .filter(|&s| sm.as_ref().is_none_or(|sm| sm.keeps(s)))
                .collect()
        };
        for slot in kept {
            let mut b = Vec::new();
            resp::encode_command(
                &mut b,
                &[b"DEL".as_slice(), &failover::slot_marker_key(slot)],
            );
            writer
                .send(slot_marker_cmd(slot, b, self.processed))
                .await?;
        }
        Ok(())
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
                    }
                    return Ok(());
                }
            }
            b"MULTI" => {
                self.multi = Some(Multi {
                    bytes: raw.to_vec(),
                    slots: None,
                    n: 1,
                    db: self.cur_db,
                });
                return Ok(());
            }
            b"EXEC" if self.multi.is_some() => {
                if let Some(mut m) = self.multi.take() {
                    if let Some(sm) = self.slots.clone() {
                        let mut sm = sm.lock().unwrap_or_else(|p| p.into_inner());
                        let sl = m.slots.clone().unwrap_or(failover::Slots::All);
                        if sm.skip(&sl, end) {
                            self.processed = end;
                            sm.sent(&sl, end);
                            sm.processed(end, self.cur_db);
                            return Ok(());
                        }
                        match (&sl, self.replid.as_deref()) {
                            (failover::Slots::One(slot), Some(id)) => {
                                failover::slot_marker_command(
                                    &mut m.bytes,
                                    *slot,
                                    id,
                                    end,
                                    self.cur_db,
                                );
                                m.n += 1;
                                sm.marked(*slot, end);
                            }
                            (failover::Slots::Many(slots), Some(id)) => {
                                // The cluster splits it per slot: each part carries its
                                // slot's marker, and a replay leaves out the parts a slot
                                // has already.
                                if let Some((b, n)) = sm.without_done(&m.bytes, m.n, end) {
                                    m.bytes = b;
                                    m.n = n;
                                }
                                let open: Vec<u16> = slots
                                    .iter()
                                    .copied()
                                    .filter(|&s| !sm.done(s, end))
                                    .collect();
                                for slot in open {
                                    failover::slot_marker_command(
                                        &mut m.bytes,
                                        slot,
                                        id,
                                        end,
                                        self.cur_db,
                                    );
                                    m.n += 1;
                                    sm.marked(slot, end);
                                }
                            }
                            _ => {}
                        }
                        sm.sent(&sl, end);
                        sm.processed(end, self.cur_db);
                    }
                    if let (true, Some(id)) = (self.marker, self.replid.as_deref()) {
                        failover::marker_command(&mut m.bytes, id, end, self.cur_db);
                        m.n += 1;
                        self.marked = end;
                        self.marker_dbs.insert(self.cur_db);
                    }
                    m.bytes.extend_from_slice(&raw);
                    m.n += 1;
                    // A SELECT inside the transaction leaves the connection in another db:
                    // the writer sees it and puts its own SELECT before the next command
                    // (a SELECT sent here would be applied again with the transaction when
                    // a retry sends that again).
                    writer
                        .send(send(Bytes::from(m.bytes), m.n, m.db, end))
                        .await
                        .map_err(|e| e.to_string())?;
                    self.note_data(end);
                }
            }
            _ => {
                if &name[..] == b"SET" && self.heartbeat_key.as_deref() == Some(arg(1)) {
                    if let Some(ms) = std::str::from_utf8(arg(2))
                        .ok()
                        .and_then(|v| v.parse().ok())
                    {
                        // Bounded: a heartbeat older than 64 others is no longer news.
                        if self.heartbeats.len() >= 64 {
                            self.heartbeats.pop_front();
                        }
                        self.heartbeats.push_back((end, ms));
                    }
                }
                // Its arguments and key positions, found once for /recent-keys and for
                // the failover markers' slots.
                let argv: Vec<&[u8]> = args
                    .iter()
                    .map(|f| f.as_bytes().unwrap_or_default())
                    .collect();
                let positions = self
                    .recent
                    .as_ref()
                    .and_then(|(_, f)| f.key_positions(&argv).ok());
                self.note_keys(&name, &argv, positions.as_deref());
                let raw = match self.rewrite(&name, args) {
                    Some(argv) => {
                        let mut b = Vec::new();
                        resp::encode_command(&mut b, &argv);
                        Bytes::from(b)
                    }
                    None => raw,
                };
                let mut replay_parts: Vec<Vec<u8>> = Vec::new();
                let (raw, n) = {
                    let slots = self.slots.clone();
                    let mut sm = slots
                        .as_ref()
                        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
                    // PUBLISH changes no data (and has no key: it would count as every slot).
                    let publish = matches!(&name[..], b"PUBLISH" | b"SPUBLISH");
                    let sl = sm.as_ref().filter(|_| !publish).map(|_| {
                        positions
                            .as_deref()
                            .map_or(failover::Slots::All, |p| failover::Slots::at(&argv, p))
                    });
                    if let Some(m) = self.multi.as_mut() {
                        if let Some(sl) = sl {
                            m.slots = Some(match m.slots.take() {
                                None => sl,
                                Some(prev) => prev.union(&sl),
                            });
                        }
                        m.bytes.extend_from_slice(&raw);
                        m.n += 1;
                        return Ok(());
                    }
                    match (sm.as_mut(), sl) {
                        (Some(sm), Some(sl)) => {
                            if sm.skip(&sl, end) {
                                // A resume after a failover: the slot has it already.
                                sm.sent(&sl, end);
                                sm.processed(end, self.cur_db);
                                self.processed = end;
                                return Ok(());
                            }
                            if let failover::Slots::Many(v) = &sl {
                                if v.iter().any(|&s| sm.done(s, end)) {
                                    // Some of its slots have it: only the other slots' parts.
                                    match sm.open_parts(&argv, end) {
                                        Some(parts) => {
                                            sm.sent(&sl, end);
                                            sm.processed(end, self.cur_db);
                                            replay_parts = parts;
                                        }
                                        None => warn!(
                                            offset = end,
                                            "a command whose slots only partly have it after the failover cannot be split; sent whole"
                                        ),
                                    }
                                }
                            }
                            if matches!(sl, failover::Slots::All)
                                && (0..crate::cluster::SLOTS as u16).any(|s| sm.done(s, end))
                            {
                                warn!(
                                    offset = end,
                                    command = %String::from_utf8_lossy(&name),
                                    "a command for every slot that some slots already have is applied again after the failover"
                                );
                            }
                            let wrapped = match (&sl, self.replid.as_deref()) {
                                (failover::Slots::One(slot), Some(id))
                                    if !failover::replay_safe(&name, args) =>
                                {
                                    // Applied twice it would differ: it carries its slot's
                                    // marker.
                                    let mut b = Vec::with_capacity(raw.len() + 96);
                                    resp::encode_command(&mut b, &[b"MULTI".as_slice()]);
                                    b.extend_from_slice(&raw);
                                    failover::slot_marker_command(
                                        &mut b,
                                        *slot,
                                        id,
                                        end,
                                        self.cur_db,
                                    );
                                    resp::encode_command(&mut b, &[b"EXEC".as_slice()]);
                                    sm.marked(*slot, end);
                                    Some(Bytes::from(b))
                                }
                                _ => None,
                            };
                            sm.sent(&sl, end);
                            sm.processed(end, self.cur_db);
                            match wrapped {
                                Some(b) => (b, 4),
                                None => (raw, 1),
                            }
                        }
                        _ => (raw, 1),
                    }
                };
                if !replay_parts.is_empty() {
                    for part in replay_parts {
                        writer
                            .send(send(Bytes::from(part), 1, self.cur_db, end))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    self.note_data(end);
                    self.processed = end;
                    return Ok(());
                }
                let (raw, n) = match (self.marker, self.replid.as_deref()) {
                    (true, Some(id)) if n == 1 && !failover::replay_safe(&name, args) => {
                        // Applied twice it would differ: it carries its own marker.
                        let mut b = Vec::with_capacity(raw.len() + 96);
                        resp::encode_command(&mut b, &[b"MULTI".as_slice()]);
                        b.extend_from_slice(&raw);
                        failover::marker_command(&mut b, id, end, self.cur_db);
                        resp::encode_command(&mut b, &[b"EXEC".as_slice()]);
                        self.marked = end;
                        self.marker_dbs.insert(self.cur_db);
                        (Bytes::from(b), 4)
                    }
                    _ => (raw, n),
                };
                writer
                    .send(send(raw, n, self.cur_db, end))
                    .await
                    .map_err(|e| e.to_string())?;
                if !matches!(&name[..], b"PUBLISH" | b"SPUBLISH") {
                    self.note_data(end);
                }
            }
        }
        self.processed = end;
        Ok(())
    }
}

impl StreamPump {
    /// Lists the keys a forwarded command writes, for `/recent-keys`.
    fn note_keys(&self, name: &[u8], argv: &[&[u8]], positions: Option<&[usize]>) {
        let Some((status, _)) = &self.recent else {
            return;
        };
        let now = now_ms();
        let mut recent = status.recent.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(name, b"FLUSHDB" | b"FLUSHALL" | b"SWAPDB") {
            recent.opaque(now);
            return;
        }
        match positions {
            Some(pos) => {
                for &i in pos {
                    if let Some(k) = argv.get(i) {
                        if self.heartbeat_key.as_deref() != Some(*k) {
                            recent.record(now, self.cur_db, k);
                        }
                    }
                }
            }
            None => recent.opaque(now),
        }
    }

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

/// The heartbeat lag from the heartbeats the target has applied.
struct HeartbeatLag {
    interval: Option<Duration>,
    /// The newest heartbeat applied: its time on the source (ms) and its measured lag.
    last: Option<(i64, f64)>,
}

impl HeartbeatLag {
    fn new(interval: Option<Duration>) -> HeartbeatLag {
        HeartbeatLag {
            interval,
            last: None,
        }
    }

    /// Takes the heartbeats at or below the applied offset `a` off the queue.
    fn applied(&mut self, queue: &mut VecDeque<(u64, i64)>, a: u64) {
        let now = now_ms();
        while let Some(&(end, ms)) = queue.front() {
            if end > a {
                break;
            }
            queue.pop_front();
            self.last = Some((ms, (now - ms).max(0) as f64 / 1000.0));
        }
    }

    /// The lag measured at the newest arrival, or more when the next heartbeat is overdue
    /// (the stream is stuck): the time since the newest applied heartbeat, less one interval.
    fn seconds(&self) -> Option<f64> {
        let (ms, measured) = self.last?;
        let since = (now_ms() - ms).max(0) as f64 / 1000.0;
        let overdue = since - self.interval?.as_secs_f64();
        Some(measured.max(overdue))
    }
}

/// Writes the heartbeat key on the source every interval, until aborted.
async fn write_heartbeats(ep: Endpoint, hb: HeartbeatConfig, timeout: Duration) {
    let mut tick = tokio::time::interval(hb.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let px = (hb.interval.as_millis() * 10).max(1000).to_string();
    let mut failing = false;
    loop {
        tick.tick().await;
        let now = now_ms().to_string();
        let argv: [&[u8]; 5] = [
            b"SET",
            hb.key.as_bytes(),
            now.as_bytes(),
            b"PX",
            px.as_bytes(),
        ];
        match crate::admin::command(&ep, &argv, timeout).await {
            Ok(_) if failing => {
                failing = false;
                info!(key = %hb.key, "heartbeat writes on the source work again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                warn!(key = %hb.key, "heartbeat write on the source failed: {e}");
            }
            Err(_) => {}
        }
    }
}

/// `1,204,331`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The snapshot's progress bar (indicatif), drawn on standard error: a spinner with the
/// bytes and rate while the size is unknown (diskless transfers), a bar with an ETA once
/// the source has announced it.
fn new_bar() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(bar_style(
        "{spinner} snapshot {binary_bytes} {binary_bytes_per_sec} {msg}",
    ));
    bar
}

fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}

fn draw_bar(bar: &indicatif::ProgressBar, snap: &Snapshot, total: Option<u64>) {
    if let Some(t) = total {
        if bar.length() != Some(t) {
            bar.set_length(t);
            bar.set_style(bar_style(
                "snapshot [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            ));
        }
    }
    bar.set_position(snap.bytes);
    let secs = snap.started.elapsed().as_secs_f64().max(1e-3);
    bar.set_message(format!(
        "{} keys ({} keys/s)",
        thousands(snap.keys),
        thousands((snap.keys as f64 / secs) as u64)
    ));
}

/// The source's current `master_repl_offset`, over a separate connection.
pub async fn source_offset(ep: &Endpoint, timeout: Duration) -> Result<u64, String> {
    crate::admin::repl_offset(ep, timeout).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_204_331), "1,204,331");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn heartbeat_lag_counts_only_applied_heartbeats_and_grows_when_overdue() {
        let mut lag = HeartbeatLag::new(Some(Duration::from_secs(1)));
        assert_eq!(lag.seconds(), None);
        let now = now_ms();
        let mut q: VecDeque<(u64, i64)> = [(100, now - 500), (200, now - 300)].into();
        // Only the first is applied (offset 150): its lag, about 0.5 s.
        lag.applied(&mut q, 150);
        assert_eq!(q.len(), 1);
        let l = lag.seconds().unwrap();
        assert!((0.5..5.0).contains(&l), "{l}");
        lag.applied(&mut q, 200);
        assert!(q.is_empty());
        // A heartbeat 10 s old and nothing newer: overdue by about 9 s.
        let mut lag = HeartbeatLag::new(Some(Duration::from_secs(1)));
        let mut q: VecDeque<(u64, i64)> = [(10, now - 10_000)].into();
        lag.applied(&mut q, 10);
        assert!(lag.seconds().unwrap() >= 9.0);
    }
}
