//! One key's value, as the decoder delivers it, into commands for one target.
//!
//! # Two paths
//!
//! * **RESTORE**: the value's RDB bytes (`KeyEnd::raw`) with a version footer the target
//!   accepts, in one `RESTORE key ttl payload [REPLACE] [ABSTTL]`. Exact (encodings,
//!   stream PELs with deleted entries, module values) and cheap for the target.
//! * **Commands**: `DEL` (or a staging name, below), then `RPUSH`/`SADD`/`ZADD`/`HSET`/
//!   `XADD`… in batches of at most `batch_elems` elements and about `batch_bytes` bytes,
//!   then `PEXPIREAT`. The only way to an older server (downgrade, rollback: trap 8), and
//!   for a value larger than `restore_max` or `proto-max-bulk-len` (trap 7).
//!
//! RESTORE needs the raw bytes, which arrive only at the key's end, while the commands
//! must be built from the pieces as they pass. So when RESTORE is possible the rewriter
//! builds the commands anyway and *holds* them, up to `restore_max` bytes: at the end it
//! emits the RESTORE and drops them, or emits them when there is no raw (value too
//! large). A value whose commands outgrow the hold is committed to the commands path on
//! the spot and streamed from then on, so memory stays bounded by `restore_max` whatever
//! the value's size. When RESTORE is impossible from the start (the target cannot load
//! the type, or mode `commands`), nothing is held.
//!
//! # Conflicts on the commands path
//!
//! `Replace` deletes the key first. `Skip` and `Error` must not touch an existing key,
//! and a value written in several commands cannot be made conditional, so it is written
//! under a staging name in the same cluster slot (`{key}:ferry-staging`, or for a key
//! that braces would move, like `a}b`, `{ferry:<n>}a}b:ferry-staging` with a tag chosen
//! to hash to its slot: [`staging_name`]) and moved into place with `RENAMENX`, which refuses when the key exists; the writer judges that
//! refusal like a `BUSYKEY`. The staging key is visible on the target while the value is
//! written.
//!
//! # Big elements
//!
//! A string value larger than the decoder's chunk threshold arrives in chunks and is
//! written as `SET` of the first chunk then `APPEND`s. A list item, set member or hash
//! value that large is built the same way in a staging string key and moved into the
//! collection by a small Lua script, so no element is ever held whole either.
//!
//! # Expiry
//!
//! Always absolute (`PEXPIREAT`, `RESTORE … ABSTTL`): a relative TTL drifts by the time
//! the copy takes (trap 11). Only targets older than 5.0 get a relative RESTORE ttl,
//! computed from the clock at the key's end. Keys already expired are not written.

use std::collections::VecDeque;

use bytes::Bytes;

use super::batch::{bulk, bulk_elem, bulk_int, Batch, CmdBuf};
use super::stream::StreamState;
use crate::rdb::crc::crc64;
use crate::rdb::dump;
use crate::rdb::{BigRole, Elem, Flavor, KeyEnd, KeyInfo, Piece, ValueKind};
use crate::resp::{encode_array_header, encode_bulk_header};
use crate::target::{Cmd, CmdKind, Conflict, ServerInfo};
use crate::util::escape_bytes;

/// How values are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMode {
    /// RESTORE when the target accepts the payload and it is small enough, else commands.
    Auto,
    /// RESTORE only; a value that cannot go that way is skipped and recorded.
    Restore,
    /// Commands only (module values, which have no commands, are skipped).
    Commands,
}

/// Settings of the rewrite.
#[derive(Debug, Clone)]
pub struct RewriteConfig {
    /// Most elements per variadic command (`RPUSH`, `XADD`s per `Cmd`, `XCLAIM` ids).
    pub batch_elems: usize,
    /// About the most bytes per command and per `Cmd`.
    pub batch_bytes: usize,
    pub mode: ValueMode,
    pub conflict: Conflict,
    /// The largest RESTORE payload, and the most command bytes held while deciding.
    /// Also bounded by the target's `proto-max-bulk-len`.
    pub restore_max: usize,
    /// In `Auto` mode with the `Replace` policy, a plain string goes as one `SET key value
    /// [PXAT ms]` instead of a RESTORE: the same key, type, value and expiry, and less
    /// work for both sides (no payload checksum). Only where the target has `PXAT` (6.2+)
    /// when the key has an expiry.
    pub strings_as_set: bool,
    /// With `strings_as_set`, on a standalone target: consecutive such strings without
    /// an expiry go as one `MSET` (up to 256 keys or 64 KiB), which costs the target
    /// about a quarter less CPU than a `SET` each.
    pub strings_as_mset: bool,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            batch_elems: 512,
            batch_bytes: 1 << 20,
            mode: ValueMode::Auto,
            conflict: Conflict::Replace,
            // A value's raw bytes and its commands are both held while deciding: 2 × 8 MiB
            // keeps the default footprint under 100 MiB with large values.
            restore_max: 8 << 20,
            strings_as_set: true,
            strings_as_mset: true,
        }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// One RESTORE.
    Restore,
    /// Type commands.
    Commands,
    /// Already expired: nothing written.
    Expired,
    /// An empty collection (servers drop those when loading): nothing written.
    Empty,
    /// Not written; the reason is in the rewriter's skip records.
    Skipped,
}

/// A key the rewriter could not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteSkip {
    pub db: u32,
    pub key: Bytes,
    pub reason: String,
}

/// Counters of one rewriter.
#[derive(Debug, Clone, Default)]
pub struct RewriteStats {
    pub keys: u64,
    pub restored: u64,
    pub commands: u64,
    pub expired: u64,
    pub empty: u64,
    pub skipped: u64,
    /// Hash fields already expired, not written.
    pub fields_expired: u64,
    /// Keys whose hash field TTLs were dropped (target without hash field expiration).
    pub field_ttls_dropped: u64,
    /// Stream pending entries written with the copy's time and a count of 1, because
    /// their group had more than `PEL_KEPT` (commands path only).
    pub pel_meta_dropped: u64,
    /// The newest skip records (at most [`SKIPS_KEPT`]).
    pub skips: VecDeque<RewriteSkip>,
}

/// Skip records a rewriter keeps.
pub const SKIPS_KEPT: usize = 1000;

const STAGING_SUFFIX: &[u8] = b":ferry-staging";
const ELEMENT_SUFFIX: &[u8] = b":ferry-element";

/// Moves a staged big element into its collection (KEYS[1] the collection, KEYS[2] the
/// staging string; ARGV[1] the hash field).
const LUA_RPUSH: &[u8] =
    b"redis.call('RPUSH',KEYS[1],redis.call('GET',KEYS[2])) redis.call('DEL',KEYS[2]) return 1";
const LUA_SADD: &[u8] =
    b"redis.call('SADD',KEYS[1],redis.call('GET',KEYS[2])) redis.call('DEL',KEYS[2]) return 1";
const LUA_HSET: &[u8] = b"redis.call('HSET',KEYS[1],ARGV[1],redis.call('GET',KEYS[2])) \
      redis.call('DEL',KEYS[2]) return 1";

/// What the rewriter does with the current key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Nothing is written (expired, unsupported).
    Skip(Outcome),
    /// Only RESTORE can write it; the pieces are ignored.
    RestoreOnly,
    /// Both paths are open: commands are built and held until the end.
    Hold,
    /// Commands, emitted as they are built.
    Commands,
    /// A string written with one `SET` (see [`RewriteConfig::strings_as_set`]); a big one
    /// switches to `Commands` at its first chunk.
    SetString,
}

/// A big element being received in chunks.
#[derive(Debug)]
struct Big {
    role: BigRole,
    left: u64,
    first: bool,
    /// The hash field, for `HashValue`.
    field: Option<Vec<u8>>,
    field_expire_ms: Option<i64>,
    /// Where the chunks are appended: the key itself (a string value), or a staging
    /// string in the key's slot for an element.
    into: Bytes,
    /// Bytes still to come of the `SET`/`APPEND` argument being encoded into `cmds` (0:
    /// no command is open). A value arriving in small network reads still goes in
    /// `APPEND`s of `batch_bytes`.
    open: u64,
    /// Expired hash field: chunks are read and dropped.
    drop: bool,
}

/// The key being rewritten.
pub(super) struct KeyState {
    pub(super) db: u32,
    pub(super) key: Bytes,
    /// Where commands write: the key, or its staging name.
    pub(super) name: Bytes,
    staged: bool,
    pub(super) kind: ValueKind,
    type_byte: u8,
    expire_ms: Option<i64>,
    pub(super) plan: Plan,
    held: Vec<Cmd>,
    held_bytes: usize,
    pub(super) cmds: CmdBuf,
    batch: Batch,
    /// Field TTLs of the hash fields in `batch`, written right after it.
    field_ttls: Vec<(i64, Vec<u8>)>,
    ttl_warned: bool,
    big: Option<Big>,
    pub(super) stream: StreamState,
    /// Element commands written (a key with none is not created).
    pub(super) written: u64,
}

/// Rewrites the keys of one source for one target, a key at a time.
pub struct KeyRewriter {
    pub(super) cfg: RewriteConfig,
    pub(super) target: ServerInfo,
    source: Flavor,
    pub(super) now_ms: i64,
    restore_limit: usize,
    cur: Option<KeyState>,
    pub(super) stats: RewriteStats,
    /// Stream pending entries kept per group (`stream::PEL_KEPT`; smaller in tests).
    pub(super) pel_kept: usize,
    /// Small keys' single commands (`RESTORE`, `SET`) gathered into one `Cmd` of kind
    /// `Batch` (a cluster router splits it per master by each command's key). Emitted when
    /// full, when the db changes, and by [`flush_pending`](Self::flush_pending).
    small: CmdBuf,
    small_db: u32,
    /// The kind of the first command in `small`, used when it stays alone.
    small_first: Option<CmdKind>,
    /// Plain strings without an expiry gathered for one `MSET` (standalone targets);
    /// never open while `small` has commands, so the order of keys is kept.
    mset: MsetGroup,
}

/// `key value` pairs for one `MSET`, after room for its header (written at the end,
/// when the count is known, so the pairs are not copied again).
#[derive(Debug, Default)]
struct MsetGroup {
    buf: Vec<u8>,
    pairs: u32,
    db: u32,
    /// The first key, to name it when it stays alone.
    first: Option<Bytes>,
}

/// Room before the pairs for `*<argc>\r\n$4\r\nMSET\r\n` (argc up to 10 digits).
const MSET_ROOM: usize = 24;

/// A batch of small keys is emitted at about this size, or at this many keys.
const SMALL_BATCH_BYTES: usize = 64 << 10;
const SMALL_BATCH_CMDS: u32 = 256;
/// A cluster target's router splits a batch per master: a larger batch keeps the parts
/// above the writer's coalescing size, so they are written from their own buffer
/// rather than copied once more.
const CLUSTER_BATCH_SCALE: usize = 4;

impl KeyRewriter {
    /// `source_flavor`: the family of the RDB the keys come from (its magic), which
    /// decides what its type bytes mean. `now_ms`: unix ms, to drop expired keys (see
    /// [`set_now`](Self::set_now)).
    pub fn new(
        cfg: &RewriteConfig,
        target: &ServerInfo,
        source_flavor: Flavor,
        now_ms: i64,
    ) -> Self {
        // A RESTORE payload is one argument: it must fit the target's bulk limit.
        let proto = usize::try_from(target.proto_max_bulk_len).unwrap_or(usize::MAX);
        KeyRewriter {
            cfg: RewriteConfig {
                batch_elems: cfg.batch_elems.max(1),
                batch_bytes: cfg.batch_bytes.max(1),
                ..cfg.clone()
            },
            target: target.clone(),
            source: source_flavor,
            now_ms,
            restore_limit: cfg.restore_max.min(proto.saturating_sub(64)),
            cur: None,
            stats: RewriteStats::default(),
            pel_kept: super::stream::PEL_KEPT,
            small: CmdBuf::default(),
            small_db: 0,
            small_first: None,
            mset: MsetGroup::default(),
        }
    }

    /// Whether plain strings without an expiry go as `MSET`s: `SET` semantics for each key
    /// (the value replaces any old one and its expiry), a quarter less work for the
    /// target than one `SET` per key. Not on a cluster, where the keys of one `MSET`
    /// must share a slot.
    fn mset_strings(&self) -> bool {
        self.cfg.strings_as_mset && !self.target.cluster
    }

    /// `key value` into the open `MSET` (opening one, after emitting other small
    /// commands, when needed).
    fn mset_add(&mut self, db: u32, key: &Bytes, e: Elem<'_>, out: &mut impl FnMut(Cmd)) {
        if self.small.n > 0 || (self.mset.pairs > 0 && self.mset.db != db) {
            self.flush_pending(out);
        }
        let m = &mut self.mset;
        if m.pairs == 0 {
            m.db = db;
            m.first = Some(key.clone());
            m.buf.clear();
            if m.buf.capacity() == 0 {
                m.buf.reserve(SMALL_BATCH_BYTES + (SMALL_BATCH_BYTES >> 2));
            }
            m.buf.resize(MSET_ROOM, 0);
        }
        bulk(&mut m.buf, key);
        bulk_elem(&mut m.buf, e);
        m.pairs += 1;
        if m.buf.len() >= SMALL_BATCH_BYTES || m.pairs >= SMALL_BATCH_CMDS {
            self.close_mset(out);
        }
    }

    /// Emits the open `MSET`, if any: a `Batch` of one command (its keys are all its
    /// own), or a plain `SET` when it holds one key.
    fn close_mset(&mut self, out: &mut impl FnMut(Cmd)) {
        let m = &mut self.mset;
        if m.pairs == 0 {
            return;
        }
        let pairs = std::mem::take(&mut m.pairs);
        let (verb, kind): (&[u8], _) = if pairs == 1 {
            (
                b"SET",
                CmdKind::Data {
                    key: m.first.take(),
                },
            )
        } else {
            m.first = None;
            (b"MSET", CmdKind::Batch)
        };
        let mut head = Vec::with_capacity(MSET_ROOM);
        encode_array_header(&mut head, 1 + 2 * u64::from(pairs));
        bulk(&mut head, verb);
        let start = MSET_ROOM - head.len();
        let mut buf = std::mem::take(&mut m.buf);
        buf[start..MSET_ROOM].copy_from_slice(&head);
        out(Cmd {
            db: Some(m.db),
            bytes: Bytes::from(buf).slice(start..),
            n: 1,
            tag: 0,
            kind,
        });
    }

    /// Emits the gathered small keys. Call it before the commands that follow the
    /// snapshot, and whenever the output should not wait (end of input, idle source).
    pub fn flush_pending(&mut self, out: &mut impl FnMut(Cmd)) {
        self.close_mset(out);
        let single = self.small_first.take();
        let kind = if self.small.n == 1 {
            single.unwrap_or(CmdKind::Batch)
        } else {
            CmdKind::Batch
        };
        if let Some(cmd) = self.small.take(self.small_db, kind) {
            out(cmd);
        }
    }

    /// Makes room in the small batch for one command of `db`.
    fn small_begin(&mut self, db: u32, kind: impl FnOnce() -> CmdKind, out: &mut impl FnMut(Cmd)) {
        self.close_mset(out);
        if self.small.n > 0 && self.small_db != db {
            self.flush_pending(out);
        }
        if self.small.n == 0 {
            self.small_db = db;
            self.small_first = Some(kind());
            if self.small.buf.capacity() == 0 {
                self.small
                    .buf
                    .reserve(self.small_bytes() + (self.small_bytes() >> 2));
            }
        }
    }

    /// Bytes of small keys gathered before a batch is emitted.
    fn small_bytes(&self) -> usize {
        if self.target.cluster {
            SMALL_BATCH_BYTES * CLUSTER_BATCH_SCALE
        } else {
            SMALL_BATCH_BYTES
        }
    }

    /// After one command was added to the small batch.
    fn small_end(&mut self, out: &mut impl FnMut(Cmd)) {
        self.small.n += 1;
        let scale = self.small_bytes() / SMALL_BATCH_BYTES;
        if self.small.len() >= self.small_bytes() || self.small.n >= SMALL_BATCH_CMDS * scale as u32
        {
            self.flush_pending(out);
        }
    }

    /// Moves the clock on (call it as time passes during a long copy).
    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub fn stats(&self) -> &RewriteStats {
        &self.stats
    }

    /// Starts a key. Emits the first commands only when the key goes as commands from the
    /// start.
    pub fn key(&mut self, k: &KeyInfo<'_>, out: &mut impl FnMut(Cmd)) {
        if self.cur.is_some() {
            // The previous key never ended (its source stopped mid-value): drop it.
            self.cur = None;
        }
        self.stats.keys += 1;
        let key = Bytes::copy_from_slice(k.key);
        let db = u32::try_from(k.db).unwrap_or(u32::MAX);
        let expired = k.expire_ms.is_some_and(|t| t <= self.now_ms);
        let restore_ok = self.cfg.mode != ValueMode::Commands
            && self
                .target
                .restore
                .version_for(self.source, k.type_byte)
                .is_some();
        let commands_block = match k.kind {
            ValueKind::Module => Some("a module value has no commands"),
            ValueKind::Stream if !self.target.has_streams() => Some("the target has no streams"),
            _ if self.cfg.mode == ValueMode::Restore => Some("mode is restore-only"),
            _ => None,
        };
        let mut name = key.clone();
        let mut staged = false;
        let mut plan = match (restore_ok, commands_block) {
            _ if expired => {
                self.stats.expired += 1;
                Plan::Skip(Outcome::Expired)
            }
            (true, None) => Plan::Hold,
            (true, Some(_)) => Plan::RestoreOnly,
            (false, None) => Plan::Commands,
            (false, Some(why)) => {
                let reason = if self.cfg.mode == ValueMode::Commands {
                    why.to_string()
                } else {
                    format!(
                        "{why}, and {} does not load RDB type {} from a {:?} source",
                        self.target.name(),
                        k.type_byte,
                        self.source
                    )
                };
                self.skip(db, &key, reason);
                Plan::Skip(Outcome::Skipped)
            }
        };
        let as_set = k.kind == ValueKind::String
            && self.cfg.strings_as_set
            && self.cfg.mode == ValueMode::Auto
            && self.cfg.conflict == Conflict::Replace
            && (k.expire_ms.is_none() || self.target.has_set_pxat());
        if as_set && matches!(plan, Plan::Hold | Plan::Commands) {
            plan = Plan::SetString;
        }
        if matches!(plan, Plan::Hold | Plan::Commands) && self.cfg.conflict != Conflict::Replace {
            name = staging_name(&key, STAGING_SUFFIX);
            staged = true;
        }
        let mut st = KeyState {
            db,
            key,
            name,
            staged,
            kind: k.kind,
            type_byte: k.type_byte,
            expire_ms: k.expire_ms,
            plan,
            held: Vec::new(),
            held_bytes: 0,
            cmds: CmdBuf {
                // Room for a small key's few commands without regrowing (a `SET` goes
                // to the small batch instead).
                buf: if plan == Plan::SetString {
                    Vec::new()
                } else {
                    Vec::with_capacity(256 + 2 * k.key.len())
                },
                n: 0,
            },
            batch: Batch::default(),
            field_ttls: Vec::new(),
            ttl_warned: false,
            big: None,
            stream: StreamState::default(),
            written: 0,
        };
        if matches!(plan, Plan::Hold | Plan::Commands) {
            // Replace: the old value goes. Staged: a staging key left by an interrupted
            // run goes.
            let name = st.name.clone();
            st.cmds.command(&[b"DEL", &name]);
        }
        self.cur = Some(st);
        let _ = out;
    }

    /// Whether the current key may still be written with `RESTORE`, and so needs the
    /// decoder's copy of its DUMP payload ([`KeyEnd::raw`]). Once this is false for a key
    /// it stays false, and the decoder can stop copying the value
    /// ([`crate::rdb::Decoder::stop_capture`]): a 5 MiB string written with `SET` and
    /// `APPEND` was otherwise copied once more for nothing.
    pub fn wants_raw(&self) -> bool {
        self.cur
            .as_ref()
            .is_some_and(|st| matches!(st.plan, Plan::Hold | Plan::RestoreOnly))
    }

    /// One piece of the current key's value.
    pub fn piece(&mut self, p: &Piece<'_>, out: &mut impl FnMut(Cmd)) {
        let Some(mut st) = self.cur.take() else {
            return;
        };
        match st.plan {
            Plan::Hold | Plan::Commands => self.piece_into(&mut st, p, out),
            Plan::SetString => match *p {
                Piece::String(e) => self.set_string(&mut st, e, out),
                _ => {
                    // A big string (chunks): SET of the first chunk, then APPENDs. (Not
                    // a RESTORE even when it would fit: a server spends about twice the
                    // CPU loading a 5 MiB RESTORE payload as on SET + APPENDs of it.)
                    st.plan = Plan::Commands;
                    self.piece_into(&mut st, p, out);
                }
            },
            Plan::RestoreOnly | Plan::Skip(_) => {}
        }
        self.cur = Some(st);
    }

    /// `SET key value [PXAT ms]` into the small batch.
    fn set_string(&mut self, st: &mut KeyState, e: Elem<'_>, out: &mut impl FnMut(Cmd)) {
        st.written += 1;
        if st.expire_ms.is_none() && self.mset_strings() {
            self.mset_add(st.db, &st.key, e, out);
            return;
        }
        let key = &st.key;
        self.small_begin(
            st.db,
            || CmdKind::Data {
                key: Some(key.clone()),
            },
            out,
        );
        let b = &mut self.small;
        b.begin(if st.expire_ms.is_some() { 5 } else { 3 });
        bulk(&mut b.buf, b"SET");
        bulk(&mut b.buf, &st.key);
        bulk_elem(&mut b.buf, e);
        if let Some(t) = st.expire_ms {
            bulk(&mut b.buf, b"PXAT");
            bulk_int(&mut b.buf, t);
        }
        self.small_end(out);
    }

    fn piece_into(&mut self, st: &mut KeyState, p: &Piece<'_>, out: &mut impl FnMut(Cmd)) {
        match *p {
            Piece::String(e) => {
                let name = st.name.clone();
                st.cmds.begin(3);
                bulk(&mut st.cmds.buf, b"SET");
                bulk(&mut st.cmds.buf, &name);
                bulk_elem(&mut st.cmds.buf, e);
                st.cmds.end();
                st.written += 1;
            }
            Piece::BigStart {
                role,
                len,
                field,
                field_expire_ms,
            } => self.big_start(st, role, len, field, field_expire_ms, out),
            Piece::Chunk(c) => self.big_chunk(st, c, out),
            Piece::ListItem(e) => self.add(st, b"RPUSH", &[e], None, out),
            Piece::SetMember(e) => self.add(st, b"SADD", &[e], None, out),
            Piece::ZsetMember { member, score } => {
                let text = score_text(score);
                self.add(
                    st,
                    b"ZADD",
                    &[Elem::Bytes(text.as_bytes()), member],
                    None,
                    out,
                )
            }
            Piece::HashField {
                field,
                value,
                expire_ms,
            } => {
                if expire_ms.is_some_and(|t| t <= self.now_ms) {
                    self.stats.fields_expired += 1;
                    return;
                }
                let verb: &'static [u8] = if self.target.has_variadic_hset() {
                    b"HSET"
                } else {
                    b"HMSET"
                };
                let ttl = self.field_ttl(st, expire_ms);
                self.add(st, verb, &[field, value], ttl.map(|t| (t, field)), out)
            }
            Piece::StreamEntry { .. }
            | Piece::StreamField { .. }
            | Piece::StreamMeta { .. }
            | Piece::StreamGroup { .. }
            | Piece::StreamPending { .. }
            | Piece::StreamConsumer { .. }
            | Piece::StreamConsumerPending { .. } => self.stream_piece(st, p, out),
            Piece::Module { .. } => {}
        }
    }

    /// The field TTL to write, or `None` (no TTL, or a target that cannot keep it: then
    /// one warning per key).
    fn field_ttl(&mut self, st: &mut KeyState, expire_ms: Option<i64>) -> Option<i64> {
        let t = expire_ms?;
        if self.target.has_hash_field_ttl() {
            return Some(t);
        }
        if !st.ttl_warned {
            st.ttl_warned = true;
            self.stats.field_ttls_dropped += 1;
            tracing::warn!(
                key = %escape_bytes(&st.key),
                db = st.db,
                target = %self.target.name(),
                "hash field TTLs dropped: the target has no hash field expiration"
            );
        }
        None
    }

    /// Adds one element (its arguments) to the variadic batch of `verb`.
    fn add(
        &mut self,
        st: &mut KeyState,
        verb: &'static [u8],
        args: &[Elem<'_>],
        ttl: Option<(i64, Elem<'_>)>,
        out: &mut impl FnMut(Cmd),
    ) {
        if !st.batch.is_empty() && st.batch.verb != verb {
            self.close_batch(st, out);
        }
        st.batch.verb = verb;
        for &a in args {
            bulk_elem(&mut st.batch.args, a);
            st.batch.argc += 1;
        }
        st.batch.elems += 1;
        st.written += 1;
        if let Some((t, field)) = ttl {
            st.field_ttls.push((t, field.to_vec()));
        }
        if st.batch.elems >= self.cfg.batch_elems || st.batch.args.len() >= self.cfg.batch_bytes {
            self.close_batch(st, out);
        }
    }

    /// Closes the variadic command being filled (and writes its fields' TTLs).
    fn close_batch(&mut self, st: &mut KeyState, out: &mut impl FnMut(Cmd)) {
        if st.batch.is_empty() {
            return;
        }
        let name = st.name.clone();
        st.batch.close_into(&mut st.cmds, &name);
        self.write_field_ttls(st);
        self.maybe_flush(st, out);
    }

    /// `HPEXPIREAT name ms FIELDS n f…` for the fields just written, one per time.
    fn write_field_ttls(&mut self, st: &mut KeyState) {
        if st.field_ttls.is_empty() {
            return;
        }
        let mut ttls = std::mem::take(&mut st.field_ttls);
        ttls.sort_by_key(|(t, _)| *t);
        let name = st.name.clone();
        for group in ttls.chunk_by(|a, b| a.0 == b.0) {
            let at = group[0].0.to_string();
            let n = group.len().to_string();
            st.cmds.begin(5 + group.len());
            for a in [
                b"HPEXPIREAT".as_slice(),
                &name,
                at.as_bytes(),
                b"FIELDS",
                n.as_bytes(),
            ] {
                bulk(&mut st.cmds.buf, a);
            }
            for (_, f) in group {
                bulk(&mut st.cmds.buf, f);
            }
            st.cmds.end();
        }
    }

    /// Emits the gathered commands as a `Cmd` once they are about `batch_bytes`.
    pub(super) fn maybe_flush(&mut self, st: &mut KeyState, out: &mut impl FnMut(Cmd)) {
        if st.cmds.len() >= self.cfg.batch_bytes {
            self.flush(st, out);
        }
    }

    pub(super) fn flush(&mut self, st: &mut KeyState, out: &mut impl FnMut(Cmd)) {
        let kind = CmdKind::Data {
            key: Some(st.key.clone()),
        };
        if let Some(cmd) = st.cmds.take(st.db, kind) {
            self.emit(st, cmd, out);
        }
    }

    /// Holds or emits a `Cmd` of the commands path.
    fn emit(&mut self, st: &mut KeyState, cmd: Cmd, out: &mut impl FnMut(Cmd)) {
        match st.plan {
            Plan::Hold => {
                st.held_bytes += cmd.bytes.len();
                st.held.push(cmd);
                if st.held_bytes > self.restore_limit {
                    // Too big to wait for: commands it is, from now on.
                    st.plan = Plan::Commands;
                    for c in st.held.drain(..) {
                        out(c);
                    }
                    st.held_bytes = 0;
                }
            }
            Plan::Commands | Plan::SetString => out(cmd),
            Plan::RestoreOnly | Plan::Skip(_) => {}
        }
    }

    fn big_start(
        &mut self,
        st: &mut KeyState,
        role: BigRole,
        len: u64,
        field: Option<&[u8]>,
        field_expire_ms: Option<i64>,
        out: &mut impl FnMut(Cmd),
    ) {
        self.close_batch(st, out);
        let drop = field_expire_ms.is_some_and(|t| t <= self.now_ms);
        if drop {
            self.stats.fields_expired += 1;
        }
        let into = match role {
            BigRole::StringValue => st.name.clone(),
            _ => staging_name(&st.key, ELEMENT_SUFFIX),
        };
        st.big = Some(Big {
            role,
            left: len,
            first: true,
            field: field.map(<[u8]>::to_vec),
            field_expire_ms,
            into,
            open: 0,
            drop,
        });
        if len == 0 {
            self.big_done(st, out);
        }
    }

    fn big_chunk(&mut self, st: &mut KeyState, chunk: &[u8], out: &mut impl FnMut(Cmd)) {
        let Some(mut big) = st.big.take() else {
            return;
        };
        big.left = big.left.saturating_sub(chunk.len() as u64);
        if !big.drop {
            let into = &big.into;
            // Each `SET`/`APPEND` carries `batch_bytes` of the value (the last one
            // the rest), whatever the sizes of the chunks: its argument's length is
            // known when it starts, so the chunks are encoded straight into the
            // command, without gathering them first.
            let mut rest = chunk;
            while !rest.is_empty() {
                if big.open == 0 {
                    let n = (big.left + rest.len() as u64).min(self.cfg.batch_bytes as u64);
                    let verb: &[u8] = if big.first { b"SET" } else { b"APPEND" };
                    big.first = false;
                    st.cmds.buf.reserve(n as usize + into.len() + 48);
                    st.cmds.begin(3);
                    bulk(&mut st.cmds.buf, verb);
                    bulk(&mut st.cmds.buf, into);
                    encode_bulk_header(&mut st.cmds.buf, n);
                    big.open = n;
                }
                let m = big.open.min(rest.len() as u64) as usize;
                st.cmds.buf.extend_from_slice(&rest[..m]);
                rest = &rest[m..];
                big.open -= m as u64;
                if big.open == 0 {
                    st.cmds.buf.extend_from_slice(b"\r\n");
                    st.cmds.end();
                    // Only between whole commands.
                    self.maybe_flush(st, out);
                }
            }
        }
        let done = big.left == 0;
        st.big = Some(big);
        if done {
            self.big_done(st, out);
        }
    }

    /// The last chunk of a big element arrived: move it into its collection.
    fn big_done(&mut self, st: &mut KeyState, out: &mut impl FnMut(Cmd)) {
        let Some(big) = st.big.take() else {
            return;
        };
        if !big.drop {
            st.written += 1;
        }
        if big.drop || big.role == BigRole::StringValue {
            if big.role == BigRole::StringValue && big.first {
                // A zero-length "big" string: still a key.
                let name = st.name.clone();
                st.cmds.command(&[b"SET", &name, b""]);
            }
            self.maybe_flush(st, out);
            return;
        }
        let field = big.field.clone().unwrap_or_default();
        let ttl = self.field_ttl(st, big.field_expire_ms);
        let name = st.name.clone();
        let tmp = &big.into;
        if big.first {
            // No chunk came (empty element): stage an empty string.
            st.cmds.command(&[b"SET", tmp, b""]);
        }
        let (script, has_field) = match big.role {
            BigRole::ListItem => (LUA_RPUSH, false),
            BigRole::SetMember => (LUA_SADD, false),
            _ => (LUA_HSET, true),
        };
        let mut args: Vec<&[u8]> = vec![b"EVAL", script, b"2", &name, tmp];
        if has_field {
            args.push(&field);
        }
        st.cmds.command(&args);
        if let Some(t) = ttl {
            let at = t.to_string();
            st.cmds
                .command(&[b"HPEXPIREAT", &name, at.as_bytes(), b"FIELDS", b"1", &field]);
        }
        self.maybe_flush(st, out);
    }

    /// Ends the current key: emits its RESTORE, or the rest of its commands.
    pub fn end(&mut self, e: &KeyEnd<'_>, out: &mut impl FnMut(Cmd)) -> Outcome {
        let Some(mut st) = self.cur.take() else {
            return Outcome::Skipped;
        };
        if let Plan::Skip(o) = st.plan {
            return o;
        }
        if st.plan == Plan::SetString {
            // Written whole by its one piece.
            self.stats.commands += 1;
            return Outcome::Commands;
        }
        if e.empty {
            self.stats.empty += 1;
            return Outcome::Empty;
        }
        if matches!(st.plan, Plan::Hold | Plan::RestoreOnly) {
            match self.restore_cmd(&st, e.raw, out) {
                Ok(true) => {
                    self.stats.restored += 1;
                    return Outcome::Restore;
                }
                Ok(false) => {
                    self.stats.expired += 1;
                    return Outcome::Expired;
                }
                Err(why) if st.plan == Plan::RestoreOnly => {
                    self.skip(st.db, &st.key.clone(), why);
                    return Outcome::Skipped;
                }
                Err(_) => {
                    st.plan = Plan::Commands;
                    for c in st.held.drain(..) {
                        out(c);
                    }
                }
            }
        }
        self.close_batch(&mut st, out);
        self.stream_end(&mut st, out);
        let keeps_empty = matches!(st.kind, ValueKind::String | ValueKind::Stream);
        if st.written == 0 && !keeps_empty {
            // Every element had expired: no key, as on the source.
            self.stats.empty += 1;
            return Outcome::Empty;
        }
        let name = st.name.clone();
        if let Some(t) = st.expire_ms {
            let at = t.to_string();
            st.cmds.command(&[b"PEXPIREAT", &name, at.as_bytes()]);
        }
        self.flush(&mut st, out);
        if st.staged {
            let mut guard = CmdBuf::default();
            guard.command(&[b"RENAMENX", &name, &st.key]);
            guard.command(&[b"DEL", &name]);
            if let Some(cmd) = guard.take(
                st.db,
                CmdKind::Guard {
                    key: st.key.clone(),
                },
            ) {
                out(cmd);
            }
        }
        self.stats.commands += 1;
        Outcome::Commands
    }

    /// Emits the RESTORE of the current key (into the small batch when the target has
    /// `REPLACE` or the policy does not replace); `Ok(false)` when its TTL ran out (old
    /// targets get a relative TTL); `Err(why)` when RESTORE cannot carry it.
    fn restore_cmd(
        &mut self,
        st: &KeyState,
        raw: Option<&[u8]>,
        out: &mut impl FnMut(Cmd),
    ) -> Result<bool, String> {
        let raw = raw.ok_or_else(|| {
            format!(
                "the value is larger than the raw capture limit ({} bytes) for RESTORE",
                self.restore_limit
            )
        })?;
        if raw.len() + 10 > self.restore_limit {
            return Err(format!(
                "its RESTORE payload ({} bytes) is over the limit ({} bytes)",
                raw.len() + 10,
                self.restore_limit
            ));
        }
        let version = self
            .target
            .restore
            .version_for(self.source, st.type_byte)
            .ok_or_else(|| format!("the target does not load RDB type {}", st.type_byte))?;
        let (ttl, abs) = match st.expire_ms {
            None => (0, false),
            Some(t) if self.target.has_abs_ttl() => (t, true),
            Some(t) => {
                let left = t - crate::transform::now_ms();
                if left <= 0 {
                    return Ok(false);
                }
                (left, false)
            }
        };
        let replace = self.cfg.conflict == Conflict::Replace;
        if !replace || self.target.has_restore_replace() {
            // RESTORE key ttl payload [REPLACE] [ABSTTL], the payload (raw, version,
            // CRC-64 of both) written in place. A large one goes alone, in a buffer of
            // its exact size.
            let alone = raw.len() > SMALL_BATCH_BYTES / 2;
            if alone {
                self.flush_pending(out);
                self.small.buf.reserve_exact(raw.len() + st.key.len() + 128);
            }
            let key = &st.key;
            self.small_begin(st.db, || CmdKind::Restore { key: key.clone() }, out);
            let b = &mut self.small.buf;
            encode_array_header(b, 4 + u64::from(replace) + u64::from(abs));
            bulk(b, b"RESTORE");
            bulk(b, &st.key);
            bulk_int(b, ttl);
            crate::resp::encode_bulk_header(b, raw.len() as u64 + 10);
            let start = b.len();
            b.extend_from_slice(raw);
            b.extend_from_slice(&version.to_le_bytes());
            let crc = crc64(&b[start..]);
            b.extend_from_slice(&crc.to_le_bytes());
            b.extend_from_slice(b"\r\n");
            if replace {
                bulk(b, b"REPLACE");
            }
            if abs {
                bulk(b, b"ABSTTL");
            }
            self.small_end(out);
            if alone {
                self.flush_pending(out);
            }
            return Ok(true);
        }
        // A target without RESTORE … REPLACE: DEL first, in a Cmd of its own key.
        let payload = dump::payload(raw, version);
        let ttl = ttl.to_string();
        let mut cmds = CmdBuf::default();
        if replace && !self.target.has_restore_replace() {
            cmds.command(&[b"DEL", &st.key]);
        }
        let mut args: Vec<&[u8]> = vec![b"RESTORE", &st.key, ttl.as_bytes(), &payload];
        if replace && self.target.has_restore_replace() {
            args.push(b"REPLACE");
        }
        if abs {
            args.push(b"ABSTTL");
        }
        cmds.command(&args);
        if let Some(cmd) = cmds.take(
            st.db,
            CmdKind::Restore {
                key: st.key.clone(),
            },
        ) {
            out(cmd);
        }
        Ok(true)
    }

    fn skip(&mut self, db: u32, key: &Bytes, reason: String) {
        tracing::warn!(key = %escape_bytes(key), db, "key skipped: {reason}");
        self.stats.skipped += 1;
        if self.stats.skips.len() == SKIPS_KEPT {
            self.stats.skips.pop_front();
        }
        self.stats.skips.push_back(RewriteSkip {
            db,
            key: key.clone(),
            reason,
        });
    }

    /// `FUNCTION LOAD REPLACE code` for a target that has functions; `None` (and a
    /// warning) for one that has not.
    pub fn function(code: &[u8], target: &ServerInfo) -> Option<Cmd> {
        if !target.has_functions() {
            tracing::warn!(
                target = %target.name(),
                "function library not copied: the target has no FUNCTION command"
            );
            return None;
        }
        Some(Cmd::from_args(
            None,
            &[b"FUNCTION".as_slice(), b"LOAD", b"REPLACE", code],
            CmdKind::Script,
        ))
    }

    /// `SCRIPT LOAD body`, for a `lua` aux record (scripts a Redis ≤ 4 source kept so
    /// that its replicas could run EVALSHA).
    pub fn lua_script(body: &[u8]) -> Cmd {
        Cmd::from_args(
            None,
            &[b"SCRIPT".as_slice(), b"LOAD", body],
            CmdKind::Script,
        )
    }
}

/// A score as text that parses back to the same double: Rust's shortest round-trip form
/// (never a fixed number of decimals: trap 9), and `inf` / `-inf`.
pub fn score_text(score: f64) -> String {
    if score.is_infinite() {
        if score > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if score.is_nan() {
        "nan".to_string()
    } else {
        format!("{score:?}")
    }
}

/// A name for a helper key in the same cluster slot as `key`.
///
/// A key with a hash tag keeps it when a suffix is appended; a key without one gets
/// braces around it, which makes the whole key the tag. A key that braces cannot keep in
/// its slot (no tag but a `}` in it, like `a}b`, or the empty key) gets a computed tag
/// of that slot in front: `{ferry:<n>}a}b:suffix`.
pub fn staging_name(key: &[u8], suffix: &[u8]) -> Bytes {
    let mut name = Vec::with_capacity(key.len() + suffix.len() + 16);
    if has_hash_tag(key) {
        name.extend_from_slice(key);
    } else if !key.is_empty() && !key.contains(&b'}') {
        name.push(b'{');
        name.extend_from_slice(key);
        name.push(b'}');
    } else {
        name.push(b'{');
        name.extend_from_slice(crate::cluster::slot::slot_tag(
            crate::cluster::slot::key_slot(key),
        ));
        name.push(b'}');
        name.extend_from_slice(key);
    }
    name.extend_from_slice(suffix);
    Bytes::from(name)
}

/// Redis's rule: a `{` followed later by a `}` with at least one byte between them.
fn has_hash_tag(key: &[u8]) -> bool {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return false;
    };
    matches!(key[open + 1..].iter().position(|&b| b == b'}'), Some(len) if len > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_keep_every_bit() {
        for s in [
            0.1,
            1.5,
            -2.25,
            1e300,
            -1e-300,
            5e-324,
            f64::MAX,
            0.30000000000000004,
            1.2345678901234567e-8,
            123456789.12345679,
            9007199254740993.0,
            -0.0,
            -42.0,
        ] {
            let t = score_text(s);
            let back: f64 = t.parse().expect("parses");
            assert_eq!(back.to_bits(), s.to_bits(), "{t}");
        }
        assert_eq!(score_text(f64::INFINITY), "inf");
        assert_eq!(score_text(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn staging_names_stay_in_the_keys_slot() {
        assert_eq!(&staging_name(b"user:1", b":s")[..], b"{user:1}:s");
        assert_eq!(&staging_name(b"a{tag}b", b":s")[..], b"a{tag}b:s");
        assert_eq!(&staging_name(b"a{b", b":s")[..], b"{a{b}:s");
        for key in [&b"a{}b"[..], b"", b"a}b", b"}", b"{}"] {
            let name = staging_name(key, b":s");
            assert_eq!(
                crate::cluster::slot::key_slot(&name),
                crate::cluster::slot::key_slot(key),
                "{:?}",
                String::from_utf8_lossy(&name)
            );
            assert!(name.starts_with(b"{ferry:") && name.ends_with(b":s"));
        }
    }
}
