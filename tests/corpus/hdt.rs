//! HDT3213/rdb goldens: `rdb -c json` output.
//!
//! A JSON array, one object per key (or per AUX field / function library with
//! `-show-global-meta`): `db`, `key`, `type`, `expiration` (RFC 3339 in UTC+08:00, absent
//! when the key has none), and the value under `value` (string), `values` (list),
//! `members` (set), `hash` (+ `expire`: field → absolute ms, 0 = none), `entries` (zset:
//! `[{member, score}]`; stream: listpack nodes with their messages, deleted ones included
//! and flagged). `size` and `encoding` are HDT3213's own estimate and naming: ignored.
//!
//! Go's JSON encoder replaces every byte that is not valid UTF-8 with U+FFFD, so binary
//! strings are compared through the same lossy rendering ([`Text::GoLossy`]); where a
//! golden shows no U+FFFD the comparison is exact. Scores are Go's shortest round-trip
//! text, compared bit for bit.

use ferry::rdb::collect::{Key, Rdb};
use ferry::rdb::ValueKind;

use super::json::{self, items, Dialect, Json};
use super::model::{
    compare_keys, describe_diff, render_like, GoldenKey, Score, Shown, ShownConsumer, ShownGroup,
    ShownStream, Text,
};
use super::{Corpus, Decoded, GoldenUse};

pub fn classify(name: &str) -> Option<GoldenUse> {
    if name.ends_with(".csv") {
        return Some(GoldenUse::Skip(
            "HDT3213 memory/bigkey/prefix report: sizes are HDT3213's memory estimates, not \
             decoded data",
        ));
    }
    if name.ends_with(".aof") {
        return Some(GoldenUse::Skip(
            "HDT3213 `rdb -c aof` output: RESP commands of another tool, not decoded data",
        ));
    }
    name.ends_with(".json")
        .then_some(GoldenUse::Compare(compare))
}

fn compare(corpus: &Corpus, golden: &str, dec: &Decoded) -> Result<Vec<String>, String> {
    let doc = json::parse(&corpus.read_text(golden)?, Dialect::default())
        .map_err(|e| format!("{golden}: {e}"))?;
    let records = doc
        .as_arr()
        .ok_or_else(|| format!("{golden}: not an array"))?;
    let rdb = &dec.rdb;
    let mut problems = Vec::new();

    let mut keys = Vec::new();
    let mut aux = Vec::new();
    let mut functions = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let ctx = |e: String| format!("{golden}: record {i}: {e}");
        let field = |f: &str| r.get(f).ok_or_else(|| ctx(format!("no {f:?}")));
        let string = |f: &str| {
            field(f)?
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ctx(format!("{f:?} is not a string")))
        };
        match string("type")?.as_str() {
            "aux" => aux.push((string("key")?, string("value")?)),
            "functions" => functions.push(string("functionsLua")?),
            ty => keys.push(GoldenKey {
                db: Some(field("db")?.as_u64().ok_or_else(|| ctx("bad db".into()))?),
                key: string("key")?,
                kind: Some(kind(ty).ok_or_else(|| ctx(format!("unknown type {ty:?}")))?),
                expire_ms: Some(match r.get("expiration") {
                    None => None,
                    Some(e) => Some(
                        e.as_str()
                            .and_then(rfc3339_ms)
                            .ok_or_else(|| ctx(format!("bad expiration {e:?}")))?,
                    ),
                }),
                value: value(r, ty).map_err(ctx)?,
            }),
        }
    }

    // This golden's extra options, from PROVENANCE.md: memory_regex.json was made with
    // `-regex '^l.*'`; function.json with `-show-global-meta` (AUX fields and functions as
    // records, which no other golden has).
    let name = golden.rsplit('/').next().unwrap_or(golden);
    let ferry: Vec<&Key> = rdb
        .keys
        .iter()
        .filter(|k| !k.empty)
        .filter(|k| name != "memory_regex.json" || k.key.starts_with(b"l"))
        .collect();
    problems.extend(compare_keys(&keys, &ferry, Text::GoLossy, |g, k| {
        let mut got = render_like(k, Text::GoLossy, &g.value, no_nodes)?;
        // A stream entry may repeat a field name (XADD s * k v k v); HDT3213 prints the
        // fields as a Go map, which keeps one: the last.
        if let Shown::Stream(s) = &mut got {
            for (_, fields) in &mut s.entries {
                let mut map = std::collections::BTreeMap::new();
                map.extend(fields.drain(..));
                fields.extend(map);
            }
        }
        Ok((g.value.clone(), got))
    }));
    if name == "function.json" {
        problems.extend(compare_meta(rdb, aux, functions));
    }
    Ok(problems)
}

fn no_nodes(_: &Key) -> Result<Vec<Vec<u8>>, String> {
    Err("HDT3213 goldens have no STRUCT level".into())
}

fn compare_meta(rdb: &Rdb, aux: Vec<(String, String)>, functions: Vec<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let got_aux: Vec<(String, String)> = rdb
        .aux
        .iter()
        .map(|(k, v)| (Text::GoLossy.render(k), Text::GoLossy.render(v)))
        .collect();
    if aux != got_aux {
        problems.push(format!("aux fields: {}", describe_diff(&aux, &got_aux)));
    }
    let got_fn: Vec<String> = rdb
        .functions
        .iter()
        .map(|f| Text::GoLossy.render(f))
        .collect();
    if functions != got_fn {
        problems.push(format!("functions: {}", describe_diff(&functions, &got_fn)));
    }
    problems
}

fn kind(ty: &str) -> Option<ValueKind> {
    Some(match ty {
        "string" => ValueKind::String,
        "list" => ValueKind::List,
        "set" => ValueKind::Set,
        "zset" => ValueKind::Zset,
        "hash" => ValueKind::Hash,
        "stream" => ValueKind::Stream,
        _ => return None,
    })
}

fn value(r: &Json, ty: &str) -> Result<Shown, String> {
    let s = |j: &Json| {
        j.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("not a string: {j:?}"))
    };
    let get = |f: &str| r.get(f).ok_or_else(|| format!("no {f:?}"));
    let strings = |f: &str| -> Result<Vec<String>, String> {
        get(f)?
            .as_arr()
            .ok_or_else(|| format!("{f:?} is not an array"))?
            .iter()
            .map(s)
            .collect()
    };
    let shown = match ty {
        "string" => Shown::Str(s(get("value")?)?),
        "list" => Shown::List(strings("values")?),
        "set" => Shown::Set(strings("members")?),
        "zset" => Shown::Zset(
            get("entries")?
                .as_arr()
                .ok_or("zset entries is not an array")?
                .iter()
                .map(|e| {
                    let m = s(e.get("member").ok_or("zset entry without member")?)?;
                    let score = e
                        .get("score")
                        .and_then(Json::as_num)
                        .and_then(Score::parse)
                        .ok_or_else(|| format!("bad score in {e:?}"))?;
                    Ok((m, score))
                })
                .collect::<Result<_, String>>()?,
        ),
        "hash" => {
            let fields = get("hash")?
                .as_obj()
                .ok_or("hash is not an object")?
                .iter()
                .map(|(f, v)| Ok((f.clone(), s(v)?)))
                .collect::<Result<_, String>>()?;
            let ttl = match r.get("expire") {
                None => None,
                Some(e) => Some(
                    e.as_obj()
                        .ok_or("expire is not an object")?
                        .iter()
                        .map(|(f, t)| {
                            let t = t.as_i64().ok_or_else(|| format!("bad TTL {t:?}"))?;
                            // HDT3213 writes 0 for a field without TTL.
                            Ok((f.clone(), (t != 0).then_some(t)))
                        })
                        .collect::<Result<_, String>>()?,
                ),
            };
            Shown::Hash(fields, ttl)
        }
        "stream" => Shown::Stream(stream(r)?),
        _ => return Err(format!("unknown type {ty:?}")),
    };
    Ok(shown.normalized())
}

/// HDT3213's stream: `entries` are listpack nodes whose `msgs` hold every entry, deleted
/// ones flagged (ferry delivers live entries only); `len`, `lastId`, and from Redis 7
/// `firstId`, `maxDeletedId`, `addedEntriesCount`; `groups` with `lastId`, `entriesRead`,
/// `pending` (`id`, `deliveryTime`, `deliveryCount`) and `consumers` (`name`, `seenTime`,
/// `activeTime`, `pending` ids). Go's `omitempty` drops empty lists and zero numbers, so
/// a missing list is empty and a missing number is not compared.
fn stream(r: &Json) -> Result<ShownStream, String> {
    let s = |j: Option<&Json>, what: &str| {
        j.and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("stream: bad or missing {what}"))
    };
    let opt_s = |f: &str| r.get(f).and_then(Json::as_str).map(str::to_string);
    let mut entries = Vec::new();
    for node in items(r.get("entries")) {
        for m in items(node.get("msgs")) {
            if m.get("deleted") == Some(&Json::Bool(true)) {
                continue;
            }
            let fields = m
                .get("fields")
                .and_then(Json::as_obj)
                .ok_or("stream message without fields")?
                .iter()
                .map(|(f, v)| Ok((f.clone(), s(Some(v), "field value")?)))
                .collect::<Result<Vec<_>, String>>()?;
            entries.push((s(m.get("id"), "message id")?, fields));
        }
    }
    let groups = items(r.get("groups"))
        .iter()
        .map(|g| {
            Ok(ShownGroup {
                name: s(g.get("name"), "group name")?,
                last_id: s(g.get("lastId"), "group lastId")?,
                entries_read: g.get("entriesRead").and_then(Json::as_u64),
                pending: items(g.get("pending"))
                    .iter()
                    .map(|p| {
                        Ok((
                            s(p.get("id"), "pending id")?,
                            p.get("deliveryTime")
                                .and_then(Json::as_i64)
                                .ok_or("deliveryTime")?,
                            p.get("deliveryCount")
                                .and_then(Json::as_u64)
                                .ok_or("deliveryCount")?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
                consumers: items(g.get("consumers"))
                    .iter()
                    .map(|c| {
                        Ok(ShownConsumer {
                            name: s(c.get("name"), "consumer name")?,
                            seen_ms: c.get("seenTime").and_then(Json::as_i64),
                            active_ms: c.get("activeTime").and_then(Json::as_i64),
                            pending: items(c.get("pending"))
                                .iter()
                                .map(|p| s(Some(p), "consumer pending id"))
                                .collect::<Result<_, String>>()?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ShownStream {
        entries,
        length: Some(
            r.get("len")
                .and_then(Json::as_u64)
                .ok_or("stream without len")?,
        ),
        last_id: Some(s(r.get("lastId"), "lastId")?),
        first_id: opt_s("firstId"),
        max_deleted_id: opt_s("maxDeletedId"),
        entries_added: r.get("addedEntriesCount").and_then(Json::as_u64),
        groups: Some(groups),
    })
}

/// `2022-12-25T18:11:12.573+08:00` (Go's RFC 3339 with trimmed fractional seconds) as
/// unix milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let num = |r: &str| -> Option<i64> {
        (!r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())).then(|| r.parse().ok())?
    };
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let (oh, om) = off[1..].split_once(':')?;
        let m = num(oh)? * 60 + num(om)?;
        (c, if off.starts_with('-') { -m } else { m })
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let (h, mi, se) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    let ms = if frac.is_empty() {
        0
    } else {
        let f = format!("{frac:0<3}");
        num(&f[..3])?
    };
    // Days from 1970-01-01 to y-mo-da (proleptic Gregorian; H. Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(((days * 86400 + h * 3600 + mi * 60 + se - offset_min * 60) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn go_rfc3339_to_unix_ms() {
        // keys_with_expiry.rdb: 2022-12-25 10:11:12.573 UTC (PROVENANCE.md).
        assert_eq!(
            rfc3339_ms("2022-12-25T18:11:12.573+08:00"),
            Some(1671963072573)
        );
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2022-02-18T06:15:29.18+08:00"),
            Some(1645136129180)
        );
    }
}
