"""Acceptance: `hatoba import dovecot` takes users and mail from a real Dovecot 2.3
(Debian's, started by the test on loopback) so that nobody notices the move.

The users' mail is made by Dovecot itself: delivered with `doveadm save`, then
folders (non-ASCII names too), copies, appends, flags, keywords, expunges
(gaps in the UIDs) and subscriptions made over IMAP. What IMAP and POP3 clients
see is recorded with imaplib and poplib; Dovecot is stopped; the import runs;
hatoba is started and the same clients must see the same: UIDVALIDITY,
UIDNEXT, UIDs, flags with keywords, sizes, INTERNALDATE, the message bytes,
subscriptions and POP3 UIDLs (Dovecot's default format, %08Xu%08Xv), with every
user logging in with the old password, which becomes an Argon2id hash then.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import imaplib
import poplib
import re
import sqlite3
import ssl
import time
from pathlib import Path

import pytest
from support.dovecot_peer import INSTALL_HINT, DovecotPeer
from support.harness import ServerThread, make_home
from support.peers import needs

from hatoba.store.folder_tree import DEFAULT_FOLDERS

pytestmark = [needs("dovecot", why=INSTALL_HINT), needs("doveadm", why=INSTALL_HINT)]

# One user per password scheme; example.test exists in the hatoba home, example.net is
# made by the import. Passwords of 9+ characters, one with a non-ASCII letter.
USERS = {
    "dora@example.test": ("SHA512-CRYPT", "dora-Passwort-1"),
    "emil@example.test": ("SSHA256", "emil-secret-22"),
    "fumi@example.net": ("PLAIN-MD5", "fumi-pässwort-3"),
    "gus@example.net": ("BLF-CRYPT", "gus-password-44"),
    "hana@example.net": ("MD5-CRYPT", "hana-password-55"),
}
# Maildir++ (Dovecot's default for maildir) separates levels with ".".
FOLDERS = ["Büro", "仕事", "仕事.報告", "Sent", "Alt"]
SUBSCRIBED = ["INBOX", "Büro", "仕事.報告", "Sent"]  # "仕事" and "Alt" are not
# What hatoba subscribes on its own at a login (folder_tree.ensure_defaults).
HATOBA_SUBSCRIBES = {"INBOX", *(name for name, _ in DEFAULT_FOLDERS)}


# -- the IMAP side, the same for both servers --------------------------------------

def mutf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 §5.1.3), written out here so
    the test does not use hatoba's own encoder."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            encoded = base64.b64encode("".join(run).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def q(name: str) -> str:
    """A mailbox argument for imaplib (which sends its arguments as they are)."""
    return '"' + mutf7(name) + '"'


def unmutf7(wire: str) -> str:
    def decode(m: re.Match[str]) -> str:
        if not m.group(1):
            return "&"
        b64 = m.group(1).replace(",", "/")
        return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")

    return re.sub(r"&([^-]*)-", decode, wire)


def ok(reply: tuple[str, list]) -> list:
    typ, data = reply
    assert typ == "OK", (typ, data)
    return data


def imap_login(port: int, address: str, password: str, ctx: ssl.SSLContext | None = None) -> imaplib.IMAP4:
    """AUTHENTICATE PLAIN: imaplib's LOGIN would send the password as ASCII only."""
    m = (imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=10) if ctx
         else imaplib.IMAP4("127.0.0.1", port, timeout=10))
    try:
        ok(m.authenticate("PLAIN", lambda _: f"\0{address}\0{password}".encode()))
    except BaseException:
        m.shutdown()
        raise
    return m


def imap_refuses(port: int, address: str, password: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        imap_login(port, address, password, ctx).logout()
    except imaplib.IMAP4.error:
        return True
    return False


def pop3_login(port: int, address: str, password: str, ctx: ssl.SSLContext | None = None) -> poplib.POP3:
    p = (poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=10) if ctx
         else poplib.POP3("127.0.0.1", port, timeout=10))
    try:
        p.user(address)
        p.pass_(password)  # poplib sends UTF-8
    except BaseException:
        p.close()
        raise
    return p


def pop3_uidls(port: int, address: str, password: str,
               ctx: ssl.SSLContext | None = None) -> list[tuple[int, bytes, int]]:
    """(number, UIDL, size) of every message, as POP3 lists them; the session ends without deleting."""
    p = pop3_login(port, address, password, ctx)
    try:
        uidls = [line.split() for line in p.uidl()[1]]
        sizes = {int(n): int(size) for n, size in (line.split() for line in p.list()[1])}
        return [(int(n), uidl, sizes[int(n)]) for n, uidl in uidls]
    finally:
        p.quit()


@dataclasses.dataclass(frozen=True)
class Message:
    flags: frozenset[str]
    size: int
    internaldate: float
    sha256: str


@dataclasses.dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int
    messages: dict[int, Message]  # UID -> message


def list_names(m: imaplib.IMAP4, command: str = "LIST") -> dict[str, set[str]]:
    """Folder name -> LIST attributes (lower-cased), for LIST or LSUB "" "*"."""
    data = ok(m.list('""', "*") if command == "LIST" else m.lsub('""', "*"))
    names = {}
    for line in data:
        if line is None:
            continue
        if isinstance(line, tuple):  # a name sent as a literal
            line = line[0].rsplit(b"{", 1)[0] + b'"' + line[1] + b'"'
        match = re.match(rb'\(([^)]*)\) (?:"(?:\\.|[^"])"|NIL) (.+)$', line)
        assert match, line
        wire = match.group(2).decode()
        names[unmutf7(wire[1:-1] if wire.startswith('"') else wire)] = set(match.group(1).decode().lower().split())
    return names


def fetch_all(m: imaplib.IMAP4) -> dict[int, Message]:
    """Every message of the selected folder: UID, FLAGS (without \\Recent), size, date, bytes."""
    data = ok(m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])"))
    found: dict[int, Message] = {}
    parts: list[tuple[bytes, bytes]] = []  # (the response's text without the literal, the literal)
    for item in data:
        if isinstance(item, tuple):
            parts.append((item[0], item[1]))
        elif item and parts and item != b")":
            parts[-1] = (parts[-1][0] + item, parts[-1][1])
    for text, body in parts:
        uid = int(re.search(rb"\bUID (\d+)", text).group(1))
        flags = frozenset(re.search(rb"\bFLAGS \(([^)]*)\)", text).group(1).decode().split()) - {"\\Recent"}
        size = int(re.search(rb"\bRFC822\.SIZE (\d+)", text).group(1))
        date = re.search(rb'\bINTERNALDATE ("[^"]+")', text).group(1)
        found[uid] = Message(flags, size, time.mktime(imaplib.Internaldate2tuple(b"INTERNALDATE " + date)),
                             hashlib.sha256(body).hexdigest())
        assert size == len(body), (uid, size, len(body))
    return found


def record(m: imaplib.IMAP4) -> tuple[dict[str, FolderState], set[str]]:
    """What a client sees of every selectable folder (read-only: EXAMINE), and the subscriptions."""
    folders = {}
    for name, attrs in list_names(m).items():
        if "\\noselect" in attrs or "\\nonexistent" in attrs:
            continue
        status = ok(m.status(q(name), "(UIDVALIDITY UIDNEXT MESSAGES)"))[0]
        numbers = {k.decode(): int(v) for k, v in re.findall(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", status)}
        ok(m.select(q(name), readonly=True))
        messages = fetch_all(m) if numbers["MESSAGES"] else {}
        assert len(messages) == numbers["MESSAGES"], (name, numbers, sorted(messages))
        folders[name] = FolderState(numbers["UIDVALIDITY"], numbers["UIDNEXT"], messages)
        ok(m.close())
    return folders, set(list_names(m, "LSUB"))


# -- making the old mail in Dovecot ----------------------------------------------------

def message(address: str, n: int, extra: str = "") -> bytes:
    """A message as an MDA gets it (LF line ends); sizes differ from message to message."""
    body = "".join(f"Line {k} of message {n} for {address}.\n" for k in range(1 + 7 * n)) + extra
    return (f"From: Sender {n} <sender{n}@elsewhere.example>\nTo: {address}\n"
            f"Subject: old mail {n}\nMessage-ID: <old-{n}-{address}>\n"
            f"Date: Mon, 2 Mar 2026 10:{n:02d}:00 +0000\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}").encode()


def make_old_mail(dv: DovecotPeer, index: int, address: str, password: str) -> None:
    """Dovecot's own work: deliveries, then a mail program's session; users differ a little."""
    count = 5 + index
    for n in range(1, count + 1):
        dv.deliver(address, message(address, n, "Grüße aus dem Büro — 仕事\n" if n == 2 else ""))
    m = imap_login(dv.imap_port, address, password)
    try:
        for name in FOLDERS:
            ok(m.create(q(name)))
        for name in SUBSCRIBED:
            ok(m.subscribe(q(name)))
        ok(m.select("INBOX"))
        # UIDs 1..count; flags and keywords, one \Deleted left unexpunged.
        ok(m.uid("STORE", "1", "+FLAGS", r"(\Seen)"))
        ok(m.uid("STORE", "2", "+FLAGS", r"(\Seen \Flagged $Forwarded)"))
        ok(m.uid("STORE", "3", "+FLAGS", r"(\Answered $label1 Projekt)"))
        ok(m.uid("STORE", "4", "+FLAGS", r"(\Deleted)"))
        ok(m.uid("COPY", "1:3", q("Büro")))
        # A gap inside INBOX: UID 5 goes.
        ok(m.uid("STORE", "5", "+FLAGS", r"(\Deleted)"))
        ok(m.uid("EXPUNGE", "5"))
        ok(m.unselect())  # CLOSE would expunge UID 4
        # In Büro, the copy of UID 2 goes (a gap in the middle).
        ok(m.select(q("Büro")))
        ok(m.uid("STORE", "2", "+FLAGS", r"(\Deleted)"))
        ok(m.uid("EXPUNGE", "2"))
        ok(m.close())
        when = imaplib.Time2Internaldate(time.mktime((2024, 5, 6, 7, 8, 9, 0, 0, -1)))
        for n, flags in ((20, r"(\Seen Projekt)"), (21, r"(\Flagged $label1)"), (22, "()")):
            ok(m.append(q("仕事.報告"), flags, when, message(address, n).replace(b"\n", b"\r\n")))
        # The last append goes: UIDNEXT stays above the highest UID.
        ok(m.select(q("仕事.報告")))
        ok(m.uid("STORE", "3", "+FLAGS", r"(\Deleted)"))
        ok(m.expunge())
        ok(m.close())
        ok(m.append(q("Sent"), r"(\Seen)", when, message(address, 30).replace(b"\n", b"\r\n")))
    finally:
        m.logout()
    # Mail that came after the mail program's session: Dovecot gives it UIDs and leaves
    # the files in new/ (an EXAMINE or STATUS does not move them; POP3's QUIT will).
    for n in range(count + 1, count + 3):
        dv.deliver(address, message(address, n))


def late_mail(dv: DovecotPeer, address: str, folders: dict[str, FolderState],
              uidls: list[tuple[int, bytes, int]]) -> None:
    """One more delivery after the recording: Dovecot gives it the next UID, and its file
    stays in new/ (POP3's QUIT moved the earlier ones to cur/). What IMAP and POP3 will
    show of it is added to the record; Dovecot's STATUS confirms the UID."""
    inbox = folders["INBOX"]
    data = message(address, 99)
    dv.deliver(address, data)
    status = dv.doveadm("mailbox", "status", "-u", address, "uidnext messages", "INBOX")
    fields = dict(item.split("=") for item in status.split() if "=" in item)  # "INBOX messages=7 uidnext=9"
    assert fields == {"uidnext": str(inbox.uidnext + 1), "messages": str(len(inbox.messages) + 1)}, status
    local, domain = address.split("@")
    new = list((dv.mail_root / domain / local / "Maildir" / "new").iterdir())
    assert len(new) == 1, new
    wire = data.replace(b"\n", b"\r\n")
    inbox.messages[inbox.uidnext] = Message(frozenset(), len(wire), float(int(new[0].stat().st_mtime)),
                                            hashlib.sha256(wire).hexdigest())
    uidls.append((len(uidls) + 1, f"{inbox.uidnext:08x}{inbox.uidvalidity:08x}".encode(), len(wire)))
    folders["INBOX"] = dataclasses.replace(inbox, uidnext=inbox.uidnext + 1)


def differences(address: str, old: tuple[dict[str, FolderState], set[str]],
                new: tuple[dict[str, FolderState], set[str]]) -> list[str]:
    """What a client of `address` would notice, one line each."""
    (old_folders, old_subscribed), (folders, subscribed) = old, new
    out = []
    for name, was in old_folders.items():
        now = folders.get(name)
        if now is None:
            out.append(f"{address} {name}: missing")
            continue
        for what in ("uidvalidity", "uidnext"):
            if getattr(now, what) != getattr(was, what):
                out.append(f"{address} {name}: {what.upper()} {getattr(was, what)} -> {getattr(now, what)}")
        if sorted(now.messages) != sorted(was.messages):
            out.append(f"{address} {name}: UIDs {sorted(was.messages)} -> {sorted(now.messages)}")
        for uid in sorted(set(was.messages) & set(now.messages)):
            if now.messages[uid] != was.messages[uid]:
                out.append(f"{address} {name} UID {uid}: {was.messages[uid]} -> {now.messages[uid]}")
    # hatoba adds its special-use folders, empty, where they are missing; nothing else.
    added = set(folders) - set(old_folders)
    if not added <= HATOBA_SUBSCRIBES or any(folders[name].messages for name in added):
        out.append(f"{address}: folders Dovecot had not: {sorted(added)}")
    if old_subscribed - subscribed:
        out.append(f"{address}: no longer subscribed: {sorted(old_subscribed - subscribed)}")
    if subscribed - old_subscribed - HATOBA_SUBSCRIBES:  # "仕事" and "Alt" above all
        out.append(f"{address}: newly subscribed: {sorted(subscribed - old_subscribed - HATOBA_SUBSCRIBES)}")
    return out


def stored_hashes(home) -> dict[str, str]:
    """address -> password_hash, from hatoba's directory (read-only)."""
    db = sqlite3.connect(f"file:{home.config().paths.directory_db}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT address_key, password_hash FROM users"))
    finally:
        db.close()


# -- the test ------------------------------------------------------------------------

def test_dovecot_users_and_mail_move_to_hatoba_unchanged(tmp_path: Path):
    # 1. The old server, its mail made and everything recorded.
    before: dict[str, tuple[dict[str, FolderState], set[str]]] = {}
    uidls: dict[str, list[tuple[int, bytes, int]]] = {}
    with DovecotPeer(tmp_path / "dovecot", USERS) as dv:
        for index, (address, (_, password)) in enumerate(USERS.items()):
            make_old_mail(dv, index, address, password)
        for address, (_, password) in USERS.items():
            m = imap_login(dv.imap_port, address, password)
            try:
                before[address] = record(m)
            finally:
                m.logout()
            uidls[address] = pop3_uidls(dv.pop3_port, address, password)
            late_mail(dv, address, before[address][0], uidls[address])
        passwd_file, mail_root = dv.passwd_file, dv.mail_root
    # The recording is what the scenario made (so a broken recorder cannot pass).
    for index, address in enumerate(USERS):
        folders, subscribed = before[address]
        count = 5 + index
        assert set(folders) == {"INBOX", *FOLDERS}, folders.keys()
        inbox = folders["INBOX"]
        assert sorted(inbox.messages) == [u for u in range(1, count + 4) if u != 5]
        assert inbox.uidnext == count + 4
        assert inbox.messages[2].flags == {"\\Seen", "\\Flagged", "$Forwarded"}
        assert inbox.messages[3].flags == {"\\Answered", "$label1", "Projekt"}
        assert inbox.messages[4].flags == {"\\Deleted"}
        assert sorted(folders["Büro"].messages) == [1, 3] and folders["Büro"].uidnext == 4
        assert sorted(folders["仕事.報告"].messages) == [1, 2] and folders["仕事.報告"].uidnext == 4
        assert folders["仕事.報告"].messages[1].flags == {"\\Seen", "Projekt"}
        assert len({f.uidvalidity for f in folders.values()}) == len(folders)
        assert subscribed == set(SUBSCRIBED)
        assert [n for n, _, _ in uidls[address]] == list(range(1, len(inbox.messages) + 1))
        # %08Xu%08Xv, and Dovecot 2.3's %X writes lower-case hex digits.
        assert [uidl for _, uidl, _ in uidls[address]] == [
            f"{uid:08x}{inbox.uidvalidity:08x}".encode() for uid in sorted(inbox.messages)]

    # 2. The import into a hatoba home that already has example.test (and other users).
    home = make_home(tmp_path / "hatoba")
    r = home.cli("import", "dovecot", "--passwd-file", str(passwd_file), "--mail-root", str(mail_root))
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    # The import cannot know the passwords: the old hashes stay until each user's first login.
    hashes = stored_hashes(home)
    assert not [a for a in USERS if hashes.get(a, "$argon2id$").startswith("$argon2id$")], hashes

    # 3. hatoba serves the same mail under the same names and numbers, to the old passwords.
    # Every difference is listed, not only the first.
    ctx = home.client_context()
    problems: list[str] = []
    with ServerThread(home) as server:
        imaps, pop3s = server.port("imaps"), server.port("pop3s")
        for address, (scheme, password) in USERS.items():
            try:
                m = imap_login(imaps, address, password, ctx)
            except imaplib.IMAP4.error as exc:
                problems.append(f"{address}: IMAP login with the old {scheme} password refused: {exc}")
                continue
            try:
                problems += differences(address, before[address], record(m))
            finally:
                m.logout()
            # POP3: the same numbers, UIDLs and sizes, so clients that leave mail on
            # the server fetch nothing twice.
            try:
                now = pop3_uidls(pop3s, address, password, ctx)
            except poplib.error_proto as exc:
                problems.append(f"{address}: POP3 login with the old {scheme} password refused: {exc}")
                continue
            was = uidls[address]
            if {u: size for _, u, size in now} != {u: size for _, u, size in was}:
                problems.append(f"{address}: POP3 (number, UIDL, size) {was} -> {now}")
            elif now != was:  # Dovecot numbers in UID order
                problems.append(f"{address}: POP3 numbers in another order: UIDLs {[u for _, u, _ in was]} -> "
                                f"{[u for _, u, _ in now]}")
        assert not problems, "\n".join(problems)

        # 4. The old hashes became Argon2id at those logins; the password still works, others do not.
        hashes = stored_hashes(home)
        for address, (scheme, password) in USERS.items():
            assert hashes[address].startswith("$argon2id$"), (address, scheme, hashes[address][:20])
            imap_login(imaps, address, password, ctx).logout()
            pop3_login(pop3s, address, password, ctx).quit()
            assert imap_refuses(imaps, address, password + "x", ctx), address
            with pytest.raises(poplib.error_proto):
                pop3_login(pop3s, address, password[:-1], ctx)


def test_pop3_uidls_dovecot_saved_are_kept(tmp_path: Path):
    """pop3_save_uidl = yes keeps each UIDL once shown in dovecot-uidlist ("P" + UIDL); a
    site that came from Courier has them as "UID<uid>-<uidvalidity>". The import keeps them."""
    address, (scheme, password) = "ida@example.net", ("SHA512-CRYPT", "ida-password-66")
    config = "pop3_save_uidl = yes\npop3_uidl_format = UID%u-%v\n"
    with DovecotPeer(tmp_path / "dovecot", {address: (scheme, password)}, extra_config=config) as dv:
        for n in range(1, 4):
            dv.deliver(address, message(address, n))
        uidls = pop3_uidls(dv.pop3_port, address, password)
        passwd_file, mail_root = dv.passwd_file, dv.mail_root
    assert [uidl for _, uidl, _ in uidls] == [f"UID{n}-".encode() + uidls[0][1].split(b"-")[1] for n in (1, 2, 3)]
    uidlist = (mail_root / "example.net" / "ida" / "Maildir" / "dovecot-uidlist").read_bytes()
    assert all(b" P" + uidl + b" " in uidlist for _, uidl, _ in uidls), uidlist  # saved, as asked

    home = make_home(tmp_path / "hatoba")
    r = home.cli("import", "dovecot", "--passwd-file", str(passwd_file), "--mail-root", str(mail_root))
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    with ServerThread(home) as server:
        assert pop3_uidls(server.port("pop3s"), address, password, home.client_context()) == uidls
