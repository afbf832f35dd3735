//! `/status` (JSON), `/healthz` and `/metrics` over HTTP.
//!
//! The sync loop owns a [`Status`] and updates it as it goes; the HTTP server only reads
//! a snapshot of it, so a slow client can never slow the sync down. `/metrics` is made
//! from the same snapshot at scrape time: the figures are set on the `metrics` crate's
//! gauges and counters, and `metrics-exporter-prometheus` renders them, so the two pages
//! can never disagree and the sync's hot paths carry no metrics calls.
//!
//! `/healthz` answers 503 when the sync stopped, when the source link has been down for
//! longer than `[status] healthz_timeout`, or when the target has made no progress for
//! that long (the sync loop blocked on it, or commands in flight and none acknowledged).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
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
    /// Seconds between a heartbeat's write on the source and its application on the
    /// target (null unless `[sync] heartbeat_interval` is set and one has arrived). While
    /// no newer heartbeat arrives, it grows with the time since the last one was due.
    pub lag_seconds: Option<f64>,
    /// Commands forwarded from the replication stream.
    pub commands: u64,
}

/// Seconds spent in each phase (the current one included).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Timings {
    pub handshake_seconds: f64,
    pub snapshot_seconds: f64,
    pub stream_seconds: f64,
}

/// What the writer sent to the target.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Written {
    /// Keys written from snapshots (all full resyncs together).
    pub keys: u64,
    /// Commands sent (resends and the writer's own SELECTs included).
    pub commands: u64,
    pub bytes: u64,
}

/// The disk spool behind the replica link.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SpoolStatus {
    /// Source bytes queued for the target (RAM and disk).
    pub bytes: u64,
    /// Of which on disk.
    pub disk_bytes: u64,
    /// `[sync] spool_cap`.
    pub cap: u64,
}

/// What `/healthz` decides from.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Health {
    pub ok: bool,
    pub source_link_up: bool,
    pub target_up: bool,
    /// Why not ok.
    pub reason: Option<String>,
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
    /// Error replies from the target per class (`WRONGTYPE`, `BUSYKEY`, `OOM`, …).
    pub errors: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// One entry per source shard for a cluster source (empty otherwise).
    pub shards: Vec<StatusData>,
    pub uptime_seconds: f64,
    /// The ferry process (`ferry cutover` stops the forward sync with SIGTERM to it).
    pub pid: u32,
    pub timings: Timings,
    pub written: Written,
    pub spool: SpoolStatus,
    pub health: Health,
    /// When the current phase started (for `timings`).
    #[serde(skip)]
    pub phase_since: Option<Instant>,
    /// When the source link was first seen down (reset once it is back).
    #[serde(skip)]
    pub source_down_since: Option<Instant>,
    /// When the target last made progress (acknowledged something, or had nothing to do).
    #[serde(skip)]
    pub target_progress_at: Option<Instant>,
    /// `[status] healthz_timeout`.
    #[serde(skip)]
    pub healthz_timeout: Option<Duration>,
}

impl StatusData {
    /// Moves to `phase`, adding the time spent in the previous one to `timings`.
    pub fn set_phase(&mut self, phase: Phase) {
        let now = Instant::now();
        if let Some(since) = self.phase_since {
            *self.timing_mut(self.phase) += (now - since).as_secs_f64();
        }
        self.phase = phase;
        self.phase_since = Some(now);
    }

    fn timing_mut(&mut self, phase: Phase) -> &mut f64 {
        match phase {
            Phase::Handshake => &mut self.timings.handshake_seconds,
            Phase::Snapshot => &mut self.timings.snapshot_seconds,
            Phase::Stream | Phase::Stopped => &mut self.timings.stream_seconds,
        }
    }

    /// Fills `health` from the times recorded.
    fn judge_health(&mut self, now: Instant) {
        let timeout = self.healthz_timeout.unwrap_or(Duration::from_secs(30));
        let source_down = self.source_down_since.map(|t| now - t);
        let target_silent = self.target_progress_at.map(|t| now - t);
        self.health.source_link_up = source_down.is_none();
        self.health.target_up = target_silent.is_none_or(|d| d < timeout);
        self.health.reason = if self.phase == Phase::Stopped {
            Some("the sync has stopped".into())
        } else if let Some(d) = source_down.filter(|d| *d >= timeout) {
            Some(format!(
                "the source link has been down for {:.0} s",
                d.as_secs_f64()
            ))
        } else {
            target_silent.filter(|d| *d >= timeout).map(|d| {
                format!(
                    "the target has made no progress for {:.0} s",
                    d.as_secs_f64()
                )
            })
        };
        self.health.ok = self.health.reason.is_none();
    }
}

/// Shared, cheaply updatable status.
#[derive(Debug)]
pub struct Status {
    data: Mutex<StatusData>,
    started: Instant,
    /// The keys the stream wrote lately (`/recent-keys`).
    pub recent: Mutex<crate::recent::RecentKeys>,
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
            recent: Mutex::new(Default::default()),
        })
    }

    /// Changes the status under its lock.
    pub fn update(&self, f: impl FnOnce(&mut StatusData)) {
        let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut d);
    }

    pub fn snapshot(&self) -> StatusData {
        let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let now = Instant::now();
        d.uptime_seconds = self.started.elapsed().as_secs_f64();
        if let Some(since) = d.phase_since {
            if d.phase != Phase::Stopped {
                *d.timing_mut(d.phase) += (now - since).as_secs_f64();
            }
        }
        d.judge_health(now);
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
            match s.health.reason {
                None => reply(200, "text/plain", b"ok\n".to_vec()),
                Some(r) => reply(503, "text/plain", format!("{r}\n").into_bytes()),
            }
        }
        "/metrics" => match render_metrics(&status.snapshot()) {
            Some(text) => reply(200, "text/plain; version=0.0.4", text.into_bytes()),
            None => reply(
                500,
                "text/plain",
                b"another metrics recorder is installed in this process\n".to_vec(),
            ),
        },
        "/recent-keys" => {
            // ?seconds=N (default 300): the keys the stream wrote in the last N seconds.
            let seconds: i64 = req
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("seconds="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(300);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let since = now - seconds.saturating_mul(1000);
            let v = status
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .since_json(since);
            reply(
                200,
                "application/json",
                serde_json::to_vec(&v).unwrap_or_default(),
            )
        }
        _ => reply(
            404,
            "text/plain",
            b"not found: try /status, /metrics or /healthz\n".to_vec(),
        ),
    }
}

/// Every metric `/metrics` exports, with its help text (the README lists them from here).
pub const METRICS: &[(&str, &str)] = &[
    (
        "ferry_phase",
        "1 for the current phase (label phase: handshake, snapshot, stream, stopped)",
    ),
    (
        "ferry_phase_seconds",
        "seconds spent in each phase (label phase)",
    ),
    (
        "ferry_consistent",
        "1 when the snapshot is applied, nothing is in flight and applied == received",
    ),
    ("ferry_healthy", "1 when /healthz answers 200"),
    (
        "ferry_source_link_up",
        "1 while the replica link to the source is connected",
    ),
    (
        "ferry_snapshot_bytes_read",
        "bytes of the current snapshot received",
    ),
    (
        "ferry_snapshot_bytes_total",
        "size of the current snapshot, when the source announced it",
    ),
    (
        "ferry_snapshot_keys_applied",
        "keys of the current snapshot decoded and sent to the target",
    ),
    (
        "ferry_keys_written_total",
        "keys written from snapshots, all full resyncs together",
    ),
    (
        "ferry_stream_commands_forwarded_total",
        "commands forwarded from the replication stream",
    ),
    (
        "ferry_received_offset",
        "source replication offset received",
    ),
    (
        "ferry_applied_offset",
        "source replication offset the target has applied",
    ),
    ("ferry_lag_bytes", "received minus applied offset"),
    (
        "ferry_lag_seconds",
        "heartbeat lag: time from the write on the source to its application on the target",
    ),
    (
        "ferry_in_flight_commands",
        "commands sent to the target and not yet answered",
    ),
    ("ferry_target_commands_total", "commands sent to the target"),
    ("ferry_target_bytes_total", "bytes sent to the target"),
    (
        "ferry_errors_total",
        "error replies from the target (label class)",
    ),
    (
        "ferry_spool_bytes",
        "source bytes queued for the target, RAM and disk",
    ),
    ("ferry_spool_disk_bytes", "source bytes queued on disk"),
    ("ferry_spool_cap_bytes", "the disk spool's cap"),
    (
        "ferry_reconnects_total",
        "times the replica link dropped and reconnected",
    ),
    ("ferry_uptime_seconds", "seconds since ferry started"),
];

/// The process-wide Prometheus recorder, installed on first use.
fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            for (name, help) in METRICS {
                metrics::describe_gauge!(*name, *help);
            }
            Some(handle)
        })
        .as_ref()
}

/// Sets every metric from a status snapshot and renders the Prometheus text.
pub fn render_metrics(s: &StatusData) -> Option<String> {
    use metrics::{counter, gauge};
    let handle = metrics_handle()?;
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    for (p, name) in [
        (Phase::Handshake, "handshake"),
        (Phase::Snapshot, "snapshot"),
        (Phase::Stream, "stream"),
        (Phase::Stopped, "stopped"),
    ] {
        gauge!("ferry_phase", "phase" => name).set(b(s.phase == p));
    }
    for (name, v) in [
        ("handshake", s.timings.handshake_seconds),
        ("snapshot", s.timings.snapshot_seconds),
        ("stream", s.timings.stream_seconds),
    ] {
        gauge!("ferry_phase_seconds", "phase" => name).set(v);
    }
    gauge!("ferry_consistent").set(b(s.consistent));
    gauge!("ferry_healthy").set(b(s.health.ok));
    gauge!("ferry_source_link_up").set(b(s.health.source_link_up));
    gauge!("ferry_snapshot_bytes_read").set(s.snapshot.bytes_read as f64);
    if let Some(t) = s.snapshot.bytes_total {
        gauge!("ferry_snapshot_bytes_total").set(t as f64);
    }
    gauge!("ferry_snapshot_keys_applied").set(s.snapshot.keys as f64);
    counter!("ferry_keys_written_total").absolute(s.written.keys);
    counter!("ferry_stream_commands_forwarded_total").absolute(s.stream.commands);
    gauge!("ferry_received_offset").set(s.stream.received_offset as f64);
    gauge!("ferry_applied_offset").set(s.stream.applied_offset as f64);
    gauge!("ferry_lag_bytes").set(s.stream.lag_bytes as f64);
    if let Some(l) = s.stream.lag_seconds {
        gauge!("ferry_lag_seconds").set(l);
    }
    gauge!("ferry_in_flight_commands").set(s.in_flight as f64);
    counter!("ferry_target_commands_total").absolute(s.written.commands);
    counter!("ferry_target_bytes_total").absolute(s.written.bytes);
    for (class, n) in &s.errors {
        counter!("ferry_errors_total", "class" => class.clone()).absolute(*n);
    }
    gauge!("ferry_spool_bytes").set(s.spool.bytes as f64);
    gauge!("ferry_spool_disk_bytes").set(s.spool.disk_bytes as f64);
    gauge!("ferry_spool_cap_bytes").set(s.spool.cap as f64);
    counter!("ferry_reconnects_total").absolute(s.reconnects);
    gauge!("ferry_uptime_seconds").set(s.uptime_seconds);
    Some(handle.render())
}

/// `GET /healthz` on a running ferry (std only, 5 s timeout): Ok on 200, else why not.
pub fn probe(addr: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(5);
    let sock: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s =
        std::net::TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    match text.split(' ').nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{addr}/healthz: {code} {body}")),
        None => Err(format!("{addr}/healthz: not an HTTP reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_turns_red_after_the_timeout_and_names_the_side() {
        let mut d = StatusData {
            healthz_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        d.set_phase(Phase::Stream);
        let now = Instant::now();
        d.target_progress_at = Some(now);
        d.judge_health(now);
        assert!(d.health.ok && d.health.source_link_up && d.health.target_up);
        // Down for less than the timeout: reported down, still healthy.
        d.source_down_since = Some(now);
        d.judge_health(now + Duration::from_secs(1));
        assert!(d.health.ok && !d.health.source_link_up);
        d.judge_health(now + Duration::from_secs(6));
        assert!(!d.health.ok);
        assert!(d.health.reason.as_deref().unwrap().contains("source link"));
        d.source_down_since = None;
        d.judge_health(now + Duration::from_secs(6));
        assert!(!d.health.ok && !d.health.target_up);
        assert!(d.health.reason.as_deref().unwrap().contains("target"));
        d.target_progress_at = Some(now + Duration::from_secs(6));
        d.judge_health(now + Duration::from_secs(6));
        assert!(d.health.ok);
        d.set_phase(Phase::Stopped);
        d.judge_health(now + Duration::from_secs(6));
        assert_eq!(d.health.reason.as_deref(), Some("the sync has stopped"));
    }

    #[test]
    fn phase_timings_add_up_per_phase() {
        let mut d = StatusData::default();
        d.set_phase(Phase::Handshake);
        d.phase_since = d.phase_since.map(|t| t - Duration::from_secs(2));
        d.set_phase(Phase::Snapshot);
        assert!(d.timings.handshake_seconds >= 2.0);
        assert_eq!(d.timings.snapshot_seconds, 0.0);
        d.phase_since = d.phase_since.map(|t| t - Duration::from_secs(3));
        d.set_phase(Phase::Stream);
        assert!(d.timings.snapshot_seconds >= 3.0);
    }
}
