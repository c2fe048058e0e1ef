"""Real IMAP clients against hatoba: mbsync, imapclient, curl, mutt.

Each test talks to the in-process server on loopback ports and delivers its
test mail over SMTP, so the whole path (SMTP → queue → Maildir → IMAP) is the
real one. mbsync and mutt check the certificate's DNS names only (not its IP
address entries), so they connect to "localhost", which the test certificate
names; imapclient and curl connect to 127.0.0.1.
"""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from support.peers import needs

from hatoba.store.folder_tree import DEFAULT_FOLDERS

BOB = ("bob@example.test", "bob-password-1")


def deliver(server, home, subjects: list[str]) -> None:
    """Send one message per subject to bob and wait until all are in his Maildir."""
    before = len(home.messages(BOB[0]))
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        for subject in subjects:
            slug = subject.replace(" ", "-")
            c.sendmail("someone@elsewhere.example", [BOB[0]],
                       f"From: Someone <someone@elsewhere.example>\r\nTo: Bob <{BOB[0]}>\r\n"
                       f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nSubject: {subject}\r\n"
                       f"Message-ID: <{slug}@elsewhere.example>\r\n\r\nbody of {subject}\r\n")
    want = before + len(subjects)
    assert len(home.wait_messages(BOB[0], want)) == want


def server_inbox(server, home) -> dict[str, set[bytes]]:
    """Subject → flags of every message in bob's INBOX, read with imaplib (an independent client)."""
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    try:
        m.login(*BOB)
        m.select("INBOX", readonly=True)
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        if data == [None]:
            return {}
        out = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).split())
            subject = item[1].decode().split(":", 1)[1].strip()
            out[subject] = flags
        return out
    finally:
        m.logout()


# -- mbsync (isync) ---------------------------------------------------------------------------

MBSYNC_READONLY_COMMANDS = {"AUTHENTICATE", "LOGIN", "CAPABILITY", "NAMESPACE", "LIST", "SELECT",
                            "EXAMINE", "FETCH", "CLOSE", "LOGOUT", "ENABLE", "ID", "COMPRESS"}


def mbsync_config(tmp_path: Path, server, home) -> Path:
    local = tmp_path / "Mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        "IMAPAccount hatoba\n"
        "Host localhost\n"
        f"Port {server.port('imaps')}\n"
        f"User {BOB[0]}\n"
        f"Pass {BOB[1]}\n"
        "SSLType IMAPS\n"
        "SSLVersions TLSv1.2 TLSv1.3\n"  # isync 1.4 spelling (1.5 renamed it TLSType/TLSVersions)
        "SystemCertificates no\n"
        f"CertificateFile {home.ca_file}\n"
        "\n"
        "IMAPStore remote\n"
        "Account hatoba\n"
        "\n"
        "MaildirStore local\n"
        f"Path {local}/\n"
        f"Inbox {local}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel bob\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns *\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n"
        "Sync All\n"
    )
    rc.chmod(0o600)
    return rc


def mbsync(tmp_path: Path, rc: Path) -> str:
    """One `mbsync -D -a` run; returns its debug output (every IMAP command it sent)."""
    r = subprocess.run(["mbsync", "-D", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=120,
                       env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    return out


def imap_commands(debug: str) -> list[str]:
    """The IMAP commands mbsync sent, e.g. ['NAMESPACE', 'LIST', 'UID FETCH', ...]."""
    cmds = []
    for m in re.finditer(r"^F: >>> \d+ (UID \w+|\w+)", debug, re.M):
        cmds.append(m.group(1).upper())
    return cmds


def local_messages(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every message file in the local Maildir tree: relative path → (flags, content)."""
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.parent.name in ("cur", "new"):
            flags = f.name.rsplit(":2,", 1)[1] if ":2," in f.name else ""
            out[str(f.relative_to(root))] = (flags, f.read_bytes())
    return out


def subject_of(message: bytes) -> str:
    """mbsync stores messages with LF line ends locally, the server with CRLF."""
    return re.search(rb"^Subject: (.*?)\r?$", message, re.M).group(1).decode()


def find_local(root: Path, subject: str) -> Path:
    hits = [f for f in (root / "INBOX").glob("*/*")
            if f.parent.name in ("cur", "new") and subject_of(f.read_bytes()) == subject]
    assert len(hits) == 1, (subject, hits)
    return hits[0]


def set_maildir_flags(path: Path, flags: str) -> None:
    """What a Maildir reader does to mark a message: move it to cur/ with ':2,<flags>'."""
    base = path.name.split(":2,", 1)[0]
    path.rename(path.parent.parent / "cur" / f"{base}:2,{flags}")


@needs("mbsync")
def test_mbsync_two_way_sync_is_stable(server, hatoba_home, tmp_path):
    deliver(server, hatoba_home, ["sync 0", "sync 1", "sync 2"])
    rc = mbsync_config(tmp_path, server, hatoba_home)
    local = tmp_path / "Mail"

    # 1: down. The three messages and the special-use folders appear locally.
    mbsync(tmp_path, rc)
    msgs = local_messages(local / "INBOX")
    assert len(msgs) == 3, msgs
    assert all(b"Delivered-To: bob@example.test" in body for _, body in msgs.values())
    for folder in ("Archive", "Drafts", "Junk", "Sent", "Trash"):
        assert (local / folder / "cur").is_dir(), folder

    # 2: up. Seen on one, trashed ("T") on another, plus one new message on the server side.
    set_maildir_flags(find_local(local, "sync 0"), "S")
    set_maildir_flags(find_local(local, "sync 1"), "T")
    deliver(server, hatoba_home, ["sync 3"])
    debug = mbsync(tmp_path, rc)
    assert "UID STORE" in imap_commands(debug), debug[-4000:]
    state = server_inbox(server, hatoba_home)
    assert set(state) == {"sync 0", "sync 2", "sync 3"}, state
    assert b"\\Seen" in state["sync 0"]
    assert b"\\Seen" not in state["sync 2"] and b"\\Seen" not in state["sync 3"]
    msgs = local_messages(local / "INBOX")
    subjects = sorted(subject_of(body) for _, body in msgs.values())
    assert subjects == ["sync 0", "sync 2", "sync 3"]

    # 3: an identical run changes nothing on either side.
    local_before = local_messages(local)
    server_before = sorted(p.name for p in hatoba_home.maildir(BOB[0]).rglob("*") if p.parent.name in ("cur", "new"))
    debug = mbsync(tmp_path, rc)
    sent = imap_commands(debug)
    assert set(c.split()[-1] for c in sent) <= MBSYNC_READONLY_COMMANDS, sent
    assert local_messages(local) == local_before
    server_after = sorted(p.name for p in hatoba_home.maildir(BOB[0]).rglob("*") if p.parent.name in ("cur", "new"))
    assert server_after == server_before
    assert server_inbox(server, hatoba_home) == state


# -- imapclient -------------------------------------------------------------------------------


def imapclient_login(server, home) -> IMAPClient:
    ctx = ssl.create_default_context(cafile=str(home.ca_file))
    c = IMAPClient("127.0.0.1", port=server.port("imaps"), ssl=True, ssl_context=ctx, timeout=10)
    c.login(*BOB)
    return c


def test_imapclient_read_flag_move_idle_status(server, hatoba_home):
    deliver(server, hatoba_home, ["client 0", "client 1"])
    c = imapclient_login(server, hatoba_home)
    try:
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 2 and info[b"UIDNEXT"] > 2 and info[b"UIDVALIDITY"] > 0
        uids = c.search(["ALL"])
        assert len(uids) == 2
        assert c.search(["SUBJECT", "client 1"]) == [uids[1]]
        assert c.search(["UNSEEN"]) == uids

        data = c.fetch(uids, [b"BODY[]", b"FLAGS", b"BODYSTRUCTURE", b"ENVELOPE"])
        first = data[uids[0]]
        assert first[b"BODY[]"].startswith(b"Return-Path: <someone@elsewhere.example>\r\n")
        assert first[b"BODY[]"].endswith(b"body of client 0\r\n")
        assert b"\\Seen" in first[b"FLAGS"]  # BODY[] (not PEEK) sets \Seen
        bs = first[b"BODYSTRUCTURE"]
        assert (bs[0].lower(), bs[1].lower()) == (b"text", b"plain")
        env = first[b"ENVELOPE"]
        assert env.subject == b"client 0" and env.message_id == b"<client-0@elsewhere.example>"
        assert env.date is not None and (env.date.year, env.date.month, env.date.day) == (2026, 3, 2)
        assert (env.from_[0].mailbox, env.from_[0].host, env.from_[0].name) == (b"someone", b"elsewhere.example", b"Someone")
        assert (env.to[0].mailbox, env.to[0].host) == (b"bob", b"example.test")

        c.remove_flags(uids[1], [b"\\Seen"])
        flags = c.add_flags(uids[1], [b"\\Flagged"])
        assert set(flags[uids[1]]) == {b"\\Flagged", b"\\Recent"}  # recent: this session selected INBOX first
        assert c.search(["FLAGGED"]) == [uids[1]]

        c.move([uids[1]], "Archive")
        assert c.search(["ALL"]) == [uids[0]]
        archive = c.folder_status("Archive", [b"MESSAGES", b"UNSEEN", b"UIDNEXT"])
        assert archive[b"MESSAGES"] == 1 and archive[b"UNSEEN"] == 1 and archive[b"UIDNEXT"] == 2
        inbox = c.folder_status("INBOX", [b"MESSAGES", b"UNSEEN"])
        assert inbox[b"MESSAGES"] == 1 and inbox[b"UNSEEN"] == 0

        uses = {name: set(flags) for flags, _, name in c.list_folders()}
        for name, use in (("Archive", b"\\Archive"), ("Drafts", b"\\Drafts"), ("Junk", b"\\Junk"),
                          ("Sent", b"\\Sent"), ("Trash", b"\\Trash")):
            assert use in uses.get(name, set()), uses
        assert "INBOX" in uses
        assert c.find_special_folder(b"\\Archive") == "Archive"

        c.idle()
        started = time.monotonic()
        pusher = threading.Thread(target=deliver, args=(server, hatoba_home, ["pushed"]))
        pusher.start()
        responses = []
        while time.monotonic() - started < 3.0 and not any(r[1:] == (b"EXISTS",) for r in responses):
            responses += c.idle_check(timeout=max(0.1, 3.0 - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        c.idle_done()
        pusher.join(10)
        assert (2, b"EXISTS") in responses, responses
        assert elapsed < 3.0
        assert c.search(["SUBJECT", "pushed"]) != []
    finally:
        c.logout()


def test_imapclient_list_after_select_has_each_folder_once(server, hatoba_home):
    c = imapclient_login(server, hatoba_home)
    try:
        c.create_folder("Projects")
        c.select_folder("INBOX")
        names = [name for _, _, name in c.list_folders()]
        assert sorted(names) == sorted(set(names)), names
        # Every folder bob has, the special-use ones hatoba makes and the one he made.
        assert set(names) == {"INBOX", *(name for name, _ in DEFAULT_FOLDERS), "Projects"}, names
    finally:
        c.logout()


# -- curl -------------------------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "--silent", "--show-error", "--max-time", "20", *args],
                          capture_output=True, text=True, timeout=30)


def inbox_uids(server, home) -> list[int]:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    try:
        m.login(*BOB)
        m.select("INBOX", readonly=True)
        return [int(u) for u in m.uid("SEARCH", None, "ALL")[1][0].split()]
    finally:
        m.logout()


@needs("curl")
def test_curl_imaps_fetches_by_uid_and_lists(server, hatoba_home):
    deliver(server, hatoba_home, ["curl 0", "curl 1"])
    uids = inbox_uids(server, hatoba_home)
    base = f"imaps://127.0.0.1:{server.port('imaps')}/"
    r = curl("--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB), f"{base}INBOX;UID={uids[1]}")
    assert r.returncode == 0, r.stderr
    assert "Subject: curl 1" in r.stdout and "body of curl 1" in r.stdout and "curl 0" not in r.stdout
    r = curl("--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB), base)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\* LIST \(.*\\Sent.*\) \".\" \"?Sent", r.stdout, re.M), r.stdout
    r = curl("--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB), "-X", "UID SEARCH SUBJECT \"curl 0\"",
             f"{base}INBOX")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["*", "SEARCH", str(uids[0])]


@needs("curl")
def test_curl_imap_with_ssl_reqd_upgrades_with_starttls(server, hatoba_home):
    deliver(server, hatoba_home, ["starttls"])
    uid = inbox_uids(server, hatoba_home)[0]
    r = curl("--ssl-reqd", "--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB),
             f"imap://127.0.0.1:{server.port('imap')}/INBOX;UID={uid}")
    assert r.returncode == 0, r.stderr
    assert "Subject: starttls" in r.stdout


@needs("curl")
def test_curl_imap_without_tls_cannot_log_in(server, hatoba_home):
    deliver(server, hatoba_home, ["plaintext"])
    r = curl("--user", ":".join(BOB), f"imap://127.0.0.1:{server.port('imap')}/INBOX;UID=1")
    assert r.returncode == 67, (r.returncode, r.stderr)  # CURLE_LOGIN_DENIED: LOGINDISABLED, no AUTH=
    assert "Subject" not in r.stdout
    # That is curl's own choice; what the server refuses is in loopback/test_plaintext_wire.py.


# -- mutt -------------------------------------------------------------------------------------


def muttrc(tmp_path: Path, home, folder_url: str) -> Path:
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user = "{BOB[0]}"\n'
        f'set imap_pass = "{BOB[1]}"\n'
        f'set ssl_ca_certificates_file = "{home.ca_file}"\n'
        f'set certificate_file = "{tmp_path}/mutt-certificates"\n'
        "set ssl_force_tls = yes\n"
        "set ssl_starttls = yes\n"
        "set ssl_use_tlsv1 = no\n"
        "set ssl_use_tlsv1_1 = no\n"
        "set imap_passive = yes\n"
        "set confirmcreate = no\n"
        "set confirmappend = no\n"
        "set quit = yes\n"
        "set delete = yes\n"
        "set move = no\n"
        "set sleep_time = 0\n"
        f'set folder = "{folder_url}"\n'
        'set spoolfile = "+INBOX"\n'
        'set record = ""\n'
        'set header_cache = ""\n'
        'set message_cachedir = ""\n'
    )
    rc.chmod(0o600)
    return rc


def run_mutt(tmp_path: Path, rc: Path, keys: str) -> str:
    """mutt needs a terminal for its index; script(1) gives it one. `keys` are pushed at start."""
    command = f"mutt -n -F {rc} -f +INBOX -e 'push \"{keys}\"'"
    r = subprocess.run(["timeout", "60", "script", "-qec", command, "/dev/null"],
                       capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
                       env={"HOME": str(tmp_path), "TERM": "vt100", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r.stdout


@needs("mutt")
@needs("script", why="util-linux, gives mutt a terminal")
@pytest.mark.parametrize("scheme", ["imaps", "imap"])
def test_mutt_copies_out_and_deletes(server, hatoba_home, tmp_path, scheme):
    deliver(server, hatoba_home, ["mutt 0", "mutt 1", "mutt 2"])
    port = server.port(scheme)
    rc = muttrc(tmp_path, hatoba_home, f"{scheme}://localhost:{port}/")  # imap:// goes through STARTTLS
    out = tmp_path / "copied.mbox"
    screen = run_mutt(tmp_path, rc, f"<tag-pattern>~A<enter><tag-prefix><copy-message>{out}<enter>"
                                    "<delete-pattern>~s \\\"mutt 1\\\"<enter><quit>")
    text = out.read_text() if out.exists() else ""
    assert len(re.findall(r"^From ", text, re.M)) == 3, screen[-2000:]  # mbox separators
    assert all(f"Subject: mutt {i}\n" in text for i in range(3))
    assert "body of mutt 2" in text
    assert set(server_inbox(server, hatoba_home)) == {"mutt 0", "mutt 2"}
