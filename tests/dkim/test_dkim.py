"""DKIM keys, records and signatures, checked by an independent verifier (dkimpy).

The record a verifier sees is the one `hatoba dkim keygen` printed, parsed
back from its zone line, so a wrong record fails here as it would in DNS.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import dkim
import pytest

from hatoba.cli.main import main
from hatoba.dkim import keys
from hatoba.dkim.sign import DkimSigner, from_domain
from support.harness import HatobaHome, make_home

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@elsewhere.example>\r\n"
    b"Subject: quarterly\r\n"
    b" figures\r\n"
    b"Date: Tue, 03 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the numbers are in.\r\n"
)

ZONE_LINE = re.compile(r'(?P<name>\S+)\. IN TXT (?P<strings>(?:"[^"]*" ?)+)\Z')


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> HatobaHome:
    return make_home(tmp_path_factory.mktemp("dkim") / "hatoba")


def hatoba(home: HatobaHome, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["-c", str(home.config_path), *args])
    out, err = capsys.readouterr()
    return status, out, err


def refused(home: HatobaHome, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command that must fail; return its one-line message."""
    status, out, err = hatoba(home, capsys, *args)
    assert status == 1 and out == "", (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hatoba: "), err
    return lines[0].removeprefix("hatoba: ")


def parse_zone_line(line: str) -> tuple[str, str]:
    """(DNS name, TXT value) as a resolver would hand them over: strings joined."""
    match = ZONE_LINE.match(line)
    assert match, line
    strings = re.findall(r'"([^"]*)"', match["strings"])
    assert all(len(s) <= 255 for s in strings)
    return match["name"], "".join(strings)


def dns_for(records: dict[str, str]):
    """A dkimpy dnsfunc answering from `records` (name -> TXT value), as DNS would."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        value = records.get(name.decode("ascii").rstrip(".").lower())
        return value.encode("ascii") if value is not None else None

    return lookup


def record_from_output(out: str) -> dict[str, str]:
    lines = [line for line in out.splitlines() if " IN TXT " in line]
    assert len(lines) == 1, out
    name, value = parse_zone_line(lines[0])
    return {name: value}


def signed(signer: DkimSigner, message: bytes, domain: str) -> bytes:
    header = signer.sign(message, domain)
    assert header is not None
    assert header.startswith(b"DKIM-Signature: ") and header.endswith(b"\r\n")
    return header + message


def tags(header: bytes) -> dict[str, str]:
    value = re.sub(rb"\s+", b"", header.split(b":", 1)[1]).decode("ascii")
    return dict(item.split("=", 1) for item in value.split(";") if item)


def test_rsa_keygen_prints_a_record_that_verifies_the_signature(
    home: HatobaHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = hatoba(home, capsys, "dkim", "keygen", "Example.TEST")
    assert status == 0 and err == ""  # a local domain: no warning
    config = home.config()
    key = keys.load(config.paths.dkim_dir, "example.test")
    assert key is not None and key.algorithm == "rsa" and key.bits == 2048
    assert re.fullmatch(r"rsa\d{6}", key.selector)
    assert out.splitlines()[0] == f"wrote 2048-bit RSA key {key.path} (selector {key.selector}) for example.test"
    assert f"selector {key.selector} from now on" in out.splitlines()[-1]

    # Files: owner-only key and folders, the selector file names the key.
    assert key.path == config.paths.dkim_dir / "example.test" / f"{key.selector}.key"
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.paths.dkim_dir.stat().st_mode) == 0o700
    assert (key.path.parent / "selector").read_text() == f"{key.selector}\n"
    assert key.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS #8

    records = record_from_output(out)
    assert list(records) == [f"{key.selector}._domainkey.example.test"]
    value = records[f"{key.selector}._domainkey.example.test"]
    assert value.startswith("v=DKIM1; k=rsa; p=") and len(value) > 255  # split in the zone line

    signer = DkimSigner(config.paths.dkim_dir)
    message = signed(signer, MESSAGE, "example.test")
    dnsfunc = dns_for(records)
    assert dkim.verify(message, dnsfunc=dnsfunc)

    fields = tags(message.split(b"\r\n\r\n")[0].split(b"\r\nFrom:")[0])
    assert fields["a"] == "rsa-sha256" and fields["c"] == "relaxed/relaxed"
    assert fields["d"] == "example.test" and fields["s"] == key.selector
    assert fields["h"].split(":") == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "from",
    ]

    # Relaxed/relaxed: refolding and trailing spaces survive; unsigned fields may change.
    assert dkim.verify(message.replace(b"Subject: quarterly\r\n figures", b"Subject:  quarterly figures  "), dnsfunc=dnsfunc)
    assert dkim.verify(message.replace(b"X-Mailer: test", b"X-Mailer: changed by a relay"), dnsfunc=dnsfunc)
    # What a forger would change does not.
    assert not dkim.verify(message.replace(b"the numbers are in.", b"the numbers are out."), dnsfunc=dnsfunc)
    assert not dkim.verify(message.replace(b"Subject: quarterly", b"Subject: urgent"), dnsfunc=dnsfunc)
    # A second From, below or above the signed one. h= names From once more
    # than it occurs (asserted above), so that even a verifier that hashes only
    # the fields h= names (dkimpy also adds extra Froms itself) fails both.
    head, body = message.split(b"\r\n\r\n", 1)
    assert not dkim.verify(head + b"\r\nFrom: Mallory <mallory@example.test>\r\n\r\n" + body, dnsfunc=dnsfunc)
    above = message.replace(b"\r\nFrom: Alice", b"\r\nFrom: Mallory <mallory@example.test>\r\nFrom: Alice", 1)
    assert above.count(b"\r\nFrom: ") == 2
    assert not dkim.verify(above, dnsfunc=dnsfunc)
    # And the record of another key does not verify it.
    stranger = keys.generate(tmp_path, "example.test", selector=key.selector)
    assert not dkim.verify(message, dnsfunc=dns_for({stranger.dns_name(): stranger.txt_value()}))


def test_ed25519_keygen_for_a_domain_not_hosted_here(
    home: HatobaHome, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = hatoba(home, capsys, "dkim", "keygen", "example.org", "--algorithm", "ed25519")
    assert status == 0
    assert err == (
        "hatoba: warning: example.org is not a local domain here (`hatoba domain list`); "
        "the key was written anyway\n"
    )
    key = keys.load(home.config().paths.dkim_dir, "example.org")
    assert key is not None and key.algorithm == "ed25519" and re.fullmatch(r"ed\d{6}", key.selector)
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    assert out.splitlines()[0] == f"wrote Ed25519 key {key.path} (selector {key.selector}) for example.org"

    records = record_from_output(out)
    value = records[f"{key.selector}._domainkey.example.org"]
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(value.split("p=", 1)[1])) == 32  # RFC 8463: the raw public key

    message = MESSAGE.replace(b"alice@example.test", b"alice@example.org")
    signed_message = signed(DkimSigner(home.config().paths.dkim_dir), message, "example.org")
    fields = tags(signed_message.split(b"\r\nFrom:")[0])
    assert fields["a"] == "ed25519-sha256" and fields["h"].split(":").count("from") == 2
    dnsfunc = dns_for(records)
    assert dkim.verify(signed_message, dnsfunc=dnsfunc)
    assert not dkim.verify(signed_message + b"P.S. send money\r\n", dnsfunc=dnsfunc)
    above = signed_message.replace(b"\r\nFrom: ", b"\r\nFrom: mallory@example.org\r\nFrom: ", 1)
    assert not dkim.verify(above, dnsfunc=dnsfunc)


def test_keygen_refusals_leave_keys_alone(home: HatobaHome, capsys: pytest.CaptureFixture[str]) -> None:
    assert hatoba(home, capsys, "dkim", "keygen", "refuse.example", "--selector", "one")[0] == 0
    folder = home.config().paths.dkim_dir / "refuse.example"
    before = (folder / "one.key").read_bytes()

    message = refused(home, capsys, "dkim", "keygen", "refuse.example", "--selector", "ONE")
    assert message.startswith(f"{folder / 'one.key'} already exists: choose another selector")
    assert (folder / "one.key").read_bytes() == before

    assert refused(home, capsys, "dkim", "keygen", "refuse.example", "--selector", "weak", "--bits", "1024") == (
        "RSA keys of 1024 bits are too weak for DKIM (RFC 8301): use 2048 bits or more"
    )
    assert "must be one of 2048, 3072, 4096" in refused(
        home, capsys, "dkim", "keygen", "refuse.example", "--selector", "odd", "--bits", "2500"
    )
    assert refused(home, capsys, "dkim", "keygen", "refuse.example", "--algorithm", "ed25519", "--bits", "4096") == (
        "--bits is for RSA keys only; Ed25519 keys have one size"
    )
    assert refused(home, capsys, "dkim", "keygen", "refuse.example", "--algorithm", "dsa") == (
        "unknown algorithm 'dsa': use rsa or ed25519"
    )
    for selector in ("bad_selector", "-lead", "trail-", "a..b", "x" * 64, "sél"):
        assert "is not a valid selector" in refused(
            home, capsys, "dkim", "keygen", "refuse.example", f"--selector={selector}"
        )
    assert "is not a valid domain name" in refused(home, capsys, "dkim", "keygen", "bad_domain!")
    assert sorted(p.name for p in folder.iterdir()) == ["one.key", "selector"]
    assert (folder / "selector").read_text() == "one\n"
    assert refused(home, capsys, "dkim") == "give an action: hatoba dkim keygen DOMAIN|show DOMAIN|list (see --help)"


def test_show_and_list(home: HatobaHome, capsys: pytest.CaptureFixture[str]) -> None:
    dkim_dir = home.config().paths.dkim_dir
    assert hatoba(home, capsys, "dkim", "keygen", "show.example", "--selector", "s1")[0] == 0
    status, out, err = hatoba(home, capsys, "dkim", "show", "SHOW.example.")
    key = keys.load(dkim_dir, "show.example")
    assert key is not None
    assert (status, out, err) == (0, key.zone_line() + "\n", "")
    name, value = parse_zone_line(out.strip())
    assert (name, value) == ("s1._domainkey.show.example", key.txt_value())

    assert refused(home, capsys, "dkim", "show", "nokey.example") == (
        "no DKIM key for nokey.example: create one with `hatoba dkim keygen nokey.example`"
    )
    (dkim_dir / "not a domain").mkdir()  # stray folders are not keys
    status, out, _ = hatoba(home, capsys, "dkim", "list")
    assert status == 0
    assert "show.example s1 rsa\n" in out
    assert all(len(line.split()) == 3 for line in out.splitlines())
    assert [line.split()[0] for line in out.splitlines()] == sorted(line.split()[0] for line in out.splitlines())
    assert [k.domain for k in keys.list_keys(dkim_dir)] == [line.split()[0] for line in out.splitlines()]


def test_signer_follows_the_selector_file(tmp_path: Path) -> None:
    dkim_dir = tmp_path / "dkim"
    signer = DkimSigner(dkim_dir)
    assert signer.sign(MESSAGE, "example.test") is None  # no folder at all
    first = keys.generate(dkim_dir, "example.test", selector="first", algorithm="ed25519")
    header = signer.sign(MESSAGE, "example.test")
    assert header is not None and tags(header)["s"] == "first"

    second = keys.generate(dkim_dir, "example.test", selector="second")
    header = signer.sign(MESSAGE, "Example.Test")
    assert header is not None and tags(header)["s"] == "second" and tags(header)["a"] == "rsa-sha256"
    records = {k.dns_name(): k.txt_value() for k in (first, second)}
    assert dkim.verify(header + MESSAGE, dnsfunc=dns_for(records))

    keys.activate(dkim_dir, "example.test", "first")
    header = signer.sign(MESSAGE, "example.test")
    assert header is not None and tags(header)["s"] == "first"

    os.unlink(dkim_dir / "example.test" / "selector")
    assert signer.sign(MESSAGE, "example.test") is None
    assert signer.sign(MESSAGE, "other.example") is None
    assert signer.sign(MESSAGE, "not a domain") is None


def test_broken_key_files_are_one_line_errors(tmp_path: Path) -> None:
    dkim_dir = tmp_path / "dkim"
    keys.generate(dkim_dir, "example.test", selector="s1")
    (dkim_dir / "example.test" / "s1.key").unlink()
    with pytest.raises(keys.DkimError, match=r"names selector s1 but .*s1\.key is missing"):
        DkimSigner(dkim_dir).sign(MESSAGE, "example.test")
    (dkim_dir / "example.test" / "s1.key").write_bytes(b"not a key")
    with pytest.raises(keys.DkimError, match="is not an unencrypted PEM private key"):
        keys.load(dkim_dir, "example.test")


def test_idna_domain_and_long_record(tmp_path: Path) -> None:
    key = keys.generate(tmp_path, "Bücher.Example", selector="big", bits=4096)
    assert key.domain == "xn--bcher-kva.example"
    assert key.path == tmp_path / "xn--bcher-kva.example" / "big.key"
    assert keys.load(tmp_path, "bücher.example") == key
    assert key.dns_name() == "big._domainkey.xn--bcher-kva.example"
    name, value = parse_zone_line(key.zone_line())
    assert name == key.dns_name() and value == key.txt_value()
    assert key.zone_line().count('"') == 2 * 3  # about 740 characters: three strings


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: alice@Example.TEST", "example.test"),
        (b'From: "Alice at a@evil.example" <alice@example.test>', "example.test"),
        (b"From: Alice (a@evil.example) <alice@example.test>", "example.test"),
        (b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>", "example.test"),
        (b"From: Alice\r\n <alice@example.test>", "example.test"),
        (b"FROM: alice@B\xc3\xbccher.example", "xn--bcher-kva.example"),
        (b"From: a@example.test, b@example.org", None),
        (b"From: <a@example.test> <b@example.org>", None),
        (b"From: alice@example.org)<bob@example.test>", None),
        (b"From: alice", None),
        (b"From: alice@[192.0.2.1]", None),
        (b"From:", None),
        (b"Sender: alice@example.test", None),
        (b"From: a@example.test\r\nFrom: b@example.test", None),
        (b"From: a@\xff.example", None),
    ],
)
def test_from_domain(header: bytes, expected: str | None) -> None:
    assert from_domain(header + b"\r\nSubject: x\r\n\r\nbody\r\n") == expected
