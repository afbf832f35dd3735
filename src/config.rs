//! The configuration file (TOML) and its defaults.
//!
//! Every key has a default, so a file holds only what differs. Unknown keys and bad
//! values are errors that name the file, the line and the key (toml's own messages).
//! String values may use `${VAR}` and `${VAR:-default}`, expanded from the environment,
//! so that passwords come from the environment or a file (`password_file`), never from
//! the command line.
//!
//! After parsing, [`Config::validate`] checks the values (ranges, URLs, addresses, files
//! that must exist); its messages name the file, the line and the key too. `ferry
//! check-config FILE` prints the effective config ([`Config::to_masked_toml`]) with every
//! password replaced by `***`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::endpoint::Endpoint;

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: EndpointConfig,
    pub target: EndpointConfig,
    pub sync: SyncSection,
    pub transform: TransformSection,
    pub status: StatusSection,
    pub log: LogSection,
    pub advanced: AdvancedSection,
}

#[derive(Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    /// `redis://[user[:password]@]host:port[/db]`
    #[serde(serialize_with = "ser_masked_url")]
    pub url: String,
    /// ACL user (overrides the URL's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (overrides the URL's); prefer `${ENV}` or `password_file`.
    #[serde(serialize_with = "ser_masked", skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file whose first line is the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `auto` (INFO `cluster_enabled`), `yes` or `no`. A cluster source is read with one
    /// replica link per master; a cluster target is written by slot.
    pub cluster: ClusterCfg,
    /// TLS options; `rediss://` in the URL (or `enabled = true`) turns TLS on.
    pub tls: TlsSection,
}

/// `[source.tls]` / `[target.tls]`.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// TLS even with a `redis://` URL.
    pub enabled: bool,
    /// PEM file of the CA(s) that signed the server's certificate; default: the system's
    /// roots are not loaded, so set this unless `insecure_skip_verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM, chain allowed) for servers with `tls-auth-clients yes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Name checked against the server's certificate (default: the URL's host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate (logs a warning). For tests only.
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClusterCfg {
    #[default]
    Auto,
    Yes,
    No,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DbCollisionCfg {
    #[default]
    Error,
    Overwrite,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CrossSlotCfg {
    #[default]
    Split,
    Skip,
    Stop,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &"…")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("cluster", &self.cluster)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// Exit once the snapshot is applied and the stream caught up with the source's
    /// offset at the snapshot's end.
    pub once: bool,
    /// Where the replica link spills what the target cannot take yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// Largest spool on disk, bytes.
    pub spool_cap: u64,
    /// Bytes of source data kept in memory before spilling.
    pub memory_queue: usize,
    /// Commands in flight per target connection.
    pub window_cmds: usize,
    /// Bytes in flight per target connection.
    pub window_bytes: usize,
    /// REPLCONF version announced to the source.
    pub announce_version: String,
    /// Seconds between heartbeat writes on the source (0 = off): ferry sets
    /// `heartbeat_key` to the current time in ms and measures when it is applied on the
    /// target (`lag_seconds`). Off by default: it writes to the source.
    pub heartbeat_interval: f64,
    /// The heartbeat key (a string, with an expiry of 10 intervals).
    pub heartbeat_key: String,
    /// Sets the source's `rdbcompression` to `no` from just before ferry's `PSYNC` until
    /// the source has forked for it (`+FULLRESYNC`), then back to `yes`: a snapshot of
    /// incompressible values costs the source a quarter of the CPU. Off by default: it
    /// changes the source's configuration (and needs `CONFIG`).
    pub uncompressed_snapshot: bool,
    /// Seconds SIGTERM/SIGINT may spend draining what is in flight before ferry exits.
    pub drain_timeout: f64,
    /// A file where a clean stop saves its resume point, taken by the next start
    /// (`PSYNC <replid> <offset+1>` instead of a full resync).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            once: false,
            spool_dir: None,
            spool_cap: crate::source::replica::DEFAULT_SPOOL_CAP,
            memory_queue: crate::source::replica::DEFAULT_MEMORY_QUEUE,
            window_cmds: crate::target::writer::DEFAULT_WINDOW_CMDS,
            window_bytes: crate::target::writer::DEFAULT_WINDOW_BYTES,
            announce_version: crate::source::replica::DEFAULT_ANNOUNCE_VERSION.into(),
            heartbeat_interval: 0.0,
            heartbeat_key: DEFAULT_HEARTBEAT_KEY.into(),
            uncompressed_snapshot: false,
            drain_timeout: 30.0,
            checkpoint: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueModeCfg {
    #[default]
    Auto,
    Restore,
    Commands,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConflictCfg {
    #[default]
    Replace,
    Skip,
    Error,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformSection {
    /// auto: RESTORE when the target accepts the value, commands otherwise.
    pub value_mode: ValueModeCfg,
    /// What to do with a key that already exists on the target.
    pub conflict: ConflictCfg,
    pub batch_elems: usize,
    pub batch_bytes: usize,
    /// Largest value sent as one RESTORE.
    pub restore_max: usize,
    /// Source db → `"DB"` or `"DB:PREFIX"` on the target (keys: source db numbers).
    pub db_map: std::collections::BTreeMap<String, String>,
    /// Two source keys that the mapping could make one target key: error | overwrite.
    pub db_collision: DbCollisionCfg,
    /// Cluster target, keys of one command in several slots: split | skip | stop.
    pub cross_slot: CrossSlotCfg,
}

impl Default for TransformSection {
    /// The rewriter's own defaults, so there is one source of truth.
    fn default() -> Self {
        let r = crate::transform::RewriteConfig::default();
        TransformSection {
            value_mode: ValueModeCfg::Auto,
            conflict: ConflictCfg::Replace,
            batch_elems: r.batch_elems,
            batch_bytes: r.batch_bytes,
            restore_max: r.restore_max,
            db_map: Default::default(),
            db_collision: DbCollisionCfg::Error,
            cross_slot: CrossSlotCfg::Split,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSection {
    /// `127.0.0.1:PORT` to serve /status, /metrics, /healthz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Seconds the source link may be down, or the target silent with commands in
    /// flight, before `/healthz` answers 503.
    pub healthz_timeout: f64,
}

impl Default for StatusSection {
    fn default() -> Self {
        StatusSection {
            listen: None,
            healthz_timeout: 30.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatCfg {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: LogFormatCfg,
    /// tracing filter, e.g. `info` or `ferry=debug`.
    pub level: String,
    /// Seconds between progress lines.
    pub progress_interval: f64,
    /// Log to this file (appended; reopened on SIGHUP for logrotate) instead of stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// A progress bar for the snapshot when standard error is a terminal (text format).
    pub progress_bar: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormatCfg::Text,
            level: "info".into(),
            progress_interval: 10.0,
            file: None,
            progress_bar: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvancedSection {
    /// Strings above this stream through in chunks.
    pub chunk_threshold: usize,
    /// Largest element held whole (keys, fields, members, compact blobs, one command).
    pub max_element: usize,
    pub connect_timeout_ms: u64,
    /// How often a cluster target's slot map is read again, milliseconds.
    pub cluster_refresh_ms: u64,
    /// Worker threads of `sync`, `reverse` and `cutover`: 1 runs everything on one thread
    /// (the fastest where ferry shares a few cores with the servers), 0 one per core.
    pub threads: usize,
}

impl Default for AdvancedSection {
    fn default() -> Self {
        AdvancedSection {
            chunk_threshold: 1 << 20,
            max_element: 512 << 20,
            connect_timeout_ms: crate::source::replica::DEFAULT_CONNECT_TIMEOUT.as_millis() as u64,
            cluster_refresh_ms: 1_000,
            threads: 1,
        }
    }
}

/// The heartbeat key when `[sync] heartbeat_key` is not set.
pub const DEFAULT_HEARTBEAT_KEY: &str = "ferry:heartbeat";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

/// A bad value found by [`Config::validate`]: the section, the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `source`, `source.tls`, `sync`, …
    pub section: String,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.section, self.key, self.message)
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text and validates it; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: name.to_string(),
            message,
        };
        // First pass straight from the text: its errors carry the line and the key.
        toml::from_str::<Config>(text).map_err(|e| invalid(e.to_string()))?;
        // Second pass through a value tree, to expand the environment in strings.
        let mut value: toml::Value = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        expand_env(&mut value, text, "").map_err(invalid)?;
        let cfg: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        cfg.validate().map_err(|p| {
            let at = match line_of(text, &p.section, &p.key) {
                Some(n) => format!("line {n}: "),
                None => String::new(),
            };
            invalid(format!("{at}{p}"))
        })?;
        Ok(cfg)
    }

    /// Checks every value whose type alone does not say it is usable. Run again after the
    /// command line has changed the config.
    pub fn validate(&self) -> Result<(), Problem> {
        let bad = |section: &str, key: &str, message: String| {
            Err(Problem {
                section: section.into(),
                key: key.into(),
                message,
            })
        };
        for (name, e) in [("source", &self.source), ("target", &self.target)] {
            if !e.url.is_empty() {
                if let Err(err) = Endpoint::parse(&e.url) {
                    return bad(name, "url", err.reason);
                }
            }
            if e.password.is_some() && e.password_file.is_some() {
                return bad(
                    name,
                    "password_file",
                    "give either password or password_file, not both".into(),
                );
            }
            if let Some(f) = &e.password_file {
                if let Err(err) = std::fs::metadata(f) {
                    return bad(name, "password_file", format!("{}: {err}", f.display()));
                }
            }
            let tls = format!("{name}.tls");
            for (key, f) in [
                ("ca_file", &e.tls.ca_file),
                ("cert_file", &e.tls.cert_file),
                ("key_file", &e.tls.key_file),
            ] {
                if let Some(f) = f {
                    if let Err(err) = std::fs::metadata(f) {
                        return bad(&tls, key, format!("{}: {err}", f.display()));
                    }
                }
            }
            if e.tls.cert_file.is_some() != e.tls.key_file.is_some() {
                return bad(
                    &tls,
                    if e.tls.cert_file.is_some() {
                        "key_file"
                    } else {
                        "cert_file"
                    },
                    "a client certificate needs both cert_file and key_file".into(),
                );
            }
            if let Some(n) = &e.tls.server_name {
                if rustls_pki_types::ServerName::try_from(n.as_str()).is_err() {
                    return bad(
                        &tls,
                        "server_name",
                        format!("`{n}` is not a DNS name or an IP address"),
                    );
                }
            }
        }
        let positive = [
            ("sync", "spool_cap", self.sync.spool_cap as f64),
            ("sync", "memory_queue", self.sync.memory_queue as f64),
            ("sync", "window_cmds", self.sync.window_cmds as f64),
            ("sync", "window_bytes", self.sync.window_bytes as f64),
            (
                "transform",
                "batch_elems",
                self.transform.batch_elems as f64,
            ),
            (
                "transform",
                "batch_bytes",
                self.transform.batch_bytes as f64,
            ),
            (
                "transform",
                "restore_max",
                self.transform.restore_max as f64,
            ),
            ("status", "healthz_timeout", self.status.healthz_timeout),
            ("log", "progress_interval", self.log.progress_interval),
            (
                "advanced",
                "chunk_threshold",
                self.advanced.chunk_threshold as f64,
            ),
            ("advanced", "max_element", self.advanced.max_element as f64),
            (
                "advanced",
                "connect_timeout_ms",
                self.advanced.connect_timeout_ms as f64,
            ),
        ];
        for (section, key, v) in positive {
            if !v.is_finite() || v <= 0.0 {
                return bad(section, key, format!("must be a positive number, not {v}"));
            }
        }
        for (key, v) in [
            ("heartbeat_interval", self.sync.heartbeat_interval),
            ("drain_timeout", self.sync.drain_timeout),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(
                    "sync",
                    key,
                    format!("must be 0 or a positive number of seconds, not {v}"),
                );
            }
        }
        if self.sync.heartbeat_key.is_empty() {
            return bad("sync", "heartbeat_key", "must not be empty".into());
        }
        if self.sync.announce_version.is_empty() {
            return bad("sync", "announce_version", "must not be empty".into());
        }
        if let Some(l) = &self.status.listen {
            if let Err(e) = l.parse::<std::net::SocketAddr>() {
                return bad(
                    "status",
                    "listen",
                    format!("`{l}` is not an address like 127.0.0.1:9121 ({e})"),
                );
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return bad(
                "log",
                "level",
                format!("`{}` is not a tracing filter: {e}", self.log.level),
            );
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.advanced.connect_timeout_ms)
    }

    /// `[transform] db_map` checked and parsed; errors name the key.
    pub fn db_map(&self) -> Result<crate::target::dbmap::DbMap, String> {
        let mut rules = std::collections::BTreeMap::new();
        for (k, v) in &self.transform.db_map {
            let db: u32 = k
                .trim()
                .parse()
                .map_err(|_| format!("[transform] db_map: key `{k}` is not a source db number"))?;
            let rule = crate::target::dbmap::DbMap::parse_rule(v)
                .map_err(|e| format!("[transform] db_map.{k}: {e}"))?;
            rules.insert(db, rule);
        }
        Ok(crate::target::dbmap::DbMap::new(rules))
    }

    /// Whether the source is read as a cluster (`None`: as INFO says).
    pub fn source_cluster(&self) -> Option<bool> {
        match self.source.cluster {
            ClusterCfg::Auto => None,
            ClusterCfg::Yes => Some(true),
            ClusterCfg::No => Some(false),
        }
    }

    /// The sink settings: cluster mode and routing, db mapping.
    pub fn sink_options(&self) -> Result<crate::target::SinkOptions, String> {
        use crate::target::cluster::{ClusterOptions, CrossSlot};
        use crate::target::dbmap::Collision;
        if self.advanced.cluster_refresh_ms == 0 {
            return Err("[advanced] cluster_refresh_ms must be at least 1".into());
        }
        Ok(crate::target::SinkOptions {
            cluster: match self.target.cluster {
                ClusterCfg::Auto => crate::target::ClusterMode::Auto,
                ClusterCfg::Yes => crate::target::ClusterMode::Yes,
                ClusterCfg::No => crate::target::ClusterMode::No,
            },
            cluster_opts: ClusterOptions {
                cross_slot: match self.transform.cross_slot {
                    CrossSlotCfg::Split => CrossSlot::Split,
                    CrossSlotCfg::Skip => CrossSlot::Skip,
                    CrossSlotCfg::Stop => CrossSlot::Stop,
                },
                refresh_interval: Duration::from_millis(self.advanced.cluster_refresh_ms),
                ..Default::default()
            },
            db_map: self.db_map()?,
            db_collision: match self.transform.db_collision {
                DbCollisionCfg::Error => Collision::Error,
                DbCollisionCfg::Overwrite => Collision::Overwrite,
            },
            shard: None,
        })
    }
    /// The effective config as TOML, every password replaced by `***` (in `password` and
    /// in URLs). Keys left unset (no default) are not shown.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
    }
}

fn ser_masked<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}

fn ser_masked_url<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(v))
}

/// `redis://user:***@host:port`: the URL with its password masked.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL: it may hold a password in a form we do not know; show nothing of it.
        Err(_) if url.contains('@') => "***".into(),
        Err(_) => url.to_string(),
    }
}

/// The 1-based line where `key` is set in `[section]`, or else the line of the section's
/// header (for a key that is missing), by a plain scan of the text (the file is valid TOML
/// by then; dotted keys and inline tables are not searched).
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut header = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h.split(']').next().unwrap_or_default().trim().to_string();
            if current == section {
                header = Some(i + 1);
            }
            continue;
        }
        if current == section {
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(i + 1);
                }
            }
        }
    }
    header
}

impl EndpointConfig {
    /// The endpoint with the user and password from the config applied.
    pub fn endpoint(&self, what: &str) -> Result<Endpoint, String> {
        if self.url.is_empty() {
            return Err(format!("[{what}] url is missing"));
        }
        let mut e = Endpoint::parse(&self.url).map_err(|e| format!("[{what}] url: {e}"))?;
        e.tls |= self.tls.enabled;
        e.tls_options = crate::net::TlsOptions {
            enabled: self.tls.enabled,
            ca_file: self.tls.ca_file.clone(),
            cert_file: self.tls.cert_file.clone(),
            key_file: self.tls.key_file.clone(),
            server_name: self.tls.server_name.clone(),
            insecure_skip_verify: self.tls.insecure_skip_verify,
        };
        if let Some(u) = &self.user {
            e.user = Some(u.clone());
        }
        if let Some(p) = &self.password {
            e.password = Some(p.clone());
        }
        if let Some(f) = &self.password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|err| format!("[{what}] password_file {}: {err}", f.display()))?;
            e.password = Some(text.lines().next().unwrap_or_default().to_string());
        }
        Ok(e)
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in every string value; errors name the key
/// (and its line in `text`).
fn expand_env(v: &mut toml::Value, text: &str, path: &str) -> Result<(), String> {
    match v {
        toml::Value::String(s) => {
            *s = expand_str(s).map_err(|e| {
                let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
                match line_of(text, section, key) {
                    Some(n) => format!("line {n}: [{section}] {key}: {e}"),
                    None => format!("[{section}] {key}: {e}"),
                }
            })?
        }
        toml::Value::Array(a) => a.iter_mut().try_for_each(|v| expand_env(v, text, path))?,
        toml::Value::Table(t) => t.iter_mut().try_for_each(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            expand_env(v, text, &p)
        })?,
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in {s:?}"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) => out.push_str(&v),
            (Err(_), Some(d)) => out.push_str(d),
            (Err(_), None) => {
                return Err(format!(
                    "environment variable {name} is not set (used as ${{{name}}})"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_unknown_keys_and_env() {
        let c = Config::parse("[source]\nurl = \"redis://a:1\"\n", "t.toml").unwrap();
        assert_eq!(c.sync.window_cmds, 512);
        let e = Config::parse("[sync]\nwindow_cmd = 3\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml") && e.contains("window_cmd") && e.contains("line 2"),
            "{e}"
        );
        std::env::set_var("FERRY_TEST_PW", "pw1");
        let c = Config::parse("[source]\nurl = \"redis://h:1\"\npassword = \"${FERRY_TEST_PW}\"\n[target]\nurl = \"${FERRY_NOPE:-redis://t:2}\"\n", "t").unwrap();
        assert_eq!(c.source.password.as_deref(), Some("pw1"));
        assert_eq!(c.target.url, "redis://t:2");
        assert!(!format!("{c:?}").contains("pw1"));
        let e = Config::parse("[target]\nurl = \"${FERRY_NOPE}\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("FERRY_NOPE"), "{e}");
    }

    #[test]
    fn db_map_and_cluster_keys_are_validated() {
        let c = Config::parse(
            "[target]\ncluster = \"yes\"\n[transform]\ndb_map = { \"3\" = \"0:db3:\", \"0\" = \"0\" }\ncross_slot = \"stop\"\n",
            "t",
        )
        .unwrap();
        let o = c.sink_options().unwrap();
        assert_eq!(o.db_map.key(3, b"k"), (0, Some(b"db3:k".to_vec())));
        assert_eq!(o.cluster, crate::target::ClusterMode::Yes);
        let c = Config::parse("[transform]\ndb_map = { \"x\" = \"0\" }\n", "t").unwrap();
        assert!(c.sink_options().unwrap_err().contains("db_map"));
        let c = Config::parse("[transform]\ndb_map = { \"1\" = \"zero\" }\n", "t").unwrap();
        assert!(c.sink_options().unwrap_err().contains("db_map.1"));
        assert!(Config::parse("[transform]\ncross_slot = \"maybe\"\n", "t").is_err());
        assert!(Config::parse("[target]\ncluster = \"perhaps\"\n", "t").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The documented example holds every key with its default: it must parse and agree
    /// with the code's defaults.
    #[test]
    fn the_example_config_is_valid_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ferry.toml");
        let c = Config::load(&path).expect("config/ferry.toml parses");
        let d = Config::default();
        // Every value but the two URLs is the default.
        let mut cv = toml::Value::try_from(&c).unwrap();
        let mut dv = toml::Value::try_from(&d).unwrap();
        for v in [&mut cv, &mut dv] {
            for side in ["source", "target"] {
                v[side].as_table_mut().unwrap().remove("url");
            }
        }
        assert_eq!(
            cv, dv,
            "config/ferry.toml shows a value that is not the default"
        );
        // Every key (set or commented out) is documented in it.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut full = Config::default();
        full.source.user = Some("u".into());
        full.source.password = Some("p".into());
        full.source.password_file = Some("f".into());
        full.source.tls.ca_file = Some("f".into());
        full.source.tls.cert_file = Some("f".into());
        full.source.tls.key_file = Some("f".into());
        full.source.tls.server_name = Some("n".into());
        full.sync.spool_dir = Some("d".into());
        full.status.listen = Some("a".into());
        full.log.file = Some("f".into());
        let v = toml::Value::try_from(&full).unwrap();
        for (section, table) in v.as_table().unwrap() {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] missing"
            );
            for (key, value) in table.as_table().unwrap() {
                let inline = text.contains(&format!("\n{key} = {{"));
                if let Some(sub) = value.as_table().filter(|_| !inline) {
                    assert!(
                        text.contains(&format!("[{section}.{key}]")),
                        "[{section}.{key}] missing"
                    );
                    for k in sub.keys() {
                        assert!(
                            text.contains(&format!("\n{k} ="))
                                || text.contains(&format!("# {k} =")),
                            "{section}.{key}.{k} missing"
                        );
                    }
                } else {
                    assert!(
                        text.contains(&format!("\n{key} ="))
                            || text.contains(&format!("# {key} =")),
                        "{section}.{key} missing"
                    );
                }
            }
        }
        assert!(c.sink_options().is_ok());
    }
}
