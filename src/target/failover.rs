//! Following a failover of a target given by sentinels, without losing or repeating writes.
//!
//! Replication from the target's master to its replicas is asynchronous: when the
//! sentinels promote a replica, the commands ferry's connection had applied on the old
//! master but that had not reached the replica yet are gone (the old master, turned into
//! a replica of the new one, drops them), though the old master answered them. ferry
//! therefore cannot resume from what the old master acknowledged. It resumes from what
//! the *new* master has, and learns that from a marker it keeps in the target's own data:
//!
//! * the key [`MARKER_KEY`] holds `"<source replid> <source offset> <source db>"`: every
//!   command of the source's stream up to that offset was sent before it on the same
//!   connection, so a server that has the marker has them all (replication keeps the
//!   order); the db is the stream's db at that offset (a source does not repeat its
//!   `SELECT` when asked for its stream again);
//! * it is written on a timer while the stream runs, after the snapshot, and — inside a
//!   `MULTI`/`EXEC` with the command itself — after every command that is not safe to
//!   apply twice ([`replay_safe`]: `INCR`, `RPUSH`, … are not; `SET`, `DEL`, `HSET`, …
//!   are). A source transaction gets it before its `EXEC`.
//!
//! After the failover ferry reads the marker on the new master (the largest offset over
//! its dbs) and asks the source for its stream again from there (`PSYNC replid offset+1`).
//! Commands after the marker that the new master already had are then applied again; by
//! the rule above each of them is one that leaves the same data when repeated in order,
//! and none that is not can be among them (it would have carried a later marker). When
//! the source no longer has that part of its stream (its backlog moved on), it answers
//! with a full resync, and ferry copies everything again.
//!
//! The marker is deleted when the sync stops cleanly; `ferry verify` ignores it.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::resp::{self, Frame};

/// The key that records how far the target has the source's stream (sentinel targets).
pub const MARKER_KEY: &[u8] = b"ferry:applied";

/// `SET ferry:applied "<replid> <offset> <db>"` as RESP.
pub fn marker_command(out: &mut Vec<u8>, replid: &str, offset: u64, db: u32) {
    let value = format!("{replid} {offset} {db}");
    resp::encode_command(out, &[b"SET".as_slice(), MARKER_KEY, value.as_bytes()]);
}

/// Whether applying the command a second time, in order with the ones around it, leaves
/// the data as applying it once does: it sets a value rather than changing it by an
/// amount or a position. Unknown commands are not.
pub fn replay_safe(name: &[u8], args: &[Frame]) -> bool {
    let arg_is = |w: &[u8]| {
        args.iter()
            .skip(2)
            .any(|a| a.as_bytes().is_some_and(|b| b.eq_ignore_ascii_case(w)))
    };
    match name {
        // Values set outright, members added or removed, keys deleted.
        b"SET" | b"SETEX" | b"PSETEX" | b"SETNX" | b"MSET" | b"MSETNX" | b"SETRANGE"
        | b"SETBIT" | b"GETSET" | b"GETDEL" | b"GETEX" | b"DEL" | b"UNLINK" | b"HSET"
        | b"HMSET" | b"HSETNX" | b"HDEL" | b"SADD" | b"SREM" | b"ZREM" | b"ZREMRANGEBYSCORE"
        | b"ZREMRANGEBYLEX" | b"PFADD" | b"GEOADD" | b"LSET" | b"EXPIRE" | b"PEXPIRE"
        | b"EXPIREAT" | b"PEXPIREAT" | b"PERSIST" | b"HEXPIRE" | b"HPEXPIRE" | b"HEXPIREAT"
        | b"HPEXPIREAT" | b"HPERSIST" | b"RESTORE" | b"RESTORE-ASKING" | b"FLUSHDB"
        | b"FLUSHALL" | b"XDEL" | b"XACK" | b"XSETID" | b"XGROUP" | b"XCLAIM" | b"FUNCTION"
        | b"SCRIPT" | b"PUBLISH" | b"SPUBLISH" => true,
        // Not here, though each sets a value: RENAME, COPY, SMOVE and the *STORE commands
        // read other keys, which later commands in the window may have changed
        // (`SUNIONSTORE d a b; SADD a x` replayed leaves x in d).
        b"ZADD" => !arg_is(b"INCR"),
        // An XADD with an explicit ID is refused the second time (its ID is not above
        // the last one); `*` IDs are replaced by the server before propagation.
        b"XADD" => true,
        _ => false,
    }
}

/// The largest marker of the current source history on the server `ep` (a master): its
/// (offset, db), when one of its dbs holds a marker for `replid`. `Ok(None)`: no usable
/// marker.
pub async fn read_marker(
    ep: &Endpoint,
    replid: &str,
    timeout: Duration,
) -> Result<Option<(u64, u32)>, String> {
    Ok(read_markers(ep, timeout)
        .await?
        .into_iter()
        .filter(|(id, _, _)| id == replid)
        .map(|(_, off, db)| (off, db))
        .max())
}

/// The marker with the largest offset on the server `ep`, whatever its source history:
/// (replid, offset, db). A start after a run that did not stop cleanly resumes from it.
pub async fn read_any_marker(
    ep: &Endpoint,
    timeout: Duration,
) -> Result<Option<(String, u64, u32)>, String> {
    Ok(read_markers(ep, timeout)
        .await?
        .into_iter()
        .max_by_key(|(_, off, _)| *off))
}

/// The number of dbs of the server `ep` (`CONFIG GET databases`; 16 when it does not say).
pub async fn databases(ep: &Endpoint, timeout: Duration) -> Result<u32, String> {
    Ok(
        crate::admin::calls(ep, &[&[b"CONFIG", b"GET", b"databases"]], timeout)
            .await?
            .into_iter()
            .next()
            .and_then(|f| match f {
                Frame::Array(a) => a.get(1).and_then(|v| v.to_i64()),
                _ => None,
            })
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(16)
            .clamp(1, 256),
    )
}

/// Every db's marker on the server `ep`: (replid, offset, db).
async fn read_markers(ep: &Endpoint, timeout: Duration) -> Result<Vec<(String, u64, u32)>, String> {
    let dbs = databases(ep, timeout).await?;
    let names: Vec<String> = (0..dbs).map(|d| d.to_string()).collect();
    let mut cmds: Vec<Vec<&[u8]>> = Vec::new();
    for n in &names {
        cmds.push(vec![b"SELECT".as_slice(), n.as_bytes()]);
        cmds.push(vec![b"GET".as_slice(), MARKER_KEY]);
    }
    let refs: Vec<&[&[u8]]> = cmds.iter().map(|c| c.as_slice()).collect();
    let replies = crate::admin::calls(ep, &refs, timeout).await?;
    Ok(replies
        .iter()
        .skip(1)
        .step_by(2)
        .filter_map(|f| f.as_bytes())
        .filter_map(parse_any_marker)
        .collect())
}

#[cfg(test)]
fn parse_marker(v: &[u8], replid: &str) -> Option<(u64, u32)> {
    parse_any_marker(v)
        .filter(|(id, _, _)| id == replid)
        .map(|(_, off, db)| (off, db))
}

fn parse_any_marker(v: &[u8]) -> Option<(String, u64, u32)> {
    let mut w = std::str::from_utf8(v).ok()?.split(' ');
    let (id, off, db) = (w.next()?, w.next()?, w.next()?);
    if w.next().is_some() {
        return None;
    }
    Some((id.to_string(), off.parse().ok()?, db.parse().ok()?))
}

/// The role of `ep` from `INFO replication` (`master`, `slave`), for deciding whether a
/// failover finished.
pub async fn role(ep: &Endpoint, timeout: Duration) -> Result<String, String> {
    let text = crate::admin::info_section(ep, "replication", timeout).await?;
    crate::admin::info_field(&text, "role")
        .map(str::to_string)
        .ok_or_else(|| format!("{}: INFO replication names no role", ep.addr()))
}

/// Whether the target's master `old` is no longer the master: the sentinels name
/// another, or it does not answer, or it is not a master any more.
pub async fn master_changed(sentinel: &Endpoint, old: &Endpoint, timeout: Duration) -> bool {
    match crate::sentinel::resolve(sentinel, timeout).await {
        Ok(now) if now.addr() != old.addr() => return true,
        Ok(_) => {}
        Err(_) => return true,
    }
    role(old, timeout).await.map_or(true, |r| r != "master")
}

/// Waits (at most `wait`) until the master the sentinels name answers as a master, and
/// reads its marker for `replid`.
pub async fn wait_for_master(
    sentinel: &Endpoint,
    replid: &str,
    wait: Duration,
) -> Result<(Endpoint, Option<(u64, u32)>), String> {
    let timeout = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match crate::sentinel::resolve(sentinel, timeout).await {
            Ok(ep) => match role(&ep, timeout).await {
                Ok(r) if r == "master" => {
                    let m = read_marker(&ep, replid, timeout).await?;
                    return Ok((ep, m));
                }
                Ok(r) => format!("{} is a {r}", ep.addr()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("after {} s: {last}", wait.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asks the sentinels every second which server is the master; [`MasterWatch::moved`]
/// turns true once they name another than `current`. Stops when dropped.
pub fn watch_master(sentinel: Endpoint, current: Endpoint) -> MasterWatch {
    let moved = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = moved.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(now) = crate::sentinel::resolve(&sentinel, Duration::from_secs(2)).await {
                if now.addr() != current.addr() {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    MasterWatch { moved, task }
}

pub struct MasterWatch {
    moved: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl MasterWatch {
    pub fn moved(&self) -> bool {
        self.moved.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for MasterWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// A cluster target: one marker per slot.
//
// Each master of a cluster replicates on its own, and a transaction cannot span slots, so
// the marker is kept per slot: `ferry:applied{<tag>}`, `<tag>` chosen so that the key is
// in that slot. All 16384 are written when the snapshot is applied; then, every 100 ms,
// those of the slots written since; and with every non-repeatable command of one slot,
// inside its `MULTI`/`EXEC`. After a master failed, ferry reads the markers of every slot
// from their owners. A slot whose marker covers every command ferry had sent it needs
// nothing; the others get their commands again from their marker on: ferry asks the
// source for its stream from the smallest such marker and skips, slot by slot, what the
// slot already has ([`SlotMarkers::skip`]). A slot without a marker lost part of the
// snapshot itself with its master: then everything is copied again.

/// A short tag per slot, so that `ferry:applied{tag}` lies in that slot.
fn slot_tags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); crate::cluster::SLOTS];
        let mut left = crate::cluster::SLOTS;
        let mut n = 0u64;
        while left > 0 {
            let t = format!("{n:x}");
            let s = crate::cluster::key_slot(t.as_bytes()) as usize;
            if tags[s].is_empty() {
                tags[s] = t;
                left -= 1;
            }
            n += 1;
        }
        tags
    })
}

/// The marker key of `slot`.
pub fn slot_marker_key(slot: u16) -> Vec<u8> {
    let t = &slot_tags()[slot as usize];
    let mut k = Vec::with_capacity(MARKER_KEY.len() + t.len() + 2);
    k.extend_from_slice(MARKER_KEY);
    k.push(b'{');
    k.extend_from_slice(t.as_bytes());
    k.push(b'}');
    k
}

/// Whether `key` is one of ferry's markers (standalone or per slot).
pub fn is_marker_key(key: &[u8]) -> bool {
    key == MARKER_KEY
        || (key.starts_with(MARKER_KEY)
            && key.get(MARKER_KEY.len()) == Some(&b'{')
            && key.ends_with(b"}"))
}

/// `SET ferry:applied{tag} "<replid> <offset> <db>"` for `slot`.
pub fn slot_marker_command(out: &mut Vec<u8>, slot: u16, replid: &str, offset: u64, db: u32) {
    let value = format!("{replid} {offset} {db}");
    resp::encode_command(
        out,
        &[b"SET".as_slice(), &slot_marker_key(slot), value.as_bytes()],
    );
}

/// Which slots a command writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slots {
    /// No key (`FLUSHALL`, `FUNCTION LOAD`, …): every master.
    All,
    One(u16),
    Many(Vec<u16>),
}

impl Slots {
    /// The slots of the keys at `positions` of `args`.
    pub fn at(args: &[&[u8]], positions: &[usize]) -> Slots {
        let mut slots: Vec<u16> = positions
            .iter()
            .filter_map(|&i| args.get(i))
            .map(|k| crate::cluster::key_slot(k))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        match slots.len() {
            0 => Slots::All,
            1 => Slots::One(slots[0]),
            _ => Slots::Many(slots),
        }
    }

    /// The slots of both.
    pub fn union(self, other: &Slots) -> Slots {
        if self == Slots::All || *other == Slots::All {
            return Slots::All;
        }
        let mut v = self.list();
        v.extend(other.list());
        v.sort_unstable();
        v.dedup();
        match v.len() {
            1 => Slots::One(v[0]),
            _ => Slots::Many(v),
        }
    }

    fn list(&self) -> Vec<u16> {
        match self {
            Slots::All => Vec::new(),
            Slots::One(s) => vec![*s],
            Slots::Many(v) => v.clone(),
        }
    }
}

/// The per-slot marker state of a stream into a cluster target.
pub struct SlotMarkers {
    finder: crate::cluster::KeyFinder,
    /// The slots this stream keeps markers for (`None`: all).
    owned: Option<Vec<bool>>,
    /// Per slot: the offset after the last command sent for it.
    sent: Vec<u64>,
    /// Per slot: the offset of its last marker.
    marked: Vec<u64>,
    /// Slots sent to since their marker (listed once: `is_dirty`).
    dirty: Vec<u16>,
    is_dirty: Vec<bool>,
    /// During a resume after a failover: per slot, the offset up to which the target has
    /// the slot's commands, and the offset beyond which nothing is skipped.
    skip: Option<(Vec<u64>, u64)>,
    /// The offset after the last command handled, and the source db there.
    cut: (u64, u32),
}

impl SlotMarkers {
    /// `owned`: the slot ranges whose markers this stream keeps (`None`: all; a shard of
    /// a cluster source keeps those it serves there).
    pub fn new(finder: crate::cluster::KeyFinder, owned: Option<&[(u16, u16)]>) -> SlotMarkers {
        let owned = owned.map(|ranges| {
            let mut v = vec![false; crate::cluster::SLOTS];
            for &(a, b) in ranges {
                for s in a..=b.min(crate::cluster::SLOTS as u16 - 1) {
                    v[s as usize] = true;
                }
            }
            v
        });
        SlotMarkers {
            finder,
            owned,
            sent: vec![0; crate::cluster::SLOTS],
            marked: vec![0; crate::cluster::SLOTS],
            dirty: Vec::new(),
            is_dirty: vec![false; crate::cluster::SLOTS],
            skip: None,
            cut: (0, 0),
        }
    }

    /// The stream was handled up to `offset`, in source db `db`.
    pub fn processed(&mut self, offset: u64, db: u32) {
        self.cut = (offset, db);
    }

    pub fn cut(&self) -> (u64, u32) {
        self.cut
    }

    /// Resuming after a failover: `skip[s]` is how far slot `s` is on the target; nothing
    /// after `until` (where the failed run had got to) is skipped.
    pub fn resume(&mut self, skip: Vec<u64>, until: u64) {
        self.skip = Some((skip, until));
    }

    /// The slots of a command (`None`: its keys are unknown to the target's table).
    pub fn slots_of(&self, args: &[&[u8]]) -> Option<Slots> {
        let pos = self.finder.key_positions(args).ok()?;
        Some(Slots::at(args, &pos))
    }

    fn each(slots: &Slots, mut f: impl FnMut(u16)) {
        match slots {
            Slots::All => (0..crate::cluster::SLOTS as u16).for_each(f),
            Slots::One(s) => f(*s),
            Slots::Many(v) => v.iter().for_each(|&s| f(s)),
        }
    }

    /// Whether a command ending at `end` is on the target already, in every slot it
    /// writes (a resume after a failover).
    pub fn skip(&self, slots: &Slots, end: u64) -> bool {
        let Some((skip, until)) = &self.skip else {
            return false;
        };
        if end > *until {
            return false;
        }
        let mut all = true;
        Self::each(slots, |s| all &= end <= skip[s as usize]);
        all
    }

    /// Whether `slot` has the command ending at `end` already (a resume after a failover).
    pub fn done(&self, slot: u16, end: u64) -> bool {
        self.skip
            .as_ref()
            .is_some_and(|(skip, until)| end <= *until && end <= skip[slot as usize])
    }

    /// A source transaction (`MULTI` and its `n - 1` commands, no `EXEC` yet) ending at
    /// `end`, without the commands whose slots have it already (a resume after a
    /// failover: the transaction is split per slot on the cluster, so a failover can leave
    /// it applied in some slots and not in others). `None`: keep it whole.
    pub fn without_done(&self, bytes: &[u8], n: u32, end: u64) -> Option<(Vec<u8>, u32)> {
        self.skip.as_ref()?;
        let ranges = super::cmd::split_commands(bytes, n as usize)?;
        let mut out = Vec::with_capacity(bytes.len());
        let mut kept = 0;
        for r in ranges {
            let args = super::cmd::command_args(&bytes[r.clone()]);
            let name = args
                .first()
                .map(|a| a.to_ascii_uppercase())
                .unwrap_or_default();
            let done = !matches!(&name[..], b"MULTI" | b"SELECT")
                && match self.slots_of(&args) {
                    Some(Slots::One(s)) => self.done(s, end),
                    Some(Slots::Many(v)) => v.iter().all(|&s| self.done(s, end)),
                    _ => false,
                };
            if !done {
                out.extend_from_slice(&bytes[r]);
                kept += 1;
            }
        }
        Some((out, kept))
    }

    /// A multi-slot command ending at `end`, split per slot, without the parts whose slot
    /// has it already (a resume after a failover). `None`: it cannot be split exactly.
    pub fn open_parts(&self, args: &[&[u8]], end: u64) -> Option<Vec<Vec<u8>>> {
        let pos = self.finder.key_positions(args).ok()?;
        match crate::cluster::split(args, &pos, true) {
            crate::cluster::Split::PerSlot(groups) => Some(
                groups
                    .into_iter()
                    .filter(|(s, _)| !self.done(*s, end))
                    .map(|(_, argv)| {
                        let mut b = Vec::new();
                        resp::encode_command(&mut b, &argv);
                        b
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// A command ending at `end` was sent for `slots`.
    pub fn sent(&mut self, slots: &Slots, end: u64) {
        let (sent, dirty, is_dirty) = (&mut self.sent, &mut self.dirty, &mut self.is_dirty);
        Self::each(slots, |s| {
            let i = s as usize;
            if !is_dirty[i] {
                is_dirty[i] = true;
                dirty.push(s);
            }
            sent[i] = end;
        });
    }

    /// A marker for `slot` at `offset` was sent.
    pub fn marked(&mut self, slot: u16, offset: u64) {
        self.marked[slot as usize] = offset;
    }

    /// Every slot of this stream needs a marker (the snapshot was applied at `offset`).
    pub fn all_dirty(&mut self, offset: u64) {
        for s in 0..crate::cluster::SLOTS {
            if self.owned.as_ref().is_none_or(|o| o[s]) {
                self.sent[s] = offset;
                self.is_dirty[s] = true;
                self.dirty.push(s as u16);
            }
        }
    }

    /// Whether the markers of `slot` are this stream's: it serves the slot, or sent to it.
    pub fn keeps(&self, slot: u16) -> bool {
        self.owned.as_ref().is_none_or(|o| o[slot as usize]) || self.sent[slot as usize] > 0
    }

    /// The slots that need a marker now (and forgets them).
    pub fn take_dirty(&mut self) -> Vec<u16> {
        let d = std::mem::take(&mut self.dirty);
        for &s in &d {
            self.is_dirty[s as usize] = false;
        }
        d
    }

    /// Per slot, the offset after the last command sent for it.
    pub fn sent_offsets(&self) -> &[u64] {
        &self.sent
    }
}

/// Reads every slot's marker from the cluster `seeds` lead to, once every slot has a
/// master that answers as one (at most `wait`). Per slot: (offset, db) of `replid`'s
/// marker, `None` where there is none.
pub async fn wait_for_cluster(
    seeds: &[Endpoint],
    replid: &str,
    wait: Duration,
) -> Result<Vec<Option<(u64, u32)>>, String> {
    Ok(wait_for_cluster_any(seeds, wait)
        .await?
        .into_iter()
        .map(|m| {
            m.filter(|(id, _, _)| id == replid)
                .map(|(_, off, db)| (off, db))
        })
        .collect())
}

/// As [`wait_for_cluster`], with every slot's marker whatever its source history:
/// (replid, offset, db).
pub async fn wait_for_cluster_any(
    seeds: &[Endpoint],
    wait: Duration,
) -> Result<Vec<Option<(String, u64, u32)>>, String> {
    let timeout = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match cluster_markers(seeds, timeout).await {
            Ok(m) => return Ok(m),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("after {} s: {last}", wait.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn cluster_markers(
    seeds: &[Endpoint],
    timeout: Duration,
) -> Result<Vec<Option<(String, u64, u32)>>, String> {
    let mut errors = Vec::new();
    for seed in seeds {
        let info = match crate::admin::info_section(seed, "server", timeout).await {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let Some(info) = super::ServerInfo::from_info(&info) else {
            continue;
        };
        let topo = match super::cluster::fetch_topology(seed, &info, timeout).await {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if topo.uncovered() > 0 {
            return Err(format!("{} slots have no master yet", topo.uncovered()));
        }
        // Every node that answers must see the same owners: right after a forced failover
        // the old master (reachable, perhaps the seed) may still claim its slots for a
        // moment, and its markers are ahead of what the new master will keep.
        let owners = topo.owners();
        let others = seeds
            .iter()
            .cloned()
            .chain(topo.masters.iter().map(|m| seed.node(&m.addr)));
        for ep in others {
            let Ok(text) = crate::admin::info_section(&ep, "server", timeout).await else {
                continue;
            };
            let Some(info) = super::ServerInfo::from_info(&text) else {
                continue;
            };
            if let Ok(t) = super::cluster::fetch_topology(&ep, &info, timeout).await {
                if t.owners() != owners {
                    return Err(format!(
                        "{} does not see the same slot owners as {} yet",
                        ep.addr(),
                        seed.addr()
                    ));
                }
            }
        }
        let mut out = vec![None; crate::cluster::SLOTS];
        for m in &topo.masters {
            let ep = seed.node(&m.addr);
            if role(&ep, timeout).await? != "master" {
                return Err(format!("{} is not a master yet", ep.addr()));
            }
            let slots: Vec<u16> = m
                .slots
                .iter()
                .flat_map(|&(a, b)| a..=b.min(crate::cluster::SLOTS as u16 - 1))
                .collect();
            let keys: Vec<Vec<u8>> = slots.iter().map(|&s| slot_marker_key(s)).collect();
            let cmds: Vec<[&[u8]; 2]> = keys.iter().map(|k| [b"GET".as_slice(), k]).collect();
            let refs: Vec<&[&[u8]]> = cmds.iter().map(|c| c.as_slice()).collect();
            let replies = crate::admin::calls(&ep, &refs, timeout * 4).await?;
            for (&s, r) in slots.iter().zip(&replies) {
                let reply = match r.error_text() {
                    None => r.clone(),
                    // The slot is being migrated and its marker already moved: the
                    // importing node has it (ASKING lets it answer for one command).
                    Some(e) => ask_marker(seed, s, e, timeout).await.map_err(|why| {
                        format!("{}: GET of the marker of slot {s}: {why}", ep.addr())
                    })?,
                };
                out[s as usize] = reply.as_bytes().and_then(parse_any_marker);
            }
        }
        return Ok(out);
    }
    Err(format!(
        "no node of the cluster answered: {}",
        errors.join("; ")
    ))
}

/// The marker of `slot` after its owner answered `error` to a GET of it: followed when
/// that is an `ASK` (a migration in progress moved the marker), else the error (a
/// `MOVED`: the map changed since it was read, and the caller reads it again).
async fn ask_marker(
    seed: &Endpoint,
    slot: u16,
    error: &[u8],
    timeout: Duration,
) -> Result<Frame, String> {
    let text = String::from_utf8_lossy(error);
    let addr = match crate::cluster::Redirect::parse(&text) {
        Some(r) if r.ask => r.addr,
        _ => return Err(text.into_owned()),
    };
    let key = slot_marker_key(slot);
    let cmds: [&[&[u8]]; 2] = [&[b"ASKING"], &[b"GET", &key]];
    let ep = seed.node(&addr);
    let mut replies = crate::admin::calls(&ep, &cmds, timeout).await?;
    match replies.pop() {
        Some(r) if !r.is_error() => Ok(r),
        Some(r) => Err(format!(
            "{text}, then {}: {}",
            ep.addr(),
            String::from_utf8_lossy(r.error_text().unwrap_or_default())
        )),
        None => Err(format!("{text}, then {}: no reply", ep.addr())),
    }
}

/// Where to resume after a cluster target's failover: per slot how far it is on the
/// target (`skip`), the offset to ask the source from, and the source db there. `None`:
/// a slot has no marker (part of the snapshot was lost): copy everything again.
pub fn plan_resume(
    markers: &[Option<(u64, u32)>],
    sent: &[u64],
    cut: (u64, u32),
    keeps: impl Fn(u16) -> bool,
) -> Option<(Vec<u64>, u64, u32)> {
    let mut skip = Vec::with_capacity(markers.len());
    let mut from = cut;
    for (slot, (m, &sent)) in markers.iter().zip(sent).enumerate() {
        if !keeps(slot as u16) {
            // Another shard's slot: nothing of this stream went there.
            skip.push(cut.0);
            continue;
        }
        let (off, db) = (*m)?;
        if sent <= off {
            // Everything sent to this slot is there.
            skip.push(cut.0);
        } else {
            skip.push(off);
            if off < from.0 {
                from = (off, db);
            }
        }
    }
    Some((skip, from.0, from.1))
}

/// Whether a cluster target lost a master: one of `masters` does not answer as a master.
pub async fn cluster_master_lost(masters: &[Endpoint], timeout: Duration) -> bool {
    for m in masters {
        if role(m, timeout).await.map_or(true, |r| r != "master") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Frame> {
        words
            .iter()
            .map(|w| Frame::Bulk(w.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn commands_that_change_by_an_amount_are_not_replay_safe() {
        for c in [
            "INCR k",
            "RPUSH l a",
            "LPOP l",
            "APPEND k x",
            "HINCRBY h f 1",
            "SWAPDB 0 1",
        ] {
            let a = args(&c.split(' ').collect::<Vec<_>>());
            assert!(
                !replay_safe(c.split(' ').next().unwrap().as_bytes(), &a),
                "{c}"
            );
        }
        for c in [
            "SET k v",
            "DEL k",
            "HSET h f v",
            "SADD s m",
            "ZADD z 1 m",
            "PEXPIREAT k 5",
        ] {
            let a = args(&c.split(' ').collect::<Vec<_>>());
            assert!(
                replay_safe(c.split(' ').next().unwrap().as_bytes(), &a),
                "{c}"
            );
        }
        assert!(!replay_safe(
            b"ZADD",
            &args(&["ZADD", "z", "INCR", "1", "m"])
        ));
    }

    #[test]
    fn every_slot_has_a_marker_key_in_it() {
        for s in [0u16, 1, 5000, 16383] {
            let k = slot_marker_key(s);
            assert_eq!(crate::cluster::key_slot(&k), s);
            assert!(is_marker_key(&k));
        }
        assert!(is_marker_key(MARKER_KEY));
        assert!(!is_marker_key(b"ferry:applied:x"));
    }

    #[test]
    fn a_resume_starts_at_the_oldest_marker_of_a_slot_with_commands_after_it() {
        // Slot 0: everything sent is marked; slot 1: sent up to 50, marked at 40; slot 2:
        // sent up to 70, marked at 60.
        let markers = vec![Some((30, 0)), Some((40, 1)), Some((60, 0))];
        let (skip, from, db) = plan_resume(&markers, &[30, 50, 70], (80, 2), |_| true).unwrap();
        assert_eq!(skip, vec![80, 40, 60]);
        assert_eq!((from, db), (40, 1));
        assert_eq!(
            plan_resume(&[Some((1, 0)), None], &[1, 1], (5, 0), |_| true),
            None
        );
        // A slot of another shard: its missing marker does not matter.
        assert_eq!(
            plan_resume(&[Some((1, 0)), None], &[1, 0], (5, 0), |s| s == 0),
            Some((vec![5, 5], 5, 0))
        );
        let mut sm = SlotMarkers::new(crate::cluster::KeyFinder::default(), Some(&[(0, 1)]));
        sm.all_dirty(7);
        assert_eq!(sm.take_dirty(), vec![0, 1]);
        assert!(sm.keeps(1) && !sm.keeps(2));
        sm.resume(skip, 80);
        assert!(sm.skip(&Slots::One(1), 40));
        assert!(!sm.skip(&Slots::One(1), 45));
        assert!(sm.skip(&Slots::One(0), 75));
        assert!(!sm.skip(&Slots::Many(vec![0, 1]), 45));
        assert!(!sm.skip(&Slots::One(0), 81), "beyond the failed run");
    }

    #[test]
    fn markers_of_another_history_are_ignored() {
        let mut out = Vec::new();
        marker_command(&mut out, "abc", 42, 3);
        assert!(out.ends_with(b"$8\r\nabc 42 3\r\n"));
        assert_eq!(parse_marker(b"abc 42 3", "abc"), Some((42, 3)));
        assert_eq!(parse_marker(b"abc 42 3", "other"), None);
        assert_eq!(parse_marker(b"abc x 3", "abc"), None);
        assert_eq!(parse_marker(b"abc 42", "abc"), None);
        assert_eq!(parse_marker(b"junk", "abc"), None);
    }
}
