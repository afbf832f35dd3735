//! The `ferry` binary: parse the command line, run, map errors to exit codes.

use std::io::{self, BufWriter};
use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command, InspectFormat, RdbCommand};
use ferry::inspect::{self, InspectError};
use ferry::rdb::DecoderConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rdb {
            command: RdbCommand::Inspect(args),
        } => rdb_inspect(args),
        Command::Restore(args) => restore(args),
        Command::Sync(_) => {
            eprintln!("ferry: not built yet");
            ExitCode::from(2)
        }
    }
}

fn rdb_inspect(args: ferry::cli::InspectArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let (input, total): (Box<dyn io::Read>, Option<u64>) = if name == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => {
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            }
            Err(e) => {
                eprintln!("ferry: cannot open {name}: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let opts = inspect::Options {
        format: match args.format {
            InspectFormat::Jsonl => inspect::Format::Jsonl,
            InspectFormat::Summary => inspect::Format::Summary,
        },
        db: args.db,
        key_pattern: args.key_pattern.map(String::into_bytes),
        decoder: DecoderConfig {
            chunk_threshold: args.chunk_threshold,
            max_element: args.max_element,
            raw_capture_max: 0,
            verify_checksum: !args.no_checksum,
            total_len: total,
        },
        top: args.top,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    match inspect::run(input, &mut out, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(InspectError::Rdb(e)) => {
            eprintln!("ferry: {name}: {e}");
            ExitCode::from(1)
        }
        Err(InspectError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(InspectError::Io(e)) => {
            eprintln!("ferry: {name}: {e}");
            ExitCode::from(2)
        }
    }
}

fn restore(args: ferry::cli::RestoreArgs) -> ExitCode {
    use ferry::cli::{ConflictArg, LogFormat, ModeArg};
    use ferry::target::{Conflict, WriterConfig};
    use ferry::transform::{restore_file, RestoreOptions, ValueMode};
    ferry::logging::init(args.log_format == Some(LogFormat::Json), "info");
    let endpoint = match ferry::endpoint::Endpoint::parse(&args.target) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ferry: --target: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = RestoreOptions::default();
    opts.rewrite.mode = match args.mode {
        ModeArg::Auto => ValueMode::Auto,
        ModeArg::Restore => ValueMode::Restore,
        ModeArg::Commands => ValueMode::Commands,
    };
    opts.rewrite.conflict = match args.conflict {
        ConflictArg::Replace => Conflict::Replace,
        ConflictArg::Skip => Conflict::Skip,
        ConflictArg::Error => Conflict::Error,
    };
    match restore_file(&args.file, WriterConfig::new(endpoint), &opts) {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            // Skipped by the rewriter (nothing the target can take) or rejected by the target.
            let skipped = r.skipped + r.writer.skipped_total;
            tracing::info!(
                "restored {} into {}: {} keys ({} by RESTORE, {} as commands), {} expired, {} skipped, {} functions, {} scripts; {:.1} s, {:.0} keys/s",
                args.file.display(),
                r.target,
                r.keys,
                r.restored,
                r.commands,
                r.expired,
                skipped,
                r.functions,
                r.scripts,
                secs,
                r.keys as f64 / secs
            );
            for s in r.writer.skipped.iter().take(20) {
                tracing::warn!("skipped: {} ({}): {}", s.command, s.class, s.message);
            }
            if skipped > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ferry: restore: {e}");
            ExitCode::from(1)
        }
    }
}
