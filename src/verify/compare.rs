//! Comparing a batch of keys on both sides.
//!
//! Two pipelined round trips per batch, each sent to both sides at once: `TYPE` and `PTTL`
//! of every key, then per type its length and, in full mode, the value itself when it is
//! small (`GETRANGE 0 64K`, `LRANGE 0 127`, one `SSCAN`/`HSCAN`/`ZSCAN` call). Keys whose
//! values did not come back whole take the big path, one key at a time: strings in 1 MiB
//! `GETRANGE` chunks, lists in `LRANGE` chunks (order matters: the first differing index is
//! named), sets/hashes/sorted sets through a full `*SCAN` on each side folded into an
//! order-independent [`Digest`] (and, when the digests differ, a second pass that looks up
//! the scanned elements on the other side to name the first differing one), streams by
//! `XRANGE` chunks, `XINFO` (groups, consumers) and `XPENDING` (the PEL).

use super::conn::Batch;
use super::digest::Digest;
use super::report::{show, Diff, Kind};
use super::side::Side;
use super::{Mode, VerifyError};
use crate::resp::{Event, Frame};

/// Strings up to this many bytes are fetched whole in the first pass.
pub const SMALL_STRING: usize = 64 << 10;
/// Collections up to this many elements are fetched whole in the first pass.
pub const SMALL_ELEMS: usize = 128;
/// Elements per `LRANGE`/`XRANGE`/`*SCAN`/`XPENDING` call on the big path: large, since a
/// `*SCAN` of one collection is a chain of round trips.
const CHUNK_ELEMS: usize = 5000;
/// Bytes per `GETRANGE` call on the big path.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunk reads pipelined per round trip on the big path.
const CHUNKS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
    /// A module type: type and expiry are compared, the value is not.
    Other(String),
}

impl Ty {
    fn parse(name: &[u8]) -> Option<Ty> {
        Some(match name {
            b"none" => return None,
            b"string" => Ty::String,
            b"list" => Ty::List,
            b"set" => Ty::Set,
            b"zset" => Ty::ZSet,
            b"hash" => Ty::Hash,
            b"stream" => Ty::Stream,
            other => Ty::Other(String::from_utf8_lossy(other).into_owned()),
        })
    }

    fn name(&self) -> &str {
        match self {
            Ty::String => "string",
            Ty::List => "list",
            Ty::Set => "set",
            Ty::ZSet => "zset",
            Ty::Hash => "hash",
            Ty::Stream => "stream",
            Ty::Other(n) => n,
        }
    }
}

/// Compares keys of one db on both sides and collects the differences.
pub struct Checker<'a> {
    pub src: &'a mut Side,
    pub tgt: &'a mut Side,
    pub mode: Mode,
    pub ttl_tolerance_ms: i64,
    pub db: u32,
    pub diffs: Vec<Diff>,
    /// Keys of a module type (value not compared).
    pub not_compared: u64,
    /// Keys too big for the first passes, for [`Checker::check_big`] (the caller may hand
    /// them to another worker).
    pub big: Vec<BigKey>,
}

/// A key whose value is compared in chunks, one key at a time.
#[derive(Debug, Clone)]
pub struct BigKey {
    pub db: u32,
    pub key: Vec<u8>,
    ty: Ty,
    /// Lengths on the source and the target (0 for strings: read when compared).
    ls: u64,
    lt: u64,
}

/// The text of an error reply.
fn err_of(f: &Frame) -> Option<String> {
    f.error_text()
        .map(|e| String::from_utf8_lossy(e).into_owned())
}

fn as_len(f: &Frame) -> u64 {
    f.to_i64().and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// `[cursor, [items...]]` of a `*SCAN` call.
fn scan_parts(f: &Frame) -> Option<(&[u8], &[Frame])> {
    match f {
        Frame::Array(v) if v.len() == 2 => match (&v[0], &v[1]) {
            (Frame::Bulk(c), Frame::Array(items)) => Some((c, items)),
            _ => None,
        },
        _ => None,
    }
}

/// A score's comparison form: the f64's bits, `-0` folded into `0` (servers treat them as
/// one score, and a 7.0+ listpack stores `-0` as `0`). Text that is no number stays text.
fn score_key(text: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
    {
        // `+ 0.0` turns -0.0 into 0.0 and leaves every other value as it is.
        Some(v) => (v + 0.0).to_bits().to_be_bytes().to_vec(),
        None => text.to_vec(),
    }
}

/// Which side holds something.
fn side_name(source: bool) -> &'static str {
    if source {
        "source"
    } else {
        "target"
    }
}

impl<'a> Checker<'a> {
    pub fn new(
        src: &'a mut Side,
        tgt: &'a mut Side,
        mode: Mode,
        ttl_tolerance_ms: i64,
        db: u32,
        diffs: Vec<Diff>,
    ) -> Checker<'a> {
        Checker {
            src,
            tgt,
            mode,
            ttl_tolerance_ms,
            db,
            diffs,
            not_compared: 0,
            big: Vec::new(),
        }
    }

    fn diff(&mut self, key: &[u8], kind: Kind, detail: String) {
        self.diffs.push(Diff {
            db: self.db,
            key: key.to_vec(),
            kind,
            detail,
        });
    }

    /// The same batch on both sides, concurrently.
    async fn both(&mut self, b: &Batch) -> Result<(Vec<Frame>, Vec<Frame>), VerifyError> {
        let (s, t) = tokio::join!(self.src.run(b), self.tgt.run(b));
        Ok((s?, t?))
    }

    /// Compares `keys` (deduplicated by the caller) on both sides.
    pub async fn check_keys(&mut self, keys: &[Vec<u8>]) -> Result<(), VerifyError> {
        if self.mode == Mode::Keys {
            return self.check_existence(keys).await;
        }
        // TYPE, PTTL and, on the guess that the key is a string (most keys are), its
        // value or length: one round trip settles every small string. For other types the
        // guess costs one WRONGTYPE error reply.
        let full = self.mode == Mode::Full;
        let small_end = SMALL_STRING.to_string();
        let mut b = Batch::new();
        for k in keys {
            b.push(&[b"TYPE", k]);
            b.push(&[b"PTTL", k]);
            if full {
                b.push(&[b"GETRANGE", k, b"0", small_end.as_bytes()]);
            } else {
                b.push(&[b"STRLEN", k]);
            }
        }
        let (s, t) = self.both(&b).await?;
        let mut same: Vec<(usize, Ty)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let (st, sp, tt, tp) = (&s[3 * i], &s[3 * i + 1], &t[3 * i], &t[3 * i + 1]);
            if let Some(e) = [st, sp, tt, tp].into_iter().find_map(err_of) {
                self.read_failed(k, &e);
                continue;
            }
            let sty = st.as_bytes().and_then(Ty::parse);
            let tty = tt.as_bytes().and_then(Ty::parse);
            match (sty, tty) {
                (None, None) => {}
                (Some(a), None) => {
                    self.diff(k, Kind::Missing, format!("{} on the source", a.name()))
                }
                (None, Some(b)) => self.diff(k, Kind::Extra, format!("{} on the target", b.name())),
                (Some(a), Some(b)) if a != b => self.diff(
                    k,
                    Kind::Type,
                    format!("{} on the source, {} on the target", a.name(), b.name()),
                ),
                (Some(Ty::String), Some(_)) => {
                    self.check_expiry(k, sp.to_i64(), tp.to_i64());
                    self.check_string(k, &s[3 * i + 2], &t[3 * i + 2]);
                }
                (Some(a), Some(_)) => {
                    self.check_expiry(k, sp.to_i64(), tp.to_i64());
                    same.push((i, a));
                }
            }
        }
        self.check_values(keys, &same).await
    }

    /// A string from the first pass: its value up to [`SMALL_STRING`] bytes (full mode) or
    /// its length (outline).
    fn check_string(&mut self, key: &[u8], s: &Frame, t: &Frame) {
        if let Some(e) = err_of(s).or_else(|| err_of(t)) {
            self.read_failed(key, &e);
            return;
        }
        if self.mode != Mode::Full {
            let (ls, lt) = (as_len(s), as_len(t));
            if ls != lt {
                self.diff(key, Kind::Length, format!("string: length {ls} vs {lt}"));
            }
            return;
        }
        let (a, b) = (s.as_bytes().unwrap_or(b""), t.as_bytes().unwrap_or(b""));
        if a.len() > SMALL_STRING || b.len() > SMALL_STRING {
            self.big.push(BigKey {
                db: self.db,
                key: key.to_vec(),
                ty: Ty::String,
                ls: 0,
                lt: 0,
            });
        } else if let Some((kind, d)) = bytes_diff(a, b, 0, a.len() as u64, b.len() as u64) {
            self.diff(key, kind, d);
        }
    }

    /// `--mode keys`: `EXISTS` on both sides.
    async fn check_existence(&mut self, keys: &[Vec<u8>]) -> Result<(), VerifyError> {
        let mut b = Batch::new();
        for k in keys {
            b.push(&[b"EXISTS", k]);
        }
        let (s, t) = self.both(&b).await?;
        for (i, k) in keys.iter().enumerate() {
            if let Some(e) = err_of(&s[i]).or_else(|| err_of(&t[i])) {
                self.read_failed(k, &e);
                continue;
            }
            match (s[i].to_i64() == Some(1), t[i].to_i64() == Some(1)) {
                (true, false) => self.diff(k, Kind::Missing, String::new()),
                (false, true) => self.diff(k, Kind::Extra, String::new()),
                _ => {}
            }
        }
        Ok(())
    }

    fn read_failed(&mut self, key: &[u8], err: &str) {
        self.diff(
            key,
            Kind::Value,
            format!("read failed: {err} (changed during the check?)"),
        );
    }

    /// PTTL: -1 no expiry, -2 gone meanwhile (the value pass will tell), else ms left.
    fn check_expiry(&mut self, key: &[u8], s: Option<i64>, t: Option<i64>) {
        let ttl = |v: Option<i64>| v.filter(|&n| n >= 0);
        if s == Some(-2) || t == Some(-2) {
            return;
        }
        let show_ttl = |v: Option<i64>| match v {
            Some(ms) => format!("{ms} ms"),
            None => "none".into(),
        };
        let (s, t) = (ttl(s), ttl(t));
        let differ = match (s, t) {
            (Some(a), Some(b)) => (a - b).abs() > self.ttl_tolerance_ms,
            (None, None) => false,
            _ => true,
        };
        if differ {
            self.diff(
                key,
                Kind::Expire,
                format!("ttl: source {}, target {}", show_ttl(s), show_ttl(t)),
            );
        }
    }

    /// Lengths (outline) or values (full) of keys that have the same type on both sides.
    async fn check_values(
        &mut self,
        keys: &[Vec<u8>],
        same: &[(usize, Ty)],
    ) -> Result<(), VerifyError> {
        let full = self.mode == Mode::Full;
        let small_last = (SMALL_ELEMS - 1).to_string();
        let small_count = SMALL_ELEMS.to_string();
        let mut b = Batch::new();
        // (key index, type, first reply, replies)
        let mut plan: Vec<(usize, &Ty, usize, usize)> = Vec::with_capacity(same.len());
        for (i, ty) in same {
            let k = keys[*i].as_slice();
            let first = b.len();
            match ty {
                // Settled by the first pass.
                Ty::String => {}
                Ty::List => {
                    b.push(&[b"LLEN", k]);
                    if full {
                        b.push(&[b"LRANGE", k, b"0", small_last.as_bytes()]);
                    }
                }
                Ty::Set | Ty::ZSet | Ty::Hash => {
                    let (len, scan): (&[u8], &[u8]) = match ty {
                        Ty::Set => (b"SCARD", b"SSCAN"),
                        Ty::ZSet => (b"ZCARD", b"ZSCAN"),
                        _ => (b"HLEN", b"HSCAN"),
                    };
                    b.push(&[len, k]);
                    if full {
                        b.push(&[scan, k, b"0", b"COUNT", small_count.as_bytes()]);
                    }
                }
                Ty::Stream => b.push(&[b"XLEN", k]),
                Ty::Other(_) => self.not_compared += 1,
            }
            plan.push((*i, ty, first, b.len() - first));
        }
        let (s, t) = self.both(&b).await?;
        // Equal small hashes whose field TTLs are still to compare: (key index, fields).
        let mut ttl_checks: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        for &(i, ty, first, n) in &plan {
            let k = keys[i].as_slice();
            let (sr, tr) = (&s[first..first + n], &t[first..first + n]);
            if let Some(e) = sr.iter().chain(tr).find_map(err_of) {
                self.read_failed(k, &e);
                continue;
            }
            if n == 0 {
                continue;
            }
            let (ls, lt) = (as_len(&sr[0]), as_len(&tr[0]));
            if !full {
                if ls != lt {
                    self.diff(
                        k,
                        Kind::Length,
                        format!("{}: length {ls} vs {lt}", ty.name()),
                    );
                }
                continue;
            }
            match ty {
                Ty::List if ls as usize <= SMALL_ELEMS && lt as usize <= SMALL_ELEMS => {
                    let (Frame::Array(a), Frame::Array(bb)) = (&sr[1], &tr[1]) else {
                        self.read_failed(k, "LRANGE did not answer an array");
                        continue;
                    };
                    if let Some((kind, d)) =
                        list_diff(a, bb, 0, ls, lt).or_else(|| list_tail(ls.min(lt), ls, lt))
                    {
                        self.diff(k, kind, d);
                    }
                }
                Ty::Set | Ty::ZSet | Ty::Hash => match (scan_parts(&sr[1]), scan_parts(&tr[1])) {
                    (Some((b"0", a)), Some((b"0", bb))) => {
                        if let Some((kind, d)) = unordered_diff(ty, a, bb, ls, lt) {
                            self.diff(k, kind, d);
                        } else if *ty == Ty::Hash && self.field_ttls() {
                            let fields = a
                                .chunks(2)
                                .filter_map(|p| p[0].as_bytes())
                                .map(<[u8]>::to_vec);
                            ttl_checks.push((i, fields.collect::<Vec<_>>()));
                        }
                    }
                    _ => self.push_big(k, ty, ls, lt),
                },
                _ => self.push_big(k, ty, ls, lt),
            }
        }
        if !ttl_checks.is_empty() {
            let mut b = Batch::new();
            for (i, fields) in &ttl_checks {
                push_hpttl(&mut b, &keys[*i], fields);
            }
            let (s, t) = self.both(&b).await?;
            for (j, (i, fields)) in ttl_checks.iter().enumerate() {
                if let Some(d) = field_ttl_diff(fields, &s[j], &t[j], self.ttl_tolerance_ms) {
                    self.diff(&keys[*i], Kind::Expire, d);
                }
            }
        }
        Ok(())
    }

    /// Field TTLs are compared when both sides have them (Redis 7.4+, Valkey 9.0+).
    fn field_ttls(&self) -> bool {
        self.mode == Mode::Full
            && self.src.spec.info.has_hash_field_ttl()
            && self.tgt.spec.info.has_hash_field_ttl()
    }

    /// The field TTLs of a big hash: the source's fields in `HSCAN` chunks, `HPTTL` of
    /// each chunk on both sides.
    async fn big_field_ttls(&mut self, key: &[u8]) -> Result<Option<(Kind, String)>, VerifyError> {
        let mut cursor = b"0".to_vec();
        let count = CHUNK_ELEMS.to_string();
        loop {
            let mut q = Batch::new();
            q.push(&[b"HSCAN", key, &cursor, b"COUNT", count.as_bytes()]);
            let r = self.src.run(&q).await?;
            let Some((next, items)) = scan_parts(&r[0]) else {
                return Ok(err_of(&r[0]).map(|e| read_failed(&e)));
            };
            let fields: Vec<Vec<u8>> = items
                .chunks(2)
                .filter_map(|p| p[0].as_bytes())
                .map(<[u8]>::to_vec)
                .collect();
            let next = next.to_vec();
            if !fields.is_empty() {
                let mut b = Batch::new();
                push_hpttl(&mut b, key, &fields);
                let (s, t) = self.both(&b).await?;
                if let Some(d) = field_ttl_diff(&fields, &s[0], &t[0], self.ttl_tolerance_ms) {
                    return Ok(Some((Kind::Expire, d)));
                }
            }
            if next == b"0" {
                return Ok(None);
            }
            cursor = next;
        }
    }

    fn push_big(&mut self, key: &[u8], ty: &Ty, ls: u64, lt: u64) {
        self.big.push(BigKey {
            db: self.db,
            key: key.to_vec(),
            ty: ty.clone(),
            ls,
            lt,
        });
    }

    /// Compares a key the first passes could not settle, reading it in chunks.
    pub async fn check_big(&mut self, b: &BigKey) -> Result<(), VerifyError> {
        let (k, ls, lt) = (b.key.as_slice(), b.ls, b.lt);
        let found = match &b.ty {
            Ty::String => self.big_string(k).await?,
            Ty::List => self.big_list(k, ls, lt).await?,
            // Both sides order a sorted set the same way (score, then member), so rank
            // ranges compare in order, pipelined, cheaper for the server than ZSCAN.
            Ty::ZSet => self.big_zset(k, ls, lt).await?,
            ty @ (Ty::Set | Ty::Hash) => self.big_unordered(k, ty, ls, lt).await?,
            Ty::Stream => self.stream(k, ls, lt).await?,
            Ty::Other(_) => None,
        };
        if let Some((kind, d)) = found {
            self.diff(k, kind, d);
        }
        Ok(())
    }

    /// A string compared in `GETRANGE` chunks.
    async fn big_string(&mut self, key: &[u8]) -> Result<Option<(Kind, String)>, VerifyError> {
        let mut b = Batch::new();
        b.push(&[b"STRLEN", key]);
        let (s, t) = self.both(&b).await?;
        if let Some(e) = err_of(&s[0]).or_else(|| err_of(&t[0])) {
            return Ok(Some(read_failed(&e)));
        }
        let (ls, lt) = (as_len(&s[0]), as_len(&t[0]));
        let common = ls.min(lt);
        let mut off = 0u64;
        while off < common {
            let mut b = Batch::new();
            let mut starts = Vec::new();
            while off < common && starts.len() < CHUNKS_IN_FLIGHT {
                let end = (off + CHUNK_BYTES as u64).min(common) - 1;
                b.push(&[
                    b"GETRANGE",
                    key,
                    off.to_string().as_bytes(),
                    end.to_string().as_bytes(),
                ]);
                starts.push(off);
                off = end + 1;
            }
            let (s, t) = self.both(&b).await?;
            for (j, &start) in starts.iter().enumerate() {
                if let Some(e) = err_of(&s[j]).or_else(|| err_of(&t[j])) {
                    return Ok(Some(read_failed(&e)));
                }
                let (a, bb) = (
                    s[j].as_bytes().unwrap_or(b""),
                    t[j].as_bytes().unwrap_or(b""),
                );
                if a != bb {
                    return Ok(bytes_diff(a, bb, start, ls, lt));
                }
            }
        }
        Ok((ls != lt).then(|| {
            (
                Kind::Length,
                format!("string: length {ls} vs {lt} bytes, the first {common} bytes equal"),
            )
        }))
    }

    /// A list compared in `LRANGE` chunks, in order.
    async fn big_list(
        &mut self,
        key: &[u8],
        ls: u64,
        lt: u64,
    ) -> Result<Option<(Kind, String)>, VerifyError> {
        let common = ls.min(lt);
        match self.first_differing_range(key, common, false).await? {
            Err(e) => Ok(Some(read_failed(&e))),
            Ok(Some((start, a, b))) => Ok(list_diff(&a, &b, start, ls, lt)),
            Ok(None) => Ok(list_tail(common, ls, lt)),
        }
    }

    /// Ranks `0..common` of a list (`LRANGE`) or sorted set (`ZRANGE … WITHSCORES`), read
    /// in chunks on both sides and compared by order-dependent digests, without building
    /// the elements; the first chunk whose digests differ is fetched again whole from both
    /// sides and returned with its first rank, if it still differs.
    #[allow(clippy::type_complexity)]
    async fn first_differing_range(
        &mut self,
        key: &[u8],
        common: u64,
        zset: bool,
    ) -> Result<Result<Option<(u64, Vec<Frame>, Vec<Frame>)>, String>, VerifyError> {
        let range = |start: u64, end: u64| {
            let mut b = Batch::new();
            let (s, e) = (start.to_string(), end.to_string());
            if zset {
                b.push(&[b"ZRANGE", key, s.as_bytes(), e.as_bytes(), b"WITHSCORES"]);
            } else {
                b.push(&[b"LRANGE", key, s.as_bytes(), e.as_bytes()]);
            }
            b
        };
        let mut off = 0u64;
        while off < common {
            let mut b = Batch::new();
            let mut ranges = Vec::new();
            while off < common && ranges.len() < CHUNKS_IN_FLIGHT {
                let end = (off + CHUNK_ELEMS as u64).min(common) - 1;
                let one = range(off, end);
                b.buf.extend_from_slice(&one.buf);
                b.ends.push(b.buf.len());
                b.slots.extend(one.slots);
                ranges.push((off, end));
                off = end + 1;
            }
            let (ds, dt) = tokio::join!(
                chunk_digests(self.src, &b, zset),
                chunk_digests(self.tgt, &b, zset)
            );
            let (ds, dt) = match (ds?, dt?) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
            };
            for (j, &(start, end)) in ranges.iter().enumerate() {
                if ds[j] == dt[j] {
                    continue;
                }
                let (s, t) = self.both(&range(start, end)).await?;
                if let Some(e) = err_of(&s[0]).or_else(|| err_of(&t[0])) {
                    return Ok(Err(e));
                }
                let (Frame::Array(a), Frame::Array(bb)) = (&s[0], &t[0]) else {
                    return Ok(Err("a range read did not answer an array".into()));
                };
                let differ = if zset {
                    a.len() != bb.len()
                        || a.chunks(2).zip(bb.chunks(2)).any(|(x, y)| {
                            x[0] != y[0]
                                || x.get(1).map(|f| score_key(f.as_bytes().unwrap_or(b"")))
                                    != y.get(1).map(|f| score_key(f.as_bytes().unwrap_or(b"")))
                        })
                } else {
                    a != bb
                };
                if differ {
                    return Ok(Ok(Some((start, a.clone(), bb.clone()))));
                }
            }
        }
        Ok(Ok(None))
    }

    /// A sorted set compared by `ZRANGE … WITHSCORES` rank chunks, in order; at the first
    /// differing rank, `ZSCORE` on the other side tells which member moved or is missing.
    async fn big_zset(
        &mut self,
        key: &[u8],
        ls: u64,
        lt: u64,
    ) -> Result<Option<(Kind, String)>, VerifyError> {
        let kind = if ls != lt { Kind::Length } else { Kind::Value };
        let length = if ls != lt {
            format!("; length {ls} vs {lt}")
        } else {
            String::new()
        };
        let common = ls.min(lt);
        let first = match self.first_differing_range(key, common, true).await? {
            Err(e) => return Ok(Some(read_failed(&e))),
            Ok(None) => None,
            Ok(Some((_, a, b))) => a.chunks(2).zip(b.chunks(2)).find_map(|(pa, pb)| {
                let bytes = |f: &Frame| f.as_bytes().unwrap_or(b"").to_vec();
                let same = pa[0] == pb[0]
                    && pa.get(1).map(|f| score_key(f.as_bytes().unwrap_or(b"")))
                        == pb.get(1).map(|f| score_key(f.as_bytes().unwrap_or(b"")));
                (!same).then(|| (bytes(&pa[0]), bytes(&pb[0])))
            }),
        };
        let Some((ma, mb)) = first else {
            if ls == lt {
                return Ok(None);
            }
            // Equal up to the shorter one: the next rank of the longer one is extra.
            let (side, on_source) = if ls > lt {
                (&mut *self.src, true)
            } else {
                (&mut *self.tgt, false)
            };
            let mut b = Batch::new();
            let at = common.to_string();
            b.push(&[b"ZRANGE", key, at.as_bytes(), at.as_bytes()]);
            let r = side.run(&b).await?;
            let m = match &r[0] {
                Frame::Array(v) => v.first().and_then(Frame::as_bytes).unwrap_or(b"").to_vec(),
                _ => Vec::new(),
            };
            return Ok(Some((
                Kind::Length,
                format!(
                    "zset member {} only on the {}{length}",
                    show(&m),
                    side_name(on_source)
                ),
            )));
        };
        // Which of the two members differs: look each up on the other side.
        let mut b = Batch::new();
        b.push(&[b"ZSCORE", key, &ma]);
        b.push(&[b"ZSCORE", key, &mb]);
        let (s, t) = self.both(&b).await?;
        let score = |f: &Frame| f.as_bytes().map(<[u8]>::to_vec);
        let (ma_s, ma_t, mb_s, mb_t) = (score(&s[0]), score(&t[0]), score(&s[1]), score(&t[1]));
        let describe = |m: &[u8], sv: Option<Vec<u8>>, tv: Option<Vec<u8>>| match (sv, tv) {
            (Some(_), None) => Some(format!("zset member {} only on the source", show(m))),
            (None, Some(_)) => Some(format!("zset member {} only on the target", show(m))),
            (Some(a), Some(b)) if score_key(&a) != score_key(&b) => Some(format!(
                "zset member {}: source {}, target {}",
                show(m),
                show(&a),
                show(&b)
            )),
            _ => None,
        };
        let d = describe(&ma, ma_s, ma_t)
            .or_else(|| describe(&mb, mb_s, mb_t))
            .unwrap_or_else(|| {
                "zset: members in a different order (changed during the check?)".into()
            });
        Ok(Some((kind, d + &length)))
    }

    /// A set, hash or sorted set: digests of a full scan of each side; when they differ,
    /// the first element of one side that the other lacks or holds differently.
    async fn big_unordered(
        &mut self,
        key: &[u8],
        ty: &Ty,
        ls: u64,
        lt: u64,
    ) -> Result<Option<(Kind, String)>, VerifyError> {
        let (ds, dt) = tokio::join!(
            scan_digest(self.src, ty, key),
            scan_digest(self.tgt, ty, key)
        );
        match (ds?, dt?) {
            (Err(e), _) | (_, Err(e)) => return Ok(Some(read_failed(&e))),
            (Ok(a), Ok(b)) if a == b && ls == lt => {
                if *ty == Ty::Hash && self.field_ttls() {
                    return self.big_field_ttls(key).await;
                }
                return Ok(None);
            }
            _ => {}
        }
        let kind = if ls != lt { Kind::Length } else { Kind::Value };
        let length = if ls != lt {
            format!("; length {ls} vs {lt}")
        } else {
            String::new()
        };
        if let Some(d) = locate(self.src, self.tgt, ty, key, true).await? {
            return Ok(Some((kind, d + &length)));
        }
        if let Some(d) = locate(self.tgt, self.src, ty, key, false).await? {
            return Ok(Some((kind, d + &length)));
        }
        // Digests differed only through elements a scan returned twice.
        Ok((ls != lt).then(|| (Kind::Length, format!("{}: length {ls} vs {lt}", ty.name()))))
    }

    /// A stream: metadata, entries in `XRANGE` chunks, groups, consumers and the PEL.
    async fn stream(
        &mut self,
        key: &[u8],
        ls: u64,
        lt: u64,
    ) -> Result<Option<(Kind, String)>, VerifyError> {
        let kind = if ls != lt { Kind::Length } else { Kind::Value };
        // Metadata.
        let mut b = Batch::new();
        b.push_keyed(&[b"XINFO", b"STREAM", key], 2);
        b.push_keyed(&[b"XINFO", b"GROUPS", key], 2);
        let (s, t) = self.both(&b).await?;
        if let Some(e) = s.iter().chain(&t).find_map(err_of) {
            return Ok(Some(read_failed(&e)));
        }
        let (ms, mt) = (fields(&s[0]), fields(&t[0]));
        for (name, always) in [
            ("last-generated-id", true),
            ("entries-added", false),
            ("max-deleted-entry-id", false),
        ] {
            match (get(&ms, name), get(&mt, name)) {
                (Some(a), Some(b)) if a != b => {
                    return Ok(Some((
                        kind,
                        format!(
                            "stream {name}: source {}, target {}",
                            show_frame(a),
                            show_frame(b)
                        ),
                    )))
                }
                (Some(_), None) | (None, Some(_)) if always => {
                    return Ok(Some((kind, format!("stream {name} on one side only"))))
                }
                _ => {}
            }
        }
        // Entries, in order.
        let mut start = b"-".to_vec();
        loop {
            let mut b = Batch::new();
            b.push(&[
                b"XRANGE",
                key,
                &start,
                b"+",
                b"COUNT",
                CHUNK_ELEMS.to_string().as_bytes(),
            ]);
            let (s, t) = self.both(&b).await?;
            if let Some(e) = err_of(&s[0]).or_else(|| err_of(&t[0])) {
                return Ok(Some(read_failed(&e)));
            }
            let (Frame::Array(a), Frame::Array(bb)) = (&s[0], &t[0]) else {
                return Ok(Some(read_failed("XRANGE did not answer an array")));
            };
            for (ea, eb) in a.iter().zip(bb) {
                let (ia, ib) = (entry_id(ea), entry_id(eb));
                if ia != ib {
                    return Ok(Some((
                        kind,
                        format!("stream entry: source {}, target {}", show(ia), show(ib)),
                    )));
                }
                if ea != eb {
                    return Ok(Some((
                        kind,
                        format!("stream entry {}: fields differ", show(ia)),
                    )));
                }
            }
            if a.len() != bb.len() {
                let (longer, src) = if a.len() > bb.len() {
                    (a, true)
                } else {
                    (bb, false)
                };
                let id = entry_id(&longer[a.len().min(bb.len())]);
                return Ok(Some((
                    kind,
                    format!("stream entry {} only on the {}", show(id), side_name(src)),
                )));
            }
            if a.len() < CHUNK_ELEMS {
                break;
            }
            match a.last().map(entry_id).and_then(next_id) {
                Some(n) => start = n,
                None => break,
            }
        }
        // Groups.
        let groups = |f: &Frame| -> Vec<Vec<(String, Frame)>> {
            match f {
                Frame::Array(gs) => gs.iter().map(fields).collect(),
                _ => Vec::new(),
            }
        };
        let (gs, gt) = (groups(&s[1]), groups(&t[1]));
        let name_of =
            |g: &Vec<(String, Frame)>| get(g, "name").and_then(Frame::as_bytes).map(<[u8]>::to_vec);
        for (mine, other, src) in [(&gs, &gt, true), (&gt, &gs, false)] {
            for g in mine.iter() {
                let n = name_of(g).unwrap_or_default();
                if !other.iter().any(|o| name_of(o).as_deref() == Some(&n[..])) {
                    return Ok(Some((
                        kind,
                        format!("stream group {} only on the {}", show(&n), side_name(src)),
                    )));
                }
            }
        }
        for g in &gs {
            let n = name_of(g).unwrap_or_default();
            let Some(o) = gt.iter().find(|o| name_of(o).as_deref() == Some(&n[..])) else {
                continue;
            };
            for (field, always) in [
                ("last-delivered-id", true),
                ("pending", true),
                ("consumers", true),
                ("entries-read", false),
            ] {
                match (get(g, field), get(o, field)) {
                    (Some(a), Some(b)) if a != b => {
                        return Ok(Some((
                            kind,
                            format!(
                                "stream group {} {field}: source {}, target {}",
                                show(&n),
                                show_frame(a),
                                show_frame(b)
                            ),
                        )))
                    }
                    (Some(_), None) | (None, Some(_)) if always => {
                        return Ok(Some((
                            kind,
                            format!("stream group {} {field} on one side only", show(&n)),
                        )))
                    }
                    _ => {}
                }
            }
            if let Some(d) = self.stream_group(key, &n).await? {
                return Ok(Some((kind, d)));
            }
        }
        Ok((ls != lt).then(|| (Kind::Length, format!("stream: length {ls} vs {lt}"))))
    }

    /// Consumers (names, pending counts) and the PEL (id, consumer, deliveries) of a group.
    async fn stream_group(
        &mut self,
        key: &[u8],
        group: &[u8],
    ) -> Result<Option<String>, VerifyError> {
        let mut b = Batch::new();
        b.push_keyed(&[b"XINFO", b"CONSUMERS", key, group], 2);
        let (s, t) = self.both(&b).await?;
        if let Some(e) = err_of(&s[0]).or_else(|| err_of(&t[0])) {
            return Ok(Some(format!("read failed: {e}")));
        }
        let consumers = |f: &Frame| -> Vec<(Vec<u8>, Option<Frame>)> {
            match f {
                Frame::Array(cs) => cs
                    .iter()
                    .map(|c| {
                        let m = fields(c);
                        (
                            get(&m, "name")
                                .and_then(Frame::as_bytes)
                                .unwrap_or(b"")
                                .to_vec(),
                            get(&m, "pending").cloned(),
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let (mut cs, mut ct) = (consumers(&s[0]), consumers(&t[0]));
        cs.sort_by(|a, b| a.0.cmp(&b.0));
        ct.sort_by(|a, b| a.0.cmp(&b.0));
        if cs != ct {
            for (mine, other, src) in [(&cs, &ct, true), (&ct, &cs, false)] {
                for c in mine.iter() {
                    match other.iter().find(|o| o.0 == c.0) {
                        None => {
                            return Ok(Some(format!(
                                "stream group {} consumer {} only on the {}",
                                show(group),
                                show(&c.0),
                                side_name(src)
                            )))
                        }
                        Some(o) if o.1 != c.1 => {
                            return Ok(Some(format!(
                                "stream group {} consumer {} pending differs",
                                show(group),
                                show(&c.0)
                            )))
                        }
                        _ => {}
                    }
                }
            }
        }
        // The PEL: [id, consumer, idle ms, deliveries]; idle times differ by nature.
        let mut start = b"-".to_vec();
        loop {
            let mut b = Batch::new();
            b.push(&[
                b"XPENDING",
                key,
                group,
                &start,
                b"+",
                CHUNK_ELEMS.to_string().as_bytes(),
            ]);
            let (s, t) = self.both(&b).await?;
            if let Some(e) = err_of(&s[0]).or_else(|| err_of(&t[0])) {
                return Ok(Some(format!("read failed: {e}")));
            }
            let pel = |f: &Frame| -> Vec<(Vec<u8>, Vec<u8>, i64)> {
                match f {
                    Frame::Array(es) => es
                        .iter()
                        .filter_map(|e| match e {
                            Frame::Array(p) if p.len() == 4 => Some((
                                p[0].as_bytes()?.to_vec(),
                                p[1].as_bytes()?.to_vec(),
                                p[3].to_i64()?,
                            )),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            };
            let (a, bb) = (pel(&s[0]), pel(&t[0]));
            for (ea, eb) in a.iter().zip(&bb) {
                if ea != eb {
                    return Ok(Some(format!(
                        "stream group {} pending entry: source {} ({}, {} deliveries), target {} ({}, {} deliveries)",
                        show(group),
                        show(&ea.0),
                        show(&ea.1),
                        ea.2,
                        show(&eb.0),
                        show(&eb.1),
                        eb.2
                    )));
                }
            }
            if a.len() != bb.len() {
                let (longer, src) = if a.len() > bb.len() {
                    (&a, true)
                } else {
                    (&bb, false)
                };
                return Ok(Some(format!(
                    "stream group {} pending entry {} only on the {}",
                    show(group),
                    show(&longer[a.len().min(bb.len())].0),
                    side_name(src)
                )));
            }
            if a.len() < CHUNK_ELEMS {
                return Ok(None);
            }
            match a.last().and_then(|e| next_id(&e.0)) {
                Some(n) => start = n,
                None => return Ok(None),
            }
        }
    }
}

/// `HPTTL key FIELDS n field...`
fn push_hpttl(b: &mut Batch, key: &[u8], fields: &[Vec<u8>]) {
    let n = fields.len().to_string();
    let mut args: Vec<&[u8]> = vec![b"HPTTL", key, b"FIELDS", n.as_bytes()];
    args.extend(fields.iter().map(Vec::as_slice));
    b.push(&args);
}

/// The first field whose TTL differs beyond `tol` ms (or is set on one side only), from
/// two `HPTTL` replies: -2 no such field (left to the value comparison), -1 no TTL.
fn field_ttl_diff(fields: &[Vec<u8>], s: &Frame, t: &Frame, tol: i64) -> Option<String> {
    if let Some(e) = err_of(s).or_else(|| err_of(t)) {
        return Some(format!("hash field TTLs: read failed: {e}"));
    }
    let (Frame::Array(a), Frame::Array(b)) = (s, t) else {
        return Some("hash field TTLs: HPTTL did not answer an array".into());
    };
    let show_ttl = |v: i64| {
        if v >= 0 {
            format!("{v} ms")
        } else {
            "none".into()
        }
    };
    for ((f, x), y) in fields.iter().zip(a).zip(b) {
        let (x, y) = (x.to_i64().unwrap_or(-2), y.to_i64().unwrap_or(-2));
        if x == -2 || y == -2 {
            continue;
        }
        let differ = match (x >= 0, y >= 0) {
            (true, true) => (x - y).abs() > tol,
            (false, false) => false,
            _ => true,
        };
        if differ {
            return Some(format!(
                "hash field {} ttl: source {}, target {}",
                show(f),
                show_ttl(x),
                show_ttl(y)
            ));
        }
    }
    None
}

fn read_failed(e: &str) -> (Kind, String) {
    (
        Kind::Value,
        format!("read failed: {e} (changed during the check?)"),
    )
}

/// Bytes starting at offset `off` of strings of lengths `ls`, `lt`.
fn bytes_diff(a: &[u8], b: &[u8], off: u64, ls: u64, lt: u64) -> Option<(Kind, String)> {
    if a == b && ls == lt {
        return None;
    }
    let at = a.iter().zip(b).position(|(x, y)| x != y);
    let kind = if ls != lt { Kind::Length } else { Kind::Value };
    Some(match at {
        Some(j) => {
            let from = j.saturating_sub(8);
            let to_a = (j + 16).min(a.len());
            let to_b = (j + 16).min(b.len());
            let mut d = format!(
                "string byte {}: source {}, target {}",
                off + j as u64,
                show(&a[from..to_a]),
                show(&b[from..to_b])
            );
            if ls != lt {
                d.push_str(&format!("; length {ls} vs {lt}"));
            }
            (kind, d)
        }
        None => (
            kind,
            format!(
                "string: length {ls} vs {lt} bytes, the first {} bytes equal",
                ls.min(lt)
            ),
        ),
    })
}

/// The first differing element of two list chunks that start at index `off`.
fn list_diff(a: &[Frame], b: &[Frame], off: u64, ls: u64, lt: u64) -> Option<(Kind, String)> {
    let j = a.iter().zip(b).position(|(x, y)| x != y)?;
    let kind = if ls != lt { Kind::Length } else { Kind::Value };
    let mut d = format!(
        "list index {}: source {}, target {}",
        off + j as u64,
        show_frame(&a[j]),
        show_frame(&b[j])
    );
    if ls != lt {
        d.push_str(&format!("; length {ls} vs {lt}"));
    }
    Some((kind, d))
}

/// Lists equal on their first `common` elements: a difference if the lengths differ.
fn list_tail(common: u64, ls: u64, lt: u64) -> Option<(Kind, String)> {
    (ls != lt).then(|| {
        (
            Kind::Length,
            format!(
                "list: length {ls} vs {lt}; index {} only on the {}",
                common.min(ls).min(lt),
                side_name(ls > lt)
            ),
        )
    })
}

/// Names elements in messages.
fn elem_name(ty: &Ty) -> &'static str {
    match ty {
        Ty::Hash => "hash field",
        Ty::ZSet => "zset member",
        _ => "set member",
    }
}

/// (member, comparison form of the value, value as sent) from a `*SCAN` item list.
fn scan_items<'f>(ty: &Ty, items: &'f [Frame]) -> Vec<(&'f [u8], Vec<u8>, &'f [u8])> {
    let bytes = |f: &'f Frame| f.as_bytes().unwrap_or(b"");
    let mut out: Vec<_> = match ty {
        Ty::Set => items
            .iter()
            .map(|m| (bytes(m), Vec::new(), &b""[..]))
            .collect(),
        Ty::ZSet => items
            .chunks(2)
            .map(|p| (bytes(&p[0]), score_key(bytes(&p[1])), bytes(&p[1])))
            .collect(),
        _ => items
            .chunks(2)
            .map(|p| (bytes(&p[0]), bytes(&p[1]).to_vec(), bytes(&p[1])))
            .collect(),
    };
    // A scan may return an element twice.
    out.sort_unstable_by(|x, y| x.0.cmp(y.0));
    out.dedup_by(|x, y| x.0 == y.0);
    out
}

/// Two whole small collections, compared by sorted merge.
fn unordered_diff(ty: &Ty, a: &[Frame], b: &[Frame], ls: u64, lt: u64) -> Option<(Kind, String)> {
    let (a, b) = (scan_items(ty, a), scan_items(ty, b));
    let kind = if ls != lt { Kind::Length } else { Kind::Value };
    let (mut i, mut j) = (0, 0);
    let found = loop {
        match (a.get(i), b.get(j)) {
            (None, None) => break None,
            (Some(x), None) => {
                break Some(format!(
                    "{} {} only on the source",
                    elem_name(ty),
                    show(x.0)
                ))
            }
            (None, Some(y)) => {
                break Some(format!(
                    "{} {} only on the target",
                    elem_name(ty),
                    show(y.0)
                ))
            }
            (Some(x), Some(y)) => match x.0.cmp(y.0) {
                std::cmp::Ordering::Less => {
                    break Some(format!(
                        "{} {} only on the source",
                        elem_name(ty),
                        show(x.0)
                    ))
                }
                std::cmp::Ordering::Greater => {
                    break Some(format!(
                        "{} {} only on the target",
                        elem_name(ty),
                        show(y.0)
                    ))
                }
                std::cmp::Ordering::Equal if x.1 != y.1 => {
                    break Some(format!(
                        "{} {}: source {}, target {}",
                        elem_name(ty),
                        show(x.0),
                        show(x.2),
                        show(y.2)
                    ))
                }
                _ => {
                    i += 1;
                    j += 1;
                }
            },
        }
    };
    match found {
        Some(mut d) => {
            if ls != lt {
                d.push_str(&format!("; length {ls} vs {lt}"));
            }
            Some((kind, d))
        }
        None => (ls != lt).then(|| (Kind::Length, format!("{}: length {ls} vs {lt}", ty.name()))),
    }
}

/// The scan command of a type.
fn scan_cmd(ty: &Ty) -> &'static [u8] {
    match ty {
        Ty::Set => b"SSCAN",
        Ty::ZSet => b"ZSCAN",
        _ => b"HSCAN",
    }
}

/// A full `*SCAN` of one collection folded into a digest as the replies arrive (no
/// element is allocated); `Err` with an error reply.
async fn scan_digest(
    side: &mut Side,
    ty: &Ty,
    key: &[u8],
) -> Result<Result<Digest, String>, VerifyError> {
    let mut d = Digest::default();
    let mut cursor = b"0".to_vec();
    let count = CHUNK_ELEMS.to_string();
    // The field (or member) whose value (or score) comes next; reused.
    let mut field: Vec<u8> = Vec::new();
    loop {
        let mut b = Batch::new();
        b.push(&[scan_cmd(ty), key, &cursor, b"COUNT", count.as_bytes()]);
        let mut next: Option<Vec<u8>> = None;
        let mut err = None;
        let mut n = 0usize;
        side.visit(&b, &mut |_, e| match e {
            Event::Bulk(x) if next.is_none() => next = Some(x.to_vec()),
            Event::Bulk(x) => {
                match ty {
                    Ty::Set => d.add(&[x]),
                    _ if n % 2 == 0 => {
                        field.clear();
                        field.extend_from_slice(x);
                    }
                    Ty::ZSet => d.add(&[&field, &score_key(x)]),
                    _ => d.add(&[&field, x]),
                }
                n += 1;
            }
            Event::Error(x) | Event::BulkError(x) => {
                err.get_or_insert_with(|| String::from_utf8_lossy(x).into_owned());
            }
            _ => {}
        })
        .await?;
        if let Some(e) = err {
            return Ok(Err(e));
        }
        match next {
            Some(c) if c == b"0" => return Ok(Ok(d)),
            Some(c) => cursor = c,
            None => return Ok(Err("unexpected *SCAN reply".into())),
        }
    }
}

/// Order-dependent digests (elements, hash) of each reply of a batch of `LRANGE` or
/// `ZRANGE … WITHSCORES` chunks, computed as the replies arrive; `Err` with an error reply.
async fn chunk_digests(
    side: &mut Side,
    b: &Batch,
    zset: bool,
) -> Result<Result<Vec<(u64, u64)>, String>, VerifyError> {
    use std::hash::Hasher;
    let mut hs: Vec<(u64, std::collections::hash_map::DefaultHasher)> =
        (0..b.len()).map(|_| (0, Default::default())).collect();
    let mut err = None;
    side.visit(b, &mut |i, e| match e {
        Event::Bulk(x) => {
            if let Some((n, h)) = hs.get_mut(i) {
                if zset && *n % 2 == 1 {
                    h.write(&score_key(x));
                } else {
                    h.write_usize(x.len());
                    h.write(x);
                }
                *n += 1;
            }
        }
        Event::Error(x) | Event::BulkError(x) => {
            err.get_or_insert_with(|| String::from_utf8_lossy(x).into_owned());
        }
        _ => {}
    })
    .await?;
    Ok(match err {
        Some(e) => Err(e),
        None => Ok(hs.into_iter().map(|(n, h)| (n, h.finish())).collect()),
    })
}

/// Scans `a` and looks each element up on `b` (`SISMEMBER`, `HGET`, `ZSCORE`); the first
/// element `b` lacks or holds differently, described with the source first.
async fn locate(
    a: &mut Side,
    b: &mut Side,
    ty: &Ty,
    key: &[u8],
    a_is_source: bool,
) -> Result<Option<String>, VerifyError> {
    let mut cursor = b"0".to_vec();
    let count = CHUNK_ELEMS.to_string();
    loop {
        let mut q = Batch::new();
        q.push(&[scan_cmd(ty), key, &cursor, b"COUNT", count.as_bytes()]);
        let r = a.run(&q).await?;
        let Some((next, items)) = scan_parts(&r[0]) else {
            return Ok(err_of(&r[0]).map(|e| format!("read failed: {e}")));
        };
        let items = scan_items(ty, items);
        let mut look = Batch::new();
        for (m, _, _) in &items {
            let cmd: &[u8] = match ty {
                Ty::Set => b"SISMEMBER",
                Ty::ZSet => b"ZSCORE",
                _ => b"HGET",
            };
            look.push(&[cmd, key, m]);
        }
        let replies = b.run(&look).await?;
        for ((m, norm, raw), r) in items.iter().zip(&replies) {
            if let Some(e) = err_of(r) {
                return Ok(Some(format!("read failed: {e}")));
            }
            let (present, other): (bool, Option<&[u8]>) = match ty {
                Ty::Set => (r.to_i64() == Some(1), None),
                _ => (r.as_bytes().is_some(), r.as_bytes()),
            };
            if !present {
                return Ok(Some(format!(
                    "{} {} only on the {}",
                    elem_name(ty),
                    show(m),
                    side_name(a_is_source)
                )));
            }
            if let Some(o) = other {
                let o_norm = if *ty == Ty::ZSet {
                    score_key(o)
                } else {
                    o.to_vec()
                };
                if &o_norm != norm {
                    let (s, t) = if a_is_source { (*raw, o) } else { (o, *raw) };
                    return Ok(Some(format!(
                        "{} {}: source {}, target {}",
                        elem_name(ty),
                        show(m),
                        show(s),
                        show(t)
                    )));
                }
            }
        }
        if next == b"0" {
            return Ok(None);
        }
        cursor = next.to_vec();
    }
}

/// `[name, value, name, value...]` (RESP2) or a map (RESP3) as pairs.
fn fields(f: &Frame) -> Vec<(String, Frame)> {
    match f {
        Frame::Array(v) => v
            .chunks(2)
            .filter_map(|p| {
                Some((
                    String::from_utf8_lossy(p[0].as_bytes()?).into_owned(),
                    p.get(1)?.clone(),
                ))
            })
            .collect(),
        Frame::Map(m) => m
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    String::from_utf8_lossy(k.as_bytes()?).into_owned(),
                    v.clone(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn get<'f>(m: &'f [(String, Frame)], name: &str) -> Option<&'f Frame> {
    m.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn show_frame(f: &Frame) -> String {
    match f {
        Frame::Integer(n) => n.to_string(),
        Frame::Null => "nil".into(),
        f => match f.as_bytes() {
            Some(b) => show(b),
            None => format!("{f:?}"),
        },
    }
}

/// The id of an `XRANGE` entry `[id, [field, value...]]`.
fn entry_id(e: &Frame) -> &[u8] {
    match e {
        Frame::Array(v) => v.first().and_then(Frame::as_bytes).unwrap_or(b""),
        _ => b"",
    }
}

/// The smallest stream id after `id` (`ms-seq`), as an inclusive range start.
fn next_id(id: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(id).ok()?;
    let (ms, seq) = text.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    let (ms, seq) = match seq.checked_add(1) {
        Some(s) => (ms, s),
        None => (ms.checked_add(1)?, 0),
    };
    Some(format!("{ms}-{seq}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn scores_compare_by_value_bits() {
        assert_eq!(score_key(b"1.5"), score_key(b"1.50"));
        assert_eq!(score_key(b"-0"), score_key(b"0"));
        assert_ne!(
            score_key(b"0.12345678901234"),
            score_key(b"0.123456789012345")
        );
        assert_eq!(
            score_key(b"inf"),
            f64::INFINITY.to_bits().to_be_bytes().to_vec()
        );
    }

    #[test]
    fn names_the_first_differing_hash_field_and_list_index() {
        let a = [bulk("name"), bulk("x"), bulk("email"), bulk("a@b")];
        let b = [bulk("email"), bulk("a@c"), bulk("name"), bulk("x")];
        let (kind, d) = unordered_diff(&Ty::Hash, &a, &b, 2, 2).unwrap();
        assert_eq!(kind, Kind::Value);
        assert!(d.contains("hash field \"email\""), "{d}");
        assert!(unordered_diff(&Ty::Hash, &a, &a, 2, 2).is_none());
        let l1 = [bulk("a"), bulk("b"), bulk("c")];
        let l2 = [bulk("a"), bulk("B"), bulk("c")];
        assert!(list_diff(&l1, &l2, 40, 3, 3)
            .unwrap()
            .1
            .contains("index 41"));
        assert_eq!(list_tail(3, 5, 3).unwrap().0, Kind::Length);
        assert!(list_tail(3, 3, 3).is_none());
    }

    #[test]
    fn stream_ids_advance() {
        assert_eq!(next_id(b"5-1").unwrap(), b"5-2");
        assert_eq!(next_id(b"5-18446744073709551615").unwrap(), b"6-0");
        assert!(next_id(b"x").is_none());
    }
}
