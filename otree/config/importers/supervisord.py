"""supervisord configurations -> otree trees (``otree import supervisord.conf``).

What maps (DESIGN.md, "Migration"): each ``[program:x]`` a service, each
``[group:g]`` a supervisor of its programs, ``[include]`` files read in place
(globs relative to the including file), the ``%(...)s`` expansions turned into
otree's ``${...}``. Whatever has no equivalent becomes a :class:`Note`: a
comment in the output and a line on stderr. A value that cannot be translated
is a ``ConfigError`` naming its file, line and key.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from otree.config.importers import supervisord_tables as t
from otree.config.importers import values as v
from otree.config.importers.common import (
    Note,
    check_name,
    display_path,
    dollars,
    read_text,
    relative_to,
)
from otree.config.importers.ini import Option, Section, parse_ini
from otree.config.importers.writer import Source, Table, Value
from otree.errors import ConfigError, Issue

_EXPANSION = re.compile(
    r"%(?:(?P<percent>%)|\((?P<name>[^)]*)\)(?P<fmt>[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]))"
)


@dataclass
class Program:
    name: str
    section: Section
    priority: int
    table: Table
    group: str | None = None


@dataclass
class Group:
    name: str
    section: Section
    priority: int
    members: list[Program] = field(default_factory=list)


def read_sections(path: str) -> tuple[list[Section], list[Note], list[str]]:
    """Every section of ``path`` and of the files its ``[include]`` names, and the files read."""
    sections: list[Section] = []
    notes: list[Note] = []
    files: list[str] = []
    seen: dict[str, Section] = {}

    def read(file: str) -> None:
        real = os.path.realpath(file)
        if real in files:
            return
        files.append(real)
        for section in parse_ini(read_text(file), file):
            if section.name in seen and section.kind != "include":
                first = seen[section.name].source
                message = f"[{section.name}] is declared twice (first at {first})"
                raise ConfigError([Issue("", message, section.source.file, section.source.line)])
            seen[section.name] = section
            if section.kind != "include":
                sections.append(section)
                continue
            opt = section.options.get("files")
            if opt is None:
                s = section.source
                raise ConfigError([Issue("include", "needs 'files'", s.file, s.line)])
            here = os.path.dirname(file)
            for pattern in opt.value.split():
                pattern = pattern.replace("%(here)s", here or ".")
                matches = sorted(glob.glob(os.path.join(here, pattern)))
                if not matches:
                    notes.append(
                        Note(
                            opt.source,
                            "include.files",
                            f"[include] files = {opt.value}",
                            f"no file matches {pattern!r}",
                        )
                    )
                for match in matches:
                    read(display_path(match))

    read(path)
    return sections, notes, files


class Translator:
    """One supervisord configuration's sections -> the tables of a tree."""

    def __init__(self, sections: list[Section], out_dir: str) -> None:
        self.sections = sections
        self.out_dir = out_dir
        self.notes: list[Note] = []
        self.base_env: dict[str, str] = {}
        self.base_env_source: Source | None = None
        self.base_umask: tuple[str, Source] | None = None  # [supervisord] umask
        #: [supervisord] minfds and minprocs as limits: (name, value, where)
        self.base_limits: list[tuple[str, int, Source]] = []

    def note(self, opt: Option | Section, path: str, setting: str, reason: str) -> None:
        self.notes.append(Note(opt.source, path, setting, reason))

    # -- expansions ------------------------------------------------------------------------

    def expand(self, opt: Option, path: str, ctx: dict[str, str]) -> str:
        """``opt``'s text with supervisord's ``%(...)s`` as otree's ``${...}`` (``$`` as ``$$``)."""
        out: list[str] = []
        pos = 0
        for m in _EXPANSION.finditer(opt.value):
            out.append(dollars(opt.value[pos : m.start()]))
            pos = m.end()
            if m["percent"]:
                out.append("%")
                continue
            out.append(self._one(opt, path, m["name"], m["fmt"], ctx))
        rest = opt.value[pos:]
        if "%(" in rest:
            v.fail(opt, path, f"cannot read the expansion in {rest!r} (expected %(name)s)")
        out.append(dollars(rest))
        return "".join(out)

    def _one(self, opt: Option, path: str, name: str, fmt: str, ctx: dict[str, str]) -> str:
        written = f"%({name}){fmt}"
        if name.startswith("ENV_"):
            if fmt != "s":
                v.fail(opt, path, f"cannot translate {written}: otree's ${{VAR}} has no format")
            return "${" + name[4:] + "}"
        if name == "here":
            return relative_to(os.path.dirname(opt.source.file) or ".", self.out_dir)
        if name == "process_num":
            if "replicas" not in ctx:  # one process: its number is known
                try:
                    return ("%" + fmt) % int(ctx["numprocs_start"])
                except (TypeError, ValueError):
                    v.fail(opt, path, f"cannot translate {written}")
            if ctx["numprocs_start"] != "0":
                v.fail(
                    opt,
                    path,
                    (
                        f"cannot translate {written} with numprocs_start = {ctx['numprocs_start']}:"
                        " otree numbers a pool's instances from 0 (${OTREE_REPLICA})"
                    ),
                )
            if fmt not in ("s", "d"):
                v.fail(opt, path, f"cannot translate {written}: ${{OTREE_REPLICA}} is not padded")
            return "${OTREE_REPLICA}"
        if name in ("program_name", "group_name", "numprocs"):
            try:
                return ("%" + fmt) % (int(ctx[name]) if fmt[-1] in "dioxX" else ctx[name])
            except (TypeError, ValueError):
                v.fail(opt, path, f"cannot translate {written}")
        if name == "host_node_name":
            v.fail(opt, path, f"cannot translate {written}: otree has no host name expansion")
        v.fail(
            opt,
            path,
            f"unknown expansion {written} (supervisord has here, program_name,"
            " group_name, process_num, numprocs, host_node_name and ENV_X)",
        )

    # -- sections --------------------------------------------------------------------------

    def tables(self) -> list[Table]:
        """The tree's tables, the root first."""
        programs: dict[str, Program] = {}
        groups: list[Section] = []
        for section in self.sections:  # first: its umask and limits are every program's
            if section.kind == "supervisord":
                self.supervisord(section)
        for section in self.sections:
            kind = section.kind
            if kind == "program":
                prog = self.program(section)
                if prog.name in programs:
                    first = programs[prog.name].section.source
                    message = f"two programs are named {prog.name!r} (the other at {first})"
                    s = section.source
                    raise ConfigError([Issue(section.label, message, s.file, s.line)])
                programs[prog.name] = prog
            elif kind == "group":
                groups.append(section)
            elif kind == "supervisord":
                continue
            elif kind in t.SECTION_REASONS:
                self.note(
                    section, section.label, f"[{section.name}]", t.SECTION_REASONS[kind] or ""
                )
            else:
                known = ", ".join(["program", "group", "include", *t.SECTION_REASONS])
                s = section.source
                message = f"unknown section kind [{section.name}] (supervisord has {known})"
                raise ConfigError([Issue("", message, s.file, s.line)])
        for prog in programs.values():
            self.finish_env(prog)
        top = self.assemble(programs, groups)
        return [self.root(), *top]

    def supervisord(self, section: Section) -> None:
        for name, opt in section.options.items():
            path = f"supervisord.{name}"
            if name == "environment":
                self.base_env = {
                    k: self.expand(Option(x, opt.source), path, {})
                    for k, x in v.env_pairs(opt, path).items()
                }
                self.base_env_source = opt.source
                continue
            if name == "umask":
                self.base_umask = (v.umask(opt, path), opt.source)
                continue
            if name in t.LIMITS:
                self.base_limits.append((t.LIMITS[name], v.integer(opt, path), opt.source))
                continue
            reason = t.SUPERVISORD_REASONS.get(name, "a setting of supervisord itself")
            self.note(opt, path, f"[supervisord] {name} = {opt.value}", reason)

    def finish_env(self, prog: Program) -> None:
        """``[supervisord]``'s environment below the program's own, and its ``minfds`` and
        ``minprocs`` as the program's limits (supervisord raises its own limits to them,
        and every program inherits them)."""
        if self.base_limits:
            limits = {name: n for name, n, _ in self.base_limits}
            prog.table.set("limits", limits, self.base_limits[0][2])
        if not self.base_env:
            return
        entries = prog.table.entries
        for i, (key, value, source) in enumerate(entries):
            if key == "env" and isinstance(value, dict):
                entries[i] = (key, {**self.base_env, **value}, source)
                return
        entries.append(("env", dict(self.base_env), self.base_env_source))

    def program(self, section: Section) -> Program:
        raw_name = section.name.split(":", 1)[1].strip()
        label = section.label
        name = check_name(raw_name, label, section.source)
        opts = dict(section.options)
        for key in list(opts):
            if key in t.NO_EQUIVALENT:
                opt = opts.pop(key)
                self.note(opt, f"{label}.{key}", f"{key} = {opt.value}", t.NO_EQUIVALENT[key])
            elif key not in t.PROGRAM_KEYS:
                opt = opts[key]
                v.fail(opt, f"{label}.{key}", "not a [program] option of supervisord")

        def path(key: str) -> str:
            return f"{label}.{key}"

        numprocs = v.integer(opts["numprocs"], path("numprocs"), 1) if "numprocs" in opts else 1
        start = (
            v.integer(opts["numprocs_start"], path("numprocs_start"))
            if ("numprocs_start" in opts)
            else 0
        )
        ctx = {
            "program_name": raw_name,
            "group_name": raw_name,
            "numprocs": str(numprocs),
            "numprocs_start": str(start),
        }
        if numprocs > 1:
            ctx["replicas"] = str(numprocs)
        table = Table((name,), section.source)
        table.comments.append(f"[{section.name}] {section.source}")
        if "command" not in opts:
            s = section.source
            raise ConfigError([Issue(label, "has no 'command'", s.file, s.line)])
        self._program_fields(table, opts, label, ctx)
        priority = (
            v.integer(opts["priority"], path("priority"), -(2**31)) if ("priority" in opts) else 999
        )
        return Program(name, section, priority, table)

    def _program_fields(
        self, table: Table, opts: dict[str, Option], label: str, ctx: dict[str, str]
    ) -> None:
        def put(key: str, value: Value, opt: Option) -> None:
            table.set(key, value, opt.source)

        def path(key: str) -> str:
            return f"{label}.{key}"

        cmd = opts["command"]
        # continuation lines are words of the command (shlex takes a newline as a space)
        command = " ".join(self.expand(cmd, path("command"), ctx).split("\n")).strip()
        if not command:
            v.fail(cmd, path("command"), "is empty")
        put("cmd", command, cmd)
        if "directory" in opts:
            put("cwd", self.expand(opts["directory"], path("directory"), ctx), opts["directory"])
        if "environment" in opts:
            opt = opts["environment"]
            env = {
                k: self.expand(Option(x, opt.source), path("environment"), ctx)
                for k, x in v.env_pairs(opt, path("environment")).items()
            }
            put("env", env, opt)
        if "user" in opts:
            put("user", self.expand(opts["user"], path("user"), ctx), opts["user"])
        if "umask" in opts:
            put("umask", v.umask(opts["umask"], path("umask")), opts["umask"])
        elif self.base_umask is not None:  # supervisord's own umask, which its children inherit
            table.set("umask", self.base_umask[0], self.base_umask[1])
        restart = "transient"  # supervisord's default autorestart is unexpected
        restart_src = table.source
        if "autorestart" in opts:
            restart = v.auto_restart(opts["autorestart"], path("autorestart"))
            restart_src = opts["autorestart"].source
        if restart != "permanent":
            table.set("restart", restart, restart_src)
        if "exitcodes" in opts:
            codes = v.exit_codes(opts["exitcodes"], path("exitcodes"))
            if codes != [0]:
                put("normal_exit_codes", codes, opts["exitcodes"])
        if "stopsignal" in opts:
            sig = v.stop_signal(opts["stopsignal"], path("stopsignal"))
            if sig != "TERM":
                put("stop_signal", sig, opts["stopsignal"])
        wait = t.SUPERVISORD_DEFAULTS["stopwaitsecs"]
        if "stopwaitsecs" in opts:
            wait = v.integer(opts["stopwaitsecs"], path("stopwaitsecs"))
        table.set("shutdown", wait, opts["stopwaitsecs"].source if "stopwaitsecs" in opts else None)
        secs = t.SUPERVISORD_DEFAULTS["startsecs"]
        if "startsecs" in opts:
            secs = v.integer(opts["startsecs"], path("startsecs"))
        if secs > 0:
            ready: dict[str, int] = {"delay": secs}
            if secs >= 30:
                ready["timeout"] = secs + 30
            table.set("ready", ready, opts["startsecs"].source if "startsecs" in opts else None)
        if "autostart" in opts and not v.boolean(opts["autostart"], path("autostart")):
            put("autostart", False, opts["autostart"])
        if "replicas" in ctx:
            put("replicas", int(ctx["replicas"]), opts["numprocs"])
        if "process_name" in opts:
            opt = opts["process_name"]
            self.note(
                opt,
                path("process_name"),
                f"process_name = {opt.value}",
                (
                    "otree names a service by its table"
                    + (" and a pool's instances NAME.0, NAME.1, ..." if "replicas" in ctx else "")
                ),
            )
        if "numprocs_start" in opts and "replicas" in ctx and ctx["numprocs_start"] != "0":
            opt = opts["numprocs_start"]
            self.note(
                opt,
                path("numprocs_start"),
                f"numprocs_start = {opt.value}",
                ("otree numbers a pool's instances from 0 (${OTREE_REPLICA})"),
            )
        self._log(table, opts, label, ctx)

    def _log(self, table: Table, opts: dict[str, Option], label: str, ctx: dict[str, str]) -> None:
        prefix = "stdout_logfile" if "stdout_logfile" in opts else "logfile"
        out = opts.get(prefix)
        target = self.expand(out, f"{label}.{prefix}", ctx) if out else "AUTO"
        if out is not None and target.upper() == "AUTO":
            self.note(
                out,
                f"{label}.{prefix}",
                f"{prefix} = {out.value}",
                (
                    "otree keeps the output in memory for otree logs;"
                    " otree run --log-dir D writes one file per service"
                ),
            )
        elif out is not None and target in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
            self.note(
                out,
                f"{label}.{prefix}",
                f"{prefix} = {out.value}",
                (
                    "otree's console is its stdout already"
                    " (each line prefixed with the service's path)"
                ),
            )
        elif out is not None and target.upper() == "SYSLOG":
            reason = t.NO_EQUIVALENT["stdout_syslog"]
            self.note(out, f"{label}.{prefix}", f"{prefix} = {out.value}", reason)
        elif out is not None and target.upper() not in ("NONE", "OFF"):
            log: dict[str, Value] = {"file": target}
            size = opts.get(f"{prefix}_maxbytes")
            log["max_bytes"] = (
                v.byte_size(size, f"{label}.{size and prefix}_maxbytes")
                if size
                else t.SUPERVISORD_DEFAULTS["maxbytes"]
            )
            backups = opts.get(f"{prefix}_backups")
            log["backups"] = (
                v.integer(backups, f"{label}.{prefix}_backups")
                if backups
                else t.SUPERVISORD_DEFAULTS["backups"]
            )
            table.set("log", log, out.source)  # type: ignore[arg-type]
        err = opts.get("stderr_logfile")
        merged = "redirect_stderr" in opts and v.boolean(
            opts["redirect_stderr"], f"{label}.redirect_stderr"
        )
        if err is not None and not merged:
            target_err = self.expand(err, f"{label}.stderr_logfile", ctx)
            if target_err in ("/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"):
                self.note(
                    err,
                    f"{label}.stderr_logfile",
                    f"stderr_logfile = {err.value}",
                    (
                        "otree's console shows the service's stdout and stderr, each line prefixed"
                        " with its path"
                    ),
                )
            elif target_err.upper() not in ("NONE", "OFF", "AUTO") and target_err != target:
                self.note(
                    err,
                    f"{label}.stderr_logfile",
                    f"stderr_logfile = {err.value}",
                    (
                        "otree writes a service's stdout and stderr"
                        " to the same place (its log, its console)"
                    ),
                )
        for key in ("stderr_logfile_maxbytes", "stderr_logfile_backups"):
            if key in opts and err is not None and not merged:
                self.note(
                    opts[key], f"{label}.{key}", f"{key} = {opts[key].value}", "see stderr_logfile"
                )

    # -- the tree --------------------------------------------------------------------------

    def assemble(self, programs: dict[str, Program], groups: list[Section]) -> list[Table]:
        by_group: list[Group] = []
        for section in groups:
            raw = section.name.split(":", 1)[1].strip()
            name = check_name(raw, section.label, section.source)
            opt = section.options.get("programs")
            if opt is None:
                s = section.source
                raise ConfigError([Issue(section.label, "has no 'programs'", s.file, s.line)])
            prio_opt = section.options.get("priority")
            prio = v.integer(prio_opt, f"{section.label}.priority", -(2**31)) if prio_opt else 999
            group = Group(name, section, prio)
            for member in [p.strip() for p in opt.value.split(",") if p.strip()]:
                prog = programs.get(member)
                if prog is None:
                    v.fail(opt, f"{section.label}.programs", f"no [program:{member}]")
                if prog.group is not None:
                    v.fail(
                        opt,
                        f"{section.label}.programs",
                        f"{member!r} is in [group:{prog.group}] too",
                    )
                prog.group = raw
                group.members.append(prog)
            for key, o in section.options.items():
                if key not in ("programs", "priority"):
                    v.fail(o, f"{section.label}.{key}", "not a [group] option of supervisord")
            by_group.append(group)
        # supervisord starts its groups by priority (a program alone is a group of one, made
        # after the [group:x] ones), in that order between equals; a group's programs likewise
        order = {id(g.section): n for n, g in enumerate(by_group)}
        order.update({id(p.section): len(order) + n for n, p in enumerate(programs.values())})
        top: list[tuple[int, int, list[Table]]] = []
        names: dict[str, Source] = {}
        for group in by_group:
            if group.name in names:
                s = group.section.source
                message = f"{group.name!r} names a program or group at {names[group.name]} too"
                raise ConfigError([Issue(group.section.label, message, s.file, s.line)])
            names[group.name] = group.section.source
            head = Table((group.name,), group.section.source)
            head.comments.append(f"[{group.section.name}] {group.section.source}")
            head.set("strategy", "one_for_one", group.section.source)
            members = sorted(group.members, key=lambda p: p.priority)
            for prog in members:
                prog.table.keys = (group.name, *prog.table.keys)
            tables = [head, *[p.table for p in members]]
            top.append((group.priority, order[id(group.section)], tables))
        for prog in programs.values():
            if prog.group is not None:
                continue
            if prog.name in names:
                s = prog.section.source
                message = f"{prog.name!r} names a group at {names[prog.name]} too"
                raise ConfigError([Issue(prog.section.label, message, s.file, s.line)])
            names[prog.name] = prog.section.source
            top.append((prog.priority, order[id(prog.section)], [prog.table]))
        top.sort(key=lambda t: (t[0], t[1]))
        return [t for _, _, tables in top for t in tables]

    def root(self) -> Table:
        root = Table(())
        root.comments.append(
            "supervisord restarts each program on its own. Here, a supervisor allows\n"
            "`intensity` restarts within `period` seconds, then gives up: it stops its\n"
            "children and its parent decides; when the root gives up, otree run exits 1.\n"
            "Raise them if your programs may crash more often than this."
        )
        root.set("strategy", "one_for_one")
        root.set("intensity", 3)
        root.set("period", 5)
        return root
