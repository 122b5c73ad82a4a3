"""Who a service runs as, and with what limits: ``user``, ``group`` (and the user's
supplementary groups), ``umask``, ``nice``, ``oom_score_adj`` and ``limits``.

:func:`setup_of` turns a spec's fields into a :class:`Setup` once per spawn (the
password and group databases are read then, and remembered); the spawn applies it
in the child between the fork and the exec (:func:`Setup.apply`): the limits and
priorities first, while the child still has otree's privileges, then the groups,
the gid and the uid. A service that sets none of these (or only ``umask``, which
``subprocess`` applies itself) keeps the fast ``vfork`` spawn; one that does pays a
full fork and the Python of :meth:`Setup.apply` in the child (measured in
docs/tree-file.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from otree.core.reprs import plain_repr
from otree.core.spec import Service
from otree.runtime.posix import SpawnError

__all__ = ["Account", "Setup", "identity_env", "setup_of"]


@plain_repr
@attrs.frozen(repr=False)
class Account:
    """The uid, gid and supplementary groups a service runs with."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    #: from the password database (None: a group alone, otree's own user)
    name: str | None = None
    home: str | None = None
    #: False: otree runs as this uid and gid already (nothing to change in the child)
    change: bool = True


@plain_repr
@attrs.frozen(repr=False)
class Setup:
    """What the child sets up between fork and exec (None: left as otree has it)."""

    account: Account | None = None
    umask: int | None = None
    nice: int | None = None
    oom_score_adj: int | None = None
    #: (RLIMIT number, soft, hard), with RLIM_INFINITY for unlimited
    limits: tuple[tuple[int, int, int], ...] = ()

    @property
    def needs_fork(self) -> bool:
        """Whether the spawn needs code in the child (everything but ``umask``)."""
        return (
            (self.account is not None and self.account.change)
            or self.nice is not None
            or self.oom_score_adj is not None
            or bool(self.limits)
        )

    def apply(self) -> None:
        """In the child, after the fork: limits and priorities, then the identity. A
        failure is written to the child's stderr (the service's output) and raised."""
        step = "the setup"
        try:
            import resource

            for number, soft, hard in self.limits:
                step = f"limit {_LIMIT_NAMES.get(number, number)}"
                resource.setrlimit(number, (soft, hard))
            if self.nice is not None:
                step = f"nice {self.nice}"
                os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            if self.oom_score_adj is not None:
                step = f"oom_score_adj {self.oom_score_adj}"
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write(str(self.oom_score_adj))
            if self.account is not None and self.account.change:
                account = self.account
                step = f"uid {account.uid} gid {account.gid}"
                os.setgroups(list(account.groups))
                os.setresgid(account.gid, account.gid, account.gid)
                os.setresuid(account.uid, account.uid, account.uid)
        except OSError as exc:
            os.write(2, f"otree: cannot set {step}: {exc.strerror or exc}\n".encode())
            raise


_LIMIT_NAMES: dict[int, str] = {}
#: (user, group) -> its Account: the databases are read once per pair
_ACCOUNTS: dict[tuple[str | None, str | None], Account] = {}


def setup_of(spec: Service) -> Setup | None:
    """What spawning ``spec`` must set up in the child; None: nothing. Raises SpawnError
    (an unknown user, a user other than otree's own when otree is not root)."""
    if (
        spec.user is None
        and spec.group is None
        and spec.umask is None
        and spec.nice is None
        and spec.oom_score_adj is None
        and not spec.limits
    ):
        return None
    account = account_of(spec.user, spec.group) if spec.user or spec.group else None
    return Setup(
        account=account,
        umask=spec.umask,
        nice=spec.nice,
        oom_score_adj=spec.oom_score_adj,
        limits=_limits(spec),
    )


def account_of(user: str | None, group: str | None) -> Account:
    """The Account of ``user`` (name or id) with ``group`` (default: the user's primary
    group; supplementary groups as ``initgroups`` gives them). Raises SpawnError."""
    key = (user, group)
    found = _ACCOUNTS.get(key)
    if found is not None:
        return found
    import grp
    import pwd

    name: str | None = None
    home: str | None = None
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, OverflowError):
            if not user.isdigit():
                raise SpawnError(f"no such user: {user!r}") from None
            uid, gid = int(user), os.getgid()  # a bare uid: allowed, as in systemd
        else:
            uid, gid, name, home = entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir
    else:
        uid, gid = os.getuid(), os.getgid()
    if group is not None:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except (KeyError, OverflowError):
            if not group.isdigit():
                raise SpawnError(f"no such group: {group!r}") from None
            gid = int(group)
    if os.geteuid() != 0 and uid != os.geteuid():
        raise SpawnError(f"cannot run as user {user!r}: otree is not root")
    groups: tuple[int, ...] = (gid,)
    if name is not None:
        groups = tuple(dict.fromkeys([gid, *os.getgrouplist(name, gid)]))
    change = (uid, gid) != (os.getuid(), os.getgid())
    account = Account(uid, gid, groups, name, home, change)
    _ACCOUNTS[key] = account
    return account


def _limits(spec: Service) -> tuple[tuple[int, int, int], ...]:
    if not spec.limits:
        return ()
    import resource

    out = []
    for limit in spec.limits:
        number = getattr(resource, f"RLIMIT_{limit.name.upper()}", None)
        if number is None:
            raise SpawnError(f"this system has no resource limit {limit.name!r}")
        _LIMIT_NAMES[number] = limit.name
        inf = resource.RLIM_INFINITY
        soft = inf if limit.soft is None else limit.soft
        hard = inf if limit.hard is None else limit.hard
        out.append((number, soft, hard))
    return tuple(out)


def identity_env(setup: Setup | None, env: Mapping[str, str]) -> dict[str, str]:
    """``HOME``, ``USER`` and ``LOGNAME`` of the service's user, then ``env`` over them."""
    account = setup.account if setup is not None else None
    if account is None or account.name is None:
        return dict(env)
    own = {"USER": account.name, "LOGNAME": account.name}
    if account.home is not None:
        own["HOME"] = account.home
    return {**own, **env}
