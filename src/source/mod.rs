//! Sources of data.
//!
//! * [`replica`]: the replica link to a live server. It connects as a replica (`PSYNC`),
//!   frames the RDB snapshot and the command stream that follow, acknowledges the offset the
//!   target has applied, reconnects with `PSYNC <replid> <offset+1>`, and hands everything to
//!   the consumer as [`SourceItem`]s in stream order. It does not decode the RDB or the
//!   commands; the consumer feeds the bytes to [`crate::rdb`] and [`crate::resp`].
//! * `spool` (private): the FIFO behind the link, RAM first and then a capped spool on
//!   disk, so that the socket is read at network speed whatever the consumer does.

pub mod replica;
mod spool;

use std::io;
use std::path::PathBuf;

pub use replica::{LinkStats, ReplicaConfig, ReplicaLink, Resume, SourceItem};

/// Why a source cannot go on. Every message names the source (`host:port`, never the
/// password) or the spool path, and says what the operator can do where there is something.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to source {addr}: {reason}")]
    Connect { addr: String, reason: String },

    #[error("source {addr} refused AUTH{as_user}: {reply}")]
    Auth {
        addr: String,
        /// ` as user \`name\`` or empty.
        as_user: String,
        reply: String,
    },

    #[error(
        "source {addr} requires a password (it answered PING with `{reply}`): put it in the \
         source URL, redis://[user:]password@host:port"
    )]
    NoPassword { addr: String, reply: String },

    #[error("source {addr} refused {command}: {reply}{hint}")]
    Refused {
        addr: String,
        command: String,
        reply: String,
        /// What to do about it, starting with `; ` (or empty).
        hint: String,
    },

    #[error("source {addr} sent {what}: `{bytes}`")]
    Protocol {
        addr: String,
        /// `an unexpected reply to PSYNC`, `a malformed RDB header`, …
        what: String,
        /// The offending bytes, escaped and cut.
        bytes: String,
    },

    #[error("source {addr}: {what} is not supported by the replica link yet")]
    Unsupported { addr: String, what: String },

    #[error(
        "spool reached its cap of {cap} at {}: the target is slower than the source; raise \
         [sync] spool_cap or speed up the target",
        dir.display()
    )]
    SpoolFull { cap: String, dir: PathBuf },

    #[error("spool {}: {source}", path.display())]
    Spool {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `4 GiB`, `512 MiB`, `97.7 KiB`, `100 B`: binary units, one decimal unless exact.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_reads_like_the_config() {
        use super::human_bytes;
        assert_eq!(human_bytes(4 << 30), "4 GiB");
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(100_000), "97.7 KiB");
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
