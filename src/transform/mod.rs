//! Turning decoded source data into commands for a target.
//!
//! * [`rewrite`]: [`KeyRewriter`], fed the events of one key at a time, emits bounded
//!   [`Cmd`](crate::target::Cmd) batches: one `RESTORE` when the target accepts the value's
//!   encoding and it is small enough, else type commands (`DEL`, `RPUSH`/`SADD`/`ZADD`/
//!   `HSET`, `PEXPIREAT`…), which is also how values reach older servers.
//! * [`stream`]: the stream part of the commands path (entries, ids, groups, consumers,
//!   pending lists).
//! * [`batch`]: building RESP commands element by element.
//! * [`restore`]: `ferry restore`: an RDB file through the rewriter into a writer.

pub mod batch;
pub mod restore;
pub mod rewrite;
pub mod stream;

pub use restore::{restore_file, restore_file_async, RestoreError, RestoreOptions, RestoreReport};
pub use rewrite::{KeyRewriter, Outcome, RewriteConfig, RewriteStats, ValueMode};

/// The wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests;
