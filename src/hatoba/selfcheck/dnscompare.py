"""Compare the records to publish with what DNS answers: match, mismatch or missing.

Rules:
- Lookups go through dnsutil.Resolver with config.delivery.resolver, the
  same server outbound delivery asks, all at once with a short timeout.
- "match" means the published record does the job, not that it is
  byte-identical: any DMARC or TLS-RPT record counts, an SPF record counts
  when it lets the MX hosts send, an MTA-STS id is the operator's own.
- A lookup that fails (no DNS server, timeout) is "unknown", reported as
  info: the check cannot tell, which is no fault of the records.
"""

from __future__ import annotations

import asyncio
import dataclasses

from hatoba.dnsutil.resolver import DnsError, NullMx, Resolver
from hatoba.selfcheck.findings import DnsRecord, Finding

LOOKUP_TIMEOUT = 5.0
TXT_PREFIX = {"DMARC": "v=dmarc1", "MTA-STS": "v=stsv1", "TLS-RPT": "v=tlsrptv1", "SPF": "v=spf1", "DKIM": "v=dkim1"}


CheckResolver = Resolver  # the delivery resolver answers every lookup the check makes


async def compare_records(records: list[DnsRecord], resolver: CheckResolver) -> tuple[list[DnsRecord], list[Finding]]:
    results = await asyncio.gather(*(_published(r, resolver) for r in records), return_exceptions=True)
    compared: list[DnsRecord] = []
    errors: list[str] = []
    for record, result in zip(records, results):
        if isinstance(result, NullMx):
            status, published = "mismatch", ("0 .",)
        elif isinstance(result, DnsError) and result.temporary:
            errors.append(str(result))
            status, published = "unknown", ()
        elif isinstance(result, DnsError):
            status, published = "missing", ()  # no such name, or no such records
        elif isinstance(result, BaseException):
            raise result
        else:
            status, published = _status(record, result), tuple(result)
        compared.append(dataclasses.replace(record, status=status, published=published))
    if records and len(errors) == len(records):
        return compared, [Finding(
            "dns", "dns.lookup", "info", "Published DNS records not checked",
            f"No lookup succeeded ({errors[0]}).",
            "Set [delivery] resolver to a reachable DNS server, or run the check where DNS works (--no-dns skips this).",
        )]
    return compared, [_finding(r) for r in compared]


async def _published(record: DnsRecord, resolver: CheckResolver) -> list[str]:
    if record.kind == "MX":
        hosts = await resolver.mx_hosts(record.name)
        return [f"{h.preference} {h.name}." for h in hosts if not h.implicit]
    if record.kind == "TLSA":
        return await resolver.tlsa(record.name)
    return await resolver.txt(record.name)


def _status(record: DnsRecord, published: list[str]) -> str:
    if record.kind == "MX":
        ours = record.value.split()[-1].lower()
        hosts = [p.split()[-1].lower() for p in published]
        return "missing" if not hosts else "match" if ours in hosts else "mismatch"
    if record.kind == "TLSA":
        wanted = _tlsa_key(record.value)
        if not published:
            return "missing"
        return "match" if any(_tlsa_key(p) == wanted for p in published) else "mismatch"
    prefix = TXT_PREFIX[record.kind]
    mine = [p for p in published if p.strip().lower().startswith(prefix)]
    if not mine:
        # Other TXT records may share the domain's name (site verifications), never the others'.
        return "mismatch" if published and record.kind != "SPF" else "missing"
    if record.kind == "SPF":
        return "match" if len(mine) == 1 and _spf_allows_mx(mine[0], record) else "mismatch"
    if record.kind == "DKIM":
        return "match" if any(_dkim_p(p) == _dkim_p(record.value) for p in mine) else "mismatch"
    return "match"


def _tlsa_key(text: str) -> str:
    fields = text.split()
    return " ".join(fields[:3]) + " " + "".join(fields[3:]).lower()


def _spf_allows_mx(spf: str, record: DnsRecord) -> bool:
    """True when the record lets this server send: the mx mechanism, or a:/include of it."""
    terms = [t.lower().lstrip("+") for t in spf.split()[1:]]
    return "mx" in terms or f"mx:{record.domain}" in terms or spf.strip().lower() == record.value.lower()


def _dkim_p(txt: str) -> str:
    for tag in txt.split(";"):
        name, _, value = tag.partition("=")
        if name.strip() == "p":
            return "".join(value.split())
    return ""


def _finding(record: DnsRecord) -> Finding:
    check = f"dns.{record.domain}.{record.kind}"
    label = f"{record.name} {record.kind}"
    published = "; ".join(record.published) or "nothing"
    if record.status == "match":
        return Finding("dns", check, "ok", f"{label}: published", f"DNS answers: {published}.")
    if record.status == "unknown":
        return Finding("dns", check, "info", f"{label}: not checked", "The lookup failed.",
                       "Run the check again when DNS answers.")
    if record.status == "missing":
        return Finding("dns", check, "warning", f"{label}: missing", f"DNS has no {record.kind} record at {record.name}.",
                       f"Publish: {record.zone_line()}")
    return Finding("dns", check, "warning", f"{label}: differs", f"DNS answers {published}, not what this server needs.",
                   f"Publish instead: {record.zone_line()}")
