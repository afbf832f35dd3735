//! Helpers for the corpus tests: finding the corpus, reading its index, decoding a file
//! without letting a panic end the run, and collecting failures into one report.
//!
//! One module per golden source (`librdb`, `hdt`, `rdbcli`) turns that source's expected
//! outputs into the normalized model of `model` and compares them with ferry's decode.

pub mod hdt;
pub mod inspect;
pub mod json;
pub mod librdb;
pub mod model;
pub mod rdbcli;
pub mod structure;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ferry::rdb::collect::{self, Rdb};
use ferry::rdb::{Decoder, DecoderConfig, Event, RdbError, Step};

/// The corpus folder and its index.
pub struct Corpus {
    pub root: PathBuf,
    pub rows: Vec<Row>,
}

/// One row of `index.tsv`.
#[derive(Debug, Clone)]
pub struct Row {
    pub path: String,
    /// `REDIS`, `VALKEY`, or `-` for an AOF that starts with RESP.
    pub magic: String,
    /// The header's version digits, or `-`.
    pub version: String,
    pub size: u64,
    pub goldens: Vec<String>,
    pub expect: String,
}

impl Row {
    pub fn is_rdb(&self) -> bool {
        self.magic != "-"
    }
    pub fn version_number(&self) -> Option<u32> {
        self.version.parse().ok()
    }
}

impl Corpus {
    /// `$FERRY_CORPUS`, else `../shared/corpus` next to the crate. A clone without the
    /// corpus skips (with a note on stderr), except on CI, where a missing corpus would
    /// silently turn these tests into no-ops: there it is a failure.
    pub fn locate() -> Option<Corpus> {
        let root = match std::env::var_os("FERRY_CORPUS") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
        };
        let index = root.join("index.tsv");
        if !index.is_file() {
            let why = format!(
                "RDB corpus not found: no {} (set FERRY_CORPUS to the corpus folder)",
                index.display()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}; CI must have the corpus");
            }
            eprintln!("skipping corpus test: {why}");
            return None;
        }
        let text = std::fs::read_to_string(&index)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", index.display()));
        let rows = text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(n, line)| {
                let c: Vec<&str> = line.split('\t').collect();
                assert_eq!(
                    c.len(),
                    6,
                    "index.tsv line {}: expected 6 columns: {line:?}",
                    n + 2
                );
                Row {
                    path: c[0].to_string(),
                    magic: c[1].to_string(),
                    version: c[2].to_string(),
                    size: c[3].parse().unwrap_or_else(|_| {
                        panic!("index.tsv line {}: bad size {:?}", n + 2, c[3])
                    }),
                    goldens: match c[4] {
                        "-" => Vec::new(),
                        g => g.split(',').map(str::to_string).collect(),
                    },
                    expect: c[5].to_string(),
                }
            })
            .collect();
        Some(Corpus { root, rows })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.path(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
    }

    pub fn read_text(&self, rel: &str) -> Result<String, String> {
        std::fs::read_to_string(self.path(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
    }
}

/// The decoder settings of these tests: raw bytes kept for every value (the RAW and
/// STRUCT goldens and redis-rdb-cli's dumps compare them), the total size known as for a
/// file, the checksum verified.
pub fn config(total_len: usize) -> DecoderConfig {
    DecoderConfig {
        raw_capture_max: usize::MAX,
        total_len: Some(total_len as u64),
        ..DecoderConfig::default()
    }
}

/// Runs `f`, turning a panic into an `Err` carrying the panic message.
pub fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(non-string panic payload)".into());
        format!("PANIC: {msg}")
    })
}

/// Decodes a whole file with [`collect::collect`]; the outer `Err` is a panic's message.
pub fn decode(data: &[u8]) -> Result<Result<Rdb, RdbError>, String> {
    no_panic(|| collect::collect(data, config(data.len())))
}

/// What `collect` does not keep: RESIZEDB hints and where the RDB ended.
#[derive(Debug, Default)]
pub struct Extras {
    /// (db size, expires size) per RESIZEDB record, in order.
    pub resize: Vec<(u64, u64)>,
    /// Offset of the first byte after the RDB (its checksum included).
    pub end: u64,
}

/// Decodes `data` in one piece with the decoder directly, keeping the [`Extras`].
pub fn decode_extras(data: &[u8]) -> Result<Extras, String> {
    no_panic(|| {
        let mut dec = Decoder::new(config(data.len()));
        let mut extras = Extras::default();
        let mut at = 0usize;
        loop {
            let (used, step) = dec.step(&data[at..]).map_err(|e| e.to_string())?;
            at += used;
            match step {
                Step::Event(Event::ResizeDb {
                    db_size,
                    expires_size,
                }) => extras.resize.push((db_size, expires_size)),
                Step::Event(_) => {}
                Step::Done => {
                    extras.end = dec.offset();
                    return Ok(extras);
                }
                Step::NeedMore => {
                    dec.finish().map_err(|e| e.to_string())?;
                    return Err("the decoder wanted more after the whole file".into());
                }
            }
        }
    })?
}

/// Failures of one test, reported together at the end.
#[derive(Default)]
pub struct Failures {
    items: Vec<String>,
}

impl Failures {
    pub fn add(&mut self, file: &str, why: impl AsRef<str>) {
        let why = why.as_ref().replace('\n', "\n      ");
        self.items.push(format!("{file}: {why}"));
    }

    pub fn extend(&mut self, file: &str, whys: impl IntoIterator<Item = String>) {
        for w in whys {
            self.add(file, w);
        }
    }

    /// Panics with every failure, one per line, if there was any.
    pub fn report(self, what: &str) {
        if !self.items.is_empty() {
            panic!(
                "{what}: {} failure(s):\n  - {}",
                self.items.len(),
                self.items.join("\n  - ")
            );
        }
    }
}

/// An input and ferry's decode of it, as handed to a golden comparison.
pub struct Decoded {
    pub data: Vec<u8>,
    pub rdb: Rdb,
}

/// A comparison of one golden (path relative to the corpus) with the decode of its input.
/// `Err` means the golden itself could not be read or understood; `Ok` lists mismatches.
pub type Compare = fn(&Corpus, &str, &Decoded) -> Result<Vec<String>, String>;

/// How a golden file is used.
pub enum GoldenUse {
    Compare(Compare),
    /// Deliberately not compared, with the reason.
    Skip(&'static str),
}

/// How a golden is used, decided by the module of the source folder it lives in; `None`
/// for a golden nobody classified (a failure: every golden is compared or skipped on
/// purpose).
pub fn golden_use(golden: &str) -> Option<GoldenUse> {
    let (source, name) = golden.strip_prefix("rdb/")?.split_once('/')?;
    match source {
        "librdb" => librdb::classify(name),
        "hdt3213-rdb" => hdt::classify(name),
        "redis-rdb-cli" => rdbcli::classify(name),
        _ => None,
    }
}
