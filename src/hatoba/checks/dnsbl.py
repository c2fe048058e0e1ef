"""DNS blocklists and allowlists of client addresses, in Postfix postscreen's notation.

A site is "zone[=pattern][*weight]", e.g. "zen.spamhaus.org*3" or
"list.dnswl.org=127.0.[0..255].[1..3]*-2": the client's address, reversed,
is looked up under the zone; an A answer that matches the pattern (any
127.0.0.0/8 answer but 127.255.255.x, the lists' "you may not query" codes,
when there is no pattern) adds the weight. Negative weights make an allowlist.
The sum is the client's DNSBL score: from `[checks] dnsbl_threshold` the
client's mail is refused at RCPT, below it the score counts towards Junk.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from hatoba.checks.lookup import Lookup, TemporaryLookupError

_OCTET = re.compile(r"^(?:(\d{1,3})|\[(\d{1,3})\.\.(\d{1,3})\]|\[(\d{1,3}(?:;\d{1,3})*)\])$")


@dataclass(frozen=True)
class Site:
    zone: str
    pattern: tuple[frozenset[int], ...] | None  # one set of allowed values per octet; None = any listing code
    weight: float
    text: str  # as the operator wrote it

    def matches(self, answer: str) -> bool:
        try:
            octets = [int(p) for p in answer.split(".")]
        except ValueError:
            return False
        if len(octets) != 4:
            return False
        if self.pattern is None:
            return octets[0] == 127 and octets[:3] != [127, 255, 255]
        return all(o in allowed for o, allowed in zip(octets, self.pattern))


def parse_site(text: str) -> Site:
    """One site in postscreen_dnsbl_sites notation; ValueError with the reason otherwise."""
    raw = text.strip()
    weight = 1.0
    if "*" in raw:
        raw, _, weight_text = raw.rpartition("*")
        try:
            weight = float(weight_text)
        except ValueError:
            raise ValueError(f"{text!r}: the weight after * must be a number") from None
    zone, eq, pattern_text = raw.partition("=")
    zone = zone.strip().rstrip(".").lower()
    if not zone or "." not in zone or any(c.isspace() for c in zone):
        raise ValueError(f"{text!r}: no DNS zone (write e.g. zen.spamhaus.org*2)")
    pattern = None
    if eq:
        pattern_text = pattern_text.strip()
        parts = re.findall(r"\[[^\]]*\]|[^.\[]+", pattern_text)
        if len(parts) != 4 or ".".join(parts) != pattern_text:
            raise ValueError(f"{text!r}: the pattern after = needs four octets, e.g. 127.0.0.[2..11]")
        sets = []
        for part in parts:
            match = _OCTET.match(part)
            if not match:
                raise ValueError(f"{text!r}: {part!r} is not an octet, [low..high] or [a;b;c]")
            if match.group(1) is not None:
                values = {int(match.group(1))}
            elif match.group(2) is not None:
                values = set(range(int(match.group(2)), int(match.group(3)) + 1))
            else:
                values = {int(v) for v in match.group(4).split(";")}
            if not values or max(values) > 255:
                raise ValueError(f"{text!r}: octet values go from 0 to 255")
            sets.append(frozenset(values))
        pattern = tuple(sets)
    return Site(zone, pattern, weight, text.strip())


def query_name(ip: str, zone: str) -> str | None:
    """The name to ask for `ip` under `zone` (reversed octets; nibbles for IPv6), None for no address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.reverse_pointer.rsplit(".", 2)[0] + "." + zone


@dataclass(frozen=True)
class SiteResult:
    site: Site
    listed: bool
    error: str = ""


def check_site(lookup: Lookup, ip: str, site: Site) -> SiteResult:
    name = query_name(ip, site.zone)
    if name is None:
        return SiteResult(site, False)
    try:
        answers = [rd.address for rd in lookup.records(name, "A")]  # type: ignore[attr-defined]
    except TemporaryLookupError as exc:
        return SiteResult(site, False, str(exc))
    return SiteResult(site, any(site.matches(a) for a in answers))


@dataclass(frozen=True)
class DnsblScore:
    score: float
    listed_by: tuple[str, ...]  # zones whose listing counted
    errors: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return ",".join(self.listed_by) or "none"
