"""Keeping a certificate from the ACME CA: when to order one, and putting it in place.

Runs in the first worker, which serves the http and https listeners the
challenges are answered on. Every POLL seconds it looks for a request from
`hatoba cert acme renew`; every CHECK_EVERY seconds, and at the moment the
certificate falls due, it decides whether to order:

- there is no certificate from the CA yet, or it is not for tls.key;
- two thirds of its lifetime are gone, or the CA's renewal information
  (ARI, RFC 9773, asked at most as often as the CA says) suggests earlier;
- a name to cover is missing from it (a domain was added), unless that
  name failed validation less than RETRY_DROPPED ago.

A failed order keeps the certificate in use, is one log line, and the next
try waits BACKOFF_FIRST, doubling up to BACKOFF_MAX (a request from the
command line does not wait). A new certificate is checked (for tls.key, for
the names, loadable by OpenSSL) before it replaces data/acme/cert.pem, then
every worker loads it in place as SIGHUP would: open connections keep theirs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hatoba.acme.challenges import ChallengeBoard
from hatoba.acme.files import AcmeFiles, belongs_to_key, number, read_chain, table
from hatoba.config.schema import Config
from hatoba.fsutil import write_atomic
from hatoba.pki.tlsctx import TlsSetupError, server_context

log = logging.getLogger(__name__)

POLL = 1.0
CHECK_EVERY = 3600.0
RENEW_AT = 2 / 3  # of the lifetime
BACKOFF_FIRST = 60.0
BACKOFF_MAX = 6 * 3600.0
RETRY_DROPPED = 24 * 3600.0


def renew_time(leaf: x509.Certificate, ari_time: float | None = None) -> float:
    start = leaf.not_valid_before_utc.timestamp()
    end = leaf.not_valid_after_utc.timestamp()
    at = start + (end - start) * RENEW_AT
    return min(at, ari_time) if ari_time is not None else at


def backoff(failures: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1))


def covered_names(leaf: x509.Certificate) -> set[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):  # none, or one that does not parse
        return set()
    return {name.lower() for name in san.get_values_for_type(x509.DNSName)}


def wanted_names(config: Config, local_domains: list[str]) -> list[str]:
    """acme.names, or the hostname and, while the https listener is on, the
    autoconfig. and mta-sts. names of each local domain (the hostname first)."""
    if config.acme.names:
        return list(dict.fromkeys(config.acme.names))
    names = [config.server.hostname.lower().rstrip(".")]
    https = config.listeners.get("https")
    if https is not None and https.enabled:
        for domain in sorted(local_domains):
            names += [f"autoconfig.{domain}", f"mta-sts.{domain}"]
    return list(dict.fromkeys(names))


class AcmeManager:
    def __init__(self, config: Config, board: ChallengeBoard, *, local_domains: Callable[[], list[str]],
                 reload: Callable[[], bool]) -> None:
        """`local_domains` lists the directory's domains (called in a thread); `reload` loads
        the certificates in every worker (Server.reload) and says whether it worked."""
        self.config = config
        self.board = board
        self.files = AcmeFiles.of(config)
        self._local_domains = local_domains
        self._reload = reload
        self._next_check = 0.0
        self._started = False

    async def run(self) -> None:
        while True:
            try:
                if not self._started:
                    await asyncio.to_thread(self._start)
                    self._started = True
                tokens = await asyncio.to_thread(self.files.take_requests)
                if tokens or time.time() >= self._next_check:
                    await self.tend(tokens)
            except Exception as exc:  # noqa: BLE001 - a bug here must not end renewals for good
                log.error("acme: unexpected %s: %s; trying again in %s", type(exc).__name__, exc,
                          _duration(BACKOFF_FIRST))
                self._next_check = time.time() + BACKOFF_FIRST
            await asyncio.sleep(POLL)

    def _start(self) -> None:
        self.files.make()
        state = self.files.read_state()
        if state.pop("ordering", None) is not None:  # an order the last run did not finish
            self.files.write_state(state)

    async def tend(self, tokens: list[str] | None = None) -> None:
        """Order a certificate if one is due (or asked for), and decide when to look again.
        Every token taken is answered, whatever happens."""
        result = "failed: an unexpected error; see the server's log"
        try:
            result = await self._tend(bool(tokens))
        finally:
            if tokens:
                await asyncio.to_thread(self.files.answer, tokens, result)
            self._next_check = await asyncio.to_thread(self._next_look)

    async def _tend(self, asked: bool) -> str:
        now = time.time()
        state = await asyncio.to_thread(self.files.read_state)
        chain = await asyncio.to_thread(read_chain, self.files.cert)
        names = wanted_names(self.config, await asyncio.to_thread(self._local_domains))
        if chain and number(table(state, "ari"), "ask_again") <= now:
            await self._ask_ari(chain[0])
            state = await asyncio.to_thread(self.files.read_state)
        reason = await asyncio.to_thread(self._why_order, chain, names, state, now)
        if asked:
            reason = reason or "asked by hatoba cert acme renew"
        elif reason is not None and now < number(state, "next_attempt"):
            return "backing off after a failure"
        if reason is None:
            return "nothing to do"
        return await self._order(names, reason)

    def _why_order(self, chain: list[x509.Certificate], names: list[str], state: dict[str, Any],
                   now: float) -> str | None:
        if not chain:
            return "there is no certificate from the CA yet"
        leaf = chain[0]
        if not belongs_to_key(leaf, self.config.tls.key):
            return f"the certificate is not for {self.config.tls.key}"
        if state.get("revoked") == f"{leaf.serial_number:x}":
            return "the certificate was revoked"
        if now >= renew_time(leaf, _ari_time(state, leaf)):
            return "two thirds of its lifetime are gone" if now < leaf.not_valid_after_utc.timestamp() \
                else "it has expired"
        covered = covered_names(leaf)
        dropped = table(state, "dropped")
        recent = now - number(state, "dropped_at") < RETRY_DROPPED
        missing = [n for n in names if n not in covered and not (recent and n in dropped)]
        if missing:
            return f"it does not cover {', '.join(missing)}"
        return None

    def _next_look(self) -> float:
        now = time.time()
        chain = read_chain(self.files.cert)
        state = self.files.read_state()
        at = now + CHECK_EVERY
        if chain:
            at = min(at, max(now + POLL, renew_time(chain[0], _ari_time(state, chain[0]))))
        if number(state, "next_attempt") > now:
            at = min(at, number(state, "next_attempt"))
        return at

    async def _ask_ari(self, leaf: x509.Certificate) -> None:
        """The CA's suggested renewal time, when its directory has renewalInfo (RFC 9773).
        Best effort: whatever goes wrong, renewal falls back to two thirds of the lifetime."""
        from hatoba.acme.order import renewal_info

        try:
            pem = leaf.public_bytes(Encoding.PEM)
            when, ask_again = await asyncio.to_thread(renewal_info, self.config.acme, self.files, pem)
        except Exception as exc:  # noqa: BLE001 - the CA's hint is optional
            log.warning("acme: the CA's renewal information: %s; renewing at two thirds of the lifetime",
                        _one_line(exc))
            when, ask_again = None, time.time() + BACKOFF_MAX
        state = await asyncio.to_thread(self.files.read_state)
        state["ari"] = {"serial": f"{leaf.serial_number:x}", "renew_at": when, "ask_again": ask_again}
        await asyncio.to_thread(self.files.write_state, state)

    async def _order(self, names: list[str], reason: str) -> str:
        """Order and install; the result in words ("installed ..." or "failed: why")."""
        from hatoba.acme.order import describe, issue, key_pem_of

        acme = self.config.acme
        state = await asyncio.to_thread(self.files.read_state)
        state["ordering"] = time.time()  # `hatoba cert acme renew` waits for a busy server
        await asyncio.to_thread(self.files.write_state, state)
        log.info("acme: ordering a certificate for %s from %s: %s", ", ".join(names), acme.directory_url, reason)
        try:
            key_pem = await asyncio.to_thread(key_pem_of, self.config.tls.key)
            issued = await asyncio.to_thread(issue, acme, self.files, key_pem, names, self.board,
                                             self.config.server.hostname.lower())
            installed = await asyncio.to_thread(self._install, issued.chain_pem, issued.names)
        except Exception as exc:  # noqa: BLE001 - every failure keeps the certificate and backs off
            return await self._failed(str(exc) if isinstance(exc, InstallError) else describe(exc, acme))
        if not self._reload():
            return await self._failed("the new certificate was written but the workers could not load it")
        state = await asyncio.to_thread(self.files.read_state)
        now = time.time()
        state.update(failures=0, last_error="", next_attempt=0, renewed_at=now, names=issued.names)
        state.pop("revoked", None)
        state.pop("ordering", None)
        if issued.dropped:
            state.update(dropped=issued.dropped, dropped_at=now)
        else:
            state.pop("dropped", None)
            state.pop("dropped_at", None)
        await asyncio.to_thread(self.files.write_state, state)
        text = (f"installed a certificate for {', '.join(issued.names)}, serial {installed.serial_number:x}, "
                f"valid until {installed.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
        log.info("acme: %s", text)
        return text

    async def _failed(self, why: str) -> str:
        state = await asyncio.to_thread(self.files.read_state)
        failures = int(number(state, "failures")) + 1
        wait = backoff(failures)
        state.update(failures=failures, last_error=why, last_attempt=time.time(), next_attempt=time.time() + wait)
        state.pop("ordering", None)
        await asyncio.to_thread(self.files.write_state, state)
        chain = await asyncio.to_thread(read_chain, self.files.cert)
        kept = (f"kept the certificate in use (valid until {chain[0].not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
                if chain else f"still serving {self.config.tls.cert}")
        log.error("acme: no certificate from %s: %s; %s; next try in %s",
                  self.config.acme.directory_url, why, kept, _duration(wait))
        return f"failed: {why}"

    def _install(self, chain_pem: bytes, names: list[str]) -> x509.Certificate:
        """Check the CA's answer and put it in place of cert.pem."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise InstallError("the CA sent no PEM certificate") from None
        leaf = chain[0]
        if not belongs_to_key(leaf, self.config.tls.key):
            raise InstallError(f"the CA's certificate is not for {self.config.tls.key}")
        missing = set(names) - covered_names(leaf)
        if missing:
            raise InstallError(f"the CA's certificate does not cover {', '.join(sorted(missing))}")
        trial = self.files.folder / ".cert.pem.trial"
        write_atomic(trial, chain_pem, sync_dir=False)
        try:
            server_context(dataclasses.replace(self.config.tls, cert=trial, domains={}))  # as the listeners load it
        except TlsSetupError as exc:
            trial.unlink(missing_ok=True)
            raise InstallError(f"OpenSSL cannot load the CA's certificate: {exc}") from None
        trial.replace(self.files.cert)
        return leaf


class InstallError(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _ari_time(state: dict[str, Any], leaf: x509.Certificate) -> float | None:
    ari = table(state, "ari")
    if ari.get("serial") != f"{leaf.serial_number:x}":
        return None
    when = number(ari, "renew_at")
    return when or None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"

__all__ = ["AcmeManager", "backoff", "covered_names", "renew_time", "wanted_names"]
