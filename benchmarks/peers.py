"""The three peers — the floor, otree and supervisord — each at its defaults and
at its fastest settings, behind one small interface.

A peer ``launch``es one program (``count`` identical children named
``NAME0``..``NAMEn-1``) in a work directory and returns a ``Running`` handle
that the benchmarks measure and stop. Control goes through signals only
(SIGTERM: stop everything and exit), plus, for supervisord, XML-RPC over its
unix socket where a benchmark must know a child's state.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.stamps import now

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Program:
    name: str
    count: int
    argv: list[str]  # "{name}" in an element is replaced by the child's name
    out: str | None = None  # a log file for the children's output (count == 1)

    def child_names(self) -> list[str]:
        return [f"{self.name}{i}" for i in range(self.count)]

    def argv_for(self, child: str) -> list[str]:
        return [a.replace("{name}", child) for a in self.argv]


@dataclass
class Running:
    """A launched supervisor (the process the harness started)."""

    peer: Peer
    popen: subprocess.Popen[bytes]
    work: Path
    t_launch: float
    pidfd: int = -1
    exit_code: int | None = None
    t_exit: float | None = None
    final_cpu_ns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pidfd = os.pidfd_open(self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_ns(self) -> int | None:
        if self.exit_code is not None:
            return self.final_cpu_ns
        return procs.cpu_ns(self.pid)

    def rss_kib(self) -> int | None:
        return self.peer.rss_kib(self.pid)

    def wakeups(self) -> int | None:
        return procs.wakeups(self.pid)

    def poll_exit(self, timeout: float = 0.0) -> bool:
        """True once the supervisor has exited (reaped here, its CPU read first)."""
        if self.exit_code is not None:
            return True
        ready, _, _ = select.select([self.pidfd], [], [], max(0.0, timeout))
        if not ready:
            return False
        self.t_exit = now()
        self.final_cpu_ns = procs.cpu_ns(self.pid)  # still a zombie: readable
        self.exit_code = self.popen.wait()
        os.close(self.pidfd)
        return True

    def stop(self, timeout: float) -> tuple[float | None, int | None]:
        """SIGTERM the supervisor; (seconds until it exited, exit code)."""
        if self.poll_exit():
            return None, self.exit_code
        t0 = now()
        os.kill(self.pid, signal.SIGTERM)
        if not self.poll_exit(timeout):
            return None, None
        assert self.t_exit is not None
        return self.t_exit - t0, self.exit_code

    def kill(self) -> None:
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.poll_exit(5.0)


class Peer:
    kind = ""
    profile = ""
    #: the directory ``otree`` is imported from (``--otree-src``: e.g. a patched copy)
    otree_src: Path = ROOT
    #: where ``python``, ``otree`` and ``supervisord`` are: the clean environment
    #: that ``benchmarks.pyenv`` makes (run.py sets it), else the harness's own
    bin: Path = Path(sys.executable).parent
    #: how many levels below the launched process the program's children are: 1,
    #: its own children; 2 for s6 (s6-svscan -> s6-supervise -> the child)
    child_depth = 1

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.profile}" if self.profile else self.kind

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.profile})" if self.profile else self.kind

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None."""
        return None

    def version(self) -> str:
        return ""

    def settings(self) -> dict[str, Any]:
        return {}

    def rss_kib(self, pid: int) -> int | None:
        """The supervisor's RSS, ``pid`` the launched process: by default its own."""
        return procs.rss_kib(pid)

    def restart_gap(self) -> float:
        """Least time between two kills of one child so that the peer never gives up."""
        return 0.0

    def launch(self, work: Path, program: Program) -> Running:
        raise NotImplementedError

    def before_kill(self, running: Running, child: str, pid: int, deadline: float) -> None:
        """Wait until the peer counts ``child`` as running (when it has such a notion)."""

    def gave_up_at(self, running: Running) -> float | None:
        """CLOCK_MONOTONIC time at which the peer gave up restarting, if it did."""
        return None

    def _popen(self, argv: list[str], work: Path) -> Running:
        """Start the supervisor in its own session: stdout to /dev/null, stderr to a file."""
        with open(work / "supervisor.stderr", "ab") as err:
            t = now()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=work,
                start_new_session=True,
            )
        return Running(self, popen, work, t)


# --- the floor --------------------------------------------------------------------


class Floor(Peer):
    kind = "floor"

    def settings(self) -> dict[str, Any]:
        return {"how": "os.fork + os.execv, os.wait() respawn loop (benchmarks/floor.py)"}

    def launch(self, work: Path, program: Program) -> Running:
        spec = {
            "children": [
                {"argv": program.argv_for(c), "out": program.out} for c in program.child_names()
            ]
        }
        (work / "floor.json").write_text(json.dumps(spec))
        return self._popen([self.python, str(ROOT / "benchmarks" / "floor.py"), "floor.json"], work)


# --- otree ------------------------------------------------------------------------


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


class Otree(Peer):
    kind = "otree"
    FASTEST_INTENSITY = 1_000_000

    def __init__(self, profile: str) -> None:
        self.profile = profile

    def unavailable(self) -> str | None:
        try:
            r = subprocess.run(
                [str(self.bin / "otree"), "run", "--help"],
                capture_output=True,
                timeout=30,
                cwd=ROOT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`otree run --help` failed: {exc}"
        if r.returncode != 0:
            last = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()[-1:]
            return f"`otree run` is not available yet ({' '.join(last)})"
        return None

    def version(self) -> str:
        try:
            v = importlib.metadata.version("otree")
        except importlib.metadata.PackageNotFoundError:
            v = "?"
        rev = subprocess.run(
            ["git", "-C", str(self.otree_src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        where = "" if self.otree_src == ROOT else f" from {self.otree_src}"
        return (f"{v} (git {rev})" if rev else v) + where

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "run": "otree run tree.toml --events events.jsonl --socket S (stdout to /dev/null)"
        }
        if self.profile == "fastest":
            s["root"] = f"intensity = {self.FASTEST_INTENSITY}, period = 1 (never gives up)"
            s["log"] = "max_bytes = 0 (no rotation)"
        else:
            s["root"] = "defaults (one_for_one, intensity = 3, period = 5)"
            s["log"] = "defaults"
        s["services"] = "cmd only (default readiness: exec succeeded; stop: TERM, shutdown = 5)"
        return s

    def restart_gap(self) -> float:
        return 0.0 if self.profile == "fastest" else 5 / 3 + 0.15

    def tree(self, program: Program) -> str:
        rows = []
        if self.profile == "fastest":
            rows += [f"intensity = {self.FASTEST_INTENSITY}", "period = 1", ""]
        for child in program.child_names():
            rows.append(f"[{child}]")
            rows.append("cmd = [" + ", ".join(_toml_str(a) for a in program.argv_for(child)) + "]")
            if program.out:
                log = f"file = {_toml_str(program.out)}"
                if self.profile == "fastest":
                    log += ", max_bytes = 0"
                rows.append(f"log = {{ {log} }}")
            rows.append("")
        return "\n".join(rows)

    def launch(self, work: Path, program: Program) -> Running:
        (work / "tree.toml").write_text(self.tree(program))
        argv = [str(self.bin / "otree"), "run", "tree.toml", "--events", "events.jsonl"]
        argv += ["--socket", str(work / "otree.sock")]
        return self._popen(argv, work)

    def gave_up_at(self, running: Running) -> float | None:
        # the root gave up: `otree run` exits 1; the event log says when
        offset = time.time() - now()
        try:
            rows = (running.work / "events.jsonl").read_text().splitlines()
        except OSError:
            return None
        for row in rows:
            try:
                ev = json.loads(row)
            except ValueError:
                continue
            if ev.get("event") == "give_up" and ev.get("path") == "":
                return float(ev["ts"]) - offset
        return None


# --- supervisord ------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__()
        self.unix_path = path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self.unix_path, self.timeout)


RUNNING = 20  # supervisord's ProcessStates.RUNNING
_GAVE_UP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ gave up: ")


class Supervisord(Peer):
    kind = "supervisord"

    def __init__(self, profile: str) -> None:
        self.profile = profile

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("supervisor") is None:
            return "supervisor is not installed: pip install -e '.[bench]'"
        return None

    def version(self) -> str:
        return importlib.metadata.version("supervisor")

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "run": "supervisord -n -c supervisord.conf; one [program] with numprocs = N",
            "always": "nodaemon, unix_http_server in the work dir, minfds = 8 N + 256, "
            "stopasgroup/killasgroup",
            "main loop": "poll() with a fixed 1 s timeout (hard-coded in supervisord.py)",
        }
        if self.profile == "fastest":
            s["program"] = (
                "startsecs = 0, autorestart = true, startretries = 1000000, "
                "stdout_logfile = NONE (output test: the file, maxbytes = 0), redirect_stderr"
            )
        else:
            s["program"] = (
                "defaults: startsecs = 1, startretries = 3, autorestart = unexpected, "
                "stdout/stderr_logfile = AUTO (output test: the file, maxbytes 50MB)"
            )
        return s

    def conf(self, work: Path, program: Program) -> str:
        command = " ".join(
            shlex.quote(a).replace("%", "%%").replace("{name}", "%(program_name)s%(process_num)d")
            for a in program.argv
        )
        rows = [
            "[unix_http_server]",
            f"file = {work}/supervisor.sock",
            "",
            "[supervisord]",
            "nodaemon = true",
            f"logfile = {work}/supervisord.log",
            f"pidfile = {work}/supervisord.pid",
            f"childlogdir = {work}/childlogs",
            f"minfds = {8 * program.count + 256}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl = unix://{work}/supervisor.sock",
            "",
            f"[program:{program.name}]",
            f"command = {command}",
            f"numprocs = {program.count}",
            "process_name = %(program_name)s%(process_num)d",
            "stopasgroup = true",
            "killasgroup = true",
        ]
        if self.profile == "fastest":
            rows += ["startsecs = 0", "autorestart = true", "startretries = 1000000"]
            rows += ["redirect_stderr = true"]
            if program.out:
                rows += [f"stdout_logfile = {program.out}", "stdout_logfile_maxbytes = 0"]
            else:
                rows += ["stdout_logfile = NONE"]
        elif program.out:
            rows += [f"stdout_logfile = {program.out}", "redirect_stderr = true"]
        return "\n".join(rows) + "\n"

    def launch(self, work: Path, program: Program) -> Running:
        (work / "childlogs").mkdir(exist_ok=True)
        (work / "supervisord.conf").write_text(self.conf(work, program))
        argv = [str(self.bin / "supervisord"), "-n", "-c", "supervisord.conf"]
        return self._popen(argv, work)

    def rpc(self, running: Running) -> Any:
        return xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(str(running.work / "supervisor.sock"))
        )

    def before_kill(self, running: Running, child: str, pid: int, deadline: float) -> None:
        if self.profile == "fastest":
            return  # startsecs = 0: RUNNING at once
        # at its defaults a child killed before startsecs counts as a failed start
        # (BACKOFF, then FATAL): wait until supervisord says RUNNING
        proxy = self.rpc(running)
        name = f"{child.rstrip('0123456789')}:{child}"
        while now() < deadline:
            try:
                info = proxy.supervisor.getProcessInfo(name)
                if info["state"] == RUNNING and info["pid"] == pid:
                    return
            except (OSError, xmlrpc.client.Error):
                pass
            time.sleep(0.02)

    def gave_up_at(self, running: Running) -> float | None:
        offset = time.time() - now()
        try:
            rows = (running.work / "supervisord.log").read_text().splitlines()
        except OSError:
            return None
        for row in rows:
            m = _GAVE_UP.match(row)
            if m:
                wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                return wall - offset
        return None


def all_peers() -> list[Peer]:
    return [
        Floor(),
        Otree("fastest"),
        Otree("defaults"),
        Supervisord("fastest"),
        Supervisord("defaults"),
    ]
