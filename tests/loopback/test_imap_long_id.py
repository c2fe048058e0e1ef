"""Before login, the largest ID RFC 2971 allows (30 fields, values of 1024 octets, about
31 KiB on one line, over limits.max_command_before_login) is answered as ID, and the
session goes on."""

from __future__ import annotations

import socket

from test_imap_extensions import BOB


def test_largest_rfc2971_id_before_login_is_answered(server, hatoba_home):
    fields = b" ".join(b'"%s" "%s"' % (b"k%029d" % i, b"v" * 1024) for i in range(30))
    plain = socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10)
    with hatoba_home.client_context().wrap_socket(plain, server_hostname="mail.example.test") as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b"a1 ID (" + fields + b")\r\na2 LOGIN %s %s\r\n" % tuple(x.encode() for x in BOB))
        assert f.readline().startswith(b"* ID (")
        assert f.readline().startswith(b"a1 OK")
        assert f.readline().startswith(b"a2 OK")
