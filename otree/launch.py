"""Where the runtime, the control socket and the self-reload are wired together.

``run(tree)`` is ``otree.run()``; ``otree run TREE`` comes here too.
"""

from __future__ import annotations

import os
import threading

from otree.core.spec import Supervisor, check_tree
from otree.errors import ConfigError, OtreeError
from otree.runtime.driver import Runtime
from otree.runtime.output import stderr_line


def run(
    tree: Supervisor,
    *,
    events: str | None = None,
    log_dir: str | None = None,
    socket: str | None = None,
    subreaper: bool = False,
) -> int:
    """Run ``tree`` in the foreground until it stops; return ``otree run``'s exit code.

    An invalid tree prints its issues to stderr and returns 2 (nothing starts).
    ``socket`` names the control socket (default: ``$OTREE_SOCKET``; neither: no socket).
    """
    if threading.current_thread() is not threading.main_thread():
        raise OtreeError("otree.run() must be called from the main thread (it handles signals)")
    socket = socket or os.environ.get("OTREE_SOCKET") or None
    try:
        check_tree(tree)
        runtime = Runtime(tree, events=events, log_dir=log_dir, subreaper=subreaper, socket=socket)
    except ConfigError as exc:
        for issue in exc.issues:
            stderr_line(str(issue))
        return 2
    except OtreeError as exc:
        stderr_line(str(exc))
        return 2
    return runtime.run()
