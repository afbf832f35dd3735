//! `ferry restore FILE.rdb --target URL`: an RDB file into a live server.
//!
//! Two stages on two threads, so that decoding and the network overlap: a blocking
//! thread reads the file, decodes it and rewrites each key into [`Cmd`]s; the async side
//! hands them to one [`Writer`]. Between them a bounded channel of batches: when the
//! target is slower than the disk, the decoder waits, and memory stays bounded by the
//! channel, the writer's window and the rewriter's hold (`restore_max`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::rewrite::{KeyRewriter, Outcome, RewriteConfig, RewriteStats};
use crate::rdb::reader::{decode_reader, DriveError};
use crate::rdb::{DecoderConfig, Elem, Event, RdbError};
use crate::target::{Cmd, ServerInfo, TargetError, Writer, WriterConfig, WriterStats};

/// Settings of a restore, besides the target's [`WriterConfig`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub rewrite: RewriteConfig,
    /// Strings longer than this are read (and written) in pieces.
    pub chunk_threshold: usize,
    pub verify_checksum: bool,
    /// Load function libraries (7.0+ `FUNCTION`) and `lua` aux scripts.
    pub load_functions: bool,
    /// Keep each key's [`Outcome`] in the report (memory grows with the key count).
    pub record_keys: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            rewrite: RewriteConfig::default(),
            chunk_threshold: 1 << 20,
            verify_checksum: true,
            load_functions: true,
            record_keys: false,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The target's family and version (`valkey-9.1.2`).
    pub target: String,
    pub keys: u64,
    /// Keys written with RESTORE, with commands; expired, empty and skipped keys.
    pub restored: u64,
    pub commands: u64,
    pub expired: u64,
    pub empty: u64,
    pub skipped: u64,
    pub functions: u64,
    pub scripts: u64,
    /// Bytes of the file.
    pub bytes_read: u64,
    pub elapsed: Duration,
    pub writer: WriterStats,
    pub rewrite: RewriteStats,
    /// `(db, key, outcome)` per key, with `record_keys`.
    pub key_outcomes: Vec<(u32, Bytes, Outcome)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Rdb { path: PathBuf, source: RdbError },
    #[error("{path}: read error at byte {offset}: {source}")]
    Read {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("the decoding thread failed: {0}")]
    Thread(String),
}

/// Restores `path` into `writer.endpoint`, on a runtime of its own (for `main` and tests;
/// inside a runtime use [`restore_file_async`]).
pub fn restore_file(
    path: &Path,
    writer: WriterConfig,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RestoreError::Thread(format!("cannot start a runtime: {e}")))?;
    rt.block_on(restore_file_async(path, writer, opts))
}

/// Batches of `Cmd`s from the decoding thread.
const CHANNEL_BATCHES: usize = 4;
const BATCH_CMDS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// What the decoding thread hands back at the end.
struct Decoded {
    rewrite: RewriteStats,
    functions: u64,
    scripts: u64,
    outcomes: Vec<(u32, Bytes, Outcome)>,
}

/// [`restore_file`] inside a runtime. The writer's `policy.busykey` is set from
/// `opts.rewrite.conflict`, so the two cannot disagree.
pub async fn restore_file_async(
    path: &Path,
    mut writer_cfg: WriterConfig,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    writer_cfg.policy.busykey = opts.rewrite.conflict;
    let file = File::open(path).map_err(|source| RestoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let total = file.metadata().ok().map(|m| m.len());
    let mut writer = Writer::connect(writer_cfg).await?;
    let info = writer.info().clone();
    let (tx, mut rx) = mpsc::channel::<Vec<Cmd>>(CHANNEL_BATCHES);
    let decoder_cfg = DecoderConfig {
        chunk_threshold: opts.chunk_threshold,
        // The rewriter can only RESTORE what the decoder captured raw.
        raw_capture_max: opts
            .rewrite
            .restore_max
            .min(usize::try_from(info.proto_max_bulk_len).unwrap_or(usize::MAX)),
        verify_checksum: opts.verify_checksum,
        total_len: total,
        ..DecoderConfig::default()
    };
    let thread_opts = opts.clone();
    let thread_path = path.to_path_buf();
    let decode = tokio::task::spawn_blocking(move || {
        decode_file(file, decoder_cfg, &thread_opts, &info, tx).map_err(|e| match e {
            DriveError::Rdb(source) => RestoreError::Rdb {
                path: thread_path.clone(),
                source,
            },
            DriveError::Io { offset, source } => RestoreError::Read {
                path: thread_path.clone(),
                offset,
                source,
            },
            // The writer hung up: its own error is the one to report.
            DriveError::Handler(()) => RestoreError::Thread("the writer stopped".into()),
        })
    });

    let mut write_result = Ok(());
    while let Some(batch) = rx.recv().await {
        for cmd in batch {
            if let Err(e) = writer.send(cmd).await {
                write_result = Err(e);
                break;
            }
        }
        if write_result.is_err() {
            break;
        }
    }
    if write_result.is_ok() {
        write_result = writer.flush().await;
    }
    // Dropping the receiver stops the decoder if the writer failed.
    drop(rx);
    let decoded = decode
        .await
        .map_err(|e| RestoreError::Thread(e.to_string()))?;
    write_result?;
    let decoded = decoded?;
    let r = &decoded.rewrite;
    Ok(RestoreReport {
        target: writer.info().name(),
        keys: r.keys,
        restored: r.restored,
        commands: r.commands,
        expired: r.expired,
        empty: r.empty,
        skipped: r.skipped,
        functions: decoded.functions,
        scripts: decoded.scripts,
        bytes_read: total.unwrap_or(0),
        elapsed: started.elapsed(),
        writer: writer.stats(),
        rewrite: decoded.rewrite,
        key_outcomes: decoded.outcomes,
    })
}

/// The decoding thread: file → events → rewriter → batches of `Cmd`s on `tx`.
fn decode_file(
    file: File,
    cfg: DecoderConfig,
    opts: &RestoreOptions,
    info: &ServerInfo,
    tx: mpsc::Sender<Vec<Cmd>>,
) -> Result<Decoded, DriveError<()>> {
    let mut rewriter: Option<KeyRewriter> = None;
    let mut batch: Vec<Cmd> = Vec::with_capacity(BATCH_CMDS);
    let mut batch_bytes = 0usize;
    let mut functions = 0u64;
    let mut scripts = 0u64;
    let mut outcomes = Vec::new();
    let mut current: Option<(u32, Bytes)> = None;
    decode_reader(file, cfg, |ev| {
        let mut out = |cmd: Cmd| {
            batch_bytes += cmd.bytes.len();
            batch.push(cmd);
        };
        match ev {
            Event::Header { flavor, .. } => {
                rewriter = Some(KeyRewriter::new(
                    &opts.rewrite,
                    info,
                    *flavor,
                    super::now_ms(),
                ));
            }
            Event::Function(code) if opts.load_functions => {
                if let Some(cmd) = KeyRewriter::function(code, info) {
                    functions += 1;
                    out(cmd);
                }
            }
            Event::Aux { key, value } if opts.load_functions && is_lua(key) => {
                scripts += 1;
                out(KeyRewriter::lua_script(&value.as_bytes()));
            }
            Event::Key(k) => {
                if let Some(r) = rewriter.as_mut() {
                    r.set_now(super::now_ms());
                    r.key(k, &mut out);
                }
                if opts.record_keys {
                    current = Some((k.db as u32, Bytes::copy_from_slice(k.key)));
                }
            }
            Event::Value(p) => {
                if let Some(r) = rewriter.as_mut() {
                    r.piece(p, &mut out);
                }
            }
            Event::KeyEnd(e) => {
                if let Some(r) = rewriter.as_mut() {
                    let outcome = r.end(e, &mut out);
                    if let Some((db, key)) = current.take() {
                        outcomes.push((db, key, outcome));
                    }
                }
            }
            _ => {}
        }
        if batch.len() >= BATCH_CMDS || batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_CMDS));
            tx.blocking_send(full).map_err(|_| ())?;
        }
        Ok(())
    })?;
    if let Some(r) = rewriter.as_mut() {
        r.flush_pending(&mut |c| batch.push(c));
    }
    if !batch.is_empty() {
        tx.blocking_send(batch)
            .map_err(|_| DriveError::Handler(()))?;
    }
    Ok(Decoded {
        rewrite: rewriter.map(|r| r.stats().clone()).unwrap_or_default(),
        functions,
        scripts,
        outcomes,
    })
}

fn is_lua(key: &Elem<'_>) -> bool {
    matches!(key, Elem::Bytes(b) if *b == b"lua")
}
