//! `ferry verify`: prove two live endpoints hold the same data, in both directions.
//!
//! * [`conn`]: a small pipelined RESP connection (the crate's own encoder and parser).
//! * [`side`]: one side, standalone or cluster (slot routing, a SCAN per master).
//! * [`compare`]: a batch of keys on both sides: type, expiry, length, value; big values
//!   in chunks, unordered collections through [`digest`]s.
//! * [`report`]: differences, the terminal summary and the JSON report.
//!
//! A round scans both sides of every db concurrently. Keys from the source's SCAN are
//! compared in full; keys from the target's SCAN are only checked for existence on the
//! source (`EXISTS`), which finds the keys that exist only on the target. A pool of
//! workers, each with its own connections to both sides, takes batches of keys from the
//! scanners. Later rounds re-check only the keys that differed, so writes still in flight
//! settle; the result is the last round's.

mod compare;
mod conn;
mod digest;
mod report;
mod side;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};

pub use digest::Digest;
pub use report::{Diff, Kind, Outcome, RoundStats};
pub use side::{key_slot, SideSpec};

use crate::endpoint::Endpoint;
use conn::Batch;
use side::Side;

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Type, expiry and the whole value.
    Full,
    /// Type, expiry and length.
    Outline,
    /// Existence only.
    Keys,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Outline => "outline",
            Mode::Keys => "keys",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{addr}: {op}: {source}")]
    Io {
        addr: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{addr}: {message}")]
    Server { addr: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

impl VerifyError {
    fn io(addr: &str, op: &'static str, source: std::io::Error) -> VerifyError {
        VerifyError::Io {
            addr: addr.to_string(),
            op,
            source,
        }
    }
}

/// Keys per batch handed to a worker (two round trips per side per batch).
pub const BATCH_KEYS: usize = 500;
/// `SCAN … COUNT` of the scanners: large, because SCAN is a chain of round trips that
/// queue behind the workers' batches on a busy server; the keys are then handed out in
/// batches of [`BATCH_KEYS`].
pub const SCAN_COUNT: usize = 5000;
/// Concurrent workers, each with its own connections to both sides.
pub const WORKERS: usize = 4;
/// Differences kept for the report; beyond this they are only counted.
pub const MAX_DIFFS: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub source: Endpoint,
    pub target: Endpoint,
    pub mode: Mode,
    /// At least 1.
    pub rounds: u32,
    pub interval: Duration,
    /// Only this db (else the URL's db, else every db with keys on either side).
    pub db: Option<u32>,
    pub key_pattern: Option<Vec<u8>>,
    /// Keys per second read from each side (`None`: as fast as the servers answer).
    pub qps: Option<u64>,
    pub ttl_tolerance: Duration,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// Only these keys (db, key), compared both ways, instead of scanning both sides
    /// (`ferry cutover` checks the keys the stream wrote lately).
    pub keys: Option<Vec<(u32, Vec<u8>)>>,
}

/// Counters shared by the scanners and workers of a round.
#[derive(Default)]
struct Counters {
    source_keys: AtomicU64,
    target_keys: AtomicU64,
    checked: AtomicU64,
    diffs: AtomicU64,
    bytes: AtomicU64,
    not_compared: AtomicU64,
}

/// Paces reads to `--qps` keys per second.
struct Limiter {
    qps: Option<u64>,
    start: Instant,
    taken: AtomicU64,
}

impl Limiter {
    async fn take(&self, n: usize) {
        let Some(qps) = self.qps.filter(|&q| q > 0) else {
            return;
        };
        let taken = self.taken.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let due = self.start + Duration::from_secs_f64(taken as f64 / qps as f64);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Where a batch of keys came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The source's SCAN, or a re-check: compared in full.
    Compare,
    /// The target's SCAN: checked for existence on the source.
    Target,
}

struct Job {
    db: u32,
    origin: Origin,
    keys: Vec<Vec<u8>>,
}

/// Runs every round and returns the last round's differences.
pub async fn run(opts: &Options) -> Result<Outcome, VerifyError> {
    let (src, tgt) = tokio::join!(
        SideSpec::discover("source", &opts.source),
        SideSpec::discover("target", &opts.target)
    );
    let (src, tgt) = (Arc::new(src?), Arc::new(tgt?));
    let mut outcome = Outcome {
        source: opts.source.to_string(),
        target: opts.target.to_string(),
        mode: opts.mode.name(),
        ..Default::default()
    };
    if let (Some(a), Some(b)) = (opts.source.db, opts.target.db) {
        if a != b && opts.db.is_none() {
            return Err(VerifyError::Unsupported(format!(
                "the source URL names db {a} and the target URL db {b}: verify compares the \
                 same db on both sides (give --db)"
            )));
        }
    }
    let (ks, kt) = tokio::join!(src.keyspace(), tgt.keyspace());
    let (ks, kt) = (ks?, kt?);
    let dbs: Vec<u32> = match opts.db.or(opts.source.db).or(opts.target.db) {
        Some(db) => vec![db],
        None if src.is_cluster() || tgt.is_cluster() => {
            for (side, ks) in [("source", &ks), ("target", &kt)] {
                let other: Vec<u32> = ks.keys().copied().filter(|&d| d != 0).collect();
                if !other.is_empty() {
                    outcome.notes.push(format!(
                        "a cluster has only db 0; the {side}'s dbs {other:?} were not compared"
                    ));
                }
            }
            vec![0]
        }
        None => ks
            .keys()
            .chain(kt.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    outcome.dbs = dbs.clone();
    let expected: u64 = dbs
        .iter()
        .map(|d| ks.get(d).copied().unwrap_or(0) + kt.get(d).copied().unwrap_or(0))
        .sum();
    for s in [&src, &tgt] {
        if s.is_cluster() {
            outcome.notes.push(format!(
                "the {} is a cluster of {} masters",
                s.name,
                s.nodes.len()
            ));
        }
    }

    let mut work: Vec<(u32, Vec<u8>)> = opts.keys.clone().unwrap_or_default();
    work.sort();
    work.dedup();
    for round in 1..=opts.rounds.max(1) {
        if round > 1 {
            if outcome.diffs.is_empty() && outcome.diffs_total == 0 {
                break;
            }
            tokio::time::sleep(opts.interval).await;
            work = outcome
                .diffs
                .iter()
                .map(|d| (d.db, d.key.clone()))
                .collect();
            work.dedup();
        }
        let started = Instant::now();
        let counters = Arc::new(Counters::default());
        let progress = opts.progress.then(|| {
            let c = counters.clone();
            let total = if round == 1 {
                expected
            } else {
                work.len() as u64
            };
            tokio::spawn(progress_line(round, c, total))
        });
        let result = pass(opts, &src, &tgt, &dbs, round, &work, &counters).await;
        if let Some(p) = progress {
            p.abort();
            eprint!("\r\x1b[K");
        }
        let (mut diffs, mut total) = result?;
        diffs.sort_by(|a, b| (a.db, &a.key, a.kind).cmp(&(b.db, &b.key, b.kind)));
        // A key SCAN returned twice (a table resized during the scan) was checked twice.
        let before = diffs.len();
        diffs.dedup();
        total -= (before - diffs.len()) as u64;
        let stats = RoundStats {
            round,
            source_keys: counters.source_keys.load(Ordering::Relaxed),
            target_keys: counters.target_keys.load(Ordering::Relaxed),
            not_compared: counters.not_compared.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            differences: total,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::debug!(?stats, "round done");
        outcome.rounds.push(stats);
        outcome.diffs = diffs;
        outcome.diffs_total = total;
    }
    Ok(outcome)
}

/// One round: scans (round 1) or the keys to re-check (later rounds) through the workers.
async fn pass(
    opts: &Options,
    src: &Arc<SideSpec>,
    tgt: &Arc<SideSpec>,
    dbs: &[u32],
    round: u32,
    recheck: &[(u32, Vec<u8>)],
    counters: &Arc<Counters>,
) -> Result<(Vec<Diff>, u64), VerifyError> {
    let batch = match opts.qps {
        Some(q) if q > 0 => (q as usize / 10).clamp(1, BATCH_KEYS),
        _ => BATCH_KEYS,
    };
    let limiter = Arc::new(Limiter {
        qps: opts.qps,
        start: Instant::now(),
        taken: AtomicU64::new(0),
    });
    let (tx, rx) = mpsc::channel::<Job>(WORKERS * 2);
    let rx = Arc::new(Mutex::new(rx));
    let big = Arc::new(BigQueue::default());
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (rx, src, tgt, counters) = (rx.clone(), src.clone(), tgt.clone(), counters.clone());
        let big = big.clone();
        let (mode, tol) = (opts.mode, opts.ttl_tolerance.as_millis() as i64);
        workers.push(tokio::spawn(async move {
            worker(rx, big, &src, &tgt, mode, tol, &counters).await
        }));
    }
    drop(rx);
    let produced = if round == 1 && opts.keys.is_none() {
        let mut r = Ok(());
        for &db in dbs {
            let (a, b) = tokio::join!(
                scan_side(
                    src,
                    db,
                    Origin::Compare,
                    opts,
                    batch,
                    &limiter,
                    counters,
                    &tx
                ),
                scan_side(
                    tgt,
                    db,
                    Origin::Target,
                    opts,
                    batch,
                    &limiter,
                    counters,
                    &tx
                )
            );
            r = a.and(b);
            if r.is_err() {
                break;
            }
        }
        r
    } else {
        let mut r = Ok(());
        for chunk in recheck.chunk_by(|a, b| a.0 == b.0) {
            for part in chunk.chunks(batch) {
                limiter.take(part.len()).await;
                counters
                    .source_keys
                    .fetch_add(part.len() as u64, Ordering::Relaxed);
                let job = Job {
                    db: part[0].0,
                    origin: Origin::Compare,
                    keys: part.iter().map(|(_, k)| k.clone()).collect(),
                };
                if tx.send(job).await.is_err() {
                    r = Err(VerifyError::Unsupported("the workers stopped".into()));
                    break;
                }
            }
        }
        r
    };
    drop(tx);
    let mut diffs = Vec::new();
    let mut total = 0u64;
    let mut first_err = None;
    for w in workers {
        match w.await {
            Ok(Ok(d)) => {
                total += d.len() as u64;
                let room = MAX_DIFFS.saturating_sub(diffs.len());
                diffs.extend(d.into_iter().take(room));
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(VerifyError::Unsupported(format!("a worker failed: {e}")));
            }
        }
    }
    // A worker's error explains a producer's "workers stopped".
    if let Some(e) = first_err {
        return Err(e);
    }
    produced?;
    Ok((diffs, total))
}

/// SCANs one side's db (every master of a cluster) and hands the keys out in batches.
#[allow(clippy::too_many_arguments)]
async fn scan_side(
    spec: &SideSpec,
    db: u32,
    origin: Origin,
    opts: &Options,
    batch: usize,
    limiter: &Limiter,
    counters: &Counters,
    tx: &mpsc::Sender<Job>,
) -> Result<(), VerifyError> {
    let mut side = spec.connect().await?;
    side.select(db).await?;
    let pattern = opts.key_pattern.as_deref();
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(batch);
    let counter = match origin {
        Origin::Compare => &counters.source_keys,
        Origin::Target => &counters.target_keys,
    };
    for node in 0..side.nodes() {
        let mut cursor = b"0".to_vec();
        loop {
            // With --qps, small scans keep the pacing even.
            let count = if opts.qps.is_some() {
                batch.max(10)
            } else {
                SCAN_COUNT
            };
            let (next, got) = side.scan(node, &cursor, pattern, count).await?;
            counter.fetch_add(got.len() as u64, Ordering::Relaxed);
            for k in got {
                keys.push(k);
                if keys.len() >= batch {
                    limiter.take(keys.len()).await;
                    let job = Job {
                        db,
                        origin,
                        keys: std::mem::replace(&mut keys, Vec::with_capacity(batch)),
                    };
                    if tx.send(job).await.is_err() {
                        return Err(VerifyError::Unsupported("the workers stopped".into()));
                    }
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
    }
    if !keys.is_empty() {
        limiter.take(keys.len()).await;
        if tx.send(Job { db, origin, keys }).await.is_err() {
            return Err(VerifyError::Unsupported("the workers stopped".into()));
        }
    }
    counters
        .bytes
        .fetch_add(side.bytes_read(), Ordering::Relaxed);
    Ok(())
}

/// Big keys waiting for any worker. A worker that finds big keys in its batch queues them
/// here (up to [`BIG_QUEUE`], beyond that it compares them itself), so a batch of twenty
/// 200k-element collections is spread over every worker instead of taking one.
type BigQueue = std::sync::Mutex<std::collections::VecDeque<compare::BigKey>>;
const BIG_QUEUE: usize = 256;

/// Takes batches until the channel closes and no big key is left; returns the differences
/// found. A worker exits only once the batch channel is closed and the big-key queue is
/// empty, so a big key queued by a worker is compared at the latest by that same worker.
async fn worker(
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    big: Arc<BigQueue>,
    src: &SideSpec,
    tgt: &SideSpec,
    mode: Mode,
    ttl_tolerance_ms: i64,
    counters: &Counters,
) -> Result<Vec<Diff>, VerifyError> {
    let (s, t) = tokio::join!(src.connect(), tgt.connect());
    let (mut s, mut t) = (s?, t?);
    let mut diffs = Vec::new();
    loop {
        let next_big = big.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        if let Some(b) = next_big {
            s.select(b.db).await?;
            t.select(b.db).await?;
            let before = diffs.len();
            let mut c = compare::Checker::new(
                &mut s,
                &mut t,
                mode,
                ttl_tolerance_ms,
                b.db,
                std::mem::take(&mut diffs),
            );
            c.check_big(&b).await?;
            diffs = c.diffs;
            counters
                .diffs
                .fetch_add((diffs.len() - before) as u64, Ordering::Relaxed);
            continue;
        }
        let job = rx.lock().await.recv().await;
        let Some(mut job) = job else {
            if big.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                break;
            }
            continue;
        };
        job.keys.sort_unstable();
        job.keys.dedup();
        s.select(job.db).await?;
        t.select(job.db).await?;
        let before = diffs.len();
        match job.origin {
            Origin::Compare => {
                let mut c = compare::Checker::new(
                    &mut s,
                    &mut t,
                    mode,
                    ttl_tolerance_ms,
                    job.db,
                    std::mem::take(&mut diffs),
                );
                c.check_keys(&job.keys).await?;
                counters
                    .not_compared
                    .fetch_add(c.not_compared, Ordering::Relaxed);
                let mut mine = Vec::new();
                {
                    let mut q = big.lock().unwrap_or_else(|e| e.into_inner());
                    for b in c.big.drain(..) {
                        if q.len() < BIG_QUEUE {
                            q.push_back(b);
                        } else {
                            mine.push(b);
                        }
                    }
                }
                for b in &mine {
                    c.check_big(b).await?;
                }
                diffs = c.diffs;
            }
            Origin::Target => only_on_target(&mut s, job.db, &job.keys, &mut diffs).await?,
        }
        counters
            .checked
            .fetch_add(job.keys.len() as u64, Ordering::Relaxed);
        counters
            .diffs
            .fetch_add((diffs.len() - before) as u64, Ordering::Relaxed);
    }
    counters
        .bytes
        .fetch_add(s.bytes_read() + t.bytes_read(), Ordering::Relaxed);
    Ok(diffs)
}

/// Keys the target's SCAN returned that the source does not have. A standalone source
/// first gets one multi-key `EXISTS` for the whole batch (3.0.3+); only when that counts
/// fewer than the batch are the keys asked one by one.
async fn only_on_target(
    src: &mut Side,
    db: u32,
    keys: &[Vec<u8>],
    diffs: &mut Vec<Diff>,
) -> Result<(), VerifyError> {
    if !src.spec.is_cluster() && src.spec.info.version >= (3, 0, 3) {
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        args.push(b"EXISTS");
        args.extend(keys.iter().map(Vec::as_slice));
        let mut b = Batch::new();
        b.push(&args);
        let r = src.run(&b).await?;
        if r[0].to_i64() == Some(keys.len() as i64) {
            return Ok(());
        }
    }
    let mut b = Batch::new();
    for k in keys {
        b.push(&[b"EXISTS", k]);
    }
    let r = src.run(&b).await?;
    for (k, f) in keys.iter().zip(&r) {
        if f.to_i64() == Some(0) {
            diffs.push(Diff {
                db,
                key: k.clone(),
                kind: Kind::Extra,
                detail: "on the target only".into(),
            });
        }
    }
    Ok(())
}

/// A progress line on stderr, redrawn four times a second.
async fn progress_line(round: u32, c: Arc<Counters>, total: u64) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let checked = c.checked.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        let pct = if total > 0 {
            format!(
                " ({:.0}%)",
                (checked as f64 * 100.0 / total as f64).min(100.0)
            )
        } else {
            String::new()
        };
        eprint!(
            "\r\x1b[Kround {round}: {checked}/{total} keys{pct}, {} differences, {:.0} keys/s",
            c.diffs.load(Ordering::Relaxed),
            checked as f64 / secs
        );
    }
}
