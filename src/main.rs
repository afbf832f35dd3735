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
        Command::Verify(args) => verify(args),
        Command::Reverse(args) => reverse(args),
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
    use ferry::config::Config;
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
    run_sync(cfg, args.log_format, false)
}

/// Runs a sync from a resolved config; `rdb_filter_only` asks the source for an empty
/// snapshot (the stream only).
fn run_sync(
    cfg: ferry::config::Config,
    log_format: Option<ferry::cli::LogFormat>,
    rdb_filter_only: bool,
) -> ExitCode {
    use ferry::config::{ConflictCfg, ValueModeCfg};
    use ferry::target::{Conflict, WriterConfig};
    use ferry::transform::{RewriteConfig, ValueMode};
    let json = match log_format {
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
    replica.rdb_filter_only = rdb_filter_only;
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
    let opts = ferry::sync::SyncOptions {
        replica,
        writer,
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
        ferry::sync::run(opts, status, shutdown)
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

/// `ferry verify`: 0 equal, 1 differ, 2 could not compare.
fn verify(args: ferry::cli::VerifyArgs) -> ExitCode {
    use std::io::IsTerminal;
    ferry::logging::init(false, "warn");
    let (source, target) = match (
        ferry::endpoint::Endpoint::parse(&args.source),
        ferry::endpoint::Endpoint::parse(&args.target),
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ferry verify: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ferry::verify::Options {
        source,
        target,
        mode: match args.mode {
            ferry::cli::VerifyMode::Full => ferry::verify::Mode::Full,
            ferry::cli::VerifyMode::Outline => ferry::verify::Mode::Outline,
            ferry::cli::VerifyMode::Keys => ferry::verify::Mode::Keys,
        },
        rounds: args.rounds,
        interval: args.interval,
        db: args.db,
        key_pattern: args.key_pattern.map(String::into_bytes),
        qps: args.qps,
        ttl_tolerance: args.ttl_tolerance,
        progress: io::stderr().is_terminal(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry verify: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match rt.block_on(ferry::verify::run(&opts)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ferry verify: could not compare: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.report {
        let text = match serde_json::to_string_pretty(&outcome.to_json()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ferry verify: report: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!(
                "ferry verify: cannot write the report {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    let stdout = io::stdout();
    let _ = outcome.write_summary(&mut stdout.lock(), 20);
    if outcome.equal() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `ferry reverse`: the sync of the config file with source and target swapped (green →
/// blue). `stream` asks green for an empty snapshot, so only writes from now on flow;
/// `full` copies green over blue and asks for confirmation first.
fn reverse(args: ferry::cli::ReverseArgs) -> ExitCode {
    use std::io::{BufRead, IsTerminal, Write};
    let mut cfg = match ferry::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    std::mem::swap(&mut cfg.source, &mut cfg.target);
    if args.once {
        cfg.sync.once = true;
    }
    if let Some(l) = &args.status_listen {
        cfg.status.listen = Some(l.clone());
    }
    let (green, blue) = match (cfg.source.endpoint("source"), cfg.target.endpoint("target")) {
        (Ok(g), Ok(b)) => (g, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ferry reverse: {e}");
            return ExitCode::from(2);
        }
    };
    let stream = args.mode == ferry::cli::ReverseMode::Stream;
    if stream {
        // An empty snapshot needs REPLCONF rdb-filter-only: Redis 7.0+, every Valkey.
        let info = match probe_server(&green) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("ferry reverse: green {green}: {e}");
                return ExitCode::from(2);
            }
        };
        if !(info.valkey || info.version >= (7, 0, 0)) {
            let (a, b, c) = info.version;
            eprintln!(
                "ferry reverse: green {green} is Redis {a}.{b}.{c}, which cannot start a replica \
                 from an empty snapshot (REPLCONF rdb-filter-only needs Redis 7.0+ or Valkey).\n\
                 Use `ferry reverse --config {} --mode full` to copy green over blue instead.",
                args.config.display()
            );
            return ExitCode::from(2);
        }
        eprintln!("ferry reverse: streaming green {green} → blue {blue} from now on (nothing is re-copied)");
    } else {
        eprintln!(
            "\n  !!! ferry reverse --mode full copies EVERY key of green {green} over blue {blue}.\n  \
             !!! Keys that green also has are REPLACED on blue; keys only on blue are left as they are.\n"
        );
        if !args.yes {
            if !io::stdin().is_terminal() {
                eprintln!(
                    "ferry reverse: refusing to overwrite blue without confirmation: pass --yes"
                );
                return ExitCode::from(2);
            }
            eprint!("  Type `overwrite blue` to go on: ");
            let _ = io::stderr().flush();
            let mut line = String::new();
            if io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "overwrite blue" {
                eprintln!("ferry reverse: not confirmed; nothing was written");
                return ExitCode::from(2);
            }
        }
    }
    run_sync(cfg, args.log_format, stream)
}

/// The identity of a server, read with one short-lived connection (`INFO server`).
fn probe_server(ep: &ferry::endpoint::Endpoint) -> Result<ferry::target::ServerInfo, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let text =
            ferry::sync::info_section(ep, "server", std::time::Duration::from_secs(10)).await?;
        ferry::target::ServerInfo::from_info(&text)
            .ok_or_else(|| "INFO names no version".to_string())
    })
}
