"""Who may send to which recipient: local delivery, relaying, relay tricks.

Rules:
- Mail for a local domain is accepted from anyone, but only for a user or an
  alias that exists (550 5.1.1 otherwise, at RCPT time: no backscatter).
- Mail for any other domain is relayed only for an authenticated client or a
  client inside a trusted network; everyone else gets 554 5.7.1.
- The domain after the last '@' decides. Source routes are ignored (RFC 5321
  §3.6.1), and local parts carrying routing characters ('%' percent hack,
  '!' bang path, a quoted '@') are refused for local domains, so no address
  can be re-routed to a third party once it is accepted here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from hatoba.policy.decision import Decision
from hatoba.proto.address import Address
from hatoba.proto.smtp import replies as R
from hatoba.store.api import AliasLoopError, UserDB

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedNetworks:
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> TrustedNetworks:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def __contains__(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


def may_relay(*, client_ip: str, authenticated: bool, trusted: TrustedNetworks) -> bool:
    return authenticated or client_ip in trusted


RELAY_DENIED = "relay-denied"  # the log reason of a recipient refused as relaying


def check_recipient(address: Address, *, relay_allowed: bool, directory: UserDB) -> Decision:
    """Decide one RCPT TO. Blocking (directory lookups): call it in a thread."""
    if directory.is_local_domain(address.domain):
        if address.has_routing_chars:
            return Decision(False, R.R550_ROUTING_CHARS, "routing-chars")
        try:
            resolution = directory.resolve(str(address))
        except AliasLoopError:
            return Decision(False, R.R550_ALIAS_LOOP, "alias-loop")
        if not resolution.known:
            return Decision(False, R.R550_NO_SUCH_USER, "unknown-user")
        return Decision(True, R.R250_RCPT_OK, "local")
    if relay_allowed:
        return Decision(True, R.R250_RCPT_OK, "relay")
    return Decision(False, R.R554_RELAY_DENIED, RELAY_DENIED)
