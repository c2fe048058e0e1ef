"""Runs every part of the self-check in report order and collects one Report.

Rules:
- Every part runs even after another found something critical: the
  operator sees all problems of a setup at once.
- The config is checked as written, unvalidated: the setups that
  validation refuses (an open relay) are exactly the ones to report.
- Nothing is written: the live probe stops before DATA, DNS is only read.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass

from hatoba.acme.files import served_tls
from hatoba.config.schema import Config
from hatoba.config.validate import find_problems
from hatoba.dkim.keys import DkimError, DkimKey, list_keys
from hatoba.dnsutil.resolver import Resolver
from hatoba.i18n import T, Text, capitalized
from hatoba.selfcheck.certificates import certificate_findings, read_leaf
from hatoba.selfcheck.dnscompare import LOOKUP_TIMEOUT, compare_records
from hatoba.selfcheck.dnsrecords import expected_records
from hatoba.selfcheck.findings import Finding, Report
from hatoba.selfcheck.folders import folder_findings
from hatoba.selfcheck.incoming import incoming_findings
from hatoba.selfcheck.listeners import listener_findings
from hatoba.selfcheck.outbound import outbound_findings
from hatoba.selfcheck.legacy_passwords import legacy_password_findings
from hatoba.selfcheck.postmaster import postmaster_findings
from hatoba.selfcheck.relay_policy import relay_findings
from hatoba.selfcheck.relay_probe import probe_findings, probe_target
from hatoba.selfcheck.service import service_findings
from hatoba.store.api import DirectoryError
from hatoba.store.directory import Directory


@dataclass(frozen=True)
class Options:
    live: bool = True  # run the open-relay test against port 25
    dns: bool = True  # compare the records with what DNS answers
    probe: tuple[str, int] | None = None  # test this address instead of the smtp listener's
    now: datetime.datetime | None = None


def run(config: Config, options: Options = Options()) -> Report:
    now = options.now or datetime.datetime.now(datetime.timezone.utc)
    report = Report()
    add = report.findings.extend
    add(config_findings(find_problems(config)))
    add(service_findings(config))
    add(listener_findings(config))
    add(relay_findings(config))
    add(postmaster_findings(config))
    add(legacy_password_findings(config))
    domains, domain_findings = hosted_domains(config)
    if options.live:
        our_domain = domains[0] if domains else config.server.hostname
        add(probe_findings(config, probe_target(config, options.probe), our_domain))
    else:
        add([Finding("relay-probe", "relay-probe.skipped", "info", T("Open relay test skipped (--no-live)"),
                     T("No connection was made to port 25."), T("Run without --no-live to test the running server."))])
    add(outbound_findings(config))
    add(incoming_findings(config))
    add(certificate_findings(config, now))
    add(folder_findings(config))
    keys, key_findings = dkim_keys(config)
    served = served_tls(config).cert  # the ACME CA's certificate once there is one: its key for TLSA
    leaf = read_leaf(served) if served.is_file() else None
    records, dns_findings = expected_records(config, domains, keys, leaf)
    add(domain_findings + key_findings + dns_findings)
    if not options.dns and records:
        add([Finding("dns", "dns.lookup", "info", T("Published DNS records not checked (--no-dns)"),
                     T("The records below are what to publish; DNS was not asked what is there now."),
                     T("Run without --no-dns to compare them with DNS."))])
    elif records:
        try:
            resolver = Resolver(config.dns.resolver, timeout=LOOKUP_TIMEOUT)
        except ValueError as exc:
            add([Finding("dns", "dns.lookup", "info", T("Published DNS records not checked"),
                         T("dns.resolver: %(detail)s.", detail=str(exc)),
                         T("Fix [dns] resolver (host:port of a DNS server) or leave it empty for the system's."))])
        else:
            report.dns_records, compared = asyncio.run(compare_records(records, resolver))
            add(compared)
            return report
    report.dns_records = records
    return report


def config_findings(problems: list[str]) -> list[Finding]:
    """validate.find_problems lines ("key: what is wrong; what to do") as critical findings."""
    if not problems:
        return [Finding("config", "config.valid", "ok", T("Config file valid"),
                        T("Every setting is understood and consistent."))]
    findings = []
    for problem in problems:
        key, what, fix = _problem_parts(problem)
        findings.append(Finding(
            "config", f"config.{key}", "critical", T("%(key)s: refused by hatoba serve", key=key),
            T("%(detail)s.", detail=_sentence(what)),
            T("%(detail)s.", detail=_sentence(fix)) if fix is not None else T("Change the setting named above."),
        ))
    return findings


def _problem_parts(problem: str) -> tuple[str, str, str | None]:
    """The key, what is wrong and what to do (None: nothing said) of a find_problems line.

    The line is split as its English reads ("key: what; fix"; a line whose first
    word is no key is under "config"). Where validate.py made a part as a Text of
    its own (the values problem and fix, see validate._line) and it is that
    English piece, the Text is the part, so it can be said in another language."""
    key, sep, rest = problem.partition(": ")
    if not sep or " " in key:
        key, rest = "config", problem
    what, sep, fix = rest.rpartition("; ")
    if not sep:
        what, fix = rest, None
    values = problem.values if isinstance(problem, Text) else {}
    made_what, made_fix = values.get("problem", problem), values.get("fix")
    if made_what == what:
        what = made_what
    if fix is not None and made_fix == fix:
        fix = made_fix
    return key, what, fix


def hosted_domains(config: Config) -> tuple[list[str], list[Finding]]:
    path = config.paths.directory_db
    if not path.is_file():
        return [], [Finding("dns", "dns.directory", "warning", T("No directory database"),
                            T("%(path)s does not exist, so no domain is hosted yet.", path=str(path)),
                            T("Add a domain with: hatoba domain add DOMAIN"))]
    try:
        with Directory(path) as directory:
            return directory.list_domains(), []
    except DirectoryError as exc:
        return [], [Finding("dns", "dns.directory", "warning", T("Directory unreadable"),
                            T("%(detail)s.", detail=_sentence(str(exc))),
                            T("Check the data folder's permissions, then run the check again."))]


def dkim_keys(config: Config) -> tuple[list[DkimKey], list[Finding]]:
    try:
        return list_keys(config.paths.dkim_dir), []
    except DkimError as exc:
        return [], [Finding("dns", "dns.dkim", "warning", T("DKIM keys unreadable"),
                            T("%(detail)s.", detail=_sentence(str(exc))),
                            T("Make a new key with: hatoba dkim keygen DOMAIN"))]


def _sentence(text: str) -> str:
    """`text` begun with a capital and without a final full stop (the T() around it adds one);
    a Text stays one (translatable) unless there was space or a stop to remove."""
    stripped = text.strip().rstrip(".")
    return capitalized(text if stripped == text else stripped)
