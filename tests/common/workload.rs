//! A bounded, deterministic write workload against a source server, independent of
//! ferry: the writes that a sync must carry over while it runs.
//!
//! It uses only commands that both ends of a pair understand (`compat` is the older
//! server of the pair), covers every type, expiry changes, deletes, transactions and a
//! FLUSHDB of another db, and stops by itself after `ops` operations or when told.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::servers::ServerSpec;

pub struct Workload {
    pub ops: u64,
    /// Pause between batches of 50 operations (0 = as fast as possible).
    pub pause: Duration,
    pub seed: u64,
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Runs the workload on `client` until `ops` are done or `stop` is set. Returns how
/// many operations were sent.
pub fn run(client: &mut Client, compat: &ServerSpec, w: &Workload, stop: &Arc<AtomicBool>) -> u64 {
    let mut seed = w.seed | 1;
    let streams = compat.has_streams();
    let mut done = 0u64;
    let mut db = 0u32;
    client.select(0);
    while done < w.ops && !stop.load(Ordering::Relaxed) {
        for _ in 0..50 {
            let r = rng(&mut seed);
            let k = format!("wl:{}", r % 200);
            let n = (r >> 16) % 1000;
            let op = (r >> 32) % 22;
            let args: Vec<String> = match op {
                0 => vec!["SET".into(), k.clone(), format!("v{n}\r\n\0bin")],
                1 => vec!["INCR".into(), format!("wl:ctr:{}", n % 10)],
                2 => vec![
                    "APPEND".into(),
                    format!("wl:app:{}", n % 10),
                    format!("+{n}"),
                ],
                3 => vec![
                    "RPUSH".into(),
                    format!("wl:list:{}", n % 5),
                    format!("e{n}"),
                ],
                4 => vec!["LPOP".into(), format!("wl:list:{}", n % 5)],
                5 => vec!["SADD".into(), format!("wl:set:{}", n % 5), format!("m{n}")],
                6 => vec![
                    "SREM".into(),
                    format!("wl:set:{}", n % 5),
                    format!("m{}", n / 2),
                ],
                7 => vec![
                    "ZADD".into(),
                    format!("wl:z:{}", n % 5),
                    format!("{}.{}", n, n % 7),
                    format!("m{n}"),
                ],
                8 => vec![
                    "ZINCRBY".into(),
                    format!("wl:z:{}", n % 5),
                    "0.1".into(),
                    format!("m{n}"),
                ],
                9 => vec![
                    "HSET".into(),
                    format!("wl:h:{}", n % 5),
                    format!("f{}", n % 50),
                    format!("v{n}"),
                ],
                10 => vec![
                    "HDEL".into(),
                    format!("wl:h:{}", n % 5),
                    format!("f{}", n % 40),
                ],
                11 => vec!["EXPIRE".into(), k.clone(), "3600".into()],
                12 => vec!["PERSIST".into(), k.clone()],
                13 => vec!["DEL".into(), k.clone()],
                14 => vec![
                    "PEXPIRE".into(),
                    format!("wl:ctr:{}", n % 10),
                    "7200000".into(),
                ],
                15 if streams => vec![
                    "XADD".into(),
                    "wl:stream".into(),
                    "*".into(),
                    "n".into(),
                    n.to_string(),
                ],
                16 if streams => vec![
                    "XTRIM".into(),
                    "wl:stream".into(),
                    "MAXLEN".into(),
                    "500".into(),
                ],
                17 => {
                    // A transaction: both commands land together or not at all.
                    client.cmd_str(&["MULTI"]);
                    client.cmd_str(&["INCR", "wl:tx:a"]);
                    if n % 5 == 0 {
                        // One that SELECTs inside: the second write goes to the other db,
                        // and the connection stays there after EXEC.
                        let other = if db == 0 { "1" } else { "0" };
                        client.cmd_str(&["SELECT", other]);
                        client.cmd_str(&["INCR", "wl:tx:c"]);
                        client.cmd_str(&["EXEC"]);
                        client.select(db);
                    } else {
                        client.cmd_str(&["INCR", "wl:tx:b"]);
                        client.cmd_str(&["EXEC"]);
                    }
                    done += 1;
                    continue;
                }
                18 => {
                    db = if db == 0 { 1 } else { 0 };
                    client.select(db);
                    done += 1;
                    continue;
                }
                19 if n % 97 == 0 => {
                    // Empty another db: FLUSHDB must reach the target in the right db.
                    client.select(3);
                    client.cmd_str(&["SET", "wl:db3", "x"]);
                    client.cmd_str(&["FLUSHDB"]);
                    client.select(db);
                    done += 1;
                    continue;
                }
                20 => vec![
                    "SETEX".into(),
                    format!("wl:ex:{}", n % 20),
                    "5000".into(),
                    "v".into(),
                ],
                _ => vec![
                    "SET".into(),
                    format!("wl:s:{}", n % 300),
                    "x".repeat((n % 64) as usize),
                ],
            };
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            client.cmd_str(&refs);
            done += 1;
        }
        if !w.pause.is_zero() {
            std::thread::sleep(w.pause);
        }
    }
    client.select(0);
    done
}
