"""Small programs the runtime tests run as services: ``python prog.py NAME ARGS...``."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time


def listen(port: str, delay: str) -> None:
    """Listen on 127.0.0.1:PORT after DELAY seconds, then wait."""
    time.sleep(float(delay))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(port)))
    server.listen()
    time.sleep(120)


def connect(port: str) -> None:
    """Exit 0 if something listens on 127.0.0.1:PORT, else 1."""
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    except OSError:
        sys.exit(1)


def notify(delay: str, flag: str) -> None:
    """After DELAY seconds create FLAG, then send READY=1 to $NOTIFY_SOCKET, then wait."""
    time.sleep(float(delay))
    open(flag, "w").close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    time.sleep(120)


def chatty(lines: str) -> None:
    """Write LINES numbered lines as fast as possible, then exit 0."""
    out = sys.stdout.buffer
    n = int(lines)
    step = 10000
    for start in range(0, n, step):
        out.write(b"".join(b"line %d\n" % i for i in range(start, min(n, start + step))))
    out.flush()


def ignore_term() -> None:
    """Ignore SIGTERM (say so on stdout), then wait."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring TERM", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
