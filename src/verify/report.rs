//! Differences, the human summary and the JSON report.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::util::escape_bytes;

/// What kind of difference a key shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// A different type on each side.
    Type,
    /// A different length (elements, or bytes of a string).
    Length,
    /// Same type and length, different content.
    Value,
    /// Expiry differs by more than the tolerance, or set on one side only.
    Expire,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Type => "type",
            Kind::Length => "length",
            Kind::Value => "value",
            Kind::Expire => "expire",
        }
    }
}

/// One difference of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub db: u32,
    pub key: Vec<u8>,
    pub kind: Kind,
    /// What differs, naming the first differing element (`list index 41: …`).
    pub detail: String,
}

/// A value for a message: escaped, cut after `max` bytes.
pub fn show(b: &[u8]) -> String {
    const MAX: usize = 48;
    if b.len() <= MAX {
        format!("\"{}\"", escape_bytes(b))
    } else {
        format!("\"{}\"… ({} bytes)", escape_bytes(&b[..MAX]), b.len())
    }
}

/// Figures of one round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundStats {
    pub round: u32,
    /// Keys read by SCAN on the source (round 1) or re-checked (later rounds).
    pub source_keys: u64,
    /// Keys read by SCAN on the target (round 1 only).
    pub target_keys: u64,
    /// Keys whose values were not compared (module types).
    pub not_compared: u64,
    /// Bytes of replies read from both sides.
    pub bytes: u64,
    pub differences: u64,
    pub seconds: f64,
}

/// The result of a run: the last round's differences and every round's figures.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub source: String,
    pub target: String,
    pub mode: &'static str,
    pub dbs: Vec<u32>,
    pub rounds: Vec<RoundStats>,
    /// Sorted by db, key, kind.
    pub diffs: Vec<Diff>,
    /// More differences than were kept (only the first are listed).
    pub diffs_total: u64,
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn equal(&self) -> bool {
        self.diffs_total == 0
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for d in &self.diffs {
            *m.entry(d.kind.name()).or_insert(0) += 1;
        }
        m
    }

    /// The terminal summary: result, figures, counts per kind, the first `first` differences.
    pub fn write_summary(&self, out: &mut impl Write, first: usize) -> io::Result<()> {
        let r1 = self.rounds.first().cloned().unwrap_or_default();
        let secs: f64 = self.rounds.iter().map(|r| r.seconds).sum();
        writeln!(
            out,
            "verify {} → {} ({} mode, dbs {:?}): {} keys on the source, {} on the target, {} round(s), {:.1} s ({:.0} keys/s, {:.1} MB/s in round 1)",
            self.source,
            self.target,
            self.mode,
            self.dbs,
            r1.source_keys,
            r1.target_keys,
            self.rounds.len(),
            secs,
            (r1.source_keys + r1.target_keys) as f64 / r1.seconds.max(1e-9),
            r1.bytes as f64 / 1e6 / r1.seconds.max(1e-9),
        )?;
        for n in &self.notes {
            writeln!(out, "note: {n}")?;
        }
        if self.equal() {
            return writeln!(out, "EQUAL");
        }
        let counts: Vec<String> = self
            .counts()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            out,
            "DIFFERENT: {} difference(s): {}",
            self.diffs_total,
            counts.join(", ")
        )?;
        for d in self.diffs.iter().take(first) {
            writeln!(
                out,
                "  db {} key {}: {}: {}",
                d.db,
                show(&d.key),
                d.kind.name(),
                d.detail
            )?;
        }
        if self.diffs.len() > first {
            writeln!(
                out,
                "  … {} more in the report",
                self.diffs_total - first as u64
            )?;
        }
        Ok(())
    }

    /// The JSON report: every difference kept, keys escaped as [`escape_bytes`] does.
    pub fn to_json(&self) -> serde_json::Value {
        let diffs: Vec<serde_json::Value> = self
            .diffs
            .iter()
            .map(|d| {
                serde_json::json!({
                    "db": d.db,
                    "key": escape_bytes(&d.key),
                    "kind": d.kind,
                    "detail": d.detail,
                })
            })
            .collect();
        serde_json::json!({
            "result": if self.equal() { "equal" } else { "differ" },
            "source": self.source,
            "target": self.target,
            "mode": self.mode,
            "dbs": self.dbs,
            "rounds": self.rounds,
            "counts": self.counts(),
            "differences_total": self.diffs_total,
            "differences": diffs,
            "key_escaping": "printable ASCII as is; backslash, LF, CR and TAB as \\\\ \\n \\r \\t; other bytes as \\xNN",
            "notes": self.notes,
        })
    }
}
