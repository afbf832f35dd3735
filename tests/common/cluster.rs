//! A real Redis/Valkey cluster for one test, and a small cluster-aware client of the
//! harness's own (slot hashing, the slot map and MOVED/ASK handling written here, sharing
//! nothing with ferry).
//!
//! [`Cluster::start`] starts `masters` servers (and `replicas` per master) with
//! `cluster-enabled yes` on free loopback ports, gives each master an equal share of the
//! 16384 slots (ADDSLOTSRANGE on 7.0+, ADDSLOTS before), joins them with CLUSTER MEET,
//! attaches the replicas (CLUSTER REPLICATE) and waits until every node says
//! `cluster_state:ok` and knows every other. Every server is stopped on drop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::client::{Client, Reply};
use super::dataset::{read_back, Model};
use super::server::Server;
use super::servers::ServerSpec;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub spec: ServerSpec,
    /// Masters first (in slot order at start), then replicas.
    pub nodes: Vec<Server>,
    pub masters: usize,
    /// Ports of nodes crashed by the test ([`Cluster::crash`]).
    pub down: std::sync::Mutex<std::collections::BTreeSet<u16>>,
}

/// CRC16/XMODEM, bit by bit (the spec's reference algorithm), and the hash-tag rule.
pub fn slot_of(key: &[u8]) -> u16 {
    let mut k = key;
    if let Some(s) = key.iter().position(|&c| c == b'{') {
        if let Some(len) = key[s + 1..].iter().position(|&c| c == b'}') {
            if len > 0 {
                k = &key[s + 1..s + 1 + len];
            }
        }
    }
    let mut crc: u16 = 0;
    for &b in k {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 16383
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    use std::net::TcpListener;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| {
            d.subsec_nanos() as u64 ^ u64::from(std::process::id())
        });
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + ((seed >> 33) % 25000) as u16;
        let a = TcpListener::bind(("127.0.0.1", port));
        let b = TcpListener::bind(("127.0.0.1", port + 10000));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > READY_TIMEOUT {
            panic!("cluster: {what} not reached within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    pub fn start(spec: &ServerSpec, masters: usize, replicas: usize) -> Cluster {
        let total = masters * (1 + replicas);
        let nodes: Vec<Server> = (0..total)
            .map(|_| {
                Server::start_with_port(
                    spec,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "3000",
                    ],
                    cluster_port,
                )
            })
            .collect();
        let c = Cluster {
            spec: spec.clone(),
            nodes,
            masters,
            down: Default::default(),
        };
        // Distinct config epochs from the start, as `redis-cli --cluster create` sets them.
        // Left to the collision resolution, a replica can keep its master's epoch; when
        // that is the highest, `CLUSTER FAILOVER TAKEOVER` on it bumps nothing, and its
        // claim on the slots (an epoch not above the master's) is refused by every node.
        for (i, n) in c.nodes.iter().enumerate() {
            n.client()
                .ok(&["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]);
        }
        for i in 0..masters {
            let (a, b) = (i * 16384 / masters, (i + 1) * 16384 / masters - 1);
            let mut cl = c.nodes[i].client();
            if spec.is_7_0_plus() {
                cl.ok(&["CLUSTER", "ADDSLOTSRANGE", &a.to_string(), &b.to_string()]);
            } else {
                let slots: Vec<String> = (a..=b).map(|s| s.to_string()).collect();
                for chunk in slots.chunks(1000) {
                    let mut args = vec!["CLUSTER", "ADDSLOTS"];
                    args.extend(chunk.iter().map(String::as_str));
                    cl.ok(&args);
                }
            }
        }
        let first = c.nodes[0].port().to_string();
        for n in &c.nodes[1..] {
            n.client().ok(&["CLUSTER", "MEET", "127.0.0.1", &first]);
        }
        wait_until("every node knows every node", || {
            c.nodes.iter().all(|n| {
                let text = n
                    .client()
                    .cmd_str(&["CLUSTER", "NODES"])
                    .as_text()
                    .unwrap_or_default();
                text.lines()
                    .filter(|l| !l.contains("handshake") && !l.trim().is_empty())
                    .count()
                    == total
            })
        });
        for r in 0..masters * replicas {
            let master = r % masters;
            let id = c.node_id(master);
            let node = &c.nodes[masters + r];
            wait_until("the replica sees its master", || {
                node.client()
                    .cmd_str(&["CLUSTER", "REPLICATE", &id])
                    .as_text()
                    .is_some()
            });
        }
        c.wait_ok();
        c
    }

    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i]
            .client()
            .cmd_str(&["CLUSTER", "MYID"])
            .as_text()
            .unwrap_or_else(|| {
                // 3.x has no CLUSTER MYID: the `myself` line of CLUSTER NODES.
                let t = self.nodes[i]
                    .client()
                    .cmd_str(&["CLUSTER", "NODES"])
                    .as_text()
                    .unwrap_or_default();
                t.lines()
                    .find(|l| l.contains("myself"))
                    .and_then(|l| l.split(' ').next())
                    .unwrap_or_default()
                    .to_string()
            })
    }

    /// Waits until every node says `cluster_state:ok`, every replica is in sync and every
    /// node's view of the masters agrees.
    /// Kills a node with SIGKILL (a crash); the harness then leaves it out.
    pub fn crash(&self, port: u16) {
        let n = self
            .nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("a node");
        let _ = std::process::Command::new("kill")
            .args(["-9", &n.pid().to_string()])
            .status();
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port);
    }

    /// The nodes not crashed.
    pub fn alive(&self) -> impl Iterator<Item = &Server> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.nodes.iter().filter(move |n| !down.contains(&n.port()))
    }

    fn seed(&self) -> &Server {
        self.alive().next().expect("a live node")
    }

    pub fn wait_ok(&self) {
        wait_until("cluster_state:ok on every node", || {
            self.alive().all(|n| {
                let text = n
                    .client()
                    .cmd_str(&["CLUSTER", "INFO"])
                    .as_text()
                    .unwrap_or_default();
                text.lines().any(|l| l.trim() == "cluster_state:ok")
            })
        });
        wait_until("replicas linked", || {
            self.alive().all(|n| {
                let r = n.client().info("replication");
                r.get("role").map(String::as_str) != Some("slave")
                    || r.get("master_link_status").map(String::as_str) == Some("up")
            })
        });
        wait_until("one slot map on every node", || {
            let maps: Vec<_> = self.alive().map(|n| slot_owners(&mut n.client())).collect();
            maps.windows(2).all(|w| w[0] == w[1]) && maps[0].len() == 16384
        });
    }

    /// The URL of the first node (the seed given to ferry).
    pub fn url(&self) -> String {
        self.seed().url()
    }

    /// The servers that are masters now.
    pub fn current_masters(&self) -> Vec<&Server> {
        self.alive()
            .filter(|n| {
                n.client()
                    .info("replication")
                    .get("role")
                    .map(String::as_str)
                    == Some("master")
            })
            .collect()
    }

    /// The server that owns `slot` now.
    pub fn owner(&self, slot: u16) -> &Server {
        let owners = slot_owners(&mut self.seed().client());
        let port = owners[&slot];
        self.alive()
            .find(|n| n.port() == port)
            .expect("owner is one of ours")
    }

    /// For each slot, the index in `nodes` of the master serving it now (a snapshot).
    pub fn slot_nodes(&self) -> Vec<usize> {
        let owners = slot_owners(&mut self.seed().client());
        (0..16384u16)
            .map(|slot| {
                let port = owners.get(&slot).copied().unwrap_or(0);
                self.nodes
                    .iter()
                    .position(|n| {
                        n.port() == port
                            && !self
                                .down
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .contains(&port)
                    })
                    .unwrap_or(0)
            })
            .collect()
    }

    /// A client that follows the cluster.
    pub fn client(&self) -> ClusterClient {
        ClusterClient {
            seed: self.seed().port(),
            conns: BTreeMap::new(),
            owners: BTreeMap::new(),
        }
    }

    /// Every key of every master, read by the harness (db 0).
    pub fn read_back(&self) -> Model {
        let mut model = Model::default();
        for (i, m) in self.current_masters().into_iter().enumerate() {
            let part = read_back(&mut m.client(), &self.spec, &[0]);
            model.keys.extend(part.keys);
            // Functions live on every master: they must be the same everywhere.
            if i > 0 {
                assert_eq!(
                    model.functions,
                    part.functions,
                    "functions differ on {}",
                    m.port()
                );
            }
            model.functions = part.functions;
        }
        model
    }

    /// Keys per master (to show that the data is spread).
    pub fn key_counts(&self) -> Vec<i64> {
        self.current_masters()
            .iter()
            .map(|m| m.client().cmd_str(&["DBSIZE"]).as_int().unwrap_or(-1))
            .collect()
    }
}

/// slot → port of its master, from CLUSTER SLOTS.
pub fn slot_owners(c: &mut Client) -> BTreeMap<u16, u16> {
    let mut out = BTreeMap::new();
    let reply = c.cmd_str(&["CLUSTER", "SLOTS"]);
    for r in reply.as_array().unwrap_or_default() {
        let Some(items) = r.as_array() else { continue };
        let (Some(a), Some(b)) = (items[0].as_int(), items[1].as_int()) else {
            continue;
        };
        let port = items[2].as_array().and_then(|n| n[1].as_int()).unwrap_or(0) as u16;
        for s in a..=b {
            out.insert(s as u16, port);
        }
    }
    out
}

/// Routes each command by the slot of its first key (given by the caller), following
/// MOVED and ASK.
pub struct ClusterClient {
    seed: u16,
    conns: BTreeMap<u16, Client>,
    owners: BTreeMap<u16, u16>,
}

impl ClusterClient {
    fn conn(&mut self, port: u16) -> &mut Client {
        self.conns
            .entry(port)
            .or_insert_with(|| Client::connect(format!("127.0.0.1:{port}").parse().expect("addr")))
    }

    /// Sends `args` to the owner of `key`'s slot (following redirects).
    pub fn cmd_key(&mut self, key: &[u8], args: &[&[u8]]) -> Reply {
        if self.owners.is_empty() {
            let seed = self.seed;
            self.owners = slot_owners(self.conn(seed));
        }
        let slot = slot_of(key);
        let mut port = self.owners.get(&slot).copied().unwrap_or(self.seed);
        let mut asking = false;
        for _ in 0..20 {
            let c = self.conn(port);
            if asking {
                c.cmd(&[b"ASKING"]);
            }
            let r = c.cmd(args);
            let text = match &r {
                Reply::Error(e) => e.clone(),
                _ => return r,
            };
            let mut w = text.split(' ');
            match (w.next(), w.nth(1)) {
                (Some("MOVED"), Some(addr)) => {
                    port = addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(port);
                    self.owners.insert(slot, port);
                    asking = false;
                }
                (Some("ASK"), Some(addr)) => {
                    port = addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(port);
                    asking = true;
                }
                (Some("TRYAGAIN" | "CLUSTERDOWN"), _) => {
                    std::thread::sleep(Duration::from_millis(100));
                    let seed = self.seed;
                    self.owners = slot_owners(self.conn(seed));
                    port = self.owners.get(&slot).copied().unwrap_or(port);
                }
                _ => return r,
            }
        }
        panic!(
            "cluster client: too many redirects for {}",
            String::from_utf8_lossy(key)
        );
    }

    pub fn cmd_str(&mut self, args: &[&str]) -> Reply {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_key(a[1], &a)
    }
}
