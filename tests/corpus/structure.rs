//! librdb's STRUCT level, rebuilt from a key's raw bytes.
//!
//! At STRUCT level librdb prints a compact value as its encoded blobs (a ziplist, a
//! listpack, an intset, a zipmap, or one blob per quicklist node), decompressed. The raw
//! bytes ferry captures for a key (type byte + value, as in the RDB) hold those blobs as RDB
//! strings, so they can be cut out here with a reader that shares no code with the decoder:
//! a length decoder, the three integer string encodings and LZF, written from the format.

/// The blobs librdb's STRUCT level shows for this value, or `None` when STRUCT shows the
/// plain data (strings and the hash-table / linked-list / skiplist encodings).
pub fn struct_nodes(raw: &[u8]) -> Result<Option<Vec<Vec<u8>>>, String> {
    let (&ty, body) = raw.split_first().ok_or("empty raw value")?;
    let mut r = Reader { b: body, p: 0 };
    let nodes = match ty {
        // HASH_ZIPMAP, LIST_ZIPLIST, SET_INTSET, ZSET_ZIPLIST, HASH_ZIPLIST,
        // HASH_LISTPACK, ZSET_LISTPACK, SET_LISTPACK: one blob.
        9..=13 | 16 | 17 | 20 => vec![r.string()?],
        // LIST_QUICKLIST: node count, then one ziplist per node.
        14 => {
            let n = r.len()?;
            (0..n).map(|_| r.string()).collect::<Result<_, _>>()?
        }
        // LIST_QUICKLIST_2: node count, then (container, listpack or plain element).
        18 => {
            let n = r.len()?;
            (0..n)
                .map(|_| {
                    r.len()?;
                    r.string()
                })
                .collect::<Result<_, _>>()?
        }
        _ => return Ok(None),
    };
    if r.p != r.b.len() {
        return Err(format!(
            "type {ty}: {} bytes left after the blobs",
            r.b.len() - r.p
        ));
    }
    Ok(Some(nodes))
}

/// The library name and code of a Redis 7.0-rc FUNCTION record (opcode 0xF6, given
/// without the opcode): name, engine, a description flag (length-encoded 0/1) and the
/// description when set, then the code — all RDB strings.
pub fn function_pre_ga(body: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut r = Reader { b: body, p: 0 };
    let name = r.string()?;
    let _engine = r.string()?;
    if r.len()? != 0 {
        let _description = r.string()?;
    }
    let code = r.string()?;
    if r.p != body.len() {
        return Err(format!("{} bytes left after the code", body.len() - r.p));
    }
    Ok((name, code))
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

/// What a length prefix announced.
enum Len {
    Plain(u64),
    /// Special string encoding 0 (int8), 1 (int16), 2 (int32) or 3 (LZF).
    Special(u8),
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self
            .b
            .get(self.p..self.p + n)
            .ok_or_else(|| format!("needs {n} bytes at {}, has {}", self.p, self.b.len()))?;
        self.p += n;
        Ok(s)
    }

    /// RDB length: 00xxxxxx, 01xxxxxx xxxxxxxx, 0x80 + 4 bytes BE, 0x81 + 8 bytes BE,
    /// 11xxxxxx = special encoding xxxxxx.
    fn len_or_special(&mut self) -> Result<Len, String> {
        let first = self.take(1)?[0];
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain(u64::from(first & 0x3f) << 8 | u64::from(self.take(1)?[0])),
            3 => Len::Special(first & 0x3f),
            _ if first == 0x80 => Len::Plain(u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().map_err(|_| "short")?,
            ))),
            _ if first == 0x81 => Len::Plain(u64::from_be_bytes(
                self.take(8)?.try_into().map_err(|_| "short")?,
            )),
            _ => return Err(format!("bad length byte 0x{first:02x}")),
        })
    }

    fn len(&mut self) -> Result<u64, String> {
        match self.len_or_special()? {
            Len::Plain(n) => Ok(n),
            Len::Special(_) => Err("special encoding where a length was expected".into()),
        }
    }

    fn usize_len(&mut self) -> Result<usize, String> {
        usize::try_from(self.len()?).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        match self.len_or_special()? {
            Len::Plain(n) => Ok(self
                .take(usize::try_from(n).map_err(|e| e.to_string())?)?
                .to_vec()),
            Len::Special(0) => Ok((self.take(1)?[0] as i8).to_string().into_bytes()),
            Len::Special(1) => {
                let b = self.take(2)?;
                Ok(i16::from_le_bytes([b[0], b[1]]).to_string().into_bytes())
            }
            Len::Special(2) => {
                let b = self.take(4)?;
                Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    .to_string()
                    .into_bytes())
            }
            Len::Special(3) => {
                let clen = self.usize_len()?;
                let ulen = self.usize_len()?;
                lzf_decompress(self.take(clen)?, ulen)
            }
            Len::Special(e) => Err(format!("unknown string encoding {e}")),
        }
    }
}

/// LZF: a control byte `c`; `c < 32`: `c + 1` literal bytes follow; otherwise a back
/// reference of length `c >> 5` (7 = one more length byte follows) plus 2, at distance
/// `((c & 31) << 8 | next byte) + 1`.
pub fn lzf_decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(out_len);
    let mut i = 0;
    let byte = |i: usize| input.get(i).copied().ok_or("LZF input ends early");
    while i < input.len() {
        let c = usize::from(input[i]);
        i += 1;
        if c < 32 {
            let lit = input
                .get(i..i + c + 1)
                .ok_or("LZF literal runs past the input")?;
            out.extend_from_slice(lit);
            i += c + 1;
        } else {
            let mut len = c >> 5;
            if len == 7 {
                len += usize::from(byte(i)?);
                i += 1;
            }
            let dist = ((c & 31) << 8 | usize::from(byte(i)?)) + 1;
            i += 1;
            let start = out
                .len()
                .checked_sub(dist)
                .ok_or("LZF reference before the start")?;
            for k in 0..len + 2 {
                out.push(out[start + k]);
            }
        }
    }
    if out.len() != out_len {
        return Err(format!("LZF gave {} bytes, expected {out_len}", out.len()));
    }
    Ok(out)
}
