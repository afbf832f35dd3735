//! ferry: migrate a live Redis-compatible keyspace and keep it in step.
//!
//! Map of the crate (data flows top to bottom):
//!
//! * [`resp`]: RESP2/RESP3 frames. A pure, incremental decoder that reports the exact
//!   byte length of every frame (replication offsets depend on it), and an encoder.
//! * [`rdb`]: the streaming RDB decoder. A pure state machine fed arbitrary chunks; it
//!   yields events (header, aux fields, key metadata, then the value in pieces) and never
//!   needs a whole snapshot or a whole value in memory. One file per encoding;
//!   `rdb::reader` drives it over any `Read`.
//! * [`source`]: the replica link to a live server (handshake, `PSYNC`, RDB and stream
//!   framing, ACKs, reconnect with partial resync) and its RAM-then-disk spool, so the
//!   source socket is always drained at network speed.
//! * [`transform`]: one key's decoded value → a `RESTORE` or bounded batches of type
//!   commands, chosen per target version; `restore.rs` is `ferry restore`.
//! * [`target`]: the pipelined writer (window, FIFO replies, SELECT tracking, error
//!   classes and order-keeping retries) and what the target server supports.
//! * [`sync`]: the one place that knows every stage: snapshot, then the command stream,
//!   and the applied offset. [`status`] serves `/status`, `/metrics` and `/healthz` from
//!   it; [`notify`] tells systemd (`READY=1`, watchdog pings).
//! * [`net`]: connections to servers, plain TCP or TLS (rustls), for `source` and
//!   `target` alike.
//! * [`verify`]: `ferry verify`, a key-by-key comparison of two live endpoints in both
//!   directions over its own small pipelined client (standalone or cluster on either side);
//!   it shares only [`resp`] and [`endpoint`] with the rest.
//! * [`inspect`]: `ferry rdb inspect`, a consumer of [`rdb`] that prints JSON lines or a
//!   summary.
//! * [`admin`]: one-shot commands (`INFO`, `CLIENT PAUSE`) for `--once` and cutover.
//! * [`cutover`]: `ferry cutover`, the supervised switch from blue to green.
//! * [`config`] (the TOML file, validated; `check-config`), [`endpoint`] (server URLs;
//!   passwords never printed), [`logging`] (text/JSON, to stderr or a reopenable file),
//!   [`cli`] (clap definitions; `main.rs` maps them to calls and errors to exit codes),
//!   [`util`] (byte escaping, Redis-style glob matching).
//!
//! `rdb` and `resp` know nothing of sockets or policies; the I/O loops that drive them
//! live in `source` and `target`, and `sync` is the one place that wires them together.

pub mod admin;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod cutover;
pub mod endpoint;
pub mod inspect;
pub mod logging;
pub mod net;
pub mod notify;
pub mod rdb;
pub mod recent;
pub mod resp;
pub mod sentinel;
pub mod source;
pub mod status;
pub mod sync;
pub mod sync_cluster;
pub mod target;
pub mod transform;
pub mod util;
pub mod verify;
