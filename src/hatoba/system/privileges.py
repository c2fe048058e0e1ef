"""Who hatoba runs as, and becoming that user for good.

Rules:
- Started as root, `serve` keeps root only to bind its ports, open its log
  and give the data folder back to the service user; `drop` then changes
  the supplementary groups, the group and the user (real, effective, saved
  and file-system ids), and checks that setuid(0) fails before going on.
- Started as any other user, nothing changes: that user runs hatoba.
- Staying root takes `[server] allow_root = true`; every refusal is one line
  saying what to do.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from hatoba.config.schema import ServerConfig
from hatoba.system.accounts import useradd_line


class PrivilegeError(Exception):
    """hatoba cannot run as the user it should; one line saying what to do."""


class MissingAccount(PrivilegeError):
    """[server] user or group names no account: `kind` ("user" or "group"), `name`, and `fix` (how to make it)."""

    def __init__(self, kind: str, name: str, fix: str) -> None:
        super().__init__(f"[server] {kind} {name!r} does not exist; {fix}")
        self.kind, self.name, self.fix = kind, name, fix


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    group: str

    def __str__(self) -> str:
        return self.name if self.group == self.name else f"{self.name}:{self.group}"


def service_user(server: ServerConfig) -> ServiceUser | None:
    """The user and group of `[server]`; None for user = "" (stay as started)."""
    if not server.user:
        return None
    try:
        entry = pwd.getpwnam(server.user)
    except KeyError:
        raise MissingAccount("user", server.user, f"create it with: {useradd_line(server.user)}") from None
    if server.group:
        try:
            gid = grp.getgrnam(server.group).gr_gid
        except KeyError:
            raise MissingAccount(
                "group", server.group,
                f'create it with: groupadd --system {server.group}, or set group = "" for the primary group of '
                f"{server.user}",
            ) from None
        return ServiceUser(entry.pw_name, entry.pw_uid, gid, server.group)
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:  # a primary group missing from /etc/group still has its number
        group = str(entry.pw_gid)
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, group)


def plan(server: ServerConfig, euid: int) -> ServiceUser | None:
    """The user to become at start-up; None = stay as started (not root, or root allowed)."""
    if euid != 0:
        return None
    user = service_user(server)
    if user is not None and user.uid != 0:
        if user.gid == 0:
            raise PrivilegeError(
                f"[server] group of {user.name} is root (gid 0): hatoba would keep root's files within "
                f"reach; set [server] group to the user's own group"
            )
        return user
    if server.allow_root:
        return None
    what = f'[server] user = "{server.user}"' if server.user else '[server] user = ""'
    raise PrivilegeError(
        f"started as root with {what}, hatoba would keep running as root; set [server] user = \"hatoba\" "
        f"(create it with: {useradd_line('hatoba')}), or allow_root = true if you must"
    )


def drop(user: ServiceUser) -> None:
    """Become `user` for good: groups first (they need root), then the user ids."""
    try:
        os.initgroups(user.name, user.gid)
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot become user {user}: {exc.strerror or exc}") from None
    verify(user)


def verify(user: ServiceUser) -> None:
    """Refuse to go on unless every id is the user's and root cannot be taken back."""
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3:
        raise PrivilegeError(f"user and group ids are not all those of {user} after dropping root")
    if 0 in os.getgroups():
        raise PrivilegeError(
            f"user {user.name} is a member of group root; take it out (gpasswd -d {user.name} root)"
        )
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError("root could be taken back after dropping privileges; refusing to serve")
