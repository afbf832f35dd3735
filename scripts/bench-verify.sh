#!/usr/bin/env bash
# Speed of `ferry verify --mode full` against the time it takes to read both datasets with
# plain pipelined commands, measured in the same run on this machine (both servers and the
# reader on one host).
#
#   scripts/bench-verify.sh               (both datasets; SERVER=redis-7.2 by default)
#   scripts/bench-verify.sh small         (one of: small collections)
#   REPEAT=3 scripts/bench-verify.sh      (limit and ferry alternate REPEAT times, default 2;
#                                          the best of each is kept: other load on the
#                                          machine only ever slows a run down)
#
# Datasets, written identically to two servers with `redis-cli --pipe`:
#   small       : 1M strings of 100 bytes
#   collections : 20 collections of 200k elements (5 lists, 5 sets, 5 sorted sets, 5 hashes)
# The limit ("read"): on both servers at once, `redis-cli --scan --count 1000` lists the
# keys, then `redis-cli --pipe` sends TYPE, PTTL and the whole value of every key (GET,
# LRANGE 0 -1, SMEMBERS, ZRANGE 0 -1 WITHSCORES, HGETALL) and reads every reply (hiredis,
# in C). The command files are prepared before the clock starts. Time = scan + read.
# ferry: `ferry verify --rounds 1` on the same pair (wall time, peak RSS); it also checks
# the target for keys the source lacks, which the limit does not do.
# Printed: keys/s (keys of both sides) and MB/s (RESP bytes of both datasets) for both, and
# ferry / limit (the goal is at most 1.5).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${SERVER:-redis-7.2}
CACHE=${FERRY_SERVERS:-$HOME/.cache/ferry/servers}
WANT=${1:-all}
REPEAT=${REPEAT:-2}
scripts/servers.sh "$CACHE" "$SERVER" >/dev/null
BIN=$CACHE/bin/$SERVER
CLI=$CACHE/bin/redis-cli
cargo build --release -q
FERRY=${CARGO_TARGET_DIR:-$PWD/target}/release/ferry

. scripts/lib.sh
work_dir ferry-bench-verify

start() { start_server "$1" "$BIN" "$2"; } # NAME PORT

gen() { # DATASET FILE -> writes RESP commands, prints the key count
  python3 scripts/gen-dataset.py "$1" "$2"
}

reads() { # KEYFILE OUT -> the limit's command file: TYPE, PTTL and the whole value per key
  python3 - "$1" "$2" <<'PY'
import sys
def cmd(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
with open(sys.argv[1], "rb") as keys, open(sys.argv[2], "wb", buffering=1 << 20) as out:
    for line in keys:
        k = line.rstrip(b"\n")
        out.write(cmd(b"TYPE", k) + cmd(b"PTTL", k))
        if not k.startswith(b"coll:"):
            out.write(cmd(b"GET", k))
            continue
        t = int(k.split(b":")[1]) % 4
        out.write([cmd(b"LRANGE", k, b"0", b"-1"), cmd(b"SMEMBERS", k),
                   cmd(b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"), cmd(b"HGETALL", k)][t])
PY
}

now() { date +%s.%N; }
# CPU seconds both servers have used so far (INFO cpu): the servers' work, whatever else
# runs on the machine.
server_cpu() { for p in "$@"; do "$CLI" -p "$p" INFO cpu; done | tr -d '\r' |
  awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f", s }'; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }

limit_once() { # SRC_PORT DST_PORT: scan both, prepare the reads (not timed), read both
  local sp=$1 tp=$2 t0 p1 s r c0
  c0=$(server_cpu "$sp" "$tp")
  t0=$(now)
  "$CLI" -p "$sp" --scan --count 1000 > "$WORK/keys-src" &
  p1=$!
  "$CLI" -p "$tp" --scan --count 1000 > "$WORK/keys-dst"
  wait "$p1"
  s=$(since "$t0")
  reads "$WORK/keys-src" "$WORK/reads-src" & p1=$!
  reads "$WORK/keys-dst" "$WORK/reads-dst"
  wait "$p1"
  t0=$(now)
  "$CLI" -p "$sp" --pipe < "$WORK/reads-src" > "$WORK/pipe-src" & p1=$!
  "$CLI" -p "$tp" --pipe < "$WORK/reads-dst" > "$WORK/pipe-dst"
  wait "$p1"
  r=$(since "$t0")
  grep -q "errors: 0" "$WORK/pipe-src" || { echo "reader errors: $(cat "$WORK/pipe-src")" >&2; exit 1; }
  rm -f "$WORK"/reads-* "$WORK"/keys-*
  local total; total=$(awk -v a="$s" -v b="$r" 'BEGIN { print a + b }')
  limit_cpu=$(awk -v a="$c0" -v b="$(server_cpu "$sp" "$tp")" 'BEGIN { print b - a }')
  if [ -z "$limit_s" ] || awk -v a="$total" -v b="$limit_s" 'BEGIN { exit !(a < b) }'; then
    limit_s=$total; scan_s=$s
  fi
}

ferry_once() { # SRC_PORT DST_PORT
  local t0 rc=0 f c0
  c0=$(server_cpu "$1" "$2")
  t0=$(now)
  /usr/bin/time -f "%M %U %S" -o "$WORK/rss.new" "$FERRY" verify --rounds 1 \
      --source "redis://127.0.0.1:$1" --target "redis://127.0.0.1:$2" > "$WORK/verify.new" 2>&1 || rc=$?
  f=$(since "$t0")
  ferry_cpu=$(awk -v a="$c0" -v b="$(server_cpu "$1" "$2")" 'BEGIN { print b - a }')
  [ "$rc" = 0 ] || { echo "ferry verify exited $rc:"; cat "$WORK/verify.new"; exit 1; } >&2
  if [ -z "$ferry_s" ] || awk -v a="$f" -v b="$ferry_s" 'BEGIN { exit !(a < b) }'; then
    ferry_s=$f; mv "$WORK/rss.new" "$WORK/rss"; mv "$WORK/verify.new" "$WORK/verify.out"
  fi
}

bench() { # DATASET
  local ds=$1 file=$WORK/$1.resp
  local keys; keys=$(gen "$ds" "$file")
  local bytes; bytes=$(stat -c %s "$file")
  local sp tp; sp=$(free_port); start "src-$ds" "$sp"; tp=$(free_port); start "dst-$ds" "$tp"
  "$CLI" -p "$sp" --pipe < "$file" >/dev/null &
  local p1=$!
  "$CLI" -p "$tp" --pipe < "$file" >/dev/null
  wait "$p1"
  rm -f "$file"

  local limit_s="" scan_s="" ferry_s="" r limit_cpu=0 ferry_cpu=0
  for r in $(seq 1 "$REPEAT"); do
    limit_once "$sp" "$tp"
    ferry_once "$sp" "$tp"
  done
  awk -v n="$ds" -v k="$keys" -v b="$bytes" -v l="$limit_s" -v s="$scan_s" -v f="$ferry_s" -v r="$(cut -d" " -f1 "$WORK/rss")" 'BEGIN {
    k2 = 2 * k; mb = 2 * b / 1e6
    printf "%-12s limit (scan %.2f s + pipelined read, both sides; best of '"$REPEAT"'): %9.0f keys/s %7.1f MB/s (%.2f s) | ferry verify: %9.0f keys/s %7.1f MB/s (%.2f s) | ferry/limit %.2f | peak RSS %.1f MiB\n",
      n, s, k2 / l, mb / l, l, k2 / f, mb / f, f, f / l, r / 1024 }'
  echo "             ferry CPU: $(awk '{ printf "user %.2f s, sys %.2f s", $2, $3 }' "$WORK/rss"); $(head -1 "$WORK/verify.out" | sed 's/.*round(s), //')"
  awk -v l="$limit_cpu" -v f="$ferry_cpu" 'BEGIN { printf "             servers CPU (last run of each): limit %.2f s, ferry %.2f s, ferry/limit %.2f\n", l, f, f / l }'
  "$CLI" -p "$sp" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  "$CLI" -p "$tp" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
}

echo "== $SERVER vs $SERVER, ferry $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores"
for ds in small collections; do
  case "$WANT" in all|"$ds") bench "$ds" ;; esac
done
