//! redis/librdb goldens: its rdb→JSON output at three levels.
//!
//! The files are fragments: `"key": value` pairs (optionally `"__aux__"`, `"__func__"`,
//! `"__dbsize__"`, `"__slotinfo__"` meta objects), or `[{…},{…}]` with one object per
//! database when flattening was off (see `read_fragment`).
//!
//! librdb writes every byte that is not printable ASCII as `\u00NN`, so strings are
//! lossless: they are compared byte for byte ([`Text::Latin1`]).
//!
//! Levels (PROVENANCE.md says which golden was produced at which; the table below follows
//! it, including the two `_raw` files that were produced at STRUCT level):
//! * DATA: logical values. Strings, lists and sets as JSON strings and arrays, hashes and
//!   zsets as objects (scores as text), streams as objects, module values as a sentence
//!   naming the module and its serialized size.
//! * STRUCT: compact encodings as their blobs (see `structure`); everything else as DATA.
//! * RAW: the type byte and value bytes as in the RDB, compared with ferry's raw capture.

use std::time::{SystemTime, UNIX_EPOCH};

use ferry::rdb::collect::Key;
use ferry::rdb::ValueKind;

use super::json::{self, items, Dialect, Json};
use super::model::{
    compare_keys, describe_diff, render_like, GoldenKey, Score, Shown, ShownConsumer, ShownGroup,
    ShownStream, Text,
};
use super::structure::struct_nodes;
use super::{decode_extras, Corpus, Decoded, GoldenUse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Data,
    Struct,
    Raw,
    /// Not a parse of the file: the RDB was loaded into a live Redis, saved and dumped at
    /// DATA level. Expired keys are gone; everything else is DATA.
    LiveRoundTrip,
}

/// Level and key filter of each librdb golden (from PROVENANCE.md).
const GOLDENS: &[(&str, Level, Option<ValueKind>)] = &[
    ("cluster_slot_info.json", Level::Data, None),
    ("function2.json", Level::Data, None),
    ("hash_data.json", Level::Data, None),
    ("hash_ex_v12_data.json", Level::Data, None),
    ("hash_lp_ex_v12_data.json", Level::Data, None),
    ("hash_lp_v11_data.json", Level::Data, None),
    ("hash_lp_v11_raw.json", Level::Raw, None),
    ("hash_lp_v11_struct.json", Level::Struct, None),
    ("hash_raw.json", Level::Raw, None),
    ("hash_struct.json", Level::Struct, None),
    ("hash_zl_v6_data.json", Level::Data, None),
    ("hash_zl_v6_raw.json", Level::Raw, None),
    ("hash_zl_v6_struct.json", Level::Struct, None),
    ("hash_zm_v2_data.json", Level::Data, None),
    ("hash_zm_v2_raw.json", Level::Raw, None),
    ("hash_zm_v2_struct.json", Level::Struct, None),
    ("mem_policy_lfu.json", Level::LiveRoundTrip, None),
    ("mem_policy_lru.json", Level::LiveRoundTrip, None),
    ("module_aux_data.json", Level::Data, None),
    ("module_data.json", Level::Data, None),
    ("module_raw.json", Level::Raw, None),
    ("multiple_dbs_data.json", Level::Data, None),
    // Not referenced by librdb's tests; its content is the list keys at DATA level.
    (
        "multiple_lists_strings_2filters.json",
        Level::Data,
        Some(ValueKind::List),
    ),
    ("multiple_lists_strings_data.json", Level::Data, None),
    ("multiple_lists_strings_no_aux.json", Level::Data, None),
    ("multiple_lists_strings_raw.json", Level::Raw, None),
    ("multiple_lists_strings_struct.json", Level::Struct, None),
    // Two writers on one parse: lists at DATA level, strings at RAW level.
    (
        "multiple_lists_strings_subset_list.json",
        Level::Data,
        Some(ValueKind::List),
    ),
    (
        "multiple_lists_strings_subset_str.json",
        Level::Raw,
        Some(ValueKind::String),
    ),
    // Not referenced by librdb's tests; byte-identical to hash_data.json.
    ("plain_hash_data.json", Level::Data, None),
    ("plain_hash_struct.json", Level::Struct, None),
    ("plain_list_v6_data.json", Level::Data, None),
    ("plain_list_v6_raw.json", Level::Raw, None),
    ("plain_set_v6_data.json", Level::Data, None),
    ("plain_set_v6_raw.json", Level::Raw, None),
    ("plain_set_v6_struct.json", Level::Struct, None),
    ("plain_zset_2_v11_data.json", Level::Data, None),
    ("plain_zset_2_v11_raw.json", Level::Raw, None),
    ("plain_zset_2_v11_struct.json", Level::Struct, None),
    ("plain_zset_v6_data.json", Level::Data, None),
    ("plain_zset_v6_raw.json", Level::Raw, None),
    ("plain_zset_v6_struct.json", Level::Struct, None),
    ("quicklist_data.json", Level::Data, None),
    ("quicklist_raw.json", Level::Raw, None),
    ("quicklist_struct.json", Level::Struct, None),
    ("set_expired.json", Level::LiveRoundTrip, None),
    ("set_is_v11_data.json", Level::Data, None),
    // "_raw" but produced at STRUCT level (librdb's test runs it so).
    ("set_is_v11_raw.json", Level::Struct, None),
    ("set_is_v11_struct.json", Level::Struct, None),
    ("set_lp_v11_data.json", Level::Data, None),
    ("set_lp_v11_raw.json", Level::Struct, None),
    ("set_lp_v11_struct.json", Level::Struct, None),
    ("set_not_expired.json", Level::LiveRoundTrip, None),
    ("single_key_data.json", Level::Data, None),
    ("single_key_raw.json", Level::Raw, None),
    ("single_key_struct.json", Level::Struct, None),
    ("single_list_data.json", Level::Data, None),
    ("single_list_raw.json", Level::Raw, None),
    ("single_list_struct.json", Level::Struct, None),
    ("stream_data.json", Level::Data, None),
    ("stream_data_with_meta.json", Level::Data, None),
    ("string_int_encoded.json", Level::Data, None),
    ("ziplist_data.json", Level::Data, None),
    ("ziplist_raw.json", Level::Raw, None),
    ("ziplist_struct.json", Level::Struct, None),
    ("zset_lp_v11_data.json", Level::Data, None),
    ("zset_lp_v11_raw.json", Level::Raw, None),
    ("zset_lp_v11_struct.json", Level::Struct, None),
    ("zset_zl_v6_data.json", Level::Data, None),
    ("zset_zl_v6_raw.json", Level::Raw, None),
    ("zset_zl_v6_struct.json", Level::Struct, None),
];

pub fn classify(name: &str) -> Option<GoldenUse> {
    if name.ends_with(".resp") {
        return Some(GoldenUse::Skip(
            "librdb rdb->RESP output (XADD/XGROUP commands for a target version): a command \
             stream of another tool, not decoded data",
        ));
    }
    GOLDENS
        .iter()
        .any(|(g, ..)| *g == name)
        .then_some(GoldenUse::Compare(compare))
}

fn compare(corpus: &Corpus, golden: &str, dec: &Decoded) -> Result<Vec<String>, String> {
    let name = golden.rsplit('/').next().unwrap_or(golden);
    let &(_, level, only) = GOLDENS
        .iter()
        .find(|(g, ..)| *g == name)
        .ok_or_else(|| format!("{golden}: not in the librdb table"))?;
    let rdb = &dec.rdb;
    let mut problems = Vec::new();

    // Ferry's keys as this golden would list them.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(i64::MAX);
    let ferry: Vec<&Key> = rdb
        .keys
        .iter()
        .filter(|k| !k.empty)
        .filter(|k| only.is_none_or(|kind| k.kind == kind))
        .filter(|k| level != Level::LiveRoundTrip || k.expire_ms.is_none_or(|t| t > now_ms))
        .collect();

    // The golden's keys; meta objects are compared on the way. Without flattening the
    // golden has one object per database, in file order: the i-th is the i-th database
    // ferry saw keys in.
    let mut ferry_dbs: Vec<u64> = Vec::new();
    for k in &ferry {
        if !ferry_dbs.contains(&k.db) {
            ferry_dbs.push(k.db);
        }
    }
    let pairs = read_fragment(&corpus.read_text(golden)?).map_err(|e| format!("{golden}: {e}"))?;
    let mut golden_keys = Vec::new();
    for (db_pos, key, value) in &pairs {
        let db = db_pos.map(|i| ferry_dbs.get(i).copied().unwrap_or(u64::MAX));
        match key.as_str() {
            "__aux__" => problems.extend(compare_aux(value, rdb)),
            "__func__" => problems.extend(compare_functions(value, rdb)),
            "__dbsize__" => problems.extend(compare_dbsize(value, &dec.data)),
            "__slotinfo__" => problems.extend(compare_slotinfo(value, rdb)),
            k if k.starts_with("__") && k.ends_with("__") => {
                return Err(format!("{golden}: unknown meta object {k:?}"))
            }
            _ => golden_keys.push(GoldenKey {
                db,
                key: key.clone(),
                kind: None,
                expire_ms: None,
                value: value.clone(),
            }),
        }
    }

    problems.extend(compare_keys(&golden_keys, &ferry, Text::Latin1, |g, k| {
        let expected = golden_value(&g.value, level, k)?;
        let mut got = render_like(k, Text::Latin1, &expected, |k| {
            struct_nodes(k.raw.as_deref().unwrap_or_default())?
                .ok_or_else(|| "no STRUCT blobs for this encoding".to_string())
        })?;
        // librdb prints the score -0 as "0" (handlersToJson.c), so the golden cannot tell
        // the zeros apart; compare ferry's -0 as 0.
        if let Shown::Zset(z) = &mut got {
            for (_, s) in z.iter_mut() {
                if *s == Score::of(-0.0) {
                    *s = Score::of(0.0);
                }
            }
            z.sort();
        }
        Ok((expected, got))
    }));
    Ok(problems)
}

/// The `"key": value` pairs of a librdb fragment, with the position of their database
/// object when the fragment is `[{…},{…}]` (flattening off). As librdb's own test does,
/// trailing commas are dropped and the text wrapped into one document.
type Pairs = Vec<(Option<usize>, String, Json)>;

fn read_fragment(text: &str) -> Result<Pairs, String> {
    let body = text.trim_end_matches(|c: char| c.is_whitespace() || c == ',');
    if body.trim_start().starts_with('[') {
        let dbs = json::parse(body, Dialect::default()).map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        for (i, db) in items(Some(&dbs)).iter().enumerate() {
            let obj = db
                .as_obj()
                .ok_or_else(|| format!("database #{i} is not an object"))?;
            pairs.extend(obj.iter().map(|(k, v)| (Some(i), k.clone(), v.clone())));
        }
        Ok(pairs)
    } else {
        match json::parse(&format!("{{{body}}}"), Dialect::default()).map_err(|e| e.to_string())? {
            Json::Obj(o) => Ok(o.into_iter().map(|(k, v)| (None, k, v)).collect()),
            _ => Err("not an object".into()),
        }
    }
}

/// The golden's value in the model, read in the light of ferry's key: librdb's JSON does
/// not say whether an array is a list or a set, nor which encoding a STRUCT blob is.
fn golden_value(v: &Json, level: Level, k: &Key) -> Result<Shown, String> {
    let text = |j: &Json| {
        j.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("golden: expected a string, found {j:?}"))
    };
    let strings = |j: &Json| -> Result<Vec<String>, String> {
        j.as_arr()
            .ok_or_else(|| format!("golden: expected an array, found {j:?}"))?
            .iter()
            .map(text)
            .collect()
    };
    if level == Level::Raw {
        return Ok(Shown::Raw(text(v)?));
    }
    if level == Level::Struct && struct_nodes(k.raw.as_deref().unwrap_or_default())?.is_some() {
        return Ok(Shown::Nodes(strings(v)?));
    }
    let pairs = |j: &Json| -> Result<Vec<(String, String)>, String> {
        j.as_obj()
            .ok_or_else(|| format!("golden: expected an object, found {j:?}"))?
            .iter()
            .map(|(a, b)| Ok((a.clone(), text(b)?)))
            .collect()
    };
    let shown = match k.kind {
        ValueKind::String => Shown::Str(text(v)?),
        ValueKind::List => Shown::List(strings(v)?),
        ValueKind::Set => Shown::Set(strings(v)?),
        ValueKind::Hash => Shown::Hash(pairs(v)?, None),
        ValueKind::Zset => Shown::Zset(
            pairs(v)?
                .into_iter()
                .map(|(m, s)| {
                    Score::parse(&s)
                        .map(|s| (m, s))
                        .ok_or_else(|| format!("golden: bad score {s:?}"))
                })
                .collect::<Result<_, String>>()?,
        ),
        ValueKind::Module => {
            // "<Content of Module 'NAME'. Occupies a serialized size of N bytes>"
            let s = text(v)?;
            let parsed = s
                .strip_prefix("<Content of Module '")
                .and_then(|r| r.split_once("'. Occupies a serialized size of "))
                .and_then(|(name, r)| Some((name, r.strip_suffix(" bytes>")?.parse().ok()?)));
            let (name, body_len) =
                parsed.ok_or_else(|| format!("golden: unexpected module text {s:?}"))?;
            Shown::Module {
                name: name.to_string(),
                body_len,
            }
        }
        ValueKind::Stream => Shown::Stream(golden_stream(v)?),
    };
    Ok(shown.normalized())
}

/// `{"entries": [{"id", "items": {…}}], "length", "entriesAdded", "firstID", "lastID",
/// "maxDelEntryID", "groups": [{"name", "lastid", "entriesRead", "pending": [{"sent",
/// "id", "count"}], "consumers": [{"name", "activeTime", "seenTime", "pending": [{"id"}]}]}]}`;
/// only `entries` without stream metadata.
fn golden_stream(v: &Json) -> Result<ShownStream, String> {
    let bad = |what: &str| format!("golden stream: bad or missing {what}");
    let s = |j: Option<&Json>, what: &str| {
        j.and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad(what))
    };
    let entries = items(v.get("entries"))
        .iter()
        .map(|e| {
            let items = e
                .get("items")
                .and_then(Json::as_obj)
                .ok_or_else(|| bad("items"))?
                .iter()
                .map(|(f, x)| Ok((f.clone(), s(Some(x), "item value")?)))
                .collect::<Result<Vec<_>, String>>()?;
            Ok((s(e.get("id"), "entry id")?, items))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let groups = match v.get("groups") {
        None => None,
        Some(g) => Some(
            g.as_arr()
                .ok_or_else(|| bad("groups"))?
                .iter()
                .map(|g| {
                    Ok(ShownGroup {
                        name: s(g.get("name"), "group name")?,
                        last_id: s(g.get("lastid"), "group lastid")?,
                        entries_read: g.get("entriesRead").and_then(Json::as_u64),
                        pending: items(g.get("pending"))
                            .iter()
                            .map(|p| {
                                Ok((
                                    s(p.get("id"), "pending id")?,
                                    p.get("sent")
                                        .and_then(Json::as_i64)
                                        .ok_or_else(|| bad("sent"))?,
                                    p.get("count")
                                        .and_then(Json::as_u64)
                                        .ok_or_else(|| bad("count"))?,
                                ))
                            })
                            .collect::<Result<_, String>>()?,
                        consumers: items(g.get("consumers"))
                            .iter()
                            .map(|c| {
                                Ok(ShownConsumer {
                                    name: s(c.get("name"), "consumer name")?,
                                    seen_ms: Some(
                                        c.get("seenTime")
                                            .and_then(Json::as_i64)
                                            .ok_or_else(|| bad("seenTime"))?,
                                    ),
                                    active_ms: Some(
                                        c.get("activeTime")
                                            .and_then(Json::as_i64)
                                            .ok_or_else(|| bad("activeTime"))?,
                                    ),
                                    pending: items(c.get("pending"))
                                        .iter()
                                        .map(|p| s(p.get("id"), "consumer pending id"))
                                        .collect::<Result<_, String>>()?,
                                })
                            })
                            .collect::<Result<_, String>>()?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
    };
    Ok(ShownStream {
        entries,
        length: v.get("length").and_then(Json::as_u64),
        last_id: v.get("lastID").and_then(Json::as_str).map(str::to_string),
        first_id: v.get("firstID").and_then(Json::as_str).map(str::to_string),
        max_deleted_id: v
            .get("maxDelEntryID")
            .and_then(Json::as_str)
            .map(str::to_string),
        entries_added: v.get("entriesAdded").and_then(Json::as_u64),
        groups,
    })
}

fn compare_aux(v: &Json, rdb: &ferry::rdb::collect::Rdb) -> Vec<String> {
    let Some(obj) = v.as_obj() else {
        return vec!["golden __aux__ is not an object".into()];
    };
    let mut expected: Vec<(String, String)> = obj
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().unwrap_or("<not a string>").to_string(),
            )
        })
        .collect();
    let mut got: Vec<(String, String)> = rdb
        .aux
        .iter()
        .map(|(k, v)| (Text::Latin1.render(k), Text::Latin1.render(v)))
        .collect();
    expected.sort();
    got.sort();
    if expected == got {
        vec![]
    } else {
        vec![format!("aux fields: {}", describe_diff(&expected, &got))]
    }
}

fn compare_functions(v: &Json, rdb: &ferry::rdb::collect::Rdb) -> Vec<String> {
    let Some(obj) = v.as_obj() else {
        return vec!["golden __func__ is not an object".into()];
    };
    let mut expected: Vec<String> = obj
        .iter()
        .map(|(_, code)| code.as_str().unwrap_or("<not a string>").to_string())
        .collect();
    let mut got: Vec<String> = rdb
        .functions
        .iter()
        .map(|f| Text::Latin1.render(f))
        .collect();
    expected.sort();
    got.sort();
    if expected == got {
        vec![]
    } else {
        vec![format!("functions: {}", describe_diff(&expected, &got))]
    }
}

/// `"__dbsize__": {"size", "expires"}`: the RESIZEDB hint, which `collect` does not keep.
fn compare_dbsize(v: &Json, data: &[u8]) -> Vec<String> {
    let expected = (
        v.get("size").and_then(Json::as_u64),
        v.get("expires").and_then(Json::as_u64),
    );
    let (Some(size), Some(expires)) = expected else {
        return vec![format!("golden __dbsize__ lacks size/expires: {v:?}")];
    };
    match decode_extras(data) {
        Err(e) => vec![format!("decoding for RESIZEDB: {e}")],
        Ok(x) if x.resize == [(size, expires)] => vec![],
        Ok(x) => vec![format!(
            "RESIZEDB: expected [({size}, {expires})], got {:?}",
            x.resize
        )],
    }
}

/// `"__slotinfo__": {"slotId", "slotSize", "slotSExpiresSize"}` (sic).
fn compare_slotinfo(v: &Json, rdb: &ferry::rdb::collect::Rdb) -> Vec<String> {
    let field = |f: &str| v.get(f).and_then(Json::as_u64);
    let (Some(slot), Some(size), Some(exp)) = (
        field("slotId"),
        field("slotSize"),
        field("slotSExpiresSize"),
    ) else {
        return vec![format!("golden __slotinfo__ lacks a field: {v:?}")];
    };
    if rdb.slot_info == [(slot, size, exp)] {
        vec![]
    } else {
        vec![format!(
            "SLOT_INFO: expected [({slot}, {size}, {exp})], got {:?}",
            rdb.slot_info
        )]
    }
}
