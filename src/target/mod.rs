//! The target side: what a target server is, and the pipelined writer that applies
//! commands to it.
//!
//! * [`writer`]: [`Writer`], one connection with a window of commands in flight, replies
//!   matched first-in first-out, `SELECT` tracked, every error reply classified, retries
//!   that keep the order of writes per key, and the acknowledged tag (the source offset
//!   that is truly applied).
//! * [`cmd`]: [`Cmd`], the unit handed to the writer: one or more whole RESP commands, the
//!   db they belong to, a tag, and what they are for.
//! * [`policy`]: error classes and the operator's [`ErrorPolicy`].
//! * [`info`]: [`ServerInfo`], the target's family, version, limits and features.
//! * [`error`]: the one error type, [`TargetError`].
//! * [`cluster`]: [`cluster::ClusterWriter`], a router over one writer per master of a
//!   cluster target (slots, redirects, per-slot order, acknowledged tags across nodes).
//! * [`sink`]: [`Sink`], a writer or a cluster router behind one interface, with the
//!   db mapping ([`dbmap`]) applied to stream commands.
//!
//! The writer knows nothing of RDB files or replication: `transform` turns source data
//! into `Cmd`s, and `sync` feeds them here.

pub mod cluster;
pub mod cmd;
pub mod dbmap;
pub mod error;
pub mod failover;
pub mod info;
pub mod policy;
pub mod sink;
pub mod writer;

pub use cmd::{Cmd, CmdKind};
pub use error::{Rejection, TargetError};
pub use info::ServerInfo;
pub use policy::{Conflict, ErrorPolicy, OnError};
pub use sink::{ClusterMode, Sink, SinkOptions};
pub use writer::{Redirected, SkipRecord, Writer, WriterConfig, WriterStats};
