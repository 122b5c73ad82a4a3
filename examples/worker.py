"""Example worker for examples/webstack.toml and examples/tree.py.

It polls the web server at $WEB_URL, tells otree it is ready with sd_notify
(``READY=1`` on the datagram socket named by $NOTIFY_SOCKET) once the first
poll succeeds, and exits 1 (a crash: otree restarts it) if the server goes away.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request

URL = os.environ.get("WEB_URL", "http://127.0.0.1:18765/")


def notify(message: bytes) -> None:
    """sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, path)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    polls = 0
    while True:
        try:
            with urllib.request.urlopen(URL, timeout=2) as response:
                status = response.status
        except OSError as exc:
            print(f"cannot reach {URL}: {exc}", flush=True)
            return 1
        polls += 1
        if polls == 1:
            print(f"connected to {URL} (HTTP {status})", flush=True)
            notify(b"READY=1")
        elif polls % 20 == 0:
            print(f"{polls} polls, last HTTP {status}", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
