"""Compare the records to publish with what DNS answers: match, mismatch or missing.

Rules:
- Lookups go through dnsutil.Resolver with config.dns.resolver, the
  same server outbound delivery asks, all at once with a short timeout.
- "match" means the published record does the job, not that it is
  byte-identical: any DMARC or TLS-RPT record counts, an SPF record counts
  when it lets the MX hosts send and ends refusing everyone else (-all or
  ~all), an MX record when no other host is preferred over this server, a
  DKIM record when its key is ours (v= is optional), an MTA-STS id is the
  operator's own.
- A lookup that fails (no DNS server, timeout, an answer that cannot be
  read) is "unknown", reported as info: the check cannot tell, which is no
  fault of the records.
"""

from __future__ import annotations

import asyncio
import dataclasses

from hatoba.dnsutil.resolver import DnsError, NullMx, Resolver
from hatoba.i18n import T
from hatoba.selfcheck.findings import DnsRecord, Finding

LOOKUP_TIMEOUT = 5.0
TXT_PREFIX = {"DMARC": "v=dmarc1", "MTA-STS": "v=stsv1", "TLS-RPT": "v=tlsrptv1", "SPF": "v=spf1", "DKIM": "v=dkim1"}


async def compare_records(records: list[DnsRecord], resolver: Resolver) -> tuple[list[DnsRecord], list[Finding]]:
    results = await asyncio.gather(*(_published(r, resolver) for r in records), return_exceptions=True)
    hosts = {r.domain: r.value.split()[-1].rstrip(".").lower() for r in records if r.kind == "MX"}
    compared: list[tuple[DnsRecord, str]] = []
    errors: list[str] = []
    for record, result in zip(records, results):
        reason = ""
        if isinstance(result, NullMx):
            status, published = "mismatch", ("0 .",)
        elif isinstance(result, DnsError) and result.temporary:
            errors.append(str(result))
            status, published = "unknown", ()
        elif isinstance(result, DnsError):
            status, published = "missing", ()  # no such name, or no such records
        elif isinstance(result, Exception):
            # An answer the resolver could not make sense of: the check cannot
            # tell, which is no reason to stop the whole report.
            errors.append(T("unreadable answer for %(name)s (%(error)s)",
                            name=record.name, error=type(result).__name__))
            status, published = "unknown", ()
        elif isinstance(result, BaseException):
            raise result
        else:
            status, reason = _status(record, result, hosts.get(record.domain, ""))
            published = tuple(result)
        compared.append((dataclasses.replace(record, status=status, published=published), reason))
    if records and len(errors) == len(records):
        return [r for r, _ in compared], [Finding(
            "dns", "dns.lookup", "info", T("Published DNS records not checked"),
            T("No lookup succeeded (%(error)s).", error=errors[0]),
            T("Set [dns] resolver to a reachable DNS server, or run the check where DNS works (--no-dns skips this)."),
        )]
    findings = [_finding(r, reason) for r, reason in compared]
    return [r for r, _ in compared], findings + _mta_sts_mx([r for r, _ in compared])


def _mta_sts_mx(records: list[DnsRecord]) -> list[Finding]:
    """RFC 8461 §4.1: a sender that applies our MTA-STS policy delivers only to an MX the
    policy names (server.hostname); MX records naming other hosts fail it."""
    found = []
    with_policy = {r.domain for r in records if r.kind == "MTA-STS"}
    for record in records:
        if record.kind != "MX" or record.domain not in with_policy or record.status != "mismatch":
            continue
        ours = record.value.split()[-1].rstrip(".").lower()
        others = sorted({p.split()[-1].rstrip(".").lower() for p in record.published} - {ours})
        if not others:
            continue
        found.append(Finding(
            "dns", f"dns.{record.domain}.mta-sts-mx", "warning",
            T("%(domain)s: the MTA-STS policy does not name every MX host", domain=record.domain),
            T("The policy served for mta-sts.%(domain)s names mx: %(host)s, but the domain's MX records also "
              "name %(others)s. Senders that apply the policy in enforce mode refuse to deliver there; "
              "in testing mode they report each such delivery as a failure.",
              domain=record.domain, host=ours, others=", ".join(others)),
            T("Point every MX record of %(domain)s at %(host)s, or keep [mta_sts] mode = \"testing\" "
              "until they are.", domain=record.domain, host=ours),
        ))
    return found


async def _published(record: DnsRecord, resolver: Resolver) -> list[str]:
    if record.kind == "MX":
        hosts = await resolver.mx_hosts(record.name)
        return [f"{h.preference} {h.name}." for h in hosts if not h.implicit]
    if record.kind == "TLSA":
        return await resolver.tlsa(record.name)
    if record.kind == "SRV":
        return await resolver.srv(record.name)
    return await resolver.txt(record.name)


def _status(record: DnsRecord, published: list[str], host: str) -> tuple[str, str]:
    """(match, mismatch or missing; why it is a mismatch, when that needs saying)."""
    if record.kind == "MX":
        return _mx_status(record, published)
    if record.kind == "TLSA":
        wanted = _tlsa_key(record.value)
        if not published:
            return "missing", ""
        return ("match" if any(_tlsa_key(p) == wanted for p in published) else "mismatch"), ""
    if record.kind == "SRV":
        if not published:
            return "missing", ""
        # Priority and weight are the operator's; the port and the host must be ours.
        wanted = record.value.split()[2:]
        return ("match" if any(p.lower().split()[2:] == [w.lower() for w in wanted] for p in published)
                else "mismatch"), ""
    mine = [p for p in published if _is_kind(p, record.kind)]
    if not mine:
        # Other TXT records may share the domain's name (site verifications), never the others'.
        return ("mismatch" if published and record.kind != "SPF" else "missing"), ""
    if record.kind == "SPF":
        if len(mine) > 1:
            return "mismatch", T("there are several SPF records, which RFC 7208 §3.2 makes an error "
                                 "for every receiver")
        problem = _spf_problem(mine[0], record, host)
        return ("mismatch", problem) if problem else ("match", "")
    if record.kind == "DKIM":
        return ("match" if any(_dkim_p(p) == _dkim_p(record.value) for p in mine) else "mismatch"), ""
    return "match", ""


def _is_kind(txt: str, kind: str) -> bool:
    """Whether a TXT string is a record of `kind`: its version tag is a whole first term."""
    text = txt.strip().lower()
    if kind == "SPF":
        # RFC 7208 §4.5: "v=spf1" followed by a space or the end; "v=spf10" is not SPF.
        return text.split(" ", 1)[0] == "v=spf1"
    if kind == "DKIM":
        # RFC 6376 §3.6.1: v= is optional, but must come first when present.
        first = text.split(";", 1)[0].replace(" ", "")
        return first == "v=dkim1" or (not first.startswith("v=") and bool(_dkim_p(txt)))
    return text.startswith(TXT_PREFIX[kind])


def _mx_status(record: DnsRecord, published: list[str]) -> tuple[str, str]:
    """Match only when our host is among the MX hosts and none is preferred over it (RFC 5321 §5.1)."""
    ours = record.value.split()[-1].lower()
    hosts = []
    for entry in published:
        preference, _, name = entry.partition(" ")
        hosts.append((int(preference) if preference.isdigit() else 0, name.strip().lower()))
    if not hosts:
        return "missing", ""
    mine = [p for p, name in hosts if name == ours]
    if not mine:
        return "mismatch", ""
    better = [(p, name) for p, name in hosts if name != ours and p < min(mine)]
    if better:
        p, name = min(better)
        return "mismatch", T("%(host)s has a better preference (%(preference)s) than this server (%(ours)s), "
                             "so mail goes there first", host=name, preference=p, ours=min(mine))
    return "match", ""


def _tlsa_key(text: str) -> str:
    fields = text.split()
    return " ".join(fields[:3]) + " " + "".join(fields[3:]).lower()


def _spf_problem(spf: str, record: DnsRecord, host: str) -> str:
    """Why an SPF record does not do the job, or "" when it lets this server send and refuses strangers.

    RFC 7208 §5: mechanisms are tried left to right; "all" matches everyone,
    so its qualifier decides what strangers get, and +all or ?all lets any
    host send as the domain. redirect= hands the whole decision to another
    domain's record, which this check does not follow.
    """
    terms = [t.lower() for t in spf.split()[1:]]
    redirect = next((t for t in terms if t.startswith("redirect=")), None)
    if redirect is not None:
        return T("it hands the decision to another domain (%(redirect)s), which this check does not follow",
                 redirect=redirect)
    mechanisms = [t for t in terms if "=" not in t.split(":", 1)[0]]  # modifiers are name=value
    alls = [t for t in mechanisms if t.lstrip("+-~?") == "all"]
    if any(t in ("all", "+all", "?all") for t in alls):
        return T("it has +all or ?all, which lets any host on the internet send mail as the domain")
    if not alls or mechanisms[-1] not in ("-all", "~all"):
        return T("it does not end in -all or ~all, so it says nothing about hosts it does not list")
    allowed = {"mx", f"mx:{record.domain}"} | ({f"a:{host}"} if host else set())
    tried = mechanisms[: mechanisms.index(alls[0])]  # nothing after the first "all" is ever looked at
    if not any(t.lstrip("+").split("/", 1)[0] in allowed for t in tried if not t.startswith(("-", "~", "?"))):
        if host:
            return T("it does not let this server send (no mx or a:%(host)s before -all)", host=host)
        return T("it does not let this server send (no mx before -all)")
    return ""


def _dkim_p(txt: str) -> str:
    for tag in txt.split(";"):
        name, _, value = tag.partition("=")
        if name.strip() == "p":
            return "".join(value.split())
    return ""


def _finding(record: DnsRecord, reason: str = "") -> Finding:
    check = f"dns.{record.domain}.{record.kind}"
    if record.kind == "SRV":  # six of them per domain: _imaps._tcp.D -> dns.D.SRV.imaps
        check += "." + record.name.split(".", 1)[0].lstrip("_")
    label = f"{record.name} {record.kind}"
    published = "; ".join(record.published) or T("nothing")
    if record.status == "match":
        return Finding("dns", check, "ok", T("%(record)s: published", record=label),
                       T("DNS answers: %(published)s.", published=published))
    if record.status == "unknown":
        return Finding("dns", check, "info", T("%(record)s: not checked", record=label), T("The lookup failed."),
                       T("Run the check again when DNS answers."))
    if record.status == "missing":
        return Finding("dns", check, "warning", T("%(record)s: missing", record=label),
                       T("DNS has no %(kind)s record at %(name)s.", kind=record.kind, name=record.name),
                       T("Publish: %(line)s", line=record.zone_line()))
    if reason:
        explanation = T("DNS answers %(published)s, not what this server needs: %(reason)s.",
                        published=published, reason=reason)
    else:
        explanation = T("DNS answers %(published)s, not what this server needs.", published=published)
    return Finding("dns", check, "warning", T("%(record)s: differs", record=label), explanation,
                   T("Publish instead: %(line)s", line=record.zone_line()))
