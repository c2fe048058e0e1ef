"""The decision on one judged message: its findings, the operator's policy, an action.

Pure rules, no I/O: checks/judge.py gathers the findings (SPF, DKIM, DMARC, ARC,
rspamd, blocklists) and turns the decision into a verdict with its fields.
The one question the rules ask outside is whether a domain is one of ours
(`is_ours`), which the caller answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import authres
import authres.arc
import authres.dmarc

from hatoba.checks import dmarc
from hatoba.checks.arc_verify import ArcResult
from hatoba.checks.dkim_verify import DkimResult
from hatoba.checks.spf import SpfResult
from hatoba.checks.dnsbl import DnsblScore
from hatoba.checks.headers import Field
from hatoba.checks.rspamd import RspamdAnswer
from hatoba.config.schema import ChecksConfig

ACCEPT, JUNK, DEFER, REJECT = "accept", "junk", "defer", "reject"
# rspamd's actions, as ours (reject: see [checks] rspamd_reject).
RSPAMD_ACTIONS = {"no action": ACCEPT, "greylist": DEFER, "soft reject": DEFER,
                  "add header": JUNK, "rewrite subject": JUNK, "reject": JUNK}
AAR_PARSER = authres.FeatureContext(authres.dmarc, authres.arc)


@dataclass
class Findings:
    spf: SpfResult | None = None
    helo: SpfResult | None = None
    dkim: list[DkimResult] = field(default_factory=list)
    dmarc: list[dmarc.DmarcResult] = field(default_factory=list)
    arc: ArcResult | None = None
    from_problem: str = ""
    rspamd: RspamdAnswer | None = None
    dnsbl: DnsblScore | None = None
    broken: list[str] = field(default_factory=list)  # checks that could not run on this message
    from_missing: bool = False  # no From, or one naming nobody: counts in the score, not a reason for Junk
    policies: dict[str, tuple[dmarc.DmarcRecord | None, str]] = field(default_factory=dict)  # found early


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str  # in words
    log_reason: str  # one word
    overridden: str  # the trusted ARC sealer that vouched for a DMARC failure, or ""
    score: float
    threshold: float


def decide(config: ChecksConfig, found: Findings, domains: list[str], fields: list[Field],
           recipients: tuple[str, ...], *, trusted_sealers: frozenset[str],
           is_ours: Callable[[list[str]], list[str]]) -> Decision:
    """What to do with the message. `is_ours(domains)` gives those of `domains` that are ours
    (asked only for From domains nothing authenticated)."""
    dmarc_reject, local_forgery = config.policy_for(recipients)
    action, reason, log_reason = ACCEPT, "", ""
    overridden = ""
    failing = [m for m in found.dmarc if m.result == "fail"]
    if failing and found.arc is not None and found.arc.passed and found.arc.sealer in trusted_sealers \
            and all(sealer_saw_it_pass(fields, m.from_domain) for m in failing):
        overridden = found.arc.sealer  # a forwarder the operator trusts saw it authenticated
    for result in failing:
        if overridden:
            break
        if result.disposition == "reject" and dmarc_reject:
            action, log_reason = REJECT, "dmarc-reject"
            reason = (f"the DMARC policy of {result.from_domain} (p=reject) refuses mail from it"
                      " that neither SPF nor DKIM authenticates")
            break
        if result.disposition in ("reject", "quarantine") and action == ACCEPT:
            action, log_reason = JUNK, "dmarc-quarantine"
            reason = f"the DMARC policy of {result.from_domain} (p={result.policy}) says to treat it as spam"
    if action != REJECT and not overridden and local_forgery != "accept":
        unauthenticated = [d for d in domains if not any(
            m.from_domain == d and (m.passed or m.result == "none" and m.aligned) for m in found.dmarc)]
        ours = is_ours(unauthenticated) if unauthenticated else []
        if ours:
            domain = ours[0]
            if local_forgery == "reject":
                action, log_reason = REJECT, "local-forgery"
                reason = (f"From: says {domain}, a domain of this server, but the message comes from"
                          " outside without passing DMARC for it; its users send through port 587 or 465")
            elif action == ACCEPT:
                action, log_reason = JUNK, "local-forgery"
                reason = f"From: claims {domain}, a domain of this server, without passing DMARC"
    unknown = [m.from_domain for m in found.dmarc if m.result == "temperror"]
    if unknown and action == ACCEPT and not overridden:  # the policy may say reject: not the inbox
        action, log_reason = JUNK, "dmarc-unknown"
        reason = f"the DMARC policy of {unknown[0]} could not be read now"
    trouble = ("" if found.from_missing else found.from_problem) or (found.broken[0] if found.broken else "")
    if trouble and action == ACCEPT:  # what could not be judged is not let into the inbox
        action, log_reason = JUNK, "unjudged" if found.broken else "from-problem"
        reason = trouble
    if found.rspamd is not None:  # rspamd's verdict replaces our own score
        answer = found.rspamd
        score, threshold = answer.score, answer.required_score
        theirs = RSPAMD_ACTIONS[answer.action]
        if answer.action == "reject" and config.rspamd_reject and action != REJECT:
            action, log_reason = REJECT, "rspamd-reject"
            reason = f"the spam filter refuses it ({answer.message or f'score {score:.1f}'})"
        elif theirs == DEFER and action in (ACCEPT, JUNK):
            action, log_reason = DEFER, "rspamd-defer"
            reason = "the spam filter asks to try again later"
        elif theirs == JUNK and action == ACCEPT:
            action, log_reason = JUNK, "rspamd"
            reason = f"the spam filter says {answer.action} (score {score:.1f} of {threshold:.1f})"
    else:
        score, threshold = own_score(found), config.junk_score
        if action == ACCEPT and score >= threshold:
            action, log_reason = JUNK, "score"
            reason = f"score {score:.1f} reaches {threshold:.1f}"
    return Decision(action, reason, log_reason, overridden, score, threshold)


def own_score(found: Findings) -> float:
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


def sealer_saw_it_pass(fields: list[Field], from_domain: str) -> bool:
    """Whether the newest ARC-Authentication-Results (what the last sealer saw on arrival) has
    DMARC passing for `from_domain`, or a DKIM pass aligned with it."""
    newest, text = -1, ""
    for f in fields:
        if f.name != "arc-authentication-results":
            continue
        tag, _, rest = f.value.partition(";")
        key, _, number = tag.strip().partition("=")
        number = number.strip()
        if key.strip().lower() == "i" and number.isascii() and number.isdigit() and int(number) > newest:
            newest, text = int(number), rest
    if newest < 0:
        return False
    try:
        parsed = AAR_PARSER.parse(f"Authentication-Results: {text.strip()}")
    except Exception:
        return False
    for result in parsed.results:
        if result.result != "pass":
            continue
        if result.method == "dmarc" and str(getattr(result, "header_from", "") or "").lower() == from_domain:
            return True
        if result.method == "dkim" and dmarc.aligned(str(getattr(result, "header_d", "") or ""), from_domain, "r"):
            return True
    return False
