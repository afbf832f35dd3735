//! The RDB state machine.
//!
//! The decoder never owns the input. The caller hands it the bytes it has not consumed
//! yet; [`Decoder::step`] decodes one *unit* from their start (an opcode with its
//! payload, a key header, one element, a piece of a large string…), reports how many
//! bytes it consumed, and returns the event that unit produced. A unit that is not
//! complete in the input consumes nothing and asks for more ([`Step::NeedMore`]); the
//! caller keeps the unconsumed bytes, appends more and calls again. So the decoder can
//! be fed any split of the stream, one byte at a time included.
//!
//! Memory: a unit is at most one element (bounded by `max_element`), except where the
//! format allows streaming: strings longer than `chunk_threshold` (string values, list
//! items, set members, hash values) are delivered as `BigStart` + `Chunk`s straight from
//! the input, LZF-compressed ones through a streaming decompressor with an 8 KiB window.
//! Compact blobs (ziplist, listpack, intset, zipmap, stream nodes) are copied into the
//! decoder — they are single allocations on the server too — and walked from there.
//!
//! Every length is checked before it is trusted: against `max_element` before any bytes
//! are awaited or allocated, and against the bytes left when the total size is known
//! (a file).

use super::crc::Crc64;
use super::event::*;
use super::lzf::{self, LzfStream};
use super::module::{self, *};
use super::{intset, listpack, ziplist, zipmap, Elem, ErrorKind, RdbError};

// Opcodes (reference §1.3).
pub const RDB_OPCODE_SLOT_IMPORT_OR_KEY_META: u8 = 243;
pub const RDB_OPCODE_SLOT_INFO: u8 = 244;
pub const RDB_OPCODE_FUNCTION2: u8 = 245;
pub const RDB_OPCODE_FUNCTION_PRE_GA: u8 = 246;
pub const RDB_OPCODE_MODULE_AUX: u8 = 247;
pub const RDB_OPCODE_IDLE: u8 = 248;
pub const RDB_OPCODE_FREQ: u8 = 249;
pub const RDB_OPCODE_AUX: u8 = 250;
pub const RDB_OPCODE_RESIZEDB: u8 = 251;
pub const RDB_OPCODE_EXPIRETIME_MS: u8 = 252;
pub const RDB_OPCODE_EXPIRETIME: u8 = 253;
pub const RDB_OPCODE_SELECTDB: u8 = 254;
pub const RDB_OPCODE_EOF: u8 = 255;
/// Redis Enterprise key attributes (librdb reads one length each and moves on).
pub const RDB_OPCODE_ENT_RAM_LRU: u8 = 107;
pub const RDB_OPCODE_ENT_SLOT_NUM: u8 = 121;

// Object types (reference §2.4).
pub const RDB_TYPE_STRING: u8 = 0;
pub const RDB_TYPE_LIST: u8 = 1;
pub const RDB_TYPE_SET: u8 = 2;
pub const RDB_TYPE_ZSET: u8 = 3;
pub const RDB_TYPE_HASH: u8 = 4;
pub const RDB_TYPE_ZSET_2: u8 = 5;
pub const RDB_TYPE_MODULE_PRE_GA: u8 = 6;
pub const RDB_TYPE_MODULE_2: u8 = 7;
pub const RDB_TYPE_HASH_ZIPMAP: u8 = 9;
pub const RDB_TYPE_LIST_ZIPLIST: u8 = 10;
pub const RDB_TYPE_SET_INTSET: u8 = 11;
pub const RDB_TYPE_ZSET_ZIPLIST: u8 = 12;
pub const RDB_TYPE_HASH_ZIPLIST: u8 = 13;
pub const RDB_TYPE_LIST_QUICKLIST: u8 = 14;
pub const RDB_TYPE_STREAM_LISTPACKS: u8 = 15;
pub const RDB_TYPE_HASH_LISTPACK: u8 = 16;
pub const RDB_TYPE_ZSET_LISTPACK: u8 = 17;
pub const RDB_TYPE_LIST_QUICKLIST_2: u8 = 18;
pub const RDB_TYPE_STREAM_LISTPACKS_2: u8 = 19;
pub const RDB_TYPE_SET_LISTPACK: u8 = 20;
pub const RDB_TYPE_STREAM_LISTPACKS_3: u8 = 21;
/// Redis 7.4-RC HASH_METADATA_PRE_GA, or Valkey 9 HASH_2 under VALKEY magic.
pub const RDB_TYPE_22: u8 = 22;
pub const RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: u8 = 23;
pub const RDB_TYPE_HASH_METADATA: u8 = 24;
pub const RDB_TYPE_HASH_LISTPACK_EX: u8 = 25;

const QUICKLIST_NODE_CONTAINER_PLAIN: u64 = 1;
const QUICKLIST_NODE_CONTAINER_PACKED: u64 = 2;
pub(super) const STREAM_ITEM_FLAG_DELETED: i64 = 1;
pub(super) const STREAM_ITEM_FLAG_SAMEFIELDS: i64 = 2;

/// Newest REDIS-magic version whose layout this decoder knows. 13 and 14 (Redis 8.6+)
/// are accepted; the types and opcodes they add are reported as unsupported if seen.
pub const MAX_REDIS_VERSION: u32 = 14;
pub const VALKEY_VERSION: u32 = 80;

const CRC_STAGE: usize = 32 * 1024;

/// Settings of the decoder; all memory it uses is bounded by them.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Strings longer than this (string values, list items, set members, hash values)
    /// are delivered in chunks instead of whole.
    pub chunk_threshold: usize,
    /// The largest element that must be held whole (keys, hash fields, zset members,
    /// aux values, compact blobs). Larger ones are an error.
    pub max_element: usize,
    /// Keep the raw bytes of values whose encoding is at most this long (0 = never).
    pub raw_capture_max: usize,
    /// Check the trailing CRC-64.
    pub verify_checksum: bool,
    /// Total size of the RDB when known (a file): lengths are then checked against the
    /// bytes left, so a corrupt length is reported where it is, not at the end.
    pub total_len: Option<u64>,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            chunk_threshold: 1 << 20,
            max_element: 512 << 20,
            raw_capture_max: 0,
            verify_checksum: true,
            total_len: None,
        }
    }
}

/// What one call to [`Decoder::step`] produced.
#[derive(Debug)]
pub enum Step<'a> {
    Event(Event<'a>),
    /// The next unit is not complete: call again with the unconsumed bytes and more.
    NeedMore,
    /// The RDB ended (after `Event::Eof`); bytes after it were not consumed.
    Done,
}

/// Where an element of a pending event lives; resolved to a slice when the event is
/// built, after all mutation of the decoder (two phases keep the borrow checker simple).
#[derive(Debug, Clone, Copy)]
pub(super) enum Src {
    /// `input[start..start+len]` of the current `step` call.
    Input(usize, usize),
    Blob(usize, usize),
    Scratch(usize),
    Lzf,
    Int(i64),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum P {
    String(Src),
    BigStart {
        role: BigRole,
        len: u64,
        field: Option<Src>,
        field_expire_ms: Option<i64>,
    },
    Chunk(Src),
    ListItem(Src),
    SetMember(Src),
    Zset(Src, f64),
    Hash(Src, Src, Option<i64>),
    StreamEntry(StreamId, u64),
    StreamField(Src, Src),
    StreamMeta {
        length: u64,
        last_id: StreamId,
        first_id: Option<StreamId>,
        max_deleted_id: Option<StreamId>,
        entries_added: Option<u64>,
        groups: u64,
    },
    StreamGroup {
        name: Src,
        last_id: StreamId,
        entries_read: Option<u64>,
        pending: u64,
    },
    StreamPending(StreamId, i64, u64),
    StreamConsumer {
        name: Src,
        seen: i64,
        active: Option<i64>,
        pending: u64,
    },
    StreamConsumerPending(StreamId),
    Module(ModuleId),
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Header,
    Aux(Src, Src),
    SelectDb(u64),
    ResizeDb(u64, u64),
    SlotInfo(u64, u64, u64),
    SlotImport(Src),
    ModuleAux(ModuleId, u64),
    Function(Src),
    Key,
    Piece(P),
    KeyEnd(bool),
    Eof(Checksum),
}

/// How to walk a compact blob once it is in `self.blob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    ZiplistList,
    ZiplistZset,
    ZiplistHash,
    ListpackList,
    ListpackSet,
    ListpackZset,
    ListpackHash,
    /// field, value, expireAt triples (types 23 and 25).
    ListpackHashEx,
    Intset,
    Zipmap,
    StreamNode,
}

/// Where a quicklist returns after walking one node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quick {
    pub(super) v2: bool,
    pub(super) nodes_left: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum V {
    /// One rdbstr: the string value.
    String,
    /// Count of a plain collection (and, for type 24, the minimum expiry before it).
    Count,
    Plain {
        left: u64,
    },
    /// Type 25: minExpire, then the listpack.
    HashLpExMin,
    /// Reading a blob rdbstr into `self.blob`.
    Blob {
        walk: Walk,
        quick: Option<Quick>,
    },
    /// Walking `self.blob` at `pos`; `index` counts elements (intset).
    Walking {
        walk: Walk,
        pos: usize,
        index: u32,
        quick: Option<Quick>,
    },
    QuickCount {
        v2: bool,
    },
    QuickNode(Quick),
    StreamNodesCount,
    StreamNode {
        left: u64,
    },
    StreamMeta,
    StreamGroup {
        groups_left: u64,
    },
    StreamGroupPel {
        left: u64,
        groups_left: u64,
    },
    StreamConsumers {
        groups_left: u64,
    },
    StreamConsumer {
        left: u64,
        groups_left: u64,
    },
    StreamConsumerPel {
        left: u64,
        consumers_left: u64,
        groups_left: u64,
    },
    ModuleId,
    /// Skipping a module opcode stream; `aux` = it belongs to MODULE_AUX, not a key.
    ModuleBody {
        aux: bool,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) enum State {
    Magic,
    Top,
    Value(V),
    KeyEnd,
    Checksum,
    Done,
    Failed,
}

/// A string being delivered in chunks.
#[derive(Debug)]
struct Big {
    /// Input bytes (compressed ones for LZF) still to consume.
    left: u64,
    lzf: Option<LzfStream>,
}

/// Stream node walk state: master fields and the current entry's fields.
#[derive(Debug, Default)]
pub(super) struct StreamWalk {
    pub(super) master_id: StreamId,
    pub(super) master_fields: Vec<Stored>,
    pub(super) fields: Vec<(Stored, Stored)>,
    pub(super) next_field: usize,
    pub(super) started: bool,
}

/// An element of `self.blob`, kept across calls.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stored {
    Range(usize, usize),
    Int(i64),
}

/// A problem found at `at` (an index into the current input).
pub(super) struct Bad {
    at: usize,
    kind: ErrorKind,
    msg: String,
}

pub(super) type R<T> = Result<T, Bad>;

pub(super) fn corrupt(at: usize, msg: impl Into<String>) -> Bad {
    Bad {
        at,
        kind: ErrorKind::Corrupt,
        msg: msg.into(),
    }
}

pub(super) fn unsupported(at: usize, msg: impl Into<String>) -> Bad {
    Bad {
        at,
        kind: ErrorKind::Unsupported,
        msg: msg.into(),
    }
}

/// Outcome of decoding one unit: the new input position, and whether an event is ready.
pub(super) enum Adv {
    Silent(usize),
    Ready(usize),
    NeedMore(usize),
    Done(usize),
}

/// Head of an RDB string (reference §2.2).
pub(super) enum StrHead {
    Plain { len: u64, at: usize },
    Int(i64),
    Lzf { clen: u64, ulen: u64, at: usize },
}

/// A cursor over the current input. `None` from a read means "not enough bytes yet".
pub(super) struct Cur<'b> {
    pub(super) b: &'b [u8],
    pub(super) p: usize,
}

impl<'b> Cur<'b> {
    #[inline]
    pub(super) fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.p)?;
        self.p += 1;
        Some(v)
    }
    #[inline]
    pub(super) fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let end = self.p.checked_add(n)?;
        let s = self.b.get(self.p..end)?;
        self.p = end;
        Some(s)
    }
    pub(super) fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Some(a)
    }
    pub(super) fn i64le(&mut self) -> Option<i64> {
        self.arr::<8>().map(i64::from_le_bytes)
    }
}

/// Returns `Ok(Adv::NeedMore(pos))` from the enclosing function when a read came up short.
macro_rules! need {
    ($e:expr, $pos:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(Adv::NeedMore($pos)),
        }
    };
}
pub(super) use need;

/// Reads an RDB length (reference §2.1). `Ok(None)` = incomplete.
/// Returns the value and whether it was the "encoded" form (`11xxxxxx`).
#[inline]
pub(super) fn read_len(c: &mut Cur) -> R<Option<(u64, bool)>> {
    let at = c.p;
    let Some(b) = c.u8() else { return Ok(None) };
    Ok(match b >> 6 {
        0 => Some(((b & 0x3f) as u64, false)),
        1 => c
            .u8()
            .map(|n| ((((b & 0x3f) as u64) << 8) | n as u64, false)),
        3 => Some(((b & 0x3f) as u64, true)),
        _ => match b {
            0x80 => c.arr::<4>().map(|a| (u32::from_be_bytes(a) as u64, false)),
            0x81 => c.arr::<8>().map(|a| (u64::from_be_bytes(a), false)),
            _ => {
                return Err(corrupt(
                    at,
                    format!("invalid length byte 0x{b:02x} (expected 0x80 or 0x81 after 10xxxxxx)"),
                ))
            }
        },
    })
}

/// Reads a plain length; the encoded form is an error here.
#[inline]
pub(super) fn read_plain_len(c: &mut Cur, what: &str) -> R<Option<u64>> {
    let at = c.p;
    match read_len(c)? {
        None => Ok(None),
        Some((_, true)) => Err(corrupt(
            at,
            format!("{what}: expected a length, found an encoded-string marker"),
        )),
        Some((v, false)) => Ok(Some(v)),
    }
}

pub(super) fn read_str_head(c: &mut Cur) -> R<Option<StrHead>> {
    let at = c.p;
    let Some((v, enc)) = read_len(c)? else {
        return Ok(None);
    };
    if !enc {
        return Ok(Some(StrHead::Plain { len: v, at: c.p }));
    }
    Ok(match v {
        0 => c.u8().map(|b| StrHead::Int(b as i8 as i64)),
        1 => c
            .arr::<2>()
            .map(|a| StrHead::Int(i16::from_le_bytes(a) as i64)),
        2 => c
            .arr::<4>()
            .map(|a| StrHead::Int(i32::from_le_bytes(a) as i64)),
        3 => {
            let Some(clen) = read_plain_len(c, "LZF compressed length")? else {
                return Ok(None);
            };
            let Some(ulen) = read_plain_len(c, "LZF uncompressed length")? else {
                return Ok(None);
            };
            Some(StrHead::Lzf {
                clen,
                ulen,
                at: c.p,
            })
        }
        _ => {
            return Err(corrupt(
                at,
                format!(
                    "unknown string encoding 0x{:02x} (expected 0xc0..0xc3)",
                    0xc0 | v
                ),
            ))
        }
    })
}

/// Parses a zset score written as text in an ASCII double (type 3) or a
/// ziplist/listpack element ("inf", "-inf", "3.5", "1e+20").
fn parse_score(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    let v: f64 = s.trim().parse().ok()?;
    (!v.is_nan()).then_some(v)
}

fn kind_of(t: u8, flavor: Flavor) -> Option<ValueKind> {
    use ValueKind::*;
    Some(match t {
        RDB_TYPE_STRING => String,
        RDB_TYPE_LIST
        | RDB_TYPE_LIST_ZIPLIST
        | RDB_TYPE_LIST_QUICKLIST
        | RDB_TYPE_LIST_QUICKLIST_2 => List,
        RDB_TYPE_SET | RDB_TYPE_SET_INTSET | RDB_TYPE_SET_LISTPACK => Set,
        RDB_TYPE_ZSET | RDB_TYPE_ZSET_2 | RDB_TYPE_ZSET_ZIPLIST | RDB_TYPE_ZSET_LISTPACK => Zset,
        RDB_TYPE_HASH
        | RDB_TYPE_HASH_ZIPMAP
        | RDB_TYPE_HASH_ZIPLIST
        | RDB_TYPE_HASH_LISTPACK
        | RDB_TYPE_22 => Hash,
        RDB_TYPE_HASH_LISTPACK_EX_PRE_GA | RDB_TYPE_HASH_METADATA | RDB_TYPE_HASH_LISTPACK_EX
            if flavor == Flavor::Redis =>
        {
            Hash
        }
        RDB_TYPE_STREAM_LISTPACKS | RDB_TYPE_STREAM_LISTPACKS_2 | RDB_TYPE_STREAM_LISTPACKS_3 => {
            Stream
        }
        // Type 6 (4.0-RC modules) is read as far as its module id, to name it in the error.
        RDB_TYPE_MODULE_2 | RDB_TYPE_MODULE_PRE_GA => Module,
        _ => return None,
    })
}

/// The streaming RDB decoder. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    pub(super) cfg: DecoderConfig,
    pub(super) state: State,
    /// Absolute stream offset of `input[0]` of the current call.
    pub(super) offset: u64,
    pub(super) version: u32,
    pub(super) flavor: Flavor,
    pub(super) crc: Crc64,
    /// `input[..crc_upto]` of the current call is consumed but not yet in `crc`.
    pub(super) crc_upto: usize,
    pub(super) crc_stage: Vec<u8>,
    pub(super) error: Option<RdbError>,
    pub(super) db: u64,
    // Attributes of the next key (reset after every key).
    pub(super) expire_ms: Option<i64>,
    pub(super) idle_s: Option<u64>,
    pub(super) freq: Option<u8>,
    // The current key.
    pub(super) in_key: bool,
    pub(super) key: Vec<u8>,
    pub(super) type_byte: u8,
    pub(super) kind: ValueKind,
    pub(super) key_offset: u64,
    /// Absolute offset of the first value byte (after the key).
    pub(super) value_start: u64,
    pub(super) elements: u64,
    pub(super) min_expire: i64,
    pub(super) raw: Vec<u8>,
    pub(super) capturing: bool,
    // Buffers.
    pub(super) scratch: [Vec<u8>; 3],
    pub(super) blob: Vec<u8>,
    /// A blob being read: its stored length and, if LZF-compressed, its real length.
    pub(super) blob_head: Option<(u64, Option<u64>)>,
    pub(super) blob_in: Vec<u8>,
    big: Option<Big>,
    pub(super) lzf_out: Vec<u8>,
    pub(super) stream: StreamWalk,
    pub(super) slot_ranges: Vec<(u64, u64)>,
    pending: Option<Pending>,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        Decoder {
            cfg,
            state: State::Magic,
            offset: 0,
            version: 0,
            flavor: Flavor::Redis,
            crc: Crc64::new(),
            crc_upto: 0,
            crc_stage: Vec::with_capacity(CRC_STAGE),
            error: None,
            db: 0,
            expire_ms: None,
            idle_s: None,
            freq: None,
            in_key: false,
            key: Vec::new(),
            type_byte: 0,
            kind: ValueKind::String,
            key_offset: 0,
            value_start: 0,
            elements: 0,
            min_expire: 0,
            raw: Vec::new(),
            capturing: false,
            scratch: Default::default(),
            blob: Vec::new(),
            blob_head: None,
            blob_in: Vec::new(),
            big: None,
            lzf_out: Vec::new(),
            stream: StreamWalk::default(),
            slot_ranges: Vec::new(),
            pending: None,
        }
    }

    /// RDB version from the header (0 before it was read).
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Bytes consumed so far: the absolute offset of the next unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The current database (from the last SELECTDB).
    pub fn db(&self) -> u64 {
        self.db
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The consumer will not use the current key's DUMP payload (it writes the key with
    /// commands): stop copying the value's bytes for it. That key's `KeyEnd` then has
    /// no `raw`. The capture starts again with the next key.
    pub fn stop_capture(&mut self) {
        if !self.capturing {
            return;
        }
        self.capturing = false;
        if self.raw.capacity() > 1 << 20 {
            self.raw = Vec::new();
        } else {
            self.raw.clear();
        }
    }

    /// Decodes the next event from the start of `input` (the caller's unconsumed bytes).
    /// Returns how many bytes of `input` were consumed — the caller must drop exactly
    /// those before the next call — and what was found.
    pub fn step<'a>(&'a mut self, input: &'a [u8]) -> Result<(usize, Step<'a>), RdbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut pos = 0usize;
        self.crc_upto = 0;
        let outcome = loop {
            match self.advance(input, pos) {
                Ok(Adv::Silent(p)) => pos = p,
                Ok(Adv::Ready(p)) => break Ok((p, true, false)),
                Ok(Adv::NeedMore(p)) => break Ok((p, false, false)),
                Ok(Adv::Done(p)) => break Ok((p, false, true)),
                Err(bad) => break Err(bad),
            }
        };
        self.flush_crc(input);
        match outcome {
            Err(bad) => {
                let mut e = RdbError::new(bad.kind, self.offset + bad.at as u64, bad.msg);
                if self.in_key {
                    e.key = Some(self.key.clone());
                }
                self.state = State::Failed;
                self.error = Some(e.clone());
                Err(e)
            }
            Ok((p, ready, done)) => {
                self.offset += p as u64;
                if ready {
                    let ev = self.build(input);
                    Ok((p, Step::Event(ev)))
                } else if done {
                    Ok((p, Step::Done))
                } else {
                    Ok((p, Step::NeedMore))
                }
            }
        }
    }

    /// Declares the end of the input: an error unless the RDB was complete.
    pub fn finish(&self) -> Result<(), RdbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.is_done() {
            return Ok(());
        }
        let mut e = RdbError::new(
            ErrorKind::Truncated,
            self.offset,
            "the input ended before the RDB did (no EOF opcode)",
        );
        if self.in_key {
            e.key = Some(self.key.clone());
        }
        Err(e)
    }

    /// Accounts the bytes `input[from..to]` as consumed: checksum and raw capture.
    #[inline]
    // Units are consumed in order, so the checksum only needs to know how far the
    // consumed bytes reach; `flush_crc` updates it once per `step` call, because a CRC
    // call costs ~20 ns whatever its length and a key is several units.
    pub(super) fn eat(&mut self, input: &[u8], from: usize, to: usize) {
        let s = &input[from..to];
        self.crc_upto = to;
        if self.capturing {
            if self.raw.len() + s.len() > self.cfg.raw_capture_max {
                self.capturing = false;
                self.raw = Vec::new();
            } else {
                self.raw.extend_from_slice(s);
            }
        }
    }

    /// Moves the consumed bytes of this call into the checksum. Small spans are staged
    /// in `crc_stage` and hashed 32 KiB at a time: a CRC call has a fixed cost of about
    /// 20 ns, more than copying a 100-byte key.
    fn flush_crc(&mut self, input: &[u8]) {
        let span = &input[..self.crc_upto];
        self.crc_upto = 0;
        if self.crc_stage.len() + span.len() > CRC_STAGE {
            self.crc.update(&self.crc_stage);
            self.crc_stage.clear();
        }
        if span.len() >= CRC_STAGE {
            self.crc.update(span);
        } else {
            self.crc_stage.extend_from_slice(span);
        }
    }

    /// The checksum of everything consumed so far.
    fn crc_value(&mut self) -> u64 {
        self.crc.update(&self.crc_stage);
        self.crc_stage.clear();
        self.crc.value()
    }

    fn ready(&mut self, p: Pending, input: &[u8], from: usize, to: usize) -> R<Adv> {
        self.eat(input, from, to);
        self.pending = Some(p);
        Ok(Adv::Ready(to))
    }

    pub(super) fn silent(&mut self, input: &[u8], from: usize, to: usize) -> R<Adv> {
        self.eat(input, from, to);
        Ok(Adv::Silent(to))
    }

    /// Bytes left in the whole stream after `input[at]`, when the total is known.
    fn left_in_stream(&self, at: usize) -> Option<u64> {
        self.cfg
            .total_len
            .map(|t| t.saturating_sub(self.offset + at as u64))
    }

    pub(super) fn check_len(&self, at: usize, len: u64, what: &str) -> R<()> {
        if let Some(left) = self.left_in_stream(at) {
            if len > left {
                return Err(corrupt(
                    at,
                    format!("{what} {len} exceeds the {left} bytes left"),
                ));
            }
        }
        Ok(())
    }

    fn check_element(&self, at: usize, len: u64, what: &str) -> R<()> {
        self.check_len(at, len, what)?;
        self.check_limit(at, len, what)
    }

    /// Checks a length that is not read from the input (an uncompressed size).
    fn check_limit(&self, at: usize, len: u64, what: &str) -> R<()> {
        if len > self.cfg.max_element as u64 {
            return Err(Bad {
                at,
                kind: ErrorKind::Limit,
                msg: format!(
                    "{what} {len} exceeds the max_element limit of {} bytes",
                    self.cfg.max_element
                ),
            });
        }
        Ok(())
    }

    /// Reads a whole RDB string. LZF data is decompressed into scratch buffer `slot`.
    pub(super) fn read_elem(&mut self, c: &mut Cur, slot: usize, what: &str) -> R<Option<Src>> {
        let Some(head) = read_str_head(c)? else {
            return Ok(None);
        };
        match head {
            StrHead::Int(i) => Ok(Some(Src::Int(i))),
            StrHead::Plain { len, at } => {
                self.check_element(at, len, what)?;
                let start = c.p;
                Ok(c.take(len as usize)
                    .map(|_| Src::Input(start, len as usize)))
            }
            StrHead::Lzf { clen, ulen, at } => {
                self.check_element(at, clen, what)?;
                self.check_limit(at, ulen, what)?;
                let Some(data) = c.take(clen as usize) else {
                    return Ok(None);
                };
                let out = &mut self.scratch[slot];
                out.clear();
                lzf::decompress(data, out, ulen as usize)
                    .map_err(|e| corrupt(at, format!("{what}: LZF data: {e}")))?;
                Ok(Some(Src::Scratch(slot)))
            }
        }
    }

    /// Like `read_elem`, but an integer is rendered into scratch `slot` as text, for
    /// places that need bytes (names, keys, function code).
    pub(super) fn read_bytes(&mut self, c: &mut Cur, slot: usize, what: &str) -> R<Option<Src>> {
        Ok(match self.read_elem(c, slot, what)? {
            Some(Src::Int(i)) => {
                let out = &mut self.scratch[slot];
                out.clear();
                Elem::Int(i).write_to(out);
                Some(Src::Scratch(slot))
            }
            other => other,
        })
    }

    /// Reads a string that may be big: returns `Ok(Some(Ok(src)))` for a whole one, or
    /// `Ok(Some(Err(len)))` after starting a chunked delivery of `len` bytes.
    fn read_maybe_big(
        &mut self,
        c: &mut Cur,
        slot: usize,
        what: &str,
    ) -> R<Option<Result<Src, u64>>> {
        let save = c.p;
        let Some(head) = read_str_head(c)? else {
            return Ok(None);
        };
        let threshold = self.cfg.chunk_threshold as u64;
        match head {
            StrHead::Plain { len, at } if len > threshold => {
                self.check_len(at, len, what)?;
                self.big = Some(Big {
                    left: len,
                    lzf: None,
                });
                Ok(Some(Err(len)))
            }
            StrHead::Lzf { clen, ulen, at } if ulen > threshold => {
                self.check_len(at, clen, what)?;
                self.big = Some(Big {
                    left: clen,
                    lzf: Some(LzfStream::new(ulen)),
                });
                Ok(Some(Err(ulen)))
            }
            StrHead::Plain { len, at } => {
                self.check_element(at, len, what)?;
                let start = c.p;
                Ok(c.take(len as usize)
                    .map(|_| Ok(Src::Input(start, len as usize))))
            }
            StrHead::Int(i) => Ok(Some(Ok(Src::Int(i)))),
            StrHead::Lzf { .. } => {
                c.p = save;
                Ok(self.read_elem(c, slot, what)?.map(Ok))
            }
        }
    }

    /// Decodes one unit starting at `input[pos]`.
    fn advance(&mut self, input: &[u8], pos: usize) -> R<Adv> {
        if let Some(big) = &self.big {
            let _ = big;
            return self.advance_big(input, pos);
        }
        match self.state {
            State::Magic => self.advance_magic(input, pos),
            State::Top => self.advance_top(input, pos),
            State::Value(v) => self.advance_value(v, input, pos),
            State::KeyEnd => {
                let empty = self.elements == 0
                    && !matches!(
                        self.kind,
                        ValueKind::String | ValueKind::Module | ValueKind::Stream
                    );
                self.pending = Some(Pending::KeyEnd(empty));
                self.state = State::Top;
                Ok(Adv::Ready(pos))
            }
            State::Checksum => {
                let mut c = Cur { b: input, p: pos };
                let stored = u64::from_le_bytes(need!(c.arr::<8>(), pos));
                self.flush_crc(input);
                let computed = self.crc_value();
                let checksum = if stored == 0 {
                    Checksum::Disabled
                } else if !self.cfg.verify_checksum {
                    Checksum::Unchecked(stored)
                } else if stored == computed {
                    Checksum::Verified(stored)
                } else {
                    return Err(corrupt(
                        pos,
                        format!(
                            "checksum mismatch: stored 0x{stored:016x} computed 0x{computed:016x}"
                        ),
                    ));
                };
                // The trailer is not part of what the CRC covers.
                self.pending = Some(Pending::Eof(checksum));
                self.state = State::Done;
                Ok(Adv::Ready(c.p))
            }
            State::Done => Ok(Adv::Done(pos)),
            State::Failed => Err(corrupt(pos, "decoder already failed")),
        }
    }

    fn advance_magic(&mut self, input: &[u8], pos: usize) -> R<Adv> {
        let mut c = Cur { b: input, p: pos };
        let m = need!(c.arr::<9>(), pos);
        let (flavor, digits) = if &m[..5] == b"REDIS" {
            (Flavor::Redis, &m[5..])
        } else if &m[..6] == b"VALKEY" {
            (Flavor::Valkey, &m[6..])
        } else {
            return Err(corrupt(
                pos,
                format!(
                    "not an RDB: expected magic REDIS or VALKEY, found {:?}",
                    crate::util::escape_bytes(&m)
                ),
            ));
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(corrupt(
                pos,
                format!(
                    "bad RDB version digits {:?}",
                    crate::util::escape_bytes(digits)
                ),
            ));
        }
        let version: u32 = digits.iter().fold(0, |v, d| v * 10 + (d - b'0') as u32);
        match flavor {
            Flavor::Redis if (1..=MAX_REDIS_VERSION).contains(&version) => {}
            Flavor::Valkey if version == VALKEY_VERSION => {}
            _ => {
                return Err(unsupported(
                    pos,
                    format!(
                        "unsupported RDB version {version} ({} magic): this decoder reads REDIS 1 to {MAX_REDIS_VERSION} and VALKEY {VALKEY_VERSION}",
                        if flavor == Flavor::Redis { "REDIS" } else { "VALKEY" }
                    ),
                ))
            }
        }
        self.version = version;
        self.flavor = flavor;
        self.state = State::Top;
        self.ready(Pending::Header, input, pos, c.p)
    }

    fn advance_top(&mut self, input: &[u8], pos: usize) -> R<Adv> {
        if self.in_key {
            // The previous key ended (its KeyEnd was delivered): attributes applied to it only.
            self.in_key = false;
            self.capturing = false;
            self.expire_ms = None;
            self.idle_s = None;
            self.freq = None;
        }
        let mut c = Cur { b: input, p: pos };
        let op = need!(c.u8(), pos);
        match op {
            RDB_OPCODE_EOF => {
                self.eat(input, pos, c.p);
                if self.version >= 5 {
                    self.state = State::Checksum;
                    Ok(Adv::Silent(c.p))
                } else {
                    self.state = State::Done;
                    self.pending = Some(Pending::Eof(Checksum::Absent));
                    Ok(Adv::Ready(c.p))
                }
            }
            RDB_OPCODE_SELECTDB => {
                let db = need!(read_plain_len(&mut c, "SELECTDB")?, pos);
                self.db = db;
                self.ready(Pending::SelectDb(db), input, pos, c.p)
            }
            RDB_OPCODE_EXPIRETIME => {
                let s = need!(c.arr::<4>(), pos);
                self.expire_ms = Some(i32::from_le_bytes(s) as i64 * 1000);
                self.silent(input, pos, c.p)
            }
            RDB_OPCODE_EXPIRETIME_MS => {
                let ms = need!(c.i64le(), pos);
                self.expire_ms = Some(ms);
                self.silent(input, pos, c.p)
            }
            RDB_OPCODE_RESIZEDB => {
                let a = need!(read_plain_len(&mut c, "RESIZEDB")?, pos);
                let b = need!(read_plain_len(&mut c, "RESIZEDB")?, pos);
                self.ready(Pending::ResizeDb(a, b), input, pos, c.p)
            }
            RDB_OPCODE_AUX => {
                let k = need!(self.read_elem(&mut c, 0, "aux key length")?, pos);
                let v = need!(self.read_elem(&mut c, 1, "aux value length")?, pos);
                self.ready(Pending::Aux(k, v), input, pos, c.p)
            }
            RDB_OPCODE_FREQ => {
                self.freq = Some(need!(c.u8(), pos));
                self.silent(input, pos, c.p)
            }
            RDB_OPCODE_IDLE => {
                self.idle_s = Some(need!(read_plain_len(&mut c, "IDLE")?, pos));
                self.silent(input, pos, c.p)
            }
            RDB_OPCODE_MODULE_AUX => {
                let id = need!(read_plain_len(&mut c, "MODULE_AUX module id")?, pos);
                let at = c.p;
                let when_op = need!(read_plain_len(&mut c, "MODULE_AUX")?, pos);
                let when = need!(read_plain_len(&mut c, "MODULE_AUX")?, pos);
                let m = module::decode_id(id);
                if when_op != RDB_MODULE_OPCODE_UINT {
                    return Err(corrupt(
                        at,
                        format!(
                            "MODULE_AUX of module {}: 'when' opcode {when_op}, expected 2 (UINT)",
                            m.name_str()
                        ),
                    ));
                }
                self.state = State::Value(V::ModuleBody { aux: true });
                self.ready(Pending::ModuleAux(m, when), input, pos, c.p)
            }
            RDB_OPCODE_FUNCTION_PRE_GA => {
                // Redis 7.0-rc1/rc2: name, engine, has_description, [description], code.
                // The GA format is the code with a `#!<engine> name=<name>` first line, so
                // that is what we deliver: it loads with FUNCTION LOAD.
                let name = need!(self.read_bytes(&mut c, 0, "function name length")?, pos);
                let engine = need!(self.read_bytes(&mut c, 1, "function engine length")?, pos);
                let at = c.p;
                match need!(read_plain_len(&mut c, "function description flag")?, pos) {
                    0 => {}
                    1 => {
                        need!(
                            self.read_elem(&mut c, 2, "function description length")?,
                            pos
                        );
                    }
                    f => {
                        return Err(corrupt(
                            at,
                            format!("function description flag {f}, expected 0 or 1"),
                        ))
                    }
                }
                let code = need!(self.read_elem(&mut c, 2, "function code length")?, pos);
                let mut lib = b"#!".to_vec();
                lib.extend(self.resolve(input, engine).to_vec().to_ascii_lowercase());
                lib.extend_from_slice(b" name=");
                lib.extend(self.resolve(input, name).to_vec());
                lib.push(b'\n');
                self.resolve(input, code).write_to(&mut lib);
                self.scratch[2] = lib;
                self.ready(Pending::Function(Src::Scratch(2)), input, pos, c.p)
            }
            RDB_OPCODE_FUNCTION2 => {
                let code = need!(self.read_bytes(&mut c, 0, "function code length")?, pos);
                self.ready(Pending::Function(code), input, pos, c.p)
            }
            RDB_OPCODE_SLOT_INFO => {
                let slot = need!(read_plain_len(&mut c, "SLOT_INFO")?, pos);
                let size = need!(read_plain_len(&mut c, "SLOT_INFO")?, pos);
                let exp = need!(read_plain_len(&mut c, "SLOT_INFO")?, pos);
                self.ready(Pending::SlotInfo(slot, size, exp), input, pos, c.p)
            }
            RDB_OPCODE_SLOT_IMPORT_OR_KEY_META => {
                if self.flavor == Flavor::Redis {
                    return Err(unsupported(
                        pos,
                        format!(
                            "opcode 243 (KEY_META, Redis 8.6+) in RDB version {} is not supported",
                            self.version
                        ),
                    ));
                }
                let job = need!(
                    self.read_bytes(&mut c, 0, "SLOT_IMPORT job name length")?,
                    pos
                );
                let n = need!(read_plain_len(&mut c, "SLOT_IMPORT range count")?, pos);
                self.check_len(c.p, n, "SLOT_IMPORT range count")?;
                self.slot_ranges.clear();
                for _ in 0..n {
                    let a = need!(read_plain_len(&mut c, "SLOT_IMPORT")?, pos);
                    let b = need!(read_plain_len(&mut c, "SLOT_IMPORT")?, pos);
                    self.slot_ranges.push((a, b));
                }
                self.ready(Pending::SlotImport(job), input, pos, c.p)
            }
            RDB_OPCODE_ENT_RAM_LRU | RDB_OPCODE_ENT_SLOT_NUM if self.flavor == Flavor::Redis => {
                need!(
                    read_plain_len(&mut c, "Redis Enterprise key attribute")?,
                    pos
                );
                self.silent(input, pos, c.p)
            }
            t => self.advance_key(t, input, pos, c),
        }
    }

    fn advance_key(&mut self, t: u8, input: &[u8], pos: usize, mut c: Cur) -> R<Adv> {
        let Some(kind) = kind_of(t, self.flavor) else {
            return Err(match t {
                26..=28 if self.flavor == Flavor::Redis => unsupported(
                    pos,
                    format!(
                        "type byte {t} (Redis 8.6+ {}) in RDB version {} is not supported",
                        match t {
                            26 => "STREAM_LISTPACKS_4",
                            27 => "STREAM_LISTPACKS_5",
                            _ => "ARRAY",
                        },
                        self.version
                    ),
                ),
                23..=28 => corrupt(pos, format!("type byte {t} is invalid under VALKEY magic")),
                _ => unsupported(
                    pos,
                    format!(
                        "unknown type byte {t} (0x{t:02x}) in RDB version {}",
                        self.version
                    ),
                ),
            });
        };
        let key = need!(self.read_elem(&mut c, 0, "key length")?, pos);
        // Copy the key: it names every later error and stays valid across calls.
        self.key.clear();
        match key {
            Src::Int(i) => Elem::Int(i).write_to(&mut self.key),
            Src::Input(s, l) => self.key.extend_from_slice(&input[s..s + l]),
            Src::Scratch(i) => self.key.extend_from_slice(&self.scratch[i]),
            _ => {}
        }
        self.eat(input, pos, c.p);
        self.in_key = true;
        self.type_byte = t;
        self.kind = kind;
        self.key_offset = self.offset + pos as u64;
        self.value_start = self.offset + c.p as u64;
        self.elements = 0;
        self.raw.clear();
        self.capturing = self.cfg.raw_capture_max > 0;
        if self.capturing {
            self.raw.push(t);
        }
        let blob = |walk| V::Blob { walk, quick: None };
        self.state = State::Value(match t {
            RDB_TYPE_STRING => V::String,
            RDB_TYPE_LIST | RDB_TYPE_SET | RDB_TYPE_ZSET | RDB_TYPE_ZSET_2 | RDB_TYPE_HASH => {
                V::Count
            }
            RDB_TYPE_22 | RDB_TYPE_HASH_METADATA => V::Count,
            RDB_TYPE_HASH_ZIPMAP => blob(Walk::Zipmap),
            RDB_TYPE_LIST_ZIPLIST => blob(Walk::ZiplistList),
            RDB_TYPE_SET_INTSET => blob(Walk::Intset),
            RDB_TYPE_ZSET_ZIPLIST => blob(Walk::ZiplistZset),
            RDB_TYPE_HASH_ZIPLIST => blob(Walk::ZiplistHash),
            RDB_TYPE_HASH_LISTPACK => blob(Walk::ListpackHash),
            RDB_TYPE_ZSET_LISTPACK => blob(Walk::ListpackZset),
            RDB_TYPE_SET_LISTPACK => blob(Walk::ListpackSet),
            RDB_TYPE_HASH_LISTPACK_EX_PRE_GA => blob(Walk::ListpackHashEx),
            RDB_TYPE_HASH_LISTPACK_EX => V::HashLpExMin,
            RDB_TYPE_LIST_QUICKLIST => V::QuickCount { v2: false },
            RDB_TYPE_LIST_QUICKLIST_2 => V::QuickCount { v2: true },
            RDB_TYPE_STREAM_LISTPACKS
            | RDB_TYPE_STREAM_LISTPACKS_2
            | RDB_TYPE_STREAM_LISTPACKS_3 => V::StreamNodesCount,
            _ => V::ModuleId,
        });
        self.pending = Some(Pending::Key);
        Ok(Adv::Ready(c.p))
    }

    fn end_value(&mut self) {
        self.state = State::KeyEnd;
    }

    /// Bytes of the next chunk of a big string.
    fn advance_big(&mut self, input: &[u8], pos: usize) -> R<Adv> {
        let avail = input.len() - pos;
        let Some(big) = self.big.as_mut() else {
            return Ok(Adv::Silent(pos));
        };
        if big.left == 0 {
            let unfinished = big.lzf.as_ref().is_some_and(|z| !z.is_done());
            self.big = None;
            if unfinished {
                return Err(corrupt(
                    pos,
                    "LZF data ended before the announced uncompressed length",
                ));
            }
            return Ok(Adv::Silent(pos));
        }
        if avail == 0 {
            return Ok(Adv::NeedMore(pos));
        }
        let n = (big.left.min(avail as u64)) as usize;
        match &mut big.lzf {
            None => {
                big.left -= n as u64;
                let src = Src::Input(pos, n);
                self.ready(Pending::Piece(P::Chunk(src)), input, pos, pos + n)
            }
            Some(z) => {
                self.lzf_out.clear();
                // An error is placed at its instruction: where this piece starts depends on
                // how the bytes arrived, the instruction does not.
                let before = z.consumed();
                let used = z
                    .feed(&input[pos..pos + n], &mut self.lzf_out)
                    .map_err(|e| {
                        // Within this piece: the stream counts from where it starts.
                        let ip = (e.offset as u64).saturating_sub(before).min(n as u64);
                        corrupt(pos + ip as usize, format!("LZF data: {e}"))
                    })?;
                big.left -= used as u64;
                if used == 0 {
                    if n as u64 == big.left {
                        return Err(corrupt(pos, "LZF data ends inside an instruction"));
                    }
                    return Ok(Adv::NeedMore(pos));
                }
                if self.lzf_out.is_empty() {
                    return self.silent(input, pos, pos + used);
                }
                self.ready(Pending::Piece(P::Chunk(Src::Lzf)), input, pos, pos + used)
            }
        }
    }

    pub(super) fn pending_piece(&mut self, p: P) {
        self.pending = Some(Pending::Piece(p));
    }

    pub(super) fn piece(&mut self, p: P, input: &[u8], from: usize, to: usize) -> R<Adv> {
        self.ready(Pending::Piece(p), input, from, to)
    }

    fn advance_value(&mut self, v: V, input: &[u8], pos: usize) -> R<Adv> {
        let mut c = Cur { b: input, p: pos };
        let t = self.type_byte;
        match v {
            V::String => {
                let s = need!(self.read_maybe_big(&mut c, 0, "string length")?, pos);
                self.elements = 1;
                self.end_value();
                match s {
                    Ok(src) => self.piece(P::String(src), input, pos, c.p),
                    Err(len) => self.piece(
                        P::BigStart {
                            role: BigRole::StringValue,
                            len,
                            field: None,
                            field_expire_ms: None,
                        },
                        input,
                        pos,
                        c.p,
                    ),
                }
            }
            V::Count => {
                if t == RDB_TYPE_HASH_METADATA {
                    self.min_expire = need!(c.i64le(), pos);
                }
                let at = c.p;
                let n = need!(read_plain_len(&mut c, "collection length")?, pos);
                self.check_len(at, n, "collection length")?;
                self.state = if n == 0 {
                    State::KeyEnd
                } else {
                    State::Value(V::Plain { left: n })
                };
                self.silent(input, pos, c.p)
            }
            V::Plain { left } => {
                let next = |d: &mut Self| {
                    d.elements += 1;
                    d.state = if left <= 1 {
                        State::KeyEnd
                    } else {
                        State::Value(V::Plain { left: left - 1 })
                    };
                };
                match t {
                    RDB_TYPE_LIST | RDB_TYPE_SET => {
                        let (role, what) = if t == RDB_TYPE_LIST {
                            (BigRole::ListItem, "list element length")
                        } else {
                            (BigRole::SetMember, "set member length")
                        };
                        let s = need!(self.read_maybe_big(&mut c, 0, what)?, pos);
                        next(self);
                        let p = match (s, role) {
                            (Ok(src), BigRole::ListItem) => P::ListItem(src),
                            (Ok(src), _) => P::SetMember(src),
                            (Err(len), role) => P::BigStart {
                                role,
                                len,
                                field: None,
                                field_expire_ms: None,
                            },
                        };
                        self.piece(p, input, pos, c.p)
                    }
                    RDB_TYPE_ZSET | RDB_TYPE_ZSET_2 => {
                        let m = need!(self.read_elem(&mut c, 0, "zset member length")?, pos);
                        let at = c.p;
                        let score = if t == RDB_TYPE_ZSET_2 {
                            f64::from_le_bytes(need!(c.arr::<8>(), pos))
                        } else {
                            let n = need!(c.u8(), pos);
                            match n {
                                253 => f64::NAN,
                                254 => f64::INFINITY,
                                255 => f64::NEG_INFINITY,
                                n => {
                                    let text = need!(c.take(n as usize), pos);
                                    parse_score(text).ok_or_else(|| {
                                        corrupt(
                                            at,
                                            format!(
                                                "bad zset score {:?}",
                                                crate::util::escape_bytes(text)
                                            ),
                                        )
                                    })?
                                }
                            }
                        };
                        if score.is_nan() {
                            return Err(corrupt(at, "zset score is NaN"));
                        }
                        next(self);
                        self.piece(P::Zset(m, score), input, pos, c.p)
                    }
                    RDB_TYPE_HASH | RDB_TYPE_HASH_METADATA => {
                        let mut fexp = None;
                        if t == RDB_TYPE_HASH_METADATA {
                            let ttl = need!(read_plain_len(&mut c, "hash field TTL")?, pos);
                            if ttl != 0 {
                                fexp = Some(
                                    (ttl as i64).wrapping_add(self.min_expire).wrapping_sub(1),
                                );
                            }
                        }
                        self.hash_field_maybe_big(&mut c, input, pos, fexp, next)
                    }
                    RDB_TYPE_22 if self.flavor == Flavor::Redis => {
                        let ttl = need!(read_plain_len(&mut c, "hash field TTL")?, pos);
                        let fexp = (ttl != 0).then_some(ttl as i64);
                        self.hash_field_maybe_big(&mut c, input, pos, fexp, next)
                    }
                    _ => {
                        // Valkey HASH_2: field, value, then an absolute expiry (-1 = none).
                        let f = need!(self.read_elem(&mut c, 0, "hash field length")?, pos);
                        let v = need!(self.read_elem(&mut c, 1, "hash value length")?, pos);
                        let at = c.p;
                        let e = need!(c.i64le(), pos);
                        if e < -1 {
                            return Err(corrupt(at, format!("hash field expiry {e} is invalid")));
                        }
                        next(self);
                        self.piece(P::Hash(f, v, (e != -1).then_some(e)), input, pos, c.p)
                    }
                }
            }
            V::HashLpExMin => {
                self.min_expire = need!(c.i64le(), pos);
                self.state = State::Value(V::Blob {
                    walk: Walk::ListpackHashEx,
                    quick: None,
                });
                self.silent(input, pos, c.p)
            }
            V::Blob { walk, quick } => self.advance_blob(walk, quick, input, pos),
            V::Walking {
                walk,
                pos: bp,
                index,
                quick,
            } => self.advance_walk(walk, bp, index, quick, input, pos),
            V::QuickCount { v2 } => {
                let at = c.p;
                let n = need!(read_plain_len(&mut c, "quicklist node count")?, pos);
                self.check_len(at, n, "quicklist node count")?;
                self.state = if n == 0 {
                    State::KeyEnd
                } else {
                    State::Value(V::QuickNode(Quick { v2, nodes_left: n }))
                };
                self.silent(input, pos, c.p)
            }
            V::QuickNode(q) => {
                let rest = Quick {
                    v2: q.v2,
                    nodes_left: q.nodes_left - 1,
                };
                let after = if rest.nodes_left == 0 {
                    State::KeyEnd
                } else {
                    State::Value(V::QuickNode(rest))
                };
                let walk = if q.v2 {
                    Walk::ListpackList
                } else {
                    Walk::ZiplistList
                };
                if !q.v2 {
                    self.state = State::Value(V::Blob {
                        walk,
                        quick: Some(rest),
                    });
                    return Ok(Adv::Silent(pos));
                }
                let at = c.p;
                let container = need!(read_plain_len(&mut c, "quicklist container")?, pos);
                match container {
                    QUICKLIST_NODE_CONTAINER_PACKED => {
                        self.state = State::Value(V::Blob {
                            walk,
                            quick: Some(rest),
                        });
                        self.silent(input, pos, c.p)
                    }
                    QUICKLIST_NODE_CONTAINER_PLAIN => {
                        let s = need!(self.read_maybe_big(&mut c, 0, "list element length")?, pos);
                        self.elements += 1;
                        self.state = after;
                        let p = match s {
                            Ok(src) => P::ListItem(src),
                            Err(len) => P::BigStart {
                                role: BigRole::ListItem,
                                len,
                                field: None,
                                field_expire_ms: None,
                            },
                        };
                        self.piece(p, input, pos, c.p)
                    }
                    other => Err(corrupt(
                        at,
                        format!("quicklist container {other}, expected 1 (PLAIN) or 2 (PACKED)"),
                    )),
                }
            }
            V::ModuleId => {
                let id = need!(read_plain_len(&mut c, "module id")?, pos);
                let m = module::decode_id(id);
                if t == RDB_TYPE_MODULE_PRE_GA {
                    return Err(unsupported(
                        pos,
                        format!(
                            "value of module {} (encver {}) uses the Redis 4.0 release-candidate format (type 6), which cannot be decoded or skipped without the module",
                            m.name_str(),
                            m.encver
                        ),
                    ));
                }
                self.elements = 1;
                self.state = State::Value(V::ModuleBody { aux: false });
                self.piece(P::Module(m), input, pos, c.p)
            }
            V::ModuleBody { aux } => {
                let at = c.p;
                let op = need!(read_plain_len(&mut c, "module opcode")?, pos);
                match op {
                    RDB_MODULE_OPCODE_EOF => {
                        if aux {
                            self.state = State::Top;
                        } else {
                            self.end_value();
                        }
                    }
                    RDB_MODULE_OPCODE_SINT | RDB_MODULE_OPCODE_UINT => {
                        need!(read_plain_len(&mut c, "module integer")?, pos);
                    }
                    RDB_MODULE_OPCODE_FLOAT => {
                        need!(c.take(4), pos);
                    }
                    RDB_MODULE_OPCODE_DOUBLE => {
                        need!(c.take(8), pos);
                    }
                    RDB_MODULE_OPCODE_STRING => {
                        need!(self.read_elem(&mut c, 0, "module string length")?, pos);
                    }
                    other => {
                        return Err(corrupt(
                            at,
                            format!("unknown module opcode {other} (expected 0..5)"),
                        ))
                    }
                }
                self.silent(input, pos, c.p)
            }
            V::StreamNodesCount
            | V::StreamNode { .. }
            | V::StreamMeta
            | V::StreamGroup { .. }
            | V::StreamGroupPel { .. }
            | V::StreamConsumers { .. }
            | V::StreamConsumer { .. }
            | V::StreamConsumerPel { .. } => self.advance_stream(v, input, pos),
        }
    }

    /// A hash field whose value may be big (types 4, 22-Redis, 24).
    fn hash_field_maybe_big(
        &mut self,
        c: &mut Cur,
        input: &[u8],
        pos: usize,
        fexp: Option<i64>,
        next: impl Fn(&mut Self),
    ) -> R<Adv> {
        let f = need!(self.read_elem(c, 0, "hash field length")?, pos);
        let v = need!(self.read_maybe_big(c, 1, "hash value length")?, pos);
        next(self);
        let p = match v {
            Ok(v) => P::Hash(f, v, fexp),
            Err(len) => {
                // A field name stored as an integer (`42`): `BigStart` carries bytes.
                let f = match f {
                    Src::Int(i) => {
                        let out = &mut self.scratch[0];
                        out.clear();
                        Elem::Int(i).write_to(out);
                        Src::Scratch(0)
                    }
                    f => f,
                };
                P::BigStart {
                    role: BigRole::HashValue,
                    len,
                    field: Some(f),
                    field_expire_ms: fexp,
                }
            }
        };
        self.piece(p, input, pos, c.p)
    }

    /// Reads a blob rdbstr into `self.blob`, across calls; then starts walking it.
    fn advance_blob(
        &mut self,
        walk: Walk,
        quick: Option<Quick>,
        input: &[u8],
        pos: usize,
    ) -> R<Adv> {
        let mut c = Cur { b: input, p: pos };
        // First call for this blob: read its head.
        if self.blob_head.is_none() {
            let head = need!(read_str_head(&mut c)?, pos);
            let (clen, ulen) = match head {
                StrHead::Plain { len, at } => {
                    self.check_element(at, len, "encoded value length")?;
                    (len, None)
                }
                StrHead::Lzf { clen, ulen, at } => {
                    self.check_element(at, clen, "encoded value length")?;
                    self.check_limit(at, ulen, "encoded value length")?;
                    (clen, Some(ulen))
                }
                StrHead::Int(i) => {
                    // Never written by servers, but legal: the blob is the integer's text.
                    self.blob.clear();
                    Elem::Int(i).write_to(&mut self.blob);
                    self.eat(input, pos, c.p);
                    return self.start_walk(walk, quick, c.p);
                }
            };
            self.blob_in.clear();
            self.blob_head = Some((clen, ulen));
            self.eat(input, pos, c.p);
            return Ok(Adv::Silent(c.p));
        }
        let Some((clen, ulen)) = self.blob_head else {
            return Ok(Adv::Silent(pos));
        };
        let want = clen as usize - self.blob_in.len();
        let n = want.min(input.len() - pos);
        if n == 0 && want > 0 {
            return Ok(Adv::NeedMore(pos));
        }
        self.blob_in.extend_from_slice(&input[pos..pos + n]);
        self.eat(input, pos, pos + n);
        if self.blob_in.len() < clen as usize {
            return Ok(Adv::Silent(pos + n));
        }
        self.blob_head = None;
        self.blob.clear();
        match ulen {
            None => std::mem::swap(&mut self.blob, &mut self.blob_in),
            // Reported after the blob, as every error in a gathered blob (see start_walk):
            // the place of its last piece depends on how the bytes arrived.
            Some(ulen) => lzf::decompress(&self.blob_in, &mut self.blob, ulen as usize)
                .map_err(|e| corrupt(pos + n, format!("LZF-compressed encoded value: {e}")))?,
        }
        self.start_walk(walk, quick, pos + n)
    }

    fn blob_err(&self, at: usize, e: super::EncodingError) -> Bad {
        corrupt(at, format!("{} value: {}", self.encoding_name(), e.message))
    }

    /// A name for the encoding of the current key, for messages.
    fn encoding_name(&self) -> &'static str {
        match self.type_byte {
            RDB_TYPE_HASH_ZIPMAP => "zipmap",
            RDB_TYPE_LIST_ZIPLIST
            | RDB_TYPE_ZSET_ZIPLIST
            | RDB_TYPE_HASH_ZIPLIST
            | RDB_TYPE_LIST_QUICKLIST => "ziplist",
            RDB_TYPE_SET_INTSET => "intset",
            _ => "listpack",
        }
    }

    fn start_walk(&mut self, walk: Walk, quick: Option<Quick>, pos: usize) -> R<Adv> {
        // Errors in a blob are reported at the position after it: its bytes are consumed.
        let start = match walk {
            Walk::ZiplistList | Walk::ZiplistZset | Walk::ZiplistHash => {
                ziplist::header(&self.blob)
                    .map_err(|e| self.blob_err(pos, e))?
                    .0
            }
            Walk::Intset => {
                intset::header(&self.blob).map_err(|e| self.blob_err(pos, e))?;
                0
            }
            Walk::Zipmap => zipmap::header(&self.blob).map_err(|e| self.blob_err(pos, e))?,
            _ => {
                listpack::header(&self.blob)
                    .map_err(|e| self.blob_err(pos, e))?
                    .0
            }
        };
        if walk == Walk::StreamNode {
            self.stream.started = false;
        }
        self.state = State::Value(V::Walking {
            walk,
            pos: start,
            index: 0,
            quick,
        });
        Ok(Adv::Silent(pos))
    }

    /// Next element of the blob being walked.
    fn advance_walk(
        &mut self,
        walk: Walk,
        bp: usize,
        index: u32,
        quick: Option<Quick>,
        input: &[u8],
        pos: usize,
    ) -> R<Adv> {
        let _ = input;
        let mut p = bp;
        let blob = &self.blob;
        let base = blob.as_ptr() as usize;
        let src = |e: Elem| match e {
            Elem::Int(i) => Src::Int(i),
            Elem::Bytes(b) => Src::Blob(b.as_ptr() as usize - base, b.len()),
        };
        let enc_name = self.encoding_name();
        let err = |e: super::EncodingError| {
            corrupt(
                pos,
                format!(
                    "{enc_name} value (at byte {} of it): {}",
                    e.offset, e.message
                ),
            )
        };
        let done = |d: &mut Self| {
            d.state = match quick {
                Some(q) if q.nodes_left > 0 => State::Value(V::QuickNode(q)),
                _ => State::KeyEnd,
            };
            Ok(Adv::Silent(pos))
        };
        let piece = match walk {
            Walk::ZiplistList | Walk::ListpackList | Walk::ListpackSet => {
                let e = if walk == Walk::ZiplistList {
                    ziplist::next(blob, &mut p).map_err(err)?
                } else {
                    listpack::next(blob, &mut p).map_err(err)?
                };
                let Some(e) = e else { return done(self) };
                if walk == Walk::ListpackSet {
                    P::SetMember(src(e))
                } else {
                    P::ListItem(src(e))
                }
            }
            Walk::ZiplistZset | Walk::ListpackZset | Walk::ZiplistHash | Walk::ListpackHash => {
                let zl = matches!(walk, Walk::ZiplistZset | Walk::ZiplistHash);
                let next = |p: &mut usize| {
                    if zl {
                        ziplist::next(blob, p)
                    } else {
                        listpack::next(blob, p)
                    }
                };
                let Some(a) = next(&mut p).map_err(err)? else {
                    return done(self);
                };
                let Some(b) = next(&mut p).map_err(err)? else {
                    return Err(corrupt(
                        pos,
                        format!("{enc_name} value has an odd number of elements"),
                    ));
                };
                if matches!(walk, Walk::ZiplistZset | Walk::ListpackZset) {
                    let score = match b {
                        Elem::Int(i) => i as f64,
                        Elem::Bytes(t) => parse_score(t).ok_or_else(|| {
                            corrupt(
                                pos,
                                format!("bad zset score {:?}", crate::util::escape_bytes(t)),
                            )
                        })?,
                    };
                    P::Zset(src(a), score)
                } else {
                    P::Hash(src(a), src(b), None)
                }
            }
            Walk::ListpackHashEx => {
                let Some(f) = listpack::next(blob, &mut p).map_err(err)? else {
                    return done(self);
                };
                let v = listpack::next(blob, &mut p).map_err(err)?;
                let e = listpack::next(blob, &mut p).map_err(err)?;
                let (Some(v), Some(e)) = (v, e) else {
                    return Err(corrupt(
                        pos,
                        "hash listpack with TTLs: element count is not a multiple of 3",
                    ));
                };
                let ttl = e.as_i64().ok_or_else(|| {
                    corrupt(pos, "hash listpack with TTLs: expiry is not an integer")
                })?;
                P::Hash(src(f), src(v), (ttl != 0).then_some(ttl))
            }
            Walk::Intset => {
                let (enc, len) = intset::header(blob).map_err(err)?;
                if index >= len {
                    return done(self);
                }
                let v = intset::get(blob, enc, index).map_err(err)?;
                P::SetMember(Src::Int(v))
            }
            Walk::Zipmap => {
                let Some((f, v)) = zipmap::next(blob, &mut p).map_err(err)? else {
                    return done(self);
                };
                P::Hash(src(Elem::Bytes(f)), src(Elem::Bytes(v)), None)
            }
            Walk::StreamNode => return self.advance_stream_node(bp, quick, pos),
        };
        self.elements += 1;
        self.state = State::Value(V::Walking {
            walk,
            pos: p,
            index: index + 1,
            quick,
        });
        self.pending = Some(Pending::Piece(piece));
        Ok(Adv::Ready(pos))
    }

    pub(super) fn resolve<'a>(&'a self, input: &'a [u8], s: Src) -> Elem<'a> {
        match s {
            Src::Input(a, l) => Elem::Bytes(&input[a..a + l]),
            Src::Blob(a, l) => Elem::Bytes(&self.blob[a..a + l]),
            Src::Scratch(i) => Elem::Bytes(&self.scratch[i]),
            Src::Lzf => Elem::Bytes(&self.lzf_out),
            Src::Int(i) => Elem::Int(i),
        }
    }

    fn bytes<'a>(&'a self, input: &'a [u8], s: Src) -> &'a [u8] {
        match self.resolve(input, s) {
            Elem::Bytes(b) => b,
            // Callers render integers into scratch before; an integer here is a bug, and
            // an empty slice is the harmless answer.
            Elem::Int(_) => &[],
        }
    }

    fn build<'a>(&'a self, input: &'a [u8]) -> Event<'a> {
        let Some(p) = self.pending else {
            return Event::Eof {
                checksum: Checksum::Absent,
            };
        };
        let r = |s| self.resolve(input, s);
        let b = |s| self.bytes(input, s);
        match p {
            Pending::Header => Event::Header {
                version: self.version,
                flavor: self.flavor,
            },
            Pending::Aux(k, v) => Event::Aux {
                key: r(k),
                value: r(v),
            },
            Pending::SelectDb(db) => Event::SelectDb(db),
            Pending::ResizeDb(a, b) => Event::ResizeDb {
                db_size: a,
                expires_size: b,
            },
            Pending::SlotInfo(slot, size, expires_size) => Event::SlotInfo {
                slot,
                size,
                expires_size,
            },
            Pending::SlotImport(job) => Event::SlotImport {
                job: b(job),
                ranges: &self.slot_ranges,
            },
            Pending::ModuleAux(module, when) => Event::ModuleAux { module, when },
            Pending::Function(code) => Event::Function(b(code)),
            Pending::Key => Event::Key(KeyInfo {
                db: self.db,
                key: &self.key,
                kind: self.kind,
                type_byte: self.type_byte,
                expire_ms: self.expire_ms,
                idle_s: self.idle_s,
                freq: self.freq,
                offset: self.key_offset,
            }),
            Pending::KeyEnd(empty) => Event::KeyEnd(KeyEnd {
                encoded_len: self.offset - self.value_start + 1,
                elements: self.elements,
                raw: self.capturing.then_some(&self.raw[..]),
                empty,
            }),
            Pending::Eof(checksum) => Event::Eof { checksum },
            Pending::Piece(p) => Event::Value(match p {
                P::String(s) => Piece::String(r(s)),
                P::BigStart {
                    role,
                    len,
                    field,
                    field_expire_ms,
                } => Piece::BigStart {
                    role,
                    len,
                    field: field.map(|f| match f {
                        Src::Int(_) => &[][..],
                        f => b(f),
                    }),
                    field_expire_ms,
                },
                P::Chunk(s) => Piece::Chunk(b(s)),
                P::ListItem(s) => Piece::ListItem(r(s)),
                P::SetMember(s) => Piece::SetMember(r(s)),
                P::Zset(m, score) => Piece::ZsetMember {
                    member: r(m),
                    score,
                },
                P::Hash(f, v, e) => Piece::HashField {
                    field: r(f),
                    value: r(v),
                    expire_ms: e,
                },
                P::StreamEntry(id, fields) => Piece::StreamEntry { id, fields },
                P::StreamField(f, v) => Piece::StreamField {
                    field: r(f),
                    value: r(v),
                },
                P::StreamMeta {
                    length,
                    last_id,
                    first_id,
                    max_deleted_id,
                    entries_added,
                    groups,
                } => Piece::StreamMeta {
                    length,
                    last_id,
                    first_id,
                    max_deleted_id,
                    entries_added,
                    groups,
                },
                P::StreamGroup {
                    name,
                    last_id,
                    entries_read,
                    pending,
                } => Piece::StreamGroup {
                    name: b(name),
                    last_id,
                    entries_read,
                    pending,
                },
                P::StreamPending(id, delivery_time_ms, delivery_count) => Piece::StreamPending {
                    id,
                    delivery_time_ms,
                    delivery_count,
                },
                P::StreamConsumer {
                    name,
                    seen,
                    active,
                    pending,
                } => Piece::StreamConsumer {
                    name: b(name),
                    seen_time_ms: seen,
                    active_time_ms: active,
                    pending,
                },
                P::StreamConsumerPending(id) => Piece::StreamConsumerPending { id },
                P::Module(module) => Piece::Module { module },
            }),
        }
    }
}
