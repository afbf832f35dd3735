//! docker/docker-compose.yml and docker/Dockerfile, checked without a container engine:
//! every service, image, port, volume, profile, health check and config path refers to
//! something that exists, and agrees with the configs in config/ (each passes
//! `ferry check-config`, with the service's environment, and points at the right services).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::config::Config;
use ferry::endpoint::Endpoint;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let p = root().join("docker/docker-compose.yml");
    let text = std::fs::read_to_string(&p).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The value after `flag` in a command.
fn flag<'a>(cmd: &'a [String], flag: &str) -> Option<&'a str> {
    cmd.iter()
        .position(|a| a == flag)
        .and_then(|i| cmd.get(i + 1))
        .map(String::as_str)
}

/// `ferry check-config FILE` with `env`: the effective config, or a panic with the error.
fn check_config(file: &Path, env: &BTreeMap<String, String>) -> Config {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("check-config")
        .arg(file)
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Config::parse(&String::from_utf8_lossy(&out.stdout), "check-config output").unwrap()
}

#[test]
fn every_example_config_passes_check_config() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("config")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            check_config(&p, &BTreeMap::new());
            n += 1;
        }
    }
    assert!(n >= 3, "config/ has {n} .toml files");
    for f in ["ferry.toml", "reverse.toml", "cluster.toml"] {
        assert!(root().join("config").join(f).is_file(), "config/{f}");
    }
}

#[test]
fn compose_file_agrees_with_the_configs_and_the_dockerfile() {
    let c = compose();
    let docker_dir = root().join("docker");
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    for want in ["blue", "green", "ferry", "ferry-rollback"] {
        assert!(names.contains(want), "no service {want}");
    }
    assert_eq!(c["services"]["blue"]["image"], "redis:4.0");
    assert_eq!(c["services"]["green"]["image"], "valkey/valkey:8.1");
    assert_eq!(
        strings(&c["services"]["ferry-rollback"]["profiles"]),
        ["rollback"]
    );
    assert!(c["services"]["ferry"]["profiles"].is_null());
    let declared: BTreeSet<String> = c["volumes"]
        .as_mapping()
        .expect("top-level volumes")
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();

    let mut host_ports = BTreeSet::new();
    let mut used_volumes = BTreeSet::new();
    // service -> container ports it publishes
    let mut container_ports: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(svc["image"].is_string(), "{name}: no image");
        let hc = strings(&svc["healthcheck"]["test"]);
        assert!(
            hc.len() >= 2 && hc[0] == "CMD",
            "{name}: no health check: {hc:?}"
        );
        for p in strings(&svc["ports"]) {
            let (host, cont) = p
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: port {p}"));
            let host: u16 = host.parse().unwrap();
            assert!(
                host_ports.insert(host),
                "{name}: host port {host} published twice"
            );
            container_ports
                .entry(name.to_string())
                .or_default()
                .insert(cont.parse().unwrap());
        }
        for v in strings(&svc["volumes"]) {
            let src = v.split(':').next().unwrap();
            if src.starts_with('.') || src.starts_with('/') {
                let p = docker_dir.join(src);
                assert!(
                    p.exists(),
                    "{name}: bind mount {} does not exist",
                    p.display()
                );
            } else {
                assert!(
                    declared.contains(src),
                    "{name}: volume {src} is not declared"
                );
                used_volumes.insert(src.to_string());
            }
        }
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (d, cond) in deps {
                assert!(
                    names.contains(d.as_str().unwrap()),
                    "{name}: depends on {d:?}"
                );
                assert_eq!(cond["condition"], "service_healthy", "{name}");
            }
        }
    }
    assert_eq!(used_volumes, declared, "declared volumes no service uses");

    // The servers answer on their default port inside the network.
    for (svc, cli) in [("blue", "redis-cli"), ("green", "valkey-cli")] {
        assert!(container_ports[svc].contains(&6379), "{svc}");
        assert_eq!(strings(&c["services"][svc]["healthcheck"]["test"])[1], cli);
    }

    // The ferry services: config mounted where the command reads it, valid with the
    // service's environment, pointing at the right services, status published and probed.
    for (svc, file, from, to) in [
        ("ferry", "ferry.toml", "blue", "green"),
        ("ferry-rollback", "reverse.toml", "green", "blue"),
    ] {
        let s = &c["services"][svc];
        let cmd = strings(&s["command"]);
        assert_eq!(cmd[0], "sync", "{svc}");
        let in_container = flag(&cmd, "--config").expect("--config");
        let mount = strings(&s["volumes"])
            .into_iter()
            .find(|v| v.split(':').nth(1) == Some(in_container))
            .unwrap_or_else(|| panic!("{svc}: nothing mounted at {in_container}"));
        let host_file = docker_dir.join(mount.split(':').next().unwrap());
        assert_eq!(
            host_file.canonicalize().unwrap(),
            root().join("config").join(file).canonicalize().unwrap(),
            "{svc}"
        );
        let env: BTreeMap<String, String> = s["environment"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cfg = check_config(&host_file, &env);
        for (side, url, want) in [
            ("source", &cfg.source.url, from),
            ("target", &cfg.target.url, to),
        ] {
            let e = Endpoint::parse(url).unwrap();
            assert_eq!(e.host, want, "{svc}: {side} {url}");
            assert!(
                container_ports[want].contains(&e.port),
                "{svc}: {side} port {} is not {want}'s",
                e.port
            );
        }
        let listen: std::net::SocketAddr = flag(&cmd, "--status-listen")
            .expect("--status-listen")
            .parse()
            .unwrap();
        assert!(
            listen.ip().is_unspecified(),
            "{svc}: status must listen on 0.0.0.0"
        );
        assert!(
            container_ports[svc].contains(&listen.port()),
            "{svc}: status port {} not published",
            listen.port()
        );
        let hc = strings(&s["healthcheck"]["test"]);
        assert_eq!(
            hc[1..],
            [
                "/usr/local/bin/ferry".to_string(),
                "healthcheck".into(),
                format!("127.0.0.1:{}", listen.port())
            ],
            "{svc}"
        );
        assert_eq!(s["image"], c["services"]["ferry"]["image"], "{svc}");
    }

    // The image: built from docker/Dockerfile in the repository root.
    let build = &c["services"]["ferry"]["build"];
    let context = docker_dir.join(build["context"].as_str().unwrap());
    let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
    check_dockerfile(&context, &dockerfile);
}

fn check_dockerfile(context: &Path, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not a multi-stage build");
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let runtime = &lines[last_from..];
    assert!(
        runtime[0].contains("distroless") || runtime[0].contains("scratch"),
        "runtime image: {}",
        runtime[0]
    );
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    for l in &lines {
        if let Some(rest) = l.strip_prefix("COPY ") {
            if rest.contains("--from=") {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    context.join(src).exists(),
                    "Dockerfile copies {src}, which does not exist"
                );
            }
        }
    }
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/ferry\"]"));
    assert!(text.contains("EXPOSE 9121"));
}
