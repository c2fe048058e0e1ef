"""The running server's queue: the delivery process, and `hatoba queue` beside it."""

from __future__ import annotations

import os
import signal
import smtplib

from support.harness import ServerThread, _merge_config, wait_for

MSG = b"From: a@elsewhere.example\r\nSubject: q\r\n\r\nqueued\r\n"


def send(server, rcpt: str) -> str:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.ehlo("mx.elsewhere.example")
        c.mail("a@elsewhere.example")
        assert c.rcpt(rcpt)[0] == 250
        code, text = c.data(MSG)
        assert code == 250
        return text.decode().rsplit(" ", 1)[-1]  # "OK: queued as QID"


def test_delivery_process_is_restarted_after_a_crash(server, hatoba_home):
    child = server.server.manager.parts[0]  # the one delivery process of a one-worker server
    proc = child._proc
    os.kill(proc.pid, signal.SIGKILL)
    assert wait_for(lambda: child._proc is not proc and child._proc.pid)
    send(server, "bob@example.test")
    assert len(hatoba_home.wait_messages("bob@example.test", 1)) == 1


def test_queue_list_hold_release_delete(hatoba_home):
    # A forward to elsewhere stays queued (remote delivery is not in this version): a stable queue entry.
    with ServerThread(hatoba_home) as server:
        qid = send(server, "forward@example.test")
        assert wait_for(lambda: "attempts 1" in hatoba_home.cli("queue", "list").stdout)
        listing = hatoba_home.cli("queue", "list").stdout
        assert qid in listing and "<someone@elsewhere.example>" in listing
        assert "from <a@elsewhere.example>" in listing and "last error" in listing
        assert "1 message(s) in the queue" in listing

        r = hatoba_home.cli("queue", "hold", qid)
        assert r.returncode == 0, r.stderr
        assert "next held" in hatoba_home.cli("queue", "list").stdout
        r = hatoba_home.cli("queue", "release", qid)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: "attempts 2" in hatoba_home.cli("queue", "list").stdout)

        r = hatoba_home.cli("queue", "delete", qid)
        assert r.returncode == 0 and qid in r.stdout
        assert "0 message(s) in the queue" in hatoba_home.cli("queue", "list").stdout


def test_queue_commands_give_one_line_errors(hatoba_home):
    for args in (("delete", "nonsense"), ("hold", "0" * 19), ("release", "../../etc")):
        r = hatoba_home.cli("queue", *args)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("hatoba: "), r.stderr
        assert "Traceback" not in r.stderr


def test_serve_refuses_an_open_relay_config(hatoba_home):
    _merge_config(hatoba_home.config_path, '[smtp]\ntrusted_networks = ["0.0.0.0/0"]\n')
    r = hatoba_home.cli("serve")
    assert r.returncode == 1
    assert "open relay" in r.stderr and "0.0.0.0/0" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_serve_refuses_a_relayhost_password_file_others_can_read(hatoba_home):
    secret = hatoba_home.root / "relay-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    _merge_config(hatoba_home.config_path, (
        '[delivery]\nrelayhost = "[smtp.provider.example]:587"\nrelayhost_username = "me"\n'
        f'relayhost_password_file = "{secret}"\n'
    ))
    hatoba_home.keep_root()
    r = hatoba_home.cli("serve")
    assert r.returncode == 1
    assert "relay-password" in r.stderr and "chmod 600" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_message_delivered_while_hold_looks_is_one_line_not_a_traceback(hatoba_home, monkeypatch, capsys):
    """`hold` finds the message, then delivery removes it before the state is written."""
    from hatoba.cli.main import main
    from hatoba.queue.spool import Spool, SpoolError

    def gone(self, qid, held):
        raise SpoolError(f"no message {qid} in the queue (already delivered or deleted?)")

    monkeypatch.setattr(Spool, "exists", lambda self, qid: True)
    monkeypatch.setattr(Spool, "set_held", gone)
    qid = "0" * 19
    assert main(["-c", str(hatoba_home.config_path), "queue", "hold", qid]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hatoba: no message") and err.count("\n") == 1
