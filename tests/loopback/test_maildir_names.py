"""Maildir names, which POP3 shows as UIDLs, name neither the machine nor the process."""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import socket


def test_uidls_of_appended_and_delivered_mail_hide_host_and_pid(server, hatoba_home):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", ["bob@example.test"], "Subject: delivered\r\n\r\nhi\r\n")
    assert len(hatoba_home.wait_messages("bob@example.test", 1)) == 1
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=hatoba_home.client_context(),
                           timeout=10) as c:
        c.login("bob@example.test", "bob-password-1")
        assert c.append("INBOX", None, None, b"Subject: appended\r\n\r\nhi\r\n")[0] == "OK"
        c.logout()
    p = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=hatoba_home.client_context(), timeout=10)
    p.user("bob@example.test")
    p.pass_("bob-password-1")
    uidls = [line.split()[1].decode() for line in p.uidl()[1]]
    p.quit()
    assert len(uidls) == 2
    machine = {socket.gethostname(), socket.gethostname().split(".")[0], os.uname().nodename}
    for uidl in uidls:
        when, unique, host = uidl.split(",")[0].split(".", 2)  # Maildir: TIME.UNIQUE.HOST
        assert host not in machine, uidl
        assert str(os.getpid()) not in unique, uidl


def test_pop3_greeting_timestamp_hides_the_pid(server, hatoba_home):
    p = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=hatoba_home.client_context(), timeout=10)
    greeting = p.getwelcome().decode()
    p.quit()
    stamp = greeting[greeting.index("<") + 1: greeting.index("@")]
    assert str(os.getpid()) not in stamp.split("."), greeting
