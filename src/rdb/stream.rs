//! Streams (types 15, 19, 21; reference §2.11).
//!
//! ```text
//! nodes: len
//! repeat nodes:   master_id: rdbstr (16 bytes: ms u64 BE, seq u64 BE)
//!                 listpack: rdbstr
//! length: len, last_id: len len
//! if type >= 19:  first_id: len len, max_deleted_id: len len, entries_added: len
//! groups: len
//! repeat groups:  name: rdbstr, last_id: len len
//!                 if type >= 19: entries_read: len (2^64-1 = unknown)
//!                 pel: len, pel × (id: 16 raw BE, delivery_time: i64 LE ms, delivery_count: len)
//!                 consumers: len
//!                 repeat consumers: name: rdbstr, seen_time: i64 LE ms,
//!                                   if type >= 21: active_time: i64 LE ms,
//!                                   pel: len, pel × id (16 raw BE)
//! ```
//!
//! Each node's listpack holds a master entry, then the entries as diffs from the
//! master id:
//!
//! ```text
//! master: count deleted num_fields field_1 … field_N 0
//! entry:  flags ms_diff seq_diff [values × N  if flags & SAMEFIELDS
//!                                 | num_fields (field value) × num_fields] lp_count
//! ```
//! Entries flagged DELETED are skipped; `lp_count` is only for walking backwards.

use super::decoder::*;
use super::event::StreamId;
use super::listpack;

impl Decoder {
    pub(super) fn advance_stream(&mut self, v: V, input: &[u8], pos: usize) -> R<Adv> {
        let mut c = Cur { b: input, p: pos };
        let t = self.type_byte;
        match v {
            V::StreamNodesCount => {
                let at = c.p;
                let n = need!(read_plain_len(&mut c, "stream node count")?, pos);
                self.check_len(at, n, "stream node count")?;
                self.state = State::Value(if n == 0 {
                    V::StreamMeta
                } else {
                    V::StreamNode { left: n }
                });
                self.silent(input, pos, c.p)
            }
            V::StreamNode { left } => {
                let at = c.p;
                let id = need!(self.read_elem(&mut c, 0, "stream node id length")?, pos);
                let id = self.resolve(input, id);
                let super::Elem::Bytes(raw) = id else {
                    return Err(corrupt(
                        at,
                        "stream node master id is an integer, expected 16 bytes",
                    ));
                };
                let Ok(raw) = <[u8; 16]>::try_from(raw) else {
                    return Err(corrupt(
                        at,
                        format!("stream node master id has {} bytes, expected 16", raw.len()),
                    ));
                };
                self.stream.master_id = id_from_raw(&raw);
                self.state = State::Value(V::Blob {
                    walk: Walk::StreamNode,
                    quick: Some(Quick {
                        v2: false,
                        nodes_left: left - 1,
                    }),
                });
                self.silent(input, pos, c.p)
            }
            V::StreamMeta => {
                let length = need!(read_plain_len(&mut c, "stream length")?, pos);
                let last_id = need!(read_id_lens(&mut c)?, pos);
                let (mut first_id, mut max_deleted_id, mut entries_added) = (None, None, None);
                if t >= RDB_TYPE_STREAM_LISTPACKS_2 {
                    first_id = Some(need!(read_id_lens(&mut c)?, pos));
                    max_deleted_id = Some(need!(read_id_lens(&mut c)?, pos));
                    entries_added =
                        Some(need!(read_plain_len(&mut c, "stream entries added")?, pos));
                }
                let at = c.p;
                let groups = need!(read_plain_len(&mut c, "stream group count")?, pos);
                self.check_len(at, groups, "stream group count")?;
                self.state = if groups == 0 {
                    State::KeyEnd
                } else {
                    State::Value(V::StreamGroup {
                        groups_left: groups,
                    })
                };
                let p = P::StreamMeta {
                    length,
                    last_id,
                    first_id,
                    max_deleted_id,
                    entries_added,
                    groups,
                };
                self.piece(p, input, pos, c.p)
            }
            V::StreamGroup { groups_left } => {
                let name = need!(self.read_bytes(&mut c, 0, "stream group name length")?, pos);
                let last_id = need!(read_id_lens(&mut c)?, pos);
                let mut entries_read = None;
                if t >= RDB_TYPE_STREAM_LISTPACKS_2 {
                    let n = need!(read_plain_len(&mut c, "stream group entries read")?, pos);
                    entries_read = (n != u64::MAX).then_some(n);
                }
                let at = c.p;
                let pending = need!(read_plain_len(&mut c, "stream group PEL size")?, pos);
                self.check_len(at, pending, "stream group PEL size")?;
                self.state = State::Value(if pending == 0 {
                    V::StreamConsumers { groups_left }
                } else {
                    V::StreamGroupPel {
                        left: pending,
                        groups_left,
                    }
                });
                self.piece(
                    P::StreamGroup {
                        name,
                        last_id,
                        entries_read,
                        pending,
                    },
                    input,
                    pos,
                    c.p,
                )
            }
            V::StreamGroupPel { left, groups_left } => {
                let id = need!(raw_id(&mut c), pos);
                let time = need!(c.i64le(), pos);
                let count = need!(read_plain_len(&mut c, "stream PEL delivery count")?, pos);
                self.state = State::Value(if left > 1 {
                    V::StreamGroupPel {
                        left: left - 1,
                        groups_left,
                    }
                } else {
                    V::StreamConsumers { groups_left }
                });
                self.piece(P::StreamPending(id, time, count), input, pos, c.p)
            }
            V::StreamConsumers { groups_left } => {
                let at = c.p;
                let n = need!(read_plain_len(&mut c, "stream consumer count")?, pos);
                self.check_len(at, n, "stream consumer count")?;
                self.state = if n == 0 {
                    after_group(groups_left)
                } else {
                    State::Value(V::StreamConsumer {
                        left: n,
                        groups_left,
                    })
                };
                self.silent(input, pos, c.p)
            }
            V::StreamConsumer { left, groups_left } => {
                let name = need!(
                    self.read_bytes(&mut c, 0, "stream consumer name length")?,
                    pos
                );
                let seen = need!(c.i64le(), pos);
                let active = if t >= RDB_TYPE_STREAM_LISTPACKS_3 {
                    Some(need!(c.i64le(), pos))
                } else {
                    None
                };
                let at = c.p;
                let pending = need!(read_plain_len(&mut c, "stream consumer PEL size")?, pos);
                self.check_len(at, pending, "stream consumer PEL size")?;
                self.state = if pending > 0 {
                    State::Value(V::StreamConsumerPel {
                        left: pending,
                        consumers_left: left - 1,
                        groups_left,
                    })
                } else {
                    after_consumer(left - 1, groups_left)
                };
                self.piece(
                    P::StreamConsumer {
                        name,
                        seen,
                        active,
                        pending,
                    },
                    input,
                    pos,
                    c.p,
                )
            }
            V::StreamConsumerPel {
                left,
                consumers_left,
                groups_left,
            } => {
                let id = need!(raw_id(&mut c), pos);
                self.state = if left > 1 {
                    State::Value(V::StreamConsumerPel {
                        left: left - 1,
                        consumers_left,
                        groups_left,
                    })
                } else {
                    after_consumer(consumers_left, groups_left)
                };
                self.piece(P::StreamConsumerPending(id), input, pos, c.p)
            }
            _ => Ok(Adv::Silent(pos)),
        }
    }

    /// One step of walking a stream node held in `self.blob`; `quick.nodes_left` is the
    /// number of nodes after this one.
    pub(super) fn advance_stream_node(
        &mut self,
        bp: usize,
        quick: Option<Quick>,
        pos: usize,
    ) -> R<Adv> {
        let nodes_left = quick.map_or(0, |q| q.nodes_left);
        let err = |e: super::EncodingError| corrupt(pos, format!("stream node listpack: {e}"));
        let mut p = bp;
        let blob = &self.blob;
        let stored = |e: super::Elem| match e {
            super::Elem::Int(i) => Stored::Int(i),
            super::Elem::Bytes(b) => {
                Stored::Range(b.as_ptr() as usize - blob.as_ptr() as usize, b.len())
            }
        };
        let int = |p: &mut usize, what: &str| -> R<i64> {
            match listpack::next(blob, p).map_err(err)? {
                Some(e) => e.as_i64().ok_or_else(|| {
                    corrupt(
                        pos,
                        format!("stream node listpack: {what} is not an integer"),
                    )
                }),
                None => Err(corrupt(
                    pos,
                    format!("stream node listpack ended where {what} was expected"),
                )),
            }
        };
        let elem = |p: &mut usize, what: &str| -> R<Stored> {
            match listpack::next(blob, p).map_err(err)? {
                Some(e) => Ok(stored(e)),
                None => Err(corrupt(
                    pos,
                    format!("stream node listpack ended where {what} was expected"),
                )),
            }
        };
        let walking = |p: usize| {
            State::Value(V::Walking {
                walk: Walk::StreamNode,
                pos: p,
                index: 0,
                quick,
            })
        };

        if !self.stream.started {
            let _count = int(&mut p, "the master entry count")?;
            let _deleted = int(&mut p, "the master deleted count")?;
            let n = int(&mut p, "the master field count")?;
            if n < 0 || n as u64 > blob.len() as u64 {
                return Err(corrupt(
                    pos,
                    format!("stream node master field count {n} is impossible"),
                ));
            }
            let mut fields = std::mem::take(&mut self.stream.master_fields);
            fields.clear();
            for _ in 0..n {
                fields.push(elem(&mut p, "a master field")?);
            }
            let term = int(&mut p, "the master entry terminator")?;
            if term != 0 {
                return Err(corrupt(
                    pos,
                    format!("stream node master entry terminator is {term}, expected 0"),
                ));
            }
            self.stream.master_fields = fields;
            self.stream.started = true;
            self.stream.next_field = 0;
            self.stream.fields.clear();
            self.state = walking(p);
            return Ok(Adv::Silent(pos));
        }
        if self.stream.next_field < self.stream.fields.len() {
            let (f, v) = self.stream.fields[self.stream.next_field];
            self.stream.next_field += 1;
            self.pending_piece(P::StreamField(stored_src(f), stored_src(v)));
            return Ok(Adv::Ready(pos));
        }
        // Next entry, or the end of the node.
        let Some(flags) = listpack::next(blob, &mut p).map_err(err)? else {
            self.state = if nodes_left > 0 {
                State::Value(V::StreamNode { left: nodes_left })
            } else {
                State::Value(V::StreamMeta)
            };
            return Ok(Adv::Silent(pos));
        };
        let flags = flags
            .as_i64()
            .ok_or_else(|| corrupt(pos, "stream node listpack: entry flags are not an integer"))?;
        let ms_diff = int(&mut p, "an entry ms diff")?;
        let seq_diff = int(&mut p, "an entry seq diff")?;
        let master = self.stream.master_id;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms_diff as u64),
            seq: master.seq.wrapping_add(seq_diff as u64),
        };
        let mut fields = std::mem::take(&mut self.stream.fields);
        fields.clear();
        if flags & STREAM_ITEM_FLAG_SAMEFIELDS != 0 {
            for i in 0..self.stream.master_fields.len() {
                let v = elem(&mut p, "an entry value")?;
                fields.push((self.stream.master_fields[i], v));
            }
        } else {
            let n = int(&mut p, "an entry field count")?;
            if n < 0 || n as u64 > blob.len() as u64 {
                return Err(corrupt(
                    pos,
                    format!("stream entry field count {n} is impossible"),
                ));
            }
            for _ in 0..n {
                let f = elem(&mut p, "an entry field")?;
                let v = elem(&mut p, "an entry value")?;
                fields.push((f, v));
            }
        }
        int(&mut p, "an entry lp-count")?;
        let n = fields.len() as u64;
        self.stream.fields = fields;
        self.stream.next_field = 0;
        self.state = walking(p);
        if flags & STREAM_ITEM_FLAG_DELETED != 0 {
            self.stream.fields.clear();
            return Ok(Adv::Silent(pos));
        }
        self.elements += 1;
        self.pending_piece(P::StreamEntry(id, n));
        Ok(Adv::Ready(pos))
    }
}

fn stored_src(s: Stored) -> Src {
    match s {
        Stored::Range(a, l) => Src::Blob(a, l),
        Stored::Int(i) => Src::Int(i),
    }
}

fn id_from_raw(raw: &[u8; 16]) -> StreamId {
    let mut ms = [0u8; 8];
    let mut seq = [0u8; 8];
    ms.copy_from_slice(&raw[..8]);
    seq.copy_from_slice(&raw[8..]);
    StreamId {
        ms: u64::from_be_bytes(ms),
        seq: u64::from_be_bytes(seq),
    }
}

fn raw_id(c: &mut Cur) -> Option<StreamId> {
    c.arr::<16>().map(|a| id_from_raw(&a))
}

fn read_id_lens(c: &mut Cur) -> R<Option<StreamId>> {
    let Some(ms) = read_plain_len(c, "stream id")? else {
        return Ok(None);
    };
    let Some(seq) = read_plain_len(c, "stream id")? else {
        return Ok(None);
    };
    Ok(Some(StreamId { ms, seq }))
}

fn after_consumer(consumers_left: u64, groups_left: u64) -> State {
    if consumers_left > 0 {
        State::Value(V::StreamConsumer {
            left: consumers_left,
            groups_left,
        })
    } else {
        after_group(groups_left)
    }
}

fn after_group(groups_left: u64) -> State {
    if groups_left > 1 {
        State::Value(V::StreamGroup {
            groups_left: groups_left - 1,
        })
    } else {
        State::KeyEnd
    }
}
