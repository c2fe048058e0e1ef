"""Keyword letters: a folder has 26 (one Maildir info letter each, Dovecot's format).

A STORE refused for too many keywords takes none of them; letters that no
message carries any more are given to new keywords.
"""

from __future__ import annotations

import re

from test_imap_commands import Imap, message

from hatoba.store.uidlist import MAX_KEYWORDS


def permanent_flags(imap: Imap) -> set[str]:
    for line in imap.ok("SELECT INBOX"):
        found = re.search(rb"\[PERMANENTFLAGS \(([^)]*)\)\]", line)
        if found:
            return set(found.group(1).decode().split())
    raise AssertionError("no PERMANENTFLAGS in the SELECT answer")


def keywords(count: int, prefix: str = "k") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def test_a_store_refused_for_too_many_keywords_takes_no_letter(server, hatoba_home):
    imap = Imap(server, hatoba_home)
    try:
        imap.append("INBOX", message("one"))
        imap.ok("SELECT INBOX")
        status, lines = imap.cmd(f"UID STORE 1 +FLAGS ({keywords(MAX_KEYWORDS + 1)})")
        assert status.startswith("NO [LIMIT]"), status
        assert lines == []  # no message changed
        imap.ok("UID STORE 1 +FLAGS ($Forwarded)")
        imap.ok("UID STORE 1 +FLAGS ($Junk Work)")
        flags = permanent_flags(imap)
        assert {"$Forwarded", "$Junk", "Work"} <= flags
        assert not {f for f in flags if re.fullmatch(r"k\d+", f)}
    finally:
        imap.close()


def test_letters_no_message_uses_go_to_new_keywords(server, hatoba_home):
    imap = Imap(server, hatoba_home)
    try:
        imap.append("INBOX", message("one"))
        imap.append("INBOX", message("two"))
        imap.ok("SELECT INBOX")
        imap.ok(f"UID STORE 1 +FLAGS ({keywords(MAX_KEYWORDS - 1)})")
        imap.ok("UID STORE 2 +FLAGS (Kept)")
        imap.ok(f"UID STORE 1 -FLAGS ({keywords(MAX_KEYWORDS - 1)})")  # every letter but Kept's unused
        lines = imap.ok("UID STORE 1 +FLAGS ($Forwarded $Junk)")
        assert b"$Forwarded" in lines[0] and b"$Junk" in lines[0]
        flags = permanent_flags(imap)
        assert {"$Forwarded", "$Junk", "Kept"} <= flags
        # Message 2 kept its keyword: its letter was not given away.
        assert b"FLAGS (Kept)" in imap.ok("UID FETCH 2 (FLAGS)")[0]
    finally:
        imap.close()
