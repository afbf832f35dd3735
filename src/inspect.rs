//! `ferry rdb inspect`: print an RDB as JSON lines (one object per key) or a summary.
//!
//! The JSON is written while the file is decoded, piece by piece, so a key with a
//! 100M-element value or a 1 GiB string never sits in memory.
//!
//! Value encoding (decided here, documented in the README):
//! * byte strings are JSON strings when valid UTF-8, else `{"base64": "…"}`; strings
//!   large enough to arrive in chunks are always `{"base64": "…"}` (their validity is
//!   unknown until the end, and the output is streamed);
//! * list, set: arrays of strings; zset: `[[member, score], …]` with scores as JSON
//!   numbers that round-trip exactly, or `"inf"`/`"-inf"`; hash: `[[field, value], …]`
//!   with a third element `expire_at_ms` for fields that have a TTL (arrays, not objects,
//!   because field names may be binary);
//! * stream: `{"entries": [{"id", "fields": [[f, v], …]}], "length", "last_id",
//!   "first_id", "max_deleted_id", "entries_added", "groups": [{"name", "last_id",
//!   "entries_read", "pending": [{"id", "delivery_time_ms", "delivery_count"}],
//!   "consumers": [{"name", "seen_time_ms", "active_time_ms", "pending": [id, …]}]}]}`;
//! * module: `{"module": name, "encver": n}`.
//!
//! Keys whose collection is empty are skipped, as servers skip them when loading.

use std::collections::BTreeMap;
use std::io::{self, Write};

use base64::Engine;

use crate::rdb::reader::{decode_reader, DriveError};
use crate::rdb::*;
use crate::util::glob_match;

const LINE_FLUSH: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Summary,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    pub db: Option<u64>,
    pub key_pattern: Option<Vec<u8>>,
    pub decoder: DecoderConfig,
    /// How many of the largest keys the summary lists.
    pub top: usize,
}

/// Errors of an inspect run; `Rdb` is the file's fault, `Io` the output's or the input's.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    Rdb(RdbError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<DriveError<io::Error>> for InspectError {
    fn from(e: DriveError<io::Error>) -> Self {
        match e {
            DriveError::Rdb(e) => InspectError::Rdb(e),
            DriveError::Io { source, .. } => InspectError::Io(source),
            DriveError::Handler(e) => InspectError::Io(e),
        }
    }
}

/// Decodes `input` and writes the requested format to `out`.
pub fn run<R: io::Read, W: Write>(
    input: R,
    out: &mut W,
    opts: &Options,
) -> Result<(), InspectError> {
    let mut jw = JsonWriter::default();
    let mut sum = Summary::default();
    // A key's line is assembled here and written whole at its end, so a key that turns
    // out corrupt leaves no half line behind (unless it passed LINE_FLUSH bytes).
    let mut line = Vec::new();
    let dec = decode_reader(input, opts.decoder.clone(), |ev| {
        let selected = jw.filter(ev, opts);
        if opts.format == Format::Jsonl {
            if selected {
                jw.event(&mut line, ev)?;
                if matches!(ev, Event::KeyEnd(_)) || line.len() > LINE_FLUSH {
                    out.write_all(&line)?;
                    line.clear();
                }
            }
        } else if selected || !matches!(ev, Event::Key(_) | Event::Value(_) | Event::KeyEnd(_)) {
            sum.event(ev, opts.top);
        }
        Ok::<(), io::Error>(())
    })?;
    if opts.format == Format::Summary {
        sum.version = dec.version();
        sum.flavor = Some(dec.flavor());
        serde_json::to_writer_pretty(&mut *out, &sum.to_json()).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// JSON lines

#[derive(Default)]
struct JsonWriter {
    /// Inside a key that the filters dropped.
    skipping: bool,
    kind: Option<ValueKind>,
    /// The key's prefix, written lazily so that empty keys can be skipped.
    prefix: Vec<u8>,
    prefix_written: bool,
    /// An element was written in the innermost open array.
    comma: bool,
    big: Option<Base64Stream>,
    big_role: Option<BigRole>,
    // Stream nesting.
    entry_open: bool,
    groups_open: bool,
    group_open: bool,
    group_pending_open: bool,
    consumers_open: bool,
    consumer_open: bool,
    group_comma: bool,
    /// An element was written in the innermost inner array (entry fields, consumer PEL).
    field_comma: bool,
    /// The TTL of the hash field whose big value is being written.
    pending_expire: Option<i64>,
}

impl JsonWriter {
    /// Tracks the key filters; returns whether this event belongs to a selected key (or
    /// is not part of a key at all).
    fn filter(&mut self, ev: &Event, opts: &Options) -> bool {
        match ev {
            Event::Key(k) => {
                let db_ok = opts.db.is_none_or(|d| d == k.db);
                let key_ok = opts
                    .key_pattern
                    .as_deref()
                    .is_none_or(|p| glob_match(p, k.key));
                self.skipping = !(db_ok && key_ok);
                !self.skipping
            }
            Event::Value(_) => !self.skipping,
            Event::KeyEnd(_) => {
                let s = self.skipping;
                self.skipping = false;
                !s
            }
            _ => true,
        }
    }

    fn event<W: Write>(&mut self, out: &mut W, ev: &Event) -> io::Result<()> {
        match ev {
            Event::Key(k) => {
                self.kind = Some(k.kind);
                self.prefix.clear();
                self.prefix.extend_from_slice(br#"{"db":"#);
                write!(self.prefix, "{}", k.db)?;
                self.prefix.extend_from_slice(br#","key":"#);
                json_bytes(&mut self.prefix, k.key);
                write!(
                    self.prefix,
                    r#","type":"{}","expire_at_ms":"#,
                    k.kind.name()
                )?;
                match k.expire_ms {
                    Some(ms) => write!(self.prefix, "{ms}")?,
                    None => self.prefix.extend_from_slice(b"null"),
                }
                self.prefix.extend_from_slice(br#","value":"#);
                self.prefix.extend_from_slice(match k.kind {
                    ValueKind::String | ValueKind::Module => b"",
                    ValueKind::Stream => br#"{"entries":["#,
                    _ => b"[",
                });
                self.prefix_written = false;
                self.comma = false;
                self.entry_open = false;
                self.groups_open = false;
                self.group_open = false;
                self.group_pending_open = false;
                self.consumers_open = false;
                self.consumer_open = false;
                self.group_comma = false;
                Ok(())
            }
            Event::Value(p) => {
                if !self.prefix_written {
                    out.write_all(&self.prefix)?;
                    self.prefix_written = true;
                }
                self.piece(out, p)
            }
            Event::KeyEnd(end) => {
                if !self.prefix_written {
                    if end.empty {
                        return Ok(());
                    }
                    out.write_all(&self.prefix)?;
                }
                self.close_stream_parts(out)?;
                match self.kind {
                    Some(ValueKind::String) | Some(ValueKind::Module) => {}
                    Some(ValueKind::Stream) => {}
                    _ => out.write_all(b"]")?,
                }
                out.write_all(b"}\n")
            }
            _ => Ok(()),
        }
    }

    fn piece<W: Write>(&mut self, out: &mut W, p: &Piece) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64);
        if !matches!(p, Piece::Chunk(_)) {
            self.finish_big(&mut buf);
        }
        match *p {
            Piece::String(e) => json_elem(&mut buf, e),
            Piece::BigStart {
                role,
                field,
                field_expire_ms,
                ..
            } => {
                if role != BigRole::StringValue {
                    self.sep_buf(&mut buf);
                }
                if role == BigRole::HashValue {
                    buf.push(b'[');
                    json_bytes(&mut buf, field.unwrap_or_default());
                    buf.push(b',');
                }
                buf.extend_from_slice(br#"{"base64":""#);
                self.big = Some(Base64Stream::default());
                self.big_role = Some(role);
                self.pending_expire = field_expire_ms;
            }
            Piece::Chunk(data) => {
                if let Some(b) = self.big.as_mut() {
                    b.push(&mut buf, data);
                }
            }
            Piece::ListItem(e) | Piece::SetMember(e) => {
                self.sep_buf(&mut buf);
                json_elem(&mut buf, e);
            }
            Piece::ZsetMember { member, score } => {
                self.sep_buf(&mut buf);
                buf.push(b'[');
                json_elem(&mut buf, member);
                buf.push(b',');
                json_score(&mut buf, score);
                buf.push(b']');
            }
            Piece::HashField {
                field,
                value,
                expire_ms,
            } => {
                self.sep_buf(&mut buf);
                buf.push(b'[');
                json_elem(&mut buf, field);
                buf.push(b',');
                json_elem(&mut buf, value);
                if let Some(ms) = expire_ms {
                    write!(buf, ",{ms}")?;
                }
                buf.push(b']');
            }
            Piece::StreamEntry { id, .. } => {
                if self.entry_open {
                    buf.extend_from_slice(b"]}");
                }
                self.sep_buf(&mut buf);
                write!(buf, r#"{{"id":"{id}","fields":["#)?;
                self.entry_open = true;
                self.field_comma = false;
            }
            Piece::StreamField { field, value } => {
                if self.field_comma {
                    buf.push(b',');
                }
                self.field_comma = true;
                buf.push(b'[');
                json_elem(&mut buf, field);
                buf.push(b',');
                json_elem(&mut buf, value);
                buf.push(b']');
            }
            Piece::StreamMeta {
                length,
                last_id,
                first_id,
                max_deleted_id,
                entries_added,
                ..
            } => {
                if self.entry_open {
                    buf.extend_from_slice(b"]}");
                    self.entry_open = false;
                }
                write!(
                    buf,
                    r#"],"length":{length},"last_id":"{last_id}","first_id":"#
                )?;
                json_opt_id(&mut buf, first_id);
                buf.extend_from_slice(br#","max_deleted_id":"#);
                json_opt_id(&mut buf, max_deleted_id);
                buf.extend_from_slice(br#","entries_added":"#);
                json_opt_u64(&mut buf, entries_added);
                buf.extend_from_slice(br#","groups":["#);
                self.groups_open = true;
            }
            Piece::StreamGroup {
                name,
                last_id,
                entries_read,
                ..
            } => {
                self.close_group(&mut buf);
                if self.group_comma {
                    buf.push(b',');
                }
                self.group_comma = true;
                buf.extend_from_slice(br#"{"name":"#);
                json_bytes(&mut buf, name);
                write!(buf, r#","last_id":"{last_id}","entries_read":"#)?;
                json_opt_u64(&mut buf, entries_read);
                buf.extend_from_slice(br#","pending":["#);
                self.group_open = true;
                self.group_pending_open = true;
                self.comma = false;
            }
            Piece::StreamPending {
                id,
                delivery_time_ms,
                delivery_count,
            } => {
                self.sep_buf(&mut buf);
                write!(
                    buf,
                    r#"{{"id":"{id}","delivery_time_ms":{delivery_time_ms},"delivery_count":{delivery_count}}}"#
                )?;
            }
            Piece::StreamConsumer {
                name,
                seen_time_ms,
                active_time_ms,
                ..
            } => {
                if self.group_pending_open {
                    buf.extend_from_slice(br#"],"consumers":["#);
                    self.group_pending_open = false;
                    self.consumers_open = true;
                    self.comma = false;
                }
                if self.consumer_open {
                    buf.extend_from_slice(b"]}");
                }
                self.sep_buf(&mut buf);
                buf.extend_from_slice(br#"{"name":"#);
                json_bytes(&mut buf, name);
                write!(buf, r#","seen_time_ms":{seen_time_ms},"active_time_ms":"#)?;
                match active_time_ms {
                    Some(t) => write!(buf, "{t}")?,
                    None => buf.extend_from_slice(b"null"),
                }
                buf.extend_from_slice(br#","pending":["#);
                self.consumer_open = true;
                self.field_comma = false;
            }
            Piece::StreamConsumerPending { id } => {
                if self.field_comma {
                    buf.push(b',');
                }
                self.field_comma = true;
                write!(buf, r#""{id}""#)?;
            }
            Piece::Module { module } => {
                write!(
                    buf,
                    r#"{{"module":"{}","encver":{}}}"#,
                    module.name_str(),
                    module.encver
                )?;
            }
        }
        out.write_all(&buf)
    }

    fn sep_buf(&mut self, buf: &mut Vec<u8>) {
        if self.comma {
            buf.push(b',');
        }
        self.comma = true;
    }

    /// Closes a big string in progress (the next piece or the key end follows it).
    fn finish_big(&mut self, buf: &mut Vec<u8>) {
        if let Some(b) = self.big.take() {
            b.finish(buf);
            buf.extend_from_slice(b"\"}");
            if self.big_role == Some(BigRole::HashValue) {
                if let Some(ms) = self.pending_expire.take() {
                    let _ = write!(buf, ",{ms}");
                }
                buf.push(b']');
            }
            self.big_role = None;
        }
    }

    fn close_group(&mut self, buf: &mut Vec<u8>) {
        if self.consumer_open {
            buf.extend_from_slice(b"]}");
            self.consumer_open = false;
        }
        if self.group_pending_open {
            buf.extend_from_slice(br#"],"consumers":["#);
            self.group_pending_open = false;
            self.consumers_open = true;
        }
        if self.consumers_open {
            buf.extend_from_slice(b"]");
            self.consumers_open = false;
        }
        if self.group_open {
            buf.extend_from_slice(b"}");
            self.group_open = false;
        }
    }

    fn close_stream_parts<W: Write>(&mut self, out: &mut W) -> io::Result<()> {
        let mut buf = Vec::new();
        self.finish_big(&mut buf);
        if self.kind == Some(ValueKind::Stream) {
            self.close_group(&mut buf);
            if self.groups_open {
                buf.extend_from_slice(b"]");
                self.groups_open = false;
            }
            buf.extend_from_slice(b"}");
        }
        out.write_all(&buf)
    }
}

/// Base64 over chunks: up to 2 bytes carried between pushes.
#[derive(Default)]
struct Base64Stream {
    carry: Vec<u8>,
}

impl Base64Stream {
    fn push(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        let e = base64::engine::general_purpose::STANDARD;
        self.carry.extend_from_slice(data);
        let whole = self.carry.len() / 3 * 3;
        let s = e.encode(&self.carry[..whole]);
        out.extend_from_slice(s.as_bytes());
        self.carry.drain(..whole);
    }
    fn finish(self, out: &mut Vec<u8>) {
        let e = base64::engine::general_purpose::STANDARD;
        out.extend_from_slice(e.encode(&self.carry).as_bytes());
    }
}

/// A byte string as JSON: a string when valid UTF-8, else `{"base64": "…"}`.
pub fn json_bytes(out: &mut Vec<u8>, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Err(_) => {
            out.extend_from_slice(br#"{"base64":""#);
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
    }
}

fn json_elem(out: &mut Vec<u8>, e: Elem) {
    match e {
        Elem::Bytes(b) => json_bytes(out, b),
        Elem::Int(_) => {
            out.push(b'"');
            e.write_to(out);
            out.push(b'"');
        }
    }
}

/// A score as a JSON number that parses back to the same bits, or "inf"/"-inf".
pub fn json_score(out: &mut Vec<u8>, s: f64) {
    if s.is_finite() {
        // `{:?}` prints the shortest text that round-trips (with an exponent when long).
        let _ = write!(out, "{s:?}");
    } else if s > 0.0 {
        out.extend_from_slice(b"\"inf\"");
    } else {
        out.extend_from_slice(b"\"-inf\"");
    }
}

fn json_opt_id(out: &mut Vec<u8>, id: Option<StreamId>) {
    match id {
        Some(id) => {
            let _ = write!(out, "\"{id}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn json_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

// ---------------------------------------------------------------------------------
// Summary

#[derive(Default)]
struct Summary {
    version: u32,
    flavor: Option<Flavor>,
    aux: Vec<(String, String)>,
    /// db → type → (keys, with expiry)
    per_db: BTreeMap<u64, BTreeMap<&'static str, (u64, u64)>>,
    functions: Vec<String>,
    module_aux: Vec<String>,
    empty_skipped: u64,
    largest: Vec<(u64, u64, Vec<u8>, &'static str, u64)>, // (encoded_len, db, key, type, elements)
    checksum: String,
    /// The key being read: db, type, has expiry; its name is in `current_key`.
    current: Option<(u64, &'static str, bool)>,
    current_key: Vec<u8>,
    modules: BTreeMap<String, u64>,
}

impl Summary {
    fn event(&mut self, ev: &Event, top: usize) {
        match ev {
            Event::Aux { key, value } => self.aux.push((
                String::from_utf8_lossy(&key.as_bytes()).into_owned(),
                String::from_utf8_lossy(&value.as_bytes()).into_owned(),
            )),
            Event::Function(code) => self.functions.push(function_name(code)),
            Event::ModuleAux { module, when } => self.module_aux.push(format!(
                "{} (encver {}, when {when})",
                module.name_str(),
                module.encver
            )),
            Event::Key(k) => {
                self.current = Some((k.db, k.kind.name(), k.expire_ms.is_some()));
                self.current_key.clear();
                self.current_key.extend_from_slice(k.key);
            }
            Event::Value(Piece::Module { module }) => {
                *self
                    .modules
                    .entry(module.name_str().to_string())
                    .or_default() += 1;
            }
            Event::KeyEnd(end) => {
                let Some((db, ty, exp)) = self.current.take() else {
                    return;
                };
                if end.empty {
                    self.empty_skipped += 1;
                    return;
                }
                let e = self.per_db.entry(db).or_default().entry(ty).or_default();
                e.0 += 1;
                e.1 += exp as u64;
                if top > 0 {
                    let small = self.largest.len() >= top
                        && self.largest.last().is_some_and(|l| l.0 >= end.encoded_len);
                    if !small {
                        self.largest.push((
                            end.encoded_len,
                            db,
                            self.current_key.clone(),
                            ty,
                            end.elements,
                        ));
                        self.largest.sort_by_key(|l| std::cmp::Reverse(l.0));
                        self.largest.truncate(top);
                    }
                }
            }
            Event::Eof { checksum } => {
                self.checksum = match checksum {
                    Checksum::Absent => "absent (RDB < 5)".into(),
                    Checksum::Disabled => "disabled (stored as 0)".into(),
                    Checksum::Verified(c) => format!("verified 0x{c:016x}"),
                    Checksum::Unchecked(c) => format!("not checked 0x{c:016x}"),
                }
            }
            _ => {}
        }
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut total = 0u64;
        let dbs: serde_json::Map<String, serde_json::Value> = self
            .per_db
            .iter()
            .map(|(db, types)| {
                let keys: u64 = types.values().map(|v| v.0).sum();
                let expires: u64 = types.values().map(|v| v.1).sum();
                total += keys;
                let t: serde_json::Map<_, _> = types
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.0)))
                    .collect();
                (
                    db.to_string(),
                    json!({"keys": keys, "expires": expires, "types": t}),
                )
            })
            .collect();
        let largest: Vec<_> = self
            .largest
            .iter()
            .map(|(len, db, key, ty, n)| {
                let mut k = Vec::new();
                json_bytes(&mut k, key);
                let k: serde_json::Value =
                    serde_json::from_slice(&k).unwrap_or(serde_json::Value::Null);
                json!({"db": db, "key": k, "type": ty, "encoded_bytes": len, "elements": n})
            })
            .collect();
        let aux: serde_json::Map<_, _> = self
            .aux
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "rdb_version": self.version,
            "flavor": self.flavor,
            "aux": aux,
            "keys": total,
            "dbs": dbs,
            "functions": self.functions,
            "module_aux": self.module_aux,
            "module_types": self.modules,
            "empty_keys_skipped": self.empty_skipped,
            "largest_keys": largest,
            "checksum": self.checksum,
        })
    }
}

/// The library name from `#!lua name=mylib …`, or the first line.
fn function_name(code: &[u8]) -> String {
    let text = String::from_utf8_lossy(code);
    let first = text.lines().next().unwrap_or_default();
    first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .unwrap_or(first)
        .to_string()
}
