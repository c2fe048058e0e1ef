"""Which outgoing mail is DKIM-signed, without any outside program.

The rules (queue/manager.py `_wire_form`, dkim/sign.py `from_domain`, queue/process.py):
- only mail of a logged-in user (AUTH on submission or smtps) is signed; mail that came
  in on port 25 without a login (from outside, or relayed for a trusted network) never is,
  even when its From names one of our domains;
- the key is chosen by the domain of the one address in the one From field; none when
  From is missing, repeated, holds several addresses, or its domain has no key;
- `[dkim] sign = false` signs nothing;
- a broken key sends the mail unsigned; the signature goes on top, above our Received.
"""

from __future__ import annotations

import logging
import smtplib
from pathlib import Path

import dkim
import pytest
from support.fakesmtp import ScriptedSmtp
from support.harness import PASSWORDS, ServerThread, make_home, wait_for

from hatoba.dkim import keys
from hatoba.dkim.sign import DkimSigner
from hatoba.queue.manager import QueueManager
from hatoba.queue.spool import Envelope, QueuedMessage

DOMAIN = "example.test"
RECEIVED = "Received: from client.example by mail.example.test (hatoba); Thu, 1 Jan 2026 00:00:00 +0000\r\n"


def message(subject: str, from_field: str = "alice@example.test", extra: str = "") -> bytes:
    return (f"From: {from_field}\r\nTo: dan@remote.example\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{subject.replace(' ', '-')}@example.test>\r\n\r\nHello, world.\r\n").encode()


def dns_for(*records: keys.DkimKey):
    """dkimpy's dnsfunc, answering with the TXT records `hatoba dkim show` prints."""
    table = {f"{k.selector}._domainkey.{k.domain}": k.txt_value() for k in records}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        value = table.get(name.decode("ascii").rstrip(".").lower())
        return value.encode("ascii") if value is not None else None

    return lookup


def header_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def is_signed(data: bytes) -> bool:
    return b"dkim-signature:" in header_of(data).lower()


# -- the decision, on the queue manager's wire form ----------------------------------------


@pytest.fixture
def dkim_dir(tmp_path: Path) -> Path:
    return tmp_path / "dkim"


@pytest.fixture
def key(dkim_dir: Path) -> keys.DkimKey:
    return keys.generate(dkim_dir, DOMAIN, algorithm="ed25519")


def wire_form(tmp_path: Path, signer: DkimSigner | None, body: bytes, auth_login: str | None) -> bytes:
    """What QueueManager hands to remote delivery for one queued message."""
    path = tmp_path / "queued"
    path.write_bytes(body)
    envelope = Envelope(mail_from="alice@example.test", recipients=("dan@remote.example",), received_at=0.0,
                        auth_login=auth_login, received=RECEIVED)
    manager = QueueManager(None, None, None, dkim=signer)  # type: ignore[arg-type]  # only the signer is used
    try:
        return manager._wire_form(QueuedMessage("q1", envelope, path, len(body)))
    finally:
        manager._executor.shutdown()


def test_a_logged_in_users_mail_is_signed_above_our_received(tmp_path, dkim_dir, key):
    body = message("submitted")
    out = wire_form(tmp_path, DkimSigner(dkim_dir), body, "alice@example.test")
    assert out.startswith(b"DKIM-Signature: ")
    signature, rest = out.split(RECEIVED.encode(), 1)
    assert rest == body and b"d=example.test" in signature and f"s={key.selector}".encode() in signature
    assert dkim.verify(out, dnsfunc=dns_for(key))


@pytest.mark.parametrize("auth_login", [None, ""])
def test_mail_without_a_login_is_never_signed(tmp_path, dkim_dir, key, auth_login):
    # Port 25: a server from outside (or a trusted network) naming our domain in From.
    body = message("from port 25")
    assert wire_form(tmp_path, DkimSigner(dkim_dir), body, auth_login) == RECEIVED.encode() + body


def test_sign_false_signs_nothing(tmp_path, key):
    body = message("signing off")
    assert wire_form(tmp_path, None, body, "alice@example.test") == RECEIVED.encode() + body


@pytest.mark.parametrize(
    ("from_field", "extra", "domain"),
    [
        ("Alice <ALICE@Example.TEST>", "", "example.test"),  # the domain is normalised
        ("alice@other.example", "", None),  # no key for that domain
        ("alice@example.test, bob@example.test", "", None),  # two addresses
        ("alice@example.test", "From: mallory@example.test\r\n", None),  # two From fields
        ("not an address", "", None),
    ],
)
def test_the_key_follows_the_one_from_address(tmp_path, dkim_dir, key, from_field, extra, domain):
    body = message("from rules", from_field, extra)
    out = wire_form(tmp_path, DkimSigner(dkim_dir), body, "alice@example.test")
    if domain is None:
        assert out == RECEIVED.encode() + body
    else:
        assert is_signed(out) and f"d={domain}".encode() in out.split(RECEIVED.encode())[0]
        assert dkim.verify(out, dnsfunc=dns_for(key))


def test_a_missing_From_is_not_signed(tmp_path, dkim_dir, key):
    body = b"To: dan@remote.example\r\nSubject: no from\r\n\r\nbody\r\n"
    assert wire_form(tmp_path, DkimSigner(dkim_dir), body, "alice@example.test") == RECEIVED.encode() + body


def test_a_broken_key_sends_the_mail_unsigned_and_says_why(tmp_path, dkim_dir, key, caplog):
    key.path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    body = message("broken key")
    with caplog.at_level(logging.ERROR):
        out = wire_form(tmp_path, DkimSigner(dkim_dir), body, "alice@example.test")
    assert out == RECEIVED.encode() + body
    assert any("DKIM signing for example.test failed" in r.getMessage() for r in caplog.records)


# -- end to end: the listener decides who is logged in -----------------------------------------------


def home_with_peer(tmp_path: Path, peer: ScriptedSmtp, extra: str = ""):
    """A hatoba that sends remote.example and elsewhere.example (forward@'s target) to `peer`."""
    route = f"[127.0.0.1]:{peer.port}"
    home = make_home(tmp_path / "hatoba", extra_config=(
        f'[delivery.routes]\n"remote.example" = "{route}"\n"elsewhere.example" = "{route}"\n'
        "[delivery]\nretry_min = 0.5\nretry_max = 1.0\n" + extra
    ))
    key = keys.generate(home.config().paths.dkim_dir, DOMAIN, algorithm="ed25519")
    return home, key


def submit(server, home, subject: str, *, port_name: str = "submission") -> None:
    alice = "alice@example.test"
    if port_name == "smtps":
        client = smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), timeout=15, context=home.client_context())
    else:
        client = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=15)
        client.starttls(context=home.client_context())
    with client:
        client.login(alice, PASSWORDS[alice])
        client.sendmail(alice, ["dan@remote.example"], message(subject))


def by_subject(peer: ScriptedSmtp, count: int) -> dict[str, bytes]:
    assert wait_for(lambda: len(peer.messages) >= count, 20), peer.messages
    out = {}
    for data in peer.messages:
        subject = next(line for line in header_of(data).split(b"\r\n") if line.startswith(b"Subject: "))
        out[subject[len(b"Subject: "):].decode()] = data
    assert len(out) == count, list(out)
    return out


def test_submission_and_smtps_are_signed_port_25_from_outside_is_not(tmp_path):
    with ScriptedSmtp() as peer:
        home, key = home_with_peer(tmp_path, peer)
        with ServerThread(home) as server:
            submit(server, home, "via 587")
            submit(server, home, "via 465", port_name="smtps")
            # An outside server (127.0.0.1 is not a trusted network here) sends mail that claims
            # to be from alice to forward@, an alias for someone@elsewhere.example: it is
            # forwarded out, and must leave without our signature.
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=15) as c:
                c.sendmail("alice@example.test", ["forward@example.test"], message("via 25"))
            got = by_subject(peer, 3)
    assert is_signed(got["via 587"]) and dkim.verify(got["via 587"], dnsfunc=dns_for(key))
    assert is_signed(got["via 465"]) and dkim.verify(got["via 465"], dnsfunc=dns_for(key))
    assert not is_signed(got["via 25"])


def test_relay_for_a_trusted_network_is_not_signed_and_sign_false_signs_nothing(tmp_path):
    with ScriptedSmtp() as peer:
        home, key = home_with_peer(tmp_path, peer, extra='[smtp]\ntrusted_networks = ["127.0.0.1/32"]\n')
        with ServerThread(home) as server:
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=15) as c:
                c.sendmail("alice@example.test", ["dan@remote.example"], message("relayed"))
            submit(server, home, "submitted")
            got = by_subject(peer, 2)
    assert not is_signed(got["relayed"])
    assert is_signed(got["submitted"]) and dkim.verify(got["submitted"], dnsfunc=dns_for(key))

    with ScriptedSmtp() as peer:
        home, _ = home_with_peer(tmp_path / "off", peer, extra="[dkim]\nsign = false\n")
        with ServerThread(home) as server:
            submit(server, home, "signing off")
            got = by_subject(peer, 1)
    assert not is_signed(got["signing off"])
