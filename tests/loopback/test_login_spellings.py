"""Every spelling of a login opens the one mailbox the directory names."""

from __future__ import annotations

import imaplib
import poplib
import smtplib

import pytest

SPELLINGS = ['"alice"@example.test', " alice@example.test", "ALICE@Example.Test"]
PASSWORD = "alice-password-1"


@pytest.fixture
def one_for_alice(server, hatoba_home):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", ["alice@example.test"],
                   "From: someone@elsewhere.example\r\nSubject: hello\r\n\r\nbody\r\n")
    assert len(hatoba_home.wait_messages("alice@example.test", 1)) == 1
    return server


def imap_quoted(text: str) -> str:
    """An IMAP quoted string (imaplib sends the user name as it is given)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mail_folders(home) -> list[str]:
    return sorted(p.name for p in (home.root / "data" / "mail" / "example.test").iterdir())


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_imap_spelling_sees_alices_mail(one_for_alice, hatoba_home, spelling):
    before = mail_folders(hatoba_home)
    with imaplib.IMAP4_SSL("127.0.0.1", one_for_alice.port("imaps"),
                           ssl_context=hatoba_home.client_context(), timeout=10) as c:
        c.login(imap_quoted(spelling), PASSWORD)
        typ, data = c.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        c.logout()
    assert mail_folders(hatoba_home) == before


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_pop3_spelling_sees_alices_mail(one_for_alice, hatoba_home, spelling):
    before = mail_folders(hatoba_home)
    p = poplib.POP3_SSL("127.0.0.1", one_for_alice.port("pop3s"), context=hatoba_home.client_context(), timeout=10)
    p.user(spelling)
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    assert mail_folders(hatoba_home) == before


def test_pop3_lock_holds_for_every_spelling(one_for_alice, hatoba_home):
    first = poplib.POP3_SSL("127.0.0.1", one_for_alice.port("pop3s"), context=hatoba_home.client_context(), timeout=10)
    first.user("alice@example.test")
    first.pass_(PASSWORD)
    for spelling in SPELLINGS:
        second = poplib.POP3_SSL("127.0.0.1", one_for_alice.port("pop3s"), context=hatoba_home.client_context(),
                                 timeout=10)
        second.user(spelling)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_(PASSWORD)
        second.close()
    first.quit()
