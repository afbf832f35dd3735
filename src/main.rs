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
        Command::Sync(args) => sync(args),
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

/// `ferry sync`: config file, then flags on top; runs until SIGINT/SIGTERM (or `--once`).
fn sync(args: ferry::cli::SyncArgs) -> ExitCode {
    use ferry::config::{Config, ConflictCfg, ValueModeCfg};
    use ferry::target::{Conflict, WriterConfig};
    use ferry::transform::{RewriteConfig, ValueMode};
    let mut cfg = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ferry: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(u) = &args.source {
        cfg.source.url = u.clone();
    }
    if let Some(u) = &args.target {
        cfg.target.url = u.clone();
    }
    if args.once {
        cfg.sync.once = true;
    }
    if let Some(l) = &args.status_listen {
        cfg.status.listen = Some(l.clone());
    }
    let json = match args.log_format {
        Some(f) => f == ferry::cli::LogFormat::Json,
        None => cfg.log.format == "json",
    };
    ferry::logging::init(json, &cfg.log.level);

    let (source, target) = match (cfg.source.endpoint("source"), cfg.target.endpoint("target")) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ferry: {e} (give --source/--target or a config file)");
            return ExitCode::from(2);
        }
    };
    let status_addr = match cfg
        .status
        .listen
        .as_deref()
        .map(str::parse::<std::net::SocketAddr>)
    {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            eprintln!("ferry: [status] listen: {e}");
            return ExitCode::from(2);
        }
    };

    let mut replica = ferry::source::ReplicaConfig::new(source.clone());
    replica.announce_version = cfg.sync.announce_version.clone();
    replica.connect_timeout = cfg.connect_timeout();
    replica.spool_cap = cfg.sync.spool_cap;
    replica.memory_queue = cfg.sync.memory_queue;
    if let Some(d) = &cfg.sync.spool_dir {
        replica.spool_dir = d.clone();
    }
    let conflict = match cfg.transform.conflict {
        ConflictCfg::Replace => Conflict::Replace,
        ConflictCfg::Skip => Conflict::Skip,
        ConflictCfg::Error => Conflict::Error,
    };
    let mut writer = WriterConfig::new(target.clone());
    writer.window_cmds = cfg.sync.window_cmds;
    writer.window_bytes = cfg.sync.window_bytes;
    writer.connect_timeout = cfg.connect_timeout();
    writer.policy.busykey = conflict;
    let rewrite = RewriteConfig {
        batch_elems: cfg.transform.batch_elems,
        batch_bytes: cfg.transform.batch_bytes,
        mode: match cfg.transform.value_mode {
            ValueModeCfg::Auto => ValueMode::Auto,
            ValueModeCfg::Restore => ValueMode::Restore,
            ValueModeCfg::Commands => ValueMode::Commands,
        },
        conflict,
        restore_max: cfg.transform.restore_max,
    };
    let source_cluster = cfg.source_cluster();
    let sink = match cfg.sink_options() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ferry::sync::SyncOptions {
        replica,
        writer,
        sink,
        rewrite,
        decoder: DecoderConfig {
            chunk_threshold: cfg.advanced.chunk_threshold,
            max_element: cfg.advanced.max_element,
            ..Default::default()
        },
        max_command: cfg.advanced.max_element,
        once: cfg.sync.once,
        progress_interval: std::time::Duration::from_secs_f64(cfg.log.progress_interval.max(0.1)),
    };

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        let status = ferry::status::Status::new(source.to_string(), target.to_string());
        if let Some(addr) = status_addr {
            match ferry::status::serve(addr, status.clone()).await {
                Ok((bound, _task)) => tracing::info!("status on http://{bound}/status"),
                Err(e) => return Err(format!("cannot serve status on {addr}: {e}")),
            }
        }
        let shutdown = ferry::sync::shutdown_on_signals();
        ferry::sync_cluster::run(opts, status, shutdown, source_cluster)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ferry: {e}");
            ExitCode::from(1)
        }
    }
}
