"""DMARC (RFC 7489): the From domain's policy, identifier alignment, and the verdict.

- Policy discovery (§6.6.3): _dmarc.FROM-DOMAIN, else _dmarc.ORGANIZATIONAL-DOMAIN;
  exactly one record starting "v=DMARC1" counts; none, or several, is no policy.
- The organizational domain comes from the Public Suffix List as the
  `publicsuffixlist` package ships it (updated with each release).
- Alignment (§3.1): relaxed (same organizational domain) or strict (same
  domain), per adkim= and aspf=, of the DKIM d= of a passing signature and of
  the MAIL FROM (or HELO) domain of an SPF pass.
- Policy (§6.6.4, §6.6.2): p= for the domain itself, sp= for its subdomains
  (p= when absent); pct= below 100 applies the policy to that share of
  failing mail only, the rest getting the next milder one (reject →
  quarantine → none).
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from hatoba.checks.dkim_verify import DkimResult
from hatoba.checks.lookup import Lookup, TemporaryLookupError
from hatoba.checks.spf import SpfResult

POLICIES = ("none", "quarantine", "reject")
MAX_RECORD = 4096  # bytes; a longer TXT record is not a policy anyone meant


@dataclass(frozen=True)
class DmarcRecord:
    policy: str  # p=
    subdomain_policy: str  # sp= (p= when absent)
    percent: int = 100  # pct=
    dkim_alignment: str = "r"  # adkim= r|s
    spf_alignment: str = "r"  # aspf= r|s
    rua: tuple[str, ...] = ()  # aggregate report addresses (mailto: URIs)


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str
    policy: str = "none"  # what the record asks for this domain: none | quarantine | reject
    disposition: str = "none"  # what to do after pct=: none | quarantine | reject
    record: DmarcRecord | None = None
    policy_domain: str = ""  # where the record was found
    reason: str = ""
    aligned: tuple[str, ...] = field(default=())  # "spf", "dkim" (which identifiers aligned and passed)
    override: str = ""  # why the policy was not applied (RFC 7489 §7.2.1 local policy), in words
    override_type: str = ""  # the same for aggregate reports: sampled_out, trusted_forwarder, local_policy

    @property
    def passed(self) -> bool:
        return self.result == "pass"


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registered domain of `domain` ("mail.example.co.uk" → "example.co.uk"), RFC 7489 §3.2."""
    name = domain.strip().rstrip(".").lower()
    return _psl().privatesuffix(name) or name


def parse_record(text: str) -> DmarcRecord | None:
    """A DMARC record, or None when `text` is not one (RFC 7489 §6.3, §6.6.3 step 5)."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        return None
    for part in parts[1:]:
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq:
            continue  # unknown or broken tags are ignored (§6.3)
        tags.setdefault(name.strip().lower(), value.strip())
    policy = tags.get("p", "").lower()
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip().lower().startswith("mailto:"))
    if policy not in POLICIES:
        # §6.6.3 step 6: an invalid or missing p= with a valid rua= is treated as p=none.
        if rua:
            policy = "none"
        else:
            return None
    sub = tags.get("sp", "").lower()
    try:
        percent = int(tags.get("pct", "100"))
    except ValueError:
        percent = 100
    return DmarcRecord(
        policy=policy,
        subdomain_policy=sub if sub in POLICIES else policy,
        percent=min(100, max(0, percent)),
        dkim_alignment="s" if tags.get("adkim", "r").lower() == "s" else "r",
        spf_alignment="s" if tags.get("aspf", "r").lower() == "s" else "r",
        rua=rua,
    )


# Policies found lately, by (lookup, domain): a busy sender's policy is read once a minute,
# not parsed again for every message.
POLICY_SECONDS = 60.0
POLICIES_KEPT = 10_000
_policies: OrderedDict[tuple[int, str], tuple[float, tuple[DmarcRecord | None, str]]] = OrderedDict()
_policies_lock = threading.Lock()


def find_record(lookup: Lookup, domain: str) -> tuple[DmarcRecord | None, str]:
    """The policy for `domain` and where it was found (§6.6.3); raises TemporaryLookupError."""
    key = (lookup.serial, domain)
    now = time.monotonic()
    with _policies_lock:
        known = _policies.get(key)
        if known is not None and known[0] > now:
            return known[1]
    found = _find_record(lookup, domain)
    with _policies_lock:
        _policies[key] = (now + POLICY_SECONDS, found)
        _policies.move_to_end(key)
        while len(_policies) > POLICIES_KEPT:
            _policies.popitem(last=False)
    return found


def _find_record(lookup: Lookup, domain: str) -> tuple[DmarcRecord | None, str]:
    candidates = [domain]
    org = organizational_domain(domain)
    if org != domain:
        candidates.append(org)
    for name in candidates:
        records = [t for t in lookup.txt(f"_dmarc.{name}") if len(t) <= MAX_RECORD]
        parsed = [r for r in (parse_record(t.decode("utf-8", "replace")) for t in records) if r is not None]
        if len(parsed) == 1:
            return parsed[0], name
        if len(parsed) > 1:
            return None, name  # §6.6.3 step 5: several records are no policy
    return None, ""


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    identifier, from_domain = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return identifier == from_domain
    return organizational_domain(identifier) == organizational_domain(from_domain)


def evaluate(
    lookup: Lookup,
    from_domain: str,
    spf: SpfResult | None,
    dkim: Sequence[DkimResult],
    *,
    rng: random.Random | None = None,
    policy_found: tuple[DmarcRecord | None, str] | None = None,
) -> DmarcResult:
    """The DMARC result for From domain `from_domain`; `policy_found` is what find_record
    gave for it already (else it is looked up now)."""
    if policy_found is not None:
        record, where = policy_found
    else:
        try:
            record, where = find_record(lookup, from_domain)
        except TemporaryLookupError as exc:
            return DmarcResult("temperror", from_domain, reason=str(exc))
    passed: list[str] = []
    spf_mode, dkim_mode = (record.spf_alignment, record.dkim_alignment) if record is not None else ("r", "r")
    if spf is not None and spf.passed and aligned(spf.domain, from_domain, spf_mode):
        passed.append("spf")
    if any(d.passed and aligned(d.domain, from_domain, dkim_mode) for d in dkim):
        passed.append("dkim")
    if record is None:  # what aligned still tells whether the From was authenticated
        return DmarcResult("none", from_domain, reason="no DMARC policy published", aligned=tuple(passed))
    subdomain = where != from_domain
    policy = record.subdomain_policy if subdomain else record.policy
    if passed:
        return DmarcResult("pass", from_domain, policy, "none", record, where, aligned=tuple(passed))
    disposition, override_type = policy, ""
    if record.percent < 100 and (rng or random).randrange(100) >= record.percent:
        disposition = {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
        override_type = "sampled_out"
    reason = "neither an aligned SPF pass nor an aligned DKIM signature"
    return DmarcResult("fail", from_domain, policy, disposition, record, where, reason, override_type=override_type)
