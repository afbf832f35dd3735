//! One side of the comparison (source or target): a standalone server or a cluster.
//!
//! Workers and scanners each [`SideSpec::connect`] their own [`Side`]. A standalone side is
//! one connection; a cluster side is one connection per master, a slot table from
//! `CLUSTER SLOTS`, and point reads routed by the key's CRC16 slot (hash tags honoured).
//! A `MOVED` or `ASK` reply (a slot migrating while we read) is followed once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use super::conn::{Batch, Conn};
use super::VerifyError;
use crate::endpoint::Endpoint;
use crate::resp::Frame;
use crate::target::ServerInfo;

pub const SLOTS: usize = 16384;

/// One node's part of a batch, run side by side with the others.
type NodeFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Frame>, VerifyError>> + Send + 'a>>;

/// What was learned about a side at start.
#[derive(Debug, Clone)]
pub struct SideSpec {
    /// "source" or "target", for messages.
    pub name: &'static str,
    pub ep: Endpoint,
    pub info: ServerInfo,
    /// `host:port` of each master (one entry for a standalone server).
    pub nodes: Vec<String>,
    /// For a cluster: the index in `nodes` of the master serving each slot.
    pub slots: Option<Vec<u16>>,
}

impl SideSpec {
    /// Connects once to read `INFO` (version, `cluster_enabled`) and, for a cluster, the
    /// slot table.
    pub async fn discover(name: &'static str, ep: &Endpoint) -> Result<SideSpec, VerifyError> {
        // A cluster URL may list several nodes: the first that answers.
        let ep = &ep
            .first_reachable(crate::endpoint::DEFAULT_REACH_TIMEOUT)
            .await;
        let addr = ep.addr();
        let mut conn = Conn::connect(ep, &addr).await?;
        let text = text_reply(&conn.cmd(&[b"INFO"]).await?, &addr, "INFO")?;
        let info = ServerInfo::from_info(&text).ok_or_else(|| VerifyError::Server {
            addr: addr.clone(),
            message: "INFO names no server version".into(),
        })?;
        let mut spec = SideSpec {
            name,
            ep: ep.clone(),
            info,
            nodes: vec![addr.clone()],
            slots: None,
        };
        if spec.info.cluster {
            let reply = conn.cmd(&[b"CLUSTER", b"SLOTS"]).await?;
            spec.read_slots(&reply, &addr)?;
        }
        Ok(spec)
    }

    /// Fills `nodes` and `slots` from a `CLUSTER SLOTS` reply:
    /// `[[start, end, [host, port, id...], replicas...], ...]`.
    fn read_slots(&mut self, reply: &Frame, addr: &str) -> Result<(), VerifyError> {
        let bad = |what: &str| VerifyError::Server {
            addr: addr.to_string(),
            message: format!("unexpected CLUSTER SLOTS reply: {what}"),
        };
        let Frame::Array(ranges) = reply else {
            return Err(bad("not an array"));
        };
        let mut nodes: Vec<String> = Vec::new();
        let mut slots = vec![u16::MAX; SLOTS];
        for r in ranges {
            let Frame::Array(items) = r else {
                return Err(bad("range not an array"));
            };
            let (Some(start), Some(end), Some(Frame::Array(master))) = (
                items.first().and_then(Frame::to_i64),
                items.get(1).and_then(Frame::to_i64),
                items.get(2),
            ) else {
                return Err(bad("range without start, end and master"));
            };
            let host = master
                .first()
                .and_then(Frame::as_bytes)
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .filter(|h| !h.is_empty() && h != "?")
                .unwrap_or_else(|| self.ep.host.clone());
            let port = master
                .get(1)
                .and_then(Frame::to_i64)
                .ok_or_else(|| bad("master without port"))?;
            let node = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let idx = match nodes.iter().position(|n| *n == node) {
                Some(i) => i,
                None => {
                    nodes.push(node);
                    nodes.len() - 1
                }
            };
            if !(0..SLOTS as i64).contains(&start) || !(start..SLOTS as i64).contains(&end) {
                return Err(bad("slot range out of bounds"));
            }
            for s in start..=end {
                slots[s as usize] = idx as u16;
            }
        }
        if nodes.is_empty() {
            return Err(bad("no slots are served"));
        }
        if let Some(s) = slots.iter().position(|&i| i == u16::MAX) {
            return Err(VerifyError::Server {
                addr: addr.to_string(),
                message: format!("cluster slot {s} is not served (cluster_state not ok?)"),
            });
        }
        self.nodes = nodes;
        self.slots = Some(slots);
        Ok(())
    }

    pub fn is_cluster(&self) -> bool {
        self.slots.is_some()
    }

    /// One connection per node.
    pub async fn connect(&self) -> Result<Side, VerifyError> {
        let mut conns = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            conns.push(Conn::connect(&self.ep, n).await?);
        }
        Ok(Side {
            spec: self.clone(),
            conns,
            db: 0,
            redirected: Vec::new(),
        })
    }

    /// Keys per db (`INFO keyspace`), summed over the masters.
    pub async fn keyspace(&self) -> Result<BTreeMap<u32, u64>, VerifyError> {
        let mut out = BTreeMap::new();
        for n in &self.nodes {
            let mut c = Conn::connect(&self.ep, n).await?;
            let text = text_reply(&c.cmd(&[b"INFO", b"keyspace"]).await?, n, "INFO keyspace")?;
            for (db, keys) in parse_keyspace(&text) {
                *out.entry(db).or_insert(0) += keys;
            }
        }
        Ok(out)
    }
}

/// `db0:keys=12,expires=0,avg_ttl=0` lines → (db, keys).
pub fn parse_keyspace(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let (db, rest) = l.trim().strip_prefix("db")?.split_once(':')?;
            let keys = rest.split(',').find_map(|kv| kv.strip_prefix("keys="))?;
            Some((db.parse().ok()?, keys.parse().ok()?))
        })
        .collect()
}

fn text_reply(f: &Frame, addr: &str, what: &str) -> Result<String, VerifyError> {
    match f.as_bytes() {
        Some(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        None => Err(VerifyError::Server {
            addr: addr.to_string(),
            message: format!(
                "{what} answered {}",
                f.error_text()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .unwrap_or_else(|| "an unexpected reply".into())
            ),
        }),
    }
}

/// Live connections to one side.
pub struct Side {
    pub spec: SideSpec,
    conns: Vec<Conn>,
    db: u32,
    /// Connections opened to follow redirects to nodes not in the slot table.
    redirected: Vec<Conn>,
}

impl Side {
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// Bytes of replies read so far on every connection.
    pub fn bytes_read(&self) -> u64 {
        self.conns
            .iter()
            .chain(&self.redirected)
            .map(|c| c.bytes_read)
            .sum()
    }

    pub fn nodes(&self) -> usize {
        self.conns.len()
    }

    /// Switches every connection to `db` (a cluster has only db 0).
    pub async fn select(&mut self, db: u32) -> Result<(), VerifyError> {
        if db == self.db {
            return Ok(());
        }
        if self.spec.is_cluster() {
            return Err(VerifyError::Unsupported(format!(
                "the {} is a cluster, which has only db 0 (asked for db {db})",
                self.spec.name
            )));
        }
        let dbtext = db.to_string();
        for c in &mut self.conns {
            let r = c.cmd(&[b"SELECT", dbtext.as_bytes()]).await?;
            if let Some(e) = r.error_text() {
                return Err(VerifyError::Server {
                    addr: c.addr.clone(),
                    message: format!("SELECT {db}: {}", String::from_utf8_lossy(e)),
                });
            }
        }
        self.db = db;
        Ok(())
    }

    /// `SCAN cursor [MATCH pattern] COUNT count` on node `node`.
    pub async fn scan(
        &mut self,
        node: usize,
        cursor: &[u8],
        pattern: Option<&[u8]>,
        count: usize,
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>), VerifyError> {
        let count = count.to_string();
        let mut args: Vec<&[u8]> = vec![b"SCAN", cursor];
        if let Some(p) = pattern {
            args.extend([b"MATCH".as_slice(), p]);
        }
        args.extend([b"COUNT".as_slice(), count.as_bytes()]);
        let conn = &mut self.conns[node];
        let reply = conn.cmd(&args).await?;
        let (next, mut keys) = parse_scan_reply(reply).map_err(|m| VerifyError::Server {
            addr: conn.addr.clone(),
            message: format!("SCAN: {m}"),
        })?;
        // ferry's own failover marker on a target given by sentinels is not data.
        keys.retain(|k| !crate::target::failover::is_marker_key(k));
        Ok((next, keys))
    }

    /// Runs a batch whose commands all name one key and hands the events of the replies
    /// to `visit(reply index, event)` (see [`Conn::visit`]). A redirect arrives as an
    /// error event: the caller reports the key as unreadable and a later round retries.
    pub async fn visit(
        &mut self,
        batch: &Batch,
        visit: &mut (dyn FnMut(usize, crate::resp::Event<'_>) + Send),
    ) -> Result<(), VerifyError> {
        let node = match (&self.spec.slots, batch.slots.first()) {
            (Some(slots), Some(Some(s))) => slots[*s as usize] as usize,
            _ => 0,
        };
        self.conns[node].visit(&batch.buf, batch.len(), visit).await
    }

    /// Runs a batch and returns one reply per command, in order. On a cluster the batch is
    /// split by slot owner and the parts run concurrently.
    pub async fn run(&mut self, batch: &Batch) -> Result<Vec<Frame>, VerifyError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Some(slots) = &self.spec.slots else {
            return self.conns[0].run(&batch.buf, batch.len()).await;
        };
        // Commands per node, and where each reply goes.
        let mut parts: Vec<(Vec<u8>, Vec<usize>)> =
            vec![(Vec::new(), Vec::new()); self.conns.len()];
        for i in 0..batch.len() {
            let node = batch.slots[i].map_or(0, |s| slots[s as usize] as usize);
            parts[node].0.extend_from_slice(batch.command(i));
            parts[node].1.push(i);
        }
        let futs: Vec<NodeFuture<'_>> = self
            .conns
            .iter_mut()
            .zip(&parts)
            .map(|(c, (buf, idx))| {
                let n = idx.len();
                Box::pin(async move {
                    if n == 0 {
                        Ok(Vec::new())
                    } else {
                        c.run(buf, n).await
                    }
                }) as NodeFuture<'_>
            })
            .collect();
        let results = join_all(futs).await;
        let mut out = vec![Frame::Null; batch.len()];
        for (res, (_, idx)) in results.into_iter().zip(&parts) {
            for (frame, &i) in res?.into_iter().zip(idx) {
                out[i] = frame;
            }
        }
        // Follow MOVED / ASK once (a slot in migration).
        for (i, frame) in out.iter_mut().enumerate() {
            let Some(err) = frame.error_text() else {
                continue;
            };
            let text = String::from_utf8_lossy(err).into_owned();
            let mut words = text.split(' ');
            let (kind, addr) = match (words.next(), words.nth(1)) {
                (Some(k @ ("MOVED" | "ASK")), Some(a)) => (k, a.to_string()),
                _ => continue,
            };
            let conn = match self.conns.iter().position(|c| c.addr == addr) {
                Some(p) => &mut self.conns[p],
                None => {
                    let p = match self.redirected.iter().position(|c| c.addr == addr) {
                        Some(p) => p,
                        None => {
                            self.redirected
                                .push(Conn::connect(&self.spec.ep, &addr).await?);
                            self.redirected.len() - 1
                        }
                    };
                    &mut self.redirected[p]
                }
            };
            let mut buf = Vec::new();
            let mut n = 1;
            if kind == "ASK" {
                crate::resp::encode_command(&mut buf, &[b"ASKING"]);
                n = 2;
            }
            buf.extend_from_slice(batch.command(i));
            if let Some(last) = conn.run(&buf, n).await?.pop() {
                *frame = last;
            }
        }
        Ok(out)
    }
}

/// `[cursor, [key...]]`
fn parse_scan_reply(reply: Frame) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    if let Some(e) = reply.error_text() {
        return Err(String::from_utf8_lossy(e).into_owned());
    }
    let Frame::Array(mut items) = reply else {
        return Err("not an array".into());
    };
    if items.len() != 2 {
        return Err("not [cursor, keys]".into());
    }
    let keys = items.pop();
    let cursor = items.pop();
    let (Some(Frame::Bulk(cursor)), Some(Frame::Array(keys))) = (cursor, keys) else {
        return Err("not [cursor, keys]".into());
    };
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Frame::Bulk(b) => Ok(b),
            _ => Err("a key that is not a bulk string".to_string()),
        })
        .collect::<Result<_, _>>()?;
    Ok((cursor, keys))
}

/// Polls every future until all are done (the cluster nodes of one batch, side by side).
async fn join_all<T>(mut futs: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

pub use crate::cluster::key_slot;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keyspace_lines() {
        let t = "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb5:keys=3,expires=0\r\n";
        assert_eq!(parse_keyspace(t), vec![(0, 12), (5, 3)]);
    }
}
