"""Where mail for a domain goes next: a route, the relayhost, or the domain's MX.

Next-hop syntax follows Postfix, so operators can copy their settings:

    [host]:port   that host, no MX lookup (brackets), port optional
    host:port     the MX hosts of `host` (Postfix looks up MX unless bracketed)
    192.0.2.7:25  an address literal is always used as it is

Port 465 means implicit TLS (SMTPS, RFC 8314); any other port STARTTLS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hatoba.config.schema import DeliveryConfig

SMTPS_PORT = 465


class NextHopError(ValueError):
    """A next hop in the config that cannot be used (message in plain words)."""


@dataclass(frozen=True)
class NextHop:
    """One way out for a destination domain."""

    host: str  # a name or an IP address
    port: int
    mx_lookup: bool  # resolve MX records of `host` (else its addresses only)
    implicit_tls: bool = False
    relayhost: bool = False  # the smarthost: AUTH when credentials are set
    kind: str = "mx"  # "mx", "route" or "relayhost", for logs

    @property
    def key(self) -> tuple[str, int, bool]:
        """Destinations that share a next hop share its connections and its limit."""
        return (self.host, self.port, self.mx_lookup)

    def describe(self) -> str:
        shown = self.host if self.mx_lookup else f"[{self.host}]"
        return f"{self.kind} {shown}:{self.port}"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_next_hop(text: str, *, default_port: int, kind: str) -> NextHop:
    """Parse "[host]:port", "host:port", "host" or "[v6-address]:port"."""
    text = text.strip()
    if not text:
        raise NextHopError("empty next hop; give \"[host]:port\"")
    bracketed = text.startswith("[")
    if bracketed:
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise NextHopError(f"{text!r}: missing ']'; write \"[host]:port\"")
        if rest and not rest.startswith(":"):
            raise NextHopError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") > 1:  # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    host = host.strip().rstrip(".").lower()
    if not host:
        raise NextHopError(f"{text!r}: no host name")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise NextHopError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    mx_lookup = not bracketed and not is_ip_literal(host)
    return NextHop(host=host, port=port, mx_lookup=mx_lookup, implicit_tls=port == SMTPS_PORT, kind=kind)


def next_hop_for(domain: str, delivery: DeliveryConfig) -> NextHop:
    """The next hop for mail to `domain`: its route, else the relayhost, else its MX."""
    domain = domain.lower().rstrip(".")
    route = delivery.routes.get(domain)
    if route:
        return parse_next_hop(route, default_port=25, kind="route")
    if delivery.relayhost:
        hop = parse_next_hop(delivery.relayhost, default_port=25, kind="relayhost")
        return NextHop(hop.host, hop.port, hop.mx_lookup, hop.implicit_tls, relayhost=True, kind="relayhost")
    return NextHop(host=domain, port=delivery.mx_port, mx_lookup=True, kind="mx")
