//! A time limit per test, so that a test that hangs fails the run instead of stalling it.
//!
//! A test that waits for something that never comes (a thread that is never told to stop,
//! a reply that never arrives) would otherwise hold CI until its own overall limit, with no
//! word of which test it was. Here each test thread is timed from its first
//! [`require_server`](super::require_server) / [`Server::start`](super::Server::start) (after
//! any lock the test takes first), and a single watchdog thread per test binary checks the
//! clocks. A test over the limit gets its name printed, every process the harness started
//! (servers, sentinels, ferry) killed, and the test binary exits with code 101, which cargo
//! reports as a failure.
//!
//! The limit is `FERRY_TEST_TIMEOUT` seconds, 600 unless set: far above any test's time on
//! a 2-core machine (the slowest take about a minute), far below CI's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const DEFAULT_LIMIT: Duration = Duration::from_secs(600);

#[derive(Default)]
struct State {
    /// Test thread name → when its clock started.
    tests: BTreeMap<String, Instant>,
    /// Pids of the processes the harness started and has not stopped yet.
    children: BTreeSet<u32>,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let limit = std::env::var("FERRY_TEST_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_LIMIT, Duration::from_secs);
        std::thread::Builder::new()
            .name("ferry-test-watchdog".into())
            .spawn(move || watch(limit))
            .expect("start the test watchdog");
        Mutex::new(State::default())
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    state().lock().unwrap_or_else(|p| p.into_inner())
}

fn watch(limit: Duration) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let mut st = lock();
        let over: Vec<String> = st
            .tests
            .iter()
            .filter(|(_, t0)| t0.elapsed() > limit)
            .map(|(name, _)| name.clone())
            .collect();
        if over.is_empty() {
            continue;
        }
        eprintln!(
            "\nWATCHDOG: {} ran over {limit:?} (FERRY_TEST_TIMEOUT): killing the {} processes \
             the harness started and failing this test binary",
            over.join(", "),
            st.children.len()
        );
        for pid in std::mem::take(&mut st.children) {
            super::server::signal(pid, super::server::SIGKILL);
        }
        std::process::exit(101);
    }
}

/// Ends the current thread's clock when the thread (the test) ends, passed or failed.
struct Timed(String);

impl Drop for Timed {
    fn drop(&mut self) {
        lock().tests.remove(&self.0);
    }
}

thread_local! {
    static TIMED: std::cell::RefCell<Option<Timed>> = const { std::cell::RefCell::new(None) };
}

/// Starts the current test's clock (once per test; threads the test spawns itself are
/// unnamed and not timed on their own: their test is).
pub fn start_clock() {
    let Some(name) = std::thread::current().name().map(str::to_string) else {
        return;
    };
    if name == "main" {
        // With `--test-threads=1` libtest runs every test on the main thread, with no end
        // of a test to see: those runs are bounded by scripts/test.sh's suite limit only.
        return;
    }
    TIMED.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            lock().tests.insert(name.clone(), Instant::now());
            *t = Some(Timed(name));
        }
    });
}

/// A process the watchdog kills if it fires.
pub fn track(pid: u32) {
    lock().children.insert(pid);
}

/// A process that has been stopped (or waited for).
pub fn untrack(pid: u32) {
    lock().children.remove(&pid);
}

/// A guard that sets a stop flag when it is dropped, also while a panic unwinds.
///
/// `std::thread::scope` joins every thread it spawned before it passes a panic on. A
/// workload thread that runs until its flag is set therefore turns any failed assertion of
/// the test's own thread into a hang, unless the flag is set on the way out: create one of
/// these inside the scope, before the first fallible step.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
