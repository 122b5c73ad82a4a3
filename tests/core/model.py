"""A reference model of otree's supervision semantics, written from docs/concepts.md alone.

It knows nothing of ``otree.core.engine``: it interprets the rules directly,
recursively, in a world where processes start and stop at the instant they
are asked to (the simulator's world with no backoff, no readiness delays and
no process that hangs on stop). Every decision happens at one instant, so the
model is plain recursion over the tree:

- a child exits on its own -> ``exit`` logged; restart or not by its restart
  type and the exit kind (permanent: always; transient: abnormal only;
  temporary: never);
- not restarted and significant under ``auto_shutdown`` -> the supervisor
  shuts down normally (any_significant: at once; all_significant: once no
  significant child is left; OTP's ``do_auto_shutdown``: a child is gone only
  when it has no process, so one whose restart failed and waits for its retry
  is still there);
- restarted -> the supervisor's one window of restart times: keep
  ``now - t <= period``, add now, more than ``intensity`` -> ``give_up``: stop
  every child in reverse declared order and exit abnormally to the parent;
  otherwise ``restart`` and by strategy stop the touched running siblings in
  reverse order, start the touched non-temporary ones in declared order;
- a supervisor's exit is handled by its parent exactly like a service's:
  give-up = abnormal, auto_shutdown = normal; at the root: exit 1 / exit 0;
- a supervisor with ``shutdown = "brutal_kill"`` that is stopped kills its
  whole subtree at once: a ``stop`` for each running service below it (in
  reverse start order), then their ``exit``s;
- a supervisor that (re)starts begins with an empty restart window and starts
  all its children in declared order, except the *held* ones: a service with
  ``autostart = false`` is held until a manual ``start`` or ``restart`` of it,
  and held again by a manual ``stop`` of it; a restart's group leaves a held
  sibling as it is (not started), a started one restarts like the others;
- a start failure during the initial start stops the already started
  siblings in reverse order and fails the parent, up to the root: exit 3;
- manual start/stop/restart are not crashes: no restart, no window entry, no
  auto_shutdown; ``stop`` of a stopped node and ``start`` of a running one do
  nothing.

``fail_start`` (a start that fails) is modelled for restarts: a failed
restart is retried, each retry is one more window entry (R26) and one more
``restart`` event (naming the child that failed to start); a
one_for_all retry restarts the whole group again, a rest_for_one retry
carries on from the failed child (R27). A retry is counted when it is
attempted, after whatever was queued before it (in this instant world nothing
ever is). Three more rules of OTP's cannot arise here, since nothing waits:
a ``start`` of a child whose exit is not handled yet is refused (it still has
its pid), a ``stop`` of a child waiting to be restarted cancels the whole
pending restart, and a ``stop`` queued before a retry cancels it; the
invariants of ``test_model.py`` check them in a world where things take time.
The model's log holds tuples:
``("spawn", path)``, ``("ready", path)``, ``("stop", path)``,
``("exit", path, normal)``, ``("start_failed", path)``,
``("restart", sup, strategy, child)``, ``("give_up", sup, restarts, period)``,
``("auto_shutdown", sup, child)``, ``("tree_ready", "")``,
``("tree_stopped", "", exit_code)``.
"""

from __future__ import annotations

from typing import Any

from otree.core.spec import AutoShutdown, Restart, Service, Strategy, Supervisor

Entry = tuple[Any, ...]


class Node:
    def __init__(self, spec: Service | Supervisor, path: str, parent: Node | None) -> None:
        self.spec = spec
        self.path = path
        self.parent = parent
        self.running = False
        self.restarting = False  # its restart failed and waits for the retry (R28)
        self.held = isinstance(spec, Service) and not spec.autostart  # not started by hand
        self.history: list[float] = []
        self.children: list[Node] = []
        if isinstance(spec, Supervisor):
            for c in spec.children:
                self.children.append(Node(c, f"{path}.{c.name}" if path else c.name, self))

    @property
    def is_service(self) -> bool:
        return isinstance(self.spec, Service)

    def __repr__(self) -> str:
        return f"<Node {self.path!r} running={self.running}>"


class StartFailed(Exception):
    """A service of the subtree failed to start (only with ``fail_start``)."""

    def __init__(self, path: str) -> None:
        self.path = path


class Model:
    def __init__(self, tree: Supervisor) -> None:
        self.root = Node(tree, "", None)
        self.nodes: dict[str, Node] = {}
        stack = [self.root]
        while stack:
            node = stack.pop()
            self.nodes[node.path] = node
            stack.extend(node.children)
        self.log: list[Entry] = []
        self.exit_code: int | None = None
        self.fail_next: set[str] = set()
        self.now = 0.0

    # --- queries ----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.exit_code is not None

    def running_services(self) -> set[str]:
        return {p for p, n in self.nodes.items() if n.is_service and n.running}

    def running_nodes(self) -> set[str]:
        return {p for p, n in self.nodes.items() if n.running}

    def node(self, path: str) -> Node:
        return self.nodes[path]

    # --- the rules ----------------------------------------------------------

    def start(self) -> None:
        """The initial start; a start failure in it ends the tree with exit code 3 (R6)."""
        try:
            self._start(self.root)
        except StartFailed:
            self.exit_code = 3
            self.log.append(("tree_stopped", "", 3))
            return
        self.log.append(("tree_ready", ""))

    def _start(self, node: Node) -> None:
        """Start a node; raises StartFailed after stopping what it started."""
        if node.is_service:
            if node.path in self.fail_next:
                self.fail_next.discard(node.path)
                self.log.append(("start_failed", node.path))
                raise StartFailed(node.path)
            node.running = True
            self.log.append(("spawn", node.path))
            self.log.append(("ready", node.path))
            return
        node.running = True
        node.history = []
        started: list[Node] = []
        for c in node.children:
            if c.held:
                continue
            try:
                self._start(c)
            except StartFailed:
                for s in reversed(started):
                    self._stop(s)
                node.running = False
                raise
            started.append(c)

    def _stop(self, node: Node) -> None:
        node.restarting = False
        if node.is_service:
            if node.running:
                node.running = False
                self.log.append(("stop", node.path))
                self.log.append(("exit", node.path, True))
            return
        if node.spec.shutdown == "brutal_kill" and node.parent is not None:
            # the whole subtree is killed at once: every stop, then every exit
            doomed = [n for n in _services_below(node) if n.running]
            doomed.reverse()
            self.log.extend(("stop", n.path) for n in doomed)
            self.log.extend(("exit", n.path, True) for n in doomed)
            for n in _services_below(node):
                n.running = False
            for n in _supervisors_below(node):
                n.running = False
            return
        for c in reversed(node.children):
            self._stop(c)
        node.running = False

    def exit(self, path: str, how: str) -> None:
        """A running service ends on its own: ``crash`` (code 1), ``exit0`` or ``kill``;
        or ``unhealthy``: otree stops it, and the end is abnormal whatever the code."""
        node = self.nodes[path]
        if self.done or not node.running:
            return
        spec = node.spec
        assert isinstance(spec, Service)
        code = {"crash": 1, "exit0": 0}.get(how)  # kill: a signal otree did not send
        normal = code is not None and code in spec.normal_exit_codes
        node.running = False
        if how == "unhealthy":  # otree stops it (its stop sequence); its end is a crash
            normal = False
            self.log.append(("stop", path))
        self.log.append(("exit", path, normal))
        self._child_exited(node, normal)

    def _child_exited(self, child: Node, normal: bool) -> None:
        sup = child.parent
        assert sup is not None
        spec = sup.spec
        assert isinstance(spec, Supervisor)
        restart = child.spec.restart
        wants_restart = restart is Restart.PERMANENT or (
            restart is Restart.TRANSIENT and not normal
        )
        if not wants_restart:
            if child.spec.significant and spec.auto_shutdown is not AutoShutdown.NEVER:
                left = [
                    c for c in sup.children if c.spec.significant and (c.running or c.restarting)
                ]
                if spec.auto_shutdown is AutoShutdown.ANY_SIGNIFICANT or not left:
                    self.log.append(("auto_shutdown", sup.path, child.path))
                    self._sup_exits(sup, normal=True)
            return
        self._restart(sup, child)

    def _count(self, sup: Node) -> bool:
        """One restart in ``sup``'s window; False if that is one too many."""
        spec = sup.spec
        assert isinstance(spec, Supervisor)
        sup.history = [t for t in sup.history if self.now - t <= spec.period]
        sup.history.append(self.now)
        return len(sup.history) <= spec.intensity

    def _restart(self, sup: Node, child: Node) -> None:
        spec = sup.spec
        assert isinstance(spec, Supervisor)
        if not self._count(sup):
            self.log.append(("give_up", sup.path, len(sup.history), spec.period))
            self._sup_exits(sup, normal=False)
            return
        self.log.append(("restart", sup.path, spec.strategy.value, child.path))
        i = sup.children.index(child)
        if spec.strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        elif spec.strategy is Strategy.ONE_FOR_ALL:
            group = list(sup.children)
        else:
            group = sup.children[i:]
        for c in reversed(group):
            self._stop(c)
        todo = [
            c
            for c in group
            if c is child or (c.spec.restart is not Restart.TEMPORARY and not c.held)
        ]
        while todo:
            try:
                for c in todo:
                    self._start(c)
                    c.restarting = False
                return
            except StartFailed as failed:
                # the child that failed waits for its retry: still there (R28, R41)
                failing = next(c for c in todo if _contains(c, failed.path))
                failing.restarting = True
                # R26/R27: retried, and the retry counts (and is logged) as a restart
                if not self._count(sup):
                    self.log.append(("give_up", sup.path, len(sup.history), spec.period))
                    failing.restarting = False
                    self._sup_exits(sup, normal=False)
                    return
                idx = next(k for k, c in enumerate(todo) if _contains(c, failed.path))
                self.log.append(("restart", sup.path, spec.strategy.value, todo[idx].path))
                if spec.strategy is Strategy.ONE_FOR_ALL:
                    for c in reversed(todo):
                        self._stop(c)
                else:
                    todo = todo[idx:]

    def _sup_exits(self, sup: Node, *, normal: bool) -> None:
        """``sup`` stops all its children and exits (normal: auto_shutdown; else gave up).

        Its children stop by their own ``shutdown``; its own applies only when
        its parent stops it.
        """
        for c in reversed(sup.children):
            self._stop(c)
        sup.running = False
        if sup.parent is None:
            self.exit_code = 0 if normal else 1
            self.log.append(("tree_stopped", "", self.exit_code))
            return
        self._child_exited(sup, normal)

    # --- manual commands ------------------------------------------------------

    def command(self, name: str, path: str = "") -> None:
        if self.done:
            return
        if name == "shutdown":
            self._stop(self.root)
            self.exit_code = 0
            self.log.append(("tree_stopped", "", 0))
            return
        node = self.nodes[path]
        assert node.parent is not None and node.parent.running
        autostart = not isinstance(node.spec, Service) or node.spec.autostart
        if name == "stop":
            node.held = not autostart
            self._stop(node)
        elif name == "start":
            if not node.running:
                self._manual_start(node, autostart)
        elif name == "restart":
            self._stop(node)
            self._manual_start(node, autostart)

    def _manual_start(self, node: Node, autostart: bool) -> None:
        node.held = False
        try:
            self._start(node)
        except StartFailed:
            node.held = not autostart


def _contains(node: Node, path: str) -> bool:
    return node.path == path or path.startswith(node.path + ".")


def _services_below(node: Node) -> list[Node]:
    """The services under ``node``, in start order."""
    if node.is_service:
        return [node]
    return [s for c in node.children for s in _services_below(c)]


def _supervisors_below(node: Node) -> list[Node]:
    if node.is_service:
        return []
    return [node, *(s for c in node.children for s in _supervisors_below(c))]
