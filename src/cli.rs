//! Command-line definitions (clap). `main.rs` turns them into calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Migrate a live Redis/Valkey keyspace and keep it in step"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy a live server to another and keep it in step (full sync, then the stream).
    Sync(SyncArgs),
    /// The sync of a config file the other way (its target to its source), for rollback.
    Reverse(ReverseArgs),
    /// Switch from blue (the forward sync's source) to green as one supervised step, then
    /// run the reverse sync for rollback.
    Cutover(CutoverArgs),
    /// Load an RDB file into a server through the pipelined writer.
    Restore(RestoreArgs),
    /// Compare two live endpoints in both directions; exit 0 equal, 1 differ, 2 could not
    /// compare.
    Verify(VerifyArgs),
    /// Validate a config file and print the effective config (passwords masked).
    CheckConfig(CheckConfigArgs),
    /// Exit 0 when a running ferry's /healthz answers 200 (for container health checks,
    /// where there is no curl).
    Healthcheck(HealthcheckArgs),
    /// Work with RDB files.
    Rdb {
        #[command(subcommand)]
        command: RdbCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RdbCommand {
    /// Decode an RDB file: one JSON object per key, or a summary.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InspectFormat {
    Jsonl,
    Summary,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The RDB file (`-` for standard input).
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: InspectFormat,
    /// Only keys of this database.
    #[arg(long)]
    pub db: Option<u64>,
    /// Only keys matching this glob (Redis `KEYS` syntax).
    #[arg(long)]
    pub key_pattern: Option<String>,
    /// Do not verify the CRC-64 trailer.
    #[arg(long)]
    pub no_checksum: bool,
    /// Largest element held whole (keys, hash fields, zset members, compact blobs).
    #[arg(long, default_value_t = 512 << 20)]
    pub max_element: usize,
    /// Strings longer than this are streamed in chunks.
    #[arg(long, default_value_t = 1 << 20)]
    pub chunk_threshold: usize,
    /// How many of the largest keys the summary lists.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Config file (TOML); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Source URL: `redis://[user[:password]@]host:port` (prefer the config file for passwords).
    #[arg(long)]
    pub source: Option<String>,
    /// Target URL.
    #[arg(long)]
    pub target: Option<String>,
    /// Exit 0 once the snapshot is applied and the stream caught up with the source's
    /// offset at the snapshot's end.
    #[arg(long)]
    pub once: bool,
    /// Serve /status and /healthz on this address (e.g. 127.0.0.1:9121).
    #[arg(long)]
    pub status_listen: Option<String>,
    /// A clean stop saves its resume point here; the next start takes it and asks the
    /// source for its stream from there instead of copying everything.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How `ferry reverse` starts.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReverseMode {
    /// From now: an empty snapshot (`REPLCONF rdb-filter-only ""`, Redis 7.0+ and Valkey)
    /// and the live stream, so nothing is copied again.
    Stream,
    /// A full sync that overwrites the forward sync's source; asks for confirmation.
    Full,
}

#[derive(Debug, Args)]
pub struct ReverseArgs {
    /// The forward sync's config file: its `[target]` becomes the source and its
    /// `[source]` the target.
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value = "stream")]
    pub mode: ReverseMode,
    /// Do not ask before a full reverse sync overwrites the forward sync's source.
    #[arg(long)]
    pub yes: bool,
    /// As `ferry sync --once`.
    #[arg(long)]
    pub once: bool,
    /// Serve /status and /healthz here (overrides the file's `[status] listen`, which
    /// the forward sync may be using).
    #[arg(long)]
    pub status_listen: Option<String>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The forward sync's config file; its `[status] listen` must be set (the cutover
    /// reads the forward sync's /status there).
    #[arg(long)]
    pub config: PathBuf,
    /// Most bytes the forward sync may lag behind blue before the cutover starts.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_lag_bytes: u64,
    /// Seconds green may take to apply blue's final offset once blue is paused.
    #[arg(long, default_value_t = 60)]
    pub catch_up_timeout: u64,
    /// Seconds of `CLIENT PAUSE … WRITE` on blue: it unpauses by itself after that, even
    /// if this process dies.
    #[arg(long, default_value_t = 120)]
    pub pause_timeout: u64,
    /// Compare every key in full (default: the keys written in the last --verify-window
    /// seconds in full, or every key in outline when that list is not complete).
    #[arg(long)]
    pub full_verify: bool,
    /// No verify step (when it was run separately).
    #[arg(long, conflicts_with = "full_verify")]
    pub skip_verify: bool,
    #[arg(long, default_value_t = 3)]
    pub verify_rounds: u32,
    /// Seconds back: the keys the forward sync wrote in that time are compared in full
    /// (without --full-verify).
    #[arg(long, default_value_t = 300)]
    pub verify_window: u64,
    /// Blue has no CLIENT PAUSE WRITE (before Redis 6.2) and its writers are stopped.
    #[arg(long)]
    pub writers_stopped: bool,
    /// Serve the reverse sync's /status and /healthz here.
    #[arg(long)]
    pub status_listen: Option<String>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl SyncArgs {
    /// The flags on top of the config (a flag always wins over the file).
    pub fn apply_to(&self, cfg: &mut crate::config::Config) {
        if let Some(u) = &self.source {
            cfg.source.url = u.clone();
        }
        if let Some(u) = &self.target {
            cfg.target.url = u.clone();
        }
        if self.once {
            cfg.sync.once = true;
        }
        if let Some(l) = &self.status_listen {
            cfg.status.listen = Some(l.clone());
        }
        if let Some(p) = &self.checkpoint {
            cfg.sync.checkpoint = Some(p.clone());
        }
        if let Some(f) = self.log_format {
            cfg.log.format = match f {
                LogFormat::Text => crate::config::LogFormatCfg::Text,
                LogFormat::Json => crate::config::LogFormatCfg::Json,
            };
        }
    }
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The status address (`[status] listen`).
    #[arg(default_value = "127.0.0.1:9121")]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The RDB file.
    pub file: PathBuf,
    /// Target URL.
    #[arg(long)]
    pub target: String,
    /// auto: RESTORE when the target accepts the value, commands otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    /// What to do with keys that exist on the target.
    #[arg(long, value_enum, default_value = "replace")]
    pub conflict: ConflictArg,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Auto,
    Restore,
    Commands,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConflictArg {
    Replace,
    Skip,
    Error,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum VerifyMode {
    /// Type, expiry and the whole value.
    Full,
    /// Type, expiry and length.
    Outline,
    /// Existence only.
    Keys,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Source URL: `redis://[user[:password]@]host:port[/db]`.
    #[arg(long)]
    pub source: String,
    /// Target URL.
    #[arg(long)]
    pub target: String,
    #[arg(long, value_enum, default_value = "full")]
    pub mode: VerifyMode,
    /// Round 1 checks everything; each later round re-checks only the keys that differed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Pause before each later round (`500ms`, `2s`, `1m`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Write every difference to this file as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Only this db (default: every db with keys on either side).
    #[arg(long)]
    pub db: Option<u32>,
    /// Only keys matching this glob (Redis `SCAN MATCH` syntax).
    #[arg(long)]
    pub key_pattern: Option<String>,
    /// At most this many keys per second read from each side.
    #[arg(long)]
    pub qps: Option<u64>,
    /// Expiry differences up to this much are ignored.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub ttl_tolerance: std::time::Duration,
}

/// `250ms`, `2s`, `1.5s`, `3m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
}
