#!/usr/bin/env bash
# test.sh - run every check CI runs, on a bare Debian machine that has Rust.
#
#   1. installs what the tests need: apt packages only where a tool is missing, then the real
#      Redis / Valkey builds with scripts/servers.sh into $FERRY_SERVERS (a no-op when present)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --all-targets -- -D warnings
#   4. cargo test --all-targets [ARGS...]
#
# Usage: scripts/test.sh [ARGS for cargo test, e.g. harness -- --nocapture]
# Environment:
#   FERRY_SERVERS   server cache (default $HOME/.cache/ferry/servers); exported for the tests
#   FERRY_TEST_TIMEOUT   seconds one test may run before its binary is failed (default 600)
#   FERRY_SUITE_TIMEOUT  seconds the whole `cargo test` may run (default 2700)
#   SKIP_SERVERS=1  do not run the installer (the tests then fail on a missing server unless
#                   FERRY_ALLOW_MISSING_SERVERS=1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[test.sh] %s\n' "$*" >&2; }
die() { printf '[test.sh] ERROR: %s\n' "$*" >&2; exit 1; }

# --- toolchain ------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) and re-run"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"

# --- what scripts/servers.sh needs: pip downloads, C builds of Redis 3.x, apt extraction ----
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 ||
    die "missing ${missing[*]} and no apt-get here: install them with the system's package manager"
  [ "$(id -u)" = 0 ] ||
    die "missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (or run this as root)"
  say "installing ${missing[*]} (apt)"
  log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
      >"$log" 2>&1 < /dev/null; then
    tail -n 25 "$log" >&2
    rm -f "$log"
    die "apt-get install ${missing[*]} failed (output above)"
  fi
  rm -f "$log"
fi

# --- the servers ----------------------------------------------------------------------------
export FERRY_SERVERS=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
if [ -z "${SKIP_SERVERS:-}" ]; then
  scripts/servers.sh "$FERRY_SERVERS" >/dev/null ||
    die "scripts/servers.sh could not install any server into $FERRY_SERVERS (messages above)"
fi
if [ -f "$FERRY_SERVERS/servers.tsv" ]; then
  # the major.minor lines, the ones the tests run
  say "servers in $FERRY_SERVERS: $(cut -f1 "$FERRY_SERVERS/servers.tsv" |
    grep -E '^[a-z]+-[0-9]+\.[0-9]+$' | tr '\n' ' ')"
fi

# --- checks ---------------------------------------------------------------------------------
say "cargo fmt --all -- --check"
cargo fmt --all -- --check || die "formatting differs (diff above): run 'cargo fmt --all'"
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || die "clippy found problems (above)"
say "cargo test --all-targets $*"
log=$(mktemp "${TMPDIR:-/tmp}/ferry-test.XXXXXX")
trap 'rm -f "$log"' EXIT
set +e
# Each test has its own limit (tests/common/watchdog.rs); this one bounds the whole suite.
timeout -k 30 "${FERRY_SUITE_TIMEOUT:-2700}" cargo test --all-targets "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" -ne 124 ] ||
  say "cargo test ran over ${FERRY_SUITE_TIMEOUT:-2700} s (FERRY_SUITE_TIMEOUT) and was stopped"
set -e
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "ferry: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
[ "$rc" -eq 0 ] || die "tests failed (above)"
say "all checks passed"
