//! Resuming across processes: `[sync] checkpoint = "FILE"` (or `--checkpoint FILE`).
//!
//! A sync that stops cleanly (SIGTERM/SIGINT or `--once`) with everything it received
//! acknowledged by the target writes the source's replication id, the offset the target
//! has applied, the source db at that offset, both endpoints and the target's `run_id`.
//! The next `ferry sync` with the same file asks the source for its stream from there
//! (`PSYNC <replid> <offset+1>`); the source answers `+CONTINUE` when its backlog still
//! holds that part of its stream, and a full resync otherwise.
//!
//! The file is exact only for a clean stop, so it is *taken* at start: removed before
//! anything is written, and written again only by the next clean stop. A run that
//! crashes, or stops with commands unacknowledged, leaves no checkpoint, and the next
//! start copies everything again (a full resync) rather than apply commands twice. A
//! checkpoint of another source or target, or of a target that restarted since (another
//! `run_id`: it may have lost what it had applied), is not used and left in place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a clean stop saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// `host:port` of the source and of the target (no credentials).
    pub source: String,
    pub target: String,
    /// The target server's `run_id` when the checkpoint was written.
    pub target_run_id: String,
    /// The source's replication id and the offset the target has applied.
    pub replid: String,
    pub offset: u64,
    /// The source db at that offset (a source does not repeat its `SELECT`).
    pub db: u32,
}

/// Reads the checkpoint at `path` and removes it when it is for `source` → `target`.
/// `Ok(None)`: no file, or one for another sync (logged, left in place).
pub fn take(path: &Path, source: &str, target: &str) -> Result<Option<Checkpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("checkpoint {}: {e}", path.display())),
    };
    let cp: Checkpoint = match toml::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "checkpoint {}: not a ferry checkpoint ({}): ignored, copying everything",
                path.display(),
                e.message()
            );
            return Ok(None);
        }
    };
    if cp.source != source || cp.target != target {
        tracing::warn!(
            "checkpoint {} is for {} -> {}, not {source} -> {target}: ignored (and kept)",
            path.display(),
            cp.source,
            cp.target
        );
        return Ok(None);
    }
    std::fs::remove_file(path).map_err(|e| format!("checkpoint {}: {e}", path.display()))?;
    Ok(Some(cp))
}

/// Writes `cp` to `path` atomically (a temporary file beside it, then a rename).
pub fn save(path: &Path, cp: &Checkpoint) -> Result<(), String> {
    let text = toml::to_string(cp).map_err(|e| format!("checkpoint: {e}"))?;
    let tmp = temp_path(path);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("checkpoint {}: {e}", path.display()))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The checkpoint file of the reverse sync of a config file: `FILE.reverse`.
pub fn for_reverse(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".reverse");
    PathBuf::from(s)
}

/// The checkpoint file of one shard of a cluster source: `FILE.<host>-<port>`.
pub fn for_shard(path: &Path, addr: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}", addr.replace([':', '/'], "-")));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            source: "127.0.0.1:6379".into(),
            target: "127.0.0.1:6380".into(),
            target_run_id: "abc".into(),
            replid: "0123456789012345678901234567890123456789".into(),
            offset: 12345,
            db: 3,
        }
    }

    /// A directory of this test's own, removed when the test ends (even when it fails).
    struct Dir(PathBuf);

    impl Dir {
        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        let d = std::env::temp_dir().join(format!(
            "ferry-checkpoint-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    #[test]
    fn saved_then_taken_once() {
        let d = dir();
        let p = d.join("a");
        save(&p, &cp()).unwrap();
        assert_eq!(
            take(&p, "127.0.0.1:6379", "127.0.0.1:6380").unwrap(),
            Some(cp())
        );
        assert!(!p.exists(), "taken: removed");
        assert_eq!(take(&p, "127.0.0.1:6379", "127.0.0.1:6380").unwrap(), None);
    }

    #[test]
    fn another_sync_s_checkpoint_is_kept_and_not_used() {
        let d = dir();
        let p = d.join("b");
        save(&p, &cp()).unwrap();
        assert_eq!(take(&p, "127.0.0.1:6380", "127.0.0.1:6379").unwrap(), None);
        assert!(p.exists());
        std::fs::write(&p, "garbage = [").unwrap();
        assert_eq!(take(&p, "127.0.0.1:6379", "127.0.0.1:6380").unwrap(), None);
    }

    #[test]
    fn shard_files_are_apart() {
        assert_eq!(
            for_shard(Path::new("/var/lib/ferry/cp"), "10.0.0.1:7000"),
            PathBuf::from("/var/lib/ferry/cp.10.0.0.1-7000")
        );
    }
}
