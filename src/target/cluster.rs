//! A cluster target: one [`Writer`] per master, each command sent to the master that
//! owns its keys' slot.
//!
//! # Routing
//!
//! The slot map is read at start (`CLUSTER SHARDS` on 7.0+, else `CLUSTER SLOTS`, else
//! `CLUSTER NODES`), and the key positions of every command from the target's own
//! `COMMAND` reply ([`KeyFinder`]). A [`Cmd`] built by ferry names its key (every command
//! in it touches that key or a helper in its slot), so it is routed by that key alone;
//! a verbatim command from the replication stream is parsed and its keys found.
//! Multi-key commands whose keys fall in several slots are split per slot where the
//! result is the same ([`crate::cluster::split`]), else handled by [`CrossSlot`].
//! `FLUSHALL`, `FLUSHDB`, `SCRIPT …`, `FUNCTION …` go to every master. `SELECT` never
//! reaches a cluster (a cluster has db 0 only; dbs are mapped before the router). A
//! `MULTI`/`EXEC` whose keys share a slot stays one transaction on its node (a cluster
//! refuses a transaction across slots, even on one node); otherwise it is split per
//! slot by the policy and reported.
//!
//! # Redirects
//!
//! The writers run with `redirects` on: a `MOVED` or `ASK` reply does not stop them,
//! the command is handed back. Before anything new is sent, the router then drains
//! every writer (so every command that was in flight has its answer, and every
//! redirected one is known), reads the slot map again (and applies what `MOVED` said),
//! and sends the redirected commands again in their original order: to the new owner
//! for `MOVED`, as `ASKING` + the command to the named node for `ASK`. Rounds repeat
//! (with a growing pause after the first two) until nothing is redirected.
//! `TRYAGAIN` and `CLUSTERDOWN` are retry-class errors of the writer itself (drain,
//! back off, resend in order).
//!
//! ## Why the order per slot holds
//!
//! Commands of one slot go to one writer, which keeps their order, until the router
//! changes the map; it changes the map only after draining every writer. A redirected
//! command was refused, so were all later commands of its slot on the same node (the
//! node no longer owns the slot; during a migration, a key that is not on the node keeps
//! being refused while its earlier commands are), and they all come back in order.
//! A periodic refresh that finds a new map drains first too.
//!
//! # Failovers
//!
//! A slot that passes from a master to a node that an earlier map listed as that
//! master's replica changed hands by a failover, not a migration. Replication is
//! asynchronous: unless the failover was a graceful `CLUSTER FAILOVER`, the new master
//! may lack writes the old one acknowledged, and following `MOVED` would lose them
//! silently. With [`ClusterWriter::stop_on_failover`] (the sync keeps per-slot failover
//! markers), the router then stops with [`TargetError::Failover`] before sending anything
//! to the new master, and the sync resumes from the markers the new masters hold
//! ([`super::failover`]). Without markers it follows the map and says so in the log.
//!
//! # Acknowledged tags
//!
//! Each `Cmd` gets an entry in a queue, in the order the router received them, with the
//! number of its pieces (per-slot parts, copies for every master) not yet acknowledged
//! by their node. A piece counts as acknowledged when its writer's `acked_tag` passes it
//! and it was not redirected. [`ClusterWriter::acked_tag`] is the tag of the last entry
//! of the fully acknowledged prefix: the offset that every node has applied.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cmd::{command_args, for_each_command, split_commands, Cmd, CmdKind};
use super::error::{Rejection, TargetError};
use super::info::ServerInfo;
use super::writer::{Redirected, SkipRecord, Writer, WriterConfig, WriterStats, SKIP_RECORDS_KEPT};
use crate::cluster::{key_slot, split, topology, KeyFinder, NodeAddr, Redirect, Split, Topology};
use crate::endpoint::Endpoint;
use crate::resp;
use crate::util::escape_bytes;

/// What to do with a command whose keys are in several slots and that cannot be split
/// with the same result (and with a transaction across slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrossSlot {
    /// Split what can be split (a transaction into one per slot, `MSETNX` into
    /// `MSET`s), reported; skip and record the rest.
    #[default]
    Split,
    /// Skip and record.
    Skip,
    /// Stop with an error.
    Stop,
}

/// Settings of the router beyond one writer's.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub cross_slot: CrossSlot,
    /// How often the slot map is read again while nothing redirects.
    pub refresh_interval: Duration,
    /// How long a slot may stay without a master (a failover) before the router gives up.
    pub unowned_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            cross_slot: CrossSlot::Split,
            refresh_interval: Duration::from_secs(1),
            unowned_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters of the router itself.
#[derive(Debug, Clone, Default)]
pub struct RouterStats {
    pub moved: u64,
    pub ask: u64,
    pub map_refreshes: u64,
    pub map_changes: u64,
    /// Commands split per slot (same result).
    pub split: u64,
    /// Transactions (or MSETNX) split across slots: no longer atomic.
    pub split_non_atomic: u64,
    pub cross_slot_skipped: u64,
    /// Slot maps in which a master's slots passed to its replica.
    pub failovers: u64,
    pub masters: usize,
}

struct Node {
    addr: NodeAddr,
    writer: Writer,
    /// (writer tag, order id) of the pieces sent and not yet acknowledged, in order.
    sent: VecDeque<(u64, u64)>,
    /// Redirected pieces handed back by the writer, by writer tag, until `sent` reaches them.
    /// One entry can come back more than once (its first redirect, then a part of it that
    /// was refused for a while and redirected on its resend), in that order.
    redirected: HashMap<u64, Vec<Redirected>>,
}

/// A redirected piece waiting to be sent again.
struct Pending {
    oid: u64,
    r: Redirected,
}

/// Commands that go to every master.
fn is_broadcast(name: &[u8]) -> bool {
    matches!(name, b"FLUSHALL" | b"FLUSHDB" | b"SCRIPT" | b"FUNCTION")
}

/// The router over one writer per master.
pub struct ClusterWriter {
    cfg: WriterConfig,
    opts: ClusterOptions,
    info: ServerInfo,
    target: String,
    keys: KeyFinder,
    topo: Topology,
    slot_node: Vec<Option<usize>>,
    nodes: Vec<Node>,
    /// (tag, pieces not yet acknowledged) per Cmd, from order id `base` on.
    order: VecDeque<(u64, u32)>,
    base: u64,
    wseq: u64,
    pending: Vec<Pending>,
    acked: u64,
    last_refresh: Instant,
    since_check: u32,
    router: RouterStats,
    skipped: VecDeque<SkipRecord>,
    skipped_total: u64,
    cross_errors: u64,
    /// Replica → its master, from every map installed (a node that became a master with
    /// slots is taken out): tells a failover from a migration.
    replica_of: HashMap<NodeAddr, NodeAddr>,
    /// Set (and the router stops) when a failover is seen; `None`: follow it.
    failover_stop: Option<Arc<AtomicBool>>,
}

/// A command's part for one slot: (slot, goes to every master, arguments).
type Piece = (Option<u16>, bool, Vec<Vec<u8>>);
/// Commands of one slot of a split transaction.
type Group = (Option<u16>, bool, Vec<Vec<Vec<u8>>>);

impl ClusterWriter {
    /// Reads the slot map and the command table from the seed (`cfg.endpoint`, whose
    /// INFO said `info`), and connects a writer to every master.
    pub async fn connect(
        mut cfg: WriterConfig,
        opts: ClusterOptions,
        info: ServerInfo,
    ) -> Result<ClusterWriter, TargetError> {
        cfg.redirects = true;
        let target = cfg.endpoint.to_string();
        let unsupported = |message: String| TargetError::Unsupported {
            target: target.clone(),
            message,
        };
        let topo = fetch_topology(&cfg.endpoint, &info, cfg.connect_timeout)
            .await
            .map_err(&unsupported)?;
        let uncovered = topo.uncovered();
        if uncovered > 0 {
            return Err(unsupported(format!(
                "{uncovered} of 16384 slots are served by no master (is cluster_state ok?)"
            )));
        }
        let reply = crate::admin::calls(&cfg.endpoint, &[&[b"COMMAND"]], cfg.connect_timeout)
            .await
            .map_err(&unsupported)?;
        let keys = match reply.first() {
            Some(f) if !f.is_error() => KeyFinder::from_command_reply(f).map_err(&unsupported)?,
            other => {
                return Err(unsupported(format!(
                "COMMAND failed ({other:?}): ferry needs the target's command table to find keys"
            )))
            }
        };
        let mut cw = ClusterWriter {
            cfg,
            opts,
            info,
            target,
            keys,
            topo: Topology::default(),
            slot_node: vec![None; crate::cluster::SLOTS],
            nodes: Vec::new(),
            order: VecDeque::new(),
            base: 0,
            wseq: 0,
            pending: Vec::new(),
            acked: 0,
            last_refresh: Instant::now(),
            since_check: 0,
            router: RouterStats::default(),
            skipped: VecDeque::new(),
            skipped_total: 0,
            cross_errors: 0,
            replica_of: HashMap::new(),
            failover_stop: None,
        };
        cw.install(topo).await?;
        tracing::info!(
            target = %cw.target,
            masters = cw.topo.masters.len(),
            "cluster target: slot map read, one connection per master"
        );
        Ok(cw)
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// The masters and their slots as last read.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    pub fn router_stats(&self) -> RouterStats {
        let mut r = self.router.clone();
        r.masters = self.topo.masters.len();
        r
    }

    async fn node_for(&mut self, addr: &NodeAddr) -> Result<usize, TargetError> {
        if let Some(i) = self.nodes.iter().position(|n| &n.addr == addr) {
            return Ok(i);
        }
        let mut cfg = self.cfg.clone();
        cfg.endpoint = self.cfg.endpoint.node(addr);
        let writer = Writer::connect(cfg).await?;
        self.nodes.push(Node {
            addr: addr.clone(),
            writer,
            sent: VecDeque::new(),
            redirected: HashMap::new(),
        });
        Ok(self.nodes.len() - 1)
    }

    /// From now on, a failover seen in the slot map sets `flag` and stops the router
    /// with [`TargetError::Failover`] (the caller resumes from its failover markers).
    pub fn stop_on_failover(&mut self, flag: Arc<AtomicBool>) {
        self.failover_stop = Some(flag);
    }

    /// Whether a slot passing from node `from` to node `to` is a failover: `to` was
    /// `from`'s replica.
    fn is_failover(&self, from: usize, to: usize) -> bool {
        from != to && self.replica_of.get(&self.nodes[to].addr) == Some(&self.nodes[from].addr)
    }

    /// A slot passing from node `from` to node `to`: a failover when `to` was `from`'s
    /// replica and now answers as a master (a map read right after the cluster was
    /// formed can list a replica as its shard's master for a moment). Stops the router
    /// (with `stop_on_failover`), else logs it.
    async fn check_handover(
        &mut self,
        slot: u16,
        from: usize,
        to: usize,
    ) -> Result<(), TargetError> {
        if !self.is_failover(from, to) {
            return Ok(());
        }
        let ep = self.cfg.endpoint.node(&self.nodes[to].addr);
        match super::failover::role(&ep, self.cfg.connect_timeout).await {
            Ok(r) if r == "master" => {}
            other => {
                tracing::debug!(target = %self.target, node = %ep.addr(), role = ?other, "a map gives a replica its master's slots; it is not a master (yet)");
                return Ok(());
            }
        }
        let (old, new) = (&self.nodes[from].addr, &self.nodes[to].addr);
        self.router.failovers += 1;
        let message = format!(
            "a failover: slot {slot} passed from master {old} to its replica {new}, which may \
             lack writes the old master acknowledged"
        );
        match &self.failover_stop {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                Err(TargetError::Failover {
                    target: self.target.clone(),
                    message,
                })
            }
            None => {
                tracing::warn!(target = %self.target, "{message}; following it without failover markers (with db_map key prefixes ferry keeps none): such writes are lost");
                Ok(())
            }
        }
    }

    /// Makes `topo` the slot map (connecting new masters). A failover in it stops the
    /// router first when [`Self::stop_on_failover`] asked so.
    async fn install(&mut self, topo: Topology) -> Result<(), TargetError> {
        let mut table = vec![None; crate::cluster::SLOTS];
        for m in &topo.masters {
            let i = self.node_for(&m.addr).await?;
            for &(a, b) in &m.slots {
                for s in a..=b {
                    table[s as usize] = Some(i);
                }
            }
        }
        // The first slot that passed to a replica of its master tells (once per map).
        let handover =
            self.slot_node
                .iter()
                .zip(&table)
                .enumerate()
                .find_map(|(s, (&old, &new))| match (old, new) {
                    (Some(o), Some(n)) if self.is_failover(o, n) => Some((s as u16, o, n)),
                    _ => None,
                });
        if let Some((slot, from, to)) = handover {
            self.check_handover(slot, from, to).await?;
        }
        if !self.topo.masters.is_empty() && self.topo != topo {
            self.router.map_changes += 1;
            tracing::info!(target = %self.target, masters = topo.masters.len(), "cluster slot map changed");
        }
        for m in &topo.masters {
            if !m.slots.is_empty() {
                self.replica_of.remove(&m.addr);
            }
        }
        for m in &topo.masters {
            for r in &m.replicas {
                self.replica_of.insert(r.clone(), m.addr.clone());
            }
        }
        self.slot_node = table;
        self.topo = topo;
        self.last_refresh = Instant::now();
        Ok(())
    }

    /// Reads the map from any known master (then the seed).
    async fn read_map(&mut self) -> Result<Topology, TargetError> {
        self.router.map_refreshes += 1;
        let mut eps: Vec<Endpoint> = self
            .topo
            .masters
            .iter()
            .map(|m| self.cfg.endpoint.node(&m.addr))
            .collect();
        eps.push(self.cfg.endpoint.clone());
        let mut last = String::new();
        for ep in eps {
            match fetch_topology(&ep, &self.info, self.cfg.connect_timeout).await {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(TargetError::Unsupported {
            target: self.target.clone(),
            message: format!("cannot read the slot map from any node: {last}"),
        })
    }

    /// Periodic refresh: a changed map is installed after every writer is drained.
    async fn maybe_refresh(&mut self) -> Result<(), TargetError> {
        if self.last_refresh.elapsed() < self.opts.refresh_interval {
            return Ok(());
        }
        let topo = self.read_map().await?;
        if topo == self.topo {
            self.last_refresh = Instant::now();
            return Ok(());
        }
        self.drain().await?;
        self.install(topo).await?;
        self.repair().await
    }

    /// Takes the redirected pieces of node `i` and what it acknowledged.
    fn collect(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        for r in node.writer.take_redirected() {
            node.redirected.entry(r.tag).or_default().push(r);
        }
        let acked = node.writer.acked_tag();
        while let Some(&(w, oid)) = node.sent.front() {
            if w > acked {
                break;
            }
            node.sent.pop_front();
            match node.redirected.remove(&w) {
                Some(rs) => self
                    .pending
                    .extend(rs.into_iter().map(|r| Pending { oid, r })),
                None => {
                    if let Some(e) = oid
                        .checked_sub(self.base)
                        .and_then(|k| self.order.get_mut(k as usize))
                    {
                        e.1 = e.1.saturating_sub(1);
                    }
                }
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(&(tag, 0)) = self.order.front() {
            self.order.pop_front();
            self.base += 1;
            self.acked = self.acked.max(tag);
        }
    }

    /// Sends one piece of order entry `oid` to node `i`.
    async fn submit(
        &mut self,
        i: usize,
        mut cmd: Cmd,
        oid: u64,
        fresh: bool,
    ) -> Result<(), TargetError> {
        if fresh {
            if let Some(e) = self.order.get_mut((oid - self.base) as usize) {
                e.1 += 1;
            }
        }
        self.wseq += 1;
        cmd.tag = self.wseq;
        cmd.db = Some(0);
        self.nodes[i].sent.push_back((self.wseq, oid));
        let r = self.nodes[i].writer.send(cmd).await;
        self.collect(i);
        r
    }

    fn new_entry(&mut self, tag: u64) -> u64 {
        // Held at 1 until all its pieces are sent.
        self.order.push_back((tag, 1));
        self.base + self.order.len() as u64 - 1
    }

    fn release(&mut self, oid: u64) {
        if let Some(e) = oid
            .checked_sub(self.base)
            .and_then(|k| self.order.get_mut(k as usize))
        {
            e.1 = e.1.saturating_sub(1);
        }
        self.advance();
    }

    /// The node that owns `slot`; waits (refreshing the map) while none does.
    async fn owner(&mut self, slot: u16) -> Result<usize, TargetError> {
        if let Some(i) = self.slot_node[slot as usize] {
            return Ok(i);
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let topo = self.read_map().await?;
            self.drain().await?;
            self.install(topo).await?;
            if let Some(i) = self.slot_node[slot as usize] {
                return Ok(i);
            }
            if started.elapsed() > self.opts.unowned_timeout {
                return Err(TargetError::Unsupported {
                    target: self.target.clone(),
                    message: format!(
                        "slot {slot} has had no master for {:?}",
                        self.opts.unowned_timeout
                    ),
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    fn first_master(&self) -> usize {
        self.slot_node[0].unwrap_or(0)
    }

    /// Queues `cmd`, routed by slot (see the module doc).
    pub async fn send(&mut self, cmd: Cmd) -> Result<(), TargetError> {
        if cmd.db.is_some_and(|d| d != 0) {
            return Err(TargetError::Invalid {
                target: self.target.clone(),
                message: format!(
                    "db {} on a cluster target, which has only db 0: map the source dbs \
                     with [transform] db_map",
                    cmd.db.unwrap_or(0)
                ),
            });
        }
        // The rare paths are boxed: their futures are large, and inlined they would make
        // every call of this one copy a large state machine (seen as memmove in profiles).
        if !self.pending.is_empty() {
            Box::pin(self.repair()).await?;
        }
        self.since_check += 1;
        if self.since_check >= 256 {
            self.since_check = 0;
            if self.last_refresh.elapsed() >= self.opts.refresh_interval {
                Box::pin(self.maybe_refresh()).await?;
            }
        }
        let oid = self.new_entry(cmd.tag);
        if cmd.kind == CmdKind::Batch {
            // Small snapshot keys, one command each: one batch per master, order kept
            // within each (the keys are all different).
            if let Some(parts) = self.split_batch(&cmd) {
                let mut r = Ok(());
                for (i, c) in parts {
                    r = self.submit(i, c, oid, true).await;
                    if r.is_err() {
                        break;
                    }
                }
                self.release(oid);
                return r;
            }
        }
        // The common case: a Cmd built by ferry names its key.
        let fast = match (&cmd.kind, cmd.kind.key()) {
            (CmdKind::Script, _) | (_, None) => None,
            (_, Some(k)) => self.slot_node[key_slot(k) as usize],
        };
        let r = match fast {
            Some(i) => self.submit(i, cmd, oid, true).await,
            None => Box::pin(self.route(cmd, oid)).await,
        };
        self.release(oid);
        r
    }

    /// A `Batch` split into one `Batch` per master by each command's key (its first
    /// argument); `None` when a slot has no known owner (then `route` does it the slow way).
    fn split_batch(&self, cmd: &Cmd) -> Option<Vec<(usize, Cmd)>> {
        let mut parts: Vec<(usize, Vec<u8>, u32)> = Vec::new();
        let mut unowned = false;
        let share = cmd.bytes.len() / self.topo.masters.len().max(1) + cmd.bytes.len() / 8 + 64;
        // One pass, no argument list per command: this runs for every small key of a
        // snapshot into a cluster.
        for_each_command(&cmd.bytes, cmd.n as usize, |r, key| {
            let Some(node) = key.and_then(|k| self.slot_node[key_slot(k) as usize]) else {
                unowned = true;
                return;
            };
            let c = &cmd.bytes[r];
            match parts.iter_mut().find(|p| p.0 == node) {
                Some(p) => {
                    p.1.extend_from_slice(c);
                    p.2 += 1;
                }
                None => {
                    let mut b = Vec::with_capacity(share);
                    b.extend_from_slice(c);
                    parts.push((node, b, 1));
                }
            }
        })?;
        if unowned {
            return None;
        }
        Some(
            parts
                .into_iter()
                .map(|(i, bytes, n)| {
                    (
                        i,
                        Cmd {
                            db: cmd.db,
                            bytes: Bytes::from(bytes),
                            n,
                            tag: cmd.tag,
                            kind: CmdKind::Batch,
                        },
                    )
                })
                .collect(),
        )
    }

    async fn route(&mut self, cmd: Cmd, oid: u64) -> Result<(), TargetError> {
        match &cmd.kind {
            CmdKind::Script => {
                for i in self.master_nodes() {
                    self.submit(i, cmd.clone(), oid, true).await?;
                }
                return Ok(());
            }
            kind => {
                if let Some(k) = kind.key() {
                    let i = self.owner(key_slot(k)).await?;
                    return self.submit(i, cmd, oid, true).await;
                }
            }
        }
        let ranges =
            split_commands(&cmd.bytes, cmd.n as usize).ok_or_else(|| TargetError::Invalid {
                target: self.target.clone(),
                message: format!(
                    "a Cmd's bytes do not hold the {} RESP commands it claims",
                    cmd.n
                ),
            })?;
        let commands: Vec<Vec<&[u8]>> = ranges
            .iter()
            .map(|r| command_args(&cmd.bytes[r.clone()]))
            .collect();
        let transaction = matches!(cmd.kind, CmdKind::Transaction { .. })
            && commands
                .first()
                .is_some_and(|a| a.first().is_some_and(|n| n.eq_ignore_ascii_case(b"MULTI")));
        if !transaction {
            let mut pieces = Vec::new();
            for args in &commands {
                self.pieces(args, &mut pieces, cmd.tag)?;
            }
            return self.send_pieces(pieces, oid).await;
        }
        // MULTI … EXEC (and the SELECTs a 7.0+ source puts in it).
        let mut pieces = Vec::new();
        for args in &commands {
            let name = args
                .first()
                .map(|n| n.to_ascii_uppercase())
                .unwrap_or_default();
            if matches!(&name[..], b"MULTI" | b"EXEC" | b"SELECT") {
                continue;
            }
            self.pieces(args, &mut pieces, cmd.tag)?;
        }
        let mut slots: Vec<u16> = pieces.iter().filter_map(|p| p.0).collect();
        slots.sort_unstable();
        slots.dedup();
        let broadcast = pieces.iter().any(|p| p.1);
        if slots.len() <= 1 && !broadcast {
            let node = match slots.first() {
                Some(&s) => self.owner(s).await?,
                None => self.first_master(),
            };
            let c = transaction_cmd(pieces.iter().map(|p| &p.2), slots.first().copied());
            return self.submit(node, c, oid, true).await;
        }
        match self.opts.cross_slot {
            CrossSlot::Split => {
                self.router.split_non_atomic += 1;
                let n = self.router.split_non_atomic;
                if n.is_power_of_two() {
                    tracing::warn!(
                        target = %self.target,
                        slots = slots.len(),
                        count = n,
                        "a MULTI/EXEC from the source spans several cluster slots: applied as one \
                         transaction per slot (not atomic across them); logged at powers of two"
                    );
                }
                // Group per slot, keeping the order within each.
                let mut groups: Vec<Group> = Vec::new();
                for (slot, bc, args) in pieces {
                    match groups.iter_mut().find(|g| g.0 == slot && g.1 == bc && !bc) {
                        Some(g) => g.2.push(args),
                        None => groups.push((slot, bc, vec![args])),
                    }
                }
                for (slot, bc, cmds) in groups {
                    if bc || cmds.len() == 1 {
                        for a in cmds {
                            self.send_pieces(vec![(slot, bc, a)], oid).await?;
                        }
                        continue;
                    }
                    let node = match slot {
                        Some(s) => self.owner(s).await?,
                        None => self.first_master(),
                    };
                    let c = transaction_cmd(cmds.iter(), slot);
                    self.submit(node, c, oid, true).await?;
                }
                Ok(())
            }
            policy => {
                let message = format!("a MULTI/EXEC spans {} cluster slots", slots.len());
                self.cross_slot(policy, "MULTI", None, message, cmd.tag)
            }
        }
    }

    /// The per-slot pieces of one command.
    fn pieces(
        &mut self,
        args: &[&[u8]],
        out: &mut Vec<Piece>,
        tag: u64,
    ) -> Result<(), TargetError> {
        let Some(name) = args.first().map(|n| n.to_ascii_uppercase()) else {
            return Ok(());
        };
        let owned = |a: &[&[u8]]| a.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
        if name == b"SELECT" {
            return Ok(());
        }
        if is_broadcast(&name) {
            out.push((None, true, owned(args)));
            return Ok(());
        }
        let pos = match self.keys.key_positions(args) {
            Ok(p) => p,
            Err(e) => {
                // Sent to one master, which answers for itself (an unknown command is
                // recorded by the writer like on any target).
                tracing::debug!(target = %self.target, "{e}; sent to one master");
                out.push((None, false, owned(args)));
                return Ok(());
            }
        };
        match split(args, &pos, self.opts.cross_slot == CrossSlot::Split) {
            Split::Whole(slot) => out.push((slot, false, owned(args))),
            Split::PerSlot(parts) => {
                self.router.split += 1;
                if name == b"MSETNX" {
                    self.router.split_non_atomic += 1;
                    let n = self.router.split_non_atomic;
                    if n.is_power_of_two() {
                        tracing::warn!(target = %self.target, count = n, "MSETNX across slots applied as one MSET per slot (it succeeded on the source); logged at powers of two");
                    }
                }
                for (s, a) in parts {
                    out.push((Some(s), false, a));
                }
            }
            Split::CrossSlot(slots) => {
                let key = pos.first().map(|&p| Bytes::copy_from_slice(args[p]));
                let message = format!(
                    "{} has keys in {} cluster slots and cannot be split with the same result",
                    String::from_utf8_lossy(&name),
                    slots.len()
                );
                let policy = match self.opts.cross_slot {
                    CrossSlot::Split => CrossSlot::Skip,
                    p => p,
                };
                self.cross_slot(policy, &String::from_utf8_lossy(&name), key, message, tag)?;
            }
        }
        Ok(())
    }

    async fn send_pieces(&mut self, pieces: Vec<Piece>, oid: u64) -> Result<(), TargetError> {
        for (slot, bc, args) in pieces {
            let kind = CmdKind::Data { key: None };
            let c = Cmd::from_args(Some(0), &args, kind);
            if bc {
                for i in self.master_nodes() {
                    self.submit(i, c.clone(), oid, true).await?;
                }
                continue;
            }
            let i = match slot {
                Some(s) => self.owner(s).await?,
                None => self.first_master(),
            };
            self.submit(i, c, oid, true).await?;
        }
        Ok(())
    }

    fn cross_slot(
        &mut self,
        policy: CrossSlot,
        command: &str,
        key: Option<Bytes>,
        message: String,
        tag: u64,
    ) -> Result<(), TargetError> {
        self.cross_errors += 1;
        if policy == CrossSlot::Stop {
            return Err(TargetError::Rejected(Box::new(Rejection {
                target: self.target.clone(),
                class: "CROSSSLOT",
                command: command.to_string(),
                key: key
                    .map(|k| format!(" of key `{}`", escape_bytes(&k)))
                    .unwrap_or_default(),
                message: format!("CROSSSLOT {message}"),
                hint: " ([transform] cross_slot = \"skip\" records such commands and goes on)",
            })));
        }
        self.router.cross_slot_skipped += 1;
        tracing::warn!(target = %self.target, command, key = %key.as_ref().map(|k| escape_bytes(k)).unwrap_or_default(), "skipped: {message}");
        self.skipped_total += 1;
        if self.skipped.len() == SKIP_RECORDS_KEPT {
            self.skipped.pop_front();
        }
        self.skipped.push_back(SkipRecord {
            class: "CROSSSLOT",
            command: command.to_string(),
            key,
            db: Some(0),
            message,
            tag,
        });
        Ok(())
    }

    fn master_nodes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.slot_node.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Waits until every writer has answered everything (without sending redirects again).
    async fn drain(&mut self) -> Result<(), TargetError> {
        for i in 0..self.nodes.len() {
            let r = self.nodes[i].writer.flush().await;
            self.collect(i);
            r?;
        }
        Ok(())
    }

    /// Sends redirected commands again, round after round, until none is redirected.
    async fn repair(&mut self) -> Result<(), TargetError> {
        let mut round = 0u32;
        loop {
            self.drain().await?;
            if self.pending.is_empty() {
                return Ok(());
            }
            round += 1;
            if round > 2 {
                tokio::time::sleep(backoff(round - 2)).await;
            }
            if round > 200 {
                return Err(TargetError::Unsupported {
                    target: self.target.clone(),
                    message: format!(
                        "commands still redirected after {} rounds (last: {})",
                        round - 1,
                        self.pending[0].r.error
                    ),
                });
            }
            let mut pending = std::mem::take(&mut self.pending);
            pending.sort_by_key(|p| p.oid);
            // The map first, then what MOVED said on top (it may be newer).
            let topo = self.read_map().await?;
            self.install(topo).await?;
            let mut sends = Vec::with_capacity(pending.len());
            for p in pending {
                let Some(Redirect { ask, slot, addr }) = Redirect::parse(&p.r.error) else {
                    return Err(TargetError::Protocol {
                        target: self.target.clone(),
                        offset: 0,
                        message: format!("a redirect without slot and address: {}", p.r.error),
                    });
                };
                let i = self.node_for(&addr).await?;
                if ask {
                    self.router.ask += 1;
                } else {
                    self.router.moved += 1;
                    if let Some(o) = self.slot_node[slot as usize] {
                        self.check_handover(slot, o, i).await?;
                    }
                    self.slot_node[slot as usize] = Some(i);
                }
                sends.push((i, ask, p));
            }
            for (i, ask, p) in sends {
                let Redirected {
                    db, bytes, n, kind, ..
                } = p.r;
                let cmd = if ask {
                    // `ASKING` lets only the next command in: one before `MULTI` covers a
                    // transaction; other pieces get one before each of their commands.
                    let mut b = Vec::with_capacity(bytes.len() + 20 * n as usize);
                    let (kind, n) = match kind {
                        CmdKind::Transaction { key } => {
                            resp::encode_command(&mut b, &[b"ASKING".as_slice()]);
                            b.extend_from_slice(&bytes);
                            (CmdKind::Transaction { key }, n + 1)
                        }
                        k => {
                            let ranges = split_commands(&bytes, n as usize).ok_or_else(|| {
                                TargetError::Invalid {
                                    target: self.target.clone(),
                                    message: format!(
                                        "a redirected piece does not hold the {n} commands it claims"
                                    ),
                                }
                            })?;
                            for r in ranges {
                                resp::encode_command(&mut b, &[b"ASKING".as_slice()]);
                                b.extend_from_slice(&bytes[r]);
                            }
                            // The kind stays: the writer skips the ASKING replies where it
                            // matters (reorder check, the guard's RENAMENX).
                            (k, 2 * n)
                        }
                    };
                    Cmd {
                        db,
                        bytes: Bytes::from(b),
                        n,
                        tag: 0,
                        kind,
                    }
                } else {
                    Cmd {
                        db,
                        bytes,
                        n,
                        tag: 0,
                        kind,
                    }
                };
                self.submit(i, cmd, p.oid, false).await?;
            }
        }
    }

    /// Writes every queued byte on every connection.
    pub async fn push(&mut self) -> Result<(), TargetError> {
        for n in &mut self.nodes {
            n.writer.push().await?;
        }
        Ok(())
    }

    /// Waits until everything sent is answered, redirects resolved.
    pub async fn flush(&mut self) -> Result<(), TargetError> {
        self.repair().await?;
        self.maybe_refresh().await
    }

    /// Waits for some replies (one connection), for a `select!` loop.
    pub async fn recv(&mut self) -> Result<(), TargetError> {
        let busiest = (0..self.nodes.len()).max_by_key(|&i| self.nodes[i].writer.in_flight());
        if let Some(i) = busiest {
            let r = self.nodes[i].writer.recv().await;
            self.collect(i);
            r?;
        }
        Ok(())
    }

    /// The source tag every node has applied (see the module doc).
    pub fn acked_tag(&self) -> u64 {
        self.acked
    }

    /// Commands not yet acknowledged, redirected ones included.
    pub fn in_flight(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.writer.in_flight() + n.redirected.values().map(Vec::len).sum::<usize>())
            .sum::<usize>()
            + self.pending.len()
    }

    /// The writers' counters added up, with the router's cross-slot records.
    pub fn stats(&self) -> WriterStats {
        let mut s = WriterStats::default();
        for n in &self.nodes {
            let w = n.writer.stats();
            s.commands += w.commands;
            s.bytes += w.bytes;
            for (k, v) in w.errors_by_class {
                *s.errors_by_class.entry(k).or_default() += v;
            }
            s.skipped.extend(w.skipped);
            s.skipped_total += w.skipped_total;
            s.retried += w.retried;
            s.in_flight += w.in_flight;
        }
        if self.cross_errors > 0 {
            *s.errors_by_class.entry("CROSSSLOT").or_default() += self.cross_errors;
        }
        // Not errors, but what the operator must be able to see in /status.
        if self.router.split > 0 {
            s.errors_by_class
                .insert("split_per_slot", self.router.split);
        }
        if self.router.failovers > 0 {
            s.errors_by_class
                .insert("target_failovers", self.router.failovers);
        }
        if self.router.split_non_atomic > 0 {
            s.errors_by_class
                .insert("split_not_atomic", self.router.split_non_atomic);
        }
        s.skipped.extend(self.skipped.iter().cloned());
        s.skipped_total += self.skipped_total;
        s.in_flight = self.in_flight();
        s
    }
}

/// `MULTI`, the commands, `EXEC` as one transaction Cmd.
fn transaction_cmd<'a>(cmds: impl Iterator<Item = &'a Vec<Vec<u8>>>, slot: Option<u16>) -> Cmd {
    let mut b = Vec::new();
    resp::encode_command(&mut b, &[b"MULTI".as_slice()]);
    let mut n = 1;
    for a in cmds {
        resp::encode_command(&mut b, a);
        n += 1;
    }
    resp::encode_command(&mut b, &[b"EXEC".as_slice()]);
    let _ = slot;
    Cmd {
        db: Some(0),
        bytes: Bytes::from(b),
        n: n + 1,
        tag: 0,
        kind: CmdKind::Transaction { key: None },
    }
}

fn backoff(attempt: u32) -> Duration {
    let ms = 50u64.saturating_mul(1 << attempt.min(5));
    Duration::from_millis(ms.min(1000))
}

/// The slot map of the cluster `ep` belongs to: `CLUSTER SHARDS` where the server has it
/// (Redis 7.0+, Valkey), else `CLUSTER SLOTS`, else `CLUSTER NODES`.
pub async fn fetch_topology(
    ep: &Endpoint,
    info: &ServerInfo,
    timeout: Duration,
) -> Result<Topology, String> {
    let mut errors = Vec::new();
    let mut shards = None;
    if info.valkey || info.redis_at_least(7, 0) {
        match crate::admin::calls(ep, &[&[b"CLUSTER", b"SHARDS"]], timeout).await {
            Ok(r) if !r[0].is_error() => {
                let t = topology::parse_shards(&r[0], &ep.host)?;
                if t.uncovered() == 0 {
                    return Ok(t);
                }
                // Redis 7.x lists the shard of a master that failed with no slots for a
                // while after its replica took over; CLUSTER SLOTS has them.
                shards = Some(t);
            }
            Ok(r) => errors.push(format!("CLUSTER SHARDS: {:?}", r[0])),
            Err(e) => return Err(e),
        }
    }
    match crate::admin::calls(ep, &[&[b"CLUSTER", b"SLOTS"]], timeout).await? {
        r if !r[0].is_error() => {
            let t = topology::parse_slots(&r[0], &ep.host)?;
            return Ok(match shards {
                Some(s) if s.uncovered() <= t.uncovered() => s,
                _ => t,
            });
        }
        r => errors.push(format!("CLUSTER SLOTS: {:?}", r[0])),
    }
    if let Some(s) = shards {
        return Ok(s);
    }
    let r = crate::admin::calls(ep, &[&[b"CLUSTER", b"NODES"]], timeout).await?;
    match r[0].as_bytes() {
        Some(t) => topology::parse_nodes(&String::from_utf8_lossy(t), &ep.host),
        None => Err(format!(
            "{}: cannot read the slot map: {errors:?}, CLUSTER NODES: {:?}",
            ep.addr(),
            r[0]
        )),
    }
}
