//! LZF decompression (the `0xC3` string encoding of RDB files).
//!
//! An LZF stream is a sequence of instructions, each starting with a control byte:
//!
//! ```text
//! 000LLLLL <L+1 literal bytes>                   literal run of 1..=32 bytes
//! LLLDDDDD DDDDDDDD                              back-reference, LLL in 1..=6
//! 111DDDDD EEEEEEEE DDDDDDDD                     back-reference, LLL = 7 (extended)
//!
//! length   = LLL + 2            (LLL = 7: 7 + EEEEEEEE + 2, so 3..=264 bytes)
//! distance = (DDDDD << 8) + DDDDDDDD + 1          (1..=8192 bytes back from the end
//!                                                  of the output so far)
//! ```
//!
//! A back-reference copies byte by byte, so it may overlap the bytes it is producing
//! (distance 1, length 100 repeats one byte 100 times). The RDB stores the compressed
//! and the uncompressed length in front of the data (`0xC3 <clen> <ulen> <data>`);
//! the server rejects a string that does not decompress to exactly `ulen` bytes
//! (`lzf_decompress(...) != len` in `rdbGenericLoadStringObject`), and so do we.
//!
//! Two decoders share one instruction parser: [`decompress`] for a blob that is in
//! memory whole, and [`LzfStream`] for values too big to hold compressed and
//! decompressed at once. Because no reference reaches more than
//! [`LZF_MAX_DISTANCE`] bytes back, the stream only remembers that much output.

use super::error::EncodingError;

const ENC: &str = "lzf";

/// Control bytes below this start a literal run; from it on, a back-reference.
const LZF_LITERAL_LIMIT: u8 = 1 << 5;
/// The 3-bit length field of a back-reference saying "an extra length byte follows".
const LZF_EXTENDED_LEN: usize = 7;
/// The farthest a back-reference reaches: a 13-bit distance field plus one.
pub const LZF_MAX_DISTANCE: usize = 1 << 13;

/// One parsed instruction.
enum Op<'a> {
    /// Copy these input bytes to the output.
    Literal(&'a [u8]),
    /// Copy `len` bytes starting `dist` bytes before the end of the output.
    Ref { len: usize, dist: usize },
}

/// Why an instruction could not be parsed: the input ends inside it.
enum Short {
    /// A literal run of this many bytes needs more input than is left.
    Literal(usize),
    /// A back-reference's length or distance byte is missing.
    Ref,
}

/// Parses the instruction at `input[ip..]` (which must not be empty), returning it and
/// the number of input bytes it occupies.
#[inline(always)]
fn parse(input: &[u8], ip: usize) -> Result<(Op<'_>, usize), Short> {
    let ctrl = *input.get(ip).ok_or(Short::Ref)?;
    if ctrl < LZF_LITERAL_LIMIT {
        let len = usize::from(ctrl) + 1;
        let start = ip + 1;
        return match input.get(start..start + len) {
            Some(bytes) => Ok((Op::Literal(bytes), 1 + len)),
            None => Err(Short::Literal(len)),
        };
    }
    let mut len = usize::from(ctrl >> 5);
    let mut at = ip + 1;
    if len == LZF_EXTENDED_LEN {
        len += usize::from(*input.get(at).ok_or(Short::Ref)?);
        at += 1;
    }
    let low = usize::from(*input.get(at).ok_or(Short::Ref)?);
    let dist = (usize::from(ctrl & 0x1f) << 8) + low + 1;
    Ok((Op::Ref { len: len + 2, dist }, at + 1 - ip))
}

#[cold]
fn short_error(ip: usize, short: Short) -> EncodingError {
    match short {
        Short::Literal(len) => EncodingError::new(
            ENC,
            ip,
            format!("literal run of {len} bytes runs past the end of the compressed data"),
        ),
        Short::Ref => EncodingError::new(
            ENC,
            ip,
            "back-reference runs past the end of the compressed data",
        ),
    }
}

#[cold]
fn overflow_error(ip: usize, len: usize, produced: u64, expected: u64) -> EncodingError {
    EncodingError::new(
        ENC,
        ip,
        format!(
            "instruction adds {len} bytes after {produced} of the expected {expected} \
             were decoded"
        ),
    )
}

#[cold]
fn before_start_error(ip: usize, dist: usize, produced: u64) -> EncodingError {
    EncodingError::new(
        ENC,
        ip,
        format!("back-reference reaches {dist} bytes back, but only {produced} were decoded"),
    )
}

/// Decompresses the whole of `input` and appends exactly `expected_len` bytes to
/// `out`. On error `out` is left as it was. Allocates `expected_len` bytes up front, so
/// the caller must have checked it against its own limits.
pub fn decompress(
    input: &[u8],
    out: &mut Vec<u8>,
    expected_len: usize,
) -> Result<(), EncodingError> {
    let start = out.len();
    // Zero-filling costs a memset, but lets every instruction write into a slice of
    // known size, so short copies can be fixed-size ones instead of calls to memcpy.
    out.reserve_exact(expected_len);
    out.resize(start + expected_len, 0);
    let result = decompress_slice(input, &mut out[start..]);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Bytes copied at once by the fast paths of [`decompress_slice`]; a literal run is
/// at most this long.
const CHUNK: usize = 32;
/// Chunk of the fast back-reference copy; references at least this far back can be
/// copied this many bytes at a time without reading bytes they are still writing.
const REF_CHUNK: usize = 16;

/// Decompresses `input` into exactly the whole of `out`.
#[inline]
fn decompress_slice(input: &[u8], out: &mut [u8]) -> Result<(), EncodingError> {
    let olen = out.len();
    let mut ip = 0;
    let mut op = 0;
    while ip < input.len() {
        let (instr, size) = parse(input, ip).map_err(|s| short_error(ip, s))?;
        match instr {
            Op::Literal(bytes) => {
                let len = bytes.len();
                if len > olen - op {
                    return Err(overflow_error(ip, len, op as u64, olen as u64));
                }
                // Copy a whole chunk when both sides have room: the bytes past `len`
                // are scratch that the following instructions overwrite (and the final
                // length check guarantees they do).
                let from = ip + 1;
                match (input.get(from..from + CHUNK), out.get_mut(op..op + CHUNK)) {
                    (Some(src), Some(dst)) => dst.copy_from_slice(src),
                    _ => {
                        if let Some(dst) = out.get_mut(op..op + len) {
                            dst.copy_from_slice(bytes);
                        }
                    }
                }
                op += len;
            }
            Op::Ref { len, dist } => {
                if len > olen - op {
                    return Err(overflow_error(ip, len, op as u64, olen as u64));
                }
                if dist > op {
                    return Err(before_start_error(ip, dist, op as u64));
                }
                copy_back_in_place(out, op, dist, len);
                op += len;
            }
        }
        ip += size;
    }
    if op != olen {
        return Err(EncodingError::new(
            ENC,
            ip,
            format!("compressed data ends after {op} of the expected {olen} bytes"),
        ));
    }
    Ok(())
}

/// Writes `len` bytes at `out[op..]` that repeat the bytes from `dist` before `op`.
/// The caller has checked `1 <= dist <= op` and `op + len <= out.len()`.
#[inline(always)]
fn copy_back_in_place(out: &mut [u8], op: usize, dist: usize, len: usize) {
    let src = op - dist;
    let rounded = len.div_ceil(REF_CHUNK) * REF_CHUNK;
    if dist >= REF_CHUNK && op + rounded <= out.len() {
        // Fixed-size chunks, each reading bytes that are already final because they lie
        // at least one chunk behind; the tail past `len` is scratch, as for literals.
        for k in (0..rounded).step_by(REF_CHUNK) {
            out.copy_within(src + k..src + k + REF_CHUNK, op + k);
        }
    } else if dist >= len {
        out.copy_within(src..src + len, op);
    } else {
        // Overlapping: the output repeats with period `dist`. Copy whole periods, each
        // chunk as long as everything written since `src`, so the chunks double.
        let mut done = 0;
        while done < len {
            let n = (len - done).min(dist + done);
            out.copy_within(src..src + n, op + done);
            done += n;
        }
    }
}

/// Decompresses one LZF string fed in pieces, for values too large to buffer.
///
/// The caller presents compressed bytes with [`feed`](LzfStream::feed); each call
/// decodes every whole instruction it is given and reports how many bytes that took.
/// An instruction cut off at the end of the piece is left for the next call, so the
/// caller keeps the unconsumed tail and presents it again with more bytes (an
/// instruction is at most 33 bytes, so a piece of 33 bytes or more always makes
/// progress). Output is appended to the caller's buffer, which the caller may drain
/// between calls: the stream keeps its own copy of the last [`LZF_MAX_DISTANCE`]
/// bytes for back-references.
///
/// After the last compressed byte the caller checks [`is_done`](LzfStream::is_done)
/// and that nothing was left unconsumed. After an error the stream stays failed.
#[derive(Debug, Clone)]
pub struct LzfStream {
    expected: u64,
    produced: u64,
    /// Compressed bytes consumed by earlier calls, to place errors within the blob.
    consumed: u64,
    /// The last `min(produced, LZF_MAX_DISTANCE)` output bytes.
    history: Vec<u8>,
    failed: bool,
}

impl LzfStream {
    /// A stream that must decompress to exactly `expected_len` bytes.
    pub fn new(expected_len: u64) -> Self {
        LzfStream {
            expected: expected_len,
            produced: 0,
            consumed: 0,
            history: Vec::new(),
            failed: false,
        }
    }

    /// True once all `expected_len` bytes have been produced.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.produced == self.expected
    }

    /// Output bytes produced so far.
    #[inline]
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Decodes the whole instructions at the front of `input`, appending their output to
    /// `out`, and returns how many input bytes they took. On error nothing of this call's
    /// output is left in `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, EncodingError> {
        if self.failed {
            return Err(EncodingError::new(
                ENC,
                self.offset(0),
                "stream fed again after an error",
            ));
        }
        let out_start = out.len();
        match self.feed_inner(input, out, out_start) {
            Ok(ip) => {
                self.remember(out.get(out_start..).unwrap_or_default());
                self.consumed += ip as u64;
                Ok(ip)
            }
            Err(e) => {
                out.truncate(out_start);
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Compressed bytes taken so far: the blob offset where the next piece starts.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Blob offset of `ip` within the current piece.
    fn offset(&self, ip: usize) -> usize {
        usize::try_from(self.consumed)
            .unwrap_or(usize::MAX)
            .saturating_add(ip)
    }

    fn feed_inner(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_start: usize,
    ) -> Result<usize, EncodingError> {
        let mut ip = 0;
        let mut produced = self.produced;
        while ip < input.len() {
            if produced == self.expected {
                return Err(EncodingError::new(
                    ENC,
                    self.offset(ip),
                    format!(
                        "compressed data continues after all {} bytes were decoded",
                        self.expected
                    ),
                ));
            }
            let (instr, size) = match parse(input, ip) {
                Ok(parsed) => parsed,
                // Cut off: the caller presents it again with the following bytes.
                Err(_) => break,
            };
            let room = self.expected - produced;
            let added = match instr {
                Op::Literal(bytes) => {
                    if bytes.len() as u64 > room {
                        let at = self.offset(ip);
                        return Err(overflow_error(at, bytes.len(), produced, self.expected));
                    }
                    out.extend_from_slice(bytes);
                    bytes.len()
                }
                Op::Ref { len, dist } => {
                    if len as u64 > room {
                        let at = self.offset(ip);
                        return Err(overflow_error(at, len, produced, self.expected));
                    }
                    if dist as u64 > produced {
                        return Err(before_start_error(self.offset(ip), dist, produced));
                    }
                    if dist <= out.len() - out_start {
                        let src = out.len() - dist;
                        if dist >= len {
                            // Measured faster here than zero-filling and copying in place.
                            out.extend_from_within(src..src + len);
                        } else {
                            let op = out.len();
                            out.resize(op + len, 0);
                            copy_back_in_place(out, op, dist, len);
                        }
                    } else {
                        self.copy_across(out, out_start, dist, len);
                    }
                    len
                }
            };
            produced += added as u64;
            ip += size;
        }
        self.produced = produced;
        Ok(ip)
    }

    /// A back-reference that starts in the history of earlier calls. The bytes are
    /// taken one at a time from the history followed by this call's output; this is
    /// the slow path, taken only in the first 8 KiB of each call's output.
    #[cold]
    fn copy_across(&self, out: &mut Vec<u8>, out_start: usize, dist: usize, len: usize) {
        let h = self.history.len();
        for _ in 0..len {
            let fresh = out.len() - out_start;
            // Position of the source byte in `history ++ out[out_start..]`; the caller
            // checked dist <= produced, and the history holds all the output that is
            // within reach, so this cannot underflow.
            let src = h + fresh - dist;
            let byte = if src < h {
                self.history[src]
            } else {
                out[out_start + (src - h)]
            };
            out.push(byte);
        }
    }

    /// Keeps the last `LZF_MAX_DISTANCE` bytes of history followed by `fresh`.
    fn remember(&mut self, fresh: &[u8]) {
        if fresh.len() >= LZF_MAX_DISTANCE {
            self.history.clear();
            self.history
                .extend_from_slice(&fresh[fresh.len() - LZF_MAX_DISTANCE..]);
            return;
        }
        let keep = LZF_MAX_DISTANCE - fresh.len();
        if self.history.len() > keep {
            self.history.drain(..self.history.len() - keep);
        }
        self.history.extend_from_slice(fresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A small greedy LZF compressor: remembers the last position of every 3-byte
    /// sequence and emits the longest match it finds there, else a literal byte.
    fn compress(data: &[u8]) -> Vec<u8> {
        fn flush(out: &mut Vec<u8>, lit: &mut Vec<u8>) {
            if !lit.is_empty() {
                out.push((lit.len() - 1) as u8);
                out.append(lit);
            }
        }
        let mut out = Vec::new();
        let mut lit = Vec::new();
        let mut seen: HashMap<[u8; 3], usize> = HashMap::new();
        let mut i = 0;
        while i < data.len() {
            let key: Option<[u8; 3]> = data.get(i..i + 3).map(|k| k.try_into().unwrap());
            let found = key
                .and_then(|k| seen.get(&k).copied())
                .filter(|&j| i - j <= LZF_MAX_DISTANCE);
            if let Some(k) = key {
                seen.insert(k, i);
            }
            match found {
                Some(j) => {
                    let mut len = 3;
                    while len < 264 && i + len < data.len() && data[j + len] == data[i + len] {
                        len += 1;
                    }
                    flush(&mut out, &mut lit);
                    let off = i - j - 1;
                    let l = len - 2;
                    if l < 7 {
                        out.push(((l << 5) | (off >> 8)) as u8);
                    } else {
                        out.push(((7 << 5) | (off >> 8)) as u8);
                        out.push((l - 7) as u8);
                    }
                    out.push(off as u8);
                    for p in i + 1..i + len {
                        if let Some(k) = data.get(p..p + 3) {
                            seen.insert(k.try_into().unwrap(), p);
                        }
                    }
                    i += len;
                }
                None => {
                    lit.push(data[i]);
                    if lit.len() == 32 {
                        flush(&mut out, &mut lit);
                    }
                    i += 1;
                }
            }
        }
        flush(&mut out, &mut lit);
        out
    }

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Random bytes, runs, short repeats, and a block repeated at exactly the farthest
    /// distance LZF can reach.
    fn samples() -> Vec<Vec<u8>> {
        let mut far = noise(LZF_MAX_DISTANCE, 7);
        far.extend_from_within(..);
        far.extend_from_slice(&noise(100, 8));
        let mut mixed = Vec::new();
        for i in 0..200u32 {
            mixed.extend_from_slice(format!("user:{i}:name,").as_bytes());
            mixed.extend_from_slice(&noise((i % 7) as usize, u64::from(i)));
            mixed.extend(std::iter::repeat_n(b'z', (i % 300) as usize));
        }
        vec![
            Vec::new(),
            b"a".to_vec(),
            noise(1000, 1),
            vec![0u8; 5000],
            b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc".to_vec(),
            far,
            mixed,
        ]
    }

    /// Feeds `input` to a stream the way the decoder will: a buffer that receives the
    /// input up to each cut in turn and keeps what the stream did not consume. Fails
    /// unless the stream consumed everything and produced exactly `expected` bytes.
    fn stream_decode(input: &[u8], expected: usize, cuts: &[usize]) -> Result<Vec<u8>, String> {
        let mut s = LzfStream::new(expected as u64);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            pending.extend_from_slice(&input[prev..cut]);
            prev = cut;
            let used = s.feed(&pending, &mut out).map_err(|e| e.to_string())?;
            pending.drain(..used);
            assert!(s.history.len() <= LZF_MAX_DISTANCE);
        }
        if !pending.is_empty() {
            return Err(format!("{} bytes left unconsumed", pending.len()));
        }
        if !s.is_done() || s.produced() != expected as u64 || out.len() != expected {
            return Err(format!("produced {} of {expected} bytes", s.produced()));
        }
        Ok(out)
    }

    #[test]
    fn one_shot_round_trips_every_sample() {
        for data in samples() {
            let c = compress(&data);
            let mut out = b"prefix".to_vec();
            decompress(&c, &mut out, data.len()).unwrap();
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(&out[6..], &data[..]);
        }
    }

    #[test]
    fn compressor_exercises_every_instruction_kind() {
        let c = compress(&samples()[6]);
        let mut literal = false;
        let mut short_ref = false;
        let mut long_ref = false;
        let mut ip = 0;
        while ip < c.len() {
            let (op, size) = parse(&c, ip).ok().unwrap();
            match op {
                Op::Literal(_) => literal = true,
                Op::Ref { len, .. } if len < 9 => short_ref = true,
                Op::Ref { .. } => long_ref = true,
            }
            ip += size;
        }
        assert!(literal && short_ref && long_ref);
    }

    #[test]
    fn stream_matches_one_shot_at_every_split() {
        for data in samples() {
            let c = compress(&data);
            // Splitting at every point is quadratic; for the big samples split at every
            // point near the ends and at a stride elsewhere.
            let step = if c.len() > 2000 { 97 } else { 1 };
            let mut cuts: Vec<usize> = (0..=c.len()).step_by(step).collect();
            cuts.extend(0..c.len().min(40));
            cuts.extend(c.len().saturating_sub(40)..=c.len());
            for cut in cuts {
                assert_eq!(
                    stream_decode(&c, data.len(), &[cut]).unwrap(),
                    data,
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn stream_survives_tiny_pieces_and_a_drained_output() {
        for data in samples() {
            let c = compress(&data);
            // One new byte per call: almost every instruction is cut at least once.
            let cuts: Vec<usize> = (1..c.len()).collect();
            assert_eq!(stream_decode(&c, data.len(), &cuts).unwrap(), data);

            // The caller drains its output buffer between calls: back-references must
            // then come from the stream's own history.
            let mut s = LzfStream::new(data.len() as u64);
            let mut all = Vec::new();
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < c.len() {
                let end = (pos + 50).min(c.len());
                pos += s.feed(&c[pos..end], &mut out).unwrap();
                all.append(&mut out);
            }
            assert!(s.is_done());
            assert_eq!(all, data);
        }
    }

    #[test]
    fn overlapping_back_reference_repeats_its_period() {
        // "abc", a reference 3 back of length 8 (short form), one 3 back of length 9
        // (extended form), and one 1 back of length 4: a run of the last byte.
        let input = [0x02, b'a', b'b', b'c', 6 << 5, 2, 0xe0, 0, 2, 2 << 5, 0];
        let mut out = Vec::new();
        decompress(&input, &mut out, 3 + 8 + 9 + 4).unwrap();
        assert_eq!(out, b"abcabcabcabcabcabcabbbbb");
    }

    fn err(input: &[u8], expected: usize) -> String {
        let mut out = b"keep".to_vec();
        let e = decompress(input, &mut out, expected).unwrap_err();
        assert_eq!(out, b"keep", "output restored after an error");
        // The stream must reject the same input (possibly only at the end, for an
        // instruction that is cut off).
        let mut s = LzfStream::new(expected as u64);
        let mut sout = Vec::new();
        match s.feed(input, &mut sout) {
            Err(_) => assert!(sout.is_empty()),
            Ok(used) => assert!(used < input.len() || !s.is_done()),
        }
        e.message
    }

    #[test]
    fn corrupt_inputs_are_rejected() {
        // A back-reference with nothing decoded yet.
        assert!(err(&[0x20, 0x00], 3).contains("only 0 were decoded"));
        // A reference one byte farther back than the output reaches.
        assert!(err(&[0x01, b'a', b'b', 0x20, 0x02], 5).contains("reaches 3 bytes back"));
        // A literal run longer than the input.
        assert!(err(&[0x05, b'a', b'b'], 6).contains("literal run of 6 bytes"));
        // A reference whose distance byte is missing, and one whose length byte is.
        assert!(err(&[0x00, b'a', 0x20], 4).contains("past the end"));
        assert!(err(&[0x00, b'a', 0xe0], 12).contains("past the end"));
        // Output longer than expected, by a literal and by a reference.
        assert!(err(&[0x02, b'a', b'b', b'c'], 2).contains("adds 3 bytes after 0"));
        assert!(err(&[0x00, b'a', 0x20, 0x00], 3).contains("adds 3 bytes after 1"));
        // Output shorter than expected, and empty input for a non-empty string.
        assert!(err(&[0x00, b'a'], 2).contains("after 1 of the expected 2"));
        assert!(err(&[], 1).contains("after 0 of the expected 1"));
        // Trailing instructions after the output is complete.
        assert!(err(&[0x00, b'a', 0x00, b'b'], 1).contains("adds 1 bytes after 1"));
    }

    #[test]
    fn stream_rejects_data_after_the_end_and_stays_failed() {
        let mut s = LzfStream::new(1);
        let mut out = Vec::new();
        assert_eq!(s.feed(&[0x00, b'a'], &mut out).unwrap(), 2);
        assert!(s.is_done());
        assert_eq!(s.feed(&[], &mut out).unwrap(), 0);
        let e = s.feed(&[0x00, b'b'], &mut out).unwrap_err();
        assert!(e.message.contains("continues after all 1 bytes"), "{e}");
        assert_eq!(e.offset, 2);
        assert!(s.feed(&[], &mut out).is_err());
        assert_eq!(out, b"a");
    }

    #[test]
    fn stream_error_offsets_count_earlier_pieces() {
        let mut s = LzfStream::new(10);
        let mut out = Vec::new();
        assert_eq!(s.feed(&[0x01, b'a', b'b'], &mut out).unwrap(), 3);
        let e = s.feed(&[0x00, b'c', 0x20, 0x05], &mut out).unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(out, b"ab");
    }

    #[test]
    fn stream_of_a_length_beyond_memory_only_needs_its_window() {
        // 3 GiB of zeros would be 3 GiB of output; decode the first few MiB and check
        // that memory held by the stream stays at the window.
        let expected = 3u64 << 30;
        let mut s = LzfStream::new(expected);
        let mut out = Vec::new();
        s.feed(&[0x00, 0], &mut out).unwrap();
        let block: Vec<u8> = std::iter::repeat_n([0xe0u8, 0xff, 0x00], 1000)
            .flatten()
            .collect();
        for _ in 0..16 {
            assert_eq!(s.feed(&block, &mut out).unwrap(), block.len());
            assert!(out.iter().all(|&b| b == 0));
            out.clear();
            assert!(s.history.len() <= LZF_MAX_DISTANCE);
        }
        assert_eq!(s.produced(), 1 + 16 * 1000 * 264);
        assert!(!s.is_done());
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_both_decoders_agree(
            input in proptest::collection::vec(any::<u8>(), 0..200),
            expected in 0usize..600,
            cut in 0usize..200,
        ) {
            let mut out = Vec::new();
            let one = decompress(&input, &mut out, expected).map(|()| out);
            let streamed = stream_decode(&input, expected, &[cut.min(input.len())]);
            match one {
                Ok(bytes) => prop_assert_eq!(streamed, Ok(bytes)),
                Err(_) => prop_assert!(streamed.is_err()),
            }
        }
    }

    proptest! {
        // Compressing in a debug build is slow; fewer, longer cases suffice here.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn compressed_random_data_round_trips(
            data in proptest::collection::vec(prop_oneof![Just(b'x'), Just(b'y'), any::<u8>()], 0..3000),
            cut in 0usize..3000,
        ) {
            let c = compress(&data);
            let mut out = Vec::new();
            decompress(&c, &mut out, data.len()).unwrap();
            prop_assert_eq!(&out, &data);
            let cut = cut.min(c.len());
            prop_assert_eq!(stream_decode(&c, data.len(), &[cut]).unwrap(), data);
        }
    }
}
