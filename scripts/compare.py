#!/usr/bin/env python3
"""Compare two live Redis/Valkey keyspaces key by key (type, value, expiry, db).

    scripts/compare.py [--password-env VAR] [--exclude KEY]... SOURCE TARGET

SOURCE and TARGET are host:port. Exit 0 when equal, 1 when they differ, 2 when they could
not be compared. It shares no code with ferry (a plain RESP client in the standard
library), so it can judge ferry's work; `ferry verify` is the built-in, faster one.

Expiries match within --ttl-tolerance-ms (2000 by default); scores compare as numbers
(servers format doubles differently); streams compare entries and their groups' names,
last-delivered ids and pending counts. A key that changes while it is read shows as a
difference: compare when the sync is consistent and no writes are going on, or exclude
the keys that keep changing (ferry's heartbeat key, for instance).
"""
import argparse
import os
import socket
import sys


class Resp:
    def __init__(self, addr, password=None):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = self.sock.makefile("rb")
        if password:
            self.cmd("AUTH", password)

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.buf.readline()
        if not line:
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)


def dbs_with_keys(c):
    info = c.cmd("INFO", "keyspace").decode()
    return sorted(int(l.split(":")[0][2:]) for l in info.splitlines() if l.startswith("db"))


def keys(c):
    cursor, out = b"0", set()
    while True:
        cursor, batch = c.cmd("SCAN", cursor, "COUNT", 1000)
        out.update(batch)
        if cursor == b"0":
            return out


def value(c, key):
    t = c.cmd("TYPE", key).decode()
    if t == "string":
        v = c.cmd("GET", key)
    elif t == "list":
        v = c.cmd("LRANGE", key, 0, -1)
    elif t == "set":
        v = sorted(c.cmd("SMEMBERS", key))
    elif t == "zset":
        r = c.cmd("ZRANGE", key, 0, -1, "WITHSCORES")
        v = sorted((r[i], float(r[i + 1])) for i in range(0, len(r), 2))
    elif t == "hash":
        r = c.cmd("HGETALL", key)
        v = sorted((r[i], r[i + 1]) for i in range(0, len(r), 2))
    elif t == "stream":
        groups = []
        for g in c.cmd("XINFO", "GROUPS", key):
            d = dict(zip(g[::2], g[1::2]))
            groups.append((d[b"name"], d[b"last-delivered-id"], d[b"pending"]))
        v = (c.cmd("XRANGE", key, "-", "+"), sorted(groups))
    elif t == "none":
        v = None
    else:
        v = c.cmd("DUMP", key)  # module types: the serialized value
    return t, v, c.cmd("PTTL", key)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("--exclude", action="append", default=[], help="a key to leave out")
    ap.add_argument("--ttl-tolerance-ms", type=int, default=2000)
    ap.add_argument("--password-env", help="environment variable holding both passwords")
    a = ap.parse_args()
    pw = os.environ.get(a.password_env) if a.password_env else None
    try:
        src, dst = Resp(a.source, pw), Resp(a.target, pw)
        excluded = {k.encode() for k in a.exclude}
        diffs, total, dbs = [], 0, sorted(set(dbs_with_keys(src)) | set(dbs_with_keys(dst)))
        for db in dbs:
            src.cmd("SELECT", db)
            dst.cmd("SELECT", db)
            ks, kt = keys(src) - excluded, keys(dst) - excluded
            for k in sorted(ks - kt):
                diffs.append("db%d %r: missing on the target" % (db, k))
            for k in sorted(kt - ks):
                diffs.append("db%d %r: only on the target" % (db, k))
            for k in sorted(ks & kt):
                total += 1
                (ts, vs, ps), (tt, vt, pt) = value(src, k), value(dst, k)
                if ts != tt:
                    diffs.append("db%d %r: type %s on the source, %s on the target" % (db, k, ts, tt))
                elif vs != vt:
                    diffs.append("db%d %r: %s values differ" % (db, k, ts))
                elif (ps < 0 or pt < 0) and ps != pt:
                    diffs.append("db%d %r: expiry %d ms vs %d ms" % (db, k, ps, pt))
                elif ps >= 0 and abs(ps - pt) > a.ttl_tolerance_ms:
                    diffs.append("db%d %r: expiry %d ms vs %d ms" % (db, k, ps, pt))
    except (OSError, RuntimeError, ValueError) as e:
        print("compare: cannot compare: %s" % e, file=sys.stderr)
        return 2
    if diffs:
        print("compare: %d differences in %d keys compared:" % (len(diffs), total))
        for d in diffs[:20]:
            print("  " + d)
        return 1
    print("compare: %d keys in %d dbs (%s): all equal (type, value, expiry)"
          % (total, len(dbs), ", ".join("db%d" % d for d in dbs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
