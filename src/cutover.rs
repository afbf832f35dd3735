//! `ferry cutover --config FILE`: the switch from blue (the forward sync's source) to green
//! (its target) as one supervised step.
//!
//! 1. **Check** the forward sync (its `/status`, from the file's `[status] listen`): in the
//!    stream phase, snapshot applied, lag under `--max-lag-bytes`; blue answers; green can
//!    stream back without a full copy (Redis 7.0+ or Valkey).
//! 2. **Pause writes on blue**: `CLIENT PAUSE <ms> WRITE` (Redis 6.2+, Valkey), with a
//!    timeout so that blue unpauses by itself if this process dies; on older servers the
//!    operator stops the writers and confirms (typing `stopped` at the prompt on a
//!    terminal, or `--writers-stopped`).
//! 3. **Wait** until green has applied blue's final `master_repl_offset`.
//! 4. **Verify** blue against green with the verifier (outline by default: type, length
//!    and expiry of every key, both ways; values too with `--full-verify`), several rounds
//!    so that writes still in flight settle.
//! 5. **Stop the forward sync** (SIGTERM to the pid its `/status` names; it drains and
//!    exits 0).
//! 6. **Start the reverse sync** (green → blue, stream mode: an empty snapshot, then
//!    green's live stream) in this process.
//! 7. **Unpause blue**, and print what the operator does next.
//!
//! Any failure before step 5 unpauses blue and leaves the forward sync running. This
//! process then runs the reverse sync until SIGINT/SIGTERM, so that blue keeps receiving
//! green's writes for a rollback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin;
use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::status::{Phase, Status};
use crate::sync::SyncOptions;
use crate::target::ServerInfo;

/// Settings of a cutover.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The forward sync's config (blue is its source, green its target).
    pub config: Config,
    pub max_lag_bytes: u64,
    /// How long green may take to apply blue's final offset.
    pub catch_up_timeout: Duration,
    /// The `CLIENT PAUSE` timeout: blue unpauses by itself after it.
    pub pause_timeout: Duration,
    pub full_verify: bool,
    pub skip_verify: bool,
    /// Without `full_verify`: the keys the forward sync wrote in this last stretch are
    /// compared in full (from its `/recent-keys`).
    pub verify_window: Duration,
    pub verify_rounds: u32,
    /// Blue has no `CLIENT PAUSE WRITE`; the operator has stopped its writers.
    pub writers_stopped: bool,
    /// Where the reverse sync serves `/status`.
    pub reverse_status: Option<SocketAddr>,
}

/// The figures of a cutover that went through.
#[derive(Debug, Clone)]
pub struct CutoverReport {
    pub final_offset: u64,
    pub paused_for: Duration,
    pub elapsed: Duration,
}

const STEPS: usize = 7;
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

fn step(n: usize, what: &str) {
    info!("cutover step {n}/{STEPS}: {what}");
}

/// `/status` of a ferry process.
pub async fn fetch_status(addr: SocketAddr) -> Result<serde_json::Value, String> {
    fetch_json(addr, "/status").await
}

/// A JSON endpoint of a ferry process.
pub async fn fetch_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "ferry")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{addr}: {path} is not JSON: {e}"))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{addr}: {path} did not answer"))?
}

async fn server_info(ep: &Endpoint) -> Result<ServerInfo, String> {
    let text = admin::info_section(ep, "server", ADMIN_TIMEOUT).await?;
    ServerInfo::from_info(&text)
        .ok_or_else(|| format!("{}: INFO server names no version", ep.addr()))
}

/// Blue, paused or not; undone on every abort.
struct Blue {
    ep: Endpoint,
    paused_at: Option<Instant>,
}

impl Blue {
    async fn unpause(&mut self) -> Result<(), String> {
        if self.paused_at.take().is_some() {
            admin::command(&self.ep, &[b"CLIENT", b"UNPAUSE"], ADMIN_TIMEOUT).await?;
            info!(blue = %self.ep, "blue unpaused");
        }
        Ok(())
    }
}

/// Runs the cutover; on success keeps running the reverse sync until `shutdown`.
pub async fn run(
    opts: CutoverOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<CutoverReport, String> {
    let started = Instant::now();
    let forward = SyncOptions::from_config(&opts.config)?;
    // A URL listing several cluster nodes: the first that answers, on both sides.
    let reach = forward.replica.connect_timeout;
    let blue_ep = forward.replica.endpoint.first_reachable(reach).await;
    let green_ep = forward.writer.endpoint.first_reachable(reach).await;
    let status_addr: SocketAddr = opts
        .config
        .status
        .listen
        .as_deref()
        .ok_or("cutover reads the forward sync's /status: set [status] listen in the config")?
        .parse()
        .map_err(|e| format!("[status] listen: {e}"))?;

    step(1, "checking the forward sync, blue and green");
    let s = fetch_status(status_addr).await.map_err(|e| {
        format!("the forward sync's status: {e} (is `ferry sync` running with this config?)")
    })?;
    if s["phase"] != "stream" || s["snapshot"]["done"] != true {
        return Err(format!(
            "the forward sync is not streaming yet (phase {}): wait until its snapshot is applied",
            s["phase"]
        ));
    }
    let lag = s["stream"]["lag_bytes"].as_u64().unwrap_or(u64::MAX);
    if lag > opts.max_lag_bytes {
        return Err(format!(
            "the forward sync lags {lag} bytes behind blue (limit --max-lag-bytes {})",
            opts.max_lag_bytes
        ));
    }
    let forward_pid = s["pid"]
        .as_u64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or("the forward sync's /status has no pid (a ferry older than this one?)")?;
    let blue_info = server_info(&blue_ep).await?;
    let green_info = server_info(&green_ep).await?;
    if !(green_info.valkey || green_info.redis_at_least(7, 0)) {
        return Err(format!(
            "green ({}) cannot stream back without a full copy (REPLCONF rdb-filter-only needs \
             Redis 7.0+ or Valkey): switch by hand and use `ferry reverse --mode full` for a rollback",
            green_info.name()
        ));
    }
    info!(
        blue = %blue_ep, blue_version = %blue_info.name(),
        green = %green_ep, green_version = %green_info.name(),
        lag_bytes = lag, "forward sync streaming"
    );

    step(2, "pausing writes on blue");
    let mut blue = Blue {
        ep: blue_ep.clone(),
        paused_at: None,
    };
    if blue_info.redis_at_least(6, 2) {
        let ms = opts.pause_timeout.as_millis().to_string();
        admin::command(
            &blue_ep,
            &[b"CLIENT", b"PAUSE", ms.as_bytes(), b"WRITE"],
            ADMIN_TIMEOUT,
        )
        .await?;
        blue.paused_at = Some(Instant::now());
        info!(
            "blue paused for writes (CLIENT PAUSE {} ms WRITE; it unpauses by itself after that)",
            ms
        );
    } else if opts.writers_stopped || confirm_writers_stopped(&blue_info.name()).await {
        info!(
            "blue ({}) has no CLIENT PAUSE WRITE: the operator says its writers are stopped",
            blue_info.name()
        );
    } else {
        return Err(format!(
            "blue ({}) has no CLIENT PAUSE WRITE: stop the application's writes to it, then run \
             the cutover again with --writers-stopped",
            blue_info.name()
        ));
    }

    // From here on, any failure unpauses blue and leaves the forward sync running.
    let checked = async {
        step(3, "waiting until green has applied blue's final offset");
        let final_offset = admin::repl_offset(&blue_ep, ADMIN_TIMEOUT).await?;
        let t0 = Instant::now();
        loop {
            let s = fetch_status(status_addr).await?;
            let applied = s["stream"]["applied_offset"].as_u64().unwrap_or(0);
            if applied >= final_offset && s["consistent"] == true {
                info!(
                    final_offset,
                    waited_ms = t0.elapsed().as_millis() as u64,
                    "green has applied blue's final offset"
                );
                break;
            }
            if t0.elapsed() > opts.catch_up_timeout {
                return Err(format!(
                    "green applied offset {applied} of {final_offset} within {:?} \
                     (--catch-up-timeout)",
                    opts.catch_up_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        step(4, "verifying blue against green");
        if opts.skip_verify {
            warn!("verify skipped (--skip-verify)");
        } else {
            verify(&opts, status_addr, &blue_ep, &green_ep).await?;
        }
        Ok::<u64, String>(final_offset)
    }
    .await;
    let final_offset = match checked {
        Ok(o) => o,
        Err(e) => {
            let undo = blue.unpause().await;
            return Err(format!(
                "cutover aborted: {e}; {}; the forward sync keeps running",
                match undo {
                    Ok(()) => "blue is unpaused".to_string(),
                    Err(u) => format!("blue could not be unpaused ({u}): it unpauses by itself when the pause times out"),
                }
            ));
        }
    };

    step(5, "stopping the forward sync");
    if let Err(e) = stop_forward(forward_pid, status_addr).await {
        let _ = blue.unpause().await;
        return Err(format!(
            "cutover aborted: the forward sync did not stop: {e}; blue is unpaused"
        ));
    }

    step(6, "starting the reverse sync (green → blue, from now)");
    let mut reverse_cfg = opts.config.clone();
    std::mem::swap(&mut reverse_cfg.source, &mut reverse_cfg.target);
    let mut reverse = SyncOptions::from_config(&reverse_cfg)?;
    reverse.checkpoint = reverse
        .checkpoint
        .as_deref()
        .map(crate::checkpoint::for_reverse);
    reverse.replica.rdb_filter_only = Some(String::new());
    reverse.once = false;
    let status = Status::new(green_ep.to_string(), blue_ep.to_string());
    if let Some(addr) = opts.reverse_status {
        let (bound, _task) = crate::status::serve(addr, status.clone())
            .await
            .map_err(|e| format!("cannot serve the reverse sync's status on {addr}: {e}"))?;
        info!("reverse sync status on http://{bound}/status");
    }
    let source_cluster = reverse_cfg.source_cluster();
    let mut task = tokio::spawn(crate::sync_cluster::run(
        reverse,
        status.clone(),
        shutdown,
        source_cluster,
    ));
    let t0 = Instant::now();
    loop {
        if task.is_finished() {
            let _ = blue.unpause().await;
            let why = match (&mut task).await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => "it stopped".into(),
                Err(e) => e.to_string(),
            };
            return Err(format!(
                "the reverse sync did not start: {why}. The forward sync is stopped and blue \
                 unpaused: start the forward sync again (`ferry sync --config …`) before \
                 retrying"
            ));
        }
        if status.snapshot().phase == Phase::Stream {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            warn!("the reverse sync is not streaming after 60 s; unpausing blue anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    step(7, "unpausing blue");
    let paused_for = blue.paused_at.map(|t| t.elapsed()).unwrap_or_default();
    blue.unpause().await?;
    let report = CutoverReport {
        final_offset,
        paused_for,
        elapsed: started.elapsed(),
    };
    println!(
        "\nferry cutover done in {:.1} s (blue paused {:.1} s; green applied blue's final offset {}).\n\
         \n\
         Next: point the application at green ({green_ep}).\n\
         Writes that still reach blue from now on are NOT copied to green: switch now.\n\
         \n\
         This process now runs the reverse sync green -> blue, so blue stays a rollback target.\n\
         To roll back: point the application back at blue ({blue_ep}); then stop this process\n\
         (Ctrl-C / SIGTERM) once nothing writes to green any more.\n",
        report.elapsed.as_secs_f64(),
        report.paused_for.as_secs_f64(),
        report.final_offset
    );
    info!(
        final_offset,
        paused_ms = paused_for.as_millis() as u64,
        "cutover done; running the reverse sync until stopped"
    );
    match task.await {
        Ok(Ok(o)) => info!(applied_offset = o.applied_offset, "reverse sync stopped"),
        Ok(Err(e)) => return Err(format!("the reverse sync failed: {e}")),
        Err(e) => return Err(format!("the reverse sync failed: {e}")),
    }
    Ok(report)
}

/// On a terminal: asks the operator to stop blue's writers and type `stopped`.
async fn confirm_writers_stopped(blue: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let prompt = format!(
        "blue ({blue}) cannot pause writes itself (CLIENT PAUSE … WRITE needs Redis 6.2+).\n\
         Stop the application's writes to blue, then type `stopped` (anything else aborts): "
    );
    tokio::task::spawn_blocking(move || {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "stopped"
    })
    .await
    .unwrap_or(false)
}

/// SIGTERM to the forward sync, then wait until its status endpoint is gone.
async fn stop_forward(pid: i32, status_addr: SocketAddr) -> Result<(), String> {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    if pid <= 0 || pid == std::process::id() as i32 {
        return Err(format!("bad pid {pid} in the forward sync's status"));
    }
    // SAFETY: kill(2) with a pid read from the forward sync's status and SIGTERM (15).
    if unsafe { kill(pid, 15) } != 0 {
        return Err(format!(
            "cannot signal pid {pid}: {} (run the cutover as the user of the forward sync, on its host)",
            std::io::Error::last_os_error()
        ));
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { kill(pid, 0) } == 0;
        if !alive || fetch_status(status_addr).await.is_err() {
            info!(pid, "forward sync stopped");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("pid {pid} still runs 60 s after SIGTERM"))
}

/// Blue against green with the verifier (several rounds, so that writes in flight
/// settle); a difference or a failure to compare aborts the cutover. By default the keys
/// the forward sync wrote in the last `verify_window` are compared in full (blue is paused
/// meanwhile, so this must be quick); when that list is not complete (evicted, a flush, a
/// command whose keys are unknown), every key is compared in outline; `--full-verify`
/// compares every key in full.
async fn verify(
    opts: &CutoverOptions,
    forward: SocketAddr,
    blue: &Endpoint,
    green: &Endpoint,
) -> Result<(), String> {
    let mut keys = None;
    let mode = if opts.full_verify {
        crate::verify::Mode::Full
    } else {
        let path = format!("/recent-keys?seconds={}", opts.verify_window.as_secs());
        match fetch_json(forward, &path)
            .await
            .map(|v| crate::recent::parse(&v))
        {
            Ok(Some((true, list))) => {
                info!(
                    keys = list.len(),
                    window_s = opts.verify_window.as_secs(),
                    "verifying the keys the forward sync wrote in the window, in full"
                );
                if list.is_empty() {
                    info!("no key was written in the window: nothing to verify");
                    return Ok(());
                }
                keys = Some(list);
                crate::verify::Mode::Full
            }
            Ok(_) => {
                info!("the list of recently written keys is not complete for the window: verifying every key in outline");
                crate::verify::Mode::Outline
            }
            Err(e) => {
                warn!("no list of recently written keys ({e}): verifying every key in outline");
                crate::verify::Mode::Outline
            }
        }
    };
    let vopts = crate::verify::Options {
        source: blue.clone(),
        target: green.clone(),
        mode,
        rounds: opts.verify_rounds.max(1),
        interval: Duration::from_secs(1),
        db: None,
        key_pattern: None,
        qps: None,
        ttl_tolerance: Duration::from_secs(2),
        progress: false,
        keys,
    };
    let t0 = Instant::now();
    let outcome = crate::verify::run(&vopts)
        .await
        .map_err(|e| format!("verify could not compare: {e}"))?;
    if outcome.equal() {
        info!(
            mode = mode.name(),
            seconds = t0.elapsed().as_secs_f64(),
            "verify: blue and green are equal"
        );
        return Ok(());
    }
    let report =
        std::env::temp_dir().join(format!("ferry-cutover-verify-{}.json", std::process::id()));
    let saved = serde_json::to_string_pretty(&outcome.to_json())
        .map_err(|e| e.to_string())
        .and_then(|t| std::fs::write(&report, t).map_err(|e| e.to_string()));
    let mut summary = Vec::new();
    let _ = outcome.write_summary(&mut summary, 5);
    Err(format!(
        "verify found differences ({}): {}",
        match saved {
            Ok(()) => format!("report {}", report.display()),
            Err(e) => format!("no report: {e}"),
        },
        String::from_utf8_lossy(&summary)
            .trim()
            .replace('\n', " | ")
    ))
}
