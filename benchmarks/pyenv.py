"""A clean Python environment for every process a benchmark starts.

The development venv has an editable install of otree, whose ``.pth`` hook
imports a finder (and pathlib and more) into *every* Python process started
from it: a few milliseconds and about 2 MiB of RSS that a regular install does
not have. So the harness makes a fresh venv (no pip, no ``.pth`` hooks) whose
one ``.pth`` file only lists directories: the repository (for ``otree``) and
the harness's own site-packages (for attrs, cattrs and supervisor). Its
``bin/`` gets ``otree`` and ``supervisord`` scripts written as pip writes
console scripts. Every peer, the floor and the Python children run from it.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from benchmarks.peers import ROOT

SCRIPTS = {
    "otree": "from otree.cli.main import main",
    "supervisord": "from supervisor.supervisord import main",
}


def clean_environ(root: Path) -> list[str]:
    """Make ``os.environ`` (inherited by every peer) like a user's: no ``PYTHON*``
    variables, so no PYTHONDONTWRITEBYTECODE (which the development shell sets,
    and which makes every ``otree`` start compile its sources anew) and no
    PYTHONUNBUFFERED, and bytecode cached under ``root`` (PYTHONPYCACHEPREFIX) so
    the working tree is not written to. Returns the names removed."""
    removed = sorted(k for k in os.environ if k.startswith("PYTHON"))
    for k in removed:
        del os.environ[k]
    os.environ["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return removed


def warm(bin_dir: Path) -> None:
    """Import what the peers import once, so that their bytecode is cached."""
    code = (
        "import otree.cli.main, otree.config.loader, otree.control.server\n"
        "import otree.runtime.driver, otree.cli.control\n"
        "try:\n    import supervisor.supervisord, supervisor.rpcinterface\n"
        "except ImportError:\n    pass\n"
    )
    subprocess.run([str(bin_dir / "python"), "-c", code], check=False, timeout=120)


def make(root: Path, otree_src: Path = ROOT) -> Path:
    """Create the environment under ``root``; return its ``bin`` directory."""
    env = root / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    bin_dir = env / "bin"
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    dirs = [str(otree_src), *site.getsitepackages()]
    (purelib / "bench-paths.pth").write_text("\n".join(dirs) + "\n")
    for name, line in SCRIPTS.items():
        script = bin_dir / name
        script.write_text(
            f"#!{bin_dir / 'python'}\nimport sys\n{line}\nif __name__ == '__main__':\n"
            "    sys.exit(main())\n"
        )
        script.chmod(0o755)
    return bin_dir


def describe() -> str:
    return (
        f"a fresh venv of Python {sys.version.split()[0]} with no .pth hooks "
        "(as a regular, non-editable install; otree from the working tree), "
        "no PYTHON* variables but PYTHONPYCACHEPREFIX, bytecode compiled before measuring"
    )
