//! Log setup: readable lines on a terminal, JSON lines with `--log-format json`.
//! Logs go to standard error; standard output is kept for data (`rdb inspect`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a tracing filter (`info`, `ferry=debug`);
/// `RUST_LOG` overrides it.
pub fn init(json: bool, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
