//! The `ferry` binary: parse the command line, run, map errors to exit codes.

use std::io::{self, BufWriter};
use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command, InspectFormat, RdbCommand};
use ferry::inspect::{self, InspectError};
use ferry::rdb::DecoderConfig;

/// The runtime of the sync commands: two workers (the link's reader and the rest). `None`
/// (after saying why) when it cannot start.
/// The runtime of `sync`, `reverse` and `cutover`: `[advanced] threads` worker threads; 1
/// (the default) runs everything on the calling thread, 0 one worker per core.
fn runtime(threads: usize) -> Option<tokio::runtime::Runtime> {
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    b.enable_all()
        .build()
        .map_err(|e| eprintln!("ferry: cannot start the runtime: {e}"))
        .ok()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rdb {
            command: RdbCommand::Inspect(args),
        } => rdb_inspect(args),
        Command::Restore(args) => restore(args),
        Command::Sync(args) => sync(args, None),
        Command::Reverse(args) => reverse(args),
        Command::Cutover(args) => cutover(args),
        Command::Verify(args) => verify(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Healthcheck(args) => match ferry::status::probe(&args.addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferry: {e}");
                ExitCode::from(1)
            }
        },
    }
}

/// `ferry check-config FILE`: exit 0 and the effective config (passwords masked) on
/// standard output, or exit 2 and the problem (file, line, key) on standard error.
fn check_config(args: ferry::cli::CheckConfigArgs) -> ExitCode {
    match ferry::config::Config::load(&args.file) {
        Ok(cfg) => {
            println!(
                "# {}: valid; the effective config (passwords masked)",
                args.file.display()
            );
            print!("{}", cfg.to_masked_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::from(2)
        }
    }
}

/// `ferry cutover`: see `ferry::cutover`.
fn cutover(args: ferry::cli::CutoverArgs) -> ExitCode {
    use std::time::Duration;
    let config = match ferry::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let json = match args.log_format {
        Some(f) => f == ferry::cli::LogFormat::Json,
        None => config.log.format == ferry::config::LogFormatCfg::Json,
    };
    ferry::logging::init(json, &config.log.level);
    let reverse_status = match args.status_listen.as_deref().map(str::parse) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            eprintln!("ferry: --status-listen: {e}");
            return ExitCode::from(2);
        }
    };
    let threads = config.advanced.threads;
    let opts = ferry::cutover::CutoverOptions {
        config,
        max_lag_bytes: args.max_lag_bytes,
        catch_up_timeout: Duration::from_secs(args.catch_up_timeout),
        pause_timeout: Duration::from_secs(args.pause_timeout.max(1)),
        full_verify: args.full_verify,
        skip_verify: args.skip_verify,
        verify_window: Duration::from_secs(args.verify_window),
        verify_rounds: args.verify_rounds,
        writers_stopped: args.writers_stopped,
        reverse_status,
    };
    let Some(rt) = runtime(threads) else {
        return ExitCode::from(2);
    };
    let result = rt.block_on(async move {
        let shutdown = ferry::sync::shutdown_on_signals();
        ferry::cutover::run(opts, shutdown).await
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

/// `ferry reverse`: the forward config with its two ends swapped.
fn reverse(args: ferry::cli::ReverseArgs) -> ExitCode {
    let sync_args = ferry::cli::SyncArgs {
        config: Some(args.config.clone()),
        source: None,
        target: None,
        once: args.once,
        status_listen: args.status_listen.clone(),
        checkpoint: None,
        log_format: args.log_format,
    };
    sync(sync_args, Some((args.mode, args.yes)))
}

/// Asks the operator to type `yes` before a full reverse sync overwrites `target`.
fn confirm_overwrite(source: &str, target: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !io::stdin().is_terminal() {
        eprintln!(
            "ferry: a full reverse sync overwrites {target} with {source}; \
             confirm with --yes (standard input is not a terminal)"
        );
        return false;
    }
    eprint!(
        "A full reverse sync copies {source} over {target}: keys there are replaced.\n\
         Type `yes` to go on: "
    );
    let _ = io::stderr().flush();
    let mut line = String::new();
    let ok = io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "yes";
    if !ok {
        eprintln!("ferry: not confirmed; nothing was written");
    }
    ok
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
/// `reverse`: run the file's sync the other way, in that mode (`yes`: confirmed).
fn sync(args: ferry::cli::SyncArgs, reverse: Option<(ferry::cli::ReverseMode, bool)>) -> ExitCode {
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
    if reverse.is_some() {
        // The file describes the forward sync: its target is this run's source.
        std::mem::swap(&mut cfg.source, &mut cfg.target);
    }
    args.apply_to(&mut cfg);
    if let Err(p) = cfg.validate() {
        eprintln!("ferry: {p}");
        return ExitCode::from(2);
    }
    let json = cfg.log.format == ferry::config::LogFormatCfg::Json;
    let log_file = match &cfg.log.file {
        Some(path) => match ferry::logging::init_file(json, &cfg.log.level, path) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("ferry: [log] file: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            ferry::logging::init(json, &cfg.log.level);
            None
        }
    };
    let progress_bar = cfg.log.progress_bar
        && !json
        && log_file.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());

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
    match reverse {
        Some((ferry::cli::ReverseMode::Full, yes))
            if !yes && !confirm_overwrite(&source.to_string(), &target.to_string()) =>
        {
            return ExitCode::from(2);
        }
        Some((ferry::cli::ReverseMode::Stream, _)) => tracing::info!(
            source = %source,
            target = %target,
            "reverse sync from now: asking the source for an empty snapshot, then its stream"
        ),
        _ => {}
    }
    let mut opts = match ferry::sync::SyncOptions::from_config(&cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    opts.progress_bar = progress_bar;
    if reverse.is_some() {
        // The forward sync's checkpoint stays the forward sync's.
        opts.checkpoint = opts
            .checkpoint
            .as_deref()
            .map(ferry::checkpoint::for_reverse);
    }
    if matches!(reverse, Some((ferry::cli::ReverseMode::Stream, _))) {
        opts.replica.rdb_filter_only = Some(String::new());
    }
    let drain_timeout = opts.drain_timeout;
    let source_cluster = cfg.source_cluster();

    let threads = cfg.advanced.threads;
    let Some(rt) = runtime(threads) else {
        return ExitCode::from(2);
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
        reopen_logs_on_sighup(log_file);
        // The sync drains within drain_timeout by itself, unless it is stuck on a target
        // that does not answer at all: then this bound ends it, so that a stop always
        // finishes in drain_timeout + 5 s (systemd's TimeoutStopSec is set above that).
        let bound = drain_timeout + std::time::Duration::from_secs(5);
        let mut stop = shutdown.clone();
        let stuck = async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(bound).await;
        };
        tokio::select! {
            r = ferry::sync_cluster::run(opts, status.clone(), shutdown, source_cluster) => r.map(|_| ()).map_err(|e| e.to_string()),
            _ = stuck => {
                // The last applied offset the sync published (only acknowledged commands
                // count): a lower bound, the target may have acknowledged more since. It
                // means something only for one source in its stream phase (a cluster
                // source's shards each have their own; see /status before the stop).
                let s = status.snapshot();
                let msg = format!(
                    "still draining {:.0} s after the stop signal (the target does not answer): exiting with commands unacknowledged",
                    bound.as_secs_f64()
                );
                if s.shards.is_empty() && matches!(s.phase, ferry::status::Phase::Stream) {
                    tracing::warn!(
                        applied_offset = s.stream.applied_offset,
                        replid = s.replid.as_deref().unwrap_or("-"),
                        "{msg}; last applied offset"
                    );
                } else {
                    tracing::warn!("{msg}");
                }
                status.update(|s| s.set_phase(ferry::status::Phase::Stopped));
                Ok(())
            }
        }
    });
    // Tasks blocked on a dead peer must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
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
        keys: None,
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

/// SIGHUP reopens the log file (logrotate's `postrotate`); without one it is only logged.
fn reopen_logs_on_sighup(log_file: Option<ferry::logging::LogFile>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &log_file {
                Some(f) => match f.reopen() {
                    Ok(()) => {
                        tracing::info!("SIGHUP: reopened the log file {}", f.path().display())
                    }
                    Err(e) => tracing::warn!("SIGHUP: {e}; still logging to the old file"),
                },
                None => tracing::info!("SIGHUP: no log file to reopen"),
            }
        }
    });
}
