//! Following a failover of a target given by sentinels, without losing or repeating writes.
//!
//! Replication from the target's master to its replicas is asynchronous: when the
//! sentinels promote a replica, the commands ferry's connection had applied on the old
//! master but that had not reached the replica yet are gone (the old master, turned into
//! a replica of the new one, drops them), though the old master answered them. ferry
//! therefore cannot resume from what the old master acknowledged. It resumes from what
//! the *new* master has, and learns that from a marker it keeps in the target's own data:
//!
//! * the key [`MARKER_KEY`] holds `"<source replid> <source offset> <source db>"`: every
//!   command of the source's stream up to that offset was sent before it on the same
//!   connection, so a server that has the marker has them all (replication keeps the
//!   order); the db is the stream's db at that offset (a source does not repeat its
//!   `SELECT` when asked for its stream again);
//! * it is written on a timer while the stream runs, after the snapshot, and — inside a
//!   `MULTI`/`EXEC` with the command itself — after every command that is not safe to
//!   apply twice ([`replay_safe`]: `INCR`, `RPUSH`, … are not; `SET`, `DEL`, `HSET`, …
//!   are). A source transaction gets it before its `EXEC`.
//!
//! After the failover ferry reads the marker on the new master (the largest offset over
//! its dbs) and asks the source for its stream again from there (`PSYNC replid offset+1`).
//! Commands after the marker that the new master already had are then applied again; by
//! the rule above each of them is one that leaves the same data when repeated in order,
//! and none that is not can be among them (it would have carried a later marker). When
//! the source no longer has that part of its stream (its backlog moved on), it answers
//! with a full resync, and ferry copies everything again.
//!
//! The marker is deleted when the sync stops cleanly; `ferry verify` ignores it.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::resp::{self, Frame};

/// The key that records how far the target has the source's stream (sentinel targets).
pub const MARKER_KEY: &[u8] = b"ferry:applied";

/// `SET ferry:applied "<replid> <offset> <db>"` as RESP.
pub fn marker_command(out: &mut Vec<u8>, replid: &str, offset: u64, db: u32) {
    let value = format!("{replid} {offset} {db}");
    resp::encode_command(out, &[b"SET".as_slice(), MARKER_KEY, value.as_bytes()]);
}

/// Whether applying the command a second time, in order with the ones around it, leaves
/// the data as applying it once does: it sets a value rather than changing it by an
/// amount or a position. Unknown commands are not.
pub fn replay_safe(name: &[u8], args: &[Frame]) -> bool {
    let arg_is = |w: &[u8]| {
        args.iter()
            .skip(2)
            .any(|a| a.as_bytes().is_some_and(|b| b.eq_ignore_ascii_case(w)))
    };
    match name {
        // Values set outright, members added or removed, keys deleted or renamed.
        b"SET" | b"SETEX" | b"PSETEX" | b"SETNX" | b"MSET" | b"MSETNX" | b"SETRANGE"
        | b"SETBIT" | b"GETSET" | b"GETDEL" | b"GETEX" | b"DEL" | b"UNLINK" | b"HSET"
        | b"HMSET" | b"HSETNX" | b"HDEL" | b"SADD" | b"SREM" | b"SMOVE" | b"ZREM"
        | b"ZREMRANGEBYSCORE" | b"ZREMRANGEBYLEX" | b"PFADD" | b"GEOADD" | b"LSET" | b"EXPIRE"
        | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" | b"PERSIST" | b"HEXPIRE" | b"HPEXPIRE"
        | b"HEXPIREAT" | b"HPEXPIREAT" | b"HPERSIST" | b"RESTORE" | b"RESTORE-ASKING"
        | b"RENAME" | b"RENAMENX" | b"COPY" | b"FLUSHDB" | b"FLUSHALL" | b"XDEL" | b"XACK"
        | b"XSETID" | b"XGROUP" | b"XCLAIM" | b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE"
        | b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" | b"ZRANGESTORE" | b"BITOP"
        | b"PFMERGE" | b"GEOSEARCHSTORE" | b"FUNCTION" | b"SCRIPT" | b"PUBLISH" | b"SPUBLISH" => {
            true
        }
        b"ZADD" => !arg_is(b"INCR"),
        // An XADD with an explicit ID is refused the second time (its ID is not above
        // the last one); `*` IDs are replaced by the server before propagation.
        b"XADD" => true,
        _ => false,
    }
}

/// The largest marker of the current source history on the server `ep` (a master): its
/// (offset, db), when one of its dbs holds a marker for `replid`. `Ok(None)`: no usable
/// marker.
pub async fn read_marker(
    ep: &Endpoint,
    replid: &str,
    timeout: Duration,
) -> Result<Option<(u64, u32)>, String> {
    let dbs = crate::admin::calls(ep, &[&[b"CONFIG", b"GET", b"databases"]], timeout)
        .await?
        .into_iter()
        .next()
        .and_then(|f| match f {
            Frame::Array(a) => a.get(1).and_then(|v| v.to_i64()),
            _ => None,
        })
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(16)
        .clamp(1, 256);
    let names: Vec<String> = (0..dbs).map(|d| d.to_string()).collect();
    let mut cmds: Vec<Vec<&[u8]>> = Vec::new();
    for n in &names {
        cmds.push(vec![b"SELECT".as_slice(), n.as_bytes()]);
        cmds.push(vec![b"GET".as_slice(), MARKER_KEY]);
    }
    let refs: Vec<&[&[u8]]> = cmds.iter().map(|c| c.as_slice()).collect();
    let replies = crate::admin::calls(ep, &refs, timeout).await?;
    Ok(replies
        .iter()
        .skip(1)
        .step_by(2)
        .filter_map(|f| f.as_bytes())
        .filter_map(|v| parse_marker(v, replid))
        .max())
}

fn parse_marker(v: &[u8], replid: &str) -> Option<(u64, u32)> {
    let mut w = std::str::from_utf8(v).ok()?.split(' ');
    let (id, off, db) = (w.next()?, w.next()?, w.next()?);
    if id != replid || w.next().is_some() {
        return None;
    }
    Some((off.parse().ok()?, db.parse().ok()?))
}

/// The role of `ep` from `INFO replication` (`master`, `slave`), for deciding whether a
/// failover finished.
pub async fn role(ep: &Endpoint, timeout: Duration) -> Result<String, String> {
    let text = crate::admin::info_section(ep, "replication", timeout).await?;
    crate::admin::info_field(&text, "role")
        .map(str::to_string)
        .ok_or_else(|| format!("{}: INFO replication names no role", ep.addr()))
}

/// Whether the target's master `old` is no longer the master: the sentinels name
/// another, or it does not answer, or it is not a master any more.
pub async fn master_changed(sentinel: &Endpoint, old: &Endpoint, timeout: Duration) -> bool {
    match crate::sentinel::resolve(sentinel, timeout).await {
        Ok(now) if now.addr() != old.addr() => return true,
        Ok(_) => {}
        Err(_) => return true,
    }
    role(old, timeout).await.map_or(true, |r| r != "master")
}

/// Waits (at most `wait`) until the master the sentinels name answers as a master, and
/// reads its marker for `replid`.
pub async fn wait_for_master(
    sentinel: &Endpoint,
    replid: &str,
    wait: Duration,
) -> Result<(Endpoint, Option<(u64, u32)>), String> {
    let timeout = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match crate::sentinel::resolve(sentinel, timeout).await {
            Ok(ep) => match role(&ep, timeout).await {
                Ok(r) if r == "master" => {
                    let m = read_marker(&ep, replid, timeout).await?;
                    return Ok((ep, m));
                }
                Ok(r) => format!("{} is a {r}", ep.addr()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("after {} s: {last}", wait.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asks the sentinels every second which server is the master; [`MasterWatch::moved`]
/// turns true once they name another than `current`. Stops when dropped.
pub fn watch_master(sentinel: Endpoint, current: Endpoint) -> MasterWatch {
    let moved = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = moved.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(now) = crate::sentinel::resolve(&sentinel, Duration::from_secs(2)).await {
                if now.addr() != current.addr() {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    MasterWatch { moved, task }
}

pub struct MasterWatch {
    moved: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl MasterWatch {
    pub fn moved(&self) -> bool {
        self.moved.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for MasterWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Frame> {
        words
            .iter()
            .map(|w| Frame::Bulk(w.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn commands_that_change_by_an_amount_are_not_replay_safe() {
        for c in [
            "INCR k",
            "RPUSH l a",
            "LPOP l",
            "APPEND k x",
            "HINCRBY h f 1",
            "SWAPDB 0 1",
        ] {
            let a = args(&c.split(' ').collect::<Vec<_>>());
            assert!(
                !replay_safe(c.split(' ').next().unwrap().as_bytes(), &a),
                "{c}"
            );
        }
        for c in [
            "SET k v",
            "DEL k",
            "HSET h f v",
            "SADD s m",
            "ZADD z 1 m",
            "PEXPIREAT k 5",
        ] {
            let a = args(&c.split(' ').collect::<Vec<_>>());
            assert!(
                replay_safe(c.split(' ').next().unwrap().as_bytes(), &a),
                "{c}"
            );
        }
        assert!(!replay_safe(
            b"ZADD",
            &args(&["ZADD", "z", "INCR", "1", "m"])
        ));
    }

    #[test]
    fn markers_of_another_history_are_ignored() {
        let mut out = Vec::new();
        marker_command(&mut out, "abc", 42, 3);
        assert!(out.ends_with(b"$8\r\nabc 42 3\r\n"));
        assert_eq!(parse_marker(b"abc 42 3", "abc"), Some((42, 3)));
        assert_eq!(parse_marker(b"abc 42 3", "other"), None);
        assert_eq!(parse_marker(b"abc x 3", "abc"), None);
        assert_eq!(parse_marker(b"abc 42", "abc"), None);
        assert_eq!(parse_marker(b"junk", "abc"), None);
    }
}
