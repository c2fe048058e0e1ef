"""The service user's account: the useradd line, and creating it as root.

A system account (uid below 1000), no home made, no login shell: it only
owns hatoba's files and runs its processes.
"""

from __future__ import annotations

import grp
import pwd
import shutil
import subprocess

NOLOGIN = "/usr/sbin/nologin"


class AccountError(Exception):
    """The user could not be created; one line saying how to do it by hand."""


def useradd_args(name: str, home: str = "/nonexistent") -> list[str]:
    try:
        grp.getgrnam(name)
        group = ["--gid", name]  # a group of that name already exists: join it
    except KeyError:
        group = ["--user-group"]
    return ["useradd", "--system", *group, "--no-create-home", "--home-dir", home, "--shell", NOLOGIN,
            "--comment", "hatoba mail server", name]


def useradd_line(name: str, home: str = "/nonexistent") -> str:
    args = useradd_args(name, home)
    return " ".join(f'"{a}"' if " " in a else a for a in args)


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_user(name: str, home: str = "/nonexistent") -> bool:
    """Create system user `name` unless it exists; whether it was created."""
    if exists(name):
        return False
    args = useradd_args(name, home)
    if shutil.which(args[0]) is None:
        raise AccountError(f"no useradd here to create user {name}; create it yourself, then run this again")
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        if exists(name):  # made at the same moment by another init
            return False
        reason = (run.stderr.strip().splitlines() or [f"status {run.returncode}"])[-1]
        raise AccountError(f"could not create user {name} ({reason}); create it with: {useradd_line(name, home)}")
    return True
