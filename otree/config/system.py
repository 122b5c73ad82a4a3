"""A tree's fields checked against this machine, at load (``run``, ``check``, ``reload``).

- ``user`` / ``group``: a name or id the password and group databases know;
- when otree is not root: ``user`` (and ``group``) must be otree's own, since only
  root may run a process as someone else;
- when otree is not root: no limit above otree's own hard limit, which only root
  may raise.

Each problem is an issue with its dotted key path; the loader adds file and line.
A value still holding a ``$`` (a pool's ``${OTREE_REPLICA}``) is checked per
instance when it starts, not here.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource

from otree.core.spec import Limit, Service, Supervisor, walk
from otree.errors import Issue

__all__ = ["machine_issues"]


def _user(value: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except (KeyError, OverflowError):
        return None


def _group(value: str) -> grp.struct_group | None:
    try:
        return grp.getgrgid(int(value)) if value.isdigit() else grp.getgrnam(value)
    except (KeyError, OverflowError):
        return None


def _own_user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _shown(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _limit_issue(limit: Limit) -> str | None:
    """Why otree (not root) cannot set ``limit``, or None."""
    number = getattr(resource, "RLIMIT_" + limit.name.upper(), None)
    if number is None:
        return None
    own = resource.getrlimit(number)[1]
    if own == resource.RLIM_INFINITY:
        return None
    for which, value in (("hard", limit.hard), ("soft", limit.soft)):
        if value is None or value > own:
            return (
                f"the {which} limit {_shown(value)} is above otree's own hard limit {own} "
                "(only root may raise it)"
            )
    return None


def _identity_issues(svc: Service, path: str, root: bool, issues: list[Issue]) -> None:
    user = None
    if svc.user is not None and "$" not in svc.user:
        user = _user(svc.user)
        if user is None:
            what = "uid" if svc.user.isdigit() else "user"
            issues.append(Issue(f"{path}.user", f"no {what} {svc.user!r} on this machine"))
        elif not root and user.pw_uid != os.geteuid():
            issues.append(
                Issue(
                    f"{path}.user",
                    f"otree runs as {_own_user()}, not root: it cannot run a service "
                    f"as {user.pw_name!r}",
                )
            )
    if svc.group is not None and "$" not in svc.group:
        group = _group(svc.group)
        if group is None:
            what = "gid" if svc.group.isdigit() else "group"
            issues.append(Issue(f"{path}.group", f"no {what} {svc.group!r} on this machine"))
        elif not root and group.gr_gid != os.getegid():
            issues.append(
                Issue(
                    f"{path}.group",
                    f"otree runs with gid {os.getegid()}, not root: it cannot run a service "
                    f"with group {group.gr_name!r}",
                )
            )


def machine_issues(tree: Supervisor) -> list[Issue]:
    """What this machine cannot do of ``tree`` (the module's rules), in tree order."""
    issues: list[Issue] = []
    root = os.geteuid() == 0
    for path, node in walk(tree):
        if not isinstance(node, Service):
            continue
        _identity_issues(node, path, root, issues)
        if not root:
            for limit in node.limits:
                problem = _limit_issue(limit)
                if problem is not None:
                    issues.append(Issue(f"{path}.limits.{limit.name}", problem))
    return issues
