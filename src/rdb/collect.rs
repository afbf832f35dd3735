//! Collects decoded keys into owned values, whole.
//!
//! For tests, small files and tools only: it holds every value in memory, which the
//! sync path never does.

use super::*;

/// A decoded value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    /// Members in file order, with scores.
    Zset(Vec<(Vec<u8>, f64)>),
    /// Fields in file order, with their TTL (absolute ms) if any.
    Hash(Vec<(Vec<u8>, Vec<u8>, Option<i64>)>),
    Stream(Box<Stream>),
    Module {
        name: String,
        encver: u16,
    },
}

/// The field-value pairs of a stream entry, in order (a field may repeat).
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    pub entries: Vec<(StreamId, Fields)>,
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    pub entries_read: Option<u64>,
    /// id → (delivery time ms, delivery count)
    pub pending: Vec<(StreamId, i64, u64)>,
    pub consumers: Vec<Consumer>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub seen_time_ms: i64,
    pub active_time_ms: Option<i64>,
    pub pending: Vec<StreamId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub db: u64,
    pub key: Vec<u8>,
    pub kind: ValueKind,
    pub type_byte: u8,
    pub expire_ms: Option<i64>,
    pub idle_s: Option<u64>,
    pub freq: Option<u8>,
    pub value: Value,
    pub encoded_len: u64,
    pub raw: Option<Vec<u8>>,
    pub empty: bool,
}

/// Everything in an RDB, owned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rdb {
    pub version: u32,
    pub flavor: Option<Flavor>,
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
    pub functions: Vec<Vec<u8>>,
    pub module_aux: Vec<(String, u64)>,
    pub slot_info: Vec<(u64, u64, u64)>,
    pub keys: Vec<Key>,
    pub checksum: Option<Checksum>,
}

/// Builds an [`Rdb`] from events, in order.
#[derive(Debug, Default)]
pub struct Collector {
    pub rdb: Rdb,
    cur: Option<Key>,
    big: Vec<u8>,
    big_role: Option<(BigRole, Option<Vec<u8>>, Option<i64>)>,
}

impl Collector {
    pub fn event(&mut self, ev: &Event) {
        match *ev {
            Event::Header { version, flavor } => {
                self.rdb.version = version;
                self.rdb.flavor = Some(flavor);
            }
            Event::Aux { key, value } => self.rdb.aux.push((key.to_vec(), value.to_vec())),
            Event::Function(code) => self.rdb.functions.push(code.to_vec()),
            Event::ModuleAux { module, when } => self
                .rdb
                .module_aux
                .push((module.name_str().to_string(), when)),
            Event::SlotInfo {
                slot,
                size,
                expires_size,
            } => self.rdb.slot_info.push((slot, size, expires_size)),
            Event::Key(k) => {
                self.cur = Some(Key {
                    db: k.db,
                    key: k.key.to_vec(),
                    kind: k.kind,
                    type_byte: k.type_byte,
                    expire_ms: k.expire_ms,
                    idle_s: k.idle_s,
                    freq: k.freq,
                    value: match k.kind {
                        ValueKind::String => Value::String(Vec::new()),
                        ValueKind::List => Value::List(Vec::new()),
                        ValueKind::Set => Value::Set(Vec::new()),
                        ValueKind::Zset => Value::Zset(Vec::new()),
                        ValueKind::Hash => Value::Hash(Vec::new()),
                        ValueKind::Stream => Value::Stream(Box::default()),
                        ValueKind::Module => Value::Module {
                            name: String::new(),
                            encver: 0,
                        },
                    },
                    encoded_len: 0,
                    raw: None,
                    empty: false,
                })
            }
            Event::Value(p) => self.piece(p),
            Event::KeyEnd(end) => {
                self.flush_big();
                if let Some(mut k) = self.cur.take() {
                    k.encoded_len = end.encoded_len;
                    k.raw = end.raw.map(<[u8]>::to_vec);
                    k.empty = end.empty;
                    self.rdb.keys.push(k);
                }
            }
            Event::Eof { checksum } => self.rdb.checksum = Some(checksum),
            _ => {}
        }
    }

    fn flush_big(&mut self) {
        let Some((role, field, fexp)) = self.big_role.take() else {
            return;
        };
        let data = std::mem::take(&mut self.big);
        let Some(k) = self.cur.as_mut() else { return };
        match (&mut k.value, role) {
            (Value::String(s), BigRole::StringValue) => *s = data,
            (Value::List(l), BigRole::ListItem) => l.push(data),
            (Value::Set(s), BigRole::SetMember) => s.push(data),
            (Value::Hash(h), BigRole::HashValue) => h.push((field.unwrap_or_default(), data, fexp)),
            _ => {}
        }
    }

    fn piece(&mut self, p: Piece) {
        if !matches!(p, Piece::Chunk(_)) {
            self.flush_big();
        }
        let Some(k) = self.cur.as_mut() else { return };
        match (&mut k.value, p) {
            (
                _,
                Piece::BigStart {
                    role,
                    field,
                    field_expire_ms,
                    ..
                },
            ) => {
                self.big_role = Some((role, field.map(<[u8]>::to_vec), field_expire_ms));
            }
            (_, Piece::Chunk(c)) => self.big.extend_from_slice(c),
            (Value::String(s), Piece::String(e)) => *s = e.to_vec(),
            (Value::List(l), Piece::ListItem(e)) => l.push(e.to_vec()),
            (Value::Set(s), Piece::SetMember(e)) => s.push(e.to_vec()),
            (Value::Zset(z), Piece::ZsetMember { member, score }) => {
                z.push((member.to_vec(), score))
            }
            (
                Value::Hash(h),
                Piece::HashField {
                    field,
                    value,
                    expire_ms,
                },
            ) => h.push((field.to_vec(), value.to_vec(), expire_ms)),
            (Value::Module { name, encver }, Piece::Module { module }) => {
                *name = module.name_str().to_string();
                *encver = module.encver;
            }
            (Value::Stream(s), p) => stream_piece(s, p),
            _ => {}
        }
    }
}

fn stream_piece(s: &mut Stream, p: Piece) {
    match p {
        Piece::StreamEntry { id, .. } => s.entries.push((id, Vec::new())),
        Piece::StreamField { field, value } => {
            if let Some(e) = s.entries.last_mut() {
                e.1.push((field.to_vec(), value.to_vec()));
            }
        }
        Piece::StreamMeta {
            length,
            last_id,
            first_id,
            max_deleted_id,
            entries_added,
            ..
        } => {
            s.length = length;
            s.last_id = last_id;
            s.first_id = first_id;
            s.max_deleted_id = max_deleted_id;
            s.entries_added = entries_added;
        }
        Piece::StreamGroup {
            name,
            last_id,
            entries_read,
            ..
        } => s.groups.push(Group {
            name: name.to_vec(),
            last_id,
            entries_read,
            ..Default::default()
        }),
        Piece::StreamPending {
            id,
            delivery_time_ms,
            delivery_count,
        } => {
            if let Some(g) = s.groups.last_mut() {
                g.pending.push((id, delivery_time_ms, delivery_count));
            }
        }
        Piece::StreamConsumer {
            name,
            seen_time_ms,
            active_time_ms,
            ..
        } => {
            if let Some(g) = s.groups.last_mut() {
                g.consumers.push(Consumer {
                    name: name.to_vec(),
                    seen_time_ms,
                    active_time_ms,
                    pending: Vec::new(),
                });
            }
        }
        Piece::StreamConsumerPending { id } => {
            if let Some(c) = s.groups.last_mut().and_then(|g| g.consumers.last_mut()) {
                c.pending.push(id);
            }
        }
        _ => {}
    }
}

/// Decodes a whole in-memory RDB.
pub fn collect(data: &[u8], cfg: DecoderConfig) -> Result<Rdb, RdbError> {
    let mut c = Collector::default();
    reader::decode_reader(data, cfg, |ev| {
        c.event(ev);
        Ok::<(), std::convert::Infallible>(())
    })
    .map_err(|e| match e {
        reader::DriveError::Rdb(e) => e,
        reader::DriveError::Io { offset, source } => {
            RdbError::new(ErrorKind::Truncated, offset, source.to_string())
        }
        reader::DriveError::Handler(never) => match never {},
    })?;
    Ok(c.rdb)
}

/// Decodes `data` feeding the decoder through `split`: a function that, given how many
/// bytes are buffered and how many remain, says how many more to append. Used by tests
/// to prove any split gives the same result.
pub fn collect_split(
    data: &[u8],
    cfg: DecoderConfig,
    mut split: impl FnMut(usize) -> usize,
) -> Result<Rdb, RdbError> {
    let mut dec = Decoder::new(cfg);
    let mut c = Collector::default();
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        let (used, step) = dec.step(&data[start..end])?;
        start += used;
        match step {
            Step::Event(ev) => c.event(&ev),
            Step::Done => return Ok(c.rdb),
            Step::NeedMore => {
                if end == data.len() {
                    dec.finish()?;
                    return Ok(c.rdb);
                }
                end = (end + split(data.len() - end).max(1)).min(data.len());
            }
        }
    }
}
