"""Remote delivery: the recipients of one message that live elsewhere.

- Recipients are grouped by destination domain; each domain goes to its
  next hop (delivery/nexthop.py: route, relayhost or MX) with the TLS policy
  of delivery/tlspolicy.py.
- MX hosts are tried in RFC 5321 §5.1 order, each of their addresses in
  turn, until one answers for the recipients; a host that cannot be reached
  or refuses the connection is skipped. Null MX (RFC 7505) bounces at once.
- Up to delivery.max_recipients_per_transaction recipients share a
  transaction; at most delivery.destination_concurrency transactions run
  at once per next hop in the whole server (each delivery process opens
  its share); idle connections are kept a few seconds and reused.
- Every attempt writes one mail-log line: the host and address, TLS version
  and cipher, whether the certificate was verified, and the remote reply.

The result is one Outcome per recipient; the queue manager turns them into
state, retries and bounces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from hatoba.config.schema import Config
from hatoba.delivery.nexthop import NextHop, NextHopError, is_ip_literal, next_hop_for
from hatoba.delivery.smtp_client import ConnectionFailed, Reply, SmtpConnection, TlsContexts
from hatoba.delivery.tlspolicy import TlsPolicy, TlsPolicyLookup
from hatoba.dnsutil.resolver import DnsError, NullMx, Resolver
from hatoba.logs import mail_log
from hatoba.delivery.setup import relayhost_credentials
from hatoba.pki.tlsctx import client_context
from hatoba.queue.spool import QueuedMessage

log = logging.getLogger(__name__)

# Addresses tried per transaction before giving up until the next retry
# (Postfix smtp_mx_address_limit is 5).
MAX_ADDRESSES = 5
MAX_HOPS = 50  # Received headers before a message counts as looping
REAP_INTERVAL = 1.0


def share_of(limit: int, part: int, parts: int) -> int:
    """Part `part`'s share of a limit split over `parts` processes: the shares add up
    to the limit (20 over 3: 7, 7, 6), and each is at least one."""
    return max(1, limit // parts + (1 if part < limit % parts else 0))


@dataclass(frozen=True)
class Outcome:
    """What became of one recipient in one attempt."""

    recipient: str
    reply: Reply
    remote_mta: str = ""  # the server that answered, for the DSN
    tls: bool = False  # the answer came over TLS (for the stats)

    @property
    def delivered(self) -> bool:
        return self.reply.ok

    @property
    def bounced(self) -> bool:
        return not self.reply.ok and not self.reply.temporary


@dataclass(frozen=True)
class Candidate:
    server_name: str  # the name the certificate must carry (MX host or next hop)
    ip: str


class ConnectionPool:
    """Idle connections by (address, port, name, TLS level, login), for the next message."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._idle: dict[tuple[object, ...], list[SmtpConnection]] = defaultdict(list)
        self._closing: set[asyncio.Task[None]] = set()

    def _close_later(self, conn: SmtpConnection) -> None:
        task = asyncio.get_running_loop().create_task(conn.close())
        self._closing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._closing.discard)

    def take(self, key: tuple[object, ...]) -> SmtpConnection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable and time.monotonic() - conn.last_used < self.keep_seconds:
                return conn
            self._close_later(conn)
        return None

    def give_back(self, key: tuple[object, ...], conn: SmtpConnection) -> None:
        if self.keep_seconds > 0 and conn.usable:
            self._idle[key].append(conn)
        else:
            self._close_later(conn)

    async def reap(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        closing = []
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not everything and c.usable and now - c.last_used < self.keep_seconds]
            closing += [c for c in idle if c not in keep]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        await asyncio.gather(*(c.close() for c in closing), return_exceptions=True)


class RemoteDelivery:
    def __init__(
        self,
        config: Config,
        *,
        resolver: Resolver | None = None,
        policies: TlsPolicyLookup | None = None,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        """`share` = (part, parts): with several delivery processes this one opens its
        share of delivery.destination_concurrency, so that the server as a whole
        keeps to the limit a destination was promised."""
        delivery = config.delivery
        self.config = config
        self.delivery = delivery
        self.helo_name = config.server.hostname
        self.resolver = resolver or Resolver(delivery.resolver)
        self.policies = policies or TlsPolicyLookup(delivery)
        self.contexts = TlsContexts(
            verifying=client_context(config.tls.ca_file, verify=True),
            opportunistic=client_context(config.tls.ca_file, verify=False),
        )
        self.credentials = relayhost_credentials(config)
        self.pool = ConnectionPool(delivery.connection_reuse_seconds)
        self._limits: dict[tuple[object, ...], asyncio.Semaphore] = {}
        self.destination_limit = share_of(delivery.destination_concurrency, *share)
        self._reaper: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.pool.reap(everything=True)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            await self.pool.reap()

    # -- delivery ----------------------------------------------------------------

    async def deliver(self, queued: QueuedMessage, recipients: Sequence[str], data: bytes) -> list[Outcome]:
        """Try every recipient once; `data` is the message as it goes on the wire (unstuffed)."""
        hops = _hop_count(data)
        if hops > MAX_HOPS:  # RFC 5321 §6.3: a loop; Postfix's hopcount_limit is 50 too
            reply = Reply(554, f"5.4.6 too many hops ({hops} Received headers): a mail loop", remote=False)
            return self._log_all(queued, list(recipients), reply, relay="none")
        by_domain: dict[str, list[str]] = defaultdict(list)
        for rcpt in recipients:
            by_domain[rcpt.rpartition("@")[2].lower()].append(rcpt)
        domains = list(by_domain.items())
        results = await asyncio.gather(
            *(self._deliver_domain(queued, domain, rcpts, data) for domain, rcpts in domains),
            return_exceptions=True,
        )
        outcomes: list[Outcome] = []
        for (domain, rcpts), result in zip(domains, results):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                # A bug must cost a retry, not the other domains' results.
                log.error("delivery of %s to %s failed", queued.qid, domain, exc_info=result)
                reply = Reply(451, f"4.3.0 internal error delivering to {domain}: {_one_line(result)}", remote=False)
                outcomes += self._log_all(queued, rcpts, reply, relay="none")
            else:
                outcomes += result
        return outcomes

    async def _deliver_domain(
        self, queued: QueuedMessage, domain: str, recipients: list[str], data: bytes
    ) -> list[Outcome]:
        try:
            hop = next_hop_for(domain, self.delivery)
        except NextHopError as exc:
            reply = Reply(451, f"4.3.5 next hop for {domain} is misconfigured: {exc}", remote=False)
            return self._log_all(queued, recipients, reply, relay="none")
        policy = await self.policies.lookup(domain, hop)
        limit = self._limits.setdefault(hop.key, asyncio.Semaphore(self.destination_limit))
        size = self.delivery.max_recipients_per_transaction
        outcomes: list[Outcome] = []
        for start in range(0, len(recipients), size):
            batch = recipients[start : start + size]
            async with limit:
                outcomes += await self._deliver_batch(queued, hop, policy, batch, data)
        return outcomes

    async def _deliver_batch(
        self, queued: QueuedMessage, hop: NextHop, policy: TlsPolicy, recipients: list[str], data: bytes
    ) -> list[Outcome]:
        try:
            candidates = await self._candidates(hop)
        except NullMx as exc:
            reply = Reply(556, f"5.1.10 {exc}", remote=False)
            return self._log_all(queued, recipients, reply, relay="none")
        except DnsError as exc:
            if exc.temporary:
                reply = Reply(451, f"4.4.3 DNS lookup for {hop.host} failed: {exc}; will retry", remote=False)
            else:
                reply = Reply(550, f"5.1.2 cannot find the mail server of {hop.host}: {exc}", remote=False)
            return self._log_all(queued, recipients, reply, relay="none")
        except LoopsBack as exc:
            return self._log_all(queued, recipients, Reply(554, f"5.4.6 {exc}", remote=False), relay="none")
        last = Reply(451, f"4.4.4 no mail server address found for {hop.describe()}", remote=False)
        for candidate in candidates:
            try:
                result, conn = await self._transaction(queued, hop, policy, candidate, recipients, data)
            except ConnectionFailed as exc:
                last = exc.reply
                mail_log(
                    "deferred", qid=queued.qid, to=_list(recipients),
                    relay=f"{candidate.server_name}[{candidate.ip}]:{hop.port}", reason=str(last),
                )
                continue  # a host that failed or refused the session: the next one may not
            return [self._log_outcome(queued, rcpt, result[rcpt], conn) for rcpt in recipients]
        if not last.temporary:
            # Every host refused the session itself (5xx greeting, HELO or STARTTLS):
            # wait and retry, as Postfix with smtp_skip_5xx_greeting; the queue
            # lifetime bounces it in the end.
            last = Reply(451, f"4.4.0 no host took the message; the last said: {last}", remote=False)
        return self._log_all(queued, recipients, last, relay=hop.describe(), logged=True)

    async def _transaction(
        self,
        queued: QueuedMessage,
        hop: NextHop,
        policy: TlsPolicy,
        candidate: Candidate,
        recipients: list[str],
        data: bytes,
    ) -> tuple[dict[str, Reply], SmtpConnection]:
        credentials = self.credentials if hop.relayhost else None
        key = (candidate.ip, hop.port, candidate.server_name, policy.level, hop.implicit_tls,
               credentials[0] if credentials else "")
        envelope = queued.envelope
        conn = self.pool.take(key)
        if conn is not None:
            try:
                result = await self._send(conn, envelope, recipients, data)
                if conn.usable or not all(r.temporary for r in result.replies.values()):
                    self.pool.give_back(key, conn)
                    return result.replies, conn
                # An idle connection the server gave up on (421 to MAIL): use a fresh one.
            except ConnectionFailed:
                pass  # the server closed the idle connection; open a fresh one
        conn = await self._open(hop, policy, candidate, credentials)
        result = await self._send(conn, envelope, recipients, data)
        self.pool.give_back(key, conn)
        return result.replies, conn

    @staticmethod
    async def _send(conn: SmtpConnection, envelope, recipients: list[str], data: bytes):  # type: ignore[no-untyped-def]
        try:
            return await conn.send(
                envelope.mail_from, recipients, data, smtputf8=envelope.smtputf8, body_8bit=envelope.body_8bit
            )
        except ConnectionFailed:
            raise
        except Exception as exc:  # a library surprise: this connection is not to be trusted again
            conn.smtp.close()
            log.error("SMTP client error with %s", conn.relay_text, exc_info=True)
            raise ConnectionFailed(
                Reply(451, f"4.3.0 SMTP client error with {conn.relay_text}: {_one_line(exc)}", remote=False)
            ) from None

    async def _open(
        self, hop: NextHop, policy: TlsPolicy, candidate: Candidate, credentials: tuple[str, str] | None
    ) -> SmtpConnection:
        options = dict(
            ip=candidate.ip, port=hop.port, server_name=candidate.server_name, helo_name=self.helo_name,
            policy=policy, implicit_tls=hop.implicit_tls, contexts=self.contexts,
            connect_timeout=self.delivery.connect_timeout, command_timeout=self.delivery.command_timeout,
            credentials=credentials,
        )
        try:
            return await SmtpConnection.open(**options)  # type: ignore[arg-type]
        except ConnectionFailed as exc:
            if policy.requires_tls or hop.implicit_tls or not exc.tls_handshake_failed:
                raise
            # Opportunistic TLS whose handshake failed: Postfix then delivers in
            # clear rather than not at all; so do we, and say so in the log.
            log.warning("TLS handshake with %s[%s] failed (%s); delivering without TLS",
                        candidate.server_name, candidate.ip, exc.reply.text)
            return await SmtpConnection.open(**options, try_tls=False)  # type: ignore[arg-type]

    async def _candidates(self, hop: NextHop) -> list[Candidate]:
        if not hop.mx_lookup:
            if is_ip_literal(hop.host):
                return [Candidate(hop.host, hop.host)]
            return [Candidate(hop.host, ip) for ip in (await self.resolver.addresses(hop.host))[:MAX_ADDRESSES]]
        candidates: list[Candidate] = []
        errors: list[DnsError] = []
        hosts = await self.resolver.mx_hosts(hop.host)
        names = [mx.name for mx in hosts]
        if self.helo_name in names:
            # RFC 5321 §5.1: we are one of the MX hosts; only better ones may take it.
            hosts = hosts[: names.index(self.helo_name)]
            if not hosts:
                raise LoopsBack(f"mail for {hop.host} loops back to myself ({self.helo_name} is its best MX)")
        for mx in hosts:
            try:
                addresses = await self.resolver.addresses(mx.name)
            except DnsError as exc:
                errors.append(exc)
                continue
            candidates += [Candidate(mx.name, ip) for ip in addresses]
            if len(candidates) >= MAX_ADDRESSES:
                break
        if not candidates and errors:
            # One host's temporary failure outweighs another's NXDOMAIN: no bounce in an outage.
            raise next((e for e in errors if e.temporary), errors[0])
        return candidates[:MAX_ADDRESSES]

    # -- logging -------------------------------------------------------------------

    def _log_outcome(self, queued: QueuedMessage, rcpt: str, reply: Reply, conn: SmtpConnection) -> Outcome:
        event = "delivered" if reply.ok else ("deferred" if reply.temporary else "bounced")
        mail_log(
            event, qid=queued.qid, to=f"<{rcpt}>", relay=conn.relay_text, tls=conn.tls_text,
            verified="yes" if conn.verified else "no",
            delay=f"{time.time() - queued.envelope.received_at:.3f}s", reply=str(reply),
        )
        return Outcome(rcpt, reply, remote_mta=conn.server_name, tls=bool(conn.tls_version))

    def _log_all(
        self, queued: QueuedMessage, recipients: list[str], reply: Reply, *, relay: str, logged: bool = False
    ) -> list[Outcome]:
        if not logged or not reply.temporary:
            event = "deferred" if reply.temporary else "bounced"
            for rcpt in recipients:
                mail_log(event, qid=queued.qid, to=f"<{rcpt}>", relay=relay, reason=str(reply))
        return [Outcome(rcpt, reply) for rcpt in recipients]


class LoopsBack(Exception):
    """The destination's best MX host is this server."""


def _hop_count(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else len(data)]
    return head.count(b"\nReceived:") + head.startswith(b"Received:")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _list(recipients: list[str]) -> str:
    return ",".join(f"<{r}>" for r in recipients)


