"""ACME with the server running as its service user, and `hatoba cert acme`
run by root: the command acts as the owner of data/acme, so nothing the
service user placed there can make root write elsewhere."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from support.acme_peers import AcmeSetup
from support.service import open_for, service_account, service_dir  # noqa: F401 - a fixture

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def test_renew_as_root_against_a_server_run_as_the_service_user(service_dir: Path) -> None:
    user = service_account()
    with open_for(), AcmeSetup(service_dir, '["http-01"]', keep_root=False) as setup:
        serial = setup.wait_issued()
        acme = setup.home.root / "data" / "acme"
        for name in ("account.key", "cert.pem", "state.json"):
            st = os.lstat(acme / name)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o600), name
        # The service user plants a symlink where root's command will write next.
        victim = service_dir / "root-only"
        victim.write_text("root's\n")
        victim.chmod(0o644)
        (acme / "state.json").unlink()
        os.symlink(victim, acme / "state.json")
        os.lchown(acme / "state.json", user.uid, user.gid)
        done = setup.home.cli("cert", "acme", "renew")
        assert done.returncode == 0, done.stderr
        assert victim.read_text() == "root's\n" and os.stat(victim).st_uid == 0
        assert setup.serial() != serial
        for path in acme.iterdir():  # everything the command and the server left is the user's
            assert os.lstat(path).st_uid == user.uid, path
