"""Where a tree's control socket lives: what ``otree run`` and the client commands agree on.

``otree run TREE`` listens on ``--socket P``, else ``$OTREE_SOCKET``, else
``default_socket(TREE)``: a name derived from the tree file in the per-user
directory ``socket_dir()`` (``$XDG_RUNTIME_DIR/otree/`` or ``/tmp/otree-<uid>/``).
Only ``os`` is imported: a client command finds its tree with this module, and
binding a socket (``otree.control.sockets``) is the server's.
"""

from __future__ import annotations

import os


def socket_dir() -> str:
    """The per-user directory of default sockets (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "otree")
    tmp = os.environ.get("TMPDIR")
    if not (tmp and os.path.isabs(tmp) and os.path.isdir(tmp)):
        tmp = "/tmp"
    return os.path.join(tmp, f"otree-{os.getuid()}")


def tree_identity(tree: str) -> tuple[str, str]:
    """``(stem, key)`` for a TREE argument: a file is known by its real path.

    ``tree.toml`` and ``app/tree.py:tree`` name files (the attribute is not
    part of the key: one socket per file); ``pkg.mod:attr`` is known by the
    argument and the directory it was given in.
    """
    file = tree
    if not os.path.isfile(file) and ":" in tree:
        file = tree.rsplit(":", 1)[0]
    if os.path.isfile(file):
        real = os.path.realpath(file)
        return os.path.splitext(os.path.basename(real))[0], real
    return tree.split(":", 1)[0], f"{tree}@{os.path.realpath(os.getcwd())}"


def _fnv1a64(data: bytes) -> str:
    """A 64-bit FNV-1a digest in hex: enough to tell trees apart, and unlike hashlib it
    does not load OpenSSL (3.6 MiB of RSS, benchmarks/RESULTS.md)."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def default_socket(tree: str) -> str:
    """The socket ``otree run TREE`` listens on when neither --socket nor OTREE_SOCKET is set."""
    stem, key = tree_identity(tree)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:24] or "tree"
    digest = _fnv1a64(key.encode("utf-8", "surrogateescape"))
    return os.path.join(socket_dir(), f"{stem}-{digest}.sock")
