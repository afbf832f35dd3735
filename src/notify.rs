//! systemd's notify protocol (`sd_notify(3)`): one datagram per message to the Unix socket
//! named by `$NOTIFY_SOCKET`, which systemd sets for `Type=notify` services.
//!
//! ferry sends `READY=1` once the replica link is established, `STATUS=…` on every phase
//! change, `WATCHDOG=1` every half `WatchdogSec` from the sync loop (so a loop that hangs
//! stops the pings and systemd restarts it) and `STOPPING=1` when it starts draining.
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Where the messages go, read once from the environment.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
    last_ping: Instant,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and
    /// `$WATCHDOG_USEC` (ignored when `$WATCHDOG_PID` names another process).
    pub fn from_env() -> Notifier {
        let path = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| !p.is_empty());
        let socket = path.and_then(|p| match UnixDatagram::unbound() {
            Ok(s) => Some((s, p)),
            Err(e) => {
                tracing::warn!("cannot create a socket for NOTIFY_SOCKET: {e}");
                None
            }
        });
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier {
            socket,
            watchdog,
            last_ping: Instant::now(),
        }
    }

    /// Whether a notify socket is set.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one message (`READY=1`, `STATUS=…`); failures are logged, never fatal.
    pub fn send(&self, msg: &str) {
        let Some((sock, path)) = &self.socket else {
            return;
        };
        let sent = match path.strip_prefix('@') {
            Some(name) => send_abstract(sock, name, msg),
            None => sock.send_to(msg.as_bytes(), path).map(|_| ()),
        };
        if let Err(e) = sent {
            tracing::debug!("sd_notify to {path}: {e}");
        }
    }

    /// `WATCHDOG=1` when half the watchdog interval has passed since the last one.
    pub fn watchdog_tick(&mut self) {
        if let Some(w) = self.watchdog {
            if self.last_ping.elapsed() >= w / 2 {
                self.last_ping = Instant::now();
                self.send("WATCHDOG=1");
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &str, msg: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sock.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("abstract sockets need Linux"))
}
