//! The one error type of the target side. Every variant names the target (its URL without
//! the password) so that a message read alone in a log says where it happened.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to target {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("target {target}: no connection within {timeout:?}")]
    ConnectTimeout { target: String, timeout: Duration },
    #[error("target {target}: {source} ({in_flight} commands unanswered)")]
    Io {
        target: String,
        in_flight: usize,
        source: std::io::Error,
    },
    #[error("target {target} closed the connection ({in_flight} commands unanswered)")]
    Closed { target: String, in_flight: usize },
    #[error("target {target}: no reply for {timeout:?} ({in_flight} commands unanswered)")]
    ReplyTimeout {
        target: String,
        timeout: Duration,
        in_flight: usize,
    },
    #[error("target {target}: took no bytes for {timeout:?} ({in_flight} commands unanswered)")]
    WriteTimeout {
        target: String,
        timeout: Duration,
        in_flight: usize,
    },
    /// The reply stream is not RESP, or a reply came with nothing in flight.
    #[error("target {target}: malformed reply at byte {offset} of its reply stream: {message}")]
    Protocol {
        target: String,
        offset: u64,
        message: String,
    },
    #[error("target {target} refused authentication: {message}{hint}")]
    Auth {
        target: String,
        message: String,
        hint: &'static str,
    },
    /// An error reply that the policy makes fatal.
    #[error("{0}")]
    Rejected(Box<Rejection>),
    /// A retry could not keep the order of writes (see the writer's module doc).
    #[error("target {target}: {message}")]
    Order { target: String, message: String },
    #[error("target {target}: {message}")]
    Unsupported { target: String, message: String },
    /// A caller's mistake (a `Cmd` with no commands, a db on a cluster…).
    #[error("target {target}: invalid command: {message}")]
    Invalid { target: String, message: String },
    /// Slots of the target cluster passed from a master to one of its replicas (a
    /// failover, not a migration) while failover markers are kept: the router stops so
    /// that the sync resumes from what the new master has.
    #[error("target {target}: {message}")]
    Failover { target: String, message: String },
    /// An earlier error stopped the writer; it sends nothing more.
    #[error("target {target}: the writer stopped after an earlier error: {first}")]
    Stopped { target: String, first: String },
}

/// An error reply that stopped the writer: which command, of which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("target {target} rejected {command}{key}: {message}{hint}")]
pub struct Rejection {
    pub target: String,
    /// The class name it was counted under (`WRONGTYPE`, `BUSYKEY`, `payload`…).
    pub class: &'static str,
    pub command: String,
    /// `` of key `k` `` or empty.
    pub key: String,
    pub message: String,
    pub hint: &'static str,
}
