//! A stream value as commands (reference §2.11):
//!
//! ```text
//! XADD key id f v …                       every live entry, explicit ids, in order
//! XGROUP CREATE key t 0 MKSTREAM          only if no entry was written: makes the empty
//! XGROUP DESTROY key t                    stream (its groups and last id come next)
//! XSETID key last_id [ENTRIESADDED n MAXDELETEDID id]        counters on 7.0+ targets
//! XGROUP CREATE key group last_id [ENTRIESREAD n]            per group
//! XGROUP CREATECONSUMER key group consumer                   per consumer (6.2+;
//!     older targets: XREADGROUP GROUP group consumer COUNT 1 STREAMS key 0, which
//!     creates the consumer and reads its empty history)
//! XCLAIM key group consumer 0 id… TIME ms RETRYCOUNT n FORCE JUSTID    the PEL
//! ```
//!
//! The decoder gives a group's PEL (delivery time and count per id) before its consumers
//! and the ids each consumer owns, so the PEL of the current group is kept in a map until
//! its consumers are done. The map holds at most [`PEL_KEPT`] entries (about 17 MiB: a
//! `HashMap` of 2^18 entries has 2^19 buckets of 33 bytes):
//! pending entries beyond it keep their consumer but get the copy's time and a delivery
//! count of 1, with one warning per group and a count in [`RewriteStats`]. `XCLAIM …
//! FORCE` only creates a pending entry for an id that is still in the stream: entries
//! deleted after delivery but still pending on the source are lost on the commands path
//! (RESTORE keeps them).
//!
//! [`RewriteStats`]: super::rewrite::RewriteStats

use std::collections::HashMap;

use super::batch::{bulk, bulk_elem};
use super::rewrite::{KeyRewriter, KeyState};
use crate::rdb::{Piece, StreamId};
use crate::target::Cmd;

/// Pending entries of one group whose delivery time and count are kept until its
/// consumers come (about 17 MiB for the map when full).
pub(super) const PEL_KEPT: usize = 1 << 18;

/// A throwaway group name used to create an empty stream.
const EMPTY_STREAM_GROUP: &[u8] = b"ferry-create";

/// Where the rewrite of a stream is.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The entry being gathered: its id, its field-value pairs (as RESP bulks), and how
    /// many pairs are still to come.
    entry_id: StreamId,
    entry: Vec<u8>,
    entry_pairs: usize,
    fields_left: u64,
    /// XADDs written.
    entries: u64,
    /// The current group, its PEL, and the current consumer.
    group: Option<Vec<u8>>,
    pel: HashMap<StreamId, (i64, u64)>,
    /// Pending entries of the current group past [`PEL_KEPT`].
    pel_dropped: u64,
    consumer: Option<Vec<u8>>,
    /// Ids of the current consumer gathered for one XCLAIM: same time and count.
    claim: Vec<StreamId>,
    claim_meta: (i64, u64),
}

impl KeyRewriter {
    pub(super) fn stream_piece(
        &mut self,
        st: &mut KeyState,
        p: &Piece<'_>,
        out: &mut impl FnMut(Cmd),
    ) {
        let name = st.name.clone();
        match *p {
            Piece::StreamEntry { id, fields } => {
                // The fields are gathered apart and the XADD written whole once the last
                // one is in: a value cut short must not leave half a command in a Cmd.
                st.stream.entry.clear();
                st.stream.entry_pairs = 0;
                st.stream.entry_id = id;
                st.stream.fields_left = fields;
            }
            Piece::StreamField { field, value } => {
                if st.stream.fields_left == 0 {
                    return;
                }
                bulk_elem(&mut st.stream.entry, field);
                bulk_elem(&mut st.stream.entry, value);
                st.stream.entry_pairs += 1;
                st.stream.fields_left -= 1;
                if st.stream.fields_left > 0 {
                    return;
                }
                let id = st.stream.entry_id.to_string();
                let argc = 3 + 2 * st.stream.entry_pairs;
                st.cmds.begin(argc);
                bulk(&mut st.cmds.buf, b"XADD");
                bulk(&mut st.cmds.buf, &name);
                bulk(&mut st.cmds.buf, id.as_bytes());
                st.cmds.buf.extend_from_slice(&st.stream.entry);
                st.cmds.end();
                st.stream.entries += 1;
                st.written += 1;
                if st.cmds.n as usize >= self.cfg.batch_elems {
                    self.flush(st, out);
                } else {
                    self.maybe_flush(st, out);
                }
            }
            Piece::StreamMeta {
                last_id,
                max_deleted_id,
                entries_added,
                ..
            } => {
                if st.stream.entries == 0 {
                    st.cmds.command(&[
                        b"XGROUP",
                        b"CREATE",
                        &name,
                        EMPTY_STREAM_GROUP,
                        b"0",
                        b"MKSTREAM",
                    ]);
                    st.cmds
                        .command(&[b"XGROUP", b"DESTROY", &name, EMPTY_STREAM_GROUP]);
                }
                let last = last_id.to_string();
                let mut args: Vec<Vec<u8>> =
                    vec![b"XSETID".to_vec(), name.to_vec(), last.into_bytes()];
                if let (true, Some(added), Some(max_del)) = (
                    self.target.has_stream_counters(),
                    entries_added,
                    max_deleted_id,
                ) {
                    args.push(b"ENTRIESADDED".to_vec());
                    args.push(added.to_string().into_bytes());
                    args.push(b"MAXDELETEDID".to_vec());
                    args.push(max_del.to_string().into_bytes());
                }
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                st.cmds.command(&args);
                self.maybe_flush(st, out);
            }
            Piece::StreamGroup {
                name: group,
                last_id,
                entries_read,
                ..
            } => {
                self.flush_claim(st, out);
                let last = last_id.to_string();
                let read = entries_read
                    .filter(|_| self.target.has_stream_counters())
                    .map(|n| n.to_string());
                let mut args: Vec<&[u8]> =
                    vec![b"XGROUP", b"CREATE", &name, group, last.as_bytes()];
                if let Some(read) = &read {
                    args.push(b"ENTRIESREAD");
                    args.push(read.as_bytes());
                }
                st.cmds.command(&args);
                st.stream.group = Some(group.to_vec());
                st.stream.pel.clear();
                st.stream.pel_dropped = 0;
                st.stream.consumer = None;
                self.maybe_flush(st, out);
            }
            Piece::StreamPending {
                id,
                delivery_time_ms,
                delivery_count,
            } => {
                if st.stream.pel.len() < self.pel_kept {
                    st.stream.pel.insert(id, (delivery_time_ms, delivery_count));
                } else {
                    if st.stream.pel_dropped == 0 {
                        tracing::warn!(
                            key = %crate::util::escape_bytes(&st.key),
                            db = st.db,
                            group = %crate::util::escape_bytes(st.stream.group.as_deref().unwrap_or_default()),
                            kept = self.pel_kept,
                            "stream group has more pending entries than ferry keeps: if the key \
                             goes as commands (not RESTORE), the rest get the copy's time and a \
                             delivery count of 1"
                        );
                    }
                    st.stream.pel_dropped += 1;
                    self.stats.pel_meta_dropped += 1;
                }
            }
            Piece::StreamConsumer { name: consumer, .. } => {
                self.flush_claim(st, out);
                let group = st.stream.group.clone().unwrap_or_default();
                if self.target.has_create_consumer() {
                    st.cmds
                        .command(&[b"XGROUP", b"CREATECONSUMER", &name, &group, consumer]);
                } else {
                    st.cmds.command(&[
                        b"XREADGROUP",
                        b"GROUP",
                        &group,
                        consumer,
                        b"COUNT",
                        b"1",
                        b"STREAMS",
                        &name,
                        b"0",
                    ]);
                }
                st.stream.consumer = Some(consumer.to_vec());
                self.maybe_flush(st, out);
            }
            Piece::StreamConsumerPending { id } => {
                let meta = st.stream.pel.get(&id).copied().unwrap_or((self.now_ms, 1));
                if !st.stream.claim.is_empty()
                    && (meta != st.stream.claim_meta
                        || st.stream.claim.len() >= self.cfg.batch_elems)
                {
                    self.flush_claim(st, out);
                }
                st.stream.claim_meta = meta;
                st.stream.claim.push(id);
            }
            _ => {}
        }
    }

    /// Writes the XCLAIM of the ids gathered for the current consumer.
    fn flush_claim(&mut self, st: &mut KeyState, out: &mut impl FnMut(Cmd)) {
        if st.stream.claim.is_empty() {
            return;
        }
        let ids: Vec<String> = st.stream.claim.drain(..).map(|id| id.to_string()).collect();
        let (time, count) = st.stream.claim_meta;
        let (time, count) = (time.to_string(), count.to_string());
        let group = st.stream.group.clone().unwrap_or_default();
        let consumer = st.stream.consumer.clone().unwrap_or_default();
        let name = st.name.clone();
        let mut args: Vec<&[u8]> = vec![b"XCLAIM", &name, &group, &consumer, b"0"];
        args.extend(ids.iter().map(|s| s.as_bytes()));
        args.extend([
            b"TIME".as_slice(),
            time.as_bytes(),
            b"RETRYCOUNT",
            count.as_bytes(),
            b"FORCE",
            b"JUSTID",
        ]);
        st.cmds.command(&args);
        self.maybe_flush(st, out);
    }

    /// The end of a stream key: the last XCLAIM.
    pub(super) fn stream_end(&mut self, st: &mut KeyState, out: &mut impl FnMut(Cmd)) {
        self.flush_claim(st, out);
        st.stream.pel = HashMap::new();
    }
}
