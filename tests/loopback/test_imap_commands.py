"""Every IMAP command and extension hatoba offers, checked response by response.

Each test speaks raw IMAP over a TLS socket (`Imap` below) so the exact
untagged and tagged lines can be compared with what RFC 9051 / RFC 3501 and
the extension RFCs require. Messages are put in place with APPEND, SMTP, or
by writing a file into the Maildir as an outside tool would.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import smtplib
import socket
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path

import pytest

from support.disk import nowait_dir
from support.harness import ServerThread, make_home, wait_for

BOB = ("bob@example.test", "bob-password-1")

PLAIN = (
    b"From: Ann <ann@elsewhere.example>\r\nTo: bob@example.test\r\nSubject: hello\r\n"
    b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@elsewhere.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello world\r\n"
)
MIXED = (
    b"From: Ann <ann@elsewhere.example>\r\nTo: bob@example.test\r\nSubject: with file\r\n"
    b"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m2@elsewhere.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attached\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"\x00\x01binary\xff") + b"\r\n--b1--\r\n"
)
INTERNALDATE = re.compile(rb'INTERNALDATE "([ \d]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4})"')


def message(subject: str, *, sender: str = "ann@elsewhere.example", date: str = "Mon, 02 Mar 2026 10:00:00 +0000",
            body: str = "text", extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: bob@example.test\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{abs(hash((subject, date, body)))}@x>\r\n{extra}\r\n{body}\r\n").encode()


class Imap:
    """One raw IMAP connection: send a tagged command, get (tagged text, untagged lines)."""

    def __init__(self, server, home, *, port: str = "imaps", login: bool = True) -> None:
        self.home = home
        sock = socket.create_connection(("127.0.0.1", server.port(port)), timeout=10)
        if port == "imaps":
            sock = home.client_context().wrap_socket(sock, server_hostname="mail.example.test")
        self.sock = sock
        self.file = sock.makefile("rb")
        self.count = 0
        self.greeting = self.line()
        if login:
            status, _ = self.cmd(f"LOGIN {BOB[0]} {BOB[1]}")
            assert status.startswith("OK"), status

    def starttls(self) -> None:
        status, _ = self.cmd("STARTTLS")
        assert status.startswith("OK"), status
        self.sock = self.home.client_context().wrap_socket(self.sock, server_hostname="mail.example.test")
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One response line without CRLF; literals ({n} or ~{n}) are read inline."""
        line = self.file.readline()
        assert line.endswith(b"\r\n"), line
        line = line[:-2]
        while literal := re.search(rb"~?\{(\d+)\}$", line):
            line += b"\r\n" + self.file.read(int(literal.group(1)))
            rest = self.file.readline()
            assert rest.endswith(b"\r\n"), rest
            line += rest[:-2]
        return line

    def tag(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def collect(self, tag: str) -> tuple[str, list[bytes]]:
        lines: list[bytes] = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return line[len(tag) + 1 :].decode("utf-8", "replace"), lines
            lines.append(line)

    def cmd(self, command: str | bytes) -> tuple[str, list[bytes]]:
        tag = self.tag()
        data = command.encode() if isinstance(command, str) else command
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.collect(tag)

    def ok(self, command: str | bytes) -> list[bytes]:
        status, lines = self.cmd(command)
        assert status.startswith("OK"), (command, status, lines)
        return lines

    def append(self, mailbox: str, data: bytes, extra: str = "") -> tuple[str, list[bytes]]:
        """APPEND with a synchronizing literal, as RFC 3501 clients do."""
        tag = self.tag()
        self.send(f"{tag} APPEND {mailbox}{' ' + extra if extra else ''} {{{len(data)}}}\r\n".encode())
        first = self.line()
        if not first.startswith(b"+"):
            return first[len(tag) + 1 :].decode(), []
        self.send(data + b"\r\n")
        return self.collect(tag)

    def close(self) -> None:
        # The makefile() reader holds the socket open too: close both, or the server never sees EOF.
        for thing in (self.file, self.sock):
            try:
                thing.close()
            except OSError:
                pass


def join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def uid_of(status: str) -> tuple[int, int]:
    m = re.search(r"\[APPENDUID (\d+) (\d+)\]", status)
    assert m, status
    return int(m.group(1)), int(m.group(2))


def status_values(line: bytes) -> dict[str, int]:
    inner = re.search(rb"\(([^)]*)\)\s*$", line).group(1).split()
    return {inner[i].decode(): int(inner[i + 1]) for i in range(0, len(inner), 2)}


def flags_in(line: bytes) -> set[bytes]:
    """The flags of a FETCH line, without \\Recent (session-specific, tested on its own)."""
    return set(re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split()) - {b"\\Recent"}


def uid_set(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        out += list(range(int(a), int(b or a) + 1)) if int(b or a) >= int(a) else list(range(int(b), int(a) + 1))
    return out


@pytest.fixture
def conn(server, hatoba_home):
    connections: list[Imap] = []

    def open_(**kw) -> Imap:
        c = Imap(server, hatoba_home, **kw)
        connections.append(c)
        return c

    yield open_
    for c in connections:
        c.close()


def filled(conn, messages: list[bytes], mailbox: str = "INBOX") -> tuple[Imap, list[int]]:
    """A session with `messages` appended to `mailbox` and that mailbox selected; their uids."""
    c = conn()
    uids = []
    for data in messages:
        status, _ = c.append(mailbox, data)
        assert status.startswith("OK"), status
        uids.append(uid_of(status)[1])
    c.ok(f"SELECT {mailbox}")
    return c, uids


# -- any state: CAPABILITY, NOOP, LOGOUT, ID --------------------------------------------------------


def test_capability_before_and_after_login_on_993(conn):
    c = conn(login=False)
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    status, lines = c.cmd("CAPABILITY")
    assert status.startswith("OK") and len(lines) == 1 and lines[0].startswith(b"* CAPABILITY ")
    before = lines[0].split()[2:]
    assert b"IMAP4rev1" in before and b"AUTH=PLAIN" in before
    assert b"LOGINDISABLED" not in before and b"STARTTLS" not in before
    status, _ = c.cmd(f"LOGIN {BOB[0]} {BOB[1]}")
    assert status.startswith("OK [CAPABILITY IMAP4rev1 ")
    status, lines = c.cmd("CAPABILITY")
    after = lines[0].split()[2:]
    assert not any(cap.startswith(b"AUTH=") for cap in after)
    for cap in (b"IMAP4rev2", b"IDLE", b"UIDPLUS", b"MOVE", b"ENABLE", b"CONDSTORE", b"QRESYNC",
                b"SPECIAL-USE", b"SEARCHRES", b"SORT", b"THREAD=ORDEREDSUBJECT", b"QUOTA", b"BINARY",
                b"LITERAL+", b"UNSELECT", b"NAMESPACE", b"STATUS=SIZE", b"LIST-EXTENDED", b"LIST-STATUS"):
        assert cap in after, cap
    assert any(cap.startswith(b"APPENDLIMIT=") for cap in after)


def test_capability_on_143_has_logindisabled_until_starttls(conn):
    c = conn(port="imap", login=False)
    caps = c.ok("CAPABILITY")[0].split()
    assert b"LOGINDISABLED" in caps and b"STARTTLS" in caps
    assert not any(cap.startswith(b"AUTH=") for cap in caps)
    status, _ = c.cmd(f"LOGIN {BOB[0]} {BOB[1]}")
    assert status.startswith("NO [PRIVACYREQUIRED]"), status
    c.starttls()
    caps = c.ok("CAPABILITY")[0].split()
    assert b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps and b"AUTH=PLAIN" in caps
    status, _ = c.cmd("STARTTLS")  # TLS is on: a second STARTTLS is an error
    assert status.startswith("BAD"), status
    c.ok(f"LOGIN {BOB[0]} {BOB[1]}")


def test_compress_is_advertised_since_it_is_accepted(conn):
    c = conn()
    caps = c.ok("CAPABILITY")[0].split()
    assert b"COMPRESS=DEFLATE" in caps


def test_noop_in_every_state(conn):
    c = conn(login=False)
    assert c.cmd("NOOP") == ("OK NOOP completed", [])
    c.ok(f"LOGIN {BOB[0]} {BOB[1]}")
    assert c.ok("NOOP") == []
    c.ok("SELECT INBOX")
    assert c.ok("NOOP") == []


def test_logout_sends_bye_then_ok_then_closes(conn):
    c = conn()
    status, lines = c.cmd("LOGOUT")
    assert status.startswith("OK")
    assert len(lines) == 1 and lines[0].startswith(b"* BYE ")
    assert c.file.read() == b""  # the server closed the connection


def test_id_answers_with_its_own_id(conn):
    c = conn(login=False)
    lines = c.ok('ID ("name" "pytest" "version" "1")')
    assert len(lines) == 1 and lines[0].startswith(b'* ID ("name" "hatoba"')
    lines = c.ok("ID NIL")
    assert lines[0].startswith(b"* ID (")


# -- ENABLE ------------------------------------------------------------------------------------------


def test_enable_lists_only_what_it_newly_enabled(conn):
    c = conn(login=False)
    status, _ = c.cmd("ENABLE CONDSTORE")
    assert status.startswith("BAD"), status  # not before login
    c.ok(f"LOGIN {BOB[0]} {BOB[1]}")
    assert c.ok("ENABLE CONDSTORE") == [b"* ENABLED CONDSTORE"]
    assert c.ok("ENABLE CONDSTORE") == [b"* ENABLED"]  # RFC 5161 §3.1: only new ones
    assert c.ok("ENABLE X-UNKNOWN-THING") == [b"* ENABLED"]
    assert c.ok("ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]
    lines = c.ok("ENABLE UTF8=ACCEPT IMAP4rev2")
    assert len(lines) == 1 and set(lines[0].split()[2:]) == {b"UTF8=ACCEPT", b"IMAP4rev2"}


def test_enable_changes_what_select_says(conn):
    c = conn()
    plain = join(c.ok("SELECT INBOX"))
    assert b"HIGHESTMODSEQ" not in plain and re.search(rb"\* \d+ RECENT", plain)
    c.ok("ENABLE CONDSTORE IMAP4rev2")
    lines = c.ok("SELECT INBOX")
    text = join(lines)
    assert re.search(rb"\* OK \[HIGHESTMODSEQ \d+\]", text), text
    assert b"RECENT" not in text  # RFC 9051 has no \Recent
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed"
    assert b'* LIST () "." INBOX' in lines


def test_enable_utf8_accept_changes_mailbox_names_on_the_wire(conn):
    c = conn()
    c.ok('CREATE "&ZeVnLIqe-"')  # modified UTF-7 for 日本語
    assert any(line.endswith(b'"." "&ZeVnLIqe-"') or line.endswith(b'"." &ZeVnLIqe-')
               for line in c.ok('LIST "" "*"'))
    c.ok("ENABLE UTF8=ACCEPT")
    listing = join(c.ok('LIST "" "*"'))
    assert "日本語".encode() in listing and b"&ZeVnLIqe-" not in listing


# -- SELECT and EXAMINE ---------------------------------------------------------------------------


def test_select_sends_every_required_response(conn):
    c = conn()
    last = 0
    for i in range(2):
        status, _ = c.append("INBOX", message(f"s{i}"))
        validity, last = uid_of(status)
    status, lines = c.cmd("SELECT INBOX")
    assert status == "OK [READ-WRITE] SELECT completed"
    assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
    assert lines[1].startswith(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]")
    assert b"* 2 EXISTS" in lines
    assert b"* OK [UIDVALIDITY %d] UIDs valid" % validity in lines
    assert any(line.startswith(b"* OK [UIDNEXT %d]" % (last + 1)) for line in lines), lines


def test_select_of_missing_or_noselect_mailbox_fails_and_leaves_nothing_selected(conn):
    c = conn()
    c.ok("SELECT INBOX")
    status, _ = c.cmd("SELECT Nowhere")
    assert status.startswith("NO [NONEXISTENT]"), status
    status, _ = c.cmd("FETCH 1 (FLAGS)")
    assert status.startswith("BAD"), status  # RFC 9051 §6.3.2: a failed SELECT leaves the state authenticated
    c.ok("CREATE Top.Child")
    c.ok("DELETE Top")  # Top becomes \Noselect
    status, _ = c.cmd("SELECT Top")
    assert status.startswith("NO"), status


def test_select_flags_lists_keywords_in_use(conn):
    c, _ = filled(conn, [message("kw")])
    c.ok("STORE 1 +FLAGS (project)")
    lines = c.ok("SELECT INBOX")  # re-selecting: "* OK [CLOSED]" comes first (RFC 7162 §3.2.11)
    [flags] = [line for line in lines if line.startswith(b"* FLAGS ")]
    assert b"project" in flags, lines


def test_examine_is_read_only(conn):
    c, _ = filled(conn, [message("ro")])
    status, lines = c.cmd("EXAMINE INBOX")
    assert status == "OK [READ-ONLY] EXAMINE completed"
    assert b"* OK [PERMANENTFLAGS ()] Flags you can change" in lines
    assert b"* 1 EXISTS" in lines
    status, _ = c.cmd("STORE 1 +FLAGS (\\Flagged)")
    assert status.startswith("NO"), status
    status, _ = c.cmd("EXPUNGE")
    assert status.startswith("NO"), status
    status, _ = c.cmd("MOVE 1 Trash")
    assert status.startswith("NO"), status
    lines = c.ok("FETCH 1 (BODY[])")
    assert b"\\Seen" not in join(lines)  # EXAMINE never sets \Seen
    assert flags_in(c.ok("FETCH 1 (FLAGS)")[0]) == set()


# -- CREATE, DELETE, RENAME ---------------------------------------------------------------------------


def listing(c: Imap, pattern: str = "*", reference: str = "") -> dict[str, set[bytes]]:
    """Mailbox name -> attributes, from LIST."""
    out = {}
    for line in c.ok(f'LIST "{reference}" "{pattern}"'):
        m = re.fullmatch(rb'\* LIST \(([^)]*)\) "\." (.+)', line)
        assert m, line
        out[m.group(2).strip(b'"').decode()] = set(m.group(1).split())
    return out


def test_create_nested_and_existing(conn):
    c = conn()
    assert c.cmd("CREATE A.B") == ("OK CREATE completed", [])
    boxes = listing(c)
    assert b"\\HasChildren" in boxes["A"] and b"\\HasNoChildren" in boxes["A.B"]
    status, _ = c.cmd("CREATE A.B")
    assert status.startswith("NO [ALREADYEXISTS]"), status
    status, _ = c.cmd("CREATE INBOX")
    assert status.startswith("NO"), status
    status, _ = c.cmd("CREATE inbox")
    assert status.startswith("NO"), status
    c.ok("CREATE Trailing.")  # RFC 3501 §6.3.3: the trailing delimiter is dropped
    assert "Trailing" in listing(c)
    c.ok('CREATE "My Folder"')
    assert "My Folder" in listing(c)
    c.ok('SELECT "My Folder"')


def test_delete(conn):
    c = conn()
    status, _ = c.cmd("DELETE INBOX")
    assert status.startswith("NO"), status
    status, _ = c.cmd("DELETE Nowhere")
    assert status.startswith("NO [NONEXISTENT]"), status
    c.ok("CREATE Gone")
    c.append("Gone", message("in gone"))
    assert c.cmd("DELETE Gone") == ("OK DELETE completed", [])
    assert "Gone" not in listing(c)
    status, _ = c.cmd("STATUS Gone (MESSAGES)")
    assert status.startswith("NO [NONEXISTENT]"), status
    # A folder with children: its messages go, the name stays as \Noselect (RFC 3501 §6.3.4).
    c.ok("CREATE P.C")
    c.ok("DELETE P")
    boxes = listing(c)
    assert b"\\Noselect" in boxes["P"] and "P.C" in boxes
    status, _ = c.cmd("DELETE P")
    assert status.startswith("NO"), status


def test_append_is_answered_ok_once_stored_though_the_selected_folder_was_made_again(conn):
    """A client told NO would send it again: the message would be stored twice."""
    c, other = conn(), conn()
    c.ok("CREATE Again")
    c.ok("SELECT Again")
    other.ok("DELETE Again")
    other.ok("CREATE Again")
    status, _ = c.append("Again", message("stored once"))
    assert status.startswith("OK [APPENDUID"), status
    assert other.ok("STATUS Again (MESSAGES)")[0].endswith(b"(MESSAGES 1)")


def test_rename(conn):
    c = conn()
    c.ok("CREATE Old")
    c.append("Old", message("old one"))
    assert c.cmd("RENAME Old New") == ("OK RENAME completed", [])
    boxes = listing(c)
    assert "Old" not in boxes and "New" in boxes
    assert status_values(c.ok("STATUS New (MESSAGES)")[0]) == {"MESSAGES": 1}
    status, _ = c.cmd("RENAME Nowhere Other")
    assert status.startswith("NO [NONEXISTENT]"), status
    status, _ = c.cmd("RENAME New Sent")
    assert status.startswith("NO [ALREADYEXISTS]"), status
    c.ok("CREATE P.C")
    c.ok("RENAME P Q")
    boxes = listing(c)
    assert "Q.C" in boxes and "P" not in boxes and "P.C" not in boxes


def test_rename_inbox_moves_messages_and_leaves_an_empty_inbox(conn):
    c = conn()
    for i in range(2):
        c.append("INBOX", message(f"inbox {i}"))
    c.ok("CREATE INBOX.Kid")
    c.ok("RENAME INBOX Saved")
    assert status_values(c.ok("STATUS Saved (MESSAGES)")[0]) == {"MESSAGES": 2}
    assert status_values(c.ok("STATUS INBOX (MESSAGES)")[0]) == {"MESSAGES": 0}
    boxes = listing(c)
    assert "INBOX" in boxes and "INBOX.Kid" in boxes  # children of INBOX stay (RFC 3501 §6.3.5)
    c.ok("SELECT Saved")
    assert b"inbox 0" in join(c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))


# -- SUBSCRIBE, UNSUBSCRIBE, LSUB -------------------------------------------------------------------


def lsub(c: Imap, pattern: str = "*") -> dict[str, set[bytes]]:
    out = {}
    for line in c.ok(f'LSUB "" "{pattern}"'):
        m = re.fullmatch(rb'\* LSUB \(([^)]*)\) "\." (.+)', line)
        assert m, line
        out[m.group(2).strip(b'"').decode()] = set(m.group(1).split())
    return out


def test_subscribe_unsubscribe_lsub(conn):
    c = conn()
    assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= set(lsub(c))
    c.ok("CREATE Lists")
    assert "Lists" not in lsub(c)
    assert c.cmd("SUBSCRIBE Lists") == ("OK SUBSCRIBE completed", [])
    assert "Lists" in lsub(c)
    assert "Lists" in lsub(c, "L%")
    assert c.cmd("UNSUBSCRIBE Lists") == ("OK UNSUBSCRIBE completed", [])
    assert "Lists" not in lsub(c)


def test_subscription_outlives_a_deleted_mailbox(conn):
    c = conn()
    c.ok("CREATE Doomed")
    c.ok("SUBSCRIBE Doomed")
    c.ok("DELETE Doomed")
    assert "Doomed" in lsub(c)
    lines = c.ok('LIST (SUBSCRIBED) "" "*"')
    assert any(b"Doomed" in line and b"\\NonExistent" in line for line in lines), lines


# -- LIST ---------------------------------------------------------------------------------------------


def test_list_patterns_and_reference(conn):
    c = conn()
    c.ok("CREATE Work.Reports.2026")
    everything = listing(c, "*")
    assert list(everything)[0] == "INBOX"
    assert {"INBOX", "Sent", "Work", "Work.Reports", "Work.Reports.2026"} <= set(everything)
    top = listing(c, "%")
    assert "Work" in top and "Work.Reports" not in top and "INBOX" in top
    assert set(listing(c, "%", reference="Work.")) == {"Work.Reports"}
    assert set(listing(c, "Work.%")) == {"Work.Reports"}
    assert set(listing(c, "Work.*")) == {"Work.Reports", "Work.Reports.2026"}
    assert set(listing(c, "inbox")) == {"INBOX"}  # INBOX is case-insensitive
    assert listing(c, "Nothing*") == {}
    lines = c.ok('LIST "" ""')
    assert lines == [b'* LIST (\\Noselect) "." ""']
    specials = listing(c, "*")
    assert b"\\Sent" in specials["Sent"] and b"\\Trash" in specials["Trash"] and b"\\Drafts" in specials["Drafts"]


def test_list_extended_selection_and_return_options(conn):
    c = conn()
    c.ok("CREATE Pets.Cats")
    c.ok("SUBSCRIBE Pets.Cats")
    c.append("Pets.Cats", message("meow"))
    lines = c.ok('LIST (SUBSCRIBED) "" "*"')
    names = {re.search(rb'"\." (.+)$', line).group(1).strip(b'"') for line in lines}
    assert b"Pets.Cats" in names and b"Pets" not in names and b"INBOX" in names
    assert all(b"\\Subscribed" in line for line in lines), lines
    lines = c.ok('LIST "" "Pets*" RETURN (CHILDREN SUBSCRIBED SPECIAL-USE)')
    by_name = {re.search(rb'"\." (.+)$', line).group(1).strip(b'"'): line for line in lines}
    assert b"\\HasChildren" in by_name[b"Pets"] and b"\\Subscribed" not in by_name[b"Pets"]
    assert b"\\HasNoChildren" in by_name[b"Pets.Cats"] and b"\\Subscribed" in by_name[b"Pets.Cats"]
    lines = c.ok('LIST "" "Sent" RETURN (SPECIAL-USE)')
    assert len(lines) == 1 and b"\\Sent" in lines[0]
    lines = c.ok('LIST "" "Pets.*" RETURN (STATUS (MESSAGES UIDNEXT UNSEEN))')
    assert lines[0].startswith(b"* LIST ") and b"Pets.Cats" in lines[0]
    assert lines[1].startswith(b"* STATUS Pets.Cats (") or lines[1].startswith(b'* STATUS "Pets.Cats" (')
    values = status_values(lines[1])
    assert values["MESSAGES"] == 1 and values["UNSEEN"] == 1 and values["UIDNEXT"] >= 2


def test_namespace_needs_login(conn):
    c = conn(login=False)
    status, _ = c.cmd("NAMESPACE")
    assert status.startswith("BAD"), status


# -- STATUS ---------------------------------------------------------------------------------------


def test_status_every_item(conn):
    c = conn()
    c.append("INBOX", message("one"), "(\\Seen)")
    status, _ = c.append("INBOX", message("two"), "(\\Deleted)")
    validity, last = uid_of(status)
    c.ok("ENABLE CONDSTORE")
    lines = c.ok("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)")
    assert len(lines) == 1 and lines[0].startswith(b"* STATUS INBOX (MESSAGES ")
    values = status_values(lines[0])
    assert list(values) == ["MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                            "HIGHESTMODSEQ", "APPENDLIMIT"]
    assert values["MESSAGES"] == 2 and values["UNSEEN"] == 1 and values["DELETED"] == 1
    assert values["UIDNEXT"] == last + 1 and values["UIDVALIDITY"] == validity
    caps = c.ok("CAPABILITY")[0].split()
    limit = [int(cap.split(b"=")[1]) for cap in caps if cap.startswith(b"APPENDLIMIT=")][0]
    assert values["APPENDLIMIT"] == limit
    selected = join(c.ok("SELECT INBOX"))
    assert int(re.search(rb"HIGHESTMODSEQ (\d+)", selected).group(1)) == values["HIGHESTMODSEQ"]
    sizes = [int(x) for x in re.findall(rb"RFC822\.SIZE (\d+)", join(c.ok("FETCH 1:* (RFC822.SIZE)")))]
    assert values["SIZE"] == sum(sizes)
    status, _ = c.cmd("STATUS Nowhere (MESSAGES)")
    assert status.startswith("NO [NONEXISTENT]"), status


# -- APPEND -------------------------------------------------------------------------------------------


def test_append_keeps_flags_and_internal_date(conn):
    c = conn()
    validity = status_values(c.ok("STATUS Archive (UIDVALIDITY)")[0])["UIDVALIDITY"]
    status, _ = c.append("Archive", PLAIN, '(\\Seen \\Flagged $Junk project) "14-Jul-2025 02:44:25 -0700"')
    assert status.startswith("OK [APPENDUID "), status
    got_validity, uid = uid_of(status)
    assert got_validity == validity
    c.ok("SELECT Archive")
    line = join(c.ok(f"UID FETCH {uid} (FLAGS INTERNALDATE RFC822.SIZE)"))
    assert flags_in(line) == {b"\\Seen", b"\\Flagged", b"$Junk", b"project"}
    stamp = datetime.strptime(INTERNALDATE.search(line).group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    assert stamp == datetime.strptime("14-Jul-2025 02:44:25 -0700", "%d-%b-%Y %H:%M:%S %z")
    assert int(re.search(rb"RFC822\.SIZE (\d+)", line).group(1)) == len(PLAIN)
    assert item(c.ok(f"UID FETCH {uid} (BODY.PEEK[])")[0], b"BODY[]") == PLAIN


def test_append_to_the_selected_mailbox_reports_exists(conn):
    c, _ = filled(conn, [message("first")])
    status, lines = c.append("INBOX", message("second"))
    assert status.startswith("OK [APPENDUID"), status
    assert b"* 2 EXISTS" in lines


def test_append_with_nonsynchronizing_literal(conn):
    c = conn()
    tag = c.tag()
    c.send(f"{tag} APPEND INBOX (\\Draft) {{{len(PLAIN)}+}}\r\n".encode() + PLAIN + b"\r\n")
    first = c.line()  # no "+" continuation for LITERAL+ (RFC 7888)
    assert first.startswith(f"{tag} OK [APPENDUID".encode()), first


def test_append_literal8_with_binary_content(conn):
    data = (b"Subject: bin\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\xfe\xff\r\n")
    c = conn()
    tag = c.tag()
    c.send(f"{tag} APPEND INBOX ~{{{len(data)}}}\r\n".encode())
    assert c.line().startswith(b"+")
    c.send(data + b"\r\n")
    status, _ = c.collect(tag)
    assert status.startswith("OK [APPENDUID"), status
    c.ok("SELECT INBOX")
    lines = c.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert b"BINARY.SIZE[1] 7" in lines[0], lines
    assert b"\x00\x01\x02\xfe\xff\r\n" in lines[0]


def test_append_errors(conn):
    c = conn()
    status, _ = c.append("INBOX", PLAIN, "(\\Recent)")
    assert status.startswith("BAD"), status
    status, _ = c.append("INBOX", PLAIN, '"99-Foo-2025 02:44:25 -0700"')
    assert status.startswith("BAD"), status
    assert status_values(c.ok("STATUS INBOX (MESSAGES)")[0]) == {"MESSAGES": 0}


def test_append_to_missing_mailbox_says_trycreate(conn):
    c = conn()
    status, _ = c.append("Nowhere", PLAIN)
    assert status.startswith("NO [TRYCREATE]"), status


# -- IDLE ---------------------------------------------------------------------------------------------


def test_idle_reports_another_sessions_flag_change_and_ends_with_done(conn):
    a, _ = filled(conn, [message("watched")])
    b = conn()
    b.ok("SELECT INBOX")
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n".encode())
    assert a.line().startswith(b"+ ")
    b.ok("STORE 1 +FLAGS (\\Flagged)")
    line = a.line()
    assert re.match(rb"\* 1 FETCH \(", line) and flags_in(line) == {b"\\Flagged"}, line
    a.send(b"DONE\r\n")
    assert a.line() == f"{tag} OK IDLE terminated".encode()
    assert a.ok("NOOP") == []  # nothing reported twice


def test_idle_without_a_selected_mailbox(conn):
    c = conn()
    tag = c.tag()
    c.send(f"{tag} IDLE\r\n".encode())
    assert c.line().startswith(b"+")
    c.send(b"DONE\r\n")
    assert c.line().startswith(f"{tag} OK".encode())


def test_an_idle_session_parks_without_a_task_and_wakes_for_news_and_done(conn, server):
    a, _ = filled(conn, [message("parked")])
    b = conn()
    b.ok("SELECT INBOX")
    tasks_before = len(server.server._sessions)
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n".encode())
    assert a.line().startswith(b"+ ")
    assert wait_for(lambda: len(server.server._parked) == 1)
    assert len(server.server._sessions) == tasks_before - 1  # its task ended; b's is still there
    b.ok("STORE 1 +FLAGS (\\Answered)")  # news wakes the parked session
    assert flags_in(a.line()) == {b"\\Answered"}
    assert wait_for(lambda: len(server.server._parked) == 1)  # and it parks again
    a.send(b"DONE\r\n")
    assert a.line() == f"{tag} OK IDLE terminated".encode()
    assert a.ok("NOOP") == []
    assert server.server._parked == {}


def test_idle_on_a_folder_another_session_deletes_ends_with_no_and_the_session_goes_on(conn):
    a = conn()
    a.ok("CREATE Doomed")
    a.ok("SELECT Doomed")
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n".encode())
    assert a.line().startswith(b"+ ")
    conn().ok("DELETE Doomed")
    line = a.line()
    assert line.startswith(f"{tag} NO [NONEXISTENT]".encode()), line
    assert a.ok("SELECT INBOX") is not None  # still connected, and going on elsewhere


def test_news_from_before_idle_is_reported_when_idle_starts(conn):
    a, _ = filled(conn, [message("first")])
    a.ok("NOOP")
    conn().append("INBOX", message("second"))  # no command of a's runs between this and IDLE
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n".encode())
    assert a.line().startswith(b"+ ")
    a.sock.settimeout(3)  # at once, not at the next rescan minutes later
    assert a.line() == b"* 2 EXISTS"
    assert a.line() == b"* 2 RECENT"
    a.send(b"DONE\r\n")
    assert a.line() == f"{tag} OK IDLE terminated".encode()


def test_a_parked_idle_session_sees_files_outside_tools_add(conn, server, hatoba_home, monkeypatch):
    from hatoba.imap import session as imap_session

    monkeypatch.setattr(imap_session, "IDLE_RESCAN", 1.0)  # the WakeClock ticks every few seconds
    a, _ = filled(conn, [message("one")])
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n".encode())
    assert a.line().startswith(b"+ ")
    assert wait_for(lambda: len(server.server._parked) == 1)
    new = hatoba_home.maildir(BOB[0]) / "new"
    (new / "1700000000.outside.host").write_bytes(b"Subject: dropped in\r\n\r\nby another program\r\n")
    a.sock.settimeout(15)
    assert a.line() == b"* 2 EXISTS"
    assert a.line() == b"* 2 RECENT"
    a.send(b"DONE\r\n")
    assert a.line() == f"{tag} OK IDLE terminated".encode()


def test_sessions_waiting_for_their_client_get_bye_at_once_on_shutdown(hatoba_home, monkeypatch):
    from hatoba.net import server as server_module

    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE", 30.0)  # what busy sessions would get
    with ServerThread(hatoba_home) as srv:
        parked = Imap(srv, hatoba_home)
        tag = parked.tag()
        parked.send(f"{tag} IDLE\r\n".encode())
        assert parked.line().startswith(b"+ ")
        assert wait_for(lambda: len(srv.server._parked) == 1)
        selected = Imap(srv, hatoba_home)
        selected.ok("SELECT INBOX")
        greeted = Imap(srv, hatoba_home, login=False)
        compressed = Imap(srv, hatoba_home)
        compressed.ok("COMPRESS DEFLATE")
        appending = Imap(srv, hatoba_home)  # part-way through a literal when the stop begins
        data = message("uploaded while stopping", body="x" * 200_000)
        appending.send(b"a1 APPEND INBOX {%d}\r\n" % len(data))
        assert appending.line().startswith(b"+ ")
        appending.send(data[:1000])

        def finish_upload() -> None:
            time.sleep(0.5)
            appending.send(data[1000:] + b"\r\n")

        uploader = threading.Thread(target=finish_upload)
        uploader.start()
        started = time.monotonic()
    # The server stopped (leaving the with block) without waiting out the grace time.
    assert time.monotonic() - started < 10
    uploader.join()
    for c in (parked, selected, greeted):
        assert c.line() == b"* BYE Server shutting down; try again later"
        assert c.file.read() == b""  # then the connection was closed
        c.close()
    # The upload had its command finished, then the goodbye.
    assert appending.line().startswith(b"a1 OK [APPENDUID ")
    assert appending.line() == b"* BYE Server shutting down; try again later"
    appending.close()
    # After COMPRESS the goodbye is deflated like everything else (RFC 4978).
    assert zlib.decompressobj(-15).decompress(compressed.sock.recv(1000)) == (
        b"* BYE Server shutting down; try again later\r\n")
    compressed.close()


def test_a_session_cut_off_after_the_grace_gets_a_deflated_bye_after_compress(hatoba_home, monkeypatch):
    from hatoba.net import server as server_module

    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE", 0.5)
    with ServerThread(hatoba_home) as srv:
        c = Imap(srv, hatoba_home)
        c.ok("COMPRESS DEFLATE")
        deflate, inflate = zlib.compressobj(wbits=-15), zlib.decompressobj(-15)
        c.send(deflate.compress(b"a1 APPEND INBOX {100}\r\nonly part of it") + deflate.flush(zlib.Z_SYNC_FLUSH))
        assert inflate.decompress(c.sock.recv(1000)).startswith(b"+ ")
    # The literal never came: the session was cancelled after the grace, and its BYE deflated.
    said = b""
    while chunk := c.sock.recv(1000):
        said += inflate.decompress(chunk)
    assert said == b"* BYE Server shutting down; try again later\r\n"
    c.close()


# -- CHECK, CLOSE, UNSELECT, EXPUNGE --------------------------------------------------------------


def test_check_only_when_selected(conn):
    c = conn()
    status, _ = c.cmd("CHECK")
    assert status.startswith("BAD"), status
    c.ok("SELECT INBOX")
    assert c.ok("CHECK") == []


def test_close_expunges_silently(conn):
    c, _ = filled(conn, [message("keep"), message("drop")])
    assert c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)") == []
    assert c.cmd("CLOSE") == ("OK CLOSE completed", [])
    status, _ = c.cmd("FETCH 1 (FLAGS)")
    assert status.startswith("BAD"), status  # back in the authenticated state
    assert b"* 1 EXISTS" in c.ok("SELECT INBOX")


def test_close_after_examine_does_not_expunge(conn):
    c, _ = filled(conn, [message("x")])
    c.ok("STORE 1 +FLAGS (\\Deleted)")
    c.ok("EXAMINE INBOX")
    assert c.ok("CLOSE") == []
    assert b"* 1 EXISTS" in c.ok("SELECT INBOX")


def test_unselect_does_not_expunge(conn):
    c, _ = filled(conn, [message("x"), message("y")])
    c.ok("STORE 1:2 +FLAGS (\\Deleted)")
    assert c.cmd("UNSELECT") == ("OK UNSELECT completed", [])
    status, _ = c.cmd("NOOP")
    status, _ = c.cmd("EXPUNGE")
    assert status.startswith("BAD"), status
    assert b"* 2 EXISTS" in c.ok("SELECT INBOX")


def replay_expunges(numbers: list[int], lines: list[bytes]) -> list[int]:
    """Apply "* n EXPUNGE" responses one by one, as a client must (RFC 9051 §7.5.1)."""
    left = list(numbers)
    for line in lines:
        m = re.fullmatch(rb"\* (\d+) EXPUNGE", line)
        if m:
            del left[int(m.group(1)) - 1]
    return left


def test_expunge_reports_each_message(conn):
    c, uids = filled(conn, [message(f"e{i}") for i in range(4)])
    c.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    lines = c.ok("EXPUNGE")
    assert len(lines) == 2 and all(line.endswith(b" EXPUNGE") for line in lines)
    assert replay_expunges(uids, lines) == [uids[1], uids[3]]
    left = [int(x) for x in re.findall(rb"UID (\d+)", join(c.ok("FETCH 1:* (UID)")))]
    assert left == [uids[1], uids[3]]
    assert c.ok("EXPUNGE") == []


def test_uid_expunge_only_the_given_uids(conn):
    c, uids = filled(conn, [message(f"u{i}") for i in range(3)])
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    lines = c.ok(f"UID EXPUNGE {uids[1]}")
    assert lines == [b"* 2 EXPUNGE"]
    lines = c.ok("FETCH 1:* (UID FLAGS)")
    assert [int(x) for x in re.findall(rb"UID (\d+)", join(lines))] == [uids[0], uids[2]]
    assert all(b"\\Deleted" in line for line in lines)


# -- SEARCH -----------------------------------------------------------------------------------------


@pytest.fixture
def five(conn):
    """Five messages, differing in sender, subject, size, date, flags and body."""
    c, uids = filled(conn, [
        message("apple pie", sender="ann@a.example", date="Mon, 02 Mar 2026 10:00:00 +0000", body="sweet"),
        message("banana", sender="bea@b.example", date="Tue, 03 Mar 2026 10:00:00 +0000", body="yellow " * 50),
        message("Re: apple pie", sender="cid@c.example", date="Wed, 04 Mar 2026 10:00:00 +0000",
                body="also sweet", extra="X-Tracker: yes\r\n"),
        message("cherry", sender="ann@a.example", date="Thu, 05 Mar 2026 10:00:00 +0000", body="red"),
        message("date", sender="dan@d.example", date="Sun, 01 Mar 2026 10:00:00 +0000", body="brown"),
    ])
    c.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    c.ok("STORE 4 +FLAGS.SILENT (\\Flagged project)")
    return c, uids


def search(c: Imap, criteria: str | bytes, *, uid: bool = False) -> list[int]:
    words = criteria.encode() if isinstance(criteria, str) else criteria
    lines = c.ok((b"UID " if uid else b"") + b"SEARCH " + words)
    assert len(lines) == 1 and lines[0].startswith(b"* SEARCH"), lines
    return [int(x) for x in lines[0].split()[2:]]


def test_search_keys(five):
    c, uids = five
    assert search(c, "ALL") == [1, 2, 3, 4, 5]
    assert search(c, "SEEN") == [2]
    assert search(c, "UNSEEN") == [1, 3, 4, 5]
    assert search(c, "FLAGGED") == [4]
    assert search(c, "KEYWORD project") == [4]
    assert search(c, "UNKEYWORD project") == [1, 2, 3, 5]
    assert search(c, 'SUBJECT "apple"') == [1, 3]
    assert search(c, "FROM ann@a.example") == [1, 4]
    assert search(c, "BODY sweet") == [1, 3]
    assert search(c, "TEXT tracker") == [3]  # TEXT looks in the header too
    assert search(c, 'HEADER X-Tracker ""') == [3]
    assert search(c, "LARGER 300") == [2]
    assert search(c, "SMALLER 300") == [1, 3, 4, 5]
    assert search(c, "SENTBEFORE 03-Mar-2026") == [1, 5]
    assert search(c, "SENTON 04-Mar-2026") == [3]
    assert search(c, "SENTSINCE 04-Mar-2026") == [3, 4]
    assert search(c, "2:3") == [2, 3]
    assert search(c, "NOT 2:3") == [1, 4, 5]
    assert search(c, "OR SEEN FLAGGED") == [2, 4]
    assert search(c, f"UID {uids[4]}") == [5]
    assert search(c, "SINCE 01-Jan-2020") == [1, 2, 3, 4, 5]  # internal date: today
    assert search(c, "BEFORE 01-Jan-2020") == []
    assert c.ok("SEARCH SUBJECT nothing-like-this") == [b"* SEARCH"]
    status, _ = c.cmd("SEARCH NOSUCHKEY")
    assert status.startswith("BAD"), status


def test_uid_search_answers_with_uids(five):
    c, uids = five
    assert search(c, "ALL", uid=True) == uids
    assert search(c, "FLAGGED", uid=True) == [uids[3]]
    assert search(c, "2:3", uid=True) == [uids[1], uids[2]]


def test_searchres_save_then_fetch_dollar(five):
    c, uids = five
    assert c.ok('SEARCH RETURN (SAVE) SUBJECT "apple"') == []  # SAVE alone: no ESEARCH (RFC 5182 §2.1)
    lines = c.ok("FETCH $ (UID)")
    assert [int(x) for x in re.findall(rb"UID (\d+)", join(lines))] == [uids[0], uids[2]]
    lines = c.ok("UID SEARCH RETURN (SAVE MIN) FLAGGED")
    assert len(lines) == 1 and lines[0].startswith(b"* ESEARCH") and b"UID MIN %d" % uids[3] in lines[0]
    lines = c.ok("UID FETCH $ (FLAGS)")
    assert len(lines) == 1 and lines[0].startswith(b"* 4 FETCH")
    assert c.ok("STORE $ +FLAGS.SILENT (\\Answered)") == []
    assert search(c, "ANSWERED") == [4]
    assert search(c, "$") == [4]


# -- FETCH --------------------------------------------------------------------------------------------


@pytest.fixture
def two_kinds(conn):
    c, uids = filled(conn, [PLAIN, MIXED])
    return c, uids


def item(line: bytes, name: bytes) -> bytes:
    """The literal that follows `name {n}` in a FETCH line."""
    m = re.search(re.escape(name) + rb" ~?\{(\d+)\}\r\n", line)
    assert m, (name, line)
    return line[m.end() : m.end() + int(m.group(1))]


def test_fetch_flags_date_size_envelope(two_kinds):
    c, uids = two_kinds
    lines = c.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE UID)")
    assert len(lines) == 1 and lines[0].startswith(b"* 1 FETCH (")
    line = lines[0]
    assert flags_in(line) == set() and b"UID %d" % uids[0] in line
    assert INTERNALDATE.search(line), line
    assert b"RFC822.SIZE %d" % len(PLAIN) in line
    ann = b'(("Ann" NIL "ann" "elsewhere.example"))'
    envelope = (b'ENVELOPE ("Tue, 24 Nov 2026 10:00:00 +0000" "hello" ' + ann + b" " + ann + b" " + ann
                + b' ((NIL NIL "bob" "example.test")) NIL NIL NIL "<m1@elsewhere.example>")')
    assert envelope in line, line
    fast = c.ok("FETCH 1 FAST")[0]
    assert flags_in(fast) == set() and b"INTERNALDATE" in fast and b"RFC822.SIZE" in fast
    assert b"ENVELOPE" not in fast


def test_fetch_body_and_bodystructure(two_kinds):
    c, _ = two_kinds
    line = c.ok("FETCH 1 (BODY BODYSTRUCTURE)")[0]
    assert b'BODY ("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 13 1)' in line, line
    assert b'BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 13 1 ' in line, line
    line = c.ok("FETCH 2 (BODY)")[0]
    assert re.search(rb'BODY \(\("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" 12 1\)'
                     rb'\("application" "octet-stream" NIL NIL NIL "base64" \d+\) "mixed"\)', line), line


def test_fetch_bodystructure_kept_per_message_file_answers_the_same(two_kinds):
    from hatoba.imap.structures import STRUCTURES

    c, uids = two_kinds
    asked = "UID FETCH %d:%d (UID FLAGS ENVELOPE BODY BODYSTRUCTURE)" % (uids[0], uids[1])
    first = c.ok(asked)
    kept = [key for key in list(STRUCTURES._values) if key[0].startswith(str(c.home.root))]
    assert len(kept) == 2, kept  # both messages' values kept after their first parse
    again = c.ok(asked)  # answered from the kept values, the header cache for ENVELOPE
    assert again == first
    c.ok("STORE 1 +FLAGS (\\Flagged)")  # a new file name (flags) but the same stem
    flagged = c.ok("FETCH 1 (BODYSTRUCTURE FLAGS)")[0]
    assert b"\\Flagged" in flagged and first[0].split(b"BODYSTRUCTURE ", 1)[1][:-1] in flagged


def test_fetch_sections(two_kinds):
    c, _ = two_kinds
    header, text = PLAIN.split(b"\r\n\r\n", 1)
    line = c.ok("FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] RFC822.HEADER)")[0]
    assert item(line, b"BODY[HEADER]") == header + b"\r\n\r\n"
    assert item(line, b"BODY[TEXT]") == text
    assert item(line, b"BODY[1]") == text  # a single-part message's part 1 is its body
    assert item(line, b"RFC822.HEADER") == header + b"\r\n\r\n"
    line = c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])")[0]
    fields = item(line, b"BODY[HEADER.FIELDS (SUBJECT FROM)]")
    assert fields == b"From: Ann <ann@elsewhere.example>\r\nSubject: hello\r\n\r\n"
    assert b"Subject" not in item(line, b"BODY[HEADER.FIELDS.NOT (SUBJECT)]")
    line = c.ok("FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])")[0]
    assert item(line, b"BODY[1]") == b"see attached"
    assert item(line, b"BODY[2.MIME]").startswith(b"Content-Type: application/octet-stream\r\n")
    assert item(line, b"BINARY[2]") == b"\x00\x01binary\xff"
    assert b"BINARY.SIZE[2] 9" in line
    assert flags_in(c.ok("FETCH 1:2 (FLAGS)")[0]) == set()  # nothing above set \Seen


@contextlib.contextmanager
def server_reading_without_waiting(tmp_path: Path, *, drop_pages: bool):
    """(conn, home, server) with the mail on a file system where reads can be told not to
    wait (and, with `drop_pages`, a file can leave the page cache): tmp_path, else /var/tmp.
    A tmpfs (/tmp on Debian 13) may refuse RWF_NOWAIT, so that every read goes to a thread."""
    with nowait_dir(tmp_path, Path("/var/tmp"), drop_pages=drop_pages) as folder:
        home = make_home(folder / "hatoba")
        with ServerThread(home) as srv:
            opened: list[Imap] = []

            def open_(**kw) -> Imap:
                c = Imap(srv, home, **kw)
                opened.append(c)
                return c

            try:
                yield open_, home, srv
            finally:
                for c in opened:
                    c.close()


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="RWF_NOWAIT is Linux-only")
def test_fetch_reads_messages_the_page_cache_lost_in_a_thread_and_keeps_their_order(tmp_path):
    with server_reading_without_waiting(tmp_path, drop_pages=True) as (conn, home, _):
        _fetch_after_eviction(conn, home)


def _fetch_after_eviction(conn, hatoba_home) -> None:
    bodies = [message(f"m{i}", body=f"body {i} " * 40) for i in range(8)]
    c, _ = filled(conn, bodies)
    cur = hatoba_home.maildir(BOB[0]) / "cur"
    by_body = {(cur / name).read_bytes().replace(b"\n", b"\r\n"): name for name in os.listdir(cur)}
    assert len(by_body) == 8
    for i in (0, 3, 4, 7):  # the first, two in a row and the last: each switch between loop and thread
        fd = os.open(cur / by_body[bodies[i]], os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    lines = c.ok("FETCH 1:8 (BODY[])")
    fetched = [line for line in lines if b" FETCH (" in line and b"BODY[]" in line]
    assert [int(line.split()[1]) for line in fetched] == list(range(1, 9))
    assert [item(line, b"BODY[]") for line in fetched] == bodies
    assert search(c, "UNSEEN") == []


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="RWF_NOWAIT is Linux-only")
def test_fetch_reads_on_the_loop_only_for_slices_and_lets_other_sessions_run_between_batches(
        tmp_path, monkeypatch):
    with server_reading_without_waiting(tmp_path, drop_pages=False) as (conn, _, server):
        _slices_on_the_loop(conn, server, monkeypatch)


def _slices_on_the_loop(conn, server, monkeypatch) -> None:
    from hatoba.imap import cmd_message as imap_cmd_message
    from hatoba.store.mailbox_view import Mailbox

    c, _ = filled(conn, [message(f"m{i}", body="x" * 500) for i in range(6)])
    monkeypatch.setattr(imap_cmd_message, "FETCH_BATCH_WITH_BODIES", 2)
    ticks = [0]

    def tick() -> None:  # runs once per turn of the server's event loop
        ticks[0] += 1
        server.loop.call_soon(tick)

    server.loop.call_soon_threadsafe(tick)
    seen: list[tuple[int, int]] = []  # (uid, loop turns so far) at each read on the loop
    read_now = Mailbox.read_now

    def recording(self, uid, limit):  # type: ignore[no-untyped-def]
        seen.append((uid, ticks[0]))
        return read_now(self, uid, limit)

    monkeypatch.setattr(Mailbox, "read_now", recording)
    c.ok("FETCH 1:6 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert seen == []  # these parse the message: in threads, never on the loop
    c.ok("FETCH 1:6 (BODY.PEEK[])")
    assert len(seen) == 6  # a slice: read on the loop
    turns = [t for _, t in seen]
    for batch in range(1, 3):  # the first read of each later batch comes turns after the last one
        assert turns[2 * batch] > turns[2 * batch - 1], turns


def test_fetch_partial(two_kinds):
    c, _ = two_kinds
    line = c.ok("FETCH 1 (BODY.PEEK[]<6.10>)")[0]
    assert item(line, b"BODY[]<6>") == PLAIN[6:16]
    line = c.ok("FETCH 1 (BODY.PEEK[TEXT]<0.5>)")[0]
    assert item(line, b"BODY[TEXT]<0>") == b"hello"
    line = c.ok("FETCH 1 (BODY.PEEK[]<100000.10>)")[0]
    assert re.search(rb'BODY\[\]<100000> (""|\{0\}\r\n)', line), line  # past the end: empty


def test_fetch_body_sets_seen_but_peek_does_not(two_kinds):
    c, _ = two_kinds
    c.ok("FETCH 1 (BODY.PEEK[])")
    assert flags_in(c.ok("FETCH 1 (FLAGS)")[0]) == set()
    lines = c.ok("FETCH 1 (BODY[])")
    assert b"\\Seen" in join(lines)  # RFC 3501 §6.4.5: the flag change is reported
    assert flags_in(c.ok("FETCH 1 (FLAGS)")[0]) == {b"\\Seen"}
    c.ok("FETCH 2 (RFC822.TEXT)")
    assert flags_in(c.ok("FETCH 2 (FLAGS)")[0]) == {b"\\Seen"}
    assert search(c, "UNSEEN") == []


def test_fetch_modseq_and_uid(two_kinds):
    c, uids = two_kinds
    highest, line = c.ok("FETCH 2 (MODSEQ)")  # the first MODSEQ FETCH switches CONDSTORE on
    assert highest.startswith(b"* OK [HIGHESTMODSEQ ")
    first = int(re.search(rb"MODSEQ \((\d+)\)", line).group(1))
    c.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    line = c.ok("FETCH 2 (MODSEQ UID)")[0]
    assert int(re.search(rb"MODSEQ \((\d+)\)", line).group(1)) > first
    assert b"UID %d" % uids[1] in line
    line = c.ok(f"UID FETCH {uids[1]} (FLAGS)")[0]
    assert b"UID %d" % uids[1] in line  # UID FETCH always includes UID


def test_fetch_beyond_exists_is_bad(two_kinds):
    c, _ = two_kinds
    for command in ("FETCH 3 (FLAGS)", "FETCH 1:3 (FLAGS)", "STORE 3 +FLAGS (\\Seen)", "COPY 3 Trash"):
        status, lines = c.cmd(command)
        assert status.startswith("BAD"), (command, status)
        assert lines == []
    assert c.ok("UID FETCH 99999 (FLAGS)") == []  # a uid set is not an error (RFC 9051 §6.4.9)


# -- STORE ---------------------------------------------------------------------------------------------


def test_store_modes_and_keywords(two_kinds):
    c, _ = two_kinds
    lines = c.ok("STORE 1 +FLAGS (\\Seen \\Flagged)")
    assert len(lines) == 1 and lines[0].startswith(b"* 1 FETCH (")
    assert flags_in(lines[0]) == {b"\\Seen", b"\\Flagged"}
    lines = c.ok("STORE 1 -FLAGS (\\Seen)")
    assert flags_in(lines[0]) == {b"\\Flagged"}
    lines = c.ok("STORE 1 FLAGS ($Junk project)")
    assert lines[0].startswith(b"* FLAGS (") and b"$Junk" in lines[0]  # new keywords: FLAGS first
    assert flags_in(lines[-1]) == {b"$Junk", b"project"}
    assert c.ok("STORE 1:2 +FLAGS.SILENT (\\Answered)") == []
    assert c.ok("STORE 1 -FLAGS.SILENT (project)") == []
    assert c.ok("STORE 2 FLAGS.SILENT ()") == []
    assert flags_in(c.ok("FETCH 1 (FLAGS)")[0]) == {b"$Junk", b"\\Answered"}
    assert flags_in(c.ok("FETCH 2 (FLAGS)")[0]) == set()
    assert search(c, "KEYWORD $Junk") == [1]
    status, _ = c.cmd("STORE 1 +FLAGS (\\Recent)")
    assert status.startswith("BAD"), status


def test_store_unchangedsince(two_kinds):
    c, _ = two_kinds
    modseq = int(re.search(rb"MODSEQ \((\d+)\)", c.ok("FETCH 1 (MODSEQ)")[-1]).group(1))
    status, lines = c.cmd(f"STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Answered)")
    assert status.startswith("OK") and "MODIFIED" not in status, status
    assert len(lines) == 1 and b"\\Answered" in lines[0]
    assert int(re.search(rb"MODSEQ \((\d+)\)", lines[0]).group(1)) > modseq
    status, lines = c.cmd(f"STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)")
    assert status.startswith("OK [MODIFIED 1]"), status
    status, lines = c.cmd("STORE 2 (UNCHANGEDSINCE 0) +FLAGS (\\Flagged)")
    assert status.startswith("OK [MODIFIED 2]"), status  # RFC 7162 §3.1.3: 0 always fails
    assert flags_in(c.ok("FETCH 1:2 (FLAGS)")[0]) == {b"\\Answered"}


# -- COPY, MOVE and the UID forms -------------------------------------------------------------------


def copyuid(text: bytes | str) -> tuple[int, list[int], list[int]]:
    if isinstance(text, bytes):
        text = text.decode()
    m = re.search(r"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", text)
    assert m, text
    return int(m.group(1)), uid_set(m.group(2)), uid_set(m.group(3))


def test_copy_answers_copyuid(two_kinds):
    c, uids = two_kinds
    c.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    validity = status_values(c.ok("STATUS Archive (UIDVALIDITY)")[0])["UIDVALIDITY"]
    status, lines = c.cmd("COPY 1:2 Archive")
    assert status.startswith("OK [COPYUID"), status
    dest_validity, src, new = copyuid(status)
    assert dest_validity == validity and src == uids and len(new) == 2
    assert c.ok("NOOP") == []  # the source is unchanged
    c.ok("EXAMINE Archive")
    lines = c.ok(f"UID FETCH {new[1]} (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"with file" in lines[0] and b"\\Flagged" in lines[0]  # flags travel with the copy
    status, _ = c.cmd("COPY 1 Nowhere")
    assert status.startswith("NO [TRYCREATE]"), status


def test_move_sends_copyuid_then_expunge(two_kinds):
    c, uids = two_kinds
    status, lines = c.cmd("MOVE 1 Trash")
    assert status.startswith("OK"), status
    assert lines[0].startswith(b"* OK [COPYUID "), lines
    _, src, new = copyuid(lines[0])
    assert src == [uids[0]] and len(new) == 1
    assert lines[1:] == [b"* 1 EXPUNGE"]
    status, _ = c.cmd("MOVE 1 Nowhere")
    assert status.startswith("NO [TRYCREATE]"), status
    assert b"* 1 EXISTS" in c.ok("EXAMINE Trash")


def test_uid_store_copy_move(two_kinds):
    c, uids = two_kinds
    lines = c.ok(f"UID STORE {uids[1]} +FLAGS (\\Flagged)")
    assert lines == [b"* 2 FETCH (FLAGS (\\Flagged \\Recent) UID %d)" % uids[1]]
    status, _ = c.cmd(f"UID COPY {uids[0]}:{uids[1]} Junk")
    _, src, new = copyuid(status)
    assert src == uids and len(new) == 2
    status, lines = c.cmd(f"UID MOVE {uids[0]} Archive")
    assert status.startswith("OK"), status
    assert copyuid(lines[0])[1] == [uids[0]]
    assert lines[1:] == [b"* 1 EXPUNGE"]
    assert c.ok(f"UID MOVE {uids[0]} Archive") == []  # already gone: nothing to do
    assert [int(x) for x in re.findall(rb"UID (\d+)", join(c.ok("FETCH 1:* (UID)")))] == [uids[1]]


# -- SORT and THREAD ----------------------------------------------------------------------------------


def test_sort(five):
    c, uids = five

    def sort(criteria: str, uid: bool = False) -> list[int]:
        lines = c.ok(f"{'UID ' if uid else ''}SORT ({criteria}) UTF-8 ALL")
        assert len(lines) == 1 and lines[0].startswith(b"* SORT"), lines
        return [int(x) for x in lines[0].split()[2:]]

    assert sort("ARRIVAL") == [1, 2, 3, 4, 5]
    assert sort("DATE") == [5, 1, 2, 3, 4]
    assert sort("REVERSE DATE") == [4, 3, 2, 1, 5]
    assert sort("SUBJECT") == [1, 3, 2, 4, 5]  # "Re: apple pie" sorts as "apple pie"
    assert sort("FROM DATE") == [1, 4, 2, 3, 5]
    assert sort("REVERSE SIZE")[0] == 2
    assert sort("DATE", uid=True) == [uids[4], uids[0], uids[1], uids[2], uids[3]]
    lines = c.ok("SORT (DATE) UTF-8 SEEN")
    assert lines == [b"* SORT 2"]


def test_thread_orderedsubject(five):
    c, uids = five
    c.append("INBOX", message("Re: banana", date="Fri, 06 Mar 2026 10:00:00 +0000"))
    c.append("INBOX", message("Fwd: Re: apple pie", date="Sat, 07 Mar 2026 10:00:00 +0000"))
    c.ok("NOOP")
    lines = c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")
    # RFC 5256 §2.1: threads by base subject, ordered by their first message's date; the rest are children.
    assert lines == [b"* THREAD (5)(1 (3)(7))(2 6)(4)"], lines
    lines = c.ok("UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT banana")
    assert lines[0].startswith(b"* THREAD (%d " % uids[1]), lines


# -- QUOTA ---------------------------------------------------------------------------------------------


def test_quota_with_a_limit(hatoba_home):
    from support.harness import ServerThread, _merge_config

    _merge_config(hatoba_home.config_path, "[imap]\nquota_mb = 2\n")
    with ServerThread(hatoba_home) as srv:
        c = Imap(srv, hatoba_home)
        c.append("INBOX", b"Subject: q\r\n\r\n" + b"x" * 3000 + b"\r\n")
        lines = c.ok("GETQUOTAROOT INBOX")
        assert lines[0] == b'* QUOTAROOT INBOX ""'
        m = re.fullmatch(rb'\* QUOTA "" \(STORAGE (\d+) (\d+)\)', lines[1])
        assert m and int(m.group(2)) == 2048 and 3 <= int(m.group(1)) <= 4, lines
        assert c.ok('GETQUOTA ""') == [lines[1]]
        status, _ = c.cmd('SETQUOTA "" (STORAGE 99999)')
        assert status.startswith("NO"), status
        c.close()


@pytest.mark.parametrize("quota_mb", [0, 2])
def test_quota_roots_named_are_roots_getquota_knows(hatoba_home, quota_mb):
    from support.harness import ServerThread, _merge_config

    # RFC 9208 §4.3: with a limit the one root "" is named, and GETQUOTA knows it; without
    # one no root is named, and GETQUOTA "" knows none.
    _merge_config(hatoba_home.config_path, f"[imap]\nquota_mb = {quota_mb}\n")
    with ServerThread(hatoba_home) as srv:
        c = Imap(srv, hatoba_home)
        lines = c.ok("GETQUOTAROOT INBOX")
        assert lines[0].startswith(b"* QUOTAROOT INBOX"), lines
        roots = re.findall(rb'"([^"]*)"', lines[0])
        assert roots == ([b""] if quota_mb else []), lines
        for root in roots:
            status, quota = c.cmd(f'GETQUOTA "{root.decode()}"')
            assert status.startswith("OK") and quota == [lines[1]], (status, quota, lines)
        if not roots:
            status, _ = c.cmd('GETQUOTA ""')
            assert status.startswith("NO") and "[NONEXISTENT]" in status, status
        c.close()


# -- COMPRESS ------------------------------------------------------------------------------------------


def test_compress_twice_is_refused(server, hatoba_home):
    c = Imap(server, hatoba_home)
    c.ok("COMPRESS DEFLATE")
    comp, decomp = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
    c.sock.sendall(comp.compress(b"z1 COMPRESS DEFLATE\r\nz2 NOOP\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
    got = b""
    deadline = time.monotonic() + 10
    while b"z2 " not in got and time.monotonic() < deadline:
        got += decomp.decompress(c.sock.recv(65536))
    assert b"z1 NO [COMPRESSIONACTIVE]" in got, got
    assert b"z2 OK" in got
    c.close()


# -- AUTHENTICATE and LOGIN ----------------------------------------------------------------------------


def test_authenticate_plain_without_initial_response(conn):
    c = conn(login=False)
    tag = c.tag()
    c.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
    assert c.line() in (b"+ ", b"+")  # RFC 4959: an empty challenge
    c.send(base64.b64encode(f"\0{BOB[0]}\0{BOB[1]}".encode()) + b"\r\n")
    status, _ = c.collect(tag)
    assert status.startswith("OK"), status
    c.ok("SELECT INBOX")


def test_authenticate_cancelled_with_star(conn):
    c = conn(login=False)
    tag = c.tag()
    c.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
    assert c.line().startswith(b"+")
    c.send(b"*\r\n")
    status, _ = c.collect(tag)
    assert status.startswith("BAD"), status  # RFC 9051 §6.2.2
    status, _ = c.cmd("SELECT INBOX")
    assert status.startswith("BAD"), status  # still not logged in
    c.ok(f"LOGIN {BOB[0]} {BOB[1]}")


def test_login_with_wrong_password(conn):
    c = conn(login=False)
    status, lines = c.cmd(f"LOGIN {BOB[0]} wrong-password")
    assert status.startswith("NO [AUTHENTICATIONFAILED]"), status
    assert lines == []
    status, _ = c.cmd("SELECT INBOX")
    assert status.startswith("BAD"), status
    status, _ = c.cmd("LOGIN nobody@example.test whatever")
    assert status.startswith("NO [AUTHENTICATIONFAILED]"), status


# -- news: outside tools, deliveries, other sessions ---------------------------------------------------


def test_message_dropped_into_new_appears_at_noop(conn, hatoba_home):
    c = conn()
    assert b"* 0 EXISTS" in c.ok("SELECT INBOX")
    new = hatoba_home.maildir(BOB[0]) / "new"
    (new / f"{int(time.time())}.outside1.host").write_bytes(b"Subject: dropped\n\nfrom outside\n")
    lines = c.ok("NOOP")
    assert b"* 1 EXISTS" in lines, lines
    body = item(c.ok("FETCH 1 (BODY.PEEK[])")[0], b"BODY[]")
    assert body == b"Subject: dropped\r\n\r\nfrom outside\r\n"  # CRLF on the wire


def test_delivery_while_selected_shows_exists_at_noop(conn, server, hatoba_home):
    c = conn()
    assert b"* 0 EXISTS" in c.ok("SELECT INBOX")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.sendmail("someone@elsewhere.example", [BOB[0]], b"From: someone@elsewhere.example\r\nSubject: delivered\r\n\r\nhi\r\n")
    hatoba_home.wait_messages(BOB[0], 1)
    deadline = time.monotonic() + 10
    seen: list[bytes] = []
    while b"* 1 EXISTS" not in seen and time.monotonic() < deadline:
        seen += c.ok("NOOP")
        time.sleep(0.05)
    assert b"* 1 EXISTS" in seen, seen


def test_two_sessions_flags_and_deferred_expunges(conn):
    a, uids = filled(conn, [message(f"m{i}") for i in range(3)])
    b = conn()
    b.ok("SELECT INBOX")
    a.ok("STORE 1 +FLAGS (\\Seen)")
    lines = b.ok("NOOP")
    assert len(lines) == 1 and lines[0].startswith(b"* 1 FETCH (") and flags_in(lines[0]) == {b"\\Seen"}
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    # RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH by sequence number.
    for command in ("FETCH 1:3 (UID)", "STORE 3 +FLAGS (\\Flagged)", "SEARCH ALL"):
        lines = b.ok(command)
        assert not any(b"EXPUNGE" in line for line in lines), (command, lines)
    lines = b.ok("FETCH 3 (FLAGS UID)")
    assert b"UID %d" % uids[2] in lines[0] and b"\\Flagged" in lines[0]  # numbers did not shift
    lines = b.ok("NOOP")
    assert lines == [b"* 2 EXPUNGE"], lines
    assert [int(x) for x in re.findall(rb"UID (\d+)", join(b.ok("FETCH 1:* (UID)")))] == [uids[0], uids[2]]


def test_uid_command_may_report_pending_expunge(conn):
    a, uids = filled(conn, [message(f"m{i}") for i in range(2)])
    b = conn()
    b.ok("SELECT INBOX")
    a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    lines = b.ok("UID SEARCH ALL")
    assert b"* 1 EXPUNGE" in lines, lines  # UID commands may renumber (RFC 9051 §7.5.1)
    found = [line for line in lines if line.startswith(b"* SEARCH")]
    assert len(found) == 1 and uids[1] in [int(x) for x in found[0].split()[2:]]
    assert b.ok("NOOP") == []
    assert b.ok("UID SEARCH ALL") == [b"* SEARCH %d" % uids[1]]


# -- more corners -------------------------------------------------------------------------------------


def test_select_condstore_parameter_and_unsolicited_modseq(conn):
    a, _ = filled(conn, [message("c")])
    b = conn()
    lines = b.ok("SELECT INBOX (CONDSTORE)")
    assert any(re.match(rb"\* OK \[HIGHESTMODSEQ \d+\]", line) for line in lines), lines
    a.ok("STORE 1 +FLAGS (\\Answered)")
    lines = b.ok("NOOP")
    # RFC 7162 §3.2: with CONDSTORE on, unsolicited FETCH responses carry MODSEQ.
    assert len(lines) == 1 and re.search(rb"MODSEQ \(\d+\)", lines[0]), lines


def test_esearch_return_all_and_utf8_literal_search(five):
    c, _ = five
    c.append("INBOX", "Subject: =?UTF-8?B?44GP44KK?=\r\n\r\nくり\r\n".encode())
    c.ok("NOOP")
    status, lines = c.cmd("SEARCH RETURN () 2:4")
    tag = f"t{c.count}"
    assert lines == [f'* ESEARCH (TAG "{tag}") ALL 2:4'.encode()], lines
    word = "くり".encode()
    assert search(c, b"CHARSET UTF-8 SUBJECT {%d+}\r\n" % len(word) + word) == [6]
    assert search(c, b"CHARSET UTF-8 BODY {%d+}\r\n" % len(word) + word) == [6]


def test_binary_of_unknown_encoding_is_refused(conn):
    c, _ = filled(conn, [b"Subject: odd\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-odd\r\n\r\nzz\r\n"])
    status, _ = c.cmd("FETCH 1 (BINARY.PEEK[1])")
    assert status.startswith("NO [UNKNOWN-CTE]"), status  # RFC 3516 §4.3


def test_lsub_percent_returns_the_parent_of_a_subscribed_child(conn):
    c = conn()
    c.ok("CREATE Pets.Cats")
    c.ok("SUBSCRIBE Pets.Cats")
    boxes = lsub(c, "%")
    assert "Pets" in boxes and b"\\Noselect" in boxes["Pets"], boxes


def test_recent_in_status(conn, hatoba_home):
    c = conn()
    new = hatoba_home.maildir(BOB[0]) / "new"
    (new / f"{int(time.time())}.outside2.host").write_bytes(b"Subject: fresh\n\nnew\n")
    assert status_values(c.ok("STATUS INBOX (MESSAGES RECENT)")[0]) == {"MESSAGES": 1, "RECENT": 1}


def test_select_reports_recent_messages(conn, hatoba_home):
    c = conn()
    new = hatoba_home.maildir(BOB[0]) / "new"
    (new / f"{int(time.time())}.outside3.host").write_bytes(b"Subject: fresh\n\nnew\n")
    lines = c.ok("SELECT INBOX")
    assert b"* 1 RECENT" in lines, lines
    assert b"\\Recent" in c.ok("FETCH 1 (FLAGS)")[0]
