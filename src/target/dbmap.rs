//! Source db → target db and key prefix (`[transform] db_map`).
//!
//! A cluster has db 0 only; a source using dbs 0–15 can still go into one by mapping
//! each db to 0 with a prefix of its own (`db3:` makes db 3's `user:1` the target's
//! `db3:user:1`). Two source keys may then land on one target key: db 0's `db3:user:1`
//! and db 3's `user:1` above. [`Collision`] says what to do about mappings where that
//! can happen.

use std::collections::BTreeMap;

/// Where one source db goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRule {
    pub db: u32,
    pub prefix: Vec<u8>,
}

/// What to do with a mapping under which two source keys can become one target key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collision {
    /// Refuse to start, naming the dbs.
    #[default]
    Error,
    /// Start with a warning: the later write wins.
    Overwrite,
}

/// The mapping; a db without a rule keeps its number and gets no prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbMap {
    rules: BTreeMap<u32, DbRule>,
}

impl DbMap {
    pub fn new(rules: BTreeMap<u32, DbRule>) -> DbMap {
        DbMap { rules }
    }

    /// No rule changes anything.
    pub fn is_identity(&self) -> bool {
        self.rules
            .iter()
            .all(|(s, r)| r.db == *s && r.prefix.is_empty())
    }

    pub fn has_prefix(&self) -> bool {
        self.rules.values().any(|r| !r.prefix.is_empty())
    }

    pub fn has_rule(&self, db: u32) -> bool {
        self.rules.contains_key(&db)
    }

    /// Target db and prefix of source db `db`.
    pub fn map(&self, db: u32) -> (u32, &[u8]) {
        match self.rules.get(&db) {
            Some(r) => (r.db, &r.prefix),
            None => (db, &[]),
        }
    }

    /// The target name of a key of source db `db`.
    pub fn key(&self, db: u32, key: &[u8]) -> (u32, Option<Vec<u8>>) {
        let (t, p) = self.map(db);
        if p.is_empty() {
            (t, None)
        } else {
            (t, Some([p, key].concat()))
        }
    }

    /// Pairs of source dbs whose keys can meet on one target key: same target db, and
    /// one prefix is a prefix of the other (no prefix is a prefix of every name).
    /// `used`: the source dbs in play (dbs without a rule keep their number).
    pub fn collisions(&self, used: &[u32]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for (i, &a) in used.iter().enumerate() {
            for &b in &used[i + 1..] {
                let (ta, pa) = self.map(a);
                let (tb, pb) = self.map(b);
                if ta == tb && (pa.starts_with(pb) || pb.starts_with(pa)) {
                    out.push((a, b));
                }
            }
        }
        out
    }

    /// Parses a rule's text form `DB` or `DB:PREFIX` (for messages and the CLI).
    pub fn parse_rule(text: &str) -> Result<DbRule, String> {
        let (db, prefix) = match text.split_once(':') {
            Some((d, p)) => (d, p),
            None => (text, ""),
        };
        let db = db
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: expected DB or DB:PREFIX, e.g. \"0:db3:\""))?;
        Ok(DbRule {
            db,
            prefix: prefix.as_bytes().to_vec(),
        })
    }
}

/// The source dbs that hold keys, from the text of `INFO keyspace`.
pub fn used_dbs(keyspace: &str) -> Vec<u32> {
    keyspace
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok())
        .collect()
}

/// Checks at start: every used source db lands on db 0 of a cluster, and the mapping
/// has no collision unless the policy allows it. Messages name the option.
pub fn check_start(opts: &super::SinkOptions, keyspace: &str, cluster: bool) -> Result<(), String> {
    let used = used_dbs(keyspace);
    let map = &opts.db_map;
    if cluster {
        let bad: Vec<u32> = used
            .iter()
            .copied()
            .filter(|&d| map.map(d).0 != 0)
            .collect();
        if !bad.is_empty() {
            return Err(format!(
                "the source has keys in db {bad:?} and the target is a cluster (db 0 only): \
                 map them with [transform] db_map, e.g. db_map = {{ \"{}\" = \"0:db{}:\" }}",
                bad[0], bad[0]
            ));
        }
    }
    if !map.is_identity() {
        let c = map.collisions(&used);
        if !c.is_empty() {
            match opts.db_collision {
                Collision::Error => {
                    return Err(format!(
                        "[transform] db_map sends source dbs {c:?} to the same target db with \
                         overlapping prefixes, so two keys could become one; give them distinct \
                         prefixes or set [transform] db_collision = \"overwrite\""
                    ))
                }
                Collision::Overwrite => tracing::warn!(
                    pairs = ?c,
                    "db_map: keys of these source dbs may meet on one target key; the later write wins"
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_finds_collisions() {
        let mut r = BTreeMap::new();
        r.insert(3, DbMap::parse_rule("0:db3:").unwrap());
        r.insert(1, DbMap::parse_rule("0:db1:").unwrap());
        let m = DbMap::new(r);
        assert!(!m.is_identity());
        assert_eq!(m.key(3, b"user:1"), (0, Some(b"db3:user:1".to_vec())));
        assert_eq!(m.key(0, b"x"), (0, None));
        assert_eq!(m.map(5), (5, &b""[..]));
        // db 0 (no prefix) can meet db 1 and db 3; db 1 and db 3 cannot meet.
        assert_eq!(m.collisions(&[0, 1, 3]), vec![(0, 1), (0, 3)]);
        assert_eq!(m.collisions(&[1, 3]), vec![]);
        assert!(DbMap::parse_rule("x:y").is_err());
        assert_eq!(
            DbMap::parse_rule("2").unwrap(),
            DbRule {
                db: 2,
                prefix: vec![]
            }
        );
        assert!(DbMap::default().is_identity());
    }

    #[test]
    fn start_checks_name_the_option() {
        let ks =
            "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";
        assert_eq!(used_dbs(ks), vec![0, 3]);
        let mut o = crate::target::SinkOptions::default();
        let e = check_start(&o, ks, true).unwrap_err();
        assert!(e.contains("db_map") && e.contains("[3]"), "{e}");
        assert!(check_start(&o, ks, false).is_ok());
        let mut r = BTreeMap::new();
        r.insert(3, DbMap::parse_rule("0").unwrap());
        o.db_map = DbMap::new(r);
        let e = check_start(&o, ks, true).unwrap_err();
        assert!(e.contains("db_collision"), "{e}");
        o.db_collision = Collision::Overwrite;
        assert!(check_start(&o, ks, true).is_ok());
        let mut r = BTreeMap::new();
        r.insert(3, DbMap::parse_rule("0:db3:").unwrap());
        r.insert(0, DbMap::parse_rule("0:db0:").unwrap());
        o.db_map = DbMap::new(r);
        o.db_collision = Collision::Error;
        assert!(check_start(&o, ks, true).is_ok());
    }
}
