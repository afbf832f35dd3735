#!/usr/bin/env bash
# Full-sync throughput into and out of a 3-master cluster, against the cluster's own
# ingest ceiling measured in the same run (all processes on this host).
#
#   scripts/bench-cluster.sh [KEYS]        (default 1000000 strings of 100 bytes; SERVER=redis-7.2)
#
#   ceiling            : the same SET commands, split by slot into one file per master,
#                        sent with `redis-cli --pipe` to every master in parallel
#   standalone->cluster: the commands loaded into a standalone source, then
#                        `ferry sync --once` into the empty cluster (wall time to exit)
#   cluster->cluster   : the commands loaded into a 3-master source cluster, then
#                        `ferry sync --once` (one replica link per source master)
# Printed: keys/s and MB/s of RESP commands for each, and ferry / ceiling; then the CPU
# every process spent during each ferry run and the bound it implies (servers and ferry
# share the machine's cores; the ceiling's run has them to the target masters alone).
# FERRY_WRAP="perf record -g -o /tmp/ferry.perf --" profiles the standalone -> cluster run.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${SERVER:-redis-7.2}
KEYS=${1:-1000000}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
scripts/servers.sh "$CACHE" "$SERVER" >/dev/null
BIN=$CACHE/bin/$SERVER
CLI=$CACHE/bin/redis-cli
cargo build --release -q
FERRY=${CARGO_TARGET_DIR:-$PWD/target}/release/ferry

. scripts/lib.sh
work_dir ferry-bench-cluster

# A free port whose cluster bus port (+10000) is free too (lib.sh's free_port is not enough).
free_port() { python3 -c '
import random, socket
while True:
    p = random.randint(20000, 45000)
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 10000))
        print(p); break
    except OSError:
        pass'; }
start() { # NAME PORT [extra args] -> starts a server
  local name=$1 port=$2; shift 2
  start_server "$name" "$BIN" "$port" --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
               --client-output-buffer-limit "replica 0 0 0" "$@"
}
cluster() { # NAME ARRAY -> starts 3 masters (in this shell, so cleanup stops them), ports into ARRAY
  local -n ports=$2
  local i
  ports=()
  for i in 0 1 2; do
    ports+=("$(free_port)")
    start "$1-$i" "${ports[$i]}" --cluster-enabled yes --cluster-config-file nodes.conf
  done
  for i in 0 1 2; do
    "$CLI" -p "${ports[$i]}" CLUSTER ADDSLOTSRANGE $((i * 16384 / 3)) $(((i + 1) * 16384 / 3 - 1)) >/dev/null
  done
  for i in 1 2; do "$CLI" -p "${ports[$i]}" CLUSTER MEET 127.0.0.1 "${ports[0]}" >/dev/null; done
  for _ in $(seq 1 400); do
    local ok=0
    for i in 0 1 2; do "$CLI" -p "${ports[$i]}" CLUSTER INFO | grep -q "cluster_state:ok" && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && return
    sleep 0.05
  done
  echo "cluster $1 not ok" >&2; exit 1
}

# The commands: one file for all, and one per master (slot ranges as `cluster` assigns).
python3 - "$KEYS" "$WORK" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
tab = []
for i in range(256):
    c = i << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    tab.append(c)
def slot(k):
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    c = 0
    for b in k:
        c = ((c << 8) & 0xFFFF) ^ tab[((c >> 8) ^ b) & 0xFF]
    return c & 16383
bounds = [(i * 16384 // 3, (i + 1) * 16384 // 3 - 1) for i in range(3)]
v = b"v" * 100
allf = open(f"{work}/all.resp", "wb", buffering=1 << 20)
parts = [open(f"{work}/part{i}.resp", "wb", buffering=1 << 20) for i in range(3)]
for i in range(n):
    k = b"key:%012d" % i
    c = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v)
    allf.write(c)
    s = slot(k)
    parts[next(j for j, (a, b) in enumerate(bounds) if a <= s <= b)].write(c)
PY
BYTES=$(stat -c %s "$WORK/all.resp")
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }
dbsize() { local t=0 p; for p in "$@"; do t=$((t + $("$CLI" -p "$p" DBSIZE))); done; echo "$t"; }
pipe_parts() { # PORTS...
  local i=0 p pids=()
  for p in "$@"; do "$CLI" -p "$p" --pipe < "$WORK/part$i.resp" >/dev/null & pids+=($!); i=$((i + 1)); done
  wait "${pids[@]}"
}
flush() { local p; for p in "$@"; do "$CLI" -p "$p" FLUSHALL >/dev/null; done; }

cluster dst DST
cluster src SRC
SP=$(free_port); start standalone "$SP"
DSTP=("${PIDS[@]:0:3}") SRCP=("${PIDS[@]:3:3}") SPP=${PIDS[6]}

echo "== $SERVER: $KEYS keys of 100 B ($(awk -v b="$BYTES" 'BEGIN { printf "%.0f MB of commands", b / 1e6 }')), ferry $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores"
d0=$(cpu_seconds "${DSTP[@]}")
t0=$(now); pipe_parts "${DST[@]}"; CEIL=$(since "$t0")
CEIL_CPU=$(cpu_since "$d0" "${DSTP[@]}")
[ "$(dbsize "${DST[@]}")" = "$KEYS" ] || { echo "ceiling run lost keys" >&2; exit 1; }
flush "${DST[@]}"

"$CLI" -p "$SP" --pipe < "$WORK/all.resp" >/dev/null
c0=$(cpu_seconds "$SPP"); d0=$(cpu_seconds "${DSTP[@]}")
t0=$(now)
/usr/bin/time -f "%U %S" -o "$WORK/cpu-s2c" ${FERRY_WRAP:-} "$FERRY" sync --once ${FERRY_BENCH_CONFIG:+--config "$FERRY_BENCH_CONFIG"} --source "redis://127.0.0.1:$SP" --target "redis://127.0.0.1:${DST[0]}" 2> "$WORK/ferry-s2c.log"
S2C=$(since "$t0")
child_reaped "$SP"
S2C_CPU=("$(cpu_since "$c0" "$SPP")" "$(cpu_since "$d0" "${DSTP[@]}")" "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/cpu-s2c")")
[ "$(dbsize "${DST[@]}")" = "$KEYS" ] || { echo "standalone->cluster copied $(dbsize "${DST[@]}") of $KEYS" >&2; exit 1; }
flush "${DST[@]}"

pipe_parts "${SRC[@]}"
c0=$(cpu_seconds "${SRCP[@]}"); d0=$(cpu_seconds "${DSTP[@]}")
t0=$(now)
/usr/bin/time -f "%U %S" -o "$WORK/cpu-c2c" "$FERRY" sync --once ${FERRY_BENCH_CONFIG:+--config "$FERRY_BENCH_CONFIG"} --source "redis://127.0.0.1:${SRC[0]}" --target "redis://127.0.0.1:${DST[0]}" 2> "$WORK/ferry-c2c.log"
C2C=$(since "$t0")
for p in "${SRC[@]}"; do child_reaped "$p"; done
C2C_CPU=("$(cpu_since "$c0" "${SRCP[@]}")" "$(cpu_since "$d0" "${DSTP[@]}")" "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/cpu-c2c")")
[ "$(dbsize "${DST[@]}")" = "$KEYS" ] || { echo "cluster->cluster copied $(dbsize "${DST[@]}") of $KEYS" >&2; exit 1; }

awk -v k="$KEYS" -v b="$BYTES" -v c="$CEIL" -v s="$S2C" -v x="$C2C" 'BEGIN {
  mb = b / 1e6
  printf "ceiling (3 x redis-cli --pipe, by slot): %9.0f keys/s %7.1f MB/s (%.2f s)\n", k / c, mb / c, c
  printf "standalone -> cluster (ferry --once):   %9.0f keys/s %7.1f MB/s (%.2f s) | ratio %.2f\n", k / s, mb / s, s, c / s
  printf "cluster -> cluster    (ferry --once):   %9.0f keys/s %7.1f MB/s (%.2f s) | ratio %.2f\n", k / x, mb / x, x, c / x
}'
echo "CPU of the target masters during the ceiling's run: $CEIL_CPU s"
echo "CPU during standalone -> cluster: source ${S2C_CPU[0]} s (with its snapshot child), target masters ${S2C_CPU[1]} s, ferry ${S2C_CPU[2]} s"
echo "  = $(cpu_floor "$CEIL" "$S2C" "${S2C_CPU[@]}")"
echo "CPU during cluster -> cluster: source masters ${C2C_CPU[0]} s (with their snapshot children), target masters ${C2C_CPU[1]} s, ferry ${C2C_CPU[2]} s"
echo "  = $(cpu_floor "$CEIL" "$C2C" "${C2C_CPU[@]}")"
