//! A dataset that covers every type and encoding a server version can produce, its model,
//! and an independent way to read a live keyspace back into the same model.
//!
//! * [`fill`] writes the dataset through ordinary commands and returns the [`Model`] of what it
//!   wrote (computed from the commands it sent, not read back). It checks with
//!   `OBJECT ENCODING` that each compact and full encoding it aimed at really occurred.
//! * [`read_back`] reads a keyspace with SCAN, TYPE and the type's read commands.
//! * [`assert_models_equal`] compares two models and reports the first differences readably.
//!
//! Conventions of the model:
//! * Expiry times are absolute unix milliseconds (`PEXPIRETIME`, or `PTTL` + now before 7.0,
//!   which is why comparisons take a tolerance).
//! * A sorted-set score is kept as `f64::to_bits`, so 17-digit values must match exactly.
//!   `-0.0` is normalised to `0.0`: a 7.0+ listpack stores an integral score as an integer, so
//!   a small sorted set turns `-0` into `0` while skiplists and older servers keep the sign; a
//!   migration between versions or encodings cannot avoid that difference (the dataset still
//!   writes `-0` scores, to both encodings).
//! * Stream counters that only some versions expose (`entries_added`, `max_deleted_id`,
//!   `entries_read`) are `None` where unavailable and compared only when both sides have them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::client::{escape, preview, Client, Reply};
use super::servers::{Flavor, ServerSpec};

pub type StreamId = (u64, u64);
/// The field-value pairs of one stream entry, in order (a field may repeat).
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;
/// field -> (value, field expiry in absolute unix ms).
pub type HashFields = BTreeMap<Vec<u8>, (Vec<u8>, Option<i64>)>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// (db, key) -> value and expiry.
    pub keys: BTreeMap<(u32, Vec<u8>), KeyModel>,
    /// The code of every function library (`FUNCTION LIST WITHCODE`).
    pub functions: BTreeSet<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyModel {
    pub value: ValueModel,
    /// Absolute unix time in milliseconds.
    pub expire_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueModel {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    /// member -> score as `f64::to_bits` (see [`score_bits`]).
    ZSet(BTreeMap<Vec<u8>, u64>),
    Hash(HashFields),
    Stream(StreamModel),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamModel {
    pub entries: Vec<(StreamId, Fields)>,
    pub last_id: StreamId,
    pub entries_added: Option<u64>,
    pub max_deleted_id: Option<StreamId>,
    pub groups: BTreeMap<Vec<u8>, GroupModel>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupModel {
    pub last_id: StreamId,
    pub entries_read: Option<u64>,
    /// entry id -> (consumer, delivery count)
    pub pending: BTreeMap<StreamId, (Vec<u8>, u64)>,
    pub consumers: BTreeSet<Vec<u8>>,
}

impl ValueModel {
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueModel::String(_) => "string",
            ValueModel::List(_) => "list",
            ValueModel::Set(_) => "set",
            ValueModel::ZSet(_) => "zset",
            ValueModel::Hash(_) => "hash",
            ValueModel::Stream(_) => "stream",
        }
    }
}

impl Model {
    /// "123 keys in dbs [0, 1, 5] (string 20, list 5, ...), 1 function library"
    pub fn summary(&self) -> String {
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        let mut dbs = BTreeSet::new();
        for ((db, _), k) in &self.keys {
            *types.entry(k.value.type_name()).or_default() += 1;
            dbs.insert(*db);
        }
        let types: Vec<String> = types.iter().map(|(t, n)| format!("{t} {n}")).collect();
        format!(
            "{} keys in dbs {:?} ({}), {} function libraries",
            self.keys.len(),
            dbs,
            types.join(", "),
            self.functions.len()
        )
    }
}

/// The model's form of a score: its bits, with `-0.0` folded into `0.0`.
pub fn score_bits(score: f64) -> u64 {
    if score == 0.0 {
        0.0f64.to_bits()
    } else {
        score.to_bits()
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------------------------
// fill
// ---------------------------------------------------------------------------------------------

/// Writes the dataset into dbs 0 (everything), 1 and 5 (a few keys, some named as in db 0) and
/// returns its model. Prints the encodings it covered to stderr. The client is left in db 0.
pub fn fill(client: &mut Client, spec: &ServerSpec) -> Model {
    let (model, covered) = fill_with_coverage(client, spec);
    eprintln!("{}: dataset covers {}", spec.name, covered.join(" "));
    model
}

/// [`fill`], also returning the `type:encoding` labels it proved with `OBJECT ENCODING`
/// (`list:quicklist+plain` and `list:quicklist+compressed` are proved with `DEBUG OBJECT`).
pub fn fill_with_coverage(client: &mut Client, spec: &ServerSpec) -> (Model, Vec<String>) {
    let mut f = Filler {
        c: client,
        spec,
        db: 0,
        model: Model::default(),
        covered: Vec::new(),
        now: now_ms(),
    };
    f.select(0);
    f.strings();
    f.lists();
    f.sets();
    f.zsets();
    f.hashes();
    if spec.has_hash_field_ttl() {
        f.hash_field_ttls();
    }
    if spec.has_streams() {
        f.streams();
    }
    if spec.has_functions() {
        f.functions();
    }
    f.other_dbs();
    f.select(0);
    let Filler { model, covered, .. } = f;
    (model, covered)
}

struct Filler<'a> {
    c: &'a mut Client,
    spec: &'a ServerSpec,
    db: u32,
    model: Model,
    covered: Vec<String>,
    /// Unix ms at the start; expiry times are offsets from it.
    now: i64,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Elements per write command, so that no single command is huge.
const CHUNK: usize = 500;

/// A command from byte-ish parts.
fn cmd<const N: usize>(parts: [&[u8]; N]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn id_text((ms, seq): StreamId) -> String {
    format!("{ms}-{seq}")
}

/// Deterministic pseudo-random bytes (xorshift64*), so every run writes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Text of exactly `n` bytes, compressible (`tag` then a repeating pattern).
fn text_of_len(tag: &str, n: usize) -> Vec<u8> {
    let mut out = tag.as_bytes().to_vec();
    let mut i = 0u32;
    while out.len() < n {
        out.extend_from_slice(format!("|{i:06}-ferry").as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Keys whose names are not plain text, one per type.
const BIN_KEY_STRING: &[u8] = b"bin:key\r\n\x00\xff\xfe end";
const BIN_KEY_LIST: &[u8] = b"\x00";
const BIN_KEY_SET: &[u8] = b"\xff\xff\xff";
const BIN_KEY_ZSET: &[u8] = b"key with spaces\r\n";
const BIN_KEY_HASH: &[u8] = "ключ:🔑".as_bytes();

/// Scores written as text: the model parses the same text (Rust and the server's strtod both
/// round correctly, so the bits agree).
const SPECIAL_SCORES: &[(&str, &str)] = &[
    ("zero", "0"),
    ("negzero", "-0"),
    ("one-and-half", "1.5"),
    ("neg", "-2.25"),
    ("tenth", "0.1"),
    ("huge", "1e300"),
    ("tiny-neg", "-1e-300"),
    ("inf", "inf"),
    ("neg-inf", "-inf"),
    ("pi", "3.141592653589793"),
    ("sum", "0.30000000000000004"),
    ("digits17", "1.2345678901234567e-8"),
    ("digits17b", "123456789.12345679"),
    ("denormal", "5e-324"),
    ("max", "1.7976931348623157e308"),
    ("int", "-42"),
    ("beyond-2^53", "9007199254740993"),
];

impl Filler<'_> {
    fn select(&mut self, db: u32) {
        self.c.select(db);
        self.db = db;
    }

    fn put(&mut self, key: &[u8], value: ValueModel) {
        self.model.keys.insert(
            (self.db, key.to_vec()),
            KeyModel {
                value,
                expire_ms: None,
            },
        );
    }

    fn value_mut(&mut self, key: &[u8]) -> &mut ValueModel {
        &mut self
            .model
            .keys
            .get_mut(&(self.db, key.to_vec()))
            .expect("key written before")
            .value
    }

    fn string(&mut self, key: &[u8], value: &[u8]) {
        self.c.ok_bin(&[b"SET", key, value]);
        self.put(key, ValueModel::String(value.to_vec()));
    }

    /// RPUSH in chunks (a new key, or appended to a list written by this filler).
    fn list(&mut self, key: &[u8], elems: &[Vec<u8>]) {
        for chunk in elems.chunks(CHUNK) {
            let mut args: Vec<&[u8]> = vec![b"RPUSH", key];
            args.extend(chunk.iter().map(|e| e.as_slice()));
            self.c.ok_bin(&args);
        }
        let k = (self.db, key.to_vec());
        match self.model.keys.get_mut(&k) {
            Some(KeyModel {
                value: ValueModel::List(l),
                ..
            }) => l.extend(elems.iter().cloned()),
            _ => self.put(key, ValueModel::List(elems.to_vec())),
        }
    }

    fn set(&mut self, key: &[u8], members: &[Vec<u8>]) {
        for chunk in members.chunks(CHUNK) {
            let mut args: Vec<&[u8]> = vec![b"SADD", key];
            args.extend(chunk.iter().map(|e| e.as_slice()));
            self.c.ok_bin(&args);
        }
        self.put(key, ValueModel::Set(members.iter().cloned().collect()));
    }

    /// `(score text, member)` pairs.
    fn zset(&mut self, key: &[u8], items: &[(String, Vec<u8>)]) {
        for chunk in items.chunks(CHUNK) {
            let mut args: Vec<&[u8]> = vec![b"ZADD", key];
            for (score, member) in chunk {
                args.push(score.as_bytes());
                args.push(member);
            }
            self.c.ok_bin(&args);
        }
        let model = items
            .iter()
            .map(|(score, member)| {
                let s: f64 = score.parse().expect("score text parses");
                (member.clone(), score_bits(s))
            })
            .collect();
        self.put(key, ValueModel::ZSet(model));
    }

    fn hash(&mut self, key: &[u8], fields: &[(Vec<u8>, Vec<u8>)]) {
        let verb: &[u8] = if self.spec.has_variadic_hset() {
            b"HSET"
        } else {
            b"HMSET"
        };
        for chunk in fields.chunks(CHUNK) {
            let mut args: Vec<&[u8]> = vec![verb, key];
            for (f, v) in chunk {
                args.push(f);
                args.push(v);
            }
            self.c.ok_bin(&args);
        }
        let model = fields
            .iter()
            .map(|(f, v)| (f.clone(), (v.clone(), None)))
            .collect();
        self.put(key, ValueModel::Hash(model));
    }

    fn expire_at(&mut self, key: &[u8], at_ms: i64) {
        let reply = self
            .c
            .ok_bin(&[b"PEXPIREAT", key, at_ms.to_string().as_bytes()]);
        assert_eq!(reply, Reply::Int(1), "PEXPIREAT {}", escape(key));
        self.model
            .keys
            .get_mut(&(self.db, key.to_vec()))
            .expect("key written before")
            .expire_ms = Some(at_ms);
    }

    /// `HPEXPIREAT key ms FIELDS n field...` (Redis 7.4+, Valkey 9.0+).
    fn field_expire_at(&mut self, key: &[u8], fields: &[Vec<u8>], at_ms: i64) {
        let at = at_ms.to_string();
        let n = fields.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"HPEXPIREAT", key, at.as_bytes(), b"FIELDS", n.as_bytes()];
        args.extend(fields.iter().map(|f| f.as_slice()));
        let reply = self.c.ok_bin(&args);
        let all_set = reply
            .as_array()
            .is_some_and(|a| a.len() == fields.len() && a.iter().all(|r| *r == Reply::Int(1)));
        assert!(all_set, "HPEXPIREAT {}: {reply:?}", escape(key));
        let ValueModel::Hash(h) = self.value_mut(key) else {
            unreachable!("field_expire_at on a hash")
        };
        for f in fields {
            h.get_mut(f).expect("field written before").1 = Some(at_ms);
        }
    }

    /// Asserts `OBJECT ENCODING key` is `want` and records `type:want` as covered.
    fn expect_encoding(&mut self, key: &[u8], ty: &str, want: &str) {
        let got = self.c.ok_bin(&[b"OBJECT", b"ENCODING", key]);
        let got = got.as_text().unwrap_or_default();
        assert_eq!(
            got,
            want,
            "{}: key `{}` ({ty}) has encoding {got}, but the dataset means it to cover {want}",
            self.spec.name,
            escape(key)
        );
        self.cover(format!("{ty}:{want}"));
    }

    fn cover(&mut self, label: String) {
        if !self.covered.contains(&label) {
            self.covered.push(label);
        }
    }

    /// A field of `DEBUG OBJECT key` (`ql_nodes`), or None where DEBUG is refused.
    fn debug_object_field(&mut self, key: &[u8], field: &str) -> Option<String> {
        let reply = self.c.cmd(&[b"DEBUG", b"OBJECT", key]);
        let text = reply.as_text()?;
        let prefix = format!("{field}:");
        text.split(' ')
            .find_map(|w| w.strip_prefix(&prefix).map(str::to_string))
    }

    fn strings(&mut self) {
        self.string(b"str:short", b"hello ferry");
        self.expect_encoding(b"str:short", "string", "embstr");
        for (key, value) in [
            ("str:int:pos", "12345"),
            ("str:int:neg", "-7"),
            ("str:int:max", "9223372036854775807"),
            ("str:int:min", "-9223372036854775808"),
        ] {
            self.string(key.as_bytes(), value.as_bytes());
            self.expect_encoding(key.as_bytes(), "string", "int");
        }
        // Looks like a number but is not the canonical form of one: must stay text.
        self.string(b"str:leading-zero", b"007");
        self.expect_encoding(b"str:leading-zero", "string", "embstr");
        self.string(b"str:float-text", b"3.14");
        self.string(b"str:empty", b"");
        self.string(b"str:binary", b"a\r\nb\x00c\xff\r\n\x00");
        // Around the embstr / raw boundary (44 bytes; 39 before 3.2; Redis 8 and Valkey 8.1+
        // embed the key too, which moves it, so the encoding is not asserted here).
        self.string(b"str:44", &text_of_len("e", 44));
        self.string(b"str:45", &text_of_len("r", 45));
        self.string(b"str:compressible", &text_of_len("compressible", 10 * 1024));
        self.expect_encoding(b"str:compressible", "string", "raw");
        self.string(b"str:random", &Rng(0x5EED_F00D).bytes(100 * 1024));
        self.string(b"str:big", &text_of_len("big", 3 * 1024 * 1024));
        self.string(BIN_KEY_STRING, b"a key with CR LF, NUL and high bytes");
        self.string(b"str:expire:hour", b"expires in an hour");
        self.expire_at(b"str:expire:hour", self.now + HOUR_MS + 123);
        self.string(b"str:expire:day", b"expires in a day");
        self.expire_at(b"str:expire:day", self.now + DAY_MS + 7);
    }

    /// Elements of at most 64 bytes (the compact-encoding value limit) of every integer width
    /// and string-length class the ziplist / listpack encodings distinguish.
    fn compact_elements() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = [
            "a",
            "",
            "7",
            "12",
            "-100",
            "1000",
            "100000",
            "-10000000",
            "5000000000",
            "-9223372036854775808",
            "9223372036854775807",
            "007",
            "3.14",
            "ünïcödé",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        v.push(b"bin\x00\r\n\xff".to_vec());
        v.push(text_of_len("s", 63));
        v.push(text_of_len("t", 64));
        v
    }

    fn lists(&mut self) {
        let spec = self.spec;
        let small_enc = if !spec.has_quicklist() {
            "ziplist"
        } else if spec.has_listpack_lists_and_sets() {
            "listpack"
        } else {
            "quicklist"
        };
        let big_enc = if spec.has_quicklist() {
            "quicklist"
        } else {
            "linkedlist"
        };

        self.list(b"list:small", &Self::compact_elements());
        self.expect_encoding(b"list:small", "list", small_enc);
        self.expire_at(b"list:small", self.now + 2 * HOUR_MS + 5);
        self.list(
            BIN_KEY_LIST,
            &[b"x".to_vec(), b"\r\n".to_vec(), b"1".to_vec()],
        );

        let large: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| {
                if i == 1234 {
                    text_of_len("long-20k", 20_000)
                } else if i % 100 == 0 {
                    text_of_len(&format!("long-{i}"), 1000)
                } else if i % 7 == 0 {
                    (i64::from(i) * 1_000_003 - 700_000_000)
                        .to_string()
                        .into_bytes()
                } else {
                    format!("item:{i}").into_bytes()
                }
            })
            .collect();
        self.list(b"list:large", &large);
        self.expect_encoding(b"list:large", "list", big_enc);

        if spec.has_quicklist() {
            // Interior quicklist nodes LZF-compressed (list-compress-depth 1).
            self.c.ok(&["CONFIG", "SET", "list-compress-depth", "1"]);
            let elems: Vec<Vec<u8>> = (0..1000u32)
                .map(|i| {
                    format!("compressible element {i:05} of a compressed quicklist").into_bytes()
                })
                .collect();
            self.list(b"list:compressed", &elems);
            self.c.ok(&["CONFIG", "SET", "list-compress-depth", "0"]);
            self.expect_encoding(b"list:compressed", "list", "quicklist");
            if self
                .debug_object_field(b"list:compressed", "ql_compressed")
                .as_deref()
                == Some("1")
            {
                self.cover("list:quicklist+compressed".into());
            }
        }

        if spec.is_7_0_plus() {
            self.plain_node_list();
        }
    }

    /// A quicklist with a PLAIN node (7.0+): an element above the packed threshold, which
    /// `DEBUG QUICKLIST-PACKED-THRESHOLD` lowers for the one push. The list is made a
    /// quicklist first (more than 8 KB), because 7.2+ keeps small lists as one listpack.
    fn plain_node_list(&mut self) {
        let key: &[u8] = b"list:plain";
        let head: Vec<Vec<u8>> = (0..200u32)
            .map(|i| text_of_len(&format!("head-{i:03}"), 50))
            .collect();
        self.list(key, &head);
        let before = self.debug_object_field(key, "ql_nodes");
        let lowered = !self
            .c
            .cmd_str(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000"])
            .is_error();
        self.list(key, &[text_of_len("plain-2k", 2048)]);
        if lowered {
            self.c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "0"]); // 0 = back to the default
        }
        self.list(key, &[b"tail-a".to_vec(), b"tail-b".to_vec()]);
        self.expect_encoding(key, "list", "quicklist");
        // A plain node is a node of its own, and the next push cannot join it: two more nodes.
        let after = self.debug_object_field(key, "ql_nodes");
        let nodes = |s: Option<String>| s.and_then(|s| s.parse::<u64>().ok());
        match (lowered, nodes(before), nodes(after)) {
            (true, Some(b), Some(a)) => {
                assert_eq!(
                    a,
                    b + 2,
                    "{}: list:plain should have gained a PLAIN node",
                    self.spec.name
                );
                self.cover("list:quicklist+plain".into());
            }
            _ => eprintln!(
                "{}: DEBUG refused; list:plain has no proven PLAIN node",
                self.spec.name
            ),
        }
    }

    fn sets(&mut self) {
        let small_strings_enc = if self.spec.has_listpack_lists_and_sets() {
            "listpack"
        } else {
            "hashtable"
        };
        let texts =
            |v: &[&str]| -> Vec<Vec<u8>> { v.iter().map(|s| s.as_bytes().to_vec()).collect() };
        self.set(b"set:intset16", &texts(&["1", "2", "3", "-4"]));
        self.expect_encoding(b"set:intset16", "set", "intset");
        self.set(
            b"set:intset64",
            &texts(&["1", "70000", "-5000000000", "9223372036854775807"]),
        );
        self.expect_encoding(b"set:intset64", "set", "intset");
        let mut small = texts(&["apple", "banana", "", "ünï", "12a"]);
        small.push(b"\x00bin\r\n".to_vec());
        self.set(b"set:small", &small);
        self.expect_encoding(b"set:small", "set", small_strings_enc);
        self.set(BIN_KEY_SET, &texts(&["10", "20"]));
        let large: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| format!("member:{i}").into_bytes())
            .collect();
        self.set(b"set:large", &large);
        self.expect_encoding(b"set:large", "set", "hashtable");
    }

    fn zsets(&mut self) {
        let small_enc = if self.spec.has_listpack() {
            "listpack"
        } else {
            "ziplist"
        };
        let special: Vec<(String, Vec<u8>)> = SPECIAL_SCORES
            .iter()
            .map(|(m, s)| (s.to_string(), m.as_bytes().to_vec()))
            .collect();
        self.zset(b"zset:small", &special);
        self.expect_encoding(b"zset:small", "zset", small_enc);
        self.expire_at(b"zset:small", self.now + DAY_MS + 999);
        self.zset(
            BIN_KEY_ZSET,
            &[
                ("1".into(), b"\x00\r\n".to_vec()),
                ("2".into(), b"\xff".to_vec()),
            ],
        );
        let mut large = special;
        large.extend((0..300i64).map(|i| {
            let score = if i % 3 == 0 {
                (i * 7 - 500).to_string()
            } else {
                format!("{}", i as f64 * 1.1 - 100.0)
            };
            (score, format!("m:{i}").into_bytes())
        }));
        self.zset(b"zset:large", &large);
        self.expect_encoding(b"zset:large", "zset", "skiplist");
    }

    fn hashes(&mut self) {
        let small_enc = if self.spec.has_listpack() {
            "listpack"
        } else {
            "ziplist"
        };
        let pair = |f: &[u8], v: &[u8]| (f.to_vec(), v.to_vec());
        let small = vec![
            pair(b"name", b"ferry"),
            pair(b"count", b"42"),
            pair(b"neg", b"-1"),
            pair(b"max", b"9223372036854775807"),
            pair(b"empty", b""),
            pair(b"", b"empty field name"),
            pair(b"f\x00\r\n", b"v\xff\x00"),
            pair(b"sixty-four", &text_of_len("v", 64)),
        ];
        self.hash(b"hash:small", &small);
        self.expect_encoding(b"hash:small", "hash", small_enc);
        self.expire_at(b"hash:small", self.now + HOUR_MS + 456);
        self.hash(
            BIN_KEY_HASH,
            &[pair("поле".as_bytes(), "значение".as_bytes())],
        );
        // A value over 64 bytes: a full hash table although it has two fields.
        self.hash(
            b"hash:longval",
            &[
                pair(b"short", b"x"),
                pair(b"long", &text_of_len("long", 100)),
            ],
        );
        self.expect_encoding(b"hash:longval", "hash", "hashtable");
        let large: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
            .map(|i| {
                let v = if i % 50 == 0 {
                    text_of_len(&format!("kb-{i}"), 1024)
                } else {
                    format!("v{i}").into_bytes()
                };
                (format!("field:{i}").into_bytes(), v)
            })
            .collect();
        self.hash(b"hash:large", &large);
        self.expect_encoding(b"hash:large", "hash", "hashtable");
    }

    /// Hashes whose fields expire (Redis 7.4+: `listpackex` when small; Valkey 9.0+).
    fn hash_field_ttls(&mut self) {
        let small_enc = match self.spec.flavor {
            Flavor::Redis => "listpackex",
            Flavor::Valkey => "hashtable",
        };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_bytes().to_vec(), format!("{}", i * 10).into_bytes()))
            .collect();
        self.hash(b"hash:ttl:small", &fields);
        self.field_expire_at(b"hash:ttl:small", &[b"a".to_vec()], self.now + HOUR_MS + 1);
        self.field_expire_at(
            b"hash:ttl:small",
            &[b"b".to_vec(), b"c".to_vec()],
            self.now + DAY_MS + 2,
        );
        self.expire_at(b"hash:ttl:small", self.now + 2 * DAY_MS + 3);
        self.expect_encoding(b"hash:ttl:small", "hash", small_enc);

        let large: Vec<(Vec<u8>, Vec<u8>)> = (0..600u32)
            .map(|i| {
                (
                    format!("f{i}").into_bytes(),
                    format!("value {i}").into_bytes(),
                )
            })
            .collect();
        self.hash(b"hash:ttl:large", &large);
        for i in (0..600u32).step_by(7) {
            let f = format!("f{i}").into_bytes();
            self.field_expire_at(b"hash:ttl:large", &[f], self.now + HOUR_MS + i64::from(i));
        }
        self.expect_encoding(b"hash:ttl:large", "hash", "hashtable");
        self.cover("hash:field-ttl".into());
    }

    /// Streams (5.0+): a big one with deletions, two groups, pending entries of two consumers
    /// and a consumer with nothing pending; an empty one with a group; one emptied by XDEL.
    fn streams(&mut self) {
        let spec = self.spec;
        let key: &[u8] = b"stream:big";
        let id = |i: u64| (1_700_000_000_000 + i / 4, i % 4);
        let fields_of = |i: u64| -> Fields {
            let p = |f: &str, v: String| (f.as_bytes().to_vec(), v.into_bytes());
            match i {
                333 => vec![p(
                    "blob",
                    String::from_utf8(text_of_len("blob", 2048)).unwrap(),
                )],
                777 => vec![p("dup", "1".into()), p("dup", "2".into())],
                _ => match i % 5 {
                    0 => vec![p("sensor", "temp".into()), p("value", i.to_string())],
                    1 => vec![p("sensor", "temp".into()), p("value", (i * 3).to_string())],
                    2 => vec![
                        p("msg", format!("hello {i}")),
                        (b"bin".to_vec(), b"\x00\r\n\xff".to_vec()),
                    ],
                    3 => vec![p("k", "v".into())],
                    _ => (0..8)
                        .map(|j| p(&format!("f{j}"), (i as i64 * j - 4000).to_string()))
                        .collect(),
                },
            }
        };
        let mut entries = Vec::new();
        let mut xadds = Vec::new();
        for i in 0..1000u64 {
            let fields = fields_of(i);
            let mut c = cmd([b"XADD", key, id_text(id(i)).as_bytes()]);
            for (f, v) in &fields {
                c.push(f.clone());
                c.push(v.clone());
            }
            xadds.push(c);
            entries.push((id(i), fields));
        }
        self.c.pipeline_ok(&xadds);
        // Deleted: a few early, a run in the middle, and the last one (so the last id is no
        // longer an entry's id).
        let deleted: Vec<u64> = [17, 18, 19]
            .into_iter()
            .chain(500..510)
            .chain([999])
            .collect();
        let mut xdel = cmd([b"XDEL", key]);
        xdel.extend(deleted.iter().map(|&i| id_text(id(i)).into_bytes()));
        self.c.pipeline_ok(&[xdel]);
        entries.retain(|(eid, _)| !deleted.iter().any(|&d| id(d) == *eid));
        // Redis 5.0 answers OBJECT ENCODING for a stream with "unknown".
        let stream_enc = if spec.redis_at_least(6, 0) {
            "stream"
        } else {
            "unknown"
        };
        self.expect_encoding(key, "stream", stream_enc);

        let counters = spec.has_stream_counters();
        let mut stream = StreamModel {
            entries,
            last_id: id(999),
            entries_added: counters.then_some(1000),
            max_deleted_id: counters.then_some(id(999)),
            groups: BTreeMap::new(),
        };

        // g1: alice gets 0..9, bob 10..14; 0..2 acked; 5 moved to bob with a delivery count of
        // 3; carol has nothing pending.
        let read = |group: &str, consumer: &str, count: u32| {
            let count = count.to_string();
            cmd([
                b"XREADGROUP",
                b"GROUP",
                group.as_bytes(),
                consumer.as_bytes(),
                b"COUNT",
                count.as_bytes(),
                b"STREAMS",
                key,
                b">",
            ])
        };
        let id_arg = |i: u64| id_text(id(i)).into_bytes();
        let mut cmds = vec![
            cmd([b"XGROUP", b"CREATE", key, b"g1", b"0"]),
            read("g1", "alice", 10),
            read("g1", "bob", 5),
            cmd([b"XACK", key, b"g1", &id_arg(0), &id_arg(1), &id_arg(2)]),
            cmd([
                b"XCLAIM",
                key,
                b"g1",
                b"bob",
                b"0",
                &id_arg(5),
                b"RETRYCOUNT",
                b"3",
                b"JUSTID",
            ]),
        ];
        let mut g1 = GroupModel {
            last_id: id(14),
            consumers: [b"alice".to_vec(), b"bob".to_vec(), b"carol".to_vec()].into(),
            ..GroupModel::default()
        };
        for i in 3..10 {
            g1.pending.insert(id(i), (b"alice".to_vec(), 1));
        }
        g1.pending.insert(id(5), (b"bob".to_vec(), 3));
        for i in 10..15 {
            g1.pending.insert(id(i), (b"bob".to_vec(), 1));
        }
        let mut g1_read = 15;
        if spec.has_create_consumer() {
            cmds.push(cmd([b"XGROUP", b"CREATECONSUMER", key, b"g1", b"carol"]));
        } else {
            cmds.push(read("g1", "carol", 1));
            cmds.push(cmd([b"XACK", key, b"g1", &id_arg(15)]));
            g1.last_id = id(15);
            g1_read = 16;
        }
        // g2 starts in the middle; dave gets two entries.
        cmds.push(cmd([b"XGROUP", b"CREATE", key, b"g2", &id_arg(600)]));
        cmds.push(read("g2", "dave", 2));
        let mut g2 = GroupModel {
            last_id: id(602),
            consumers: [b"dave".to_vec()].into(),
            ..GroupModel::default()
        };
        g2.pending.insert(id(601), (b"dave".to_vec(), 1));
        g2.pending.insert(id(602), (b"dave".to_vec(), 1));
        // entries-read is a heuristic counter on 7.0+; set it so the model knows it exactly.
        if counters {
            let g1_last = id_text(g1.last_id).into_bytes();
            let g1_read_text = g1_read.to_string().into_bytes();
            cmds.push(cmd([
                b"XGROUP",
                b"SETID",
                key,
                b"g1",
                &g1_last,
                b"ENTRIESREAD",
                &g1_read_text,
            ]));
            cmds.push(cmd([
                b"XGROUP",
                b"SETID",
                key,
                b"g2",
                &id_arg(602),
                b"ENTRIESREAD",
                b"603",
            ]));
            g1.entries_read = Some(g1_read);
            g2.entries_read = Some(603);
        }
        let replies = self.c.pipeline_ok(&cmds);
        // The reads must have delivered what the model says (XREADGROUP replies
        // [[key, [entry, ...]]]).
        let delivered = |r: &Reply| {
            r.as_array()
                .and_then(|streams| streams.first())
                .and_then(|s| s.as_array())
                .and_then(|s| s.get(1))
                .and_then(|e| e.as_array())
                .map_or(0, |e| e.len())
        };
        assert_eq!(
            (delivered(&replies[1]), delivered(&replies[2])),
            (10, 5),
            "{}: XREADGROUP deliveries: {:?} / {:?}",
            spec.name,
            replies[1],
            replies[2]
        );
        stream.groups.insert(b"g1".to_vec(), g1);
        stream.groups.insert(b"g2".to_vec(), g2);
        self.put(key, ValueModel::Stream(stream));
        self.expire_at(key, self.now + DAY_MS + 55);
        self.cover("stream:groups+pel".into());

        // An empty stream that has a group (never had an entry).
        let entries_read_zero: &[&[u8]] = if counters {
            &[b"ENTRIESREAD", b"0"]
        } else {
            &[]
        };
        let mut c = cmd([
            b"XGROUP",
            b"CREATE",
            b"stream:empty",
            b"g0",
            b"$",
            b"MKSTREAM",
        ]);
        c.extend(entries_read_zero.iter().map(|a| a.to_vec()));
        self.c.pipeline_ok(&[c]);
        let empty_group = GroupModel {
            entries_read: counters.then_some(0),
            ..GroupModel::default()
        };
        self.put(
            b"stream:empty",
            ValueModel::Stream(StreamModel {
                entries_added: counters.then_some(0),
                max_deleted_id: counters.then_some((0, 0)),
                groups: [(b"g0".to_vec(), empty_group.clone())].into(),
                ..StreamModel::default()
            }),
        );

        // A stream emptied by XDEL: no entries, but a last id and counters.
        let mut c = cmd([b"XGROUP", b"CREATE", b"stream:emptied", b"g", b"0"]);
        c.extend(entries_read_zero.iter().map(|a| a.to_vec()));
        self.c.pipeline_ok(&[
            cmd([b"XADD", b"stream:emptied", b"5-1", b"a", b"1"]),
            cmd([b"XADD", b"stream:emptied", b"5-2", b"b", b"2"]),
            cmd([b"XDEL", b"stream:emptied", b"5-1", b"5-2"]),
            c,
        ]);
        self.put(
            b"stream:emptied",
            ValueModel::Stream(StreamModel {
                entries: Vec::new(),
                last_id: (5, 2),
                entries_added: counters.then_some(2),
                max_deleted_id: counters.then_some((5, 2)),
                groups: [(b"g".to_vec(), empty_group)].into(),
            }),
        );
    }

    /// A Lua function library (7.0+). `redis.register_function` is what both flavors accept:
    /// Valkey also knows `server.register_function`, Redis does not.
    fn functions(&mut self) {
        let code = b"#!lua name=ferrylib\n\
            redis.register_function('ferry_echo', function(keys, args) return args[1] end)\n";
        self.c.ok_bin(&[b"FUNCTION", b"LOAD", code]);
        self.model.functions.insert(code.to_vec());
        self.cover("function:lua".into());
    }

    /// dbs 1 and 5: a few keys, `str:short` in each with its own value.
    fn other_dbs(&mut self) {
        self.select(1);
        self.string(b"str:short", b"db1 value");
        self.list(b"db1:list", &[b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
        self.hash(b"db1:hash", &[(b"a".to_vec(), b"1".to_vec())]);
        self.expire_at(b"db1:hash", self.now + HOUR_MS + 11);
        self.set(b"db1:set", &[b"1".to_vec(), b"2".to_vec()]);

        self.select(5);
        self.string(b"str:short", b"db5 value");
        self.expire_at(b"str:short", self.now + DAY_MS + 5);
        self.zset(
            b"db5:zset",
            &[
                ("1.5".into(), b"a".to_vec()),
                ("-inf".into(), b"b".to_vec()),
            ],
        );
        if self.spec.has_streams() {
            let mut entries = Vec::new();
            let mut xadds = Vec::new();
            for (i, eid) in [(1u64, 1u64), (1, 2), (2, 0)].into_iter().enumerate() {
                let v = format!("{i}").into_bytes();
                xadds.push(cmd([
                    b"XADD",
                    b"db5:stream",
                    id_text(eid).as_bytes(),
                    b"n",
                    &v,
                ]));
                entries.push((eid, vec![(b"n".to_vec(), v)]));
            }
            self.c.pipeline_ok(&xadds);
            let counters = self.spec.has_stream_counters();
            self.put(
                b"db5:stream",
                ValueModel::Stream(StreamModel {
                    entries,
                    last_id: (2, 0),
                    entries_added: counters.then_some(3),
                    max_deleted_id: counters.then_some((0, 0)),
                    groups: BTreeMap::new(),
                }),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// read_back
// ---------------------------------------------------------------------------------------------

/// Reads every key of `dbs` (and the function libraries, 7.0+) through ordinary commands.
/// Leaves the client in db 0.
pub fn read_back(client: &mut Client, spec: &ServerSpec, dbs: &[u32]) -> Model {
    let mut model = Model::default();
    for &db in dbs {
        client.select(db);
        for key in scan_keys(client) {
            if let Some(k) = read_key(client, spec, &key) {
                model.keys.insert((db, key), k);
            }
        }
    }
    client.select(0);
    if spec.has_functions() {
        model.functions = read_functions(client);
    }
    model
}

/// All keys of the selected db (SCAN; duplicates removed).
pub fn scan_keys(c: &mut Client) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let reply = c.ok_bin(&[b"SCAN", &cursor, b"COUNT", b"1000"]);
        let parts = reply.into_array().expect("SCAN replies [cursor, keys]");
        let [next, batch]: [Reply; 2] = parts.try_into().expect("SCAN replies two items");
        cursor = next.into_bytes().expect("SCAN cursor");
        keys.extend(
            batch
                .into_array()
                .expect("SCAN keys")
                .into_iter()
                .filter_map(Reply::into_bytes),
        );
        if cursor == b"0" {
            return keys;
        }
    }
}

fn bytes_list(reply: Reply, what: &str) -> Vec<Vec<u8>> {
    reply
        .into_array()
        .unwrap_or_else(|| panic!("{what}: expected an array"))
        .into_iter()
        .map(|r| {
            r.into_bytes()
                .unwrap_or_else(|| panic!("{what}: expected strings"))
        })
        .collect()
}

/// One key, or None when it vanished (expired) while being read.
fn read_key(c: &mut Client, spec: &ServerSpec, key: &[u8]) -> Option<KeyModel> {
    let ty = c.ok_bin(&[b"TYPE", key]).as_text().unwrap_or_default();
    let value = match ty.as_str() {
        "none" => return None,
        "string" => ValueModel::String(c.ok_bin(&[b"GET", key]).into_bytes()?),
        "list" => ValueModel::List(bytes_list(
            c.ok_bin(&[b"LRANGE", key, b"0", b"-1"]),
            "LRANGE",
        )),
        "set" => ValueModel::Set(
            bytes_list(c.ok_bin(&[b"SMEMBERS", key]), "SMEMBERS")
                .into_iter()
                .collect(),
        ),
        "zset" => {
            let flat = bytes_list(
                c.ok_bin(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]),
                "ZRANGE",
            );
            ValueModel::ZSet(
                flat.chunks(2)
                    .map(|p| (p[0].clone(), score_bits(parse_score(&p[1]))))
                    .collect(),
            )
        }
        "hash" => ValueModel::Hash(read_hash(c, spec, key)),
        "stream" => ValueModel::Stream(read_stream(c, key)),
        other => panic!(
            "key `{}` has type {other}, which the harness does not read",
            escape(key)
        ),
    };
    let expire_ms = if spec.has_pexpiretime() {
        match c.ok_bin(&[b"PEXPIRETIME", key]).as_int() {
            Some(-2) => return None,
            Some(-1) => None,
            Some(t) => Some(t),
            None => panic!("PEXPIRETIME {}: not an integer", escape(key)),
        }
    } else {
        let now = now_ms();
        match c.ok_bin(&[b"PTTL", key]).as_int() {
            Some(-2) => return None,
            Some(-1) => None,
            Some(ttl) => Some(now + ttl),
            None => panic!("PTTL {}: not an integer", escape(key)),
        }
    };
    Some(KeyModel { value, expire_ms })
}

/// A score as the server prints it (`inf`, `-inf`, `1e+300`, 17 significant digits).
fn parse_score(text: &[u8]) -> f64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad score {}", escape(text)))
}

fn read_hash(c: &mut Client, spec: &ServerSpec, key: &[u8]) -> HashFields {
    let flat = bytes_list(c.ok_bin(&[b"HGETALL", key]), "HGETALL");
    let mut hash: HashFields = flat
        .chunks(2)
        .map(|p| (p[0].clone(), (p[1].clone(), None)))
        .collect();
    if spec.has_hash_field_ttl() {
        let fields: Vec<Vec<u8>> = hash.keys().cloned().collect();
        for chunk in fields.chunks(CHUNK) {
            let n = chunk.len().to_string();
            let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
            args.extend(chunk.iter().map(|f| f.as_slice()));
            let times = c
                .ok_bin(&args)
                .into_array()
                .expect("HPEXPIRETIME replies an array");
            for (f, t) in chunk.iter().zip(times) {
                if let Some(t @ 0..) = t.as_int() {
                    hash.get_mut(f).expect("field").1 = Some(t);
                }
            }
        }
    }
    hash
}

pub fn parse_id(text: &[u8]) -> StreamId {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.split_once('-'))
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)))
        .unwrap_or_else(|| panic!("bad stream id {}", escape(text)))
}

fn field<'a>(map: &'a BTreeMap<String, Reply>, name: &str, what: &str) -> &'a Reply {
    map.get(name)
        .unwrap_or_else(|| panic!("{what} has no `{name}`: {map:?}"))
}

fn id_field(map: &BTreeMap<String, Reply>, name: &str, what: &str) -> StreamId {
    parse_id(field(map, name, what).as_bytes().expect("stream id"))
}

fn read_stream(c: &mut Client, key: &[u8]) -> StreamModel {
    let what = format!("XINFO STREAM {}", escape(key));
    let info = c
        .ok_bin(&[b"XINFO", b"STREAM", key])
        .as_field_map()
        .expect("XINFO STREAM map");
    let mut stream = StreamModel {
        last_id: id_field(&info, "last-generated-id", &what),
        entries_added: info
            .get("entries-added")
            .and_then(Reply::as_int)
            .map(|n| n as u64),
        max_deleted_id: info
            .get("max-deleted-entry-id")
            .and_then(Reply::as_bytes)
            .map(parse_id),
        ..StreamModel::default()
    };

    // XRANGE in pages; the next page starts just after the last id read (works on 5.0, which
    // has no exclusive ranges).
    let mut start = b"-".to_vec();
    loop {
        let page = c
            .ok_bin(&[b"XRANGE", key, &start, b"+", b"COUNT", b"1000"])
            .into_array()
            .expect("XRANGE array");
        let n = page.len();
        for entry in page {
            let [eid, fields]: [Reply; 2] = entry
                .into_array()
                .and_then(|e| e.try_into().ok())
                .expect("XRANGE entry [id, fields]");
            let eid = parse_id(eid.as_bytes().expect("entry id"));
            let flat = bytes_list(fields, "XRANGE fields");
            let fields = flat
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            stream.entries.push((eid, fields));
        }
        match stream.entries.last() {
            Some(&((ms, seq), _)) if n == 1000 => {
                let next = if seq == u64::MAX {
                    (ms + 1, 0)
                } else {
                    (ms, seq + 1)
                };
                start = id_text(next).into_bytes();
            }
            _ => break,
        }
    }

    let groups = c
        .ok_bin(&[b"XINFO", b"GROUPS", key])
        .into_array()
        .expect("XINFO GROUPS");
    for g in groups {
        let g = g.as_field_map().expect("XINFO GROUPS entry");
        let gwhat = format!("XINFO GROUPS {}", escape(key));
        let name = field(&g, "name", &gwhat)
            .as_bytes()
            .expect("group name")
            .to_vec();
        let mut group = GroupModel {
            last_id: id_field(&g, "last-delivered-id", &gwhat),
            entries_read: g
                .get("entries-read")
                .and_then(Reply::as_int)
                .map(|n| n as u64),
            ..GroupModel::default()
        };
        let consumers = c
            .ok_bin(&[b"XINFO", b"CONSUMERS", key, &name])
            .into_array()
            .expect("XINFO CONSUMERS");
        for consumer in consumers {
            let consumer = consumer.as_field_map().expect("XINFO CONSUMERS entry");
            let cname = field(&consumer, "name", "XINFO CONSUMERS")
                .as_bytes()
                .expect("name");
            group.consumers.insert(cname.to_vec());
        }
        let pending = field(&g, "pending", &gwhat)
            .as_int()
            .expect("pending count");
        if pending > 0 {
            let count = pending.to_string();
            let rows = c
                .ok_bin(&[b"XPENDING", key, &name, b"-", b"+", count.as_bytes()])
                .into_array()
                .expect("XPENDING array");
            for row in rows {
                let row = row.into_array().expect("XPENDING row");
                let eid = parse_id(row[0].as_bytes().expect("pending id"));
                let consumer = row[1].as_bytes().expect("pending consumer").to_vec();
                let count = row[3].as_int().expect("delivery count") as u64;
                group.pending.insert(eid, (consumer, count));
            }
        }
        stream.groups.insert(name, group);
    }
    stream
}

fn read_functions(c: &mut Client) -> BTreeSet<Vec<u8>> {
    let libs = c
        .ok(&["FUNCTION", "LIST", "WITHCODE"])
        .into_array()
        .expect("FUNCTION LIST array");
    libs.iter()
        .map(|lib| {
            let lib = lib.as_field_map().expect("FUNCTION LIST entry");
            field(&lib, "library_code", "FUNCTION LIST")
                .as_bytes()
                .expect("code")
                .to_vec()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// comparison
// ---------------------------------------------------------------------------------------------

/// How many differences a failure message shows.
const SHOWN_DIFFS: usize = 12;

/// Panics when the models differ, showing the first differences (key, what differs) and how
/// many there are. Expiry times (key and hash field) may differ by `expire_tolerance_ms`.
pub fn assert_models_equal(expected: &Model, actual: &Model, expire_tolerance_ms: i64) {
    let diffs = model_diffs(expected, actual, expire_tolerance_ms);
    if diffs.is_empty() {
        return;
    }
    let mut msg = format!(
        "models differ in {} place(s); expected {}; actual {}\n",
        diffs.len(),
        expected.summary(),
        actual.summary()
    );
    for d in diffs.iter().take(SHOWN_DIFFS) {
        let _ = writeln!(msg, "  - {d}");
    }
    if diffs.len() > SHOWN_DIFFS {
        let _ = writeln!(msg, "  ... and {} more", diffs.len() - SHOWN_DIFFS);
    }
    panic!("{msg}");
}

/// Every difference, one readable line each.
pub fn model_diffs(expected: &Model, actual: &Model, tolerance: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (k, e) in &expected.keys {
        let name = key_name(k);
        match actual.keys.get(k) {
            None => out.push(format!(
                "{name}: missing (expected {})",
                e.value.type_name()
            )),
            Some(a) => {
                if !expire_close(e.expire_ms, a.expire_ms, tolerance) {
                    out.push(format!(
                        "{name}: expire {}, expected {}",
                        show_expire(a.expire_ms),
                        show_expire(e.expire_ms)
                    ));
                }
                value_diffs(&name, &e.value, &a.value, tolerance, &mut out);
            }
        }
    }
    for (k, a) in &actual.keys {
        if !expected.keys.contains_key(k) {
            out.push(format!(
                "{}: unexpected {} key",
                key_name(k),
                a.value.type_name()
            ));
        }
    }
    for code in expected.functions.difference(&actual.functions) {
        out.push(format!("function library missing: {}", preview(code, 60)));
    }
    for code in actual.functions.difference(&expected.functions) {
        out.push(format!(
            "unexpected function library: {}",
            preview(code, 60)
        ));
    }
    out
}

fn key_name((db, key): &(u32, Vec<u8>)) -> String {
    format!("db{db} `{}`", preview(key, 60))
}

fn show_expire(t: Option<i64>) -> String {
    t.map_or("none".into(), |t| format!("{t} ms"))
}

fn expire_close(e: Option<i64>, a: Option<i64>, tolerance: i64) -> bool {
    match (e, a) {
        (None, None) => true,
        (Some(e), Some(a)) => (e - a).abs() <= tolerance,
        _ => false,
    }
}

fn show(b: &[u8]) -> String {
    format!("\"{}\"", preview(b, 40))
}

/// Members of `e` missing from `a` and the other way round, a few of each.
fn set_diff<'a, T: Ord + 'a>(
    name: &str,
    what: &str,
    e: impl Iterator<Item = &'a T> + Clone,
    a: impl Iterator<Item = &'a T> + Clone,
    fmt: impl Fn(&T) -> String,
    out: &mut Vec<String>,
) {
    let es: BTreeSet<&T> = e.collect();
    let as_: BTreeSet<&T> = a.collect();
    let missing: Vec<String> = es.difference(&as_).take(3).map(|m| fmt(m)).collect();
    let extra: Vec<String> = as_.difference(&es).take(3).map(|m| fmt(m)).collect();
    let n_missing = es.difference(&as_).count();
    let n_extra = as_.difference(&es).count();
    if n_missing > 0 {
        out.push(format!(
            "{name}: {n_missing} {what} missing, e.g. {}",
            missing.join(", ")
        ));
    }
    if n_extra > 0 {
        out.push(format!(
            "{name}: {n_extra} unexpected {what}, e.g. {}",
            extra.join(", ")
        ));
    }
}

fn value_diffs(name: &str, e: &ValueModel, a: &ValueModel, tol: i64, out: &mut Vec<String>) {
    match (e, a) {
        (ValueModel::String(e), ValueModel::String(a)) => {
            if e != a {
                let at = e
                    .iter()
                    .zip(a)
                    .position(|(x, y)| x != y)
                    .unwrap_or(e.len().min(a.len()));
                out.push(format!(
                    "{name}: string of {} bytes differs from the expected {} bytes at offset {at}: \
                     {} vs expected {}",
                    a.len(),
                    e.len(),
                    show(&a[at.min(a.len())..]),
                    show(&e[at.min(e.len())..])
                ));
            }
        }
        (ValueModel::List(e), ValueModel::List(a)) => {
            if e.len() != a.len() {
                out.push(format!(
                    "{name}: list has {} elements, expected {}",
                    a.len(),
                    e.len()
                ));
            }
            if let Some(i) = e.iter().zip(a).position(|(x, y)| x != y) {
                out.push(format!(
                    "{name}: list element {i} is {}, expected {}",
                    show(&a[i]),
                    show(&e[i])
                ));
            }
        }
        (ValueModel::Set(e), ValueModel::Set(a)) => {
            set_diff(name, "member(s)", e.iter(), a.iter(), |m| show(m), out);
        }
        (ValueModel::ZSet(e), ValueModel::ZSet(a)) => {
            set_diff(name, "member(s)", e.keys(), a.keys(), |m| show(m), out);
            for (m, es) in e {
                if let Some(as_) = a.get(m).filter(|s| *s != es) {
                    out.push(format!(
                        "{name}: score of {} is {:e} (bits {as_:#x}), expected {:e} (bits {es:#x})",
                        show(m),
                        f64::from_bits(*as_),
                        f64::from_bits(*es)
                    ));
                }
            }
        }
        (ValueModel::Hash(e), ValueModel::Hash(a)) => {
            set_diff(name, "field(s)", e.keys(), a.keys(), |f| show(f), out);
            for (f, (ev, et)) in e {
                let Some((av, at)) = a.get(f) else { continue };
                if av != ev {
                    out.push(format!(
                        "{name}: field {} is {}, expected {}",
                        show(f),
                        show(av),
                        show(ev)
                    ));
                }
                if !expire_close(*et, *at, tol) {
                    out.push(format!(
                        "{name}: field {} expire {}, expected {}",
                        show(f),
                        show_expire(*at),
                        show_expire(*et)
                    ));
                }
            }
        }
        (ValueModel::Stream(e), ValueModel::Stream(a)) => stream_diffs(name, e, a, out),
        _ => out.push(format!(
            "{name}: type {}, expected {}",
            a.type_name(),
            e.type_name()
        )),
    }
}

fn show_id(id: &StreamId) -> String {
    id_text(*id)
}

fn some_differ<T: PartialEq>(e: &Option<T>, a: &Option<T>) -> bool {
    matches!((e, a), (Some(e), Some(a)) if e != a)
}

fn stream_diffs(name: &str, e: &StreamModel, a: &StreamModel, out: &mut Vec<String>) {
    if e.entries.len() != a.entries.len() {
        out.push(format!(
            "{name}: stream has {} entries, expected {}",
            a.entries.len(),
            e.entries.len()
        ));
    }
    if let Some(i) = e.entries.iter().zip(&a.entries).position(|(x, y)| x != y) {
        let fmt = |(id, fields): &(StreamId, Fields)| {
            let f: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}={}", show(k), show(v)))
                .collect();
            format!("{} {{{}}}", show_id(id), f.join(", "))
        };
        out.push(format!(
            "{name}: stream entry {i} is {}, expected {}",
            fmt(&a.entries[i]),
            fmt(&e.entries[i])
        ));
    }
    if e.last_id != a.last_id {
        out.push(format!(
            "{name}: last id {}, expected {}",
            show_id(&a.last_id),
            show_id(&e.last_id)
        ));
    }
    if some_differ(&e.entries_added, &a.entries_added) {
        out.push(format!(
            "{name}: entries-added {:?}, expected {:?}",
            a.entries_added, e.entries_added
        ));
    }
    if some_differ(&e.max_deleted_id, &a.max_deleted_id) {
        out.push(format!(
            "{name}: max-deleted-entry-id {:?}, expected {:?}",
            a.max_deleted_id.as_ref().map(show_id),
            e.max_deleted_id.as_ref().map(show_id)
        ));
    }
    set_diff(
        name,
        "consumer group(s)",
        e.groups.keys(),
        a.groups.keys(),
        |g| show(g),
        out,
    );
    for (g, eg) in &e.groups {
        let Some(ag) = a.groups.get(g) else { continue };
        let gname = format!("{name} group {}", show(g));
        if eg.last_id != ag.last_id {
            out.push(format!(
                "{gname}: last-delivered-id {}, expected {}",
                show_id(&ag.last_id),
                show_id(&eg.last_id)
            ));
        }
        if some_differ(&eg.entries_read, &ag.entries_read) {
            out.push(format!(
                "{gname}: entries-read {:?}, expected {:?}",
                ag.entries_read, eg.entries_read
            ));
        }
        set_diff(
            &gname,
            "consumer(s)",
            eg.consumers.iter(),
            ag.consumers.iter(),
            |c| show(c),
            out,
        );
        set_diff(
            &gname,
            "pending entr(ies)",
            eg.pending.keys(),
            ag.pending.keys(),
            show_id,
            out,
        );
        for (id, ep) in &eg.pending {
            if let Some(ap) = ag.pending.get(id).filter(|ap| *ap != ep) {
                out.push(format!(
                    "{gname}: pending {} is ({}, delivered {}), expected ({}, delivered {})",
                    show_id(id),
                    show(&ap.0),
                    ap.1,
                    show(&ep.0),
                    ep.1
                ));
            }
        }
    }
}
