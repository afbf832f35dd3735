//! `/status` (JSON), `/healthz` and `/metrics` over HTTP.
//!
//! The sync loop owns a [`Status`] and updates it as it goes; the HTTP server only reads
//! a snapshot of it, so a slow client can never slow the sync down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Handshake,
    Snapshot,
    Stream,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SnapshotStatus {
    /// RDB size when the source announced it (disk framing); null for diskless transfers.
    pub bytes_total: Option<u64>,
    pub bytes_read: u64,
    pub keys: u64,
    pub keys_skipped_expired: u64,
    pub seconds: f64,
    pub done: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct StreamStatus {
    /// Master offset of the last byte received from the source.
    pub received_offset: u64,
    /// Master offset up to which the target has acknowledged everything.
    pub applied_offset: u64,
    pub lag_bytes: u64,
    pub commands: u64,
}

/// What `/status` shows. Field names are part of the operator's interface (DESIGN.md).
#[derive(Debug, Clone, Serialize, Default)]
pub struct StatusData {
    pub phase: Phase,
    /// Snapshot applied, nothing in flight, applied offset == received offset.
    pub consistent: bool,
    pub source: String,
    pub target: String,
    pub replid: Option<String>,
    pub snapshot: SnapshotStatus,
    pub stream: StreamStatus,
    pub in_flight: u64,
    pub spool_bytes: u64,
    pub reconnects: u64,
    pub errors: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// One entry per source shard for a cluster source (empty otherwise).
    pub shards: Vec<StatusData>,
    pub uptime_seconds: f64,
    /// The ferry process (`ferry cutover` stops the forward sync with SIGTERM to it).
    pub pid: u32,
}

/// Shared, cheaply updatable status.
#[derive(Debug)]
pub struct Status {
    data: Mutex<StatusData>,
    started: Instant,
}

impl Status {
    pub fn new(source: String, target: String) -> Arc<Status> {
        Arc::new(Status {
            data: Mutex::new(StatusData {
                source,
                target,
                pid: std::process::id(),
                ..Default::default()
            }),
            started: Instant::now(),
        })
    }

    /// Changes the status under its lock.
    pub fn update(&self, f: impl FnOnce(&mut StatusData)) {
        let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut d);
    }

    pub fn snapshot(&self) -> StatusData {
        let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner()).clone();
        d.uptime_seconds = self.started.elapsed().as_secs_f64();
        d
    }
}

/// Serves the endpoints on `addr` until the task is dropped. Returns the bound address
/// (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    status: Arc<Status>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let status = status.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req| {
                    let status = status.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &status)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn respond<B>(req: &Request<B>, status: &Status) -> Response<Full<Bytes>> {
    let reply = |code: u16, ctype: &str, body: Vec<u8>| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    match req.uri().path() {
        "/status" => {
            let body = serde_json::to_vec_pretty(&status.snapshot()).unwrap_or_default();
            reply(200, "application/json", body)
        }
        "/healthz" => {
            let s = status.snapshot();
            if s.phase == Phase::Stopped {
                reply(503, "text/plain", b"stopped\n".to_vec())
            } else {
                reply(200, "text/plain", b"ok\n".to_vec())
            }
        }
        _ => reply(
            404,
            "text/plain",
            b"not found: try /status or /healthz\n".to_vec(),
        ),
    }
}
