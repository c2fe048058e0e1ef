"""Commands whose cost a client or a sender chooses: LIST patterns, SORT and THREAD
of hostile headers, BODYSTRUCTURE of a message of many parts. Each answers
within a bound while other clients keep being served, and logins never wait
behind mailbox work.
"""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time

from support.harness import ServerProcess, free_port_offset, make_home
from support.probe import LatencyProbe, rss_kib, wait_listening

BOB = ("bob@example.test", "bob-password-1")


class Imap:
    """One IMAPS connection, logged in as bob; cmd() gives (tagged status, untagged lines)."""

    def __init__(self, port: int, home, *, login: bool = True, timeout: float = 30) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = home.client_context().wrap_socket(sock, server_hostname="mail.example.test")
        self.file = self.sock.makefile("rb")
        self.count = 0
        assert self.file.readline().startswith(b"* OK")
        if login:
            self.ok(f"LOGIN {BOB[0]} {BOB[1]}")

    def line(self) -> bytes:
        line = self.file.readline()
        assert line.endswith(b"\r\n"), line
        while literal := re.search(rb"\{(\d+)\}\r\n$", line):
            line += self.file.read(int(literal.group(1)))
            line += self.file.readline()
        return line[:-2]

    def cmd(self, command: bytes | str) -> tuple[str, list[bytes]]:
        self.count += 1
        tag = b"c%d" % self.count
        self.sock.sendall(tag + b" " + (command.encode() if isinstance(command, str) else command) + b"\r\n")
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line[len(tag) + 1 :].decode("utf-8", "replace"), lines
            lines.append(line)

    def ok(self, command: bytes | str) -> list[bytes]:
        status, lines = self.cmd(command)
        assert status.startswith("OK"), (status, lines[:3])
        return lines

    def append(self, data: bytes, mailbox: str = "INBOX") -> None:
        self.ok(b"APPEND %s {%d+}\r\n" % (mailbox.encode(), len(data)) + data)

    def close(self) -> None:
        for thing in (self.file, self.sock):
            try:
                thing.close()
            except OSError:
                pass


def message(number: int, subject: str, extra: str = "") -> bytes:
    return (f"From: ann@elsewhere.example\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Date: Mon, 02 Mar 2026 10:{number % 60:02d}:00 +0000\r\n"
            f"Message-ID: <m{number}@x>\r\n{extra}\r\nbody {number}\r\n").encode()


# -- LIST -------------------------------------------------------------------------------------------


def test_list_of_500_wildcards_answers_at_once_and_others_are_served(server, hatoba_home):
    c = Imap(server.port("imaps"), hatoba_home, timeout=10)
    c.ok("CREATE Club")
    c.ok("CREATE Work.b")
    c.ok("CREATE Work.ab")
    with LatencyProbe("127.0.0.1", server.port("imap"), "imap") as probe:
        start = time.monotonic()
        lines = c.ok('LIST "" "' + "%" * 500 + 'b"')  # a backtracking matcher never finishes this
        took = time.monotonic() - start
        # The same, with every spelling of the joining and of INBOX that must keep working.
        assert [line for line in c.ok('LIST "Work." "%%%*%b"') if b"Work.ab" in line]
        assert any(b"INBOX" in line for line in c.ok('LIST "" "inbox"'))
        time.sleep(0.3)
    c.close()
    assert took < 1.0, took
    assert lines == [b'* LIST (\\HasNoChildren) "." Club'], lines  # "%" stops at ".": not Work.b
    assert probe.worst < 1.0, probe.summary()


# -- SORT and THREAD --------------------------------------------------------------------------------

HOSTILE_SUBJECT = "[]" * 30_000  # 60 KB of subj-blobs: quadratic base-subject extraction took 21 s


def test_sort_of_a_60kb_subject_from_port_25(server, hatoba_home):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("x@elsewhere.example", [BOB[0]], message(1, HOSTILE_SUBJECT + " x"))
    hatoba_home.wait_messages(BOB[0], 1)
    c = Imap(server.port("imaps"), hatoba_home)
    c.append(message(2, "w"))
    c.ok("SELECT INBOX")
    with LatencyProbe("127.0.0.1", server.port("imap"), "imap") as probe:
        start = time.monotonic()
        lines = c.ok("SORT (SUBJECT) UTF-8 ALL")
        took = time.monotonic() - start
        threads = c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")
    c.close()
    assert lines == [b"* SORT 2 1"]  # "w" before "X" once the 30,000 blobs are gone
    assert threads == [b"* THREAD (1)(2)"]  # by date: message 1 is the older
    assert took < 2.0, took
    assert probe.worst < 1.0, probe.summary()


def test_search_and_sort_of_a_144kb_subject_of_encoded_words(tmp_path):
    # email.header's decoder was quadratic inside one regex call, holding the GIL:
    # every other session of the process waited 9 s for each SEARCH SUBJECT.
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset)
    with ServerProcess(home, offset) as proc:
        wait_listening("127.0.0.1", proc.port(143))  # ServerProcess waits for port 25 only
        wait_listening("127.0.0.1", proc.port(993))
        c = Imap(proc.port(993), home, timeout=60)
        c.append(message(1, "=?utf-8?q?Caf=C3=A9?= " + "=?utf-8?q?x " * 12_000))
        c.append(message(2, "w"))
        c.ok("SELECT INBOX")
        with LatencyProbe("127.0.0.1", proc.port(143), "imap") as probe:
            start = time.monotonic()
            found = c.ok("SEARCH SUBJECT café")
            took = time.monotonic() - start
            lines = c.ok("SORT (SUBJECT) UTF-8 ALL")
        c.close()
    assert took < 2.0, took
    assert probe.worst < 1.0, probe.summary()
    assert found == [b"* SEARCH 1"]
    assert lines == [b"* SORT 1 2"]  # "CAFé =?utf-8?q?x ..." ("=?utf-8?q?x" is no encoded word) before "W"


def test_thread_references_of_a_1200_deep_references_chain(server, hatoba_home):
    c = Imap(server.port("imaps"), hatoba_home)
    chain = " ".join(f"<gone{i}@x>" for i in range(1, 1200))
    c.append(message(0, "root"))
    c.append(message(1, "Re: root", f"References: <m0@x> {chain}\r\n"))
    c.append(message(2, "Re: root", f"References: <m0@x> {chain} <m1@x>\r\n"))
    c.append(message(3, "other"))
    c.ok("SELECT INBOX")
    # 1,200 ancestors of which 1,199 are missing: their empty containers go, the three stay one thread.
    assert c.ok("THREAD REFERENCES UTF-8 ALL") == [b"* THREAD (1 2 3)(4)"]
    c.close()


def test_a_login_is_not_kept_waiting_by_sorts_in_other_sessions(server, hatoba_home):
    setup = Imap(server.port("imaps"), hatoba_home)
    for n in range(80):  # a mailbox whose every SORT and THREAD is real work
        setup.append(message(n, f"{HOSTILE_SUBJECT} {n}", f"References: <m{n - 1}@x>\r\n" if n else ""))
    setup.close()
    stop = threading.Event()
    done: list[int] = []

    def sorter(verb: str) -> None:
        c = Imap(server.port("imaps"), hatoba_home, timeout=120)
        c.ok("SELECT INBOX")
        while not stop.is_set():
            c.ok(verb)
            done.append(1)
        c.close()

    verbs = ["SORT (SUBJECT) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "SORT (REVERSE SUBJECT) UTF-8 ALL"] * 2
    workers = [threading.Thread(target=sorter, args=(v,), daemon=True) for v in verbs]
    for w in workers:
        w.start()
    time.sleep(1.0)  # every sorter has its command running or queued
    logins = []
    try:
        for _ in range(3):
            start = time.monotonic()
            Imap(server.port("imaps"), hatoba_home, timeout=10).close()  # connects and logs in
            logins.append(time.monotonic() - start)
    finally:
        stop.set()
        deadline = time.monotonic() + 30  # each sorter ends after its command in progress
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
    assert done, "the sorts did not run"
    assert max(logins) < 3.0, logins


# -- MIME -------------------------------------------------------------------------------------------


def mime_bomb(size: int) -> bytes:
    """A message of `size` bytes that is nothing but tiny parts (12 bytes each)."""
    head = (b"From: ann@elsewhere.example\r\nTo: bob@example.test\r\nSubject: parts\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
    part = b"--b\r\n\r\nx\r\n"
    return head + part * ((size - len(head)) // len(part)) + b"--b--\r\n"


def test_bodystructure_of_a_4mb_message_of_tiny_parts(tmp_path):
    bomb = mime_bomb(4 << 20)  # 349,000 parts
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset)
    with ServerProcess(home, offset) as proc:
        c = Imap(proc.port(993), home, timeout=60)
        c.append(bomb)
        c.ok("SELECT INBOX")
        c.ok("FETCH 1 RFC822.SIZE")
        before = rss_kib(proc.proc.pid)
        with LatencyProbe("127.0.0.1", proc.port(143), "imap") as probe:
            start = time.monotonic()
            lines = c.ok("FETCH 1 BODYSTRUCTURE")
            took = time.monotonic() - start
            section = c.ok("FETCH 1 BODY.PEEK[9999.MIME]")
        grown = rss_kib(proc.proc.pid) - before
        c.close()
    answer = b"\n".join(lines)
    assert took < 8.0, took
    assert grown < 100 * 1024, f"server grew by {grown} KiB"
    assert probe.worst < 1.0, probe.summary()
    # Well formed, 10,000 parts in all: the multipart, 9,998 parts as sent, the rest as one opaque part.
    assert answer.startswith(b"* 1 FETCH (BODYSTRUCTURE (") and answer.endswith(b"))")
    assert answer.count(b"(") == answer.count(b")")
    assert answer.count(b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 1 ') == 9_998
    assert answer.count(b'("application" "octet-stream" NIL NIL NIL "7bit" ') == 1
    assert b' "mixed" ("boundary" "b") NIL NIL NIL))' in answer
    assert section == [b"* 1 FETCH (BODY[9999.MIME] {2}\r\n\r\n)"]

