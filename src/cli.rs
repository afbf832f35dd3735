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
