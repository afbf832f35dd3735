#!/usr/bin/env python3
"""The benchmark datasets as RESP commands, shared by scripts/bench-sync.sh,
scripts/bench-verify.sh and scripts/bench-vs-redisshake.sh.

    gen-dataset.py small|big|collections FILE    (prints the number of keys)

small:       1M strings of 100 bytes
big:         200 strings of 5 MiB (random bytes, so that compression does not hide them)
collections: 20 collections of 200k elements (5 each of list, set, sorted set, hash)
"""
import os
import sys


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    keys = 0
    with open(path, "wb", buffering=1 << 20) as f:
        if kind == "small":
            v = b"v" * 100
            for i in range(1_000_000):
                f.write(cmd(b"SET", b"key:%012d" % i, v))
            keys = 1_000_000
        elif kind == "big":
            block = os.urandom(5 << 20)
            for i in range(200):
                f.write(cmd(b"SET", b"big:%d" % i, block[i:] + block[:i]))
            keys = 200
        elif kind == "collections":
            for c in range(20):
                t = c % 4
                key = b"coll:%d" % c
                for start in range(0, 200_000, 1000):
                    ids = range(start, start + 1000)
                    if t == 0:
                        f.write(cmd(b"RPUSH", key, *[b"element-%08d" % i for i in ids]))
                    elif t == 1:
                        f.write(cmd(b"SADD", key, *[b"member-%08d" % i for i in ids]))
                    elif t == 2:
                        args = []
                        for i in ids:
                            args += [b"%d.25" % i, b"member-%08d" % i]
                        f.write(cmd(b"ZADD", key, *args))
                    else:
                        args = []
                        for i in ids:
                            args += [b"field-%08d" % i, b"value-%08d" % i]
                        f.write(cmd(b"HSET", key, *args))
            keys = 20
        else:
            sys.exit("gen-dataset.py: unknown dataset %r (small, big, collections)" % kind)
    print(keys)


if __name__ == "__main__":
    main()
