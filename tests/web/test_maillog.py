"""The mail log read back for the web admin: the fields as logs.quote() wrote them, one message's lines."""

from __future__ import annotations

import logging

from hatoba.logs import mail_log, read_fields
from hatoba.web.admin.maillog import TAIL_BYTES, lines_of, recent_deliveries


def test_fields_read_back_as_they_were_written(caplog):
    values = ["<a@example.test>", '<"odd user"@example.test>', "back\\slash and space", "é ü", "tab\there", ""]
    with caplog.at_level(logging.INFO, logger="hatoba.mail"):
        for value in values:
            mail_log("delivered", qid="q1", to=value, relay="local")
    assert len(caplog.records) == len(values)
    for record, value in zip(caplog.records, values):
        event, _, rest = record.getMessage().partition(" ")
        assert event == "delivered" and read_fields(rest) == {"qid": "q1", "to": value, "relay": "local"}


def test_recent_deliveries_and_one_messages_lines_from_the_end_of_the_file(tmp_path):
    log = tmp_path / "hatoba.log"
    head = "x" * (TAIL_BYTES + 10) + "\n"  # more than is read: only the end counts
    lines = [
        "2026-12-07 05:00:00,001 INFO [s1] hatoba.mail: accepted qid=aaa from=<s@example.org>",
        "2026-12-07 05:00:01,002 INFO [s1] hatoba.mail: delivered qid=aaa to=<b@example.test> relay=local",
        "2026-12-07 05:00:02,003 INFO [s2] hatoba.net.server: not a mail line qid=aaa",
        '2026-12-07 05:00:03,004 INFO [s3] hatoba.mail: bounced qid=aaab to="<x y@example.test>" reason=gone',
    ]
    log.write_text(head + "\n".join(lines) + "\n")
    recent = recent_deliveries(log)
    assert [(stamp, event, fields.get("to")) for stamp, event, fields in recent] == [
        ("2026-12-07 05:00:03", "bounced", "<x y@example.test>"),
        ("2026-12-07 05:00:01", "delivered", "<b@example.test>"),
    ]
    assert lines_of(log, "aaa") == [  # not aaab, not the other logger's line
        "2026-12-07 05:00:00 accepted qid=aaa from=<s@example.org>",
        "2026-12-07 05:00:01 delivered qid=aaa to=<b@example.test> relay=local",
    ]
    assert recent_deliveries(tmp_path / "missing.log") == [] and lines_of(tmp_path / "missing.log", "aaa") == []
