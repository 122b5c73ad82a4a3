"""Cold, whole-process figures a user sees (issue 17).

``python -m benchmarks.cold [--only start,client,reload] [--scale 200,1000] [--reps N]
[--peers floor,otree,supervisord,circus,s6]``

- *start*: from launching the supervisor's command to all N ``sleep`` children
  exec'd (a fresh process each time, no C child, no warm-up in the process);
- *client*: wall time of one status command against a tree of N programs
  (``otree status``, ``supervisorctl status``, ``circusctl status``, and for s6,
  which has no tree-wide status command, one ``sh`` looping ``s6-svstat`` over the
  N service directories) beside ``python -c pass``;
- *reload*: ``otree reload`` of a 50-service tree, from the request to the
  answer (the new image serving: its answer is sent by the re-exec'd otree).

Every peer runs from the clean environment of :mod:`benchmarks.pyenv`. Writes
``benchmarks/results/cold-<timestamp>.json`` and prints Markdown with the load
average before and after. Every process started is killed before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/cold.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import procs, pyenv
from benchmarks.peers import Floor, Otree, Peer, Program, Running, Supervisord
from benchmarks.stamps import now

HERE = Path(__file__).resolve().parent
SLEEP = shutil.which("sleep") or "/bin/sleep"


class Circus(Peer):
    """circusd with one watcher of N processes (``numprocesses``), its endpoints in
    the work directory, statsd off."""

    kind = "circus"

    def unavailable(self) -> str | None:
        for mod in ("circus", "zmq"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed: pip install circus"
        return None

    def version(self) -> str:
        return importlib.metadata.version("circus")

    def endpoint(self, work: Path) -> str:
        return f"ipc://{work}/circus.sock"

    def launch(self, work: Path, program: Program) -> Running:
        rows = [
            "[circus]",
            f"endpoint = {self.endpoint(work)}",
            f"pubsub_endpoint = ipc://{work}/circus-pub.sock",
            "statsd = false",
            "",
            f"[watcher:{program.name}]",
            f"cmd = {shlex.join(program.argv)}",
            f"numprocesses = {program.count}",
            "",
        ]
        (work / "circus.ini").write_text("\n".join(rows))
        code = "import sys\nfrom circus.circusd import main\nsys.exit(main())\n"
        return self._popen([self.python, "-c", code, "circus.ini"], work)


S6_TOOLS = ("s6-svscan", "s6-supervise", "s6-svstat")


def s6_unavailable() -> str | None:
    """Why s6 cannot run here, or None."""
    if shutil.which("s6-svscan") is None:
        return "s6 is not installed here (no s6-svscan on PATH; Debian: apt-get install s6)"
    missing = [t for t in S6_TOOLS if shutil.which(t) is None]
    if missing:
        return f"s6 is incomplete here: no {', '.join(missing)} on PATH"
    return None


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _execlineb() -> str | None:
    """The execlineb binary: Debian's /usr/bin/execlineb is an execline script that
    sets PATH and execs /usr/lib/execline/bin/execlineb through three more execline
    programs (four execs more a child: a run script exec'ing /bin/true took 4.4 ms
    through it, 1.4 ms through the binary or /bin/sh), so the binary itself."""
    for path in ("/usr/lib/execline/bin/execlineb", shutil.which("execlineb")):
        if path:
            with contextlib.suppress(OSError), open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return path
    return None


def _execline_word(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-+=:,@%" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


class S6(Peer):
    """s6-svscan on a scan directory of N service directories (``s0``..), each
    ``run`` script exec'ing the child; at s6's defaults but for ``-c`` (the most
    services s6-svscan 2.11 maintains: 500 unless told more)."""

    kind = "s6"
    child_depth = 2  # s6-svscan -> s6-supervise (one per service) -> the child
    S6_DEFAULT_MAX = 500  # s6-svscan 2.11's default -c

    def __init__(self, runner: str | None = None) -> None:
        # the run script's interpreter: execlineb (no shell) when execline is here
        self.execlineb = _execlineb()
        self.runner = runner or ("execline" if self.execlineb else "sh")
        if runner is not None:
            self.profile = runner

    def unavailable(self) -> str | None:
        if self.runner == "execline" and self.execlineb is None:
            return "no execlineb binary here for the run scripts (Debian: apt-get install execline)"
        return s6_unavailable()

    def version(self) -> str:
        def deb(pkg: str) -> str:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                r = subprocess.run(
                    ["dpkg-query", "-W", "-f", "${Version}", pkg],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                if r.returncode == 0 and r.stdout:
                    return r.stdout.strip()
            return "?"

        v = f"s6 {deb('s6')}"
        return v + (f", execline {deb('execline')}" if self.runner == "execline" else "")

    def settings(self) -> dict[str, Any]:
        if self.runner == "execline":
            run = (
                f"#!{self.execlineb} -P, then the child's argv (execlineb execs it: no shell; "
                "the binary, not Debian's /usr/bin/execlineb wrapper script)"
            )
        else:
            run = "#!/bin/sh, exec the child's argv (the shell execs it: one sh start per child)"
        return {
            "run": "s6-svscan -c max(500, N) scan; scan/s0..sN-1, one service directory each "
            "(s6-supervise creates supervise/ and event/ in it), no log/ services",
            "run script": run,
            "stop": "SIGTERM to s6-svscan (as s6-svscanctl -t: every s6-supervise brings its "
            "service down and exits, s6-svscan waits for them, then exits 0)",
            "children": "grandchildren of the launched s6-svscan (counted two levels down)",
            "rss": "s6-svscan plus all N s6-supervise processes (their VmRSS summed, so the "
            "shared libc/libskarnet pages count once a process), not the children",
            "status": "sh -c 'for d in scan/*/; do s6-svstat \"$d\"; done' (one line a service)",
        }

    def scandir(self, work: Path) -> Path:
        return work / "scan"

    def run_script(self, program: Program, child: str) -> str:
        argv = program.argv_for(child)
        if self.runner == "execline":
            words = [_execline_word(a) for a in argv]
            if program.out:
                # by full path: Debian's execline programs are not on PATH
                bin_dir = Path(self.execlineb or "").parent
                redirect = [str(bin_dir / "redirfd"), "-a", "1", _execline_word(program.out)]
                words = [*redirect, str(bin_dir / "fdmove"), "-c", "2", "1", *words]
            return f"#!{self.execlineb} -P\n" + " ".join(words) + "\n"
        line = "exec " + shlex.join(argv)
        if program.out:
            line += f" >>{shlex.quote(program.out)} 2>&1"
        return "#!/bin/sh\n" + line + "\n"

    def launch(self, work: Path, program: Program) -> Running:
        scan = self.scandir(work)
        scan.mkdir()
        for child in program.child_names():
            service = scan / child
            service.mkdir()
            (service / "run").write_text(self.run_script(program, child))
            (service / "run").chmod(0o755)
        svscan = shutil.which("s6-svscan") or "s6-svscan"
        cap = max(self.S6_DEFAULT_MAX, program.count)
        return self._popen([svscan, "-c", str(cap), str(scan)], work)

    def rss_kib(self, pid: int) -> int | None:
        total = procs.rss_kib(pid)
        if total is None:
            return None
        for child in procs.children_of(pid):
            if _comm(child) == "s6-supervise":
                total += procs.rss_kib(child) or 0
        return total


def peers(wanted: list[str] | None) -> tuple[list[Peer], dict[str, str]]:
    every: list[Peer] = [Floor(), Otree("defaults"), Supervisord("defaults"), Circus(), S6()]
    chosen = [p for p in every if wanted is None or p.kind in wanted or p.key in wanted]
    skipped = {}
    for p in list(chosen):
        why = p.unavailable()
        if why is not None:
            skipped[p.key] = why
            chosen.remove(p)
    return chosen, skipped


class _Sleeps:
    """Counts the processes ``depth`` levels below ``pid`` that have exec'd ``sleep``.

    At depth 1 (every peer but s6) one poll reads ``pid``'s children list and the
    ``comm`` of the children not yet seen. At depth 2 (s6) it reads the children of
    the intermediate processes (s6-supervise) whose child has not been seen yet
    only, so a poll costs one read per service still starting."""

    def __init__(self, pid: int, depth: int = 1) -> None:
        self.pid = pid
        self.depth = depth
        self.known: set[int] = set()
        self.done: set[int] = set()  # intermediate processes whose child was counted

    def count(self) -> int:
        parents = [self.pid]
        for _ in range(self.depth - 1):
            parents = [c for p in parents for c in procs.children_of(p) if c not in self.done]
        for parent in parents:
            for child in procs.children_of(parent):
                if child in self.known:
                    continue
                if _comm(child) == "sleep":
                    self.known.add(child)
                    if self.depth > 1:
                        self.done.add(parent)
        return len(self.known)


def _launch_all(peer: Peer, work: Path, count: int) -> tuple[Running, float]:
    """Launch ``peer`` with ``count`` sleep children; the seconds until all run."""
    work.mkdir(parents=True)
    r = peer.launch(work, Program("s", count, [SLEEP, "3600"]))
    sleeps = _Sleeps(r.pid, peer.child_depth)
    known = sleeps.known
    deadline = r.t_launch + 60 + count * 0.1
    while sleeps.count() < count:
        if r.poll_exit() or now() > deadline:
            raise RuntimeError(
                f"{len(known)} of {count} children running"
                + (f"; it exited {r.exit_code}" if r.exit_code is not None else "")
            )
        time.sleep(0.005)  # a busier poll would take a CPU from the spawning supervisor
    return r, now() - r.t_launch


def _stop(r: Running, count: int) -> None:
    r.stop(30 + count * 0.05)
    procs.cleanup()


def case_start(root: Path, active: list[Peer], counts: list[int], reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for count in counts:
        row: dict[str, Any] = {}
        for rep in range(reps):
            for peer in active:  # peers take turns
                key = peer.key
                try:
                    r, took = _launch_all(peer, root / f"start-{count}-{key}-{rep}", count)
                except Exception as exc:
                    row.setdefault(key, {})["error"] = f"{type(exc).__name__}: {exc}"
                    procs.cleanup()
                    continue
                rss = r.rss_kib()
                _stop(r, count)
                cell = row.setdefault(key, {"all_running_ms": []})
                cell.setdefault("all_running_ms", []).append(round(took * 1000, 1))
                if rss is not None:
                    cell["rss_mib"] = round(rss / 1024, 1)
                print(f"start {count} {key} rep {rep}: {took * 1000:.0f} ms", file=sys.stderr)
        out[str(count)] = row
    return out


LABELS = {
    "otree": "otree status",
    "supervisord": "supervisorctl status",
    "circus": "circusctl status",
    "s6": "sh: s6-svstat each service dir",
}


def _status_argv(peer: Peer, work: Path) -> list[str]:
    if isinstance(peer, Otree):
        return [str(peer.bin / "otree"), "status", "--socket", str(work / "otree.sock")]
    if isinstance(peer, Supervisord):
        code = "import sys\nfrom supervisor.supervisorctl import main\nsys.exit(main())\n"
        return [peer.python, "-c", code, "-c", str(work / "supervisord.conf"), "status"]
    if isinstance(peer, Circus):
        code = "import sys\nfrom circus.circusctl import main\nsys.exit(main())\n"
        return [peer.python, "-c", code, "--endpoint", peer.endpoint(work), "status"]
    if isinstance(peer, S6):
        # s6 has no status command for a whole scan directory: one shell, one
        # s6-svstat a service (each prints one line)
        svstat = shutil.which("s6-svstat") or "s6-svstat"
        loop = 'for d in "$1"/*/; do "$2" "$d"; done'
        return ["/bin/sh", "-c", loop, "sh", str(peer.scandir(work)), svstat]
    raise ValueError(peer.key)


def _wall(argv: list[str], cwd: Path) -> tuple[float, int, bytes]:
    t = now()
    p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60)
    return now() - t, p.returncode, p.stdout


def _answers(argv: list[str], cwd: Path, expect: int, timeout: float = 60.0) -> None:
    end = now() + timeout
    while True:
        _, _, out = _wall(argv, cwd)
        if out.count(b"\n") >= expect:
            return
        if now() > end:
            raise RuntimeError(f"{argv[0]} status never listed {expect} programs")
        time.sleep(0.2)


def case_client(root: Path, active: list[Peer], count: int, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    python = str(Peer.bin / "python")
    base = [_wall([python, "-c", "pass"], root)[0] for _ in range(reps)]
    out["python -c pass"] = {"median_ms": round(statistics.median(base) * 1000, 1)}
    for peer in active:
        if isinstance(peer, Floor):
            continue
        work = root / f"client-{peer.key}"
        try:
            r, _ = _launch_all(peer, work, count)
            argv = _status_argv(peer, work)
            _answers(argv, work, 1 if isinstance(peer, Circus) else count)  # one line a watcher
            times = [_wall(argv, work)[0] for _ in range(reps)]
            out[peer.key] = {
                "command": LABELS[peer.kind],
                "median_ms": round(statistics.median(times) * 1000, 1),
                "best_ms": round(min(times) * 1000, 1),
            }
            _stop(r, count)
        except Exception as exc:
            out[peer.key] = {"error": f"{type(exc).__name__}: {exc}"}
            procs.cleanup()
    return out


def case_reload(root: Path, count: int, reps: int) -> dict[str, Any]:
    peer = Otree("defaults")
    work = root / "reload"
    r, _ = _launch_all(peer, work, count)
    sock = ["--socket", str(work / "otree.sock")]
    otree = str(peer.bin / "otree")
    try:
        _answers([otree, "status", *sock], work, count)
        times = []
        for _ in range(reps):
            took, code, _ = _wall([otree, "reload", *sock], work)
            if code != 0:
                raise RuntimeError(f"otree reload exited {code}")
            times.append(took)
            _answers([otree, "status", *sock], work, count)
        return {
            "services": count,
            "median_ms": round(statistics.median(times) * 1000, 1),
            "best_ms": round(min(times) * 1000, 1),
            "same_pid": procs.alive(r.pid),
        }
    finally:
        _stop(r, count)


def case_ready(root: Path, reps: int) -> dict[str, Any]:
    """``otree run`` of a one-service tree: launch -> its ``tree_ready`` event, beside
    importing otree's own dependencies and ``python -c pass``."""
    python = str(Peer.bin / "python")
    deps = [_wall([python, "-c", "import attrs, cattrs, tomllib"], root)[0] for _ in range(reps)]
    base = [_wall([python, "-c", "pass"], root)[0] for _ in range(reps)]
    ready = []
    for rep in range(reps):
        work = root / f"ready-{rep}"
        work.mkdir()
        (work / "tree.toml").write_text(f'[one]\ncmd = ["{SLEEP}", "3600"]\n')
        argv = [str(Peer.bin / "otree"), "run", "tree.toml", "--events", "events.jsonl"]
        t0 = time.time()
        p = subprocess.Popen(
            [*argv, "--socket", str(work / "otree.sock")],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            end = now() + 30
            ts = None
            while ts is None and now() < end:
                with contextlib.suppress(OSError):
                    for row in (work / "events.jsonl").read_text().splitlines():
                        ev = json.loads(row)
                        if ev.get("event") == "tree_ready":
                            ts = float(ev["ts"])
                time.sleep(0.002)
            if ts is None:
                raise RuntimeError("no tree_ready event within 30 s")
            ready.append(ts - t0)
        finally:
            p.terminate()
            p.wait(30)
            procs.cleanup()
    med = statistics.median
    return {
        "tree_ready_ms": round(med(ready) * 1000, 1),
        "tree_ready_all_ms": [round(x * 1000, 1) for x in ready],
        "import_deps_ms": round(med(deps) * 1000, 1),
        "python_pass_ms": round(med(base) * 1000, 1),
        "x_deps": round(med(ready) / med(deps), 2),
        "x_pass": round(med(ready) / med(base), 2),
    }


def markdown(data: dict[str, Any]) -> str:
    rows = [
        f"cold run {data['started']}; load average before {data['load_before']},"
        f" after {data['load_after']}; {data['machine']}",
        "",
    ]
    for why_key, why in data["skipped"].items():
        rows.append(f"- {why_key} skipped: {why}")
    for count, row in data["results"].get("start", {}).items():
        floor = row.get("floor", {}).get("all_running_ms")
        rows.append(f"\nstart, {count} sleep children (launch -> all exec'd), median of runs:\n")
        rows.append("| peer | median ms | runs ms | x floor | RSS MiB |")
        rows.append("| --- | --- | --- | --- | --- |")
        for key, cell in row.items():
            if "all_running_ms" not in cell:
                rows.append(f"| {key} | {cell.get('error')} | | | |")
                continue
            med = statistics.median(cell["all_running_ms"])
            ratio = f"{med / statistics.median(floor):.2f}" if floor else "?"
            rows.append(
                f"| {key} | {med:.0f} | {cell['all_running_ms']} | {ratio} |"
                f" {cell.get('rss_mib', '')} |"
            )
    client = data["results"].get("client")
    if client:
        rows.append(
            f"\nclient, a status command against {data['params']['client_programs']}"
            " programs (wall):\n"
        )
        rows.append("| command | median ms | best ms |")
        rows.append("| --- | --- | --- |")
        for key, cell in client.items():
            if "error" in cell:
                rows.append(f"| {key} | {cell['error']} | |")
            else:
                rows.append(
                    f"| {cell.get('command', key)} | {cell['median_ms']} |"
                    f" {cell.get('best_ms', '')} |"
                )
    ready = data["results"].get("ready")
    if ready:
        rows.append(f"\nready (otree run, one service -> tree_ready): {ready}")
    reload = data["results"].get("reload")
    if reload:
        rows.append(f"\nreload: {reload}")
    return "\n".join(rows) + "\n"


def _room_for(count: int) -> list[int]:
    """Raise this process's fd limit (inherited by every peer) to fit ``count`` children:
    a supervisor holds a few fds per child (otree: its output pipe and pidfd), and the
    usual hard limit (20 000 here) is too low for 10 000. Root may raise the hard limit;
    anyone, the soft one up to it. Returns the (soft, hard) limit the peers get."""
    import resource

    want = 4 * count + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want and os.geteuid() == 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return list(resource.getrlimit(resource.RLIMIT_NOFILE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cold", description=__doc__)
    ap.add_argument("--only", help="comma-separated: start,client,ready,reload")
    ap.add_argument("--scale", default="200,1000", help="child counts of the start case")
    ap.add_argument("--reps", type=int, default=3, help="runs of each measurement")
    ap.add_argument("--client-programs", type=int, default=50)
    ap.add_argument("--peers", help="comma-separated kinds: floor,otree,supervisord,circus,s6")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    only = args.only.split(",") if args.only else ["start", "client", "ready", "reload"]
    if not procs.set_subreaper():
        print("warning: cannot become a child subreaper", file=sys.stderr)
    started = datetime.now()
    data: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "load_before": Path("/proc/loadavg").read_text().split()[:3],
        "machine": f"{os.cpu_count()} cores, kernel {os.uname().release}",
        "params": {"reps": args.reps, "client_programs": args.client_programs},
        "results": {},
    }
    root = Path(tempfile.mkdtemp(prefix="otree-cold-"))
    try:
        pyenv.clean_environ(root)
        Peer.bin = pyenv.make(root)
        pyenv.warm(Peer.bin)
        active, data["skipped"] = peers(args.peers.split(",") if args.peers else None)
        data["versions"] = {p.key: p.version() for p in active}
        data["settings"] = {p.key: p.settings() for p in active}
        res = data["results"]
        if "start" in only:
            counts = [int(x) for x in args.scale.split(",")]
            data["nofile"] = _room_for(max(counts))
            res["start"] = case_start(root, active, counts, args.reps)
        if "client" in only:
            res["client"] = case_client(root, active, args.client_programs, max(args.reps, 10))
        if "ready" in only:
            res["ready"] = case_ready(root, max(args.reps, 5))
        if "reload" in only:
            res["reload"] = case_reload(root, 50, args.reps)
    finally:
        left = procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    data["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    if left:
        data["leftovers_at_exit"] = left
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cold-" + started.strftime("%Y%m%d-%H%M%S")
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(data)
    (out / f"{stem}.md").write_text(text)
    print(text)
    with contextlib.suppress(Exception):
        print(f"written: {out / stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
