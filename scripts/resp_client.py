"""A minimal RESP client for the bench scripts' heartbeat probes (standard library only).

    sys.path.insert(0, "scripts"); from resp_client import conn, call
    c = conn(6379); call(c, b"SET", b"k", b"v")
"""
import socket


def conn(port):
    """A connection to 127.0.0.1:port: (socket, its buffered reader)."""
    s = socket.create_connection(("127.0.0.1", port))
    return s, s.makefile("rb")


def call(c, *args):
    """Sends one command; the reply: bytes (bulk, None for nil), int, or the status line."""
    s, f = c
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    line = f.readline()
    if line[:1] == b"$":
        n = int(line[1:])
        return None if n < 0 else f.read(n + 2)[:-2]
    if line[:1] == b":":
        return int(line[1:])
    return line.strip()
