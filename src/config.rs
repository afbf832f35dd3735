//! The configuration file (TOML) and its defaults.
//!
//! Every key has a default, so a file holds only what differs. Unknown keys and bad
//! values are errors that name the file, the line and the key (toml's own messages).
//! String values may use `${VAR}` and `${VAR:-default}`, expanded from the environment,
//! so that passwords come from the environment or a file (`password_file`), never from
//! the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::endpoint::Endpoint;

#[derive(Debug, Clone, Deserialize, Default)]
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

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    /// `redis://[user[:password]@]host:port[/db]`
    pub url: String,
    /// ACL user (overrides the URL's).
    pub user: Option<String>,
    /// Password (overrides the URL's); prefer `${ENV}` or `password_file`.
    pub password: Option<String>,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// `auto` (INFO `cluster_enabled`), `yes` or `no`. A cluster source is read with one
    /// replica link per master; a cluster target is written by slot.
    pub cluster: ClusterCfg,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClusterCfg {
    #[default]
    Auto,
    Yes,
    No,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DbCollisionCfg {
    #[default]
    Error,
    Overwrite,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
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
            .field("cluster", &self.cluster)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// Exit once the snapshot is applied and the stream caught up with the source's
    /// offset at the snapshot's end.
    pub once: bool,
    /// Where the replica link spills what the target cannot take yet.
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
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueModeCfg {
    #[default]
    Auto,
    Restore,
    Commands,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConflictCfg {
    #[default]
    Replace,
    Skip,
    Error,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSection {
    /// `127.0.0.1:PORT` to serve /status, /healthz.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// tracing filter, e.g. `info` or `ferry=debug`.
    pub level: String,
    /// Seconds between progress lines.
    pub progress_interval: f64,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "text".into(),
            level: "info".into(),
            progress_interval: 10.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvancedSection {
    /// Strings above this stream through in chunks.
    pub chunk_threshold: usize,
    /// Largest element held whole (keys, fields, members, compact blobs, one command).
    pub max_element: usize,
    pub connect_timeout_ms: u64,
    /// How often a cluster target's slot map is read again, milliseconds.
    pub cluster_refresh_ms: u64,
}

impl Default for AdvancedSection {
    fn default() -> Self {
        AdvancedSection {
            chunk_threshold: 1 << 20,
            max_element: 512 << 20,
            connect_timeout_ms: crate::source::replica::DEFAULT_CONNECT_TIMEOUT.as_millis() as u64,
            cluster_refresh_ms: 10_000,
        }
    }
}

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

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: name.to_string(),
            message,
        };
        // First pass straight from the text: its errors carry the line and the key.
        toml::from_str::<Config>(text).map_err(|e| invalid(e.to_string()))?;
        // Second pass through a value tree, to expand the environment in strings.
        let mut value: toml::Value = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        expand_env(&mut value).map_err(invalid)?;
        let cfg: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        Ok(cfg)
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
}

impl EndpointConfig {
    /// The endpoint with the user and password from the config applied.
    pub fn endpoint(&self, what: &str) -> Result<Endpoint, String> {
        if self.url.is_empty() {
            return Err(format!("[{what}] url is missing"));
        }
        let mut e = Endpoint::parse(&self.url).map_err(|e| format!("[{what}] url: {e}"))?;
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

/// Expands `${VAR}` and `${VAR:-default}` in every string value.
fn expand_env(v: &mut toml::Value) -> Result<(), String> {
    match v {
        toml::Value::String(s) => *s = expand_str(s)?,
        toml::Value::Array(a) => a.iter_mut().try_for_each(expand_env)?,
        toml::Value::Table(t) => t.iter_mut().try_for_each(|(_, v)| expand_env(v))?,
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
        assert_eq!(c.sync.spool_cap, d.sync.spool_cap);
        assert_eq!(c.sync.memory_queue, d.sync.memory_queue);
        assert_eq!(c.sync.window_cmds, d.sync.window_cmds);
        assert_eq!(c.sync.window_bytes, d.sync.window_bytes);
        assert_eq!(c.sync.announce_version, d.sync.announce_version);
        assert_eq!(c.transform.batch_elems, d.transform.batch_elems);
        assert_eq!(c.transform.batch_bytes, d.transform.batch_bytes);
        assert_eq!(c.transform.restore_max, d.transform.restore_max);
        assert_eq!(c.advanced.chunk_threshold, d.advanced.chunk_threshold);
        assert_eq!(c.advanced.max_element, d.advanced.max_element);
        assert_eq!(c.log.progress_interval, d.log.progress_interval);
        assert_eq!(c.target.cluster, d.target.cluster);
        assert_eq!(c.source.cluster, d.source.cluster);
        assert_eq!(c.transform.db_map, d.transform.db_map);
        assert_eq!(c.transform.db_collision, d.transform.db_collision);
        assert_eq!(c.transform.cross_slot, d.transform.cross_slot);
        assert_eq!(c.advanced.cluster_refresh_ms, d.advanced.cluster_refresh_ms);
        assert!(c.sink_options().is_ok());
    }
}
