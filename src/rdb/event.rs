//! What the decoder tells its consumer.
//!
//! Order of events for one RDB: `Header`, then any mix of file-level records (`Aux`,
//! `SelectDb`, `ResizeDb`, `SlotInfo`, `SlotImport`, `ModuleAux`, `Function`) and keys,
//! then `Eof`. A key is `Key` (its metadata), any number of `Value` pieces, then `KeyEnd`.
//! Events borrow from the input slice given to [`Decoder::step`](super::Decoder::step)
//! or from the decoder itself, so a consumer copies only what it keeps.

use super::Elem;

/// Which server family wrote the file. Type byte 22 and opcode 243 mean different things
/// in each (reference §2.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Magic `REDIS` + 4 digits (Redis, KeyDB, Valkey ≤ 8.1, Valkey 9.1 sending RDB 11).
    Redis,
    /// Magic `VALKEY` + 3 digits (Valkey ≥ 9.0 native format, version ≥ 80).
    Valkey,
}

/// The logical type of a key, as `TYPE` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    String,
    List,
    Set,
    Zset,
    Hash,
    Stream,
    Module,
}

impl ValueKind {
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::List => "list",
            ValueKind::Set => "set",
            ValueKind::Zset => "zset",
            ValueKind::Hash => "hash",
            ValueKind::Stream => "stream",
            ValueKind::Module => "module",
        }
    }
}

/// A stream entry id `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A module type id decoded into its 9-character name and encoding version
/// (reference §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleId {
    pub id: u64,
    pub name: [u8; 9],
    pub encver: u16,
}

impl ModuleId {
    pub fn name_str(&self) -> &str {
        // Built only from the 64-character ASCII charset, so always valid UTF-8.
        std::str::from_utf8(&self.name).unwrap_or("?????????")
    }
}

/// How the file's trailing checksum turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// RDB < 5 has no checksum.
    Absent,
    /// The writer stored 0: "checksum disabled", nothing to verify.
    Disabled,
    /// Stored and equal to the computed value.
    Verified(u64),
    /// Stored but not checked (checking turned off in the config).
    Unchecked(u64),
}

/// Metadata of a key, delivered before any of its value.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo<'a> {
    pub db: u64,
    pub key: &'a [u8],
    pub kind: ValueKind,
    /// The RDB object type byte (what encoding the value is stored in).
    pub type_byte: u8,
    /// Absolute expiry in unix milliseconds.
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds (opcode IDLE), when the writer used an LRU policy.
    pub idle_s: Option<u64>,
    /// LFU counter (opcode FREQ), when the writer used an LFU policy.
    pub freq: Option<u8>,
    /// Absolute offset of the type byte in the RDB stream.
    pub offset: u64,
}

/// What a large string (streamed in chunks) is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigRole {
    /// The value of a string key.
    StringValue,
    /// One list element.
    ListItem,
    /// One set member.
    SetMember,
    /// The value of a hash field; the field came in the `BigStart` event.
    HashValue,
}

/// One piece of a key's value.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// The whole value of a string key.
    String(Elem<'a>),
    /// Start of a string too large to deliver whole: `len` bytes follow in `Chunk`s.
    /// For `HashValue`, `field` is the field name and `field_expire_ms` its TTL.
    BigStart {
        role: BigRole,
        len: u64,
        field: Option<&'a [u8]>,
        field_expire_ms: Option<i64>,
    },
    /// Consecutive bytes of the big string announced by `BigStart`.
    Chunk(&'a [u8]),
    ListItem(Elem<'a>),
    SetMember(Elem<'a>),
    ZsetMember {
        member: Elem<'a>,
        score: f64,
    },
    HashField {
        field: Elem<'a>,
        value: Elem<'a>,
        expire_ms: Option<i64>,
    },
    /// A live stream entry; its `fields` pairs follow as `StreamField` pieces.
    StreamEntry {
        id: StreamId,
        fields: u64,
    },
    StreamField {
        field: Elem<'a>,
        value: Elem<'a>,
    },
    /// Stream metadata, after all entries. Fields that the type predates are `None`.
    StreamMeta {
        length: u64,
        last_id: StreamId,
        first_id: Option<StreamId>,
        max_deleted_id: Option<StreamId>,
        entries_added: Option<u64>,
        groups: u64,
    },
    /// A consumer group; its PEL and consumers follow.
    StreamGroup {
        name: &'a [u8],
        last_id: StreamId,
        /// `None` when the type predates it (type 15) or the server stored -1 (unknown).
        entries_read: Option<u64>,
        pending: u64,
    },
    /// An entry of the group's pending list (PEL).
    StreamPending {
        id: StreamId,
        delivery_time_ms: i64,
        delivery_count: u64,
    },
    /// A consumer of the current group; the ids it owns follow as `StreamConsumerPending`.
    StreamConsumer {
        name: &'a [u8],
        seen_time_ms: i64,
        /// `None` before type 21 (the server then uses `seen_time`).
        active_time_ms: Option<i64>,
        pending: u64,
    },
    StreamConsumerPending {
        id: StreamId,
    },
    /// A module value (MODULE_2). Its body is skipped; take the raw bytes from `KeyEnd`
    /// to RESTORE it on a server that has the module.
    Module {
        module: ModuleId,
    },
}

/// End of a key.
#[derive(Debug, Clone, Copy)]
pub struct KeyEnd<'a> {
    /// Bytes the value took in the RDB, type byte included, key excluded.
    pub encoded_len: u64,
    /// Number of elements delivered (strings count 1; stream entries for streams).
    pub elements: u64,
    /// The type byte and value bytes exactly as in the RDB, when the value was no larger
    /// than `raw_capture_max`: with a version footer and CRC this is a DUMP payload.
    pub raw: Option<&'a [u8]>,
    /// The collection was empty. Servers skip such keys when loading ("empty keys
    /// skipped"), so a consumer should too.
    pub empty: bool,
}

/// One thing the decoder found.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Header {
        version: u32,
        flavor: Flavor,
    },
    Aux {
        key: Elem<'a>,
        value: Elem<'a>,
    },
    SelectDb(u64),
    ResizeDb {
        db_size: u64,
        expires_size: u64,
    },
    /// Redis ≥ 7.4 cluster slot hint (opcode 244); size hints only.
    SlotInfo {
        slot: u64,
        size: u64,
        expires_size: u64,
    },
    /// Valkey 9 in-progress slot import (opcode 243 under VALKEY magic).
    SlotImport {
        job: &'a [u8],
        ranges: &'a [(u64, u64)],
    },
    /// A module's auxiliary data (opcode 247); its body is skipped.
    ModuleAux {
        module: ModuleId,
        when: u64,
    },
    /// A function library's source code (opcode 245).
    Function(&'a [u8]),
    Key(KeyInfo<'a>),
    Value(Piece<'a>),
    KeyEnd(KeyEnd<'a>),
    /// The EOF opcode and the checksum. Bytes after it are not consumed.
    Eof {
        checksum: Checksum,
    },
}
