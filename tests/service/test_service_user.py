"""Started as root, `hatoba serve` runs as its service user, and mail still flows.

The real thing: `hatoba serve` as a child process, started as root with
[server] user set to an unprivileged test user. /proc says what every thread
of the server and of its delivery process runs as; SMTP in, IMAP and POP3
out, one delivery to a peer on loopback (DKIM-signed with a key made by a
command run as root) and a SIGHUP reload show that the user can do all its
work. Files that commands run as root left behind are the user's afterwards;
the log file stays root's and both processes write to it.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import signal
import smtplib
import stat
from pathlib import Path

import pytest
from support.fakesmtp import ScriptedSmtp
from support.harness import PASSWORDS, ServerProcess, free_port_offset, make_home, wait_for
from support.service import blocked_signals, children, credentials, open_for, service_account

from hatoba.cli.main import main

pytestmark = pytest.mark.slow

ALICE, BOB = "alice@example.test", "bob@example.test"


def owner_and_mode(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


def test_every_process_runs_as_the_service_user_while_mail_flows(service_dir: Path) -> None:
    user = service_account()
    offset = free_port_offset()
    with ScriptedSmtp() as peer:
        home = make_home(service_dir / "h", port_offset=offset, extra_config=(
            "[server]\nworkers = 2\n"
            f'[delivery.routes]\n"peer.example" = "[127.0.0.1]:{peer.port}"\n[log]\nfile = "hatoba.log"\n'
        ))
        data = home.root / "data"
        # Commands run as root leave root's files in the data folder, and the
        # data folder itself may be root's 0700: serve gives them all back.
        assert main(["-c", str(home.config_path), "dkim", "keygen", "example.test", "--selector", "s1"]) == 0
        [dkim_key] = (data / "dkim").rglob("*.key")
        assert owner_and_mode(dkim_key) == (0, 0o600)
        os.chown(data, 0, 0)
        with open_for(), ServerProcess(home, offset, keep_root=False) as server:  # open_for: the interpreter
            serve_pid = server.proc.pid
            # Two workers: the other worker and a delivery process for each.
            assert wait_for(lambda: len(children(serve_pid)) == 3), f"children: {children(serve_pid)}"
            processes = [serve_pid, *children(serve_pid)]
            _all_run_as(processes, user)
            # serve blocks SIGTERM and SIGHUP from binding until its handlers are in place;
            # the delivery process, started after, must not inherit that.
            assert [blocked_signals(pid) for pid in processes] == [0] * len(processes)
            # Deliveries yield the cores to the listeners (queue/process.py DELIVERY_NICENESS).
            from hatoba.queue.process import DELIVERY_NICENESS

            delivery = [pid for pid in processes if b"hatoba.queue.process" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            assert len(delivery) == 2

            def expected_niceness() -> bool:  # set as the process starts, after Python's own start-up
                base = _niceness(serve_pid)
                return all(_niceness(pid) == min(19, base + (DELIVERY_NICENESS if pid in delivery else 0))
                           for pid in processes)

            assert wait_for(expected_niceness), {pid: _niceness(pid) for pid in processes}

            with smtplib.SMTP("127.0.0.1", server.port(25), timeout=10) as smtp:
                smtp.sendmail("someone@elsewhere.example", [BOB], b"Subject: inbound\r\n\r\nhello bob\r\n")
            assert len(home.wait_messages(BOB, 1)) == 1
            with imaplib.IMAP4_SSL("127.0.0.1", server.port(993), ssl_context=home.client_context(), timeout=10) as imap:
                imap.login(BOB, PASSWORDS[BOB])
                imap.select("INBOX")
                _, fetched = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                assert b"Subject: inbound" in fetched[0][1]
            pop = poplib.POP3_SSL("127.0.0.1", server.port(995), context=home.client_context(), timeout=10)
            pop.user(BOB)
            pop.pass_(PASSWORDS[BOB])
            assert b"hello bob" in b"\n".join(pop.retr(1)[1])
            pop.quit()

            with smtplib.SMTP("127.0.0.1", server.port(587), timeout=10) as smtp:
                smtp.starttls(context=home.client_context())
                smtp.login(ALICE, PASSWORDS[ALICE])
                smtp.sendmail(ALICE, ["friend@peer.example"],
                              f"From: {ALICE}\r\nTo: friend@peer.example\r\nSubject: outbound\r\n\r\nhi\r\n".encode())
            assert wait_for(lambda: peer.messages, timeout=20), server.log_path.read_text()[-2000:]
            assert b"Subject: outbound" in peer.messages[0]
            assert b"DKIM-Signature:" in peer.messages[0]  # the service user read the key root made

            server.proc.send_signal(signal.SIGHUP)  # keys are re-read as the service user
            assert wait_for(lambda: "certificates reloaded" in server.log_path.read_text())
            _all_run_as([serve_pid, *children(serve_pid)], user)
        assert server.proc.returncode == 0

    # The log file is root's, opened before the drop; the delivery process writes to it through
    # the server's descriptor.
    log_file = home.root / "hatoba.log"
    assert owner_and_mode(log_file)[0] == 0
    assert "delivered" in log_file.read_text() and "to=<friend@peer.example>" in log_file.read_text()
    log = server.log_path.read_text()
    assert f"running as user {user.name} (uid {user.uid}, gid {user.gid})" in log
    assert f"back to user {user.name}" in log and "Traceback" not in log
    for path in (home.root / "tls" / "server.key", dkim_key, data / "directory.sqlite3"):
        assert owner_and_mode(path) == (user.uid, 0o600), path
    assert owner_and_mode(data)[0] == user.uid
    strangers = [p for p in data.rglob("*") if os.lstat(p).st_uid != user.uid]
    assert strangers == []  # mail, indexes and queue files: all the service user's


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _all_run_as(pids: list[int], user) -> None:  # type: ignore[no-untyped-def]
    for pid in pids:
        threads = credentials(pid)
        assert threads, pid
        for tid, ids in threads.items():
            assert ids.uids == (user.uid,) * 4, (pid, tid, ids)  # real, effective, saved, file system
            assert ids.gids == (user.gid,) * 4, (pid, tid, ids)
            assert 0 not in ids.groups and user.gid in ids.groups, (pid, tid, ids)
