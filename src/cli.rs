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
    /// Load an RDB file into a server through the pipelined writer.
    Restore(RestoreArgs),
    /// Compare two live endpoints in both directions; exit 0 equal, 1 differ, 2 could not
    /// compare.
    Verify(VerifyArgs),
    /// The sync of a config file with source and target swapped (green → blue), for
    /// rollback after a cutover.
    Reverse(ReverseArgs),
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
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
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

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReverseMode {
    /// From now on: green sends an empty snapshot and its live writes (Redis 7.0+, Valkey).
    Stream,
    /// A full sync green → blue, replacing blue's keys (asks for confirmation).
    Full,
}

#[derive(Debug, Args)]
pub struct ReverseArgs {
    /// The forward sync's config file (its source is blue, its target green).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value = "stream")]
    pub mode: ReverseMode,
    /// Do not ask before a full copy overwrites blue.
    #[arg(long)]
    pub yes: bool,
    /// Exit 0 once caught up (as `ferry sync --once`).
    #[arg(long)]
    pub once: bool,
    /// Serve /status and /healthz on this address.
    #[arg(long)]
    pub status_listen: Option<String>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("").is_err());
    }
}
