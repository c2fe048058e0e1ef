"""Bounces and delay warnings: parsed back with the email package and checked field by field."""

from __future__ import annotations

import email
import email.policy
import email.utils
from email.message import EmailMessage, Message

import pytest

from hatoba.queue.dsn import RecipientReport, build_dsn, header_block, is_delivery_report

ARRIVAL = 1700000000.0
NOW = 1700003600.0
UNTIL = 1700432000.0
QID = "18b4c2e9a1f03a9c41e7"
ORIGINAL = (
    b"Received: from client.example.test by mail.example.test\r\n"
    b"Message-ID: <m1@client.example.test>\r\n"
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Lunch on Friday\r\n"
)

UNKNOWN = RecipientReport(
    recipient="bob@example.org",
    action="failed",
    status="5.1.1",
    diagnostic="550 5.1.1 <bob@example.org>: user unknown",
    remote_mta="mx.example.org",
    diagnostic_from_remote=True,
    last_attempt=NOW - 60,
)
SLOW = RecipientReport(
    recipient="carol@example.net",
    action="delayed",
    status="4.4.1",
    diagnostic="connection to mx.example.net timed out",
    last_attempt=NOW - 30,
)


def build(reports, **kw) -> bytes:
    args = dict(
        reporting_mta="mail.example.test",
        sender="alice@example.test",
        original_headers=ORIGINAL,
        reports=reports,
        arrival=ARRIVAL,
        queue_id=QID,
        now=NOW,
    )
    args.update(kw)
    return build_dsn(**args)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects
    return msg


def groups(msg: Message) -> list[dict[str, str]]:
    """The delivery-status blocks: per-message fields first, then one per recipient."""
    status = msg.get_payload()[1]
    assert status.get_content_type() == "message/delivery-status"
    return [dict(block.items()) for block in status.get_payload()]


def notice(msg: Message) -> str:
    """Part 1 with its line wrapping undone."""
    return " ".join(msg.get_payload()[0].get_content().split())


def date(value: str) -> float:
    return email.utils.parsedate_to_datetime(value).timestamp()


def test_a_bounce_has_the_three_parts_and_the_fields_of_rfc_3464():
    msg = parse(build([UNKNOWN]))
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.test"
    assert msg["From"].addresses[0].display_name == "Mail Delivery System"
    assert msg["To"].addresses[0].addr_spec == "alice@example.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith("@mail.example.test>")
    assert date(msg["Date"]) == NOW
    assert msg["In-Reply-To"] == msg["References"] == "<m1@client.example.test>"
    kinds = [part.get_content_type() for part in msg.get_payload()]
    assert kinds == ["text/plain", "message/delivery-status", "text/rfc822-headers"]

    per_message, recipient = groups(msg)
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert per_message["X-Hatoba-Queue-ID"] == QID
    assert date(per_message["Arrival-Date"]) == ARRIVAL
    assert recipient["Final-Recipient"] == "rfc822; bob@example.org"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == "dns; mx.example.org"
    assert recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.org>: user unknown"
    assert date(recipient["Last-Attempt-Date"]) == NOW - 60
    assert "Original-Recipient" not in recipient
    assert "Will-Retry-Until" not in recipient

    headers = msg.get_payload()[2].get_content()
    assert "Subject: Lunch on Friday" in headers
    assert headers.count("Received:") == 1


def test_the_notice_names_recipient_reason_server_and_queue_id():
    text = notice(parse(build([UNKNOWN])))
    assert "<bob@example.org>" in text
    assert "mx.example.org" in text
    assert "550 5.1.1 <bob@example.org>: user unknown" in text
    assert QID in text
    assert "could not be delivered" in text
    assert "keeps trying" not in text


def test_a_delay_warning_says_until_when_and_carries_will_retry_until():
    msg = parse(build([SLOW], will_retry_until=UNTIL))
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    _, recipient = groups(msg)
    assert recipient["Action"] == "delayed"
    assert recipient["Status"] == "4.4.1"
    assert date(recipient["Will-Retry-Until"]) == UNTIL
    assert "Remote-MTA" not in recipient
    text = notice(msg)
    assert "until Sun, 19 Nov 2023 22:13:20 +0000" in text
    assert "do not need to send" in text
    assert "given up" not in text.lower()


def test_will_retry_until_is_left_out_when_unknown():
    msg = parse(build([SLOW]))
    _, recipient = groups(msg)
    assert "Will-Retry-Until" not in recipient
    assert "Will-Retry-Until" not in msg.as_string()


def test_one_failure_among_delays_makes_it_a_bounce():
    msg = parse(build([SLOW, UNKNOWN], will_retry_until=UNTIL))
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    _, slow, unknown = groups(msg)
    assert (slow["Action"], unknown["Action"]) == ("delayed", "failed")
    assert "Will-Retry-Until" in slow and "Will-Retry-Until" not in unknown
    text = msg.get_payload()[0].get_content()
    assert text.index("Given up:") < text.index("<bob@example.org>")
    assert text.index("Still trying:") < text.index("<carol@example.net>")


def test_original_recipient_appears_when_an_alias_was_expanded():
    aliased = RecipientReport(
        recipient="bob@example.org", original="team@example.test", action="failed", status="5.2.2", diagnostic="mailbox full"
    )
    msg = parse(build([aliased]))
    _, recipient = groups(msg)
    assert recipient["Original-Recipient"] == "rfc822; team@example.test"
    assert recipient["Final-Recipient"] == "rfc822; bob@example.org"
    assert "(expanded from <team@example.test>)" in msg.get_payload()[0].get_content()


def test_multiple_recipients_each_get_a_group_in_order():
    reports = [
        RecipientReport(recipient=f"user{i}@example.org", action="failed", status="5.1.1", diagnostic="no such user")
        for i in range(5)
    ]
    per_message, *blocks = groups(parse(build(reports)))
    assert "Final-Recipient" not in per_message
    assert [b["Final-Recipient"] for b in blocks] == [f"rfc822; user{i}@example.org" for i in range(5)]


def test_our_own_words_become_an_smtp_style_diagnostic():
    local = RecipientReport(recipient="bob@example.org", action="failed", status="5.2.2", diagnostic="mailbox full")
    later = RecipientReport(recipient="eve@example.org", action="delayed", status="4.4.3", diagnostic="DNS lookup failed")
    as_reply = RecipientReport(recipient="dan@example.org", action="failed", status="5.7.1", diagnostic="554 5.7.1 no relay")
    _, a, b, c = groups(parse(build([local, later, as_reply])))
    assert a["Diagnostic-Code"] == "smtp; 550 5.2.2 mailbox full"
    assert b["Diagnostic-Code"] == "smtp; 450 4.4.3 DNS lookup failed"
    assert c["Diagnostic-Code"] == "smtp; 554 5.7.1 no relay"


def test_no_diagnostic_means_no_diagnostic_code_but_plain_words():
    bare = RecipientReport(recipient="bob@example.org", action="failed", status="4.4.7")
    msg = parse(build([bare]))
    _, recipient = groups(msg)
    assert "Diagnostic-Code" not in recipient
    assert "Last-Attempt-Date" not in recipient
    assert "in the queue for too long" in msg.get_payload()[0].get_content()


def test_a_multiline_remote_reply_is_joined_and_a_long_one_folded():
    words = " ".join(f"word{i}" for i in range(400))
    reply = f"550-5.7.1 first line\r\n550-5.7.1 {words}\r\n550 5.7.1 last line"
    report = RecipientReport(
        recipient="bob@example.org", action="failed", status="5.7.1", diagnostic=reply, diagnostic_from_remote=True
    )
    raw = build([report])
    assert b"Diagnostic-Code: smtp; 550-5.7.1 first line 550-5.7.1 word0" in raw
    _, recipient = groups(parse(raw))
    assert recipient["Diagnostic-Code"] == f"smtp; 550-5.7.1 first line 550-5.7.1 {words} 550 5.7.1 last line"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_utf8_addresses_use_the_global_types_of_rfc_6533():
    report = RecipientReport(
        recipient="用户+tag@例子.测试",
        original="info@example.org",
        action="failed",
        status="5.1.1",
        diagnostic="550 5.1.1 用户 unknown",
        diagnostic_from_remote=True,
    )
    raw = build([report], sender="アリス@example.test")
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    kinds = [part.get_content_type() for part in msg.get_payload()]
    assert kinds == ["text/plain", "message/global-delivery-status", "message/global-headers"]
    assert "用户+tag@例子.测试" in msg.get_payload()[0].get_content()

    text = raw.decode("utf-8")
    status = text.split("Content-Type: message/global-delivery-status\r\n", 1)[1].split("\r\n--", 1)[0]
    assert "Content-Transfer-Encoding: 8bit" in status
    # RFC 6533 §3 utf-8-addr-unitext: "+" is written as \x{2B}.
    assert "Final-Recipient: utf-8; 用户\\x{2B}tag@例子.测试\r\n" in status
    assert "Original-Recipient: rfc822; info@example.org\r\n" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1 用户 unknown\r\n" in status
    assert "To: <アリス@example.test>\r\n" in text


def test_an_ascii_envelope_gives_a_7bit_report_even_for_a_utf8_reply():
    report = RecipientReport(
        recipient="bob@example.org", action="failed", status="5.1.1", diagnostic="550 5.1.1 Benutzer unbekannt: Müller"
    )
    raw = build([report])
    assert raw.isascii()
    msg = parse(raw)
    assert msg.get_payload()[1].get_content_type() == "message/delivery-status"
    assert "Content-Transfer-Encoding" not in msg
    _, recipient = groups(msg)
    assert recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 Benutzer unbekannt: M?ller"


def test_8bit_original_headers_are_marked_8bit():
    raw = build([UNKNOWN], original_headers=ORIGINAL + "X-Note: grüße\r\n".encode())
    msg = parse(raw)
    headers = msg.get_payload()[2]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert headers["Content-Transfer-Encoding"] == "8bit"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert "X-Note: grüße\r\n".encode() in raw


def test_no_original_headers_means_no_third_part():
    msg = parse(build([UNKNOWN], original_headers=b""))
    assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "message/delivery-status"]
    assert "In-Reply-To" not in msg


def test_the_boundary_never_occurs_in_the_content():
    first = build([UNKNOWN])
    boundary = parse(first).get_boundary()
    tricky = ORIGINAL + f"X-Trap: --{boundary}\r\n".encode()
    raw = build([UNKNOWN], original_headers=tricky)
    msg = parse(raw)
    assert msg.get_boundary() != boundary
    assert len(msg.get_payload()) == 3
    assert f"X-Trap: --{boundary}" in msg.get_payload()[2].get_content()


def test_the_same_inputs_give_the_same_bytes_and_new_times_a_new_message_id():
    assert build([UNKNOWN]) == build([UNKNOWN])
    assert parse(build([UNKNOWN]))["Message-ID"] != parse(build([UNKNOWN], now=NOW + 1))["Message-ID"]


def test_no_bare_lf_or_cr_and_every_line_is_short():
    huge_header = b"X-Long: " + b"a" * 5000 + b"\r\n"
    cjk = "失败" * 800
    reports = [
        RecipientReport(
            recipient="bob@example.org",
            action="failed",
            status="5.1.1",
            diagnostic="550 " + "x" * 3000 + "\n\rmore\r",
            remote_mta="mx.example.org",
            diagnostic_from_remote=True,
        ),
        RecipientReport(recipient="ü@example.org", action="delayed", status="4.2.2", diagnostic=cjk),
    ]
    for headers in (huge_header, ORIGINAL.replace(b"\r\n", b"\n") + b"X-Cr: a\rb\n"):
        for chosen in ([reports[0]], reports):
            raw = build(chosen, original_headers=headers, will_retry_until=UNTIL)
            assert raw.endswith(b"\r\n")
            assert b"\n" not in raw.replace(b"\r\n", b"")
            assert b"\r" not in raw.replace(b"\r\n", b"")
            assert max(len(line) for line in raw.split(b"\r\n")) < 998
            parse(raw)


def test_header_block_stops_at_the_body_and_normalises_line_ends():
    message = b"A: 1\nB: 2\r\n folded\r\n\r\nbody line\r\nC: not a header\r\n"
    assert header_block(message) == b"A: 1\r\nB: 2\r\n folded\r\n"
    assert header_block(b"A: 1\r\nB: 2") == b"A: 1\r\nB: 2\r\n"
    assert header_block(b"\r\nbody only\r\n") == b""
    assert header_block(b"") == b""


def test_header_block_truncates_at_a_line_boundary():
    message = b"".join(f"X-H{i}: {'v' * 90}\r\n".encode() for i in range(2000)) + b"\r\nbody"
    block = header_block(message, limit=1000)
    assert len(block) <= 1000
    assert block.endswith(b"\r\n")
    assert message.startswith(block)
    assert len(block) + 100 > 1000  # as many whole lines as fit
    assert header_block(message) == header_block(message, limit=64 * 1024)
    assert len(header_block(message)) <= 64 * 1024
    assert header_block(b"A: 1\r\n\r\n", limit=3) == b""


def test_is_delivery_report_knows_a_bounce_from_ordinary_mail():
    assert is_delivery_report(build([UNKNOWN]))
    assert is_delivery_report(header_block(build([SLOW], sender="ü@example.test")))
    assert is_delivery_report(b'Content-Type: Multipart/Report;\r\n report-type="Delivery-Status"; boundary=x\r\n\r\n')
    assert not is_delivery_report(ORIGINAL)
    assert not is_delivery_report(ORIGINAL + b"Content-Type: multipart/mixed; boundary=x\r\n")
    assert not is_delivery_report(b"Content-Type: multipart/report; report-type=disposition-notification\r\n")
    assert not is_delivery_report(b"Content-Type: multipart/report\r\n")
    assert not is_delivery_report(b"Subject: delivery-status\r\n\r\nContent-Type: multipart/report; report-type=delivery-status\r\n")


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe\x00", b":\r\n\r\n", b"Content-Type: ;;;==\"\r\n", b"\n" * 10])
def test_is_delivery_report_never_raises(garbage):
    assert is_delivery_report(garbage) is False


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sender": ""}, "null sender"),
        ({"reports": []}, "at least one"),
        ({"reports": [RecipientReport(recipient="b@x", action="delivered", status="2.0.0")]}, "failed or delayed"),
        ({"reports": [RecipientReport(recipient="b@x", action="failed", status="550")]}, "enhanced status"),
    ],
)
def test_caller_mistakes_are_refused(change, message):
    args = {"reports": [UNKNOWN], **change}
    with pytest.raises(ValueError, match=message):
        build(**args)
