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
