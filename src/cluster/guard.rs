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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Most keys remembered; the oldest are forgotten first.
const MAX_KEYS: usize = 1 << 20;

/// key → (importing shard, sequence number).
type Imported = HashMap<Vec<u8>, (usize, u64)>;

#[derive(Debug, Default)]
pub struct MigrationGuard {
    imported: Mutex<(Imported, u64)>,
    /// Keys seen arriving by `RESTORE-ASKING` (migrations seen on the source).
    pub moved_keys: AtomicU64,
    /// Stale deletes dropped.
    pub dropped_deletes: AtomicU64,
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
}
