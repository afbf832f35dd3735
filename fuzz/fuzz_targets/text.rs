//! Any bytes through the small text parsers that read what servers and operators send:
//! `CLUSTER NODES`, `CLUSTER SLOTS`/`SHARDS` replies, redirect errors, server versions,
//! URLs, db_map rules, durations and the config file. Never a panic.
#![no_main]
use ferry::cluster::topology::{parse_node_lines, parse_nodes, parse_shards, parse_slots};
use ferry::cluster::{NodeAddr, Redirect};
use ferry::resp::{parse_frame, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_node_lines(&text);
    let _ = parse_nodes(&text, "127.0.0.1");
    let _ = Redirect::parse(&text);
    let _ = NodeAddr::parse(&text);
    let _ = ferry::target::info::parse_version(&text);
    let _ = ferry::endpoint::Endpoint::parse(&text);
    let _ = ferry::target::dbmap::DbMap::parse_rule(&text);
    let _ = ferry::cli::parse_duration(&text);
    let _ = ferry::config::Config::parse(&text, "fuzz.toml");
    if let Ok(Some((frame, _))) = parse_frame(data, &Limits::default()) {
        let _ = parse_slots(&frame, "127.0.0.1");
        let _ = parse_shards(&frame, "127.0.0.1");
    }
});
