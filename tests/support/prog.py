"""The child program the tests run as services: ``python prog.py MODE ARGS...``.

Each mode is one small behaviour (listen, notify, flood stdout, ignore TERM, orphan a
grandchild ...); ``support.treefiles.prog(MODE, ...)`` gives the TOML ``cmd`` for it.
"""

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


def notify_client(client: str, go: str, result: str) -> None:
    """sd_notify with a real client library (``sdnotify`` or ``libsystemd``, the C library
    through ctypes): send READY=1, wait until the file GO exists, then send STATUS=,
    WATCHDOG=1 and STOPPING=1; write ``ok`` or what failed to RESULT, then wait."""
    if client == "sdnotify":
        import sdnotify

        notifier = sdnotify.SystemdNotifier(debug=True)  # debug: raise instead of ignoring

        def send(message: str) -> None:
            notifier.notify(message)

    else:
        import ctypes

        lib = ctypes.CDLL("libsystemd.so.0", use_errno=True)

        def send(message: str) -> None:
            rc = lib.sd_notify(0, message.encode())
            if rc <= 0:
                raise OSError(-rc, os.strerror(-rc) if rc < 0 else "NOTIFY_SOCKET not used")

    send("READY=1")
    try:
        while not os.path.exists(go):
            time.sleep(0.01)
        for message in ("STATUS=serving", "WATCHDOG=1", "STOPPING=1"):
            send(message)
    except OSError as exc:
        outcome = f"{message}: {exc}"
    else:
        outcome = "ok"
    with open(result, "w") as f:
        f.write(outcome)
    time.sleep(120)


def listen_for(port: str, seconds: str) -> None:
    """Listen on 127.0.0.1:PORT for SECONDS, then close the listener and go on running."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(port)))
    server.listen()
    time.sleep(float(seconds))
    server.close()
    print("stopped listening", flush=True)
    time.sleep(120)


def watchdog_pings(count: str, envfile: str) -> None:
    """Write ``WATCHDOG_USEC WATCHDOG_PID getpid()`` to ENVFILE, send READY=1 and then
    WATCHDOG=1 COUNT times, 0.1 s apart (STATUS=pinging N with each), then stop pinging."""
    with open(envfile + ".tmp", "w") as f:
        f.write(f"{os.environ.get('WATCHDOG_USEC')} {os.environ.get('WATCHDOG_PID')} {os.getpid()}")
    os.rename(envfile + ".tmp", envfile)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(os.environ["NOTIFY_SOCKET"])
    sock.send(b"READY=1")
    for i in range(int(count)):
        sock.send(b"WATCHDOG=1\nSTATUS=pinging %d" % i)
        time.sleep(0.1)
    print("stopped pinging", flush=True)
    time.sleep(120)


def watchdog_until(stop: str, errors: str) -> None:
    """Send READY=1, then ``WATCHDOG=1`` and ``STATUS=alive N`` every 0.05 s until the file
    STOP exists (a failed send is written to ERRORS); then stop pinging and wait."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    target = os.environ["NOTIFY_SOCKET"]
    sock.sendto(b"READY=1", target)
    n = 0
    while not os.path.exists(stop):
        n += 1
        try:
            sock.sendto(b"WATCHDOG=1\nSTATUS=alive %d" % n, target)
        except OSError as exc:
            with open(errors, "a") as f:
                f.write(f"{n}: {exc}\n")
        time.sleep(0.05)
    time.sleep(120)


def chatty(lines: str) -> None:
    """Write LINES numbered lines as fast as possible, then exit 0."""
    out = sys.stdout.buffer
    n = int(lines)
    step = 10000
    for start in range(0, n, step):
        out.write(b"".join(b"line %d\n" % i for i in range(start, min(n, start + step))))
    out.flush()


def burst(lines: str, interval: str) -> None:
    """Write LINES numbered lines (``line N``) in one write every INTERVAL seconds, for ever."""
    n, i = int(lines), 0
    while True:
        os.write(1, b"".join(b"line %d\n" % k for k in range(i, i + n)))
        i += n
        time.sleep(float(interval))


def ignore_term() -> None:
    """Ignore SIGTERM (say so on stdout), then wait."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring TERM", flush=True)
    time.sleep(120)


def split_lines() -> None:
    """Write numbered lines, each in two writes, until TERM; then ``done N`` and exit 0."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    i = 0
    while not stop:
        line = b"line %08d\n" % i
        os.write(1, line[:7])  # a line cut in two: the unfinished half may cross a re-exec
        os.write(1, line[7:])
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)
    os.write(1, b"done %d\n" % i)


def orphan(pidfile: str, linger: str) -> None:
    """Double-fork a grandchild that leaves the process group, writes its PID to PIDFILE,
    lives LINGER seconds and exits; the service itself exits 0 at once."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(float(linger))
            os._exit(0)
        os._exit(0)
    os.wait()


def escape(pidfile: str, deaf: str = "") -> None:
    """Double-fork a grandchild that leaves the process group and the session (setsid)
    and writes its PID to PIDFILE; both it and the service then wait to be stopped
    (with DEAF ``deaf``, both ignore SIGTERM)."""
    if deaf:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            while True:
                time.sleep(60)
        os._exit(0)
    os.wait()
    while True:
        time.sleep(60)


def reaped(pidfile: str) -> None:
    """Wait for PIDFILE (an orphan's PID), then until that process is gone from /proc:
    print ``reaped PID``, or ``zombie PID`` if it is still a zombie 10 s after it exited."""
    while not os.path.exists(pidfile):
        time.sleep(0.01)
    with open(pidfile) as f:
        pid = int(f.read())
    since = None
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            print(f"reaped {pid}", flush=True)
            break
        if state == "Z":
            since = since or time.monotonic()
            if time.monotonic() - since > 10:
                print(f"zombie {pid}", flush=True)
                break
        time.sleep(0.01)
    time.sleep(120)


def obey() -> None:
    """Wait; exit 1 on SIGUSR1 (a crash), 0 on SIGUSR2 (a clean exit); TERM as usual
    until SIGWINCH, which makes it ignore TERM from then on (a hang on stop)."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: os._exit(1))
    signal.signal(signal.SIGUSR2, lambda signum, frame: os._exit(0))
    signal.signal(
        signal.SIGWINCH, lambda signum, frame: signal.signal(signal.SIGTERM, signal.SIG_IGN)
    )
    while True:
        time.sleep(60)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
