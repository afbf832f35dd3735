//! Where the real Redis / Valkey builds are, and what each of them can do.
//!
//! `scripts/servers.sh` installs them into a cache directory: `bin/<flavor>-<major.minor>`
//! links plus `servers.tsv` (`NAME<TAB>PATH<TAB>VERSION` per link). The tests read the cache
//! named by `FERRY_SERVERS`, or the installer's default `$HOME/.cache/ferry/servers`.

use std::env;
use std::fmt;
use std::fs;
use std::path::PathBuf;

/// The major.minor lines `scripts/servers.sh` installs. A test that wants "every version"
/// uses [`installed_servers`]; this list is how a missing install gets noticed.
pub const CATALOGUE: &[&str] = &[
    "redis-3.0",
    "redis-3.2",
    "redis-5.0",
    "redis-6.0",
    "redis-6.2",
    "redis-7.0",
    "redis-7.2",
    "redis-7.4",
    "redis-8.2",
    "valkey-8.0",
    "valkey-8.1",
    "valkey-9.0",
    "valkey-9.1",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavor {
    Redis,
    Valkey,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Redis => "redis",
            Flavor::Valkey => "valkey",
        }
    }
}

/// One installed server line (`redis-7.2`, `valkey-9.1`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The alias link name, `<flavor>-<major.minor>`.
    pub name: String,
    /// The executable to run (`CACHE/bin/<name>`; may be a wrapper script that `exec`s).
    pub path: PathBuf,
    /// The full version the binary reports (`--version`), e.g. `(7, 4, 1)`.
    pub version: (u32, u32, u32),
    pub flavor: Flavor,
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = self.version;
        write!(f, "{} ({a}.{b}.{c})", self.name)
    }
}

/// Feature questions. Valkey forked from Redis 7.2.4 and reports `redis_version:7.2.4`, so
/// for everything Redis introduced up to 7.2 a Valkey build answers like Redis 7.2; features
/// the two projects added separately after the fork are asked per flavor.
impl ServerSpec {
    /// The Redis release whose feature set this server has (Valkey: 7.2).
    pub fn redis_compat(&self) -> (u32, u32) {
        match self.flavor {
            Flavor::Redis => (self.version.0, self.version.1),
            Flavor::Valkey => (7, 2),
        }
    }

    /// At least Redis `major.minor`, or a Valkey (which has everything up to Redis 7.2).
    pub fn redis_at_least(&self, major: u32, minor: u32) -> bool {
        self.redis_compat() >= (major, minor)
    }

    pub fn is_valkey(&self) -> bool {
        self.flavor == Flavor::Valkey
    }

    /// `protected-mode` exists (3.2+); older servers refuse the unknown option.
    pub fn has_protected_mode(&self) -> bool {
        self.redis_at_least(3, 2)
    }

    /// Lists are quicklists (3.2+) instead of ziplist / linkedlist.
    pub fn has_quicklist(&self) -> bool {
        self.redis_at_least(3, 2)
    }

    /// `HSET key f v f v ...` (4.0+); older servers need `HMSET`.
    pub fn has_variadic_hset(&self) -> bool {
        self.redis_at_least(4, 0)
    }

    /// Streams, consumer groups, `XGROUP CREATE ... MKSTREAM` (5.0+).
    pub fn has_streams(&self) -> bool {
        self.redis_at_least(5, 0)
    }

    /// `XGROUP CREATECONSUMER` (6.2+).
    pub fn has_create_consumer(&self) -> bool {
        self.redis_at_least(6, 2)
    }

    /// 7.0+: listpack replaces ziplist; `PEXPIRETIME`; `FUNCTION`; stream `entries-added`,
    /// `max-deleted-entry-id` and group `entries-read`; `DEBUG` needs `enable-debug-command`;
    /// quicklist PLAIN nodes.
    pub fn is_7_0_plus(&self) -> bool {
        self.redis_at_least(7, 0)
    }

    pub fn has_listpack(&self) -> bool {
        self.is_7_0_plus()
    }

    pub fn has_pexpiretime(&self) -> bool {
        self.is_7_0_plus()
    }

    pub fn has_functions(&self) -> bool {
        self.is_7_0_plus()
    }

    pub fn has_stream_counters(&self) -> bool {
        self.is_7_0_plus()
    }

    pub fn needs_enable_debug_command(&self) -> bool {
        self.is_7_0_plus()
    }

    /// Small lists and small sets of strings are listpacks (7.2+).
    pub fn has_listpack_lists_and_sets(&self) -> bool {
        self.redis_at_least(7, 2)
    }

    /// Hash field expiration: `HPEXPIREAT`, `HPEXPIRETIME` (Redis 7.4+, Valkey 9.0+).
    pub fn has_hash_field_ttl(&self) -> bool {
        match self.flavor {
            Flavor::Redis => self.version >= (7, 4, 0),
            Flavor::Valkey => self.version >= (9, 0, 0),
        }
    }
}

/// The server cache: `FERRY_SERVERS`, else `$HOME/.cache/ferry/servers` (the installer's default).
pub fn cache_dir() -> PathBuf {
    match env::var_os("FERRY_SERVERS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache/ferry/servers")
        }
    }
}

/// `CACHE/bin/<name>` when it exists (`redis-7.2`, `valkey-9.1`, `redis-6.2.5`, `redis-cli`).
pub fn server_bin(name: &str) -> Option<PathBuf> {
    let path = cache_dir().join("bin").join(name);
    // metadata() follows the links, so a dangling link counts as missing.
    fs::metadata(&path)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| path)
}

/// Every installed major.minor line, Redis first, oldest first. Reads `servers.tsv` and keeps
/// only the alias entries (`redis-7.2`, not `redis-7.2.4`) whose binary is present.
pub fn installed_servers() -> Vec<ServerSpec> {
    let tsv = cache_dir().join("servers.tsv");
    let Ok(text) = fs::read_to_string(&tsv) else {
        return Vec::new();
    };
    let mut specs: Vec<ServerSpec> = text.lines().filter_map(parse_tsv_line).collect();
    specs.sort_by_key(|s| (s.flavor, s.version));
    specs.dedup_by(|a, b| a.name == b.name);
    specs
}

fn parse_tsv_line(line: &str) -> Option<ServerSpec> {
    let mut cols = line.split('\t');
    let (name, _path, version) = (cols.next()?, cols.next()?, cols.next()?);
    let (flavor_name, line_version) = name.split_once('-')?;
    let flavor = match flavor_name {
        "redis" => Flavor::Redis,
        "valkey" => Flavor::Valkey,
        _ => return None,
    };
    // Alias entries are exactly `<flavor>-<major>.<minor>`.
    let mut parts = line_version.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || major.parse::<u32>().is_err() || minor.parse::<u32>().is_err() {
        return None;
    }
    let version = parse_version(version.trim())?;
    // The installer's paths are absolute at install time; resolve through this cache instead
    // so that a cache that was moved or copied still works.
    let path = server_bin(name)?;
    Some(ServerSpec {
        name: name.to_string(),
        path,
        version,
        flavor,
    })
}

/// `"7.4.1"` -> `(7, 4, 1)`; a missing patch level is 0.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut it = text.split('.').map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next()?.ok()?;
    let patch = match it.next() {
        Some(p) => p.ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

/// True when `FERRY_ALLOW_MISSING_SERVERS=1`: tests skip (with a message) instead of failing
/// when a server is not installed.
pub fn missing_servers_allowed() -> bool {
    env::var("FERRY_ALLOW_MISSING_SERVERS").is_ok_and(|v| v == "1")
}

/// How to install what is missing, for failure messages.
pub fn install_hint(names: &[&str]) -> String {
    // Naming a few servers installs only those; for many, the plain command is clearer.
    let names: String = if names.len() <= 3 {
        names.iter().map(|n| format!(" {n}")).collect()
    } else {
        String::new()
    };
    format!(
        "install them with `scripts/servers.sh {}{names}` (FERRY_SERVERS selects the cache, \
         default ~/.cache/ferry/servers), or set FERRY_ALLOW_MISSING_SERVERS=1 to skip the tests \
         whose server is missing",
        cache_dir().display(),
    )
}

/// The installed server `name` (`redis-7.2`). When it is missing this panics with the command
/// that installs it, unless `FERRY_ALLOW_MISSING_SERVERS=1`: then it prints why the caller
/// skips and returns `None`.
pub fn require_server(name: &str) -> Option<ServerSpec> {
    super::watchdog::start_clock();
    if let Some(spec) = installed_servers().into_iter().find(|s| s.name == name) {
        return Some(spec);
    }
    if missing_servers_allowed() {
        eprintln!("SKIP: server {name} is not installed (FERRY_ALLOW_MISSING_SERVERS=1)");
        return None;
    }
    panic!("server {name} is not installed: {}", install_hint(&[name]));
}

/// Every installed server, or a panic with the install command when there is none at all
/// (an empty list with `FERRY_ALLOW_MISSING_SERVERS=1`).
pub fn require_any_servers() -> Vec<ServerSpec> {
    super::watchdog::start_clock();
    let specs = installed_servers();
    if specs.is_empty() {
        if missing_servers_allowed() {
            eprintln!("SKIP: no test server is installed (FERRY_ALLOW_MISSING_SERVERS=1)");
        } else {
            panic!("no test server is installed: {}", install_hint(&[]));
        }
    }
    specs
}
