"""``otree import``: supervisord configurations and Procfiles of the kinds public projects
have, each output checked by ``otree check`` (the CLI) and its commands compared with the
input read independently (``configparser``, supervisord's own ``%`` expansion, ``shlex``)."""

from __future__ import annotations

import configparser
import glob
import os
import shlex
import shutil
from pathlib import Path

import pytest
from support.cli import otree_cli

from otree.config.importers import import_file
from otree.config.loader import loads
from otree.core.pool import instance_spec
from otree.core.spec import Service, Supervisor, walk
from otree.errors import ConfigError
from otree.testing import simulate

DATA = Path(__file__).parent / "data" / "import"

#: inputs without user, umask, autostart, ${VAR} or $ (those are in test_import_check.py)
SUPERVISORD = ["django/supervisord.conf", "nginx-php/supervisord.conf"]


def _copy(name: str, tmp_path: Path) -> Path:
    """The input's directory copied into tmp_path; the input's path there."""
    top = name.split("/")[0]
    shutil.copytree(DATA / top, tmp_path / top)
    return tmp_path / name


def _import(tmp_path: Path, name: str) -> tuple[Path, str]:
    src = _copy(name, tmp_path)
    out = src.parent / "tree.toml"
    # written where it stays: its relative paths (env_file) are relative to its directory
    result = otree_cli(
        "import", str(src.relative_to(tmp_path)), "-o", str(out.relative_to(tmp_path)), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return out, result.stderr


def _supervisord_programs(path: Path) -> dict[str, dict[str, str]]:
    """Every [program:x] of ``path`` and its includes, read as supervisord reads them."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    parser.read(path)
    files = [path]
    if parser.has_section("include"):
        for pattern in parser.get("include", "files").split():
            files += [Path(f) for f in sorted(glob.glob(str(path.parent / pattern)))]
    programs: dict[str, dict[str, str]] = {}
    for file in files:
        p = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
        p.read(file)
        for section in p.sections():
            if section.startswith("program:"):
                programs[section.split(":", 1)[1]] = {
                    **dict(p.items(section)),
                    "here": str(file.parent),
                }
    return programs


def _services(tree: Supervisor) -> dict[str, Service]:
    return {path.split(".")[-1]: node for path, node in walk(tree) if isinstance(node, Service)}


def _expected_argv(prog: dict[str, str], name: str, num: int) -> list[str]:
    """supervisord's own expansion (``%`` formatting) and split (shlex) of the command."""
    expansions = {
        "program_name": name,
        "group_name": name,
        "process_num": num,
        "numprocs": int(prog.get("numprocs", "1")),
        "here": prog["here"],
        **{f"ENV_{k}": v for k, v in os.environ.items()},
    }
    return shlex.split(prog["command"] % expansions)


@pytest.mark.parametrize("name", SUPERVISORD)
def test_a_supervisord_configuration_becomes_a_tree_that_otree_check_accepts(
    tmp_path: Path, name: str
) -> None:
    out, _ = _import(tmp_path, name)
    check = otree_cli("check", str(out))
    assert check.returncode == 0, check.stderr
    tree = loads(out.read_text(), str(out))
    services = _services(tree)
    programs = _supervisord_programs(tmp_path / name)
    assert sorted(services) == sorted(programs)
    for prog_name, prog in programs.items():
        svc = services[prog_name]
        count = int(prog.get("numprocs", "1"))
        assert (svc.replicas or 1) == count
        instances = [instance_spec(svc, i) for i in range(count)] if svc.replicas else [svc]
        for num, inst in enumerate(instances):
            assert list(inst.cmd or ()) == _expected_argv(prog, prog_name, num)


def test_the_django_stack_keeps_groups_priorities_and_settings(tmp_path: Path) -> None:
    out, stderr = _import(tmp_path, "django/supervisord.conf")
    tree = loads(out.read_text())
    assert [c.name for c in tree.children] == ["gunicorn", "celery", "flower"]  # priority order
    celery = tree.children[1]
    assert isinstance(celery, Supervisor)
    assert [c.name for c in celery.children] == ["celery-worker", "celery-beat"]
    gunicorn, worker = tree.children[0], celery.children[0]
    assert isinstance(gunicorn, Service) and isinstance(worker, Service)
    assert gunicorn.restart.value == "permanent" and worker.replicas == 2
    assert (gunicorn.shutdown, worker.shutdown) == (30.0, 600.0)
    assert gunicorn.cwd == "/srv/mysite"
    assert dict(gunicorn.env)["DJANGO_SETTINGS_MODULE"] == "mysite.settings.production"
    assert gunicorn.log is not None and (gunicorn.log.max_bytes, gunicorn.log.backups) == (
        20 * 1024 * 1024,
        5,
    )
    flower = tree.children[2]
    assert isinstance(flower, Service)
    assert flower.restart.value == "transient" and flower.normal_exit_codes == (0, 2)
    assert flower.ready is None  # startsecs=0
    # what has no equivalent: a comment in the output and a line on stderr, at its line
    text = out.read_text()
    assert "# [rpcinterface:supervisor] (django/supervisord.conf:18): no equivalent" in text
    assert (
        "otree: django/conf.d/web.conf:12: program:gunicorn.stopasgroup: no equivalent:"
        " otree always sends the stop signal to the service's whole process group"
        " (a comment in the output)"
    ) in stderr.splitlines()


def test_nginx_and_php_fpm_in_a_container_log_to_the_console(tmp_path: Path) -> None:
    out, stderr = _import(tmp_path, "nginx-php/supervisord.conf")
    tree = loads(out.read_text())
    services = _services(tree)
    assert services["nginx"].log is None and services["php-fpm"].log is None
    assert services["nginx"].restart.value == "temporary"  # autorestart=false
    assert services["queue-worker"].replicas == 4
    assert "nginx-php/supervisord.conf:9: program:php-fpm.stdout_logfile: no equivalent" in stderr
    assert "nginx-php/supervisord.conf:37: eventlistener:processes: no equivalent" in stderr
    assert "# [eventlistener:processes] (nginx-php/supervisord.conf:37): no equivalent" in (
        out.read_text()
    )


def test_a_small_configuration_translates_exactly(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text(
        "[supervisord]\n"
        "nodaemon=true\n"
        "\n"
        "[program:api]\n"
        "command=/srv/api --port 800%(process_num)s ; one port per instance\n"
        "numprocs=3\n"
        "autorestart=unexpected\n"
        "exitcodes=0,3\n"
        "startsecs=2\n"
        "stopsignal=INT\n"
        "stopwaitsecs=20\n"
        "stdout_logfile=%(program_name)s-%(process_num)s.log\n"
        "redirect_stderr=true\n"
        "\n"
        "[eventlistener:crashmail]\n"
        "command=crashmail -a -m ops@example.com\n"
        "events=PROCESS_STATE_EXITED\n"
    )
    result = otree_cli("import", "supervisord.conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "# Made by `otree import` from supervisord.conf (supervisord).\n"
        "#\n"
        "# supervisord restarts each program on its own. Here, a supervisor allows\n"
        "# `intensity` restarts within `period` seconds, then gives up: it stops its\n"
        "# children and its parent decides; when the root gives up, otree run exits 1.\n"
        "# Raise them if your programs may crash more often than this.\n"
        'strategy = "one_for_one"\n'
        "intensity = 3\n"
        "period = 5\n"
        "\n"
        "# [supervisord] nodaemon = true (supervisord.conf:2): no equivalent: otree run always\n"
        "#   runs in the foreground\n"
        "# [eventlistener:crashmail] (supervisord.conf:15): no equivalent: otree has no event\n"
        "#   listener protocol: otree run --events F writes every supervision event as a JSON\n"
        "#   line for a program to follow\n"
        "\n"
        "# [program:api] supervisord.conf:4\n"
        "[api]\n"
        'cmd = "/srv/api --port 800${OTREE_REPLICA}"\n'
        'restart = "transient"\n'
        "normal_exit_codes = [0, 3]\n"
        'stop_signal = "INT"\n'
        "shutdown = 20\n"
        "ready = { delay = 2 }\n"
        "replicas = 3\n"
        'log = { file = "api-${OTREE_REPLICA}.log", max_bytes = 52428800, backups = 10 }\n'
    )
    assert result.stderr.splitlines() == [
        "otree: supervisord.conf:2: supervisord.nodaemon: no equivalent: otree run always runs"
        " in the foreground (a comment in the output)",
        "otree: supervisord.conf:15: eventlistener:crashmail: no equivalent: otree has no event"
        " listener protocol: otree run --events F writes every supervision event as a JSON"
        " line for a program to follow (a comment in the output)",
    ]
    (tmp_path / "tree.toml").write_text(result.stdout)
    tree = loads(result.stdout, str(tmp_path / "tree.toml"))
    (api,) = tree.children
    assert isinstance(api, Service)
    assert [instance_spec(api, i).cmd for i in range(3)] == [
        ("/srv/api", "--port", f"800{i}") for i in range(3)
    ]
    logs = [instance_spec(api, i).log for i in range(3)]
    assert [log.file if log else None for log in logs] == [
        f"{tmp_path}/api-{i}.log" for i in range(3)
    ]


def test_include_globs_are_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "etc" / "conf.d").mkdir(parents=True)
    (tmp_path / "etc" / "supervisord.conf").write_text("[include]\nfiles = conf.d/*.ini\n")
    (tmp_path / "etc" / "conf.d" / "b.ini").write_text("[program:b]\ncommand=sleep 2\n")
    (tmp_path / "etc" / "conf.d" / "a.ini").write_text("[program:a]\ncommand=sleep 1\n")
    (tmp_path / "etc" / "conf.d" / "skip.conf").write_text("[program:c]\ncommand=sleep 3\n")
    result = otree_cli("import", "etc/supervisord.conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tree = loads(result.stdout)
    assert [(c.name, c.cmd) for c in tree.children if isinstance(c, Service)] == [
        ("a", ("sleep", "1")),
        ("b", ("sleep", "2")),
    ]
    assert "# [program:a] etc/conf.d/a.ini:1" in result.stdout


def test_a_procfile_becomes_a_tree_that_ends_when_any_process_ends(tmp_path: Path) -> None:
    out, stderr = _import(tmp_path, "procfile-rails/Procfile")
    assert stderr == ""
    check = otree_cli("check", str(out))
    assert check.returncode == 0, check.stderr
    tree = loads(out.read_text())
    assert [c.name for c in tree.children] == ["release", "web", "worker"]
    commands = [
        line.split(":", 1)
        for line in (tmp_path / "procfile-rails/Procfile").read_text().splitlines()
        if not line.startswith("#")
    ]
    for name, command in commands:
        svc = _services(tree)[name]
        assert list(svc.cmd or ()) == shlex.split(command)
    assert tree.auto_shutdown.value == "any_significant"
    web = _services(tree)["web"]
    assert dict(web.env)["PORT"] == "5000" and dict(_services(tree)["worker"].env)["PORT"] == "5100"
    trace = simulate(tree, [(5.0, "worker", "crash")])
    assert trace.count("spawn", "release") == 1 and trace.count("spawn", "worker") == 1
    assert trace.count("auto_shutdown", "") == 1
    assert trace.events[-1]["event"] == "tree_stopped"


def test_an_imported_procfile_runs_release_first_and_stops_when_one_ends(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "web: python3 -c \"import os, time; print('web on', os.environ['PORT'], flush=True);"
        " open('web.up', 'w'); time.sleep(60)\"\n"
        "worker: while [ ! -f web.up ]; do sleep 0.05; done\n"
        "release: echo migrated\n"
    )
    made = otree_cli("import", "Procfile", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    run = otree_cli("run", "tree.toml", "--socket", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = " ".join((run.stdout + run.stderr).split())  # the console pads the prefixes
    assert "release | migrated" in out and "web | web on 5000" in out
    assert out.index("release | migrated") < out.index("web: spawn")
    assert "auto shutdown after worker ended" in out


def test_output_to_a_file_is_written_whole(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: sleep 60\n")
    result = otree_cli("import", "Procfile", "-o", "tree.toml", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == ""
    assert loads((tmp_path / "tree.toml").read_text()).children[0].name == "web"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Procfile", "tree.toml"]
    same = otree_cli("import", "Procfile", "-o", "Procfile", cwd=tmp_path)
    assert same.returncode == 2
    assert (
        same.stderr == "otree: Procfile: the output would overwrite the input; choose another -o\n"
    )


BAD = [
    (
        "supervisord.conf",
        '{"programs": ["web"]}\n',
        "otree: supervisord.conf:1: not a supervisord configuration (INI): expected a"
        " '[section]' first, got '{\"programs\": [\"web\"]}'",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=sleep 1\n[webserver]\nport=80\n",
        "otree: supervisord.conf:3: unknown section kind [webserver] (supervisord has program,"
        " group, include, supervisord, supervisorctl, unix_http_server, inet_http_server,"
        " rpcinterface, ctlplugin, eventlistener, fcgi-program)",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=sleep 1\nstopsignal=STOP\n",
        "otree: supervisord.conf:3: program:web.stopsignal: otree's stop_signal is one of TERM,"
        " INT, QUIT, HUP, KILL, USR1, USR2, WINCH, ABRT, got 'STOP'",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=sleep 1\nautorestart=sometimes\n",
        "otree: supervisord.conf:3: program:web.autorestart: expected true, false or unexpected,"
        " got 'sometimes'",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=web --node %(host_node_name)s\n",
        "otree: supervisord.conf:2: program:web.command: cannot translate %(host_node_name)s:"
        " otree has no host name expansion",
    ),
    (
        "supervisord.conf",
        "[program:w]\ncommand=w --port 90%(process_num)02d\nnumprocs=2\n",
        "otree: supervisord.conf:2: program:w.command: cannot translate %(process_num)02d:"
        " ${OTREE_REPLICA} is not padded",
    ),
    (
        "supervisord.conf",
        "[program:w]\ncommand=w %(process_num)s\nnumprocs=2\nnumprocs_start=1\n",
        "otree: supervisord.conf:2: program:w.command: cannot translate %(process_num)s with"
        " numprocs_start = 1: otree numbers a pool's instances from 0 (${OTREE_REPLICA})",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=sleep 1\nautorestrat=true\n",
        "otree: supervisord.conf:3: program:web.autorestrat: not a [program] option of supervisord",
    ),
    (
        "supervisord.conf",
        "[program:web]\ndirectory=/srv\n",
        "otree: supervisord.conf:1: program:web: has no 'command'",
    ),
    (
        "supervisord.conf",
        "[program:web.1]\ncommand=sleep 1\n",
        "otree: supervisord.conf:1: program:web.1: 'web.1' cannot name a service or supervisor"
        " in otree (letters, digits, '_' and '-' only): rename it",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=sleep 1\n[group:g]\nprograms=web,api\n",
        "otree: supervisord.conf:4: group:g.programs: no [program:api]",
    ),
    (
        "supervisord.conf",
        "[supervisord]\nnodaemon=true\n",
        "otree: supervisord.conf: no [program:x] section: nothing to run",
    ),
    (
        "supervisord.conf",
        "command=sleep 1\n",
        "otree: supervisord.conf:1: not a supervisord configuration (INI): expected a"
        " '[section]' first, got 'command=sleep 1'",
    ),
    (
        "supervisord.conf",
        "[program:web]\ncommand=sleep 1\nthis is not ini\n",
        "otree: supervisord.conf:3: not an INI line: expected '[section]' or 'key = value',"
        " got 'this is not ini'",
    ),
    (
        "Procfile",
        "web: gunicorn app\nthis is not a process\n",
        "otree: Procfile:2: not a Procfile line: expected 'name: command', got 'this is not a"
        " process'",
    ),
    (
        "Procfile",
        "web: a\nweb: b\n",
        "otree: Procfile:2: web: is declared twice (first at line 1)",
    ),
    ("missing.conf", None, "otree: missing.conf: cannot read the file: No such file or directory"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD, ids=[b[2][:60] for b in BAD])
def test_bad_input_exits_2_naming_the_file_and_line(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    result = otree_cli("import", name, "-o", "tree.toml", cwd=tmp_path)
    assert (result.returncode, result.stderr.splitlines()) == (2, [message])
    assert result.stdout == "" and not (tmp_path / "tree.toml").exists()


def test_a_program_declared_in_two_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text(
        "[program:web]\ncommand=a\n[include]\nfiles=more.conf\n"
    )
    (tmp_path / "more.conf").write_text("\n[program:web]\ncommand=b\n")
    result = otree_cli("import", "supervisord.conf", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "otree: more.conf:2: [program:web] is declared twice (first at supervisord.conf:1)\n"
    )


def test_a_value_otree_refuses_is_reported_at_the_input_line(tmp_path: Path) -> None:
    """The output is loaded as otree check loads it: otree's own rule, at the input's line."""
    (tmp_path / "supervisord.conf").write_text(
        "[program:web]\ncommand=sleep 1\n\n[program:job]\ncommand=sleep 2\nnumprocs=20000\n"
    )
    result = otree_cli("import", "supervisord.conf", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("otree: supervisord.conf:6: cannot translate: otree says job.replicas:")


def test_import_file_is_the_same_in_process(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: sleep 60\n")
    made = import_file(str(tmp_path / "Procfile"))
    assert made.kind == "Procfile" and made.notes == []
    with pytest.raises(ConfigError) as info:
        import_file(str(tmp_path / "nothing"))
    assert "cannot read the file" in str(info.value)


IDENTITY = (
    "[program:db]\n"
    "command=postgres -D %(ENV_PGDATA)s -c 'log_line_prefix=%%m $user '\n"
    "directory=%(here)s\n"
    "user=postgres\n"
    "umask=077\n"
    "autostart=false\n"
    'environment=PGPORT="5432",HOME="%(here)s/home"\n'
)


def test_user_umask_autostart_variables_and_dollars_are_written_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user, umask, autostart, ${VAR} and $$ are written per DESIGN.md (otree check of such
    outputs, and otree run of them: tests/config/test_import_check.py)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PGDATA", raising=False)
    (tmp_path / "supervisord.conf").write_text(IDENTITY)
    made = import_file("supervisord.conf", "tree.toml", check=False)
    assert made.unset == ["PGDATA"]
    body = made.text.split("# [program:db]", 1)[1]
    assert body == (
        " supervisord.conf:1\n"
        "[db]\n"
        "cmd = \"postgres -D ${PGDATA} -c 'log_line_prefix=%m $$user '\"\n"
        'cwd = "${OTREE_TREE_DIR}"\n'
        'env = { PGPORT = "5432", HOME = "${OTREE_TREE_DIR}/home" }\n'
        'user = "postgres"\n'
        'umask = "0077"\n'
        'restart = "transient"\n'
        "shutdown = 10\n"
        "ready = { delay = 1 }\n"
        "autostart = false\n"
    )
    elsewhere = import_file("supervisord.conf", "/srv/tree.toml", check=False)
    assert f'cwd = "{tmp_path}"' in elsewhere.text  # %(here)s is not the output's directory


def test_a_procfile_with_port_and_an_env_file_is_written_as_designed(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: gunicorn app:app --bind 0.0.0.0:$PORT\n")
    (tmp_path / ".env").write_text("SECRET=x\n")
    made = import_file(str(tmp_path / "Procfile"), check=False)
    assert made.text.split("[web]\n", 1)[1] == (
        'cmd = ["sh", "-c", "gunicorn app:app --bind 0.0.0.0:$$PORT"]\n'
        'env = { PORT = "5000" }\n'
        'restart = "temporary"\n'
        "significant = true\n"
        'env_file = ".env"\n'
    )


def test_supervisords_own_umask_and_limits_are_every_programs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[supervisord] umask, minfds and minprocs (supervisord's own, which its programs
    inherit) are written on each program: umask where it has none of its own, limits
    nofile and nproc; written after the programs, they apply all the same."""
    (tmp_path / "supervisord.conf").write_text(
        "[program:a]\ncommand=a\numask=077\n"
        "[program:b]\ncommand=b\nstartsecs=0\n"
        "[supervisord]\numask=027\nminfds=4096\nminprocs=512\n"
    )
    monkeypatch.chdir(tmp_path)
    made = import_file("supervisord.conf", check=False)
    assert not made.notes
    assert made.text.split("[a]\n", 1)[1] == (
        'cmd = "a"\n'
        'umask = "0077"\n'
        'restart = "transient"\n'
        "shutdown = 10\n"
        "ready = { delay = 1 }\n"
        "limits = { nofile = 4096, nproc = 512 }\n"
        "\n"
        "# [program:b] supervisord.conf:4\n"
        "[b]\n"
        'cmd = "b"\n'
        'umask = "0027"\n'
        'restart = "transient"\n'
        "shutdown = 10\n"
        "limits = { nofile = 4096, nproc = 512 }\n"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("umask=8", "expected an octal umask such as 022, got '8'"),
        ("minfds=many", "expected an integer, got 'many'"),
    ],
)
def test_a_bad_global_umask_or_limit_names_its_line(
    tmp_path: Path, option: str, message: str
) -> None:
    (tmp_path / "s.conf").write_text(f"[program:a]\ncommand=a\n[supervisord]\n{option}\n")
    with pytest.raises(ConfigError) as info:
        import_file(str(tmp_path / "s.conf"), check=False)
    key = option.split("=")[0]
    assert str(info.value) == f"{tmp_path}/s.conf:4: supervisord.{key}: {message}"


@pytest.mark.parametrize("name", ["container/supervisord.conf", "procfile-python/Procfile"])
def test_inputs_with_identity_fields_and_variables_pass_otree_check(
    tmp_path: Path, name: str
) -> None:
    """Their user, umask and autostart as fields, and otree check passes."""
    out, _ = _import(tmp_path, name)
    check = otree_cli("check", out.name, cwd=out.parent)
    assert check.returncode == 0, check.stderr
    tree = loads(out.read_text(), str(out))
    services = _services(tree)
    if name.startswith("container"):
        assert list(services) == ["app", "cron", "sshd"]
        programs = _supervisord_programs(tmp_path / name)
        for prog_name, prog in programs.items():
            assert list(services[prog_name].cmd or ()) == _expected_argv(prog, prog_name, 0)
        assert services["app"].stop_signal == "INT" and services["app"].log is None
        assert [s.autostart for s in services.values()] == [True, True, False]
    else:
        assert list(services) == ["release", "web", "worker", "clock"]
        web = services["web"].cmd or ()
        assert web[:2] == ("sh", "-c") and web[2].endswith("0.0.0.0:$PORT --log-file -")


def test_an_imported_procfile_gives_each_process_its_port(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "web: echo web on $PORT; touch web.up; sleep 60\n"
        "worker: while [ ! -f web.up ]; do sleep 0.05; done; echo worker on $PORT\n"
    )
    made = otree_cli("import", "Procfile", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    run = otree_cli("run", "tree.toml", "--socket", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = " ".join((run.stdout + run.stderr).split())
    assert "web | web on 5000" in out and "worker | worker on 5100" in out
