//! Reads a line of `ferry rdb inspect --format jsonl` back into the library's model, so the
//! binary's output can be compared with [`collect`](ferry::rdb::collect) by `==`.
//!
//! The format (src/inspect.rs): `{"db", "key", "type", "expire_at_ms", "value"}`; byte
//! strings are JSON strings, or `{"base64": …}` when not UTF-8; lists and sets arrays;
//! zsets `[[member, score]]` with `"inf"`/`"-inf"`; hashes `[[field, value(, ttl)]]`;
//! streams an object with entries, metadata and groups; modules `{"module", "encver"}`.

use base64::Engine;
use ferry::rdb::collect::{Consumer, Group, Stream, Value};
use ferry::rdb::StreamId;

use super::json::{items, Json};
use super::model::Score;

/// One decoded line: db, key, type name, expiry and value.
pub type Line = (u64, Vec<u8>, String, Option<i64>, Value);

pub fn read_line(v: &Json) -> Result<Line, String> {
    let fields: Vec<&str> = v
        .as_obj()
        .unwrap_or_default()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    if fields != ["db", "key", "type", "expire_at_ms", "value"] {
        return Err(format!("fields {fields:?}"));
    }
    let ty = v.get("type").and_then(Json::as_str).ok_or("bad type")?;
    let expire = match v.get("expire_at_ms") {
        Some(Json::Null) => None,
        n => Some(n.and_then(Json::as_i64).ok_or("bad expire_at_ms")?),
    };
    Ok((
        v.get("db").and_then(Json::as_u64).ok_or("bad db")?,
        bytes(v.get("key")).ok_or("bad key")?,
        ty.to_string(),
        expire,
        value(ty, v.get("value").ok_or("no value")?).ok_or_else(|| format!("bad {ty} value"))?,
    ))
}

fn bytes(v: Option<&Json>) -> Option<Vec<u8>> {
    match v? {
        Json::Str(s) => Some(s.clone().into_bytes()),
        b => base64::engine::general_purpose::STANDARD
            .decode(b.get("base64")?.as_str()?)
            .ok(),
    }
}

fn id(v: Option<&Json>) -> Option<StreamId> {
    let (ms, seq) = v?.as_str()?.split_once('-')?;
    Some(StreamId {
        ms: ms.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// An optional field: `null` is `Some(None)`, a missing or malformed one `None`.
fn opt<T>(v: Option<&Json>, read: impl Fn(Option<&Json>) -> Option<T>) -> Option<Option<T>> {
    match v? {
        Json::Null => Some(None),
        j => read(Some(j)).map(Some),
    }
}

fn value(ty: &str, v: &Json) -> Option<Value> {
    let strings = |v: &Json| {
        items(Some(v))
            .iter()
            .map(|e| bytes(Some(e)))
            .collect::<Option<Vec<_>>>()
    };
    Some(match ty {
        "string" => Value::String(bytes(Some(v))?),
        "list" => Value::List(strings(v)?),
        "set" => Value::Set(strings(v)?),
        "zset" => Value::Zset(
            items(Some(v))
                .iter()
                .map(|pair| {
                    let [m, s] = pair.as_arr()? else { return None };
                    let score = match s {
                        Json::Str(t) | Json::Num(t) => Score::parse(t)?,
                        _ => return None,
                    };
                    Some((bytes(Some(m))?, f64::from_bits(score.0)))
                })
                .collect::<Option<_>>()?,
        ),
        "hash" => Value::Hash(
            items(Some(v))
                .iter()
                .map(|t| {
                    let t = t.as_arr()?;
                    let ttl = match t.get(2) {
                        None => None,
                        Some(n) => Some(n.as_i64()?),
                    };
                    Some((bytes(t.first())?, bytes(t.get(1))?, ttl))
                })
                .collect::<Option<_>>()?,
        ),
        "stream" => Value::Stream(Box::new(stream(v)?)),
        "module" => Value::Module {
            name: v.get("module")?.as_str()?.to_string(),
            encver: u16::try_from(v.get("encver")?.as_u64()?).ok()?,
        },
        _ => return None,
    })
}

fn stream(v: &Json) -> Option<Stream> {
    let u64_of = |j: Option<&Json>| j?.as_u64();
    Some(Stream {
        entries: items(v.get("entries"))
            .iter()
            .map(|e| {
                let fields = items(e.get("fields"))
                    .iter()
                    .map(|f| Some((bytes(f.as_arr()?.first())?, bytes(f.as_arr()?.get(1))?)))
                    .collect::<Option<_>>()?;
                Some((id(e.get("id"))?, fields))
            })
            .collect::<Option<_>>()?,
        length: u64_of(v.get("length"))?,
        last_id: id(v.get("last_id"))?,
        first_id: opt(v.get("first_id"), id)?,
        max_deleted_id: opt(v.get("max_deleted_id"), id)?,
        entries_added: opt(v.get("entries_added"), u64_of)?,
        groups: items(v.get("groups"))
            .iter()
            .map(|g| {
                Some(Group {
                    name: bytes(g.get("name"))?,
                    last_id: id(g.get("last_id"))?,
                    entries_read: opt(g.get("entries_read"), u64_of)?,
                    pending: items(g.get("pending"))
                        .iter()
                        .map(|p| {
                            Some((
                                id(p.get("id"))?,
                                p.get("delivery_time_ms")?.as_i64()?,
                                p.get("delivery_count")?.as_u64()?,
                            ))
                        })
                        .collect::<Option<_>>()?,
                    consumers: items(g.get("consumers"))
                        .iter()
                        .map(|c| {
                            Some(Consumer {
                                name: bytes(c.get("name"))?,
                                seen_time_ms: c.get("seen_time_ms")?.as_i64()?,
                                active_time_ms: opt(c.get("active_time_ms"), |j| j?.as_i64())?,
                                pending: items(c.get("pending"))
                                    .iter()
                                    .map(|p| id(Some(p)))
                                    .collect::<Option<_>>()?,
                            })
                        })
                        .collect::<Option<_>>()?,
                })
            })
            .collect::<Option<_>>()?,
    })
}
