//! leonchen83/redis-rdb-cli goldens of `all.rdb` (`rct -f <format>` outputs).
//!
//! * `count`: keys per type and the total.
//! * `key`: one quoted key per line, in file order.
//! * `jsonl` (one object per key) and `json` (the same objects in one array): `key`,
//!   `db`, `type`, `value`. Not strict JSON: module and stream values are DUMP payloads
//!   with `\xNN` / `\a` escapes (lossless, compared with ferry's raw bytes), other
//!   strings are decoded as UTF-8 by Java (U+FFFD for invalid bytes, so binary values are
//!   compared through the same lossy rendering), and scores are Java `Double.toString`
//!   text (always parses back to the same double: compared bit for bit).
//! * `diff`: one line per key, `key[,MS,expire-ms],payload`, the payload being the DUMP
//!   serialization (raw value bytes + 2-byte RDB version + CRC-64) with `\xNN` escapes;
//!   plus one `function,payload` line per function library. Lossless: compared byte for
//!   byte with ferry's raw capture and expiry.

use ferry::rdb::collect::{Key, Rdb};
use ferry::rdb::ValueKind;

use super::json::{self, Dialect, Json};
use super::model::{compare_keys, describe_diff, render_like, GoldenKey, Score, Shown, Text};
use super::structure::function_pre_ga;
use super::{Corpus, Decoded, GoldenUse};

const LENIENT: Dialect = Dialect {
    rdb_cli_escapes: true,
};

pub fn classify(name: &str) -> Option<GoldenUse> {
    let format = name.strip_prefix("all.rdb.")?;
    Some(match format {
        "count" => GoldenUse::Compare(compare_count),
        "key" => GoldenUse::Compare(compare_key_list),
        "jsonl" | "json" => GoldenUse::Compare(compare_json),
        "diff" => GoldenUse::Compare(compare_diff),
        "keyval" => GoldenUse::Skip(
            "redis-rdb-cli keyval: values unescaped (raw newlines inside values make 347 \
             lines for 270 keys), so records cannot be delimited; jsonl/diff hold the same data",
        ),
        "text" => GoldenUse::Skip(
            "redis-rdb-cli test formatter: the string keys of jsonl again, same escaping and \
             same U+FFFD loss, as unquoted `key,value` (a comma in a key would be ambiguous)",
        ),
        "resp" | "dump" | "dump7" => GoldenUse::Skip(
            "redis-rdb-cli RESP command stream (SET/RPUSH… or RESTORE with DUMP payloads): a \
             command output of another tool; the same payloads are compared via all.rdb.diff",
        ),
        _ => return None,
    })
}

fn live_keys(rdb: &Rdb) -> Vec<&Key> {
    rdb.keys.iter().filter(|k| !k.empty).collect()
}

fn type_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Zset => "sortedset",
        k => k.name(),
    }
}

/// `sortedset,set,string,stream,module,list,hash,summary` then the counts.
fn compare_count(corpus: &Corpus, golden: &str, dec: &Decoded) -> Result<Vec<String>, String> {
    let text = corpus.read_text(golden)?;
    let mut lines = text.lines();
    let (Some(names), Some(counts)) = (lines.next(), lines.next()) else {
        return Err(format!("{golden}: expected a header line and a count line"));
    };
    let keys = live_keys(&dec.rdb);
    let mut problems = Vec::new();
    for (name, count) in names.split(',').zip(counts.split(',')) {
        let expected: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("{golden}: bad count {count:?} for {name}"))?;
        let got = match name {
            "summary" => keys.len(),
            _ => keys.iter().filter(|k| type_name(k.kind) == name).count(),
        };
        if expected != got {
            problems.push(format!("{name}: expected {expected} keys, got {got}"));
        }
    }
    Ok(problems)
}

/// One JSON-quoted key per line, in file order.
fn compare_key_list(corpus: &Corpus, golden: &str, dec: &Decoded) -> Result<Vec<String>, String> {
    let expected = corpus
        .read_text(golden)?
        .lines()
        .enumerate()
        .map(|(i, l)| match json::parse(l, LENIENT) {
            Ok(Json::Str(s)) => Ok(s),
            _ => Err(format!("{golden}: line {}: not a quoted key: {l:?}", i + 1)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let got: Vec<String> = live_keys(&dec.rdb)
        .iter()
        .map(|k| Text::JavaLossy.render(&k.key))
        .collect();
    Ok(if expected == got {
        vec![]
    } else {
        vec![format!("key list: {}", describe_diff(&expected, &got))]
    })
}

fn compare_json(corpus: &Corpus, golden: &str, dec: &Decoded) -> Result<Vec<String>, String> {
    let text = corpus.read_text(golden)?;
    let records: Vec<Json> = if golden.ends_with(".jsonl") {
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                json::parse(l, LENIENT).map_err(|e| format!("{golden}: line {}: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?
    } else {
        match json::parse(&text, LENIENT).map_err(|e| format!("{golden}: {e}"))? {
            Json::Arr(a) => a,
            _ => return Err(format!("{golden}: not an array")),
        }
    };
    let golden_keys = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            key_of(r, dec.rdb.version).map_err(|e| format!("{golden}: record {}: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(compare_keys(
        &golden_keys,
        &live_keys(&dec.rdb),
        Text::JavaLossy,
        |g, k| {
            // Encoded values were written byte for byte; the rest through Java's UTF-8 decoder.
            let text = if matches!(g.value, Shown::Raw(_)) {
                Text::Latin1
            } else {
                Text::JavaLossy
            };
            let none = |_: &Key| Err("no STRUCT level here".to_string());
            Ok((g.value.clone(), render_like(k, text, &g.value, none)?))
        },
    ))
}

/// One jsonl/json record. Stream and module values are DUMP payloads: their footer (RDB
/// version and CRC) is checked for the version and dropped, leaving the raw value bytes.
fn key_of(r: &Json, rdb_version: u32) -> Result<GoldenKey<Shown>, String> {
    let s = |j: &Json| {
        j.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("not a string: {j:?}"))
    };
    let get = |f: &str| r.get(f).ok_or_else(|| format!("no {f:?}"));
    let ty = s(get("type")?)?;
    let v = get("value")?;
    let strings = || -> Result<Vec<String>, String> {
        v.as_arr()
            .ok_or("value is not an array")?
            .iter()
            .map(s)
            .collect()
    };
    let (kind, value) = match ty.as_str() {
        "string" => (ValueKind::String, Shown::Str(s(v)?)),
        "list" => (ValueKind::List, Shown::List(strings()?)),
        "set" => (ValueKind::Set, Shown::Set(strings()?)),
        "hash" => (
            ValueKind::Hash,
            Shown::Hash(
                v.as_obj()
                    .ok_or("hash value is not an object")?
                    .iter()
                    .map(|(f, x)| Ok((f.clone(), s(x)?)))
                    .collect::<Result<_, String>>()?,
                None,
            ),
        ),
        "sortedset" => (
            ValueKind::Zset,
            Shown::Zset(
                v.as_obj()
                    .ok_or("zset value is not an object")?
                    .iter()
                    .map(|(m, x)| {
                        let score = x.as_num().and_then(Score::parse);
                        Ok((m.clone(), score.ok_or_else(|| format!("bad score {x:?}"))?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
        ),
        "stream" | "module" => {
            let dump = Text::Latin1
                .bytes(&s(v)?)
                .ok_or("encoded value with a character above U+00FF")?;
            let (body, version) = split_dump(&dump)?;
            if u32::from(version) != rdb_version {
                return Err(format!("DUMP version {version}, RDB version {rdb_version}"));
            }
            let kind = if ty == "stream" {
                ValueKind::Stream
            } else {
                ValueKind::Module
            };
            (kind, Shown::Raw(Text::Latin1.render(body)))
        }
        other => return Err(format!("unknown type {other:?}")),
    };
    Ok(GoldenKey {
        db: Some(get("db")?.as_u64().ok_or("bad db")?),
        key: s(get("key")?)?,
        kind: Some(kind),
        expire_ms: None,
        value: value.normalized(),
    })
}

/// rdb-cli's escaping in the diff format: printable ASCII as is, `\t \n \b \r \a`, else
/// `\xNN` (space, `"` and `\` included).
fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let (byte, len) = match s.get(i + 1) {
            Some(b't') => (b'\t', 2),
            Some(b'n') => (b'\n', 2),
            Some(b'b') => (8, 2),
            Some(b'r') => (b'\r', 2),
            Some(b'a') => (7, 2),
            Some(b'\\') => (b'\\', 2),
            Some(b'"') => (b'"', 2),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).ok_or("truncated \\x escape")?;
                let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                (u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?, 4)
            }
            other => return Err(format!("unknown escape {:?}", other.map(|&b| b as char))),
        };
        out.push(byte);
        i += len;
    }
    Ok(out)
}

/// A DUMP payload: value bytes, then the RDB version (2 bytes LE) and a CRC-64 (8 bytes).
fn split_dump(payload: &[u8]) -> Result<(&[u8], u16), String> {
    let n = payload
        .len()
        .checked_sub(10)
        .ok_or("payload shorter than its footer")?;
    Ok((
        &payload[..n],
        u16::from_le_bytes([payload[n], payload[n + 1]]),
    ))
}

fn compare_diff(corpus: &Corpus, golden: &str, dec: &Decoded) -> Result<Vec<String>, String> {
    let data = corpus.read(golden)?;
    let rdb = &dec.rdb;
    let mut lines = Vec::new();
    let mut functions = Vec::new();
    for (n, line) in data
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let ctx = |e: String| format!("{golden}: line {}: {e}", n + 1);
        let comma = line
            .iter()
            .position(|&b| b == b',')
            .ok_or_else(|| ctx("no comma".into()))?;
        let key = unescape(&line[..comma]).map_err(ctx)?;
        let mut rest = &line[comma + 1..];
        let mut expire = None;
        if let Some(r) = rest.strip_prefix(b"MS,") {
            let c = r
                .iter()
                .position(|&b| b == b',')
                .ok_or_else(|| ctx("no comma after MS".into()))?;
            let ms = std::str::from_utf8(&r[..c])
                .ok()
                .and_then(|t| t.parse::<i64>().ok());
            expire = Some(ms.ok_or_else(|| ctx("bad MS expiry".into()))?);
            rest = &r[c + 1..];
        }
        let payload = unescape(rest).map_err(ctx)?;
        // A function line's payload starts with a function opcode (0xF5/0xF6), never a
        // type byte: that, not the name, tells it from a key named "function".
        if key == b"function" && matches!(payload.first(), Some(0xF5 | 0xF6)) {
            functions.push(payload);
        } else {
            lines.push((key, expire, payload));
        }
    }

    let mut problems = Vec::new();
    let keys = live_keys(rdb);
    if keys.len() != lines.len() {
        problems.push(format!(
            "{} key lines in the golden, {} keys decoded",
            lines.len(),
            keys.len()
        ));
    }
    for (i, ((key, expire, payload), k)) in lines.iter().zip(&keys).enumerate() {
        let name = format!("line for key {:?}", Text::Latin1.render(key));
        if *key != k.key {
            problems.push(format!(
                "{name}: key #{i} decoded as {:?}",
                Text::Latin1.render(&k.key)
            ));
            continue;
        }
        if *expire != k.expire_ms {
            problems.push(format!(
                "{name}: expiry: expected {expire:?}, got {:?}",
                k.expire_ms
            ));
        }
        let (body, version) = split_dump(payload)?;
        if u32::from(version) != rdb.version {
            problems.push(format!(
                "{name}: DUMP version {version}, RDB version {}",
                rdb.version
            ));
        }
        match &k.raw {
            Some(raw) if raw.as_slice() == body => {}
            Some(raw) => problems.push(format!(
                "{name}: raw value: {}",
                describe_diff(&Text::Latin1.render(body), &Text::Latin1.render(raw))
            )),
            None => problems.push(format!("{name}: ferry kept no raw bytes")),
        }
    }

    // Function libraries (pre-GA FUNCTION records): ferry reports each as Lua source that
    // names the library and ends with its code.
    let mut expected = Vec::new();
    for f in &functions {
        let (body, _) = split_dump(f)?;
        expected.push(
            function_pre_ga(&body[1..]).map_err(|e| format!("{golden}: function line: {e}"))?,
        );
    }
    if expected.len() != rdb.functions.len() {
        problems.push(format!(
            "{} function libraries in the golden, {} decoded",
            expected.len(),
            rdb.functions.len()
        ));
    }
    for (name, code) in &expected {
        let header = format!("#!lua name={}", Text::Latin1.render(name));
        let found = rdb
            .functions
            .iter()
            .any(|f| f.starts_with(header.as_bytes()) && f.ends_with(code));
        if !found {
            problems.push(format!(
                "function library {:?}: no decoded function starts with {header:?} and ends \
                 with its code",
                Text::Latin1.render(name)
            ));
        }
    }
    Ok(problems)
}
