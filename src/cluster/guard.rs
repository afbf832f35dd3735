//! Keys that moved between the shards of a cluster source while ferry reads every
//! shard's replication stream.
//!
//! A slot migration with `MIGRATE` shows in the streams as a `RESTORE-ASKING key …` on
//! the importing shard and then, once that succeeded, a `DEL key` on the exporting
//! shard. ferry reads the shards on separate links and applies them on separate
//! connections, so nothing orders one shard's commands against another's by itself.
//! Two things can go wrong, and the guard prevents both:
//!
//! * **An older write after the newer one.** The exporting shard's writes to the key,
//!   made before the migration, are still in its link or in flight when the importing
//!   shard's `RESTORE` (and the writes after it) reach the target; they would then land
//!   on top of the newer value. So before a `RESTORE-ASKING` is sent, the importing
//!   shard asks every other shard of the source for its replication offset *now*, and
//!   waits until ferry has applied each of them up to that offset (see
//!   [`MigrationGuard::applied`]). Everything the exporting shard did before the
//!   migration happened before that moment, so it is then on the target. The wait is
//!   bounded ([`MIGRATION_WAIT`]): a shard still loading its snapshot or a cut link must
//!   not stop the others for long; a wait that runs out is logged and counted in
//!   `/status` (`migration_wait_timeouts`). One wait covers every `RESTORE-ASKING` the
//!   importing shard had produced by the moment its own offset was read, so a `MIGRATE`
//!   loop costs one wait per round, not one per key.
//! * **The migration's own delete after the import.** The exporting shard's `DEL` comes
//!   after the `RESTORE` on the source, but its link may deliver it later than that
//!   offset: the guard remembers which shard imported which key, and a `DEL`/`UNLINK` of
//!   that key from another shard is the migration's delete; it is dropped (and counted).
//!
//! The importing shard's `RESTORE-ASKING` is sent with `REPLACE`: the target may hold the
//! key from the exporting shard's history (its delete dropped, or not yet applied), and
//! the migrated value is the newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::endpoint::Endpoint;

/// Most keys remembered as imported; the oldest half is forgotten when it is reached.
/// The map only needs to cover the skew between the shards' links, so memory stays
/// bounded whatever the dataset.
const MAX_KEYS: usize = 1 << 16;

/// Longest an importing shard waits for the other shards to catch up.
pub const MIGRATION_WAIT: Duration = Duration::from_secs(10);

/// key → (importing shard, sequence number).
type Imported = HashMap<Vec<u8>, (usize, u64)>;

#[derive(Debug, Default)]
pub struct MigrationGuard {
    /// The source endpoint of each shard, by shard number (to read their offsets).
    sources: Vec<Endpoint>,
    imported: Mutex<(Imported, u64)>,
    /// Keys seen arriving by `RESTORE-ASKING` (migrations seen on the source).
    pub moved_keys: AtomicU64,
    /// Stale deletes dropped.
    pub dropped_deletes: AtomicU64,
    /// shard → the source offset ferry has applied on the target in its stream phase.
    applied: Mutex<HashMap<usize, u64>>,
    /// Imports that waited for the other shards, and waits that ran out of time.
    pub waits: AtomicU64,
    pub wait_timeouts: AtomicU64,
}

impl MigrationGuard {
    /// A guard for shards reading from `sources` (shard `i` from `sources[i]`).
    pub fn new(sources: Vec<Endpoint>) -> MigrationGuard {
        MigrationGuard {
            sources,
            ..MigrationGuard::default()
        }
    }

    /// The other shards' source endpoints: (shard, endpoint).
    pub fn others(&self, shard: usize) -> impl Iterator<Item = (usize, &Endpoint)> {
        self.sources
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != shard)
    }

    pub fn source(&self, shard: usize) -> Option<&Endpoint> {
        self.sources.get(shard)
    }

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

    /// A delete from the importing shard itself is a real delete and ends the record.
    pub fn deleted_by_owner(&self, shard: usize, key: &[u8]) {
        let mut g = self.imported.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.get(key).is_some_and(|&(o, _)| o == shard) {
            g.0.remove(key);
        }
    }

    /// Shard `shard`'s stream is applied on the target up to source offset `offset`.
    pub fn publish_applied(&self, shard: usize, offset: u64) {
        let mut g = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.entry(shard).or_default();
        *e = (*e).max(offset);
    }

    /// Shard `shard` starts over with a new snapshot: nothing of its new history is
    /// applied yet.
    pub fn restart(&self, shard: usize) {
        let mut g = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&shard);
    }

    /// The source offset up to which shard `shard`'s stream is applied (0: none yet, or
    /// still in its snapshot).
    pub fn applied(&self, shard: usize) -> u64 {
        let g = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&shard).copied().unwrap_or(0)
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
        g.imported(1, b"j");
        g.deleted_by_owner(1, b"j");
        assert!(!g.is_stale_delete(0, b"j"), "the record ended");
    }

    #[test]
    fn applied_offsets_only_grow_until_a_restart() {
        let g = MigrationGuard::new(vec![
            Endpoint::parse("redis://a:1").unwrap(),
            Endpoint::parse("redis://b:2").unwrap(),
            Endpoint::parse("redis://c:3").unwrap(),
        ]);
        g.publish_applied(0, 90);
        g.publish_applied(0, 80);
        assert_eq!(g.applied(0), 90);
        assert_eq!(g.applied(3), 0);
        g.restart(0);
        assert_eq!(g.applied(0), 0);
        let others: Vec<usize> = g.others(1).map(|(i, _)| i).collect();
        assert_eq!(others, vec![0, 2]);
        assert_eq!(g.source(2).map(|e| e.port), Some(3));
    }
}
