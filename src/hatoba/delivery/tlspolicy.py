"""Which TLS a delivery must have: may, encrypt or verify.

    may      STARTTLS when the server offers it; clear text only when it was
             not offered (RFC 7435, opportunistic security). A handshake that
             fails is retried once in clear, as Postfix does.
    encrypt  STARTTLS (or implicit TLS) must succeed; the certificate is not checked.
    verify   and the certificate must chain to the system store or tls.ca_file
             and name the server (the MX host name, or the relayhost's).

A lookup asks each source in turn and takes the first answer. Today the
sources are the relayhost settings, delivery.tls_policies and delivery.tls;
MTA-STS (RFC 8461) and DANE (RFC 7672) plug in as further sources that
answer for the domains that publish a policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hatoba.config.schema import DeliveryConfig
from hatoba.delivery.nexthop import NextHop

LEVELS = ("may", "encrypt", "verify")


@dataclass(frozen=True)
class TlsPolicy:
    level: str  # may | encrypt | verify
    source: str  # where the policy came from, for logs and errors

    @property
    def requires_tls(self) -> bool:
        return self.level != "may"

    @property
    def verifies(self) -> bool:
        return self.level == "verify"


class PolicySource(Protocol):
    async def lookup(self, domain: str, hop: NextHop) -> TlsPolicy | None:
        """The policy for mail to `domain` through `hop`, or None when this source has none."""


@dataclass(frozen=True)
class RelayhostPolicy:
    """The smarthost: verify when a password is sent, unless the operator said otherwise."""

    delivery: DeliveryConfig

    async def lookup(self, domain: str, hop: NextHop) -> TlsPolicy | None:
        if not hop.relayhost:
            return None
        if self.delivery.relayhost_tls:
            return TlsPolicy(self.delivery.relayhost_tls, "delivery.relayhost_tls")
        if self.delivery.relayhost_username:
            return TlsPolicy("verify", "relayhost with credentials")
        return None


@dataclass(frozen=True)
class ConfiguredPolicies:
    """delivery.tls_policies: per destination domain; a parent domain covers its subdomains
    when written with a leading dot (".example.org"), as Postfix's policy tables."""

    delivery: DeliveryConfig

    async def lookup(self, domain: str, hop: NextHop) -> TlsPolicy | None:
        policies = self.delivery.tls_policies
        if domain in policies:
            return TlsPolicy(policies[domain], f'delivery.tls_policies."{domain}"')
        labels = domain.split(".")
        for i in range(1, len(labels)):
            parent = "." + ".".join(labels[i:])
            if parent in policies:
                return TlsPolicy(policies[parent], f'delivery.tls_policies."{parent}"')
        return None


class TlsPolicyLookup:
    def __init__(self, delivery: DeliveryConfig, extra_sources: tuple[PolicySource, ...] = ()) -> None:
        self.sources: tuple[PolicySource, ...] = (
            RelayhostPolicy(delivery), *extra_sources, ConfiguredPolicies(delivery),
        )
        self.default = TlsPolicy(delivery.tls, "delivery.tls")

    async def lookup(self, domain: str, hop: NextHop) -> TlsPolicy:
        for source in self.sources:
            policy = await source.lookup(domain, hop)
            if policy is not None:
                return policy
        return self.default
