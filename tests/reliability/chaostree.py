"""The chaos tree: 50 services under supervisors three levels deep, every strategy.

```
root (one_for_one, never gives up)
├── s1, s2                       services
├── a (one_for_one)  ├── b (one_for_all)  └── c (rest_for_one)     depth 1
│   ├── s1  ├── p  ├── s2  └── q                                   depth 2 (p, q: supervisors)
│   │            └── s1 .. s7                                       depth 3 (services)
```

Services are cheap (``sleep``, a little ``sh``) and of several kinds: plain
sleepers, ones that leave a second process in their group, ones that ignore
``TERM`` (killed after their ``shutdown``), ones that end on their own (with
0, or with 3 declared normal), ones with a readiness delay, chatty ones.
Restart types are mixed. Supervisors at depth 1 and 2 have low intensities,
so that clustered kills make them give up and escalate.
"""

from __future__ import annotations

from collections.abc import Mapping

from support.treefiles import toml_value

SERVICE_KINDS: dict[str, dict[str, object]] = {
    "sleeper": {"cmd": ["sleep", "600"]},
    "pair": {"cmd": ["sh", "-c", "sleep 600 & exec sleep 600"]},
    "stubborn": {"cmd": ["sh", "-c", "trap '' TERM; exec sleep 600"], "shutdown": 0.3},
    "brutal": {"cmd": ["sleep", "600"], "shutdown": "brutal_kill"},
    "finisher": {"cmd": ["sh", "-c", "sleep 3; exit 0"]},
    "coder": {"cmd": ["sh", "-c", "sleep 2; exit 3"], "normal_exit_codes": [0, 3]},
    "slow_ready": {"cmd": ["sleep", "600"], "ready": {"delay": 0.05, "timeout": 5}},
    "chatty": {"cmd": ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"]},
}
#: the exit codes each kind can end with (else it dies by a signal)
CODES: dict[str, set[int]] = {"finisher": {0}, "coder": {3}}
#: (kind, restart) of the services, in turn
MIX = [
    ("sleeper", "permanent"),
    ("pair", "permanent"),
    ("stubborn", "permanent"),
    ("sleeper", "transient"),
    ("brutal", "permanent"),
    ("finisher", "permanent"),
    ("sleeper", "temporary"),
    ("coder", "transient"),
    ("slow_ready", "permanent"),
    ("chatty", "transient"),
    ("finisher", "transient"),
    ("pair", "temporary"),
]
DEPTH1 = {"a": "one_for_one", "b": "one_for_all", "c": "rest_for_one"}
DEPTH2 = {
    "a.p": "one_for_all",
    "a.q": "rest_for_one",
    "b.p": "one_for_one",
    "b.q": "rest_for_one",
    "c.p": "one_for_all",
    "c.q": "one_for_one",
}
ROOT_INTENSITY = 1_000_000
DEPTH1_LIMITS = (12, 1.0)  # intensity, period
DEPTH2_LIMITS = (4, 1.0)


def layout() -> list[tuple[str, str]]:
    """``(path, "service" | "supervisor")`` in declared (start) order, root excluded."""
    nodes: list[tuple[str, str]] = [("s1", "service")]
    for top in DEPTH1:
        if top == "b":
            nodes.append(("s2", "service"))
        nodes.append((top, "supervisor"))
        for name in ("s1", "p", "s2", "q"):
            path = f"{top}.{name}"
            if name in ("p", "q"):
                nodes.append((path, "supervisor"))
                nodes.extend((f"{path}.s{i}", "service") for i in range(1, 8))
            else:
                nodes.append((path, "service"))
    return nodes


def services() -> list[str]:
    return [p for p, kind in layout() if kind == "service"]


def service_fields(path: str) -> dict[str, object]:
    index = services().index(path)
    kind, restart = MIX[index % len(MIX)]
    return {**SERVICE_KINDS[kind], "restart": restart}


def kind(path: str) -> str:
    return MIX[services().index(path) % len(MIX)][0]


#: the services that end on their own
CODES_OF = {p: CODES[kind(p)] for p in services() if kind(p) in CODES}


def implausible_exits(events: list[dict[str, object]]) -> list[str]:
    """Exits with a code or signal the service cannot have produced (a misread status)."""
    bad = []
    for i, e in enumerate(events):
        if e["event"] != "exit":
            continue
        path = str(e["path"])
        if "code" in e and e["code"] not in CODES.get(kind(path), set()):
            bad.append(f"#{i} {e}: a {kind(path)} cannot exit with that code")
        if "signal" in e and e["signal"] not in ("KILL", "TERM"):
            bad.append(f"#{i} {e}: only KILL and TERM are ever sent")
    return bad


def render(gen: Mapping[str, int] | None = None) -> str:
    """The tree file; ``gen[path]`` sets ``env.GEN`` of a service (a reload changes it)."""
    gen = gen or {}
    lines = [
        'strategy = "one_for_one"',
        f"intensity = {ROOT_INTENSITY}",
        "period = 1",
    ]
    for path, kind in layout():
        lines.append("")
        lines.append(f"[{path}]")
        if kind == "supervisor":
            depth = path.count(".")
            strategy = DEPTH1[path] if depth == 0 else DEPTH2[path]
            intensity, period = DEPTH1_LIMITS if depth == 0 else DEPTH2_LIMITS
            lines.append(f'strategy = "{strategy}"')
            lines.append(f"intensity = {intensity}")
            lines.append(f"period = {period}")
            if path == "c.q":
                lines.append('restart = "transient"')
            continue
        fields = service_fields(path)
        fields["env"] = {"GEN": str(gen.get(path, 0))}
        for key, value in fields.items():
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
