//! The RDB decoder against the shared corpus of real files (`../shared/corpus`, or
//! `$FERRY_CORPUS`; see its PROVENANCE.md for what every file and golden is).
//!
//! * every indexed file meets its expectation (`ok`, `corrupt`, `unsupported-…`);
//! * decoded values equal the expected outputs other parsers ship (librdb, HDT3213/rdb,
//!   redis-rdb-cli), value for value;
//! * any split of the input (one byte at a time, random sizes) decodes the same;
//! * the `ferry rdb inspect` binary prints what the library decodes and reports errors.
//!
//! Each test checks every file, catching panics per file, and fails once at the end with
//! the list of everything that went wrong.

mod corpus;

use std::collections::HashSet;
use std::process::{Command, Output};

use corpus::json::{self, Dialect};
use corpus::model::{describe_diff, Text};
use corpus::{
    decode, decode_extras, golden_use, inspect, no_panic, Corpus, Decoded, Failures, GoldenUse, Row,
};
use ferry::rdb::collect::{self, Key, Rdb, Value};
use ferry::rdb::{Checksum, ErrorKind, Flavor, RdbError};

/// Files whose checksum field is zero, "checksum disabled" (PROVENANCE.md); every other
/// file of version 5 or later has a valid CRC-64.
const CHECKSUM_DISABLED: &[&str] = &[
    "rdb/librdb/script.rdb",
    "rdb/redis-rdb-tools/redis_40_with_module.rdb",
];

#[test]
fn every_file_meets_its_expectation() {
    let Some(corpus) = Corpus::locate() else {
        return;
    };
    let mut failures = Failures::default();
    let mut resp_aofs = Vec::new();
    for row in &corpus.rows {
        let data = match corpus.read(&row.path) {
            Ok(d) => d,
            Err(e) => {
                failures.add(&row.path, e);
                continue;
            }
        };
        if data.len() as u64 != row.size {
            failures.add(
                &row.path,
                format!("{} bytes, index says {}", data.len(), row.size),
            );
        }
        if !row.is_rdb() {
            resp_aofs.push(row.path.as_str());
            continue;
        }
        let outcome = match decode(&data) {
            Err(panic) => {
                failures.add(&row.path, panic);
                continue;
            }
            Ok(o) => o,
        };
        failures.extend(&row.path, check_expectation(row, &data, outcome));
    }
    eprintln!(
        "not decoded (pure RESP AOFs, no RDB preamble; an AOF reader is not part of the RDB \
         decoder): {}",
        resp_aofs.join(", ")
    );
    failures.report("corpus expectations");
}

/// What a decode of `data` should have given, by the row's `expect` column.
fn check_expectation(row: &Row, data: &[u8], outcome: Result<Rdb, RdbError>) -> Vec<String> {
    match (row.expect.as_str(), outcome) {
        ("ok", Ok(rdb)) => check_ok(row, data, &rdb),
        ("ok", Err(e)) => vec![format!("expected to decode, failed: {e}")],
        ("corrupt" | "corrupt-or-skip", Err(e)) => check_names_offset(&e, data),
        // Empty collections: servers load the file and skip the keys, so decoding is
        // fine as long as every key is flagged empty.
        ("corrupt-or-skip", Ok(rdb)) => rdb
            .keys
            .iter()
            .filter(|k| !k.empty)
            .map(|k| format!("key {:?} not flagged empty", Text::Latin1.render(&k.key)))
            .collect(),
        ("unsupported-future", Err(e)) => check_future_version(row, data, &e),
        ("unsupported-module-v1", Err(e)) => check_module_type_6(data, &e),
        (expect @ ("corrupt" | "unsupported-future" | "unsupported-module-v1"), Ok(_)) => {
            vec![format!("decoded without error, expected {expect}")]
        }
        (other, _) => vec![format!("unknown expectation {other:?} in index.tsv")],
    }
}

/// A version newer than any real one is refused as unsupported, naming the version. The
/// file's CRC is wrong too (its header was edited): the version must be checked first.
fn check_future_version(row: &Row, data: &[u8], e: &RdbError) -> Vec<String> {
    let version = row
        .version_number()
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut p = check_names_offset(e, data);
    if e.kind != ErrorKind::Unsupported || !e.message.contains(&version) {
        p.push(format!(
            "expected an Unsupported error naming version {version}, got {:?}: {e}",
            e.kind
        ));
    }
    if e.message.to_lowercase().contains("checksum") {
        p.push(format!(
            "the version must be checked before the checksum: {e}"
        ));
    }
    p
}

/// An old type-6 module value cannot be skipped without its module. The right answer
/// (PROVENANCE.md) is a clear error naming the type and the module: its id follows the
/// key as in MODULE_2, and decodes to "hellotype".
fn check_module_type_6(data: &[u8], e: &RdbError) -> Vec<String> {
    let mut p = check_names_offset(e, data);
    if e.kind != ErrorKind::Unsupported || !e.message.contains("type 6") {
        p.push(format!(
            "expected an Unsupported error naming module type 6, got {:?}: {e}",
            e.kind
        ));
    }
    if !e.message.contains("hellotype") {
        p.push(format!(
            "the error does not name the module (hellotype): {e}"
        ));
    }
    p
}

/// A decoded `ok` file: header as indexed, checksum as the file has it, and the special
/// content of the AOF with an RDB preamble.
fn check_ok(row: &Row, data: &[u8], rdb: &Rdb) -> Vec<String> {
    let mut p = Vec::new();
    if Some(rdb.version) != row.version_number() {
        p.push(format!(
            "version {} decoded, header says {}",
            rdb.version, row.version
        ));
    }
    let flavor = if row.magic == "VALKEY" {
        Flavor::Valkey
    } else {
        Flavor::Redis
    };
    if rdb.flavor != Some(flavor) {
        p.push(format!(
            "flavor {:?} decoded, magic is {}",
            rdb.flavor, row.magic
        ));
    }
    let checksum_ok = match rdb.checksum {
        Some(Checksum::Absent) => rdb.version < 5,
        Some(Checksum::Disabled) => CHECKSUM_DISABLED.contains(&row.path.as_str()),
        Some(Checksum::Verified(_)) => {
            rdb.version >= 5 && !CHECKSUM_DISABLED.contains(&row.path.as_str())
        }
        _ => false,
    };
    if !checksum_ok {
        p.push(format!(
            "checksum {:?} for RDB version {}",
            rdb.checksum, rdb.version
        ));
    }
    if row.path == "aof/valkey/rdb-preamble.aof" {
        p.extend(check_rdb_preamble(data, rdb));
    }
    p
}

/// The RDB part holds k1=v1, k2=v2 and `aof-preamble=1`, ends at byte 117, and the RESP
/// tail (SELECT, SET k3 v3) starts right there (PROVENANCE.md).
fn check_rdb_preamble(data: &[u8], rdb: &Rdb) -> Vec<String> {
    let mut p = Vec::new();
    let mut got: Vec<(&[u8], &Value)> = rdb
        .keys
        .iter()
        .map(|k| (k.key.as_slice(), &k.value))
        .collect();
    got.sort_by_key(|(k, _)| *k);
    let (v1, v2) = (Value::String(b"v1".to_vec()), Value::String(b"v2".to_vec()));
    let want: Vec<(&[u8], &Value)> = vec![(b"k1", &v1), (b"k2", &v2)];
    if got != want {
        p.push(format!("keys: {}", describe_diff(&want, &got)));
    }
    if !rdb
        .aux
        .iter()
        .any(|(k, v)| k == b"aof-preamble" && v == b"1")
    {
        p.push("no aux field aof-preamble=1".into());
    }
    let tail = data.get(117..).unwrap_or_default();
    match decode_extras(data) {
        Ok(x) if x.end == 117 && tail.starts_with(b"*2\r\n$6\r\nSELECT") => {}
        Ok(x) => p.push(format!(
            "the RDB part should end at byte 117 where the RESP tail starts; it ended at {}",
            x.end
        )),
        Err(e) => p.push(e),
    }
    p
}

/// An error must say where: its offset lies in the file and its text names it.
fn check_names_offset(e: &RdbError, data: &[u8]) -> Vec<String> {
    let text = e.to_string();
    if e.offset > data.len() as u64 || !text.contains(&format!("at byte {}", e.offset)) {
        vec![format!(
            "the error does not name a byte offset in the file: {text}"
        )]
    } else {
        vec![]
    }
}

#[test]
fn decoded_values_match_the_goldens() {
    let Some(corpus) = Corpus::locate() else {
        return;
    };
    let mut failures = Failures::default();
    let mut skipped = Vec::new();
    let mut compared = 0;
    for row in corpus.rows.iter().filter(|r| !r.goldens.is_empty()) {
        let decoded = corpus
            .read(&row.path)
            .and_then(|data| match decode(&data)? {
                Ok(rdb) => Ok(Decoded { data, rdb }),
                Err(e) => Err(format!("does not decode: {e}")),
            });
        for golden in &row.goldens {
            match golden_use(golden) {
                None => failures.add(
                    golden,
                    "golden not classified: compare it or list it as skipped in its source module",
                ),
                Some(GoldenUse::Skip(why)) => skipped.push(format!("{golden}: {why}")),
                Some(GoldenUse::Compare(compare)) => {
                    let dec = match &decoded {
                        Ok(d) => d,
                        Err(e) => {
                            failures.add(golden, format!("input {} {e}", row.path));
                            continue;
                        }
                    };
                    match no_panic(|| compare(&corpus, golden, dec)) {
                        Err(panic) => failures.add(golden, panic),
                        Ok(Err(unreadable)) => {
                            failures.add(golden, format!("golden not understood: {unreadable}"))
                        }
                        Ok(Ok(problems)) => {
                            compared += 1;
                            failures.extend(&format!("{golden} (input {})", row.path), problems);
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "{compared} goldens compared; {} deliberately not compared:\n  {}",
        skipped.len(),
        skipped.join("\n  ")
    );
    failures.report("golden comparisons");
}

/// xorshift64*: deterministic split sizes without a dependency; the seed is printed and
/// can be replayed with `FERRY_SPLIT_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Mostly small pieces (where unit boundaries get cut), sometimes large ones.
    fn piece(&mut self) -> usize {
        let r = self.next();
        let max = [4u64, 64, 4096, 1 << 16][(r & 3) as usize];
        1 + ((r >> 8) % max) as usize
    }
}

/// Bytes up to which a file is also decoded one byte at a time.
const BYTE_AT_A_TIME_MAX: usize = 200 * 1024;

#[test]
fn any_split_decodes_like_the_whole_buffer() {
    let Some(corpus) = Corpus::locate() else {
        return;
    };
    let seed = std::env::var("FERRY_SPLIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F3A7_2026_0001u64);
    eprintln!("split seed {seed} (replay with FERRY_SPLIT_SEED={seed})");
    let mut rng = Rng(seed | 1);
    let mut failures = Failures::default();
    let mut seen = HashSet::new();
    let (mut files, mut bytewise) = (0, 0);
    for row in corpus
        .rows
        .iter()
        .filter(|r| r.expect == "ok" && r.is_rdb())
    {
        let Ok(data) = corpus.read(&row.path) else {
            continue;
        };
        // Identical fixtures appear under several sources: decode each content once.
        if !seen.insert(data.clone()) {
            continue;
        }
        let cfg = corpus::config(data.len());
        let whole = match no_panic(|| collect::collect(&data, cfg.clone())) {
            Ok(Ok(rdb)) => rdb,
            Ok(Err(e)) => {
                failures.add(&row.path, format!("whole-buffer decode failed: {e}"));
                continue;
            }
            Err(panic) => {
                failures.add(&row.path, panic);
                continue;
            }
        };
        let mut check = |how: &str, got: Result<Result<Rdb, RdbError>, String>| match got {
            Ok(Ok(rdb)) if rdb == whole => {}
            Ok(Ok(rdb)) => failures.add(
                &row.path,
                format!("{how}: {}", first_difference(&whole, &rdb)),
            ),
            Ok(Err(e)) => failures.add(&row.path, format!("{how}: {e}")),
            Err(panic) => failures.add(&row.path, format!("{how}: {panic}")),
        };
        files += 1;
        if data.len() <= BYTE_AT_A_TIME_MAX {
            bytewise += 1;
            check(
                "one byte at a time",
                no_panic(|| collect::collect_split(&data, cfg.clone(), |_| 1)),
            );
        }
        check(
            "random splits",
            no_panic(|| collect::collect_split(&data, cfg.clone(), |_| rng.piece())),
        );
        // The same with every string over 16 bytes streamed in chunks, so the split also
        // falls inside big strings and LZF streams.
        let mut chunked = cfg.clone();
        chunked.chunk_threshold = 16;
        check(
            "random splits, 16-byte chunk threshold",
            no_panic(|| collect::collect_split(&data, chunked, |_| rng.piece())),
        );
    }
    eprintln!(
        "{files} distinct files split at random, {bytewise} of them (up to {} KiB) also one \
         byte at a time",
        BYTE_AT_A_TIME_MAX / 1024
    );
    failures.report("split decoding");
}

/// The first key (or file-level field) where two decodes differ.
fn first_difference(whole: &Rdb, split: &Rdb) -> String {
    if whole.keys.len() != split.keys.len() {
        return format!(
            "{} keys, whole buffer gave {}",
            split.keys.len(),
            whole.keys.len()
        );
    }
    for (a, b) in whole.keys.iter().zip(&split.keys) {
        if a != b {
            return format!(
                "key {:?}: {}",
                Text::Latin1.render(&a.key),
                describe_diff(a, b)
            );
        }
    }
    let mut a = whole.clone();
    let mut b = split.clone();
    a.keys.clear();
    b.keys.clear();
    format!("file-level fields: {}", describe_diff(&a, &b))
}

// ---------------------------------------------------------------------------------
// The binary

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run the ferry binary")
}

/// Files for the JSON-lines check: a stream with consumer groups, binary values, a zset
/// with infinite scores, Valkey's HASH_2 with field TTLs, and one of every type.
const INSPECT_FILES: &[&str] = &[
    "rdb/librdb/stream_v11.rdb",
    "rdb/redis-replicator/binarydump.rdb",
    "rdb/hdt3213-rdb/non_ascii_values.rdb",
    "rdb/librdb/plain_zset_2_v11.rdb",
    "rdb/hdt3213-rdb/valkey_hash2_with_hfe.rdb",
    "rdb/redis-rdb-cli/all.rdb",
];

#[test]
fn inspect_prints_json_lines_and_reports_errors() {
    let Some(corpus) = Corpus::locate() else {
        return;
    };
    let mut failures = Failures::default();
    let path = |rel: &str| corpus.path(rel).display().to_string();

    for rel in INSPECT_FILES {
        let out = ferry(&["rdb", "inspect", &path(rel), "--format", "jsonl"]);
        if !out.status.success() {
            failures.add(
                rel,
                format!(
                    "exit {:?}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
            continue;
        }
        let rdb = match corpus.read(rel).map(|d| decode(&d)) {
            Ok(Ok(Ok(rdb))) => rdb,
            other => {
                failures.add(rel, format!("library decode failed: {other:?}"));
                continue;
            }
        };
        failures.extend(rel, check_jsonl(&out.stdout, &rdb, |_| true));
    }

    // Filters and summary, on the file with three databases.
    let all = "rdb/redis-rdb-cli/all.rdb";
    let all_path = path(all);
    match corpus.read(all).map(|d| decode(&d)) {
        Ok(Ok(Ok(rdb))) => {
            failures.extend(all, check_filters(&all_path, &rdb));
            failures.extend(all, check_summary(&all_path, &rdb));
        }
        other => failures.add(all, format!("library decode failed: {other:?}")),
    }

    // Errors: exit 1, the file, the offset and what is wrong on stderr.
    let bad = "rdb/librdb/invalid_chksum_v8.rdb";
    let out = ferry(&["rdb", "inspect", &path(bad)]);
    let err = String::from_utf8_lossy(&out.stderr);
    // PROVENANCE.md: stored b477e446e98e5402, computed a609bb6465990fe1; the stored
    // checksum is the last 8 of the file's 209 bytes.
    let want =
        "at byte 201: checksum mismatch: stored 0xb477e446e98e5402 computed 0xa609bb6465990fe1";
    if out.status.code() != Some(1) || !err.contains(&path(bad)) || !err.contains(want) {
        failures.add(
            bad,
            format!(
                "expected exit 1 and {want:?} on stderr; exit {:?}, stderr {err:?}",
                out.status.code()
            ),
        );
    }
    let future = "rdb/librdb/future_v19.rdb";
    let out = ferry(&["rdb", "inspect", &path(future)]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) || !err.contains(&path(future)) || !err.contains("version 99") {
        failures.add(
            future,
            format!(
                "expected exit 1 naming version 99; exit {:?}, stderr {err:?}",
                out.status.code()
            ),
        );
    }
    failures.report("ferry rdb inspect");
}

/// `--db` and `--key-pattern` select the same keys as filtering the library's decode.
fn check_filters(file: &str, rdb: &Rdb) -> Vec<String> {
    type Keep = fn(&Key) -> bool;
    let cases: [(&[&str], Keep); 3] = [
        (&["--db", "1"], |k| k.db == 1),
        (&["--key-pattern", "hll*"], |k| k.key.starts_with(b"hll")),
        (&["--db", "0", "--key-pattern", "*list*"], |k| {
            k.db == 0 && k.key.windows(4).any(|w| w == b"list")
        }),
    ];
    let mut p = Vec::new();
    for (args, keep) in cases {
        let mut cmd = vec!["rdb", "inspect", file, "--format", "jsonl"];
        cmd.extend(args);
        let out = ferry(&cmd);
        let what = args.join(" ");
        if !out.status.success() {
            p.push(format!("{what}: exit {:?}", out.status.code()));
        } else if !rdb.keys.iter().any(|k| !k.empty && keep(k)) {
            p.push(format!("{what}: selects no key; pick a filter that does"));
        } else {
            p.extend(
                check_jsonl(&out.stdout, rdb, keep)
                    .into_iter()
                    .map(|e| format!("{what}: {e}")),
            );
        }
    }
    p
}

/// `--format summary` is JSON with the version, the key count and keys per database.
fn check_summary(file: &str, rdb: &Rdb) -> Vec<String> {
    let out = ferry(&["rdb", "inspect", file, "--format", "summary"]);
    let s: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(s) if out.status.success() => s,
        other => {
            return vec![format!(
                "summary: exit {:?}, not JSON: {other:?}",
                out.status.code()
            )]
        }
    };
    let live: Vec<&Key> = rdb.keys.iter().filter(|k| !k.empty).collect();
    let mut want_dbs: Vec<(String, u64)> = Vec::new();
    for k in &live {
        match want_dbs.iter_mut().find(|(db, _)| *db == k.db.to_string()) {
            Some((_, n)) => *n += 1,
            None => want_dbs.push((k.db.to_string(), 1)),
        }
    }
    want_dbs.sort();
    let got_dbs: Option<Vec<(String, u64)>> = s["dbs"].as_object().and_then(|d| {
        d.iter()
            .map(|(db, v)| Some((db.clone(), v["keys"].as_u64()?)))
            .collect()
    });
    if s["rdb_version"] != rdb.version
        || s["keys"] != live.len()
        || got_dbs.as_ref() != Some(&want_dbs)
    {
        vec![format!(
            "summary: expected rdb_version {}, keys {}, dbs {want_dbs:?}; got {s}",
            rdb.version,
            live.len()
        )]
    } else {
        vec![]
    }
}

/// Every line of `ferry rdb inspect --format jsonl` is a JSON object with db, key, type,
/// expire_at_ms and value, and the lines are the selected non-empty keys of the library's
/// decode, in order, with the same values.
fn check_jsonl(stdout: &[u8], rdb: &Rdb, keep: impl Fn(&Key) -> bool) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(stdout) else {
        return vec!["output is not UTF-8".into()];
    };
    let keys: Vec<&Key> = rdb.keys.iter().filter(|k| !k.empty && keep(k)).collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut p = Vec::new();
    if lines.len() != keys.len() {
        p.push(format!("{} lines for {} keys", lines.len(), keys.len()));
    }
    for (i, (line, k)) in lines.iter().zip(&keys).enumerate() {
        let at = format!("line {} (key {:?})", i + 1, Text::Latin1.render(&k.key));
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            p.push(format!("{at}: not valid JSON: {e}"));
            continue;
        }
        // Read again with numbers kept as text, so scores compare bit for bit.
        let got = json::parse(line, Dialect::default())
            .map_err(|e| e.to_string())
            .and_then(|v| inspect::read_line(&v));
        let want = (
            k.db,
            k.key.clone(),
            k.kind.name().to_string(),
            k.expire_ms,
            k.value.clone(),
        );
        match got {
            Ok(got) if got == want => {}
            Ok(got) => p.push(format!("{at}: {}", describe_diff(&want, &got))),
            Err(e) => p.push(format!("{at}: {e}: {line}")),
        }
    }
    p
}
