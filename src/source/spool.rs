//! The FIFO between the replica link's reader task and its consumer: RAM first, then disk.
//!
//! Why it exists: a master disconnects a replica whose output buffer passes
//! `client-output-buffer-limit replica` (256 MiB / 64 MiB for 60 s by default), and the next
//! attempt then fails the same way, forever (peers trap 3). So the link reads the socket at
//! network speed whatever the consumer does, and the excess has to go somewhere bounded
//! that is not the source's memory and not ours: this spool.
//!
//! Shape:
//!
//! * Up to `memory` bytes of items wait in a RAM queue.
//! * Past that, every item is appended to a spool file as a record (`tag`, `len`, payload;
//!   see `encode_record`) until the consumer has read the disk part to its end. The
//!   consumer reads RAM first (those items are older), then the files, so the order is
//!   exactly the push order; only when the files are drained do pushes go to RAM again.
//! * The files are segments of at most [`SEGMENT_MAX`] bytes; a segment is deleted as soon
//!   as it is read, so a consumer that stays a little behind for days does not grow a file
//!   forever. `cap` bounds the bytes in our files; a push that would pass it fails with
//!   [`SourceError::SpoolFull`] instead of stalling the socket or growing without bound.
//! * Records are written with positional writes (`pwrite`) under the lock and only then
//!   counted as committed; the consumer reads committed bytes with positional reads outside
//!   the lock (they never change again), so a slow disk read never holds up the reader.
//!
//! Nothing is fsynced: the spool only has to survive as long as the process. After a crash
//! the sync restarts from the offset the target applied (`PSYNC <replid> <applied+1>`).
//! Files are removed when the receiving side is dropped.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::Notify;

use super::replica::SourceItem;
use super::{human_bytes, SourceError};

/// Largest spool file. Smaller segments free disk space sooner while the consumer catches
/// up; larger ones mean fewer files. The cap also counts the already-read part of the
/// segment being read, so a segment is kept well below the cap (see [`Spool::segment_max`]).
const SEGMENT_MAX: u64 = 64 << 20;

/// How much the consumer reads from a spool file at once.
const DISK_READ: usize = 1 << 20;

/// Bytes counted for an item in RAM besides its payload (the enum, the queue slot, the
/// `Bytes` handle), so that many tiny items cannot hide a large RAM use.
const ITEM_OVERHEAD: u64 = 64;

/// `tag` (1 byte) + payload length (u32 LE).
const HEADER_LEN: usize = 5;

const TAG_FULL_RESYNC: u8 = 1;
const TAG_CONTINUE: u8 = 2;
const TAG_RDB: u8 = 3;
const TAG_RDB_END: u8 = 4;
const TAG_STREAM: u8 = 5;
const TAG_RECONNECTING: u8 = 6;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bytes on disk.
    pub cap: u64,
    /// Bytes of items kept in RAM before spilling to disk.
    pub memory: usize,
}

/// One spool file holding whole records from offset 0 to `len`.
struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Committed bytes: every record below `len` is completely written.
    len: u64,
}

struct Inner {
    ram: VecDeque<SourceItem>,
    ram_bytes: u64,
    /// Oldest first. Non-empty exactly while some pushed item lives on disk unread (or the
    /// consumer has yet to notice it read the last one), which is when pushes go to disk.
    segments: VecDeque<Segment>,
    /// Record bytes committed to disk and not yet decoded by the consumer.
    disk_pending: u64,
    /// Bytes in our files (committed, read or not), what `cap` bounds.
    disk_usage: u64,
    next_segment: u64,
    sender_closed: bool,
    receiver_closed: bool,
    /// We created `cfg.dir`, so we remove it when we are done (if it is empty by then).
    created_dir: bool,
}

struct Spool {
    cfg: SpoolConfig,
    /// Distinguishes the files of several links in one process sharing one directory.
    id: u64,
    inner: Mutex<Inner>,
    /// Wakes the receiver on a push or on close.
    notify: Notify,
}

static NEXT_SPOOL_ID: AtomicU64 = AtomicU64::new(0);

/// The pushing half, owned by the reader task.
pub struct SpoolSender {
    spool: Arc<Spool>,
}

/// The popping half, owned by the consumer. Dropping it removes the spool files.
pub struct SpoolReceiver {
    spool: Arc<Spool>,
    /// Bytes read from the front segment, not yet decoded into records.
    rbuf: BytesMut,
    /// How far into the front segment `rbuf` has read.
    read_off: u64,
}

/// Reads a spool's sizes without owning its receiver.
#[derive(Clone)]
pub struct SpoolGauge(Arc<Spool>);

impl SpoolGauge {
    /// Bytes waiting: RAM (with per-item overhead) plus unread records on disk.
    pub fn queued_bytes(&self) -> u64 {
        let inner = self.0.lock();
        inner.ram_bytes + inner.disk_pending
    }

    /// Bytes in spool files now.
    pub fn disk_bytes(&self) -> u64 {
        self.0.lock().disk_usage
    }
}

/// A new, empty spool. No file is created until the first item spills.
pub fn channel(cfg: SpoolConfig) -> (SpoolSender, SpoolReceiver) {
    let spool = Arc::new(Spool {
        cfg,
        id: NEXT_SPOOL_ID.fetch_add(1, Ordering::Relaxed),
        inner: Mutex::new(Inner {
            ram: VecDeque::new(),
            ram_bytes: 0,
            segments: VecDeque::new(),
            disk_pending: 0,
            disk_usage: 0,
            next_segment: 0,
            sender_closed: false,
            receiver_closed: false,
            created_dir: false,
        }),
        notify: Notify::new(),
    });
    (
        SpoolSender {
            spool: spool.clone(),
        },
        SpoolReceiver {
            spool,
            rbuf: BytesMut::new(),
            read_off: 0,
        },
    )
}

impl Spool {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters more than losing the link, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the already-read part of the front segment (which still occupies disk until
    /// the segment is deleted) small against the cap.
    fn segment_max(&self) -> u64 {
        (self.cfg.cap / 8).clamp(64 << 10, SEGMENT_MAX)
    }

    fn io_error(&self, path: &Path, e: io::Error) -> SourceError {
        SourceError::Spool {
            path: path.to_path_buf(),
            source: e,
        }
    }

    /// Opens a new segment file (creating the directory if needed).
    fn new_segment(&self, inner: &mut Inner) -> Result<Segment, SourceError> {
        let dir = &self.cfg.dir;
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| self.io_error(dir, e))?;
            inner.created_dir = true;
        }
        let path = dir.join(format!("link{}-{:06}.spool", self.id, inner.next_segment));
        inner.next_segment += 1;
        // create_new: never write into a file we did not create.
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| self.io_error(&path, e))?;
        Ok(Segment {
            path,
            file: Arc::new(file),
            len: 0,
        })
    }

    /// Deletes every spool file (and our directory if we made it and it is now empty).
    fn remove_files(&self, inner: &mut Inner) {
        for seg in inner.segments.drain(..) {
            let _ = fs::remove_file(&seg.path);
        }
        inner.disk_usage = 0;
        inner.disk_pending = 0;
        if inner.created_dir {
            // Fails, harmlessly, while another link still has files there.
            let _ = fs::remove_dir(&self.cfg.dir);
        }
    }
}

impl SpoolSender {
    /// Queues `item` after every item pushed before it. Never waits for the consumer; fails
    /// only when the disk part would pass the cap or the disk fails. After the receiver is
    /// gone, items are dropped.
    pub fn push(&self, item: SourceItem) -> Result<(), SourceError> {
        let spool = &*self.spool;
        let mut inner = spool.lock();
        if inner.receiver_closed {
            return Ok(());
        }
        let weight = item_weight(&item);
        if inner.segments.is_empty() && inner.ram_bytes + weight <= spool.cfg.memory as u64 {
            inner.ram_bytes += weight;
            inner.ram.push_back(item);
        } else {
            self.write_record(&mut inner, &item)?;
        }
        drop(inner);
        spool.notify.notify_one();
        Ok(())
    }

    fn write_record(&self, inner: &mut Inner, item: &SourceItem) -> Result<(), SourceError> {
        let spool = &*self.spool;
        let (header, body) = encode_record(item).map_err(|e| spool.io_error(&spool.cfg.dir, e))?;
        let len = (header.len() + body.len()) as u64;
        if inner.disk_usage + len > spool.cfg.cap {
            return Err(SourceError::SpoolFull {
                cap: human_bytes(spool.cfg.cap),
                dir: spool.cfg.dir.clone(),
            });
        }
        // Append to the last segment unless that would make it too big; a record larger
        // than a segment gets a segment of its own.
        let max = spool.segment_max();
        let reuse = matches!(inner.segments.back(), Some(s) if s.len == 0 || s.len + len <= max);
        let mut seg = match inner.segments.pop_back() {
            Some(seg) if reuse => seg,
            Some(full) => {
                inner.segments.push_back(full);
                spool.new_segment(inner)?
            }
            None => spool.new_segment(inner)?,
        };
        let at = seg.len;
        let file = &seg.file;
        let written = blocking(|| {
            file.write_all_at(&header, at)?;
            file.write_all_at(body, at + header.len() as u64)
        });
        // Only a complete record is committed; a failed write leaves `len` where it was,
        // so its partial bytes are never read (and are overwritten by the next record).
        if written.is_ok() {
            seg.len += len;
        }
        let path = seg.path.clone();
        inner.segments.push_back(seg);
        written.map_err(|e| spool.io_error(&path, e))?;
        inner.disk_usage += len;
        inner.disk_pending += len;
        Ok(())
    }
}

impl Drop for SpoolSender {
    fn drop(&mut self) {
        self.spool.lock().sender_closed = true;
        self.spool.notify.notify_one();
    }
}

/// What [`SpoolReceiver::try_pop`] found.
enum Pop {
    Item(SourceItem),
    /// Nothing queued now.
    Empty,
}

impl SpoolReceiver {
    /// The next item in push order; waits for one. `Ok(None)` once the sender is gone and
    /// everything it pushed has been returned.
    pub async fn recv(&mut self) -> Result<Option<SourceItem>, SourceError> {
        loop {
            if let Pop::Item(item) = self.try_pop()? {
                return Ok(Some(item));
            }
            if self.spool.lock().sender_closed {
                // The sender closed after our last look: pop once more, it may have pushed
                // just before closing.
                return match self.try_pop()? {
                    Pop::Item(item) => Ok(Some(item)),
                    Pop::Empty => Ok(None),
                };
            }
            // notify_one stores a permit when nobody waits, so a push between try_pop and
            // here is not missed.
            self.spool.notify.notified().await;
        }
    }

    /// A handle that reads the spool's sizes from anywhere (status, metrics).
    pub fn gauge(&self) -> SpoolGauge {
        SpoolGauge(self.spool.clone())
    }

    /// Bytes waiting: RAM (with per-item overhead) plus unread records on disk.
    pub fn queued_bytes(&self) -> u64 {
        let inner = self.spool.lock();
        inner.ram_bytes + inner.disk_pending
    }

    /// Bytes in spool files now.
    pub fn disk_bytes(&self) -> u64 {
        self.spool.lock().disk_usage
    }

    fn try_pop(&mut self) -> Result<Pop, SourceError> {
        loop {
            if let Some((item, len)) = self.decode_buffered()? {
                let mut inner = self.spool.lock();
                inner.disk_pending -= len;
                // Free the disk space as soon as the last record of a segment is out.
                if self.rbuf.is_empty() {
                    release_front_if_read(&mut inner, &mut self.read_off, true)?;
                }
                return Ok(Pop::Item(item));
            }
            let mut inner = self.spool.lock();
            // RAM items are older than every disk item: RAM only takes pushes while no
            // segment exists, and a segment is only removed once it was read to its end.
            if let Some(item) = inner.ram.pop_front() {
                inner.ram_bytes -= item_weight(&item);
                return Ok(Pop::Item(item));
            }
            let Some(front) = inner.segments.front() else {
                return Ok(Pop::Empty);
            };
            if self.read_off < front.len {
                let file = front.file.clone();
                let path = front.path.clone();
                let want = (front.len - self.read_off).min(DISK_READ as u64) as usize;
                drop(inner);
                self.read_more(&file, want)
                    .map_err(|e| self.spool.io_error(&path, e))?;
                continue;
            }
            if !release_front_if_read(&mut inner, &mut self.read_off, self.rbuf.is_empty())? {
                return Ok(Pop::Empty);
            }
        }
    }

    fn read_more(&mut self, file: &File, want: usize) -> io::Result<()> {
        let start = self.rbuf.len();
        self.rbuf.resize(start + want, 0);
        let at = self.read_off;
        let dst = &mut self.rbuf[start..];
        let res = blocking(|| file.read_exact_at(dst, at));
        if let Err(e) = res {
            self.rbuf.truncate(start);
            return Err(e);
        }
        self.read_off += want as u64;
        Ok(())
    }

    /// A whole record at the front of `rbuf`, with its length on disk.
    fn decode_buffered(&mut self) -> Result<Option<(SourceItem, u64)>, SourceError> {
        if self.rbuf.len() < HEADER_LEN {
            return Ok(None);
        }
        let tag = self.rbuf[0];
        let len = u32::from_le_bytes([self.rbuf[1], self.rbuf[2], self.rbuf[3], self.rbuf[4]]);
        let len = len as usize;
        if self.rbuf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.rbuf.advance(HEADER_LEN);
        let payload = self.rbuf.split_to(len).freeze();
        let item = decode_payload(tag, payload).ok_or_else(|| SourceError::Spool {
            path: self.spool.cfg.dir.clone(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt spool record (tag {tag}, {len} bytes)"),
            ),
        })?;
        Ok(Some((item, (HEADER_LEN + len) as u64)))
    }
}

/// Deletes the front segment if everything committed in it has been decoded; says
/// whether it did. Even the writer's current segment goes: the writer appends under the
/// lock we hold, and its next record opens a new segment (or goes to RAM if this was
/// the last one).
fn release_front_if_read(
    inner: &mut Inner,
    read_off: &mut u64,
    rbuf_empty: bool,
) -> Result<bool, SourceError> {
    let Some(front) = inner.segments.front() else {
        return Ok(false);
    };
    if *read_off < front.len {
        return Ok(false);
    }
    if !rbuf_empty {
        return Err(SourceError::Spool {
            path: front.path.clone(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                "spool file ends inside a record",
            ),
        });
    }
    if let Some(seg) = inner.segments.pop_front() {
        inner.disk_usage -= seg.len;
        let _ = fs::remove_file(&seg.path);
    }
    *read_off = 0;
    Ok(true)
}

impl Drop for SpoolReceiver {
    fn drop(&mut self) {
        let mut inner = self.spool.lock();
        inner.receiver_closed = true;
        inner.ram.clear();
        inner.ram_bytes = 0;
        self.spool.remove_files(&mut inner);
    }
}

fn item_weight(item: &SourceItem) -> u64 {
    let payload = match item {
        SourceItem::FullResync { replid, .. } | SourceItem::Continue { replid, .. } => replid.len(),
        SourceItem::Rdb(data) | SourceItem::Stream { data, .. } => data.len(),
        SourceItem::RdbEnd => 0,
        SourceItem::Reconnecting { reason } => reason.len(),
    };
    payload as u64 + ITEM_OVERHEAD
}

/// A record on disk:
///
/// ```text
/// tag u8 | payload length u32 LE | payload
///   FullResync / Continue   offset u64 LE, replid
///   Rdb                     the bytes
///   RdbEnd                  (empty)
///   Stream                  offset u64 LE, the bytes
///   Reconnecting            reason (UTF-8)
/// ```
///
/// Returns the header (with any fixed fields) and the variable body, written separately so
/// that the data is never copied.
fn encode_record(item: &SourceItem) -> io::Result<(Vec<u8>, &[u8])> {
    let (tag, offset, body): (u8, Option<u64>, &[u8]) = match item {
        SourceItem::FullResync { replid, offset } => {
            (TAG_FULL_RESYNC, Some(*offset), replid.as_bytes())
        }
        SourceItem::Continue { replid, offset } => (TAG_CONTINUE, Some(*offset), replid.as_bytes()),
        SourceItem::Rdb(data) => (TAG_RDB, None, data),
        SourceItem::RdbEnd => (TAG_RDB_END, None, &[]),
        SourceItem::Stream { offset, data } => (TAG_STREAM, Some(*offset), data),
        SourceItem::Reconnecting { reason } => (TAG_RECONNECTING, None, reason.as_bytes()),
    };
    let payload_len = body.len() + if offset.is_some() { 8 } else { 0 };
    let payload_len = u32::try_from(payload_len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("item of {payload_len} bytes is too large for a spool record"),
        )
    })?;
    let mut header = Vec::with_capacity(HEADER_LEN + 8);
    header.push(tag);
    header.extend_from_slice(&payload_len.to_le_bytes());
    if let Some(offset) = offset {
        header.extend_from_slice(&offset.to_le_bytes());
    }
    Ok((header, body))
}

fn decode_payload(tag: u8, mut payload: Bytes) -> Option<SourceItem> {
    fn take_offset(payload: &mut Bytes) -> Option<u64> {
        let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
        payload.advance(8);
        Some(u64::from_le_bytes(head))
    }
    fn utf8(payload: Bytes) -> Option<String> {
        String::from_utf8(payload.to_vec()).ok()
    }
    Some(match tag {
        TAG_FULL_RESYNC => {
            let offset = take_offset(&mut payload)?;
            SourceItem::FullResync {
                replid: utf8(payload)?,
                offset,
            }
        }
        TAG_CONTINUE => {
            let offset = take_offset(&mut payload)?;
            SourceItem::Continue {
                replid: utf8(payload)?,
                offset,
            }
        }
        TAG_RDB => SourceItem::Rdb(payload),
        TAG_RDB_END if payload.is_empty() => SourceItem::RdbEnd,
        TAG_STREAM => {
            let offset = take_offset(&mut payload)?;
            SourceItem::Stream {
                offset,
                data: payload,
            }
        }
        TAG_RECONNECTING => SourceItem::Reconnecting {
            reason: utf8(payload)?,
        },
        _ => return None,
    })
}

/// Runs a blocking file operation. On a multi-threaded runtime it tells tokio first
/// (`block_in_place`), so other tasks move to another worker while the disk is slow; on a
/// current-thread runtime (where that is not allowed) or outside a runtime it just runs.
/// The operations are page-cache reads and writes of at most a few hundred KiB.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!(
            "ferry-spool-test-{label}-{}-{nanos}",
            std::process::id()
        ))
    }

    fn stream(offset: u64, len: usize) -> SourceItem {
        SourceItem::Stream {
            offset,
            data: Bytes::from(
                (0..len)
                    .map(|i| (offset as usize + i) as u8)
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn items() -> Vec<SourceItem> {
        let mut v = vec![
            SourceItem::Reconnecting {
                reason: "a reason".into(),
            },
            SourceItem::FullResync {
                replid: "a".repeat(40),
                offset: 77,
            },
            SourceItem::Rdb(Bytes::from_static(b"REDIS0011 some bytes")),
            SourceItem::RdbEnd,
            SourceItem::Continue {
                replid: "b".repeat(40),
                offset: 90,
            },
        ];
        let mut off = 100;
        for i in 0..200 {
            let len = (i * 37) % 1500;
            v.push(stream(off, len));
            off += len as u64;
        }
        v
    }

    fn pop_now(rx: &mut SpoolReceiver) -> Option<SourceItem> {
        match rx.try_pop().expect("pop") {
            Pop::Item(i) => Some(i),
            Pop::Empty => None,
        }
    }

    #[test]
    fn keeps_push_order_across_ram_and_disk_with_interleaved_pops() {
        for memory in [0, 3000, 20_000, 1 << 20] {
            let dir = temp_dir("order");
            let (tx, mut rx) = channel(SpoolConfig {
                dir: dir.clone(),
                cap: 1 << 30,
                memory,
            });
            let all = items();
            let mut got = Vec::new();
            for (i, item) in all.iter().enumerate() {
                tx.push(item.clone()).unwrap();
                // Pop at irregular moments so that the queue drains to empty sometimes
                // (back to RAM) and stays on disk other times.
                if i % 7 == 0 || (i / 40) % 2 == 1 {
                    if let Some(item) = pop_now(&mut rx) {
                        got.push(item);
                    }
                }
            }
            while let Some(item) = pop_now(&mut rx) {
                got.push(item);
            }
            assert_eq!(got, all, "memory {memory}");
            assert_eq!(rx.queued_bytes(), 0);
            assert_eq!(rx.disk_bytes(), 0, "read segments are deleted");
            drop((tx, rx));
            assert!(!dir.exists(), "spool dir removed");
        }
    }

    #[test]
    fn rolls_segments_and_deletes_them_once_read() {
        let dir = temp_dir("segments");
        // cap 1 MiB -> segments of 128 KiB.
        let (tx, mut rx) = channel(SpoolConfig {
            dir: dir.clone(),
            cap: 1 << 20,
            memory: 0,
        });
        let mut off = 0;
        for _ in 0..20 {
            tx.push(stream(off, 30_000)).unwrap();
            off += 30_000;
        }
        let files = fs::read_dir(&dir).unwrap().count();
        assert!(files >= 4, "{files} segment files");
        // Read half: the first segments are gone.
        for _ in 0..10 {
            pop_now(&mut rx).unwrap();
        }
        assert!(fs::read_dir(&dir).unwrap().count() < files);
        // Space freed by reading lets more in than the cap alone would.
        for _ in 0..10 {
            tx.push(stream(off, 30_000)).unwrap();
            off += 30_000;
        }
        let mut expect = 300_000;
        while let Some(SourceItem::Stream { offset, data }) = pop_now(&mut rx) {
            assert_eq!(offset, expect);
            expect += data.len() as u64;
        }
        assert_eq!(expect, off);
        drop((tx, rx));
        assert!(!dir.exists());
    }

    #[test]
    fn refuses_to_pass_the_cap_with_a_clear_error() {
        let dir = temp_dir("cap");
        let (tx, rx) = channel(SpoolConfig {
            dir: dir.clone(),
            cap: 100_000,
            memory: 10_000,
        });
        let mut err = None;
        for i in 0..100 {
            if let Err(e) = tx.push(stream(i * 5000, 5000)) {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the cap is reached").to_string();
        assert!(
            err.starts_with("spool reached its cap of 97.7 KiB at ")
                && err.contains("raise [sync] spool_cap"),
            "{err}"
        );
        assert!(rx.disk_bytes() <= 100_000);
        drop((tx, rx));
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn recv_waits_for_pushes_and_ends_after_the_sender() {
        let dir = temp_dir("recv");
        let (tx, mut rx) = channel(SpoolConfig {
            dir,
            cap: 1 << 30,
            memory: 1000,
        });
        let pusher = tokio::spawn(async move {
            for i in 0..100 {
                tx.push(stream(i * 100, 100)).unwrap();
                if i % 10 == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
        });
        let mut n = 0;
        while let Some(item) = rx.recv().await.unwrap() {
            assert_eq!(item, stream(n * 100, 100));
            n += 1;
        }
        assert_eq!(n, 100);
        pusher.await.unwrap();
    }
}
