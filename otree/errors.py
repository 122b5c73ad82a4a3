"""otree's error types, one base translated to messages at the boundary; and its exit codes.

Also the one way otree prints such a message (``stderr_line``). Every part of
otree imports this module, the client commands too: it imports nothing heavy
(no attrs), so ``otree status`` starts fast.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Final


class ExitCode:
    """Every exit code otree uses: ``otree run``'s, and the client commands' (the one table).

    ``otree run``: ``OK`` after a requested or automatic shutdown, ``GAVE_UP``
    when the root gave up, ``USAGE`` for bad input (nothing starts),
    ``START_FAILED`` when the initial start failed, ``REEXEC`` when the re-exec
    guard tripped or a re-exec could not be completed, ``BUG`` for a bug in
    otree (a traceback and a request to report it), ``BROKEN_PIPE`` when its
    stdout was closed, ``INTERRUPTED`` for a Ctrl-C outside the loop. A client
    command: ``OK`` done, ``REFUSED`` the tree refused the request, ``USAGE``
    bad arguments, ``NOT_RUNNING`` no tree answers.

    Plain integers, not an ``enum.IntEnum``: the client commands import this module,
    and ``enum`` is among the slowest of the standard library to import.
    """

    OK: Final = 0
    GAVE_UP: Final = 1
    REFUSED: Final = 1
    USAGE: Final = 2
    START_FAILED: Final = 3
    NOT_RUNNING: Final = 3
    REEXEC: Final = 4
    BUG: Final = 70
    INTERRUPTED: Final = 130
    BROKEN_PIPE: Final = 141


class OtreeError(Exception):
    """Base of every error otree raises on purpose."""


class Issue:
    """One problem in a tree: where it is and what is wrong (immutable; equal by value).

    ``path`` is the key path (``web.api.restart``); ``file`` and ``line`` are
    filled in by the tree-file loader when they are known. A plain class, not
    attrs: the client commands import this module, and attrs is slow to import.
    """

    __slots__ = ("file", "line", "message", "path")

    path: str
    message: str
    file: str | None
    line: int | None

    def __init__(
        self, path: str, message: str, file: str | None = None, line: int | None = None
    ) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "line", line)

    def replace(self, **changes: Any) -> Issue:
        """A copy with the fields in ``changes`` replaced."""
        path, message, file, line = self._key()
        return Issue(**{"path": path, "message": message, "file": file, "line": line, **changes})

    def _key(self) -> tuple[str, str, str | None, int | None]:
        return (self.path, self.message, self.file, self.line)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"an Issue cannot be changed (use replace(): {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"an Issue cannot be changed ({name})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Issue:
            return NotImplemented
        assert isinstance(other, Issue)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        path, message, file, line = self._key()
        return f"Issue(path={path!r}, message={message!r}, file={file!r}, line={line!r})"

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        prefix = f"{self.path}: " if self.path else ""
        return f"{where}{prefix}{self.message}"


class ConfigError(OtreeError):
    """A tree (file or Python specs) is invalid. Carries every issue found."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def lines(self) -> list[str]:
        """The error as the lines otree prints: one per issue (the message if there is none)."""
        return [str(i) for i in self.issues] or [str(self)]

    def prefixed(self, prefix: str) -> ConfigError:
        """The same issues with ``prefix`` put before each key path."""
        if not prefix:
            return self
        return ConfigError(
            i.replace(path=f"{prefix}.{i.path}" if i.path else prefix) for i in self.issues
        )


class ControlError(OtreeError):
    """A control request was refused or could not be carried out."""


class ReexecError(OtreeError):
    """The self-reload handoff failed (bad snapshot, unknown version, guard)."""


def stderr_line(text: str) -> None:
    """Print ``otree: text`` to stderr (blocking: rare and important)."""
    try:
        sys.stderr.write(f"otree: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
