"""`hatoba backup` and `hatoba restore` on the command line: reports, and one-line errors with exit 1."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.disk import fill, small_disk
from support.harness import HatobaHome, make_home

from hatoba.cli.main import main as hatoba_main
from hatoba.store.directory import SCHEMA_VERSION
from hatoba.store.maildir import MaildirStore


def one_line_error(done: subprocess.CompletedProcess[str], pattern: str) -> None:
    import re

    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert re.search(pattern, done.stderr), done.stderr


def deliver(home: HatobaHome, count: int, size: int) -> None:
    store = MaildirStore(home.config().paths.mail_dir, hostname="mail.example.test")
    src = home.root / "m.eml"
    for n in range(count):
        src.write_bytes(f"Message-ID: <{n}@cli.test>\r\n\r\n".encode() + os.urandom(size // 2).hex().encode())
        store.deliver("alice@example.test", src)
    src.unlink()


@pytest.fixture
def home(tmp_path: Path) -> HatobaHome:
    return make_home(tmp_path / "h")


def test_backup_then_restore_report_what_they_did(home: HatobaHome, tmp_path: Path) -> None:
    deliver(home, 3, 1000)
    done = home.cli("backup", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert "synced to disk" in done.stdout
    assert f"directory: 1 domains, 3 users, 4 aliases (schema {SCHEMA_VERSION})" in done.stdout
    assert "mailboxes: 3 messages; queue: 0 messages" in done.stdout
    new = tmp_path / "n" / "hatoba.toml"
    restored = subprocess.run([sys.executable, "-m", "hatoba", "-c", str(new), "restore", str(tmp_path / "b")],
                              capture_output=True, text=True, timeout=60)
    assert restored.returncode == 0, restored.stderr
    assert f"start it with: hatoba -c {new} serve" in restored.stdout
    check = subprocess.run([sys.executable, "-m", "hatoba", "-c", str(new), "user", "list"],
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.split() == ["alice@example.test", "bob@example.test", "carol@example.test"]


def test_backup_refusals_are_one_line(home: HatobaHome, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").touch()
    one_line_error(home.cli("backup", str(tmp_path / "full")), r"^hatoba: backup: .*full is not empty")
    one_line_error(home.cli("backup", str(home.root / "data" / "b")), r"is inside .*/data, which the backup copies")
    one_line_error(home.cli("backup", str(home.root / "data")), r"is inside .*/data, which the backup copies")
    assert not (home.root / "data" / "b").exists()


def test_restore_refusals_are_one_line(home: HatobaHome, tmp_path: Path) -> None:
    assert home.cli("backup", str(tmp_path / "b")).returncode == 0
    one_line_error(home.cli("restore", str(tmp_path / "b")), r"hatoba.toml already exists; .* --force")
    (tmp_path / "b" / "manifest.json").unlink()  # as a backup that was cut short
    one_line_error(home.cli("restore", str(tmp_path / "b")), r"has no manifest.json: .* did not finish")
    one_line_error(home.cli("restore", str(tmp_path / "nothing")), r"is not a folder")


def test_backup_to_a_full_disk_says_so_and_leaves_nothing(home: HatobaHome, tmp_path: Path) -> None:
    deliver(home, 12, 200_000)  # 2.4 MB of mail to copy (another file system: no links)
    with small_disk(tmp_path / "small", "1m") as small:
        done = home.cli("backup", str(small / "b"))
        one_line_error(done, r"^hatoba: backup: cannot copy .*: no space left on the device holding .*small/b")
        assert list(small.iterdir()) == []  # the partial backup is gone: its space is free again
        (small / "b").mkdir()  # an empty folder given by the operator stays, emptied
        filler = fill(small)
        one_line_error(home.cli("backup", str(small / "b")), r"no space left")
        assert list((small / "b").iterdir()) == []
        filler.unlink()


def test_restore_to_a_full_disk_says_so_and_leaves_nothing(home: HatobaHome, tmp_path: Path) -> None:
    deliver(home, 12, 200_000)
    assert home.cli("backup", str(tmp_path / "b")).returncode == 0
    with small_disk(tmp_path / "small", "1m") as small:
        done = subprocess.run(
            [sys.executable, "-m", "hatoba", "-c", str(small / "i" / "hatoba.toml"), "restore", str(tmp_path / "b")],
            capture_output=True, text=True, timeout=60,
        )
        one_line_error(done, r"^hatoba: restore: cannot restore into .*: no space left")
        assert list(small.iterdir()) == []


def test_unreadable_source_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        home = make_home(tmp_path / "h")
        secret = home.root / "tls" / "ca.key"
        secret.chmod(0)
        try:
            one_line_error(home.cli("backup", str(tmp_path / "b")), r"permission denied for .*ca.key")
        finally:
            secret.chmod(0o600)
        return
    # root reads everything: the backup runs as nobody (a forked child: nobody cannot
    # start this Python), over an instance nobody owns but for one key.
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody to run the backup as")
    base = Path(tempfile.mkdtemp(prefix="hatoba-unreadable-"))
    try:
        base.chmod(0o755)
        home = make_home(base / "h")
        assert hatoba_main(["-c", str(home.config_path), "backup", str(base / "warm")]) == 0  # imports all it needs
        shutil.rmtree(base / "warm")
        for path in [base, home.root, *home.root.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        os.chown(home.root / "tls" / "ca.key", 0, 0)
        code, stderr = _run_as(nobody, ["-c", str(home.config_path), "backup", str(base / "b")])
        one_line_error(subprocess.CompletedProcess([], code, "", stderr),
                       r"^hatoba: backup: cannot copy .*ca.key: permission denied for .*ca.key")
        assert not (base / "b").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_as(user: pwd.struct_passwd, argv: list[str]) -> tuple[int, str]:
    """hatoba's main() in a forked child running as `user`: (exit status, stderr)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(read)
            sys.stderr = os.fdopen(write, "w")
            os.setgid(user.pw_gid)
            os.setgroups([])
            os.setuid(user.pw_uid)
            code = hatoba_main(argv)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        stderr = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stderr
