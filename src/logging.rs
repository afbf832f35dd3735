//! Log setup: readable lines on a terminal, JSON lines with `--log-format json`.
//! Logs go to standard error, or to `[log] file` (appended, reopened on SIGHUP so that
//! logrotate can move it away); standard output is kept for data (`rdb inspect`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
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

/// Like [`init`], but into `file` (created if missing, appended to). The returned handle
/// reopens it ([`LogFile::reopen`], on SIGHUP).
pub fn init_file(json: bool, level: &str, file: &Path) -> io::Result<LogFile> {
    let log = LogFile {
        path: file.to_path_buf(),
        file: Arc::new(Mutex::new(open_append(file)?)),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(log.clone());
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_target(false).try_init()
    };
    Ok(log)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))
}

/// The log file, shared by every log line's writer.
#[derive(Clone, Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    /// Opens the path again (after logrotate moved the old file away). On failure the old
    /// file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One log line's writer: the formatter writes a whole line in one call.
pub struct LogFileWriter<'a>(&'a LogFile);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self)
    }
}
