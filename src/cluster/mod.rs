//! Cluster knowledge that does not touch a socket: hash slots ([`slot`]), the slot map
//! from `CLUSTER SHARDS`/`SLOTS`/`NODES` ([`topology`]), where a command's keys are
//! ([`keys`], from the target's `COMMAND` reply), and per-slot splitting of multi-key
//! commands ([`split`]). The router that uses them is `target::cluster`.

pub mod guard;
pub mod keys;
pub mod slot;
pub mod split;
pub mod topology;

pub use keys::{KeyError, KeyFinder};
pub use slot::{key_slot, SLOTS};
pub use split::{split, Split};
pub use topology::{Master, NodeAddr, Redirect, Topology};

use crate::resp::Frame;

/// A simple/bulk/verbatim string as text.
pub(crate) fn text(f: &Frame) -> Option<String> {
    f.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The fields of a map reply: a RESP3 map, or the flat `[k, v, k, v…]` array of RESP2.
pub(crate) fn fields(f: &Frame) -> Vec<(String, &Frame)> {
    match f {
        Frame::Map(kv) => kv.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        Frame::Array(items) => items
            .chunks(2)
            .filter_map(|c| Some((text(c.first()?)?, c.get(1)?)))
            .collect(),
        _ => Vec::new(),
    }
}
