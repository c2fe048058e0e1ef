"""The rules of system/privileges.py, system/ownership.py and system/reach.py, without a server."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
from support.harness import TEST_USER
from support.service import service_account

from hatoba.config.schema import ServerConfig
from hatoba.system.ownership import give_to
from hatoba.system.privileges import MissingAccount, PrivilegeError, drop, plan
from hatoba.system.reach import unreachable


def server(**settings: object) -> ServerConfig:
    return ServerConfig(hostname="mail.example.test", **settings)  # type: ignore[arg-type]


def test_not_root_runs_as_whoever_started_it() -> None:
    for settings in ({}, {"user": ""}, {"user": "hatoba-nobody"}, {"user": "root"}):
        assert plan(server(**settings), euid=1000) is None


def test_root_needs_a_user_or_allow_root() -> None:
    for user in ("", "root"):
        with pytest.raises(PrivilegeError, match="would keep running as root"):
            plan(server(user=user), euid=0)
        assert plan(server(user=user, allow_root=True), euid=0) is None
    with pytest.raises(MissingAccount) as missing:
        plan(server(user="hatoba-nobody"), euid=0)
    assert (missing.value.kind, missing.value.name) == ("user", "hatoba-nobody")
    assert "useradd --system" in missing.value.fix


def test_the_service_user_and_its_group() -> None:
    nobody = pwd.getpwnam("nobody")
    user = plan(server(user="nobody"), euid=0)
    assert user is not None and (user.uid, user.gid) == (nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(MissingAccount, match="group 'hatoba-nogroup' does not exist"):
        plan(server(user="nobody", group="hatoba-nogroup"), euid=0)
    with pytest.raises(PrivilegeError, match="group of nobody is root"):
        plan(server(user="nobody", group="root"), euid=0)


def test_the_drop_is_for_good() -> None:
    """In a child: every id changes, and setuid(0) fails afterwards."""
    user = service_account()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports and exits, whatever happens
        answer = b"?"
        try:
            drop(user)
            try:
                os.setuid(0)
                answer = b"root came back"
            except PermissionError:
                answer = repr((os.getresuid(), os.getresgid(), os.getgroups())).encode()
        finally:
            os.write(write_end, answer)
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 4096).decode()
    os.waitpid(pid, 0)
    uid, gid = user.uid, user.gid
    assert answer == repr(((uid, uid, uid), (gid, gid, gid), [gid]))


def test_give_to_changes_links_not_what_they_point_at(tmp_path: Path) -> None:
    user = service_account()
    data = tmp_path / "data"
    (data / "mail" / "new").mkdir(parents=True)
    (data / "mail" / "new" / "1").write_text("mail")
    outside = tmp_path / "outside"
    outside.write_text("root's")
    (data / "planted").symlink_to(outside)
    (data / "mail" / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(data / "fifo")
    given = give_to(data, user.uid, user.gid)
    assert (given.changed, given.left) == (6, 1)  # data, mail, new, 1, planted, dir-link; not the fifo
    for path in (data, data / "mail", data / "mail" / "new", data / "mail" / "new" / "1",
                 data / "planted", data / "mail" / "dir-link"):
        assert os.lstat(path).st_uid == user.uid, path
    assert outside.stat().st_uid == 0 and tmp_path.stat().st_uid == 0 and os.lstat(data / "fifo").st_uid == 0
    assert give_to(data, user.uid, user.gid).changed == 0  # nothing left to change


def test_give_to_leaves_a_file_with_several_names_unless_the_kernel_protects_links(tmp_path: Path) -> None:
    user = service_account()
    data = tmp_path / "data"
    data.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("root's own")
    os.link(elsewhere, data / "linked")  # as a planted hard link would be
    given = give_to(data, user.uid, user.gid)
    protected = Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"
    # Protected: nobody but root could have made the link, so it is hatoba's to take.
    assert elsewhere.stat().st_uid == (user.uid if protected else 0)
    assert given.left == (0 if protected else 1)


def test_unreachable_names_the_first_folder_or_file(service_dir: Path) -> None:
    user = service_account()
    locked = service_dir / "locked"
    (locked / "inner").mkdir(parents=True)
    os.chmod(locked, 0o700)
    secret = service_dir / "secret"
    secret.write_text("k")
    os.chmod(secret, 0o600)
    assert unreachable(user, [(locked / "inner" / "x.toml", os.R_OK)]) == (
        f"user {TEST_USER} cannot reach {locked} (mode 0700, owner root), on the way to {locked}/inner/x.toml; "
        f"let it pass (chmod o+x {locked}) or move what it holds elsewhere"
    )
    assert unreachable(user, [(service_dir / "missing", os.R_OK), (secret, os.R_OK)]) == (
        f"user {TEST_USER} cannot read {secret} (mode 0600, owner root); give it to that user: chown {TEST_USER} {secret}"
    )
    os.chmod(secret, 0o644)
    assert unreachable(user, [(secret, os.R_OK)]) is None
    assert stat.S_IMODE(locked.stat().st_mode) == 0o700
