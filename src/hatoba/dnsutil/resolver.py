"""The stub resolver outbound delivery uses: MX hosts, addresses, TXT.

Rules:
- Every failure is a `DnsError` whose `temporary` flag decides between
  deferring (try later) and bouncing: NXDOMAIN and "no such records" are
  permanent; SERVFAIL, REFUSED, timeouts and unreachable servers are temporary.
- A domain whose only MX record points at "." accepts no mail: `NullMx`
  (RFC 7505 §3), which callers bounce without trying any host.
- Names go out as IDNA A-labels and come back lower-case, without the final dot.
- Queries carry EDNS0 with a 1232-byte payload (the DNS Flag Day 2020 size that
  survives common MTUs); a truncated UDP reply is retried over TCP by dnspython.
- No cache: the queue retries over minutes, and a stale answer is worse there
  than one more query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

DEFAULT_PORT = 53
# DNS Flag Day 2020: the EDNS UDP size that avoids IP fragmentation.
EDNS_PAYLOAD = 1232
# One try per server waits at most this long, so a lost UDP packet is resent
# before the whole lookup gives up.
MAX_TRY_TIMEOUT = 2.0


class DnsError(Exception):
    """A lookup that gave no usable answer; the message is one plain line."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class NullMx(Exception):
    """The domain publishes a null MX: it accepts no mail (RFC 7505)."""

    def __init__(self, domain: str) -> None:
        super().__init__(f"{domain} accepts no mail (null MX, RFC 7505)")
        self.domain = domain


@dataclass(frozen=True)
class MxHost:
    """One host to try for a domain. `implicit` marks the RFC 5321 §5.1
    fallback: the domain had no MX record, so the domain itself is the host."""

    name: str
    preference: int
    implicit: bool = False


def parse_nameserver(text: str) -> tuple[str, int]:
    """Split "ip", "ip:port", "[v6]" or "[v6]:port" (a bare v6 address also
    works) into (ip, port). The host must be an IP address: a DNS server
    cannot be found by name without DNS."""
    raw = text.strip()
    if not raw:
        raise ValueError("DNS server address is empty; give it as host:port, e.g. 127.0.0.1:53")
    port_text = ""
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep:
            raise ValueError(f"DNS server address {text!r} has '[' without ']'; write [::1]:53")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"DNS server address {text!r} has text after ']'; write [::1]:53")
            port_text = rest[1:]
            if not port_text:
                raise ValueError(f"DNS server address {text!r} has an empty port")
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
        if not port_text:
            raise ValueError(f"DNS server address {text!r} has an empty port")
    else:
        # No colon, or several: a bare IPv6 address (checked below).
        host = raw
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"DNS server address {text!r} must be an IP address"
            " (a host name cannot be looked up without DNS)"
        ) from None
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"DNS server port in {text!r} must be a number from 1 to 65535")
        port = int(port_text)
    return str(ip), port


class Resolver:
    """Looks names up through one given server ("host:port") or, with "",
    through the servers in the system's resolv.conf."""

    def __init__(
        self,
        nameserver: str = "",
        *,
        timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("DNS timeout must be more than 0 seconds")
        self._server = parse_nameserver(nameserver) if nameserver.strip() else None
        self._timeout = timeout
        # Randomness is a parameter so a caller can make MX order repeatable.
        self._rng = rng or random.Random()
        self._backend: dns.asyncresolver.Resolver | None = None

    async def mx_hosts(self, domain: str) -> list[MxHost]:
        """The hosts to try for `domain`, best first (RFC 5321 §5.1)."""
        name = _to_name(domain)
        text = _text(name)
        records = await self._lookup(name, dns.rdatatype.MX)
        if not records:
            # RFC 5321 §5.1: no MX means an implicit MX of preference 0
            # pointing at the domain, but only if it has an address at all.
            try:
                await self.addresses(text)
            except DnsError as exc:
                if exc.temporary:
                    raise
                raise DnsError(f"no MX or address records for {text}", temporary=False) from None
            return [MxHost(text, 0, implicit=True)]
        if len(records) == 1 and records[0].exchange == dns.name.root:
            raise NullMx(text)
        # A "." among real MX records breaks RFC 7505 §3; the root is no host
        # to connect to, so skip it and use the others.
        hosts = [
            MxHost(_text(rd.exchange), int(rd.preference))
            for rd in records
            if rd.exchange != dns.name.root
        ]
        # RFC 5321 §5.1: lowest preference first; hosts of equal preference
        # in random order, spreading load across them. sort() calls the key
        # once per host, so a random secondary key is a uniform shuffle
        # within each preference.
        hosts.sort(key=lambda h: (h.preference, self._rng.random()))
        return hosts

    async def addresses(self, host: str) -> list[str]:
        """IPv6 then IPv4 addresses of `host`; an IP literal is returned as is."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [host]
        name = _to_name(host)
        results = await asyncio.gather(
            self._lookup(name, dns.rdatatype.AAAA),
            self._lookup(name, dns.rdatatype.A),
            return_exceptions=True,
        )
        found: list[str] = []
        errors: list[DnsError] = []
        for result in results:
            if isinstance(result, DnsError):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend(rd.address for rd in result)
        if found:
            # One family failing (often a broken AAAA server) must not stop
            # delivery over the other.
            return found
        for error in errors:
            if error.temporary:
                raise error
        if errors:
            raise errors[0]
        raise DnsError(f"no address records for {_text(name)}", temporary=False)

    async def txt(self, name: str) -> list[str]:
        """Each TXT record of `name` as one string (its pieces joined, as DKIM
        keys over 255 bytes are split); [] if the name or the records are absent."""
        records = await self._lookup(_to_name(name), dns.rdatatype.TXT, nxdomain_ok=True)
        # TXT is bytes on the wire; SPF/DKIM/DMARC are ASCII, so anything
        # else becomes U+FFFD and fails to parse where it is used.
        return [b"".join(rd.strings).decode("utf-8", errors="replace") for rd in records]

    async def tlsa(self, name: str) -> list[str]:
        """TLSA records (RFC 6698) as text, e.g. "3 1 1 ab12..."; [] when there are none."""
        records = await self._lookup(_to_name(name), dns.rdatatype.TLSA, nxdomain_ok=True)
        return [rd.to_text() for rd in records]

    async def srv(self, name: str) -> list[str]:
        """SRV records (RFC 2782) as text, e.g. "0 1 993 mail.example.org."; [] when there are none."""
        records = await self._lookup(_to_name(name), dns.rdatatype.SRV, nxdomain_ok=True)
        return [rd.to_text() for rd in records]

    async def _lookup(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, *, nxdomain_ok: bool = False
    ) -> list[Any]:
        """The records of one type; [] for NODATA (and NXDOMAIN if nxdomain_ok)."""
        what = f"{_text(name)} {dns.rdatatype.to_text(rdtype)}"
        backend = self._get_backend()
        try:
            answer = await backend.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            if nxdomain_ok:
                return []
            raise DnsError(f"no such domain {_text(name)} (NXDOMAIN)", temporary=False) from None
        except dns.exception.Timeout:
            raise DnsError(
                f"DNS query for {what} timed out after {self._timeout:g}s", temporary=True
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise _no_nameservers(exc, what) from None
        except dns.resolver.YXDOMAIN:
            raise DnsError(
                f"name {what} is too long after DNAME rewriting (YXDOMAIN)", temporary=False
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsError(
                f"DNS query for {what} failed: {_one_line(exc)}", temporary=True
            ) from None
        return list(answer.rrset) if answer.rrset is not None else []

    def _get_backend(self) -> dns.asyncresolver.Resolver:
        # Built on first use, so a Resolver("") can exist (e.g. while a config
        # is checked) on a host whose resolv.conf is missing.
        if self._backend is not None:
            return self._backend
        if self._server is None:
            try:
                backend = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                raise DnsError(
                    "no DNS server configured in /etc/resolv.conf; set [delivery] resolver",
                    temporary=True,
                ) from None
        else:
            backend = dns.asyncresolver.Resolver(configure=False)
            host, port = self._server
            backend.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
        backend.use_edns(0, 0, EDNS_PAYLOAD)
        backend.timeout = min(self._timeout, MAX_TRY_TIMEOUT)
        backend.lifetime = self._timeout
        backend.cache = None
        self._backend = backend
        return backend


def _to_name(text: str) -> dns.name.Name:
    """An absolute DNS name; UTF-8 labels become IDNA A-labels."""
    raw = text.strip().rstrip(".")
    # Backslash escapes and spaces are legal in zone files, never in a mail
    # domain; refusing them keeps "a\.b" from meaning something surprising.
    if not raw or any(c.isspace() or c == "\\" for c in raw):
        raise DnsError(f"invalid domain name {text!r}", temporary=False)
    try:
        return dns.name.from_text(raw)
    except dns.exception.DNSException as exc:
        raise DnsError(f"invalid domain name {text!r}: {_one_line(exc)}", temporary=False) from None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _no_nameservers(exc: dns.resolver.NoNameservers, what: str) -> DnsError:
    """Say whether the servers answered with an error code or not at all."""
    errors = exc.kwargs.get("errors") or []
    rcodes = sorted({err for _, _, _, err, _ in errors if isinstance(err, str)})
    if rcodes:
        return DnsError(f"DNS server failure for {what} ({', '.join(rcodes)})", temporary=True)
    details: list[str] = []
    for server, _tcp, port, err, _response in errors:
        where = f"[{server}]:{port}" if ":" in server else f"{server}:{port}"
        reason = err.strerror if isinstance(err, OSError) and err.strerror else _one_line(err)
        detail = f"{where}: {reason}"
        if detail not in details:
            details.append(detail)
    suffix = f" ({'; '.join(details)})" if details else ""
    return DnsError(f"no DNS server reachable for {what}{suffix}", temporary=True)
