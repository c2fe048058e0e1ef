"""Server: wires config, directory, spool, store, queue manager and listeners together.

This is the one place (with cli/) that knows every part; each part only
knows the small interfaces it is handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import resource
import socket
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from hatoba.acme.challenges import ChallengeBoard
from hatoba.acme.files import served_tls
from hatoba.checks import build_runner as build_checks
from hatoba.config.load import ConfigError, load_config
from hatoba.config.schema import SMTP_LISTENERS, Config, ListenerConfig
from hatoba.logs import mail_log, session_id
from hatoba.metrics import ListenerMetrics, Metrics, OtherWorkers
from hatoba.net.http_server import HttpSession, refusal as http_refusal
from hatoba.net import worker_link as W
from hatoba.net.ids import new_session_id
from hatoba.net.limits import ConnectionLimiter
from hatoba.net.rates import EventRates
from hatoba.net.acceptor import BalancedAcceptor, heartbeat
from hatoba.net.listen import BACKLOG, FIRST_WORKER_ONLY, bind_all
from hatoba.net.login import Logins, protocol_of
from hatoba.net.stream import Stream
from hatoba.net.worker_procs import WorkerProcesses
from hatoba.imap.session import ImapContext, ImapSession, MailboxEvents
from hatoba.net.pop3_session import Pop3Context, Pop3Session
from hatoba.net.smtp_session import SmtpContext, SmtpSession
from hatoba.pki.tlsctx import TlsSetupError, server_context
from hatoba.policy.auth_throttle import LoginThrottle
from hatoba.policy.pop_before_smtp import PopBeforeSmtp
from hatoba.policy.relay import TrustedNetworks
from hatoba.proto.pop3 import replies as pop3_replies
from hatoba.proto.smtp import replies as R
from hatoba.delivery.setup import check_setup as check_delivery_setup
from hatoba.queue.process import DeliveryProcesses, build_manager
from hatoba.queue.spool import Envelope, Spool, SpoolError
from hatoba.store.directory import Directory
from hatoba.store.login_cache import SharedLoginCache
from hatoba.store.maildir import MaildirStore
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.secretbox import SecretBox
from hatoba.store.uidlist import learn_file_times
from hatoba.web.ops import operations_routes
from hatoba.web.public import acme_challenges, crl_routes, https_redirect, https_routes
from hatoba.web.routes import Router

if TYPE_CHECKING:  # the delivery machinery (DNS, SMTP client, DKIM) loads only where it runs
    from hatoba.net.shared_counts import SharedCounts
    from hatoba.queue.manager import QueueManager
    # Likewise the web admin (jinja2) and the CA's renewal (cryptography): in the first
    # worker only, and only when the https listener is on or the CA key is ours.
    from hatoba.web.admin.app import AdminApp

log = logging.getLogger(__name__)
DMARC_REPORTS_EVERY = 3600.0  # seconds between two looks for a finished day's reports

SHUTDOWN_GRACE = 10.0  # seconds sessions get to finish on stop
WORKERS_AWAITED = 2.0  # seconds the first worker waits for the others before it accepts alone
# Descriptors besides connections: listeners, the directory, spool and Maildir files, logs.
SPARE_DESCRIPTORS = 100
SERVED_LISTENERS = (*SMTP_LISTENERS, "pop3", "pop3s", "imap", "imaps", "http", "https")
WEB_LISTENERS = ("http", "https")


class ForwardedQueue:
    """The queue manager as a worker other than the first sees it: each committed
    message is told to the first worker, which owns the delivery process."""

    alive = True

    def __init__(self, forward: Callable[[W.Message], None]) -> None:
        self._forward = forward

    def notify(self, qid: str) -> None:
        self._forward(W.Queued(qid))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class Server:
    def __init__(
        self, config: Config, *, delivery_process: bool = True, log_fd: int | None = None,
        forward: Callable[[W.Message], None] | None = None, counts: SharedCounts | None = None,
        delivery_parts: int = 1,
    ) -> None:
        """`delivery_process`: deliver from a child process (the default when
        the config came from a file); else in this process's threads.
        `log_fd`: the open log file, for the delivery process to write to.
        Several worker processes (net/worker_procs.py): `counts` holds the
        connection counts they share; a worker other than the first sends
        what the first must know to `forward` (the first has none);
        `delivery_parts` delivery processes share the queue (queue/process.py)."""
        self.config = config
        self.log_fd = log_fd
        self.counts = counts
        self.first_worker = forward is None
        self._background: set[asyncio.Task[None]] = set()  # tasks nobody awaits, held till they end
        self._tending: asyncio.Task[None] | None = None  # renewing a certificate of hatoba's CA
        self._reports: asyncio.Task[None] | None = None  # DMARC aggregate reports, once a day
        self._acme: asyncio.Task[None] | None = None  # keeping a certificate from the ACME CA
        # Pending ACME challenges, answered by the http and https listeners of the first worker.
        self.acme_board = ChallengeBoard() if forward is None and config.acme.enabled else None
        self.workers: WorkerProcesses | None = None  # the others, started by the first (start_workers)
        paths = config.paths
        for folder in (paths.data_dir, paths.mail_dir, paths.queue_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        learn_file_times(paths.mail_dir)  # how far folder times can be trusted (store/uidlist.py)
        self.directory = Directory(paths.directory_db)
        self.directory.login_cache_seconds = config.limits.login_cache_seconds
        if counts is not None:  # a login remembered by one worker is remembered by all
            self.directory.login_cache = SharedLoginCache(counts)
        self.directory.postmaster = config.server.postmaster
        self.store = MaildirStore(paths.mail_dir, hostname=config.server.hostname)
        self.spool = Spool(paths.queue_dir, on_commit=self._on_commit)
        self.metrics = Metrics(tuple(lc.name for lc in config.listeners.values() if lc.enabled))
        self.manager: QueueManager | DeliveryProcesses | ForwardedQueue
        self.mailbox_events = MailboxEvents()
        if forward is not None:
            self.manager = ForwardedQueue(forward)
            self.mailbox_events.publish = lambda user, changes: forward(W.Changed(user, changes))
        elif delivery_process and config.config_path is not None:
            child = DeliveryProcesses(delivery_parts, config.config_path, config.log.level,
                                      on_delivered=self.mailbox_events.delivered, log_fd=log_fd,
                                      stats=self.metrics, on_restart=self.metrics.delivery_restarts.inc)
            self.manager = child
            self.metrics.watch_delivery_process(lambda: child.pid, lambda: child.alive)
            self.metrics.watch_delivery_parts(lambda: child.pids)
        else:
            manager = self.manager = build_manager(
                config, self.spool, self.directory, self.store, on_delivered=self.mailbox_events.delivered,
                stats=self.metrics,
            )
            self.metrics.watch_delivery_process(lambda: None, lambda: manager.alive)
        if forward is None:  # the first worker answers for the queue
            self.metrics.watch_queue(self.spool.census, time.time)
        is_local = self.directory.is_local_domain
        # Plain http: monitoring for [metrics] networks, else only a redirect to https (web/public.py).
        self.router = Router([*operations_routes(self.metrics, self.health,
                                                 TrustedNetworks.parse(config.metrics.networks),
                                                 others=self._workers_metrics),
                              *crl_routes(config)],
                             fallback=acme_challenges(self.acme_board, https_redirect(config, is_local, self._port_of)))
        self.tls_context: ssl.SSLContext | None = server_context(served_tls(config))
        if forward is None:  # only the first worker delivers (its delivery processes)
            check_delivery_setup(config)
        limits = config.limits
        self.limiter = ConnectionLimiter(
            max_total=limits.max_connections,
            max_per_ip=limits.max_connections_per_ip,
            max_per_user_ip=limits.max_user_connections_per_ip,
            shared=counts,
        )
        # One login path for every protocol: failed logins on POP3 count against SMTP AUTH too.
        self.throttle = LoginThrottle.open(config.auth, paths.directory_db)
        self.logins = Logins(config=config, directory=self.directory, throttle=self.throttle, limiter=self.limiter,
                             metrics=self.metrics)
        self.pop_before_smtp = PopBeforeSmtp.open(config.smtp.pop_before_smtp_minutes, paths.directory_db)
        self.smtp = SmtpContext(
            config=config,
            directory=self.directory,
            spool=self.spool,
            logins=self.logins,
            trusted=TrustedNetworks.parse(config.smtp.trusted_networks),
            pop_before_smtp=self.pop_before_smtp,
            tls_context=self.tls_context,
            metrics=self.metrics,
            rates=EventRates(self.limiter.counts, window=60.0),
            harvest=EventRates(self.limiter.counts, window=600.0),
            checks=build_checks(config, self.directory.is_local_domain)
            if any(listener.name == "smtp" for listener in served_listeners(config, warn=False)) else None,
        )
        self.pop3 = Pop3Context(
            config=config,
            directory=self.directory,
            store=self.store,
            logins=self.logins,
            pop_before_smtp=self.pop_before_smtp,
            tls_context=self.tls_context,
            secrets=SecretBox(paths.secrets_key) if config.pop3.apop else None,
            events=self.mailbox_events,
            metrics=self.metrics,
        )
        self.imap = ImapContext(
            config=config,
            directory=self.directory,
            mailboxes=MailboxStore(
                paths.mail_dir, quota_bytes=config.imap.quota_mb * 1024 * 1024,
                user_quota_mb=self.directory.quota_mb,
            ),
            logins=self.logins,
            pop_before_smtp=self.pop_before_smtp,
            tls_context=self.tls_context,
            events=self.mailbox_events,
            metrics=self.metrics,
            feedback=self._junk_feedback(config),
        )
        # https: autoconfiguration and the MTA-STS policy, and the web admin (served by the first worker only).
        self.admin: AdminApp | None = None
        https = config.listeners.get("https")
        if forward is None and https is not None and https.enabled:
            from hatoba.web.admin.app import AdminApp, AdminContext

            mailboxes = self.imap.mailboxes
            self.admin = AdminApp(AdminContext(config, self.directory, self.logins, https, self.spool,
                                               lambda address: mailboxes.for_user(address).quota()))
        self.https_router = Router([*https_routes(config, is_local, self._port_of),
                                    *(self.admin.routes() if self.admin is not None else ())])
        self._servers: list[asyncio.Server | BalancedAcceptor] = []
        self._listening: dict[str, asyncio.Server | BalancedAcceptor] = {}  # for health()
        self._http: set[asyncio.Task[None]] = set()  # HTTP requests: cancelled at once on stop
        self._sessions: set[asyncio.Task[Any]] = set()
        self._parked: dict[Stream, ImapSession] = {}  # IDLE sessions without a task (Stream.park)
        self._admitted: dict[Stream, str] = {}  # counted connections not yet open (TLS handshake), -> address
        self.imap.park = self._park
        self.bound: dict[str, tuple[str, int]] = {}  # listener name -> actual address

    def _on_commit(self, qid: str) -> None:
        self.manager.notify(qid)

    async def _tend_own_ca(self) -> None:
        """Renew a certificate of hatoba's CA before two thirds of its life, and keep its CRL
        fresh (pki/renew.py); a renewal is loaded in place, as SIGHUP would."""
        from hatoba.pki.renew import CHECK_EVERY, tend_own_ca

        while True:
            renewed = await asyncio.to_thread(tend_own_ca, self.config.tls)
            if renewed is not None:
                self.reload()
            await asyncio.sleep(CHECK_EVERY)

    async def _send_dmarc_reports(self) -> None:
        """Queue yesterday's DMARC aggregate reports (checks/dmarc_reports.py), checked every hour."""
        from hatoba.checks.dmarc_reports import DmarcReporter, ReportError, ReportStore
        from hatoba.checks.lookup import Lookup

        config = self.config
        loop = asyncio.get_running_loop()

        def inject(to: tuple[str, ...], message: bytes) -> None:
            envelope = Envelope(mail_from="", recipients=to, received_at=time.time())
            try:
                qid = self.spool.inject(envelope, message)
            except SpoolError as exc:
                raise ReportError(str(exc)) from None
            loop.call_soon_threadsafe(self._on_commit, qid)

        reporter = DmarcReporter(
            ReportStore(config.paths.directory_db), Lookup(config.dns.resolver, timeout=5.0),
            hostname=config.server.hostname,
            sender=config.checks.dmarc_report_from or f"dmarc-reports@{config.server.hostname}", inject=inject,
        )
        while True:
            try:
                sent = await asyncio.to_thread(reporter.send_due, datetime.datetime.now(datetime.timezone.utc))
                for report in sent:
                    mail_log("dmarc-report", domain=report.policy_domain, day=report.day, to=",".join(report.to))
            except ReportError as exc:
                log.error("DMARC reports not sent: %s; trying again in an hour", exc)
            await asyncio.sleep(DMARC_REPORTS_EVERY)

    async def _keep_acme_certificate(self) -> None:
        from hatoba.acme.manager import AcmeManager  # loads the ACME library only where it runs

        assert self.acme_board is not None
        manager = AcmeManager(self.config, self.acme_board, local_domains=self.directory.list_domains,
                              reload=self.reload)
        await manager.run()

    def _port_of(self, name: str) -> int:
        """The port listener `name` listens on: the config's, or the one bound for port 0."""
        bound = self.bound.get(name)
        return bound[1] if bound is not None else self.config.listeners[name].port

    def reload(self) -> bool:
        """SIGHUP: the certificates, here and in every other worker."""
        if self.workers is not None:
            self.workers.reload()
        return self.reload_tls()

    def reload_tls(self) -> bool:
        """SIGHUP: take the certificates and keys from disk again (renewals, SNI changes).

        The new files are loaded into a fresh context first, so a broken renewal
        keeps the old certificates instead of breaking TLS. Then the live context
        takes the new chain and key in place: connections already open keep their
        session, new handshakes get the new certificate, and no listener restarts.
        """
        if self.tls_context is None:
            return False
        config = self.config
        if config.config_path is not None:
            try:
                config = load_config(config.config_path)
            except ConfigError as exc:
                log.error("certificate reload: %s; kept the certificates in use", exc)
                return False
        tls = served_tls(config)  # the ACME CA's certificate when there is one (acme/files.py)
        try:
            fresh = server_context(tls)
            self.tls_context.load_cert_chain(str(tls.cert), str(tls.key), password=lambda: b"")
        except (TlsSetupError, OSError, ssl.SSLError) as exc:
            log.error("certificate reload failed: %s; kept the certificates in use", exc)
            return False
        self.tls_context.sni_callback = fresh.sni_callback
        log.info("certificates reloaded from %s (%d SNI domain(s))", tls.cert, len(tls.domains))
        return True

    async def start(self, sockets: dict[str, list[socket.socket]] | None = None) -> None:
        """Recover the spool, start delivering, then accept on every listener:
        on `sockets` (from listen.bind_all, bound before root was dropped) or
        on sockets bound here."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_exception_handler)
        # Clean what a crash left in the spool before anything is accepted
        # (never while sessions commit), then start delivering.
        if self.first_worker:  # the others start once the first has cleaned up
            recovered = await asyncio.to_thread(self.spool.recover)
            if recovered:
                log.info("queue: %d message(s) from before the start", len(recovered))
        await self.manager.start()
        if self.first_worker:
            from hatoba.pki.renew import can_tend  # with cryptography: the other workers never load it

            if can_tend(self.config.tls):  # the CA key is ours: renew while running
                self._tending = loop.create_task(self._tend_own_ca())
        if self.acme_board is not None:
            self._acme = loop.create_task(self._keep_acme_certificate())
        if self.first_worker and self.config.checks.enabled and self.config.checks.dmarc_reports:
            self._reports = loop.create_task(self._send_dmarc_reports())
        room_for_connections(self.config.limits.max_connections)
        listeners = served_listeners(self.config, warn=sockets is None)  # serve warned when it bound them
        if sockets is None:
            sockets = bind_all(listeners)
        listeners = [lc for lc in listeners if lc.name in sockets]  # http: the first worker only
        if self.counts is not None:
            heartbeat(self.counts.beat)  # the other workers leave connections only to live ones
        for listener in listeners:
            for sock in sockets[listener.name]:
                server: asyncio.Server | BalancedAcceptor
                if self.counts is not None and listener.name not in FIRST_WORKER_ONLY:
                    # Several workers share the socket: spread the connections. The first
                    # worker takes its share once the others listen (start_workers).
                    server = BalancedAcceptor(sock, self._stream_factory(listener), self.counts.loads)
                    if not self.first_worker:
                        server.start()
                elif listener.implicit_tls:
                    # Alone on its socket: nothing to balance, but the acceptor gives implicit
                    # TLS its own transport (net/tls_socket.py), as with several workers.
                    server = BalancedAcceptor(sock, self._stream_factory(listener), _alone)
                    server.start()
                else:
                    server = await loop.create_server(self._stream_factory(listener), sock=sock, backlog=BACKLOG)
                self._servers.append(server)
                self._listening[f"{listener.name} {sock.getsockname()[1]}" if len(sockets[listener.name]) > 1
                                else listener.name] = server
            self.bound[listener.name] = sockets[listener.name][0].getsockname()[:2]
            (log.info if self.first_worker else log.debug)(  # one line per listener, not per worker
                "listening: %s on %s:%d (%s)", listener.name, listener.host, self.bound[listener.name][1],
                _describe(listener),
            )

    async def start_workers(self, sockets: list[dict[str, list[socket.socket]]], log_level: str) -> None:
        """The first worker starts the others, one per entry of `sockets` (their
        listening sockets), and waits until they listen; this process passes on
        what they report (net/worker_procs.py)."""
        assert self.config.config_path is not None and self.first_worker
        counts = self.counts

        def changed(message: W.Changed) -> None:
            self.mailbox_events.receive(message.user, message.changes)

        def restarting(index: int) -> None:
            if counts is not None:
                counts.clear(index)  # its connections died with it
            # A message it committed just before it died may never have been announced.
            task = asyncio.get_running_loop().create_task(self._announce_untried())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        workers = self.workers = WorkerProcesses(
            self.config.config_path, sockets, log_level=log_level, log_fd=self.log_fd,
            counts_fd=counts.fd if counts is not None else None,
            on_queued=self.manager.notify, on_changed=changed, on_restart=restarting,
        )
        self.mailbox_events.publish = lambda user, changes: workers.broadcast(W.Changed(user, changes))
        self.metrics.watch_workers(lambda: {0: os.getpid(), **workers.pids})
        # All start together, so that none takes a first burst alone; but a worker slow
        # to start (or failing) must not keep the ports unserved: WORKERS_AWAITED at most.
        starting = asyncio.ensure_future(workers.start())
        try:
            await asyncio.wait([starting], timeout=WORKERS_AWAITED)
        finally:
            for server in self._servers:
                if isinstance(server, BalancedAcceptor):
                    server.start()
        await starting

    async def _announce_untried(self) -> None:
        """Tell the delivery processes of every message none has tried; each ignores those it knows."""
        for qid in await asyncio.to_thread(self.spool.untried_ids):
            self.manager.notify(qid)

    async def _workers_metrics(self) -> OtherWorkers:
        return await self.workers.metrics() if self.workers is not None else OtherWorkers([], {})

    def _stream_factory(self, listener: ListenerConfig) -> Callable[[], Stream]:
        """A Stream for each accepted connection; it counts against the
        connection limits at once, and its session starts once the stream is
        open (after the TLS handshake on implicit-TLS ports)."""
        implicit_tls = self.tls_context if listener.implicit_tls else None
        handshake_timeout = self.config.limits.tls_handshake_timeout
        # The https listener reads the ClientHello first while a TLS-ALPN-01 challenge is up.
        chooser = self.acme_board if listener.name == "https" else None
        counts = self.metrics.listener(listener.name)

        def accepted(stream: Stream) -> bool:
            return self._admit(listener, stream, counts)

        def opened(stream: Stream) -> None:
            parked = self._parked.pop(stream, None)
            if parked is not None:  # a parked IDLE session woke up
                self._start(self._serve(parked, parked.serve()))
                return
            if implicit_tls is not None:
                counts.tls_handshakes.inc()
            ip = self._admitted.pop(stream)
            if chooser is not None and _acme_validation(stream):
                # A TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3): no request follows.
                self.limiter.release(ip)
                counts.open.dec()
                stream.close()
                return
            if listener.name in WEB_LISTENERS:
                router = self.router if listener.name == "http" else self.https_router
                task = self._start(self._serve_http(stream, ip, counts, router))
                self._http.add(task)
                task.add_done_callback(self._http.discard)
            else:
                self._start(self._serve_connection(listener, stream, ip))

        def failed(stream: Stream) -> None:  # the TLS handshake failed or timed out
            self.limiter.release(self._admitted.pop(stream))
            counts.open.dec()
            if implicit_tls is not None:
                counts.tls_failures.inc()

        return lambda: Stream(
            opened, implicit_tls, handshake_timeout=handshake_timeout, on_accept=accepted, on_fail=failed,
            chooser=chooser,
        )

    def _admit(self, listener: ListenerConfig, stream: Stream, counts: ListenerMetrics) -> bool:
        """Count a connection from accept on, before any TLS handshake (one
        address must not hold thousands of half-open handshakes); False refuses it."""
        peer = stream.get_extra_info("peername") or ("?", 0)
        ip = str(peer[0])
        refusal = self.limiter.acquire(ip)
        counts.connections.inc()
        if refusal is None:
            self._admitted[stream] = ip
            counts.open.inc()
            return True
        counts.refused.inc()
        mail_log("refused", ip=ip, listener=listener.name, reason=refusal.text)
        if not listener.implicit_tls:  # an implicit-TLS port cannot say why without a handshake
            stream.write(_farewell(listener, refusal))
        stream.close()
        return False

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._sessions.add(task)
        task.add_done_callback(self._session_done)
        return task

    def _park(self, session: ImapSession) -> None:
        """An IDLE session ends its task; its stream brings it back (see Stream.park)."""
        self._parked[session.stream] = session
        session.stream.park()

    def _session_done(self, task: asyncio.Task[Any]) -> None:
        self._sessions.discard(task)
        if task.cancelled():
            return  # shutdown: the client got its farewell
        exc = task.exception()
        if exc is not None:
            task.get_loop().call_exception_handler(
                {"message": "session ended by an unexpected error", "exception": exc, "task": task}
            )

    async def _serve_connection(self, listener: ListenerConfig, stream: Stream, ip: str) -> None:
        """Serve a connection _admit() counted for `ip`."""
        peer = stream.get_extra_info("peername") or ("?", 0)
        sid = new_session_id()
        session_id.set(sid)
        sock = stream.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # reset already: the session finds out and ends
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mail_log("connect", ip=ip, port=peer[1], listener=listener.name)
        del peer, sock  # an IMAP connection may last hours: keep no more than needed
        session: SmtpSession | Pop3Session | ImapSession
        if listener.name in SMTP_LISTENERS:
            session = SmtpSession(self.smtp, listener, stream, sid, ip)
        elif listener.name in ("pop3", "pop3s"):
            session = Pop3Session(self.pop3, listener, stream, sid, ip)
        else:
            session = ImapSession(self.imap, listener, stream, sid, ip)
        await self._serve(session, session.run())

    async def _serve(self, session: SmtpSession | Pop3Session | ImapSession,
                     work: Coroutine[Any, Any, bool | None]) -> None:
        """Run `work` (the session's run(), or serve() after a park); clean up
        when the connection ends, not when the session parks."""
        session_id.set(session.session_id)
        listener, stream, ip = session.listener, session.stream, session.client_ip
        parked = False
        try:
            parked = bool(await work)
        except asyncio.CancelledError:
            farewell = _farewell(listener, R.R421_SHUTTING_DOWN)
            if isinstance(session, ImapSession):
                farewell = session.wire_form(farewell)  # deflated after COMPRESS
            await _close_with(stream, farewell)
            raise
        except (ConnectionError, OSError) as exc:
            log.info("connection lost: %s", type(exc).__name__)
        finally:
            if not parked:
                self.limiter.release(ip, session.login_account, protocol_of(listener))
                self.metrics.listener(listener.name).open.dec()
                mail_log(
                    "disconnect",
                    ip=ip,
                    listener=listener.name,
                    tls=session.tls_info[0] if session.tls_info else "none",
                    **_session_summary(session),
                    duration=f"{time.monotonic() - session.started:.3f}s",
                )
                stream.close()

    async def _serve_http(self, stream: Stream, ip: str, counts: ListenerMetrics, router: Router) -> None:
        """One request on the http listener (net/http_server.py), then close."""
        sid = new_session_id()
        session_id.set(sid)
        try:
            await HttpSession(router, stream, ip, sid, self.metrics, timeout=self.config.limits.http_request_timeout,
                              https=router is self.https_router).run()
        except (ConnectionError, OSError) as exc:
            log.debug("http connection lost: %s", type(exc).__name__)
        finally:  # cancelled on shutdown too: nothing is owed to an HTTP client
            self.limiter.release(ip)
            counts.open.dec()
            stream.close()

    def health(self) -> str | None:
        """None when every listener accepts and the delivery process runs; else why not (/healthz)."""
        for name, server in self._listening.items():
            if not server.is_serving():
                return f"listener {name} does not accept connections"
        if not self._listening:
            return "not listening yet"
        if not self.manager.alive:
            return "the delivery process is not running"
        if self.workers is not None:
            missing = sorted(set(range(1, self.workers.count)) - set(self.workers.pids))
            if missing:
                return f"worker process {missing[0]} is not running"
            starting = self.workers.starting()
            if starting:
                return f"worker process {starting[0]} is starting"
        return None

    @staticmethod
    def _junk_feedback(config: Config):  # type: ignore[no-untyped-def]
        """What users move into and out of Junk, recorded (and taught to rspamd when it is set up)."""
        if not config.checks.enabled:
            return None
        from hatoba.checks.feedback import JunkFeedback
        from hatoba.checks.rspamd import Rspamd
        from hatoba.store.spamlists import SpamLists

        checks = config.checks
        rspamd = Rspamd(checks.rspamd_url, controller_url=checks.rspamd_controller_url,
                        password=checks.rspamd_password, timeout=checks.timeout) if checks.rspamd_url else None
        return JunkFeedback(SpamLists(config.paths.directory_db), rspamd)

    async def stop(self) -> None:
        for task in (self._tending, self._acme, self._reports):
            if task is not None:
                task.cancel()
        for server in self._servers:
            server.close()  # stop accepting; open sessions get SHUTDOWN_GRACE
        # IMAP sessions waiting for their client (parked in IDLE or not) say BYE at once;
        # the others get SHUTDOWN_GRACE to finish what they are doing.
        self.imap.stopping = True
        self.imap.park = None
        for stream in list(self._parked):
            stream.wake()
        self.imap.clock.wake_all()
        for task in list(self._http):
            task.cancel()
        workers = asyncio.ensure_future(self.workers.stop()) if self.workers is not None else None
        if self._sessions:
            _done, pending = await asyncio.wait(set(self._sessions), timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if workers is not None:  # their last messages still reach the delivery process
            await workers
        await self.manager.stop()
        self.throttle.close()
        self.pop_before_smtp.close()
        if self.admin is not None:
            self.admin.close()
        if self.smtp.checks is not None:
            self.smtp.checks.close()
        if self.imap.feedback is not None:
            await self.imap.feedback.idle()
            self.imap.feedback.close()


def served_listeners(config: Config, *, warn: bool = True) -> list[ListenerConfig]:
    """The enabled listeners this version serves (the others are skipped, with a warning)."""
    served = []
    for listener in config.listeners.values():
        if not listener.enabled:
            continue
        if listener.name not in SERVED_LISTENERS:
            if warn:
                log.warning("listener %s is not available in this version; skipped", listener.name)
            continue
        served.append(listener)
    return served


def room_for_connections(max_connections: int) -> bool:
    """Raise the descriptor limit (ulimit -n) to what limits.max_connections
    needs, as far as the hard limit allows; else warn. When descriptors run
    out, accept() fails for every client, not only for the flood."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "only %d file descriptors (ulimit -n) for limits.max_connections = %d; "
            "raise the limit to %d or set max_connections to %d",
            soft, max_connections, wanted, max(1, soft - SPARE_DESCRIPTORS),
        )
        return False
    return True


def _farewell(listener: ListenerConfig, reply: R.Reply) -> bytes:
    """The last words before closing (limits, shutdown), in the listener's protocol."""
    if listener.name in SMTP_LISTENERS:
        return R.format_reply(reply)
    if listener.name in ("imap", "imaps"):
        return b"* BYE " + reply.text.encode() + b"\r\n"
    if listener.name in WEB_LISTENERS:
        return http_refusal(reply.text)
    return pop3_replies.format_reply(pop3_replies.err(reply.text, "SYS/TEMP"))


async def _close_with(stream: Stream, data: bytes) -> None:
    try:
        stream.write(data)
        async with asyncio.timeout(5):
            await stream.drain()
    except (OSError, ConnectionError, TimeoutError):
        pass
    stream.close()


def _session_summary(session: SmtpSession | Pop3Session | ImapSession) -> dict[str, object]:
    if isinstance(session, SmtpSession):
        return {"helo": session.conn.helo, "login": session.conn.auth_login, "messages": session.messages_accepted,
                "commands": session.conn.commands, "errors": session.conn.bad_commands}
    if isinstance(session, Pop3Session):
        return {"login": session.mailbox, "retrieved": session.retrieved, "deleted": session.deleted,
                "commands": session.conn.commands, "errors": session.conn.bad_commands}
    return {"login": session.user, "commands": session.command_count, "errors": session.bad_commands}


_LISTENER_WORDS = {
    "smtp": "mail from other servers; STARTTLS offered; no AUTH",
    "submission": "users' clients; STARTTLS required, then AUTH",
    "smtps": "users' clients; implicit TLS, then AUTH",
    "pop3": "mail pick-up; STLS before any password",
    "pop3s": "mail pick-up; implicit TLS",
    "imap": "mail access; STARTTLS before any password",
    "imaps": "mail access; implicit TLS",
    "http": "redirects to https; /metrics and /healthz for [metrics] networks",
    "https": "web admin, autoconfiguration and the MTA-STS policy; implicit TLS",
}


def _alone() -> tuple[int, int]:
    """The loads of a worker that shares its listening socket with nobody: never over."""
    return 0, sys.maxsize


def _describe(listener: ListenerConfig) -> str:
    return _LISTENER_WORDS.get(listener.name, listener.name)


def _acme_validation(stream: Stream) -> bool:
    tls = stream.get_extra_info("ssl_object")
    return tls is not None and tls.selected_alpn_protocol() == "acme-tls/1"


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Failed TLS handshakes and dropped peers are the peer's problem: one line, no traceback."""
    exc = context.get("exception")
    if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
        log.info("connection error: %s", context.get("message", type(exc).__name__))
        return
    loop.default_exception_handler(context)
