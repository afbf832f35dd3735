#!/usr/bin/env bash
# ferry against RedisShake (sync reader -> redis writer) on the same data, on this machine.
#
#   REDIS_SHAKE=/path/to/redis-shake scripts/bench-vs-redisshake.sh [small|collections|stream|all]
#   COMPARE=0 REDIS_SHAKE=... scripts/bench-vs-redisshake.sh small    (timings only)
#
# RedisShake is not built or installed here: point REDIS_SHAKE at a RedisShake 4.x binary
# (without it the script says so and exits 0; REDIS_SHAKE_VERSION, if set, is printed in the
# header). SERVER=redis-7.2 by default; COMPARE=0 skips the key-by-key check
# (scripts/compare.py, a few minutes for 1M keys).
#
# For each dataset (the same ones as scripts/bench-sync.sh: small = 1M strings × 100 B,
# collections = 20 lists/sets/zsets/hashes of 200k elements), one source is loaded and two
# empty targets are started; then, one tool at a time:
#   ferry       `ferry sync --once` into target A: wall time from start to exit;
#   RedisShake  sync_reader (diskless, as the source offers it) -> redis_writer into target B,
#               with sync_aof = false so that it exits once the snapshot is written (its
#               `--once`): wall time from start to exit;
# both checked complete on their target (DBSIZE, and every element of the collections);
# peak RSS and CPU (user + sys) from /usr/bin/time.
# Both targets are then compared with the source by scripts/compare.py, which shares no code
# with either tool. keys/s, elements/s and MB/s are over the wall time (MB of the RESP
# commands that loaded the source).
# stream: for each tool in turn, a fresh source/target pair, the tool streaming, then three
# redis-benchmark (SET, INCR, LPUSH, 7 clients each) writing to the source for 15 s while a
# heartbeat key is set on the source every 10 ms and polled on the target: lag p50/p99/max
# in ms, each heartbeat waited for as long as it takes; then how long after the load the
# target holds the source's last write, and scripts/compare.py on the pair.
# RedisShake streams with its default try_diskless = false: 4.2.0 sends no REPLCONF ACK
# while its offset is 0 (a fresh source), and Redis 7 starts a diskless replica's stream
# only on its first ACK, so with a diskless transfer the stream would never begin.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${REDIS_SHAKE:-}" ] || [ ! -x "${REDIS_SHAKE:-}" ]; then
  echo "bench-vs-redisshake: skipped: set REDIS_SHAKE to a RedisShake 4.x binary (redis-shake)"
  exit 0
fi

SERVER=${SERVER:-redis-7.2}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
WANT=${1:-all}
COMPARE=${COMPARE:-1}
scripts/servers.sh "$CACHE" "$SERVER" >/dev/null
BIN=$CACHE/bin/$SERVER
CLI=$CACHE/bin/redis-cli
BENCH=$(command -v redis-benchmark || true)
cargo build --release -q
FERRY=${CARGO_TARGET_DIR:-$PWD/target}/release/ferry

. scripts/lib.sh
work_dir ferry-vs-shake
TOOLS=()   # streaming tools: stopped (SIGINT) before lib.sh's cleanup stops the servers
cleanup() { local t; for t in "${TOOLS[@]}"; do stop "$t"; done; _lib_cleanup; }
trap cleanup EXIT

start() { # NAME PORT -> starts a server (the same options as bench-sync.sh)
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of options
  start_server "$1" "$BIN" "$2" --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
               --client-output-buffer-limit "replica 0 0 0" ${SERVER_ARGS:-}
}

gen() { # DATASET FILE -> writes RESP commands, prints the key count
  python3 scripts/gen-dataset.py "$1" "$2"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

complete() { # PORT KEYS DATASET -> true when the target holds the whole dataset
  [ "$("$CLI" -p "$1" DBSIZE 2>/dev/null)" = "$2" ] || return 1
  [ "$3" = collections ] || return 0
  local c n=0 len
  for c in $(seq 0 19); do       # every element: 20 × 200k
    case $((c % 4)) in 0) len=LLEN ;; 1) len=SCARD ;; 2) len=ZCARD ;; *) len=HLEN ;; esac
    n=$((n + $("$CLI" -p "$1" "$len" "coll:$c")))
  done
  [ "$n" = 4000000 ]
}

shake_config() { # NAME SOURCE_PORT TARGET_PORT SYNC_AOF TRY_DISKLESS -> a RedisShake config
  local d=$WORK/$1
  mkdir -p "$d"
  cat > "$d/shake.toml" <<EOF
[sync_reader]
address = "127.0.0.1:$2"
sync_rdb = true
sync_aof = $4
try_diskless = $5

[redis_writer]
address = "127.0.0.1:$3"

[advanced]
dir = "$d/data"
ncpu = 0
pprof_port = 0
status_port = 0
log_file = "shake.log"
log_level = "info"
log_interval = 1
rdb_restore_command_behavior = "panic"
EOF
  echo "$d/shake.toml"
}

row() { # TOOL KEYS ELEMENTS BYTES WALL_S RSS_KB CPU_S
  awk -v t="$1" -v k="$2" -v e="$3" -v b="$4" -v w="$5" -v r="$6" -v c="$7" 'BEGIN {
    printf "  %-11s %9.0f keys/s %9.0f elements/s %7.1f MB/s %7.2f s wall %6.1f MiB peak RSS %6.2f s CPU\n",
      t, k / w, e / w, b / 1e6 / w, w, r / 1024, c }'
}

full_sync() { # DATASET
  local ds=$1 file=$WORK/$1.resp
  local keys; keys=$(gen "$ds" "$file")
  local bytes; bytes=$(stat -c %s "$file")
  local elements=$keys; [ "$ds" = collections ] && elements=4000000
  local sp ta tb
  sp=$(free_port); start "src-$ds" "$sp"
  ta=$(free_port); start "dst-ferry-$ds" "$ta"
  tb=$(free_port); start "dst-shake-$ds" "$tb"
  "$CLI" -p "$sp" --pipe < "$file" >/dev/null
  rm -f "$file"

  # ferry
  local t0; t0=$(now)
  /usr/bin/time -f "%M %U %S" -o "$WORK/rss" "$FERRY" sync --once \
      --source "redis://127.0.0.1:$sp" --target "redis://127.0.0.1:$ta" 2> "$WORK/ferry-$ds.log"
  local ferry_s; ferry_s=$(since "$t0")
  complete "$ta" "$keys" "$ds" || { echo "ferry: target A incomplete" >&2; tail "$WORK/ferry-$ds.log" >&2; exit 1; }
  local ferry_rss ferry_cpu
  ferry_rss=$(cut -d" " -f1 "$WORK/rss")
  ferry_cpu=$(awk '{ printf "%.2f", $2 + $3 }' "$WORK/rss")

  # RedisShake with sync_aof = false: it exits once the snapshot is written (its `--once`)
  local cfg; cfg=$(shake_config "shake-$ds" "$sp" "$tb" false true)
  t0=$(now)
  (cd "$(dirname "$cfg")" && exec /usr/bin/time -f "%M %U %S" -o "$WORK/rss" \
      timeout -s INT -k 10 900 "$REDIS_SHAKE" "$cfg" > shake.out 2>&1) \
    || { echo "RedisShake failed:" >&2; tail "$(dirname "$cfg")/shake.out" >&2; exit 1; }
  local shake_s; shake_s=$(since "$t0")
  complete "$tb" "$keys" "$ds" || { echo "RedisShake: target B incomplete" >&2; tail "$(dirname "$cfg")/shake.out" >&2; exit 1; }
  local shake_rss shake_cpu
  shake_rss=$(cut -d" " -f1 "$WORK/rss")
  shake_cpu=$(awk '{ printf "%.2f", $2 + $3 }' "$WORK/rss")

  echo "$ds: $keys keys, $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB of RESP"
  row ferry "$keys" "$elements" "$bytes" "$ferry_s" "$ferry_rss" "$ferry_cpu"
  row RedisShake "$keys" "$elements" "$bytes" "$shake_s" "$shake_rss" "$shake_cpu"
  awk -v f="$ferry_s" -v s="$shake_s" -v fr="$ferry_rss" -v sr="$shake_rss" -v fc="$ferry_cpu" -v sc="$shake_cpu" 'BEGIN {
    printf "  ferry / RedisShake: speed %.2f×, peak RSS %.2f×, CPU %.2f×\n", s / f, fr / sr, fc / sc }'

  if [ "$COMPARE" != 0 ]; then
    printf "  ferry      "; python3 scripts/compare.py "127.0.0.1:$sp" "127.0.0.1:$ta" || true
    printf "  RedisShake "; python3 scripts/compare.py "127.0.0.1:$sp" "127.0.0.1:$tb" || true
  fi
  local p; for p in "$sp" "$ta" "$tb"; do "$CLI" -p "$p" SHUTDOWN NOSAVE >/dev/null 2>&1 || true; done
}

lag() { # SOURCE_PORT TARGET_PORT SECONDS -> heartbeat lag line
  # A heartbeat (a counter) is set on the source every 10 ms; the target is polled for it; a
  # heartbeat's lag is from its SET until the target shows it or a later one. After SECONDS
  # the heartbeats stop and the ones still unseen are waited for (at most 300 s).
  python3 - "$@" <<'EOF'
import sys, time
sys.path.insert(0, "scripts")
from resp_client import conn, call
sp, tp, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
src, dst = conn(sp), conn(tp)
sent, lags = [], []          # sent[i]: when heartbeat i+1 was set
start = time.perf_counter()
while True:
    now = time.perf_counter()
    if now - start < secs and (not sent or now - sent[-1] >= 0.01):
        call(src, b"SET", b"bench:heartbeat", b"%d" % (len(sent) + 1))
        sent.append(time.perf_counter())
    v = call(dst, b"GET", b"bench:heartbeat")
    seen = int(v) if v else 0
    now = time.perf_counter()
    while len(lags) < min(seen, len(sent)):
        lags.append((now - sent[len(lags)]) * 1000)
    if now - start >= secs and len(lags) == len(sent): break
    if now - start > secs + 300: break
    if len(lags) == len(sent):
        time.sleep(max(0.0, sent[-1] + 0.01 - time.perf_counter()))
    else:
        time.sleep(0.0002)
unseen = len(sent) - len(lags)
lags.sort()
p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
print("%d heartbeats: lag p50 %.2f ms, p99 %.2f ms, max %.2f ms%s" % (len(sent), p(0.5), p(0.99), lags[-1],
      ", %d never seen" % unseen if unseen else ""))
EOF
}

stop() { # PID -> SIGINT (RedisShake 4.2.0 ignores SIGTERM), SIGKILL after 10 s
  kill -INT "$1" 2>/dev/null || return 0
  local _i
  for _i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

commands() { "$CLI" -p "$1" INFO stats | awk -F: '/^total_commands_processed/ { print $2 + 0 }'; }

stream_one() { # TOOL
  local tool=$1 sp tp pid
  sp=$(free_port); start "src-stream-$tool" "$sp"; tp=$(free_port); start "dst-stream-$tool" "$tp"
  if [ "$tool" = ferry ]; then
    "$FERRY" sync --source "redis://127.0.0.1:$sp" --target "redis://127.0.0.1:$tp" 2> "$WORK/ferry-stream.log" &
  else
    local cfg; cfg=$(shake_config shake-stream "$sp" "$tp" true false)
    (cd "$(dirname "$cfg")" && exec "$REDIS_SHAKE" "$cfg" > shake.out 2>&1) &
  fi
  pid=$!
  TOOLS+=("$pid")
  # streaming once a key set after the first one showed on the target shows there too (the
  # first may come in the snapshot)
  local i deadline=$((SECONDS + 60))
  for i in 1 2; do
    "$CLI" -p "$sp" SET bench:ready "$i" >/dev/null
    until [ "$("$CLI" -p "$tp" GET bench:ready)" = "$i" ]; do
      [ "$SECONDS" -lt "$deadline" ] || { echo "stream: $tool did not start streaming" >&2; exit 1; }
      sleep 0.05
    done
  done
  # the load: 15 s of redis-benchmark, heartbeats over the same 15 s
  local c0 t0 lp
  c0=$(commands "$sp"); t0=$(now)
  local t bps=()
  for t in set incr lpush; do     # the three at once, 7 clients each
    timeout 15 "$BENCH" -p "$sp" -c 7 -n 100000000 -r 100000 -t "$t" -q > "$WORK/bench-$tool-$t.out" 2>&1 &
    bps+=($!)
  done
  lag "$sp" "$tp" 15 > "$WORK/lag-$tool" &
  lp=$!
  for t in "${bps[@]}"; do wait "$t" || true; done
  local ops; ops=$(awk -v c="$(commands "$sp")" -v c0="$c0" -v s="$(since "$t0")" 'BEGIN { printf "%.0f", (c - c0) / s }')
  # how long after the load the target holds the source's last write
  t0=$(now)
  "$CLI" -p "$sp" SET bench:done 1 >/dev/null
  deadline=$((SECONDS + 300))
  until [ "$("$CLI" -p "$tp" GET bench:done)" = 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "stream: $tool did not catch up in 300 s" >&2; exit 1; }
    sleep 0.02
  done
  local catchup; catchup=$(since "$t0")
  wait "$lp"
  local line; line=$(cat "$WORK/lag-$tool")
  local hwm; hwm=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
  printf "  %-11s %s; source %s ops/s; caught up %s s after the load; peak RSS %s MiB\n" \
    "$tool" "$line" "$ops" "$catchup" "$hwm"
  if [ "$COMPARE" != 0 ]; then
    printf "  %-11s " "$tool"
    python3 scripts/compare.py --exclude bench:heartbeat "127.0.0.1:$sp" "127.0.0.1:$tp" || true
  fi
  stop "$pid"
  "$CLI" -p "$sp" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  "$CLI" -p "$tp" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
}

stream() {
  [ -n "$BENCH" ] || { echo "stream: redis-benchmark not found (apt-get install redis-tools)"; return; }
  echo "stream: redis-benchmark -r 100000 -t set, incr and lpush at once (7 clients each) into the source for 15 s, a heartbeat every 10 ms"
  stream_one ferry
  stream_one RedisShake
}

echo "== $SERVER -> $SERVER, ferry $(git rev-parse --short HEAD 2>/dev/null || echo '?'), RedisShake ${REDIS_SHAKE_VERSION:-$REDIS_SHAKE}, $(nproc) cores"
for ds in small collections; do
  case "$WANT" in all|"$ds") full_sync "$ds" ;; esac
done
case "$WANT" in all|stream) stream ;; esac
