"""What the self-check reports: findings with a severity, and DNS records to publish.

Rules:
- A finding is one title, one sentence of explanation and one sentence of
  fix, so the report reads the same whoever wrote the check.
- `check` is a stable dotted id ("listener.submission.encryption") that
  scripts and tests can rely on; titles may be reworded.
- Severities, worst first: critical (mail or passwords are exposed now),
  warning (fix soon), info (worth knowing), ok (checked and fine).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from hatoba.i18n import T

SEVERITIES = ("critical", "warning", "info", "ok")
NOTHING_TO_DO = T("Nothing to do.")

# Sections in the order the report prints them.
SECTIONS = {
    "config": T("Configuration"),
    "service": T("Service user"),
    "listeners": T("Listeners"),
    "relay": T("Relaying"),
    "relay-probe": T("Open relay test"),
    "delivery": T("Outgoing mail"),
    "incoming": T("Incoming mail checks"),
    "certificates": T("Certificates"),
    "files": T("Data folders"),
    "dns": T("DNS"),
}


@dataclass(frozen=True)
class Finding:
    section: str
    check: str
    severity: str
    title: str
    explanation: str
    fix: str = NOTHING_TO_DO

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if self.section not in SECTIONS:
            raise ValueError(f"unknown section {self.section!r}")

    def to_json(self) -> dict[str, str]:
        # Not dataclasses.asdict: it deep-copies, which a Text (made from its msgid and values) does not survive.
        return {f.name: str.__str__(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish. `value` is the record data as a zone file has it,
    except that TXT values are the plain text (quoting is done by zone_line)."""

    domain: str
    kind: str  # MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV, TLSA
    name: str  # owner name, without the final dot
    rtype: str  # MX, TXT, SRV, TLSA
    value: str
    note: str = ""
    status: str = "not checked"  # or: match, mismatch, missing, unknown
    published: tuple[str, ...] = ()

    def zone_line(self) -> str:
        if self.rtype != "TXT":
            return f"{self.name}. IN {self.rtype} {self.value}"
        # RFC 1035 §3.3.14: a character-string holds 255 octets; longer
        # values (DKIM keys) are several strings that readers join.
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
        quoted = " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
        return f"{self.name}. IN TXT {quoted}"

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["note"] = str.__str__(self.note)  # as plain str, see Finding.to_json
        data["published"] = list(self.published)
        data["zone_line"] = self.zone_line()
        return data


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    dns_records: list[DnsRecord] = field(default_factory=list)

    @property
    def has_critical(self) -> bool:
        return any(f.severity == "critical" for f in self.findings)

    @property
    def exit_status(self) -> int:
        """1 when anything is critical (scripts and monitoring can act on it), else 0."""
        return 1 if self.has_critical else 0

    def summary(self) -> dict[str, int]:
        counts = Counter(f.severity for f in self.findings)
        result = {severity: counts.get(severity, 0) for severity in SEVERITIES}
        result["exit_status"] = self.exit_status
        return result

    def to_json(self) -> dict[str, object]:
        return {
            "findings": [f.to_json() for f in self.findings],
            "dns_records": [r.to_json() for r in self.dns_records],
            "summary": self.summary(),
        }
