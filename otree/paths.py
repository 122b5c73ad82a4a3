"""Is a path safe for otree to write, as root? One rule, checked twice: at load by the
config (``otree check``, a reload's pre-check), with nothing created, and when the
runtime opens the file (``otree.runtime.sinks.open_append``, with ``O_NOFOLLOW``).
Standard library only: both layers import it.

A path is refused when it names something that is not a regular file (a FIFO,
a socket, a directory, a device other than ``/dev/null`` and ``/dev/full``),
a symbolic link (log files are opened with ``O_NOFOLLOW``), anything under
``/proc`` or ``/sys``, or when a directory on the way is writable by another
user without being sticky and root-owned. ``/dev/stdout`` and ``/dev/stderr``
name otree's own streams and are always fine.
"""

from __future__ import annotations

import os
import stat

#: otree's own streams, taken as they are
STREAMS = ("/dev/stdout", "/dev/stderr")
#: character devices a log may name: /dev/null (discard) and /dev/full (always full)
DEVICES = frozenset({os.makedev(1, 3), os.makedev(1, 7)})
KERNEL_FS = ("/proc", "/sys")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a device"


def unsafe_directory(directory: str) -> str | None:
    """Why ``directory`` or one above it lets another user replace what is in it, or None."""
    uid, gid = os.geteuid(), os.getegid()
    current = os.path.realpath(directory)
    while True:
        try:
            st = os.stat(current)
        except OSError:
            st = None
        if st is not None:
            others = bool(st.st_mode & stat.S_IWOTH) or (
                bool(st.st_mode & stat.S_IWGRP) and st.st_gid not in (0, gid)
            )
            owner = st.st_uid not in (0, uid)
            sticky = bool(st.st_mode & stat.S_ISVTX) and st.st_uid == 0
            if (others or owner) and not sticky:
                who = f"user {st.st_uid}" if owner else "other users"
                return f"the directory {current} is writable by {who} (not sticky and root-owned)"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def log_path_problem(path: str) -> str | None:
    """Why otree must not write a log to ``path`` (relative to the working directory), or
    None. A missing file is fine (it will be created); so are missing directories."""
    if path in STREAMS:
        return None
    full = os.path.abspath(path)
    real = os.path.realpath(full)
    for top in KERNEL_FS:
        if real == top or real.startswith(top + "/"):
            return f"{real} is under {top}: not a file to write logs to"
    try:
        st = os.lstat(full)
    except (OSError, ValueError):
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            return "a symbolic link (log files are opened without following links)"
        if stat.S_ISCHR(st.st_mode) and st.st_rdev in DEVICES:
            return None
        if not stat.S_ISREG(st.st_mode):
            return f"{_kind(st.st_mode)}, not a regular file"
    return unsafe_directory(os.path.dirname(full))
