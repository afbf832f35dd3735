//! A real redis-server / valkey-server process for one test.
//!
//! Each server gets its own loopback port and temp dir, no persistence unless the test asks,
//! and is killed (and its dir removed) when the `Server` is dropped, which also happens while
//! a failing test unwinds.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::client::{Client, Reply};
use super::servers::ServerSpec;
use super::tmp::TempDir;

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Attempts at finding a free port (another process can take the one we picked before the
/// server binds it).
const PORT_ATTEMPTS: usize = 5;

const LOG_FILE: &str = "server.log";
const OUTPUT_FILE: &str = "output.log";

pub struct Server {
    spec: ServerSpec,
    port: u16,
    child: Child,
    // Declared last: dropped after `Drop::drop` has stopped the process.
    dir: TempDir,
}

impl Server {
    /// Starts `spec` on a free 127.0.0.1 port in a fresh temp dir and waits until it answers
    /// PING. `extra_args` are appended (`&["--maxmemory", "10mb"]`). Panics with the tail of
    /// the server's log when it does not come up.
    pub fn start(spec: &ServerSpec, extra_args: &[&str]) -> Server {
        Server::start_with_port(spec, extra_args, free_port)
    }

    /// [`Server::start`] on a port chosen by `pick` (a cluster node needs its bus port,
    /// port + 10000, free and below 65536 too).
    pub fn start_with_port(spec: &ServerSpec, extra_args: &[&str], pick: fn() -> u16) -> Server {
        super::watchdog::start_clock();
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = pick();
            let dir = TempDir::new(&spec.name);
            match Server::try_start(spec, port, dir, extra_args) {
                Ok(server) => return server,
                Err(log) if log.contains("already in use") => last_log = log,
                Err(log) => {
                    panic!("{spec} did not start on port {port} (args {extra_args:?}):\n{log}")
                }
            }
        }
        panic!("{spec} found no free port in {PORT_ATTEMPTS} attempts:\n{last_log}");
    }

    /// Ok, or the log tail of a server that exited or did not answer in time.
    fn try_start(
        spec: &ServerSpec,
        port: u16,
        dir: TempDir,
        extra_args: &[&str],
    ) -> Result<Server, String> {
        let d = dir.path();
        let port_text = port.to_string();
        let dir_text = d.to_str().expect("temp dir path is UTF-8").to_string();
        let log_text = d.join(LOG_FILE).to_str().expect("UTF-8").to_string();
        let mut args: Vec<&str> = vec![
            "--port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &dir_text,
            "--logfile",
            &log_text,
        ];
        if spec.has_protected_mode() {
            args.extend(["--protected-mode", "no"]);
        }
        if spec.needs_enable_debug_command() {
            args.extend(["--enable-debug-command", "yes"]);
        }
        args.extend(extra_args);

        // stdout/stderr catch what is written before the log file is open (config errors).
        let output = File::create(d.join(OUTPUT_FILE)).expect("create output.log");
        let child = Command::new(&spec.path)
            .args(&args)
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("dup output.log"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", spec.path.display()));
        super::watchdog::track(child.id());
        let mut server = Server {
            spec: spec.clone(),
            port,
            child,
            dir,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("exited with {status}\n{}", server.log_tail(30)));
            }
            match server.probe() {
                Probe::Ours => return Ok(server),
                // Two tests picked the same free port and the other server bound it first.
                Probe::Other(pid) => {
                    return Err(format!("port already in use by the server with pid {pid}"))
                }
                Probe::NotYet => {}
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no PING answer after {START_TIMEOUT:?}\n{}",
                    server.log_tail(30)
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Does our server answer PING on our port? INFO's `process_id` tells it from another
    /// server that took the port (the pid is the server's: wrapper scripts `exec` it).
    fn probe(&self) -> Probe {
        let Ok(mut c) = Client::try_connect(self.addr()) else {
            return Probe::NotYet;
        };
        if !matches!(c.try_cmd(&[b"PING"]), Ok(Reply::Simple(ref s)) if s == b"PONG") {
            return Probe::NotYet;
        }
        let info = match c.try_cmd(&[b"INFO", b"server"]) {
            Ok(reply) => reply.as_text().unwrap_or_default(),
            Err(_) => return Probe::NotYet,
        };
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse::<u32>().ok());
        match pid {
            Some(pid) if pid != self.child.id() => Probe::Other(pid),
            _ => Probe::Ours,
        }
    }

    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// The server's working dir (`--dir`): dump.rdb, the log, anything the test puts there.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where `SAVE` / `BGSAVE` write.
    pub fn rdb_path(&self) -> PathBuf {
        self.dir().join("dump.rdb")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join(LOG_FILE)
    }

    pub fn version(&self) -> (u32, u32, u32) {
        self.spec.version
    }

    /// The server's process id (the real server: wrapper scripts `exec` it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection (db 0).
    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }

    /// The last `lines` lines of the early output and of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in [OUTPUT_FILE, LOG_FILE] {
            let text = fs::read(self.dir().join(name)).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let all: Vec<&str> = text.lines().collect();
            if all.is_empty() {
                continue;
            }
            out.push_str(&format!("--- {name} (last {lines} lines)\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn stop(&mut self) {
        self.stop_process();
        super::watchdog::untrack(self.child.id());
    }

    fn stop_process(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first so the server shuts down cleanly; SIGKILL if it takes too long (a
        // server with a lagging replica can wait for it up to its `shutdown-timeout`).
        signal(self.child.id(), SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // `dir` (a TempDir) removes itself after this.
    }
}

enum Probe {
    NotYet,
    Ours,
    Other(u32),
}

/// A port that was free a moment ago: bind port 0 and let the kernel choose.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

const SIGTERM: i32 = 15;
pub const SIGKILL: i32 = 9;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// kill(2) of a child the harness started and has not reaped yet.
pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) takes plain integers and has no memory effects; callers pass a
        // child of ours not reaped yet (`stop` after try_wait said None, the watchdog only
        // pids untracked when reaped), so it is not reused.
        unsafe {
            kill(pid, sig);
        }
    }
}
