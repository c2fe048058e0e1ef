"""Hypothesis against the SMTP server core: any bytes give replies, never an
exception, and the same replies whether fed whole or one byte at a time."""

import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))
from test_smtp_server import Harness  # noqa: E402

COMMANDS = [
    b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@b.example>\r\n", b"MAIL FROM:<>\r\n",
    b"RCPT TO:<c@d.example>\r\n", b"DATA\r\n", b"BDAT 3\r\n", b"BDAT 2 LAST\r\n", b"RSET\r\n",
    b"NOOP\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"*\r\n", b".\r\n",
    b"\r\n.\r\n", b"\n.\n", b"QUIT\r\n", b"AGFAYgBj\r\n", b"..x\r\n", b"\x00", b"\r", b"\n",
    b"AUTH PLAIN !!!\r\n", b"AUTH PLAIN =\r\n", b"AUTH LOGIN YQ==\r\n", b"MAIL FROM:<a@b.example> SIZE=1\r\n",
]

streams = st.lists(st.one_of(st.sampled_from(COMMANDS), st.binary(max_size=40)), max_size=30).map(b"".join)


def run(chunks, tls_available=False, **facts):
    # STARTTLS drops pipelined bytes on purpose, so whole and bytewise feeds
    # differ there: the comparison runs without it.
    h = Harness(tls_available=tls_available, tls_active=False, auth_enabled=True, allow_plaintext_auth=True,
                max_command_line=64, max_message_size=200, max_bad_commands=50, **facts)
    out = b""
    for c in chunks:
        if h.conn.closed:
            break
        out += h.feed(c)
    return out, h.messages


@settings(max_examples=400, deadline=None)
@given(streams)
def test_any_bytes_whole_or_bytewise(data):
    whole = run([data])
    bytewise = run([bytes([b]) for b in data])
    assert whole == bytewise
    for line in whole[0].split(b"\r\n")[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-")


@settings(max_examples=200, deadline=None)
@given(streams)
def test_any_bytes_reject_mode(data):
    out, _ = run([data], reject_bare_lf=True, tls_available=True)
    assert all(l[:3].isdigit() for l in out.split(b"\r\n")[:-1])
