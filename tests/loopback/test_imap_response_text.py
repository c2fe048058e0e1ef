"""Response texts that echo client data cannot forge response lines."""

from __future__ import annotations

import socket

FORGED = b"x\r\n* OK FORGED"


def imaps_lines(server, home, commands: list[bytes], last_tag: bytes) -> list[bytes]:
    """Log in as alice, send `commands`, return every line up to the one tagged `last_tag`."""
    raw = socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10)
    with home.client_context().wrap_socket(raw, server_hostname="mail.example.test") as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a LOGIN alice@example.test alice-password-1\r\n")
        assert f.readline().startswith(b"a OK")
        s.sendall(b"".join(commands))
        lines = []
        while not lines or not lines[-1].startswith(last_tag + b" "):
            lines.append(f.readline())
        return lines


def test_echoed_literal_forges_no_untagged_line(server, hatoba_home):
    lines = imaps_lines(server, hatoba_home, [
        b"b SELECT INBOX\r\n",
        b"c UID {%d+}\r\n" % len(FORGED) + FORGED + b"\r\n",
        b"d NOOP\r\n",
    ], b"d")
    assert not any(b"FORGED" in line and not line.startswith(b"c BAD") for line in lines), lines
    assert [line for line in lines if line.startswith(b"c ")][0] == b"c BAD UID X  * OK FORGED is not a UID command\r\n"


def test_resp_text_drops_controls_and_cuts_long_echoes():
    from hatoba.proto.imap.encode import MAX_RESP_TEXT, resp_text

    assert resp_text("a\r\nb\x00c\x7fd\x85e") == b"a  b c d e"
    long = resp_text("y" * 10_000)
    assert len(long) == MAX_RESP_TEXT and long.endswith(b"...")
    assert resp_text("Gruß [ALERT]") == "Gruß [ALERT]".encode()


def test_resp_text_keeps_a_long_response_code_whole():
    from hatoba.proto.imap.encode import MAX_RESP_TEXT, resp_text

    capability = "[CAPABILITY " + " ".join(f"X-EXTENSION-{n}" for n in range(60)) + "]"
    assert len(capability) > MAX_RESP_TEXT
    answer = resp_text(capability + " Logged in")
    assert answer == (capability + " Logged in").encode()
    cut = resp_text(capability + " " + "z" * 1000)
    assert cut.startswith(capability.encode()) and cut.endswith(b"...")


def test_login_answer_carries_the_whole_capability_list(server, hatoba_home):
    raw = socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10)
    with hatoba_home.client_context().wrap_socket(raw, server_hostname="mail.example.test") as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a LOGIN alice@example.test alice-password-1\r\n")
        line = f.readline()
    assert line.startswith(b"a OK [CAPABILITY IMAP4rev1 ") and b"] " in line, line
    assert b"..." not in line.split(b"]")[0]
