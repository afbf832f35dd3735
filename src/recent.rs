//! The keys the stream wrote lately, for `ferry cutover`'s verify step: blue is paused
//! while it runs, so it checks the keys changed in the last minutes rather than the whole
//! keyspace. Served as `GET /recent-keys?seconds=N` by the status server.
//!
//! Bounded by entries and by key bytes: the oldest go first. The answer says whether it is
//! `complete` for the window asked, i.e. nothing written inside the window was evicted and
//! no `FLUSHDB`/`FLUSHALL`/`SWAPDB` (whose keys are not listed) ran in it; a cutover falls
//! back to a whole-keyspace verify otherwise.

use std::collections::VecDeque;

use base64::Engine as _;

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 200_000;
/// Key bytes kept at most.
pub const MAX_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct RecentKeys {
    /// A stream records here (a status without one, e.g. a cluster source's top level,
    /// answers `complete: false`).
    pub enabled: bool,
    /// (unix ms, db, key), oldest first.
    entries: VecDeque<(i64, u32, Vec<u8>)>,
    bytes: usize,
    /// The newest time of an evicted entry (the list is complete after it).
    evicted_until: i64,
    /// The newest time of a command that changed keys it does not name.
    opaque_at: i64,
}

impl RecentKeys {
    pub fn record(&mut self, now_ms: i64, db: u32, key: &[u8]) {
        self.bytes += key.len();
        self.entries.push_back((now_ms, db, key.to_vec()));
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            let Some((t, _, k)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= k.len();
            self.evicted_until = self.evicted_until.max(t);
        }
    }

    /// A command that changed keys without naming them (a flush, `SWAPDB`, a command
    /// whose keys cannot be told).
    pub fn opaque(&mut self, now_ms: i64) {
        self.opaque_at = now_ms;
    }

    /// `{"complete": bool, "since_ms": …, "keys": [[db, "base64 key"], …]}`, each key
    /// once, for the writes at or after `since_ms`.
    pub fn since_json(&self, since_ms: i64) -> serde_json::Value {
        let mut seen = std::collections::HashSet::new();
        let mut keys = Vec::new();
        for (t, db, k) in self.entries.iter().rev() {
            if *t < since_ms {
                break;
            }
            if seen.insert((*db, k.as_slice())) {
                keys.push(serde_json::json!([
                    db,
                    base64::engine::general_purpose::STANDARD.encode(k)
                ]));
            }
        }
        serde_json::json!({
            "complete": self.enabled
                && self.evicted_until < since_ms
                && self.opaque_at < since_ms,
            "since_ms": since_ms,
            "keys": keys,
        })
    }
}

/// A key and its db.
pub type DbKey = (u32, Vec<u8>);

/// Parses [`RecentKeys::since_json`]'s answer: `(complete, [(db, key)])`.
pub fn parse(v: &serde_json::Value) -> Option<(bool, Vec<DbKey>)> {
    let complete = v["complete"].as_bool()?;
    let mut out = Vec::new();
    for k in v["keys"].as_array()? {
        let db = u32::try_from(k[0].as_u64()?).ok()?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(k[1].as_str()?)
            .ok()?;
        out.push((db, key));
    }
    Some((complete, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_key_of_the_window_once_and_says_when_it_is_incomplete() {
        let mut r = RecentKeys::default();
        assert!(!parse(&r.since_json(0)).expect("parses").0, "not enabled");
        r.enabled = true;
        r.record(100, 0, b"a");
        r.record(200, 0, b"b");
        r.record(300, 1, b"a");
        r.record(400, 0, b"b");
        let (complete, keys) = parse(&r.since_json(150)).expect("parses");
        assert!(complete);
        assert_eq!(keys, vec![(0, b"b".to_vec()), (1, b"a".to_vec())]);
        r.opaque(350);
        assert!(!parse(&r.since_json(150)).expect("parses").0);
        assert!(parse(&r.since_json(360)).expect("parses").0);
    }

    #[test]
    fn stays_within_its_bounds_and_knows_what_it_dropped() {
        let mut r = RecentKeys {
            enabled: true,
            ..Default::default()
        };
        for i in 0..(MAX_ENTRIES + 10) {
            r.record(i as i64, 0, b"k");
        }
        assert_eq!(r.entries.len(), MAX_ENTRIES);
        assert!(!parse(&r.since_json(5)).expect("parses").0);
        assert!(parse(&r.since_json(10)).expect("parses").0);
        let big = vec![0u8; MAX_BYTES / 2 + 1];
        r.record(1 << 40, 0, &big);
        r.record((1 << 40) + 1, 0, &big);
        assert!(r.bytes <= MAX_BYTES);
    }
}
