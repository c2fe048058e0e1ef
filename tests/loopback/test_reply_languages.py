"""Reply texts in the user's language: IMAP LANGUAGE (RFC 5255 §3) and POP3 LANG (RFC 6856 §3),
over real TLS connections. Codes and data stay as they are; only the words change."""

from __future__ import annotations

import socket
import ssl

from support.harness import PASSWORDS

ALICE, PASSWORD = "alice@example.test", PASSWORDS["alice@example.test"]


def _japanese(line: str) -> bool:
    return any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in line)


def test_replies_are_english_ascii_until_a_program_asks(server, hatoba_home):
    wire = Wire(server.port("imaps"), hatoba_home.client_context())
    try:
        wire.line()
        wire.send(f"a LOGIN {ALICE} wrong-password")
        line = wire.until("a ")[-1]
        assert line.isascii() and "AUTHENTICATIONFAILED" in line
    finally:
        wire.close()


class Wire:
    """A TLS line conversation with the server."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="mail.example.test")
        self.buffer = b""

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode("utf-8")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def until(self, prefix: str) -> list[str]:
        """Lines up to and including the first one that starts with `prefix`."""
        lines = [self.line()]
        while not lines[-1].startswith(prefix):
            lines.append(self.line())
        return lines

    def close(self) -> None:
        self.sock.close()


def test_imap_language_lists_switches_and_falls_back(server, hatoba_home):
    wire = Wire(server.port("imaps"), hatoba_home.client_context())
    try:
        greeting = wire.line()
        assert "LANGUAGE" in greeting  # in the greeting's capabilities (RFC 5255 §3.1)
        wire.send("a LANGUAGE")
        assert wire.until("a ") == ["* LANGUAGE (i-default en ja)", "a OK LANGUAGE completed"]
        wire.send("b LANGUAGE fr ja-JP en")  # the first range we have: ja, from its regional tag
        assert wire.until("b ") == ["* LANGUAGE (ja)", "b OK LANGUAGE が完了しました"]
        wire.send("c LANGUAGE fr de")
        lines = wire.until("c ")
        assert lines[-1].startswith("c NO ") and "日本語" in lines[-1]  # refused, in the language in force
        wire.send(f"w LOGIN {ALICE} wrong-password")
        wrong = wire.until("w ")[-1]
        assert wrong.startswith("w NO [AUTHENTICATIONFAILED] ") and _japanese(wrong)  # the code stays, the words change
        wire.send(f"d LOGIN {ALICE} {PASSWORD}")
        assert _japanese(wire.until("d OK")[-1])
        wire.send("s SELECT Nowhere")
        missing = wire.until("s ")[-1]
        assert missing.startswith("s NO [NONEXISTENT] ") and _japanese(missing)
        wire.send("x SELECT INBOX")
        selected = wire.until("x ")
        assert selected[-1].startswith("x OK [READ-WRITE] ")
        assert any(line.startswith("* OK [UIDVALIDITY ") for line in selected)
        wire.send("e CAPABILITY")
        assert "LANGUAGE" in wire.until("e ")[0]
        wire.send("f LANGUAGE i-default")
        assert wire.until("f ") == ["* LANGUAGE (i-default)", "f OK LANGUAGE completed"]
    finally:
        wire.close()


def test_imap_language_default_is_the_users_own_setting(server, hatoba_home):
    from hatoba.store.directory import Directory

    with Directory(hatoba_home.root / "data" / "directory.sqlite3") as directory:
        directory.set_language(ALICE, "ja")
    wire = Wire(server.port("imaps"), hatoba_home.client_context())
    try:
        wire.line()
        wire.send("a LANGUAGE default")
        assert wire.until("a ")[0] == "* LANGUAGE (i-default)"  # not logged in: nobody's setting yet
        wire.send(f"b LOGIN {ALICE} {PASSWORD}")
        wire.until("b OK")
        wire.send("c LANGUAGE default")
        assert wire.until("c ") == ["* LANGUAGE (ja)", "c OK LANGUAGE が完了しました"]
    finally:
        wire.close()


def test_pop3_lang_lists_switches_and_refuses(server, hatoba_home):
    wire = Wire(server.port("pop3s"), hatoba_home.client_context())
    try:
        wire.line()
        wire.send("CAPA")
        assert "LANG" in wire.until(".")
        wire.send("LANG")
        assert wire.until(".") == ["+OK Language listing follows", "en English", "ja Japanese", "."]
        wire.send("LANG ja-JP")
        assert wire.line() == "+OK ja これから日本語で応答します"
        wire.send("PASS secret")
        assert _japanese(wire.line())  # PASS before USER, said in Japanese
        wire.send(f"USER {ALICE}")
        assert _japanese(wire.line())
        wire.send("PASS wrong-password")
        wrong = wire.line()
        assert wrong.startswith("-ERR [AUTH] ") and _japanese(wrong)
        wire.send("LANG fr")
        refused = wire.line()
        assert refused.startswith("-ERR ") and "日本語" in refused
        wire.send("LANG *")
        assert wire.line() == "+OK en Replies are now in English"
        wire.send("LANG en ja")
        assert wire.line().startswith("-ERR")
    finally:
        wire.close()


def test_a_language_chosen_before_tls_is_forgotten_with_it(server, hatoba_home):
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=10)
    try:
        sock.recv(65536)  # greeting
        sock.sendall(b"a LANGUAGE ja\r\n")
        data = b""
        while b"a OK" not in data:
            data += sock.recv(65536)
        sock.sendall(b"b STARTTLS\r\n")
        data = b""
        while b"b OK" not in data:
            data += sock.recv(65536)
        tls = hatoba_home.client_context().wrap_socket(sock, server_hostname="mail.example.test")
        tls.sendall(b"c NOOP\r\n")
        data = b""
        while b"c " not in data:
            data += tls.recv(65536)
        assert data.isascii() and b"c OK" in data  # English again: the choice in clear is gone
        tls.close()
    finally:
        sock.close()
