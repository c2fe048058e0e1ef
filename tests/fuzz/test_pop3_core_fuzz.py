"""Hypothesis against the POP3 server core: any bytes give answers, never an
exception; every line gets exactly one answer; the same bytes come out
whether the input is fed whole or one byte at a time."""

import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))
from test_pop3_server import RFC_DIGEST, RFC_TIMESTAMP, Harness  # noqa: E402

COMMANDS = [
    b"USER alice@example.test\r\n", b"PASS secret\r\n", b"PASS wrong\r\n", b"USER mrose\r\n",
    f"APOP mrose {RFC_DIGEST}\r\n".encode(), b"APOP x y\r\n", b"CAPA\r\n", b"NOOP\r\n", b"STAT\r\n",
    b"LIST\r\n", b"LIST 1\r\n", b"LIST 9\r\n", b"UIDL\r\n", b"UIDL 2\r\n", b"RETR 1\r\n", b"RETR 3\r\n",
    b"TOP 2 1\r\n", b"TOP 1 0\r\n", b"DELE 1\r\n", b"DELE 2\r\n", b"RSET\r\n", b"QUIT\r\n",
    b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"AUTH\r\n", b"*\r\n", b"=\r\n", b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n",
    b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n", b"YWxpY2VAZXhhbXBsZS50ZXN0\r\n", b"c2VjcmV0\r\n",
    b"AUTH PLAIN !!!\r\n", b"\x00", b"\r", b"\n", b" ", b"\xff", b"list  1 \n", b"GET /\r\n",
]

streams = st.lists(st.one_of(st.sampled_from(COMMANDS), st.binary(max_size=40)), max_size=30).map(b"".join)


def run(chunks, **facts):
    # STLS drops pipelined bytes on purpose, so whole and bytewise feeds
    # differ there: the comparison runs without it (tls_available=False).
    facts.setdefault("tls_available", False)
    h = Harness(tls_active=True, apop_timestamp=RFC_TIMESTAMP, secrets={"alice@example.test": "secret", "mrose": "tanstaaf"},
                max_line=64, max_bad_commands=50, **facts)
    out = b""
    for c in chunks:
        if h.conn.closed:
            break
        out += h.feed(c)
    return out, h


@settings(max_examples=400, deadline=None)
@given(streams)
def test_any_bytes_whole_or_bytewise(data):
    whole, h = run([data])
    bytewise, _ = run([bytes([b]) for b in data])
    assert whole == bytewise
    # Every complete line was answered by exactly one event, until a close.
    if not h.conn.closed:
        assert len(h.events) == data.count(b"\n")
    assert whole == b"" or whole.startswith((b"+OK", b"-ERR", b"+ "))
    assert whole == b"" or whole.endswith(b"\r\n")


@settings(max_examples=200, deadline=None)
@given(streams, st.booleans(), st.booleans())
def test_any_bytes_before_tls(data, tls_available, allow_plaintext_auth):
    h = Harness(tls_available=tls_available, tls_active=False, allow_plaintext_auth=allow_plaintext_auth,
                max_line=64, max_bad_commands=50)
    out = h.feed(data)
    if not allow_plaintext_auth:
        # Without TLS nobody logs in, whatever the bytes.
        assert h.conn.login is None
        assert b"Logged in" not in out
    if not h.conn.closed and not h.conn.discarded_after_stls:
        assert len(h.events) == data.count(b"\n")
