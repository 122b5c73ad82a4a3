"""The benchmark child: records its start time on CLOCK_MONOTONIC, then acts.

    python -I child.py SOCK NAME MODE [ARG]

It sends ``S NAME PID T`` (T = CLOCK_MONOTONIC seconds) as one datagram to the
harness's unix socket SOCK, taken as the very first thing the program does, then:

``sleep``        wait for a signal;
``sleep-exec``   exec ``sleep infinity`` (same PID, little memory);
``crash``        exit 1 at once;
``print N``      write N numbered lines to stdout as fast as it can (64 KiB
                 writes), sending ``W NAME PID T`` just before the first and
                 ``D NAME PID T`` once the last one is written, then wait.

Only built-in modules are imported, so the interpreter's own start-up is the
whole cost of starting it.
"""

import time

T0 = time.clock_gettime(time.CLOCK_MONOTONIC)

import _socket  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def line(i: int) -> bytes:
    """Line ``i`` as the output benchmark writes and checks it (41 bytes)."""
    return b"%08d %s\n" % (i, b"x" * 31)


def send(sock_path: str, kind: str, name: str, t: float) -> None:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        s.sendto(f"{kind} {name} {os.getpid()} {t!r}".encode(), sock_path)
    finally:
        s.close()


def main(argv: list[str]) -> int:
    sock_path, name, mode = argv[1], argv[2], argv[3]
    send(sock_path, "S", name, T0)
    if mode == "crash":
        return 1
    if mode == "sleep-exec":
        os.execv("/bin/sleep", ["sleep", "infinity"])
    if mode == "print":
        count = int(argv[4])
        block = b"".join(line(i) for i in range(count))
        view = memoryview(block)
        send(sock_path, "W", name, time.clock_gettime(time.CLOCK_MONOTONIC))
        while view:
            view = view[os.write(1, view[: 1 << 16]) :]
        send(sock_path, "D", name, time.clock_gettime(time.CLOCK_MONOTONIC))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
