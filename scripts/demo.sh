#!/usr/bin/env bash
# The one-command demo: a blue/green upgrade on real servers, locally.
#
#   scripts/demo.sh            (BLUE=redis-6.2 GREEN=valkey-9.1 by default)
#   FERRY_BIN=path/to/ferry scripts/demo.sh     (use that binary instead of building one;
#                                                 tests/demo.rs runs it this way in CI)
#
# On a fresh machine it installs the two servers (scripts/servers.sh), builds ferry, starts
# blue and green on free loopback ports, loads sample data into blue, starts `ferry sync`
# blue → green with its status page, keeps writing to blue while the sync runs, shows the
# status and the lag metrics until green has caught up, compares green with blue key by key
# (scripts/compare.py: type, value and expiry of every key, in every db; plain RESP, not
# ferry) and with a few redis-cli reads, stops ferry with SIGTERM (it drains and reports its
# final offset) and cleans up — also when something fails. Exit 0 only if green equals blue.
set -euo pipefail
cd "$(dirname "$0")/.."
BLUE=${BLUE:-redis-6.2}
GREEN=${GREEN:-valkey-9.1}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}

say() { printf '\n== %s\n' "$*"; }
say "installing $BLUE and $GREEN (cached in $CACHE)"
scripts/servers.sh "$CACHE" "$BLUE" "$GREEN" >/dev/null
CLI=$CACHE/bin/redis-cli
[ -x "$CLI" ] || CLI=$CACHE/bin/valkey-cli
if [ -n "${FERRY_BIN:-}" ]; then
  FERRY=$FERRY_BIN
else
  say "building ferry"
  cargo build --release -q
  FERRY=$PWD/target/release/ferry
fi

. scripts/lib.sh
work_dir ferry-demo
BP=$(free_port); start_server blue "$CACHE/bin/$BLUE" "$BP"
GP=$(free_port); start_server green "$CACHE/bin/$GREEN" "$GP"
blue() { "$CLI" -p "$BP" "$@"; }
green() { "$CLI" -p "$GP" "$@"; }
echo "blue  = $BLUE on 127.0.0.1:$BP"
echo "green = $GREEN on 127.0.0.1:$GP"

say "loading sample data into blue"
python3 - <<'EOF' > "$WORK/data.resp"
import sys
def cmd(*a):
    a = [x if isinstance(x, bytes) else str(x).encode() for x in a]
    sys.stdout.buffer.write(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a))
for i in range(20000):
    cmd("SET", f"user:{i}:name", f"user number {i}")
for i in range(200):
    cmd("HSET", f"profile:{i}", "email", f"u{i}@example.com", "plan", "pro" if i % 3 else "free")
    cmd("RPUSH", f"queue:{i % 10}", f"job-{i}")
    cmd("SADD", f"tags:{i % 20}", f"tag-{i}")
    cmd("ZADD", "leaderboard", i * 1.5, f"player-{i}")
cmd("SET", "session:abc", "expires in an hour", "EX", 3600)
cmd("XADD", "events", "*", "type", "signup", "user", "1")
cmd("XGROUP", "CREATE", "events", "mailer", "0")
cmd("SELECT", 2)
cmd("SET", "other-db", "db 2 works too")
EOF
blue --pipe < "$WORK/data.resp" | tail -1
echo "blue: $(blue DBSIZE) keys in db 0, $(blue -n 2 DBSIZE) in db 2"

say "ferry sync blue → green (status on http://127.0.0.1:\$STATUS/status)"
SP=$(free_port)
# A config file for what has no flag: the heartbeat (lag in seconds) and progress lines.
cat > "$WORK/ferry.toml" <<CONF
[source]
url = "redis://127.0.0.1:$BP"
[target]
url = "redis://127.0.0.1:$GP"
[sync]
heartbeat_interval = 0.5
heartbeat_key = "ferry:heartbeat"
[status]
listen = "127.0.0.1:$SP"
[log]
progress_interval = 1.0
CONF
"$FERRY" check-config "$WORK/ferry.toml" > /dev/null
"$FERRY" sync --config "$WORK/ferry.toml" 2> "$WORK/ferry.log" &
FERRY_PID=$!
PIDS+=($FERRY_PID)
status() { python3 - "$SP" "$@" <<'EOF'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=2))
if len(sys.argv) > 2:
    print(s[sys.argv[2]] if len(sys.argv) == 3 else s[sys.argv[2]][sys.argv[3]])
else:
    print(f"phase={s['phase']} consistent={s['consistent']} snapshot.keys={s['snapshot']['keys']} "
          f"received={s['stream']['received_offset']} applied={s['stream']['applied_offset']} "
          f"lag_bytes={s['stream']['lag_bytes']} spool_bytes={s['spool_bytes']}")
EOF
}

say "writing to blue while the sync runs (1,000 INCRs and list pushes)"
( for i in $(seq 1 1000); do echo "INCR orders:count"; echo "LPUSH recent-orders order-$i"; done | blue > /dev/null ) &
WRITER=$!
for _ in $(seq 1 6); do sleep 0.5; status 2>/dev/null || echo "(ferry starting)"; done
wait "$WRITER"

say "waiting until green has applied everything blue has"
for _ in $(seq 1 200); do
  want=$(blue INFO replication | tr -d '\r' | sed -n 's/^master_repl_offset://p')
  if [ "$(status consistent 2>/dev/null)" = True ] && [ "$(status stream applied_offset)" -ge "$want" ]; then break; fi
  sleep 0.1
done
status
echo "blue master_repl_offset = $want"
python3 - "$SP" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
show = ("ferry_lag_bytes", "ferry_lag_seconds", "ferry_consistent", "ferry_keys_written_total",
        "ferry_stream_commands_forwarded_total")
for line in text.splitlines():
    if line.split(" ")[0].split("{")[0] in show:
        print("  /metrics " + line)
EOF

say "comparing green with blue key by key (scripts/compare.py, not ferry)"
# The heartbeat key keeps changing on blue while ferry runs: it is left out.
python3 scripts/compare.py --exclude ferry:heartbeat "127.0.0.1:$BP" "127.0.0.1:$GP"

say "a few reads side by side (redis-cli)"
check() { # LABEL CMD...
  local b g; b=$(blue "${@:2}" | tr '\n' ' '); g=$(green "${@:2}" | tr '\n' ' ')
  if [ "$b" = "$g" ]; then echo "  same  $1: ${b:0:80}"; else echo "  DIFF  $1: blue=$b green=$g"; exit 1; fi
}
check "keys in db 0" DBSIZE
check "keys in db 2" -n 2 DBSIZE
check "orders:count" GET orders:count
check "recent-orders length" LLEN recent-orders
check "user:123:name" GET user:123:name
check "profile:7" HGETALL profile:7
check "leaderboard top 3" ZREVRANGE leaderboard 0 2 WITHSCORES
check "events length" XLEN events
check "other-db (db 2)" -n 2 GET other-db
echo "  session:abc TTL blue=$(blue TTL session:abc)s green=$(green TTL session:abc)s"

say "stopping ferry (SIGTERM: drain, report the final offset, exit 0)"
kill -TERM "$FERRY_PID"
wait "$FERRY_PID" && echo "ferry exited 0"
grep -E "snapshot applied|final applied offset" "$WORK/ferry.log" | sed 's/\x1b\[[0-9;]*m//g'
say "done: green ($GREEN) holds blue's ($BLUE) data; everything started here is stopped and removed"
