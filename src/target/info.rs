//! What a target server is and can do, read once at connect.
//!
//! Valkey forked from Redis 7.2.4 and still reports `redis_version:7.2.4`, so for the
//! commands Redis added up to 7.2 a Valkey answers like Redis 7.2; what the two projects
//! added separately after the fork (hash field TTLs) is asked per family.

use crate::rdb::dump::RestoreTarget;

/// Identity and limits of a target server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// A Valkey (`server_name:valkey`), not a Redis.
    pub valkey: bool,
    /// The release: `valkey_version` for Valkey, `redis_version` for Redis.
    pub version: (u32, u32, u32),
    /// `proto-max-bulk-len`: the longest argument the server accepts.
    pub proto_max_bulk_len: u64,
    /// `cluster_enabled:1`.
    pub cluster: bool,
    /// Which RESTORE payloads it loads.
    pub restore: RestoreTarget,
}

/// The default `proto-max-bulk-len`, and the fixed limit of servers older than 4.0.
pub const DEFAULT_PROTO_MAX_BULK_LEN: u64 = 512 << 20;

impl ServerInfo {
    /// A server of this family and release, with default limits (for tests and for
    /// planning against a target that is not reachable yet).
    pub fn new(valkey: bool, version: (u32, u32, u32)) -> ServerInfo {
        ServerInfo {
            valkey,
            version,
            proto_max_bulk_len: DEFAULT_PROTO_MAX_BULK_LEN,
            cluster: false,
            restore: RestoreTarget::for_server(valkey, version),
        }
    }

    /// From the text of `INFO server` (and optionally more sections: `cluster_enabled`
    /// is read when present). `None` when it names no version.
    pub fn from_info(text: &str) -> Option<ServerInfo> {
        let field = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let valkey = field("server_name") == Some("valkey") || field("valkey_version").is_some();
        let version_text = if valkey {
            field("valkey_version").or_else(|| field("redis_version"))
        } else {
            field("redis_version")
        }?;
        let version = parse_version(version_text)?;
        let mut info = ServerInfo::new(valkey, version);
        info.cluster = field("cluster_enabled") == Some("1");
        Some(info)
    }

    /// `redis-7.4.1`, `valkey-9.1.2`: for messages.
    pub fn name(&self) -> String {
        let (a, b, c) = self.version;
        let family = if self.valkey { "valkey" } else { "redis" };
        format!("{family}-{a}.{b}.{c}")
    }

    /// The Redis release whose command set this server has (a Valkey: 7.2).
    fn redis_compat(&self) -> (u32, u32) {
        if self.valkey {
            (7, 2)
        } else {
            (self.version.0, self.version.1)
        }
    }

    /// At least Redis `major.minor`, or a Valkey (which has everything up to Redis 7.2).
    pub fn redis_at_least(&self, major: u32, minor: u32) -> bool {
        self.redis_compat() >= (major, minor)
    }

    /// `RESTORE … REPLACE` (3.0+).
    pub fn has_restore_replace(&self) -> bool {
        self.redis_at_least(3, 0)
    }

    /// `SET … PXAT` / `EXAT` (6.2+).
    pub fn has_set_pxat(&self) -> bool {
        self.redis_at_least(6, 2)
    }

    /// `RESTORE … ABSTTL` (5.0+).
    pub fn has_abs_ttl(&self) -> bool {
        self.redis_at_least(5, 0)
    }

    /// `HSET key f v f v …` (4.0+); older servers need `HMSET`.
    pub fn has_variadic_hset(&self) -> bool {
        self.redis_at_least(4, 0)
    }

    /// Streams and consumer groups (5.0+).
    pub fn has_streams(&self) -> bool {
        self.redis_at_least(5, 0)
    }

    /// `XGROUP CREATECONSUMER` (6.2+).
    pub fn has_create_consumer(&self) -> bool {
        self.redis_at_least(6, 2)
    }

    /// `XSETID … ENTRIESADDED … MAXDELETEDID`, `XGROUP CREATE … ENTRIESREAD` (7.0+).
    pub fn has_stream_counters(&self) -> bool {
        self.redis_at_least(7, 0)
    }

    /// `FUNCTION LOAD` (Redis 7.0+, every Valkey).
    pub fn has_functions(&self) -> bool {
        self.redis_at_least(7, 0)
    }

    /// Hash field expiration, `HPEXPIREAT` (Redis 7.4+, Valkey 9.0+).
    pub fn has_hash_field_ttl(&self) -> bool {
        if self.valkey {
            self.version >= (9, 0, 0)
        } else {
            self.version >= (7, 4, 0)
        }
    }
}

/// `"7.4.1"` → `(7, 4, 1)`; a missing patch level is 0; trailing text after a number
/// (`"255.255.255-rc1"`) is ignored.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_families_from_info() {
        let redis = "# Server\r\nredis_version:7.4.1\r\nredis_mode:standalone\r\n";
        let i = ServerInfo::from_info(redis).expect("redis");
        assert_eq!((i.valkey, i.version, i.cluster), (false, (7, 4, 1), false));
        assert!(i.has_hash_field_ttl() && i.has_functions());

        let valkey = "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\n\
                      cluster_enabled:1\r\n";
        let v = ServerInfo::from_info(valkey).expect("valkey");
        assert_eq!((v.valkey, v.version, v.cluster), (true, (8, 1, 8), true));
        assert!(!v.has_hash_field_ttl() && v.has_create_consumer());
        assert_eq!(v.name(), "valkey-8.1.8");

        let old = ServerInfo::from_info("redis_version:3.0.5\n").expect("3.0");
        assert!(old.has_restore_replace() && !old.has_abs_ttl() && !old.has_variadic_hset());
        assert!(ServerInfo::from_info("nothing here").is_none());
    }
}
