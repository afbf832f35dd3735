//! Runs test cases on a few threads and reports every failure at the end, not only the
//! first: a matrix of server pairs is worth seeing whole.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// Runs `case` for every item on `threads` threads. Each case returns a line for the log
/// (printed as `ok   …`); a panic is caught, printed as `FAIL …` and collected. Panics at
/// the end, listing the failures, if there were any.
pub fn run_parallel<T: Sync, F>(
    items: &[T],
    threads: usize,
    name: impl Fn(&T) -> String + Sync,
    case: F,
) where
    F: Fn(&T) -> String + Sync,
{
    let queue = Mutex::new(items.iter());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let Some(item) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else {
                    return;
                };
                match catch_unwind(AssertUnwindSafe(|| case(item))) {
                    Ok(report) => eprintln!("ok   {report}"),
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let line = format!("{}: {msg}", name(item));
                        eprintln!("FAIL {line}");
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(line);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
