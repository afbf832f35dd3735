//! A Redis Cluster of N masters (no replicas) made of real servers, for tests.
//!
//! Each master is a [`Server`] started with `cluster-enabled yes`; the slots are split
//! evenly (`CLUSTER ADDSLOTS`, which every version from 3.0 has), the nodes are introduced
//! with `CLUSTER MEET`, and [`Cluster::start`] returns once every node reports
//! `cluster_state:ok` and sees all masters. Keys are routed by the harness's own CRC16, not
//! ferry's.

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::client::Client;
use super::server::Server;
use super::servers::ServerSpec;

const SLOTS: u16 = 16384;
/// How long the nodes get to agree on the topology.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// The first slot of each node's range (node i serves `starts[i]..starts[i+1]`).
    starts: Vec<u16>,
}

impl Cluster {
    pub fn start(spec: &ServerSpec, masters: usize) -> Cluster {
        assert!(masters >= 1, "a cluster needs at least one master");
        let nodes: Vec<Server> = (0..masters)
            .map(|_| {
                Server::start(
                    spec,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ],
                )
            })
            .collect();
        let starts: Vec<u16> = (0..masters)
            .map(|i| (i * SLOTS as usize / masters) as u16)
            .collect();
        for (i, node) in nodes.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(SLOTS);
            let mut args: Vec<String> = vec!["CLUSTER".into(), "ADDSLOTS".into()];
            args.extend((starts[i]..end).map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node.client().ok(&args);
        }
        let first_port = nodes[0].port().to_string();
        for node in &nodes[1..] {
            node.client()
                .ok(&["CLUSTER", "MEET", "127.0.0.1", &first_port]);
        }
        let cluster = Cluster { nodes, starts };
        cluster.wait_ok(masters);
        cluster
    }

    /// Waits until every node says `cluster_state:ok` and knows every master.
    fn wait_ok(&self, masters: usize) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let ready = self.nodes.iter().all(|n| {
                let mut c = n.client();
                let ok = c.info("cluster").get("cluster_enabled").map(String::as_str) == Some("1")
                    && c.ok(&["CLUSTER", "INFO"])
                        .as_text()
                        .is_some_and(|t| t.contains("cluster_state:ok"));
                let known = c
                    .ok(&["CLUSTER", "NODES"])
                    .as_text()
                    .map(|t| {
                        t.lines()
                            .filter(|l| l.contains("master") && l.contains("connected"))
                            .count()
                    })
                    .unwrap_or(0);
                ok && known == masters
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {CONVERGE_TIMEOUT:?}:\n{}",
                self.nodes[0].log_tail(20)
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// `redis://` URL of the first node (any node serves as an entry point).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The index of the node serving `key`.
    pub fn node_for(&self, key: &[u8]) -> usize {
        let slot = key_slot(key);
        self.starts.iter().rposition(|&s| s <= slot).unwrap_or(0)
    }

    /// A connection to the node serving `key`.
    pub fn client_for(&self, key: &[u8]) -> Client {
        self.nodes[self.node_for(key)].client()
    }
}

/// The cluster slot of a key (CRC16/XMODEM of the key or of its non-empty `{hash tag}`).
pub fn key_slot(key: &[u8]) -> u16 {
    let mut k = key;
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(close) = key[open + 1..].iter().position(|&b| b == b'}') {
            if close > 0 {
                k = &key[open + 1..open + 1 + close];
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
    crc % SLOTS
}
