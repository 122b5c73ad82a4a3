"""The preflight: before a reload execs, the new image's start-up is tried in a child.

A reload runs whatever otree is on disk now. An upgrade in place can leave it
broken (a syntax error, a missing dependency, a tree this otree refuses): if
the old image exec'd into it, the children would be left without their
supervisor. So before the exec the old image runs the same interpreter with
the same arguments and ``--preflight`` (:func:`check`): it imports every
module of otree the run needs, builds the handoff's converter, loads the tree
file and exits 0, or prints why not and exits 1 (2 for the tree file). A
failure refuses the reload with that message; nothing changes.

:class:`Preflight` is the old image's side: the child runs beside the loop
(never blocking it), its output goes to an anonymous file, and the answer
comes as a callback.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from otree.errors import ConfigError, ExitCode, OtreeError, stderr_line
from otree.runtime import posix

if TYPE_CHECKING:
    from otree.runtime.loop import Loop, Timer

#: how long the new image may take to start up before the reload is refused
TIMEOUT = 30.0
#: the most of its output a refusal quotes
_QUOTE = 2000
#: what the run never imports: the test helpers need Hypothesis, a test dependency
_NOT_NEEDED = ("otree.testing",)


class Preflight:
    """``argv + ["--preflight"]`` run as a child; ``done(None)`` when it passed,
    ``done(reason)`` when it failed (its output, or why it could not run)."""

    def __init__(self, loop: Loop, argv: list[str], done: Callable[[str | None], None]) -> None:
        self.loop = loop
        self.done = done
        self.pid: int | None = None
        self._timer: Timer | None = None
        self._out = os.memfd_create("otree-preflight", os.MFD_CLOEXEC)
        env = posix.child_env({})
        for name in ("OTREE_HANDOFF_FD", "OTREE_TEST_FAULT", "OTREE_TEST_HOLD"):
            env.pop(name, None)
        try:
            self.pid = posix.spawn([*argv, "--preflight"], env, output=self._out)
        except posix.SpawnError as exc:
            self._finish(f"the new otree could not be started: {exc}")
            return
        loop.watch_child(self.pid, self._exited)
        self._timer = loop.call_later(TIMEOUT, self._too_slow)

    def _exited(self, status: int) -> None:
        self.pid = None
        if self._out < 0:  # answered already (too slow)
            return
        code, sig = posix.describe_status(status)
        if code == 0:
            self._finish(None)
            return
        how = f"exit {code}" if code is not None else f"killed by SIG{sig}"
        said = self._output()
        self._finish(f"the new otree cannot start ({how}): {said}" if said else how)

    def _too_slow(self) -> None:
        self._timer = None
        if self.pid is not None:
            posix.kill_group(self.pid, signal.SIGKILL)  # reaped by the loop
            self._finish(f"the new otree did not start within {TIMEOUT:g} s")

    def _output(self) -> str:
        """What the child said: the gist of a traceback (the error, and where: the new
        otree failed before its own code could say it), else otree's own lines."""
        os.lseek(self._out, 0, os.SEEK_SET)
        text = os.read(self._out, 1 << 16).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if "Traceback (most recent call last):" in lines:
            end = max(i for i, line in enumerate(lines) if not line.startswith("otree: "))
            where = [line for line in lines[:end] if line.startswith('File "')]
            said = [lines[end] + (f" ({where[-1]})" if where else "")]
        else:
            said = [line.removeprefix("otree: ") for line in lines if line.startswith("otree: ")]
        return "\n".join(said or lines[-1:])[:_QUOTE]

    def _finish(self, error: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(OSError):
            os.close(self._out)
        self._out = -1
        self.done(error)


def check(source: str, events: str | None = None, log_dir: str | None = None) -> int:
    """``otree run SOURCE --preflight``: can this otree take ``SOURCE`` over? (the module doc)

    Beyond the imports and the tree file, every file the run writes is opened as the
    new image would open it (each service's log file, ``--log-dir``, ``--events``):
    one it cannot open refuses the reload instead of stopping the tree after the exec.
    """
    import importlib

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # otree/
    try:
        for name in modules(package):
            if not name.startswith(_NOT_NEEDED):
                importlib.import_module(name)
        from otree.config.loader import load_tree
        from otree.reload import document

        document.converter()
        tree = load_tree(source)
        from otree.runtime.driver import Runtime

        Runtime(tree, events=events, log_dir=log_dir, console=_devnull()).discard()
    except ConfigError as exc:
        for line in exc.lines():
            stderr_line(line)
        return ExitCode.USAGE
    except OtreeError as exc:  # a file it cannot open: otree's own words say which
        stderr_line(str(exc))
        return ExitCode.GAVE_UP
    except Exception as exc:  # whatever keeps this otree from starting: say it, in one line
        stderr_line(_one_line(exc))
        return ExitCode.GAVE_UP
    return ExitCode.OK


def modules(package: str) -> list[str]:
    """The dotted name of every module and subpackage below the package directory
    ``package`` (what ``pkgutil.walk_packages`` lists, without its 20 ms of importing
    and probing: a directory of ``.py`` files and packages is all otree is)."""
    top = os.path.basename(package)
    names = []
    for here, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if os.path.isfile(os.path.join(here, d, "__init__.py")))
        rel = os.path.relpath(here, package)
        prefix = ".".join([top, *([] if rel == "." else rel.split(os.sep))])
        for file in sorted(files):
            stem, dot, ext = file.rpartition(".")
            if dot and ext == "py" and stem.isidentifier():
                if stem != "__init__":
                    names.append(f"{prefix}.{stem}")
                elif here != package:
                    names.append(prefix)
    return names


def _devnull() -> int:
    return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def _one_line(exc: Exception) -> str:
    """``SyntaxError: invalid syntax (/x/otree/cli/control.py, line 9)``: what, and where."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
