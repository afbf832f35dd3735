//! The rewriter's choices, command by command, without a server (the servers' view of
//! the result is in `tests/restore_matrix.rs` and `tests/writer.rs`).

use super::rewrite::{KeyRewriter, Outcome, RewriteConfig, ValueMode};
use crate::rdb::decoder::*;
use crate::rdb::dump::payload;
use crate::rdb::{Elem, Flavor, KeyEnd, KeyInfo, ModuleId, Piece, StreamId, ValueKind};
use crate::target::cmd::{command_args, split_commands};
use crate::target::{Cmd, CmdKind, Conflict, ServerInfo};

const NOW: i64 = 1_700_000_000_000;

fn redis(v: (u32, u32, u32)) -> ServerInfo {
    ServerInfo::new(false, v)
}

fn info(key: &[u8], kind: ValueKind, type_byte: u8, expire_ms: Option<i64>) -> KeyInfo<'_> {
    KeyInfo {
        db: 2,
        key,
        kind,
        type_byte,
        expire_ms,
        idle_s: None,
        freq: None,
        offset: 0,
    }
}

fn end(raw: Option<&[u8]>) -> KeyEnd<'_> {
    KeyEnd {
        encoded_len: raw.map_or(0, |r| r.len() as u64),
        elements: 1,
        raw,
        empty: false,
    }
}

/// Every command of every Cmd, as text arguments.
fn argvs(cmds: &[Cmd]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for c in cmds {
        let ranges = split_commands(&c.bytes, c.n as usize).expect("well-formed Cmd");
        assert_eq!(
            ranges.last().map(|r| r.end),
            Some(c.bytes.len()),
            "stray bytes"
        );
        for r in ranges {
            out.push(
                command_args(&c.bytes[r])
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            );
        }
    }
    out
}

/// Runs one key through a rewriter; returns the Cmds emitted before `end` and after.
fn one_key(
    r: &mut KeyRewriter,
    k: &KeyInfo<'_>,
    pieces: &[Piece<'_>],
    e: &KeyEnd<'_>,
) -> (Vec<Cmd>, Vec<Cmd>, Outcome) {
    let mut early = Vec::new();
    r.key(k, &mut |c| early.push(c));
    for p in pieces {
        r.piece(p, &mut |c| early.push(c));
    }
    let mut late = Vec::new();
    let outcome = r.end(e, &mut |c| late.push(c));
    r.flush_pending(&mut |c| late.push(c));
    (early, late, outcome)
}

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_small_value_goes_as_one_restore_with_an_absolute_ttl() {
    let raw = b"\x00\x05hello";
    let exp = NOW + 5000;
    for (conflict, tail) in [
        (Conflict::Replace, vec!["REPLACE", "ABSTTL"]),
        (Conflict::Skip, vec!["ABSTTL"]),
    ] {
        let cfg = RewriteConfig {
            conflict,
            strings_as_set: false,
            ..RewriteConfig::default()
        };
        let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
        let k = info(b"k", ValueKind::String, RDB_TYPE_STRING, Some(exp));
        let (early, late, o) = one_key(
            &mut r,
            &k,
            &[Piece::String(Elem::Bytes(b"hello"))],
            &end(Some(raw)),
        );
        assert!(
            early.is_empty(),
            "nothing before the end: {:?}",
            argvs(&early)
        );
        assert_eq!(o, Outcome::Restore);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].db, Some(2));
        assert!(matches!(&late[0].kind, CmdKind::Restore { key } if &key[..] == b"k"));
        let p = payload(raw, 11);
        let args = command_args(&late[0].bytes);
        assert_eq!(
            args[..3],
            [&b"RESTORE"[..], b"k", exp.to_string().as_bytes()]
        );
        assert_eq!(args[3], &p[..]);
        let tail: Vec<&[u8]> = tail.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(args[4..], tail[..]);
    }
}

#[test]
fn a_plain_string_goes_as_one_set_where_the_target_keeps_its_expiry() {
    let exp = NOW + 5000;
    let raw = b"\x00\x05hello";
    for (version, expire, want) in [
        (
            (7, 2, 4),
            Some(exp),
            vec!["SET", "k", "hello", "PXAT", &*exp.to_string()],
        ),
        ((3, 0, 5), None, vec!["SET", "k", "hello"]),
        // No PXAT before 6.2: the absolute expiry goes with RESTORE … ABSTTL.
        (
            (6, 0, 9),
            Some(exp),
            vec![
                "RESTORE",
                "k",
                &*exp.to_string(),
                "payload",
                "REPLACE",
                "ABSTTL",
            ],
        ),
    ] {
        let mut r = KeyRewriter::new(
            &RewriteConfig::default(),
            &redis(version),
            Flavor::Redis,
            NOW,
        );
        let k = info(b"k", ValueKind::String, RDB_TYPE_STRING, expire);
        let (early, late, o) = one_key(
            &mut r,
            &k,
            &[Piece::String(Elem::Bytes(b"hello"))],
            &end(Some(raw)),
        );
        assert!(early.is_empty());
        let mut got = argvs(&late);
        assert_eq!(got.len(), 1, "{version:?}: {got:?}");
        if got[0][0] == "RESTORE" {
            got[0][3] = "payload".into();
            assert_eq!(o, Outcome::Restore);
        } else {
            assert_eq!(o, Outcome::Commands);
        }
        assert_eq!(got[0], words(&want), "{version:?}");
    }
}

#[test]
fn small_keys_share_a_cmd_until_the_db_changes_on_any_target() {
    let raw = b"\x00\x01v";
    for cluster in [false, true] {
        let mut target = redis((7, 2, 4));
        target.cluster = cluster;
        let mut r = KeyRewriter::new(&RewriteConfig::default(), &target, Flavor::Redis, NOW);
        let mut cmds = Vec::new();
        for (db, key) in [(0u64, &b"a"[..]), (0, b"b"), (0, b"c"), (1, b"d")] {
            let mut k = info(key, ValueKind::String, RDB_TYPE_STRING, None);
            k.db = db;
            r.key(&k, &mut |c| cmds.push(c));
            r.piece(&Piece::String(Elem::Bytes(b"v")), &mut |c| cmds.push(c));
            r.end(&end(Some(raw)), &mut |c| cmds.push(c));
        }
        r.flush_pending(&mut |c| cmds.push(c));
        let shape: Vec<(Option<u32>, u32)> = cmds.iter().map(|c| (c.db, c.n)).collect();
        assert_eq!(cmds[0].kind, CmdKind::Batch);
        // A key alone keeps a kind that names it.
        assert!(matches!(&cmds[1].kind, CmdKind::Data { key: Some(k) } if &k[..] == b"d"));
        let got = argvs(&cmds);
        if cluster {
            // A SET each in one batch: the cluster router splits it per master.
            assert_eq!(shape, [(Some(0), 3), (Some(1), 1)]);
            let keys: Vec<&str> = got.iter().map(|a| &*a[1]).collect();
            assert_eq!(keys, ["a", "b", "c", "d"]);
        } else {
            // One MSET for the strings of db 0; the one of db 1 alone is a SET.
            assert_eq!(shape, [(Some(0), 1), (Some(1), 1)]);
            assert_eq!(got[0], words(&["MSET", "a", "v", "b", "v", "c", "v"]));
            assert_eq!(got[1], words(&["SET", "d", "v"]));
        }
    }
}

#[test]
fn strings_without_expiry_share_an_mset_and_keys_keep_their_order() {
    let exp = NOW + 60_000;
    let mut r = KeyRewriter::new(
        &RewriteConfig::default(),
        &redis((7, 2, 4)),
        Flavor::Redis,
        NOW,
    );
    let mut cmds = Vec::new();
    let keys: [(&[u8], Option<i64>); 5] = [
        (b"a", None),
        (b"b", None),
        (b"t", Some(exp)),
        (b"c", None),
        (b"d", None),
    ];
    for (key, expire) in keys {
        let k = info(key, ValueKind::String, RDB_TYPE_STRING, expire);
        r.key(&k, &mut |c| cmds.push(c));
        r.piece(&Piece::String(Elem::Int(-5)), &mut |c| cmds.push(c));
        r.end(&end(Some(b"\xc0\xfb")), &mut |c| cmds.push(c));
    }
    // A key of another kind closes the MSET before it.
    let k = info(b"l", ValueKind::List, RDB_TYPE_LIST, None);
    r.key(&k, &mut |c| cmds.push(c));
    r.piece(&Piece::ListItem(Elem::Bytes(b"x")), &mut |c| cmds.push(c));
    r.end(&end(Some(b"\x01\x01x")), &mut |c| cmds.push(c));
    r.flush_pending(&mut |c| cmds.push(c));
    let got = argvs(&cmds);
    assert_eq!(got[0], words(&["MSET", "a", "-5", "b", "-5"]));
    assert_eq!(got[1], words(&["SET", "t", "-5", "PXAT", &exp.to_string()]));
    assert_eq!(got[2], words(&["MSET", "c", "-5", "d", "-5"]));
    assert_eq!(got[3][..2], words(&["RESTORE", "l"])[..]);
    assert_eq!(got.len(), 4, "{got:?}");
    // An MSET is one command of its own keys: a batch of one.
    assert_eq!((cmds[0].n, &cmds[0].kind), (1, &CmdKind::Batch));
    // Not when the option is off.
    let cfg = RewriteConfig {
        strings_as_mset: false,
        ..RewriteConfig::default()
    };
    let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
    let mut cmds = Vec::new();
    for key in [&b"a"[..], b"b"] {
        let k = info(key, ValueKind::String, RDB_TYPE_STRING, None);
        r.key(&k, &mut |c| cmds.push(c));
        r.piece(&Piece::String(Elem::Bytes(b"v")), &mut |c| cmds.push(c));
        r.end(&end(Some(b"\x00\x01v")), &mut |c| cmds.push(c));
    }
    r.flush_pending(&mut |c| cmds.push(c));
    assert_eq!(
        argvs(&cmds),
        [words(&["SET", "a", "v"]), words(&["SET", "b", "v"])]
    );
}

#[test]
fn a_target_before_5_0_gets_a_relative_ttl() {
    let raw = b"\x00\x01v";
    let exp = super::now_ms() + 60_000;
    let mut r = KeyRewriter::new(
        &RewriteConfig::default(),
        &redis((3, 0, 5)),
        Flavor::Redis,
        NOW,
    );
    let k = info(b"k", ValueKind::String, RDB_TYPE_STRING, Some(exp));
    let (_, late, o) = one_key(&mut r, &k, &[], &end(Some(raw)));
    assert_eq!(o, Outcome::Restore);
    let a = argvs(&late);
    let ttl: i64 = a[0][2].parse().expect("ttl");
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    assert_eq!(a[0][4], "REPLACE");
    assert_eq!(a[0].len(), 5, "no ABSTTL: {:?}", a[0]);
    // The exact version a 3.0 server demands.
    let p = command_args(&late[0].bytes)[3];
    assert_eq!(&p[p.len() - 10..p.len() - 8], &[6, 0]);
}

#[test]
fn a_type_the_target_cannot_load_streams_commands_without_holding() {
    let cfg = RewriteConfig {
        batch_elems: 100,
        batch_bytes: 512,
        ..RewriteConfig::default()
    };
    // A listpack-noded quicklist (7.0+) cannot be loaded by 6.2.
    let mut r = KeyRewriter::new(&cfg, &redis((6, 2, 14)), Flavor::Redis, NOW);
    let items: Vec<String> = (0..250).map(|i| format!("i{i}")).collect();
    let pieces: Vec<Piece<'_>> = items
        .iter()
        .map(|s| Piece::ListItem(Elem::Bytes(s.as_bytes())))
        .chain([Piece::ListItem(Elem::Int(-7))])
        .collect();
    let k = info(
        b"l",
        ValueKind::List,
        RDB_TYPE_LIST_QUICKLIST_2,
        Some(NOW + 1),
    );
    let (early, late, o) = one_key(&mut r, &k, &pieces, &end(Some(b"\x12ignored")));
    assert_eq!(o, Outcome::Commands);
    assert!(
        !early.is_empty(),
        "commands are emitted as the value passes"
    );
    let all = [early, late].concat();
    assert!(all
        .iter()
        .all(|c| c.db == Some(2) && c.bytes.len() < 2 * 512));
    let a = argvs(&all);
    assert_eq!(a[0], words(&["DEL", "l"]));
    assert_eq!(
        a.last().expect("commands"),
        &words(&["PEXPIREAT", "l", &(NOW + 1).to_string()])
    );
    let pushed: Vec<&str> = a
        .iter()
        .filter(|c| c[0] == "RPUSH")
        .flat_map(|c| c[2..].iter().map(String::as_str))
        .collect();
    let expected: Vec<String> = items.iter().cloned().chain(["-7".to_string()]).collect();
    assert_eq!(pushed, expected);
    assert!(a.iter().all(|c| c[0] != "RPUSH" || c.len() <= 102));
}

#[test]
fn held_commands_that_outgrow_restore_max_go_out_as_commands() {
    let cfg = RewriteConfig {
        restore_max: 300,
        batch_bytes: 100,
        ..RewriteConfig::default()
    };
    let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
    let members: Vec<String> = (0..40).map(|i| format!("member-{i}")).collect();
    let pieces: Vec<Piece<'_>> = members
        .iter()
        .map(|m| Piece::SetMember(Elem::Bytes(m.as_bytes())))
        .collect();
    let k = info(b"s", ValueKind::Set, RDB_TYPE_SET, None);
    // A raw within the limit would have been restored; this one came too late to matter.
    let (early, late, o) = one_key(&mut r, &k, &pieces, &end(Some(b"\x02\x00")));
    assert_eq!(o, Outcome::Commands);
    assert!(!early.is_empty());
    let added = argvs(&[early, late].concat())
        .iter()
        .filter(|c| c[0] == "SADD")
        .map(|c| c.len() - 2)
        .sum::<usize>();
    assert_eq!(added, 40);

    // Small enough to hold: RESTORE after all, the commands dropped.
    let (early, late, o) = one_key(&mut r, &k, &pieces[..3], &end(Some(b"\x02\x00")));
    assert_eq!((early.len(), late.len(), o), (0, 1, Outcome::Restore));
}

#[test]
fn hash_field_ttls_go_where_the_target_keeps_them() {
    let fields = [
        Piece::HashField {
            field: Elem::Bytes(b"a"),
            value: Elem::Int(1),
            expire_ms: Some(NOW + 10),
        },
        Piece::HashField {
            field: Elem::Bytes(b"b"),
            value: Elem::Bytes(b"x"),
            expire_ms: None,
        },
        Piece::HashField {
            field: Elem::Bytes(b"c"),
            value: Elem::Bytes(b"y"),
            expire_ms: Some(NOW + 10),
        },
        Piece::HashField {
            field: Elem::Bytes(b"gone"),
            value: Elem::Bytes(b"z"),
            expire_ms: Some(NOW - 1),
        },
    ];
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        ..RewriteConfig::default()
    };
    let k = info(b"h", ValueKind::Hash, RDB_TYPE_HASH_METADATA, None);
    let at = (NOW + 10).to_string();

    let mut r = KeyRewriter::new(&cfg, &redis((7, 4, 1)), Flavor::Redis, NOW);
    let (_, late, _) = one_key(&mut r, &k, &fields, &end(None));
    assert_eq!(
        argvs(&late),
        [
            words(&["DEL", "h"]),
            words(&["HSET", "h", "a", "1", "b", "x", "c", "y"]),
            words(&["HPEXPIREAT", "h", &at, "FIELDS", "2", "a", "c"]),
        ]
    );
    assert_eq!(r.stats().fields_expired, 1);

    let mut r = KeyRewriter::new(&cfg, &redis((3, 2, 6)), Flavor::Redis, NOW);
    let (_, late, _) = one_key(&mut r, &k, &fields, &end(None));
    assert_eq!(
        argvs(&late),
        [
            words(&["DEL", "h"]),
            words(&["HMSET", "h", "a", "1", "b", "x", "c", "y"])
        ]
    );
    assert_eq!(r.stats().field_ttls_dropped, 1);
}

fn stream_pieces() -> Vec<Piece<'static>> {
    let id = |ms, seq| StreamId { ms, seq };
    vec![
        Piece::StreamEntry {
            id: id(5, 1),
            fields: 2,
        },
        Piece::StreamField {
            field: Elem::Bytes(b"f"),
            value: Elem::Int(1),
        },
        Piece::StreamField {
            field: Elem::Bytes(b"g"),
            value: Elem::Bytes(b"v"),
        },
        Piece::StreamMeta {
            length: 1,
            last_id: id(9, 0),
            first_id: Some(id(5, 1)),
            max_deleted_id: Some(id(9, 0)),
            entries_added: Some(3),
            groups: 1,
        },
        Piece::StreamGroup {
            name: b"g",
            last_id: id(5, 1),
            entries_read: Some(1),
            pending: 1,
        },
        Piece::StreamPending {
            id: id(5, 1),
            delivery_time_ms: 1234,
            delivery_count: 3,
        },
        Piece::StreamConsumer {
            name: b"alice",
            seen_time_ms: 1,
            active_time_ms: None,
            pending: 1,
        },
        Piece::StreamConsumerPending { id: id(5, 1) },
        Piece::StreamConsumer {
            name: b"idle",
            seen_time_ms: 1,
            active_time_ms: None,
            pending: 0,
        },
    ]
}

#[test]
fn streams_are_rebuilt_with_what_each_target_supports() {
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        ..RewriteConfig::default()
    };
    let k = info(b"st", ValueKind::Stream, RDB_TYPE_STREAM_LISTPACKS_3, None);
    let claim = words(&[
        "XCLAIM",
        "st",
        "g",
        "alice",
        "0",
        "5-1",
        "TIME",
        "1234",
        "RETRYCOUNT",
        "3",
        "FORCE",
        "JUSTID",
    ]);

    let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
    let (_, late, o) = one_key(&mut r, &k, &stream_pieces(), &end(None));
    assert_eq!(o, Outcome::Commands);
    assert_eq!(
        argvs(&late),
        [
            words(&["DEL", "st"]),
            words(&["XADD", "st", "5-1", "f", "1", "g", "v"]),
            words(&[
                "XSETID",
                "st",
                "9-0",
                "ENTRIESADDED",
                "3",
                "MAXDELETEDID",
                "9-0"
            ]),
            words(&["XGROUP", "CREATE", "st", "g", "5-1", "ENTRIESREAD", "1"]),
            words(&["XGROUP", "CREATECONSUMER", "st", "g", "alice"]),
            claim.clone(),
            words(&["XGROUP", "CREATECONSUMER", "st", "g", "idle"]),
        ]
    );

    let mut r = KeyRewriter::new(&cfg, &redis((6, 0, 9)), Flavor::Redis, NOW);
    let (_, late, _) = one_key(&mut r, &k, &stream_pieces(), &end(None));
    let read = |c: &str| {
        words(&[
            "XREADGROUP",
            "GROUP",
            "g",
            c,
            "COUNT",
            "1",
            "STREAMS",
            "st",
            "0",
        ])
    };
    assert_eq!(
        argvs(&late),
        [
            words(&["DEL", "st"]),
            words(&["XADD", "st", "5-1", "f", "1", "g", "v"]),
            words(&["XSETID", "st", "9-0"]),
            words(&["XGROUP", "CREATE", "st", "g", "5-1"]),
            read("alice"),
            claim,
            read("idle"),
        ]
    );

    // No target for streams at all: skipped, with the reason recorded.
    let mut r = KeyRewriter::new(&cfg, &redis((3, 2, 6)), Flavor::Redis, NOW);
    let (early, late, o) = one_key(&mut r, &k, &stream_pieces(), &end(None));
    assert_eq!((early.len(), late.len(), o), (0, 0, Outcome::Skipped));
    assert!(r.stats().skips[0].reason.contains("no streams"));
}

#[test]
fn a_group_pel_past_what_is_kept_loses_only_its_times_and_counts() {
    // The PEL map of a group is bounded; entries past it keep their consumer and get the
    // copy's time and a delivery count of 1, counted in the stats.
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        ..RewriteConfig::default()
    };
    let id = |ms, seq| StreamId { ms, seq };
    let mut pieces = stream_pieces();
    // A second entry and a second pending id (5-2) of alice.
    pieces.insert(
        3,
        Piece::StreamEntry {
            id: id(5, 2),
            fields: 1,
        },
    );
    pieces.insert(
        4,
        Piece::StreamField {
            field: Elem::Bytes(b"f"),
            value: Elem::Int(2),
        },
    );
    let at = pieces
        .iter()
        .position(|p| matches!(p, Piece::StreamPending { .. }))
        .expect("pel");
    pieces.insert(
        at + 1,
        Piece::StreamPending {
            id: id(5, 2),
            delivery_time_ms: 99,
            delivery_count: 7,
        },
    );
    let at = pieces
        .iter()
        .position(|p| matches!(p, Piece::StreamConsumerPending { .. }))
        .expect("consumer pel");
    pieces.insert(at + 1, Piece::StreamConsumerPending { id: id(5, 2) });
    let k = info(b"st", ValueKind::Stream, RDB_TYPE_STREAM_LISTPACKS_3, None);
    let claims = |kept: usize| {
        let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
        r.pel_kept = kept;
        let (mut all, late, _) = one_key(&mut r, &k, &pieces, &end(None));
        all.extend(late);
        let claims: Vec<Vec<String>> = argvs(&all)
            .into_iter()
            .filter(|a| a[0] == "XCLAIM")
            .map(|a| a[4..].to_vec())
            .collect();
        (claims, r.stats().pel_meta_dropped)
    };
    let tail = |ids: &[&str], time: &str, count: &str| {
        let mut w = vec!["0"];
        w.extend_from_slice(ids);
        w.extend_from_slice(&["TIME", time, "RETRYCOUNT", count, "FORCE", "JUSTID"]);
        words(&w)
    };
    assert_eq!(
        claims(2),
        (
            vec![tail(&["5-1"], "1234", "3"), tail(&["5-2"], "99", "7")],
            0
        )
    );
    assert_eq!(
        claims(1),
        (
            vec![
                tail(&["5-1"], "1234", "3"),
                tail(&["5-2"], &NOW.to_string(), "1")
            ],
            1
        )
    );
}

#[test]
fn an_empty_stream_is_made_with_a_throwaway_group() {
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        ..RewriteConfig::default()
    };
    let mut r = KeyRewriter::new(&cfg, &redis((7, 0, 15)), Flavor::Redis, NOW);
    let k = info(b"e", ValueKind::Stream, RDB_TYPE_STREAM_LISTPACKS_2, None);
    let meta = Piece::StreamMeta {
        length: 0,
        last_id: StreamId { ms: 5, seq: 2 },
        first_id: None,
        max_deleted_id: Some(StreamId { ms: 5, seq: 2 }),
        entries_added: Some(2),
        groups: 0,
    };
    let (_, late, _) = one_key(&mut r, &k, &[meta], &end(None));
    assert_eq!(
        argvs(&late),
        [
            words(&["DEL", "e"]),
            words(&["XGROUP", "CREATE", "e", "ferry-create", "0", "MKSTREAM"]),
            words(&["XGROUP", "DESTROY", "e", "ferry-create"]),
            words(&[
                "XSETID",
                "e",
                "5-2",
                "ENTRIESADDED",
                "2",
                "MAXDELETEDID",
                "5-2"
            ]),
        ]
    );
}

#[test]
fn expired_empty_and_module_keys_write_nothing_they_should_not() {
    let mut r = KeyRewriter::new(
        &RewriteConfig::default(),
        &redis((7, 2, 4)),
        Flavor::Redis,
        NOW,
    );
    let k = info(b"old", ValueKind::String, RDB_TYPE_STRING, Some(NOW));
    let (e, l, o) = one_key(
        &mut r,
        &k,
        &[Piece::String(Elem::Int(1))],
        &end(Some(b"\x00\xc0\x01")),
    );
    assert_eq!((e.len(), l.len(), o), (0, 0, Outcome::Expired));

    let k = info(b"empty", ValueKind::Set, RDB_TYPE_SET, None);
    let empty = KeyEnd {
        encoded_len: 2,
        elements: 0,
        raw: Some(b"\x02\x00"),
        empty: true,
    };
    let (e, l, o) = one_key(&mut r, &k, &[], &empty);
    assert_eq!((e.len(), l.len(), o), (0, 0, Outcome::Empty));

    let module = Piece::Module {
        module: ModuleId {
            id: 1,
            name: *b"ReJSON-RL",
            encver: 3,
        },
    };
    let k = info(b"m", ValueKind::Module, RDB_TYPE_MODULE_2, None);
    let (_, l, o) = one_key(&mut r, &k, &[module], &end(Some(b"\x07\x00")));
    assert_eq!((l.len(), o), (1, Outcome::Restore));
    let (_, l, o) = one_key(&mut r, &k, &[module], &end(None));
    assert_eq!((l.len(), o), (0, Outcome::Skipped));
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        ..RewriteConfig::default()
    };
    let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
    let (_, l, o) = one_key(&mut r, &k, &[module], &end(Some(b"\x07\x00")));
    assert_eq!((l.len(), o), (0, Outcome::Skipped));
    assert_eq!(r.stats().skipped, 1);
}

#[test]
fn a_conditional_commands_write_is_staged_and_moved_in_with_renamenx() {
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        conflict: Conflict::Skip,
        ..RewriteConfig::default()
    };
    let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
    let k = info(b"z", ValueKind::Zset, RDB_TYPE_ZSET_2, Some(NOW + 9));
    let pieces = [
        Piece::ZsetMember {
            member: Elem::Bytes(b"m"),
            score: 0.1,
        },
        Piece::ZsetMember {
            member: Elem::Int(3),
            score: f64::NEG_INFINITY,
        },
    ];
    let (_, late, _) = one_key(&mut r, &k, &pieces, &end(None));
    let st = "{z}:ferry-staging";
    assert_eq!(
        argvs(&late),
        [
            words(&["DEL", st]),
            words(&["ZADD", st, "0.1", "m", "-inf", "3"]),
            words(&["PEXPIREAT", st, &(NOW + 9).to_string()]),
            words(&["RENAMENX", st, "z"]),
            words(&["DEL", st]),
        ]
    );
    assert!(
        matches!(&late.last().expect("guard").kind, CmdKind::Guard { key } if &key[..] == b"z")
    );
}

#[test]
fn big_elements_are_staged_in_a_string_and_moved_by_a_script() {
    // Each SET/APPEND carries batch_bytes of the value (3 here), whatever the chunks: the
    // 3-byte chunks below go one per command, the 2-byte ones are split and joined.
    let cfg = RewriteConfig {
        mode: ValueMode::Commands,
        batch_bytes: 3,
        ..RewriteConfig::default()
    };
    let mut r = KeyRewriter::new(&cfg, &redis((7, 2, 4)), Flavor::Redis, NOW);
    let k = info(b"h", ValueKind::Hash, RDB_TYPE_HASH, None);
    let pieces = [
        Piece::HashField {
            field: Elem::Bytes(b"a"),
            value: Elem::Bytes(b"1"),
            expire_ms: None,
        },
        Piece::BigStart {
            role: crate::rdb::BigRole::HashValue,
            len: 6,
            field: Some(b"big"),
            field_expire_ms: None,
        },
        Piece::Chunk(b"abc"),
        Piece::Chunk(b"def"),
        Piece::HashField {
            field: Elem::Bytes(b"b"),
            value: Elem::Bytes(b"2"),
            expire_ms: None,
        },
    ];
    // With a small batch_bytes commands leave as they fill; what matters is their order.
    let (mut all, late, _) = one_key(&mut r, &k, &pieces, &end(None));
    all.extend(late);
    let a = argvs(&all);
    let tmp = "{h}:ferry-element";
    assert_eq!(a[0], words(&["DEL", "h"]));
    assert_eq!(a[1], words(&["HSET", "h", "a", "1"]));
    assert_eq!(a[2], words(&["SET", tmp, "abc"]));
    assert_eq!(a[3], words(&["APPEND", tmp, "def"]));
    assert_eq!(a[4][0], "EVAL");
    assert_eq!(a[4][2..], words(&["2", "h", tmp, "big"]));
    assert_eq!(a[5], words(&["HSET", "h", "b", "2"]));

    // A big string value: SET then APPENDs on the key itself, 3 bytes each, whatever the
    // chunks: two of 2 bytes; then one of 1 byte, one spanning three commands, one of 2.
    let mut big_string = |chunks: &[&'static [u8]]| {
        let k = info(b"s", ValueKind::String, RDB_TYPE_STRING, None);
        let mut pieces = vec![Piece::BigStart {
            role: crate::rdb::BigRole::StringValue,
            len: chunks.iter().map(|c| c.len() as u64).sum(),
            field: None,
            field_expire_ms: None,
        }];
        pieces.extend(chunks.iter().map(|c| Piece::Chunk(c)));
        let (mut all, late, _) = one_key(&mut r, &k, &pieces, &end(None));
        all.extend(late);
        argvs(&all)
    };
    assert_eq!(
        big_string(&[b"ab", b"cd"]),
        [
            words(&["DEL", "s"]),
            words(&["SET", "s", "abc"]),
            words(&["APPEND", "s", "d"])
        ]
    );
    assert_eq!(
        big_string(&[b"a", b"bcdefgh", b"ij"]),
        [
            words(&["DEL", "s"]),
            words(&["SET", "s", "abc"]),
            words(&["APPEND", "s", "def"]),
            words(&["APPEND", "s", "ghi"]),
            words(&["APPEND", "s", "j"])
        ]
    );
}

#[test]
fn keys_braces_cannot_keep_in_their_slot_are_staged_under_a_computed_tag() {
    // A cluster target; `a}b` and the empty key have no hash tag, and braces around them
    // would change their slot. Before, a conditional write of such a key was skipped and
    // a big element of it was gathered whole; now both go through a staging key whose
    // tag was chosen to hash to the key's slot.
    let mut target = redis((7, 2, 4));
    target.cluster = true;
    let slot = crate::cluster::slot::key_slot;
    for key in [&b"a}b"[..], b""] {
        let cfg = RewriteConfig {
            mode: ValueMode::Commands,
            conflict: Conflict::Skip,
            batch_bytes: 4,
            ..RewriteConfig::default()
        };
        let mut r = KeyRewriter::new(&cfg, &target, Flavor::Redis, NOW);
        let k = info(key, ValueKind::List, RDB_TYPE_LIST_QUICKLIST_2, None);
        let pieces = [
            Piece::ListItem(Elem::Bytes(b"x")),
            Piece::BigStart {
                role: crate::rdb::BigRole::ListItem,
                len: 6,
                field: None,
                field_expire_ms: None,
            },
            Piece::Chunk(b"abcdef"),
        ];
        let (mut all, late, outcome) = one_key(&mut r, &k, &pieces, &end(None));
        all.extend(late);
        assert_eq!(outcome, Outcome::Commands);
        assert_eq!(r.stats().skipped, 0);
        let a = argvs(&all);
        let key = String::from_utf8_lossy(key).into_owned();
        let stage = a[0][1].clone();
        let element = a[2][1].clone();
        assert!(stage.starts_with("{ferry:") && stage.ends_with(":ferry-staging"));
        assert!(element.starts_with("{ferry:") && element.ends_with(":ferry-element"));
        for name in [&stage, &element] {
            assert_eq!(slot(name.as_bytes()), slot(key.as_bytes()), "{name}");
        }
        assert_eq!(a[0], words(&["DEL", &stage]));
        assert_eq!(a[1], words(&["RPUSH", &stage, "x"]));
        // The element passes in pieces of batch_bytes, never whole.
        assert_eq!(a[2], words(&["SET", &element, "abcd"]));
        assert_eq!(a[3], words(&["APPEND", &element, "ef"]));
        assert_eq!(a[4][0], "EVAL");
        assert_eq!(a[4][2..], words(&["2", &stage, &element]));
        assert_eq!(a[5], words(&["RENAMENX", &stage, &key]));
        assert_eq!(a[6], words(&["DEL", &stage]));
    }
}

#[test]
fn functions_and_scripts() {
    let code = b"#!lua name=lib\nredis.register_function('f', function() return 1 end)";
    assert!(KeyRewriter::function(code, &redis((6, 2, 14))).is_none());
    let cmd = KeyRewriter::function(code, &ServerInfo::new(true, (8, 0, 1))).expect("valkey");
    assert_eq!(
        argvs(&[cmd])[0][..3],
        words(&["FUNCTION", "LOAD", "REPLACE"])[..]
    );
    let cmd = KeyRewriter::lua_script(b"return 1");
    assert_eq!((cmd.db, cmd.kind.clone()), (None, CmdKind::Script));
    assert_eq!(argvs(&[cmd])[0], words(&["SCRIPT", "LOAD", "return 1"]));
}
