#!/usr/bin/env bash
# The one-command demo of what ferry does today: on a fresh machine it installs a real
# Redis, starts it on a free loopback port, loads sample data of every type, saves an RDB,
# and shows ferry decoding it (summary, then a few keys as JSON lines). Everything it
# starts is stopped and removed at the end, also on failure.
#
#   scripts/demo.sh            (SERVER=valkey-9.1 scripts/demo.sh for another version)
#
# The blue/green sync demo replaces this once `ferry sync` lands.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${SERVER:-redis-7.2}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}

echo "== installing $SERVER (cached in $CACHE)"
scripts/servers.sh "$CACHE" "$SERVER" >/dev/null
BIN=$CACHE/bin/$SERVER
CLI=$CACHE/bin/redis-cli
[ -x "$CLI" ] || CLI=$CACHE/bin/valkey-cli
echo "== building ferry"
cargo build --release -q
FERRY=$PWD/target/release/ferry

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no \
       --daemonize no --logfile "$WORK/log" &
PID=$!
for _ in $(seq 1 200); do [ "$("$CLI" -p "$PORT" PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
r() { "$CLI" -p "$PORT" "$@" >/dev/null; }

echo "== loading sample data into $SERVER on 127.0.0.1:$PORT"
r SET greeting "hello, ferry"
r SET counter 42
r SET session:1 "expires in an hour" EX 3600
r RPUSH queue job1 job2 job3
r SADD tags redis valkey migration
r ZADD board 1.5 alice 2.25 bob inf carol
r HSET user:1 name Ada email ada@example.com
r XADD events '*' type signup user 1
r XGROUP CREATE events workers 0
r XREADGROUP GROUP workers w1 COUNT 1 STREAMS events '>'
r SELECT 2
"$CLI" -p "$PORT" -n 2 SET other-db "db 2 works too" >/dev/null
r SAVE

echo "== ferry rdb inspect --format summary"
"$FERRY" rdb inspect "$WORK/dump.rdb" --format summary --top 3
echo "== ferry rdb inspect   (one JSON object per key)"
"$FERRY" rdb inspect "$WORK/dump.rdb"
echo "== done; the server is stopped and $WORK removed"
