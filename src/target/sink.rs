//! What the sync writes to: one [`Writer`] for a standalone target, a [`ClusterWriter`]
//! for a cluster (detected from INFO `cluster_enabled`, or forced), with the db mapping
//! ([`DbMap`]) applied to the verbatim commands of the replication stream on the way.
//!
//! The snapshot's keys are mapped before they are rewritten (`sync` renames them, so
//! that helper keys stay in the renamed key's slot); a `Cmd` that names its key is
//! therefore taken as already mapped. A `Cmd` without a key (a verbatim stream command)
//! carries the source db: its db is mapped, `SELECT`s in it are mapped, and with a
//! prefix its keys (found by the target's command table) are renamed.

use bytes::Bytes;

use super::cluster::{ClusterOptions, ClusterWriter};
use super::cmd::{command_args, split_commands, Cmd, CmdKind};
use super::dbmap::DbMap;
use super::error::TargetError;
use super::info::ServerInfo;
use super::writer::{Writer, WriterConfig, WriterStats};
use std::sync::Arc;

use crate::cluster::guard::{MigrationGuard, MIGRATION_WAIT};
use crate::cluster::KeyFinder;
use crate::resp;

/// Whether the target is treated as a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterMode {
    /// As INFO `cluster_enabled` says.
    #[default]
    Auto,
    Yes,
    No,
}

/// How the sink is set up beyond one writer.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    pub cluster: ClusterMode,
    pub cluster_opts: ClusterOptions,
    pub db_map: DbMap,
    pub db_collision: super::dbmap::Collision,
    /// For one shard of a cluster source: its number and the guard shared by all shards.
    pub shard: Option<(usize, Arc<MigrationGuard>)>,
}

enum Inner {
    Single(Box<Writer>),
    Cluster(Box<ClusterWriter>),
}

/// A standalone writer or a cluster router, behind one interface.
pub struct Sink {
    inner: Inner,
    map: DbMap,
    /// For renaming keys (a mapping with prefixes).
    keys: Option<KeyFinder>,
    info: ServerInfo,
    /// The server connected to (a sentinel endpoint resolved).
    endpoint: crate::endpoint::Endpoint,
    shard: Option<(usize, Arc<MigrationGuard>)>,
    /// This shard's source offset up to which its `RESTORE-ASKING`s were waited for.
    migration_cover: u64,
    connect_timeout: std::time::Duration,
    /// Cluster-internal commands dropped from a cluster source's stream.
    pub dropped_internal: u64,
}

macro_rules! both {
    ($self:ident, $w:ident => $e:expr) => {
        match &mut $self.inner {
            Inner::Single($w) => $e,
            Inner::Cluster($w) => $e,
        }
    };
}

impl Sink {
    pub async fn connect(mut cfg: WriterConfig, opts: SinkOptions) -> Result<Sink, TargetError> {
        let timeout = cfg.connect_timeout;
        if cfg.endpoint.sentinel.is_some() {
            let target = cfg.endpoint.to_string();
            cfg.endpoint = crate::sentinel::resolve(&cfg.endpoint, timeout)
                .await
                .map_err(|message| TargetError::Unsupported { target, message })?;
            tracing::info!(master = %cfg.endpoint.addr(), "target master from the sentinels");
        }
        // A URL listing several cluster nodes: the first that answers (again on every
        // start of the writer, so a node that died since is passed over).
        cfg.endpoint = cfg.endpoint.first_reachable(timeout).await;
        let seed = Writer::connect(cfg.clone()).await?;
        let mut info = seed.info().clone();
        let cluster = match opts.cluster {
            ClusterMode::Auto => info.cluster,
            ClusterMode::Yes => true,
            ClusterMode::No => false,
        };
        let inner = if cluster {
            drop(seed);
            info.cluster = true;
            if cfg.endpoint.db.is_some_and(|d| d != 0) {
                return Err(TargetError::Invalid {
                    target: cfg.endpoint.to_string(),
                    message: "a cluster has db 0 only: drop the db from the target URL".into(),
                });
            }
            let cw = ClusterWriter::connect(cfg.clone(), opts.cluster_opts.clone(), info.clone())
                .await?;
            Inner::Cluster(Box::new(cw))
        } else {
            Inner::Single(Box::new(seed))
        };
        let keys = if opts.db_map.has_prefix() {
            let r = crate::admin::calls(&cfg.endpoint, &[&[b"COMMAND"]], timeout)
                .await
                .map_err(|message| TargetError::Unsupported {
                    target: cfg.endpoint.to_string(),
                    message,
                })?;
            let kf = r
                .first()
                .filter(|f| !f.is_error())
                .ok_or_else(|| "COMMAND failed".to_string())
                .and_then(KeyFinder::from_command_reply)
                .map_err(|message| TargetError::Unsupported {
                    target: cfg.endpoint.to_string(),
                    message: format!("{message}: needed to rename keys for [transform] db_map"),
                })?;
            Some(kf)
        } else {
            None
        };
        Ok(Sink {
            inner,
            map: opts.db_map,
            keys,
            info,
            endpoint: cfg.endpoint.clone(),
            shard: opts.shard,
            migration_cover: 0,
            connect_timeout: timeout,
            dropped_internal: 0,
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The server connected to (for a target given by sentinels, the master they named).
    pub fn endpoint(&self) -> &crate::endpoint::Endpoint {
        &self.endpoint
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    pub fn cluster(&self) -> Option<&ClusterWriter> {
        match &self.inner {
            Inner::Cluster(c) => Some(c),
            Inner::Single(_) => None,
        }
    }

    pub fn cluster_mut(&mut self) -> Option<&mut ClusterWriter> {
        match &mut self.inner {
            Inner::Cluster(c) => Some(c),
            Inner::Single(_) => None,
        }
    }

    pub fn target(&self) -> &str {
        match &self.inner {
            Inner::Single(w) => w.target(),
            Inner::Cluster(c) => c.target(),
        }
    }

    pub async fn send(&mut self, cmd: Cmd) -> Result<(), TargetError> {
        let cmd = if self.shard.is_some() && cmd.kind == (CmdKind::Data { key: None }) {
            if cmd.tag > self.migration_cover && is_restore_asking(&cmd.bytes) {
                self.wait_for_other_shards(cmd.tag).await?;
            }
            match self.shard_filter(cmd) {
                Some(c) => c,
                None => return Ok(()),
            }
        } else {
            cmd
        };
        // Snapshot Cmds (a known key, or a batch of small keys) were mapped when their keys
        // were decoded; only verbatim stream commands are mapped here.
        let mapped =
            cmd.kind.key().is_some() || matches!(cmd.kind, CmdKind::Script | CmdKind::Batch);
        let cmd = if self.map.is_identity() || mapped {
            cmd
        } else {
            self.map_verbatim(cmd)?
        };
        both!(self, w => w.send(cmd).await)
    }

    /// For one shard of a cluster source in its stream phase: tells the other shards up
    /// to which source offset this one's stream is applied on the target.
    pub fn publish_applied(&self, offset: u64) {
        if let Some((s, g)) = &self.shard {
            g.publish_applied(*s, offset);
        }
    }

    /// For one shard of a cluster source that starts over with a new snapshot.
    pub fn restart_shard(&self) {
        if let Some((s, g)) = &self.shard {
            g.restart(*s);
        }
    }

    /// Before a migrated key's `RESTORE-ASKING` (at source offset `tag` of this shard):
    /// waits until the other shards are applied up to their source offsets of now, so
    /// that no write the exporting shard made before the migration lands after it (see
    /// [`MigrationGuard`]). Bounded by [`MIGRATION_WAIT`]; drives this shard's own writer
    /// first. Every `RESTORE-ASKING` this shard had produced by now is covered.
    async fn wait_for_other_shards(&mut self, tag: u64) -> Result<(), TargetError> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some((shard, guard)) = self.shard.clone() else {
            return Ok(());
        };
        let timeout = self.connect_timeout;
        let own = match guard.source(shard) {
            Some(ep) => crate::admin::repl_offset(ep, timeout).await.ok(),
            None => None,
        };
        let mut wanted = Vec::new();
        for (other, ep) in guard.others(shard) {
            match crate::admin::repl_offset(ep, timeout).await {
                Ok(o) => wanted.push((other, o)),
                Err(e) => tracing::warn!(
                    shard = other,
                    "a migrated key arrived; could not read that shard's offset, so its \
                     older writes are not waited for: {e}"
                ),
            }
        }
        self.migration_cover = own.unwrap_or(tag).max(tag);
        if wanted.iter().all(|&(o, off)| guard.applied(o) >= off) {
            return Ok(());
        }
        guard.waits.fetch_add(1, Relaxed);
        both!(self, w => w.flush().await)?;
        // Everything this shard sent before the import is applied now: tell the others,
        // which may be waiting for this shard in turn (two migrations in opposite
        // directions at once).
        guard.publish_applied(shard, self.acked_tag().min(tag));
        let deadline = tokio::time::Instant::now() + MIGRATION_WAIT;
        loop {
            let behind: Vec<(usize, u64)> = wanted
                .iter()
                .copied()
                .filter(|&(o, off)| guard.applied(o) < off)
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                guard.wait_timeouts.fetch_add(1, Relaxed);
                tracing::warn!(
                    shard,
                    ?behind,
                    "a migrated key arrived while other shards were not applied up to the \
                     migration (still in their snapshot, or their link is slow); gave up \
                     waiting after {} s: an older write of the exporting shard may land \
                     after the migrated value (verify the slot's keys)",
                    MIGRATION_WAIT.as_secs()
                );
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// A verbatim command of a cluster source's shard: cluster-internal commands are
    /// dropped, migrations recorded, and the stale delete of a migration dropped (see
    /// [`MigrationGuard`]). `None`: nothing to send.
    fn shard_filter(&mut self, cmd: Cmd) -> Option<Cmd> {
        let (shard, guard) = self.shard.clone()?;
        let args = command_args(&cmd.bytes);
        let name = args.first()?.to_ascii_uppercase();
        match &name[..] {
            b"CLUSTER" | b"ASKING" | b"READONLY" | b"READWRITE" => {
                self.dropped_internal += 1;
                tracing::debug!(shard, "cluster-internal command from the source dropped");
                None
            }
            b"RESTORE-ASKING" => {
                if let Some(k) = args.get(1) {
                    guard.imported(shard, k);
                }
                if args.len() < 4 || args[3..].iter().any(|a| a.eq_ignore_ascii_case(b"REPLACE")) {
                    return Some(cmd);
                }
                // The target may hold the key from the exporting shard's history.
                let mut a = args.clone();
                a.push(b"REPLACE");
                let mut b = Vec::with_capacity(cmd.bytes.len() + 20);
                resp::encode_command(&mut b, &a);
                Some(Cmd {
                    bytes: Bytes::from(b),
                    ..cmd
                })
            }
            b"DEL" | b"UNLINK" => {
                let keep: Vec<&[u8]> = args[1..]
                    .iter()
                    .copied()
                    .filter(|k| {
                        let stale = guard.is_stale_delete(shard, k);
                        if !stale {
                            guard.deleted_by_owner(shard, k);
                        }
                        !stale
                    })
                    .collect();
                if keep.len() + 1 == args.len() {
                    return Some(cmd);
                }
                tracing::info!(shard, dropped = args.len() - 1 - keep.len(), "a slot migration's delete on the exporting shard dropped (the key lives on in the importing shard)");
                if keep.is_empty() {
                    return None;
                }
                let mut a: Vec<&[u8]> = vec![args[0]];
                a.extend(keep);
                let mut b = Vec::new();
                resp::encode_command(&mut b, &a);
                Some(Cmd {
                    bytes: Bytes::from(b),
                    ..cmd
                })
            }
            _ => Some(cmd),
        }
    }

    /// Maps the db, the SELECTs and (with a prefix) the keys of verbatim commands.
    fn map_verbatim(&self, cmd: Cmd) -> Result<Cmd, TargetError> {
        let Some(src_db) = cmd.db else {
            return Ok(cmd);
        };
        let (tdb, prefix) = self.map.map(src_db);
        if cmd.n == 1 && !prefix.is_empty() && is_flushdb(&cmd.bytes) {
            // The target db holds other source dbs too: delete this db's prefix only, on
            // every master of a cluster.
            let mut c = Cmd::from_args(Some(tdb), &flush_prefix_args(prefix), CmdKind::Script);
            c.tag = cmd.tag;
            return Ok(c);
        }
        let simple = prefix.is_empty() && !(cmd.n > 1 && self.map.has_prefix());
        let has_select = cmd.n > 1 && contains_select(&cmd.bytes);
        if simple && !has_select {
            return Ok(Cmd {
                db: Some(tdb),
                ..cmd
            });
        }
        let ranges =
            split_commands(&cmd.bytes, cmd.n as usize).ok_or_else(|| TargetError::Invalid {
                target: self.target().to_string(),
                message: format!(
                    "a Cmd's bytes do not hold the {} RESP commands it claims",
                    cmd.n
                ),
            })?;
        let mut out = Vec::with_capacity(cmd.bytes.len() + 16);
        let mut db = src_db;
        for r in ranges {
            let args = command_args(&cmd.bytes[r.clone()]);
            let name = args
                .first()
                .map(|n| n.to_ascii_uppercase())
                .unwrap_or_default();
            if name == b"SELECT" {
                if let Some(d) = args
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse().ok())
                {
                    db = d;
                    let t = self.map.map(d).0.to_string();
                    resp::encode_command(&mut out, &[b"SELECT".as_slice(), t.as_bytes()]);
                    continue;
                }
            }
            let (_, p) = self.map.map(db);
            if !p.is_empty() && name == b"FLUSHDB" {
                resp::encode_command(&mut out, &flush_prefix_args(p));
                continue;
            }
            if p.is_empty() || self.keys.is_none() {
                out.extend_from_slice(&cmd.bytes[r]);
                continue;
            }
            let pos = self
                .keys
                .as_ref()
                .and_then(|k| k.key_positions(&args).ok())
                .unwrap_or_default();
            let mut owned: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
            for i in pos {
                // ferry's failover markers keep their names (they are read back by them).
                if !super::failover::is_marker_key(args[i]) {
                    owned[i] = [p, args[i]].concat();
                }
            }
            resp::encode_command(&mut out, &owned);
        }
        Ok(Cmd {
            db: Some(tdb),
            bytes: Bytes::from(out),
            ..cmd
        })
    }

    pub async fn push(&mut self) -> Result<(), TargetError> {
        both!(self, w => w.push().await)
    }

    pub async fn flush(&mut self) -> Result<(), TargetError> {
        both!(self, w => w.flush().await)
    }

    pub async fn recv(&mut self) -> Result<(), TargetError> {
        both!(self, w => w.recv().await)
    }

    pub fn acked_tag(&self) -> u64 {
        match &self.inner {
            Inner::Single(w) => w.acked_tag(),
            Inner::Cluster(c) => c.acked_tag(),
        }
    }

    pub fn in_flight(&self) -> usize {
        match &self.inner {
            Inner::Single(w) => w.in_flight(),
            Inner::Cluster(c) => c.in_flight(),
        }
    }

    pub fn stats(&self) -> WriterStats {
        match &self.inner {
            Inner::Single(w) => w.stats(),
            Inner::Cluster(c) => c.stats(),
        }
    }
}

/// Deletes every key that starts with a prefix (SCAN MATCH + DEL, in a script so that it
/// runs in order with the stream). Effects replication is switched on where the server
/// has it (3.2–4.0 refuse writes after SCAN otherwise).
const FLUSH_PREFIX_SCRIPT: &str = "\
if redis.replicate_commands then redis.replicate_commands() end \
local c = '0' local n = 0 \
repeat \
  local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) \
  c = r[1] \
  for _, k in ipairs(r[2]) do redis.call('DEL', k) n = n + 1 end \
until c == '0' \
return n";

fn flush_prefix_args(prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut pattern = Vec::with_capacity(prefix.len() + 2);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern.push(b'*');
    vec![
        b"EVAL".to_vec(),
        FLUSH_PREFIX_SCRIPT.as_bytes().to_vec(),
        b"0".to_vec(),
        pattern,
    ]
}

fn is_restore_asking(b: &[u8]) -> bool {
    b.windows(14)
        .take(32)
        .any(|w| w.eq_ignore_ascii_case(b"RESTORE-ASKING"))
}

fn is_flushdb(bytes: &[u8]) -> bool {
    command_args(bytes)
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"FLUSHDB"))
}

fn contains_select(b: &[u8]) -> bool {
    b.windows(8).any(|w| w.eq_ignore_ascii_case(b"\r\nSELECT"))
}
