#!/usr/bin/env bash
# Decode speed against the server's own loader, on the same ≥ 1 GiB RDB, in one run.
#
#   scripts/bench-rdb.sh [KEYS] [VALUE_BYTES]      (defaults: 9500000 keys of 100 bytes ≈ 1.09 GB)
#   COMPRESS=yes scripts/bench-rdb.sh             (LZF-compressed values: a smaller file)
#
# A real server (SERVER=redis-7.2 from the servers cache by default) generates the file
# with DEBUG POPULATE and SAVE. Then, three times each, best run kept:
#   * ferry:  `ferry rdb inspect FILE --format summary` (decode every key, CRC checked)
#   * server: a fresh server started on the file; the load time is the one it logs
#             ("DB loaded from disk: N seconds"), i.e. its own RDB loader.
# Prints MB/s for both and ferry's speed as a multiple of the server's.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${1:-9500000}
VALUE=${2:-100}
SERVER=${SERVER:-redis-7.2}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
scripts/servers.sh "$CACHE" >/dev/null
BIN=$CACHE/bin/$SERVER
[ -x "$BIN" ] || { echo "no $SERVER in $CACHE (run scripts/servers.sh)" >&2; exit 1; }
CLI=$CACHE/bin/redis-cli

cargo build --release -q
FERRY=$PWD/target/release/ferry

. scripts/lib.sh
work_dir ferry-bench

wait_ready() { # PORT
  for _ in $(seq 1 6000); do
    r=$("$CLI" -p "$1" PING 2>/dev/null || true)
    [ "$r" = PONG ] && return 0
    sleep 0.05
  done
  echo "server on port $1 did not come up" >&2; return 1
}

start() { # DIR PORT [args]
  local dir=$1 port=$2; shift 2
  "$BIN" --port "$port" --bind 127.0.0.1 --dir "$dir" --dbfilename dump.rdb --save "" \
         --appendonly no --daemonize no --logfile "$dir/log" "$@" &
  PIDS+=($!)
}

echo "== generating $KEYS keys of $VALUE bytes with $SERVER ($("$BIN" --version | awk '{print $3}'))"
mkdir -p "$WORK/gen"
PORT=$(free_port)
# rdbcompression off by default: DEBUG POPULATE values are mostly padding, which LZF
# shrinks ~4x; COMPRESS=yes measures the LZF path instead (smaller file).
start "$WORK/gen" "$PORT" --enable-debug-command yes --rdbcompression "${COMPRESS:-no}"
wait_ready "$PORT"
"$CLI" -p "$PORT" DEBUG POPULATE "$KEYS" key "$VALUE" >/dev/null
"$CLI" -p "$PORT" SAVE >/dev/null
"$CLI" -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
FILE=$WORK/gen/dump.rdb
SIZE=$(stat -c %s "$FILE")
echo "   RDB: $SIZE bytes"

best() { sort -g | head -1; }

echo "== ferry rdb inspect --format summary (3 runs)"
FT=$(for _ in 1 2 3; do
  s=$(date +%s.%N); "$FERRY" rdb inspect "$FILE" --format summary >/dev/null; e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'
done | best)

echo "== $SERVER loading the same file (3 runs)"
ST=$(for i in 1 2 3; do
  d=$WORK/load$i; mkdir -p "$d"; ln "$FILE" "$d/dump.rdb"
  p=$(free_port); start "$d" "$p"; wait_ready "$p"
  sed -n 's/.*DB loaded from disk: \([0-9.]*\) seconds.*/\1/p' "$d/log" | tail -1
  "$CLI" -p "$p" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
done | best)

awk -v size="$SIZE" -v ft="$FT" -v st="$ST" -v keys="$KEYS" -v val="$VALUE" 'BEGIN {
  mb = size / 1e6
  printf "\nRDB %.0f MB (%d keys x %d B)\n", mb, keys, val
  printf "ferry decode : %6.3f s  %8.0f MB/s\n", ft, mb / ft
  printf "server load  : %6.3f s  %8.0f MB/s\n", st, mb / st
  printf "ratio        : ferry is %.1fx the server loader\n", st / ft
}'
