//! The normalized model both sides of a golden comparison are brought to.
//!
//! A golden shows a value in its own way: byte strings escaped or lossily decoded, maps as
//! JSON objects (unordered), scores as decimal text. Rather than trying to undo that
//! (impossible where the golden lost information), ferry's decoded value is rendered the
//! way the golden would have shown it — same text rendering, same ordering rules, the same
//! fields left out — and the two renderings are compared with `==`.

use std::fmt::Debug;

use ferry::rdb::collect::{Key, Stream, Value};
use ferry::rdb::ValueKind;

/// How a golden writes byte strings. Ferry's bytes are rendered the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// Every byte is one character U+0000..U+00FF. Lossless: librdb escapes each
    /// non-printable byte as `\u00NN`, redis-rdb-cli as `\xNN`.
    Latin1,
    /// UTF-8 where valid, each invalid byte replaced by U+FFFD: Go's `encoding/json`
    /// (HDT3213/rdb). Lossy for binary values.
    GoLossy,
    /// UTF-8 where valid, each maximal invalid subsequence replaced by one U+FFFD: Java's
    /// `new String(bytes, UTF_8)` (redis-rdb-cli). Lossy for binary values.
    JavaLossy,
}

impl Text {
    pub fn render(self, b: &[u8]) -> String {
        match self {
            Text::Latin1 => b.iter().map(|&c| char::from(c)).collect(),
            Text::JavaLossy => String::from_utf8_lossy(b).into_owned(),
            Text::GoLossy => {
                let mut out = String::with_capacity(b.len());
                let mut rest = b;
                while !rest.is_empty() {
                    match std::str::from_utf8(rest) {
                        Ok(s) => {
                            out.push_str(s);
                            break;
                        }
                        Err(e) => {
                            let (ok, bad) = rest.split_at(e.valid_up_to());
                            // The prefix was just validated.
                            out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                            out.push('\u{FFFD}');
                            rest = &bad[1..];
                        }
                    }
                }
                out
            }
        }
    }

    /// A golden string back to bytes, when the rendering is lossless.
    pub fn bytes(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Text::Latin1 => s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect(),
            _ => None,
        }
    }
}

/// A score: the bits of the double. Goldens print scores as decimal text that parses back
/// to the exact double (librdb: fpconv shortest; Go: shortest; Java: `Double.toString`,
/// which always round-trips), so bits are compared, never an epsilon.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score(pub u64);

impl Debug for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", f64::from_bits(self.0))
    }
}

impl Score {
    pub fn of(v: f64) -> Score {
        Score(v.to_bits())
    }
    /// Parses a golden's score text, including the spellings of infinities in use.
    pub fn parse(text: &str) -> Option<Score> {
        let v = match text {
            "inf" | "+inf" | "Infinity" => f64::INFINITY,
            "-inf" | "-Infinity" => f64::NEG_INFINITY,
            _ => text.parse::<f64>().ok()?,
        };
        Some(Score::of(v))
    }
}

/// A stream as a golden shows it. `None` fields are ones this golden does not state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShownStream {
    /// Live entries: id and fields (sorted: goldens print them as JSON objects).
    pub entries: Vec<(String, Vec<(String, String)>)>,
    pub length: Option<u64>,
    pub last_id: Option<String>,
    pub first_id: Option<String>,
    pub max_deleted_id: Option<String>,
    pub entries_added: Option<u64>,
    pub groups: Option<Vec<ShownGroup>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShownGroup {
    pub name: String,
    pub last_id: String,
    pub entries_read: Option<u64>,
    /// id, delivery time (ms), delivery count
    pub pending: Vec<(String, i64, u64)>,
    pub consumers: Vec<ShownConsumer>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShownConsumer {
    pub name: String,
    pub seen_ms: Option<i64>,
    /// Before RDB type 21 there is no active time; servers (and HDT3213) use the seen
    /// time, so that is what ferry's value is rendered as.
    pub active_ms: Option<i64>,
    pub pending: Vec<String>,
}

/// A key's value as a golden shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Str(String),
    List(Vec<String>),
    /// Sorted.
    Set(Vec<String>),
    /// Sorted by member (then score).
    Zset(Vec<(String, Score)>),
    /// Fields sorted; TTLs (absolute ms, sorted by field) when the golden states them.
    Hash(Vec<(String, String)>, Option<Vec<(String, Option<i64>)>>),
    Stream(ShownStream),
    /// Module name and the serialized size librdb reports (value bytes after the type byte).
    Module {
        name: String,
        body_len: u64,
    },
    /// librdb STRUCT level: the encoded blobs (ziplist, listpack, intset, zipmap, quicklist
    /// nodes), decompressed.
    Nodes(Vec<String>),
    /// librdb RAW level / redis-rdb-cli dumps: the type byte and value bytes as in the RDB.
    Raw(String),
}

impl Shown {
    /// Sorts what the golden's format leaves unordered.
    pub fn normalized(mut self) -> Shown {
        match &mut self {
            Shown::Set(s) => s.sort(),
            Shown::Zset(z) => z.sort(),
            Shown::Hash(h, ttl) => {
                h.sort();
                if let Some(t) = ttl {
                    t.sort();
                }
            }
            Shown::Stream(s) => {
                for (_, fields) in &mut s.entries {
                    fields.sort();
                }
            }
            _ => {}
        }
        self
    }
}

/// A key as a golden describes it; `None` is "the golden does not say". `V` is the
/// golden's value: a [`Shown`] when the golden can be read on its own, or its JSON when
/// reading it needs the matched key (librdb prints lists and sets alike, as arrays).
#[derive(Debug, Clone)]
pub struct GoldenKey<V> {
    pub db: Option<u64>,
    pub key: String,
    pub kind: Option<ValueKind>,
    /// `Some(None)`: the golden states there is no expiry.
    pub expire_ms: Option<Option<i64>>,
    pub value: V,
}

/// Renders ferry's value the way `like` (a golden's value) shows it: same text rendering,
/// same fields left out. `nodes` supplies the STRUCT-level blobs when `like` is `Nodes`.
pub fn render_like(
    k: &Key,
    text: Text,
    like: &Shown,
    nodes: impl FnOnce(&Key) -> Result<Vec<Vec<u8>>, String>,
) -> Result<Shown, String> {
    let r = |b: &[u8]| text.render(b);
    let shown = match (like, &k.value) {
        (Shown::Raw(_), _) => {
            let raw = k
                .raw
                .as_deref()
                .ok_or("ferry kept no raw bytes for this key")?;
            Shown::Raw(r(raw))
        }
        (Shown::Nodes(_), _) => Shown::Nodes(nodes(k)?.iter().map(|n| r(n)).collect()),
        (Shown::Str(_), Value::String(s)) => Shown::Str(r(s)),
        (Shown::List(_), Value::List(l)) => Shown::List(l.iter().map(|e| r(e)).collect()),
        (Shown::Set(_), Value::Set(s)) => Shown::Set(s.iter().map(|e| r(e)).collect()),
        (Shown::Zset(_), Value::Zset(z)) => {
            Shown::Zset(z.iter().map(|(m, s)| (r(m), Score::of(*s))).collect())
        }
        (Shown::Hash(_, ttl), Value::Hash(h)) => Shown::Hash(
            h.iter().map(|(f, v, _)| (r(f), r(v))).collect(),
            ttl.as_ref()
                .map(|_| h.iter().map(|(f, _, t)| (r(f), *t)).collect()),
        ),
        (Shown::Stream(like), Value::Stream(s)) => Shown::Stream(stream_like(s, text, like)),
        (Shown::Module { .. }, Value::Module { name, .. }) => Shown::Module {
            name: name.clone(),
            // encoded_len counts the type byte; librdb's serialized size does not.
            body_len: k.encoded_len.saturating_sub(1),
        },
        (like, got) => {
            return Err(format!(
                "the golden shows {} but ferry decoded a {}",
                shape(like),
                value_name(got)
            ))
        }
    };
    Ok(shown.normalized())
}

fn stream_like(s: &Stream, text: Text, like: &ShownStream) -> ShownStream {
    let r = |b: &[u8]| text.render(b);
    let id = |i: &ferry::rdb::StreamId| i.to_string();
    ShownStream {
        entries: s
            .entries
            .iter()
            .map(|(i, f)| (id(i), f.iter().map(|(a, b)| (r(a), r(b))).collect()))
            .collect(),
        length: like.length.and(Some(s.length)),
        last_id: like.last_id.as_ref().map(|_| id(&s.last_id)),
        first_id: like.first_id.as_ref().and(s.first_id.as_ref().map(id)),
        max_deleted_id: like
            .max_deleted_id
            .as_ref()
            .and(s.max_deleted_id.as_ref().map(id)),
        entries_added: like.entries_added.and(s.entries_added),
        groups: like.groups.as_ref().map(|lg| {
            s.groups
                .iter()
                .enumerate()
                .map(|(gi, g)| {
                    let lg = lg.get(gi);
                    ShownGroup {
                        name: r(&g.name),
                        last_id: id(&g.last_id),
                        entries_read: lg.and_then(|l| l.entries_read).and(g.entries_read),
                        pending: g.pending.iter().map(|(i, t, c)| (id(i), *t, *c)).collect(),
                        consumers: g
                            .consumers
                            .iter()
                            .enumerate()
                            .map(|(ci, c)| {
                                let lc = lg.and_then(|l| l.consumers.get(ci));
                                ShownConsumer {
                                    name: r(&c.name),
                                    seen_ms: lc.and_then(|l| l.seen_ms).map(|_| c.seen_time_ms),
                                    active_ms: lc
                                        .and_then(|l| l.active_ms)
                                        .map(|_| c.active_time_ms.unwrap_or(c.seen_time_ms)),
                                    pending: c.pending.iter().map(id).collect(),
                                }
                            })
                            .collect(),
                    }
                })
                .collect()
        }),
    }
}

fn shape(s: &Shown) -> &'static str {
    match s {
        Shown::Str(_) => "a string",
        Shown::List(_) => "a list",
        Shown::Set(_) => "a set",
        Shown::Zset(_) => "a zset",
        Shown::Hash(..) => "a hash",
        Shown::Stream(_) => "a stream",
        Shown::Module { .. } => "a module value",
        Shown::Nodes(_) => "encoded nodes",
        Shown::Raw(_) => "raw bytes",
    }
}

fn value_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::Zset(_) => "zset",
        Value::Hash(_) => "hash",
        Value::Stream(_) => "stream",
        Value::Module { .. } => "module",
    }
}

/// "expected …, got …" around the first difference of two Debug renderings, so a
/// mismatch in a 1000-member hash prints a readable excerpt, not both values whole.
pub fn describe_diff(expected: &impl Debug, got: &impl Debug) -> String {
    let (e, g) = (format!("{expected:?}"), format!("{got:?}"));
    let at = e
        .char_indices()
        .zip(g.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(e.len().min(g.len()));
    let excerpt = |s: &str| {
        let from = s.floor_char_boundary_compat(at.saturating_sub(80));
        let to = s.floor_char_boundary_compat((at + 120).min(s.len()));
        format!(
            "{}{}{}",
            if from > 0 { "…" } else { "" },
            &s[from..to],
            if to < s.len() { "…" } else { "" }
        )
    };
    format!("expected {}\n          got {}", excerpt(&e), excerpt(&g))
}

trait CharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl CharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Compares golden keys with ferry's and returns one line per mismatch. Keys are paired
/// by name (and database, when the golden states it) in order of appearance, so a key
/// present twice is matched twice. `render` gives, for a golden key and its ferry key, the
/// expected and the decoded value in the golden's shape, or says why it cannot.
pub fn compare_keys<V>(
    golden: &[GoldenKey<V>],
    ferry: &[&Key],
    text: Text,
    mut render: impl FnMut(&GoldenKey<V>, &Key) -> Result<(Shown, Shown), String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = vec![false; ferry.len()];
    for g in golden {
        let found = ferry.iter().enumerate().find(|(i, k)| {
            !used[*i] && text.render(&k.key) == g.key && g.db.is_none_or(|db| db == k.db)
        });
        let Some((i, k)) = found else {
            problems.push(format!(
                "key {:?}{}: in the golden, not decoded by ferry",
                g.key,
                g.db.map(|d| format!(" (db {d})")).unwrap_or_default()
            ));
            continue;
        };
        used[i] = true;
        let name = format!("key {:?} (db {})", g.key, k.db);
        if let Some(kind) = g.kind {
            if kind != k.kind {
                problems.push(format!("{name}: type: expected {kind:?}, got {:?}", k.kind));
                continue;
            }
        }
        if let Some(exp) = g.expire_ms {
            if exp != k.expire_ms {
                problems.push(format!(
                    "{name}: expiry (ms): expected {exp:?}, got {:?}",
                    k.expire_ms
                ));
            }
        }
        match render(g, k) {
            Ok((expected, got)) if expected == got => {}
            Ok((expected, got)) => {
                problems.push(format!("{name}: value: {}", describe_diff(&expected, &got)))
            }
            Err(why) => problems.push(format!("{name}: {why}")),
        }
    }
    for (k, _) in ferry.iter().zip(&used).filter(|(_, u)| !**u) {
        problems.push(format!(
            "key {:?} (db {}): decoded by ferry, not in the golden",
            text.render(&k.key),
            k.db
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_renderings_match_their_languages() {
        // E2 82 is a truncated 3-byte sequence: Go replaces each byte, Java the subpart.
        let b = b"a\xe2\x82b\xff";
        assert_eq!(Text::GoLossy.render(b), "a\u{FFFD}\u{FFFD}b\u{FFFD}");
        assert_eq!(Text::JavaLossy.render(b), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(
            Text::Latin1.bytes(&Text::Latin1.render(b)).as_deref(),
            Some(&b[..])
        );
    }

    #[test]
    fn scores_compare_by_bits() {
        assert_eq!(Score::parse("2.2"), Some(Score::of(2.2)));
        assert_ne!(Score::parse("-0"), Score::parse("0"));
        assert_eq!(Score::parse("-inf"), Some(Score::of(f64::NEG_INFINITY)));
    }
}
