//! The harness shared by ferry's integration tests (each test file says `mod common;`).
//!
//! * [`servers`]: where the real Redis / Valkey builds are (`FERRY_SERVERS`, installed by
//!   `scripts/servers.sh`) and what each version can do ([`ServerSpec`]).
//! * [`server`]: [`Server`], a real server process on a free loopback port in a temp dir,
//!   stopped and cleaned up on drop (also when the test panics).
//! * [`client`]: [`Client`], a minimal blocking RESP client with its own parser; the tests
//!   judge ferry with code that shares nothing with it.
//! * [`dataset`]: [`fill`] writes data of every type and encoding a version can produce and
//!   returns its [`Model`]; [`read_back`] reads a live keyspace into the same model;
//!   [`assert_models_equal`] reports the first differences readably.
//! * [`ferry`]: a `ferry` process started by a test, its `/status`, SIGTERM.
//! * [`tmp`]: [`TempDir`], unique temp dirs removed on drop.
//! * [`watchdog`]: a time limit per test, so that a hang fails the run instead of stalling it.
//!
//! Not every test uses every item, hence the module-wide `allow`s.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod cluster;
pub mod dataset;
pub mod ferry;
pub mod ferry_proc;
pub mod parallel;
pub mod proxy;
pub mod server;
pub mod servers;
pub mod tmp;
pub mod watchdog;
pub mod workload;

pub use client::{escape, Client, Reply};
pub use dataset::{
    assert_models_equal, fill, read_back, GroupModel, KeyModel, Model, StreamModel, ValueModel,
};
pub use server::Server;
pub use servers::{
    installed_servers, require_any_servers, require_server, server_bin, Flavor, ServerSpec,
};
pub use tmp::TempDir;
