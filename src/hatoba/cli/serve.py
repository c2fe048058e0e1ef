"""`hatoba serve`: run every enabled listener in the foreground.

Start-up, in this order: read the config; open the log; bind every port;
started as root, give the data folder to `[server] user` and become that
user for good; then recover the queue, start the delivery process and
accept connections. No byte from a client is read before root is gone.

With `[server] workers` above 1 (the default on a machine of several cores)
this process is the first of the workers that serve connections; it starts
the others after its own listeners are up (net/worker_procs.py).

SIGHUP reloads the certificates and keys (open connections stay up).
SIGTERM and SIGINT stop it gracefully: listeners close, sessions get a few
seconds to finish, the queue manager completes in-flight deliveries.
Under systemd (Type=notify) the service manager hears READY=1 once the
listeners accept, RELOADING=1/READY=1 around a reload and STOPPING=1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket

from hatoba.cli.common import CliError, load_config
from hatoba.i18n import refusal
from hatoba.config.schema import Config
from hatoba.logs import setup_logging
from hatoba.net.sdnotify import Notifier
from hatoba.runloop import limit_malloc_arenas, settle_garbage_collector
from hatoba.system.privileges import ServiceUser

log = logging.getLogger(__name__)

# Blocked from the bind until the event loop handles them (see run).
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the mail server in the foreground")
    p.add_argument("--debug", action="store_true", help="log every protocol line (secrets redacted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hatoba.net.listen import bind_workers, close_all
    from hatoba.net.server import served_listeners
    from hatoba.system.privileges import PrivilegeError, plan

    limit_malloc_arenas()
    config = load_config(args)
    try:
        user = plan(config.server, os.geteuid())
    except PrivilegeError as exc:
        raise CliError(refusal(exc)) from None
    level = "DEBUG" if args.debug else config.log.level
    try:
        log_file = setup_logging(level, config.log.file)
    except OSError as exc:
        raise CliError(f"cannot open log file {config.log.file}: {exc.strerror or exc}") from None
    notifier = Notifier.from_environment()  # connected now: the socket may be root's alone
    if user is not None:
        _check_reach(config, user)
    # Once bound, the ports take connections (into the backlog) and clients may
    # think the server is up; a SIGHUP or SIGTERM then must wait for the event
    # loop's handlers instead of killing the process (their default action).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    workers = config.server.worker_count()
    try:
        per_worker = bind_workers(served_listeners(config), workers)
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise CliError(f"cannot start: {exc.strerror or exc} (is another server using the port?)") from None
    try:
        _tend_own_ca(config)
        if user is not None:
            _become(config, user)
        from hatoba.runloop import run as run_loop

        log_fd = log_file.stream.fileno() if isinstance(log_file, logging.StreamHandler) else None
        run_loop(_serve(config, per_worker, notifier, log_fd, level, dropped=user is not None))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise CliError(f"cannot start: {exc.strerror or exc}{where}") from None
    finally:
        for sockets in per_worker:
            close_all(sockets)  # those the server took are closed already
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return 0


def _tend_own_ca(config: Config) -> None:
    """While the CA key may still be readable (root): renew a certificate of hatoba's CA
    that is past two thirds of its life, and sign a stale CRL (pki/renew.py)."""
    from hatoba.pki.renew import tend_own_ca

    tend_own_ca(config.tls)


def _check_reach(config: Config, user: ServiceUser) -> None:
    """Refuse, in one line, what the service user could not reach once root is gone."""
    from hatoba.system.reach import program_needs, unreachable

    tls = config.tls
    files = [tls.cert, tls.key, *(f for d in tls.domains.values() for f in (d.cert, d.key))]
    if tls.ca_file is not None:
        files.append(tls.ca_file)
    needs = [(config.config_path, os.R_OK)] if config.config_path else []
    needs.append((config.paths.data_dir, os.F_OK))  # made if missing, and given to the user, before the drop
    needs += [(path, os.R_OK) for path in files]
    problem = unreachable(user, needs + program_needs())
    if problem:
        raise CliError(problem)


def _become(config: Config, user: ServiceUser) -> None:
    """Give the data folder to `user`, then become it for good."""
    from hatoba.system.ownership import give_to
    from hatoba.system.privileges import PrivilegeError, drop

    data = config.paths.data_dir
    if not data.exists():
        data.mkdir(mode=0o700, parents=True)
    given = give_to(data, user.uid, user.gid)
    try:
        drop(user)
    except PrivilegeError as exc:
        raise CliError(refusal(exc)) from None
    if given.changed:
        log.info("gave %d file(s) in %s back to user %s (made by commands run as root)", given.changed, data, user.name)
    if given.left:
        log.warning("left %d entries in %s to others than user %s: special files, or files with several names "
                    "(fs.protected_hardlinks is off); chown them to %s if they are hatoba's",
                    given.left, data, user.name, user.name)
    log.info("running as user %s (uid %d, gid %d)", user, user.uid, user.gid)


def _say_who_runs(config: Config) -> None:
    """Not dropping root: say so when it matters."""
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    if uid == 0:
        log.warning("running as root ([server] allow_root = true): a flaw in hatoba would give away the machine; "
                    'set [server] user = "hatoba"')
    elif config.server.user and config.server.user != name:
        log.info("running as user %s, who started it ([server] user %s applies when started as root)",
                 name, config.server.user)


async def _serve(config: Config, per_worker: list[dict[str, list[socket.socket]]], notifier: Notifier,
                 log_fd: int | None, log_level: str, *, dropped: bool) -> None:
    from hatoba.delivery.setup import DeliverySetupError
    from hatoba.net.server import Server
    from hatoba.net.shared_counts import SharedCounts
    from hatoba.pki.tlsctx import TlsSetupError
    from hatoba.store.secretbox import SecretBoxError

    counts = SharedCounts.create(len(per_worker)) if len(per_worker) > 1 else None
    try:
        # As many delivery processes as workers: remote delivery uses every core too.
        server = Server(config, log_fd=log_fd, counts=counts, delivery_parts=len(per_worker))
    except (TlsSetupError, DeliverySetupError, SecretBoxError) as exc:
        raise CliError(refusal(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    ready = False  # a reload is told to the manager only between READY=1 and STOPPING=1

    def reload() -> None:
        # Runs on the event loop, so a second SIGHUP waits for this reload to end.
        if stop.is_set():
            return
        told = ready
        if told:
            notifier.reloading()
        try:
            server.reload()
        finally:
            if told:
                notifier.ready()

    loop.add_signal_handler(signal.SIGHUP, reload)
    # Handled from here on (those that came since the ports were bound too); unblocked
    # before the delivery process starts, which would inherit the mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    await server.start(per_worker[0])
    if len(per_worker) > 1:
        await server.start_workers(per_worker[1:], log_level)
    settle_garbage_collector()
    if not dropped:
        _say_who_runs(config)
    log.info("hatoba is running as %s (%d worker process%s); stop with Ctrl-C or SIGTERM",
             config.server.hostname, len(per_worker), "" if len(per_worker) == 1 else "es")
    notifier.ready(f"serving {', '.join(server.bound)}")
    ready = True
    await stop.wait()
    notifier.stopping()
    log.info("stopping")
    await server.stop()
    log.info("stopped")
    if counts is not None:
        counts.close()
    notifier.close()
