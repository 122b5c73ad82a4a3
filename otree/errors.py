"""otree's error types, one base translated to messages at the boundary; and its exit codes."""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs


class ExitCode(enum.IntEnum):
    """Every exit code otree uses: ``otree run``'s, and the client commands' (the one table).

    ``otree run``: ``OK`` after a requested or automatic shutdown, ``GAVE_UP``
    when the root gave up, ``USAGE`` for bad input (nothing starts),
    ``START_FAILED`` when the initial start failed, ``REEXEC`` when the re-exec
    guard tripped or a re-exec could not be completed, ``BUG`` for a bug in
    otree (a traceback and a request to report it), ``BROKEN_PIPE`` when its
    stdout was closed, ``INTERRUPTED`` for a Ctrl-C outside the loop. A client
    command: ``OK`` done, ``REFUSED`` the tree refused the request, ``USAGE``
    bad arguments, ``NOT_RUNNING`` no tree answers.
    """

    OK = 0
    GAVE_UP = 1
    REFUSED = 1
    USAGE = 2
    START_FAILED = 3
    NOT_RUNNING = 3
    REEXEC = 4
    BUG = 70
    INTERRUPTED = 130
    BROKEN_PIPE = 141


class OtreeError(Exception):
    """Base of every error otree raises on purpose."""


@attrs.frozen
class Issue:
    """One problem in a tree: where it is and what is wrong.

    ``path`` is the key path (``web.api.restart``); ``file`` and ``line`` are
    filled in by the tree-file loader when they are known.
    """

    path: str
    message: str
    file: str | None = None
    line: int | None = None

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
            attrs.evolve(i, path=f"{prefix}.{i.path}" if i.path else prefix) for i in self.issues
        )


class ControlError(OtreeError):
    """A control request was refused or could not be carried out."""


class ReexecError(OtreeError):
    """The self-reload handoff failed (bad snapshot, unknown version, guard)."""
