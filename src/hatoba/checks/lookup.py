"""The DNS lookups of the incoming-mail checks (SPF, DKIM, DMARC, ARC, blocklists).

The checks run in worker threads (pyspf and dkimpy are blocking libraries), so
this is dnspython's blocking resolver, with:
- the one DNS server of `[dns] resolver` (empty = the system's);
- a cache that honours TTLs (the same sender's SPF record, DKIM key and DMARC
  policy are asked for message after message), shared by the threads;
- every failure sorted into "no such record" (an empty answer) and
  `TemporaryLookupError` (timeout, SERVFAIL, no server), which the checks
  report as temperror instead of fail;
- one deadline for all the lookups of a message (`with lookup.deadline(t)`),
  so a sender whose name servers never answer costs at most the budget, not
  five seconds for each of its names.
"""

from __future__ import annotations

import base64
import functools
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from hatoba.dnsutil.resolver import EDNS_PAYLOAD, MAX_TRY_TIMEOUT, parse_nameserver

CACHE_ENTRIES = 10_000
_serials = itertools.count(1)


class TemporaryLookupError(Exception):
    """A lookup that may work later; the message is one plain line."""


class NeedsNetwork(BaseException):
    """Raised in cache-only mode when an answer is not in the cache: the caller runs the
    whole judgement again where it may wait (a BaseException, so no library's
    `except Exception` turns it into a result)."""


# RSA keys verified at most this large: verifying with a larger modulus or exponent takes
# seconds of CPU in one call that holds the interpreter (a record of a few KB can ask it).
MAX_RSA_BITS = 8192
MAX_RSA_EXPONENT = 2**32


@functools.lru_cache(maxsize=1024)
def _refuse_costly_key(record: bytes) -> None:
    """Raise dkimpy's KeyFormatError for an RSA key too costly to verify with; the same
    record is judged once (the cache), not once per message."""
    import dkim
    import dkim.crypto

    tags = dict(part.strip().partition(b"=")[::2] for part in record.split(b";") if b"=" in part)
    if tags.get(b"k", b"rsa").strip().lower() != b"rsa":
        return
    try:  # dkimpy's own parser: every form it would verify with
        key = dkim.crypto.parse_public_key(base64.b64decode(b"".join(tags.get(b"p", b"").split())))
    except Exception:
        return  # dkimpy says what is wrong with it
    bits = int(key["modulus"]).bit_length()
    if bits > MAX_RSA_BITS or int(key["publicExponent"]) > MAX_RSA_EXPONENT:
        raise dkim.KeyFormatError(f"public key too large to verify with ({bits} bits)")


class Lookup:
    """TXT, address, MX and PTR records through one DNS server, cached by TTL."""

    def __init__(self, nameserver: str = "", *, timeout: float = 5.0) -> None:
        if nameserver.strip():
            host, port = parse_nameserver(nameserver)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
        else:
            try:
                resolver = dns.resolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                resolver = dns.resolver.Resolver(configure=False)  # every lookup fails: temperror
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        resolver.timeout = min(timeout, MAX_TRY_TIMEOUT)
        resolver.lifetime = timeout
        resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)
        self._resolver = resolver
        self.timeout = timeout
        self.serial = next(_serials)  # tells results of this lookup's answers from another's
        self._deadline = threading.local()  # per thread: each judges its own message

    @contextmanager
    def cache_only(self) -> Iterator[None]:
        """Within the block, this thread's lookups answer from the cache or raise NeedsNetwork."""
        outer = getattr(self._deadline, "cache_only", False)
        self._deadline.cache_only = True
        try:
            yield
        finally:
            self._deadline.cache_only = outer

    def answering_from_cache_only(self) -> bool:
        return bool(getattr(self._deadline, "cache_only", False))

    @contextmanager
    def deadline(self, when: float) -> Iterator[None]:
        """Lookups of this thread within the block end by time.monotonic() == `when`."""
        outer = getattr(self._deadline, "when", None)
        self._deadline.when = when if outer is None else min(when, outer)
        try:
            yield
        finally:
            self._deadline.when = outer

    def remaining(self, wanted: float | None = None) -> float:
        """How long the next lookup may take: `wanted` (or the timeout), cut to the deadline."""
        limit = self.timeout if wanted is None else min(wanted, self.timeout)
        when = getattr(self._deadline, "when", None)
        if when is not None:
            limit = min(limit, when - time.monotonic())
        return limit

    def records(self, name: str, rdtype: str, *, lifetime: float | None = None) -> list[object]:
        """The rdatas of type `rdtype` at `name`; [] for NXDOMAIN and NODATA."""
        qname = name.rstrip(".")
        if not qname:
            return []
        if self.answering_from_cache_only():
            return self._from_cache(qname, rdtype)
        allowed = self.remaining(lifetime)
        if allowed <= 0.05:
            try:  # out of time, but an answer in the cache costs none
                return self._from_cache(qname, rdtype)
            except NeedsNetwork:
                raise TemporaryLookupError(f"no time left to look up {qname} {rdtype}") from None
        try:
            answer = self._resolver.resolve(qname + ".", rdtype, search=False, raise_on_no_answer=False,
                                            lifetime=allowed)
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return []
        except (dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel, UnicodeError):
            return []  # a name no DNS server can hold has no records
        except dns.exception.Timeout:
            raise TemporaryLookupError(f"DNS query for {qname} {rdtype} timed out") from None
        except dns.resolver.NoNameservers:
            raise TemporaryLookupError(f"DNS server failure for {qname} {rdtype}") from None
        except dns.exception.DNSException as exc:
            raise TemporaryLookupError(f"DNS query for {qname} {rdtype} failed: {exc}") from None
        return list(answer.rrset) if answer.rrset is not None else []

    def _from_cache(self, qname: str, rdtype: str) -> list[object]:
        cache = self._resolver.cache
        try:
            name = dns.name.from_text(qname + ".")
        except (dns.exception.DNSException, UnicodeError):
            return []
        kind = dns.rdatatype.from_text(rdtype)
        answer = cache.get((name, kind, dns.rdataclass.IN))
        if answer is not None:
            return list(answer.rrset) if answer.rrset is not None else []
        answer = cache.get((name, dns.rdatatype.ANY, dns.rdataclass.IN))
        if answer is not None and answer.response.rcode() == dns.rcode.NXDOMAIN:
            return []
        raise NeedsNetwork(f"{qname} {rdtype}")

    def txt(self, name: str, *, lifetime: float | None = None) -> list[bytes]:
        """Each TXT record of `name`, its strings joined."""
        return [b"".join(rd.strings) for rd in self.records(name, "TXT", lifetime=lifetime)]  # type: ignore[attr-defined]

    # -- the shapes the libraries want ---------------------------------------------------

    def for_dkimpy(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's `dnsfunc`: the key record at `name`, or None when there is none."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        found = self.txt(text, lifetime=timeout)
        keys = [t for t in found if b"p=" in t]
        record = (keys or found or [None])[0]
        if record is not None:
            _refuse_costly_key(record)
        return record

    def for_pyspf(self, name: str, qtype: str, strict: object = True, timeout: float = 20) -> list[tuple]:  # type: ignore[type-arg]
        """pyspf's DNSLookup: [((name, type), value)], values shaped as pyspf's own dnspython lookup makes them."""
        import spf  # pyspf; imported here so this module loads without it

        try:
            rdatas = self.records(name, qtype, lifetime=timeout)
        except TemporaryLookupError as exc:
            raise spf.TempError(f"DNS {exc}") from None
        out: list[tuple] = []  # type: ignore[type-arg]
        for rd in rdatas:
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rd.address))  # type: ignore[attr-defined]
            elif qtype == "MX":
                out.append(((name, qtype), (rd.preference, rd.exchange.to_text(omit_final_dot=True))))  # type: ignore[attr-defined]
            elif qtype == "PTR":
                out.append(((name, qtype), rd.target.to_text(omit_final_dot=True)))  # type: ignore[attr-defined]
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), tuple(rd.strings)))  # type: ignore[attr-defined]
        return out
