"""Several worker processes (`[server] workers = 2`) serve as one server.

A real `hatoba serve` with two workers; real clients over TLS. Which worker
serves a connection is read from /proc (support/workers.py), so each test
puts its sessions on both workers and checks that what one worker's session
does reaches or binds the other: IDLE news, the login throttle, the POP3
maildrop lock, the per-address connection limit, /metrics, a killed worker's
restart and a certificate reload.
"""

from __future__ import annotations

import contextlib
import email
import hashlib
import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import ssl
import threading
import time

from hatoba.pki.ca import cert_to_pem, issue_server_cert, load_certs
from hatoba.pki.keys import key_to_pem, load_private_key
from hatoba.proto.pop3 import replies as P
from hatoba.proto.smtp import replies as R
from support.harness import ServerProcess, free_port_offset, make_home, wait_for
from support.scrape import get, scrape, value, wait_healthy
from support.workers import one_on_each, reset, serving_pid, wait_workers

ALICE = ("alice@example.test", "alice-password-1")
BOB = ("bob@example.test", "bob-password-1")
WORKERS = "[server]\nworkers = 2\n"
HTTP = "[listeners.http]\nenabled = true\n"
NEWS_TIMEOUT = 5.0  # seconds for a change to reach an IDLE session on the other worker


@contextlib.contextmanager
def serving(tmp_path, extra: str = ""):
    """`hatoba serve` with two workers, both listening: (server, home, {index: pid})."""
    offset = free_port_offset()
    home = make_home(tmp_path / "hatoba", port_offset=offset, extra_config=WORKERS + extra)
    with ServerProcess(home, offset) as server:
        log = server.log_path
        wait_for(lambda: any(words in log.read_text() for words in ("hatoba is running", "exited with status")), 20)
        if "hatoba is running" not in log.read_text():
            server.kill9()  # a worker that cannot start: no need to wait for its last tries
            text = log.read_text()
            raise AssertionError("the workers did not start:\n" + text[text.find("Traceback"):][:3000])
        yield server, home, wait_workers(server.proc.pid, 2)


def drop(client) -> None:
    """Close a client's connection without a word: a test that failed midway
    must not leave the server's stop waiting for the session."""
    with contextlib.suppress(OSError):
        if isinstance(client, imaplib.IMAP4):
            client.shutdown()
        else:
            client.close()


def imaps(server, home) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL("127.0.0.1", server.port(993), ssl_context=home.client_context(), timeout=10)


def pop3s(server, home) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", server.port(995), context=home.client_context(), timeout=10)


def tls_socket(server, home) -> ssl.SSLSocket:
    """A TLS connection to IMAPS, handshake done, nothing said."""
    sock = socket.create_connection(("127.0.0.1", server.port(993)), timeout=10)
    return home.client_context().wrap_socket(sock, server_hostname="mail.example.test")


def deliver(server, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port(25), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", [to], f"Subject: {subject}\r\n\r\nbody\r\n")


def idle(m: imaplib.IMAP4) -> str:
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    return tag


def wait_untagged(m: imaplib.IMAP4, pattern: bytes, where: str = "", timeout: float = NEWS_TIMEOUT) -> bytes:
    """The first line matching `pattern` the server sends within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            m.sock.settimeout(left)
            line = m.readline()
        except TimeoutError:
            raise AssertionError(f"{where}: no {pattern!r} within {timeout} s; got {seen}") from None
        seen.append(line)
        if re.match(pattern, line):
            return line


# -- 1. mailbox news reach IDLE on the other worker ------------------------------------------


def test_idle_on_each_worker_hears_of_changes_made_on_the_other(tmp_path):
    with serving(tmp_path) as (server, home, pids), contextlib.ExitStack() as opened:
        for idler_index in (0, 1):
            sessions = one_on_each(lambda: imaps(server, home), lambda m: m.logout(), pids.values())
            for m in sessions.values():
                opened.callback(drop, m)
            idler, changer = sessions[pids[idler_index]], sessions[pids[1 - idler_index]]
            for m in (idler, changer):
                m.login(*ALICE)
                assert m.select("INBOX")[0] == "OK"
            count = int(idler.select("INBOX")[1][0])
            tag = idle(idler)
            where = f"IDLE on worker {idler_index}"

            deliver(server, ALICE[0], f"delivered while {where}")
            count += 1
            wait_untagged(idler, rb"\* %d EXISTS\r\n" % count, where)

            typ, _ = changer.append("INBOX", None, None, f"Subject: appended while {where}\r\n\r\nhi\r\n".encode())
            assert typ == "OK"
            count += 1
            wait_untagged(idler, rb"\* %d EXISTS\r\n" % count, where)

            changer.noop()  # the changer sees the new messages before it flags one
            assert changer.store(str(count), "+FLAGS", "(\\Flagged)")[0] == "OK"
            wait_untagged(idler, rb"\* %d FETCH \(.*FLAGS \([^)]*\\Flagged" % count, where)

            assert changer.store(str(count), "+FLAGS", "(\\Deleted)")[0] == "OK"
            assert changer.expunge()[0] == "OK"
            wait_untagged(idler, rb"\* %d EXPUNGE\r\n" % count, where)

            idler.send(b"DONE\r\n")
            wait_untagged(idler, re.escape(tag.encode()) + rb" OK", where)
            for m in (idler, changer):
                m.logout()


# -- 2. the login throttle counts failures made on any worker --------------------------------


def test_failed_logins_on_one_worker_throttle_the_account_on_the_other(tmp_path):
    with (serving(tmp_path, "[auth]\npair_failures = 2\nmax_delay = 0.5\n") as (server, home, pids),
          contextlib.ExitStack() as opened):
        sessions = one_on_each(lambda: imaps(server, home), lambda m: m.logout(), pids.values())
        for m in sessions.values():
            opened.callback(drop, m)
        a, b = sessions[pids[0]], sessions[pids[1]]
        # The pair's burst of 2, plus the one that drained away meanwhile (as
        # the clock runs, the level is a hair under 2 when the third begins).
        answers = []
        for _ in range(3):
            try:
                a.login(ALICE[0], "not-the-password")
                raise AssertionError("a wrong password was accepted")
            except imaplib.IMAP4.error as exc:
                answers.append(str(exc))
        assert all("[AUTHENTICATIONFAILED]" in text for text in answers[:2]), answers
        assert "[AUTHENTICATIONFAILED]" in answers[2] or "[UNAVAILABLE]" in answers[2], answers
        try:
            b.login(*ALICE)
            raise AssertionError("the right password was let through after the pair's failures on worker 0")
        except imaplib.IMAP4.error as exc:
            assert "[UNAVAILABLE]" in str(exc), exc
        # The throttle refused alice from this address, not the address itself.
        assert b.login(*BOB)[0] == "OK"
        assert a.login(*BOB)[0] == "OK"
        for m in (a, b):
            m.logout()


# -- 3. one POP3 session per maildrop, whatever the worker -----------------------------------


def test_pop3_maildrop_is_locked_across_workers(tmp_path):
    with serving(tmp_path) as (server, home, pids), contextlib.ExitStack() as opened:
        deliver(server, ALICE[0], "to pick up")
        assert home.wait_messages(ALICE[0], 1)
        sessions = one_on_each(lambda: pop3s(server, home), lambda p: p.quit(), pids.values())
        for p in sessions.values():
            opened.callback(drop, p)
        a, b = sessions[pids[0]], sessions[pids[1]]
        a.user(ALICE[0])
        assert a.pass_(ALICE[1]).startswith(b"+OK")
        b.user(ALICE[0])
        try:
            answer = b.pass_(ALICE[1])
        except poplib.error_proto as exc:
            assert exc.args[0].startswith(b"-ERR [%s]" % P.CODE_IN_USE.encode()), exc
        else:
            raise AssertionError(f"a second session on the other worker got the locked maildrop: {answer!r}")
        a.quit()
        b.user(ALICE[0])
        assert b.pass_(ALICE[1]).startswith(b"+OK")
        assert b.stat()[0] == 1
        b.quit()


# -- 4. the per-address connection limit counts every worker's connections -------------------


def smtp_greeting(sock: socket.socket) -> bytes:
    """The server's first reply (its last line)."""
    data = b""
    while not re.search(rb"(^|\n)\d{3} [^\n]*\r\n$", data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.splitlines()[-1] if data else b""


def greeting(port: int) -> bytes:
    """The SMTP greeting of a new connection, then reset (no TIME_WAIT left)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return smtp_greeting(sock)
    finally:
        reset(sock)


def hold_balanced(port: int, pids: dict[int, int], count: int, opened: contextlib.ExitStack) -> dict[int, int]:
    """`count` SMTP sessions held open one after another; the workers take them by
    turns (net/acceptor.py), so each holds count / 2. Worker pid -> sessions."""
    held = {pid: 0 for pid in pids.values()}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        opened.callback(reset, sock)
        assert smtp_greeting(sock).startswith(b"220 ")
        held[serving_pid(sock, pids.values())] += 1
    assert sorted(held.values()) == [count // 2, count - count // 2], f"sessions not spread by load: {held}"
    return held


def test_connection_limit_per_address_holds_across_workers(tmp_path):
    with (serving(tmp_path, "[limits]\nmax_connections_per_ip = 4\n") as (server, home, pids),
          contextlib.ExitStack() as opened):
        port = server.port(25)
        refusal = R.R421_TOO_MANY_FROM_IP
        refused = f"{refusal.code} {refusal.status} Too many connections from your address".encode()
        hold_balanced(port, pids, 4, opened)  # two on each worker
        # Each worker holds two of the address's four: whichever takes the fifth
        # refuses it only by counting the other worker's two as well.
        for attempt in range(4):
            answer = greeting(port)
            assert answer.startswith(refused), f"a 5th connection (try {attempt + 1}) got {answer!r}"
        opened.close()
        # The first four are counted out on every worker too.
        assert wait_for(lambda: greeting(port).startswith(b"220 "), 5)


# -- 5. /metrics counts both workers' sessions ---------------------------------------------


def test_metrics_sum_every_worker(tmp_path):
    with serving(tmp_path, HTTP) as (server, home, pids):
        http = server.port(80)
        wait_healthy(http)
        before = scrape(http)
        served: list[int] = []
        for _ in range(40):
            with smtplib.SMTP("127.0.0.1", server.port(25), timeout=10) as c:
                served.append(serving_pid(c.sock, pids.values()))
            if len(served) >= 6 and set(served) == set(pids.values()):
                break
        assert set(served) == set(pids.values()), f"connections only ever reached {set(served)}"
        after = scrape(http)
        moved = value(after, "hatoba_connections_total", listener="smtp") - \
            value(before, "hatoba_connections_total", listener="smtp")
        assert moved == len(served), f"{len(served)} connections, counted {moved}"
        assert wait_for(lambda: value(scrape(http), "hatoba_connections_open", listener="smtp") == 0, 5)
        for index in ("0", "1"):
            assert value(after, "hatoba_worker_resident_memory_bytes", worker=index) > 0, index
            assert value(after, "hatoba_delivery_resident_memory_bytes", part=index) > 0, index


# -- 6. a killed worker is started again and nothing is lost -------------------------------

SENDERS = 4


def test_a_killed_worker_comes_back_and_mail_keeps_flowing(tmp_path):
    with serving(tmp_path, HTTP) as (server, home, pids):
        http = server.port(80)
        wait_healthy(http)
        acked: list[tuple[str, float]] = []  # Message-ID, when its connection began
        errors: list[str] = []
        stop = threading.Event()

        def send(sender: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                mid = f"<s{sender}-{n}@workers.test>"
                began = time.monotonic()
                try:
                    with smtplib.SMTP("127.0.0.1", server.port(25), timeout=10) as c:
                        c.sendmail("someone@elsewhere.example", [BOB[0]],
                                   f"Message-ID: {mid}\r\nSubject: {n}\r\n\r\nbody\r\n")
                    acked.append((mid, began))
                except (smtplib.SMTPException, OSError) as exc:
                    errors.append(f"{mid}: {exc!r}")
                time.sleep(0.02)

        senders = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
        os.kill(pids[1], signal.SIGKILL)
        for t in senders:
            t.start()
        try:
            assert wait_for(lambda: get(http, "/healthz")[0] != 200, 1), "/healthz did not notice the dead worker"
            again = wait_workers(server.proc.pid, 2, not_pids=[pids[1]], timeout=10)
            wait_healthy(http, 10)
            back = time.monotonic()
            # The new worker serves connections itself, and mail goes on after.
            sessions = one_on_each(lambda: smtplib.SMTP("127.0.0.1", server.port(25), timeout=10),
                                   lambda c: c.quit(), again.values())
            for c in sessions.values():
                c.quit()
            assert wait_for(lambda: sum(began > back for _, began in acked) >= 10, 10)
        finally:
            stop.set()
            for t in senders:
                t.join(20)
        assert errors == [], errors[:5]
        # Each sender's first connection began while the worker was dead (some
        # waited in its socket's backlog for the new one): all were served.
        assert sum(began < back for _, began in acked) >= SENDERS
        got = [email.message_from_bytes(m)["Message-ID"] for m in home.wait_messages(BOB[0], len(acked))]
        assert sorted(got) == sorted(mid for mid, _ in acked)


def test_a_killed_workers_connections_are_counted_out_and_its_counters_kept(tmp_path):
    limits = "[limits]\nmax_connections_per_ip = 4\n"
    with (serving(tmp_path, HTTP + limits) as (server, home, pids), contextlib.ExitStack() as opened):
        http, port = server.port(80), server.port(25)
        wait_healthy(http)
        refused = f"{R.R421_TOO_MANY_FROM_IP.code} ".encode()

        def total() -> float:  # scraped from another address: 127.0.0.1 is at its limit
            return value(scrape(http, source="127.0.0.2"), "hatoba_connections_total", listener="smtp")

        hold_balanced(port, pids, 4, opened)  # the address's four, two on worker 1
        assert greeting(port).startswith(refused)
        counted = total()
        os.kill(pids[1], signal.SIGKILL)
        assert total() >= counted, "a scrape while the worker was dead counted less"
        again = wait_workers(server.proc.pid, 2, not_pids=[pids[1]], timeout=10)
        wait_healthy(http, 10)
        assert total() >= counted, "a scrape after the restart counted less"
        # What the dead worker counted in the shared connection counts went with it:
        # two of the four are left, so the address may open more.
        assert greeting(port).startswith(b"220 ")
        # The new worker is asked at the next scrape, and its connections are counted.
        opened.close()  # the survivor's two: the new worker takes the next ones until it holds as many
        before = total()
        made = 0

        def connect() -> smtplib.SMTP:
            nonlocal made
            made += 1
            return smtplib.SMTP("127.0.0.1", port, timeout=10)

        for c in one_on_each(connect, lambda c: c.quit(), again.values()).values():
            c.quit()
        assert wait_for(lambda: total() == before + made, 5), \
            f"{made} connections, counted {total() - before}: the new worker's are missing"


def ended(pid: int) -> bool:
    """The process is gone (or a zombie nobody reaps: its parent died too)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_sigterm_stops_every_worker_and_a_killed_serve_takes_them_with_it(tmp_path):
    with serving(tmp_path / "stopped") as (server, home, pids):
        assert not ended(pids[1])
        assert server.stop() == 0, server.log_path.read_text()[-2000:]
        assert wait_for(lambda: ended(pids[1]), 5), "a worker outlived serve's stop"
    with serving(tmp_path / "killed") as (server, home, pids):
        server.kill9()
        # The worker sees the end of its stdin and stops: it must not keep the ports.
        assert wait_for(lambda: ended(pids[1]), 10), "a worker outlived a killed serve"


# -- 7. SIGHUP reloads the certificate in every worker --------------------------------------


def fingerprint(sock: ssl.SSLSocket) -> str:
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def test_sighup_reloads_the_certificate_in_every_worker(tmp_path):
    with serving(tmp_path) as (server, home, pids):
        first = one_on_each(lambda: tls_socket(server, home), lambda s: s.close(), pids.values())
        old = {fingerprint(s) for s in first.values()}
        for s in first.values():
            s.close()
        assert len(old) == 1

        tls = home.root / "tls"
        ca_key = load_private_key(tls / "ca.key")
        (ca_cert,) = load_certs(tls / "ca.crt")
        key, cert = issue_server_cert(ca_key, ca_cert, "mail.example.test")
        for name, data, mode in (("server.key", key_to_pem(key), 0o600),
                                 ("server.crt", cert_to_pem(cert) + cert_to_pem(ca_cert), 0o644)):
            tmp = tls / (name + ".new")
            tmp.write_bytes(data)
            tmp.chmod(mode)
            os.replace(tmp, tls / name)
        server.proc.send_signal(signal.SIGHUP)

        shown: dict[int, str] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with tls_socket(server, home) as s:
                shown[serving_pid(s, pids.values())] = fingerprint(s)
            if len(shown) == len(pids) and old.isdisjoint(shown.values()):
                break
        assert len(shown) == len(pids) and old.isdisjoint(shown.values()), \
            f"certificate per worker pid after SIGHUP: {shown} (old {old})"
        assert len(set(shown.values())) == 1
