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
