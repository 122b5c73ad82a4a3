"""Budgets and the Markdown report, from the JSON results of one run."""

from __future__ import annotations

from typing import Any

MIB = 1.0


def _get(results: dict[str, Any], case: str, key: str, *path: str) -> Any:
    node: Any = results.get(case, {})
    for p in path:
        node = node.get(p, {}) if isinstance(node, dict) else {}
    node = node.get(key, {}) if isinstance(node, dict) else {}
    return node


def _otree_key(rows: dict[str, Any]) -> str | None:
    for key in ("otree-defaults", "otree-fastest"):
        if key in rows and "error" not in rows[key]:
            return key
    return None


def budgets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each budget (the issue's and otree's design targets) with the measured figure."""
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: Any, met: bool | None, source: str) -> None:
        out.append(
            {"budget": name, "target": target, "measured": measured, "met": met, "source": source}
        )

    restart = results.get("restart", {})
    floor = restart.get("floor", {}).get("p50_ms")
    key = _otree_key(restart)
    if floor and key and restart[key].get("p50_ms") is not None:
        ratio = restart[key]["p50_ms"] / floor
        text = f"{restart[key]['p50_ms']} ms = {ratio:.2f}x floor ({floor} ms) [{key}]"
        add("restart latency p50", "<= 1.15x floor", text, ratio <= 1.15, "issue")
        add("restart latency p50", "<= 1.5x floor", text, ratio <= 1.5, "DESIGN.md")
    scale = results.get("scale", {})
    for n in sorted(scale, key=int):
        rows = scale[n]
        key = _otree_key(rows)
        if key is None:
            continue
        o = rows[key]
        f = rows.get("floor", {})
        n_i = int(n)
        if n_i == 200 and f.get("all_running_ms") and o.get("all_running_ms") is not None:
            ratio = o["all_running_ms"] / f["all_running_ms"]
            best = o.get("all_running_best_ms", o["all_running_ms"]) / f.get(
                "all_running_best_ms", f["all_running_ms"]
            )
            add(
                "200 children all running",
                "<= 1.5x floor",
                f"{o['all_running_ms']} ms = {ratio:.2f}x floor ({f['all_running_ms']} ms), "
                f"median of {o.get('launches', 1)}; best {best:.2f}x",
                ratio <= 1.5,
                "issue",
            )
        if n_i == 200 and o.get("rss_mib") is not None:
            rss = max(o["rss_mib"], o.get("rss_after_idle_mib") or 0)
            add("RSS at 200 children", "<= 20 MiB", f"{rss} MiB", rss <= 20, "issue")
            add("RSS at 200 children", "< 40 MB (38.1 MiB)", f"{rss} MiB", rss < 38.1, "DESIGN.md")
        if n_i == 1000 and o.get("rss_mib") is not None:
            rss = max(o["rss_mib"], o.get("rss_after_idle_mib") or 0)
            add("RSS at 1000 children", "<= 30 MiB", f"{rss} MiB", rss <= 30, "issue")
        if n_i in (200, 1000) and o.get("idle_cpu_ms") is not None:
            text = f"{o['idle_cpu_ms']} ms, {o['idle_wakeups']} wake-ups over {o['idle_s']} s"
            met = o["idle_cpu_ms"] < 0.5 and o["idle_s"] >= 10
            target = "0 ms over 10 s" if n_i == 1000 else "indistinguishable from zero"
            add(
                f"idle CPU, {n} children",
                target,
                text,
                met,
                "issue" if n_i == 1000 else "DESIGN.md",
            )
        if n_i == 200 and o.get("stop_ms") is not None:
            add(
                "stop 200 children (OTP order)",
                "<= 400 ms",
                f"{o['stop_ms']} ms",
                o["stop_ms"] <= 400,
                "issue",
            )
        if n_i == 500 and o.get("all_running_ms") is not None and o.get("stop_ms") is not None:
            add(
                "500 children started and stopped",
                "< 2 s each",
                f"start {o['all_running_ms']} ms, stop {o['stop_ms']} ms",
                o["all_running_ms"] < 2000 and o["stop_ms"] < 2000,
                "DESIGN.md",
            )
    outp = results.get("output", {})
    key = _otree_key(outp)
    if key and outp[key].get("lines_per_s") is not None:
        o = outp[key]
        text = f"{o['lines_per_s']:,} lines/s, {o['lines_lost']} lost ({o['lines']:,} lines)"
        add(
            "output relay",
            ">= 1M lines/s, none lost",
            text,
            o["lines_per_s"] >= 1_000_000 and o["lines_lost"] == 0,
            "issue",
        )
        add("output relay", ">= 500k lines/s", text, o["lines_per_s"] >= 500_000, "DESIGN.md")
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def _ratio(v: Any, floor: Any) -> str:
    if isinstance(v, (int, float)) and isinstance(floor, (int, float)) and floor:
        return f"{v / floor:.2f}x"
    return "-"


def _table(
    rows: dict[str, Any], labels: dict[str, str], cols: list[tuple[str, str]], ratio_of: str | None
) -> list[str]:
    head = ["peer", *[title for _, title in cols]]
    if ratio_of:
        head.append(f"{ratio_of} / floor")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    floor = rows.get("floor", {}).get(ratio_of) if ratio_of else None
    for key, row in rows.items():
        if "error" in row and len([k for k in row if k != "leftovers"]) <= 2:
            lines.append(
                f"| {labels.get(key, key)} | " + f"error: {row['error']} |" + " |" * (len(head) - 2)
            )
            continue
        cells = [labels.get(key, key), *[_fmt(row.get(c)) for c, _ in cols]]
        if ratio_of:
            cells.append(_ratio(row.get(ratio_of), floor))
        lines.append("| " + " | ".join(cells) + " |")
        if "error" in row:
            lines.append(f"| ↳ {labels.get(key, key)}: {row['error']} |" + " |" * (len(head) - 1))
    return lines


def markdown(data: dict[str, Any]) -> str:
    labels = {k: v["label"] for k, v in data["peers"].items()}
    res = data["results"]
    md: list[str] = [f"# otree benchmarks — {data['started']}", ""]
    if data["quick"]:
        md += [
            "**Quick run** (`--quick`): small sizes and short windows; figures are a smoke "
            "check, not the budgets' measurement.",
            "",
        ]
    m = data["machine"]
    md += [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}; "
        f"load average before {m['load_before']}, after {m['load_after']}. "
        f"Python {data['versions']['python']}; otree {data['versions'].get('otree', '-')}; "
        f"supervisor {data['versions'].get('supervisord', '-')}. "
        f"Run took {data['duration_s']} s.",
        "",
        f"Every Python process runs from {data.get('environment', 'the harness venv')}. "
        f"Children: restart, crash and output use `{data['children']['python']}` "
        f"(a Python program, site imported); scale uses {data['children']['light']}.",
        "",
    ]
    if "restart" in res:
        md += [
            f"## Restart latency (SIGKILL → replacement recorded its start; "
            f"{data['params']['restart_runs']} runs)",
            "",
        ]
        md += _table(
            res["restart"],
            labels,
            [
                ("p50_ms", "p50 ms"),
                ("p95_ms", "p95 ms"),
                ("max_ms", "max ms"),
                ("runs", "runs"),
                ("kill_gap_s", "kill gap s"),
                ("leftovers", "left over"),
            ],
            "p50_ms",
        )
        md.append("")
    for case, child in (("crash", "the Python child"), ("crash-light", "the C stamp child")):
        if case not in res:
            continue
        p = data["params"]
        md += [
            f"## Crash loop ({child} exits 1 at once; restarts and CPU within "
            f"{p['crash_window']} s of launch, give-up watched for {p['crash_horizon']} s)",
            "",
        ]
        md += _table(
            res[case],
            labels,
            [
                ("restarts", "restarts"),
                ("cpu_ms", "supervisor CPU ms"),
                ("cpu_after_first_start_ms", "of which after 1st start"),
                ("gave_up", "gave up"),
                ("gave_up_after_ms", "gave up after ms"),
                ("starts_before_give_up", "starts before give-up"),
                ("supervisor_exit_code", "exit code"),
                ("leftovers", "left over"),
            ],
            None,
        )
        md.append("")
    for n, rows in sorted(res.get("scale", {}).items(), key=lambda kv: int(kv[0])):
        md += [
            f"## Scale: {n} sleeping children",
            "",
            "Each peer launched up to "
            f"{data['params'].get('reps', 1)} times, peers taking turns: median (and best) "
            "of the launches; RSS the largest; idle figures from the first launch.",
            "",
        ]
        md += _table(
            rows,
            labels,
            [
                ("first_child_ms", "1st child ms"),
                ("all_running_ms", "all running ms"),
                ("all_running_best_ms", "best"),
                ("start_cpu_ms", "start CPU ms"),
                ("spawn_cpu_ms", "of which spawning"),
                ("stop_ms", "stop ms"),
                ("stop_best_ms", "best"),
                ("stop_cpu_ms", "stop CPU ms"),
                ("rss_mib", "RSS MiB"),
                ("idle_cpu_ms", "idle CPU ms"),
                ("idle_wakeups", "idle wake-ups"),
                ("launches", "launches"),
                ("leftovers", "left over"),
            ],
            "all_running_ms",
        )
        md.append("")
    if "output" in res:
        md += [f"## Output ({data['params']['output_lines']:,} lines of 41 bytes → log file)", ""]
        md += _table(
            res["output"],
            labels,
            [
                ("writer_done_ms", "writer done ms"),
                ("all_in_file_ms", "all in file ms"),
                ("lines_per_s", "lines/s"),
                ("lines_lost", "lost"),
                ("complete", "file exact"),
                ("leftovers", "left over"),
            ],
            "all_in_file_ms",
        )
        md.append("")
    md += [
        "## Budgets (otree at its defaults; issue and DESIGN.md)",
        "",
        "| budget | target | measured | met | source |",
        "|---|---|---|---|---|",
    ]
    for b in data["budgets"]:
        met = "n/a" if b["met"] is None else ("**yes**" if b["met"] else "**NO**")
        md.append(f"| {b['budget']} | {b['target']} | {b['measured']} | {met} | {b['source']} |")
    if not data["budgets"]:
        md.append("| (none measured in this run) | | | | |")
    md += ["", "## Settings", ""]
    for _key, peer in data["peers"].items():
        if peer.get("unavailable"):
            md.append(f"- **{peer['label']}**: not run: {peer['unavailable']}")
            continue
        settings = "; ".join(f"{k}: {v}" for k, v in peer["settings"].items())
        version = f" {peer['version']}" if peer.get("version") else ""
        md.append(f"- **{peer['label']}**{version}: {settings}")
    md.append("")
    return "\n".join(md)
