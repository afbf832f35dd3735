# scripts/lib.sh - what the demo and the bench scripts share. Source it from the repository
# root after setting CLI (a redis-cli):
#
#   work_dir NAME           WORK := a new temp dir; at exit every pid in PIDS is stopped
#                           and WORK removed
#   free_port               a free loopback TCP port
#   start_server NAME BIN PORT [ARGS...]
#                           BIN on 127.0.0.1:PORT in $WORK/NAME (no persistence, log in
#                           $WORK/NAME/log), its pid added to PIDS; returns once it answers
#                           PING, exits 1 with its log otherwise
#   child_reaped PORT       returns once the server there has no snapshot child (so that
#                           its CPU is counted, and the next PSYNC need not wait for it)
#   cpu_seconds PID...      user + system CPU seconds spent so far by those processes and
#                           their waited-for children (a server's snapshot child included)
#   cpu_since BASE PID...   cpu_seconds of those processes minus BASE (an earlier reading)
#   cpu_floor CEIL_S RUN_S CPU_S...
#                           the CPU spent during a run of RUN_S seconds and the bound it
#                           implies: no schedule of these processes on this machine's cores
#                           can finish in less than total CPU / cores, so no ratio to a
#                           ceiling of CEIL_S seconds can be above CEIL_S / that

PIDS=()

work_dir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap _lib_cleanup EXIT
}

_lib_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_server() {
  local name=$1 bin=$2 port=$3
  shift 3
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" \
     --save "" --appendonly no --daemonize no --logfile "$WORK/$name/log" "$@") &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    [ "$("$CLI" -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "$name did not start:" >&2
  tail "$WORK/$name/log" >&2
  exit 1
}

child_reaped() {
  until "$CLI" -p "$1" INFO persistence | grep -q "rdb_bgsave_in_progress:0"; do sleep 0.05; done
  sleep 0.3
}

cpu_seconds() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat"))); done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

cpu_since() {
  local base=$1
  shift
  awk -v a="$base" -v b="$(cpu_seconds "$@")" 'BEGIN { printf "%.2f", b - a }'
}

cpu_floor() {
  local ceil=$1 run=$2
  shift 2
  awk -v c="$ceil" -v r="$run" -v n="$(nproc)" -v all="$*" 'BEGIN {
    k = split(all, v, " "); s = 0; for (i = 1; i <= k; i++) s += v[i]
    printf "%.2f s on %d cores: no run can take less than %.2f s, a ratio of at most %.2f (this run: %.2f of that bound)", s, n, s / n, c / (s / n), (s / n) / r }'
}
