"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--only CASE,...] [--peers KEY,...]``.

Writes ``benchmarks/results/<timestamp>.md`` and ``.json`` and prints the
Markdown. Every process a run starts is killed before it exits (the harness is
a child subreaper, so orphans stay within its reach).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cases, procs, pyenv, report
from benchmarks.peers import Peer, all_peers

HERE = Path(__file__).resolve().parent
CASES = ("restart", "crash", "crash-light", "scale", "output")

FULL = {
    "restart_runs": 30,
    "crash_window": 5.0,
    "crash_horizon": 15.0,
    "scale": [200, 500, 1000],
    "idle": 10.0,
    "settle": 1.0,
    "reps": 5,
    "output_lines": 200_000,
}
QUICK = {
    "restart_runs": 2,
    "crash_window": 1.5,
    "crash_horizon": 1.5,
    "scale": [50],
    "idle": 0.5,
    "settle": 0.2,
    "reps": 1,
    "output_lines": 50_000,
}


def machine() -> dict[str, Any]:
    cpu = "?"
    for row in Path("/proc/cpuinfo").read_text().splitlines():
        if row.startswith("model name"):
            cpu = row.split(":", 1)[1].strip()
            break
    mem = 0
    for row in Path("/proc/meminfo").read_text().splitlines():
        if row.startswith("MemTotal:"):
            mem = int(row.split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def build_light_child(root: Path, python: str) -> tuple[list[str], str]:
    """The C stamp child if a compiler is here, else the Python child without site."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        exe = root / "stamp"
        r = subprocess.run(
            [cc, "-O2", "-o", str(exe), str(HERE / "stamp.c")], capture_output=True, timeout=60
        )
        if r.returncode == 0:
            return [str(exe)], "c"
    return [python, "-I", "-S", str(HERE / "child.py")], "python"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    ap.add_argument("--only", help=f"comma-separated cases: {','.join(CASES)}")
    ap.add_argument("--peers", help="comma-separated peer keys (floor, otree-fastest, ...)")
    ap.add_argument("--scale", help="comma-separated child counts for the scale case")
    ap.add_argument("--out", default=str(HERE / "results"), help="results directory")
    ap.add_argument(
        "--otree-src",
        help="directory to import otree from instead of this checkout (e.g. a patched copy)",
    )
    args = ap.parse_args(argv)

    params = dict(QUICK if args.quick else FULL)
    if args.scale:
        params["scale"] = [int(x) for x in args.scale.split(",")]
    only = args.only.split(",") if args.only else list(CASES)
    peers: list[Peer] = all_peers()
    if args.peers:
        wanted = args.peers.split(",")
        peers = [p for p in peers if p.key in wanted or p.kind in wanted]
    if not procs.set_subreaper():
        print(
            "warning: cannot become a child subreaper; orphans may escape cleanup", file=sys.stderr
        )

    started = datetime.now()
    t0 = time.monotonic()
    data: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "params": params,
        "machine": machine(),
        "versions": {"python": platform.python_version()},
        "peers": {},
        "results": {},
    }
    root = Path(tempfile.mkdtemp(prefix="otree-bench-"))
    try:
        data["environ_removed"] = pyenv.clean_environ(root)
        if args.otree_src:
            Peer.otree_src = Path(args.otree_src).resolve()
        Peer.bin = pyenv.make(root, Peer.otree_src)
        pyenv.warm(Peer.bin)
        python = str(Peer.bin / "python")
        data["environment"] = pyenv.describe()
        active: list[Peer] = []
        for p in peers:
            why = p.unavailable()
            info: dict[str, Any] = {"label": p.label, "unavailable": why}
            if why is None:
                info["version"] = p.version()
                info["settings"] = p.settings()
                active.append(p)
                if p.version():
                    data["versions"][p.kind] = p.version()
            else:
                print(f"skipping {p.label}: {why}", file=sys.stderr)
            data["peers"][p.key] = info

        light, light_kind = build_light_child(root, python)
        python_child = [python, "-I", str(HERE / "child.py")]
        data["children"] = {
            "python": "python -I benchmarks/child.py",
            "light": "benchmarks/stamp.c (compiled with cc -O2)"
            if light_kind == "c"
            else "python -I -S benchmarks/child.py, exec'ing sleep (no C compiler here)",
        }
        env = cases.Env(root, python_child, light, light_kind, args.quick)
        res = data["results"]

        def each(case: str, fn: Any, *fargs: Any, into: dict[str, Any] | None = None) -> None:
            target = res.setdefault(case, {}) if into is None else into
            for p in active:
                print(
                    f"[{time.monotonic() - t0:6.1f}s] {case} {' '.join(map(str, fargs))}: "
                    f"{p.label}",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    target[p.key] = fn(env, p, *fargs)
                except Exception as exc:  # a harness bug must not leave processes behind
                    target[p.key] = {"error": f"{type(exc).__name__}: {exc}"}
                    target[p.key]["leftovers"] = len(procs.cleanup())

        def together(case: str, fn: Any, *fargs: Any, into: dict[str, Any]) -> None:
            print(
                f"[{time.monotonic() - t0:6.1f}s] {case} {' '.join(map(str, fargs))}: "
                + ", ".join(p.label for p in active),
                file=sys.stderr,
                flush=True,
            )
            try:
                into.update(fn(env, active, *fargs))
            except Exception as exc:  # a harness bug must not leave processes behind
                for p in active:
                    into.setdefault(p.key, {})["error"] = f"{type(exc).__name__}: {exc}"
                procs.cleanup()

        if "restart" in only:
            together(
                "restart",
                cases.restart_latency,
                params["restart_runs"],
                into=res.setdefault("restart", {}),
            )
        if "crash" in only:
            each("crash", cases.crash_loop, params["crash_window"], params["crash_horizon"])
        if "crash-light" in only:
            each(
                "crash-light",
                cases.crash_loop,
                params["crash_window"],
                params["crash_horizon"],
                True,
            )
        if "scale" in only:
            for n in params["scale"]:
                together(
                    "scale",
                    cases.scale,
                    n,
                    params["idle"],
                    params["settle"],
                    params["reps"],
                    into=res.setdefault("scale", {}).setdefault(str(n), {}),
                )
        if "output" in only:
            each("output", cases.output, params["output_lines"])
    finally:
        left = procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    data["machine"]["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    data["duration_s"] = round(time.monotonic() - t0, 1)
    data["budgets"] = report.budgets(data["results"])
    if left:
        data["leftovers_at_exit"] = left

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    text = report.markdown(data)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)
    print(f"written: {out / stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
