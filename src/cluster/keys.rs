//! Where a command's keys are, from the target's own `COMMAND` reply.
//!
//! Servers from 7.0 describe every command's keys with *key specifications* (a
//! `begin_search` step — an index, or a keyword — and a `find_keys` step — a range, or a
//! count read from an argument); older ones give the legacy `first`, `last`, `step`
//! triple, which cannot describe commands whose keys move (`movablekeys`: 0 0 0 on Redis
//! 3.0/3.2 for EVAL, ZUNIONSTORE, MIGRATE, SORT …). Those come from a built-in table
//! ([`builtin_movable`]), written from the commands' documented syntax. The rules that
//! apply a spec are the server's `getKeysUsingKeySpecs`.

use std::collections::HashMap;

use super::{fields, text};
use crate::resp::Frame;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Begin {
    Index(i64),
    Keyword { keyword: Vec<u8>, startfrom: i64 },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Find {
    Range {
        lastkey: i64,
        keystep: i64,
        limit: i64,
    },
    Keynum {
        keynumidx: i64,
        firstkey: i64,
        keystep: i64,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeySpec {
    begin: Begin,
    find: Find,
    /// Flagged `incomplete`: the spec does not find every key (SORT's STORE).
    incomplete: bool,
}

/// What one command's reply entry says about its keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct CommandKeys {
    first: i64,
    last: i64,
    step: i64,
    movable: bool,
    specs: Vec<KeySpec>,
    /// `name|sub` entries exist for this command.
    has_subcommands: bool,
}

/// Key positions of the commands a server knows.
#[derive(Debug, Clone, Default)]
pub struct KeyFinder {
    cmds: HashMap<Vec<u8>, CommandKeys>,
}

/// Why the keys of a command cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the target does not know the command `{0}`")]
    Unknown(String),
    #[error("the arguments of `{0}` do not fit its key specification")]
    Malformed(String),
}

fn int(f: Option<&Frame>) -> i64 {
    f.and_then(Frame::to_i64).unwrap_or(0)
}

fn flag_set(f: Option<&Frame>) -> Vec<String> {
    match f {
        Some(Frame::Array(a) | Frame::Set(a)) => a.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

fn parse_spec(f: &Frame) -> KeySpec {
    let fs = fields(f);
    let get = |n: &str| fs.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
    let sub = |outer: Option<&Frame>| -> (String, Vec<(String, Frame)>) {
        let Some(o) = outer else {
            return (String::new(), Vec::new());
        };
        let of = fields(o);
        let ty = of
            .iter()
            .find(|(k, _)| k == "type")
            .and_then(|(_, v)| text(v))
            .unwrap_or_default();
        let spec = of
            .iter()
            .find(|(k, _)| k == "spec")
            .map(|(_, v)| fields(v).into_iter().map(|(k, v)| (k, v.clone())).collect())
            .unwrap_or_default();
        (ty, spec)
    };
    let val = |spec: &[(String, Frame)], n: &str| {
        spec.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    };
    let (bt, bs) = sub(get("begin_search"));
    let begin = match bt.as_str() {
        "index" => Begin::Index(int(val(&bs, "index").as_ref())),
        "keyword" => Begin::Keyword {
            keyword: val(&bs, "keyword")
                .and_then(|f| f.as_bytes().map(<[u8]>::to_vec))
                .unwrap_or_default(),
            startfrom: int(val(&bs, "startfrom").as_ref()),
        },
        _ => Begin::Unknown,
    };
    let (ft, fspec) = sub(get("find_keys"));
    let find = match ft.as_str() {
        "range" => Find::Range {
            lastkey: int(val(&fspec, "lastkey").as_ref()),
            keystep: int(val(&fspec, "keystep").as_ref()),
            limit: int(val(&fspec, "limit").as_ref()),
        },
        "keynum" => Find::Keynum {
            keynumidx: int(val(&fspec, "keynumidx").as_ref()),
            firstkey: int(val(&fspec, "firstkey").as_ref()),
            keystep: int(val(&fspec, "keystep").as_ref()),
        },
        _ => Find::Unknown,
    };
    let incomplete = flag_set(get("flags"))
        .iter()
        .any(|f| f.eq_ignore_ascii_case("incomplete"));
    KeySpec {
        begin,
        find,
        incomplete,
    }
}

impl KeyFinder {
    /// From the reply of `COMMAND` (or `COMMAND INFO …`), any server version.
    pub fn from_command_reply(reply: &Frame) -> Result<KeyFinder, String> {
        let Frame::Array(entries) = reply else {
            return Err(format!("COMMAND: expected an array, got {reply:?}"));
        };
        let mut kf = KeyFinder::default();
        for e in entries {
            kf.add_entry(e)?;
        }
        if kf.cmds.is_empty() {
            return Err("COMMAND: the reply lists no command".into());
        }
        Ok(kf)
    }

    fn add_entry(&mut self, e: &Frame) -> Result<(), String> {
        let Frame::Array(items) = e else {
            // `COMMAND INFO nosuch` answers a null for it.
            return Ok(());
        };
        let name = items
            .first()
            .and_then(Frame::as_bytes)
            .ok_or("COMMAND: an entry without a name")?
            .to_ascii_lowercase();
        let flags = flag_set(items.get(2));
        let mut ck = CommandKeys {
            first: int(items.get(3)),
            last: int(items.get(4)),
            step: int(items.get(5)),
            movable: flags.iter().any(|f| f == "movablekeys"),
            specs: Vec::new(),
            has_subcommands: false,
        };
        if let Some(Frame::Array(specs)) = items.get(8) {
            ck.specs = specs.iter().map(parse_spec).collect();
        }
        if let Some(Frame::Array(subs)) = items.get(9) {
            ck.has_subcommands = !subs.is_empty();
            for s in subs {
                self.add_entry(s)?;
            }
        }
        self.cmds.insert(name, ck);
        Ok(())
    }

    /// Whether the server listed the command.
    pub fn knows(&self, name: &[u8]) -> bool {
        self.cmds.contains_key(&name.to_ascii_lowercase())
    }

    /// The positions of the keys in `args` (`args[0]` is the command name).
    pub fn key_positions(&self, args: &[&[u8]]) -> Result<Vec<usize>, KeyError> {
        let Some(name) = args.first() else {
            return Ok(Vec::new());
        };
        let lname = name.to_ascii_lowercase();
        let show = || String::from_utf8_lossy(name).into_owned();
        let Some(top) = self.cmds.get(&lname) else {
            return Err(KeyError::Unknown(show()));
        };
        let ck = match (top.has_subcommands, args.get(1)) {
            (true, Some(sub)) => {
                let mut full = lname.clone();
                full.push(b'|');
                full.extend(sub.to_ascii_lowercase());
                self.cmds.get(&full).unwrap_or(top)
            }
            _ => top,
        };
        if !ck.specs.is_empty() {
            // As the server does: the specs when they are complete and apply, else the
            // command's own key procedure (here: the built-in table).
            let complete = !ck.specs.iter().any(|s| s.incomplete);
            let found = if complete {
                by_specs(&ck.specs, args)
            } else {
                None
            };
            return match found {
                Some(v) => Ok(v),
                None => builtin_movable(&lname, args)
                    .flatten()
                    .or_else(|| by_specs(&ck.specs, args))
                    .ok_or_else(|| KeyError::Malformed(show())),
            };
        }
        if ck.movable || (ck.first == 0 && builtin_movable(&lname, args).is_some()) {
            return builtin_movable(&lname, args)
                .unwrap_or(None)
                .ok_or_else(|| KeyError::Malformed(show()));
        }
        by_range(ck.first, ck.last, ck.step, args.len()).ok_or_else(|| KeyError::Malformed(show()))
    }
}

/// The legacy triple: keys at `first`, `first+step`, … up to `last` (negative: from the end).
fn by_range(first: i64, last: i64, step: i64, argc: usize) -> Option<Vec<usize>> {
    if first <= 0 {
        return Some(Vec::new());
    }
    let argc = argc as i64;
    let last = if last < 0 { argc + last } else { last };
    let step = step.max(1);
    let mut out = Vec::new();
    let mut i = first;
    while i <= last {
        if i >= argc {
            return None;
        }
        out.push(i as usize);
        i += step;
    }
    Some(out)
}

fn by_specs(specs: &[KeySpec], args: &[&[u8]]) -> Option<Vec<usize>> {
    let argc = args.len() as i64;
    let mut out = Vec::new();
    for spec in specs {
        let first = match &spec.begin {
            Begin::Index(i) => *i,
            Begin::Keyword { keyword, startfrom } => {
                let (start, end) = if *startfrom > 0 {
                    (*startfrom, argc - 1)
                } else {
                    (argc + startfrom, 0)
                };
                let mut found = 0;
                let mut i = start;
                while i != end {
                    if i >= argc || i < 1 {
                        break;
                    }
                    if args[i as usize].eq_ignore_ascii_case(keyword) {
                        found = i + 1;
                        break;
                    }
                    i += if start <= end { 1 } else { -1 };
                }
                if found == 0 {
                    continue;
                }
                found
            }
            Begin::Unknown => return None,
        };
        let (first, last, step) = match &spec.find {
            Find::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let last = if *lastkey >= 0 {
                    first + lastkey
                } else if *limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, *keystep)
            }
            Find::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                let at = first + keynumidx;
                let n: i64 = std::str::from_utf8(args.get(at as usize)?)
                    .ok()?
                    .parse()
                    .ok()?;
                if n < 0 {
                    return None;
                }
                // `n` comes from the command itself: a hostile count must not overflow.
                let f = first + firstkey;
                (f, f.saturating_add(n) - 1, *keystep)
            }
            Find::Unknown => return None,
        };
        let step = step.max(1);
        let mut i = first;
        while i <= last {
            if i >= argc || i < 1 {
                return None;
            }
            out.push(i as usize);
            i += step;
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Keys of `movablekeys` commands on servers without key specifications (Redis < 7.0),
/// from each command's syntax. `None`: not in the table; `Some(None)`: malformed.
pub fn builtin_movable(name: &[u8], args: &[&[u8]]) -> Option<Option<Vec<usize>>> {
    let num = |i: usize| -> Option<usize> { std::str::from_utf8(args.get(i)?).ok()?.parse().ok() };
    let counted = |numidx: usize, extra: &[usize]| -> Option<Vec<usize>> {
        let n = num(numidx)?;
        let first = numidx + 1;
        if first.checked_add(n).is_none_or(|end| end > args.len()) {
            return None;
        }
        let mut v: Vec<usize> = extra.to_vec();
        v.extend(first..first + n);
        Some(v)
    };
    let after_keyword = |from: usize, kws: &[&[u8]]| -> Vec<usize> {
        (from..args.len().saturating_sub(1))
            .filter(|&i| kws.iter().any(|k| args[i].eq_ignore_ascii_case(k)))
            .map(|i| i + 1)
            .collect()
    };
    Some(match name {
        b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" | b"fcall" | b"fcall_ro" => {
            counted(2, &[])
        }
        b"zunionstore" | b"zinterstore" | b"zdiffstore" => counted(2, &[1]),
        b"zunion" | b"zinter" | b"zdiff" | b"sintercard" | b"zintercard" | b"lmpop" | b"zmpop" => {
            counted(1, &[])
        }
        b"blmpop" | b"bzmpop" => counted(2, &[]),
        b"sort" | b"sort_ro" => {
            let mut v = vec![1];
            v.extend(after_keyword(2, &[b"STORE"]));
            (args.len() > 1).then_some(v)
        }
        b"georadius" | b"georadiusbymember" => {
            let mut v = vec![1];
            v.extend(after_keyword(2, &[b"STORE", b"STOREDIST"]));
            (args.len() > 1).then_some(v)
        }
        b"migrate" => {
            if args.len() < 6 {
                None
            } else if !args[3].is_empty() {
                Some(vec![3])
            } else {
                let k = (6..args.len()).find(|&i| args[i].eq_ignore_ascii_case(b"KEYS"));
                k.map(|k| (k + 1..args.len()).collect())
            }
        }
        b"xread" | b"xreadgroup" => {
            let s = (1..args.len()).find(|&i| args[i].eq_ignore_ascii_case(b"STREAMS"));
            s.and_then(|s| {
                let rest = args.len() - s - 1;
                (rest % 2 == 0).then(|| (s + 1..s + 1 + rest / 2).collect())
            })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }
    fn i(n: i64) -> Frame {
        Frame::Integer(n)
    }
    fn arr(v: Vec<Frame>) -> Frame {
        Frame::Array(v)
    }
    fn legacy(name: &str, first: i64, last: i64, step: i64, flags: &[&str]) -> Frame {
        arr(vec![
            b(name),
            i(-2),
            arr(flags
                .iter()
                .map(|f| Frame::Simple(f.as_bytes().to_vec()))
                .collect()),
            i(first),
            i(last),
            i(step),
        ])
    }
    fn spec(begin: Frame, find: Frame) -> Frame {
        arr(vec![
            b("flags"),
            arr(vec![]),
            b("begin_search"),
            begin,
            b("find_keys"),
            find,
        ])
    }
    fn index(n: i64) -> Frame {
        arr(vec![
            b("type"),
            b("index"),
            b("spec"),
            arr(vec![b("index"), i(n)]),
        ])
    }
    fn keyword(k: &str, from: i64) -> Frame {
        arr(vec![
            b("type"),
            b("keyword"),
            b("spec"),
            arr(vec![b("keyword"), b(k), b("startfrom"), i(from)]),
        ])
    }
    fn unknown() -> Frame {
        arr(vec![b("type"), b("unknown"), b("spec"), arr(vec![])])
    }
    fn range(last: i64, step: i64, limit: i64) -> Frame {
        arr(vec![
            b("type"),
            b("range"),
            b("spec"),
            arr(vec![
                b("lastkey"),
                i(last),
                b("keystep"),
                i(step),
                b("limit"),
                i(limit),
            ]),
        ])
    }
    fn keynum(idx: i64, first: i64, step: i64) -> Frame {
        arr(vec![
            b("type"),
            b("keynum"),
            b("spec"),
            arr(vec![
                b("keynumidx"),
                i(idx),
                b("firstkey"),
                i(first),
                b("keystep"),
                i(step),
            ]),
        ])
    }
    fn modern(name: &str, specs: Vec<Frame>, subs: Vec<Frame>) -> Frame {
        arr(vec![
            b(name),
            i(-2),
            arr(vec![]),
            i(0),
            i(0),
            i(0),
            arr(vec![]),
            arr(vec![]),
            arr(specs),
            arr(subs),
        ])
    }
    fn pos(kf: &KeyFinder, cmd: &str) -> Result<Vec<usize>, KeyError> {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        kf.key_positions(&args)
    }

    #[test]
    fn legacy_triples_and_the_builtin_table_of_redis_3() {
        // What redis-3.2.6 answers (recorded from `COMMAND INFO`).
        let kf = KeyFinder::from_command_reply(&arr(vec![
            legacy("del", 1, -1, 1, &["write"]),
            legacy("mset", 1, -1, 2, &["write", "denyoom"]),
            legacy("set", 1, 1, 1, &["write", "denyoom"]),
            legacy("eval", 0, 0, 0, &["noscript", "movablekeys"]),
            legacy("zunionstore", 0, 0, 0, &["write", "denyoom", "movablekeys"]),
            legacy("migrate", 0, 0, 0, &["write", "movablekeys"]),
            legacy("sort", 1, 1, 1, &["write", "denyoom", "movablekeys"]),
            legacy("flushall", 0, 0, 0, &["write"]),
        ]))
        .unwrap();
        assert_eq!(pos(&kf, "DEL a b c"), Ok(vec![1, 2, 3]));
        assert_eq!(pos(&kf, "mset a 1 b 2"), Ok(vec![1, 3]));
        assert_eq!(pos(&kf, "set a 1 px 5"), Ok(vec![1]));
        assert_eq!(pos(&kf, "eval s 2 k1 k2 a1"), Ok(vec![3, 4]));
        assert_eq!(pos(&kf, "eval s 0"), Ok(vec![]));
        assert!(matches!(
            pos(&kf, "eval s 3 k1"),
            Err(KeyError::Malformed(_))
        ));
        assert_eq!(
            pos(&kf, "zunionstore d 2 a b WEIGHTS 1 2"),
            Ok(vec![1, 3, 4])
        );
        assert_eq!(pos(&kf, "migrate h 1 k 0 10"), Ok(vec![3]));
        assert_eq!(pos(&kf, "migrate h 1  0 10 KEYS x y"), Ok(vec![7, 8]));
        assert_eq!(pos(&kf, "sort l STORE dst"), Ok(vec![1, 3]));
        assert_eq!(pos(&kf, "flushall"), Ok(vec![]));
        assert!(matches!(pos(&kf, "nosuch x"), Err(KeyError::Unknown(_))));
        assert!(matches!(pos(&kf, "set"), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn key_specifications_of_redis_7() {
        let kf = KeyFinder::from_command_reply(&arr(vec![
            modern("set", vec![spec(index(1), range(0, 1, 0))], vec![]),
            modern("mset", vec![spec(index(1), range(-1, 2, 0))], vec![]),
            modern("eval", vec![spec(index(2), keynum(0, 1, 1))], vec![]),
            // LMOVE-like: two single keys.
            modern(
                "lmove",
                vec![
                    spec(index(1), range(0, 1, 0)),
                    spec(index(2), range(0, 1, 0)),
                ],
                vec![],
            ),
            // SORT as 7.2 describes it: the key, then `unknown` specs for BY/GET and
            // STORE: the built-in procedure finds STORE's key, as the server's does.
            modern(
                "sort",
                vec![
                    spec(index(1), range(0, 1, 0)),
                    spec(unknown(), unknown()),
                    spec(unknown(), unknown()),
                ],
                vec![],
            ),
            // A spec with a keyword searched from the end.
            modern(
                "lastkw",
                vec![spec(keyword("STORE", -1), range(0, 1, 0))],
                vec![],
            ),
            // XREAD-like: the keys are half of what follows STREAMS.
            modern(
                "xread",
                vec![spec(keyword("STREAMS", 1), range(-1, 1, 2))],
                vec![],
            ),
            modern(
                "xgroup",
                vec![],
                vec![modern(
                    "xgroup|create",
                    vec![spec(index(2), range(0, 1, 0))],
                    vec![],
                )],
            ),
            modern("flushall", vec![], vec![]),
        ]))
        .unwrap();
        assert_eq!(pos(&kf, "SET k v"), Ok(vec![1]));
        assert_eq!(pos(&kf, "MSET a 1 b 2 c 3"), Ok(vec![1, 3, 5]));
        assert_eq!(pos(&kf, "EVAL s 2 a b x"), Ok(vec![3, 4]));
        assert_eq!(pos(&kf, "LMOVE a b LEFT RIGHT"), Ok(vec![1, 2]));
        assert_eq!(pos(&kf, "SORT l BY w STORE d"), Ok(vec![1, 5]));
        assert_eq!(pos(&kf, "SORT l"), Ok(vec![1]));
        assert_eq!(pos(&kf, "LASTKW a STORE b c STORE d"), Ok(vec![6]));
        assert_eq!(pos(&kf, "XREAD COUNT 2 STREAMS a b 0 0"), Ok(vec![4, 5]));
        assert_eq!(pos(&kf, "XGROUP CREATE s g $"), Ok(vec![2]));
        assert_eq!(pos(&kf, "FLUSHALL"), Ok(vec![]));
        assert!(matches!(pos(&kf, "EVAL s x"), Err(KeyError::Malformed(_))));
        // A count near the integer limits is malformed, not an overflow.
        for n in ["18446744073709551615", "9223372036854775807"] {
            assert!(matches!(
                pos(&kf, &format!("EVAL s {n} k")),
                Err(KeyError::Malformed(_))
            ));
        }
    }
}
