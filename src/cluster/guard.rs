//! Keys that moved between the shards of a cluster source while ferry reads every
//! shard's replication stream.
//!
//! A slot migration with `MIGRATE` shows in the streams as a `RESTORE-ASKING key …` on
//! the importing shard and then, once that succeeded, a `DEL key` on the exporting
//! shard. ferry reads the shards on separate links and applies them on separate
//! connections, so the exporting shard's `DEL` can reach the target after the importing
//! shard's newer `RESTORE` and would delete the key. The guard remembers which shard
//! imported which key; a `DEL`/`UNLINK` of that key coming from another shard is the
//! migration's own delete, and is dropped (and counted).
//!
//! The other order — the exporting shard's link ahead, its `DEL` already sent when the
//! `RESTORE-ASKING` comes — is safe only once that `DEL` has been applied: the target
//! runs each shard's connection in its own order, so a `DEL` still in flight could land
//! after the `RESTORE`. Every shard's sink publishes the tag its target acknowledged, and
//! remembers recent deletes; the importing shard first waits (a bounded time, driving its
//! own writer meanwhile) until the exporting shard's target has acknowledged that `DEL`,
//! and with it every earlier write of that shard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Most keys remembered in each map (imports, recent deletes); the oldest half is
/// forgotten when it is reached. The maps only need to cover the skew between the
/// shards' links, so memory stays bounded whatever the dataset.
const MAX_KEYS: usize = 1 << 16;

/// key → (importing shard, sequence number).
type Imported = HashMap<Vec<u8>, (usize, u64)>;
/// key → (deleting shard, its tag, sequence number).
type Deleted = HashMap<Vec<u8>, (usize, u64, u64)>;

#[derive(Debug, Default)]
pub struct MigrationGuard {
    imported: Mutex<(Imported, u64)>,
    /// Keys seen arriving by `RESTORE-ASKING` (migrations seen on the source).
    pub moved_keys: AtomicU64,
    /// Stale deletes dropped.
    pub dropped_deletes: AtomicU64,
    recent_deletes: Mutex<(Deleted, u64)>,
    acked: Mutex<HashMap<usize, u64>>,
    /// Imports that waited for the exporting shard's delete to be applied, and waits
    /// that ran out of time.
    pub waits: AtomicU64,
    pub wait_timeouts: AtomicU64,
}

impl MigrationGuard {
    /// Shard `shard` imported `key`.
    pub fn imported(&self, shard: usize, key: &[u8]) {
        self.moved_keys.fetch_add(1, Ordering::Relaxed);
        let mut g = self.imported.lock().unwrap_or_else(|p| p.into_inner());
        let (map, seq) = &mut *g;
        *seq += 1;
        let s = *seq;
        map.insert(key.to_vec(), (shard, s));
        if map.len() > MAX_KEYS {
            // Forget the oldest half: they have long been deleted on their old shard.
            let cut = s - (MAX_KEYS as u64 / 2);
            map.retain(|_, v| v.1 > cut);
        }
    }

    /// Whether a delete of `key` from `shard` is the stale delete of a migration (and
    /// forgets the key: its migration is complete).
    pub fn is_stale_delete(&self, shard: usize, key: &[u8]) -> bool {
        let mut g = self.imported.lock().unwrap_or_else(|p| p.into_inner());
        match g.0.get(key) {
            Some(&(owner, _)) if owner != shard => {
                g.0.remove(key);
                self.dropped_deletes.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Shard `shard` sent a delete of `key` with tag `tag`.
    pub fn deleted(&self, shard: usize, key: &[u8], tag: u64) {
        let mut g = self
            .recent_deletes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (map, seq) = &mut *g;
        *seq += 1;
        let s = *seq;
        map.insert(key.to_vec(), (shard, tag, s));
        if map.len() > MAX_KEYS {
            let cut = s - (MAX_KEYS as u64 / 2);
            map.retain(|_, v| v.2 > cut);
        }
    }

    /// A delete of `key` by a shard other than `shard`, sent earlier: (that shard, its
    /// tag). Forgotten once asked.
    pub fn earlier_delete(&self, shard: usize, key: &[u8]) -> Option<(usize, u64)> {
        let mut g = self
            .recent_deletes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match g.0.get(key) {
            Some(&(other, tag, _)) if other != shard => {
                g.0.remove(key);
                Some((other, tag))
            }
            _ => None,
        }
    }

    /// Shard `shard`'s target has acknowledged everything up to `tag`.
    pub fn publish_acked(&self, shard: usize, tag: u64) {
        let mut g = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.entry(shard).or_default();
        *e = (*e).max(tag);
    }

    pub fn acked(&self, shard: usize) -> u64 {
        let g = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&shard).copied().unwrap_or(0)
    }

    /// A write from the importing shard's later history: nothing to do; a delete from
    /// the importing shard itself is a real delete and also ends the record.
    pub fn deleted_by_owner(&self, shard: usize, key: &[u8]) {
        let mut g = self.imported.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.get(key).is_some_and(|&(o, _)| o == shard) {
            g.0.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_exporting_shards_delete_only() {
        let g = MigrationGuard::default();
        g.imported(1, b"k");
        assert!(
            !g.is_stale_delete(1, b"k"),
            "the importer's own delete is real"
        );
        assert!(g.is_stale_delete(0, b"k"));
        assert!(!g.is_stale_delete(0, b"k"), "only once");
        assert!(!g.is_stale_delete(0, b"other"));
        assert_eq!(g.dropped_deletes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_earlier_delete_of_another_shard_is_found_once_and_acks_are_kept() {
        let g = MigrationGuard::default();
        g.deleted(0, b"k", 100);
        assert_eq!(g.earlier_delete(0, b"k"), None, "own delete");
        assert_eq!(g.earlier_delete(1, b"k"), Some((0, 100)));
        assert_eq!(g.earlier_delete(1, b"k"), None);
        g.publish_acked(0, 90);
        g.publish_acked(0, 80);
        assert_eq!(g.acked(0), 90);
        assert_eq!(g.acked(3), 0);
    }
}
