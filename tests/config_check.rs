//! The config file and `ferry check-config`: every error message names the file, the line
//! and the key; the effective config is printed with every password masked; flags win
//! over the file.

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use ferry::cli::{Cli, Command as Sub};
use ferry::config::Config;

mod common;
use common::tmp::TempDir;

/// Parses `text` as `name` and returns the error text (panics if it parses).
fn error_of(text: &str) -> String {
    match Config::parse(text, "bad.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The error names the file, the line and the key, and says `why`.
fn assert_names(text: &str, line: usize, key: &str, why: &str) {
    let e = error_of(text);
    assert!(e.contains("bad.toml"), "no file name in: {e}");
    assert!(
        e.contains(&format!("line {line}")),
        "no `line {line}` in: {e}"
    );
    assert!(e.contains(key), "no key `{key}` in: {e}");
    assert!(e.contains(why), "no `{why}` in: {e}");
}

#[test]
fn syntax_unknown_keys_types_and_enums_are_named_with_their_line() {
    assert_names("[sync]\nwindow_cmd = 3\n", 2, "window_cmd", "unknown field");
    assert_names(
        "[sync]\n\nwindow_cmds = \"many\"\n",
        3,
        "window_cmds",
        "invalid type",
    );
    assert_names("[log]\nformat = \"xml\"\n", 2, "format", "unknown variant");
    assert_names(
        "[transform]\nconflict = \"merge\"\n",
        2,
        "conflict",
        "unknown variant",
    );
    assert_names("[source.tls]\nca = \"x\"\n", 2, "ca", "unknown field");
    assert_names("[nope]\nx = 1\n", 1, "nope", "unknown field");
    assert_names("[sync]\nonce = tru\n", 2, "once", "invalid");
}

#[test]
fn bad_values_are_named_with_their_line() {
    // Every key that must be positive.
    for (section, key) in [
        ("sync", "spool_cap"),
        ("sync", "memory_queue"),
        ("sync", "window_cmds"),
        ("sync", "window_bytes"),
        ("transform", "batch_elems"),
        ("transform", "batch_bytes"),
        ("transform", "restore_max"),
        ("status", "healthz_timeout"),
        ("log", "progress_interval"),
        ("advanced", "chunk_threshold"),
        ("advanced", "max_element"),
        ("advanced", "connect_timeout_ms"),
    ] {
        let float = matches!(key, "healthz_timeout" | "progress_interval");
        let zero = if float { "0.0" } else { "0" };
        assert_names(
            &format!("# c\n[{section}]\n{key} = {zero}\n"),
            3,
            &format!("[{section}] {key}"),
            "must be a positive number",
        );
    }
    for key in ["heartbeat_interval", "drain_timeout"] {
        assert_names(
            &format!("[sync]\n{key} = -1.0\n"),
            2,
            &format!("[sync] {key}"),
            "must be 0 or a positive number",
        );
    }
    assert_names(
        "[sync]\nheartbeat_key = \"\"\n",
        2,
        "[sync] heartbeat_key",
        "must not be empty",
    );
    assert_names(
        "[sync]\nannounce_version = \"\"\n",
        2,
        "[sync] announce_version",
        "must not be empty",
    );
    assert_names(
        "[source]\nurl = \"http://h:1\"\n",
        2,
        "[source] url",
        "scheme `http`",
    );
    assert_names(
        "[target]\nurl = \"redis://h:1/x\"\n",
        2,
        "[target] url",
        "is not a number",
    );
    assert_names(
        "[status]\nlisten = \"localhost\"\n",
        2,
        "[status] listen",
        "is not an address",
    );
    assert_names(
        "[log]\nlevel = \"ferry=loud\"\n",
        2,
        "[log] level",
        "is not a tracing filter",
    );
    assert_names(
        "[source]\npassword = \"a\"\npassword_file = \"/etc/hostname\"\n",
        3,
        "[source] password_file",
        "not both",
    );
    assert_names(
        "[target]\npassword_file = \"/nonexistent/pw\"\n",
        2,
        "[target] password_file",
        "/nonexistent/pw",
    );
    assert_names(
        "[source.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
        2,
        "[source.tls] ca_file",
        "/nonexistent/ca.pem",
    );
    assert_names(
        "[target.tls]\ncert_file = \"/etc/hostname\"\n",
        1,
        "[target.tls] key_file",
        "needs both cert_file and key_file",
    );
    assert_names(
        "[target.tls]\nserver_name = \"not a name!\"\n",
        2,
        "[target.tls] server_name",
        "is not a DNS name",
    );
}

#[test]
fn environment_expansion_errors_name_the_key() {
    assert_names(
        "[source]\nurl = \"redis://h:1\"\npassword = \"${FERRY_TEST_SURELY_UNSET}\"\n",
        3,
        "[source] password",
        "FERRY_TEST_SURELY_UNSET is not set",
    );
    assert_names(
        "[target]\nuser = \"${OOPS\"\n",
        2,
        "[target] user",
        "unclosed",
    );
}

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

#[test]
fn check_config_prints_the_effective_config_with_passwords_masked() {
    let dir = TempDir::new("check-config");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "filesecret\n").unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"redis://app:urlsecret@10.0.0.1:6379\"\npassword = \"${{FERRY_CC_PW}}\"\n\
             [target]\nurl = \"rediss://10.0.0.2:6380/2\"\npassword_file = \"{}\"\n[sync]\nwindow_cmds = 64\n",
            pw_file.display()
        ),
    )
    .unwrap();
    let out = ferry()
        .arg("check-config")
        .arg(&path)
        .env("FERRY_CC_PW", "envsecret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for secret in ["urlsecret", "envsecret", "filesecret"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} shown:\n{stderr}");
    }
    // The printed config is itself a valid config, with the values given and the defaults.
    let back = Config::parse(&stdout, "printed").expect("the printed config parses");
    assert_eq!(back.source.url, "redis://app:***@10.0.0.1:6379");
    assert_eq!(back.source.password.as_deref(), Some("***"));
    assert_eq!(back.target.url, "rediss://10.0.0.2:6380/2");
    assert_eq!(back.target.password_file, Some(pw_file));
    assert_eq!(back.sync.window_cmds, 64);
    assert_eq!(back.sync.window_bytes, Config::default().sync.window_bytes);

    // A bad file: exit 2, file + line + key on stderr, nothing on stdout.
    std::fs::write(&path, "[sync]\nwindow_cmds = 0\n").unwrap();
    let out = ferry().arg("check-config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&path.display().to_string())
            && stderr.contains("line 2")
            && stderr.contains("[sync] window_cmds"),
        "{stderr}"
    );
    // A missing file.
    let missing = dir.path().join("missing.toml");
    let out = ferry().arg("check-config").arg(&missing).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read config") && stderr.contains("missing.toml"),
        "{stderr}"
    );
}

#[test]
fn sync_flags_override_the_file() {
    let text = "[source]\nurl = \"redis://file-src:1\"\n[target]\nurl = \"redis://file-dst:2\"\n\
                [status]\nlisten = \"127.0.0.1:1\"\n[log]\nformat = \"text\"\n";
    let mut cfg = Config::parse(text, "t.toml").unwrap();
    let cli = Cli::try_parse_from([
        "ferry",
        "sync",
        "--config",
        "t.toml",
        "--source",
        "redis://flag-src:3",
        "--target",
        "redis://flag-dst:4",
        "--once",
        "--status-listen",
        "127.0.0.1:2",
        "--log-format",
        "json",
    ])
    .unwrap();
    let Sub::Sync(args) = cli.command else {
        panic!("not sync")
    };
    assert_eq!(args.config, Some(PathBuf::from("t.toml")));
    args.apply_to(&mut cfg);
    assert_eq!(cfg.source.url, "redis://flag-src:3");
    assert_eq!(cfg.target.url, "redis://flag-dst:4");
    assert!(cfg.sync.once);
    assert_eq!(cfg.status.listen.as_deref(), Some("127.0.0.1:2"));
    assert_eq!(cfg.log.format, ferry::config::LogFormatCfg::Json);
    // Flags are validated like the file: a bad flag value is refused by `ferry sync`.
    let out = ferry()
        .args(["sync", "--source", "redis://h:1", "--target", "redis://h:2"])
        .args(["--status-listen", "nowhere"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[status] listen"), "{stderr}");
}
