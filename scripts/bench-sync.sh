#!/usr/bin/env bash
# Full-sync and stream speed of `ferry sync`, against the target's own ingest ceiling
# measured in the same run, on this machine (source, target and ferry on one host).
#
#   scripts/bench-sync.sh                 (all datasets; SERVER=redis-7.2 by default)
#   scripts/bench-sync.sh small           (one of: small big collections stream)
#   SERVER_ARGS="--rdbcompression no" scripts/bench-sync.sh big
#                                         (extra server options, e.g. a source that does
#                                         not spend its time compressing random bytes)
#   FERRY_WRAP="perf record -g -o /tmp/ferry.perf --" scripts/bench-sync.sh small
#                                         (profiles each full sync's ferry run)
#   FERRY_BENCH_CONFIG=FILE scripts/bench-sync.sh stream
#                                         (ferry runs with that config file too, e.g. with
#                                         [sync] checkpoint = "/tmp/cp" to measure the cost
#                                         of the failover markers it then keeps)
#
# For each dataset the same RESP commands are generated once (python3), then:
#   ceiling : `redis-cli --pipe` of those commands into an empty target (its ingest rate)
#   ferry   : the commands are loaded into the source, then `ferry sync --once` copies the
#             source into an empty target; wall time from start to exit (fork, transfer,
#             decode, apply), ferry's own "snapshot applied" time, and ferry's peak RSS.
#   source  : `redis-cli --rdb` of the loaded source: how fast the source itself produces
#             the snapshot ferry has to read (fork, serialisation, LZF) - the other limit;
#             without LZF when FERRY_BENCH_CONFIG sets uncompressed_snapshot = true
# Printed: keys/s and MB/s (MB of RESP commands) for both, ferry / ceiling, and ferry /
# the slower of the two limits (source snapshot, target ingest). Source, target and ferry
# share the machine's cores, so neither limit is reachable exactly.
# stream: redis-benchmark writes to the source for 20 s while a heartbeat key is set on
# the source every 10 ms and polled on the target: lag p50/p99 in ms, and ops/s.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${SERVER:-redis-7.2}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
WANT=${1:-all}
scripts/servers.sh "$CACHE" "$SERVER" >/dev/null
BIN=$CACHE/bin/$SERVER
CLI=$CACHE/bin/redis-cli
BENCH=$(command -v redis-benchmark || true)
cargo build --release -q
FERRY=$PWD/target/release/ferry

. scripts/lib.sh
work_dir ferry-bench-sync

start() { # NAME PORT -> starts a server
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of options
  start_server "$1" "$BIN" "$2" --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
               --client-output-buffer-limit "replica 0 0 0" ${SERVER_ARGS:-}
}

gen() { # DATASET FILE -> writes RESP commands, prints the key count
  python3 scripts/gen-dataset.py "$1" "$2"
}

now() { date +%s.%N; }
report() { # NAME KEYS BYTES PIPE_S FERRY_S SNAP_S RSS_KB RDB_S
  awk -v n="$1" -v k="$2" -v b="$3" -v p="$4" -v f="$5" -v s="$6" -v r="$7" -v d="$8" 'BEGIN {
    mb = b / 1e6
    printf "%-12s ceiling (redis-cli --pipe): %9.0f keys/s %7.1f MB/s | ferry sync --once: %9.0f keys/s %7.1f MB/s (%.2f s; snapshot %.2f s) | ratio %.2f | ferry peak RSS %.1f MiB\n",
      n, k / p, mb / p, k / f, mb / f, f, s, p / f, r / 1024
    lim = (p > d) ? p : d
    printf "             source snapshot alone (redis-cli --rdb): %.2f s | target ingest alone: %.2f s | ferry / slower limit: %.2f\n", d, p, lim / f }'
}

full_sync() { # DATASET
  local ds=$1 file=$WORK/$1.resp
  local keys; keys=$(gen "$ds" "$file")
  local bytes; bytes=$(stat -c %s "$file")
  local sp tp; sp=$(free_port); start "src-$ds" "$sp"; tp=$(free_port); start "dst-$ds" "$tp"
  local spid=${PIDS[-2]} tpid=${PIDS[-1]}
  # The ceiling: the target ingesting the same commands.
  local t0; t0=$(now)
  local dst_pipe0; dst_pipe0=$(cpu_seconds "$tpid")
  "$CLI" -p "$tp" --pipe < "$file" >/dev/null
  local pipe_s; pipe_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
  local dst_pipe; dst_pipe=$(cpu_since "$dst_pipe0" "$tpid")
  "$CLI" -p "$tp" FLUSHALL >/dev/null
  "$CLI" -p "$sp" --pipe < "$file" >/dev/null
  rm -f "$file"
  # The other limit: the source producing the snapshot, read by redis-cli as fast as it can.
  # With ferry's uncompressed_snapshot, the snapshot ferry gets is an uncompressed one: so
  # is the one timed here.
  local unc=""
  if [ -n "${FERRY_BENCH_CONFIG:-}" ] &&
     grep -Eq '^[[:space:]]*uncompressed_snapshot[[:space:]]*=[[:space:]]*true' "$FERRY_BENCH_CONFIG"; then
    unc=1
    "$CLI" -p "$sp" CONFIG SET rdbcompression no >/dev/null
  fi
  local src_rdb0; src_rdb0=$(cpu_seconds "$spid")
  t0=$(now)
  "$CLI" -p "$sp" --rdb /dev/null >/dev/null 2>&1 || true  # it complains it cannot fsync /dev/null
  local rdb_s; rdb_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
  [ -z "$unc" ] || "$CLI" -p "$sp" CONFIG SET rdbcompression yes >/dev/null
  # The snapshot child of that read must be gone: else ferry's PSYNC waits for the source's
  # next replication cron (up to 1 s) to fork again, and the child's CPU lands in ferry's run.
  child_reaped "$sp"
  local src_rdb; src_rdb=$(cpu_since "$src_rdb0" "$spid")
  local src0 dst0; src0=$(cpu_seconds "$spid"); dst0=$(cpu_seconds "$tpid")
  t0=$(now)
  /usr/bin/time -f "%M %U %S" -o "$WORK/rss" ${FERRY_WRAP:-} "$FERRY" sync --once ${FERRY_BENCH_CONFIG:+--config "$FERRY_BENCH_CONFIG"} \
      --source "redis://127.0.0.1:$sp" --target "redis://127.0.0.1:$tp" 2> "$WORK/ferry-$ds.log"
  local ferry_s; ferry_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
  child_reaped "$sp"  # and its CPU counted in the source's
  local src dst fe
  src=$(cpu_since "$src0" "$spid"); dst=$(cpu_since "$dst0" "$tpid")
  fe=$(awk '{ printf "%.2f", $2 + $3 }' "$WORK/rss")
  local snap_s; snap_s=$(sed -n 's/.*snapshot applied: .* in \([0-9.]*\) s .*/\1/p' "$WORK/ferry-$ds.log" | tail -1)
  local got; got=$("$CLI" -p "$tp" DBSIZE)
  [ "$got" = "$keys" ] || { echo "ferry copied $got keys of $keys" >&2; exit 1; }
  report "$ds" "$keys" "$bytes" "$pipe_s" "$ferry_s" "${snap_s:-0}" "$(cut -d" " -f1 "$WORK/rss")" "$rdb_s"
  echo "             ferry CPU: $(awk "{ printf \"user %.2f s, sys %.2f s\", \$2, \$3 }" "$WORK/rss")"
  # The CPU the servers spent during ferry's run: with ferry's own, the time no schedule of
  # these processes on this machine's cores could beat.
  echo "             CPU during the sync: source $src s (with its snapshot child), target $dst s, ferry $fe s = $(cpu_floor "$pipe_s" "$ferry_s" "$src" "$dst" "$fe")"
  # The best any replica could do here, whatever it costs itself: the source must still
  # produce the snapshot (its CPU in the --rdb read) and the target ingest the data (its
  # CPU in the --pipe), on the same cores, and no faster than the source alone did.
  awk -v c="$pipe_s" -v d="$rdb_s" -v s="$src_rdb" -v t="$dst_pipe" -v n="$(nproc)" 'BEGIN {
    b = (s + t) / n; if (d > b) b = d
    printf "             a replica that cost nothing: source snapshot %.2f s CPU (%.2f s wall) + target ingest %.2f s CPU on %d cores: no less than %.2f s, a ratio of at most %.2f\n", s, d, t, n, b, c / b }'
  "$CLI" -p "$sp" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  "$CLI" -p "$tp" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
}

stream() {
  [ -n "$BENCH" ] || { echo "stream: redis-benchmark not found (apt-get install redis-tools)"; return; }
  local sp tp; sp=$(free_port); start src-stream "$sp"; tp=$(free_port); start dst-stream "$tp"
  "$FERRY" sync ${FERRY_BENCH_CONFIG:+--config "$FERRY_BENCH_CONFIG"} --source "redis://127.0.0.1:$sp" --target "redis://127.0.0.1:$tp" 2> "$WORK/ferry-stream.log" &
  local fp=$!
  sleep 2
  # A steady load: SET/INCR/LPUSH from 20 clients, for about 20 s.
  "$BENCH" -p "$sp" -c 20 -n 1200000 -r 100000 -t set,incr,lpush -q > "$WORK/bench.out" 2>&1 &
  local bp=$!
  python3 - "$sp" "$tp" 20 <<'EOF'
import sys, time
sys.path.insert(0, "scripts")
from resp_client import conn, call
sp, tp, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
src, dst = conn(sp), conn(tp)
lags, ops = [], []
t_end = time.time() + secs
i = 0
last_cmds = call(src, b"INFO", b"stats")
while time.time() < t_end:
    i += 1
    v = str(i).encode()
    t0 = time.perf_counter()
    call(src, b"SET", b"ferry:heartbeat", v)
    while call(dst, b"GET", b"ferry:heartbeat") != v:
        if time.perf_counter() - t0 > 5: break
    lags.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.01)
info = call(src, b"INFO", b"stats").decode()
ops = [l for l in info.split("\r\n") if l.startswith("instantaneous_ops_per_sec")]
lags.sort()
p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
print("stream       %d heartbeats: lag p50 %.2f ms, p99 %.2f ms, max %.2f ms; source %s" % (len(lags), p(0.5), p(0.99), lags[-1], ops[0] if ops else ""))
EOF
  kill "$bp" 2>/dev/null || true; wait "$bp" 2>/dev/null || true
  grep -E "requests per second" "$WORK/bench.out" | tr '\r' '\n' | grep -E "requests per second" | tail -3 | sed 's/^/             redis-benchmark /'
  local hwm; hwm=$(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$fp/status")
  kill -TERM "$fp"; wait "$fp" || true
  echo "             ferry peak RSS $hwm"
}

echo "== $SERVER -> $SERVER, ferry $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores"
for ds in small big collections; do
  case "$WANT" in all|"$ds") full_sync "$ds" ;; esac
done
case "$WANT" in all|stream) stream ;; esac
