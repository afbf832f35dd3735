//! A cluster source: one replica link per master, in one process.
//!
//! The masters are found from the seed's slot map; each gets a whole [`sync::run`] of its
//! own (its link, its offsets, its snapshot, its stream, its writer or cluster router),
//! and its own entry under `shards` in `/status`. The top-level status adds them up and
//! is `consistent` only when every shard is. Cluster-internal commands in the streams
//! are dropped and a `MIGRATE`'s delete on the exporting shard is recognised (see
//! [`crate::cluster::guard`]). The source's slot map is polled: a slot that changes
//! owner (a migration or a failover on the source) is logged and counted
//! (`errors.source_slot_moves`), and a master ferry has no link to is reported.
//!
//! A standalone source (INFO `cluster_enabled:0`, or `[source] cluster = "no"`) goes to
//! [`sync::run`] unchanged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::guard::MigrationGuard;
use crate::cluster::Topology;
use crate::endpoint::Endpoint;
use crate::status::{Phase, Status, StatusData};
use crate::sync::{self, SyncError, SyncOptions, SyncOutcome};
use crate::target::cluster::fetch_topology;
use crate::target::ServerInfo;

/// Runs a sync from a cluster source, or [`sync::run`] for a standalone one. `force`:
/// the `[source] cluster` setting (`None`: as INFO says).
pub async fn run(
    opts: SyncOptions,
    status: Arc<Status>,
    shutdown: watch::Receiver<bool>,
    force: Option<bool>,
) -> Result<SyncOutcome, SyncError> {
    let mut opts = opts;
    let timeout = opts.replica.connect_timeout;
    if opts.replica.endpoint.sentinel.is_some() {
        // Resolved now for the questions asked at start; the link resolves again on
        // every reconnect, and so follows a failover.
        opts.replica.endpoint = crate::sentinel::resolve(&opts.replica.endpoint, timeout)
            .await
            .map_err(SyncError::Source)?;
        info!(master = %opts.replica.endpoint.addr(), "source master from the sentinels");
    }
    // A URL listing several cluster nodes: the first that answers, on both sides.
    opts.replica.endpoint = opts.replica.endpoint.first_reachable(timeout).await;
    opts.writer.endpoint = opts.writer.endpoint.first_reachable(timeout).await;
    let ep = opts.replica.endpoint.clone();
    let cluster = match force {
        Some(c) => c,
        None => {
            let text = crate::admin::info_section(&ep, "default", timeout)
                .await
                .map_err(SyncError::Source)?;
            text.lines().any(|l| l.trim() == "cluster_enabled:1")
        }
    };
    if !cluster {
        return sync::run(opts, status, shutdown).await;
    }
    let text = crate::admin::info_section(&ep, "server", timeout)
        .await
        .map_err(SyncError::Source)?;
    let info = ServerInfo::from_info(&text)
        .ok_or_else(|| SyncError::Source(format!("{}: INFO names no version", ep.addr())))?;
    let topo = fetch_topology(&ep, &info, timeout)
        .await
        .map_err(SyncError::Source)?;
    if topo.masters.is_empty() {
        return Err(SyncError::Source(format!(
            "{}: the cluster has no master serving slots",
            ep.addr()
        )));
    }
    let uncovered = topo.uncovered();
    if uncovered > 0 {
        warn!(
            uncovered,
            "source cluster: some slots are served by no master"
        );
    }
    info!(
        masters = topo.masters.len(),
        "cluster source: one replica link per master"
    );

    let sources: Vec<Endpoint> = topo.masters.iter().map(|m| ep.node(&m.addr)).collect();
    let guard = Arc::new(MigrationGuard::new(sources.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut outer = shutdown.clone();
    let forward = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            while outer.changed().await.is_ok() {
                if *outer.borrow() {
                    let _ = stop_tx.send(true);
                    return;
                }
            }
        })
    };
    let mut shards = Vec::new();
    for (i, source) in sources.into_iter().enumerate() {
        let mut o = opts.clone();
        o.replica.endpoint = source;
        o.marker_slots = Some(topo.masters[i].slots.clone());
        o.replica.spool_dir = opts.replica.spool_dir.join(format!("shard-{i}"));
        o.checkpoint = opts
            .checkpoint
            .as_deref()
            .map(|p| crate::checkpoint::for_shard(p, &o.replica.endpoint.addr()));
        o.sink.shard = Some((i, guard.clone()));
        let st = Status::new(o.replica.endpoint.to_string(), status.snapshot().target);
        let handle = tokio::spawn(sync::run(o, st.clone(), stop_rx.clone()));
        shards.push((st, Some(handle)));
    }

    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let mut moves = 0u64;
    let mut known = topo.clone();
    let mut first_error: Option<SyncError> = None;
    let mut outcomes = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                aggregate(&status, &shards, moves, &guard);
                for (_, h) in shards.iter_mut() {
                    if h.as_ref().is_some_and(|h| h.is_finished()) {
                        let r = match h.take() {
                            Some(h) => h.await,
                            None => continue,
                        };
                        let r = r.unwrap_or_else(|e| Err(SyncError::Source(format!("a shard task failed: {e}"))));
                        match r {
                            Ok(o) => outcomes.push(o),
                            Err(e) => {
                                if first_error.is_none() {
                                    warn!("a shard stopped with an error; stopping the others: {e}");
                                    first_error = Some(e);
                                }
                                let _ = stop_tx.send(true);
                            }
                        }
                    }
                }
                if shards.iter().all(|(_, h)| h.is_none()) {
                    break;
                }
            }
            _ = poll.tick() => {
                if let Ok(now) = fetch_topology(&ep, &info, timeout).await {
                    moves += report_changes(&known, &now, &topo);
                    known = now;
                }
            }
        }
    }
    forward.abort();
    aggregate(&status, &shards, moves, &guard);
    status.update(|s| s.phase = Phase::Stopped);
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(SyncOutcome {
        applied_offset: outcomes.iter().map(|o| o.applied_offset).sum(),
        replid: None,
    })
}

/// Logs what changed in the source's slot map; returns the number of slots that changed
/// owner.
fn report_changes(before: &Topology, now: &Topology, linked: &Topology) -> u64 {
    let (a, b) = (before.slot_table(), now.slot_table());
    let owner = |t: &Topology, i: Option<u16>| i.map(|i| t.masters[i as usize].addr.to_string());
    let mut moved = 0u64;
    let mut example = None;
    for s in 0..a.len() {
        let (x, y) = (owner(before, a[s]), owner(now, b[s]));
        if x != y {
            moved += 1;
            example.get_or_insert((s, x, y));
        }
    }
    if let Some((slot, from, to)) = example {
        warn!(
            slots = moved,
            first_slot = slot,
            from = from.as_deref().unwrap_or("-"),
            to = to.as_deref().unwrap_or("-"),
            "source cluster: slots changed owner (migration or failover on the source); \
             keys that moved arrive through the new owner's stream"
        );
    }
    for m in &now.masters {
        if !linked.masters.iter().any(|l| l.addr == m.addr)
            && !before.masters.iter().any(|l| l.addr == m.addr)
        {
            warn!(master = %m.addr, "source cluster: a master ferry has no replica link to now serves slots; restart ferry to read it");
        }
    }
    moved
}

/// A shard's status and its task (taken once finished).
type Shard = (
    Arc<Status>,
    Option<tokio::task::JoinHandle<Result<SyncOutcome, SyncError>>>,
);

fn aggregate(status: &Status, shards: &[Shard], moves: u64, guard: &MigrationGuard) {
    let data: Vec<StatusData> = shards.iter().map(|(s, _)| s.snapshot()).collect();
    status.update(|s| {
        s.phase = if data.iter().any(|d| d.phase == Phase::Handshake) {
            Phase::Handshake
        } else if data.iter().any(|d| d.phase == Phase::Snapshot) {
            Phase::Snapshot
        } else if data.iter().all(|d| d.phase == Phase::Stopped) {
            Phase::Stopped
        } else {
            Phase::Stream
        };
        s.consistent = !data.is_empty() && data.iter().all(|d| d.consistent);
        s.snapshot.bytes_total = data
            .iter()
            .map(|d| d.snapshot.bytes_total)
            .sum::<Option<u64>>();
        s.snapshot.bytes_read = data.iter().map(|d| d.snapshot.bytes_read).sum();
        s.snapshot.keys = data.iter().map(|d| d.snapshot.keys).sum();
        s.snapshot.keys_skipped_expired =
            data.iter().map(|d| d.snapshot.keys_skipped_expired).sum();
        s.snapshot.seconds = data.iter().map(|d| d.snapshot.seconds).fold(0.0, f64::max);
        s.snapshot.done = data.iter().all(|d| d.snapshot.done);
        s.stream.received_offset = data.iter().map(|d| d.stream.received_offset).sum();
        s.stream.applied_offset = data.iter().map(|d| d.stream.applied_offset).sum();
        s.stream.lag_bytes = data.iter().map(|d| d.stream.lag_bytes).sum();
        s.stream.commands = data.iter().map(|d| d.stream.commands).sum();
        s.in_flight = data.iter().map(|d| d.in_flight).sum();
        s.spool_bytes = data.iter().map(|d| d.spool_bytes).sum();
        s.reconnects = data.iter().map(|d| d.reconnects).sum();
        s.errors.clear();
        for d in &data {
            for (k, v) in &d.errors {
                *s.errors.entry(k.clone()).or_default() += v;
            }
        }
        if moves > 0 {
            s.errors.insert("source_slot_moves".into(), moves);
        }
        for (name, v) in [
            (
                "migrated_keys_seen",
                guard.moved_keys.load(Ordering::Relaxed),
            ),
            ("migration_waits", guard.waits.load(Ordering::Relaxed)),
            (
                "migration_wait_timeouts",
                guard.wait_timeouts.load(Ordering::Relaxed),
            ),
        ] {
            if v > 0 {
                s.errors.insert(name.into(), v);
            }
        }
        let dropped = guard.dropped_deletes.load(Ordering::Relaxed);
        if dropped > 0 {
            s.errors.insert("migration_deletes_dropped".into(), dropped);
        }
        s.last_error = data.iter().find_map(|d| d.last_error.clone());
        s.shards = data;
    });
}
