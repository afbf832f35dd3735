//! TLS and ACL users on both sides, against real servers started with TLS (the builds of
//! `scripts/servers.sh` that have it: Redis 7.0, 7.2, 7.4 and Valkey 8.0; the others lack
//! the TLS module and are skipped). Certificates are made here with rcgen: a CA, a server
//! certificate per side, a client certificate for the source, which demands one
//! (`tls-auth-clients yes`). The source is reached by a `server_name` that is not its
//! address, the target by its IP address. The servers' plain ports serve the harness,
//! which compares both sides key by key; ferry only ever speaks TLS to them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::dataset::{fill, read_back};
use common::ferry::{self, master_offset};
use common::{assert_models_equal, installed_servers, Client, Server, ServerSpec, TempDir};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// Writes `<name>.pem` and `<name>.key` signed by `ca` for `names` (DNS names or IPs).
fn issue(dir: &Path, ca: &Ca, name: &str, names: &[&str], client: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A server with a TLS port besides its plain one, or None when the build has no TLS.
fn start_tls(
    spec: &ServerSpec,
    dir: &Path,
    ca_pem: &Path,
    name: &str,
    sans: &[&str],
    auth_clients: bool,
    ca: &Ca,
) -> Option<(Server, u16)> {
    let (cert, key) = issue(dir, ca, name, sans, false);
    let port = ferry::free_port().to_string();
    let args = [
        "--tls-port",
        &port,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca_pem.to_str().unwrap(),
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
    ];
    let args: Vec<&str> = args.to_vec();
    let started = std::panic::catch_unwind(|| Server::start(spec, &args));
    started.ok().map(|s| (s, port.parse().unwrap()))
}

/// ACL: an admin for the harness, `user` for ferry with `rules`, the default user off.
fn acl(server: &Server, user: &str, password: &str, rules: &[&str]) -> Client {
    let mut c = server.client();
    c.ok(&[
        "ACL", "SETUSER", "admin", "on", ">adminpw", "~*", "&*", "+@all",
    ]);
    c.ok(&["AUTH", "admin", "adminpw"]);
    let pw = format!(">{password}");
    let mut args = vec!["ACL", "SETUSER", user, "reset", "on", &pw];
    args.extend(rules);
    c.ok(&args);
    c.ok(&["ACL", "SETUSER", "default", "off"]);
    c
}

fn admin(server: &Server) -> Client {
    let mut c = server.client();
    c.ok(&["AUTH", "admin", "adminpw"]);
    c
}

/// The TLS-capable installed servers, newest Redis first, then Valkey.
fn candidates() -> Vec<ServerSpec> {
    let all = installed_servers();
    ["redis-7.2", "valkey-8.0", "redis-7.4", "redis-7.0"]
        .iter()
        .filter_map(|n| all.iter().find(|s| s.name == *n).cloned())
        .collect()
}

#[test]
fn sync_over_tls_with_acl_users_on_both_sides() {
    let dir = TempDir::new("tls");
    let d = dir.path();
    let ca = new_ca("ferry test CA");
    let ca_pem = d.join("ca.pem");
    std::fs::write(&ca_pem, ca.cert.pem()).unwrap();

    // The first two builds that start with TLS: source and target.
    let mut tls_servers = Vec::new();
    for spec in candidates() {
        let n = tls_servers.len();
        let (name, sans, auth): (&str, &[&str], bool) = if n == 0 {
            ("source", &["redis.test"], true)
        } else {
            ("target", &["127.0.0.1"], false)
        };
        match start_tls(&spec, d, &ca_pem, name, sans, auth, &ca) {
            Some(s) => tls_servers.push((spec, s)),
            None => eprintln!("{spec}: no TLS in this build"),
        }
        if tls_servers.len() == 2 {
            break;
        }
    }
    if tls_servers.len() < 2 {
        eprintln!(
            "SKIP: fewer than two installed builds start with TLS ({} found)",
            tls_servers.len()
        );
        return;
    }
    let (dst, (target, target_tls)) = tls_servers.pop().unwrap();
    let (src, (source, source_tls)) = tls_servers.pop().unwrap();
    eprintln!("TLS: {src} (client certificate required) -> {dst}");

    let mut sc = acl(
        &source,
        "ferry-src",
        "src-secret-1",
        &["+psync", "+replconf", "+ping", "+info", "+set", "~ops:*"],
    );
    acl(&target, "ferry-dst", "dst-secret-2", &["~*", "&*", "+@all"]);
    fill(&mut sc, &src);

    let (ccert, ckey) = issue(d, &ca, "ferry-client", &["ferry-client"], true);
    let pw_file = d.join("source.pw");
    std::fs::write(&pw_file, "src-secret-1\n").unwrap();
    let status = format!("127.0.0.1:{}", ferry::free_port());
    let config = d.join("tls.toml");
    let write_config = |target_ca: &Path, insecure: bool| {
        std::fs::write(
            &config,
            format!(
                "[source]\nurl = \"rediss://ferry-src@127.0.0.1:{source_tls}\"\npassword_file = \"{}\"\n\
                 [source.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nserver_name = \"redis.test\"\n\
                 [target]\nurl = \"redis://127.0.0.1:{target_tls}\"\nuser = \"ferry-dst\"\npassword = \"${{FERRY_TLS_TARGET_PW}}\"\n\
                 [target.tls]\nenabled = true\nca_file = \"{}\"\ninsecure_skip_verify = {insecure}\n\
                 [sync]\nheartbeat_interval = 0.2\nheartbeat_key = \"ops:hb\"\n\
                 [status]\nlisten = \"{status}\"\n",
                pw_file.display(),
                ca_pem.display(),
                ccert.display(),
                ckey.display(),
                target_ca.display(),
            ),
        )
        .unwrap();
    };
    write_config(&ca_pem, false);
    let env = [("FERRY_TLS_TARGET_PW", "dst-secret-2")];

    let mut f = ferry::start(d, &config, &status, &[], &env);
    let src_addr = source.addr();
    let want = move || {
        let mut c = Client::connect(src_addr);
        c.ok(&["AUTH", "admin", "adminpw"]);
        master_offset(&mut c)
    };
    f.wait_consistent(want, Duration::from_secs(60));
    // Writes in the stream, over TLS too.
    for i in 0..200 {
        sc.ok(&["SET", &format!("ops:stream:{i}"), &format!("v{i}")]);
        sc.ok(&["HSET", "ops:stream:hash", &format!("f{i}"), "x"]);
    }
    f.wait_consistent(want, Duration::from_secs(60));
    // The heartbeat, written over TLS by the source's restricted user, came back.
    f.wait_status(
        "a heartbeat measured",
        |s| s["stream"]["lag_seconds"].is_f64(),
        Duration::from_secs(30),
    );
    let log_path = f.log.clone();
    let code = f.stop(Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(code.success(), "ferry exited with {code}:\n{log}");
    for secret in ["src-secret-1", "dst-secret-2", "adminpw"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    let dbs = [0, 1, 2, 3, 5];
    let mut expected = read_back(&mut admin(&source), &src, &dbs);
    let mut actual = read_back(&mut admin(&target), &dst, &dbs);
    for m in [&mut expected, &mut actual] {
        m.keys.remove(&(0, b"ops:hb".to_vec()));
    }
    assert!(expected.keys.contains_key(&(0, b"ops:stream:199".to_vec())));
    assert_models_equal(&expected, &actual, 1_000);

    // A CA that did not sign the target's certificate: refused, and said so.
    let other = new_ca("another CA");
    let other_pem = d.join("other-ca.pem");
    std::fs::write(&other_pem, other.cert.pem()).unwrap();
    write_config(&other_pem, false);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .env("FERRY_TLS_TARGET_PW", "dst-secret-2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TLS handshake") && err.contains(&format!("127.0.0.1:{target_tls}")),
        "{err}"
    );
    assert!(!err.contains("dst-secret-2"), "{err}");

    // The same with insecure_skip_verify: it connects, and warns.
    write_config(&other_pem, true);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .env("FERRY_TLS_TARGET_PW", "dst-secret-2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("insecure_skip_verify is set"), "{err}");

    // A wrong password for the ACL user: refused, the password not shown.
    write_config(&ca_pem, false);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .env("FERRY_TLS_TARGET_PW", "wrong-secret-3")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("wrong-secret-3"), "{err}");
    assert!(
        err.to_ascii_uppercase().contains("AUTH") || err.contains("WRONGPASS"),
        "{err}"
    );
}
