"""Greylisting (off by default): the first attempt of an unknown sender waits; a real MTA retries.

The triplet is (client network, envelope sender, recipient), as postgrey
keeps it. A triplet is let through once retried after `delay` seconds and
within `window` seconds of its first attempt; it stays let through while it
is used (`keep` seconds since its last message). Skipped entirely for:
- mail that authenticated its sender: SPF pass for the MAIL FROM domain or a
  valid DKIM signature (the domains that sign or publish SPF are the ones
  that retry anyway, and their mail is wanted without delay);
- client networks that passed greylisting `auto_allow` times (a friend's
  server is not made to wait every day).
Networks are /24 (IPv4) and /64 (IPv6): big senders retry from another
address of the same farm. When the store fails, mail is let through.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hatoba.store.greylist import GreylistError, GreylistStore, Triplet

log = logging.getLogger(__name__)

PRUNE_EVERY = 600.0  # seconds
_BATV = re.compile(r"^prvs=[^=]+=", re.IGNORECASE)  # BATV keys change daily (BATV draft, prvs=KEY=user)


@dataclass(frozen=True)
class GreylistDecision:
    wait: bool
    retry_in: float = 0.0  # seconds until a retry is let through
    note: str = ""  # why it was let through without waiting, for the log


def network_of(ip: str, *, v4: int, v6: int) -> str:
    """The /v4 (IPv4, also when mapped into IPv6) or /v6 network of `ip`, as text; `ip` itself when
    it is no address. A whole IPv4 address is written without its /32."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = v4 if addr.version == 4 else v6
    if prefix == addr.max_prefixlen:
        return str(addr)
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def client_network(ip: str) -> str:
    return network_of(ip, v4=24, v6=64)


def normal_sender(sender: str) -> str:
    local, at, domain = sender.strip().lower().rpartition("@")
    if not at:
        return sender.strip().lower()
    local = _BATV.sub("", local).split("+", 1)[0]
    return f"{local}@{domain}"


class Greylisting:
    def __init__(
        self,
        store: GreylistStore,
        *,
        delay: float,
        window: float,
        keep: float,
        auto_allow: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.delay, self.window, self.keep, self.auto_allow = delay, window, keep, auto_allow
        self._clock = clock
        self._pruned = float("-inf")
        self._prune_lock = threading.Lock()

    def decide(self, client_ip: str, sender: str, recipients: tuple[str, ...], *, authenticated: str) -> GreylistDecision:
        """Whether this message waits; `authenticated` names what authenticated its sender ("" = nothing)."""
        if authenticated:
            return GreylistDecision(False, note=f"sender authenticated by {authenticated}")
        now = self._clock()
        network = client_network(client_ip)
        try:
            self._maybe_prune(now)
            if self.auto_allow and self.store.client_passes(network, now - self.keep) >= self.auto_allow:
                return GreylistDecision(False, note=f"{network} retried often enough before")
            triplets = [Triplet(network, normal_sender(sender), r.lower()) for r in dict.fromkeys(recipients)]
            seen = self.store.seen(triplets, now)
            waiting: list[float] = []
            ready: list[Triplet] = []
            for triplet, known in seen.items():
                if known.passed:
                    continue
                elapsed = now - known.first_seen
                if elapsed > self.window:  # retried too late: start over
                    self.store.restart(triplet, now)
                    waiting.append(self.delay)
                elif elapsed < self.delay:
                    waiting.append(self.delay - elapsed)
                else:
                    ready.append(triplet)
            if waiting:
                return GreylistDecision(True, retry_in=max(waiting))
            if ready:
                self.store.passed(ready, network, now)
                return GreylistDecision(False, note="retried in time")
        except GreylistError as exc:
            log.error("greylisting skipped: %s", exc)
            return GreylistDecision(False, note="store unavailable")
        return GreylistDecision(False, note="known triplet")

    def _maybe_prune(self, now: float) -> None:
        with self._prune_lock:
            if now - self._pruned < PRUNE_EVERY:
                return
            self._pruned = now
        self.store.prune(now - self.window, now - self.keep)
