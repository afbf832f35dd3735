//! The slot map of a cluster, read from `CLUSTER SHARDS` (7.0+), `CLUSTER SLOTS` (3.0+)
//! or `CLUSTER NODES` (text; parsed with nom).
//!
//! All three become one [`Topology`]: the masters, each with its address, its node id
//! (when the reply gives one), the slot ranges it serves and its replicas. A node whose
//! announced address is empty (a node that has not met any other yet reports `ip ""`,
//! and `:port` in NODES) is given the address the reply came from.

use nom::bytes::complete::{take_till, take_till1, take_while1};
use nom::character::complete::{char, digit1, space1};
use nom::combinator::{map_res, opt, recognize};
use nom::multi::separated_list0;
use nom::sequence::{preceded, tuple};
use nom::IResult;

use super::slot::SLOTS;
use super::{fields, text};
use crate::resp::Frame;

/// `host:port` of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A redirect error reply: `MOVED <slot> <host:port>` or `ASK <slot> <host:port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK` (the node answers for one command after `ASKING`), else `MOVED`.
    pub ask: bool,
    /// Below [`super::SLOTS`]: a reply naming another slot is not a redirect.
    pub slot: u16,
    pub addr: NodeAddr,
}

impl Redirect {
    /// Parses the error text of a reply; `None` when it is not a well-formed redirect.
    pub fn parse(error: &str) -> Option<Redirect> {
        let mut w = error.split(' ');
        let ask = match w.next()? {
            "ASK" => true,
            "MOVED" => false,
            _ => return None,
        };
        let slot: u16 = w.next()?.parse().ok()?;
        let addr = NodeAddr::parse(w.next()?)?;
        ((slot as usize) < super::SLOTS).then_some(Redirect { ask, slot, addr })
    }
}

impl NodeAddr {
    /// Parses `host:port` (the address of a MOVED/ASK reply; `[v6]:port` too).
    pub fn parse(text: &str) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(NodeAddr {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

/// One master and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub addr: NodeAddr,
    /// The node id, when the reply names it (CLUSTER SLOTS of 3.0 does not).
    pub id: Option<String>,
    /// Inclusive slot ranges, sorted.
    pub slots: Vec<(u16, u16)>,
    pub replicas: Vec<NodeAddr>,
}

/// The masters that serve slots, sorted by address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    pub masters: Vec<Master>,
}

impl Topology {
    /// Slot → index into `masters` (`None`: no master serves it).
    pub fn slot_table(&self) -> Vec<Option<u16>> {
        let mut t = vec![None; SLOTS];
        for (i, m) in self.masters.iter().enumerate() {
            for &(a, b) in &m.slots {
                for s in a..=b.min(SLOTS as u16 - 1) {
                    t[s as usize] = Some(i as u16);
                }
            }
        }
        t
    }

    /// Slot → address of the master that serves it.
    pub fn owners(&self) -> Vec<Option<&NodeAddr>> {
        self.slot_table()
            .into_iter()
            .map(|i| i.map(|i| &self.masters[i as usize].addr))
            .collect()
    }

    /// Slots served by no master.
    pub fn uncovered(&self) -> usize {
        self.slot_table().iter().filter(|s| s.is_none()).count()
    }

    fn finish(mut self) -> Topology {
        for m in &mut self.masters {
            m.slots.sort_unstable();
            m.replicas.sort();
            m.replicas.dedup();
        }
        self.masters.retain(|m| !m.slots.is_empty());
        self.masters.sort_by(|a, b| a.addr.cmp(&b.addr));
        self
    }

    fn master_mut(&mut self, addr: NodeAddr, id: Option<String>) -> &mut Master {
        let i = match self.masters.iter().position(|m| m.addr == addr) {
            Some(i) => i,
            None => {
                self.masters.push(Master {
                    addr,
                    id: None,
                    slots: Vec::new(),
                    replicas: Vec::new(),
                });
                self.masters.len() - 1
            }
        };
        let m = &mut self.masters[i];
        if m.id.is_none() {
            m.id = id;
        }
        m
    }
}

fn slot_of(f: &Frame, what: &str) -> Result<u16, String> {
    f.to_i64()
        .filter(|&s| (0..SLOTS as i64).contains(&s))
        .map(|s| s as u16)
        .ok_or_else(|| format!("{what}: slot {f:?} is not in 0..16383"))
}

/// The host to use for an announced address: `fallback` when it is empty or `?`.
fn host_or(announced: Option<String>, fallback: &str) -> String {
    match announced {
        Some(h) if !h.is_empty() && h != "?" => h,
        _ => fallback.to_string(),
    }
}

/// `CLUSTER SHARDS`; `fallback_host` stands in for empty addresses.
pub fn parse_shards(reply: &Frame, fallback_host: &str) -> Result<Topology, String> {
    const W: &str = "CLUSTER SHARDS";
    let Frame::Array(shards) = reply else {
        return Err(format!("{W}: expected an array, got {reply:?}"));
    };
    let mut topo = Topology::default();
    for shard in shards {
        let f = fields(shard);
        let get = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let mut ranges = Vec::new();
        if let Some(Frame::Array(s)) = get("slots") {
            if s.len() % 2 != 0 {
                return Err(format!("{W}: odd number of slot bounds"));
            }
            for pair in s.chunks(2) {
                let (a, b) = (slot_of(&pair[0], W)?, slot_of(&pair[1], W)?);
                if a > b {
                    return Err(format!("{W}: slot range {a}-{b} is reversed"));
                }
                ranges.push((a, b));
            }
        }
        let Some(Frame::Array(nodes)) = get("nodes") else {
            return Err(format!("{W}: a shard without nodes"));
        };
        // (address, id, healthy): a master that failed stays listed in its shard, with
        // `health: fail`, next to the replica that took over from it.
        let mut master: Option<(NodeAddr, Option<String>, bool)> = None;
        // Two healthy masters in one shard: a node that just became a replica (or a
        // master) can be listed with its old role for a moment, and the shard does not
        // say which one serves its slots. Its slots are then left without a master, and
        // `fetch_topology` reads `CLUSTER SLOTS`, which names the owner of every slot.
        let mut ambiguous = false;
        let mut replicas = Vec::new();
        for node in nodes {
            let nf = fields(node);
            let nget = |name: &str| nf.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let port = nget("port")
                .or_else(|| nget("tls-port"))
                .and_then(Frame::to_i64)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("{W}: a node without a port"))?;
            let endpoint = nget("endpoint").and_then(text);
            let ip = nget("ip").and_then(text);
            let announced = endpoint.filter(|e| !e.is_empty() && e != "?").or(ip);
            let addr = NodeAddr {
                host: host_or(announced, fallback_host),
                port,
            };
            let role = nget("role").and_then(text).unwrap_or_default();
            let health = nget("health").and_then(text).unwrap_or_default();
            if role == "master" {
                let healthy = health != "fail";
                match &master {
                    Some(m) if m.2 && healthy => ambiguous = true,
                    Some(m) if m.2 => {}
                    _ => master = Some((addr, nget("id").and_then(text), healthy)),
                }
            } else if health != "fail" {
                replicas.push(addr);
            }
        }
        if ambiguous {
            continue;
        }
        if let Some((addr, id, _)) = master {
            let m = topo.master_mut(addr, id);
            m.slots.extend(ranges);
            m.replicas.extend(replicas);
        }
    }
    Ok(topo.finish())
}

/// `CLUSTER SLOTS`: `[start, end, [host, port, id?, …], replica…]` per range.
pub fn parse_slots(reply: &Frame, fallback_host: &str) -> Result<Topology, String> {
    const W: &str = "CLUSTER SLOTS";
    let Frame::Array(ranges) = reply else {
        return Err(format!("{W}: expected an array, got {reply:?}"));
    };
    let node = |f: &Frame| -> Result<(NodeAddr, Option<String>), String> {
        let Frame::Array(n) = f else {
            return Err(format!("{W}: a node entry is not an array"));
        };
        let port = n
            .get(1)
            .and_then(Frame::to_i64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("{W}: a node without a port"))?;
        let host = host_or(n.first().and_then(text), fallback_host);
        Ok((NodeAddr { host, port }, n.get(2).and_then(text)))
    };
    let mut topo = Topology::default();
    for r in ranges {
        let Frame::Array(items) = r else {
            return Err(format!("{W}: a range is not an array"));
        };
        if items.len() < 3 {
            return Err(format!("{W}: a range without a master"));
        }
        let (a, b) = (slot_of(&items[0], W)?, slot_of(&items[1], W)?);
        if a > b {
            return Err(format!("{W}: slot range {a}-{b} is reversed"));
        }
        let (addr, id) = node(&items[2])?;
        let replicas = items[3..]
            .iter()
            .map(|f| node(f).map(|n| n.0))
            .collect::<Result<Vec<_>, _>>()?;
        let m = topo.master_mut(addr, id);
        m.slots.push((a, b));
        m.replicas.extend(replicas);
    }
    Ok(topo.finish())
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    /// `None` when the address is unknown (`:0`, a node in handshake).
    pub host: String,
    pub port: u16,
    pub flags: Vec<String>,
    /// The master's id (`-` for a master).
    pub master: Option<String>,
    pub connected: bool,
    /// Served slot ranges (importing/migrating entries `[…]` are left out).
    pub slots: Vec<(u16, u16)>,
    /// `[slot->-id]` / `[slot-<-id]` entries: slots this node is migrating / importing.
    pub migrating: Vec<(u16, String)>,
    pub importing: Vec<(u16, String)>,
}

fn num<T: std::str::FromStr>(i: &str) -> IResult<&str, T> {
    map_res(digit1, str::parse::<T>)(i)
}

fn word(i: &str) -> IResult<&str, &str> {
    take_till1(|c: char| c == ' ')(i)
}

enum SlotItem {
    Range(u16, u16),
    Migrating(u16, String),
    Importing(u16, String),
}

fn slot_item(i: &str) -> IResult<&str, SlotItem> {
    if let Ok((rest, (_, s, dir, id, _))) = tuple((
        char('['),
        num::<u16>,
        recognize(tuple((
            char('-'),
            opt(char('<')),
            opt(char('>')),
            opt(char('-')),
        ))),
        take_till1(|c: char| c == ']'),
        char(']'),
    ))(i)
    {
        let item = if dir.contains('<') {
            SlotItem::Importing(s, id.to_string())
        } else {
            SlotItem::Migrating(s, id.to_string())
        };
        return Ok((rest, item));
    }
    let (rest, (a, b)) = tuple((num::<u16>, opt(preceded(char('-'), num::<u16>))))(i)?;
    Ok((rest, SlotItem::Range(a, b.unwrap_or(a))))
}

/// `host:port[@cport][,hostname]`; the host may be empty or a bracketless IPv6.
fn address(i: &str) -> IResult<&str, (String, u16)> {
    let (rest, full) = word(i)?;
    let main = full.split(',').next().unwrap_or_default();
    let main = main.split('@').next().unwrap_or_default();
    let Some((host, port)) = main.rsplit_once(':') else {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Char,
        )));
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Digit)))?;
    Ok((rest, (host.to_string(), port)))
}

fn node_line(i: &str) -> IResult<&str, NodeLine> {
    let (i, id) = take_while1(|c: char| c.is_ascii_hexdigit())(i)?;
    let (i, _) = space1(i)?;
    let (i, (host, port)) = address(i)?;
    let (i, _) = space1(i)?;
    let (i, flags) = word(i)?;
    let (i, _) = space1(i)?;
    let (i, master) = word(i)?;
    let (i, _) = space1(i)?;
    let (i, _ping) = word(i)?;
    let (i, _) = space1(i)?;
    let (i, _pong) = word(i)?;
    let (i, _) = space1(i)?;
    let (i, _epoch) = num::<u64>(i)?;
    let (i, _) = space1(i)?;
    let (i, link) = word(i)?;
    let (i, items) = opt(preceded(space1, separated_list0(space1, slot_item)))(i)?;
    let (i, _) = take_till(|c: char| c == '\n')(i)?;
    let mut line = NodeLine {
        id: id.to_string(),
        host,
        port,
        flags: flags.split(',').map(str::to_string).collect(),
        master: (master != "-").then(|| master.to_string()),
        connected: link == "connected",
        slots: Vec::new(),
        migrating: Vec::new(),
        importing: Vec::new(),
    };
    for it in items.unwrap_or_default() {
        match it {
            SlotItem::Range(a, b) => line.slots.push((a, b)),
            SlotItem::Migrating(s, id) => line.migrating.push((s, id)),
            SlotItem::Importing(s, id) => line.importing.push((s, id)),
        }
    }
    Ok((i, line))
}

/// Every line of `CLUSTER NODES`, or an error naming the line.
pub fn parse_node_lines(text: &str) -> Result<Vec<NodeLine>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match node_line(line) {
            Ok((rest, l)) if rest.trim().is_empty() => out.push(l),
            Ok((rest, _)) => {
                return Err(format!(
                    "CLUSTER NODES line {}: unexpected `{}`",
                    n + 1,
                    rest.chars().take(40).collect::<String>()
                ))
            }
            Err(e) => return Err(format!("CLUSTER NODES line {}: cannot parse ({e})", n + 1)),
        }
    }
    Ok(out)
}

/// `CLUSTER NODES` as a [`Topology`].
pub fn parse_nodes(text: &str, fallback_host: &str) -> Result<Topology, String> {
    let lines = parse_node_lines(text)?;
    let mut topo = Topology::default();
    let has = |l: &NodeLine, f: &str| l.flags.iter().any(|x| x == f);
    for l in &lines {
        if !has(l, "master") || has(l, "fail") || has(l, "noaddr") || has(l, "handshake") {
            continue;
        }
        let addr = NodeAddr {
            host: host_or(Some(l.host.clone()), fallback_host),
            port: l.port,
        };
        let replicas: Vec<NodeAddr> = lines
            .iter()
            .filter(|r| r.master.as_deref() == Some(&l.id) && !has(r, "fail"))
            .map(|r| NodeAddr {
                host: host_or(Some(r.host.clone()), fallback_host),
                port: r.port,
            })
            .collect();
        let m = topo.master_mut(addr, Some(l.id.clone()));
        m.slots.extend(l.slots.iter().copied());
        m.replicas.extend(replicas);
    }
    Ok(topo.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_cluster_nodes_of_old_and_new_servers() {
        // redis-7.2 (cport, hostname field), redis-3.2 (no cport), a replica, a node in
        // handshake, a migrating and an importing slot.
        let text = "\
d70d7a5347b6fb0200d9217aa7eb23674b3efa02 127.0.0.1:27001@37001,host-a myself,master - 0 0 1 connected 0-2 10-20 [5->-f5f82d688623a6a999de8565438c408f6ada153f]
f5f82d688623a6a999de8565438c408f6ada153f 127.0.0.1:27002 master - 0 1700000000000 2 connected 3-9 21-16383 [5-<-d70d7a5347b6fb0200d9217aa7eb23674b3efa02]
aaaa7a5347b6fb0200d9217aa7eb23674b3efa02 127.0.0.1:27003@37003 slave d70d7a5347b6fb0200d9217aa7eb23674b3efa02 0 1700000000000 1 connected
bbbb7a5347b6fb0200d9217aa7eb23674b3efa02 :0@0 handshake,noaddr - 0 0 0 disconnected
";
        let lines = parse_node_lines(text).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].slots, vec![(0, 2), (10, 20)]);
        assert_eq!(lines[0].migrating[0].0, 5);
        assert_eq!(lines[1].importing[0].0, 5);
        assert_eq!(lines[2].master.as_deref(), Some(lines[0].id.as_str()));
        let t = parse_nodes(text, "10.0.0.9").unwrap();
        assert_eq!(t.masters.len(), 2);
        assert_eq!(t.masters[0].addr.to_string(), "127.0.0.1:27001");
        assert_eq!(t.masters[0].replicas[0].port, 27003);
        assert_eq!(t.uncovered(), 0);
        // A lone node that met nobody: `:port`.
        let t = parse_nodes(
            "f5f82d688623a6a999de8565438c408f6ada153f :27002 myself,master - 0 0 0 connected 0-1\n",
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(t.masters[0].addr.to_string(), "127.0.0.1:27002");
        assert_eq!(t.uncovered(), 16382);
        let e = parse_node_lines("zzz nonsense\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse_node_lines("abc 1.2.3.4:x master - 0 0 0 connected\n").is_err());
    }

    #[test]
    fn parses_cluster_slots() {
        let node = |h: &str, p: i64, id: &str| Frame::Array(vec![b(h), Frame::Integer(p), b(id)]);
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(5460),
                node("127.0.0.1", 7000, "a"),
                node("127.0.0.1", 7003, "d"),
            ]),
            Frame::Array(vec![
                Frame::Integer(5461),
                Frame::Integer(16383),
                // 3.0 sends no id; an empty host means "the address you used".
                Frame::Array(vec![b(""), Frame::Integer(7001)]),
            ]),
        ]);
        let t = parse_slots(&reply, "127.0.0.5").unwrap();
        assert_eq!(t.masters.len(), 2);
        assert_eq!(t.masters[0].addr.to_string(), "127.0.0.1:7000");
        assert_eq!(t.masters[0].id.as_deref(), Some("a"));
        assert_eq!(t.masters[0].replicas.len(), 1);
        assert_eq!(t.masters[1].addr.to_string(), "127.0.0.5:7001");
        assert_eq!(t.uncovered(), 0);
        let bad = Frame::Array(vec![Frame::Array(vec![
            Frame::Integer(0),
            Frame::Integer(99999),
            node("h", 1, "x"),
        ])]);
        assert!(parse_slots(&bad, "h").unwrap_err().contains("99999"));
    }

    #[test]
    fn parses_cluster_shards_resp2_and_resp3() {
        let node = |port: i64, role: &str, ip: &str| {
            Frame::Array(vec![
                b("id"),
                b("d70d7a5347b6fb0200d9217aa7eb23674b3efa02"),
                b("port"),
                Frame::Integer(port),
                b("ip"),
                b(ip),
                b("endpoint"),
                b(ip),
                b("role"),
                b(role),
                b("replication-offset"),
                Frame::Integer(0),
                b("health"),
                b("online"),
            ])
        };
        let reply = Frame::Array(vec![Frame::Array(vec![
            b("slots"),
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(2),
                Frame::Integer(10),
                Frame::Integer(20),
            ]),
            b("nodes"),
            Frame::Array(vec![
                node(27001, "master", ""),
                node(27004, "replica", "127.0.0.1"),
            ]),
        ])]);
        let t = parse_shards(&reply, "127.0.0.1").unwrap();
        assert_eq!(t.masters.len(), 1);
        assert_eq!(t.masters[0].slots, vec![(0, 2), (10, 20)]);
        assert_eq!(t.masters[0].addr.to_string(), "127.0.0.1:27001");
        assert_eq!(t.masters[0].replicas[0].port, 27004);
        // RESP3 maps.
        let m = Frame::Map(vec![
            (
                b("slots"),
                Frame::Array(vec![Frame::Integer(5), Frame::Integer(5)]),
            ),
            (
                b("nodes"),
                Frame::Array(vec![Frame::Map(vec![
                    (b("port"), Frame::Integer(9)),
                    (b("ip"), b("::1")),
                    (b("role"), b("master")),
                ])]),
            ),
        ]);
        let t = parse_shards(&Frame::Array(vec![m]), "x").unwrap();
        assert_eq!(t.masters[0].addr.to_string(), "[::1]:9");
        // After a crash, the failed master stays listed as a master with `health: fail`
        // (before or after the replica that took over): the healthy one serves the slots.
        for (first, second) in [(27001, 27004), (27004, 27001)] {
            let shard = |failed: i64| {
                let n = |port: i64| {
                    Frame::Map(vec![
                        (b("port"), Frame::Integer(port)),
                        (b("ip"), b("127.0.0.1")),
                        (b("role"), b("master")),
                        (
                            b("health"),
                            b(if port == failed { "fail" } else { "online" }),
                        ),
                    ])
                };
                Frame::Map(vec![
                    (
                        b("slots"),
                        Frame::Array(vec![Frame::Integer(0), Frame::Integer(9)]),
                    ),
                    (b("nodes"), Frame::Array(vec![n(first), n(second)])),
                ])
            };
            let t = parse_shards(&Frame::Array(vec![shard(27001)]), "x").unwrap();
            assert_eq!(t.masters.len(), 1);
            assert_eq!(t.masters[0].addr.port, 27004, "{first} then {second}");
        }
        // Two healthy masters: the shard does not say which serves the slots.
        let two = Frame::Map(vec![
            (
                b("slots"),
                Frame::Array(vec![Frame::Integer(0), Frame::Integer(9)]),
            ),
            (
                b("nodes"),
                Frame::Array(
                    [27001, 27004]
                        .map(|port| {
                            Frame::Map(vec![
                                (b("port"), Frame::Integer(port)),
                                (b("ip"), b("127.0.0.1")),
                                (b("role"), b("master")),
                                (b("health"), b("online")),
                            ])
                        })
                        .to_vec(),
                ),
            ),
        ]);
        let t = parse_shards(&Frame::Array(vec![two]), "x").unwrap();
        assert_eq!(t.uncovered(), SLOTS, "left to CLUSTER SLOTS");
        assert!(parse_shards(&Frame::Integer(1), "x").is_err());
    }

    #[test]
    fn redirect_addresses() {
        assert_eq!(
            NodeAddr::parse("127.0.0.1:7001"),
            Some(NodeAddr {
                host: "127.0.0.1".into(),
                port: 7001
            })
        );
        assert_eq!(NodeAddr::parse("[::1]:7001").unwrap().host, "::1");
        assert_eq!(NodeAddr::parse("nope"), None);
        let r = Redirect::parse("ASK 8860 127.0.0.1:7001").unwrap();
        assert!(r.ask && r.slot == 8860 && r.addr.port == 7001);
        assert!(!Redirect::parse("MOVED 0 [::1]:7001").unwrap().ask);
        assert_eq!(
            Redirect::parse("MOVED 16384 127.0.0.1:7001"),
            None,
            "no such slot"
        );
        assert_eq!(Redirect::parse("CLUSTERDOWN 1 127.0.0.1:7001"), None);
        assert_eq!(Redirect::parse("ASK 1"), None);
    }
}
