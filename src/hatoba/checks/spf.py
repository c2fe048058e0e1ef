"""SPF (RFC 7208) on the MAIL FROM and the HELO identities, through pyspf.

pyspf does the record evaluation and enforces the RFC's limits (10 lookups
that cause DNS queries, 2 void lookups, 10 MX/PTR names, one time budget for
the whole check). Its DNS goes through a module-level function; we point it,
once, at a dispatcher that uses the calling thread's `Lookup`, so every check
asks the server of `[dns] resolver` and two servers in one process (tests)
never mix.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import spf

from hatoba.checks.lookup import Lookup, NeedsNetwork

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

_current = threading.local()
_install_lock = threading.Lock()

# A sender's next messages come from the same address, saying the same HELO: its
# result is kept this long (shorter than any sane TTL) instead of evaluated again.
RESULT_SECONDS = 60.0
RESULTS_KEPT = 10_000


def _dispatch(name: str, qtype: str, strict: object = True, timeout: float = 20) -> list[tuple]:  # type: ignore[type-arg]
    lookup: Lookup = _current.lookup
    return lookup.for_pyspf(name, qtype, strict, timeout)


@dataclass(frozen=True)
class SpfResult:
    result: str  # one of RESULTS
    identity: str  # "mailfrom" or "helo"
    domain: str  # the domain checked
    comment: str = ""  # pyspf's explanation, one line

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def check(lookup: Lookup, *, ip: str, mail_from: str, helo: str, time_budget: float = 20.0) -> SpfResult:
    """The SPF result for the MAIL FROM identity (postmaster@HELO for the null sender, RFC 7208 §2.4)."""
    if mail_from:
        sender, identity = mail_from, "mailfrom"
    else:
        sender, identity = f"postmaster@{helo}", "helo"
    domain = sender.rpartition("@")[2].lower()
    return _evaluate(lookup, ip=ip, sender=sender, helo=helo, identity=identity, domain=domain,
                     time_budget=time_budget)


def check_helo(lookup: Lookup, *, ip: str, helo: str, time_budget: float = 20.0) -> SpfResult:
    """The SPF result for the HELO identity (RFC 7208 §2.3); "none" when HELO is an address literal."""
    name = helo.strip().lower()
    if not name or name.startswith("[") or _is_ip(name) or "." not in name:
        return SpfResult("none", "helo", name, "HELO is not a domain name")
    return _evaluate(lookup, ip=ip, sender=f"postmaster@{name}", helo=name, identity="helo", domain=name,
                     time_budget=time_budget)


class _Recent:
    """Results of the last RESULT_SECONDS, by everything an SPF record may look at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, ...], tuple[float, SpfResult]] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> SpfResult | None:
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] < time.monotonic():
                return None
            return found[1]

    def put(self, key: tuple[str, ...], result: SpfResult) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + RESULT_SECONDS, result)
            self._items.move_to_end(key)
            while len(self._items) > RESULTS_KEPT:
                self._items.popitem(last=False)


_recent = _Recent()


def _evaluate(lookup: Lookup, *, ip: str, sender: str, helo: str, identity: str, domain: str,
              time_budget: float) -> SpfResult:
    # The lookup is part of the key: two DNS servers (tests) never share results.
    key = (str(lookup.serial), ip, sender.lower(), helo.lower(), identity)
    known = _recent.get(key)
    if known is not None:
        return known
    if lookup.answering_from_cache_only():
        # pyspf has bare excepts that would swallow NeedsNetwork: only whole results are cached.
        raise NeedsNetwork(f"SPF of {domain}")
    result = _evaluate_now(lookup, ip=ip, sender=sender, helo=helo, identity=identity, domain=domain,
                           time_budget=time_budget)
    if result.result != "temperror":  # a failure of the moment is asked again next time
        _recent.put(key, result)
    return result


def _evaluate_now(lookup: Lookup, *, ip: str, sender: str, helo: str, identity: str, domain: str,
                  time_budget: float) -> SpfResult:
    _install()
    _current.lookup = lookup
    try:
        query = spf.query(i=ip, s=sender, h=helo, timeout=lookup.timeout, querytime=time_budget)
        result, _code, _explanation = query.check()
    except (spf.TempError, OSError) as exc:
        return SpfResult("temperror", identity, domain, _one_line(str(exc)))
    except Exception as exc:  # pyspf on input it did not expect: no verdict, never a crash
        return SpfResult("permerror", identity, domain, _one_line(f"cannot evaluate: {exc}"))
    finally:
        _current.lookup = None
    result = str(result).lower()
    if result not in RESULTS:  # pyspf's older names
        result = {"error": "temperror", "unknown": "permerror"}.get(result, "neutral")
    # Our own words: pyspf's explanation may quote the sender's exp= record, which is theirs.
    return SpfResult(result, identity, domain, _WORDS[result].format(ip=ip, domain=domain))


_WORDS = {
    "pass": "{domain} designates {ip} as permitted sender",
    "fail": "{domain} does not designate {ip} as permitted sender",
    "softfail": "{domain} does not quite designate {ip} as permitted sender",
    "neutral": "{domain} neither permits nor denies {ip}",
    "none": "{domain} publishes no SPF record",
    "temperror": "the SPF record of {domain} could not be read now",
    "permerror": "the SPF record of {domain} is broken",
}


def _install() -> None:
    if spf.DNSLookup is not _dispatch:
        with _install_lock:
            spf.DNSLookup = _dispatch


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
