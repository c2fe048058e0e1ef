"""The judgement of one message from another server: run the checks, decide, write the fields.

Blocking code (pyspf, dkimpy, the DNS lookups): the SMTP session calls
`Judge.assess` in a thread of its own pool (checks.runner), never on the event
loop. Nothing here writes files or talks SMTP; the verdict says what to do:
accept (with the fields to add), deliver to Junk, or refuse with a reason.
"""

from __future__ import annotations

import dataclasses
import logging

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hatoba.checks import arc_verify, authresults, dkim_verify, dmarc, spf
from hatoba.checks.headers import Field, Header, parse_header, read_from
from hatoba.checks.lookup import Lookup, NeedsNetwork, TemporaryLookupError
from hatoba.checks.dmarc_reports import ReportError, ReportStore
from hatoba.checks.dnsbl import DnsblScore, Site, SiteResult, check_site, parse_site
from hatoba.checks.greylisting import Greylisting
from hatoba.checks.policy import ACCEPT, DEFER, JUNK, REJECT, Findings, decide
from hatoba.checks.rspamd import Rspamd, RspamdUnavailable
from hatoba.config.schema import ChecksConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FROM_DOMAINS = 5  # From domains given a DMARC evaluation; more is a problem in itself
MAX_ARC_SETS = 10  # RFC 8617 allows 50; real chains have a few
# What a message judged on the event loop (from the cache) may have at most; more goes to a thread.
LOOP_MAX_FIELDS = 100
LOOP_MAX_SIGNED_NAMES = 60

# Fields only we may write: any copy that arrives from outside is removed.
OUR_FIELDS = ("x-spam", "x-spam-score")


@dataclass(frozen=True)
class MessageFacts:
    """What the SMTP session knows about the message besides its bytes."""

    client_ip: str
    helo: str
    mail_from: str  # "" for the null sender
    recipients: tuple[str, ...] = ()
    dnsbl: DnsblScore | None = None  # the client's blocklist score (below the refusal threshold)


@dataclass(frozen=True)
class Verdict:
    action: str  # accept | junk | defer (451, try later) | reject
    reason: str  # in words: the reply text of a refusal, the log's note of a Junk delivery
    fields: str  # header fields to add below our Received (CRLF-terminated)
    strip: tuple[tuple[int, int], ...] = ()  # byte ranges of forged fields to remove first
    summary: str = ""  # "spf=pass dkim=pass dmarc=pass", for the mail log
    score: float = 0.0
    log_reason: str = ""  # one word for the mail log and the metrics: dmarc-reject, local-forgery, ...
    from_address: str = ""  # the (first) address of the From field
    from_authenticated: bool = False  # its domain passed DMARC, or aligned SPF/DKIM where none is published
    reply: tuple[int, str] = (550, "5.7.1")  # the code and enhanced status of a refusal


class Judge:
    def __init__(
        self,
        config: ChecksConfig,
        *,
        hostname: str,
        is_local_domain: Callable[[str], bool],
        lookup: Lookup,
        rspamd: Rspamd | None = None,
        greylisting: Greylisting | None = None,
        reports: ReportStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.hostname = hostname
        self.is_local_domain = is_local_domain
        self.lookup = lookup
        self.rspamd = rspamd
        self.greylisting = greylisting
        self.reports = reports
        self.sites = tuple(parse_site(text) for text in config.dnsbl)
        self.rng = rng or random.Random()
        self.trusted_sealers = frozenset(s.lower().rstrip(".") for s in config.trusted_arc_sealers)

    def assess(self, facts: MessageFacts, message: bytes) -> Verdict:
        """The verdict on `message`. Every DNS lookup ends by one deadline ([checks] timeout);
        each check that fails is logged and counts as temperror, never as a pass."""
        deadline = time.monotonic() + self.config.timeout
        with self.lookup.deadline(deadline):
            return self._assess(facts, message, deadline)

    @property
    def judges_from_cache(self) -> bool:
        """Whether assess_from_cache may be tried: nothing it would do writes or talks to a service."""
        return self.rspamd is None and self.greylisting is None and self.reports is None

    def assess_from_cache(self, facts: MessageFacts, message: bytes) -> Verdict:
        """The same verdict, when every answer it needs is in the cache (a sender seen a moment
        ago), without waiting: the event loop may call it. Raises NeedsNetwork otherwise."""
        with self.lookup.cache_only():
            return self.assess(facts, message)

    def _assess(self, facts: MessageFacts, message: bytes, deadline: float) -> Verdict:
        found = Findings()
        header = parse_header(message)
        fields = header.fields
        refusal = self.refusal_for(header)
        if refusal is not None:  # refused before any lookup: no reader could be shown it safely
            return refusal
        if header.oddities:
            found.broken.append(f"malformed header: {header.oddities[0]}")
        if self.lookup.answering_from_cache_only():
            self._cheap_enough_for_the_loop(fields)
        sender = read_from(fields)
        domains = sender.domains[:MAX_FROM_DOMAINS]
        found.from_problem = sender.problem or (
            "From names too many domains" if len(sender.domains) > MAX_FROM_DOMAINS else "")
        found.from_missing = sender.missing
        # The policies first: they decide the refusals, and once in the cache they are
        # there for the evaluation below even if the checks in between use up the time.
        # Each domain gets its share of the time: slow names first must not starve the last.
        share = self.config.timeout / max(1, len(domains))
        for domain in domains:
            self._stage("dmarc", found, lambda d=domain: self._prefetch_policy(d, found, share), None)
        found.spf = self._stage(
            "spf", found, lambda: spf.check(self.lookup, ip=facts.client_ip, mail_from=facts.mail_from,
                                            helo=facts.helo, time_budget=self._left(deadline)),
            spf.SpfResult("temperror", "mailfrom" if facts.mail_from else "helo",
                          (facts.mail_from or f"@{facts.helo}").rpartition("@")[2].lower(), "check failed"))
        if facts.mail_from:
            found.helo = self._stage(
                "spf", found, lambda: spf.check_helo(self.lookup, ip=facts.client_ip, helo=facts.helo,
                                                     time_budget=self._left(deadline)), None)
        found.dkim = self._stage("dkim", found, lambda: dkim_verify.verify_all(message, fields, self.lookup), [])
        seals = sum(1 for f in fields if f.name == "arc-seal")
        if seals and self.lookup.answering_from_cache_only():
            raise NeedsNetwork("ARC")  # dkimpy's ARC code is not worth a cache-only path
        if seals > MAX_ARC_SETS:
            found.arc = arc_verify.ArcResult("fail", reason=f"{seals} ARC sets, more than {MAX_ARC_SETS}")
        elif seals:
            found.arc = self._stage("arc", found, lambda: arc_verify.verify_chain(message, self.lookup),
                                    arc_verify.ArcResult("temperror", reason="check failed"))
        for domain in domains:
            found.dmarc.append(self._stage(
                "dmarc", found, lambda d=domain: dmarc.evaluate(self.lookup, d, found.spf, found.dkim, rng=self.rng,
                                                policy_found=found.policies.get(d)),
                dmarc.DmarcResult("temperror", domain, reason="check failed")))
        if self.rspamd is not None:
            try:
                found.rspamd = self.rspamd.check(
                    message, ip=facts.client_ip, helo=facts.helo, mail_from=facts.mail_from,
                    recipients=facts.recipients, hostname=self.hostname, timeout=self._left(deadline),
                )
            except RspamdUnavailable as exc:
                self.rspamd.log_down(str(exc))
        found.dnsbl = facts.dnsbl
        verdict = self._decide(found, domains, fields, facts.recipients)
        authenticated = [m.from_domain for m in found.dmarc if m.passed or m.result == "none" and m.aligned]
        verdict = dataclasses.replace(
            verdict, from_address=(sender.addresses or [""])[0],
            from_authenticated=bool(sender.addresses) and not found.from_problem
            and sender.addresses[0].rpartition("@")[2] in authenticated,
        )
        if self.greylisting is not None and verdict.action in (ACCEPT, JUNK):
            verdict = self._greylist(facts, found, verdict)
        if self.reports is not None and verdict.action != DEFER:  # a deferred message comes again
            self._record_for_reports(facts, found, verdict)
        return verdict

    def _prefetch_policy(self, domain: str, found: Findings, share: float) -> None:
        own = time.monotonic() + share
        try:
            with self.lookup.deadline(own):  # within the message's own deadline
                found.policies[domain] = dmarc.find_record(self.lookup, domain)
        except TemporaryLookupError:
            pass  # asked again, and reported, by the evaluation

    def _ours(self, domain: str) -> bool:
        """`domain` or a parent of it (below its public suffix) is one of ours: "it@mail.example.org"
        claims example.org to a reader as much as "it@example.org" does."""
        org = dmarc.organizational_domain(domain)
        labels = domain.split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            if self.is_local_domain(candidate):
                return True
            if candidate == org:
                break
        return False

    @staticmethod
    def _cheap_enough_for_the_loop(fields: list[Field]) -> None:
        """On the event loop only what is cheap: few fields, few names signed, no ARC (its
        cost is in dkimpy's header selection, which grows with both)."""
        signed_names = sum(f.value.count(":") + 1 for f in fields if f.name == "dkim-signature")
        if len(fields) > LOOP_MAX_FIELDS or signed_names > LOOP_MAX_SIGNED_NAMES \
                or any(f.name == "arc-seal" for f in fields):
            raise NeedsNetwork("too much work for the event loop")

    def refusal_for(self, header: Header) -> Verdict | None:
        """The refusal of a header section that programs may read differently, or None."""
        if not header.defect:
            return None
        return Verdict(REJECT, f"{header.defect}; fix the sending program", "", self.strip_spans(header.fields),
                       summary="malformed-header", log_reason="malformed-header", reply=(550, "5.6.0"))

    def strip_spans(self, fields: list[Field]) -> tuple[tuple[int, int], ...]:
        """The fields only we may write that arrived from outside: cut out before queuing."""
        return tuple(sorted(authresults.forged_spans(fields, self.hostname)
                            + [(f.start, f.end) for f in fields if f.name in OUR_FIELDS]))

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.1, deadline - time.monotonic())

    @staticmethod
    def _stage(name: str, found: Findings, run: Callable[[], T], failed: T) -> T:
        """One check; an exception in it (a library meeting input it did not expect) is logged and
        gives `failed`, and the message is marked so it cannot pass for judged."""
        try:
            return run()
        except Exception:
            log.exception("the %s check failed on a message; its result counts as temperror", name)
            found.broken.append(f"{name} check failed")
            return failed

    def _record_for_reports(self, facts: MessageFacts, found: Findings, verdict: Verdict) -> None:
        assert self.reports is not None
        disposition = {"dmarc-reject": "reject", "dmarc-quarantine": "quarantine"}.get(verdict.log_reason, "none")
        envelope_to = (facts.recipients[0].rpartition("@")[2].lower() if facts.recipients else "")
        for result in found.dmarc:
            if result.record is None or not result.record.rua:
                continue
            if result.result == "fail" and disposition == "none" and not result.override_type \
                    and result.disposition != "none":
                result = dataclasses.replace(result, override_type="local_policy")  # e.g. dmarc_reject = false
            try:
                self.reports.record(result, when=time.time(), source_ip=facts.client_ip, envelope_to=envelope_to,
                                    disposition=disposition if result.result == "fail" else "none",
                                    spf=found.spf, dkim=found.dkim)
            except ReportError as exc:
                log.error("DMARC report data not recorded: %s", exc)

    def _greylist(self, facts: MessageFacts, found: Findings, verdict: Verdict) -> Verdict:
        assert self.greylisting is not None
        authenticated = ""
        if found.spf is not None and found.spf.passed and found.spf.identity == "mailfrom":
            authenticated = f"SPF ({found.spf.domain})"
        elif any(d.passed for d in found.dkim):
            authenticated = f"DKIM ({next(d.domain for d in found.dkim if d.passed)})"
        decision = self.greylisting.decide(facts.client_ip, facts.mail_from, facts.recipients,
                                           authenticated=authenticated)
        if not decision.wait:
            return verdict
        minutes = max(1, round(decision.retry_in / 60))
        return dataclasses.replace(
            verdict, action=DEFER, log_reason="greylisted",
            reason=f"greylisted, please retry in {minutes} minute{'s' if minutes != 1 else ''}",
        )

    def dnsbl_site(self, ip: str, site: Site) -> SiteResult:
        """One blocklist's answer for `ip` (blocking; the runner asks all sites at once)."""
        return check_site(self.lookup, ip, site)

    # -- the verdict ----------------------------------------------------------------------

    def _decide(self, found: Findings, domains: list[str], fields: list[Field],
                recipients: tuple[str, ...]) -> Verdict:
        decision = decide(self.config, found, domains, fields, recipients,
                          trusted_sealers=self.trusted_sealers, is_ours=self._ours_of)
        return Verdict(
            action=decision.action,
            reason=decision.reason,
            fields=self._fields(found, decision.score, decision.threshold, decision.action, decision.overridden),
            strip=self.strip_spans(fields),
            summary=self._summary(found),
            score=decision.score,
            log_reason=decision.log_reason,
        )

    def _ours_of(self, domains: list[str]) -> list[str]:
        if self.lookup.answering_from_cache_only():
            raise NeedsNetwork("the directory")  # a database read: not on the event loop
        return [d for d in domains if self._ours(d)]

    def _fields(self, found: Findings, score: float, threshold: float, action: str, overridden: str) -> str:
        dmarc_results = list(found.dmarc)
        if overridden:
            dmarc_results = [
                dataclasses.replace(m, disposition="none", override=f"ARC sealed by trusted {overridden}",
                                    override_type="trusted_forwarder")
                if m.result == "fail" else m for m in dmarc_results
            ]
        if not dmarc_results and found.from_problem:
            dmarc_results = [dmarc.DmarcResult("permerror", "", reason=found.from_problem)]
        spf_results = [r for r in (found.spf, found.helo) if r is not None]
        text = authresults.format_field(
            self.hostname, spf=spf_results, dkim=found.dkim, dmarc=dmarc_results,
            arc=found.arc.result if found.arc is not None else "",
        )
        spam = "Yes" if action == JUNK else "No"
        by = " (rspamd)" if found.rspamd is not None else ""
        return text + f"X-Spam: {spam}\r\nX-Spam-Score: {score:.1f} / {threshold:.1f}{by}\r\n"

    @staticmethod
    def _summary(found: Findings) -> str:
        parts = []
        if found.spf is not None:
            parts.append(f"spf={found.spf.result}")
        parts.append("dkim=" + (",".join(f"{d.result}:{d.domain}" for d in found.dkim) or "none"))
        parts.append("dmarc=" + (",".join(f"{m.result}:{m.from_domain}" for m in found.dmarc) or "none"))
        if found.arc is not None:
            parts.append(f"arc={found.arc.result}")
        if found.dnsbl is not None and found.dnsbl.listed_by:
            parts.append(f"dnsbl={found.dnsbl.summary}")
        if found.rspamd is not None:
            parts.append(f"rspamd={found.rspamd.action.replace(' ', '-')}:{found.rspamd.score:.1f}")
        return " ".join(parts)
