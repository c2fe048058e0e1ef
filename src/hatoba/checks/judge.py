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
from dataclasses import dataclass, field

from hatoba.checks import arc_verify, authresults, dkim_verify, dmarc, spf
from hatoba.checks.headers import from_addresses, header_fields
from hatoba.checks.lookup import Lookup
from hatoba.checks.dmarc_reports import ReportError, ReportStore
from hatoba.checks.dnsbl import DnsblScore, Site, SiteResult, check_site, parse_site
from hatoba.checks.greylisting import Greylisting
from hatoba.checks.rspamd import Rspamd, RspamdAnswer, RspamdUnavailable
from hatoba.config.schema import ChecksConfig

log = logging.getLogger(__name__)

ACCEPT, JUNK, DEFER, REJECT = "accept", "junk", "defer", "reject"
# rspamd's actions, as ours (reject: see [checks] rspamd_reject).
RSPAMD_ACTIONS = {"no action": ACCEPT, "greylist": DEFER, "soft reject": DEFER,
                  "add header": JUNK, "rewrite subject": JUNK, "reject": JUNK}
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


@dataclass
class _Findings:
    spf: spf.SpfResult | None = None
    helo: spf.SpfResult | None = None
    dkim: list[dkim_verify.DkimResult] = field(default_factory=list)
    dmarc: list[dmarc.DmarcResult] = field(default_factory=list)
    arc: arc_verify.ArcResult | None = None
    from_problem: str = ""
    rspamd: RspamdAnswer | None = None
    dnsbl: DnsblScore | None = None


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
        started = time.monotonic()
        fields = header_fields(message)
        found = _Findings()
        budget = self.config.timeout
        found.spf = spf.check(self.lookup, ip=facts.client_ip, mail_from=facts.mail_from, helo=facts.helo,
                              time_budget=budget)
        if facts.mail_from:
            left = max(1.0, budget - (time.monotonic() - started))
            found.helo = spf.check_helo(self.lookup, ip=facts.client_ip, helo=facts.helo, time_budget=left)
        found.dkim = dkim_verify.verify_all(message, fields, self.lookup)
        if any(f.name == "arc-seal" for f in fields):
            found.arc = arc_verify.verify_chain(message, self.lookup)
        addresses, found.from_problem = from_addresses(fields)
        domains = [a.rpartition("@")[2] for a in addresses]
        for domain in dict.fromkeys(domains):
            found.dmarc.append(dmarc.evaluate(self.lookup, domain, found.spf, found.dkim, rng=self.rng))
        if self.rspamd is not None:
            left = max(1.0, budget - (time.monotonic() - started))
            try:
                found.rspamd = self.rspamd.check(
                    message, ip=facts.client_ip, helo=facts.helo, mail_from=facts.mail_from,
                    recipients=facts.recipients, hostname=self.hostname, timeout=left,
                )
            except RspamdUnavailable as exc:
                self.rspamd.log_down(str(exc))
        found.dnsbl = facts.dnsbl
        verdict = dataclasses.replace(self._decide(found, domains, fields), from_address=(addresses or [""])[0])
        if self.greylisting is not None and verdict.action in (ACCEPT, JUNK):
            verdict = self._greylist(facts, found, verdict)
        if self.reports is not None and verdict.action != DEFER:  # a deferred message comes again
            self._record_for_reports(facts, found, verdict)
        return verdict

    def _record_for_reports(self, facts: MessageFacts, found: _Findings, verdict: Verdict) -> None:
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

    def _greylist(self, facts: MessageFacts, found: _Findings, verdict: Verdict) -> Verdict:
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

    # -- the decision ---------------------------------------------------------------------

    def _decide(self, found: _Findings, domains: list[str], fields: list) -> Verdict:  # type: ignore[type-arg]
        cfg = self.config
        action, reason, log_reason = ACCEPT, "", ""
        overridden = ""
        failing = [m for m in found.dmarc if m.result == "fail"]
        if failing and found.arc is not None and found.arc.passed and found.arc.sealer in self.trusted_sealers:
            overridden = found.arc.sealer  # a forwarder the operator trusts vouches for it
        for result in failing:
            if overridden:
                break
            if result.disposition == "reject" and cfg.dmarc_reject:
                action, log_reason = REJECT, "dmarc-reject"
                reason = (f"the DMARC policy of {result.from_domain} (p=reject) refuses mail from it"
                          " that neither SPF nor DKIM authenticates")
                break
            if result.disposition in ("reject", "quarantine") and action == ACCEPT:
                action, log_reason = JUNK, "dmarc-quarantine"
                reason = f"the DMARC policy of {result.from_domain} (p={result.policy}) says to treat it as spam"
        if action != REJECT and not overridden and cfg.local_forgery != "accept":
            ours = [d for d in domains if self.is_local_domain(d)]
            unauthenticated = [d for d in ours if not any(m.from_domain == d and m.passed for m in found.dmarc)]
            if unauthenticated:
                domain = unauthenticated[0]
                if cfg.local_forgery == "reject":
                    action, log_reason = REJECT, "local-forgery"
                    reason = (f"From: says {domain}, a domain of this server, but the message comes from"
                              " outside without passing DMARC for it; its users send through port 587 or 465")
                elif action == ACCEPT:
                    action, log_reason = JUNK, "local-forgery"
                    reason = f"From: claims {domain}, a domain of this server, without passing DMARC"
        if found.rspamd is not None:  # rspamd's verdict replaces our own score
            answer = found.rspamd
            score, threshold = answer.score, answer.required_score
            theirs = RSPAMD_ACTIONS[answer.action]
            if answer.action == "reject" and cfg.rspamd_reject and action != REJECT:
                action, log_reason = REJECT, "rspamd-reject"
                reason = f"the spam filter refuses it ({answer.message or f'score {score:.1f}'})"
            elif theirs == DEFER and action in (ACCEPT, JUNK):
                action, log_reason = DEFER, "rspamd-defer"
                reason = "the spam filter asks to try again later"
            elif theirs == JUNK and action == ACCEPT:
                action, log_reason = JUNK, "rspamd"
                reason = f"the spam filter says {answer.action} (score {score:.1f} of {threshold:.1f})"
        else:
            score, threshold = self._score(found), cfg.junk_score
            if action == ACCEPT and score >= threshold:
                action, log_reason = JUNK, "score"
                reason = f"score {score:.1f} reaches {threshold:.1f}"
        return Verdict(
            action=action,
            reason=reason,
            fields=self._fields(found, score, threshold, action, overridden),
            strip=tuple(sorted(
                authresults.forged_spans(fields, self.hostname)
                + [(f.start, f.end) for f in fields if f.name in OUR_FIELDS]
            )),
            summary=self._summary(found),
            score=score,
            log_reason=log_reason,
        )

    @staticmethod
    def _score(found: _Findings) -> float:
        """hatoba's own spam score from the authentication results (higher is worse)."""
        score = 0.0
        if found.spf is not None:
            score += {"fail": 2.0, "softfail": 1.0, "permerror": 0.5}.get(found.spf.result, 0.0)
        if any(d.result == "fail" for d in found.dkim) and not any(d.passed for d in found.dkim):
            score += 1.0
        if any(m.result == "fail" for m in found.dmarc):
            score += 2.0
        if found.from_problem:
            score += 1.5
        if found.dnsbl is not None:
            score += found.dnsbl.score  # below the refusal threshold: counts towards Junk; allowlists subtract
        return score

    def _fields(self, found: _Findings, score: float, threshold: float, action: str, overridden: str) -> str:
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
    def _summary(found: _Findings) -> str:
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
