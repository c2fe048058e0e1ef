"""Our MTA-STS policy (RFC 8461): the file served at
https://mta-sts.DOMAIN/.well-known/mta-sts.txt and the id its DNS record carries.

One policy serves every local domain: their MX is this server
(server.hostname). "testing" first: senders report failures (TLS-RPT,
RFC 8460) but still deliver; "enforce" once reports are clean and the
certificate is publicly trusted; "none" tells senders to forget a policy
published before (RFC 8461 §5).
"""

from __future__ import annotations

import hashlib

from hatoba.config.schema import Config

POLICY_PATH = "/.well-known/mta-sts.txt"
POLICY_TYPE = "text/plain; charset=utf-8"  # RFC 8461 §3.2
HOST_PREFIX = "mta-sts."


def policy_text(config: Config) -> str:
    """The policy file: CRLF line ends (RFC 8461 §3.2 allows LF too; CRLF is what its ABNF names)."""
    policy = config.mta_sts
    lines = ["version: STSv1", f"mode: {policy.mode}", f"mx: {config.server.hostname}", f"max_age: {policy.max_age}"]
    return "\r\n".join(lines) + "\r\n"


def policy_id(text: str) -> str:
    """RFC 8461 §3.1: the id changes whenever the policy does; a hash of it does that by itself."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["HOST_PREFIX", "POLICY_PATH", "POLICY_TYPE", "policy_id", "policy_text"]
