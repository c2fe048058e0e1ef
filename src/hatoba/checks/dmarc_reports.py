"""DMARC aggregate reports (RFC 7489 §7.2), off by default ([checks] dmarc_reports).

- Recording: each judged message with a DMARC policy that asks for reports
  (rua=) adds one to its row of the day (table dmarc_results of the
  directory database), from the checks' threads.
- Sending: once a UTC day is over, the first worker builds one report per
  policy domain (the XML of RFC 7489 Appendix C, gzipped, in a MIME message
  with the subject §7.2.1.1 asks for) and queues it to the domain's rua
  addresses, then forgets the rows. A report address in another
  organizational domain gets the report only when that domain agrees
  (§7.1: a "v=DMARC1" TXT record at POLICY._report._dmarc.RUA-DOMAIN).
- Reports go out with the null sender, so a report that cannot be delivered
  is dropped, never bounced back and forth.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from xml.etree import ElementTree as ET

from hatoba.checks.dkim_verify import DkimResult
from hatoba.checks.dmarc import DmarcResult, organizational_domain
from hatoba.checks.lookup import Lookup, TemporaryLookupError
from hatoba.checks.spf import SpfResult
from hatoba.proto.address import AddressError, parse_domain
from hatoba.store.sqltx import DirectoryTables, write_transaction

log = logging.getLogger(__name__)

# A local part a report may be sent to: RFC 5322 dot-atom text, nothing a header could trip on.
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")

KEY_COLUMNS = ("day", "policy_domain", "source_ip", "header_from", "envelope_to", "disposition",
               "dkim_aligned", "spf_aligned", "reason", "auth")


class ReportError(Exception):
    """The report table cannot be used, or a report cannot be queued; one line for the operator."""


def _day(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%d")


class ReportStore(DirectoryTables):
    TABLES = ("dmarc_results",)
    WHAT = "DMARC report table"
    ERROR = ReportError

    def record(
        self, result: DmarcResult, *, when: float, source_ip: str, envelope_to: str, disposition: str,
        spf: SpfResult | None, dkim: Iterable[DkimResult],
    ) -> None:
        record = result.record
        if record is None or not record.rua:
            return
        policy = {"p": record.policy, "sp": record.subdomain_policy, "pct": record.percent,
                  "adkim": record.dkim_alignment, "aspf": record.spf_alignment}
        auth = {
            "dkim": [[d.domain, d.selector, d.result] for d in dkim if d.domain],
            "spf": [[spf.domain, spf.result]] if spf is not None else [],
        }
        row = (
            _day(when), result.policy_domain, source_ip, result.from_domain, envelope_to, disposition,
            "pass" if "dkim" in result.aligned else "fail", "pass" if "spf" in result.aligned else "fail",
            result.override_type, json.dumps(auth, separators=(",", ":")),
        )
        with write_transaction(self._conn(), self.path, ReportError) as conn:
            conn.execute(
                f"""INSERT INTO dmarc_results ({', '.join(KEY_COLUMNS)}, policy, rua, count)
                    VALUES ({', '.join('?' * len(KEY_COLUMNS))}, ?, ?, 1)
                    ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET count = count + 1,
                        policy = excluded.policy, rua = excluded.rua""",
                (*row, json.dumps(policy, separators=(",", ":")), json.dumps(list(record.rua))),
            )

    def due(self, before_day: str) -> dict[tuple[str, str], list[sqlite3.Row]]:
        """The rows of days before `before_day`, by (day, policy domain)."""
        conn = self._conn()
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM dmarc_results WHERE day < ? ORDER BY day, policy_domain",
                                (before_day,)).fetchall()
        except sqlite3.Error as exc:
            raise ReportError(f"directory database {self.path}: {exc}") from None
        finally:
            conn.row_factory = None
        groups: dict[tuple[str, str], list[sqlite3.Row]] = {}
        for row in rows:
            groups.setdefault((row["day"], row["policy_domain"]), []).append(row)
        return groups

    def forget(self, day: str, policy_domain: str) -> None:
        with write_transaction(self._conn(), self.path, ReportError) as conn:
            conn.execute("DELETE FROM dmarc_results WHERE day = ? AND policy_domain = ?", (day, policy_domain))



# -- the report ------------------------------------------------------------------------------


def _sub(parent: ET.Element, name: str, text: object | None = None) -> ET.Element:
    element = ET.SubElement(parent, name)
    if text is not None:
        element.text = str(text)
    return element


def report_xml(*, org_name: str, email: str, report_id: str, day: str, policy_domain: str,
               rows: list[sqlite3.Row]) -> bytes:
    """The aggregate report of one policy domain for one UTC day (RFC 7489 Appendix C)."""
    begin = int(datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())
    feedback = ET.Element("feedback")
    meta = _sub(feedback, "report_metadata")
    _sub(meta, "org_name", org_name)
    _sub(meta, "email", email)
    _sub(meta, "report_id", report_id)
    dates = _sub(meta, "date_range")
    _sub(dates, "begin", begin)
    _sub(dates, "end", begin + 86399)
    policy = json.loads(rows[-1]["policy"])
    published = _sub(feedback, "policy_published")
    _sub(published, "domain", policy_domain)
    for tag in ("adkim", "aspf", "p", "sp", "pct"):
        _sub(published, tag, policy[tag])
    for row in rows:
        record = _sub(feedback, "record")
        line = _sub(record, "row")
        _sub(line, "source_ip", _ip_text(row["source_ip"]))
        _sub(line, "count", row["count"])
        evaluated = _sub(line, "policy_evaluated")
        _sub(evaluated, "disposition", row["disposition"])
        _sub(evaluated, "dkim", row["dkim_aligned"])
        _sub(evaluated, "spf", row["spf_aligned"])
        if row["reason"]:
            _sub(_sub(evaluated, "reason"), "type", row["reason"])
        ids = _sub(record, "identifiers")
        if row["envelope_to"]:
            _sub(ids, "envelope_to", row["envelope_to"])
        _sub(ids, "header_from", row["header_from"])
        auth = json.loads(row["auth"])
        results = _sub(record, "auth_results")
        for domain, selector, result in auth["dkim"]:
            dkim = _sub(results, "dkim")
            _sub(dkim, "domain", domain)
            if selector:
                _sub(dkim, "selector", selector)
            _sub(dkim, "result", result)
        for domain, result in auth["spf"] or [[row["header_from"], "none"]]:
            spf = _sub(results, "spf")
            _sub(spf, "domain", domain)
            _sub(spf, "result", result)
    ET.indent(feedback)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(feedback, encoding="utf-8")


def _ip_text(ip: str) -> str:
    """IPv6 written out in full, as the report schema's address pattern has it."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return addr.exploded if addr.version == 6 else str(addr)


def report_message(*, xml: bytes, hostname: str, sender: str, policy_domain: str, report_id: str,
                   day: str, to: list[str], now: datetime.datetime) -> bytes:
    begin = int(datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = f"Report Domain: {policy_domain} Submitter: {hostname} Report-ID: <{report_id}>"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=hostname)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"DMARC aggregate report for {policy_domain} on {day} (UTC), from {hostname}.\n")
    filename = f"{hostname}!{policy_domain}!{begin}!{begin + 86399}.xml.gz"
    message.add_attachment(gzip.compress(xml, mtime=0), maintype="application", subtype="gzip", filename=filename)
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    policy_domain: str
    day: str
    to: tuple[str, ...]
    message: bytes


def report_addresses(lookup: Lookup, policy_domain: str, rua: Iterable[str]) -> list[str]:
    """The rua addresses that may get reports of `policy_domain` (RFC 7489 §7.1)."""
    out = []
    for uri in rua:
        address = uri.strip()[len("mailto:"):].split("!", 1)[0].strip()  # "!10m": a size limit
        local, at, domain = address.rpartition("@")
        if not at or not _LOCAL.match(local):
            continue  # not an address a report can be sent to (a published record is anyone's text)
        try:
            domain = parse_domain(domain)
        except AddressError:
            continue
        if organizational_domain(domain) != organizational_domain(policy_domain):
            try:
                agreed = any(t.decode("utf-8", "replace").replace(" ", "").startswith("v=DMARC1")
                             for t in lookup.txt(f"{policy_domain}._report._dmarc.{domain}"))
            except TemporaryLookupError:
                agreed = False  # this day's report goes without it; tomorrow's asks again
            if not agreed:
                continue
        out.append(f"{local}@{domain}")
    return list(dict.fromkeys(out))


class DmarcReporter:
    def __init__(self, store: ReportStore, lookup: Lookup, *, hostname: str, sender: str,
                 inject: Callable[[tuple[str, ...], bytes], None]) -> None:
        self.store, self.lookup = store, lookup
        self.hostname, self.sender = hostname, sender
        self.inject = inject  # queues one message to these recipients, durably

    def send_due(self, now: datetime.datetime) -> list[Queued]:
        """Queue the reports of every finished day; returns what was queued. A report that
        cannot be made is logged and dropped: one domain's odd record never holds up the others."""
        sent = []
        for (day, policy_domain), rows in self.store.due(now.strftime("%Y-%m-%d")).items():
            try:
                queued = self._send(day, policy_domain, rows, now)
            except ReportError:
                raise  # the queue cannot take it now: the rows stay for the next try
            except Exception:
                log.exception("the DMARC report for %s of %s was not made; dropped", policy_domain, day)
                queued = None
            if queued is not None:
                sent.append(queued)
            self.store.forget(day, policy_domain)
        return sent

    def _send(self, day: str, policy_domain: str, rows: list[sqlite3.Row], now: datetime.datetime) -> Queued | None:
        to = report_addresses(self.lookup, policy_domain, json.loads(rows[-1]["rua"]))
        if not to:
            return None
        report_id = f"{day}.{policy_domain}.{secrets.token_hex(6)}@{self.hostname}"
        xml = report_xml(org_name=self.hostname, email=self.sender, report_id=report_id, day=day,
                         policy_domain=policy_domain, rows=rows)
        message = report_message(xml=xml, hostname=self.hostname, sender=self.sender,
                                 policy_domain=policy_domain, report_id=report_id, day=day, to=to, now=now)
        self.inject(tuple(to), message)  # raises ReportError when the queue cannot take it
        return Queued(policy_domain, day, tuple(to), message)
