"""\\Recent, SELECT's answer and FLAGS news, as IMAP4rev1 clients see them.

RFC 3501 §2.3.2: a message is recent in exactly one session, the first that
SELECTs the mailbox after it arrived (EXAMINE, APPEND and COPY claim
nothing); one arriving while a session has the mailbox selected is recent
there. RFC 9051 §7.3.5 / RFC 3501 §7.2.6: a client learns a keyword from
FLAGS before a FETCH shows it.
"""

from __future__ import annotations

import re

from test_imap_commands import Imap, conn, message, status_values  # noqa: F401  (conn: a fixture)


def flags_of(line: bytes) -> set[bytes]:
    return set(re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split())


def flags_response(lines: list[bytes]) -> set[bytes] | None:
    """The flags the last untagged FLAGS response named, or None."""
    found = [line for line in lines if line.startswith(b"* FLAGS ")]
    return set(found[-1][len(b"* FLAGS (") : -1].split()) if found else None


def test_every_appended_message_is_recent_to_the_first_select(conn):
    c = conn()
    c.ok("CREATE Box")
    for i in range(3):
        assert c.append("Box", message(f"m{i}"))[0].startswith("OK")
    lines = c.ok("EXAMINE Box")  # shows them \Recent, claims none
    assert b"* 3 RECENT" in lines, lines
    c.ok("CLOSE")
    assert status_values(c.ok("STATUS Box (RECENT)")[0]) == {"RECENT": 3}
    lines = c.ok("SELECT Box")
    assert b"* 3 RECENT" in lines, lines
    assert all(b"\\Recent" in flags_of(line) for line in c.ok("FETCH 1:* (FLAGS)"))
    assert c.ok("SEARCH RECENT") == [b"* SEARCH 1 2 3"]
    assert c.ok("SEARCH NEW") == [b"* SEARCH 1 2 3"]
    c.ok("CLOSE")
    assert status_values(c.ok("STATUS Box (RECENT)")[0]) == {"RECENT": 0}  # claimed by that SELECT


def test_select_and_examine_name_the_first_unseen_message(conn):
    c = conn()
    c.ok("CREATE Box")
    c.append("Box", message("read"), "(\\Seen)")
    c.append("Box", message("unread"))
    for command in ("EXAMINE Box", "SELECT Box"):
        assert b"* OK [UNSEEN 2] First unseen message" in c.ok(command)
    c.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    assert not [line for line in c.ok("SELECT Box") if b"[UNSEEN" in line]


def test_a_copy_by_another_session_is_recent_where_the_mailbox_is_selected(conn):
    one, two = conn(), conn()
    one.ok("CREATE Box")
    one.ok("CREATE Other")
    one.append("Box", message("a"), "(\\Seen)")
    one.append("Box", message("b"))
    one.ok("SELECT Box")
    two.ok("SELECT Other")
    one.ok("COPY 1:2 Other")
    lines = two.ok("NOOP")
    assert b"* 2 EXISTS" in lines and b"* 2 RECENT" in lines, lines
    fetched = two.ok("FETCH 1:2 (FLAGS)")
    assert flags_of(fetched[0]) == {b"\\Recent", b"\\Seen"} and flags_of(fetched[1]) == {b"\\Recent"}, fetched


def test_the_fetch_answering_a_store_keeps_recent(conn):
    c = conn()
    c.ok("CREATE Box")
    c.append("Box", message("a"))
    c.ok("SELECT Box")
    lines = c.ok("STORE 1 +FLAGS (\\Flagged)")
    assert flags_of(lines[-1]) == {b"\\Recent", b"\\Flagged"}, lines


def test_a_new_keyword_is_in_flags_before_a_fetch_shows_it(conn):
    one, two = conn(), conn()
    one.ok("CREATE Box")
    one.append("Box", message("a"))
    one.ok("SELECT Box")
    two.ok("SELECT Box")
    lines = one.ok("STORE 1 +FLAGS ($Hello)")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"* 1 FETCH"))
    assert b"$Hello" in (flags_response(lines[:at]) or set()), lines
    assert any(b"[PERMANENTFLAGS (" in line and b"$Hello" in line for line in lines[:at]), lines
    # The other session, told of the change, hears of the keyword first too.
    lines = two.ok("NOOP")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"* 1 FETCH"))
    assert b"$Hello" in (flags_response(lines[:at]) or set()), lines
    assert flags_response(one.ok("STORE 1 +FLAGS ($Hello)")) is None  # named once, not at each change


def test_a_copy_bringing_a_keyword_names_it_in_flags(conn):
    one, two = conn(), conn()
    one.ok("CREATE Box")
    one.ok("CREATE Other")
    one.append("Box", message("a"), "($Kw1)")
    one.ok("SELECT Box")
    two.ok("SELECT Other")
    one.ok("COPY 1 Other")
    lines = two.ok("NOOP")
    assert b"$Kw1" in (flags_response(lines) or set()), lines


def test_nil_is_a_keyword_in_a_flag_list(conn):
    c = conn()
    c.ok("CREATE Box")
    c.append("Box", message("a"))
    c.ok("SELECT Box")
    c.ok("STORE 1 +FLAGS NIL")
    assert b"NIL" in flags_of(c.ok("FETCH 1 (FLAGS)")[0])


def test_a_name_that_is_not_modified_utf7_is_refused_not_a_syntax_error(conn):
    c = conn()
    status, _ = c.cmd("SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}")
    assert status.startswith("NO "), status
    assert c.ok("LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*") == []
